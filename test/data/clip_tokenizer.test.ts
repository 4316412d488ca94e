import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const { Tokenizer } = et.data;
type Tok = et.data.Tokenizer;

// Written by scripts/fixtures/clip_tokenizer.py with transformers' CLIPTokenizer (5.18).
const DIR = path.join(FIXTURES, 'clip_tokenizer');
interface Case {
  ids: number[];
  ids_no_special: number[];
  tokens: string[];
  decode: string;
  decode_skip_special: string;
  input_ids: number[];
  attention_mask: number[];
  decode_padded: string;
  decode_padded_skip_special: string;
}
interface Info {
  vocab_size: number;
  pad_token: string | null;
  pad_token_id: number | null;
  bos_token_id: number;
  eos_token_id: number;
  unk_token_id: number;
  added_tokens: Record<string, { content: string; normalized: boolean; special: boolean; lstrip: boolean; rstrip: boolean }>;
}
interface Batch {
  input_ids: number[][];
  attention_mask: number[][];
}
const ref = JSON.parse(zlib.gunzipSync(fs.readFileSync(path.join(DIR, 'cases.json.gz'))).toString('utf8')) as {
  texts: string[];
  info: Info;
  cases: Case[];
  batch_texts: string[];
  longest: Batch;
  longest_trunc8: Batch;
  pad_bang: Info & { special_tokens_map: Record<string, unknown>; batch: Batch };
  raw_tokenizers: { ids: number[]; decode: string }[];
  config_variants: {
    texts: string[];
    variants: Record<
      string,
      Info & { base: 'languagebind' | 'openai'; files: Record<string, unknown>; ids: number[][]; decode_skip_special: string[]; padded: Batch | null }
    >;
  };
};
const LANGUAGEBIND = { padding: 'max_length', maxLength: 77, truncation: true } as const;

/** A copy of a fixture folder in a temporary folder, with some files replaced (null: removed). */
function variant(from: string, files: Record<string, string | null>): string {
  const d = path.join(tmpdir(), from);
  fs.cpSync(path.join(DIR, from), d, { recursive: true });
  for (const [f, text] of Object.entries(files)) {
    if (text === null) fs.rmSync(path.join(d, f));
    else fs.writeFileSync(path.join(d, f), text);
  }
  return d;
}

function checkInfo(tok: Tok, info: Info): void {
  expect(tok.vocabSize).toBe(info.vocab_size);
  expect([tok.padToken ?? null, tok.padTokenId ?? null, tok.bosTokenId, tok.eosTokenId, tok.unkTokenId]).toEqual([
    info.pad_token,
    info.pad_token_id,
    info.bos_token_id,
    info.eos_token_id,
    info.unk_token_id,
  ]);
  const added = Object.fromEntries(
    tok.addedTokens.map((t) => [String(t.id), { content: t.content, normalized: t.normalized, special: t.special, lstrip: t.lstrip, rstrip: t.rstrip }]),
  );
  expect(added).toEqual(info.added_tokens);
}

const toks = {} as Record<'languagebind' | 'openai', Tok>;
beforeAll(async () => {
  toks.languagebind = await Tokenizer.fromFile(path.join(DIR, 'languagebind'));
  toks.openai = await Tokenizer.fromFile(path.join(DIR, 'openai'));
});

