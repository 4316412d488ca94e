/**
 * CLIP (HF CLIPModel, CLIPVisionModel[WithProjection], CLIPTextModel[WithProjection]) on
 * native/models/clip, and the LanguageBind towers that are CLIP folders with extras: video with
 * temporal attention in every layer (and the V1.5 tube embedding), audio as a non-square fbank
 * "image", and the LoRA-tuned releases whose vision encoder peft wrapped.
 */
import { Module, ModuleOptions, StateDict } from './module';
import { ConfigDecl, ConfigOf, ConfiguredModule, GivenOf, declareConfig, defaultsOf, f, resolve, specOf } from './config';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { Loaded, Loading, PretrainedOptions, loadCheckpoint, loadPretrained, readConfig } from './pretrained';
import { applyLora } from './lora';

/** `withProjection` (default true), checked; without the projection head, `projection_dim` is sent as 0. */
function projectionOption(opts: { withProjection?: unknown }): boolean {
  const wp = opts.withProjection ?? true;
  if (typeof wp !== 'boolean') invalid('a boolean', 'withProjection', wp);
  return wp;
}
const sentProjection = (c: Record<string, number>, o: { withProjection?: boolean }): number => (o.withProjection === false ? 0 : c.projection_dim);

/** HF CLIPTextConfig fields (config.json names; defaults: CLIPTextConfig's). */
export const CLIP_TEXT = declareConfig({
  name: 'CLIP text',
  kind: 'clip_text',
  options: ['withProjection'],
  fields: {
    vocab_size: f.posint(49408),
    hidden_size: f.posint(512),
    intermediate_size: f.posint(2048),
    num_hidden_layers: f.nonneg(12),
    num_attention_heads: f.posint(8),
    /** Context length (77 for OpenAI's and LanguageBind's). */
    max_position_embeddings: f.posint(77),
    /** HF: 2 (the legacy value) pools at argmax(input_ids), any other id at its first occurrence. */
    eos_token_id: f.int(49407),
    hidden_act: f.act('quick_gelu'),
    layer_norm_eps: f.posnum(1e-5),
    attention_dropout: f.prob(0),
    initializer_range: f.nonnegnum(0.02),
    initializer_factor: f.nonnegnum(1),
    /** Width of `text_projection` (used when the model has one; sent as 0 without it). */
    projection_dim: f.posint(512).sends(sentProjection),
  },
  check(c, _, opts) {
    if (c.hidden_size % c.num_attention_heads !== 0)
      invalid(`a multiple of num_attention_heads (${c.num_attention_heads})`, 'CLIP text config.hidden_size', c.hidden_size);
    projectionOption(opts);
  },
});

/**
 * HF CLIPTextConfig fields (config.json names; defaults: CLIPTextConfig's).
 * @interface
 */
export type ClipTextConfig = ConfigOf<typeof CLIP_TEXT>;

/**
 * HF CLIPVisionConfig fields, with LanguageBind's: `add_time_attn` and `num_frames` (video), and
 * `tube_size` (> 0: the V1.5 Conv3d tube embedding; 0: the 2-D patch embedding). `image_size` is a
 * side or `[height, width]` (LanguageBind audio: `[num_mel_bins, target_length]`).
 */
