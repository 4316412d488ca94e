// The bfloat16 product of one row (decoding), and of up to 64 rows on AVX-512 BF16 or AVX2 without
// AMX (a short prompt): a kernel of emotorch's own (AVX-512 BF16, AVX2 or plain C++, whichever this CPU
// and the environment allow) that a Linear layer takes without autograd. Checked against ATen's float32 product of the same bfloat16
// values (et.functional.linear), rounded to bfloat16: within one bfloat16 rounding of it (1, 5, 14
// and 21 rows: one group, several in chunks of 1 KiB of weight, more than sixteen in chunks of 4 KiB).
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { cpuFlags } from '../helpers';

describe('bfloat16 products of one row and a few rows', () => {
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
      for (const shape of [[K], [1, K], [1, 1, K], [5, K], [2, 7, K], [3, 7, K]]) {
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

  it("one row runs emotorch's kernel (no aten::mm in the profile); up to 64 rows too on AVX-512 BF16 or AVX2 without AMX; more run ATen's", async () => {
    const lin = await et.nn.Linear.create({ in_features: 64, out_features: 32 }).to({ dtype: 'bfloat16' });
    const ops = async (rows: number) => {
      const x = et.randn([rows, 64]).to({ dtype: 'bfloat16' });
      const { profile } = await et.profiler.profile(() => et.noGrad(() => lin.forward(x)));
      return profile.keyAverages().map((r: { name: string }) => r.name);
    };
    const aten = (names: string[]) => names.some((n) => /aten::(mm|addmm|linear|matmul)/.test(n));
    expect(aten(await ops(1))).toBe(false);
    expect(aten(await ops(65))).toBe(true);
    // a few rows (a short prompt): the row kernels where this CPU has bfloat16 products or AVX2 and
    // FMA (the AVX2 row kernel), and no AMX tiles (a cap at AVX2 leaves AMX out)
    const flags = cpuFlags();
    const capped = /^AVX2/.test(process.env.ONEDNN_MAX_CPU_ISA ?? '') || /^avx2/.test(process.env.ATEN_CPU_CAPABILITY ?? '');
    if (!flags.length) return;
    const bf16 = flags.includes('avx512_bf16') && flags.includes('avx512bw') && !capped;
    const few = (bf16 || (flags.includes('avx2') && flags.includes('fma'))) && !(flags.includes('amx_bf16') && !capped);
    for (const rows of [2, 17, 64]) expect(aten(await ops(rows)), `${rows} rows`).toBe(!few);
  });

  it("a Linear layer and functional.linear give the same two rows; with a gradient to compute, autograd's path", async () => {
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
