// Checkpoints saved by transformers + bitsandbytes (issue 58): a tiny LLaMA in bitsandbytes' saved
// layout (test/fixtures/bnb_checkpoint, written by scripts/fixtures/bnb_checkpoint.py: the quantized
// bytes from the independent reference of scripts/fixtures/quant_reference.py, checked there
// against bitsandbytes' own Linear8bitLt / Linear4bit state dicts byte for byte; config.json written
// by transformers 5.18 itself) loads as it is, its logits within 1e-4 of max|logit| of HF
// LlamaForCausalLM run in float32 on the reference-dequantized weights; saving writes the same
// layout back, byte for byte; bad checkpoints are coded errors naming the tensor or config key.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { pythonFloat } from '../../lib/nn/bnb';
import { FIXTURES, tmpdir, rejectsWith } from '../helpers';

const DIR = path.join(FIXTURES, 'bnb_checkpoint');
const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'fixtures', 'bnb_checkpoint.py');
const FORMATS = ['int8', 'nf4'] as const;
const LLaMA = et.nn.LlamaForCausalLM;
const Q_PROJ = 'model.layers.0.self_attn.q_proj';

async function bytes(t: et.Tensor): Promise<Uint8Array> {
  const a = await t.contiguous().data();
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Every tensor of two safetensors files: the same names, dtypes, shapes and bytes. */
async function expectSameFile(ours: string, want: string): Promise<void> {
  const [a, b] = [(await et.io.loadSafetensors(ours)).tensors, (await et.io.loadSafetensors(want)).tensors];
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [k, t] of b) {
    const u = a.get(k)!;
    expect(`${u.dtype} [${u.shape}]`, k).toBe(`${t.dtype} [${t.shape}]`);
    expect(Buffer.compare(Buffer.from(await bytes(u)), Buffer.from(await bytes(t))), `${k} bytes`).toBe(0);
  }
}

