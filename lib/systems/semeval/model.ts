/**
 * The SemEval-2024 Task 3 classifiers. The seed classifier ({@link ConcatFusionClassifier}): per-utterance embeddings of any set of modalities,
 * concatenated, into one `Linear(Σd, 7, bias=false)` scoring the 7 ECF emotions; trained with
 * cross-entropy (items without an emotion are ignored). Optionally, dialogue context
 * ({@link ConcatContextConfig}). Embeddings come from the ECF dataset's embedding files
 * ({@link EcfDataset} `features`) or from {@link embedUtterances} (an emotorch encoder,
 * mean-pooled over the mask, cached to disk). The team's LanguageBind classifier
 * ({@link LanguageBindClassifier}, `VideoAudioTextClassif`): the LanguageBind embeddings of any
 * subset of video / audio / language, concatenated, into one `Linear(768·k, 7, bias=False)`.
 */
import { Module, ModuleOptions, checkModuleOptions, lockConfig } from '../../nn/module';
import { Linear, Embedding, LayerNorm } from '../../nn/layers';
import { ROBERTA_DEFAULTS, RobertaLayers, RobertaModel } from '../../nn/roberta';
import { applyLora, LoraOptions } from '../../nn/lora';
import { Tensor, cat, checkTensor, arange } from '../../tensor';
import { isFloating } from '../../dtype';
import { WavLMModel } from '../../nn/wavlm';
import { Wav2Vec2Model } from '../../nn/wav2vec2';
import { WhisperEncoder } from '../../nn/whisper';
import { whisperLogMel } from '../../audio/features';
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid, renameDeprecated } from '../../errors';
import { crossEntropy } from '../../functional';
import { groupEcfConversations } from '../../data/datasets/ecf';
import type { EcfItem } from '../../data/datasets/ecf';
import type { Device } from '../../device';
import { LanguageBind, LANGUAGEBIND_MODALITIES } from '../../nn/languagebind';
import type { LanguageBindKey } from '../../nn/languagebind';
import { ConcatCollateOptions, ConcatFusionInputs, LanguageBindClassifierInputs, concatCollate, concatCollateConversations } from './data';
export type { ConcatFusionInputs, LanguageBindClassifierInputs } from './data';

/**
 * Dialogue context (beyond the seed, which scores utterances one by one): the concatenated
 * embeddings are projected to `hidden_size`, given utterance-position and speaker embeddings,
 * and run through `num_layers` RoBERTa-style transformer layers over the conversation's
 * utterances before the classifier.
 */
export interface ConcatContextConfig {
  /** Default 128. */
  hidden_size?: number;
  /** Default 1. */
  num_layers?: number;
  /** Default 4. */
  num_attention_heads?: number;
  /** Speakers by order of first appearance in a conversation (later ones share the last id); 0 = none. Default 2. */
  num_speakers?: number;
  /** Longest conversation. Default 64. */
  max_utterances?: number;
  /** Dropout inside the layers. Default 0.1. */
  dropout?: number;
}

/**
 * A text encoder inside the classifier, fine-tuned end to end (beyond the seed, which trains on
 * fixed embeddings): token ids in, states mean-pooled over the mask, the pooled vector taking the
 * place of `modality` in the concatenation.
 */
export interface ConcatTextEncoderOptions {
  /** A RoBERTa encoder (e.g. `et.nn.RobertaModel.fromPretrained('roberta-base/')`); becomes the child `text_encoder`. */
  model: RobertaModel;
  /** The modality it computes; its size in `modalities` must be the encoder's hidden_size. Default 'text'. */
  modality?: string;
  /**
   * LoRA on the encoder: only its adapters (and the classifier's own layers) train, the encoder's
   * weights stay frozen. Default `{ r: 8, alpha: 16, dropout: 0.1, targetModules: ['query', 'value'] }`
   * (RoBERTa's attention projections). `null` fine-tunes every encoder weight.
   */
  lora?: LoraOptions | null;
}

/** An audio encoder the classifier can hold. */
export type ConcatAudioEncoderModel = WavLMModel | Wav2Vec2Model | WhisperEncoder;

