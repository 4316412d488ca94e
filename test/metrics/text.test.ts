import { afterAll, describe, expect, it } from 'vitest';
import * as et from '../../lib/index';
import { close, closeAll, exact, load, report } from './util';
import { throwsWith } from '../helpers';

const m = et.metrics;
const fx = load('text.json');

afterAll(() => report('generated text (torch, torchmetrics ROUGE, sacrebleu, parsing rules)'));

describe('token accuracy (SALMONN)', () => {
  it(`matches SALMONN's formula in torch on ${fx.tokenAccuracy.length} cases, ids and logits`, () => {
    expect(fx.tokenAccuracy.length).toBeGreaterThanOrEqual(200);
    fx.tokenAccuracy.forEach((c: any, i: number) => {
      const preds = c.logits ?? c.ids;
      if (c.total === 0) throwsWith(() => m.tokenAccuracy(preds, c.labels), 'ERR_INVALID_ARG', /no token differs from ignoreIndex/);
      else {
        const r = m.tokenAccuracy(preds, c.labels);
        exact('tokenAccuracy counts', [r.correct, r.total], [c.correct, c.total], `case ${i}`);
        close('tokenAccuracy', r.accuracy, c.correct / c.total, `case ${i}`);
      }
      if (c.totalNoShift > 0) {
        const r = m.tokenAccuracy(preds, c.labels, { shift: false });
        exact('tokenAccuracy counts (no shift)', [r.correct, r.total], [c.correctNoShift, c.totalNoShift], `case ${i}`);
      }
    });
  });

  it('takes tensors (logits argmax-ed natively) and pools over batches', () => {
    const acc = new m.TokenAccuracy();
    let correct = 0;
    let total = 0;
    for (const c of fx.tokenAccuracy.slice(0, 40)) {
      const preds = c.logits ? et.tensor(c.logits, { dtype: 'float32' }) : et.tensor(c.ids, { dtype: 'int64' });
      acc.update(preds, et.tensor(c.labels, { dtype: 'int64' }));
      correct += c.correct;
      total += c.total;
    }
    const r = acc.compute();
    exact('tokenAccuracy counts', [r.correct, r.total], [correct, total], 'stream of tensors');
    acc.reset();
    throwsWith(() => acc.compute(), 'ERR_INVALID_ARG');
    throwsWith(() => m.tokenAccuracy([[1, 2]], [[1, 2, 3]]), 'ERR_INVALID_ARG', /same length/);
    throwsWith(() => m.tokenAccuracy([[1.5, 2]], [[1, 2]], { shift: false }), 'ERR_INVALID_ARG', /integer token ids/);
  });
});

describe('ROUGE (torchmetrics, rouge-score rules)', () => {
  it(`ROUGE-1/2/L P/R/F per sample and the corpus mean on ${fx.rouge.length} cases`, () => {
    expect(fx.rouge.length).toBeGreaterThanOrEqual(200);
    fx.rouge.forEach((c: any, i: number) => {
      const r = m.rouge(c.predictions, c.references, { tokenizer: c.tokenizer });
      c.scores.forEach((s: any, j: number) => {
        for (const t of ['rouge1', 'rouge2', 'rougeL'] as const) {
          const o = r.samples[j][t];
          closeAll(`${t} P/R/F (${c.tokenizer})`, [o.precision, o.recall, o.fmeasure], s[t], `case ${i}.${j}`);
        }
      });
      if (c.mean) for (const t of ['rouge1', 'rouge2', 'rougeL'] as const) close(`${t} corpus mean F (${c.tokenizer})`, r[t].fmeasure, c.mean[t], `case ${i}`);
    });
  });

  it('streams, tokenizes as named, and rejects bad input', () => {
    const c = fx.rouge[0];
    const s = new m.Rouge();
    c.predictions.forEach((p: string, j: number) => s.update([p], [c.references[j]]));
    expect(s.compute()).toEqual(m.rouge(c.predictions, c.references));
    expect(m.rougeTokenize("It's 3.5 Émile, naïve!")).toEqual(['it', 's', '3', '5', 'mile', 'na', 've']);
    expect(m.rougeTokenize('用户很开心 happy!', 'cjk')).toEqual(['用', '户', '很', '开', '心', 'happy']);
    expect(m.rougeTokenize('用户很开心', 'rouge-score')).toEqual([]);
    expect(m.rouge(['a b'], ['a c'], { tokenizer: (t) => t.split(' ') }).rouge1.fmeasure).toBe(0.5);
    throwsWith(() => m.rouge([], []), 'ERR_INVALID_ARG', /at least one sample/);
    throwsWith(() => m.rouge(['a'], ['a', 'b']), 'ERR_INVALID_ARG', /same length/);
    throwsWith(() => m.rouge(['a'], [[]]), 'ERR_INVALID_ARG', /non-empty array/);
    throwsWith(() => m.rouge(['a'], ['a'], { tokenizer: 'nltk' as any }), 'ERR_INVALID_ARG', /tokenizer/);
  });
});

