/**
 * LLaMA-family causal LM on native/models/llama: HF LlamaForCausalLM (Vicuna, Mistral and Qwen2 configs
 * load too) and the InternVL2 family's LLMs under their own checkpoint names: InternLM2 (remote
 * code: `attention.wqkv`, `feed_forward.w1/w2/w3`, `tok_embeddings`, `output`, dynamic NTK RoPE)
 * and Phi-3 (`qkv_proj`, `gate_up_proj`, su / longrope RoPE). `config.model_type` picks the layout.
 */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f } from './config';
import { Tensor, checkTensor, cat, randn, tensor } from '../tensor';
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid } from '../errors';
import { PretrainedOptions, loadPretrained, pretrainedConfig, savePretrained } from './pretrained';
import type { QuantFormat } from './quant';
import type { PrefixCacheStats } from '../types/prefix-cache';
export type { PrefixCacheStats } from '../types/prefix-cache';
import * as os from 'os';

/** {@link LlamaForCausalLM.fromPretrained}'s options: {@link PretrainedOptions} and a quantization. */
export interface LlamaPretrainedOptions extends PretrainedOptions<LlamaConfig> {
  /** Quantize the decoder's Linear layers while loading ({@link QuantFormat}); default: none. */
  quantize?: QuantFormat;
}

/**
 * HF LlamaConfig fields. RoPE settings are flat here: `rope_theta`, `rope_type` ('default' |
 * 'linear' | 'llama3'), `rope_factor`, `low_freq_factor`, `high_freq_factor`,
 * `original_max_position_embeddings`; fromPretrained reads them from transformers 5's
 * `rope_parameters` or older `rope_theta` + `rope_scaling`.
 */
export const LLAMA = declareConfig({
  name: 'LLaMA',
  kind: 'llama',
  fields: {
    /**
     * The checkpoint layout: 'llama' | 'mistral' (HF LLaMA names), 'qwen2' (the same names, bias on
     * q/k/v), 'internlm2' (InternLM2's remote-code names and grouped `wqkv`), 'phi3' (fused
     * `qkv_proj` and `gate_up_proj`). Default 'llama'.
     */
    model_type: f.string('llama'),
    vocab_size: f.posint(32000),
    hidden_size: f.posint(4096),
    intermediate_size: f.posint(11008),
    num_hidden_layers: f.nonneg(32),
    num_attention_heads: f.posint(32),
    num_key_value_heads: f.posint(32),
    /** 0: hidden_size / num_attention_heads */
    head_dim: f.nonneg(0),
    max_position_embeddings: f.posint(2048),
    rms_norm_eps: f.posnum(1e-6),
    rope_theta: f.posnum(10000),
    /** 'default' | 'linear' | 'llama3' | 'dynamic' (InternLM2's dynamic NTK) | 'longrope' (Phi-3's 'su') */
    rope_type: f.string('default'),
    rope_factor: f.posnum(1),
    low_freq_factor: f.posnum(1),
    high_freq_factor: f.posnum(4),
    original_max_position_embeddings: f.posint(8192),
    /** longrope: head_dim / 2 divisors of the frequencies up to original_max_position_embeddings positions. */
    short_factor: f.nums([]),
    /** longrope: the divisors past original_max_position_embeddings positions. */
    long_factor: f.nums([]),
    /**
     * longrope: cos and sin are multiplied by it; 0 derives Phi-3's
     * √(1 + ln s / ln original_max_position_embeddings), s = max_position_embeddings / original_max_position_embeddings (1 when s ≤ 1).
     */
    attention_factor: f.nonnegnum(0),
    initializer_range: f.nonnegnum(0.02),
    attention_dropout: f.prob(0),
    tie_word_embeddings: f.bool(false),
    attention_bias: f.bool(false),
    mlp_bias: f.bool(false),
    /** Bias on q/k/v only (Qwen2; true by default for model_type 'qwen2'). */
    qkv_bias: f.bool(false),
    hidden_act: f.act('silu'),
    /** Read by TypeScript (generation), not by the native model. */
    bos_token_id: f.int(1).host(),
    /** Ends generation (one id or several); read by TypeScript, sent with each `generate`. */
    eos_token_id: f.any<number | number[]>('host', 2),
    /** Fills finished rows in generation; read by TypeScript. */
    pad_token_id: f.int(0).host(),
    /**
     * Mistral's sliding-window attention: a query attends to at most this many positions (itself
     * and the ones before it); 0 (or `null` in a config.json) attends to all earlier positions.
     */
    sliding_window: f.nonneg(0),
  },
  normalize: (raw) => normalizeLlamaConfig(raw),
  check(c, given) {
    if (!(LLAMA_MODEL_TYPES as readonly string[]).includes(c.model_type))
      invalid(LLAMA_MODEL_TYPES.map((t) => `'${t}'`).join(', '), 'LLaMA config.model_type', c.model_type);
    if (given.qkv_bias === undefined && c.model_type === 'qwen2') c.qkv_bias = true;
    if (c.num_attention_heads % c.num_key_value_heads !== 0)
      invalid(`a divisor of num_attention_heads (${c.num_attention_heads})`, 'LLaMA config.num_key_value_heads', c.num_key_value_heads);
    if (!['default', 'linear', 'llama3', 'dynamic', 'longrope'].includes(c.rope_type))
      invalid("'default', 'linear', 'llama3', 'dynamic' or 'longrope' ('su')", 'LLaMA config.rope_type', c.rope_type);
    if (c.head_dim === 0 && c.hidden_size % c.num_attention_heads !== 0)
      invalid('a multiple of num_attention_heads', 'LLaMA config.hidden_size', c.hidden_size);
    if (c.model_type === 'internlm2' && c.tie_word_embeddings)
      invalid('false for InternLM2 (its head is output.weight)', 'LLaMA config.tie_word_embeddings', true);
    const headDim = c.head_dim || c.hidden_size / c.num_attention_heads;
    // rotary turns pairs of a head's features (its two halves): an odd head has one left over
    if (headDim % 2 !== 0)
      invalid(
        'an even head size (rotary embeddings turn pairs of features)',
        c.head_dim ? 'LLaMA config.head_dim' : 'LLaMA config.hidden_size / num_attention_heads',
        headDim,
      );
    const half = headDim / 2;
    for (const k of ['short_factor', 'long_factor'] as const) {
      const v = c[k];
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0))
        invalid('an array of positive numbers', `LLaMA config.${k}`, v);
      if (c.rope_type === 'longrope' && v.length !== half) invalid(`${half} factors (head_dim / 2) for longrope`, `LLaMA config.${k}`, `${v.length} factors`);
    }
    if (c.rope_type === 'longrope' && c.attention_factor === 0) {
      const scale = c.max_position_embeddings / c.original_max_position_embeddings;
      c.attention_factor = scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(c.original_max_position_embeddings));
    }
    if (c.attention_factor === 0) c.attention_factor = 1;
  },
});

