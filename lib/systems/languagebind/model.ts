/**
 * LanguageBind (PKU-YuanGroup) as its binding wrapper runs it, and the SemEval-2024 Task 3 team's
 * classifier on top (`VideoAudioTextClassif`: the embeddings of any subset of video / audio /
 * language, concatenated, into one `Linear(768·k, 7, bias=False)`).
 */
import { Module, ModuleOptions, checkModuleOptions } from '../../nn/module';
import { ClipTextModel, ClipVisionModel } from '../../nn/clip';
import type { LoraMode } from '../../nn/clip';
import { Linear } from '../../nn/layers';
import { loadCheckpoint, pretrainedPath } from '../../nn/pretrained';
import type { HubOptions } from '../../io/hub';
import { Tensor, cat, checkTensor, tensor } from '../../tensor';
import { crossEntropy } from '../../functional';
import { EmotorchError, checkInt, checkOptionNames, invalid } from '../../errors';

/** The towers LanguageBind releases for its binding wrapper (`clip_type` keys). */
export const LANGUAGEBIND_MODALITIES = ['video', 'audio', 'image'] as const;
/** The LanguageBind towers: 'video', 'audio' and 'language'. */
export type LanguageBindModality = typeof LANGUAGEBIND_MODALITIES[number];
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
 * Guide: [SemEval-2024 classifiers](../../../docs/semeval.md).
 * @example
 * const lb = await et.systems.LanguageBind.fromPretrained({ video: 'LanguageBind_Video_FT/', audio: 'LanguageBind_Audio_FT/' });
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
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor) invalid('an inputs object ({ video, audio, image, inputIds, attentionMask })', 'LanguageBind inputs', inputs);
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

/** The SemEval team's label order (their `label2id`): index → ECF emotion. */
export const LANGUAGEBIND_ECF_LABELS = ['surprise', 'fear', 'sadness', 'neutral', 'joy', 'anger', 'disgust'] as const;

/** Settings of {@link LanguageBindClassifier.create}. */
export interface LanguageBindClassifierConfig {
  /** The concatenation order (the team's: video, audio, language). */
  modalities: LanguageBindKey[];
  /** The towers; omit to train on cached embeddings only (`features`). */
  binder?: LanguageBind;
  /** Width of each modality's embedding (default: the binder's projection, or 768). */
  embedDim?: number;
  /** Default 7. */
  numLabels?: number;
}

/** Named inputs of `LanguageBindClassifier.forward`: the towers' inputs and the labels. */
export interface LanguageBindClassifierInputs extends LanguageBindInputs {
  /** (batch, embedDim · k): cached embeddings concatenated in `modalities` order, instead of the towers' inputs. */
  features?: Tensor | null;
  /** (batch) int64 class ids; -100 is ignored. */
  labels?: Tensor | null;
}

/**
 * `VideoAudioTextClassif`: LanguageBind embeddings of `modalities`, concatenated, into
 * `Linear(embedDim · k, numLabels, bias=False)` (parameter `classifier.weight`); cross-entropy when
 * labels are given. With frozen towers, cache the embeddings once ({@link languageBindEmbeddings})
 * and train on `features`; with LoRA on the towers (`lora: 'keep'`), feed the towers' inputs.
 * Guide: [SemEval-2024 classifiers](../../../docs/semeval.md).
 * @example
 * const model = et.systems.LanguageBindClassifier.create({ modalities: ['video', 'audio', 'language'], binder: lb });
 * const { loss, logits } = await model.forward({ video, audio, inputIds, attentionMask, labels });
 */
export class LanguageBindClassifier extends Module {
  readonly modalities: LanguageBindKey[];
  readonly embedDim: number;
  readonly binder: LanguageBind | null;
  readonly classifier: Linear;

  private constructor(modalities: LanguageBindKey[], embedDim: number, numLabels: number, binder: LanguageBind | null, opts: ModuleOptions) {
    super();
    this.modalities = modalities;
    this.embedDim = embedDim;
    this.binder = binder ? this.registerModule('binder', binder) : null;
    this.classifier = this.registerModule('classifier', Linear.create({ in_features: embedDim * modalities.length, out_features: numLabels, bias: false }, opts));
  }

