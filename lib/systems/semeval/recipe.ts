/**
 * The SemEval classifiers' recipes: the ECF recipe's cause rule (a baseline for Subtask 2 over an
 * emotion classifier's output), and the team's LanguageBind recipe (julia-bel/semeval_multimodal_task_3,
 * `languagebind_classification_video_audio_text.py`): their TrainingArguments and the scores they
 * watched per epoch.
 */
import { invalid } from '../../errors';
import { Tensor } from '../../tensor';
import { f1 } from '../../metrics/classification';
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

/**
 * The team's `TrainingArguments` (Experiment 2), HF names; the learning rate is HF's default
 * 5e-5. `bf16` runs under autocast on CPU and CUDA. `optim: 'adamw_hf'` is the default of the
 * transformers they pinned (4.30.2): transformers' own AdamW class (`et.optim.AdamWHF`), not torch's.
 * Add `output_dir`.
 */
export const LANGUAGEBIND_SEMEVAL_ARGS = Object.freeze({
  evaluation_strategy: 'epoch',
  num_train_epochs: 10,
  save_strategy: 'epoch',
  save_total_limit: 1,
  logging_steps: 5,
  per_device_train_batch_size: 4,
  per_device_eval_batch_size: 4,
  gradient_accumulation_steps: 16,
  bf16: true,
  remove_unused_columns: false,
  optim: 'adamw_hf',
} as const);

/** The scores of {@link languageBindMetrics}, named as the Trainer logs them (`eval_macro_f1`, …). */
export interface LanguageBindScores {
  macro_f1: number;
  weighted_f1: number;
}

/**
 * `computeMetrics` for the Trainer: the team's macro F1 (`f1_score(labels, predictions, average="macro")`)
 * and the weighted F1 of their reported figures, over the items with a label (≠ -100).
 * @example
 * new et.train.Trainer({ model, args, computeMetrics: et.systems.semeval.languageBindMetrics, … });
 */
export function languageBindMetrics({ predictions, labelIds }: { predictions: Tensor; labelIds: Tensor }): LanguageBindScores {
  const keep = labelIds.ne(-100);
  const pred = predictions.argmax(-1).index(keep),
    gold = labelIds.index(keep);
  return { macro_f1: f1(pred, gold, { average: 'macro' }) as number, weighted_f1: f1(pred, gold, { average: 'weighted' }) as number };
}
