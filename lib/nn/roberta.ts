/** RoBERTa (HF RobertaModel), on native/models/roberta. */
import { NativeModule, ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, extendConfig, f, specOf, wireOf } from './config';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { PretrainedOptions, loadPretrained } from './pretrained';

/**
 * HF RobertaConfig fields (config.json names; defaults: RobertaConfig's). Whether the pooler is
 * built is not a config.json field: it is the `addPoolingLayer` option of `create` and
 * `fromPretrained`, as HF's `RobertaModel(config, add_pooling_layer)`.
 */
export const ROBERTA = declareConfig({
  name: 'RoBERTa',
  kind: 'roberta',
  options: ['addPoolingLayer'],
  fields: {
    vocab_size: f.posint(50265),
    hidden_size: f.posint(768),
    num_hidden_layers: f.nonneg(12),
    num_attention_heads: f.posint(12),
    intermediate_size: f.posint(3072),
    /** Position table size: RoBERTa's positions start after padding_idx (514 for 512 tokens). */
    max_position_embeddings: f.posint(514),
    /** Segment ids (1 for RoBERTa; SPECTRA uses 2). */
    type_vocab_size: f.posint(1),
    /** The padding token, whose position row RoBERTa skips. */
    pad_token_id: f.nonneg(1),
    layer_norm_eps: f.posnum(1e-12),
    hidden_dropout_prob: f.prob(0.1),
    attention_probs_dropout_prob: f.prob(0.1),
    initializer_range: f.nonnegnum(0.02),
    hidden_act: f.act('gelu'),
    /**
     * Whether the model has the pooler, as built (always set in `model.config`).
     * @deprecated as an input: pass `{ addPoolingLayer }` to `create` or `fromPretrained`; a config
     *   that gives it is still accepted until the next release. Read `model.addPoolingLayer`.
     */
    add_pooling_layer: f.bool(true),
  },
  check(c, given, opts) {
    if (opts.addPoolingLayer !== undefined) {
      if (typeof opts.addPoolingLayer !== 'boolean') invalid('a boolean', 'addPoolingLayer', opts.addPoolingLayer);
      const legacy = given.add_pooling_layer;
      if (legacy !== undefined && legacy !== null && legacy !== opts.addPoolingLayer) {
        invalid(
          'addPoolingLayer or its deprecated spelling config.add_pooling_layer, not both',
          'RobertaModel.create',
          `addPoolingLayer ${opts.addPoolingLayer} and add_pooling_layer ${legacy}`,
        );
      }
      c.add_pooling_layer = opts.addPoolingLayer;
    }
    if (c.hidden_size % c.num_attention_heads !== 0)
      invalid(`a multiple of num_attention_heads (${c.num_attention_heads})`, 'RoBERTa config.hidden_size', c.hidden_size);
    if (c.pad_token_id >= c.vocab_size) invalid(`a token id below vocab_size (${c.vocab_size})`, 'RoBERTa config.pad_token_id', c.pad_token_id);
  },
});

/**
 * HF RobertaConfig fields (config.json names; defaults: RobertaConfig's). Whether the pooler is
 * built is not a config.json field: it is the `addPoolingLayer` option of `create` and
 * `fromPretrained`, as HF's `RobertaModel(config, add_pooling_layer)`.
 * @interface
 */
export type RobertaConfig = ConfigOf<typeof ROBERTA>;

/** `num_layers` RoBERTa layers over given hidden states (native kind `roberta_layers`). */
const ROBERTA_LAYERS = extendConfig(ROBERTA, 'roberta_layers', { num_layers: f.derived('i64', (_: unknown, o: { numLayers: number }) => o.numLayers) });

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
export const ROBERTA_DEFAULTS: RobertaConfig = defaultsOf(ROBERTA);

/** Kind of each config field (for systems that build a RoBERTa config of their own). */
export const SPEC = specOf(ROBERTA);

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
export class RobertaModel extends ConfiguredModule<RobertaConfig> {
  /** Whether the model has the pooler (`poolerOutput` is null without it). */
  get addPoolingLayer(): boolean {
    return this.config.add_pooling_layer;
  }

