/**
 * LanguageBind (PKU-YuanGroup) as its binding wrapper runs it: one CLIP vision tower per modality
 * and a CLIP text tower, each embedding L2-normalised. The SemEval-2024 Task 3 team's classifier on
 * top is `et.systems.semeval.LanguageBindClassifier`.
 */
import { Module, ModuleOptions, checkModuleOptions } from './module';
import { ClipTextModel, ClipVisionModel } from './clip';
import type { LoraMode } from './clip';
import { loadCheckpoint, pretrainedPath } from './pretrained';
import type { HubOptions } from '../io/hub';
import { Tensor, checkTensor, tensor } from '../tensor';
import { EmotorchError, checkOptionNames, invalid } from '../errors';

/** The towers LanguageBind releases for its binding wrapper (`clip_type` keys). */
export const LANGUAGEBIND_MODALITIES = ['video', 'audio', 'image'] as const;
/** The LanguageBind towers: 'video', 'audio' and 'language'. */
export type LanguageBindModality = (typeof LANGUAGEBIND_MODALITIES)[number];
/** A modality of the wrapper's output: a tower's, or 'language'. */
export type LanguageBindKey = LanguageBindModality | 'language';

/** Options of {@link LanguageBind.fromPretrained}. */
export interface LanguageBindOptions extends ModuleOptions {
  /** Hub options when folders are given as repo ids (`LanguageBind/LanguageBind_Video_FT`): revision, cache folder, token, offline. */
  hub?: HubOptions;
  /** Multiply non-language embeddings by their tower's `logit_scale.exp()` (the wrapper's `use_temp`, default true). */
  useTemp?: boolean;
  /**
   * LoRA-tuned releases: 'merge' (default), 'keep' the adapters trainable (only they), or
   * 'convert_to_lora': the adapters plus what the original's `convert_to_lora` leaves trainable
   * (embeddings, pre / post layer norms, projection). See `ClipVisionModel.fromPretrained`.
   */
  lora?: LoraMode;
  /** The folder whose text tower is the language encoder; default: the last of `clipType` (as the original). */
  language?: string;
}

/** Named inputs of `LanguageBind.forward`: each tower's inputs, as its processor makes them. */
export interface LanguageBindInputs {
  /** (batch, 3, frames, 224, 224): `et.vision.processVideo` output, stacked. */
  video?: Tensor | null;
  /** (batch, 3, num_mel_bins, target_length): `et.audio.languageBindAudio` output, stacked. */
  audio?: Tensor | null;
  /** (batch, 3, 224, 224): `et.vision.processImage` output, stacked. */
  image?: Tensor | null;
  /** (batch, ≤ 77) CLIP token ids for the language tower. */
  inputIds?: Tensor | null;
  attentionMask?: Tensor | null;
}

/** (batch, projection_dim) per modality given: L2-normalised, × logit_scale.exp() except language. */
export type LanguageBindOutputs = Partial<Record<LanguageBindKey, Tensor>>;

/**
 * The wrapper `LanguageBind(clip_type={...})`: one vision tower per modality (its
 * `vision_model`, `visual_projection` and `logit_scale`) and the language tower of the last one.
 * Guide: [SemEval-2024 classifiers](../../docs/semeval.md).
 * @example
 * const lb = await et.nn.LanguageBind.fromPretrained({ video: 'LanguageBind_Video_FT/', audio: 'LanguageBind_Audio_FT/' });
 * const { video, audio, language } = await lb.forward({ video: frames, audio: fbank, inputIds, attentionMask });
 */
export class LanguageBind extends Module {
  /** The towers, in `clipType` order. */
  readonly modalities: LanguageBindModality[];
  readonly useTemp: boolean;
  readonly towers: Partial<Record<LanguageBindModality, ClipVisionModel>> = {};
  readonly language: ClipTextModel;

  private constructor(towers: Array<[LanguageBindModality, ClipVisionModel, number]>, language: ClipTextModel, useTemp: boolean) {
    super();
    this.modalities = towers.map(([m]) => m);
    this.useTemp = useTemp;
    for (const [m, t, scale] of towers) {
      this.towers[m] = this.registerModule(m, t);
      // the original wrapper holds each tower's logit_scale in a plain dict: used, never registered, so never trained
      this.scales.set(m, this.registerBuffer(`${m}_logit_scale`, tensor([scale]).reshape([])));
    }
    this.language = this.registerModule('language', language);
  }

  /** Each tower's `logit_scale` (a buffer), by modality (refreshed by `to`, which replaces own tensors). */
  private readonly scales = new Map<LanguageBindModality, Tensor>();

  async to(opts: ModuleOptions): Promise<this> {
    await super.to(opts);
    const own = new Map(this.ownNative().buffers);
    for (const m of this.modalities) this.scales.set(m, own.get(`${m}_logit_scale`)!);
    return this;
  }

