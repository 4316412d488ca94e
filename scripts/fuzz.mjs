#!/usr/bin/env node
/**
 * Coverage-guided fuzzing of emotorch's file readers with Jazzer.js (libFuzzer for Node):
 *
 *   npm run fuzz -- <format|all> [--runs N] [--max-time S] [--timeout-ms MS] [--max-findings K] [--no-build]
 *   npm run fuzz -- <format|all> --replay        replay the seed and crash corpora only
 *   npm run fuzz -- --list
 *
 * Formats: see test/fuzz/targets.cjs. Seeds come from test/fuzz/corpus/<format>/ (read only); new
 * coverage goes to node_modules/.cache/emotorch-fuzz/corpus/<format>/ (kept between runs). An input
 * passes when it parses or is refused with an EmotorchError that has a code; any other exception,
 * a crash, a timeout (default 5 s) or more than 4 GB of memory is a finding, written to
 * test/fuzz/crashes/<format>/ where `npm test` replays it as a regression case from then on.
 * After a finding the fuzzer restarts with the runs left, until --max-findings (default 5).
 */
import * as fs from 'fs';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { createRequire } from 'module';
import { createHash } from 'crypto';
import { fileURLToPath } from 'url';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FUZZ = path.join(ROOT, 'test', 'fuzz');
const { FORMATS, SEEDS_OF } = require(path.join(FUZZ, 'targets.cjs'));
const { corpusFiles, replay } = require(path.join(FUZZ, 'replay-runner.cjs'));
// Targets that never return a promise run in Jazzer's faster synchronous mode.
const SYNC = new Set(['pickle', 'wav', 'wav16k', 'npy']);
// Numeric inner loops left uninstrumented: coverage there says nothing, and instrumentation makes
// them 10-20x slower, so a slow-but-finite resample would read as a timeout.
const EXCLUDE = { wav: [path.join('dist', 'audio', 'resample.js')], wav16k: [path.join('dist', 'audio', 'resample.js')] };

const args = process.argv.slice(2);
const flag = (name, def) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v <= 0) usage(`--${name} needs a positive integer`);
  return v;
};
function usage(msg) {
  if (msg) console.error(`fuzz: ${msg}`);
  console.error(`usage: npm run fuzz -- <${FORMATS.join('|')}|all> [--runs N] [--max-time S] [--timeout-ms MS] [--max-findings K] [--no-build] [--replay]`);
  process.exit(2);
}
if (args.includes('--list')) {
  console.log(FORMATS.join('\n'));
  process.exit(0);
}
const VALUED = ['--runs', '--max-time', '--timeout-ms', '--max-findings'];
const which = args.find((a, i) => !a.startsWith('--') && !VALUED.includes(args[i - 1]));
if (!which || (which !== 'all' && !FORMATS.includes(which))) usage(which ? `unknown format '${which}'` : 'name a format');
const formats = which === 'all' ? FORMATS : [which];
const RUNS = flag('runs', 10_000);
const MAX_TIME = flag('max-time', 0);
const TIMEOUT_MS = flag('timeout-ms', 5000);
const MAX_FINDINGS = flag('max-findings', 5);

async function replayOnly() {
  let bad = 0;
  for (const format of formats) {
    const { seeds, crashes } = corpusFiles(format);
    const out = await replay(format, [...seeds, ...crashes]);
    for (const [file, r] of out) {
      const pass = r.outcome === 'ok' || r.outcome === 'coded';
      if (!pass) bad++;
      console.log(
        `${pass ? 'pass' : 'FAIL'} ${format} ${path.relative(ROOT, file)}: ${r.outcome}${r.code ? ` ${r.code}` : ''}${r.error ? `\n  ${r.error.replace(/\n/g, '\n  ')}` : ''}`,
      );
    }
  }
  console.log(bad ? `${bad} corpus file(s) fail` : 'all corpus files pass');
  process.exit(bad ? 1 : 0);
}