/** A copy of a fixture folder whose tensors and config.json `edit` changes. */
async function edited(
  format: (typeof FORMATS)[number],
  edit: { tensors?: (sd: Map<string, et.Tensor>) => void; config?: (c: Record<string, unknown>) => void },
): Promise<string> {
  const dir = path.join(tmpdir(), format);
  fs.mkdirSync(dir, { recursive: true });
  const { tensors } = await et.io.loadSafetensors(path.join(DIR, format, 'model.safetensors'));
  edit.tensors?.(tensors);
  await et.io.saveSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  const config = JSON.parse(fs.readFileSync(path.join(DIR, format, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit.config?.(config);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

/** A Python with transformers, torch and safetensors: EMOTORCH_PYTHON, the dev venv, or python3. */
function python(): string | null {
  for (const p of [process.env.EMOTORCH_PYTHON, '/work/venv/bin/python', 'python3']) {
    if (p && spawnSync(p, ['-c', 'import torch, safetensors, transformers, numpy'], { encoding: 'utf8' }).status === 0) return p;
  }
  return null;
}
const PY = python();

describe('bitsandbytes checkpoints (transformers + bitsandbytes saved layout)', () => {
  for (const format of FORMATS) {
    it(`${format}: loads the quantized tensors as they are; logits equal HF's on the dequantized weights`, async () => {
      const llm = await LLaMA.fromPretrained(path.join(DIR, format), { dtype: 'float32' });
      const layers = et.nn.linearLayers(llm);
      expect(layers.filter((l) => l.format === format).length).toBe(14);
      expect(layers.find((l) => l.name === 'lm_head')!.format).toBeNull();
      const { tensors: io } = await et.io.loadSafetensors(path.join(DIR, format, 'io.safetensors'));
      const ids = io.get('input_ids')!;
      const { logits } = await llm.forward({ inputIds: ids, attentionMask: et.onesLike(ids) });
      const want = io.get('logits')!;
      expect(logits.shape).toEqual(want.shape);
      const max = want.abs().max().item();
      const diff = logits.sub(want).abs().max().item();
      expect(diff).toBeLessThanOrEqual(1e-4 * max);
      // the quantized tensors are the checkpoint's own, unchanged
      const sd = llm.stateDict();
      const { tensors: file } = await et.io.loadSafetensors(path.join(DIR, format, 'model.safetensors'));
      const suffixes =
        format === 'int8' ? ['.weight', '.SCB'] : ['.weight', '.weight.absmax', '.weight.nested_absmax', '.weight.quant_map', '.weight.nested_quant_map'];
      for (const s of suffixes) expect(Buffer.from(await bytes(sd.get(Q_PROJ + s)!)).equals(Buffer.from(await bytes(file.get(Q_PROJ + s)!))), s).toBe(true);
      llm.dispose();
    });
  }

  it("takes the config's dtype where none is given (transformers 5's dtype 'auto'), and opts.quantize only when it agrees", async () => {
    const llm = await LLaMA.fromPretrained(path.join(DIR, 'nf4'));
    expect(llm.stateDict().get('model.embed_tokens.weight')!.dtype).toBe('float16');
    llm.dispose();
    const same = await LLaMA.fromPretrained(path.join(DIR, 'int8'), { quantize: 'int8', dtype: 'bfloat16' });
    expect(same.stateDict().get('lm_head.weight')!.dtype).toBe('bfloat16');
    same.dispose();
    await rejectsWith(LLaMA.fromPretrained(path.join(DIR, 'int8'), { quantize: 'nf4' }), 'ERR_INVALID_ARG', /int8[\s\S]*opts\.quantize/);
  });

  for (const format of FORMATS) {
    it(`${format}: savePretrained writes the fixture's files back, byte for byte; the saved folder loads the same`, async () => {
      const llm = await LLaMA.fromPretrained(path.join(DIR, format), { dtype: 'auto' });
      const out = path.join(tmpdir(), format);
      await llm.savePretrained(out);
      await expectSameFile(path.join(out, 'model.safetensors'), path.join(DIR, format, 'model.safetensors'));
      // config.json as transformers wrote it: the same text (sorted keys, Python's floats)
      expect(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).toBe(fs.readFileSync(path.join(DIR, format, 'config.json'), 'utf8'));
      const again = await LLaMA.fromPretrained(out, { dtype: 'auto' });
      const ids = (await et.io.loadSafetensors(path.join(DIR, format, 'io.safetensors'))).tensors.get('input_ids')!;
      const [a, b] = [(await llm.forward({ inputIds: ids })).logits, (await again.forward({ inputIds: ids })).logits];
      expect(a.sub(b).abs().max().item()).toBe(0);
      llm.dispose();
      again.dispose();
    });
  }

  it('saves a model quantized by emotorch in the same layout (quantization_config as transformers writes it), and reads it back', async () => {
    const float = path.join(FIXTURES, 'llama');
    for (const format of FORMATS) {
      const llm = await LLaMA.fromPretrained(float, { quantize: format, dtype: 'bfloat16' });
      const out = path.join(tmpdir(), format);
      await llm.savePretrained(out);
      const config = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      const want = JSON.parse(fs.readFileSync(path.join(DIR, format, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;
      // the fixture's config is transformers' own BitsAndBytesConfig.to_dict(); emotorch's compute dtype is the model's
      expect(config.quantization_config).toEqual({ ...want.quantization_config, ...(format === 'nf4' ? { bnb_4bit_compute_dtype: 'bfloat16' } : {}) });
      expect(config.dtype).toBe('bfloat16');
      expect(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).toMatch(/"llm_int8_threshold": 6\.0,/);
      const { tensors } = await et.io.loadSafetensors(path.join(out, 'model.safetensors'));
      const keys = [...tensors.keys()].filter((k) => k.startsWith(`${Q_PROJ}.`)).sort();
      expect(keys).toEqual(
        format === 'int8'
          ? [`${Q_PROJ}.SCB`, `${Q_PROJ}.weight`, `${Q_PROJ}.weight_format`]
          : ['absmax', 'nested_absmax', 'nested_quant_map', 'quant_map', 'quant_state.bitsandbytes__nf4']
              .map((k) => `${Q_PROJ}.weight.${k}`)
              .concat(`${Q_PROJ}.weight`)
              .sort(),
      );
      if (format === 'nf4') {
        const state = JSON.parse(Buffer.from(await bytes(tensors.get(`${Q_PROJ}.weight.quant_state.bitsandbytes__nf4`)!)).toString('utf8'));
        const offset = (await llm.stateDict().get(`${Q_PROJ}.weight.offset`)!.data())[0];
        expect(state).toEqual({
          quant_type: 'nf4',
          blocksize: 64,
          dtype: 'bfloat16',
          shape: [64, 64],
          nested_blocksize: 256,
          nested_dtype: 'float32',
          nested_offset: offset,
        });
      }
      const back = await LLaMA.fromPretrained(out, { dtype: 'bfloat16' });
      const [a, b] = [llm.stateDict(), back.stateDict()];
      expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
      for (const [k, t] of a) expect(Buffer.from(await bytes(b.get(k)!)).equals(Buffer.from(await bytes(t))), k).toBe(true);
      llm.dispose();
      back.dispose();
    }
  });

  it('refuses to save q8_0 / q4_0 layers in a Hugging Face folder (no bitsandbytes layout)', async () => {
    const llm = await LLaMA.fromPretrained(path.join(FIXTURES, 'llama'), { quantize: 'q4_0' });
    await rejectsWith(llm.savePretrained(tmpdir()), 'ERR_INVALID_ARG', /q4_0[\s\S]*bitsandbytes/);
    llm.dispose();
  });

  it('a missing absmax, a mis-shaped SCB, a corrupt quant state, a NaN or an infinity in its floats: ERR_STATE_DICT naming the tensor', async () => {
    const noAbsmax = await edited('nf4', { tensors: (sd) => sd.delete(`${Q_PROJ}.weight.absmax`) });
    await rejectsWith(LLaMA.fromPretrained(noAbsmax), 'ERR_STATE_DICT', /model\.layers\.0\.self_attn\.q_proj\.weight\.absmax' is missing/);
    const shortScb = await edited('int8', { tensors: (sd) => sd.set(`${Q_PROJ}.SCB`, sd.get(`${Q_PROJ}.SCB`)!.slice(0, 0, 63)) });
    await rejectsWith(LLaMA.fromPretrained(shortScb), 'ERR_STATE_DICT', /q_proj\.SCB' has shape \[63\], expected \[64\]/);
    const corrupt = await edited('nf4', {
      tensors: (sd) =>
        sd.set(`${Q_PROJ}.weight.quant_state.bitsandbytes__nf4`, et.tensor(new TextEncoder().encode('{"quant_type": "nf4", "blo'), { dtype: 'uint8' })),
    });
    await rejectsWith(LLaMA.fromPretrained(corrupt), 'ERR_STATE_DICT', /q_proj\.weight\.quant_state\.bitsandbytes__nf4' is not [\s\S]*JSON/);
    // a quant state far longer than its JSON takes: refused from the header, never read and parsed
    const padded = await edited('nf4', {
      tensors: (sd) => {
        const k = `${Q_PROJ}.weight.quant_state.bitsandbytes__nf4`;
        const text = Buffer.from(sd.get(k)!.dataSync() as Uint8Array).toString('utf8');
        sd.set(k, et.tensor(new TextEncoder().encode(text.replace('{', '{' + ' '.repeat(70000))), { dtype: 'uint8' }));
      },
    });
    await rejectsWith(
      LLaMA.fromPretrained(padded),
      'ERR_STATE_DICT',
      /bitsandbytes__nf4' is 70\d\d\d bytes, more than a quant state's JSON takes \(at most 65536\)/,
    );
    const wrongShape = await edited('nf4', {
      tensors: (sd) => {
        const k = `${Q_PROJ}.weight.quant_state.bitsandbytes__nf4`;
        const text = Buffer.from(sd.get(k)!.dataSync() as Uint8Array)
          .toString('utf8')
          .replace('"shape": [64, 64]', '"shape": [32, 128]');
        sd.set(k, et.tensor(new TextEncoder().encode(text), { dtype: 'uint8' }));
      },
    });
    await rejectsWith(
      LLaMA.fromPretrained(wrongShape),
      'ERR_STATE_DICT',
      /q_proj\.weight\.quant_state\.bitsandbytes__nf4' has shape \[32,128\], the layer \[64, 64\]/,
    );
    const int8AsFloat = await edited('int8', { tensors: (sd) => sd.delete(`${Q_PROJ}.SCB`) });
    await rejectsWith(LLaMA.fromPretrained(int8AsFloat), 'ERR_STATE_DICT', /q_proj\.SCB' is missing/);
    // a NaN or an infinity among the quant state's floats (each layer's products would be NaN)
    const poisoned = (key: string, at: number, v: number) => (sd: Map<string, et.Tensor>) => {
      const t = sd.get(key)!;
      const a = Float32Array.from(t.dataSync() as Float32Array);
      a[at] = v;
      sd.set(key, et.tensor(a, { shape: t.shape }));
    };
    const nanScb = await edited('int8', { tensors: poisoned(`${Q_PROJ}.SCB`, 5, NaN) });
    await rejectsWith(LLaMA.fromPretrained(nanScb), 'ERR_STATE_DICT', /q_proj\.SCB' has NaN or infinite values/);
    for (const k of ['quant_map', 'nested_absmax', 'nested_quant_map']) {
      const infMap = await edited('nf4', { tensors: poisoned(`${Q_PROJ}.weight.${k}`, 0, -Infinity) });
      await rejectsWith(LLaMA.fromPretrained(infMap), 'ERR_STATE_DICT', new RegExp(`q_proj\\.weight\\.${k}' has NaN or infinite values`));
    }
  });

  it('what emotorch does not implement (fp4, no double quantization, an int8 threshold but 6, another block size, a column weight_format, GPTQ): ERR_FORMAT naming the key', async () => {
    const fp4 = await edited('nf4', { config: (c) => ((c.quantization_config as Record<string, unknown>).bnb_4bit_quant_type = 'fp4') });
    await rejectsWith(LLaMA.fromPretrained(fp4), 'ERR_FORMAT', /quantization_config\.bnb_4bit_quant_type: 'fp4'/);
    const single = await edited('nf4', { config: (c) => ((c.quantization_config as Record<string, unknown>).bnb_4bit_use_double_quant = false) });
    await rejectsWith(LLaMA.fromPretrained(single), 'ERR_FORMAT', /quantization_config\.bnb_4bit_use_double_quant/);
    const threshold = await edited('int8', { config: (c) => ((c.quantization_config as Record<string, unknown>).llm_int8_threshold = 0) });
    await rejectsWith(
      LLaMA.fromPretrained(threshold),
      'ERR_FORMAT',
      /quantization_config\.llm_int8_threshold: 0: emotorch's int8 layers take \|x\| ≥ 6\.0 as outliers/,
    );
    const gptq = await edited('int8', { config: (c) => (c.quantization_config = { quant_method: 'gptq', bits: 4 }) });
    await rejectsWith(LLaMA.fromPretrained(gptq), 'ERR_FORMAT', /quantization_config\.quant_method: 'gptq'/);
    const block = await edited('nf4', {
      tensors: (sd) => {
        const k = `${Q_PROJ}.weight.quant_state.bitsandbytes__nf4`;
        const text = Buffer.from(sd.get(k)!.dataSync() as Uint8Array)
          .toString('utf8')
          .replace('"blocksize": 64', '"blocksize": 128');
        sd.set(k, et.tensor(new TextEncoder().encode(text), { dtype: 'uint8' }));
      },
    });
    await rejectsWith(LLaMA.fromPretrained(block), 'ERR_FORMAT', /q_proj\.weight\.quant_state\.bitsandbytes__nf4'[\s\S]*blocksize 128/);
    const col = await edited('int8', { tensors: (sd) => sd.set(`${Q_PROJ}.weight_format`, et.tensor(new Uint8Array([1]), { shape: [], dtype: 'uint8' })) });
    await rejectsWith(LLaMA.fromPretrained(col), 'ERR_FORMAT', /q_proj\.weight_format' is 1 \(col32\)/);
  });

  it("writes floats as Python's repr (json.dumps), so the quant state's bytes are bitsandbytes' own", () => {
    // Python 3.11: repr(x) of each
    const cases: Array<[number, string]> = [
      [0.052535295486450195, '0.052535295486450195'],
      [1e-6, '1e-06'],
      [6, '6.0'],
      [1e16, '1e+16'],
      [1e15, '1000000000000000.0'],
      [0.0001, '0.0001'],
      [1.5e-5, '1.5e-05'],
      [-3.25e-7, '-3.25e-07'],
      [123456.789, '123456.789'],
      [2 ** -30, '9.313225746154785e-10'],
      [-0, '-0.0'],
      [100, '100.0'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [5e-324, '5e-324'],
      [0.1, '0.1'],
    ];
    for (const [x, want] of cases) expect(pythonFloat(x)).toBe(want);
  });

  it.skipIf(!PY)('the fixture script writes the committed fixture again, byte for byte', { timeout: 300_000 }, async () => {
    const out = tmpdir();
    const r = spawnSync(PY!, ['-P', SCRIPT, '--out', out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    for (const format of FORMATS) {
      for (const f of ['model.safetensors', 'io.safetensors']) await expectSameFile(path.join(out, format, f), path.join(DIR, format, f));
      expect(fs.readFileSync(path.join(out, format, 'config.json'), 'utf8')).toBe(fs.readFileSync(path.join(DIR, format, 'config.json'), 'utf8'));
    }
  });
});
