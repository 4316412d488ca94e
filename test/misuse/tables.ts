/**
 * The misuse tables. Each table is data: a new model, op or system joins the property tests by
 * adding a row here, and the tests in this folder (config, ops, disposal, concurrency) check it.
 *
 * - CONFIG_ROWS: a model's small valid config and the kind of each field. Every invalid value of
 *   a field's kind (negative, zero where positive is needed, non-integer, NaN, ±Infinity, wrong
 *   type, unknown enum string) must make `create(config)` throw ERR_INVALID_ARG naming the field;
 *   so must breaking a `divides` relation (head counts) or a `sameLength` relation.
 * - UNARY_OPS / BINARY_OPS / DIM_OPS: tensor ops over random shapes and dtypes (empty tensors
 *   included): a result, or an EmotorchError with a code. BINARY_OPS marked `broadcast` must give
 *   the broadcast shape, and must refuse shapes that do not broadcast.
 * - DISPOSED_USES: every way of touching a disposed tensor must throw ERR_DISPOSED.
 * - MODEL_ROWS: a small model and a random input maker: forwards run in parallel on one module
 *   give the same outputs as run one by one; an input of random shape/dtype (or not a tensor)
 *   gives a result or a coded error; a disposed module refuses to run.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as et from '../../lib/index';

type Config = Record<string, unknown>;

/**
 * Field kinds, with the values that are invalid for each:
 * posint (> 0 integer), nonneg (≥ 0 integer), prob (number in [0, 1]), posnum (number > 0),
 * nonnegnum (number ≥ 0), bool, act (an activation name), enum (one of `values`),
 * posintlist (non-empty list of positive integers).
 */
export type FieldKind = 'posint' | 'nonneg' | 'prob' | 'posnum' | 'nonnegnum' | 'bool' | 'act' | { enum: readonly string[] } | 'posintlist';

export interface ConfigRow {
  name: string;
  create(config: Config): et.nn.Module;
  /** A small config that creates (every field the tests mutate is set explicitly). */
  valid: Config;
  fields: Record<string, FieldKind>;
  /** [a, b]: b must divide a (e.g. hidden size by head count). */
  divides?: [string, string][];
  /** Lists that must have the same length. */
  sameLength?: string[][];
}

const dropouts = (...names: string[]): Record<string, FieldKind> => Object.fromEntries(names.map((n) => [n, 'prob' as FieldKind]));

