/**
 * emotorch: speech–text emotion and sentiment models of spoken dialogue, on libtorch.
 * This file is the public API; everything a user imports comes from here.
 */
import { binding } from './native';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside rootDir (lib/): no import can reach it
const pkg = require('../package.json') as { version: string };

export { EmotorchError, ERROR_CODES as errorCodes } from './errors';
export type { ErrorCode } from './errors';
export { DTYPES } from './dtype';
export type { DType, TypedArray } from './dtype';
export { cuda } from './device';
export type { Device } from './device';
export type { TensorData, TensorOptions, CreateOptions, NestedArray, Scalar, Reduction } from './tensor';
export {
  Tensor,
  tensor,
  zeros,
  ones,
  full,
  randn,
  rand,
  randint,
  randperm,
  arange,
  linspace,
  eye,
  zerosLike,
  onesLike,
  cat,
  stack,
  where,
  noGrad,
  isGradEnabled,
  autocast,
} from './tensor';
export * as functional from './functional';
export * as nn from './api/nn';
export * as optim from './train';
export * as train from './train/api';
export * as amp from './train/amp';
export * as io from './io';
export * as audio from './audio';
export * as vision from './vision';
export * as data from './data';
export * as metrics from './metrics';
export * as systems from './systems';
export * as distributed from './distributed';
export * as hub from './io/hub';
export * as profiler from './api/profiler';
export { manualSeed, setNumThreads, getNumThreads, setAdaptiveThreads, getAdaptiveThreads, getActiveThreads, getRngState, setRngState, cpu } from './runtime';
export type { CpuCacheStats, CpuCacheOptions, ConvBackend, LinearBackend } from './runtime';

/**
 * Versions of emotorch and the libtorch it runs on, whether CUDA is usable, and the CPU kernel level
 * ATen dispatches to (`cpuCapability`: 'AVX512', 'AVX2', 'DEFAULT', …; `ATEN_CPU_CAPABILITY=avx2`
 * caps it, as `torch.backends.cpu.get_cpu_capability()` reports it in Python).
 */
export const versions: { emotorch: string; libtorch: string; cpuCapability: string; cuda: boolean; cudnn?: string } = (() => {
  const v = binding.versions();
  return { emotorch: pkg.version, libtorch: v.libtorch, cpuCapability: v.cpuCapability, cuda: v.cuda, ...(v.cudnn ? { cudnn: v.cudnn } : {}) };
})();