/**
 * HF LlamaConfig fields. RoPE settings are flat here: `rope_theta`, `rope_type` ('default' |
 * 'linear' | 'llama3'), `rope_factor`, `low_freq_factor`, `high_freq_factor`,
 * `original_max_position_embeddings`; fromPretrained reads them from transformers 5's
 * `rope_parameters` or older `rope_theta` + `rope_scaling`.
 * @interface
 */
export type LlamaConfig = ConfigOf<typeof LLAMA>;

/** The LlamaConfig values used for the fields a config leaves out. */
export const LLAMA_DEFAULTS: LlamaConfig = defaultsOf(LLAMA);

/** The layouts {@link LlamaConfig.model_type} names. */
export const LLAMA_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'internlm2', 'phi3'] as const;

/**
 * Flattens HF's rope settings (`rope_parameters`, or `rope_theta` + `rope_scaling`) into LlamaConfig
 * fields: InternLM2's `{type: 'dynamic', factor}` and Phi-3's `{type: 'su' | 'longrope',
 * short_factor, long_factor}` included.
 */
export function normalizeRope(raw: Record<string, unknown>): Partial<LlamaConfig> {
  const p = (raw.rope_parameters ?? raw.rope_scaling ?? {}) as Record<string, unknown>;
  const out: Partial<LlamaConfig> = {};
  const theta = p.rope_theta ?? raw.rope_theta;
  if (theta !== undefined) out.rope_theta = theta as number;
  let type = (p.rope_type ?? p.type) as string | undefined;
  if (type === 'su') type = 'longrope';
  if (type) out.rope_type = type;
  if (p.factor !== undefined) out.rope_factor = p.factor as number;
  if (p.low_freq_factor !== undefined) out.low_freq_factor = p.low_freq_factor as number;
  if (p.high_freq_factor !== undefined) out.high_freq_factor = p.high_freq_factor as number;
  const orig = p.original_max_position_embeddings ?? raw.original_max_position_embeddings;
  if (orig !== undefined && orig !== null) out.original_max_position_embeddings = orig as number;
  if (p.short_factor !== undefined) out.short_factor = p.short_factor as number[];
  if (p.long_factor !== undefined) out.long_factor = p.long_factor as number[];
  if (p.attention_factor !== undefined && p.attention_factor !== null) out.attention_factor = p.attention_factor as number;
  return out;
}

/**
 * A config.json of any {@link LLAMA_MODEL_TYPES} as LlamaConfig fields: the rope settings
 * flattened; InternLM2's `bias` (on wqkv and wo) as `attention_bias`; Qwen2's window only when
 * `use_sliding_window`.
 */
export function normalizeLlamaConfig(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...raw, ...normalizeRope(raw) };
  const type = raw.model_type;
  if (type === 'internlm2' && raw.bias !== undefined) out.attention_bias = raw.bias;
  if (type === 'qwen2' && raw.use_sliding_window !== true) out.sliding_window = 0;
  if (typeof type === 'string' && !(LLAMA_MODEL_TYPES as readonly string[]).includes(type)) out.model_type = type; // refused by create, naming it
  return out;
}

/** transformers' class for each {@link LLAMA_MODEL_TYPES} layout. */
const ARCHITECTURES: Record<string, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  internlm2: 'InternLM2ForCausalLM',
  phi3: 'Phi3ForCausalLM',
};

/**
 * A {@link LlamaConfig} as a config.json in transformers 5's names: the flat rope fields as
 * `rope_parameters` (only those the rope type reads), `architectures`, Mistral's and Qwen2's
 * unlimited window as `sliding_window: null`, InternLM2's attention bias as `bias`.
 */
export function llamaConfigJson(c: LlamaConfig): Record<string, unknown> {
  const {
    rope_theta,
    rope_type,
    rope_factor,
    low_freq_factor,
    high_freq_factor,
    original_max_position_embeddings,
    short_factor,
    long_factor,
    attention_factor,
    qkv_bias,
    ...rest
  } = c;
  const rope: Record<string, unknown> = { rope_theta, rope_type };
  if (rope_type === 'linear' || rope_type === 'dynamic') rope.factor = rope_factor;
  if (rope_type === 'llama3') Object.assign(rope, { factor: rope_factor, low_freq_factor, high_freq_factor, original_max_position_embeddings });
  if (rope_type === 'longrope') Object.assign(rope, { short_factor, long_factor, original_max_position_embeddings, attention_factor });
  const out: Record<string, unknown> = { ...rest, rope_parameters: rope, architectures: [ARCHITECTURES[c.model_type] ?? 'LlamaForCausalLM'] };
  if (c.sliding_window === 0) out.sliding_window = null;
  if (c.model_type === 'qwen2') out.use_sliding_window = c.sliding_window > 0;
  else if (qkv_bias) out.qkv_bias = true;
  if (c.model_type === 'internlm2') out.bias = c.attention_bias;
  return out;
}

