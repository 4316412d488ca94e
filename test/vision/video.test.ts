/**
 * LanguageBind's video processor against references from PyAV + the original's transform written
 * in torch (scripts/fixtures/languagebind_processors.py): frame count and indices, the decoded
 * frames bit for bit, the processed clip within 1e-5.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { maxAbsDiff } from '../helpers';
import { DIR, HAVE_FFMPEG, NO_FFMPEG, META, ref, sha256 } from './helpers';

const CLIPS = Object.entries(META.video);

describe('linspaceIndices', () => {
  it('equals np.linspace(0, n - 1, num, dtype=int) for n = 1..2000 and 300 large n', async () => {
    const ns = Array.from((await ref('linspace_n')).dataSync() as Int32Array);
    for (const num of [8, 1, 2, 3, 5, 16, 32]) {
      const table = (await ref(`linspace_${num}`)).dataSync() as Int32Array;
      const rows = table.length / num;
      for (let r = 0; r < rows; r++) {
        expect(et.vision.linspaceIndices(ns[r], num), `n=${ns[r]} num=${num}`).toEqual(Array.from(table.subarray(r * num, (r + 1) * num)));
      }
    }
  });
});

describe.skipIf(!HAVE_FFMPEG)(`video files (skipped when ${NO_FFMPEG})`, () => {
  it.each(CLIPS)('%s: probeVideo reports what PyAV decodes', async (_k, m) => {
    const info = await et.vision.probeVideo(path.join(DIR, m.file));
    expect(info.frameCount).toBe(m.frameCount);
    expect([info.width, info.height]).toEqual([m.width, m.height]);
    expect(info.fps).toBeCloseTo(m.fps, 6);
    expect(info.hasAudio).toBe(m.hasAudio);
    expect(info.durationSeconds).toBeGreaterThan(0);
  });

  const BACKENDS = et.vision.libavAvailable() ? (['libav', 'ffmpeg'] as const) : (['ffmpeg'] as const);
  it.each(CLIPS)(`%s: the 8 frames equal PyAV's decode bit for bit, scanning or seeking (${BACKENDS.join(' and ')})`, async (k, m) => {
    const sub = await ref(`${k}.frames_sub`);
    for (const [backend, decode] of BACKENDS.flatMap((b) => (['auto', 'scan', 'seek'] as const).map((d) => [b, d] as const))) {
      const r = await et.vision.readVideoFrames(path.join(DIR, m.file), { decode, backend });
      expect(r.backend).toBe(backend);
      expect(r.indices).toEqual(m.indices);
      expect(r.frames.shape).toEqual([3, 8, m.height, m.width]);
      expect(r.frames.dtype).toBe('uint8');
      const thwc = r.frames.permute([1, 2, 3, 0]); // (T, H, W, 3) as the reference
      const diff = maxAbsDiff(thwc.slice(1, null, null, 8).slice(2, null, null, 8), sub);
      expect(diff, `${backend} ${decode}: max |ours - PyAV| on frames[:, ::8, ::8]`).toBe(0);
      expect(await sha256(thwc), `${backend} ${decode}: sha256 of all pixels`).toBe(m.framesSha256);
    }
  });

  it.each(CLIPS)('%s: processVideo is within 1e-5 of the original transform', async (k, m) => {
    const out = await et.vision.processVideo(path.join(DIR, m.file));
    expect(out.shape).toEqual([3, 8, 224, 224]);
    expect(out.dtype).toBe('float32');
    const d = Math.max(
      maxAbsDiff(out.slice(2, null, null, 16).slice(3, null, null, 16), await ref(`${k}.out_sub`)),
      maxAbsDiff(out.select(2, 111), await ref(`${k}.out_row`)),
      maxAbsDiff(out.select(3, 113), await ref(`${k}.out_col`)),
    );
    expect(d).toBeLessThan(1e-5);
    console.log(`${k}: processVideo max |diff| ${d.toExponential(2)}; sha256 ${(await sha256(out)) === m.outSha256 ? 'equal' : 'differs'}`);
  });

  it('reads any indices (repeats allowed), in the order asked', async () => {
    const file = path.join(DIR, META.video.v64x48_25fps_300f.file);
    const all = await et.vision.readVideoFrames(file, { indices: [299, 0, 150, 150, 37] });
    expect(all.indices).toEqual([299, 0, 150, 150, 37]);
    const one = async (i: number) => (await et.vision.readVideoFrames(file, { indices: [i], decode: 'seek' })).frames;
    for (const [t, i] of [299, 0, 150, 150, 37].entries()) expect(maxAbsDiff(all.frames.select(1, t), (await one(i)).select(1, 0))).toBe(0);
    // indices as a function of the frame count (one probe): InternVL's 8 segment midpoints
    const seen: number[] = [];
    const bySampler = await et.vision.readVideoFrames(file, {
      indices: (n) => {
        seen.push(n);
        return et.vision.internvlFrameIndices(n, 8);
      },
    });
    expect(seen).toEqual([300]);
    expect(bySampler.indices).toEqual(et.vision.internvlFrameIndices(300, 8));
    expect(maxAbsDiff(bySampler.frames, (await et.vision.readVideoFrames(file, { indices: et.vision.internvlFrameIndices(300, 8) })).frames)).toBe(0);
    await expect(et.vision.readVideoFrames(file, { indices: () => [] })).rejects.toThrow(/indices/);
  });

  it('many indices (up to 4000, 150 separate runs): scanning and seeking agree frame for frame', async () => {
    const file = path.join(DIR, META.video.v64x48_25fps_300f.file);
    const every = await et.vision.readVideoFrames(file, { indices: Array.from({ length: 300 }, (_, i) => i), decode: 'seek' });
    for (const indices of [
      Array.from({ length: 4000 }, (_, i) => (i * 7919) % 300),
      Array.from({ length: 150 }, (_, i) => 2 * i),
      [5, 6, 7, 9, 100, 101, 299],
    ]) {
      const r = await et.vision.readVideoFrames(file, { indices, decode: 'scan' });
      expect(maxAbsDiff(r.frames, every.frames.indexSelect(1, et.tensor(indices, { dtype: 'int64' })))).toBe(0);
    }
  });

  it("a 1-frame video gives 8 copies of frame 0 and a 5-frame one linspace's repeats", async () => {
    const one = await et.vision.readVideoFrames(path.join(DIR, META.video.v60x100_1f.file));
    expect(one.indices).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    for (let t = 1; t < 8; t++) expect(maxAbsDiff(one.frames.select(1, t), one.frames.select(1, 0))).toBe(0);
    const five = await et.vision.readVideoFrames(path.join(DIR, META.video.v60x100_25fps_5f.file));
    expect(five.indices).toEqual([0, 0, 1, 1, 2, 2, 3, 4]);
  });

  it("hflipProb 0.5 with a seed reproduces the original's random flip; 1 flips every clip", async () => {
    const { frames } = await et.vision.readVideoFrames(path.join(DIR, META.video.v97x61_7fps_audio.file));
    const plain = et.vision.videoTransform(frames);
    const flipped = et.vision.videoTransform(frames, { hflipProb: 1 });
    expect(maxAbsDiff(flipped, plain.indexSelect(3, et.arange(223, -1, -1)))).toBe(0);
    const draws = [0, 1, 2, 3, 4, 5, 6, 7].map((seed) => et.data.mulberry32(seed)() < 0.5);
    for (const [seed, flip] of draws.entries()) {
      const y = et.vision.videoTransform(frames, { hflipProb: 0.5, seed });
      expect(maxAbsDiff(y, flip ? flipped : plain)).toBe(0);
    }
    expect(draws.some(Boolean) && !draws.every(Boolean)).toBe(true);
  });

  it('videoTransform: size, mean and std options; uint8 [3, T, H, W] only', () => {
    const x = et.randint(0, 256, [3, 2, 30, 50], { dtype: 'uint8' });
    expect(et.vision.videoTransform(x, { size: 16 }).shape).toEqual([3, 2, 16, 16]);
    const zero = et.vision.videoTransform(x, { size: 30, mean: [0, 0, 0], std: [1, 1, 1] });
    expect(maxAbsDiff(zero, x.div(255).slice(3, 10, 40))).toBeLessThan(1e-6); // 50 → 30 × 50: crop offset round(10) = 10
    expect(() => et.vision.videoTransform(x.select(0, 0))).toThrow(et.EmotorchError);
    expect(() => et.vision.videoTransform(x, { hflipProb: 2 })).toThrow(/hflipProb/);
    expect(() => et.vision.videoTransform(x, { flip: true } as never)).toThrow(/flip/);
  });
});
