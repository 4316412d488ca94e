/**
 * The process-wide libtorch state: random generators (seed, RNG state) and intra-op threads.
 * `index.ts` exports these as `et.manualSeed` & co.; the Trainer seeds and checkpoints through them.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { binding, NativeVideo } from './native';
import { Tensor } from './tensor';
import { Device, checkDevice } from './device';
import { checkInt, checkOptionNames, invalid } from './errors';

/** Seeds libtorch's random generators (CPU and CUDA). */
export function manualSeed(seed: number): void {
  binding.manualSeed(checkInt(seed, 'seed', 0));
}

/**
 * Sets the number of threads libtorch uses for intra-op parallelism in heavy calls (forward,
 * backward, optimizer steps, feature extraction, generation): 1 to 4 × the machine's cores (at
 * least 8). More threads than that only oversubscribe the cores, and absurd counts exhaust the
 * system's threads. Heavy calls all run on one compute thread, so libtorch keeps one OpenMP team
 * (as in a Python process); the synchronous tensor ops called on the JS thread run on one thread.
 * Takes effect from the next heavy call. The default is libtorch's (the CPUs the process may run
 * on, or OMP_NUM_THREADS), lowered to a container's CPU quota where that is less (read from
 * cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`).
 * @throws EmotorchError ERR_INVALID_ARG outside that range.
 */
export function setNumThreads(n: number): void {
  const max = Math.min(1024, Math.max(8, 4 * os.availableParallelism()));
  if (!Number.isInteger(n) || n < 1 || n > max) invalid(`an integer from 1 to ${max}`, 'threads', n);
  binding.setNumThreads(n);
}

/**
 * Adaptive threads, for machines shared with other busy processes: before each heavy call (at
 * most every 0.2 s), the compute thread reads how much of its CPUs other processes took (Linux
 * `/proc/stat` less this process's own CPU time) and runs with fewer threads than
 * {@link getNumThreads} while they hold cores, so that no thread of the team waits behind a
 * neighbour (a parallel region is as slow as its slowest thread). A core counts as taken when
 * others use 0.6 of it, and as free again under 0.4; threads are given up when two such windows in
 * a row agree (a window in which the compute thread was mostly idle gives no vote) and taken back
 * at once; {@link getActiveThreads} says the count in use. With one busy process beside a
 * 2-thread MLP training step on 2 cores, the step took 2.5× its quiet time with a fixed count and
 * about 1.7× adaptive (`npm run bench -- mlp --neighbour`); on a quiet machine nothing changes.
 *
 * Off by default: with the count following the machine's load, results can differ run to run in
 * the last bits (parallel reductions are split by thread), so a run is only bit-reproducible with
 * a fixed count. Also on with the environment variable EMOTORCH_ADAPTIVE_THREADS=1. Does nothing
 * where `/proc/stat` cannot be read.
 */
export function setAdaptiveThreads(enabled: boolean): void {
  if (typeof enabled !== 'boolean') invalid('a boolean', 'enabled', enabled);
  binding.setAdaptiveThreads(enabled);
}

/** Whether adaptive threads are on (see {@link setAdaptiveThreads}). */
export function getAdaptiveThreads(): boolean {
  return binding.getAdaptiveThreads();
}

/**
 * The intra-op threads the last heavy call ran with: {@link getNumThreads}, or fewer while
 * adaptive threads ({@link setAdaptiveThreads}) leave cores to other processes.
 */
export function getActiveThreads(): number {
  return binding.getActiveThreads();
}

/**
 * Reads EMOTORCH_ADAPTIVE_THREADS ('1' on; '0' or unset off) and applies it. @internal
 */
export function applyAdaptiveThreadsEnv(env: NodeJS.ProcessEnv): void {
  const v = env.EMOTORCH_ADAPTIVE_THREADS?.trim();
  if (v === undefined || v === '') return;
  if (v !== '0' && v !== '1') invalid("'1' (on) or '0' (off)", 'EMOTORCH_ADAPTIVE_THREADS', v);
  binding.setAdaptiveThreads(v === '1');
}

/**
 * The state of a device's default random generator as a 1-D uint8 tensor (what
 * `torch.get_rng_state()` / `torch.cuda.get_rng_state()` return): save it with a checkpoint and
 * give it to {@link setRngState} to replay the same random numbers (dropout, sampling, randn).
 * @param device 'cpu' (default) or a CUDA device
 */
