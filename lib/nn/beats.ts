/** BEATs audio encoder (original microsoft/unilm code, as SALMONN uses it), on native/models/beats. */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f } from './config';
import { Tensor, checkTensor, zeros } from '../tensor';
import { EmotorchError, invalid, renameDeprecated } from '../errors';
import { loadTorchFile } from '../io/torchfile';
import type { StateDict } from './module';
import { Loaded, PretrainedOptions, loadPretrained } from './pretrained';

/** The original BEATsConfig fields and defaults. */
export const BEATS = declareConfig({
  name: 'BEATs',
  kind: 'beats',
  fields: {
    /** Side of the square fbank patches (time × mel bins). */
    input_patch_size: f.posint(16),
    /** Width of the patch embedding. */
    embed_dim: f.posint(512),
    conv_bias: f.bool(false),
    encoder_layers: f.nonneg(12),
    encoder_embed_dim: f.posint(768),
    encoder_ffn_embed_dim: f.posint(3072),
    encoder_attention_heads: f.posint(12),
    activation_fn: f.act('gelu'),
    layer_norm_first: f.bool(false),
    deep_norm: f.bool(false),
    dropout: f.prob(0.1),
    attention_dropout: f.prob(0.1),
    activation_dropout: f.prob(0),
    dropout_input: f.prob(0),
    /** Taps of the convolutional position embedding. */
    conv_pos: f.posint(128),
    conv_pos_groups: f.posint(16),
    relative_position_embedding: f.bool(false),
    num_buckets: f.posint(320),
    max_distance: f.posint(1280),
    /** Gated relative position bias (as WavLM). */
    gru_rel_pos: f.bool(false),
  },
  check(c) {
    if (c.encoder_embed_dim % c.encoder_attention_heads !== 0)
      invalid(`a multiple of encoder_attention_heads`, 'BEATs config.encoder_embed_dim', c.encoder_embed_dim);
    if (c.encoder_embed_dim % c.conv_pos_groups !== 0) invalid(`a multiple of conv_pos_groups`, 'BEATs config.encoder_embed_dim', c.encoder_embed_dim);
  },
});

/**
 * The original BEATsConfig fields and defaults.
 * @interface
 */
export type BeatsConfig = ConfigOf<typeof BEATS>;

/** The BeatsConfig values used for the fields a config leaves out. */
export const BEATS_DEFAULTS: BeatsConfig = defaultsOf(BEATS);

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
export class BeatsEncoder extends ConfiguredModule<BeatsConfig> {
  /** A BeatsEncoder with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<BeatsConfig> = {}, opts: ModuleOptions = {}): BeatsEncoder {
    return new BeatsEncoder(BEATS, config, opts);
  }

  /**
   * Loads a folder with the original cfg as `config.json` and weights as `model.safetensors`, or
   * the original `{cfg, model}` torch.save file.
   */
  static async fromPretrained(dirOrFile: string, opts: PretrainedOptions<BeatsConfig> = {}): Promise<BeatsEncoder> {
    return loadPretrained(BEATS, BeatsEncoder, dirOrFile, opts, {
      read: /\.(pt|pth|bin)$/.test(dirOrFile) ? readOriginal : undefined,
      keep: /^(?!predictor\.)/,
    });
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
      return {
        lastHiddenState: this.emptyOutput([0, tokens, this.config.encoder_embed_dim], inputFeatures.device),
        paddingMask: attentionMask ? zeros([0, tokens], { dtype: 'bool' }) : null,
      };
    }
    // the native encoder takes the original's padding mask (true = padding)
    const padding = attentionMask && !legacy ? attentionMask.logicalNot() : (attentionMask ?? null);
    try {
      const o = await this.run({ input_features: inputFeatures, padding_mask: padding });
      return { lastHiddenState: o.last_hidden_state!, paddingMask: o.padding_mask ?? null };
    } finally {
      if (padding && padding !== attentionMask) padding.dispose();
    }
  }
}

/** The original file: torch.save({'cfg': {...}, 'model': state_dict}). */
async function readOriginal(file: string): Promise<Loaded> {
  const obj = await loadTorchFile(file);
  const c = obj instanceof Map ? obj.get('cfg') : undefined;
  const m = obj instanceof Map ? obj.get('model') : undefined;
  if (!(c instanceof Map) || !(m instanceof Map)) throw new EmotorchError(`'${file}' is not a BEATs checkpoint ({cfg, model})`, 'ERR_FORMAT');
  return { config: Object.fromEntries(c), sd: m as StateDict };
}
