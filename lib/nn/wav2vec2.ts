/** Wav2Vec2 (HF Wav2Vec2Model; XLS-R is its layer-norm, stable-layer-norm variant), on native/nn/wav2vec2. */
import { NativeModule, ModuleOptions } from './module';
import { Tensor, checkTensor, tensor, zeros } from '../tensor';
import { invalid } from '../errors';
import { ConfigSpec, PretrainedOptions, Rename, finishPretrained, loadCheckpoint, readConfig, renameKeys, resolveConfig, stripPrefix } from './pretrained';

/** HF Wav2Vec2Config fields and defaults (wav2vec2-base sizes; XLS-R checkpoints set the layer-norm fields in their config.json). */
export interface Wav2Vec2Config {
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
  layer_norm_eps: number;
  layerdrop: number;
  hidden_dropout: number;
  attention_dropout: number;
  activation_dropout: number;
  feat_proj_dropout: number;
  mask_time_prob: number;
  mask_feature_prob: number;
  add_adapter: boolean;
}

export const WAV2VEC2_DEFAULTS: Wav2Vec2Config = {
  conv_dim: [512, 512, 512, 512, 512, 512, 512], conv_kernel: [10, 3, 3, 3, 3, 2, 2], conv_stride: [5, 2, 2, 2, 2, 2, 2], conv_bias: false,
  feat_extract_norm: 'group', feat_extract_activation: 'gelu', do_stable_layer_norm: false, hidden_size: 768, num_hidden_layers: 12,
  num_attention_heads: 12, intermediate_size: 3072, hidden_act: 'gelu', num_conv_pos_embeddings: 128, num_conv_pos_embedding_groups: 16,
  layer_norm_eps: 1e-5, layerdrop: 0.1, hidden_dropout: 0.1, attention_dropout: 0.1, activation_dropout: 0.1, feat_proj_dropout: 0,
  mask_time_prob: 0.05, mask_feature_prob: 0, add_adapter: false,
};

const SPEC: ConfigSpec<Wav2Vec2Config> = {
  conv_dim: 'any', conv_kernel: 'any', conv_stride: 'any', conv_bias: 'bool', feat_extract_norm: 'string', feat_extract_activation: 'act',
  do_stable_layer_norm: 'bool', hidden_size: 'posint', num_hidden_layers: 'nonneg', num_attention_heads: 'posint', intermediate_size: 'posint',
  hidden_act: 'act', num_conv_pos_embeddings: 'posint', num_conv_pos_embedding_groups: 'posint', layer_norm_eps: 'posnum', layerdrop: 'prob',
  hidden_dropout: 'prob', attention_dropout: 'prob', activation_dropout: 'prob', feat_proj_dropout: 'prob', mask_time_prob: 'prob',
  mask_feature_prob: 'prob', add_adapter: 'bool',
};

/** Older checkpoints' weight-norm names → transformers 5's parametrization names; pretraining-only heads dropped. */
export const WAV2VEC2_RENAMES: readonly Rename[] = [
  { from: /^encoder\.pos_conv_embed\.conv\.weight_g$/, to: 'encoder.pos_conv_embed.conv.parametrizations.weight.original0' },
  { from: /^encoder\.pos_conv_embed\.conv\.weight_v$/, to: 'encoder.pos_conv_embed.conv.parametrizations.weight.original1' },
];

/** Inputs of {@link Wav2Vec2Model.forward}. */
export interface Wav2Vec2Inputs {
  /** (batch, samples) float waveform at 16 kHz (zero-mean unit-variance per clip for XLS-R, as its feature extractor does). */
  inputValues: Tensor;
  /** (batch, samples) 1 = real sample, 0 = padding. */
  attentionMask?: Tensor | null;
  /** Also return every layer's hidden state. */
  outputHiddenStates?: boolean;
}

