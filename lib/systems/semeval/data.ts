/**
 * The SemEval classifiers' data. The concat-fusion classifier's batches (utterances, or whole
 * conversations for the context model) and per-utterance embeddings computed once by an emotorch
 * encoder and cached to disk. ECF 2.0 utterances as the LanguageBind classifier reads them: the
 * clip `dia{D}utt{U}.mp4` of each utterance in a video folder (its audio from the `.wav` beside it,
 * as the team's code, or from the clip's own audio track), the text through the CLIP tokenizer (77
 * tokens, padded), the team's label order; and the towers' embeddings computed once and cached to
 * disk, for training the head alone on frozen towers.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, tensor, checkTensor, noGrad, stack } from '../../tensor';
import { EmotorchError, checkInt, checkOptionNames, invalid, renameDeprecated, withDeprecatedAlias } from '../../errors';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../../io/safetensors';
import { readAudio } from '../../audio/ffmpeg';
import { languageBindAudio, LanguageBindAudioOptions } from '../../audio/languagebind';
import { processVideo, ProcessVideoOptions } from '../../vision/processors';
import { LanguageBind } from '../../nn/languagebind';
import type { LanguageBindInputs, LanguageBindKey } from '../../nn/languagebind';
import type { Tokenizer } from '../../data/tokenizer';
import type { EcfItem } from '../../data/datasets/ecf';
import type { Device } from '../../device';

/** Options of {@link ConcatFusionClassifier.collate}. */
export interface ConcatCollateOptions {
  device?: Device;
  tokenIds?: (item: EcfItem) => number[];
  padTokenId?: number;
  waveform?: (item: EcfItem) => Float32Array | number[];
}

/** {@link ConcatFusionClassifier.collate}'s work (see there). */
export function concatCollate(items: EcfItem[], opts: ConcatCollateOptions = {}): ConcatFusionInputs {
  if (!Array.isArray(items) || items.length === 0) invalid('a non-empty array of ECF items', 'items', items);
  if (!opts || typeof opts !== 'object') invalid('an options object', 'collate options', opts);
  checkOptionNames(opts, ['device', 'tokenIds', 'padTokenId', 'waveform'], 'ConcatFusionClassifier.collate');
  if (opts.tokenIds !== undefined && typeof opts.tokenIds !== 'function') invalid('a function (item) => token ids', 'tokenIds', opts.tokenIds);
  if (opts.waveform !== undefined && typeof opts.waveform !== 'function') invalid('a function (item) => Float32Array of samples', 'waveform', opts.waveform);
  const d = items[0]?.features?.length ?? 0;
  const device = opts.device ?? 'cpu';
  const out: ConcatFusionInputs = {
    labels: tensor(Float64Array.from(items.map((it) => (it?.label >= 0 ? it.label : -100))), { dtype: 'int64', device }),
  };
  if (d > 0 || !(opts.tokenIds || opts.waveform)) {
    const flat = new Float32Array(items.length * d);
    items.forEach((it, i) => {
      if (!it || !(it.features instanceof Float32Array) || it.features.length !== d || d === 0)
        invalid(`an ECF item with ${d || 'its'} features (load the dataset with features)`, `items[${i}]`, it);
      flat.set(it.features, i * d);
    });
    out.features = tensor(flat, { shape: [items.length, d], device });
  }
  if (opts.tokenIds) {
    const pad = checkInt(opts.padTokenId ?? 1, 'padTokenId', 0);
    const seqs = items.map((it, i) => {
      const ids = opts.tokenIds!(it);
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => Number.isSafeInteger(x) && x >= 0))
        invalid('a non-empty array of token ids', `tokenIds(items[${i}])`, ids);
      return ids;
    });
    const T = Math.max(...seqs.map((q) => q.length));
    const ids = new Float64Array(items.length * T).fill(pad),
      mask = new Float64Array(items.length * T);
    seqs.forEach((q, i) => {
      ids.set(q, i * T);
      mask.fill(1, i * T, i * T + q.length);
    });
    out.inputIds = tensor(ids, { shape: [items.length, T], dtype: 'int64', device });
    out.attentionMask = tensor(mask, { shape: [items.length, T], dtype: 'int64', device });
  }
  if (opts.waveform) {
    const clips = items.map((it, i) => {
      const w = opts.waveform!(it);
      if (!(w instanceof Float32Array || (Array.isArray(w) && w.every((x) => typeof x === 'number'))) || w.length === 0)
        invalid('a non-empty Float32Array of samples', `waveform(items[${i}])`, w);
      if (!(w as ArrayLike<number> as number[]).every(Number.isFinite)) invalid('finite samples', `waveform(items[${i}])`, 'NaN or Infinity');
      return w;
    });
    const S = Math.max(...clips.map((w) => w.length));
    const wave = new Float32Array(items.length * S),
      mask = new Float64Array(items.length * S);
    clips.forEach((w, i) => {
      wave.set(w, i * S);
      mask.fill(1, i * S, i * S + w.length);
    });
    out.inputValues = tensor(wave, { shape: [items.length, S], device });
    out.audioAttentionMask = tensor(mask, { shape: [items.length, S], dtype: 'int64', device });
  }
  return out;
}

