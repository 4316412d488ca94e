// SPECTRA pre-training data against the ORIGINAL code (scripts/fixtures/spectra_pretrain.py runs
// AlibabaResearch/DAMO-ConvAI's PretrainDataset and DataCollatorForPreTraining on a generated corpus):
// given the same random choices (the negatives drawn, each token's MLM choice), every tensor of the
// batch is the original's, with the text cut to 512 tokens and to 16 (into the context, where the
// original's Python negative indices wrap); bad corpora are coded errors.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'spectra_pretrain');
const choices = JSON.parse(fs.readFileSync(path.join(DIR, 'choices.json'), 'utf8'));
let io: Map<string, et.Tensor>;
let ds: et.systems.spectra.SpectraPretrainDataset;
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(DIR, 'io.safetensors'))).tensors;
  ds = await et.systems.spectra.SpectraPretrainDataset.fromFile(path.join(DIR, 'transcripts.pkl'));
});

const NAMES: Array<[string, keyof et.systems.spectra.SpectraPretrainBatch]> = [
  ['audio', 'audio'],
  ['audio_mask', 'audioAttentionMask'],
  ['text', 'textInput'],
  ['mlm_label', 'mlmLabel'],
  ['text_mask', 'textAttentionMask'],
  ['start_valid', 'startValid'],
  ['end_valid', 'endValid'],
  ['turn_id', 'turnId'],
  ['starts', 'starts'],
  ['ends', 'ends'],
];

