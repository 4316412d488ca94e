// `npm run bench -- load [--case llama|llama7b] [--trials N] [--dtypes bfloat16,float16]`: loading a
// released-size checkpoint, emotorch (LlamaForCausalLM.fromPretrained) against transformers
// (from_pretrained), each trial a fresh process on each side, alternating. The Python side writes
// the checkpoint first (bench/load_worker.py make: random weights in transformers' layout, nothing
// downloaded) under $EMOTORCH_BENCH_DIR (default the system's temporary folder), kept for later runs.
// Per dtype: load time, peak RSS during the load (VmHWM), RSS after it, the peak after decoding
// (both sides map the file: its pages count in RSS once touched), first-token latency and greedy
// decode tokens/s, the ratios, and whether both sides decoded the same tokens.
//   llama:   a 1.1B LLaMA (TinyLlama's shape: 2048 hidden, 22 layers, 32 heads, 4 KV heads), 2.2 GB
//   llama7b: a 7B LLaMA (LLaMA-2-7B's shape), bfloat16, 13.5 GB in 4 GiB shards — opt-in
//            (`--case llama7b`): it takes minutes and most of a 24 GB machine
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const python = process.env.EMOTORCH_PYTHON || 'python3';
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

const SHAPES = {
  llama: { vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4, max_position_embeddings: 2048, rms_norm_eps: 1e-5 },
  llama7b: { vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32, max_position_embeddings: 4096, rms_norm_eps: 1e-5 },
};

function runJson(cmd, argv, env = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${path.basename(argv[0] ?? cmd)} failed (${r.status ?? r.signal}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

function checkpoint(name, dtype) {
  const dir = path.join(process.env.EMOTORCH_BENCH_DIR || os.tmpdir(), `emotorch-bench-${name}-${dtype}`);
  if (!fs.existsSync(path.join(dir, 'config.json'))) {
    console.log(`  writing ${dir} (transformers, random weights) …`);
    runJson(python, [path.join(here, 'load_worker.py'), 'make', dir, JSON.stringify(SHAPES[name]), dtype]);
  }
  const bytes = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
  return { dir, bytes };
}

function loadCase(name, defaultDtypes, defaultTrials) {
  return {
    async run({ threads, opt }) {
      const trials = opt('trials', defaultTrials);
      const i = process.argv.indexOf('--dtypes');
      const dtypes = i >= 0 ? process.argv[i + 1].split(',') : defaultDtypes;
      const prompt = 16, nNew = name === 'llama7b' ? 4 : 16;
      console.log(`\n[load ${name}] LLaMA ${JSON.stringify(SHAPES[name])}`);
      console.log(`threads: ${threads} each; ${trials} alternating trials per dtype, each a fresh process; greedy decoding of ${nNew} tokens after a ${prompt}-token prompt`);
      const env = { BENCH_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
      for (const dtype of dtypes) {
        const { dir, bytes } = checkpoint(name, dtype);
        const mb = bytes / 2 ** 20;
        console.log(`${dtype}: checkpoint ${(bytes / 1e9).toFixed(2)} GB (${mb.toFixed(0)} MiB) in ${dir}`);
        const ours = [], theirs = [];
        for (let t = 0; t < trials; t++) {
          ours.push(runJson(process.execPath, [path.join(here, 'load_worker.mjs'), dir, dtype, String(prompt), String(nNew)], env));
          theirs.push(runJson(python, [path.join(here, 'load_worker.py'), 'load', dir, dtype, String(prompt), String(nNew)], env));
          const f = (r) => `load ${(r.load_ms / 1000).toFixed(2)} s, peak ${r.peak_rss_mb.toFixed(0)} MiB, after ${r.rss_mb.toFixed(0)} MiB, first token ${r.first_token_ms.toFixed(0)} ms, ${r.tokens_per_s.toFixed(2)} tok/s, peak after decoding ${r.end_peak_rss_mb.toFixed(0)} MiB`;
          console.log(`  trial ${t + 1}: emotorch ${f(ours[t])}\n           transformers ${f(theirs[t])}`);
        }
        const m = (rs, k) => median(rs.map((r) => r[k]));
        const row = (label, k, unit, digits, better) => {
          const a = m(ours, k), b = m(theirs, k);
          console.log(`  ${label}: emotorch ${a.toFixed(digits)} ${unit}, transformers ${b.toFixed(digits)} ${unit}, ratio emotorch/transformers ${(a / b).toFixed(2)} (${better})`);
        };
        row('load time', 'load_ms', 'ms', 0, 'lower is better');
        row('peak RSS while loading', 'peak_rss_mb', 'MiB', 0, `checkpoint ${mb.toFixed(0)} MiB; target ≤ 1.10 × it + 300 = ${(1.1 * mb + 300).toFixed(0)}`);
        row('RSS after loading', 'rss_mb', 'MiB', 0, `target ≤ 1.05 × it + 300 = ${(1.05 * mb + 300).toFixed(0)}`);
        row('peak RSS after decoding (mapped pages count once touched)', 'end_peak_rss_mb', 'MiB', 0, 'lower is better');
        row('first-token latency', 'first_token_ms', 'ms', 0, 'lower is better');
        row('greedy decode', 'tokens_per_s', 'tok/s', 2, 'higher is better');
        const same = JSON.stringify(ours[0].tokens) === JSON.stringify(theirs[0].tokens);
        console.log(`  tokens: ${same ? 'identical' : `differ (emotorch ${ours[0].tokens.join(' ')} | transformers ${theirs[0].tokens.join(' ')})`}`);
      }
    },
  };
}

export const cases = {
  llama: loadCase('llama', ['bfloat16', 'float16'], 3),
  ...(process.argv.includes('llama7b') ? { llama7b: loadCase('llama7b', ['bfloat16'], 1) } : {}),
};
