/**
 * The SemEval-2024 Task 3 seed classifier: per-utterance embeddings of any set of modalities,
 * concatenated, into one `Linear(Σd, 7, bias=false)` scoring the 7 ECF emotions; trained with
 * cross-entropy. Embeddings come from the ECF dataset's embedding files
 * ({@link EcfDataset} `features`) or from {@link embedUtterances} (an emotorch encoder,
 * mean-pooled over the mask, cached to disk).
 */
import * as fs from 'fs';
import { Module, ModuleOptions } from '../nn/module';
import { Linear } from '../nn/layers';
import { Tensor, tensor, cat, checkTensor, noGrad } from '../tensor';
import { EmotorchError, checkInt, invalid } from '../errors';
import { crossEntropy } from '../functional';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import type { EcfItem } from '../data/datasets/ecf';
import type { Device } from '../device';

export interface ConcatFusionConfig {
  /** Embedding size per modality, in concatenation order (e.g. `{ text: 768, video: 768 }`). */
  modalities: Record<string, number>;
  /** Classes. Default 7 (the ECF emotions). */
  num_labels?: number;
  /** Default false, as the seed. */
  bias?: boolean;
}

export interface ConcatFusionInputs {
  /** (batch, Σd) already concatenated embeddings; or give `embeddings` per modality. */
  features?: Tensor;
  /** modality → (batch, d) embeddings, concatenated in the config's order. */
  embeddings?: Record<string, Tensor>;
  /** (batch) int64 class ids; −1 (no label) is ignored by the loss. */
  labels?: Tensor | null;
}

/**
 * One linear layer over concatenated per-utterance embeddings (parameter `classifier.weight`).
 * @example
 * const ds = await et.data.EcfDataset.fromFile('train.json', { features: { files: { text: 'text.safetensors', video: 'video.safetensors' } } });
 * const model = et.systems.ConcatFusionClassifier.create({ modalities: { text: 768, video: 768 } });
 * const { loss, logits } = await model.forward(et.systems.ConcatFusionClassifier.collate(items));
 */
export class ConcatFusionClassifier extends Module {
  readonly config: Required<ConcatFusionConfig>;
  readonly classifier: Linear;
  private constructor(config: Required<ConcatFusionConfig>, opts: ModuleOptions) {
    super();
    this.config = config;
    const inSize = Object.values(config.modalities).reduce((a, b) => a + b, 0);
    this.classifier = this.registerModule('classifier', Linear.create({ in_features: inSize, out_features: config.num_labels, bias: config.bias }, opts));
  }

  /**
   * @throws EmotorchError ERR_INVALID_ARG for a bad config.
   */
  static create(config: ConcatFusionConfig, opts: ModuleOptions = {}): ConcatFusionClassifier {
    if (!config || typeof config !== 'object' || !config.modalities || typeof config.modalities !== 'object') invalid('{ modalities: { name: size }, num_labels?, bias? }', 'ConcatFusionClassifier config', config);
    const mods = Object.entries(config.modalities);
    if (mods.length === 0) invalid('at least one modality', 'modalities', config.modalities);
    for (const [m, d] of mods) checkInt(d, `modalities.${m}`, 1);
    if (config.bias !== undefined && typeof config.bias !== 'boolean') invalid('a boolean', 'bias', config.bias);
    return new ConcatFusionClassifier({ modalities: { ...config.modalities }, num_labels: checkInt(config.num_labels ?? 7, 'num_labels', 2), bias: config.bias ?? false }, opts);
  }

  /** Size of the concatenated embedding. */
  get inputSize(): number { return this.classifier.config.in_features; }

