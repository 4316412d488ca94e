/**
 * NdArray: what a numpy array in a pickle becomes. Data is in C (row-major) order and in the
 * host's (little-endian) byte order, whatever the file had.
 */

/** Element types a numpy array from a pickle can have here. */
export type NdDtype = 'float16' | 'float32' | 'float64' | 'int8' | 'int16' | 'int32' | 'int64' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'bool' | 'object';

/**
 * The storage of each dtype: float16 is widened to Float32Array (the dtype still says 'float16'),
 * bool is a Uint8Array of 0/1, int64/uint64 are BigInt64Array/BigUint64Array, and object arrays
 * hold their Python objects in a plain array.
 */
export type NdData =
  Float32Array | Float64Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Uint32Array | BigUint64Array | unknown[];

/**
 * A numpy array read from a pickle.
 * @example
 * const a = await et.data.readPickle('feats.pkl') as et.data.NdArray;
 * console.log(a.dtype, a.shape, a.data.length);
 */
export class NdArray {
  /** Elements in C order. */
  data: NdData;
  /** Sizes of each dimension ([] for a 0-d array). */
  shape: number[];
  /** The numpy dtype's name (for float16 the data is widened to float32). */
  dtype: NdDtype;

  constructor(data: NdData, shape: number[], dtype: NdDtype) {
    this.data = data;
    this.shape = shape;
    this.dtype = dtype;
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /**
   * The elements as a flat array of numbers (int64 beyond 2^53 lose precision; bool becomes
   * 0/1; elements of object arrays that are not numbers become NaN).
   */
  toNumbers(): number[] {
    const d = this.data;
    const out = new Array<number>(d.length);
    for (let i = 0; i < d.length; i++) {
      const v = d[i];
      out[i] = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? Number(v) : NaN;
    }
    return out;
  }
}