/** {@link ConcatFusionClassifier.collateConversations}'s work (see there). */
export function concatCollateConversations(convs: EcfItem[][], opts: { device?: Device } = {}): ConcatFusionInputs {
  checkOptionNames(opts, ['device'], 'ConcatFusionClassifier.collateConversations');
  if (!Array.isArray(convs) || convs.length === 0 || !convs.every((c) => Array.isArray(c) && c.length > 0))
    invalid('a non-empty array of non-empty conversations (arrays of ECF items)', 'conversations', convs);
  const d = convs[0][0]?.features?.length ?? 0;
  const C = convs.length,
    U = Math.max(...convs.map((c) => c.length));
  const feats = new Float32Array(C * U * d),
    mask = new Float64Array(C * U),
    spk = new Float64Array(C * U),
    labels = new Float64Array(C * U).fill(-100);
  convs.forEach((conv, ci) => {
    const speakers = new Map<string, number>();
    conv.forEach((it, ui) => {
      if (!it || !(it.features instanceof Float32Array) || it.features.length !== d || d === 0)
        invalid(`an ECF item with ${d || 'its'} features (load the dataset with features)`, `conversations[${ci}][${ui}]`, it);
      const k = ci * U + ui;
      feats.set(it.features, k * d);
      mask[k] = 1;
      if (!speakers.has(it.speaker)) speakers.set(it.speaker, speakers.size);
      spk[k] = speakers.get(it.speaker)!;
      if (it.label >= 0) labels[k] = it.label;
    });
  });
  const device = opts.device ?? 'cpu';
  return withDeprecatedAlias(
    {
      features: tensor(feats, { shape: [C, U, d], device }),
      utteranceAttentionMask: tensor(mask, { shape: [C, U], dtype: 'int64', device }),
      speakerIds: tensor(spk, { shape: [C, U], dtype: 'int64', device }),
      labels: tensor(labels, { dtype: 'int64', device }),
    },
    'utteranceMask',
    'utteranceAttentionMask',
  );
}

/** What {@link embedUtterances}' `encode` returns. */
export type EncodedUtterances =
  | { /** (batch, length, d) */ lastHiddenState: Tensor; /** (batch, length): 1 = real token. */ attentionMask: Tensor }
  | {
      /** @deprecated use `lastHiddenState`; accepted until the next release. */
      states: Tensor;
      /** @deprecated use `attentionMask` (1 = keep); accepted until the next release. */
      mask: Tensor;
    };

const ENCODED_RENAMES = { states: 'lastHiddenState', mask: 'attentionMask' } as const;

/**
 * Per-utterance embeddings from an emotorch encoder, mean-pooled over the mask, computed once and
 * cached in a safetensors file (tensor names are the given keys, as the ECF embedding files):
 * a later call with the same file reads the cache and never runs the encoder.
 * @param keys one name per utterance (e.g. `${conversationId}_${utteranceId}`)
 * @param encode runs the encoder on a slice of utterances: `{ lastHiddenState, attentionMask }`,
 *   the (batch, length, d) states and their (batch, length) mask (1 = real token). The older
 *   `{ states, mask }` is a deprecated spelling, accepted until the next release.
 * @param opts `cacheFile` (safetensors), `batchSize` (default 16)
 * @returns key → Float32Array embedding
 * @throws EmotorchError ERR_IO when the cache cannot be written; ERR_FORMAT when it lacks a key;
 *   ERR_INVALID_ARG when `encode` returns a name in both spellings or a bad shape.
 * @example
 * const text = await et.systems.semeval.embedUtterances(keys, async (idx) => {
 *   const enc = await tok.encodeBatch(idx.map((i) => items[i].text), { padding: true });
 *   const { lastHiddenState } = await roberta.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask });
 *   return { lastHiddenState, attentionMask: enc.attentionMask };
 * }, { cacheFile: 'cache/roberta.safetensors' });
 */