describe('BLEU (sacrebleu)', () => {
  it(`tokenize13a equals sacrebleu's Tokenizer13a on ${fx.tokenize13a.length} lines`, () => {
    fx.tokenize13a.forEach(([line, tok]: [string, string], i: number) => exact('bleu 13a tokenization', m.tokenize13a(line), tok, `line ${i}`));
  });

  it(`corpus BLEU equals sacrebleu's on ${fx.bleu.length} corpora (tokenizers, smoothing, lowercase, effective order, several references)`, () => {
    expect(fx.bleu.length).toBeGreaterThanOrEqual(200);
    fx.bleu.forEach((c: any, i: number) => {
      const r = m.bleu(c.hypotheses, c.references, c.options);
      close('bleu score', r.score, c.score, `case ${i}`);
      closeAll('bleu precisions', r.precisions, c.precisions, `case ${i}`);
      close('bleu bp', r.bp, c.bp, `case ${i}`);
      exact('bleu lengths', [r.sysLen, r.refLen], [c.sysLen, c.refLen], `case ${i}`);
      // sacrebleu reports add-k counts with k added; ours are the raw n-gram counts
      if (c.options.smoothMethod !== 'add-k') exact('bleu n-gram counts', [r.counts, r.totals], [c.counts, c.totals], `case ${i}`);
    });
  });

  it('streams and rejects bad input', () => {
    const c = fx.bleu[0];
    const s = new m.Bleu(c.options);
    c.hypotheses.forEach((h: string, j: number) => s.update([h], [c.references[j]]));
    close('bleu score', s.compute().score, c.score, 'stream');
    expect(m.bleu([''], ['a b c']).score).toBe(0);
    throwsWith(() => m.bleu(['a'], ['a'], { tokenize: 'intl' as any }), 'ERR_INVALID_ARG', /tokenize/);
    throwsWith(() => m.bleu(['a'], []), 'ERR_INVALID_ARG', /same length/);
    throwsWith(() => m.bleu([1] as any, ['a']), 'ERR_INVALID_ARG', /hypotheses\[0\]/);
  });
});

describe('emotion-sequence accuracy (情绪序列 suffix)', () => {
  it(`matches an independent Python parser on ${fx.emotionSequence.length} cases; unparsable counts as wrong`, () => {
    expect(fx.emotionSequence.length).toBeGreaterThanOrEqual(200);
    fx.emotionSequence.forEach((c: any, i: number) => {
      const opts = c.synonyms ? { synonyms: c.synonyms } : undefined;
      c.generations.forEach((g: string, j: number) => exact('emotion sequence parse', m.parseEmotionSequence(g, opts), c.parsed[j], `case ${i}.${j}`));
      const r = m.emotionSequenceAccuracy(c.generations, c.targets, opts);
      close('emotion sequence exact', r.exact, c.exact, `case ${i}`);
      close('emotion sequence per-position', r.position, c.position, `case ${i}`);
      closeAll('emotion sequence by position', r.byPosition, c.byPosition, `case ${i}`);
      exact('emotion sequence unparsable', r.unparsable, c.unparsable, `case ${i}`);
      const s = new m.EmotionSequenceAccuracy(opts);
      c.generations.forEach((g: string, j: number) => s.update([g], [c.targets[j]]));
      expect(s.compute()).toEqual(r);
    });
  });

  it('never throws on a generation; rejects unreadable gold', () => {
    const r = m.emotionSequenceAccuracy(['', 'no marker', '情绪序列', '情绪序列: ', null as any], [['happy'], ['sad'], ['sad'], ['sad'], ['sad']]);
    expect(r).toEqual({ exact: 0, position: 0, byPosition: [0], unparsable: 5, total: 5 });
    throwsWith(() => m.emotionSequenceAccuracy(['x'], ['no sequence here']), 'ERR_INVALID_ARG', /targets\[0\]/);
    throwsWith(() => m.emotionSequenceAccuracy(['x'], [[]]), 'ERR_INVALID_ARG', /non-empty array/);
    throwsWith(() => m.emotionSequenceAccuracy([], []), 'ERR_INVALID_ARG', /at least one sample/);
    expect(m.parseEmotionSequence('Emotion sequence: Happy -> SAD', { marker: 'Emotion sequence' })).toEqual(['happy', 'sad']);
  });
});

