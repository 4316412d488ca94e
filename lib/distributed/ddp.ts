/**
 * DistributedDataParallel: wraps a module so that, after each backward pass, every rank holds the
 * gradients averaged over all ranks (as torch.nn.parallel.DistributedDataParallel).
 */
import { binding, DdpHandle } from '../native';
import { Tensor, tensor } from '../tensor';
import type { Device } from '../device';
import { EmotorchError, checkNumber, invalid } from '../errors';
import { Module } from '../nn/module';
import * as group from './group';

/** Options of `new et.nn.DistributedDataParallel` (torch DDP's arguments, camelCase). */
export interface DdpOptions {
  /**
   * Allow parameters that get no gradient in some steps (an unused branch): they are found at
   * the end of backward and take part with zeros; a parameter no rank used keeps its gradient.
   * Without it such a parameter makes backward fail with its name. Default false.
   */
  findUnusedParameters?: boolean;
  /** Bucket size in MB (gradients are all-reduced a bucket at a time, during backward). Default 25. */
  bucketCapMb?: number;
  /** Re-send rank 0's buffers (running statistics …) before each training forward. Default true (as torch). */
  broadcastBuffers?: boolean;
}

/**
 * Data-parallel training over the process group of `et.distributed.init`: the module's parameters and
 * buffers are copied from rank 0 when wrapped; during each backward pass the gradients of the
 * parameters that require grad are averaged over all ranks in buckets, each bucket's all-reduce
 * starting as soon as its gradients are ready (overlapping the rest of the backward pass), so that
 * `await loss.backward()` resolves with averaged gradients. Frozen parameters (requiresGrad false
 * when wrapped, e.g. the base of a LoRA fine-tune) are left out. Each rank feeds its own shard of
 * the data (see `et.distributed.DistributedSampler`).
 *
 * Wrap after moving the model to its device and before creating the optimizer. Its parameters
 * are the module's, named `module.<name>` as torch's DDP names them; save `ddp.module` to get the
 * plain names.
 * @example
 * await et.distributed.init();
 * const ddp = new et.nn.DistributedDataParallel(model);
 * const opt = new et.optim.AdamW(ddp.trainableParameters(), { lr: 1e-4 });
 * const { loss } = await ddp.forward(batch);
 * await loss.backward();      // gradients averaged over the ranks
 * await opt.step();
 */
export class DistributedDataParallel<M extends Module = Module> extends Module {
  /** The wrapped module. */
  readonly module: M;
  /** Resolves when rank 0's parameters and buffers have arrived (forward waits for it). */
  readonly ready: Promise<void>;
  private readonly handle: DdpHandle;
  private readonly broadcastBuffers: boolean;
  /** requireBackwardGradSync as set by the user (noSync scopes aside). */
  private syncWanted = true;
  /** How many noSync scopes are running. */
  private noSyncDepth = 0;
  private readonly ddpParams: Array<[string, Tensor]>;

