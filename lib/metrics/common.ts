/**
 * Shared pieces of the metric suites: reading predictions and targets (plain arrays, typed
 * arrays, nested arrays or {@link Tensor}s), the streaming base class, and Python-exact number
 * formatting (`round(x, n)`, `'{:.nf}'`) for the suites whose reference prints rounded numbers.
 */
import { EmotorchError, checkOptionNames, invalid, show } from '../errors';
import { Tensor } from '../tensor';

/** A class label: a number (booleans and bigints become numbers) or a string. */
export type Label = number | string;
/** A predicted label; `null` marks a generation the label parser could not read (a class of its own). */
export type PredLabel = Label | null;
/** What the classification metrics accept for labels. */
export type LabelInput = Tensor | ArrayLike<number | bigint | boolean | string | null> | readonly (number | bigint | boolean | string | null)[];
/** What the regression metrics accept for values (nested arrays are flattened row-major). */
export type NumberInput = Tensor | ArrayLike<number | bigint> | readonly unknown[];

/** The elements of a tensor as a flat plain array (numbers; bool as 0/1; int64 via Number). */
export function tensorValues(t: Tensor): number[] {
  const flat = t.dataSync() as ArrayLike<number | bigint>;
  const out = new Array<number>(flat.length);
  for (let i = 0; i < flat.length; i++) out[i] = Number(flat[i]);
  return out;
}

function flatten(v: readonly unknown[], out: unknown[]): void {
  for (const x of v) {
    if (Array.isArray(x)) flatten(x, out);
    else if (ArrayBuffer.isView(x) && !(x instanceof DataView))
      for (const y of x as unknown as ArrayLike<unknown> & Iterable<unknown>) out.push(y); // no spread: a long array passes V8's argument limit
    else out.push(x);
  }
}

/**
 * Reads labels: a Tensor, a TypedArray or a (nested) array of numbers, strings, booleans, bigints
 * or null (null = unparsable prediction, allowed only where `allowNull`).
 * @throws EmotorchError ERR_INVALID_ARG for any other element (NaN and ±Infinity included), or strings mixed with numbers.
 */
export function toLabels(x: unknown, name: string, allowNull = false): PredLabel[] {
  let raw: unknown[];
  if (x instanceof Tensor) raw = tensorValues(x);
  else if (Array.isArray(x)) {
    raw = [];
    flatten(x, raw);
  } else if (ArrayBuffer.isView(x) && !(x instanceof DataView)) raw = Array.from(x as unknown as ArrayLike<unknown>);
  else return invalid('an array or Tensor of labels', name, x);
  let kind: 'number' | 'string' | null = null;
  const out = new Array<PredLabel>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    let v = raw[i];
    if (typeof v === 'boolean') v = v ? 1 : 0;
    else if (typeof v === 'bigint') v = Number(v);
    if (v === null && allowNull) {
      out[i] = null;
      continue;
    }
    const k = typeof v === 'number' ? 'number' : typeof v === 'string' ? 'string' : null;
    if (k === null || (k === 'number' && !Number.isFinite(v)))
      invalid(`labels that are finite numbers or strings${allowNull ? ' (or null)' : ''}`, `${name}[${i}]`, v);
    if (kind === null) kind = k;
    else if (kind !== k) invalid(`labels of one type (all numbers or all strings)`, `${name}[${i}]`, v);
    out[i] = v as Label;
  }
  return out;
}

/**
 * Reads numbers for the regression metrics (Tensor, TypedArray or nested arrays, flattened).
 * @throws EmotorchError ERR_INVALID_ARG on NaN, a non-number, or an infinite value.
 */
