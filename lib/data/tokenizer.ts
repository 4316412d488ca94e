/**
 * Tokenizers: HF `tokenizer.json` files run by the `tokenizers` npm package, which is the Rust
 * `tokenizers` library itself (the code behind Python's `tokenizers` and transformers' fast
 * tokenizers, with its native binary inside the package), behind an API that validates options
 * the emotorch way. Ids, tokens, decodes, added-token ids and truncation are the Python library's
 * by construction. Encoding and decoding run on the libuv thread pool: `encode`, `tokenize`,
 * `decode` and `encodeBatch` return Promises.
 *
 * The package aborts the whole process on a Rust panic, which a few malformed tokenizer.json
 * files cause (found by fuzzing 0.23.2); {@link checkLibraryLimits} refuses those before they
 * reach it. The file's own `truncation` and `padding` are not applied, as in transformers.
 *
 * One file per kind under ./tokenizers, each giving this class a tokenizer.json to run:
 * ./tokenizers/json (a HF tokenizer.json: BPE, byte-level or not, WordPiece, WordLevel, Unigram;
 * the library's limits), ./tokenizers/sentencepiece (a SentencePiece `.model`, as LLaMA's slow
 * tokenizer reads it with its HF config files), ./tokenizers/clip (CLIP's `vocab.json` +
 * `merges.txt`, or a tokenizer.json whose config names `CLIPTokenizer`, in transformers'
 * CLIPTokenizer pipeline); ./tokenizers/files reads a path's files and picks the kind.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AddedToken, Tokenizer as RustTokenizer } from 'tokenizers';
import { HubOptions, hubSnapshot, isRepoId } from '../io/hub';
import { EmotorchError, invalid, checkInt, checkOptionNames } from '../errors';
import { Tensor, tensor } from '../tensor';
import { SpecialName, TokenizerSpec, isObject, tokenContent } from './tokenizers/common';
import { libraryTokenizer, maxVocabId } from './tokenizers/json';
import { readTokenizerFiles, readTokenizerFilesSync, tokenizerSpec } from './tokenizers/files';
import { clipDecodeText, clipJSONSpec, isClipClass } from './tokenizers/clip';

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedTokenJSON {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

/** The parts of a `tokenizer.json` this class looks at; the rest is passed on as it is. */
export interface TokenizerJSON {
  model: { type?: string; vocab?: Record<string, number> | [string, number][]; [k: string]: unknown };
  added_tokens?: AddedTokenJSON[];
  normalizer?: unknown;
  pre_tokenizer?: unknown;
  post_processor?: unknown;
  decoder?: unknown;
  [k: string]: unknown;
}

/** A special token in `tokenizer_config.json`: a string, or the older `{ content, ... }` form. */
export type ConfigToken = string | { content: string; [k: string]: unknown } | null;

/** The fields of `tokenizer_config.json` that are used (others are ignored). */
export interface TokenizerConfig {
  bos_token?: ConfigToken;
  eos_token?: ConfigToken;
  pad_token?: ConfigToken;
  unk_token?: ConfigToken;
  /**
   * Apply transformers' `clean_up_tokenization` (" ." → ".", " n't" → "n't", …) in decode. Default
   * false. A CLIP tokenizer ignores it (transformers 5 does for BPE tokenizers).
   */
  clean_up_tokenization_spaces?: boolean;
  /** The transformers class; `CLIPTokenizer` (or `CLIPTokenizerFast`, a LanguageBind subclass) builds CLIP's tokenizer. */
  tokenizer_class?: string;
  [k: string]: unknown;
}

/** Options of `Tokenizer.encode` and `Tokenizer.tokenize`. */
export interface EncodeOptions {
  /** Add the post-processor's special tokens (`<s>` … `</s>`, BOS, …). Default true (tokenize: false). */
  addSpecialTokens?: boolean;
}

