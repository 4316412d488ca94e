// Op profiles side by side, and the product floor of a float32 step (issue 48), shared by run.mjs's
// --ops and the LanguageBind bench: the matrix products' time and work on each side, from op
// profiles, against the whole step.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));

/**
 * Each op's self time per step side by side, largest first (`rows` of them), and the totals.
 * `ours`, `theirs`: {name, calls, self_ms} per profiled call; `per`: steps per profiled call.
 */
export function printOps(ours, theirs, per, rows) {
  const names = new Map();
  for (const [side, list] of [
    ['ours', ours],
    ['theirs', theirs],
  ]) {
    for (const o of list) {
      const r = names.get(o.name) ?? { name: o.name, ours: 0, theirs: 0, oursCalls: 0, theirsCalls: 0 };
      r[side] += o.self_ms / per;
      r[`${side}Calls`] += o.calls / per;
      names.set(o.name, r);
    }
  }
  const sorted = [...names.values()].sort((x, y) => Math.max(y.ours, y.theirs) - Math.max(x.ours, x.theirs));
  const w = Math.max(...sorted.slice(0, rows).map((r) => r.name.length), 10);
  console.log(`op self time per step (ms; calls), emotorch (et.profiler) vs Python (torch.profiler):`);
  for (const r of sorted.slice(0, rows)) {
    console.log(
      `  ${r.name.padEnd(w)}  ${r.ours.toFixed(1).padStart(9)} (${String(Math.round(r.oursCalls)).padStart(5)})  ${r.theirs.toFixed(1).padStart(9)} (${String(Math.round(r.theirsCalls)).padStart(5)})`,
    );
  }
  const sum = (k) => sorted.reduce((s, r) => s + r[k], 0);
  console.log(`  ${'(all ops)'.padEnd(w)}  ${sum('ours').toFixed(1).padStart(9)}          ${sum('theirs').toFixed(1).padStart(9)}`);
}

// The matrix-product ops and their float32 work from their input shapes, one formula for both
// sides: 2·M·K·N flops (a multiply and an add per term). aten::matmul, linear and the like only
// call these; convolutions and attention kernels are left out (their shapes do not give their work).
const prod = (dims) => dims.reduce((p, d) => p * d, 1);
const PRODUCT_FLOPS = {
  'aten::mm': ([a, b]) => 2 * prod(a) * b[1], // a (M, K), b (K, N)
  'aten::addmm': ([, a, b]) => 2 * prod(a) * b[1],
  'aten::bmm': ([a, b]) => 2 * prod(a) * b[2], // a (B, M, K), b (B, K, N)
  'aten::baddbmm': ([, a, b]) => 2 * prod(a) * b[2],
  'mkldnn::_linear_pointwise': ([x, w]) => 2 * prod(x) * w[0], // x (…, K), w (N, K)
};

/**
 * The product ops' self ms per step (from `timed`: {name, self_ms} per profiled call) and flops per
 * step (from `shaped`: {name, shapes, calls} per profiled call, grouped by shapes); `unread`: calls
 * whose shapes gave no count. `per`: steps per profiled call.
 */
export function products(timed, shaped, per) {
  let ms = 0,
    flops = 0,
    unread = 0;
  for (const o of timed) if (PRODUCT_FLOPS[o.name]) ms += o.self_ms / per;
  for (const o of shaped) {
    const f = PRODUCT_FLOPS[o.name];
    if (!f) continue;
    let shapes = null;
    try {
      shapes = typeof o.shapes === 'string' ? JSON.parse(o.shapes) : o.shapes;
    } catch {
      /* counted below */
    }
    const one = Array.isArray(shapes) ? f(shapes) : NaN;
    if (Number.isFinite(one)) flops += (one * o.calls) / per;
    else unread += o.calls / per;
  }
  return { ms, flops, unread };
}

