/**
 * SemEval-2024 Task 3 (ECAC) scores, as the official CodaLab scorer
 * (NUSTM/SemEval-2024_ECAC, `CodaLab/evaluation/evaluate.py`) computes them:
 * - subtask 2 (utterance-level emotion-cause pairs): per-emotion P/R/F1, the weighted average over
 *   the six emotions (weights = share of gold pairs; the ranking metric is `weighted.f1`) and micro;
 * - subtask 1 (textual cause spans): the same under strict (exact span) and proportional
 *   (token-overlap) matching.
 * The scorer's 1e-8 smoothing terms are kept, so values are those the leaderboard printed.
 * Also the Subtask 2 submission file these scores read (ecfSubmission, writeEcfSubmission).
 */
import * as fs from 'fs';
import { EmotorchError, invalid } from '../errors';
import { ECF_EMOTIONS, groupEcfConversations } from '../data/datasets/ecf';
import type { EcfItem, EcfEmotion } from '../data/datasets/ecf';
import { Metric, nonEmpty, pySplit, pyStrip } from './common';

/** The scorer's emotion order; index 0 (neutral) is left out of every average. */
export const ECAC_EMOTIONS = ['neutral', 'anger', 'disgust', 'fear', 'joy', 'sadness', 'surprise'] as const;
/** One of the scorer's seven emotion names (neutral included; the averages leave it out). */
export type EcacEmotion = (typeof ECAC_EMOTIONS)[number];

/** One conversation in the official JSON layout (gold and prediction files alike). */
export interface EcacConversation {
  conversation_ID: number | string;
  /** Utterances; subtask 1 gold needs their `text` (cause spans are located in it). */
  conversation?: { utterance_ID?: number | string; text: string; [k: string]: unknown }[];
  /**
   * Subtask 2: `["3_surprise", "1"]` (emotion utterance _ emotion, cause utterance).
   * Subtask 1 gold: `["3_surprise", "1_<span text>"]`; prediction: `["3_surprise", "1_21_27"]`
   * (cause utterance _ start token _ end token, end exclusive).
   */
  'emotion-cause_pairs': (readonly [string, string | number])[];
}

/** P/R/F1 of one emotion, with the counts behind them (token counts for proportional matching). */
export interface EcacEmotionScore {
  precision: number;
  recall: number;
  f1: number;
  correct: number;
  predicted: number;
  gold: number;
}
/** Precision, recall and F1. */
export interface Prf {
  precision: number;
  recall: number;
  f1: number;
}
/** SemEval-2024 Task 3 scores of one kind: weighted-average and micro precision, recall and F1, as the official scorer reports them. */
export interface EcacScores {
  /** Per emotion (the six non-neutral ones). */
  perEmotion: Record<Exclude<EcacEmotion, 'neutral'>, EcacEmotionScore>;
  /** Weighted by each emotion's number of gold pairs (NaN when there are none). The ranking metric is `weighted.f1`. */
  weighted: Prf;
  /** From the counts summed over the six emotions. */
  micro: Prf;
}
/** Subtask 1 scores: strict (exact span) and proportional (overlap) matching. */
export interface EcacSpanScores {
  strict: EcacScores;
  proportional: EcacScores;
}

const EPS = 1e-8;
const INT = /^\s*[+-]?\d+\s*$/;

function pairsOf(conv: EcacConversation, name: string): (readonly [string, string | number])[] {
  const pairs = (conv as unknown as Record<string, unknown>)['emotion-cause_pairs'];
  if (!Array.isArray(pairs)) invalid("a list under 'emotion-cause_pairs'", `${name} conversation ${conv.conversation_ID}`, pairs);
  pairs.forEach((p, i) => {
    if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'string' || (typeof p[1] !== 'string' && typeof p[1] !== 'number')) {
      invalid('a pair ["<utt>_<emotion>", "<cause>"]', `${name} conversation ${conv.conversation_ID} pair ${i}`, p);
    }
  });
  return pairs;
}

