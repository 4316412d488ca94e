/**
 * A safe reader of Python pickles (protocols 0–5), with numpy arrays.
 *
 * This is a pickle virtual machine of emotorch's own: it runs the opcodes that build data
 * (numbers, strings, bytes, lists, tuples, dicts, sets, memo references) and resolves only an
 * allow-list of globals, none of which runs code: numpy's array, dtype and scalar reconstructors,
 * set/frozenset/bytearray/bytes, collections.OrderedDict and codecs.encode (which protocol 2 uses
 * for bytes). Any other global (os.system, builtins.eval, a user class, ...) is an ERR_FORMAT
 * error raised when the GLOBAL opcode is read, before anything could be called.
 *
 * What Python values become:
 * - int → number (bigint beyond ±2^53), float → number, bool → boolean, None → null
 * - str → string; bytes / bytearray → Buffer (bytes are views of the file's buffer)
 * - list and tuple → Array; set / frozenset → Set
 * - dict and OrderedDict → Map (keys keep their types; tuple keys become arrays, compared by
 *   identity) — or plain objects with string keys under `{ dict: 'object' }`. An OrderedDict's
 *   instance attributes (the BUILD state torch writes for a `state_dict()`: `_metadata`) are not
 *   items, as in Python: {@link pickleAttributes} holds them
 * - numpy arrays → {@link NdArray} (C order, little-endian; float16 widened to float32);
 *   numpy scalars → number (bigint for int64 beyond ±2^53, boolean for bool_)
 *
 * Memory: the file is read once into one Buffer; each array's data is copied once from it into
 * its own aligned typed array (big-endian data is swapped in place, float16 widened while
 * copying), so the peak is about the file's size plus its arrays' sizes (≤ 2× the file), and the
 * file's Buffer can be collected afterwards. Fortran-order arrays take one extra copy to transpose.
 * Protocol 2 stores bytes as `codecs.encode(<latin-1 text>, 'latin1')`: text of 64 KiB or more in
 * that position is decoded from UTF-8 straight into the array's bytes (no JS string, no copy).
 * Measured: a 64 MB protocol-4 pickle of float32 arrays adds ≈ 2.0× its size to RSS right after
 * loading (file buffer + arrays); a 38.5 MB protocol-2 one ≈ 1.4×.
 */
import { EmotorchError, invalid, checkOptionNames } from '../errors';
import { readRegularFile } from './file';
import { NdArray, NdData, NdDtype } from './ndarray';

/** How `readPickle` and `parsePickle` build values (dict form, protocol-5 buffers, …). */
export interface PickleOptions {
  /** How dicts come back: 'map' (default; keys keep their Python types) or 'object' (String(key)). */
  dict?: 'map' | 'object';
  /** Out-of-band buffers for protocol 5 NEXT_BUFFER opcodes (pickle.dumps(..., buffer_callback=...)). */
  buffers?: Uint8Array[];
  /**
   * More allowed globals, by 'module.name': a function is called with the positional arguments of
   * REDUCE / NEWOBJ; null allows the name only as a value (a class passed as an argument). Used by
   * the torch.save reader (lib/io/torchfile.ts) for torch's tensor rebuild functions.
   */
  globals?: Record<string, ((args: unknown[]) => unknown) | null>;
  /** Resolves persistent ids (PERSID / BINPERSID); without it they are an error. */
  persistentLoad?: (pid: unknown) => unknown;
}

/** A Python global that the allow-list resolved. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly call: ((args: unknown[]) => unknown) | null,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A numpy dtype while it is being rebuilt (numpy.dtype(...) then BUILD with its state). */
class PyDtype {
  byteorder = '=';
  constructor(readonly str: string) {}
}

class ParseError extends Error {}

/**
 * The instance attributes a pickle gave an OrderedDict (its BUILD state, as Python's
 * `inst.__dict__.update(state)`): torch's `state_dict()` carries `_metadata` (each module's
 * version) this way. They are kept apart from the items, so a state dict read from a
 * `torch.save(model.state_dict())` file holds exactly its tensors.
 */
export const pickleAttributes = new WeakMap<object, Map<unknown, unknown> | Record<string, unknown>>();

/** Text known to be latin-1, held as its bytes (see Unpickler.text). */
class Latin1Text {
  constructor(readonly bytes: Buffer) {}
  toString(): string {
    return this.bytes.toString('latin1');
  }
}

const NUMPY_ARRAY_MODULES = ['numpy.core.multiarray', 'numpy._core.multiarray'];
const NUMPY_NUMERIC_MODULES = ['numpy.core.numeric', 'numpy._core.numeric'];

// ---- numpy dtypes ----------------------------------------------------------------------------

interface DtypeInfo {
  name: NdDtype;
  size: number;
  ctor: (new (n: number) => Exclude<NdData, unknown[]>) | null;
}

const KINDS: Record<string, DtypeInfo> = {
  f2: { name: 'float16', size: 2, ctor: Float32Array },
  f4: { name: 'float32', size: 4, ctor: Float32Array },
  f8: { name: 'float64', size: 8, ctor: Float64Array },
  i1: { name: 'int8', size: 1, ctor: Int8Array },
  i2: { name: 'int16', size: 2, ctor: Int16Array },
  i4: { name: 'int32', size: 4, ctor: Int32Array },
  i8: { name: 'int64', size: 8, ctor: BigInt64Array },
  u1: { name: 'uint8', size: 1, ctor: Uint8Array },
  u2: { name: 'uint16', size: 2, ctor: Uint16Array },
  u4: { name: 'uint32', size: 4, ctor: Uint32Array },
  u8: { name: 'uint64', size: 8, ctor: BigUint64Array },
  b1: { name: 'bool', size: 1, ctor: Uint8Array },
  O8: { name: 'object', size: 8, ctor: null },
  O4: { name: 'object', size: 4, ctor: null },
};