describe('label parser', () => {
  it(`matches an independent Python implementation of the rule on ${fx.labelParser.length} cases`, () => {
    expect(fx.labelParser.length).toBeGreaterThanOrEqual(200);
    fx.labelParser.forEach((c: any, i: number) => {
      const p = new m.LabelParser({ labels: c.labels, synonyms: c.synonyms, caseSensitive: c.caseSensitive, match: c.match });
      const r = p.parseAll(c.texts);
      exact('label parser', r.labels, c.parsed, `case ${i}`);
      exact('label parser unparsable', r.unparsable, c.unparsable, `case ${i}`);
    });
  });

  it('feeds the classification metrics: unparsable answers are wrong, never a crash', () => {
    const p = new m.LabelParser({ labels: ['happy', 'sad', 'neutral'], synonyms: m.EMOTION_SYNONYMS });
    const { labels, unparsable } = p.parseAll(['Joyful!', 'she sounds sad', 'hmm', 'NEUTRAL.']);
    expect(labels).toEqual(['happy', 'sad', null, 'neutral']);
    expect(unparsable).toBe(1);
    expect(m.accuracy(labels, ['happy', 'sad', 'sad', 'neutral'])).toBe(0.75);
    expect(m.f1(labels, ['happy', 'sad', 'sad', 'neutral'], { average: 'macro', labels: ['happy', 'sad', 'neutral'] })).toBeCloseTo((1 + 2 / 3 + 1) / 3, 15);
    expect(p.parse(undefined as any)).toBeNull();
    throwsWith(() => new m.LabelParser({ labels: [] }), 'ERR_INVALID_ARG', /non-empty array/);
    throwsWith(() => new m.LabelParser({ labels: ['a'], match: 'fuzzy' as any }), 'ERR_INVALID_ARG', /match/);
  });
});

