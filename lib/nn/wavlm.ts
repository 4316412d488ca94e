/** WavLM (HF WavLMModel), on native/models/wavlm. */
import { NativeModule, ModuleOptions, lockConfig, checkModuleOptions } from './module';
import { Tensor, checkTensor, zeros } from '../tensor';
import { invalid, withDeprecatedAlias } from '../errors';
import { ConfigSpec, PretrainedOptions, createForCheckpoint, Rename, finishPretrained, loadCheckpoint, readConfig, renameKeys, resolveConfig, stripPrefix, withOverrides, pretrainedPath, checkPretrainedOptions } from './pretrained';

/** HF WavLMConfig fields and defaults (wavlm-base-plus sizes). */
export interface WavLMConfig {
  conv_dim: number[];
  conv_kernel: number[];
  conv_stride: number[];
  conv_bias: boolean;
  feat_extract_norm: string;
  feat_extract_activation: string;
  do_stable_layer_norm: boolean;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  num_conv_pos_embeddings: number;
  num_conv_pos_embedding_groups: number;
  num_buckets: number;
  max_bucket_distance: number;
  layer_norm_eps: number;
  hidden_dropout: number;
  attention_dropout: number;
  activation_dropout: number;
  feat_proj_dropout: number;
  mask_time_prob: number;
  mask_feature_prob: number;
}

/** The WavLMConfig values used for the fields a config leaves out. */
export const WAVLM_DEFAULTS: WavLMConfig = {
  conv_dim: [512, 512, 512, 512, 512, 512, 512], conv_kernel: [10, 3, 3, 3, 3, 2, 2], conv_stride: [5, 2, 2, 2, 2, 2, 2], conv_bias: false,
  feat_extract_norm: 'group', feat_extract_activation: 'gelu', do_stable_layer_norm: false, hidden_size: 768, num_hidden_layers: 12,
  num_attention_heads: 12, intermediate_size: 3072, hidden_act: 'gelu', num_conv_pos_embeddings: 128, num_conv_pos_embedding_groups: 16,
  num_buckets: 320, max_bucket_distance: 800, layer_norm_eps: 1e-5, hidden_dropout: 0.1, attention_dropout: 0.1, activation_dropout: 0,
  feat_proj_dropout: 0, mask_time_prob: 0.05, mask_feature_prob: 0,
};

/** Kind of each config field (for systems that build a WavLM config of their own). */
export const SPEC: ConfigSpec<WavLMConfig> = {
  conv_dim: 'any', conv_kernel: 'any', conv_stride: 'any', conv_bias: 'bool', feat_extract_norm: 'string', feat_extract_activation: 'act',
  do_stable_layer_norm: 'bool', hidden_size: 'posint', num_hidden_layers: 'nonneg', num_attention_heads: 'posint', intermediate_size: 'posint',
  hidden_act: 'act', num_conv_pos_embeddings: 'posint', num_conv_pos_embedding_groups: 'posint', num_buckets: 'posint',
  max_bucket_distance: 'posint', layer_norm_eps: 'posnum', hidden_dropout: 'prob', attention_dropout: 'prob', activation_dropout: 'prob',
  feat_proj_dropout: 'prob', mask_time_prob: 'prob', mask_feature_prob: 'prob',
};

/** Inputs of {@link WavLMModel.forward}. */
export interface WavLMInputs {
  /** (batch, samples) float waveform at 16 kHz. */
  inputValues: Tensor;
  /** (batch, samples) 1 = real sample, 0 = padding. */
  attentionMask?: Tensor;
}

/** Outputs of {@link WavLMModel.forward}. */
export interface WavLMOutputs {
  /** (batch, frames, hidden) */
  lastHiddenState: Tensor;
  /**
   * (batch, frames) bool, true = real frame: the input `attentionMask` brought down to the frames
   * (HF computes it with `_get_feature_vector_attention_mask` and passes it on as `attention_mask`
   * without returning it); null without an input mask.
   */
  attentionMask: Tensor | null;
  /** @deprecated the same tensor as `attentionMask` (non-enumerable); readable until the next release. */
  readonly frameMask: Tensor | null;
}

/** Older checkpoints' weight-norm names → transformers 5's parametrization names. */
export const WAVLM_RENAMES: readonly Rename[] = [
  { from: /^encoder\.pos_conv_embed\.conv\.weight_g$/, to: 'encoder.pos_conv_embed.conv.parametrizations.weight.original0' },
  { from: /^encoder\.pos_conv_embed\.conv\.weight_v$/, to: 'encoder.pos_conv_embed.conv.parametrizations.weight.original1' },
];

/**
 * WavLM speech encoder (SPECTRA's audio side): 16 kHz waveform (batch, samples) →
 * (batch, frames, hidden), about 50 frames per second.
 * @example
 * const wavlm = await et.nn.WavLMModel.fromPretrained('wavlm-base-plus/');
 * const { lastHiddenState } = await wavlm.forward({ inputValues: wave, attentionMask });
 */
