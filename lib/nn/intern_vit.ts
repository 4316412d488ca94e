/**
 * InternViT (InternVL's `InternVisionModel`, remote code modeling_intern_vit.py) on
 * native/models/intern_vit: the vision tower of every InternVL2 model (InternViT-300M-448px for
 * 1B–8B, InternViT-6B for 26B+), under the original names (`embeddings.class_embedding`,
 * `encoder.layers.N.attn.qkv`, `ls1`, …).
 */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f, resolve } from './config';
import { Tensor, checkTensor, tensor } from '../tensor';
import { checkInt, invalid } from '../errors';
import { PretrainedOptions, loadPretrained, readConfig } from './pretrained';

/** InternVisionConfig fields (the remote code's config.json names; defaults: InternViT-6B's shape). */
export const INTERN_VISION = declareConfig({
  name: 'InternViT',
  kind: 'intern_vit',
  fields: {
    hidden_size: f.posint(3200),
    intermediate_size: f.posint(12800),
    num_hidden_layers: f.nonneg(48),
    num_attention_heads: f.posint(25),
    num_channels: f.posint(3),
    patch_size: f.posint(14),
    /** The side the position embeddings were trained for (448 in InternVL2); other sides are resized bicubically. */
    image_size: f.posint(224),
    qkv_bias: f.bool(false),
    /** RMSNorm over all query and all key channels (the 6B towers). */
    qk_normalization: f.bool(true),
    /** 'layer_norm' (300M) or 'rms_norm' (6B). */
    norm_type: f.string('rms_norm'),
    hidden_act: f.act('gelu'),
    layer_norm_eps: f.posnum(1e-6),
    dropout: f.prob(0),
    attention_dropout: f.prob(0),
    /** Stochastic depth in training, growing linearly from 0 at the first layer to this at the last. */
    drop_path_rate: f.prob(0),
    initializer_range: f.nonnegnum(0.02),
    /** The layer scales' (`ls1`, `ls2`) initial value. */
    initializer_factor: f.number(0.1),
  },
  check(c) {
    if (c.hidden_size % c.num_attention_heads !== 0)
      invalid(`a multiple of num_attention_heads (${c.num_attention_heads})`, 'InternViT config.hidden_size', c.hidden_size);
    if (!['layer_norm', 'rms_norm'].includes(c.norm_type)) invalid("'layer_norm' or 'rms_norm'", 'InternViT config.norm_type', c.norm_type);
    if (c.image_size % c.patch_size !== 0) invalid(`a multiple of patch_size (${c.patch_size})`, 'InternViT config.image_size', c.image_size);
    if (c.drop_path_rate >= 1) invalid('a rate below 1', 'InternViT config.drop_path_rate', c.drop_path_rate);
  },
});

/**
 * InternVisionConfig fields (the remote code's config.json names).
 * @interface
 */
export type InternVisionConfig = ConfigOf<typeof INTERN_VISION>;

/** The remote code's defaults (InternViT-6B's shape). */
export const INTERN_VISION_DEFAULTS: InternVisionConfig = defaultsOf(INTERN_VISION);

/**
 * The checked, fully defaulted config (also used by InternVL's system for its `vision_config`).
 * @param given config.json fields (missing ones take the defaults)
 * @throws EmotorchError ERR_INVALID_ARG naming a bad field
 */
export function internVisionConfig(given: Partial<InternVisionConfig> | Record<string, unknown>): InternVisionConfig {
  return resolve(INTERN_VISION, given);
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
export class InternVisionModel extends ConfiguredModule<InternVisionConfig> {
  /**
   * A randomly initialised tower.
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field
   */
  static create(config: Partial<InternVisionConfig> = {}, opts: ModuleOptions = {}): InternVisionModel {
    return new InternVisionModel(INTERN_VISION, config, opts);
  }

  /**
   * Loads a folder: an InternViT release (`config.json` of `intern_vit_6b` + weights) or a whole
   * InternVL chat model (its `vision_config` and `vision_model.*` weights).
   * @throws EmotorchError ERR_IO / ERR_FORMAT for unreadable files, ERR_STATE_DICT naming a key
   */
  static async fromPretrained(dir: string, opts: PretrainedOptions<InternVisionConfig> = {}): Promise<InternVisionModel> {
    return loadPretrained(INTERN_VISION, InternVisionModel, dir, opts, {
      config: visionConfigOf,
      prefixes: ['vision_model.'],
      keep: /^(embeddings|encoder)\./,
    });
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
      return {
        lastHiddenState: empty(),
        poolerOutput: this.emptyOutput([0, this.config.hidden_size], pixelValues.device),
        hiddenState: index ? empty() : null,
      };
    }
    const o = await this.run({ pixel_values: pixelValues, select_layer: index });
    index?.dispose();
    return { lastHiddenState: o.last_hidden_state!, poolerOutput: o.pooler_output!, hiddenState: o.selected_hidden_state ?? null };
  }
}

