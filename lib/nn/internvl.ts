/**
 * InternVL2 (InternVL's remote-code `InternVLChatModel`): InternViT → pixel_shuffle + `mlp1` →
 * an InternLM2 / Phi-3 / Qwen2 / LLaMA decoder, the image tokens written over the
 * `<IMG_CONTEXT>` positions of the prompt. Loads the released folders (`config.json` with
 * `vision_config` and `llm_config`, safetensors shards with `vision_model.*`, `mlp1.*`,
 * `language_model.*`) and saves the same names.
 */
import { Module, ModuleOptions, checkModuleOptions } from './module';
import { InternVisionModel, InternVLProjector, internVisionConfig } from './intern_vit';
import type { InternVisionConfig } from './intern_vit';
import { LlamaForCausalLM, normalizeLlamaConfig } from './llama';
import type { GenerationOptions, LlamaConfig } from './llama';
import {
  PretrainedOptions,
  checkPretrainedOptions,
  createForCheckpoint,
  finishPretrained,
  loadCheckpoint,
  loadSafetensorsQuantized,
  readConfig,
  pretrainedPath,
  withOverrides,
} from './pretrained';
import { checkQuantFormat, linearLayers, quantize } from './quant';
import type { QuantFormat } from './quant';
import { Tensor, cat, checkTensor, tensor } from '../tensor';
import { EmotorchError, checkInt, invalid } from '../errors';

/** InternVLChatConfig's fields (config.json names and the remote code's defaults). */
export interface InternVLConfig {
  vision_config: Partial<InternVisionConfig>;
  /** The LLM's config.json (`architectures` / `model_type` pick InternLM2, Phi-3, Qwen2 or LLaMA). */
  llm_config: Record<string, unknown>;
  /** Which vision hidden state feeds the bridge (−1: the last layer's). */
  select_layer: number;
  /** The tile side (default: vision_config.image_size). */
  force_image_size: number | null;
  downsample_ratio: number;
  ps_version: string;
  /** The conversation template's name (`internlm2-chat`, `phi3-chat`, …). */
  template: string | null;
  dynamic_image_size: boolean;
  use_thumbnail: boolean;
  min_dynamic_patch: number;
  max_dynamic_patch: number;
}

/** InternVLChatConfig's values used for the fields a config leaves out. */
export const INTERNVL_DEFAULTS: Omit<InternVLConfig, 'vision_config' | 'llm_config'> = {
  select_layer: -1,
  force_image_size: null,
  downsample_ratio: 0.5,
  ps_version: 'v1',
  template: null,
  dynamic_image_size: false,
  use_thumbnail: false,
  min_dynamic_patch: 1,
  max_dynamic_patch: 6,
};

/** The LLM architectures of `llm_config.architectures[0]` and their layouts. */
const LLM_TYPES: Record<string, string> = {
  InternLM2ForCausalLM: 'internlm2',
  Phi3ForCausalLM: 'phi3',
  Qwen2ForCausalLM: 'qwen2',
  LlamaForCausalLM: 'llama',
};

/** InternVL's image tokens: each tile is `<img>` + `<IMG_CONTEXT>` × numImageToken + `</img>`. */
export const INTERNVL_IMAGE_TOKENS = { start: '<img>', end: '</img>', context: '<IMG_CONTEXT>' } as const;

/** Named inputs of `InternVL.forward` (the remote code's argument names, camelCase). */
export interface InternVLInputs {
  /** (batch, length) int64 ids with numImageToken `<IMG_CONTEXT>` ids per tile of `pixelValues`, in order. */
  inputIds: Tensor;
  /** (batch, length): 1 tokens, 0 padding. */
  attentionMask?: Tensor;
  /** (batch, length) positions (default 0..length−1). */
  positionIds?: Tensor;
  /** (tiles, 3, side, side) normalised tiles of every image and frame of the batch, in prompt order. */
  pixelValues?: Tensor | null;
  /** (tiles) or (tiles, 1): 1 for tiles whose tokens are in the prompt, 0 for padding tiles (dropped, as the original). */
  imageFlags?: Tensor;
  /** (batch, length) int64 targets, −100 where no loss is taken. */
  labels?: Tensor;
  /** Divide the summed token loss by this (gradient accumulation over micro-batches). */
  numItemsInBatch?: number;
}

/** Named outputs of `InternVL.forward`: logits, and the loss with labels. */
export interface InternVLOutputs {
  logits: Tensor;
  loss?: Tensor;
}

