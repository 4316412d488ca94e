/**
 * SPECTRA (AlibabaResearch/DAMO-ConvAI spectra/, checkpoint publicstaticvo/SPECTRA-base):
 * WavLM + RoBERTa fused by extra RoBERTa layers, with the previous dialogue turn on both sides.
 * `ATModel` is {@link SpectraModel}; `ATForSequenceClassification` is {@link Spectra}. Key names
 * are the original's (`model.audio_encoder.*`, `model.text_encoder.*`,
 * `model.token_type_embeddings.weight`, `model.fused_encoder.N.*`, `head.0.*`, `head.2.*`).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Module, NativeModule, ModuleOptions, checkModuleOptions, lockConfig } from '../../../nn/module';
import { RobertaModel, RobertaConfig, RobertaLayers, ROBERTA_DEFAULTS, SPEC as ROBERTA_SPEC } from '../../../nn/roberta';
import { WavLMConfig, WAVLM, WAVLM_DEFAULTS, SPEC as WAVLM_SPEC } from '../../../nn/wavlm';
import { wireOf } from '../../../nn/config';
import { Linear, Embedding } from '../../../nn/layers';
import {
  PretrainedOptions,
  Rename,
  checkPretrainedOptions,
  checkpointDtype,
  loadCheckpoint,
  renameKeys,
  resolveConfig,
  withOverrides,
  pretrainedPath,
} from '../../../nn/pretrained';
import { Tensor, tensor, cat, zeros, ones, checkTensor } from '../../../tensor';
import { EmotorchError, checkInt, invalid } from '../../../errors';
import { readJsonObjectSync } from '../../../io/file';
import { crossEntropy, l1Loss } from '../../../functional';
import { saveSafetensors } from '../../../io/safetensors';
import type { SpectraItem, SpectraTask } from '../../../data/datasets/spectra';
import { SpectraCollateOptions, SpectraInputs, spectraCollate } from './data';
export type { SpectraInputs } from './data';

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

/** SPECTRA's configuration: the audio and text encoder configs (audio_config.json, text_config.json) and the head. */
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

/** A SPECTRA config as given: its two parts partly filled, the rest from the defaults. */
export type SpectraConfigInput = {
  audio?: Partial<SpectraAudioConfig> | Record<string, unknown>;
  text?: Partial<SpectraTextConfig> | Record<string, unknown>;
  num_class?: number;
  task?: SpectraTask;
  mask_audio_cls?: boolean;
  extra_audio_frame?: boolean;
};