function emotionUtt(s: string, where: string): [number, number] {
  const parts = s.split('_');
  if (parts.length !== 2 || !INT.test(parts[0])) invalid('"<utterance>_<emotion>"', where, s);
  const e = ECAC_EMOTIONS.indexOf(parts[1] as EcacEmotion);
  if (e < 0) invalid(`an emotion among ${ECAC_EMOTIONS.join(', ')}`, where, parts[1]);
  return [parseInt(parts[0], 10), e];
}

function byId(convs: unknown, name: string): Map<number | string, EcacConversation> {
  if (!Array.isArray(convs)) return invalid('an array of conversations', name, convs);
  const m = new Map<number | string, EcacConversation>();
  convs.forEach((c, i) => {
    if (c === null || typeof c !== 'object' || !('conversation_ID' in c)) invalid('a conversation object with conversation_ID', `${name}[${i}]`, c);
    const id = (c as EcacConversation).conversation_ID;
    if (typeof id !== 'number' && typeof id !== 'string') invalid('a number or string', `${name}[${i}].conversation_ID`, id);
    if (m.has(id)) throw new EmotorchError(`Conversation ${id} appears twice in ${name}`, 'ERR_INVALID_ARG');
    m.set(id, c as EcacConversation);
  });
  return m;
}

/** Gold conversations in order, each with its prediction (the scorer exits when one is missing). */
function matched(preds: Map<number | string, EcacConversation>, gold: Map<number | string, EcacConversation>): [EcacConversation, EcacConversation][] {
  nonEmpty(gold.size, 'targets');
  return [...gold.values()].map((g) => {
    const p = preds.get(g.conversation_ID);
    if (!p) throw new EmotorchError(`Expected a prediction for conversation ${g.conversation_ID} but received none`, 'ERR_INVALID_ARG');
    return [p, g];
  });
}

/** Scores from a 7×7 matrix laid out as the scorer's: TP at [e][e], FP at [0][e], FN at [e][0]. */
function fromConfusion(conf: number[][]): EcacScores {
  const col = (j: number) => conf.reduce((s, row) => s + row[j], 0);
  const row = (i: number) => conf[i].reduce((s, v) => s + v, 0);
  const p = ECAC_EMOTIONS.map((_, i) => conf[i][i] / (col(i) + EPS));
  const r = ECAC_EMOTIONS.map((_, i) => conf[i][i] / (row(i) + EPS));
  const f = p.map((pi, i) => (2 * pi * r[i]) / (pi + r[i] + EPS));
  const rows = ECAC_EMOTIONS.map((_, i) => row(i));
  const cols = ECAC_EMOTIONS.map((_, i) => col(i));
  const correct = ECAC_EMOTIONS.map((_, i) => conf[i][i]);
  return summarize(p, r, f, rows, correct, cols, rows);
}

function summarize(p: number[], r: number[], f: number[], weights: number[], correct: number[], predicted: number[], gold: number[]): EcacScores {
  const wsum = weights.slice(1).reduce((s, v) => s + v, 0);
  const w = weights.map((v) => v / wsum);
  const wavg = (a: number[]) => a.slice(1).reduce((s, v, i) => s + v * w[i + 1], 0);
  const sum = (a: number[]) => a.slice(1).reduce((s, v) => s + v, 0);
  const c = sum(correct);
  const mp = c / (sum(predicted) + EPS);
  const mr = c / (sum(gold) + EPS);
  const perEmotion = {} as EcacScores['perEmotion'];
  ECAC_EMOTIONS.forEach((e, i) => {
    if (i > 0)
      perEmotion[e as Exclude<EcacEmotion, 'neutral'>] = {
        precision: p[i],
        recall: r[i],
        f1: f[i],
        correct: correct[i],
        predicted: predicted[i],
        gold: gold[i],
      };
  });
  return {
    perEmotion,
    weighted: { precision: wavg(p), recall: wavg(r), f1: wavg(f) },
    micro: { precision: mp, recall: mr, f1: (2 * mp * mr) / (mp + mr + EPS) },
  };
}