  /**
   * @returns `{ logits }` (batch, num_labels), and the mean cross-entropy `loss` over labelled
   *   items when `labels` are given
   * @throws EmotorchError ERR_INVALID_ARG for missing modalities or wrong sizes.
   */
  async forward(inputs: ConcatFusionInputs): Promise<{ loss?: Tensor; logits: Tensor }> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor) invalid('{ features } or { embeddings }', 'ConcatFusionClassifier inputs', inputs);
    let x: Tensor;
    if (inputs.features) {
      x = checkTensor(inputs.features, 'features');
    } else {
      const e = inputs.embeddings;
      if (!e || typeof e !== 'object') invalid('features (batch, Σd) or embeddings { modality: (batch, d) }', 'inputs', inputs);
      x = cat(Object.entries(this.config.modalities).map(([m, d]) => {
        const t = e[m];
        if (!t) invalid(`a tensor for modality '${m}'`, `embeddings.${m}`, t);
        if (checkTensor(t, `embeddings.${m}`).ndim !== 2 || t.shape[1] !== d) invalid(`a tensor (batch, ${d})`, `embeddings.${m}`, `[${t.shape}]`);
        return t;
      }), 1);
    }
    if (x.ndim !== 2 || x.shape[1] !== this.inputSize) invalid(`a tensor (batch, ${this.inputSize})`, 'features', `[${x.shape}]`);
    const logits = await this.classifier.forward(x);
    if (!inputs.labels) return { logits };
    if (checkTensor(inputs.labels, 'labels').shape.join() !== String(x.shape[0])) invalid(`shape [${x.shape[0]}]`, 'labels', `[${inputs.labels.shape}]`);
    return { loss: crossEntropy(logits, inputs.labels.long(), { ignoreIndex: -1 }), logits };
  }

  /**
   * Batches ECF items that carry `features` (the dataset's concatenated embeddings).
   * @throws EmotorchError ERR_INVALID_ARG for an empty batch or items without features.
   */
  static collate(items: EcfItem[], opts: { device?: Device } = {}): ConcatFusionInputs {
    if (!Array.isArray(items) || items.length === 0) invalid('a non-empty array of ECF items', 'items', items);
    const d = items[0]?.features?.length ?? 0;
    const flat = new Float32Array(items.length * d);
    items.forEach((it, i) => {
      if (!it || !(it.features instanceof Float32Array) || it.features.length !== d || d === 0) invalid(`an ECF item with ${d || 'its'} features (load the dataset with features)`, `items[${i}]`, it);
      flat.set(it.features, i * d);
    });
    const device = opts.device ?? 'cpu';
    return {
      features: tensor(flat, { shape: [items.length, d], device }),
      labels: tensor(Float64Array.from(items.map((it) => it.label)), { dtype: 'int64', device }),
    };
  }
}

/**
 * Per-utterance embeddings from an emotorch encoder, mean-pooled over the mask, computed once and
 * cached in a safetensors file (tensor names are the given keys, as the ECF embedding files):
 * a later call with the same file reads the cache and never runs the encoder.
 * @param keys one name per utterance (e.g. `${conversationId}_${utteranceId}`)
 * @param encode runs the encoder on a slice of utterances: (batch, length, d) states and their
 *   (batch, length) mask (1 = real)
 * @param opts `cacheFile` (safetensors), `batchSize` (default 16)
 * @returns key → Float32Array embedding
 * @throws EmotorchError ERR_IO when the cache cannot be written; ERR_FORMAT when it lacks a key.
 * @example
 * const text = await et.systems.embedUtterances(keys, async (idx) => {
 *   const enc = await tok.encodeBatch(idx.map((i) => items[i].text), { padding: true });
 *   const { lastHiddenState } = await roberta.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask });
 *   return { states: lastHiddenState, mask: enc.attentionMask };
 * }, { cacheFile: 'cache/roberta.safetensors' });
 */
export async function embedUtterances(
  keys: string[],
  encode: (indices: number[]) => Promise<{ states: Tensor; mask: Tensor }>,
  opts: { cacheFile: string; batchSize?: number },
): Promise<Map<string, Float32Array>> {
  if (!Array.isArray(keys) || keys.length === 0 || !keys.every((k) => typeof k === 'string')) invalid('a non-empty array of key strings', 'keys', keys);
  if (new Set(keys).size !== keys.length) invalid('distinct keys', 'keys', keys);
  if (typeof encode !== 'function') invalid('a function', 'encode', encode);
  if (!opts || typeof opts.cacheFile !== 'string') invalid('{ cacheFile }', 'embedUtterances options', opts);
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
      const { states, mask } = await encode(idx);
      if (checkTensor(states, 'states').ndim !== 3 || states.shape[0] !== idx.length) invalid(`states (${idx.length}, length, d)`, 'encode result', `[${states.shape}]`);
      if (checkTensor(mask, 'mask').shape.join() !== states.shape.slice(0, 2).join()) invalid(`mask [${states.shape.slice(0, 2)}]`, 'encode result', `[${mask.shape}]`);
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
