/** Losses and stateless layers on tensors (`et.functional`).
 * @module
 */
import { Tensor, op, reductionArg, Reduction, checkTensor } from './tensor';
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid } from './errors';
import { isFloating } from './dtype';

/** Options of `et.functional.crossEntropy` (torch's `F.cross_entropy` arguments, camelCase). */
export interface CrossEntropyOptions {
  /** Targets equal to this are ignored (default -100, as PyTorch). */
  ignoreIndex?: number;
  /** Mixes the target with the uniform distribution (0 = off). */
  labelSmoothing?: number;
  /** Per-class weights, shape (C,). */
  weight?: Tensor;
  reduction?: Reduction;
}

/**
 * Cross entropy between logits (N, C) or (N, C, d…) and int64 class targets (N) / (N, d…), or
 * class probabilities of the logits' shape. Same semantics as torch.nn.functional.cross_entropy.
 * @throws EmotorchError when shapes or dtypes do not fit.
 * @example
 * const loss = et.functional.crossEntropy(logits, labels, { ignoreIndex: -100 });
 */
export function crossEntropy(input: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  opts = checkOptionNames(opts, ['ignoreIndex', 'labelSmoothing', 'weight', 'reduction'], 'crossEntropy options');
  checkTensor(input, 'input');
  checkTensor(target, 'target');
  const ignore = checkInt(opts.ignoreIndex ?? -100, 'ignoreIndex');
  const smoothing = checkNumber(opts.labelSmoothing ?? 0, 'labelSmoothing', 0, 1);
  const is = input.shape,
    ts = target.shape;
  if (is.length < 1) invalid('logits with a class dimension', 'input', `shape [${is}]`);
  if (isFloating(target.dtype)) {
    if (ts.join() !== is.join()) throw new EmotorchError(`crossEntropy: probability target shape [${ts}] must equal input shape [${is}]`, 'ERR_INVALID_ARG');
  } else {
    const expect = is.length === 1 ? [] : [is[0], ...is.slice(2)];
    if (ts.join() !== expect.join()) {
      throw new EmotorchError(`crossEntropy: target shape [${ts}] does not fit input shape [${is}] (expected [${expect}])`, 'ERR_INVALID_ARG');
    }
    if (target.dtype !== 'int64') invalid('an int64 class-index tensor (or float probabilities)', 'target', `dtype ${target.dtype}`);
  }
  if (opts.weight !== undefined) checkTensor(opts.weight, 'weight');
  return op('cross_entropy', input.handle, target.handle, opts.weight?.handle ?? null, reductionArg(opts.reduction ?? 'mean'), ignore, smoothing);
}

/** Negative log likelihood of log-probabilities (N, C) and int64 targets (N). */
export function nllLoss(input: Tensor, target: Tensor, opts: { ignoreIndex?: number; weight?: Tensor; reduction?: Reduction } = {}): Tensor {
  opts = checkOptionNames(opts, ['ignoreIndex', 'weight', 'reduction'], 'nllLoss options');
  checkTensor(input, 'input');
  checkTensor(target, 'target');
  return op(
    'nll_loss',
    input.handle,
    target.handle,
    opts.weight?.handle ?? null,
    reductionArg(opts.reduction ?? 'mean'),
    checkInt(opts.ignoreIndex ?? -100, 'ignoreIndex'),
  );
}

function sameShape(a: Tensor, b: Tensor, name: string): void {
  checkTensor(a, 'input');
  checkTensor(b, 'target');
  if (a.shape.join() !== b.shape.join()) throw new EmotorchError(`${name}: input shape [${a.shape}] and target shape [${b.shape}] differ`, 'ERR_INVALID_ARG');
}

/** Mean squared error. Input and target must have the same shape (no silent broadcasting). */
export function mseLoss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  opts = checkOptionNames(opts, ['reduction'], 'mseLoss options');
  sameShape(input, target, 'mseLoss');
  return op('mse_loss', input.handle, target.handle, reductionArg(opts.reduction ?? 'mean'));
}