/** HF generate() settings, in camelCase (HF's generation_config.json names: `maxNewTokens` is `max_new_tokens`). */
export interface GenerationOptions {
  /** Tokens to generate at most. Default 20. */
  maxNewTokens?: number;
  /** Tokens before EOS may end a row. Default 0. */
  minNewTokens?: number;
  /** Sample (temperature, topK, topP) instead of greedy / beam search. Default false. */
  doSample?: boolean;
  temperature?: number;
  /** 0: off. */
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  numBeams?: number;
  lengthPenalty?: number;
  /** true: stop an item at numBeams finished hypotheses; false: HF's heuristic; 'never'. */
  earlyStopping?: boolean | 'never';
  /** Default: the config's eos_token_id. */
  eosTokenId?: number | number[];
  /** Fills finished rows. Default: the config's pad_token_id. */
  padTokenId?: number;
  /**
   * Ids that are never generated, as half-open ranges `[start, end)` (HF's `bad_words_ids` of
   * single tokens, e.g. `[[32000, 42003]]`), applied in C++ as one vocabulary mask per call.
   */
  bannedTokenRanges?: Array<[number, number]>;
  /** When given, only ids inside these half-open ranges can be generated (banned ranges still win). */
  allowedTokenRanges?: Array<[number, number]>;
  /**
   * Streaming: called on the JS thread after every step with each row's new token (greedy and
   * sampling; not with numBeams > 1, whose beams change their past), every call before the
   * returned promise resolves. A throw is ignored.
   */
  onTokens?: (ids: number[]) => void;
  /**
   * Cancellation: when it aborts, the loop stops before its next step (or never starts) and the
   * call rejects with ERR_ABORTED (e.g. a client that went away, a request past its time).
   */
  signal?: AbortSignal;
  /**
   * Sampling from a generator of its own, seeded with this (row b of a batch with `seed + b`):
   * the same seed gives the same answer, decoded alone or in a {@link DecodeBatch}, whatever else
   * draws random numbers meanwhile. Default: the global generator ({@link manualSeed}).
   */
  seed?: number;
  /**
   * Decode in this running batch (continuous batching) instead of alone: the prompt is run, then
   * its tokens are chosen in the same steps as every other call's in the batch. Greedy and sampling
   * only (numBeams > 1 decodes alone); one prompt per call. See {@link DecodeBatch}.
   */
  batch?: DecodeBatch;
}

/** The names {@link GenerationOptions} has (any other is an error). */
export const GENERATION_OPTIONS: readonly (keyof GenerationOptions)[] = [
  'maxNewTokens',
  'minNewTokens',
  'doSample',
  'temperature',
  'topK',
  'topP',
  'repetitionPenalty',
  'numBeams',
  'lengthPenalty',
  'earlyStopping',
  'eosTokenId',
  'padTokenId',
  'bannedTokenRanges',
  'allowedTokenRanges',
  'onTokens',
  'signal',
  'seed',
  'batch',
];

/** generation_config.json's names, as the native side reads them. */
interface NativeGeneration {
  max_new_tokens: number;
  min_new_tokens: number;
  num_beams: number;
  top_k: number;
  temperature: number;
  top_p: number;
  repetition_penalty: number;
  length_penalty: number;
  do_sample: boolean;
  early_stopping: string;
  eos_token_id: number[];
  pad_token_id: number;
  banned_token_ranges: number[];
  allowed_token_ranges: number[];
  seed: number;
}

/** Inputs of `LlamaForCausalLM.generate`: prompt ids or embeddings, and their attention mask (left padding). */
export interface GenerateInputs {
  /** (batch, length) prompt ids, left-padded. */
  inputIds?: Tensor;
  /** (batch, length, hidden) prompt embeddings (audio tokens spliced in), left-padded. */
  inputsEmbeds?: Tensor;
  /** (batch, length): 1 tokens, 0 left padding. */
  attentionMask?: Tensor;
}

export interface LlamaInputs extends GenerateInputs {
  /** (batch, length) positions; default 0..length−1. */
  positionIds?: Tensor;
  /** (batch, length) int64 targets, −100 where no loss is taken (HF: shifted inside). */
  labels?: Tensor;
  /** Divide the summed token loss by this instead of averaging (gradient accumulation). */
  numItemsInBatch?: number;
}

export interface LlamaOutputs {
  /** (batch, length, vocab) */
  logits: Tensor;
  /** The causal-LM loss, when labels were given. */
  loss?: Tensor;
}

/**
 * A LLaMA-family decoder with an LM head.
 * @example
 * const llm = await et.nn.LlamaForCausalLM.fromPretrained('vicuna-7b/', { dtype: 'float16', device: 'cuda' });
 * const { sequences } = await llm.generate({ inputIds, attentionMask }, { maxNewTokens: 200, numBeams: 4 });
 */
export class LlamaForCausalLM extends ConfiguredModule<LlamaConfig> {
  /** A LlamaForCausalLM with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<LlamaConfig> = {}, opts: ModuleOptions = {}): LlamaForCausalLM {
    return new LlamaForCausalLM(LLAMA, config, opts);
  }

  /** The embedding table's and the untied head's checkpoint names for this layout. */
  get embeddingKeys(): { embed: string; head: string } {
    return this.config.model_type === 'internlm2'
      ? { embed: 'model.tok_embeddings.weight', head: 'output.weight' }
      : { embed: 'model.embed_tokens.weight', head: 'lm_head.weight' };
  }