export const CONFIG_ROWS: ConfigRow[] = [
  {
    name: 'WhisperEncoder',
    create: (c) => et.nn.WhisperEncoder.create(c),
    valid: {
      num_mel_bins: 8,
      d_model: 8,
      encoder_layers: 1,
      encoder_attention_heads: 2,
      encoder_ffn_dim: 16,
      max_source_positions: 10,
      dropout: 0,
      attention_dropout: 0,
      activation_dropout: 0,
      init_std: 0.02,
      activation_function: 'gelu',
    },
    fields: {
      num_mel_bins: 'posint',
      d_model: 'posint',
      encoder_layers: 'nonneg',
      encoder_attention_heads: 'posint',
      encoder_ffn_dim: 'posint',
      max_source_positions: 'posint',
      ...dropouts('dropout', 'attention_dropout', 'activation_dropout'),
      init_std: 'nonnegnum',
      activation_function: 'act',
    },
    divides: [['d_model', 'encoder_attention_heads']],
  },
  {
    name: 'BeatsEncoder',
    create: (c) => et.nn.BeatsEncoder.create(c),
    valid: {
      input_patch_size: 16,
      embed_dim: 8,
      conv_bias: false,
      encoder_layers: 1,
      encoder_embed_dim: 8,
      encoder_ffn_embed_dim: 16,
      encoder_attention_heads: 2,
      activation_fn: 'gelu',
      layer_norm_first: false,
      deep_norm: true,
      dropout: 0,
      attention_dropout: 0,
      activation_dropout: 0,
      dropout_input: 0,
      conv_pos: 4,
      conv_pos_groups: 2,
      relative_position_embedding: true,
      num_buckets: 8,
      max_distance: 16,
      gru_rel_pos: true,
    },
    fields: {
      input_patch_size: 'posint',
      embed_dim: 'posint',
      conv_bias: 'bool',
      encoder_layers: 'nonneg',
      encoder_embed_dim: 'posint',
      encoder_ffn_embed_dim: 'posint',
      encoder_attention_heads: 'posint',
      activation_fn: 'act',
      layer_norm_first: 'bool',
      deep_norm: 'bool',
      ...dropouts('dropout', 'attention_dropout', 'activation_dropout', 'dropout_input'),
      conv_pos: 'posint',
      conv_pos_groups: 'posint',
      relative_position_embedding: 'bool',
      num_buckets: 'posint',
      max_distance: 'posint',
      gru_rel_pos: 'bool',
    },
    divides: [
      ['encoder_embed_dim', 'encoder_attention_heads'],
      ['encoder_embed_dim', 'conv_pos_groups'],
    ],
  },
  {
    name: 'WavLMModel',
    create: (c) => et.nn.WavLMModel.create(c),
    valid: {
      conv_dim: [8, 8],
      conv_kernel: [10, 3],
      conv_stride: [5, 2],
      conv_bias: false,
      feat_extract_norm: 'group',
      feat_extract_activation: 'gelu',
      do_stable_layer_norm: false,
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      hidden_act: 'gelu',
      num_conv_pos_embeddings: 4,
      num_conv_pos_embedding_groups: 2,
      num_buckets: 8,
      max_bucket_distance: 16,
      layer_norm_eps: 1e-5,
      hidden_dropout: 0,
      attention_dropout: 0,
      activation_dropout: 0,
      feat_proj_dropout: 0,
      mask_time_prob: 0.05,
      mask_feature_prob: 0,
    },
    fields: {
      conv_dim: 'posintlist',
      conv_kernel: 'posintlist',
      conv_stride: 'posintlist',
      conv_bias: 'bool',
      feat_extract_norm: { enum: ['group', 'layer'] },
      feat_extract_activation: 'act',
      do_stable_layer_norm: 'bool',
      hidden_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      intermediate_size: 'posint',
      hidden_act: 'act',
      num_conv_pos_embeddings: 'posint',
      num_conv_pos_embedding_groups: 'posint',
      num_buckets: 'posint',
      max_bucket_distance: 'posint',
      layer_norm_eps: 'posnum',
      ...dropouts('hidden_dropout', 'attention_dropout', 'activation_dropout', 'feat_proj_dropout', 'mask_time_prob', 'mask_feature_prob'),
    },
    divides: [
      ['hidden_size', 'num_attention_heads'],
      ['hidden_size', 'num_conv_pos_embedding_groups'],
    ],
    sameLength: [['conv_dim', 'conv_kernel', 'conv_stride']],
  },
  {
    name: 'RobertaModel',
    create: (c) => et.nn.RobertaModel.create(c),
    valid: {
      vocab_size: 50,
      hidden_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 32,
      max_position_embeddings: 20,
      type_vocab_size: 1,
      pad_token_id: 1,
      layer_norm_eps: 1e-12,
      hidden_dropout_prob: 0,
      attention_probs_dropout_prob: 0,
      initializer_range: 0.02,
      hidden_act: 'gelu',
      add_pooling_layer: true,
    },
    fields: {
      vocab_size: 'posint',
      hidden_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      intermediate_size: 'posint',
      max_position_embeddings: 'posint',
      type_vocab_size: 'posint',
      pad_token_id: 'nonneg',
      layer_norm_eps: 'posnum',
      ...dropouts('hidden_dropout_prob', 'attention_probs_dropout_prob'),
      initializer_range: 'nonnegnum',
      hidden_act: 'act',
      add_pooling_layer: 'bool',
    },
    divides: [['hidden_size', 'num_attention_heads']],
  },
  {
    name: 'QFormer',
    create: (c) => et.nn.QFormer.create(c),
    valid: {
      hidden_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 32,
      encoder_hidden_size: 12,
      cross_attention_frequency: 2,
      num_query_tokens: 4,
      layer_norm_eps: 1e-12,
      hidden_dropout_prob: 0,
      attention_probs_dropout_prob: 0,
      initializer_range: 0.02,
      hidden_act: 'gelu',
    },
    fields: {
      hidden_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      intermediate_size: 'posint',
      encoder_hidden_size: 'posint',
      cross_attention_frequency: 'posint',
      num_query_tokens: 'nonneg',
      layer_norm_eps: 'posnum',
      ...dropouts('hidden_dropout_prob', 'attention_probs_dropout_prob'),
      initializer_range: 'nonnegnum',
      hidden_act: 'act',
    },
    divides: [['hidden_size', 'num_attention_heads']],
  },
  {
    name: 'LlamaForCausalLM',
    create: (c) => et.nn.LlamaForCausalLM.create(c),
    valid: {
      vocab_size: 40,
      hidden_size: 16,
      intermediate_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 0,
      max_position_embeddings: 32,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      rope_type: 'default',
      rope_factor: 1,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 32,
      initializer_range: 0.02,
      attention_dropout: 0,
      tie_word_embeddings: false,
      attention_bias: false,
      mlp_bias: false,
      hidden_act: 'silu',
      sliding_window: 3,
    },
    fields: {
      vocab_size: 'posint',
      hidden_size: 'posint',
      intermediate_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      num_key_value_heads: 'posint',
      head_dim: 'nonneg',
      max_position_embeddings: 'posint',
      rms_norm_eps: 'posnum',
      rope_theta: 'posnum',
      rope_type: { enum: ['default', 'linear', 'dynamic', 'llama3'] },
      rope_factor: 'posnum',
      low_freq_factor: 'posnum',
      high_freq_factor: 'posnum',
      original_max_position_embeddings: 'posint',
      initializer_range: 'nonnegnum',
      attention_dropout: 'prob',
      tie_word_embeddings: 'bool',
      attention_bias: 'bool',
      mlp_bias: 'bool',
      hidden_act: 'act',
      sliding_window: 'nonneg',
    },
    divides: [
      ['hidden_size', 'num_attention_heads'],
      ['num_attention_heads', 'num_key_value_heads'],
    ],
  },
  {
    name: 'Wav2Vec2Model',
    create: (c) => et.nn.Wav2Vec2Model.create(c),
    valid: {
      conv_dim: [8, 8],
      conv_kernel: [10, 3],
      conv_stride: [5, 2],
      conv_bias: true,
      feat_extract_norm: 'layer',
      feat_extract_activation: 'gelu',
      do_stable_layer_norm: true,
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      hidden_act: 'gelu',
      num_conv_pos_embeddings: 4,
      num_conv_pos_embedding_groups: 2,
      layer_norm_eps: 1e-5,
      layerdrop: 0,
      hidden_dropout: 0,
      attention_dropout: 0,
      activation_dropout: 0,
      feat_proj_dropout: 0,
      mask_time_prob: 0.05,
      mask_feature_prob: 0,
    },
    fields: {
      conv_dim: 'posintlist',
      conv_kernel: 'posintlist',
      conv_stride: 'posintlist',
      conv_bias: 'bool',
      feat_extract_norm: { enum: ['group', 'layer'] },
      feat_extract_activation: 'act',
      do_stable_layer_norm: 'bool',
      hidden_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      intermediate_size: 'posint',
      hidden_act: 'act',
      num_conv_pos_embeddings: 'posint',
      num_conv_pos_embedding_groups: 'posint',
      layer_norm_eps: 'posnum',
      ...dropouts('layerdrop', 'hidden_dropout', 'attention_dropout', 'activation_dropout', 'feat_proj_dropout', 'mask_time_prob', 'mask_feature_prob'),
    },
    divides: [
      ['hidden_size', 'num_attention_heads'],
      ['hidden_size', 'num_conv_pos_embedding_groups'],
    ],
    sameLength: [['conv_dim', 'conv_kernel', 'conv_stride']],
  },
  {
    name: 'ClipVisionModel',
    create: (c) => et.nn.ClipVisionModel.create(c),
    valid: {
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_channels: 3,
      image_size: 16,
      patch_size: 8,
      hidden_act: 'quick_gelu',
      layer_norm_eps: 1e-5,
      attention_dropout: 0,
      initializer_range: 0.02,
      initializer_factor: 1,
      projection_dim: 4,
      add_time_attn: true,
      num_frames: 2,
      tube_size: 0,
    },
    fields: {
      hidden_size: 'posint',
      intermediate_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      num_channels: 'posint',
      patch_size: 'posint',
      hidden_act: 'act',
      layer_norm_eps: 'posnum',
      attention_dropout: 'prob',
      initializer_range: 'nonnegnum',
      initializer_factor: 'nonnegnum',
      projection_dim: 'posint',
      add_time_attn: 'bool',
      num_frames: 'posint',
      tube_size: 'nonneg',
    },
    divides: [['hidden_size', 'num_attention_heads']],
  },
  {
    name: 'ClipTextModel',
    create: (c) => et.nn.ClipTextModel.create(c),
    valid: {
      vocab_size: 30,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      max_position_embeddings: 10,
      eos_token_id: 29,
      hidden_act: 'gelu',
      layer_norm_eps: 1e-5,
      attention_dropout: 0,
      initializer_range: 0.02,
      initializer_factor: 1,
      projection_dim: 4,
    },
    fields: {
      vocab_size: 'posint',
      hidden_size: 'posint',
      intermediate_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      max_position_embeddings: 'posint',
      hidden_act: 'act',
      layer_norm_eps: 'posnum',
      attention_dropout: 'prob',
      initializer_range: 'nonnegnum',
      initializer_factor: 'nonnegnum',
      projection_dim: 'posint',
    },
    divides: [['hidden_size', 'num_attention_heads']],
  },
  {
    name: 'InternVisionModel',
    create: (c) => et.nn.InternVisionModel.create(c),
    valid: {
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_channels: 3,
      patch_size: 4,
      image_size: 8,
      qkv_bias: true,
      qk_normalization: false,
      norm_type: 'layer_norm',
      hidden_act: 'gelu',
      layer_norm_eps: 1e-6,
      dropout: 0,
      attention_dropout: 0,
      drop_path_rate: 0,
      initializer_range: 0.02,
    },
    fields: {
      hidden_size: 'posint',
      intermediate_size: 'posint',
      num_hidden_layers: 'nonneg',
      num_attention_heads: 'posint',
      num_channels: 'posint',
      patch_size: 'posint',
      image_size: 'posint',
      qkv_bias: 'bool',
      qk_normalization: 'bool',
      norm_type: { enum: ['layer_norm', 'rms_norm'] },
      hidden_act: 'act',
      layer_norm_eps: 'posnum',
      ...dropouts('dropout', 'attention_dropout', 'drop_path_rate'),
      initializer_range: 'nonnegnum',
    },
    divides: [
      ['hidden_size', 'num_attention_heads'],
      ['image_size', 'patch_size'],
    ],
  },
  {
    name: 'InternVLProjector',
    create: (c) => et.nn.InternVLProjector.create(c),
    valid: { vit_hidden_size: 8, llm_hidden_size: 6, downsample_ratio: 0.5, ps_version: 'v2' },
    fields: { vit_hidden_size: 'posint', llm_hidden_size: 'posint', ps_version: { enum: ['v1', 'v2'] } },
  },
];