/** Mean absolute error (SPECTRA's regression loss). Same shapes required. */
export function l1Loss(input: Tensor, target: Tensor, opts: { reduction?: Reduction } = {}): Tensor {
  opts = checkOptionNames(opts, ['reduction'], 'l1Loss options');
  sameShape(input, target, 'l1Loss');
  return op('l1_loss', input.handle, target.handle, reductionArg(opts.reduction ?? 'mean'));
}

/** Binary cross entropy on logits, optionally with per-element weight and positive-class weight. */
export function binaryCrossEntropyWithLogits(input: Tensor, target: Tensor, opts: { weight?: Tensor; posWeight?: Tensor; reduction?: Reduction } = {}): Tensor {
  opts = checkOptionNames(opts, ['weight', 'posWeight', 'reduction'], 'binaryCrossEntropyWithLogits options');
  sameShape(input, target, 'binaryCrossEntropyWithLogits');
  return op(
    'bce_with_logits',
    input.handle,
    target.handle,
    opts.weight?.handle ?? null,
    opts.posWeight?.handle ?? null,
    reductionArg(opts.reduction ?? 'mean'),
  );
}

/** x Wᵀ + b. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor): Tensor {
  return op('linear', checkTensor(x, 'x').handle, checkTensor(weight, 'weight').handle, bias ? checkTensor(bias, 'bias').handle : null);
}

/** Zeroes elements with probability p and rescales the rest, when `training`. */
export function dropout(x: Tensor, p: number, training = true): Tensor {
  return op('dropout', checkTensor(x, 'x').handle, checkNumber(p, 'p', 0, 1), training);
}

/** Layer normalization over the trailing `normalizedShape` dimensions. */
export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  return op('layer_norm', checkTensor(x, 'x').handle, normalizedShape, weight?.handle ?? null, bias?.handle ?? null, eps);
}

/** Options of {@link interpolate}. */
export interface InterpolateOptions {
  /** Output (height, width). */
  size: [number, number];
  /** 'bilinear' (default), 'bicubic' or 'nearest'. */
  mode?: 'bilinear' | 'bicubic' | 'nearest';
  /** As torch's `align_corners` (default false; not for 'nearest'). */
  alignCorners?: boolean;
  /** As torch's `antialias` (default false; 'bilinear' and 'bicubic' only). */
  antialias?: boolean;
}

/**
 * Resizes the last two dimensions of a float (N, C, H, W) tensor, as
 * torch.nn.functional.interpolate(x, size, mode, align_corners, antialias).
 * @throws EmotorchError for a non-4-D or non-float input, a bad size or mode.
 * @example
 * const small = et.functional.interpolate(frames, { size: [224, 298], mode: 'bilinear' });
 */
export function interpolate(x: Tensor, opts: InterpolateOptions): Tensor {
  checkTensor(x, 'x');
  if (x.ndim !== 4 || !isFloating(x.dtype)) invalid('a floating-point (N, C, H, W) tensor', 'interpolate x', `${x.dtype} [${x.shape}]`);
  if (!opts || typeof opts !== 'object') invalid('interpolate options ({ size, mode })', 'opts', opts);
  checkOptionNames(opts, ['size', 'mode', 'alignCorners', 'antialias'], 'interpolate options');
  const size = opts.size;
  if (!Array.isArray(size) || size.length !== 2) invalid('[height, width]', 'interpolate size', size);
  const hw = size.map((v, i) => checkInt(v, `interpolate size[${i}]`, 1));
  if (hw[0] * hw[1] > 1 << 28) invalid('an output of at most 2^28 pixels', 'interpolate size', size);
  const mode = opts.mode ?? 'bilinear';
  if (!['bilinear', 'bicubic', 'nearest'].includes(mode)) invalid("'bilinear', 'bicubic' or 'nearest'", 'interpolate mode', mode);
  const alignCorners = opts.alignCorners ?? false,
    antialias = opts.antialias ?? false;
  if (typeof alignCorners !== 'boolean') invalid('a boolean', 'interpolate alignCorners', alignCorners);
  if (typeof antialias !== 'boolean') invalid('a boolean', 'interpolate antialias', antialias);
  if (mode === 'nearest' && (alignCorners || antialias)) invalid("alignCorners and antialias off for mode 'nearest'", 'interpolate options', opts);
  if (x.numel === 0) invalid('a non-empty tensor', 'interpolate x', `[${x.shape}]`);
  return op('interpolate', x.handle, hw, mode, alignCorners, antialias);
}

