/**
 * A HF `tokenizer.json` as the `tokenizers` library runs it: the model types it implements (BPE,
 * byte-level as RoBERTa's, GPT-2's and LLaMA-3's or not; WordPiece; WordLevel; Unigram), and the
 * parts of a file that would make it abort the whole process (Rust panics it does not catch; found
 * by fuzzing 0.23.2), refused first with ERR_FORMAT. Every kind (./sentencepiece, ./clip) ends as
 * such a file.
 */
import { Tokenizer as RustTokenizer } from 'tokenizers';
import { EmotorchError } from '../../errors';
import { TokenizerSpec, isObject } from './common';

/** Model types of tokenizer.json that the library implements. */
const MODEL_TYPES = ['BPE', 'WordPiece', 'WordLevel', 'Unigram'];

/**
 * The library's message without what it quotes (serde's errors quote the file's values between
 * backticks or double quotes; emotorch's messages never quote a file's content).
 */
function unquoted(msg: string): string {
  return msg.replace(/`[^`]*`/g, '…').replace(/"(?:[^"\\]|\\.)*"/g, '…');
}

/**
 * What is wrong with a Precompiled normalizer's `precompiled_charsmap`, or undefined. The
 * `tokenizers` package aborts the whole process (a Rust panic it does not catch) on one that does
 * not parse, and on one whose trie or string offsets point outside it, at load or at the first
 * text that reaches the bad entry. The charsmap is SentencePiece's: a u32 trie size, a
 * double-array trie of u32 units, then NUL-ended UTF-8 strings; this walks every lookup path.
 */
function charsmapProblem(v: unknown): string | undefined {
  if (typeof v !== 'string') return 'is not a string';
  const b = Buffer.from(v, 'base64');
  if (b.toString('base64') !== v) return 'is not canonical base64';
  if (b.length < 4) return 'has no trie size';
  const n = Math.floor(b.readUInt32LE(0) / 4);
  if (4 + 4 * n > b.length) return 'is shorter than its trie';
  if (n === 0) return 'has an empty trie';
  const strings = b.subarray(4 + 4 * n);
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(strings);
  } catch {
    return 'has strings that are not UTF-8';
  }
  // A unit: low byte and bit 31 the label, bit 8 "has a leaf", bits 10.. the offset (<< 8 when
  // bit 9 is set); a leaf unit's low 31 bits are a byte offset into the strings.
  const unit = (i: number): number => b.readUInt32LE(4 + 4 * i);
  const offset = (u: number): number => (u >>> 10) * (u & 0x200 ? 256 : 1);
  const seen = new Set<number>();
  const pending = [offset(unit(0))];
  while (pending.length > 0) {
    const base = pending.pop()!;
    if (seen.has(base)) continue;
    seen.add(base);
    for (let c = 1; c < 256; c++) {
      const p = base ^ c;
      if (p >= n) return 'has a trie that points outside itself';
      const u = unit(p);
      if ((u & 0x800000ff) !== c) continue;
      const next = p ^ offset(u);
      if ((u >>> 8) & 1) {
        if (next >= n) return 'has a trie that points outside itself';
        const at = unit(next) & 0x7fffffff;
        if (at > strings.length || (strings[at] & 0xc0) === 0x80) return 'has a string offset outside its strings';
      }
      pending.push(next);
    }
  }
  return undefined;
}

/**
 * Refuses the tokenizer.json parts that make the library abort the process (Rust panics it does
 * not catch) instead of failing: a bad Precompiled charsmap ({@link charsmapProblem}); a Strip
 * decoder with `stop` > 0 (it indexes before the start of a token shorter than `stop` made only of
 * its character); a BPE merge whose right side is shorter than `continuing_subword_prefix`, or
 * whose merged token is longer than every vocabulary token (it is built in a buffer of that size);
 * a Replace normalizer whose pattern matches the empty string (the next normalizer indexes past
 * the end of its alignments); a post-processor template naming an undefined special token or
 * sequence ({@link checkTemplates}).
 */
function checkLibraryLimits(json: Record<string, unknown>, source: string): void {
  const fail = (why: string): never => {
    throw new EmotorchError(`${source}: ${why}`, 'ERR_FORMAT');
  };
  const pending: [unknown, boolean][] = [
    [json.normalizer, true],
    [json.decoder, false],
  ];
  while (pending.length > 0) {
    const [v, inNormalizer] = pending.pop()!;
    if (Array.isArray(v)) {
      for (const x of v) pending.push([x, inNormalizer]);
    } else if (isObject(v)) {
      if (inNormalizer && v.type === 'Replace' && matchesEmpty(v.pattern)) fail('a Replace normalizer whose pattern matches the empty string');
      if (v.type === 'Precompiled' || 'precompiled_charsmap' in v) {
        const why = charsmapProblem(v.precompiled_charsmap);
        if (why) fail(`the Precompiled normalizer's precompiled_charsmap ${why}`);
      }
      if (v.type === 'Strip' && typeof v.stop === 'number' && v.stop > 0) fail(`a Strip decoder with stop ${v.stop} is not supported (only 0)`);
      for (const x of Object.values(v)) pending.push([x, inNormalizer]);
    }
  }
  checkTemplates(json.post_processor, fail);
  const model = json.model as Record<string, unknown>;
  if (!Array.isArray(model.merges) || !isObject(model.vocab)) return;
  const bytes = (t: string): number => Buffer.byteLength(t, 'utf8');
  let longest = 0;
  for (const t of Object.keys(model.vocab)) longest = Math.max(longest, bytes(t));
  const prefix = typeof model.continuing_subword_prefix === 'string' ? bytes(model.continuing_subword_prefix) : 0;
  const vocab = model.vocab;
  const check = (a: string, b: string, k: number): void => {
    if (!Object.hasOwn(vocab, a) || !Object.hasOwn(vocab, b)) return;
    if (bytes(b) < prefix || bytes(a) + bytes(b) - prefix > longest) fail(`merges[${k}] makes a token that is not in the vocabulary`);
  };
  model.merges.forEach((m, k) => {
    if (Array.isArray(m) && typeof m[0] === 'string' && typeof m[1] === 'string') check(m[0], m[1], k);
    // the "a b" form: every split at a space, whichever the library takes
    else if (typeof m === 'string') for (let i = m.indexOf(' '); i >= 0; i = m.indexOf(' ', i + 1)) check(m.slice(0, i), m.slice(i + 1), k);
  });
}

