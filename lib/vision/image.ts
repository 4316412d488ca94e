/**
 * Still images (png, jpg, bmp, webp, tiff, …) as uint8 RGB tensors, decoded by the `ffmpeg`
 * program (the first frame of the file; ffprobe reads the size first, so an oversized image is
 * refused before it is decoded). PNG and other lossless formats decode to the same pixels PIL
 * gives. A JPEG (4:2:0, 4:2:2, 4:4:4 or grey) is decoded by ffmpeg to its YCbCr planes, and the
 * rest is done here as libjpeg (PIL's decoder) does it: "fancy" (triangular) chroma upsampling
 * and its fixed-point YCbCr → RGB, in tensor ops. What remains is the IDCT: ffmpeg's and
 * libjpeg's differ by ±1 in about 1% of samples, so pixels differ from PIL's by at most a few
 * levels (3 on the fixture; ffmpeg's own YUV → RGB, which interpolates chroma differently, was 54
 * there, at sharp colour edges). Where PIL's `convert('RGB')` is known to go wrong, this does
 * not follow it: a 16-bit grey PNG is scaled to 8 bits (PIL clips it at 255, a white picture).
 * Lossy WebP is decoded by ffmpeg, whose chroma upsampling is not libwebp's: 5 levels from PIL's
 * on average on a picture of per-pixel colour noise, less on photographs.
 */
import * as fs from 'fs';
import { EmotorchError, checkNumber, checkOptionNames, checkInt, invalid } from '../errors';
import { notAFile } from '../io/file';
import { Tensor, tensor, cat, stack } from '../tensor';
import { DEFAULT_TIMEOUT_MS, mediaInput, runTool, sniffMedia, tools } from '../io/media';
import { MAX_FRAME_PIXELS } from './video';

/** Options of {@link readImage}. */
export interface ReadImageOptions {
  /** Refuse images of more pixels than this before decoding (default 8192 · 8192). */
  maxPixels?: number;
  /** Kill ffprobe / ffmpeg after this many milliseconds (default 120000). */
  timeoutMs?: number;
}

/**
 * Reads an image file as uint8 RGB, shape [3, H, W] (grey and palette images expanded to RGB,
 * alpha dropped, as PIL's `convert('RGB')`), decoded by ffmpeg.
 * @throws EmotorchError ERR_IO when the file is missing, ffmpeg/ffprobe is not on PATH or a run
 *   passes `timeoutMs`; ERR_FORMAT naming the file when it is not an image ffmpeg can decode or
 *   declares more than `maxPixels` pixels.
 * @example
 * const img = await et.vision.readImage('face.jpg');   // uint8 [3, H, W]
 */
