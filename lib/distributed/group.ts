/**
 * The process group of this process (one, like torch's default group) and the collectives over
 * it. Collectives start on the compute thread in the order they are called (after the heavy calls
 * called before them), wait for the other ranks off the JS thread and off the compute thread, and
 * work in place as torch.distributed's do.
 */
import { binding, ModuleHandle, ZeroHandle } from '../native';
import { Tensor, checkTensor } from '../tensor';
import { isFloating } from '../dtype';
import { EmotorchError, invalid } from '../errors';
import { DistEnv, readEnv } from './env';

/** The c10d backends: Gloo (CPU) and NCCL (CUDA). */
export type Backend = 'gloo' | 'nccl';
/** How `allReduce` and `reduceScatter` combine values across ranks (torch.distributed.ReduceOp). */
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min' | 'product';
const OPS: ReduceOp[] = ['sum', 'avg', 'max', 'min', 'product'];
/** What Gloo reduces (its C++ types; float16 and bfloat16 with every op, product included). */
const GLOO_DTYPES = ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int8', 'uint8', 'bool'];

/** Options of `et.distributed.init` (as torch's `init_process_group`): backend, timeout, environment and collective checks. */
export interface InitOptions {
  /** 'gloo' (CPU tensors; the default) or 'nccl' (CUDA tensors, in a CUDA build). */
  backend?: Backend;
  /**
   * How long a collective (and the rendezvous) waits for the other ranks before failing with an
   * error that names the missing rank. Default 1 800 000 (30 min, as torch).
   */
  timeoutMs?: number;
  /** Override the environment (RANK, WORLD_SIZE, … as torchrun sets them). */
  env?: Partial<DistEnv>;
  /**
   * Before each collective the ranks exchange what they are about to call (op, dtype, shape,
   * source rank, its number) and every rank fails with ERR_DIST_MISMATCH naming each rank's call
   * when they differ, where Gloo would otherwise abort the process on buffers of different sizes.
   * One small all-gather per collective; DDP checks the first gradient bucket of each backward
   * pass (its cost on `npm run bench -- ddp` is in docs/distributed.md). Default true, or the environment
   * variable EMOTORCH_DIST_CHECKS ('1' or '0'). Every rank must use the same setting.
   */
  checkCollectives?: boolean;
}

/** checkCollectives from the option, else EMOTORCH_DIST_CHECKS, else on. */
function collectiveChecks(opt: unknown): boolean {
  if (opt !== undefined) {
    if (typeof opt !== 'boolean') invalid('true or false', 'checkCollectives', opt);
    return opt;
  }
  const v = process.env.EMOTORCH_DIST_CHECKS;
  if (v === undefined || v === '') return true;
  if (v !== '0' && v !== '1')
    throw new EmotorchError(`Expected '1' or '0' for the environment variable EMOTORCH_DIST_CHECKS but received '${v.slice(0, 40)}'`, 'ERR_DIST_ENV');
  return v === '1';
}

interface State extends DistEnv {
  backend: Backend;
  timeoutMs: number;
}
let state: State | null = null;
let pendingInit: Promise<void> | null = null;

/**
 * Joins the process group described by torchrun's environment variables (RANK, WORLD_SIZE,
 * LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which `npx emotorch-run` sets. Rank 0
 * hosts the rendezvous store (a c10d TCPStore) at MASTER_ADDR:MASTER_PORT; every rank waits there
 * for all the others, then connects to them through the backend (c10d's ProcessGroupGloo or
 * ProcessGroupNCCL).
 * @throws EmotorchError ERR_DIST_ENV naming a missing or malformed variable; ERR_INVALID_ARG for a
 *   bad option; ERR_DIST_INIT naming the ranks that never joined within timeoutMs; ERR_DIST_STATE
 *   when already initialized, ERR_DIST_INIT when the ranks differ in checkCollectives; ERR_DIST_BACKEND
 *   for 'nccl' without an NCCL build.
 * @example
 * await et.distributed.init();                 // in a script started by `npx emotorch-run`
 * console.log(et.distributed.rank(), et.distributed.worldSize());
 */
