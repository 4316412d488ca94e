/**
 * Classification metrics with scikit-learn's semantics: accuracy, balanced accuracy (UA),
 * precision / recall / F-beta with every averaging and a fixed `labels` list, `zero_division`,
 * the confusion matrix and the `classification_report` text table.
 *
 * Argument order is `(preds, targets)` everywhere in emotorch (scikit-learn's is
 * `(y_true, y_pred)`). A `null` prediction (an unparsable generation) is a class of its own, as a
 * sentinel label would be in scikit-learn: it never equals a target.
 */
import { EmotorchError, invalid } from '../errors';
import { Label, LabelInput, Metric, PredLabel, checkOptions, nonEmpty, npSum, oneOf, pyFixed, pyLen, sameLength, toLabels, uniqueLabels } from './common';

/** How per-class scores are combined: sklearn's `average` (`'none'` = per class, sklearn's `None`). */
export type Average = 'macro' | 'micro' | 'weighted' | 'binary' | 'none';
/** The value a 0/0 precision, recall or F takes: sklearn's `zero_division` ('warn' acts as 0). */
export type ZeroDivision = 0 | 1 | 'warn' | 'nan';

/** Options of the precision, recall and F scores (scikit-learn's `average`, `labels`, `pos_label`, `zero_division`). */
export interface PrfOptions {
  /** Default 'macro' (note: scikit-learn's default is 'binary'). */
  average?: Average;
  /** The classes to score, in this order; classes outside it are ignored. Default: sorted union of preds and targets. */
  labels?: readonly PredLabel[];
  /** The positive class for `average: 'binary'`. Default 1. */
  posLabel?: Label;
  /** Value of a 0/0 ratio. Default 'warn' (= 0, as sklearn). */
  zeroDivision?: ZeroDivision;
}
/** Options of `fbeta` and `precisionRecallFscoreSupport`: those of the F1 family plus `beta`. */
export interface FbetaOptions extends PrfOptions {
  /** Weight of recall in the F-score. Default 1. */
  beta?: number;
}

/** Per-class arrays (average 'none') or averaged numbers. */
export interface PrfResult<V = number> {
  precision: V;
  recall: V;
  fscore: V;
  /** Targets per class (average 'none'), or null when averaged, as sklearn returns. */
  support: V extends number[] ? number[] : null;
  /** The classes scored, in the order of the per-class arrays. */
  labels: PredLabel[];
}

const PRF_KEYS = ['average', 'labels', 'posLabel', 'zeroDivision', 'beta'] as const;
const AVERAGES: readonly Average[] = ['macro', 'micro', 'weighted', 'binary', 'none'];
const ZERO_DIVISIONS: readonly ZeroDivision[] = [0, 1, 'warn', 'nan'];

function readPair(preds: unknown, targets: unknown): [PredLabel[], Label[]] {
  const p = toLabels(preds, 'preds', true);
  const t = toLabels(targets, 'targets') as Label[];
  sameLength(p, t);
  const pk = p.find((v) => v !== null);
  if (pk !== undefined && t.length && typeof pk !== typeof t[0]) invalid(`predictions of the targets' label type (${typeof t[0]})`, 'preds', pk);
  return [p, t];
}

function zeroValue(z: ZeroDivision): number {
  return z === 'nan' ? NaN : z === 1 ? 1 : 0;
}

/** numerator / denominator, with `zero` where the denominator is 0 (sklearn `_prf_divide`). */
function divide(num: number[], den: number[], zero: number): number[] {
  return num.map((n, i) => (den[i] === 0 ? zero : n / den[i]));
}

/** sklearn `_nanaverage`: NaNs dropped; all-zero weights fall back to the plain mean. */
function nanAverage(a: number[], w: number[] | null): number {
  if (a.length === 0) return NaN;
  const keep = a.map((v) => !Number.isNaN(v));
  if (!keep.some(Boolean)) return NaN;
  const av = a.filter((_, i) => keep[i]);
  if (w) {
    // np.average(a, weights=w) = sum(a * w) / sum(w), numpy's pairwise sums
    const wv = w.filter((_, i) => keep[i]);
    const ws = npSum(wv);
    if (ws !== 0) return npSum(av.map((v, i) => v * wv[i])) / ws;
  }
  return npSum(av) / av.length;
}