  /**
   * Loads a local HF folder (`config.json` + safetensors, sharded or not, or `pytorch_model.bin`).
   * With `opts.quantize` every Linear layer of the decoder (not the LM head, which transformers
   * also leaves in float) is quantized as the checkpoint is read: from safetensors a piece at a
   * time, never the whole float model in memory (peak: the quantized model plus its largest tensor
   * or 64 MiB); a `.bin`
   * is read whole first. The embeddings, norms and head take `opts.dtype`.
   * @param opts.quantize 'int8' | 'nf4' | 'q8_0' | 'q4_0' ({@link QuantFormat})
   * @throws EmotorchError as the other models' `fromPretrained` (ERR_IO, ERR_FORMAT, ERR_STATE_DICT); ERR_INVALID_ARG for an unknown quantization or a
   *   layer whose rows the block does not divide
   * @example
   * const llm = await et.nn.LlamaForCausalLM.fromPretrained('vicuna-13b/', { dtype: 'bfloat16', quantize: 'int8' });
   */
  static async fromPretrained(dir: string, opts: LlamaPretrainedOptions = {}): Promise<LlamaForCausalLM> {
    return loadPretrained(LLAMA, LlamaForCausalLM, dir, opts, {
      options: ['quantize'],
      keep: /^(?!.*\.rotary_emb\.inv_freq$)/,
      prepare: (model, { sd }) => {
        if (model.config.tie_word_embeddings) sd.delete(model.embeddingKeys.head);
      },
      quantizable: (model) => ({ skip: model.config.tie_word_embeddings ? [] : [model.embeddingKeys.head.replace(/\.weight$/, '')] }),
    });
  }

  /**
   * Writes a folder {@link fromPretrained} and transformers read: `config.json` and
   * `model.safetensors`. The config is the config.json the model was read from (with
   * `opts.config` laid over it), or for a model made otherwise its {@link LlamaConfig} in
   * transformers' names (rope settings as `rope_parameters`). A quantized model (int8 or nf4) is
   * written as transformers + bitsandbytes save one: the tensors in bitsandbytes' layout and the
   * `quantization_config` of `BitsAndBytesConfig` ({@link savePretrained}).
   * @throws EmotorchError as {@link savePretrained}: q8_0 / q4_0 layers (no bitsandbytes layout),
   *   LoRA adapters, an unwritable folder
   * @example
   * const llm = await et.nn.LlamaForCausalLM.fromPretrained('vicuna-7b/', { dtype: 'float16', quantize: 'nf4' });
   * await llm.savePretrained('vicuna-7b-nf4/'); // loads in transformers with bitsandbytes, and here
   */
  async savePretrained(dir: string): Promise<void> {
    this.checkLive();
    const skip = this.config.tie_word_embeddings ? [] : [this.embeddingKeys.head.replace(/\.weight$/, '')];
    await savePretrained(this, dir, pretrainedConfig(this) ?? llamaConfigJson(this.config), { defaultSkip: skip });
  }

  /**
   * A copy of this model with `newSize` token rows, as HF's `resize_token_embeddings(newSize)`:
   * `model.embed_tokens.weight` (and an untied `lm_head.weight`) keep their first rows, and the
   * added rows are `opts.rows` when given, else drawn as transformers ≥ 4.46 does by default
   * (`mean_resizing`): from a normal distribution with the old rows' mean and 1e-9 × their
   * covariance (sampled with libtorch's generator: `et.manualSeed` makes it repeatable). Shrinking
   * keeps the first `newSize` rows. Call it before `applyLora`; the copy keeps which parameters
   * require grad and the training mode. Costs one extra copy of the model while it runs.
   * @param newSize the new vocabulary size
   * @param opts.rows the added rows: `embed` (added, hidden), and `lmHead` (added, hidden) for an
   *   untied head (default: the embedding rows' HF initialisation drawn for the head's own rows)
   * @throws EmotorchError ERR_INVALID_ARG for a bad size, rows of the wrong shape, or a model with LoRA
   * @example
   * tokenizer.addSpecialTokens(['[PAD]']);
   * llm = await llm.resizeTokenEmbeddings(tokenizer.vocabSize);   // SALMONN's models/salmonn.py
   */
  async resizeTokenEmbeddings(newSize: number, opts: { rows?: { embed: Tensor; lmHead?: Tensor } } = {}): Promise<LlamaForCausalLM> {
    checkInt(newSize, 'newSize', 1);
    if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
    const unknown = Object.keys(opts).filter((k) => k !== 'rows');
    if (unknown.length) invalid("only the option 'rows'", 'resizeTokenEmbeddings opts', unknown.join(', '));
    const sd = this.stateDict();
    if ([...sd.keys()].some((k) => k.includes('.lora_')))
      throw new EmotorchError('resizeTokenEmbeddings: the model has LoRA adapters; resize before applyLora', 'ERR_INVALID_ARG');
    const { vocab_size: v, hidden_size: h, tie_word_embeddings: tied } = this.config;
    const added = newSize - v;
    const rows = opts.rows;
    if (rows !== undefined) {
      if (added <= 0) invalid(`no rows when not growing (${v} → ${newSize})`, 'opts.rows', 'rows');
      for (const [name, t] of [
        ['embed', rows.embed],
        ['lmHead', rows.lmHead],
      ] as const) {
        if (t === undefined && name === 'lmHead') continue;
        if (checkTensor(t, `opts.rows.${name}`).shape.join() !== `${added},${h}`) invalid(`shape [${added}, ${h}]`, `opts.rows.${name}`, `[${t!.shape}]`);
      }
      if (tied && rows.lmHead) invalid('no lmHead rows for tied embeddings', 'opts.rows.lmHead', 'a tensor');
    }
    const grow = (w: Tensor, given?: Tensor): Tensor => {
      if (added <= 0) return w.slice(0, 0, newSize);
      const extra = given ? given.to({ dtype: w.dtype, device: w.device as never }) : meanResizedRows(w, added);
      return cat([w.detach(), extra], 0);
    };
    const out = new Map(sd);
    const keys = this.embeddingKeys;
    out.set(keys.embed, grow(sd.get(keys.embed)!, rows?.embed));
    if (!tied) out.set(keys.head, grow(sd.get(keys.head)!, rows?.lmHead));
    const p = sd.get(keys.embed)!;
    const model = LlamaForCausalLM.create({ ...this.config, vocab_size: newSize }, { device: p.device as never, dtype: p.dtype });
    await model.loadStateDict(out);
    const frozen = new Set(
      this.namedParameters()
        .filter(([, q]) => !q.requiresGrad)
        .map(([n]) => n),
    );
    for (const [n, q] of model.namedParameters()) q.requiresGrad = !frozen.has(n);
    return this.training ? model.train() : model.eval();
  }

