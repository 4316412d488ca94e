/**
 * One optimizer step of the Trainer over its micro-batches: the loss of each normalized (by the
 * window's label tokens for token labels, else by the micro-batches or by
 * gradient_accumulation_steps), backward (through DDP's no_sync but for the last), clipping, the
 * GradScaler, the optimizer and the LR schedule.
 */
import { Tensor, tensor } from '../tensor';
import { invalid } from '../errors';
import type { Module } from '../nn/module';
import * as dist from '../distributed/group';
import type { DistributedDataParallel } from '../distributed/ddp';
import type { Optimizer } from './optim';
import type { LRScheduler } from './schedules';
import type { GradScaler } from './amp';
import type { TrainingArguments } from './args';
import type { Extra } from './checkpoints';
import type { Forward } from './forward';
import type { Batch, TrainerOptions } from './trainer-options';

/** What a step uses of its Trainer. */
export interface StepParts {
  args: TrainingArguments;
  /** The Trainer's options (accumulation and trainMetrics are read from them). */
  opts: Pick<TrainerOptions, 'accumulation' | 'trainMetrics'>;
  fwd: Forward;
  /** What the forwards run through: the DDP wrapper when distributed, else the model. */
  model: Module;
  ddp: DistributedDataParallel | null;
  world: number;
  optimizer: Optimizer;
  lrScheduler: LRScheduler;
  scaler: GradScaler | null;
  /** trainMetrics' sums are added to its `custom`. */
  extra: Extra;
  /** Whether a stop was requested on this rank (read once every backward has run). */
  aborting(): boolean;
}

/** What a step did. */
export interface StepResult {
  /** The loss trained on (summed over the window; data-parallel, the mean over the ranks). */
  loss: number;
  gradNorm: number | null;
  /** The learning rate the step used (what HF logs). */
  lr: number;
  /** Data-parallel: a stop was requested on some rank (false on one process). */
  stopAgreed: boolean;
}

/** How a window's losses are normalized. */
interface Window {
  /** Token labels in every micro-batch: the loss is divided by the window's label tokens. */
  tokenLoss: boolean;
  /** The label tokens of the window (of every rank), for token losses. */
  numItems: number | undefined;
  /** What each micro-batch's loss (or its trainMetrics, for token losses: micro.length) is divided by. */
  divisor: number;
  /** Clip after every backward (accumulation.clip 'micro-batch'). */
  clipEach: boolean;
}

/** One optimizer step over its micro-batches (see the file's comment). */
export async function optimizerStep(p: StepParts, micro: Batch[]): Promise<StepResult> {
  const a = p.args;
  const w = await windowOf(p, micro);
  let { loss: stepLoss, gradNorm } = await accumulate(p, micro, w);
  let stopAgreed = false;
  if (p.world > 1) {
    // The logged loss is the mean over ranks (HF gathers it); a stop requested on any rank
    // (signal, Ctrl-C) stops every rank after this step.
    const t = await dist.allReduce(tensor([stepLoss, p.aborting() ? 1 : 0], { dtype: 'float64' }), 'sum');
    const [sum, aborts] = t.dataSync() as Float64Array;
    stepLoss = w.tokenLoss ? sum : sum / p.world;
    stopAgreed = aborts > 0;
  }
  if (a.max_grad_norm > 0 && !w.clipEach) {
    if (p.scaler) p.scaler.unscale_(p.optimizer);
    gradNorm = await p.optimizer.clipGradNorm(a.max_grad_norm); // its parameters; those without a grad are skipped
  }
  let stepped = true;
  if (p.scaler) {
    stepped = await p.scaler.step(p.optimizer);
    p.scaler.update();
  } else await p.optimizer.step();
  // HF logs the rate this step used, read before the scheduler moves on; a step the scaler
  // skipped (inf/NaN gradients) does not move the schedule, as accelerate's
  // optimizer_step_was_skipped.
  const lr = p.optimizer.getLr();
  if (stepped) p.lrScheduler.step();
  p.optimizer.zeroGrad();
  return { loss: stepLoss, gradNorm, lr, stopAgreed };
}