export const CLIP_VISION = declareConfig({
  name: 'CLIP vision',
  kind: 'clip_vision',
  options: ['withProjection'],
  fields: {
    hidden_size: f.posint(768),
    intermediate_size: f.posint(3072),
    num_hidden_layers: f.nonneg(12),
    num_attention_heads: f.posint(12),
    num_channels: f.posint(3),
    /** A side, or `[height, width]` (always `[height, width]` once built). */
    image_size: f.any<number | [number, number]>('i64[]', 224),
    patch_size: f.posint(32),
    hidden_act: f.act('quick_gelu'),
    layer_norm_eps: f.posnum(1e-5),
    attention_dropout: f.prob(0),
    initializer_range: f.nonnegnum(0.02),
    initializer_factor: f.nonnegnum(1),
    /** Width of `visual_projection` (used when the model has one; sent as 0 without it). */
    projection_dim: f.posint(512).sends(sentProjection),
    /** LanguageBind video: temporal attention in every layer. */
    add_time_attn: f.bool(false),
    /** LanguageBind video: the frames the temporal position table has. */
    num_frames: f.posint(1),
    /** > 0: LanguageBind V1.5's Conv3d tube embedding over this many frames; 0: the 2-D patch embedding. */
    tube_size: f.nonneg(0),
    /**
     * LanguageBind's PatchDropout, in training only: keep max(1, ⌊n·(1 − p)⌋) of the n patch tokens
     * (the CLS always), drawn per video with `randn` on the CPU generator (as the original, so a seed
     * replays it), the same patches in all frames. In [0, 1); default 0.
     */
    force_patch_dropout: f.prob(0),
  },
  normalize: (raw) => visionFromFile(raw),
  check(c, _, opts) {
    const s = c.image_size;
    const hw = typeof s === 'number' ? [s, s] : s;
    if (!Array.isArray(hw) || hw.length !== 2 || !hw.every((v) => Number.isSafeInteger(v) && v > 0))
      invalid('a positive integer or [height, width]', 'CLIP vision config.image_size', s);
    if (hw[0] < c.patch_size || hw[1] < c.patch_size) invalid(`at least patch_size (${c.patch_size}) on each side`, 'CLIP vision config.image_size', s);
    c.image_size = [hw[0], hw[1]];
    if (c.hidden_size % c.num_attention_heads !== 0)
      invalid(`a multiple of num_attention_heads (${c.num_attention_heads})`, 'CLIP vision config.hidden_size', c.hidden_size);
    if (c.tube_size > 0 && c.num_frames % c.tube_size !== 0) invalid(`a divisor of num_frames (${c.num_frames})`, 'CLIP vision config.tube_size', c.tube_size);
    if (c.force_patch_dropout >= 1) invalid('a number in [0, 1)', 'CLIP vision config.force_patch_dropout', c.force_patch_dropout);
    projectionOption(opts);
  },
});

/**
 * HF CLIPVisionConfig fields, with LanguageBind's: `add_time_attn` and `num_frames` (video), and
 * `tube_size` (> 0: the V1.5 Conv3d tube embedding; 0: the 2-D patch embedding). `image_size` is a
 * side or `[height, width]` (LanguageBind audio: `[num_mel_bins, target_length]`).
 * @interface
 */
export type ClipVisionConfig = ConfigOf<typeof CLIP_VISION>;

/** HF CLIPConfig: both towers, the shared projection width and the initial `logit_scale`. */
export const CLIP = declareConfig({
  name: 'CLIP',
  kind: 'clip',
  fields: {
    /** The text tower's fields (those left out take the defaults). */
    text_config: f.config(CLIP_TEXT),
    /** The vision tower's fields (those left out take the defaults). */
    vision_config: f.config(CLIP_VISION),
    /** Width of both projections (the towers' own `projection_dim` give way to it). */
    projection_dim: f.posint(512).host(),
    /** The initial `logit_scale` (ln(1 / 0.07)). */
    logit_scale_init_value: f.number(2.6592),
  },
  check(c) {
    for (const k of ['text_config', 'vision_config'] as const)
      if (!c[k] || typeof c[k] !== 'object' || Array.isArray(c[k])) invalid('an object', `CLIP config.${k}`, c[k]);
    c.text_config = resolve(CLIP_TEXT, { ...c.text_config, projection_dim: c.projection_dim });
    c.vision_config = resolve(CLIP_VISION, { ...c.vision_config, projection_dim: c.projection_dim });
  },
});

/**
 * HF CLIPConfig as `create` takes it: both towers (partly), the shared projection width and the initial `logit_scale`.
 * @interface
 */
export type ClipConfig = GivenOf<typeof CLIP>;

/**
 * A ClipModel's config as built: both towers resolved.
 * @interface
 */
export type ClipResolvedConfig = ConfigOf<typeof CLIP>;

/** The ClipTextConfig values used for the fields a config leaves out. */
export const CLIP_TEXT_DEFAULTS: ClipTextConfig = defaultsOf(CLIP_TEXT);

/** The ClipVisionConfig values used for the fields a config leaves out. */
export const CLIP_VISION_DEFAULTS: ClipVisionConfig = defaultsOf(CLIP_VISION);

/** Kind of each config field, per tower. */
export const SPEC = { text: specOf(CLIP_TEXT), vision: specOf(CLIP_VISION) };

/**
 * The vision config of a config.json (a CLIPModel's `vision_config`, or a vision model's own), with
 * LanguageBind's fields read as its code reads them: an audio tower's patch grid comes from
 * `num_mel_bins` × `target_length` (its `resize_pos`), a video tower with `add_time_attn` and
 * `clip_type: "vl_new"` embeds tubes of `tube_size` (default 1) frames.
 */