  /** The tower's `logit_scale` (a scalar buffer, not trained, as the original's; the embeddings are multiplied by its exp()). */
  logitScale(m: LanguageBindModality): Tensor {
    const p = this.scales.get(m);
    if (!p) invalid(`one of ${this.modalities.join(', ')}`, 'modality', m);
    return p!;
  }

  /**
   * Loads the released folders (`LanguageBind_Video_FT`, `LanguageBind_Audio_FT`,
   * `LanguageBind_Image`, or the LoRA-tuned `LanguageBind_Video` / `LanguageBind_Audio`), each read once.
   * @param clipType modality → local folder, as the original's `clip_type` (which names hub repos)
   * @throws EmotorchError ERR_INVALID_ARG for an unknown modality; ERR_IO / ERR_FORMAT / ERR_STATE_DICT from the folders
   */
  static async fromPretrained(clipType: Partial<Record<LanguageBindModality, string>>, opts: LanguageBindOptions = {}): Promise<LanguageBind> {
    if (!clipType || typeof clipType !== 'object' || Array.isArray(clipType)) invalid('an object { video?, audio?, image? } of folders', 'clipType', clipType);
    opts = checkModuleOptions(opts, 'LanguageBind.fromPretrained', ['useTemp', 'lora', 'language', 'hub']);
    const entries = Object.entries(clipType) as Array<[LanguageBindModality, string]>;
    if (!entries.length) invalid('at least one of video, audio, image', 'clipType', clipType);
    for (const [m, dir] of entries) {
      if (!(LANGUAGEBIND_MODALITIES as readonly string[]).includes(m)) invalid(`one of ${LANGUAGEBIND_MODALITIES.join(', ')}`, 'clipType key', m);
      if (typeof dir !== 'string' || !dir) invalid('a folder path or a Hugging Face repo id', `clipType.${m}`, dir);
    }
    // repo ids become their hub cache folders
    for (const e of entries) e[1] = await pretrainedPath(e[1], { hub: opts.hub });
    if (opts.language !== undefined) opts = { ...opts, language: await pretrainedPath(opts.language, { hub: opts.hub }) };
    const useTemp = opts.useTemp ?? true;
    if (typeof useTemp !== 'boolean') invalid('a boolean', 'useTemp', useTemp);
    const towers: Array<[LanguageBindModality, ClipVisionModel, number]> = [];
    const langDir = opts.language ?? entries[entries.length - 1][1];
    let language: ClipTextModel | null = null;
    const load = { lora: opts.lora, device: opts.device, dtype: opts.dtype };
    for (const [m, dir] of entries) {
      const stateDict = await loadCheckpoint(dir);
      const scale = stateDict.get('logit_scale');
      if (!scale || scale.numel !== 1) throw new EmotorchError(`'${dir}' has no logit_scale: not a LanguageBind / CLIPModel checkpoint`, 'ERR_STATE_DICT');
      towers.push([m, await ClipVisionModel.fromPretrained(dir, { ...load, stateDict, withProjection: true }), scale.item()]);
      if (dir === langDir) language = await ClipTextModel.fromPretrained(dir, { ...load, stateDict, withProjection: true });
    }
    language ??= await ClipTextModel.fromPretrained(langDir, { ...load, withProjection: true });
    const lb = new LanguageBind(towers, language, useTemp);
    if (opts.device || opts.dtype) await lb.to({ device: opts.device, dtype: opts.dtype });
    return lb.eval();
  }

  /**
   * @returns each modality given → (batch, projection_dim), as the wrapper's forward
   * @throws EmotorchError for a modality this model has no tower for, or none given
   */
  async forward(inputs: LanguageBindInputs): Promise<LanguageBindOutputs> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor)
      invalid('an inputs object ({ video, audio, image, inputIds, attentionMask })', 'LanguageBind inputs', inputs);
    checkOptionNames(inputs, [...LANGUAGEBIND_MODALITIES, 'inputIds', 'attentionMask'], 'LanguageBind inputs');
    const out: LanguageBindOutputs = {};
    for (const m of LANGUAGEBIND_MODALITIES) {
      const x = inputs[m];
      if (x === undefined || x === null) continue;
      const tower = this.towers[m];
      if (!tower) invalid(`one of the loaded towers (${this.modalities.join(', ')})`, 'LanguageBind input', m);
      const e = (await tower!.forward({ pixelValues: checkTensor(x, m) })).imageEmbeds!;
      const n = e.div(e.norm(2, -1, true));
      out[m] = this.useTemp ? n.mul(this.logitScale(m).exp().to({ dtype: n.dtype })) : n;
    }
    if (inputs.inputIds) {
      const e = (await this.language.forward({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask ?? null })).textEmbeds!;
      out.language = e.div(e.norm(2, -1, true));
    }
    if (!Object.keys(out).length) invalid(`at least one of ${[...this.modalities, 'inputIds'].join(', ')}`, 'LanguageBind inputs', 'none');
    return out;
  }
}
