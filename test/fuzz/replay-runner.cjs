'use strict';
// Replays corpus files through a format's fuzz target in child processes (replay.cjs), so that a
// crash, a hang or a memory blow-up is attributed to its file and never takes the caller down.
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { SEEDS_OF } = require('./targets.cjs');

const HERE = __dirname;

/** The seed corpus and the crash/hang corpus of a format, as absolute paths (sorted). */
function corpusFiles(format) {
  const list = (d) =>
    fs.existsSync(d)
      ? fs
          .readdirSync(d)
          .filter((f) => !f.startsWith('.') && !f.endsWith('.md'))
          .sort()
          .map((f) => path.join(d, f))
      : [];
  return { seeds: list(path.join(HERE, 'corpus', SEEDS_OF[format] ?? format)), crashes: list(path.join(HERE, 'crashes', format)) };
}

function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs one child over `files`; resolves with the outcomes it reported and, when it died or was
 * killed, the outcome of the file it was on.
 */
function runChild(format, files, opts) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-r', path.join(HERE, 'register-ts.cjs'), path.join(HERE, 'replay.cjs'), format, ...files], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    const outcomes = new Map();
    let current = null;
    let killedFor = null;
    let stderr = '';
    let buf = '';
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        killedFor = { outcome: 'hang', error: `no result after ${opts.timeoutMs} ms` };
        child.kill('SIGKILL');
      }, opts.timeoutMs);
    };
    const mem = setInterval(() => {
      const rss = rssBytes(child.pid);
      if (rss > opts.maxRssBytes) {
        killedFor = { outcome: 'memory', error: `resident memory ${Math.round(rss / 2 ** 20)} MiB > ${Math.round(opts.maxRssBytes / 2 ** 20)} MiB` };
        child.kill('SIGKILL');
      }
    }, 100);
    arm();
    child.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!line.startsWith('@@fuzz ')) continue;
        const msg = JSON.parse(line.slice(7));
        if (msg.start) {
          current = msg.start;
          arm();
        } else {
          outcomes.set(msg.file, msg);
          current = null;
        }
      }
    });
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-4000);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearInterval(mem);
      let dead = null;
      if (current) {
        dead = {
          file: current,
          ...(killedFor ??
            (signal
              ? { outcome: 'crash', error: `killed by ${signal}` }
              : code === 0
                ? { outcome: 'unsettled', error: "the target's promise never settled" }
                : { outcome: 'crash', error: `exit code ${code}` })),
        };
        dead.error += stderr.trim() ? `\n${stderr.trim().split('\n').slice(-8).join('\n')}` : '';
      } else if (code !== 0 && outcomes.size < files.length) {
        // The harness itself failed before running a file: report it on the first file left.
        const left = files.find((f) => !outcomes.has(f));
        dead = { file: left, outcome: 'harness', error: `replay child exited with ${signal ?? code}: ${stderr.trim().slice(-1500)}` };
      }
      resolve({ outcomes, dead });
    });
  });
}

/**
 * Replays `files` through `format`'s target; every file gets an outcome:
 * ok | coded (EmotorchError with a code) | finding (another exception) | crash | hang | memory |
 * unsettled | harness.
 * @param {string} format
 * @param {string[]} files
 * @param {{ timeoutMs?: number, maxRssBytes?: number }} [opts]
 * @returns {Promise<Map<string, { outcome: string, code?: string, error?: string, ms?: number }>>}
 */
async function replay(format, files, opts = {}) {
  const o = { timeoutMs: opts.timeoutMs ?? 10_000, maxRssBytes: opts.maxRssBytes ?? 4 * 2 ** 30 };
  const all = new Map();
  let left = files.slice();
  while (left.length) {
    const { outcomes, dead } = await runChild(format, left, o);
    for (const [f, r] of outcomes) all.set(f, r);
    if (dead) all.set(dead.file, dead);
    if (dead?.outcome === 'harness') {
      for (const f of left) if (!all.has(f)) all.set(f, { ...dead, file: f });
    }
    const before = left.length;
    left = left.filter((f) => !all.has(f));
    if (left.length === before) {
      for (const f of left) all.set(f, { file: f, outcome: 'harness', error: 'the replay child ended without reporting this file' });
      left = [];
    }
  }
  return all;
}

module.exports = { corpusFiles, replay };
