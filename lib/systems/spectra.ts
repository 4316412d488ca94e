/**
 * SPECTRA (AlibabaResearch/DAMO-ConvAI spectra/, checkpoint publicstaticvo/SPECTRA-base):
 * WavLM + RoBERTa fused by extra RoBERTa layers, with the previous dialogue turn on both sides.
 * `ATModel` is {@link SpectraModel}; `ATForSequenceClassification` is {@link Spectra}. Key names
 * are the original's (`model.audio_encoder.*`, `model.text_encoder.*`,
 * `model.token_type_embeddings.weight`, `model.fused_encoder.N.*`, `head.0.*`, `head.2.*`).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Module, NativeModule, ModuleOptions, lockConfig } from '../nn/module';
import { RobertaModel, RobertaConfig, RobertaLayers, ROBERTA_DEFAULTS, SPEC as ROBERTA_SPEC } from '../nn/roberta';
import { WavLMConfig, WAVLM_DEFAULTS, SPEC as WAVLM_SPEC } from '../nn/wavlm';
import { Linear, Embedding } from '../nn/layers';
import { PretrainedOptions, Rename, loadCheckpoint, renameKeys, resolveConfig, withOverrides } from '../nn/pretrained';
import { Tensor, tensor, cat, zeros, ones, checkTensor } from '../tensor';
import { EmotorchError, checkInt, invalid, checkOptionNames } from '../errors';
import { readJsonObjectSync } from '../io/file';
import { crossEntropy, l1Loss } from '../functional';
import { saveSafetensors } from '../io/safetensors';
import type { SpectraItem, SpectraTask } from '../data/datasets/spectra';
import type { Dataset } from '../data/datasets/base';
import type { Device } from '../device';
import { AdamW, ParamGroup } from '../train/optim';
import { Trainer, TrainOutput, EvalPrediction } from '../train/trainer';
import type { TrainingArgumentsInit } from '../train/args';
import { accuracy, balancedAccuracy, f1 } from '../metrics/classification';
import { mmsa } from '../metrics/mmsa';

/** Output size per task (the original's main.py LABEL_NUM). */
export const SPECTRA_LABEL_NUM: Record<SpectraTask, number> = { mosi: 1, mosei: 1, mintrec: 20, iemocap: 6 };

/** `audio_config.json`: an HF WavLMConfig plus SPECTRA's fields. */
export interface SpectraAudioConfig extends WavLMConfig {
  /** Add RoBERTa's token-type embeddings (segment ids) to the audio frames. Default true (pre-training always did). */
  multi_turn: boolean;
  /** One clip per sample: prepend `audio_cls`. Default true (pre-training inputs always start with it). */
  has_audio_cls: boolean;
  /** Clip length in samples that the collator pads and cuts to. Default 160000 (10 s at 16 kHz). */
  max_length: number;
}

/** `text_config.json`: an HF RobertaConfig plus SPECTRA's fields. */
export interface SpectraTextConfig extends RobertaConfig {
  /** RoBERTa layers over the concatenated text and audio states. Default 1. */
  num_fused_layers: number;
  /** Longest token sequence (history cut from the left). Default 512. */
  max_length: number;
}

export interface SpectraConfig {
  audio: SpectraAudioConfig;
  text: SpectraTextConfig;
  /** Head outputs: 1 = regression with L1 loss (MOSI, MOSEI), more = classes with cross-entropy. */
  num_class: number;
  /**
   * One clip per sample with `has_audio_cls`: the original gives `audio_cls` attention mask 0, so
   * it is never attended (bug in original). Default false: emotorch attends it. True reproduces
   * the original.
   */
  mask_audio_cls: boolean;
  /**
   * The original's frame mask counts one frame more than the conv stack outputs per clip (a padding
   * frame, or the clip's last frame twice over when it fills the batch). The released weights
   * were pre-trained with it, so the default is true; false counts exactly.
   */
  extra_audio_frame: boolean;
}

export type SpectraConfigInput = {
  audio?: Partial<SpectraAudioConfig> | Record<string, unknown>;
  text?: Partial<SpectraTextConfig> | Record<string, unknown>;
  num_class?: number;
  task?: SpectraTask;
  mask_audio_cls?: boolean;
  extra_audio_frame?: boolean;
};

/** The collated batch {@link Spectra.collate} makes and {@link Spectra.forward} takes. */
export interface SpectraInputs {
  /** (clips, samples) float waveforms at 16 kHz: one clip per sample, or two (history, then current). */
  inputValues: Tensor;
  /** (clips, samples): 1 = real sample, 0 = padding. */
  audioAttentionMask: Tensor;
  /** (batch, length) RoBERTa token ids: history tokens, then the current turn without its `<s>`. */
  inputIds: Tensor;
  /** (batch, length): 1 = token, 0 = padding. */
  attentionMask: Tensor;
  /** (batch, length) turn ids: 0 history, 1 current (RoBERTa token types); optional. */
  tokenTypeIds?: Tensor | null;
  /** (batch) float targets (1 output) or int64 classes. */
  labels?: Tensor | null;
}

export interface SpectraOutputs {
  /** Mean L1 (1 output) or cross-entropy, when labels are given. */
  loss?: Tensor;
  /** (batch) for 1 output, else (batch, num_class). */
  logits: Tensor;
}