/** Options of {@link scaledDotProductAttention} (torch's `F.scaled_dot_product_attention` arguments, camelCase). */
export interface AttentionOptions {
  /**
   * Added to the scores (a floating tensor) or choosing the keys each query attends to (boolean,
   * true = attend); broadcastable to (B, Hq, Tq, S).
   */
  attnMask?: Tensor;
  /** The scores' factor (default 1 / √D). */
  scale?: number;
  /** Key and value heads shared by groups of query heads (Hq a multiple of Hkv), as torch's `enable_gqa` (default false). */
  enableGqa?: boolean;
  /**
   * Query t attends to keys 0 … t only, as torch's `is_causal` (its mask aligned to the top left
   * when Tq ≠ S; not with `attnMask`). Default false.
   */
  isCausal?: boolean;
}

/**
 * softmax(q·kᵀ · scale + mask) · v over (B, H, T, D) tensors, as torch's
 * `F.scaled_dot_product_attention` without dropout.
 * A few queries (Tq ≤ 4) on the CPU without an autograd graph, float32 or bfloat16, with a
 * floating mask of shape (B or 1, 1, Tq or 1, S) or none, take emotorch's decoding kernel (the
 * grouped key/value heads read in place, float32 sums, each query computed alone); so does
 * `isCausal` where Tq = S (a prompt: each query over the keys up to itself, as a generation's
 * bfloat16 prompt pass runs); anything else goes to ATen's SDPA.
 * @throws EmotorchError (ERR_INVALID_ARG) when the shapes, dtypes or devices do not fit.
 * @example
 * // one query over a cache of 37 keys, 8 query heads sharing 2 key/value heads
 * const q = et.randn([1, 8, 1, 64]), k = et.randn([1, 2, 37, 64]), v = et.randn([1, 2, 37, 64]);
 * const out = et.functional.scaledDotProductAttention(q, k, v, { enableGqa: true }); // [1, 8, 1, 64]
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  opts = checkOptionNames(opts, ['attnMask', 'scale', 'enableGqa', 'isCausal'], 'scaledDotProductAttention options');
  const named: [Tensor, string][] = [
    [q, 'q'],
    [k, 'k'],
    [v, 'v'],
  ];
  for (const [t, name] of named) {
    checkTensor(t, name);
    if (t.ndim !== 4 || !isFloating(t.dtype)) invalid('a floating-point (B, H, T, D) tensor', `scaledDotProductAttention ${name}`, `${t.dtype} [${t.shape}]`);
    if (t.dtype !== q.dtype || t.device !== q.device)
      invalid(`q's dtype and device (${q.dtype}, ${q.device})`, `scaledDotProductAttention ${name}`, `${t.dtype} on ${t.device}`);
  }
  const [B, Hq, Tq, D] = q.shape,
    [, Hkv, S] = k.shape;
  const gqa = opts.enableGqa ?? false;
  if (typeof gqa !== 'boolean') invalid('a boolean', 'scaledDotProductAttention enableGqa', gqa);
  if (k.shape[0] !== B || k.shape[3] !== D) invalid(`k of shape (${B}, Hkv, S, ${D})`, 'scaledDotProductAttention k', `[${k.shape}]`);
  if (v.shape[0] !== B || v.shape[1] !== Hkv || v.shape[2] !== S)
    invalid(`v of shape (${B}, ${Hkv}, ${S}, Dv) as k's`, 'scaledDotProductAttention v', `[${v.shape}]`);
  if (gqa ? Hkv < 1 || Hq % Hkv !== 0 : Hq !== Hkv)
    invalid(
      gqa ? `q heads (${Hq}) a multiple of k's (${Hkv})` : `as many k heads as q heads (${Hq}), or enableGqa`,
      'scaledDotProductAttention k',
      `[${k.shape}]`,
    );
  const mask = opts.attnMask;
  if (mask !== undefined) {
    checkTensor(mask, 'attnMask');
    const full = [B, Hq, Tq, S];
    const fits = mask.ndim <= 4 && mask.shape.every((n, i) => n === 1 || n === full[4 - mask.ndim + i]);
    if (!fits || (mask.dtype !== 'bool' && !isFloating(mask.dtype)) || mask.device !== q.device)
      invalid(
        `a boolean or floating mask broadcastable to [${full}] on ${q.device}`,
        'scaledDotProductAttention attnMask',
        `${mask.dtype} [${mask.shape}] on ${mask.device}`,
      );
  }
  const scale = opts.scale === undefined ? null : checkNumber(opts.scale, 'scaledDotProductAttention scale');
  if (scale !== null && !Number.isFinite(scale)) invalid('a finite number', 'scaledDotProductAttention scale', scale);
  const causal = opts.isCausal ?? false;
  if (typeof causal !== 'boolean') invalid('a boolean', 'scaledDotProductAttention isCausal', causal);
  if (causal && mask !== undefined) invalid('no attnMask with isCausal (torch refuses both)', 'scaledDotProductAttention isCausal', causal);
  return op('scaled_dot_product_attention', q.handle, k.handle, v.handle, mask?.handle ?? null, scale, gqa, causal);
}

/**
 * Rotary position embedding of one projection, as transformers' `apply_rotary_pos_emb` computes it
 * for q (or k): x · cos + rotate_half(x) · sin, rotate_half(x) = (−x₂, x₁) for x's halves x₁, x₂;
 * in bfloat16 / float16 each product and the sum rounded to the dtype as torch's ops round them.
 * On the CPU without an autograd graph one loop a row (the kernel a LLaMA's prompt pass and decoding
 * steps take), float32 one fused pass; else torch's ops.
 * @param x (B, heads, T, D), D even
 * @param cos (B or 1, T, D) in x's dtype and device, as LlamaRotaryEmbedding gives them
 * @param sin as cos
 * @returns (B, heads, T, D) in x's dtype
 * @throws EmotorchError (ERR_INVALID_ARG) naming the tensor whose shape, dtype or device does not fit.
 * @example
 * const q = et.randn([1, 8, 5, 64]);
 * const pos = et.arange(5).reshape([1, 5, 1]), invFreq = et.arange(0, 64, 2).div(64).mul(-Math.log(10000)).exp();
 * const freqs = pos.mul(invFreq), emb = et.cat([freqs, freqs], -1);
 * const rotated = et.functional.applyRotaryPosEmb(q, emb.cos(), emb.sin()); // [1, 8, 5, 64]
 */