function pairsScore(preds: Map<number | string, EcacConversation>, gold: Map<number | string, EcacConversation>): EcacScores {
  const conf = ECAC_EMOTIONS.map(() => new Array<number>(7).fill(0));
  for (const [pc, gc] of matched(preds, gold)) {
    const read = (conv: EcacConversation, name: string) => {
      const out = new Map<string, number>(); // de-duplicated [emo_utt, cause_utt, emotion]
      pairsOf(conv, name).forEach(([a, b], i) => {
        const where = `${name} conversation ${gc.conversation_ID} pair ${i}`;
        const [utt, e] = emotionUtt(a, where);
        if (typeof b === 'string' && !INT.test(b)) invalid('a cause utterance number', where, b);
        const cause = typeof b === 'number' ? b : parseInt(b, 10);
        if (!Number.isInteger(cause)) invalid('a cause utterance number', where, b);
        out.set(`${utt},${cause},${e}`, e);
      });
      return out;
    };
    const g = read(gc, 'targets');
    const p = read(pc, 'preds');
    for (const [k, e] of p) {
      if (g.has(k)) conf[e][e]++;
      else conf[0][e]++;
    }
    for (const [k, e] of g) if (!p.has(k)) conf[e][0]++;
  }
  return fromConfusion(conf);
}

/**
 * SemEval-2024 Task 3 subtask 2 (utterance-level emotion-cause pair extraction) scores, as the
 * official scorer: a pair counts when emotion utterance, cause utterance and emotion all match
 * (pairs de-duplicated per conversation). Per emotion P = TP/(TP+FP+1e-8), R = TP/(TP+FN+1e-8),
 * F1 = 2PR/(P+R+1e-8); `weighted` averages the six emotions by their gold-pair counts (the
 * ranking metric is `weighted.f1`); `micro` pools the six emotions' counts. Neutral pairs are
 * ignored. Predicted conversations without a gold one are ignored, as the scorer does.
 * @param preds predicted conversations (`conversation_ID`, `emotion-cause_pairs`)
 * @param targets gold conversations
 * @throws EmotorchError ERR_INVALID_ARG when a gold conversation has no prediction, an id repeats,
 *   a pair is malformed or names an unknown emotion, or there are no gold conversations
 * @example
 * const s = et.metrics.ecacPairs(
 *   [{ conversation_ID: 1, 'emotion-cause_pairs': [['3_joy', '2']] }],
 *   [{ conversation_ID: 1, 'emotion-cause_pairs': [['3_joy', '2'], ['3_joy', '3']] }]);
 * s.weighted.f1;  // ≈ 0.6667
 */
export function ecacPairs(preds: readonly EcacConversation[], targets: readonly EcacConversation[]): EcacScores {
  return pairsScore(byId(preds, 'preds'), byId(targets, 'targets'));
}

/** The scorer's `clean_span`: strip whitespace and ASCII punctuation at both ends, repeatedly. */
function cleanSpan(span: string, where: string): string {
  const punct = '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~';
  let s = span;
  for (;;) {
    s = pyStrip(s);
    if (s.length === 0) throw new EmotorchError(`The cause span of ${where} is empty after removing punctuation`, 'ERR_FORMAT');
    const a = punct.includes(s[0]);
    const b = punct.includes(s[s.length - 1]);
    if (!a && !b) return s;
    if (a) s = s.slice(1);
    if (b && s.length) s = s.slice(0, -1);
  }
}

/** The scorer's `get_span_position`: first whitespace-token match, [begin, end), or [0, 0]. */
function spanPosition(span: string, utterance: string): [number, number] {
  const c = pySplit(span);
  const u = pySplit(utterance);
  for (let i = 0; i + c.length <= u.length; i++) {
    let ok = true;
    for (let j = 0; j < c.length && ok; j++) ok = u[i + j] === c[j];
    if (ok) return [i, i + c.length];
  }
  return [0, 0];
}

type Span = [number, number, number]; // start, end, emotion

