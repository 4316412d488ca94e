/**
 * Tokenizers: HF `tokenizer.json` files run in pure JavaScript by `@huggingface/tokenizers`
 * (models BPE, WordPiece, Unigram), behind an API that validates its options the emotorch way and
 * follows the Python `tokenizers` library (Rust) where the package differs from it:
 *
 * - added tokens: `addTokens` / `addSpecialTokens` assign ids as Rust's `AddedVocabulary` does
 *   (the package cannot add tokens), so USDM's tokens land at 32000, 32001, … on a 32000-token
 *   Mistral vocabulary;
 * - added tokens with `normalized: true` under a normalizer that changes them (Mistral's legacy
 *   `Prepend("▁")`) match and decode as in Rust (see `#alignNormalizedAddedTokens`);
 * - decode: no `clean_up_tokenization_spaces` unless `tokenizer_config.json` asks for it (the
 *   package defaults it on); ids outside the vocabulary are dropped (the package would emit the
 *   unk token); an empty list decodes to `''`;
 * - decoders: ByteLevel maps added tokens through the byte table as Rust does (the package copies
 *   them verbatim: `Ġthe` decoded to `Ġthe`, not ` the`); Metaspace drops every "▁" of the first
 *   token and honours prepend_scheme "never" (the package strips one leading space, always);
 *   ByteFallback gives one U+FFFD per byte of an invalid run and keeps U+FEFF;
 * - encodeBatch: truncation keeps the special tokens and cuts the text, as Rust's `encode_batch`
 *   with `enable_truncation` does; padding and attention masks as with `enable_padding`.
 *
 * Known differences left: an added token's `single_word` flag is ignored by the package (such a
 * token also matches inside words); for an added token with `lstrip`/`rstrip`, `tokenize` gives
 * the token (`<mask>`) where Python's `Encoding.tokens` gives the matched text with the spaces it
 * absorbed (` <mask>`) — the ids are the same.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HFTokenizer, ByteFallbackDecoder, ByteLevelDecoder, MetaspaceDecoder, SequenceDecoder } from '@huggingface/tokenizers';
import { EmotorchError, invalid, checkInt } from '../errors';
import { Tensor, tensor } from '../tensor';

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

/** The fields of `tokenizer_config.json` that are used (others are passed to the package). */
export interface TokenizerConfig {
  bos_token?: ConfigToken;
  eos_token?: ConfigToken;
  pad_token?: ConfigToken;
  unk_token?: ConfigToken;
  /** Apply transformers' `clean_up_tokenization` (" ." → ".", " n't" → "n't", …) in decode. Default false. */
  clean_up_tokenization_spaces?: boolean;
  [k: string]: unknown;
}

export interface EncodeOptions {
  /** Add the post-processor's special tokens (`<s>` … `</s>`, BOS, …). Default true. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special added tokens. Default false. */
  skipSpecialTokens?: boolean;
  /** Default: tokenizer_config.json's `clean_up_tokenization_spaces`, else false. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface AddTokensOptions {
  /** Mark the tokens special (skipped by `decode({ skipSpecialTokens: true })`). Default false. */
  special?: boolean;
  /** Match the token against normalized text. Default: `!special`, as in HF. */
  normalized?: boolean;
  /** Absorb whitespace on the token's left. Default false. */
  lstrip?: boolean;
  /** Absorb whitespace on the token's right. Default false. */
  rstrip?: boolean;
}

export type Padding = false | 'longest' | 'max_length';

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

export interface BatchEncoding<T = number[][]> {
  inputIds: T;
  /** 1 where inputIds are real tokens, 0 where padded. */
  attentionMask: T;
}

type SpecialName = 'bos' | 'eos' | 'pad' | 'unk';

/** Model types the package implements (a file without `type` is left to the package to infer). */
const MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'];

/**
 * Rust's ByteLevel decoder: each token becomes the bytes its characters stand for, or, when one of
 * its characters stands for no byte (an added token such as `hello world`), its own UTF-8 bytes;
 * all bytes are then decoded together, invalid sequences becoming U+FFFD.
 */
function byteLevelDecodeChain(byteOf: Record<string, number | string>, tokens: string[]): string[] {
  const enc = new TextEncoder();
  const bytes: number[] = [];
  for (const t of tokens) {
    const own: number[] = [];
    for (const c of t) {
      const b = byteOf[c];
      if (b === undefined) { own.length = 0; own.push(...enc.encode(t)); break; }
      own.push(Number(b));
    }
    for (const b of own) bytes.push(b);
  }
  return [new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(Uint8Array.from(bytes))];
}