export async function embedUtterances(
  keys: string[],
  encode: (indices: number[]) => Promise<EncodedUtterances>,
  opts: { cacheFile: string; batchSize?: number },
): Promise<Map<string, Float32Array>> {
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'string')) invalid('a non-empty array of key strings', 'keys', keys);
  if (new Set(keys).size !== keys.length) invalid('distinct keys', 'keys', keys);
  if (typeof encode !== 'function') invalid('a function', 'encode', encode);
  if (!opts || typeof opts.cacheFile !== 'string') invalid('{ cacheFile }', 'embedUtterances options', opts);
  checkOptionNames(opts, ['cacheFile', 'batchSize'], 'embedUtterances');
  const bs = checkInt(opts.batchSize ?? 16, 'batchSize', 1);
  const out = new Map<string, Float32Array>();
  if (fs.existsSync(opts.cacheFile)) {
    const { tensors } = await loadSafetensors(opts.cacheFile);
    for (const k of keys) {
      const t = tensors.get(k);
      if (!t) throw new EmotorchError(`embedding cache '${opts.cacheFile}' has no '${k}' (delete it to recompute)`, 'ERR_FORMAT');
      out.set(k, t.to({ dtype: 'float32' }).dataSync() as Float32Array);
    }
    return out;
  }
  const save = new Map<string, Tensor>();
  for (let s = 0; s < keys.length; s += bs) {
    const idx = Array.from({ length: Math.min(bs, keys.length - s) }, (_, i) => s + i);
    const pooled = await noGrad(async () => {
      const got = await encode(idx);
      if (!got || typeof got !== 'object' || got instanceof Tensor) invalid('{ lastHiddenState, attentionMask }', 'encode result', got);
      const { lastHiddenState: states, attentionMask: mask } = renameDeprecated(got, ENCODED_RENAMES, 'encode result') as {
        lastHiddenState: Tensor;
        attentionMask: Tensor;
      };
      if (checkTensor(states, 'lastHiddenState').ndim !== 3 || states.shape[0] !== idx.length)
        invalid(`lastHiddenState (${idx.length}, length, d)`, 'encode result', `[${states.shape}]`);
      if (checkTensor(mask, 'attentionMask').shape.join() !== states.shape.slice(0, 2).join())
        invalid(`attentionMask [${states.shape.slice(0, 2)}]`, 'encode result', `[${mask.shape}]`);
      const m = mask.to({ dtype: states.dtype }).unsqueeze(2); // (B, T, 1)
      return states.mul(m).sum(1).div(m.sum(1).clamp(1)).to({ dtype: 'float32', device: 'cpu' }); // (B, d)
    });
    idx.forEach((i, j) => {
      const row = pooled.select(0, j).contiguous();
      save.set(keys[i], row);
      out.set(keys[i], row.dataSync() as Float32Array);
    });
  }
  await saveSafetensors(opts.cacheFile, save);
  return out;
}

/** Named inputs of `ConcatFusionClassifier.forward` (what its `collate` builds). */
export interface ConcatFusionInputs {
  /**
   * (batch, Σd) concatenated embeddings, one utterance per row; with `context`, (conversations,
   * utterances, Σd). Or give `embeddings` per modality (without context).
   */
  features?: Tensor;
  /** modality → (batch, d) embeddings, concatenated in the config's order. */
  embeddings?: Record<string, Tensor>;
  /** With context: (conversations, utterances) 1 = utterance, 0 = padding. */
  utteranceAttentionMask?: Tensor;
  /**
   * With context: the same as `utteranceAttentionMask`.
   * @deprecated use `utteranceAttentionMask` (1 = utterance); accepted until the next release.
   */
  utteranceMask?: Tensor;
  /** With context: (conversations, utterances) speaker ids. */
  speakerIds?: Tensor;
  /**
   * With `textEncoder`: (batch, length) token ids and their `attentionMask`; `features` /
   * `embeddings` then hold only the other modalities.
   */
  inputIds?: Tensor;
  attentionMask?: Tensor;
  /**
   * With `audioEncoder`: (batch, samples) 16 kHz waveforms, zero-padded, and their
   * `audioAttentionMask` (1 = real sample; without it every sample counts).
   */
  inputValues?: Tensor;
  audioAttentionMask?: Tensor;
  /** int64 class ids, one per utterance (with context: flattened conversations × utterances); −100 is ignored. */
  labels?: Tensor | null;
}