export async function init(opts: InitOptions = {}): Promise<void> {
  if (opts === null || typeof opts !== 'object') invalid('an options object', 'init options', opts);
  for (const k of Object.keys(opts))
    if (!['backend', 'timeoutMs', 'env', 'checkCollectives'].includes(k)) invalid('one of backend, timeoutMs, env, checkCollectives', 'init option', k);
  const checkCollectives = collectiveChecks(opts.checkCollectives);
  const backend = opts.backend ?? 'gloo';
  if (backend !== 'gloo' && backend !== 'nccl') invalid("'gloo' or 'nccl'", 'backend', backend);
  const timeoutMs = opts.timeoutMs === undefined ? 1_800_000 : opts.timeoutMs;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 2 ** 31)
    invalid('an integer number of milliseconds from 1 to 2^31', 'timeoutMs', timeoutMs);
  if (state || pendingInit) throw new EmotorchError('the process group is already initialized (destroy() it first)', 'ERR_DIST_STATE');
  if (backend === 'nccl' && !binding.distributed.ncclBuilt()) {
    throw new EmotorchError(
      "backend 'nccl' needs an emotorch built against a CUDA libtorch with NCCL (scripts/build-cuda.sh); use 'gloo' for CPU tensors",
      'ERR_DIST_BACKEND',
    );
  }
  if (opts.env !== undefined && (opts.env === null || typeof opts.env !== 'object')) invalid('an object', 'env', opts.env);
  const e = opts.env ?? {};
  const VARS = {
    rank: 'RANK',
    worldSize: 'WORLD_SIZE',
    localRank: 'LOCAL_RANK',
    localWorldSize: 'LOCAL_WORLD_SIZE',
    masterAddr: 'MASTER_ADDR',
    masterPort: 'MASTER_PORT',
  } as const;
  const merged: NodeJS.ProcessEnv = { ...process.env };
  for (const [k, v] of Object.entries(e)) {
    if (!(k in VARS)) invalid(`one of ${Object.keys(VARS).join(', ')}`, 'env key', k);
    if (v !== undefined) merged[VARS[k as keyof typeof VARS]] = String(v);
  }
  const env = readEnv(merged);
  // Missing LOCAL_* (a hand-set environment): one machine.
  const deviceIndex = backend === 'nccl' ? env.localRank : -1;
  // Under torchrun its agent hosts the store (TORCHELASTIC_USE_AGENT_STORE=True); under
  // emotorch-run or a hand-set environment rank 0 does.
  const agentStore = process.env.TORCHELASTIC_USE_AGENT_STORE === 'True';
  // The store keys are under the job's id, so another job on the same port cannot mix with this one.
  const jobId = process.env.TORCHELASTIC_RUN_ID || 'none';
  pendingInit = binding.distributed.init({
    backend,
    rank: env.rank,
    world: env.worldSize,
    masterAddr: env.masterAddr,
    masterPort: env.masterPort,
    timeoutMs,
    deviceIndex,
    agentStore,
    jobId,
    checkCollectives,
  });
  try {
    await pendingInit;
    state = { ...env, backend, timeoutMs };
  } finally {
    pendingInit = null;
  }
}

/** True between a successful {@link init} and {@link destroy}. */
export function isInitialized(): boolean {
  return state !== null;
}

function need(what: string): State {
  if (!state) throw new EmotorchError(`${what}: the process group is not initialized (call et.distributed.init() first)`, 'ERR_DIST_STATE');
  return state;
}

/** This process's rank, 0 … worldSize()-1. @throws EmotorchError ERR_DIST_STATE before init(). */
export function rank(): number {
  return need('rank()').rank;
}
/** The number of processes in the group. @throws EmotorchError ERR_DIST_STATE before init(). */
export function worldSize(): number {
  return need('worldSize()').worldSize;
}
/** This process's rank on its machine (LOCAL_RANK). @throws EmotorchError ERR_DIST_STATE before init(). */
export function localRank(): number {
  return need('localRank()').localRank;
}
/** The backend in use. @throws EmotorchError ERR_DIST_STATE before init(). */
export function backend(): Backend {
  return need('backend()').backend;
}
/** The timeout given to init(). @internal */
export function timeoutMs(): number {
  return need('timeoutMs()').timeoutMs;
}