  /** @throws EmotorchError ERR_INVALID_ARG for an unknown or repeated modality, or one the binder has no tower for */
  static create(config: LanguageBindClassifierConfig, opts: ModuleOptions = {}): LanguageBindClassifier {
    opts = checkModuleOptions(opts, 'LanguageBindClassifier.create');
    if (!config || typeof config !== 'object') invalid('{ modalities, binder?, embedDim?, numLabels? }', 'LanguageBindClassifier config', config);
    checkOptionNames(config, ['modalities', 'binder', 'embedDim', 'numLabels'], 'LanguageBindClassifier config');
    const mods = config.modalities;
    const known = [...LANGUAGEBIND_MODALITIES, 'language'];
    if (!Array.isArray(mods) || !mods.length || mods.some((m) => !known.includes(m)) || new Set(mods).size !== mods.length) {
      invalid(`a non-empty list of distinct modalities from ${known.join(', ')}`, 'modalities', mods);
    }
    const binder = config.binder ?? null;
    if (binder !== null && !(binder instanceof LanguageBind)) invalid('a LanguageBind', 'binder', binder);
    if (binder) for (const m of mods) if (m !== 'language' && !binder.modalities.includes(m)) invalid(`a modality the binder has a tower for (${binder.modalities.join(', ')}, language)`, 'modalities', m);
    const fromBinder = binder ? (binder.towers[binder.modalities[0]]!.config.projection_dim) : 768;
    const embedDim = checkInt(config.embedDim ?? fromBinder, 'embedDim', 1);
    if (binder && embedDim !== fromBinder) invalid(`the binder's projection width ${fromBinder}`, 'embedDim', embedDim);
    return new LanguageBindClassifier(mods, embedDim, checkInt(config.numLabels ?? 7, 'numLabels', 2), binder, opts);
  }

  /**
   * @returns `{ logits }` (batch, numLabels) and `loss` (mean cross-entropy over labels ≠ -100) when labels are given
   * @throws EmotorchError for missing modality inputs, both features and tower inputs, or a wrong width
   */
  async forward(inputs: LanguageBindClassifierInputs): Promise<{ loss?: Tensor; logits: Tensor }> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor) invalid('an inputs object ({ features } or the towers\' inputs, labels?)', 'LanguageBindClassifier inputs', inputs);
    const { features, labels, ...towerInputs } = inputs;
    const given = Object.entries(towerInputs).filter(([, v]) => v !== undefined && v !== null).map(([k]) => k);
    let x: Tensor;
    if (features) {
      if (given.length) invalid('either features or the towers\' inputs', 'LanguageBindClassifier inputs', `features and ${given.join(', ')}`);
      checkTensor(features, 'features');
      const d = this.embedDim * this.modalities.length;
      if (features.ndim !== 2 || features.shape[1] !== d) invalid(`a tensor (batch, ${d})`, 'features', `[${features.shape}]`);
      x = features;
    } else {
      if (!this.binder) invalid('features (this classifier has no towers)', 'LanguageBindClassifier inputs', given.join(', ') || 'none');
      for (const m of this.modalities) {
        const has = m === 'language' ? !!towerInputs.inputIds : !!towerInputs[m];
        if (!has) invalid(`an input for every modality (${this.modalities.join(', ')})`, 'LanguageBindClassifier inputs', `no ${m === 'language' ? 'inputIds' : m}`);
      }
      const e = await this.binder!.forward(towerInputs);
      x = cat(this.modalities.map((m) => e[m]!), -1);
    }
    const logits = await this.classifier.forward(x.to({ dtype: this.classifier.parameters()[0].dtype }));
    if (!labels) return { logits };
    checkTensor(labels, 'labels');
    if (labels.ndim !== 1 || labels.shape[0] !== logits.shape[0] || (labels.dtype !== 'int64' && labels.dtype !== 'int32')) invalid(`int64 class ids of shape [${logits.shape[0]}]`, 'labels', `${labels.dtype} [${labels.shape}]`);
    return { loss: crossEntropy(logits.to({ dtype: 'float32' }), labels.to({ dtype: 'int64' })), logits };
  }
}