// Issue 18 point 10: non-strings are coded errors; long ROUGE-L does not block the event loop.
describe('text metrics: inputs and long texts', () => {
  it('rougeTokenize, tokenize13a and parseEmotionSequence refuse a non-string with ERR_INVALID_ARG (not a TypeError or null)', () => {
    throwsWith(() => m.rougeTokenize(5 as any), 'ERR_INVALID_ARG', /a string for text but received 5/);
    throwsWith(() => m.rougeTokenize('a b', 'nltk' as any), 'ERR_INVALID_ARG', /tokenizer/);
    throwsWith(() => m.tokenize13a(null as any), 'ERR_INVALID_ARG', /a string for line but received null/);
    throwsWith(() => m.parseEmotionSequence(5 as any), 'ERR_INVALID_ARG', /a string for text but received 5/);
    // a generation that is not a string still counts as unparsable in the accuracy (it never throws there)
    expect(m.emotionSequenceAccuracy([null as any], [['happy']]).unparsable).toBe(1);
  });

  it('ROUGE-L is the exact longest common subsequence (checked against a plain DP on random token lists)', () => {
    const dp = (a: string[], b: string[]) => {
      let prev = new Array<number>(a.length + 1).fill(0);
      for (const y of b) {
        const cur = new Array<number>(a.length + 1).fill(0);
        for (let j = 1; j <= a.length; j++) cur[j] = y === a[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
        prev = cur;
      }
      return prev[a.length];
    };
    let seed = 7;
    const rnd = (k: number) => {
      seed = (seed * 48271) % 2147483647;
      return seed % k;
    };
    for (let c = 0; c < 400; c++) {
      const V = 1 + rnd(8);
      const a = Array.from({ length: rnd(140) }, () => `w${rnd(V)}`);
      const b = Array.from({ length: rnd(140) }, () => `w${rnd(V)}`);
      const l = m.rouge([a.join(' ')], [b.join(' ')]).rougeL;
      const lcs = dp(a, b);
      expect([l.precision, l.recall]).toEqual(a.length && b.length ? [lcs / a.length, lcs / b.length] : [0, 0]);
    }
  });

  it('rougeAsync and Rouge.computeAsync give the sync results while timers keep firing during a long ROUGE-L', async () => {
    // two 30 000-word texts: 9e8 cells of the plain DP (seconds of blocking before the fix)
    const words = (mul: number) => Array.from({ length: 30000 }, (_, i) => `w${(i * mul) % 997}`).join(' ');
    const pred = words(31),
      ref = words(37);
    let ticks = 0,
      maxGap = 0,
      last = Date.now(),
      running = true;
    const tick = () => {
      const now = Date.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      ticks++;
      if (running) setImmediate(tick);
    };
    setImmediate(tick);
    const firstTimer = new Promise<number>((resolve) => {
      const t0 = Date.now();
      setTimeout(() => resolve(Date.now() - t0), 1);
    });
    let timerDone = false;
    void firstTimer.then(() => {
      timerDone = true;
    });
    const got = await m.rougeAsync([pred], [ref]);
    running = false;
    expect(timerDone).toBe(true); // a timer set before the call fired before it finished
    expect(ticks).toBeGreaterThan(2);
    expect(maxGap).toBeLessThan(3000); // generous: the loop is served between chunks of a few ms
    const sync = m.rouge([pred], [ref]);
    expect(got).toEqual(sync);
    const s = new m.Rouge();
    s.update([pred, 'the cat'], [ref, ['a cat', 'the cat sat']]);
    expect(await s.computeAsync()).toEqual(s.compute());
    await expect(new m.Rouge().computeAsync()).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
  });
});

// Issue 43: ROUGE-L's time grows with n·m: the inputs are bounded, the LCS memory is that of the shorter text.
describe('ROUGE: bounded inputs', () => {
  it(`a text of more than maxTokens (default ROUGE_MAX_TOKENS = 100 000) tokens is ERR_INVALID_ARG naming it, at once, in every entry point`, async () => {
    expect(m.ROUGE_MAX_TOKENS).toBe(100_000);
    const over = 'w '.repeat(m.ROUGE_MAX_TOKENS + 1); // two such texts: 10¹⁰ LCS cells, and the time grew with them
    const t0 = Date.now();
    throwsWith(
      () => m.rouge([over], [over]),
      'ERR_INVALID_ARG',
      /at most 100000 tokens \(the maxTokens option.* for predictions\[0\] but received "a text of more than 100000 tokens"/,
    );
    throwsWith(() => m.rouge(['a b', 'c'], ['a', ['x', over]]), 'ERR_INVALID_ARG', /for references\[1\]\[1\]/);
    throwsWith(() => m.rouge(['a'], [over], { tokenizer: 'whitespace' }), 'ERR_INVALID_ARG', /for references\[0\] but received "a text of 100001 tokens"/);
    throwsWith(() => m.rouge(['a'], [over], { tokenizer: (t) => t.split(' ') }), 'ERR_INVALID_ARG', /for references\[0\]/);
    await expect(m.rougeAsync([over], ['a'])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    const s = new m.Rouge();
    s.update([over], ['a']);
    throwsWith(() => s.compute(), 'ERR_INVALID_ARG', /predictions\[0\]/);
    // a text of millions of tokens is refused without becoming an array of them
    throwsWith(() => m.rouge(['x '.repeat(5_000_000)], ['x']), 'ERR_INVALID_ARG', /predictions\[0\]/);
    expect(Date.now() - t0).toBeLessThan(20_000);
    // at the cap, and past it with a raised maxTokens, it is computed
    const at = 'w '.repeat(m.ROUGE_MAX_TOKENS);
    expect(m.rouge([at], ['w w']).rougeL.recall).toBe(1);
    throwsWith(() => m.rouge(['w w w'], ['w w'], { maxTokens: 2 }), 'ERR_INVALID_ARG', /at most 2 tokens/);
    expect(m.rouge(['w w w'], ['w w'], { maxTokens: 3 }).rougeL.precision).toBeCloseTo(2 / 3, 12);
    for (const bad of [0, 1.5, -1, '10', NaN]) throwsWith(() => m.rouge(['a'], ['a'], { maxTokens: bad as number }), 'ERR_INVALID_ARG', /maxTokens/);
  });

  it('the named tokenizers give the same tokens as before (runs of [a-z0-9], CJK characters alone) and ROUGE-L is symmetric in which text is longer', () => {
    const old = (text: string, cjk: boolean) => {
      const CJK = '\\u3040-\\u30ff\\u3400-\\u4dbf\\u4e00-\\u9fff\\uac00-\\ud7af\\uf900-\\ufaff';
      const lower = text.toLowerCase();
      if (!cjk)
        return lower
          .replace(/[^a-z0-9]+/g, ' ')
          .split(/\s+/)
          .filter((x) => x.length > 0);
      return lower
        .replace(new RegExp(`[^a-z0-9${CJK}]+`, 'g'), ' ')
        .replace(new RegExp(`([${CJK}])`, 'g'), ' $1 ')
        .split(/\s+/)
        .filter((x) => x.length > 0);
    };
    const texts = [
      '',
      '  ',
      'Hello, World! 42x',
      'İstanbul ÉTÉ straße',
      '我们 release 的7B模型，用的是 Vicuna 1.5',
      'カタカナ and 한국어 text_with-under',
      'a\tb\nc\u00a0d',
    ];
    for (const t of texts) {
      expect(m.rougeTokenize(t)).toEqual(old(t, false));
      expect(m.rougeTokenize(t, 'cjk')).toEqual(old(t, true));
    }
    const long = 'the cat sat on the mat and the dog sat on the log while a bird sang';
    const short = 'a cat sat on a log';
    const ab = m.rouge([long], [short]).rougeL,
      ba = m.rouge([short], [long]).rougeL;
    expect([ab.precision, ab.recall, ab.fmeasure]).toEqual([ba.recall, ba.precision, ba.fmeasure]);
  });
});
