/**
 * The MMSA suite (thuiar/MMSA `src/MMSA/utils/metricsTop.py`, regression mode), the standard of
 * MOSI, MOSEI and CH-SIMS papers, computed as that file does: clipping, numpy's round-half-to-even
 * class binning, sklearn accuracy and weighted F1, and (MOSI/MOSEI) `round(v, 4)` of each value.
 */
import { Tensor } from '../tensor';
import { invalid } from '../errors';
import { Metric, NumberInput, checkOptions, nonEmpty, npMean, npRound, oneOf, pyRound, sameLength, toNumbers } from './common';
import { pearsonOf } from './regression';

/** MOSI / MOSEI results, under metricsTop's own keys. */
export interface MmsaResult {
  /** Accuracy of truth ≥ 0 vs pred ≥ 0 over all samples. */
  Has0_acc_2: number;
  /** Weighted F1 of the same binary split. */
  Has0_F1_score: number;
  /** Accuracy of truth > 0 vs pred > 0 over samples with truth ≠ 0 (NaN when every truth is 0). */
  Non0_acc_2: number;
  /** Weighted F1 of the same (NaN when every truth is 0). */
  Non0_F1_score: number;
  /** 5-class accuracy: clip to [−2, 2], round half to even, compare. */
  Mult_acc_5: number;
  /** 7-class accuracy: clip to [−3, 3], round half to even, compare. */
  Mult_acc_7: number;
  /** Mean |pred − truth| on unclipped values. */
  MAE: number;
  /** Pearson r (numpy corrcoef); NaN when either side is constant. */
  Corr: number;
}

/** CH-SIMS / SIMS v2 results, under metricsTop's own keys. */
export interface MmsaSimsResult {
  /** Accuracy of the 2 bins [−1, 0], (0, 1] of the values clipped to [−1, 1]. */
  Mult_acc_2: number;
  /** Accuracy of the 3 bins [−1, −0.1], (−0.1, 0.1], (0.1, 1]. */
  Mult_acc_3: number;
  /** Accuracy of the 5 bins [−1, −0.7], (−0.7, −0.1], (−0.1, 0.1], (0.1, 0.7], (0.7, 1]. */
  Mult_acc_5: number;
  /** Weighted F1 of the 2 bins. */
  F1_score: number;
  /** Mean |pred − truth| of the clipped values. */
  MAE: number;
  /** Pearson r of the clipped values. */
  Corr: number;
}

/** Options of `mmsa`: which MMSA metric set (metricsTop.py) and its rounding. */
export interface MmsaOptions {
  /** 'mosi' and 'mosei' (the same computation) or 'sims' (also SIMS v2). Default 'mosi'. */
  dataset?: 'mosi' | 'mosei' | 'sims';
  /**
   * Digits every value is rounded to, as metricsTop's `round(v, 4)` does for MOSI/MOSEI (null:
   * full precision). Default 4 for MOSI/MOSEI and null for SIMS, as metricsTop.
   */
  digits?: number | null;
}

/** numpy `np.round(x)`: nearest integer, ties to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

const clip = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** metricsTop `__multiclass_acc`: share of equal np.round values. */
function multiclassAcc(p: number[], t: number[]): number {
  let c = 0;
  for (let i = 0; i < p.length; i++) if (roundHalfEven(p[i]) === roundHalfEven(t[i])) c++;
  return c / t.length;
}

/** sklearn accuracy and weighted F1 of two boolean (0/1) lists. */
function binaryScores(p: number[], t: number[]): [number, number] {
  let correct = 0;
  const n = t.length;
  const tp = [0, 0];
  const pred = [0, 0];
  const truth = [0, 0];
  for (let i = 0; i < n; i++) {
    pred[p[i]]++;
    truth[t[i]]++;
    if (p[i] === t[i]) {
      correct++;
      tp[p[i]]++;
    }
  }
  let fw = 0;
  for (const c of [0, 1]) {
    if (pred[c] === 0 && truth[c] === 0) continue; // not a present label
    const den = truth[c] + pred[c];
    fw += truth[c] * (den === 0 ? 0 : (2 * tp[c]) / den);
  }
  return [correct / n, fw / n];
}