  /**
   * A randomly initialized model (BERT init, N(0, initializer_range)).
   * @param config HF config.json fields (missing ones take the defaults)
   * @param opts `device`, `dtype`, `addPoolingLayer` (default true)
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field or option
   * @example
   * const encoder = et.nn.RobertaModel.create({ vocab_size: 100, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64 }, { addPoolingLayer: false });
   */
  static create(config: Partial<RobertaConfig> = {}, opts: RobertaOptions = {}): RobertaModel {
    return new RobertaModel(ROBERTA, config, opts);
  }

  /**
   * Loads a local HF checkpoint folder (`config.json` + weights). Keys may carry a `roberta.`
   * prefix (from *ForSequenceClassification checkpoints); other heads are ignored. A checkpoint
   * without pooler weights loads without the pooler (`addPoolingLayer` decides otherwise; the
   * deprecated `config: { add_pooling_layer }` is read as it).
   */
  static async fromPretrained(dir: string, opts: RobertaPretrainedOptions = {}): Promise<RobertaModel> {
    return loadPretrained(ROBERTA, RobertaModel, dir, opts, {
      options: ['addPoolingLayer'],
      prefixes: ['roberta.'],
      keep: /^(?!.*\.(?:position_ids|token_type_ids)$)(?:embeddings|encoder|pooler)\./,
      create: (c, { sd }) =>
        RobertaModel.create(
          { ...c, add_pooling_layer: undefined },
          {
            addPoolingLayer:
              opts.addPoolingLayer ??
              (opts.config as Partial<RobertaConfig> | undefined)?.add_pooling_layer ??
              [...sd.keys()].some((k) => k.startsWith('pooler.')),
          },
        ),
    });
  }

  /**
   * @returns `{ lastHiddenState }` (batch, length, hidden) and `poolerOutput` (batch, hidden) or null;
   *   an empty batch gives empty outputs
   * @throws EmotorchError for missing, mis-shaped or zero-length inputs.
   */
  async forward(inputs: RobertaInputs): Promise<RobertaOutputs> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor)
      invalid('an inputs object ({ inputIds, attentionMask, … })', 'RoBERTa inputs', inputs);
    const { inputIds, attentionMask, tokenTypeIds, inputsEmbeds } = inputs;
    if (!!inputIds === !!inputsEmbeds) throw new EmotorchError('RoBERTa: give exactly one of inputIds and inputsEmbeds', 'ERR_INVALID_ARG');
    let bt: number[];
    if (inputIds) {
      checkTensor(inputIds, 'inputIds');
      if (inputIds.ndim !== 2 || (inputIds.dtype !== 'int64' && inputIds.dtype !== 'int32'))
        invalid('an int64 tensor (batch, length)', 'inputIds', `${inputIds.dtype} [${inputIds.shape}]`);
      bt = inputIds.shape;
    } else {
      checkTensor(inputsEmbeds, 'inputsEmbeds');
      const s = inputsEmbeds!.shape;
      if (s.length !== 3 || s[2] !== this.config.hidden_size) invalid(`a tensor (batch, length, ${this.config.hidden_size})`, 'inputsEmbeds', `[${s}]`);
      bt = s.slice(0, 2);
    }
    for (const [name, t] of [
      ['attentionMask', attentionMask],
      ['tokenTypeIds', tokenTypeIds],
    ] as const) {
      if (t && checkTensor(t, name).shape.join() !== bt.join()) invalid(`shape [${bt}]`, name, `[${t.shape}]`);
    }
    this.checkLength(bt[1], inputIds ? 'inputIds' : 'inputsEmbeds');
    if (bt[0] === 0) {
      const dev = (inputIds ?? inputsEmbeds)!.device;
      return {
        lastHiddenState: this.emptyOutput([0, bt[1], this.config.hidden_size], dev),
        poolerOutput: this.config.add_pooling_layer ? this.emptyOutput([0, this.config.hidden_size], dev) : null,
      };
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
    super(ROBERTA_LAYERS.kind, wireOf(ROBERTA_LAYERS, config, { numLayers }), opts);
    this.numLayers = numLayers;
  }
  /** @returns `{ lastHiddenState }` (batch, length, hidden) after every layer; `attentionMask` (batch, length) 1 = attend. */
  async forward(inputs: { hiddenStates: Tensor; attentionMask?: Tensor | null }): Promise<{ lastHiddenState: Tensor }> {
    return { lastHiddenState: (await this.run({ hidden_states: inputs.hiddenStates, attention_mask: inputs.attentionMask })).last_hidden_state! };
  }
}