let HALF: Float32Array | null = null;
function halfTable(): Float32Array {
  if (HALF) return HALF;
  HALF = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const f = h & 0x3ff;
    HALF[h] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
  }
  return HALF;
}

const LITTLE_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---- the reader ----------------------------------------------------------------------------

class Unpickler {
  private pos = 0;
  private stack: unknown[] = [];
  private metastack: unknown[][] = [];
  private memo = new Map<number, unknown>();
  private owned = new WeakSet<object>(); // Buffers made here (not views of the file): reusable as array storage
  private bufferIndex = 0;
  private readonly dictMode: 'map' | 'object';
  private readonly orderedDicts = new WeakSet<object>();

  constructor(
    private readonly buf: Buffer,
    private readonly opts: PickleOptions,
  ) {
    this.dictMode = opts.dict ?? 'map';
  }

  // -- byte reading (every read is bounds-checked) --
  private need(n: number, what: string): void {
    if (n < 0 || this.pos + n > this.buf.length)
      throw new ParseError(`truncated: ${what} at byte ${this.pos} runs past the end of the data (${this.buf.length} bytes)`);
  }
  private u8(): number {
    this.need(1, 'a byte');
    return this.buf[this.pos++];
  }
  private u16(): number {
    this.need(2, 'a 2-byte integer');
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  private i32(): number {
    this.need(4, 'a 4-byte integer');
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  private u32(): number {
    this.need(4, 'a 4-byte length');
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  private u64(): number {
    this.need(8, 'an 8-byte length');
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    if (v > BigInt(this.buf.length)) throw new ParseError(`truncated: a length at byte ${this.pos - 8} exceeds the data (${this.buf.length} bytes)`);
    return Number(v);
  }
  private bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  private line(what: string): string {
    const end = this.buf.indexOf(0x0a, this.pos);
    if (end < 0) throw new ParseError(`truncated: ${what} at byte ${this.pos} has no end of line`);
    const s = this.buf.toString('latin1', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  private utf8(n: number, what: string): string {
    this.need(n, what);
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }

  /**
   * A str operand. Protocol 2 pickles bytes as `codecs.encode(<latin-1 text>, 'latin1')`: when a
   * long string follows a codecs.encode global, it is decoded from UTF-8 straight into latin-1
   * bytes (no JS string, no second copy), wrapped so encode() can take it as it is.
   */
  private text(n: number, what: string): string | Latin1Text {
    if (n < 65536 || !(this.stack[this.stack.length - 1] instanceof PyGlobal) || (this.stack[this.stack.length - 1] as PyGlobal).name !== 'encode') {
      return this.utf8(n, what);
    }
    this.need(n, what);
    const src = this.buf;
    const end = this.pos + n;
    // Only code points < 256: ASCII bytes, or 0xC2/0xC3 followed by a continuation byte.
    let chars = 0;
    for (let i = this.pos; i < end; i++, chars++) {
      const b = src[i];
      if (b < 0x80) continue;
      if ((b === 0xc2 || b === 0xc3) && i + 1 < end && (src[i + 1] & 0xc0) === 0x80) {
        i++;
        continue;
      }
      return this.utf8(n, what); // anything else: decode as ordinary text
    }
    const outBuf = Buffer.allocUnsafe(chars);
    for (let i = this.pos, o = 0; i < end; i++) {
      const b = src[i];
      outBuf[o++] = b < 0x80 ? b : ((b & 0x1f) << 6) | (src[++i] & 0x3f);
    }
    this.pos = end;
    this.owned.add(outBuf);
    return new Latin1Text(outBuf);
  }

  // -- stack --
  private push(v: unknown): void {
    this.stack.push(v);
  }
  private pop(what: string): unknown {
    if (this.stack.length === 0) throw new ParseError(`${what} found an empty stack`);
    return this.stack.pop();
  }
  private top(what: string): unknown {
    if (this.stack.length === 0) throw new ParseError(`${what} found an empty stack`);
    return this.stack[this.stack.length - 1];
  }
  private popMark(what: string): unknown[] {
    if (this.metastack.length === 0) throw new ParseError(`${what} found no MARK`);
    const items = this.stack;
    this.stack = this.metastack.pop()!;
    return items;
  }
  private memoGet(i: number): unknown {
    if (!this.memo.has(i)) throw new ParseError(`memo entry ${i} is read before it is written`);
    return this.memo.get(i);
  }

  // -- containers --
  private newDict(): Map<unknown, unknown> | Record<string, unknown> {
    return this.dictMode === 'map' ? new Map() : {};
  }
  private setItem(d: unknown, k: unknown, v: unknown): void {
    if (d instanceof Map) d.set(k, v);
    else if (d !== null && typeof d === 'object' && !Array.isArray(d) && !(d instanceof Set) && !(d instanceof NdArray) && !Buffer.isBuffer(d)) {
      const key = propertyName(k);
      if (key === '__proto__') Object.defineProperty(d, key, { value: v, enumerable: true, writable: true, configurable: true });
      else (d as Record<string, unknown>)[key] = v;
    } else throw new ParseError(`SETITEM(S) on ${describe(d)}, which is not a dict`);
  }
  private toBytes(v: unknown, what: string): Buffer {
    if (Buffer.isBuffer(v)) return v;
    if (typeof v === 'string') {
      const b = Buffer.from(v, 'latin1');
      this.owned.add(b);
      return b;
    }
    throw new ParseError(`${what} expected bytes but got ${describe(v)}`);
  }

  // -- globals --
  private global(module: string, name: string): PyGlobal {
    const key = `${module}.${name}`;
    const g = (call: (args: unknown[]) => unknown) => new PyGlobal(module, name, call);
    if (NUMPY_ARRAY_MODULES.includes(module) && name === '_reconstruct') {
      return g((a) => {
        if (!(a[0] instanceof PyGlobal) || a[0].qualname !== 'numpy.ndarray') throw new ParseError(`_reconstruct of ${describe(a[0])}, not numpy.ndarray`);
        return new NdArray([], [0], 'float64');
      });
    }
    if (NUMPY_ARRAY_MODULES.includes(module) && name === 'scalar') return g((a) => this.scalar(a));
    if (NUMPY_NUMERIC_MODULES.includes(module) && name === '_frombuffer') return g((a) => this.frombuffer(a));
    if (key === 'numpy.ndarray') return new PyGlobal(module, name, null);
    if (key === 'numpy.dtype') {
      return g((a) => {
        if (typeof a[0] !== 'string') throw new ParseError(`numpy.dtype(${describe(a[0])}) is not a dtype this reader knows`);
        return new PyDtype(a[0]);
      });
    }
    if ((module === 'builtins' || module === '__builtin__') && (name === 'set' || name === 'frozenset')) {
      return g((a) => {
        if (a.length === 0) return new Set();
        if (!Array.isArray(a[0]) && !(a[0] instanceof Set)) throw new ParseError(`${key} of ${describe(a[0])}`);
        return new Set(a[0] as unknown[]);
      });
    }
    if ((module === 'builtins' || module === '__builtin__') && (name === 'bytearray' || name === 'bytes')) {
      return g((a) => {
        if (a.length === 0) return Buffer.alloc(0);
        if (typeof a[0] === 'string') return this.encode([a[0], a[1] ?? 'latin1']);
        if (Buffer.isBuffer(a[0])) return Buffer.from(a[0]);
        if (Array.isArray(a[0]) && a[0].every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < 256)) return Buffer.from(a[0] as number[]);
        throw new ParseError(`${key} of ${describe(a[0])}`);
      });
    }
    if (key === 'collections.OrderedDict') {
      return g((a) => {
        const d = this.newDict();
        this.orderedDicts.add(d);
        if (a.length && Array.isArray(a[0]))
          for (const kv of a[0] as unknown[]) {
            if (Array.isArray(kv) && kv.length === 2) this.setItem(d, kv[0], kv[1]);
          }
        return d;
      });
    }
    if ((module === 'codecs' || module === '_codecs') && name === 'encode') return g((a) => this.encode(a));
    const extra = this.opts.globals;
    if (extra && Object.prototype.hasOwnProperty.call(extra, key)) return new PyGlobal(module, name, extra[key]);
    const what = /^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/.test(key) && key.length <= 200 ? key : 'a global whose name is not a Python identifier';
    throw new EmotorchError(`pickle references ${what}, which emotorch does not load (it could run code)`, 'ERR_FORMAT');
  }

  private encode(a: unknown[]): Buffer {
    const [raw, enc] = a;
    if (enc !== undefined && typeof enc !== 'string') throw new ParseError(`codecs.encode with an encoding that is ${describe(enc)}, not a str`);
    const e = (enc ?? 'utf-8').toLowerCase().replace(/[-_]/g, '');
    const isLatin1 = e === 'latin1' || e === 'iso88591' || e === 'l1';
    if (raw instanceof Latin1Text) {
      if (isLatin1) return raw.bytes;
    }
    const s = raw instanceof Latin1Text ? raw.bytes.toString('latin1') : raw;
    if (typeof s !== 'string') throw new ParseError(`codecs.encode of ${describe(s)}`);
    let b: Buffer;
    if (isLatin1) b = Buffer.from(s, 'latin1');
    else if (e === 'utf8') b = Buffer.from(s, 'utf8');
    else if (e === 'ascii') b = Buffer.from(s, 'ascii');
    else throw new ParseError(`codecs.encode with an encoding other than latin-1, utf-8 or ascii`);
    this.owned.add(b);
    return b;
  }

  private call(fn: unknown, args: unknown, op: string): unknown {
    if (!(fn instanceof PyGlobal)) throw new ParseError(`${op} of ${describe(fn)}, which is not a callable global`);
    if (!Array.isArray(args)) throw new ParseError(`${op} with arguments ${describe(args)}, not a tuple`);
    if (!fn.call) throw new ParseError(`${op} calls ${fn.qualname}, which this reader does not call`);
    return fn.call(args);
  }

  // -- numpy --
  private dtypeInfo(d: unknown): { info: DtypeInfo; big: boolean; str: string } {
    if (!(d instanceof PyDtype)) throw new ParseError(`expected a numpy dtype but got ${describe(d)}`);
    let s = d.str;
    let order = d.byteorder;
    if (/^[<>|=]/.test(s)) {
      order = s[0] === '=' ? order : s[0];
      s = s.slice(1);
    }
    const info = KINDS[s] ?? (s === 'b' || s === '?' ? KINDS.b1 : undefined);
    if (!info)
      throw new EmotorchError(`numpy dtype ${dtypeName(d.str)} is not supported (supported: float16/32/64, int8-64, uint8-64, bool, object)`, 'ERR_FORMAT');
    return { info, big: order === '>' || (order === '=' && !LITTLE_HOST), str: s };
  }

  private shapeOf(v: unknown): number[] {
    const s = typeof v === 'number' ? [v] : v;
    if (!Array.isArray(s) || !s.every((x) => Number.isInteger(x) && (x as number) >= 0)) throw new ParseError(`bad array shape ${describe(v)}`);
    return s as number[];
  }

  /** Builds array storage (C order) from raw bytes or an object list. */
  private arrayData(dt: unknown, shape: number[], fortran: boolean, raw: unknown): { data: NdData; dtype: NdDtype } {
    const { info, big } = this.dtypeInfo(dt);
    const n = shape.reduce((a, b) => a * b, 1);
    if (info.ctor === null) {
      if (!Array.isArray(raw) || raw.length !== n)
        throw new ParseError(`object array of shape [${shape}] needs a list of ${n} objects but got ${describe(raw)}`);
      return { data: fortran ? transpose(raw, shape) : raw, dtype: 'object' };
    }
    const bytes = this.toBytes(raw, 'numpy array data');
    const nbytes = n * info.size;
    if (bytes.length !== nbytes) throw new ParseError(`numpy array of shape [${shape}] and dtype ${info.name} needs ${nbytes} bytes but has ${bytes.length}`);
    let data: Exclude<NdData, unknown[]>;
    if (info.name === 'float16') {
      const t = halfTable();
      const out = new Float32Array(n);
      for (let i = 0, o = 0; i < n; i++, o += 2) out[i] = t[big ? (bytes[o] << 8) | bytes[o + 1] : bytes[o] | (bytes[o + 1] << 8)];
      data = out;
    } else if (this.owned.has(bytes) && bytes.byteOffset % info.size === 0 && !big) {
      // A buffer made while parsing (protocol 2's latin-1 text): use it in place.
      data = new (info.ctor as unknown as new (b: ArrayBuffer, o: number, l: number) => typeof data)(bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
    } else {
      data = new info.ctor(n);
      new Uint8Array(data.buffer, 0, nbytes).set(bytes);
      if (big && info.size > 1) {
        const u = new Uint8Array(data.buffer, 0, nbytes);
        for (let o = 0; o < nbytes; o += info.size) u.subarray(o, o + info.size).reverse();
      }
    }
    if (info.name === 'bool') for (let i = 0; i < n; i++) if ((data[i] as number) > 1) (data as Uint8Array)[i] = 1;
    return { data: fortran && shape.length > 1 ? transpose(data, shape) : data, dtype: info.name };
  }

  private buildArray(arr: NdArray, state: unknown): void {
    if (!Array.isArray(state)) throw new ParseError(`numpy array state ${describe(state)} is not a tuple`);
    // (version, shape, dtype, is_fortran, rawdata) or the old (shape, dtype, is_fortran, rawdata)
    const s = state.length === 5 ? state.slice(1) : state;
    if (s.length !== 4) throw new ParseError(`numpy array state has ${state.length} items, not 4 or 5`);
    const shape = this.shapeOf(s[0]);
    const { data, dtype } = this.arrayData(s[1], shape, !!s[2], s[3]);
    arr.data = data;
    arr.shape = shape;
    arr.dtype = dtype;
  }

  private frombuffer(a: unknown[]): NdArray {
    const [raw, dt, shapeArg, order] = a;
    const shape = this.shapeOf(shapeArg);
    const { data, dtype } = this.arrayData(dt, shape, order === 'F', raw);
    return new NdArray(data, shape, dtype);
  }

  private scalar(a: unknown[]): unknown {
    const [dt, raw] = a;
    const { info } = this.dtypeInfo(dt);
    if (info.ctor === null) return raw;
    const { data } = this.arrayData(dt, [], false, raw);
    const v = (data as ArrayLike<number | bigint>)[0];
    if (info.name === 'bool') return v !== 0;
    if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    return v;
  }

  private build(obj: unknown, state: unknown): void {
    if (obj instanceof NdArray) return this.buildArray(obj, state);
    if (obj instanceof PyDtype) {
      if (!Array.isArray(state) || state.length < 8) throw new ParseError(`numpy dtype state ${describe(state)}`);
      if (state[2] !== null || state[3] !== null || state[4] !== null) {
        throw new EmotorchError(`numpy dtype ${dtypeName(obj.str)} with fields or subarrays (a structured dtype) is not supported`, 'ERR_FORMAT');
      }
      if (typeof state[1] === 'string') obj.byteorder = state[1];
      return;
    }
    if (this.orderedDicts.has(obj as object) && (state instanceof Map || isPlainObject(state))) {
      // OrderedDict has no __setstate__: its state is instance attributes, not items
      pickleAttributes.set(obj as object, state as Map<unknown, unknown> | Record<string, unknown>);
      return;
    }
    if ((obj instanceof Map || isPlainObject(obj)) && (state instanceof Map || isPlainObject(state))) {
      const entries = state instanceof Map ? [...state.entries()] : Object.entries(state as object);
      for (const [k, v] of entries) this.setItem(obj, k, v);
      return;
    }
    throw new ParseError(`BUILD of ${describe(obj)} with state ${describe(state)}`);
  }

  // -- the loop --
  run(): unknown {
    const buf = this.buf;
    for (;;) {
      if (this.pos >= buf.length) throw new ParseError(`truncated: the data ends at byte ${buf.length} before the STOP opcode`);
      const at = this.pos;
      const op = buf[this.pos++];
      switch (op) {
        case 0x80: {
          const v = this.u8();
          if (v > 5) throw new ParseError(`unsupported pickle protocol ${v}`);
          break;
        } // PROTO
        case 0x95:
          this.u64();
          break; // FRAME
        case 0x2e:
          return this.pop('STOP'); // STOP '.'
        case 0x28:
          this.metastack.push(this.stack);
          this.stack = [];
          break; // MARK '('
        case 0x30:
          if (this.stack.length) this.stack.pop();
          else this.popMark('POP');
          break; // POP '0'
        case 0x31:
          this.popMark('POP_MARK');
          break; // POP_MARK '1'
        case 0x32:
          this.push(this.top('DUP'));
          break; // DUP '2'
        // numbers
        case 0x4a:
          this.push(this.i32());
          break; // BININT 'J'
        case 0x4b:
          this.push(this.u8());
          break; // BININT1 'K'
        case 0x4d:
          this.push(this.u16());
          break; // BININT2 'M'
        case 0x8a:
          this.push(longFrom(this.bytes(this.u8(), 'LONG1')));
          break; // LONG1
        case 0x8b: {
          const n = this.i32();
          if (n < 0) throw new ParseError('LONG4 with a negative length');
          this.push(longFrom(this.bytes(n, 'LONG4')));
          break;
        }
        case 0x47: {
          this.need(8, 'BINFLOAT');
          this.push(buf.readDoubleBE(this.pos));
          this.pos += 8;
          break;
        } // BINFLOAT 'G'
        case 0x49: {
          // INT 'I'
          const s = this.line('INT');
          if (s === '00') this.push(false);
          else if (s === '01') this.push(true);
          else this.push(parseIntText(s));
          break;
        }
        case 0x4c:
          this.push(parseIntText(this.line('LONG').replace(/L$/, '')));
          break; // LONG 'L'
        case 0x46: {
          const s = this.line('FLOAT');
          const v = Number(s);
          if (Number.isNaN(v) && !/nan/i.test(s)) throw new ParseError('a FLOAT opcode whose text is not a number');
          this.push(v);
          break;
        }
        case 0x4e:
          this.push(null);
          break; // NONE 'N'
        case 0x88:
          this.push(true);
          break; // NEWTRUE
        case 0x89:
          this.push(false);
          break; // NEWFALSE
        // strings and bytes
        case 0x58:
          this.push(this.text(this.u32(), 'BINUNICODE'));
          break; // 'X'
        case 0x8c:
          this.push(this.utf8(this.u8(), 'SHORT_BINUNICODE'));
          break;
        case 0x8d:
          this.push(this.text(this.u64(), 'BINUNICODE8'));
          break;
        case 0x56:
          this.push(rawUnicodeEscape(this.line('UNICODE')));
          break; // UNICODE 'V'
        case 0x53:
          this.push(stringLiteral(this.line('STRING')));
          break; // STRING 'S'
        case 0x54: {
          const n = this.i32();
          if (n < 0) throw new ParseError('BINSTRING with a negative length');
          this.push(this.bytes(n, 'BINSTRING').toString('latin1'));
          break;
        }
        case 0x55:
          this.push(this.bytes(this.u8(), 'SHORT_BINSTRING').toString('latin1'));
          break;
        case 0x42:
          this.push(this.bytes(this.u32(), 'BINBYTES'));
          break; // 'B'
        case 0x43:
          this.push(this.bytes(this.u8(), 'SHORT_BINBYTES'));
          break; // 'C'
        case 0x8e:
          this.push(this.bytes(this.u64(), 'BINBYTES8'));
          break;
        case 0x96:
          this.push(this.bytes(this.u64(), 'BYTEARRAY8'));
          break;
        case 0x97: {
          // NEXT_BUFFER
          const bufs = this.opts.buffers;
          if (!bufs) throw new ParseError('the pickle refers to out-of-band buffers (NEXT_BUFFER) but no buffers were given (pass { buffers })');
          if (this.bufferIndex >= bufs.length) throw new ParseError(`the pickle wants more than the ${bufs.length} out-of-band buffers given`);
          const b = bufs[this.bufferIndex++];
          this.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
          break;
        }
        case 0x98:
          this.top('READONLY_BUFFER');
          break;
        // containers
        case 0x5d:
          this.push([]);
          break; // EMPTY_LIST ']'
        case 0x6c:
          this.push(this.popMark('LIST'));
          break; // LIST 'l'
        case 0x29:
          this.push([]);
          break; // EMPTY_TUPLE ')'
        case 0x74:
          this.push(this.popMark('TUPLE'));
          break; // TUPLE 't'
        case 0x85:
          this.push([this.pop('TUPLE1')]);
          break;
        case 0x86: {
          const b = this.pop('TUPLE2');
          const a = this.pop('TUPLE2');
          this.push([a, b]);
          break;
        }
        case 0x87: {
          const c = this.pop('TUPLE3');
          const b = this.pop('TUPLE3');
          const a = this.pop('TUPLE3');
          this.push([a, b, c]);
          break;
        }
        case 0x7d:
          this.push(this.newDict());
          break; // EMPTY_DICT '}'
        case 0x64: {
          // DICT 'd'
          const items = this.popMark('DICT');
          if (items.length % 2) throw new ParseError('DICT with an odd number of items');
          const d = this.newDict();
          for (let i = 0; i < items.length; i += 2) this.setItem(d, items[i], items[i + 1]);
          this.push(d);
          break;
        }
        case 0x8f:
          this.push(new Set());
          break; // EMPTY_SET
        case 0x91:
          this.push(new Set(this.popMark('FROZENSET')));
          break; // FROZENSET
        case 0x61: {
          // APPEND 'a'
          const v = this.pop('APPEND');
          const l = this.top('APPEND');
          if (!Array.isArray(l)) throw new ParseError(`APPEND to ${describe(l)}, which is not a list`);
          l.push(v);
          break;
        }
        case 0x65: {
          // APPENDS 'e'
          const items = this.popMark('APPENDS');
          const l = this.top('APPENDS');
          if (!Array.isArray(l)) throw new ParseError(`APPENDS to ${describe(l)}, which is not a list`);
          for (const v of items) l.push(v);
          break;
        }
        case 0x73: {
          const v = this.pop('SETITEM');
          const k = this.pop('SETITEM');
          this.setItem(this.top('SETITEM'), k, v);
          break;
        }
        case 0x75: {
          // SETITEMS 'u'
          const items = this.popMark('SETITEMS');
          if (items.length % 2) throw new ParseError('SETITEMS with an odd number of items');
          const d = this.top('SETITEMS');
          for (let i = 0; i < items.length; i += 2) this.setItem(d, items[i], items[i + 1]);
          break;
        }
        case 0x90: {
          // ADDITEMS
          const items = this.popMark('ADDITEMS');
          const s = this.top('ADDITEMS');
          if (!(s instanceof Set)) throw new ParseError(`ADDITEMS to ${describe(s)}, which is not a set`);
          for (const v of items) s.add(v);
          break;
        }
        // memo
        case 0x94:
          this.memo.set(this.memo.size, this.top('MEMOIZE'));
          break; // MEMOIZE
        case 0x71:
          this.memo.set(this.u8(), this.top('BINPUT'));
          break; // BINPUT 'q'
        case 0x72:
          this.memo.set(this.u32(), this.top('LONG_BINPUT'));
          break; // LONG_BINPUT 'r'
        case 0x70:
          this.memo.set(parseIntNumber(this.line('PUT')), this.top('PUT'));
          break; // PUT 'p'
        case 0x68:
          this.push(this.memoGet(this.u8()));
          break; // BINGET 'h'
        case 0x6a:
          this.push(this.memoGet(this.u32()));
          break; // LONG_BINGET 'j'
        case 0x67:
          this.push(this.memoGet(parseIntNumber(this.line('GET'))));
          break; // GET 'g'
        // objects
        case 0x63: {
          const m = this.line('GLOBAL');
          const n = this.line('GLOBAL');
          this.push(this.global(m, n));
          break;
        } // GLOBAL 'c'
        case 0x93: {
          // STACK_GLOBAL
          const n = this.pop('STACK_GLOBAL');
          const m = this.pop('STACK_GLOBAL');
          if (typeof m !== 'string' || typeof n !== 'string') throw new ParseError('STACK_GLOBAL with a module or name that is not a string');
          this.push(this.global(m, n));
          break;
        }
        case 0x52: {
          const args = this.pop('REDUCE');
          const fn = this.pop('REDUCE');
          this.push(this.call(fn, args, 'REDUCE'));
          break;
        }
        case 0x81: {
          const args = this.pop('NEWOBJ');
          const cls = this.pop('NEWOBJ');
          this.push(this.call(cls, args, 'NEWOBJ'));
          break;
        }
        case 0x92: {
          // NEWOBJ_EX
          const kw = this.pop('NEWOBJ_EX');
          const args = this.pop('NEWOBJ_EX');
          const cls = this.pop('NEWOBJ_EX');
          if (!(kw instanceof Map ? kw.size === 0 : isPlainObject(kw) && Object.keys(kw as object).length === 0))
            throw new ParseError('NEWOBJ_EX with keyword arguments');
          this.push(this.call(cls, args, 'NEWOBJ_EX'));
          break;
        }
        case 0x69: {
          // INST 'i'
          const m = this.line('INST');
          const n = this.line('INST');
          const g = this.global(m, n);
          this.push(this.call(g, this.popMark('INST'), 'INST'));
          break;
        }
        case 0x6f: {
          const items = this.popMark('OBJ');
          this.push(this.call(items[0], items.slice(1), 'OBJ'));
          break;
        } // OBJ 'o'
        case 0x62: {
          const state = this.pop('BUILD');
          this.build(this.top('BUILD'), state);
          break;
        } // BUILD 'b'
        case 0x50:
        case 0x51: {
          // PERSID, BINPERSID
          if (!this.opts.persistentLoad)
            throw new ParseError('the pickle uses persistent ids (as torch.save does); load .pt/.bin files with the checkpoint reader instead');
          const pid = op === 0x50 ? this.line('PERSID') : this.pop('BINPERSID');
          this.push(this.opts.persistentLoad(pid));
          break;
        }
        case 0x82:
        case 0x83:
        case 0x84:
          throw new ParseError('the pickle uses the copyreg extension registry (EXT1/2/4), which emotorch does not resolve');
        default:
          throw new ParseError(`an unknown opcode at byte ${at}`); // not its value: the file may be any text
      }
    }
  }
}

/** A numpy dtype string quoted when it looks like one ('<f4', 'U10', 'M8[ns]'); never other text. */
function dtypeName(s: string): string {
  return /^[<>|=]?[A-Za-z]\w{0,8}(\[\w{1,3}\])?$/.test(s) ? `'${s}'` : '(a str that is not a dtype)';
}

/** A dict key as a property name under { dict: 'object' }: primitives, and tuples of them ('1,2'). */
function propertyName(k: unknown): string {
  const flat = (x: unknown): boolean => x === null || (typeof x !== 'object' && typeof x !== 'function');
  if (flat(k)) return String(k);
  if (Array.isArray(k) && k.every(flat)) return k.join(',');
  throw new ParseError(`a dict key that is ${describe(k)} cannot be a property name under { dict: 'object' } (use { dict: 'map' })`);
}

function isPlainObject(v: unknown): boolean {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PyGlobal) return v.qualname;
  if (v instanceof PyDtype) return `dtype(${dtypeName(v.str)})`;
  if (v instanceof NdArray) return `an ndarray`;
  if (Buffer.isBuffer(v)) return `bytes (${v.length})`;
  if (Array.isArray(v)) return `a list/tuple of ${v.length}`;
  if (v instanceof Map) return 'a dict';
  if (v instanceof Set) return 'a set';
  if (typeof v === 'string') return `a str of ${v.length} characters`; // never the text: it may be any file's content
  return typeof v === 'object' ? 'an object' : String(v);
}

/**
 * Little-endian two's-complement integer of any length → number, or bigint past ±2^53.
 * Linear in the length: the bytes become one hex string that BigInt parses in one pass
 * (building the value byte by byte re-allocates it each time, quadratic: 300 KB took 96 s).
 */
function longFrom(b: Buffer): number | bigint {
  if (b.length === 0) return 0;
  if (b.length <= 6) return b.readIntLE(0, b.length);
  let v = BigInt(`0x${Buffer.from(b).reverse().toString('hex')}`);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function parseIntText(s: string): number | bigint {
  if (!/^[+-]?\d+$/.test(s.trim())) throw new ParseError('an integer opcode whose text is not an integer');
  const v = BigInt(s.trim());
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
function parseIntNumber(s: string): number {
  const v = parseIntText(s);
  if (typeof v !== 'number' || v < 0) throw new ParseError(`bad memo index ${v}`);
  return v;
}

/** A protocol-0 STRING argument: a quoted Python bytes literal with backslash escapes. */
function stringLiteral(s: string): string {
  const q = s[0];
  if (s.length < 2 || (q !== '"' && q !== "'") || s[s.length - 1] !== q) throw new ParseError('the STRING opcode argument is not quoted');
  const body = s.slice(1, -1);
  const esc: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', v: '\v', '0': '\0' };
  return body.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]+$/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
    return esc[e] ?? `\\${e}`;
  });
}

/** A protocol-0 UNICODE argument (raw-unicode-escape: latin-1 plus \uXXXX and \UXXXXXXXX). */
function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, u: string, U: string) => String.fromCodePoint(parseInt(u ?? U, 16)));
}