function checkLabelList(labels: unknown, name: string): PredLabel[] {
  const l = toLabels(labels, name, true);
  if (l.length === 0) invalid('at least one label', name, labels);
  return l;
}

/** Per-class true-positive, predicted and true counts for `labels` (sklearn `multilabel_confusion_matrix` on 1-D input). */
function counts(p: PredLabel[], t: Label[], labels: PredLabel[]): { tp: number[]; pred: number[]; truth: number[] } {
  const idx = new Map<PredLabel, number>(labels.map((l, i) => [l, i]));
  const tp = new Array<number>(labels.length).fill(0);
  const pred = tp.slice();
  const truth = tp.slice();
  for (let i = 0; i < p.length; i++) {
    const pi = idx.get(p[i]);
    const ti = idx.get(t[i]);
    if (pi !== undefined) pred[pi]++;
    if (ti !== undefined) truth[ti]++;
    if (pi !== undefined && p[i] === t[i]) tp[pi]++;
  }
  return { tp, pred, truth };
}

/**
 * Precision, recall, F-beta and support, exactly as scikit-learn's
 * `precision_recall_fscore_support(targets, preds, ...)`.
 * Precision = TP/(TP+FP), recall = TP/(TP+FN), F = (1+β²)TP / ((1+β²)TP + β²FN + FP); averages:
 * macro = unweighted mean over classes, weighted = mean weighted by support (plain mean when
 * every support is 0), micro = from the summed counts, none = per class.
 * @param preds predicted labels (numbers, strings, or a Tensor of ids; null = unparsable)
 * @param targets true labels
 * @param opts average, labels, posLabel, zeroDivision, beta
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs, bad options, or
 *   `average: 'binary'` on multiclass data
 * @example
 * et.metrics.precisionRecallFscoreSupport([0, 1, 1], [0, 1, 0], { average: 'none' });
 * // { precision: [1, 0.5], recall: [0.5, 1], fscore: [0.667, 0.667], support: [2, 1], labels: [0, 1] }
 */
export function precisionRecallFscoreSupport(preds: LabelInput, targets: LabelInput, opts: FbetaOptions & { average: 'none' }): PrfResult<number[]>;
export function precisionRecallFscoreSupport(preds: LabelInput, targets: LabelInput, opts?: FbetaOptions): PrfResult<number>;
export function precisionRecallFscoreSupport(preds: LabelInput, targets: LabelInput, opts?: FbetaOptions): PrfResult<number> | PrfResult<number[]> {
  const [p, t] = readPair(preds, targets);
  return prfs(p, t, opts);
}

function prfs(p: PredLabel[], t: Label[], options?: FbetaOptions): PrfResult<number> | PrfResult<number[]> {
  const o = checkOptions<FbetaOptions>(options, 'options', PRF_KEYS);
  const average = oneOf(o.average ?? 'macro', AVERAGES, 'average');
  const zero = zeroValue(oneOf(o.zeroDivision ?? 'warn', ZERO_DIVISIONS, 'zeroDivision'));
  const beta = o.beta ?? 1;
  if (typeof beta !== 'number' || !(beta >= 0)) invalid('a non-negative number', 'beta', beta);
  nonEmpty(t.length, 'targets');
  const present = uniqueLabels(t, p);
  let labels: PredLabel[];
  if (average === 'binary') {
    if (present.length > 2) invalid(`binary targets for average 'binary' (choose another average)`, 'targets', present);
    const pos = o.posLabel ?? 1;
    if (!present.includes(pos) && present.length >= 2) invalid(`a posLabel among the labels ${present.join(', ')}`, 'posLabel', pos);
    labels = [pos];
  } else {
    labels = o.labels === undefined ? present : checkLabelList(o.labels, 'labels');
  }
  let { tp, pred, truth } = counts(p, t, labels);
  if (average === 'micro') {
    const sum = (a: number[]) => a.reduce((s, v) => s + v, 0);
    tp = [sum(tp)];
    pred = [sum(pred)];
    truth = [sum(truth)];
  }
  const precision = divide(tp, pred, zero);
  const recall = divide(tp, truth, zero);
  const b2 = beta * beta;
  const fscore =
    beta === Infinity
      ? recall
      : beta === 0
        ? precision
        : divide(
            tp.map((v) => (1 + b2) * v),
            truth.map((v, i) => b2 * v + pred[i]),
            zero,
          );
  if (average === 'none') return { precision, recall, fscore, support: truth, labels };
  const w = average === 'weighted' ? truth : null;
  return { precision: nanAverage(precision, w), recall: nanAverage(recall, w), fscore: nanAverage(fscore, w), support: null, labels };
}