function spanPairs(conv: EcacConversation, gold: EcacConversation, name: string, isPred: boolean): Map<string, Span[]> {
  const out = new Map<string, Span[]>(); // 'emoUtt,causeUtt' -> de-duplicated spans
  const utts = gold.conversation;
  if (!isPred && !Array.isArray(utts))
    invalid('a conversation list with utterance texts (needed to locate gold spans)', `targets conversation ${gold.conversation_ID}`, utts);
  pairsOf(conv, name).forEach(([a, b], i) => {
    const where = `${name} conversation ${gold.conversation_ID} pair ${i}`;
    const [utt, e] = emotionUtt(a, where);
    if (typeof b !== 'string') return invalid('"<cause>_<start>_<end>" or "<cause>_<span text>"', where, b);
    let cause: number;
    let span: [number, number];
    if (isPred) {
      if (/\p{L}/u.test(b)) invalid('cause span positions "<cause>_<start>_<end>", not the span text', where, b);
      const parts = b.split('_');
      if (parts.length !== 3 || !parts.every((x) => INT.test(x))) invalid('"<cause>_<start>_<end>"', where, b);
      const [c, s, t] = parts.map((x) => parseInt(x, 10));
      cause = c;
      span = [s, t];
    } else {
      const k = b.indexOf('_');
      if (k < 0 || !INT.test(b.slice(0, k))) invalid('"<cause>_<span text>"', where, b);
      cause = parseInt(b.slice(0, k), 10);
      const text = utts![cause - 1]?.text;
      if (cause < 1 || typeof text !== 'string') invalid(`a cause utterance in 1..${utts!.length} with a text`, where, b);
      span = spanPosition(cleanSpan(b.slice(k + 1), where), text);
    }
    const key = `${utt},${cause}`;
    const list = out.get(key) ?? [];
    if (!list.some((x) => x[0] === span[0] && x[1] === span[1] && x[2] === e)) list.push([span[0], span[1], e]);
    out.set(key, list);
  });
  return out;
}

/** The scorer's `get_match_scores`: the overlapping gold span of the same emotion with the highest overlap/len(gold), ties to the longer overlap. */
function bestMatch(p: Span, golds: Span[]): { id: number; goldLen: number; len: number } {
  let id = 0;
  let goldLen = 0;
  let len = 0;
  let score = 0;
  golds.forEach(([ts, te, emo], i) => {
    if (p[2] === emo && !(p[1] <= ts || p[0] >= te)) {
      const l = Math.min(p[1], te) - Math.max(p[0], ts);
      const gl = te - ts;
      const s = l / gl;
      if (s > score) {
        id = i;
        goldLen = gl;
        len = l;
        score = s;
      }
      if (s === score && s > 0 && l > len) {
        id = i;
        goldLen = gl;
        len = l;
        score = s;
      }
    }
  });
  return { id, goldLen, len };
}

