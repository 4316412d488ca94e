/**
 * Metrics of generated text: SALMONN's token-level accuracy, ROUGE-1/2/L (Google's rouge-score),
 * corpus BLEU (sacrebleu, 13a tokenization), the emotional-trajectory task's emotion-sequence
 * accuracy, and a label parser that maps a free-text answer to a class.
 */
import { checkInt, invalid } from '../errors';
import { Tensor } from '../tensor';
import { Metric, checkOptions, nonEmpty, oneOf, pySplit, sameLength, tensorValues, toStrings } from './common';

// ---------------------------------------------------------------- token accuracy

/** Options of `tokenAccuracy` and `TokenAccuracy`. */
export interface TokenAccuracyOptions {
  /** Compare the prediction at t with the label at t + 1, as a causal LM's logits are laid out (SALMONN, HF). Default true. */
  shift?: boolean;
  /** Label value that is not scored. Default −100. */
  ignoreIndex?: number;
}
/** Token accuracy: correct tokens over counted tokens, and both counts. */
export interface TokenAccuracyResult {
  accuracy: number;
  correct: number;
  total: number;
}

/** Number of dimensions of a Tensor or a (nested) array. */
function depth(x: unknown): number {
  if (x instanceof Tensor) return x.shape.length;
  let d = 0;
  for (let v = x; Array.isArray(v); v = v[0]) d++;
  return d;
}

/**
 * Rows of ids (B, T) from ids (B, T) or (T), or from logits with one dimension more than the
 * labels (argmax over the last one): a Tensor or nested arrays.
 */
function idRows(x: unknown, name: string, labelDepth = 0): number[][] {
  const logits = labelDepth > 0 && depth(x) === labelDepth + 1;
  if (x instanceof Tensor) {
    if (logits) {
      const ids = x.argmax(-1);
      try {
        return idRows(ids, name);
      } finally {
        ids.dispose();
      }
    }
    const shape = x.shape;
    const v = tensorValues(x);
    if (shape.length <= 1) return [v];
    const t = shape[shape.length - 1];
    const rows: number[][] = [];
    for (let i = 0; i < v.length; i += t) rows.push(v.slice(i, i + t));
    return rows;
  }
  if (!Array.isArray(x)) return invalid('a Tensor or an array of token ids', name, x);
  if (logits && labelDepth === 1) return [(x as number[][]).map(argmax)];
  if (x.length && !Array.isArray(x[0])) return [checkIds(x, name)];
  return x.map((row, i) => {
    if (!Array.isArray(row)) invalid('an array of rows', `${name}[${i}]`, row);
    if (logits) return (row as number[][]).map(argmax);
    return checkIds(row, `${name}[${i}]`);
  });
}

function argmax(v: number[]): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

function checkIds(row: unknown[], name: string): number[] {
  return row.map((v, i) => {
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) invalid('integer token ids', `${name}[${i}]`, v);
    return n as number;
  });
}

function tokenCounts(pred: number[][], labels: number[][], o: TokenAccuracyOptions): [number, number] {
  sameLength(pred, labels, 'prediction and label rows');
  const shift = o.shift ?? true;
  const ignore = o.ignoreIndex ?? -100;
  let correct = 0;
  let total = 0;
  pred.forEach((p, b) => {
    const l = labels[b];
    sameLength(p, l, `prediction and label lengths of row ${b}`);
    for (let t = 0; t + (shift ? 1 : 0) < l.length; t++) {
      const y = l[t + (shift ? 1 : 0)];
      if (y === ignore) continue;
      total++;
      if (p[t] === y) correct++;
    }
  });
  return [correct, total];
}

/**
 * SALMONN's token-level accuracy (its `agg_metrics`, used to pick the best checkpoint): the share
 * of label tokens ≠ −100 whose argmax prediction is right, pooled over all tokens (not averaged per
 * batch). With `shift` (default) the prediction at t is compared with the label at t + 1, as
 * SALMONN compares `logits[:, P-1:-1]` with `targets[:, P:]`.
 * @param preds predicted ids (B, T), or logits (B, T, V) whose argmax is taken: a Tensor or nested
 *   arrays, read as logits when they have one dimension more than the labels
 * @param labels label ids (B, T) with −100 where not scored
 * @param opts shift, ignoreIndex
 * @throws EmotorchError ERR_INVALID_ARG on mismatched shapes or when no token is scored
 * @example
 * et.metrics.tokenAccuracy(out.logits, batch.labels).accuracy;
 */
export function tokenAccuracy(preds: unknown, labels: unknown, opts?: TokenAccuracyOptions): TokenAccuracyResult {
  const o = checkOptions<TokenAccuracyOptions>(opts, 'options', ['shift', 'ignoreIndex']);
  const [correct, total] = tokenCounts(idRows(preds, 'preds', depth(labels)), idRows(labels, 'labels'), o);
  nonEmpty(total, 'labels (no token differs from ignoreIndex)');
  return { accuracy: correct / total, correct, total };
}

/**
 * Streaming {@link tokenAccuracy}: keeps only the two counts.
 * @example
 * const acc = new et.metrics.TokenAccuracy();
 * acc.update(out.logits, batch.labels);   // per batch
 * acc.compute().accuracy;
 */
