// The decoding key/value cache grows in place (buffers with room for more positions, replaced by
// longer ones when full): tokens decoded with it over several growths must be the ones a full
// forward pass without any cache picks (teacher forcing), and rows decoded together over several
// growths the ones each gets alone.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';

const FIX = path.join(FIXTURES, 'llama');
const NEW = 150; // past the buffers' first lengths (64, then 1.5 × what is held)

describe('KV cache: growing in place', () => {
  it('greedy tokens over several growths are the argmax of a forward pass without cache (float32)', async () => {
    const llm = (await et.nn.LlamaForCausalLM.fromPretrained(FIX)).eval();
    const prompt = [1, 5, 9, 13, 17, 21, 25];
    const { sequences } = await et.noGrad(() => llm.generate({ inputIds: et.tensor([prompt], { dtype: 'int64' }) }, { maxNewTokens: NEW, minNewTokens: NEW }));
    const seq = (sequences!.toArray() as number[][])[0].map(Number);
    expect(seq.length).toBe(prompt.length + NEW);
    const { logits } = await et.noGrad(() => llm.forward({ inputIds: et.tensor([seq], { dtype: 'int64' }) }));
    const rows = (logits.toArray() as number[][][])[0];
    let worst = 0;
    for (let i = prompt.length; i < seq.length; i++) {
      const row = rows[i - 1];
      const best = Math.max(...row);
      worst = Math.max(worst, best - row[seq[i]]); // 0 where the decoded token is the argmax
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it("a bfloat16 prompt pass (the rows' norm and rotary kernels, the causal attention kernel) picks what a bfloat16 forward pass rates best", async () => {
    // the forward pass runs ATen's composite ops and SDPA; the prompt pass sums in other orders, so
    // a token may lose to forward's best by bfloat16 roundings only: 1/64 of the logits' spread
    const llm = (await et.nn.LlamaForCausalLM.fromPretrained(FIX)).eval();
    await llm.to({ dtype: 'bfloat16' });
    for (const L of [2, 5, 17, 40, 70]) {
      const prompt = Array.from({ length: L }, (_, i) => 3 + ((i * 11 + L) % 120));
      const { sequences } = await et.noGrad(() => llm.generate({ inputIds: et.tensor([prompt], { dtype: 'int64' }) }, { maxNewTokens: 12, minNewTokens: 12 }));
      const seq = (sequences!.toArray() as number[][])[0].map(Number);
      const { logits } = await et.noGrad(() => llm.forward({ inputIds: et.tensor([seq], { dtype: 'int64' }) }));
      const rows = (logits.to({ dtype: 'float32' }).toArray() as number[][][])[0];
      for (let i = L; i < seq.length; i++) {
        const row = rows[i - 1];
        const best = Math.max(...row),
          spread = best - Math.min(...row);
        expect(best - row[seq[i]], `prompt ${L}, token ${i - L}`).toBeLessThanOrEqual(spread / 64);
      }
    }
  });

  it('rows decoded together over several growths get the tokens each gets alone (bfloat16)', async () => {
    const llm = (await et.nn.LlamaForCausalLM.fromPretrained(FIX)).eval();
    await llm.to({ dtype: 'bfloat16' });
    const prompts = [[1, 5, 9], Array.from({ length: 70 }, (_, i) => 3 + ((i * 7) % 90)), [1, 60, 61, 62]];
    const opts = (i: number) => ({ maxNewTokens: [NEW, 40, 100][i], minNewTokens: [NEW, 40, 100][i] });
    const gen = (i: number, batch?: et.nn.DecodeBatch) =>
      et
        .noGrad(() => llm.generate({ inputIds: et.tensor([prompts[i]], { dtype: 'int64' }) }, { ...opts(i), ...(batch ? { batch } : {}) }))
        .then((r) => (r.newTokens.toArray() as number[][])[0].map(Number));
    const solo: number[][] = [];
    for (let i = 0; i < prompts.length; i++) solo.push(await gen(i));
    const batch = new et.nn.DecodeBatch(llm);
    const together = await Promise.all(prompts.map((_, i) => gen(i, batch)));
    expect(together).toEqual(solo);
    expect(together.map((t) => t.length)).toEqual([NEW, 40, 100]);
  });
});
