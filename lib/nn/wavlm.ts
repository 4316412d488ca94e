/** WavLM (HF WavLMModel), on native/models/wavlm. */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f, specOf } from './config';
import { SPEECH_FRONT, SPEECH_KEYS, checkSpeechFront, speechDropouts } from './speech_front';
import { Tensor, checkTensor, zeros } from '../tensor';
import { invalid, withDeprecatedAlias } from '../errors';
import { PretrainedOptions, Rename, loadPretrained } from './pretrained';

/** HF WavLMConfig fields and defaults (wavlm-base-plus sizes). */
export const WAVLM = declareConfig({
  name: 'WavLM',
  kind: 'wavlm',
  fields: {
    ...SPEECH_FRONT,
    /** Buckets of the gated relative position bias. */
    num_buckets: f.posint(320),
    max_bucket_distance: f.posint(800),
    ...speechDropouts(0),
  },
  check: (c) => checkSpeechFront('WavLM', c),
});

/**
 * HF WavLMConfig fields and defaults (wavlm-base-plus sizes).
 * @interface
 */
export type WavLMConfig = ConfigOf<typeof WAVLM>;

/** The WavLMConfig values used for the fields a config leaves out. */
export const WAVLM_DEFAULTS: WavLMConfig = defaultsOf(WAVLM);

/** Kind of each config field (for systems that build a WavLM config of their own). */
export const SPEC = specOf(WAVLM);

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
export class WavLMModel extends ConfiguredModule<WavLMConfig> {
  /** A WavLMModel with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<WavLMConfig> = {}, opts: ModuleOptions = {}): WavLMModel {
    return new WavLMModel(WAVLM, config, opts);
  }

  /** Loads a local HF folder (keys with or without a `wavlm.` prefix; heads of task models are ignored). */
  static async fromPretrained(dir: string, opts: PretrainedOptions<WavLMConfig> = {}): Promise<WavLMModel> {
    return loadPretrained(WAVLM, WavLMModel, dir, opts, { prefixes: ['wavlm.'], renames: WAVLM_RENAMES, keep: SPEECH_KEYS });
  }

  /** Frames produced for a clip of `samples` (the conv stack's length formula). */
  framesFor(samples: number): number {
    let n = samples;
    this.config.conv_kernel.forEach((k, i) => {
      n = Math.floor((n - k) / this.config.conv_stride[i]) + 1;
    });
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
    if (inputs.attentionMask && checkTensor(inputs.attentionMask, 'attentionMask').shape.join() !== s.join())
      invalid(`shape [${s}]`, 'attentionMask', `[${inputs.attentionMask.shape}]`);
    if (s[0] === 0) {
      const frames = this.framesFor(s[1]);
      return withDeprecatedAlias(
        {
          lastHiddenState: this.emptyOutput([0, frames, this.config.hidden_size], inputs.inputValues.device),
          attentionMask: inputs.attentionMask ? zeros([0, frames], { dtype: 'bool' }) : null,
        },
        'frameMask',
        'attentionMask',
      );
    }
    const o = await this.run({ input_values: inputs.inputValues, attention_mask: inputs.attentionMask });
    return withDeprecatedAlias({ lastHiddenState: o.last_hidden_state!, attentionMask: o.frame_mask ?? null }, 'frameMask', 'attentionMask');
  }
}