/**
 * Precision TP/(TP+FP), as scikit-learn's `precision_score`.
 * @param preds predicted labels
 * @param targets true labels
 * @param opts average (default 'macro'; 'none' gives per-class values), labels, posLabel, zeroDivision
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs or bad options
 * @example
 * et.metrics.precision([0, 1, 1], [0, 1, 0], { average: 'micro' });  // 0.666…
 */
export function precision(preds: LabelInput, targets: LabelInput, opts: PrfOptions & { average: 'none' }): number[];
export function precision(preds: LabelInput, targets: LabelInput, opts?: PrfOptions): number;
export function precision(preds: LabelInput, targets: LabelInput, opts?: PrfOptions): number | number[] {
  return precisionRecallFscoreSupport(preds, targets, opts).precision;
}

/**
 * Recall TP/(TP+FN), as scikit-learn's `recall_score`.
 * @param preds predicted labels
 * @param targets true labels
 * @param opts average, labels, posLabel, zeroDivision
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs or bad options
 * @example
 * et.metrics.recall([0, 1, 1], [0, 1, 0], { average: 'macro' });  // 0.75
 */
export function recall(preds: LabelInput, targets: LabelInput, opts: PrfOptions & { average: 'none' }): number[];
export function recall(preds: LabelInput, targets: LabelInput, opts?: PrfOptions): number;
export function recall(preds: LabelInput, targets: LabelInput, opts?: PrfOptions): number | number[] {
  return precisionRecallFscoreSupport(preds, targets, opts).recall;
}

/**
 * F1 = 2TP/(2TP+FP+FN), as scikit-learn's `f1_score`.
 * @param preds predicted labels
 * @param targets true labels
 * @param opts average ('weighted' is what IEMOCAP/MELD papers report), labels, posLabel, zeroDivision
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs or bad options
 * @example
 * et.metrics.f1(preds, labels, { average: 'weighted' });
 */
export function f1(preds: LabelInput, targets: LabelInput, opts: PrfOptions & { average: 'none' }): number[];
export function f1(preds: LabelInput, targets: LabelInput, opts?: PrfOptions): number;
export function f1(preds: LabelInput, targets: LabelInput, opts?: PrfOptions): number | number[] {
  return precisionRecallFscoreSupport(preds, targets, { ...opts, beta: 1 }).fscore;
}

/**
 * F-beta = (1+β²)TP / ((1+β²)TP + β²FN + FP), as scikit-learn's `fbeta_score`.
 * @param preds predicted labels
 * @param targets true labels
 * @param opts beta (required), average, labels, posLabel, zeroDivision
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs or bad options
 * @example
 * et.metrics.fbeta([0, 1, 1], [0, 1, 0], { beta: 2, average: 'macro' });
 */
