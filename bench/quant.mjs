// `npm run bench -- quant [--case 1.1b|qlora|7b] [--threads N] [--trials N] [--quants a,b] [--dir PATH] [--keep] [--no-reference] [--gguf-head quantized]`:
// greedy decoding of a LLaMA with random weights in bfloat16, 8-bit and 4-bit, emotorch beside
// llama.cpp (node-llama-cpp's prebuilt CPU binary: no GPU, never built here; not a dependency of
// emotorch, whose lock file cannot carry its other platforms' packages here: npm install --no-save
// node-llama-cpp@3.22.1) on the same weights.
// bench/quant_gguf.py writes, from one seed, a transformers folder (bfloat16 safetensors) and the
// same weights as GGUF files in BF16, Q8_0 and Q4_0 (the `gguf` package's quantizers) with the
// tensors emotorch's `quantize` quantizes: the decoder's linear layers, the embedding and the LM head
// left in BF16, so both sides read the same bytes per token (--gguf-head quantized: those two in
// Q8_0 / Q4_0 as well, llama-quantize --pure, the files in a folder of their own, and emotorch's
// quantized rows quantize their LM head too, in the row's format: `et.nn.quantize(model, format,
// { layers: ['lm_head'] })` after the load); EMOTORCH_PYTHON (default python3) needs torch and gguf.
//   1.1b: TinyLlama's shape (2048 hidden, 5632 intermediate, 22 layers, 32 heads, 4 KV heads,
//         vocab 32000): 2.2 GB in bfloat16, 6.2 GB of files in all, kept for later runs
//   7b:   LLaMA-2-7B's shape (4096 / 11008 / 32 layers / 32 heads / 32 KV heads): 13.5 GB in
//         bfloat16, 38 GB of files in all, opt-in (`--case 7b`), deleted after the run (--keep keeps them)
// Files go under --dir, else $EMOTORCH_BENCH_DIR, else the system's temporary folder.
// Rows, each against the llama.cpp file of its bits: emotorch `bfloat16` against BF16;
// `quantize: 'int8'` and `'q8_0'` against Q8_0; `'nf4'` and `'q4_0'` against Q4_0 (--quants picks
// emotorch's rows). A row whose side throws (a format it does not take, a missing package) prints
// "not available: <message>" and the others go on.
// Every trial of every row is a fresh process (bench/quant_worker.mjs), each trial running every
// row once (all bit widths, one after another), so the peak RSS is the row's own; each loads, answers once to warm
// up, then decodes 64 new tokens after a 32-token prompt (the same ids on both sides), greedy, with
// --threads threads (default 2) on both sides. Printed per row: tokens/s (the 63 tokens after the
// first), first-token time (the prompt's pass and the first token) and peak RSS (VmHWM: llama.cpp
// maps its file, emotorch reads the weights into memory; both count the weights once touched), the
// medians over the trials, the ratio emotorch / llama.cpp at the same bits, and the speed-up over
// emotorch's bfloat16 (issue 58's targets: int8 ≥ 1.7×, 4-bit ≥ 2.5×, each ≥ 1.0× llama.cpp's),
// each ratio of medians beside its trial pairs (the two rows of one trial, a minute or two apart:
// the pairs follow the machine's memory speed less than rows minutes apart do).
// Beside the figures, the check that both sides read the same weights: the first trial of each row
// also returns the logits of the prompt's last position, compared (largest difference, cosine, the
// same top token) with those of transformers in float32 on the same folder (bench/quant_reference.py,
// the independent reference; 1.1b only, --no-reference skips it) and with llama.cpp's of the same
// bits, and the greedy tokens both sides decoded.
// The qlora case (below) is opt-in under --profile avx2 (`--case qlora`): see the note at `cases`.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const python = process.env.EMOTORCH_PYTHON || 'python3';
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const argv = process.argv.slice(2);
const flag = (k) => {
  const i = argv.indexOf(`--${k}`);
  return i >= 0 ? argv[i + 1] : undefined;
};

const SHAPES = {
  '1.1b': { vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4 },
  '7b': { vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32 },
};
const SEED = 0;
const GROUPS = [
  { bits: '16-bit', gguf: 'BF16', ours: ['bfloat16'] },
  { bits: '8-bit', gguf: 'Q8_0', ours: ['int8', 'q8_0'] },
  { bits: '4-bit', gguf: 'Q4_0', ours: ['nf4', 'q4_0'] },
];
const PROMPT = 32,
  NEW = 64;
