/**
 * SALMONN (bytedance/SALMONN, branch `salmonn` models/salmonn.py; v1 model.py): Whisper encoder +
 * `ln_speech`, BEATs + `ln_audio`, zero-padded and concatenated, a window-level Q-Former (one
 * query per 17-frame window), `speech_llama_proj`, and a LLaMA/Vicuna with LoRA on q_proj/v_proj.
 * Attribute and checkpoint key names are the original's (`speech_Qformer.bert.…`,
 * `speech_query_tokens`, `llama_model.base_model.model.…lora_A.default.weight`).
 *
 * Beyond the original: audio longer than 30 s is encoded in 30 s chunks (both encoders), windowed
 * per chunk, and the audio tokens concatenated in order (the original cuts at 30 s).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Module, lockConfig } from '../../nn/module';
import type { ModuleOptions, StateDict } from '../../nn/module';
import { WhisperEncoder } from '../../nn/whisper';
import { BeatsEncoder } from '../../nn/beats';
import { QFormer, QFormerConfig } from '../../nn/qformer';
import { LlamaForCausalLM } from '../../nn/llama';
import type { GenerationOptions } from '../../nn/llama';
import { checkQuantFormat, linearLayers } from '../../nn/quant';
import type { QuantFormat } from '../../nn/quant';
import { applyLora } from '../../nn/lora';
import { Linear, LayerNorm } from '../../nn/layers';
import { checkPretrainedDtype, loadCheckpoint, pretrainedPath } from '../../nn/pretrained';
import type { HubOptions } from '../../io/hub';
import { Tensor, tensor, cat, zeros, randn, full, noGrad } from '../../tensor';
import type { Device } from '../../device';
import type { DType } from '../../dtype';
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid, renameDeprecated, show } from '../../errors';
import { whisperLogMel, kaldiFbank } from '../../audio/features';
import { Tokenizer } from '../../data/tokenizer';
import { saveSafetensors } from '../../io/safetensors';
import { SalmonnBatch, SalmonnCollateItem, salmonnCollate } from './data';
export type { SalmonnBatch } from './data';

const SR = 16000;
const CHUNK = 30 * SR;

/** The original YAML's `model:` and `generate:` keys (defaults: configs/config.yaml, decode_config.yaml), plus emotorch's. */
export interface SalmonnConfig {
  freeze_whisper: boolean;
  freeze_beats: boolean;
  use_speech_Qformer: boolean;
  num_speech_query_token: number;
  freeze_speech_QFormer: boolean;
  window_level_Qformer: boolean;
  second_per_window: number;
  second_stride: number;
  freeze_speech_llama_proj: boolean;
  lora: boolean;
  lora_rank: number;
  lora_alpha: number;
  lora_dropout: number;
  multi_prompt: boolean;
  prompt_template: string;
  max_txt_len: number;
  end_sym: string;
  // generate:
  max_new_tokens: number;
  num_beams: number;
  do_sample: boolean;
  min_length: number;
  temperature: number;
  top_p: number;
  repetition_penalty: number;
  length_penalty: number;
  /** emotorch: the speech Q-Former's sizes (the original: bert-base-uncased with 2 layers). */
  qformer: Partial<QFormerConfig>;
  /** emotorch: cut audio after this many seconds (the original: 30). null: no cap, long audio in 30 s chunks. */
  max_audio_seconds: number | null;
}

/** A SALMONN config as given: any of its fields, and the deprecated spelling of one. */
export type SalmonnConfigInput = Partial<SalmonnConfig> & {
  /** @deprecated use `max_audio_seconds` (the config mirrors the YAML, so its names are snake_case); accepted until the next release. */
  maxAudioSeconds?: number | null;
} & {
  /** The original YAML's other `model:` keys, taken as {@link SALMONN_YAML_KEYS} says (paths, prompts, 8-bit loading). */
  [K in 'llama_path' | 'whisper_path' | 'beats_path' | 'ckpt' | 'speech_llama_proj_model' | 'prompt_path' | 'test_prompt_path']?: string | null;
} & {
  /**
   * The original's 8-bit LLaMA (`load_in_8bit=True`): true loads the LLaMA's decoder Linear layers
   * with int8 weights (LLM.int8's per-row absmax; the LM head, embeddings and norms stay in float,
   * as transformers leaves them), quantized while the checkpoint is read. Whisper, BEATs, the
   * Q-Former and the LoRA adapters are unchanged. Default false.
   */
  low_resource?: boolean;
  /**
   * The GPU the original puts the 8-bit LLaMA on (`device_map={'': device_8bit}`): a CUDA index ≥ 0.
   * emotorch keeps SALMONN on one device (the CLI's `--device`), so the 8-bit LLaMA runs where the
   * rest runs; on the CPU the value is checked and not used.
   */
  device_8bit?: number;
};

/** SALMONN's config defaults (configs/config.yaml and decode_config.yaml), used for the fields a config leaves out. */
export const SALMONN_DEFAULTS: SalmonnConfig = {
  freeze_whisper: true,
  freeze_beats: true,
  use_speech_Qformer: true,
  num_speech_query_token: 1,
  freeze_speech_QFormer: false,
  window_level_Qformer: true,
  second_per_window: 0.333333,
  second_stride: 0.333333,
  freeze_speech_llama_proj: false,
  lora: true,
  lora_rank: 8,
  lora_alpha: 32,
  lora_dropout: 0.1,
  multi_prompt: true,
  prompt_template: 'USER: {}\nASSISTANT:',
  max_txt_len: 300,
  end_sym: '</s>',
  max_new_tokens: 200,
  num_beams: 4,
  do_sample: false,
  min_length: 1,
  temperature: 1.0,
  top_p: 0.9,
  repetition_penalty: 1.0,
  length_penalty: 1.0,
  qformer: {},
  max_audio_seconds: null,
};

/** The Q-Former of the original: BertConfig (bert-base-uncased) with 2 layers, cross-attention in each, 1 query. */
const QFORMER_BASE: Partial<QFormerConfig> = {
  hidden_size: 768,
  num_hidden_layers: 2,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  layer_norm_eps: 1e-12,
  initializer_range: 0.02,
  hidden_act: 'gelu',
};

/** The original YAML's path keys (not config fields): where each goes in {@link Salmonn.fromPretrained}'s options. */
const SALMONN_PATH_KEYS = { llama_path: 'llm', whisper_path: 'whisper', beats_path: 'beats', ckpt: 'checkpoint' } as const;

/**
 * The keys the original's `SALMONN.from_config` (models/salmonn.py) and its runner read from the
 * YAML's `model:` block that are not fields of {@link SalmonnConfig}, each with what emotorch does
 * with it: a config may carry them all (`new Salmonn(parts, yaml.model)` takes
 * decode_config.yaml's block as written); any other unknown key is still refused.
 */
