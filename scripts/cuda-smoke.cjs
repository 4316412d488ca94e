// The CUDA smoke check of the native side on the raw binding alone (no node_modules, no dist/):
// configs from the C++ field lists (modelKinds), named inputs and outputs, generation through the
// CausalLM bridge (greedy, beam, decoding rows); each result on the device against the same
// module's CPU result; the quantized LLaMA (int8, q8_0, q4_0, nf4: the CUDA row kernels) and a
// QLoRA step against transformers / peft (test/fixtures/quant_llama). `node scripts/cuda-smoke.cjs
// [cuda|cpu]` after building build/Release.
const fs = require('fs');
const path = require('path');
const b = require(path.resolve(__dirname, '../build/Release/emotorch.node'));
const dev = process.argv[2] || 'cuda';
const kinds = b.modelKinds();
const defaults = (fields) => Object.fromEntries(fields.map((f) => [f.name, f.type === 'config' ? defaults(f.fields) : JSON.parse(f.default)]));
const cfg = (kind, over) => ({ ...defaults(kinds[kind]), ...over });
const maxDiff = (a, c) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - c[i])), 0);
const rand = (n, seed) => {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    a[i] = s / 2147483648 - 0.5;
  }
  return a;
};
// greedy decoding, every field the CausalLM bridge reads
const GREEDY = {
  max_new_tokens: 8,
  min_new_tokens: 0,
  num_beams: 1,
  top_k: 0,
  temperature: 1,
  top_p: 1,
  repetition_penalty: 1,
  length_penalty: 1,
  do_sample: false,
  early_stopping: 'true',
  eos_token_id: [2],
  pad_token_id: 0,
  seed: -1,
  banned_token_ranges: [],
  allowed_token_ranges: [],
};
let failed = 0;
const check = (name, ok, info) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name} ${info ?? ''}`);
  if (!ok) failed++;
};
(async () => {
  console.log(`kinds: ${Object.keys(kinds).length} (${Object.keys(kinds).join(', ')})`);
  // LLaMA: logits and loss by name, CPU then the same module moved
  const llama = b.createModule(
    'llama',
    cfg('llama', { vocab_size: 128, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 }),
    null,
    null,
  );
  const ids = [5, 9, 17, 33, 2, 8, 100, 3, 7, 11, 12, 13];
  const mk = (d) => b.fromData(BigInt64Array.from(ids.map(BigInt)), [2, 6], 'int64', 'int64', d, false);
  const mask = (d) => b.fromData(BigInt64Array.from([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1].map(BigInt)), [2, 6], 'int64', 'int64', d, false);
  const cpuOut = await llama.forward({ input_ids: mk('cpu'), attention_mask: mask('cpu'), labels: mk('cpu') });
  const g = GREEDY;
  const cpuGen = Array.from(new BigInt64Array((await llama.generate(mk('cpu'), null, mask('cpu'), g, null).result).dataSync()[0]));
  const cpuBeam = Array.from(new BigInt64Array((await llama.generate(mk('cpu'), null, mask('cpu'), { ...g, num_beams: 3 }, null).result).dataSync()[0]));
  await llama.to(dev, null);
  const t0 = Date.now();
  const out = await llama.forward({ input_ids: mk(dev), attention_mask: mask(dev), labels: mk(dev) });
  check('llama forward: named outputs', Object.keys(out).sort().join() === 'logits,loss', Object.keys(out).join());
  check(
    'llama logits on ' + dev + ' = CPU',
    maxDiff(values(out.logits), values(cpuOut.logits)) < 1e-3,
    `max |diff| ${maxDiff(values(out.logits), values(cpuOut.logits)).toExponential(2)} (${out.logits.device()})`,
  );
  check('llama loss on ' + dev + ' = CPU', Math.abs(out.loss.item() - cpuOut.loss.item()) < 1e-4, `${out.loss.item()} vs ${cpuOut.loss.item()}`);
  const gen = Array.from(new BigInt64Array((await llama.generate(mk(dev), null, mask(dev), g, null).result).dataSync()[0]));
  check('greedy generate (CausalLM bridge) = CPU', gen.join() === cpuGen.join(), gen.join(' '));
  const beam = Array.from(new BigInt64Array((await llama.generate(mk(dev), null, mask(dev), { ...g, num_beams: 3 }, null).result).dataSync()[0]));
  check('beam search = CPU', beam.join() === cpuBeam.join(), beam.join(' '));
  const one = b.fromData(BigInt64Array.from([5n, 9n, 17n]), [1, 3], 'int64', 'int64', dev, false);
  const row = await llama.startDecode(one, null, null, g, null);
  const steps = [];
  for (let i = 0; i < 4; i++) steps.push((await llama.decodeStep([row]))[0]);
  await llama.endDecode(row);
  check(
    'decoding rows (startDecode/decodeStep)',
    steps.every((t) => t >= 0 && t < 128),
    steps.join(' '),
  );
  let err = '';
  try {
    await llama.forward({ input_ids: mk(dev), inputIds: mk(dev) });
  } catch (e) {
    err = `${e.code}: ${e.message}`;
  }
  check('unread input named', /takes no input 'inputIds'/.test(err), err);
  console.log(`llama on ${dev}: ${Date.now() - t0} ms`);
  // Whisper, RoBERTa, WavLM, Voicebox, BigVGAN: outputs by name on the device = CPU
  const cases = [
    [
      'whisper_encoder',
      { num_mel_bins: 16, d_model: 64, encoder_layers: 2, encoder_attention_heads: 4, encoder_ffn_dim: 128, max_source_positions: 32 },
      (d) => ({ input_features: b.fromData(rand(2 * 16 * 40, 1), [2, 16, 40], 'float32', 'float32', d, false) }),
      'last_hidden_state',
    ],
    [
      'roberta',
      { vocab_size: 128, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 128, max_position_embeddings: 40 },
      (d) => ({ input_ids: mk(d), attention_mask: mask(d) }),
      'pooler_output',
    ],
    [
      'wavlm',
      {
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        conv_dim: [32, 32],
        conv_kernel: [10, 3],
        conv_stride: [5, 2],
        num_conv_pos_embeddings: 16,
        num_conv_pos_embedding_groups: 4,
      },
      (d) => ({ input_values: b.fromData(rand(2 * 4000, 2), [2, 4000], 'float32', 'float32', d, false) }),
      'last_hidden_state',
    ],
    // USDM's speech decoder (issue 59): the Voicebox estimator's velocity on a padded batch, and
    // BigVGAN (the CPU's result from its fused anti-aliased Snake, the device's from ATen's ops)
    [
      'voicebox',
      {
        n_feats: 8,
        n_tokens: 20,
        embedding_dim: 16,
        hidden_size: 32,
        intermediate_size: 64,
        num_attention_heads: 4,
        num_hidden_layers: 2,
        convpos_width: 7,
        convpos_groups: 4,
        convpos_depth: 2,
      },
      (d) => ({
        units: b.fromData(BigInt64Array.from(ids.map((x) => BigInt(x % 21))), [2, 6], 'int64', 'int64', d, false),
        noisy_mel: b.fromData(rand(2 * 8 * 6, 3), [2, 8, 6], 'float32', 'float32', d, false),
        cond: b.fromData(rand(2 * 8 * 6, 4), [2, 8, 6], 'float32', 'float32', d, false),
        t: b.fromData(Float32Array.from([0.3, 0.8]), [2], 'float32', 'float32', d, false),
        lengths: b.fromData(BigInt64Array.from([6n, 4n]), [2], 'int64', 'int64', d, false),
      }),
      'velocity',
    ],
    [
      'bigvgan',
      {
        upsample_rates: [4, 4],
        upsample_kernel_sizes: [8, 8],
        upsample_initial_channel: 32,
        resblock_kernel_sizes: [3, 7],
        resblock_dilation_sizes: [1, 3, 1, 3],
        num_mels: 8,
      },
      (d) => ({ mel: b.fromData(rand(8 * 9, 5), [1, 8, 9], 'float32', 'float32', d, false) }),
      'waveform',
    ],
  ];
  for (const [kind, over, inputs, key] of cases) {
    const m = b.createModule(kind, cfg(kind, over), null, null);
    m.setTraining(false);
    const c = await m.forward(inputs('cpu'));
    await m.to(dev, null);
    const o = await m.forward(inputs(dev));
    const d = maxDiff(values(o[key]), values(c[key]));
    check(`${kind} ${key} on ${dev} = CPU`, d < 2e-3, `max |diff| ${d.toExponential(2)}; outputs ${Object.keys(o).join(',')}`);
  }
  await quantized();
  await quantizedRows();
  console.log(failed ? `${failed} FAILED` : 'all ok');
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});

// A tensor's values as float32 (float32, bfloat16 or float16 on the CPU or the device).
function values(h) {
  const [buf, dt] = h.dataSync();
  if (dt === 'float32') return new Float32Array(buf);
  const u = new Uint16Array(buf),
    out = new Float32Array(u.length),
    bits = new Uint32Array(out.buffer);
  if (dt === 'bfloat16') {
    for (let i = 0; i < u.length; i++) bits[i] = u[i] << 16;
    return out;
  }
  if (dt !== 'float16') throw new Error(`values: ${dt}`);
  for (let i = 0; i < u.length; i++) {
    const e = (u[i] >> 10) & 31,
      m = u[i] & 1023,
      v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
    out[i] = u[i] & 0x8000 ? -v : v;
  }
  return out;
}

// float32 values as `dt` holds them (ATen's conversion on the CPU), back as float32
function asDtype(a, shape, dt) {
  return values(b.fromData(a, shape, 'float32', dt, 'cpu', false));
}

// One quantized Linear's rows on the device (5 rows: the CUDA row kernels, the input rounded for
// inference by et_act_rows_cuda), each format in float32, bfloat16 and float16, against x'·Wᵀ in
// float64 over the dequantized weight (quantizeWeight / dequantizeWeight on the CPU, checked bit for
// bit against independent references by test/nn/quant-formats.test.ts), x' the rows as the format's
// library rounds them (int8: LLM.int8 with threshold 6, written out below; q8_0 / q4_0: llama.cpp's
// Q8_0 blocks through quantizeWeight; nf4: the rows themselves) and nf4's weight rounded to the rows'
// dtype by ATen: within test/nn/quant-rows.test.ts's bound, (K + 8)·2⁻²⁴·Σ|x'·w| + 2⁻⁸ (bfloat16) or
// 2⁻¹¹ (float16) of |y|. K = 576: more than a thread block's 256 threads, not a multiple of them.
async function quantizedRows() {
  const K = 576,
    N = 42,
    R = 5;
  const raw = rand(R * K, 11).map((v, i) => (i % 97 === 5 ? 12 * v + Math.sign(v) * 6.5 : 6 * v)); // a few |x| ≥ 6 (int8's outliers)
  b.setGradEnabled(false);
  for (const fmt of ['int8', 'q8_0', 'q4_0', 'nf4'])
    for (const dt of ['float32', 'bfloat16', 'float16']) {
      const m = b.createModule('mlp', cfg('mlp', { sizes: [K, N], bias: false }), null, null);
      const [, [wh]] = m.namedParameters();
      let w = values(await b.dequantizeWeight(fmt, N, K, await b.quantizeWeight(wh, fmt, 'w'), 'float32', 'w'));
      if (fmt === 'nf4' && dt !== 'float32') w = asDtype(w, [N, K], dt);
      await b.quantizeLinears(m, ['layers.0'], fmt);
      m.setTraining(false);
      await m.to(dev, dt);
      const xs = asDtype(raw, [R, K], dt);
      let xp = xs;
      if (fmt === 'q8_0' || fmt === 'q4_0') {
        const xq = await b.quantizeWeight(b.fromData(xs, [R, K], 'float32', 'float32', 'cpu', false), 'q8_0', 'x');
        xp = values(await b.dequantizeWeight('q8_0', R, K, xq, 'float32', 'x'));
      } else if (fmt === 'int8') {
        const h = asDtype(xs, [R, K], 'float16');
        xp = new Float32Array(R * K);
        const rne = (v) => {
          const f = Math.floor(v),
            d = v - f;
          return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
        };
        for (let r = 0; r < R; r++) {
          let rs = 0;
          for (let k = r * K; k < (r + 1) * K; k++) if (Math.abs(h[k]) < 6) rs = Math.max(rs, Math.abs(h[k]));
          const scale = rs > 0 ? Math.fround(127 / rs) : 0,
            step = Math.fround(rs * Math.fround(1 / 127));
          for (let k = r * K; k < (r + 1) * K; k++) xp[k] = Math.abs(h[k]) < 6 ? Math.fround(rne(Math.fround(h[k] * scale)) * step) : xs[k];
        }
      }
      const xh = b.fromData(xs, [R, K], 'float32', dt, dev, false);
      const out = await m.forward({ input: xh });
      const y = values(Object.values(out)[0]);
      const c = { float32: 0, bfloat16: 2 ** -8, float16: 2 ** -11 }[dt];
      let worst = 0;
      for (let r = 0; r < R; r++)
        for (let n = 0; n < N; n++) {
          let ref = 0,
            abs = 0;
          for (let k = 0; k < K; k++) {
            const p = xp[r * K + k] * w[n * K + k];
            ref += p;
            abs += Math.abs(p);
          }
          const bound = (K + 8) * 2 ** -24 * abs + c * Math.max(Math.abs(ref), Math.abs(y[r * N + n]));
          worst = Math.max(worst, Math.abs(y[r * N + n] - ref) / bound);
        }
      check(`quantized ${fmt} layer on ${dev} in ${dt}, ${R} rows of ${K}: x'·Wᵀ within the bound`, worst <= 1, `worst |diff| / bound ${worst.toFixed(3)}`);
      m.dispose();
    }
}