function spansScore(preds: Map<number | string, EcacConversation>, gold: Map<number | string, EcacConversation>): EcacSpanScores {
  const conf = ECAC_EMOTIONS.map(() => new Array<number>(7).fill(0));
  // proportional: per emotion [correct tokens, gold tokens, predicted tokens, gold spans]
  const prop = ECAC_EMOTIONS.map(() => [0, 0, 0, 0]);
  for (const [pc, gc] of matched(preds, gold)) {
    const g = spanPairs(gc, gc, 'targets', false);
    const p = spanPairs(pc, gc, 'preds', true);
    // strict
    const left = new Map([...g].map(([k, v]) => [k, v.slice()]));
    for (const [k, spans] of p) {
      for (const s of spans) {
        const l = left.get(k);
        const j = l ? l.findIndex((x) => x[0] === s[0] && x[1] === s[1] && x[2] === s[2]) : -1;
        if (j >= 0) {
          l!.splice(j, 1);
          conf[s[2]][s[2]]++;
        } else conf[0][s[2]]++;
      }
    }
    for (const spans of left.values()) for (const s of spans) conf[s[2]][0]++;
    // proportional
    const unmatched = new Map([...g].map(([k, v]) => [k, v.slice()]));
    for (const [k, spans] of p) {
      for (const s of spans) {
        prop[s[2]][2] += s[1] - s[0];
        const golds = g.get(k);
        if (!golds) continue;
        const m = bestMatch(s, golds);
        if (m.len > 0) {
          prop[s[2]][0] += m.len;
          prop[s[2]][1] += m.goldLen;
          const u = unmatched.get(k)!;
          const t = golds[m.id];
          const j = u.findIndex((x) => x[0] === t[0] && x[1] === t[1] && x[2] === t[2]);
          if (j >= 0) u.splice(j, 1);
        }
      }
    }
    for (const spans of unmatched.values()) for (const s of spans) prop[s[2]][1] += s[1] - s[0];
    for (const spans of g.values()) for (const s of spans) prop[s[2]][3]++;
  }
  const correct = prop.map((r) => r[0]);
  const goldTok = prop.map((r) => r[1]);
  const predTok = prop.map((r) => r[2]);
  const p = correct.map((c, i) => c / (predTok[i] + EPS));
  const r = correct.map((c, i) => c / (goldTok[i] + EPS));
  const f = p.map((pi, i) => (2 * pi * r[i]) / (pi + r[i] + EPS));
  return {
    strict: fromConfusion(conf),
    proportional: summarize(
      p,
      r,
      f,
      prop.map((x) => x[3]),
      correct,
      predTok,
      goldTok,
    ),
  };
}

/**
 * SemEval-2024 Task 3 subtask 1 (textual cause span) scores, strict and proportional, as the
 * official scorer. Gold spans are text (`"1_<span>"`) located in the cause utterance's `text`
 * by the scorer's rule (punctuation stripped at the ends, first whitespace-token match, [0, 0]
 * when absent); predicted spans are token positions (`"1_21_27"`, end exclusive).
 * Strict: a predicted span counts only when identical to a gold span of the same pair and emotion.
 * Proportional: each predicted span is matched to the overlapping gold span of the same emotion with
 * the highest overlap/gold length; P = overlap tokens / predicted tokens, R = overlap tokens /
 * gold tokens (matched gold counted once per match, unmatched gold once); weights = gold spans.
 * @param preds predicted conversations
 * @param targets gold conversations, with `conversation[].text`
 * @throws EmotorchError ERR_INVALID_ARG as {@link ecacPairs}, or when a prediction holds span text;
 *   ERR_FORMAT when a gold span is only punctuation
 * @example
 * const { strict, proportional } = et.metrics.ecacSpans(preds, gold);
 * strict.weighted.f1;  // the ranking metric
 */
export function ecacSpans(preds: readonly EcacConversation[], targets: readonly EcacConversation[]): EcacSpanScores {
  return spansScore(byId(preds, 'preds'), byId(targets, 'targets'));
}

abstract class ConversationMetric<R> extends Metric<EcacConversation, EcacConversation, R> {
  protected read(preds: unknown, targets: unknown): [EcacConversation[], EcacConversation[]] {
    const p = byId(preds, 'preds');
    const t = byId(targets, 'targets');
    const seenP = byId(this.preds, 'preds');
    const seenT = byId(this.targets, 'targets');
    for (const id of p.keys()) if (seenP.has(id)) throw new EmotorchError(`Conversation ${id} appears twice in preds`, 'ERR_INVALID_ARG');
    for (const id of t.keys()) if (seenT.has(id)) throw new EmotorchError(`Conversation ${id} appears twice in targets`, 'ERR_INVALID_ARG');
    return [[...p.values()], [...t.values()]];
  }
  update(preds: unknown, targets: unknown): this {
    const [p, t] = this.read(preds, targets);
    for (const x of p) this.preds.push(x); // no spread: a long batch passes V8's argument limit
    for (const x of t) this.targets.push(x);
    return this;
  }
}

/**
 * Streaming {@link ecacPairs}: batches of predicted and gold conversations (a batch's predictions
 * may arrive in any order, or in another batch than their gold).
 * @example
 * const m = new et.metrics.EcacPairs();
 * m.update(predConvs, goldConvs);
 * m.compute().weighted.f1;
 */
