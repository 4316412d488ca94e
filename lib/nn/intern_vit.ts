/**
 * InternViT (InternVL's `InternVisionModel`, remote code modeling_intern_vit.py) on
 * native/models/intern_vit: the vision tower of every InternVL2 model (InternViT-300M-448px for
 * 1B–8B, InternViT-6B for 26B+), under the original names (`embeddings.class_embedding`,
 * `encoder.layers.N.attn.qkv`, `ls1`, …).
 */
import { NativeModule, ModuleOptions, lockConfig, checkModuleOptions } from './module';
import { Tensor, checkTensor, tensor } from '../tensor';
import { checkInt, invalid } from '../errors';
import { ConfigSpec, PretrainedOptions, createForCheckpoint, finishPretrained, loadCheckpoint, readConfig, resolveConfig, stripPrefix, withOverrides, pretrainedPath, checkPretrainedOptions } from './pretrained';

/** InternVisionConfig fields (the remote code's config.json names). */
export interface InternVisionConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  patch_size: number;
  /** The side the position embeddings were trained for (448 in InternVL2); other sides are resized bicubically. */
  image_size: number;
  qkv_bias: boolean;
  /** RMSNorm over all query and all key channels (the 6B towers). */
  qk_normalization: boolean;
  /** 'layer_norm' (300M) or 'rms_norm' (6B). */
  norm_type: string;
  hidden_act: string;
  layer_norm_eps: number;
  dropout: number;
  attention_dropout: number;
  /** Stochastic depth in training, growing linearly from 0 at the first layer to this at the last. */
  drop_path_rate: number;
  initializer_range: number;
  /** The layer scales' (`ls1`, `ls2`) initial value. */
  initializer_factor: number;
}

/** The remote code's defaults (InternViT-6B's shape). */
export const INTERN_VISION_DEFAULTS: InternVisionConfig = {
  hidden_size: 3200, intermediate_size: 12800, num_hidden_layers: 48, num_attention_heads: 25, num_channels: 3, patch_size: 14, image_size: 224,
  qkv_bias: false, qk_normalization: true, norm_type: 'rms_norm', hidden_act: 'gelu', layer_norm_eps: 1e-6, dropout: 0, attention_dropout: 0,
  drop_path_rate: 0, initializer_range: 0.02, initializer_factor: 0.1,
};

const SPEC: ConfigSpec<InternVisionConfig> = {
  hidden_size: 'posint', intermediate_size: 'posint', num_hidden_layers: 'nonneg', num_attention_heads: 'posint', num_channels: 'posint',
  patch_size: 'posint', image_size: 'posint', qkv_bias: 'bool', qk_normalization: 'bool', norm_type: 'string', hidden_act: 'act',
  layer_norm_eps: 'posnum', dropout: 'prob', attention_dropout: 'prob', drop_path_rate: 'prob', initializer_range: 'nonnegnum', initializer_factor: 'number',
};

/** The checked, fully defaulted config (also used by InternVL's system for its `vision_config`). */
export function internVisionConfig(given: Partial<InternVisionConfig> | Record<string, unknown>): InternVisionConfig {
  const c = resolveConfig('InternViT', INTERN_VISION_DEFAULTS, SPEC, given);
  if (c.hidden_size % c.num_attention_heads !== 0) invalid(`a multiple of num_attention_heads (${c.num_attention_heads})`, 'InternViT config.hidden_size', c.hidden_size);
  if (!['layer_norm', 'rms_norm'].includes(c.norm_type)) invalid("'layer_norm' or 'rms_norm'", 'InternViT config.norm_type', c.norm_type);
  if (c.image_size % c.patch_size !== 0) invalid(`a multiple of patch_size (${c.patch_size})`, 'InternViT config.image_size', c.image_size);
  if (c.drop_path_rate >= 1) invalid('a rate below 1', 'InternViT config.drop_path_rate', c.drop_path_rate);
  return c;
}

/** Named inputs of `InternVisionModel.forward`. */
export interface InternVisionInputs {
  /** (batch, channels, height, width) float pixels, height and width multiples of patch_size. */
  pixelValues: Tensor;
  /**
   * Also return this hidden state: 0 is the embeddings, i the output of layer i, negative counts
   * from the end (−1 is the last layer's), as Python indexes `output_hidden_states`.
   */
  hiddenStateIndex?: number;
}

/** Named outputs of `InternVisionModel.forward`. */
export interface InternVisionOutputs {
  /** (batch, 1 + patches, hidden): the class token first. */
  lastHiddenState: Tensor;
  /** (batch, hidden): the class token's last hidden state (no norm, as the original). */
  poolerOutput: Tensor;
  /** The hidden state `hiddenStateIndex` asked for, else null. */
  hiddenState: Tensor | null;
}

