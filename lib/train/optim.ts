/**
 * Optimizers over parameter groups. The update math runs natively on the thread pool (AdamW uses
 * libtorch's fused multi-tensor kernel); per-group learning rate and weight decay let biases and
 * norms go undecayed. Besides torch's AdamW and SGD: transformers 4.x's AdamW ({@link AdamWHF},
 * TrainingArguments' `optim: 'adamw_hf'`) and apex's FusedAdam ({@link FusedAdam}), the updates
 * that trained some of the seed systems' released weights.
 */
import { binding, OptimizerHandle, NativeGroup } from '../native';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, checkNumber, checkOptionNames, invalid } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { afterStep, globalClip } from '../distributed/shards';

/** A parameter group: its parameters and the options that differ from the optimizer's (torch's param groups). */
export interface ParamGroup {
  params: Tensor[];
  /** Overrides the optimizer's lr for this group. */
  lr?: number;
  /** Overrides the optimizer's weightDecay for this group. */
  weightDecay?: number;
}

interface GroupInfo {
  lr: number;
  weightDecay: number;
  size: number;
}

function normalizeGroups(params: Tensor[] | ParamGroup[], name: string): ParamGroup[] {
  if (!Array.isArray(params) || params.length === 0) invalid('a non-empty array of Tensors or of parameter groups', name, params);
  const groups: ParamGroup[] = params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
  const seen = new Set<Tensor>();
  groups.forEach((g, gi) => {
    if (!g || !Array.isArray(g.params)) invalid('a group { params: Tensor[] }', `${name}[${gi}]`, g);
    g.params.forEach((p, i) => {
      checkTensor(p, `${name}[${gi}].params[${i}]`);
      if (!p.isLeaf) invalid('leaf tensors (parameters), not results of operations', `${name}[${gi}].params[${i}]`, p.toString());
      if (!p.dtype.startsWith('float') && p.dtype !== 'bfloat16') invalid('floating-point parameters', `${name}[${gi}].params[${i}]`, p.dtype);
      if (seen.has(p)) invalid('each parameter in only one group', `${name}[${gi}].params[${i}]`, p.toString());
      seen.add(p);
    });
  });
  return groups;
}

/** The global clip of `params` when they are shards of one sharded wrapper; null for plain parameters. */
function shardedClip(params: Tensor[]): ((params: Tensor[], maxNorm: number, normType: number) => Promise<number>) | null {
  const owners = new Set(params.map((p) => globalClip.get(p.handle.key())));
  if (owners.size === 1) return [...owners][0] ?? null;
  if (owners.size === 0) return null;
  throw new EmotorchError(
    'clipGradNorm: these parameters mix shards of a ShardedDataParallel with other tensors (or shards of two wrappers); clip each set on its own',
    'ERR_INVALID_ARG',
  );
}

/** The native update an optimizer runs (its `stateDict().kind`). */
export type OptimizerKind = 'adamw' | 'adamw_hf' | 'fused_adam' | 'sgd';