// ---- tensor ops ------------------------------------------------------------------------------

export interface UnaryOp {
  name: string;
  run(t: et.Tensor): unknown;
}
export interface BinaryOp {
  name: string;
  run(a: et.Tensor, b: et.Tensor): unknown;
  /** elementwise with broadcasting */ broadcast?: boolean;
}
export interface DimOp {
  name: string;
  run(t: et.Tensor, dim: number): unknown;
  /** The result shape for input `shape` reducing `dim` (a valid, normalized dim), when the op keeps no dim. */
  shape?(shape: number[], dim: number): number[];
}

const unary = (...names: (keyof et.Tensor)[]): UnaryOp[] => names.map((n) => ({ name: String(n), run: (t) => (t[n] as () => unknown).call(t) }));

export const UNARY_OPS: UnaryOp[] = [
  ...unary(
    'neg',
    'abs',
    'exp',
    'log',
    'sqrt',
    'rsqrt',
    'square',
    'reciprocal',
    'sin',
    'tanh',
    'sigmoid',
    'relu',
    'gelu',
    'silu',
    'floor',
    'round',
    'sign',
    'logicalNot',
    'isnan',
    'isfinite',
    'clone',
    'contiguous',
    'float',
    'long',
    'detach',
  ),
  { name: 'sum()', run: (t) => t.sum() },
  { name: 'mean()', run: (t) => t.mean() },
  { name: 'max()', run: (t) => t.max() },
  { name: 'argmax()', run: (t) => t.argmax() },
  { name: 'item()', run: (t) => t.item() },
  { name: 'dataSync()', run: (t) => t.dataSync() },
  { name: 'toArray()', run: (t) => t.toArray() },
  { name: 'flatten()', run: (t) => t.flatten() },
  { name: 'squeeze()', run: (t) => t.squeeze() },
  { name: 'clamp(0, 1)', run: (t) => t.clamp(0, 1) },
  { name: 'to(float16)', run: (t) => t.to({ dtype: 'float16' }) },
  { name: 'tril()', run: (t) => t.tril() },
  { name: 'norm()', run: (t) => t.norm() },
  { name: 'sort()', run: (t) => t.sort() },
  { name: 'topk(1)', run: (t) => t.topk(1) },
];

