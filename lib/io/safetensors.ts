/**
 * safetensors files (the HF format): the JSON header is read and checked here; native code reads
 * each tensor into memory it owns (no views of a mapping: another program truncating or rewriting
 * the file can neither crash the process nor change loaded tensors; `fromPretrained` loads so
 * too) and writes files atomically
 * (a uniquely named temporary file, then rename: a failed save never leaves a half-written file).
 */
import * as fs from 'fs';
import { resolve as resolvePath } from 'path';
import { binding } from '../native';
import { Tensor } from '../tensor';
import { DType, DTYPE_BYTES } from '../dtype';
import { EmotorchError, checkOptionNames, invalid } from '../errors';
import { openRegularSync } from './file';

const TO_DTYPE: Record<string, DType> = {
  F32: 'float32',
  F64: 'float64',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};
const FROM_DTYPE: Record<DType, string> = Object.fromEntries(Object.entries(TO_DTYPE).map(([k, v]) => [v, k])) as Record<DType, string>;
/** The official reader's limits: header bytes, and JSON nesting (serde_json's recursion limit). */
const MAX_HEADER = 100_000_000;
const MAX_DEPTH = 127;
/** Every dtype name the official format defines (those emotorch lacks are "unsupported", not "unknown"). */
const OFFICIAL_DTYPES = new Set([
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
]);

/** One tensor's entry in a safetensors header: dtype, shape and byte range. */
export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  /** Byte range inside the data section. */
  begin: number;
  end: number;
}

/** A safetensors file's header: the entries, the metadata and where the data starts. */
export interface SafetensorsHeader {
  /** Tensor entries in file order. */
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Byte offset where the data section starts (8 + header length). */
  dataStart: number;
  fileSize: number;
}

class HeaderError extends Error {}

/** A number written with a fraction or exponent: never an integer field (serde reads `8.0` as a float). */
class FloatLiteral {
  constructor(readonly value: number) {}
}

/**
 * A JSON reader for headers, with the official reader's rules that JSON.parse cannot see:
 * nesting of at most 127 levels, integer fields written as integers, and no repeated struct
 * field (`__metadata__` at the top; dtype/shape/data_offsets in an entry). Objects become Maps
 * (a "__proto__" key is just a key); a repeated key keeps its last value, as serde's maps do.
 */
class HeaderParser {
  private i = 0;
  /** Keys repeated within each object. */
  readonly repeated = new WeakMap<Map<string, unknown>, Set<string>>();
  constructor(private readonly s: string) {}

  parse(): unknown {
    if (this.s[0] !== '{') this.fail("the header does not start with '{'");
    const v = this.value(1);
    this.ws();
    if (this.i < this.s.length) this.fail('text follows the header object');
    return v;
  }
  private fail(why: string): never {
    throw new HeaderError(`${why} (character ${this.i})`);
  }
  private ws(): void {
    const s = this.s;
    while (this.i < s.length && (s[this.i] === ' ' || s[this.i] === '\n' || s[this.i] === '\r' || s[this.i] === '\t')) this.i++;
  }
  private value(depth: number): unknown {
    this.ws();
    const c = this.s[this.i];
    if (c === '{' || c === '[') {
      if (depth > MAX_DEPTH) this.fail(`JSON nested deeper than ${MAX_DEPTH} levels`);
      return c === '{' ? this.object(depth) : this.array(depth);
    }
    if (c === '"') return this.string();
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    const num = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    num.lastIndex = this.i;
    const m = num.exec(this.s);
    if (!m) this.fail('the header is not valid JSON');
    this.i += m[0].length;
    return m[1] || m[2] ? new FloatLiteral(Number(m[0])) : Number(m[0]);
  }
  private string(): string {
    const start = this.i;
    let j = start + 1;
    for (;;) {
      j = this.s.indexOf('"', j);
      if (j < 0) this.fail('a string is not closed');
      let b = j - 1;
      while (this.s[b] === '\\') b--;
      if ((j - 1 - b) % 2 === 0) break; // an even number of backslashes: the quote ends the string
      j++;
    }
    this.i = j + 1;
    try {
      return JSON.parse(this.s.slice(start, j + 1)) as string;
    } catch {
      this.i = start;
      return this.fail('a string is not valid JSON');
    }
  }
  private array(depth: number): unknown[] {
    const out: unknown[] = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return out;
      if (c !== ',') {
        this.i--;
        this.fail('expected , or ] in an array');
      }
    }
  }
  private object(depth: number): Map<string, unknown> {
    const out = new Map<string, unknown>();
    this.i++;
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return out;
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.fail('expected a key string');
      const k = this.string();
      this.ws();
      if (this.s[this.i++] !== ':') {
        this.i--;
        this.fail('expected : after a key');
      }
      const v = this.value(depth + 1);
      if (out.has(k)) {
        const r = this.repeated.get(out) ?? new Set<string>();
        r.add(k);
        this.repeated.set(out, r);
        out.delete(k); // the last value wins, in the last position
      }
      out.set(k, v);
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return out;
      if (c !== ',') {
        this.i--;
        this.fail('expected , or } in an object');
      }
    }
  }
}