export class TokenAccuracy {
  private correct = 0;
  private total = 0;
  constructor(private readonly opts: TokenAccuracyOptions = {}) {
    checkOptions(opts, 'options', ['shift', 'ignoreIndex']);
  }
  /** Adds one batch (predicted ids or logits, and labels). */
  update(preds: unknown, labels: unknown): this {
    const [c, t] = tokenCounts(idRows(preds, 'preds', depth(labels)), idRows(labels, 'labels'), this.opts);
    this.correct += c;
    this.total += t;
    return this;
  }
  /** @throws EmotorchError ERR_INVALID_ARG when no token was scored */
  compute(): TokenAccuracyResult {
    nonEmpty(this.total, 'labels (no token differs from ignoreIndex)');
    return { accuracy: this.correct / this.total, correct: this.correct, total: this.total };
  }
  /** Forgets every update. */
  reset(): void {
    this.correct = 0;
    this.total = 0;
  }
}

// ---------------------------------------------------------------- ROUGE

/** A tokenizer: a named one or a function from text to tokens. */
export type RougeTokenizer = 'rouge-score' | 'cjk' | 'whitespace' | ((text: string) => string[]);
/** Options of `Rouge` and `rouge`: the tokenizer. */
export interface RougeOptions {
  /**
   * 'rouge-score' (default): Google rouge-score's tokenizer, lowercase, every character outside
   * [a-z0-9] is a separator (so non-Latin text has no tokens). 'cjk': the same, plus every CJK
   * ideograph, kana and hangul syllable is a token of its own (for Chinese answers such as the
   * emotional-trajectory task's). 'whitespace': Python `str.split()`. Or a function.
   */
  tokenizer?: RougeTokenizer;
  /**
   * The most tokens one prediction or reference may have (default {@link ROUGE_MAX_TOKENS},
   * 100 000): ROUGE-L's time grows with the product of the two lengths, so a longer text is
   * refused with ERR_INVALID_ARG naming it (before it is all tokenized), not left to run for
   * minutes or exhaust memory. Raise it knowingly: two texts of 200 000 tokens take 3–7 s.
   */
  maxTokens?: number;
}
/**
 * {@link RougeOptions.maxTokens}'s default: 100 000 tokens per text (a 200-page book). At the cap,
 * ROUGE-L of one pair is at most about 3.3·10⁸ word operations (1–2 s) in memory linear in the
 * shorter text.
 */
export const ROUGE_MAX_TOKENS = 100_000;
/** One ROUGE variant's precision, recall and F-measure (rouge-score's Score). */
export interface RougePrf {
  precision: number;
  recall: number;
  fmeasure: number;
}
/** Mean ROUGE-1, ROUGE-2 and ROUGE-L scores, and each sample's. */
export interface RougeResult {
  /** Means over the samples (what papers report as ROUGE-1/2/L F). */
  rouge1: RougePrf;
  rouge2: RougePrf;
  rougeL: RougePrf;
  /** Per-sample scores, in input order. */
  samples: { rouge1: RougePrf; rouge2: RougePrf; rougeL: RougePrf }[];
}

const CJK = '\\u3040-\\u30ff\\u3400-\\u4dbf\\u4e00-\\u9fff\\uac00-\\ud7af\\uf900-\\ufaff';

/**
 * Tokens by the named scheme (see {@link RougeOptions.tokenizer}).
 * @throws EmotorchError ERR_INVALID_ARG for a text that is not a string or an unknown tokenizer
 */
export function rougeTokenize(text: string, tokenizer: RougeTokenizer = 'rouge-score'): string[] {
  return boundedTokens(text, checkTokenizer(tokenizer), Infinity, 'text');
}

/** rouge-score's tokens are the runs of [a-z0-9] of the lowercased text; 'cjk' adds each CJK character as a token of its own. */
const TOKEN_RE = { 'rouge-score': /[a-z0-9]+/g, cjk: new RegExp(`[a-z0-9]+|[${CJK}]`, 'g') };

/**
 * The tokens of `text` ({@link rougeTokenize}), refused once there are more than `max` of them:
 * the named tokenizers stop matching there, so a huge text never becomes a huge array.
 * @throws EmotorchError ERR_INVALID_ARG naming `name` for a non-string, a bad tokenizer output or too many tokens
 */
function boundedTokens(text: string, tokenizer: RougeTokenizer, max: number, name: string): string[] {
  if (typeof text !== 'string') invalid('a string', name, text);
  const tooMany = (n: string): never =>
    invalid(`a text of at most ${max} tokens (the maxTokens option; ROUGE-L's time grows with the product of the lengths)`, name, `a text of ${n} tokens`);
  if (typeof tokenizer === 'function') {
    const t = tokenizer(text);
    if (!Array.isArray(t) || t.some((x) => typeof x !== 'string')) invalid('a tokenizer returning an array of strings', 'tokenizer', t);
    if (t.length > max) tooMany(String(t.length));
    return t;
  }
  if (tokenizer === 'whitespace') {
    const t = pySplit(text);
    if (t.length > max) tooMany(String(t.length));
    return t;
  }
  // the same tokens as lower.replace(/[^a-z0-9]+/g, ' ').split(/\s+/) (and, for 'cjk', each CJK character spaced apart)
  const re = new RegExp(TOKEN_RE[tokenizer]);
  const lower = text.toLowerCase();
  const out: string[] = [];
  for (let m = re.exec(lower); m !== null; m = re.exec(lower)) {
    if (out.length === max) tooMany(`more than ${max}`);
    out.push(m[0]);
  }
  return out;
}