export const BINARY_OPS: BinaryOp[] = [
  { name: 'add', run: (a, b) => a.add(b), broadcast: true },
  { name: 'sub', run: (a, b) => a.sub(b), broadcast: true },
  { name: 'mul', run: (a, b) => a.mul(b), broadcast: true },
  { name: 'div', run: (a, b) => a.div(b), broadcast: true },
  { name: 'pow', run: (a, b) => a.pow(b), broadcast: true },
  { name: 'remainder', run: (a, b) => a.remainder(b), broadcast: true },
  { name: 'maximum', run: (a, b) => a.maximum(b), broadcast: true },
  { name: 'eq', run: (a, b) => a.eq(b), broadcast: true },
  { name: 'lt', run: (a, b) => a.lt(b), broadcast: true },
  { name: 'logicalAnd', run: (a, b) => a.logicalAnd(b), broadcast: true },
  { name: 'where', run: (a, b) => et.where(a.gt(0), a, b), broadcast: true },
  { name: 'matmul', run: (a, b) => a.matmul(b) },
  { name: 'maskedFill', run: (a, b) => a.maskedFill(b, 1) },
  { name: 'cat', run: (a, b) => et.cat([a, b]) },
  { name: 'stack', run: (a, b) => et.stack([a, b]) },
  { name: 'reshape(b.shape)', run: (a, b) => a.reshape(b.shape) },
  { name: 'expand(b.shape)', run: (a, b) => a.expand(b.shape) },
  { name: 'crossEntropy', run: (a, b) => et.functional.crossEntropy(a, b) },
  { name: 'mseLoss', run: (a, b) => et.functional.mseLoss(a, b) },
];

