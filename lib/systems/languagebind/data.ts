/**
 * ECF 2.0 utterances as the LanguageBind classifier reads them: the clip `dia{D}utt{U}.mp4` of
 * each utterance in a video folder (its audio from the `.wav` beside it, as the team's code, or
 * from the clip's own audio track), the text through the CLIP tokenizer (77 tokens, padded), the
 * team's label order; and the towers' embeddings computed once and cached to disk, for training the
 * head alone on frozen towers.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EmotorchError, checkInt, checkOptionNames, invalid } from '../../errors';
import { Tensor, noGrad, stack, tensor } from '../../tensor';
import { readSafetensorsHeader, saveSafetensors } from '../../io/safetensors';
import { readAudio } from '../../audio/ffmpeg';
import { languageBindAudio, LanguageBindAudioOptions } from '../../audio/languagebind';
import { processVideo, ProcessVideoOptions } from '../../vision/processors';
import type { Tokenizer } from '../../data/tokenizer';
import type { EcfItem } from '../../data/datasets/ecf';
import type { Device } from '../../device';
import { concatCollate } from '../concat/data';
import { LANGUAGEBIND_ECF_LABELS, LanguageBind, LanguageBindKey, LanguageBindClassifierInputs } from './model';

/** The clip of an ECF utterance: its `video_name`, or `dia{D}utt{U}.mp4`, in `videoDir`. */
export function ecfVideoFile(videoDir: string, item: EcfItem): string {
  if (typeof videoDir !== 'string' || !videoDir) invalid('a folder path', 'videoDir', videoDir);
  const name = item.videoName ?? `dia${item.conversationId}utt${item.utteranceId}.mp4`;
  if (path.isAbsolute(name) || name.split(/[\\/]/).includes('..')) invalid('a file name inside the video folder', `video_name of ${item.conversationId}_${item.utteranceId}`, name);
  return path.join(videoDir, name);
}

/** The team's audio file (`video_name` with `.wav` for `.mp4`) when it exists, else the clip itself (its audio track, through ffmpeg). */
export function ecfAudioFile(videoDir: string, item: EcfItem): string {
  const video = ecfVideoFile(videoDir, item);
  const wav = video.replace(/\.mp4$/i, '.wav');
  return wav !== video && fs.existsSync(wav) ? wav : video;
}

/** An ECF emotion's index in the team's label order ({@link LANGUAGEBIND_ECF_LABELS}); -100 for none. */
export function languageBindLabel(emotion: string | null): number {
  if (emotion === null) return -100;
  const i = (LANGUAGEBIND_ECF_LABELS as readonly string[]).indexOf(emotion);
  if (i < 0) invalid(`one of ${LANGUAGEBIND_ECF_LABELS.join(', ')}`, 'emotion', emotion);
  return i;
}

/** Options of {@link languageBindCollate}. */
export interface LanguageBindCollateOptions {
  /** The folder of the ECF clips (`dia{D}utt{U}.mp4`, and the team's `.wav` files if any). */
  videoDir: string;
  /** The modalities to prepare (those of the classifier). */
  modalities: LanguageBindKey[];
  /** The CLIP tokenizer (`et.data.Tokenizer.fromFile('LanguageBind_Video_FT/')`), for 'language'. */
  tokenizer?: Tokenizer;
  /** `et.vision.processVideo` options (default: 8 frames, 224², no flip). */
  video?: ProcessVideoOptions;
  /** `et.audio.languageBindAudio` options (default: 112 × 1036, random chunks of long clips). */
  audio?: LanguageBindAudioOptions;
  device?: Device;
}

function checkModalities(m: unknown): LanguageBindKey[] {
  const known = ['video', 'audio', 'image', 'language'];
  if (!Array.isArray(m) || !m.length || m.some((x) => !known.includes(x))) invalid(`a non-empty list from ${known.join(', ')}`, 'modalities', m);
  if (m.includes('image')) invalid('video, audio or language (ECF utterances have no image)', 'modalities', m);
  return m as LanguageBindKey[];
}