function visionFromFile(raw: Record<string, unknown>): Record<string, unknown> {
  const v = { ...raw };
  if (Number(raw.num_mel_bins) > 0 && Number(raw.target_length) > 0) v.image_size = [raw.num_mel_bins, raw.target_length];
  v.tube_size = raw.add_time_attn === true && raw.clip_type === 'vl_new' ? (raw.tube_size ?? 1) : 0;
  if (raw.add_time_attn === undefined) v.add_time_attn = false;
  return v;
}

function subConfig(raw: Record<string, unknown>, key: string, dir: string): Record<string, unknown> | null {
  const sub = raw[key];
  if (sub === undefined) return null;
  if (!sub || typeof sub !== 'object' || Array.isArray(sub)) throw new EmotorchError(`'${dir}/config.json': ${key} is not an object`, 'ERR_FORMAT');
  return sub as Record<string, unknown>;
}

/** What `fromPretrained` does with a LoRA-tuned release's adapters. */
export type LoraMode = 'merge' | 'keep' | 'convert_to_lora';

/** How `fromPretrained` treats a LoRA-tuned LanguageBind release. */
export interface ClipPretrainedOptions<C> extends PretrainedOptions<C> {
  /**
   * For a vision encoder that peft wrapped (`vision_model.encoder.base_model.model.…` with
   * `lora_A` / `lora_B`): 'merge' (default) folds each adapter into its weight
   * (W += lora_alpha / r · B·A) and gives a plain model; 'keep' keeps the adapters as LoRA layers,
   * trainable, with everything else frozen (as `et.nn.applyLora` leaves a model);
   * 'convert_to_lora' keeps them with the trainable set the original's `convert_to_lora` leaves:
   * peft wraps only `vision_model.encoder`, so the embeddings, `pre_layrnorm`, `post_layernorm`
   * and the projection stay trainable beside the adapters ('keep' is the default of the two: it
   * trains what LoRA names, a fraction of the tower's tensors).
   */
  lora?: LoraMode;
  /** Build the projection head (`visual_projection` / `text_projection`); default: when the checkpoint has it. */
  withProjection?: boolean;
  /** The folder's checkpoint when already read (a caller loading both towers of one folder reads it once). */
  stateDict?: StateDict;
}

interface LoraFound {
  targets: string[];
  r: number;
  alpha: number;
  dropout: number;
}

/**
 * The checkpoint with a peft-wrapped encoder unwrapped (`encoder.base_model.model.` → `encoder.`,
 * `.base_layer.` dropped) and its adapters found; 'merge' folds them in.
 */
function unwrapLora(sd: StateDict, vcfg: Record<string, unknown>, mode: LoraMode, where: string): { sd: StateDict; lora: LoraFound | null } {
  const out: StateDict = new Map();
  for (const [k, t] of sd) out.set(k.replace('.encoder.base_model.model.', '.encoder.').replace('.base_layer.', '.'), t);
  const targets = [...out.keys()].filter((k) => k.endsWith('.lora_A.default.weight')).map((k) => k.slice(0, -'.lora_A.default.weight'.length));
  if (!targets.length) return { sd: out, lora: null };
  const a0 = out.get(`${targets[0]}.lora_A.default.weight`)!;
  const r = Number(vcfg.lora_r) > 0 ? Number(vcfg.lora_r) : a0.shape[0];
  const alpha = Number(vcfg.lora_alpha);
  if (!Number.isFinite(alpha))
    throw new EmotorchError(`${where}: the checkpoint has LoRA adapters but vision_config.lora_alpha is ${String(vcfg.lora_alpha)}`, 'ERR_FORMAT');
  for (const n of targets) {
    const A = out.get(`${n}.lora_A.default.weight`),
      B = out.get(`${n}.lora_B.default.weight`),
      W = out.get(`${n}.weight`);
    if (!A || !B || !W) throw new EmotorchError(`${where}: the adapter of '${n}' lacks ${!B ? 'lora_B' : 'its base weight'}`, 'ERR_STATE_DICT');
    if (A.shape[0] !== r || B.shape[1] !== r || B.shape[0] !== W.shape[0] || A.shape[1] !== W.shape[1]) {
      throw new EmotorchError(
        `${where}: the adapter of '${n}' has A [${A.shape}] and B [${B.shape}], which do not fit rank ${r} and weight [${W.shape}]`,
        'ERR_STATE_DICT',
      );
    }
    if (mode === 'merge') {
      out.set(
        `${n}.weight`,
        W.to({ dtype: 'float32' })
          .add(
            B.to({ dtype: 'float32' })
              .matmul(A.to({ dtype: 'float32' }))
              .mul(alpha / r),
          )
          .to({ dtype: W.dtype }),
      );
      out.delete(`${n}.lora_A.default.weight`);
      out.delete(`${n}.lora_B.default.weight`);
    }
  }
  return { sd: out, lora: { targets, r, alpha, dropout: Number(vcfg.lora_dropout) || 0 } };
}