/** Options of `Tokenizer.decode`. */
export interface DecodeOptions {
  /** Leave out special added tokens. Default false. */
  skipSpecialTokens?: boolean;
  /** Default: tokenizer_config.json's `clean_up_tokenization_spaces`, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

/** Options of `Tokenizer.addTokens`. */
export interface AddTokensOptions {
  /** Mark the tokens special (skipped by `decode({ skipSpecialTokens: true })`). Default false. */
  special?: boolean;
  /** Match the token against normalized text. Default: `!special`, as in HF. */
  normalized?: boolean;
  /** Absorb whitespace on the token's left. Default false. */
  lstrip?: boolean;
  /** Absorb whitespace on the token's right. Default false. */
  rstrip?: boolean;
  /** Match only whole words. Default false. */
  singleWord?: boolean;
}

/** How a batch is padded: not at all, to its longest row, or to `maxLength` (HF's `padding=`). */
export type Padding = false | 'longest' | 'max_length';

/** Options of `Tokenizer.encodeBatch` (HF tokenizer call arguments, camelCase). */
export interface EncodeBatchOptions {
  /** Add the special tokens to each text. Default true. */
  addSpecialTokens?: boolean;
  /** false (default): no padding; 'longest': to the longest in the batch; 'max_length': to `maxLength`. `true` means 'longest'. */
  padding?: Padding | true;
  /** Length for `padding: 'max_length'` and for `truncation`. */
  maxLength?: number;
  /** Cut texts longer than `maxLength` tokens (special tokens included and kept). Default false. */
  truncation?: boolean;
  /** Which end truncation cuts. Default 'right'. */
  truncationSide?: 'right' | 'left';
  /** Which end padding fills. Default 'right'. */
  padSide?: 'right' | 'left';
  /** Id to pad with. Default: the tokenizer's `padTokenId`. */
  padTokenId?: number;
  /** Return (B, T) int64 tensors instead of arrays. Default false. */
  returnTensors?: boolean;
}

/** What `Tokenizer.encodeBatch` returns: input ids and attention masks, as arrays or tensors. */
export interface BatchEncoding<T = number[][]> {
  inputIds: T;
  /** 1 where inputIds are real tokens, 0 where padded. */
  attentionMask: T;
}

type AddedFlags = { normalized: boolean; lstrip: boolean; rstrip: boolean };

/** transformers' `clean_up_tokenization`: these replacements, in this order. */
const CLEAN_UP: [string, string][] = [
  [' .', '.'],
  [' ?', '?'],
  [' !', '!'],
  [' ,', ','],
  [" ' ", "'"],
  [" n't", "n't"],
  [" 'm", "'m"],
  [" 's", "'s"],
  [" 've", "'ve"],
  [" 're", "'re"],
];

function checkBool(v: unknown, name: string, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') invalid('a boolean', name, v);
  return v;
}

function checkSide(v: unknown, name: string): 'right' | 'left' {
  if (v === undefined) return 'right';
  if (v !== 'right' && v !== 'left') invalid("'right' or 'left'", name, v);
  return v;
}

function checkOpts(v: unknown): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isObject(v)) invalid('an options object', 'options', v);
  return v;
}

/** The longest `padding: 'max_length'` target (2^24 tokens a row). */
const MAX_PAD = 2 ** 24;

/** A token id: the library's ids are u32 (a larger number would wrap around). */
function checkId(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) invalid('a token id (an integer in [0, 2^32))', name, v);
  return v;
}

/**
 * The longest text one encode call takes, in UTF-16 code units (8 Mi; for `encodeBatch`, all its
 * texts together). The `tokenizers` library keeps about 85 bytes per token and aborts the whole
 * process when an allocation fails (a 100 MB text needs about 8 GB), so a longer text is refused
 * with ERR_INVALID_ARG instead. 8 Mi characters are millions of tokens, past any model's context:
 * cut long documents before encoding them.
 */
export const MAX_ENCODE_CHARS = 8 * 1024 * 1024;

function checkText(text: unknown, name: string): string {
  if (typeof text !== 'string') invalid('a string', name, text);
  if (text.length > MAX_ENCODE_CHARS)
    invalid(`a text of at most ${MAX_ENCODE_CHARS} characters (MAX_ENCODE_CHARS)`, name, `a text of ${text.length} characters`);
  return text;
}

function checkTexts(texts: unknown): string[] {
  if (!Array.isArray(texts)) invalid('an array of strings', 'texts', texts);
  let total = 0;
  texts.forEach((t, i) => {
    total += checkText(t, `texts[${i}]`).length;
  });
  if (total > MAX_ENCODE_CHARS)
    invalid(
      `texts of at most ${MAX_ENCODE_CHARS} characters in all (MAX_ENCODE_CHARS; encode long batches in parts)`,
      'texts',
      `${texts.length} texts of ${total} characters`,
    );
  return texts;
}

/** encodeBatch's options, checked, with their defaults. */
interface BatchOptions {
  /** The options object as given. */
  given: Record<string, unknown>;
  add: boolean;
  padding: Padding;
  truncation: boolean;
  maxLength: number | undefined;
  truncationSide: 'right' | 'left';
  padSide: 'right' | 'left';
  returnTensors: boolean;
  /** The id to pad with (0 without padding). */
  padId: number;
}

/**
 * Checks encodeBatch's options (in the order they are listed) and applies their defaults;
 * `padTokenId` gives the tokenizer's pad id, asked for only when padding needs it.
 */