describe.each(['languagebind', 'openai'] as const)("CLIP tokenizer parity with transformers' CLIPTokenizer: %s folder", (name) => {
  const texts = ref.texts;

  it('has the same vocabulary size, special token ids and added tokens', () => {
    checkInfo(toks[name], ref.info);
  });

  it(`encodes all ${texts.length} texts to the same ids (with and without special tokens) and tokens`, async () => {
    const tok = toks[name];
    const bad: string[] = [];
    let same = 0;
    for (const [i, text] of texts.entries()) {
      const c = ref.cases[i];
      const [a, b, t] = await Promise.all([tok.encode(text), tok.encode(text, { addSpecialTokens: false }), tok.tokenize(text)]);
      const ok = JSON.stringify(a) === JSON.stringify(c.ids);
      if (ok) same++;
      else bad.push(`#${i} ${JSON.stringify(text)} ids: ${a} vs ${c.ids}`);
      if (JSON.stringify(b) !== JSON.stringify(c.ids_no_special)) bad.push(`#${i} ${JSON.stringify(text)} ids (no special): ${b} vs ${c.ids_no_special}`);
      if (JSON.stringify(t) !== JSON.stringify(c.tokens)) bad.push(`#${i} ${JSON.stringify(text)} tokens: ${t} vs ${c.tokens}`);
    }
    console.log(`${name}: ${same}/${texts.length} texts encode to transformers' ids`);
    expect(bad).toEqual([]);
  });

  it("pads to 77 with the pad token and truncates keeping <|endoftext|>, as LanguageBind's processor call", async () => {
    const out = await toks[name].encodeBatch(texts, LANGUAGEBIND);
    const bad: string[] = [];
    texts.forEach((text, i) => {
      const c = ref.cases[i];
      if (JSON.stringify(out.inputIds[i]) !== JSON.stringify(c.input_ids)) bad.push(`#${i} ${JSON.stringify(text)} input_ids`);
      if (JSON.stringify(out.attentionMask[i]) !== JSON.stringify(c.attention_mask)) bad.push(`#${i} ${JSON.stringify(text)} attention_mask`);
    });
    expect(bad).toEqual([]);
    // (the long texts are there: cut to 77 with the EOS last)
    const long = ref.cases.filter((c) => c.ids.length > 77).length;
    expect(long).toBeGreaterThan(20);
    for (const [i, c] of ref.cases.entries()) if (c.ids.length > 77) expect(out.inputIds[i][76]).toBe(ref.info.eos_token_id);
    const t = await toks[name].encodeBatch(texts.slice(0, 4), { ...LANGUAGEBIND, returnTensors: true });
    expect(t.inputIds.shape).toEqual([4, 77]);
    expect(Array.from(t.attentionMask.dataSync() as BigInt64Array, Number)).toEqual(ref.cases.slice(0, 4).flatMap((c) => c.attention_mask));
  });

  it("decodes as transformers does ('</w>' → space, stripped), with and without special tokens, padded or not", async () => {
    const tok = toks[name];
    const bad: string[] = [];
    for (const [i, c] of ref.cases.entries()) {
      const got = await Promise.all([
        tok.decode(c.ids),
        tok.decode(c.ids, { skipSpecialTokens: true }),
        tok.decode(c.input_ids),
        tok.decode(c.input_ids, { skipSpecialTokens: true }),
      ]);
      const want = [c.decode, c.decode_skip_special, c.decode_padded, c.decode_padded_skip_special];
      got.forEach((g, k) => {
        if (g !== want[k]) bad.push(`#${i} decode ${k}: ${JSON.stringify(g)} vs ${JSON.stringify(want[k])}`);
      });
    }
    expect(bad).toEqual([]);
  });

  it("pads to the longest, and truncates to 8, as transformers' padding='longest'", async () => {
    const tok = toks[name];
    expect(await tok.encodeBatch(ref.batch_texts, { padding: 'longest' })).toEqual({
      inputIds: ref.longest.input_ids,
      attentionMask: ref.longest.attention_mask,
    });
    expect(await tok.encodeBatch(ref.batch_texts, { padding: 'longest', truncation: true, maxLength: 8 })).toEqual({
      inputIds: ref.longest_trunc8.input_ids,
      attentionMask: ref.longest_trunc8.attention_mask,
    });
  });
});

