/**
 * The seed systems, each as its users name it: `et.systems.salmonn`, `et.systems.spectra`,
 * `et.systems.usdm`, `et.systems.semeval`, `et.systems.m2se` (encoders and heads composed into the
 * originals' models, their data and their recipes).
 * @module
 */
import * as salmonn from './salmonn';
import * as spectra from './spectra';
import * as usdm from './usdm';
import * as semeval from './semeval';
import * as m2se from './m2se';
import { RobertaLayers as NnRobertaLayers } from '../nn/roberta';
import { ecfSubmission as metricsEcfSubmission, writeEcfSubmission as metricsWriteEcfSubmission } from '../metrics/ecac';
import type { EcfPairPrediction as MetricsEcfPairPrediction } from '../metrics/ecac';

export { salmonn, spectra, usdm, semeval, m2se };

// ---- deprecated aliases: the flat names of the previous release, each the same object as its
// ---- grouped name (removed in the next release; test/systems/names.test.ts holds the list) ----
/** @deprecated use `et.systems.spectra.Spectra` (the flat names are removed in the next release). */
export const Spectra = spectra.Spectra;
/** @deprecated use `et.systems.spectra.Spectra` (the flat names are removed in the next release). */
export type Spectra = spectra.Spectra;
/** @deprecated use `et.systems.spectra.SpectraModel` (the flat names are removed in the next release). */
export const SpectraModel = spectra.SpectraModel;
/** @deprecated use `et.systems.spectra.SpectraModel` (the flat names are removed in the next release). */
export type SpectraModel = spectra.SpectraModel;
/** @deprecated use `et.systems.spectra.SpectraAudioEncoder` (the flat names are removed in the next release). */
export const SpectraAudioEncoder = spectra.SpectraAudioEncoder;
/** @deprecated use `et.systems.spectra.SpectraAudioEncoder` (the flat names are removed in the next release). */
export type SpectraAudioEncoder = spectra.SpectraAudioEncoder;
/** @deprecated use `et.systems.spectra.resolveSpectraConfig` (the flat names are removed in the next release). */
export const resolveSpectraConfig = spectra.resolveSpectraConfig;
/** @deprecated use `et.systems.spectra.SPECTRA_LABEL_NUM` (the flat names are removed in the next release). */
export const SPECTRA_LABEL_NUM = spectra.SPECTRA_LABEL_NUM;
/** @deprecated use `et.systems.spectra.SPECTRA_RENAMES` (the flat names are removed in the next release). */
export const SPECTRA_RENAMES = spectra.SPECTRA_RENAMES;
/** @deprecated use `et.systems.spectra.SpectraConfig` (the flat names are removed in the next release). */
export type SpectraConfig = spectra.SpectraConfig;
/** @deprecated use `et.systems.spectra.SpectraConfigInput` (the flat names are removed in the next release). */
export type SpectraConfigInput = spectra.SpectraConfigInput;
/** @deprecated use `et.systems.spectra.SpectraAudioConfig` (the flat names are removed in the next release). */
export type SpectraAudioConfig = spectra.SpectraAudioConfig;
/** @deprecated use `et.systems.spectra.SpectraTextConfig` (the flat names are removed in the next release). */
export type SpectraTextConfig = spectra.SpectraTextConfig;
/** @deprecated use `et.systems.spectra.SpectraInputs` (the flat names are removed in the next release). */
export type SpectraInputs = spectra.SpectraInputs;
/** @deprecated use `et.systems.spectra.SpectraOutputs` (the flat names are removed in the next release). */
export type SpectraOutputs = spectra.SpectraOutputs;
/** @deprecated use `et.systems.spectra.SpectraPretrainedOptions` (the flat names are removed in the next release). */
export type SpectraPretrainedOptions = spectra.SpectraPretrainedOptions;
/** @deprecated use `et.systems.spectra.SpectraCollateOptions` (the flat names are removed in the next release). */
export type SpectraCollateOptions = spectra.SpectraCollateOptions;
/** @deprecated use `et.systems.spectra.SpectraPretrainDataset` (the flat names are removed in the next release). */
export const SpectraPretrainDataset = spectra.SpectraPretrainDataset;
/** @deprecated use `et.systems.spectra.SpectraPretrainDataset` (the flat names are removed in the next release). */
export type SpectraPretrainDataset = spectra.SpectraPretrainDataset;
/** @deprecated use `et.systems.spectra.spectraPretrainCollate` (the flat names are removed in the next release). */
export const spectraPretrainCollate = spectra.spectraPretrainCollate;
/** @deprecated use `et.systems.spectra.buildSpectraPretrainCorpus` (the flat names are removed in the next release). */
export const buildSpectraPretrainCorpus = spectra.buildSpectraPretrainCorpus;
/** @deprecated use `et.systems.spectra.tokenizerMasking` (the flat names are removed in the next release). */
export const tokenizerMasking = spectra.tokenizerMasking;
/** @deprecated use `et.systems.spectra.SpectraPretrainEntry` (the flat names are removed in the next release). */
export type SpectraPretrainEntry = spectra.SpectraPretrainEntry;
/** @deprecated use `et.systems.spectra.SpectraPretrainItem` (the flat names are removed in the next release). */
export type SpectraPretrainItem = spectra.SpectraPretrainItem;
/** @deprecated use `et.systems.spectra.SpectraPretrainBatch` (the flat names are removed in the next release). */
export type SpectraPretrainBatch = spectra.SpectraPretrainBatch;
/** @deprecated use `et.systems.spectra.SpectraPretrainCollateOptions` (the flat names are removed in the next release). */
export type SpectraPretrainCollateOptions = spectra.SpectraPretrainCollateOptions;
/** @deprecated use `et.systems.spectra.SpectraPretrainDatasetOptions` (the flat names are removed in the next release). */
export type SpectraPretrainDatasetOptions = spectra.SpectraPretrainDatasetOptions;
/** @deprecated use `et.systems.spectra.SpectraItemMlm` (the flat names are removed in the next release). */
export type SpectraItemMlm = spectra.SpectraItemMlm;
/** @deprecated use `et.systems.spectra.SpectraMlmChoices` (the flat names are removed in the next release). */
export type SpectraMlmChoices = spectra.SpectraMlmChoices;
/** @deprecated use `et.systems.spectra.SpectraWord` (the flat names are removed in the next release). */
export type SpectraWord = spectra.SpectraWord;
/** @deprecated use `et.systems.spectra.SpectraCorpusOptions` (the flat names are removed in the next release). */
export type SpectraCorpusOptions = spectra.SpectraCorpusOptions;
/** @deprecated use `et.systems.spectra.SpectraForPreTraining` (the flat names are removed in the next release). */
export const SpectraForPreTraining = spectra.SpectraForPreTraining;
/** @deprecated use `et.systems.spectra.SpectraForPreTraining` (the flat names are removed in the next release). */
export type SpectraForPreTraining = spectra.SpectraForPreTraining;
/** @deprecated use `et.systems.spectra.drawSpectraMam` (the flat names are removed in the next release). */
export const drawSpectraMam = spectra.drawSpectraMam;
/** @deprecated use `et.systems.spectra.SpectraMamClip` (the flat names are removed in the next release). */
export type SpectraMamClip = spectra.SpectraMamClip;
/** @deprecated use `et.systems.spectra.SpectraPretrainInputs` (the flat names are removed in the next release). */
export type SpectraPretrainInputs = spectra.SpectraPretrainInputs;
/** @deprecated use `et.systems.spectra.SpectraPretrainOutputs` (the flat names are removed in the next release). */
export type SpectraPretrainOutputs = spectra.SpectraPretrainOutputs;
/** @deprecated use `et.systems.spectra.SpectraPretrainingOptions` (the flat names are removed in the next release). */
export type SpectraPretrainingOptions = spectra.SpectraPretrainingOptions;
/** @deprecated use `et.systems.spectra.SPECTRA_BEST_METRIC` (the flat names are removed in the next release). */
export const SPECTRA_BEST_METRIC = spectra.SPECTRA_BEST_METRIC;
/** @deprecated use `et.systems.spectra.spectraMetrics` (the flat names are removed in the next release). */
export const spectraMetrics = spectra.spectraMetrics;
/** @deprecated use `et.systems.spectra.spectraParamGroups` (the flat names are removed in the next release). */
export const spectraParamGroups = spectra.spectraParamGroups;
/** @deprecated use `et.systems.spectra.finetuneSpectra` (the flat names are removed in the next release). */
export const finetuneSpectra = spectra.finetuneSpectra;
/** @deprecated use `et.systems.spectra.pretrainSpectra` (the flat names are removed in the next release). */
export const pretrainSpectra = spectra.pretrainSpectra;
/** @deprecated use `et.systems.spectra.SpectraFinetuneOptions` (the flat names are removed in the next release). */
export type SpectraFinetuneOptions = spectra.SpectraFinetuneOptions;
/** @deprecated use `et.systems.spectra.SpectraPretrainRecipeOptions` (the flat names are removed in the next release). */
export type SpectraPretrainRecipeOptions = spectra.SpectraPretrainRecipeOptions;
/** @deprecated use `et.systems.salmonn.Salmonn` (the flat names are removed in the next release). */
export const Salmonn = salmonn.Salmonn;
/** @deprecated use `et.systems.salmonn.Salmonn` (the flat names are removed in the next release). */
export type Salmonn = salmonn.Salmonn;
/** @deprecated use `et.systems.salmonn.SALMONN_DEFAULTS` (the flat names are removed in the next release). */
export const SALMONN_DEFAULTS = salmonn.SALMONN_DEFAULTS;
/** @deprecated use `et.systems.salmonn.SALMONN_IGNORABLE` (the flat names are removed in the next release). */
export const SALMONN_IGNORABLE = salmonn.SALMONN_IGNORABLE;
/** @deprecated use `et.systems.salmonn.SALMONN_YAML_KEYS` (the flat names are removed in the next release). */
export const SALMONN_YAML_KEYS = salmonn.SALMONN_YAML_KEYS;
/** @deprecated use `et.systems.salmonn.SalmonnConfig` (the flat names are removed in the next release). */
export type SalmonnConfig = salmonn.SalmonnConfig;
/** @deprecated use `et.systems.salmonn.SalmonnBatch` (the flat names are removed in the next release). */
export type SalmonnBatch = salmonn.SalmonnBatch;
/** @deprecated use `et.systems.salmonn.SalmonnOutputs` (the flat names are removed in the next release). */
export type SalmonnOutputs = salmonn.SalmonnOutputs;
/** @deprecated use `et.systems.salmonn.SalmonnGenerateOptions` (the flat names are removed in the next release). */
export type SalmonnGenerateOptions = salmonn.SalmonnGenerateOptions;
/** @deprecated use `et.systems.salmonn.SalmonnPretrainedOptions` (the flat names are removed in the next release). */
export type SalmonnPretrainedOptions = salmonn.SalmonnPretrainedOptions;
/** @deprecated use `et.systems.salmonn.SalmonnCollateItem` (the flat names are removed in the next release). */
export type SalmonnCollateItem = salmonn.SalmonnCollateItem;
/** @deprecated use `et.systems.salmonn.salmonnTrajectorySvg` (the flat names are removed in the next release). */
export const salmonnTrajectorySvg = salmonn.salmonnTrajectorySvg;
/** @deprecated use `et.systems.salmonn.salmonnJoinTurns` (the flat names are removed in the next release). */
export const salmonnJoinTurns = salmonn.salmonnJoinTurns;
/** @deprecated use `et.systems.salmonn.SALMONN_TURN_GAP` (the flat names are removed in the next release). */
export const SALMONN_TURN_GAP = salmonn.SALMONN_TURN_GAP;
/** @deprecated use `et.systems.salmonn.salmonnSchedule` (the flat names are removed in the next release). */
export const salmonnSchedule = salmonn.salmonnSchedule;
/** @deprecated use `et.systems.salmonn.salmonnIterationLr` (the flat names are removed in the next release). */
export const salmonnIterationLr = salmonn.salmonnIterationLr;
/** @deprecated use `et.systems.salmonn.salmonnTotalSteps` (the flat names are removed in the next release). */
export const salmonnTotalSteps = salmonn.salmonnTotalSteps;
/** @deprecated use `et.systems.salmonn.salmonnParamGroups` (the flat names are removed in the next release). */
export const salmonnParamGroups = salmonn.salmonnParamGroups;
/** @deprecated use `et.systems.salmonn.SalmonnOptimsOptions` (the flat names are removed in the next release). */
export type SalmonnOptimsOptions = salmonn.SalmonnOptimsOptions;
/** @deprecated use `et.systems.semeval.ConcatFusionClassifier` (the flat names are removed in the next release). */
export const ConcatFusionClassifier = semeval.ConcatFusionClassifier;
/** @deprecated use `et.systems.semeval.ConcatFusionClassifier` (the flat names are removed in the next release). */
export type ConcatFusionClassifier = semeval.ConcatFusionClassifier;
/** @deprecated use `et.systems.semeval.ConcatFusionConfig` (the flat names are removed in the next release). */
export type ConcatFusionConfig = semeval.ConcatFusionConfig;
/** @deprecated use `et.systems.semeval.ConcatFusionConfigInput` (the flat names are removed in the next release). */
export type ConcatFusionConfigInput = semeval.ConcatFusionConfigInput;
/** @deprecated use `et.systems.semeval.ConcatFusionInputs` (the flat names are removed in the next release). */
export type ConcatFusionInputs = semeval.ConcatFusionInputs;
/** @deprecated use `et.systems.semeval.ConcatContextConfig` (the flat names are removed in the next release). */
export type ConcatContextConfig = semeval.ConcatContextConfig;
/** @deprecated use `et.systems.semeval.embedUtterances` (the flat names are removed in the next release). */
export const embedUtterances = semeval.embedUtterances;
/** @deprecated use `et.systems.semeval.EncodedUtterances` (the flat names are removed in the next release). */
export type EncodedUtterances = semeval.EncodedUtterances;
/** @deprecated use `et.systems.semeval.selfCausePairs` (the flat names are removed in the next release). */
export const selfCausePairs = semeval.selfCausePairs;
/** @deprecated use `et.systems.usdm.Usdm` (the flat names are removed in the next release). */
export const Usdm = usdm.Usdm;
/** @deprecated use `et.systems.usdm.Usdm` (the flat names are removed in the next release). */
export type Usdm = usdm.Usdm;
/** @deprecated use `et.systems.usdm.addUnitVocabulary` (the flat names are removed in the next release). */
export const addUnitVocabulary = usdm.addUnitVocabulary;
/** @deprecated use `et.systems.usdm.UsdmOptions` (the flat names are removed in the next release). */
export type UsdmOptions = usdm.UsdmOptions;
/** @deprecated use `et.systems.usdm.usdmSftLabels` (the flat names are removed in the next release). */
export const usdmSftLabels = usdm.usdmSftLabels;
/** @deprecated use `et.systems.usdm.usdmSftExamples` (the flat names are removed in the next release). */
export const usdmSftExamples = usdm.usdmSftExamples;
/** @deprecated use `et.systems.usdm.USDM_TOKEN_IDS` (the flat names are removed in the next release). */
export const USDM_TOKEN_IDS = usdm.USDM_TOKEN_IDS;
/** @deprecated use `et.systems.usdm.USDM_AUDIO` (the flat names are removed in the next release). */
export const USDM_AUDIO = usdm.USDM_AUDIO;
/** @deprecated use `et.systems.usdm.UsdmTokenIds` (the flat names are removed in the next release). */
export type UsdmTokenIds = usdm.UsdmTokenIds;
/** @deprecated use `et.systems.usdm.UsdmTextCodec` (the flat names are removed in the next release). */
export type UsdmTextCodec = usdm.UsdmTextCodec;
/** @deprecated use `et.systems.usdm.UsdmAudioPair` (the flat names are removed in the next release). */
export type UsdmAudioPair = usdm.UsdmAudioPair;
/** @deprecated use `et.systems.usdm.UsdmSftExamplesOptions` (the flat names are removed in the next release). */
export type UsdmSftExamplesOptions = usdm.UsdmSftExamplesOptions;
/** @deprecated use `et.systems.usdm.USDM_SFT_ARGS` (the flat names are removed in the next release). */
export const USDM_SFT_ARGS = usdm.USDM_SFT_ARGS;
/** @deprecated use `et.systems.semeval.LanguageBind` (the flat names are removed in the next release). */
export const LanguageBind = semeval.LanguageBind;
/** @deprecated use `et.systems.semeval.LanguageBind` (the flat names are removed in the next release). */
export type LanguageBind = semeval.LanguageBind;
/** @deprecated use `et.systems.semeval.LanguageBindClassifier` (the flat names are removed in the next release). */
export const LanguageBindClassifier = semeval.LanguageBindClassifier;
/** @deprecated use `et.systems.semeval.LanguageBindClassifier` (the flat names are removed in the next release). */
export type LanguageBindClassifier = semeval.LanguageBindClassifier;
/** @deprecated use `et.systems.semeval.LANGUAGEBIND_MODALITIES` (the flat names are removed in the next release). */
export const LANGUAGEBIND_MODALITIES = semeval.LANGUAGEBIND_MODALITIES;
/** @deprecated use `et.systems.semeval.LANGUAGEBIND_ECF_LABELS` (the flat names are removed in the next release). */
export const LANGUAGEBIND_ECF_LABELS = semeval.LANGUAGEBIND_ECF_LABELS;
/** @deprecated use `et.systems.semeval.LanguageBindModality` (the flat names are removed in the next release). */
export type LanguageBindModality = semeval.LanguageBindModality;
/** @deprecated use `et.systems.semeval.LanguageBindKey` (the flat names are removed in the next release). */
export type LanguageBindKey = semeval.LanguageBindKey;
/** @deprecated use `et.systems.semeval.LanguageBindOptions` (the flat names are removed in the next release). */
export type LanguageBindOptions = semeval.LanguageBindOptions;
/** @deprecated use `et.systems.semeval.LanguageBindInputs` (the flat names are removed in the next release). */
export type LanguageBindInputs = semeval.LanguageBindInputs;
/** @deprecated use `et.systems.semeval.LanguageBindOutputs` (the flat names are removed in the next release). */
export type LanguageBindOutputs = semeval.LanguageBindOutputs;
/** @deprecated use `et.systems.semeval.LanguageBindClassifierConfig` (the flat names are removed in the next release). */
export type LanguageBindClassifierConfig = semeval.LanguageBindClassifierConfig;
/** @deprecated use `et.systems.semeval.LanguageBindClassifierInputs` (the flat names are removed in the next release). */
export type LanguageBindClassifierInputs = semeval.LanguageBindClassifierInputs;
/** @deprecated use `et.systems.semeval.LANGUAGEBIND_SEMEVAL_ARGS` (the flat names are removed in the next release). */
export const LANGUAGEBIND_SEMEVAL_ARGS = semeval.LANGUAGEBIND_SEMEVAL_ARGS;
/** @deprecated use `et.systems.semeval.languageBindMetrics` (the flat names are removed in the next release). */
export const languageBindMetrics = semeval.languageBindMetrics;
/** @deprecated use `et.systems.semeval.LanguageBindScores` (the flat names are removed in the next release). */
export type LanguageBindScores = semeval.LanguageBindScores;
/** @deprecated use `et.systems.semeval.ecfVideoFile` (the flat names are removed in the next release). */
export const ecfVideoFile = semeval.ecfVideoFile;
/** @deprecated use `et.systems.semeval.ecfAudioFile` (the flat names are removed in the next release). */
export const ecfAudioFile = semeval.ecfAudioFile;
/** @deprecated use `et.systems.semeval.languageBindLabel` (the flat names are removed in the next release). */
export const languageBindLabel = semeval.languageBindLabel;
/** @deprecated use `et.systems.semeval.languageBindCollate` (the flat names are removed in the next release). */
export const languageBindCollate = semeval.languageBindCollate;
/** @deprecated use `et.systems.semeval.languageBindCachedCollate` (the flat names are removed in the next release). */
export const languageBindCachedCollate = semeval.languageBindCachedCollate;
/** @deprecated use `et.systems.semeval.languageBindEmbeddings` (the flat names are removed in the next release). */
export const languageBindEmbeddings = semeval.languageBindEmbeddings;
/** @deprecated use `et.systems.semeval.LanguageBindCollateOptions` (the flat names are removed in the next release). */
export type LanguageBindCollateOptions = semeval.LanguageBindCollateOptions;
/** @deprecated use `et.systems.semeval.LanguageBindEmbeddingsOptions` (the flat names are removed in the next release). */
export type LanguageBindEmbeddingsOptions = semeval.LanguageBindEmbeddingsOptions;
/** @deprecated use `et.systems.m2se.InternVL` (the flat names are removed in the next release). */
export const InternVL = m2se.InternVL;
/** @deprecated use `et.systems.m2se.InternVL` (the flat names are removed in the next release). */
export type InternVL = m2se.InternVL;
/** @deprecated use `et.systems.m2se.INTERNVL_DEFAULTS` (the flat names are removed in the next release). */
export const INTERNVL_DEFAULTS = m2se.INTERNVL_DEFAULTS;
/** @deprecated use `et.systems.m2se.INTERNVL_IMAGE_TOKENS` (the flat names are removed in the next release). */
export const INTERNVL_IMAGE_TOKENS = m2se.INTERNVL_IMAGE_TOKENS;
/** @deprecated use `et.systems.m2se.resolveInternVLConfig` (the flat names are removed in the next release). */
export const resolveInternVLConfig = m2se.resolveInternVLConfig;
/** @deprecated use `et.systems.m2se.InternVLConfig` (the flat names are removed in the next release). */
export type InternVLConfig = m2se.InternVLConfig;
/** @deprecated use `et.systems.m2se.InternVLInputs` (the flat names are removed in the next release). */
export type InternVLInputs = m2se.InternVLInputs;
/** @deprecated use `et.systems.m2se.InternVLOutputs` (the flat names are removed in the next release). */
export type InternVLOutputs = m2se.InternVLOutputs;
/** @deprecated use `et.systems.m2se.InternVLCreateOptions` (the flat names are removed in the next release). */
export type InternVLCreateOptions = m2se.InternVLCreateOptions;
/** @deprecated use `et.systems.m2se.internvlEncode` (the flat names are removed in the next release). */
export const internvlEncode = m2se.internvlEncode;
/** @deprecated use `et.systems.m2se.INTERNVL_TEMPLATES` (the flat names are removed in the next release). */
export const INTERNVL_TEMPLATES = m2se.INTERNVL_TEMPLATES;
/** @deprecated use `et.systems.m2se.INTERNVL2_SYSTEM` (the flat names are removed in the next release). */
export const INTERNVL2_SYSTEM = m2se.INTERNVL2_SYSTEM;
/** @deprecated use `et.systems.m2se.InternVLTemplate` (the flat names are removed in the next release). */
export type InternVLTemplate = m2se.InternVLTemplate;
/** @deprecated use `et.systems.m2se.InternVLConversation` (the flat names are removed in the next release). */
export type InternVLConversation = m2se.InternVLConversation;
/** @deprecated use `et.systems.m2se.InternVLEncoded` (the flat names are removed in the next release). */
export type InternVLEncoded = m2se.InternVLEncoded;
/** @deprecated use `et.systems.m2se.m2seRecords` (the flat names are removed in the next release). */
export const m2seRecords = m2se.m2seRecords;
/** @deprecated use `et.systems.m2se.m2seMedia` (the flat names are removed in the next release). */
export const m2seMedia = m2se.m2seMedia;
/** @deprecated use `et.systems.m2se.m2sePrompt` (the flat names are removed in the next release). */
export const m2sePrompt = m2se.m2sePrompt;
/** @deprecated use `et.systems.m2se.m2seExamples` (the flat names are removed in the next release). */
export const m2seExamples = m2se.m2seExamples;
/** @deprecated use `et.systems.m2se.m2seCollate` (the flat names are removed in the next release). */
export const m2seCollate = m2se.m2seCollate;
/** @deprecated use `et.systems.m2se.m2seSalmonnItems` (the flat names are removed in the next release). */
export const m2seSalmonnItems = m2se.m2seSalmonnItems;
/** @deprecated use `et.systems.m2se.m2seAudio` (the flat names are removed in the next release). */
export const m2seAudio = m2se.m2seAudio;
/** @deprecated use `et.systems.m2se.M2SE_SYSTEM` (the flat names are removed in the next release). */
export const M2SE_SYSTEM = m2se.M2SE_SYSTEM;
/** @deprecated use `et.systems.m2se.M2SE_MAX_LENGTH` (the flat names are removed in the next release). */
export const M2SE_MAX_LENGTH = m2se.M2SE_MAX_LENGTH;
/** @deprecated use `et.systems.m2se.M2SE_MAX_RECORD_CHARS` (the flat names are removed in the next release). */
export const M2SE_MAX_RECORD_CHARS = m2se.M2SE_MAX_RECORD_CHARS;
/** @deprecated use `et.systems.m2se.M2seRecord` (the flat names are removed in the next release). */
export type M2seRecord = m2se.M2seRecord;
/** @deprecated use `et.systems.m2se.M2seMediaReport` (the flat names are removed in the next release). */
export type M2seMediaReport = m2se.M2seMediaReport;
/** @deprecated use `et.systems.m2se.M2seExample` (the flat names are removed in the next release). */
export type M2seExample = m2se.M2seExample;
/** @deprecated use `et.systems.m2se.M2seFormatOptions` (the flat names are removed in the next release). */
export type M2seFormatOptions = m2se.M2seFormatOptions;
/** @deprecated use `et.systems.m2se.M2seAudioReport` (the flat names are removed in the next release). */
export type M2seAudioReport = m2se.M2seAudioReport;
/** @deprecated use `et.systems.m2se.M2seSalmonnItem` (the flat names are removed in the next release). */
export type M2seSalmonnItem = m2se.M2seSalmonnItem;
/** @deprecated use `et.systems.m2se.m2seStages` (the flat names are removed in the next release). */
export const m2seStages = m2se.m2seStages;
/** @deprecated use `et.systems.m2se.m2seInfer` (the flat names are removed in the next release). */
export const m2seInfer = m2se.m2seInfer;
/** @deprecated use `et.systems.m2se.m2seResponse` (the flat names are removed in the next release). */
export const m2seResponse = m2se.m2seResponse;
/** @deprecated use `et.systems.m2se.M2SE_TRAIN_ARGS` (the flat names are removed in the next release). */
export const M2SE_TRAIN_ARGS = m2se.M2SE_TRAIN_ARGS;
/** @deprecated use `et.systems.m2se.M2SE_LORA` (the flat names are removed in the next release). */
export const M2SE_LORA = m2se.M2SE_LORA;
/** @deprecated use `et.systems.m2se.M2seStage` (the flat names are removed in the next release). */
export type M2seStage = m2se.M2seStage;
/** @deprecated use `et.systems.m2se.M2seStagesOptions` (the flat names are removed in the next release). */
export type M2seStagesOptions = m2se.M2seStagesOptions;
/** @deprecated use `et.systems.m2se.M2seStageResult` (the flat names are removed in the next release). */
export type M2seStageResult = m2se.M2seStageResult;
/** @deprecated use `et.systems.m2se.M2seInferOptions` (the flat names are removed in the next release). */
export type M2seInferOptions = m2se.M2seInferOptions;
/** @deprecated use `et.systems.m2se.m2seInternVLItems` (the flat names are removed in the next release). */
export const m2seInternVLItems = m2se.m2seInternVLItems;
/** @deprecated use `et.systems.m2se.m2seInternVLCollate` (the flat names are removed in the next release). */
export const m2seInternVLCollate = m2se.m2seInternVLCollate;
/** @deprecated use `et.systems.m2se.m2seInternVLPixels` (the flat names are removed in the next release). */
export const m2seInternVLPixels = m2se.m2seInternVLPixels;
/** @deprecated use `et.systems.m2se.internvlTemplateOf` (the flat names are removed in the next release). */
export const internvlTemplateOf = m2se.internvlTemplateOf;
/** @deprecated use `et.systems.m2se.INTERNVL_LORA_TARGETS` (the flat names are removed in the next release). */
export const INTERNVL_LORA_TARGETS = m2se.INTERNVL_LORA_TARGETS;
/** @deprecated use `et.systems.m2se.M2seInternVLItem` (the flat names are removed in the next release). */
export type M2seInternVLItem = m2se.M2seInternVLItem;
/** @deprecated use `et.systems.m2se.M2seInternVLMedium` (the flat names are removed in the next release). */
export type M2seInternVLMedium = m2se.M2seInternVLMedium;
/** @deprecated use `et.systems.m2se.M2seInternVLOptions` (the flat names are removed in the next release). */
export type M2seInternVLOptions = m2se.M2seInternVLOptions;

// ---- deprecated aliases: names that moved out of et.systems (removed in the next release) ----
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
