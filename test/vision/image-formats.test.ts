// Pictures as users' datasets hold them (scripts/fixtures/images.py -> test/fixtures/images/),
// against PIL's `Image.open(f).convert('RGB')`, which InternVL's and ms-swift's loaders call:
// palette, 1-bit, alpha, 16-bit, CMYK and progressive JPEGs, BMP / GIF / TIFF / WebP, a 1×1; and
// the pictures that must be refused with a coded error (cut, oversized, not a picture).
import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith } from '../helpers';
import { HAVE_FFMPEG, NO_FFMPEG } from './helpers';

const dir = path.join(FIXTURES, 'images');
let ref: Map<string, et.Tensor>;
beforeAll(async () => {
  ref = (await et.io.loadSafetensors(path.join(dir, 'io.safetensors'))).tensors;
});

/** Largest and mean absolute difference from PIL's RGB (H, W, 3). */
async function diff(name: string, against = name): Promise<{ max: number; mean: number }> {
  const img = await et.vision.readImage(path.join(dir, name));
  const want = ref.get(against)!.float();
  const got = img.permute([1, 2, 0]).float();
  expect(got.shape, name).toEqual(want.shape);
  const d = got.sub(want).abs();
  return { max: d.max().item(), mean: d.mean().item() };
}

describe.skipIf(!HAVE_FFMPEG)(`readImage over formats and modes = PIL convert('RGB') (skipped when ${NO_FFMPEG})`, () => {
  it("lossless pictures give PIL's pixels exactly: palette, 1-bit, grey + alpha, RGBA, BMP, GIF, TIFF, lossless WebP, 1×1", async () => {
    for (const n of ['rgb.png', 'palette.png', 'bw.png', 'la.png', 'rgba.png', 'dot.png', 'x.bmp', 'x.gif', 'x.tiff', 'lossless.webp'])
      expect((await diff(n)).max, n).toBe(0);
  });
  it('16-bit PNGs: RGB as PIL within rounding; grey scaled to 8 bits (PIL clips it at 255)', async () => {
    expect((await diff('rgb48.png')).max).toBeLessThanOrEqual(1);
    expect((await diff('grey16.png', 'grey16.png.scaled')).max).toBeLessThanOrEqual(1);
  });
  it('JPEGs (4:2:0, 4:2:2, progressive, grey, CMYK) within a few levels of libjpeg; lossy WebP close on average', async () => {
    for (const n of ['base.jpg', 's422.jpg', 'prog.jpg', 'grey.jpg', 'cmyk.jpg']) expect((await diff(n)).max, n).toBeLessThanOrEqual(4);
    // ffmpeg's WebP decoder upsamples chroma otherwise than libwebp: on this picture of per-pixel
    // colour noise (the worst case) 5 levels on average, tens at single pixels
    expect((await diff('lossy.webp')).mean).toBeLessThan(8);
  });
  it('refuses a cut JPEG, a PNG declaring 20000×20000 (before decoding) and a text file, naming each', async () => {
    await rejectsWith(et.vision.readImage(path.join(dir, 'truncated.jpg')), 'ERR_FORMAT', /truncated\.jpg/);
    await rejectsWith(et.vision.readImage(path.join(dir, 'huge.png')), 'ERR_FORMAT', /20000×20000 \(400000000 pixels\), more than the \d+ decoded/);
    await rejectsWith(et.vision.readImage(path.join(dir, 'text.png')), 'ERR_FORMAT', /text\.png.*not one of the image formats read here/);
    await rejectsWith(et.vision.readImage(path.join(dir, 'rgb.png'), { maxPixels: 100 }), 'ERR_FORMAT', /31×23 \(713 pixels\)/);
  });
  it('a 1×1 picture tiles into one tile; the most tiles of any picture are bounded (maxNum ≤ 64)', async () => {
    const { pixelValues } = et.vision.internvlTiles(await et.vision.readImage(path.join(dir, 'dot.png')), { imageSize: 28, maxNum: 12 });
    expect(pixelValues.shape).toEqual([1, 3, 28, 28]);
    expect(() => et.vision.internvlTiles(et.zeros([3, 4, 4], { dtype: 'uint8' }), { maxNum: 65 })).toThrow(/maxNum/);
  });
});
