/** Assembled seed systems: encoders and heads composed into the originals' models. */
export {
  Spectra, SpectraModel, SpectraAudioEncoder, resolveSpectraConfig, SPECTRA_LABEL_NUM, SPECTRA_RENAMES, SPECTRA_BEST_METRIC,
  spectraMetrics, spectraParamGroups, finetuneSpectra,
} from './spectra';
export type {
  SpectraConfig, SpectraConfigInput, SpectraAudioConfig, SpectraTextConfig, SpectraInputs, SpectraOutputs, SpectraPretrainedOptions,
  SpectraCollateOptions, SpectraFinetuneOptions,
} from './spectra';
export { Salmonn, SALMONN_DEFAULTS, SALMONN_IGNORABLE } from './salmonn';
export type { SalmonnConfig, SalmonnBatch, SalmonnOutputs, SalmonnGenerateOptions, SalmonnPretrainedOptions } from './salmonn';
export { ConcatFusionClassifier, embedUtterances, ecfSubmission, writeEcfSubmission, selfCausePairs } from './concat';
export type { ConcatFusionConfig, ConcatFusionInputs, ConcatContextConfig, EcfPairPrediction } from './concat';
export { Usdm, usdmSftLabels, usdmSftExamples, addUnitVocabulary, USDM_TOKEN_IDS, USDM_SFT_ARGS } from './usdm';
export type { UsdmTokenIds, UsdmTextCodec, UsdmOptions, UsdmAudioPair, UsdmSftExamplesOptions } from './usdm';
export { m2seRecords, m2seMedia, m2sePrompt, m2seExamples, m2seCollate, m2seStages, m2seInfer, m2seSalmonnItems, m2seAudio, M2SE_SYSTEM, M2SE_TRAIN_ARGS, M2SE_LORA, M2SE_MAX_LENGTH } from './m2se';
export type { M2seRecord, M2seMediaReport, M2seExample, M2seFormatOptions, M2seStage, M2seStagesOptions, M2seStageResult, M2seInferOptions, M2seAudioReport, M2seSalmonnItem } from './m2se';
import { RobertaLayers as NnRobertaLayers } from '../nn/roberta';
/** @deprecated use `et.nn.RobertaLayers` (an nn block, not a system); this alias goes in the next release. */
export const RobertaLayers = NnRobertaLayers;
/** @deprecated use `et.nn.RobertaLayers`. */
export type RobertaLayers = NnRobertaLayers;
