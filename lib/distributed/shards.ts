/**
 * Where the optimizers meet sharded data parallel (lib/train/optim.ts reads these; the room of
 * training may import this one, not the other way): the tensors that are ShardedDataParallel's
 * shards, by tensor key.
 */
import type { Tensor } from '../tensor';

/** @internal The clip of a shard's wrapper: the norm of the whole gradient across the ranks. */
export const globalClip = new Map<string, (params: Tensor[], maxNorm: number, normType: number) => Promise<number>>();

/**
 * @internal Called after an optimizer step changed these tensors: the wrapper's whole parameters
 * are gathered again before their next use.
 */
export const afterStep = new Map<string, () => void>();
