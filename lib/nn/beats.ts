/** BEATs audio encoder (original microsoft/unilm code, as SALMONN uses it), on native/models/beats. */
import { NativeModule, ModuleOptions, lockConfig, checkModuleOptions } from './module';
import { Tensor, checkTensor, zeros } from '../tensor';
import { EmotorchError, invalid, renameDeprecated } from '../errors';
import { loadTorchFile } from '../io/torchfile';
import type { StateDict } from './module';
import { ConfigSpec, PretrainedOptions, createForCheckpoint, finishPretrained, loadCheckpoint, readConfig, resolveConfig, withOverrides, pretrainedPath, checkPretrainedOptions } from './pretrained';

/** The original BEATsConfig fields and defaults. */
export interface BeatsConfig {
  input_patch_size: number;
  embed_dim: number;
  conv_bias: boolean;
  encoder_layers: number;
  encoder_embed_dim: number;
  encoder_ffn_embed_dim: number;
  encoder_attention_heads: number;
  activation_fn: string;
  layer_norm_first: boolean;
  deep_norm: boolean;
  dropout: number;
  attention_dropout: number;
  activation_dropout: number;
  dropout_input: number;
  conv_pos: number;
  conv_pos_groups: number;
  relative_position_embedding: boolean;
  num_buckets: number;
  max_distance: number;
  gru_rel_pos: boolean;
}

/** The BeatsConfig values used for the fields a config leaves out. */
export const BEATS_DEFAULTS: BeatsConfig = {
  input_patch_size: 16, embed_dim: 512, conv_bias: false, encoder_layers: 12, encoder_embed_dim: 768, encoder_ffn_embed_dim: 3072,
  encoder_attention_heads: 12, activation_fn: 'gelu', layer_norm_first: false, deep_norm: false, dropout: 0.1, attention_dropout: 0.1,
  activation_dropout: 0, dropout_input: 0, conv_pos: 128, conv_pos_groups: 16, relative_position_embedding: false, num_buckets: 320,
  max_distance: 1280, gru_rel_pos: false,
};

const SPEC: ConfigSpec<BeatsConfig> = {
  input_patch_size: 'posint', embed_dim: 'posint', conv_bias: 'bool', encoder_layers: 'nonneg', encoder_embed_dim: 'posint',
  encoder_ffn_embed_dim: 'posint', encoder_attention_heads: 'posint', activation_fn: 'act', layer_norm_first: 'bool', deep_norm: 'bool',
  dropout: 'prob', attention_dropout: 'prob', activation_dropout: 'prob', dropout_input: 'prob', conv_pos: 'posint', conv_pos_groups: 'posint',
  relative_position_embedding: 'bool', num_buckets: 'posint', max_distance: 'posint', gru_rel_pos: 'bool',
};

export interface BeatsInputs {
  /** (batch, frames, 128) normalized Kaldi fbank. */
  inputFeatures: Tensor;
  /** (batch, samples) of the waveform: 1 (true) = real sample, 0 (false) = padding. */
  attentionMask?: Tensor;
  /**
   * (batch, samples) bool, true at padded waveform samples: the inverse of `attentionMask`.
   * @deprecated use `attentionMask` (1 = keep); accepted until the next release.
   */
  paddingMask?: Tensor;
}

/** Named outputs of `BeatsEncoder.forward`. */
export interface BeatsOutputs {
  /** (batch, 8·⌊frames/16⌋, encoder_embed_dim) */
  lastHiddenState: Tensor;
  /**
   * (batch, tokens) bool, true at padding (the original BEATs' `padding_mask` output, which has
   * no HF counterpart); null without an input mask.
   */
  paddingMask: Tensor | null;
}

/** Deprecated input names of {@link BeatsEncoder.forward}. */
const BEATS_INPUT_RENAMES = { paddingMask: 'attentionMask' } as const;

/**
 * BEATs: normalized Kaldi fbank (from `et.audio.kaldiFbank(wave, { beats: true })`) →
 * token features. Checkpoints keep the original names (`encoder.pos_conv.0.weight_g`, …);
 * `predictor.*` of fine-tuned checkpoints is ignored.
 * @example
 * const beats = await et.nn.BeatsEncoder.fromPretrained('beats/');
 * const { lastHiddenState } = await beats.forward({ inputFeatures: await et.audio.kaldiFbank(wave, { beats: true }) });
 */
export class BeatsEncoder extends NativeModule {
  declare readonly config: BeatsConfig;
  private constructor(config: BeatsConfig, opts: ModuleOptions) {
    super('beats', config, opts);
    lockConfig(this, 'BEATs', config);
  }