export const SALMONN_YAML_KEYS: Readonly<Record<string, string>> = {
  llama_path: "the LLaMA folder: fromPretrained's `llm` (used by fromPretrained when `llm` is not given; the constructor is given the parts)",
  whisper_path: "the Whisper folder: fromPretrained's `whisper` (as llama_path)",
  beats_path: "the BEATs checkpoint: fromPretrained's `beats` (as llama_path; '' is no BEATs)",
  ckpt: "the SALMONN checkpoint: fromPretrained's `checkpoint` (as llama_path; '' is none)",
  speech_llama_proj_model:
    "a checkpoint the original loads (strict=False) before ckpt, for the projection: '' (the released YAMLs') is taken; a path is refused, not ignored — pass those weights as the checkpoint",
  prompt_path: 'the training prompts (task → prompts): read by `emotorch salmonn train`, not by the model (taken and not used here)',
  test_prompt_path:
    "the evaluation prompts, read by the original's runner.py, not by from_config: taken and not used (emotorch's evaluation takes the prompts from its data)",
  low_resource:
    "the 8-bit LLaMA (the original's load_in_8bit=True): true loads the LLaMA's decoder Linear layers with int8 weights (fromPretrained's quantize: 'int8'; the LM head in float as transformers leaves it)",
  device_8bit:
    "the GPU of the original's 8-bit LLaMA: emotorch runs SALMONN on one device (the LLaMA where the rest is), so the index is checked and not used (on the CPU, nor by the original's meaning)",
};

/** The value of a {@link SALMONN_YAML_KEYS} key: checked, then left out of the resolved config. */
function checkYamlKey(k: string, v: unknown): void {
  if (v === undefined || v === null) return;
  if (k === 'low_resource') {
    if (typeof v !== 'boolean') invalid('true or false', 'SALMONN config.low_resource', v);
  } else if (k === 'device_8bit') {
    checkInt(v, 'SALMONN config.device_8bit', 0);
  } else if (k === 'speech_llama_proj_model') {
    if (v !== '')
      invalid(
        "'' (a separate projection checkpoint is not loaded: pass its weights as fromPretrained's checkpoint)",
        'SALMONN config.speech_llama_proj_model',
        v,
      );
  } else if (typeof v !== 'string') {
    invalid('a path (a string)', `SALMONN config.${k}`, v);
  }
}

/**
 * fromPretrained's options with the paths a config carries as the original YAML names them
 * (`llama_path`, `whisper_path`, `beats_path`, `ckpt`: from_config loads from them): each fills
 * its option when the option is absent ('' is none, as the original's `if beats_path:`); an option
 * given as another path is refused, naming both (never one silently preferred).
 */
function withYamlPaths(opts: SalmonnPretrainedOptions): SalmonnPretrainedOptions {
  const cfg = (opts.config ?? {}) as Record<string, unknown>;
  const out = { ...opts } as Record<string, unknown>;
  for (const [key, opt] of Object.entries(SALMONN_PATH_KEYS)) {
    const v = cfg[key];
    if (v === undefined || v === null || v === '') continue;
    if (out[opt] === undefined) out[opt] = v;
    else if (out[opt] !== v) invalid(`the path config.${key} names (${show(v)}), or only one of the two`, `opts.${opt}`, out[opt]);
  }
  return out as unknown as SalmonnPretrainedOptions;
}

function resolveSalmonnConfig(input: SalmonnConfigInput): SalmonnConfig {
  if (!input || typeof input !== 'object' || Array.isArray(input)) invalid('a config object', 'SALMONN config', input);
  const given = renameDeprecated(input, { maxAudioSeconds: 'max_audio_seconds' }, 'SALMONN config');
  // a misspelt or foreign key is an error naming it, never dropped (as every fromPretrained's opts.config);
  // the original's other YAML keys are taken as SALMONN_YAML_KEYS says
  for (const [k, v] of Object.entries(given)) {
    if (Object.prototype.hasOwnProperty.call(SALMONN_DEFAULTS, k)) continue;
    if (Object.prototype.hasOwnProperty.call(SALMONN_YAML_KEYS, k)) {
      checkYamlKey(k, v);
      continue;
    }
    invalid(
      'a field of the SALMONN config (SALMONN_DEFAULTS names them all) or a key of the original YAML (SALMONN_YAML_KEYS)',
      `SALMONN config.${k}`,
      'a name it does not have',
    );
  }
  const c = { ...SALMONN_DEFAULTS } as unknown as Record<string, unknown>;
  for (const [k, d] of Object.entries(SALMONN_DEFAULTS)) {
    const v = (given as Record<string, unknown>)[k];
    if (v === undefined) continue;
    if (k === 'max_audio_seconds') {
      if (v !== null) checkNumber(v, 'SALMONN config.max_audio_seconds', 0.05);
    } else if (k === 'qformer') {
      if (!v || typeof v !== 'object' || Array.isArray(v)) invalid('an object of Q-Former sizes', 'SALMONN config.qformer', v);
    } else if (typeof d !== typeof v || (typeof v === 'number' && !Number.isFinite(v))) {
      invalid(`a ${typeof d}`, `SALMONN config.${k}`, v);
    }
    c[k] = v;
  }
  const r = c as unknown as SalmonnConfig;
  if (!r.use_speech_Qformer) invalid('true (the original raises NotImplementedError otherwise)', 'SALMONN config.use_speech_Qformer', false);
  checkInt(r.num_speech_query_token, 'SALMONN config.num_speech_query_token', 1);
  checkNumber(r.second_per_window, 'SALMONN config.second_per_window', 0.02, 30);
  checkNumber(r.second_stride, 'SALMONN config.second_stride', 0.02, 30);
  checkInt(r.lora_rank, 'SALMONN config.lora_rank', 1);
  checkNumber(r.lora_dropout, 'SALMONN config.lora_dropout', 0, 1);
  checkInt(r.max_txt_len, 'SALMONN config.max_txt_len', 1);
  checkInt(r.max_new_tokens, 'SALMONN config.max_new_tokens', 1);
  checkInt(r.num_beams, 'SALMONN config.num_beams', 1);
  checkInt(r.min_length, 'SALMONN config.min_length', 0);
  if ((r.prompt_template.match(/\{\}/g) ?? []).length !== 1) invalid("a template with one '{}'", 'SALMONN config.prompt_template', r.prompt_template);
  return r;
}