export function fbeta(preds: LabelInput, targets: LabelInput, opts: FbetaOptions & { beta: number; average: 'none' }): number[];
export function fbeta(preds: LabelInput, targets: LabelInput, opts: FbetaOptions & { beta: number }): number;
export function fbeta(preds: LabelInput, targets: LabelInput, opts: FbetaOptions & { beta: number }): number | number[] {
  if (!opts || typeof opts.beta !== 'number') invalid('a number', 'beta', opts?.beta);
  return precisionRecallFscoreSupport(preds, targets, opts).fscore;
}

/**
 * Accuracy, the share of predictions equal to their target (sklearn `accuracy_score`). IEMOCAP
 * papers call it weighted accuracy (WA).
 * @param preds predicted labels
 * @param targets true labels
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs
 * @example
 * et.metrics.accuracy([0, 1, 1], [0, 1, 0]);  // 0.666…
 */
export function accuracy(preds: LabelInput, targets: LabelInput): number {
  const [p, t] = readPair(preds, targets);
  return accuracyOf(p, t);
}

function accuracyOf(p: PredLabel[], t: Label[]): number {
  nonEmpty(t.length, 'targets');
  let c = 0;
  for (let i = 0; i < p.length; i++) if (p[i] === t[i]) c++;
  return c / t.length;
}

/** IEMOCAP's weighted accuracy (WA): the overall {@link accuracy}. */
export const weightedAccuracy = accuracy;

/** Options of `balancedAccuracy` (scikit-learn's `balanced_accuracy_score`). */
export interface BalancedAccuracyOptions {
  /** Rescale so chance scores 0 and perfect 1 (sklearn `adjusted`). Default false. */
  adjusted?: boolean;
}

/**
 * Balanced accuracy: the mean of per-class recall over the classes present in the targets
 * (sklearn `balanced_accuracy_score`). IEMOCAP papers call it unweighted accuracy (UA).
 * @param preds predicted labels
 * @param targets true labels
 * @param opts adjusted
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs
 * @example
 * et.metrics.balancedAccuracy([0, 0, 1, 1], [0, 1, 1, 1]);  // (1/1 + 2/3) / 2
 */
export function balancedAccuracy(preds: LabelInput, targets: LabelInput, opts?: BalancedAccuracyOptions): number {
  const [p, t] = readPair(preds, targets);
  return balancedOf(p, t, opts);
}

function balancedOf(p: PredLabel[], t: Label[], options?: BalancedAccuracyOptions): number {
  const o = checkOptions<BalancedAccuracyOptions>(options, 'options', ['adjusted']);
  if (o.adjusted !== undefined && typeof o.adjusted !== 'boolean') invalid('a boolean', 'adjusted', o.adjusted);
  nonEmpty(t.length, 'targets');
  const labels = uniqueLabels(t);
  const { tp, truth } = counts(p, t, labels);
  const per = tp.map((v, i) => v / truth[i]);
  let score = per.reduce((s, v) => s + v, 0) / per.length;
  if (o.adjusted) {
    const chance = 1 / per.length;
    score = (score - chance) / (1 - chance);
  }
  return score;
}

/** IEMOCAP's unweighted accuracy (UA): {@link balancedAccuracy}. */
export const unweightedAccuracy = balancedAccuracy;

/** Options of `confusionMatrix` (scikit-learn's `labels` and `normalize`). */
export interface ConfusionMatrixOptions {
  /** Row and column classes, in order; samples with other labels are dropped. Default: sorted union. */
  labels?: readonly PredLabel[];
  /** Normalize over true rows, predicted columns or all cells (0/0 gives 0, as sklearn). */
  normalize?: 'true' | 'pred' | 'all';
}

/** A confusion matrix (rows true, columns predicted) and the classes of its rows and columns. */
export interface ConfusionMatrixResult {
  /** matrix[i][j] = samples of true class labels[i] predicted as labels[j]. */
  matrix: number[][];
  labels: PredLabel[];
}

/**
 * The confusion matrix, rows = true class, columns = predicted class (sklearn `confusion_matrix`).
 * @param preds predicted labels
 * @param targets true labels
 * @param opts labels, normalize
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs, an empty `labels`, or
 *   `labels` none of which occurs in the targets
 * @example
 * et.metrics.confusionMatrix([0, 1, 1], [0, 1, 0]).matrix;  // [[1, 1], [0, 1]]
 */
