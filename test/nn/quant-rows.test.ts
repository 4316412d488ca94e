// The row products of quantized Linear layers (issue 58): a few rows (decoding) go through
// emotorch's fused kernels over the quantized weight (AVX-512, AVX2 or plain C++, whichever this CPU
// and ATEN_CPU_CAPABILITY allow). For each format, in bfloat16, float16 and float32, with row lengths that
// leave tails after the vector loops:
// (a) each row of a product of R rows equals, bit for bit, the row computed alone (R = 1 … 8, int8's 12 and 16, through
//     a layer; 16 rows decoding together in a DecodeBatch get the tokens each gets alone);
// (b) y is within a stated bound of x' · Wᵀ computed in float64 over the dequantized weight
//     (nn.dequantizeWeight, itself checked bit for bit against an independent reference in
//     quant-formats.test.ts), x' the rows as the format's library quantizes them for inference
//     (q8_0 / q4_0: llama.cpp's Q8_0 blocks, through nn.quantizeWeight, checked bit for bit against
//     the gguf package; int8: LLM.int8's definition with threshold 6, written out below; nf4: the
//     rows themselves; and in bfloat16 / float16 the weight w rounded to that dtype by ATen, as
//     bitsandbytes' dequantize_4bit gives it in that compute dtype): float32 sums of K products, each
//     step rounded once, then the output's dtype — |err| ≤ (K + 8) · 2⁻²⁴ · Σ|x'·w| (+ 2⁻⁸ |y| in
//     bfloat16, 2⁻¹¹ |y| in float16).
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { setQuantizedLayer } from '../../lib/nn/quant';
import { isFloating } from '../../lib/dtype';
import { rejectsWith } from '../helpers';

type Format = et.nn.QuantFormat;
const FORMATS: Format[] = ['int8', 'q8_0', 'q4_0', 'nf4'];
/** Row lengths per format (multiples of its block; not of the kernels' vector steps where it can). */
const SIZES: Record<Format, number[]> = { int8: [40, 97, 160], q8_0: [96, 160], q4_0: [96, 160], nf4: [128, 192] };
const OUT = 43; // not a multiple of 2, 4 or 6: blocks of 6, 4 or 2 outputs and single ones, in each thread's share
const DTYPES = ['bfloat16', 'float16', 'float32'] as const;

/** A one-layer Mlp (a Linear layer the quantize call reaches) and its weight quantized alike. */
async function layer(format: Format, inn: number, dtype: et.DType, out = OUT): Promise<{ mlp: et.nn.Mlp; w: et.Tensor }> {
  const mlp = await et.nn.Mlp.create({ sizes: [inn, out], bias: false }).to({ dtype });
  const [w] = mlp.parameters();
  let wq = await et.nn.dequantizeWeight(await et.nn.quantizeWeight(w, format), 'float32');
  if (format === 'nf4' && dtype !== 'float32') wq = wq.to({ dtype });
  wq = wq.to({ dtype: 'float64' });
  await et.nn.quantize(mlp, format);
  expect(
    et.nn.linearLayers(mlp).map((l) => l.format),
    'the layer is quantized',
  ).toEqual([format]);
  return { mlp, w: wq };
}

/**
 * The rows as the format's library quantizes them for inference, in float64.
 * int8 (bitsandbytes' LLM.int8 for one row): in float16, elements with |x| ≥ 6 kept, the others
 * q = round-half-even(x · float32(127 / rs)) with rs the absmax of the others, taken as q · rs / 127.
 */
async function quantizedRows(format: Format, x: et.Tensor): Promise<et.Tensor> {
  const x32 = x.to({ dtype: 'float32' });
  if (format === 'nf4') return x32.to({ dtype: 'float64' });
  if (format !== 'int8') return et.nn.dequantizeWeight(await et.nn.quantizeWeight(x32, 'q8_0'), 'float64');
  const h = x32.to({ dtype: 'float16' }).to({ dtype: 'float32' });
  const outlier = h.abs().ge(6);
  const rest = et.where(outlier, 0, h);
  const rs = rest.abs().max(1, true);
  const q = rest.mul(et.where(rs.gt(0), et.tensor(127).div(rs), 0)).round();
  return et
    .where(
      outlier,
      x32,
      q
        .to({ dtype: 'float64' })
        .mul(rs.to({ dtype: 'float64' }))
        .div(127),
    )
    .to({ dtype: 'float64' });
}

