/**
 * Trainer: the training loop once, with HF TrainingArguments — gradient accumulation normalized
 * by label tokens, AdamW with decay off biases and norms, clipping, HF schedules, bf16/fp16,
 * evaluation and metrics, checkpoints that resume bit for bit, progress, log.jsonl, SVG plots,
 * TensorBoard, callbacks, and a clean stop on an AbortSignal or Ctrl-C. Every piece it uses is
 * public (DataLoader, AdamW, LRScheduler, GradScaler, autocast, getRngState), so a hand-written
 * loop can do the same.
 *
 * `train` runs in named phases: beginRun (checks, sizes, resumes or seeds, opens the logs),
 * runEpochs → runEpoch → updateStep (one optimizer step, ./step.ts) → markAfterStep →
 * maybeLogEvaluateSave → stopAfterStep, then finishRun and endRun. The options and their checks
 * are in ./trainer-options.ts, the forward on a batch in ./forward.ts, the evaluation loop in
 * ./evaluation.ts, the checkpoint files in ./checkpoints.ts.
 */
import { EventEmitter } from 'events';
import * as path from 'path';
import { Tensor, tensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { Module } from '../nn/module';
import { DataLoader } from '../data/loader';
import type { Dataset } from '../data/datasets/base';
import { manualSeed } from '../runtime';
import { AdamW, Optimizer } from './optim';
import { LRScheduler, hfSchedule } from './schedules';
import { GradScaler } from './amp';
import { TrainingArguments } from './args';
import { CallbackContext, LogRecord, TrainerCallback, TrainerControl, TrainerState } from './callbacks';
import { Progress } from './progress';
import { writePlots } from './plots';
import { RunLog } from './logfile';
import * as dist from '../distributed/group';
import { DistributedDataParallel } from '../distributed/ddp';
import { ShardedDataParallel } from '../distributed/zero';
import { DeepSpeedPlan, readDeepSpeedConfig } from './deepspeed';
import { DistributedSampler } from '../distributed/sampler';
import {
  Extra,
  Position,
  makeOutputDir,
  prepareTemporary,
  readCheckpoint,
  removeStaleTemporaries,
  resolveResume,
  rotateCheckpoints,
  writeCheckpoint,
} from './checkpoints';
import { Batch, TrainerOptions, checkTrainerOptions, checkedSchedule, defaultOptimizer } from './trainer-options';
import { Forward, toDevice } from './forward';
import { optimizerStep } from './step';
import { EvalParts, evaluationLoop, writeConfusionFiles } from './evaluation';

export type { Batch, EvalPrediction, TrainerOptions } from './trainer-options';

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

/** One train() call: its data and length, and what it undoes when it ends. */
interface Run<T> {
  loader: DataLoader<T, Batch>;
  /** gradient_accumulation_steps: micro-batches per optimizer step. */
  gas: number;
  maxSteps: number;
  numEpochs: number;
  resumeFrom: string | null;
  /** Restores the checkpoint's RNG states once the data is positioned (then null). */
  restoreRng: (() => void) | null;
  /** A DDP or sharded wrapper this call made: detached when it ends. */
  ownDdp: DistributedDataParallel | ShardedDataParallel | null;
  /** The epoch's batch iterator while one is open (closed when training ends, however it ends). */
  it: AsyncIterator<Batch> | null;
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
  /** log.jsonl and TensorBoard (rank 0, while training). */
  private readonly runLog = new RunLog();
  private progress: Progress | null = null;
  private abortRequested = false;
  private running = false;
  private lastSavedStep = -1;
  /** The DDP wrapper training runs through when a process group is initialized. */
  private ddp: DistributedDataParallel | null = null;
  /** The sharded wrapper training runs through with a DeepSpeed config of ZeRO stage ≥ 1 (distributed). */
  private zero: ShardedDataParallel | null = null;
  /** args.deepspeed as read for this run (null without one). */
  private dsPlan: DeepSpeedPlan | null = null;
  /** Distributed: a stop was requested on some rank (agreed on by all in the last step). */
  private stopAgreed = false;
  /** The forward on a batch (device, autocast, loss) in training and evaluation. */
  private readonly fwd: Forward;

  /**
   * Checks every argument and option; writes nothing.
   * @throws EmotorchError ERR_INVALID_ARG naming the field for bad or contradictory arguments.
   */
  constructor(opts: TrainerOptions<T>) {
    super();
    const args = checkTrainerOptions(opts);
    this.opts = opts;
    this.model = opts.model;
    this.args = args;
    this.trainDataset = opts.trainDataset;
    this.evalDataset = opts.evalDataset;
    this.callbacks = [...(opts.callbacks ?? [])];
    this.optimizer = opts.optimizer ?? null;
    this.fwd = new Forward(opts.model, args, opts);
    this.state = this.freshState(0);
  }

  private freshState(maxSteps: number): TrainerState {
    const a = this.args;
    return {
      global_step: 0,
      epoch: 0,
      max_steps: maxSteps,
      num_train_epochs: 0,
      logging_steps: a.logging_steps,
      eval_steps: a.eval_steps,
      save_steps: a.save_steps,
      train_batch_size: a.per_device_train_batch_size,
      log_history: [],
      best_metric: null,
      best_global_step: null,
      best_model_checkpoint: null,
      total_flos: 0,
      is_local_process_zero: !this.distributed || dist.localRank() === 0,
      is_world_process_zero: this.isMain,
      stateful_callbacks: {},
    };
  }

  private ctx(): CallbackContext {
    return { args: this.args, state: this.state, control: this.control };
  }

  /** Data-parallel: a process group is initialized (et.distributed.init()). */
  private get distributed(): boolean {
    return dist.isInitialized();
  }
  private get world(): number {
    return this.distributed ? dist.worldSize() : 1;
  }
  /** Rank 0 (or not distributed): the one that logs, saves and plots. */
  private get isMain(): boolean {
    return !this.distributed || dist.rank() === 0;
  }
  /** The model without a DDP wrapper: what checkpoints save and load (plain parameter names). */
  private get core(): Module {
    return this.model instanceof DistributedDataParallel ? this.model.module : this.model;
  }
  /** What training forwards run through: the DDP or sharded wrapper when distributed. */
  private get trainModel(): Module {
    return this.zero ?? this.ddp ?? this.model;
  }
  /** The arguments a step runs with: a DeepSpeed config's gradient_clipping replaces max_grad_norm (DeepSpeed clips, not the HF Trainer); set with the plan. */
  private stepArgs!: TrainingArguments;
  private async fire<K extends keyof TrainerCallback>(hook: K, ...rest: unknown[]): Promise<void> {
    for (const c of this.callbacks) {
      const f = c[hook] as ((...a: unknown[]) => unknown) | undefined;
      if (typeof f === 'function') await f.call(c, this.ctx(), ...rest);
    }
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
      batchSize: a.per_device_train_batch_size,
      shuffle: sampler ? false : shuffle,
      seed,
      sampler,
      dropLast: a.dataloader_drop_last,
      collate: this.opts.dataCollator as never,
      bucketBy,
    });
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
    const run = await this.beginRun();
    const unlisten = this.listenForStop();
    const t0 = Date.now();
    const startStep = this.state.global_step;
    try {
      await this.fire('onTrainBegin');
      this.progress!.start(this.state.global_step);
      if (this.args.eval_on_start && !run.resumeFrom) await this.evaluate();
      const stopReason = await this.runEpochs(run);
      return await this.finishRun(stopReason, t0, startStep);
    } finally {
      await this.endRun(run, unlisten);
    }
  }

  /**
   * Everything before the first step: the checks, the run's length, output_dir, the model's mode
   * and DDP wrapper, the optimizer and schedule, a fresh state, then the checkpoint's (or the
   * seed's), and the logs. A failure before the checkpoint is read leaves the Trainer as it was.
   */
  private async beginRun(): Promise<Run<T>> {
    if (!this.trainDataset) throw new EmotorchError('train() needs a trainDataset', 'ERR_INVALID_ARG');
    if (this.running) throw new EmotorchError('train() is already running', 'ERR_INVALID_ARG');
    this.running = true;
    this.fwd.reset();
    const a = this.args;
    const loader = this.trainLoader();
    if (loader.length === 0) {
      this.running = false;
      throw new EmotorchError('the training set gives no batches (empty, or smaller than a batch with dataloader_drop_last)', 'ERR_INVALID_ARG');
    }
    const gas = a.gradient_accumulation_steps;
    const updatesPerEpoch = Math.max(1, Math.ceil(loader.length / gas));
    const maxSteps = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * updatesPerEpoch);
    const numEpochs = Math.ceil(maxSteps / updatesPerEpoch);
    const resumeFrom = await this.prepareOutputDir();
    this.model.train();
    if (a.gradient_checkpointing && this.model.setGradientCheckpointing(true) === 0) {
      this.running = false;
      throw new EmotorchError(
        'args.gradient_checkpointing: the model has no layers emotorch can recompute (LLaMA-family LLMs and InternViT can)',
        'ERR_INVALID_ARG',
      );
    }
    const ownDdp = await this.wrapDdp();
    this.setUpOptimization(maxSteps);
    this.resetRunState(maxSteps, numEpochs);
    const restoreRng = await this.restoreOrSeed(resumeFrom, ownDdp);
    await this.openLogs(maxSteps);
    return { loader, gas, maxSteps, numEpochs, resumeFrom, restoreRng, ownDdp, it: null };
  }

  /** The checkpoint to resume from (or null); rank 0 makes output_dir and removes a crash's temporaries. */
  private async prepareOutputDir(): Promise<string | null> {
    const a = this.args;
    try {
      const resumeFrom = await resolveResume(a);
      if (this.isMain) {
        await makeOutputDir(a.output_dir);
        await removeStaleTemporaries(a.output_dir);
      }
      return resumeFrom;
    } catch (e) {
      this.running = false;
      throw e;
    }
  }

  /**
   * Distributed: wraps the model (rank 0's weights reach every rank) before the optimizer and any
   * checkpoint load. Returns the wrapper this call made, detached when the call ends (else its
   * autograd hooks would go on averaging every later backward of the model, alone on this rank).
   */
  private async wrapDdp(): Promise<DistributedDataParallel | ShardedDataParallel | null> {
    const a = this.args;
    this.dsPlan = null;
    this.zero = null;
    this.stepArgs = a;
    if (a.deepspeed !== null) {
      try {
        this.dsPlan = readDeepSpeedConfig(a.deepspeed, a, this.world);
      } catch (e) {
        this.running = false;
        throw e;
      }
      const plan = this.dsPlan;
      this.stepArgs = Object.assign(Object.create(Object.getPrototypeOf(a)), a, { max_grad_norm: plan.gradientClipping });
      if (this.isMain && plan.notUsed.length)
        process.emitWarning(`DeepSpeed config: not used by emotorch's engine (DeepSpeed's own buffer and overlap settings): ${plan.notUsed.join(', ')}`);
      if (this.isMain && !this.distributed && plan.stage > 0)
        process.emitWarning(
          `DeepSpeed config: ZeRO stage ${plan.stage} shards across ranks; one process trains unsharded (launch with npx emotorch-run to shard)`,
        );
      if (this.optimizer && this.distributed && plan.stage > 0) {
        this.running = false;
        throw new EmotorchError(
          'args.deepspeed with ZeRO: the Trainer makes the optimizer over the shards (from the config or the arguments); pass no optimizer',
          'ERR_INVALID_ARG',
        );
      }
    }
    if (!this.distributed) {
      this.ddp = null;
      return null;
    }
    if (this.dsPlan && this.dsPlan.stage > 0) {
      // DeepSpeed's bf16: the module in bfloat16, float32 master shards. (Unsharded, the module keeps
      // its dtype and args.bf16's autocast runs: float32 weights, as DeepSpeed's masters are.)
      if (this.dsPlan.bf16) await this.model.to({ dtype: 'bfloat16' });
      const zero = new ShardedDataParallel(this.model, { stage: this.dsPlan.stage as 1 | 2 | 3, offload: this.dsPlan.offload });
      this.ddp = null;
      try {
        await zero.ready;
      } catch (e) {
        await zero.detach().catch(() => undefined);
        this.running = false;
        throw e;
      }
      this.zero = zero;
      return zero;
    }
    let ownDdp: DistributedDataParallel | null = null;
    this.ddp =
      this.model instanceof DistributedDataParallel
        ? this.model
        : (ownDdp = new DistributedDataParallel(this.model, {
            findUnusedParameters: a.ddp_find_unused_parameters ?? false,
            bucketCapMb: a.ddp_bucket_cap_mb ?? 25,
            broadcastBuffers: a.ddp_broadcast_buffers ?? true,
          }));
    try {
      await this.ddp.ready;
    } catch (e) {
      ownDdp?.detach();
      this.ddp = null;
      this.running = false;
      throw e;
    }
    return ownDdp;
  }

  /** The optimizer (the given one, else the default), the LR schedule and, for fp16, the GradScaler. */
  private setUpOptimization(maxSteps: number): void {
    const a = this.args;
    const params = this.zero ?? this.model;
    const dsOpt = this.dsPlan?.optimizer;
    // A DeepSpeed config's optimizer goes over every trainable parameter alike (transformers hands DeepSpeed model_parameters)
    if (!this.optimizer) this.optimizer = dsOpt ? new AdamW(params.trainableParameters(), dsOpt) : defaultOptimizer(params, a);
    const ks = a.lr_scheduler_kwargs;
    this.lrScheduler = new LRScheduler(
      this.optimizer,
      this.opts.schedule
        ? checkedSchedule(this.opts.schedule)
        : hfSchedule(a.lr_scheduler_type, {
            lr: a.learning_rate,
            warmupSteps: a.warmupFor(maxSteps),
            totalSteps: maxSteps,
            numCycles: ks.num_cycles,
            minLr: ks.min_lr,
            minLrRate: ks.min_lr_rate,
          }),
    );
    this.scaler = a.fp16 ? new GradScaler() : null;
  }

  /** A fresh state, position and loss sums, and no stop requested. */
  private resetRunState(maxSteps: number, numEpochs: number): void {
    this.state = this.freshState(maxSteps);
    this.state.num_train_epochs = numEpochs;
    this.extra = { data: { epoch: 0, batches: 0 }, logSum: 0, logCount: 0, gradNorm: null, trainLossSum: 0 };
    this.control.shouldTrainingStop = false;
    this.abortRequested = false;
    this.stopAgreed = false;
    this.lastSavedStep = -1;
  }

  /** Resumes from the checkpoint (returning its RNG restore, run once the data is positioned), or seeds. */
  private async restoreOrSeed(resumeFrom: string | null, ownDdp: DistributedDataParallel | ShardedDataParallel | null): Promise<(() => void) | null> {
    if (!resumeFrom) {
      manualSeed(this.args.seed);
      return null;
    }
    try {
      return await this.loadCheckpoint(resumeFrom);
    } catch (e) {
      await ownDdp?.detach();
      this.ddp = null;
      this.zero = null;
      this.running = false;
      throw e;
    }
  }

  /** Rank 0: log.jsonl rewritten from the state's history and opened to append, TensorBoard; the progress bar. */
  private async openLogs(maxSteps: number): Promise<void> {
    const a = this.args;
    if (this.isMain) {
      await this.runLog.open(a.output_dir, this.state.log_history, a.report_to.includes('tensorboard') ? a.logging_dir : null);
    }
    this.runLog.clearError();
    this.progress = new Progress(maxSteps, Progress.mode(a.disable_tqdm || !this.isMain));
  }

  /** Stops after the current step on the signal and, with handleSigint, on Ctrl-C; returns what removes the listeners. */
  private listenForStop(): () => void {
    const onAbort = () => {
      this.abortRequested = true;
    };
    const signal = this.opts.signal;
    signal?.addEventListener('abort', onAbort);
    if (signal?.aborted) this.abortRequested = true;
    let sigints = 0;
    const onSigint = () => {
      sigints += 1;
      this.abortRequested = true;
      this.progress?.note('Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)');
      if (sigints > 1) {
        process.removeListener('SIGINT', onSigint);
        process.kill(process.pid, 'SIGINT');
      }
    };
    if (this.opts.handleSigint) process.on('SIGINT', onSigint);
    return () => {
      signal?.removeEventListener('abort', onAbort);
      if (this.opts.handleSigint) process.removeListener('SIGINT', onSigint);
    };
  }

  /** The epochs from where the state stands (a resumed run: its epoch, past its batches) to max_steps; why they ended. */
  private async runEpochs(run: Run<T>): Promise<TrainOutput['stopReason']> {
    let { epoch, batches: skip } = this.extra.data;
    skip = this.batchesOnThisWorld(this.extra.data, skip);
    if (skip >= run.loader.length) {
      epoch += 1;
      skip = 0;
    }
    const device = this.fwd.device; // once: parameters() wraps every parameter anew
    for (; epoch < run.numEpochs && this.state.global_step < run.maxSteps; epoch++) {
      const stop = await this.runEpoch(run, epoch, skip, device);
      if (stop) return stop;
      skip = 0;
    }
    return 'completed';
  }

  /** One epoch from its batch `skip`, step by step; why training stops, or null when the epoch (or max_steps) ends. */
  private async runEpoch(run: Run<T>, epoch: number, skip: number, device: string): Promise<TrainOutput['stopReason'] | null> {
    const { loader } = run;
    loader.setEpoch(epoch);
    this.extra.data = { epoch, batches: skip };
    await this.fire('onEpochBegin');
    const it = (run.it = loader[Symbol.asyncIterator]());
    for (let i = 0; i < skip; i++) if ((await it.next()).done) break;
    if (run.restoreRng) {
      run.restoreRng();
      run.restoreRng = null;
    }
    let consumed = skip;
    while (consumed < loader.length && this.state.global_step < run.maxSteps) {
      const micro = await this.nextWindow(run, it, consumed, device);
      if (micro.length === 0) break;
      consumed += micro.length;
      await this.fire('onStepBegin');
      await this.updateStep(micro);
      this.extra.data = { epoch, batches: consumed, world: this.world, perDevice: this.args.per_device_train_batch_size };
      this.state.epoch = epoch + consumed / loader.length;
      await this.fire('onStepEnd');
      await this.markAfterStep(run, consumed >= loader.length);
      await this.maybeLogEvaluateSave();
      const stop = await this.stopAfterStep();
      if (stop) return stop;
    }
    await it.return?.(undefined);
    run.it = null;
    return null;
  }

  /** The next window of the epoch (up to gradient_accumulation_steps micro-batches), on the device. */
  private async nextWindow(run: Run<T>, it: AsyncIterator<Batch>, consumed: number, device: string): Promise<Batch[]> {
    const n = Math.min(run.gas, run.loader.length - consumed);
    const micro: Batch[] = [];
    for (let k = 0; k < n; k++) {
      const r = await it.next();
      if (r.done) break;
      micro.push(toDevice(r.value, device) as Batch);
    }
    return micro;
  }

  /** After a step: what the strategies ask for (log, evaluate, save), the progress line, and the epoch's end. */
  private async markAfterStep(run: Run<T>, endOfEpoch: boolean): Promise<void> {
    const a = this.args;
    const interval = (v: number) => TrainingArguments.steps(v, run.maxSteps);
    const s = this.state.global_step;
    if ((a.logging_strategy === 'steps' && s % interval(a.logging_steps) === 0) || (a.logging_first_step && s === 1)) this.control.shouldLog = true;
    if (a.eval_strategy === 'steps' && s % interval(a.eval_steps!) === 0) this.control.shouldEvaluate = true;
    if (a.save_strategy === 'steps' && s % interval(a.save_steps) === 0) this.control.shouldSave = true;
    if (s >= run.maxSteps && a.save_strategy === 'steps') this.control.shouldSave = true;
    this.progress!.update(s, { loss: this.extra.logCount ? this.extra.logSum / this.extra.logCount : undefined, lr: this.stepLr });
    if (endOfEpoch) {
      await this.fire('onEpochEnd');
      if (a.logging_strategy === 'epoch') this.control.shouldLog = true;
      if (a.eval_strategy === 'epoch') this.control.shouldEvaluate = true;
      if (a.save_strategy === 'epoch') this.control.shouldSave = true;
    }
  }

  /** Why training stops after this step ('aborted' once a checkpoint is saved, 'callback'), or null to go on. */
  private async stopAfterStep(): Promise<TrainOutput['stopReason'] | null> {
    if (this.world > 1 ? this.stopAgreed : this.abortRequested) {
      if (this.lastSavedStep !== this.state.global_step) await this.saveCheckpoint();
      return 'aborted';
    }
    let stop = this.control.shouldTrainingStop;
    // a callback's stop on any rank stops every rank here (the others would wait in the next step's collectives)
    if (this.world > 1) stop = (await dist.allReduce(tensor([stop ? 1 : 0], { dtype: 'float64' }), 'max')).item() > 0;
    return stop ? 'callback' : null;
  }

  /** The end of a run that did not fail: the best model (load_best_model_at_end), the train_* metrics, onTrainEnd, the files. */
  private async finishRun(stopReason: TrainOutput['stopReason'], t0: number, startStep: number): Promise<TrainOutput> {
    const a = this.args;
    this.progress!.stop();
    const runtime = (Date.now() - t0) / 1000;
    const steps = this.state.global_step - startStep;
    const trainingLoss = this.state.global_step > 0 ? this.extra.trainLossSum / this.state.global_step : 0;
    if (a.load_best_model_at_end && this.state.best_model_checkpoint && stopReason !== 'aborted') await this.loadBestModel();
    const samples = steps * a.gradient_accumulation_steps * a.per_device_train_batch_size * this.world;
    const metrics: LogRecord = {
      train_runtime: runtime,
      train_samples_per_second: samples / Math.max(runtime, 1e-9),
      train_steps_per_second: steps / Math.max(runtime, 1e-9),
      total_flos: 0,
      train_loss: trainingLoss,
    };
    await this.log(metrics);
    await this.fire('onTrainEnd');
    await this.runLog.flush();
    await this.writeArtifacts();
    return { globalStep: this.state.global_step, trainingLoss, metrics, stopReason };
  }

  /** However a run ends: the open iterator, the progress bar, the listeners, the log files and the own DDP wrapper closed. */
  private async endRun(run: Run<T>, unlisten: () => void): Promise<void> {
    await run.it?.return?.(undefined).catch(() => undefined);
    this.progress?.stop();
    unlisten();
    await this.runLog.close();
    if (run.ownDdp) {
      // a sharded wrapper gathers the whole weights back into the model (every rank is here);
      // after a failed collective it cannot, and the error that ended the run is the one reported
      await Promise.resolve(run.ownDdp.detach()).catch(() => undefined);
      this.ddp = null;
      this.zero = null;
    }
    this.running = false;
  }

  /** One optimizer step over its micro-batches (./step.ts), then the step counted and its loss summed. */
  private async updateStep(micro: Batch[]): Promise<void> {
    const world = this.world;
    const r = await optimizerStep(
      {
        args: this.stepArgs,
        opts: this.opts,
        fwd: this.fwd,
        model: this.trainModel,
        ddp: this.ddp,
        world,
        optimizer: this.optimizer!,
        lrScheduler: this.lrScheduler!,
        scaler: this.scaler,
        extra: this.extra,
        aborting: () => this.abortRequested,
      },
      micro,
    );
    if (world > 1) this.stopAgreed = r.stopAgreed;
    this.stepLr = r.lr;
    this.state.global_step += 1;
    this.extra.logSum += r.loss;
    this.extra.logCount += 1;
    this.extra.trainLossSum += r.loss;
    this.extra.gradNorm = r.gradNorm;
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
      throw new EmotorchError(
        `cannot resume: the checkpoint stopped after ${items} items of epoch ${pos.epoch} (${pos.world ?? 1} rank(s) x batch ${pos.perDevice ?? per}), not a multiple of this run's ${this.world} rank(s) x batch ${per}`,
        'ERR_INVALID_ARG',
      );
    }
    return items / global;
  }

  /** What markAfterStep (or a callback) asked for: the training record logged, an evaluation (and the best metric), a checkpoint. */
  private async maybeLogEvaluateSave(): Promise<void> {
    const c = this.control;
    if (c.shouldLog && this.extra.logCount > 0) await this.logTraining();
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

  /** Logs the training record of the steps since the last: mean loss, trainMetrics, grad_norm, learning_rate, epoch. */
  private async logTraining(): Promise<void> {
    const rec: LogRecord = { loss: this.extra.logSum / this.extra.logCount };
    const custom = { ...this.extra.custom };
    const keys = Object.keys(custom).sort();
    if (this.world > 1 && keys.length > 0) {
      // every rank's sums, averaged over the ranks as the loss is (ms-swift gathers and means them too)
      const all = (
        await dist.allReduce(
          tensor(
            keys.map((k) => custom[k]),
            { dtype: 'float64' },
          ),
          'sum',
        )
      ).dataSync() as Float64Array;
      keys.forEach((k, i) => {
        custom[k] = all[i] / this.world;
      });
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

  private updateBest(metrics: LogRecord): boolean {
    const name = this.args.metric_for_best_model;
    if (!name) return false;
    const key = name.startsWith('eval_') ? name : `eval_${name}`;
    const v = metrics[key];
    if (typeof v !== 'number')
      throw new EmotorchError(
        `args.metric_for_best_model '${name}': the evaluation gave no '${key}' (it has ${Object.keys(metrics).join(', ')})`,
        'ERR_INVALID_ARG',
      );
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
      await this.runLog.write(rec, logs, this.state.global_step);
    }
    this.emit('log', rec);
    await this.fire('onLog', rec);
  }

  // ---- evaluation --------------------------------------------------------------------------

  /** What the evaluation loop (./evaluation.ts) uses of this Trainer. */
  private evalParts(): EvalParts<T> {
    return {
      model: this.model,
      args: this.args,
      opts: this.opts,
      fwd: this.fwd,
      world: this.world,
      rank: this.distributed ? dist.rank() : 0,
      evenBatches: this.zero?.stage === 3,
    };
  }

  /**
   * Evaluates on the eval set (or `dataset`): mean loss per sample and `computeMetrics`, keys
   * prefixed `eval_`. Logs the record and emits 'evaluate'.
   * @throws EmotorchError ERR_INVALID_ARG without an eval dataset.
   */
  async evaluate(dataset?: Dataset<T>, metricKeyPrefix = 'eval'): Promise<LogRecord> {
    if (this.zero) await this.zero.syncParameters(); // the module's own weights are current
    const ds = dataset ?? this.evalDataset;
    if (!ds) throw new EmotorchError('evaluate() needs an evalDataset', 'ERR_INVALID_ARG');
    this.fwd.reset();
    const t0 = Date.now();
    const wantPredictions = !!this.opts.computeMetrics && !this.args.prediction_loss_only;
    const r = await evaluationLoop(this.evalParts(), ds, wantPredictions);
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
    Object.assign(metrics, {
      [`${metricKeyPrefix}_runtime`]: runtime,
      [`${metricKeyPrefix}_samples_per_second`]: r.n / Math.max(runtime, 1e-9),
      [`${metricKeyPrefix}_steps_per_second`]: r.batches / Math.max(runtime, 1e-9),
    });
    await this.log(metrics);
    this.progress?.note(
      Object.entries(metrics)
        .filter(([k]) => !/_runtime|_per_second/.test(k))
        .map(([k, v]) => `${k} ${Number(v.toPrecision(5))}`)
        .join('  '),
    );
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
    this.fwd.reset();
    const r = await evaluationLoop(this.evalParts(), dataset, true);
    if (!r.predictions) throw new EmotorchError('predict(): the model returned no tensor outputs to predict with', 'ERR_INVALID_ARG');
    const metrics: LogRecord = {};
    if (r.loss !== null) metrics[`${metricKeyPrefix}_loss`] = r.loss;
    if (this.opts.computeMetrics && r.labelIds) {
      for (const [k, v] of Object.entries(await this.opts.computeMetrics({ predictions: r.predictions, labelIds: r.labelIds })))
        metrics[`${metricKeyPrefix}_${k}`] = v;
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
    if (this.zero) return this.saveShardedCheckpoint(step, final);
    if (!this.isMain) {
      // Rank 0 writes (every rank holds the same weights and optimizer state); the others wait
      // until the checkpoint is complete.
      this.lastSavedStep = step;
      await dist.barrier();
      this.emit('save', { step, path: final });
      await this.fire('onSave', final);
      return final;
    }
    await this.runLog.flush(); // the log lines up to this step are on disk with the checkpoint
    for (const c of this.callbacks) if (c.stateDict) this.state.stateful_callbacks[c.name ?? c.constructor.name] = c.stateDict();
    await writeCheckpoint(path.join(a.output_dir, `tmp-checkpoint-${step}`), final, {
      model: this.core,
      args: a,
      optimizer: this.optimizer,
      lrScheduler: this.lrScheduler,
      scaler: this.scaler,
      state: this.state,
      extra: this.extra,
    });
    this.lastSavedStep = step;
    await rotateCheckpoints(a.output_dir, a.save_total_limit, this.state.best_model_checkpoint);
    if (this.distributed) await dist.barrier();
    this.emit('save', { step, path: final });
    await this.fire('onSave', final);
    return final;
  }

  /**
   * ZeRO: every rank writes its shards and optimizer state into the temporary folder
   * (`zero/zero-rank-<r>-of-<n>.safetensors`), the whole weights are gathered to rank 0 (below
   * stage 3, or with stage3_gather_16bit_weights_on_model_save), which writes the rest and renames
   * the folder into place.
   */
  private async saveShardedCheckpoint(step: number, final: string): Promise<string> {
    const a = this.args;
    const zero = this.zero as ShardedDataParallel;
    const tmp = path.join(a.output_dir, `tmp-checkpoint-${step}`);
    if (this.isMain) await prepareTemporary(a.output_dir, tmp);
    await dist.barrier();
    const full = this.dsPlan?.gatherOnSave === false ? null : await zero.fullStateDict();
    await zero.saveShards(path.join(tmp, 'zero'), { optimizer: this.optimizer! });
    await dist.barrier();
    if (this.isMain) {
      await this.runLog.flush();
      for (const c of this.callbacks) if (c.stateDict) this.state.stateful_callbacks[c.name ?? c.constructor.name] = c.stateDict();
      await writeCheckpoint(tmp, final, {
        model: this.core,
        modelState: full,
        shardedOptimizer: true,
        args: a,
        optimizer: this.optimizer,
        lrScheduler: this.lrScheduler,
        scaler: this.scaler,
        state: this.state,
        extra: this.extra,
      });
      await rotateCheckpoints(a.output_dir, a.save_total_limit, this.state.best_model_checkpoint);
    }
    this.lastSavedStep = step;
    await dist.barrier();
    this.emit('save', { step, path: final });
    await this.fire('onSave', final);
    return final;
  }

  /** Restores everything from a checkpoint; returns the RNG restore to run once data is positioned. */
  private async loadCheckpoint(dir: string): Promise<() => void> {
    const { state: st, restoreRng } = await readCheckpoint(dir, {
      model: this.core,
      sharded: this.zero,
      args: this.args,
      optimizer: this.optimizer,
      lrScheduler: this.lrScheduler,
      scaler: this.scaler,
    });
    const { emotorch, ...hfState } = st;
    // max_steps and num_train_epochs are this run's; which process is rank 0 is this process's
    this.state = {
      ...this.state,
      ...hfState,
      max_steps: this.state.max_steps,
      num_train_epochs: this.state.num_train_epochs,
      is_local_process_zero: this.state.is_local_process_zero,
      is_world_process_zero: this.state.is_world_process_zero,
    };
    this.extra = {
      data: emotorch.data,
      logSum: emotorch.logSum,
      logCount: emotorch.logCount,
      gradNorm: emotorch.gradNorm,
      trainLossSum: emotorch.trainLossSum,
      custom: emotorch.custom ?? {},
    };
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
    if (this.zero) {
      await this.zero.loadShards(path.join(this.state.best_model_checkpoint!, 'zero'));
      return;
    }
    await this.core.load(p, { strict: !this.args.save_only_trainable });
  }

  /** Rank 0: the confusion matrix and report of a classification evaluation (./evaluation.ts). */
  private async writeConfusion(predictions: Tensor, labelIds: Tensor | null, prefix: string): Promise<void> {
    if (!this.isMain) return;
    await writeConfusionFiles(this.args.output_dir, predictions, labelIds, prefix, this.opts.classNames, this.state.global_step);
  }

  private async writeArtifacts(): Promise<void> {
    if (!this.isMain) return;
    await writePlots(this.args.output_dir, this.state.log_history);
  }
}