function checkMode(mode: unknown): LoraMode {
  if (mode !== undefined && mode !== 'merge' && mode !== 'keep' && mode !== 'convert_to_lora')
    invalid("'merge', 'keep' or 'convert_to_lora'", 'opts.lora', mode);
  return (mode as LoraMode | undefined) ?? 'merge';
}

/**
 * Applies a release's adapters as LoRA layers ('keep': everything else frozen); with
 * 'convert_to_lora', what lies outside `vision_model.encoder` is trainable again, as the original
 * leaves it after `get_peft_model(vision_model.encoder, …)`.
 */
function keepLora(model: Module, lora: LoraFound, mode: LoraMode): void {
  applyLora(model, { r: lora.r, alpha: lora.alpha, dropout: lora.dropout, targetModules: lora.targets });
  if (mode === 'convert_to_lora') for (const [n, p] of model.namedParameters()) if (!n.startsWith('vision_model.encoder.')) p.requiresGrad = true;
}

/** Named inputs of `ClipVisionModel.forward` (HF's argument names, camelCase). */
export interface ClipVisionInputs {
  /** (batch, channels, height, width) images, or (batch, channels, frames, height, width) video. */
  pixelValues: Tensor;
}
/** Named outputs of `ClipVisionModel.forward` (HF's output names, camelCase). */
export interface ClipVisionOutputs {
  /** (batch · frames, patches + 1, hidden). */
  lastHiddenState: Tensor;
  /** (batch, hidden): post_layernorm of the CLS token, averaged over the frames. */
  poolerOutput: Tensor;
  /** (batch, projection_dim): `visual_projection(poolerOutput)`, not normalised; null without the head. */
  imageEmbeds: Tensor | null;
}

function checkPixels(x: Tensor, c: ClipVisionConfig, name: string): void {
  checkTensor(x, name);
  if ((x.ndim !== 4 && x.ndim !== 5) || x.shape[1] !== c.num_channels || !['float32', 'float64', 'float16', 'bfloat16'].includes(x.dtype)) {
    invalid(`a float tensor (batch, ${c.num_channels}, height, width) or (batch, ${c.num_channels}, frames, height, width)`, name, `${x.dtype} [${x.shape}]`);
  }
  const [h, w] = c.image_size as [number, number];
  const H = x.shape[x.ndim - 2],
    W = x.shape[x.ndim - 1],
    p = c.patch_size;
  if (Math.floor(H / p) !== Math.floor(h / p) || Math.floor(W / p) !== Math.floor(w / p)) {
    invalid(`${h} × ${w} pixels (a ${Math.floor(h / p)} × ${Math.floor(w / p)} patch grid, as the position table)`, `${name} size`, `${H} × ${W}`);
  }
  if (x.ndim === 5) {
    const T = x.shape[2];
    if (T < 1) invalid('at least one frame', `${name} frames`, T);
    if (c.add_time_attn && T > c.num_frames) invalid(`at most num_frames (${c.num_frames}) frames`, `${name} frames`, T);
    if (c.tube_size > 0 && T !== c.num_frames) invalid(`exactly num_frames (${c.num_frames}) frames for the tube embedding`, `${name} frames`, T);
  } else if (c.tube_size > 0) invalid(`a video (batch, ${c.num_channels}, ${c.num_frames}, height, width) for the tube embedding`, name, `[${x.shape}]`);
}

/**
 * One tower's part of a checkpoint: its `prefix` keys (no `position_ids` buffers) and its
 * projection `head` when wanted (default: when the checkpoint has it).
 */
