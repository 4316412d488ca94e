/**
 * CLIP's tokenizer as transformers' `CLIPTokenizer` (5.x; `CLIPTokenizerFast` is the same class)
 * builds it, from either form a folder ships: `vocab.json` + `merges.txt` (OpenAI's and
 * LanguageBind's released folders, no tokenizer.json) or a `tokenizer.json` whose
 * `tokenizer_config.json` names `CLIPTokenizer`. As in transformers, the pipeline is CLIP's own
 * whatever a tokenizer.json says; only its vocabulary, merges and added tokens are read:
 *
 * - normalizer: NFC, every run of whitespace (`\s+`) → one space, lowercase;
 * - pre-tokenizer: CLIP's regex (`<|startoftext|>`, `<|endoftext|>`, `'s 't 're 've 'm 'll 'd`, runs
 *   of letters, single digits, runs of other non-space characters; spaces dropped), then byte-level;
 * - model: BPE whose words end in `</w>` (`end_of_word_suffix`), no subword prefix;
 * - post-processor: `<|startoftext|>` … `<|endoftext|>` (RoBERTa-style, bos and eos of the config);
 * - decoder: byte-level, then (in {@link clipDecodeText}, which a tokenizer.json cannot express)
 *   every `</w>` → a space and the text stripped as Python's `str.strip()` does.
 *
 * The special and added tokens are what transformers' `from_pretrained` makes of the config files
 * ({@link clipAddedTokens}). The ftfy / BERT-style cleanup of transformers 4's "slow"
 * CLIPTokenizer is not done: transformers 5 has no such tokenizer.
 *
 * {@link clipSpec} and {@link clipJSONSpec} give the Tokenizer class its spec from either form.
 */
import { EmotorchError } from '../../errors';
import { ConfigFiles, TokenizerSpec, isObject } from './common';

/**
 * CLIP's pre-tokenizer regex (as transformers' CLIPTokenizer writes it; Oniguruma syntax).
 * @example
 * { type: 'Split', pattern: { Regex: CLIP_PATTERN }, behavior: 'Removed', invert: true }
 */
export const CLIP_PATTERN = "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/** CLIPTokenizer's default special tokens (its `__init__` signature). */
const CLIP_DEFAULTS: Partial<Record<SpecialAttr, string>> = { bos: '<|startoftext|>', eos: '<|endoftext|>', unk: '<|endoftext|>', pad: '<|endoftext|>' };

/** transformers' `SPECIAL_TOKENS_ATTRIBUTES`, in its order (the order special tokens are added in). */
const SPECIAL_ATTRS = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const;
export type SpecialAttr = (typeof SPECIAL_ATTRS)[number];

/**
 * Whether a `tokenizer_config.json` `tokenizer_class` is CLIP's: `CLIPTokenizer`,
 * `CLIPTokenizerFast`, or one of LanguageBind's subclasses (`LanguageBindVideoTokenizer`, …,
 * which only change defaults the config files give anyway).
 * @example
 * isClipClass('CLIPTokenizerFast');   // true
 * isClipClass('GPT2Tokenizer');       // false
 */
export function isClipClass(name: unknown): boolean {
  return typeof name === 'string' && /^(CLIPTokenizer(Fast)?|LanguageBind(Video|Audio|Image|Depth|Thermal)Tokenizer)$/.test(name);
}

/** An added token with the flags of transformers' `AddedToken`. */
export interface ClipAddedToken {
  content: string;
  special: boolean;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

/**
 * Reads a `vocab.json`: a JSON object of token → id (ids non-negative integers below 2^32, each
 * given once).
 * @param text the file's text
 * @param file the path, for messages
 * @throws EmotorchError ERR_FORMAT naming the file (never quoting it) for text that is not JSON, not
 *   an object, empty, or has an id that is not a non-negative integer or is given to two tokens.
 * @example
 * const vocab = parseVocabJson(fs.readFileSync('clip/vocab.json', 'utf8'), 'clip/vocab.json');
 */
export function parseVocabJson(text: string, file: string): Record<string, number> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new EmotorchError(`'${file}' is not JSON (a vocab.json is an object of token → id)`, 'ERR_FORMAT');
  }
  if (!isObject(v)) throw new EmotorchError(`'${file}' is not a vocab.json (expected a JSON object of token → id)`, 'ERR_FORMAT');
  // (JavaScript orders integer-like keys first, so tokens are not named by their place in the file)
  const seen = new Set<number>();
  let k = 0;
  for (const id of Object.values(v)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) {
      throw new EmotorchError(`'${file}' has a token whose id is not an integer in [0, 2^32)`, 'ERR_FORMAT');
    }
    if (seen.has(id)) throw new EmotorchError(`'${file}' gives the id ${id} to two tokens`, 'ERR_FORMAT');
    seen.add(id);
    k++;
  }
  if (k === 0) throw new EmotorchError(`'${file}' has no tokens`, 'ERR_FORMAT');
  return v as Record<string, number>;
}

