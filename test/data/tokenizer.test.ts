import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const { Tokenizer } = et.data;
type Tok = et.data.Tokenizer;
type Name = 'bytelevel' | 'llama' | 'usdm' | 'mistral_usdm';

// Written by scripts/fixtures/tokenizers.py with the Python `tokenizers` library.
const DIR = path.join(FIXTURES, 'tokenizers');
interface Case {
  ids: number[];
  ids_no_special: number[];
  tokens_no_special: string[];
  decode: string;
  decode_skip_special: string;
}
interface Batch {
  padding: 'longest' | 'max_length';
  pad_side: 'right' | 'left';
  max_length: number | null;
  truncation: boolean;
  truncation_side: 'right' | 'left';
  pad_token_id: number;
  input_ids: number[][];
  attention_mask: number[][];
}
interface Ref {
  vocab_size: number;
  vocab_size_no_added: number;
  token_to_id: Record<string, number | null>;
  id_to_token: Record<string, string>;
  cases: Case[];
  batches: Record<string, Batch>;
  decode_extra: { ids: number[]; decode: string }[];
}
const cases = JSON.parse(fs.readFileSync(path.join(DIR, 'cases.json'), 'utf8')) as {
  texts: string[];
  batch_texts: string[];
  usdm_added: { method: 'add_special_tokens' | 'add_tokens'; tokens: string[] | { pattern: string; range: [number, number] }; returned: number }[];
  tokenizers: Record<Name, Ref>;
  metaspace_decoding: { tokenizer: Record<string, unknown>; ids: number[][]; decode: string[] }[];
  edge: {
    ops: { method: 'add_special_tokens' | 'add_tokens'; tokens: string[]; returned: number }[];
    token_to_id: Record<string, number>;
    vocab_size: number;
    texts: string[];
    ids: number[][];
    decode_skip_special: string[];
  };
};

/** The "usdm" tokenizer of cases.json: llama plus USDM's tokens, added the way the generator did. */
function addUsdmTokens(tok: Tok): number[] {
  return cases.usdm_added.map(({ method, tokens }) => {
    const list = Array.isArray(tokens) ? tokens : Array.from({ length: tokens.range[1] - tokens.range[0] }, (_, i) => `<|unit${tokens.range[0] + i}|>`);
    return method === 'add_special_tokens' ? tok.addSpecialTokens(list) : tok.addTokens(list);
  });
}

const toks = {} as Record<Name, Tok>;
beforeAll(async () => {
  toks.bytelevel = await Tokenizer.fromFile(path.join(DIR, 'bytelevel', 'tokenizer.json'));
  toks.llama = await Tokenizer.fromFile(path.join(DIR, 'llama'));
  toks.usdm = Tokenizer.fromFileSync(path.join(DIR, 'llama', 'tokenizer.json'));
  expect(addUsdmTokens(toks.usdm)).toEqual(cases.usdm_added.map((a) => a.returned));
  toks.mistral_usdm = await Tokenizer.fromFile(path.join(DIR, 'mistral'));
  expect(addUsdmTokens(toks.mistral_usdm)).toEqual(cases.usdm_added.map((a) => a.returned));
});

describe.each(['bytelevel', 'llama', 'usdm', 'mistral_usdm'] as const)('Tokenizer parity with the Python tokenizers library: %s', (name) => {
  const ref = cases.tokenizers[name];

  it(`encodes all ${cases.texts.length} texts to the same ids, with and without special tokens, and the same tokens`, async () => {
    const tok = toks[name];
    const bad: string[] = [];
    for (const [i, text] of cases.texts.entries()) {
      const c = ref.cases[i];
      const [a, b, t] = await Promise.all([tok.encode(text), tok.encode(text, { addSpecialTokens: false }), tok.tokenize(text)]);
      if (JSON.stringify(a) !== JSON.stringify(c.ids)) bad.push(`#${i} ${JSON.stringify(text)} ids: ${a} vs ${c.ids}`);
      if (JSON.stringify(b) !== JSON.stringify(c.ids_no_special)) bad.push(`#${i} ${JSON.stringify(text)} ids (no special): ${b} vs ${c.ids_no_special}`);
      // (bytelevel's <mask> is lstrip: its token is the matched text with the spaces it absorbed, " <mask>")
      if (JSON.stringify(t) !== JSON.stringify(c.tokens_no_special)) bad.push(`#${i} ${JSON.stringify(text)} tokens: ${t} vs ${c.tokens_no_special}`);
    }
    expect(bad).toEqual([]);
  });

  it('decodes the same text, with and without special tokens', async () => {
    const tok = toks[name];
    const bad: string[] = [];
    for (const [i, c] of ref.cases.entries()) {
      const [d, s] = await Promise.all([tok.decode(c.ids), tok.decode(c.ids, { skipSpecialTokens: true })]);
      if (d !== c.decode) bad.push(`#${i} decode ${JSON.stringify(d)} vs ${JSON.stringify(c.decode)}`);
      if (s !== c.decode_skip_special) bad.push(`#${i} decode(skip) ${JSON.stringify(s)} vs ${JSON.stringify(c.decode_skip_special)}`);
    }
    for (const { ids, decode } of ref.decode_extra) expect(await tok.decode(ids)).toBe(decode);
    expect(bad).toEqual([]);
  });

  it('round-trips text through encode and decode', async () => {
    const tok = toks[name];
    // Texts whose decode differs are those the pre-tokenizer cannot give back exactly: the
    // Metaspace decoder drops the first leading space, and <mask>'s lstrip eats spaces.
    let same = 0;
    for (const text of cases.texts) if ((await tok.decode(await tok.encode(text), { skipSpecialTokens: true })) === text) same++;
    const expected = cases.texts.filter((_, i) => ref.cases[i].decode_skip_special === cases.texts[i]).length;
    console.log(`${name}: ${same} of ${cases.texts.length} texts round-trip exactly`);
    expect(same).toBe(expected);
    expect(await tok.decode(await tok.encode('Hello world! 我很高兴 😀'), { skipSpecialTokens: true })).toBe('Hello world! 我很高兴 😀');
  });

  it('has the same vocabulary sizes and token ids', () => {
    const tok = toks[name];
    expect(tok.vocabSize).toBe(ref.vocab_size);
    expect(tok.getVocabSize(false)).toBe(ref.vocab_size_no_added);
    for (const [t, id] of Object.entries(ref.token_to_id)) expect(tok.tokenToId(t)).toBe(id ?? undefined);
    // (in mistral_usdm the normalized added tokens read back as '▁<|unit0|>', as in Rust)
    for (const [id, t] of Object.entries(ref.id_to_token)) expect(tok.idToToken(Number(id))).toBe(t);
    expect(tok.idToToken(10 ** 6)).toBeUndefined();
  });

  it.each(Object.keys(ref.batches))('encodeBatch matches encode_batch with padding/truncation: %s', async (b) => {
    const r = ref.batches[b];
    const out = await toks[name].encodeBatch(cases.batch_texts, {
      padding: r.padding,
      padSide: r.pad_side,
      maxLength: r.max_length ?? undefined,
      truncation: r.truncation,
      truncationSide: r.truncation_side,
      padTokenId: r.pad_token_id,
    });
    expect(out.inputIds).toEqual(r.input_ids);
    expect(out.attentionMask).toEqual(r.attention_mask);
  });
});

