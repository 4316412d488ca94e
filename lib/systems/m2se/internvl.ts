/**
 * M2SE on InternVL2 (the model its scripts fine-tune, and EmoVerse-8B): ms-swift 2.6.1's
 * `internvl2` / `internvl2-phi3` templates over the records, their images as dynamic tiles
 * (`dynamic_preprocess`, max_num 12, or 1 in a record with a video) and their videos as
 * `VIDEO_SEGMENTS` (8) frames of one tile each, all through the vision tower.
 */
import * as fs from 'fs';
import { EmotorchError, checkInt, checkOptionNames, invalid } from '../../errors';
import { Tensor, cat, tensor } from '../../tensor';
import type { Tokenizer } from '../../data/tokenizer';
import { resolveFrom } from '../../data/datasets/base';
import { notAFile } from '../../io/file';
import type { Batch } from '../../train/trainer';
import { readImage } from '../../vision/image';
import { probeVideo, readVideoFrames } from '../../vision/video';
import { internvlTiles, internvlTileCount, internvlFrameIndices } from '../../vision/internvl';
import { InternVL } from '../../nn/internvl';
import { INTERNVL_TEMPLATES, internvlEncode } from '../../data/internvl';
import { IGNORE, M2SE_MAX_LENGTH, M2SE_SYSTEM, M2seRecord } from './data';

/** ms-swift's LoRA targets for InternVL2 (`--lora_target_modules DEFAULT`): every Linear of the LLM and of mlp1, but not the output head, the embeddings or the vision tower. */
export const INTERNVL_LORA_TARGETS = '^(language_model|mlp1)(?!.*(lm_head|output|emb|wte|shared)).*';

/** One medium of a record as the model takes it, in prompt order. */
export interface M2seInternVLMedium {
  kind: 'image' | 'video';
  /** The resolved path. */
  file: string;
  /** Tiles it becomes (an image's grid + thumbnail; a video's frames). */
  tiles: number;
}

/** One record as InternVL2 trains on it. */
export interface M2seInternVLItem {
  ids: number[];
  labels: number[];
  media: M2seInternVLMedium[];
  /** dynamic_preprocess's max_num for the record's images: 1 when it has a video (swift 2.6.1), else maxNum. */
  maxNum: number;
}

/** Options of `m2seInternVLItems` (how ms-swift builds InternVL2 items). */
export interface M2seInternVLOptions {
  /** Folder for relative media paths (default: the working directory). */
  mediaRoot?: string;
  /** Records longer than this, counting each image and frame as one token (swift's pre-expansion length), are dropped and counted. Default 2048. */
  maxLength?: number;
  /** System prompt when a record has none. Default {@link M2SE_SYSTEM}. */
  system?: string;
  /** 'internvl2' (InternLM2, Qwen2) or 'internvl2-phi3' (InternVL2-4B); default from the model's LLM. */
  template?: keyof typeof INTERNVL_TEMPLATES;
  /** Most tiles of an image (swift's MAX_NUM, default 12). */
  maxNum?: number;
  /** Frames of a video (swift's VIDEO_SEGMENTS, default 8). */
  videoSegments?: number;
  /** Records given at inference: no response in the ids. */
  inference?: boolean;
  /** How errors name the records ('records' by default). */
  where?: string;
}

/** The ms-swift template of a model: InternVL2-4B's Phi-3 LLM takes `internvl2-phi3`, the others `internvl2`. */
export function internvlTemplateOf(model: InternVL): keyof typeof INTERNVL_TEMPLATES {
  return model.language_model.config.model_type === 'phi3' ? 'internvl2-phi3' : 'internvl2';
}

/**
 * Builds InternVL2's training (or inference) items from records: each image decoded once here (so
 * that an unreadable one stops the run before any training, naming the record) to count its
 * tiles, each video probed; the ids and labels from {@link internvlEncode} with the model's image
 * token count. Records longer than maxLength before the image tokens go in are dropped and counted
 * (swift's `truncation_strategy delete`).
 * @throws EmotorchError ERR_IO / ERR_FORMAT naming the record and the file (missing, not an
 *   image, no video stream), ERR_INVALID_ARG for bad options or a tokenizer without InternVL's tokens
 * @example
 * const { items } = await et.systems.m2se.m2seInternVLItems(et.systems.m2se.m2seRecords('train.json'), ivl, tok, { mediaRoot: 'data/' });
 */