describe('SPECTRA pre-training data = the original PretrainDataset + DataCollatorForPreTraining', () => {
  for (const batch of ['full', 'cut']) {
    it(`${batch === 'full' ? 'text within 512 tokens' : 'text cut to 16 tokens (history, then context words)'}: every tensor equal, given the same choices`, async () => {
      expect(ds.length).toBe(5); // turns with a previous turn: 3 + 2
      const rows = choices[batch] as Array<{ index: number; neg_audio: number; neg_text: number; mlm: et.systems.spectra.SpectraItemMlm }>;
      const items = await Promise.all(rows.map((c) => ds.get(c.index, { negAudio: c.neg_audio, negText: c.neg_text })));
      const b = et.systems.spectra.spectraPretrainCollate(items, {
        audioLength: choices.audio_length,
        textLength: choices[`${batch}_text_length`],
        mlm: rows.map((c) => c.mlm),
      });
      for (const [py, ours] of NAMES) {
        const want = io.get(`${batch}.${py}`)!;
        const got = b[ours] as et.Tensor;
        expect(got.shape, py).toEqual(want.shape);
        expect(got.dtype, py).toBe(want.dtype === 'float64' ? 'float32' : want.dtype);
        expect(got.toArray(), py).toEqual(want.toArray());
      }
      expect(b.mlm).toEqual(rows.map((c) => c.mlm));
    });
  }

  it('draws its own choices when none are given (seeded: the same seed, the same batch), and returns them to replay', async () => {
    const items = [await ds.get(0, {}, () => 0.5), await ds.get(3, {}, () => 0.1)];
    expect(items.every((it) => ![it.index, it.index + 1].includes(it.negAudio))).toBe(true);
    const a = et.systems.spectra.spectraPretrainCollate(items, { audioLength: 800, seed: 3, mlmProbability: 0.5 });
    const b = et.systems.spectra.spectraPretrainCollate(items, { audioLength: 800, seed: 3, mlmProbability: 0.5 });
    expect(a.textInput.toArray()).toEqual(b.textInput.toArray());
    const masked = a.mlm.flatMap((m) => [...m.history, ...m.context, ...m.response]).filter((c) => c !== -1).length;
    expect(masked).toBeGreaterThan(0);
    // replayed from the returned choices
    const c = et.systems.spectra.spectraPretrainCollate(items, { audioLength: 800, mlm: a.mlm });
    expect(c.textInput.toArray()).toEqual(a.textInput.toArray());
    expect(c.mlmLabel.toArray()).toEqual(a.mlmLabel.toArray());
    // special tokens are never masked; labels are the original ids where masked
    const lab = a.mlmLabel.toArray() as number[][];
    expect(lab.flat().every((l) => l === -100 || l > 3)).toBe(true);
  });

  it('bad corpora and inputs are coded errors naming what is wrong', async () => {
    const from = (f: string) => et.systems.spectra.SpectraPretrainDataset.fromFile(path.join(DIR, f));
    await rejectsWith(
      from('bad_alignment.pkl'),
      'ERR_FORMAT',
      /entry 1 word 0 \('oops'\) spans tokens .*outside the turn's .*the alignment does not match the transcript/,
    );
    await rejectsWith(from('two_turns.pkl'), 'ERR_INVALID_ARG', /at least 3 turns/);
    await rejectsWith(from('bad_prev.pkl'), 'ERR_FORMAT', /entry 2 ends with 9/);
    await rejectsWith(from('none.pkl'), 'ERR_IO', /do not exist/);
    await rejectsWith(et.systems.spectra.SpectraPretrainDataset.fromFile(path.join(DIR, 'transcripts.pkl'), { numTurns: 1 }), 'ERR_INVALID_ARG', /numTurns/);
    await rejectsWith(ds.get(5), 'ERR_INVALID_ARG', /index/);
    const ex0 = await ds.get(0, { negAudio: 0, negText: 0 });
    await rejectsWith(ds.get(0, { negAudio: 1 }), 'ERR_INVALID_ARG', /negAudio/); // example 0's response is turn 1
    // the original stops with an IndexError when the cut reaches further into the context than its words' flags wrap
    throwsWith(() => et.systems.spectra.spectraPretrainCollate([ex0], { audioLength: 100, textLength: 7 }), 'ERR_INVALID_ARG', /cut reaches past word/);
    throwsWith(() => et.systems.spectra.spectraPretrainCollate([ex0], { audioLength: 100, textLength: 4 }), 'ERR_INVALID_ARG', /textLength above/);
    throwsWith(
      () => et.systems.spectra.spectraPretrainCollate([ex0], { mlm: [{ history: [-2], context: [], response: [], negative: [] }] }),
      'ERR_INVALID_ARG',
      /-1 for the special token 0/,
    );
    throwsWith(
      () => et.systems.spectra.spectraPretrainCollate([ex0], { mlm: [{ history: [-1], context: [], response: [], negative: [] }] }),
      'ERR_INVALID_ARG',
      /9 choices \(one per token\).*mlm\[0\]\.context/,
    );
    throwsWith(() => et.systems.spectra.spectraPretrainCollate([]), 'ERR_INVALID_ARG', /non-empty/);
    throwsWith(() => et.systems.spectra.spectraPretrainCollate([ex0], { textLenght: 4 } as never), 'ERR_INVALID_ARG', /textLenght/);
  });

  it('a word that ends past its clip (beyond the tenth of a second process_pretrain.py adds) is ERR_FORMAT naming the corpus, entry, item and span', async () => {
    const entries = (await et.io.readPickle(path.join(DIR, 'transcripts.pkl'))) as unknown[][];
    const dir = fs.mkdtempSync(path.join(tmpdir(), 'spans-'));
    const ex1 = await ds.get(1, { negAudio: 0, negText: 0 });
    const clipLen = ex1.responseAudio.length; // item 1's response is entry withPrev[1]
    const anchor = entries.findIndex((e, i) => i > 0 && e[e.length - 1] !== -1 && entries.slice(0, i).filter((x) => x[x.length - 1] !== -1).length === 1);
    const corpus = (end: number) => {
      const copy = entries.map((e) => e.map((x) => (Array.isArray(x) ? [...x] : x)));
      const w = copy[anchor][copy[anchor].length - 2] as number[];
      w[4] = end;
      const f = path.join(dir, `t${end}.pkl`);
      fs.writeFileSync(f, et.io.pickleValue(copy as never));
      return et.systems.spectra.SpectraPretrainDataset.fromFile(f, { dataPath: DIR });
    };
    // up to 1 600 samples past the clip is what the original's own preprocessing writes at a recording's end
    expect((await (await corpus(clipLen + 1600)).get(1, { negAudio: 0, negText: 0 })).responseWords.at(-1)![4]).toBe(clipLen + 1600);
    await rejectsWith(
      (await corpus(clipLen + 1601)).get(1, { negAudio: 0, negText: 0 }),
      'ERR_FORMAT',
      new RegExp(
        `t${clipLen + 1601}\\.pkl' entry ${anchor} \\(item 1\\): word \\d+ \\('[^']+'\\) spans samples \\[\\d+, ${clipLen + 1601}\\), past the end of its clip '.*\\.npy' \\(${clipLen} samples`,
      ),
    );
    await rejectsWith((await corpus(1e9)).get(1, { negAudio: 0, negText: 0 }), 'ERR_FORMAT', /spans samples \[\d+, 1000000000\), past the end of its clip/);
  });
});
