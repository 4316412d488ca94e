/**
 * Trainer: the training loop once, with HF TrainingArguments — gradient accumulation normalized
 * by label tokens, AdamW with decay off biases and norms, clipping, HF schedules, bf16/fp16,
 * evaluation and metrics, checkpoints that resume bit for bit, progress, log.jsonl, SVG plots,
 * TensorBoard, callbacks, and a clean stop on an AbortSignal or Ctrl-C. Every piece it uses is
 * public (DataLoader, AdamW, LRScheduler, GradScaler, autocast, getRngState), so a hand-written
 * loop can do the same.
 */
import { EventEmitter } from 'events';
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, autocast, cat, full, noGrad, tensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { Module } from '../nn/module';
import { DataLoader } from '../data/loader';
import type { Dataset } from '../data/datasets/base';
import { manualSeed } from '../runtime';
import { AdamW, AdamWHF, FusedAdam, Optimizer, decayGroups } from './optim';
import { LRScheduler, Schedule, hfSchedule } from './schedules';
import { GradScaler } from './amp';
import { TrainingArguments, TrainingArgumentsInit } from './args';
import { CallbackContext, LogRecord, TrainerCallback, TrainerControl, TrainerState } from './callbacks';
import { Progress } from './progress';
import { writePlots, confusionMatrixSvg } from './plots';
import { classificationReport, confusionMatrix } from '../metrics/classification';
import { TensorBoardWriter } from './tensorboard';
import * as dist from '../distributed/group';
import { DistributedDataParallel } from '../distributed/ddp';
import { DistributedSampler } from '../distributed/sampler';
import { DTYPES, DType, isFloating } from '../dtype';
import { Extra, Position, makeOutputDir, readCheckpoint, removeStaleTemporaries, resolveResume, rotateCheckpoints, writeCheckpoint } from './checkpoints';

/** What `computeMetrics` receives (HF's EvalPrediction): CPU tensors concatenated over the set. */
export interface EvalPrediction {
  /** The model's `logits` (or its first non-loss tensor output), padded with -100 along dim 1 where lengths differ. */
  predictions: Tensor;
  /** The batches' labels, likewise; null when the batches hold none. */
  labelIds: Tensor | null;
}

/** What `predict` resolves to (HF's PredictionOutput). */
export interface PredictionOutput {
  predictions: Tensor;
  labelIds: Tensor | null;
  metrics: LogRecord;
}

/** What `train` resolves to (HF's TrainOutput, plus why it stopped). */
export interface TrainOutput {
  globalStep: number;
  trainingLoss: number;
  metrics: LogRecord;
  /** 'completed', 'aborted' (signal or Ctrl-C: a checkpoint was saved) or 'callback' (e.g. early stopping). */
  stopReason: 'completed' | 'aborted' | 'callback';
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

const KNOWN_OPTIONS = ['model', 'args', 'trainDataset', 'evalDataset', 'dataCollator', 'computeLoss', 'trainMetrics', 'classNames', 'computeMetrics', 'callbacks', 'optimizer', 'accumulation', 'schedule', 'signal', 'handleSigint', 'generateOptions'];

/** Moves every tensor in a batch to `device` (objects and arrays are walked, other values kept). */
/** A user's schedule whose rates are checked as they are asked for (a NaN or negative rate names the step). */
function checkedSchedule(f: Schedule): Schedule {
  return (step: number) => {
    const lr = f(step);
    if (typeof lr !== 'number' || !Number.isFinite(lr) || lr < 0) invalid('a finite non-negative learning rate', `schedule(${step})`, lr);
    return lr;
  };
}

function toDevice(v: unknown, device: string): unknown {
  if (v instanceof Tensor) return v.device === device ? v : v.to({ device: device as never });
  if (Array.isArray(v)) return v.map((x) => toDevice(x, device));
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toDevice(x, device)]));
  }
  return v;
}

/** Concatenates along dim 0, padding dim 1 with -100 when lengths differ (HF's nested concat). */
function concatPadded(ts: Tensor[]): Tensor {
  if (ts.length === 1) return ts[0];
  const ndim = ts[0].ndim;
  if (ndim < 2 || ts.every((t) => t.shape[1] === ts[0].shape[1])) return cat(ts, 0);
  const len = Math.max(...ts.map((t) => t.shape[1]));
  return cat(ts.map((t) => {
    if (t.shape[1] === len) return t;
    const pad = full([t.shape[0], len - t.shape[1], ...t.shape.slice(2)], -100, { dtype: t.dtype });
    return cat([t, pad], 1);
  }), 0);
}

/**
 * Trains and evaluates a model with HF TrainingArguments. Emits 'log' (each log record), 'evaluate'
 * (each evaluation's metrics) and 'save' ({ step, path }).
 *
 * The forward convention: `model.forward(batch)` with the collated batch object; it returns
 * `{ loss, logits, … }` when the batch holds labels. For token labels (an integer `labels` of
 * two or more dimensions) the Trainer counts the label tokens of the whole accumulated step
 * (`labels[:, 1:] != -100` over all its micro-batches) and passes `numItemsInBatch`, so the loss
 * is normalized by tokens, not averaged per micro-batch; other losses are divided by the number
 * of micro-batches.
 * @example
 * const trainer = new et.train.Trainer({
 *   model, trainDataset, evalDataset, dataCollator,
 *   args: { output_dir: 'runs/cls', num_train_epochs: 5, eval_strategy: 'epoch', save_strategy: 'epoch', load_best_model_at_end: true, metric_for_best_model: 'accuracy' },
 *   computeMetrics: ({ predictions, labelIds }) => ({ accuracy: predictions.argmax(-1).eq(labelIds!).float().mean().item() }),
 * });
 * trainer.on('log', (r) => console.log(r));
 * await trainer.train();
 */
