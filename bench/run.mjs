// Side-by-side benchmarks: emotorch vs PyTorch / transformers from Python on the same work, same
// thread count, trials alternating in one command. Prints both medians, the ratio and the range of
// the per-pair ratios (an emotorch trial and the Python trial after it).
//   npm run bench -- load | serve | quant | mlp | features | models | trainer | spectra | spectra-pretrain | salmonn | ddp | zero | units | languagebind | internvl | voicebox [--threads N] [--trials N] [--profile native|avx2] [--device cuda] [--bf16] [--ops [--ops-rows N]] [--case a,b] [--neighbour]
// --bf16 (models, spectra, salmonn, languagebind's train case): both sides under CPU autocast to bfloat16 (et.autocast /
// torch.autocast('cpu', dtype=torch.bfloat16)) around each forward, the backward and the optimizer
// outside it, as users write it; parameters stay float32.
// --neighbour: the trials again beside one busy process (a spinning loop), each side's slowdown printed;
// then emotorch's with adaptive threads (et.setAdaptiveThreads), beside it and on the quiet machine.
// --ops: after the trials, each side's op profile of one call, side by side (see opsTable).
// --device cuda (models, salmonn): both sides on the GPU (Python: torch.set_default_device), each
// trial timed up to a device synchronize.
// --profile avx2 runs both sides on AVX2 kernels whatever the CPU has (ONEDNN_MAX_CPU_ISA=AVX2,
// ATEN_CPU_CAPABILITY=avx2, MKL_ENABLE_INSTRUCTIONS=AVX2, which libtorch and PyTorch both read at
// start: the command runs itself again with them set); the header line names the CPU and the
// ATen dispatch level each side reports, so a profile that did not take effect shows.
// A case may time several steps per call (`stepsPerCall`) and add a bare-loop `baseline` whose
// median is printed as the overhead of emotorch's own code over it.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import { fileURLToPath } from 'url';
import * as os from 'os';
import * as et from 'emotorch';
import { printOps, products, productFloor } from './floor.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BENCHES = {
  load: 'load.mjs',
  mlp: 'mlp.mjs',
  features: 'features.mjs',
  models: 'models.mjs',
  trainer: 'trainer.mjs',
  spectra: 'spectra.mjs',
  'spectra-pretrain': 'spectra.mjs',
  salmonn: 'salmonn.mjs',
  ddp: 'ddp.mjs',
  zero: 'zero.mjs',
  units: 'units.mjs',
  languagebind: 'languagebind.mjs',
  internvl: 'internvl.mjs',
  serve: 'serve.mjs',
  quant: 'quant.mjs',
  voicebox: 'voicebox.mjs',
};
// `spectra-pretrain` is the spectra module's spectra_pretrain case (issue 46's name for it)
const CASE_OF = { 'spectra-pretrain': 'spectra_pretrain' };
const args = process.argv.slice(2);
const name = args.find((a) => !a.startsWith('--')) ?? 'mlp';
if (!(name in BENCHES)) {
  console.error(`unknown benchmark '${name}'; available: ${Object.keys(BENCHES).join(', ')}`);
  process.exit(2);
}
const opt = (k, d) => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? Number(args[i + 1]) : d;
};
// OPENBLAS_CORETYPE: numpy's and scipy's OpenBLAS on the Python side (the k-means distances of
// `units`, the mel products of `features`), which picks its kernels by CPUID and reads none of the
// other three (Haswell is its AVX2 kernel set)
const PROFILES = {
  native: {},
  avx2: { ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2', MKL_ENABLE_INSTRUCTIONS: 'AVX2', OPENBLAS_CORETYPE: 'Haswell' },
};
const profile = args.includes('--profile') ? args[args.indexOf('--profile') + 1] : 'native';
if (!(profile in PROFILES)) {
  console.error(`unknown profile '${profile}'; available: ${Object.keys(PROFILES).join(', ')}`);
  process.exit(2);
}
const device = args.includes('--device') ? args[args.indexOf('--device') + 1] : 'cpu';
if (!/^(cpu|cuda(:\d+)?)$/.test(device)) {
  console.error(`unknown device '${device}': cpu or cuda`);
  process.exit(2);
}
if (device !== 'cpu' && !['models', 'salmonn'].includes(name)) {
  console.error(`--device ${device}: only the models and salmonn benchmarks run on a GPU`);
  process.exit(2);
}
if (device !== 'cpu' && !et.cuda.isAvailable()) {
  console.error(`--device ${device}: this emotorch has no CUDA device (a CUDA build: scripts/build-cuda.sh)`);
  process.exit(2);
}
const bf16 = args.includes('--bf16');
if (bf16 && !['models', 'spectra', 'spectra-pretrain', 'salmonn', 'languagebind'].includes(name)) {
  console.error('--bf16: the models, spectra, salmonn and languagebind (its train case) benchmarks take it');
  process.exit(2);
}
const wanted = PROFILES[profile];
if (Object.entries(wanted).some(([k, v]) => process.env[k] !== v)) {
  // the variables are read when the libraries start: run again with them set
  const r = spawnSync(process.execPath, process.argv.slice(1), { stdio: 'inherit', env: { ...process.env, ...wanted } });
  process.exit(r.status ?? 1);
}
if (!process.env.EMOTORCH_BENCH_CHILD) {
  // the Python side's ATen dispatch level, and the kernel set numpy's OpenBLAS chose
  const probe = [
    'import torch, io, re, contextlib',
    'print(torch.backends.cpu.get_cpu_capability())',
    'f = io.StringIO()',
    'try:', // numpy.show_runtime is numpy 1.24's
    '    import numpy',
    '    with contextlib.redirect_stdout(f): numpy.show_runtime()',
    'except Exception: pass',
    "print(','.join(sorted(set(re.findall(r\"'architecture': '(\\w+)'\", f.getvalue())))) or '?')",
  ].join('\n');
  const py = spawnSync(process.env.EMOTORCH_PYTHON || 'python3', ['-c', probe], { encoding: 'utf8' });
  const [pyCap, blasCore] = py.status === 0 ? py.stdout.trim().split('\n') : [];
  let cpuModel = os.cpus()[0]?.model ?? '?';
  try {
    cpuModel = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpuModel;
  } catch {
    /* not Linux */
  }
  const flags = (() => {
    try {
      return (
        fs
          .readFileSync('/proc/cpuinfo', 'utf8')
          .match(/flags\s*:\s*(.*)/)?.[1]
          .split(' ') ?? []
      );
    } catch {
      return [];
    }
  })();
  const isa = flags.includes('avx512f') ? 'AVX-512' : flags.includes('avx2') ? 'AVX2' : flags.length ? 'no AVX2' : '?';
  console.log(
    `profile ${profile}${
      Object.keys(wanted).length
        ? ` (${Object.entries(wanted)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')})`
        : ''
    }; CPU ${cpuModel} (${isa}); ` +
      `ATen dispatch level: emotorch ${et.versions.cpuCapability}, Python ${pyCap ?? 'unknown (no torch)'}${blasCore && blasCore !== '?' ? `; numpy's OpenBLAS: ${blasCore}` : ''}`,
  );
}
const threads = opt('threads', os.availableParallelism?.() ?? os.cpus().length);
et.setNumThreads(threads);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// The Python side: one worker process per case, one timed trial per request.
function worker(caseName, cfg) {
  const py = spawn(process.env.EMOTORCH_PYTHON || 'python3', [path.join(here, 'torch_worker.py'), caseName, JSON.stringify(cfg)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const queue = [];
  const waiting = [];
  readline.createInterface({ input: py.stdout }).on('line', (l) => (waiting.length ? waiting.shift().resolve(l) : queue.push(l)));
  py.on('exit', (code) => waiting.splice(0).forEach((w) => w.reject(new Error(`the Python worker exited (${code})`))));
  const next = () => new Promise((resolve, reject) => (queue.length ? resolve(queue.shift()) : waiting.push({ resolve, reject })));
  return {
    next,
    trial: () => {
      py.stdin.write('trial\n');
      return next();
    },
    profile: () => {
      py.stdin.write('profile\n');
      return next();
    },
    end: () => py.stdin.end(),
  };
}

// Peak resident memory of this process since the last reset (Linux: VmHWM, reset through
// /proc/self/clear_refs), so each case's peak is its own; null elsewhere.
function resetPeakRss() {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
function peakRssKb() {
  try {
    return Number(fs.readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s*(\d+)/)[1]);
  } catch {
    return null;
  }
}

async function runCase(caseName, c) {
  // what earlier cases of this command left resident still counts (their models until GC runs);
  // the cache's blocks do not
  et.cpu.emptyCache();
  const ownPeak = resetPeakRss();
  const cfg = { ...c.config, threads, trials: opt('trials', c.config.trials), device, bf16 };
  console.log(`\n[${caseName}] ${c.describe(cfg)}`);
  if (device !== 'cpu') console.log(`device: ${device} on both sides`);
  if (bf16) console.log('autocast to bfloat16 on both sides (the forward; parameters float32)');
  console.log(
    `threads: ${threads} each${et.getAdaptiveThreads() ? ' (emotorch: adaptive, EMOTORCH_ADAPTIVE_THREADS=1)' : ''}; ${cfg.trials} alternating trials of ${cfg.steps} steps after ${cfg.warmup} warm-up steps`,
  );
  const py = worker(caseName, cfg);
  // the Python side builds and warms up first, so neither side's warm-up (where emotorch times its
  // first products of each kind, see et.cpu.linearBackends) runs beside the other's
  const ready = JSON.parse(await py.next());
  const step = await c.setup(cfg);
  for (let i = 0; i < cfg.warmup; i++) await step();
  const base = c.baseline ? await c.baseline(cfg) : null;
  if (base) for (let i = 0; i < cfg.warmup; i++) await base();
  const per = c.stepsPerCall ? c.stepsPerCall(cfg) : 1;
  const timed = async (fn) => {
    const t0 = process.hrtime.bigint();
    let out;
    for (let i = 0; i < cfg.steps; i++) out = await fn();
    if (out && typeof out.item === 'function' && out.numel === 1) out.item();
    if (device !== 'cpu') et.cuda.synchronize();
    return Number(process.hrtime.bigint() - t0) / 1e6 / cfg.steps / per;
  };
  const bare = [];
  console.log(`emotorch ${et.versions.emotorch} on libtorch ${et.versions.libtorch}; Python: torch ${ready.torch} (default implementations)`);
  const ours = [],
    theirs = [];
  let pyPeak = null;
  for (let t = 0; t < cfg.trials; t++) {
    ours.push(await timed(step));
    const r = JSON.parse(await py.trial());
    theirs.push(r.ms_per_step / per);
    pyPeak = r.peak_rss_kb ?? null;
    if (base) bare.push(await timed(base));
    console.log(
      `  trial ${t + 1}: emotorch ${ours[t].toFixed(2)} ms/step   Python ${theirs[t].toFixed(2)} ms/step${base ? `   bare emotorch loop ${bare[t].toFixed(2)} ms/step` : ''}`,
    );
  }
  // the peaks of the timed trials (Python's is its last trial's), before the profiles below add
  // theirs (recorded shapes, events)
  const ourPeak = ownPeak ? peakRssKb() : null;
  if (args.includes('--ops')) await opsTable(step, py, cfg, per, median(theirs), median(ours));
  let busy = null;
  if (args.includes('--neighbour')) {
    // the same trials again with one busy process beside both sides (a spinning loop, as a
    // neighbour's compute job would be): how much slower a step gets when a core is taken
    const adaptiveAtStart = et.getAdaptiveThreads();
    const spinner = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    const o = [],
      p = [],
      oa = [],
      qa = [];
    try {
      for (let t = 0; t < cfg.trials; t++) {
        o.push(await timed(step));
        p.push(JSON.parse(await py.trial()).ms_per_step / per);
        console.log(`  busy neighbour, trial ${t + 1}: emotorch ${o[t].toFixed(2)} ms/step   Python ${p[t].toFixed(2)} ms/step`);
      }
      // emotorch again with adaptive threads (et.setAdaptiveThreads), the Python trials between
      // its trials as before
      et.setAdaptiveThreads(true);
      for (let t = 0; t < cfg.trials; t++) {
        oa.push(await timed(step));
        const active = et.getActiveThreads();
        await py.trial();
        console.log(`  busy neighbour, adaptive threads, trial ${t + 1}: emotorch ${oa[t].toFixed(2)} ms/step (${active} threads at the end)`);
      }
    } finally {
      spinner.kill('SIGKILL');
    }
    // and on the quiet machine, where adaptive threads must cost nothing: fixed-count and adaptive
    // trials alternating (with the Python trials between them as before)
    const qf = [];
    for (let t = 0; t < cfg.trials; t++) {
      et.setAdaptiveThreads(false);
      qf.push(await timed(step));
      await py.trial();
      et.setAdaptiveThreads(true);
      qa.push(await timed(step));
      const active = et.getActiveThreads();
      await py.trial();
      console.log(
        `  quiet again, trial ${t + 1}: emotorch fixed count ${qf[t].toFixed(2)} ms/step, adaptive threads ${qa[t].toFixed(2)} ms/step (${active} threads at the end)`,
      );
    }
    et.setAdaptiveThreads(adaptiveAtStart);
    busy = { ours: median(o), theirs: median(p), adaptive: median(oa), quietFixed: median(qf), quietAdaptive: median(qa) };
  }
  py.end();
  const a = median(ours),
    b = median(theirs);
  console.log(`median: emotorch ${a.toFixed(2)} ms/step, Python ${b.toFixed(2)} ms/step`);
  if (c.audioSecondsPerStep) {
    const work = c.audioSecondsPerStep(cfg);
    const rate = (ms) => work / (ms / 1000);
    const show = (x) => x.toFixed(x < 10 ? 3 : 0);
    console.log(`throughput: emotorch ${show(rate(a))} s of audio/s, Python ${show(rate(b))} s of audio/s`);
    console.log(`real-time factor (compute s per audio s): emotorch ${(a / 1000 / work).toFixed(2)}, Python ${(b / 1000 / work).toFixed(2)}`);
    console.log(`speed-up emotorch/Python: ${(b / a).toFixed(2)}×`);
  }
  // each trial pair ran back to back, so a drift of the machine's speed moves both of its sides:
  // the spread of the pair ratios says how far the ratio of the medians can be trusted
  const pairs = ours.map((o, i) => o / theirs[i]);
  console.log(
    `ratio emotorch/Python (time): ${(a / b).toFixed(3)} (trial pairs ${Math.min(...pairs).toFixed(3)}–${Math.max(...pairs).toFixed(3)}, their median ${median(pairs).toFixed(3)})`,
  );
  if (busy) {
    console.log(
      `with a busy neighbour: emotorch ${busy.ours.toFixed(2)} ms/step (${(busy.ours / a).toFixed(2)}× its quiet time), Python ${busy.theirs.toFixed(2)} ms/step (${(busy.theirs / b).toFixed(2)}×); ratio ${(busy.ours / busy.theirs).toFixed(3)}`,
    );
    console.log(
      `adaptive threads: with a busy neighbour ${busy.adaptive.toFixed(2)} ms/step (${(busy.adaptive / a).toFixed(2)}× the quiet time above); quiet again, alternating: adaptive ${busy.quietAdaptive.toFixed(2)} ms/step, fixed count ${busy.quietFixed.toFixed(2)} ms/step (ratio ${(busy.quietAdaptive / busy.quietFixed).toFixed(3)})`,
    );
    console.log(
      `against the second quiet time (fixed count ${busy.quietFixed.toFixed(2)} ms/step): busy neighbour ${(busy.ours / busy.quietFixed).toFixed(2)}× with a fixed count, ${(busy.adaptive / busy.quietFixed).toFixed(2)}× adaptive`,
    );
  }
  if (ourPeak && pyPeak)
    console.log(`peak RSS: emotorch ${(ourPeak / 1024).toFixed(0)} MiB, Python ${(pyPeak / 1024).toFixed(0)} MiB (ratio ${(ourPeak / pyPeak).toFixed(2)})`);
  if (base) {
    const m = median(bare);
    console.log(`bare emotorch loop: median ${m.toFixed(2)} ms/step; overhead of the emotorch code under test over it: ${(100 * (a / m - 1)).toFixed(1)} %`);
  }
}

// --ops: one more call of each side under its op profiler (et.profiler; torch.profiler), the
// ops' self time per step side by side, largest first, and the profiled totals; then the matrix
// products' work (from one more call each recording input shapes, which slows the ops, so only
// the calls are read from it) and speed on each side against this CPU's float32 FMA peak
// (productFloor).
async function opsTable(step, py, cfg, per, pyMedianMs, ourMedianMs) {
  const rows = Number(opt('ops-rows', 25));
  const profiledSteps = async (recordShapes) => {
    await et.profiler.start({ recordShapes });
    for (let i = 0; i < cfg.steps; i++) await step();
    return et.profiler.stop();
  };
  const prof = await profiledSteps(false);
  const shapedProf = await profiledSteps(true);
  const profiled = JSON.parse(await py.profile());
  const theirs = profiled.ops;
  const ours = prof.keyAverages().map((o) => ({ name: o.name, calls: o.calls / cfg.steps, self_ms: o.selfMs / cfg.steps }));
  printOps(ours, theirs, per, rows);
  const oursShaped = shapedProf.keyAverages({ groupByShapes: true }).map((o) => ({ name: o.name, shapes: o.shapes, calls: o.calls / cfg.steps }));
  // on a GPU the profiles time the launches, and the FMA peak is the CPU's: no floor there
  if (device === 'cpu') productFloor(products(ours, oursShaped, per), products(theirs, profiled.shaped, per), pyMedianMs, ourMedianMs, threads);
}

const mod = await import(path.join(here, BENCHES[name]));
// A case with its own `run` compares within emotorch (no Python side).
// --case a,b: only these cases of the command
const only = args.includes('--case') ? args[args.indexOf('--case') + 1].split(',') : CASE_OF[name] ? [CASE_OF[name]] : null;
const unknownCase = only?.find((c) => !(c in mod.cases));
if (unknownCase) {
  console.error(`unknown case '${unknownCase}' of ${name}; available: ${Object.keys(mod.cases).join(', ')}`);
  process.exit(2);
}
const selected = Object.keys(mod.cases).filter((k) => !only || only.includes(k));
if (selected.length > 1) {
  // each case in a process of its own, so its peak RSS is its own (not what earlier cases left)
  const rest = process.argv.slice(1).filter((a, i, all) => a !== '--case' && all[i - 1] !== '--case');
  for (const k of selected) {
    const r = spawnSync(process.execPath, [...rest, '--case', k], { stdio: 'inherit', env: { ...process.env, EMOTORCH_BENCH_CHILD: '1' } });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  process.exit(0);
}
for (const [caseName, c] of Object.entries(mod.cases).filter(([k]) => !only || only.includes(k)))
  await (c.run ? c.run({ threads, opt }) : runCase(caseName, c));
