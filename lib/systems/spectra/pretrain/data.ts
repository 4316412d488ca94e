/**
 * SPECTRA pre-training data: the corpus `process_pretrain.py` writes (`transcripts.pkl` and one
 * `.npy` clip per turn), the original `PretrainDataset`'s items (context, response, a negative
 * whose audio and text come from two other turns, and up to `numTurns − 2` earlier turns of text)
 * and `DataCollatorForPreTraining`'s batches (15 % MLM masking, word-boundary targets). Every
 * random choice can be passed in, and each batch says which it made, so a run replays exactly.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, tensor } from '../../../tensor';
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid } from '../../../errors';
import { readPickle, pickleValue } from '../../../io/pickle';
import { readNpy, writeNpy } from '../../../io/npy';
import { readAudio } from '../../../audio/ffmpeg';
import { readJsonObjectSync } from '../../../io/file';
import type { Tokenizer } from '../../../data/tokenizer';

/** One word of a turn: its text, first token, end token (exclusive; tokens count from `<s>`), first and end sample in its clip. */
export type SpectraWord = [word: string, firstToken: number, endToken: number, firstSample: number, endSample: number];

/** One turn of the corpus, as process_pretrain.py writes it. */
export interface SpectraPretrainEntry {
  /** The clip's `.npy` path (relative to the data folder, or absolute). */
  audio: string;
  /** Token ids, `<s>` … `</s>`. */
  tokens: number[];
  words: SpectraWord[];
  /** The previous turn's index, or −1 for a dialogue's first turn. */
  prev: number;
}

/** One pre-training example: `a` (the context turn), `p` (its response) and `n` (a negative) in the collator's names. */
export interface SpectraPretrainItem {
  contextAudio: Float32Array;
  contextTokens: number[];
  contextWords: SpectraWord[];
  responseAudio: Float32Array;
  responseTokens: number[];
  responseWords: SpectraWord[];
  /** The negative's clip and its text, from two other turns. */
  negativeAudio: Float32Array;
  negativeTokens: number[];
  /** `<s>` and the earlier turns' tokens (each without its `<s>`), oldest first. */
  history: number[];
  /** The dataset index, and the corpus entries the negative's audio and text came from (pass them back to replay). */
  index: number;
  negAudio: number;
  negText: number;
}

/**
 * An MLM choice per token of a sequence: −1 not masked, −2 `<mask>`, −3 masked but kept, or the id
 * of the random token put there.
 */
export type SpectraMlmChoices = number[];

/** The MLM choices of one item's four sequences (the negative's too: the original masks it, without labels). */
export interface SpectraItemMlm {
  history: SpectraMlmChoices;
  context: SpectraMlmChoices;
  response: SpectraMlmChoices;
  negative: SpectraMlmChoices;
}

/** Options of {@link SpectraPretrainDataset.fromFile}. */
export interface SpectraPretrainDatasetOptions {
  /** Where relative `.npy` paths are read from (main.py's `--data_path`). Default: the transcripts file's folder. */
  dataPath?: string;
  /** Turns of text per example: context, response and up to `numTurns − 2` earlier ones (main.py's `--num_turns`, 8). */
  numTurns?: number;
  /** Seeds the negatives' draws of `get` (default Math.random). */
  seed?: number;
}

/** A uniform draw in [0, 1) from a seeded generator (mulberry32), or Math.random without a seed. */
export function generator(seed?: number): () => number {
  if (seed === undefined) return Math.random;
  let t = checkInt(seed, 'seed', 0) >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), t | 1);
    r ^= r + Math.imul(r ^ (r >>> 7), r | 61);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/**
 * Samples a word may end past its clip's end: 1 600, a tenth of a second at 16 kHz, the lengthening
 * process_pretrain.py gives every word's end (at a recording's end it runs past the audio).
 */
const SPECTRA_SPAN_SLACK = 1600;

