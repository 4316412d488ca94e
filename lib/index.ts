/**
 * emotorch: speech–text emotion and sentiment models of spoken dialogue, on libtorch.
 * This file is the public API; everything a user imports comes from here.
 */
import { binding } from './native';
import * as os from 'os';
import { Tensor } from './tensor';
import { Device, checkDevice } from './device';
import { checkInt, invalid } from './errors';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const pkg = require('../package.json') as { version: string };

export { EmotorchError, ERROR_CODES as errorCodes } from './errors';
export type { ErrorCode } from './errors';
export { DTYPES } from './dtype';
export type { DType, TypedArray } from './dtype';
export { cuda } from './device';
export type { Device } from './device';
export type { TensorData, TensorOptions, CreateOptions, NestedArray, Scalar, Reduction } from './tensor';
export {
  Tensor, tensor, zeros, ones, full, randn, rand, randint, randperm, arange, linspace, eye, zerosLike, onesLike,
  cat, stack, where, noGrad, isGradEnabled, autocast,
} from './tensor';
export * as functional from './functional';
export * as nn from './nn';
export * as optim from './train';
export * as train from './train/api';
export * as amp from './train/amp';
export * as io from './io';
export * as audio from './audio';
export * as data from './data';
export * as metrics from './metrics';
export * as systems from './systems';
export * as distributed from './distributed';

/** Versions of emotorch and the libtorch it runs on, and whether CUDA is usable. */
export const versions: { emotorch: string; libtorch: string; cuda: boolean; cudnn?: string } = (() => {
  const v = binding.versions();
  return { emotorch: pkg.version, libtorch: v.libtorch, cuda: v.cuda, ...(v.cudnn ? { cudnn: v.cudnn } : {}) };
})();

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