function towerState(sd: StateDict, prefix: string, head: string, wanted: boolean | undefined): { keep: StateDict; withProjection: boolean } {
  const keep = new Map([...sd].filter(([k]) => (k.startsWith(prefix) && !k.endsWith('.position_ids')) || k === head));
  const withProjection = wanted ?? keep.has(head);
  if (!withProjection) keep.delete(head);
  return { keep, withProjection };
}

/** A CLIP checkpoint as read: its tensors, and its adapters with what to do with them. */
interface ClipLoaded extends Loaded {
  lora: LoraFound | null;
  mode: LoraMode;
  withProjection?: boolean;
}

/** After building: a release's adapters applied as LoRA layers, unless merged into the weights. */
function keepAdapters<M extends Module>(model: M, { lora, mode }: ClipLoaded): void {
  if (lora && mode !== 'merge') keepLora(model, lora, mode);
}

/**
 * How a tower reads a folder: its config (a CLIPModel's `text_config` / `vision_config` with the
 * shared `projection_dim`, or the tower's own config.json), its part of the checkpoint, its
 * projection head when wanted (default: when the checkpoint has it); the vision tower unwraps and
 * applies a LoRA-tuned release's adapters (`opts.lora`).
 */
function towerLoading<M extends Module>(
  decl: ConfigDecl,
  cls: { create(c: object, o: { withProjection?: boolean }): M },
  opts: ClipPretrainedOptions<object>,
  tower: 'text' | 'vision',
): Loading<M, ClipPretrainedOptions<object>, ClipLoaded> {
  const [prefix, head] = tower === 'text' ? ['text_model.', 'text_projection.weight'] : ['vision_model.', 'visual_projection.weight'];
  return {
    options: ['lora', 'withProjection', 'stateDict'],
    async read(dir) {
      const mode = tower === 'vision' ? checkMode(opts.lora) : 'merge';
      const raw = readConfig(dir);
      const top = subConfig(raw, `${tower}_config`, dir);
      const config = { ...decl.normalize(top ?? raw) };
      if (top && raw.projection_dim !== undefined) config.projection_dim = raw.projection_dim;
      const all = opts.stateDict ?? (await loadCheckpoint(dir));
      const { sd, lora } = tower === 'vision' ? unwrapLora(all, top ?? raw, mode, `'${dir}'`) : { sd: all, lora: null };
      const { keep, withProjection } = towerState(sd, prefix, head, opts.withProjection);
      return { sd: keep, config, lora, mode, withProjection };
    },
    create: (c, { withProjection }) => cls.create(c, { withProjection }),
    prepare: keepAdapters,
  };
}

/** A CLIP tower, built with or without its projection head (`create`'s `withProjection`). */
abstract class ClipTower<C extends object> extends ConfiguredModule<C> {
  /** Whether the projection head exists (`imageEmbeds` / `textEmbeds` are null without it). */
  readonly withProjection: boolean;
  protected constructor(decl: ConfigDecl, config: unknown, opts: ModuleOptions & { withProjection?: boolean }) {
    super(decl, config, opts);
    this.withProjection = opts.withProjection ?? true;
  }
}

/**
 * CLIP's vision tower (`vision_model.*`), with `visual_projection` when built with a projection
 * (HF CLIPVisionModelWithProjection); LanguageBind's video and audio towers.
 * @example
 * const tower = await et.nn.ClipVisionModel.fromPretrained('LanguageBind_Video_FT/');
 * const { imageEmbeds } = await tower.forward({ pixelValues: video });  // video (B, 3, 8, 224, 224)
 */
export class ClipVisionModel extends ClipTower<ClipVisionConfig> {
  /**
   * A randomly initialised tower (HF CLIP's init).
   * @param opts `withProjection` (default true), `device`, `dtype`
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field
   */
  static create(config: Partial<ClipVisionConfig> = {}, opts: ModuleOptions & { withProjection?: boolean } = {}): ClipVisionModel {
    return new ClipVisionModel(CLIP_VISION, config, opts);
  }

  /**
   * @returns `{ lastHiddenState, poolerOutput, imageEmbeds }`
   * @throws EmotorchError for a missing input, a wrong channel count, size or frame count
   */
  async forward(inputs: ClipVisionInputs | Tensor): Promise<ClipVisionOutputs> {
    const { pixelValues } = this.namedInputs<ClipVisionInputs>(inputs, 'pixelValues', 'CLIP vision');
    checkPixels(pixelValues, this.config, 'pixelValues');
    const o = await this.run({ pixel_values: pixelValues });
    return { lastHiddenState: o.last_hidden_state!, poolerOutput: o.pooler_output!, imageEmbeds: o.image_embeds ?? null };
  }

