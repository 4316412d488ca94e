/**
 * Modules: the base class of every model. A module is either backed by a native libtorch module
 * (the built-in layers and model zoo) or composed in TypeScript from child modules and its own
 * parameters; both share this interface.
 */
import { binding, ModuleHandle, TensorHandle } from '../native';
import { Tensor, checkTensor, zeros } from '../tensor';
import { DType, checkDtype, isFloating } from '../dtype';
import { Device, checkDevice } from '../device';
import { EmotorchError, checkOptionNames, invalid } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';

/**
 * Set while {@link Module.stateDict} lists the buffers: native modules then give each quantized
 * layer's tensors in its files' layout (a q4_0 or int8 weight held interleaved for its CPU kernel
 * is copied back to the files' bytes); otherwise as held.
 */
let fileLayout = false;

/**
 * The native modules a model is made of, each with its names' prefix ('' for a native model;
 * 'language_model.' for InternVL's LLM).
 * @internal
 */
export function nativeParts(model: Module, prefix = ''): Array<[string, NativeModule]> {
  if ('native' in model) return [[prefix, model as NativeModule]];
  return model.children().flatMap(([n, c]) => nativeParts(c, `${prefix}${n}.`));
}

/** Whether every value of a floating tensor is finite. @internal */
export function allFinite(t: Tensor): boolean {
  const finite = t.isfinite();
  const all = finite.all();
  const ok = Boolean(all.item());
  finite.dispose();
  all.dispose();
  return ok;
}

/** A quantized Linear layer of a native part: its name there, shape, format and its tensors' state-dict keys. */
interface QuantLayer {
  part: NativeModule;
  name: string;
  full: string;
  out: number;
  in: number;
  format: string;
  keys: string[];
}

/**
 * The quantized Linear layers of a model, each with the keys of `own` (its state dict's names)
 * that are its tensors: `<layer>.weight`, `<layer>.SCB`, `<layer>.weight.<name>` (bitsandbytes').
 */
function quantLayers(model: Module, own: Map<string, Tensor>): QuantLayer[] {
  const out: QuantLayer[] = [];
  for (const [prefix, part] of nativeParts(model))
    for (const [name, o, i, format] of binding.linearLayers(part.native)) {
      if (!format) continue;
      const full = prefix + name;
      const keys = [...own.keys()].filter((k) => k === `${full}.weight` || k === `${full}.SCB` || k.startsWith(`${full}.weight.`));
      out.push({ part, name, full, out: o, in: i, format, keys });
    }
  return out;
}

/** Where a module's parameters live: device and dtype (as `module.to(device, dtype)`). */
export interface ModuleOptions {
  device?: Device;
  dtype?: DType;
}

/** The names {@link ModuleOptions} has: the options every model's `create` takes (a model adds its own to them). */
export const MODULE_OPTIONS: readonly string[] = ['device', 'dtype'];

/**
 * Checks the options of a model's `create` (or another call taking {@link ModuleOptions}): each
 * name must be `device`, `dtype` or one of the model's `extra` ones; a misspelt or foreign name
 * (`dtpye`, `quantize`) is refused, naming it and the options taken, before anything is built.
 * @internal
 * @returns the options (`{}` for undefined)
 * @throws EmotorchError ERR_INVALID_ARG
 */
export function checkModuleOptions<T extends object>(opts: T | undefined, name: string, extra: readonly string[] = []): T {
  return checkOptionNames(opts, [...MODULE_OPTIONS, ...extra], name);
}

/** What loading a state dict did: the keys that were missing and those that were unexpected. */
export interface LoadReport {
  /** Keys the module has but the state dict lacks. */
  missing: string[];
  /** Keys the state dict has but the module lacks. */
  unexpected: string[];
}

/** Options of `loadStateDict`. */
export interface LoadStateDictOptions {
  /** Default true: missing or unexpected keys are an error. A wrong shape is always an error. */
  strict?: boolean;
  /**
   * Make the state dict's tensors the parameters' data instead of copying into them (PyTorch's
   * `load_state_dict(assign=True)`): a tensor already in the wanted dtype and device is used as
   * it is, storage shared with the state dict; the parameters' old storage is released. Default false.
   */
  assign?: boolean;
  /** With `assign`: the dtype floating tensors take (default: each parameter's own). */
  dtype?: DType;
}

/** A state dict: parameter and buffer names (the original checkpoints' names) to tensors. */
export type StateDict = Map<string, Tensor>;

