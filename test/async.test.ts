import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../lib/index';
import { maxAbsDiff, rejectsWith } from './helpers';

describe('async native calls', () => {
  it('keep the event loop live during a long forward and backward', async () => {
    const mlp = et.nn.Mlp.create({ sizes: [1024, 2048, 2048, 1024] });
    const x = et.randn([2048, 1024]);
    // A timer queued before the call fires before its promise settles only if the work ran off
    // the JS thread: a blocking call would return an already-settled promise, and the await's
    // continuation (a microtask) would run before any timer.
    let fired = false;
    setTimeout(() => {
      fired = true;
    }, 0);
    const y = await mlp.forward(x);
    expect(fired).toBe(true);
    fired = false;
    setTimeout(() => {
      fired = true;
    }, 0);
    await y.square().mean().backward();
    expect(fired).toBe(true);
    expect(mlp.parameters()[0].grad).not.toBeNull();
  });

  // libgomp gives every thread that opens a parallel region an OpenMP team of its own; once a
  // process has more OpenMP threads than cores, every team sleeps between regions and each region
  // pays a futex wake-up (a LLaMA training step ran 2.8× slower than PyTorch's because of it).
  // Heavy calls therefore all run on one compute thread, and the JS thread's own ops are serial:
  // concurrent forwards on different modules must not add OS threads (run in a fresh process, so
  // no earlier test has already made the teams).
  it.runIf(fs.existsSync('/proc/self/task'))('runs heavy calls from many libuv threads on one compute thread (one OpenMP team)', () => {
    const code = `(async () => {
      const threads = () => require('fs').readdirSync('/proc/self/task').length;
      et.setNumThreads(2);
      const mods = Array.from({ length: 6 }, () => et.nn.Linear.create({ in_features: 256, out_features: 256 }));
      const x = et.randn([512, 256]);
      x.matmul(x.transpose(0, 1)).sum().item();  // a parallel-sized op on the JS thread
      await mods[0].forward(x);
      const before = threads();
      for (let r = 0; r < 4; r++) await Promise.all(mods.map((m) => m.forward(x)));
      x.matmul(x.transpose(0, 1)).sum().item();
      console.log(JSON.stringify({ before, after: threads(), n: et.getNumThreads() }));
    })()`;
    const dist = path.join(__dirname, '..', 'dist', 'index.js');
    const r = spawnSync(process.execPath, ['-e', `const et = require(${JSON.stringify(dist)});\n${code}`], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const { before, after, n } = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(n).toBe(2);
    expect(after).toBe(before);
  });

  it('serializes concurrent calls on one module and returns each its own result', async () => {
    const lin = et.nn.Linear.create({ in_features: 64, out_features: 64 });
    const xs = Array.from({ length: 8 }, () => et.randn([32, 64]));
    const ys = await Promise.all(xs.map((x) => lin.forward(x)));
    for (let i = 0; i < xs.length; i++) {
      const ref = await lin.forward(xs[i]);
      expect(maxAbsDiff(ys[i], ref)).toBe(0);
    }
  });

  it('turns native failures inside the pool into rejected promises', async () => {
    const lin = et.nn.Linear.create({ in_features: 4, out_features: 2 });
    // Bypass TS validation to reach the native check.
    const raw = (lin as unknown as { run(i: Record<string, et.Tensor>): Promise<unknown> }).run({ input: et.ones([3, 5]) });
    await rejectsWith(raw, 'ERR_TORCH', /Linear: expected input \(\.\.\., 4\) but got \[3, 5\]/);
    // The module still works afterwards.
    expect((await lin.forward(et.ones([3, 4]))).shape).toEqual([3, 2]);
  });

  it('carries noGrad into native calls', async () => {
    const lin = et.nn.Linear.create({ in_features: 4, out_features: 2 });
    const y = await et.noGrad(() => lin.forward(et.ones([1, 4])));
    expect(y.requiresGrad).toBe(false);
    expect((await lin.forward(et.ones([1, 4]))).requiresGrad).toBe(true);
  });
});

describe('process', () => {
  it('reports versions and device facts', () => {
    expect(et.versions.emotorch).toMatch(/^\d+\.\d+\.\d+/);
    expect(et.versions.libtorch).toMatch(/^2\.\d+/);
    expect(typeof et.versions.cuda).toBe('boolean');
    expect(et.versions.cpuCapability).toMatch(/^[A-Z0-9_]+$/); // ATen's dispatch level: AVX2, AVX512, DEFAULT, …
    expect(et.cuda.isAvailable()).toBe(et.cuda.deviceCount() > 0);
    expect(et.cuda.synchronize()).toBeUndefined(); // waits for the GPU where there is one, returns at once elsewhere
    et.setNumThreads(1);
    expect(et.getNumThreads()).toBe(1);
    et.setNumThreads(2);
  });
});

describe('autocast', () => {
  it('runs native forwards in bfloat16 on the CPU inside et.autocast and restores afterwards', async () => {
    const lin = et.nn.Linear.create({ in_features: 8, out_features: 4 });
    const x = et.randn([2, 8]);
    const y = await et.autocast({ device: 'cpu', dtype: 'bfloat16' }, () => lin.forward(x));
    expect(y.dtype).toBe('bfloat16');
    expect(maxAbsDiff(y, await lin.forward(x))).toBeLessThan(0.05);
    expect((await lin.forward(x)).dtype).toBe('float32');
    const z = et.autocast({ device: 'cpu' }, () => x.matmul(et.randn([8, 3])));
    expect(z.dtype).toBe('bfloat16');
    expect(x.matmul(et.randn([8, 3])).dtype).toBe('float32');
    expect(() => et.autocast({ device: 'tpu' as 'cpu' }, () => 1)).toThrow(/autocast device/);
  });
});