const AUDIO_EXTRA: Pick<SpectraAudioConfig, 'multi_turn' | 'has_audio_cls' | 'max_length'> = { multi_turn: true, has_audio_cls: true, max_length: 160000 };
const TEXT_EXTRA: Pick<SpectraTextConfig, 'num_fused_layers' | 'max_length'> = { num_fused_layers: 1, max_length: 512 };

/** A fully defaulted, checked SPECTRA config. @throws EmotorchError ERR_INVALID_ARG naming the field. */
export function resolveSpectraConfig(given: SpectraConfigInput = {}): SpectraConfig {
  if (!given || typeof given !== 'object' || Array.isArray(given)) invalid('a config object', 'SPECTRA config', given);
  const a = (given.audio ?? {}) as Record<string, unknown>;
  const t = (given.text ?? {}) as Record<string, unknown>;
  const audio = {
    ...resolveConfig('SPECTRA audio', WAVLM_DEFAULTS, WAVLM_SPEC, a),
    ...resolveConfig('SPECTRA audio', AUDIO_EXTRA, { multi_turn: 'bool', has_audio_cls: 'bool', max_length: 'posint' }, a),
  };
  const text = {
    ...resolveConfig('SPECTRA text', { ...ROBERTA_DEFAULTS, type_vocab_size: 2 }, ROBERTA_SPEC, t),
    ...resolveConfig('SPECTRA text', TEXT_EXTRA, { num_fused_layers: 'nonneg', max_length: 'posint' }, t),
  };
  if (!Array.isArray(audio.conv_dim) || audio.conv_dim.length === 0) invalid('a non-empty array of positive integers', 'SPECTRA audio config.conv_dim', audio.conv_dim);
  for (const k of ['conv_dim', 'conv_kernel', 'conv_stride'] as const) {
    const v = audio[k];
    if (!Array.isArray(v) || v.length !== audio.conv_dim.length || !v.every((x) => Number.isInteger(x) && x > 0)) invalid(`${audio.conv_dim.length} positive integers`, `SPECTRA audio config.${k}`, v);
  }
  if (!['group', 'layer'].includes(audio.feat_extract_norm)) invalid("'group' or 'layer'", 'SPECTRA audio config.feat_extract_norm', audio.feat_extract_norm);
  if (audio.hidden_size % audio.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', 'SPECTRA audio config.hidden_size', audio.hidden_size);
  if (audio.hidden_size % audio.num_conv_pos_embedding_groups !== 0) invalid('a multiple of num_conv_pos_embedding_groups', 'SPECTRA audio config.hidden_size', audio.hidden_size);
  if (text.hidden_size % text.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', 'SPECTRA text config.hidden_size', text.hidden_size);
  if (audio.hidden_size !== text.hidden_size) invalid(`the text hidden_size (${text.hidden_size})`, 'SPECTRA audio config.hidden_size', audio.hidden_size);
  if (text.pad_token_id < 0 || text.pad_token_id >= text.vocab_size) invalid(`a token id in 0..${text.vocab_size - 1}`, 'SPECTRA text config.pad_token_id', text.pad_token_id);
  if (text.type_vocab_size < 2) invalid('at least 2 (turn ids and audio segments use RoBERTa\'s token-type table)', 'SPECTRA text config.type_vocab_size', text.type_vocab_size);
  let numClass = given.num_class;
  if (given.task !== undefined) {
    if (!(given.task in SPECTRA_LABEL_NUM)) invalid("'mosi', 'mosei', 'iemocap' or 'mintrec'", 'task', given.task);
    if (numClass !== undefined && numClass !== SPECTRA_LABEL_NUM[given.task]) invalid(`${SPECTRA_LABEL_NUM[given.task]} for task ${given.task}`, 'num_class', numClass);
    numClass = SPECTRA_LABEL_NUM[given.task];
  }
  if (numClass === undefined) throw new EmotorchError('SPECTRA: give num_class (1 = regression) or task (the original never sets num_class itself)', 'ERR_INVALID_ARG');
  checkInt(numClass, 'num_class', 1);
  for (const k of ['mask_audio_cls', 'extra_audio_frame'] as const) {
    if (given[k] !== undefined && typeof given[k] !== 'boolean') invalid('a boolean', k, given[k]);
  }
  return { audio, text, num_class: numClass, mask_audio_cls: given.mask_audio_cls ?? false, extra_audio_frame: given.extra_audio_frame ?? true };
}

/**
 * SPECTRA's audio encoder (`WavLMForMultiTurn`): WavLM whose frames are arranged per sample as
 * `[audio_cls, history, audio_sep, current]` (two clips) or `[audio_cls?, current]` (one clip),
 * with segment ids through a given token-type table. Parameters: WavLM's names plus `audio_cls`,
 * `audio_sep`.
 */
export class SpectraAudioEncoder extends NativeModule {
  declare readonly config: SpectraConfig;
  constructor(config: SpectraConfig, opts: ModuleOptions = {}) {
    super('spectra_audio', { ...config.audio, has_audio_cls: config.audio.has_audio_cls, mask_audio_cls: config.mask_audio_cls, extra_frame: config.extra_audio_frame }, opts);
    lockConfig(this, 'SPECTRA', config);
  }
  /** Frames the conv stack gives a clip of `samples`. */
  framesFor(samples: number): number {
    let n = samples;
    this.config.audio.conv_kernel.forEach((k, i) => { n = Math.floor((n - k) / this.config.audio.conv_stride[i]) + 1; });
    return n;
  }
  /**
   * @param inputs.inputValues (clips, samples); `batchSize` samples hold one or two clips each
   * @param inputs.tokenTypeTable (2, hidden) segment embeddings, or null
   * @returns hidden states (batch, frames', hidden) and their attention mask (batch, frames') int64
   */
  async forward(inputs: { inputValues: Tensor; attentionMask: Tensor; batchSize: number; tokenTypeTable?: Tensor | null }): Promise<{ lastHiddenState: Tensor; attentionMask: Tensor }> {
    const [h, m] = await this.run([inputs.inputValues, inputs.attentionMask, tensor([inputs.batchSize], { dtype: 'int64' }).reshape([]), inputs.tokenTypeTable ?? null]);
    return { lastHiddenState: h!, attentionMask: m! };
  }
}

/** `ATModel`: the two encoders, the modality embeddings and the fused layers. */
export class SpectraModel extends Module {
  declare readonly config: SpectraConfig;
  readonly audio_encoder: SpectraAudioEncoder;
  readonly text_encoder: RobertaModel;
  readonly token_type_embeddings: Embedding;
  readonly fused_encoder: RobertaLayers;
  constructor(config: SpectraConfig, opts: ModuleOptions = {}, addPoolingLayer = true) {
    super();
    lockConfig(this, 'SPECTRA', config);
    this.audio_encoder = this.registerModule('audio_encoder', new SpectraAudioEncoder(config, opts));
    this.text_encoder = this.registerModule('text_encoder', RobertaModel.create({ ...config.text, add_pooling_layer: addPoolingLayer }, opts));
    this.token_type_embeddings = this.registerModule('token_type_embeddings', Embedding.create({ num_embeddings: 2, embedding_dim: config.text.hidden_size }, opts));
    this.fused_encoder = this.registerModule('fused_encoder', new RobertaLayers(config.text, config.text.num_fused_layers, opts));
  }

  /**
   * The fused sequence: text states then audio states, plus modality embeddings (text 0, audio 1),
   * through the fused layers.
   * @returns lastHiddenState (batch, text + audio length, hidden) and its attentionMask (int64)
   */
  async forward(inputs: SpectraInputs): Promise<{ lastHiddenState: Tensor; attentionMask: Tensor }> {
    const B = checkSpectraInputs(inputs);
    await checkClipsNotEmpty(inputs.audioAttentionMask, B);
    const table = this.text_encoder.namedParameters().find(([n]) => n === 'embeddings.token_type_embeddings.weight')![1];
    const audio = await this.audio_encoder.forward({
      inputValues: inputs.inputValues, attentionMask: inputs.audioAttentionMask, batchSize: B,
      tokenTypeTable: this.config.audio.multi_turn ? table : null,
    });
    const text = await this.text_encoder.forward({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, tokenTypeIds: inputs.tokenTypeIds ?? undefined });
    const Tt = inputs.inputIds.shape[1], Ta = audio.lastHiddenState.shape[1];
    const dev = inputs.inputIds.device;
    const modal = cat([zeros([B, Tt], { dtype: 'int64', device: dev }), ones([B, Ta], { dtype: 'int64', device: dev })], 1);
    const fused = cat([text.lastHiddenState, audio.lastHiddenState], 1).add(await this.token_type_embeddings.forward(modal));
    const mask = cat([inputs.attentionMask.long(), audio.attentionMask], 1);
    return { lastHiddenState: await this.fused_encoder.forward({ hiddenStates: fused, attentionMask: mask }), attentionMask: mask };
  }
}

/** `head`: Linear → GELU → Linear (keys `head.0.*`, `head.2.*`). */
class SpectraHead extends Module {
  readonly first: Linear;
  readonly last: Linear;
  constructor(hidden: number, numClass: number, opts: ModuleOptions) {
    super();
    this.first = this.registerModule('0', Linear.create({ in_features: hidden, out_features: hidden }, opts));
    this.last = this.registerModule('2', Linear.create({ in_features: hidden, out_features: numClass }, opts));
  }
  async forward(x: Tensor): Promise<Tensor> {
    return this.last.forward((await this.first.forward(x)).gelu());
  }
}

/** Checks a SPECTRA batch; returns the batch size. */
function checkSpectraInputs(inputs: SpectraInputs): number {
  if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor) invalid('a batch object ({ inputValues, audioAttentionMask, inputIds, attentionMask, … })', 'SPECTRA inputs', inputs);
  const ids = checkTensor(inputs.inputIds, 'inputIds');
  if (ids.ndim !== 2 || (ids.dtype !== 'int64' && ids.dtype !== 'int32')) invalid('an int64 tensor (batch, length)', 'inputIds', `${ids.dtype} [${ids.shape}]`);
  const [B, T] = ids.shape;
  if (B < 1 || T < 1) invalid('a non-empty batch', 'inputIds', `[${ids.shape}]`);
  if (checkTensor(inputs.attentionMask, 'attentionMask').shape.join() !== ids.shape.join()) invalid(`shape [${ids.shape}]`, 'attentionMask', `[${inputs.attentionMask.shape}]`);
  if (inputs.tokenTypeIds && checkTensor(inputs.tokenTypeIds, 'tokenTypeIds').shape.join() !== ids.shape.join()) invalid(`shape [${ids.shape}]`, 'tokenTypeIds', `[${inputs.tokenTypeIds.shape}]`);
  const wave = checkTensor(inputs.inputValues, 'inputValues');
  if (wave.ndim !== 2 || (wave.shape[0] !== B && wave.shape[0] !== 2 * B)) invalid(`a waveform tensor (${B} or ${2 * B} clips, samples)`, 'inputValues', `[${wave.shape}]`);
  if (checkTensor(inputs.audioAttentionMask, 'audioAttentionMask').shape.join() !== wave.shape.join()) invalid(`shape [${wave.shape}]`, 'audioAttentionMask', `[${inputs.audioAttentionMask.shape}]`);
  if (inputs.labels && checkTensor(inputs.labels, 'labels').shape.join() !== String(B)) invalid(`shape [${B}]`, 'labels', `[${inputs.labels.shape}]`);
  return B;
}

/**
 * Every sample's current clip has at least one sample (an empty clip would be encoded as padding
 * without a word, as SALMONN refuses it); with two clips per sample (history, current) the history
 * may be empty.
 */
async function checkClipsNotEmpty(mask: Tensor, B: number): Promise<void> {
  const current = mask.shape[0] === 2 * B ? mask.reshape([B, 2, mask.shape[1]]).select(1, 1) : mask;
  const has = current.ne(0).any(1);
  const flags = await has.to({ device: 'cpu' }).data();
  has.dispose();
  const i = Array.from(flags as ArrayLike<number>).findIndex((v) => !v);
  if (i >= 0) invalid('a non-empty clip (audioAttentionMask with a 1)', `the audio of sample ${i}`, 'no samples');
}

/** Renames from the published checkpoints to our names (the original's names, HF's weight norm). */
export const SPECTRA_RENAMES: readonly Rename[] = [
  { from: /^model\.audio_encoder\.encoder\.pos_conv_embed\.conv\.weight_g$/, to: 'model.audio_encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original0' },
  { from: /^model\.audio_encoder\.encoder\.pos_conv_embed\.conv\.weight_v$/, to: 'model.audio_encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original1' },
  // publicstaticvo/atppo keeps the fused layers in a RobertaEncoder: fused_encoder.layer.N.*
  { from: /^model\.fused_encoder\.layer\.(\d+)\./, to: 'model.fused_encoder.$1.' },
  // buffers and parameters the original itself ignores on load
  { from: /^model\.text_encoder\.embeddings\.(position_ids|token_type_ids)$/, to: null },
  { from: /^model\.audio_encoder\.masked_spec_embed$/, to: null },
];

/** ATForPreTraining's heads: in SPECTRA-base's pytorch_model.bin, unused when fine-tuning. */
const PRETRAINING_HEADS = /^(mlm_head|mam_head|selection_head|start_prediction_head|end_prediction_head)\./;

export interface SpectraPretrainedOptions extends PretrainedOptions {
  /**
   * Fields that replace the checkpoint's `audio_config.json` / `text_config.json` ones (e.g.
   * `{ audio: { has_audio_cls: false } }`); a name neither config has is an error.
   */
  config?: { audio?: Partial<SpectraAudioConfig>; text?: Partial<SpectraTextConfig> };
  /** Head outputs (default: the checkpoint's head, else from `task`). */
  numClass?: number;
  task?: SpectraTask;
  /** See {@link SpectraConfig.mask_audio_cls}. */
  maskAudioCls?: boolean;
  /** See {@link SpectraConfig.extra_audio_frame}. */
  extraAudioFrame?: boolean;
}

export interface SpectraCollateOptions {
  /** Samples every clip is cut or zero-padded to (all clips, as the original). Default 160000 (10 s). */
  audioLength?: number;
  /** Longest token sequence; longer ones keep `<s>` and the last tokens. Default 512. */
  textLength?: number;
  /**
   * Two clips per sample, history first (the original's `--multi_audio`; a sample without history
   * gets an empty clip), token sequence = history + current without its `<s>`, turn ids 0/1.
   * Default: true when any item has a previous turn.
   */
  multiAudio?: boolean;
  /** Float labels (MOSI/MOSEI regression); default: int64 when every label is an integer. */
  regression?: boolean;
  /** Padding token id. Default 1 (RoBERTa's `<pad>`; the original pads with 0, which changes no valid output). */
  padTokenId?: number;
  device?: Device;
}

/**
 * SPECTRA for sequence classification / regression (`ATForSequenceClassification`): the fused
 * sequence's first position (the text `<s>`) through Linear → GELU → Linear; L1 loss for one
 * output, cross-entropy otherwise.
 * @example
 * const model = await et.systems.Spectra.fromPretrained('SPECTRA-base/', { task: 'iemocap' });
 * const ds = await et.data.SpectraDataset.fromFile('iemocap/train.pkl', { task: 'iemocap' });
 * const batch = et.systems.Spectra.collate(await Promise.all([0, 1].map((i) => ds.get(i))));
 * const { loss, logits } = await model.forward(batch);
 */
export class Spectra extends Module {
  declare readonly config: SpectraConfig;
  readonly model: SpectraModel;
  readonly head: SpectraHead;
  /** What fromPretrained did: checkpoint keys skipped (pre-training heads) and parameters left at their initial values. */
  loadInfo: { skipped: string[]; initialized: string[] } = { skipped: [], initialized: [] };

  private constructor(config: SpectraConfig, opts: ModuleOptions, addPoolingLayer: boolean) {
    super();
    lockConfig(this, 'SPECTRA', config);
    this.model = this.registerModule('model', new SpectraModel(config, opts, addPoolingLayer));
    this.head = this.registerModule('head', new SpectraHead(config.text.hidden_size, config.num_class, opts));
  }

  /**
   * A randomly initialized SPECTRA (defaults: wavlm-base-plus + roberta-base sizes, 1 fused layer).
   * @param config `{ audio, text, num_class | task, mask_audio_cls, extra_audio_frame }`, the
   *   original's config names
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field.
   * @example
   * const tiny = et.systems.Spectra.create({ task: 'mosi', audio: { hidden_size: 32, num_hidden_layers: 2 }, text: { hidden_size: 32 } });
   */
  static create(config: SpectraConfigInput = {}, opts: ModuleOptions & { addPoolingLayer?: boolean } = {}): Spectra {
    return new Spectra(resolveSpectraConfig(config), opts, opts.addPoolingLayer ?? true);
  }

  /**
   * Loads SPECTRA as published: a folder with `audio_config.json`, `text_config.json` and
   * `pytorch_model.bin` (or `model.safetensors`), keys under `model.`. The pre-training heads
   * (mlm_head, mam_head, selection_head, start/end_prediction_head) are skipped and listed in
   * `loadInfo.skipped`; a checkpoint without `head.*` gets a new head (listed in
   * `loadInfo.initialized`). Both fused-layer layouts load. Every other key must match.
   * @param opts `numClass` or `task` (required without a head in the checkpoint), `maskAudioCls`,
   *   `extraAudioFrame`, `device`, `dtype`
   * @throws EmotorchError ERR_IO / ERR_FORMAT for unreadable files, ERR_STATE_DICT naming
   *   missing, unexpected or mis-shaped keys, ERR_INVALID_ARG for a head size that disagrees.
   * @example
   * const model = await et.systems.Spectra.fromPretrained('SPECTRA-base/', { task: 'mosi', device: 'cuda' });
   */
  static async fromPretrained(dir: string, opts: SpectraPretrainedOptions = {}): Promise<Spectra> {
    if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
    checkOptionNames(opts, ['numClass', 'task', 'maskAudioCls', 'extraAudioFrame', 'config', 'strict', 'device', 'dtype'], 'Spectra.fromPretrained');
    const o = opts.config;
    if (o !== undefined && (o === null || typeof o !== 'object' || Array.isArray(o) || Object.keys(o).some((k) => k !== 'audio' && k !== 'text'))) invalid('{ audio?, text? } config fields', 'opts.config', o);
    const audio = withOverrides('SPECTRA audio', { ...WAVLM_SPEC, ...AUDIO_EXTRA }, readJsonObjectSync(path.join(dir, 'audio_config.json'), 'a valid config'), o?.audio, ['mask_audio_cls', 'extra_audio_frame']);
    const text = withOverrides('SPECTRA text', { ...ROBERTA_SPEC, ...TEXT_EXTRA }, readJsonObjectSync(path.join(dir, 'text_config.json'), 'a valid config'), o?.text);
    let sd = await loadCheckpoint(dir);
    if (![...sd.keys()].some((k) => k.startsWith('model.')) && [...sd.keys()].some((k) => k.startsWith('audio_encoder.'))) {
      sd = new Map([...sd].map(([k, t]) => [PRETRAINING_HEADS.test(k) || k.startsWith('head.') ? k : `model.${k}`, t] as [string, Tensor]));
    }
    sd = renameKeys(sd, SPECTRA_RENAMES);
    const skipped = [...sd.keys()].filter((k) => PRETRAINING_HEADS.test(k));
    for (const k of skipped) sd.delete(k);
    const headW = sd.get('head.2.weight');
    let numClass = opts.numClass;
    if (headW) {
      if (numClass !== undefined && numClass !== headW.shape[0]) invalid(`${headW.shape[0]} (the checkpoint's head.2.weight rows)`, 'numClass', numClass);
      if (opts.task !== undefined && SPECTRA_LABEL_NUM[opts.task] !== headW.shape[0]) invalid(`a task with ${headW.shape[0]} outputs (the checkpoint's head)`, 'task', opts.task);
      numClass = headW.shape[0];
    }
    const pool = [...sd.keys()].some((k) => k.startsWith('model.text_encoder.pooler.'));
    const model = Spectra.create({
      audio, text, num_class: numClass, task: headW ? undefined : opts.task,
      // emotorch's own switches, saved by savePretrained in audio_config.json; options win
      mask_audio_cls: opts.maskAudioCls ?? (typeof audio.mask_audio_cls === 'boolean' ? audio.mask_audio_cls : undefined),
      extra_audio_frame: opts.extraAudioFrame ?? (typeof audio.extra_audio_frame === 'boolean' ? audio.extra_audio_frame : undefined),
    }, { addPoolingLayer: pool });
    const report = await model.loadStateDict(sd, { strict: false });
    const missing = report.missing.filter((k) => headW || !k.startsWith('head.'));
    const problems: string[] = [];
    if (missing.length) problems.push(`missing keys: ${missing.map((k) => `'${k}'`).join(', ')}`);
    if (report.unexpected.length) problems.push(`unexpected keys: ${report.unexpected.map((k) => `'${k}'`).join(', ')}`);
    if (problems.length && opts.strict !== false) throw new EmotorchError(`SPECTRA checkpoint '${dir}': ${problems.join('; ')}`, 'ERR_STATE_DICT');
    model.loadInfo = { skipped, initialized: report.missing };
    if (opts.device || opts.dtype) await model.to({ device: opts.device, dtype: opts.dtype });
    model.eval();
    return model;
  }

  /**
   * Writes a folder {@link fromPretrained} reads: `audio_config.json`, `text_config.json` (the
   * original's files) and `model.safetensors` (the original's key names).
   * @throws EmotorchError ERR_IO when the folder cannot be written.
   */
  async savePretrained(dir: string): Promise<void> {
    if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
    try {
      fs.mkdirSync(dir, { recursive: true });
      const audio = { ...this.config.audio, mask_audio_cls: this.config.mask_audio_cls, extra_audio_frame: this.config.extra_audio_frame };
      fs.writeFileSync(path.join(dir, 'audio_config.json'), JSON.stringify(audio, null, 2));
      fs.writeFileSync(path.join(dir, 'text_config.json'), JSON.stringify(this.config.text, null, 2));
    } catch (e) {
      throw new EmotorchError(`cannot write '${dir}': ${(e as Error).message}`, 'ERR_IO');
    }
    await saveSafetensors(path.join(dir, 'model.safetensors'), this.stateDict(), { format: 'pt' });
  }

  /**
   * @param inputs a {@link SpectraInputs} batch (what {@link Spectra.collate} makes)
   * @returns `{ logits }`, and `loss` when `labels` are given
   * @throws EmotorchError ERR_INVALID_ARG for malformed inputs, or a sample whose (current) clip is empty.
   */
  async forward(inputs: SpectraInputs): Promise<SpectraOutputs> {
    const fused = await this.model.forward(inputs);
    let logits = await this.head.forward(fused.lastHiddenState.select(1, 0));
    if (this.config.num_class === 1) logits = logits.squeeze(1);
    if (!inputs.labels) return { logits };
    const loss = this.config.num_class === 1 ? l1Loss(logits, inputs.labels.to({ dtype: logits.dtype })) : crossEntropy(logits, inputs.labels.long());
    return { loss, logits };
  }

  /** The paper's fine-tuning recipe: see {@link finetuneSpectra}. */
  static finetune(opts: SpectraFinetuneOptions): Promise<{ model: Spectra; trainer: Trainer<SpectraItem>; output: TrainOutput }> {
    return finetuneSpectra(opts);
  }

  /**
   * Batches SPECTRA dataset items as the original's DataCollatorForDownstream, with the audio length
   * in samples (the original's is in seconds and cannot run as released).
   * @param items from {@link SpectraDataset.get}
   * @param opts `audioLength`, `textLength`, `multiAudio`, `regression`, `padTokenId`, `device`
   * @throws EmotorchError ERR_INVALID_ARG for an empty batch, an item with an empty clip, or bad options.
   * @example
   * const loader = new et.data.DataLoader(ds, { batchSize: 24, shuffle: true, collate: (items) => et.systems.Spectra.collate(items) });
   */
  static collate(items: SpectraItem[], opts: SpectraCollateOptions = {}): SpectraInputs {
    if (!Array.isArray(items) || items.length === 0) invalid('a non-empty array of SPECTRA items', 'items', items);
    if (!opts || typeof opts !== 'object') invalid('an options object', 'collate options', opts);
    checkOptionNames(opts, ['audioLength', 'textLength', 'multiAudio', 'regression', 'padTokenId', 'device'], 'Spectra.collate');
    const S = checkInt(opts.audioLength ?? 160000, 'audioLength', 1);
    const maxText = checkInt(opts.textLength ?? 512, 'textLength', 2);
    const pad = checkInt(opts.padTokenId ?? 1, 'padTokenId', 0);
    const device = opts.device ?? 'cpu';
    items.forEach((it, i) => {
      if (!it || typeof it !== 'object' || !(it.audio instanceof Float32Array) || !Array.isArray(it.textIds) || typeof it.label !== 'number') invalid('a SPECTRA item ({ audio, textIds, label, … })', `items[${i}]`, it);
      if (it.audio.length === 0) invalid('a non-empty clip', `items[${i}].audio`, 'no samples');
    });
    const multi = opts.multiAudio ?? items.some((it) => it.prevAudio !== undefined || it.prevTextIds !== undefined);
    const words: number[][] = [], turns: (number[] | null)[] = [], clips: Float32Array[] = [];
    for (const it of items) {
      if (multi) {
        const hist = it.prevTextIds;
        if (hist && hist.length) {
          words.push([...hist, ...it.textIds.slice(1)]);
          turns.push([...hist.map(() => 0), ...it.textIds.slice(1).map(() => 1)]);
        } else {
          words.push([...it.textIds]);
          turns.push(it.turnIds ? [...it.turnIds] : it.textIds.map(() => 1));
        }
        clips.push(it.prevAudio ?? new Float32Array(0), it.audio);
      } else {
        words.push([...it.textIds]);
        turns.push(it.turnIds ? [...it.turnIds] : null);
        clips.push(it.audio);
      }
    }
    const T = Math.min(Math.max(...words.map((w) => w.length)), maxText);
    const cut = (s: number[]) => (s.length > T ? [s[0], ...s.slice(s.length - (T - 1))] : s);
    const B = items.length;
    const ids = new Float64Array(B * T).fill(pad), tam = new Float64Array(B * T), tt = new Float64Array(B * T);
    const withTurns = multi || turns.some((t) => t !== null);
    words.forEach((w, b) => {
      const c = cut(w);
      ids.set(c, b * T);
      tam.fill(1, b * T, b * T + c.length);
      if (withTurns) tt.set(cut(turns[b] ?? w.map(() => 1)), b * T);
    });
    const wave = new Float32Array(clips.length * S), keep = new Float64Array(clips.length * S);
    clips.forEach((a, i) => {
      const n = Math.min(a.length, S);
      wave.set(a.subarray(0, n), i * S);
      keep.fill(1, i * S, i * S + n);
    });
    const labels = items.map((it) => it.label);
    const regression = opts.regression ?? !labels.every(Number.isInteger);
    return {
      inputValues: tensor(wave, { shape: [clips.length, S], device }),
      audioAttentionMask: tensor(keep, { shape: [clips.length, S], dtype: 'int64', device }),
      inputIds: tensor(ids, { shape: [B, T], dtype: 'int64', device }),
      attentionMask: tensor(tam, { shape: [B, T], dtype: 'int64', device }),
      tokenTypeIds: withTurns ? tensor(tt, { shape: [B, T], dtype: 'int64', device }) : null,
      labels: tensor(Float64Array.from(labels), { dtype: regression ? 'float32' : 'int64', device }),
    };
  }
}

/**
 * The paper's metrics per task, from logits and labels (the original's downstream_metrics.py,
 * computed by et.metrics): MOSI/MOSEI the MMSA suite (Has0/Non0 acc-2 and weighted F1, acc-5,
 * acc-7, MAE, Corr); IEMOCAP accuracy (WA), weighted F1 and UA (balanced accuracy); MIntRec
 * 20-class accuracy and macro F1 plus the binary split (label > 10) accuracy and macro F1.
 * @throws EmotorchError ERR_INVALID_ARG for an unknown task.
 * @example
 * const m = et.systems.spectraMetrics('iemocap')({ predictions: logits, labelIds: labels });
 */
export function spectraMetrics(task: SpectraTask): (p: EvalPrediction) => Record<string, number> {
  if (!(task in SPECTRA_LABEL_NUM)) invalid("'mosi', 'mosei', 'iemocap' or 'mintrec'", 'task', task);
  return ({ predictions, labelIds }) => {
    if (!labelIds) throw new EmotorchError('SPECTRA metrics need labels', 'ERR_INVALID_ARG');
    const truth = Array.from(labelIds.to({ dtype: 'float64' }).dataSync() as Float64Array);
    if (task === 'mosi' || task === 'mosei') {
      const pred = Array.from(predictions.reshape([-1]).to({ dtype: 'float64' }).dataSync() as Float64Array);
      return { ...mmsa(pred, truth) } as unknown as Record<string, number>;
    }
    const pred = Array.from(predictions.argmax(-1).to({ dtype: 'float64' }).dataSync() as Float64Array);
    if (task === 'iemocap') {
      return { accuracy: accuracy(pred, truth), f1_weighted: f1(pred, truth, { average: 'weighted' }), ua: balancedAccuracy(pred, truth) };
    }
    const bin = (xs: number[]) => xs.map((x) => (x > 10 ? 1 : 0));
    return {
      acc_20: accuracy(pred, truth), f1_20: f1(pred, truth, { average: 'macro' }),
      acc_2: accuracy(bin(pred), bin(truth)), f1_2: f1(bin(pred), bin(truth), { average: 'macro' }),
    };
  };
}

/** The metric that picks the best checkpoint per task. */
export const SPECTRA_BEST_METRIC: Record<SpectraTask, string> = { mosi: 'Non0_acc_2', mosei: 'Non0_acc_2', iemocap: 'accuracy', mintrec: 'acc_20' };

/**
 * The original's optimizer groups (main.py): weight decay on every parameter whose name contains
 * none of 'bias', 'LayerNorm.weight', 'LayerNorm.bias' (so WavLM's lower-case `layer_norm`
 * weights, audio_cls/audio_sep and the embeddings are decayed, as in the original).
 */
export function spectraParamGroups(model: Module, weightDecay = 0.01): ParamGroup[] {
  const noDecay = ['bias', 'LayerNorm.weight', 'LayerNorm.bias'];
  const groups: [Tensor[], Tensor[]] = [[], []];
  for (const [n, p] of model.namedParameters()) if (p.requiresGrad) groups[noDecay.some((k) => n.includes(k)) ? 1 : 0].push(p);
  return [{ params: groups[0], weightDecay }, { params: groups[1], weightDecay: 0 }].filter((g) => g.params.length > 0);
}

export interface SpectraFinetuneOptions {
  task: SpectraTask;
  /** A SPECTRA model (e.g. from fromPretrained) or a checkpoint folder to load with this task. */
  model: Spectra | string;
  train: Dataset<SpectraItem>;
  eval?: Dataset<SpectraItem>;
  /** TrainingArguments overriding the paper's (output_dir at least). */
  args?: TrainingArgumentsInit;
  /** Collate options (audioLength in samples, textLength, multiAudio; IEMOCAP's default is multiAudio). */
  collate?: SpectraCollateOptions;
  /** Load options when `model` is a folder (device, maskAudioCls, …). */
  load?: SpectraPretrainedOptions;
}

/**
 * The paper's fine-tuning recipe on {@link Trainer}: batch 24, 5 epochs, lr 2e-5, AdamW eps 1e-8,
 * weight decay 0.01 by the original's name rule ({@link spectraParamGroups}), clipping 1.0, warmup
 * int(1 % of the steps) then linear decay (cosine when that is 0 steps, as the original), audio
 * cut to 10 s, text to 512 tokens with the history cut from the left, evaluation and saving every
 * epoch, the best checkpoint by the task's metric ({@link SPECTRA_BEST_METRIC}) loaded at the end.
 * @returns the trainer (for evaluate / predict) and its TrainOutput
 * @throws EmotorchError ERR_INVALID_ARG for bad options (and what the Trainer and loaders throw).
 * @example
 * const { trainer } = await et.systems.Spectra.finetune({
 *   task: 'iemocap', model: 'SPECTRA-base/', train, eval: valid, args: { output_dir: 'runs/iemocap' },
 *   load: { device: 'cuda' },
 * });
 * console.log(await trainer.evaluate(test, 'test'));
 */
export async function finetuneSpectra(opts: SpectraFinetuneOptions): Promise<{ model: Spectra; trainer: Trainer<SpectraItem>; output: TrainOutput }> {
  if (!opts || typeof opts !== 'object') invalid('{ task, model, train, … }', 'finetune options', opts);
  checkOptionNames(opts, ['task', 'model', 'train', 'eval', 'args', 'collate', 'load'], 'Spectra.finetune');
  const { task } = opts;
  if (!(task in SPECTRA_LABEL_NUM)) invalid("'mosi', 'mosei', 'iemocap' or 'mintrec'", 'task', task);
  if (!opts.train || typeof opts.train.length !== 'number') invalid('a dataset', 'train', opts.train);
  const model = typeof opts.model === 'string' ? await Spectra.fromPretrained(opts.model, { ...opts.load, task }) : opts.model;
  if (!(model instanceof Spectra)) invalid('a Spectra model or a folder', 'model', opts.model);
  if (model.config.num_class !== SPECTRA_LABEL_NUM[task]) invalid(`a model with ${SPECTRA_LABEL_NUM[task]} outputs for ${task}`, 'model', `${model.config.num_class} outputs`);
  const given = opts.args ?? {};
  const batch = given.per_device_train_batch_size ?? 24;
  const accum = given.gradient_accumulation_steps ?? 1;
  const epochs = given.num_train_epochs ?? 5;
  const steps = epochs * Math.ceil(opts.train.length / batch / accum);
  const warmup = Math.floor(0.01 * steps);
  const args: TrainingArgumentsInit = {
    per_device_train_batch_size: 24, per_device_eval_batch_size: 24, num_train_epochs: 5, learning_rate: 2e-5, adam_epsilon: 1e-8,
    weight_decay: 0.01, max_grad_norm: 1.0, warmup_steps: warmup, lr_scheduler_type: warmup === 0 ? 'cosine' : 'linear',
    eval_strategy: opts.eval ? 'epoch' : 'no', save_strategy: 'epoch', save_total_limit: 1,
    load_best_model_at_end: !!opts.eval, metric_for_best_model: opts.eval ? SPECTRA_BEST_METRIC[task] : null, greater_is_better: true, seed: 42,
    ...given,
  };
  const collate: SpectraCollateOptions = { audioLength: model.config.audio.max_length, textLength: model.config.text.max_length, regression: SPECTRA_LABEL_NUM[task] === 1, ...(task === 'iemocap' ? { multiAudio: true } : {}), ...opts.collate };
  const params = spectraParamGroups(model, args.weight_decay ?? 0.01);
  const trainer = new Trainer<SpectraItem>({
    model, args, trainDataset: opts.train, evalDataset: opts.eval,
    dataCollator: (items) => Spectra.collate(items, collate) as unknown as Record<string, unknown>,
    computeMetrics: spectraMetrics(task),
    optimizer: new AdamW(params, { lr: args.learning_rate ?? 2e-5, eps: args.adam_epsilon ?? 1e-8, weightDecay: args.weight_decay ?? 0.01 }),
  });
  const output = await trainer.train();
  return { model, trainer, output };
}