/** Options of `InternVL.create` and `InternVL.fromPretrained`: the `<IMG_CONTEXT>` id, device and dtype. */
export interface InternVLCreateOptions extends ModuleOptions {
  /** The `<IMG_CONTEXT>` token id (fromPretrained reads it from the tokenizer). */
  imgContextTokenId?: number;
}

/**
 * InternVL2 as one Module: `vision_model` (InternViT), `mlp1` (the bridge), `language_model`.
 * Guide: [M2SE and InternVL2](../../docs/m2se.md).
 * @example
 * const ivl = await et.nn.InternVL.fromPretrained('InternVL2-8B/', { imgContextTokenId: 92546 });
 * const { loss } = await ivl.forward({ inputIds, attentionMask, pixelValues, labels });
 */
export class InternVL extends Module {
  readonly config: InternVLConfig;
  readonly vision_model: InternVisionModel;
  readonly mlp1: InternVLProjector;
  readonly language_model: LlamaForCausalLM;
  /** Image tokens per tile: (tile side / patch)² · downsample_ratio² (256 for InternVL2's 448 px tiles). */
  readonly numImageToken: number;
  /** The `<IMG_CONTEXT>` id whose positions take the image tokens. */
  imgContextTokenId: number | null;

  private constructor(config: InternVLConfig, vision: InternVisionModel, mlp1: InternVLProjector, llm: LlamaForCausalLM, imgContextTokenId: number | null) {
    super();
    this.config = config;
    this.vision_model = this.registerModule('vision_model', vision);
    this.mlp1 = this.registerModule('mlp1', mlp1);
    this.language_model = this.registerModule('language_model', llm);
    const side = config.force_image_size ?? vision.config.image_size;
    this.numImageToken = Math.floor((side / vision.config.patch_size) ** 2 * config.downsample_ratio ** 2);
    this.imgContextTokenId = imgContextTokenId;
  }

  /**
   * A randomly initialised InternVL from an InternVLChatConfig-shaped object.
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field
   */
  static create(config: Partial<InternVLConfig> & Pick<InternVLConfig, 'vision_config' | 'llm_config'>, opts: InternVLCreateOptions = {}): InternVL {
    opts = checkModuleOptions(opts, 'InternVL.create', ['imgContextTokenId']);
    const c = resolveInternVLConfig(config);
    const { imgContextTokenId, ...moduleOpts } = opts;
    const vision = InternVisionModel.create(c.vision_config, moduleOpts);
    const llm = LlamaForCausalLM.create(llmConfig(c.llm_config), moduleOpts);
    const mlp1 = InternVLProjector.create(
      { vit_hidden_size: vision.config.hidden_size, llm_hidden_size: llm.config.hidden_size, downsample_ratio: c.downsample_ratio, ps_version: c.ps_version },
      moduleOpts,
    );
    if (imgContextTokenId !== undefined) checkInt(imgContextTokenId, 'imgContextTokenId', 0);
    return new InternVL(c, vision, mlp1, llm, imgContextTokenId ?? null);
  }