/** Named outputs of `Salmonn.forward`: the loss and the LLM's logits. */
export interface SalmonnOutputs {
  loss?: Tensor;
  /** (batch, length, vocab) over [BOS, prompt before, audio tokens, prompt after, target]. */
  logits: Tensor;
  /** The labels the loss used: −100 over BOS, prompt, audio and padding. */
  labels?: Tensor;
  /** The attention mask fed to the LLM. */
  attentionMask: Tensor;
}

/**
 * Options of {@link Salmonn.generate}, camelCase; each defaults to the config's YAML key of the
 * same meaning (`maxNewTokens` ← `max_new_tokens`, `minLength` ← `min_length`, …).
 */
export interface SalmonnGenerateOptions {
  maxNewTokens?: number;
  numBeams?: number;
  doSample?: boolean;
  /** Tokens before end_sym may end an answer (the original's `min_length`). */
  minLength?: number;
  temperature?: number;
  /** Used when sampling. */
  topP?: number;
  repetitionPenalty?: number;
  lengthPenalty?: number;
  /** Streaming: each step's tokens as they come ({@link GenerationOptions.onTokens}; numBeams 1 only). */
  onTokens?: GenerationOptions['onTokens'];
  /** Cancellation ({@link GenerationOptions.signal}): rejects with ERR_ABORTED. */
  signal?: AbortSignal;
  /** Called before generation with the LLM prompt's length in positions (speech tokens + text tokens, padding included). */
  onPromptLength?: (positions: number) => void;
  /** Sampling from a generator of its own seeded with this ({@link GenerationOptions.seed}). */
  seed?: number;
  /** Decode in this running batch of the LLM's ({@link GenerationOptions.batch}; one clip, numBeams 1). */
  batch?: GenerationOptions['batch'];
}

/** The names {@link SalmonnGenerateOptions} has (any other is an error). */
const SALMONN_GENERATE_OPTIONS: readonly (keyof SalmonnGenerateOptions)[] = [
  'maxNewTokens',
  'numBeams',
  'doSample',
  'minLength',
  'temperature',
  'topP',
  'repetitionPenalty',
  'lengthPenalty',
  'onTokens',
  'signal',
  'onPromptLength',
  'seed',
  'batch',
];

/** Keys of original checkpoints that are reported and skipped. */
export const SALMONN_IGNORABLE: readonly RegExp[] = [
  /\.position_ids$/,
  /\.rotary_emb\.inv_freq$/,
  /^speech_Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings)\./,
  /^speech_Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\./,
  /^speech_Qformer\.cls\./,
  // BEATs' one relative position table, shared by every layer: only layer 0's copy is a parameter
  /^beats\.encoder\.layers\.([1-9]\d*)\.self_attn\.relative_attention_bias\.weight$/,
];

/** Our Q-Former (HF Blip2QFormerModel) names → the original LAVIS BERT names, under `speech_Qformer.`. */
function qformerToOriginal(n: string): string {
  return n
    .replace(/^layernorm\./, 'bert.embeddings.LayerNorm.')
    .replace(/^encoder\.layer\.(\d+)\.(attention|crossattention)\.attention\./, 'bert.encoder.layer.$1.$2.self.')
    .replace(/^encoder\./, 'bert.encoder.');
}

/** `w` (samples) zero-padded at the end to at least `n` samples, natively. */
function padTo(w: Tensor, n: number): Tensor {
  const len = w.shape[0];
  return len >= n ? w : cat([w, zeros([n - len], { dtype: w.dtype, device: w.device as Device })], 0);
}

/**
 * Moves each row's padding (prompts of different lengths pad inside the sequence, as the original
 * pads them) to the front: the LLaMA's generate takes left-padded prompts, so each row continues
 * from its own last token, as it would alone. (The original right-pads here too, and HF then
 * predicts a shorter prompt's first answer token from a pad position.)
 */
function leftAlign({ embeds, mask }: { embeds: Tensor; mask: Tensor }): { embeds: Tensor; mask: Tensor } {
  const rows = mask.toArray() as number[][];
  if (rows.every((r) => r.every((v) => Number(v) === 1))) return { embeds, mask };
  const [b, t, hDim] = embeds.shape;
  const order = rows.flatMap((r, i) => {
    const pads: number[] = [];
    const real: number[] = [];
    r.forEach((v, j) => (Number(v) ? real : pads).push(i * t + j));
    return [...pads, ...real];
  });
  const idx = tensor(order, { dtype: 'int64' }).to({ device: embeds.device });
  return {
    embeds: embeds
      .reshape([b * t, hDim])
      .indexSelect(0, idx)
      .reshape([b, t, hDim]), // (B, T, H), pads first
    mask: tensor(
      order.map((k) => Number(rows[Math.floor(k / t)][k % t])),
      { dtype: 'int64' },
    )
      .reshape([b, t])
      .to({ device: mask.device }),
  };
}

/** The dtype of a tower's weights (its first parameter's). */
function towerDtype(m: Module): DType {
  const [first] = m.parameters();
  return first ? first.dtype : 'float32';
}

/** What {@link Salmonn.fromPretrained} takes. */
export interface SalmonnPretrainedOptions {
  /** an HF Whisper folder, or its repo id (`openai/whisper-large-v2`, read from the hub cache: {@link HubOptions}) */
  whisper: string;
  /** the original BEATs `.pt` (or a folder); null or absent: no BEATs */
  beats?: string | null;
  /** an HF LLaMA / Vicuna folder, or its repo id (`lmsys/vicuna-13b-v1.1`) */
  llm: string;
  /** Hub options for the repo ids (revision, cache folder, token, offline). */
  hub?: HubOptions;
  /** a SALMONN checkpoint (`.pth` or our `.safetensors`) */
  checkpoint?: string | null;
  /** the tokenizer file (default `<llm>/tokenizer.json`) */
  tokenizer?: string;
  /** SALMONN config fields (its YAML names) */
  config?: SalmonnConfigInput;
  /**
   * Grow the LLaMA's vocabulary to the tokenizer's after `[PAD]` is added, as the original
   * `models/salmonn.py` does (`resize_token_embeddings(len(tokenizer))`: 32 001 rows for Vicuna,
   * the last one not in any checkpoint and present in every softmax). `true`: the new row is drawn
   * as HF's resize does (mean of the rows + 1e-9-covariance noise; seed with `et.manualSeed`);
   * `{ rows: { embed, lmHead? } }`: the rows you pass (e.g. the ones your Python run drew).
   * Default false: the LLaMA keeps its size and padded positions read row 0, which no loss or
   * unmasked position sees.
   */
  resizeTokenEmbeddings?: boolean | { rows: { embed: Tensor; lmHead?: Tensor } };
  /**
   * The frozen towers' dtype (Whisper, BEATs and the LLaMA), each loaded in place in it: float32 by
   * default; `'float16'` as the original loads Vicuna (`torch_dtype=torch.float16`), or
   * `'bfloat16'`; `'auto'`: each tower's checkpoint's own. SALMONN's own small parts (the
   * LayerNorms, Q-Former, query tokens, projection and LoRA adapters) stay float32, as the
   * original keeps its trainable parts under autocast; the audio tokens are cast to the LLaMA's
   * dtype where they join the prompt.
   */
  dtype?: DType | 'auto';
  /**
   * emotorch's own: the LLaMA's decoder Linear layers quantized while the checkpoint is read
   * ({@link QuantFormat}: `'int8'`, `'nf4'`, `'q8_0'`, `'q4_0'`; the LM head, embeddings and norms in
   * `dtype`). The config's `low_resource: true` is `'int8'`, the original's 8-bit LLaMA; another
   * format together with it is refused. Whisper, BEATs, the Q-Former and LoRA stay as they are.
   */
  quantize?: QuantFormat;
}