export function confusionMatrix(preds: LabelInput, targets: LabelInput, opts?: ConfusionMatrixOptions): ConfusionMatrixResult {
  const [p, t] = readPair(preds, targets);
  return confusionOf(p, t, opts);
}

function confusionOf(p: PredLabel[], t: Label[], options?: ConfusionMatrixOptions): ConfusionMatrixResult {
  const o = checkOptions<ConfusionMatrixOptions>(options, 'options', ['labels', 'normalize']);
  if (o.normalize !== undefined) oneOf(o.normalize, ['true', 'pred', 'all'], 'normalize');
  nonEmpty(t.length, 'targets');
  let labels: PredLabel[];
  if (o.labels === undefined) labels = uniqueLabels(t, p);
  else {
    labels = checkLabelList(o.labels, 'labels');
    if (!labels.some((l) => t.includes(l as Label))) invalid('at least one label that occurs in targets', 'labels', o.labels);
  }
  const idx = new Map<PredLabel, number>(labels.map((l, i) => [l, i]));
  const n = labels.length;
  const m = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < p.length; i++) {
    const r = idx.get(t[i]);
    const c = idx.get(p[i]);
    if (r !== undefined && c !== undefined) m[r][c]++;
  }
  if (o.normalize) {
    const fix = (v: number) => (Number.isFinite(v) ? v : 0);
    if (o.normalize === 'true') {
      for (const row of m) {
        const s = row.reduce((a, v) => a + v, 0);
        row.forEach((v, j) => {
          row[j] = fix(v / s);
        });
      }
    } else if (o.normalize === 'pred') {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += m[i][j];
        for (let i = 0; i < n; i++) m[i][j] = fix(m[i][j] / s);
      }
    } else {
      const s = m.reduce((a, row) => a + row.reduce((b, v) => b + v, 0), 0);
      for (const row of m)
        row.forEach((v, j) => {
          row[j] = fix(v / s);
        });
    }
  }
  return { matrix: m, labels };
}

/** Options of `classificationReport` (scikit-learn's `labels`, `target_names`, `digits`, …). */
export interface ClassificationReportOptions {
  /** Classes to report, in order. Default: sorted union of preds and targets. */
  labels?: readonly PredLabel[];
  /** Display names of the classes (same length as the labels). Default: the labels as text. */
  targetNames?: readonly string[];
  /** Digits after the decimal point in the text. Default 2. */
  digits?: number;
  zeroDivision?: ZeroDivision;
  /** Return the numbers as an object instead of the text table (sklearn `output_dict`). */
  outputDict?: boolean;
}

/** One row of {@link classificationReport}'s object form. */
export interface ReportRow {
  precision: number;
  recall: number;
  'f1-score': number;
  support: number;
}
/** {@link classificationReport} with `outputDict: true`: rows by class name, the averages, and `accuracy` when micro = accuracy. */
export type ReportDict = Record<string, ReportRow | number>;

/**
 * scikit-learn's `classification_report`: per-class precision, recall, F1 and support, then
 * accuracy (or micro avg when `labels` leaves classes out), macro avg and weighted avg, as the
 * same text table (numbers formatted as Python does, half to even) or as an object.
 * @param preds predicted labels
 * @param targets true labels
 * @param opts labels, targetNames, digits, zeroDivision, outputDict
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched inputs or bad options
 * @example
 * console.log(et.metrics.classificationReport(preds, targets, { targetNames: ['neg', 'pos'] }));
 */
export function classificationReport(preds: LabelInput, targets: LabelInput, opts: ClassificationReportOptions & { outputDict: true }): ReportDict;
export function classificationReport(preds: LabelInput, targets: LabelInput, opts?: ClassificationReportOptions): string;
export function classificationReport(preds: LabelInput, targets: LabelInput, opts?: ClassificationReportOptions): string | ReportDict {
  const [p, t] = readPair(preds, targets);
  return reportOf(p, t, opts);
}