/** The bridge's fields: the two widths it joins and InternVLChatConfig's pixel-shuffle settings. */
const INTERNVL_PROJECTOR = declareConfig({
  name: 'InternVL projector',
  kind: 'internvl_projector',
  fields: {
    /** The vision tower's width. */
    vit_hidden_size: f.posint(0),
    /** The LLM's width. */
    llm_hidden_size: f.posint(0),
    /** pixel_shuffle's scale: 0.5 folds each 2 × 2 patches into one token of 4× the width. */
    downsample_ratio: f.posnum(0.5),
    /** 'v2' (InternVL2) swaps height and width back after the shuffle; 'v1' leaves them transposed, as the original's first version. */
    ps_version: f.string('v2'),
  },
  check(c) {
    for (const k of ['vit_hidden_size', 'llm_hidden_size'] as const) if (c[k] < 1) invalid('a positive integer', `InternVL projector config.${k}`, c[k]);
    const scale = 1 / c.downsample_ratio;
    if (!Number.isInteger(scale)) invalid('1 / an integer (0.5, 0.25, …)', 'InternVL projector config.downsample_ratio', c.downsample_ratio);
    if (!['v1', 'v2'].includes(c.ps_version)) invalid("'v1' or 'v2'", 'InternVL projector config.ps_version', c.ps_version);
  },
});

/**
 * The bridge's fields: the two widths it joins and InternVLChatConfig's pixel-shuffle settings.
 * @interface
 */
export type InternVLProjectorConfig = ConfigOf<typeof INTERNVL_PROJECTOR>;

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

/**
 * InternVLChatModel's `mlp1` with the `pixel_shuffle` before it (extract_feature after the vision
 * tower): the class token dropped, each (1 / ratio)² patches folded into one token, then
 * LayerNorm, Linear, GELU, Linear (parameters `0.*`, `1.*`, `3.*`, as the original Sequential).
 * @example
 * const mlp1 = et.nn.InternVLProjector.create({ vit_hidden_size: 1024, llm_hidden_size: 4096, downsample_ratio: 0.5, ps_version: 'v2' });
 * const { imageTokens } = await mlp1.forward({ hiddenStates: lastHiddenState });   // (tiles, 256, 4096) from (tiles, 1025, 1024)
 */
export class InternVLProjector extends ConfiguredModule<InternVLProjectorConfig> {
  /** @throws EmotorchError ERR_INVALID_ARG naming a bad field */
  static create(config: Partial<InternVLProjectorConfig>, opts: ModuleOptions = {}): InternVLProjector {
    return new InternVLProjector(INTERNVL_PROJECTOR, config, opts);
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
    if (side < 1 || side * side !== s[1] - 1 || !Number.isInteger(side * r))
      invalid(`1 + side² tokens with side a multiple of ${1 / r}`, 'hiddenStates', `[${s}]`);
    if (s[0] === 0) return { imageTokens: this.emptyOutput([0, side * side * r * r, this.config.llm_hidden_size], hidden.device) };
    return { imageTokens: (await this.run({ vit_embeds: hidden })).image_tokens! };
  }
}

/** A config.json's vision config: an InternVL chat model's `vision_config`, or the tower's own. */
function visionConfigOf(dir: string): Record<string, unknown> {
  const raw = readConfig(dir);
  return (raw.vision_config && typeof raw.vision_config === 'object' ? raw.vision_config : raw) as Record<string, unknown>;
}