const dropDim = (s: number[], d: number) => s.filter((_, i) => i !== d);

export const DIM_OPS: DimOp[] = [
  { name: 'sum(dim)', run: (t, d) => t.sum(d), shape: dropDim },
  { name: 'mean(dim)', run: (t, d) => t.mean(d), shape: dropDim },
  { name: 'max(dim)', run: (t, d) => t.max(d), shape: dropDim },
  { name: 'argmax(dim)', run: (t, d) => t.argmax(d), shape: dropDim },
  { name: 'any(dim)', run: (t, d) => t.any(d), shape: dropDim },
  { name: 'logsumexp(dim)', run: (t, d) => t.logsumexp(d), shape: dropDim },
  { name: 'softmax(dim)', run: (t, d) => t.softmax(d), shape: (s) => s },
  { name: 'logSoftmax(dim)', run: (t, d) => t.logSoftmax(d), shape: (s) => s },
  { name: 'cumsum(dim)', run: (t, d) => t.cumsum(d), shape: (s) => s },
  { name: 'unsqueeze(dim)', run: (t, d) => t.unsqueeze(d) },
  { name: 'squeeze(dim)', run: (t, d) => t.squeeze(d) },
  { name: 'transpose(dim, 0)', run: (t, d) => t.transpose(d, 0) },
  { name: 'slice(dim, 1)', run: (t, d) => t.slice(d, 1) },
  { name: 'flatten(dim)', run: (t, d) => t.flatten(d) },
  { name: 'topk(2, dim)', run: (t, d) => t.topk(2, d) },
];

// ---- disposal --------------------------------------------------------------------------------

export interface DisposedUse {
  name: string;
  run(disposed: et.Tensor, live: et.Tensor): unknown;
}

export const DISPOSED_USES: DisposedUse[] = [
  { name: 'shape', run: (d) => d.shape },
  { name: 'dtype', run: (d) => d.dtype },
  { name: 'numel', run: (d) => d.numel },
  { name: 'dataSync()', run: (d) => d.dataSync() },
  { name: 'data()', run: (d) => d.data() },
  { name: 'item()', run: (d) => d.item() },
  { name: 'toArray()', run: (d) => d.toArray() },
  { name: 'add(live)', run: (d, l) => d.add(l) },
  { name: 'live.add(disposed)', run: (d, l) => l.add(d) },
  { name: 'live.matmul(disposed)', run: (d, l) => l.matmul(d) },
  { name: 'reshape', run: (d) => d.reshape([-1]) },
  { name: 'to(float64)', run: (d) => d.to({ dtype: 'float64' }) },
  { name: 'clone()', run: (d) => d.clone() },
  { name: 'sum()', run: (d) => d.sum() },
  { name: 'backward()', run: (d) => d.backward() },
  { name: 'cat([live, disposed])', run: (d, l) => et.cat([l, d]) },
  { name: 'where(cond, disposed, live)', run: (d, l) => et.where(l.gt(0), d, l) },
  { name: 'functional.mseLoss(disposed, live)', run: (d, l) => et.functional.mseLoss(d, l) },
  {
    name: 'set requiresGrad',
    run: (d) => {
      d.requiresGrad = true;
    },
  },
  {
    name: 'live.grad = disposed',
    run: (d, l) => {
      l.requiresGrad = true;
      l.grad = d;
    },
  },
  { name: 'zerosLike(disposed)', run: (d) => et.zerosLike(d) },
  { name: 'AdamW([disposed])', run: (d) => new et.optim.AdamW([d], { lr: 0.1 }) },
  { name: 'AdamWHF([disposed])', run: (d) => new et.optim.AdamWHF([d], { lr: 0.1 }) },
  { name: 'FusedAdam([disposed])', run: (d) => new et.optim.FusedAdam([d], { lr: 0.1 }) },
];

