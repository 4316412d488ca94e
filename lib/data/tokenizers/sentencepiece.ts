/**
 * SentencePiece `.model` files (the protobuf `ModelProto` that `sentencepiece` writes, shipped as
 * `tokenizer.model` by LLaMA-family folders): a small bounds-checked protobuf reader, and the
 * `tokenizer.json` that runs the same tokenization in the Rust `tokenizers` pipeline.
 *
 * What is read: the pieces (string, score, type: normal, unknown, control, user-defined, byte,
 * unused), the trainer spec's model type (BPE or Unigram), `byte_fallback`, special ids and
 * `unk_surface`, and the normalizer spec (`precompiled_charsmap`, `add_dummy_prefix`,
 * `remove_extra_whitespaces`, `escape_whitespaces`). Everything else is skipped.
 *
 * How it maps (one text chunk between added tokens is what `sentencepiece.encode` sees, as in
 * transformers' slow `LlamaTokenizer`): normalizer = Precompiled charsmap, then (with
 * `remove_extra_whitespaces`) runs of spaces collapsed and the ends stripped, then the dummy
 * prefix `▁` (`add_dummy_prefix`, only on a non-empty chunk), then spaces → `▁`; user-defined
 * symbols are isolated by a Split pre-tokenizer and taken whole by the model; BPE merges are every
 * split of a normal piece into two normal pieces, ranked by the piece's score (sentencepiece
 * merges the best-scoring pair first); the decoder undoes the escaping, the byte pieces and the
 * dummy prefix, and writes the unknown piece as `unk_surface` (` ⁇ `).
 *
 * The HF files beside the `.model` ({@link sentencePieceSpec}) give the special and added tokens,
 * as transformers' slow `LlamaTokenizer` reads them.
 */
import * as path from 'path';
import { EmotorchError } from '../../errors';
import { ConfigFiles, SpecialName, TokenizerSpec, isObject, tokenContent } from './common';

/** Piece types of `ModelProto.SentencePiece.Type`. */
export type PieceType = 'normal' | 'unknown' | 'control' | 'user_defined' | 'unused' | 'byte';
const PIECE_TYPES: Record<number, PieceType> = { 1: 'normal', 2: 'unknown', 3: 'control', 4: 'user_defined', 5: 'unused', 6: 'byte' };

export interface SentencePiece {
  piece: string;
  score: number;
  type: PieceType;
}

/** The parts of a SentencePiece `ModelProto` that tokenization uses, with proto2's defaults. */
export interface SentencePieceModel {
  pieces: SentencePiece[];
  trainerSpec: {
    /** 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR */
    modelType: number;
    byteFallback: boolean;
    treatWhitespaceAsSuffix: boolean;
    unkId: number;
    bosId: number;
    eosId: number;
    padId: number;
    unkSurface: string;
  };
  normalizerSpec: {
    name: string;
    precompiledCharsmap: Buffer;
    addDummyPrefix: boolean;
    removeExtraWhitespaces: boolean;
    escapeWhitespaces: boolean;
  };
  /** Whether a denormalizer spec with rules is present (not supported). */
  hasDenormalizer: boolean;
}

