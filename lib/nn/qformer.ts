/** Q-Former (HF Blip2QFormerModel; LAVIS / SALMONN checkpoints through a rename table), on native/models/qformer. */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f } from './config';
import { Tensor, checkTensor } from '../tensor';
import { invalid } from '../errors';
import { PretrainedOptions, Rename, loadCheckpoint, loadPretrained, readConfig, renameKeys, stripPrefix } from './pretrained';

/** Blip2QFormerConfig fields and defaults, plus `num_query_tokens` (queries the model owns; 0 = given per call). */
export const QFORMER = declareConfig({
  name: 'Q-Former',
  title: 'QFormer',
  kind: 'qformer',
  fields: {
    hidden_size: f.posint(768),
    num_hidden_layers: f.nonneg(12),
    num_attention_heads: f.posint(12),
    intermediate_size: f.posint(3072),
    /** Width of the states the queries cross-attend to. */
    encoder_hidden_size: f.posint(1408),
    /** Every how many layers one cross-attends (1: every layer). */
    cross_attention_frequency: f.posint(2),
    /** Queries the model owns (`query_tokens`); 0: given per call as `queryEmbeds`. */
    num_query_tokens: f.nonneg(0),
    layer_norm_eps: f.posnum(1e-12),
    hidden_dropout_prob: f.prob(0.1),
    attention_probs_dropout_prob: f.prob(0.1),
    initializer_range: f.nonnegnum(0.02),
    hidden_act: f.act('gelu'),
  },
  check(c) {
    if (c.hidden_size % c.num_attention_heads !== 0) invalid('a multiple of num_attention_heads', 'Q-Former config.hidden_size', c.hidden_size);
  },
});

/**
 * Blip2QFormerConfig fields and defaults, plus `num_query_tokens` (queries the model owns; 0 = given per call).
 * @interface
 */
export type QFormerConfig = ConfigOf<typeof QFORMER>;

/** The QFormerConfig values used for the fields a config leaves out. */
export const QFORMER_DEFAULTS: QFormerConfig = defaultsOf(QFORMER);

export interface QFormerInputs {
  /** (batch, Q, hidden) queries; omitted: the model's own query_tokens. */
  queryEmbeds?: Tensor;
  /** (batch, S, encoder_hidden_size) states the queries cross-attend to. */
  encoderHiddenStates: Tensor;
  /** (batch, S): 1 = attend, 0 = padding. */
  encoderAttentionMask?: Tensor;
}
export interface QFormerOutputs {
  /** (batch, Q, hidden) */
  lastHiddenState: Tensor;
}

/** LAVIS / SALMONN BERT names → HF Blip2QFormerModel names (prefixes such as `speech_Qformer.` removed first). */
export const LAVIS_QFORMER_RENAMES: readonly Rename[] = [
  { from: /^bert\.embeddings\.LayerNorm\./, to: 'layernorm.' },
  { from: /^bert\.embeddings\./, to: null }, // word/position embeddings: unused by the query path
  { from: /^cls\./, to: null },
  { from: /^bert\.encoder\.layer\.(\d+)\.(attention|crossattention)\.self\./, to: 'encoder.layer.$1.$2.attention.' },
  { from: /^bert\.encoder\.layer\.(\d+)\.(intermediate|output)\./, to: null }, // the text feed-forward
  { from: /^bert\./, to: '' },
  { from: /^(speech_)?query_tokens$/, to: 'query_tokens' },
];

/**
 * Q-Former: queries (batch, Q, hidden) attend to themselves and, every cross_attention_frequency-th
 * layer, to encoder states (batch, S, encoder_hidden_size) → (batch, Q, hidden).
 * @example
 * const qf = et.nn.QFormer.create({ hidden_size: 768, num_hidden_layers: 2, encoder_hidden_size: 2048,
 *   cross_attention_frequency: 1, num_query_tokens: 1 });
 * const { lastHiddenState } = await qf.forward({ encoderHiddenStates: windows });
 */
