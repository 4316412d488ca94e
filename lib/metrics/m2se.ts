/**
 * M2SE / EmoVerse evaluation (liaolea/EmoVerse `compute_result.py`) over ms-swift inference
 * records (`{response, label}` per JSONL line): sentiment accuracy, emotion accuracy and weighted
 * F1, and emotion-cause pair P/R/F1 per emotion, weighted and micro.
 *
 * Where ours differs from the original, on purpose (each difference changes numbers only on
 * inputs the original scores wrongly or crashes on):
 * 1. Pairs: records whose gold is empty are counted (their predictions are false positives); the
 *    original skips them with their predictions, which inflates precision.
 * 2. Pairs: an empty response is no prediction; the original counts `"".split(";")` = `[""]` as one.
 * 3. Pairs: pairs are trimmed and de-duplicated per record; the original counts a repeated correct
 *    pair twice (precision can then exceed what the model earned).
 * 4. Pairs: a malformed predicted pair (no `_<emotion>`) is a wrong prediction reported in
 *    `unparsable`; the original raises IndexError. 0/0 gives 0; the original raises ZeroDivisionError.
 * 5. Emotion: the default labels are MELD's (`Joy.`), which the original's list lacks (it has
 *    `Happy.` and raises ValueError on every MELD `Joy.` record); a response outside the labels is a
 *    wrong prediction (class `null`), not a crash. Gold outside the labels is an error.
 * 6. Sentiment and emotion compare trimmed strings; the original compares raw strings.
 */
import { EmotorchError, invalid } from '../errors';
import { readJsonList } from '../data/datasets/json';
import { Metric, PredLabel, checkOptions, nonEmpty, sameLength, toStrings } from './common';
import { Tensor, checkTensor } from '../tensor';
import { precisionRecallFscoreSupport } from './classification';

/** One ms-swift inference record (`swift infer` JSONL): the fields compute_result reads. */
export interface SwiftRecord {
  response: string;
  label: string;
}

/**
 * Reads an ms-swift `swift infer` result file (JSONL, or a JSON list): each record's `response`
 * and gold `label` (newer ms-swift versions name it `labels`; both are read).
 * @param file path to the .jsonl (or .json) file
 * @throws EmotorchError ERR_IO when unreadable, ERR_FORMAT on a line that is not JSON or lacks the fields
 * @example
 * const recs = et.metrics.readSwiftResults('infer_result/20240101.jsonl');
 * et.metrics.m2seEmotion(recs.map((r) => r.response), recs.map((r) => r.label));
 */
export function readSwiftResults(file: string): SwiftRecord[] {
  if (typeof file !== 'string') invalid('a file path', 'file', file);
  return readJsonList(file).map((r, i) => {
    const rec = r as Record<string, unknown>;
    const label = rec?.label ?? rec?.labels;
    if (!rec || typeof rec.response !== 'string' || typeof label !== 'string') {
      throw new EmotorchError(`'${file}' record ${i + 1} lacks a string "response" and "label"`, 'ERR_FORMAT');
    }
    return { response: rec.response, label };
  });
}

// ---------------------------------------------------------------- sentiment and emotion

/** Options of M2SE's sentiment and emotion scores (`compute_result`): the answer strings of the classes. */
export interface M2seClassOptions {
  /** The answer strings, one per class. Defaults: sentiment `Positive.`/`Negative.`; emotion MELD's seven. */
  labels?: readonly string[];
}

/** Sentiment / emotion results. */
export interface M2seClassResult {
  /** Share of records whose response equals the label. */
  accuracy: number;
  /** sklearn weighted F1 over the classes (unparsable responses form a class of their own). */
  weightedF1: number;
  /** Recall of each gold class (the original prints these for Positive./Negative.). */
  recall: Record<string, number>;
  correct: number;
  total: number;
  /** Responses that are none of the labels. */
  unparsable: number;
}

/** compute_result's sentiment answers. */
export const M2SE_SENTIMENTS = ['Positive.', 'Negative.'] as const;
/** MELD's seven answers (compute_result's commented-out list, which MELD's test labels use). */
export const M2SE_EMOTIONS = ['Anger.', 'Sadness.', 'Surprise.', 'Disgust.', 'Joy.', 'Neutral.', 'Fear.'] as const;

