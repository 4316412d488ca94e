/** RoBERTa (HF RobertaModel), on native/models/roberta. */
import { NativeModule, ModuleOptions, lockConfig, checkModuleOptions } from './module';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { ConfigSpec, PretrainedOptions, createForCheckpoint, finishPretrained, loadCheckpoint, readConfig, resolveConfig, stripPrefix, withOverrides, pretrainedPath, checkPretrainedOptions } from './pretrained';

/**
 * HF RobertaConfig fields (config.json names; defaults: RobertaConfig's). Whether the pooler is
 * built is not a config.json field: it is the `addPoolingLayer` option of `create` and
 * `fromPretrained`, as HF's `RobertaModel(config, add_pooling_layer)`.
 */
export interface RobertaConfig {
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  max_position_embeddings: number;
  type_vocab_size: number;
  pad_token_id: number;
  layer_norm_eps: number;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  initializer_range: number;
  hidden_act: string;
  /**
   * Whether the model has the pooler, as built (always set in `model.config`).
   * @deprecated as an input: pass `{ addPoolingLayer }` to `create` or `fromPretrained`; a config
   *   that gives it is still accepted until the next release. Read `model.addPoolingLayer`.
   */
  add_pooling_layer: boolean;
}

/** Options of {@link RobertaModel.create}. */
export interface RobertaOptions extends ModuleOptions {
  /** Build the pooler (tanh(dense(first token)) → `poolerOutput`); HF's `add_pooling_layer`. Default true. */
  addPoolingLayer?: boolean;
}

/** Options of {@link RobertaModel.fromPretrained}. */
export interface RobertaPretrainedOptions extends PretrainedOptions<RobertaConfig> {
  /** Build the pooler; default: when the checkpoint has pooler weights. */
  addPoolingLayer?: boolean;
}

/** The RobertaConfig values (HF's roberta-base) used for the fields a config leaves out. */
export const ROBERTA_DEFAULTS: RobertaConfig = {
  vocab_size: 50265, hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072,
  max_position_embeddings: 514, type_vocab_size: 1, pad_token_id: 1, layer_norm_eps: 1e-12, hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1, initializer_range: 0.02, hidden_act: 'gelu', add_pooling_layer: true,
};

/** Kind of each config field (for systems that build a RoBERTa config of their own). */
export const SPEC: ConfigSpec<RobertaConfig> = {
  vocab_size: 'posint', hidden_size: 'posint', num_hidden_layers: 'nonneg', num_attention_heads: 'posint', intermediate_size: 'posint',
  max_position_embeddings: 'posint', type_vocab_size: 'posint', pad_token_id: 'nonneg', layer_norm_eps: 'posnum', hidden_dropout_prob: 'prob',
  attention_probs_dropout_prob: 'prob', initializer_range: 'nonnegnum', hidden_act: 'act', add_pooling_layer: 'bool',
};

/** Named inputs of `RobertaModel.forward` (HF's argument names, camelCase). */
export interface RobertaInputs {
  /** (batch, length) int64 token ids; or give `inputsEmbeds`. */
  inputIds?: Tensor;
  /** (batch, length): 1 for tokens, 0 for padding. */
  attentionMask?: Tensor;
  /** (batch, length) segment ids (SPECTRA: 0 history, 1 current turn). */
  tokenTypeIds?: Tensor;
  /** (batch, length, hidden) instead of inputIds (positions then count from padding_idx + 1). */
  inputsEmbeds?: Tensor;
}

/** Named outputs of `RobertaModel.forward` (HF's output names, camelCase). */
export interface RobertaOutputs {
  lastHiddenState: Tensor;
  /** tanh(dense(first token)); null without the pooler. */
  poolerOutput: Tensor | null;
}

/**
 * RoBERTa encoder: embeddings (RoBERTa positions skip padding), post-LN layers, optional pooler.
 * @example
 * const roberta = await et.nn.RobertaModel.fromPretrained('roberta-base/');
 * const { lastHiddenState } = await roberta.forward({ inputIds, attentionMask });
 */
export class RobertaModel extends NativeModule {
  declare readonly config: RobertaConfig;
  private constructor(config: RobertaConfig, opts: ModuleOptions) {
    super('roberta', config, opts);
    lockConfig(this, 'RoBERTa', config);
  }

  /** Whether the model has the pooler (`poolerOutput` is null without it). */
  get addPoolingLayer(): boolean { return this.config.add_pooling_layer; }

  /**
   * A randomly initialized model (BERT init, N(0, initializer_range)).
   * @param config HF config.json fields (missing ones take the defaults)
   * @param opts `device`, `dtype`, `addPoolingLayer` (default true)
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field or option
   * @example
   * const encoder = et.nn.RobertaModel.create({ vocab_size: 100, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64 }, { addPoolingLayer: false });
   */
  static create(config: Partial<RobertaConfig> = {}, opts: RobertaOptions = {}): RobertaModel {
    opts = checkModuleOptions(opts, 'RobertaModel.create', ['addPoolingLayer']);
    const c = resolveConfig('RoBERTa', ROBERTA_DEFAULTS, SPEC, config);
    if (opts.addPoolingLayer !== undefined) {
      if (typeof opts.addPoolingLayer !== 'boolean') invalid('a boolean', 'addPoolingLayer', opts.addPoolingLayer);
      const legacy = (config as Partial<RobertaConfig>).add_pooling_layer;
      if (legacy !== undefined && legacy !== null && legacy !== opts.addPoolingLayer) {
        invalid('addPoolingLayer or its deprecated spelling config.add_pooling_layer, not both', 'RobertaModel.create', `addPoolingLayer ${opts.addPoolingLayer} and add_pooling_layer ${legacy}`);
      }
      c.add_pooling_layer = opts.addPoolingLayer;
    }
    if (c.hidden_size % c.num_attention_heads !== 0) invalid(`a multiple of num_attention_heads (${c.num_attention_heads})`, 'RoBERTa config.hidden_size', c.hidden_size);
    if (c.pad_token_id >= c.vocab_size) invalid(`a token id below vocab_size (${c.vocab_size})`, 'RoBERTa config.pad_token_id', c.pad_token_id);
    return new RobertaModel(c, opts);
  }