function checkDigits(d: unknown): number | null {
  if (d === null) return null;
  if (typeof d !== 'number' || !Number.isInteger(d) || d < 0 || d > 15) invalid('an integer in [0, 15] or null', 'digits', d);
  return d;
}

function mosei(p: number[], t: number[], digits: number | null): MmsaResult {
  nonEmpty(t.length, 'targets');
  if (t.length < 2) invalid('at least two samples (metricsTop correlates them)', 'targets', `${t.length} sample`);
  const mae = npMean(p.map((v, i) => Math.abs(v - t[i])));
  const corr = pearsonOf(p, t);
  const a7 = multiclassAcc(
    p.map((v) => clip(v, -3, 3)),
    t.map((v) => clip(v, -3, 3)),
  );
  const a5 = multiclassAcc(
    p.map((v) => clip(v, -2, 2)),
    t.map((v) => clip(v, -2, 2)),
  );
  const nz = t.map((_, i) => i).filter((i) => t[i] !== 0);
  const [non0Acc, non0F1] = nz.length
    ? binaryScores(
        nz.map((i) => +(p[i] > 0)),
        nz.map((i) => +(t[i] > 0)),
      )
    : [NaN, NaN];
  const [has0Acc, has0F1] = binaryScores(
    p.map((v) => +(v >= 0)),
    t.map((v) => +(v >= 0)),
  );
  // metricsTop rounds Python floats (sklearn's accuracy_score / f1_score) with Python's round
  // and numpy float64 values (np.mean, np.corrcoef, np.sum / float) with numpy's.
  const py = (v: number) => (digits === null ? v : pyRound(v, digits));
  const np = (v: number) => (digits === null ? v : npRound(v, digits));
  return {
    Has0_acc_2: py(has0Acc),
    Has0_F1_score: py(has0F1),
    Non0_acc_2: py(non0Acc),
    Non0_F1_score: py(non0F1),
    Mult_acc_5: np(a5),
    Mult_acc_7: np(a7),
    MAE: np(mae),
    Corr: np(corr),
  };
}

/** Bin index of x over right-closed intervals (edges[i], edges[i+1]]. */
function bin(x: number, edges: number[]): number {
  for (let i = 0; i + 1 < edges.length; i++) if (x > edges[i] && x <= edges[i + 1]) return i;
  return x; // not reached for values clipped to [-1, 1]
}

function sims(pRaw: number[], tRaw: number[], digits: number | null, f32: boolean): MmsaSimsResult {
  nonEmpty(tRaw.length, 'targets');
  if (tRaw.length < 2) invalid('at least two samples (metricsTop correlates them)', 'targets', `${tRaw.length} sample`);
  const p = pRaw.map((v) => clip(v, -1, 1));
  const t = tRaw.map((v) => clip(v, -1, 1));
  // float32 tensors are compared with the edges in float32, as numpy does
  const e = (a: number[]) => (f32 ? a.map(Math.fround) : a);
  const ms2 = e([-1.01, 0.0, 1.01]);
  const ms3 = e([-1.01, -0.1, 0.1, 1.01]);
  const ms5 = e([-1.01, -0.7, -0.1, 0.1, 0.7, 1.01]);
  const p2 = p.map((v) => bin(v, ms2));
  const t2 = t.map((v) => bin(v, ms2));
  const mae = npMean(p.map((v, i) => Math.abs(v - t[i])));
  const [, f1w] = binaryScores(p2, t2);
  const r = (v: number) => (digits === null ? v : npRound(v, digits));
  return {
    Mult_acc_2: r(multiclassAcc(p2, t2)),
    Mult_acc_3: r(
      multiclassAcc(
        p.map((v) => bin(v, ms3)),
        t.map((v) => bin(v, ms3)),
      ),
    ),
    Mult_acc_5: r(
      multiclassAcc(
        p.map((v) => bin(v, ms5)),
        t.map((v) => bin(v, ms5)),
      ),
    ),
    F1_score: digits === null ? f1w : pyRound(f1w, digits),
    MAE: r(mae),
    Corr: r(pearsonOf(p, t)),
  };
}

