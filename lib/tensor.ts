/**
 * Tensors: a typed TypeScript face over libtorch tensors. Operations run synchronously in native
 * code; reading data back can be awaited (`data()`), and `backward()` runs on the thread pool.
 */
import { constants as bufferConstants } from 'buffer';
import { binding, opId, TensorHandle } from './native';
import { EmotorchError, invalid, checkInt, checkOptionNames } from './errors';
import { DType, DTYPE_BYTES, TypedArray, checkDtype, dtypeOfArray, arrayOf, isFloating } from './dtype';
import { Device, checkDevice } from './device';

/** A single number or boolean operand. */
export type Scalar = number | boolean;
/** A number, a boolean, or an array of them nested to any depth (one level per dimension). */
export type NestedArray = number | boolean | NestedArray[];
/** What `tensor(data)` accepts: a typed array, (nested) number or boolean arrays, or a scalar. */
export type TensorData = TypedArray | Uint8ClampedArray | number[] | boolean[] | NestedArray[] | number | boolean;

/** dtype and device of a new tensor (as torch's `dtype=` and `device=`). */
export interface TensorOptions {
  /** Shape to give flat data; inferred from nesting when omitted. */
  shape?: readonly number[];
  /** Element type; default: the TypedArray's own, bool for booleans, float32 for numbers. */
  dtype?: DType;
  /** Default 'cpu'. */
  device?: Device;
  requiresGrad?: boolean;
}

/** Options of the tensor factories (`zeros`, `ones`, `full`, `randn`, …): dtype, device and autograd. */
export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

/** The largest ArrayBuffer this Node.js can allocate. */
const MAX_BUFFER: number = bufferConstants.MAX_LENGTH;
/** toArray() builds one JS number per element: beyond this, use data(). */
const MAX_TO_ARRAY = 1 << 26;

function h(t: Tensor | Scalar, name: string): TensorHandle | Scalar {
  if (t instanceof Tensor) return t.handle;
  if (typeof t === 'number' || typeof t === 'boolean') return t;
  return invalid('a Tensor or a number', name, t);
}

/** Runs a native op; tensor arguments are passed as handles. @internal */
export function op(name: string, ...args: unknown[]): Tensor {
  return new Tensor(binding.op(opId(name), ...args) as TensorHandle);
}
function opList(name: string, ...args: unknown[]): Tensor[] {
  return (binding.op(opId(name), ...args) as TensorHandle[]).map((x) => new Tensor(x));
}

function dimsArg(dims: number | readonly number[] | undefined, name: string): number[] | null {
  if (dims === undefined) return null;
  const list = typeof dims === 'number' ? [dims] : dims;
  if (!Array.isArray(list)) invalid('a dimension or an array of dimensions', name, dims);
  list.forEach((d, i) => checkInt(d, `${name}[${i}]`));
  return [...list];
}

function shapeArg(shape: readonly number[], name = 'shape', allowInfer: boolean | 'many' = false): number[] {
  if (!Array.isArray(shape)) invalid('an array of non-negative integers', name, shape);
  let inferred = 0;
  shape.forEach((d, i) => {
    if (allowInfer && d === -1) inferred++;
    else checkInt(d, `${name}[${i}]`, 0);
  });
  if (inferred > 1 && allowInfer !== 'many') invalid('at most one -1', name, shape);
  return [...shape];
}

const REDUCTION = { none: 0, mean: 1, sum: 2 } as const;
/** How a loss reduces over elements: 'mean', 'sum' or 'none' (torch's `reduction=`). */
export type Reduction = keyof typeof REDUCTION;
/** @internal */
export function reductionArg(r: unknown): number {
  if (typeof r !== 'string' || !(r in REDUCTION)) invalid("'none', 'mean' or 'sum'", 'reduction', r);
  return REDUCTION[r as Reduction];
}

/**
 * A multi-dimensional array on a device, with autograd. Create one with {@link tensor},
 * {@link zeros}, {@link randn} and friends.
 *
 * Memory is freed by {@link Tensor.dispose} or, failing that, when the garbage collector finds
 * the Tensor unreachable.
 *
 * @example
 * const x = et.tensor([[1, 2], [3, 4]]);
 * const y = x.matmul(x).add(1);
 * console.log(y.shape, await y.data());
 */
export class Tensor {
  /** @internal */
  readonly handle: TensorHandle;
  /** @internal */
  constructor(handle: TensorHandle) {
    this.handle = handle;
  }