function batchOptions(options: unknown, padTokenId: () => number | undefined): BatchOptions {
  const o = checkOpts(options);
  const add = checkBool(o.addSpecialTokens, 'addSpecialTokens', true);
  let padding = o.padding === undefined ? false : o.padding;
  if (padding === true) padding = 'longest';
  if (padding !== false && padding !== 'longest' && padding !== 'max_length') invalid("false, 'longest' or 'max_length'", 'padding', o.padding);
  const truncation = checkBool(o.truncation, 'truncation', false);
  const maxLength = o.maxLength === undefined ? undefined : checkInt(o.maxLength, 'maxLength', 1);
  if (maxLength === undefined && (padding === 'max_length' || truncation)) {
    invalid(`a maxLength (needed by ${truncation ? 'truncation' : "padding: 'max_length'"})`, 'maxLength', undefined);
  }
  if (padding === 'max_length' && maxLength! > MAX_PAD) invalid(`a maxLength of at most ${MAX_PAD} with padding: 'max_length'`, 'maxLength', maxLength);
  const truncationSide = checkSide(o.truncationSide, 'truncationSide');
  const padSide = checkSide(o.padSide, 'padSide');
  const returnTensors = checkBool(o.returnTensors, 'returnTensors', false);
  let padId = 0;
  if (padding !== false) {
    if (o.padTokenId !== undefined) padId = checkId(o.padTokenId, 'padTokenId');
    else if (padTokenId() !== undefined) padId = padTokenId()!;
    else invalid('a padTokenId (this tokenizer has no pad token; set tokenizer.padToken or pass padTokenId)', 'padTokenId', undefined);
  } else if (o.padTokenId !== undefined) {
    checkId(o.padTokenId, 'padTokenId');
  }
  return { given: o, add, padding: padding as Padding, truncation, maxLength, truncationSide, padSide, returnTensors, padId };
}

/** Rows of one length as (B, T) int64 tensors; `padding` (as given) is named when lengths differ. */
function batchTensors(inputIds: number[][], attentionMask: number[][], padding: unknown): BatchEncoding<Tensor> {
  const T = inputIds.length ? inputIds[0].length : 0;
  const lengths = inputIds.map((r) => r.length);
  if (lengths.some((l) => l !== T)) {
    invalid(`sequences of one length for returnTensors (got lengths ${JSON.stringify(lengths)}; use padding)`, 'padding', padding ?? false);
  }
  const B = inputIds.length;
  const ids64 = new BigInt64Array(B * T);
  const mask64 = new BigInt64Array(B * T);
  inputIds.forEach((r, b) =>
    r.forEach((v, t) => {
      ids64[b * T + t] = BigInt(v);
      mask64[b * T + t] = BigInt(attentionMask[b][t]);
    }),
  );
  return { inputIds: tensor(ids64, { shape: [B, T] }), attentionMask: tensor(mask64, { shape: [B, T] }) };
}

/**
 * A tokenizer from a HF `tokenizer.json` (and, optionally, its `tokenizer_config.json`), a
 * SentencePiece `tokenizer.model`, or CLIP's `vocab.json` + `merges.txt` (see {@link Tokenizer.fromFile}).
 *
 * @example
 * const tok = await et.data.Tokenizer.fromFile('mistral/tokenizer.json');
 * tok.addSpecialTokens(['<|continue|>', '<|correspond|>']);   // ids 32000, 32001
 * const ids = await tok.encode('Hello world');                // [1, ...] (BOS first)
 * await tok.decode(ids, { skipSpecialTokens: true });         // 'Hello world'
 */
export class Tokenizer {
  #rust: RustTokenizer;
  #config: TokenizerConfig;
  #source: string;
  /** The model vocabulary's size and largest id (toJSON writes every id up to the largest). */
  #vocab: { size: number; maxId: number };
  /** Added token content → how the library matches it (the last add's flags); see {@link Tokenizer.#checkAdded}. */
  #added = new Map<string, AddedFlags>();
  #special: Partial<Record<SpecialName, string>> = {};
  /** How many special tokens the post-processor adds to one text (for truncation), once known. */
  #numSpecial: Promise<number> | null = null;
  /** CLIP's decode: `</w>` → space, then stripped; the config's clean_up_tokenization_spaces ignored. */
  #clip: boolean;

