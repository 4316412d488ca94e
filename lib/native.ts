/**
 * Loads the addon (build/Release or prebuilds/, through node-gyp-build) and describes its raw
 * surface. Nothing but this file imports the binding; everything else goes through these types.
 * @internal
 */
import type { PrefixCacheStats } from './types/prefix-cache';
import * as path from 'path';
import load = require('node-gyp-build');
import { EmotorchError } from './errors';

export type Packed = [ArrayBuffer, string];

export interface TensorHandle {
  shape(): number[];
  dtype(): string;
  device(): string;
  numel(): number;
  requiresGrad(): boolean;
  setRequiresGrad(v: boolean): void;
  grad(): TensorHandle | null;
  setGrad(g: TensorHandle | null): void;
  isLeaf(): boolean;
  dispose(): void;
  disposed(): boolean;
  dataSync(): Packed;
  data(): Promise<Packed>;
  item(): number | boolean;
  backward(grad: TensorHandle | null, retainGraph: boolean): Promise<void>;
  sameStorage(other: TensorHandle): boolean;
  /** Identity of the underlying tensor, shared by every handle to it. */
  key(): string;
}

export type Named = [string[], TensorHandle[]];

/** One field of a native config: its name, wire type, default (JSON text) and, for a nested config, its fields. */
export interface NativeConfigField {
  name: string;
  type: 'i64' | 'f64' | 'bool' | 'str' | 'i64[]' | 'f64[]' | 'config';
  default: string;
  fields?: NativeConfigField[];
}

/** A native decoding row (nn::DecodeRow), opaque on this side. */
export type DecodeRowHandle = { readonly __decodeRow: unique symbol };

export interface ModuleHandle {
  /** Inputs by name (HF snake_case); the outputs the model computed, by name. */
  forward(inputs: Record<string, TensorHandle | null>): Promise<Record<string, TensorHandle>>;
  namedParameters(): Named;
  /** With the quantized layers' tensors: as held, or with `fileLayout` in their files' layout (a copy where a kernel's layout differs). */
  namedBuffers(fileLayout?: boolean): Named;
  setTraining(on: boolean): void;
  training(): boolean;
  to(device: string | null, dtype: string | null): Promise<void>;
  generate(
    inputIds: TensorHandle | null,
    inputsEmbeds: TensorHandle | null,
    attentionMask: TensorHandle | null,
    config: object,
    onTokens: ((ids: number[]) => void) | null,
  ): { result: Promise<TensorHandle>; cancel(): void };
  /** A decoding row (an opaque External): the prompt run, nothing chosen yet. */
  startDecode(
    inputIds: TensorHandle | null,
    inputsEmbeds: TensorHandle | null,
    attentionMask: TensorHandle | null,
    config: object,
    seed: number | null,
  ): Promise<DecodeRowHandle>;
  /** One step of every row: each one's next token, −1 for a row done before. */
  decodeStep(rows: DecodeRowHandle[]): Promise<number[]>;
  /** The row done, its cache freed. */
  endDecode(row: DecodeRowHandle): Promise<void>;
  /** The prompt prefix cache's size in bytes (0: off, emptied), its counters reset. */
  setPrefixCache(bytes: number): Promise<void>;
  /** What the prompt prefix cache holds and has done. */
  prefixCacheStats(): Promise<PrefixCacheStats>;
  applyLora(targets: string[], r: number, alpha: number, dropout: number): string[];
  mergeLora(merge: boolean): number;
  setGradientCheckpointing(on: boolean): boolean;
  dispose(): void;
}

export interface OptimizerHandle {
  step(): Promise<void>;
  zeroGrad(): void;
  setLr(group: number, lr: number): void;
  lr(group: number): number;
  state(): Named;
  setState(names: string[], tensors: TensorHandle[]): Promise<void>;
  clipGradNorm(maxNorm: number, normType: number): Promise<number>;
}