/**
 * Refuses a TemplateProcessing post-processor (alone or in a Sequence) that the library accepts
 * but panics on at the first encode: a template that names a special token `special_tokens` does
 * not define, or a sequence other than A in `single` (A or B in `pair`).
 */
function checkTemplates(pp: unknown, fail: (why: string) => never): void {
  if (Array.isArray(pp)) {
    for (const x of pp) checkTemplates(x, fail);
    return;
  }
  if (!isObject(pp)) return;
  if (pp.type === 'Sequence') checkTemplates(pp.processors, fail);
  if (pp.type !== 'TemplateProcessing') return;
  const defined = new Set<string>();
  if (isObject(pp.special_tokens)) {
    for (const [k, v] of Object.entries(pp.special_tokens)) if (isObject(v) && v.id === k) defined.add(k);
  }
  for (const [name, allowed] of [
    ['single', ['A']],
    ['pair', ['A', 'B']],
  ] as const) {
    const tpl = pp[name];
    if (!Array.isArray(tpl)) continue; // the library refuses it at load
    tpl.forEach((piece, i) => {
      if (!isObject(piece)) return;
      const special = piece.SpecialToken;
      if (isObject(special) && !(typeof special.id === 'string' && defined.has(special.id))) {
        fail(`the post-processor's ${name} template (item ${i}) names a special token that its special_tokens do not define`);
      }
      const seq = piece.Sequence;
      if (isObject(seq) && !(allowed as readonly unknown[]).includes(seq.id)) {
        fail(`the post-processor's ${name} template (item ${i}) names a sequence other than ${allowed.join(' or ')}`);
      }
    });
  }
}

/**
 * Whether a Replace pattern (`{ String }` or `{ Regex }`) matches the empty string somewhere in a
 * few short texts, as JavaScript reads the regex (the library's is Oniguruma; one JavaScript cannot
 * compile is let through).
 */
function matchesEmpty(pattern: unknown): boolean {
  if (!isObject(pattern)) return false;
  if (typeof pattern.String === 'string') return pattern.String === '';
  if (typeof pattern.Regex !== 'string') return false;
  let re: RegExp;
  try {
    re = new RegExp(pattern.Regex, 'gu');
  } catch {
    return false;
  }
  return ['', 'a', 'a b', ' ', '我', '0', '\n', 'Ab.'].some((t) => [...t.matchAll(re)].some((m) => m[0] === ''));
}

/** The largest id of a BPE/WordPiece/WordLevel vocabulary object (0 for a Unigram list). */
export function maxVocabId(model: Record<string, unknown>): number {
  let max = 0;
  if (isObject(model.vocab)) for (const id of Object.values(model.vocab)) if (typeof id === 'number' && id > max) max = id;
  return max;
}

/**
 * The library's tokenizer for a spec: the model type and the config's clean_up_tokenization_spaces
 * checked (what the library's own messages would say less clearly), the parts it would panic on
 * refused ({@link checkLibraryLimits}), then parsed; as transformers does, the file's own
 * truncation and padding are not applied (encodeBatch's options are).
 * @param spec the tokenizer.json and its config
 * @returns the library's tokenizer
 * @throws EmotorchError ERR_FORMAT naming the source (never quoting it).
 */
export function libraryTokenizer(spec: TokenizerSpec): RustTokenizer {
  const { json, text, config, source } = spec;
  const type = (json.model as Record<string, unknown>).type;
  if (type !== undefined && !MODEL_TYPES.includes(type as string)) {
    throw new EmotorchError(`${source}: unsupported model type (supported: ${MODEL_TYPES.join(', ')})`, 'ERR_FORMAT');
  }
  if (config.clean_up_tokenization_spaces !== undefined && typeof config.clean_up_tokenization_spaces !== 'boolean') {
    throw new EmotorchError(`${source}: clean_up_tokenization_spaces in the tokenizer config is not a boolean`, 'ERR_FORMAT');
  }
  checkLibraryLimits(json, source);
  let rust: RustTokenizer;
  try {
    rust = RustTokenizer.fromString(text);
  } catch (e) {
    throw new EmotorchError(`${source}: unsupported or malformed tokenizer (${unquoted((e as Error).message)})`, 'ERR_FORMAT');
  }
  rust.disableTruncation();
  rust.disablePadding();
  return rust;
}
