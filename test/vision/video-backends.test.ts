/**
 * The in-process video reader (FFmpeg's libraries through the addon) against the ffmpeg / ffprobe
 * executables on files generated here: every container, codec, pixel format, colour range and
 * matrix, odd size and rotation the readers take; the same probe, and the same frames byte for
 * byte, by scanning and by seeking (any indices). The executables' frames are themselves checked
 * against PyAV's by test/vision/video.test.ts. Then what only one of them does (odd angles), what
 * neither may do (seek without presentation times), bounds, descriptors and a fuzz of container bytes.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as et from '../../lib/index';
import { rejectsWith, tmpdir } from '../helpers';
import { DIR, HAVE_FFMPEG, META } from './helpers';

const LIBAV = et.vision.libavAvailable();
const src = (size: string, seconds = 2) => ['-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=25`, '-t', String(seconds)];
const x264 = (params = '') => ['-c:v', 'libx264', ...(params ? ['-x264-params', params] : [])];

/** name → ffmpeg arguments (before the output file). Rotated copies are made from plain ones after. */
const MADE: Record<string, string[]> = {
  'odd.mp4': [...src('97x61'), ...x264('keyint=12'), '-pix_fmt', 'yuv420p'],
  'full-range.mp4': [...src('80x48'), ...x264(), '-pix_fmt', 'yuvj420p'],
  'bt709.mp4': [...src('80x48'), ...x264(), '-pix_fmt', 'yuv420p', '-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709'],
  'ten-bit.mp4': [...src('80x48'), ...x264(), '-pix_fmt', 'yuv420p10le'],
  'p422.mp4': [...src('80x48'), ...x264(), '-pix_fmt', 'yuv422p'],
  'p444.mkv': [...src('80x48'), ...x264(), '-pix_fmt', 'yuv444p'],
  'open-gop.mp4': [...src('64x48', 6), ...x264('keyint=30:open-gop=1:bframes=3')],
  'gops.mkv': [...src('64x48', 6), ...x264('keyint=40')],
  'vp9.webm': [...src('64x48', 4), '-c:v', 'libvpx-vp9', '-g', '40', '-b:v', '100k'],
  'mpeg4.avi': [...src('64x48', 4), '-c:v', 'mpeg4', '-g', '30'],
  'mpeg4-bframes.avi': [...src('64x48'), '-c:v', 'mpeg4', '-bf', '2'],
  'mjpeg.avi': [...src('64x48'), '-c:v', 'mjpeg'],
  'raw.y4m': [...src('64x48', 1), '-pix_fmt', 'yuv420p'],
  'rle.mov': [...src('64x48', 1), '-c:v', 'qtrle'],
  'plain.mp4': [...src('80x48'), ...x264(), '-pix_fmt', 'yuv420p'],
  'plain-odd.mp4': [...src('81x49'), ...x264(), '-pix_fmt', 'yuv420p'],
};
/** rotated copies: name → [source, degrees] */
const ROTATED: Record<string, [string, number]> = {
  'rot90.mp4': ['plain.mp4', 90],
  'rot180.mp4': ['plain.mp4', 180],
  'rot270.mp4': ['plain.mp4', 270],
  'rot90-odd.mp4': ['plain-odd.mp4', 90],
  'rot45.mp4': ['plain.mp4', 45],
  'rot90-422.mp4': ['p422.mp4', 90],
};