/** How the window's losses are normalized: its label tokens (of every rank) or its divisor. */
async function windowOf(p: StepParts, micro: Batch[]): Promise<Window> {
  const a = p.args;
  const counts = micro.map((b) => p.fwd.countTokens(b));
  const tokenLoss = counts.every((c) => c !== null);
  let numItems = tokenLoss ? counts.reduce((x, y) => x! + y!, 0)! : undefined;
  if (tokenLoss && p.world > 1) {
    // Token losses are normalized by the label tokens of all ranks (HF gathers them too); DDP
    // then averages over ranks, so each rank's loss is scaled by the world size.
    numItems = (await dist.allReduce(tensor([numItems!], { dtype: 'float64' }), 'sum')).item() as number;
  }
  // What each micro-batch's loss is divided by: the micro-batches of this window (HF ≥ 4.46), or
  // gradient_accumulation_steps in every window (a recipe's own loop); token losses are divided
  // by the window's label tokens instead, and their trainMetrics by the window's micro-batches.
  const acc = p.opts.accumulation ?? {};
  const divisor = acc.divisor === 'gradient_accumulation_steps' ? a.gradient_accumulation_steps : micro.length;
  const clipEach = acc.clip === 'micro-batch' && a.max_grad_norm > 0;
  return { tokenLoss, numItems, divisor, clipEach };
}

/** Forward and backward of each micro-batch, the gradients accumulating; the window's loss and (clipping each) the last norm. */
async function accumulate(p: StepParts, micro: Batch[], w: Window): Promise<{ loss: number; gradNorm: number | null }> {
  const { tokenLoss, numItems, divisor, clipEach } = w;
  const { world, scaler } = p;
  let stepLoss = 0;
  let gradNorm: number | null = null;
  for (let k = 0; k < micro.length; k++) {
    const batch = micro[k];
    const model = p.model;
    const run = async () => {
      const r = await p.fwd.lossOf(batch, tokenLoss ? Math.max(numItems!, 1) : undefined, model);
      let loss = r.loss;
      if (!tokenLoss && divisor > 1) loss = loss.div(divisor);
      if (tokenLoss && world > 1) loss = loss.mul(world);
      stepLoss += loss.item() / (tokenLoss ? world : 1);
      if (p.opts.trainMetrics) addTrainMetrics(p, r.outputs, batch, tokenLoss ? micro.length : divisor);
      await (scaler ? scaler.scale(loss) : loss).backward();
      if (loss !== r.loss) loss.dispose();
      releaseOutputs(r.outputs, batch);
    };
    // Gradient accumulation: only the last micro-batch's backward averages across ranks, unless
    // the gradient is clipped after each (then each backward is synchronized, as DDP without no_sync).
    if (p.ddp && k < micro.length - 1 && !clipEach) await p.ddp.noSync(run);
    else await run();
    // Clipped after every backward (the partly accumulated gradient): on scaled gradients the
    // bound is scaled too, the same clip up to clip_grad_norm's 1e-6 guard.
    if (clipEach) gradNorm = await p.optimizer.clipGradNorm(p.args.max_grad_norm * (scaler ? scaler.getScale() : 1));
  }
  if (clipEach && scaler && gradNorm !== null) gradNorm /= scaler.getScale();
  return { loss: stepLoss, gradNorm };
}

/** Adds a micro-batch's trainMetrics, divided as its loss was (by `divisor`). */
function addTrainMetrics(p: StepParts, outputs: Record<string, unknown>, batch: Batch, divisor: number): void {
  const m = p.opts.trainMetrics!(outputs, batch);
  if (!m || typeof m !== 'object') invalid('an object of numbers', 'trainMetrics() result', m);
  const sums = (p.extra.custom ??= {});
  for (const [k, v] of Object.entries(m)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) invalid('finite numbers', `trainMetrics() result '${k}'`, v);
    sums[k] = (sums[k] ?? 0) + v / divisor;
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