/**
 * Reads a `merges.txt` as the `tokenizers` library does: one merge a line, two tokens separated by
 * one space, lines starting with `#version` skipped, `\r\n` line ends accepted; both tokens and
 * their concatenation must be in the vocabulary.
 * @param text the file's text
 * @param file the path, for messages
 * @param vocab the vocabulary from {@link parseVocabJson}
 * @returns the merges, highest priority first
 * @throws EmotorchError ERR_FORMAT naming the file and the line (never quoting it).
 * @example
 * const merges = parseMerges(fs.readFileSync('clip/merges.txt', 'utf8'), 'clip/merges.txt', vocab);   // [['i', 'n'], ['t', 'h'], …]
 */
export function parseMerges(text: string, file: string, vocab: Record<string, number>): [string, string][] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const merges: [string, string][] = [];
  lines.forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.startsWith('#version')) return;
    const fail = (why: string): never => {
      throw new EmotorchError(`'${file}': line ${i + 1} ${why}`, 'ERR_FORMAT');
    };
    const parts = line.split(' ');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') fail('is not a merge (two tokens separated by one space)');
    const [a, b] = parts;
    if (!Object.hasOwn(vocab, a) || !Object.hasOwn(vocab, b)) fail('merges a token that is not in vocab.json');
    if (!Object.hasOwn(vocab, a + b)) fail('makes a token that is not in vocab.json');
    merges.push([a, b]);
  });
  return merges;
}

/** The config files' parts that {@link clipAddedTokens} reads (each `{}` when the file is absent). */
export interface ClipConfigFiles {
  /** tokenizer_config.json */
  config: Record<string, unknown>;
  /** special_tokens_map.json */
  specialMap: Record<string, unknown>;
  /** added_tokens.json ({ content: id }) */
  addedJson: Record<string, unknown>;
  /** the `added_tokens` of the tokenizer.json read, if one was */
  jsonAdded: unknown[];
}

/**
 * The special tokens and the added tokens (in the order transformers adds them, each content once
 * with the flags of its last addition, as the library keeps them), as transformers 5's
 * `CLIPTokenizer.from_pretrained` makes them:
 *
 * - with an `added_tokens_decoder` in tokenizer_config.json: those tokens, with their flags; the
 *   special tokens from tokenizer_config.json (special_tokens_map.json is not read);
 * - without (the older layout): the special tokens of tokenizer_config.json, each replaced by
 *   special_tokens_map.json's when it has one (an object there is special); the added tokens of
 *   added_tokens.json and of the tokenizer.json;
 * - then every special token (bos, eos, unk, sep, pad, cls, mask, additional) whose content is not
 *   among those added tokens, in that order: a string is added as special and not normalized, an
 *   object with its own flags. An absent bos/eos/unk/pad is CLIPTokenizer's default
 *   (`<|startoftext|>`, `<|endoftext|>`); `null` means none.
 *
 * @param files the config files
 * @param fmt throws ERR_FORMAT naming a file and what is wrong in it
 * @returns the special token contents (undefined: none) and the added tokens
 * @throws EmotorchError (through `fmt`) for a special or added token that is not a string, a token
 *   object or null, or a flag that is not a boolean.
 * @example
 * const { specials, added } = clipAddedTokens({ config, specialMap, addedJson: {}, jsonAdded: [] }, fmt);
 * specials.pad;   // '<|endoftext|>'
 */