/** Named outputs of `Spectra.forward`: logits, and the loss with labels. */
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
  if (!Array.isArray(audio.conv_dim) || audio.conv_dim.length === 0)
    invalid('a non-empty array of positive integers', 'SPECTRA audio config.conv_dim', audio.conv_dim);
  for (const k of ['conv_dim', 'conv_kernel', 'conv_stride'] as const) {
    const v = audio[k];
    if (!Array.isArray(v) || v.length !== audio.conv_dim.length || !v.every((x) => Number.isInteger(x) && x > 0))
      invalid(`${audio.conv_dim.length} positive integers`, `SPECTRA audio config.${k}`, v);
  }
  if (!['group', 'layer'].includes(audio.feat_extract_norm)) invalid("'group' or 'layer'", 'SPECTRA audio config.feat_extract_norm', audio.feat_extract_norm);
  if (audio.hidden_size % audio.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', 'SPECTRA audio config.hidden_size', audio.hidden_size);
  if (audio.hidden_size % audio.num_conv_pos_embedding_groups !== 0)
    invalid('a multiple of num_conv_pos_embedding_groups', 'SPECTRA audio config.hidden_size', audio.hidden_size);
  if (text.hidden_size % text.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', 'SPECTRA text config.hidden_size', text.hidden_size);
  if (audio.hidden_size !== text.hidden_size) invalid(`the text hidden_size (${text.hidden_size})`, 'SPECTRA audio config.hidden_size', audio.hidden_size);
  if (text.pad_token_id < 0 || text.pad_token_id >= text.vocab_size)
    invalid(`a token id in 0..${text.vocab_size - 1}`, 'SPECTRA text config.pad_token_id', text.pad_token_id);
  if (text.type_vocab_size < 2)
    invalid("at least 2 (turn ids and audio segments use RoBERTa's token-type table)", 'SPECTRA text config.type_vocab_size', text.type_vocab_size);
  let numClass = given.num_class;
  if (given.task !== undefined) {
    if (!(given.task in SPECTRA_LABEL_NUM)) invalid("'mosi', 'mosei', 'iemocap' or 'mintrec'", 'task', given.task);
    if (numClass !== undefined && numClass !== SPECTRA_LABEL_NUM[given.task])
      invalid(`${SPECTRA_LABEL_NUM[given.task]} for task ${given.task}`, 'num_class', numClass);
    numClass = SPECTRA_LABEL_NUM[given.task];
  }
  if (numClass === undefined)
    throw new EmotorchError('SPECTRA: give num_class (1 = regression) or task (the original never sets num_class itself)', 'ERR_INVALID_ARG');
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
    // WavLM's fields as WavLM sends them (no masked_spec_embed: SPECTRA masks frames its own way), then its own.
    const wavlm = { ...wireOf(WAVLM, config.audio), masked_spec_embed: false };
    super(
      'spectra_audio',
      { ...wavlm, has_audio_cls: config.audio.has_audio_cls, mask_audio_cls: config.mask_audio_cls, extra_frame: config.extra_audio_frame },
      opts,
    );
    lockConfig(this, 'SPECTRA', config);
  }
  /** Frames the conv stack gives a clip of `samples`. */
  framesFor(samples: number): number {
    let n = samples;
    this.config.audio.conv_kernel.forEach((k, i) => {
      n = Math.floor((n - k) / this.config.audio.conv_stride[i]) + 1;
    });
    return n;
  }
  /**
   * @param inputs.inputValues (clips, samples); `batchSize` samples hold one, two (history,
   *   current) or three (pre-training: context, response, negative) clips each
   * @param inputs.tokenTypeTable (2, hidden) segment embeddings, or null
   * @param inputs.mamZero (clips, frames) bool: conv frames set to zero (masked acoustic modelling)
   * @param inputs.mamSource (clips, frames) int64: the clean frame each frame takes (its own index
   *   unless replaced); given together with `mamZero`
   * @param inputs.detachTarget the returned target without gradient (the original keeps it)
   * @returns hidden states (rows, frames', hidden) and their attention mask (rows, frames') int64,
   *   rows = batch, or two per sample with three clips; with the masking inputs also `target`, the
   *   clean conv features (clips, frames, conv_dim[-1])
   */
  async forward(inputs: {
    inputValues: Tensor;
    attentionMask: Tensor;
    batchSize: number;
    tokenTypeTable?: Tensor | null;
    mamZero?: Tensor;
    mamSource?: Tensor;
    detachTarget?: boolean;
  }): Promise<{ lastHiddenState: Tensor; attentionMask: Tensor; target?: Tensor }> {
    // The two scalars ride as 0-d tensors, freed once the call has read them.
    const batchSize = tensor([inputs.batchSize], { dtype: 'int64' }).reshape([]);
    const detach = inputs.mamZero ? tensor([inputs.detachTarget ? 1 : 0], { dtype: 'bool' }).reshape([]) : null;
    const mam = inputs.mamZero ? { mam_zero: inputs.mamZero, mam_source: inputs.mamSource, detach_target: detach } : {};
    let o;
    try {
      o = await this.run({
        input_values: inputs.inputValues,
        attention_mask: inputs.attentionMask,
        batch_size: batchSize,
        token_type_table: inputs.tokenTypeTable,
        ...mam,
      });
    } finally {
      batchSize.dispose();
      detach?.dispose();
    }
    return o.target
      ? { lastHiddenState: o.last_hidden_state!, attentionMask: o.attention_mask!, target: o.target }
      : { lastHiddenState: o.last_hidden_state!, attentionMask: o.attention_mask! };
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
    this.token_type_embeddings = this.registerModule(
      'token_type_embeddings',
      Embedding.create({ num_embeddings: 2, embedding_dim: config.text.hidden_size }, opts),
    );
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
      inputValues: inputs.inputValues,
      attentionMask: inputs.audioAttentionMask,
      batchSize: B,
      tokenTypeTable: this.config.audio.multi_turn ? table : null,
    });
    const text = await this.text_encoder.forward({
      inputIds: inputs.inputIds,
      attentionMask: inputs.attentionMask,
      tokenTypeIds: inputs.tokenTypeIds ?? undefined,
    });
    const Tt = inputs.inputIds.shape[1],
      Ta = audio.lastHiddenState.shape[1];
    const dev = inputs.inputIds.device;
    const modal = cat([zeros([B, Tt], { dtype: 'int64', device: dev }), ones([B, Ta], { dtype: 'int64', device: dev })], 1);
    const fused = cat([text.lastHiddenState, audio.lastHiddenState], 1).add(await this.token_type_embeddings.forward(modal));
    const mask = cat([inputs.attentionMask.long(), audio.attentionMask], 1);
    return { lastHiddenState: (await this.fused_encoder.forward({ hiddenStates: fused, attentionMask: mask })).lastHiddenState, attentionMask: mask };
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
  async forward(inputs: { hiddenStates: Tensor }): Promise<{ logits: Tensor }> {
    return { logits: await this.last.forward((await this.first.forward(inputs.hiddenStates)).gelu()) };
  }
}