/**
 * Base class of every model. Subclass it to compose native modules in TypeScript; like every
 * model, take one object of named inputs and return one of named outputs (DESIGN rule 10), so the
 * Trainer and a hand-written loop drive it alike:
 * @example
 * class Classifier extends et.nn.Module {
 *   encoder = this.registerModule('encoder', et.nn.Mlp.create({ sizes: [16, 32, 32] }));
 *   head = this.registerModule('head', et.nn.Linear.create({ in_features: 32, out_features: 4 }));
 *   async forward({ inputFeatures }: { inputFeatures: et.Tensor }) {
 *     return { logits: await this.head.forward(await this.encoder.forward(inputFeatures)) };
 *   }
 * }
 */
export abstract class Module {
  private readonly _children = new Map<string, Module>();
  private readonly _params = new Map<string, Tensor>();
  private readonly _buffers = new Map<string, Tensor>();
  private _training = true;

  /** Runs the module. Native modules run on the thread pool; calls on one module are serialized. */
  abstract forward(...args: unknown[]): Promise<unknown>;

  /** Adds a child module under `name` (its parameters appear as `name.…`). */
  registerModule<M extends Module>(name: string, m: M): M {
    if (typeof name !== 'string' || !name || name.includes('.')) invalid('a non-empty name without dots', 'module name', name);
    if (!(m instanceof Module)) invalid('a Module', `module '${name}'`, m);
    this._children.set(name, m);
    return m;
  }

  /** Adds a parameter owned by this TypeScript module (made a leaf that requires grad). */
  registerParameter(name: string, t: Tensor): Tensor {
    if (typeof name !== 'string' || !name || name.includes('.')) invalid('a non-empty name without dots', 'parameter name', name);
    checkTensor(t, `parameter '${name}'`);
    // Optimizers update parameters in place as flat memory: a strided or expanded view becomes
    // a contiguous tensor of its own (the view's base is never written through it).
    t = t.contiguous();
    if (!t.isLeaf) t = t.detach();
    t.requiresGrad = true;
    this._params.set(name, t);
    return t;
  }

  /**
   * Adds a buffer owned by this TypeScript module: state that moves and casts with the module and
   * is in its state dict, but is no parameter (never trained, `unfreeze` leaves it alone).
   */
  registerBuffer(name: string, t: Tensor): Tensor {
    if (typeof name !== 'string' || !name || name.includes('.')) invalid('a non-empty name without dots', 'buffer name', name);
    checkTensor(t, `buffer '${name}'`);
    t = t.contiguous();
    if (!t.isLeaf) t = t.detach();
    t.requiresGrad = false;
    this._buffers.set(name, t);
    return t;
  }

  /** Direct children, by name. */
  children(): Array<[string, Module]> {
    return [...this._children.entries()];
  }

  /** @internal Native parameters and buffers of this module itself (not of children). */
  protected ownNative(): { params: Array<[string, Tensor]>; buffers: Array<[string, Tensor]> } {
    return { params: [...this._params.entries()], buffers: [...this._buffers.entries()] };
  }

