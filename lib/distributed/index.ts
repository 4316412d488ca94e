/**
 * Scaling out: data-parallel training over processes and machines on libtorch's c10d (Gloo for
 * CPU tensors, NCCL for CUDA), launched by `npx emotorch-run` (torchrun's environment contract).
 *
 * @module
 */
export {
  init,
  isInitialized,
  rank,
  worldSize,
  localRank,
  backend,
  destroy,
  allReduce,
  broadcast,
  allGather,
  reduceScatter,
  barrier,
  glooLayoutReport,
} from './group';
export type { InitOptions, Backend, ReduceOp } from './group';
export { readEnv, REQUIRED_ENV } from './env';
export type { DistEnv } from './env';
export { DistributedDataParallel, DistributedDataParallel as DDP } from './ddp';
export type { DdpOptions } from './ddp';
export { ShardedDataParallel } from './zero';
export type { ShardedOptions, ShardUnit, ShardMemory, ShardOptimizer } from './zero';
export { DistributedSampler } from './sampler';
export type { DistributedSamplerOptions } from './sampler';
