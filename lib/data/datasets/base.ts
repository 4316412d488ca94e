/**
 * What every dataset shares: a length, async `get(i)`, async iteration, and `skipBad`, which
 * drops items that fail validation when the file is loaded and records why.
 */
import * as path from 'path';
import { EmotorchError, invalid, checkInt } from '../../errors';
import { NdArray } from '../../io/ndarray';

/** Anything a DataLoader can draw from. */
export interface Dataset<T> {
  readonly length: number;
  /** The item at `index` (0 ≤ index < length), or a Promise of it. */
  get(index: number): Promise<T> | T;
}

/** An item a `skipBad` dataset skipped: its index and why. */
export interface SkippedItem {
  /** The item's index in the file (before skipping). */
  index: number;
  reason: string;
}

/** Options every file dataset takes (`skipBad`: skip malformed items and report them). */
export interface DatasetOptions {
  /**
   * Skip items that fail validation (recording them in `skippedItems`) instead of throwing.
   * Default false. Problems found only when an item is read (an undecodable audio file) still throw.
   */
  skipBad?: boolean;
}

/** An ERR_DATA error that names the file and the item. */
export function dataError(file: string, index: number | string, msg: string): EmotorchError {
  return new EmotorchError(`'${file}' item ${index}: ${msg}`, 'ERR_DATA');
}

/** Validates the options every dataset takes. */
export function checkDatasetOptions(opts: unknown, known: readonly string[]): void {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) invalid('an options object', 'options', opts);
  for (const k of Object.keys(opts as object)) {
    if (k !== 'skipBad' && !known.includes(k)) invalid(`one of skipBad, ${known.join(', ')}`, 'option name', k);
  }
  const skip = (opts as DatasetOptions).skipBad;
  if (skip !== undefined && typeof skip !== 'boolean') invalid('a boolean', 'skipBad', skip);
}

/**
 * The base of the dataset classes: holds validated records and turns them into items on `get`.
 * @typeParam T the item type
 * @typeParam R the validated record kept per item
 */
export abstract class BaseDataset<T, R> implements Dataset<T>, AsyncIterable<T> {
  /** The file the dataset was read from. */
  readonly file: string;
  /** Items dropped under `skipBad`, with the reason for each. */
  readonly skippedItems: SkippedItem[] = [];
  /** @internal */
  protected readonly records: R[] = [];
  /** @internal */
  protected readonly sourceIndex: number[] = [];

  protected constructor(file: string) {
    this.file = file;
  }

  /** The number of items (after skipping). */
  get length(): number {
    return this.records.length;
  }
  /** How many items `skipBad` dropped. */
  get skipped(): number {
    return this.skippedItems.length;
  }

  /**
   * Validates one raw item with `check`; under skipBad an ERR_DATA error skips it, otherwise it
   * is thrown. @internal
   */
  protected add(index: number, skipBad: boolean, check: () => R | R[]): void {
    let r: R | R[];
    try {
      r = check();
    } catch (e) {
      const err = e instanceof EmotorchError ? e : dataError(this.file, index, (e as Error).message);
      if (skipBad && err.code === 'ERR_DATA') {
        this.skippedItems.push({ index, reason: err.message });
        return;
      }
      throw err;
    }
    for (const x of Array.isArray(r) && this.multi ? (r as R[]) : [r as R]) {
      this.records.push(x);
      this.sourceIndex.push(index);
    }
  }
  /** True when `check` returns several records per raw item. @internal */
  protected multi = false;

  /**
   * The item at `index` (0 ≤ index < length).
   * @throws EmotorchError ERR_INVALID_ARG for an index out of range; ERR_DATA (naming the file
   *   and the item's index in it) when the item cannot be made.
   */
  async get(index: number): Promise<T> {
    checkInt(index, 'index', 0);
    if (index >= this.records.length) invalid(`an index below the dataset's length ${this.records.length}`, 'index', index);
    const src = this.sourceIndex[index];
    try {
      return await this.load(this.records[index], src);
    } catch (e) {
      if (e instanceof EmotorchError && e.code === 'ERR_DATA') throw e;
      throw dataError(this.file, src, (e as Error).message);
    }
  }

  /** Makes an item from its record. @internal */
  protected abstract load(record: R, sourceIndex: number): Promise<T> | T;

  /** Yields the items in order (`for await (const item of dataset)`). */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (let i = 0; i < this.records.length; i++) yield await this.get(i);
  }
}

// ---- conversions shared by the datasets ---------------------------------------------------

/** A file path resolved against a root folder (absolute paths are kept). */
export function resolveFrom(root: string, p: string): string {
  return path.isAbsolute(p) ? p : path.resolve(root, p);
}

/** A 1-D waveform from an NdArray (float or int16 PCM) or a number list; shares float32 data. */
export function toWaveform(v: unknown, what: string): Float32Array {
  if (v instanceof NdArray) {
    const nonUnit = v.shape.filter((d) => d !== 1);
    if (nonUnit.length > 1) throw new Error(`${what} has shape [${v.shape}], not one channel`);
    const d = v.data;
    if (d instanceof Float32Array) return d;
    if (d instanceof Float64Array) return Float32Array.from(d);
    if (d instanceof Int16Array) return Float32Array.from(d, (x) => x / 32768);
    throw new Error(`${what} is a numpy ${v.dtype} array; expected float32, float64, float16 or int16 audio`);
  }
  if (v instanceof Float32Array) return v;
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return Float32Array.from(v as number[]);
  throw new Error(`${what} is ${describeValue(v)}, not a waveform`);
}

/** Token ids from a list or an integer NdArray: non-negative safe integers. */
export function toIds(v: unknown, what: string): number[] {
  let list: unknown[];
  if (v instanceof NdArray) {
    if (v.ndim > 1 && v.shape.filter((d) => d !== 1).length > 1) throw new Error(`${what} has shape [${v.shape}], not a sequence`);
    list = Array.from(v.data as ArrayLike<unknown>);
  } else if (Array.isArray(v)) list = v;
  else throw new Error(`${what} is ${describeValue(v)}, not a list of token ids`);
  return list.map((x, i) => {
    const n = typeof x === 'bigint' ? Number(x) : x;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new Error(`${what}[${i}] is ${describeValue(x)}, not a token id`);
    return n;
  });
}

/** One number from a number, bigint, boolean, numpy scalar or a one-element array. */
export function toScalar(v: unknown, what: string): number {
  let x = v;
  if (x instanceof NdArray) {
    if (x.size !== 1) throw new Error(`${what} is an array of shape [${x.shape}], not one number`);
    x = (x.data as ArrayLike<unknown>)[0];
  }
  while (Array.isArray(x) && x.length === 1) x = x[0];
  if (typeof x === 'bigint') x = Number(x);
  if (typeof x === 'boolean') x = Number(x);
  if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`${what} is ${describeValue(v)}, not a finite number`);
  return x;
}

export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v === null ? 'None/null' : 'missing');
  if (v instanceof NdArray) return `a numpy ${v.dtype} array [${v.shape}]`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'object') return v instanceof Map ? 'a dict' : 'an object';
  return String(v);
}

/** A string field, or an error naming it. */
export function str(v: unknown, what: string, optional = false): string | undefined {
  if (v === undefined || v === null) {
    if (optional) return undefined;
    throw new Error(`${what} is missing`);
  }
  if (typeof v !== 'string') throw new Error(`${what} is ${describeValue(v)}, not a string`);
  return v;
}
