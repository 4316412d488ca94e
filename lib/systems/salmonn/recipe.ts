/**
 * SALMONN's training recipe as its runner.py and optims.py run it: the learning rate of each
 * iteration (LAVIS's LinearWarmupCosineLRScheduler, with its warm-up quirk), that rate at each
 * optimizer step under gradient accumulation, and the optimizer's weight-decay groups.
 */
import type { Tensor } from '../../tensor';
import { checkInt, checkNumber, checkOptionNames, invalid } from '../../errors';
import type { Module } from '../../nn/module';
import type { ParamGroup } from '../../train/optim';
import type { Schedule } from '../../train/schedules';

/** The `run.optims` block of SALMONN's config.yaml, with the run block's step counts. */
export interface SalmonnOptimsOptions {
  /** `optims.max_epoch`: inner epochs of `iters_per_epoch` iterations. */
  max_epoch: number;
  /** `run.iters_per_epoch` (or the train loader's length when `run.epoch_based`). */
  iters_per_epoch: number;
  /** `optims.init_lr`: the peak rate. */
  init_lr: number;
  /** `optims.min_lr`: where the cosine ends. */
  min_lr: number;
  /** `optims.warmup_steps`. Default 0. */
  warmup_steps?: number;
  /** `optims.warmup_start_lr`; negative (the default, -1) means `init_lr`. */
  warmup_start_lr?: number;
  /** `run.accum_grad_iters`: iterations per optimizer step. Default 1. */
  accum_grad_iters?: number;
  /** `optims.weight_decay`: for the optimizer (see {@link salmonnParamGroups}); the schedule ignores it. */
  weight_decay?: number;
  /** `optims.beta2`: for the optimizer; the schedule ignores it. */
  beta2?: number;
}

const OPTIONS = ['max_epoch', 'iters_per_epoch', 'init_lr', 'min_lr', 'warmup_steps', 'warmup_start_lr', 'accum_grad_iters', 'weight_decay', 'beta2'];

/** Checked options with their defaults. */
type Resolved = Required<Omit<SalmonnOptimsOptions, 'weight_decay' | 'beta2'>>;

function resolve(o: SalmonnOptimsOptions): Resolved {
  if (!o || typeof o !== 'object') invalid('the optims options', 'options', o);
  checkOptionNames(o as object, OPTIONS, 'SALMONN optims');
  const r = {
    max_epoch: checkInt(o.max_epoch, 'max_epoch', 1),
    iters_per_epoch: checkInt(o.iters_per_epoch, 'iters_per_epoch', 1),
    init_lr: checkNumber(o.init_lr, 'init_lr', 0),
    min_lr: checkNumber(o.min_lr, 'min_lr', 0),
    warmup_steps: checkInt(o.warmup_steps ?? 0, 'warmup_steps', 0),
    warmup_start_lr: checkNumber(o.warmup_start_lr ?? -1, 'warmup_start_lr'),
    accum_grad_iters: checkInt(o.accum_grad_iters ?? 1, 'accum_grad_iters', 1),
  };
  if (r.iters_per_epoch % r.accum_grad_iters !== 0) {
    // runner.py steps when (i + 1) % accum == 0 within an epoch: a remainder would carry gradients
    // into the next epoch's first step, which a step-based trainer cannot reproduce
    invalid(`a multiple of accum_grad_iters (${r.accum_grad_iters})`, 'iters_per_epoch', r.iters_per_epoch);
  }
  return r;
}

/**
 * The rate runner.py sets before iteration `iter` (0-based) of inner epoch `epoch`:
 * optims.py's LinearWarmupCosineLRScheduler. While the run's iteration count is under
 * `warmup_steps` the rate rises linearly from `warmup_start_lr` to `init_lr` by the iteration
 * *within the epoch* (the original's quirk: with `warmup_steps` > `iters_per_epoch` the warm-up
 * starts over each epoch), capped at `init_lr`; after it, a cosine from `init_lr` to `min_lr` over
 * all `max_epoch · iters_per_epoch` iterations, evaluated at the run's iteration count.
 * @throws EmotorchError ERR_INVALID_ARG for bad options or counts
 */
