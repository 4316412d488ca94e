// InternVL's dynamic_preprocess + build_transform against the original functions (fixture made by
// scripts/fixtures/internvl2.py tiles from InternVL's dataset.py with PIL): the grid, the tiles, the
// thumbnail, the normalisation.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, throwsWith } from '../helpers';
import { HAVE_FFMPEG, NO_FFMPEG } from './helpers';

const dir = path.join(FIXTURES, 'internvl_tiles');
const CASES: Array<[string, number]> = [
  ['wide', 6],
  ['tall', 12],
  ['square', 6],
  ['dot', 12],
  ['odd', 12],
  ['small', 4],
];

describe('et.vision.internvlTiles = InternVL dynamic_preprocess + build_transform', () => {
  it.skipIf(!HAVE_FFMPEG)(
    `cuts every picture into the original tiles (PIL bicubic, thumbnail, ImageNet normalisation; skipped when ${NO_FFMPEG})`,
    async () => {
      const t = (await et.io.loadSafetensors(path.join(dir, 'io.safetensors'))).tensors;
      for (const [name, maxNum] of CASES) {
        const img = await et.vision.readImage(path.join(dir, `${name}.png`));
        const { pixelValues } = et.vision.internvlTiles(img, { imageSize: 28, maxNum });
        const ref = t.get(`${name}.pixel_values`)!;
        expect(pixelValues.shape, name).toEqual(ref.shape);
        expect(maxAbsDiff(pixelValues, ref), name).toBeLessThan(1e-5);
        // the count alone, from the size, as the original's tiles number
        expect(et.vision.internvlTileCount(img.shape[2], img.shape[1], { imageSize: 28, maxNum }), name).toBe(ref.shape[0]);
      }
      throwsWith(() => et.vision.internvlTileCount(0, 5), 'ERR_INVALID_ARG', /width/);
      throwsWith(() => et.vision.internvlTileCount(5, 5, { maxNum: 65 }), 'ERR_INVALID_ARG', /maxNum/);
    },
  );
  it('chooses grids as find_closest_aspect_ratio does, including its tie rule', () => {
    const grids = et.vision.internvlGrids(1, 6);
    expect(grids[0]).toEqual([1, 1]);
    expect(grids.every((g) => g[0] * g[1] <= 6)).toBe(true);
    // 2:1 picture → the 2 × 1 grid; a 1:1 picture larger than half of 2 × 2 tiles → 2 × 2 (tie with 1 × 1 broken by area)
    expect(et.vision.findClosestAspectRatio(2, grids, 896, 448, 448)).toEqual([2, 1]);
    expect(et.vision.findClosestAspectRatio(1, grids, 700, 700, 448)).toEqual([2, 2]);
    expect(et.vision.findClosestAspectRatio(1, grids, 300, 300, 448)).toEqual([1, 1]);
  });
  it('samples video frames as ms-swift 2.6.1 _get_index (segment midpoints, half-to-even rounding)', () => {
    const cases = JSON.parse(fs.readFileSync(path.join(dir, 'frame_indices.json'), 'utf8')) as Array<{ frames: number; segments: number; indices: number[] }>;
    for (const c of cases) expect(et.vision.internvlFrameIndices(c.frames, c.segments), `${c.frames} frames, ${c.segments} segments`).toEqual(c.indices);
    throwsWith(() => et.vision.internvlFrameIndices(0), 'ERR_INVALID_ARG', /frameCount/);
    throwsWith(() => et.vision.internvlFrameIndices(10, 1e6), 'ERR_INVALID_ARG', /numSegments/);
  });
  it('refuses bad pictures and absurd tilings', () => {
    throwsWith(() => et.vision.internvlTiles(et.zeros([3, 4, 4])), 'ERR_INVALID_ARG', /uint8 RGB image/);
    throwsWith(() => et.vision.internvlTiles(et.zeros([4, 4, 4], { dtype: 'uint8' })), 'ERR_INVALID_ARG', /uint8 RGB image/);
    throwsWith(() => et.vision.internvlTiles(et.zeros([3, 4, 4], { dtype: 'uint8' }), { maxNum: 1000 }), 'ERR_INVALID_ARG', /maxNum/);
    throwsWith(() => et.vision.internvlTiles(et.zeros([3, 4, 4], { dtype: 'uint8' }), { max_num: 6 } as never), 'ERR_INVALID_ARG', /max_num/);
  });
});