/** A bounds-checked protobuf reader over one message's bytes. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    readonly fail: (what: string) => never,
    readonly where: string,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  /** A varint: its low 32 bits, and whether any bit is set (for bools); lengths use {@link length}. */
  varint(field: string): { lo: number; value: number; nonzero: boolean } {
    let lo = 0;
    let value = 0;
    let nonzero = false;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(`${this.where}.${field} ends inside a varint`);
      const b = this.buf[this.pos++];
      const bits = b & 0x7f;
      if (bits !== 0) nonzero = true;
      if (i < 5) lo = (lo | (bits << (7 * i))) >>> 0;
      if (i < 8) value += bits * 2 ** (7 * i);
      if ((b & 0x80) === 0) return { lo, value: i < 8 ? value : Infinity, nonzero };
    }
    return this.fail(`${this.where}.${field} has a varint longer than 10 bytes`);
  }

  /** A length-delimited field's [start, end). */
  length(field: string): [number, number] {
    const n = this.varint(field).value;
    if (n > this.end - this.pos) this.fail(`${this.where}.${field} is longer than the bytes left (the file is truncated or corrupt)`);
    const start = this.pos;
    this.pos += n;
    return [start, this.pos];
  }

  string(field: string): string {
    const [s, e] = this.length(field);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(this.buf.subarray(s, e));
    } catch {
      return this.fail(`${this.where}.${field} is not UTF-8`);
    }
  }

  float(field: string): number {
    if (this.end - this.pos < 4) this.fail(`${this.where}.${field} ends inside a float`);
    const v = this.buf.readFloatLE(this.pos);
    this.pos += 4;
    return v;
  }

  /** Skips a field of `wire` type. */
  skip(wire: number, field: string): void {
    if (wire === 0) this.varint(field);
    else if (wire === 2) this.length(field);
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (this.end - this.pos < n) this.fail(`${this.where}.${field} is truncated`);
      this.pos += n;
    } else this.fail(`${this.where} has a field (number ${field}) of wire type ${wire}, which is not valid here`);
  }

  /** Calls `on(fieldNumber, wireType)` for each field; `on` reads the value or returns false to skip it. */
  fields(on: (num: number, wire: number) => boolean): void {
    while (this.pos < this.end) {
      const key = this.varint('key').value;
      const num = Math.floor(key / 8);
      const wire = key % 8;
      if (num === 0 || num > 536870911) this.fail(`${this.where} has an invalid field number`);
      if (!on(num, wire)) this.skip(wire, String(num));
    }
  }

  /** A sub-reader over a length-delimited field. */
  message(field: string, where: string): Reader {
    const [s, e] = this.length(field);
    return new Reader(this.buf, this.fail, where, s, e);
  }
}

function expectWire(r: Reader, wire: number, want: number, field: string): void {
  if (wire !== want) r.fail(`${r.where}.${field} has wire type ${wire} (expected ${want})`);
}

/**
 * Reads a SentencePiece `ModelProto` (a `.model` file's bytes). Only the structure is checked
 * here; {@link sentencePieceToJSON} checks what tokenization needs.
 * @param buf the file's bytes
 * @param source how messages name the file (e.g. `'dir/tokenizer.model'`, quoted)
 * @throws EmotorchError ERR_FORMAT naming the source and the field when the bytes are truncated
 *   or are not a ModelProto; messages never quote the file's content.
 */