export interface NativeGroup {
  params: TensorHandle[];
  lr: number;
  weightDecay: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** adamw_hf (correct_bias), fused_adam (bias_correction) */
  biasCorrection?: boolean;
  /** fused_adam: decoupled weight decay (true) or L2 */
  adamWMode?: boolean;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}

/** DDP's gradient reducer for one wrapped module (native/bridge/distributed.cc). */
export interface DdpHandle {
  prepare(sync: boolean): Promise<void>;
  buckets(): number[][];
  detach(): void;
}

/** Sharded data parallel's engine for one wrapped module (native/bridge/distributed.cc, native/distributed/zero.h). */
export interface ZeroHandle {
  shards(): TensorHandle[];
  start(): Promise<void>;
  prepare(): Promise<void>;
  markStepped(): void;
  clipGradNorm(indices: number[], maxNorm: number, normType: number): Promise<number>;
  gatherState(rank0Only: boolean): Promise<Array<TensorHandle | null>>;
  setShards(indices: number[], tensors: TensorHandle[]): Promise<void>;
  units(): Array<[string, number[]]>;
  memory(): Promise<[number, number]>;
  detach(): Promise<void>;
}

/** et.distributed's native surface (native/bridge/distributed.cc). */
export interface DistBinding {
  init(o: {
    backend: string;
    rank: number;
    world: number;
    masterAddr: string;
    masterPort: number;
    timeoutMs: number;
    deviceIndex: number;
    agentStore: boolean;
    jobId: string;
    checkCollectives: boolean;
  }): Promise<void>;
  destroy(): Promise<void>;
  isInitialized(): boolean;
  ncclBuilt(): boolean;
  allReduce(t: TensorHandle, op: string): Promise<void>;
  broadcast(ts: TensorHandle[], src: number): Promise<void>;
  allGather(t: TensorHandle): Promise<TensorHandle[]>;
  reduceScatter(t: TensorHandle, op: string): Promise<TensorHandle>;
  barrier(): Promise<void>;
  broadcastCoalesced(ts: TensorHandle[], src: number): Promise<void>;
  ddpCreate(params: TensorHandle[], names: string[], o: { bucketCapBytes: number; firstBucketCapBytes: number; findUnused: boolean }): DdpHandle;
  glooLayout(): Array<{ name: string; ok: boolean; detail: string }>;
  zeroCreate(params: TensorHandle[], names: string[], modules: ModuleHandle[], o: { stage: number; offload: boolean }): ZeroHandle;
}

