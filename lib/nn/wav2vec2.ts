/** Wav2Vec2 (HF Wav2Vec2Model; XLS-R is its layer-norm, stable-layer-norm variant), on native/models/wav2vec2. */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f } from './config';
import { SPEECH_FRONT, SPEECH_KEYS, checkSpeechFront, speechDropouts } from './speech_front';
import { Tensor, checkTensor, tensor, zeros } from '../tensor';
import * as fs from 'fs';
import * as path from 'path';
import { EmotorchError, invalid, withDeprecatedAlias, checkOptionNames } from '../errors';
import type { StateDict } from './module';
import { PretrainedOptions, Rename, loadCheckpoint, loadPretrained, readConfig, renameKeys, stripPrefix } from './pretrained';

/** HF Wav2Vec2Config fields and defaults (wav2vec2-base sizes; XLS-R checkpoints set the layer-norm fields in their config.json). */
export const WAV2VEC2 = declareConfig({
  name: 'Wav2Vec2',
  kind: 'wav2vec2',
  fields: {
    ...SPEECH_FRONT,
    /** Probability of skipping each layer in training (LayerDrop). */
    layerdrop: f.prob(0.1),
    ...speechDropouts(0.1),
    /** HF's output adapter: not implemented (must be false). */
    add_adapter: f.bool(false).host(),
  },
  check(c) {
    checkSpeechFront('Wav2Vec2', c);
    if (c.add_adapter) invalid('false (the Wav2Vec2 output adapter is not implemented)', 'Wav2Vec2 config.add_adapter', c.add_adapter);
  },
});

/**
 * HF Wav2Vec2Config fields and defaults (wav2vec2-base sizes; XLS-R checkpoints set the layer-norm fields in their config.json).
 * @interface
 */
export type Wav2Vec2Config = ConfigOf<typeof WAV2VEC2>;

/** The Wav2Vec2Config values used for the fields a config leaves out. */
export const WAV2VEC2_DEFAULTS: Wav2Vec2Config = defaultsOf(WAV2VEC2);

/** Older checkpoints' weight-norm names → transformers 5's parametrization names; pretraining-only heads dropped. */
export const WAV2VEC2_RENAMES: readonly Rename[] = [
  { from: /^encoder\.pos_conv_embed\.conv\.weight_g$/, to: 'encoder.pos_conv_embed.conv.parametrizations.weight.original0' },
  { from: /^encoder\.pos_conv_embed\.conv\.weight_v$/, to: 'encoder.pos_conv_embed.conv.parametrizations.weight.original1' },
];

/**
 * seamless_communication's `xlsr2_1b_v2` (the XLS-R 1B that USDM's units come from;
 * `wav2vec2_layer_output.py`) as HF config fields: seven layer-normed convs with bias
 * (512 channels; kernels 10, 3×4, 2×2; strides 5, 2×6), 48 pre-norm layers of 1280 with 16 heads
 * and 5120 inner, a 128-tap positional conv in 16 groups.
 */
export const WAV2VEC2_XLSR2_1B_V2: Partial<Wav2Vec2Config> = {
  conv_dim: [512, 512, 512, 512, 512, 512, 512],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  do_stable_layer_norm: true,
  hidden_size: 1280,
  num_hidden_layers: 48,
  num_attention_heads: 16,
  intermediate_size: 5120,
  num_conv_pos_embeddings: 128,
  num_conv_pos_embedding_groups: 16,
  layerdrop: 0,
};

/** Checkpoint name dialects {@link Wav2Vec2Model.fromPretrained} reads. */
export type Wav2Vec2Dialect = 'hf' | 'fairseq' | 'fairseq2';

// fine-tuned (CTC) fairseq checkpoints hold the encoder under `w2v_encoder.w2v_model.`
const FS = String.raw`^(?:w2v_encoder\.w2v_model\.)?`;
const fs1 = (from: string, to: string | null): Rename => ({ from: new RegExp(FS + from), to });
const fs2 = (from: string, to: string | null): Rename => ({ from: new RegExp(`^${from}`), to });