  /** Sizes of each dimension. */
  get shape(): number[] {
    return this.handle.shape();
  }
  /** The element type (torch's dtype name). */
  get dtype(): DType {
    return this.handle.dtype() as DType;
  }
  /** Where the data lives: 'cpu' or 'cuda:N'. */
  get device(): Device {
    return this.handle.device() as Device;
  }
  /** Number of dimensions. */
  get ndim(): number {
    return this.handle.shape().length;
  }
  /** Number of elements. */
  get numel(): number {
    return this.handle.numel();
  }
  /** Whether autograd records operations on this tensor (settable on leaves, as `requires_grad_`). */
  get requiresGrad(): boolean {
    return this.handle.requiresGrad();
  }
  /** Turns autograd recording on or off for this leaf tensor. */
  set requiresGrad(v: boolean) {
    if (typeof v !== 'boolean') invalid('a boolean', 'requiresGrad', v);
    this.handle.setRequiresGrad(v);
  }
  /** The gradient accumulated by {@link backward}, or null. */
  get grad(): Tensor | null {
    const g = this.handle.grad();
    return g ? new Tensor(g) : null;
  }
  /**
   * Sets the gradient (as PyTorch: same shape, dtype and device as this tensor; a view that is
   * not contiguous is stored as a contiguous copy).
   * @throws EmotorchError ERR_INVALID_ARG for a non-Tensor or a mismatched gradient.
   */
  set grad(g: Tensor | null) {
    if (g !== null && g !== undefined && !(g instanceof Tensor)) invalid('a Tensor or null', 'grad', g);
    this.handle.setGrad(g ? g.handle : null);
  }
  /** True for tensors created by the user (not the result of a recorded operation). */
  get isLeaf(): boolean {
    return this.handle.isLeaf();
  }
  /** True after {@link dispose}. */
  get isDisposed(): boolean {
    return this.handle.disposed();
  }

  /**
   * Frees this handle's reference to the data now instead of at garbage collection.
   * @throws EmotorchError ERR_DISPOSED when called twice.
   */
  dispose(): void {
    this.handle.dispose();
  }

  /**
   * Copies the elements to a TypedArray on the thread pool (float16/bfloat16 come back as
   * Float32Array, int64 as BigInt64Array, bool as Uint8Array).
   */
  async data(): Promise<TypedArray> {
    this.checkReadable('data()');
    const [buf, dt] = await this.handle.data();
    return arrayOf(buf, dt);
  }
  /** Synchronous {@link data}: blocks the event loop while the copy runs. */
  dataSync(): TypedArray {
    this.checkReadable('dataSync()');
    const [buf, dt] = this.handle.dataSync();
    return arrayOf(buf, dt);
  }
  /** The elements as nested JS arrays of numbers (or booleans). */
  toArray(): NestedArray {
    if (this.numel > MAX_TO_ARRAY) {
      throw new EmotorchError(
        `toArray(): ${this.numel} elements are too many for nested JS arrays (at most ${MAX_TO_ARRAY}); use data() for a TypedArray`,
        'ERR_INVALID_ARG',
      );
    }
    const flat = this.dataSync();
    const bool = this.dtype === 'bool';
    const vals: (number | boolean)[] = Array.from(flat as ArrayLike<number | bigint>, (v) => (bool ? v !== 0 : Number(v)));
    const shape = this.shape;
    if (shape.length === 0) return vals[0];
    const build = (dim: number, off: number): NestedArray[] => {
      const n = shape[dim];
      const stride = shape.slice(dim + 1).reduce((a, b) => a * b, 1);
      const out: NestedArray[] = [];
      for (let i = 0; i < n; i++) out.push(dim === shape.length - 1 ? vals[off + i] : build(dim + 1, off + i * stride));
      return out;
    };
    return build(0, 0);
  }
  private checkReadable(what: string): void {
    const itemBytes = ({ float16: 4, bfloat16: 4 } as Record<string, number>)[this.dtype] ?? DTYPE_BYTES[this.dtype];
    const bytes = this.numel * itemBytes;
    if (bytes > MAX_BUFFER) {
      throw new EmotorchError(
        `${what}: the tensor needs ${bytes} bytes on the JS side, more than the ${MAX_BUFFER} an ArrayBuffer can hold; read it in slices`,
        'ERR_INVALID_ARG',
      );
    }
  }

  /**
   * The value of a one-element tensor.
   * @throws EmotorchError when the tensor has more than one element.
   */
  item(): number {
    return Number(this.handle.item());
  }

  /**
   * Computes gradients of this tensor with respect to the leaves that require grad, on the
   * thread pool. A non-scalar tensor needs `grad` (the gradient of some scalar w.r.t. it).
   */
  backward(grad?: Tensor, opts: { retainGraph?: boolean } = {}): Promise<void> {
    opts = checkOptionNames(opts, ['retainGraph'], 'backward options');
    return this.handle.backward(grad ? grad.handle : null, !!opts.retainGraph);
  }
  /** A tensor sharing the data but cut from the autograd graph. */
  detach(): Tensor {
    return op('detach', this.handle);
  }
  /** Sets requiresGrad and returns this tensor. */
  requiresGrad_(v = true): this {
    this.requiresGrad = v;
    return this;
  }

