/**
 * Learning-rate schedules: pure functions from the step number (0-based) to a learning rate, and
 * a small scheduler that applies one to an optimizer.
 *
 * @module
 */
import { checkInt, checkNumber, checkOptionNames, invalid } from '../errors';

/** A learning-rate schedule: the rate at an optimizer step. */
export type Schedule = (step: number) => number;

/** The peak rate, warmup steps and total steps of a warmup schedule. */
export interface WarmupOptions {
  /** Steps of linear warmup from `startLr` to `peakLr`. */
  warmupSteps: number;
  /** Total steps; after them the schedule stays at its final value. */
  totalSteps: number;
  peakLr: number;
  /** Learning rate at step 0; default 0. */
  startLr?: number;
}

function check(o: WarmupOptions, extra: string, name: string): void {
  if (!o || typeof o !== 'object') invalid('schedule options', 'options', o);
  checkOptionNames(o, ['warmupSteps', 'totalSteps', 'peakLr', 'startLr', extra], `${name} options`);
  checkInt(o.warmupSteps, 'warmupSteps', 0);
  checkInt(o.totalSteps, 'totalSteps', 1);
  if (o.warmupSteps > o.totalSteps) invalid(`at most totalSteps (${o.totalSteps})`, 'warmupSteps', o.warmupSteps);
  checkNumber(o.peakLr, 'peakLr', 0);
  checkNumber(o.startLr ?? 0, 'startLr', 0);
}

function warm(o: WarmupOptions, step: number): number {
  const start = o.startLr ?? 0;
  return start + ((o.peakLr - start) * step) / o.warmupSteps;
}

/**
 * Linear warmup, then linear decay to `endLr` (default 0) at `totalSteps`, as HF
 * get_linear_schedule_with_warmup (SPECTRA: 1% warmup).
 */
export function linearWarmupLinearDecay(o: WarmupOptions & { endLr?: number }): Schedule {
  check(o, 'endLr', 'linearWarmupLinearDecay');
  const end = checkNumber(o.endLr ?? 0, 'endLr', 0);
  return (step) => {
    if (step < o.warmupSteps) return warm(o, step);
    const span = o.totalSteps - o.warmupSteps;
    const t = span === 0 ? 1 : Math.min(1, (step - o.warmupSteps) / span);
    return o.peakLr + (end - o.peakLr) * t;
  };
}

/**
 * Linear warmup, then half-cosine from `peakLr` down to `minLr` (default 0) at `totalSteps`
 * (SALMONN: 1e-6 → 3e-5 over 3000 steps, cosine to 1e-5).
 */
export function linearWarmupCosine(o: WarmupOptions & { minLr?: number }): Schedule {
  check(o, 'minLr', 'linearWarmupCosine');
  const min = checkNumber(o.minLr ?? 0, 'minLr', 0);
  return (step) => {
    if (step < o.warmupSteps) return warm(o, step);
    const span = o.totalSteps - o.warmupSteps;
    const t = span === 0 ? 1 : Math.min(1, (step - o.warmupSteps) / span);
    return min + (o.peakLr - min) * 0.5 * (1 + Math.cos(Math.PI * t));
  };
}

/** Sets an optimizer's learning rate from a schedule: call `step()` once per optimizer step. */
export class LRScheduler {
  private n = 0;
  constructor(
    private readonly optimizer: { setLr(lr: number): void },
    private readonly schedule: Schedule,
  ) {
    optimizer.setLr(schedule(0));
  }
  /** Advances one step and applies the new learning rate; returns it. */
  step(): number {
    this.n += 1;
    const lr = this.schedule(this.n);
    this.optimizer.setLr(lr);
    return lr;
  }
  /** The steps taken: calls of `step()`, or the step `loadStateDict` restored. */
  get currentStep(): number {
    return this.n;
  }
  /** The state to checkpoint: the number of steps taken. */
  stateDict(): { step: number } {
    return { step: this.n };
  }
  /**
   * Restores {@link stateDict}: sets the step and applies its learning rate.
   * @throws EmotorchError ERR_INVALID_ARG for a bad state.
   */
  loadStateDict(sd: { step: number }): void {
    if (!sd || typeof sd !== 'object') invalid('a scheduler state { step }', 'scheduler state', sd);
    this.n = checkInt(sd.step, 'scheduler state.step', 0);
    this.optimizer.setLr(this.schedule(this.n));
  }
}