/**
 * An audio encoder inside the classifier, fine-tuned end to end: 16 kHz waveforms in, states
 * mean-pooled over each clip's frames, the pooled vector taking the place of `modality` in the
 * concatenation. WavLM and wav2vec 2.0 take the waveform (normalized as the checkpoint's feature
 * extractor says); Whisper takes its log-mel of the padded batch, computed inside (no 30 s padding).
 */
export interface ConcatAudioEncoderOptions {
  /** A WavLMModel, Wav2Vec2Model or WhisperEncoder; becomes the child `audio_encoder`. */
  model: ConcatAudioEncoderModel;
  /** The modality it computes; its size in `modalities` must be the encoder's hidden size. Default 'audio'. */
  modality?: string;
  /**
   * LoRA on the encoder. Default `{ r: 8, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] }`
   * (the attention projections of all three). `null` fine-tunes every encoder weight.
   */
  lora?: LoraOptions | null;
}

type EncoderSetting = { modality: string; lora: Required<LoraOptions> | null } | null;

/** Integer class ids of shape [n] (a float tensor is refused, not truncated), as int64. */
function checkLabels(labels: unknown, n: number, shapeNote: string): Tensor {
  const l = checkTensor(labels, 'labels');
  if (isFloating(l.dtype) || l.dtype === 'bool') invalid('an integer tensor of class ids (int64)', 'labels', `a ${l.dtype} tensor`);
  if (l.shape.join() !== String(n)) invalid(`shape [${n}]${shapeNote}`, 'labels', `[${l.shape}]`);
  return l.long();
}

/** Checks an encoder option's modality, size and LoRA options. */
function encoderSetting(
  which: 'textEncoder' | 'audioEncoder',
  o: { modality?: string; lora?: LoraOptions | null },
  modalities: Record<string, number>,
  size: number,
  defModality: string,
  defTargets: string[],
): EncoderSetting {
  const modality = o.modality ?? defModality;
  if (typeof modality !== 'string' || !(modality in modalities))
    invalid(`one of the modalities (${Object.keys(modalities).join(', ')})`, `${which}.modality`, modality);
  if (modalities[modality] !== size) invalid(`the encoder's hidden_size (${size})`, `modalities.${modality}`, modalities[modality]);
  const l = o.lora === undefined ? { r: 8, alpha: 16, dropout: 0.1, targetModules: defTargets } : o.lora;
  if (l !== null && (typeof l !== 'object' || Array.isArray(l))) invalid('LoRA options { r, alpha, dropout?, targetModules } or null', `${which}.lora`, l);
  return { modality, lora: l && { r: l.r, alpha: l.alpha, dropout: l.dropout ?? 0, targetModules: l.targetModules } };
}

/** Mean of (B, T, d) states over the frames where mask (B, T) is nonzero; over all frames without a mask. */
function meanPool(states: Tensor, mask: Tensor | null): Tensor {
  if (!mask) return states.mean(1);
  const w = mask.to({ dtype: states.dtype }).unsqueeze(2);
  return states.mul(w).sum(1).div(w.sum(1).clamp(1));
}

/**
 * The classifier's settings. emotorch's own (no config file is read or written), so its names
 * are camelCase; the `context` block keeps the RoBERTa config's names.
 */
export interface ConcatFusionConfig {
  /** Embedding size per modality, in concatenation order (e.g. `{ text: 768, video: 768 }`). */
  modalities: Record<string, number>;
  /** Classes. Default 7 (the ECF emotions). */
  numLabels?: number;
  /** Default false, as the seed. */
  bias?: boolean;
  /** Dialogue context over each conversation's utterances; default none (the seed). */
  context?: ConcatContextConfig | null;
  /** A text encoder fine-tuned end to end (with LoRA by default) instead of fixed text embeddings; not with `context`. */
  textEncoder?: ConcatTextEncoderOptions | null;
  /** An audio encoder fine-tuned end to end (with LoRA by default) instead of fixed audio embeddings; not with `context`. */
  audioEncoder?: ConcatAudioEncoderOptions | null;
}

