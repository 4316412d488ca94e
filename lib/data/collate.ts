/**
 * Collate helpers: turn a batch's variable-length sequences and scalar labels into tensors.
 */
import { invalid, checkInt, checkNumber, withDeprecatedAlias, checkOptionNames } from '../errors';
import { Tensor, tensor } from '../tensor';
import { DType, checkDtype } from '../dtype';
import { Device } from '../device';

/** Options of `padSequences`. */
export interface PadOptions {
  /** Value of padded positions. Default 0. */
  padValue?: number;
  /** dtype of `values`. Default 'float32'. */
  dtype?: DType;
  /** Cut sequences longer than this (lengths report the cut length). Default: no limit. */
  maxLength?: number;
  /** dtype of `attentionMask`: 'bool' (default) or 'int64' (1 = real, 0 = pad). */
  maskDtype?: 'bool' | 'int64';
  /** Where the tensors go. Default 'cpu'. */
  device?: Device;
}

/** Padded sequences: the values, their attention mask and lengths. */
export interface Padded {
  /** (B, T) with T = the longest (cut) sequence. */
  values: Tensor;
  /** (B, T): true / 1 where values are real, false / 0 where padded (HF's `pad` returns it as `attention_mask`). */
  attentionMask: Tensor;
  /** @deprecated the same tensor as `attentionMask` (non-enumerable); readable until the next release. */
  readonly mask: Tensor;
  /** The (cut) length of each sequence. */
  lengths: number[];
}

/**
 * Right-pads sequences to one length and stacks them.
 *
 * @param arrays the batch's sequences (number[] or Float32Array)
 * @param opts `padValue`, `dtype`, `maxLength`, `maskDtype`, `device`
 * @returns `{ values, attentionMask, lengths }`
 * @throws EmotorchError ERR_INVALID_ARG for an empty batch, a sequence that is not an array, or
 *   non-integer values for an integer dtype.
 * @example
 * const { values, attentionMask } = et.data.padSequences([[1, 2, 3], [4]], { dtype: 'int64', padValue: 0 });
 * // values [[1,2,3],[4,0,0]], attentionMask [[true,true,true],[true,false,false]]
 */
export function padSequences(arrays: ArrayLike<number>[], opts: PadOptions = {}): Padded {
  if (!Array.isArray(arrays) || arrays.length === 0) invalid('a non-empty array of sequences', 'arrays', arrays);
  if (opts === null || typeof opts !== 'object') invalid('an options object', 'options', opts);
  checkOptionNames(opts, ['padValue', 'dtype', 'maxLength', 'maskDtype', 'device'], 'padSequences');
  const padValue = opts.padValue === undefined ? 0 : checkNumber(opts.padValue, 'padValue');
  const dtype = opts.dtype === undefined ? 'float32' : checkDtype(opts.dtype);
  const maxLength = opts.maxLength === undefined ? Infinity : checkInt(opts.maxLength, 'maxLength', 0);
  const maskDtype = opts.maskDtype ?? 'bool';
  if (maskDtype !== 'bool' && maskDtype !== 'int64') invalid("'bool' or 'int64'", 'maskDtype', maskDtype);
  const integer = !(dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16');
  if (integer && !Number.isInteger(padValue)) invalid(`an integer padValue for dtype ${dtype}`, 'padValue', padValue);
  arrays.forEach((a, i) => {
    if (!(Array.isArray(a) || ArrayBuffer.isView(a))) invalid('an array or typed array', `arrays[${i}]`, a);
  });
  const lengths = arrays.map((a) => Math.min(a.length, maxLength));
  const B = arrays.length;
  const T = Math.max(0, ...lengths);
  const flat = dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16' ? new Float32Array(B * T) : new Float64Array(B * T);
  if (padValue !== 0) flat.fill(padValue);
  const mask = new Uint8Array(B * T);
  for (let b = 0; b < B; b++) {
    const a = arrays[b];
    const L = lengths[b];
    const off = b * T;
    for (let t = 0; t < L; t++) {
      const v = a[t];
      if (integer && !Number.isInteger(v)) invalid(`integers for dtype ${dtype}`, `arrays[${b}][${t}]`, v);
      flat[off + t] = v;
    }
    mask.fill(1, off, off + L);
  }
  const device = opts.device ?? 'cpu';
  return withDeprecatedAlias(
    {
      values: tensor(flat, { shape: [B, T], dtype, device }),
      attentionMask: tensor(mask, { shape: [B, T], dtype: maskDtype, device }),
      lengths,
    },
    'mask',
    'attentionMask',
  );
}

/**
 * Stacks one number per item (labels, regression targets) into a 1-D tensor.
 * @param values the numbers
 * @param opts `dtype` (default 'int64' when every value is an integer, else 'float32'), `device`
 * @throws EmotorchError ERR_INVALID_ARG for non-numbers or non-integers with an integer dtype.
 * @example
 * const labels = et.data.stackNumbers(items.map((x) => x.label));  // int64 (B)
 */
export function stackNumbers(values: number[], opts: { dtype?: DType; device?: Device } = {}): Tensor {
  if (!Array.isArray(values)) invalid('an array of numbers', 'values', values);
  checkOptionNames(opts, ['dtype', 'device'], 'stackNumbers');
  values.forEach((v, i) => {
    if (typeof v !== 'number' || Number.isNaN(v)) invalid('a number', `values[${i}]`, v);
  });
  const dtype = opts.dtype === undefined ? (values.every(Number.isInteger) ? 'int64' : 'float32') : checkDtype(opts.dtype);
  if (!['float32', 'float64', 'float16', 'bfloat16'].includes(dtype)) {
    values.forEach((v, i) => {
      if (!Number.isInteger(v)) invalid(`integers for dtype ${dtype}`, `values[${i}]`, v);
    });
  }
  return tensor(Float64Array.from(values), { dtype, device: opts.device ?? 'cpu' });
}