export function applyRotaryPosEmb(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  checkTensor(x, 'x');
  if (x.ndim !== 4 || !isFloating(x.dtype) || x.shape[3] % 2 !== 0)
    invalid('a floating-point (B, heads, T, D) tensor, D even', 'applyRotaryPosEmb x', `${x.dtype} [${x.shape}]`);
  const [B, , T, D] = x.shape;
  const table = (t: Tensor, name: string): Tensor => {
    checkTensor(t, name);
    if (t.ndim !== 3 || (t.shape[0] !== B && t.shape[0] !== 1) || t.shape[1] !== T || t.shape[2] !== D || t.dtype !== x.dtype || t.device !== x.device)
      invalid(`a (${B} or 1, ${T}, ${D}) tensor in ${x.dtype} on ${x.device}`, `applyRotaryPosEmb ${name}`, `${t.dtype} [${t.shape}] on ${t.device}`);
    return t.shape[0] === B ? t : t.expand([B, T, D]);
  };
  return op('apply_rotary_pos_emb', x.handle, table(cos, 'cos').handle, table(sin, 'sin').handle);
}

/** Softmax along `dim` (`F.softmax`). */
export function softmax(x: Tensor, dim: number): Tensor {
  return x.softmax(dim);
}
/** Log-softmax along `dim` (`F.log_softmax`). */
export function logSoftmax(x: Tensor, dim: number): Tensor {
  return x.logSoftmax(dim);
}
