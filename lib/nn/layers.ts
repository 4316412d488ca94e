/** Built-in general layers on native modules: Linear, Mlp, LayerNorm, Embedding. */
import { NativeModule, ModuleOptions, lockConfig, checkModuleOptions } from './module';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, checkInt, checkNumber, invalid } from '../errors';

function lastDim(x: Tensor, want: number, who: string): void {
  checkTensor(x, `${who} input`);
  const s = x.shape;
  if (s.length === 0 || s[s.length - 1] !== want) {
    throw new EmotorchError(`${who}: expected input of shape [..., ${want}] but received [${s}]`, 'ERR_INVALID_ARG');
  }
}

/** A Linear layer's sizes and bias (torch.nn.Linear's arguments). */
export interface LinearConfig {
  in_features: number;
  out_features: number;
  /** default true */
  bias?: boolean;
}

/**
 * y = x Wᵀ + b, initialized as torch.nn.Linear. Parameters `weight` (out, in) and `bias` (out).
 * @example
 * const lin = et.nn.Linear.create({ in_features: 4, out_features: 2 });
 * const y = await lin.forward(et.randn([8, 4]));   // [8, 2]
 */
export class Linear extends NativeModule {
  declare readonly config: Required<LinearConfig>;
  private constructor(config: Required<LinearConfig>, opts: ModuleOptions) {
    super('linear', config, opts);
    lockConfig(this, 'Linear', config);
  }
  /** @throws EmotorchError for a bad config, dtype or device. */
  static create(config: LinearConfig, opts: ModuleOptions = {}): Linear {
    opts = checkModuleOptions(opts, 'Linear.create');
    if (!config || typeof config !== 'object') invalid('a config object', 'Linear config', config);
    const c = { in_features: checkInt(config.in_features, 'in_features', 1), out_features: checkInt(config.out_features, 'out_features', 1), bias: config.bias ?? true };
    return new Linear(c, opts);
  }
  async forward(x: Tensor): Promise<Tensor> {
    lastDim(x, this.config.in_features, 'Linear');
    return (await this.run({ input: x })).output!;
  }
}

/** The activation functions layers take by name (HF's `hidden_act` names). */
export type Activation = 'relu' | 'gelu' | 'quick_gelu' | 'gelu_tanh' | 'tanh' | 'silu' | 'sigmoid' | 'identity';
const ACTIVATIONS: Activation[] = ['relu', 'gelu', 'quick_gelu', 'gelu_tanh', 'tanh', 'silu', 'sigmoid', 'identity'];

/** An Mlp's layer sizes, activation and dropout. */
export interface MlpConfig {
  /** Layer widths, input first: [in, hidden…, out]. */
  sizes: number[];
  /** Between layers (not after the last); default 'relu'. */
  activation?: Activation;
  /** Dropout after each activation while training; default 0. */
  dropout?: number;
  bias?: boolean;
}

/**
 * A stack of Linear layers (`layers.N.weight`, `layers.N.bias`) with an activation between them.
 * @example
 * const mlp = et.nn.Mlp.create({ sizes: [16, 64, 4], activation: 'gelu', dropout: 0.1 });
 */
export class Mlp extends NativeModule {
  declare readonly config: Required<MlpConfig>;
  private constructor(config: Required<MlpConfig>, opts: ModuleOptions) {
    super('mlp', config, opts);
    lockConfig(this, 'Mlp', config);
  }
  /** An Mlp with random weights. */
  static create(config: MlpConfig, opts: ModuleOptions = {}): Mlp {
    opts = checkModuleOptions(opts, 'Mlp.create');
    if (!config || typeof config !== 'object') invalid('a config object', 'Mlp config', config);
    if (!Array.isArray(config.sizes) || config.sizes.length < 2) invalid('an array of at least two layer sizes', 'sizes', config.sizes);
    config.sizes.forEach((s, i) => checkInt(s, `sizes[${i}]`, 1));
    const activation = config.activation ?? 'relu';
    if (!ACTIVATIONS.includes(activation)) invalid(`one of ${ACTIVATIONS.join(', ')}`, 'activation', activation);
    const c = { sizes: [...config.sizes], activation, dropout: checkNumber(config.dropout ?? 0, 'dropout', 0, 1), bias: config.bias ?? true };
    return new Mlp(c, opts);
  }
  async forward(x: Tensor): Promise<Tensor> {
    lastDim(x, this.config.sizes[0], 'Mlp');
    return (await this.run({ input: x })).output!;
  }
}

/** A LayerNorm's size and epsilon (torch.nn.LayerNorm's arguments). */
export interface LayerNormConfig {
  normalized_shape: number;
  eps?: number;
  elementwise_affine?: boolean;
}

/** Layer normalization over the last dimension (torch.nn.LayerNorm). */
export class LayerNorm extends NativeModule {
  declare readonly config: Required<LayerNormConfig>;
  private constructor(config: Required<LayerNormConfig>, opts: ModuleOptions) {
    super('layer_norm', config, opts);
    lockConfig(this, 'LayerNorm', config);
  }
  /** A LayerNorm with weight 1 and bias 0 (as torch). */
  static create(config: LayerNormConfig, opts: ModuleOptions = {}): LayerNorm {
    opts = checkModuleOptions(opts, 'LayerNorm.create');
    const c = { normalized_shape: checkInt(config?.normalized_shape, 'normalized_shape', 1), eps: checkNumber(config.eps ?? 1e-5, 'eps', 0), elementwise_affine: config.elementwise_affine ?? true };
    return new LayerNorm(c, opts);
  }
  async forward(x: Tensor): Promise<Tensor> {
    lastDim(x, this.config.normalized_shape, 'LayerNorm');
    return (await this.run({ input: x })).output!;
  }
}

/** An Embedding table's size and padding index (torch.nn.Embedding's arguments). */
export interface EmbeddingConfig {
  num_embeddings: number;
  embedding_dim: number;
  padding_idx?: number;
}

/** A lookup table of `num_embeddings` vectors (torch.nn.Embedding). */
export class Embedding extends NativeModule {
  declare readonly config: EmbeddingConfig;
  private constructor(config: EmbeddingConfig, opts: ModuleOptions) {
    super('embedding', { ...config, padding_idx: config.padding_idx ?? -1 }, opts);  // -1: no padding row (torch's None)
    lockConfig(this, 'Embedding', config);
  }
  /** An Embedding with random weights (as torch: N(0, 1)). */
  static create(config: EmbeddingConfig, opts: ModuleOptions = {}): Embedding {
    opts = checkModuleOptions(opts, 'Embedding.create');
    const n = checkInt(config?.num_embeddings, 'num_embeddings', 1);
    const c: EmbeddingConfig = { num_embeddings: n, embedding_dim: checkInt(config.embedding_dim, 'embedding_dim', 1) };
    if (config.padding_idx !== undefined) {
      if (checkInt(config.padding_idx, 'padding_idx', 0) >= n) invalid(`an index below num_embeddings (${n})`, 'padding_idx', config.padding_idx);
      c.padding_idx = config.padding_idx;
    }
    return new Embedding(c, opts);
  }
  /**
   * The table's rows at `ids`.
   * @param ids integer ids of any shape → (...ids.shape, embedding_dim)
   */
  async forward(ids: Tensor): Promise<Tensor> {
    checkTensor(ids, 'Embedding ids');
    if (ids.dtype !== 'int64' && ids.dtype !== 'int32') invalid('an int64 or int32 tensor of ids', 'Embedding ids', `dtype ${ids.dtype}`);
    return (await this.run({ input: ids })).output!;
  }
}
