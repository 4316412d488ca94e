// Prompt prefix caching (LlamaForCausalLM.setPrefixCache): a prompt that begins with a kept
// prompt's positions runs only the rest. Checked against transformers' greedy tokens (the llama and
// sliding-window mistral fixtures, written by scripts/fixtures/llama.py and mistral.py): the same
// prompt again, and the prompt extended by its own first greedy tokens, decode HF's tokens with the
// kept positions reused; bfloat16, int8 and q4_0 decode bit for bit the tokens they decode without the
// cache (generate and DecodeBatch); the store stays within its size, empties when a weight
// changes, and refuses bad sizes.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';

const fx = (name: string) => path.join(FIXTURES, name);
const ids = (a: number[]) => et.tensor([a], { dtype: 'int64' });
const row = (t: et.Tensor) => (t.toArray() as number[][])[0].map(Number);

/** A quantized layer's tensors by their names (nn.QuantizedWeight's), from the model's state dict. */
async function quantizedOf(m: et.nn.LlamaForCausalLM, layer: string): Promise<Record<string, et.Tensor>> {
  const out: Record<string, et.Tensor> = {};
  for (const [k, t] of m.stateDict()) if (k.startsWith(`${layer}.`)) out[k.slice(layer.length + 1).replace(/^weight\.(?!$)/, '')] = t;
  return out;
}

