// `npm run bench -- serve [--case llama] [--threads N]`: `emotorch serve` under load, its continuous
// batching (--max-batch 16) against one request at a time (--max-batch 1), on a 1.1B-shaped
// bfloat16 LLaMA (TinyLlama's shape, random weights written by bench/load_worker.py make, the
// checkpoint the load bench uses) with the LLaMA tokenizer and chat template of the test fixtures.
// 16 concurrent clients each send SERVE_REQUESTS requests (default 2) one after another, greedy,
// max_tokens SERVE_TOKENS (default 32; min_tokens is not an API field, so an answer can end early
// at an end token: the count of tokens decoded is printed), prompts of 8–40 words, half streamed.
// SERVE_QUANTIZE=int8 (or nf4, q8_0, q4_0) serves the LLaMA quantized (`serve --quantize`);
// SERVE_PREFIX_CACHE_MB (default 256, serve's own; 0: off) sets both servers' --prefix-cache-mb.
// Prints requests/s, tokens/s and p50 / p99 latency of each server and their ratios, and whether
// every answer was the same in both; `--trials N` runs the pair N times, the two servers alternating,
// and prints each pair's ratio and their median (the one-at-a-time side follows the memory's speed,
// which moves between minutes on a shared VM). There is no Python side: the comparison is the server with
// and without batching (the issue's target: ≥ 4× the requests/s, p99 no worse).
// `--case budget` (opt-in): the same requests through the server's chat adapter in this process,
// with and without a DecodeBatch, the batched run's time split into its prompt passes and its
// decoding steps (each native call timed alone): where the batched server's time goes, and how
// much of it 4× the one-at-a-time rate would leave.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';
import * as et from 'emotorch';
import { checkpoint } from './load.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const int = (k, d) => {
  const v = Number(process.env[k] ?? d);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer`);
  return v;
};
const CLIENTS = int('SERVE_CLIENTS', 16),
  REQUESTS = int('SERVE_REQUESTS', 2),
  TOKENS = int('SERVE_TOKENS', 32);
const QUANTIZE = process.env.SERVE_QUANTIZE || '';
// the servers' prompt prefix cache, MiB (serve's default 256; 0: off)
const PREFIX_MB = Number(process.env.SERVE_PREFIX_CACHE_MB ?? 256);
if (!(PREFIX_MB >= 0)) throw new Error('SERVE_PREFIX_CACHE_MB must be a number ≥ 0');

const WORDS = 'the speaker sounds tired but hopeful about the new job she starts on monday while her brother laughs at the old car story again'.split(' ');
const prompt = (i) =>
  `Describe the emotion in this line: ${Array.from({ length: 8 + ((i * 13) % 33) }, (_, j) => WORDS[(i * 7 + j * 3) % WORDS.length]).join(' ')}`;

/** The checkpoint beside the fixtures' LLaMA tokenizer and chat template, as `serve --model` reads a folder. */
function servedFolder() {
  const { dir } = checkpoint('llama', 'bfloat16');
  const out = path.join(process.env.EMOTORCH_BENCH_DIR || os.tmpdir(), 'emotorch-bench-serve-llama');
  fs.mkdirSync(out, { recursive: true });
  for (const f of fs.readdirSync(dir)) if (!fs.existsSync(path.join(out, f))) fs.symlinkSync(path.join(dir, f), path.join(out, f));
  const fx = path.join(root, 'test', 'fixtures');
  fs.copyFileSync(path.join(fx, 'tokenizers', 'llama', 'tokenizer.json'), path.join(out, 'tokenizer.json'));
  fs.copyFileSync(path.join(fx, 'tokenizers', 'llama', 'tokenizer_config.json'), path.join(out, 'tokenizer_config.json'));
  fs.copyFileSync(path.join(fx, 'chat', 'chat_template.jinja'), path.join(out, 'chat_template.jinja'));
  return out;
}

async function startServer(dir, maxBatch, threads) {
  const p = spawn(
    process.execPath,
    [
      path.join(root, 'dist', 'cli', 'main.js'),
      'serve',
      '--model',
      dir,
      '--port',
      '0',
      '--max-batch',
      String(maxBatch),
      '--max-queue',
      String(CLIENTS * 2),
      '--max-tokens',
      String(TOKENS),
      '--timeout-s',
      '3600',
      ...(QUANTIZE ? ['--quantize', QUANTIZE] : []),
      '--prefix-cache-mb',
      String(PREFIX_MB),
    ],
    { env: { ...process.env, OMP_NUM_THREADS: String(threads) }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '',
    err = '';
  p.stderr.on('data', (d) => {
    err += d;
  });
  const url = await new Promise((resolve, reject) => {
    p.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    p.on('exit', (code) => reject(new Error(`the server exited (${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`)));
  });
  const exited = new Promise((resolve) => p.on('exit', resolve));
  return {
    url,
    stop: () => {
      p.kill('SIGTERM');
      return exited;
    },
  };
}

/** One request; its text, completion tokens and latency. */
async function ask(url, i, stream) {
  const body = {
    messages: [{ role: 'user', content: prompt(i) }],
    max_tokens: TOKENS,
    temperature: 0,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  };
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`request ${i}: HTTP ${r.status} ${await r.text()}`);
  let text = '',
    tokens = 0;
  if (!stream) {
    const j = await r.json();
    text = j.choices[0].message.content;
    tokens = j.usage.completion_tokens;
  } else {
    for (const line of (await r.text()).split('\n')) {
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const j = JSON.parse(line.slice(6));
      if (j.usage) tokens = j.usage.completion_tokens;
      text += j.choices[0]?.delta?.content ?? '';
    }
  }
  return { text, tokens, ms: performance.now() - t0 };
}

async function load(url) {
  await ask(url, 999, false); // warm-up: the first products choose their kernels
  const answers = new Map();
  const latencies = [];
  let tokens = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let r = 0; r < REQUESTS; r++) {
        const i = c * REQUESTS + r;
        const a = await ask(url, i, i % 2 === 1);
        answers.set(i, a.text);
        latencies.push(a.ms);
        tokens += a.tokens;
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
  return { rps: latencies.length / secs, tps: tokens / secs, p50: q(0.5), p99: q(0.99), secs, tokens, answers };
}

/**
 * The bench's requests through llmChat (as `serve` answers them) at most `maxBatch` at a time:
 * the wall time, and for a batched run each prompt pass and step as the native side ran it.
 */
async function inProcess(chat, model, maxBatch) {
  const calls = { prompt: [], step: [] };
  const native = model.native;
  const own = { startDecode: native.startDecode, decodeStep: native.decodeStep };
  // one native call at a time, as the model's mutex runs them, each timed from its start
  let chain = Promise.resolve();
  const timed =
    (name, list) =>
    (...a) => {
      const p = chain.then(() => {
        const t0 = performance.now();
        const q = own[name].apply(native, a);
        q.then(
          () => list.push({ ms: performance.now() - t0, rows: name === 'decodeStep' ? a[0].length : 0 }),
          () => {},
        );
        return q;
      });
      chain = p.catch(() => {});
      return p;
    };
  native.startDecode = timed('startDecode', calls.prompt);
  native.decodeStep = timed('decodeStep', calls.step);
  const ask1 = (i) =>
    chat.answer([{ role: 'user', text: prompt(i), audio: [], images: [] }], {
      maxTokens: TOKENS,
      limit: TOKENS,
      maxPromptTokens: 8192,
      temperature: 0,
      batched: maxBatch > 1,
    });
  try {
    await model.setPrefixCache({ maxBytes: Math.floor(PREFIX_MB * 2 ** 20) }); // emptied: each run starts as a new server
    await ask1(999); // warm-up
    calls.prompt.length = calls.step.length = 0;
    let running = 0;
    const waiting = [];
    const gate = async (f) => {
      while (running >= maxBatch) await new Promise((r) => waiting.push(r));
      running++;
      try {
        return await f();
      } finally {
        running--;
        waiting.shift()?.();
      }
    };
    let tokens = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        for (let r = 0; r < REQUESTS; r++) {
          const a = await gate(() => ask1(c * REQUESTS + r));
          tokens += a.tokens.length;
        }
      }),
    );
    return { secs: (performance.now() - t0) / 1000, tokens, calls };
  } finally {
    Object.assign(native, own);
  }
}

export const cases = {
  ...(process.argv.some((a, i) => process.argv[i - 1] === '--case' && a.split(',').includes('budget'))
    ? {
        budget: {
          async run({ threads }) {
            const dir = servedFolder();
            et.setNumThreads(threads);
            const model = await et.nn.LlamaForCausalLM.fromPretrained(dir, { dtype: 'bfloat16', ...(QUANTIZE ? { quantize: QUANTIZE } : {}) });
            const tokenizer = await et.data.Tokenizer.fromFile(dir);
            const chat = et.systems.m2se.llmChat(model.eval(), tokenizer, fs.readFileSync(path.join(dir, 'chat_template.jinja'), 'utf8'), 'bench');
            console.log(
              `\n[serve budget] the serve case's ${CLIENTS} × ${REQUESTS} requests (max_tokens ${TOKENS}, greedy) through the chat adapter in this process${QUANTIZE ? `, ${QUANTIZE}` : ''}; ${threads} threads`,
            );
            console.log(`  prefix cache: ${PREFIX_MB} MiB (SERVE_PREFIX_CACHE_MB; serve's --prefix-cache-mb), emptied before each run`);
            const b = await inProcess(chat, model, 16);
            const one = await inProcess(chat, model, 1);
            const sum = (l) => l.reduce((s, c) => s + c.ms, 0) / 1000;
            const [ps, ss] = [sum(b.calls.prompt), sum(b.calls.step)];
            const rows = b.calls.step.reduce((s, c) => s + c.rows, 0);
            console.log(`  one at a time: ${one.secs.toFixed(1)} s (${one.tokens} tokens)`);
            console.log(
              `  16 at a time: ${b.secs.toFixed(1)} s (${b.tokens} tokens): ${b.calls.prompt.length} prompt passes ${ps.toFixed(1)} s (${((ps / b.calls.prompt.length) * 1000).toFixed(0)} ms each), ${b.calls.step.length} steps ${ss.toFixed(1)} s (${(rows / b.calls.step.length || 0).toFixed(1)} rows, ${((ss / b.calls.step.length) * 1000).toFixed(0)} ms each), the rest ${(b.secs - ps - ss).toFixed(1)} s`,
            );
            const goal = one.secs / 4;
            console.log(
              `  ${(one.secs / b.secs).toFixed(2)}× the one-at-a-time rate; 4× needs the batched run in ${goal.toFixed(1)} s: ${Math.max(0, b.secs - goal).toFixed(1)} s less (its prompt passes alone are ${ps.toFixed(1)} s, and the one-at-a-time run has the same ones)`,
            );
          },
        },
      }
    : {}),
  llama: {
    async run({ threads, opt }) {
      const dir = servedFolder();
      const trials = opt('trials', 1);
      console.log(
        `\n[serve llama] 1.1B LLaMA (TinyLlama's shape) in bfloat16${QUANTIZE ? `, its decoder's Linear layers ${QUANTIZE}` : ''}, ${CLIENTS} concurrent clients × ${REQUESTS} requests, max_tokens ${TOKENS}, greedy, half streamed; ${threads} threads${trials > 1 ? `; ${trials} trials, the two servers alternating` : ''}`,
      );
      // (the one-at-a-time side's steps follow the memory's speed, which moves between minutes on a
      // shared machine: each trial's pair runs back to back, and the pairs' ratios are printed)
      const pairs = [];
      for (let t = 0; t < trials; t++) {
        const res = {};
        for (const mb of [16, 1]) {
          const s = await startServer(dir, mb, threads);
          try {
            res[mb] = await load(s.url);
            res[mb].cache = (await (await fetch(`${s.url}/health`)).json()).prefix_cache;
          } finally {
            await s.stop();
          }
          const r = res[mb];
          console.log(
            `  ${trials > 1 ? `trial ${t + 1}: ` : ''}--max-batch ${String(mb).padEnd(2)}: ${r.rps.toFixed(3)} requests/s, ${r.tps.toFixed(1)} tokens/s (${r.tokens} tokens in ${r.secs.toFixed(1)} s), p50 ${(r.p50 / 1000).toFixed(2)} s, p99 ${(r.p99 / 1000).toFixed(2)} s; prefix cache (${PREFIX_MB} MiB): ${r.cache ? `${r.cache.hits} of ${r.cache.lookups} prompts found, ${r.cache.reused} positions reused` : 'none'}`,
          );
        }
        const [b, one] = [res[16], res[1]];
        const same = [...b.answers].filter(([i, t]) => one.answers.get(i) === t).length;
        pairs.push({ rps: b.rps / one.rps, p50: b.p50 / one.p50, p99: b.p99 / one.p99, same, n: b.answers.size });
        console.log(
          `  ${trials > 1 ? `trial ${t + 1}: ` : ''}batched / one at a time: ${(b.rps / one.rps).toFixed(2)}× the requests/s (target ≥ 4), p50 ${(b.p50 / one.p50).toFixed(2)}×, p99 ${(b.p99 / one.p99).toFixed(2)}× (target ≤ 1); answers identical: ${same} of ${b.answers.size}`,
        );
      }
      if (trials > 1) {
        const med = (k) => [...pairs.map((p) => p[k])].sort((a, b) => a - b)[Math.floor((pairs.length - 1) / 2)];
        console.log(
          `  over the ${trials} trials: ${med('rps').toFixed(2)}× the requests/s (median; pairs ${pairs.map((p) => p.rps.toFixed(2)).join(', ')}; ${pairs.filter((p) => p.rps >= 4).length} of ${trials} ≥ 4), p99 ${med('p99').toFixed(2)}× (median), answers identical ${pairs.map((p) => `${p.same} of ${p.n}`).join(', ')}`,
        );
      }
    },
  },
};
