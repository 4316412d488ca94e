/**
 * Mixed precision: a dynamic loss scaler for float16 training, as torch.amp.GradScaler, on
 * libtorch's own kernels (`_amp_foreach_non_finite_check_and_unscale_`, `_amp_update_scale_`).
 * bfloat16 needs no scaler: wrap the forward in `et.autocast({ dtype: 'bfloat16' }, fn)`.
 *
 * @module
 */
import { Tensor, op, full } from '../tensor';
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid } from '../errors';
import type { Device } from '../device';
import type { Optimizer } from './optim';

/** Options of `new et.amp.GradScaler` (torch.amp.GradScaler's arguments, camelCase). */
export interface GradScalerOptions {
  /** Initial scale; default 2^16. */
  initScale?: number;
  /** Factor the scale grows by after `growthInterval` steps without inf/NaN; default 2. */
  growthFactor?: number;
  /** Factor the scale shrinks by on a step with inf/NaN gradients; default 0.5. */
  backoffFactor?: number;
  /** Clean steps between growths; default 2000. */
  growthInterval?: number;
  /** false makes every method a pass-through (scale 1); default true. */
  enabled?: boolean;
}

/** The state a checkpoint keeps (torch's names). */
export interface GradScalerState {
  scale: number;
  growth_factor: number;
  backoff_factor: number;
  growth_interval: number;
  _growth_tracker: number;
}

type Stage = 'ready' | 'unscaled' | 'stepped';

/**
 * Scales the loss so float16 gradients do not underflow, unscales the gradients before clipping
 * and the optimizer step, skips steps whose gradients hold inf or NaN, and adapts the scale
 * (backoff on inf/NaN, growth after `growthInterval` clean steps). Same API and numbers as
 * torch.amp.GradScaler.
 * @example
 * const scaler = new et.amp.GradScaler();
 * const { loss } = await et.autocast({ dtype: 'float16' }, () => model.forward(batch));
 * await scaler.scale(loss).backward();
 * scaler.unscale_(opt);                                   // before clipping
 * await et.optim.clipGradNorm(model.trainableParameters(), 1.0);
 * await scaler.step(opt);                                 // skipped on inf/NaN
 * scaler.update();
 * opt.zeroGrad();
 */
export class GradScaler {
  readonly enabled: boolean;
  private readonly initScale: number;
  private growthFactor: number;
  private backoffFactor: number;
  private growthInterval: number;
  private scaleT: Tensor | null = null;
  private tracker: Tensor | null = null;
  private initTracker = 0;
  private readonly perOptimizer = new Map<Optimizer | Tensor[], { stage: Stage; foundInf: Tensor[] }>();

  /** @throws EmotorchError ERR_INVALID_ARG for a bad option. */
  constructor(opts: GradScalerOptions = {}) {
    if (opts === null || typeof opts !== 'object') invalid('an options object', 'GradScaler options', opts);
    checkOptionNames(opts, ['initScale', 'growthFactor', 'backoffFactor', 'growthInterval', 'enabled'], 'GradScaler options');
    this.initScale = checkNumber(opts.initScale ?? 65536, 'initScale', Number.MIN_VALUE);
    this.growthFactor = checkNumber(opts.growthFactor ?? 2, 'growthFactor', 1);
    if (this.growthFactor === 1) invalid('a number > 1', 'growthFactor', 1);
    this.backoffFactor = checkNumber(opts.backoffFactor ?? 0.5, 'backoffFactor', 0, 1);
    if (this.backoffFactor === 0 || this.backoffFactor === 1) invalid('a number in (0, 1)', 'backoffFactor', this.backoffFactor);
    this.growthInterval = checkInt(opts.growthInterval ?? 2000, 'growthInterval', 1);
    if (opts.enabled !== undefined && typeof opts.enabled !== 'boolean') invalid('a boolean', 'enabled', opts.enabled);
    this.enabled = opts.enabled ?? true;
  }

  private lazyInit(device: Device): void {
    if (this.scaleT) return;
    this.scaleT = full([], this.initScale, { dtype: 'float32', device });
    this.tracker = full([], this.initTracker, { dtype: 'int32', device });
  }

  /**
   * The loss multiplied by the current scale (the loss itself when disabled).
   * @throws EmotorchError ERR_INVALID_ARG for a non-Tensor.
   */
  scale(loss: Tensor): Tensor {
    if (!(loss instanceof Tensor)) invalid('a Tensor', 'loss', loss);
    if (!this.enabled) return loss;
    this.lazyInit(loss.device);
    if (this.scaleT!.device !== loss.device) {
      // restored on the CPU, training on another device
      this.scaleT = this.scaleT!.to({ device: loss.device });
      this.tracker = this.tracker!.to({ device: loss.device });
    }
    return loss.mul(this.scaleT!);
  }

  private params(target: Optimizer | Tensor[]): Tensor[] {
    if (Array.isArray(target)) return target;
    if (!target || typeof (target as Optimizer).parameters !== 'function') invalid('an optimizer or an array of parameters', 'optimizer', target);
    return (target as Optimizer).parameters();
  }

  private state(target: Optimizer | Tensor[]) {
    let s = this.perOptimizer.get(target);
    if (!s) {
      s = { stage: 'ready', foundInf: [] };
      this.perOptimizer.set(target, s);
    }
    return s;
  }