/**
 * fairseq (`fairseq/models/wav2vec/wav2vec2.py`: wav2vec 2.0 / XLS-R `.pt` files, pretraining or
 * fine-tuned `w2v_encoder.*`) names → ours. Every rule matches a whole key; `null` drops the
 * pretraining and CTC heads, which are not part of `Wav2Vec2Model`.
 */
export const WAV2VEC2_FAIRSEQ_RENAMES: readonly Rename[] = [
  // conv_layers.N = Sequential(conv, dropout, norm, GELU); the layer norm of the XLS-R convs is
  // Sequential(TransposeLast, LayerNorm, TransposeLast), the group norm (first conv only) is bare
  fs1(String.raw`feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)$`, 'feature_extractor.conv_layers.$1.conv.$2'),
  fs1(String.raw`feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)$`, 'feature_extractor.conv_layers.$1.layer_norm.$2'),
  fs1(String.raw`feature_extractor\.conv_layers\.0\.2\.(weight|bias)$`, 'feature_extractor.conv_layers.0.layer_norm.$1'),
  fs1(String.raw`layer_norm\.(weight|bias)$`, 'feature_projection.layer_norm.$1'),
  fs1(String.raw`post_extract_proj\.(weight|bias)$`, 'feature_projection.projection.$1'),
  // pos_conv = Sequential(weight_norm(Conv1d, dim=2), SamePad, GELU)
  fs1(String.raw`encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)$`, 'encoder.pos_conv_embed.conv.parametrizations.weight.original0'),
  fs1(String.raw`encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)$`, 'encoder.pos_conv_embed.conv.parametrizations.weight.original1'),
  fs1(String.raw`encoder\.pos_conv\.0\.bias$`, 'encoder.pos_conv_embed.conv.bias'),
  fs1(String.raw`encoder\.layer_norm\.(weight|bias)$`, 'encoder.layer_norm.$1'),
  fs1(String.raw`encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)$`, 'encoder.layers.$1.attention.$2_proj.$3'),
  fs1(String.raw`encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$`, 'encoder.layers.$1.layer_norm.$2'),
  fs1(String.raw`encoder\.layers\.(\d+)\.fc1\.(weight|bias)$`, 'encoder.layers.$1.feed_forward.intermediate_dense.$2'),
  fs1(String.raw`encoder\.layers\.(\d+)\.fc2\.(weight|bias)$`, 'encoder.layers.$1.feed_forward.output_dense.$2'),
  fs1(String.raw`encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)$`, 'encoder.layers.$1.final_layer_norm.$2'),
  fs1(String.raw`mask_emb$`, 'masked_spec_embed'),
  fs1(
    String.raw`(?:quantizer\.(?:vars|weight_proj\.weight|weight_proj\.bias)|project_q\.(?:weight|bias)|final_proj\.(?:weight|bias)|label_embs_concat)$`,
    null,
  ),
  fs2(String.raw`w2v_encoder\.proj\.(?:weight|bias)$`, null),
];

/**
 * fairseq2 (`fairseq2.models.wav2vec2`, as seamless_communication's UnitExtractor loads
 * `xlsr2_1b_v2`) names → ours. fairseq2 keeps q/k/v separate and the positional conv's weight norm
 * as `weight_g`/`weight_v` (dim 2), as HF does, so every rule is a rename; `null` drops the
 * pretraining (quantizer, projections) and CTC (`final_proj`) heads.
 */