  /** The token embedding table applied to ids: (batch, length) → (batch, length, hidden). */
  async embed(ids: Tensor): Promise<Tensor> {
    this.checkIds(ids, 'ids');
    this.checkLive();
    // Found once: namedParameters() wraps every parameter in a new handle. The table's handle stays
    // valid across to() and loadStateDict (both work in place); resizeTokenEmbeddings makes a new model.
    const key = this.embeddingKeys.embed;
    this.embedWeight ??= this.namedParameters().find(([n]) => n === key)![1];
    return this.embedWeight.indexSelect(0, ids.flatten()).reshape([...ids.shape, this.config.hidden_size]);
  }
  private embedWeight: Tensor | null = null;

  private checkIds(ids: Tensor, name: string): void {
    checkTensor(ids, name);
    if (ids.ndim !== 2 || ids.dtype !== 'int64') invalid('an int64 tensor (batch, length)', name, `${ids.dtype} [${ids.shape}]`);
  }

  /** @internal Inputs checked; their (batch, length). */
  checkInputs(i: GenerateInputs & { positionIds?: Tensor }): number[] {
    if (!i || typeof i !== 'object' || i instanceof Tensor) invalid('an inputs object ({ inputIds | inputsEmbeds, attentionMask, … })', 'LLaMA inputs', i);
    if (!!i.inputIds === !!i.inputsEmbeds) throw new EmotorchError('LLaMA: give exactly one of inputIds and inputsEmbeds', 'ERR_INVALID_ARG');
    let bt: number[];
    if (i.inputIds) {
      this.checkIds(i.inputIds, 'inputIds');
      bt = i.inputIds.shape;
    } else {
      const s = checkTensor(i.inputsEmbeds, 'inputsEmbeds').shape;
      if (s.length !== 3 || s[2] !== this.config.hidden_size) invalid(`(batch, length, ${this.config.hidden_size})`, 'inputsEmbeds', `[${s}]`);
      bt = s.slice(0, 2);
    }
    for (const [n, t] of [
      ['attentionMask', i.attentionMask],
      ['positionIds', i.positionIds],
    ] as const) {
      if (t && checkTensor(t, n).shape.join() !== bt.join()) invalid(`shape [${bt}]`, n, `[${t.shape}]`);
    }
    this.checkLength(bt[1], i.inputIds ? 'inputIds' : 'inputsEmbeds');
    return bt;
  }

  /**
   * Logits for every position, and with `labels` HF's causal-LM loss: cross entropy of the logits
   * at positions 0..T−2 against labels 1..T−1 (float32), ignoring −100; the mean over label tokens,
   * or their sum divided by `numItemsInBatch` when given (how gradient accumulation normalizes a
   * token loss over all micro-batches). Without positionIds, positions are 0..length−1 (HF's
   * plain forward); pass them for left-padded batches that should start at 0.
   * @returns `{ logits }` (batch, length, vocab), plus `loss` (a scalar) with labels
   * @throws EmotorchError ERR_INVALID_ARG for mis-shaped inputs, a zero-length sequence, or labels
   *   with an empty batch.
   */
  async forward(inputs: LlamaInputs): Promise<LlamaOutputs> {
    const [b, t] = this.checkInputs(inputs);
    const { labels, numItemsInBatch } = inputs;
    if (labels !== undefined) {
      checkTensor(labels, 'labels');
      if (labels.shape.join() !== [b, t].join() || labels.dtype !== 'int64')
        invalid(`an int64 tensor of shape [${b},${t}]`, 'labels', `${labels.dtype} [${labels.shape}]`);
      if (b === 0) invalid('a non-empty batch (a loss over no tokens is undefined)', 'labels', `[${labels.shape}]`);
    }
    if (numItemsInBatch !== undefined) checkNumber(numItemsInBatch, 'numItemsInBatch', Number.MIN_VALUE);
    const device = (inputs.inputIds ?? inputs.inputsEmbeds)!.device;
    if (b === 0) return { logits: this.emptyOutput([0, t, this.config.vocab_size], device) };
    // The loss is computed in the same native call (on the compute thread, with the intra-op threads).
    const items = numItemsInBatch === undefined ? null : tensor([numItemsInBatch], { dtype: 'float64' }).reshape([]);
    const out = await this.run({
      input_ids: inputs.inputIds,
      attention_mask: inputs.attentionMask,
      position_ids: inputs.positionIds,
      inputs_embeds: inputs.inputsEmbeds,
      labels,
      num_items_in_batch: items,
    });
    items?.dispose();
    const logits = out.logits!;
    if (!labels) return { logits };
    return { logits, loss: out.loss! };
  }