// the same prompt on every side: ids from a fixed linear congruence, clear of the first 259 ids
// (<unk>, <s>, </s> and the byte tokens of the GGUF's vocabulary)
const IDS = Array.from({ length: PROMPT }, (_, i) => 300 + ((i * 7919 + 13) % 30000)).join(',');

/** The case's files, written by bench/quant_gguf.py unless a complete set of the same shape and seed is there. */
function files(name) {
  const head = flag('gguf-head') ?? 'bf16';
  if (!['bf16', 'quantized'].includes(head)) throw new Error(`--gguf-head: bf16 or quantized, not '${head}'`);
  const dir = path.join(flag('dir') ?? (process.env.EMOTORCH_BENCH_DIR || os.tmpdir()), `emotorch-bench-quant-${name}${head === 'bf16' ? '' : '-pure'}`);
  const stamp = path.join(dir, 'made.json');
  const want = JSON.stringify({ shape: SHAPES[name], seed: SEED, head });
  const paths = { hf: path.join(dir, 'hf'), ...Object.fromEntries(GROUPS.map((g) => [g.gguf, path.join(dir, `model-${g.gguf}.gguf`)])) };
  if (!(fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === want)) {
    console.log(`  writing ${dir} (random weights, seed ${SEED}: transformers' layout and GGUF BF16, Q8_0, Q4_0) …`);
    fs.rmSync(dir, { recursive: true, force: true });
    const t0 = performance.now();
    const r = spawnSync(python, [path.join(here, 'quant_gguf.py'), dir, JSON.stringify(SHAPES[name]), '--seed', String(SEED), '--head', head], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 1 << 24,
    });
    if (r.status !== 0)
      throw new Error(
        `bench/quant_gguf.py failed (${r.status ?? r.signal}; it needs torch and the gguf package in ${python}, EMOTORCH_PYTHON picks another): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`,
      );
    fs.writeFileSync(stamp, want);
    console.log(`  written in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  const size = (p) => (fs.statSync(p).isDirectory() ? fs.readdirSync(p).reduce((s, f) => s + size(path.join(p, f)), 0) : fs.statSync(p).size);
  return { dir, head, paths, bytes: Object.fromEntries(Object.entries(paths).map(([k, p]) => [k, size(p)])) };
}

/** One trial of one row: a fresh process, its figures or { error }. */
function trial(side, file, quant, threads, logits, head) {
  const out = path.join(os.tmpdir(), `emotorch-bench-quant-${process.pid}.json`);
  fs.rmSync(out, { force: true });
  const r = spawnSync(
    process.execPath,
    [path.join(here, 'quant_worker.mjs'), out, side, file, quant, IDS, String(NEW), String(threads), ...(logits ? ['logits'] : [])],
    {
      stdio: ['ignore', 'inherit', 'pipe'],
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: String(threads), BENCH_QUANT_HEAD: head === 'quantized' ? '1' : '' },
    },
  );
  if (!fs.existsSync(out))
    return { error: `the worker ended (${r.status ?? r.signal}) without figures: ${(r.stderr || '').trim().split('\n').slice(-2).join(' | ')}` };
  const res = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out, { force: true });
  return res;
}

/** transformers' float32 logits of the prompt's last position (bench/quant_reference.py), or { error }. */
function reference(hf, threads) {
  const out = path.join(os.tmpdir(), `emotorch-bench-quant-ref-${process.pid}.json`);
  const r = spawnSync(python, [path.join(here, 'quant_reference.py'), hf, IDS, out], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    env: { ...process.env, BENCH_THREADS: String(threads), OMP_NUM_THREADS: String(threads) },
  });
  if (r.status !== 0 || !fs.existsSync(out))
    return { error: `bench/quant_reference.py failed (${r.status ?? r.signal}): ${(r.stderr || '').trim().split('\n').slice(-2).join(' | ')}` };
  const res = JSON.parse(fs.readFileSync(out, 'utf8'));
  fs.rmSync(out, { force: true });
  return res;
}

/** Logits of the same prompt from the two sides: largest difference, cosine, the same top token. */
function compareLogits(a, b) {
  let dmax = 0,
    ab = 0,
    aa = 0,
    bb = 0,
    amax = 0,
    bmax = 0;
  for (let i = 0; i < b.length; i++) {
    dmax = Math.max(dmax, Math.abs(a[i] - b[i]));
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
    if (a[i] > a[amax]) amax = i;
    if (b[i] > b[bmax]) bmax = i;
  }
  const scale = Math.max(...b.map(Math.abs));
  return { dmax, scale, cos: ab / Math.sqrt(aa * bb), top: amax === bmax, amax, bmax };
}

const commonPrefix = (a, b) => {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
};

function quantCase(name, defaultTrials) {
  return {
    async run({ opt }) {
      const threads = opt('threads', 2);
      const trials = opt('trials', defaultTrials);
      const wanted = flag('quants')?.split(',') ?? GROUPS.flatMap((g) => g.ours);
      const unknown = wanted.find((q) => !GROUPS.some((g) => g.ours.includes(q)));
      if (unknown) throw new Error(`--quants: unknown '${unknown}'; available: ${GROUPS.flatMap((g) => g.ours).join(', ')}`);
      console.log(`\n[quant ${name}] LLaMA ${JSON.stringify(SHAPES[name])}, random weights (N(0, 0.02), norms 1 + N(0, 0.1), seed ${SEED})`);
      const { dir, head, paths, bytes } = files(name);
      const gb = (b) => `${(b / 1e9).toFixed(2)} GB`;
      console.log(
        `  files in ${dir}: transformers bfloat16 ${gb(bytes.hf)}; GGUF BF16 ${gb(bytes.BF16)}, Q8_0 ${gb(bytes.Q8_0)}, Q4_0 ${gb(bytes.Q4_0)} (${head === 'bf16' ? 'their embedding and LM head in BF16, as emotorch leaves them' : 'every 2-D weight quantized, the embedding and LM head included; emotorch quantizes its LM head too'})`,
      );
      console.log(
        `threads: ${threads} each; ${trials} trials per row, each a fresh process, every row once in each trial; greedy decoding of ${NEW} tokens after a ${PROMPT}-token prompt, after a warm-up answer`,
      );
      // the independent reference: transformers in float32 (a 7B's 27 GB of float32 does not fit)
      let ref = { error: '--no-reference' };
      if (argv.includes('--no-reference')) console.log('  transformers float32 reference: skipped (--no-reference)');
      else if (name === '7b') console.log('  transformers float32 reference: skipped (a 7B in float32 is 27 GB)');
      else {
        ref = reference(paths.hf, threads);
        if (ref.error) console.log(`  transformers float32 reference: not available: ${ref.error}`);
      }
      const results = {}; // row label → { runs: [...], error, group, side }
      const versions = new Set();
      try {
        // every row of every bit width, one after another in each trial: a trial's rows a minute
        // or two apart, not a whole group's trials apart (this VM's memory runs at one of two speeds
        // for tens of seconds at a time, and bfloat16 decoding moves with it)
        const groups = [];
        for (const g of GROUPS) {
          const ours = g.ours.filter((q) => wanted.includes(q));
          if (!ours.length) continue;
          const rows = [
            ...ours.map((q) => ({ label: `emotorch ${q}`, side: 'emotorch', file: paths.hf, quant: q })),
            { label: `llama.cpp ${g.gguf}`, side: 'llama.cpp', file: paths[g.gguf], quant: '-' },
          ];
          for (const r of rows) results[r.label] = { runs: [], error: null, group: g, side: r.side, quant: r.quant };
          groups.push({ g, ours, rows });
        }
        console.log(`rows: ${groups.map(({ g, ours }) => `emotorch ${ours.join(', ')} beside llama.cpp ${g.gguf}`).join('; ')}`);
        for (let t = 0; t < trials; t++)
          for (const r of groups.flatMap((x) => x.rows)) {
            const res = results[r.label];
            if (res.error) continue;
            const o = trial(r.side, r.file, r.quant, threads, t === 0, head);
            if (o.error) {
              res.error = o.error;
              console.log(`  ${r.label}: not available: ${o.error}`);
              continue;
            }
            versions.add(o.version);
            res.runs[t] = o;
            console.log(
              `  trial ${t + 1}: ${r.label.padEnd(20)} ${o.tokens_per_s.toFixed(2)} tok/s, first token ${o.first_token_ms.toFixed(0)} ms, peak RSS ${o.peak_rss_mb.toFixed(0)} MiB (load ${(o.load_ms / 1000).toFixed(2)} s; other processes meanwhile ${o.others_cores.toFixed(2)} cores)`,
            );
          }
        for (const { g, ours, rows } of groups) {
          // the same weights on both sides: the first trials' logits and tokens
          const lc = results[`llama.cpp ${g.gguf}`].runs[0];
          const fmt = (c) =>
            `max |Δ| ${c.dmax.toFixed(4)} (largest |logit| ${c.scale.toFixed(3)}), cosine ${c.cos.toFixed(6)}, top token ${c.top ? `the same (${c.amax})` : `differs (${c.amax} vs ${c.bmax})`}`;
          console.log(`${g.bits}:`);
          if (ref.logits) {
            console.log(`  the prompt's last logits against transformers float32 on the same folder (${ref.version}):`);
            for (const r of rows) {
              const run = results[r.label].runs[0];
              if (run) console.log(`    ${r.label.padEnd(20)} ${fmt(compareLogits(run.logits, ref.logits))}`);
            }
          }
          for (const q of ours) {
            const run = results[`emotorch ${q}`].runs[0];
            if (!run || !lc) continue;
            const sameFormat = q === 'bfloat16' || q === g.gguf.toLowerCase();
            console.log(
              `  emotorch ${q} vs llama.cpp ${g.gguf} (${q === 'bfloat16' ? 'the same weights: the check that both sides read the same model' : sameFormat ? 'the same quantized weights, both sides rounding the activations to Q8_0; the rest of the step (attention, norms) differs in its arithmetic' : "different quantizers: the gap is the two formats'"}): ${fmt(compareLogits(run.logits, lc.logits))}; greedy tokens equal for the first ${commonPrefix(run.tokens, lc.tokens)} of ${NEW}`,
            );
          }
        }
      } finally {
        if (name === '7b' && !argv.includes('--keep')) {
          fs.rmSync(dir, { recursive: true, force: true });
          console.log(`  removed ${dir} (--keep keeps it)`);
        }
      }
      for (const v of versions) console.log(`  ${v}`);
      // medians and ratios
      const med = (label, k) => median(results[label].runs.map((r) => r[k]));
      const bf16 = results['emotorch bfloat16']?.runs.length ? med('emotorch bfloat16', 'tokens_per_s') : null;
      // a row's tokens/s over another's in the same trial (the two a minute or two apart)
      const pairs = (a, b) =>
        results[a].runs.map((r, i) => (results[b].runs[i] ? r.tokens_per_s / results[b].runs[i].tokens_per_s : null)).filter((x) => x !== null);
      const others = Object.values(results).flatMap((r) => r.runs.map((o) => o.others_cores));
      console.log(
        `summary (${name}, ${threads} threads, medians of ${trials} trials; other processes took ${others.length ? `${Math.min(...others).toFixed(2)}–${Math.max(...others).toFixed(2)} of the ${os.cpus().length} cores` : 'no figure'} while the answers were timed):`,
      );
      console.log(
        `  ${'row'.padEnd(20)} ${'tokens/s'.padStart(9)} ${'first token'.padStart(12)} ${'peak RSS'.padStart(10)}   emotorch / llama.cpp at the same bits (tok/s; first-token time; peak RSS)   speed-up over emotorch bfloat16`,
      );
      for (const [label, res] of Object.entries(results)) {
        if (res.error || !res.runs.length) {
          console.log(`  ${label.padEnd(20)} not available: ${res.error ?? 'no run'}`);
          continue;
        }
        const tps = med(label, 'tokens_per_s'),
          ft = med(label, 'first_token_ms'),
          rss = med(label, 'peak_rss_mb');
        let vs = '';
        let up = '';
        if (res.side === 'emotorch') {
          const theirs = `llama.cpp ${res.group.gguf}`;
          if (results[theirs]?.runs.length) {
            const p = pairs(label, theirs);
            vs = `${(tps / med(theirs, 'tokens_per_s')).toFixed(2)} × ${res.group.gguf}'s tok/s (trial pairs ${Math.min(...p).toFixed(2)}–${Math.max(...p).toFixed(2)}); ${(ft / med(theirs, 'first_token_ms')).toFixed(2)}; ${(rss / med(theirs, 'peak_rss_mb')).toFixed(2)}`;
          } else vs = `llama.cpp ${res.group.gguf} not available`;
          if (bf16 && res.quant !== 'bfloat16') {
            const target = res.group.bits === '8-bit' ? 1.7 : 2.5;
            const p = pairs(label, 'emotorch bfloat16');
            up = `${(tps / bf16).toFixed(2)} × (target ≥ ${target}; trial pairs ${Math.min(...p).toFixed(2)}–${Math.max(...p).toFixed(2)}, median ${median(p).toFixed(2)})`;
          }
        }
        console.log(
          `  ${label.padEnd(20)} ${tps.toFixed(2).padStart(9)} ${`${ft.toFixed(0)} ms`.padStart(12)} ${`${rss.toFixed(0)} MiB`.padStart(10)}   ${vs.padEnd(76)} ${up}`.trimEnd(),
        );
      }
    },
  };
}

