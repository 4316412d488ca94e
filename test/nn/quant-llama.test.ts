// A quantized LLaMA against HF transformers (test/fixtures/quant_llama, scripts/fixtures/quant_llama.py):
// loaded with fromPretrained({ quantize }) its logits equal those of transformers' float32 model on
// the reference-dequantized weights (a prompt of 20 rows takes the dequantize-then-multiply path,
// one of 5 the row kernels), stay within a stated cosine of the float model's, and a QLoRA step's
// loss and adapter gradients equal peft's LoRA over the dequantized base; decoding rows together
// gives each row the tokens it gets alone; misuse is refused by name.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

const base = path.join(FIXTURES, 'llama');
const io = async () => (await et.io.loadSafetensors(path.join(FIXTURES, 'quant_llama', 'io.safetensors'))).tensors;
const FORMATS = ['int8', 'q8_0', 'q4_0', 'nf4'] as const;
// the logits' cosine to the float model's, per format (random weights of std 0.1, 2 layers: measured
// 0.99982 int8, 0.99986 q8_0, 0.978 q4_0, 0.971 nf4)
const COSINE = { int8: 0.9995, q8_0: 0.9995, q4_0: 0.95, nf4: 0.95 };

const cosine = (a: et.Tensor, b: et.Tensor): number => {
  const x = a.flatten(),
    y = b.flatten();
  return x.mul(y).sum().item() / Math.sqrt(x.mul(x).sum().item() * y.mul(y).sum().item());
};
const rel = (a: et.Tensor, b: et.Tensor): number => maxAbsDiff(a, b) / b.abs().max().item();

describe('quantized LLaMA = transformers on the dequantized weights', () => {
  for (const fmt of FORMATS) {
    it(`${fmt}: logits of a padded batch and of a short prompt`, async () => {
      const t = await io();
      const m = await et.nn.LlamaForCausalLM.fromPretrained(base, { quantize: fmt });
      const layers = et.nn.linearLayers(m);
      expect(layers.filter((l) => l.format === fmt).length).toBe(14);
      expect(layers.find((l) => l.name === 'lm_head')!.format).toBeNull();
      const { logits } = await et.noGrad(() => m.forward({ inputIds: t.get('input_ids')!, attentionMask: t.get('attention_mask')! }));
      const valid = t.get('attention_mask')!.unsqueeze(-1).eq(1);
      const masked = (x: et.Tensor) => et.where(valid, x, 0);
      expect(rel(masked(logits), masked(t.get(`${fmt}.logits`)!))).toBeLessThan(1e-5);
      const short = (await et.noGrad(() => m.forward({ inputIds: t.get('short_ids')! }))).logits;
      expect(rel(short, t.get(`${fmt}.short_logits`)!)).toBeLessThan(1e-5);
      expect(cosine(masked(logits), masked(t.get('float.logits')!))).toBeGreaterThan(COSINE[fmt]);
      // bfloat16 activations (the row kernels' bfloat16 path): still close to the reference
      const b16 = await et.nn.LlamaForCausalLM.fromPretrained(base, { quantize: fmt, dtype: 'bfloat16' });
      const s16 = (await et.noGrad(() => b16.forward({ inputIds: t.get('short_ids')! }))).logits.to({ dtype: 'float32' });
      expect(cosine(s16, t.get(`${fmt}.short_logits`)!)).toBeGreaterThan(0.999);
    });
  }

  for (const fmt of ['nf4', 'int8'] as const) {
    it(`${fmt}: a QLoRA step's loss and adapter gradients equal peft's LoRA on the dequantized base`, async () => {
      const t = await io();
      const m = await et.nn.LlamaForCausalLM.fromPretrained(base, { quantize: fmt });
      et.nn.applyLora(m, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
      const prefix = `${fmt}.lora.`;
      const adapters = new Map([...t].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
      expect(adapters.size).toBe(12);
      await m.loadStateDict(adapters, { strict: false });
      m.train();
      const { loss } = await m.forward({ inputIds: t.get('input_ids')!, attentionMask: t.get('attention_mask')!, labels: t.get('labels')! });
      expect(Math.abs(loss!.item() - t.get(`${fmt}.loss`)!.item())).toBeLessThan(1e-5);
      await loss!.backward();
      const params = new Map(m.namedParameters());
      for (const name of adapters.keys()) {
        const g = params.get(name)!.grad!;
        expect(maxAbsDiff(g, t.get(`${fmt}.grad.${name}`)!), name).toBeLessThan(1e-5);
      }
      // only the adapters train: the quantized weights are buffers, the rest is frozen
      expect(m.trainableParameters().length).toBe(12);
    });
  }
});

describe('quantized decoding rows', () => {
  it('rows decoded together get the tokens each gets alone (q4_0, bfloat16)', async () => {
    const m = await et.nn.LlamaForCausalLM.fromPretrained(base, { quantize: 'q4_0', dtype: 'bfloat16' });
    const prompts = [
      [1, 5, 9],
      [1, 7, 3, 3, 8, 2, 11, 4, 6],
      [1, 60, 61],
    ];
    const opts = { maxNewTokens: 8 };
    const alone = [];
    for (const p of prompts) alone.push((await et.noGrad(() => m.generate({ inputIds: et.tensor([p], { dtype: 'int64' }) }, opts))).newTokens.toArray());
    const batch = new et.nn.DecodeBatch(m);
    const together = await Promise.all(prompts.map((p) => et.noGrad(() => m.generate({ inputIds: et.tensor([p], { dtype: 'int64' }) }, { ...opts, batch }))));
    expect(together.map((r) => r.newTokens.toArray())).toEqual(alone);
  });
});

describe('quantized loading: memory', () => {
  it.skipIf(process.platform !== 'linux')('never holds the float model: peak resident memory ≤ the quantized model + a 64 MiB piece', async () => {
    // 8 layers of 10.5M float32 weights: 336 MB of Linear weights in the file, 84 MB in int8
    const cfg = { vocab_size: 256, hidden_size: 1024, intermediate_size: 2048, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 8 };
    const dir = tmpdir();
    {
      const m = et.nn.LlamaForCausalLM.create(cfg);
      const sd = m.stateDict();
      await et.io.saveSafetensors(path.join(dir, 'model.safetensors'), sd);
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'llama', ...cfg }));
      for (const t of sd.values()) t.dispose(); // (freed now, not when collected)
      m.dispose();
    }
    et.cpu.emptyCache();
    // resident memory, the process's own peak (VmHWM) started over from now (Linux's clear_refs 5)
    const status = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
    fs.writeFileSync('/proc/self/clear_refs', '5');
    const before = status('VmRSS');
    const q = await et.nn.LlamaForCausalLM.fromPretrained(dir, { quantize: 'int8' });
    const peak = status('VmHWM') - before;
    const linear = et.nn
      .linearLayers(q)
      .filter((l) => l.format === 'int8')
      .reduce((a, l) => a + l.out * l.in, 0);
    expect(linear).toBe(8 * (4 * 1024 * 1024 + 3 * 1024 * 2048));
    // the int8 weights (84 MB), one 64 MiB piece read as float32, a weight being quantized, slack
    expect(peak).toBeLessThan(linear + 64 * 2 ** 20 + 64 * 2 ** 20);
    expect(peak).toBeLessThan(linear * 4 * 0.6); // the float model is 336 MB
  });
});