  /** A BeatsEncoder with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<BeatsConfig> = {}, opts: ModuleOptions = {}): BeatsEncoder {
    opts = checkModuleOptions(opts, 'BeatsEncoder.create');
    const c = resolveConfig('BEATs', BEATS_DEFAULTS, SPEC, config);
    if (c.encoder_embed_dim % c.encoder_attention_heads !== 0) invalid(`a multiple of encoder_attention_heads`, 'BEATs config.encoder_embed_dim', c.encoder_embed_dim);
    if (c.encoder_embed_dim % c.conv_pos_groups !== 0) invalid(`a multiple of conv_pos_groups`, 'BEATs config.encoder_embed_dim', c.encoder_embed_dim);
    return new BeatsEncoder(c, opts);
  }

  /**
   * Loads a folder with the original cfg as `config.json` and weights as `model.safetensors`, or
   * the original `{cfg, model}` torch.save file.
   */
  static async fromPretrained(dirOrFile: string, opts: PretrainedOptions<BeatsConfig> = {}): Promise<BeatsEncoder> {
    opts = checkPretrainedOptions(opts, 'BeatsEncoder.fromPretrained');
    dirOrFile = await pretrainedPath(dirOrFile, opts);
    let cfg: Partial<BeatsConfig>;
    let sd: StateDict;
    if (/\.(pt|pth|bin)$/.test(dirOrFile)) {
      // The original file: torch.save({'cfg': {...}, 'model': state_dict})
      const obj = await loadTorchFile(dirOrFile);
      const c = obj instanceof Map ? obj.get('cfg') : undefined;
      const m = obj instanceof Map ? obj.get('model') : undefined;
      if (!(c instanceof Map) || !(m instanceof Map)) throw new EmotorchError(`'${dirOrFile}' is not a BEATs checkpoint ({cfg, model})`, 'ERR_FORMAT');
      cfg = Object.fromEntries(c) as Partial<BeatsConfig>;
      sd = m as StateDict;
    } else {
      cfg = readConfig(dirOrFile) as Partial<BeatsConfig>;
      sd = await loadCheckpoint(dirOrFile);
    }
    sd = new Map([...sd].filter(([k]) => !k.startsWith('predictor.')));
    const model = createForCheckpoint(opts, () => BeatsEncoder.create(withOverrides('BEATs', SPEC, cfg, opts.config), {}));
    return finishPretrained(model, sd, opts);
  }

  /**
   * @param inputs.inputFeatures (batch, frames, 128) normalized Kaldi fbank (`et.audio.kaldiFbank(x, { beats: true })`); or that tensor alone
   * @param inputs.attentionMask (batch, samples) 1 = real waveform sample, 0 = padding (optional;
   *   `paddingMask`, true = padding, is its deprecated inverse)
   * @returns `{ lastHiddenState }` (batch, 8·⌊frames/16⌋, encoder_embed_dim) and the token `paddingMask` (true = padding, or null)
   * @throws EmotorchError ERR_INVALID_ARG for a bad shape, or both attentionMask and paddingMask
   * @example
   * const { lastHiddenState, paddingMask } = await beats.forward({ inputFeatures: fbank, attentionMask });
   */
  async forward(inputs: BeatsInputs | Tensor): Promise<BeatsOutputs> {
    const x = this.namedInputs<BeatsInputs>(inputs, 'inputFeatures', 'BEATs');
    const legacy = x.paddingMask !== undefined && x.paddingMask !== null && (x.attentionMask === undefined || x.attentionMask === null);
    const { inputFeatures, attentionMask } = renameDeprecated(x, BEATS_INPUT_RENAMES, 'BEATs inputs');
    const maskName = legacy ? 'paddingMask' : 'attentionMask';
    checkTensor(inputFeatures, 'inputFeatures');
    const s = inputFeatures.shape;
    const p = this.config.input_patch_size;
    if (s.length !== 3 || s[2] % p !== 0 || s[2] === 0) invalid(`fbank (batch, frames ≥ ${p}, bins divisible by ${p})`, 'inputFeatures', `[${s}]`);
    this.checkLength(s[1], 'inputFeatures', p);
    if (attentionMask) {
      const m = checkTensor(attentionMask, maskName).shape;
      if (m.length !== 2 || m[0] !== s[0] || m[1] < s[1]) invalid(`a (batch, samples) mask with batch ${s[0]}`, maskName, `[${m}]`);
    }
    if (s[0] === 0) {
      const tokens = Math.floor(s[1] / p) * (s[2] / p);
      return { lastHiddenState: this.emptyOutput([0, tokens, this.config.encoder_embed_dim], inputFeatures.device), paddingMask: attentionMask ? zeros([0, tokens], { dtype: 'bool' }) : null };
    }
    // the native encoder takes the original's padding mask (true = padding)
    const padding = attentionMask && !legacy ? attentionMask.logicalNot() : attentionMask ?? null;
    try {
      const o = await this.run({ input_features: inputFeatures, padding_mask: padding });
      return { lastHiddenState: o.last_hidden_state!, paddingMask: o.padding_mask ?? null };
    } finally {
      if (padding && padding !== attentionMask) padding.dispose();
    }
  }
}