  private constructor(rust: RustTokenizer, config: TokenizerConfig, source: string, maxId: number, added: AddedTokenJSON[], clip: boolean) {
    this.#rust = rust;
    this.#config = config;
    this.#source = source;
    this.#clip = clip;
    this.#vocab = { size: rust.getVocabSize(false), maxId };
    for (const t of added) this.#added.set(t.content, { normalized: t.normalized !== false, lstrip: t.lstrip === true, rstrip: t.rstrip === true });
    this.#checkAdded(this.#added, false, (why) => {
      throw new EmotorchError(`${source}: ${why}`, 'ERR_FORMAT');
    });
    for (const k of ['bos', 'eos', 'pad', 'unk'] as const) {
      const t = tokenContent(config[`${k}_token`]);
      if (t !== undefined) this.#special[k] = t;
    }
  }

  /** The library's tokenizer for a kind's spec (./tokenizers/json checks it first), in this class. */
  static #create(spec: TokenizerSpec): Tokenizer {
    const rust = libraryTokenizer(spec);
    const added = Array.isArray(spec.json.added_tokens) ? (spec.json.added_tokens as AddedTokenJSON[]) : [];
    return new Tokenizer(rust, spec.config as TokenizerConfig, spec.source, maxVocabId(spec.json.model as Record<string, unknown>), added, spec.clip);
  }

  /**
   * Refuses added tokens that make the library panic (abort the process) at encode: one whose
   * matched form (its content, normalized when `normalized`) is empty matches inside multi-byte
   * characters; a whitespace-only one with `lstrip`, when a token has `rstrip`, can fall in the
   * whitespace that token absorbed and end before it starts ("AddedVocabulary bad split").
   */
  #checkAdded(added: Map<string, AddedFlags>, quote: boolean, fail: (why: string) => never): void {
    const normalizer = this.#rust.getNormalizer();
    const rstrip = [...added.values()].some((f) => f.rstrip);
    let k = -1;
    for (const [content, f] of added) {
      k++;
      // (a file's tokens are named by their place, as messages never quote a file's content)
      const name = quote ? JSON.stringify(content) : `number ${k}`;
      if (content === '') continue; // the library ignores it
      const form = f.normalized && normalizer ? normalizer.normalizeString(content) : content;
      if (form === '') fail(`the added token ${name} normalizes to an empty string`);
      // (JS's \s lacks U+0085, which Rust's has)
      if (rstrip && f.lstrip && /^[\s\u0085]+$/u.test(form)) fail(`the added token ${name} is whitespace with lstrip while a token has rstrip`);
    }
  }

  /** Runs a library call, its errors (a model without an unknown token meeting one, …) as ERR_FORMAT. */
  async #call<T>(what: string, p: () => Promise<T>): Promise<T> {
    try {
      return await p();
    } catch (e) {
      throw new EmotorchError(`${this.#source}: cannot ${what} (${(e as Error).message})`, 'ERR_FORMAT');
    }
  }

  /**
   * Reads a tokenizer: a `tokenizer.json`, a SentencePiece `tokenizer.model` (any `*.model` file),
   * or CLIP's `vocab.json` (with `merges.txt` beside it), with the HF files beside it:
   * `tokenizer_config.json` when there is one (for `padTokenId`, `bosTokenId`, `eosTokenId`,
   * `clean_up_tokenization_spaces`, `tokenizer_class`), and for a `.model`, a `vocab.json` or a
   * CLIP tokenizer.json also `special_tokens_map.json` and `added_tokens.json`. A folder is read
   * through its `tokenizer.json`, else its `tokenizer.model`, else its `vocab.json`.
   *
   * A `.model` tokenizes as transformers' slow `LlamaTokenizer` (`use_fast=False`, legacy) does:
   * the text is split at the special and added tokens, and each piece between them is what
   * `sentencepiece`'s `encode` makes of it (see lib/data/tokenizers/sentencepiece.ts); `encode` adds the BOS
   * piece when `add_bos_token` (default true) and the EOS piece when `add_eos_token` (default
   * false). Added tokens come from `added_tokens.json`, `added_tokens_decoder` and the special
   * tokens of the config files, with the ids those files give.
   *
   * CLIP (a `vocab.json` + `merges.txt` folder, as OpenAI's and LanguageBind's CLIP folders ship,
   * or a tokenizer.json whose tokenizer_config.json names `CLIPTokenizer`, `CLIPTokenizerFast` or
   * a LanguageBind tokenizer) tokenizes as transformers 5's `CLIPTokenizer` does: lowercased, runs
   * of whitespace made one space, `<|startoftext|>` … `<|endoftext|>` around the text, the pad
   * token the config files name (`<|endoftext|>` by default); decode turns `</w>` into spaces and
   * strips the text (see lib/data/tokenizers/clip.ts). A `vocab.json` whose config names another class is
   * refused. LanguageBind's processor call is `encodeBatch(texts, { padding: 'max_length',
   * maxLength: 77, truncation: true })`.
   *
   * @param file the tokenizer.json, .model or vocab.json file, or a folder that holds one
   * @returns the tokenizer
   * @throws EmotorchError ERR_INVALID_ARG when file is not a string; ERR_IO when a file cannot be
   *   read or is not a regular file (a FIFO, a device), or a vocab.json has no merges.txt beside
   *   it; ERR_FORMAT (naming the file, never quoting it) when it, or a config file, is not valid
   *   JSON (or not a SentencePiece model), a merges.txt line is not a merge of two vocab.json
   *   tokens, or it is not a tokenizer the library supports.
   * @example
   * const tok = await et.data.Tokenizer.fromFile('models/roberta-base');
   * const same = await et.data.Tokenizer.fromFile('FacebookAI/roberta-base');   // a repo id: the hub cache
   * const llama = await et.data.Tokenizer.fromFile('vicuna-7b-v1.1');   // only tokenizer.model there
   * const clip = await et.data.Tokenizer.fromFile('LanguageBind_Video_FT');   // vocab.json + merges.txt
   * const { inputIds, attentionMask } = await clip.encodeBatch(['a dog barking'], { padding: 'max_length', maxLength: 77, truncation: true });
   */
  static async fromFile(file: string, opts: { revision?: string; hub?: Omit<HubOptions, 'revision'> } = {}): Promise<Tokenizer> {
    if (typeof file !== 'string' || file === '') invalid('a path to a tokenizer.json file or its folder', 'file', file);
    checkOptionNames(opts, ['revision', 'hub'], 'Tokenizer.fromFile');
    // a repo id ('FacebookAI/roberta-base') is its hub cache folder (downloading the tokenizer files when missing)
    if (!fs.existsSync(file) && isRepoId(file)) {
      file = await hubSnapshot(file, {
        ...opts.hub,
        revision: opts.revision,
        allowPatterns: opts.hub?.allowPatterns ?? ['*.json', '*.txt', '*.model', '*.jinja', '*.tiktoken'],
      });
    }
    return Tokenizer.#create(tokenizerSpec(await readTokenizerFiles(file)));
  }

  /**
   * {@link Tokenizer.fromFile}, synchronously.
   * @param file the tokenizer.json, .model or vocab.json file, or a folder that holds one
   * @throws EmotorchError as fromFile.
   * @example
   * const tok = et.data.Tokenizer.fromFileSync('models/mistral/tokenizer.json');
   */
  static fromFileSync(file: string): Tokenizer {
    if (typeof file !== 'string' || file === '') invalid('a path to a tokenizer.json file or its folder', 'file', file);
    return Tokenizer.#create(tokenizerSpec(readTokenizerFilesSync(file)));
  }

  /**
   * A tokenizer from an already parsed `tokenizer.json` object (copied; not modified). With a
   * config whose `tokenizer_class` names CLIP, the object's vocabulary, merges and added tokens
   * run in CLIPTokenizer's pipeline, as {@link Tokenizer.fromFile} does.
   *
   * @param obj the tokenizer.json content
   * @param config the tokenizer_config.json content, if any
   * @throws EmotorchError ERR_INVALID_ARG when obj or config is not an object; ERR_FORMAT when
   *   obj is not a tokenizer the library supports.
   * @example
   * const tok = et.data.Tokenizer.fromJSON(JSON.parse(fs.readFileSync('tokenizer.json', 'utf8')), { pad_token: '<pad>' });
   * const clip = et.data.Tokenizer.fromJSON(clipTok.toJSON(), { tokenizer_class: 'CLIPTokenizer' });   // decodes as CLIP again
   */
  static fromJSON(obj: TokenizerJSON | Record<string, unknown>, config: TokenizerConfig = {}): Tokenizer {
    if (!isObject(obj) || !isObject(obj.model)) invalid('a tokenizer.json object (with a "model" object)', 'tokenizer', obj);
    if (!isObject(config)) invalid('a tokenizer_config.json object', 'config', config);
    if (isClipClass(config.tokenizer_class)) {
      return Tokenizer.#create(clipJSONSpec(obj, 'tokenizer JSON', (f) => f, { config: structuredClone(config), specialMap: {}, added: {} }));
    }
    return Tokenizer.#create({ json: obj, text: JSON.stringify(obj), config: structuredClone(config), source: 'tokenizer JSON', clip: false });
  }

  /**
   * Text → token ids.
   * @param text the text
   * @param options `addSpecialTokens` (default true): add the post-processor's tokens (BOS, `<s>` … `</s>`)
   * @returns the ids
   * @throws EmotorchError ERR_INVALID_ARG (a rejection) when text is not a string, is longer than
   *   {@link MAX_ENCODE_CHARS}, or an option is malformed.
   * @example
   * await tok.encode('Hello world');                                // [0, 31414, 232, 2] with RoBERTa
   * await tok.encode('Hello world', { addSpecialTokens: false });   // [31414, 232]
   */
  async encode(text: string, options?: EncodeOptions): Promise<number[]> {
    checkText(text, 'text');
    const add = checkBool(checkOpts(options).addSpecialTokens, 'addSpecialTokens', true);
    return (await this.#call('encode the text', () => this.#rust.encode(text, null, { addSpecialTokens: add }))).getIds();
  }

  /**
   * Text → token strings (as the model sees them: `Ġworld`, `▁world`, `<0xE4>`).
   * @param text the text
   * @param options `addSpecialTokens` (default false)
   * @throws EmotorchError ERR_INVALID_ARG (a rejection) when text is not a string or is longer than {@link MAX_ENCODE_CHARS}.
   * @example
   * await tok.tokenize('Hello world');   // ['Hello', 'Ġworld']
   */
  async tokenize(text: string, options?: EncodeOptions): Promise<string[]> {
    checkText(text, 'text');
    const add = checkBool(checkOpts(options).addSpecialTokens, 'addSpecialTokens', false);
    return (await this.#call('encode the text', () => this.#rust.encode(text, null, { addSpecialTokens: add }))).getTokens();
  }

  /**
   * Token ids → text. Ids that name no token are dropped (as in the Python library). A CLIP
   * tokenizer then turns each `</w>` into a space and strips the text, as transformers'
   * CLIPTokenizer does (and applies clean-up only when `cleanUpTokenizationSpaces` is passed).
   * @param ids number[], or a typed array such as a tensor's `dataSync()` (BigInt64Array)
   * @param options `skipSpecialTokens` (default false), `cleanUpTokenizationSpaces`
   * @returns the text
   * @throws EmotorchError ERR_INVALID_ARG (a rejection) when ids are not non-negative integers.
   * @example
   * await tok.decode([1, 15043, 3186]);                              // '<s> Hello world'
   * await tok.decode([1, 15043, 3186], { skipSpecialTokens: true }); // 'Hello world'
   * await clip.decode([49406, 320, 1125, 49407]);                    // '<|startoftext|>a photo <|endoftext|>'
   */
  async decode(ids: ArrayLike<number | bigint>, options?: DecodeOptions): Promise<string> {
    const list = this.#checkIds(ids, 'ids');
    const o = checkOpts(options);
    const skip = checkBool(o.skipSpecialTokens, 'skipSpecialTokens', false);
    const cleanUp = checkBool(
      o.cleanUpTokenizationSpaces,
      'cleanUpTokenizationSpaces',
      this.#clip ? false : (this.#config.clean_up_tokenization_spaces ?? false),
    );
    // The library takes u32 ids (a larger one would wrap around); those name no token either.
    let text = await this.#call('decode the ids', () =>
      this.#rust.decode(
        list.filter((id) => id <= 0xffffffff),
        skip,
      ),
    );
    if (this.#clip) text = clipDecodeText(text);
    return cleanUp ? CLEAN_UP.reduce((s, [a, b]) => s.split(a).join(b), text) : text;
  }

  #checkIds(ids: unknown, name: string): number[] {
    const ok = Array.isArray(ids) || (ArrayBuffer.isView(ids) && !(ids instanceof DataView));
    if (!ok) invalid('an array of token ids', name, ids);
    const arr = ids as ArrayLike<unknown>;
    const out = new Array<number>(arr.length);
    for (let i = 0; i < arr.length; i++) {
      const v = arr[i];
      const n = typeof v === 'bigint' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) invalid('a non-negative integer token id', `${name}[${i}]`, v);
      out[i] = n;
    }
    return out;
  }

  /**
   * Encodes a batch, optionally truncated and padded, with attention masks, as the Python
   * library's `encode_batch` with `enable_truncation` / `enable_padding` does (truncation cuts the
   * text and keeps the special tokens).
   *
   * @param texts the texts
   * @param options `padding` (false | 'longest' | 'max_length'), `maxLength`, `truncation`,
   *   `truncationSide`, `padSide` ('right' | 'left'), `padTokenId` (default `this.padTokenId`),
   *   `addSpecialTokens` (default true), `returnTensors` (int64 (B, T) tensors)
   * @returns `{ inputIds, attentionMask }`: number[][] each, or two Tensors with `returnTensors`
   * @throws EmotorchError ERR_INVALID_ARG (a rejection) for a non-string text, a malformed
   *   option, padding without a pad token id, `'max_length'` or truncation without `maxLength`, a
   *   `maxLength` smaller than the special tokens, or `returnTensors` with unequal lengths.
   * @example
   * const { inputIds, attentionMask } = await tok.encodeBatch(['Hi', 'Hello there'], { padding: 'longest', returnTensors: true });
   */
  encodeBatch(texts: string[], options: EncodeBatchOptions & { returnTensors: true }): Promise<BatchEncoding<Tensor>>;
  encodeBatch(texts: string[], options?: EncodeBatchOptions & { returnTensors?: false }): Promise<BatchEncoding<number[][]>>;
  encodeBatch(texts: string[], options?: EncodeBatchOptions): Promise<BatchEncoding<number[][]> | BatchEncoding<Tensor>>;
  async encodeBatch(texts: string[], options?: EncodeBatchOptions): Promise<BatchEncoding<number[][]> | BatchEncoding<Tensor>> {
    checkTexts(texts);
    const o = batchOptions(options, () => this.padTokenId);
    const { add, padding, truncation, maxLength, padId } = o;
    const numSpecial = add ? await this.#specialCount() : 0;
    if (truncation && maxLength! < numSpecial) {
      invalid(`a maxLength of at least ${numSpecial} (the special tokens added to every text)`, 'maxLength', maxLength);
    }

    // The texts alone, cut to leave room for the special tokens, then the special tokens added.
    const rows = (await this.#call('encode the texts', () => this.#rust.encodeBatch(texts, { addSpecialTokens: false }))).map((e) => {
      if (truncation && e.getLength() > maxLength! - numSpecial) e.truncate(maxLength! - numSpecial, 0, o.truncationSide);
      return this.#rust.postProcess(e, null, add);
    });
    if (padding !== false) {
      const target = padding === 'max_length' ? maxLength! : Math.max(0, ...rows.map((e) => e.getLength()));
      const padToken = this.#rust.idToToken(padId) ?? '';
      for (const e of rows) e.pad(target, { direction: o.padSide, padId, padToken });
    }
    const inputIds = rows.map((e) => e.getIds());
    const attentionMask = rows.map((e) => e.getAttentionMask());
    if (!o.returnTensors) return { inputIds, attentionMask };
    return batchTensors(inputIds, attentionMask, o.given.padding);
  }

  /** How many ids the post-processor adds to a single text (Python's `num_special_tokens_to_add(False)`). */
  #specialCount(): Promise<number> {
    this.#numSpecial ??= this.#call('encode the text', () => this.#rust.encode('', null, { addSpecialTokens: false })).then((e) =>
      this.#rust.postProcess(e, null, true).getLength(),
    );
    return this.#numSpecial;
  }

  /**
   * Adds tokens after the vocabulary, with the Python library's `add_tokens`: a token already in
   * the vocabulary or already added keeps its id (its flags are updated); a new one gets the next
   * id; an empty string, or a token already added with the same flags, is skipped.
   *
   * @param tokens the token strings, in the order their ids are given
   * @param options `special` (default false), `normalized` (default `!special`), `lstrip`,
   *   `rstrip`, `singleWord`
   * @returns how many were added or updated (the Python library's return value)
   * @throws EmotorchError ERR_INVALID_ARG when tokens is not an array of strings.
   * @example
   * tok.addTokens(Array.from({ length: 10000 }, (_, i) => `<|unit${i}|>`));
   */
  addTokens(tokens: string[], options?: AddTokensOptions): number {
    if (!Array.isArray(tokens)) invalid('an array of strings', 'tokens', tokens);
    tokens.forEach((t, i) => {
      if (typeof t !== 'string') invalid('a string', `tokens[${i}]`, t);
    });
    const o = checkOpts(options);
    const special = checkBool(o.special, 'special', false);
    const flags = {
      normalized: checkBool(o.normalized, 'normalized', !special),
      leftStrip: checkBool(o.lstrip, 'lstrip', false),
      rightStrip: checkBool(o.rstrip, 'rstrip', false),
      singleWord: checkBool(o.singleWord, 'singleWord', false),
    };
    const next = new Map(this.#added);
    for (const t of tokens) next.set(t, { normalized: flags.normalized, lstrip: flags.leftStrip, rstrip: flags.rightStrip });
    this.#checkAdded(next, true, (why) => invalid(`tokens the library can match (${why})`, 'tokens', tokens));
    this.#added = next;
    return this.#rust.addAddedTokens(tokens.map((t) => new AddedToken(t, special, flags)));
  }

  /**
   * {@link Tokenizer.addTokens} with `special: true` (and so `normalized: false`).
   * @param tokens the token strings
   * @returns how many were added or updated
   * @throws EmotorchError ERR_INVALID_ARG when tokens is not an array of strings.
   * @example
   * tok.addSpecialTokens(['<|continue|>', '<|correspond|>']);
   */
  addSpecialTokens(tokens: string[]): number {
    return this.addTokens(tokens, { special: true });
  }

  /**
   * The id of a token (added tokens included), or undefined.
   * @throws EmotorchError ERR_INVALID_ARG when token is not a string.
   * @example
   * tok.tokenToId('<|correspond|>');   // 32001
   */
  tokenToId(token: string): number | undefined {
    if (typeof token !== 'string') invalid('a string', 'token', token);
    return this.#rust.tokenToId(token) ?? undefined;
  }

  /**
   * The token of an id, or undefined.
   * @throws EmotorchError ERR_INVALID_ARG when id is not a non-negative integer.
   * @example
   * tok.idToToken(32001);   // '<|correspond|>'
   */
  idToToken(id: number): string | undefined {
    checkInt(id, 'id', 0);
    return id > 0xffffffff ? undefined : (this.#rust.idToToken(id) ?? undefined);
  }

  /**
   * Number of distinct tokens, with or without the added ones (the Python library's
   * `get_vocab_size(with_added_tokens)`).
   * @throws EmotorchError ERR_INVALID_ARG when withAddedTokens is not a boolean.
   * @example
   * tok.getVocabSize(false);   // 32000 for Mistral
   */
  getVocabSize(withAddedTokens = true): number {
    return this.#rust.getVocabSize(checkBool(withAddedTokens, 'withAddedTokens', true));
  }

  /** Number of distinct tokens including added ones (`len(tokenizer)` in transformers). */
  get vocabSize(): number {
    return this.getVocabSize(true);
  }

  /**
   * tokenizer_config.json as it was read (a copy; `{}` without one): `tokenizer_class`,
   * `additional_special_tokens`, … — what decides how transformers' own class for it decodes.
   */
  get config(): TokenizerConfig {
    return structuredClone(this.#config);
  }

  /** The added tokens with their ids and flags, in id order. */
  get addedTokens(): AddedTokenJSON[] {
    return this.toJSON().added_tokens ?? [];
  }

  #specialId(k: SpecialName): number | undefined {
    const t = this.#special[k];
    return t === undefined ? undefined : this.tokenToId(t);
  }

  #setSpecial(k: SpecialName, v: string | undefined): void {
    if (v === undefined) {
      delete this.#special[k];
      return;
    }
    if (typeof v !== 'string' || this.tokenToId(v) === undefined) invalid('a token of the vocabulary (or undefined)', `${k}Token`, v);
    this.#special[k] = v;
  }

  /** The padding token (tokenizer_config.json's `pad_token`); settable to any token of the vocabulary. */
  get padToken(): string | undefined {
    return this.#special.pad;
  }
  /** Sets the pad token: a token of the vocabulary, or undefined to unset it. */
  set padToken(v: string | undefined) {
    this.#setSpecial('pad', v);
  }
  /** The beginning-of-sequence token (`bos_token`). */
  get bosToken(): string | undefined {
    return this.#special.bos;
  }
  /** Sets the bos token: a token of the vocabulary, or undefined to unset it. */
  set bosToken(v: string | undefined) {
    this.#setSpecial('bos', v);
  }
  /** The end-of-sequence token (`eos_token`). */
  get eosToken(): string | undefined {
    return this.#special.eos;
  }
  /** Sets the eos token: a token of the vocabulary, or undefined to unset it. */
  set eosToken(v: string | undefined) {
    this.#setSpecial('eos', v);
  }
  /** The unknown token (`unk_token`). */
  get unkToken(): string | undefined {
    return this.#special.unk;
  }

  /** Id of {@link padToken}, or undefined when there is none. */
  get padTokenId(): number | undefined {
    return this.#specialId('pad');
  }
  /** Id of {@link bosToken}, or undefined. */
  get bosTokenId(): number | undefined {
    return this.#specialId('bos');
  }
  /** Id of {@link eosToken}, or undefined. */
  get eosTokenId(): number | undefined {
    return this.#specialId('eos');
  }
  /** Id of {@link unkToken}, or undefined. */
  get unkTokenId(): number | undefined {
    return this.#specialId('unk');
  }

  /**
   * The tokenizer.json content as the library writes it, added tokens included.
   * @throws EmotorchError ERR_IO when the temporary file it goes through cannot be written;
   *   ERR_FORMAT for a vocabulary whose ids run far past its size (the library would write every
   *   id up to the largest).
   * @example
   * fs.writeFileSync('tokenizer.json', JSON.stringify(tok.toJSON()));
   */
  toJSON(): TokenizerJSON {
    const { size, maxId } = this.#vocab;
    if (maxId > 2 * size + 1_000_000) {
      throw new EmotorchError(`${this.#source}: cannot serialize a vocabulary of ${size} tokens with ids up to ${maxId}`, 'ERR_FORMAT');
    }
    // The package serializes only to a file.
    const tmp = path.join(os.tmpdir(), `emotorch-tokenizer-${crypto.randomUUID()}.json`);
    try {
      this.#rust.save(tmp, false);
      return JSON.parse(fs.readFileSync(tmp, 'utf8')) as TokenizerJSON;
    } catch (e) {
      throw new EmotorchError(`cannot serialize the tokenizer through '${tmp}': ${(e as Error).message}`, 'ERR_IO');
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
}