export function parseSentencePieceModel(buf: Buffer, source: string): SentencePieceModel {
  const fail = (what: string): never => {
    throw new EmotorchError(`${source} is not a SentencePiece model: ${what}`, 'ERR_FORMAT');
  };
  const m: SentencePieceModel = {
    pieces: [],
    trainerSpec: { modelType: 1, byteFallback: false, treatWhitespaceAsSuffix: false, unkId: 0, bosId: 1, eosId: 2, padId: -1, unkSurface: ' \u2047 ' },
    normalizerSpec: { name: '', precompiledCharsmap: Buffer.alloc(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true },
    hasDenormalizer: false,
  };
  const top = new Reader(buf, fail, 'ModelProto');
  let sawTrainer = false;
  top.fields((num, wire) => {
    if (num === 1) {
      expectWire(top, wire, 2, 'pieces');
      const i = m.pieces.length;
      const r = top.message(`pieces[${i}]`, `ModelProto.pieces[${i}]`);
      const p: SentencePiece = { piece: '', score: 0, type: 'normal' };
      let hasPiece = false;
      r.fields((n, w) => {
        if (n === 1) {
          expectWire(r, w, 2, 'piece');
          p.piece = r.string('piece');
          hasPiece = true;
          return true;
        }
        if (n === 2) {
          expectWire(r, w, 5, 'score');
          p.score = r.float('score');
          return true;
        }
        if (n === 3) {
          expectWire(r, w, 0, 'type');
          const t = PIECE_TYPES[r.varint('type').lo | 0];
          if (t === undefined) r.fail(`${r.where}.type is not a known piece type`);
          p.type = t;
          return true;
        }
        return false;
      });
      if (!hasPiece) r.fail(`${r.where} has no piece string`);
      m.pieces.push(p);
      return true;
    }
    if (num === 2) {
      expectWire(top, wire, 2, 'trainer_spec');
      sawTrainer = true;
      const r = top.message('trainer_spec', 'ModelProto.trainer_spec');
      const t = m.trainerSpec;
      const int32 = (field: string): number => r.varint(field).lo | 0;
      r.fields((n, w) => {
        const ints: Record<number, [string, (v: number) => void]> = {
          3: [
            'model_type',
            (v) => {
              t.modelType = v;
            },
          ],
          40: [
            'unk_id',
            (v) => {
              t.unkId = v;
            },
          ],
          41: [
            'bos_id',
            (v) => {
              t.bosId = v;
            },
          ],
          42: [
            'eos_id',
            (v) => {
              t.eosId = v;
            },
          ],
          43: [
            'pad_id',
            (v) => {
              t.padId = v;
            },
          ],
        };
        const bools: Record<number, [string, (v: boolean) => void]> = {
          35: [
            'byte_fallback',
            (v) => {
              t.byteFallback = v;
            },
          ],
          24: [
            'treat_whitespace_as_suffix',
            (v) => {
              t.treatWhitespaceAsSuffix = v;
            },
          ],
        };
        if (ints[n]) {
          expectWire(r, w, 0, ints[n][0]);
          ints[n][1](int32(ints[n][0]));
          return true;
        }
        if (bools[n]) {
          expectWire(r, w, 0, bools[n][0]);
          bools[n][1](r.varint(bools[n][0]).nonzero);
          return true;
        }
        if (n === 44) {
          expectWire(r, w, 2, 'unk_surface');
          t.unkSurface = r.string('unk_surface');
          return true;
        }
        return false;
      });
      return true;
    }
    if (num === 3 || num === 5) {
      const name = num === 3 ? 'normalizer_spec' : 'denormalizer_spec';
      expectWire(top, wire, 2, name);
      const r = top.message(name, `ModelProto.${name}`);
      const s = num === 3 ? m.normalizerSpec : { ...m.normalizerSpec, precompiledCharsmap: Buffer.alloc(0) };
      r.fields((n, w) => {
        if (n === 1) {
          expectWire(r, w, 2, 'name');
          s.name = r.string('name');
          return true;
        }
        if (n === 2) {
          expectWire(r, w, 2, 'precompiled_charsmap');
          const [a, b] = r.length('precompiled_charsmap');
          s.precompiledCharsmap = Buffer.from(r.buf.subarray(a, b));
          return true;
        }
        const flags: Record<number, [string, (v: boolean) => void]> = {
          3: [
            'add_dummy_prefix',
            (v) => {
              s.addDummyPrefix = v;
            },
          ],
          4: [
            'remove_extra_whitespaces',
            (v) => {
              s.removeExtraWhitespaces = v;
            },
          ],
          5: [
            'escape_whitespaces',
            (v) => {
              s.escapeWhitespaces = v;
            },
          ],
        };
        if (flags[n]) {
          expectWire(r, w, 0, flags[n][0]);
          flags[n][1](r.varint(flags[n][0]).nonzero);
          return true;
        }
        return false;
      });
      if (num === 5 && s.precompiledCharsmap.length > 0) m.hasDenormalizer = true;
      return true;
    }
    return false;
  });
  if (m.pieces.length === 0) fail('it has no pieces');
  if (!sawTrainer) fail('it has no trainer_spec');
  return m;
}

/** Options of {@link sentencePieceToJSON}: the special tokens and added tokens around the model. */
export interface SentencePieceJSONOptions {
  /** Prepend the BOS piece (LlamaTokenizer's `add_bos_token`, default true). */
  addBos: boolean;
  /** Append the EOS piece (`add_eos_token`, default false). */
  addEos: boolean;
  /** BOS / EOS contents (tokenizer_config's, else the model's pieces); undefined: none. */
  bos?: string;
  eos?: string;
  /**
   * Added tokens, in id order: one that is a piece keeps the piece's id, a new one takes the next
   * id after the pieces (so the caller checks a file's ids against that).
   */
  added: { content: string; special: boolean; lstrip: boolean; rstrip: boolean; singleWord: boolean }[];
}

/** An Oniguruma-safe literal: every ASCII punctuation escaped. */
function escapeRegex(s: string): string {
  return s.replace(/[\\^$.|?*+()[\]{}\-/#&~!"%',:;<=>@_`]/g, '\\$&').replace(/ /g, '\\x20');
}

/**
 * The `tokenizer.json` object that tokenizes as `sentencepiece` does with this model (see the
 * file comment), with `opts`' special and added tokens as transformers' slow LlamaTokenizer
 * matches them: in the raw text, before the model sees each chunk between them.
 * @param m the model from {@link parseSentencePieceModel}
 * @param source how messages name the file
 * @param opts special tokens and added tokens
 * @throws EmotorchError ERR_FORMAT for what tokenization cannot run on: a model type other than
 *   BPE and Unigram, no or several unknown pieces, duplicate or empty pieces, special ids out of
 *   range, byte pieces without `byte_fallback` (or missing with it), a non-finite score,
 *   `treat_whitespace_as_suffix`, or a denormalizer.
 */
export function sentencePieceToJSON(m: SentencePieceModel, source: string, opts: SentencePieceJSONOptions): Record<string, unknown> {
  const fail = (what: string): never => {
    throw new EmotorchError(`${source}: ${what}`, 'ERR_FORMAT');
  };
  const t = m.trainerSpec;
  const ns = m.normalizerSpec;
  const type =
    t.modelType === 1
      ? 'Unigram'
      : t.modelType === 2
        ? 'BPE'
        : fail(`model type ${t.modelType} (${t.modelType === 3 ? 'WORD' : t.modelType === 4 ? 'CHAR' : 'unknown'}) is not supported (only BPE and Unigram)`);
  if (t.treatWhitespaceAsSuffix) fail('treat_whitespace_as_suffix is not supported');
  if (m.hasDenormalizer) fail('a denormalizer spec with rules is not supported');

  const ids = new Map<string, number>();
  let unk = -1;
  let bytes = 0;
  m.pieces.forEach((p, i) => {
    if (p.piece === '') fail(`piece ${i} is empty`);
    if (ids.has(p.piece)) fail(`pieces ${ids.get(p.piece)} and ${i} are the same string`);
    ids.set(p.piece, i);
    if (!Number.isFinite(p.score)) fail(`piece ${i} has a score that is not finite`);
    if (p.type === 'unknown') {
      if (unk >= 0) fail(`pieces ${unk} and ${i} are both the unknown piece`);
      unk = i;
    }
    if (p.type === 'byte') {
      if (!t.byteFallback) fail(`piece ${i} is a byte piece but byte_fallback is off`);
      if (!/^<0x[0-9A-F]{2}>$/.test(p.piece)) fail(`byte piece ${i} is not named <0xXX>`);
      bytes++;
    }
  });
  if (unk < 0) fail('it has no unknown piece');
  if (t.unkId !== unk) fail(`trainer_spec.unk_id ${t.unkId} is not the unknown piece (${unk})`);
  if (t.byteFallback) {
    for (let b = 0; b < 256; b++) {
      const id = ids.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      if (id === undefined || m.pieces[id].type !== 'byte') fail(`byte_fallback is on but the byte piece for 0x${b.toString(16).padStart(2, '0')} is missing`);
    }
    if (bytes !== 256) fail('it has byte pieces twice');
  }
  for (const [k, v] of [
    ['bos_id', t.bosId],
    ['eos_id', t.eosId],
    ['pad_id', t.padId],
  ] as const) {
    if (v < -1 || v >= m.pieces.length) fail(`trainer_spec.${k} ${v} is not a piece id`);
  }

  // --- normalizer: one chunk of text as sentencepiece's Normalizer::Normalize makes it
  const normalizers: Record<string, unknown>[] = [];
  if (ns.precompiledCharsmap.length > 0) normalizers.push({ type: 'Precompiled', precompiled_charsmap: ns.precompiledCharsmap.toString('base64') });
  if (ns.removeExtraWhitespaces) {
    normalizers.push({ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' });
    normalizers.push({ type: 'Replace', pattern: { Regex: '\\A | \\z' }, content: '' });
  }
  if (ns.addDummyPrefix) normalizers.push({ type: 'Prepend', prepend: ns.escapeWhitespaces ? '\u2581' : ' ' });
  if (ns.escapeWhitespaces) normalizers.push({ type: 'Replace', pattern: { String: ' ' }, content: '\u2581' });

  // --- user-defined symbols: matched anywhere (longest first), taken whole by the model
  const userDefined = m.pieces.filter((p) => p.type === 'user_defined').map((p) => p.piece);
  const escaped = (s: string): string => (ns.escapeWhitespaces ? s.replace(/ /g, '\u2581') : s);
  const preTokenizer =
    userDefined.length === 0
      ? null
      : {
          type: 'Split',
          pattern: {
            Regex: [...userDefined]
              .sort((a, b) => b.length - a.length)
              .map((s) => escapeRegex(escaped(s)))
              .join('|'),
          },
          behavior: 'Isolated',
          invert: false,
        };

  let model: Record<string, unknown>;
  if (type === 'Unigram') {
    model = { type: 'Unigram', unk_id: unk, vocab: m.pieces.map((p) => [p.piece, p.score]), byte_fallback: t.byteFallback };
  } else {
    const vocab: Record<string, number> = {};
    m.pieces.forEach((p, i) => {
      vocab[p.piece] = i;
    });
    // sentencepiece's BPE merges the adjacent pair whose concatenation is the best-scoring piece;
    // here every split of a normal piece into two normal pieces is a merge, ranked by that score.
    const normal = (s: string): boolean => {
      const id = ids.get(s);
      return id !== undefined && m.pieces[id].type === 'normal';
    };
    const merges: [number, number, string, string][] = [];
    m.pieces.forEach((p, i) => {
      if (p.type !== 'normal') return;
      const chars = [...p.piece];
      let at = 0;
      for (let k = 1; k < chars.length; k++) {
        at += chars[k - 1].length;
        const a = p.piece.slice(0, at);
        const b = p.piece.slice(at);
        if (normal(a) && normal(b)) merges.push([p.score, i, a, b]);
      }
    });
    merges.sort((x, y) => y[0] - x[0] || x[1] - y[1]);
    model = {
      type: 'BPE',
      dropout: null,
      unk_token: m.pieces[unk].piece,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: t.byteFallback,
      ignore_merges: userDefined.length > 0,
      vocab,
      merges: merges.map((x) => [x[2], x[3]]),
    };
  }

  // --- added tokens: the model's special pieces by their ids, then opts.added (a piece keeps its
  // id; a new token takes the next id after the pieces)
  const added = new Map<string, Record<string, unknown>>();
  for (const id of [t.unkId, t.bosId, t.eosId, t.padId]) {
    if (id >= 0)
      added.set(m.pieces[id].piece, { id, content: m.pieces[id].piece, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  }
  let next = m.pieces.length;
  for (const a of opts.added) {
    const id = ids.get(a.content) ?? (added.get(a.content)?.id as number | undefined) ?? next++;
    added.set(a.content, { id, content: a.content, single_word: a.singleWord, lstrip: a.lstrip, rstrip: a.rstrip, normalized: false, special: a.special });
  }
  const addedList = [...added.values()].sort((a, b) => (a.id as number) - (b.id as number));

  // --- post-processor: LlamaTokenizer's build_inputs_with_special_tokens
  const idOf = (s: string | undefined): number | undefined => (s === undefined ? undefined : (ids.get(s) ?? (added.get(s)?.id as number | undefined)));
  const bosId = opts.addBos ? idOf(opts.bos) : undefined;
  const eosId = opts.addEos ? idOf(opts.eos) : undefined;
  const special_tokens: Record<string, unknown> = {};
  const seq = (id: 'A' | 'B', typeId: number): unknown[] => [
    ...(bosId === undefined ? [] : [{ SpecialToken: { id: opts.bos, type_id: typeId } }]),
    { Sequence: { id, type_id: typeId } },
    ...(eosId === undefined ? [] : [{ SpecialToken: { id: opts.eos, type_id: typeId } }]),
  ];
  if (bosId !== undefined) special_tokens[opts.bos!] = { id: opts.bos, ids: [bosId], tokens: [opts.bos] };
  if (eosId !== undefined) special_tokens[opts.eos!] = { id: opts.eos, ids: [eosId], tokens: [opts.eos] };

  // --- decoder: spaces back, byte pieces to text, the dummy prefix off, the unknown piece's surface
  const decoders: Record<string, unknown>[] = [];
  if (ns.escapeWhitespaces) decoders.push({ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' });
  if (t.byteFallback) decoders.push({ type: 'ByteFallback' });
  decoders.push({ type: 'Fuse' });
  if (ns.addDummyPrefix) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  decoders.push({ type: 'Replace', pattern: { String: m.pieces[unk].piece }, content: t.unkSurface });

  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedList,
    normalizer: normalizers.length === 0 ? null : { type: 'Sequence', normalizers },
    pre_tokenizer: preTokenizer,
    post_processor: { type: 'TemplateProcessing', single: seq('A', 0), pair: [...seq('A', 0), ...seq('B', 1)], special_tokens },
    decoder: { type: 'Sequence', decoders },
    model,
  };
}

/** A special or added token of the config files, with AddedToken's flags. */
type Entry = { content: string; special: boolean; lstrip: boolean; rstrip: boolean; singleWord: boolean };

/** Throws ERR_FORMAT naming a config file (in the model's folder) and what is wrong in it. */
type Fail = (file: string, why: string) => never;

/**
 * A `.model` file with the HF config files beside it, as transformers' slow LlamaTokenizer
 * reads them: special tokens from special_tokens_map.json, else tokenizer_config.json, else the
 * model's own pieces; added tokens from added_tokens.json and `added_tokens_decoder`, which must
 * give each new token the next id after the pieces (a piece keeps its own id).
 * @param data the `.model` file's bytes
 * @param file its path, for messages
 * @param files the config files beside it
 * @throws EmotorchError ERR_FORMAT naming the file (never quoting it) for a model that does not
 *   parse or cannot run (see {@link sentencePieceToJSON}), or a config file's malformed token,
 *   flag or id.
 */
export function sentencePieceSpec(data: Buffer, file: string, files: ConfigFiles): TokenizerSpec {
  const { config, specialMap, added: addedJson } = files;
  const source = `'${file}'`;
  const dir = path.dirname(file);
  const sp = parseSentencePieceModel(data, source);
  const fmt: Fail = (f, why) => {
    throw new EmotorchError(`'${path.join(dir, f)}': ${why}`, 'ERR_FORMAT');
  };
  const { specials, extra } = specialEntries(sp, config, specialMap, fmt);
  const added = addedEntries(sp, config, addedJson, fmt);
  // The special tokens are added tokens too (new ones after those), matched in the text as the slow tokenizer does.
  const specialSet = new Set<string>();
  for (const e of [...Object.values(specials), ...extra]) {
    if (!e) continue;
    specialSet.add(e.content);
    const k = added.findIndex((a) => a.content === e.content);
    if (k >= 0) added[k] = { ...added[k], special: true };
    else added.push(e);
  }
  for (const a of added) if (specialSet.has(a.content)) a.special = true;

  const bool = (k: string, dflt: boolean): boolean => {
    if (config[k] === undefined || config[k] === null) return dflt;
    if (typeof config[k] !== 'boolean') fmt('tokenizer_config.json', `${k} is not a boolean`);
    return config[k] as boolean;
  };
  const json = sentencePieceToJSON(sp, source, {
    addBos: bool('add_bos_token', true),
    addEos: bool('add_eos_token', false),
    bos: specials.bos?.content,
    eos: specials.eos?.content,
    added,
  });
  const cfg: Record<string, unknown> = { ...config };
  for (const k of ['bos', 'eos', 'unk', 'pad'] as const) cfg[`${k}_token`] = specials[k]?.content ?? null;
  return { json, text: JSON.stringify(json), config: cfg, source, clip: false };
}

/** A config file's token (null: none), special when `special` or its own flag says so. */
function entryOf(v: unknown, f: string, name: string, special: boolean, fmt: Fail): Entry | null {
  if (v === null) return null;
  const content = tokenContent(v);
  if (content === undefined) fmt(f, `${name} is not a token (a string or an object with a "content" string)`);
  const o = isObject(v) ? v : {};
  const flag = (k: string): boolean => {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') fmt(f, `${name}.${k} is not a boolean`);
    return o[k] === true;
  };
  return { content: content!, special: special || flag('special'), lstrip: flag('lstrip'), rstrip: flag('rstrip'), singleWord: flag('single_word') };
}

/**
 * The special tokens: special_tokens_map.json wins over tokenizer_config.json; absent: the
 * model's piece. And the additional special tokens of the first file that lists them.
 */
function specialEntries(
  sp: SentencePieceModel,
  config: Record<string, unknown>,
  specialMap: Record<string, unknown>,
  fmt: Fail,
): {
  specials: Partial<Record<SpecialName, Entry | null>>;
  extra: Entry[];
} {
  const t = sp.trainerSpec;
  const specials: Partial<Record<SpecialName, Entry | null>> = {};
  const modelPiece: Record<SpecialName, number> = { bos: t.bosId, eos: t.eosId, unk: t.unkId, pad: -1 };
  for (const k of ['bos', 'eos', 'unk', 'pad'] as const) {
    const key = `${k}_token`;
    if (key in specialMap) specials[k] = entryOf(specialMap[key], 'special_tokens_map.json', key, true, fmt);
    else if (key in config) specials[k] = entryOf(config[key], 'tokenizer_config.json', key, true, fmt);
    else if (modelPiece[k] >= 0 && modelPiece[k] < sp.pieces.length) {
      specials[k] = { content: sp.pieces[modelPiece[k]].piece, special: true, lstrip: false, rstrip: false, singleWord: false };
    }
  }
  const extra: Entry[] = [];
  for (const [f, o] of [
    ['special_tokens_map.json', specialMap],
    ['tokenizer_config.json', config],
  ] as const) {
    const list = o.additional_special_tokens;
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) fmt(f, 'additional_special_tokens is not a list');
    (list as unknown[]).forEach((v, i) => {
      const e = entryOf(v, f, `additional_special_tokens[${i}]`, true, fmt);
      if (e) extra.push(e);
    });
    break;
  }
  return { specials, extra };
}

/**
 * Tokens with ids: added_tokens.json ({ content: id }) and tokenizer_config.json's
 * added_tokens_decoder ({ id: token }), in id order; a piece keeps its id, a new token takes the
 * next one after the pieces.
 */
function addedEntries(sp: SentencePieceModel, config: Record<string, unknown>, addedJson: Record<string, unknown>, fmt: Fail): Entry[] {
  const pieceIds = new Map(sp.pieces.map((p, i) => [p.piece, i]));
  const withIds: [number, Entry, string][] = [];
  for (const [content, id] of Object.entries(addedJson)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0)
      fmt('added_tokens.json', `entry ${withIds.length} has an id that is not a non-negative integer`);
    withIds.push([id as number, { content, special: false, lstrip: false, rstrip: false, singleWord: false }, 'added_tokens.json']);
  }
  const decoderTable = config.added_tokens_decoder;
  if (decoderTable !== undefined && decoderTable !== null) {
    if (!isObject(decoderTable)) fmt('tokenizer_config.json', 'added_tokens_decoder is not an object');
    for (const [key, v] of Object.entries(decoderTable as Record<string, unknown>)) {
      const id = Number(key);
      if (!/^\d+$/.test(key) || !Number.isSafeInteger(id)) fmt('tokenizer_config.json', 'added_tokens_decoder has a key that is not an id');
      withIds.push([
        id,
        entryOf(v, 'tokenizer_config.json', `added_tokens_decoder[${id}]`, false, fmt) ?? fmt('tokenizer_config.json', `added_tokens_decoder[${id}] is null`),
        'tokenizer_config.json',
      ]);
    }
  }
  withIds.sort((a, b) => a[0] - b[0]);
  const added: Entry[] = [];
  const addedIds = new Map<string, number>();
  let next = sp.pieces.length;
  for (const [id, e, f] of withIds) {
    const own = pieceIds.get(e.content) ?? addedIds.get(e.content);
    if (own !== undefined) {
      if (own !== id) fmt(f, `the added token with id ${id} is already token ${own}`);
    } else {
      if (id !== next) fmt(f, `the added token with id ${id} does not follow the ${next} tokens before it (ids must run on from the model's pieces)`);
      addedIds.set(e.content, next++);
    }
    added.push(e);
  }
  return added;
}