// A safetensors file's tensors (handles on the CPU) by name, through the raw reader.
async function readTensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const DT = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32', U8: 'uint8', I8: 'int8', BOOL: 'bool' };
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const list = names.map((k) => [k, DT[header[k].dtype], header[k].shape, header[k].data_offsets[0], header[k].data_offsets[1]]);
  const handles = await b.readSafetensors(file, 8 + n, list, buf.length);
  return new Map(names.map((k, i) => [k, handles[i]]));
}

// The quantized LLaMA on the device (issue 58): test/fixtures/llama's weights quantized on the CPU
// (every decoder Linear, the LM head left in float as transformers leaves it), moved; logits against
// transformers on the reference-dequantized weights (test/fixtures/quant_llama: a 2 × 10 padded
// prompt, 20 rows, takes the dequantize path; a 5-row prompt and the decoding rows the CUDA row
// kernels), decoded tokens against the same model's CPU tokens, and a QLoRA step's loss and adapter
// gradients against peft's.
async function quantized() {
  const FX = path.resolve(__dirname, '../test/fixtures');
  const t = await readTensors(path.join(FX, 'quant_llama', 'io.safetensors'));
  const weights = await readTensors(path.join(FX, 'llama', 'model.safetensors'));
  const hf = JSON.parse(fs.readFileSync(path.join(FX, 'llama', 'config.json'), 'utf8'));
  const fields = Object.keys(defaults(kinds.llama));
  const over = Object.fromEntries(fields.filter((k) => k in hf && typeof hf[k] !== 'object').map((k) => [k, hf[k]]));
  const build = async (fmt, lora) => {
    const m = b.createModule('llama', cfg('llama', over), null, null);
    const [names, handles] = m.namedParameters();
    const own = new Map(names.map((k, i) => [k, handles[i]]));
    const keys = [...own.keys()].filter((k) => weights.has(k));
    if (keys.length !== own.size) throw new Error(`fixture llama lacks ${[...own.keys()].filter((k) => !weights.has(k)).join(', ')}`);
    await b.copyState(
      keys.map((k) => own.get(k)),
      keys.map((k) => weights.get(k)),
    );
    const targets = b
      .linearLayers(m)
      .map(([n]) => n)
      .filter((n) => n !== 'lm_head');
    await b.quantizeLinears(m, targets, fmt);
    if (lora) {
      m.applyLora(
        targets.filter((n) => /\.(q_proj|v_proj|down_proj)$/.test(n)),
        8,
        16,
        0,
      );
      const [ln, lh] = m.namedParameters();
      const mine = ln.map((k, i) => [k, lh[i]]).filter(([k]) => t.has(`${fmt}.lora.${k}`));
      await b.copyState(
        mine.map(([, h]) => h),
        mine.map(([k]) => t.get(`${fmt}.lora.${k}`)),
      );
      return { m, adapters: mine.map(([k]) => k) };
    }
    m.setTraining(false);
    return { m, count: targets.length };
  };
  // a CPU tensor's copy on device d
  const on = (h, d) => {
    const [buf, dt] = h.dataSync();
    const View = { int64: BigInt64Array, float32: Float32Array }[dt];
    return b.fromData(new View(buf), h.shape(), dt, dt, d, false);
  };
  const ids = t.get('input_ids'),
    mask = t.get('attention_mask'),
    short = t.get('short_ids');
  const maskRows = Array.from(new BigInt64Array(mask.dataSync()[0])).map(Number);
  const V = hf.vocab_size;
  // the largest difference over the unpadded positions, over the reference's largest |value|
  const rel = (got, want, rows) => {
    const a = values(got),
      w = values(want);
    let d = 0,
      m = 0;
    for (let i = 0; i < w.length; i++) {
      if (rows && !rows[Math.floor(i / V)]) continue;
      d = Math.max(d, Math.abs(a[i] - w[i]));
      m = Math.max(m, Math.abs(w[i]));
    }
    return d / m;
  };
  const greedy = { ...GREEDY, max_new_tokens: 6, min_new_tokens: 6 };
  const decode = async (m, d) => {
    const row = await m.startDecode(on(short, d), null, null, greedy, null);
    const got = [];
    for (let i = 0; i < 6; i++) got.push((await m.decodeStep([row]))[0]);
    await m.endDecode(row);
    return got;
  };
  b.setGradEnabled(false);
  for (const fmt of ['int8', 'q8_0', 'q4_0', 'nf4']) {
    const t0 = Date.now();
    const { m, count } = await build(fmt, false);
    const cpuTokens = await decode(m, 'cpu');
    await m.to(dev, null);
    const q = b.linearLayers(m).filter(([, , , f]) => f === fmt).length;
    const out = await m.forward({ input_ids: on(ids, dev), attention_mask: on(mask, dev) });
    const r1 = rel(out.logits, t.get(`${fmt}.logits`), maskRows);
    check(
      `quantized ${fmt} (${q} of ${count} layers) logits on ${dev}, 20 rows = transformers`,
      q === count && r1 < 1e-4,
      `rel. max |diff| ${r1.toExponential(2)}`,
    );
    const s = await m.forward({ input_ids: on(short, dev) });
    const r2 = rel(s.logits, t.get(`${fmt}.short_logits`));
    check(`quantized ${fmt} logits on ${dev}, 5 rows (row kernels) = transformers`, r2 < 1e-4, `rel. max |diff| ${r2.toExponential(2)}`);
    const tokens = await decode(m, dev);
    check(`quantized ${fmt} decoding rows on ${dev} = CPU`, tokens.join() === cpuTokens.join(), `${tokens.join(' ')} (CPU ${cpuTokens.join(' ')})`);
    await m.to(null, 'bfloat16');
    const s16 = await m.forward({ input_ids: on(short, dev) });
    const r3 = rel(s16.logits, t.get(`${fmt}.short_logits`));
    check(`quantized ${fmt} logits on ${dev} in bfloat16, 5 rows`, r3 < 0.05, `rel. max |diff| ${r3.toExponential(2)} (${Date.now() - t0} ms)`);
    m.dispose();
  }
  b.setGradEnabled(true);
  for (const fmt of ['nf4', 'int8']) {
    const { m, adapters } = await build(fmt, true);
    await m.to(dev, null);
    m.setTraining(true);
    const out = await m.forward({ input_ids: on(ids, dev), attention_mask: on(mask, dev), labels: on(t.get('labels'), dev) });
    const loss = out.loss.item();
    await out.loss.backward(null, false);
    const [pn, ph] = m.namedParameters();
    const params = new Map(pn.map((k, i) => [k, ph[i]]));
    let worst = 0;
    for (const k of adapters) {
      const g = params.get(k).grad();
      worst = Math.max(worst, g ? rel(g, t.get(`${fmt}.grad.${k}`)) : Infinity);
    }
    const want = t.get(`${fmt}.loss`).item();
    check(
      `QLoRA (${fmt}) step on ${dev}: loss and ${adapters.length} adapter gradients = peft`,
      adapters.length === 12 && Math.abs(loss - want) < 1e-4 && worst < 1e-4,
      `loss ${loss.toFixed(6)} vs ${want.toFixed(6)}; gradients rel. max |diff| ${worst.toExponential(2)}`,
    );
    m.dispose();
  }
}
