/** Assembled seed systems: encoders and heads composed into the originals' models. */
export { Spectra, SpectraModel, SpectraAudioEncoder, RobertaLayers, resolveSpectraConfig, SPECTRA_LABEL_NUM, SPECTRA_RENAMES } from './spectra';
export type {
  SpectraConfig, SpectraConfigInput, SpectraAudioConfig, SpectraTextConfig, SpectraInputs, SpectraOutputs, SpectraPretrainedOptions,
  SpectraCollateOptions,
} from './spectra';
export { Salmonn, SALMONN_DEFAULTS, SALMONN_IGNORABLE } from './salmonn';
export type { SalmonnConfig, SalmonnBatch, SalmonnOutputs, SalmonnGenerateOptions } from './salmonn';
export { ConcatFusionClassifier, embedUtterances } from './concat';
export type { ConcatFusionConfig, ConcatFusionInputs } from './concat';
