/** Whisper encoder (HF WhisperModel(...).encoder), on native/models/whisper. */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f } from './config';
import { Tensor, checkTensor } from '../tensor';
import { invalid } from '../errors';
import { PretrainedOptions, Rename, loadCheckpoint, loadPretrained, renameKeys, stripPrefix } from './pretrained';

/** HF WhisperConfig's encoder fields (defaults: whisper-large-v2's sizes). */
export const WHISPER = declareConfig({
  name: 'Whisper',
  kind: 'whisper_encoder',
  fields: {
    /** Mel bins of the log-mel input. */
    num_mel_bins: f.posint(80),
    /** Width of the encoder's hidden states. */
    d_model: f.posint(1280),
    encoder_layers: f.nonneg(32),
    encoder_attention_heads: f.posint(20),
    encoder_ffn_dim: f.posint(5120),
    /** Positions after the strided conv: 1500 for 30 s (3000 frames). */
    max_source_positions: f.posint(1500),
    dropout: f.prob(0),
    attention_dropout: f.prob(0),
    activation_dropout: f.prob(0),
    init_std: f.nonnegnum(0.02),
    activation_function: f.act('gelu'),
  },
  check(c) {
    if (c.d_model % c.encoder_attention_heads !== 0)
      invalid(`a multiple of encoder_attention_heads (${c.encoder_attention_heads})`, 'Whisper config.d_model', c.d_model);
  },
});

/**
 * HF WhisperConfig's encoder fields (defaults: whisper-large-v2's sizes).
 * @interface
 */
export type WhisperConfig = ConfigOf<typeof WHISPER>;

/** The WhisperConfig values used for the fields a config leaves out. */
export const WHISPER_DEFAULTS: WhisperConfig = defaultsOf(WHISPER);

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
  return {
    num_mel_bins: w.shape[1],
    d_model: d,
    encoder_layers: layers,
    encoder_ffn_dim: sd.get('blocks.0.mlp.0.weight')!.shape[0],
    max_source_positions: sd.get('positional_embedding')!.shape[0],
  };
}

/**
 * Whisper's audio encoder: log-mel (batch, n_mels, frames) → (batch, frames / 2, d_model).
 * Up to 3000 frames (30 s); fewer are fine (positions are sliced), so long dialogues can be
 * encoded in chunks instead of being cut at 30 s.
 * @example
 * const enc = await et.nn.WhisperEncoder.fromPretrained('whisper-base/');
 * const { lastHiddenState } = await enc.forward({ inputFeatures: await et.audio.whisperLogMel(wave) });
 */
export class WhisperEncoder extends ConfiguredModule<WhisperConfig> {
  /** A WhisperEncoder with random weights (as the original's initialization); fields the config leaves out take the defaults. */
  static create(config: Partial<WhisperConfig> = {}, opts: ModuleOptions = {}): WhisperEncoder {
    return new WhisperEncoder(WHISPER, config, opts);
  }

  /**
   * Loads an HF Whisper folder (keys `model.encoder.*` or `encoder.*`; the decoder is ignored), or
   * an OpenAI-format encoder state dict (`encoder.blocks.N.attn.query…`, a folder or a single
   * `.safetensors` file) through {@link OPENAI_WHISPER_RENAMES}. `numHeads` is needed for OpenAI
   * files without a config.json (64-dim heads are assumed otherwise).
   */
  static async fromPretrained(dirOrFile: string, opts: PretrainedOptions<WhisperConfig> & { numHeads?: number } = {}): Promise<WhisperEncoder> {
    return loadPretrained(WHISPER, WhisperEncoder, dirOrFile, opts, {
      options: ['numHeads'],
      async read(dir) {
        const sd = stripPrefix(await loadCheckpoint(dir), ['model.encoder.', 'encoder.']);
        if (!sd.has('conv1.weight') || !sd.has('positional_embedding')) return { sd };
        const dims = openaiDims(sd);
        return { sd: renameKeys(sd, OPENAI_WHISPER_RENAMES), config: { ...dims, encoder_attention_heads: opts.numHeads ?? dims.d_model! / 64 } };
      },
    });
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
