/**
 * Reading torch.save files (`pytorch_model.bin`, `.pt`, `.pth`) without Python: the zip archive
 * is parsed here, `data.pkl` goes through the safe pickle reader with only torch's tensor-rebuild
 * functions and storage types allowed, and each storage becomes one tensor that the saved
 * tensors view (so tensors sharing a storage share memory, as in torch). Nothing in the file is
 * executed.
 */
import { inflateRawSync } from 'zlib';
import { binding } from '../native';
import { Tensor, op } from '../tensor';
import { DType } from '../dtype';
import { EmotorchError, invalid } from '../errors';
import { parsePickle, PyGlobal } from './pickle';
import { readRegularFile, MAX_BUFFER } from './file';

interface ZipEntry {
  name: string;
  local: number;
  offset: number;
  size: number;
  usize: number;
  method: number;
}

function bad(file: string, why: string): never {
  throw new EmotorchError(`'${file}' is not a readable torch.save file: ${why}`, 'ERR_FORMAT');
}

/**
 * The archive's entries from its central directory (zip64 included). Every read is checked
 * against the file (a directory that points past the end is ERR_FORMAT, not a RangeError), and
 * entries must not overlap each other or the directory: several entries naming one stored record
 * would load it once per name (an overlapping-entry zip bomb).
 */
function zipEntries(buf: Buffer, file: string): Map<string, ZipEntry> {
  const at = (p: number, n: number, what: string): number => {
    if (!(p >= 0 && p + n <= buf.length)) bad(file, `the zip ${what} points past the end of the file`);
    return p;
  };
  const u16 = (p: number, what: string) => buf.readUInt16LE(at(p, 2, what));
  const u32 = (p: number, what: string) => buf.readUInt32LE(at(p, 4, what));
  const u64 = (p: number, what: string) => {
    const v = buf.readBigUInt64LE(at(p, 8, what));
    if (v > BigInt(buf.length)) bad(file, `the zip ${what} points past the end of the file`);
    return Number(v);
  };
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--)
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  if (eocd < 0) bad(file, 'no zip end-of-directory record (truncated, or a legacy non-zip torch.save file)');
  let count = u16(eocd + 10, 'end record');
  let cdOffset = u32(eocd + 16, 'end record');
  if (cdOffset === 0xffffffff || count === 0xffff) {
    if (u32(eocd - 20, 'zip64 locator') !== 0x07064b50) bad(file, 'zip64 locator missing');
    const z = u64(eocd - 12, 'zip64 locator');
    if (u32(z, 'zip64 end record') !== 0x06064b50) bad(file, 'zip64 directory record missing');
    count = u64(z + 32, 'zip64 end record');
    cdOffset = u64(z + 48, 'zip64 end record');
  }
  const out = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    const where = `directory entry ${i}`;
    if (u32(p, where) !== 0x02014b50) bad(file, `zip ${where} is corrupt`);
    const method = u16(p + 10, where);
    let size = u32(p + 20, where);
    let usize = u32(p + 24, where);
    const nameLen = u16(p + 28, where),
      extraLen = u16(p + 30, where),
      commentLen = u16(p + 32, where);
    let local = u32(p + 42, where);
    const name = buf.toString('utf8', at(p + 46, nameLen, where), p + 46 + nameLen);
    // zip64 extra field: 64-bit values for the fields set to 0xffffffff, in this order
    for (let e = p + 46 + nameLen, end = e + extraLen; e + 4 <= end;) {
      const id = u16(e, where),
        len = u16(e + 2, where);
      if (id === 0x0001) {
        let q = e + 4;
        if (usize === 0xffffffff) {
          usize = u64(q, where);
          q += 8;
        }
        if (size === 0xffffffff) {
          size = u64(q, where);
          q += 8;
        }
        if (local === 0xffffffff) local = u64(q, where);
      }
      e += 4 + len;
    }
    if (u32(local, `entry '${name}'`) !== 0x04034b50) bad(file, `zip entry '${name}' has no local header`);
    const offset = local + 30 + u16(local + 26, `entry '${name}'`) + u16(local + 28, `entry '${name}'`);
    if (offset + size > cdOffset) bad(file, `zip entry '${name}' runs past the start of the zip directory (truncated or corrupt)`);
    out.set(name, { name, local, offset, size, usize, method });
    p += 46 + nameLen + extraLen + commentLen;
  }
  const byStart = [...out.values()].sort((a, b) => a.local - b.local);
  for (let i = 1; i < byStart.length; i++) {
    const prev = byStart[i - 1];
    if (byStart[i].local < prev.offset + prev.size)
      bad(file, `zip entries '${prev.name}' and '${byStart[i].name}' overlap (several names for one record: refused)`);
  }
  return out;
}

/**
 * An entry's bytes: stored (a view of the file), or deflated (as archives re-zipped by other tools
 * have; torch reads those too), inflated to exactly its declared size.
 */