  /** All parameters with their full dotted names, children included. */
  namedParameters(): Array<[string, Tensor]> {
    this.checkLive();
    const out = this.ownNative().params;
    for (const [cn, c] of this._children) for (const [n, p] of c.namedParameters()) out.push([`${cn}.${n}`, p]);
    return out;
  }
  /**
   * All buffers (non-trainable state such as running statistics) with full names, and the
   * quantized layers' tensors as held (see {@link stateDict}).
   */
  namedBuffers(): Array<[string, Tensor]> {
    this.checkLive();
    const out = this.ownNative().buffers;
    for (const [cn, c] of this._children) for (const [n, b] of c.namedBuffers()) out.push([`${cn}.${n}`, b]);
    return out;
  }
  /**
   * Every distinct parameter once (a parameter shared between submodules, such as BEATs'
   * relative position table, is listed under each name by namedParameters but once here).
   */
  parameters(): Tensor[] {
    const seen = new Set<string>();
    return this.namedParameters()
      .map(([, p]) => p)
      .filter((p) => {
        const k = p.handle.key();
        if (seen.has(k)) return false;
        seen.add(k);
        return true;
      });
  }
  /** Parameters that require grad: what an optimizer should update. */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((p) => p.requiresGrad);
  }
  /** Total number of parameter elements (`trainableOnly` counts those requiring grad). */
  numParameters(trainableOnly = false): number {
    return (trainableOnly ? this.trainableParameters() : this.parameters()).reduce((a, p) => a + p.numel, 0);
  }

  /** Stops gradients for every parameter (for frozen encoders). */
  freeze(): this {
    for (const p of this.parameters()) p.requiresGrad = false;
    return this;
  }
  /** Lets every parameter take gradients again. */
  unfreeze(): this {
    for (const p of this.parameters()) p.requiresGrad = true;
    return this;
  }

  /** Whether the module is in training mode (`train()` / `eval()`; dropout is active only in training). */
  get training(): boolean {
    return this._training;
  }
  /** Training mode (dropout on) for this module and its children. */
  train(on = true): this {
    this._training = on;
    this.setNativeTraining(on);
    for (const c of this._children.values()) c.train(on);
    return this;
  }
  /** Evaluation mode (dropout off). */
  eval(): this {
    return this.train(false);
  }
  /** @internal */
  protected setNativeTraining(_on: boolean): void {}

  /**
   * Gradient (activation) checkpointing, as HF's `gradient_checkpointing_enable()`: while training,
   * the layers of the models that support it (LLaMA-family LLMs, InternViT) keep only their inputs
   * and run again in backward — less memory for about one more forward of time; gradients unchanged
   * (dropout draws the same masks again).
   * @returns how many of this module's models recompute their layers (0: none supports it)
   * @example
   * ivl.setGradientCheckpointing(true);   // the vision tower and the LLM
   */
  setGradientCheckpointing(on: boolean): number {
    if (typeof on !== 'boolean') invalid('a boolean', 'on', on);
    let n = this.setNativeGradientCheckpointing(on) ? 1 : 0;
    for (const c of this._children.values()) n += c.setGradientCheckpointing(on);
    return n;
  }
  /** @internal */
  protected setNativeGradientCheckpointing(_on: boolean): boolean {
    return false;
  }

  /**
   * Frees this module's parameters and buffers now instead of at garbage collection (children
   * included). Afterwards forward, parameters() and every other use throw ERR_DISPOSED; tensors
   * taken from it before stay valid. Calling it again does nothing.
   */
  dispose(): void {
    for (const c of this._children.values()) c.dispose();
    for (const t of [...this._params.values(), ...this._buffers.values()]) if (!t.isDisposed) t.dispose();
    this._params.clear();
    this._buffers.clear();
    this._disposed = true;
    this.disposeNative();
  }
  /** True after {@link dispose}. */
  get isDisposed(): boolean {
    return this._disposed;
  }
  private _disposed = false;
  /** @internal */
  protected disposeNative(): void {}
  /** @internal */
  protected checkLive(): void {
    if (this._disposed) throw new EmotorchError('this module was disposed', 'ERR_DISPOSED');
  }

  /**
   * Moves parameters and buffers to a device and/or casts floating ones to a dtype. A native
   * model's tensors move in place; parameters registered from TypeScript (`registerParameter`) are
   * replaced by moved copies: take `parameters()` and create optimizers after moving.
   */
  async to(opts: ModuleOptions): Promise<this> {
    checkOptionNames(opts, ['device', 'dtype'], 'Module.to options');
    const device = opts.device === undefined ? null : checkDevice(opts.device);
    const dtype = opts.dtype === undefined ? null : checkDtype(opts.dtype);
    await this.moveNative(device, dtype);
    for (const [n, p] of this._params) {
      const moved = p.to({ device: device ?? undefined, dtype: dtype && isFloating(p.dtype) ? dtype : undefined }).detach();
      moved.requiresGrad = p.requiresGrad;
      this._params.set(n, moved);
    }
    for (const [n, b] of this._buffers)
      this._buffers.set(n, b.to({ device: device ?? undefined, dtype: dtype && isFloating(b.dtype) ? dtype : undefined }).detach());
    for (const c of this._children.values()) await c.to(opts);
    return this;
  }
  /** @internal */
  protected async moveNative(_device: string | null, _dtype: string | null): Promise<void> {}

  /**
   * Parameters and buffers by full name, sharing memory with the module; a quantized layer's
   * tensors in its files' layout: a q4_0 or int8 weight that a CPU with AVX-512 VNNI holds
   * interleaved for its kernel comes as the files' bytes, in a copy ({@link namedBuffers} gives it
   * as held).
   */
  stateDict(opts: { trainableOnly?: boolean } = {}): StateDict {
    opts = checkOptionNames(opts, ['trainableOnly'], 'stateDict options');
    const params = this.namedParameters().filter(([, p]) => !opts.trainableOnly || p.requiresGrad);
    if (opts.trainableOnly) return new Map(params);
    fileLayout = true;
    try {
      return new Map([...params, ...this.namedBuffers()]);
    } finally {
      fileLayout = false;
    }
  }

  /**
   * Copies values from a state dict into this module's parameters and buffers (dtype and device
   * converted), or with `assign` makes them the parameters' data. Checks everything before
   * copying anything.
   * @param opts.strict default true: missing or unexpected keys are an error. A wrong shape is
   *   always an error.
   * @param opts.assign share the state dict's tensors instead of copying (see {@link LoadStateDictOptions})
   * @param opts.dtype with `assign`, the dtype of floating tensors
   * @returns the missing and unexpected keys (empty when strict).
   * @throws EmotorchError ERR_STATE_DICT naming each offending key (and both shapes); ERR_INVALID_ARG for a bad option.
   * @example
   * await model.loadStateDict((await et.io.loadSafetensors('model.safetensors')).tensors, { assign: true, dtype: 'bfloat16' });
   */
  async loadStateDict(sd: StateDict | Record<string, Tensor>, opts: LoadStateDictOptions = {}): Promise<LoadReport> {
    checkOptionNames(opts, ['strict', 'assign', 'dtype'], 'loadStateDict options');
    const strict = opts.strict ?? true;
    if (opts.assign !== undefined && typeof opts.assign !== 'boolean') invalid('a boolean', 'assign', opts.assign);
    const dtype = opts.dtype === undefined ? null : checkDtype(opts.dtype);
    if (dtype && !isFloating(dtype)) invalid('a floating dtype', 'loadStateDict options.dtype', dtype);
    if (dtype && !opts.assign) invalid("dtype only with assign: true (a copy keeps the model's dtype)", 'loadStateDict options', 'dtype');
    const src = sd instanceof Map ? sd : new Map(Object.entries(sd));
    // the tensors as held (no copies); a quantized layer's tensors are set through their layer (all of
    // them or none: its codes and scales go together), which checks them and makes the layout its
    // kernel reads from the files' bytes (q4_0's and int8's weights are held interleaved on some CPUs:
    // bytes copied into the held weight would be read as another weight without a word)
    const own = new Map([...this.namedParameters(), ...this.namedBuffers()]);
    const quantized = quantLayers(this, own);
    const inQuantized = new Set(quantized.flatMap((l) => l.keys));
    const missing = [...own.keys()].filter((k) => !src.has(k));
    const unexpected = [...src.keys()].filter((k) => !own.has(k));
    const mismatched: string[] = [];
    const dst: Tensor[] = [];
    const from: Tensor[] = [];
    for (const [k, t] of own) {
      const s = src.get(k);
      if (!s) continue;
      if (!(s instanceof Tensor)) invalid('a Tensor', `state dict entry '${k}'`, s);
      if (s.shape.join() !== t.shape.join()) mismatched.push(`'${k}': checkpoint [${s.shape}] vs model [${t.shape}]`);
      if (inQuantized.has(k)) continue;
      dst.push(t);
      from.push(s);
    }
    const sets = quantized.filter((l) => l.keys.some((k) => src.has(k)));
    const partial = sets
      .filter((l) => !l.keys.every((k) => src.has(k)))
      .map((l) => `'${l.full}' (${l.format}) has ${l.keys.filter((k) => src.has(k)).join(', ')} but not ${l.keys.filter((k) => !src.has(k)).join(', ')}`);
    const problems: string[] = [];
    if (mismatched.length) problems.push(`wrong shape for ${mismatched.join(', ')}`);
    if (strict && missing.length) problems.push(`missing keys: ${missing.map((k) => `'${k}'`).join(', ')}`);
    if (strict && unexpected.length) problems.push(`unexpected keys: ${unexpected.map((k) => `'${k}'`).join(', ')}`);
    if (!strict && partial.length) problems.push(`a quantized layer takes all of its tensors or none: ${partial.join('; ')}`);
    if (problems.length) throw new EmotorchError(`loadStateDict: ${problems.join('; ')}`, 'ERR_STATE_DICT');
    // a quantized layer's codes in their dtype, its scales and tables floating and finite (a NaN or an
    // infinity there would make every product of the layer NaN without a word)
    for (const l of sets)
      for (const k of l.keys) {
        const s = src.get(k)!,
          held = own.get(k)!;
        if (isFloating(held.dtype) ? !isFloating(s.dtype) : s.dtype !== held.dtype)
          throw new EmotorchError(
            `loadStateDict: '${k}' is ${s.dtype}; ${l.format}'s is ${isFloating(held.dtype) ? 'floating' : held.dtype}`,
            'ERR_STATE_DICT',
          );
        if (isFloating(s.dtype) && !allFinite(s))
          throw new EmotorchError(`loadStateDict: '${k}' has NaN or infinite values (a corrupt quant state)`, 'ERR_STATE_DICT');
      }
    if (opts.assign)
      await binding.assignState(
        dst.map((t) => t.handle),
        from.map((t) => t.handle),
        dtype,
      );
    else
      await binding.copyState(
        dst.map((t) => t.handle),
        from.map((t) => t.handle),
      );
    for (const l of sets) {
      // each on the layer's device, the floats in the layer's dtype; a copy unless assigned
      const made: Tensor[] = [];
      const ts: Record<string, TensorHandle> = {};
      for (const k of l.keys) {
        const held = own.get(k)!;
        const moved = src.get(k)!.to({ device: held.device, dtype: held.dtype });
        made.push(opts.assign ? moved : moved.clone());
        if (!opts.assign) moved.dispose();
        ts[k === `${l.full}.weight` || k === `${l.full}.SCB` ? k.slice(l.full.length + 1) : k.slice(l.full.length + 8)] = made[made.length - 1].handle;
      }
      try {
        await binding.setQuantized(l.part.native, l.name, l.format, l.out, l.in, ts);
      } finally {
        for (const t of made) t.dispose();
      }
    }
    return { missing, unexpected };
  }

  /**
   * Saves the state dict as safetensors. `trainableOnly` saves just the parameters that require
   * grad (adapters, heads: what SALMONN checkpoints hold).
   */
  async save(path: string, opts: { trainableOnly?: boolean; metadata?: Record<string, string> } = {}): Promise<void> {
    opts = checkOptionNames(opts, ['trainableOnly', 'metadata'], 'save options');
    await saveSafetensors(path, this.stateDict({ trainableOnly: opts.trainableOnly }), opts.metadata ?? {});
  }

  /**
   * Loads a safetensors file saved by {@link save} (or any with matching names).
   * @param opts.strict default true, except that a file saved with `trainableOnly` may omit
   *   the frozen parameters: pass `strict: false` for such files.
   */
  async load(path: string, opts: { strict?: boolean } = {}): Promise<LoadReport> {
    opts = checkOptionNames(opts, ['strict'], 'load options');
    const { tensors } = await loadSafetensors(path);
    return this.loadStateDict(tensors, opts);
  }
}

