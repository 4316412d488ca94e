/**
 * The pixel transforms of LanguageBind's processors, as tensor ops (no JS loop touches a pixel):
 *
 * - {@link videoTransform}: the video processor's decord-backend `Compose` — x / 255,
 *   torchvision `NormalizeVideo(OPENAI mean, std)`, pytorchvideo `ShortSideScale(224)` (bilinear,
 *   align_corners=False, the long side `floor(long / short · 224)`), torchvision
 *   `CenterCropVideo(224)` (offsets `int(round((h − 224) / 2))`, Python's half-to-even round) and
 *   `RandomHorizontalFlipVideo(p)`. Normalising comes before resizing, as in the original.
 * - {@link clipImageTransform}: transformers' `CLIPImageProcessor` with its PIL backend (what
 *   LanguageBind's image processor is): shortest edge to 224 with PIL's bicubic resampling on the
 *   uint8 image, center crop 224 (offsets `(h − 224) // 2`), × 1/255, OpenAI mean/std.
 *   PIL's resampling is reproduced exactly: its coefficient tables (computed here per output
 *   row/column, in float64 as PIL does), its 22-bit fixed-point weights, its horizontal-then-
 *   vertical passes with a uint8 rounding after each; the sums are integers below 2^53, so float64
 *   matmuls compute them exactly.
 */
import { checkInt, checkNumber, checkOptionNames, invalid } from '../errors';
import { isFloating } from '../dtype';
import { Tensor, arange, checkTensor, tensor, cat } from '../tensor';
import { interpolate } from '../functional';
import { mulberry32 } from '../runtime';
import { MAX_FRAME_PIXELS } from './video';

/**
 * OpenAI CLIP's per-channel RGB mean, as LanguageBind's OPENAI_DATASET_MEAN (the default `mean`).
 * @example
 * et.vision.videoTransform(frames, { mean: [...et.vision.OPENAI_CLIP_MEAN] });
 */
export const OPENAI_CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
/**
 * OpenAI CLIP's per-channel RGB std, as LanguageBind's OPENAI_DATASET_STD (the default `std`).
 * @example
 * et.vision.clipImageTransform(image, { std: [...et.vision.OPENAI_CLIP_STD] });
 */
export const OPENAI_CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** Options of {@link videoTransform}. */
export interface VideoTransformOptions {
  /** Short side after scaling, and the square crop (default 224). */
  size?: number;
  /** Per-channel mean and std (default OpenAI CLIP's). */
  mean?: readonly number[];
  std?: readonly number[];
  /**
   * Probability of flipping the clip left–right (one draw for all frames). Default 0. The original
   * applies `RandomHorizontalFlipVideo(p=0.5)` at inference too (a bug of the original): 0.5
   * reproduces it, with Python's `random.random()` replaced by `rng` / `seed`.
   */
  hflipProb?: number;
  /** Seed of the flip's generator (mulberry32); ignored when `rng` is given. */
  seed?: number;
  /** A generator of floats in [0, 1) for the flip (e.g. `et.data.mulberry32(7)`); default `Math.random`. */
  rng?: () => number;
}

/** Options of {@link clipImageTransform}. */
export interface ClipImageTransformOptions {
  /** The shortest edge after resizing (default 224). */
  size?: number;
  /** The square center crop (default 224; at most `size`). */
  cropSize?: number;
  mean?: readonly number[];
  std?: readonly number[];
}

function channelParam(v: unknown, name: string, dflt: readonly number[], positive: boolean): Tensor {
  const a = v === undefined ? dflt : v;
  if (!Array.isArray(a) || a.length !== 3) invalid('three numbers (R, G, B)', name, v);
  a.forEach((x, i) => (positive ? checkNumber(x, `${name}[${i}]`, Number.MIN_VALUE) : checkNumber(x, `${name}[${i}]`)));
  return tensor(Float32Array.from(a as number[]), { shape: [3, 1, 1, 1] });
}

/** Python's round(): halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The generator an options object asks for. @internal */
export function rngOf(o: { seed?: number; rng?: () => number }): () => number {
  if (o.rng !== undefined) {
    if (typeof o.rng !== 'function') invalid('a function returning floats in [0, 1)', 'rng', o.rng);
    return o.rng;
  }
  if (o.seed !== undefined) return mulberry32(checkInt(o.seed, 'seed', 0));
  return Math.random;
}

/**
 * LanguageBind's video transform (decord backend) on uint8 frames [3, T, H, W]:
 * x / 255 → normalize (mean, std) → short side to `size` (bilinear, align_corners=False; the long
 * side `floor(long / short · size)`, as pytorchvideo) → center crop `size` (torchvision's offsets)
 * → flip left–right with probability `hflipProb` (default 0; the original's 0.5 is a bug at
 * inference, see {@link VideoTransformOptions.hflipProb}). Returns float32 [3, T, size, size].
 * @param frames uint8 (or 0–255 float) frames, shape [3, T, H, W], as {@link readVideoFrames} gives
 * @throws EmotorchError ERR_INVALID_ARG for another shape or a bad option.
 * @example
 * const { frames } = await et.vision.readVideoFrames('clip.mp4');
 * const x = et.vision.videoTransform(frames);                       // float32 [3, 8, 224, 224]
 * const asOriginal = et.vision.videoTransform(frames, { hflipProb: 0.5, seed: 0 });
 */
