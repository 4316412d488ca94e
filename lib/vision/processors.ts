/**
 * LanguageBind's video and image processors, end to end: a file in, the model's `pixel_values`
 * out (one clip or image; stack them for a batch).
 */
import { checkOptionNames, invalid } from '../errors';
import { Tensor, checkTensor } from '../tensor';
import { readVideoFrames, ReadVideoFramesOptions } from './video';
import { readImage, ReadImageOptions } from './image';
import { videoTransform, VideoTransformOptions, clipImageTransform, ClipImageTransformOptions } from './transforms';

/** Options of {@link processVideo}: {@link readVideoFrames}'s and {@link videoTransform}'s. */
export type ProcessVideoOptions = ReadVideoFramesOptions & VideoTransformOptions;

/** Options of {@link processImage}: {@link readImage}'s and {@link clipImageTransform}'s. */
export type ProcessImageOptions = ReadImageOptions & ClipImageTransformOptions;

const READ_VIDEO = ['numFrames', 'indices', 'decode', 'maxPixels', 'timeoutMs', 'backend'] as const;
const VIDEO_TRANSFORM = ['size', 'mean', 'std', 'hflipProb', 'seed', 'rng'] as const;
const READ_IMAGE = ['maxPixels', 'timeoutMs'] as const;
const IMAGE_TRANSFORM = ['size', 'cropSize', 'mean', 'std'] as const;

function pick<T extends object>(o: T, keys: readonly string[]): T {
  return Object.fromEntries(Object.entries(o).filter(([k]) => keys.includes(k))) as T;
}

/**
 * LanguageBind's video processor (decord backend): {@link readVideoFrames} (8 frames at
 * `np.linspace(0, n − 1, 8).astype(int)`) then {@link videoTransform} → float32 [3, 8, 224, 224],
 * one clip of `LanguageBindVideoProcessor(...)["pixel_values"]`.
 * @throws EmotorchError as readVideoFrames and videoTransform.
 * @example
 * const pixelValues = await et.vision.processVideo('dia1_utt3.mp4');          // [3, 8, 224, 224]
 * const batch = et.stack([pixelValues, await et.vision.processVideo('b.mp4')]); // [2, 3, 8, 224, 224]
 */
export async function processVideo(file: string, opts: ProcessVideoOptions = {}): Promise<Tensor> {
  const o = checkOptionNames(opts, [...READ_VIDEO, ...VIDEO_TRANSFORM], 'processVideo options');
  const { frames } = await readVideoFrames(file, pick(o, READ_VIDEO));
  const out = videoTransform(frames, pick(o, VIDEO_TRANSFORM));
  frames.dispose();
  return out;
}

/**
 * LanguageBind's image processor, i.e. transformers' `CLIPImageProcessor` (PIL backend): an image
 * file (decoded by {@link readImage}) or a uint8 [3, H, W] tensor through
 * {@link clipImageTransform} → float32 [3, 224, 224].
 * @throws EmotorchError as readImage and clipImageTransform.
 * @example
 * const pixelValues = await et.vision.processImage('face.png');   // [3, 224, 224]
 */
export async function processImage(image: string | Tensor, opts: ProcessImageOptions = {}): Promise<Tensor> {
  const o = checkOptionNames(opts, [...READ_IMAGE, ...IMAGE_TRANSFORM], 'processImage options');
  if (typeof image === 'string') {
    const img = await readImage(image, pick(o, READ_IMAGE));
    const out = clipImageTransform(img, pick(o, IMAGE_TRANSFORM));
    img.dispose();
    return out;
  }
  if (!(image instanceof Tensor)) invalid('an image file path or a uint8 [3, H, W] Tensor', 'image', image);
  return clipImageTransform(checkTensor(image, 'image'), pick(o, IMAGE_TRANSFORM));
}