export function getRngState(device: Device = 'cpu'): Tensor {
  return new Tensor(binding.getRngState(checkDevice(device)));
}

/**
 * Restores a state from {@link getRngState} on the same device kind.
 * @throws EmotorchError ERR_INVALID_ARG for a tensor that is not such a state.
 */
export function setRngState(state: Tensor, device: Device = 'cpu'): void {
  if (!(state instanceof Tensor)) invalid('a Tensor from getRngState()', 'state', state);
  binding.setRngState(checkDevice(device), state.handle);
}

/** The number of intra-op threads heavy calls use (see {@link setNumThreads}). */
export function getNumThreads(): number {
  return binding.getNumThreads();
}

/** What {@link cpu.cacheStats} reports. */
export interface CpuCacheStats {
  /** Whether freed blocks are kept (`EMOTORCH_CPU_ALLOCATOR` is not 'default'). */
  enabled: boolean;
  /**
   * Whether new blocks of 4 MiB and more are advised to take transparent huge pages
   * (`EMOTORCH_CPU_HUGE_PAGES` is not 0).
   */
  hugePages: boolean;
  /** The most bytes kept while free (kept while the cache is off, for when it is turned on again). */
  limitBytes: number;
  /** Bytes kept now, free and ready for reuse, and in how many blocks. */
  cachedBytes: number;
  cachedBlocks: number;
  /** Allocations of 1 MiB or more served from the cache, and those that went to the C library. */
  hits: number;
  misses: number;
  /** Freed blocks handed back because the cache was full (or off). */
  released: number;
  /** Bytes held by live CPU tensors now (with the allocator's rounding and headers). */
  allocatedBytes: number;
  /** The most allocatedBytes since emotorch loaded or the last {@link cpu.resetPeakMemory}. */
  peakAllocatedBytes: number;
}

/**
 * One kind of float32 CPU matrix product of the linear layers, and the backend it runs on (see
 * {@link cpu.linearBackends}).
 */
export interface LinearBackend {
  /** The product's rows, rounded up to a power of two. */
  rows: number;
  /** Its inner (summed over) size. */
  inner: number;
  /** Its outer size (the output's columns). */
  outer: number;
  /** The intra-op threads it was timed with. */
  threads: number;
  /** Whether the left operand was a transposed view (the weight gradient's dyᵀ). */
  aTransposed: boolean;
  /** Whether the weight operand was a transposed view (the backward products). */
  weightTransposed: boolean;
  /** Whether a bias was added in the product. */
  bias: boolean;
  /** 'onednn' (oneDNN's matmul) or 'blas' (ATen's at::mm / at::addmm: MKL in PyTorch's builds). */
  backend: 'onednn' | 'blas';
}

/**
 * One kind of float32 CPU convolution over time-major rows (the Wav2Vec2 / WavLM feature encoder's
 * convs and the conv positions of Wav2Vec2, WavLM and BEATs, at inference) and the implementation it
 * runs on (see {@link cpu.convBackends}).
 */
export interface ConvBackend {
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  padding: number;
  groups: number;
  /** Batch × output frames, rounded up to a power of two. */
  rows: number;
  /** The intra-op threads it was timed with. */
  threads: number;
  bias: boolean;
  /**
   * 'onednn-rows': oneDNN's convolution on the rows as they lie (NHWC); 'channels-first': the
   * (B, C, T) convolution PyTorch runs, the rows transposed in and out; 'blas': BLAS products over
   * strided views of the rows (groups 1, no padding).
   */
  backend: 'onednn-rows' | 'channels-first' | 'blas';
}

/** Options of {@link cpu.configureCache}. */
export interface CpuCacheOptions {
  /** Keep freed blocks (default: as now). */
  enabled?: boolean;
  /** The most mebibytes kept while free (default: as now; at start a quarter of physical memory). */
  limitMb?: number;
  /**
   * Advise blocks of 4 MiB and more allocated from now on to take the kernel's transparent huge
   * pages (2 MiB; default: as now, at start on). Where `/sys/kernel/mm/transparent_hugepage/enabled`
   * is `never` the kernel ignores the advice.
   */
  hugePages?: boolean;
}

