/**
 * InternVL's image preprocessing (InternVL `internvl_chat/internvl/train/dataset.py` and ms-swift
 * 2.6.1 `vision_utils.py`, which copies it): `dynamic_preprocess` cuts a picture into up to
 * `maxNum` square tiles on the grid whose aspect ratio is closest to the picture's (resized with
 * PIL's bicubic filter, reproduced bit for bit), adds a thumbnail of the whole picture when there
 * is more than one tile, and `build_transform` scales each tile to [0, 1] and normalises it with
 * ImageNet's mean and std.
 */
import { checkInt, checkOptionNames, invalid } from '../errors';
import { Tensor, checkTensor, stack, tensor } from '../tensor';
import { pilResizeBicubic } from './transforms';

/** ImageNet's RGB mean, InternVL's IMAGENET_MEAN. */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
/** ImageNet's RGB std, InternVL's IMAGENET_STD. */
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

/** Options of {@link internvlTiles}. */
export interface InternVLTilesOptions {
  /** The tile side (InternVL2: 448), an integer in [1, 4096]; maxNum × imageSize² may not exceed 4096² pixels. */
  imageSize?: number;
  /** Fewest tiles of a grid (default 1), an integer in [1, maxNum]. */
  minNum?: number;
  /** Most tiles of a grid (default 12, ms-swift's MAX_NUM; InternVL's chat examples use 12, its config's max_dynamic_patch is 6), an integer in [minNum, 64]. Frames of a video: 1. */
  maxNum?: number;
  /** Add the whole picture as a last tile when there is more than one (default true, as ms-swift). */
  useThumbnail?: boolean;
}

/** What {@link internvlTiles} returns. */
export interface InternVLTiles {
  /** (tiles, 3, imageSize, imageSize) float32, normalised. */
  pixelValues: Tensor;
  /** The grid chosen: [columns, rows]. */
  grid: [number, number];
}

/**
 * The largest grid a call may ask for (`maxNum`, and `minNum`, at most 64): InternVL2 uses 6 to
 * 12, and 64 tiles of 448 px are already 38 M values; a picture gives at most 65 tiles with its
 * thumbnail ({@link INTERNVL_MAX_TILES_PER_IMAGE}).
 */
const INTERNVL_MAX_GRID = 64;
/** The most tiles {@link internvlTiles} can make of one picture: the largest grid and its thumbnail. */
export const INTERNVL_MAX_TILES_PER_IMAGE = INTERNVL_MAX_GRID + 1;
/** The largest tile side (`imageSize`): InternVL2 uses 448. */
const INTERNVL_MAX_IMAGE_SIZE = 4096;
/**
 * The most pixels the grid of one call may hold, `maxNum × imageSize²`: 4096² (16.8 M, the float32
 * tiles 201 MB), which takes 64 tiles of 448 px, 12 of 1024 px or one of 4096 px.
 */
const INTERNVL_MAX_GRID_PIXELS = 4096 * 4096;

function checkImageSize(v: unknown, name = 'imageSize'): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > INTERNVL_MAX_IMAGE_SIZE) invalid(`an integer in [1, ${INTERNVL_MAX_IMAGE_SIZE}]`, name, v);
  return v;
}

/** minNum and maxNum as internvlGrids takes them: integers with 1 ≤ minNum ≤ maxNum ≤ 64. */
function checkGridBounds(minNum: unknown, maxNum: unknown): [number, number] {
  if (typeof minNum !== 'number' || !Number.isInteger(minNum) || minNum < 1 || minNum > INTERNVL_MAX_GRID)
    invalid(`an integer in [1, ${INTERNVL_MAX_GRID}]`, 'minNum', minNum);
  if (typeof maxNum !== 'number' || !Number.isInteger(maxNum) || maxNum < minNum || maxNum > INTERNVL_MAX_GRID)
    invalid(`an integer in [minNum (${minNum}), ${INTERNVL_MAX_GRID}]`, 'maxNum', maxNum);
  return [minNum, maxNum];
}

/**
 * InternVL's `find_closest_aspect_ratio`: the [columns, rows] grid (from `ratios`, in order) whose
 * aspect ratio is nearest `aspect`; on an exact tie the later grid wins only when the picture's
 * area is more than half the grid's pixel area.
 * @param aspect width / height of the picture: a finite number above 0
 * @param ratios at least one [columns, rows] grid of positive integers, columns × rows ≤ 64 (as {@link internvlGrids} gives)
 * @param width the picture's width in pixels (a positive integer)
 * @param height the picture's height in pixels (a positive integer)
 * @param imageSize the tile side, an integer in [1, 4096]
 * @throws EmotorchError ERR_INVALID_ARG naming a bad argument (no ratios, a NaN or non-positive aspect)
 */