/** Fortran-order elements → C order. */
function transpose<T extends ArrayLike<unknown> & { length: number }>(src: T, shape: number[]): T {
  const n = src.length;
  const out = (Array.isArray(src) ? new Array(n) : new (src.constructor as new (n: number) => T)(n)) as unknown as { [i: number]: unknown };
  const nd = shape.length;
  const fstride = new Array<number>(nd);
  fstride[0] = 1;
  for (let k = 1; k < nd; k++) fstride[k] = fstride[k - 1] * shape[k - 1];
  const idx = new Array<number>(nd).fill(0);
  let f = 0;
  for (let c = 0; c < n; c++) {
    out[c] = src[f];
    for (let k = nd - 1; k >= 0; k--) {
      // C order: last index fastest
      idx[k]++;
      f += fstride[k];
      if (idx[k] < shape[k]) break;
      f -= fstride[k] * shape[k];
      idx[k] = 0;
    }
  }
  return out as unknown as T;
}

/**
 * Parses a pickle held in memory.
 *
 * @param buffer the pickle's bytes
 * @param opts `dict`: 'map' (default) or 'object'; `buffers`: out-of-band buffers for protocol 5
 * @param name the file name used in error messages (default '<buffer>')
 * @returns the unpickled value (see the module comment for what each Python type becomes)
 * @throws EmotorchError ERR_FORMAT (naming the file) for a truncated or corrupt pickle, an
 *   unsupported opcode or numpy dtype, or a global outside the allow-list (never executed).
 * @example
 * const obj = et.io.parsePickle(fs.readFileSync('data.pkl'));
 */