/** The SemEval team's label order (their `label2id`): index → ECF emotion. */
export const LANGUAGEBIND_ECF_LABELS = ['surprise', 'fear', 'sadness', 'neutral', 'joy', 'anger', 'disgust'] as const;

/** Named inputs of `LanguageBindClassifier.forward`: the towers' inputs and the labels. */
export interface LanguageBindClassifierInputs extends LanguageBindInputs {
  /** (batch, embedDim · k): cached embeddings concatenated in `modalities` order, instead of the towers' inputs. */
  features?: Tensor | null;
  /** (batch) int64 class ids; -100 is ignored. */
  labels?: Tensor | null;
}

/** The clip of an ECF utterance: its `video_name`, or `dia{D}utt{U}.mp4`, in `videoDir`. */
export function ecfVideoFile(videoDir: string, item: EcfItem): string {
  if (typeof videoDir !== 'string' || !videoDir) invalid('a folder path', 'videoDir', videoDir);
  const name = item.videoName ?? `dia${item.conversationId}utt${item.utteranceId}.mp4`;
  if (path.isAbsolute(name) || name.split(/[\\/]/).includes('..'))
    invalid('a file name inside the video folder', `video_name of ${item.conversationId}_${item.utteranceId}`, name);
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
  if (!tokenizer || typeof (tokenizer as Tokenizer).encodeBatch !== 'function')
    invalid('a Tokenizer (the CLIP tokenizer of a LanguageBind folder)', 'tokenizer', tokenizer);
  const enc = await tokenizer!.encodeBatch(
    items.map((it) => it.text),
    { padding: 'max_length', maxLength: 77, truncation: true, returnTensors: true },
  );
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
 * dataCollator: (items) => et.systems.semeval.languageBindCollate(items, { videoDir: 'train/', modalities: ['video', 'audio', 'language'], tokenizer }),
 */
export async function languageBindCollate(items: EcfItem[], opts: LanguageBindCollateOptions): Promise<LanguageBindClassifierInputs> {
  if (!Array.isArray(items) || !items.length) invalid('a non-empty array of ECF items', 'items', items);
  const o = checkOptionNames(opts, ['videoDir', 'modalities', 'tokenizer', 'video', 'audio', 'device'], 'languageBindCollate options');
  const mods = checkModalities(o.modalities);
  const out = await towerInputs(items, o, mods);
  out.labels = tensor(
    items.map((it) => languageBindLabel(it.emotion)),
    { dtype: 'int64', device: o.device },
  );
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
  return {
    features,
    labels: tensor(
      items.map((it) => languageBindLabel(it.emotion)),
      { dtype: 'int64', device: opts.device },
    ),
  };
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
 * const files = await et.systems.semeval.languageBindEmbeddings(lb, items, { videoDir, tokenizer, modalities: ['video', 'audio', 'language'], outDir: 'cache/' });
 * const ds = await et.data.EcfDataset.fromFile('train.json', { features: { files, order: ['video', 'audio', 'language'] } });
 */
export async function languageBindEmbeddings(binder: LanguageBind, items: EcfItem[], opts: LanguageBindEmbeddingsOptions): Promise<Record<string, string>> {
  const o = checkOptionNames(
    opts,
    ['videoDir', 'modalities', 'tokenizer', 'video', 'audio', 'device', 'outDir', 'batchSize', 'onProgress'],
    'languageBindEmbeddings options',
  );
  if (!(binder instanceof LanguageBind)) invalid('a LanguageBind', 'binder', binder);
  if (!Array.isArray(items) || !items.length) invalid('a non-empty array of ECF items', 'items', items);
  const mods = checkModalities(o.modalities);
  for (const m of mods)
    if (m !== 'language' && !binder.modalities.includes(m as never))
      invalid(`a modality the binder has a tower for (${binder.modalities.join(', ')}, language)`, 'modalities', m);
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
      } catch {
        have = false;
      }
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