/** Shared machinery of {@link AdamW}, {@link AdamWHF}, {@link FusedAdam} and {@link SGD}. */
export abstract class Optimizer {
  /** @internal */
  protected readonly native: OptimizerHandle;
  protected readonly groups: GroupInfo[];
  protected abstract readonly kind: OptimizerKind;
  private readonly tensors: Tensor[][];
  /** @internal */
  protected constructor(kind: OptimizerKind, groups: NativeGroup[], tensors: Tensor[][]) {
    this.native = binding.createOptimizer(kind, groups);
    this.groups = groups.map((g) => ({ lr: g.lr, weightDecay: g.weightDecay, size: g.params.length }));
    this.tensors = tensors.map((g) => [...g]);
  }
  /** The parameters this optimizer updates, group after group (what a GradScaler unscales). */
  parameters(): Tensor[] {
    return this.tensors.flat();
  }
  /** Applies one update from the current gradients (parameters without a gradient are skipped). */
  async step(): Promise<void> {
    await this.native.step();
    if (afterStep.size) for (const p of this.tensors.flat()) afterStep.get(p.handle.key())?.();
  }
  /**
   * Scales the gradients of this optimizer's parameters in place so that their global `normType`
   * norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_ over them); resolves to the norm
   * before clipping. One native call: the parameter list is not sent again.
   * @example
   * await loss.backward(); await opt.clipGradNorm(1.0); await opt.step();
   */
  clipGradNorm(maxNorm: number, normType = 2): Promise<number> {
    checkNumber(maxNorm, 'maxNorm', 0);
    checkNumber(normType, 'normType', 0);
    const global = shardedClip(this.parameters());
    if (global) return global(this.parameters(), maxNorm, normType);
    return this.native.clipGradNorm(maxNorm, normType);
  }
  /** Drops all gradients (sets them to none, as PyTorch's default). */
  zeroGrad(): void {
    this.native.zeroGrad();
  }
  /** Sets the learning rate of every group, or of one. */
  setLr(lr: number, group?: number): void {
    checkNumber(lr, 'lr', 0);
    const targets = group === undefined ? this.groups.map((_, i) => i) : [this.groupIndex(group)];
    for (const g of targets) {
      this.native.setLr(g, lr);
      this.groups[g].lr = lr;
    }
  }
  /** The learning rate of a group (default the first). */
  getLr(group = 0): number {
    return this.native.lr(this.groupIndex(group));
  }
  /** How many parameter groups the optimizer has. */
  get numGroups(): number {
    return this.groups.length;
  }
  private groupIndex(g: number): number {
    if (!Number.isInteger(g) || g < 0 || g >= this.groups.length) invalid(`a group index below ${this.groups.length}`, 'group', g);
    return g;
  }

  /** The optimizer's state: tensors ("g.i.exp_avg", …) and hyperparameters per group. */
  stateDict(): { tensors: Map<string, Tensor>; kind: string; groups: Array<{ lr: number; weightDecay: number; size: number }> } {
    const [names, hs] = this.native.state();
    return { tensors: new Map(names.map((n, i) => [n, new Tensor(hs[i])])), kind: this.kind, groups: this.groups.map((g) => ({ ...g })) };
  }

  /**
   * Restores state from {@link stateDict}. Checks the kind, group count and sizes, and every
   * tensor's shape before changing anything.
   * @throws EmotorchError ERR_STATE_DICT when the state belongs to a different optimizer setup.
   */
  async loadStateDict(sd: { tensors: Map<string, Tensor>; kind: string; groups: Array<{ lr: number; weightDecay: number; size: number }> }): Promise<void> {
    if (sd.kind !== this.kind) throw new EmotorchError(`optimizer state is for '${sd.kind}', not '${this.kind}'`, 'ERR_STATE_DICT');
    if (!Array.isArray(sd.groups) || sd.groups.length !== this.groups.length || sd.groups.some((g, i) => g.size !== this.groups[i].size)) {
      throw new EmotorchError(
        `optimizer state has groups of sizes [${(sd.groups ?? []).map((g) => g.size)}] but this optimizer has [${this.groups.map((g) => g.size)}]`,
        'ERR_STATE_DICT',
      );
    }
    try {
      await this.native.setState(
        [...sd.tensors.keys()],
        [...sd.tensors.values()].map((t) => t.handle),
      );
    } catch (e) {
      throw new EmotorchError((e as Error).message, 'ERR_STATE_DICT');
    }
    sd.groups.forEach((g, i) => this.setLr(g.lr, i));
  }

  /** Saves the state as safetensors (hyperparameters in its metadata). */
  async save(path: string): Promise<void> {
    const sd = this.stateDict();
    await saveSafetensors(path, sd.tensors, { format: 'emotorch-optimizer', kind: sd.kind, groups: JSON.stringify(sd.groups) });
  }

  /** Loads state saved by {@link save}. */
  async load(path: string): Promise<void> {
    const { tensors, metadata } = await loadSafetensors(path);
    if (metadata.format !== 'emotorch-optimizer') throw new EmotorchError(`'${path}' is not an emotorch optimizer state file`, 'ERR_FORMAT');
    let groups: Array<{ lr: number; weightDecay: number; size: number }>;
    try {
      groups = JSON.parse(metadata.groups);
    } catch {
      throw new EmotorchError(`'${path}': corrupt optimizer metadata`, 'ERR_FORMAT');
    }
    await this.loadStateDict({ tensors, kind: metadata.kind, groups });
  }
}