/** Checks and converts one corpus entry; a bad one is ERR_FORMAT naming it. */
function entryOf(raw: unknown, i: number, n: number, where: string): SpectraPretrainEntry {
  const bad = (why: string): never => {
    throw new EmotorchError(`${where}: entry ${i} ${why}`, 'ERR_FORMAT');
  };
  if (!Array.isArray(raw) || raw.length < 3) bad('is not [npy path, token ids, …words, previous index]');
  const e = raw as unknown[];
  const [audio, tokens] = e;
  const prev = e[e.length - 1];
  if (typeof audio !== 'string' || !audio) bad('has no .npy path first');
  if (!Array.isArray(tokens) || tokens.length < 2 || !tokens.every((t) => isInt(t) && t >= 0)) bad('has no token ids (a list of non-negative integers) second');
  if (!isInt(prev) || prev < -1 || prev >= n || prev === i) bad(`ends with ${JSON.stringify(prev)}, not the index of an earlier turn or -1`);
  const words = e.slice(2, -1).map((w, j): SpectraWord => {
    if (!Array.isArray(w) || w.length !== 5 || typeof w[0] !== 'string' || !w.slice(1).every(isInt))
      bad(`word ${j} is not [word, first token, end token, first sample, end sample]`);
    const [word, a, b, s0, s1] = w as SpectraWord;
    // the tokens of a word lie inside the turn's, after <s> and before </s>; its samples in order
    if (!(a >= 1 && b > a && b <= (tokens as number[]).length - 1))
      bad(
        `word ${j} ('${word}') spans tokens [${a}, ${b}), outside the turn's ${(tokens as number[]).length} tokens: the alignment does not match the transcript`,
      );
    if (!(s0 >= 0 && s1 >= s0)) bad(`word ${j} ('${word}') spans samples [${s0}, ${s1})`);
    return [word, a, b, s0, s1];
  });
  return { audio: audio as string, tokens: tokens as number[], words, prev: prev as number };
}

/**
 * The pre-training corpus (the original `read_processed_pretrain` + `PretrainDataset`): one item
 * per turn that has a previous turn.
 * @example
 * const ds = await et.systems.spectra.SpectraPretrainDataset.fromFile('transcripts.pkl', { dataPath: 'data/' });
 * const batch = et.systems.spectra.spectraPretrainCollate([await ds.get(0), await ds.get(1)], { seed: 1 });
 */
export class SpectraPretrainDataset {
  private constructor(
    readonly entries: SpectraPretrainEntry[],
    readonly dataPath: string,
    readonly numTurns: number,
    private readonly withPrev: number[],
    private readonly random: () => number,
    private readonly source: string,
  ) {}

  /**
   * Reads `transcripts.pkl`, or every file in the leaf folders of a folder of them, in name order
   * (the original walks them in the file system's order).
   * @throws EmotorchError ERR_IO / ERR_FORMAT naming the file or the bad entry; ERR_INVALID_ARG for
   *   fewer than 3 turns (a negative needs two turns besides the example's own)
   */
  static async fromFile(transcripts: string, opts: SpectraPretrainDatasetOptions = {}): Promise<SpectraPretrainDataset> {
    if (typeof transcripts !== 'string' || !transcripts) invalid('a transcripts.pkl file or folder', 'transcripts', transcripts);
    checkOptionNames(opts, ['dataPath', 'numTurns', 'seed'], 'SpectraPretrainDataset.fromFile');
    const numTurns = checkInt(opts.numTurns ?? 8, 'numTurns', 2);
    let files: string[];
    let stat: fs.Stats;
    try {
      stat = fs.statSync(transcripts);
    } catch {
      throw new EmotorchError(`the transcripts '${transcripts}' do not exist`, 'ERR_IO');
    }
    if (stat.isDirectory()) {
      files = [];
      const walk = (d: string) => {
        const kids = fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
        if (!kids.some((k) => k.isDirectory())) files.push(...kids.filter((k) => k.isFile()).map((k) => path.join(d, k.name)));
        for (const k of kids) if (k.isDirectory()) walk(path.join(d, k.name));
      };
      walk(transcripts);
      if (!files.length) throw new EmotorchError(`the transcripts folder '${transcripts}' has no files`, 'ERR_IO');
    } else files = [transcripts];
    const raw: unknown[] = [];
    for (const f of files) {
      const v = await readPickle(f);
      if (!Array.isArray(v)) throw new EmotorchError(`'${f}' is not a pickled list of turns`, 'ERR_FORMAT');
      raw.push(...v);
    }
    const entries = raw.map((r, i) => entryOf(r, i, raw.length, transcripts));
    if (entries.length < 3) invalid('at least 3 turns (an example and a negative from two other turns)', 'transcripts', `${entries.length}`);
    const withPrev = entries.flatMap((e, i) => (e.prev >= 0 ? [i] : []));
    return new SpectraPretrainDataset(entries, opts.dataPath ?? path.dirname(transcripts), numTurns, withPrev, generator(opts.seed), transcripts);
  }

  /** Examples: the turns that have a previous turn. */
  get length(): number {
    return this.withPrev.length;
  }

