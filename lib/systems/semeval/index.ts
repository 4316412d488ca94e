/**
 * The SemEval-2024 Task 3 classifiers of ECF 2.0: the concat-fusion classifier (the seed) and the
 * team's LanguageBind linear classifier, their batches and recipes. LanguageBind's towers
 * themselves are `et.nn.LanguageBind` (re-exported here). `et.systems.semeval`.
 * @module
 */
export { ConcatFusionClassifier, LanguageBindClassifier } from './model';
export type {
  ConcatFusionConfig,
  ConcatFusionConfigInput,
  ConcatFusionInputs,
  ConcatContextConfig,
  LanguageBindClassifierConfig,
  LanguageBindClassifierInputs,
} from './model';
export {
  embedUtterances,
  ecfVideoFile,
  ecfAudioFile,
  languageBindLabel,
  languageBindCollate,
  languageBindCachedCollate,
  languageBindEmbeddings,
  LANGUAGEBIND_ECF_LABELS,
} from './data';
export type { EncodedUtterances, LanguageBindCollateOptions, LanguageBindEmbeddingsOptions } from './data';
export { selfCausePairs, LANGUAGEBIND_SEMEVAL_ARGS, languageBindMetrics } from './recipe';
export type { LanguageBindScores } from './recipe';
export { LanguageBind, LANGUAGEBIND_MODALITIES } from '../../nn/languagebind';
export type { LanguageBindModality, LanguageBindKey, LanguageBindOptions, LanguageBindInputs, LanguageBindOutputs } from '../../nn/languagebind';