export function findClosestAspectRatio(
  aspect: number,
  ratios: ReadonlyArray<[number, number]>,
  width: number,
  height: number,
  imageSize: number,
): [number, number] {
  if (typeof aspect !== 'number' || !(aspect > 0) || !Number.isFinite(aspect)) invalid('a finite number above 0', 'aspect', aspect);
  if (!Array.isArray(ratios) || ratios.length === 0) invalid('a non-empty array of [columns, rows] grids', 'ratios', ratios);
  for (let i = 0; i < ratios.length; i++) {
    const r = ratios[i];
    if (!Array.isArray(r) || r.length !== 2 || !Number.isInteger(r[0]) || !Number.isInteger(r[1]) || r[0] < 1 || r[1] < 1 || r[0] * r[1] > INTERNVL_MAX_GRID) {
      invalid(`a [columns, rows] grid of positive integers with at most ${INTERNVL_MAX_GRID} tiles`, `ratios[${i}]`, r);
    }
  }
  checkInt(width, 'width', 1);
  checkInt(height, 'height', 1);
  checkImageSize(imageSize);
  let bestDiff = Infinity;
  let best: [number, number] = [1, 1];
  const area = width * height;
  for (const r of ratios) {
    const diff = Math.abs(aspect - r[0] / r[1]);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = r;
    } else if (diff === bestDiff && area > 0.5 * imageSize * imageSize * r[0] * r[1]) {
      best = r;
    }
  }
  return best;
}

/**
 * The grids `dynamic_preprocess` considers, fewest tiles first. Python takes them from a set, so
 * grids of equal tile count come in set order; here they come columns-ascending (the order only
 * matters on an exact tie of both tile count and aspect distance).
 * @param minNum fewest tiles, an integer in [1, 64]
 * @param maxNum most tiles, an integer in [minNum, 64]
 * @throws EmotorchError ERR_INVALID_ARG naming minNum or maxNum when they are not such integers
 */
export function internvlGrids(minNum: number, maxNum: number): Array<[number, number]> {
  checkGridBounds(minNum, maxNum);
  const out: Array<[number, number]> = [];
  for (let i = 1; i <= maxNum; i++) for (let j = 1; i * j <= maxNum; j++) if (i * j >= minNum) out.push([i, j]);
  return out.sort((a, b) => a[0] * a[1] - b[0] * b[1] || a[0] - b[0]);
}

/** The grid dynamic_preprocess picks for a width × height picture, and the tiles it gives (the thumbnail counted). */
function tileGrid(w: number, h: number, size: number, minNum: number, maxNum: number, thumb: boolean): { grid: [number, number]; tiles: number } {
  const grid = findClosestAspectRatio(w / h, internvlGrids(minNum, maxNum), w, h, size);
  const n = grid[0] * grid[1];
  return { grid, tiles: thumb && n !== 1 ? n + 1 : n };
}

/**
 * How many tiles {@link internvlTiles} makes of a width × height picture with these options,
 * without the pixels (to lay out a prompt's image tokens before decoding): at most maxNum + 1.
 * @throws EmotorchError ERR_INVALID_ARG for a size or option that internvlTiles refuses
 * @example
 * et.vision.internvlTileCount(1280, 720, { maxNum: 12 });   // 9: a 4 × 2 grid + the thumbnail
 */
export function internvlTileCount(width: number, height: number, opts: InternVLTilesOptions = {}): number {
  const o = checkOptionNames(opts, ['imageSize', 'minNum', 'maxNum', 'useThumbnail'], 'internvlTileCount options');
  checkInt(width, 'width', 1);
  checkInt(height, 'height', 1);
  const { size, minNum, maxNum, thumb } = tileOptions(o);
  return tileGrid(width, height, size, minNum, maxNum, thumb).tiles;
}

