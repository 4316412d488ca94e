/** Assembled seed systems: encoders and heads composed into the originals' models.
 * @module
 */
export {
  Spectra, SpectraModel, SpectraAudioEncoder, resolveSpectraConfig, SPECTRA_LABEL_NUM, SPECTRA_RENAMES,
} from './spectra/model';
export type {
  SpectraConfig, SpectraConfigInput, SpectraAudioConfig, SpectraTextConfig, SpectraInputs, SpectraOutputs, SpectraPretrainedOptions,
} from './spectra/model';
export type { SpectraCollateOptions } from './spectra/data';
export { SpectraPretrainDataset, spectraPretrainCollate, buildSpectraPretrainCorpus, tokenizerMasking } from './spectra/pretrain';
export type { SpectraPretrainEntry, SpectraPretrainItem, SpectraPretrainBatch, SpectraPretrainCollateOptions, SpectraPretrainDatasetOptions, SpectraItemMlm, SpectraMlmChoices, SpectraWord, SpectraCorpusOptions } from './spectra/pretrain';
export { SpectraForPreTraining, drawSpectraMam } from './spectra/pretraining';
export type { SpectraMamClip, SpectraPretrainInputs, SpectraPretrainOutputs, SpectraPretrainingOptions } from './spectra/pretraining';
export { SPECTRA_BEST_METRIC, spectraMetrics, spectraParamGroups, finetuneSpectra, pretrainSpectra } from './spectra/recipe';
export type { SpectraFinetuneOptions, SpectraPretrainRecipeOptions } from './spectra/recipe';
export { Salmonn, SALMONN_DEFAULTS, SALMONN_IGNORABLE, SALMONN_YAML_KEYS } from './salmonn/model';
export type { SalmonnConfig, SalmonnBatch, SalmonnOutputs, SalmonnGenerateOptions, SalmonnPretrainedOptions } from './salmonn/model';
export type { SalmonnCollateItem } from './salmonn/data';
export { salmonnTrajectorySvg, salmonnJoinTurns, SALMONN_TURN_GAP } from './salmonn/data';
export { salmonnSchedule, salmonnIterationLr, salmonnTotalSteps, salmonnParamGroups } from './salmonn/recipe';
export type { SalmonnOptimsOptions } from './salmonn/recipe';
export { ConcatFusionClassifier } from './concat/model';
export type { ConcatFusionConfig, ConcatFusionConfigInput, ConcatFusionInputs, ConcatContextConfig } from './concat/model';
export { embedUtterances } from './concat/data';
export type { EncodedUtterances } from './concat/data';
export { selfCausePairs } from './concat/recipe';
export { Usdm, addUnitVocabulary } from './usdm/model';
export type { UsdmOptions } from './usdm/model';
export { usdmSftLabels, usdmSftExamples, USDM_TOKEN_IDS, USDM_AUDIO } from './usdm/data';
export type { UsdmTokenIds, UsdmTextCodec, UsdmAudioPair, UsdmSftExamplesOptions } from './usdm/data';
export { USDM_SFT_ARGS } from './usdm/recipe';
export { LanguageBind, LanguageBindClassifier, LANGUAGEBIND_MODALITIES, LANGUAGEBIND_ECF_LABELS } from './languagebind/model';
export type {
  LanguageBindModality, LanguageBindKey, LanguageBindOptions, LanguageBindInputs, LanguageBindOutputs, LanguageBindClassifierConfig, LanguageBindClassifierInputs,
} from './languagebind/model';
export { LANGUAGEBIND_SEMEVAL_ARGS, languageBindMetrics } from './languagebind/recipe';
export type { LanguageBindScores } from './languagebind/recipe';
export { ecfVideoFile, ecfAudioFile, languageBindLabel, languageBindCollate, languageBindCachedCollate, languageBindEmbeddings } from './languagebind/data';
export type { LanguageBindCollateOptions, LanguageBindEmbeddingsOptions } from './languagebind/data';
export { InternVL, INTERNVL_DEFAULTS, INTERNVL_IMAGE_TOKENS, resolveInternVLConfig } from './internvl/model';
export type { InternVLConfig, InternVLInputs, InternVLOutputs, InternVLCreateOptions } from './internvl/model';
export { internvlEncode, INTERNVL_TEMPLATES, INTERNVL2_SYSTEM } from './internvl/data';
export type { InternVLTemplate, InternVLConversation, InternVLEncoded } from './internvl/data';
export { m2seRecords, m2seMedia, m2sePrompt, m2seExamples, m2seCollate, m2seSalmonnItems, m2seAudio, M2SE_SYSTEM, M2SE_MAX_LENGTH, M2SE_MAX_RECORD_CHARS } from './m2se/data';
export type { M2seRecord, M2seMediaReport, M2seExample, M2seFormatOptions, M2seAudioReport, M2seSalmonnItem } from './m2se/data';
export { m2seStages, m2seInfer, m2seResponse, M2SE_TRAIN_ARGS, M2SE_LORA } from './m2se/recipe';
export type { M2seStage, M2seStagesOptions, M2seStageResult, M2seInferOptions } from './m2se/recipe';
export { m2seInternVLItems, m2seInternVLCollate, m2seInternVLPixels, internvlTemplateOf, INTERNVL_LORA_TARGETS } from './m2se/internvl';
export type { M2seInternVLItem, M2seInternVLMedium, M2seInternVLOptions } from './m2se/internvl';

// ---- deprecated aliases: names that moved out of et.systems (removed in the next release) ----
import { RobertaLayers as NnRobertaLayers } from '../nn/roberta';
import { ecfSubmission as metricsEcfSubmission, writeEcfSubmission as metricsWriteEcfSubmission } from '../metrics/ecac';
import type { EcfPairPrediction as MetricsEcfPairPrediction } from '../metrics/ecac';
/** @deprecated use `et.nn.RobertaLayers` (an nn block, not a system). */
export const RobertaLayers = NnRobertaLayers;
/** @deprecated use `et.nn.RobertaLayers`. */
export type RobertaLayers = NnRobertaLayers;
/** @deprecated use `et.metrics.ecfSubmission` (the submission file sits with the ECAC scores). */
export const ecfSubmission = metricsEcfSubmission;
/** @deprecated use `et.metrics.writeEcfSubmission`. */
export const writeEcfSubmission = metricsWriteEcfSubmission;
/** @deprecated use `et.metrics.EcfPairPrediction`. */
export type EcfPairPrediction = MetricsEcfPairPrediction;