// ---- models: concurrency and disposal -------------------------------------------------------------

export interface ModelRow {
  name: string;
  create(): et.nn.Module;
  /** A random input for call `i` (deterministic in `seed`). */
  input(seed: number): Record<string, et.Tensor>;
  /** The output tensor to compare. */
  output(out: unknown): et.Tensor;
}

const rand = (seed: number, shape: number[]) => {
  et.manualSeed(seed);
  return et.randn(shape);
};
const ids = (seed: number, shape: number[], low: number, high: number) => {
  et.manualSeed(seed);
  return et.randint(low, high, shape);
};
const lastHidden = (o: unknown) => (o as { lastHiddenState: et.Tensor }).lastHiddenState;

export const MODEL_ROWS: ModelRow[] = [
  {
    name: 'WhisperEncoder',
    create: () => et.nn.WhisperEncoder.create(CONFIG_ROWS[0].valid),
    input: (s) => ({ inputFeatures: rand(s, [2, 8, 12]) }),
    output: lastHidden,
  },
  {
    name: 'BeatsEncoder',
    create: () => et.nn.BeatsEncoder.create(CONFIG_ROWS[1].valid),
    input: (s) => ({ inputFeatures: rand(s, [2, 32, 128]) }),
    output: lastHidden,
  },
  { name: 'WavLMModel', create: () => et.nn.WavLMModel.create(CONFIG_ROWS[2].valid), input: (s) => ({ inputValues: rand(s, [2, 400]) }), output: lastHidden },
  {
    name: 'RobertaModel',
    create: () => et.nn.RobertaModel.create(CONFIG_ROWS[3].valid),
    input: (s) => ({ inputIds: ids(s, [2, 7], 2, 50) }),
    output: lastHidden,
  },
  {
    name: 'QFormer',
    create: () => et.nn.QFormer.create(CONFIG_ROWS[4].valid),
    input: (s) => ({ encoderHiddenStates: rand(s, [2, 5, 12]) }),
    output: lastHidden,
  },
  {
    name: 'LlamaForCausalLM',
    create: () => et.nn.LlamaForCausalLM.create(CONFIG_ROWS[5].valid),
    input: (s) => ({ inputIds: ids(s, [2, 6], 0, 40) }),
    output: (o) => (o as { logits: et.Tensor }).logits,
  },
  {
    name: 'Wav2Vec2Model',
    create: () => et.nn.Wav2Vec2Model.create(CONFIG_ROWS.find((r) => r.name === 'Wav2Vec2Model')!.valid),
    input: (s) => ({ inputValues: rand(s, [2, 400]) }),
    output: lastHidden,
  },
  {
    // k-means units over a Wav2Vec2 layer (clip standardization with the mask, native argmin)
    name: 'audio.UnitExtractor',
    create: () => {
      et.manualSeed(5);
      const encoder = et.nn.Wav2Vec2Model.create(CONFIG_ROWS.find((r) => r.name === 'Wav2Vec2Model')!.valid);
      return new et.audio.UnitExtractor({ encoder, layer: 1, centroids: et.randn([6, 8]) });
    },
    input: (s) => ({ inputValues: rand(s, [2, 400]), attentionMask: et.cat([et.ones([2, 300]), et.zeros([2, 100])], 1) }),
    output: (o) => (o as { units: et.Tensor }).units,
  },
  // Systems: their batch tensors, each replaced by junk in turn.
  {
    name: 'systems.usdm.Usdm',
    create: () =>
      new et.systems.usdm.Usdm(et.nn.LlamaForCausalLM.create(CONFIG_ROWS[5].valid), {
        tokenIds: { newline: 5, space: 6, continue: 30, correspond: 31, unit0: 32, numUnits: 6, pad: 38, bos: 1 },
      }),
    input: (s) => ({ inputIds: ids(s, [2, 6], 0, 40), attentionMask: et.ones([2, 6], { dtype: 'int64' }), labels: ids(s + 1, [2, 6], 0, 40) }),
    output: (o) => (o as { logits: et.Tensor }).logits,
  },
  {
    name: 'systems.spectra.Spectra',
    create: () =>
      et.systems.spectra.Spectra.create({
        audio: { ...CONFIG_ROWS[2].valid, hidden_size: 16, mask_time_prob: 0 },
        text: { ...CONFIG_ROWS[3].valid, type_vocab_size: 2, num_fused_layers: 1 },
        num_class: 3,
      }),
    input: (s) => ({
      inputValues: rand(s, [2, 400]),
      audioAttentionMask: et.ones([2, 400], { dtype: 'int64' }),
      inputIds: ids(s, [2, 7], 2, 50),
      attentionMask: et.ones([2, 7], { dtype: 'int64' }),
      labels: ids(s, [2], 0, 3),
    }),
    output: (o) => (o as { logits: et.Tensor }).logits,
  },
  {
    name: 'ClipVisionModel',
    create: () => et.nn.ClipVisionModel.create(CONFIG_ROWS.find((r) => r.name === 'ClipVisionModel')!.valid),
    input: (s) => ({ pixelValues: rand(s, [2, 3, 2, 16, 16]) }),
    output: lastHidden,
  },
  {
    name: 'ClipTextModel',
    create: () => et.nn.ClipTextModel.create(CONFIG_ROWS.find((r) => r.name === 'ClipTextModel')!.valid),
    input: (s) => ({ inputIds: ids(s, [2, 6], 0, 30), attentionMask: et.ones([2, 6], { dtype: 'int64' }) }),
    output: lastHidden,
  },
  {
    name: 'InternVisionModel',
    create: () => et.nn.InternVisionModel.create(CONFIG_ROWS.find((r) => r.name === 'InternVisionModel')!.valid),
    input: (s) => ({ pixelValues: rand(s, [2, 3, 8, 8]) }),
    output: lastHidden,
  },
  {
    name: 'InternVLProjector',
    create: () => et.nn.InternVLProjector.create(CONFIG_ROWS.find((r) => r.name === 'InternVLProjector')!.valid),
    input: (s) => ({ hiddenStates: rand(s, [2, 5, 8]) }),
    output: (o) => (o as { imageTokens: et.Tensor }).imageTokens,
  },
  {
    name: 'systems.semeval.LanguageBindClassifier',
    create: () => et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video', 'language'], embedDim: 4 }),
    input: (s) => ({ features: rand(s, [3, 8]), labels: ids(s, [3], 0, 7) }),
    output: (o) => (o as { logits: et.Tensor }).logits,
  },
  {
    name: 'systems.semeval.ConcatFusionClassifier',
    create: () => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 8, audio: 4 } }),
    input: (s) => ({ features: rand(s, [3, 12]), labels: ids(s, [3], 0, 7) }),
    output: (o) => (o as { logits: et.Tensor }).logits,
  },
];