  /**
   * @param module the model (its parameters requiring grad are averaged)
   * @param opts see {@link DdpOptions}
   * @throws EmotorchError ERR_DIST_STATE before et.distributed.init(); ERR_INVALID_ARG for a bad
   *   module or option, or parameters on a device the backend cannot reduce.
   */
  constructor(module: M, opts: DdpOptions = {}) {
    super();
    if (!(module instanceof Module)) invalid('an et.nn.Module', 'module', module);
    if (opts === null || typeof opts !== 'object') invalid('an options object', 'DistributedDataParallel options', opts);
    for (const k of Object.keys(opts))
      if (!['findUnusedParameters', 'bucketCapMb', 'broadcastBuffers'].includes(k))
        invalid('one of findUnusedParameters, bucketCapMb, broadcastBuffers', 'DistributedDataParallel option', k);
    if (opts.findUnusedParameters !== undefined && typeof opts.findUnusedParameters !== 'boolean')
      invalid('a boolean', 'findUnusedParameters', opts.findUnusedParameters);
    if (opts.broadcastBuffers !== undefined && typeof opts.broadcastBuffers !== 'boolean') invalid('a boolean', 'broadcastBuffers', opts.broadcastBuffers);
    const capMb = opts.bucketCapMb === undefined ? 25 : checkNumber(opts.bucketCapMb, 'bucketCapMb', 1e-6, 1 << 20);
    if (!group.isInitialized())
      throw new EmotorchError('DistributedDataParallel: the process group is not initialized (call et.distributed.init() first)', 'ERR_DIST_STATE');
    this.module = this.registerModule('module', module);
    this.broadcastBuffers = opts.broadcastBuffers ?? true;
    const seen = new Set<string>();
    const all = module.namedParameters().filter(([, p]) => {
      const k = p.handle.key();
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    const onCuda = all.some(([, p]) => p.device.startsWith('cuda'));
    const be = group.backend();
    if (be === 'gloo' && onCuda) invalid("parameters on the CPU for backend 'gloo' (use 'nccl' for a model on CUDA)", 'module', 'a module on CUDA');
    if (be === 'nccl' && all.some(([, p]) => !p.device.startsWith('cuda')))
      invalid("parameters on a CUDA device for backend 'nccl'", 'module', 'a module with CPU parameters');
    this.ddpParams = all.filter(([, p]) => p.requiresGrad);
    this.handle = binding.distributed.ddpCreate(
      this.ddpParams.map(([, p]) => p.handle),
      this.ddpParams.map(([n]) => n),
      {
        bucketCapBytes: Math.max(1, Math.round(capMb * 1024 * 1024)),
        firstBucketCapBytes: Math.min(1024 * 1024, Math.max(1, Math.round(capMb * 1024 * 1024))),
        findUnused: !!opts.findUnusedParameters,
      },
    );
    const buffers = module.namedBuffers();
    const state = [...all.map(([, p]) => p), ...buffers.map(([, b]) => b)];
    const described = [...all.map(([n, p]) => describe('parameter', n, p)), ...buffers.map(([n, b]) => describe('buffer', n, b))];
    // The broadcast needs the same tensors on every rank (Gloo aborts the process otherwise).
    // (NCCL reduces CUDA tensors only: the check's tensors go to the parameters' device.)
    const device = be === 'nccl' && all.length ? all[0][1].device : 'cpu';
    this.ready = verifySameState('DistributedDataParallel', described, group.rank(), group.worldSize(), device).then(() => group.broadcastMany(state, 0));
    this.ready.catch(() => undefined); // reported by forward (and by whoever awaits it)
  }

  /**
   * Runs the wrapped module's forward (after {@link ready}; with rank 0's buffers first when
   * training and broadcastBuffers). The backward of this forward averages gradients unless the
   * forward ran inside {@link noSync} (or with requireBackwardGradSync false), wherever that
   * backward runs. Each forward starts a fresh backward state (as torch's prepare_for_backward):
   * a backward that failed does not affect the next.
   */
  async forward(...args: unknown[]): Promise<unknown> {
    await this.ready;
    await this.handle.prepare(this.requireBackwardGradSync);
    if (this.training && this.broadcastBuffers) {
      const bufs = this.module.namedBuffers().map(([, b]) => b);
      if (bufs.length) await group.broadcastMany(bufs, 0);
    }
    return this.module.forward(...args);
  }

  /**
   * Runs `fn` with gradient averaging off: the backward passes of forwards run inside it only
   * accumulate gradients locally (even when the backward itself runs after `fn` returned); the
   * backward of the first forward after it averages the accumulated sum (gradient accumulation
   * without a collective per micro-batch, as torch's `no_sync()`).
   * @example
   * await ddp.noSync(async () => { await (await ddp.forward(b1)).loss.backward(); });
   * await (await ddp.forward(b2)).loss.backward();   // averages b1 + b2's gradients
   * await opt.step();
   */
  async noSync<R>(fn: () => R | Promise<R>): Promise<R> {
    if (typeof fn !== 'function') invalid('a function', 'noSync callback', fn);
    this.noSyncDepth += 1;
    try {
      return await fn();
    } finally {
      this.noSyncDepth -= 1;
    }
  }

  /**
   * Whether the backward of a forward run now averages gradients (false inside {@link noSync}).
   * Setting it takes effect at the next forward.
   */
  get requireBackwardGradSync(): boolean {
    return this.syncWanted && this.noSyncDepth === 0;
  }
  /** Turns gradient synchronization in backward on or off (as DDP's `require_backward_grad_sync`). */
  set requireBackwardGradSync(on: boolean) {
    if (typeof on !== 'boolean') invalid('a boolean', 'requireBackwardGradSync', on);
    this.syncWanted = on;
  }

  /** The gradient buckets as lists of parameter names, in the order they are all-reduced. */
  buckets(): string[][] {
    return this.handle.buckets().map((b) => b.map((i) => this.ddpParams[i][0]));
  }

  /** @internal dispose(): stops averaging (Module.dispose then disposes the wrapped module). */
  protected disposeNative(): void {
    this.handle.detach();
  }

  /**
   * Stops averaging gradients; the wrapped module is left as it is (not disposed), to be used
   * alone or wrapped again.
   */
  detach(): M {
    this.handle.detach();
    return this.module;
  }
}

/** @internal One entry of the wrapped state, as compared across ranks. */
export function describe(kind: string, name: string, t: Tensor): string {
  return `${kind} '${name}' [${t.shape.join(', ')}] ${t.dtype}${kind === 'parameter' && !t.requiresGrad ? ' (frozen)' : ''}`;
}

/** 32-bit FNV-1a of `s` from offset basis `h` (exact in a float64). */
function fnv(s: string, h: number): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h >>> 0;
}
const hashes = (s: string): [number, number] => [fnv(s, 2166136261), fnv(s, 0x9747b28c)];

/**
 * Checks that every rank wraps the same parameters and buffers (names, shapes, dtypes, frozen or
 * not) with one all-gather of a fixed size ([count, hash, hash] per rank); on a mismatch a second
 * all-gather, of the per-entry hashes of the first min(count) entries (the same size on every
 * rank: every rank knows the counts), finds the first entry that differs. Every rank sees the same
 * gathered data, so every rank throws (and the group stays in step).
 * @throws EmotorchError ERR_INVALID_ARG naming the ranks that differ from rank 0 and the entry.
 * @internal
 */
export async function verifySameState(who: string, entries: string[], rank: number, world: number, device: Device): Promise<void> {
  if (world < 2) return;
  const mine = entries.map((e) => hashes(e));
  const total = hashes(entries.join('\n'));
  const rows = (await group.allGather(tensor([entries.length, ...total], { dtype: 'float64', device }))).map((t) =>
    Array.from(t.to({ device: 'cpu' }).dataSync() as Float64Array),
  );
  const differs = rows.map((r, i) => i).filter((i) => rows[i].some((v, k) => v !== rows[0][k]));
  if (!differs.length) return;
  const counts = rows.map((r) => r[0]);
  const n = Math.min(...counts);
  let first = n; // the first index whose entry differs on some rank (n: only the counts differ)
  let ranksAt: number[] = [];
  if (n > 0) {
    const flat = mine.slice(0, n).flat();
    const per = (await group.allGather(tensor(flat, { dtype: 'float64', device }))).map((t) => Array.from(t.to({ device: 'cpu' }).dataSync() as Float64Array));
    for (let i = 0; i < n && first === n; i++) {
      const at = per.map((p, r) => r).filter((r) => per[r][2 * i] !== per[0][2 * i] || per[r][2 * i + 1] !== per[0][2 * i + 1]);
      if (at.length) {
        first = i;
        ranksAt = at;
      }
    }
  }
  const here = first < entries.length ? entries[first] : `nothing (${entries.length} entries)`;
  const where =
    first < n
      ? `the first that differs is entry #${first}, rank${ranksAt.length > 1 ? 's' : ''} ${ranksAt.join(', ')} differ${ranksAt.length > 1 ? '' : 's'} there from rank 0; on this rank (${rank}) it is ${here}`
      : `the first ${n} agree; they have ${counts.map((c, r) => `${c} on rank ${r}`).join(', ')}; entry #${first} on this rank (${rank}) is ${here}`;
  throw new EmotorchError(
    `${who}: the wrapped module differs across ranks (rank${differs.length > 1 ? 's' : ''} ${differs.join(', ')} differ${differs.length > 1 ? '' : 's'} from rank 0 in its parameters and buffers: names, shapes, dtypes or frozen state): ${where}. Every rank must wrap the same model`,
    'ERR_INVALID_ARG',
  );
}
