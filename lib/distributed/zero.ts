/**
 * ShardedDataParallel: data-parallel training whose optimizer state (stage 1), gradients (stage 2)
 * and parameters (stage 3) are split across the ranks, as DeepSpeed's ZeRO and PyTorch's FSDP.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, cat, zeros } from '../tensor';
import { EmotorchError, checkOptionNames, invalid } from '../errors';
import { Module, NativeModule, StateDict } from '../nn/module';
import { afterStep, globalClip } from './shards';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../io/safetensors';
import * as group from './group';
import { describe, verifySameState } from './ddp';

/** Options of `new et.distributed.ShardedDataParallel` (DeepSpeed's `zero_optimization`, camelCase). */
export interface ShardedOptions {
  /**
   * 1: optimizer state sharded (gradients all-reduced, kept whole until the next forward);
   * 2: gradients too (reduce-scattered during backward, whole ones freed); 3: parameters too
   * (gathered a unit at a time around its forward and backward). Default 3.
   */
  stage?: 1 | 2 | 3;
  /**
   * Keep the float32 master shards, their gradients and so the optimizer state on the CPU while
   * the model runs on a GPU (DeepSpeed's `offload_optimizer` / `offload_param` with device
   * "cpu"). For a model on the CPU it changes nothing. Default false.
   */
  offload?: boolean;
  /** Re-send rank 0's buffers (running statistics …) before each training forward. Default true (as DDP). */
  broadcastBuffers?: boolean;
}

/** One unit of sharding: the parameters gathered, and their gradients reduced, together. */
export interface ShardUnit {
  /** The unit's name (its parameters' common prefix, e.g. `model.layers.3`). */
  name: string;
  /** Its parameters' names (as in the wrapped module). */
  parameters: string[];
}

/** Bytes a rank holds for the wrapped module's trainable parameters (each storage counted once). */
export interface ShardMemory {
  /** Whole parameters held now (all of them at stages 1–2, none between uses at stage 3) plus the float32 master shards. */
  parameters: number;
  /** Whole gradients held now plus the shards' gradients. */
  gradients: number;
}

/** What saveShards / loadShards use of an optimizer (et.optim's classes). */
export interface ShardOptimizer {
  /** The tensors it updates, group after group. */
  parameters(): Tensor[];
  /** Its state: tensors named "group.index.field", its kind and groups. */
  stateDict(): { tensors: Map<string, Tensor>; kind: string; groups: Array<{ lr: number; weightDecay: number; size: number }> };
  /** Restores {@link stateDict}'s form. */
  loadStateDict(sd: { tensors: Map<string, Tensor>; kind: string; groups: Array<{ lr: number; weightDecay: number; size: number }> }): Promise<void>;
}

const SHARD_FILE = /^zero-rank-(\d+)-of-(\d+)\.safetensors$/;
const shardFile = (rank: number, world: number): string => `zero-rank-${rank}-of-${world}.safetensors`;

/**
 * Sharded data parallel on the process group of `et.distributed.init`: each trainable parameter is
 * split along its first dimension into world pieces and each rank keeps one as a float32 master
 * shard. The optimizer is made over the wrapper's parameters, which are these shards (named as the
 * module's parameters, `module.<name>`), so its state is sharded too. Gradients are averaged over
 * the ranks during backward a unit at a time (each layer of a LLaMA-family model's layer loop, the
 * rest of each native model), overlapping the rest of backward. Whole parameters are all-gathered
 * from the shards before a forward after an optimizer step (stages 1, 2), or, at stage 3, a unit
 * at a time just before it runs and again in backward, and freed after. Mixed precision: a
 * bfloat16 model computes in bfloat16 while the shards, the gradients' reduction and the optimizer
 * work in float32. Frozen parameters (requiresGrad false when wrapped) are not sharded: every rank
 * keeps them whole. The weights after each step equal those of {@link DistributedDataParallel}
 * with the same optimizer (within rounding of the order of the sums).
 *
 * Clip with `opt.clipGradNorm` (over the shards it is the global norm, one all-reduce) or
 * {@link clipGradNorm}. The wrapped module's parameters are not readable at stage 3 between uses:
 * read the weights with {@link fullStateDict}, save and resume with {@link saveShards} /
 * {@link loadShards}, or {@link detach} to get the whole module back.
 * @example
 * await et.distributed.init();
 * const zero = new et.distributed.ShardedDataParallel(model, { stage: 3 });
 * const opt = new et.optim.AdamW(zero.trainableParameters(), { lr: 1e-5 });
 * const { loss } = await zero.forward(batch);
 * await loss.backward();          // each rank's shard gets the averaged gradient
 * await opt.clipGradNorm(1.0);    // over the whole gradient
 * await opt.step(); opt.zeroGrad();
 * const sd = await zero.fullStateDict();   // rank 0: the whole weights
 */