describe('Tokenizer', () => {
  it('reads pad/bos/eos from tokenizer_config.json beside tokenizer.json', async () => {
    expect([toks.bytelevel.padTokenId, toks.bytelevel.bosTokenId, toks.bytelevel.eosTokenId, toks.bytelevel.unkTokenId]).toEqual([1, 0, 2, 3]);
    expect([toks.llama.padTokenId, toks.llama.bosTokenId, toks.llama.eosTokenId]).toEqual([undefined, 1, 2]);
    // without a config there are none
    const bare = Tokenizer.fromJSON(JSON.parse(fs.readFileSync(path.join(DIR, 'llama', 'tokenizer.json'), 'utf8')));
    expect([bare.padTokenId, bare.bosTokenId, bare.eosTokenId]).toEqual([undefined, undefined, undefined]);
    expect(await bare.encode('hi')).toEqual(await toks.llama.encode('hi'));
    // the older { content } form, and setting the pad token
    const t = Tokenizer.fromJSON(toks.llama.toJSON(), { pad_token: { content: '</s>', lstrip: false }, eos_token: '</s>' });
    expect(t.padTokenId).toBe(2);
    t.padToken = '<unk>';
    expect(t.padTokenId).toBe(0);
    throwsWith(
      () => {
        t.padToken = '<nope>';
      },
      'ERR_INVALID_ARG',
      /Expected a token of the vocabulary \(or undefined\) for padToken but received "<nope>"/,
    );
  });

  it("decodes with Rust's Metaspace decoder (every ▁ of the first token dropped; prepend_scheme 'never' kept)", async () => {
    for (const m of cases.metaspace_decoding) {
      const tok = Tokenizer.fromJSON(m.tokenizer);
      expect(await Promise.all(m.ids.map((ids) => tok.decode(ids)))).toEqual(m.decode);
    }
  });

  it('pads left and right with attention masks, truncates keeping special tokens, and returns int64 tensors', async () => {
    const tok = toks.bytelevel;
    const a = await tok.encode('Hello world!');
    const b = await tok.encode('hi');
    const right = await tok.encodeBatch(['Hello world!', 'hi'], { padding: 'longest' });
    expect(right.inputIds).toEqual([a, [...b, ...Array(a.length - b.length).fill(1)]]);
    expect(right.attentionMask).toEqual([a.map(() => 1), [...b.map(() => 1), ...Array(a.length - b.length).fill(0)]]);
    const left = await tok.encodeBatch(['Hello world!', 'hi'], { padding: true, padSide: 'left' });
    expect(left.inputIds[1]).toEqual([...Array(a.length - b.length).fill(1), ...b]);
    expect(left.attentionMask[1]).toEqual([...Array(a.length - b.length).fill(0), ...b.map(() => 1)]);
    // no padding: ragged lists, all-ones masks
    const none = await tok.encodeBatch(['Hello world!', 'hi']);
    expect(none.inputIds).toEqual([a, b]);
    expect(none.attentionMask).toEqual([a.map(() => 1), b.map(() => 1)]);
    // truncation keeps <s> … </s>
    const cut = await tok.encodeBatch(['Hello world!', 'hi'], { truncation: true, maxLength: 3 });
    expect(cut.inputIds).toEqual([
      [0, a[1], 2],
      [0, b[1], 2],
    ]);
    expect((await tok.encodeBatch(['Hello world!'], { truncation: true, maxLength: 3, truncationSide: 'left' })).inputIds).toEqual([[0, a[a.length - 2], 2]]);
    expect((await tok.encodeBatch(['Hello world!'], { truncation: true, maxLength: 2, addSpecialTokens: false })).inputIds).toEqual([a.slice(1, 3)]);
    // max_length pads past the longest; a longer text without truncation stays longer
    const fixed = await tok.encodeBatch(['hi', 'Hello world!'], { padding: 'max_length', maxLength: 4 });
    expect(fixed.inputIds.map((r) => r.length)).toEqual([4, a.length]);
    // tensors
    const t = await tok.encodeBatch(['Hello world!', 'hi'], { padding: 'longest', returnTensors: true });
    expect(t.inputIds.shape).toEqual([2, a.length]);
    expect(t.inputIds.dtype).toBe('int64');
    expect(t.attentionMask.dtype).toBe('int64');
    expect(Array.from(t.inputIds.dataSync() as BigInt64Array, Number)).toEqual(right.inputIds.flat());
    expect(Array.from(t.attentionMask.dataSync() as BigInt64Array, Number)).toEqual(right.attentionMask.flat());
    // the llama tokenizer has no pad token: padTokenId must be given
    expect((await toks.llama.encodeBatch(['a b c', 'a'], { padding: 'longest', padTokenId: 2 })).inputIds[1].slice(-1)).toEqual([2]);
    // decode accepts a tensor's BigInt64Array
    expect(await tok.decode(t.inputIds.dataSync() as BigInt64Array, { skipSpecialTokens: true })).toBe('Hello world!hi');
    expect(await tok.encodeBatch([])).toEqual({ inputIds: [], attentionMask: [] });
  });

  it('encodeBatch calls with different truncation and padding run concurrently without affecting each other', async () => {
    const ref = cases.tokenizers.usdm.batches;
    const run = (r: Batch) =>
      toks.usdm.encodeBatch(cases.batch_texts, {
        padding: r.padding,
        padSide: r.pad_side,
        maxLength: r.max_length ?? undefined,
        truncation: r.truncation,
        truncationSide: r.truncation_side,
        padTokenId: r.pad_token_id,
      });
    const all = Object.values(ref);
    const outs = await Promise.all([...all, ...all].map(run));
    outs.forEach((o, k) => expect(o.inputIds).toEqual(all[k % all.length].input_ids));
  });

  it("cleans up decoded text as transformers' clean_up_tokenization does, when asked or configured", async () => {
    // Written by scripts/fixtures/tokenizer_cleanup.py with transformers.
    const ref = JSON.parse(fs.readFileSync(path.join(DIR, 'cleanup.json'), 'utf8')) as { ids: number[][]; clean: string[] };
    const configured = Tokenizer.fromJSON(toks.bytelevel.toJSON(), { clean_up_tokenization_spaces: true });
    let changed = 0;
    for (const [i, ids] of ref.ids.entries()) {
      const plain = await toks.bytelevel.decode(ids);
      expect(await toks.bytelevel.decode(ids, { cleanUpTokenizationSpaces: true })).toBe(ref.clean[i]);
      expect(await configured.decode(ids)).toBe(ref.clean[i]);
      expect(await configured.decode(ids, { cleanUpTokenizationSpaces: false })).toBe(plain);
      if (plain !== ref.clean[i]) changed++;
    }
    expect(changed).toBeGreaterThan(100);
    throwsWith(
      () => Tokenizer.fromJSON(toks.llama.toJSON(), { clean_up_tokenization_spaces: 'yes' as never }),
      'ERR_FORMAT',
      /clean_up_tokenization_spaces .* is not a boolean/,
    );
  });

  it('runs a SentencePiece Unigram tokenizer with a Precompiled normalizer as the Python library does', async () => {
    // Written by scripts/fixtures/tokenizer_precompiled.py with sentencepiece and the Python `tokenizers` library.
    const ref = JSON.parse(fs.readFileSync(path.join(DIR, 'unigram.json'), 'utf8')) as { cases: { ids: number[]; tokens: string[]; decode: string }[] };
    const tok = await Tokenizer.fromFile(path.join(DIR, 'unigram'));
    const bad: string[] = [];
    for (const [i, text] of cases.texts.entries()) {
      const c = ref.cases[i];
      const [ids, tokens] = await Promise.all([tok.encode(text), tok.tokenize(text)]);
      if (JSON.stringify(ids) !== JSON.stringify(c.ids)) bad.push(`#${i} ids ${ids} vs ${c.ids}`);
      if (JSON.stringify(tokens) !== JSON.stringify(c.tokens)) bad.push(`#${i} tokens ${tokens} vs ${c.tokens}`);
      if ((await tok.decode(c.ids)) !== c.decode) bad.push(`#${i} decode`);
    }
    expect(bad).toEqual([]);
    // the normalizer's rules are in use: full-width letters and the ligature become ASCII
    expect(await tok.tokenize('ＦＵＬＬ ﬁ')).toEqual(await tok.tokenize('FULL fi'));
  });

  it('refuses a precompiled_charsmap that would abort the process inside the library (ERR_FORMAT, at load)', async () => {
    const json = JSON.parse(fs.readFileSync(path.join(DIR, 'unigram', 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const good = (json.normalizer as { precompiled_charsmap: string }).precompiled_charsmap;
    /** A charsmap: the trie size, these units, then the strings. */
    const charsmap = (units: number[], strings: string | Buffer): string => {
      const b = Buffer.alloc(4 + 4 * units.length);
      b.writeUInt32LE(4 * units.length, 0);
      units.forEach((u, i) => b.writeUInt32LE(u >>> 0, 4 + 4 * i));
      return Buffer.concat([b, Buffer.from(strings)]).toString('base64');
    };
    const raw = Buffer.from(good, 'base64');
    const n = raw.readUInt32LE(0) / 4;
    const offsets = Buffer.from(raw); // every leaf's string offset past the strings
    for (let i = 0; i < n; i++) {
      const u = offsets.readUInt32LE(4 + 4 * i);
      if ((u >>> 8) & 1) {
        const leaf = i ^ ((u >>> 10) * (u & 0x200 ? 256 : 1));
        offsets.writeUInt32LE(raw.length, 4 + 4 * leaf);
      }
    }
    const cases: [unknown, RegExp][] = [
      ['', /has no trie size/],
      [5, /is not a string/],
      ['AQI=', /has no trie size/],
      ['!!!!', /is not canonical base64/],
      [charsmap([], ''), /has an empty trie/],
      [charsmap([0xffffffff, 0x12345678, 7, 0xdeadbeef], 'abc\0'), /points outside itself/],
      [charsmap([(1 << 10) | 0x7fffffff, 0, 5], 'x'), /points outside itself/],
      [charsmap([0, 0xffffff00, 0x80000001], '\0'), /points outside itself/],
      [Buffer.from([16, 0, 0, 0, 1, 2]).toString('base64'), /is shorter than its trie/],
      [charsmap([0], Buffer.from([0xff, 0xfe])), /not UTF-8/],
      [offsets.toString('base64'), /string offset outside its strings/],
    ];
    for (const [cm, re] of cases) {
      const bad = { ...json, normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Precompiled', precompiled_charsmap: cm }] } };
      throwsWith(() => Tokenizer.fromJSON(bad), 'ERR_FORMAT', new RegExp(`precompiled_charsmap .*${re.source}`));
    }
    expect(await Tokenizer.fromJSON({ ...json, normalizer: { type: 'Precompiled', precompiled_charsmap: good } }).encode('ＡＢ')).toEqual(
      await Tokenizer.fromJSON(json).encode('AB'),
    );
  });

  it("refuses the other tokenizer.json parts that abort the process inside the library, and ignores the file's truncation and padding", async () => {
    const bpe = (model: Record<string, unknown>, rest: Record<string, unknown> = {}) => ({
      ...rest,
      model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2, '##b': 3 }, merges: ['a b'], ...model },
    });
    // a merged token longer than every vocabulary token; a right side shorter than the prefix
    throwsWith(() => Tokenizer.fromJSON(bpe({ vocab: { a: 0, b: 1 } })), 'ERR_FORMAT', /merges\[0\] makes a token that is not in the vocabulary$/);
    throwsWith(() => Tokenizer.fromJSON(bpe({ merges: [['a', 'b']], continuing_subword_prefix: '####' })), 'ERR_FORMAT', /merges\[0\]/);
    expect(await Tokenizer.fromJSON(bpe({ merges: ['a ##b'], vocab: { a: 0, '##b': 1, ab: 2 }, continuing_subword_prefix: '##' })).encode('ab')).toEqual([2]);
    // (the library's own refusal, not an abort: the merged token fits but is not there)
    throwsWith(() => Tokenizer.fromJSON(bpe({ vocab: { a: 0, b: 1, xy: 2 } })), 'ERR_FORMAT', /unsupported or malformed tokenizer \(.*ab/);
    // a Strip decoder that strips at the end (Mistral's strips one at the start: fine)
    throwsWith(
      () => Tokenizer.fromJSON(bpe({}, { decoder: { type: 'Sequence', decoders: [{ type: 'Strip', content: 'a', start: 0, stop: 2 }] } })),
      'ERR_FORMAT',
      /a Strip decoder with stop 2 is not supported/,
    );
    expect(await Tokenizer.fromJSON(bpe({}, { decoder: { type: 'Strip', content: 'a', start: 5, stop: 0 } })).decode([0, 0])).toBe('');
    // a Replace normalizer whose pattern matches the empty string (then NFC indexes past its alignments)
    for (const pattern of [{ String: '' }, { Regex: '' }, { Regex: 'x*' }, { Regex: '\\b' }]) {
      const normalizer = { type: 'Sequence', normalizers: [{ type: 'Replace', pattern, content: '_' }, { type: 'NFC' }] };
      throwsWith(() => Tokenizer.fromJSON(bpe({}, { normalizer })), 'ERR_FORMAT', /a Replace normalizer whose pattern matches the empty string/);
    }
    const spaces = { type: 'Sequence', normalizers: [{ type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' }, { type: 'NFC' }] };
    expect(await Tokenizer.fromJSON(bpe({}, { normalizer: spaces })).encode('ab')).toEqual([2]);
    // the file's truncation (with a stride the library would abort on) and padding are not applied
    const file = bpe(
      {},
      {
        truncation: { direction: 'Right', max_length: 1, strategy: 'LongestFirst', stride: 5 },
        padding: { strategy: { Fixed: 8 }, direction: 'Right', pad_to_multiple_of: null, pad_id: 1, pad_type_id: 0, pad_token: 'b' },
      },
    );
    expect(await Tokenizer.fromJSON(file).encode('ab a a')).toEqual([2, 0, 0]);
  });

  it('refuses added tokens the library aborts the process on at encode (an empty normalized form; whitespace with lstrip beside rstrip)', async () => {
    const json = toks.bytelevel.toJSON();
    json.normalizer = { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: false };
    const tok = Tokenizer.fromJSON(json);
    // a soft hyphen normalizes to '' (clean_text): matched as '', it splits inside 'ａ' and '我'
    throwsWith(() => tok.addTokens(['\u00ad']), 'ERR_INVALID_ARG', /the added token "\u00ad" normalizes to an empty string/);
    expect(tok.addTokens(['\u00ad'], { normalized: false })).toBe(1);
    expect(await tok.encode('ａ我 \u00ad b')).toContain(tok.tokenToId('\u00ad'));
    const file = {
      ...json,
      added_tokens: [
        ...json.added_tokens!,
        { id: 2000, content: '\u00ad', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
      ],
    };
    throwsWith(() => Tokenizer.fromJSON(file), 'ERR_FORMAT', /tokenizer JSON: the added token number \d+ normalizes to an empty string/);
    // "<r>  " absorbs the spaces a whitespace token with lstrip matched
    const ws = Tokenizer.fromJSON(toks.bytelevel.toJSON());
    expect(ws.addTokens(['<r>'], { rstrip: true, special: true })).toBe(1);
    throwsWith(() => ws.addTokens(['  '], { lstrip: true }), 'ERR_INVALID_ARG', /the added token "  " is whitespace with lstrip while a token has rstrip/);
    expect(ws.addTokens(['  '])).toBe(1); // without lstrip it cannot end before it starts
    expect(ws.addTokens([' x'], { lstrip: true })).toBe(1);
    expect((await ws.encode('<r>    x  b')).length).toBeGreaterThan(2);
  });

  it('reports what the library cannot do as ERR_FORMAT: an unknown character without an unknown token, a vocabulary too sparse to write', async () => {
    const tok = Tokenizer.fromJSON({
      model: {
        type: 'Unigram',
        unk_id: null,
        vocab: [
          ['a', -1],
          ['b', -1],
        ],
      },
    });
    expect(await tok.encode('ab')).toEqual([0, 1]);
    await rejectsWith(tok.encode('abc'), 'ERR_FORMAT', /tokenizer JSON: cannot encode the text \(.*unk_id/);
    await rejectsWith(tok.tokenize('c'), 'ERR_FORMAT', /cannot encode the text/);
    await rejectsWith(tok.encodeBatch(['a', 'c']), 'ERR_FORMAT', /cannot encode the texts/);
    const wordLevel = Tokenizer.fromJSON({ model: { type: 'WordLevel', vocab: { a: 0 }, unk_token: '<unk>' } });
    await rejectsWith(wordLevel.encode('b'), 'ERR_FORMAT', /Missing \[UNK\] token/);
    // the library would write every id up to 2^31 (a hang)
    const sparse = Tokenizer.fromJSON({ model: { type: 'BPE', vocab: { a: 0, b: 2 ** 31 }, merges: [] } });
    expect(await sparse.encode('ba')).toEqual([2 ** 31, 0]);
    throwsWith(() => sparse.toJSON(), 'ERR_FORMAT', /cannot serialize a vocabulary of 2 tokens with ids up to 2147483648/);
  });

  it('drops ids that name no token, those past 2^32 included (the library would wrap them around)', async () => {
    const tok = toks.bytelevel;
    const ids = await tok.encode('Hello world');
    const d = await tok.decode(ids);
    expect(await tok.decode([...ids, 2 ** 32 + ids[1], 2 ** 40])).toBe(d);
    expect(tok.idToToken(2 ** 32 + ids[1])).toBeUndefined();
  });

  it('adds tokens with the ids the Python library gives (edge cases: duplicates, empty, vocabulary tokens, flag updates)', async () => {
    const tok = Tokenizer.fromFileSync(path.join(DIR, 'bytelevel'));
    const e = cases.edge;
    expect(e.ops.map((op) => (op.method === 'add_special_tokens' ? tok.addSpecialTokens(op.tokens) : tok.addTokens(op.tokens)))).toEqual(
      e.ops.map((op) => op.returned),
    );
    for (const [t, id] of Object.entries(e.token_to_id)) expect(tok.tokenToId(t)).toBe(id);
    expect(tok.vocabSize).toBe(e.vocab_size);
    for (const [i, text] of e.texts.entries()) {
      expect(await tok.encode(text)).toEqual(e.ids[i]);
      expect(await tok.decode(e.ids[i], { skipSpecialTokens: true })).toBe(e.decode_skip_special[i]);
    }
    // re-adding is a no-op; toJSON carries the added tokens into a new tokenizer
    expect(tok.addTokens(['hello'])).toBe(0);
    const copy = Tokenizer.fromJSON(tok.toJSON());
    expect(await copy.encode(e.texts[0])).toEqual(e.ids[0]);
    // toJSON is what Python's to_str() writes: '<extra>' carries the flags of its last add (not
    // special), though, as decode_skip_special shows, it stays in the special set.
    expect(tok.addedTokens.find((t) => t.content === '<extra>')).toMatchObject({ id: 1502, special: false, normalized: true });
  });

  it('puts USDM tokens at 32000… on a 32000-token vocabulary, as in the reference', async () => {
    // A Mistral-shaped vocabulary: <unk> <s> </s> (also added tokens), 256 byte tokens, pieces.
    const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
    for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
    for (let i = 259; i < 32000; i++) vocab[`▁p${i}`] = i;
    const json = toks.llama.toJSON();
    json.model = { ...json.model, vocab, merges: [] };
    const tok = Tokenizer.fromJSON(json, { bos_token: '<s>', eos_token: '</s>' });
    expect(tok.vocabSize).toBe(32000);
    expect(tok.addSpecialTokens(['<|continue|>', '<|correspond|>'])).toBe(2);
    expect(tok.addTokens(Array.from({ length: 10000 }, (_, i) => `<|unit${i}|>`))).toBe(10000);
    expect(tok.addSpecialTokens(['<pad>'])).toBe(1);
    expect(['<|continue|>', '<|correspond|>', '<|unit0|>', '<|unit9999|>', '<pad>'].map((t) => tok.tokenToId(t))).toEqual([32000, 32001, 32002, 42001, 42002]);
    expect(tok.vocabSize).toBe(42003);
    tok.padToken = '<pad>';
    expect(tok.padTokenId).toBe(42002);
    expect(await tok.encode('<|unit12|><|correspond|>', { addSpecialTokens: false })).toEqual([32014, 32001]);
    expect(await tok.decode([1, 32014, 32001, 42002], { skipSpecialTokens: true })).toBe('<|unit12|>');
  });

  it('builds USDM examples with the real tokenizer and yields the loss spans', async () => {
    const tok = toks.usdm;
    const turn = { userUnits: [5, 17, 9999], userText: 'I lost my keys…', agentText: "Oh no, let's look together.", agentUnits: [0, 42] };
    // buildUsdmExample wants no BOS/EOS from encode: pass encode without special tokens.
    const plain = { encode: (s: string) => tok.encode(s, { addSpecialTokens: false }) };
    const ex = await et.data.usdm.buildUsdmExample(turn, plain, { bos: tok.bosTokenId });
    expect(ex.ids.length).toBe(ex.labels.length);
    expect(ex.ids[0]).toBe(1);
    const id = (t: string) => tok.tokenToId(t)!;
    expect(ex.ids.filter((x) => x === id('<|correspond|>')).length).toBe(2);
    expect(ex.ids.slice(-1)).toEqual([id('</s>')]);
    for (const u of [5, 17, 9999, 0, 42]) expect(ex.ids).toContain(id(`<|unit${u}|>`));
    // the trained spans, decoded
    const spans: number[][] = [];
    let run: number[] = [];
    ex.labels.forEach((l, k) => {
      if (l !== -100) {
        expect(l).toBe(ex.ids[k]);
        run.push(l);
      } else if (run.length) {
        spans.push(run);
        run = [];
      }
    });
    if (run.length) spans.push(run);
    expect(await Promise.all(spans.map((s) => tok.decode(s)))).toEqual(['I lost my keys…\n', "Oh no, let's look together.<|correspond|><|unit0|><|unit42|>"]);
    expect(ex.labels[ex.ids.indexOf(id('<|unit5|>'))]).toBe(-100);
    expect(ex.labels[ex.labels.length - 1]).toBe(-100);
    // Each template piece is encoded on its own, so with this SentencePiece-style tokenizer
    // (prepend_scheme "first") every piece that starts with text gets a "▁" of its own: the ids
    // differ from encoding the whole text at once ("▁I" for "I", and two extra "▁").
    expect(await tok.decode(await tok.encode(ex.text))).toBe(`<s> ${ex.text}`);
    expect(await tok.decode(ex.ids)).toBe(
      `<s> ${ex.text}`
        .replace('<|correspond|>I lost', '<|correspond|> I lost')
        .replace('\n### Agent\nOh', '\n ### Agent\n Oh')
        .replace('<|unit42|>\n</s>', '<|unit42|> \n</s>'),
    );
    expect(ex.ids.length - 1).toBe((await tok.encode(ex.text, { addSpecialTokens: false })).length + 2);
  });

  it('refuses a post-processor template that names an undefined special token or sequence (the library panics at encode)', async () => {
    const wl = (single: unknown[], pair: unknown[], special_tokens: Record<string, unknown> = {}) => ({
      model: { type: 'WordLevel', vocab: { a: 0, '<s>': 1, '[UNK]': 2 }, unk_token: '[UNK]' },
      pre_tokenizer: { type: 'Whitespace' },
      post_processor: { type: 'TemplateProcessing', single, pair, special_tokens },
    });
    const A = { Sequence: { id: 'A', type_id: 0 } };
    const B = { Sequence: { id: 'B', type_id: 1 } };
    const S = (id: string) => ({ SpecialToken: { id, type_id: 0 } });
    throwsWith(
      () => Tokenizer.fromJSON(wl([S('<x>'), A], [A, B])),
      'ERR_FORMAT',
      /single template \(item 0\) names a special token that its special_tokens do not define/,
    );
    throwsWith(() => Tokenizer.fromJSON(wl([A], [S('<y>'), A, B])), 'ERR_FORMAT', /pair template \(item 0\) names a special token/);
    throwsWith(() => Tokenizer.fromJSON(wl([B], [A, B])), 'ERR_FORMAT', /single template \(item 0\) names a sequence other than A$/);
    throwsWith(
      () => Tokenizer.fromJSON({ ...wl([A], [A, B]), post_processor: { type: 'Sequence', processors: [wl([S('<x>'), A], [A, B]).post_processor] } }),
      'ERR_FORMAT',
      /names a special token/,
    );
    // defined under another key than its id
    throwsWith(() => Tokenizer.fromJSON(wl([S('<s>'), A], [A, B], { '<s>': { id: '<t>', ids: [1], tokens: ['<s>'] } })), 'ERR_FORMAT', /names a special token/);
    const ok = Tokenizer.fromJSON(wl([S('<s>'), A], [S('<s>'), A, B], { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } }));
    expect(await ok.encode('a a')).toEqual([1, 0, 0]);
  });

  it('refuses a FIFO or a device at once, and never quotes the file in its messages', async () => {
    const dir = tmpdir();
    const fifo = path.join(dir, 'tokenizer.json');
    execFileSync('mkfifo', [fifo]);
    await rejectsWith(Tokenizer.fromFile(fifo), 'ERR_IO', /it is a FIFO \(named pipe\), not a regular file/);
    throwsWith(() => Tokenizer.fromFileSync(dir), 'ERR_IO', /it is a FIFO/);
    await rejectsWith(Tokenizer.fromFile('/dev/urandom'), 'ERR_IO', /it is a character device/);
    throwsWith(() => Tokenizer.fromFileSync('/dev/zero'), 'ERR_IO', /it is a character device/);
    const secret = 'SECRET-CONTENT-1234';
    const cases: [string, string][] = [
      ['tokenizer.json', `not json ${secret}`],
      ['tokenizer.json', `{"model": {"type": "${secret}"}}`],
      ['tokenizer.json', `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "${secret}"}}`],
      ['tokenizer.json', `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": 5, "x": "${secret}"}}`],
      ['tokenizer.model', `${secret}${secret}`],
    ];
    for (const [name, text] of cases) {
      const sub = fs.mkdtempSync(path.join(dir, 'q'));
      fs.writeFileSync(path.join(sub, name), text);
      const e = await rejectsWith(Tokenizer.fromFile(sub), 'ERR_FORMAT');
      expect(e.message).not.toContain('SECRET');
    }
    const sub = fs.mkdtempSync(path.join(dir, 'q'));
    fs.copyFileSync(path.join(DIR, 'llama', 'tokenizer.json'), path.join(sub, 'tokenizer.json'));
    fs.writeFileSync(path.join(sub, 'tokenizer_config.json'), `{"pad_token": ${secret}}`);
    expect((await rejectsWith(Tokenizer.fromFile(sub), 'ERR_FORMAT')).message).not.toContain('SECRET');
  });

  it('reports bad input with codes and named files', async () => {
    const dir = tmpdir();
    await rejectsWith(Tokenizer.fromFile(path.join(dir, 'missing.json')), 'ERR_IO', /cannot read '.*missing\.json'/);
    throwsWith(() => Tokenizer.fromFileSync(path.join(dir, 'missing.json')), 'ERR_IO', /missing\.json/);
    await rejectsWith(Tokenizer.fromFile(dir), 'ERR_IO', /tokenizer\.json'/);
    const corrupt = path.join(dir, 'corrupt.json');
    fs.writeFileSync(corrupt, '{"model": {"type": "BPE", "vocab": {');
    await rejectsWith(Tokenizer.fromFile(corrupt), 'ERR_FORMAT', /'.*corrupt\.json' is not JSON \(a syntax error at character \d+|it ends too early\)/);
    throwsWith(() => Tokenizer.fromFileSync(corrupt), 'ERR_FORMAT', /corrupt\.json' is not JSON/);
    fs.writeFileSync(corrupt, '[1, 2]');
    await rejectsWith(Tokenizer.fromFile(corrupt), 'ERR_FORMAT', /corrupt\.json' is not a tokenizer\.json/);
    fs.writeFileSync(corrupt, '{"version": "1.0"}');
    await rejectsWith(Tokenizer.fromFile(corrupt), 'ERR_FORMAT', /corrupt\.json' is not a tokenizer\.json \(it has no "model" object\)/);
    fs.writeFileSync(corrupt, JSON.stringify({ model: { type: 'Nonsense', vocab: 3 } }));
    await rejectsWith(Tokenizer.fromFile(corrupt), 'ERR_FORMAT', /corrupt\.json': unsupported model type \(supported: BPE, WordPiece, WordLevel, Unigram\)$/);
    fs.writeFileSync(corrupt, JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 }, merges: 5 } }));
    await rejectsWith(Tokenizer.fromFile(corrupt), 'ERR_FORMAT', /corrupt\.json': unsupported or malformed tokenizer \(/);
    fs.writeFileSync(corrupt, JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 }, merges: [] }, decoder: { type: 'Nonsense' } }));
    await rejectsWith(Tokenizer.fromFile(corrupt), 'ERR_FORMAT', /unsupported or malformed tokenizer \(.*Decoder/);
    // a corrupt tokenizer_config.json beside a good tokenizer.json
    const sub = path.join(dir, 'cfg');
    fs.mkdirSync(sub);
    fs.copyFileSync(path.join(DIR, 'llama', 'tokenizer.json'), path.join(sub, 'tokenizer.json'));
    fs.writeFileSync(path.join(sub, 'tokenizer_config.json'), '{"pad_token": ');
    await rejectsWith(Tokenizer.fromFile(sub), 'ERR_FORMAT', /tokenizer_config\.json' is not JSON/);
    throwsWith(
      () => Tokenizer.fromJSON(42 as never),
      'ERR_INVALID_ARG',
      /Expected a tokenizer\.json object \(with a "model" object\) for tokenizer but received 42/,
    );
    throwsWith(() => Tokenizer.fromJSON(toks.llama.toJSON(), 'x' as never), 'ERR_INVALID_ARG', /for config/);
    throwsWith(() => Tokenizer.fromFileSync(7 as never), 'ERR_INVALID_ARG', /for file but received 7/);

    const tok = toks.bytelevel;
    await rejectsWith(() => tok.encode(42 as never), 'ERR_INVALID_ARG', /^Expected a string for text but received 42$/);
    await rejectsWith(() => tok.encode(null as never), 'ERR_INVALID_ARG', /for text but received null/);
    await rejectsWith(() => tok.tokenize(['a'] as never), 'ERR_INVALID_ARG', /for text/);
    await rejectsWith(
      () => tok.encode('a', { addSpecialTokens: 'yes' as never }),
      'ERR_INVALID_ARG',
      /Expected a boolean for addSpecialTokens but received "yes"/,
    );
    await rejectsWith(() => tok.decode([1, -2]), 'ERR_INVALID_ARG', /Expected a non-negative integer token id for ids\[1\] but received -2/);
    await rejectsWith(() => tok.decode('12' as never), 'ERR_INVALID_ARG', /for ids/);
    await rejectsWith(() => tok.encodeBatch('abc' as never), 'ERR_INVALID_ARG', /Expected an array of strings for texts/);
    await rejectsWith(() => tok.encodeBatch(['a', 3 as never]), 'ERR_INVALID_ARG', /Expected a string for texts\[1\] but received 3/);
    await rejectsWith(
      () => tok.encodeBatch(['a'], { padding: 'max' as never }),
      'ERR_INVALID_ARG',
      /Expected false, 'longest' or 'max_length' for padding but received "max"/,
    );
    await rejectsWith(
      () => tok.encodeBatch(['a'], { padding: 'max_length' }),
      'ERR_INVALID_ARG',
      /maxLength \(needed by padding: 'max_length'\) for maxLength but received undefined/,
    );
    await rejectsWith(() => tok.encodeBatch(['a'], { truncation: true }), 'ERR_INVALID_ARG', /needed by truncation/);
    await rejectsWith(() => tok.encodeBatch(['a'], { truncation: true, maxLength: 1 }), 'ERR_INVALID_ARG', /maxLength of at least 2/);
    await rejectsWith(() => tok.encodeBatch(['a'], { maxLength: 0 }), 'ERR_INVALID_ARG', /positive integer for maxLength/);
    await rejectsWith(() => tok.encodeBatch(['a'], { padSide: 'top' as never }), 'ERR_INVALID_ARG', /'right' or 'left' for padSide/);
    await rejectsWith(() => tok.encodeBatch(['a'], { padding: 'longest', padTokenId: -1 }), 'ERR_INVALID_ARG', /padTokenId/);
    await rejectsWith(
      () => tok.encodeBatch(['a'], { padding: 'longest', padTokenId: 2 ** 32 + 1 }),
      'ERR_INVALID_ARG',
      /Expected a token id \(an integer in \[0, 2\^32\)\) for padTokenId but received 4294967297/,
    );
    await rejectsWith(
      () => tok.encodeBatch(['a'], { padding: 'max_length', maxLength: 2 ** 33 }),
      'ERR_INVALID_ARG',
      /maxLength of at most 16777216 with padding: 'max_length'/,
    );
    // a huge maxLength truncates nothing
    expect((await tok.encodeBatch(['Hello world'], { truncation: true, maxLength: 2 ** 40 })).inputIds).toEqual([await tok.encode('Hello world')]);
    await rejectsWith(() => toks.llama.encodeBatch(['a'], { padding: 'longest' }), 'ERR_INVALID_ARG', /no pad token/);
    await rejectsWith(() => tok.encodeBatch(['a', 'a b c'], { returnTensors: true }), 'ERR_INVALID_ARG', /sequences of one length for returnTensors/);
    throwsWith(() => tok.addTokens('<x>' as never), 'ERR_INVALID_ARG', /for tokens/);
    throwsWith(() => tok.addTokens([1 as never]), 'ERR_INVALID_ARG', /for tokens\[0\]/);
    throwsWith(() => tok.idToToken(-1), 'ERR_INVALID_ARG', /for id/);
    throwsWith(() => tok.tokenToId(5 as never), 'ERR_INVALID_ARG', /for token/);
  });
});