export function videoTransform(frames: Tensor, opts: VideoTransformOptions = {}): Tensor {
  const o = checkOptionNames(opts, ['size', 'mean', 'std', 'hflipProb', 'seed', 'rng'], 'videoTransform options');
  checkTensor(frames, 'frames');
  const s = frames.shape;
  if (s.length !== 4 || s[0] !== 3 || s.some((d) => d === 0)) invalid('RGB frames of shape [3, T, H, W]', 'frames', `shape [${s}]`);
  if (frames.dtype !== 'uint8' && !isFloating(frames.dtype)) invalid('uint8 (or floating) frames', 'frames', frames.dtype);
  const size = o.size === undefined ? 224 : checkInt(o.size, 'size', 1);
  const p = o.hflipProb === undefined ? 0 : checkNumber(o.hflipProb, 'hflipProb', 0, 1);
  const rand = rngOf(o);
  const mean = channelParam(o.mean, 'mean', OPENAI_CLIP_MEAN, false);
  const std = channelParam(o.std, 'std', OPENAI_CLIP_STD, true);

  const [h, w] = [s[2], s[3]];
  const [nh, nw] = w < h ? [Math.floor((h / w) * size), size] : [size, Math.floor((w / h) * size)];
  checkResized('frames', h, w, nh, nw);
  const i = roundHalfEven((nh - size) / 2),
    j = roundHalfEven((nw - size) / 2);
  // One frame's channel at a time (each element's arithmetic is the same as on the whole clip:
  // x / 255, − mean, / std in float32, then each plane resized on its own), so that at most two
  // float32 planes of the full-resolution frame exist at once, never a float copy of every frame
  // (8 frames of 8192² would be 6.4 GB).
  const channels: Tensor[] = [];
  for (let c = 0; c < 3; c++) {
    const m = mean.slice(0, c, c + 1),
      d = std.slice(0, c, c + 1); // [1, 1, 1, 1]
    const planes: Tensor[] = [];
    for (let t = 0; t < s[1]; t++) {
      const channel = frames.slice(0, c, c + 1);
      const view = channel.slice(1, t, t + 1); // (1, 1, H, W)
      channel.dispose();
      const x0 = frames.dtype === 'uint8' ? view : view.float();
      const x1 = x0.div(255);
      if (x0 !== view) x0.dispose();
      view.dispose();
      const x2 = x1.sub(m);
      x1.dispose();
      const x3 = x2.div(d);
      x2.dispose();
      const scaled = interpolate(x3, { size: [nh, nw], mode: 'bilinear', alignCorners: false });
      x3.dispose();
      const rows = scaled.slice(2, i, i + size);
      planes.push(rows.slice(3, j, j + size));
      rows.dispose();
      scaled.dispose();
    }
    channels.push(cat(planes, 1));
    for (const t of planes) t.dispose();
    m.dispose();
    d.dispose();
  }
  let out = cat(channels, 0); // (3, T, size, size)
  for (const t of channels) t.dispose();
  mean.dispose();
  std.dispose();
  if (p > 0 && rand() < p) {
    const rev = arange(size - 1, -1, -1);
    const flipped = out.indexSelect(3, rev);
    out.dispose();
    rev.dispose();
    out = flipped;
  }
  return out;
}

/**
 * Refuses a resize to more than {@link MAX_FRAME_PIXELS} pixels: a picture of an extreme aspect
 * ratio (1 × 65535 resized to a 224 short side is 224 × 14 680 064) or an absurd `size`.
 */
function checkResized(name: string, h: number, w: number, nh: number, nw: number): void {
  if (nh * nw > MAX_FRAME_PIXELS) {
    invalid(
      `a picture whose resize stays within ${MAX_FRAME_PIXELS} pixels (its aspect ratio or size is too extreme)`,
      name,
      `${w}×${h} resized to ${nw}×${nh}`,
    );
  }
}

// ---- PIL's resampling (Pillow src/libImaging/Resample.c), reproduced ----

const PRECISION_BITS = 32 - 8 - 2;

/** PIL's bicubic kernel (a = −0.5). */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/**
 * PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for resizing `inSize` to `outSize`: per
 * output index, the first input index and the integer weights (fixed point, 22 fraction bits).
 */
function pilCoefficients(inSize: number, outSize: number): { first: Int32Array; weights: Float64Array[] } {
  const support0 = 2; // bicubic
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = support0 * filterscale;
  const first = new Int32Array(outSize);
  const weights: Float64Array[] = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    const k = new Float64Array(Math.max(0, xmax));
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const wgt = bicubic((x + xmin - center + 0.5) * ss);
      k[x] = wgt;
      ww += wgt;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? k[x] / ww : k[x];
      k[x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    first[xx] = xmin;
    weights.push(k);
  }
  return { first, weights };
}