function classify(responses: string[], labels: string[], classes: readonly string[]): M2seClassResult {
  sameLength(responses, labels, 'responses and labels');
  nonEmpty(labels.length, 'labels');
  const set = new Set(classes);
  const gold = labels.map((l, i) => {
    const s = l.trim();
    if (!set.has(s)) invalid(`a label among ${classes.join(' ')}`, `labels[${i}]`, l);
    return s;
  });
  let unparsable = 0;
  const pred: PredLabel[] = responses.map((r) => {
    const s = r.trim();
    if (set.has(s)) return s;
    unparsable++;
    return null;
  });
  const correct = pred.filter((p, i) => p === gold[i]).length;
  const prf = precisionRecallFscoreSupport(pred, gold, { average: 'none' });
  const recall: Record<string, number> = {};
  prf.labels.forEach((l, i) => {
    if (l !== null && prf.support[i] > 0) recall[l as string] = prf.recall[i];
  });
  return {
    accuracy: correct / gold.length,
    weightedF1: precisionRecallFscoreSupport(pred, gold, { average: 'weighted' }).fscore,
    recall,
    correct,
    total: gold.length,
    unparsable,
  };
}

function classesOf(o: M2seClassOptions, dflt: readonly string[]): readonly string[] {
  const l = o.labels ?? dflt;
  if (!Array.isArray(l) || l.length === 0 || l.some((s) => typeof s !== 'string')) invalid('a non-empty array of strings', 'labels', l);
  return l.map((s) => s.trim());
}

/**
 * M2SE sentiment accuracy (compute_result `emoverse_sentiment`): exact match of the response
 * with the label, over records whose label is one of the classes (by default `Positive.` and
 * `Negative.`), plus per-class recall and weighted F1.
 * @param responses generated answers
 * @param labels gold answers
 * @param opts labels (the classes)
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched input, or a gold label outside the classes
 * @example
 * et.metrics.m2seSentiment(['Positive.', 'Negative.'], ['Positive.', 'Positive.']).accuracy;  // 0.5
 */
export function m2seSentiment(responses: readonly string[], labels: readonly string[], opts?: M2seClassOptions): M2seClassResult {
  const o = checkOptions<M2seClassOptions>(opts, 'options', ['labels']);
  return classify(toStrings(responses, 'responses'), toStrings(labels, 'labels'), classesOf(o, M2SE_SENTIMENTS));
}

/**
 * M2SE emotion accuracy and weighted F1 (compute_result `emoverse_emotion`, with MELD's label list).
 * @param responses generated answers
 * @param labels gold answers
 * @param opts labels (the classes; default MELD's seven, `Joy.` included)
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched input, or a gold label outside the classes
 * @example
 * et.metrics.m2seEmotion(['Joy.', 'Fear.'], ['Joy.', 'Anger.']).weightedF1;
 */
export function m2seEmotion(responses: readonly string[], labels: readonly string[], opts?: M2seClassOptions): M2seClassResult {
  const o = checkOptions<M2seClassOptions>(opts, 'options', ['labels']);
  return classify(toStrings(responses, 'responses'), toStrings(labels, 'labels'), classesOf(o, M2SE_EMOTIONS));
}

// ---------------------------------------------------------------- emotion-cause pairs

/** compute_result's six pair categories. */
export const M2SE_PAIR_EMOTIONS = ['disgust', 'anger', 'joy', 'sadness', 'surprise', 'fear'] as const;

/** M2SE's emotion-cause pair scores as compute_result computes them: per emotion, weighted F1 and F1 over all pairs. */
export interface M2sePairResult {
  /** P = correct/predicted, R = correct/gold, F1 per emotion (0 where a ratio is 0/0). */
  perEmotion: Record<string, { precision: number; recall: number; f1: number; correct: number; predicted: number; gold: number }>;
  /** Σ F1(e) · gold(e) / Σ gold over the six emotions (compute_result's `WF1`). */
  weightedF1: number;
  /** From all pairs: P = correct / predicted pairs, R = correct / gold pairs (compute_result's `F1`). */
  micro: { precision: number; recall: number; f1: number };
  correct: number;
  predicted: number;
  gold: number;
  /** Predicted pairs without a readable `<utt>_<emotion>` part (wrong predictions). */
  unparsable: number;
}