  /**
   * Loads a local folder: an HF CLIPModel (its vision half), a CLIPVisionModel[WithProjection], or a
   * LanguageBind video / audio release (`LanguageBind_Video_FT`, `LanguageBind_Audio_FT`, and the
   * LoRA-tuned `LanguageBind_Video` / `LanguageBind_Audio`, see `opts.lora`).
   * @throws EmotorchError ERR_IO / ERR_FORMAT for unreadable files, ERR_STATE_DICT naming a key
   */
  static async fromPretrained(dir: string, opts: ClipPretrainedOptions<ClipVisionConfig> = {}): Promise<ClipVisionModel> {
    return loadPretrained(CLIP_VISION, ClipVisionModel, dir, opts, towerLoading(CLIP_VISION, ClipVisionModel, opts, 'vision'));
  }
}

/** Named inputs of `ClipTextModel.forward` (HF's argument names, camelCase). */
export interface ClipTextInputs {
  /** (batch, length) int64 token ids (with the EOS token: pooling reads it). */
  inputIds: Tensor;
  /** (batch, length): 1 for tokens, 0 for padding. */
  attentionMask?: Tensor | null;
}
/** Named outputs of `ClipTextModel.forward` (HF's output names, camelCase). */
export interface ClipTextOutputs {
  lastHiddenState: Tensor;
  /** (batch, hidden): the final-norm hidden state at the EOS token. */
  poolerOutput: Tensor;
  /** (batch, projection_dim): `text_projection(poolerOutput)`, not normalised; null without the head. */
  textEmbeds: Tensor | null;
}

function checkText(ids: Tensor, mask: Tensor | null | undefined, c: ClipTextConfig): void {
  checkTensor(ids, 'inputIds');
  if (ids.ndim !== 2 || (ids.dtype !== 'int64' && ids.dtype !== 'int32')) invalid('an int64 tensor (batch, length)', 'inputIds', `${ids.dtype} [${ids.shape}]`);
  if (ids.shape[1] < 1 || ids.shape[1] > c.max_position_embeddings)
    invalid(`1 to max_position_embeddings (${c.max_position_embeddings}) tokens`, 'inputIds length', ids.shape[1]);
  if (ids.numel > 0) {
    const lo = ids.min().item() as number,
      hi = ids.max().item() as number;
    if (lo < 0 || hi >= c.vocab_size) invalid(`token ids in [0, ${c.vocab_size})`, 'inputIds', `ids from ${lo} to ${hi}`);
  }
  if (mask && checkTensor(mask, 'attentionMask').shape.join() !== ids.shape.join()) invalid(`shape [${ids.shape}]`, 'attentionMask', `[${mask.shape}]`);
}

/**
 * CLIP's text tower (`text_model.*`), with `text_projection` when built with a projection (HF
 * CLIPTextModelWithProjection): causal, pooled at the EOS token.
 * @example
 * const text = await et.nn.ClipTextModel.fromPretrained('LanguageBind_Video_FT/');
 * const { textEmbeds } = await text.forward({ inputIds, attentionMask });
 */
export class ClipTextModel extends ClipTower<ClipTextConfig> {
  /** A randomly initialised tower. @param opts `withProjection` (default true), `device`, `dtype` */
  static create(config: Partial<ClipTextConfig> = {}, opts: ModuleOptions & { withProjection?: boolean } = {}): ClipTextModel {
    return new ClipTextModel(CLIP_TEXT, config, opts);
  }

  /** @returns `{ lastHiddenState, poolerOutput, textEmbeds }` */
  async forward(inputs: ClipTextInputs | Tensor): Promise<ClipTextOutputs> {
    const { inputIds, attentionMask } = this.namedInputs<ClipTextInputs>(inputs, 'inputIds', 'CLIP text');
    checkText(inputIds, attentionMask, this.config);
    const o = await this.run({ input_ids: inputIds, attention_mask: attentionMask });
    return { lastHiddenState: o.last_hidden_state!, poolerOutput: o.pooler_output!, textEmbeds: o.text_embeds ?? null };
  }

