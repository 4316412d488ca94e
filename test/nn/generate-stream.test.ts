// LlamaForCausalLM.generate's streaming and cancellation: onTokens gets every step's tokens (all
// of them before the promise resolves, equal to newTokens), a signal stops the loop at the next
// step and rejects with ERR_ABORTED, and misuse is refused by name.
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { rejectsWith } from '../helpers';

const llm = et.nn.LlamaForCausalLM.create({
  vocab_size: 64,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 2,
  max_position_embeddings: 4096,
  eos_token_id: 63,
  pad_token_id: 0,
}).eval();
const inputIds = et.tensor(
  [
    [1, 2, 3, 4],
    [0, 5, 6, 7],
  ],
  { dtype: 'int64' },
);
const attentionMask = et.tensor(
  [
    [1, 1, 1, 1],
    [0, 1, 1, 1],
  ],
  { dtype: 'int64' },
);

describe('generate: onTokens and signal', () => {
  it('streams each step of a batch, all before it resolves, equal to the result (greedy and sampled)', async () => {
    for (const opts of [{}, { doSample: true, temperature: 0.8, topK: 10 }]) {
      et.manualSeed(3);
      const plain = await llm.generate({ inputIds, attentionMask }, { maxNewTokens: 9, minNewTokens: 9, ...opts });
      et.manualSeed(3);
      const steps: number[][] = [];
      const streamed = await llm.generate({ inputIds, attentionMask }, { maxNewTokens: 9, minNewTokens: 9, ...opts, onTokens: (ids) => steps.push(ids) });
      expect(steps.length).toBe(9);
      expect(steps[0].length).toBe(2);
      const cols = streamed.newTokens.toArray() as number[][];
      expect(steps.map((s) => s[0])).toEqual(cols[0].map(Number));
      expect(steps.map((s) => s[1])).toEqual(cols[1].map(Number));
      expect(cols).toEqual(plain.newTokens.toArray());
    }
  });

  it('a listener that throws does not stop generation', async () => {
    const { newTokens } = await llm.generate(
      { inputIds },
      {
        maxNewTokens: 5,
        minNewTokens: 5,
        onTokens: () => {
          throw new Error('listener');
        },
      },
    );
    expect(newTokens.shape).toEqual([2, 5]);
  });

  it('an aborted signal stops the loop at the next step (ERR_ABORTED), before any work when already aborted', async () => {
    const pre = new AbortController();
    pre.abort('gone');
    await rejectsWith(llm.generate({ inputIds }, { signal: pre.signal }), 'ERR_ABORTED', /gone/);
    const ac = new AbortController();
    let seen = 0;
    await rejectsWith(
      llm.generate(
        { inputIds },
        {
          maxNewTokens: 3000,
          minNewTokens: 3000,
          signal: ac.signal,
          onTokens: () => {
            if (++seen === 3) ac.abort('enough');
          },
        },
      ),
      'ERR_ABORTED',
      /enough/,
    );
    expect(seen).toBeGreaterThanOrEqual(3);
    expect(seen).toBeLessThan(3000);
    // beam search stops too
    const bc = new AbortController();
    setTimeout(() => bc.abort('late'), 20);
    await rejectsWith(llm.generate({ inputIds }, { maxNewTokens: 3000, minNewTokens: 3000, numBeams: 3, signal: bc.signal }), 'ERR_ABORTED', /late/);
    // and the model works on
    expect((await llm.generate({ inputIds }, { maxNewTokens: 2 })).newTokens.shape[0]).toBe(2);
  });

  it('refuses a non-function onTokens, onTokens with beams, and a signal that is not an AbortSignal', async () => {
    await rejectsWith(llm.generate({ inputIds }, { onTokens: 3 as never }), 'ERR_INVALID_ARG', /onTokens/);
    await rejectsWith(llm.generate({ inputIds }, { numBeams: 2, onTokens: () => {} }), 'ERR_INVALID_ARG', /beam search/);
    await rejectsWith(llm.generate({ inputIds }, { signal: { aborted: false } as never }), 'ERR_INVALID_ARG', /AbortSignal/);
  });
});