/** AdamW's defaults (torch.optim.AdamW's): the one table; the native side sets none. */
export const ADAMW_DEFAULTS = { lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weightDecay: 0.01 } as const;
/** SGD's defaults (torch.optim.SGD's; lr is required): the one table; the native side sets none. */
export const SGD_DEFAULTS = { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false } as const;

/** Options of `new AdamW` (torch.optim.AdamW's arguments, camelCase). */
export interface AdamWOptions {
  /** default 1e-3 */
  lr?: number;
  /** default [0.9, 0.999] */
  betas?: [number, number];
  /** default 1e-8 */
  eps?: number;
  /** Decoupled weight decay; default 0.01 (PyTorch's). */
  weightDecay?: number;
}

/**
 * AdamW (Loshchilov & Hutter), numerically as torch.optim.AdamW.
 * @example
 * const opt = new et.optim.AdamW(et.optim.decayGroups(model, 0.05), { lr: 3e-5 });
 * await loss.backward(); await opt.step(); opt.zeroGrad();
 */
export class AdamW extends Optimizer {
  protected readonly kind = 'adamw' as const;
  constructor(params: Tensor[] | ParamGroup[], opts: AdamWOptions = {}) {
    opts = checkOptionNames(opts, ['lr', 'betas', 'eps', 'weightDecay'], 'AdamW');
    const lr = checkNumber(opts.lr ?? ADAMW_DEFAULTS.lr, 'lr', 0);
    const betas = opts.betas ?? ADAMW_DEFAULTS.betas;
    if (!Array.isArray(betas) || betas.length !== 2) invalid('two numbers', 'betas', betas);
    checkNumber(betas[0], 'betas[0]', 0, 1);
    checkNumber(betas[1], 'betas[1]', 0, 1);
    const eps = checkNumber(opts.eps ?? ADAMW_DEFAULTS.eps, 'eps', 0);
    const wd = checkNumber(opts.weightDecay ?? ADAMW_DEFAULTS.weightDecay, 'weightDecay', 0);
    const norm = normalizeGroups(params, 'params');
    const groups = norm.map((g, i) => ({
      params: g.params.map((p) => p.handle),
      lr: g.lr === undefined ? lr : checkNumber(g.lr, `params[${i}].lr`, 0),
      weightDecay: g.weightDecay === undefined ? wd : checkNumber(g.weightDecay, `params[${i}].weightDecay`, 0),
      beta1: betas[0],
      beta2: betas[1],
      eps,
    }));
    super(
      'adamw',
      groups,
      norm.map((g) => g.params),
    );
  }
}

/** The Adam family's shared checks: lr, betas, eps, weight decay and the groups, as native groups. */
function adamGroups(
  params: Tensor[] | ParamGroup[],
  opts: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number },
  defaults: { lr: number; betas: readonly [number, number]; eps: number; weightDecay: number },
  extra: Partial<NativeGroup>,
): { groups: NativeGroup[]; tensors: Tensor[][] } {
  const lr = checkNumber(opts.lr ?? defaults.lr, 'lr', 0);
  const betas = opts.betas ?? defaults.betas;
  if (!Array.isArray(betas) || betas.length !== 2) invalid('two numbers', 'betas', betas);
  checkNumber(betas[0], 'betas[0]', 0, 1);
  checkNumber(betas[1], 'betas[1]', 0, 1);
  if (betas[0] >= 1 || betas[1] >= 1) invalid('betas below 1', 'betas', betas);
  const eps = checkNumber(opts.eps ?? defaults.eps, 'eps', 0);
  const wd = checkNumber(opts.weightDecay ?? defaults.weightDecay, 'weightDecay', 0);
  const norm = normalizeGroups(params, 'params');
  const groups = norm.map((g, i) => ({
    params: g.params.map((p) => p.handle),
    lr: g.lr === undefined ? lr : checkNumber(g.lr, `params[${i}].lr`, 0),
    weightDecay: g.weightDecay === undefined ? wd : checkNumber(g.weightDecay, `params[${i}].weightDecay`, 0),
    beta1: betas[0],
    beta2: betas[1],
    eps,
    ...extra,
  }));
  return { groups, tensors: norm.map((g) => g.params) };
}