/**
 * The CPU caching allocator. libtorch's own CPU allocator hands every freed block back to the C
 * library, which returns large ones (above 32 MiB at most) to the kernel, so each training step
 * maps its activations anew and page-faults them in (a third of a ViT-L video tower's step). emotorch
 * keeps freed blocks of 1 MiB and more (rounded to 3 significant bits) up to a limit and reuses
 * them. It is on from the start, limited to a quarter of the physical memory;
 * `EMOTORCH_CPU_ALLOCATOR=default` turns it off and `EMOTORCH_CPU_CACHE_MB=N` sets the limit (read
 * when emotorch loads). Blocks of 4 MiB and more are aligned to 2 MiB and advised to take the
 * kernel's transparent huge pages (fewer page faults and TLB misses); `EMOTORCH_CPU_HUGE_PAGES=0`
 * or `configureCache({ hugePages: false })` turns that off. CUDA memory has libtorch's own caching
 * allocator.
 * @example
 * et.cpu.cacheStats();                       // { enabled: true, cachedBytes: 268435456, hits: 120, … }
 * et.cpu.emptyCache();                       // hand the cached blocks back (returns the bytes)
 * et.cpu.configureCache({ limitMb: 2048 });
 */
export const cpu = {
  /**
   * The memory the system can give now, in bytes: /proc/meminfo's MemAvailable (Linux), else
   * `os.freemem()`. Loaders and resizes check their needs against it before allocating.
   * @example
   * console.log(`${(et.cpu.availableMemory() / 2 ** 30).toFixed(1)} GiB available`);
   */
  availableMemory(): number {
    try {
      const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
      if (m) return Number(m[1]) * 1024;
    } catch {
      /* not Linux */
    }
    return os.freemem();
  },
  /** The allocator's settings and counters. */
  cacheStats(): CpuCacheStats {
    return binding.cpuCache();
  },
  /**
   * The kinds of float32 linear-layer products this process has run, each with its backend. The
   * first product of each kind on a machine runs on oneDNN and on the BLAS, three times each, and
   * the BLAS is kept where clearly (5 %) faster, else oneDNN, from then on and by later processes (the choice is kept in a file in
   * `EMOTORCH_CACHE_DIR`, else `~/.cache/emotorch`): which one wins depends on the CPU, the ISA and the shape (oneDNN ran
   * twice as fast as MKL on an AMD EPYC; MKL ran an Intel Xeon's transposed backward products,
   * capped at AVX2, in 0.6 of oneDNN's time). `EMOTORCH_CPU_LINEAR=onednn` or `=blas` pins one
   * (nothing is timed then, and this list stays empty); `=aten` runs ATen's own linear.
   */
  linearBackends(): LinearBackend[] {
    return binding.linearBackends();
  },
  /**
   * The kinds of float32 convolutions over time-major rows this process has run at inference (no
   * autograd graph), each with its implementation: the first of each kind on a machine runs on
   * every applicable one ({@link ConvBackend}), three times each, and the fastest is kept (the
   * first, oneDNN on the rows, unless another is 5 % faster), from then on and by later processes
   * (`conv-backends-<hash>.txt` beside the linear choices). Which wins depends on the CPU, the ISA
   * and the shape: capped at AVX2, an Intel Xeon ran the XLS-R feature encoder's second conv as
   * BLAS products in 0.85 of oneDNN's time, its later convs at parity. `EMOTORCH_CPU_LINEAR=aten`
   * runs the channels-first convolution throughout (nothing is timed).
   */
  convBackends(): ConvBackend[] {
    return binding.convBackends();
  },
  /** Hands every cached block back to the C library (on glibc, the free pages of its heaps then go back to the system: `malloc_trim`); returns the bytes released. */
  emptyCache(): number {
    return binding.emptyCpuCache();
  },
  /** Starts `peakAllocatedBytes` over from the bytes allocated now (as torch.cuda.reset_peak_memory_stats). */
  resetPeakMemory(): void {
    binding.resetPeakCpuMemory();
  },
  /**
   * Changes the settings; `enabled: false` also empties the cache.
   * @throws EmotorchError ERR_INVALID_ARG for an unknown option, a non-boolean `enabled` or a
   *   negative or non-integer `limitMb`
   */
  configureCache(opts: CpuCacheOptions): CpuCacheStats {
    if (!opts || typeof opts !== 'object') invalid('an object { enabled?, limitMb?, hugePages? }', 'configureCache options', opts);
    checkOptionNames(opts, ['enabled', 'limitMb', 'hugePages'], 'configureCache options');
    const now = binding.cpuCache();
    const enabled = opts.enabled ?? now.enabled;
    if (typeof enabled !== 'boolean') invalid('a boolean', 'enabled', enabled);
    const hugePages = opts.hugePages ?? now.hugePages;
    if (typeof hugePages !== 'boolean') invalid('a boolean', 'hugePages', hugePages);
    const limitBytes = opts.limitMb === undefined ? now.limitBytes : checkInt(opts.limitMb, 'limitMb', 0) * 2 ** 20;
    if (!(limitBytes <= Number.MAX_SAFE_INTEGER)) invalid('a number of mebibytes below 2^33', 'limitMb', opts.limitMb);
    return binding.cpuCache(enabled, limitBytes, hugePages);
  },
};

