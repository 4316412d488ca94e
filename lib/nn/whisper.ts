/** Whisper encoder (HF WhisperModel(...).encoder), on native/models/whisper. */
import { NativeModule, ModuleOptions, lockConfig, checkModuleOptions } from './module';
import { Tensor, checkTensor } from '../tensor';
import { invalid } from '../errors';
import { ConfigSpec, PretrainedOptions, createForCheckpoint, Rename, finishPretrained, loadCheckpoint, readConfig, renameKeys, resolveConfig, stripPrefix, withOverrides, pretrainedPath, checkPretrainedOptions } from './pretrained';

/** HF WhisperConfig's encoder fields (defaults: whisper-large-v2's sizes). */
export interface WhisperConfig {
  num_mel_bins: number;
  d_model: number;
  encoder_layers: number;
  encoder_attention_heads: number;
  encoder_ffn_dim: number;
  max_source_positions: number;
  dropout: number;
  attention_dropout: number;
  activation_dropout: number;
  init_std: number;
  activation_function: string;
}

/** The WhisperConfig values used for the fields a config leaves out. */
export const WHISPER_DEFAULTS: WhisperConfig = {
  num_mel_bins: 80, d_model: 1280, encoder_layers: 32, encoder_attention_heads: 20, encoder_ffn_dim: 5120, max_source_positions: 1500,
  dropout: 0, attention_dropout: 0, activation_dropout: 0, init_std: 0.02, activation_function: 'gelu',
};

const SPEC: ConfigSpec<WhisperConfig> = {
  num_mel_bins: 'posint', d_model: 'posint', encoder_layers: 'nonneg', encoder_attention_heads: 'posint', encoder_ffn_dim: 'posint',
  max_source_positions: 'posint', dropout: 'prob', attention_dropout: 'prob', activation_dropout: 'prob', init_std: 'nonnegnum',
  activation_function: 'act',
};

export interface WhisperInputs {
  /** (batch, num_mel_bins, frames) log-mel, as et.audio.whisperLogMel makes it. */
  inputFeatures: Tensor;
}
export interface WhisperOutputs {
  /** (batch, ⌈frames / 2⌉, d_model) */
  lastHiddenState: Tensor;
}

/** OpenAI-whisper encoder names → HF names (after the `encoder.` prefix is removed). */
export const OPENAI_WHISPER_RENAMES: readonly Rename[] = [
  { from: /^positional_embedding$/, to: 'embed_positions.weight' },
  { from: /^blocks\.(\d+)\.attn\.query\./, to: 'layers.$1.self_attn.q_proj.' },
  { from: /^blocks\.(\d+)\.attn\.key\./, to: 'layers.$1.self_attn.k_proj.' },
  { from: /^blocks\.(\d+)\.attn\.value\./, to: 'layers.$1.self_attn.v_proj.' },
  { from: /^blocks\.(\d+)\.attn\.out\./, to: 'layers.$1.self_attn.out_proj.' },
  { from: /^blocks\.(\d+)\.attn_ln\./, to: 'layers.$1.self_attn_layer_norm.' },
  { from: /^blocks\.(\d+)\.mlp\.0\./, to: 'layers.$1.fc1.' },
  { from: /^blocks\.(\d+)\.mlp\.2\./, to: 'layers.$1.fc2.' },
  { from: /^blocks\.(\d+)\.mlp_ln\./, to: 'layers.$1.final_layer_norm.' },
  { from: /^ln_post\./, to: 'layer_norm.' },
];

/** The dims an OpenAI checkpoint's `dims` entry names, as HF config fields. */
function openaiDims(sd: Map<string, Tensor>): Partial<WhisperConfig> {
  const w = sd.get('conv1.weight')!;
  const layers = new Set([...sd.keys()].map((k) => k.match(/^blocks\.(\d+)\./)?.[1]).filter(Boolean)).size;
  const d = w.shape[0];
  return { num_mel_bins: w.shape[1], d_model: d, encoder_layers: layers, encoder_ffn_dim: sd.get('blocks.0.mlp.0.weight')!.shape[0],
    max_source_positions: sd.get('positional_embedding')!.shape[0] };
}