/** One Jazzer.js process; resolves with its executions, and the finding that stopped it, if any. */
function jazzer(format, runs) {
  const work = path.join(ROOT, 'node_modules', '.cache', 'emotorch-fuzz', 'corpus', format);
  const crashDir = path.join(FUZZ, 'crashes', format);
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(crashDir, { recursive: true });
  const dict = path.join(FUZZ, 'dict', `${SEEDS_OF[format] ?? format}.dict`);
  const cli = [
    '-r',
    path.join(ROOT, 'scripts', 'fuzz-compat.cjs'),
    require.resolve('@jazzer.js/core/dist/cli.js'),
    path.join(FUZZ, 'jazzer-entry.cjs'),
    work,
    path.join(FUZZ, 'corpus', SEEDS_OF[format] ?? format),
    '-f',
    format,
    '-i',
    path.join(ROOT, 'dist') + path.sep,
    '--timeout',
    String(TIMEOUT_MS),
    ...['node_modules', ...(EXCLUDE[format] ?? [])].flatMap((e) => ['-e', e]),
    // Datasets name files by design: a fuzzed path is not a traversal bug.
    '--disable_bug_detectors',
    'path-traversal',
    ...(SYNC.has(format) ? ['--sync'] : []),
    '--',
    `-runs=${runs}`,
    '-rss_limit_mb=4096',
    `-artifact_prefix=${crashDir}${path.sep}`,
    '-print_final_stats=1',
    ...(MAX_TIME ? [`-max_total_time=${MAX_TIME}`] : []),
    ...(fs.existsSync(dict) ? [`-dict=${dict}`] : []),
  ];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, cli, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
    let text = '';
    const onData = (d) => {
      text = (text + d).slice(-200_000);
      process.stderr.write(d);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('close', (code, signal) => {
      const done = /Done (\d+) runs in (\d+) second/.exec(text);
      const stat = /stat::number_of_executed_units: (\d+)/.exec(text);
      const pulses = [...text.matchAll(/^#(\d+)\s/gm)].map((m) => Number(m[1]));
      const execs = done ? Number(done[1]) : stat ? Number(stat[1]) : pulses.length ? Math.max(...pulses) : 0;
      let artifact = /Test unit written to (\S+)/.exec(text)?.[1];
      if (!artifact && /ALARM: working on the last Unit/.test(text)) artifact = salvageTimeout(text, format, work, crashDir);
      const finding =
        code !== 0 || signal
          ? {
              artifact: artifact && path.resolve(ROOT, artifact),
              // The first lines of the error identify a finding across restarts.
              signature: (/==\d+== (Uncaught Exception:[^\n]*\n[^\n]*|ERROR: libFuzzer: [^\n]*)/.exec(text)?.[1] ?? `exit ${signal ?? code}`)
                .replace(/\d+/g, 'N')
                .trim(),
            }
          : null;
      resolve({ execs, finding, text });
    });
  });
}

/**
 * A timeout in Jazzer.js's synchronous mode can end the process before libFuzzer writes the
 * artifact; the unit was printed (as `0x..,` bytes) first. Write it to the crash corpus, and drop
 * it from the working corpus, where it would stop the next start.
 */
function salvageTimeout(text, format, work, crashDir) {
  const hex = [...text.matchAll(/^ALARM: working on the last Unit[^]*?^((?:0x[0-9a-f]{1,2},)+)$/gm)].pop()?.[1];
  if (!hex) return undefined;
  const bytes = Buffer.from(
    hex
      .split(',')
      .filter(Boolean)
      .map((x) => parseInt(x, 16)),
  );
  const sha = createHash('sha1').update(bytes).digest('hex');
  fs.rmSync(path.join(work, sha), { force: true });
  const file = path.join(crashDir, `timeout-${sha}`);
  fs.writeFileSync(file, bytes);
  return file;
}

async function fuzz(format) {
  const t0 = Date.now();
  let execs = 0;
  const findings = new Map();
  for (let attempt = 0; execs < RUNS && findings.size < MAX_FINDINGS && attempt < 4 * MAX_FINDINGS; attempt++) {
    const r = await jazzer(format, RUNS - execs);
    execs += r.execs;
    if (!r.finding) break;
    if (r.execs === 0 && !r.finding.artifact) {
      console.error(`fuzz: Jazzer.js did not start for ${format}`);
      break;
    }
    if (findings.has(r.finding.signature)) {
      if (r.finding.artifact) fs.rmSync(r.finding.artifact, { force: true }); // a duplicate of a known finding
    } else findings.set(r.finding.signature, r.finding.artifact);
    if (MAX_TIME && Date.now() - t0 > MAX_TIME * 1000) break;
  }
  return { format, execs, findings, seconds: (Date.now() - t0) / 1000 };
}

if (args.includes('--replay')) await replayOnly();
if (!args.includes('--no-build')) {
  const b = spawnSync('npm', ['run', '--silent', 'build:ts'], { cwd: ROOT, stdio: 'inherit' });
  // tsc emits JavaScript even when it reports type errors; fuzz what it emitted, but say so.
  if (b.status !== 0 && !fs.existsSync(path.join(ROOT, 'dist', 'index.js'))) process.exit(b.status ?? 1);
  if (b.status !== 0) console.error('fuzz: build:ts reported errors; fuzzing the JavaScript it emitted in dist/');
}
const results = [];
for (const f of formats) results.push(await fuzz(f));
console.log('\nformat       executions  findings  seconds');
for (const r of results) {
  console.log(`${r.format.padEnd(12)} ${String(r.execs).padStart(10)}  ${String(r.findings.size).padStart(8)}  ${r.seconds.toFixed(0).padStart(7)}`);
  for (const [sig, file] of r.findings) console.log(`  ${file ? path.relative(ROOT, file) : '(no artifact)'}\n    ${sig.replace(/\n/g, '\n    ')}`);
}
process.exit(results.some((r) => r.findings.size) ? 1 : 0);
