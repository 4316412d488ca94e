// The bfloat16 product of one row (decoding): a kernel of emotorch's own (AVX-512 BF16, AVX2 or
// plain C++, whichever this CPU and the environment allow) that a Linear layer takes for one
// bfloat16 row without autograd. Checked against ATen's float32 product of the same bfloat16
// values (et.functional.linear), rounded to bfloat16: within one bfloat16 rounding of it.
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';

describe('bfloat16 one-row products', () => {
  it('equal the float32 product of the same values within a bfloat16 rounding, for any shape, with and without bias', async () => {
    et.manualSeed(11);
    for (const [K, N, bias] of [
      [1, 1, false],
      [31, 7, true],
      [32, 64, false],
      [33, 5, true],
      [64, 3, false],
      [100, 130, true],
      [4103, 257, true],
      [2048, 5632, false],
    ] as const) {
      const lin = et.nn.Linear.create({ in_features: K, out_features: N, bias }).to({ dtype: 'bfloat16' });
      const lin16 = await lin;
      const [w, b] = lin16.parameters();
      for (const shape of [[K], [1, K], [1, 1, K]]) {
        const x = et.randn(shape).to({ dtype: 'bfloat16' });
        const y = await et.noGrad(() => lin16.forward(x));
        expect(y.dtype).toBe('bfloat16');
        expect(y.shape).toEqual([...shape.slice(0, -1), N]);
        const ref = et.functional.linear(x.float(), w.float(), bias ? b.float() : undefined);
        const err = y.float().sub(ref).abs();
        // a bfloat16 rounding of the result (2^-8 relative) plus float32 sums in another order
        const bound = ref
          .abs()
          .mul(2 ** -8)
          .add(1e-5 * Math.sqrt(K));
        const worst = err.sub(bound).max().item();
        expect(worst, `K ${K}, N ${N}, bias ${bias}, shape [${shape}]`).toBeLessThanOrEqual(0);
      }
    }
  });

  it("one row runs emotorch's kernel (no aten::mm in the profile); two rows run ATen's", async () => {
    const lin = await et.nn.Linear.create({ in_features: 64, out_features: 32 }).to({ dtype: 'bfloat16' });
    const ops = async (rows: number) => {
      const x = et.randn([rows, 64]).to({ dtype: 'bfloat16' });
      const { profile } = await et.profiler.profile(() => et.noGrad(() => lin.forward(x)));
      return profile.keyAverages().map((r: { name: string }) => r.name);
    };
    expect(await ops(1)).not.toContain('aten::mm');
    expect((await ops(1)).concat(await ops(2)).some((n: string) => /aten::(mm|addmm|linear|matmul)/.test(n))).toBe(true);
  });

  it('two rows, autograd, or float32 still take ATen / oneDNN (the same results as before)', async () => {
    const lin = await et.nn.Linear.create({ in_features: 40, out_features: 9 }).to({ dtype: 'bfloat16' });
    const [w, b] = lin.parameters();
    const x = et.randn([2, 40]).to({ dtype: 'bfloat16' });
    const y = await et.noGrad(() => lin.forward(x));
    expect(
      y
        .float()
        .sub(et.functional.linear(x, w, b).float())
        .abs()
        .max()
        .item(),
    ).toBe(0);
    // with a gradient to compute, autograd's path
    const xg = et.randn([1, 40]).to({ dtype: 'bfloat16' }).requiresGrad_();
    const yg = await lin.forward(xg);
    await yg.float().sum().backward();
    expect(xg.grad!.shape).toEqual([1, 40]);
  });
});