  /**
   * Turn `i`'s clip; with `item`, its words checked against it: a word may end at most
   * SPECTRA_SPAN_SLACK (1 600) samples past the clip's end (process_pretrain.py lengthens every
   * word by a tenth of a second, which at a recording's end runs past its audio), else ERR_FORMAT
   * naming the corpus, the entry, the item and the span. The original takes any span: its collator
   * divides the samples by 160 000 without looking at the clip, and the span loss then regresses to
   * a time where there is no audio.
   */
  private clip(i: number, item?: number): Float32Array {
    const file = path.resolve(this.dataPath, this.entries[i].audio);
    const { data, shape } = readNpy(file);
    if (shape.length !== 1) throw new EmotorchError(`'${file}' (turn ${i}) holds an array of shape [${shape}], not one clip`, 'ERR_FORMAT');
    if (data.length === 0) throw new EmotorchError(`'${file}' (turn ${i}) is an empty clip`, 'ERR_FORMAT');
    if (item !== undefined) {
      this.entries[i].words.forEach(([word, , , s0, s1], j) => {
        if (s1 > data.length + SPECTRA_SPAN_SLACK) {
          throw new EmotorchError(
            `'${this.source}' entry ${i} (item ${item}): word ${j} ('${word}') spans samples [${s0}, ${s1}), past the end of its clip '${file}' ` +
              `(${data.length} samples; a word may end at most ${SPECTRA_SPAN_SLACK} past it, process_pretrain.py's tenth of a second): the alignment does not match the audio`,
            'ERR_FORMAT',
          );
        }
      });
    }
    return data;
  }

  /**
   * Example `index`: its turn (the response), the turn before (the context), the earlier turns'
   * text, and a negative: audio and text drawn (uniformly, each on its own) from the turns other
   * than the response and the one after it, as the original draws them.
   * @param choose the negatives' corpus indices (an item's `negAudio` / `negText`) to replay a draw
   * @param random the uniform draw to use (default: the dataset's, seeded by `seed`)
   * @throws EmotorchError ERR_INVALID_ARG for a bad index or choice; ERR_IO / ERR_FORMAT for a clip
   *   (ERR_FORMAT naming the corpus, entry, item and span for a context or response word that ends
   *   more than 0.1 s (1 600 samples) past its clip's end, which the original takes as it is)
   */
  async get(index: number, choose: { negAudio?: number; negText?: number } = {}, random: () => number = this.random): Promise<SpectraPretrainItem> {
    checkInt(index, 'index', 0);
    if (index >= this.length) invalid(`an index below ${this.length}`, 'index', index);
    const n = this.entries.length;
    const anchor = this.withPrev[index];
    const prev = this.entries[anchor].prev;
    const draw = () => {
      const k = Math.floor(random() * (n - 2)); // randint(0, n − 3), then past the response and the turn after it
      return k >= anchor ? k + 2 : k;
    };
    const pick = (v: number | undefined, name: string) => {
      if (v === undefined) return draw();
      checkInt(v, name, 0);
      if (v >= n || v === anchor || v === anchor + 1)
        invalid(`a turn index below ${n}, not ${anchor} or ${anchor + 1} (the response and the turn after it)`, name, v);
      return v;
    };
    const negAudio = pick(choose.negAudio, 'negAudio');
    const negText = pick(choose.negText, 'negText');
    let history: number[] = [];
    let cur = prev;
    for (let t = 2; t < this.numTurns; t++) {
      if (this.entries[cur].prev === -1) break;
      cur = this.entries[cur].prev;
      history = [...this.entries[cur].tokens.slice(1), ...history];
    }
    const ctx = this.entries[prev],
      resp = this.entries[anchor];
    return {
      contextAudio: this.clip(prev, index),
      contextTokens: ctx.tokens,
      contextWords: ctx.words,
      responseAudio: this.clip(anchor, index),
      responseTokens: resp.tokens,
      responseWords: resp.words,
      negativeAudio: this.clip(negAudio),
      negativeTokens: this.entries[negText].tokens,
      history: [0, ...history],
      index,
      negAudio,
      negText,
    };
  }
}

/** Options of {@link spectraPretrainCollate}. */
export interface SpectraPretrainCollateOptions {
  /** Samples every clip is cut or zero-padded to (main.py: `--audio_length` × 16 000). Default 160 000. */
  audioLength?: number;
  /** Longest token sequence; longer ones keep `<s>` and the last tokens. Default 512. */
  textLength?: number;
  /** Share of tokens masked. Default 0.15. */
  mlmProbability?: number;
  /**
   * The tokenizer whose special ids are never masked, whose `<mask>` masks, and whose size bounds
   * the random tokens (the original's collator takes RoBERTa's tokenizer); replaces the three
   * options below.
   */
  tokenizer?: Tokenizer;
  /** Never masked: RoBERTa's special ids by default (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, `<mask>` 50264). */
  specialIds?: number[];
  /** Default 50264, RoBERTa's `<mask>`. */
  maskTokenId?: number;
  /** Random replacement tokens are drawn below this. Default 50265 (RoBERTa's vocabulary). */
  vocabSize?: number;
  /** Text padding. Default 0, as the original pads (attention masks it out). */
  padTokenId?: number;
  /** Seeds the MLM draws (default Math.random). */
  seed?: number;
  /** The uniform draw in [0, 1) to use for the MLM choices instead (a training loop's generator); `seed` is then not allowed. */
  random?: () => number;
  /** The MLM choices of each item, to replay a batch (see the returned `mlm`). */
  mlm?: SpectraItemMlm[];
}

