import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith, tmpdir } from '../helpers';

let fx: Map<string, et.Tensor>;
beforeAll(async () => {
  fx = (await et.io.loadSafetensors(path.join(FIXTURES, 'foundation', 'optim.safetensors'))).tensors;
});
const get = (k: string) => fx.get(k)!;

async function trajectory(name: string, make: (w: et.Tensor, b: et.Tensor) => et.optim.Optimizer): Promise<number> {
  const w = get('w0').clone().requiresGrad_();
  const b = get('b0').clone().requiresGrad_();
  const opt = make(w, b);
  let worst = 0;
  for (let s = 0; s < 4; s++) {
    w.grad = get(`gw${s}`).clone();
    b.grad = get(`gb${s}`).clone();
    await opt.step();
    worst = Math.max(worst, maxAbsDiff(w, get(`${name}_w${s}`)), maxAbsDiff(b, get(`${name}_b${s}`)));
  }
  return worst;
}

describe('optimizers match torch.optim', () => {
  it('AdamW with per-group weight decay', async () => {
    const d = await trajectory(
      'adamw',
      (w, b) =>
        new et.optim.AdamW(
          [
            { params: [w], weightDecay: 0.05 },
            { params: [b], weightDecay: 0 },
          ],
          { lr: 0.01, betas: [0.9, 0.98], eps: 1e-6 },
        ),
    );
    expect(d).toBeLessThan(1e-6);
  });
  it('SGD with nesterov momentum and weight decay', async () => {
    expect(await trajectory('sgd', (w, b) => new et.optim.SGD([w, b], { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 }))).toBeLessThan(1e-6);
  });
  it('SGD with momentum and dampening', async () => {
    expect(await trajectory('sgdplain', (w, b) => new et.optim.SGD([w, b], { lr: 0.1, momentum: 0.5, dampening: 0.1 }))).toBeLessThan(1e-6);
  });
  it('clipGradNorm', async () => {
    const w = get('w0').clone().requiresGrad_();
    const b = get('b0').clone().requiresGrad_();
    w.grad = get('gw0').mul(3);
    b.grad = get('gb0').mul(3);
    const total = await et.optim.clipGradNorm([w, b], 1.5);
    expect(Math.abs(total - get('clip_total').item())).toBeLessThan(1e-5);
    expect(maxAbsDiff(w.grad!, get('clip_gw'))).toBeLessThan(1e-6);
    expect(maxAbsDiff(b.grad!, get('clip_gb'))).toBeLessThan(1e-6);
  });
});