export function clipAddedTokens(
  files: ClipConfigFiles,
  fmt: (file: string, why: string) => never,
): {
  specials: Partial<Record<SpecialAttr, string>>;
  added: ClipAddedToken[];
} {
  const { config, specialMap, addedJson, jsonAdded } = files;
  const flag = (o: Record<string, unknown>, k: string, dflt: boolean, f: string, name: string): boolean => {
    if (o[k] === undefined || o[k] === null) return dflt;
    if (typeof o[k] !== 'boolean') fmt(f, `${name}.${k} is not a boolean`);
    return o[k] as boolean;
  };
  /** transformers' AddedToken(**obj): special default false, normalized default !special. */
  const fromObject = (o: Record<string, unknown>, f: string, name: string, forceSpecial = false): ClipAddedToken => {
    if (typeof o.content !== 'string') fmt(f, `${name} has no "content" string`);
    const special = forceSpecial || flag(o, 'special', false, f, name);
    return {
      content: o.content as string,
      special,
      normalized: flag(o, 'normalized', !special, f, name),
      lstrip: flag(o, 'lstrip', false, f, name),
      rstrip: flag(o, 'rstrip', false, f, name),
      singleWord: flag(o, 'single_word', false, f, name),
    };
  };
  /** A special token value: a string, a token object, or null (none). */
  type Value = string | ClipAddedToken | null;
  const valueOf = (v: unknown, f: string, name: string, forceSpecial: boolean): Value => {
    if (v === null || typeof v === 'string') return v;
    if (isObject(v)) return fromObject(v, f, name, forceSpecial);
    return fmt(f, `${name} is not a token (a string, an object with a "content" string, or null)`);
  };
  const contentOf = (v: Value): string | undefined => (v === null ? undefined : typeof v === 'string' ? v : v.content);

  const values: Partial<Record<SpecialAttr, Value>> = {};
  for (const k of SPECIAL_ATTRS) if (`${k}_token` in config) values[k] = valueOf(config[`${k}_token`], 'tokenizer_config.json', `${k}_token`, false);
  const extraOf = (o: Record<string, unknown>, f: string, forceSpecial: boolean): Value[] | undefined => {
    for (const key of ['extra_special_tokens', 'additional_special_tokens']) {
      const list = o[key];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) fmt(f, `${key} is not a list`);
      return (list as unknown[]).map((v, i) => valueOf(v, f, `${key}[${i}]`, forceSpecial));
    }
    return undefined;
  };
  let extras = extraOf(config, 'tokenizer_config.json', false) ?? [];

  // Tokens with ids, in id order (a later one with the same id replaces an earlier one).
  const withIds = new Map<number, ClipAddedToken>();
  const decoder = config.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (!isObject(decoder)) fmt('tokenizer_config.json', 'added_tokens_decoder is not an object');
    for (const [key, v] of Object.entries(decoder as Record<string, unknown>)) {
      if (!/^\d+$/.test(key) || !Number.isSafeInteger(Number(key))) fmt('tokenizer_config.json', 'added_tokens_decoder has a key that is not an id');
      if (!isObject(v)) fmt('tokenizer_config.json', `added_tokens_decoder[${key}] is not a token object`);
      withIds.set(Number(key), fromObject(v as Record<string, unknown>, 'tokenizer_config.json', `added_tokens_decoder[${key}]`));
    }
  } else {
    for (const k of SPECIAL_ATTRS) {
      if (`${k}_token` in specialMap) values[k] = valueOf(specialMap[`${k}_token`], 'special_tokens_map.json', `${k}_token`, true);
    }
    extras = extraOf(specialMap, 'special_tokens_map.json', true) ?? extras;
    const specialSet = new Set<string>();
    for (const v of [...Object.values(values), ...extras]) {
      const c = contentOf(v ?? null);
      if (c !== undefined) specialSet.add(c);
    }
    for (const [content, id] of Object.entries(addedJson)) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0)
        fmt('added_tokens.json', `entry ${withIds.size} has an id that is not a non-negative integer`);
      const special = specialSet.has(content);
      withIds.set(id as number, { content, special, normalized: !special, lstrip: false, rstrip: false, singleWord: false });
    }
    jsonAdded.forEach((t, i) => {
      if (!isObject(t) || typeof t.id !== 'number' || !Number.isSafeInteger(t.id) || t.id < 0) fmt('tokenizer.json', `added_tokens[${i}] has no id`);
      withIds.set((t as { id: number }).id, fromObject(t as Record<string, unknown>, 'tokenizer.json', `added_tokens[${i}]`));
    });
  }
  const byContent = new Map([...withIds.values()].map((t) => [t.content, t]));
  if (byContent.size > 0) {
    for (const k of SPECIAL_ATTRS) {
      const c = contentOf(values[k] ?? null);
      if (c !== undefined && byContent.has(c)) values[k] = byContent.get(c)!;
    }
  }
  for (const k of SPECIAL_ATTRS) if (values[k] === undefined && CLIP_DEFAULTS[k] !== undefined) values[k] = CLIP_DEFAULTS[k]!;

  // The additions, in order: the tokens with ids, then the special tokens not among them.
  const first = [...withIds.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]);
  const known = new Set(first.map((t) => t.content));
  const named = new Set(SPECIAL_ATTRS.map((k) => contentOf(values[k] ?? null)).filter((c): c is string => c !== undefined));
  const order: Value[] = [...first];
  for (const v of [...SPECIAL_ATTRS.map((k) => values[k] ?? null), ...extras]) {
    const c = contentOf(v);
    if (c !== undefined && !known.has(c)) order.push(v);
  }
  // One entry a content, in the order of its first addition (its id follows it), with the flags
  // of its last (the library updates a re-added token's flags).
  const added = new Map<string, ClipAddedToken>();
  for (const v of order) {
    if (v === null) continue;
    const t: ClipAddedToken =
      typeof v === 'string'
        ? { content: v, special: true, normalized: false, lstrip: false, rstrip: false, singleWord: false }
        : { ...v, special: v.special || named.has(v.content) };
    if (t.content !== '') added.set(t.content, t);
  }
  const specials: Partial<Record<SpecialAttr, string>> = {};
  for (const k of SPECIAL_ATTRS) {
    const c = contentOf(values[k] ?? null);
    if (c !== undefined) specials[k] = c;
  }
  return { specials, added: [...added.values()] };
}

