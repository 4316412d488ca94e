// et.profiler (lib/api/profiler.ts, native/bridge/profiler.cc): libtorch's Kineto profiler on the
// compute thread. Checked: the ops of a forward and backward are recorded with their call counts,
// self time is each call's duration less its children's (so the self times add up to no more
// than the wall time), the chrome trace is written, and misuse is a coded error.
import { describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../lib/index';
import { rejectsWith, throwsWith, tmpdir } from './helpers';

describe('et.profiler', () => {
  it('records the ops of heavy calls (forward and backward), with calls, self and total time', async () => {
    et.manualSeed(0);
    const m = et.nn.Linear.create({ in_features: 64, out_features: 32, bias: true });
    const x = et.randn([16, 64]);
    await m.forward(x); // the first product of a kind is timed on both backends: not profiled here
    const t0 = performance.now();
    const { value, profile } = await et.profiler.profile(
      async () => {
        for (let i = 0; i < 3; i++) await m.forward(x);
        const y = await m.forward(x.detach().requiresGrad_(true));
        await y.sum().backward();
        return y.shape;
      },
      { recordShapes: true },
    );
    const wallMs = performance.now() - t0;
    expect(value).toEqual([16, 32]);
    const ops = profile.keyAverages();
    const byName = new Map(ops.map((o) => [o.name, o]));
    // the four forwards' products: oneDNN's op or ATen's addmm, whichever this CPU's timing chose
    const fwd = (byName.get('mkldnn::_linear_pointwise')?.calls ?? 0) + (byName.get('aten::addmm')?.calls ?? 0) + (byName.get('aten::mm')?.calls ?? 0);
    expect(fwd).toBeGreaterThanOrEqual(4 + 1); // + the weight's gradient product in backward
    expect([...byName.keys()].some((n) => n.startsWith('autograd::engine::evaluate_function'))).toBe(true);
    for (const e of profile.events) {
      expect(e.selfNs).toBeGreaterThanOrEqual(0);
      expect(e.selfNs).toBeLessThanOrEqual(e.durationNs);
    }
    for (const o of ops) expect(o.selfMs).toBeLessThanOrEqual(o.totalMs + 1e-9);
    expect(profile.totalMs).toBeGreaterThan(0);
    expect(profile.totalMs).toBeLessThan(wallMs);
    // the product's input shapes: oneDNN's linear (input, weight, then its bias and options) or ATen's addmm (bias first)
    expect(profile.events.some((e) => e.shapes.startsWith('[[16, 64], [32, 64]') || e.shapes.startsWith('[[32], [16, 64]'))).toBe(true);
    const table = profile.table({ rowLimit: 5, sortBy: 'total' });
    expect(table.split('\n').filter((l) => /\d+\.\d{3}/.test(l)).length).toBe(5 + 1); // 5 rows and the total
    expect(table).toMatch(/Self CPU time total: \d+\.\d{3} ms/);
    expect(profile.keyAverages({ groupByShapes: true }).length).toBeGreaterThanOrEqual(ops.length);
  });

  it('writes the chrome trace', async () => {
    const file = path.join(tmpdir(), 'trace.json');
    const m = et.nn.Linear.create({ in_features: 8, out_features: 4 });
    await et.profiler.start();
    await m.forward(et.randn([2, 8]));
    await et.profiler.stop({ tracePath: file });
    const trace = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(Array.isArray(trace.traceEvents)).toBe(true);
    expect(trace.traceEvents.length).toBeGreaterThan(0);
  });

  it('refuses a second start, a stop without a start and bad options, with coded errors', async () => {
    await rejectsWith(et.profiler.stop(), 'ERR_PROFILER_STATE', /not running/);
    await et.profiler.start();
    await rejectsWith(et.profiler.start(), 'ERR_PROFILER_STATE', /already running/);
    await rejectsWith(et.profiler.stop({ tracePath: '/no/such/folder/t.json' }), 'ERR_IO', /cannot write the profiler trace to \/no\/such\/folder\/t\.json/);
    await rejectsWith(et.profiler.stop(), 'ERR_PROFILER_STATE', /not running/); // the failed stop still stopped it
    await rejectsWith(et.profiler.start({ recordShapes: 'yes' as unknown as boolean }), 'ERR_INVALID_ARG', /recordShapes/);
    await rejectsWith(et.profiler.start({ shapes: true } as never), 'ERR_INVALID_ARG', /shapes/);
    await expect(
      et.profiler.profile(async () => {
        throw new Error('inside');
      }),
    ).rejects.toThrow('inside');
    await expect(et.profiler.start()).resolves.toBeUndefined(); // the failed profile() stopped it
    const p = await et.profiler.stop();
    throwsWith(() => p.table({ rowLimit: 0 }), 'ERR_INVALID_ARG', /rowLimit/);
    throwsWith(() => p.table({ sortBy: 'calls' as never }), 'ERR_INVALID_ARG', /sortBy/);
  });
});
