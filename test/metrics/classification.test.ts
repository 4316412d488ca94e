import { afterAll, describe, expect, it } from 'vitest';
import * as et from '../../lib/index';
import { close, closeAll, exact, load, report } from './util';
import { throwsWith } from '../helpers';

const m = et.metrics;
const fx = load('classification.json');
const SENTINELS = new Set<unknown>(['~unparsable', 999]);
const unsentinel = (a: unknown[]) => a.map((v) => (SENTINELS.has(v) ? null : v)) as (string | number | null)[];
const ZD = (z: unknown) => z as et.metrics.ZeroDivision;

afterAll(() => report('classification (scikit-learn)'));

describe('classification parity with scikit-learn', () => {
  it(`has at least 200 cases (${fx.cases.length}, sklearn ${fx.versions.sklearn})`, () => {
    expect(fx.cases.length).toBeGreaterThanOrEqual(200);
  });

  it('accuracy and balanced accuracy', () => {
    fx.cases.forEach((c: any, i: number) => {
      const p = unsentinel(c.preds);
      close('accuracy', m.accuracy(p, c.targets), c.accuracy, `case ${i}`);
      close('balancedAccuracy', m.balancedAccuracy(p, c.targets), c.balanced, `case ${i}`);
      close('balancedAccuracy adjusted', m.balancedAccuracy(p, c.targets, { adjusted: true }), c.balancedAdjusted, `case ${i}`);
    });
  });

  it('precision / recall / F1 in every averaging, labels and zero_division', () => {
    fx.cases.forEach((c: any, i: number) => {
      const p = unsentinel(c.preds);
      const labels = c.labels ? unsentinel(c.labels) : undefined;
      for (const avg of ['macro', 'micro', 'weighted', 'none'] as const) {
        const ref = c.prf[avg];
        const r = m.precisionRecallFscoreSupport(p, c.targets, { average: avg, labels, zeroDivision: ZD(c.zeroDivision) });
        if (avg === 'none') {
          closeAll('precision (none)', r.precision as number[], ref.precision, `case ${i}`);
          closeAll('recall (none)', r.recall as number[], ref.recall, `case ${i}`);
          closeAll('f1 (none)', r.fscore as number[], ref.fscore, `case ${i}`);
          exact('support (none)', r.support, ref.support, `case ${i}`);
          closeAll('f1 (none)', m.f1(p, c.targets, { average: 'none', labels, zeroDivision: ZD(c.zeroDivision) }), ref.fscore, `case ${i}`);
        } else {
          close(`precision (${avg})`, r.precision as number, ref.precision, `case ${i}`);
          close(`recall (${avg})`, r.recall as number, ref.recall, `case ${i}`);
          close(`f1 (${avg})`, r.fscore as number, ref.fscore, `case ${i}`);
          close(`precision (${avg})`, m.precision(p, c.targets, { average: avg, labels, zeroDivision: ZD(c.zeroDivision) }), ref.precision, `case ${i}`);
          close(`recall (${avg})`, m.recall(p, c.targets, { average: avg, labels, zeroDivision: ZD(c.zeroDivision) }), ref.recall, `case ${i}`);
          close(`f1 (${avg})`, m.f1(p, c.targets, { average: avg, labels, zeroDivision: ZD(c.zeroDivision) }), ref.fscore, `case ${i}`);
        }
      }
      const b = m.precisionRecallFscoreSupport(p, c.targets, { average: 'macro', labels, beta: c.beta, zeroDivision: ZD(c.zeroDivision) });
      close('fbeta (macro, beta 0.5/1/2)', b.fscore, c.prf.betaMacro.fscore, `case ${i}`);
      close(
        'fbeta (macro, beta 0.5/1/2)',
        m.fbeta(p, c.targets, { beta: c.beta, labels, zeroDivision: ZD(c.zeroDivision) }),
        c.prf.betaMacro.fscore,
        `case ${i}`,
      );
      if (c.prf.binary && !SENTINELS.has(c.prf.binary.posLabel)) {
        const bin = m.precisionRecallFscoreSupport(p, c.targets, { average: 'binary', posLabel: c.prf.binary.posLabel, zeroDivision: ZD(c.zeroDivision) });
        close('precision (binary)', bin.precision, c.prf.binary.precision, `case ${i}`);
        close('recall (binary)', bin.recall, c.prf.binary.recall, `case ${i}`);
        close('f1 (binary)', bin.fscore, c.prf.binary.fscore, `case ${i}`);
      }
    });
  });

  it('confusion matrix (labels, normalize)', () => {
    fx.cases.forEach((c: any, i: number) => {
      const p = unsentinel(c.preds);
      const labels = c.labels ? unsentinel(c.labels) : undefined;
      const opts = { labels, normalize: c.confusion.normalize ?? undefined };
      if (c.confusion.error) {
        throwsWith(() => m.confusionMatrix(p, c.targets, opts), 'ERR_INVALID_ARG', /at least one label that occurs in targets/);
        return;
      }
      const r = m.confusionMatrix(p, c.targets, opts);
      if (c.confusion.normalize) closeAll('confusionMatrix (normalized)', r.matrix.flat(), c.confusion.matrix.flat(), `case ${i}`);
      exact('confusionMatrix (counts)', m.confusionMatrix(p, c.targets, { labels }).matrix, c.confusion.counts, `case ${i}`);
    });
  });

  it('classificationReport text is identical and the dict matches', () => {
    fx.cases.forEach((c: any, i: number) => {
      const p = c.preds; // sentinels kept as labels: the class names print as sklearn's do
      const labels = c.labels ?? undefined;
      const o = { labels, digits: c.report.digits, targetNames: c.report.targetNames ?? undefined, zeroDivision: ZD(c.zeroDivision) };
      exact('classificationReport (text, exact)', m.classificationReport(p, c.targets, o), c.report.text, `case ${i}`);
      const d = m.classificationReport(p, c.targets, { ...o, outputDict: true });
      expect(Object.keys(d).sort(), `case ${i} keys`).toEqual(Object.keys(c.report.dict).sort());
      for (const [k, v] of Object.entries(c.report.dict)) {
        if (typeof v === 'number') close('classificationReport (dict)', d[k] as number, v, `case ${i} ${k}`);
        else
          for (const f of ['precision', 'recall', 'f1-score', 'support'])
            close('classificationReport (dict)', (d[k] as any)[f], (v as any)[f], `case ${i} ${k}.${f}`);
      }
    });
  });

  it('streaming classes equal the one-shot functions over random batch splits', () => {
    fx.cases.slice(0, 60).forEach((c: any, i: number) => {
      const p = unsentinel(c.preds);
      const labels = c.labels ? unsentinel(c.labels) : undefined;
      const metrics = [
        new m.Accuracy(),
        new m.BalancedAccuracy(),
        new m.F1({ average: 'weighted', labels, zeroDivision: ZD(c.zeroDivision) }),
        new m.Precision({ average: 'none', labels }),
        new m.Recall({ average: 'micro' }),
        new m.ConfusionMatrix(),
        new m.ClassificationReport({ digits: 3 }),
        new m.PrecisionRecallFscore({ average: 'macro' }),
      ];
      for (let k = 0; k < p.length; k += 3) for (const mt of metrics) mt.update(p.slice(k, k + 3), c.targets.slice(k, k + 3));
      const [acc, bal, f1w, prec, rec, cm, rep, prf] = metrics.map((mt) => mt.compute());
      close('accuracy', acc as number, c.accuracy, `stream ${i}`);
      close('balancedAccuracy', bal as number, c.balanced, `stream ${i}`);
      close('f1 (weighted)', f1w as number, c.prf.weighted.fscore, `stream ${i}`);
      closeAll('precision (none)', prec as number[], m.precision(p, c.targets, { average: 'none', labels }), `stream ${i}`);
      close('recall (micro)', rec as number, m.recall(p, c.targets, { average: 'micro' }), `stream ${i}`);
      expect(cm).toEqual(m.confusionMatrix(p, c.targets));
      expect(rep).toEqual(m.classificationReport(p, c.targets, { digits: 3 }));
      expect(prf).toEqual(m.precisionRecallFscoreSupport(p, c.targets));
      metrics[0].reset();
      expect(metrics[0].count).toBe(0);
      throwsWith(() => metrics[0].compute(), 'ERR_INVALID_ARG', /at least one sample/);
    });
  });

  it('reads Tensors of class ids like arrays', () => {
    const c = fx.cases.find((x: any) => typeof x.targets[0] === 'number' && !x.preds.includes(999) && x.targets.length > 5);
    const p = et.tensor(c.preds, { dtype: 'int64' });
    const t = et.tensor(c.targets, { dtype: 'int32' });
    close('accuracy', m.accuracy(p, t), c.accuracy, 'tensor');
    close('f1 (macro)', m.f1(p, t, { zeroDivision: ZD(c.zeroDivision), labels: c.labels ?? undefined }), c.prf.macro.fscore, 'tensor');
    const acc = new m.Accuracy();
    acc.update(p, t).update(et.tensor([1]), et.tensor([1]));
    expect(acc.count).toBe(c.preds.length + 1);
    // logits → ids with argmax
    const logits = et.tensor([
      [0.1, 2, 0.3],
      [3, 0, 1],
      [0, 0, 5],
    ]);
    expect(m.accuracy(logits.argmax(-1), [1, 0, 1])).toBeCloseTo(2 / 3, 15);
  });
});

