// The float32 CPU linear layer runs each kind of product on oneDNN or on ATen's BLAS, whichever a
// first timing of both finds faster (native/kernels/linear.cc); EMOTORCH_CPU_LINEAR=onednn or =blas pins
// one, =aten keeps ATen's whole linear. All must give the same outputs and gradients (the model
// parity tests check the default path against HF; this checks the switch and the bias / no-bias /
// frozen cases, and the table of what was chosen).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tmpdir } from '../helpers';

const script = `
const et = require(${JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'index.js'))});
(async () => {
  const out = {};
  for (const [name, bias, frozen] of [['bias', true, false], ['nobias', false, false], ['frozen', true, true]]) {
    et.manualSeed(3);
    const m = et.nn.Linear.create({ in_features: 48, out_features: 40, bias });
    if (frozen) m.freeze();
    const x = et.randn([2, 7, 48]);
    x.requiresGrad = true;
    const y = await m.forward(x);
    await y.mul(y).sum().backward();
    out[name] = { y: Array.from(y.dataSync()), dx: Array.from(x.grad.dataSync()),
      grads: m.parameters().map((p) => (p.grad ? Array.from(p.grad.dataSync()) : null)) };
  }
  out.backends = et.cpu.linearBackends();
  process.stdout.write(JSON.stringify(out));
})();`;

type Run = Record<string, { y: number[]; dx: number[]; grads: Array<number[] | null> }> & { backends: Array<Record<string, unknown>> };
function run(env: Record<string, string>): Run {
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}
const maxDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('float32 CPU linear: oneDNN and ATen paths', () => {
  it('give the same outputs and gradients (bias, no bias, frozen weights) whichever backend runs', () => {
    const cache = tmpdir();
    const aten = run({ EMOTORCH_CPU_LINEAR: 'aten', EMOTORCH_CACHE_DIR: cache });
    for (const mode of ['', 'onednn', 'blas']) {
      const r = run(mode ? { EMOTORCH_CPU_LINEAR: mode, EMOTORCH_CACHE_DIR: cache } : { EMOTORCH_CACHE_DIR: cache });
      for (const k of ['bias', 'nobias', 'frozen']) {
        expect(r[k].y.length).toBe(2 * 7 * 40);
        expect(maxDiff(r[k].y, aten[k].y)).toBeLessThan(1e-5);
        expect(maxDiff(r[k].dx, aten[k].dx)).toBeLessThan(1e-4);
        expect(r[k].grads.map((g) => g === null)).toEqual(aten[k].grads.map((g) => g === null));
        r[k].grads.forEach((g, i) => {
          if (g) expect(maxDiff(g, aten[k].grads[i]!)).toBeLessThan(1e-4);
        });
      }
      expect(r.frozen.grads).toEqual([null, null]);
      expect(r.nobias.grads.length).toBe(1);
      if (mode) {
        expect(r.backends).toEqual([]); // pinned: nothing timed
      } else {
        // timed per kind: the forward with and without bias (14 rows → 16), dx = dy W (W
        // transposed), dW = dyᵀ x (dy transposed: 40 rows, inner 14, outer 48)
        const kinds = r.backends.map((b) => `${b.rows}:${b.inner}:${b.outer}:${b.aTransposed}:${b.weightTransposed}:${b.bias}`).sort();
        expect(kinds).toEqual(['16:40:48:false:true:false', '16:48:40:false:false:false', '16:48:40:false:false:true', '64:14:48:true:true:false'].sort());
        for (const b of r.backends) expect(['onednn', 'blas']).toContain(b.backend);
      }
    }
    expect(aten.backends).toEqual([]);
    // the choices were written once, and a later process takes them as they are (same backend, same bits)
    const files = fs.readdirSync(cache).filter((f) => /^linear-backends-[0-9a-f]{16}\.txt$/.test(f));
    expect(files.length).toBe(1);
    const lines = fs.readFileSync(path.join(cache, files[0]), 'utf8').trim().split('\n');
    expect(lines.length).toBe(4);
    const again = run({ EMOTORCH_CACHE_DIR: cache });
    const chosen = (r: Run) => r.backends.map((b) => `${b.rows}:${b.inner}:${b.outer}:${b.aTransposed}:${b.weightTransposed}:${b.bias}:${b.backend}`).sort();
    const first = lines
      .map((l) => l.split(' '))
      .map(
        ([rows, inner, outer, , aT, wT, bias, g]) => `${rows}:${inner}:${outer}:${aT === '1'}:${wT === '1'}:${bias === '1'}:${g === '0' ? 'onednn' : 'blas'}`,
      )
      .sort();
    expect(chosen(again)).toEqual(first);
    expect(fs.readFileSync(path.join(cache, files[0]), 'utf8').trim().split('\n').length).toBe(4); // nothing timed again
    expect(again.bias.y).toEqual(run({ EMOTORCH_CACHE_DIR: cache }).bias.y); // bit-equal run to run
    // a damaged file is read up to the damage: the rest is timed again (the numbers are the same)
    // and the file is written anew, whole, so the process after that times nothing
    fs.writeFileSync(path.join(cache, files[0]), `${lines[0]}\n\u0000garbage 7 -1\n99999999999999999999999 1\n`);
    const damaged = run({ EMOTORCH_CACHE_DIR: cache });
    expect(damaged.backends.length).toBe(4);
    expect(maxDiff(damaged.bias.y, aten.bias.y)).toBeLessThan(1e-5);
    const mended = fs.readFileSync(path.join(cache, files[0]), 'utf8');
    expect(mended).not.toMatch(/garbage/);
    expect(mended.trim().split('\n').length).toBe(4);
    expect(chosen(run({ EMOTORCH_CACHE_DIR: cache }))).toEqual(chosen(damaged));
  });
});
