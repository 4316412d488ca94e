/** The `et.train` namespace: the Trainer, its arguments, callbacks and writers.
 * @module
 */
export { Trainer } from './trainer';
export { listCheckpoints } from './checkpoints';
export type { TrainerOptions, TrainOutput, PredictionOutput, EvalPrediction, Batch } from './trainer';
export { TrainingArguments } from './args';
export { readDeepSpeedConfig } from './deepspeed';
export type { DeepSpeedPlan } from './deepspeed';
export type { TrainingArgumentsInit, ResolvedTrainingArguments, IntervalStrategy, SaveStrategy } from './args';
export { EarlyStoppingCallback } from './callbacks';
export type { TrainerCallback, CallbackContext, TrainerControl, TrainerState, LogRecord, EarlyStoppingOptions } from './callbacks';
export { TensorBoardWriter } from './tensorboard';
export { writePlots } from './plots';