/** Starts libtorch's op profiler on the compute thread (see `et.profiler`). @internal */
export function profilerStart(recordShapes: boolean): Promise<void> {
  return binding.profilerStart(recordShapes);
}

/** Stops it and hands back the op calls it recorded (see `et.profiler`). @internal */
export function profilerStop(
  tracePath: string,
): Promise<{ names: string[]; shapes: string[]; start: Float64Array; duration: Float64Array; thread: Float64Array }> {
  return binding.profilerStop(tracePath);
}

/** Applies EMOTORCH_CPU_ALLOCATOR ('cache' | 'default'), EMOTORCH_CPU_CACHE_MB and EMOTORCH_CPU_HUGE_PAGES ('0' | '1'). @internal */
export function applyCpuCacheEnv(env: NodeJS.ProcessEnv): void {
  const mode = env.EMOTORCH_CPU_ALLOCATOR?.trim();
  const mb = env.EMOTORCH_CPU_CACHE_MB?.trim();
  const huge = env.EMOTORCH_CPU_HUGE_PAGES?.trim();
  if (mode && mode !== 'cache' && mode !== 'default') invalid("'cache' or 'default'", 'EMOTORCH_CPU_ALLOCATOR', mode);
  if (mb && !/^\d+$/.test(mb)) invalid('a whole number of mebibytes', 'EMOTORCH_CPU_CACHE_MB', mb);
  if (huge && huge !== '0' && huge !== '1') invalid("'0' or '1'", 'EMOTORCH_CPU_HUGE_PAGES', huge);
  if (mode || mb || huge)
    cpu.configureCache({
      ...(mode ? { enabled: mode === 'cache' } : {}),
      ...(mb ? { limitMb: Number(mb) } : {}),
      ...(huge ? { hugePages: huge === '1' } : {}),
    });
}
applyCpuCacheEnv(process.env);

/**
 * The CPUs this process may use by its cgroup's CPU quota, rounded up: cgroup v2 `cpu.max`, v1
 * `cpu.cfs_quota_us` / `cpu.cfs_period_us`, the lowest along its cgroup's path; undefined where
 * there is none. libgomp sizes its team by the CPUs the process may run on (its affinity), not by
 * a quota: in a container limited to 2 CPUs on a 64-core host it would start 64 threads, each
 * given 1/32 of a core's time, and every parallel loop would wait for the slowest.
 * @param root where `proc/` and `sys/` are found (tests give a made-up tree) @internal
 */
