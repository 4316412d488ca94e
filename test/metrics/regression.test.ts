import { afterAll, describe, expect, it } from 'vitest';
import * as et from '../../lib/index';
import { close, load, report } from './util';
import { throwsWith } from '../helpers';

const m = et.metrics;
const reg = load('regression.json');
const mmsa = load('mmsa.json');

afterAll(() => report('regression (sklearn, scipy) and MMSA (metricsTop.py formulas)'));

describe('regression parity with scikit-learn and scipy', () => {
  it(`MAE, MSE, Pearson, Spearman, CCC on ${reg.cases.length} cases (scipy ${reg.versions.scipy})`, () => {
    expect(reg.cases.length).toBeGreaterThanOrEqual(200);
    reg.cases.forEach((c: any, i: number) => {
      close('mae', m.mae(c.preds, c.targets), c.mae, `case ${i}`);
      close('mse', m.mse(c.preds, c.targets), c.mse, `case ${i}`);
      close('pearson', m.pearson(c.preds, c.targets), c.pearson, `case ${i}`);
      close('spearman', m.spearman(c.preds, c.targets), c.spearman, `case ${i}`);
      close('ccc (ddof 0)', m.ccc(c.preds, c.targets), c.ccc, `case ${i}`);
      close('ccc (ddof 1)', m.ccc(c.preds, c.targets, { ddof: 1 }), c.ccc1, `case ${i}`);
    });
  });

  it('streaming classes equal the one-shot functions', () => {
    reg.cases.slice(0, 50).forEach((c: any, i: number) => {
      const ms = [new m.MAE(), new m.MSE(), new m.Pearson(), new m.Spearman(), new m.CCC(), new m.CCC({ ddof: 1 })];
      for (let k = 0; k < c.preds.length; k += 4) for (const x of ms) x.update(c.preds.slice(k, k + 4), c.targets.slice(k, k + 4));
      const [a, b, p, s, c0, c1] = ms.map((x) => x.compute());
      close('mae', a, c.mae, `stream ${i}`);
      close('mse', b, c.mse, `stream ${i}`);
      close('pearson', p, c.pearson, `stream ${i}`);
      close('spearman', s, c.spearman, `stream ${i}`);
      close('ccc (ddof 0)', c0, c.ccc, `stream ${i}`);
      close('ccc (ddof 1)', c1, c.ccc1, `stream ${i}`);
    });
  });

  it('reads float64 tensors, typed arrays and nested arrays', () => {
    const c = reg.cases[3];
    const p = et.tensor(c.preds, { dtype: 'float64' });
    const t = et.tensor(c.targets, { dtype: 'float64' }).reshape([c.targets.length, 1]);
    close('mae', m.mae(p, t), c.mae, 'tensor');
    close(
      'pearson',
      m.pearson(
        Float64Array.from(c.preds),
        c.targets.map((v: number) => [v]),
      ),
      c.pearson,
      'nested',
    );
  });

  it('rejects NaN, infinity, mismatched lengths and empty inputs with ERR_INVALID_ARG', () => {
    throwsWith(() => m.mae([1, NaN], [1, 2]), 'ERR_INVALID_ARG', /finite numbers \(no NaN\) for preds\[1\] but received NaN/);
    throwsWith(() => m.pearson([1, 2, 3], [1, Infinity, 2]), 'ERR_INVALID_ARG', /targets\[1\]/);
    throwsWith(() => m.mse(et.tensor([1, NaN]), [1, 2]), 'ERR_INVALID_ARG', /NaN/);
    throwsWith(() => m.mse([1, 2], [1]), 'ERR_INVALID_ARG', /same length/);
    throwsWith(() => m.mae([], []), 'ERR_INVALID_ARG', /at least one sample/);
    throwsWith(() => m.spearman([1], [1]), 'ERR_INVALID_ARG', /at least two samples/);
    throwsWith(() => m.mae(['1'] as any, [1]), 'ERR_INVALID_ARG', /preds\[0\]/);
    throwsWith(() => m.ccc([1, 2], [1, 2], { ddof: 2 as any }), 'ERR_INVALID_ARG', /ddof/);
    const s = new m.MAE();
    throwsWith(() => s.update([1, NaN], [1, 1]), 'ERR_INVALID_ARG', /NaN/);
    expect(s.count).toBe(0);
    throwsWith(() => s.compute(), 'ERR_INVALID_ARG', /at least one sample/);
  });

  it('constant inputs give NaN correlations, as scipy', () => {
    expect(m.pearson([0.1, 0.1, 0.1], [1, 2, 3])).toBeNaN();
    expect(m.spearman([1, 2, 3], [5, 5, 5])).toBeNaN();
    expect(m.ccc([2, 2], [2, 2])).toBeNaN();
    expect(m.ccc([2, 2], [3, 3])).toBe(0);
  });
});