function ngramCounts(tokens: string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const k = tokens.slice(i, i + n).join('\u0000');
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

function fmeasure(p: number, r: number): number {
  return p + r > 0 ? (2 * p * r) / (p + r) : 0;
}

function rougeN(pred: string[], ref: string[], n: number): RougePrf {
  const pc = ngramCounts(pred, n);
  const rc = ngramCounts(ref, n);
  let inter = 0;
  for (const [k, c] of rc) inter += Math.min(c, pc.get(k) ?? 0);
  const pn = Math.max(pred.length - n + 1, 0);
  const rn = Math.max(ref.length - n + 1, 0);
  const precision = inter / Math.max(pn, 1);
  const recall = inter / Math.max(rn, 1);
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Bits per limb of the LCS bit vector: 30, so sums and differences stay int32 (fast). */
const LIMB = 30;
const LIMB_MASK = (1 << LIMB) - 1;

/**
 * Length of the longest common subsequence of two token lists, computed bit-parallel (Hyyrö's
 * form of Allison–Dix): one bit per token of `a` in a vector V, one pass over V's limbs per token
 * of `b` (a token of `b` that `a` lacks leaves V as it is), LCS = the zero bits of V. Exact; time
 * O(|a|·|b| / 30) word operations, memory linear in |a| (callers pass the shorter list as `a`):
 * V, a scratch match mask, and per token of `a` either its positions or, for a token that occurs
 * at least once per limb of its span, its match bits over that span (never more words than it
 * has occurrences). {@link step} runs a bounded amount of work, so a caller can yield to the
 * event loop between chunks.
 */
class LcsRun {
  private readonly n: number;
  private readonly limbs: number;
  private readonly v: Int32Array;
  private readonly mask: Int32Array;
  /** Per token of `a`: its positions in order (rare tokens), or its match bits over limbs lo.. (frequent ones). */
  private readonly matches = new Map<string, number[] | { lo: number; bits: Int32Array }>();
  private row = 0;

  constructor(
    a: readonly string[],
    private readonly b: readonly string[],
  ) {
    this.n = a.length;
    this.limbs = Math.ceil(a.length / LIMB);
    this.v = new Int32Array(this.limbs).fill(LIMB_MASK);
    this.mask = new Int32Array(this.limbs);
    const positions = new Map<string, number[]>();
    a.forEach((t, i) => {
      const p = positions.get(t);
      if (p) p.push(i);
      else positions.set(t, [i]);
    });
    for (const [t, pos] of positions) {
      const lo = (pos[0] / LIMB) | 0,
        hi = (pos[pos.length - 1] / LIMB) | 0;
      if (pos.length < hi - lo + 1) {
        this.matches.set(t, pos);
        continue;
      }
      // as many occurrences as limbs spanned: the bits themselves take no more room, and spare
      // setting and clearing every position for each matching token of b
      const bits = new Int32Array(hi - lo + 1);
      for (const i of pos) bits[((i / LIMB) | 0) - lo] |= 1 << (i % LIMB);
      this.matches.set(t, { lo, bits });
    }
  }

  /** Processes tokens of `b` until about `budget` limb operations are spent; true when done. */
  step(budget = Infinity): boolean {
    const { v, mask, b, limbs } = this;
    let spent = 0;
    while (this.row < b.length && spent < budget) {
      const match = this.matches.get(b[this.row++]);
      spent += 1;
      if (!match) continue;
      let m: Int32Array, lo: number, hi: number, off: number;
      if (Array.isArray(match)) {
        for (const i of match) mask[(i / LIMB) | 0] |= 1 << (i % LIMB);
        m = mask;
        off = 0;
        lo = (match[0] / LIMB) | 0;
        hi = (match[match.length - 1] / LIMB) | 0;
      } else {
        m = match.bits;
        lo = match.lo;
        off = lo;
        hi = lo + match.bits.length - 1;
      }
      // V = (V + U) | (V - U), U = V & M, over limbs lo.. (below lo U is 0 and V stays); above
      // hi the carry and borrow run out and V stays again
      let carry = 0,
        borrow = 0,
        w = lo;
      for (; w <= hi; w++) {
        const x = v[w];
        const u = x & m[w - off];
        const sum = x + u + carry;
        carry = sum >> LIMB;
        const diff = x - u - borrow;
        borrow = diff < 0 ? 1 : 0;
        v[w] = (sum | diff) & LIMB_MASK;
      }
      for (; w < limbs && carry | borrow; w++) {
        const x = v[w];
        const sum = x + carry;
        carry = sum >> LIMB;
        const diff = x - borrow;
        borrow = diff < 0 ? 1 : 0;
        v[w] = (sum | diff) & LIMB_MASK;
      }
      spent += w - lo;
      if (Array.isArray(match)) for (const i of match) mask[(i / LIMB) | 0] = 0;
    }
    return this.row >= b.length;
  }

  /** The LCS length (once {@link step} has returned true). */
  get length(): number {
    let ones = 0;
    for (let w = 0; w < this.limbs; w++) {
      let x = this.v[w];
      if (w === this.limbs - 1 && this.n % LIMB) x &= (1 << (this.n % LIMB)) - 1;
      x -= (x >>> 1) & 0x55555555;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      ones += Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
    }
    return this.n - ones;
  }
}

/** Word operations of LCS work between yields of the async ROUGE (a few milliseconds). */
const LCS_CHUNK = 1 << 20;

/** ROUGE-L of two token lists; yields between chunks of LCS work. */
function* rougeLcs(pred: string[], ref: string[]): Generator<void, RougePrf> {
  if (pred.length === 0 || ref.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  // the LCS is symmetric: the bit vector (and the position lists) over the shorter list, memory O(min(n, m))
  const run = pred.length <= ref.length ? new LcsRun(pred, ref) : new LcsRun(ref, pred);
  while (!run.step(LCS_CHUNK)) yield;
  const lcs = run.length;
  const precision = lcs / pred.length;
  const recall = lcs / ref.length;
  return { precision, recall, fmeasure: fmeasure(precision, recall) };
}

/** Runs a ROUGE generator to its end without yielding (the sync API). */
function runSync<R>(g: Generator<void, R>): R {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
  }
}

/** Runs a ROUGE generator, letting the event loop run (setImmediate) at each of its yields. */
async function runYielding<R>(g: Generator<void, R>): Promise<R> {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

type Refs = string | readonly string[];

function readRefs(refs: unknown, name: string): string[][] {
  if (!Array.isArray(refs)) return invalid('an array of references', name, refs);
  return refs.map((r, i) => {
    if (typeof r === 'string') return [r];
    if (!Array.isArray(r) || r.length === 0 || r.some((x) => typeof x !== 'string')) invalid('a string or a non-empty array of strings', `${name}[${i}]`, r);
    return r as string[];
  });
}

function* rougeOf(preds: string[], refs: string[][], tokenizer: RougeTokenizer, maxTokens: number): Generator<void, RougeResult> {
  sameLength(preds, refs, 'predictions and references');
  nonEmpty(preds.length, 'predictions');
  // several references: per ROUGE type, the reference with the best F (rouge-score score_multi)
  const best = (scores: RougePrf[]) => scores.reduce((a, b) => (b.fmeasure > a.fmeasure ? b : a));
  const samples: RougeResult['samples'] = [];
  for (let i = 0; i < preds.length; i++) {
    const pt = boundedTokens(preds[i], tokenizer, maxTokens, `predictions[${i}]`);
    const rt = refs[i].map((r, j) => boundedTokens(r, tokenizer, maxTokens, refs[i].length > 1 ? `references[${i}][${j}]` : `references[${i}]`));
    const l: RougePrf[] = [];
    for (const r of rt) l.push(yield* rougeLcs(pt, r));
    samples.push({ rouge1: best(rt.map((r) => rougeN(pt, r, 1))), rouge2: best(rt.map((r) => rougeN(pt, r, 2))), rougeL: best(l) });
  }
  const avg = (k: 'rouge1' | 'rouge2' | 'rougeL'): RougePrf => {
    const m = (f: keyof RougePrf) => samples.reduce((s, x) => s + x[k][f], 0) / samples.length;
    return { precision: m('precision'), recall: m('recall'), fmeasure: m('fmeasure') };
  };
  return { rouge1: avg('rouge1'), rouge2: avg('rouge2'), rougeL: avg('rougeL'), samples };
}

function checkTokenizer(t: unknown): RougeTokenizer {
  if (typeof t === 'function') return t as RougeTokenizer;
  return oneOf(t ?? 'rouge-score', ['rouge-score', 'cjk', 'whitespace'] as const, 'tokenizer');
}

/** The options of `rouge`, `rougeAsync` and `Rouge`, checked. */
function rougeOptions(opts: unknown): { tokenizer: RougeTokenizer; maxTokens: number } {
  const o = checkOptions<RougeOptions>(opts, 'options', ['tokenizer', 'maxTokens']);
  return { tokenizer: checkTokenizer(o.tokenizer), maxTokens: o.maxTokens === undefined ? ROUGE_MAX_TOKENS : checkInt(o.maxTokens, 'maxTokens', 1) };
}

/**
 * ROUGE-1, ROUGE-2 (n-gram overlap) and ROUGE-L (longest common subsequence) precision, recall
 * and F-measure per sample, as Google's rouge-score `RougeScorer(['rouge1','rouge2','rougeL'])`
 * computes them (no stemming), and their means over the samples. With several references per
 * prediction, each ROUGE type takes the reference with the best F (rouge-score `score_multi`).
 * @param predictions generated texts
 * @param references one reference (or several) per prediction
 * @param opts tokenizer ('rouge-score' default; 'cjk' for Chinese)
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched input
 * @example
 * et.metrics.rouge(['the cat sat'], ['the cat sat down']).rougeL.fmeasure;  // 0.857
 */
export function rouge(predictions: readonly string[], references: readonly Refs[], opts?: RougeOptions): RougeResult {
  const o = rougeOptions(opts);
  return runSync(rougeOf(toStrings(predictions, 'predictions'), readRefs(references, 'references'), o.tokenizer, o.maxTokens));
}

/**
 * {@link rouge} without blocking the event loop: the same results, with the ROUGE-L work (the
 * quadratic part: long texts take seconds) cut into chunks of a few milliseconds, and timers and
 * I/O served between them.
 * @param predictions generated texts
 * @param references one reference (or several) per prediction
 * @param opts tokenizer ('rouge-score' default; 'cjk' for Chinese)
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched input (the promise rejects)
 * @example
 * const { rougeL } = await et.metrics.rougeAsync(longAnswers, references);
 */
export async function rougeAsync(predictions: readonly string[], references: readonly Refs[], opts?: RougeOptions): Promise<RougeResult> {
  const o = rougeOptions(opts);
  return runYielding(rougeOf(toStrings(predictions, 'predictions'), readRefs(references, 'references'), o.tokenizer, o.maxTokens));
}

/** Streaming {@link rouge}: `update(predictions, references)`; `computeAsync()` as {@link rougeAsync}. */
export class Rouge extends Metric<string, string[], RougeResult> {
  private readonly tokenizer: RougeTokenizer;
  private readonly maxTokens: number;
  constructor(opts: RougeOptions = {}) {
    super();
    ({ tokenizer: this.tokenizer, maxTokens: this.maxTokens } = rougeOptions(opts));
  }
  protected read(preds: unknown, targets: unknown): [string[], string[][]] {
    return [toStrings(preds, 'predictions'), readRefs(targets, 'references')];
  }
  protected run(p: string[], t: string[][]): RougeResult {
    return runSync(rougeOf(p, t, this.tokenizer, this.maxTokens));
  }
  /**
   * {@link compute} without blocking the event loop (see {@link rougeAsync}).
   * @throws EmotorchError ERR_INVALID_ARG when nothing was added (the promise rejects)
   */
  async computeAsync(): Promise<RougeResult> {
    return runYielding(rougeOf(this.preds, this.targets, this.tokenizer, this.maxTokens));
  }
}

// ---------------------------------------------------------------- BLEU

/** Options of `Bleu` and `bleu` (sacrebleu's tokenizer, lowercase and smoothing). */
export interface BleuOptions {
  /** sacrebleu tokenizer: '13a' (default), 'char' (every non-space character), 'none'. */
  tokenize?: '13a' | 'char' | 'none';
  /** Lowercase before tokenizing. Default false. */
  lowercase?: boolean;
  /** sacrebleu smoothing: 'exp' (default), 'floor', 'add-k', 'none'. */
  smoothMethod?: 'exp' | 'floor' | 'add-k' | 'none';
  /** Value for 'floor' (default 0.1) and 'add-k' (default 1). */
  smoothValue?: number;
  /** Highest n-gram order. Default 4. */
  maxNgramOrder?: number;
  /** Average only over the n-gram orders the hypotheses have (sacrebleu `effective_order`). Default false. */
  effectiveOrder?: boolean;
}
/** Corpus BLEU as sacrebleu reports it: the score, n-gram precisions, brevity penalty and lengths. */
export interface BleuResult {
  /** BLEU in [0, 100], as sacrebleu prints it. */
  score: number;
  /** Modified n-gram precisions in percent. */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  sysLen: number;
  refLen: number;
  /** Matching and total n-grams per order. */
  counts: number[];
  totals: number[];
}

const RE_13A: [RegExp, string][] = [
  // eslint-disable-next-line no-useless-escape -- sacrebleu's 13a regular expression as sacrebleu writes it
  [/([\{-\~\[-\` -\&\(-\+\:-\@\/])/g, ' $1 '],
  [/([^0-9])([.,])/g, '$1 $2 '],
  [/([.,])([^0-9])/g, ' $1 $2'],
  [/([0-9])(-)/g, '$1 $2 '],
];

/**
 * sacrebleu's `13a` tokenizer (mteval-v13a), exactly.
 * @throws EmotorchError ERR_INVALID_ARG for a line that is not a string
 */
export function tokenize13a(line: string): string {
  if (typeof line !== 'string') invalid('a string', 'line', line);
  let s = line.split('<skipped>').join('').split('-\n').join('').split('\n').join(' ');
  if (s.includes('&')) s = s.split('&quot;').join('"').split('&amp;').join('&').split('&lt;').join('<').split('&gt;').join('>');
  s = ` ${s} `;
  for (const [re, rep] of RE_13A) s = s.replace(re, rep);
  return pySplit(s).join(' ');
}

function bleuTokenize(line: string, o: Required<Pick<BleuOptions, 'tokenize' | 'lowercase'>>): string[] {
  let s = line.replace(/[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/u, '');
  if (o.lowercase) s = s.toLowerCase();
  const tok = o.tokenize === '13a' ? tokenize13a(s) : o.tokenize === 'char' ? [...s].filter((c) => c !== ' ').join(' ') : s;
  return pySplit(tok);
}

function myLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

function bleuOf(hyps: string[], refs: string[][], opts: BleuOptions): BleuResult {
  sameLength(hyps, refs, 'hypotheses and references');
  nonEmpty(hyps.length, 'hypotheses');
  const o = { tokenize: opts.tokenize ?? '13a', lowercase: opts.lowercase ?? false };
  const N = opts.maxNgramOrder ?? 4;
  const method = opts.smoothMethod ?? 'exp';
  const correct = new Array<number>(N).fill(0);
  const total = new Array<number>(N).fill(0);
  let sysLen = 0;
  let refLen = 0;
  hyps.forEach((h, i) => {
    const ht = bleuTokenize(h, o);
    const maxRef = new Map<string, number>();
    let closest = -1;
    let closestDiff = -1;
    for (const r of refs[i]) {
      const rt = bleuTokenize(r, o);
      const diff = Math.abs(ht.length - rt.length);
      if (closestDiff === -1 || diff < closestDiff) {
        closestDiff = diff;
        closest = rt.length;
      } else if (diff === closestDiff && rt.length < closest) closest = rt.length;
      for (let n = 1; n <= N; n++) for (const [k, c] of ngramCounts(rt, n)) maxRef.set(k, Math.max(maxRef.get(k) ?? 0, c));
    }
    sysLen += ht.length;
    refLen += closest;
    for (let n = 1; n <= N; n++) {
      for (const [k, c] of ngramCounts(ht, n)) {
        total[n - 1] += c;
        const r = maxRef.get(k);
        if (r !== undefined) correct[n - 1] += Math.min(c, r);
      }
    }
  });
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = new Array<number>(N).fill(0);
  const counts = correct.slice();
  const totals = total.slice();
  if (!correct.some((c) => c !== 0)) return { score: 0, precisions, bp, sysLen, refLen, counts, totals };
  const k = opts.smoothValue ?? (method === 'floor' ? 0.1 : 1);
  let smooth = 1;
  let eff = N;
  for (let n = 1; n <= N; n++) {
    if (method === 'add-k' && n > 1) {
      correct[n - 1] += k;
      total[n - 1] += k;
    }
    if (total[n - 1] === 0) break;
    if (opts.effectiveOrder) eff = n;
    if (correct[n - 1] === 0) {
      if (method === 'exp') {
        smooth *= 2;
        precisions[n - 1] = 100 / (smooth * total[n - 1]);
      } else if (method === 'floor') precisions[n - 1] = (100 * k) / total[n - 1];
    } else precisions[n - 1] = (100 * correct[n - 1]) / total[n - 1];
  }
  const score = bp * Math.exp(precisions.slice(0, eff).reduce((s, p) => s + myLog(p), 0) / eff);
  return { score, precisions, bp, sysLen, refLen, counts, totals };
}

const BLEU_KEYS = ['tokenize', 'lowercase', 'smoothMethod', 'smoothValue', 'maxNgramOrder', 'effectiveOrder'];
function checkBleu(opts: unknown): BleuOptions {
  const o = checkOptions<BleuOptions>(opts, 'options', BLEU_KEYS);
  if (o.tokenize !== undefined) oneOf(o.tokenize, ['13a', 'char', 'none'], 'tokenize');
  if (o.smoothMethod !== undefined) oneOf(o.smoothMethod, ['exp', 'floor', 'add-k', 'none'], 'smoothMethod');
  if (o.maxNgramOrder !== undefined && (!Number.isInteger(o.maxNgramOrder) || o.maxNgramOrder < 1))
    invalid('a positive integer', 'maxNgramOrder', o.maxNgramOrder);
  if (o.smoothValue !== undefined && (typeof o.smoothValue !== 'number' || !(o.smoothValue >= 0)))
    invalid('a non-negative number', 'smoothValue', o.smoothValue);
  return o;
}

/**
 * Corpus BLEU exactly as sacrebleu's `corpus_bleu` (defaults: 13a tokenization, exp smoothing,
 * 4-grams): clipped n-gram matches summed over the corpus, brevity penalty from the closest
 * reference length, score = BP · exp(mean log p_n) in [0, 100].
 * @param hypotheses generated texts
 * @param references one reference (or several) per hypothesis
 * @param opts tokenize, lowercase, smoothMethod, smoothValue, maxNgramOrder, effectiveOrder
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched input or bad options
 * @example
 * et.metrics.bleu(['the cat sat on the mat'], ['the cat sat on a mat']).score;
 */
export function bleu(hypotheses: readonly string[], references: readonly Refs[], opts?: BleuOptions): BleuResult {
  return bleuOf(toStrings(hypotheses, 'hypotheses'), readRefs(references, 'references'), checkBleu(opts));
}

/** Streaming {@link bleu} (corpus BLEU over every batch). */
export class Bleu extends Metric<string, string[], BleuResult> {
  private readonly opts: BleuOptions;
  constructor(opts: BleuOptions = {}) {
    super();
    this.opts = checkBleu(opts);
  }
  protected read(preds: unknown, targets: unknown): [string[], string[][]] {
    return [toStrings(preds, 'hypotheses'), readRefs(targets, 'references')];
  }
  protected run(p: string[], t: string[][]): BleuResult {
    return bleuOf(p, t, this.opts);
  }
}

// ---------------------------------------------------------------- emotion sequence

/** Options of the emotional-trajectory readers (`parseEmotionSequence`, `EmotionSequenceAccuracy`). */
export interface EmotionSequenceOptions {
  /** The marker before the sequence. Default '情绪序列' (the fine-tune's suffix `\n情绪序列: a -> b -> c`). */
  marker?: string;
  /** Map an emotion word to its canonical name before comparing (e.g. `{ joy: 'happy' }`); keys lowercase. */
  synonyms?: Record<string, string>;
}

const SEQ_TRIM = /^[\s"'“”‘’「」『』()[\]（）【】.,;:!?。，；：！？、…]+|[\s"'“”‘’「」『』()[\]（）【】.,;:!?。，；：！？、…]+$/gu;

/**
 * Reads the emotion sequence of a generation: the text after the last `<marker>:` (ASCII or
 * full-width colon) up to the end of that line (a trailing `</s>` dropped), split on `->` or `→`;
 * each emotion trimmed of spaces, quotes and punctuation, lowercased and mapped through
 * `synonyms`. Returns null when there is no marker, or nothing after it.
 * @param text a generated answer
 * @param opts marker, synonyms
 * @throws EmotorchError ERR_INVALID_ARG for a text that is not a string or bad options
 * @example
 * et.metrics.parseEmotionSequence('用户先平静后开心。\n情绪序列: Neutral -> happy');  // ['neutral', 'happy']
 */
export function parseEmotionSequence(text: string, opts?: EmotionSequenceOptions): string[] | null {
  if (typeof text !== 'string') invalid('a string', 'text', text);
  const o = checkSeqOptions(opts);
  return parseSeq(text, o.marker ?? '情绪序列', o.synonyms ?? {});
}

function checkSeqOptions(opts: unknown): EmotionSequenceOptions {
  const o = checkOptions<EmotionSequenceOptions>(opts, 'options', ['marker', 'synonyms']);
  if (o.marker !== undefined && (typeof o.marker !== 'string' || o.marker.length === 0)) invalid('a non-empty string', 'marker', o.marker);
  if (o.synonyms !== undefined && (o.synonyms === null || typeof o.synonyms !== 'object' || Object.values(o.synonyms).some((v) => typeof v !== 'string')))
    invalid('an object of strings', 'synonyms', o.synonyms);
  return o;
}

function parseSeq(text: string, marker: string, synonyms: Record<string, string>): string[] | null {
  if (typeof text !== 'string') return null;
  let at = -1;
  let from = text.length;
  while (from >= 0) {
    const k = text.lastIndexOf(marker, from);
    if (k < 0) break;
    const rest = text.slice(k + marker.length);
    const m = /^[ \t]*[:：]/.exec(rest);
    if (m) {
      at = k + marker.length + m[0].length;
      break;
    }
    from = k - 1;
  }
  if (at < 0) return null;
  const line = text.slice(at).split(/\r?\n/)[0].replace(/<\/s>/g, '');
  const items = line.split(/->|→/).map((s) => {
    const w = s.replace(SEQ_TRIM, '').toLowerCase();
    return synonyms[w] ?? w;
  });
  if (items.every((w) => w.length === 0)) return null;
  return items;
}

/** Emotional-trajectory scores: exact sequences and per-turn agreement. */
export interface EmotionSequenceResult {
  /** Share of samples whose whole sequence equals the gold one (unparsable = wrong). */
  exact: number;
  /** Correct positions over all gold positions (missing or unparsable positions are wrong). */
  position: number;
  /** Accuracy at each position 0, 1, … over the samples whose gold sequence reaches it. */
  byPosition: number[];
  /** Generations without a readable sequence. */
  unparsable: number;
  total: number;
}

function seqScores(gens: string[], gold: string[][], marker: string, syn: Record<string, string>): EmotionSequenceResult {
  sameLength(gens, gold, 'generations and targets');
  nonEmpty(gold.length, 'targets');
  let exact = 0;
  let unparsable = 0;
  const right: number[] = [];
  const seen: number[] = [];
  gens.forEach((g, i) => {
    const p = parseSeq(g, marker, syn);
    if (p === null) unparsable++;
    const t = gold[i];
    if (p && p.length === t.length && p.every((w, j) => w === t[j])) exact++;
    t.forEach((w, j) => {
      seen[j] = (seen[j] ?? 0) + 1;
      right[j] = (right[j] ?? 0) + (p && p[j] === w ? 1 : 0);
    });
  });
  const positions = seen.reduce((s, v) => s + v, 0);
  const correct = right.reduce((s, v) => s + v, 0);
  return {
    exact: exact / gold.length,
    position: positions ? correct / positions : NaN,
    byPosition: seen.map((n, j) => right[j] / n),
    unparsable,
    total: gold.length,
  };
}

/** Generations: an array; an element that is not a string (null from a failed call) is unparsable. */
function readGenerations(g: unknown): string[] {
  if (!Array.isArray(g)) return invalid('an array of generated texts', 'generations', g);
  return g as string[];
}

function readGold(targets: unknown, marker: string, syn: Record<string, string>): string[][] {
  if (!Array.isArray(targets)) return invalid('an array of emotion lists or target texts', 'targets', targets);
  return targets.map((t, i) => {
    if (typeof t === 'string') {
      const s = parseSeq(t, marker, syn);
      if (!s) invalid(`a target text with a '${marker}:' sequence`, `targets[${i}]`, t);
      return s;
    }
    if (!Array.isArray(t) || t.length === 0 || t.some((w) => typeof w !== 'string'))
      invalid('a non-empty array of emotion names or a target text', `targets[${i}]`, t);
    return (t as string[]).map((w) => {
      const x = w.trim().toLowerCase();
      return syn[x] ?? x;
    });
  });
}

/**
 * Emotion-sequence accuracy of the emotional-trajectory task: parses the `情绪序列: a -> b -> c`
 * suffix of each generation ({@link parseEmotionSequence}) and compares it with the gold sequence:
 * exact-sequence accuracy, per-position accuracy and accuracy at each position. An unparsable
 * generation counts as wrong everywhere and is counted; it never throws.
 * @param generations generated answers
 * @param targets gold emotion lists (`['neutral', 'happy', 'sad']`) or gold target texts with the suffix
 * @param opts marker, synonyms
 * @throws EmotorchError ERR_INVALID_ARG on empty or mismatched input or an unreadable gold target
 * @example
 * et.metrics.emotionSequenceAccuracy(['…\n情绪序列: neutral -> happy'], [['neutral', 'sad']]);
 * // { exact: 0, position: 0.5, byPosition: [1, 0], unparsable: 0, total: 1 }
 */
export function emotionSequenceAccuracy(
  generations: readonly string[],
  targets: readonly (string | readonly string[])[],
  opts?: EmotionSequenceOptions,
): EmotionSequenceResult {
  const o = checkSeqOptions(opts);
  const marker = o.marker ?? '情绪序列';
  const syn = o.synonyms ?? {};
  return seqScores(readGenerations(generations), readGold(targets, marker, syn), marker, syn);
}

/** Streaming {@link emotionSequenceAccuracy}: `update(generations, targets)`. */
export class EmotionSequenceAccuracy extends Metric<string, string[], EmotionSequenceResult> {
  private readonly marker: string;
  private readonly syn: Record<string, string>;
  constructor(opts: EmotionSequenceOptions = {}) {
    super();
    const o = checkSeqOptions(opts);
    this.marker = o.marker ?? '情绪序列';
    this.syn = o.synonyms ?? {};
  }
  protected read(preds: unknown, targets: unknown): [string[], string[][]] {
    return [readGenerations(preds), readGold(targets, this.marker, this.syn)];
  }
  protected run(p: string[], t: string[][]): EmotionSequenceResult {
    return seqScores(p, t, this.marker, this.syn);
  }
}

// ---------------------------------------------------------------- label parser

/** Options of `new LabelParser`: the classes and the other words that name them. */
export interface LabelParserOptions {
  /** The classes, as returned by {@link LabelParser.parse}. */
  labels: readonly string[];
  /**
   * Other words that mean a class: `{ joy: 'happy', happiness: 'happy' }`. Entries whose class is
   * not among `labels` are ignored, so one table (such as {@link EMOTION_SYNONYMS}) serves several label sets.
   */
  synonyms?: Record<string, string>;
  /** Match case-sensitively. Default false. */
  caseSensitive?: boolean;
  /**
   * 'first' (default): the class mentioned earliest in the text (the longest word wins at one
   * position); 'unique': the class only when exactly one class is mentioned; 'exact': the whole
   * answer, stripped of spaces and punctuation, must be a class word.
   */
  match?: 'first' | 'unique' | 'exact';
}

/** Emotion words and the classes they usually mean, for {@link LabelParserOptions.synonyms}. */
export const EMOTION_SYNONYMS: Readonly<Record<string, string>> = Object.freeze({
  joy: 'happy',
  joyful: 'happy',
  happiness: 'happy',
  glad: 'happy',
  sadness: 'sad',
  unhappy: 'sad',
  angry: 'anger',
  mad: 'anger',
  surprised: 'surprise',
  surprising: 'surprise',
  fearful: 'fear',
  afraid: 'fear',
  scared: 'fear',
  disgusted: 'disgust',
  disgusting: 'disgust',
  calm: 'neutral',
});

const PUNCT_EDGE = /^[\s\p{P}\p{S}]+|[\s\p{P}\p{S}]+$/gu;
const WORD = /[\p{L}\p{N}_]/u;
const SPACED = /[a-z0-9_]/i;

/**
 * Maps a generated answer to a class: NFKC-normalized, case-folded (unless caseSensitive), then
 * the class (or synonym) words are looked for as whole words (a Latin word must not continue on
 * either side: "unhappy" is not "happy"; words in scripts without spaces, such as Chinese, match
 * anywhere). Answers with no class word are unparsable (null) and counted by {@link parseAll}.
 * @example
 * const p = new et.metrics.LabelParser({ labels: ['happy', 'sad', 'neutral'], synonyms: et.metrics.EMOTION_SYNONYMS });
 * p.parse('The speaker sounds joyful.');  // 'happy'
 * p.parseAll(['Sad.', 'no idea']);         // { labels: ['sad', null], unparsable: 1 }
 */
export class LabelParser {
  private readonly words: { word: string; label: string }[];
  private readonly caseSensitive: boolean;
  private readonly match: 'first' | 'unique' | 'exact';
  readonly labels: readonly string[];

  /**
   * @param opts labels, synonyms, caseSensitive, match
   * @throws EmotorchError ERR_INVALID_ARG on an empty label list or a synonym that is not a string
   */
  constructor(opts: LabelParserOptions) {
    const o = checkOptions<LabelParserOptions>(opts, 'options', ['labels', 'synonyms', 'caseSensitive', 'match']);
    if (!Array.isArray(o.labels) || o.labels.length === 0 || o.labels.some((l) => typeof l !== 'string' || l.trim().length === 0))
      invalid('a non-empty array of non-empty strings', 'labels', o.labels);
    this.labels = [...o.labels];
    this.caseSensitive = o.caseSensitive ?? false;
    if (typeof this.caseSensitive !== 'boolean') invalid('a boolean', 'caseSensitive', o.caseSensitive);
    this.match = oneOf(o.match ?? 'first', ['first', 'unique', 'exact'] as const, 'match');
    const syn = o.synonyms ?? {};
    if (syn === null || typeof syn !== 'object') invalid('an object of strings', 'synonyms', syn);
    const norm = (s: string) => this.norm(s).replace(PUNCT_EDGE, '');
    this.words = this.labels.map((l) => ({ word: norm(l), label: l }));
    for (const [w, l] of Object.entries(syn)) {
      if (typeof l !== 'string') invalid('a class name', `synonyms[${JSON.stringify(w)}]`, l);
      if (this.labels.includes(l)) this.words.push({ word: norm(w), label: l });
    }
    this.words = this.words.filter((w) => w.word.length > 0).sort((a, b) => b.word.length - a.word.length);
  }

  private norm(s: string): string {
    const n = s.normalize('NFKC');
    return this.caseSensitive ? n : n.toLowerCase();
  }

  /**
   * The class of one answer, or null when unparsable (never throws on any string).
   * @param text a generated answer
   */
  parse(text: string): string | null {
    if (typeof text !== 'string') return null;
    const s = this.norm(text);
    const bare = s.replace(PUNCT_EDGE, '');
    const whole = this.words.find((w) => w.word === bare);
    if (whole) return whole.label;
    if (this.match === 'exact') return null;
    const found: { at: number; len: number; label: string }[] = [];
    for (const { word, label } of this.words) {
      for (let k = s.indexOf(word); k >= 0; k = s.indexOf(word, k + 1)) {
        const before = s[k - 1] ?? '';
        const after = s[k + word.length] ?? '';
        const latinStart = SPACED.test(word[0]);
        const latinEnd = SPACED.test(word[word.length - 1]);
        if ((latinStart && before && WORD.test(before)) || (latinEnd && after && WORD.test(after))) continue;
        found.push({ at: k, len: word.length, label });
      }
    }
    if (found.length === 0) return null;
    if (this.match === 'unique') {
      const distinct = new Set(found.map((f) => f.label));
      return distinct.size === 1 ? found[0].label : null;
    }
    found.sort((a, b) => a.at - b.at || b.len - a.len);
    return found[0].label;
  }

  /**
   * Classes of many answers, with the number that could not be read.
   * @param texts generated answers
   */
  parseAll(texts: readonly string[]): { labels: (string | null)[]; unparsable: number } {
    if (!Array.isArray(texts)) invalid('an array of strings', 'texts', texts);
    const labels = texts.map((t) => this.parse(t));
    return { labels, unparsable: labels.filter((l) => l === null).length };
  }
}
