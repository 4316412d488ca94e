/**
 * Regression / sentiment-intensity metrics: MAE, MSE (scikit-learn), Pearson and Spearman
 * correlation (scipy.stats), and Lin's concordance correlation coefficient (CCC).
 * Inputs are flattened; NaN or infinite values are rejected with a clear error.
 */
import { invalid } from '../errors';
import { Metric, NumberInput, checkOptions, nonEmpty, npMean, sameLength, toNumbers } from './common';

function readPair(preds: unknown, targets: unknown): [number[], number[]] {
  const p = toNumbers(preds, 'preds');
  const t = toNumbers(targets, 'targets');
  sameLength(p, t);
  return [p, t];
}

const mean = npMean;

/**
 * Mean absolute error, mean |p − t| (sklearn `mean_absolute_error`; summed as numpy sums, so bit-equal).
 * @param preds predicted values
 * @param targets true values
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs, or NaN
 * @example
 * et.metrics.mae([1.5, -0.2], [2, 0]);  // 0.35
 */
export function mae(preds: NumberInput, targets: NumberInput): number {
  const [p, t] = readPair(preds, targets);
  return maeOf(p, t);
}
function maeOf(p: number[], t: number[]): number {
  nonEmpty(t.length, 'targets');
  return mean(p.map((v, i) => Math.abs(v - t[i])));
}

/**
 * Mean squared error, mean (p − t)² (sklearn `mean_squared_error`).
 * @param preds predicted values
 * @param targets true values
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs, or NaN
 * @example
 * et.metrics.mse([1.5, -0.2], [2, 0]);  // 0.145
 */
export function mse(preds: NumberInput, targets: NumberInput): number {
  const [p, t] = readPair(preds, targets);
  return mseOf(p, t);
}
function mseOf(p: number[], t: number[]): number {
  nonEmpty(t.length, 'targets');
  return mean(p.map((v, i) => (v - t[i]) * (v - t[i])));
}

function atLeastTwo(n: number): void {
  if (n < 2) invalid('at least two samples for a correlation', 'targets', `${n} sample${n === 1 ? '' : 's'}`);
}

/** @internal Pearson r over two finite arrays (two-pass, as scipy); NaN when either is constant. */
export function pearsonOf(x: number[], y: number[]): number {
  atLeastTwo(x.length);
  if (x.every((v) => v === x[0]) || y.every((v) => v === y[0])) return NaN;
  const mx = mean(x);
  const my = mean(y);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < x.length; i++) {
    const a = x[i] - mx;
    const b = y[i] - my;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  const r = sxy / (Math.sqrt(sxx) * Math.sqrt(syy));
  return Math.max(-1, Math.min(1, r));
}

/**
 * Pearson correlation r = cov(p, t) / (σp σt) (scipy `pearsonr`, numpy `corrcoef`).
 * NaN when either input is constant (scipy returns NaN there too).
 * @param preds predicted values
 * @param targets true values
 * @throws EmotorchError ERR_INVALID_ARG on fewer than 2 samples, mismatched inputs, or NaN
 * @example
 * et.metrics.pearson([1, 2, 3], [1, 2, 4]);  // 0.9819…
 */
export function pearson(preds: NumberInput, targets: NumberInput): number {
  const [p, t] = readPair(preds, targets);
  return pearsonOf(p, t);
}

/** Ranks 1..n with ties given their average rank (scipy `rankdata(method='average')`). */
export function rankAverage(x: number[]): number[] {
  const idx = x.map((_, i) => i).sort((a, b) => x[a] - x[b]);
  const r = new Array<number>(x.length);
  for (let i = 0; i < idx.length;) {
    let j = i;
    while (j + 1 < idx.length && x[idx[j + 1]] === x[idx[i]]) j++;
    const avg = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) r[idx[k]] = avg;
    i = j + 1;
  }
  return r;
}

/**
 * Spearman rank correlation: Pearson r of the average ranks (scipy `spearmanr`). NaN when either
 * input is constant.
 * @param preds predicted values
 * @param targets true values
 * @throws EmotorchError ERR_INVALID_ARG on fewer than 2 samples, mismatched inputs, or NaN
 * @example
 * et.metrics.spearman([1, 2, 3], [1, 2, 40]);  // 1
 */
export function spearman(preds: NumberInput, targets: NumberInput): number {
  const [p, t] = readPair(preds, targets);
  return spearmanOf(p, t);
}
function spearmanOf(p: number[], t: number[]): number {
  atLeastTwo(p.length);
  return pearsonOf(rankAverage(p), rankAverage(t));
}

/** Options of `ccc` (the concordance correlation coefficient). */
export interface CccOptions {
  /** Delta degrees of freedom of the variances and covariance: 0 (Lin 1989, default) or 1 (torchmetrics). */
  ddof?: 0 | 1;
}

/**
 * Lin's concordance correlation coefficient,
 * CCC = 2 cov(p, t) / (var p + var t + (mean p − mean t)²), with population (ddof 0) moments by
 * default (Lin 1989; the AVEC challenges). NaN when both inputs are constant and equal.
 * @param preds predicted values
 * @param targets true values
 * @param opts ddof
 * @throws EmotorchError ERR_INVALID_ARG on fewer than 2 samples, mismatched inputs, or NaN
 * @example
 * et.metrics.ccc([0.1, 0.5, 0.9], [0, 0.5, 1]);
 */
export function ccc(preds: NumberInput, targets: NumberInput, opts?: CccOptions): number {
  const [p, t] = readPair(preds, targets);
  return cccOf(p, t, opts);
}
function cccOf(p: number[], t: number[], options?: CccOptions): number {
  const o = checkOptions<CccOptions>(options, 'options', ['ddof']);
  const ddof = o.ddof ?? 0;
  if (ddof !== 0 && ddof !== 1) invalid('0 or 1', 'ddof', ddof);
  atLeastTwo(p.length);
  const mp = mean(p);
  const mt = mean(t);
  let spt = 0;
  let spp = 0;
  let stt = 0;
  for (let i = 0; i < p.length; i++) {
    const a = p[i] - mp;
    const b = t[i] - mt;
    spt += a * b;
    spp += a * a;
    stt += b * b;
  }
  const n = p.length - ddof;
  return (2 * (spt / n)) / (spp / n + stt / n + (mp - mt) * (mp - mt));
}

abstract class ValueMetric<R> extends Metric<number, number, R> {
  protected read(preds: unknown, targets: unknown): [number[], number[]] {
    return readPair(preds, targets);
  }
}

/**
 * Streaming {@link mae}.
 * @example
 * const m = new et.metrics.MAE(); m.update(out.logits, batch.labels); m.compute();
 */
export class MAE extends ValueMetric<number> {
  protected run(p: number[], t: number[]): number {
    return maeOf(p, t);
  }
}
/** Streaming {@link mse}. */
export class MSE extends ValueMetric<number> {
  protected run(p: number[], t: number[]): number {
    return mseOf(p, t);
  }
}
/** Streaming {@link pearson}. */
export class Pearson extends ValueMetric<number> {
  protected run(p: number[], t: number[]): number {
    return pearsonOf(p, t);
  }
}
/** Streaming {@link spearman}. */
export class Spearman extends ValueMetric<number> {
  protected run(p: number[], t: number[]): number {
    return spearmanOf(p, t);
  }
}
/** Streaming {@link ccc}. */
export class CCC extends ValueMetric<number> {
  constructor(private readonly opts: CccOptions = {}) {
    super();
    checkOptions(opts, 'options', ['ddof']);
  }
  protected run(p: number[], t: number[]): number {
    return cccOf(p, t, this.opts);
  }
}
