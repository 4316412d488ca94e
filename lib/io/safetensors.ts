/**
 * safetensors files (the HF format): the JSON header is read and checked here; native code maps
 * the data (copy-on-write mmap, so tensors cost no copy until written) and writes files
 * atomically (temporary file, then rename: a failed save never leaves a half-written file).
 */
import * as fs from 'fs';
import { resolve as resolvePath } from 'path';
import { binding } from '../native';
import { Tensor } from '../tensor';
import { DType } from '../dtype';
import { EmotorchError, invalid } from '../errors';

const TO_DTYPE: Record<string, DType> = {
  F32: 'float32', F64: 'float64', F16: 'float16', BF16: 'bfloat16', I64: 'int64', I32: 'int32',
  I16: 'int16', I8: 'int8', U8: 'uint8', BOOL: 'bool',
};
const FROM_DTYPE: Record<DType, string> = Object.fromEntries(Object.entries(TO_DTYPE).map(([k, v]) => [v, k])) as Record<DType, string>;
const SIZE: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };
const MAX_HEADER = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  /** Byte range inside the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Tensor entries in file order. */
  entries: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
  /** Byte offset where the data section starts (8 + header length). */
  dataStart: number;
  fileSize: number;
}

function corrupt(path: string, why: string): never {
  throw new EmotorchError(`'${path}' is not a valid safetensors file: ${why}`, 'ERR_FORMAT');
}

/**
 * Reads and validates a safetensors header without touching the data.
 * @throws EmotorchError ERR_IO when the file cannot be read; ERR_FORMAT when it is truncated or
 *   corrupt (bad length, bad JSON, unknown dtype, offsets out of range, size mismatch).
 */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  if (typeof path !== 'string') invalid('a file path', 'path', path);
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new EmotorchError(`cannot open '${path}': ${(e as Error).message}`, 'ERR_IO');
  }
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) corrupt(path, `the file has ${fileSize} bytes, fewer than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(Math.min(MAX_HEADER, fileSize - 8))) corrupt(path, `header length ${n} exceeds the file (${fileSize} bytes) or the ${MAX_HEADER}-byte limit`);
    const hlen = Number(n);
    const hbuf = Buffer.alloc(hlen);
    fs.readSync(fd, hbuf, 0, hlen, 8);
    let json: unknown;
    try {
      json = JSON.parse(hbuf.toString('utf8'));
    } catch (e) {
      corrupt(path, `the header is not JSON (${(e as Error).message})`);
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) corrupt(path, 'the header is not a JSON object');
    const dataStart = 8 + hlen;
    const dataSize = fileSize - dataStart;
    const entries = new Map<string, SafetensorsEntry>();
    let metadata: Record<string, string> = {};
    for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (raw === null || typeof raw !== 'object') corrupt(path, '__metadata__ is not an object');
        metadata = Object.fromEntries(Object.entries(raw as object).map(([k, v]) => [k, String(v)]));
        continue;
      }
      const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (!e || typeof e !== 'object') corrupt(path, `entry '${name}' is not an object`);
      const dtype = TO_DTYPE[String(e.dtype)];
      if (!dtype) corrupt(path, `tensor '${name}' has unsupported dtype ${JSON.stringify(e.dtype)}`);
      if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) corrupt(path, `tensor '${name}' has a bad shape ${JSON.stringify(e.shape)}`);
      const off = e.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[0] > off[1]) {
        corrupt(path, `tensor '${name}' has bad data_offsets ${JSON.stringify(off)}`);
      }
      const shape = e.shape as number[];
      const [begin, end] = off as number[];
      const need = shape.reduce((a, b) => a * b, 1) * SIZE[dtype];
      if (end - begin !== need) corrupt(path, `tensor '${name}' spans ${end - begin} bytes but ${dtype} [${shape}] needs ${need}`);
      if (end > dataSize) {
        throw new EmotorchError(`'${path}' is truncated: tensor '${name}' ends at byte ${end} of the data section but the file holds ${dataSize}`, 'ERR_FORMAT');
      }
      entries.set(name, { dtype, shape, begin, end });
    }
    return { entries, metadata, dataStart, fileSize };
  } finally {
    fs.closeSync(fd);
  }
}

export interface LoadedSafetensors {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/**
 * Loads tensors from a safetensors file (all of them, or the names in `only`). The tensors are
 * on the CPU in the file's dtype (bf16 and f16 included) and view a private memory map of the file.
 * @throws EmotorchError ERR_IO / ERR_FORMAT as {@link readSafetensorsHeader}; ERR_STATE_DICT when a
 *   name in `only` is absent.
 * @example
 * const { tensors, metadata } = await et.io.loadSafetensors('model.safetensors');
 */
export async function loadSafetensors(path: string, opts: { only?: Iterable<string> } = {}): Promise<LoadedSafetensors> {
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
  const handles = await binding.readSafetensors(path, header.dataStart, list);
  return { tensors: new Map(names.map((n, i) => [n, new Tensor(handles[i])])), metadata: header.metadata };
}

/**
 * Saves named tensors as safetensors (any device; written as their dtype), with optional string
 * metadata. The file is replaced atomically; concurrent saves to one path run in call order.
 * @throws EmotorchError ERR_INVALID_ARG for a non-Tensor value or non-string metadata; ERR_IO on
 *   a write failure (the old file, if any, is left untouched).
 */
export async function saveSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata: Record<string, string> = {}): Promise<void> {
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
    const n = t.numel * SIZE[t.dtype];
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