/** transformers 4.x `AdamW`'s defaults (optimization.py): note eps 1e-6 and no weight decay. */
export const ADAMW_HF_DEFAULTS = { lr: 1e-3, betas: [0.9, 0.999] as [number, number], eps: 1e-6, weightDecay: 0, correctBias: true } as const;

/** Options of `new AdamWHF` (transformers 4.x `AdamW`'s arguments, camelCase). */
export interface AdamWHFOptions {
  /** default 1e-3 */
  lr?: number;
  /** default [0.9, 0.999] */
  betas?: [number, number];
  /** Added to √v before the bias correction; default 1e-6 (the class's; HF's Trainer passes adam_epsilon, 1e-8). */
  eps?: number;
  /** Decoupled weight decay, applied after the update; default 0. */
  weightDecay?: number;
  /** Bias correction (`correct_bias`); default true. */
  correctBias?: boolean;
}

/**
 * transformers 4.x's `AdamW` (transformers.optimization.AdamW, gone by 4.57; `optim: 'adamw_hf'`
 * in TrainingArguments): Adam whose ε is added to √v before the bias correction (the step is
 * lr·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v+ε)), then weight decay `p −= lr·wd·p` on the updated parameter. It
 * differs from {@link AdamW} where |g| is near ε·√(1−β2ᵗ) (early steps, tiny gradients) and by the
 * order of the decay. SPECTRA's main.py without apex and HF Trainer ≤ 4.3x by default trained with it.
 * @throws EmotorchError ERR_INVALID_ARG for bad options or parameters.
 * @example
 * const opt = new et.optim.AdamWHF(et.systems.spectra.spectraParamGroups(model, 0.01), { lr: 1e-4, eps: 1e-8 });
 */
export class AdamWHF extends Optimizer {
  protected readonly kind = 'adamw_hf' as const;
  constructor(params: Tensor[] | ParamGroup[], opts: AdamWHFOptions = {}) {
    checkOptionNames(opts, ['lr', 'betas', 'eps', 'weightDecay', 'correctBias'], 'AdamWHF');
    const correct = opts.correctBias ?? ADAMW_HF_DEFAULTS.correctBias;
    if (typeof correct !== 'boolean') invalid('a boolean', 'correctBias', correct);
    const { groups, tensors } = adamGroups(params, opts, ADAMW_HF_DEFAULTS, { biasCorrection: correct });
    super('adamw_hf', groups, tensors);
  }
}

/** apex `FusedAdam`'s defaults (apex/optimizers/fused_adam.py). */
export const FUSED_ADAM_DEFAULTS = {
  lr: 1e-3,
  betas: [0.9, 0.999] as [number, number],
  eps: 1e-8,
  weightDecay: 0,
  biasCorrection: true,
  adamWMode: true,
} as const;

/** Options of `new FusedAdam` (apex `FusedAdam`'s arguments, camelCase). */
export interface FusedAdamOptions {
  /** default 1e-3 */
  lr?: number;
  /** default [0.9, 0.999] */
  betas?: [number, number];
  /** Added to √(v/bc2); default 1e-8. */
  eps?: number;
  /** default 0 */
  weightDecay?: number;
  /** Divide the moments by 1−βᵗ; default true (SPECTRA passes false). */
  biasCorrection?: boolean;
  /** Decoupled weight decay (`lr·wd·p` added to the step, true) or L2 (`wd·p` added to the gradient, false); default true. */
  adamWMode?: boolean;
}

/**
 * apex's `FusedAdam` (its `multi_tensor_adam` kernel's arithmetic, on any device): moments and math
 * in float32, `p −= lr·((m/bc1)/(√(v/bc2)+ε) + wd·p)` in AdamW mode, with bc = 1 − βᵗ or 1 without
 * bias correction. SPECTRA's main.py trains with `FusedAdam(groups, lr, bias_correction=False)`
 * under `--apex_level` > 0 (the released pre-training's train-960.sh). apex counts the step per group
 * (every `step()`), emotorch per parameter: the same unless a parameter skips a step with bias correction on.
 * @throws EmotorchError ERR_INVALID_ARG for bad options or parameters.
 * @example
 * const opt = new et.optim.FusedAdam(et.systems.spectra.spectraParamGroups(model, 0.01), { lr: 1e-4, biasCorrection: false });
 */