/**
 * The quantization of SALMONN's LLaMA: `opts.quantize`, or `'int8'` for the config's
 * `low_resource: true` (the original's load_in_8bit); undefined for none.
 * @throws EmotorchError ERR_INVALID_ARG for an unknown format, or one that low_resource contradicts
 */
function salmonnQuantization(opts: { quantize?: unknown; config?: SalmonnConfigInput | null }): QuantFormat | undefined {
  const q = opts.quantize === undefined ? undefined : checkQuantFormat(opts.quantize, 'Salmonn.fromPretrained opts.quantize');
  if (opts.config?.low_resource !== true) return q;
  if (q !== undefined && q !== 'int8')
    invalid("'int8' or nothing: config.low_resource true is the original's 8-bit LLaMA", 'Salmonn.fromPretrained opts.quantize', q);
  return 'int8';
}

/**
 * SALMONN as one module: `forward(batch) → { loss, logits }`, `generate(audio, instruction)`.
 * Guide: [SALMONN](../../../docs/salmonn.md).
 * @example
 * const model = await et.systems.salmonn.Salmonn.fromPretrained({ whisper: 'whisper-large-v2/', beats: 'BEATs.pt',
 *   llm: 'vicuna-13b-v1.1/', checkpoint: 'salmonn_v1.pth' });
 * const [answer] = await model.generate([wave], ['Describe the emotion of the speaker.']);
 */
export class Salmonn extends Module {
  declare readonly config: SalmonnConfig;
  readonly tokenizer: Tokenizer;
  readonly speech_encoder: WhisperEncoder;
  readonly ln_speech: LayerNorm;
  readonly beats: BeatsEncoder | null;
  readonly ln_audio: LayerNorm | null;
  readonly speech_Qformer: QFormer;
  speech_query_tokens: Tensor;
  readonly speech_llama_proj: Linear;
  readonly llama_model: LlamaForCausalLM;
  /** Token ids: BOS, EOS (`end_sym`), and the pad the original adds as `[PAD]`. */
  readonly ids: { bos: number; eos: number; pad: number };

  /**
   * Assembles SALMONN from its parts (weights as they are; the Q-Former, projection and LoRA
   * initialized as the original). LoRA is applied here when `config.lora`.
   * @throws EmotorchError ERR_INVALID_ARG for a bad config or parts that do not fit.
   */
  constructor(parts: { whisper: WhisperEncoder; beats?: BeatsEncoder | null; llm: LlamaForCausalLM; tokenizer: Tokenizer }, config: SalmonnConfigInput = {}) {
    super();
    const c = resolveSalmonnConfig(config);
    lockConfig(this, 'SALMONN', c);
    if (!(parts?.whisper instanceof WhisperEncoder)) invalid('a WhisperEncoder', 'parts.whisper', parts?.whisper);
    if (!(parts.llm instanceof LlamaForCausalLM)) invalid('a LlamaForCausalLM', 'parts.llm', parts.llm);
    if (!(parts.tokenizer instanceof Tokenizer)) invalid('an et.data.Tokenizer', 'parts.tokenizer', parts.tokenizer);
    if (parts.beats != null && !(parts.beats instanceof BeatsEncoder)) invalid('a BeatsEncoder or null', 'parts.beats', parts.beats);
    // low_resource is how the LLaMA was loaded: a float LLaMA under low_resource true would be the config ignored
    if (config.low_resource === true && !linearLayers(parts.llm).some((l) => l.format === 'int8'))
      invalid(
        "a LLaMA with int8 layers for config.low_resource true (Salmonn.fromPretrained loads it so; or LlamaForCausalLM.fromPretrained(dir, { quantize: 'int8' }))",
        'parts.llm',
        'a float LLaMA',
      );
    this.tokenizer = parts.tokenizer;
    const dW = parts.whisper.config.d_model;
    this.speech_encoder = this.registerModule('speech_encoder', parts.whisper);
    this.ln_speech = this.registerModule('ln_speech', LayerNorm.create({ normalized_shape: dW }));
    const beats = parts.beats ?? null;
    this.beats = beats ? this.registerModule('beats', beats) : null;
    const dB = beats ? beats.config.encoder_embed_dim : 0;
    this.ln_audio = beats ? this.registerModule('ln_audio', LayerNorm.create({ normalized_shape: dB })) : null;
    const qcfg = { ...QFORMER_BASE, ...c.qformer, encoder_hidden_size: dW + dB, cross_attention_frequency: 1, num_query_tokens: 0 };
    this.speech_Qformer = this.registerModule('speech_Qformer', QFormer.create(qcfg));
    const hq = this.speech_Qformer.config.hidden_size;
    this.speech_query_tokens = this.registerParameter(
      'speech_query_tokens',
      randn([1, c.num_speech_query_token, hq]).mul(this.speech_Qformer.config.initializer_range),
    );
    this.speech_llama_proj = this.registerModule('speech_llama_proj', Linear.create({ in_features: hq, out_features: parts.llm.config.hidden_size }));
    this.llama_model = this.registerModule('llama_model', parts.llm);

    // Frozen parts, as the original's __init__
    for (const p of parts.llm.parameters()) p.requiresGrad = false;
    if (c.lora) applyLora(parts.llm, { r: c.lora_rank, alpha: c.lora_alpha, dropout: c.lora_dropout, targetModules: ['q_proj', 'v_proj'] });
    if (c.freeze_whisper) parts.whisper.freeze();
    else parts.whisper.unfreeze();
    if (beats) {
      if (c.freeze_beats) beats.freeze();
      else beats.unfreeze();
    }
    if (c.freeze_speech_QFormer) {
      this.speech_Qformer.freeze();
      this.speech_query_tokens.requiresGrad = false;
    }
    if (c.freeze_speech_llama_proj) this.speech_llama_proj.freeze();

    const tok = this.tokenizer;
    const bos = tok.bosTokenId;
    const eos = tok.tokenToId(c.end_sym);
    if (bos === undefined) invalid('a tokenizer with a BOS token', 'tokenizer', 'none');
    if (eos === undefined) invalid(`a tokenizer that has end_sym '${c.end_sym}' as one token`, 'tokenizer', 'none');
    // The original adds '[PAD]' as the pad token (padding side right).
    let pad = tok.padTokenId;
    if (pad === undefined) {
      pad = tok.tokenToId('[PAD]');
      if (pad === undefined) {
        tok.addSpecialTokens(['[PAD]']);
        pad = tok.tokenToId('[PAD]')!;
      }
    }
    this.ids = { bos, eos, pad };
  }