function splitPairs(s: string): string[] {
  return [
    ...new Set(
      s
        .split(';')
        .map((x) => x.trim())
        .filter((x) => x.length > 0),
    ),
  ];
}

/** compute_result's category: `pair.split(",")[0].split("_")[1]`, or null when absent. */
function pairEmotion(pair: string): string | null {
  const parts = pair.split(',')[0].split('_');
  return parts.length > 1 ? parts[1] : null;
}

function pairs(responses: string[], labels: string[]): M2sePairResult {
  sameLength(responses, labels, 'responses and labels');
  nonEmpty(labels.length, 'labels');
  const cats = new Map<string, { correct: number; predicted: number; gold: number }>(M2SE_PAIR_EMOTIONS.map((e) => [e, { correct: 0, predicted: 0, gold: 0 }]));
  let correct = 0;
  let predicted = 0;
  let gold = 0;
  let unparsable = 0;
  responses.forEach((resp, i) => {
    const g = splitPairs(labels[i]);
    const gs = new Set(g);
    gold += g.length;
    for (const pair of g) {
      const c = cats.get(pairEmotion(pair) ?? '');
      if (c) c.gold++;
    }
    for (const pair of splitPairs(resp)) {
      predicted++;
      const e = pairEmotion(pair);
      if (e === null) unparsable++;
      const c = cats.get(e ?? '');
      if (c) c.predicted++;
      if (gs.has(pair)) {
        correct++;
        if (c) c.correct++;
      }
    }
  });
  const div = (a: number, b: number) => (b === 0 ? 0 : a / b);
  const f = (p: number, r: number) => (p + r > 0 ? (2 * p * r) / (p + r) : 0);
  const perEmotion: M2sePairResult['perEmotion'] = {};
  let totalGold = 0;
  for (const [e, c] of cats) {
    const p = div(c.correct, c.predicted);
    const r = div(c.correct, c.gold);
    perEmotion[e] = { precision: p, recall: r, f1: f(p, r), ...c };
    totalGold += c.gold;
  }
  let weightedF1 = 0;
  for (const e of M2SE_PAIR_EMOTIONS) weightedF1 += div(perEmotion[e].f1 * perEmotion[e].gold, totalGold);
  const mp = div(correct, predicted);
  const mr = div(correct, gold);
  return { perEmotion, weightedF1, micro: { precision: mp, recall: mr, f1: f(mp, mr) }, correct, predicted, gold, unparsable };
}

/**
 * M2SE emotion-cause pair scores (compute_result `emoverse_ecf2`): responses and labels are
 * `"5_surprise,2;5_surprise,5"` strings; a predicted pair is correct when it equals a gold pair of
 * its record. Per emotion P/R/F1, the gold-weighted F1 over the six emotions (`WF1`) and micro F1
 * (`F1`). Records with an empty gold are counted (see the module notes for every difference).
 * @param responses generated pair lists
 * @param labels gold pair lists (may be empty strings)
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched input
 * @example
 * et.metrics.m2sePairs(['3_joy,1;3_joy,2'], ['3_joy,1']).micro.f1;  // 0.667
 */
export function m2sePairs(responses: readonly string[], labels: readonly string[]): M2sePairResult {
  return pairs(toStrings(responses, 'responses'), toStrings(labels, 'labels'));
}

/**
 * compute_result over an ms-swift inference file: reads it with {@link readSwiftResults} and runs
 * {@link m2seSentiment}, {@link m2seEmotion} or {@link m2sePairs}.
 * @param file the `swift infer` JSONL
 * @param task 'sentiment' | 'emotion' | 'pairs'
 * @param opts labels (sentiment and emotion)
 * @throws EmotorchError ERR_IO / ERR_FORMAT on the file, ERR_INVALID_ARG as the metric
 * @example
 * et.metrics.m2seComputeResult('meld_infer.jsonl', 'emotion').weightedF1;
 */