/** A ConcatFusionClassifier config as given: its fields, and the deprecated spelling of one. */
export type ConcatFusionConfigInput = ConcatFusionConfig & {
  /** @deprecated use `numLabels` (the config mirrors no file, so its names are camelCase); accepted until the next release. */
  num_labels?: number;
};

const CONFIG_RENAMES = { num_labels: 'numLabels' } as const;
const INPUT_RENAMES = { utteranceMask: 'utteranceAttentionMask' } as const;

/**
 * One linear layer over concatenated per-utterance embeddings (parameter `classifier.weight`).
 * Guide: [SemEval-2024 classifiers](../../../docs/semeval.md).
 * @example
 * const ds = await et.data.EcfDataset.fromFile('train.json', { features: { files: { text: 'text.safetensors', video: 'video.safetensors' } } });
 * const model = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 768, video: 768 } });
 * const { loss, logits } = await model.forward(et.systems.semeval.ConcatFusionClassifier.collate(items));
 */
export class ConcatFusionClassifier extends Module {
  declare readonly config: Required<Omit<ConcatFusionConfig, 'context' | 'textEncoder' | 'audioEncoder'>> & {
    context: Required<ConcatContextConfig> | null;
    /** The encoded modality and the LoRA applied (null: full fine-tuning), when there is a text encoder. */
    textEncoder: EncoderSetting;
    /** The same for the audio encoder. */
    audioEncoder: EncoderSetting;
  };
  readonly classifier: Linear;
  readonly projection?: Linear;
  readonly position_embeddings?: Embedding;
  readonly speaker_embeddings?: Embedding;
  readonly input_norm?: LayerNorm;
  readonly context?: RobertaLayers;
  readonly text_encoder?: RobertaModel;
  readonly audio_encoder?: ConcatAudioEncoderModel;
  /** The text encoder's layers LoRA wrapped (with `textEncoder`), names under `text_encoder.`. */
  readonly loraLayers: string[] = [];
  /** The audio encoder's layers LoRA wrapped (with `audioEncoder`), names under `audio_encoder.`. */
  readonly audioLoraLayers: string[] = [];
  private constructor(config: ConcatFusionClassifier['config'], opts: ModuleOptions, encoder?: RobertaModel, audio?: ConcatAudioEncoderModel) {
    super();
    lockConfig(this, 'ConcatFusionClassifier', config);
    if (encoder) {
      this.text_encoder = this.registerModule('text_encoder', encoder);
      if (config.textEncoder!.lora) this.loraLayers = applyLora(encoder, config.textEncoder!.lora);
    }
    if (audio) {
      this.audio_encoder = this.registerModule('audio_encoder', audio);
      if (config.audioEncoder!.lora) this.audioLoraLayers = applyLora(audio, config.audioEncoder!.lora);
    }
    const inSize = Object.values(config.modalities).reduce((a, b) => a + b, 0);
    const c = config.context;
    if (c) {
      this.projection = this.registerModule('projection', Linear.create({ in_features: inSize, out_features: c.hidden_size }, opts));
      this.position_embeddings = this.registerModule(
        'position_embeddings',
        Embedding.create({ num_embeddings: c.max_utterances, embedding_dim: c.hidden_size }, opts),
      );
      if (c.num_speakers > 0)
        this.speaker_embeddings = this.registerModule(
          'speaker_embeddings',
          Embedding.create({ num_embeddings: c.num_speakers, embedding_dim: c.hidden_size }, opts),
        );
      this.input_norm = this.registerModule('input_norm', LayerNorm.create({ normalized_shape: c.hidden_size, eps: 1e-12 }, opts));
      this.context = this.registerModule(
        'context',
        new RobertaLayers(
          {
            ...ROBERTA_DEFAULTS,
            hidden_size: c.hidden_size,
            num_attention_heads: c.num_attention_heads,
            intermediate_size: 4 * c.hidden_size,
            hidden_dropout_prob: c.dropout,
            attention_probs_dropout_prob: c.dropout,
          },
          c.num_layers,
          opts,
        ),
      );
    }
    this.classifier = this.registerModule(
      'classifier',
      Linear.create({ in_features: c ? c.hidden_size : inSize, out_features: config.numLabels, bias: config.bias }, opts),
    );
  }