function labelText(l: PredLabel): string {
  return l === null ? 'None' : String(l);
}

function reportOf(p: PredLabel[], t: Label[], options?: ClassificationReportOptions): string | ReportDict {
  const o = checkOptions<ClassificationReportOptions>(options, 'options', ['labels', 'targetNames', 'digits', 'zeroDivision', 'outputDict']);
  const digits = o.digits ?? 2;
  if (!Number.isInteger(digits) || digits < 0 || digits > 20) invalid('an integer in [0, 20]', 'digits', digits);
  nonEmpty(t.length, 'targets');
  const present = uniqueLabels(t, p);
  const labels = o.labels === undefined ? present : checkLabelList(o.labels, 'labels');
  const labelsSet = new Set(labels);
  const microIsAccuracy = o.labels === undefined || present.every((l) => labelsSet.has(l));
  let names: string[];
  if (o.targetNames !== undefined) {
    if (!Array.isArray(o.targetNames) || o.targetNames.some((n) => typeof n !== 'string')) invalid('an array of strings', 'targetNames', o.targetNames);
    if (o.targetNames.length !== labels.length) {
      throw new EmotorchError(`Expected targetNames of the labels' length (${labels.length}) but received ${o.targetNames.length} names`, 'ERR_INVALID_ARG');
    }
    names = [...o.targetNames];
  } else names = labels.map(labelText);
  const zd = o.zeroDivision ?? 'warn';
  const per = prfs(p, t, { labels, average: 'none', zeroDivision: zd }) as PrfResult<number[]>;
  const total = per.support.reduce((a, v) => a + v, 0);
  const avgs: [string, Average][] = [
    [microIsAccuracy ? 'accuracy' : 'micro avg', 'micro'],
    ['macro avg', 'macro'],
    ['weighted avg', 'weighted'],
  ];
  const avgRows = avgs.map(([name, average]) => {
    const r = prfs(p, t, { labels, average, zeroDivision: zd }) as PrfResult<number>;
    return { name, row: { precision: r.precision, recall: r.recall, 'f1-score': r.fscore, support: total } as ReportRow };
  });
  if (o.outputDict) {
    const out: ReportDict = {};
    names.forEach((n, i) => {
      out[n] = { precision: per.precision[i], recall: per.recall[i], 'f1-score': per.fscore[i], support: per.support[i] };
    });
    for (const { name, row } of avgRows) out[name] = name === 'accuracy' ? row['f1-score'] : row;
    return out;
  }
  // sklearn's supports turn float (printed "2.0") when no prediction at all is right
  const noTp = !p.some((v, i) => v === t[i]);
  const sup = (n: number) => right(noTp ? `${n}.0` : String(n), 9);
  const width = Math.max(...names.map(pyLen), pyLen('weighted avg'), digits);
  const right = (s: string, w: number) => ' '.repeat(Math.max(0, w - pyLen(s))) + s;
  const num = (v: number) => right(pyFixed(v, digits), 9);
  let text = right('', width) + ' ' + ['precision', 'recall', 'f1-score', 'support'].map((h) => ' ' + right(h, 9)).join('') + '\n\n';
  names.forEach((n, i) => {
    text += `${right(n, width)}  ${num(per.precision[i])} ${num(per.recall[i])} ${num(per.fscore[i])} ${sup(per.support[i])}\n`;
  });
  text += '\n';
  for (const { name, row } of avgRows) {
    if (name === 'accuracy') text += `${right(name, width)}  ${right('', 9)} ${right('', 9)} ${num(row['f1-score'])} ${sup(row.support)}\n`;
    else text += `${right(name, width)}  ${num(row.precision)} ${num(row.recall)} ${num(row['f1-score'])} ${sup(row.support)}\n`;
  }
  return text;
}

// ---------------------------------------------------------------- streaming classes