export function toNumbers(x: unknown, name: string): number[] {
  let raw: unknown[];
  if (x instanceof Tensor) raw = tensorValues(x);
  else if (Array.isArray(x)) {
    raw = [];
    flatten(x, raw);
  } else if (ArrayBuffer.isView(x) && !(x instanceof DataView)) raw = Array.from(x as unknown as ArrayLike<unknown>);
  else return invalid('an array or Tensor of numbers', name, x);
  const out = new Array<number>(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const v = typeof raw[i] === 'bigint' ? Number(raw[i]) : raw[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) invalid('finite numbers (no NaN)', `${name}[${i}]`, v);
    out[i] = v;
  }
  return out;
}

/** Reads an array of strings (generated texts, references). */
export function toStrings(x: unknown, name: string): string[] {
  if (!Array.isArray(x)) return invalid('an array of strings', name, x);
  x.forEach((s, i) => {
    if (typeof s !== 'string') invalid('a string', `${name}[${i}]`, s);
  });
  return x as string[];
}

/** @throws ERR_INVALID_ARG when the two lengths differ. */
export function sameLength(a: { length: number }, b: { length: number }, what = 'preds and targets'): void {
  if (a.length !== b.length) {
    throw new EmotorchError(`Expected ${what} of the same length but received ${a.length} and ${b.length}`, 'ERR_INVALID_ARG');
  }
}

/** @throws ERR_INVALID_ARG for an empty input. */
export function nonEmpty(n: number, name: string): void {
  if (n === 0) throw new EmotorchError(`Expected at least one sample for ${name} but received none`, 'ERR_INVALID_ARG');
}

/** Checks an options argument is an object (or undefined) and names its unknown keys. */
export function checkOptions<T extends object>(opts: unknown, name: string, keys: readonly string[]): T {
  return checkOptionNames(opts as T, keys, name);
}

/** Checks `v` is one of `choices`. */
export function oneOf<T>(v: unknown, choices: readonly T[], name: string): T {
  if (!choices.includes(v as T)) invalid(`one of ${choices.map((c) => show(c)).join(', ')}`, name, v);
  return v as T;
}

/**
 * The streaming form every metric has: `update(preds, targets)` per batch, `compute()` over all
 * batches so far, `reset()`. Batches are kept (metrics of an evaluation set are small) and the
 * one-shot function runs over their concatenation, so a streamed result equals the one-shot
 * result bit for bit.
 */
export abstract class Metric<P, T, R> {
  protected preds: P[] = [];
  protected targets: T[] = [];
  /** Reads one batch of predictions and targets; throws on bad input before storing anything. */
  protected abstract read(preds: unknown, targets: unknown): [P[], T[]];
  /** The metric over everything seen. */
  protected abstract run(preds: P[], targets: T[]): R;
  /**
   * Adds one batch.
   * @param preds predictions of the batch
   * @param targets targets of the batch
   * @throws EmotorchError ERR_INVALID_ARG on bad input (nothing of the batch is kept then)
   */
  update(preds: unknown, targets: unknown): this {
    const [p, t] = this.read(preds, targets);
    sameLength(p, t);
    for (const v of p) this.preds.push(v);
    for (const v of t) this.targets.push(v);
    return this;
  }
  /**
   * The metric over every batch since construction or the last {@link reset}.
   * @throws EmotorchError ERR_INVALID_ARG when nothing was added
   */
  compute(): R {
    return this.run(this.preds, this.targets);
  }
  /** Forgets every batch. */
  reset(): void {
    this.preds = [];
    this.targets = [];
  }
  /** Number of samples seen. */
  get count(): number {
    return this.preds.length;
  }
}

/** The exact decimal expansion of a finite double (|x| < 1e21), at most 100 fraction digits. */
function exactDecimal(a: number): string {
  return a.toFixed(100);
}

/**
 * Python's `round(x, digits)` on a float: the decimal nearest to the exact binary value, ties to
 * even (then the nearest double).
 */
export function pyRound(x: number, digits: number): number {
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return x;
  return Number(pyFixed(x, digits));
}

/**
 * Python's `'{:.<digits>f}'.format(x)`: the exact value rounded half to even to `digits`
 * fraction digits (`nan`, `inf`, `-inf` as Python prints them).
 */
