import * as fs from 'fs';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import * as et from '../../lib/index';
import { close, exact, load, report } from './util';
import { throwsWith, tmpdir } from '../helpers';

const m = et.metrics;
const ecac = load('ecac.json');
const m2se = load('m2se.json');
const SIX = ['anger', 'disgust', 'fear', 'joy', 'sadness', 'surprise'] as const;

afterAll(() => report('SemEval-2024 ECAC scorer formulas and M2SE compute_result'));

function compareScores(name: string, ours: et.metrics.EcacScores, ref: any, where: string): void {
  for (const e of SIX)
    for (const k of ['precision', 'recall', 'f1'] as const) close(`${name} per-emotion ${k}`, ours.perEmotion[e][k], ref.perEmotion[e][k], `${where} ${e}`);
  for (const k of ['precision', 'recall', 'f1'] as const) {
    close(`${name} weighted ${k}`, ours.weighted[k], ref.weighted[k], where);
    close(`${name} micro ${k}`, ours.micro[k], ref.micro[k], where);
  }
}

describe('SemEval-2024 Task 3 scorer parity', () => {
  it(`subtask 2 pairs on ${ecac.subtask2.length} cases`, () => {
    expect(ecac.subtask2.length).toBeGreaterThanOrEqual(200);
    ecac.subtask2.forEach((c: any, i: number) => compareScores('ecac subtask 2', m.ecacPairs(c.preds, c.targets), c.scores, `case ${i}`));
  });

  it(`subtask 1 strict and proportional spans on ${ecac.subtask1.length} cases`, () => {
    expect(ecac.subtask1.length).toBeGreaterThanOrEqual(200);
    ecac.subtask1.forEach((c: any, i: number) => {
      const r = m.ecacSpans(c.preds, c.targets);
      compareScores('ecac subtask 1 strict', r.strict, c.scores.strict, `case ${i}`);
      compareScores('ecac subtask 1 proportional', r.proportional, c.scores.proportional, `case ${i}`);
    });
  });

  it('streaming classes take conversations in any batching', () => {
    ecac.subtask2.slice(0, 40).forEach((c: any, i: number) => {
      const s = new m.EcacPairs();
      // predictions and their gold arrive in different batches
      s.update(c.preds.slice(0, 1), []);
      s.update(c.preds.slice(1), c.targets.slice(0, 2));
      s.update([], c.targets.slice(2));
      compareScores('ecac subtask 2', s.compute(), c.scores, `stream ${i}`);
    });
    ecac.subtask1.slice(0, 40).forEach((c: any, i: number) => {
      const s = new m.EcacSpans();
      for (let k = 0; k < Math.max(c.preds.length, c.targets.length); k += 2) s.update(c.preds.slice(k, k + 2), c.targets.slice(k, k + 2));
      const r = s.compute();
      compareScores('ecac subtask 1 strict', r.strict, c.scores.strict, `stream ${i}`);
      compareScores('ecac subtask 1 proportional', r.proportional, c.scores.proportional, `stream ${i}`);
    });
  });

  it('a hand-checked example', () => {
    const r = m.ecacPairs(
      [
        {
          conversation_ID: 1,
          'emotion-cause_pairs': [
            ['3_joy', '2'],
            ['3_joy', '2'],
            ['4_anger', '1'],
          ],
        },
      ],
      [
        {
          conversation_ID: 1,
          'emotion-cause_pairs': [
            ['3_joy', '2'],
            ['3_joy', '3'],
            ['5_neutral', '5'],
          ],
        },
      ],
    );
    expect(r.perEmotion.joy).toMatchObject({ correct: 1, predicted: 1, gold: 2 });
    expect(r.perEmotion.anger).toMatchObject({ correct: 0, predicted: 1, gold: 0 });
    // joy: P = 1, R = 0.5, F = 2/3 (less the 1e-8 smoothing); weights: joy 1 (only gold emotion)
    expect(r.weighted.f1).toBeCloseTo(2 / 3, 7);
    expect(r.micro.precision).toBeCloseTo(0.5, 7);
  });

  it('errors: missing prediction, repeated id, malformed pair, unknown emotion, span text as prediction', () => {
    const gold = [
      {
        conversation_ID: 7,
        conversation: [{ text: 'I lost my dog .' }, { text: 'so sad' }],
        'emotion-cause_pairs': [['2_sadness', '1_lost my dog'] as [string, string]],
      },
    ];
    throwsWith(() => m.ecacPairs([], [{ conversation_ID: 7, 'emotion-cause_pairs': [] }]), 'ERR_INVALID_ARG', /prediction for conversation 7/);
    throwsWith(
      () =>
        m.ecacPairs(
          [
            { conversation_ID: 7, 'emotion-cause_pairs': [] },
            { conversation_ID: 7, 'emotion-cause_pairs': [] },
          ],
          [],
        ),
      'ERR_INVALID_ARG',
      /appears twice/,
    );
    throwsWith(
      () => m.ecacPairs([{ conversation_ID: 7, 'emotion-cause_pairs': [['2sadness', '1']] }], [{ conversation_ID: 7, 'emotion-cause_pairs': [] }]),
      'ERR_INVALID_ARG',
      /<utterance>_<emotion>/,
    );
    throwsWith(
      () => m.ecacPairs([{ conversation_ID: 7, 'emotion-cause_pairs': [['2_happy', '1']] }], [{ conversation_ID: 7, 'emotion-cause_pairs': [] }]),
      'ERR_INVALID_ARG',
      /an emotion among/,
    );
    throwsWith(() => m.ecacPairs([], []), 'ERR_INVALID_ARG', /at least one sample/);
    throwsWith(
      () => m.ecacSpans([{ conversation_ID: 7, 'emotion-cause_pairs': [['2_sadness', '1_lost my dog']] }], gold),
      'ERR_INVALID_ARG',
      /not the span text/,
    );
    throwsWith(
      () => m.ecacSpans([{ conversation_ID: 7, 'emotion-cause_pairs': [] }], [{ ...gold[0], 'emotion-cause_pairs': [['2_sadness', '1_ .!']] }]),
      'ERR_FORMAT',
      /empty after removing punctuation/,
    );
    const r = m.ecacSpans([{ conversation_ID: 7, 'emotion-cause_pairs': [['2_sadness', '1_1_4']] }], gold);
    expect(r.strict.perEmotion.sadness.correct).toBe(1);
    expect(r.strict.weighted.f1).toBeCloseTo(1, 7);
    // no gold pair of the six emotions: the weights are 0/0, as in the scorer
    expect(m.ecacPairs([{ conversation_ID: 1, 'emotion-cause_pairs': [] }], [{ conversation_ID: 1, 'emotion-cause_pairs': [] }]).weighted.f1).toBeNaN();
  });
});