/** y (R × OUT) within the rounding bound of the float64 product of the rows as quantized and the dequantized weight w, row by row. */
async function withinBound(format: Format, dtype: et.DType, xd: et.Tensor, y: et.Tensor, w: et.Tensor, what: string): Promise<void> {
  const inn = xd.shape[1];
  const x64 = await quantizedRows(format, xd);
  const ref = x64.matmul(w.transpose(0, 1));
  const mag = x64.abs().matmul(w.abs().transpose(0, 1));
  let bound = mag.mul((inn + 8) * 2 ** -24);
  if (dtype !== 'float32') bound = bound.add(ref.abs().mul(dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11));
  const err = y.to({ dtype: 'float64' }).sub(ref).abs();
  const worst = err.sub(bound).max().item() as number;
  expect(worst, `${what}: error beyond the bound`).toBeLessThanOrEqual(0);
  // and not trivially: the product is not zero
  expect(ref.abs().max().item() as number).toBeGreaterThan(0.1);
}

async function run(mlp: et.nn.Mlp, x: et.Tensor): Promise<et.Tensor> {
  return et.noGrad(() => mlp.forward(x));
}

async function bits(t: et.Tensor): Promise<Uint8Array> {
  const a = await t.contiguous().data();
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}

describe('quantized row products', () => {
  for (const format of FORMATS)
    for (const dtype of DTYPES)
      it(`${format}, ${dtype}: each row of R rows equals the row alone, and x·Wᵀ of the dequantized weight within the bound`, async () => {
        et.manualSeed(58);
        for (const inn of SIZES[format]) {
          const { mlp, w } = await layer(format, inn, dtype);
          // (80 rows, float32: the dequantize-then-multiply path, x' rounded the same way, (b) alone
          // — int8 and q4_0 held interleaved take their integer kernels at any length on AVX-512
          // VNNI, q4_0 on AVX2 too; nf4 in bfloat16 / float16, 9 rows: that path's weight is the one
          // the row kernels round to)
          const many = dtype === 'float32' ? [80] : format === 'nf4' ? [9] : [];
          // (int8, 12 and 16 rows: a decoding step's, its integer kernels taking any count on AVX2 and
          // AVX-512 VNNI, the interleaved one 9 to 16 in one pass)
          const wide = format === 'int8' && et.versions.cpuCapability !== 'DEFAULT' ? [12, 16] : [];
          for (const R of [1, 2, 3, 5, 7, 8, ...wide, ...many]) {
            // rows of different scales, one with an outlier
            const x = et.randn([R, inn]).mul(et.tensor(Array.from({ length: R }, (_, r) => [0.25 + r])));
            const xd = x.to({ dtype });
            const y = await run(mlp, xd);
            expect(y.dtype).toBe(dtype);
            expect(y.shape).toEqual([R, OUT]);
            // (a) bit for bit the row alone
            for (let r = 0; r < (R <= 8 || wide.includes(R) ? R : 0); ++r) {
              const alone = await run(mlp, xd.slice(0, r, r + 1));
              expect(await bits(y.slice(0, r, r + 1)), `${format} ${dtype} in ${inn} R ${R} row ${r}`).toEqual(await bits(alone));
            }
            // (b) within the bound of the float64 product over the dequantized weight
            await withinBound(format, dtype, xd, y, w, `${format} ${dtype} in ${inn} R ${R}`);
          }
        }
      });

  it('decoding rows (1 to 3) over a wide layer (int8: six groups of 16 outputs a pass, q8_0 two outputs, AVX2 four) are within the bound, each equal to the row alone', async () => {
    et.manualSeed(59);
    // 403 outputs: 25 groups of 16 and 3 rows after them, so each thread's share has passes of six
    // groups and single groups left over, and an odd count for the formats taking outputs in pairs
    for (const format of ['int8', 'q8_0', 'q4_0'] as const) {
      const { mlp, w } = await layer(format, 160, 'bfloat16', 403);
      for (const R of [1, 2, 3]) {
        const xd = et
          .randn([R, 160])
          .mul(et.tensor(Array.from({ length: R }, (_, r) => [0.5 + r])))
          .to({ dtype: 'bfloat16' });
        const y = await run(mlp, xd);
        for (let r = 0; r < R; ++r)
          expect(await bits(y.slice(0, r, r + 1)), `${format} R ${R} row ${r}`).toEqual(await bits(await run(mlp, xd.slice(0, r, r + 1))));
        await withinBound(format, 'bfloat16', xd, y, w, `${format} 403 outputs R ${R}`);
      }
    }
  });

  it('nf4 across nested groups of 256 blocks (rows crossing their bounds; rows of 300 blocks over up to 3 groups, 9 groups in a thread; 1 to 8 rows): within the bound, each row equal to the row alone', async () => {
    // the kernels keep each nested group's absmax table for the rows after it: every table is read
    // by rows other than the one that made it, and a table of the wrong group would scale a block by
    // another group's nested absmax (weight rows scaled 0.2 to 12.2 apart make those differ)
    et.manualSeed(256);
    for (const [inn, out] of [
      [192, 403],
      [19200, 7],
    ])
      for (const dtype of DTYPES) {
        const mlp = await et.nn.Mlp.create({ sizes: [inn, out], bias: false });
        const [w0] = mlp.parameters();
        const scale = et.tensor(Array.from({ length: out }, (_, r) => [0.2 + ((r * 7) % 13)]));
        await mlp.loadStateDict({ [[...mlp.namedParameters()][0][0]]: w0.mul(scale) });
        await mlp.to({ dtype });
        const [w] = mlp.parameters();
        let wq = await et.nn.dequantizeWeight(await et.nn.quantizeWeight(w, 'nf4'), 'float32');
        if (dtype !== 'float32') wq = wq.to({ dtype });
        await et.nn.quantize(mlp, 'nf4');
        // (5 and 8 rows, in bfloat16: the weight rows a few at a time, each group of rows taking K in
        // parts of 32 blocks, the sums kept between parts: 19200 is 10 parts, the last of 12 blocks)
        for (const R of [1, 3, 5, 8]) {
          const xd = et
            .randn([R, inn])
            .mul(et.tensor(Array.from({ length: R }, (_, r) => [0.5 + r])))
            .to({ dtype });
          const y = await run(mlp, xd);
          for (let r = 0; r < R; ++r)
            expect(await bits(y.slice(0, r, r + 1)), `nf4 ${dtype} ${inn} → ${out} R ${R} row ${r}`).toEqual(await bits(await run(mlp, xd.slice(0, r, r + 1))));
          await withinBound('nf4', dtype, xd, y, wq.to({ dtype: 'float64' }), `nf4 ${dtype} ${inn} → ${out} R ${R}`);
        }
      }
  });

  it('a long prompt through the integer kernels (int8: rows in chunks of about 256 KiB, 1641 rows of 160 crossing one; q8_0: up to 24 rows with AVX-512 VNNI, 64 with AVX2, then dequantized; q4_0 held interleaved: at any length with AVX-512 VNNI or AVX2) is within the bound, every row', async () => {
    // float32: without an integer kernel these lengths dequantize the weight, in the input's dtype,
    // exactly in float32 only
    et.manualSeed(24);
    for (const [format, lengths] of [
      ['int8', [1641]],
      ['q8_0', [24, 25, 64, 65]],
      ['q4_0', [64, 65]],
    ] as const) {
      const { mlp, w } = await layer(format, 160, 'float32');
      for (const R of lengths) {
        const x = et.randn([R, 160]).mul(et.tensor(Array.from({ length: R }, (_, r) => [0.25 + (r % 7)])));
        await withinBound(format, 'float32', x, await run(mlp, x), w, `${format} R ${R}`);
      }
    }
  });

  it("nf4, a prompt's bfloat16 rows (9 to 64) through the weight dequantized a tile of outputs at a time: within the bound, and equal bit for bit to the plain layer over the dequantized weight", async () => {
    // 1024 inputs: tiles of 64 outputs (128 KiB of bfloat16), so 203 outputs make three whole tiles
    // and a ragged one, each thread's share starting mid-layer. (q8_0 past its integer kernel's rows
    // takes the same path with its rows rounded first; int8 and q4_0 held interleaved never do.)
    et.manualSeed(64);
    const IN = 1024,
      N = 203;
    const { mlp, w } = await layer('nf4', IN, 'bfloat16', N);
    const plain = await et.nn.Mlp.create({ sizes: [IN, N], bias: false }).to({ dtype: 'bfloat16' });
    const [name] = [...plain.stateDict().keys()];
    await plain.loadStateDict({ [name]: w.to({ dtype: 'bfloat16' }) });
    for (const R of [9, 33, 64]) {
      const x = et
        .randn([R, IN])
        .mul(et.tensor(Array.from({ length: R }, (_, r) => [0.25 + (r % 5)])))
        .to({ dtype: 'bfloat16' });
      const y = await run(mlp, x);
      expect(y.shape).toEqual([R, N]);
      await withinBound('nf4', 'bfloat16', x, y, w, `nf4 prompt R ${R}`);
      expect(await bits(y), `nf4 prompt R ${R}`).toEqual(await bits(await run(plain, x)));
    }
  });

  it('with autograd on and an input that needs no gradient (the float row kernels, the input not rounded), rows equal rows alone', async () => {
    et.manualSeed(11);
    for (const format of FORMATS)
      for (const inn of [...SIZES[format], 640]) {
        // float32 rows (products that round, so a different order of sums would show)
        const { mlp } = await layer(format, inn, 'float32');
        const x = et.randn([7, inn]);
        const y = await mlp.forward(x); // 7 rows: blocks of 4, 2 and 1 input rows
        for (let r = 0; r < 7; ++r)
          expect(await bits(y.slice(0, r, r + 1)), `${format} in ${inn} row ${r}`).toEqual(await bits(await mlp.forward(x.slice(0, r, r + 1))));
        // and these are products of the input as it is: they differ from those of the rounded input (noGrad)
        const rounded = await run(mlp, x);
        if (format !== 'nf4')
          expect(
            y
              .to({ dtype: 'float32' })
              .sub(rounded.to({ dtype: 'float32' }))
              .abs()
              .max()
              .item(),
          ).toBeGreaterThan(0);
      }
  });

  it('a NaN or infinite input reaches the outputs of every format (the rounding of the input never hides it)', async () => {
    et.manualSeed(9);
    for (const format of FORMATS)
      for (const bad of [NaN, Infinity]) {
        const { mlp } = await layer(format, 128, 'float32');
        const x = et.randn([3, 128]);
        const v = (await x.data()) as Float32Array;
        const data = Array.from(v);
        data[128 + 70] = bad; // row 1 only
        const xb = et.tensor(data).reshape([3, 128]);
        for (const rows of [xb, xb.expand([12, 3, 128]).reshape([36, 128])]) {
          const y = await run(mlp, rows);
          const finite = (await y.isfinite().all(1).to({ dtype: 'float32' }).data()) as Float32Array;
          expect(Array.from(finite.slice(0, 3)), `${format} ${bad} R ${rows.shape[0]}`).toEqual([1, 0, 1]);
        }
      }
  });

  it("q4_0 held interleaved for its kernel (AVX-512 VNNI or AVX2) still gives gguf's bytes: the state dict equals nn.quantizeWeight's, and those bytes set or loaded into a layer compute the same", async () => {
    et.manualSeed(16);
    for (const out of [16, 42, 7]) {
      const mlp = await et.nn.Mlp.create({ sizes: [160, out], bias: false });
      const [w] = mlp.parameters();
      const ref = await et.nn.quantizeWeight(w, 'q4_0');
      await et.nn.quantize(mlp, 'q4_0');
      const sd = mlp.stateDict();
      expect([...sd.keys()]).toEqual(['layers.0.weight']);
      expect(await bits(sd.get('layers.0.weight')!), `out ${out}`).toEqual(await bits(ref.tensors.weight));
      // the same bytes set into a fresh layer: the same products, rows alone and 5 together
      const other = await et.nn.Mlp.create({ sizes: [160, out], bias: false });
      await setQuantizedLayer(other, et.nn.linearLayers(other)[0], 'q4_0', { weight: ref.tensors.weight });
      const x = et.randn([5, 160]);
      for (const rows of [x, x.slice(0, 2, 3)]) expect(await bits(await run(other, rows)), `out ${out}`).toEqual(await bits(await run(mlp, rows)));
      // loadStateDict of those bytes into another q4_0 layer: its kernel's layout made from them (not
      // gguf's bytes copied into an interleaved weight), checked before anything is set
      const third = await et.nn.Mlp.create({ sizes: [160, out], bias: false });
      await et.nn.quantize(third, 'q4_0');
      await expect(third.loadStateDict(new Map([['layers.0.weight', et.zeros(sd.get('layers.0.weight')!.shape)]]))).rejects.toMatchObject({
        code: 'ERR_STATE_DICT',
      });
      await third.loadStateDict(sd);
      expect(await bits(await run(third, x)), `out ${out}`).toEqual(await bits(await run(mlp, x)));
      expect(await bits(third.stateDict().get('layers.0.weight')!)).toEqual(await bits(ref.tensors.weight));
      // training's path (autograd: the held weight dequantized, interleaved rows gathered back) multiplies
      // the reference's weight, in float32 and bfloat16 (x · wᵀ over the same values, one rounding apart)
      for (const dtype of ['float32', 'bfloat16'] as const) {
        await mlp.to({ dtype });
        const xg = x.to({ dtype }).requiresGrad_();
        const y = (await mlp.forward(xg)).to({ dtype: 'float32' });
        const want = x
          .to({ dtype })
          .to({ dtype: 'float32' })
          .matmul((await et.nn.dequantizeWeight(ref, dtype)).to({ dtype: 'float32' }).transpose(0, 1));
        const tol = dtype === 'float32' ? 1e-5 : 2 ** -7;
        expect(y.sub(want).abs().max().item() as number, `out ${out} ${dtype}`).toBeLessThanOrEqual(tol * (want.abs().max().item() as number));
      }
      // and the prompt path (dequantized weight) reads the same weight
      expect(
        await bits(await et.nn.dequantizeWeight({ format: 'q4_0', shape: [out, 160], tensors: { weight: sd.get('layers.0.weight')! } })),
        `out ${out}`,
      ).toEqual(await bits(await et.nn.dequantizeWeight(ref)));
    }
  });

  it("every format's state dict loads into another quantized layer (copied or assigned, as given or as strided views): the same products, whatever layout its kernel holds (int8 and q4_0 interleaved on AVX-512 VNNI); a bad quant state is refused by name, nothing set", async () => {
    et.manualSeed(17);
    const x = et.randn([5, 192]);
    for (const format of FORMATS)
      for (const out of [48, 7]) {
        const src = await et.nn.Mlp.create({ sizes: [192, out], bias: false });
        await et.nn.quantize(src, format);
        const sd = src.stateDict();
        const want = await bits(await run(src, x));
        // (strided: each tensor a column of a wider one, as a view; the kernels had read such bytes as if in order)
        const strided = new Map([...sd].map(([k, t]) => [k, et.stack([t, t.neg()], -1).select(-1, 0)]));
        for (const [assign, given] of [
          [false, sd],
          [true, sd],
          [false, strided],
          [true, strided],
        ] as const) {
          const dst = await et.nn.Mlp.create({ sizes: [192, out], bias: false });
          await et.nn.quantize(dst, format);
          await dst.loadStateDict(given, { assign });
          const tag = `${format} out ${out} assign ${assign}${given === strided ? ' strided' : ''}`;
          // (int8 held interleaved had taken the files' bytes copied into its interleaved weight: other products)
          expect(await bits(await run(dst, x)), tag).toEqual(want);
          expect(await bits(await run(dst, x.slice(0, 2, 3))), tag).toEqual(await bits(await run(src, x.slice(0, 2, 3))));
          for (const [k, t] of dst.stateDict()) expect(await bits(t), `${tag} ${k}`).toEqual(await bits(sd.get(k)!));
        }
        // refused before anything is set: the layer computes as before
        const dst = await et.nn.Mlp.create({ sizes: [192, out], bias: false });
        await et.nn.quantize(dst, format);
        const before = await bits(await run(dst, x));
        const floats = [...sd].filter(([, t]) => isFloating(t.dtype));
        for (const [k, t] of floats)
          for (const bad of [NaN, Infinity]) {
            const broken = new Map([...sd, [k, et.full(t.shape, bad)]]);
            await rejectsWith(dst.loadStateDict(broken), 'ERR_STATE_DICT', new RegExp(`'${k.replace(/\./g, '\\.')}' has NaN or infinite values`));
          }
        // codes in another dtype of the same shape (a float weight, int8's codes as uint8)
        const codes = sd.get('layers.0.weight')!;
        for (const dtype of ['float32', format === 'int8' ? 'uint8' : 'int8'] as const)
          await rejectsWith(
            dst.loadStateDict(new Map([...sd, ['layers.0.weight', codes.to({ dtype })]])),
            'ERR_STATE_DICT',
            new RegExp(`layers\\.0\\.weight' is ${dtype}`),
          );
        // part of a layer's tensors, even where keys may be missing (a float state dict into an int8 layer: no SCB)
        if (format === 'int8' || format === 'nf4') {
          const part = new Map([['layers.0.weight', codes]]);
          await rejectsWith(
            dst.loadStateDict(part, { strict: false }),
            'ERR_STATE_DICT',
            /'layers\.0' \((int8|nf4)\) has layers\.0\.weight but not layers\.0\.(SCB|weight\.absmax)/,
          );
        }
        expect(await bits(await run(dst, x)), `${format} out ${out}: unchanged`).toEqual(before);
      }
  });

  it('16 rows decoding together (DecodeBatch) get the tokens each gets alone, on each format', async () => {
    et.manualSeed(5);
    for (const format of FORMATS) {
      const llm = et.nn.LlamaForCausalLM.create({
        vocab_size: 97,
        hidden_size: 64,
        intermediate_size: 192,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 256,
        eos_token_id: 96,
        pad_token_id: 0,
        initializer_range: 0.2,
      }).eval();
      await llm.to({ dtype: 'bfloat16' });
      await et.nn.quantize(llm, format, { skip: ['lm_head'] });
      const prompts = Array.from({ length: 16 }, (_, i) => [1, 2 + i, 40 + ((7 * i) % 50), 3 + ((5 * i) % 90)]);
      const opts = { maxNewTokens: 6 };
      const ids = (p: number[]) => et.tensor([p], { dtype: 'int64' });
      const alone: number[][] = [];
      for (const p of prompts) {
        const { newTokens } = await et.noGrad(() => llm.generate({ inputIds: ids(p) }, opts));
        alone.push((newTokens.toArray() as number[][])[0].map(Number));
      }
      const batch = new et.nn.DecodeBatch(llm);
      let widest = 0;
      const together = await Promise.all(
        prompts.map((p) =>
          et
            .noGrad(() => batch.generate({ inputIds: ids(p) }, { ...opts, onTokens: () => void (widest = Math.max(widest, batch.size)) }))
            .then(({ newTokens }) => (newTokens.toArray() as number[][])[0].map(Number)),
        ),
      );
      expect(together, format).toEqual(alone);
      expect(widest, `${format}: rows decoded together`).toBeGreaterThanOrEqual(8);
    }
  });
});