  /**
   * Loads the parts users have: an HF Whisper folder, the original BEATs `.pt`, an HF LLaMA/Vicuna
   * folder (with its tokenizer.json, or only its SentencePiece tokenizer.model), and a SALMONN checkpoint (`salmonn_v1.pth`,
   * `salmonn_7b_v0.pth`, the training code's `checkpoint_N.pth`, or a `.safetensors` saved by
   * {@link saveCheckpoint}). Ignorable keys are skipped and listed in `model.loadReport.ignored`.
   * @throws EmotorchError ERR_STATE_DICT naming an unknown, missing or mis-shaped key; ERR_IO;
   *   ERR_INVALID_ARG naming a `config` key that is not a field of the SALMONN config (a misspelling
   *   is never dropped silently) or a bad value.
   */
  static async fromPretrained(opts: SalmonnPretrainedOptions): Promise<Salmonn> {
    if (!opts || typeof opts !== 'object') invalid('{ whisper, beats, llm, checkpoint }', 'opts', opts);
    checkOptionNames(
      opts,
      ['whisper', 'beats', 'llm', 'checkpoint', 'tokenizer', 'config', 'resizeTokenEmbeddings', 'hub', 'dtype', 'quantize'],
      'Salmonn.fromPretrained',
    );
    resolveSalmonnConfig(opts.config ?? {}); // a bad config or dtype fails before the parts load
    checkPretrainedDtype(opts.dtype);
    const quantize = salmonnQuantization(opts);
    opts = withYamlPaths(opts);
    for (const k of ['whisper', 'llm'] as const) if (typeof opts[k] !== 'string') invalid('a path or a Hugging Face repo id', k, opts[k]);
    // repo ids ('openai/whisper-large-v2', 'lmsys/vicuna-13b-v1.1') become their hub cache folders
    opts = { ...opts, whisper: await pretrainedPath(opts.whisper, { hub: opts.hub }), llm: await pretrainedPath(opts.llm, { hub: opts.hub }) };
    const resize = opts.resizeTokenEmbeddings ?? false;
    if (typeof resize !== 'boolean' && !(resize && typeof resize === 'object' && resize.rows && typeof resize.rows === 'object'))
      invalid('true, false or { rows: { embed, lmHead? } }', 'resizeTokenEmbeddings', resize);
    if (resize && quantize)
      invalid(
        `no resizeTokenEmbeddings with a quantized LLaMA (${opts.quantize === undefined ? 'config.low_resource' : 'opts.quantize'}): the resize builds a float copy of the whole LLaMA`,
        'resizeTokenEmbeddings',
        resize,
      );
    const dtype = opts.dtype === undefined ? {} : { dtype: opts.dtype };
    const whisper = await WhisperEncoder.fromPretrained(opts.whisper, dtype);
    const beats = opts.beats ? await BeatsEncoder.fromPretrained(opts.beats, dtype) : null;
    // low_resource: the original's LlamaForCausalLM.from_pretrained(..., load_in_8bit=True), its LM head left in float
    let llm = await LlamaForCausalLM.fromPretrained(opts.llm, quantize ? { ...dtype, quantize } : dtype);
    // the LLaMA folder's tokenizer.json, else its tokenizer.model (SentencePiece, as Vicuna v1.1 ships it)
    const tokFile = opts.tokenizer ?? opts.llm;
    if (opts.tokenizer === undefined && !['tokenizer.json', 'tokenizer.model'].some((f) => fs.existsSync(path.join(opts.llm, f)))) {
      throw new EmotorchError(`no tokenizer: '${opts.llm}' has neither tokenizer.json nor tokenizer.model (pass opts.tokenizer)`, 'ERR_IO');
    }
    const tokenizer = await Tokenizer.fromFile(tokFile);
    if (resize) {
      // models/salmonn.py: add '[PAD]', then llama_model.resize_token_embeddings(len(tokenizer))
      if (tokenizer.padTokenId === undefined && tokenizer.tokenToId('[PAD]') === undefined) tokenizer.addSpecialTokens(['[PAD]']);
      if (tokenizer.vocabSize > llm.config.vocab_size) {
        const old = llm;
        llm = await old.resizeTokenEmbeddings(tokenizer.vocabSize, resize === true ? {} : { rows: resize.rows });
        old.dispose();
      }
    }
    const model = new Salmonn({ whisper, beats, llm, tokenizer }, opts.config ?? {});
    if (opts.checkpoint) await model.loadCheckpoint(opts.checkpoint);
    model.eval();
    return model;
  }

  /** What the last {@link loadCheckpoint} skipped as ignorable. */
  loadReport: { ignored: string[]; loaded: string[] } = { ignored: [], loaded: [] };

  /** Our parameter name → the original checkpoint key. */
  originalName(n: string): string {
    if (n.startsWith('speech_Qformer.')) return `speech_Qformer.${qformerToOriginal(n.slice('speech_Qformer.'.length))}`;
    if (n.startsWith('llama_model.') && this.config.lora) return `llama_model.base_model.model.${n.slice('llama_model.'.length)}`;
    return n;
  }

  /** Moves or casts as `Module.to`, then points `speech_query_tokens` at the moved parameter (`to` replaces own parameters). */
  async to(opts: ModuleOptions): Promise<this> {
    await super.to(opts);
    this.speech_query_tokens = new Map(this.ownNative().params).get('speech_query_tokens')!;
    return this;
  }

  /** Parameters that are SALMONN's own under this config (must be in a checkpoint). */
  private requiredNames(): string[] {
    return this.namedParameters()
      .map(([n]) => n)
      .filter((n) => /^(ln_speech|ln_audio|speech_Qformer|speech_query_tokens|speech_llama_proj)\b/.test(n) || /\.lora_[AB]\./.test(n));
  }