  /**
   * @param input `num_labels` is a deprecated spelling of `numLabels` (both: ERR_INVALID_ARG)
   * @throws EmotorchError ERR_INVALID_ARG for a bad config.
   */
  static create(input: ConcatFusionConfigInput, opts: ModuleOptions = {}): ConcatFusionClassifier {
    opts = checkModuleOptions(opts, 'ConcatFusionClassifier.create');
    if (!input || typeof input !== 'object' || !input.modalities || typeof input.modalities !== 'object')
      invalid('{ modalities: { name: size }, numLabels?, bias? }', 'ConcatFusionClassifier config', input);
    const config: ConcatFusionConfig = renameDeprecated(input, CONFIG_RENAMES, 'ConcatFusionClassifier config');
    const mods = Object.entries(config.modalities);
    if (mods.length === 0) invalid('at least one modality', 'modalities', config.modalities);
    for (const [m, d] of mods) checkInt(d, `modalities.${m}`, 1);
    if (config.bias !== undefined && typeof config.bias !== 'boolean') invalid('a boolean', 'bias', config.bias);
    let context: Required<ConcatContextConfig> | null = null;
    if (config.context) {
      const c = config.context;
      if (typeof c !== 'object') invalid('a context config object', 'context', c);
      context = {
        hidden_size: checkInt(c.hidden_size ?? 128, 'context.hidden_size', 1),
        num_layers: checkInt(c.num_layers ?? 1, 'context.num_layers', 1),
        num_attention_heads: checkInt(c.num_attention_heads ?? 4, 'context.num_attention_heads', 1),
        num_speakers: checkInt(c.num_speakers ?? 2, 'context.num_speakers', 0),
        max_utterances: checkInt(c.max_utterances ?? 64, 'context.max_utterances', 1),
        dropout: checkNumber(c.dropout ?? 0.1, 'context.dropout', 0, 1),
      };
      if (context.hidden_size % context.num_attention_heads !== 0)
        invalid(`a multiple of context.num_attention_heads (${context.num_attention_heads})`, 'context.hidden_size', context.hidden_size);
    }
    let textEncoder: EncoderSetting = null;
    const te = config.textEncoder;
    if (te) {
      if (typeof te !== 'object' || !(te.model instanceof RobertaModel)) invalid('{ model: a RobertaModel, modality?, lora? }', 'textEncoder', te);
      if (context) invalid('no textEncoder with context (encode once, or use the seed classifier)', 'textEncoder', 'with context');
      textEncoder = encoderSetting('textEncoder', te, config.modalities, te.model.config.hidden_size, 'text', ['query', 'value']);
    }
    let audioEncoder: EncoderSetting = null;
    const ae = config.audioEncoder;
    if (ae) {
      const am = ae && typeof ae === 'object' ? ae.model : undefined;
      if (!(am instanceof WavLMModel || am instanceof Wav2Vec2Model || am instanceof WhisperEncoder))
        invalid('{ model: a WavLMModel, Wav2Vec2Model or WhisperEncoder, modality?, lora? }', 'audioEncoder', ae);
      if (context) invalid('no audioEncoder with context (encode once, or use the seed classifier)', 'audioEncoder', 'with context');
      const size = am instanceof WhisperEncoder ? am.config.d_model : am.config.hidden_size;
      audioEncoder = encoderSetting('audioEncoder', ae, config.modalities, size, 'audio', ['q_proj', 'v_proj']);
      if (textEncoder && textEncoder.modality === audioEncoder!.modality)
        invalid("a modality other than textEncoder's", 'audioEncoder.modality', audioEncoder!.modality);
      if (te && (am as unknown) === te.model) invalid('an encoder other than textEncoder.model', 'audioEncoder.model', 'the same module');
    }
    return new ConcatFusionClassifier(
      {
        modalities: { ...config.modalities },
        numLabels: checkInt(config.numLabels ?? 7, 'numLabels', 2),
        bias: config.bias ?? false,
        context,
        textEncoder,
        audioEncoder,
      },
      opts,
      te?.model,
      ae?.model,
    );
  }