export async function readImage(file: string, opts: ReadImageOptions = {}): Promise<Tensor> {
  const o = checkOptionNames(opts, ['maxPixels', 'timeoutMs'], 'readImage options');
  const what = 'read the image';
  if (typeof file !== 'string' || !file) invalid('a file path', 'file', file);
  const why = notAFile(file);
  if (why) throw new EmotorchError(`cannot ${what} '${file}': it ${why}`, 'ERR_IO');
  const maxPixels = o.maxPixels === undefined ? MAX_FRAME_PIXELS : checkInt(o.maxPixels, 'maxPixels', 1);
  const timeoutMs = o.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : checkNumber(o.timeoutMs, 'timeoutMs', 1);
  const format = sniffMedia(file, 'image', what);
  // The size the header declares, checked before ffmpeg reads anything.
  const declared = declaredSize(file);
  if (declared && declared[0] * declared[1] > maxPixels) throw tooLarge(file, what, declared[0], declared[1], maxPixels);
  const { ffmpeg, ffprobe } = tools(file, what);
  const run = { file, what, timeoutMs };
  const input = mediaInput(file, format);
  const head = await runTool(
    ffprobe,
    ['-v', 'error', ...input, '-select_streams', 'v:0', '-show_entries', 'stream=width,height,codec_name,pix_fmt', '-of', 'default=noprint_wrappers=1'],
    { ...run, maxBytes: 4096 },
  );
  const field: Record<string, string> = {};
  for (const line of head.toString('latin1').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && !(line.slice(0, eq) in field)) field[line.slice(0, eq)] = line.slice(eq + 1).trim();
  }
  const [codec, w, h, pixFmt] = [field.codec_name, Number(field.width), Number(field.height), field.pix_fmt];
  if (!(Number.isInteger(w) && w > 0 && Number.isInteger(h) && h > 0)) {
    throw new EmotorchError(`cannot ${what} '${file}': it is not an image ffmpeg can read`, 'ERR_FORMAT');
  }
  if (w * h > maxPixels) throw tooLarge(file, what, w, h, maxPixels);
  const decode = (pix: string, bytes: number) =>
    runTool(
      ffmpeg,
      [
        '-nostdin',
        '-hide_banner',
        '-v',
        'error',
        ...input,
        '-map',
        '0:v:0',
        '-frames:v',
        '1',
        ...(pix === 'rgb24' ? ['-vf', `scale=${w}:${h}:flags=bicubic+accurate_rnd+full_chroma_int,format=rgb24`] : []),
        '-f',
        'rawvideo',
        '-pix_fmt',
        pix,
        'pipe:1',
      ],
      { ...run, maxBytes: bytes },
    );
  const incomplete = () => new EmotorchError(`cannot ${what} '${file}': ffmpeg decoded no complete ${w}×${h} picture from it`, 'ERR_FORMAT');
  const layout = codec === 'mjpeg' ? JPEG_LAYOUTS[pixFmt] : undefined;
  if (layout) {
    const [sx, sy] = layout;
    const cw = Math.ceil(w / sx),
      ch = Math.ceil(h / sy);
    const bytes = w * h + (sx ? 2 * cw * ch : 0);
    const raw = await decode(pixFmt, bytes);
    if (raw.length !== bytes) throw incomplete();
    return libjpegRgb(raw, w, h, sx, sy);
  }
  const bytes = w * h * 3;
  const raw = await decode('rgb24', bytes);
  if (raw.length !== bytes) throw incomplete();
  const hwc = tensor(new Uint8Array(raw.buffer, raw.byteOffset, raw.length), { shape: [h, w, 3], dtype: 'uint8' });
  const chw = hwc.permute([2, 0, 1]).contiguous(); // (H, W, 3) → (3, H, W)
  hwc.dispose();
  return chw;
}

function tooLarge(file: string, what: string, w: number, h: number, maxPixels: number): EmotorchError {
  return new EmotorchError(`cannot ${what} '${file}': it is ${w}×${h} (${w * h} pixels), more than the ${maxPixels} decoded (maxPixels)`, 'ERR_FORMAT');
}

/**
 * The width and height a PNG, GIF, BMP or JPEG header declares (null when it is none of these or
 * says nothing readable in its first 64 KiB): checked against `maxPixels` before ffmpeg runs, and
 * the only size known of pictures too large for ffmpeg to report.
 */
function declaredSize(file: string): [number, number] | null {
  let b: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      b = Buffer.alloc(65536);
      b = b.subarray(0, fs.readSync(fd, b, 0, b.length, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47 && b.toString('latin1', 12, 16) === 'IHDR') return [b.readUInt32BE(16), b.readUInt32BE(20)];
  if (b.length >= 10 && b.toString('latin1', 0, 4) === 'GIF8') return [b.readUInt16LE(6), b.readUInt16LE(8)];
  if (b.length >= 26 && b.toString('latin1', 0, 2) === 'BM') return [Math.abs(b.readInt32LE(18)), Math.abs(b.readInt32LE(22))];
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    // markers up to the first start-of-frame (SOF0–SOF15 but DHT 0xC4, JPG 0xC8, DAC 0xCC)
    for (let i = 2; i + 9 < b.length;) {
      if (b[i] !== 0xff) return null;
      const m = b[i + 1];
      if (m === 0xff) {
        i++;
        continue;
      }
      if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) return [b.readUInt16BE(i + 7), b.readUInt16BE(i + 5)];
      i += 2 + b.readUInt16BE(i + 2);
    }
  }
  return null;
}