  /**
   * Loads a SALMONN checkpoint (torch.save `{'model': state_dict}` or safetensors, original key names).
   * @throws EmotorchError ERR_STATE_DICT naming every unknown, missing or mis-shaped key.
   */
  async loadCheckpoint(file: string): Promise<{ ignored: string[]; loaded: string[] }> {
    return this.loadCheckpointStateDict(await loadCheckpoint(file), file);
  }

  /** {@link loadCheckpoint} from a state dict already in memory (original key names). */
  async loadCheckpointStateDict(sd: StateDict, source = 'state dict'): Promise<{ ignored: string[]; loaded: string[] }> {
    const byOriginal = new Map(this.namedParameters().map(([n, p]) => [this.originalName(n), [n, p] as [string, Tensor]]));
    const ignored: string[] = [];
    const unknown: string[] = [];
    const mapped = new Map<string, Tensor>();
    for (const [k, t] of sd) {
      if (SALMONN_IGNORABLE.some((r) => r.test(k))) {
        ignored.push(k);
        continue;
      }
      const own = byOriginal.get(k);
      if (!own) {
        unknown.push(k);
        continue;
      }
      mapped.set(own[0], t);
    }
    const missing = this.requiredNames()
      .filter((n) => !mapped.has(n))
      .map((n) => this.originalName(n));
    // each kind of problem names its first few keys and counts the rest (55 mismatched Q-Former keys are one cause)
    const some = (keys: string[]) => keys.slice(0, 5).join(', ') + (keys.length > 5 ? ` and ${keys.length - 5} more` : '');
    const problems: string[] = [];
    if (unknown.length) problems.push(`${unknown.length} unexpected keys: ${some(unknown.map((k) => `'${k}'`))}`);
    if (missing.length) problems.push(`${missing.length} missing keys: ${some(missing.map((k) => `'${k}'`))}`);
    const own = new Map(this.namedParameters());
    const notTensor: string[] = [],
      shapes: string[] = [];
    let qformerShapes = false;
    for (const [n, t] of mapped) {
      const p = own.get(n)!;
      if (!(t instanceof Tensor)) notTensor.push(`'${this.originalName(n)}'`);
      else if (t.shape.join() !== p.shape.join()) {
        shapes.push(`'${this.originalName(n)}': checkpoint [${t.shape}] vs model [${p.shape}]`);
        qformerShapes ||= n.startsWith('speech_Qformer.') || n === 'speech_query_tokens';
      }
    }
    if (notTensor.length) problems.push(`${notTensor.length} entries that are not tensors: ${some(notTensor)}`);
    if (shapes.length) problems.push(`${shapes.length} wrong shapes: ${some(shapes)}`);
    if (qformerShapes) {
      problems.push(
        `the Q-Former's sizes (${this.speech_Qformer.config.hidden_size} hidden, ${this.speech_Qformer.config.num_attention_heads} heads) are not the checkpoint's: ` +
          "the original takes them from BertConfig.from_pretrained('bert-base-uncased'); give config.qformer the checkpoint's sizes " +
          "(on the command line: a bert-base-uncased/config.json in the working folder, as the original reads it, or a qformer: block in the YAML's model:)",
      );
    }
    if (problems.length) throw new EmotorchError(`SALMONN checkpoint ${source}: ${problems.join('; ')}`, 'ERR_STATE_DICT');
    await this.loadStateDict(mapped, { strict: false });
    this.loadReport = { ignored, loaded: [...mapped.keys()].map((n) => this.originalName(n)) };
    return this.loadReport;
  }