export const WAV2VEC2_FAIRSEQ2_RENAMES: readonly Rename[] = [
  fs2(String.raw`encoder_frontend\.feature_extractor\.layers\.(\d+)\.conv\.(weight|bias)$`, 'feature_extractor.conv_layers.$1.conv.$2'),
  fs2(String.raw`encoder_frontend\.feature_extractor\.layers\.(\d+)\.layer_norm\.(weight|bias)$`, 'feature_extractor.conv_layers.$1.layer_norm.$2'),
  fs2(String.raw`encoder_frontend\.feature_extractor\.layers\.0\.group_norm\.(weight|bias)$`, 'feature_extractor.conv_layers.0.layer_norm.$1'),
  fs2(String.raw`encoder_frontend\.post_extract_layer_norm\.(weight|bias)$`, 'feature_projection.layer_norm.$1'),
  fs2(String.raw`encoder_frontend\.model_dim_proj\.(weight|bias)$`, 'feature_projection.projection.$1'),
  fs2(
    String.raw`encoder_frontend\.pos_encoder\.conv\.(?:weight_g|parametrizations\.weight\.original0)$`,
    'encoder.pos_conv_embed.conv.parametrizations.weight.original0',
  ),
  fs2(
    String.raw`encoder_frontend\.pos_encoder\.conv\.(?:weight_v|parametrizations\.weight\.original1)$`,
    'encoder.pos_conv_embed.conv.parametrizations.weight.original1',
  ),
  fs2(String.raw`encoder_frontend\.pos_encoder\.conv\.bias$`, 'encoder.pos_conv_embed.conv.bias'),
  // post-norm (base) models normalize in the frontend after the positions, pre-norm (XLS-R) ones after the last layer
  fs2(String.raw`encoder_frontend\.layer_norm\.(weight|bias)$`, 'encoder.layer_norm.$1'),
  fs2(String.raw`encoder\.layer_norm\.(weight|bias)$`, 'encoder.layer_norm.$1'),
  fs2(String.raw`encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)$`, 'encoder.layers.$1.attention.$2_proj.$3'),
  fs2(String.raw`encoder\.layers\.(\d+)\.self_attn\.output_proj\.(weight|bias)$`, 'encoder.layers.$1.attention.out_proj.$2'),
  fs2(String.raw`encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)$`, 'encoder.layers.$1.layer_norm.$2'),
  fs2(String.raw`encoder\.layers\.(\d+)\.ffn\.inner_proj\.(weight|bias)$`, 'encoder.layers.$1.feed_forward.intermediate_dense.$2'),
  fs2(String.raw`encoder\.layers\.(\d+)\.ffn\.output_proj\.(weight|bias)$`, 'encoder.layers.$1.feed_forward.output_dense.$2'),
  fs2(String.raw`encoder\.layers\.(\d+)\.ffn_layer_norm\.(weight|bias)$`, 'encoder.layers.$1.final_layer_norm.$2'),
  fs2(String.raw`masker\.temporal_mask_embed$`, 'masked_spec_embed'),
  fs2(
    String.raw`(?:quantizer\.(?:entries|entry_proj\.weight|entry_proj\.bias|num_updates)|final_proj\.(?:weight|bias)|final_target_proj\.(?:weight|bias))$`,
    null,
  ),
];

const DIALECT_RENAMES: Record<Exclude<Wav2Vec2Dialect, 'hf'>, readonly Rename[]> = { fairseq: WAV2VEC2_FAIRSEQ_RENAMES, fairseq2: WAV2VEC2_FAIRSEQ2_RENAMES };

/**
 * The dialect of a Wav2Vec2 state dict's names: fairseq2 (`encoder_frontend.*`), fairseq
 * (`post_extract_proj`, `encoder.pos_conv.0`, `w2v_encoder.*`, …) or HF.
 * @param keys the checkpoint's tensor names
 * @example
 * et.nn.wav2vec2Dialect(['encoder_frontend.model_dim_proj.weight']);   // 'fairseq2'
 */