  /**
   * Loads a released InternVL2 folder (`OpenGVLab/InternVL2-*`, EmoVerse-8B): config.json, the
   * safetensors shards (or pytorch_model.bin). Keys are the remote code's: `vision_model.*`,
   * `mlp1.*`, `language_model.*`.
   * With `opts.quantize` the LLM's decoder Linear layers are quantized as the safetensors are read,
   * a piece at a time, never the whole float model (its LM head, embeddings and norms, InternViT and
   * `mlp1` stay in `dtype`); a `pytorch_model.bin` is read whole, then quantized.
   * @param opts `imgContextTokenId` (the tokenizer's `<IMG_CONTEXT>` id), `strict` (default true), `device`, `dtype`,
   *   `quantize` ({@link QuantFormat}: 'int8' | 'nf4' | 'q8_0' | 'q4_0')
   * @throws EmotorchError ERR_IO / ERR_FORMAT for unreadable files, ERR_STATE_DICT naming a key;
   *   ERR_INVALID_ARG for an unknown quantization or a layer whose rows its block does not divide
   * @example
   * const ivl = await et.nn.InternVL.fromPretrained('InternVL2-8B/', { dtype: 'bfloat16', quantize: 'nf4', imgContextTokenId: 92546 });
   */
  static async fromPretrained(
    dir: string,
    opts: PretrainedOptions & Omit<InternVLCreateOptions, 'dtype' | 'device'> & { quantize?: QuantFormat } = {},
  ): Promise<InternVL> {
    opts = checkPretrainedOptions(opts, 'InternVL.fromPretrained', ['imgContextTokenId', 'quantize']);
    const format = opts.quantize === undefined ? undefined : checkQuantFormat(opts.quantize, 'InternVL.fromPretrained opts.quantize');
    dir = await pretrainedPath(dir, opts);
    const raw = readConfig(dir);
    if (!raw.vision_config || !raw.llm_config)
      throw new EmotorchError(`'${dir}' is not an InternVL chat folder: its config.json has no vision_config and llm_config`, 'ERR_FORMAT');
    // opts.config replaces top-level fields of the chat config (a sub-config whole), named as the config.json names them
    const cfg = withOverrides('InternVL', { ...INTERNVL_DEFAULTS, vision_config: 1, llm_config: 1 }, raw, opts.config);
    const build = () => createForCheckpoint(opts, () => InternVL.create(cfg as unknown as InternVLConfig, { imgContextTokenId: opts.imgContextTokenId }));
    const kept = (k: string) => !k.endsWith('.rotary_emb.inv_freq');
    // the LLM's decoder layers, not its untied head (as LlamaForCausalLM.fromPretrained({ quantize })
    // leaves it), nor InternViT and mlp1
    const head = (m: InternVL) => `language_model.${m.language_model.embeddingKeys.head.replace(/\.weight$/, '')}`;
    const quantizable = (m: InternVL) => ({
      skip: linearLayers(m)
        .map((l) => l.name)
        .filter((n) => !n.startsWith('language_model.') || (!m.language_model.config.tie_word_embeddings && n === head(m))),
    });
    if (format) {
      const model = await loadSafetensorsQuantized(dir, build, quantizable, format, opts, kept);
      if (model) return model;
    }
    const model = build();
    const sd = await loadCheckpoint(dir);
    for (const k of [...sd.keys()]) if (!kept(k)) sd.delete(k);
    await finishPretrained(model, sd, opts);
    if (format) await quantize(model, format, quantizable(model)); // (a pytorch_model.bin: read whole, then quantized)
    return model;
  }

  /**
   * The image tokens of tiles: InternViT, the hidden state `select_layer` names, pixel_shuffle
   * and `mlp1` (the original's `extract_feature`).
   * @param pixelValues (tiles, 3, side, side)
   * @returns (tiles, numImageToken, llm hidden)
   */
  async extractFeature(pixelValues: Tensor): Promise<Tensor> {
    const sel = this.config.select_layer;
    const out = await this.vision_model.forward(sel === -1 ? { pixelValues } : { pixelValues, hiddenStateIndex: sel });
    return (await this.mlp1.forward({ hiddenStates: sel === -1 ? out.lastHiddenState : out.hiddenState! })).imageTokens;
  }

  /** Token embeddings with the image tokens written over the `<IMG_CONTEXT>` positions. */
  async embedInputs(inputIds: Tensor, pixelValues: Tensor | null | undefined, imageFlags?: Tensor): Promise<Tensor> {
    const embeds = await this.language_model.embed(inputIds);
    const ctx = this.imgContextTokenId;
    const flat = (inputIds.toArray() as number[][]).flat();
    const where: number[] = [];
    if (ctx !== null)
      flat.forEach((id, i) => {
        if (id === ctx) where.push(i);
      });
    if (!pixelValues) {
      if (where.length) invalid('pixelValues for the <IMG_CONTEXT> tokens of inputIds', 'pixelValues', pixelValues);
      return embeds;
    }
    if (ctx === null) throw new EmotorchError('InternVL: imgContextTokenId is not set (pass it to create / fromPretrained)', 'ERR_INVALID_ARG');
    let features = await this.extractFeature(pixelValues);
    if (imageFlags) {
      const flags = (imageFlags.reshape([-1]).toArray() as number[]).map(Number);
      if (flags.length !== features.shape[0]) invalid(`${features.shape[0]} flags (one per tile)`, 'imageFlags', `[${imageFlags.shape}]`);
      const kept = flags.flatMap((f, i) => (f === 1 ? [i] : []));
      if (kept.length !== flags.length) features = features.indexSelect(0, tensor(kept, { dtype: 'int64' }).to({ device: features.device }));
    }
    const [b, t, h] = embeds.shape;
    const n = features.shape[0] * features.shape[1];
    if (where.length !== n) {
      throw new EmotorchError(
        `InternVL: inputIds hold ${where.length} <IMG_CONTEXT> tokens but the ${features.shape[0]} tiles give ${n} image tokens (${this.numImageToken} per tile)`,
        'ERR_INVALID_ARG',
      );
    }
    // Row i of the result is text row i, or image token k at the k-th <IMG_CONTEXT> position.
    const order = Array.from({ length: b * t }, (_, i) => i);
    where.forEach((pos, k) => {
      order[pos] = b * t + k;
    });
    const all = cat([embeds.reshape([b * t, h]), features.reshape([n, h]).to({ dtype: embeds.dtype })], 0);
    return all.indexSelect(0, tensor(order, { dtype: 'int64' }).to({ device: all.device })).reshape([b, t, h]);
  }