  /**
   * Generates continuations in one native call (the whole loop runs in C++ with a KV cache):
   * greedy, sampling (temperature, topK, topP), or beam search, with repetitionPenalty,
   * minNewTokens and EOS handling; finished rows are right-filled with padTokenId.
   * @param inputs `{ inputIds | inputsEmbeds, attentionMask? }` (left-padded prompts)
   * @param opts {@link GenerationOptions}, camelCase
   * @returns `newTokens` (batch, ≤ maxNewTokens) and, for an ids prompt, `sequences` = prompt + new.
   * @throws EmotorchError ERR_INVALID_ARG for bad inputs, a bad option value, or an unknown option
   *   name (e.g. `max_new_tokens`)
   * @example
   * const { newTokens } = await llm.generate({ inputIds }, { maxNewTokens: 32, numBeams: 4 });
   */
  async generate(inputs: GenerateInputs, opts: GenerationOptions = {}): Promise<{ newTokens: Tensor; sequences: Tensor | null }> {
    checkOptionNames(opts, GENERATION_OPTIONS, 'generate');
    if (opts.batch !== undefined) {
      if (!(opts.batch instanceof DecodeBatch) || opts.batch.model !== this) invalid('a DecodeBatch of this model', 'batch', opts.batch);
      const { batch, ...rest } = opts;
      if ((rest.numBeams ?? 1) === 1) return batch.generate(inputs, rest);
    }
    this.checkInputs(inputs);
    const g = this.generationConfig(opts);
    const { onTokens, signal } = opts;
    if (onTokens !== undefined && typeof onTokens !== 'function') invalid('a function (ids: number[]) => void', 'onTokens', onTokens);
    if (onTokens && g.num_beams > 1)
      invalid('numBeams 1 with onTokens (beam search revises its past tokens; stream greedy or sampled answers)', 'generation options', opts);
    if (signal !== undefined && !(signal instanceof AbortSignal)) invalid('an AbortSignal', 'signal', signal);
    const aborted = () => new EmotorchError(`generate: aborted (${String(signal?.reason ?? 'signal')})`, 'ERR_ABORTED');
    if (signal?.aborted) throw aborted();
    // every step's call reaches the JS thread before the promise resolves: count them in
    let received = 0;
    let flushed: (() => void) | null = null;
    let want = -1;
    const listener = onTokens
      ? (ids: number[]) => {
          received++;
          try {
            onTokens(ids);
          } catch {
            /* a listener's failure is its own */
          }
          if (received === want) flushed?.();
        }
      : null;
    const call = this.native.generate(inputs.inputIds?.handle ?? null, inputs.inputsEmbeds?.handle ?? null, inputs.attentionMask?.handle ?? null, g, listener);
    const cancel = () => call.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    let h;
    try {
      h = await call.result;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
    const newTokens = new Tensor(h);
    want = newTokens.shape[1]; // one call per step
    if (listener && received < want)
      await new Promise<void>((resolve) => {
        flushed = resolve;
      });
    if (signal?.aborted) {
      newTokens.dispose();
      throw aborted();
    }
    return { newTokens, sequences: inputs.inputIds ? cat([inputs.inputIds.to({ device: newTokens.device }), newTokens], 1) : null };
  }

  /**
   * Prompt prefix caching (as vLLM's automatic prefix caching and llama.cpp's `cache_prompt`):
   * the keys and values of the latest prompts given as ids (no `inputsEmbeds`, no padding) are
   * kept, up to `maxBytes` in all (the least recently used dropped first), and a prompt that
   * begins with a kept prompt's first positions (a system prompt, a chat template, an instruction
   * shared by many requests) runs only the positions after them, in {@link generate} (greedy or
   * sampling) and {@link DecodeBatch}. A position's keys and values depend only on the positions
   * before it, and on the CPU an int8 or interleaved q4_0 prompt pass (their integer kernels take
   * any length), or a bfloat16 one of at most 64 positions (the row kernels, on AVX-512 BF16 or
   * AVX2 without AMX), computes each position as if the pass were its own, so the tokens are the
   * ones decoded without the cache (at least the last two positions always run: one alone would
   * take the decoding kernels). Past a few positions q8_0 and nf4 dequantize their weight for the
   * product (q8_0 past 24 positions on AVX-512 VNNI, 64 on AVX2; nf4 past 8), longer bfloat16
   * prompts' products run on oneDNN, whose kernels are picked by the number of rows, and float32
   * and CUDA attend through a masked kernel after a reused prefix: there equal up to rounding (q8_0
   * decoded other greedy tokens in 4 of 12 prompts of the tiny test LLaMA). The cache empties
   * itself whenever a weight changes (training, loading, adapters). Each held position costs
   * 2 × layers × kvHeads × headDim × the dtype's bytes (a 1.1B TinyLlama in bfloat16: 22.5 KB).
   * `emotorch serve --prefix-cache-mb` sets it for a served LLaMA.
   * @param opts `maxBytes`: the most it may hold, a whole number of bytes ≥ 0 (0: off, emptied);
   *   the counters of {@link prefixCacheStats} restart
   * @throws EmotorchError ERR_INVALID_ARG for a size that is not a whole number ≥ 0 or exceeds
   *   the machine's memory
   * @example
   * await llm.setPrefixCache({ maxBytes: 256 * 2 ** 20 });
   * await llm.generate({ inputIds: systemPromptAndQuestion }, { maxNewTokens: 64 }); // later prompts reuse the system prompt
   */
  async setPrefixCache(opts: { maxBytes: number }): Promise<void> {
    if (opts === null || typeof opts !== 'object') invalid('an object { maxBytes }', 'setPrefixCache options', opts);
    checkOptionNames(opts as object, ['maxBytes'], 'setPrefixCache');
    const max = os.totalmem();
    const n = checkInt(opts.maxBytes, 'maxBytes', 0);
    if (n > max) invalid(`at most this machine's memory (${max} bytes)`, 'maxBytes', opts.maxBytes);
    await this.native.setPrefixCache(n);
  }

  /**
   * What the prompt prefix cache holds (`capacity`, `bytes`, `entries`) and has done since the
   * last {@link setPrefixCache} (`lookups`, `hits`, `reused` positions).
   */
  async prefixCacheStats(): Promise<PrefixCacheStats> {
    return this.native.prefixCacheStats();
  }

  /**
   * {@link GenerationOptions} checked and in generation_config.json's names.
   * @internal
   */
  generationConfig(opts: GenerationOptions): NativeGeneration {
    const eos = opts.eosTokenId ?? this.config.eos_token_id;
    const eosList = Array.isArray(eos) ? eos : [eos];
    eosList.forEach((e, i) => checkInt(e, Array.isArray(eos) ? `eosTokenId[${i}]` : 'eosTokenId', 0));
    const es = opts.earlyStopping ?? true;
    if (es !== true && es !== false && es !== 'never') invalid("true, false or 'never'", 'earlyStopping', es);
    if (opts.doSample !== undefined && typeof opts.doSample !== 'boolean') invalid('a boolean', 'doSample', opts.doSample);
    const g: NativeGeneration = {
      max_new_tokens: checkInt(opts.maxNewTokens ?? 20, 'maxNewTokens', 1),
      min_new_tokens: checkInt(opts.minNewTokens ?? 0, 'minNewTokens', 0),
      num_beams: checkInt(opts.numBeams ?? 1, 'numBeams', 1),
      top_k: checkInt(opts.topK ?? 0, 'topK', 0),
      temperature: checkNumber(opts.temperature ?? 1, 'temperature', Number.MIN_VALUE),
      top_p: checkNumber(opts.topP ?? 1, 'topP', 0, 1),
      repetition_penalty: checkNumber(opts.repetitionPenalty ?? 1, 'repetitionPenalty', Number.MIN_VALUE),
      length_penalty: checkNumber(opts.lengthPenalty ?? 1, 'lengthPenalty'),
      do_sample: opts.doSample ?? false,
      early_stopping: String(es),
      eos_token_id: eosList,
      pad_token_id: checkInt(opts.padTokenId ?? this.config.pad_token_id, 'padTokenId', 0),
      banned_token_ranges: this.tokenRanges(opts.bannedTokenRanges, 'bannedTokenRanges'),
      allowed_token_ranges: this.tokenRanges(opts.allowedTokenRanges, 'allowedTokenRanges'),
      seed: opts.seed === undefined ? -1 : checkInt(opts.seed, 'seed', 0),
    };
    if (g.do_sample && g.num_beams > 1) invalid('doSample false with numBeams > 1 (beam sampling is not supported)', 'generation options', opts);
    if (banAll(g.banned_token_ranges, opts.allowedTokenRanges ? g.allowed_token_ranges : null, this.config.vocab_size)) {
      invalid('token ranges that leave at least one id to generate', 'bannedTokenRanges / allowedTokenRanges', {
        banned: opts.bannedTokenRanges,
        allowed: opts.allowedTokenRanges,
      });
    }
    return g;
  }

  /** `[[start, end), …]` checked against the vocabulary and flattened for the native side. */
  private tokenRanges(r: unknown, name: string): number[] {
    if (r === undefined || r === null) return [];
    if (!Array.isArray(r)) invalid('an array of [start, end) id pairs', name, r);
    const V = this.config.vocab_size;
    return (r as unknown[]).flatMap((p, i) => {
      if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => Number.isSafeInteger(x)) || p[0] < 0 || p[0] > p[1] || p[1] > V) {
        invalid(`a pair [start, end) with 0 ≤ start ≤ end ≤ ${V}`, `${name}[${i}]`, p);
      }
      return p as number[];
    });
  }
}