/** The tensors of a pre-training batch (B items), in the original collator's order and meaning. */
export interface SpectraPretrainBatch {
  /** (3B, S) float32: each item's context, response and negative clip. */
  audio: Tensor;
  /** (3B, S) float32: 1 over the clip's samples. */
  audioAttentionMask: Tensor;
  /** (2B, L) int64: each item's positive (history, context, response) and negative (history, context, negative) text, MLM-masked. */
  textInput: Tensor;
  /** (B, L) int64: the positive text's MLM labels, −100 where not masked. */
  mlmLabel: Tensor;
  /** (2B, L) int64. */
  textAttentionMask: Tensor;
  /** (B, L) bool: the first token of each context and response word. */
  startValid: Tensor;
  /** (B, L) bool: the last token of each. */
  endValid: Tensor;
  /** (2B, L) int64: 0 up to the context's `</s>`, 1 after. */
  turnId: Tensor;
  /** (W,) float32: each word's first sample / 160 000, rounded to 3 decimals (context words, then response words, item after item). */
  starts: Tensor;
  ends: Tensor;
  /** The MLM choices made (pass them as `mlm` to replay the batch). */
  mlm: SpectraItemMlm[];
}

/**
 * What the MLM masking takes from a tokenizer: its special ids (added special tokens, BOS, EOS,
 * UNK, PAD, `<mask>`), the `<mask>` id and its size (`len(tokenizer)`).
 * @throws EmotorchError ERR_INVALID_ARG when it has no `<mask>` token
 */
export function tokenizerMasking(tok: Tokenizer): { specialIds: number[]; maskTokenId: number; vocabSize: number } {
  if (!tok || typeof tok.tokenToId !== 'function') invalid('a Tokenizer', 'tokenizer', tok);
  const mask = tok.tokenToId('<mask>');
  if (mask === undefined) invalid("a tokenizer with a <mask> token (RoBERTa's) for masked language modelling", 'tokenizer', 'no <mask>');
  const ids = [...tok.addedTokens.filter((t) => t.special).map((t) => t.id), tok.bosTokenId, tok.eosTokenId, tok.unkTokenId, tok.padTokenId, mask];
  return { specialIds: [...new Set(ids.filter((x): x is number => x !== undefined))], maskTokenId: mask!, vocabSize: tok.vocabSize };
}

/**
 * The original `DataCollatorForPreTraining`: MLM masking of every sequence (15 % of the non-special
 * tokens; of those 80 % `<mask>`, 10 % a random token, 10 % kept), the positive and negative texts,
 * their turn ids, the word-boundary targets of the context and response, and the three clips.
 * Reproduced as the original computes them, including where a cut reaches into the context: a
 * word whose first token was cut indexes the boundary flags from the end of the context's span,
 * as Python's negative list indices do (a cut deeper than that is ERR_INVALID_ARG, where the
 * original stops with an IndexError).
 * @throws EmotorchError ERR_INVALID_ARG for a bad item, option or replayed choice
 */