export async function m2seInternVLItems(
  records: readonly M2seRecord[],
  model: InternVL,
  tokenizer: Tokenizer,
  opts: M2seInternVLOptions = {},
): Promise<{ items: M2seInternVLItem[]; tooLong: number }> {
  checkOptionNames(opts, ['mediaRoot', 'maxLength', 'system', 'template', 'maxNum', 'videoSegments', 'inference', 'where'], 'm2seInternVLItems');
  if (!(model instanceof InternVL)) invalid('an et.systems.m2se.InternVL', 'model', model);
  if (!Array.isArray(records)) invalid('an array of records', 'records', records);
  const root = opts.mediaRoot ?? process.cwd();
  if (typeof root !== 'string') invalid('a folder path', 'mediaRoot', opts.mediaRoot);
  const maxLength = checkInt(opts.maxLength ?? M2SE_MAX_LENGTH, 'maxLength', 2);
  const maxNum = checkInt(opts.maxNum ?? 12, 'maxNum', 1);
  if (maxNum > 64) invalid('at most 64 tiles', 'maxNum', maxNum);
  const segments = checkInt(opts.videoSegments ?? 8, 'videoSegments', 1);
  if (segments > 256) invalid('at most 256 frames', 'videoSegments', segments);
  const template = opts.template ?? internvlTemplateOf(model);
  if (!(template in INTERNVL_TEMPLATES))
    invalid(
      Object.keys(INTERNVL_TEMPLATES)
        .map((k) => `'${k}'`)
        .join(' or '),
      'template',
      template,
    );
  const system = opts.system ?? M2SE_SYSTEM;
  if (typeof system !== 'string') invalid('a string', 'system', system);
  const where = opts.where ?? 'records';
  const size = model.config.force_image_size ?? model.vision_model.config.image_size;
  const items: M2seInternVLItem[] = [];
  let tooLong = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const at = `${where} item ${i}`;
    const files = (list: string[]) =>
      list.map((f) => {
        const file = resolveFrom(root, f);
        const why = notAFile(file);
        if (why) throw new EmotorchError(`${at}: media file '${file}' ${why}`, 'ERR_IO');
        return file;
      });
    const images = files(r.images),
      videos = files(r.videos);
    const recMaxNum = videos.length ? 1 : maxNum;
    const imageTileCounts: number[] = [];
    for (const f of images) {
      let img: Tensor;
      try {
        img = await readImage(f);
      } catch (e) {
        throw new EmotorchError(`${at}: ${(e as Error).message}`, (e as EmotorchError).code ?? 'ERR_FORMAT');
      }
      const [, h, w] = img.shape;
      img.dispose();
      imageTileCounts.push(internvlTileCount(w, h, { imageSize: size, maxNum: recMaxNum }));
    }
    for (const f of videos) {
      try {
        await probeVideo(f);
      } catch (e) {
        throw new EmotorchError(`${at}: ${(e as Error).message}`, (e as EmotorchError).code ?? 'ERR_FORMAT');
      }
    }
    const enc = await internvlEncode(
      tokenizer,
      {
        system: r.system ?? system,
        history: r.history,
        query: r.query,
        ...(opts.inference ? {} : { response: r.response }),
        imageTiles: imageTileCounts,
        videoFrames: videos.map(() => segments),
      },
      { template, numImageToken: model.numImageToken },
    );
    if (!opts.inference && enc.lengthBeforeImages > maxLength) {
      tooLong++;
      continue;
    }
    const media = enc.order.map(({ kind, index }) =>
      kind === 'image' ? { kind, file: images[index], tiles: imageTileCounts[index] } : { kind, file: videos[index], tiles: segments },
    );
    items.push({ ids: enc.inputIds, labels: enc.labels, media, maxNum: recMaxNum });
  }
  return { items, tooLong };
}

/**
 * Decoded tiles kept between batches (epochs read the same files again), keyed by file, its size
 * and mtime and how it was tiled; the least recently used go past `TILE_CACHE_BYTES` (256 MiB).
 */
const tileCache = new Map<string, Tensor>();
let tileCacheBytes = 0;
/** The most bytes of decoded tiles kept (256 MiB). */
export const TILE_CACHE_BYTES = 256 * 2 ** 20;

async function cachedTiles(key: string, make: () => Promise<Tensor>): Promise<Tensor> {
  const hit = tileCache.get(key);
  if (hit) {
    tileCache.delete(key);
    tileCache.set(key, hit);
    return hit;
  }
  const t = await make();
  const bytes = t.numel * 4;
  if (bytes > TILE_CACHE_BYTES) return t;
  tileCache.set(key, t);
  tileCacheBytes += bytes;
  for (const [k, v] of tileCache) {
    if (tileCacheBytes <= TILE_CACHE_BYTES) break;
    tileCache.delete(k);
    tileCacheBytes -= v.numel * 4;
    v.dispose();
  }
  return t;
}