/** The learning-rate schedule types of HF `TrainingArguments.lr_scheduler_type` emotorch implements. */
export const HF_SCHEDULES = ['linear', 'cosine', 'cosine_with_min_lr', 'constant', 'constant_with_warmup'] as const;
/** The `lr_scheduler_type` names of HF's TrainingArguments that `hfSchedule` implements. */
export type HfScheduleType = (typeof HF_SCHEDULES)[number];

/** Options of `hfSchedule`: HF's scheduler type, steps and its `lr_scheduler_kwargs`. */
export interface HfScheduleOptions {
  /** The optimizer's learning rate (the schedule multiplies it). */
  lr: number;
  /** Steps of linear warmup from 0. Default 0. */
  warmupSteps?: number;
  /** Total optimizer steps (linear and cosine schedules). */
  totalSteps?: number;
  /** Cosine waves over the decay; default 0.5 (a half-cosine down to the minimum). */
  numCycles?: number;
  /** cosine_with_min_lr: the floor as an absolute learning rate... */
  minLr?: number;
  /** ...or as a fraction of `lr` (exactly one of the two). */
  minLrRate?: number;
}

/**
 * A schedule as transformers' `get_scheduler(name, ...)` builds it: `lr × factor(step)` with the
 * same formulas (linear: warmup then linear to 0 at totalSteps; cosine: warmup then
 * `0.5·(1 + cos(π·2·numCycles·progress))`; cosine_with_min_lr: the cosine factor lifted to
 * `minLrRate`; constant; constant_with_warmup).
 * @throws EmotorchError ERR_INVALID_ARG for an unknown type or missing/contradictory options.
 * @example
 * const sched = new et.optim.LRScheduler(opt, et.optim.schedules.hfSchedule('cosine', { lr: 3e-5, warmupSteps: 30, totalSteps: 1000 }));
 */
export function hfSchedule(type: HfScheduleType, o: HfScheduleOptions): Schedule {
  if (!(HF_SCHEDULES as readonly string[]).includes(type)) invalid(`one of ${HF_SCHEDULES.join(', ')}`, 'lr_scheduler_type', type);
  if (!o || typeof o !== 'object') invalid('schedule options', 'options', o);
  checkOptionNames(o, ['lr', 'warmupSteps', 'totalSteps', 'numCycles', 'minLr', 'minLrRate'], 'hfSchedule options');
  const lr = checkNumber(o.lr, 'learning_rate', 0);
  const warmup = checkInt(o.warmupSteps ?? 0, 'warmupSteps', 0);
  const needsTotal = type === 'linear' || type.startsWith('cosine');
  const total = needsTotal ? checkInt(o.totalSteps, 'totalSteps', 1) : 0;
  const cycles = checkNumber(o.numCycles ?? 0.5, 'num_cycles', 0);
  let minRate = 0;
  if (type === 'cosine_with_min_lr') {
    if ((o.minLr === undefined) === (o.minLrRate === undefined))
      invalid('exactly one of min_lr and min_lr_rate', 'lr_scheduler_kwargs', { min_lr: o.minLr, min_lr_rate: o.minLrRate });
    minRate = o.minLrRate !== undefined ? checkNumber(o.minLrRate, 'min_lr_rate', 0, 1) : checkNumber(o.minLr, 'min_lr', 0) / lr;
  }
  const warm = (s: number) => s / Math.max(1, warmup);
  let factor: (s: number) => number;
  switch (type) {
    case 'constant':
      factor = () => 1;
      break;
    case 'constant_with_warmup':
      factor = (s) => (s < warmup ? warm(s) : 1);
      break;
    case 'linear':
      factor = (s) => (s < warmup ? warm(s) : Math.max(0, (total - s) / Math.max(1, total - warmup)));
      break;
    default:
      factor = (s) => {
        if (s < warmup) return warm(s);
        const progress = (s - warmup) / Math.max(1, total - warmup);
        const f = 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress));
        return Math.max(0, type === 'cosine' ? f : f * (1 - minRate) + minRate);
      };
  }
  return (step) => lr * factor(step);
}
