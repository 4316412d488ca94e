/** numpy `.npy` files (k-means centroids and the like), read without Python. */
import * as fs from 'fs';
import { EmotorchError, invalid } from '../errors';
import { MAX_BUFFER, openRegularSync } from './file';

/** A float array read from a `.npy` file. */
export interface NpyArray {
  data: Float32Array;
  shape: number[];
}

/**
 * Reads a numpy `.npy` file (format 1.0–3.0, C order) of float16/32/64 values into Float32 data.
 * @param file path of the `.npy` file
 * @throws EmotorchError ERR_IO (unreadable) / ERR_FORMAT (not a float C-order .npy)
 * @example
 * const { data, shape } = et.io.readNpy('kmeans_10k.npy');  // shape [10000, 1280]
 */
export function readNpy(file: string): NpyArray {
  if (typeof file !== 'string') invalid('a file path', 'file', file);
  const { fd, size: fileSize } = openRegularSync(file, MAX_BUFFER);
  const buf = Buffer.allocUnsafe(fileSize);
  try {
    for (let off = 0; off < fileSize;) {
      const n = fs.readSync(fd, buf, off, fileSize - off, off);
      if (n === 0) throw new EmotorchError(`'${file}' shrank while being read`, 'ERR_IO');
      off += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  const bad = (why: string): never => {
    throw new EmotorchError(`'${file}' is not a readable .npy array: ${why}`, 'ERR_FORMAT');
  };
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') bad('no \\x93NUMPY magic');
  const major = buf.readUInt8(6);
  if (major < 1 || major > 3) bad(`format version ${major}`);
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.length >= 12 ? buf.readUInt32LE(8) : bad('truncated header');
  const start = major === 1 ? 10 : 12;
  if (start + hlen > buf.length) bad('truncated header');
  const header = buf.toString(major === 3 ? 'utf8' : 'latin1', start, start + hlen);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) bad('header lacks descr, fortran_order or shape');
  if (fortran === 'True') bad('Fortran order is not supported');
  const shape = shapeText!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length)
    .map(Number);
  if (!shape.every((n) => Number.isSafeInteger(n) && n >= 0)) bad(`shape (${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const m = /^([<>|=])f([248])$/.exec(descr!);
  if (!m) bad(`dtype '${descr}' (float16, float32 or float64 expected)`);
  const size = Number(m![2]);
  const big = m![1] === '>';
  const off = start + hlen;
  if (buf.length - off !== count * size) bad(`${buf.length - off} data bytes for ${count} elements of ${size} bytes`);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const p = off + i * size;
    out[i] =
      size === 4
        ? big
          ? buf.readFloatBE(p)
          : buf.readFloatLE(p)
        : size === 8
          ? big
            ? buf.readDoubleBE(p)
            : buf.readDoubleLE(p)
          : half(big ? buf.readUInt16BE(p) : buf.readUInt16LE(p));
  }
  return { data: out, shape };
}

function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1,
    e = (h >> 10) & 0x1f,
    f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/**
 * Writes a float32 array as a numpy `.npy` file (format 1.0, little-endian, C order), as
 * `np.save` writes it.
 * @param file path of the `.npy` file (created or replaced)
 * @param data the values
 * @param shape default `[data.length]`
 * @throws EmotorchError ERR_INVALID_ARG for a shape that does not hold the data; ERR_IO when the file cannot be written
 * @example
 * et.io.writeNpy('clip.npy', samples);
 */
export function writeNpy(file: string, data: Float32Array, shape: number[] = [data?.length]): void {
  if (typeof file !== 'string') invalid('a file path', 'file', file);
  if (!(data instanceof Float32Array)) invalid('a Float32Array', 'data', data);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0) || shape.reduce((a, b) => a * b, 1) !== data.length)
    invalid(`a shape of ${data.length} values`, 'shape', shape);
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  // magic (6) + version (2) + length (2) + header + '\n', padded with spaces to a multiple of 64
  header += ' '.repeat(63 - ((10 + header.length) % 64)) + '\n';
  const head = Buffer.alloc(10);
  head.writeUInt8(0x93, 0);
  head.write('NUMPY', 1, 'latin1');
  head.writeUInt8(1, 6);
  head.writeUInt8(0, 7);
  head.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  try {
    fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, 'latin1'), body]));
  } catch (e) {
    throw new EmotorchError(`cannot write '${file}': ${(e as Error).message}`, 'ERR_IO');
  }
}