describe('prompt prefix cache', () => {
  for (const name of ['llama', 'mistral']) {
    it(`${name}: a reused prompt and prefix decode transformers' greedy tokens (float32)`, async () => {
      const llm = (await et.nn.LlamaForCausalLM.fromPretrained(fx(name))).eval();
      const io = (await et.io.loadSafetensors(path.join(fx(name), 'io.safetensors'))).tensors;
      const prompt = row(io.get('input_ids')!.slice(0, 0, 1)); // row 0: no padding
      const want = row(io.get('greedy_ids')!.slice(0, 0, 1)); // HF: prompt + 8 greedy tokens
      const T = prompt.length;
      expect(want.slice(T).includes(2), 'the reference ends before its 8 tokens').toBe(false);
      const gen = async (p: number[], n: number) =>
        row((await et.noGrad(() => llm.generate({ inputIds: ids(p) }, { maxNewTokens: n, eosTokenId: 2, padTokenId: 0 }))).sequences!);
      await llm.setPrefixCache({ maxBytes: 1 << 20 });
      expect(await gen(prompt, 8)).toEqual(want); // fills the cache
      expect(await gen(prompt, 8)).toEqual(want); // all but its last two positions reused
      expect(await gen(want.slice(0, T + 4), 4)).toEqual(want); // the prompt reused, 4 of its tokens run
      const s = await llm.prefixCacheStats();
      expect(s).toMatchObject({ capacity: 1 << 20, lookups: 3, hits: 2, reused: T - 2 + T });
      expect(s.entries).toBe(1); // the longer prompt replaced the one it extends
      const perPosition = 2 * llm.config.num_hidden_layers * llm.config.num_key_value_heads * (llm.config.head_dim ?? 16) * 4;
      expect(s.bytes).toBe((T + 4) * perPosition);
    });
  }

  for (const mode of ['bfloat16', 'int8', 'q4_0'] as const) {
    it(`${mode}: the tokens decoded without the cache, bit for bit (generate and DecodeBatch)`, async () => {
      const llm = (await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'))).eval();
      await llm.to({ dtype: 'bfloat16' });
      if (mode !== 'bfloat16') await et.nn.quantize(llm, mode);
      // a shared 12-position instruction, then each its own question (odd lengths, up to 48: a
      // bfloat16 prompt of more than 64 takes oneDNN's products, which depend on the row count)
      const shared = Array.from({ length: 12 }, (_, i) => 3 + ((i * 29) % 120));
      const prompts = [5, 17, 30, 36, 3].map((n, k) => [...shared, ...Array.from({ length: n }, (_, i) => 3 + ((i * 13 + k * 31) % 120))]);
      const opts = { maxNewTokens: 16, minNewTokens: 16 };
      const alone: number[][] = [];
      for (const p of prompts) alone.push(row((await et.noGrad(() => llm.generate({ inputIds: ids(p) }, opts))).newTokens));
      await llm.setPrefixCache({ maxBytes: 1 << 22 });
      for (let k = 0; k < prompts.length; k++)
        expect(row((await et.noGrad(() => llm.generate({ inputIds: ids(prompts[k]) }, opts))).newTokens), `prompt ${k}`).toEqual(alone[k]);
      // again, concurrently in a batch: every prompt now found whole
      const batch = new et.nn.DecodeBatch(llm);
      const together = await Promise.all(prompts.map((p) => batch.generate({ inputIds: ids(p) }, opts).then((r) => row(r.newTokens))));
      expect(together).toEqual(alone);
      const s = await llm.prefixCacheStats();
      expect(s.lookups).toBe(10);
      expect(s.hits).toBe(9); // all but the first
      // first pass: the 12 shared positions for prompts 1…4 (prompt 4's own 3 run); the batch: each
      // whole prompt but its last two positions
      expect(s.reused).toBe(4 * 12 + prompts.reduce((a, p) => a + p.length - 2, 0));
    });
  }

  it('stays within its size, keeps no prompt larger than it, empties when a weight changes', async () => {
    const llm = (await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'))).eval();
    const perPosition = 2 * 2 * 2 * 16 * 4; // layers × (k, v) × kv heads × head_dim × float32
    const gen = (p: number[]) => et.noGrad(() => llm.generate({ inputIds: ids(p) }, { maxNewTokens: 2 }));
    const prompt = (k: number, n: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 7 + k * 41) % 120));
    await llm.setPrefixCache({ maxBytes: 25 * perPosition });
    for (let k = 0; k < 4; k++) await gen(prompt(k, 10)); // room for two of 10 positions
    let s = await llm.prefixCacheStats();
    expect(s.entries).toBe(2);
    expect(s.bytes).toBe(20 * perPosition);
    await gen(prompt(9, 30)); // larger than the whole cache: run, not kept
    s = await llm.prefixCacheStats();
    expect(s.entries).toBe(2);
    await gen(prompt(3, 10)); // the latest kept: found
    expect((await llm.prefixCacheStats()).hits).toBe(1);
    // a weight changed in place: nothing kept holds for it
    const w = llm.namedParameters().find(([n]) => n === 'model.layers.0.mlp.down_proj.weight')![1];
    await llm.loadStateDict(new Map([['model.layers.0.mlp.down_proj.weight', w.mul(0.5)]]), { strict: false });
    const fresh = (await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'))).eval();
    await fresh.loadStateDict(new Map([['model.layers.0.mlp.down_proj.weight', w.mul(1)]]), { strict: false });
    const want = row((await et.noGrad(() => fresh.generate({ inputIds: ids(prompt(3, 10)) }, { maxNewTokens: 6 }))).newTokens);
    expect(row((await et.noGrad(() => llm.generate({ inputIds: ids(prompt(3, 10)) }, { maxNewTokens: 6 }))).newTokens)).toEqual(want);
    s = await llm.prefixCacheStats();
    expect(s.hits).toBe(1); // not found again after the change
    expect(s.entries).toBe(1);
    // a prompt of embeddings is not looked up; 0 turns it off and empties it
    await et.noGrad(() => llm.generate({ inputsEmbeds: et.randn([1, 5, 64]) }, { maxNewTokens: 2 }));
    expect((await llm.prefixCacheStats()).lookups).toBe(s.lookups);
    await llm.setPrefixCache({ maxBytes: 0 });
    expect(await llm.prefixCacheStats()).toEqual({ capacity: 0, bytes: 0, entries: 0, lookups: 0, hits: 0, reused: 0 });
    await gen(prompt(3, 10));
    expect((await llm.prefixCacheStats()).lookups).toBe(0);
  });

  for (const format of ['int8', 'nf4'] as const)
    it(`${format}: empties when a quantized layer's tensors are set anew (loadStateDict)`, async () => {
      const load = async () => {
        const m = (await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'))).eval();
        await et.nn.quantize(m, format);
        return m;
      };
      const llm = await load();
      const p = Array.from({ length: 14 }, (_, i) => 3 + ((i * 11) % 120));
      const gen = async (m: et.nn.LlamaForCausalLM) => row((await et.noGrad(() => m.generate({ inputIds: ids(p) }, { maxNewTokens: 6 }))).newTokens);
      await llm.setPrefixCache({ maxBytes: 1 << 22 });
      await gen(llm);
      await gen(llm);
      expect((await llm.prefixCacheStats()).hits).toBe(1);
      // another weight for one layer, in its quantized form (the quantized tensors are not
      // parameters: the cache had kept positions computed with the old ones)
      const layer = 'model.layers.0.self_attn.v_proj';
      const w = (await et.nn.dequantizeWeight({ format, shape: [32, 64], tensors: await quantizedOf(llm, layer) })).mul(-2);
      const q = await et.nn.quantizeWeight(w, format);
      const sd = new Map(Object.entries(q.tensors).map(([k, t]) => [k === 'weight' || k === 'SCB' ? `${layer}.${k}` : `${layer}.weight.${k}`, t]));
      await llm.loadStateDict(sd, { strict: false });
      const fresh = await load();
      await fresh.loadStateDict(sd, { strict: false });
      expect(await gen(llm)).toEqual(await gen(fresh));
      expect((await llm.prefixCacheStats()).hits).toBe(1); // not found again after the change
    });

  it('refuses sizes that are not whole bytes or exceed the memory, and unknown options', async () => {
    const llm = await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'));
    for (const bad of [-1, 1.5, Number.NaN, '1024', 2 ** 60, null]) {
      await expect(llm.setPrefixCache({ maxBytes: bad as number })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    }
    await expect(llm.setPrefixCache({ maxBytes: 1, size: 2 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(llm.setPrefixCache(null as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    expect((await llm.prefixCacheStats()).capacity).toBe(0);
  });
});
