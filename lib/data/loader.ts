/**
 * DataLoader: batches from a dataset as an async iterator, with a seeded shuffle, drop-last,
 * optional length bucketing and background prefetch (the next batches are prepared, their
 * `dataset.get` calls running concurrently, while the consumer works on the current one).
 */
import { invalid, checkInt, checkOptionNames } from '../errors';
import { mulberry32 } from '../runtime';
import type { Dataset } from './datasets/base';

/** Options of `new DataLoader` (torch DataLoader's arguments, camelCase). */
export interface DataLoaderOptions<T, B> {
  /** Items per batch. Default 1. */
  batchSize?: number;
  /** Shuffle every epoch (the order depends only on `seed` and the epoch). Default false. */
  shuffle?: boolean;
  /** Seed of the shuffle. Default 0. */
  seed?: number;
  /** Drop the last batch when it is smaller than batchSize. Default false. */
  dropLast?: boolean;
  /** Turns a list of items into a batch (may be async). Default: the list itself. */
  collate?: (items: T[]) => B | Promise<B>;
  /** Batches prepared ahead of the one the consumer holds. Default 2; 0 turns prefetch off. */
  prefetch?: number;
  /**
   * A length key: items are sorted by it within chunks of `batchSize × bucketChunk` (in the
   * shuffled order), cut into batches, and the batches of a chunk shuffled. Keys are cached by
   * index after the first time an item is seen.
   */
  bucketBy?: (item: T, index: number) => number;
  /** Batches per bucketing chunk. Default 50. */
  bucketChunk?: number;
  /**
   * Where the indices come from instead of the whole dataset (e.g. a DistributedSampler: this
   * rank's shard). The loader tells it each pass's epoch. Not with `shuffle` (the sampler
   * shuffles).
   */
  sampler?: Sampler;
}

/**
 * Chooses which dataset indices an epoch visits, in order (e.g. et.distributed.DistributedSampler).
 */
export interface Sampler {
  /** Indices per epoch. */
  readonly length: number;
  /** The indices for an epoch (the same (sampler, epoch) gives the same list). */
  indices(epoch: number): number[];
  /** Told the epoch before each pass of a DataLoader. */
  setEpoch?(epoch: number): void;
}

interface BatchPlan<T> {
  indices: number[];
  /** Items already loaded while computing bucket keys. */
  items?: (T | undefined)[];
}

export { mulberry32 };

