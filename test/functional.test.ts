import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import * as et from '../lib/index';
import { FIXTURES, maxAbsDiff, throwsWith } from './helpers';

let fx: Map<string, et.Tensor>;
beforeAll(async () => {
  fx = (await et.io.loadSafetensors(path.join(FIXTURES, 'foundation', 'losses.safetensors'))).tensors;
});
const get = (k: string) => fx.get(k)!;
const F = et.functional;

describe('losses match torch.nn.functional', () => {
  it('crossEntropy with class weights, ignoreIndex and label smoothing, and its gradient', async () => {
    const logits = get('logits').clone().requiresGrad_();
    const loss = F.crossEntropy(logits, get('target'), { weight: get('weight'), ignoreIndex: -100, labelSmoothing: 0.1 });
    expect(Math.abs(loss.item() - get('ce').item())).toBeLessThan(1e-6);
    await loss.backward();
    expect(maxAbsDiff(logits.grad!, get('ce_grad'))).toBeLessThan(1e-6);
  });
  it('crossEntropy plain and summed', () => {
    expect(Math.abs(F.crossEntropy(get('logits'), get('target').clamp(0)).item() - get('ce_plain').item())).toBeLessThan(1e-6);
    expect(Math.abs(F.crossEntropy(get('logits'), get('target'), { reduction: 'sum' }).item() - get('ce_sum').item())).toBeLessThan(1e-5);
  });
  it('mseLoss and l1Loss', () => {
    expect(Math.abs(F.mseLoss(get('a'), get('b')).item() - get('mse').item())).toBeLessThan(1e-6);
    expect(Math.abs(F.l1Loss(get('a'), get('b')).item() - get('l1').item())).toBeLessThan(1e-6);
    expect(maxAbsDiff(F.l1Loss(get('a'), get('b'), { reduction: 'none' }), get('l1_none'))).toBeLessThan(1e-6);
  });
  it('rejects mismatched shapes and dtypes by name', () => {
    throwsWith(
      () => F.crossEntropy(et.randn([4, 3]), et.tensor([0, 1, 2], { dtype: 'int64' })),
      'ERR_INVALID_ARG',
      /target shape \[3\] does not fit input shape \[4,3\]/,
    );
    throwsWith(() => F.crossEntropy(et.randn([2, 3]), et.tensor([0, 1], { dtype: 'int32' })), 'ERR_INVALID_ARG', /int64 class-index/);
    throwsWith(() => F.mseLoss(et.randn([4, 1]), et.randn([4])), 'ERR_INVALID_ARG', /input shape \[4,1\] and target shape \[4\] differ/);
    throwsWith(() => F.l1Loss(et.randn([2]), et.randn([2]), { reduction: 'avg' as et.Reduction }), 'ERR_INVALID_ARG', /reduction/);
    throwsWith(() => F.crossEntropy(et.randn([2, 3]), et.tensor([0, 1], { dtype: 'int64' }), { labelSmoothing: 2 }), 'ERR_INVALID_ARG', /labelSmoothing/);
  });
  it('crossEntropy with an out-of-range class is an error, not a crash', () => {
    throwsWith(() => F.crossEntropy(et.randn([2, 3]), et.tensor([0, 7], { dtype: 'int64' })), 'ERR_INDEX', /out of bounds/);
  });
});