export function wav2vec2Dialect(keys: Iterable<string>): Wav2Vec2Dialect {
  const ks = [...keys];
  if (ks.some((k) => k.startsWith('encoder_frontend.'))) return 'fairseq2';
  if (ks.some((k) => /^(?:w2v_encoder\.|post_extract_proj\.|mask_emb$|encoder\.pos_conv\.0\.|feature_extractor\.conv_layers\.\d+\.0\.)/.test(k)))
    return 'fairseq';
  return 'hf';
}

/**
 * A fairseq or fairseq2 state dict under our (HF) names, by {@link WAV2VEC2_FAIRSEQ_RENAMES} /
 * {@link WAV2VEC2_FAIRSEQ2_RENAMES}. Dropped heads are disposed.
 * @param sd the checkpoint's tensors by name
 * @param dialect 'fairseq' or 'fairseq2' (see {@link wav2vec2Dialect})
 * @param opts `strict` (default true): unknown keys are an error, else dropped
 * @returns the converted dict and, for each of our names, the checkpoint's name
 * @throws EmotorchError ERR_STATE_DICT naming a key that no rule knows (unless `strict` is false:
 *   it is then dropped), or two keys that convert to one name
 * @example
 * const { sd } = et.nn.convertWav2Vec2StateDict(await et.nn.loadCheckpoint('xlsr2_1b_v2.pt'), 'fairseq2');
 */
export function convertWav2Vec2StateDict(
  sd: StateDict,
  dialect: Exclude<Wav2Vec2Dialect, 'hf'>,
  opts: { strict?: boolean } = {},
): { sd: StateDict; origin: Map<string, string> } {
  checkOptionNames(opts, ['strict'], 'convertWav2Vec2StateDict');
  const rules = DIALECT_RENAMES[dialect];
  if (!rules) invalid("'fairseq' or 'fairseq2'", 'dialect', dialect);
  const out: StateDict = new Map();
  const origin = new Map<string, string>();
  const unknown: string[] = [];
  for (const [k, t] of sd) {
    const rule = rules.find((r) => r.from.test(k));
    if (!rule) {
      unknown.push(k);
      continue;
    }
    if (rule.to === null) {
      t.dispose();
      continue;
    }
    const ours = k.replace(rule.from, rule.to);
    if (origin.has(ours))
      throw new EmotorchError(`Wav2Vec2 ${dialect} checkpoint: '${origin.get(ours)}' and '${k}' both convert to '${ours}'`, 'ERR_STATE_DICT');
    out.set(ours, t);
    origin.set(ours, k);
  }
  if (unknown.length && (opts.strict ?? true)) {
    throw new EmotorchError(
      `Wav2Vec2 ${dialect} checkpoint: unknown keys ${unknown
        .slice(0, 8)
        .map((k) => `'${k}'`)
        .join(', ')}${unknown.length > 8 ? ` and ${unknown.length - 8} more` : ''} (not in the ${dialect} Wav2Vec2 / XLS-R layout)`,
      'ERR_STATE_DICT',
    );
  }
  return { sd: out, origin };
}

/** Options of {@link Wav2Vec2Model.fromPretrained}. */
export interface Wav2Vec2PretrainedOptions extends PretrainedOptions<Wav2Vec2Config> {
  /**
   * HF config fields: over the folder's `config.json`, or the whole config for checkpoints that
   * come without one (fairseq / fairseq2 `.pt` files), e.g. {@link WAV2VEC2_XLSR2_1B_V2}.
   */
  config?: Partial<Wav2Vec2Config>;
}

/** Inputs of {@link Wav2Vec2Model.forward}. */
export interface Wav2Vec2Inputs {
  /** (batch, samples) float waveform at 16 kHz (zero-mean unit-variance per clip for XLS-R, as its feature extractor does). */
  inputValues: Tensor;
  /** (batch, samples) 1 = real sample, 0 = padding. */
  attentionMask?: Tensor | null;
  /** Also return every layer's hidden state. */
  outputHiddenStates?: boolean;
}