  /** Size of the concatenated embedding. */
  get inputSize(): number {
    return this.classifier.config.in_features;
  }

  /**
   * @returns `{ logits }` (batch, numLabels), and the mean cross-entropy `loss` over labelled
   *   items when `labels` are given
   * @throws EmotorchError ERR_INVALID_ARG for missing or unknown modalities, wrong sizes, both
   *   `features` and `embeddings`, both `utteranceAttentionMask` and its deprecated spelling
   *   `utteranceMask`, or labels that are not integer class ids.
   */
  async forward(given: ConcatFusionInputs): Promise<{ loss?: Tensor; logits: Tensor }> {
    if (!given || typeof given !== 'object' || given instanceof Tensor) invalid('{ features } or { embeddings }', 'ConcatFusionClassifier inputs', given);
    // (collateConversations' non-enumerable `utteranceMask` alias does not count as given)
    const inputs = renameDeprecated(given, INPUT_RENAMES, 'ConcatFusionClassifier inputs');
    if (inputs.features !== undefined && inputs.features !== null && inputs.embeddings !== undefined && inputs.embeddings !== null) {
      throw new EmotorchError('Expected either features or embeddings for ConcatFusionClassifier inputs but received both', 'ERR_INVALID_ARG');
    }
    if (inputs.embeddings !== undefined && inputs.embeddings !== null) {
      const e = inputs.embeddings;
      if (typeof e !== 'object' || e instanceof Tensor || Array.isArray(e)) invalid('an object { modality: (batch, d) tensor }', 'embeddings', e);
      if (this.config.context) invalid('features (conversations, utterances, Σd) with context (embeddings are for the model without it)', 'embeddings', e);
      // the modalities an encoder computes come from inputIds / inputValues, not from embeddings
      const encoded = [this.text_encoder && this.config.textEncoder!.modality, this.audio_encoder && this.config.audioEncoder!.modality];
      const known = Object.keys(this.config.modalities).filter((m) => !encoded.includes(m));
      for (const m of Object.keys(e)) if (!known.includes(m)) invalid(`a modality of the config without an encoder (${known.join(', ')})`, 'embeddings key', m);
    }
    if (this.config.context) return this.forwardContext(inputs);
    let x: Tensor;
    if (this.text_encoder || this.audio_encoder) {
      x = await this.encoded(inputs);
    } else if (inputs.features) {
      x = checkTensor(inputs.features, 'features');
    } else {
      const e = inputs.embeddings;
      if (!e || typeof e !== 'object') invalid('features (batch, Σd) or embeddings { modality: (batch, d) }', 'inputs', inputs);
      x = cat(
        Object.entries(this.config.modalities).map(([m, d]) => {
          const t = e[m];
          if (!t) invalid(`a tensor for modality '${m}'`, `embeddings.${m}`, t);
          if (checkTensor(t, `embeddings.${m}`).ndim !== 2 || t.shape[1] !== d) invalid(`a tensor (batch, ${d})`, `embeddings.${m}`, `[${t.shape}]`);
          return t;
        }),
        1,
      );
    }
    if (x.ndim !== 2 || x.shape[1] !== this.inputSize) invalid(`a tensor (batch, ${this.inputSize})`, 'features', `[${x.shape}]`);
    const logits = await this.classifier.forward(x);
    if (!inputs.labels) return { logits };
    return { loss: crossEntropy(logits, checkLabels(inputs.labels, x.shape[0], '')), logits };
  }