export class EcacPairs extends ConversationMetric<EcacScores> {
  protected run(p: EcacConversation[], t: EcacConversation[]): EcacScores {
    return pairsScore(byId(p, 'preds'), byId(t, 'targets'));
  }
}

/** Streaming {@link ecacSpans}. */
export class EcacSpans extends ConversationMetric<EcacSpanScores> {
  protected run(p: EcacConversation[], t: EcacConversation[]): EcacSpanScores {
    return spansScore(byId(p, 'preds'), byId(t, 'targets'));
  }
}

// ---------------------------------------------------------------- the Subtask 2 submission file

/** One predicted emotion-cause pair (Subtask 2). */
export interface EcfPairPrediction {
  conversationId: number;
  /** The utterance that shows the emotion. */
  emotionUtterance: number;
  emotion: Exclude<EcfEmotion, 'neutral'>;
  /** The utterance that causes it. */
  causeUtterance: number;
}

/**
 * The official Subtask 2 submission (NUSTM/SemEval-2024_ECAC `Subtask_2_pred.json`): each
 * conversation of `items` (utterance_ID, text, speaker, video_name) with its predicted
 * `"emotion-cause_pairs": [["3_surprise", "1"], …]`. The records are what `et.metrics.ecacPairs`
 * scores.
 * @throws EmotorchError ERR_INVALID_ARG for a pair naming an unknown conversation, utterance or emotion.
 */
export function ecfSubmission(items: EcfItem[], pairs: EcfPairPrediction[]): EcacConversation[] {
  if (!Array.isArray(items) || !Array.isArray(pairs)) invalid('arrays of ECF items and pair predictions', 'ecfSubmission', [items, pairs]);
  const convs = groupEcfConversations(items);
  const out = new Map(
    convs.map((c) => [
      c[0].conversationId,
      {
        conversation_ID: c[0].conversationId,
        conversation: c.map((u) => ({
          utterance_ID: u.utteranceId,
          text: u.text,
          speaker: u.speaker,
          ...(u.videoName !== undefined ? { video_name: u.videoName } : {}),
        })),
        'emotion-cause_pairs': [] as [string, string][],
      },
    ]),
  );
  pairs.forEach((p, i) => {
    const conv = out.get(p?.conversationId);
    if (!conv) invalid('a conversation of the items', `pairs[${i}].conversationId`, p?.conversationId);
    const has = (u: number) => conv.conversation.some((x) => x.utterance_ID === u);
    if (!has(p.emotionUtterance)) invalid(`an utterance of conversation ${p.conversationId}`, `pairs[${i}].emotionUtterance`, p.emotionUtterance);
    if (!has(p.causeUtterance)) invalid(`an utterance of conversation ${p.conversationId}`, `pairs[${i}].causeUtterance`, p.causeUtterance);
    if (!(ECF_EMOTIONS as readonly string[]).includes(p.emotion) || (p.emotion as string) === 'neutral')
      invalid('a non-neutral ECF emotion', `pairs[${i}].emotion`, p.emotion);
    const pair: [string, string] = [`${p.emotionUtterance}_${p.emotion}`, `${p.causeUtterance}`];
    if (!conv['emotion-cause_pairs'].some((q) => q[0] === pair[0] && q[1] === pair[1])) conv['emotion-cause_pairs'].push(pair);
  });
  return [...out.values()];
}

/**
 * Writes {@link ecfSubmission} as JSON (the file CodaLab takes).
 * @throws EmotorchError ERR_IO when the file cannot be written.
 */
export function writeEcfSubmission(file: string, items: EcfItem[], pairs: EcfPairPrediction[]): void {
  if (typeof file !== 'string') invalid('a file path', 'file', file);
  const records = ecfSubmission(items, pairs);
  try {
    fs.writeFileSync(file, JSON.stringify(records, null, 4));
  } catch (e) {
    throw new EmotorchError(`cannot write '${file}': ${(e as Error).message}`, 'ERR_IO');
  }
}