  /** The trainable parameters under the original key names (what the original's runner saves, less buffers). */
  checkpointStateDict(): StateDict {
    return new Map(
      this.namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([n, p]) => [this.originalName(n), p] as [string, Tensor]),
    );
  }

  /**
   * Saves {@link checkpointStateDict} as safetensors: the original's key names, so Python loads it
   * with `model.load_state_dict(safetensors.torch.load_file(f), strict=False)`.
   */
  async saveCheckpoint(file: string): Promise<void> {
    await saveSafetensors(file, this.checkpointStateDict(), { format: 'pt', source: 'emotorch SALMONN' });
  }

  /** Q-Former window length and stride in encoder frames (the original: round(1500 · seconds / 30)). */
  get window(): { kernel: number; stride: number } {
    return { kernel: Math.round((1500 * this.config.second_per_window) / 30), stride: Math.round((1500 * this.config.second_stride) / 30) };
  }

  /**
   * One clip as the original prepares it: ≥ 1 s (zero-padded), capped at max_audio_seconds. A
   * Tensor stays native (never read back to JS); a Float32Array is uploaded once.
   */
  private prepare(a: Float32Array | Tensor, i: number): Tensor {
    let w: Tensor;
    if (a instanceof Tensor) {
      if (a.ndim !== 1 || !a.dtype.startsWith('float')) invalid('a 1-D float waveform', `audio[${i}]`, `${a.dtype} [${a.shape}]`);
      w = a.float();
    } else if (a instanceof Float32Array) w = tensor(a);
    else invalid('a Float32Array or 1-D Tensor at 16 kHz', `audio[${i}]`, a);
    if (w.shape[0] === 0) invalid('a non-empty waveform', `audio[${i}]`, 'no samples');
    const cap = this.config.max_audio_seconds;
    if (cap !== null && w.shape[0] > Math.round(cap * SR)) w = w.slice(0, 0, Math.round(cap * SR));
    return padTo(w, SR);
  }

  /** Encoder states for rows of waveforms, padded together as the original batch: (rows, T, C). */
  private async encodeRows(rows: Tensor[], padTo30s: boolean): Promise<Tensor> {
    const n = Math.max(...rows.map((r) => r.shape[0]));
    const mask = new Uint8Array(rows.length * n); // 1 = padding, from the lengths alone
    rows.forEach((r, i) => mask.fill(1, i * n + r.shape[0], (i + 1) * n));
    const at = rows[0].device;
    const wave = cat(
      rows.map((r) => padTo(r.to({ device: at as Device }), n).reshape([1, n])),
      0,
    ); // (rows, n)
    const dev = this.speech_query_tokens.device;
    // a tower in half precision takes its input in its dtype; its states go on in float32
    const own = this.speech_query_tokens.dtype;
    const mel = (await whisperLogMel(wave, { padTo30s })).to({ device: dev, dtype: towerDtype(this.speech_encoder) });
    let x = await this.ln_speech.forward((await this.speech_encoder.forward({ inputFeatures: mel })).lastHiddenState.to({ dtype: own })); // (rows, Tw, dW)
    if (this.beats && this.ln_audio) {
      const fbank = (await kaldiFbank(wave, { beats: true })).to({ device: dev, dtype: towerDtype(this.beats) });
      const attentionMask = mask.some((m) => m)
        ? tensor(mask.map((m) => 1 - m))
            .reshape([rows.length, n])
            .to({ dtype: 'bool', device: dev })
        : undefined;
      let audio = await this.ln_audio.forward((await this.beats.forward({ inputFeatures: fbank, attentionMask })).lastHiddenState.to({ dtype: own }));
      const [tw, tb] = [x.shape[1], audio.shape[1]];
      if (tb < tw) audio = cat([audio, zeros([rows.length, tw - tb, audio.shape[2]], { dtype: audio.dtype, device: dev })], 1);
      else if (tb > tw) x = cat([x, zeros([rows.length, tb - tw, x.shape[2]], { dtype: x.dtype, device: dev })], 1);
      x = cat([x, audio], 2); // (rows, T, dW + dB)
    }
    return x;
  }

  /** Window-level Q-Former and projection: (rows, T, C) → (rows, L · queries, hidden). */
  private async qformerTokens(x: Tensor): Promise<Tensor> {
    const [b, t, c] = x.shape;
    const { kernel, stride } = this.window;
    const L = t >= kernel ? Math.floor((t - kernel) / stride) + 1 : 0;
    if (L === 0) return zeros([b, 0, this.llama_model.config.hidden_size], { device: x.device });
    let win: Tensor;
    if (kernel === stride)
      win = x.slice(1, 0, L * kernel).reshape([b * L, kernel, c]); // (B·L, kernel, C), as F.unfold
    else
      win = cat(
        Array.from({ length: L }, (_, l) => x.slice(1, l * stride, l * stride + kernel).unsqueeze(1)),
        1,
      ).reshape([b * L, kernel, c]);
    const q = this.speech_query_tokens;
    const { lastHiddenState } = await this.speech_Qformer.forward({ queryEmbeds: q.expand([b * L, q.shape[1], q.shape[2]]), encoderHiddenStates: win });
    const proj = await this.speech_llama_proj.forward(lastHiddenState); // (B·L, queries, H)
    return proj.reshape([b, L * q.shape[1], proj.shape[2]]);
  }

  /**
   * Audio tokens for each clip: clips up to 30 s exactly as the original (Whisper padded to 30 s,
   * BEATs over the batch padded together, 88 tokens); with any longer clip, each clip in 30 s
   * chunks, one after another (88 tokens per full chunk, fewer for the tail).
   * @returns one (1, tokens, hidden) tensor per clip
   */
  async encodeAudio(audio: Array<Float32Array | Tensor>): Promise<Tensor[]> {
    if (!Array.isArray(audio) || audio.length === 0) invalid('a non-empty array of waveforms', 'audio', audio);
    const clips = audio.map((a, i) => this.prepare(a, i));
    if (clips.every((c) => c.shape[0] <= CHUNK)) {
      const tokens = await this.qformerTokens(await this.encodeRows(clips, true));
      return clips.map((_, i) => tokens.slice(0, i, i + 1));
    }
    const out: Tensor[] = [];
    for (const clip of clips) {
      const parts: Tensor[] = [];
      for (let s = 0; s < clip.shape[0]; s += CHUNK) {
        const chunk = clip.slice(0, s, Math.min(s + CHUNK, clip.shape[0]));
        const full = chunk.shape[0] === CHUNK || s === 0;
        parts.push(await this.qformerTokens(await this.encodeRows([padTo(chunk, SR)], full)));
      }
      out.push(cat(parts, 1));
    }
    return out;
  }

  private prompts(batch: { prompt?: string[]; instruction?: string[] }, b: number): string[] {
    let prompts: string[];
    if (batch.prompt !== undefined) {
      if (!Array.isArray(batch.prompt) || batch.prompt.length !== b || batch.prompt.some((p) => typeof p !== 'string'))
        invalid(`${b} prompt strings`, 'batch.prompt', batch.prompt);
      prompts = batch.prompt;
    } else if (batch.instruction !== undefined) {
      if (!Array.isArray(batch.instruction) || batch.instruction.length !== b || batch.instruction.some((p) => typeof p !== 'string'))
        invalid(`${b} instruction strings`, 'batch.instruction', batch.instruction);
      prompts = batch.instruction.map((s) => this.config.prompt_template.replace('{}', `<Speech><SpeechHere></Speech> ${s.trim()}`));
    } else invalid('prompt or instruction strings', 'batch', batch);
    prompts.forEach((p, i) => {
      if (p.split('<SpeechHere>').length !== 2) invalid("a prompt with exactly one '<SpeechHere>'", `prompt[${i}]`, p);
    });
    return prompts;
  }

  /** Token ids → embeddings, with the pad id (beyond the vocabulary when the original added '[PAD]') read as row 0. */
  private async embedIds(ids: Tensor): Promise<Tensor> {
    const v = this.llama_model.config.vocab_size;
    const safe = this.ids.pad >= v ? ids.maskedFill(ids.eq(this.ids.pad), 0) : ids;
    return this.llama_model.embed(safe.to({ device: this.speech_query_tokens.device }));
  }

  /** [BOS, prompt before, audio, prompt after] embeddings and mask, padded per segment as the original. */
  private async wrap(audioTokens: Tensor[], prompts: string[]): Promise<{ embeds: Tensor; mask: Tensor }> {
    const b = prompts.length;
    const tok = this.tokenizer;
    const dev = this.speech_query_tokens.device;
    const split = prompts.map((p) => p.split('<SpeechHere>'));
    const enc = (texts: string[]) => tok.encodeBatch(texts, { addSpecialTokens: false, padding: 'longest', padTokenId: this.ids.pad, returnTensors: true });
    const before = await enc(split.map((s) => s[0]));
    const after = await enc(split.map((s) => s[1]));
    const na = Math.max(...audioTokens.map((t) => t.shape[1]));
    const h = this.llama_model.config.hidden_size;
    const audio = cat(
      audioTokens.map((t) => (t.shape[1] < na ? cat([t, zeros([1, na - t.shape[1], h], { dtype: t.dtype, device: dev })], 1) : t)),
      0,
    );
    const audioMask = tensor(
      audioTokens.flatMap((t) => Array.from({ length: na }, (_, j) => (j < t.shape[1] ? 1 : 0))),
      { dtype: 'int64' },
    ).reshape([b, na]);
    const bos = await this.embedIds(full([b, 1], this.ids.bos, { dtype: 'int64' }));
    const embeds = cat([bos, await this.embedIds(before.inputIds), audio.to({ dtype: bos.dtype }), await this.embedIds(after.inputIds)], 1);
    // atts_bos = speech_atts[:, :1]: the first wrapped position's mask (1)
    const mask = cat([before.attentionMask.slice(1, 0, 1), before.attentionMask, audioMask, after.attentionMask], 1).to({ device: dev });
    return { embeds, mask };
  }

  /**
   * Gathers SALMONN items (`{ audio, prompt, target }`, e.g. from et.data.SalmonnDataset) into the
   * batch {@link forward} takes; the waveforms stay as they are (forward pads them as the original).
   * @throws EmotorchError ERR_INVALID_ARG for an empty batch.
   * @example
   * const trainer = new et.train.Trainer({ model, trainDataset, dataCollator: (items) => et.systems.salmonn.Salmonn.collate(items), args });
   */
  static collate(items: readonly SalmonnCollateItem[]): SalmonnBatch {
    return salmonnCollate(items);
  }

  /**
   * The training forward of the original: HF's shifted causal-LM loss over the targets (+ end_sym).
   * @param batch `{ audio, prompt | instruction, target }`
   * @returns `{ loss, logits, labels, attentionMask }` (`loss` only with targets)
   * @throws EmotorchError ERR_INVALID_ARG for a malformed batch.
   */
  async forward(batch: SalmonnBatch): Promise<SalmonnOutputs> {
    if (!batch || typeof batch !== 'object' || !Array.isArray(batch.audio)) invalid('a batch { audio, prompt | instruction, target }', 'batch', batch);
    const b = batch.audio.length;
    const prompts = this.prompts(batch, b);
    const { embeds, mask } = await this.wrap(await this.encodeAudio(batch.audio), prompts);
    if (batch.target === undefined) {
      const { logits } = await this.llama_model.forward({ inputsEmbeds: embeds, attentionMask: mask });
      return { logits, attentionMask: mask };
    }
    if (!Array.isArray(batch.target) || batch.target.length !== b || batch.target.some((t) => typeof t !== 'string'))
      invalid(`${b} target strings`, 'batch.target', batch.target);
    const text = batch.target.map((t) => t + this.config.end_sym);
    const reg = await this.tokenizer.encodeBatch(text, {
      addSpecialTokens: false,
      padding: 'longest',
      truncation: true,
      maxLength: this.config.max_txt_len,
      padTokenId: this.ids.pad,
      returnTensors: true,
    });
    const ids = reg.inputIds;
    const targets = ids.maskedFill(ids.eq(this.ids.pad), -100);
    const dev = embeds.device;
    const labels = cat([full([b, embeds.shape[1]], -100, { dtype: 'int64' }), targets], 1).to({ device: dev });
    const inputsEmbeds = cat([embeds, await this.embedIds(ids)], 1);
    const attentionMask = cat([mask, reg.attentionMask.to({ device: dev })], 1);
    const { logits, loss } = await this.llama_model.forward({ inputsEmbeds, attentionMask, labels, numItemsInBatch: batch.numItemsInBatch });
    return { loss, logits, labels, attentionMask };
  }

  /**
   * Answers an instruction about each clip (beam search with the original's defaults: 4 beams,
   * max_new_tokens 200, min_length 1, repetition and length penalty 1, stop at end_sym).
   * @param audio mono 16 kHz waveforms
   * @param instruction one instruction for all clips, or one per clip (or full prompts with `<SpeechHere>`)
   * @param opts {@link SalmonnGenerateOptions} (camelCase; defaults from the config's YAML keys)
   * @returns the answers, decoded up to end_sym without special tokens
   * @throws EmotorchError ERR_INVALID_ARG for bad audio or instructions, a bad option value, or an
   *   unknown option name (e.g. the YAML spelling `max_new_tokens`)
   * @example
   * const [text] = await model.generate([wave], 'What emotion does the speaker show?', { maxNewTokens: 64 });
   */
  async generate(audio: Array<Float32Array | Tensor>, instruction: string | string[], opts: SalmonnGenerateOptions = {}): Promise<string[]> {
    const tokens = await this.generateTokens(audio, instruction, opts);
    const out: string[] = [];
    for (const row of tokens) out.push(await this.tokenizer.decode(row, { skipSpecialTokens: true }));
    return out;
  }

  /** {@link generate}'s token ids, each cut before the first end_sym. */
  async generateTokens(audio: Array<Float32Array | Tensor>, instruction: string | string[], opts: SalmonnGenerateOptions = {}): Promise<number[][]> {
    if (!Array.isArray(audio) || audio.length === 0) invalid('a non-empty array of waveforms', 'audio', audio);
    const b = audio.length;
    const given = typeof instruction === 'string' ? Array(b).fill(instruction) : instruction;
    if (!Array.isArray(given) || given.length !== b) invalid(`a string or ${b} strings`, 'instruction', instruction);
    const asPrompt = given.every((s) => typeof s === 'string' && s.includes('<SpeechHere>'));
    const prompts = this.prompts(asPrompt ? { prompt: given } : { instruction: given }, b);
    const o = checkOptionNames(opts, SALMONN_GENERATE_OPTIONS, 'Salmonn.generate');
    const c = this.config;
    const doSample = o.doSample ?? c.do_sample;
    const gen = {
      maxNewTokens: o.maxNewTokens ?? c.max_new_tokens,
      numBeams: o.numBeams ?? c.num_beams,
      doSample,
      minNewTokens: o.minLength ?? c.min_length,
      temperature: o.temperature ?? c.temperature,
      topP: doSample ? (o.topP ?? c.top_p) : 1,
      repetitionPenalty: o.repetitionPenalty ?? c.repetition_penalty,
      lengthPenalty: o.lengthPenalty ?? c.length_penalty,
      eosTokenId: this.ids.eos,
      padTokenId: Math.min(this.ids.pad, this.llama_model.config.vocab_size - 1),
      ...(o.onTokens ? { onTokens: o.onTokens } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.batch ? { batch: o.batch } : {}),
    };
    if (o.onPromptLength !== undefined && typeof o.onPromptLength !== 'function')
      invalid('a function (positions: number) => void', 'onPromptLength', o.onPromptLength);
    return noGrad(async () => {
      const { embeds, mask } = leftAlign(await this.wrap(await this.encodeAudio(audio), prompts));
      o.onPromptLength?.(embeds.shape[1]);
      const { newTokens } = await this.llama_model.generate({ inputsEmbeds: embeds, attentionMask: mask }, gen);
      const rows = newTokens.toArray() as number[][];
      return rows.map((r) => {
        const e = r.indexOf(this.ids.eos);
        return e < 0 ? r : r.slice(0, e);
      });
    });
  }
}
