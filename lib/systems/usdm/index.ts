/**
 * USDM (unit-based spoken dialogue model): a LLaMA over text and speech units; its supervised
 * fine-tuning examples and arguments. `et.systems.usdm`.
 * @module
 */
export { Usdm, UsdmSpeaker, addUnitVocabulary, USDM_MEL_MEAN, USDM_MEL_STD } from './model';
export type { UsdmOptions, UsdmReference, UsdmSpeakOptions, UsdmInferOptions, UsdmAnswer, UsdmStage } from './model';
export { usdmSftLabels, usdmSftExamples, USDM_TOKEN_IDS, USDM_AUDIO } from './data';
export type { UsdmTokenIds, UsdmTextCodec, UsdmAudioPair, UsdmSftExamplesOptions } from './data';
export { USDM_SFT_ARGS } from './recipe';
export { usdmChat } from './chat';
export type { UsdmChatOptions } from './chat';
