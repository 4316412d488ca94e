/**
 * Datasets of the seed systems' file formats (SALMONN, SPECTRA, ECF 2.0, ms-swift), read and validated.
 * @module
 */
export { BaseDataset } from './base';
export type { Dataset, DatasetOptions, SkippedItem } from './base';
export { SpectraDataset } from './spectra';
export type { SpectraItem, SpectraOptions, SpectraTask } from './spectra';
export { SalmonnDataset, SALMONN_TEMPLATE, SALMONN_CHALLENGE_PROMPTS } from './salmonn';
export type { SalmonnItem, SalmonnOptions } from './salmonn';
export { EcfDataset, ECF_EMOTIONS } from './ecf';
export type { EcfItem, EcfOptions, EcfFeatureOptions, EcfPair, EcfConversation, EcfEmotion } from './ecf';
export { SwiftDataset, inferSwiftTask } from './swift';
export type { SwiftItem, SwiftOptions, SwiftTask } from './swift';
export { UsdmDataset } from './usdm';