export function pyFixed(x: number, digits: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  const neg = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  if (a >= 1e21) return (neg ? '-' : '') + a.toFixed(0);
  const exact = exactDecimal(a);
  const dot = exact.indexOf('.');
  const head = exact.slice(0, dot + 1 + digits);
  const rest = exact.slice(dot + 1 + digits);
  let up = false;
  if (rest[0] > '5') up = true;
  else if (rest[0] === '5') {
    if (/[1-9]/.test(rest.slice(1))) up = true;
    else {
      const last = digits === 0 ? head[dot - 1] : head[head.length - 1];
      up = Number(last) % 2 === 1;
    }
  }
  let s = digits === 0 ? head.slice(0, dot) : head;
  if (up) {
    // add one unit in the last place, carrying through the digits
    const chars = s.split('');
    let i = chars.length - 1;
    for (; i >= 0; i--) {
      if (chars[i] === '.') continue;
      if (chars[i] === '9') {
        chars[i] = '0';
        continue;
      }
      chars[i] = String(Number(chars[i]) + 1);
      break;
    }
    s = (i < 0 ? '1' : '') + chars.join('');
  }
  return (neg ? '-' : '') + s;
}

/**
 * numpy's `np.round(x, digits)` (what `round()` does on a numpy float64): `rint(x * 10**d) / 10**d`,
 * rint rounding half to even on the already-rounded product.
 */
export function npRound(x: number, digits: number): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  const y = x * f;
  let r = Math.round(y);
  if (Math.abs(y - Math.trunc(y)) === 0.5) r = 2 * Math.round(y / 2);
  return r / f;
}

/** Python's `len(s)` (code points, not UTF-16 units). */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Orders labels as Python's `sorted` / `np.unique` do (numbers numerically, strings by code point); null last. */
export function compareLabels(a: PredLabel, b: PredLabel): number {
  if (a === b) return 0;
  if (a === null) return 1;
  if (b === null) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  const x = String(a);
  const y = String(b);
  const xs = [...x];
  const ys = [...y];
  for (let i = 0; i < Math.min(xs.length, ys.length); i++) {
    const d = xs[i].codePointAt(0)! - ys[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return xs.length - ys.length;
}

/** Sorted distinct labels of the given lists. */
export function uniqueLabels(...lists: PredLabel[][]): PredLabel[] {
  const s = new Set<PredLabel>();
  for (const l of lists) for (const v of l) s.add(v);
  return [...s].sort(compareLabels);
}

/** Python's `str.split()` whitespace. */
export const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPLIT = new RegExp(`[${PY_SPACE}]+`, 'u');
/** Python's `s.split()` (no argument): splits on runs of Unicode whitespace, drops empty ends. */
export function pySplit(s: string): string[] {
  return s.split(PY_SPLIT).filter((t) => t.length > 0);
}
/** Python's `s.strip()` (no argument). */
export function pyStrip(s: string): string {
  return s.replace(new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'gu'), '');
}

/**
 * numpy's float64 sum (`np.sum`, and so `np.mean` = sum / n) of a 1-D array: pairwise summation
 * with 8 accumulators in blocks of up to 128, bit for bit, so means match numpy's to the last bit.
 */
export function npSum(a: ArrayLike<number>, start = 0, n = a.length - start): number {
  if (n < 8) {
    let r = 0;
    for (let i = 0; i < n; i++) r += a[start + i];
    return r;
  }
  if (n <= 128) {
    const r = [a[start], a[start + 1], a[start + 2], a[start + 3], a[start + 4], a[start + 5], a[start + 6], a[start + 7]];
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = r[0] + r[1] + (r[2] + r[3]) + (r[4] + r[5] + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return npSum(a, start, n2) + npSum(a, start + n2, n - n2);
}

/** numpy's `np.mean` of a 1-D float64 array. */
export function npMean(a: ArrayLike<number>): number {
  return npSum(a) / a.length;
}