/**
 * Rust's Metaspace decoder: "▁" becomes a space, except in the first token, where every "▁" is
 * dropped unless prepend_scheme is "never" (the package drops one leading space, always).
 */
function metaspaceDecodeChain(replacement: string, never: boolean, tokens: string[]): string[] {
  return tokens.map((t, i) => t.split(replacement).join(i === 0 && !never ? '' : ' '));
}

/**
 * Rust's ByteFallback decoder: a run of `<0xNN>` tokens becomes its UTF-8 text, or one U+FFFD per
 * byte when the run is not valid UTF-8 (the package gives one U+FFFD per maximal invalid part, and
 * drops a U+FEFF at the start of a run).
 */
function byteFallbackDecodeChain(tokens: string[]): string[] {
  const out: string[] = [];
  let run: number[] = [];
  const flush = (): void => {
    if (run.length === 0) return;
    try {
      out.push(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(Uint8Array.from(run)));
    } catch {
      for (let i = 0; i < run.length; i++) out.push('\uFFFD');
    }
    run = [];
  };
  for (const t of tokens) {
    if (t.length === 6 && t.startsWith('<0x') && t.endsWith('>') && /^[0-9a-fA-F]{2}$/.test(t.slice(3, 5))) {
      run.push(parseInt(t.slice(3, 5), 16));
    } else {
      flush();
      out.push(t);
    }
  }
  flush();
  return out;
}