/**
 * Leaves the group: stops the heartbeat and the backend's threads, off the JS thread. It runs
 * after the calls made before it; a collective still waiting for another rank holds it until that
 * collective completes or passes timeoutMs (Gloo joins its workers). Later collectives fail with
 * ERR_DIST_STATE. Calling it when not initialized does nothing.
 */
export async function destroy(): Promise<void> {
  if (pendingInit) await pendingInit.catch(() => undefined);
  if (!state) return;
  state = null;
  await binding.distributed.destroy();
}

function checkCollectiveTensor(t: unknown, name: string, s: State): Tensor {
  checkTensor(t, name);
  const x = t as Tensor;
  if (x.isDisposed) throw new EmotorchError(`${name} was disposed`, 'ERR_DISPOSED');
  const onCuda = x.device.startsWith('cuda');
  if (s.backend === 'gloo' && onCuda) invalid("a CPU tensor (backend 'gloo'; use 'nccl' for CUDA tensors)", name, `a tensor on ${x.device}`);
  if (s.backend === 'nccl' && !onCuda) invalid("a CUDA tensor (backend 'nccl')", name, `a tensor on ${x.device}`);
  if (s.backend === 'gloo' && !GLOO_DTYPES.includes(x.dtype)) invalid(`a tensor of ${GLOO_DTYPES.join(', ')} (what Gloo reduces)`, name, `a ${x.dtype} tensor`);
  return x;
}

function checkOp(op: unknown, t: Tensor): ReduceOp {
  if (!OPS.includes(op as ReduceOp)) invalid(`one of ${OPS.map((o) => `'${o}'`).join(', ')}`, 'op', op);
  if (op === 'avg' && !isFloating(t.dtype)) invalid("a floating-point tensor for op 'avg' (use 'sum' for integers)", 'tensor', `a ${t.dtype} tensor`);
  if (t.dtype === 'bool' && op !== 'max' && op !== 'min') invalid("'max' (any) or 'min' (all) for a bool tensor", 'op', op);
  return op as ReduceOp;
}

/**
 * Reduces `tensor` over all ranks, in place: every rank ends with the sum (or average, maximum,
 * minimum, product) of every rank's values. Same shape and dtype on every rank.
 * @param op 'sum' (default), 'avg' (floating tensors), 'max', 'min', 'product'
 * @returns the same tensor, once reduced
 * @throws EmotorchError ERR_INVALID_ARG for a bad tensor or op; ERR_DIST_PEER / ERR_DIST_TIMEOUT
 *   naming the rank that did not take part; ERR_DIST_MISMATCH (on every rank) naming what each rank
 *   called when the ranks differ in op, shape or dtype; ERR_DIST_STATE before init().
 * @example
 * const t = et.tensor([et.distributed.rank() + 1]);
 * await et.distributed.allReduce(t, 'sum');    // 3 on both ranks of 2
 */
export async function allReduce(tensor: Tensor, op: ReduceOp = 'sum'): Promise<Tensor> {
  const s = need('allReduce()');
  const t = checkCollectiveTensor(tensor, 'tensor', s);
  await binding.distributed.allReduce(t.handle, checkOp(op, t));
  return t;
}

/**
 * Copies rank `src`'s `tensor` into every rank's `tensor` (in place; same shape and dtype).
 * @param src the sending rank, default 0
 * @returns the same tensor
 * @throws EmotorchError ERR_INVALID_ARG for a bad tensor or src; ERR_DIST_PEER / ERR_DIST_TIMEOUT;
 *   ERR_DIST_MISMATCH when the ranks differ in shapes, dtypes or src.
 * @example
 * await et.distributed.broadcast(weights, 0);
 */