export class Trainer<T = unknown> extends EventEmitter {
  readonly model: Module;
  readonly args: TrainingArguments;
  readonly trainDataset?: Dataset<T>;
  readonly evalDataset?: Dataset<T>;
  readonly callbacks: TrainerCallback[];
  /** HF's trainer state (what trainer_state.json holds). */
  state: TrainerState;
  optimizer: Optimizer | null;
  lrScheduler: LRScheduler | null = null;
  scaler: GradScaler | null = null;
  private readonly opts: TrainerOptions<T>;
  private readonly control: TrainerControl = { shouldTrainingStop: false, shouldEpochStop: false, shouldSave: false, shouldEvaluate: false, shouldLog: false };
  /** The learning rate the last optimizer step used (what HF logs as learning_rate). */
  private stepLr = 0;
  private extra: Extra = { data: { epoch: 0, batches: 0 }, logSum: 0, logCount: 0, gradNorm: null, trainLossSum: 0 };
  private tb: TensorBoardWriter | null = null;
  private logFile: fs.promises.FileHandle | null = null;
  /** log.jsonl lines are written in order behind the training loop; the first failure is kept and thrown. */
  private logWrites: Promise<void> = Promise.resolve();
  private logWriteError: unknown = null;
  private progress: Progress | null = null;
  private abortRequested = false;
  private running = false;
  private lastSavedStep = -1;
  /** The DDP wrapper training runs through when a process group is initialized. */
  private ddp: DistributedDataParallel | null = null;
  /** Distributed: a stop was requested on some rank (agreed on by all in the last step). */
  private stopAgreed = false;

  /**
   * Checks every argument and option; writes nothing.
   * @throws EmotorchError ERR_INVALID_ARG naming the field for bad or contradictory arguments.
   */
  constructor(opts: TrainerOptions<T>) {
    super();
    if (!opts || typeof opts !== 'object') invalid('an options object', 'Trainer options', opts);
    for (const k of Object.keys(opts)) if (!KNOWN_OPTIONS.includes(k)) invalid(`one of ${KNOWN_OPTIONS.join(', ')}`, 'Trainer option', k);
    if (!(opts.model instanceof Module)) invalid('an et.nn.Module', 'model', opts.model);
    const args = opts.args instanceof TrainingArguments ? opts.args : new TrainingArguments(opts.args ?? {});
    const isDataset = (d: unknown) => !!d && typeof (d as Dataset<T>).get === 'function' && Number.isInteger((d as Dataset<T>).length);
    if (opts.trainDataset !== undefined && !isDataset(opts.trainDataset)) invalid('a dataset with length and get(i)', 'trainDataset', opts.trainDataset);
    if (opts.evalDataset !== undefined && !isDataset(opts.evalDataset)) invalid('a dataset with length and get(i)', 'evalDataset', opts.evalDataset);
    for (const k of ['dataCollator', 'computeLoss', 'trainMetrics', 'computeMetrics', 'schedule'] as const) if (opts[k] !== undefined && typeof opts[k] !== 'function') invalid('a function', k, opts[k]);
    if (opts.callbacks !== undefined && (!Array.isArray(opts.callbacks) || opts.callbacks.some((c) => !c || typeof c !== 'object'))) invalid('an array of callback objects', 'callbacks', opts.callbacks);
    if (opts.optimizer !== undefined && !(opts.optimizer instanceof Optimizer)) invalid('an et.optim optimizer', 'optimizer', opts.optimizer);
    if (opts.accumulation !== undefined) {
      const acc = opts.accumulation;
      if (acc === null || typeof acc !== 'object' || Array.isArray(acc)) invalid("{ clip?, divisor? }", 'accumulation', acc);
      for (const k of Object.keys(acc)) if (k !== 'clip' && k !== 'divisor') invalid('clip or divisor', 'an option of accumulation', k);
      if (acc.clip !== undefined && acc.clip !== 'step' && acc.clip !== 'micro-batch') invalid("'step' or 'micro-batch'", 'accumulation.clip', acc.clip);
      if (acc.divisor !== undefined && acc.divisor !== 'window' && acc.divisor !== 'gradient_accumulation_steps') invalid("'window' or 'gradient_accumulation_steps'", 'accumulation.divisor', acc.divisor);
    }
    if (opts.signal !== undefined && !(opts.signal instanceof AbortSignal)) invalid('an AbortSignal', 'signal', opts.signal);
    if (opts.handleSigint !== undefined && typeof opts.handleSigint !== 'boolean') invalid('a boolean', 'handleSigint', opts.handleSigint);
    if (args.eval_strategy !== 'no' && !opts.evalDataset) throw new EmotorchError(`args.eval_strategy is '${args.eval_strategy}' but no evalDataset was given`, 'ERR_INVALID_ARG');
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
    this.opts = opts;
    this.model = opts.model;
    this.args = args;
    this.trainDataset = opts.trainDataset;
    this.evalDataset = opts.evalDataset;
    this.callbacks = [...(opts.callbacks ?? [])];
    this.optimizer = opts.optimizer ?? null;
    this.state = this.freshState(0);
  }

  private freshState(maxSteps: number): TrainerState {
    const a = this.args;
    return {
      global_step: 0, epoch: 0, max_steps: maxSteps, num_train_epochs: 0,
      logging_steps: a.logging_steps, eval_steps: a.eval_steps, save_steps: a.save_steps,
      train_batch_size: a.per_device_train_batch_size, log_history: [], best_metric: null, best_global_step: null,
      best_model_checkpoint: null, total_flos: 0, is_local_process_zero: !this.distributed || dist.localRank() === 0, is_world_process_zero: this.isMain, stateful_callbacks: {},
    };
  }

  private ctx(): CallbackContext { return { args: this.args, state: this.state, control: this.control }; }

  /** Data-parallel: a process group is initialized (et.distributed.init()). */
  private get distributed(): boolean { return dist.isInitialized(); }
  private get world(): number { return this.distributed ? dist.worldSize() : 1; }
  /** Rank 0 (or not distributed): the one that logs, saves and plots. */
  private get isMain(): boolean { return !this.distributed || dist.rank() === 0; }
  /** The model without a DDP wrapper: what checkpoints save and load (plain parameter names). */
  private get core(): Module { return this.model instanceof DistributedDataParallel ? this.model.module : this.model; }
  /** What training forwards run through: the DDP wrapper when distributed. */
  private get trainModel(): Module { return this.ddp ?? this.model; }
  private async fire<K extends keyof TrainerCallback>(hook: K, ...rest: unknown[]): Promise<void> {
    for (const c of this.callbacks) {
      const f = c[hook] as ((...a: unknown[]) => unknown) | undefined;
      if (typeof f === 'function') await f.call(c, this.ctx(), ...rest);
    }
  }

  /** The model's device, read once per train()/evaluate()/predict() (parameters() wraps every parameter anew). */
  private get device(): string {
    if (this.args.use_cpu) return 'cpu';
    this.deviceOfRun ??= this.model.parameters()[0]?.device ?? 'cpu';
    return this.deviceOfRun;
  }
  private deviceOfRun: string | null = null;
  private amp<R>(fn: () => R): R {
    if (!this.args.bf16 && !this.args.fp16) return fn();
    const dev = this.device.startsWith('cuda') ? 'cuda' : 'cpu';
    return autocast({ device: dev, dtype: this.args.bf16 ? 'bfloat16' : 'float16' }, fn);
  }

