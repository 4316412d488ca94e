import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, throwsWith } from '../helpers';

let fx: Map<string, et.Tensor>;
beforeAll(async () => {
  fx = (await et.io.loadSafetensors(path.join(FIXTURES, 'train', 'grad_scaler.safetensors'))).tensors;
});
const get = (k: string) => fx.get(k)!;
const same = (a: et.Tensor, b: et.Tensor) => a.shape.join() === b.shape.join() && a.isnan().logicalNot().logicalAnd(a.ne(b)).any().item() === 0;

describe('et.amp.GradScaler', () => {
  it('equals torch.amp.GradScaler on a gradient sequence with inf and NaN steps (skip, backoff, growth)', async () => {
    const w = get('w_init').clone().requiresGrad_();
    const b = get('b_init').clone().requiresGrad_();
    const opt = new et.optim.SGD([w, b], { lr: 0.1 });
    const scaler = new et.amp.GradScaler({ initScale: 1024, growthFactor: 2, backoffFactor: 0.5, growthInterval: 3 });
    const trace: string[] = [];
    for (let s = 0; s < 9; s++) {
      opt.zeroGrad();
      const loss = w
        .mul(get(`x${s}`))
        .sum()
        .add(b.mul(get(`y${s}`)).sum());
      await scaler.scale(loss).backward();
      scaler.unscale_(opt);
      expect(same(w.grad!, get(`gw${s}`)), `unscaled gradient at step ${s}`).toBe(true);
      const stepped = await scaler.step(opt);
      scaler.update();
      expect(stepped).toBe(get(`stepped${s}`).item() === 1);
      expect(
        w
          .sub(get(`w${s}`))
          .abs()
          .max()
          .item(),
        `w after step ${s}`,
      ).toBe(0);
      expect(
        b
          .sub(get(`b${s}`))
          .abs()
          .max()
          .item(),
      ).toBe(0);
      expect(scaler.getScale()).toBe(get(`scale${s}`).item());
      expect(scaler.getGrowthTracker()).toBe(get(`tracker${s}`).item());
      trace.push(`${scaler.getScale()}${stepped ? '' : '(skipped)'}`);
    }
    console.log(`scale after each step: ${trace.join(' ')}`);
    expect(trace.filter((t) => t.includes('skipped')).length).toBe(2);
  });

  it('keeps its state in a state dict, misuse is a clear error, and disabled is a pass-through', async () => {
    const p = et.ones([3]).requiresGrad_();
    const opt = new et.optim.SGD([p], { lr: 0.1 });
    const s = new et.amp.GradScaler({ initScale: 8, growthInterval: 1 });
    throwsWith(() => s.unscale_(opt), 'ERR_INVALID_ARG', /before any scale/);
    await s.scale(p.sum()).backward();
    expect(p.grad!.toArray()).toEqual([8, 8, 8]);
    s.unscale_(opt);
    throwsWith(() => s.unscale_(opt), 'ERR_INVALID_ARG', /already been called/);
    await s.step(opt);
    s.update();
    expect(s.getScale()).toBe(16);
    const t = new et.amp.GradScaler();
    t.loadStateDict(s.stateDict());
    expect(t.stateDict()).toEqual({ scale: 16, growth_factor: 2, backoff_factor: 0.5, growth_interval: 1, _growth_tracker: 0 });
    throwsWith(() => new et.amp.GradScaler({ growthFactor: 0.5 }), 'ERR_INVALID_ARG', /growthFactor/);
    throwsWith(() => new et.amp.GradScaler({ initscale: 2 } as never), 'ERR_INVALID_ARG', /GradScaler option/);
    const off = new et.amp.GradScaler({ enabled: false });
    const l = p.sum();
    expect(off.scale(l)).toBe(l);
    expect(off.getScale()).toBe(1);
  });
});