/** Checks a SPECTRA batch; returns the batch size. */
function checkSpectraInputs(inputs: SpectraInputs): number {
  if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor)
    invalid('a batch object ({ inputValues, audioAttentionMask, inputIds, attentionMask, … })', 'SPECTRA inputs', inputs);
  const ids = checkTensor(inputs.inputIds, 'inputIds');
  if (ids.ndim !== 2 || (ids.dtype !== 'int64' && ids.dtype !== 'int32')) invalid('an int64 tensor (batch, length)', 'inputIds', `${ids.dtype} [${ids.shape}]`);
  const [B, T] = ids.shape;
  if (B < 1 || T < 1) invalid('a non-empty batch', 'inputIds', `[${ids.shape}]`);
  if (checkTensor(inputs.attentionMask, 'attentionMask').shape.join() !== ids.shape.join())
    invalid(`shape [${ids.shape}]`, 'attentionMask', `[${inputs.attentionMask.shape}]`);
  if (inputs.tokenTypeIds && checkTensor(inputs.tokenTypeIds, 'tokenTypeIds').shape.join() !== ids.shape.join())
    invalid(`shape [${ids.shape}]`, 'tokenTypeIds', `[${inputs.tokenTypeIds.shape}]`);
  const wave = checkTensor(inputs.inputValues, 'inputValues');
  if (wave.ndim !== 2 || (wave.shape[0] !== B && wave.shape[0] !== 2 * B))
    invalid(`a waveform tensor (${B} or ${2 * B} clips, samples)`, 'inputValues', `[${wave.shape}]`);
  if (checkTensor(inputs.audioAttentionMask, 'audioAttentionMask').shape.join() !== wave.shape.join())
    invalid(`shape [${wave.shape}]`, 'audioAttentionMask', `[${inputs.audioAttentionMask.shape}]`);
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
  {
    from: /^model\.audio_encoder\.encoder\.pos_conv_embed\.conv\.weight_g$/,
    to: 'model.audio_encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original0',
  },
  {
    from: /^model\.audio_encoder\.encoder\.pos_conv_embed\.conv\.weight_v$/,
    to: 'model.audio_encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original1',
  },
  // publicstaticvo/atppo keeps the fused layers in a RobertaEncoder: fused_encoder.layer.N.*
  { from: /^model\.fused_encoder\.layer\.(\d+)\./, to: 'model.fused_encoder.$1.' },
  // buffers and parameters the original itself ignores on load
  { from: /^model\.text_encoder\.embeddings\.(position_ids|token_type_ids)$/, to: null },
  { from: /^model\.audio_encoder\.masked_spec_embed$/, to: null },
];