  /** With encoders: their pooled states and the other modalities, concatenated in the config's order. */
  private async encoded(inputs: ConcatFusionInputs): Promise<Tensor> {
    const pooledBy = new Map<string, Tensor>();
    if (this.text_encoder) pooledBy.set(this.config.textEncoder!.modality, await this.pooledText(inputs));
    if (this.audio_encoder) {
      const a = await this.pooledAudio(inputs);
      const t = [...pooledBy.values()][0];
      if (t && t.shape[0] !== a.shape[0]) invalid(`${t.shape[0]} waveforms (one per utterance, as inputIds)`, 'inputValues', `[${inputs.inputValues!.shape}]`);
      pooledBy.set(this.config.audioEncoder!.modality, t ? a.to({ dtype: t.dtype }) : a);
    }
    const pooled = [...pooledBy.values()][0];
    const B = pooled.shape[0];
    const others = Object.entries(this.config.modalities).filter(([m]) => !pooledBy.has(m));
    const otherSize = others.reduce((a, [, d]) => a + d, 0);
    let offset = 0;
    const f = inputs.features;
    if (others.length && !inputs.embeddings) {
      if (!(f instanceof Tensor) || f.ndim !== 2 || f.shape[0] !== B || f.shape[1] !== otherSize)
        invalid(`a tensor (${B}, ${otherSize}) of the other modalities (${others.map(([m]) => m).join(', ')})`, 'features', f && `[${f.shape}]`);
    }
    return cat(
      Object.entries(this.config.modalities).map(([m, d]) => {
        const mine = pooledBy.get(m);
        if (mine) return mine;
        const e = inputs.embeddings?.[m];
        if (inputs.embeddings) {
          if (!e) invalid(`a tensor for modality '${m}'`, `embeddings.${m}`, e);
          if (checkTensor(e, `embeddings.${m}`).ndim !== 2 || e.shape[0] !== B || e.shape[1] !== d)
            invalid(`a tensor (${B}, ${d})`, `embeddings.${m}`, `[${e.shape}]`);
          return e.to({ dtype: pooled.dtype });
        }
        offset += d;
        return f!.slice(1, offset - d, offset).to({ dtype: pooled.dtype });
      }),
      1,
    );
  }

  /** The text encoder's states mean-pooled over the attention mask: (batch, hidden). */
  private async pooledText(inputs: ConcatFusionInputs): Promise<Tensor> {
    const ids = checkTensor(inputs.inputIds, 'inputIds');
    if (ids.ndim !== 2 || (ids.dtype !== 'int64' && ids.dtype !== 'int32'))
      invalid('an int64 tensor (batch, length) of token ids', 'inputIds', `${ids.dtype} [${ids.shape}]`);
    const mask = checkTensor(inputs.attentionMask, 'attentionMask');
    if (mask.shape.join() !== ids.shape.join()) invalid(`shape [${ids.shape}]`, 'attentionMask', `[${mask.shape}]`);
    const { lastHiddenState } = await this.text_encoder!.forward({ inputIds: ids, attentionMask: mask });
    return meanPool(lastHiddenState, mask);
  }

  /**
   * The audio encoder's states mean-pooled over each clip's frames: (batch, hidden). WavLM and
   * wav2vec 2.0 give their frame mask; for Whisper, encoder frame j (mel frames 2j, 2j + 1)
   * belongs to a clip when its mel frame 2j starts inside the clip's samples (hop 160).
   */
  private async pooledAudio(inputs: ConcatFusionInputs): Promise<Tensor> {
    const wave = checkTensor(inputs.inputValues, 'inputValues');
    if (wave.ndim !== 2 || !(wave.dtype.startsWith('float') || wave.dtype === 'bfloat16'))
      invalid('a float tensor (batch, samples) of waveforms', 'inputValues', `${wave.dtype} [${wave.shape}]`);
    const mask =
      inputs.audioAttentionMask === undefined || inputs.audioAttentionMask === null ? null : checkTensor(inputs.audioAttentionMask, 'audioAttentionMask');
    if (mask && mask.shape.join() !== wave.shape.join()) invalid(`shape [${wave.shape}]`, 'audioAttentionMask', `[${mask.shape}]`);
    const enc = this.audio_encoder!;
    if (enc instanceof WhisperEncoder) {
      if (wave.shape[1] <= 200) invalid('more than 200 samples', 'inputValues length', wave.shape[1]);
      const feats = await whisperLogMel(wave, { nMels: enc.config.num_mel_bins, padTo30s: false });
      const { lastHiddenState: h } = await enc.forward({ inputFeatures: feats.to({ dtype: wave.dtype }) });
      if (!mask) return h.mean(1);
      const lengths = mask.ne(0).sum(1).unsqueeze(1); // (B, 1) samples per clip
      const starts = arange(0, h.shape[1], 1, { dtype: 'int64', device: h.device })
        .mul(2 * 160)
        .unsqueeze(0); // (1, frames)
      return meanPool(h, starts.lt(lengths));
    }
    const out = await enc.forward({ inputValues: wave, ...(mask ? { attentionMask: mask } : {}) });
    return meanPool(out.lastHiddenState, out.attentionMask);
  }

