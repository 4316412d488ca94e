// DecodeBatch (continuous batching): requests decoded together, joining and leaving between
// steps, get exactly the tokens each gets decoded alone (greedy, and sampled with a seed), in
// float32 and bfloat16, with sizes whose products and norms have vector tails; streaming per row,
// cancellation of one row leaving the others untouched, and misuse refused by name.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { rejectsWith } from '../helpers';

const FIX = path.join(__dirname, '..', 'fixtures', 'llama');
// odd sizes: hidden 40 and inner 72 leave tails after the 16- and 32-wide vector loops
const odd = () =>
  et.nn.LlamaForCausalLM.create({
    vocab_size: 97,
    hidden_size: 40,
    intermediate_size: 72,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 512,
    eos_token_id: 96,
    pad_token_id: 0,
    initializer_range: 0.2,
  }).eval();

const prompts = [
  [1, 5, 9],
  [1, 7, 3, 3, 8, 2, 11, 4, 6],
  [1, 60],
  [1, 20, 30, 40, 50, 60, 70],
];
const ids = (p: number[]) => et.tensor([p], { dtype: 'int64' });

async function alone(llm: et.nn.LlamaForCausalLM, p: number[], opts: et.nn.GenerationOptions): Promise<number[]> {
  const { newTokens } = await et.noGrad(() => llm.generate({ inputIds: ids(p) }, opts));
  return (newTokens.toArray() as number[][])[0].map(Number);
}

/**
 * Rows 0 and 1 start together; row 2 joins after row 0's third token, row 3 after its fourth (a
 * row that an end token stops sooner, as sampling from a random model can, leaves them to start
 * after it: the answers are compared either way).
 */
async function together(
  llm: et.nn.LlamaForCausalLM,
  opts: (i: number) => et.nn.GenerationOptions,
): Promise<{ out: number[][]; streamed: number[][]; widest: number }> {
  const batch = new et.nn.DecodeBatch(llm);
  const streamed: number[][] = prompts.map(() => []);
  let widest = 0;
  const joined: Promise<number[]>[] = [];
  const run = (i: number) =>
    et
      .noGrad(() =>
        llm.generate(
          { inputIds: ids(prompts[i]) },
          {
            ...opts(i),
            batch,
            onTokens: ([t]) => {
              streamed[i].push(t);
              widest = Math.max(widest, batch.size);
              if (i === 0 && streamed[0].length === 3) joined.push(run(2));
              if (i === 0 && streamed[0].length === 4) joined.push(run(3)); // (the sampled row 0 ends after 5 tokens)
            },
          },
        ),
      )
      .then((r) => (r.newTokens.toArray() as number[][])[0].map(Number));
  const first = await Promise.all([run(0), run(1)]);
  while (joined.length < 2) joined.push(run(2 + joined.length));
  const later = await Promise.all(joined);
  return { out: [...first, ...later], streamed, widest };
}

