/**
 * M2SE (multimodal multi-task emotion and sentiment): SALMONN and InternVL2 fine-tuned in ms-swift's
 * stages; its records, prompts and batches, and the stages' recipe and inference. InternVL2 itself
 * is `et.nn.InternVL` (and its prompt template `et.data.internvlEncode`), re-exported here.
 * `et.systems.m2se`.
 * @module
 */
export {
  m2seRecords,
  m2seMedia,
  m2sePrompt,
  m2seExamples,
  m2seCollate,
  m2seSalmonnItems,
  m2seAudio,
  M2SE_SYSTEM,
  M2SE_MAX_LENGTH,
  M2SE_MAX_RECORD_CHARS,
} from './data';
export type { M2seRecord, M2seMediaReport, M2seExample, M2seFormatOptions, M2seAudioReport, M2seSalmonnItem } from './data';
export { m2seStages, m2seInfer, m2seResponse, M2SE_TRAIN_ARGS, M2SE_LORA } from './recipe';
export type { M2seStage, M2seStagesOptions, M2seStageResult, M2seInferOptions } from './recipe';
export { m2seInternVLItems, m2seInternVLCollate, m2seInternVLPixels, internvlTemplateOf, INTERNVL_LORA_TARGETS } from './internvl';
export type { M2seInternVLItem, M2seInternVLMedium, M2seInternVLOptions } from './internvl';
export { InternVL, INTERNVL_DEFAULTS, INTERNVL_IMAGE_TOKENS, resolveInternVLConfig } from '../../nn/internvl';
export type { InternVLConfig, InternVLInputs, InternVLOutputs, InternVLCreateOptions } from '../../nn/internvl';
export { internvlEncode, INTERNVL_TEMPLATES, INTERNVL2_SYSTEM } from '../../data/internvl';
export type { InternVLTemplate, InternVLConversation, InternVLEncoded } from '../../data/internvl';
export { internvlChat, llmChat } from './chat';