/** ATForPreTraining's heads: in SPECTRA-base's pytorch_model.bin, unused when fine-tuning. */
export const PRETRAINING_HEADS = /^(mlm_head|mam_head|selection_head|start_prediction_head|end_prediction_head)\./;

/**
 * @internal A SPECTRA folder's two configs (`audio_config.json`, `text_config.json`) with the given
 * fields replacing theirs.
 */
export function readSpectraConfigs(dir: string, o: SpectraPretrainedOptions['config']): { audio: Record<string, unknown>; text: Record<string, unknown> } {
  if (o !== undefined && (o === null || typeof o !== 'object' || Array.isArray(o) || Object.keys(o).some((k) => k !== 'audio' && k !== 'text')))
    invalid('{ audio?, text? } config fields', 'opts.config', o);
  const audio = withOverrides(
    'SPECTRA audio',
    { ...WAVLM_SPEC, ...AUDIO_EXTRA },
    readJsonObjectSync(path.join(dir, 'audio_config.json'), 'a valid config'),
    o?.audio,
    ['mask_audio_cls', 'extra_audio_frame'],
  );
  const text = withOverrides(
    'SPECTRA text',
    { ...ROBERTA_SPEC, ...TEXT_EXTRA },
    readJsonObjectSync(path.join(dir, 'text_config.json'), 'a valid config'),
    o?.text,
  );
  return { audio, text };
}

/** @internal A SPECTRA folder's weights under our names (`model.` added where a checkpoint lacks it, HF's weight norm, both fused-layer layouts). */
export async function loadSpectraStateDict(dir: string): Promise<Map<string, Tensor>> {
  let sd = await loadCheckpoint(dir);
  if (![...sd.keys()].some((k) => k.startsWith('model.')) && [...sd.keys()].some((k) => k.startsWith('audio_encoder.'))) {
    sd = new Map([...sd].map(([k, t]) => [PRETRAINING_HEADS.test(k) || k.startsWith('head.') ? k : `model.${k}`, t] as [string, Tensor]));
  }
  return renameKeys(sd, SPECTRA_RENAMES);
}

/** Options of `Spectra.fromPretrained`. */
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

