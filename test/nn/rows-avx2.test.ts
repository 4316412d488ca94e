// bfloat16 decoding rows on AVX2 (kernels/linear_rows.cc rows_avx2_bf16: CPUs without AVX-512
// BF16): checked in a child process capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2,
// ATEN_CPU_CAPABILITY=avx2, as the AVX2 bench profile runs), the same on any x86-64 CPU. Sixteen
// and six prompts decoded together in a DecodeBatch get exactly the tokens each gets alone: the
// rows of a step go four at a time through the weight, in chunks of its inputs (524 and 1100 of
// them: chunks of 512 and a tail after the 8-wide vectors), and six rows leave a group of two; one
// row alone goes through its own blocking. With the init's small weights the logits lie close
// together, so a sum that differed in its last bits would change an answer. (A Linear layer's
// products of 1 to 64 rows on these kernels against the float64 product: linear-widened.test.ts.)
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');
const CHILD = `
const et = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});
(async () => {
  et.setNumThreads(2);
  et.manualSeed(11);
  const llm = et.nn.LlamaForCausalLM.create({
    vocab_size: 301, hidden_size: 524, intermediate_size: 1100, num_hidden_layers: 2, num_attention_heads: 2,
    num_key_value_heads: 1, max_position_embeddings: 256, eos_token_id: 300, pad_token_id: 0,
  }).eval();
  await llm.to({ dtype: 'bfloat16' });
  const prompt = (i) => Array.from({ length: 3 + i }, (_, j) => 1 + ((j * 37 + i * 11) % 290));
  const opts = (i) => ({ maxNewTokens: 5 + (i % 3), minNewTokens: 5 + (i % 3) });
  const ids = (p) => et.tensor([p], { dtype: 'int64' });
  const tokens = (r) => r.newTokens.toArray()[0].map(Number);
  const out = [];
  for (const R of [16, 6]) {
    const alone = [];
    for (let i = 0; i < R; ++i) alone.push(tokens(await et.noGrad(() => llm.generate({ inputIds: ids(prompt(i)) }, opts(i)))));
    const batch = new et.nn.DecodeBatch(llm);
    let widest = 0;
    const together = await Promise.all(Array.from({ length: R }, (_, i) =>
      et.noGrad(() => llm.generate({ inputIds: ids(prompt(i)) }, { ...opts(i), batch, onTokens: () => { widest = Math.max(widest, batch.size); } })).then(tokens)));
    out.push({ R, alone, together, widest });
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`;

const capped = (): NodeJS.ProcessEnv => {
  const env = { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' };
  delete env.EMOTORCH_CPU_LINEAR;
  return env;
};

describe('bfloat16 decoding rows on AVX2', () => {
  it('sixteen and six rows decoded together get the tokens each gets alone', () => {
    const r = spawnSync(process.execPath, ['-e', CHILD], { cwd: ROOT, env: capped(), encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout.trim().split('\n').pop()!) as { R: number; alone: number[][]; together: number[][]; widest: number }[];
    expect(results.map((c) => c.R)).toEqual([16, 6]);
    for (const c of results) {
      expect(c.widest, `${c.R} rows decoded side by side`).toBe(c.R);
      expect(c.alone.map((t) => t.length)).toEqual(c.alone.map((_, i) => 5 + (i % 3)));
      expect(c.together, `${c.R} rows`).toEqual(c.alone);
    }
  }, 150_000);
});