/** Outputs of {@link Wav2Vec2Model.forward}. */
export interface Wav2Vec2Outputs {
  /** (batch, frames, hidden): the encoder output (after the final layer norm in the stable-layer-norm variant). */
  lastHiddenState: Tensor;
  /**
   * (batch, frames) bool, true = real frame: the input `attentionMask` brought down to the frames
   * (what HF's `_get_feature_vector_attention_mask` computes and its forward passes on as
   * `attention_mask`; HF does not return it), ready to be the next model's `attentionMask`; null
   * without an input mask.
   */
  attentionMask: Tensor | null;
  /** @deprecated the same tensor as `attentionMask` (non-enumerable); readable until the next release. */
  readonly frameMask: Tensor | null;
  /**
   * With `outputHiddenStates`: layers + 1 tensors (batch, frames, hidden): [0] the encoder input
   * after the conv positions, [i] the output of layer i (transformers 5's recording; the last
   * entry is before the stable variant's final layer norm).
   */
  hiddenStates?: Tensor[];
}

/**
 * Wav2Vec2 / XLS-R speech encoder: 16 kHz waveform (batch, samples) → (batch, frames, hidden),
 * 50 frames per second, and the hidden state of any layer (USDM's units come from layer 35 of XLS-R 1B).
 * @example
 * const xlsr = await et.nn.Wav2Vec2Model.fromPretrained('wav2vec2-xls-r-1b/');
 * const { lastHiddenState, hiddenStates } = await xlsr.forward({ inputValues: wave, outputHiddenStates: true });
 */
export class Wav2Vec2Model extends ConfiguredModule<Wav2Vec2Config> {
  /**
   * A randomly initialized model.
   * @param config HF config.json fields (missing ones take the defaults)
   * @throws EmotorchError ERR_INVALID_ARG naming the bad field
   */
  static create(config: Partial<Wav2Vec2Config> = {}, opts: ModuleOptions = {}): Wav2Vec2Model {
    return new Wav2Vec2Model(WAV2VEC2, config, opts);
  }

  /**
   * Loads a local checkpoint: an HF folder (keys with or without a `wav2vec2.` prefix; heads of task
   * and pretraining models, such as the quantizer, are ignored), or a folder or file (`.pt`,
   * `.bin`, `.safetensors`) under fairseq or fairseq2 names (detected by {@link wav2vec2Dialect},
   * converted by {@link WAV2VEC2_FAIRSEQ_RENAMES} / {@link WAV2VEC2_FAIRSEQ2_RENAMES}). A fairseq
   * file's own config is not read: pass `config` (HF fields, e.g. {@link WAV2VEC2_XLSR2_1B_V2}) or
   * put a `config.json` beside it. A fairseq checkpoint's mask embedding (a pretraining-time
   * parameter) is kept when the config has one (`mask_time_prob` > 0) and otherwise dropped; a
   * checkpoint without one gives a model without one.
   * @throws EmotorchError ERR_IO / ERR_FORMAT for the files; ERR_INVALID_ARG without a config or for
   *   a bad one; ERR_STATE_DICT naming an unknown, missing or wrong-shape key (with its checkpoint name)
   * @example
   * const xlsr = await et.nn.Wav2Vec2Model.fromPretrained('xlsr2_1b_v2.pt', { config: et.nn.WAV2VEC2_XLSR2_1B_V2 });
   */
  static async fromPretrained(dirOrFile: string, opts: Wav2Vec2PretrainedOptions = {}): Promise<Wav2Vec2Model> {
    return loadPretrained(WAV2VEC2, Wav2Vec2Model, dirOrFile, opts, {
      // fairseq / fairseq2 files come without a config.json: opts.config is then the whole config
      configless: true,
      async read(dir) {
        const all = await loadCheckpoint(dir);
        const dialect = wav2vec2Dialect(all.keys());
        if (dialect === 'hf')
          return {
            dialect,
            origin: undefined,
            sd: new Map([...renameKeys(stripPrefix(all, ['wav2vec2.']), WAV2VEC2_RENAMES)].filter(([k]) => SPEECH_KEYS.test(k))),
          };
        return { dialect, ...convertWav2Vec2StateDict(all, dialect, { strict: opts.strict }) };
      },
      config: (dir, _, read) => readWav2Vec2Config(dir, read!.dialect),
      // the mask embedding is used only by pretraining's masking: a checkpoint without one loads too
      create: (c, { dialect, sd }) =>
        Wav2Vec2Model.create(dialect === 'hf' || sd.has('masked_spec_embed') ? c : { ...c, mask_time_prob: 0, mask_feature_prob: 0 }),
      prepare: (model, { dialect, sd, origin }) => {
        if (dialect !== 'hf') checkFairseqShapes(model, sd, dialect, origin!);
      },
    });
  }