  /** Copy to another device and/or dtype (returns this tensor's data unchanged when both match). */
  to(opts: { device?: Device; dtype?: DType }): Tensor {
    opts = checkOptionNames(opts, ['device', 'dtype'], 'Tensor.to options');
    const dev = opts.device === undefined ? null : checkDevice(opts.device);
    const dt = opts.dtype === undefined ? null : checkDtype(opts.dtype);
    return op('to', this.handle, dt, dev);
  }
  /** A copy with its own storage (`torch.clone`). */
  clone(): Tensor {
    return op('clone', this.handle);
  }
  /** This tensor in contiguous memory (itself when it already is; `Tensor.contiguous`). */
  contiguous(): Tensor {
    return op('contiguous', this.handle);
  }
  /** This tensor as float32 (`Tensor.float`). */
  float(): Tensor {
    return this.to({ dtype: 'float32' });
  }
  /** This tensor as int64 (`Tensor.long`). */
  long(): Tensor {
    return this.to({ dtype: 'int64' });
  }

  // ---- arithmetic (broadcasting; a number is a scalar operand) ----
  /** Elementwise sum with broadcasting (`torch.add`). */
  add(o: Tensor | Scalar): Tensor {
    return op('add', this.handle, h(o, 'other'));
  }
  /** Elementwise difference with broadcasting (`torch.sub`). */
  sub(o: Tensor | Scalar): Tensor {
    return op('sub', this.handle, h(o, 'other'));
  }
  /** Elementwise product with broadcasting (`torch.mul`). */
  mul(o: Tensor | Scalar): Tensor {
    return op('mul', this.handle, h(o, 'other'));
  }
  /** True division (integer tensors give floating results). */
  div(o: Tensor | Scalar): Tensor {
    return op('div', this.handle, h(o, 'other'));
  }
  /** Elementwise power (`torch.pow`). */
  pow(o: Tensor | Scalar): Tensor {
    return op('pow', this.handle, h(o, 'exponent'));
  }
  /** Elementwise remainder with the divisor's sign, Python's % (`torch.remainder`). */
  remainder(o: Tensor | Scalar): Tensor {
    return op('remainder', this.handle, h(o, 'other'));
  }
  /** Elementwise maximum with another tensor or a number. */
  maximum(o: Tensor | Scalar): Tensor {
    return op('maximum', this.handle, h(o, 'other'));
  }
  /** Elementwise minimum of two tensors (`torch.minimum`). */
  minimum(o: Tensor | Scalar): Tensor {
    return op('minimum', this.handle, h(o, 'other'));
  }
  /** `scalar - this` */
  rsub(s: number): Tensor {
    return op('rsub', this.handle, h(s, 'other'));
  }
  /** `scalar / this` */
  rdiv(s: number): Tensor {
    return op('rdiv', this.handle, h(s, 'other'));
  }
  /** Elementwise negation (`torch.neg`). */
  neg(): Tensor {
    return op('neg', this.handle);
  }
  /** Elementwise absolute value (`torch.abs`). */
  abs(): Tensor {
    return op('abs', this.handle);
  }
  /** Elementwise exponential (`torch.exp`). */
  exp(): Tensor {
    return op('exp', this.handle);
  }
  /** Elementwise natural logarithm (`torch.log`). */
  log(): Tensor {
    return op('log', this.handle);
  }
  /** Elementwise log(1 + x) (`torch.log1p`). */
  log1p(): Tensor {
    return op('log1p', this.handle);
  }
  /** Elementwise square root (`torch.sqrt`). */
  sqrt(): Tensor {
    return op('sqrt', this.handle);
  }
  /** Elementwise 1 / √x (`torch.rsqrt`). */
  rsqrt(): Tensor {
    return op('rsqrt', this.handle);
  }
  /** Elementwise square (`torch.square`). */
  square(): Tensor {
    return op('square', this.handle);
  }
  /** Elementwise 1 / x (`torch.reciprocal`). */
  reciprocal(): Tensor {
    return op('reciprocal', this.handle);
  }
  /** Elementwise sine (`torch.sin`). */
  sin(): Tensor {
    return op('sin', this.handle);
  }
  /** Elementwise cosine (`torch.cos`). */
  cos(): Tensor {
    return op('cos', this.handle);
  }
  /** Elementwise tanh (`torch.tanh`). */
  tanh(): Tensor {
    return op('tanh', this.handle);
  }
  /** Elementwise logistic sigmoid (`torch.sigmoid`). */
  sigmoid(): Tensor {
    return op('sigmoid', this.handle);
  }
  /** Elementwise ReLU (`torch.relu`). */
  relu(): Tensor {
    return op('relu', this.handle);
  }
  /** Elementwise GELU, the exact erf form (`F.gelu`). */
  gelu(): Tensor {
    return op('gelu', this.handle);
  }
  /** Elementwise SiLU, x·σ(x) (`F.silu`). */
  silu(): Tensor {
    return op('silu', this.handle);
  }
  /** Elementwise floor (`torch.floor`). */
  floor(): Tensor {
    return op('floor', this.handle);
  }
  /** Elementwise ceiling (`torch.ceil`). */
  ceil(): Tensor {
    return op('ceil', this.handle);
  }
  /** Elementwise rounding, halves to even (`torch.round`). */
  round(): Tensor {
    return op('round', this.handle);
  }
  /** Elementwise sign: −1, 0 or 1 (`torch.sign`). */
  sign(): Tensor {
    return op('sign', this.handle);
  }
  /** Clamp into [min, max]; either bound may be omitted (null). */
  clamp(min: number | null, max: number | null = null): Tensor {
    if (min === null && max === null) invalid('at least one bound', 'clamp', [min, max]);
    return op('clamp', this.handle, min, max);
  }