  private labelsOf(batch: Batch): Tensor | null {
    const l = batch[this.args.label_names[0]];
    return l instanceof Tensor ? l : null;
  }

  /** Label tokens (`labels[:, 1:] != -100`) of token-label batches; null for other labels. */
  private countTokens(batch: Batch): number | null {
    const l = this.labelsOf(batch);
    if (!l || l.ndim < 2 || !['int64', 'int32'].includes(l.dtype)) return null;
    return l.slice(l.ndim - 1, 1).ne(-100).sum().item();
  }

  private async lossOf(batch: Batch, numItemsInBatch?: number, model: Module = this.model): Promise<{ loss: Tensor; outputs: Record<string, unknown> }> {
    const inputs = numItemsInBatch === undefined ? batch : { ...batch, numItemsInBatch };
    const out = this.opts.computeLoss
      ? await this.amp(() => this.opts.computeLoss!(model, batch, numItemsInBatch === undefined ? {} : { numItemsInBatch }))
      : await this.amp(() => model.forward(inputs));
    const loss = out instanceof Tensor ? out : (out as { loss?: unknown })?.loss;
    if (!(loss instanceof Tensor)) {
      throw new EmotorchError(`${this.opts.computeLoss ? 'computeLoss' : 'model.forward(batch)'} returned no loss: the batch needs labels (args.label_names: ${this.args.label_names.join(', ')}) or give computeLoss`, 'ERR_INVALID_ARG');
    }
    return { loss, outputs: out instanceof Tensor ? { loss } : (out as Record<string, unknown>) };
  }

  private trainLoader(): DataLoader<T, Batch> {
    const a = this.args;
    let bucketBy: ((item: T) => number) | undefined;
    if (a.train_sampling_strategy === 'group_by_length') {
      bucketBy = (item: T) => {
        const it = item as Record<string, unknown>;
        const v = it?.[a.length_column_name];
        if (typeof v === 'number') return v;
        for (const k of ['input_ids', 'inputIds', 'ids']) {
          const x = it?.[k];
          if (x instanceof Tensor) return x.shape[x.ndim - 1];
          if (x && typeof (x as { length?: unknown }).length === 'number') return (x as { length: number }).length;
        }
        return invalid(`items with a numeric '${a.length_column_name}' or input_ids to group by length`, 'args.group_by_length', item);
      };
    }
    const shuffle = a.train_sampling_strategy !== 'sequential';
    const seed = a.data_seed ?? a.seed;
    // Distributed: each rank its shard of the same permutation (rank r: items r, r+W, … of it), so
    // that W ranks of batch B see, step by step, the items one process of batch W·B would.
    const sampler = this.distributed ? new DistributedSampler(this.trainDataset!, { shuffle, seed }) : undefined;
    return new DataLoader<T, Batch>(this.trainDataset!, {
      batchSize: a.per_device_train_batch_size, shuffle: sampler ? false : shuffle, seed, sampler,
      dropLast: a.dataloader_drop_last, collate: this.opts.dataCollator as never, bucketBy,
    });
  }

  private defaultOptimizer(): Optimizer {
    const a = this.args;
    const opts = { lr: a.learning_rate, betas: [a.adam_beta1, a.adam_beta2] as [number, number], eps: a.adam_epsilon, weightDecay: a.weight_decay };
    const groups = decayGroups(this.model, a.weight_decay);
    // HF ≤ 4.3x's default 'adamw_hf': transformers' own AdamW class; 'adamw_apex_fused': apex's
    // FusedAdam as HF 4.x builds it (its defaults: bias correction, AdamW mode); both from the same arguments
    if (a.optim === 'adamw_hf') return new AdamWHF(groups, opts);
    if (a.optim === 'adamw_apex_fused') return new FusedAdam(groups, opts);
    return new AdamW(groups, opts);
  }

  // ---- training --------------------------------------------------------------------------

  /**
   * Runs training to `max_steps` / `num_train_epochs` (or until stopped), evaluating, logging and
   * saving per the strategies; resumes first when args.resume_from_checkpoint is set.
   * @throws EmotorchError ERR_INVALID_ARG without a trainDataset, when already running, or when
   *   args.output_dir is a file or lies under one; ERR_IO / ERR_FORMAT for unreadable checkpoints
   *   (a trainer_state.json field of the wrong kind is ERR_FORMAT naming the file and the field).
   */
  async train(): Promise<TrainOutput> {
    if (!this.trainDataset) throw new EmotorchError('train() needs a trainDataset', 'ERR_INVALID_ARG');
    if (this.running) throw new EmotorchError('train() is already running', 'ERR_INVALID_ARG');
    this.running = true;
    this.deviceOfRun = null;
    const a = this.args;
    const loader = this.trainLoader();
    if (loader.length === 0) { this.running = false; throw new EmotorchError('the training set gives no batches (empty, or smaller than a batch with dataloader_drop_last)', 'ERR_INVALID_ARG'); }
    const gas = a.gradient_accumulation_steps;
    const updatesPerEpoch = Math.max(1, Math.ceil(loader.length / gas));
    const maxSteps = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * updatesPerEpoch);
    const numEpochs = Math.ceil(maxSteps / updatesPerEpoch);
    const interval = (v: number) => TrainingArguments.steps(v, maxSteps);

