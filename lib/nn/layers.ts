/** Built-in general layers on native modules: Linear, Mlp, LayerNorm, Embedding. */
import type { ModuleOptions } from './module';
import { ConfiguredModule, GivenOf, declareConfig, f } from './config';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, checkInt, invalid } from '../errors';

function lastDim(x: Tensor, want: number, who: string): void {
  checkTensor(x, `${who} input`);
  const s = x.shape;
  if (s.length === 0 || s[s.length - 1] !== want) {
    throw new EmotorchError(`${who}: expected input of shape [..., ${want}] but received [${s}]`, 'ERR_INVALID_ARG');
  }
}

/** A Linear layer's sizes and bias (torch.nn.Linear's arguments). */
const LINEAR = declareConfig({
  name: 'Linear',
  kind: 'linear',
  bare: true,
  fields: {
    in_features: f.posint(),
    out_features: f.posint(),
    /** default true */
    bias: f.bool(true),
  },
});

/**
 * A Linear layer's sizes and bias (torch.nn.Linear's arguments).
 * @interface
 */
export type LinearConfig = GivenOf<typeof LINEAR>;

/**
 * y = x Wᵀ + b, initialized as torch.nn.Linear. Parameters `weight` (out, in) and `bias` (out).
 * @example
 * const lin = et.nn.Linear.create({ in_features: 4, out_features: 2 });
 * const y = await lin.forward(et.randn([8, 4]));   // [8, 2]
 */
export class Linear extends ConfiguredModule<Required<LinearConfig>> {
  /** @throws EmotorchError for a bad config, dtype or device. */
  static create(config: LinearConfig, opts: ModuleOptions = {}): Linear {
    return new Linear(LINEAR, config, opts);
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
const MLP = declareConfig({
  name: 'Mlp',
  kind: 'mlp',
  bare: true,
  fields: {
    /** Layer widths, input first: [in, hidden…, out]. */
    sizes: f.ints(),
    /** Between layers (not after the last); default 'relu'. */
    activation: f.any<Activation>('str', 'relu'),
    /** Dropout after each activation while training; default 0. */
    dropout: f.prob(0),
    bias: f.bool(true),
  },
  check(c) {
    if (!Array.isArray(c.sizes) || c.sizes.length < 2) invalid('an array of at least two layer sizes', 'sizes', c.sizes);
    c.sizes.forEach((s, i) => checkInt(s, `sizes[${i}]`, 1));
    if (!ACTIVATIONS.includes(c.activation)) invalid(`one of ${ACTIVATIONS.join(', ')}`, 'activation', c.activation);
  },
});

/**
 * An Mlp's layer sizes, activation and dropout.
 * @interface
 */
export type MlpConfig = GivenOf<typeof MLP>;

/**
 * A stack of Linear layers (`layers.N.weight`, `layers.N.bias`) with an activation between them.
 * @example
 * const mlp = et.nn.Mlp.create({ sizes: [16, 64, 4], activation: 'gelu', dropout: 0.1 });
 */
export class Mlp extends ConfiguredModule<Required<MlpConfig>> {
  /** An Mlp with random weights. */
  static create(config: MlpConfig, opts: ModuleOptions = {}): Mlp {
    return new Mlp(MLP, config, opts);
  }
  async forward(x: Tensor): Promise<Tensor> {
    lastDim(x, this.config.sizes[0], 'Mlp');
    return (await this.run({ input: x })).output!;
  }
}

/** A LayerNorm's size and epsilon (torch.nn.LayerNorm's arguments). */
const LAYER_NORM = declareConfig({
  name: 'LayerNorm',
  kind: 'layer_norm',
  bare: true,
  fields: {
    normalized_shape: f.posint(),
    eps: f.nonnegnum(1e-5),
    elementwise_affine: f.bool(true),
  },
});

/**
 * A LayerNorm's size and epsilon (torch.nn.LayerNorm's arguments).
 * @interface
 */
export type LayerNormConfig = GivenOf<typeof LAYER_NORM>;

/** Layer normalization over the last dimension (torch.nn.LayerNorm). */
export class LayerNorm extends ConfiguredModule<Required<LayerNormConfig>> {
  /** A LayerNorm with weight 1 and bias 0 (as torch). */
  static create(config: LayerNormConfig, opts: ModuleOptions = {}): LayerNorm {
    return new LayerNorm(LAYER_NORM, config, opts);
  }
  async forward(x: Tensor): Promise<Tensor> {
    lastDim(x, this.config.normalized_shape, 'LayerNorm');
    return (await this.run({ input: x })).output!;
  }
}

/** An Embedding table's size and padding index (torch.nn.Embedding's arguments). */
const EMBEDDING = declareConfig({
  name: 'Embedding',
  kind: 'embedding',
  bare: true,
  fields: {
    num_embeddings: f.posint(),
    embedding_dim: f.posint(),
    /** A row kept at zero without a gradient (sent as -1 when left out: torch's None). */
    padding_idx: f
      .nonneg()
      .optional()
      .sends((c: Record<string, number | undefined>) => c.padding_idx ?? -1),
  },
  check(c) {
    if (c.padding_idx !== undefined && c.padding_idx >= c.num_embeddings)
      invalid(`an index below num_embeddings (${c.num_embeddings})`, 'padding_idx', c.padding_idx);
  },
});

/**
 * An Embedding table's size and padding index (torch.nn.Embedding's arguments).
 * @interface
 */
export type EmbeddingConfig = GivenOf<typeof EMBEDDING>;

/** A lookup table of `num_embeddings` vectors (torch.nn.Embedding). */
export class Embedding extends ConfiguredModule<EmbeddingConfig> {
  /** An Embedding with random weights (as torch: N(0, 1)). */
  static create(config: EmbeddingConfig, opts: ModuleOptions = {}): Embedding {
    return new Embedding(EMBEDDING, config, opts);
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