abstract class LabelMetric<R> extends Metric<PredLabel, Label, R> {
  protected read(preds: unknown, targets: unknown): [PredLabel[], Label[]] {
    const [p, t] = readPair(preds, targets);
    const seen = this.targets.find(() => true) ?? this.preds.find((v) => v !== null);
    const next = t[0] ?? p.find((v) => v !== null);
    if (seen !== undefined && next !== undefined && typeof seen !== typeof next)
      invalid(`labels of the earlier batches' type (${typeof seen})`, 'targets', next);
    return [p, t];
  }
}

/**
 * Streaming {@link accuracy}.
 * @example
 * const acc = new et.metrics.Accuracy();
 * for (const b of batches) acc.update(b.preds, b.labels);
 * acc.compute();
 */
export class Accuracy extends LabelMetric<number> {
  protected run(p: PredLabel[], t: Label[]): number {
    return accuracyOf(p, t);
  }
}

/** Streaming {@link balancedAccuracy} (UA). */
export class BalancedAccuracy extends LabelMetric<number> {
  constructor(private readonly opts: BalancedAccuracyOptions = {}) {
    super();
    checkOptions(opts, 'options', ['adjusted']);
  }
  protected run(p: PredLabel[], t: Label[]): number {
    return balancedOf(p, t, this.opts);
  }
}

/** Streaming {@link precisionRecallFscoreSupport}. */
export class PrecisionRecallFscore extends LabelMetric<PrfResult<number> | PrfResult<number[]>> {
  constructor(private readonly opts: FbetaOptions = {}) {
    super();
    checkOptions(opts, 'options', PRF_KEYS);
  }
  protected run(p: PredLabel[], t: Label[]): PrfResult<number> | PrfResult<number[]> {
    return prfs(p, t, this.opts);
  }
}

/** Streaming {@link precision}. */
export class Precision extends LabelMetric<number | number[]> {
  constructor(private readonly opts: PrfOptions = {}) {
    super();
    checkOptions(opts, 'options', PRF_KEYS);
  }
  protected run(p: PredLabel[], t: Label[]): number | number[] {
    return prfs(p, t, this.opts).precision;
  }
}

/** Streaming {@link recall}. */
export class Recall extends LabelMetric<number | number[]> {
  constructor(private readonly opts: PrfOptions = {}) {
    super();
    checkOptions(opts, 'options', PRF_KEYS);
  }
  protected run(p: PredLabel[], t: Label[]): number | number[] {
    return prfs(p, t, this.opts).recall;
  }
}

/**
 * Streaming {@link f1}.
 * @example
 * const m = new et.metrics.F1({ average: 'weighted' });
 * m.update(logits.argmax(-1), labels); m.compute();
 */
export class F1 extends LabelMetric<number | number[]> {
  constructor(private readonly opts: PrfOptions = {}) {
    super();
    checkOptions(opts, 'options', PRF_KEYS);
  }
  protected run(p: PredLabel[], t: Label[]): number | number[] {
    return prfs(p, t, { ...this.opts, beta: 1 }).fscore;
  }
}

/** Streaming {@link confusionMatrix}. */
export class ConfusionMatrix extends LabelMetric<ConfusionMatrixResult> {
  constructor(private readonly opts: ConfusionMatrixOptions = {}) {
    super();
    checkOptions(opts, 'options', ['labels', 'normalize']);
  }
  protected run(p: PredLabel[], t: Label[]): ConfusionMatrixResult {
    return confusionOf(p, t, this.opts);
  }
}

/** Streaming {@link classificationReport}. */
export class ClassificationReport extends LabelMetric<string | ReportDict> {
  constructor(private readonly opts: ClassificationReportOptions = {}) {
    super();
    checkOptions(opts, 'options', ['labels', 'targetNames', 'digits', 'zeroDivision', 'outputDict']);
  }
  protected run(p: PredLabel[], t: Label[]): string | ReportDict {
    return reportOf(p, t, this.opts);
  }
}