describe('M2SE compute_result parity', () => {
  it(`sentiment on ${m2se.sentiment.length} cases (and the original's accuracy where it runs)`, () => {
    expect(m2se.sentiment.length).toBeGreaterThanOrEqual(200);
    let originals = 0;
    m2se.sentiment.forEach((c: any, i: number) => {
      const r = m.m2seSentiment(c.responses, c.labels);
      close('m2se sentiment accuracy', r.accuracy, c.accuracy, `case ${i}`);
      close('m2se sentiment weightedF1', r.weightedF1, c.weightedF1, `case ${i}`);
      exact('m2se sentiment unparsable', r.unparsable, c.unparsable, `case ${i}`);
      expect(Object.keys(r.recall).sort()).toEqual(Object.keys(c.recall).sort());
      for (const k of Object.keys(c.recall)) close('m2se sentiment recall', r.recall[k], c.recall[k], `case ${i} ${k}`);
      if (c.original) {
        originals++;
        close('m2se sentiment accuracy = original', r.accuracy, c.original.accuracy, `case ${i}`);
      }
    });
    expect(originals).toBeGreaterThan(30);
  });

  it(`emotion on ${m2se.emotion.length} cases (and the original's where it runs)`, () => {
    expect(m2se.emotion.length).toBeGreaterThanOrEqual(200);
    let originals = 0;
    m2se.emotion.forEach((c: any, i: number) => {
      const r = m.m2seEmotion(c.responses, c.labels);
      close('m2se emotion accuracy', r.accuracy, c.accuracy, `case ${i}`);
      close('m2se emotion weightedF1', r.weightedF1, c.weightedF1, `case ${i}`);
      exact('m2se emotion unparsable', r.unparsable, c.unparsable, `case ${i}`);
      if (c.original) {
        originals++;
        close('m2se emotion accuracy = original', r.accuracy, c.original.accuracy, `case ${i}`);
        close('m2se emotion weightedF1 = original', r.weightedF1, c.original.weightedF1, `case ${i}`);
      }
    });
    expect(originals).toBeGreaterThan(20);
  });

  it(`emotion-cause pairs on ${m2se.pairs.length} cases (and the original's where it runs)`, () => {
    expect(m2se.pairs.length).toBeGreaterThanOrEqual(200);
    let originals = 0;
    m2se.pairs.forEach((c: any, i: number) => {
      const r = m.m2sePairs(c.responses, c.labels);
      const f = c.fixed;
      for (const e of Object.keys(f.perEmotion))
        for (const k of ['precision', 'recall', 'f1']) close(`m2se pairs per-emotion ${k}`, (r.perEmotion[e] as any)[k], f.perEmotion[e][k], `case ${i} ${e}`);
      close('m2se pairs weightedF1', r.weightedF1, f.weightedF1, `case ${i}`);
      for (const k of ['precision', 'recall', 'f1'] as const) close(`m2se pairs micro ${k}`, r.micro[k], f.micro[k], `case ${i}`);
      exact('m2se pairs counts', [r.correct, r.predicted, r.gold, r.unparsable], [f.correct, f.predicted, f.gold, f.unparsable], `case ${i}`);
      if (c.original) {
        originals++;
        close('m2se pairs WF1 = original', r.weightedF1, c.original.weightedF1, `case ${i}`);
        close('m2se pairs F1 = original', r.micro.f1, c.original.microF1, `case ${i}`);
      }
    });
    expect(originals).toBeGreaterThanOrEqual(50);
  });

  it('streaming classes and the JSONL reader', () => {
    const dir = tmpdir();
    const c = m2se.pairs[5];
    const file = path.join(dir, 'infer.jsonl');
    // ms-swift infer lines; newer versions write "labels"
    fs.writeFileSync(
      file,
      c.responses
        .map((r: string, i: number) =>
          JSON.stringify(i % 2 ? { query: 'q', response: r, label: c.labels[i] } : { response: r, labels: c.labels[i], images: [] }),
        )
        .join('\n') + '\n',
    );
    const recs = m.readSwiftResults(file);
    expect(recs.map((x) => x.response)).toEqual(c.responses);
    close('m2se pairs weightedF1', m.m2seComputeResult(file, 'pairs').weightedF1, c.fixed.weightedF1, 'jsonl');
    const s = new m.M2sePairs();
    c.responses.forEach((r: string, i: number) => s.update([r], [c.labels[i]]));
    close('m2se pairs micro f1', s.compute().micro.f1, c.fixed.micro.f1, 'stream');
    const e = m2se.emotion[3];
    const se = new m.M2seEmotion();
    se.update(e.responses.slice(0, 2), e.labels.slice(0, 2)).update(e.responses.slice(2), e.labels.slice(2));
    close('m2se emotion weightedF1', se.compute().weightedF1, e.weightedF1, 'stream');
    const ss = new m.M2seSentiment();
    ss.update(m2se.sentiment[0].responses, m2se.sentiment[0].labels);
    close('m2se sentiment accuracy', ss.compute().accuracy, m2se.sentiment[0].accuracy, 'stream');
    throwsWith(() => m.readSwiftResults(path.join(dir, 'missing.jsonl')), 'ERR_IO');
    fs.writeFileSync(path.join(dir, 'bad.jsonl'), '{"response": "x", "label": "y"}\nnot json\n');
    throwsWith(() => m.readSwiftResults(path.join(dir, 'bad.jsonl')), 'ERR_FORMAT', /line 2/);
    fs.writeFileSync(path.join(dir, 'nolabel.jsonl'), '{"response": "x"}\n');
    throwsWith(() => m.readSwiftResults(path.join(dir, 'nolabel.jsonl')), 'ERR_FORMAT', /record 1/);
  });

  it('the documented differences from the original', () => {
    // empty gold is counted: its predictions are false positives (the original skips the record)
    expect(m.m2sePairs(['3_joy,1', '2_anger,1'], ['3_joy,1', '']).micro.precision).toBe(0.5);
    // an empty response is no prediction (the original counts one)
    expect(m.m2sePairs(['', '3_joy,1'], ['3_joy,2', '3_joy,1']).predicted).toBe(1);
    // duplicates count once
    expect(m.m2sePairs(['3_joy,1;3_joy,1'], ['3_joy,1']).micro.precision).toBe(1);
    // malformed pairs are wrong predictions, counted as unparsable, not a crash
    const bad = m.m2sePairs(['garbage;3_joy,1'], ['3_joy,1']);
    expect([bad.unparsable, bad.predicted, bad.correct]).toEqual([1, 2, 1]);
    // MELD's Joy. is a class; an unknown response is wrong, not a crash; an unknown gold label is an error
    expect(m.m2seEmotion(['Joy.', 'I feel joy'], ['Joy.', 'Joy.']).accuracy).toBe(0.5);
    throwsWith(() => m.m2seEmotion(['Joy.'], ['Happy.']), 'ERR_INVALID_ARG', /labels\[0\]/);
    expect(m.m2seEmotion(['Happy.'], ['Happy.'], { labels: ['Happy.', 'Sad.'] }).accuracy).toBe(1);
    throwsWith(() => m.m2sePairs([], []), 'ERR_INVALID_ARG', /at least one sample/);
    throwsWith(() => m.m2sePairs(['a'], []), 'ERR_INVALID_ARG', /same length/);
  });
});