async function tokens(tokenizer: Tokenizer | undefined, items: EcfItem[]): Promise<{ inputIds: Tensor; attentionMask: Tensor }> {
  if (!tokenizer || typeof (tokenizer as Tokenizer).encodeBatch !== 'function') invalid('a Tokenizer (the CLIP tokenizer of a LanguageBind folder)', 'tokenizer', tokenizer);
  const enc = await tokenizer!.encodeBatch(items.map((it) => it.text), { padding: 'max_length', maxLength: 77, truncation: true, returnTensors: true });
  return { inputIds: enc.inputIds as Tensor, attentionMask: enc.attentionMask as Tensor };
}

/** The towers' inputs of a batch: each item's clip processed, its audio "image", its tokens. */
async function towerInputs(items: EcfItem[], o: LanguageBindCollateOptions, mods: LanguageBindKey[]): Promise<LanguageBindClassifierInputs> {
  const out: LanguageBindClassifierInputs = {};
  const dev = (t: Tensor) => (o.device && o.device !== 'cpu' ? t.to({ device: o.device }) : t);
  if (mods.includes('video')) {
    const clips = await Promise.all(items.map((it) => processVideo(ecfVideoFile(o.videoDir, it), o.video ?? {})));
    out.video = dev(stack(clips));
  }
  if (mods.includes('audio')) {
    const images: Tensor[] = [];
    for (const it of items) {
      const rate = o.audio?.sampleRate ?? 16000;
      // resampled as LanguageBind's processor does (torchaudio.functional.resample), unless asked otherwise
      const wav = await readAudio(ecfAudioFile(o.videoDir, it), { sampleRate: rate, resample: o.audio?.resample ?? { method: 'torchaudio' } });
      images.push(await languageBindAudio(wav.samples, o.audio ?? {}));
    }
    out.audio = dev(stack(images));
  }
  if (mods.includes('language')) {
    const t = await tokens(o.tokenizer, items);
    out.inputIds = dev(t.inputIds);
    out.attentionMask = dev(t.attentionMask);
  }
  return out;
}

/**
 * A batch for {@link LanguageBindClassifier} on its towers (fine-tuning, or LoRA on the towers):
 * `{ video, audio, inputIds, attentionMask, labels }` for the ECF items, labels in the team's order.
 * @throws EmotorchError ERR_IO naming a missing clip, ERR_FORMAT for one ffmpeg cannot decode
 * @example
 * dataCollator: (items) => et.systems.languageBindCollate(items, { videoDir: 'train/', modalities: ['video', 'audio', 'language'], tokenizer }),
 */
export async function languageBindCollate(items: EcfItem[], opts: LanguageBindCollateOptions): Promise<LanguageBindClassifierInputs> {
  if (!Array.isArray(items) || !items.length) invalid('a non-empty array of ECF items', 'items', items);
  const o = checkOptionNames(opts, ['videoDir', 'modalities', 'tokenizer', 'video', 'audio', 'device'], 'languageBindCollate options');
  const mods = checkModalities(o.modalities);
  const out = await towerInputs(items, o, mods);
  out.labels = tensor(items.map((it) => languageBindLabel(it.emotion)), { dtype: 'int64', device: o.device });
  return out;
}

/**
 * A batch for {@link LanguageBindClassifier} on cached embeddings: `{ features, labels }` from ECF
 * items loaded with the embedding files of {@link languageBindEmbeddings} (`EcfDataset` `features`,
 * `order` = the classifier's modalities), labels in the team's order.
 */
export function languageBindCachedCollate(items: EcfItem[], opts: { device?: Device } = {}): LanguageBindClassifierInputs {
  checkOptionNames(opts, ['device'], 'languageBindCachedCollate');
  const { features } = concatCollate(items, { device: opts.device });
  return { features, labels: tensor(items.map((it) => languageBindLabel(it.emotion)), { dtype: 'int64', device: opts.device }) };
}

