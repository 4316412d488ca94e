/**
 * SPECTRA (AlibabaResearch/DAMO-ConvAI spectra/): fine-tuning (`finetune/`: the classifier, its
 * batches and the paper's recipe) and pre-training (`pretrain/`: the four objectives, the corpus and
 * its batches, main.py's `--mode pretrain`). `et.systems.spectra`.
 * @module
 */
export { Spectra, SpectraModel, SpectraAudioEncoder, resolveSpectraConfig, SPECTRA_LABEL_NUM, SPECTRA_RENAMES } from './finetune/model';
export type {
  SpectraConfig,
  SpectraConfigInput,
  SpectraAudioConfig,
  SpectraTextConfig,
  SpectraInputs,
  SpectraOutputs,
  SpectraPretrainedOptions,
} from './finetune/model';
export type { SpectraCollateOptions } from './finetune/data';
export { SPECTRA_BEST_METRIC, spectraMetrics, spectraParamGroups, finetuneSpectra } from './finetune/recipe';
export type { SpectraFinetuneOptions } from './finetune/recipe';
export { SpectraPretrainDataset, spectraPretrainCollate, buildSpectraPretrainCorpus, tokenizerMasking } from './pretrain/data';
export type {
  SpectraPretrainEntry,
  SpectraPretrainItem,
  SpectraPretrainBatch,
  SpectraPretrainCollateOptions,
  SpectraPretrainDatasetOptions,
  SpectraItemMlm,
  SpectraMlmChoices,
  SpectraWord,
  SpectraCorpusOptions,
} from './pretrain/data';
export { SpectraForPreTraining, drawSpectraMam } from './pretrain/model';
export type { SpectraMamClip, SpectraPretrainInputs, SpectraPretrainOutputs, SpectraPretrainingOptions } from './pretrain/model';
export { pretrainSpectra } from './pretrain/recipe';
export type { SpectraPretrainRecipeOptions } from './pretrain/recipe';