describe('CLIP tokenizer', () => {
  it('reads a folder, its vocab.json or tokenizer.json, sync or async, to the same tokenizer', async () => {
    const text = "A Photo of a CAT, isn't it? 😀";
    const want = await toks.languagebind.encode(text);
    for (const t of [
      await Tokenizer.fromFile(path.join(DIR, 'languagebind', 'vocab.json')),
      Tokenizer.fromFileSync(path.join(DIR, 'languagebind')),
      Tokenizer.fromFileSync(path.join(DIR, 'languagebind', 'vocab.json')),
      await Tokenizer.fromFile(path.join(DIR, 'openai', 'tokenizer.json')),
      Tokenizer.fromFileSync(path.join(DIR, 'openai')),
    ]) {
      expect(await t.encode(text)).toEqual(want);
      expect(t.padTokenId).toBe(ref.info.pad_token_id);
      expect(await t.decode(want, { skipSpecialTokens: true })).toBe("a photo of a cat , isn 't it ? 😀");
    }
    // a folder with both forms is read through its tokenizer.json
    const both = variant('openai', {});
    for (const f of ['vocab.json', 'merges.txt']) fs.copyFileSync(path.join(DIR, 'languagebind', f), path.join(both, f));
    fs.writeFileSync(path.join(both, 'merges.txt'), 'not a merges file\n');
    expect(await (await Tokenizer.fromFile(both)).encode(text)).toEqual(want);
  });

  it("takes the pad token from special_tokens_map.json (laion's '!', id 0)", async () => {
    const d = variant('languagebind', { 'special_tokens_map.json': JSON.stringify(ref.pad_bang.special_tokens_map) });
    const tok = await Tokenizer.fromFile(d);
    checkInfo(tok, ref.pad_bang);
    const out = await tok.encodeBatch(ref.batch_texts, LANGUAGEBIND);
    expect(out.inputIds).toEqual(ref.pad_bang.batch.input_ids);
    expect(out.attentionMask).toEqual(ref.pad_bang.batch.attention_mask);
  });

  it.each(Object.keys(ref.config_variants.variants))('reads the special and added tokens of the config files as transformers does: %s', async (name) => {
    const v = ref.config_variants.variants[name];
    const files = Object.fromEntries(Object.entries(v.files).map(([f, c]) => [f, c === null ? null : JSON.stringify(c)]));
    const tok = await Tokenizer.fromFile(variant(v.base, files));
    checkInfo(tok, v);
    const { texts } = ref.config_variants;
    const ids = await Promise.all(texts.map((t) => tok.encode(t)));
    expect(ids).toEqual(v.ids);
    expect(await Promise.all(ids.map((i) => tok.decode(i, { skipSpecialTokens: true })))).toEqual(v.decode_skip_special);
    if (v.padded) {
      const out = await tok.encodeBatch(texts, { padding: 'max_length', maxLength: 20, truncation: true });
      expect({ input_ids: out.inputIds, attention_mask: out.attentionMask }).toEqual(v.padded);
    } else {
      await rejectsWith(tok.encodeBatch(texts, { padding: 'max_length', maxLength: 20 }), 'ERR_INVALID_ARG', /this tokenizer has no pad token/);
    }
  });

  it('runs a CLIP tokenizer.json without its config as the tokenizers library does (no CLIP decode), and toJSON round-trips with the class', async () => {
    const json = JSON.parse(fs.readFileSync(path.join(DIR, 'openai', 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const raw = Tokenizer.fromJSON(json);
    for (const [i, r] of ref.raw_tokenizers.entries()) {
      expect(await raw.encode(ref.texts[i])).toEqual(r.ids);
      expect(await raw.decode(r.ids)).toBe(r.decode);
    }
    const again = Tokenizer.fromJSON(toks.languagebind.toJSON(), { tokenizer_class: 'CLIPTokenizerFast', pad_token: '<|endoftext|>' });
    for (const c of ref.cases.slice(0, 50)) expect(await again.decode(c.input_ids, { skipSpecialTokens: true })).toBe(c.decode_padded_skip_special);
    expect(again.padTokenId).toBe(ref.info.pad_token_id);
  });

  it("ignores the config's clean_up_tokenization_spaces (as transformers 5 does for BPE) unless asked", async () => {
    const tok = toks.openai; // its config has clean_up_tokenization_spaces: true
    const ids = await tok.encode("it's a cat .", { addSpecialTokens: false });
    expect(await tok.decode(ids)).toBe("it 's a cat .");
    expect(await tok.decode(ids, { cleanUpTokenizationSpaces: true })).toBe("it's a cat.");
  });

  it('accepts CRLF line ends and a merges.txt without its #version line', async () => {
    const merges = fs.readFileSync(path.join(DIR, 'languagebind', 'merges.txt'), 'utf8');
    for (const text of [merges.replace(/\n/g, '\r\n'), merges.split('\n').slice(1).join('\n'), merges.trimEnd()]) {
      const tok = await Tokenizer.fromFile(variant('languagebind', { 'merges.txt': text }));
      expect(await tok.encode(ref.texts[6])).toEqual(ref.cases[6].ids);
    }
  });

  describe('refuses malformed folders, naming the file and never quoting it', () => {
    const lb = (name: string): string => path.join(DIR, 'languagebind', name);
    const merges = fs.readFileSync(lb('merges.txt'), 'utf8').split('\n');
    const vocab = JSON.parse(fs.readFileSync(lb('vocab.json'), 'utf8')) as Record<string, number>;
    const withMerges = (lines: string[]): string => variant('languagebind', { 'merges.txt': lines.join('\n') });

    it('a vocab.json without merges.txt (ERR_IO), async and sync', async () => {
      const d = variant('languagebind', { 'merges.txt': null });
      await rejectsWith(Tokenizer.fromFile(d), 'ERR_IO', /merges\.txt' is missing: a vocab\.json tokenizer .*vocab\.json'\) needs its merges\.txt/);
      throwsWith(() => Tokenizer.fromFileSync(path.join(d, 'vocab.json')), 'ERR_IO', /merges\.txt' is missing/);
    });

    it('a malformed merges.txt (ERR_FORMAT, naming the line)', async () => {
      const cases: [string[], RegExp][] = [
        [[...merges.slice(0, 4), 'zqx1 zqx2 zqx3', ...merges.slice(4)], /merges\.txt': line 5 is not a merge \(two tokens separated by one space\)/],
        [[...merges.slice(0, 3), 'zqxsingle', ...merges.slice(3)], /merges\.txt': line 4 is not a merge/],
        [[...merges.slice(0, 3), '', ...merges.slice(3)], /merges\.txt': line 4 is not a merge/],
        [[...merges.slice(0, 3), 'h  e', ...merges.slice(3)], /merges\.txt': line 4 is not a merge/],
        [[...merges.slice(0, 2), 'zqxleft zqxright', ...merges.slice(2)], /merges\.txt': line 3 merges a token that is not in vocab\.json/],
        [[...merges.slice(0, 2), 'z q', ...merges.slice(2)], /merges\.txt': line 3 makes a token that is not in vocab\.json/],
        [['\ufeff' + merges[0], ...merges.slice(1)], /merges\.txt': line 1 merges a token that is not in vocab\.json/],
      ];
      expect(Object.hasOwn(vocab, 'zq')).toBe(false);
      for (const [lines, re] of cases) {
        const e = await rejectsWith(Tokenizer.fromFile(withMerges(lines)), 'ERR_FORMAT', re);
        expect(e.message).not.toMatch(/zqx/);
      }
    });

    it('a malformed vocab.json (ERR_FORMAT)', async () => {
      const bad: [string, RegExp][] = [
        ['{"zqxa": 0, ', /vocab\.json' is not JSON/],
        ['["zqxa"]', /vocab\.json' is not a vocab\.json \(expected a JSON object of token → id\)/],
        ['{}', /vocab\.json' has no tokens/],
        [JSON.stringify({ ...vocab, zqxa: -1 }), /vocab\.json' has a token whose id is not an integer in \[0, 2\^32\)/],
        [JSON.stringify({ ...vocab, zqxa: 'one' }), /vocab\.json' has a token whose id is not an integer/],
        [JSON.stringify({ ...vocab, zqxa: 1.5 }), /vocab\.json' has a token whose id is not an integer/],
        [JSON.stringify({ ...vocab, zqxa: 3 }), /vocab\.json' gives the id 3 to two tokens/],
      ];
      for (const [text, re] of bad) {
        const e = await rejectsWith(Tokenizer.fromFile(variant('languagebind', { 'vocab.json': text })), 'ERR_FORMAT', re);
        expect(e.message).not.toMatch(/zqx/);
      }
    });

    it('a vocab.json that is not CLIP, or whose config names another class, or no bos/eos token (ERR_FORMAT)', async () => {
      const config = JSON.parse(fs.readFileSync(lb('tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
      await rejectsWith(
        Tokenizer.fromFile(variant('languagebind', { 'tokenizer_config.json': JSON.stringify({ ...config, tokenizer_class: 'GPT2Tokenizer' }) })),
        'ERR_FORMAT',
        /vocab\.json': a vocab\.json \+ merges\.txt tokenizer is read as CLIP's, but .*tokenizer_config\.json' names another tokenizer_class/,
      );
      await rejectsWith(
        Tokenizer.fromFile(variant('languagebind', { 'tokenizer_config.json': null, 'vocab.json': '{"a": 0, "b": 1, "ab": 2}', 'merges.txt': 'a b\n' })),
        'ERR_FORMAT',
        /vocab\.json': not CLIP's vocabulary .* no tokenizer_config\.json tokenizer_class/,
      );
      // without a config, a CLIP vocabulary is CLIP with CLIPTokenizer's defaults
      const bare = await Tokenizer.fromFile(variant('languagebind', { 'tokenizer_config.json': null, 'special_tokens_map.json': null }));
      expect(await bare.encode(ref.texts[6])).toEqual(ref.cases[6].ids);
      expect(bare.padTokenId).toBe(ref.info.eos_token_id);
      await rejectsWith(
        Tokenizer.fromFile(variant('languagebind', { 'special_tokens_map.json': JSON.stringify({ bos_token: null }) })),
        'ERR_FORMAT',
        /vocab\.json': a CLIP tokenizer needs a bos token/,
      );
      await rejectsWith(
        Tokenizer.fromFile(variant('languagebind', { 'special_tokens_map.json': JSON.stringify({ pad_token: 5 }) })),
        'ERR_FORMAT',
        /special_tokens_map\.json': pad_token is not a token/,
      );
      await rejectsWith(
        Tokenizer.fromFile(variant('languagebind', { 'special_tokens_map.json': '{"pad_token": ' })),
        'ERR_FORMAT',
        /special_tokens_map\.json' is not JSON/,
      );
    });

    it('a tokenizer.json whose config names CLIP but whose model is not BPE (ERR_FORMAT)', async () => {
      const json = JSON.parse(fs.readFileSync(path.join(DIR, 'openai', 'tokenizer.json'), 'utf8')) as { model: Record<string, unknown> };
      const wp = { ...json, model: { type: 'WordPiece', vocab: json.model.vocab, unk_token: '<|endoftext|>' } };
      await rejectsWith(
        Tokenizer.fromFile(variant('openai', { 'tokenizer.json': JSON.stringify(wp) })),
        'ERR_FORMAT',
        /tokenizer\.json': the config names a CLIP tokenizer but the model is not a BPE/,
      );
      throwsWith(() => Tokenizer.fromJSON(wp, { tokenizer_class: 'CLIPTokenizer' }), 'ERR_FORMAT', /tokenizer JSON: the config names a CLIP tokenizer/);
    });
  });
});