/**
 * The tokenizer.json object of transformers' CLIPTokenizer with this vocabulary, merges and added
 * tokens. Added tokens take their vocabulary id, else the next free id as the library gives it.
 * @param vocab token → id
 * @param merges the merges (pairs, or a tokenizer.json's "a b" strings)
 * @param opts the unknown, bos and eos tokens and the added tokens
 * @param source how messages name the files
 * @throws EmotorchError ERR_FORMAT when there is no bos or eos token.
 * @example
 * const json = clipToJSON(vocab, merges, { unk: specials.unk, bos: specials.bos, eos: specials.eos, added }, "'clip/vocab.json'");
 */
export function clipToJSON(
  vocab: Record<string, number>,
  merges: unknown[],
  opts: { unk?: string; bos?: string; eos?: string; added: ClipAddedToken[] },
  source: string,
): Record<string, unknown> {
  const vocabSize = Object.keys(vocab).length;
  const ids = new Map<string, number>();
  let maxAdded = -1;
  const added = opts.added.map((t) => {
    let id = ids.get(t.content) ?? (Object.hasOwn(vocab, t.content) ? vocab[t.content] : undefined);
    // (the library's AddedVocabulary: after the vocabulary's size, or after the largest added id past it)
    if (id === undefined) id = maxAdded < 0 ? vocabSize : maxAdded >= vocabSize || vocabSize === 0 ? maxAdded + 1 : vocabSize;
    ids.set(t.content, id);
    maxAdded = Math.max(maxAdded, id);
    return { id, content: t.content, single_word: t.singleWord, lstrip: t.lstrip, rstrip: t.rstrip, normalized: t.normalized, special: t.special };
  });
  const idOf = (t: string | undefined, name: string): number => {
    const id = t === undefined ? undefined : (ids.get(t) ?? (Object.hasOwn(vocab, t) ? vocab[t] : undefined));
    if (id === undefined) throw new EmotorchError(`${source}: a CLIP tokenizer needs a ${name} token (none is set, or it is not a token)`, 'ERR_FORMAT');
    return id;
  };
  const bosId = idOf(opts.bos, 'bos');
  const eosId = idOf(opts.eos, 'eos');
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }] },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_PATTERN }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: { type: 'RobertaProcessing', sep: [opts.eos, eosId], cls: [opts.bos, bosId], trim_offsets: false, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: opts.unk ?? null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

/** What Python's `str.strip()` strips (`str.isspace`): JavaScript's `\s` less U+FEFF, plus U+001C–U+001F and U+0085. */
const PY_SPACE = /^[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/;

/** Python's `str.strip()` (all these characters are single UTF-16 units). */
function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && PY_SPACE.test(s[a])) a++;
  while (b > a && PY_SPACE.test(s[b - 1])) b--;
  return s.slice(a, b);
}

/**
 * CLIPTokenizer's decode after the byte-level decoder: every `</w>` becomes a space, then the text
 * is stripped as Python's `str.strip()` does.
 * @param text the byte-level decoder's output
 * @returns the decoded text
 * @example
 * clipDecodeText('<|startoftext|>a</w>photo</w><|endoftext|>');   // '<|startoftext|>a photo <|endoftext|>'
 */
