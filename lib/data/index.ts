/** Data: safe pickle reading with numpy arrays, datasets per seed format, USDM, batching.
 * @module
 */
export { readPickle, parsePickle } from '../io/pickle';
export type { PickleOptions } from '../io/pickle';
export { NdArray } from '../io/ndarray';
export type { NdData, NdDtype } from '../io/ndarray';
export * from './datasets';
export * as datasets from './datasets';
export * as usdm from './usdm';
export type { UsdmTokenizer, UsdmTurn, UsdmExample } from './usdm';
export { DataLoader, mulberry32 } from './loader';
export type { DataLoaderOptions, Sampler } from './loader';
export { padSequences, stackNumbers } from './collate';
export type { PadOptions, Padded } from './collate';
export { Tokenizer, MAX_ENCODE_CHARS } from './tokenizer';
export type {
  TokenizerJSON,
  TokenizerConfig,
  AddedTokenJSON,
  ConfigToken,
  EncodeOptions,
  DecodeOptions,
  AddTokensOptions,
  EncodeBatchOptions,
  BatchEncoding,
  Padding,
} from './tokenizer';
export { internvlEncode, INTERNVL_TEMPLATES, INTERNVL2_SYSTEM } from './internvl';
export type { InternVLTemplate, InternVLConversation, InternVLEncoded } from './internvl';
export { ChatRequestError } from './chat';
export type { ChatAdapter, ChatTurn, ChatGeneration, ChatAnswer } from './chat';