/** Outputs of {@link Wav2Vec2Model.forward}. */
export interface Wav2Vec2Outputs {
  /** (batch, frames, hidden): the encoder output (after the final layer norm in the stable-layer-norm variant). */
  lastHiddenState: Tensor;
  /** (batch, frames) true = valid frame, or null without an attention mask. */
  frameMask: Tensor | null;
  /**
   * With `outputHiddenStates`: layers + 1 tensors (batch, frames, hidden): [0] the encoder input
   * after the conv positions, [i] the output of layer i (transformers 5's recording; the last
   * entry is before the stable variant's final layer norm).
   */
  hiddenStates?: Tensor[];
}

/**
 * Wav2Vec2 / XLS-R speech encoder: 16 kHz waveform (batch, samples) → (batch, frames, hidden),
 * 50 frames per second, and the hidden state of any layer (USDM's units come from layer 35 of XLS-R 1B).
 * @example
 * const xlsr = await et.nn.Wav2Vec2Model.fromPretrained('wav2vec2-xls-r-1b/');
 * const { lastHiddenState, hiddenStates } = await xlsr.forward({ inputValues: wave, outputHiddenStates: true });
 */
export class Wav2Vec2Model extends NativeModule {
  readonly config: Wav2Vec2Config;
  private constructor(config: Wav2Vec2Config, opts: ModuleOptions) {
    super('wav2vec2', { ...config, masked_spec_embed: config.mask_time_prob > 0 || config.mask_feature_prob > 0 }, opts);
    this.config = config;
  }