describe('MMSA metricsTop.py parity', () => {
  it(`MOSI/MOSEI on ${mmsa.mosei.length} cases, rounded as metricsTop (digits 4) and at full precision`, () => {
    expect(mmsa.mosei.length).toBeGreaterThanOrEqual(200);
    mmsa.mosei.forEach((c: any, i: number) => {
      const r = m.mmsa(c.preds, c.targets);
      const raw = m.mmsa(c.preds, c.targets, { dataset: 'mosei', digits: null });
      for (const k of Object.keys(c.raw)) {
        close(`mmsa ${k}`, (raw as any)[k], c.raw[k], `case ${i}`);
        close(`mmsa ${k} (round 4)`, (r as any)[k], c.rounded[k], `case ${i}`);
      }
      expect(Object.keys(r).sort()).toEqual(Object.keys(c.raw).sort());
    });
  });

  it(`SIMS on ${mmsa.sims.length} cases`, () => {
    expect(mmsa.sims.length).toBeGreaterThanOrEqual(200);
    mmsa.sims.forEach((c: any, i: number) => {
      const r = m.mmsa(c.preds, c.targets, { dataset: 'sims' });
      for (const k of Object.keys(c.raw)) close(`mmsa sims ${k}`, (r as any)[k], c.raw[k], `case ${i}`);
    });
  });

  it('streaming Mmsa equals the one-shot function', () => {
    mmsa.mosei.slice(0, 40).forEach((c: any, i: number) => {
      const s = new m.Mmsa();
      for (let k = 0; k < c.preds.length; k += 5) s.update(c.preds.slice(k, k + 5), c.targets.slice(k, k + 5));
      const r = s.compute() as et.metrics.MmsaResult;
      for (const k of Object.keys(c.rounded)) close(`mmsa ${k} (round 4)`, (r as any)[k], c.rounded[k], `stream ${i}`);
    });
  });

  it('compares float32 tensors with the SIMS bin edges in float32, as numpy does', () => {
    // float32(0.1) is above 0.1 in float64 but equal to the edge in float32: bin (−0.1, 0.1]
    const v = Math.fround(0.1);
    const r32 = m.mmsa(et.tensor([v, -0.5, 0.9]), et.tensor([0.05, -0.5, 0.9]), { dataset: 'sims' });
    const r64 = m.mmsa([v, -0.5, 0.9], [0.05, -0.5, 0.9], { dataset: 'sims' });
    expect(r32.Mult_acc_3).toBe(1);
    expect(r64.Mult_acc_3).toBeCloseTo(2 / 3, 15);
  });

  it('edge cases: all-zero truth gives NaN Non0 scores, NaN input is rejected', () => {
    const r = m.mmsa([0.5, -1, 2], [0, 0, 0]);
    expect(r.Non0_acc_2).toBeNaN();
    expect(r.Non0_F1_score).toBeNaN();
    expect(r.Has0_acc_2).toBeCloseTo(2 / 3, 4);
    throwsWith(() => m.mmsa([NaN, 1], [1, 1]), 'ERR_INVALID_ARG', /NaN/);
    throwsWith(() => m.mmsa([1], [1]), 'ERR_INVALID_ARG', /at least two samples/);
    throwsWith(() => m.mmsa([1, 2], [1, 2], { dataset: 'iemocap' as any }), 'ERR_INVALID_ARG', /dataset/);
    throwsWith(() => m.mmsa([1, 2], [1, 2], { digits: 2.5 }), 'ERR_INVALID_ARG', /digits/);
  });
});
