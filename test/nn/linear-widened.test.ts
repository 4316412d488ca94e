// bfloat16 prompt rows on a CPU without bfloat16 products (AVX2), checked in a child process capped
// at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2, as the AVX2 bench profile runs), the
// same on any x86-64 CPU. Up to 64 rows (a short prompt's pass) a Linear layer takes the row
// kernels (kernels/linear_rows.cc; no ATen or oneDNN product in the op profile); from 65 it widens
// its weight to float32 a slice of outputs at a time and multiplies in float32 (kernels/linear.cc),
// where oneDNN and MKL multiply bfloat16 at about a third of their float32 speed (the float32 slices
// through oneDNN's or the BLAS's product, whichever linear's backend choice keeps, where ATen's
// bfloat16 linear, aten::linear, did not run). Either way the layer's output is within the bound
// of the float64 product computed by ATen (each bfloat16 product exact in float32, float32 sums of
// K terms, one rounding to bfloat16: |err| ≤ (K + 8) · 2⁻²⁴ · Σ|x·w| + 2⁻⁸ |y|): row kernels for 1,
// 5, 16, 48 and 64 rows; the widened product for a weight of several slices (4096 inputs: 256 outputs a
// slice, 600 outputs) and an odd one; with and without a bias, 2-D and 3-D inputs, odd numbers of
// inputs.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');
const CHILD = `
const et = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});
(async () => {
  et.setNumThreads(2);
  et.manualSeed(7);
  const out = [];
  for (const [inn, outn, shape, bias] of [
    [1100, 70, [1, 1100], true], [1100, 70, [5, 1100], false], [524, 301, [16, 524], true], [97, 42, [2, 24, 97], false],
    [4096, 600, [64, 4096], true], [4096, 600, [65, 4096], true], [97, 42, [2, 37, 97], false], [4096, 600, [80, 4096], false],
  ]) {
    const lin = await et.nn.Linear.create({ in_features: inn, out_features: outn, bias }).to({ dtype: 'bfloat16' });
    const x = et.randn(shape).to({ dtype: 'bfloat16' });
    await et.profiler.start();
    const y = await et.noGrad(() => lin.forward(x));
    const names = (await et.profiler.stop()).keyAverages().map((o) => o.name), ops = new Set(names);
    const [w, b] = lin.parameters();
    const x64 = x.to({ dtype: 'float64' }).reshape([-1, inn]);
    const w64 = w.to({ dtype: 'float64' });
    let ref = x64.matmul(w64.transpose(0, 1));
    const mag = x64.abs().matmul(w64.abs().transpose(0, 1));
    if (bias) ref = ref.add(b.to({ dtype: 'float64' }));
    const bound = mag.mul((inn + 8) * 2 ** -24).add(ref.abs().mul(2 ** -8)).add(bias ? b.to({ dtype: 'float64' }).abs().mul(2 ** -24) : 0);
    const err = y.to({ dtype: 'float64' }).reshape([-1, outn]).sub(ref).abs();
    out.push({ shape, outn, rows: shape.slice(0, -1).reduce((p, q) => p * q, 1), dtype: y.dtype, yshape: y.shape, worst: err.sub(bound).max().item(), peak: ref.abs().max().item(),
      mm: ops.has('aten::mm') || ops.has('mkldnn::_linear_pointwise'), linear: ops.has('aten::linear'), products: names.filter((n) => /aten::(mm|addmm|linear|matmul)|mkldnn/.test(n)) });
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`;

describe('bfloat16 Linear on AVX2 (a prompt: the row kernels up to 64 rows, the weight widened to float32 from 65)', () => {
  it('within the bound of the float64 product, through the row kernels or the widened product, for weights of one and several slices', () => {
    const env = { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' };
    delete env.EMOTORCH_CPU_LINEAR;
    const r = spawnSync(process.execPath, ['-e', CHILD], { cwd: ROOT, env, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(results).toHaveLength(8);
    expect(results.map((c: { rows: number }) => c.rows)).toEqual([1, 5, 16, 48, 64, 65, 74, 80]);
    for (const c of results) {
      const what = `input ${JSON.stringify(c.shape)}`;
      expect(c.dtype, what).toBe('bfloat16');
      expect(c.yshape, what).toEqual([...c.shape.slice(0, -1), c.outn]);
      expect(c.worst, `${what}: error beyond the bound`).toBeLessThanOrEqual(0);
      expect(c.peak, what).toBeGreaterThan(0.1);
      if (c.rows <= 64) expect(c.products, `${what}: an ATen or oneDNN product ran, not the row kernels`).toEqual([]);
      else expect({ mm: c.mm, linear: c.linear }, `${what}: the widened product ran`).toEqual({ mm: true, linear: false });
    }
  });
});