export interface Binding {
  distributed: DistBinding;
  TensorHandle: new () => TensorHandle;
  setErrorClass(ctor: typeof EmotorchError): void;
  versions(): { libtorch: string; cpuCapability: string; cuda: boolean; cudaBuild: boolean; cudnn?: string };
  cudaDeviceCount(): number;
  cudaSynchronize(): void;
  manualSeed(seed: number): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setAdaptiveThreads(on: boolean): void;
  getAdaptiveThreads(): boolean;
  getActiveThreads(): number;
  shareThreads(want: number, current: number, cpus: number, others: number, pending: boolean): [number, boolean];
  getRngState(device: string): TensorHandle;
  setRngState(device: string, state: TensorHandle): void;
  setGradEnabled(on: boolean): void;
  isGradEnabled(): boolean;
  setAutocast(device: 'cpu' | 'cuda', enabled: boolean, dtype: string): [boolean, string];
  cpuCache(
    enabled?: boolean,
    limitBytes?: number,
    hugePages?: boolean,
  ): {
    enabled: boolean;
    hugePages: boolean;
    limitBytes: number;
    cachedBytes: number;
    cachedBlocks: number;
    hits: number;
    misses: number;
    released: number;
    allocatedBytes: number;
    peakAllocatedBytes: number;
  };
  emptyCpuCache(): number;
  convBackends(): Array<{
    inChannels: number;
    outChannels: number;
    kernel: number;
    stride: number;
    padding: number;
    groups: number;
    rows: number;
    threads: number;
    bias: boolean;
    backend: 'onednn-rows' | 'channels-first' | 'blas';
  }>;
  linearBackends(): Array<{
    rows: number;
    inner: number;
    outer: number;
    threads: number;
    aTransposed: boolean;
    weightTransposed: boolean;
    bias: boolean;
    backend: 'onednn' | 'blas';
  }>;
  resetPeakCpuMemory(): void;
  profilerStart(recordShapes: boolean): Promise<void>;
  profilerStop(tracePath: string): Promise<{ names: string[]; shapes: string[]; start: Float64Array; duration: Float64Array; thread: Float64Array }>;
  fromData(data: ArrayBufferView, shape: number[], sourceDtype: string, dtype: string, device: string, requiresGrad: boolean): TensorHandle;
  opNames(): string[];
  op(index: number, ...args: unknown[]): TensorHandle | TensorHandle[];
  createModule(kind: string, config: object, device: string | null, dtype: string | null, skipInit?: boolean): ModuleHandle;
  /** Each registered native kind's config as its C++ field list declares it (native/config.h). */
  modelKinds(): Record<string, NativeConfigField[]>;
  createOptimizer(kind: 'adamw' | 'adamw_hf' | 'fused_adam' | 'sgd', groups: NativeGroup[]): OptimizerHandle;
  clipGradNorm(params: TensorHandle[], maxNorm: number, normType: number): Promise<number>;
  copyState(dst: TensorHandle[], src: TensorHandle[]): Promise<void>;
  assignState(dst: TensorHandle[], src: TensorHandle[], dtype: string | null): Promise<void>;
  readSafetensors(path: string, dataStart: number, entries: [string, string, number[], number, number][], fileSize: number): Promise<TensorHandle[]>;
  writeSafetensors(path: string, header: string, tensors: TensorHandle[]): Promise<void>;
  /** Quantizes a (out, in) weight (native/kernels/quant.h): its tensors by bitsandbytes' / gguf's names. */
  quantizeWeight(weight: TensorHandle, format: string, name: string): Promise<Record<string, TensorHandle>>;
  dequantizeWeight(format: string, out: number, inFeatures: number, tensors: Record<string, TensorHandle>, dtype: string, name: string): Promise<TensorHandle>;
  /** Quantizes the named Linear layers of a module in place. */
  quantizeLinears(module: ModuleHandle, names: string[], format: string): Promise<void>;
  /** A checkpoint's quantized weight into a Linear layer (checked natively: ERR_STATE_DICT). */
  setQuantized(module: ModuleHandle, layer: string, format: string, out: number, inFeatures: number, tensors: Record<string, TensorHandle>): Promise<void>;
  /** A float weight quantized straight into a Linear layer (nothing else holds its bytes). */
  quantizeLayer(module: ModuleHandle, layer: string, weight: TensorHandle, format: string, name: string): Promise<void>;
  /** Every Linear layer of a module: [name, out, in, its quantization or null]. */
  linearLayers(module: ModuleHandle): [string, number, number, string | null][];
  /** An exclusive flock(2) on an open descriptor, not waiting: false when held elsewhere. */
  tryLockFile(fd: number): boolean;
  unlockFile(fd: number): void;
  whisperLogMel(waveform: TensorHandle, nMels: number, padTo30s: boolean): Promise<TensorHandle>;
  kaldiFbank(waveform: TensorHandle, opts: object): Promise<TensorHandle>;
  vocoderLogMel(
    waveform: TensorHandle,
    sampleRate: number,
    nFft: number,
    nMels: number,
    hop: number,
    win: number,
    fmin: number,
    fmax: number,
  ): Promise<TensorHandle>;
  resampleSignal(samples: Float32Array, method: string, fromRate: number, toRate: number, num: number): Float32Array;
  soxrStatus(): { available: boolean; why: string; version: string };
  /** null when the in-process video reader runs here (FFmpeg's libraries found), else why not. */
  videoAvailable(): string | null;
  openVideo(fd: number, format: string, maxPixels: number, timeoutMs: number): Promise<NativeVideo>;
  readVideo(handle: unknown, wanted: number[], slots: number[], seek: boolean, timeoutMs: number): Promise<TensorHandle>;
  placeVideoFrame(frames: TensorHandle, rgb: Uint8Array, slots: number[], k: number): void;
  closeVideo(handle: unknown): void;
}