export function spectraPretrainCollate(items: SpectraPretrainItem[], opts: SpectraPretrainCollateOptions = {}): SpectraPretrainBatch {
  if (!Array.isArray(items) || items.length === 0) invalid('a non-empty array of SPECTRA pre-training items', 'items', items);
  if (!opts || typeof opts !== 'object') invalid('an options object', 'collate options', opts);
  checkOptionNames(
    opts,
    ['audioLength', 'textLength', 'mlmProbability', 'tokenizer', 'specialIds', 'maskTokenId', 'vocabSize', 'padTokenId', 'seed', 'random', 'mlm'],
    'spectraPretrainCollate',
  );
  if (opts.tokenizer !== undefined) {
    if (opts.specialIds !== undefined || opts.maskTokenId !== undefined || opts.vocabSize !== undefined)
      invalid('a tokenizer, or specialIds / maskTokenId / vocabSize, not both', 'collate options', Object.keys(opts));
    opts = { ...opts, ...tokenizerMasking(opts.tokenizer) };
  }
  const S = checkInt(opts.audioLength ?? 160000, 'audioLength', 1);
  const maxText = checkInt(opts.textLength ?? 512, 'textLength', 2);
  const prob = checkNumber(opts.mlmProbability ?? 0.15, 'mlmProbability', 0, 1);
  const special = new Set(opts.specialIds ?? [0, 1, 2, 3, 50264]);
  const maskId = checkInt(opts.maskTokenId ?? 50264, 'maskTokenId', 0);
  const vocab = checkInt(opts.vocabSize ?? 50265, 'vocabSize', 1);
  const padId = checkInt(opts.padTokenId ?? 0, 'padTokenId', 0);
  if (opts.random !== undefined && (typeof opts.random !== 'function' || opts.seed !== undefined))
    invalid('a function returning a number in [0, 1), without seed', 'random', opts.random);
  const random = opts.random ?? generator(opts.seed);
  if (opts.mlm !== undefined && (!Array.isArray(opts.mlm) || opts.mlm.length !== items.length)) invalid(`${items.length} items' MLM choices`, 'mlm', opts.mlm);
  items.forEach((it, i) => {
    if (
      !it ||
      typeof it !== 'object' ||
      !(it.contextAudio instanceof Float32Array) ||
      !(it.responseAudio instanceof Float32Array) ||
      !(it.negativeAudio instanceof Float32Array) ||
      !Array.isArray(it.contextTokens) ||
      !Array.isArray(it.responseTokens) ||
      !Array.isArray(it.negativeTokens) ||
      !Array.isArray(it.history)
    ) {
      invalid('a SpectraPretrainDataset item', `items[${i}]`, it);
    }
    for (const k of ['contextTokens', 'responseTokens', 'negativeTokens'] as const)
      if (it[k].length < 2) invalid('a turn of at least <s> and </s>', `items[${i}].${k}`, it[k]);
  });

  /** One sequence masked: the masked ids, its labels, and the choices (drawn, or replayed). */
  const mask = (ids: number[], given: SpectraMlmChoices | undefined, where: string): { ids: number[]; labels: number[]; choices: SpectraMlmChoices } => {
    if (given !== undefined && (!Array.isArray(given) || given.length !== ids.length)) invalid(`${ids.length} choices (one per token)`, where, given);
    const out = [...ids],
      labels = ids.map(() => -100),
      choices: SpectraMlmChoices = [];
    ids.forEach((id, j) => {
      let c: number;
      if (given !== undefined) {
        c = given[j];
        if (!isInt(c) || c < -3 || c >= vocab) invalid('-1, -2, -3 or a token id', `${where}[${j}]`, c);
        if (c !== -1 && special.has(id)) invalid(`-1 for the special token ${id}`, `${where}[${j}]`, c);
      } else if (special.has(id) || random() >= prob) c = -1;
      else {
        const r = random();
        c = r < 0.8 ? -2 : r < 0.9 ? Math.floor(random() * vocab) : -3;
      }
      choices.push(c);
      if (c === -1) return;
      labels[j] = id;
      if (c === -2) out[j] = maskId;
      else if (c >= 0) out[j] = c;
    });
    return { ids: out, labels, choices };
  };
  // the original's pad: zero-padded with a mask of ones; a long token sequence keeps <s> and the last tokens
  const padIds = (s: number[], L: number, fill: number) => (s.length < L ? [...s, ...Array(L - s.length).fill(fill)] : [s[0], ...s.slice(s.length - (L - 1))]);
  const padMask = (n: number, L: number) => Array.from({ length: L }, (_, j) => (j < n ? 1 : 0));

  const ml = Math.min(
    maxText,
    Math.max(
      ...items.map((it) =>
        Math.max(
          it.contextTokens.length + it.responseTokens.length + it.history.length - 2,
          it.contextTokens.length + it.negativeTokens.length + it.history.length - 2,
        ),
      ),
    ),
  );
  const text: number[][] = [],
    textMask: number[][] = [],
    labels: number[][] = [],
    turn: number[][] = [],
    sv: number[][] = [],
    ev: number[][] = [];
  const starts: number[] = [],
    ends: number[] = [];
  const audio = new Float32Array(3 * items.length * S),
    audioMask = new Float32Array(3 * items.length * S);
  const mlm: SpectraItemMlm[] = [];
  items.forEach((it, i) => {
    const g = opts.mlm?.[i];
    const h = mask(it.history, g?.history, `mlm[${i}].history`);
    const a = mask(it.contextTokens.slice(1), g?.context, `mlm[${i}].context`);
    const p = mask(it.responseTokens.slice(1), g?.response, `mlm[${i}].response`);
    const n = mask(it.negativeTokens.slice(1), g?.negative, `mlm[${i}].negative`);
    mlm.push({ history: h.choices, context: a.choices, response: p.choices, negative: n.choices });
    const positive = [...h.ids, ...a.ids, ...p.ids],
      negative = [...h.ids, ...a.ids, ...n.ids];
    let offA: number, offP: number;
    if (positive.length > ml) {
      offP = ml - p.ids.length - 1;
      offA = offP - a.ids.length;
    } else {
      offA = it.history.length - 1;
      offP = offA + a.ids.length;
    }
    // a response longer than the text leaves no room (the original's lists come out empty and it stops with an IndexError)
    if (offP < 0) invalid(`a textLength above ${p.ids.length + 1} (item ${i}'s response has ${p.ids.length + 1} tokens)`, 'textLength', ml);
    const offN = negative.length > ml ? ml - n.ids.length - 1 : offA + a.ids.length;
    text.push(padIds(positive, ml, padId), padIds(negative, ml, padId));
    textMask.push(padMask(positive.length, ml), padMask(negative.length, ml));
    // the boundary flags of a span of `len` positions: Python's list, negative indices counting from its end
    const valid = (words: SpectraWord[], off: number, len: number, what: string) => {
      const s = new Array<number>(len).fill(0),
        e = new Array<number>(len).fill(0);
      const at = (k: number, w: SpectraWord) => {
        const j = k < 0 ? k + len : k;
        if (j < 0 || j >= len)
          invalid(`words inside the ${ml}-token text (the cut reaches past word '${w[0]}'; raise textLength)`, `items[${i}] ${what}`, `token position ${k}`);
        return j;
      };
      for (const w of words) {
        s[at(off + w[1], w)] = 1;
        e[at(off + w[2] - 1, w)] = 1;
        starts.push(Number((w[3] / 160000).toFixed(3)));
        ends.push(Number((w[4] / 160000).toFixed(3)));
      }
      return { s, e };
    };
    const ca = valid(it.contextWords ?? [], offA, offP, 'context');
    const pa = valid(it.responseWords ?? [], 0, ml - offP, 'response');
    sv.push([...ca.s, ...pa.s]);
    ev.push([...ca.e, ...pa.e]);
    const turns = (off: number) => Array.from({ length: ml }, (_, j) => (j < off + 1 ? 0 : 1));
    turn.push(turns(offP), turns(offN));
    labels.push(padIds([...h.labels, ...a.labels, ...p.labels], ml, -100));
    [it.contextAudio, it.responseAudio, it.negativeAudio].forEach((clip, k) => {
      const row = (3 * i + k) * S,
        len = Math.min(clip.length, S);
      audio.set(clip.subarray(0, len), row);
      audioMask.fill(1, row, row + len);
    });
  });
  const B = items.length;
  const ints = (rows: number[][], n: number) => tensor(rows.flat(), { dtype: 'int64' }).reshape([n, ml]);
  return {
    audio: tensor(audio).reshape([3 * B, S]),
    audioAttentionMask: tensor(audioMask).reshape([3 * B, S]),
    textInput: ints(text, 2 * B),
    mlmLabel: ints(labels, B),
    textAttentionMask: ints(textMask, 2 * B),
    startValid: tensor(sv.flat(), { dtype: 'bool' }).reshape([B, ml]),
    endValid: tensor(ev.flat(), { dtype: 'bool' }).reshape([B, ml]),
    turnId: ints(turn, 2 * B),
    starts: tensor(new Float32Array(starts)),
    ends: tensor(new Float32Array(ends)),
    mlm,
  };
}

