/**
 * LanguageBind's image processor (transformers' CLIPImageProcessor, PIL backend) against its own
 * output (scripts/fixtures/languagebind_processors.py): PNG decodes to PIL's pixels; the transform
 * (PIL's bicubic resize reproduced) gives HF's output bit for bit; JPEG decoders differ, measured.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { maxAbsDiff } from '../helpers';
import { DIR, HAVE_FFMPEG, NO_FFMPEG, META, ref, sha256 } from './helpers';

const IMAGES = Object.entries(META.image);
const PNGS = IMAGES.filter(([, m]) => m.file.endsWith('.png'));
const JPGS = IMAGES.filter(([, m]) => m.file.endsWith('.jpg'));

async function checkOut(out: et.Tensor, key: string): Promise<number> {
  expect(out.shape).toEqual([3, 224, 224]);
  expect(out.dtype).toBe('float32');
  return Math.max(
    maxAbsDiff(out.slice(1, null, null, 8).slice(2, null, null, 8), await ref(`${key}.out_sub`)),
    maxAbsDiff(out.select(1, 100), await ref(`${key}.out_row`)),
  );
}

describe('clipImageTransform', () => {
  it.each(JPGS)('%s as PIL decodes it: equal to CLIPImageProcessorPil bit for bit', async (key, m) => {
    const rgb = (await ref(`${key}.rgb`)).permute([2, 0, 1]).contiguous(); // PIL's (H, W, 3) → (3, H, W)
    const out = et.vision.clipImageTransform(rgb);
    expect(await checkOut(out, key)).toBe(0);
    expect(await sha256(out)).toBe(m.outSha256);
  });

  it('checks its input and options', () => {
    const x = et.randint(0, 256, [3, 40, 30], { dtype: 'uint8' });
    expect(et.vision.clipImageTransform(x, { size: 32, cropSize: 20 }).shape).toEqual([3, 20, 20]);
    expect(() => et.vision.clipImageTransform(x.float())).toThrow(/uint8 RGB image/);
    expect(() => et.vision.clipImageTransform(x, { size: 10, cropSize: 20 })).toThrow(/cropSize/);
    expect(() => et.vision.clipImageTransform(x, { std: [1, 0, 1] })).toThrow(/std\[1\]/);
  });
});

describe.skipIf(!HAVE_FFMPEG)(`image files (skipped when ${NO_FFMPEG})`, () => {
  it.each(PNGS)("%s: readImage gives PIL's pixels and processImage HF's output, bit for bit", async (key, m) => {
    const img = await et.vision.readImage(path.join(DIR, m.file));
    expect(img.shape).toEqual([3, m.height, m.width]);
    expect(img.dtype).toBe('uint8');
    expect(await sha256(img.permute([1, 2, 0])), 'decoded pixels').toBe(m.rgbSha256);
    const out = await et.vision.processImage(path.join(DIR, m.file));
    expect(await checkOut(out, key)).toBe(0);
    expect(await sha256(out)).toBe(m.outSha256);
    const fromTensor = await et.vision.processImage(img);
    expect(maxAbsDiff(fromTensor, out)).toBe(0);
  });

  it.each(JPGS)("%s: ffmpeg's planes + libjpeg's upsampling and colour conversion come within a few levels of PIL (the IDCTs differ)", async (key, m) => {
    const img = await et.vision.readImage(path.join(DIR, m.file));
    expect(img.shape).toEqual([3, m.height, m.width]);
    const pil = (await ref(`${key}.rgb`)).permute([2, 0, 1]);
    const pixels = maxAbsDiff(img, pil);
    const mean = img.float().sub(pil.float()).abs().mean().item();
    const out = maxAbsDiff(await et.vision.processImage(path.join(DIR, m.file)), et.vision.clipImageTransform(pil.contiguous()));
    console.log(`${key}: decode max |ours - PIL| = ${pixels} levels (mean ${mean.toFixed(4)}); processed max |diff| = ${out.toFixed(4)}`);
    expect(pixels).toBeLessThanOrEqual(4);
    expect(mean).toBeLessThan(0.1);
    expect(out).toBeLessThan(4 / 255 / 0.26);
  });
});