// ---- call options: one spelling, unknown names refused ------------------------------------------

/**
 * A public call that takes an options object: `call(opts)` runs it with `valid` (cheap values)
 * merged with the names under test. An unknown name, and each spelling in `wrong` (snake_case or
 * a config's name for a camelCase call option), must be an ERR_INVALID_ARG naming it, never
 * ignored (rule 11: camelCase call options, one spelling per knob).
 */
export interface OptionRow {
  name: string;
  call(opts: Record<string, unknown>): unknown;
  valid: Record<string, unknown>;
  wrong: string[];
}

const FIX = `${__dirname}/../fixtures`;
const once = <T>(make: () => Promise<T>) => {
  let p: Promise<T> | null = null;
  return () => (p ??= make());
};
const tinyLlama = once(async () => et.nn.LlamaForCausalLM.create(CONFIG_ROWS[5].valid));
const salmonn = once(async () =>
  et.systems.salmonn.Salmonn.fromPretrained({
    whisper: `${FIX}/whisper`,
    beats: `${FIX}/beats/beats.pt`,
    llm: `${FIX}/salmonn/llm`,
    checkpoint: null,
    config: JSON.parse(fs.readFileSync(`${FIX}/salmonn/config.json`, 'utf8')),
  }),
);
const llamaTok = once(() => et.data.Tokenizer.fromFile(`${FIX}/tokenizers/llama/tokenizer.json`));
const usdmIds = { newline: 5, space: 6, continue: 30, correspond: 31, unit0: 32, numUnits: 6, pad: 38, bos: 1 };
const codec = { encode: () => [7], decode: () => '' };
const spectraItem = { audio: new Float32Array(800).fill(0.1), textIds: [0, 5, 2], label: 1 };
const ecfItem = { conversationId: 1, utteranceId: 1, text: '', speaker: 'A', emotion: null, label: 1, causes: [], features: new Float32Array(4) };