  /**
   * InternVLChatModel.forward: the prompt's embeddings with the tiles' image tokens spliced in,
   * through the LLM; with `labels`, the causal-LM loss (mean over label tokens).
   * @throws EmotorchError ERR_INVALID_ARG when the `<IMG_CONTEXT>` count and the tiles disagree
   *   (the original warns, truncates and zeroes the loss; this refuses), for mis-shaped inputs
   */
  async forward(inputs: InternVLInputs): Promise<InternVLOutputs> {
    if (!inputs || typeof inputs !== 'object') invalid('an inputs object ({ inputIds, pixelValues, … })', 'InternVL inputs', inputs);
    const ids = checkTensor(inputs.inputIds, 'inputIds');
    if (ids.ndim !== 2 || ids.dtype !== 'int64') invalid('an int64 tensor (batch, length)', 'inputIds', `${ids.dtype} [${ids.shape}]`);
    const inputsEmbeds = await this.embedInputs(ids, inputs.pixelValues, inputs.imageFlags);
    return this.language_model.forward({
      inputsEmbeds,
      attentionMask: inputs.attentionMask,
      positionIds: inputs.positionIds,
      labels: inputs.labels,
      numItemsInBatch: inputs.numItemsInBatch,
    });
  }

  /**
   * Greedy / sampled / beam generation from a left-padded prompt with image tokens.
   * @returns the new tokens (batch, ≤ maxNewTokens)
   */
  async generate(inputs: Pick<InternVLInputs, 'inputIds' | 'attentionMask' | 'pixelValues' | 'imageFlags'>, opts: GenerationOptions = {}): Promise<Tensor> {
    const ids = checkTensor(inputs.inputIds, 'inputIds');
    const inputsEmbeds = await this.embedInputs(ids, inputs.pixelValues, inputs.imageFlags);
    return (await this.language_model.generate({ inputsEmbeds, attentionMask: inputs.attentionMask }, opts)).newTokens;
  }
}

/** The checked InternVLChatConfig with defaults (vision_config checked as InternViT's). */
export function resolveInternVLConfig(given: Partial<InternVLConfig>): InternVLConfig {
  if (!given || typeof given !== 'object') invalid('an InternVLChatConfig object', 'InternVL config', given);
  const c = { ...INTERNVL_DEFAULTS, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) } as InternVLConfig;
  if (!c.vision_config || typeof c.vision_config !== 'object') invalid('an object', 'InternVL config.vision_config', c.vision_config);
  if (!c.llm_config || typeof c.llm_config !== 'object') invalid('an object', 'InternVL config.llm_config', c.llm_config);
  c.vision_config = internVisionConfig(c.vision_config);
  checkInt(c.select_layer, 'InternVL config.select_layer');
  if (c.force_image_size !== null) checkInt(c.force_image_size, 'InternVL config.force_image_size', 1);
  for (const k of ['min_dynamic_patch', 'max_dynamic_patch'] as const) checkInt(c[k], `InternVL config.${k}`, 1);
  if (c.min_dynamic_patch > c.max_dynamic_patch)
    invalid(`at least min_dynamic_patch (${c.min_dynamic_patch})`, 'InternVL config.max_dynamic_patch', c.max_dynamic_patch);
  return c;
}

/** llm_config as a LlamaConfig: the layout from `architectures[0]` (or `model_type`), HF names normalised. */
function llmConfig(raw: Record<string, unknown>): Partial<LlamaConfig> {
  const arch = Array.isArray(raw.architectures) ? String(raw.architectures[0]) : undefined;
  const type = arch !== undefined ? LLM_TYPES[arch] : (raw.model_type as string | undefined);
  if (arch !== undefined && type === undefined) invalid(Object.keys(LLM_TYPES).join(', '), 'InternVL config.llm_config.architectures[0]', arch);
  return normalizeLlamaConfig({ ...raw, model_type: type ?? 'llama' }) as Partial<LlamaConfig>;
}