/** Options of {@link buildSpectraPretrainCorpus} (process_pretrain.py's arguments). */
export interface SpectraCorpusOptions {
  /** A tree of audio files; each leaf folder is one show (`--speech_dir`). */
  speechDir: string;
  /** The same tree with one alignment JSON per audio file, `<name>.json` (`--text_dir`). */
  textDir: string;
  /** Where the clips are written, in the same tree (`--save_processed_speech_dir`). */
  outDir: string;
  /** The corpus file's name, written in `outDir` (`--save_processed_text_filename`). */
  transcriptsName: string;
  /** Word → token ids with `<s>` and `</s>` (RoBERTa's tokenizer encodes each word alone, lower-cased). */
  encode: (word: string) => Promise<number[]> | number[];
  /** Stop once this many hours are processed (`--hours`, default 60000). */
  hours?: number;
  /** Longest clip in seconds (`--max_speech_slice_length`, default 10). */
  maxSliceSeconds?: number;
  /** Default 16000 (`--sample_rate`). */
  sampleRate?: number;
  /**
   * Link a clip to the one before it when they are in the same folder and less than 5 s apart, as
   * the original does: the last clip of one episode then precedes the first of the next episode in
   * the same show. Default false: only clips of the same audio file are linked.
   */
  linkAcrossFiles?: boolean;
  /** Called after each audio file with the files done and the clips and tenths of a second so far. */
  onProgress?: (p: { files: number; clips: number; tenths: number }) => void;
}