/**
 * The tiles of an item's media in prompt order, (tiles, 3, side, side) float32, or null without media:
 * images through `dynamic_preprocess` + `build_transform`, videos as their sampled frames, one tile
 * each. Decoded tiles are kept (up to `TILE_CACHE_BYTES` (256 MiB)) while the file is unchanged.
 * @throws EmotorchError ERR_IO / ERR_FORMAT naming the file when it cannot be decoded, or gives
 *   another tile count than when the item was made (the file changed)
 */
export async function m2seInternVLPixels(item: M2seInternVLItem, imageSize: number, videoSegments = 8): Promise<Tensor | null> {
  const parts: Tensor[] = [];
  for (const m of item.media) {
    let stamp = '';
    try {
      const st = fs.statSync(m.file);
      stamp = `${st.size}:${st.mtimeMs}`;
    } catch {
      /* readImage / probeVideo name the missing file */
    }
    const key = `${m.kind}|${m.file}|${stamp}|${imageSize}|${m.kind === 'image' ? item.maxNum : videoSegments}`;
    const tiles = await cachedTiles(key, async () => {
      if (m.kind === 'image') {
        const img = await readImage(m.file);
        const { pixelValues } = internvlTiles(img, { imageSize, maxNum: item.maxNum });
        img.dispose();
        return pixelValues;
      }
      const { frames } = await readVideoFrames(m.file, { indices: (n) => internvlFrameIndices(n, videoSegments) });
      const per: Tensor[] = [];
      for (let t = 0; t < frames.shape[1]; t++) {
        const frame = frames.select(1, t).contiguous();
        per.push(internvlTiles(frame, { imageSize, maxNum: 1 }).pixelValues);
        frame.dispose();
      }
      frames.dispose();
      const all = cat(per, 0);
      per.forEach((p) => p.dispose());
      return all;
    });
    if (tiles.shape[0] !== m.tiles)
      throw new EmotorchError(`'${m.file}' now gives ${tiles.shape[0]} tiles, ${m.tiles} when its record was read (did the file change?)`, 'ERR_FORMAT');
    parts.push(tiles);
  }
  return parts.length ? cat(parts, 0) : null; // a new tensor: the cached tiles stay
}

/**
 * Pads items on the right into `{ inputIds, attentionMask, labels, pixelValues }` for
 * `InternVL.forward` (pixelValues: every item's tiles, in order; absent when no item has media).
 */
export async function m2seInternVLCollate(
  items: readonly M2seInternVLItem[],
  opts: { imageSize: number; padId?: number; videoSegments?: number },
): Promise<Batch> {
  checkOptionNames(opts, ['imageSize', 'padId', 'videoSegments'], 'm2seInternVLCollate');
  if (!Array.isArray(items) || items.length === 0) invalid('a non-empty array of items', 'items', items);
  const padId = opts.padId ?? 0;
  const T = Math.max(...items.map((x) => x.ids.length));
  const pad = <V>(a: readonly V[], v: V): V[] => [...a, ...Array<V>(T - a.length).fill(v)];
  const batch: Batch = {
    inputIds: tensor(
      items.map((x) => pad(x.ids, padId)),
      { dtype: 'int64' },
    ),
    attentionMask: tensor(
      items.map((x) =>
        pad(
          x.ids.map(() => 1),
          0,
        ),
      ),
      { dtype: 'int64' },
    ),
    labels: tensor(
      items.map((x) => pad(x.labels, IGNORE)),
      { dtype: 'int64' },
    ),
  };
  const pixels: Tensor[] = [];
  for (const x of items) {
    const p = await m2seInternVLPixels(x, opts.imageSize, opts.videoSegments);
    if (p) pixels.push(p);
  }
  if (pixels.length) {
    batch.pixelValues = pixels.length === 1 ? pixels[0] : cat(pixels, 0);
    if (pixels.length > 1) pixels.forEach((p) => p.dispose());
  }
  return batch;
}

/** Media of records InternVL2 cannot use: audio (it has no audio tower). */
export function internvlUnused(records: readonly M2seRecord[]): { records: number; images: number; videos: number; audios: number } {
  const rep = { records: 0, images: 0, videos: 0, audios: 0 };
  for (const r of records) {
    if (r.audios.length) rep.records++;
    rep.audios += r.audios.length;
  }
  return rep;
}