describe('quantize: misuse', () => {
  it('names the bad format, the layer and the block; a layer named twice', async () => {
    await rejectsWith(et.nn.LlamaForCausalLM.fromPretrained(base, { quantize: 'int4' as never }), 'ERR_INVALID_ARG', /int8, q8_0, q4_0, nf4.*opts\.quantize/);
    const m = et.nn.LlamaForCausalLM.create({
      vocab_size: 50,
      hidden_size: 96,
      intermediate_size: 192,
      num_hidden_layers: 1,
      num_attention_heads: 3,
      num_key_value_heads: 3,
    });
    await rejectsWith(
      et.nn.quantize(m, 'nf4'),
      'ERR_INVALID_ARG',
      /nf4's block of 64 does not divide the rows of weight 'model\.layers\.0\.self_attn\.q_proj\.weight' \(96 × 96\)/,
    );
    await rejectsWith(et.nn.quantize(m, 'int8', { skip: ['lm_hed'] }), 'ERR_INVALID_ARG', /Linear layer/);
    // a layer named twice (it had been quantized, then refused as already quantized), names not in an array
    const q = 'model.layers.0.self_attn.q_proj';
    await rejectsWith(et.nn.quantize(m, 'int8', { layers: [q, q] }), 'ERR_INVALID_ARG', /each layer named once.*options\.layers.*q_proj' twice/);
    await rejectsWith(et.nn.quantize(m, 'int8', { layers: q as never }), 'ERR_INVALID_ARG', /an array of Linear layer names.*options\.layers/);
    // checked for every layer before any is quantized: the model is left as it was
    expect(et.nn.linearLayers(m).every((l) => l.format === null)).toBe(true);
    await et.nn.quantize(m, 'q8_0', { skip: ['lm_head'] });
    await rejectsWith(et.nn.quantize(m, 'q8_0', { layers: ['model.layers.0.mlp.up_proj'] }), 'ERR_INVALID_ARG', /already quantized/);
    // a Linear on its own has no Linear layers inside it: refused, not passed over as a model with none
    const lone = et.nn.Linear.create({ in_features: 64, out_features: 8 });
    await rejectsWith(et.nn.quantize(lone, 'int8'), 'ERR_INVALID_ARG', /Linear layers inside it.*Linear, which has none/);
    expect(lone.stateDict().get('weight')!.dtype).toBe('float32');
    expect((await et.nn.quantize(et.nn.Mlp.create({ sizes: [64, 16, 8] }), 'int8')).sort()).toEqual(['layers.0', 'layers.1']);
  });
});