/**
 * SPECTRA for sequence classification / regression (`ATForSequenceClassification`): the fused
 * sequence's first position (the text `<s>`) through Linear → GELU → Linear; L1 loss for one
 * output, cross-entropy otherwise.
 * Guide: [SPECTRA](../../../../docs/spectra.md).
 * @example
 * const model = await et.systems.spectra.Spectra.fromPretrained('SPECTRA-base/', { task: 'iemocap' });
 * const ds = await et.data.SpectraDataset.fromFile('iemocap/train.pkl', { task: 'iemocap' });
 * const batch = et.systems.spectra.Spectra.collate(await Promise.all([0, 1].map((i) => ds.get(i))));
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
   * const tiny = et.systems.spectra.Spectra.create({ task: 'mosi', audio: { hidden_size: 32, num_hidden_layers: 2 }, text: { hidden_size: 32 } });
   */
  static create(config: SpectraConfigInput = {}, opts: ModuleOptions & { addPoolingLayer?: boolean } = {}): Spectra {
    const { addPoolingLayer, ...moduleOpts } = checkModuleOptions(opts, 'Spectra.create', ['addPoolingLayer']);
    return new Spectra(resolveSpectraConfig(config), moduleOpts, addPoolingLayer ?? true);
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
   * const model = await et.systems.spectra.Spectra.fromPretrained('SPECTRA-base/', { task: 'mosi', device: 'cuda' });
   */
  static async fromPretrained(dir: string, opts: SpectraPretrainedOptions = {}): Promise<Spectra> {
    if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
    opts = checkPretrainedOptions(opts, 'Spectra.fromPretrained', ['numClass', 'task', 'maskAudioCls', 'extraAudioFrame']);
    dir = await pretrainedPath(dir, opts);
    const { audio, text } = readSpectraConfigs(dir, opts.config);
    const sd = await loadSpectraStateDict(dir);
    const skipped = [...sd.keys()].filter((k) => PRETRAINING_HEADS.test(k));
    for (const k of skipped) sd.delete(k);
    const headW = sd.get('head.2.weight');
    let numClass = opts.numClass;
    if (headW) {
      if (numClass !== undefined && numClass !== headW.shape[0]) invalid(`${headW.shape[0]} (the checkpoint's head.2.weight rows)`, 'numClass', numClass);
      if (opts.task !== undefined && SPECTRA_LABEL_NUM[opts.task] !== headW.shape[0])
        invalid(`a task with ${headW.shape[0]} outputs (the checkpoint's head)`, 'task', opts.task);
      numClass = headW.shape[0];
    }
    const pool = [...sd.keys()].some((k) => k.startsWith('model.text_encoder.pooler.'));
    const model = Spectra.create(
      {
        audio,
        text,
        num_class: numClass,
        task: headW ? undefined : opts.task,
        // emotorch's own switches, saved by savePretrained in audio_config.json; options win
        mask_audio_cls: opts.maskAudioCls ?? (typeof audio.mask_audio_cls === 'boolean' ? audio.mask_audio_cls : undefined),
        extra_audio_frame: opts.extraAudioFrame ?? (typeof audio.extra_audio_frame === 'boolean' ? audio.extra_audio_frame : undefined),
      },
      { addPoolingLayer: pool },
    );
    const report = await model.loadStateDict(sd, { strict: false });
    const missing = report.missing.filter((k) => headW || !k.startsWith('head.'));
    const problems: string[] = [];
    if (missing.length) problems.push(`missing keys: ${missing.map((k) => `'${k}'`).join(', ')}`);
    if (report.unexpected.length) problems.push(`unexpected keys: ${report.unexpected.map((k) => `'${k}'`).join(', ')}`);
    if (problems.length && opts.strict !== false) throw new EmotorchError(`SPECTRA checkpoint '${dir}': ${problems.join('; ')}`, 'ERR_STATE_DICT');
    model.loadInfo = { skipped, initialized: report.missing };
    const dtype = opts.dtype === 'auto' ? checkpointDtype(sd) : opts.dtype;
    if (opts.device || dtype) await model.to({ device: opts.device, dtype });
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
    let { logits } = await this.head.forward({ hiddenStates: fused.lastHiddenState.select(1, 0) });
    if (this.config.num_class === 1) logits = logits.squeeze(1);
    if (!inputs.labels) return { logits };
    const loss = this.config.num_class === 1 ? l1Loss(logits, inputs.labels.to({ dtype: logits.dtype })) : crossEntropy(logits, inputs.labels.long());
    return { loss, logits };
  }

  /**
   * Batches SPECTRA dataset items as the original's DataCollatorForDownstream, with the audio length
   * in samples (the original's is in seconds and cannot run as released).
   * @param items from `et.data.SpectraDataset` (`get`)
   * @param opts `audioLength`, `textLength`, `multiAudio`, `regression`, `padTokenId`, `device`
   * @throws EmotorchError ERR_INVALID_ARG for an empty batch, an item with an empty clip, or bad options.
   * @example
   * const loader = new et.data.DataLoader(ds, { batchSize: 24, shuffle: true, collate: (items) => et.systems.spectra.Spectra.collate(items) });
   */
  static collate(items: SpectraItem[], opts: SpectraCollateOptions = {}): SpectraInputs {
    return spectraCollate(items, opts);
  }
}