describe.skipIf(!HAVE_FFMPEG || !LIBAV)("in-process reader and executables: the same probe and frames (skipped without ffmpeg or FFmpeg's libraries)", () => {
  let dir: string;
  const at = (f: string) => path.join(dir, f);
  const made: string[] = [];
  beforeAll(() => {
    dir = tmpdir();
    const ff = (...args: string[]) => execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    for (const [name, args] of Object.entries(MADE)) {
      ff(...args, at(name));
      made.push(name);
    }
    // the mp4 muxer writes the rotation into the track's matrix (read back as a display matrix)
    for (const [name, [from, deg]] of Object.entries(ROTATED)) ff('-i', at(from), '-c', 'copy', '-metadata:s:v', `rotate=${deg}`, at(name));
  }, 120_000);
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const read = (f: string, o: et.vision.ReadVideoFramesOptions) => et.vision.readVideoFrames(at(f), o);
  const same = (a: et.Tensor, b: et.Tensor) => {
    expect(a.shape).toEqual(b.shape);
    const x = a.dataSync() as Uint8Array,
      y = b.dataSync() as Uint8Array;
    let n = 0;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
    return n;
  };

  it('probeVideo: the same description of every file', async () => {
    for (const f of [...made, ...Object.keys(ROTATED)]) {
      const a = await et.vision.probeVideo(at(f), { backend: 'libav' });
      const b = await et.vision.probeVideo(at(f), { backend: 'ffmpeg' });
      expect(a, f).toEqual(b);
    }
    const r = await et.vision.probeVideo(at('rot90.mp4'));
    expect([r.width, r.height]).toEqual([48, 80]);
  });

  it('8 frames scanning, seeking and by auto: the same bytes as the executables give', async () => {
    for (const f of [...made.filter((m) => m !== 'rle.mov'), 'rot90.mp4', 'rot180.mp4', 'rot270.mp4', 'rot90-odd.mp4']) {
      for (const decode of ['scan', 'seek', 'auto'] as const) {
        if (decode === 'seek' && f === 'mpeg4-bframes.avi') continue;
        const a = await read(f, { decode, backend: 'libav' });
        const b = await read(f, { decode, backend: 'ffmpeg' });
        expect(a.backend).toBe('libav');
        expect(b.backend).toBe('ffmpeg');
        expect(a.indices, f).toEqual(b.indices);
        expect([a.width, a.height, a.frameCount], f).toEqual([b.width, b.height, b.frameCount]);
        expect(same(a.frames, b.frames), `${f} ${decode}: bytes that differ`).toBe(0);
      }
    }
  }, 120_000);

  it('any indices (seeded, repeats and any order): seeking in the process equals one scan of every frame by the executable', async () => {
    let seed = 99;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / (1 << 24);
    for (const f of ['open-gop.mp4', 'gops.mkv', 'vp9.webm', 'mpeg4.avi', 'odd.mp4', 'rot270.mp4']) {
      const all = await read(f, { indices: (n) => Array.from({ length: n }, (_, i) => i), decode: 'scan', backend: 'ffmpeg' });
      const n = all.frameCount;
      for (let t = 0; t < 6; t++) {
        const idx = Array.from({ length: 1 + Math.floor(rnd() * 7) }, () => Math.floor(rnd() * n));
        const r = await read(f, { indices: idx, decode: 'seek', backend: 'libav' });
        const pick = et.tensor(idx, { dtype: 'int64' });
        expect(same(r.frames, all.frames.indexSelect(1, pick)), `${f} frames ${idx}`).toBe(0);
        pick.dispose();
      }
    }
  }, 120_000);

  it("a picture turned by an odd angle, a rotated pixel format the executable converts first, a codec outside the in-process list: auto gives the executable's frames, libav says why not", async () => {
    for (const [f, why] of [
      ['rot45.mp4', /turned by 315 degrees/],
      ['rot90-422.mp4', /pixel format/],
      ['rle.mov', /qtrle video is decoded in a process of its own/],
    ] as const) {
      const a = await read(f, {});
      const b = await read(f, { backend: 'ffmpeg' });
      expect(a.backend).toBe('ffmpeg');
      expect(same(a.frames, b.frames)).toBe(0);
      const e = await rejectsWith(read(f, { backend: 'libav' }), 'ERR_FORMAT', new RegExp(`${f.replace('.', '\\.')}.*only the ffmpeg executable`));
      expect(e.message).toMatch(why);
    }
  });

  it('frames without presentation times (MPEG-4 B-frames in AVI) are never sought: auto scans, seek is refused by both', async () => {
    for (const backend of ['libav', 'ffmpeg'] as const) {
      const r = await read('mpeg4-bframes.avi', { backend });
      expect(r.decode).toBe('scan');
      await rejectsWith(read('mpeg4-bframes.avi', { backend, decode: 'seek' }), 'ERR_FORMAT', /mpeg4-bframes\.avi.*no distinct presentation timestamps/);
    }
  });

  it('each read closes what it opened: no descriptor left behind, also after errors', async () => {
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    await read('gops.mkv', {});
    const before = fds();
    for (let i = 0; i < 20; i++) {
      await read('gops.mkv', { numFrames: 3 });
      await et.vision.probeVideo(at('vp9.webm'));
      await rejectsWith(read('gops.mkv', { indices: [10_000] }), 'ERR_INVALID_ARG', /indices/);
      await rejectsWith(read('gops.mkv', { maxPixels: 100 }), 'ERR_FORMAT', /64×48.*maxPixels/);
    }
    expect(fds()).toBe(before);
  });

  it("a display matrix a hair off a quarter turn (89.99°, 90.01°, 179.99°, −89.99°, 269.6°) or 45° / 89.4°: both readers give the shape and frames ffmpeg's autorotate gives (the angle rounded to a degree, as fftools' get_rotation)", async () => {
    // the track header's matrix rewritten in place: av_display_rotation_get of it is `deg` (what
    // ffprobe prints, truncated, as "rotation"); ffmpeg turns by −round(deg) clockwise
    const withMatrix = (from: string, name: string, deg: number) => {
      const buf = fs.readFileSync(at(from));
      const box = buf.indexOf('tkhd');
      expect(box).toBeGreaterThan(0);
      const off = box + 4 + 4 + (buf[box + 4] === 1 ? 32 : 20) + 16; // version/flags, times and ids, reserved/layer/group/volume
      const r = (deg * Math.PI) / 180;
      const m = [Math.cos(r), -Math.sin(r), 0, Math.sin(r), Math.cos(r), 0, 0, 0, 0].map((v) => Math.trunc(v * 65536));
      m[8] = 1 << 30;
      m.forEach((v, k) => buf.writeInt32BE(v, off + 4 * k));
      fs.writeFileSync(at(name), buf);
    };
    const cases: [number, boolean, boolean][] = [
      // [deg, transposed, in the process]
      [89.99, true, true],
      [90.01, true, true],
      [179.99, false, true],
      [-89.99, true, true],
      [269.6, true, true],
      [45, false, false],
      [89.4, false, false],
    ];
    for (const src of ['plain.mp4']) {
      const { width: w, height: h } = await et.vision.probeVideo(at(src));
      for (const [deg, transposed, inProcess] of cases) {
        const f = `m${deg}-${src}`;
        withMatrix(src, f, deg);
        const b = await read(f, { backend: 'ffmpeg', numFrames: 3 });
        expect([b.width, b.height], `${f} through the executables`).toEqual(transposed ? [h, w] : [w, h]);
        expect(b.frames.shape).toEqual([3, 3, b.height, b.width]);
        const pa = await et.vision.probeVideo(at(f), { backend: 'libav' }),
          pb = await et.vision.probeVideo(at(f), { backend: 'ffmpeg' });
        expect(pa, f).toEqual(pb);
        const a = await read(f, { numFrames: 3 });
        expect(a.backend, f).toBe(inProcess ? 'libav' : 'ffmpeg');
        expect([a.width, a.height], f).toEqual([b.width, b.height]);
        expect(same(a.frames, b.frames), `${f}: bytes that differ`).toBe(0);
      }
    }
  });

  it('damaged files and odd timestamps: both readers pick scan or seek by the same rule and give the same frames (or both refuse)', async () => {
    const ff = (...args: string[]) => execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    // odd timestamps: frames at irregular times (VFR), a shifted start, timestamps past 2^31 ticks
    ff(...src('64x48', 3), '-vf', "setpts='N*N/TB/500'", '-fps_mode', 'passthrough', ...x264('keyint=20'), at('vfr.mkv'));
    ff('-itsoffset', '7.3', '-i', at('gops.mkv'), '-c', 'copy', at('shifted.mp4'));
    ff(...src('64x48', 2), '-vf', "setpts='PTS+100000/TB'", ...x264('keyint=10'), at('late.mkv'));
    const files = ['vfr.mkv', 'shifted.mp4', 'late.mkv'];
    // damaged: seeded byte changes of a clip with B-frames and keyframes every 40 (gops.mkv: 150
    // frames, which `auto` once sought in the process and scanned through the executables)
    const sources = ['gops.mkv', 'open-gop.mp4', 'mpeg4.avi', 'vp9.webm'];
    let seed = 4242;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8) / (1 << 24);
    for (let v = 0; v < 20; v++) {
      const from = sources[v % sources.length];
      const buf = fs.readFileSync(at(from));
      for (let e = 1 + Math.floor(rnd() * 12); e > 0; e--) {
        const i = rnd() < 0.6 ? Math.floor(rnd() * Math.min(1024, buf.length)) : Math.floor(rnd() * buf.length);
        buf[i] = rnd() < 0.5 ? Math.floor(rnd() * 256) : buf[i] ^ (1 << Math.floor(rnd() * 8));
      }
      const name = `damaged${v}${path.extname(from)}`;
      fs.writeFileSync(at(name), buf);
      files.push(name);
    }
    const outcome = async (f: string, backend: 'libav' | 'ffmpeg', numFrames: number, decode: 'auto' | 'seek' = 'auto') => {
      try {
        const r = await read(f, { numFrames, backend, decode, timeoutMs: 15_000 });
        return { r, key: `${r.decode} ${r.indices}` };
      } catch (e) {
        expect(e).toBeInstanceOf(et.EmotorchError);
        return { key: `refused ${(e as et.EmotorchError).code}` };
      }
    };
    let read2 = 0;
    for (const f of files) {
      for (const numFrames of f.startsWith('damaged') ? [4] : [4, 8]) {
        const a = await outcome(f, 'libav', numFrames),
          b = await outcome(f, 'ffmpeg', numFrames);
        expect(a.key.replace(/ERR_\w+/, 'E'), f).toBe(b.key.replace(/ERR_\w+/, 'E'));
        if (a.r && b.r) {
          expect(same(a.r.frames, b.r.frames), `${f}, ${numFrames} frames: bytes that differ`).toBe(0);
          read2++;
        }
      }
    }
    expect(read2).toBeGreaterThan(10);
    // sought on purpose: each frame the first at or after the middle of it and the one before, by
    // both (vfr.mkv's and late.mkv's timestamps do not each name one frame: both refuse to seek them)
    for (const f of ['vfr.mkv', 'shifted.mp4', 'late.mkv', 'gops.mkv']) {
      const a = await outcome(f, 'libav', 6, 'seek'),
        b = await outcome(f, 'ffmpeg', 6, 'seek');
      expect(a.key, f).toBe(b.key);
      expect(a.key, f).toMatch(f.endsWith('.mkv') && f !== 'gops.mkv' ? /^refused ERR_FORMAT/ : /^seek/);
      if (a.r && b.r) expect(same(a.r.frames, b.r.frames), `${f} sought: bytes that differ`).toBe(0);
    }
  }, 120_000);

  it('fuzz: 1000 seeded byte mutations of mp4, mkv, avi and webm files in the process: frames or an EmotorchError, never a crash', async () => {
    const sources = ['gops.mkv', 'mpeg4.avi', 'vp9.webm'].map((f) => fs.readFileSync(at(f)));
    sources.push(fs.readFileSync(path.join(DIR, META.video.v60x100_25fps_5f.file)));
    let s = 4242;
    const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) / (1 << 24);
    const outcomes: Record<string, number> = {};
    for (let v = 0; v < 1000; v++) {
      const src = sources[v % sources.length];
      const buf = Buffer.from(src);
      const edits = 1 + Math.floor(next() * 12);
      for (let e = 0; e < edits; e++) {
        // mostly in the first KB (headers, indices), some anywhere
        const i = next() < 0.6 ? Math.floor(next() * Math.min(1024, buf.length)) : Math.floor(next() * buf.length);
        buf[i] = next() < 0.5 ? Math.floor(next() * 256) : buf[i] ^ (1 << Math.floor(next() * 8));
      }
      const file = at(`fuzz${v}${['.mkv', '.avi', '.webm', '.mp4'][v % 4]}`);
      fs.writeFileSync(file, buf);
      try {
        const r = await et.vision.readVideoFrames(file, { numFrames: 4, timeoutMs: 15_000, backend: 'libav' });
        expect(r.frames.shape).toEqual([3, 4, r.height, r.width]);
        outcomes.ok = (outcomes.ok ?? 0) + 1;
        r.frames.dispose();
      } catch (e) {
        expect(e, `variant ${v}`).toBeInstanceOf(et.EmotorchError);
        const code = (e as et.EmotorchError).code;
        expect(['ERR_FORMAT', 'ERR_IO'], `variant ${v}: ${(e as Error).message}`).toContain(code);
        expect((e as Error).message).toContain(path.basename(file));
        outcomes[code] = (outcomes[code] ?? 0) + 1;
      }
      fs.rmSync(file);
    }
    console.log(`in-process fuzz outcomes: ${JSON.stringify(outcomes)}`);
    expect(outcomes.ok ?? 0).toBeGreaterThan(0);
  }, 300_000);
});
