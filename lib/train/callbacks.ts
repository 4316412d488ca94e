/**
 * Trainer callbacks: objects with optional hooks the Trainer calls at fixed points of training,
 * and EarlyStoppingCallback. A callback may steer training through `ctx.control`.
 */
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid } from '../errors';
import type { ResolvedTrainingArguments } from './args';

/** A log or evaluation record, as HF's `log_history` entries. */
export type LogRecord = Record<string, number>;

/** What HF keeps in `trainer_state.json` (same field names). */
export interface TrainerState {
  global_step: number;
  /** Fractional epoch (epoch + fraction of its batches done). */
  epoch: number;
  max_steps: number;
  num_train_epochs: number;
  logging_steps: number;
  eval_steps: number | null;
  save_steps: number;
  train_batch_size: number;
  log_history: LogRecord[];
  best_metric: number | null;
  best_global_step: number | null;
  best_model_checkpoint: string | null;
  total_flos: number;
  is_local_process_zero: boolean;
  is_world_process_zero: boolean;
  /** Callbacks' own state ({@link TrainerCallback.stateDict}), by callback name. */
  stateful_callbacks: Record<string, unknown>;
}

/** Flags a callback sets to steer the loop (reset after they are acted on). */
export interface TrainerControl {
  shouldTrainingStop: boolean;
  shouldEpochStop: boolean;
  shouldSave: boolean;
  shouldEvaluate: boolean;
  shouldLog: boolean;
}

/** What every hook receives. */
export interface CallbackContext {
  args: ResolvedTrainingArguments;
  state: TrainerState;
  control: TrainerControl;
}

/**
 * The callback interface: implement any subset of the hooks (they may be async; the Trainer
 * awaits them in order). `name` keys the callback's state in checkpoints.
 * @example
 * const printer: et.train.TrainerCallback = {
 *   name: 'printer',
 *   onLog(ctx, logs) { console.log(ctx.state.global_step, logs); },
 *   onStepEnd(ctx) { if (ctx.state.global_step === 100) ctx.control.shouldSave = true; },
 * };
 */
export interface TrainerCallback {
  name?: string;
  /** When train() starts, after resuming. */
  onTrainBegin?(ctx: CallbackContext): void | Promise<void>;
  /** When train() ends. */
  onTrainEnd?(ctx: CallbackContext): void | Promise<void>;
  /** At the start of an epoch. */
  onEpochBegin?(ctx: CallbackContext): void | Promise<void>;
  /** At the end of an epoch. */
  onEpochEnd?(ctx: CallbackContext): void | Promise<void>;
  /** Before each optimizer step's forward and backward passes (its micro-batches already drawn). */
  onStepBegin?(ctx: CallbackContext): void | Promise<void>;
  /** After the optimizer step, before logging, evaluation and saving of that step. */
  onStepEnd?(ctx: CallbackContext): void | Promise<void>;
  /** When the Trainer logs, with the record. */
  onLog?(ctx: CallbackContext, logs: LogRecord): void | Promise<void>;
  /** After an evaluation, with its metrics (`eval_` prefixed), before the best metric is updated. */
  onEvaluate?(ctx: CallbackContext, metrics: LogRecord): void | Promise<void>;
  /** After a checkpoint folder is complete. */
  onSave?(ctx: CallbackContext, checkpoint: string): void | Promise<void>;
  /** State to keep in checkpoints (JSON), restored by {@link loadStateDict} on resume. */
  stateDict?(): unknown;
  /** Restores what stateDict returned (on resume). */
  loadStateDict?(state: unknown): void;
}

/** Options of {@link EarlyStoppingCallback} (HF's names in camelCase). */
export interface EarlyStoppingOptions {
  /** Evaluations without improvement before stopping. Default 1. */
  patience?: number;
  /** How much better than the best the metric must be to count as an improvement. Default 0. */
  threshold?: number;
}

/**
 * Stops training when `metric_for_best_model` has not improved by more than `threshold` for
 * `patience` evaluations in a row, as HF's EarlyStoppingCallback. Needs an eval strategy and a
 * metric (metric_for_best_model, or load_best_model_at_end which defaults it to 'loss').
 * @example
 * new et.train.Trainer({ model, args, trainDataset, evalDataset, callbacks: [new et.train.EarlyStoppingCallback({ patience: 3 })] });
 */
export class EarlyStoppingCallback implements TrainerCallback {
  readonly name = 'EarlyStoppingCallback';
  readonly patience: number;
  readonly threshold: number;
  /** Evaluations in a row without improvement. */
  patienceCounter = 0;

  /** @throws EmotorchError ERR_INVALID_ARG for a bad option. */
  constructor(opts: EarlyStoppingOptions = {}) {
    if (opts === null || typeof opts !== 'object') invalid('an options object', 'EarlyStoppingCallback options', opts);
    checkOptionNames(opts, ['patience', 'threshold'], 'EarlyStoppingCallback options');
    this.patience = checkInt(opts.patience ?? 1, 'patience', 1);
    this.threshold = checkNumber(opts.threshold ?? 0, 'threshold', 0);
  }

  /** Refuses to run without evaluation and a metric to watch. */
  onTrainBegin(ctx: CallbackContext): void {
    if (ctx.args.eval_strategy === 'no' || !ctx.args.metric_for_best_model) {
      throw new EmotorchError('EarlyStoppingCallback needs args.eval_strategy and args.metric_for_best_model (or load_best_model_at_end)', 'ERR_INVALID_ARG');
    }
  }

  onEvaluate(ctx: CallbackContext, metrics: LogRecord): void {
    const name = ctx.args.metric_for_best_model!;
    const key = name.startsWith('eval_') ? name : `eval_${name}`;
    const value = metrics[key];
    if (typeof value !== 'number')
      throw new EmotorchError(`early stopping: evaluation gave no metric '${key}' (it has ${Object.keys(metrics).join(', ')})`, 'ERR_INVALID_ARG');
    const best = ctx.state.best_metric;
    const better = ctx.args.greater_is_better ? value > (best ?? -Infinity) : value < (best ?? Infinity);
    if (best === null || (better && Math.abs(value - best) > this.threshold)) this.patienceCounter = 0;
    else this.patienceCounter += 1;
    if (this.patienceCounter >= this.patience) ctx.control.shouldTrainingStop = true;
  }

  stateDict(): unknown {
    return { patienceCounter: this.patienceCounter };
  }
  /** Restores the patience counter from a checkpoint. */
  loadStateDict(s: unknown): void {
    const c = (s as { patienceCounter?: unknown })?.patienceCounter;
    this.patienceCounter = checkInt(c, 'EarlyStoppingCallback state.patienceCounter', 0);
  }
}