export function parsePickle(buffer: Uint8Array, opts: PickleOptions = {}, name = '<buffer>'): unknown {
  if (!(buffer instanceof Uint8Array)) invalid('a Buffer', 'buffer', buffer);
  if (opts === null || typeof opts !== 'object') invalid('an options object', 'options', opts);
  checkOptionNames(opts, ['dict', 'buffers', 'globals', 'persistentLoad'], 'parsePickle');
  if (opts.dict !== undefined && opts.dict !== 'map' && opts.dict !== 'object') invalid("'map' or 'object'", 'dict', opts.dict);
  if (opts.buffers !== undefined && !(Array.isArray(opts.buffers) && opts.buffers.every((b) => b instanceof Uint8Array)))
    invalid('an array of Buffers', 'buffers', opts.buffers);
  const buf = Buffer.isBuffer(buffer) ? buffer : Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (buf.length >= 4 && buf.readUInt32BE(0) === 0x504b0304) {
    throw new EmotorchError(`'${name}' is a zip archive (a torch.save checkpoint?), not a plain pickle`, 'ERR_FORMAT');
  }
  try {
    return new Unpickler(buf, opts).run();
  } catch (e) {
    if (e instanceof EmotorchError) throw new EmotorchError(`'${name}': ${e.message}`, e.code);
    const msg = (e as Error).message;
    if (e instanceof ParseError && msg.startsWith('truncated: ')) throw new EmotorchError(`'${name}' is truncated: ${msg.slice(11)}`, 'ERR_FORMAT');
    if (e instanceof RangeError && /Array buffer allocation failed|Invalid typed array length|Invalid array length/.test(msg)) {
      throw new EmotorchError(`'${name}' could not be loaded: out of memory (${msg})`, 'ERR_FORMAT');
    }
    throw new EmotorchError(`'${name}' is not a readable pickle: ${msg}`, 'ERR_FORMAT');
  }
}