  /** Conversations (C, U, Σd) → logits (C·U, numLabels), row c·U + u for utterance u of conversation c. */
  private async forwardContext(inputs: ConcatFusionInputs): Promise<{ loss?: Tensor; logits: Tensor }> {
    const c = this.config.context!;
    const x = checkTensor(inputs.features, 'features');
    if (x.ndim !== 3 || x.shape[2] !== this.projection!.config.in_features)
      invalid(`a tensor (conversations, utterances, ${this.projection!.config.in_features})`, 'features', `[${x.shape}]`);
    const [C, U] = x.shape;
    if (U > c.max_utterances) invalid(`at most context.max_utterances (${c.max_utterances}) utterances`, 'features', `[${x.shape}]`);
    const mask = checkTensor(inputs.utteranceAttentionMask, 'utteranceAttentionMask');
    if (mask.shape.join() !== `${C},${U}`) invalid(`shape [${C}, ${U}]`, 'utteranceAttentionMask', `[${mask.shape}]`);
    let h = (await this.projection!.forward(x)).add(
      await this.position_embeddings!.forward(arange(0, U, 1, { dtype: 'int64', device: x.device }).unsqueeze(0)),
    );
    if (this.speaker_embeddings) {
      const spk = checkTensor(inputs.speakerIds, 'speakerIds');
      if (spk.shape.join() !== `${C},${U}`) invalid(`shape [${C}, ${U}]`, 'speakerIds', `[${spk.shape}]`);
      h = h.add(await this.speaker_embeddings.forward(spk.long().clamp(0, c.num_speakers - 1)));
    }
    h = (await this.context!.forward({ hiddenStates: await this.input_norm!.forward(h), attentionMask: mask })).lastHiddenState;
    const logits = (await this.classifier.forward(h)).reshape([C * U, this.config.numLabels]);
    if (!inputs.labels) return { logits };
    return { loss: crossEntropy(logits, checkLabels(inputs.labels, C * U, ' (conversations × utterances)')), logits };
  }

  /**
   * Batches whole conversations for the context model: features (C, U, Σd) zero-padded,
   * `utteranceAttentionMask` (1 = utterance; also readable as the deprecated, non-enumerable
   * `utteranceMask`), speaker ids by order of first appearance, labels flattened to C·U with −100
   * at padding and for utterances without an emotion.
   * @throws EmotorchError ERR_INVALID_ARG for an empty batch or items without features.
   */
  static collateConversations(convs: EcfItem[][], opts: { device?: Device } = {}): ConcatFusionInputs {
    return concatCollateConversations(convs, opts);
  }

  /** Groups utterance items into conversations (by conversationId, in first-seen order, utterances in order). */
  static groupConversations(items: EcfItem[]): EcfItem[][] {
    return groupEcfConversations(items);
  }

  /**
   * Batches ECF items that carry `features` (the dataset's concatenated embeddings). For a
   * classifier with a `textEncoder`, give `tokenIds` (an item's token ids, e.g. from a tokenizer
   * run once over the dataset): the batch then has `inputIds` / `attentionMask` padded with
   * `padTokenId` (default 1, RoBERTa's), and `features` only when the items carry them (the other
   * modalities). For an `audioEncoder`, give `waveform` (an item's 16 kHz samples): the batch then
   * has `inputValues` zero-padded to the longest clip and `audioAttentionMask`.
   * @throws EmotorchError ERR_INVALID_ARG for an empty batch, items without features (or without
   *   token ids / waveforms), or bad options.
   * @example
   * const ids = new Map(items.map((it, i) => [it, encoded.inputIds[i]]));
   * const batch = et.systems.semeval.ConcatFusionClassifier.collate(xs, { tokenIds: (it) => ids.get(it), waveform: (it) => clips.get(it) });
   */
  static collate(items: EcfItem[], opts: ConcatCollateOptions = {}): ConcatFusionInputs {
    return concatCollate(items, opts);
  }
}

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