function corrupt(path: string, why: string): never {
  throw new EmotorchError(`'${path}' is not a valid safetensors file: ${why}`, 'ERR_FORMAT');
}

const isIndex = (d: unknown): d is number => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0;

/**
 * Reads and validates a safetensors header without touching the data, with the official
 * library's rules: a header of at most 100 MB that is UTF-8 JSON starting with '{', nested at
 * most 127 levels; `__metadata__` absent, null or an object of strings; each tensor an object
 * with a known dtype, a shape of non-negative integers and two integer `data_offsets` whose
 * span equals the shape's size; and the offsets, sorted, tiling the data section exactly from 0
 * to the end of the file (no overlap, no hole, no trailing byte).
 * @throws EmotorchError ERR_IO when the file cannot be read or is not a regular file (a FIFO or
 *   device is refused before anything is read); ERR_FORMAT naming the file and the problem.
 */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  if (typeof path !== 'string') invalid('a file path', 'path', path);
  const { fd, size: fileSize } = openRegularSync(path);
  try {
    if (fileSize < 8) corrupt(path, `the file has ${fileSize} bytes, fewer than the 8-byte header length`);
    const read = (n: number, at: number): Buffer => {
      const b = Buffer.alloc(n);
      let off = 0;
      while (off < n) {
        const got = fs.readSync(fd, b, off, n - off, at + off);
        if (got === 0) corrupt(path, 'the file shrank while it was read');
        off += got;
      }
      return b;
    };
    const n = read(8, 0).readBigUInt64LE(0);
    if (n > BigInt(Math.min(MAX_HEADER, fileSize - 8)))
      corrupt(path, `the header length field exceeds the file (${fileSize} bytes) or the ${MAX_HEADER}-byte limit`); // not the value: 8 bytes of whatever file this is
    const hlen = Number(n);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(read(hlen, 8));
    } catch (e) {
      if (e instanceof EmotorchError) throw e;
      return corrupt(path, 'the header is not UTF-8 text');
    }
    const parser = new HeaderParser(text);
    let json: unknown;
    try {
      json = parser.parse();
    } catch (e) {
      if (!(e instanceof HeaderError)) throw e;
      return corrupt(path, `the header is not valid: ${e.message}`);
    }
    const top = json as Map<string, unknown>;
    if (parser.repeated.get(top)?.has('__metadata__')) corrupt(path, '__metadata__ appears twice');
    const dataStart = 8 + hlen;
    const dataSize = fileSize - dataStart;
    const entries = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of top) {
      if (name === '__metadata__') {
        if (raw === null) continue;
        if (!(raw instanceof Map)) corrupt(path, '__metadata__ is not an object');
        metadata = {};
        for (const [k, v] of raw as Map<string, unknown>) {
          if (typeof v !== 'string') corrupt(path, `__metadata__ value '${k}' is not a string`);
          Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
        }
        continue;
      }
      if (!(raw instanceof Map)) corrupt(path, `entry '${name}' is not an object`);
      const e = raw as Map<string, unknown>;
      const twice = [...(parser.repeated.get(e) ?? [])].find((k) => k === 'dtype' || k === 'shape' || k === 'data_offsets');
      if (twice) corrupt(path, `tensor '${name}' has ${twice} twice`);
      const dt = e.get('dtype');
      const dtype = typeof dt === 'string' ? TO_DTYPE[dt] : undefined;
      if (!dtype) {
        corrupt(
          path,
          typeof dt === 'string' && OFFICIAL_DTYPES.has(dt)
            ? `tensor '${name}' has unsupported dtype "${dt}"`
            : `tensor '${name}' has no dtype of the format (BOOL, U8, F16, F32, …)`,
        );
      }
      const shape = e.get('shape');
      if (!Array.isArray(shape) || !shape.every(isIndex)) corrupt(path, `tensor '${name}' has no shape of non-negative integers`);
      const off = e.get('data_offsets');
      if (!Array.isArray(off) || off.length !== 2 || !off.every(isIndex)) corrupt(path, `tensor '${name}' has no data_offsets of two non-negative integers`);
      const [begin, end] = off as number[];
      let need = DTYPE_BYTES[dtype];
      for (const d of shape as number[]) {
        need *= d;
        if (!Number.isSafeInteger(need)) corrupt(path, `tensor '${name}' has a shape whose size overflows`);
      }
      if (end < begin || end - begin !== need) corrupt(path, `tensor '${name}' spans ${end - begin} bytes but ${dtype} [${shape}] needs ${need}`);
      entries.set(name, { dtype, shape: shape as number[], begin, end });
    }
    // The data section is tiled: sorted by (begin, end), each tensor starts where the last ended.
    const sorted = [...entries].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
    let at = 0;
    for (const [name, e] of sorted) {
      if (e.begin !== at)
        corrupt(
          path,
          `tensor '${name}' starts at byte ${e.begin} of the data section, not at ${at} where the previous one ends (${e.begin < at ? 'overlap' : 'a hole'})`,
        );
      at = e.end;
    }
    if (at > dataSize)
      throw new EmotorchError(`'${path}' is truncated: its tensors end at byte ${at} of the data section but the file holds ${dataSize}`, 'ERR_FORMAT');
    if (at < dataSize) corrupt(path, `${dataSize - at} bytes follow the last tensor (the data section must end with it)`);
    return { entries, metadata, dataStart, fileSize };
  } finally {
    fs.closeSync(fd);
  }
}