/** JPEG pixel formats decoded as libjpeg does: chroma subsampling [x, y] (0: grey, no chroma). */
const JPEG_LAYOUTS: Record<string, [number, number]> = {
  yuvj420p: [2, 2],
  yuvj422p: [2, 1],
  yuvj444p: [1, 1],
  gray: [0, 0],
};

/**
 * libjpeg's "fancy" upsampling by 2 along the last dimension of integer samples: each output is
 * (3 · nearer + farther + bias) / div, floored, edges replicated (jdsample.c h2v1 / h2v2).
 */
function fancyUp(x: Tensor, biasEven: number, biasOdd: number, div: number): Tensor {
  const n = x.shape[x.ndim - 1];
  const d = x.ndim - 1;
  const left = cat([x.slice(d, 0, 1), x.slice(d, 0, n - 1)], d);
  const right = cat([x.slice(d, 1, n), x.slice(d, n - 1, n)], d);
  const three = x.mul(3);
  const even = three.add(left).add(biasEven).div(div).floor();
  const odd = three.add(right).add(biasOdd).div(div).floor();
  return stack([even, odd], -1).reshape([...x.shape.slice(0, d), 2 * n]);
}

/** One chroma plane (ch, cw) upsampled as libjpeg does and cut to (h, w). */
function upsample(c: Tensor, sx: number, sy: number, h: number, w: number): Tensor {
  if (sx === 1 && sy === 1) return c;
  let out: Tensor;
  if (sy === 2) {
    // h2v2: vertical sums 3 · this row + the nearer neighbour row, then horizontal (÷ 16)
    const rows = c.shape[0];
    const up = cat([c.slice(0, 0, 1), c.slice(0, 0, rows - 1)], 0);
    const down = cat([c.slice(0, 1, rows), c.slice(0, rows - 1, rows)], 0);
    const sums = stack([c.mul(3).add(up), c.mul(3).add(down)], 1).reshape([2 * rows, c.shape[1]]);
    out = fancyUp(sums, 8, 7, 16);
  } else {
    out = fancyUp(c, 1, 2, 4); // h2v1
  }
  return out.slice(0, 0, h).slice(1, 0, w);
}

/** libjpeg's planes → RGB: upsampling and jdcolor.c's fixed-point YCbCr → RGB (16 fraction bits). */
function libjpegRgb(raw: Buffer, w: number, h: number, sx: number, sy: number): Tensor {
  const plane = (off: number, ph: number, pw: number) =>
    tensor(new Uint8Array(raw.buffer, raw.byteOffset + off, ph * pw), { shape: [ph, pw], dtype: 'uint8' }).to({ dtype: 'float64' });
  const y = plane(0, h, w);
  if (!sx) return stack([y, y, y]).to({ dtype: 'uint8' });
  const cw = Math.ceil(w / sx),
    ch = Math.ceil(h / sy);
  const cb = upsample(plane(w * h, ch, cw), sx, sy, h, w).sub(128);
  const cr = upsample(plane(w * h + cw * ch, ch, cw), sx, sy, h, w).sub(128);
  const fix = (v: number) => Math.trunc(v * 65536 + 0.5);
  const half = 1 << 15,
    one = 65536;
  const r = y.add(cr.mul(fix(1.402)).add(half).div(one).floor());
  const g = y.add(
    cb
      .mul(-fix(0.34414))
      .add(half)
      .add(cr.mul(-fix(0.71414)))
      .div(one)
      .floor(),
  );
  const b = y.add(cb.mul(fix(1.772)).add(half).div(one).floor());
  return stack([r, g, b]).clamp(0, 255).to({ dtype: 'uint8' });
}