    let resumeFrom: string | null;
    try {
      resumeFrom = await resolveResume(a);
      if (this.isMain) {
        await makeOutputDir(a.output_dir);
        await removeStaleTemporaries(a.output_dir);
      }
    } catch (e) {
      this.running = false;
      throw e;
    }
    this.model.train();
    if (a.gradient_checkpointing && this.model.setGradientCheckpointing(true) === 0) {
      this.running = false;
      throw new EmotorchError('args.gradient_checkpointing: the model has no layers emotorch can recompute (LLaMA-family LLMs and InternViT can)', 'ERR_INVALID_ARG');
    }
    // A wrapper this call makes is detached when it ends (else its autograd hooks would go on
    // averaging every later backward of the model, alone on this rank).
    let ownDdp: DistributedDataParallel | null = null;
    if (this.distributed) {
      // Wrap (rank 0's weights reach every rank) before the optimizer and any checkpoint load.
      this.ddp = this.model instanceof DistributedDataParallel ? this.model : (ownDdp = new DistributedDataParallel(this.model, {
        findUnusedParameters: a.ddp_find_unused_parameters ?? false, bucketCapMb: a.ddp_bucket_cap_mb ?? 25, broadcastBuffers: a.ddp_broadcast_buffers ?? true,
      }));
      try {
        await this.ddp.ready;
      } catch (e) {
        ownDdp?.detach();
        this.ddp = null;
        this.running = false;
        throw e;
      }
    } else this.ddp = null;
    if (!this.optimizer) this.optimizer = this.defaultOptimizer();
    const ks = a.lr_scheduler_kwargs;
    this.lrScheduler = new LRScheduler(this.optimizer, this.opts.schedule ? checkedSchedule(this.opts.schedule) : hfSchedule(a.lr_scheduler_type, {
      lr: a.learning_rate, warmupSteps: a.warmupFor(maxSteps), totalSteps: maxSteps, numCycles: ks.num_cycles, minLr: ks.min_lr, minLrRate: ks.min_lr_rate,
    }));
    this.scaler = a.fp16 ? new GradScaler() : null;
    this.state = this.freshState(maxSteps);
    this.state.num_train_epochs = numEpochs;
    this.extra = { data: { epoch: 0, batches: 0 }, logSum: 0, logCount: 0, gradNorm: null, trainLossSum: 0 };
    this.control.shouldTrainingStop = false;
    this.abortRequested = false;
    this.stopAgreed = false;
    this.lastSavedStep = -1;
    let restoreRng: (() => void) | null = null;
    if (resumeFrom) {
      try {
        restoreRng = await this.loadCheckpoint(resumeFrom);
      } catch (e) {
        ownDdp?.detach();
        this.ddp = null;
        this.running = false;
        throw e;
      }
    } else manualSeed(a.seed);
    if (this.isMain) {
      await this.rewriteLogFile();
      this.tb = a.report_to.includes('tensorboard') ? new TensorBoardWriter(a.logging_dir) : null;
      this.logFile = await fs.promises.open(path.join(a.output_dir, 'log.jsonl'), 'a');
    }
    this.logWriteError = null;
    this.progress = new Progress(maxSteps, Progress.mode(a.disable_tqdm || !this.isMain));

    const onAbort = () => { this.abortRequested = true; };
    const signal = this.opts.signal;
    signal?.addEventListener('abort', onAbort);
    if (signal?.aborted) this.abortRequested = true;
    let sigints = 0;
    const onSigint = () => {
      sigints += 1;
      this.abortRequested = true;
      this.progress?.note('Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)');
      if (sigints > 1) { process.removeListener('SIGINT', onSigint); process.kill(process.pid, 'SIGINT'); }
    };
    if (this.opts.handleSigint) process.on('SIGINT', onSigint);