  /**
   * Loads a local HF checkpoint folder (`config.json` + weights). Keys may carry a `roberta.`
   * prefix (from *ForSequenceClassification checkpoints); other heads are ignored. A checkpoint
   * without pooler weights loads without the pooler (`addPoolingLayer` decides otherwise; the
   * deprecated `config: { add_pooling_layer }` is read as it).
   */
  static async fromPretrained(dir: string, opts: RobertaPretrainedOptions = {}): Promise<RobertaModel> {
    opts = checkPretrainedOptions(opts, 'RobertaModel.fromPretrained', ['addPoolingLayer']);
    dir = await pretrainedPath(dir, opts);
    const cfg = readConfig(dir);
    let sd = stripPrefix(await loadCheckpoint(dir), ['roberta.']);
    sd = new Map([...sd].filter(([k]) => /^(embeddings|encoder|pooler)\./.test(k) && !k.endsWith('.position_ids') && !k.endsWith('.token_type_ids')));
    const legacy = (opts.config as Partial<RobertaConfig> | undefined)?.add_pooling_layer;
    const pool = opts.addPoolingLayer ?? legacy ?? [...sd.keys()].some((k) => k.startsWith('pooler.'));
    const model = createForCheckpoint(opts, () => RobertaModel.create({ ...withOverrides('RoBERTa', SPEC, cfg, opts.config), add_pooling_layer: undefined }, { addPoolingLayer: pool }));
    return finishPretrained(model, sd, opts);
  }

  /**
   * @returns `{ lastHiddenState }` (batch, length, hidden) and `poolerOutput` (batch, hidden) or null;
   *   an empty batch gives empty outputs
   * @throws EmotorchError for missing, mis-shaped or zero-length inputs.
   */
  async forward(inputs: RobertaInputs): Promise<RobertaOutputs> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor) invalid('an inputs object ({ inputIds, attentionMask, … })', 'RoBERTa inputs', inputs);
    const { inputIds, attentionMask, tokenTypeIds, inputsEmbeds } = inputs;
    if (!!inputIds === !!inputsEmbeds) throw new EmotorchError('RoBERTa: give exactly one of inputIds and inputsEmbeds', 'ERR_INVALID_ARG');
    let bt: number[];
    if (inputIds) {
      checkTensor(inputIds, 'inputIds');
      if (inputIds.ndim !== 2 || (inputIds.dtype !== 'int64' && inputIds.dtype !== 'int32')) invalid('an int64 tensor (batch, length)', 'inputIds', `${inputIds.dtype} [${inputIds.shape}]`);
      bt = inputIds.shape;
    } else {
      checkTensor(inputsEmbeds, 'inputsEmbeds');
      const s = inputsEmbeds!.shape;
      if (s.length !== 3 || s[2] !== this.config.hidden_size) invalid(`a tensor (batch, length, ${this.config.hidden_size})`, 'inputsEmbeds', `[${s}]`);
      bt = s.slice(0, 2);
    }
    for (const [name, t] of [['attentionMask', attentionMask], ['tokenTypeIds', tokenTypeIds]] as const) {
      if (t && (checkTensor(t, name).shape.join() !== bt.join())) invalid(`shape [${bt}]`, name, `[${t.shape}]`);
    }
    this.checkLength(bt[1], inputIds ? 'inputIds' : 'inputsEmbeds');
    if (bt[0] === 0) {
      const dev = (inputIds ?? inputsEmbeds)!.device;
      return { lastHiddenState: this.emptyOutput([0, bt[1], this.config.hidden_size], dev), poolerOutput: this.config.add_pooling_layer ? this.emptyOutput([0, this.config.hidden_size], dev) : null };
    }
    const o = await this.run({ input_ids: inputIds, attention_mask: attentionMask, token_type_ids: tokenTypeIds, inputs_embeds: inputsEmbeds });
    return { lastHiddenState: o.last_hidden_state!, poolerOutput: o.pooler_output ?? null };
  }
}

/**
 * `num_layers` RoBERTa layers over given hidden states, keys `N.*` (SPECTRA's `fused_encoder`, the
 * ECF classifier's dialogue context), on native/models/roberta's RobertaLayers.
 */
export class RobertaLayers extends NativeModule {
  readonly numLayers: number;
  constructor(config: RobertaConfig, numLayers: number, opts: ModuleOptions = {}) {
    super('roberta_layers', { ...config, num_layers: numLayers }, opts);
    this.numLayers = numLayers;
  }
  /** @returns `{ lastHiddenState }` (batch, length, hidden) after every layer; `attentionMask` (batch, length) 1 = attend. */
  async forward(inputs: { hiddenStates: Tensor; attentionMask?: Tensor | null }): Promise<{ lastHiddenState: Tensor }> {
    return { lastHiddenState: (await this.run({ hidden_states: inputs.hiddenStates, attention_mask: inputs.attentionMask })).last_hidden_state! };
  }
}