export class ShardedDataParallel<M extends Module = Module> extends Module {
  /** The wrapped module. */
  readonly module: M;
  /** The ZeRO stage (1, 2 or 3). */
  readonly stage: 1 | 2 | 3;
  /** Whether the master shards live on the CPU. */
  readonly offload: boolean;
  /** Resolves when rank 0's parameters and buffers have arrived and the shards are filled (forward waits for it). */
  readonly ready: Promise<void>;
  private readonly handle: group.ShardEngine;
  private readonly broadcastBuffers: boolean;
  /** The sharded parameters: name in the module, the whole parameter, its shard. */
  private readonly entries: Array<{ name: string; param: Tensor; shard: Tensor; rows: number }>;
  /** Shard tensor key → entry index. */
  private readonly byKey: Map<string, number>;
  /** Whole parameter's tensor key → entry index. */
  private readonly byParamKey: Map<string, number>;
  private detached = false;

  /**
   * @param module the model (its parameters requiring grad are sharded)
   * @param opts see {@link ShardedOptions}
   * @throws EmotorchError ERR_DIST_STATE before et.distributed.init(); ERR_INVALID_ARG for a bad
   *   module or option, or parameters on a device the backend cannot reduce.
   */
  constructor(module: M, opts: ShardedOptions = {}) {
    super();
    if (!(module instanceof Module)) invalid('an et.nn.Module', 'module', module);
    if (opts === null || typeof opts !== 'object') invalid('an options object', 'ShardedDataParallel options', opts);
    checkOptionNames(opts, ['stage', 'offload', 'broadcastBuffers'], 'ShardedDataParallel');
    const stage = opts.stage ?? 3;
    if (stage !== 1 && stage !== 2 && stage !== 3) invalid('1, 2 or 3', 'stage', stage);
    if (opts.offload !== undefined && typeof opts.offload !== 'boolean') invalid('a boolean', 'offload', opts.offload);
    if (opts.broadcastBuffers !== undefined && typeof opts.broadcastBuffers !== 'boolean') invalid('a boolean', 'broadcastBuffers', opts.broadcastBuffers);
    if (!group.isInitialized())
      throw new EmotorchError('ShardedDataParallel: the process group is not initialized (call et.distributed.init() first)', 'ERR_DIST_STATE');
    this.stage = stage;
    this.offload = opts.offload ?? false;
    this.broadcastBuffers = opts.broadcastBuffers ?? true;
    this.module = this.registerModule('module', module);
    const seen = new Set<string>();
    const all = module.namedParameters().filter(([, p]) => {
      const k = p.handle.key();
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    const be = group.backend();
    if (be === 'gloo' && all.some(([, p]) => p.device.startsWith('cuda')))
      invalid("parameters on the CPU for backend 'gloo' (use 'nccl' for a model on CUDA)", 'module', 'a module on CUDA');
    if (be === 'nccl' && all.some(([, p]) => !p.device.startsWith('cuda')))
      invalid("parameters on a CUDA device for backend 'nccl'", 'module', 'a module with CPU parameters');
    const trainable = all.filter(([, p]) => p.requiresGrad);
    if (!trainable.length) invalid('a module with parameters that require grad', 'module', 'a module with none');
    const natives: NativeModule[] = [];
    const walk = (m: Module): void => {
      if (m instanceof NativeModule) natives.push(m);
      for (const [, c] of m.children()) walk(c);
    };
    walk(module);
    this.handle = group.createShardEngine(
      trainable.map(([, p]) => p),
      trainable.map(([n]) => n),
      natives.map((m) => m.native),
      { stage, offload: this.offload },
    );
    const shards = this.handle.shards().map((h) => new Tensor(h));
    this.entries = trainable.map(([name, param], i) => ({ name, param, shard: shards[i], rows: param.ndim === 0 ? 1 : param.shape[0] }));
    this.byKey = new Map(shards.map((s, i) => [s.handle.key(), i]));
    this.byParamKey = new Map(trainable.map(([, p], i) => [p.handle.key(), i]));
    const clip = (params: Tensor[], maxNorm: number, normType: number): Promise<number> => this.clipShards(params, maxNorm, normType);
    const stepped = (): void => this.handle.markStepped();
    for (const s of shards) {
      globalClip.set(s.handle.key(), clip);
      afterStep.set(s.handle.key(), stepped);
    }
    const buffers = module.namedBuffers();
    const state = [...all.map(([, p]) => p), ...buffers.map(([, b]) => b)];
    const described = [...all.map(([n, p]) => describe('parameter', n, p)), ...buffers.map(([n, b]) => describe('buffer', n, b))];
    const device = be === 'nccl' && all.length ? all[0][1].device : 'cpu';
    this.ready = verifySameState('ShardedDataParallel', described, group.rank(), group.worldSize(), device)
      .then(() => group.broadcastMany(state, 0))
      .then(() => this.handle.start());
    this.ready.catch(() => undefined); // reported by forward (and by whoever awaits it)
  }

  /**
   * Runs the wrapped module's forward (after {@link ready}): whole parameters refreshed from the
   * shards where a step changed them, rank 0's buffers first when training and broadcastBuffers.
   * Its backward averages the gradients into the shards' `.grad` (added to what is there, so
   * several backward passes accumulate until `opt.zeroGrad()`).
   */
  async forward(...args: unknown[]): Promise<unknown> {
    this.checkAttached('forward');
    await this.ready;
    await this.handle.prepare();
    if (this.training && this.broadcastBuffers) {
      const bufs = this.module.namedBuffers().map(([, b]) => b);
      if (bufs.length) await group.broadcastMany(bufs, 0);
    }
    return this.module.forward(...args);
  }

  /**
   * Brings the wrapped module's whole parameters up to date with the shards (stages 1 and 2 after an
   * optimizer step, before the module is used directly, e.g. evaluated or decoded); forward does it
   * itself. At stage 3 the parameters are gathered by each forward, and this only refreshes those
   * outside native models. Every rank must call it.
   */
  async syncParameters(): Promise<void> {
    this.checkAttached('syncParameters');
    await this.ready;
    await this.handle.prepare();
  }

  /**
   * The wrapper's parameters: the float32 shards in place of the module's trainable parameters
   * (named `module.<name>`), the frozen ones as they are. Make the optimizer over these.
   */
  namedParameters(): Array<[string, Tensor]> {
    return super.namedParameters().map(([n, p]): [string, Tensor] => {
      const i = this.byParamKey.get(p.handle.key());
      return i === undefined ? [n, p] : [n, this.entries[i].shard];
    });
  }

  /**
   * Refused: the wrapped module's parameters are sharded. Use {@link fullStateDict} (whole
   * weights, gathered) or {@link saveShards} (this rank's shards and optimizer state).
   * @throws EmotorchError ERR_DIST_STATE always.
   */
  stateDict(): StateDict {
    throw new EmotorchError(
      'ShardedDataParallel: the parameters are sharded across the ranks; gather them with await fullStateDict(), or save the shards with saveShards(dir)',
      'ERR_DIST_STATE',
    );
  }

  /** The units of sharding, in the order their parameters were listed. */
  units(): ShardUnit[] {
    return this.handle.units().map(([name, idx]) => ({ name, parameters: idx.map((i) => this.entries[i].name) }));
  }

  /** What this rank holds now for the trainable parameters and their gradients (see {@link ShardMemory}). */
  async memory(): Promise<ShardMemory> {
    const [parameters, gradients] = await this.handle.memory();
    return { parameters, gradients };
  }

  /**
   * Scales the shards' gradients so that the whole gradient's `normType` norm (over every rank) is
   * at most `maxNorm`, as torch.nn.utils.clip_grad_norm_ on the whole model; resolves to the norm
   * before clipping. Every rank must call it. `opt.clipGradNorm` over the shards does the same.
   */
  clipGradNorm(maxNorm: number, normType = 2): Promise<number> {
    return this.clipShards(
      this.entries.map((e) => e.shard),
      maxNorm,
      normType,
    );
  }

  private clipShards(params: Tensor[], maxNorm: number, normType: number): Promise<number> {
    this.checkAttached('clipGradNorm');
    if (typeof maxNorm !== 'number' || !(maxNorm >= 0) || !Number.isFinite(maxNorm)) invalid('a finite number ≥ 0', 'maxNorm', maxNorm);
    if (typeof normType !== 'number' || !(normType > 0)) invalid('a number > 0 (or Infinity)', 'normType', normType);
    const idx = params.map((p) => this.byKey.get(p.handle.key()));
    if (idx.some((i) => i === undefined)) invalid("this wrapper's shards", 'params', 'other tensors');
    return this.handle.clipGradNorm(idx as number[], maxNorm, normType);
  }

  /**
   * The whole state of the wrapped module (its own names, no `module.` prefix): the trainable
   * parameters gathered from the shards a unit at a time, in their dtype, on the CPU; frozen
   * parameters and buffers as they are. With rankZeroOnly (default), every rank must call it and
   * only rank 0 gets the tensors (the others an empty map), as DeepSpeed's
   * `stage3_gather_16bit_weights_on_model_save`.
   */
  async fullStateDict(opts: { rankZeroOnly?: boolean } = {}): Promise<StateDict> {
    checkOptionNames(opts, ['rankZeroOnly'], 'fullStateDict options');
    const only = opts.rankZeroOnly ?? true;
    if (typeof only !== 'boolean') invalid('a boolean', 'rankZeroOnly', only);
    this.checkAttached('fullStateDict');
    await this.ready;
    const hs = await this.handle.gatherState(only);
    const out: StateDict = new Map();
    if (only && group.rank() !== 0) return out;
    for (const [n, p] of this.module.namedParameters()) {
      const i = this.byParamKey.get(p.handle.key());
      const h = i === undefined ? null : hs[i];
      out.set(n, h ? new Tensor(h) : p);
    }
    for (const [n, b] of this.module.namedBuffers()) out.set(n, b);
    return out;
  }

  /**
   * Loads whole weights (the module's names, as {@link fullStateDict} gives them) on every rank:
   * each rank keeps its rows of the trainable ones; frozen parameters and buffers are copied.
   * @throws EmotorchError ERR_STATE_DICT naming a missing key or a wrong shape (nothing changed).
   */
  async loadFullStateDict(sd: StateDict | Record<string, Tensor>): Promise<void> {
    this.checkAttached('loadFullStateDict');
    await this.ready;
    const m = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const world = group.worldSize(),
      rank = group.rank();
    const mine: Tensor[] = [];
    for (const e of this.entries) {
      const t = m.get(e.name);
      if (!(t instanceof Tensor)) throw new EmotorchError(`ShardedDataParallel: the state dict has no '${e.name}'`, 'ERR_STATE_DICT');
      if (t.shape.join(',') !== e.param.shape.join(','))
        throw new EmotorchError(`ShardedDataParallel: '${e.name}' has shape [${t.shape}], the model [${e.param.shape}]`, 'ERR_STATE_DICT');
      mine.push(rowsOf(e.param.ndim === 0 ? t.reshape([1]) : t, e.rows, rank, world));
    }
    const sharded = new Set(this.entries.map((e) => e.name));
    const rest = new Map([...m].filter(([k]) => !sharded.has(k)));
    const frozen = this.module.namedParameters().filter(([, p]) => !this.byParamKey.has(p.handle.key()));
    if (rest.size) {
      const known = new Set([...frozen.map(([n]) => n), ...this.module.namedBuffers().map(([n]) => n)]);
      const bad = [...rest.keys()].filter((k) => !known.has(k));
      if (bad.length)
        throw new EmotorchError(`ShardedDataParallel: the state dict has keys the model does not: ${bad.slice(0, 5).join(', ')}`, 'ERR_STATE_DICT');
      await this.module.loadStateDict(rest, { strict: false });
    }
    await this.handle.setShards(
      mine.map((_, i) => i),
      mine.map((t) => t.handle),
    );
  }

  /**
   * Writes this rank's shards (and, given, the optimizer's state of them) to
   * `<dir>/zero-rank-<rank>-of-<world>.safetensors`; every rank must call it with the same folder
   * (on storage every rank reaches). {@link loadShards} resumes from them on any number of ranks.
   */
  async saveShards(dir: string, opts: { optimizer?: ShardOptimizer } = {}): Promise<void> {
    checkOptionNames(opts, ['optimizer'], 'saveShards options');
    if (typeof dir !== 'string' || !dir) invalid('a folder path', 'dir', dir);
    this.checkAttached('saveShards');
    await this.ready;
    const tensors = new Map<string, Tensor>();
    this.entries.forEach((e) => tensors.set(`param.${e.name}`, e.shard.detach()));
    const meta: Record<string, string> = {
      format: 'emotorch-zero',
      world: String(group.worldSize()),
      rank: String(group.rank()),
      stage: String(this.stage),
      rows: JSON.stringify(Object.fromEntries(this.entries.map((e) => [e.name, e.rows]))),
    };
    if (opts.optimizer) {
      const sd = opts.optimizer.stateDict();
      const where = this.optimizerSlots(opts.optimizer);
      for (const [k, t] of sd.tensors) {
        const [g, i, field] = k.split('.');
        const e = this.entries[where.get(`${g}.${i}`) as number];
        tensors.set(`optim.${e.name}.${field}`, t);
      }
      meta.optimizer = JSON.stringify({ kind: sd.kind, groups: sd.groups });
    }
    fs.mkdirSync(dir, { recursive: true });
    await saveSafetensors(path.join(dir, shardFile(group.rank(), group.worldSize())), tensors, meta);
  }

  /**
   * Resumes from {@link saveShards}' files in `dir`, written by any number of ranks: each
   * parameter (and optimizer moment) is put together from their rows and this rank keeps its
   * own, bit for bit. The optimizer must be made as the saved one was (same kind and groups).
   * @throws EmotorchError ERR_FORMAT for a missing, foreign or inconsistent file; ERR_STATE_DICT
   *   for a parameter the files lack or give another shape (nothing changed then).
   */
  async loadShards(dir: string, opts: { optimizer?: ShardOptimizer } = {}): Promise<void> {
    checkOptionNames(opts, ['optimizer'], 'loadShards options');
    if (typeof dir !== 'string' || !dir) invalid('a folder path', 'dir', dir);
    this.checkAttached('loadShards');
    await this.ready;
    const found = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => SHARD_FILE.test(f)) : [];
    if (!found.length) throw new EmotorchError(`ShardedDataParallel.loadShards: '${dir}' holds no zero-rank-<r>-of-<n>.safetensors`, 'ERR_FORMAT');
    const saved = Number((SHARD_FILE.exec(found[0]) as RegExpExecArray)[2]);
    const files = Array.from({ length: saved }, (_, r) => path.join(dir, shardFile(r, saved)));
    for (const f of files)
      if (!fs.existsSync(f)) throw new EmotorchError(`ShardedDataParallel.loadShards: '${f}' is missing (the files are of ${saved} ranks)`, 'ERR_FORMAT');
    const headers = files.map((f) => readSafetensorsHeader(f));
    headers.forEach((h, r) => {
      if (h.metadata.format !== 'emotorch-zero' || h.metadata.world !== String(saved) || h.metadata.rank !== String(r))
        throw new EmotorchError(`ShardedDataParallel.loadShards: '${files[r]}' is not rank ${r} of ${saved} of an emotorch ZeRO checkpoint`, 'ERR_FORMAT');
    });
    const world = group.worldSize(),
      rank = group.rank();
    // Only what this rank needs, a tensor at a time (never a whole model's files at once): with the
    // same world its own file's piece, else each file's rows of it, put together and cut again.
    const read = async (r: number, key: string): Promise<Tensor> => {
      if (!headers[r].entries.has(key)) throw new EmotorchError(`ShardedDataParallel.loadShards: '${files[r]}' has no '${key}'`, 'ERR_STATE_DICT');
      return (await loadSafetensors(files[r], { only: [key] })).tensors.get(key) as Tensor;
    };
    const pieceOf = async (key: string, rows: number, scalar: boolean): Promise<Tensor> => {
      if (saved === world) return read(rank, key);
      if (scalar) return read(0, key); // a step count: the same on every rank
      const ts: Tensor[] = [];
      for (let r = 0; r < saved; r++) ts.push(await read(r, key));
      return rowsOf(cat(ts, 0).slice(0, 0, rows), rows, rank, world);
    };
    const values: Tensor[] = [];
    for (const e of this.entries) {
      const t = await pieceOf(`param.${e.name}`, e.rows, false);
      if (t.shape.join(',') !== e.shard.shape.join(','))
        throw new EmotorchError(
          `ShardedDataParallel.loadShards: '${e.name}' has shape [${t.shape}] in the files, this rank's shard [${e.shard.shape}]`,
          'ERR_STATE_DICT',
        );
      values.push(t);
    }
    let optState: Parameters<ShardOptimizer['loadStateDict']>[0] | null = null;
    if (opts.optimizer) {
      const metaOpt = headers[0].metadata.optimizer;
      if (!metaOpt) throw new EmotorchError(`ShardedDataParallel.loadShards: '${files[0]}' holds no optimizer state`, 'ERR_FORMAT');
      let info: { kind: string; groups: Array<{ lr: number; weightDecay: number; size: number }> };
      try {
        info = JSON.parse(metaOpt);
      } catch {
        throw new EmotorchError(`ShardedDataParallel.loadShards: '${files[0]}' has corrupt optimizer metadata`, 'ERR_FORMAT');
      }
      const where = this.optimizerSlots(opts.optimizer);
      const keys = [...headers[0].entries.keys()].filter((k) => k.startsWith('optim.'));
      const tensors = new Map<string, Tensor>();
      for (const [slot, i] of where) {
        const e = this.entries[i];
        for (const k of keys.filter((kk) => kk.startsWith(`optim.${e.name}.`) && !kk.slice(`optim.${e.name}.`.length).includes('.'))) {
          const field = k.slice(`optim.${e.name}.`.length);
          tensors.set(`${slot}.${field}`, await pieceOf(k, e.rows, field === 'step'));
        }
      }
      optState = { tensors, kind: info.kind, groups: info.groups };
    }
    if (optState && opts.optimizer) await opts.optimizer.loadStateDict(optState);
    await this.handle.setShards(
      values.map((_, i) => i),
      values.map((t) => t.handle),
    );
  }

  /**
   * Gathers every parameter back into the module and stops sharding (hooks removed); the module
   * is whole and plain again, to be saved or used alone. Every rank must call it.
   */
  async detach(): Promise<M> {
    if (!this.detached) {
      this.detached = true;
      await this.ready.catch(() => undefined);
      await this.handle.detach();
      this.forget();
    }
    return this.module;
  }

  /** @internal dispose(): the hooks go (Module.dispose then disposes the wrapped module). */
  protected disposeNative(): void {
    this.forget();
  }

  private forget(): void {
    for (const e of this.entries) {
      globalClip.delete(e.shard.handle.key());
      afterStep.delete(e.shard.handle.key());
    }
  }

  /** The optimizer's "group.index" slots of this wrapper's shards → entry index. */
  private optimizerSlots(opt: ShardOptimizer): Map<string, number> {
    const sd = opt.stateDict();
    const params = opt.parameters();
    const out = new Map<string, number>();
    let flat = 0;
    sd.groups.forEach((g, gi) => {
      for (let i = 0; i < g.size; i++, flat++) {
        const e = this.byKey.get(params[flat].handle.key());
        if (e === undefined) invalid("an optimizer over this wrapper's parameters (its shards)", 'optimizer', `one with '${params[flat].toString()}'`);
        out.set(`${gi}.${i}`, e);
      }
    });
    return out;
  }

  private checkAttached(what: string): void {
    if (this.detached) throw new EmotorchError(`ShardedDataParallel.${what}: the wrapper was detached`, 'ERR_DIST_STATE');
  }
}

/** Rows [rank·R, (rank+1)·R) of `full` (R = ⌈rows / world⌉), padded with zero rows to R. */
function rowsOf(full: Tensor, rows: number, rank: number, world: number): Tensor {
  const R = Math.ceil(rows / world);
  const lo = Math.min(rank * R, rows),
    hi = Math.min((rank + 1) * R, rows);
  const part = full.slice(0, lo, hi);
  if (hi - lo === R) return part.contiguous();
  const pad = zeros([R - (hi - lo), ...full.shape.slice(1)], { dtype: full.dtype, device: full.device });
  return cat(hi > lo ? [part, pad] : [pad], 0);
}