/**
 * InternViT, the vision tower of InternVL.
 * @example
 * const vit = await et.nn.InternVisionModel.fromPretrained('InternVL2-8B/');   // its vision_model.*
 * const { lastHiddenState } = await vit.forward({ pixelValues });             // (tiles, 1025, 1024)
 */
export class InternVisionModel extends NativeModule {
  declare readonly config: InternVisionConfig;
  private constructor(config: InternVisionConfig, opts: ModuleOptions) {
    super('intern_vit', config, opts);
    lockConfig(this, 'InternViT', config);
  }

  /**
   * A randomly initialised tower.
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field
   */
  static create(config: Partial<InternVisionConfig> = {}, opts: ModuleOptions = {}): InternVisionModel {
    opts = checkModuleOptions(opts, 'InternVisionModel.create');
    return new InternVisionModel(internVisionConfig(config), opts);
  }

  /**
   * Loads a folder: an InternViT release (`config.json` of `intern_vit_6b` + weights) or a whole
   * InternVL chat model (its `vision_config` and `vision_model.*` weights).
   * @throws EmotorchError ERR_IO / ERR_FORMAT for unreadable files, ERR_STATE_DICT naming a key
   */
  static async fromPretrained(dir: string, opts: PretrainedOptions<InternVisionConfig> = {}): Promise<InternVisionModel> {
    opts = checkPretrainedOptions(opts, 'InternVisionModel.fromPretrained');
    dir = await pretrainedPath(dir, opts);
    const raw = readConfig(dir);
    const vraw = (raw.vision_config && typeof raw.vision_config === 'object' ? raw.vision_config : raw) as Record<string, unknown>;
    const model = createForCheckpoint(opts, () => InternVisionModel.create(withOverrides('InternViT', SPEC, vraw, opts.config)));
    const sd = stripPrefix(await loadCheckpoint(dir), ['vision_model.']);
    for (const k of [...sd.keys()]) if (!k.startsWith('embeddings.') && !k.startsWith('encoder.')) sd.delete(k);
    return finishPretrained(model, sd, opts);
  }

  /**
   * @returns `{ lastHiddenState, poolerOutput, hiddenState }`
   * @throws EmotorchError ERR_INVALID_ARG for pixels of the wrong rank, channel count or a side
   *   that is not a multiple of patch_size, or an out-of-range hiddenStateIndex
   */
  async forward(inputs: InternVisionInputs | Tensor): Promise<InternVisionOutputs> {
    const { pixelValues, hiddenStateIndex } = this.namedInputs<InternVisionInputs>(inputs, 'pixelValues', 'InternViT');
    const s = checkTensor(pixelValues, 'pixelValues').shape;
    const { num_channels: ch, patch_size: p, num_hidden_layers: L } = this.config;
    if (s.length !== 4 || s[1] !== ch) invalid(`a (batch, ${ch}, height, width) tensor`, 'pixelValues', `[${s}]`);
    if (s[2] < p || s[3] < p || s[2] % p || s[3] % p) invalid(`height and width multiples of patch_size (${p})`, 'pixelValues', `[${s}]`);
    let index: Tensor | null = null;
    if (hiddenStateIndex !== undefined) {
      const i = checkInt(hiddenStateIndex, 'hiddenStateIndex', -(L + 1));
      if (i > L) invalid(`an index in [${-(L + 1)}, ${L}] (${L} layers)`, 'hiddenStateIndex', i);
      index = tensor([i], { dtype: 'int64' }).reshape([]);
    }
    if (s[0] === 0) {
      const n = 1 + (s[2] / p) * (s[3] / p);
      const empty = () => this.emptyOutput([0, n, this.config.hidden_size], pixelValues.device);
      return { lastHiddenState: empty(), poolerOutput: this.emptyOutput([0, this.config.hidden_size], pixelValues.device), hiddenState: index ? empty() : null };
    }
    const o = await this.run({ pixel_values: pixelValues, select_layer: index });
    index?.dispose();
    return { lastHiddenState: o.last_hidden_state!, poolerOutput: o.pooler_output!, hiddenState: o.selected_hidden_state ?? null };
  }
}

/** The bridge's fields: the two widths it joins and InternVLChatConfig's pixel-shuffle settings. */
export interface InternVLProjectorConfig {
  vit_hidden_size: number;
  llm_hidden_size: number;
  /** pixel_shuffle's scale: 0.5 folds each 2 × 2 patches into one token of 4× the width. */
  downsample_ratio: number;
  /** 'v2' (InternVL2) swaps height and width back after the shuffle; 'v1' leaves them transposed, as the original's first version. */
  ps_version: string;
}