function entryData(buf: Buffer, e: ZipEntry, file: string): Buffer {
  const raw = buf.subarray(e.offset, e.offset + e.size);
  if (e.method === 0) return raw;
  if (e.method !== 8) bad(file, `zip entry '${e.name}' is compressed with method ${e.method}; only stored and deflate entries are read`);
  if (e.usize > MAX_BUFFER) bad(file, `zip entry '${e.name}' would inflate to ${e.usize} bytes, more than one Buffer holds`);
  let data: Buffer;
  try {
    data = inflateRawSync(raw, { maxOutputLength: Math.max(1, e.usize) });
  } catch {
    return bad(file, `zip entry '${e.name}' is compressed (deflate) and does not inflate to its declared ${e.usize} bytes`);
  }
  if (data.length !== e.usize) bad(file, `zip entry '${e.name}' is compressed (deflate) and inflates to ${data.length} bytes, not its declared ${e.usize}`);
  return data;
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};
const SIZE: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1 };

/**
 * Loads a torch.save file: tensors become CPU Tensors in their saved dtype; dicts come back as
 * Maps (OrderedDicts included), lists and tuples as arrays.
 * @throws EmotorchError ERR_IO when unreadable, not a regular file (a FIFO or device is refused
 *   before anything is read) or over 4 GiB; ERR_FORMAT for a corrupt archive (offsets past the
 *   end, overlapping entries), a compression other than deflate, an unknown
 *   storage type, or any global outside the allow-list.
 * @example
 * const obj = await et.io.loadTorchFile('BEATs_iter3_plus_AS2M.pt');   // Map { 'cfg' => …, 'model' => Map }
 */
export async function loadTorchFile(file: string): Promise<unknown> {
  if (typeof file !== 'string') invalid('a file path', 'file', file);
  const buf = await readRegularFile(file);
  if (buf.length < 4 || buf.readUInt32LE(0) !== 0x04034b50) bad(file, 'not a zip archive (legacy torch.save format is not supported)');
  const entries = zipEntries(buf, file);
  const pkl = [...entries.keys()].find((n) => n.endsWith('/data.pkl') && n.split('/').length === 2);
  if (!pkl) bad(file, 'no data.pkl in the archive');
  const prefix = pkl!.slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order) {
    const o = entryData(buf, order, file).toString('latin1');
    if (o !== 'little') bad(file, o === 'big' ? 'big-endian storages are not supported' : 'the byteorder entry is neither little nor big');
  }
  const storages = new Map<string, Tensor>();
  const storage = (pid: unknown): Tensor => {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) bad(file, 'unexpected persistent id');
    const [, type, key, , numel] = pid as unknown[];
    if (!(type instanceof PyGlobal)) bad(file, 'a storage type that is not a torch storage class');
    const dtype = STORAGE_DTYPES[type.name];
    if (!dtype) bad(file, `unsupported storage type ${type.qualname}`);
    if (typeof key !== 'string' || !Number.isSafeInteger(numel) || (numel as number) < 0) bad(file, 'a storage without a key and element count');
    const k = `${dtype}:${key}`;
    const have = storages.get(k);
    if (have) return have;
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) bad(file, `storage ${key} is missing from the archive`);
    const n = numel as number;
    const data = entryData(buf, entry!, file);
    if (n * SIZE[dtype] > data.length) bad(file, `storage ${key} holds ${data.length} bytes, fewer than ${n} × ${dtype}`);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, n * SIZE[dtype]);
    const t = new Tensor(binding.fromData(bytes, [n], dtype, dtype, 'cpu', false));
    storages.set(k, t);
    return t;
  };
  const rebuild = (a: unknown[]): Tensor => {
    const [st, offset, size, stride] = a as [unknown, number, number[], number[]];
    if (
      !(st instanceof Tensor) ||
      !Array.isArray(size) ||
      !Array.isArray(stride) ||
      size.length !== stride.length ||
      !Number.isSafeInteger(offset) ||
      ![...size, ...stride].every((d) => Number.isSafeInteger(d) && d >= 0)
    )
      bad(file, 'bad _rebuild_tensor_v2 arguments');
    const numel = size.reduce((x, y) => x * y, 1);
    if (numel > 0) {
      const last = offset + size.reduce((acc, d, i) => acc + (d - 1) * stride[i], 0);
      if (offset < 0 || last >= st.numel) bad(file, 'a tensor reaches past its storage');
    }
    return op('as_strided', st.handle, size, stride, offset);
  };
  return parsePickle(
    entryData(buf, entries.get(pkl!)!, file),
    {
      persistentLoad: storage,
      globals: {
        'torch._utils._rebuild_tensor_v2': rebuild,
        'torch._utils._rebuild_tensor': rebuild,
        'torch._utils._rebuild_parameter': (a) => a[0],
        'torch._utils._rebuild_parameter_with_state': (a) => a[0],
        ...Object.fromEntries(Object.keys(STORAGE_DTYPES).map((s) => [`torch.${s}`, null])),
      },
    },
    file,
  );
}