/**
 * Reads a pickle file safely (see {@link parsePickle}); numpy arrays become {@link NdArray}.
 *
 * @param path the file
 * @param opts as {@link parsePickle}
 * @throws EmotorchError ERR_IO when the file cannot be read, is not a regular file (a directory,
 *   FIFO or device is refused before anything is read) or is over 4 GiB; ERR_FORMAT as {@link parsePickle}.
 * @example
 * const [audioList, items] = await et.io.readPickle('train.pkl') as [et.io.NdArray[], unknown[][]];
 */
export async function readPickle(path: string, opts: PickleOptions = {}): Promise<unknown> {
  if (typeof path !== 'string') invalid('a file path', 'path', path);
  checkOptionNames(opts, ['dict', 'buffers', 'globals', 'persistentLoad'], 'readPickle');
  return parsePickle(await readRegularFile(path), opts, path);
}

/** What {@link pickleValue} writes: Python's None, bool, int, float, str, and lists and dicts of them. */
export type PicklableValue = null | boolean | number | string | PicklableValue[] | { [key: string]: PicklableValue };

/**
 * A Python pickle (protocol 2) of a plain value — lists, string-keyed dicts, strings, integers,
 * floats, booleans and None — that `pickle.load` reads back as the same Python value (an integral
 * number becomes an int, any other a float).
 * @throws EmotorchError ERR_INVALID_ARG naming the first value it cannot write (a non-finite
 *   number, an integer beyond ±2^53, a function, a cycle, …).
 * @example
 * fs.writeFileSync('transcripts.pkl', et.io.pickleValue([['0.npy', [0, 713, 2], -1]]));
 */
