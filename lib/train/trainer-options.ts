/**
 * The Trainer's options: what `new et.train.Trainer` takes (HF Trainer's arguments, camelCase),
 * the one check of them all (every bad or contradictory option an ERR_INVALID_ARG naming it), and
 * the defaults that need the model (the optimizer).
 */
import type { Tensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { Module } from '../nn/module';
import type { Dataset } from '../data/datasets/base';
import { AdamW, AdamWHF, FusedAdam, Optimizer, decayGroups } from './optim';
import type { Schedule } from './schedules';
import { TrainingArguments, TrainingArgumentsInit } from './args';
import type { TrainerCallback } from './callbacks';

/** What `computeMetrics` receives (HF's EvalPrediction): CPU tensors concatenated over the set. */
export interface EvalPrediction {
  /** The model's `logits` (or its first non-loss tensor output), padded with -100 along dim 1 where lengths differ. */
  predictions: Tensor;
  /** The batches' labels, likewise; null when the batches hold none. */
  labelIds: Tensor | null;
}

/** A collated batch: named inputs for a model's forward. */
export type Batch = Record<string, unknown>;

/** Options of `new et.train.Trainer` (HF Trainer's arguments, camelCase). */
export interface TrainerOptions<T = unknown> {
  /** Any Module whose forward(batch) returns `{ loss, … }` when the batch holds labels. */
  model: Module;
  /** HF TrainingArguments fields (or a TrainingArguments). */
  args?: TrainingArgumentsInit | TrainingArguments;
  trainDataset?: Dataset<T>;
  evalDataset?: Dataset<T>;
  /** Turns a list of items into a batch object of named inputs (HF data_collator). Default: the list itself. */
  dataCollator?: (items: T[]) => Batch | Promise<Batch>;
  /**
   * Replaces `model.forward(batch).loss`. `numItemsInBatch` is given for token labels; the loss
   * returned must then be normalized by it (sum / numItemsInBatch), as HF's compute_loss_func.
   */
  computeLoss?: (model: Module, batch: Batch, ctx: { numItemsInBatch?: number }) => Promise<Tensor | { loss: Tensor }>;
  /**
   * Training metrics of each micro-batch from the forward's outputs (e.g. ms-swift's `acc`, see
   * `et.train.tokenAccuracy`, or a loss's components), logged next to the loss the way the loss is:
   * each value divided as the micro-batch's loss is (by the micro-batches of its window, or by
   * gradient_accumulation_steps with `accumulation.divisor`) and summed over the window, the sums
   * divided by the optimizer steps since the last log and, data-parallel, averaged over the ranks
   * (as the loss; ms-swift gathers them too). Components of a loss thus add up to the logged loss,
   * in a short last window of an epoch too.
   */
  trainMetrics?: (outputs: Record<string, unknown>, batch: Batch) => Record<string, number>;
  /**
   * Names of the classes, by index, for the confusion matrix and report an evaluation of a
   * classification task writes (default: the indices).
   */
  classNames?: string[];
  /** Metrics from an evaluation's predictions (plain numbers; keys get the `eval_` prefix). */
  computeMetrics?: (p: EvalPrediction) => Record<string, number> | Promise<Record<string, number>>;
  callbacks?: TrainerCallback[];
  /**
   * Default: over `decayGroups(model, weight_decay)` with the args' betas and epsilon, AdamW
   * (`optim` 'adamw_torch' / 'adamw_torch_fused'), transformers 4.x's AdamW ('adamw_hf',
   * {@link AdamWHF}) or apex's FusedAdam ('adamw_apex_fused', {@link FusedAdam}).
   */
  optimizer?: Optimizer;
  /**
   * Gradient accumulation as a recipe's own loop ran it, where it departs from HF's (≥ 4.46):
   * `clip: 'micro-batch'` clips (args.max_grad_norm) the gradient accumulated so far after every
   * backward, where HF clips once before the optimizer step (`'step'`, the default); under DDP
   * every backward then synchronizes, as a DDP model without `no_sync`. `divisor:
   * 'gradient_accumulation_steps'` divides every micro-batch's loss by
   * args.gradient_accumulation_steps, also in a short last window of an epoch, where HF divides by
   * the micro-batches the window holds (`'window'`, the default; token-label losses are divided by
   * the window's label tokens either way). SPECTRA's main.py does both. The logged loss and
   * trainMetrics are what was trained on either way.
   */
  accumulation?: { clip?: 'step' | 'micro-batch'; divisor?: 'window' | 'gradient_accumulation_steps' };
  /**
   * The learning rate at each optimizer step (0-based), replacing `args.lr_scheduler_type`'s
   * schedule (and `learning_rate`, `warmup_*`): e.g. `et.systems.salmonn.salmonnSchedule`. Checkpoints
   * keep the step, so a resumed run continues on it.
   */
  schedule?: Schedule;
  /** Stops training after the current optimizer step, saving a checkpoint first. */
  signal?: AbortSignal;
  /** Ctrl-C stops like the signal (a second Ctrl-C restores Node's default). Default false. */
  handleSigint?: boolean;
  /** Options for `model.generate` when args.predict_with_generate (its `newTokens` become the predictions). */
  generateOptions?: Record<string, unknown>;
}

const KNOWN_OPTIONS = [
  'model',
  'args',
  'trainDataset',
  'evalDataset',
  'dataCollator',
  'computeLoss',
  'trainMetrics',
  'classNames',
  'computeMetrics',
  'callbacks',
  'optimizer',
  'accumulation',
  'schedule',
  'signal',
  'handleSigint',
  'generateOptions',
];

/**
 * Checks every option and the arguments they must agree with; writes nothing.
 * @returns the TrainingArguments (`opts.args` itself, or built from its fields)
 * @throws EmotorchError ERR_INVALID_ARG naming the field for bad or contradictory arguments.
 */
export function checkTrainerOptions<T>(opts: TrainerOptions<T>): TrainingArguments {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'Trainer options', opts);
  for (const k of Object.keys(opts)) if (!KNOWN_OPTIONS.includes(k)) invalid(`one of ${KNOWN_OPTIONS.join(', ')}`, 'Trainer option', k);
  if (!(opts.model instanceof Module)) invalid('an et.nn.Module', 'model', opts.model);
  const args = opts.args instanceof TrainingArguments ? opts.args : new TrainingArguments(opts.args ?? {});
  const isDataset = (d: unknown) => !!d && typeof (d as Dataset<T>).get === 'function' && Number.isInteger((d as Dataset<T>).length);
  if (opts.trainDataset !== undefined && !isDataset(opts.trainDataset)) invalid('a dataset with length and get(i)', 'trainDataset', opts.trainDataset);
  if (opts.evalDataset !== undefined && !isDataset(opts.evalDataset)) invalid('a dataset with length and get(i)', 'evalDataset', opts.evalDataset);
  for (const k of ['dataCollator', 'computeLoss', 'trainMetrics', 'computeMetrics', 'schedule'] as const)
    if (opts[k] !== undefined && typeof opts[k] !== 'function') invalid('a function', k, opts[k]);
  if (opts.callbacks !== undefined && (!Array.isArray(opts.callbacks) || opts.callbacks.some((c) => !c || typeof c !== 'object')))
    invalid('an array of callback objects', 'callbacks', opts.callbacks);
  if (opts.optimizer !== undefined && !(opts.optimizer instanceof Optimizer)) invalid('an et.optim optimizer', 'optimizer', opts.optimizer);
  if (opts.accumulation !== undefined) {
    const acc = opts.accumulation;
    if (acc === null || typeof acc !== 'object' || Array.isArray(acc)) invalid('{ clip?, divisor? }', 'accumulation', acc);
    for (const k of Object.keys(acc)) if (k !== 'clip' && k !== 'divisor') invalid('clip or divisor', 'an option of accumulation', k);
    if (acc.clip !== undefined && acc.clip !== 'step' && acc.clip !== 'micro-batch') invalid("'step' or 'micro-batch'", 'accumulation.clip', acc.clip);
    if (acc.divisor !== undefined && acc.divisor !== 'window' && acc.divisor !== 'gradient_accumulation_steps')
      invalid("'window' or 'gradient_accumulation_steps'", 'accumulation.divisor', acc.divisor);
  }
  if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) invalid('an AbortSignal', 'signal', opts.signal);
  if (opts.handleSigint !== undefined && typeof opts.handleSigint !== 'boolean') invalid('a boolean', 'handleSigint', opts.handleSigint);
  if (args.eval_strategy !== 'no' && !opts.evalDataset)
    throw new EmotorchError(`args.eval_strategy is '${args.eval_strategy}' but no evalDataset was given`, 'ERR_INVALID_ARG');
  if (args.predict_with_generate && typeof (opts.model as unknown as { generate?: unknown }).generate !== 'function') {
    throw new EmotorchError('args.predict_with_generate needs a model with generate()', 'ERR_INVALID_ARG');
  }
  if (args.metric_for_best_model && args.metric_for_best_model.replace(/^eval_/, '') !== 'loss' && !opts.computeMetrics) {
    throw new EmotorchError(`args.metric_for_best_model is '${args.metric_for_best_model}' but no computeMetrics was given to compute it`, 'ERR_INVALID_ARG');
  }
  const names = new Set<string>();
  for (const c of opts.callbacks ?? []) {
    const n = c.name ?? c.constructor?.name;
    if (n && c.stateDict && names.has(n)) invalid('callbacks with distinct names', 'callbacks', n);
    if (n) names.add(n);
  }
  return args;
}

/** A user's schedule whose rates are checked as they are asked for (a NaN or negative rate names the step). */
export function checkedSchedule(f: Schedule): Schedule {
  return (step: number) => {
    const lr = f(step);
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) invalid('a finite non-negative learning rate', `schedule(${step})`, lr);
    return lr;
  };
}

/**
 * The optimizer when none is given: over `decayGroups(model, weight_decay)` with the args' betas
 * and epsilon, the one `args.optim` names.
 */
export function defaultOptimizer(model: Module, a: TrainingArguments): Optimizer {
  const opts = { lr: a.learning_rate, betas: [a.adam_beta1, a.adam_beta2] as [number, number], eps: a.adam_epsilon, weightDecay: a.weight_decay };
  const groups = decayGroups(model, a.weight_decay);
  // HF ≤ 4.3x's default 'adamw_hf': transformers' own AdamW class; 'adamw_apex_fused': apex's
  // FusedAdam as HF 4.x builds it (its defaults: bias correction, AdamW mode); both from the same arguments
  if (a.optim === 'adamw_hf') return new AdamWHF(groups, opts);
  if (a.optim === 'adamw_apex_fused') return new FusedAdam(groups, opts);
  return new AdamW(groups, opts);
}