/**
 * `VideoAudioTextClassif`: LanguageBind embeddings of `modalities`, concatenated, into
 * `Linear(embedDim · k, numLabels, bias=False)` (parameter `classifier.weight`); cross-entropy when
 * labels are given. With frozen towers, cache the embeddings once ({@link languageBindEmbeddings})
 * and train on `features`; with LoRA on the towers (`lora: 'keep'`), feed the towers' inputs.
 * Guide: [SemEval-2024 classifiers](../../../docs/semeval.md).
 * @example
 * const model = et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video', 'audio', 'language'], binder: lb });
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
    this.classifier = this.registerModule(
      'classifier',
      Linear.create({ in_features: embedDim * modalities.length, out_features: numLabels, bias: false }, opts),
    );
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
    if (binder)
      for (const m of mods)
        if (m !== 'language' && !binder.modalities.includes(m))
          invalid(`a modality the binder has a tower for (${binder.modalities.join(', ')}, language)`, 'modalities', m);
    const fromBinder = binder ? binder.towers[binder.modalities[0]]!.config.projection_dim : 768;
    const embedDim = checkInt(config.embedDim ?? fromBinder, 'embedDim', 1);
    if (binder && embedDim !== fromBinder) invalid(`the binder's projection width ${fromBinder}`, 'embedDim', embedDim);
    return new LanguageBindClassifier(mods, embedDim, checkInt(config.numLabels ?? 7, 'numLabels', 2), binder, opts);
  }

  /**
   * @returns `{ logits }` (batch, numLabels) and `loss` (mean cross-entropy over labels ≠ -100) when labels are given
   * @throws EmotorchError for missing modality inputs, both features and tower inputs, or a wrong width
   */
  async forward(inputs: LanguageBindClassifierInputs): Promise<{ loss?: Tensor; logits: Tensor }> {
    if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor)
      invalid("an inputs object ({ features } or the towers' inputs, labels?)", 'LanguageBindClassifier inputs', inputs);
    const { features, labels, ...towerInputs } = inputs;
    const given = Object.entries(towerInputs)
      .filter(([, v]) => v !== undefined && v !== null)
      .map(([k]) => k);
    let x: Tensor;
    if (features) {
      if (given.length) invalid("either features or the towers' inputs", 'LanguageBindClassifier inputs', `features and ${given.join(', ')}`);
      checkTensor(features, 'features');
      const d = this.embedDim * this.modalities.length;
      if (features.ndim !== 2 || features.shape[1] !== d) invalid(`a tensor (batch, ${d})`, 'features', `[${features.shape}]`);
      x = features;
    } else {
      if (!this.binder) invalid('features (this classifier has no towers)', 'LanguageBindClassifier inputs', given.join(', ') || 'none');
      for (const m of this.modalities) {
        const has = m === 'language' ? !!towerInputs.inputIds : !!towerInputs[m];
        if (!has)
          invalid(`an input for every modality (${this.modalities.join(', ')})`, 'LanguageBindClassifier inputs', `no ${m === 'language' ? 'inputIds' : m}`);
      }
      const e = await this.binder!.forward(towerInputs);
      x = cat(
        this.modalities.map((m) => e[m]!),
        -1,
      );
    }
    const logits = await this.classifier.forward(x.to({ dtype: this.classifier.parameters()[0].dtype }));
    if (!labels) return { logits };
    checkTensor(labels, 'labels');
    if (labels.ndim !== 1 || labels.shape[0] !== logits.shape[0] || (labels.dtype !== 'int64' && labels.dtype !== 'int32'))
      invalid(`int64 class ids of shape [${logits.shape[0]}]`, 'labels', `${labels.dtype} [${labels.shape}]`);
    return { loss: crossEntropy(logits.to({ dtype: 'float32' }), labels.to({ dtype: 'int64' })), logits };
  }
}