/** Named inputs of `InternVLProjector.forward`. */
export interface InternVLProjectorInputs {
  /** (tiles, 1 + side², vit_hidden_size): the vision tower's hidden states, class token first. */
  hiddenStates: Tensor;
}

/** Named outputs of `InternVLProjector.forward`. */
export interface InternVLProjectorOutputs {
  /** (tiles, side² · ratio², llm_hidden_size): the tiles' tokens for the LLM. */
  imageTokens: Tensor;
}

const PROJECTOR_SPEC: ConfigSpec<InternVLProjectorConfig> = { vit_hidden_size: 'posint', llm_hidden_size: 'posint', downsample_ratio: 'posnum', ps_version: 'string' };

/**
 * InternVLChatModel's `mlp1` with the `pixel_shuffle` before it (extract_feature after the vision
 * tower): the class token dropped, each (1 / ratio)² patches folded into one token, then
 * LayerNorm, Linear, GELU, Linear (parameters `0.*`, `1.*`, `3.*`, as the original Sequential).
 * @example
 * const mlp1 = et.nn.InternVLProjector.create({ vit_hidden_size: 1024, llm_hidden_size: 4096, downsample_ratio: 0.5, ps_version: 'v2' });
 * const { imageTokens } = await mlp1.forward({ hiddenStates: lastHiddenState });   // (tiles, 256, 4096) from (tiles, 1025, 1024)
 */
export class InternVLProjector extends NativeModule {
  declare readonly config: InternVLProjectorConfig;
  private constructor(config: InternVLProjectorConfig, opts: ModuleOptions) {
    super('internvl_projector', config, opts);
    lockConfig(this, 'InternVL projector', config);
  }

  /** @throws EmotorchError ERR_INVALID_ARG naming a bad field */
  static create(config: Partial<InternVLProjectorConfig>, opts: ModuleOptions = {}): InternVLProjector {
    opts = checkModuleOptions(opts, 'InternVLProjector.create');
    const c = resolveConfig('InternVL projector', { vit_hidden_size: 0, llm_hidden_size: 0, downsample_ratio: 0.5, ps_version: 'v2' }, PROJECTOR_SPEC, config);
    for (const k of ['vit_hidden_size', 'llm_hidden_size'] as const) if (c[k] < 1) invalid('a positive integer', `InternVL projector config.${k}`, c[k]);
    const scale = 1 / c.downsample_ratio;
    if (!Number.isInteger(scale)) invalid('1 / an integer (0.5, 0.25, …)', 'InternVL projector config.downsample_ratio', c.downsample_ratio);
    if (!['v1', 'v2'].includes(c.ps_version)) invalid("'v1' or 'v2'", 'InternVL projector config.ps_version', c.ps_version);
    return new InternVLProjector(c, opts);
  }

  /**
   * @param inputs `hiddenStates` (tiles, 1 + side², vit_hidden_size): the vision tower's hidden
   *   states, class token first (or that tensor alone)
   * @returns `imageTokens` (tiles, side² · ratio², llm_hidden_size)
   * @throws EmotorchError ERR_INVALID_ARG for another width, or a patch grid that is not a square
   *   whose side the ratio divides
   */
  async forward(inputs: InternVLProjectorInputs | Tensor): Promise<InternVLProjectorOutputs> {
    if (!(inputs instanceof Tensor) && (!inputs || typeof inputs !== 'object')) invalid('{ hiddenStates } or a tensor', 'InternVL projector inputs', inputs);
    const hidden = inputs instanceof Tensor ? inputs : inputs.hiddenStates;
    const s = checkTensor(hidden, 'hiddenStates').shape;
    const { vit_hidden_size: d, downsample_ratio: r } = this.config;
    if (s.length !== 3 || s[2] !== d) invalid(`a (tiles, 1 + patches, ${d}) tensor`, 'hiddenStates', `[${s}]`);
    const side = Math.round(Math.sqrt(s[1] - 1));
    if (side < 1 || side * side !== s[1] - 1 || !Number.isInteger(side * r)) invalid(`1 + side² tokens with side a multiple of ${1 / r}`, 'hiddenStates', `[${s}]`);
    if (s[0] === 0) return { imageTokens: this.emptyOutput([0, side * side * r * r, this.config.llm_hidden_size], hidden.device) };
    return { imageTokens: (await this.run({ vit_embeds: hidden })).image_tokens! };
  }
}
