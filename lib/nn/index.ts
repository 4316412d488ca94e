export { Module, NativeModule } from './module';
export type { ModuleOptions, LoadReport, LoadStateDictOptions, StateDict } from './module';
export { Linear, Mlp, LayerNorm, Embedding } from './layers';
export type { LinearConfig, MlpConfig, Activation, LayerNormConfig, EmbeddingConfig } from './layers';
export { RobertaModel, RobertaLayers, ROBERTA_DEFAULTS } from './roberta';
export type { RobertaConfig, RobertaOptions, RobertaPretrainedOptions, RobertaInputs, RobertaOutputs } from './roberta';
export { WhisperEncoder, WHISPER_DEFAULTS, OPENAI_WHISPER_RENAMES } from './whisper';
export type { WhisperConfig } from './whisper';
export { readConfig, loadCheckpoint, renameKeys, stripPrefix, savePretrained, pretrainedConfig, configJson } from './pretrained';
export type { Rename, PretrainedOptions, SavePretrainedOptions } from './pretrained';
export { BeatsEncoder, BEATS_DEFAULTS } from './beats';
export type { BeatsConfig, BeatsOutputs } from './beats';
export { QFormer, QFORMER_DEFAULTS, LAVIS_QFORMER_RENAMES } from './qformer';
export type { QFormerConfig } from './qformer';
export type { LlamaPretrainedOptions } from './llama';
export { LlamaForCausalLM, DecodeBatch, LLAMA_DEFAULTS, LLAMA_MODEL_TYPES, normalizeRope, normalizeLlamaConfig, llamaConfigJson } from './llama';
export type { LlamaConfig, GenerationOptions, GenerateInputs, PrefixCacheStats } from './llama';
export { applyLora, mergeLora, unmergeLora, loadLoraAdapter, saveLoraAdapter } from './lora';
export type { LoraOptions, PeftLoraOptions } from './lora';
export { WavLMModel, WAVLM_DEFAULTS, WAVLM_RENAMES } from './wavlm';
export type { WavLMConfig, WavLMInputs, WavLMOutputs } from './wavlm';
export { WAV2VEC2_FAIRSEQ_RENAMES, WAV2VEC2_FAIRSEQ2_RENAMES, WAV2VEC2_XLSR2_1B_V2, wav2vec2Dialect, convertWav2Vec2StateDict } from './wav2vec2';
export type { Wav2Vec2Dialect, Wav2Vec2PretrainedOptions } from './wav2vec2';
export { Wav2Vec2Model, WAV2VEC2_DEFAULTS, WAV2VEC2_RENAMES } from './wav2vec2';
export type { Wav2Vec2Config, Wav2Vec2Inputs, Wav2Vec2Outputs } from './wav2vec2';
export { ClipModel, ClipVisionModel, ClipTextModel, CLIP_TEXT_DEFAULTS, CLIP_VISION_DEFAULTS } from './clip';
export type {
  ClipConfig,
  ClipResolvedConfig,
  ClipTextConfig,
  ClipVisionConfig,
  ClipPretrainedOptions,
  LoraMode,
  ClipInputs,
  ClipOutputs,
  ClipVisionInputs,
  ClipVisionOutputs,
  ClipTextInputs,
  ClipTextOutputs,
} from './clip';
export { InternVisionModel, InternVLProjector, INTERN_VISION_DEFAULTS, internVisionConfig } from './intern_vit';
export type {
  InternVisionConfig,
  InternVisionInputs,
  InternVisionOutputs,
  InternVLProjectorConfig,
  InternVLProjectorInputs,
  InternVLProjectorOutputs,
} from './intern_vit';
export { InternVL, INTERNVL_DEFAULTS, INTERNVL_IMAGE_TOKENS, resolveInternVLConfig } from './internvl';
export type { InternVLConfig, InternVLInputs, InternVLOutputs, InternVLCreateOptions } from './internvl';
export { LanguageBind, LANGUAGEBIND_MODALITIES } from './languagebind';
export type { LanguageBindModality, LanguageBindKey, LanguageBindOptions, LanguageBindInputs, LanguageBindOutputs } from './languagebind';

export { quantize, quantizeWeight, dequantizeWeight, linearLayers, checkQuantFormat, QUANT_FORMATS, QUANT_BYTES_PER_WEIGHT } from './quant';
export type { QuantFormat, QuantizedWeight, LinearLayerInfo } from './quant';
export { readBnbQuantization, bnbQuantizationConfig } from './bnb';
export type { BnbFormat, BnbQuantization, TensorInfo } from './bnb';
export { Voicebox, VOICEBOX_DEFAULTS, VOICEBOX_MAX_STEPS, VOICEBOX_MAX_FRAMES, unitsToFrames } from './voicebox';
export type { VoiceboxConfig, VoiceboxInputs, VoiceboxOutputs, VoiceboxGenerateOptions } from './voicebox';
export { BigVGAN, BIGVGAN_DEFAULTS } from './bigvgan';
export type { BigVGANConfig, BigVGANInputs, BigVGANOutputs } from './bigvgan';