describe('lmAccuracy (ms-swift acc)', () => {
  it('scores next-token argmax against labels at −100-free positions, by token or by row', () => {
    // argmax at positions 0..2 of row 0: 2, 1, 0; of row 1: 0, 0, 2 (vocab 3)
    const oneHot = (ids: number[]) => ids.map((i) => [0, 1, 2].map((v) => (v === i ? 5 : 0)));
    const logits = et.tensor([oneHot([2, 1, 0, 1]), oneHot([0, 0, 2, 1])]);
    const labels = et.tensor(
      [
        [-100, 2, 1, 1],
        [-100, -100, 0, 2],
      ],
      { dtype: 'int64' },
    );
    // row 0: labels 2,1,1 at 1..3 vs preds 2,1,0 -> 2 of 3 right, row wrong; row 1: 0,2 vs 0,2 -> both right, row right
    expect(et.metrics.lmAccuracy(logits, labels, 'token')).toBeCloseTo(4 / 5, 12);
    expect(et.metrics.lmAccuracy(logits, labels, 'sentence')).toBe(0.5);
    // a row without label tokens counts as right (torch.all of nothing), as swift's sentence accuracy
    expect(
      et.metrics.lmAccuracy(
        logits,
        et.tensor(
          [
            [-100, -100, -100, -100],
            [-100, -100, 0, 2],
          ],
          { dtype: 'int64' },
        ),
        'sentence',
      ),
    ).toBe(1);
    throwsWith(() => et.metrics.lmAccuracy(logits, labels, 'word' as never), 'ERR_INVALID_ARG', /strategy/);
    throwsWith(() => et.metrics.lmAccuracy(logits, labels.slice(1, 0, 3)), 'ERR_INVALID_ARG', /logits/);
  });
});
