// Runs for real on a machine with a CUDA device and a CUDA libtorch; skipped elsewhere.
import { describe, it, expect } from 'vitest';
import * as et from '../lib/index';
import { maxAbsDiff } from './helpers';

const HAS_CUDA = et.cuda.isAvailable();

describe.skipIf(!HAS_CUDA)('CUDA', () => {
  it('creates tensors on the GPU and reads them back', async () => {
    const t = et.tensor(
      [
        [1, 2],
        [3, 4],
      ],
      { device: 'cuda' },
    );
    expect(t.device).toBe('cuda:0');
    expect(t.matmul(t).toArray()).toEqual([
      [7, 10],
      [15, 22],
    ]);
    expect(Array.from(await t.to({ dtype: 'bfloat16' }).data())).toEqual([1, 2, 3, 4]);
    expect(et.randn([3], { device: 'cuda:0' }).device).toBe('cuda:0');
  });

  it('trains an Mlp on the GPU to the same result as on the CPU', async () => {
    et.manualSeed(3);
    const cpu = et.nn.Mlp.create({ sizes: [8, 32, 4] });
    const gpu = et.nn.Mlp.create({ sizes: [8, 32, 4] });
    await gpu.loadStateDict(cpu.stateDict());
    await gpu.to({ device: 'cuda' });
    expect(gpu.parameters()[0].device).toBe('cuda:0');
    const x = et.randn([16, 8]);
    const y = et.randint(0, 4, [16]);
    const xg = x.to({ device: 'cuda' });
    const yg = y.to({ device: 'cuda' });
    const oc = new et.optim.AdamW(cpu.parameters(), { lr: 1e-2 });
    const og = new et.optim.AdamW(gpu.parameters(), { lr: 1e-2 });
    for (let i = 0; i < 5; i++) {
      const lc = et.functional.crossEntropy(await cpu.forward(x), y);
      const lg = et.functional.crossEntropy(await gpu.forward(xg), yg);
      await lc.backward();
      await lg.backward();
      await oc.step();
      await og.step();
      oc.zeroGrad();
      og.zeroGrad();
    }
    const out = (await gpu.forward(xg)).to({ device: 'cpu' });
    expect(maxAbsDiff(out, await cpu.forward(x))).toBeLessThan(1e-4);
  });

  it('moves a module to bfloat16 on the GPU', async () => {
    const m = et.nn.Linear.create({ in_features: 4, out_features: 2 }, { device: 'cuda', dtype: 'bfloat16' });
    const y = await m.forward(et.ones([2, 4], { device: 'cuda', dtype: 'bfloat16' }));
    expect(y.dtype).toBe('bfloat16');
    expect(y.device).toBe('cuda:0');
  });
});

describe.skipIf(HAS_CUDA)('without CUDA', () => {
  it('says so clearly', () => {
    expect(et.cuda.deviceCount()).toBe(0);
    expect(() => et.zeros([1], { device: 'cuda' })).toThrow(/CUDA is not available/);
  });
});