export function salmonnIterationLr(o: SalmonnOptimsOptions, epoch: number, iter: number): number {
  return iterationLr(resolve(o), checkInt(epoch, 'epoch', 0), checkInt(iter, 'iter', 0));
}

function iterationLr(r: Resolved, epoch: number, iter: number): number {
  const start = r.warmup_start_lr >= 0 ? r.warmup_start_lr : r.init_lr;
  const total = epoch * r.iters_per_epoch + iter;
  if (total < r.warmup_steps) return Math.min(r.init_lr, start + ((r.init_lr - start) * iter) / Math.max(r.warmup_steps, 1));
  return (r.init_lr - r.min_lr) * 0.5 * (1 + Math.cos((Math.PI * total) / (r.max_epoch * r.iters_per_epoch))) + r.min_lr;
}

/**
 * The learning rate at each optimizer step (0-based) of a SALMONN run, for `Trainer`'s `schedule`:
 * the rate of the iteration that takes the step (runner.py steps the optimizer at the iterations
 * where `(iter + 1) % accum_grad_iters == 0`, with the rate the scheduler set for that iteration).
 * Past the run's `max_epoch · iters_per_epoch / accum_grad_iters` steps it stays at the last one.
 * @throws EmotorchError ERR_INVALID_ARG for bad options (iters_per_epoch must be a multiple of accum_grad_iters)
 * @example
 * const schedule = et.systems.salmonn.salmonnSchedule({ max_epoch: 30, iters_per_epoch: 3000, init_lr: 3e-5, min_lr: 1e-5, warmup_steps: 3000, warmup_start_lr: 1e-6 });
 * new et.train.Trainer({ model, args, schedule, optimizer: new et.optim.AdamW(et.systems.salmonn.salmonnParamGroups(model, 0.05), { lr: 3e-5 }) });
 */
export function salmonnSchedule(o: SalmonnOptimsOptions): Schedule {
  const r = resolve(o);
  const perEpoch = r.iters_per_epoch / r.accum_grad_iters;
  const last = r.max_epoch * perEpoch - 1;
  return (step: number) => {
    const s = Math.min(Math.max(0, Math.floor(step)), last);
    const epoch = Math.floor(s / perEpoch);
    return iterationLr(r, epoch, ((s % perEpoch) + 1) * r.accum_grad_iters - 1);
  };
}

/** The optimizer steps of a run: `max_epoch · iters_per_epoch / accum_grad_iters`. */
export function salmonnTotalSteps(o: SalmonnOptimsOptions): number {
  const r = resolve(o);
  return (r.max_epoch * r.iters_per_epoch) / r.accum_grad_iters;
}

/**
 * optims.py's `get_optimizer` groups: no weight decay for a trainable tensor with fewer than two
 * dimensions or whose name contains 'bias', 'ln' or 'bn' (the original's substring test, on the
 * original key names: `ln_speech`, `ln_audio`); decay `weightDecay` for the rest (the LoRA
 * matrices, the Q-Former's and the projection's weights, `speech_query_tokens`).
 */
export function salmonnParamGroups(model: Module & { originalName?(n: string): string }, weightDecay: number): ParamGroup[] {
  checkNumber(weightDecay, 'weightDecay', 0);
  const decay: Tensor[] = [];
  const noDecay: Tensor[] = [];
  for (const [n, p] of model.namedParameters()) {
    if (!p.requiresGrad) continue;
    const name = model.originalName ? model.originalName(n) : n;
    (p.ndim < 2 || name.includes('bias') || name.includes('ln') || name.includes('bn') ? noDecay : decay).push(p);
  }
  return [
    { params: decay, weightDecay },
    { params: noDecay, weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}
