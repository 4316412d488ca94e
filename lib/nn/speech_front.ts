/**
 * The config fields WavLM and Wav2Vec2 share (native/blocks/speech_front: the conv feature
 * extractor, the feature projection, the conv position embedding, the encoder's sizes), with
 * their checks.
 */
import { invalid } from '../errors';
import { ConfigOf, f } from './config';

/** The conv feature extractor's and the encoder's fields (wav2vec2-base / wavlm-base-plus sizes). */
export const SPEECH_FRONT = {
  /** Output channels of each conv layer of the feature extractor. */
  conv_dim: f.ints([512, 512, 512, 512, 512, 512, 512]),
  /** Kernel of each conv layer (as many as conv_dim). */
  conv_kernel: f.ints([10, 3, 3, 3, 3, 2, 2]),
  /** Stride of each conv layer (as many as conv_dim). */
  conv_stride: f.ints([5, 2, 2, 2, 2, 2, 2]),
  conv_bias: f.bool(false),
  /** 'group' (group norm on the first conv only) or 'layer' (layer norm on every conv: XLS-R). */
  feat_extract_norm: f.string('group'),
  feat_extract_activation: f.act('gelu'),
  /** Pre-norm layers and a final layer norm (XLS-R, large models). */
  do_stable_layer_norm: f.bool(false),
  hidden_size: f.posint(768),
  num_hidden_layers: f.nonneg(12),
  num_attention_heads: f.posint(12),
  intermediate_size: f.posint(3072),
  hidden_act: f.act('gelu'),
  /** Taps of the conv position embedding. */
  num_conv_pos_embeddings: f.posint(128),
  num_conv_pos_embedding_groups: f.posint(16),
};

/**
 * The dropouts, and the masking probabilities of pretraining, which decide only whether the
 * model has `masked_spec_embed` (derived: sent to the native model, not a config field).
 */
export function speechDropouts(activationDropout: number) {
  return {
    layer_norm_eps: f.posnum(1e-5),
    hidden_dropout: f.prob(0.1),
    attention_dropout: f.prob(0.1),
    activation_dropout: f.prob(activationDropout),
    feat_proj_dropout: f.prob(0),
    /** SpecAugment's time-masking probability in pretraining; > 0 gives the model `masked_spec_embed`. */
    mask_time_prob: f.prob(0.05).host(),
    mask_feature_prob: f.prob(0).host(),
    masked_spec_embed: f.derived('bool', (c: Record<string, number>) => c.mask_time_prob > 0 || c.mask_feature_prob > 0),
  };
}

/** The keys of the encoder itself in a task or pretraining model's checkpoint. */
export const SPEECH_KEYS = /^(feature_extractor|feature_projection|encoder|masked_spec_embed)/;

/** The checks across the shared fields. @throws EmotorchError ERR_INVALID_ARG naming `<name> config.<field>` */
export function checkSpeechFront(name: string, c: ConfigOf<typeof SPEECH_FRONT>): void {
  if (!Array.isArray(c.conv_dim) || c.conv_dim.length === 0 || !c.conv_dim.every((x) => Number.isSafeInteger(x) && x > 0)) {
    invalid('a non-empty list of positive integers', `${name} config.conv_dim`, c.conv_dim);
  }
  for (const k of ['conv_kernel', 'conv_stride'] as const) {
    const v = c[k];
    if (!Array.isArray(v) || v.length !== c.conv_dim.length || !v.every((x) => Number.isSafeInteger(x) && x > 0))
      invalid(`${c.conv_dim.length} positive integers`, `${name} config.${k}`, v);
  }
  if (!['group', 'layer'].includes(c.feat_extract_norm)) invalid("'group' or 'layer'", `${name} config.feat_extract_norm`, c.feat_extract_norm);
  if (c.hidden_size % c.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', `${name} config.hidden_size`, c.hidden_size);
  if (c.hidden_size % c.num_conv_pos_embedding_groups !== 0)
    invalid(`a multiple of num_conv_pos_embedding_groups (${c.num_conv_pos_embedding_groups})`, `${name} config.hidden_size`, c.hidden_size);
}