  /** Frames produced for a clip of `samples` (the conv stack's length formula). */
  framesFor(samples: number): number {
    let n = samples;
    this.config.conv_kernel.forEach((k, i) => {
      n = Math.floor((n - k) / this.config.conv_stride[i]) + 1;
    });
    return n;
  }

  private checkInputs(inputs: Wav2Vec2Inputs): number[] {
    const s = checkTensor(inputs.inputValues, 'inputValues').shape;
    if (s.length !== 2) invalid('a waveform (batch, samples)', 'inputValues', `[${s}]`);
    if (this.framesFor(s[1]) < 1) invalid(`at least ${this.config.conv_kernel[0]} samples`, 'inputValues length', s[1]);
    if (inputs.attentionMask && checkTensor(inputs.attentionMask, 'attentionMask').shape.join() !== s.join())
      invalid(`shape [${s}]`, 'attentionMask', `[${inputs.attentionMask.shape}]`);
    return s;
  }

  /**
   * @param inputs `{ inputValues, attentionMask?, outputHiddenStates? }`, or the waveform alone
   * @returns `{ lastHiddenState, attentionMask, hiddenStates? }` (`attentionMask`: the frames' mask, true = real frame)
   * @throws EmotorchError ERR_INVALID_ARG for a bad shape or too short a clip
   */
  async forward(inputs: Wav2Vec2Inputs | Tensor): Promise<Wav2Vec2Outputs> {
    const x = this.namedInputs(inputs, 'inputValues', 'Wav2Vec2');
    if (x.outputHiddenStates !== undefined && typeof x.outputHiddenStates !== 'boolean') invalid('a boolean', 'outputHiddenStates', x.outputHiddenStates);
    const s = this.checkInputs(x);
    const L = this.config.num_hidden_layers;
    if (s[0] === 0) {
      const frames = this.framesFor(s[1]);
      const empty = () => this.emptyOutput([0, frames, this.config.hidden_size], x.inputValues.device);
      return withDeprecatedAlias(
        {
          lastHiddenState: empty(),
          attentionMask: x.attentionMask ? zeros([0, frames], { dtype: 'bool' }) : null,
          ...(x.outputHiddenStates ? { hiddenStates: Array.from({ length: L + 1 }, empty) } : {}),
        },
        'frameMask',
        'attentionMask',
      );
    }
    const out = await this.runStates(x, x.outputHiddenStates ? L : null);
    return withDeprecatedAlias(
      { lastHiddenState: out.last!, attentionMask: out.frameMask, ...(x.outputHiddenStates ? { hiddenStates: out.states } : {}) },
      'frameMask',
      'attentionMask',
    );
  }