  /**
   * Matrix product with numpy/torch broadcasting rules.
   * @throws EmotorchError when the inner dimensions differ.
   */
  matmul(o: Tensor): Tensor {
    if (!(o instanceof Tensor)) invalid('a Tensor', 'matmul other', o);
    const a = this.shape,
      b = o.shape;
    if (a.length === 0 || b.length === 0) invalid('tensors with at least one dimension', 'matmul', [a, b]);
    const ka = a[a.length - 1],
      kb = b.length === 1 ? b[0] : b[b.length - 2];
    if (ka !== kb) {
      throw new EmotorchError(`matmul: shapes [${a}] and [${b}] cannot be multiplied (${ka} != ${kb})`, 'ERR_INVALID_ARG');
    }
    return op('matmul', this.handle, o.handle);
  }

  // ---- comparison and logic (results are bool tensors) ----
  /** Elementwise `==`, a bool tensor (`torch.eq`). */
  eq(o: Tensor | Scalar): Tensor {
    return op('eq', this.handle, h(o, 'other'));
  }
  /** Elementwise `!=`, a bool tensor (`torch.ne`). */
  ne(o: Tensor | Scalar): Tensor {
    return op('ne', this.handle, h(o, 'other'));
  }
  /** Elementwise `<`, a bool tensor (`torch.lt`). */
  lt(o: Tensor | Scalar): Tensor {
    return op('lt', this.handle, h(o, 'other'));
  }
  /** Elementwise `<=`, a bool tensor (`torch.le`). */
  le(o: Tensor | Scalar): Tensor {
    return op('le', this.handle, h(o, 'other'));
  }
  /** Elementwise `>`, a bool tensor (`torch.gt`). */
  gt(o: Tensor | Scalar): Tensor {
    return op('gt', this.handle, h(o, 'other'));
  }
  /** Elementwise `>=`, a bool tensor (`torch.ge`). */
  ge(o: Tensor | Scalar): Tensor {
    return op('ge', this.handle, h(o, 'other'));
  }
  /** Elementwise logical and (`torch.logical_and`). */
  logicalAnd(o: Tensor | Scalar): Tensor {
    return op('logical_and', this.handle, h(o, 'other'));
  }
  /** Elementwise logical or (`torch.logical_or`). */
  logicalOr(o: Tensor | Scalar): Tensor {
    return op('logical_or', this.handle, h(o, 'other'));
  }
  /** Elementwise logical not (`torch.logical_not`). */
  logicalNot(): Tensor {
    return op('logical_not', this.handle);
  }
  /** Elementwise NaN test, a bool tensor (`torch.isnan`). */
  isnan(): Tensor {
    return op('isnan', this.handle);
  }
  /** Elementwise ±∞ test, a bool tensor (`torch.isinf`). */
  isinf(): Tensor {
    return op('isinf', this.handle);
  }
  /** Elementwise finiteness, a bool tensor (`torch.isfinite`). */
  isfinite(): Tensor {
    return op('isfinite', this.handle);
  }
  /** Elements where `mask` is true set to `value`. */
  maskedFill(mask: Tensor, value: number): Tensor {
    return op('masked_fill', this.handle, h(mask, 'mask'), value);
  }

