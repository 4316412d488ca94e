/**
 * DistributedSampler: each rank's shard of a dataset, as torch.utils.data.DistributedSampler.
 */
import { checkInt, checkOptionNames, invalid } from '../errors';
import { mulberry32, mixSeed, shuffleInPlace } from '../data/loader';
import type { Sampler } from '../data/loader';
import * as group from './group';

/** Options of `new DistributedSampler` (torch's arguments, camelCase). */
export interface DistributedSamplerOptions {
  /** Number of shards. Default: et.distributed.worldSize(). */
  numReplicas?: number;
  /** This rank's shard. Default: et.distributed.rank(). */
  rank?: number;
  /** Shuffle (the same permutation on every rank, from seed and epoch). Default true. */
  shuffle?: boolean;
  /** Seed of the shuffle; must be the same on every rank. Default 0. */
  seed?: number;
  /**
   * Drop the tail so that every rank gets floor(n / numReplicas) items; otherwise (default) pad
   * with items from the start so that every rank gets ceil(n / numReplicas).
   */
  dropLast?: boolean;
}

/**
 * Dataset indices for one rank: the (shuffled) indices, padded or cut to a multiple of
 * numReplicas, then every numReplicas-th from `rank` — disjoint shards of equal length that
 * together cover the set (torch's DistributedSampler). Give it to a DataLoader as `sampler`; the
 * loader tells it the epoch each pass (or call {@link setEpoch} when iterating it yourself).
 * @example
 * const sampler = new et.distributed.DistributedSampler(ds, { shuffle: true, seed: 1 });
 * const loader = new et.data.DataLoader(ds, { batchSize: 8, sampler, collate });
 */
export class DistributedSampler implements Sampler {
  readonly numReplicas: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  /** Items of the dataset. */
  readonly size: number;
  private epochNumber = 0;

  /**
   * @param dataset a dataset (its `length`) or a number of items
   * @throws EmotorchError ERR_INVALID_ARG for a bad option, or ERR_DIST_STATE when rank or
   *   numReplicas is not given and the process group is not initialized.
   */
  constructor(dataset: { length: number } | number, opts: DistributedSamplerOptions = {}) {
    const n = typeof dataset === 'number' ? dataset : dataset?.length;
    if (!Number.isInteger(n) || (n as number) < 0) invalid('a dataset with a length, or a number of items', 'dataset', dataset);
    if (opts === null || typeof opts !== 'object') invalid('an options object', 'DistributedSampler options', opts);
    checkOptionNames(opts, ['numReplicas', 'rank', 'shuffle', 'seed', 'dropLast'], 'DistributedSampler options');
    this.size = n as number;
    this.numReplicas = opts.numReplicas === undefined ? group.worldSize() : checkInt(opts.numReplicas, 'numReplicas', 1);
    this.rank = opts.rank === undefined ? group.rank() : checkInt(opts.rank, 'rank', 0);
    if (this.rank >= this.numReplicas) invalid(`a rank from 0 to ${this.numReplicas - 1}`, 'rank', this.rank);
    for (const k of ['shuffle', 'dropLast'] as const) if (opts[k] !== undefined && typeof opts[k] !== 'boolean') invalid('a boolean', k, opts[k]);
    this.shuffle = opts.shuffle ?? true;
    this.dropLast = opts.dropLast ?? false;
    this.seed = opts.seed === undefined ? 0 : checkInt(opts.seed, 'seed', 0);
  }

  /** Items per rank and epoch. */
  get length(): number {
    const n = this.size,
      r = this.numReplicas;
    return this.dropLast ? Math.floor(n / r) : Math.ceil(n / r); // torch: ceil((n - r) / r) with drop_last and n % r ≠ 0
  }

  /** The epoch {@link indices} uses by default. */
  get epoch(): number {
    return this.epochNumber;
  }

  /** Sets the epoch (the shuffle depends on seed and epoch only). */
  setEpoch(epoch: number): void {
    this.epochNumber = checkInt(epoch, 'epoch', 0);
  }

  /** This rank's dataset indices for an epoch. */
  indices(epoch: number = this.epochNumber): number[] {
    checkInt(epoch, 'epoch', 0);
    let order = Array.from({ length: this.size }, (_, i) => i);
    if (this.shuffle) shuffleInPlace(order, mulberry32(mixSeed(this.seed, epoch)));
    const per = this.length;
    const total = per * this.numReplicas;
    if (!this.dropLast) {
      const pad = total - order.length;
      if (pad > 0 && order.length > 0) {
        const extra: number[] = [];
        while (extra.length < pad) extra.push(...order.slice(0, pad - extra.length));
        order = order.concat(extra);
      }
    } else order = order.slice(0, total);
    const out: number[] = [];
    for (let i = this.rank; i < total; i += this.numReplicas) out.push(order[i]);
    return out;
  }
}