/** Python's round() (half to even) of a number of tenths. */
function tenths(t: string, where: string): number {
  if (typeof t !== 'string' || !/^[0-9]+(\.[0-9]*)?s$/.test(t))
    throw new EmotorchError(`${where}: a time like "1.300s", not ${JSON.stringify(t)}`, 'ERR_FORMAT');
  const x = Number(t.slice(0, -1)) * 10;
  const f = Math.floor(x),
    d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/**
 * Builds a pre-training corpus as the original `preprocess/process_pretrain.py` does, from audio and
 * word alignments (no aligner runs): each file's words (Google Speech-to-Text JSON, as the
 * original reads: `results[-1].alternatives[0].words`, each `{ startTime: "1.300s", endTime, word }`)
 * are cut into clips of at most `maxSliceSeconds` (a word over 3 s is cut to 3 s — from its end if
 * capitalised, else from its start; each word's end is extended by 0.1 s); each clip's samples
 * become `<outDir>/<folder>/<n>.npy` and its entry `[npy path, token ids, …words, previous clip]`
 * with each word `[word, first token, end token, first sample, end sample]` (its tokens from
 * `encode` of the lower-cased word without `<s>` / `</s>`). Clips less than 5 s after the previous
 * one are linked as a dialogue. Clip paths are absolute, as the original's are for an absolute
 * `outDir`; the corpus file is `transcriptsName` in `outDir` (or that path when absolute, as
 * Python's os.path.join).
 * Audio is read as its `librosa.load` reads it (channels averaged, libsoxr's HQ resampler).
 * Where the original is broken: it reads audio at librosa's 22 050 Hz into a tuple, so its clips
 * are not the audio (here: `sampleRate`); it links clips only when the hours cap is reached (else
 * its entries end with a time, read as a previous-clip index; here always); see
 * {@link SpectraCorpusOptions.linkAcrossFiles}.
 * @returns the corpus file's path and its clip count
 * @throws EmotorchError ERR_IO for a missing alignment or unreadable audio, ERR_FORMAT for a bad alignment
 */
export async function buildSpectraPretrainCorpus(opts: SpectraCorpusOptions): Promise<{ transcripts: string; clips: number; tenths: number }> {
  if (!opts || typeof opts !== 'object') invalid('corpus options', 'opts', opts);
  checkOptionNames(
    opts,
    ['speechDir', 'textDir', 'outDir', 'transcriptsName', 'encode', 'hours', 'maxSliceSeconds', 'sampleRate', 'linkAcrossFiles', 'onProgress'],
    'buildSpectraPretrainCorpus',
  );
  for (const k of ['speechDir', 'textDir', 'outDir', 'transcriptsName'] as const) if (typeof opts[k] !== 'string' || !opts[k]) invalid('a path', k, opts[k]);
  if (typeof opts.encode !== 'function') invalid('a function word → token ids', 'encode', opts.encode);
  const cap = checkNumber(opts.hours ?? 60000, 'hours', 0) * 36000;
  const maxLen = checkInt(opts.maxSliceSeconds ?? 10, 'maxSliceSeconds', 1) * 10 - 1;
  const rate = checkInt(opts.sampleRate ?? 16000, 'sampleRate', 10);
  const perTenth = Math.floor(rate / 10);
  type Clip = { entry: (string | number | number[] | (string | number)[])[]; folder: string; file: string; start: number; end: number };
  const clips: Clip[] = [];
  let total = 0,
    files = 0;
  const leaves: string[] = [];
  const walk = (d: string) => {
    let kids: fs.Dirent[];
    try {
      kids = fs.readdirSync(d, { withFileTypes: true });
    } catch (e) {
      throw new EmotorchError(`cannot read the folder '${d}': ${(e as Error).message}`, 'ERR_IO');
    }
    kids.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (!kids.some((k) => k.isDirectory())) leaves.push(d);
    for (const k of kids) if (k.isDirectory()) walk(path.join(d, k.name));
  };
  walk(opts.speechDir);
  done: for (const leaf of leaves) {
    const rel = path.relative(opts.speechDir, leaf);
    fs.mkdirSync(path.join(opts.outDir, rel), { recursive: true });
    const names = fs
      .readdirSync(leaf, { withFileTypes: true })
      .filter((k) => k.isFile())
      .map((k) => k.name)
      .sort();
    for (const name of names) {
      const file = path.join(leaf, name);
      const json = path.join(opts.textDir, rel, `${path.parse(name).name}.json`);
      const doc = readJsonObjectSync(json, 'a speech-to-text result') as { results?: Array<{ alternatives?: Array<{ words?: unknown }> }> };
      const words = doc.results?.[doc.results.length - 1]?.alternatives?.[0]?.words;
      if (!Array.isArray(words)) throw new EmotorchError(`'${json}': no results[-1].alternatives[0].words list`, 'ERR_FORMAT');
      // read as the original's librosa.load reads (channels averaged, soxr HQ), at `sampleRate`
      const audio = (await readAudio(file, { sampleRate: rate, maxSeconds: Infinity, resample: { method: 'soxr_hq' } })).samples;
      // cut_by_limit: words as [start, end + 1] tenths, a new clip when a word would end more than maxLen after the clip's start
      let cut: { times: number[][]; words: string[] } | null = null;
      const slices: Array<{ times: number[][]; words: string[] }> = [];
      words.forEach((w: { startTime?: string; endTime?: string; word?: string }, j) => {
        const where = `'${json}' word ${j}`;
        if (!w || typeof w.word !== 'string' || !w.word) throw new EmotorchError(`${where}: no word`, 'ERR_FORMAT');
        let st = tenths(w.startTime ?? '0s', where),
          et = tenths(w.endTime ?? '0s', where);
        if (et < st) throw new EmotorchError(`${where} ('${w.word}') ends before it starts`, 'ERR_FORMAT');
        if (et - st > 30) {
          if (w.word[0] !== w.word[0].toLowerCase() && w.word[0] === w.word[0].toUpperCase()) st = et - 30;
          else et = st + 30;
        }
        if (cut && et - cut.times[0][0] > maxLen) {
          slices.push(cut);
          cut = null;
        }
        if (cut) {
          cut.times.push([st, et + 1]);
          cut.words.push(w.word.toLowerCase());
        } else cut = { times: [[st, et + 1]], words: [w.word.toLowerCase()] };
      });
      if (cut) slices.push(cut);
      for (const c of slices) {
        const start = c.times[0][0],
          end = c.times[c.times.length - 1][1];
        const npy = path.resolve(opts.outDir, rel, `${clips.length}.npy`);
        if ((end - 1) * perTenth > audio.length)
          throw new EmotorchError(
            `'${json}': the words run to ${((end - 1) / 10).toFixed(1)} s, past the end of '${file}' (${(audio.length / rate).toFixed(1)} s): the alignment does not match the audio`,
            'ERR_FORMAT',
          );
        const ids: number[] = [];
        const entryWords: (string | number)[][] = [];
        let cls = 0,
          sep = 2;
        for (let i = 0; i < c.words.length; i++) {
          const t = await opts.encode(c.words[i]);
          if (!Array.isArray(t) || t.length < 2 || !t.every((x) => Number.isInteger(x) && x >= 0))
            invalid('token ids with <s> and </s>', `encode('${c.words[i]}')`, t);
          [cls, sep] = [t[0], t[t.length - 1]];
          entryWords.push([c.words[i], ids.length + 1, ids.length + t.length - 1, (c.times[i][0] - start) * perTenth, (c.times[i][1] - start) * perTenth]);
          ids.push(...t.slice(1, -1));
        }
        writeNpy(npy, audio.slice(start * perTenth, end * perTenth));
        clips.push({ entry: [npy, [cls, ...ids, sep], ...entryWords], folder: rel, file, start, end });
        total += end - start;
      }
      files++;
      opts.onProgress?.({ files, clips: clips.length, tenths: total });
      if (total >= cap) break done;
    }
  }
  const entries = clips.map((c, i) => {
    const p = clips[i - 1];
    const linked = i > 0 && p.folder === c.folder && (opts.linkAcrossFiles || p.file === c.file) && p.end + 50 > c.start;
    return [...c.entry, linked ? i - 1 : -1];
  });
  const transcripts = path.resolve(opts.outDir, opts.transcriptsName);
  try {
    fs.writeFileSync(transcripts, pickleValue(entries as never));
  } catch (e) {
    throw new EmotorchError(`cannot write '${transcripts}': ${(e as Error).message}`, 'ERR_IO');
  }
  return { transcripts, clips: clips.length, tenths: total };
}