// bench/fma_peak.c, compiled once into the temp folder (again when the source is newer): {avx2,
// avx512} GFLOP/s on `nThreads` threads, or null where it cannot be compiled or run (no C
// compiler, not x86-64).
function fmaPeak(nThreads) {
  const exe = path.join(os.tmpdir(), `emotorch-fma-peak-${process.getuid?.() ?? 0}`);
  const src = path.join(here, 'fma_peak.c');
  if (!fs.existsSync(exe) || fs.statSync(exe).mtimeMs < fs.statSync(src).mtimeMs) {
    const cc = spawnSync(process.env.CC || 'cc', ['-O2', '-pthread', src, '-o', exe], { encoding: 'utf8' });
    if (cc.status !== 0) return null;
  }
  const r = spawnSync(exe, [String(nThreads)], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) return null;
  const peaks = {};
  for (const line of r.stdout.split('\n')) {
    const [isa, , g] = line.trim().split(/\s+/);
    if (isa && Number(g) > 0) peaks[isa] = Number(g);
  }
  return peaks;
}

// What the ratio can come down to at all: a step that were nothing but its products, run as fast as
// Python's (same kernels at the same speed), or at this CPU's float32 FMA peak, which no GEMM
// passes. Both against Python's median step time from the trials (unprofiled). Products inside
// other kernels (SDPA, convolutions) are not counted, so the real floor lies above these.
export function productFloor(ours, theirs, pyMedianMs, ourMedianMs, threads) {
  if (!theirs.ms || !ours.ms) return;
  const line = (s) =>
    `${s.ms.toFixed(1)} ms, ${(s.flops / 1e9).toFixed(2)} GFLOP (${(s.flops / s.ms / 1e6).toFixed(0)} GFLOP/s)${s.unread ? `; ${Math.round(s.unread)} calls with unread shapes not counted` : ''}`;
  console.log(`matrix products per step (${Object.keys(PRODUCT_FLOPS).join(', ')}): emotorch ${line(ours)}; Python ${line(theirs)}`);
  console.log(
    `a step of nothing but products as fast as Python's: ratio ${(theirs.ms / pyMedianMs).toFixed(3)} (Python's ${theirs.ms.toFixed(1)} ms of its ${pyMedianMs.toFixed(1)} ms median step)`,
  );
  // issue 48's yardstick: emotorch's whole step against a step of only PyTorch-speed products
  // (1.00 = everything but the products is free); the time outside them is the rest of the step
  console.log(
    `product-floor ratio: emotorch's step / Python's products = ${(ourMedianMs / theirs.ms).toFixed(3)} (${ourMedianMs.toFixed(1)} ms / ${theirs.ms.toFixed(1)} ms); outside the products: emotorch ${(ourMedianMs - ours.ms).toFixed(1)} ms, Python ${(pyMedianMs - theirs.ms).toFixed(1)} ms`,
  );
  const peaks = fmaPeak(threads);
  if (!peaks) {
    console.log('(bench/fma_peak.c could not be compiled or run here: the FMA peak lines are left out)');
    return;
  }
  // the ISA the GEMMs run on: AVX2 under the profile (or on an AVX2-only CPU), else AVX-512
  const isa = process.env.ONEDNN_MAX_CPU_ISA === 'AVX2' || !peaks.avx512 ? 'avx2' : 'avx512';
  const peak = peaks[isa];
  if (!peak) return;
  // the smaller count: attention's products run inside SDPA on one side and as bmm on the other,
  // so only the work both sides count is certain to be needed
  const atPeak = Math.min(ours.flops || Infinity, theirs.flops) / peak / 1e6;
  console.log(
    `this CPU's float32 FMA peak on ${threads} threads (bench/fma_peak.c, ${isa}): ${peak.toFixed(0)} GFLOP/s; emotorch's products at ${((100 * ours.flops) / ours.ms / 1e6 / peak).toFixed(0)} % of it, Python's at ${((100 * theirs.flops) / theirs.ms / 1e6 / peak).toFixed(0)} %`,
  );
  console.log(
    `a step of nothing but products at that peak: ${atPeak.toFixed(1)} ms, ratio ${(atPeak / pyMedianMs).toFixed(3)}: no float32 implementation of this step can go below it on this CPU`,
  );
}