  // ---- reductions: `dim` omitted reduces over everything ----
  /** Sum, overall or along `dim` (`torch.sum`). */
  sum(dim?: number | number[], keepdim = false): Tensor {
    return op('sum', this.handle, dimsArg(dim, 'dim'), keepdim);
  }
  /** Mean, overall or along `dim` (`torch.mean`). */
  mean(dim?: number | number[], keepdim = false): Tensor {
    return op('mean', this.handle, dimsArg(dim, 'dim'), keepdim);
  }
  /** Variance with Bessel's correction by default (correction 1). */
  var(dim?: number | number[], keepdim = false, correction = 1): Tensor {
    return op('var', this.handle, dimsArg(dim, 'dim'), keepdim, correction);
  }
  /** Standard deviation with Bessel's `correction` (default 1), overall or along `dim` (`torch.std`). */
  std(dim?: number | number[], keepdim = false, correction = 1): Tensor {
    return op('std', this.handle, dimsArg(dim, 'dim'), keepdim, correction);
  }
  /** log Σ exp along `dim`, computed stably (`torch.logsumexp`). */
  logsumexp(dim: number | number[], keepdim = false): Tensor {
    return op('logsumexp', this.handle, dimsArg(dim, 'dim'), keepdim);
  }
  /** Vector p-norm (default 2) over `dim` or everything. */
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return op('norm', this.handle, p, dimsArg(dim, 'dim'), keepdim);
  }
  /** The largest element, or the largest values along `dim` (values only, as `torch.amax`). */
  max(dim?: number, keepdim = false): Tensor {
    return op('max', this.handle, dim === undefined ? null : checkInt(dim, 'dim'), keepdim);
  }
  /** The smallest element, or the smallest values along `dim` (values only, as `torch.amin`). */
  min(dim?: number, keepdim = false): Tensor {
    return op('min', this.handle, dim === undefined ? null : checkInt(dim, 'dim'), keepdim);
  }
  /** Index of the largest element, over the flattened tensor or along `dim` (`torch.argmax`). */
  argmax(dim?: number, keepdim = false): Tensor {
    return op('argmax', this.handle, dim === undefined ? null : checkInt(dim, 'dim'), keepdim);
  }
  /** Index of the smallest element, over the flattened tensor or along `dim` (`torch.argmin`). */
  argmin(dim?: number, keepdim = false): Tensor {
    return op('argmin', this.handle, dim === undefined ? null : checkInt(dim, 'dim'), keepdim);
  }
  /** Whether every element is true, overall or along `dim` (`torch.all`). */
  all(dim?: number, keepdim = false): Tensor {
    return op('all', this.handle, dim === undefined ? null : checkInt(dim, 'dim'), keepdim);
  }
  /** Whether any element is true, overall or along `dim` (`torch.any`). */
  any(dim?: number, keepdim = false): Tensor {
    return op('any', this.handle, dim === undefined ? null : checkInt(dim, 'dim'), keepdim);
  }
  /** Cumulative sum along `dim` (`torch.cumsum`). */
  cumsum(dim: number): Tensor {
    return op('cumsum', this.handle, checkInt(dim, 'dim'));
  }
  /** Softmax along `dim` (`torch.softmax`). */
  softmax(dim: number): Tensor {
    return op('softmax', this.handle, checkInt(dim, 'dim'));
  }
  /** Log of the softmax along `dim` (`torch.log_softmax`). */
  logSoftmax(dim: number): Tensor {
    return op('log_softmax', this.handle, checkInt(dim, 'dim'));
  }
  /** The k largest (or smallest) values along `dim` and their indices. */
  topk(k: number, dim = -1, largest = true): [Tensor, Tensor] {
    const [v, i] = opList('topk', this.handle, checkInt(k, 'k', 0), checkInt(dim, 'dim'), largest);
    return [v, i];
  }
  /** Sorted values and their indices along `dim` (`torch.sort`). */
  sort(dim = -1, descending = false): [Tensor, Tensor] {
    const [v, i] = opList('sort', this.handle, checkInt(dim, 'dim'), descending);
    return [v, i];
  }

  // ---- shape ----
  /** New shape with the same number of elements; one entry may be -1. */
  reshape(shape: readonly number[]): Tensor {
    return op('reshape', this.handle, shapeArg(shape, 'shape', true));
  }
  /** Like reshape, but never copies (fails on non-contiguous layouts). */
  view(shape: readonly number[]): Tensor {
    return op('view', this.handle, shapeArg(shape, 'shape', true));
  }
  /** Swaps dims `dim0` and `dim1` (`torch.transpose`). */
  transpose(dim0: number, dim1: number): Tensor {
    return op('transpose', this.handle, checkInt(dim0, 'dim0'), checkInt(dim1, 'dim1'));
  }
  /** The dimensions reordered (`torch.permute`). */
  permute(dims: readonly number[]): Tensor {
    return op('permute', this.handle, dimsArg(dims, 'dims'));
  }
  /** Removes size-1 dims, or only `dim` (`torch.squeeze`). */
  squeeze(dim?: number): Tensor {
    return op('squeeze', this.handle, dim === undefined ? null : checkInt(dim, 'dim'));
  }
  /** Inserts a size-1 dim at `dim` (`torch.unsqueeze`). */
  unsqueeze(dim: number): Tensor {
    return op('unsqueeze', this.handle, checkInt(dim, 'dim'));
  }
  /** Flattens dims `startDim`..`endDim` into one (`torch.flatten`). */
  flatten(startDim = 0, endDim = -1): Tensor {
    return op('flatten', this.handle, checkInt(startDim, 'startDim'), checkInt(endDim, 'endDim'));
  }
  /** Broadcasts to a larger shape without copying; -1 keeps a dimension. */
  expand(shape: readonly number[]): Tensor {
    return op('expand', this.handle, shapeArg(shape, 'shape', 'many'));
  }
  /** The tensor tiled `times` along each dim (`Tensor.repeat`). */
  repeat(times: readonly number[]): Tensor {
    return op('repeat', this.handle, shapeArg(times, 'times'));
  }
  /** The lower triangle from `diagonal`, the rest zero (`torch.tril`). */
  tril(diagonal = 0): Tensor {
    return op('tril', this.handle, checkInt(diagonal, 'diagonal'));
  }
  /** The upper triangle from `diagonal`, the rest zero (`torch.triu`). */
  triu(diagonal = 0): Tensor {
    return op('triu', this.handle, checkInt(diagonal, 'diagonal'));
  }

  // ---- indexing ----
  /** Elements start ≤ i < end (step apart) along `dim`, as a view. Negative bounds count from the end. */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return op('slice', this.handle, checkInt(dim, 'dim'), start ?? null, end ?? null, checkInt(step, 'step', 1));
  }
  /** Index `index` along `dim`, removing that dimension. */
  select(dim: number, index: number): Tensor {
    return op('select', this.handle, checkInt(dim, 'dim'), checkInt(index, 'index'));
  }
  /** Rows of dim 0 picked by an int64 index tensor or a bool mask. */
  index(indices: Tensor): Tensor {
    return op('index', this.handle, h(indices, 'indices'));
  }
  /** The entries at `index` along `dim` (`torch.index_select`). */
  indexSelect(dim: number, indices: Tensor): Tensor {
    return op('index_select', this.handle, checkInt(dim, 'dim'), h(indices, 'indices'));
  }
  /** Values along `dim` at `indices` (`torch.gather`). */
  gather(dim: number, indices: Tensor): Tensor {
    return op('gather', this.handle, checkInt(dim, 'dim'), h(indices, 'indices'));
  }
  /** Pieces of `size` along `dim` (the last may be smaller). */
  split(size: number, dim = 0): Tensor[] {
    return opList('split', this.handle, checkInt(size, 'size', 1), checkInt(dim, 'dim'));
  }
  /** Splits into `chunks` pieces along `dim` (`torch.chunk`). */
  chunk(chunks: number, dim = 0): Tensor[] {
    return opList('chunk', this.handle, checkInt(chunks, 'chunks', 1), checkInt(dim, 'dim'));
  }
  /** Integer class ids → one-hot int64 of `numClasses` (-1: max + 1). */
  oneHot(numClasses = -1): Tensor {
    return op('one_hot', this.handle, checkInt(numClasses, 'numClasses', -1));
  }

  /** A one-line description: shape, dtype, device and whether it requires grad. */
  toString(): string {
    if (this.isDisposed) return 'Tensor(disposed)';
    return `Tensor(shape=[${this.shape}], dtype=${this.dtype}, device=${this.device}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

// ---- creation ----
function flatten(data: unknown, shape: number[], out: unknown[], depth: number, where: string): void {
  if (Array.isArray(data)) {
    if (shape.length === depth) shape.push(data.length);
    else if (shape[depth] !== data.length) {
      throw new EmotorchError(`tensor(): ragged nested array: ${where} has length ${data.length} but its siblings have ${shape[depth]}`, 'ERR_INVALID_ARG');
    }
    data.forEach((d, i) => flatten(d, shape, out, depth + 1, `${where}[${i}]`));
    return;
  }
  if (depth !== shape.length && shape.length > depth) {
    throw new EmotorchError(`tensor(): ragged nested array: ${where} is a scalar but its siblings are arrays`, 'ERR_INVALID_ARG');
  }
  if (typeof data !== 'number' && typeof data !== 'boolean') invalid('a number or boolean', `tensor data${where}`, data);
  out.push(data);
}

/**
 * Creates a tensor from a TypedArray, a (nested) array of numbers or booleans, or a scalar.
 * The data is copied.
 * @param data values; nested arrays must be rectangular
 * @param opts shape (for flat data), dtype, device, requiresGrad
 * @throws EmotorchError when the data length does not match the shape, the nesting is ragged,
 *   a value is not a number, or dtype/device is unknown.
 * @example
 * et.tensor([[1, 2, 3], [4, 5, 6]]);                          // float32, shape [2, 3]
 * et.tensor(new Float32Array(6), { shape: [2, 3] });
 * et.tensor([0, 2, 1], { dtype: 'int64' });                  // class labels
 */
export function tensor(data: TensorData, opts: TensorOptions = {}): Tensor {
  opts = checkOptionNames(opts, ['shape', 'dtype', 'device', 'requiresGrad'], 'tensor options');
  const device = checkDevice(opts.device ?? 'cpu');
  if (opts.requiresGrad !== undefined && typeof opts.requiresGrad !== 'boolean') invalid('a boolean', 'requiresGrad', opts.requiresGrad);
  let src: ArrayBufferView;
  let srcDtype: DType;
  let shape: number[];
  if (ArrayBuffer.isView(data)) {
    const d = dtypeOfArray(data);
    if (d === null) invalid('a Float32Array, Float64Array, BigInt64Array, Int32Array, Int16Array, Int8Array or Uint8Array', 'tensor data', data);
    // A view of a SharedArrayBuffer cannot cross into native code as an ArrayBuffer: copy it.
    src = typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer ? (data as TypedArray).slice() : data;
    srcDtype = d;
    shape = opts.shape ? shapeArg(opts.shape) : [(data as TypedArray).length];
  } else {
    const flat: unknown[] = [];
    const inferred: number[] = [];
    flatten(data, inferred, flat, 0, '');
    const allBool = flat.length > 0 && flat.every((v) => typeof v === 'boolean');
    if (!allBool && flat.some((v) => typeof v === 'boolean')) invalid('numbers or booleans, not a mix', 'tensor data', data);
    const target = opts.dtype ? checkDtype(opts.dtype) : allBool ? 'bool' : 'float32';
    if (!isFloating(target) && !allBool) {
      flat.forEach((v, i) => {
        if (!Number.isInteger(v)) invalid(`integers for dtype ${target}`, `tensor data (element ${i})`, v);
      });
    }
    if (allBool) {
      src = Uint8Array.from(flat as boolean[], (b) => (b ? 1 : 0));
      srcDtype = 'uint8';
    } else if (target === 'float32' || target === 'float16' || target === 'bfloat16') {
      src = Float32Array.from(flat as number[]);
      srcDtype = 'float32';
    } else {
      src = Float64Array.from(flat as number[]);
      srcDtype = 'float64';
    }
    shape = opts.shape ? shapeArg(opts.shape) : inferred;
  }
  const dtype = opts.dtype ? checkDtype(opts.dtype) : srcDtype === 'uint8' && !ArrayBuffer.isView(data) ? 'bool' : srcDtype;
  const numel = shape.reduce((a, b) => a * b, 1);
  const len = (src as TypedArray).length;
  if (numel !== len) throw new EmotorchError(`tensor(): data has ${len} elements but shape [${shape}] needs ${numel}`, 'ERR_INVALID_ARG');
  if (opts.requiresGrad && !isFloating(dtype)) invalid('a floating dtype when requiresGrad is set', 'dtype', dtype);
  return new Tensor(binding.fromData(src, shape, srcDtype, dtype, device, !!opts.requiresGrad));
}

/** The names a tensor factory's options object may have. */
const CREATE_OPTIONS = ['dtype', 'device', 'requiresGrad'];

function created(t: Tensor, opts: CreateOptions): Tensor {
  if (opts.requiresGrad) t.requiresGrad = true;
  return t;
}
function dt(opts: CreateOptions): string | null {
  checkOptionNames(opts, CREATE_OPTIONS, 'tensor creation options');
  return opts.dtype === undefined ? null : checkDtype(opts.dtype);
}
function dev(opts: CreateOptions): string | null {
  return opts.device === undefined ? null : checkDevice(opts.device);
}

/** A tensor of zeros (float32 unless `dtype`). */
export function zeros(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  return created(op('zeros', shapeArg(shape), dt(opts), dev(opts)), opts);
}
/** A tensor of ones. */
export function ones(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  return created(op('ones', shapeArg(shape), dt(opts), dev(opts)), opts);
}
/** A tensor filled with `value`. */
export function full(shape: readonly number[], value: number, opts: CreateOptions = {}): Tensor {
  if (typeof value !== 'number') invalid('a number', 'value', value);
  return created(op('full', shapeArg(shape), value, dt(opts) ?? 'float32', dev(opts)), opts);
}
/** Standard normal samples (seeded by {@link manualSeed}). */
export function randn(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  return created(op('randn', shapeArg(shape), dt(opts), dev(opts)), opts);
}
/** Uniform samples in [0, 1). */
export function rand(shape: readonly number[], opts: CreateOptions = {}): Tensor {
  return created(op('rand', shapeArg(shape), dt(opts), dev(opts)), opts);
}
/** Integers uniform in [low, high) (int64 unless `dtype`). */
export function randint(low: number, high: number, shape: readonly number[], opts: CreateOptions = {}): Tensor {
  checkInt(low, 'low');
  checkInt(high, 'high');
  if (high <= low) invalid(`high > low (${low})`, 'high', high);
  return op('randint', low, high, shapeArg(shape), dt(opts), dev(opts));
}
/** A random permutation of 0..n-1 (int64, CPU). */
export function randperm(n: number): Tensor {
  return op('randperm', checkInt(n, 'n', 0));
}
/**
 * Values start, start+step, … below end. With one argument, 0..end-1. Integer arguments give
 * int64, others float32, unless `dtype`.
 */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  [start, end, step].forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) invalid('a finite number', ['start', 'end', 'step'][i], v);
  });
  if (step === 0) invalid('a non-zero number', 'step', step);
  return created(op('arange', start, end, step, dt(opts), dev(opts)), opts);
}
/** `steps` evenly spaced values from start to end inclusive. */
export function linspace(start: number, end: number, steps: number, opts: CreateOptions = {}): Tensor {
  return created(op('linspace', start, end, checkInt(steps, 'steps', 0), dt(opts), dev(opts)), opts);
}
/** The n×n identity. */
export function eye(n: number, opts: CreateOptions = {}): Tensor {
  return created(op('eye', checkInt(n, 'n', 0), dt(opts), dev(opts)), opts);
}
/** Zeros with the shape (and by default dtype and device) of `t`. */
export function zerosLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  opts = checkOptionNames(opts, CREATE_OPTIONS, 'tensor creation options');
  return zeros(t.shape, { dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device, requiresGrad: opts.requiresGrad });
}
/** Ones with the shape (and by default dtype and device) of `t`. */
export function onesLike(t: Tensor, opts: CreateOptions = {}): Tensor {
  opts = checkOptionNames(opts, CREATE_OPTIONS, 'tensor creation options');
  return ones(t.shape, { dtype: opts.dtype ?? t.dtype, device: opts.device ?? t.device, requiresGrad: opts.requiresGrad });
}

function tensorList(ts: readonly Tensor[], name: string): TensorHandle[] {
  if (!Array.isArray(ts) || ts.length === 0) invalid('a non-empty array of Tensors', name, ts);
  return ts.map((t, i) => (t instanceof Tensor ? t.handle : invalid('a Tensor', `${name}[${i}]`, t)));
}
/** Joins tensors along an existing dimension. */
export function cat(ts: readonly Tensor[], dim = 0): Tensor {
  return op('cat', tensorList(ts, 'tensors'), checkInt(dim, 'dim'));
}
/** Joins tensors along a new dimension. */
export function stack(ts: readonly Tensor[], dim = 0): Tensor {
  return op('stack', tensorList(ts, 'tensors'), checkInt(dim, 'dim'));
}
/** Elementwise `cond ? a : b`. */
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  return op('where', h(cond, 'condition'), h(a, 'a'), h(b, 'b'));
}

// ---- grad mode ----
/** True when operations are recorded for autograd (on this thread: the JS thread). */
export function isGradEnabled(): boolean {
  return binding.isGradEnabled();
}

/**
 * Runs `fn` with autograd recording off; `fn` may be async, in which case recording stays off
 * until its promise settles (so avoid running unrelated training work concurrently inside it).
 * Native calls started inside (forward, backward) inherit the mode.
 * @example
 * const logits = await et.noGrad(() => model.forward(x));
 */
export function noGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') invalid('a function', 'noGrad(fn)', fn);
  const prev = binding.isGradEnabled();
  binding.setGradEnabled(false);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    binding.setGradEnabled(prev);
    throw e;
  }
  if (result instanceof Promise) return result.finally(() => binding.setGradEnabled(prev)) as T;
  binding.setGradEnabled(prev);
  return result;
}

/**
 * Runs `fn` under automatic mixed precision: on `device` ('cuda' by default, or 'cpu'), matmuls,
 * convolutions and attention run in `dtype` (float16 by default on CUDA, bfloat16 on CPU) while
 * reductions and norms stay in float32, as torch.autocast. Native calls started inside (forward,
 * generate, backward) inherit it; `fn` may be async (as {@link noGrad}).
 * @example
 * const logits = await et.autocast({ dtype: 'bfloat16' }, () => model.forward(x));
 */
export function autocast<T>(opts: { device?: 'cpu' | 'cuda'; dtype?: 'float16' | 'bfloat16' }, fn: () => T): T {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'autocast(opts)', opts);
  checkOptionNames(opts, ['device', 'dtype'], 'autocast options');
  if (typeof fn !== 'function') invalid('a function', 'autocast(fn)', fn);
  const device = opts.device ?? 'cuda';
  if (device !== 'cpu' && device !== 'cuda') invalid("'cpu' or 'cuda'", 'autocast device', device);
  const dtype = opts.dtype ?? (device === 'cuda' ? 'float16' : 'bfloat16');
  if (dtype !== 'float16' && dtype !== 'bfloat16') invalid("'float16' or 'bfloat16'", 'autocast dtype', dtype);
  const [wasOn, wasDtype] = binding.setAutocast(device, true, dtype);
  const restore = () => {
    binding.setAutocast(device, wasOn, wasDtype);
  };
  let result: T;
  try {
    result = fn();
  } catch (e) {
    restore();
    throw e;
  }
  if (result instanceof Promise) return result.finally(restore) as T;
  restore();
  return result;
}

/** @internal */
export function isTensor(v: unknown): v is Tensor {
  return v instanceof Tensor;
}
/** @internal */
export function checkTensor(v: unknown, name: string): Tensor {
  if (!(v instanceof Tensor)) invalid('a Tensor', name, v);
  return v;
}