describe('DecodeBatch: batched decoding equals decoding alone', () => {
  // (float16: the attention kernel and the SiLU · up kernel do not take it, so each row's attention
  // and activation go through ATen's ops row by row, over the caches the kernels' path fills)
  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
    it(`greedy answers are identical, rows joining and leaving (${dtype}, HF fixture and odd sizes)`, async () => {
      for (const make of [() => et.nn.LlamaForCausalLM.fromPretrained(FIX), async () => odd()]) {
        const llm = (await make()).eval();
        if (dtype !== 'float32') await llm.to({ dtype });
        // different lengths: row 2 ends first (max 8), row 0 runs longest
        const opts = (i: number) => ({ maxNewTokens: [24, 16, 8, 12][i], minNewTokens: [24, 16, 8, 12][i] });
        const solo = await Promise.all(prompts.map((p, i) => alone(llm, p, opts(i))));
        const { out, streamed, widest } = await together(llm, opts);
        expect(out).toEqual(solo);
        expect(streamed).toEqual(solo);
        expect(widest).toBeGreaterThanOrEqual(3); // they did decode side by side
      }
    });
  }

  it('sampled answers with a seed are the same alone and in the batch; an end token ends a row', async () => {
    const llm = odd();
    const opts = (i: number) => ({ maxNewTokens: 20, doSample: true, temperature: 1.3, topK: 40, seed: 100 + i, eosTokenId: [96, 95] });
    const solo = [];
    for (const [i, p] of prompts.entries()) {
      et.manualSeed(i); // the global generator is not what they draw from
      solo.push(await alone(llm, p, opts(i)));
    }
    const { out } = await together(llm, opts);
    expect(out).toEqual(solo);
    const again = await alone(llm, prompts[0], opts(0));
    expect(again).toEqual(solo[0]);
  });

  it('a cancelled row rejects with ERR_ABORTED and leaves the others as they were', async () => {
    const llm = odd();
    const opts = { maxNewTokens: 30, minNewTokens: 30 };
    const solo = await alone(llm, prompts[1], opts);
    const batch = new et.nn.DecodeBatch(llm);
    const ac = new AbortController();
    let seen = 0;
    const cancelled = llm.generate(
      { inputIds: ids(prompts[0]) },
      {
        ...opts,
        batch,
        signal: ac.signal,
        onTokens: () => {
          if (++seen === 4) ac.abort('client gone');
        },
      },
    );
    const kept = llm.generate({ inputIds: ids(prompts[1]) }, { ...opts, batch });
    await rejectsWith(cancelled, 'ERR_ABORTED', /client gone/);
    expect(((await kept).newTokens.toArray() as number[][])[0].map(Number)).toEqual(solo);
    expect(seen).toBe(4); // no token after the abort, though the next step had started (tokens reach listeners while it runs)
    expect(batch.size).toBe(0);
  });

  it('a padded prompt decodes as the same prompt without its padding', async () => {
    const llm = odd();
    const opts = { maxNewTokens: 10, minNewTokens: 10 };
    const plain = await alone(llm, [1, 5, 9], opts);
    const { newTokens } = await llm.generate(
      { inputIds: et.tensor([[0, 0, 1, 5, 9]], { dtype: 'int64' }), attentionMask: et.tensor([[0, 0, 1, 1, 1]], { dtype: 'int64' }) },
      { ...opts, batch: new et.nn.DecodeBatch(llm) },
    );
    expect((newTokens.toArray() as number[][])[0].map(Number)).toEqual(plain);
  });

  it('beam search with a batch decodes alone; misuse is refused by name', async () => {
    const llm = odd();
    const batch = new et.nn.DecodeBatch(llm);
    const beams = await llm.generate({ inputIds: ids(prompts[0]) }, { maxNewTokens: 5, numBeams: 3, batch });
    expect(beams.newTokens.toArray()).toEqual((await llm.generate({ inputIds: ids(prompts[0]) }, { maxNewTokens: 5, numBeams: 3 })).newTokens.toArray());
    await rejectsWith(
      batch.generate({
        inputIds: et.tensor(
          [
            [1, 2],
            [3, 4],
          ],
          { dtype: 'int64' },
        ),
      }),
      'ERR_INVALID_ARG',
      /one prompt/,
    );
    await rejectsWith(batch.generate({ inputIds: ids([1, 2]) }, { numBeams: 2 }), 'ERR_INVALID_ARG', /numBeams/);
    await rejectsWith(odd().generate({ inputIds: ids([1, 2]) }, { batch }), 'ERR_INVALID_ARG', /DecodeBatch of this model/);
    await rejectsWith(llm.generate({ inputIds: ids([1, 2]) }, { seed: -1 }), 'ERR_INVALID_ARG', /seed/);
    expect(() => new et.nn.DecodeBatch({} as never)).toThrow(/LlamaForCausalLM/);
    await rejectsWith(batch.generate({ inputIds: ids([1, 200]) }), 'ERR_INDEX', /index out of range/); // as generate alone
    expect(batch.size).toBe(0);
  });
});