export class QFormer extends ConfiguredModule<QFormerConfig> {
  /** A QFormer with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<QFormerConfig> = {}, opts: ModuleOptions = {}): QFormer {
    return new QFormer(QFORMER, config, opts);
  }

  /**
   * Loads an HF folder (`Blip2QFormerModel` keys, or a whole BLIP-2 checkpoint's `qformer.*` and
   * `query_tokens`), or LAVIS / SALMONN weights (`bert.encoder.layer.N.attention.self.query…`,
   * optionally under `Qformer.` or `speech_Qformer.`) with `config` giving the sizes when the
   * folder has no config.json.
   */
  static async fromPretrained(dirOrFile: string, opts: PretrainedOptions<QFormerConfig> = {}): Promise<QFormer> {
    // a checkpoint file without a config.json (SALMONN's .pth) takes its config from opts.config alone
    return loadPretrained(QFORMER, QFormer, dirOrFile, opts, {
      configless: true,
      async read(dir) {
        const all = await loadCheckpoint(dir);
        const tokens = all.get('query_tokens') ?? all.get('speech_query_tokens');
        let sd = stripPrefix(all, ['speech_Qformer.', 'Qformer.', 'qformer.']);
        if ([...sd.keys()].some((k) => k.startsWith('bert.'))) sd = renameKeys(sd, LAVIS_QFORMER_RENAMES);
        if (tokens) sd.set('query_tokens', tokens);
        return { sd };
      },
      config: (dir) => {
        const raw = readConfig(dir);
        return (raw.qformer_config as Record<string, unknown>) ?? raw;
      },
      create: (c, { sd }) => QFormer.create({ ...c, num_query_tokens: sd.get('query_tokens')?.shape[1] ?? 0 }),
    });
  }

  /**
   * @param inputs.queryEmbeds (batch, Q, hidden); omitted: the model's own query_tokens
   * @param inputs.encoderHiddenStates (batch, S ≥ 1, encoder_hidden_size)
   * @param inputs.encoderAttentionMask (batch, S), 1 = attend, 0 = padding
   * @returns `{ lastHiddenState }` (batch, Q, hidden); an empty batch gives an empty output
   */
  async forward(inputs: QFormerInputs): Promise<QFormerOutputs> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor) invalid('an inputs object ({ encoderHiddenStates, … })', 'Q-Former inputs', inputs);
    const enc = checkTensor(inputs.encoderHiddenStates, 'encoderHiddenStates');
    const s = enc.shape;
    if (s.length !== 3 || s[2] !== this.config.encoder_hidden_size)
      invalid(`(batch, length, ${this.config.encoder_hidden_size})`, 'encoderHiddenStates', `[${s}]`);
    this.checkLength(s[1], 'encoderHiddenStates');
    let queries = this.config.num_query_tokens;
    if (inputs.queryEmbeds) {
      const q = checkTensor(inputs.queryEmbeds, 'queryEmbeds').shape;
      if (q.length !== 3 || q[0] !== s[0] || q[2] !== this.config.hidden_size)
        invalid(`(${s[0]}, queries, ${this.config.hidden_size})`, 'queryEmbeds', `[${q}]`);
      this.checkLength(q[1], 'queryEmbeds');
      queries = q[1];
    } else if (this.config.num_query_tokens === 0) {
      invalid('queryEmbeds (this Q-Former has no query_tokens of its own)', 'queryEmbeds', undefined);
    }
    if (inputs.encoderAttentionMask && checkTensor(inputs.encoderAttentionMask, 'encoderAttentionMask').shape.join() !== s.slice(0, 2).join()) {
      invalid(`shape [${s.slice(0, 2)}]`, 'encoderAttentionMask', `[${inputs.encoderAttentionMask.shape}]`);
    }
    if (s[0] === 0) return { lastHiddenState: this.emptyOutput([0, queries, this.config.hidden_size], enc.device) };
    const o = await this.run({ query_embeds: inputs.queryEmbeds, encoder_hidden_states: enc, encoder_attention_mask: inputs.encoderAttentionMask });
    return { lastHiddenState: o.last_hidden_state! };
  }
}
