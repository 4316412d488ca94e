// Side-by-side benchmarks: emotorch vs PyTorch from Python on the same work, same thread count,
// trials alternating in one command. Prints both medians and the ratio emotorch / PyTorch.
//   npm run bench -- mlp [--threads N] [--trials N]
import { spawn } from 'child_process';
import * as path from 'path';
import * as readline from 'readline';
import { fileURLToPath } from 'url';
import * as os from 'os';
import * as et from 'emotorch';

const here = path.dirname(fileURLToPath(import.meta.url));
const BENCHES = ['mlp'];
const args = process.argv.slice(2);
const name = args.find((a) => !a.startsWith('--')) ?? 'mlp';
if (!BENCHES.includes(name)) {
  console.error(`unknown benchmark '${name}'; available: ${BENCHES.join(', ')}`);
  process.exit(2);
}
const opt = (k, d) => { const i = args.indexOf(`--${k}`); return i >= 0 ? Number(args[i + 1]) : d; };

const bench = await import(path.join(here, `${name}.mjs`));
const cfg = { ...bench.config, threads: opt('threads', os.availableParallelism?.() ?? os.cpus().length) };
cfg.trials = opt('trials', cfg.trials);
et.setNumThreads(cfg.threads);

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

// PyTorch worker: one process, one trial per request.
const py = spawn(process.env.PYTHON || 'python3', [path.join(here, 'torch_worker.py'), name, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
const lines = readline.createInterface({ input: py.stdout });
const queue = [];
const waiting = [];
lines.on('line', (l) => (waiting.length ? waiting.shift()(l) : queue.push(l)));
const nextLine = () => new Promise((resolve, reject) => {
  if (queue.length) return resolve(queue.shift());
  waiting.push(resolve);
  py.once('exit', (code) => reject(new Error(`the PyTorch worker exited (${code})`)));
});

console.log(`benchmark: ${bench.describe(cfg)}`);
console.log(`threads: ${cfg.threads} each; ${cfg.trials} alternating trials of ${cfg.steps} steps after ${cfg.warmup} warm-up steps`);
const step = await bench.setup(cfg);
for (let i = 0; i < cfg.warmup; i++) await step();
const ready = JSON.parse(await nextLine());
console.log(`emotorch ${et.versions.emotorch} on libtorch ${et.versions.libtorch}; PyTorch ${ready.torch} (Python, its default optimizer implementations)`);

const ours = [], theirs = [];
for (let t = 0; t < cfg.trials; t++) {
  const t0 = process.hrtime.bigint();
  let loss;
  for (let i = 0; i < cfg.steps; i++) loss = await step();
  loss.item();
  ours.push(Number(process.hrtime.bigint() - t0) / 1e6 / cfg.steps);
  py.stdin.write('trial\n');
  theirs.push(JSON.parse(await nextLine()).ms_per_step);
  console.log(`  trial ${t + 1}: emotorch ${ours[t].toFixed(2)} ms/step   PyTorch ${theirs[t].toFixed(2)} ms/step`);
}
py.stdin.end();
const a = median(ours), b = median(theirs);
console.log(`median: emotorch ${a.toFixed(2)} ms/step, PyTorch ${b.toFixed(2)} ms/step`);
console.log(`ratio emotorch/PyTorch: ${(a / b).toFixed(3)}`);