// QLoRA's training step against LoRA over the bfloat16 base (the issue's target: ≤ 1.3 × its time):
// the 1.1B's files, LoRA r 8 on every decoder Linear layer (q, k, v, o, gate, up, down: QLoRA's and
// swift's ALL), one sequence of QLORA_TOKENS, forward with labels, backward and an AdamW step;
// one warm-up and `trials` timed steps, their median, in a fresh process per row.
const QLORA_TOKENS = 256;
const qloraCase = {
  async run({ opt }) {
    const threads = opt('threads', 2);
    const trials = opt('trials', 3);
    const rows = flag('quants')?.split(',') ?? ['bfloat16', 'int8', 'nf4'];
    console.log(
      `\n[quant qlora] 1.1B LLaMA, LoRA r 8 (alpha 16) on q/k/v/o/gate/up/down, float32 adapters, one sequence of ${QLORA_TOKENS} tokens: forward with labels, backward, AdamW; ${threads} threads; median of ${trials} steps after a warm-up, a fresh process per row`,
    );
    const { paths } = files('1.1b');
    const res = {};
    for (const q of rows) {
      const out = path.join(os.tmpdir(), `emotorch-bench-qlora-${process.pid}.json`);
      fs.rmSync(out, { force: true });
      const r = spawnSync(
        process.execPath,
        [path.join(here, 'quant_worker.mjs'), out, 'qlora', paths.hf, q, String(QLORA_TOKENS), String(trials), String(threads)],
        {
          stdio: ['ignore', 'inherit', 'pipe'],
          encoding: 'utf8',
          env: { ...process.env, OMP_NUM_THREADS: String(threads) },
        },
      );
      res[q] = fs.existsSync(out)
        ? JSON.parse(fs.readFileSync(out, 'utf8'))
        : { error: `the worker ended (${r.status ?? r.signal}): ${(r.stderr || '').trim().split('\n').slice(-2).join(' | ')}` };
      fs.rmSync(out, { force: true });
      const x = res[q];
      const base = res.bfloat16?.step_s;
      console.log(
        x.error
          ? `  ${q.padEnd(9)} not available: ${x.error}`
          : `  ${q.padEnd(9)} step ${x.step_s.toFixed(2)} s (steps ${x.steps.map((t) => t.toFixed(2)).join(', ')}), loss ${x.loss.toFixed(4)}, peak RSS ${x.peak_rss_mb.toFixed(0)} MiB${q !== 'bfloat16' && base ? `; ${(x.step_s / base).toFixed(2)} × the bfloat16 LoRA step (target ≤ 1.3)` : ''}`,
      );
    }
  },
};

const asked = (name) => argv.some((a, i) => argv[i - 1] === '--case' && a.split(',').includes(name));
export const cases = {
  '1.1b': quantCase('1.1b', 3),
  // opt-in under --profile avx2: bfloat16 training without AVX-512 BF16 runs on widened float32
  // products, and the three rows took over 29 minutes on a Zen 4 (2 threads)
  ...(process.env.ATEN_CPU_CAPABILITY !== 'avx2' || asked('qlora') ? { qlora: qloraCase } : {}),
  // opt-in: 38 GB of files and most of a 24 GB machine while it runs
  ...(asked('7b') ? { '7b': quantCase('7b', 1) } : {}),
};
