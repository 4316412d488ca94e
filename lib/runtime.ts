/**
 * The process-wide libtorch state: random generators (seed, RNG state) and intra-op threads.
 * `index.ts` exports these as `et.manualSeed` & co.; the Trainer seeds and checkpoints through them.
 */
import * as os from 'os';
import { binding } from './native';
import { Tensor } from './tensor';
import { Device, checkDevice } from './device';
import { checkInt, invalid } from './errors';

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
 * Takes effect from the next heavy call.
 * @throws EmotorchError ERR_INVALID_ARG outside that range.
 */
export function setNumThreads(n: number): void {
  const max = Math.min(1024, Math.max(8, 4 * os.availableParallelism()));
  if (!Number.isInteger(n) || n < 1 || n > max) invalid(`an integer from 1 to ${max}`, 'threads', n);
  binding.setNumThreads(n);
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