export async function broadcast(tensor: Tensor, src = 0): Promise<Tensor> {
  const s = need('broadcast()');
  const t = checkCollectiveTensor(tensor, 'tensor', s);
  if (!Number.isInteger(src) || src < 0 || src >= s.worldSize) invalid(`a rank from 0 to ${s.worldSize - 1}`, 'src', src);
  await binding.distributed.broadcast([t.handle], src);
  return t;
}

/**
 * Every rank's `tensor`, in rank order (same shape and dtype on every rank).
 * @returns worldSize() new tensors
 * @throws EmotorchError ERR_INVALID_ARG for a bad tensor; ERR_DIST_PEER / ERR_DIST_TIMEOUT;
 *   ERR_DIST_MISMATCH when the ranks differ in shape or dtype.
 * @example
 * const all = await et.distributed.allGather(et.tensor([et.distributed.rank()]));  // [[0], [1]]
 */
export async function allGather(tensor: Tensor): Promise<Tensor[]> {
  const s = need('allGather()');
  const t = checkCollectiveTensor(tensor, 'tensor', s);
  return (await binding.distributed.allGather(t.handle)).map((h) => new Tensor(h));
}

/**
 * Reduces `tensor` over all ranks and gives each rank its slice of the result along dim 0: rank r
 * gets rows r·n … (r+1)·n−1 of the reduction, n = tensor.shape[0] / worldSize()
 * (torch.distributed.reduce_scatter_tensor).
 * @param op 'sum' (default), 'avg', 'max', 'min', 'product'
 * @returns a new tensor of shape [n, …tensor.shape.slice(1)]
 * @throws EmotorchError ERR_INVALID_ARG when dim 0 is not a multiple of worldSize().
 * @example
 * const mine = await et.distributed.reduceScatter(et.ones([4, 3]));   // [2, 3] of 2s on 2 ranks
 */
export async function reduceScatter(tensor: Tensor, op: ReduceOp = 'sum'): Promise<Tensor> {
  const s = need('reduceScatter()');
  const t = checkCollectiveTensor(tensor, 'tensor', s);
  if (t.ndim < 1 || t.shape[0] % s.worldSize !== 0)
    invalid(`a tensor whose first dimension is a multiple of the world size ${s.worldSize}`, 'tensor', `shape [${t.shape}]`);
  return new Tensor(await binding.distributed.reduceScatter(t.handle, checkOp(op, t)));
}

/**
 * Waits until every rank has called barrier() (and finished the collectives before it).
 * @throws EmotorchError ERR_DIST_PEER / ERR_DIST_TIMEOUT naming the rank that did not arrive.
 * @example
 * if (et.distributed.rank() === 0) await model.save('model.safetensors');
 * await et.distributed.barrier();
 */
export async function barrier(): Promise<void> {
  need('barrier()');
  await binding.distributed.barrier();
}

/** @internal Broadcasts several tensors from `src` (grouped by dtype): DDP's wrap-time sync. */
export async function broadcastMany(tensors: Tensor[], src = 0): Promise<void> {
  const s = need('broadcast');
  for (const t of tensors) checkCollectiveTensor(t, 'tensor', s);
  if (tensors.length)
    await binding.distributed.broadcastCoalesced(
      tensors.map((t) => t.handle),
      src,
    );
}

/** @internal The layout checks of the Gloo backend (see native/distributed/gloo_shim/gloo/README.md). */
export function glooLayoutReport(): Array<{ name: string; ok: boolean; detail: string }> {
  return binding.distributed.glooLayout();
}

/** @internal The native engine behind an et.distributed.ShardedDataParallel (native/distributed/zero.h). */
export type ShardEngine = ZeroHandle;

/**
 * @internal Makes the sharding engine of ShardedDataParallel (lib/distributed/zero.ts) over the
 * group: the trainable parameters with their names, the native models whose forward it hooks.
 */
export function createShardEngine(params: Tensor[], names: string[], modules: ModuleHandle[], o: { stage: number; offload: boolean }): ShardEngine {
  return binding.distributed.zeroCreate(
    params.map((p) => p.handle),
    names,
    modules,
    o,
  );
}