  /** Loads a local folder: an HF CLIPModel (its text half), a CLIPTextModel[WithProjection], or a LanguageBind release. */
  static async fromPretrained(dir: string, opts: ClipPretrainedOptions<ClipTextConfig> = {}): Promise<ClipTextModel> {
    return loadPretrained(CLIP_TEXT, ClipTextModel, dir, opts, towerLoading(CLIP_TEXT, ClipTextModel, opts, 'text'));
  }
}

/** Named inputs of `ClipModel.forward` (HF's argument names, camelCase). */
export interface ClipInputs {
  inputIds?: Tensor | null;
  attentionMask?: Tensor | null;
  pixelValues?: Tensor | null;
}
/** Named outputs of `ClipModel.forward` (HF's output names, camelCase). */
export interface ClipOutputs {
  /** (images, texts) = logit_scale.exp() · image_embeds · text_embedsᵀ; null unless both are given. */
  logitsPerImage: Tensor | null;
  logitsPerText: Tensor | null;
  /** L2-normalised projections; null when that input is not given. */
  textEmbeds: Tensor | null;
  imageEmbeds: Tensor | null;
  textPoolerOutput: Tensor | null;
  visionPoolerOutput: Tensor | null;
  textLastHiddenState: Tensor | null;
  visionLastHiddenState: Tensor | null;
}

/**
 * HF CLIPModel: both towers, their projections and `logit_scale`.
 * @example
 * const clip = await et.nn.ClipModel.fromPretrained('clip-vit-base-patch32/');
 * const { logitsPerImage } = await clip.forward({ inputIds, attentionMask, pixelValues });
 */
export class ClipModel extends ConfiguredModule<ClipResolvedConfig> {
  /** A randomly initialised model. @throws EmotorchError ERR_INVALID_ARG naming a bad field */
  static create(config: Partial<ClipConfig> = {}, opts: ModuleOptions = {}): ClipModel {
    return new ClipModel(CLIP, config, opts);
  }

  /** Loads a local HF CLIPModel folder (or a LanguageBind release; LoRA adapters as `opts.lora`). */
  static async fromPretrained(dir: string, opts: ClipPretrainedOptions<ClipConfig> = {}): Promise<ClipModel> {
    return loadPretrained(CLIP, ClipModel, dir, opts, {
      options: ['lora', 'stateDict'],
      keep: /^(?!.*\.position_ids$)/,
      prepare: keepAdapters,
      async read(d) {
        const mode = checkMode(opts.lora);
        const raw = readConfig(d);
        const text = subConfig(raw, 'text_config', d),
          vision = subConfig(raw, 'vision_config', d);
        if (!text || !vision) throw new EmotorchError(`'${d}/config.json' is not a CLIPModel config (it needs text_config and vision_config)`, 'ERR_FORMAT');
        const { sd, lora } = unwrapLora(opts.stateDict ?? (await loadCheckpoint(d)), vision, mode, `'${d}'`);
        return { sd, lora, mode, config: { ...raw, text_config: text, vision_config: visionFromFile(vision) } };
      },
    });
  }

  /** @returns every output of the towers given (see {@link ClipOutputs}) */
  async forward(inputs: ClipInputs): Promise<ClipOutputs> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor)
      invalid('an inputs object ({ inputIds, attentionMask, pixelValues })', 'CLIP inputs', inputs);
    const { inputIds, attentionMask, pixelValues } = inputs;
    if (!inputIds && !pixelValues) invalid('inputIds, pixelValues or both', 'CLIP inputs', 'neither');
    if (inputIds) checkText(inputIds, attentionMask, this.config.text_config);
    else if (attentionMask) invalid('inputIds with it', 'attentionMask', 'no inputIds');
    if (pixelValues) checkPixels(pixelValues, this.config.vision_config, 'pixelValues');
    const o = await this.run({ input_ids: inputIds, attention_mask: attentionMask, pixel_values: pixelValues });
    return {
      logitsPerImage: o.logits_per_image ?? null,
      logitsPerText: o.logits_per_text ?? null,
      textEmbeds: o.text_embeds ?? null,
      imageEmbeds: o.image_embeds ?? null,
      textPoolerOutput: o.text_pooler_output ?? null,
      visionPoolerOutput: o.image_pooler_output ?? null,
      textLastHiddenState: o.text_last_hidden_state ?? null,
      visionLastHiddenState: o.image_last_hidden_state ?? null,
    };
  }
}