export function clipDecodeText(text: string): string {
  return pyStrip(text.split('</w>').join(' '));
}

/**
 * Refuses a vocab.json (read as CLIP's) that is not: its tokenizer_config.json names another
 * tokenizer_class, or it names none and the vocabulary has no `<|startoftext|>` and no `</w>` token.
 * @param vocab the vocab.json's tokens
 * @param cls tokenizer_config.json's tokenizer_class (undefined without one)
 * @param source how messages name the vocab.json
 * @param configFile the tokenizer_config.json's path, for messages
 * @throws EmotorchError ERR_FORMAT naming the files.
 */
export function checkClipVocab(vocab: Record<string, number>, cls: unknown, source: string, configFile: string): void {
  if (cls !== undefined && cls !== null && !isClipClass(cls)) {
    throw new EmotorchError(
      `${source}: a vocab.json + merges.txt tokenizer is read as CLIP's, but '${configFile}' names another tokenizer_class (supported: CLIPTokenizer, CLIPTokenizerFast, LanguageBind's)`,
      'ERR_FORMAT',
    );
  }
  if ((cls === undefined || cls === null) && !Object.hasOwn(vocab, '<|startoftext|>') && !Object.keys(vocab).some((t) => t.endsWith('</w>'))) {
    throw new EmotorchError(
      `${source}: not CLIP's vocabulary (no <|startoftext|>, no </w> tokens), and no tokenizer_config.json tokenizer_class says what it is`,
      'ERR_FORMAT',
    );
  }
}

/**
 * A tokenizer.json whose config names CLIP: its vocabulary, merges and added tokens in CLIPTokenizer's pipeline.
 * @param json the tokenizer.json object
 * @param source how messages name it
 * @param name how messages name a config file beside it
 * @param files the config files
 * @throws EmotorchError ERR_FORMAT when its model is not a BPE with a vocab object and a merges
 *   list, its added_tokens is not a list, or as {@link clipSpec}.
 */
export function clipJSONSpec(json: Record<string, unknown>, source: string, name: (f: string) => string, files: ConfigFiles): TokenizerSpec {
  const model = json.model as Record<string, unknown>;
  if ((model.type !== undefined && model.type !== 'BPE') || !isObject(model.vocab) || !Array.isArray(model.merges)) {
    throw new EmotorchError(`${source}: the config names a CLIP tokenizer but the model is not a BPE with a vocab object and a merges list`, 'ERR_FORMAT');
  }
  const jsonAdded = json.added_tokens === undefined || json.added_tokens === null ? [] : json.added_tokens;
  if (!Array.isArray(jsonAdded)) throw new EmotorchError(`${source}: added_tokens is not a list`, 'ERR_FORMAT');
  return clipSpec(model.vocab as Record<string, number>, model.merges, jsonAdded, source, name, files);
}

/**
 * CLIPTokenizer from a vocabulary, merges, and the config files: its tokenizer.json
 * ({@link clipToJSON}) and the config with the special tokens {@link clipAddedTokens} resolved.
 * @param vocab token → id
 * @param merges the merges (pairs, or "a b" strings)
 * @param jsonAdded the `added_tokens` of the tokenizer.json read (none for a vocab.json)
 * @param source how messages name the tokenizer
 * @param name how messages name a config file beside it
 * @param files the config files
 * @throws EmotorchError ERR_FORMAT (naming the file) for a malformed special or added token.
 */
export function clipSpec(
  vocab: Record<string, number>,
  merges: unknown[],
  jsonAdded: unknown[],
  source: string,
  name: (f: string) => string,
  files: ConfigFiles,
): TokenizerSpec {
  const fmt = (f: string, why: string): never => {
    throw new EmotorchError(`${name(f)}: ${why}`, 'ERR_FORMAT');
  };
  const { specials, added } = clipAddedTokens({ config: files.config, specialMap: files.specialMap, addedJson: files.added, jsonAdded }, fmt);
  const json = clipToJSON(vocab, merges, { unk: specials.unk, bos: specials.bos, eos: specials.eos, added }, source);
  const cfg: Record<string, unknown> = { ...files.config };
  for (const k of ['bos', 'eos', 'unk', 'pad'] as const) cfg[`${k}_token`] = specials[k] ?? null;
  return { json, text: JSON.stringify(json), config: cfg, source, clip: true };
}
