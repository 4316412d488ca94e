/**
 * Optimizers over parameter groups. The update math runs natively on the thread pool (AdamW uses
 * libtorch's fused multi-tensor kernel); per-group learning rate and weight decay let biases and
 * norms go undecayed.
 */
import { binding, OptimizerHandle, NativeGroup } from '../native';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, checkNumber, invalid } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';

/** A parameter group: its parameters and the options that differ from the optimizer's (torch's param groups). */
export interface ParamGroup {
  params: Tensor[];
  /** Overrides the optimizer's lr for this group. */
  lr?: number;
  /** Overrides the optimizer's weightDecay for this group. */
  weightDecay?: number;
}

interface GroupInfo { lr: number; weightDecay: number; size: number }

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

/** Shared machinery of {@link AdamW} and {@link SGD}. */
export abstract class Optimizer {
  /** @internal */
  protected readonly native: OptimizerHandle;
  protected readonly groups: GroupInfo[];
  protected abstract readonly kind: 'adamw' | 'sgd';
  private readonly tensors: Tensor[][];
  /** @internal */
  protected constructor(kind: 'adamw' | 'sgd', groups: NativeGroup[], tensors: Tensor[][]) {
    this.native = binding.createOptimizer(kind, groups);
    this.groups = groups.map((g) => ({ lr: g.lr, weightDecay: g.weightDecay, size: g.params.length }));
    this.tensors = tensors.map((g) => [...g]);
  }
  /** The parameters this optimizer updates, group after group (what a GradScaler unscales). */
  parameters(): Tensor[] { return this.tensors.flat(); }
  /** Applies one update from the current gradients (parameters without a gradient are skipped). */
  step(): Promise<void> { return this.native.step(); }
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
    return this.native.clipGradNorm(maxNorm, normType);
  }
  /** Drops all gradients (sets them to none, as PyTorch's default). */
  zeroGrad(): void { this.native.zeroGrad(); }
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
  getLr(group = 0): number { return this.native.lr(this.groupIndex(group)); }
  /** How many parameter groups the optimizer has. */
  get numGroups(): number { return this.groups.length; }
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
      throw new EmotorchError(`optimizer state has groups of sizes [${(sd.groups ?? []).map((g) => g.size)}] but this optimizer has [${this.groups.map((g) => g.size)}]`, 'ERR_STATE_DICT');
    }
    try {
      await this.native.setState([...sd.tensors.keys()], [...sd.tensors.values()].map((t) => t.handle));
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
      beta1: betas[0], beta2: betas[1], eps,
    }));
    super('adamw', groups, norm.map((g) => g.params));
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
      momentum, dampening, nesterov,
    }));
    super('sgd', groups, norm.map((g) => g.params));
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
  return [{ params: decay, weightDecay }, { params: noDecay, weightDecay: 0 }].filter((g) => g.params.length > 0);
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
  return binding.clipGradNorm(params.map((p) => p.handle), maxNorm, normType);
}