    const t0 = Date.now();
    const startStep = this.state.global_step;
    let stopReason: TrainOutput['stopReason'] = 'completed';
    let it: AsyncIterator<Batch> | null = null;
    try {
      await this.fire('onTrainBegin');
      this.progress.start(this.state.global_step);
      if (a.eval_on_start && !resumeFrom) await this.evaluate();
      let { epoch, batches: skip } = this.extra.data;
      skip = this.batchesOnThisWorld(this.extra.data, skip);
      if (skip >= loader.length) { epoch += 1; skip = 0; }
      const device = this.device;  // once: parameters() wraps every parameter anew
      outer:
      for (; epoch < numEpochs && this.state.global_step < maxSteps; epoch++) {
        loader.setEpoch(epoch);
        this.extra.data = { epoch, batches: skip };
        await this.fire('onEpochBegin');
        it = loader[Symbol.asyncIterator]();
        for (let i = 0; i < skip; i++) if ((await it.next()).done) break;
        if (restoreRng) { restoreRng(); restoreRng = null; }
        let consumed = skip;
        skip = 0;
        while (consumed < loader.length && this.state.global_step < maxSteps) {
          const n = Math.min(gas, loader.length - consumed);
          const micro: Batch[] = [];
          for (let k = 0; k < n; k++) {
            const r = await it!.next();
            if (r.done) break;
            micro.push(toDevice(r.value, device) as Batch);
          }
          if (micro.length === 0) break;
          consumed += micro.length;
          await this.fire('onStepBegin');
          await this.updateStep(micro);
          this.extra.data = { epoch, batches: consumed, world: this.world, perDevice: a.per_device_train_batch_size };
          this.state.epoch = epoch + consumed / loader.length;
          await this.fire('onStepEnd');
          const s = this.state.global_step;
          if ((a.logging_strategy === 'steps' && s % interval(a.logging_steps) === 0) || (a.logging_first_step && s === 1)) this.control.shouldLog = true;
          if (a.eval_strategy === 'steps' && s % interval(a.eval_steps!) === 0) this.control.shouldEvaluate = true;
          if (a.save_strategy === 'steps' && s % interval(a.save_steps) === 0) this.control.shouldSave = true;
          if (s >= maxSteps && a.save_strategy === 'steps') this.control.shouldSave = true;
          this.progress.update(s, { loss: this.extra.logCount ? this.extra.logSum / this.extra.logCount : undefined, lr: this.stepLr });
          const endOfEpoch = consumed >= loader.length;
          if (endOfEpoch) {
            await this.fire('onEpochEnd');
            if (a.logging_strategy === 'epoch') this.control.shouldLog = true;
            if (a.eval_strategy === 'epoch') this.control.shouldEvaluate = true;
            if (a.save_strategy === 'epoch') this.control.shouldSave = true;
          }
          await this.maybeLogEvaluateSave();
          if (this.world > 1 ? this.stopAgreed : this.abortRequested) {
            if (this.lastSavedStep !== this.state.global_step) await this.saveCheckpoint();
            stopReason = 'aborted';
            break outer;
          }
          let stop = this.control.shouldTrainingStop;
          // a callback's stop on any rank stops every rank here (the others would wait in the next step's collectives)
          if (this.world > 1) stop = (await dist.allReduce(tensor([stop ? 1 : 0], { dtype: 'float64' }), 'max')).item() > 0;
          if (stop) { stopReason = 'callback'; break outer; }
        }
        await it.return?.(undefined);
        it = null;
      }
      this.progress.stop();
      const runtime = (Date.now() - t0) / 1000;
      const steps = this.state.global_step - startStep;
      const trainingLoss = this.state.global_step > 0 ? this.extra.trainLossSum / this.state.global_step : 0;
      if (a.load_best_model_at_end && this.state.best_model_checkpoint && stopReason !== 'aborted') await this.loadBestModel();
      const metrics: LogRecord = {
        train_runtime: runtime, train_samples_per_second: (steps * gas * a.per_device_train_batch_size * this.world) / Math.max(runtime, 1e-9),
        train_steps_per_second: steps / Math.max(runtime, 1e-9), total_flos: 0, train_loss: trainingLoss,
      };
      await this.log(metrics);
      await this.fire('onTrainEnd');
      await this.flushLog();
      await this.writeArtifacts();
      return { globalStep: this.state.global_step, trainingLoss, metrics, stopReason };
    } finally {
      await it?.return?.(undefined).catch(() => undefined);
      this.progress?.stop();
      signal?.removeEventListener('abort', onAbort);
      if (this.opts.handleSigint) process.removeListener('SIGINT', onSigint);
      await this.tb?.close().catch(() => undefined);
      this.tb = null;
      await this.logWrites;
      await this.logFile?.close().catch(() => undefined);
      this.logFile = null;
      if (ownDdp) {
        ownDdp.detach();
        this.ddp = null;
      }
      this.running = false;
    }
  }

  /** Adds a micro-batch's trainMetrics, divided as its loss was (by `divisor`). */
  private addTrainMetrics(outputs: Record<string, unknown>, batch: Batch, divisor: number): void {
    const m = this.opts.trainMetrics!(outputs, batch);
    if (!m || typeof m !== 'object') invalid('an object of numbers', 'trainMetrics() result', m);
    const sums = (this.extra.custom ??= {});
    for (const [k, v] of Object.entries(m)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) invalid('finite numbers', `trainMetrics() result '${k}'`, v);
      sums[k] = (sums[k] ?? 0) + v / divisor;
    }
  }

  /** One optimizer step over its micro-batches. */
  private async updateStep(micro: Batch[]): Promise<void> {
    const a = this.args;
    const counts = micro.map((b) => this.countTokens(b));
    const tokenLoss = counts.every((c) => c !== null);
    let numItems = tokenLoss ? counts.reduce((x, y) => x! + y!, 0)! : undefined;
    const world = this.world;
    if (tokenLoss && world > 1) {
      // Token losses are normalized by the label tokens of all ranks (HF gathers them too); DDP
      // then averages over ranks, so each rank's loss is scaled by the world size.
      numItems = (await dist.allReduce(tensor([numItems!], { dtype: 'float64' }), 'sum')).item() as number;
    }
    // What each micro-batch's loss is divided by: the micro-batches of this window (HF ≥ 4.46), or
    // gradient_accumulation_steps in every window (a recipe's own loop); token losses are divided
    // by the window's label tokens instead, and their trainMetrics by the window's micro-batches.
    const acc = this.opts.accumulation ?? {};
    const divisor = acc.divisor === 'gradient_accumulation_steps' ? a.gradient_accumulation_steps : micro.length;
    const clipEach = acc.clip === 'micro-batch' && a.max_grad_norm > 0;
    let stepLoss = 0;
    let gradNorm: number | null = null;
    for (let k = 0; k < micro.length; k++) {
      const batch = micro[k];
      const model = this.trainModel;
      const run = async () => {
        const r = await this.lossOf(batch, tokenLoss ? Math.max(numItems!, 1) : undefined, model);
        let loss = r.loss;
        if (!tokenLoss && divisor > 1) loss = loss.div(divisor);
        if (tokenLoss && world > 1) loss = loss.mul(world);
        stepLoss += loss.item() / (tokenLoss ? world : 1);
        if (this.opts.trainMetrics) this.addTrainMetrics(r.outputs, batch, tokenLoss ? micro.length : divisor);
        await (this.scaler ? this.scaler.scale(loss) : loss).backward();
        if (loss !== r.loss) loss.dispose();
        releaseOutputs(r.outputs, batch);
      };
      // Gradient accumulation: only the last micro-batch's backward averages across ranks, unless
      // the gradient is clipped after each (then each backward is synchronized, as DDP without no_sync).
      if (this.ddp && k < micro.length - 1 && !clipEach) await this.ddp.noSync(run);
      else await run();
      // Clipped after every backward (the partly accumulated gradient): on scaled gradients the
      // bound is scaled too, the same clip up to clip_grad_norm's 1e-6 guard.
      if (clipEach) gradNorm = await this.optimizer!.clipGradNorm(a.max_grad_norm * (this.scaler ? this.scaler.getScale() : 1));
    }
    if (clipEach && this.scaler && gradNorm !== null) gradNorm /= this.scaler.getScale();
    if (world > 1) {
      // The logged loss is the mean over ranks (HF gathers it); a stop requested on any rank
      // (signal, Ctrl-C) stops every rank after this step.
      const t = await dist.allReduce(tensor([stepLoss, this.abortRequested ? 1 : 0], { dtype: 'float64' }), 'sum');
      const [sum, aborts] = t.dataSync() as Float64Array;
      stepLoss = tokenLoss ? sum : sum / world;
      this.stopAgreed = aborts > 0;
    }
    if (a.max_grad_norm > 0 && !clipEach) {
      if (this.scaler) this.scaler.unscale_(this.optimizer!);
      gradNorm = await this.optimizer!.clipGradNorm(a.max_grad_norm);  // its parameters; those without a grad are skipped
    }
    let stepped = true;
    if (this.scaler) {
      stepped = await this.scaler.step(this.optimizer!);
      this.scaler.update();
    } else await this.optimizer!.step();
    // HF logs the rate this step used, read before the scheduler moves on; a step the scaler
    // skipped (inf/NaN gradients) does not move the schedule, as accelerate's
    // optimizer_step_was_skipped.
    this.stepLr = this.optimizer!.getLr();
    if (stepped) this.lrScheduler!.step();
    this.optimizer!.zeroGrad();
    this.state.global_step += 1;
    this.extra.logSum += stepLoss;
    this.extra.logCount += 1;
    this.extra.trainLossSum += stepLoss;
    this.extra.gradNorm = gradNorm;
  }

  /**
   * Batches of this rank's loader to skip when resuming at `pos`, written by `pos.world` ranks of
   * `pos.perDevice` items per batch: the same number of items of the same permutation.
   */
  private batchesOnThisWorld(pos: Position, batches: number): number {
    const per = this.args.per_device_train_batch_size;
    const savedGlobal = (pos.world ?? 1) * (pos.perDevice ?? per);
    const global = this.world * per;
    if (savedGlobal === global) return batches;
    const items = batches * savedGlobal;
    if (items % global !== 0) {
      throw new EmotorchError(`cannot resume: the checkpoint stopped after ${items} items of epoch ${pos.epoch} (${pos.world ?? 1} rank(s) x batch ${pos.perDevice ?? per}), not a multiple of this run's ${this.world} rank(s) x batch ${per}`, 'ERR_INVALID_ARG');
    }
    return items / global;
  }

  private async maybeLogEvaluateSave(): Promise<void> {
    const c = this.control;
    if (c.shouldLog && this.extra.logCount > 0) {
      const rec: LogRecord = { loss: this.extra.logSum / this.extra.logCount };
      const custom = { ...this.extra.custom };
      const keys = Object.keys(custom).sort();
      if (this.world > 1 && keys.length > 0) {
        // every rank's sums, averaged over the ranks as the loss is (ms-swift gathers and means them too)
        const all = (await dist.allReduce(tensor(keys.map((k) => custom[k]), { dtype: 'float64' }), 'sum')).dataSync() as Float64Array;
        keys.forEach((k, i) => { custom[k] = all[i] / this.world; });
      }
      for (const [k, v] of Object.entries(custom)) rec[k] = v / this.extra.logCount;
      this.extra.custom = {};
      if (this.extra.gradNorm !== null) rec.grad_norm = this.extra.gradNorm;
      rec.learning_rate = this.stepLr;
      rec.epoch = this.state.epoch;
      this.extra.logSum = 0;
      this.extra.logCount = 0;
      await this.log(rec);
    }
    c.shouldLog = false;
    if (c.shouldEvaluate) {
      c.shouldEvaluate = false;
      const metrics = await this.evaluate();
      const newBest = this.updateBest(metrics);
      if (this.args.save_strategy === 'best' && newBest) c.shouldSave = true;
    }
    if (c.shouldSave) {
      c.shouldSave = false;
      await this.saveCheckpoint();
    }
  }

  private updateBest(metrics: LogRecord): boolean {
    const name = this.args.metric_for_best_model;
    if (!name) return false;
    const key = name.startsWith('eval_') ? name : `eval_${name}`;
    const v = metrics[key];
    if (typeof v !== 'number') throw new EmotorchError(`args.metric_for_best_model '${name}': the evaluation gave no '${key}' (it has ${Object.keys(metrics).join(', ')})`, 'ERR_INVALID_ARG');
    const best = this.state.best_metric;
    if (best === null || (this.args.greater_is_better ? v > best : v < best)) {
      this.state.best_metric = v;
      this.state.best_global_step = this.state.global_step;
      return true;
    }
    return false;
  }

  /** Adds a record to log_history, log.jsonl, TensorBoard, the 'log' event and callbacks. */
  private async log(logs: LogRecord): Promise<void> {
    const rec: LogRecord = { ...logs, step: this.state.global_step };
    if (rec.epoch === undefined && this.running) rec.epoch = this.state.epoch;
    this.state.log_history.push(rec);
    if (this.running && this.isMain) {
      this.appendLog(`${JSON.stringify(rec)}\n`);
      if (this.tb) {
        for (const [k, v] of Object.entries(logs)) {
          if (typeof v !== 'number' || k === 'epoch') continue;
          const tag = k.startsWith('eval_') ? `eval/${k.slice(5)}` : `train/${k}`;  // HF's TensorBoardCallback tags
          this.tb.addScalar(tag, v, this.state.global_step);
        }
        await this.tb.flush();
      }
    }
    this.emit('log', rec);
    await this.fire('onLog', rec);
  }

  /** Queues a log.jsonl line (the step does not wait for the disk); a failed write is thrown by the next log or flush. */
  private appendLog(line: string): void {
    if (this.logWriteError) throw this.logWriteError;
    const fh = this.logFile;
    if (!fh) return;
    this.logWrites = this.logWrites.then(() => fh.write(line)).then(() => undefined, (e) => { this.logWriteError ??= e; });
  }
  private async flushLog(): Promise<void> {
    await this.logWrites;
    if (this.logWriteError) throw this.logWriteError;
  }

  // ---- evaluation --------------------------------------------------------------------------

  private async loop(ds: Dataset<T>, wantPredictions: boolean): Promise<{ loss: number | null; predictions: Tensor | null; labelIds: Tensor | null; n: number; batches: number }> {
    const a = this.args;
    // Distributed: rank r evaluates items r, r+W, … (no padding); sums and predictions are then
    // gathered, so every rank gets the metrics of the whole set.
    const world = this.world, rank = this.distributed ? dist.rank() : 0;
    const shard = world > 1 ? Array.from({ length: Math.max(0, Math.ceil((ds.length - rank) / world)) }, (_, i) => rank + i * world) : null;
    const loader = new DataLoader<T, Batch>(ds, {
      batchSize: a.per_device_eval_batch_size, collate: this.opts.dataCollator as never,
      sampler: shard ? { length: shard.length, indices: () => shard } : undefined,
    });
    const wasTraining = this.model.training;
    this.model.eval();
    let lossSum = 0, lossN = 0, n = 0, batches = 0;
    const preds: Tensor[] = [];
    const labels: Tensor[] = [];
    const device = this.device;
    try {
      await noGrad(async () => {
        for await (const raw of loader) {
          const batch = toDevice(raw, device) as Batch;
          const lab = this.labelsOf(batch);
          const size = lab ? lab.shape[0] ?? 1 : 1;
          batches += 1;
          n += size;
          let outputs: Record<string, unknown> = {};
          if (lab || this.opts.computeLoss) {
            const r = await this.lossOf(batch);
            outputs = r.outputs;
            lossSum += r.loss.detach().float().item() * size;
            lossN += size;
          } else if (wantPredictions) {
            outputs = (await this.amp(() => this.model.forward(batch))) as Record<string, unknown>;
          }
          if (!wantPredictions) continue;
          let p: unknown;
          if (a.predict_with_generate) {
            const inputs = Object.fromEntries(Object.entries(batch).filter(([k]) => !a.label_names.includes(k)));
            const gen = { ...(a.generation_max_length ? { maxNewTokens: a.generation_max_length } : {}), ...this.opts.generateOptions };
            const out = await (this.model as unknown as { generate(i: unknown, o: unknown): Promise<unknown> }).generate(inputs, gen);
            p = out instanceof Tensor ? out : (out as { newTokens?: unknown })?.newTokens;
          } else {
            p = outputs.logits ?? Object.entries(outputs).find(([k, v]) => k !== 'loss' && v instanceof Tensor)?.[1];
          }
          if (p instanceof Tensor) preds.push(p.detach().to({ device: 'cpu' }));
          if (lab) labels.push(lab.to({ device: 'cpu' }));
        }
      });
    } finally {
      this.model.train(wasTraining);
    }
    let predictions = preds.length ? concatPadded(preds) : null;
    let labelIds = labels.length ? concatPadded(labels) : null;
    if (world > 1) {
      const sums = (await dist.allReduce(tensor([lossSum, lossN, n, batches], { dtype: 'float64' }), 'sum')).dataSync() as Float64Array;
      [lossSum, lossN, n, batches] = Array.from(sums);
      if (wantPredictions) {
        predictions = await gatherRows(predictions, world, ds.length);
        labelIds = await gatherRows(labelIds, world, ds.length);
      }
    }
    return { loss: lossN ? lossSum / lossN : null, predictions, labelIds, n, batches };
  }

  /**
   * Evaluates on the eval set (or `dataset`): mean loss per sample and `computeMetrics`, keys
   * prefixed `eval_`. Logs the record and emits 'evaluate'.
   * @throws EmotorchError ERR_INVALID_ARG without an eval dataset.
   */
  async evaluate(dataset?: Dataset<T>, metricKeyPrefix = 'eval'): Promise<LogRecord> {
    const ds = dataset ?? this.evalDataset;
    if (!ds) throw new EmotorchError('evaluate() needs an evalDataset', 'ERR_INVALID_ARG');
    this.deviceOfRun = null;
    const t0 = Date.now();
    const wantPredictions = !!this.opts.computeMetrics && !this.args.prediction_loss_only;
    const r = await this.loop(ds, wantPredictions);
    const metrics: LogRecord = {};
    if (r.loss !== null) metrics[`${metricKeyPrefix}_loss`] = r.loss;
    if (wantPredictions && r.predictions) {
      const m = await this.opts.computeMetrics!({ predictions: r.predictions, labelIds: r.labelIds });
      if (!m || typeof m !== 'object') invalid('an object of numbers', 'computeMetrics result', m);
      for (const [k, v] of Object.entries(m)) {
        if (typeof v !== 'number') invalid('a number', `computeMetrics result '${k}'`, v);
        metrics[k.startsWith(`${metricKeyPrefix}_`) ? k : `${metricKeyPrefix}_${k}`] = v;
      }
      await this.writeConfusion(r.predictions, r.labelIds, metricKeyPrefix);
    }
    const runtime = (Date.now() - t0) / 1000;
    Object.assign(metrics, { [`${metricKeyPrefix}_runtime`]: runtime, [`${metricKeyPrefix}_samples_per_second`]: r.n / Math.max(runtime, 1e-9), [`${metricKeyPrefix}_steps_per_second`]: r.batches / Math.max(runtime, 1e-9) });
    await this.log(metrics);
    this.progress?.note(Object.entries(metrics).filter(([k]) => !/_runtime|_per_second/.test(k)).map(([k, v]) => `${k} ${Number(v.toPrecision(5))}`).join('  '));
    this.emit('evaluate', metrics);
    await this.fire('onEvaluate', metrics);
    if (this.running) await this.writeArtifacts();
    return metrics;
  }

  /**
   * Predictions (and labels, and `test_` metrics when the set has labels) for a dataset.
   * @example
   * const { predictions, metrics } = await trainer.predict(testSet);
   */
  async predict(dataset: Dataset<T>, metricKeyPrefix = 'test'): Promise<PredictionOutput> {
    if (!dataset || typeof dataset.get !== 'function') invalid('a dataset', 'dataset', dataset);
    this.deviceOfRun = null;
    const r = await this.loop(dataset, true);
    if (!r.predictions) throw new EmotorchError('predict(): the model returned no tensor outputs to predict with', 'ERR_INVALID_ARG');
    const metrics: LogRecord = {};
    if (r.loss !== null) metrics[`${metricKeyPrefix}_loss`] = r.loss;
    if (this.opts.computeMetrics && r.labelIds) {
      for (const [k, v] of Object.entries(await this.opts.computeMetrics({ predictions: r.predictions, labelIds: r.labelIds }))) metrics[`${metricKeyPrefix}_${k}`] = v;
    }
    return { predictions: r.predictions, labelIds: r.labelIds, metrics };
  }

  // ---- checkpoints -------------------------------------------------------------------------

  /**
   * Writes `output_dir/checkpoint-<step>/` through a temporary folder renamed into place, so a
   * crash leaves either the complete folder or none. Then applies save_total_limit.
   */
  async saveCheckpoint(): Promise<string> {
    const a = this.args;
    const step = this.state.global_step;
    const final = path.join(a.output_dir, `checkpoint-${step}`);
    if (this.state.best_global_step === step) this.state.best_model_checkpoint = final;
    if (!this.isMain) {
      // Rank 0 writes (every rank holds the same weights and optimizer state); the others wait
      // until the checkpoint is complete.
      this.lastSavedStep = step;
      await dist.barrier();
      this.emit('save', { step, path: final });
      await this.fire('onSave', final);
      return final;
    }
    await this.flushLog();  // the log lines up to this step are on disk with the checkpoint
    for (const c of this.callbacks) if (c.stateDict) this.state.stateful_callbacks[c.name ?? c.constructor.name] = c.stateDict();
    await writeCheckpoint(path.join(a.output_dir, `tmp-checkpoint-${step}`), final, {
      model: this.core, args: a, optimizer: this.optimizer, lrScheduler: this.lrScheduler, scaler: this.scaler, state: this.state, extra: this.extra,
    });
    this.lastSavedStep = step;
    await rotateCheckpoints(a.output_dir, a.save_total_limit, this.state.best_model_checkpoint);
    if (this.distributed) await dist.barrier();
    this.emit('save', { step, path: final });
    await this.fire('onSave', final);
    return final;
  }

  /** Restores everything from a checkpoint; returns the RNG restore to run once data is positioned. */
  private async loadCheckpoint(dir: string): Promise<() => void> {
    const { state: st, restoreRng } = await readCheckpoint(dir, { model: this.core, args: this.args, optimizer: this.optimizer, lrScheduler: this.lrScheduler, scaler: this.scaler });
    const { emotorch, ...hfState } = st;
    // max_steps and num_train_epochs are this run's; which process is rank 0 is this process's
    this.state = {
      ...this.state, ...hfState, max_steps: this.state.max_steps, num_train_epochs: this.state.num_train_epochs,
      is_local_process_zero: this.state.is_local_process_zero, is_world_process_zero: this.state.is_world_process_zero,
    };
    this.extra = { data: emotorch.data, logSum: emotorch.logSum, logCount: emotorch.logCount, gradNorm: emotorch.gradNorm, trainLossSum: emotorch.trainLossSum, custom: emotorch.custom ?? {} };
    this.lastSavedStep = this.state.global_step;
    for (const c of this.callbacks) {
      const s = this.state.stateful_callbacks?.[c.name ?? c.constructor.name];
      if (s !== undefined && c.loadStateDict) c.loadStateDict(s);
    }
    return restoreRng;
  }

  /** Loads the best checkpoint's weights into the model. */
  private async loadBestModel(): Promise<void> {
    const p = path.join(this.state.best_model_checkpoint!, 'model.safetensors');
    await this.core.load(p, { strict: !this.args.save_only_trainable });
  }

  private async rewriteLogFile(): Promise<void> {
    const lines = this.state.log_history.map((r) => `${JSON.stringify(r)}\n`).join('');
    await fs.promises.writeFile(path.join(this.args.output_dir, 'log.jsonl'), lines);
  }

  /**
   * For a classification evaluation (logits (N, C), integer labels (N)): `confusion_matrix_<prefix>.svg`
   * and `classification_report_<prefix>.txt` (sklearn's layout) in output_dir, next to the curves.
   */
  private async writeConfusion(predictions: Tensor, labelIds: Tensor | null, prefix: string): Promise<void> {
    if (!this.isMain || !labelIds || predictions.ndim !== 2 || labelIds.ndim !== 1 || labelIds.shape[0] !== predictions.shape[0]) return;
    if (!['int64', 'int32'].includes(labelIds.dtype) || !isFloating(predictions.dtype) || predictions.shape[0] === 0) return;
    const C = predictions.shape[1];
    const names = this.opts.classNames ?? Array.from({ length: C }, (_, i) => String(i));
    if (names.length !== C) invalid(`${C} class names (one per logit)`, 'classNames', `${names.length} names`);
    const gold = (labelIds.toArray() as Array<number | bigint>).map(Number);
    if (gold.some((g) => !(g >= 0 && g < C))) return;   // ignored (-100) or out-of-range labels: no class table
    const pred = (predictions.argmax(1).toArray() as Array<number | bigint>).map(Number);
    const labels = Array.from({ length: C }, (_, i) => i);
    const { matrix } = confusionMatrix(pred, gold, { labels });
    const report = classificationReport(pred, gold, { labels, targetNames: names, digits: 4, zeroDivision: 0 });
    const dir = this.args.output_dir;
    await fs.promises.mkdir(dir, { recursive: true });
    await fs.promises.writeFile(path.join(dir, `confusion_matrix_${prefix}.svg`), confusionMatrixSvg(matrix, names, `confusion matrix (${prefix}, step ${this.state.global_step})`));
    await fs.promises.writeFile(path.join(dir, `classification_report_${prefix}.txt`), `${report}\n`);
  }

  private async writeArtifacts(): Promise<void> {
    if (!this.isMain) return;
    await writePlots(this.args.output_dir, this.state.log_history);
  }
}