/** A native decoding row, as the model's handle hands it out. */
type DecodeRowHandle = Awaited<ReturnType<LlamaForCausalLM['native']['startDecode']>>;

/** One call of {@link DecodeBatch.generate} while it decodes. */
interface BatchRow {
  handle: DecodeRowHandle;
  tokens: number[];
  eos: number[];
  max: number;
  onTokens?: (ids: number[]) => void;
  signal?: AbortSignal;
  resolve: (tokens: number[]) => void;
  reject: (e: unknown) => void;
}

/**
 * Continuous batching over one {@link LlamaForCausalLM}: each `generate` call runs its prompt, then
 * joins the rows decoding at the next step, and leaves when it ends (an end token, maxNewTokens,
 * or its signal), so concurrent requests share every step's pass over the weights (decoding is
 * bound by memory: sixteen rows take about twice the time of one per step). A row's tokens are the
 * ones it gets decoded alone: on the CPU every product, norm and rotary embedding computes each
 * row as if it were alone (bfloat16 products on AMX tiles where the CPU has them, else vector
 * kernels; attention and activations row by row, each over its own cache), so greedy answers are
 * identical bit for bit; on CUDA the products of a step run as one, so they agree up to the last
 * bits of the kernels. `emotorch serve --max-batch` decodes its requests this way.
 * @example
 * const batch = new et.nn.DecodeBatch(llm);
 * const answers = await Promise.all(prompts.map((inputIds) => batch.generate({ inputIds }, { maxNewTokens: 64 })));
 * // the same as: llm.generate({ inputIds }, { maxNewTokens: 64, batch })
 */
export class DecodeBatch {
  private rows: BatchRow[] = [];
  private loop: Promise<void> | null = null;

  /** @param model the model every call decodes on */
  constructor(readonly model: LlamaForCausalLM) {
    if (!(model instanceof LlamaForCausalLM)) invalid('a LlamaForCausalLM', 'DecodeBatch model', model);
  }

  /** Rows decoding now. */
  get size(): number {
    return this.rows.length;
  }