function isF32(x: unknown): boolean {
  return x instanceof Float32Array || (x instanceof Tensor && x.dtype === 'float32');
}

function run(p: number[], t: number[], options: MmsaOptions | undefined, f32: boolean): MmsaResult | MmsaSimsResult {
  const o = checkOptions<MmsaOptions>(options, 'options', ['dataset', 'digits']);
  const dataset = oneOf(o.dataset ?? 'mosi', ['mosi', 'mosei', 'sims'] as const, 'dataset');
  const digits = o.digits === undefined ? (dataset === 'sims' ? null : 4) : checkDigits(o.digits);
  return dataset === 'sims' ? sims(p, t, digits, f32) : mosei(p, t, digits);
}

/**
 * The MMSA regression metrics of MOSI/MOSEI (`Has0_acc_2`, `Has0_F1_score`, `Non0_acc_2`,
 * `Non0_F1_score`, `Mult_acc_5`, `Mult_acc_7`, `MAE`, `Corr`) or CH-SIMS (`Mult_acc_2/3/5`,
 * `F1_score`, `MAE`, `Corr`), exactly as MMSA's metricsTop.py computes them.
 * @param preds predicted sentiment intensities (any shape, flattened)
 * @param targets true intensities
 * @param opts dataset ('mosi' | 'mosei' | 'sims'), digits (4 for MOSI/MOSEI as metricsTop; null for full precision)
 * @throws EmotorchError ERR_INVALID_ARG on fewer than 2 samples, mismatched inputs, or NaN
 * @example
 * et.metrics.mmsa(out.logits, batch.labels);                     // MOSI/MOSEI
 * et.metrics.mmsa(preds, labels, { dataset: 'sims' });           // CH-SIMS
 */
export function mmsa(preds: NumberInput, targets: NumberInput, opts?: MmsaOptions & { dataset?: 'mosi' | 'mosei' }): MmsaResult;
export function mmsa(preds: NumberInput, targets: NumberInput, opts: MmsaOptions & { dataset: 'sims' }): MmsaSimsResult;
export function mmsa(preds: NumberInput, targets: NumberInput, opts?: MmsaOptions): MmsaResult | MmsaSimsResult {
  const p = toNumbers(preds, 'preds');
  const t = toNumbers(targets, 'targets');
  sameLength(p, t);
  return run(p, t, opts, isF32(preds) || isF32(targets));
}

/**
 * Streaming {@link mmsa}.
 * @example
 * const m = new et.metrics.Mmsa({ dataset: 'mosei' });
 * for (const b of loader) m.update(out.logits, b.labels);
 * m.compute().Non0_acc_2;
 */
export class Mmsa extends Metric<number, number, MmsaResult | MmsaSimsResult> {
  private f32 = false;
  constructor(private readonly opts: MmsaOptions = {}) {
    super();
    checkOptions(opts, 'options', ['dataset', 'digits']);
  }
  protected read(preds: unknown, targets: unknown): [number[], number[]] {
    const p = toNumbers(preds, 'preds');
    const t = toNumbers(targets, 'targets');
    sameLength(p, t);
    this.f32 ||= isF32(preds) || isF32(targets);
    return [p, t];
  }
  protected run(p: number[], t: number[]): MmsaResult | MmsaSimsResult {
    return run(p, t, this.opts, this.f32);
  }
  reset(): void {
    super.reset();
    this.f32 = false;
  }
}