export class FusedAdam extends Optimizer {
  protected readonly kind = 'fused_adam' as const;
  constructor(params: Tensor[] | ParamGroup[], opts: FusedAdamOptions = {}) {
    checkOptionNames(opts, ['lr', 'betas', 'eps', 'weightDecay', 'biasCorrection', 'adamWMode'], 'FusedAdam');
    const bias = opts.biasCorrection ?? FUSED_ADAM_DEFAULTS.biasCorrection;
    const mode = opts.adamWMode ?? FUSED_ADAM_DEFAULTS.adamWMode;
    if (typeof bias !== 'boolean') invalid('a boolean', 'biasCorrection', bias);
    if (typeof mode !== 'boolean') invalid('a boolean', 'adamWMode', mode);
    const { groups, tensors } = adamGroups(params, opts, FUSED_ADAM_DEFAULTS, { biasCorrection: bias, adamWMode: mode });
    super('fused_adam', groups, tensors);
  }
}

/** Options of `new SGD` (torch.optim.SGD's arguments, camelCase). */
export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  /** L2 penalty added to the gradient; default 0. */
  weightDecay?: number;
  nesterov?: boolean;
}

/** Stochastic gradient descent with optional momentum and Nesterov, as torch.optim.SGD. */
export class SGD extends Optimizer {
  protected readonly kind = 'sgd' as const;
  constructor(params: Tensor[] | ParamGroup[], opts: SGDOptions) {
    if (!opts || typeof opts !== 'object') invalid('options with lr', 'SGD options', opts);
    checkOptionNames(opts, ['lr', 'momentum', 'dampening', 'nesterov', 'weightDecay'], 'SGD');
    const lr = checkNumber(opts.lr, 'lr', 0);
    const momentum = checkNumber(opts.momentum ?? SGD_DEFAULTS.momentum, 'momentum', 0);
    const dampening = checkNumber(opts.dampening ?? SGD_DEFAULTS.dampening, 'dampening', 0, 1);
    const nesterov = opts.nesterov ?? SGD_DEFAULTS.nesterov;
    if (nesterov && (momentum <= 0 || dampening !== 0)) invalid('momentum > 0 and dampening 0 with nesterov', 'SGD options', opts);
    const wd = checkNumber(opts.weightDecay ?? SGD_DEFAULTS.weightDecay, 'weightDecay', 0);
    const norm = normalizeGroups(params, 'params');
    const groups = norm.map((g, i) => ({
      params: g.params.map((p) => p.handle),
      lr: g.lr === undefined ? lr : checkNumber(g.lr, `params[${i}].lr`, 0),
      weightDecay: g.weightDecay === undefined ? wd : checkNumber(g.weightDecay, `params[${i}].weightDecay`, 0),
      momentum,
      dampening,
      nesterov,
    }));
    super(
      'sgd',
      groups,
      norm.map((g) => g.params),
    );
  }
}

/**
 * Two parameter groups from a module's trainable parameters: weights (ndim ≥ 2) with
 * `weightDecay`, and biases and norm parameters (ndim < 2) without, as SALMONN and HF do.
 */
export function decayGroups(module: { namedParameters(): Array<[string, Tensor]> }, weightDecay: number): ParamGroup[] {
  checkNumber(weightDecay, 'weightDecay', 0);
  const decay: Tensor[] = [];
  const noDecay: Tensor[] = [];
  for (const [name, p] of module.namedParameters()) {
    if (!p.requiresGrad) continue;
    (p.ndim < 2 || name.endsWith('.bias') || /norm/i.test(name) ? noDecay : decay).push(p);
  }
  return [
    { params: decay, weightDecay },
    { params: noDecay, weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}

/**
 * Scales gradients in place so that their global `normType` norm is at most `maxNorm`, as
 * torch.nn.utils.clip_grad_norm_. Resolves to the norm before clipping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): Promise<number> {
  if (!Array.isArray(params)) invalid('an array of Tensors', 'params', params);
  params.forEach((p, i) => checkTensor(p, `params[${i}]`));
  checkNumber(maxNorm, 'maxNorm', 0);
  checkNumber(normType, 'normType', 0);
  const global = shardedClip(params);
  if (global) return global(params, maxNorm, normType);
  return binding.clipGradNorm(
    params.map((p) => p.handle),
    maxNorm,
    normType,
  );
}