/** A loaded safetensors file: its tensors by name and its metadata. */
export interface LoadedSafetensors {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/** Options of {@link loadSafetensors}. */
export interface LoadSafetensorsOptions {
  /** Only these tensors (each must be in the file). */
  only?: Iterable<string>;
}

/**
 * Loads tensors from a safetensors file (all of them, or the names in `only`). The tensors are
 * on the CPU in the file's dtype (bf16 and f16 included) and own their memory: each is read with
 * pread straight into its own storage (on the thread pool, large tensors in parallel pieces),
 * nothing staged, so a load takes the tensors' size and no more. No tensor views a mapping of the
 * file: another program rewriting or truncating the file later changes nothing loaded and cannot
 * crash the process. A file modified while it is read is an error, not a mix of two versions.
 * @param path the file
 * @param opts `only`: the names to load
 * @throws EmotorchError ERR_IO / ERR_FORMAT as {@link readSafetensorsHeader}; ERR_IO when the file
 *   changes (size, modification time) between its header and the end of the read; ERR_STATE_DICT
 *   when a name in `only` is absent; ERR_INVALID_ARG for a bad option.
 * @example
 * const { tensors, metadata } = await et.io.loadSafetensors('model.safetensors');
 * const some = await et.io.loadSafetensors('model.safetensors', { only: ['lm_head.weight'] });
 */
export async function loadSafetensors(path: string, opts: LoadSafetensorsOptions = {}): Promise<LoadedSafetensors> {
  checkOptionNames(opts, ['only'], 'loadSafetensors options');
  const header = readSafetensorsHeader(path);
  let names = [...header.entries.keys()];
  if (opts.only) {
    names = [...opts.only];
    const absent = names.filter((n) => !header.entries.has(n));
    if (absent.length) throw new EmotorchError(`'${path}' has no tensor named ${absent.map((n) => `'${n}'`).join(', ')}`, 'ERR_STATE_DICT');
  }
  const list = names.map((n) => {
    const e = header.entries.get(n)!;
    return [n, e.dtype, e.shape, e.begin, e.end] as [string, string, number[], number, number];
  });
  const handles = await binding.readSafetensors(path, header.dataStart, list, header.fileSize);
  return { tensors: new Map(names.map((n, i) => [n, new Tensor(handles[i])])), metadata: header.metadata };
}

/**
 * Saves named tensors as safetensors (any device; written as their dtype), with optional string
 * metadata. The file is replaced atomically; concurrent saves to one path run in call order.
 * @throws EmotorchError ERR_INVALID_ARG for a non-Tensor value or non-string metadata; ERR_IO on
 *   a write failure (the old file, if any, is left untouched).
 */
export async function saveSafetensors(
  path: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  if (typeof path !== 'string') invalid('a file path', 'path', path);
  const items = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') invalid('a string', `metadata['${k}']`, v);
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of items) {
    if (!(t instanceof Tensor)) invalid('a Tensor', `tensors['${name}']`, t);
    if (name === '__metadata__') invalid('a tensor name other than __metadata__', 'tensors', name);
    const n = t.numel * DTYPE_BYTES[t.dtype];
    header[name] = { dtype: FROM_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const handles = items.map(([, t]) => t.handle);
  // Saves to one path run one after another in call order, so a save that resolves finds its own
  // data in the file and the last call wins (each writes its own temporary file, then renames).
  const key = resolvePath(path);
  const mine = (inFlight.get(key) ?? Promise.resolve()).catch(() => undefined).then(() => binding.writeSafetensors(path, json, handles));
  inFlight.set(key, mine);
  try {
    await mine;
  } finally {
    if (inFlight.get(key) === mine) inFlight.delete(key);
  }
}

/** The last save started for each resolved path. */
const inFlight = new Map<string, Promise<void>>();