export const OPTION_ROWS: OptionRow[] = [
  {
    name: 'nn.LlamaForCausalLM.generate',
    valid: { maxNewTokens: 1 },
    wrong: ['max_new_tokens', 'num_beams', 'eos_token_id', 'do_sample', 'min_new_tokens'],
    call: async (o) => (await tinyLlama()).generate({ inputIds: et.tensor([[1, 2]], { dtype: 'int64' }) }, o),
  },
  {
    name: 'systems.salmonn.Salmonn.generate',
    valid: { maxNewTokens: 1, numBeams: 1 },
    wrong: ['max_new_tokens', 'num_beams', 'min_length', 'top_p'],
    call: async (o) => (await salmonn()).generate([new Float32Array(4000)], 'Feel?', o),
  },
  {
    name: 'systems.salmonn.Salmonn.generateTokens',
    valid: { maxNewTokens: 1, numBeams: 1 },
    wrong: ['max_new_tokens', 'repetition_penalty'],
    call: async (o) => (await salmonn()).generateTokens([new Float32Array(4000)], 'Feel?', o),
  },
  {
    name: 'systems.usdm.Usdm.infer',
    valid: { maxNewTokens: 1 },
    wrong: ['max_new_tokens'],
    call: async (o) => new et.systems.usdm.Usdm(await tinyLlama(), { tokenIds: usdmIds }).infer([1, 2], codec, o),
  },
  {
    name: 'systems.usdm.Usdm (constructor)',
    valid: { tokenIds: usdmIds },
    wrong: ['token_ids'],
    call: async (o) => new et.systems.usdm.Usdm(await tinyLlama(), o),
  },
  { name: 'systems.usdm.Usdm.fromPretrained', valid: {}, wrong: ['add_unit_vocabulary'], call: (o) => et.systems.usdm.Usdm.fromPretrained('/nonexistent', o) },
  {
    name: 'systems.usdm.usdmSftExamples',
    valid: { codec },
    wrong: ['batch_size'],
    call: (o) => et.systems.usdm.usdmSftExamples([{ userAudio: 'a.wav', userText: 'a', agentText: 'b', agentAudio: 'b.wav' }], o as never),
  },
  {
    name: 'systems.m2se.m2seInfer',
    valid: { dataset: [], outFile: `${os.tmpdir()}/emotorch-options-row.jsonl`, maxNewTokens: 1 },
    wrong: ['max_new_tokens', 'out_file'],
    call: async (o) => et.systems.m2se.m2seInfer({ model: await tinyLlama(), tokenizer: await llamaTok(), ...o } as never),
  },
  {
    name: 'systems.m2se.m2seStages',
    valid: { stages: [] },
    wrong: ['output_dir'],
    call: async (o) => et.systems.m2se.m2seStages({ model: await tinyLlama(), tokenizer: await llamaTok(), ...o } as never),
  },
  {
    name: 'systems.m2se.m2seExamples',
    valid: { maxLength: 64 },
    wrong: ['max_length'],
    call: async (o) => et.systems.m2se.m2seExamples([], await llamaTok(), o),
  },
  { name: 'systems.m2se.m2seSalmonnItems', valid: {}, wrong: ['media_root'], call: async (o) => et.systems.m2se.m2seSalmonnItems([], await salmonn(), o) },
  {
    name: 'systems.salmonn.Salmonn.fromPretrained',
    valid: { whisper: '/nonexistent', llm: '/nonexistent' },
    wrong: ['max_new_tokens'],
    call: (o) => et.systems.salmonn.Salmonn.fromPretrained(o as never),
  },
  {
    name: 'systems.spectra.Spectra.fromPretrained',
    valid: {},
    wrong: ['num_class', 'mask_audio_cls'],
    call: (o) => et.systems.spectra.Spectra.fromPretrained('/nonexistent', o),
  },
  {
    name: 'systems.spectra.Spectra.collate',
    valid: { audioLength: 800 },
    wrong: ['audio_length', 'pad_token_id'],
    call: (o) => et.systems.spectra.Spectra.collate([spectraItem] as never, o),
  },
  { name: 'systems.spectra.Spectra.finetune', valid: { task: 'mosi' }, wrong: ['train_dataset'], call: (o) => et.systems.spectra.Spectra.finetune(o as never) },
  {
    name: 'systems.semeval.ConcatFusionClassifier.collate',
    valid: {},
    wrong: ['pad_token_id'],
    call: (o) => et.systems.semeval.ConcatFusionClassifier.collate([ecfItem] as never, o),
  },
  {
    name: 'systems.semeval.ConcatFusionClassifier.collateConversations',
    valid: {},
    wrong: ['dtype'],
    call: (o) => et.systems.semeval.ConcatFusionClassifier.collateConversations([[ecfItem]] as never, o),
  },
  {
    name: 'systems.semeval.embedUtterances',
    valid: { cacheFile: '/nonexistent/cache.safetensors' },
    wrong: ['batch_size'],
    call: (o) =>
      et.systems.semeval.embedUtterances(
        ['k'],
        async () => {
          throw new Error('not called');
        },
        o as never,
      ),
  },
];