export class WavLMModel extends NativeModule {
  declare readonly config: WavLMConfig;
  private constructor(config: WavLMConfig, opts: ModuleOptions) {
    super('wavlm', { ...config, masked_spec_embed: config.mask_time_prob > 0 || config.mask_feature_prob > 0 }, opts);
    lockConfig(this, 'WavLM', config);
  }

  /** A WavLMModel with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<WavLMConfig> = {}, opts: ModuleOptions = {}): WavLMModel {
    opts = checkModuleOptions(opts, 'WavLMModel.create');
    const c = resolveConfig('WavLM', WAVLM_DEFAULTS, SPEC, config);
    if (!Array.isArray(c.conv_dim) || c.conv_dim.length === 0 || !c.conv_dim.every((x) => Number.isSafeInteger(x) && x > 0)) {
      invalid('a non-empty list of positive integers', 'WavLM config.conv_dim', c.conv_dim);
    }
    for (const k of ['conv_dim', 'conv_kernel', 'conv_stride'] as const) {
      const v = c[k];
      if (!Array.isArray(v) || v.length !== c.conv_dim.length || !v.every((x) => Number.isInteger(x) && x > 0)) invalid(`${c.conv_dim.length} positive integers`, `WavLM config.${k}`, v);
    }
    if (!['group', 'layer'].includes(c.feat_extract_norm)) invalid("'group' or 'layer'", 'WavLM config.feat_extract_norm', c.feat_extract_norm);
    if (c.hidden_size % c.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', 'WavLM config.hidden_size', c.hidden_size);
    if (c.hidden_size % c.num_conv_pos_embedding_groups !== 0) invalid(`a multiple of num_conv_pos_embedding_groups (${c.num_conv_pos_embedding_groups})`, 'WavLM config.hidden_size', c.hidden_size);
    return new WavLMModel(c, opts);
  }

  /** Loads a local HF folder (keys with or without a `wavlm.` prefix; heads of task models are ignored). */
  static async fromPretrained(dir: string, opts: PretrainedOptions<WavLMConfig> = {}): Promise<WavLMModel> {
    opts = checkPretrainedOptions(opts, 'WavLMModel.fromPretrained');
    dir = await pretrainedPath(dir, opts);
    const cfg = readConfig(dir) as Partial<WavLMConfig>;
    let sd = renameKeys(stripPrefix(await loadCheckpoint(dir), ['wavlm.']), WAVLM_RENAMES);
    sd = new Map([...sd].filter(([k]) => /^(feature_extractor|feature_projection|encoder|masked_spec_embed)/.test(k)));
    const model = createForCheckpoint(opts, () => WavLMModel.create(withOverrides('WavLM', SPEC, cfg, opts.config), {}));
    return finishPretrained(model, sd, opts);
  }

  /** Frames produced for a clip of `samples` (the conv stack's length formula). */
  framesFor(samples: number): number {
    let n = samples;
    this.config.conv_kernel.forEach((k, i) => { n = Math.floor((n - k) / this.config.conv_stride[i]) + 1; });
    return n;
  }

  /**
   * @param inputs.inputValues (batch, samples) float waveform (normalized as the checkpoint's feature extractor says); or that tensor alone
   * @param inputs.attentionMask (batch, samples) 1 = real sample, 0 = padding
   * @returns lastHiddenState (batch, frames, hidden) and attentionMask (batch, frames) bool, true =
   *   real frame (the input mask brought down to the frames, as HF's forward computes it with
   *   `_get_feature_vector_attention_mask`), or null without an input mask
   */
  async forward(inputs: WavLMInputs | Tensor): Promise<WavLMOutputs> {
    inputs = this.namedInputs(inputs, 'inputValues', 'WavLM');
    const s = checkTensor(inputs.inputValues, 'inputValues').shape;
    if (s.length !== 2) invalid('a waveform (batch, samples)', 'inputValues', `[${s}]`);
    if (this.framesFor(s[1]) < 1) invalid(`at least ${this.config.conv_kernel[0]} samples`, 'inputValues length', s[1]);
    if (inputs.attentionMask && checkTensor(inputs.attentionMask, 'attentionMask').shape.join() !== s.join()) invalid(`shape [${s}]`, 'attentionMask', `[${inputs.attentionMask.shape}]`);
    if (s[0] === 0) {
      const frames = this.framesFor(s[1]);
      return withDeprecatedAlias({ lastHiddenState: this.emptyOutput([0, frames, this.config.hidden_size], inputs.inputValues.device), attentionMask: inputs.attentionMask ? zeros([0, frames], { dtype: 'bool' }) : null }, 'frameMask', 'attentionMask');
    }
    const o = await this.run({ input_values: inputs.inputValues, attention_mask: inputs.attentionMask });
    return withDeprecatedAlias({ lastHiddenState: o.last_hidden_state!, attentionMask: o.frame_mask ?? null }, 'frameMask', 'attentionMask');
  }
}
