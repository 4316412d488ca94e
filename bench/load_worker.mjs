// emotorch's side of `npm run bench -- load` (bench/load.mjs), one fresh process per call:
//   node bench/load_worker.mjs DIR DTYPE PROMPT NEW
// loads the checkpoint with LlamaForCausalLM.fromPretrained in DTYPE, then greedy-decodes NEW tokens
// after a PROMPT-token prompt; prints one JSON line with the fields of bench/load_worker.py's.
import * as fs from 'fs';
import * as et from 'emotorch';

const [dir, dtype, prompt, nNew] = process.argv.slice(2);
const status = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
if (process.env.BENCH_THREADS) et.setNumThreads(Number(process.env.BENCH_THREADS));
const t0 = performance.now();
const model = await et.nn.LlamaForCausalLM.fromPretrained(dir, { dtype });
const loadMs = performance.now() - t0;
const peak = status('VmHWM'), rss = status('VmRSS');
const P = Number(prompt), N = Number(nNew);
const ids = et.arange(3, 3 + P, 1, { dtype: 'int64' }).reshape([1, P]);
const t1 = performance.now();
await et.noGrad(() => model.generate({ inputIds: ids }, { maxNewTokens: 1 }));
const first = performance.now() - t1;
// decoding: N tokens less 1 token, both timed warm, so the prompt's cost cancels
const t2 = performance.now();
await et.noGrad(() => model.generate({ inputIds: ids }, { maxNewTokens: 1 }));
const one = (performance.now() - t2) / 1000;
const t3 = performance.now();
const { newTokens } = await et.noGrad(() => model.generate({ inputIds: ids }, { maxNewTokens: N, minNewTokens: N }));
const total = (performance.now() - t3) / 1000;
console.log(JSON.stringify({ load_ms: loadMs, peak_rss_mb: peak, rss_mb: rss, first_token_ms: first, tokens_per_s: (N - 1) / Math.max(total - one, 1e-9), end_peak_rss_mb: status('VmHWM'),
  tokens: newTokens.toArray()[0].map(Number) }));