const readOnlyViews = new WeakMap<object, object>();

/** A view of `o` (and of the objects inside it) that throws a coded error on every write. */
function readOnlyView<T extends object>(o: T, name: string): T {
  const seen = readOnlyViews.get(o);
  if (seen) return seen as T;
  const refuse = (k: string | symbol): never => {
    throw new EmotorchError(
      `${name} is read-only (${String(k)}): a model's config is fixed when it is made; pass changes to create(config) or fromPretrained(dir, { config: { … } })`,
      'ERR_INVALID_ARG',
    );
  };
  const view = new Proxy(o, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      return v !== null && typeof v === 'object' && !ArrayBuffer.isView(v) && !(v instanceof Tensor) ? readOnlyView(v as object, name) : v;
    },
    set: (_t, k) => refuse(k),
    deleteProperty: (_t, k) => refuse(k),
    defineProperty: (_t, k) => refuse(k),
    setPrototypeOf: () => refuse('prototype'),
  });
  readOnlyViews.set(o, view);
  return view;
}

/**
 * Makes `target.config` a read-only view of `config`: assigning a field (or the whole config)
 * throws a coded `EmotorchError` in strict and sloppy code alike, where a frozen object would
 * throw an uncoded TypeError in one and ignore the write in the other. The model reads its
 * config once when it is made, so a later write could only be silently ignored.
 * @internal
 */