export function cgroupCpuLimit(root = '/'): number | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(root, 'proc/self/cgroup'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const read = (f: string) => {
    try {
      return fs.readFileSync(f, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  // each folder from the cgroup's own up to the hierarchy's root
  const upward = (mount: string, p: string) => {
    const dirs: string[] = [];
    for (let q = p; ; q = path.posix.dirname(q)) {
      dirs.push(path.join(mount, q));
      if (q === '/' || q === '.' || q === '') break;
    }
    return dirs;
  };
  let limit = Infinity;
  for (const line of lines) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, id, controllers, p] = m;
    if (id === '0' && controllers === '') {
      for (const dir of upward(path.join(root, 'sys/fs/cgroup'), p)) {
        const [quota, period] = (read(path.join(dir, 'cpu.max')) ?? '').split(/\s+/);
        if (/^\d+$/.test(quota ?? '') && Number(period) > 0) limit = Math.min(limit, Number(quota) / Number(period));
      }
    } else if (controllers.split(',').includes('cpu')) {
      const mounts = [path.join(root, 'sys/fs/cgroup', controllers), path.join(root, 'sys/fs/cgroup/cpu')];
      const mount = mounts.find((d) => fs.existsSync(d));
      if (!mount) continue;
      for (const dir of upward(mount, p)) {
        const quota = Number(read(path.join(dir, 'cpu.cfs_quota_us')) ?? -1);
        const period = Number(read(path.join(dir, 'cpu.cfs_period_us')) ?? 0);
        if (quota > 0 && period > 0) limit = Math.min(limit, quota / period);
      }
    }
  }
  return Number.isFinite(limit) ? Math.max(1, Math.ceil(limit)) : undefined;
}

/**
 * Lowers the intra-op thread count to the cgroup CPU quota ({@link cgroupCpuLimit}) where that is
 * below libtorch's default, unless OMP_NUM_THREADS or MKL_NUM_THREADS says how many. @internal
 */
export function applyCgroupThreads(env: NodeJS.ProcessEnv, root = '/'): void {
  if (env.OMP_NUM_THREADS?.trim() || env.MKL_NUM_THREADS?.trim()) return;
  const limit = cgroupCpuLimit(root);
  if (limit !== undefined && limit < binding.getNumThreads()) binding.setNumThreads(limit);
}
applyCgroupThreads(process.env);
applyAdaptiveThreadsEnv(process.env);

/**
 * Checks EMOTORCH_CPU_LINEAR ('auto' | 'onednn' | 'blas' | 'aten'; read by the native side when
 * the first linear layer runs): a misspelt value would otherwise mean 'auto' without a word. @internal
 */
export function checkCpuLinearEnv(env: NodeJS.ProcessEnv): void {
  const v = env.EMOTORCH_CPU_LINEAR;
  if (v !== undefined && v !== '' && !['auto', 'onednn', 'blas', 'aten'].includes(v)) invalid("'auto', 'onednn', 'blas' or 'aten'", 'EMOTORCH_CPU_LINEAR', v);
}
checkCpuLinearEnv(process.env);

/**
 * mulberry32: a small, fast, seedable 32-bit PRNG (not libtorch's generator); the returned
 * function gives floats in [0, 1). emotorch uses it where the originals draw with Python's
 * `random` or numpy (DataLoader shuffles, LanguageBind's random flip and audio chunks), so a seed
 * replays the same draws.
 * @param seed any number; its low 32 bits are used
 * @example
 * const rand = et.data.mulberry32(42);
 * rand(); // 0.6011037519201636
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * @internal An exclusive advisory lock (flock(2), as Python's filelock takes huggingface_hub's
 * `.lock` files) on an open descriptor, without waiting: true when taken, false when another
 * holder has it. Closing the descriptor, or the process ending, releases it.
 */
export function tryLockFile(fd: number): boolean {
  return binding.tryLockFile(fd);
}

/** @internal Releases {@link tryLockFile}'s lock. */
export function unlockFile(fd: number): void {
  binding.unlockFile(fd);
}

export type { NativeVideo } from './native';

/**
 * @internal The in-process video reader (native/media/video.h, used by lib/vision/video.ts): null
 * when it runs here, else why not (built without FFmpeg's headers, libraries missing).
 */
export function videoReaderUnavailable(): string | null {
  return binding.videoAvailable();
}

/**
 * @internal Opens `fd` (a duplicate is kept; the caller closes its own once this settles) as a video
 * of container `format`: its header and packet table. Messages name no file.
 */
export function openVideoReader(fd: number, format: string, maxPixels: number, timeoutMs: number): Promise<NativeVideo> {
  return binding.openVideo(fd, format, maxPixels, timeoutMs);
}

/**
 * @internal The frames at display indices `wanted` (ascending, distinct) as uint8 (3, T, H, W):
 * frame `wanted[slots[t]]` at each t, each placed as it is decoded.
 */
export async function readVideoReader(handle: unknown, wanted: number[], slots: number[], seek: boolean, timeoutMs: number): Promise<Tensor> {
  return new Tensor(await binding.readVideo(handle, wanted, slots, seek, timeoutMs));
}

/** @internal One rgb24 picture (H · W · 3 bytes) into uint8 frames (3, T, H, W), at each t whose `slots[t]` is `k`. */
export function placeVideoFrame(frames: Tensor, rgb: Uint8Array, slots: number[], k: number): void {
  binding.placeVideoFrame(frames.handle, rgb, slots, k);
}

/** @internal Closes a reader of {@link openVideoReader} (its descriptor too). */
export function closeVideoReader(handle: unknown): void {
  binding.closeVideo(handle);
}