export function m2seComputeResult(file: string, task: 'sentiment' | 'emotion', opts?: M2seClassOptions): M2seClassResult;
export function m2seComputeResult(file: string, task: 'pairs'): M2sePairResult;
export function m2seComputeResult(file: string, task: 'sentiment' | 'emotion' | 'pairs', opts?: M2seClassOptions): M2seClassResult | M2sePairResult {
  if (!['sentiment', 'emotion', 'pairs'].includes(task)) invalid("'sentiment', 'emotion' or 'pairs'", 'task', task);
  checkOptions(opts, 'options', ['labels']);
  const recs = readSwiftResults(file);
  const r = recs.map((x) => x.response);
  const l = recs.map((x) => x.label);
  return task === 'pairs' ? m2sePairs(r, l) : task === 'sentiment' ? m2seSentiment(r, l, opts) : m2seEmotion(r, l, opts);
}

abstract class TextMetric<R> extends Metric<string, string, R> {
  protected read(preds: unknown, targets: unknown): [string[], string[]] {
    return [toStrings(preds, 'responses'), toStrings(targets, 'labels')];
  }
}

/** Streaming {@link m2seSentiment}: `update(responses, labels)`. */
export class M2seSentiment extends TextMetric<M2seClassResult> {
  private readonly classes: readonly string[];
  constructor(opts: M2seClassOptions = {}) {
    super();
    this.classes = classesOf(checkOptions(opts, 'options', ['labels']), M2SE_SENTIMENTS);
  }
  protected run(p: string[], t: string[]): M2seClassResult {
    return classify(p, t, this.classes);
  }
}
/** Streaming {@link m2seEmotion}: `update(responses, labels)`. */
export class M2seEmotion extends TextMetric<M2seClassResult> {
  private readonly classes: readonly string[];
  constructor(opts: M2seClassOptions = {}) {
    super();
    this.classes = classesOf(checkOptions(opts, 'options', ['labels']), M2SE_EMOTIONS);
  }
  protected run(p: string[], t: string[]): M2seClassResult {
    return classify(p, t, this.classes);
  }
}
/** Streaming {@link m2sePairs}: `update(responses, labels)`. */
export class M2sePairs extends TextMetric<M2sePairResult> {
  protected run(p: string[], t: string[]): M2sePairResult {
    return pairs(p, t);
  }
}

/**
 * ms-swift's training accuracy of a causal LM (`Seq2SeqTrainer.compute_loss`, logged as `acc`):
 * the argmax of the logits at positions 0..T−2 against the labels at 1..T−1 where they are not
 * −100. `'token'`: the fraction of label tokens right; `'sentence'` (`--acc_strategy sentence`, as
 * M2SE trains): the fraction of rows whose label tokens are all right (a row without label tokens
 * counts as right, as `torch.all` of nothing).
 * @param logits (batch, T, vocab)
 * @param labels (batch, T) int64, −100 where nothing is scored
 * @throws EmotorchError ERR_INVALID_ARG for mis-shaped inputs or an unknown strategy
 * @example
 * et.metrics.lmAccuracy(out.logits, batch.labels, 'sentence');
 */
export function lmAccuracy(logits: Tensor, labels: Tensor, strategy: 'token' | 'sentence' = 'token'): number {
  checkTensor(logits, 'logits');
  checkTensor(labels, 'labels');
  if (strategy !== 'token' && strategy !== 'sentence') invalid("'token' or 'sentence'", 'strategy', strategy);
  if (logits.ndim !== 3 || labels.ndim !== 2 || logits.shape[0] !== labels.shape[0] || logits.shape[1] !== labels.shape[1]) {
    invalid(`logits (batch, T, vocab) and labels (batch, T) of one batch and length`, 'logits / labels', `[${logits.shape}] / [${labels.shape}]`);
  }
  const T = labels.shape[1];
  if (T < 2) return strategy === 'sentence' ? 1 : 0;
  const gold = labels.slice(1, 1, T).to({ device: logits.device, dtype: 'int64' });
  const scored = gold.ne(-100);
  const right = logits
    .slice(1, 0, T - 1)
    .argmax(-1)
    .eq(gold);
  const out =
    strategy === 'sentence'
      ? right.logicalOr(scored.logicalNot()).all(1).float().mean().item() // rows whose scored tokens are all right
      : (() => {
          const n = scored.sum().item();
          return n ? right.logicalAnd(scored).sum().item() / n : 0;
        })();
  for (const t of [gold, scored, right]) t.dispose();
  return out;
}