/** A 32-bit seed mixed from (seed, epoch) with splitmix32-style finalization. */
export function mixSeed(seed: number, epoch: number): number {
  let z = (Math.imul(seed | 0, 0x9e3779b9) ^ Math.imul(epoch + 1, 0x85ebca6b) ^ (Math.floor(seed / 4294967296) | 0)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

export function shuffleInPlace<X>(a: X[], rand: () => number): X[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/**
 * Batches from a dataset, as an async iterable.
 *
 * Each `for await` pass is one epoch: it uses the current epoch number and then advances it, so
 * successive passes shuffle differently and the same (seed, epoch) always gives the same order;
 * {@link DataLoader.setEpoch} sets it (to resume a run).
 *
 * @example
 * const loader = new et.data.DataLoader(ds, {
 *   batchSize: 8, shuffle: true, seed: 1,
 *   collate: (items) => et.data.padSequences(items.map((x) => x.audio)),
 * });
 * for await (const batch of loader) { ... }
 */
export class DataLoader<T, B = T[]> implements AsyncIterable<B> {
  readonly dataset: Dataset<T>;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  readonly prefetch: number;
  private readonly collate: (items: T[]) => B | Promise<B>;
  private readonly bucketBy?: (item: T, index: number) => number;
  private readonly bucketChunk: number;
  private readonly keys = new Map<number, number>();
  /** The sampler given, if any. */
  readonly sampler?: Sampler;
  private epochNumber = 0;

  /**
   * @param dataset anything with `length` and `get(i)` (sync or async)
   * @param opts see {@link DataLoaderOptions}
   * @throws EmotorchError ERR_INVALID_ARG for a bad dataset or option.
   */
  constructor(dataset: Dataset<T>, opts: DataLoaderOptions<T, B> = {}) {
    if (!dataset || typeof dataset.get !== 'function' || !Number.isInteger(dataset.length) || dataset.length < 0) {
      invalid('a dataset with a length and get(index)', 'dataset', dataset);
    }
    if (opts === null || typeof opts !== 'object') invalid('an options object', 'options', opts);
    checkOptionNames(opts, ['batchSize', 'shuffle', 'seed', 'dropLast', 'collate', 'prefetch', 'bucketBy', 'bucketChunk', 'sampler'], 'DataLoader');
    this.dataset = dataset;
    this.batchSize = opts.batchSize === undefined ? 1 : checkInt(opts.batchSize, 'batchSize', 1);
    this.seed = opts.seed === undefined ? 0 : checkInt(opts.seed, 'seed', 0);
    this.prefetch = opts.prefetch === undefined ? 2 : checkInt(opts.prefetch, 'prefetch', 0);
    this.bucketChunk = opts.bucketChunk === undefined ? 50 : checkInt(opts.bucketChunk, 'bucketChunk', 1);
    for (const k of ['shuffle', 'dropLast'] as const) if (opts[k] !== undefined && typeof opts[k] !== 'boolean') invalid('a boolean', k, opts[k]);
    this.shuffle = !!opts.shuffle;
    this.dropLast = !!opts.dropLast;
    if (opts.collate !== undefined && typeof opts.collate !== 'function') invalid('a function', 'collate', opts.collate);
    if (opts.bucketBy !== undefined && typeof opts.bucketBy !== 'function') invalid('a function', 'bucketBy', opts.bucketBy);
    if (opts.sampler !== undefined) {
      const sm = opts.sampler as Sampler;
      if (!sm || typeof sm.indices !== 'function' || !Number.isInteger(sm.length) || sm.length < 0)
        invalid('a sampler with length and indices(epoch)', 'sampler', sm);
      if (this.shuffle) invalid('shuffle false or absent with a sampler (the sampler decides the order)', 'shuffle', true);
      this.sampler = sm;
    }
    this.collate = opts.collate ?? ((items: T[]) => items as unknown as B);
    this.bucketBy = opts.bucketBy;
  }

  /** Batches per epoch. */
  get length(): number {
    const n = this.sampler ? this.sampler.length : this.dataset.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** The epoch the next pass will use. */
  get epoch(): number {
    return this.epochNumber;
  }

  /**
   * Sets the epoch the next pass uses (the shuffle depends on seed and epoch only).
   * @throws EmotorchError ERR_INVALID_ARG for a negative or non-integer epoch.
   */
  setEpoch(epoch: number): void {
    this.epochNumber = checkInt(epoch, 'epoch', 0);
  }

  /** The batches' dataset indices for an epoch, without loading anything (no bucketing). */
  indices(epoch = this.epochNumber): number[][] {
    checkInt(epoch, 'epoch', 0);
    const order = this.order(mulberry32(mixSeed(this.seed, epoch)), epoch);
    return this.cut(order);
  }

  private order(rand: () => number, epoch: number): number[] {
    if (this.sampler) {
      this.sampler.setEpoch?.(epoch);
      const idx = this.sampler.indices(epoch);
      for (const i of idx)
        if (!Number.isInteger(i) || i < 0 || i >= this.dataset.length) invalid(`indices from 0 to ${this.dataset.length - 1}`, 'sampler index', i);
      return [...idx];
    }
    const order = Array.from({ length: this.dataset.length }, (_, i) => i);
    return this.shuffle ? shuffleInPlace(order, rand) : order;
  }

  private cut(order: number[]): number[][] {
    const out: number[][] = [];
    for (let s = 0; s < order.length; s += this.batchSize) {
      const b = order.slice(s, s + this.batchSize);
      if (b.length < this.batchSize && this.dropLast) break;
      out.push(b);
    }
    return out;
  }

  private async *plan(epoch: number): AsyncGenerator<BatchPlan<T>> {
    const rand = mulberry32(mixSeed(this.seed, epoch));
    const order = this.order(rand, epoch);
    if (!this.bucketBy) {
      for (const indices of this.cut(order)) yield { indices };
      return;
    }
    const chunk = this.batchSize * this.bucketChunk;
    for (let c = 0; c < order.length; c += chunk) {
      const idx = order.slice(c, c + chunk);
      const loaded = new Map<number, T>();
      const missing = idx.filter((i) => !this.keys.has(i));
      for (let s = 0; s < missing.length; s += this.batchSize) {
        const part = missing.slice(s, s + this.batchSize);
        const items = await Promise.all(part.map((i) => this.dataset.get(i)));
        part.forEach((i, k) => {
          const key = this.bucketBy!(items[k], i);
          if (typeof key !== 'number' || Number.isNaN(key)) invalid('a number from bucketBy', `bucketBy(item ${i})`, key);
          this.keys.set(i, key);
          loaded.set(i, items[k]);
        });
      }
      idx.sort((a, b) => this.keys.get(a)! - this.keys.get(b)!); // stable: ties keep the shuffled order
      const batches = this.cut(idx);
      if (this.shuffle) shuffleInPlace(batches, rand);
      for (const indices of batches) {
        yield {
          indices,
          items: indices.map((i) => {
            const x = loaded.get(i);
            loaded.delete(i);
            return x;
          }),
        };
      }
    }
  }

  private async makeBatch(p: BatchPlan<T>): Promise<B> {
    const items = await Promise.all(p.indices.map((i, k) => (p.items && p.items[k] !== undefined ? (p.items[k] as T) : this.dataset.get(i))));
    return this.collate(items);
  }

  /** Yields the batches of one epoch (`for await (const batch of loader)`). */
  async *[Symbol.asyncIterator](): AsyncGenerator<B> {
    const epoch = this.epochNumber++;
    const planIt = this.plan(epoch);
    // Plans come one after another; batches are then made concurrently.
    let chain: Promise<unknown> = Promise.resolve();
    const next = (): Promise<IteratorResult<B, undefined>> => {
      const step = chain.then(() => planIt.next());
      chain = step.catch(() => undefined);
      const p = step.then(async (r): Promise<IteratorResult<B, undefined>> =>
        r.done ? { done: true, value: undefined } : { done: false, value: await this.makeBatch(r.value) },
      );
      p.catch(() => undefined); // handled where it is awaited; never an unhandled rejection
      return p;
    };
    const queue: Promise<IteratorResult<B, undefined>>[] = [];
    for (let k = 0; k <= this.prefetch; k++) queue.push(next());
    try {
      for (;;) {
        const r = await queue.shift()!;
        if (r.done) return;
        yield r.value;
        queue.push(next());
      }
    } finally {
      await planIt.return(undefined).catch(() => undefined);
    }
  }
}