  /**
   * The hidden state of one layer (0 = encoder input, i = output of layer i), running only the
   * first `layer` layers.
   * @returns `{ hiddenState (batch, frames, hidden), attentionMask }` (the frames' mask as in
   *   {@link forward}; `frameMask` is its deprecated, non-enumerable alias)
   * @throws EmotorchError ERR_INVALID_ARG for a layer outside 0..num_hidden_layers
   */
  async hiddenStateAt(
    inputs: Wav2Vec2Inputs | Tensor,
    layer: number,
  ): Promise<{ hiddenState: Tensor; attentionMask: Tensor | null; /** @deprecated use attentionMask */ readonly frameMask: Tensor | null }> {
    const x = this.namedInputs(inputs, 'inputValues', 'Wav2Vec2');
    if (!Number.isSafeInteger(layer) || layer < 0 || layer > this.config.num_hidden_layers)
      invalid(`an integer in [0, ${this.config.num_hidden_layers}]`, 'layer', layer);
    const s = this.checkInputs(x);
    if (s[0] === 0) {
      const frames = this.framesFor(s[1]);
      return withDeprecatedAlias(
        {
          hiddenState: this.emptyOutput([0, frames, this.config.hidden_size], x.inputValues.device),
          attentionMask: x.attentionMask ? zeros([0, frames], { dtype: 'bool' }) : null,
        },
        'frameMask',
        'attentionMask',
      );
    }
    const out = await this.runStates(x, layer);
    out.last?.dispose();
    return withDeprecatedAlias({ hiddenState: out.states[out.states.length - 1]!, attentionMask: out.frameMask }, 'frameMask', 'attentionMask');
  }

  /** The native forward: the last hidden state (when every layer ran), the frames' mask, and with `upTo` the states 0..upTo. */
  private async runStates(x: Wav2Vec2Inputs, upTo: number | null): Promise<{ last: Tensor | undefined; frameMask: Tensor | null; states: Tensor[] }> {
    const k = upTo === null ? null : tensor([upTo], { dtype: 'int64' });
    try {
      const o = await this.run({ input_values: x.inputValues, attention_mask: x.attentionMask, hidden_states_up_to: k });
      const states: Tensor[] = [];
      for (let i = 0; o[`hidden_states.${i}`]; i++) states.push(o[`hidden_states.${i}`]!);
      return { last: o.last_hidden_state, frameMask: o.frame_mask ?? null, states };
    } finally {
      k?.dispose();
    }
  }
}

/** The HF config of a checkpoint: `config.json` in the folder (or beside the file). */
function readWav2Vec2Config(dirOrFile: string, dialect: Wav2Vec2Dialect): Partial<Wav2Vec2Config> {
  const dir = fs.statSync(dirOrFile).isDirectory() ? dirOrFile : path.dirname(dirOrFile);
  if (dialect !== 'hf' && !fs.existsSync(path.join(dir, 'config.json'))) {
    invalid(
      `{ config } (HF Wav2Vec2Config fields, e.g. et.nn.WAV2VEC2_XLSR2_1B_V2) or a config.json in '${dir}'`,
      `config of the ${dialect} checkpoint`,
      dirOrFile,
    );
  }
  return readConfig(dir) as Partial<Wav2Vec2Config>;
}

/**
 * A fairseq checkpoint against the model built for it: its mask embedding dropped where the
 * config has none, each wrong shape named by the checkpoint's own key.
 * @throws EmotorchError ERR_STATE_DICT (the model disposed)
 */
function checkFairseqShapes(model: Wav2Vec2Model, sd: StateDict, dialect: Wav2Vec2Dialect, origin: Map<string, string>): void {
  const own = model.stateDict();
  if (!own.has('masked_spec_embed')) {
    sd.get('masked_spec_embed')?.dispose();
    sd.delete('masked_spec_embed');
  }
  const wrong = [...sd]
    .filter(([k, t]) => own.has(k) && own.get(k)!.shape.join() !== t.shape.join())
    .map(([k, t]) => `${dialect} '${origin.get(k)}' (our '${k}'): checkpoint [${t.shape}] vs model [${own.get(k)!.shape}]`);
  if (wrong.length) {
    model.dispose();
    throw new EmotorchError(`Wav2Vec2 ${dialect} checkpoint: wrong shape for ${wrong.join(', ')}`, 'ERR_STATE_DICT');
  }
}