  /**
   * Decodes one prompt in the batch: its prompt pass, then its tokens in the batch's steps.
   * @param inputs `{ inputIds | inputsEmbeds, attentionMask? }` of one prompt (batch 1)
   * @param opts {@link GenerationOptions} (greedy or sampling: numBeams 1); `onTokens` gets this row's token each step
   * @returns `newTokens` (1, n) and, for an ids prompt, `sequences` = prompt + new, as {@link LlamaForCausalLM.generate}
   * @throws EmotorchError ERR_INVALID_ARG for a bad input or option (a batch of more than one prompt,
   *   numBeams > 1), ERR_ABORTED when `signal` aborts (the other rows go on)
   * @example
   * const { newTokens } = await batch.generate({ inputIds }, { maxNewTokens: 32, onTokens: ([t]) => stream(t) });
   */
  async generate(inputs: GenerateInputs, opts: GenerationOptions = {}): Promise<{ newTokens: Tensor; sequences: Tensor | null }> {
    checkOptionNames(opts, GENERATION_OPTIONS, 'DecodeBatch.generate');
    const m = this.model;
    const [b] = m.checkInputs(inputs);
    if (b !== 1) invalid('one prompt (batch 1): concurrent calls are what a DecodeBatch batches', 'DecodeBatch.generate inputs', `batch ${b}`);
    const g = m.generationConfig(opts);
    if (g.num_beams !== 1) invalid("numBeams 1 (beam search decodes alone: call the model's generate)", 'numBeams', opts.numBeams);
    const { onTokens, signal } = opts;
    if (onTokens !== undefined && typeof onTokens !== 'function') invalid('a function (ids: number[]) => void', 'onTokens', onTokens);
    if (signal !== undefined && !(signal instanceof AbortSignal)) invalid('an AbortSignal', 'signal', signal);
    const aborted = () => new EmotorchError(`generate: aborted (${String(signal?.reason ?? 'signal')})`, 'ERR_ABORTED');
    if (signal?.aborted) throw aborted();
    const native = m.native;
    const handle = await native.startDecode(
      inputs.inputIds?.handle ?? null,
      inputs.inputsEmbeds?.handle ?? null,
      inputs.attentionMask?.handle ?? null,
      g,
      g.seed >= 0 ? g.seed : null,
    );
    if (signal?.aborted) {
      void native.endDecode(handle).catch(() => {});
      throw aborted();
    }
    const tokens = await new Promise<number[]>((resolve, reject) => {
      this.rows.push({ handle, tokens: [], eos: g.eos_token_id, max: g.max_new_tokens, onTokens, signal, resolve, reject });
      this.loop ??= this.run();
    });
    const device = (inputs.inputIds ?? inputs.inputsEmbeds)!.device;
    const newTokens = tensor([tokens], { dtype: 'int64', shape: [1, tokens.length] }).to({ device });
    return { newTokens, sequences: inputs.inputIds ? cat([inputs.inputIds.to({ device }), newTokens], 1) : null };
  }

  /**
   * Steps every row until none is left; rows join and leave between steps. A step's tokens reach
   * their listeners (and finished rows their callers) while the next step computes: which rows go
   * on is known from the tokens alone, so the step is started first.
   */
  private async run(): Promise<void> {
    const native = this.model.native;
    let deliver: (() => void)[] = [];
    const flush = () => {
      for (const f of deliver) f();
      deliver = [];
    };
    try {
      while (this.rows.length) {
        for (const r of this.rows.filter((x) => x.signal?.aborted)) {
          // cancelled: leaves before the step
          this.leave(r);
          void native.endDecode(r.handle).catch(() => {});
          r.reject(new EmotorchError(`generate: aborted (${String(r.signal!.reason ?? 'signal')})`, 'ERR_ABORTED'));
        }
        const step = this.rows.slice();
        if (!step.length) break;
        let call: Promise<number[]>;
        try {
          call = native.decodeStep(step.map((r) => r.handle));
        } catch (e) {
          call = Promise.reject(e); // its rows rejected below, as for a failed step
        }
        flush(); // the previous step's tokens, while this one computes
        let next: number[];
        try {
          next = await call;
        } catch (e) {
          for (const r of step) {
            this.leave(r);
            r.reject(e);
          }
          continue;
        }
        step.forEach((r, i) => {
          const t = next[i];
          if (r.signal?.aborted) return; // cancelled while the step ran: rejected before the next
          if (t < 0) {
            this.leave(r);
            deliver.push(() => r.resolve(r.tokens));
            return;
          }
          r.tokens.push(t);
          const done = r.eos.includes(t) || r.tokens.length >= r.max;
          if (done) this.leave(r);
          deliver.push(() => {
            if (r.onTokens) {
              try {
                r.onTokens([t]);
              } catch {
                /* a listener's failure is its own */
              }
            }
            if (done) r.resolve(r.tokens);
          });
        });
      }
    } finally {
      flush();
      this.loop = null;
    }
  }

  private leave(r: BatchRow): void {
    const i = this.rows.indexOf(r);
    if (i >= 0) this.rows.splice(i, 1);
  }
}

/** Whether flattened banned / allowed ranges forbid every id of a vocabulary of `V`. */
function banAll(banned: number[], allowed: number[] | null, V: number): boolean {
  const open = new Uint8Array(V).fill(allowed ? 0 : 1);
  if (allowed) for (let i = 0; i < allowed.length; i += 2) open.fill(1, allowed[i], allowed[i + 1]);
  for (let i = 0; i < banned.length; i += 2) open.fill(0, banned[i], banned[i + 1]);
  return !open.includes(1);
}

/**
 * `added` rows drawn as transformers' `_init_added_embeddings_weights_with_mean`: from
 * N(mean, 1e-9 · Σ) with the mean and covariance Σ of the rows of `w` (float32). The sample is
 * taken as mean + √(1e-9 / n) · zᵀC with z ~ N(0, I_n) and C the centred rows (Cov(zᵀC) = CᵀC =
 * n·Σ): the same distribution without a Cholesky factor. HF falls back to the mean alone when
 * 1e-9 · Σ is not positive definite; the sample here is then the mean plus noise of that
 * (degenerate) covariance, which is as close.
 */
function meanResizedRows(w: Tensor, added: number): Tensor {
  const x = w.detach().to({ dtype: 'float32' });
  const n = x.shape[0];
  const mean = x.mean(0, true); // (1, hidden)
  const centred = x.sub(mean); // (n, hidden)
  const z = randn([added, n], { device: x.device as never }); // (added, n)
  return mean.add(z.matmul(centred).mul(Math.sqrt(1e-9 / n))).to({ dtype: w.dtype });
}
