// The float32 CPU linear layer runs its products on oneDNN (native/nn/fused.cc); EMOTORCH_CPU_LINEAR=aten
// keeps ATen's BLAS path. Both must give the same outputs and gradients (the model parity tests
// check the oneDNN path against HF; this checks the switch and the bias / no-bias / frozen cases).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as path from 'path';

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
  process.stdout.write(JSON.stringify(out));
})();`;

function run(env: Record<string, string>): Record<string, { y: number[]; dx: number[]; grads: Array<number[] | null> }> {
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}
const maxDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('float32 CPU linear: oneDNN and ATen paths', () => {
  it('give the same outputs and gradients (bias, no bias, frozen weights)', () => {
    const onednn = run({});
    const aten = run({ EMOTORCH_CPU_LINEAR: 'aten' });
    for (const k of ['bias', 'nobias', 'frozen']) {
      expect(onednn[k].y.length).toBe(2 * 7 * 40);
      expect(maxDiff(onednn[k].y, aten[k].y)).toBeLessThan(1e-5);
      expect(maxDiff(onednn[k].dx, aten[k].dx)).toBeLessThan(1e-4);
      expect(onednn[k].grads.map((g) => g === null)).toEqual(aten[k].grads.map((g) => g === null));
      onednn[k].grads.forEach((g, i) => { if (g) expect(maxDiff(g, aten[k].grads[i]!)).toBeLessThan(1e-4); });
    }
    expect(onednn.frozen.grads).toEqual([null, null]);
    expect(onednn.nobias.grads.length).toBe(1);
  });
});