/**
 * Frees the tensors a training forward returned once the step no longer needs them (the loss
 * after its backward, logits, hidden states), so their memory goes back at once instead of at
 * the garbage collector's next full pass. Parameters (leaves that require grad) and tensors of
 * the batch itself are left alone, whatever a model passes through.
 */
function releaseOutputs(outputs: Record<string, unknown>, batch: Batch): void {
  const inputs = new Set(Object.values(batch).filter((v): v is Tensor => v instanceof Tensor));
  const release = (v: unknown): void => {
    if (v instanceof Tensor) {
      if (!v.isDisposed && !inputs.has(v) && !(v.isLeaf && v.requiresGrad)) v.dispose();
    } else if (Array.isArray(v)) v.forEach(release);
  };
  Object.values(outputs).forEach(release);
}

/**
 * Every rank's `local` rows (rank r holding items r, r+W, … of a set of `total` items), back in
 * the set's order on every rank; dims after the first padded with -100 to the largest (as
 * concatPadded). null when no rank has any.
 */
async function gatherRows(local: Tensor | null, world: number, total: number): Promise<Tensor | null> {
  const MAXD = 6;
  if (local && local.ndim > MAXD) throw new EmotorchError(`evaluation outputs of ${local.ndim} dimensions cannot be gathered across ranks (at most ${MAXD})`, 'ERR_INVALID_ARG');
  const meta = new Array(MAXD + 3).fill(0);
  if (local) {
    meta[0] = 1;
    meta[1] = local.ndim;
    meta[2] = DTYPES.indexOf(local.dtype);
    local.shape.forEach((d, i) => { meta[3 + i] = d; });
  }
  const metas = (await dist.allGather(tensorOf(meta))).map((t) => Array.from(t.dataSync() as unknown as ArrayLike<number | bigint>, Number));
  const have = metas.filter((m) => m[0] === 1);
  if (!have.length) return null;
  const ndim = have[0][1];
  const dtype = DTYPES[have[0][2]] as DType;
  if (have.some((m) => m[1] !== ndim || m[2] !== have[0][2])) throw new EmotorchError('evaluation outputs differ in rank or dtype across ranks', 'ERR_INVALID_ARG');
  const maxShape = Array.from({ length: ndim }, (_, d) => Math.max(...have.map((m) => m[3 + d])));
  let t = local ?? full([0, ...maxShape.slice(1)], -100, { dtype });
  for (let d = ndim - 1; d >= 0; d--) {
    if (t.shape[d] < maxShape[d]) t = cat([t, full(t.shape.map((x, i) => (i === d ? maxShape[d] - x : x)), -100, { dtype })], d);
  }
  const parts = await dist.allGather(t);
  const rows = metas.map((m) => (m[0] === 1 ? m[3] : 0));
  const pieces = parts.map((p, r) => p.slice(0, 0, rows[r]));
  const offsets = rows.map((_, r) => rows.slice(0, r).reduce((x, y) => x + y, 0));
  const order = Array.from({ length: total }, (_, i) => offsets[i % world] + Math.floor(i / world));
  return cat(pieces, 0).indexSelect(0, tensorOf(order));
}

function tensorOf(v: number[]): Tensor {
  return tensor(v, { dtype: 'int64' });
}