/** The options of internvlTiles and internvlTileCount, checked and bounded (imageSize ≤ 4096, maxNum ≤ 64, maxNum × imageSize² ≤ 4096²). */
function tileOptions(o: InternVLTilesOptions): { size: number; minNum: number; maxNum: number; thumb: boolean } {
  const size = o.imageSize === undefined ? 448 : checkImageSize(o.imageSize);
  const [minNum, maxNum] = checkGridBounds(o.minNum === undefined ? 1 : o.minNum, o.maxNum === undefined ? 12 : o.maxNum);
  if (maxNum * size * size > INTERNVL_MAX_GRID_PIXELS) {
    invalid(`at most ${INTERNVL_MAX_GRID_PIXELS} pixels of tiles (maxNum × imageSize²)`, 'imageSize and maxNum', `${maxNum} × ${size}²`);
  }
  if (o.useThumbnail !== undefined && typeof o.useThumbnail !== 'boolean') invalid('a boolean', 'useThumbnail', o.useThumbnail);
  return { size, minNum, maxNum, thumb: o.useThumbnail ?? true };
}

/**
 * A picture as InternVL's model input: `dynamic_preprocess` (tiles on the closest grid + thumbnail)
 * then `build_transform` (ToTensor, ImageNet normalisation) on each tile.
 * @param image uint8 RGB [3, H, W] (as {@link readImage} gives)
 * @throws EmotorchError ERR_INVALID_ARG for another shape or dtype, or bad options: imageSize not an
 *   integer in [1, 4096], minNum / maxNum not integers with 1 ≤ minNum ≤ maxNum ≤ 64, or a grid of
 *   more than 4096² pixels (maxNum × imageSize²; 64 tiles of 448 px, 12 of 1024 px)
 * @example
 * const { pixelValues } = et.vision.internvlTiles(await et.vision.readImage('scene.jpg'), { imageSize: 448, maxNum: 12 });
 */
export function internvlTiles(image: Tensor, opts: InternVLTilesOptions = {}): InternVLTiles {
  const o = checkOptionNames(opts, ['imageSize', 'minNum', 'maxNum', 'useThumbnail'], 'internvlTiles options');
  checkTensor(image, 'image');
  const s = image.shape;
  if (s.length !== 3 || s[0] !== 3 || s[1] === 0 || s[2] === 0 || image.dtype !== 'uint8')
    invalid('a uint8 RGB image of shape [3, H, W]', 'image', `${image.dtype} [${s}]`);
  const { size, minNum, maxNum, thumb } = tileOptions(o);
  const [h, w] = [s[1], s[2]];
  const { grid } = tileGrid(w, h, size, minNum, maxNum, thumb);
  const [cols, rows] = grid;
  const resized = pilResizeBicubic(image, rows * size, cols * size); // float64 of PIL's uint8 values
  const tiles: Tensor[] = [];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) tiles.push(resized.slice(1, r * size, (r + 1) * size).slice(2, c * size, (c + 1) * size));
  if (thumb && tiles.length !== 1) tiles.push(pilResizeBicubic(image, size, size));
  const mean = tensor([...IMAGENET_MEAN]).reshape([1, 3, 1, 1]);
  const std = tensor([...IMAGENET_STD]).reshape([1, 3, 1, 1]);
  // ToTensor (uint8 → float32 / 255) then Normalize, in float32 as torchvision.
  const pixelValues = stack(tiles).float().div(255).sub(mean).div(std).contiguous();
  return { pixelValues, grid };
}

/**
 * The frames ms-swift 2.6.1 reads of a video for InternVL2 (`vision_utils._get_index` with no
 * bound, `load_video_internvl`): the midpoints of `numSegments` equal segments of frames
 * 0 … frameCount − 1, `int(seg / 2 + round(seg · i))` with seg = (frameCount − 1) / numSegments
 * and Python's round-half-to-even. `VIDEO_SEGMENTS` (default 8) is `numSegments`.
 * @throws EmotorchError ERR_INVALID_ARG for a frame count below 1 or a bad segment count
 * @example
 * const { frames } = await et.vision.readVideoFrames('clip.mp4', { indices: (n) => et.vision.internvlFrameIndices(n) });
 */
export function internvlFrameIndices(frameCount: number, numSegments = 8): number[] {
  checkInt(frameCount, 'frameCount', 1);
  checkInt(numSegments, 'numSegments', 1);
  if (numSegments > 4096) invalid('at most 4096 segments', 'numSegments', numSegments);
  const seg = (frameCount - 1) / numSegments;
  const roundEven = (x: number) => {
    const f = Math.floor(x),
      d = x - f;
    return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  };
  return Array.from({ length: numSegments }, (_, i) => Math.trunc(seg / 2 + roundEven(seg * i)));
}