export function lockConfig<C extends object>(target: object, model: string, config: C): C {
  let own: C;
  try {
    own = structuredClone(config);
  } catch {
    own = { ...config };
  } // a copy the caller cannot change either
  const view = readOnlyView(own, `${model} config`);
  Object.defineProperty(target, 'config', {
    get: () => view,
    set: () => {
      throw new EmotorchError(`${model} config is read-only: pass changes to create(config) or fromPretrained(dir, { config: { … } })`, 'ERR_INVALID_ARG');
    },
    enumerable: true,
    configurable: false,
  });
  return view;
}

/** Nonzero while {@link createUninitialized} runs its builder. */
let skipInitDepth = 0;

/**
 * Runs `build` (which creates native modules synchronously) so that the modules it creates leave
 * their parameters uninitialized: a checkpoint is about to replace every one of them (through
 * `loadStateDict(sd, { assign: true })`), so nothing is written (no pages faulted in, no float32
 * copy of a half-precision checkpoint filled with random numbers) and the RNG is not consumed.
 * @internal
 */
export function createUninitialized<T>(build: () => T): T {
  skipInitDepth++;
  try {
    return build();
  } finally {
    skipInitDepth--;
  }
}

/**
 * A module backed by one native libtorch module (built-in layers and the model zoo).
 * @internal
 */