export function pickleValue(value: PicklableValue): Buffer {
  const parts: Buffer[] = [Buffer.from([0x80, 2])]; // PROTO 2
  const op = (...bytes: number[]) => parts.push(Buffer.from(bytes));
  const seen = new Set<object>();
  const put = (v: unknown, where: string): void => {
    if (v === null || v === undefined)
      op(0x4e); // NONE
    else if (v === true) op(0x88);
    else if (v === false) op(0x89);
    else if (typeof v === 'number') {
      if (!Number.isFinite(v)) invalid('a finite number', where, v);
      if (Number.isInteger(v) && Math.abs(v) <= 2 ** 31 - 1) {
        const b = Buffer.alloc(5);
        b.writeUInt8(0x4a, 0);
        b.writeInt32LE(v, 1);
        parts.push(b); // BININT
      } else if (Number.isInteger(v)) {
        if (!Number.isSafeInteger(v)) invalid('an integer within ±2^53', where, v);
        const b = Buffer.alloc(10);
        b.writeUInt8(0x8a, 0);
        b.writeUInt8(8, 1);
        b.writeBigInt64LE(BigInt(v), 2);
        parts.push(b); // LONG1, 8 bytes
      } else {
        const b = Buffer.alloc(9);
        b.writeUInt8(0x47, 0);
        b.writeDoubleBE(v, 1);
        parts.push(b); // BINFLOAT
      }
    } else if (typeof v === 'string') {
      const s = Buffer.from(v, 'utf8');
      const b = Buffer.alloc(5);
      b.writeUInt8(0x58, 0);
      b.writeUInt32LE(s.length, 1); // BINUNICODE
      parts.push(b, s);
    } else if (Array.isArray(v) || (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype)) {
      if (seen.has(v as object)) invalid('a value without cycles', where, '(a cycle)');
      seen.add(v as object);
      if (Array.isArray(v)) {
        op(0x5d); // EMPTY_LIST
        for (let i = 0; i < v.length; i += 1000) {
          op(0x28); // MARK
          v.slice(i, i + 1000).forEach((x, j) => put(x, `${where}[${i + j}]`));
          op(0x65); // APPENDS
        }
      } else {
        op(0x7d); // EMPTY_DICT
        const entries = Object.entries(v as Record<string, unknown>);
        if (entries.length) {
          op(0x28);
          for (const [k, x] of entries) {
            put(k, `${where} key`);
            put(x, `${where}.${k}`);
          }
          op(0x75); // SETITEMS
        }
      }
      seen.delete(v as object);
    } else invalid('None, a bool, number, string, list or dict', where, v);
  };
  put(value, 'value');
  op(0x2e); // STOP
  return Buffer.concat(parts);
}
