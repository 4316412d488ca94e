/**
 * The ECF classifier's batches (utterances, or whole conversations for the context model) and
 * per-utterance embeddings computed once by an emotorch encoder and cached to disk.
 */
import * as fs from 'fs';
import { Tensor, tensor, checkTensor, noGrad } from '../../tensor';
import { EmotorchError, checkInt, checkOptionNames, invalid, renameDeprecated, withDeprecatedAlias } from '../../errors';
import { loadSafetensors, saveSafetensors } from '../../io/safetensors';
import type { EcfItem } from '../../data/datasets/ecf';
import type { Device } from '../../device';

/** Options of {@link ConcatFusionClassifier.collate}. */
export interface ConcatCollateOptions {
  device?: Device; tokenIds?: (item: EcfItem) => number[]; padTokenId?: number; waveform?: (item: EcfItem) => Float32Array | number[];
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
      if (!it || !(it.features instanceof Float32Array) || it.features.length !== d || d === 0) invalid(`an ECF item with ${d || 'its'} features (load the dataset with features)`, `items[${i}]`, it);
      flat.set(it.features, i * d);
    });
    out.features = tensor(flat, { shape: [items.length, d], device });
  }
  if (opts.tokenIds) {
    const pad = checkInt(opts.padTokenId ?? 1, 'padTokenId', 0);
    const seqs = items.map((it, i) => {
      const ids = opts.tokenIds!(it);
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => Number.isSafeInteger(x) && x >= 0)) invalid('a non-empty array of token ids', `tokenIds(items[${i}])`, ids);
      return ids;
    });
    const T = Math.max(...seqs.map((q) => q.length));
    const ids = new Float64Array(items.length * T).fill(pad), mask = new Float64Array(items.length * T);
    seqs.forEach((q, i) => { ids.set(q, i * T); mask.fill(1, i * T, i * T + q.length); });
    out.inputIds = tensor(ids, { shape: [items.length, T], dtype: 'int64', device });
    out.attentionMask = tensor(mask, { shape: [items.length, T], dtype: 'int64', device });
  }
  if (opts.waveform) {
    const clips = items.map((it, i) => {
      const w = opts.waveform!(it);
      if (!(w instanceof Float32Array || (Array.isArray(w) && w.every((x) => typeof x === 'number'))) || w.length === 0) invalid('a non-empty Float32Array of samples', `waveform(items[${i}])`, w);
      if (!(w as ArrayLike<number> as number[]).every(Number.isFinite)) invalid('finite samples', `waveform(items[${i}])`, 'NaN or Infinity');
      return w;
    });
    const S = Math.max(...clips.map((w) => w.length));
    const wave = new Float32Array(items.length * S), mask = new Float64Array(items.length * S);
    clips.forEach((w, i) => { wave.set(w, i * S); mask.fill(1, i * S, i * S + w.length); });
    out.inputValues = tensor(wave, { shape: [items.length, S], device });
    out.audioAttentionMask = tensor(mask, { shape: [items.length, S], dtype: 'int64', device });
  }
  return out;
}

/** {@link ConcatFusionClassifier.collateConversations}'s work (see there). */
export function concatCollateConversations(convs: EcfItem[][], opts: { device?: Device } = {}): ConcatFusionInputs {
  checkOptionNames(opts, ['device'], 'ConcatFusionClassifier.collateConversations');
  if (!Array.isArray(convs) || convs.length === 0 || !convs.every((c) => Array.isArray(c) && c.length > 0)) invalid('a non-empty array of non-empty conversations (arrays of ECF items)', 'conversations', convs);
  const d = convs[0][0]?.features?.length ?? 0;
  const C = convs.length, U = Math.max(...convs.map((c) => c.length));
  const feats = new Float32Array(C * U * d), mask = new Float64Array(C * U), spk = new Float64Array(C * U), labels = new Float64Array(C * U).fill(-100);
  convs.forEach((conv, ci) => {
    const speakers = new Map<string, number>();
    conv.forEach((it, ui) => {
      if (!it || !(it.features instanceof Float32Array) || it.features.length !== d || d === 0) invalid(`an ECF item with ${d || 'its'} features (load the dataset with features)`, `conversations[${ci}][${ui}]`, it);
      const k = ci * U + ui;
      feats.set(it.features, k * d);
      mask[k] = 1;
      if (!speakers.has(it.speaker)) speakers.set(it.speaker, speakers.size);
      spk[k] = speakers.get(it.speaker)!;
      if (it.label >= 0) labels[k] = it.label;
    });
  });
  const device = opts.device ?? 'cpu';
  return withDeprecatedAlias({
    features: tensor(feats, { shape: [C, U, d], device }),
    utteranceAttentionMask: tensor(mask, { shape: [C, U], dtype: 'int64', device }),
    speakerIds: tensor(spk, { shape: [C, U], dtype: 'int64', device }),
    labels: tensor(labels, { dtype: 'int64', device }),
  }, 'utteranceMask', 'utteranceAttentionMask');
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
 * const text = await et.systems.embedUtterances(keys, async (idx) => {
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
      const { lastHiddenState: states, attentionMask: mask } = renameDeprecated(got, ENCODED_RENAMES, 'encode result') as { lastHiddenState: Tensor; attentionMask: Tensor };
      if (checkTensor(states, 'lastHiddenState').ndim !== 3 || states.shape[0] !== idx.length) invalid(`lastHiddenState (${idx.length}, length, d)`, 'encode result', `[${states.shape}]`);
      if (checkTensor(mask, 'attentionMask').shape.join() !== states.shape.slice(0, 2).join()) invalid(`attentionMask [${states.shape.slice(0, 2)}]`, 'encode result', `[${mask.shape}]`);
      const m = mask.to({ dtype: states.dtype }).unsqueeze(2);  // (B, T, 1)
      return states.mul(m).sum(1).div(m.sum(1).clamp(1)).to({ dtype: 'float32', device: 'cpu' });  // (B, d)
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