export abstract class NativeModule extends Module {
  /** @internal */
  readonly native: ModuleHandle;
  protected constructor(kind: string, config: object, opts: ModuleOptions = {}) {
    super();
    const device = opts.device === undefined ? null : checkDevice(opts.device);
    const dtype = opts.dtype === undefined ? null : checkDtype(opts.dtype);
    this.native = binding.createModule(kind, config, device, dtype, skipInitDepth > 0);
  }
  protected ownNative(): { params: Array<[string, Tensor]>; buffers: Array<[string, Tensor]> } {
    const base = super.ownNative();
    const wrap = ([names, hs]: [string[], unknown[]]) => names.map((n, i) => [n, new Tensor(hs[i] as never)] as [string, Tensor]);
    return { params: [...wrap(this.native.namedParameters()), ...base.params], buffers: wrap(this.native.namedBuffers(fileLayout)) };
  }
  protected setNativeTraining(on: boolean): void {
    this.native.setTraining(on);
  }
  protected setNativeGradientCheckpointing(on: boolean): boolean {
    return this.native.setGradientCheckpointing(on);
  }
  protected disposeNative(): void {
    this.native.dispose();
  }
  protected moveNative(device: string | null, dtype: string | null): Promise<void> {
    return this.native.to(device, dtype);
  }
  /**
   * @internal The one input convention: an object of named inputs, or (where a model has one
   * obvious input) that tensor alone, which becomes `inputs[primary]`.
   */
  protected namedInputs<I extends object>(inputs: I | Tensor, primary: keyof I & string, model: string): I {
    if (inputs instanceof Tensor) return { [primary]: inputs } as I;
    if (!inputs || typeof inputs !== 'object' || Array.isArray(inputs)) invalid(`an inputs object ({ ${primary}, … }) or a Tensor`, `${model} inputs`, inputs);
    return inputs;
  }
  /** @internal Rejects a zero-length sequence axis (an empty batch is fine: it gives empty outputs). */
  protected checkLength(length: number, name: string, min = 1): void {
    if (length < min) invalid(min === 1 ? 'a non-empty sequence' : `at least ${min} positions`, `${name} length`, length);
  }
  /** @internal Zeros of `shape` in this module's floating dtype on `device`: the output of an empty batch. */
  protected emptyOutput(shape: number[], device: string): Tensor {
    const p = this.parameters().find((t) => isFloating(t.dtype));
    return zeros(shape, { dtype: p?.dtype ?? 'float32', device: device as Device });
  }
  /**
   * @internal Runs the native forward over named tensors (HF's snake_case names: `input_ids`,
   * `attention_mask`, …; null or undefined = not given) and returns the outputs it computed, by
   * name. The native model must read every name sent (a misspelt one is an error).
   */
  protected async run(inputs: Record<string, Tensor | null | undefined>): Promise<Record<string, Tensor | undefined>> {
    const sent: Record<string, TensorHandle | null> = {};
    for (const [k, t] of Object.entries(inputs)) sent[k] = t ? t.handle : null;
    const out = await this.native.forward(sent);
    return Object.fromEntries(Object.entries(out).map(([k, h]) => [k, new Tensor(h)]));
  }
}