describe('optimizer behaviour', () => {
  it('skips parameters without gradients, zeroes grads and sets lr per group', async () => {
    const a = et.ones([2]).requiresGrad_();
    const b = et.ones([2]).requiresGrad_();
    const opt = new et.optim.SGD([{ params: [a] }, { params: [b], lr: 0.5 }], { lr: 0.1 });
    expect([opt.getLr(0), opt.getLr(1)]).toEqual([0.1, 0.5]);
    a.grad = et.ones([2]);
    await opt.step();
    expect(a.toArray()).toEqual([0.9, 0.9].map(Math.fround));
    expect(b.toArray()).toEqual([1, 1]);
    opt.zeroGrad();
    expect(a.grad).toBeNull();
    opt.setLr(0.2, 1);
    expect(opt.getLr(1)).toBe(0.2);
    opt.setLr(0.3);
    expect([opt.getLr(0), opt.getLr(1)]).toEqual([0.3, 0.3]);
  });

  it('splits decay and no-decay groups from a module', () => {
    const m = et.nn.Mlp.create({ sizes: [4, 8, 2] });
    const groups = et.optim.decayGroups(m, 0.05);
    expect(groups.map((g) => [g.params.length, g.weightDecay])).toEqual([
      [2, 0.05],
      [2, 0],
    ]);
  });

  it('resumes from saved state exactly', async () => {
    const dir = tmpdir();
    const run = async (steps: number[], opt: et.optim.AdamW, w: et.Tensor) => {
      for (const s of steps) {
        w.grad = get(`gw${s}`).clone();
        await opt.step();
      }
    };
    const w1 = get('w0').clone().requiresGrad_();
    const o1 = new et.optim.AdamW([w1], { lr: 0.01 });
    await run([0, 1, 2, 3], o1, w1);

    const w2 = get('w0').clone().requiresGrad_();
    const o2 = new et.optim.AdamW([w2], { lr: 0.01 });
    await run([0, 1], o2, w2);
    await o2.save(path.join(dir, 'opt.safetensors'));
    const w3 = w2.detach().clone().requiresGrad_();
    const o3 = new et.optim.AdamW([w3], { lr: 0.5 });
    await o3.load(path.join(dir, 'opt.safetensors'));
    expect(o3.getLr()).toBe(0.01);
    await run([2, 3], o3, w3);
    expect(maxAbsDiff(w3, w1)).toBe(0);
  });

  it('refuses state from another setup and changes nothing', async () => {
    const dir = tmpdir();
    const w = et.ones([3]).requiresGrad_();
    const opt = new et.optim.AdamW([w]);
    w.grad = et.ones([3]);
    await opt.step();
    await opt.save(path.join(dir, 'o.safetensors'));
    const other = new et.optim.AdamW([et.ones([4]).requiresGrad_()]);
    await rejectsWith(() => other.load(path.join(dir, 'o.safetensors')), 'ERR_STATE_DICT', /has shape \[3\] but the parameter has \[4\]/);
    expect(other.stateDict().tensors.size).toBe(0);
    await rejectsWith(() => new et.optim.SGD([w], { lr: 1 }).load(path.join(dir, 'o.safetensors')), 'ERR_STATE_DICT', /for 'adamw', not 'sgd'/);
    const two = new et.optim.AdamW([{ params: [et.ones([3]).requiresGrad_()] }, { params: [et.ones([1]).requiresGrad_()] }]);
    await rejectsWith(() => two.load(path.join(dir, 'o.safetensors')), 'ERR_STATE_DICT', /groups of sizes \[1\] but this optimizer has \[1,1\]/);
    await et.io.saveSafetensors(path.join(dir, 'plain.safetensors'), { a: et.ones([1]) });
    await rejectsWith(() => opt.load(path.join(dir, 'plain.safetensors')), 'ERR_FORMAT', /not an emotorch optimizer state file/);
  });

  it('validates options', () => {
    const p = et.ones([2]).requiresGrad_();
    throwsWith(() => new et.optim.AdamW([p], { lr: -1 }), 'ERR_INVALID_ARG', /for lr but received -1/);
    throwsWith(() => new et.optim.AdamW([p], { betas: [0.9, 1.5] }), 'ERR_INVALID_ARG', /betas\[1\]/);
    throwsWith(() => new et.optim.AdamW([]), 'ERR_INVALID_ARG', /non-empty array/);
    throwsWith(() => new et.optim.AdamW([p.mul(2)]), 'ERR_INVALID_ARG', /leaf tensors/);
    throwsWith(() => new et.optim.SGD([p], { lr: 0.1, nesterov: true }), 'ERR_INVALID_ARG', /nesterov/);
    throwsWith(() => new et.optim.AdamW([{ params: [p] }, { params: [p] }]), 'ERR_INVALID_ARG', /only one group/);
    throwsWith(() => new et.optim.AdamW([p]).getLr(3), 'ERR_INVALID_ARG', /group index below 1/);
  });
});

describe('schedules', () => {
  it('linear warmup then linear decay', () => {
    const f = et.optim.schedules.linearWarmupLinearDecay({ warmupSteps: 10, totalSteps: 110, peakLr: 1e-3 });
    expect(f(0)).toBe(0);
    expect(f(5)).toBeCloseTo(5e-4, 12);
    expect(f(10)).toBeCloseTo(1e-3, 12);
    expect(f(60)).toBeCloseTo(5e-4, 12);
    expect(f(110)).toBeCloseTo(0, 12);
    expect(f(500)).toBeCloseTo(0, 12);
  });
  it('linear warmup then cosine to a floor (SALMONN)', () => {
    const f = et.optim.schedules.linearWarmupCosine({ warmupSteps: 3000, totalSteps: 13000, peakLr: 3e-5, startLr: 1e-6, minLr: 1e-5 });
    expect(f(0)).toBeCloseTo(1e-6, 15);
    expect(f(1500)).toBeCloseTo((1e-6 + 3e-5) / 2, 15);
    expect(f(3000)).toBeCloseTo(3e-5, 15);
    expect(f(8000)).toBeCloseTo(2e-5, 15);
    expect(f(13000)).toBeCloseTo(1e-5, 15);
  });
  it('drives an optimizer through LRScheduler', () => {
    const opt = new et.optim.AdamW([et.ones([1]).requiresGrad_()]);
    const s = new et.optim.LRScheduler(opt, et.optim.schedules.linearWarmupLinearDecay({ warmupSteps: 2, totalSteps: 4, peakLr: 1 }));
    expect(opt.getLr()).toBe(0);
    expect([s.step(), s.step(), s.step(), s.step()]).toEqual([0.5, 1, 0.5, 0]);
    expect(opt.getLr()).toBe(0);
    throwsWith(() => et.optim.schedules.linearWarmupCosine({ warmupSteps: 5, totalSteps: 2, peakLr: 1 }), 'ERR_INVALID_ARG', /warmupSteps/);
  });
});