  /**
   * Divides the gradients of the optimizer's parameters by the scale, in place, and records
   * whether any is inf or NaN. Call it before clipping; {@link step} calls it when you did not.
   * @throws EmotorchError ERR_INVALID_ARG when called twice before {@link update}, or for float16 gradients.
   */
  unscale_(optimizer: Optimizer | Tensor[]): void {
    if (!this.enabled) return;
    const st = this.state(optimizer);
    if (st.stage === 'unscaled') throw new EmotorchError('unscale_() has already been called on this optimizer since the last update()', 'ERR_INVALID_ARG');
    if (st.stage === 'stepped') throw new EmotorchError('unscale_() is being called after step()', 'ERR_INVALID_ARG');
    if (!this.scaleT) throw new EmotorchError('unscale_() before any scale(loss): nothing was scaled', 'ERR_INVALID_ARG');
    const inv = this.scaleT.to({ dtype: 'float64' }).reciprocal().to({ dtype: 'float32' });
    const byDevice = new Map<string, Tensor[]>();
    for (const p of this.params(optimizer)) {
      const g = p.grad;
      if (!g) continue;
      if (g.dtype === 'float16') throw new EmotorchError('cannot unscale float16 gradients: keep parameters in float32 and use autocast', 'ERR_INVALID_ARG');
      const list = byDevice.get(g.device) ?? [];
      list.push(g);
      byDevice.set(g.device, list);
    }
    st.foundInf = [];
    for (const [device, grads] of byDevice) {
      const found = full([], 0, { dtype: 'float32', device: device as Device });
      op(
        'amp_unscale',
        grads.map((g) => g.handle),
        found.handle,
        (inv.device === device ? inv : inv.to({ device: device as Device })).handle,
      );
      st.foundInf.push(found);
    }
    if (st.foundInf.length === 0) st.foundInf.push(full([], 0, { dtype: 'float32', device: this.scaleT.device }));
    st.stage = 'unscaled';
  }

  /**
   * Unscales (unless done), then runs `optimizer.step()` unless a gradient was inf or NaN.
   * Resolves to true when the step ran.
   * @throws EmotorchError ERR_INVALID_ARG when called twice before {@link update}.
   */
  async step(optimizer: Optimizer): Promise<boolean> {
    if (!this.enabled) {
      await optimizer.step();
      return true;
    }
    const st = this.state(optimizer);
    if (st.stage === 'stepped') throw new EmotorchError('step() has already been called since the last update()', 'ERR_INVALID_ARG');
    if (st.stage === 'ready') this.unscale_(optimizer);
    let inf = 0;
    for (const f of st.foundInf) inf += f.item();
    st.stage = 'stepped';
    if (inf !== 0) return false;
    await optimizer.step();
    return true;
  }

  /**
   * Updates the scale: backoff when the last step found inf/NaN, growth after `growthInterval`
   * clean steps (or sets `newScale`). Call once per iteration, after {@link step}.
   * @throws EmotorchError ERR_INVALID_ARG when no step or unscale_ ran since the last update.
   */
  update(newScale?: number): void {
    if (!this.enabled) return;
    if (!this.scaleT) throw new EmotorchError('update() before any scale(loss)', 'ERR_INVALID_ARG');
    if (newScale !== undefined) {
      checkNumber(newScale, 'newScale', Number.MIN_VALUE);
      this.scaleT = full([], newScale, { dtype: 'float32', device: this.scaleT.device });
    } else {
      const founds = [...this.perOptimizer.values()].flatMap((s) => s.foundInf.map((f) => f.to({ device: this.scaleT!.device })));
      if (founds.length === 0) throw new EmotorchError('update(): no inf checks were recorded (call step() or unscale_() first)', 'ERR_INVALID_ARG');
      let combined = founds[0];
      for (const f of founds.slice(1)) combined = combined.add(f);
      op('amp_update_scale', this.scaleT.handle, this.tracker!.handle, combined.handle, this.growthFactor, this.backoffFactor, this.growthInterval);
    }
    this.perOptimizer.clear();
  }

  /** The current scale (the initial one before the first scale(); 1 when disabled). */
  getScale(): number {
    if (!this.enabled) return 1;
    return this.scaleT ? this.scaleT.item() : this.initScale;
  }

  /** Consecutive clean steps since the last growth or backoff. */
  getGrowthTracker(): number {
    return this.tracker ? this.tracker.item() : this.initTracker;
  }

  /** The state to checkpoint (torch.amp.GradScaler's state_dict keys). */
  stateDict(): GradScalerState {
    return {
      scale: this.getScale(),
      growth_factor: this.growthFactor,
      backoff_factor: this.backoffFactor,
      growth_interval: this.growthInterval,
      _growth_tracker: this.getGrowthTracker(),
    };
  }

  /**
   * Restores {@link stateDict}.
   * @throws EmotorchError ERR_INVALID_ARG for a malformed state.
   */
  loadStateDict(sd: GradScalerState): void {
    if (!sd || typeof sd !== 'object') invalid('a GradScaler state', 'state', sd);
    const scale = checkNumber(sd.scale, 'state.scale', Number.MIN_VALUE);
    this.growthFactor = checkNumber(sd.growth_factor, 'state.growth_factor', 1);
    this.backoffFactor = checkNumber(sd.backoff_factor, 'state.backoff_factor', 0, 1);
    this.growthInterval = checkInt(sd.growth_interval, 'state.growth_interval', 1);
    const tracker = checkInt(sd._growth_tracker, 'state._growth_tracker', 0);
    const device = this.scaleT?.device ?? 'cpu';
    this.scaleT = full([], scale, { dtype: 'float32', device });
    this.tracker = full([], tracker, { dtype: 'int32', device });
    this.initTracker = tracker;
    this.perOptimizer.clear();
  }
}