/** Options of {@link languageBindEmbeddings}. */
export interface LanguageBindEmbeddingsOptions extends LanguageBindCollateOptions {
  /** Folder for the files (`languagebind_<modality>.safetensors`); made if missing. */
  outDir: string;
  /** Items per forward (default 8). */
  batchSize?: number;
  /** Called after each batch with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Each item's LanguageBind embedding per modality, computed once with the towers frozen (eval, no
 * grad) and saved as one safetensors file per modality with tensor names `<conversation>_<utterance>`
 * (what `et.data.EcfDataset`'s `features` reads). A file that already holds every item is reused,
 * not recomputed; files are written whole at the end (a failure leaves no partial file).
 * @returns modality → file, for `EcfDataset.fromFile(json, { features: { files, order } })`
 * @example
 * const files = await et.systems.languageBindEmbeddings(lb, items, { videoDir, tokenizer, modalities: ['video', 'audio', 'language'], outDir: 'cache/' });
 * const ds = await et.data.EcfDataset.fromFile('train.json', { features: { files, order: ['video', 'audio', 'language'] } });
 */
export async function languageBindEmbeddings(binder: LanguageBind, items: EcfItem[], opts: LanguageBindEmbeddingsOptions): Promise<Record<string, string>> {
  const o = checkOptionNames(opts, ['videoDir', 'modalities', 'tokenizer', 'video', 'audio', 'device', 'outDir', 'batchSize', 'onProgress'], 'languageBindEmbeddings options');
  if (!(binder instanceof LanguageBind)) invalid('a LanguageBind', 'binder', binder);
  if (!Array.isArray(items) || !items.length) invalid('a non-empty array of ECF items', 'items', items);
  const mods = checkModalities(o.modalities);
  for (const m of mods) if (m !== 'language' && !binder.modalities.includes(m as never)) invalid(`a modality the binder has a tower for (${binder.modalities.join(', ')}, language)`, 'modalities', m);
  if (typeof o.outDir !== 'string' || !o.outDir) invalid('a folder path', 'outDir', o.outDir);
  const batch = checkInt(o.batchSize ?? 8, 'batchSize', 1);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') invalid('a function (done, total) => void', 'onProgress', o.onProgress);
  const key = (it: EcfItem) => `${it.conversationId}_${it.utteranceId}`;
  const keys = items.map(key);
  if (new Set(keys).size !== keys.length) invalid('items with distinct conversation and utterance ids', 'items', 'repeated ids');
  try {
    fs.mkdirSync(o.outDir, { recursive: true });
  } catch (e) {
    throw new EmotorchError(`languageBindEmbeddings: cannot create '${o.outDir}': ${(e as Error).message}`, 'ERR_IO');
  }
  const files = Object.fromEntries(mods.map((m) => [m, path.join(o.outDir, `languagebind_${m}.safetensors`)]));
  const missing: LanguageBindKey[] = [];
  for (const m of mods) {
    let have = false;
    if (fs.existsSync(files[m])) {
      try {
        const names = new Set(readSafetensorsHeader(files[m]).entries.keys());
        have = keys.every((k) => names.has(k));
      } catch { have = false; }
    }
    if (!have) missing.push(m);
  }
  if (!missing.length) return files;
  const out = new Map(missing.map((m) => [m, new Map<string, Tensor>()]));
  const wasTraining = binder.training;
  binder.eval();
  try {
    for (let i = 0; i < items.length; i += batch) {
      const chunk = items.slice(i, i + batch);
      const inputs = await towerInputs(chunk, o, missing);
      const e = await noGrad(() => binder.forward(inputs));
      for (const m of missing) {
        const t = e[m]!.to({ dtype: 'float32', device: 'cpu' });
        chunk.forEach((it, j) => out.get(m)!.set(key(it), t.select(0, j).contiguous()));
      }
      o.onProgress?.(Math.min(i + batch, items.length), items.length);
    }
  } finally {
    binder.train(wasTraining);
  }
  for (const m of missing) await saveSafetensors(files[m], out.get(m)!);
  return files;
}