/** An open in-process video reader (native/media/video.h) and what it read of the file. */
export interface NativeVideo {
  handle: unknown;
  width: number;
  height: number;
  frameCount: number;
  fps: number;
  duration: number;
  hasAudio: boolean;
  codec: string;
  /** Not empty: frames cannot be made here as the ffmpeg executable makes them (the reason). */
  needsCli: string;
  /** Presentation times in seconds, ascending, one per frame (NaN where a packet has none). */
  times: Float64Array;
  /** Whether every packet had a presentation timestamp (not just a decode one). */
  ptsEverywhere: boolean;
  /** Whether each frame's packet (in the order of `times`) is a keyframe. */
  keys: Uint8Array;
}

export const ROOT = path.resolve(__dirname, '..');

/**
 * How long an OpenMP thread that finished its share of a parallel loop spins before it sleeps
 * (libgomp's GOMP_SPINCOUNT; its default, 300 000, is about 0.1 s of `pause` on recent x86). On a
 * machine whose cores are also used by other processes a spinning thread takes the core its
 * teammate needs: beside one busy process on 2 cores the MLP step took 4–7× its quiet time (2×
 * is what losing a core costs). At 10 000 it took about 2.3×, with the same quiet-machine time (the
 * wait between two parallel loops of one step is far shorter). libgomp reads it once, when it
 * loads with the addon, so it is set just for that and then removed, leaving child processes
 * (the Python side of the benchmarks among them) the environment they would have had. A
 * GOMP_SPINCOUNT or OMP_WAIT_POLICY of the user's is left alone.
 */
const OMP_SPINCOUNT = '10000';

function loadBinding(): Binding {
  const setSpin = process.env.GOMP_SPINCOUNT === undefined && process.env.OMP_WAIT_POLICY === undefined;
  if (setSpin) process.env.GOMP_SPINCOUNT = OMP_SPINCOUNT;
  try {
    return load(ROOT) as Binding;
  } catch (e) {
    const msg = (e as Error).message;
    throw new EmotorchError(
      [
        `Could not load the emotorch native addon: ${msg}`,
        'Possible solutions:',
        '- Build it: `npm run build:native` (needs cmake, a C++ compiler and libtorch >= 2.1).',
        '- Make libtorch findable: set LIBTORCH, or `python3 -m pip install torch==2.13.0+cpu`, then rebuild.',
        '- If libtorch moved since the build, set LD_LIBRARY_PATH to its lib/ folder or rebuild.',
        `- Check what the build uses: \`node ${path.join(ROOT, 'scripts', 'libtorch.js')}\`.`,
      ].join('\n'),
      'ERR_NATIVE_LOAD',
    );
  } finally {
    if (setSpin) delete process.env.GOMP_SPINCOUNT;
  }
}

export const binding: Binding = loadBinding();
binding.setErrorClass(EmotorchError);

const opIndex = new Map(binding.opNames().map((n, i) => [n, i] as [string, number]));
/** Index of a native op by name (throws if the addon lacks it: a stale build). */
export function opId(name: string): number {
  const i = opIndex.get(name);
  if (i === undefined) throw new EmotorchError(`the native addon has no op '${name}': rebuild it (npm run build:native)`, 'ERR_NATIVE');
  return i;
}