describe('classification edge cases', () => {
  it('rejects empty, mismatched and mixed inputs with ERR_INVALID_ARG', () => {
    throwsWith(() => m.accuracy([], []), 'ERR_INVALID_ARG', /at least one sample/);
    throwsWith(() => m.f1([1, 2], [1]), 'ERR_INVALID_ARG', /same length but received 2 and 1/);
    throwsWith(() => m.f1(['a', 1] as any, ['a', 'b']), 'ERR_INVALID_ARG', /labels of one type/);
    throwsWith(() => m.f1([1, 0], ['a', 'b']), 'ERR_INVALID_ARG', /label type/);
    throwsWith(() => m.f1([NaN, 0], [1, 0]), 'ERR_INVALID_ARG', /preds\[0\]/);
    throwsWith(() => m.f1([1, 0], [1, 0], { average: 'mean' as any }), 'ERR_INVALID_ARG', /average/);
    throwsWith(() => m.f1([1, 0], [1, 0], { avg: 'macro' } as any), 'ERR_INVALID_ARG', /an option of options/);
    throwsWith(() => m.f1([0, 1, 2], [0, 1, 2], { average: 'binary' }), 'ERR_INVALID_ARG', /binary targets/);
    throwsWith(() => m.f1([0, 1], [0, 1], { average: 'binary', posLabel: 5 }), 'ERR_INVALID_ARG', /posLabel/);
    throwsWith(() => m.confusionMatrix([0], [0], { labels: [] }), 'ERR_INVALID_ARG', /at least one label/);
    throwsWith(() => m.accuracy('abc' as any, [1]), 'ERR_INVALID_ARG', /array or Tensor/);
    throwsWith(() => m.accuracy([null, 1], [null, 1] as any), 'ERR_INVALID_ARG', /targets\[0\]/);
    const acc = new m.Accuracy();
    acc.update([1], [1]);
    throwsWith(() => acc.update(['a'], ['a']), 'ERR_INVALID_ARG', /earlier batches/);
    expect(acc.count).toBe(1);
  });

  it('one class only, labels absent from predictions, unparsable predictions', () => {
    expect(m.f1([2, 2, 2], [2, 2, 2])).toBe(1);
    expect(m.balancedAccuracy([2, 2], [2, 2])).toBe(1);
    expect(m.f1(['x', 'x'], ['y', 'y'], { average: 'none' })).toEqual([0, 0]);
    expect(m.f1(['x', 'x'], ['y', 'y'], { average: 'none', zeroDivision: 1 })).toEqual([0, 0]);
    expect(m.precision([0, 0], [0, 1], { average: 'none', zeroDivision: 'nan' })).toEqual([0.5, NaN]);
    // a null (unparsable) prediction is a class of its own: wrong, no support
    expect(m.accuracy([null, 'a'], ['a', 'a'])).toBe(0.5);
    const r = m.precisionRecallFscoreSupport([null, 'a'], ['a', 'a'], { average: 'none' });
    expect(r.labels).toEqual(['a', null]);
    expect(r.support).toEqual([2, 0]);
    expect(m.classificationReport([null, 'a'], ['a', 'a'])).toContain('None');
  });
});

// Issue 18 point 10: an infinite class label is not a class.
describe('classification labels are finite', () => {
  it('±Infinity as a label (prediction or target, array or Tensor) is ERR_INVALID_ARG naming the element', () => {
    throwsWith(() => m.accuracy([0, Infinity], [0, 1]), 'ERR_INVALID_ARG', /finite numbers or strings.* for preds\[1\] but received Infinity/);
    throwsWith(() => m.f1([0, 1], [-Infinity, 1], { average: 'macro' }), 'ERR_INVALID_ARG', /targets\[0\] but received -Infinity/);
    throwsWith(() => m.confusionMatrix(Float64Array.from([1, Infinity]), [1, 1]), 'ERR_INVALID_ARG', /preds\[1\]/);
    throwsWith(() => m.accuracy(et.tensor([0, Infinity]), [0, 1]), 'ERR_INVALID_ARG', /preds\[1\]/);
    throwsWith(() => new m.Accuracy().update([Infinity], [1]), 'ERR_INVALID_ARG', /preds\[0\]/);
  });
});
