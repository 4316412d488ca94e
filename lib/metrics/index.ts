/**
 * et.metrics: the field's metric suites, each a one-shot function and a streaming class
 * (`update(preds, targets)`, `compute()`, `reset()`), over plain arrays or Tensors.
 * Every suite is checked against its reference (scikit-learn, scipy, MMSA metricsTop.py, the
 * SemEval-2024 ECAC scorer, M2SE compute_result, rouge-score, sacrebleu): see docs/metrics.md.
 *
 * @module
 */
export { Metric, pyRound, pyFixed } from './common';
export type { Label, PredLabel, LabelInput, NumberInput } from './common';
export * from './classification';
export * from './regression';
export * from './mmsa';
export * from './ecac';
export * from './m2se';
export * from './text';
