/**
 * Learning-rate schedules: pure functions from the step number (0-based) to a learning rate, and
 * a small scheduler that applies one to an optimizer.
 */
import { checkInt, checkNumber, invalid } from '../errors';

export type Schedule = (step: number) => number;

export interface WarmupOptions {
  /** Steps of linear warmup from `startLr` to `peakLr`. */
  warmupSteps: number;
  /** Total steps; after them the schedule stays at its final value. */
  totalSteps: number;
  peakLr: number;
  /** Learning rate at step 0; default 0. */
  startLr?: number;
}

function check(o: WarmupOptions): void {
  if (!o || typeof o !== 'object') invalid('schedule options', 'options', o);
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
  check(o);
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
  check(o);
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
  constructor(private readonly optimizer: { setLr(lr: number): void }, private readonly schedule: Schedule) {
    optimizer.setLr(schedule(0));
  }
  /** Advances one step and applies the new learning rate; returns it. */
  step(): number {
    this.n += 1;
    const lr = this.schedule(this.n);
    this.optimizer.setLr(lr);
    return lr;
  }
  get currentStep(): number { return this.n; }
}
