/**
 * What the readers of each tokenizer kind (./json: a HF tokenizer.json; ./sentencepiece: a
 * `.model`; ./clip: CLIP's vocab.json + merges.txt or CLIP-class tokenizer.json) hand the
 * Tokenizer class, and the small helpers they share.
 */

/** A tokenizer as the `tokenizers` library will run it: its tokenizer.json, and the config the Tokenizer reads. */
export interface TokenizerSpec {
  /** The tokenizer.json object (checked against the library's limits before the library sees it). */
  json: Record<string, unknown>;
  /** The same, as the text the library parses. */
  text: string;
  /** tokenizer_config.json's fields, with the special tokens the kind resolved. */
  config: Record<string, unknown>;
  /** How messages name where it came from (a quoted path, or 'tokenizer JSON'). */
  source: string;
  /** CLIP's decode: `</w>` → space, then stripped; the config's clean_up_tokenization_spaces ignored. */
  clip: boolean;
}

/** The HF config files beside a tokenizer, parsed (each `{}` when absent). */
export interface ConfigFiles {
  /** tokenizer_config.json */
  config: Record<string, unknown>;
  /** special_tokens_map.json */
  specialMap: Record<string, unknown>;
  /** added_tokens.json ({ content: id }) */
  added: Record<string, unknown>;
}

/** The special tokens the Tokenizer keeps by name. */
export type SpecialName = 'bos' | 'eos' | 'pad' | 'unk';

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A config token's content: a string, or the older `{ content, ... }` form (else undefined). */
export function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}
