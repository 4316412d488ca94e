/** The ECF recipe's cause rule: a baseline for Subtask 2 over an emotion classifier's output. */
import { invalid } from '../../errors';
import { ECF_EMOTIONS } from '../../data/datasets/ecf';
import type { EcfItem } from '../../data/datasets/ecf';
import type { EcfPairPrediction } from '../../metrics/ecac';

/**
 * A baseline cause rule for an emotion classifier's output: every utterance predicted with a
 * non-neutral emotion is paired with itself (the most frequent cause in ECF 2.0).
 * @param labels predicted class per item (indices into ECF_EMOTIONS)
 */
export function selfCausePairs(items: EcfItem[], labels: ArrayLike<number>): EcfPairPrediction[] {
  if (!Array.isArray(items) || labels.length !== items.length) invalid(`${items?.length} labels`, 'labels', labels);
  const out: EcfPairPrediction[] = [];
  items.forEach((it, i) => {
    const e = ECF_EMOTIONS[labels[i]];
    if (e === undefined) invalid('class indices 0..6', `labels[${i}]`, labels[i]);
    if (e !== 'neutral') out.push({ conversationId: it.conversationId, emotionUtterance: it.utteranceId, emotion: e, causeUtterance: it.utteranceId });
  });
  return out;
}