/** Gives the decoders in the tree Rust's behaviour where the package's differs (see the file comment). */
function patchDecoders(d: unknown): void {
  if (d instanceof ByteLevelDecoder) {
    const byteOf = d.byte_decoder;
    d.decode_chain = (tokens: string[]) => byteLevelDecodeChain(byteOf, tokens);
  } else if (d instanceof MetaspaceDecoder) {
    const replacement = d.replacement;
    const never = (d.config as { prepend_scheme?: string }).prepend_scheme === 'never';
    d.decode_chain = (tokens: string[]) => metaspaceDecodeChain(replacement, never, tokens);
  } else if (d instanceof ByteFallbackDecoder) {
    d.decode_chain = byteFallbackDecodeChain;
  } else if (d instanceof SequenceDecoder) {
    d.decoders.forEach(patchDecoders);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

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

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

/** The model's own vocabulary, token → id (BPE/WordPiece: an object; Unigram: [token, score] pairs). */
function modelVocab(model: TokenizerJSON['model']): Map<string, number> {
  const v = model.vocab;
  if (Array.isArray(v)) return new Map(v.map((e, i) => [Array.isArray(e) ? String(e[0]) : String(e), i]));
  return new Map(v && typeof v === 'object' ? Object.entries(v) : []);
}

/**
 * A tokenizer from a HF `tokenizer.json` (and, optionally, its `tokenizer_config.json`).
 *
 * @example
 * const tok = await et.data.Tokenizer.fromFile('mistral/tokenizer.json');
 * tok.addSpecialTokens(['<|continue|>', '<|correspond|>']);   // ids 32000, 32001
 * const ids = tok.encode('Hello world');                      // [1, ...] (BOS first)
 * tok.decode(ids, { skipSpecialTokens: true });               // 'Hello world'
 */
export class Tokenizer {
  #json: TokenizerJSON;
  #config: TokenizerConfig;
  #source: string;
  #hf!: HFTokenizer;
  #special: Partial<Record<SpecialName, string>> = {};
  /** The model's vocabulary (never changes; added tokens live in #json.added_tokens). */
  #modelVocab: Map<string, number> | null = null;
  /** How many special tokens the post-processor puts before and after a single text (for truncation). */
  #layout: { before: number; after: number } | null = null;

  private constructor(json: TokenizerJSON, config: TokenizerConfig, source: string) {
    this.#json = json;
    this.#config = config;
    this.#source = source;
    for (const k of ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const) if (json[k] === undefined) json[k] = null;
    if (json.added_tokens === undefined) json.added_tokens = [];
    if (!Array.isArray(json.added_tokens)) throw new EmotorchError(`${source}: "added_tokens" is not an array`, 'ERR_FORMAT');
    json.added_tokens.forEach((t, i) => {
      if (!isObject(t) || typeof t.content !== 'string' || !Number.isInteger(t.id) || t.id < 0) {
        throw new EmotorchError(`${source}: added_tokens[${i}] is not { id, content }`, 'ERR_FORMAT');
      }
    });
    const type = json.model.type;
    if (type !== undefined && !MODEL_TYPES.includes(type as string)) {
      throw new EmotorchError(`${source}: unsupported model type ${JSON.stringify(type)} (supported: ${MODEL_TYPES.join(', ')})`, 'ERR_FORMAT');
    }
    if (config.clean_up_tokenization_spaces !== undefined && typeof config.clean_up_tokenization_spaces !== 'boolean') {
      throw new EmotorchError(`${source}: clean_up_tokenization_spaces in the tokenizer config is not a boolean`, 'ERR_FORMAT');
    }
    this.#rebuild();
    for (const k of ['bos', 'eos', 'pad', 'unk'] as const) {
      const t = tokenContent(config[`${k}_token`]);
      if (t !== undefined) this.#special[k] = t;
    }
  }

  /** (Re)creates the package's tokenizer from the JSON, e.g. after tokens were added. */
  #rebuild(): void {
    try {
      // The package reads the config for a few legacy options; decode's clean-up is passed explicitly.
      this.#hf = new HFTokenizer(this.#json, this.#config);
      patchDecoders(this.#hf.decoder);
      this.#alignNormalizedAddedTokens();
    } catch (e) {
      throw new EmotorchError(`${this.#source}: unsupported or malformed tokenizer (${(e as Error).message})`, 'ERR_FORMAT');
    }
    this.#layout = null;
  }

  /**
   * Added tokens with `normalized: true` under a normalizer that changes them (Mistral's legacy
   * `Prepend("▁")`: `<|unit5|>` → `▁<|unit5|>`) behave in Rust as their normalized form: they
   * match only the normalized text, and `id_to_token` and decode give `▁<|unit5|>`. The package
   * also matches a leftover piece equal to the raw content, and decodes the raw content.
   */
  #alignNormalizedAddedTokens(): void {
    const hf = this.#hf as unknown as {
      normalizer: ((s: string) => string) | null;
      added_tokens_map: Map<string, unknown>;
      special_tokens: string[];
      model: { vocab: string[] };
    };
    if (!hf.normalizer) return;
    for (const t of this.#json.added_tokens!) {
      if (t.normalized === false) continue;
      const n = hf.normalizer(t.content);
      if (n === t.content) continue;
      hf.added_tokens_map.delete(t.content);
      hf.model.vocab[t.id] = n;
      if (t.special) hf.special_tokens.push(n);
    }
  }

  /**
   * Reads a `tokenizer.json`, and `tokenizer_config.json` from the same folder when there is one
   * (for `padTokenId`, `bosTokenId`, `eosTokenId`, `clean_up_tokenization_spaces`).
   *
   * @param file the tokenizer.json, or a folder that holds one
   * @returns the tokenizer
   * @throws EmotorchError ERR_INVALID_ARG when file is not a string; ERR_IO when the file cannot
   *   be read; ERR_FORMAT (naming the file) when it, or tokenizer_config.json, is not valid JSON
   *   or not a tokenizer the package supports.
   * @example
   * const tok = await et.data.Tokenizer.fromFile('models/roberta-base');
   */
  static async fromFile(file: string): Promise<Tokenizer> {
    if (typeof file !== 'string' || file === '') invalid('a path to a tokenizer.json file or its folder', 'file', file);
    let target = file;
    try {
      if ((await fs.promises.stat(file)).isDirectory()) target = path.join(file, 'tokenizer.json');
    } catch {
      // reported by the read below
    }
    const configFile = path.join(path.dirname(target), 'tokenizer_config.json');
    const text = await fs.promises.readFile(target, 'utf8').catch((e: Error) => {
      throw new EmotorchError(`cannot read tokenizer file '${target}': ${e.message}`, 'ERR_IO');
    });
    const configText = await fs.promises.readFile(configFile, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw new EmotorchError(`cannot read '${configFile}': ${e.message}`, 'ERR_IO');
    });
    return Tokenizer.#fromText(text, target, configText, configFile);
  }

  /**
   * {@link Tokenizer.fromFile}, synchronously.
   * @param file the tokenizer.json, or a folder that holds one
   * @throws EmotorchError as fromFile.
   * @example
   * const tok = et.data.Tokenizer.fromFileSync('models/mistral/tokenizer.json');
   */
  static fromFileSync(file: string): Tokenizer {
    if (typeof file !== 'string' || file === '') invalid('a path to a tokenizer.json file or its folder', 'file', file);
    let target = file;
    try {
      if (fs.statSync(file).isDirectory()) target = path.join(file, 'tokenizer.json');
    } catch {
      // reported by the read below
    }
    const configFile = path.join(path.dirname(target), 'tokenizer_config.json');
    let text: string;
    try {
      text = fs.readFileSync(target, 'utf8');
    } catch (e) {
      throw new EmotorchError(`cannot read tokenizer file '${target}': ${(e as Error).message}`, 'ERR_IO');
    }
    let configText: string | null = null;
    try {
      configText = fs.readFileSync(configFile, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new EmotorchError(`cannot read '${configFile}': ${(e as Error).message}`, 'ERR_IO');
    }
    return Tokenizer.#fromText(text, target, configText, configFile);
  }

  static #fromText(text: string, file: string, configText: string | null, configFile: string): Tokenizer {
    const parse = (s: string, f: string, what: string): Record<string, unknown> => {
      let v: unknown;
      try {
        v = JSON.parse(s);
      } catch (e) {
        throw new EmotorchError(`'${f}' is not valid JSON: ${(e as Error).message}`, 'ERR_FORMAT');
      }
      if (!isObject(v)) throw new EmotorchError(`'${f}' is not ${what} (expected a JSON object)`, 'ERR_FORMAT');
      return v;
    };
    const json = parse(text, file, 'a tokenizer.json');
    if (!isObject(json.model)) throw new EmotorchError(`'${file}' is not a tokenizer.json (it has no "model" object)`, 'ERR_FORMAT');
    const config = configText === null ? {} : parse(configText, configFile, 'a tokenizer_config.json');
    return new Tokenizer(json as TokenizerJSON, config as TokenizerConfig, `'${file}'`);
  }

  /**
   * A tokenizer from an already parsed `tokenizer.json` object (copied; not modified).
   *
   * @param obj the tokenizer.json content
   * @param config the tokenizer_config.json content, if any
   * @throws EmotorchError ERR_INVALID_ARG when obj or config is not an object; ERR_FORMAT when
   *   obj is not a tokenizer the package supports.
   * @example
   * const tok = et.data.Tokenizer.fromJSON(JSON.parse(fs.readFileSync('tokenizer.json', 'utf8')), { pad_token: '<pad>' });
   */
  static fromJSON(obj: TokenizerJSON | Record<string, unknown>, config: TokenizerConfig = {}): Tokenizer {
    if (!isObject(obj) || !isObject(obj.model)) invalid('a tokenizer.json object (with a "model" object)', 'tokenizer', obj);
    if (!isObject(config)) invalid('a tokenizer_config.json object', 'config', config);
    return new Tokenizer(structuredClone(obj) as TokenizerJSON, structuredClone(config), 'tokenizer JSON');
  }

  /**
   * Text → token ids.
   * @param text the text
   * @param options `addSpecialTokens` (default true): add the post-processor's tokens (BOS, `<s>` … `</s>`)
   * @returns the ids
   * @throws EmotorchError ERR_INVALID_ARG when text is not a string or an option is malformed.
   * @example
   * tok.encode('Hello world');                                // [0, 31414, 232, 2] with RoBERTa
   * tok.encode('Hello world', { addSpecialTokens: false });   // [31414, 232]
   */
  encode(text: string, options?: EncodeOptions): number[] {
    if (typeof text !== 'string') invalid('a string', 'text', text);
    const o = checkOpts(options);
    const add = checkBool(o.addSpecialTokens, 'addSpecialTokens', true);
    return this.#hf.encode(text, { add_special_tokens: add }).ids;
  }

  /**
   * Text → token strings (as the model sees them: `Ġworld`, `▁world`, `<0xE4>`).
   * @param text the text
   * @param options `addSpecialTokens` (default false)
   * @throws EmotorchError ERR_INVALID_ARG when text is not a string.
   * @example
   * tok.tokenize('Hello world');   // ['Hello', 'Ġworld']
   */
  tokenize(text: string, options?: EncodeOptions): string[] {
    if (typeof text !== 'string') invalid('a string', 'text', text);
    const o = checkOpts(options);
    const add = checkBool(o.addSpecialTokens, 'addSpecialTokens', false);
    return this.#hf.tokenize(text, { add_special_tokens: add });
  }

  /**
   * Token ids → text. Ids that name no token are dropped (as in the Python library).
   * @param ids number[], or a typed array such as a tensor's `dataSync()` (BigInt64Array)
   * @param options `skipSpecialTokens` (default false), `cleanUpTokenizationSpaces`
   * @returns the text
   * @throws EmotorchError ERR_INVALID_ARG when ids are not non-negative integers.
   * @example
   * tok.decode([1, 15043, 3186]);                              // '<s> Hello world'
   * tok.decode([1, 15043, 3186], { skipSpecialTokens: true }); // 'Hello world'
   */
  decode(ids: ArrayLike<number | bigint>, options?: DecodeOptions): string {
    const list = this.#checkIds(ids, 'ids');
    const o = checkOpts(options);
    const skip = checkBool(o.skipSpecialTokens, 'skipSpecialTokens', false);
    const cleanUp = checkBool(o.cleanUpTokenizationSpaces, 'cleanUpTokenizationSpaces', this.#config.clean_up_tokenization_spaces ?? false);
    const known = list.filter((id) => this.#hf.id_to_token(id) !== undefined);
    if (known.length === 0) return '';
    return this.#hf.decode(known, { skip_special_tokens: skip, clean_up_tokenization_spaces: cleanUp });
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
   * Encodes a batch, optionally truncated and padded, with attention masks.
   *
   * @param texts the texts
   * @param options `padding` (false | 'longest' | 'max_length'), `maxLength`, `truncation`,
   *   `truncationSide`, `padSide` ('right' | 'left'), `padTokenId` (default `this.padTokenId`),
   *   `addSpecialTokens` (default true), `returnTensors` (int64 (B, T) tensors)
   * @returns `{ inputIds, attentionMask }`: number[][] each, or two Tensors with `returnTensors`
   * @throws EmotorchError ERR_INVALID_ARG for a non-string text, a malformed option, padding
   *   without a pad token id, `'max_length'` or truncation without `maxLength`, a `maxLength`
   *   smaller than the special tokens, or `returnTensors` with unequal lengths.
   * @example
   * const { inputIds, attentionMask } = tok.encodeBatch(['Hi', 'Hello there'], { padding: 'longest', returnTensors: true });
   */
  encodeBatch(texts: string[], options: EncodeBatchOptions & { returnTensors: true }): BatchEncoding<Tensor>;
  encodeBatch(texts: string[], options?: EncodeBatchOptions & { returnTensors?: false }): BatchEncoding<number[][]>;
  encodeBatch(texts: string[], options?: EncodeBatchOptions): BatchEncoding<number[][]> | BatchEncoding<Tensor>;
  encodeBatch(texts: string[], options?: EncodeBatchOptions): BatchEncoding<number[][]> | BatchEncoding<Tensor> {
    if (!Array.isArray(texts)) invalid('an array of strings', 'texts', texts);
    texts.forEach((t, i) => { if (typeof t !== 'string') invalid('a string', `texts[${i}]`, t); });
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
    const truncationSide = checkSide(o.truncationSide, 'truncationSide');
    const padSide = checkSide(o.padSide, 'padSide');
    const returnTensors = checkBool(o.returnTensors, 'returnTensors', false);
    let padId: number | undefined;
    if (padding !== false) {
      if (o.padTokenId !== undefined) padId = checkInt(o.padTokenId, 'padTokenId', 0);
      else if (this.padTokenId !== undefined) padId = this.padTokenId;
      else invalid('a padTokenId (this tokenizer has no pad token; set tokenizer.padToken or pass padTokenId)', 'padTokenId', undefined);
    } else if (o.padTokenId !== undefined) {
      checkInt(o.padTokenId, 'padTokenId', 0);
    }

    const { before, after } = add ? this.#specialLayout() : { before: 0, after: 0 };
    if (truncation && maxLength! < before + after) {
      invalid(`a maxLength of at least ${before + after} (the special tokens added to every text)`, 'maxLength', maxLength);
    }
    const rows = texts.map((t) => {
      const ids = this.#hf.encode(t, { add_special_tokens: add }).ids;
      if (!truncation || ids.length <= maxLength!) return ids;
      const body = ids.slice(before, ids.length - after);
      const keep = maxLength! - before - after;
      const cut = truncationSide === 'right' ? body.slice(0, keep) : body.slice(body.length - keep);
      return [...ids.slice(0, before), ...cut, ...ids.slice(ids.length - after)];
    });

    const target = padding === 'max_length' ? maxLength! : padding === 'longest' ? Math.max(0, ...rows.map((r) => r.length)) : 0;
    const inputIds: number[][] = [];
    const attentionMask: number[][] = [];
    for (const r of rows) {
      const n = Math.max(0, target - r.length);
      const pads = new Array<number>(n).fill(padId ?? 0);
      const zeros = new Array<number>(n).fill(0);
      const ones = new Array<number>(r.length).fill(1);
      inputIds.push(padSide === 'right' ? [...r, ...pads] : [...pads, ...r]);
      attentionMask.push(padSide === 'right' ? [...ones, ...zeros] : [...zeros, ...ones]);
    }
    if (!returnTensors) return { inputIds, attentionMask };

    const T = inputIds.length ? inputIds[0].length : 0;
    const lengths = inputIds.map((r) => r.length);
    if (lengths.some((l) => l !== T)) {
      invalid(`sequences of one length for returnTensors (got lengths ${JSON.stringify(lengths)}; use padding)`, 'padding', o.padding ?? false);
    }
    const B = inputIds.length;
    const ids64 = new BigInt64Array(B * T);
    const mask64 = new BigInt64Array(B * T);
    inputIds.forEach((r, b) => r.forEach((v, t) => { ids64[b * T + t] = BigInt(v); mask64[b * T + t] = BigInt(attentionMask[b][t]); }));
    return { inputIds: tensor(ids64, { shape: [B, T] }), attentionMask: tensor(mask64, { shape: [B, T] }) };
  }

  /** How many ids encode(text) puts before and after the text's own ids (the single-text template). */
  #specialLayout(): { before: number; after: number } {
    if (this.#layout) return this.#layout;
    const probe = 'a';
    const withSp = this.#hf.encode(probe, { add_special_tokens: true }).ids;
    const without = this.#hf.encode(probe, { add_special_tokens: false }).ids;
    const extra = withSp.length - without.length;
    let before = 0;
    for (let p = 0; p <= extra; p++) {
      if (without.every((id, k) => withSp[p + k] === id)) { before = p; break; }
    }
    this.#layout = { before, after: Math.max(0, extra - before) };
    return this.#layout;
  }

  /**
   * Adds tokens after the vocabulary, with ids assigned exactly as the Python library's
   * `add_tokens` does: a token already in the vocabulary or already added keeps its id (its flags
   * are updated); a new one gets the next id after the model vocabulary and the added tokens; an
   * empty string, or a token already added with the same flags, is skipped.
   *
   * @param tokens the token strings, in the order their ids are given
   * @param options `special` (default false), `normalized` (default `!special`), `lstrip`, `rstrip`
   * @returns how many were added or updated (the Python library's return value)
   * @throws EmotorchError ERR_INVALID_ARG when tokens is not an array of strings.
   * @example
   * tok.addTokens(Array.from({ length: 10000 }, (_, i) => `<|unit${i}|>`));
   */
  addTokens(tokens: string[], options?: AddTokensOptions): number {
    if (!Array.isArray(tokens)) invalid('an array of strings', 'tokens', tokens);
    tokens.forEach((t, i) => { if (typeof t !== 'string') invalid('a string', `tokens[${i}]`, t); });
    const o = checkOpts(options);
    const special = checkBool(o.special, 'special', false);
    const flags = {
      single_word: false,
      lstrip: checkBool(o.lstrip, 'lstrip', false),
      rstrip: checkBool(o.rstrip, 'rstrip', false),
      normalized: checkBool(o.normalized, 'normalized', !special),
      special,
    };
    const added = this.#json.added_tokens!;
    const byContent = new Map(added.map((t) => [t.content, t]));
    const model = this.#vocabOfModel();
    const vocabSize = model.size;
    let maxId = added.reduce((m, t) => Math.max(m, t.id), -1);
    let count = 0;
    for (const content of tokens) {
      const old = byContent.get(content);
      const same = old && (['single_word', 'lstrip', 'rstrip', 'normalized', 'special'] as const).every((k) => (old[k] ?? (k === 'normalized')) === flags[k]);
      if (content === '' || same) continue;
      count++;
      if (old) {
        // Rust keeps a token in its special set once it is there.
        Object.assign(old, flags, { special: flags.special || old.special === true });
        continue;
      }
      let id = model.get(content);
      if (id === undefined) id = maxId < 0 ? vocabSize : maxId >= vocabSize || vocabSize === 0 ? maxId + 1 : vocabSize;
      const entry: AddedTokenJSON = { id, content, ...flags };
      added.push(entry);
      byContent.set(content, entry);
      maxId = Math.max(maxId, id);
    }
    if (count > 0) {
      added.sort((a, b) => a.id - b.id);
      this.#rebuild();
    }
    return count;
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
    return this.#hf.token_to_id(token);
  }

  /**
   * The token of an id, or undefined.
   * @throws EmotorchError ERR_INVALID_ARG when id is not a non-negative integer.
   * @example
   * tok.idToToken(32001);   // '<|correspond|>'
   */
  idToToken(id: number): string | undefined {
    checkInt(id, 'id', 0);
    return this.#hf.id_to_token(id) ?? undefined;
  }

  /**
   * Number of distinct tokens, with or without the added ones (the Python library's
   * `get_vocab_size(with_added_tokens)`).
   * @example
   * tok.getVocabSize(false);   // 32000 for Mistral
   */
  getVocabSize(withAddedTokens = true): number {
    checkBool(withAddedTokens, 'withAddedTokens', true);
    const model = this.#vocabOfModel();
    if (!withAddedTokens) return model.size;
    return model.size + new Set(this.#json.added_tokens!.map((t) => t.content).filter((c) => !model.has(c))).size;
  }

  /** Number of distinct tokens including added ones (`len(tokenizer)` in transformers). */
  get vocabSize(): number {
    return this.getVocabSize(true);
  }

  /** The added tokens with their ids and flags (a copy), in id order. */
  get addedTokens(): AddedTokenJSON[] {
    return this.#json.added_tokens!.map((t) => ({ ...t }));
  }

  #vocabOfModel(): Map<string, number> {
    return (this.#modelVocab ??= modelVocab(this.#json.model));
  }

  #specialId(k: SpecialName): number | undefined {
    const t = this.#special[k];
    return t === undefined ? undefined : this.#hf.token_to_id(t);
  }

  #setSpecial(k: SpecialName, v: string | undefined): void {
    if (v === undefined) { delete this.#special[k]; return; }
    if (typeof v !== 'string' || this.#hf.token_to_id(v) === undefined) invalid('a token of the vocabulary (or undefined)', `${k}Token`, v);
    this.#special[k] = v;
  }

  /** The padding token (tokenizer_config.json's `pad_token`); settable to any token of the vocabulary. */
  get padToken(): string | undefined { return this.#special.pad; }
  set padToken(v: string | undefined) { this.#setSpecial('pad', v); }
  /** The beginning-of-sequence token (`bos_token`). */
  get bosToken(): string | undefined { return this.#special.bos; }
  set bosToken(v: string | undefined) { this.#setSpecial('bos', v); }
  /** The end-of-sequence token (`eos_token`). */
  get eosToken(): string | undefined { return this.#special.eos; }
  set eosToken(v: string | undefined) { this.#setSpecial('eos', v); }
  /** The unknown token (`unk_token`). */
  get unkToken(): string | undefined { return this.#special.unk; }

  /** Id of {@link padToken}, or undefined when there is none. */
  get padTokenId(): number | undefined { return this.#specialId('pad'); }
  /** Id of {@link bosToken}, or undefined. */
  get bosTokenId(): number | undefined { return this.#specialId('bos'); }
  /** Id of {@link eosToken}, or undefined. */
  get eosTokenId(): number | undefined { return this.#specialId('eos'); }
  /** Id of {@link unkToken}, or undefined. */
  get unkTokenId(): number | undefined { return this.#specialId('unk'); }

  /**
   * The tokenizer.json content, added tokens included (a copy): `JSON.stringify` it to save.
   * @example
   * fs.writeFileSync('tokenizer.json', JSON.stringify(tok.toJSON()));
   */
  toJSON(): TokenizerJSON {
    return structuredClone(this.#json);
  }
}