/**
 * One PIL resampling pass along the last dimension of a float64 tensor of integer pixel values
 * (…, n) → (…, outSize), with PIL's rounding and uint8 clipping. Output positions go in blocks,
 * each a matmul with the block's band of weights.
 */
function pilPass(x: Tensor, outSize: number): Tensor {
  const n = x.shape[x.ndim - 1];
  const { first, weights } = pilCoefficients(n, outSize);
  const BLOCK = 64;
  const parts: Tensor[] = [];
  for (let a = 0; a < outSize; a += BLOCK) {
    const b = Math.min(outSize, a + BLOCK);
    let lo = Infinity,
      hi = 0;
    for (let xx = a; xx < b; xx++) {
      lo = Math.min(lo, first[xx]);
      hi = Math.max(hi, first[xx] + weights[xx].length);
    }
    const band = new Float64Array((hi - lo) * (b - a)); // (span, outputs)
    for (let xx = a; xx < b; xx++)
      weights[xx].forEach((wgt, t) => {
        band[(first[xx] - lo + t) * (b - a) + (xx - a)] = wgt;
      });
    const kt = tensor(band, { shape: [hi - lo, b - a] });
    parts.push(x.slice(x.ndim - 1, lo, hi).matmul(kt));
  }
  const sums = parts.length === 1 ? parts[0] : cat(parts, -1);
  // ss = 2^21 + Σ pixel · weight; PIL stores clip8(ss >> 22).
  return sums
    .add(1 << (PRECISION_BITS - 1))
    .div(1 << PRECISION_BITS)
    .floor()
    .clamp(0, 255);
}

/** PIL's `Image.resize((w, h), BICUBIC)` of an RGB uint8 image [3, H, W] → float64 [3, h, w] of integers. @internal */
export function pilResizeBicubic(img: Tensor, h: number, w: number): Tensor {
  let x = img.to({ dtype: 'float64' });
  if (w !== x.shape[2]) x = pilPass(x, w); // horizontal first
  if (h !== x.shape[1]) x = pilPass(x.transpose(1, 2), h).transpose(1, 2); // then vertical
  return x;
}

/**
 * CLIP's image preprocessing, equal to transformers' `CLIPImageProcessor` (PIL backend, the one
 * LanguageBind's image processor uses) on an RGB uint8 image [3, H, W]: resize the shortest edge to
 * `size` (the other `int(size · long / short)`) with PIL's bicubic resampling, reproduced bit for
 * bit; center crop `cropSize` (offsets `(h − crop) // 2`); × 1/255; normalize with OpenAI's mean
 * and std. Returns float32 [3, cropSize, cropSize].
 * @param image uint8 [3, H, W] (as {@link readImage} gives)
 * @throws EmotorchError ERR_INVALID_ARG for another shape or dtype, or a bad option.
 * @example
 * const pixels = et.vision.clipImageTransform(await et.vision.readImage('face.png'));  // [3, 224, 224]
 */
export function clipImageTransform(image: Tensor, opts: ClipImageTransformOptions = {}): Tensor {
  const o = checkOptionNames(opts, ['size', 'cropSize', 'mean', 'std'], 'clipImageTransform options');
  checkTensor(image, 'image');
  const s = image.shape;
  if (s.length !== 3 || s[0] !== 3 || s[1] === 0 || s[2] === 0 || image.dtype !== 'uint8')
    invalid('a uint8 RGB image of shape [3, H, W]', 'image', `${image.dtype} [${s}]`);
  const size = o.size === undefined ? 224 : checkInt(o.size, 'size', 1);
  const crop = o.cropSize === undefined ? 224 : checkInt(o.cropSize, 'cropSize', 1);
  if (crop > size) invalid(`a crop no larger than size (${size})`, 'cropSize', crop);
  const mean = channelParam(o.mean, 'mean', OPENAI_CLIP_MEAN, false).reshape([3, 1, 1]);
  const std = channelParam(o.std, 'std', OPENAI_CLIP_STD, true).reshape([3, 1, 1]);
  const [h, w] = [s[1], s[2]];
  const [short, long] = w <= h ? [w, h] : [h, w];
  const newLong = Math.trunc((size * long) / short);
  const [nh, nw] = w <= h ? [newLong, size] : [size, newLong];
  checkResized('image', h, w, nh, nw);
  const resized = nh === h && nw === w ? image.to({ dtype: 'float64' }) : pilResizeBicubic(image, nh, nw);
  const top = Math.floor((nh - crop) / 2),
    left = Math.floor((nw - crop) / 2);
  const cropped = resized.slice(1, top, top + crop).slice(2, left, left + crop);
  // rescale in float64 then float32 (transformers' rescale), normalize in float32.
  return cropped
    .mul(1 / 255)
    .float()
    .sub(mean)
    .div(std)
    .contiguous();
}