/**
 * Whisper's audio encoder: log-mel (batch, n_mels, frames) → (batch, frames / 2, d_model).
 * Up to 3000 frames (30 s); fewer are fine (positions are sliced), so long dialogues can be
 * encoded in chunks instead of being cut at 30 s.
 * @example
 * const enc = await et.nn.WhisperEncoder.fromPretrained('whisper-base/');
 * const { lastHiddenState } = await enc.forward({ inputFeatures: await et.audio.whisperLogMel(wave) });
 */
export class WhisperEncoder extends NativeModule {
  declare readonly config: WhisperConfig;
  private constructor(config: WhisperConfig, opts: ModuleOptions) {
    super('whisper_encoder', config, opts);
    lockConfig(this, 'Whisper', config);
  }

  /** A WhisperEncoder with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<WhisperConfig> = {}, opts: ModuleOptions = {}): WhisperEncoder {
    opts = checkModuleOptions(opts, 'WhisperEncoder.create');
    const c = resolveConfig('Whisper', WHISPER_DEFAULTS, SPEC, config);
    if (c.d_model % c.encoder_attention_heads !== 0) invalid(`a multiple of encoder_attention_heads (${c.encoder_attention_heads})`, 'Whisper config.d_model', c.d_model);
    return new WhisperEncoder(c, opts);
  }

  /**
   * Loads an HF Whisper folder (keys `model.encoder.*` or `encoder.*`; the decoder is ignored), or
   * an OpenAI-format encoder state dict (`encoder.blocks.N.attn.query…`, a folder or a single
   * `.safetensors` file) through {@link OPENAI_WHISPER_RENAMES}. `numHeads` is needed for OpenAI
   * files without a config.json (64-dim heads are assumed otherwise).
   */
  static async fromPretrained(dirOrFile: string, opts: PretrainedOptions<WhisperConfig> & { numHeads?: number } = {}): Promise<WhisperEncoder> {
    opts = checkPretrainedOptions(opts, 'WhisperEncoder.fromPretrained', ['numHeads']);
    dirOrFile = await pretrainedPath(dirOrFile, opts);
    const all = await loadCheckpoint(dirOrFile);
    let sd = stripPrefix(all, ['model.encoder.', 'encoder.']);
    let cfg: Partial<WhisperConfig>;
    if (sd.has('conv1.weight') && sd.has('positional_embedding')) {
      const dims = openaiDims(sd);
      sd = renameKeys(sd, OPENAI_WHISPER_RENAMES);
      cfg = { ...dims, encoder_attention_heads: opts.numHeads ?? dims.d_model! / 64 };
    } else {
      cfg = readConfig(dirOrFile) as Partial<WhisperConfig>;
    }
    const model = createForCheckpoint(opts, () => WhisperEncoder.create(withOverrides('Whisper', SPEC, cfg, opts.config), {}));
    return finishPretrained(model, sd, opts);
  }

  /**
   * @param inputs `{ inputFeatures }`: log-mel (batch, num_mel_bins, 2 ≤ frames ≤ 2 · max_source_positions); or that tensor alone
   * @returns `{ lastHiddenState }` (batch, ⌈frames / 2⌉, d_model); an empty batch gives an empty output
   */
  async forward(inputs: WhisperInputs | Tensor): Promise<WhisperOutputs> {
    const { inputFeatures } = this.namedInputs<WhisperInputs>(inputs, 'inputFeatures', 'Whisper');
    checkTensor(inputFeatures, 'inputFeatures');
    const s = inputFeatures.shape;
    const max = 2 * this.config.max_source_positions;
    if (s.length !== 3 || s[1] !== this.config.num_mel_bins || s[2] > max || s[2] < 2) {
      invalid(`log-mel features (batch, ${this.config.num_mel_bins}, 2 ≤ frames ≤ ${max})`, 'inputFeatures', `[${s}]`);
    }
    if (s[0] === 0) return { lastHiddenState: this.emptyOutput([0, Math.ceil(s[2] / 2), this.config.d_model], inputFeatures.device) };
    return { lastHiddenState: (await this.run({ input_features: inputFeatures })).last_hidden_state! };
  }
}
