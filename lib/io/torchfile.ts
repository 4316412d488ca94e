/**
 * Reading torch.save files (`pytorch_model.bin`, `.pt`, `.pth`) without Python: the zip archive
 * is parsed here, `data.pkl` goes through the safe pickle reader with only torch's tensor-rebuild
 * functions and storage types allowed, and each storage becomes one tensor that the saved
 * tensors view (so tensors sharing a storage share memory, as in torch). Nothing in the file is
 * executed.
 */
import * as fs from 'fs';
import { binding } from '../native';
import { Tensor, op } from '../tensor';
import { DType } from '../dtype';
import { EmotorchError, invalid } from '../errors';
import { parsePickle, PyGlobal } from './pickle';

interface ZipEntry { name: string; offset: number; size: number; method: number }

function bad(file: string, why: string): never {
  throw new EmotorchError(`'${file}' is not a readable torch.save file: ${why}`, 'ERR_FORMAT');
}

/** Stored (uncompressed) zip entries, with zip64 support. */
function zipEntries(buf: Buffer, file: string): Map<string, ZipEntry> {
  const min = Math.max(0, buf.length - 65557);
  let eocd = -1;
  for (let i = buf.length - 22; i >= min; i--) if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
  if (eocd < 0) bad(file, 'no zip end-of-directory record (truncated, or a legacy non-zip torch.save file)');
  let count = buf.readUInt16LE(eocd + 10);
  let cdOffset = buf.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) {
    const loc = eocd - 20;
    if (loc < 0 || buf.readUInt32LE(loc) !== 0x07064b50) bad(file, 'zip64 locator missing');
    const z = Number(buf.readBigUInt64LE(loc + 8));
    if (z + 56 > buf.length || buf.readUInt32LE(z) !== 0x06064b50) bad(file, 'zip64 directory record missing');
    count = Number(buf.readBigUInt64LE(z + 32));
    cdOffset = Number(buf.readBigUInt64LE(z + 48));
  }
  const out = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || buf.readUInt32LE(p) !== 0x02014b50) bad(file, `zip directory entry ${i} is corrupt`);
    const method = buf.readUInt16LE(p + 10);
    let size = buf.readUInt32LE(p + 20);
    const nameLen = buf.readUInt16LE(p + 28), extraLen = buf.readUInt16LE(p + 30), commentLen = buf.readUInt16LE(p + 32);
    let local = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    // zip64 extra field: replaces the 0xffffffff sizes / offset, in order
    let e = p + 46 + nameLen;
    const end = e + extraLen;
    while (e + 4 <= end) {
      const id = buf.readUInt16LE(e), len = buf.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (buf.readUInt32LE(p + 24) === 0xffffffff) { q += 8; }
        if (size === 0xffffffff) { size = Number(buf.readBigUInt64LE(q)); q += 8; }
        if (local === 0xffffffff) { local = Number(buf.readBigUInt64LE(q)); q += 8; }
        if (buf.readUInt32LE(p + 20) === 0xffffffff && size === 0xffffffff) bad(file, 'bad zip64 sizes');
      }
      e += 4 + len;
    }
    if (local + 30 > buf.length || buf.readUInt32LE(local) !== 0x04034b50) bad(file, `zip entry '${name}' has no local header`);
    const offset = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    if (offset + size > buf.length) bad(file, `zip entry '${name}' is truncated`);
    out.set(name, { name, offset, size, method });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16', LongStorage: 'int64',
  IntStorage: 'int32', ShortStorage: 'int16', CharStorage: 'int8', ByteStorage: 'uint8', BoolStorage: 'bool',
};
const SIZE: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };

/**
 * Loads a torch.save file: tensors become CPU Tensors in their saved dtype; dicts come back as
 * Maps (OrderedDicts included), lists and tuples as arrays.
 * @throws EmotorchError ERR_IO when unreadable; ERR_FORMAT for a corrupt archive, a compressed
 *   entry, an unknown storage type, or any global outside the allow-list.
 * @example
 * const obj = await et.io.loadTorchFile('BEATs_iter3_plus_AS2M.pt');   // Map { 'cfg' => …, 'model' => Map }
 */
export async function loadTorchFile(file: string): Promise<unknown> {
  if (typeof file !== 'string') invalid('a file path', 'file', file);
  let buf: Buffer;
  try {
    buf = await fs.promises.readFile(file);
  } catch (e) {
    throw new EmotorchError(`cannot read '${file}': ${(e as Error).message}`, 'ERR_IO');
  }
  if (buf.length < 4 || buf.readUInt32LE(0) !== 0x04034b50) bad(file, 'not a zip archive (legacy torch.save format is not supported)');
  const entries = zipEntries(buf, file);
  const pkl = [...entries.keys()].find((n) => n.endsWith('/data.pkl') && n.split('/').length === 2);
  if (!pkl) bad(file, 'no data.pkl in the archive');
  const prefix = pkl!.slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && buf.toString('latin1', order.offset, order.offset + order.size) !== 'little') bad(file, 'big-endian storages are not supported');
  const storages = new Map<string, Tensor>();
  const storage = (pid: unknown): Tensor => {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) bad(file, 'unexpected persistent id');
    const [, type, key, , numel] = pid as [string, unknown, string, string, number];
    const tname = type instanceof PyGlobal ? type.name : '';
    const dtype = STORAGE_DTYPES[tname];
    if (!dtype) bad(file, `unsupported storage type ${type instanceof PyGlobal ? type.qualname : String(type)}`);
    const k = `${dtype}:${key}`;
    const have = storages.get(k);
    if (have) return have;
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) bad(file, `storage ${key} is missing from the archive`);
    if (entry!.method !== 0) bad(file, `storage ${key} is compressed (method ${entry!.method}); torch.save writes them stored`);
    const n = Number(numel);
    if (!Number.isInteger(n) || n * SIZE[dtype] > entry!.size) bad(file, `storage ${key} holds ${entry!.size} bytes, fewer than ${n} × ${dtype}`);
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset + entry!.offset, n * SIZE[dtype]);
    const t = new Tensor(binding.fromData(bytes, [n], dtype, dtype, 'cpu', false));
    storages.set(k, t);
    return t;
  };
  const rebuild = (a: unknown[]): Tensor => {
    const [st, offset, size, stride] = a as [unknown, number, number[], number[]];
    if (!(st instanceof Tensor) || !Array.isArray(size) || !Array.isArray(stride) || !Number.isInteger(offset)) bad(file, 'bad _rebuild_tensor_v2 arguments');
    const numel = size.reduce((x, y) => x * y, 1);
    if (numel > 0) {
      const last = offset + size.reduce((acc, d, i) => acc + (d - 1) * stride[i], 0);
      if (offset < 0 || last >= st.numel) bad(file, 'a tensor reaches past its storage');
    }
    return op('as_strided', st.handle, size, stride, offset);
  };
  const entry = entries.get(pkl!)!;
  return parsePickle(buf.subarray(entry.offset, entry.offset + entry.size), {
    persistentLoad: storage,
    globals: {
      'torch._utils._rebuild_tensor_v2': rebuild,
      'torch._utils._rebuild_tensor': rebuild,
      'torch._utils._rebuild_parameter': (a) => a[0],
      'torch._utils._rebuild_parameter_with_state': (a) => a[0],
      ...Object.fromEntries(Object.keys(STORAGE_DTYPES).map((s) => [`torch.${s}`, null])),
    },
  }, file);
}