  /**
   * A randomly initialized model.
   * @param config HF config.json fields (missing ones take the defaults)
   * @throws EmotorchError ERR_INVALID_ARG naming the bad field
   */
  static create(config: Partial<Wav2Vec2Config> = {}, opts: ModuleOptions = {}): Wav2Vec2Model {
    const c = resolveConfig('Wav2Vec2', WAV2VEC2_DEFAULTS, SPEC, config);
    if (!Array.isArray(c.conv_dim) || c.conv_dim.length === 0 || !c.conv_dim.every((x) => Number.isSafeInteger(x) && x > 0)) {
      invalid('a non-empty list of positive integers', 'Wav2Vec2 config.conv_dim', c.conv_dim);
    }
    for (const k of ['conv_kernel', 'conv_stride'] as const) {
      const v = c[k];
      if (!Array.isArray(v) || v.length !== c.conv_dim.length || !v.every((x) => Number.isSafeInteger(x) && x > 0)) invalid(`${c.conv_dim.length} positive integers`, `Wav2Vec2 config.${k}`, v);
    }
    if (!['group', 'layer'].includes(c.feat_extract_norm)) invalid("'group' or 'layer'", 'Wav2Vec2 config.feat_extract_norm', c.feat_extract_norm);
    if (c.hidden_size % c.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', 'Wav2Vec2 config.hidden_size', c.hidden_size);
    if (c.hidden_size % c.num_conv_pos_embedding_groups !== 0) invalid(`a multiple of num_conv_pos_embedding_groups (${c.num_conv_pos_embedding_groups})`, 'Wav2Vec2 config.hidden_size', c.hidden_size);
    if (c.add_adapter) invalid('false (the Wav2Vec2 output adapter is not implemented)', 'Wav2Vec2 config.add_adapter', c.add_adapter);
    return new Wav2Vec2Model(c, opts);
  }

  /**
   * Loads a local HF folder (keys with or without a `wav2vec2.` prefix; heads of task and
   * pretraining models, such as the quantizer, are ignored).
   * @throws EmotorchError ERR_IO / ERR_FORMAT / ERR_INVALID_ARG
   */
  static async fromPretrained(dir: string, opts: PretrainedOptions = {}): Promise<Wav2Vec2Model> {
    const cfg = readConfig(dir) as Partial<Wav2Vec2Config>;
    let sd = renameKeys(stripPrefix(await loadCheckpoint(dir), ['wav2vec2.']), WAV2VEC2_RENAMES);
    sd = new Map([...sd].filter(([k]) => /^(feature_extractor|feature_projection|encoder|masked_spec_embed)/.test(k)));
    const model = Wav2Vec2Model.create(cfg, {});
    return finishPretrained(model, sd, opts);
  }

  /** Frames produced for a clip of `samples` (the conv stack's length formula). */
  framesFor(samples: number): number {
    let n = samples;
    this.config.conv_kernel.forEach((k, i) => { n = Math.floor((n - k) / this.config.conv_stride[i]) + 1; });
    return n;
  }

  private checkInputs(inputs: Wav2Vec2Inputs): number[] {
    const s = checkTensor(inputs.inputValues, 'inputValues').shape;
    if (s.length !== 2) invalid('a waveform (batch, samples)', 'inputValues', `[${s}]`);
    if (this.framesFor(s[1]) < 1) invalid(`at least ${this.config.conv_kernel[0]} samples`, 'inputValues length', s[1]);
    if (inputs.attentionMask && checkTensor(inputs.attentionMask, 'attentionMask').shape.join() !== s.join()) invalid(`shape [${s}]`, 'attentionMask', `[${inputs.attentionMask.shape}]`);
    return s;
  }

  /**
   * @param inputs `{ inputValues, attentionMask?, outputHiddenStates? }`, or the waveform alone
   * @returns `{ lastHiddenState, frameMask, hiddenStates? }`
   * @throws EmotorchError ERR_INVALID_ARG for a bad shape or too short a clip
   */
  async forward(inputs: Wav2Vec2Inputs | Tensor): Promise<Wav2Vec2Outputs> {
    const x = this.namedInputs(inputs, 'inputValues', 'Wav2Vec2');
    if (x.outputHiddenStates !== undefined && typeof x.outputHiddenStates !== 'boolean') invalid('a boolean', 'outputHiddenStates', x.outputHiddenStates);
    const s = this.checkInputs(x);
    const L = this.config.num_hidden_layers;
    if (s[0] === 0) {
      const frames = this.framesFor(s[1]);
      const empty = () => this.emptyOutput([0, frames, this.config.hidden_size], x.inputValues.device);
      return {
        lastHiddenState: empty(), frameMask: x.attentionMask ? zeros([0, frames], { dtype: 'bool' }) : null,
        ...(x.outputHiddenStates ? { hiddenStates: Array.from({ length: L + 1 }, empty) } : {}),
      };
    }
    const out = await this.runStates(x, x.outputHiddenStates ? L : null);
    return { lastHiddenState: out[0]!, frameMask: out[1], ...(x.outputHiddenStates ? { hiddenStates: out.slice(2) as Tensor[] } : {}) };
  }

  /**
   * The hidden state of one layer (0 = encoder input, i = output of layer i), running only the
   * first `layer` layers.
   * @returns `{ hiddenState (batch, frames, hidden), frameMask }`
   * @throws EmotorchError ERR_INVALID_ARG for a layer outside 0..num_hidden_layers
   */
  async hiddenStateAt(inputs: Wav2Vec2Inputs | Tensor, layer: number): Promise<{ hiddenState: Tensor; frameMask: Tensor | null }> {
    const x = this.namedInputs(inputs, 'inputValues', 'Wav2Vec2');
    if (!Number.isSafeInteger(layer) || layer < 0 || layer > this.config.num_hidden_layers) invalid(`an integer in [0, ${this.config.num_hidden_layers}]`, 'layer', layer);
    const s = this.checkInputs(x);
    if (s[0] === 0) {
      const frames = this.framesFor(s[1]);
      return { hiddenState: this.emptyOutput([0, frames, this.config.hidden_size], x.inputValues.device), frameMask: x.attentionMask ? zeros([0, frames], { dtype: 'bool' }) : null };
    }
    const out = await this.runStates(x, layer);
    out[0]?.dispose();
    return { hiddenState: out[out.length - 1]!, frameMask: out[1] };
  }

  private async runStates(x: Wav2Vec2Inputs, upTo: number | null): Promise<Array<Tensor | null>> {
    const k = upTo === null ? null : tensor([upTo], { dtype: 'int64' });
    try {
      return await this.run([x.inputValues, x.attentionMask ?? null, k]);
    } finally {
      k?.dispose();
    }
  }
}
