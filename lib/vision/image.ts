/**
 * Still images (png, jpg, bmp, webp, tiff, …) as uint8 RGB tensors, decoded by the `ffmpeg`
 * program (the first frame of the file; ffprobe reads the size first, so an oversized image is
 * refused before it is decoded). PNG and other lossless formats decode to the same pixels PIL
 * gives; JPEG decoders differ slightly from libjpeg's (see the README's LanguageBind section).
 */
import { EmotorchError, checkNumber, checkOptionNames, checkInt, invalid } from '../errors';
import { notAFile } from '../io/file';
import { Tensor, tensor } from '../tensor';
import { DEFAULT_TIMEOUT_MS, runTool, tools } from './tool';
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
  const { ffmpeg, ffprobe } = tools(file, what);
  const run = { file, what, timeoutMs };
  const head = await runTool(ffprobe, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height', '-of', 'csv=p=0', file], { ...run, maxBytes: 4096 });
  const [w, h] = head.toString('latin1').trim().split('\n')[0].split(',').map(Number);
  if (!(Number.isInteger(w) && w > 0 && Number.isInteger(h) && h > 0)) {
    throw new EmotorchError(`cannot ${what} '${file}': it is not an image ffmpeg can read`, 'ERR_FORMAT');
  }
  if (w * h > maxPixels) throw new EmotorchError(`cannot ${what} '${file}': it is ${w}×${h} (${w * h} pixels), more than the ${maxPixels} decoded (maxPixels)`, 'ERR_FORMAT');
  const bytes = w * h * 3;
  const raw = await runTool(ffmpeg, ['-nostdin', '-hide_banner', '-v', 'error', '-i', file, '-map', '0:v:0', '-frames:v', '1',
    '-vf', `scale=${w}:${h}:flags=bicubic+accurate_rnd+full_chroma_int,format=rgb24`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], { ...run, maxBytes: bytes });
  if (raw.length !== bytes) throw new EmotorchError(`cannot ${what} '${file}': ffmpeg decoded no complete ${w}×${h} picture from it`, 'ERR_FORMAT');
  const hwc = tensor(new Uint8Array(raw.buffer, raw.byteOffset, raw.length), { shape: [h, w, 3], dtype: 'uint8' });
  const chw = hwc.permute([2, 0, 1]).contiguous(); // (H, W, 3) → (3, H, W)
  hwc.dispose();
  return chw;
}
