import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir } from '../helpers';
import { Classifier, Item, accuracy, collate, ecfSplits, makeSampleData } from './util';

const READER = path.join(__dirname, '..', '..', 'scripts', 'fixtures', 'train_tensorboard_read.py');
/** A Python with the tensorboard package: EMOTORCH_PYTHON, the dev venv, or python3. */
function python(): string | null {
  for (const p of [process.env.EMOTORCH_PYTHON, '/work/venv/bin/python', 'python3']) {
    if (p && spawnSync(p, ['-c', 'import tensorboard'], { encoding: 'utf8' }).status === 0) return p;
  }
  return null;
}
const PY = python();
const readBack = (dir: string) => {
  const r = spawnSync(PY!, ['-P', READER, dir], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { tags: Record<string, Array<[number, number, number]>>; files: number };
};
const f32 = (v: number) => Math.fround(v);

let data: { train: Item[]; eval: Item[] };
const root = tmpdir();
beforeAll(async () => {
  makeSampleData(path.join(root, 'sample'), 6);
  data = await ecfSplits(path.join(root, 'sample'));
});

describe('TensorBoard event files', () => {
  it('writes the records Python tensorboard read back (committed fixture), byte for byte', async () => {
    const dir = path.join(root, 'fixed');
    const w = new et.train.TensorBoardWriter(dir);
    const S: Array<[string, number, number]> = [
      ['train/loss', 2.0794415416798357, 1],
      ['train/learning_rate', 0.00005, 1],
      ['train/loss', 1.5, 10],
      ['eval/accuracy', 0.6428571428571429, 10],
      ['eval/loss', 1e-7, 123456789],
      ['ünïcode/tag', -3.25, 0],
    ];
    S.forEach(([t, v, s], i) => w.addScalar(t, v, s, 1700000000 + i * 0.5));
    await w.close();
    const b = fs.readFileSync(w.file);
    const first = 12 + Number(b.readBigUInt64LE(0)) + 4;
    expect(b.subarray(first).equals(fs.readFileSync(path.join(FIXTURES, 'train', 'tb_scalars.bin')))).toBe(true);
    const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'train', 'tb_readback.json'), 'utf8'));
    expect(expected.tags['train/loss']).toEqual([
      [1, f32(2.0794415416798357), 1700000000],
      [10, 1.5, 1700000001],
    ]);
    expect(expected.tags['ünïcode/tag']).toEqual([[0, -3.25, 1700000002.5]]);
    if (PY) expect(readBack(dir)).toEqual(expected);
  });

  it.skipIf(!PY)('a Trainer run with report_to tensorboard reads back in Python with every logged value', async () => {
    const out = path.join(root, 'run');
    const trainer = new et.train.Trainer({
      model: new Classifier(0),
      trainDataset: { length: data.train.length, get: (i) => data.train[i] },
      evalDataset: { length: data.eval.length, get: (i) => data.eval[i] },
      dataCollator: collate,
      computeMetrics: accuracy,
      args: {
        output_dir: out,
        num_train_epochs: 2,
        per_device_train_batch_size: 8,
        logging_steps: 2,
        eval_strategy: 'epoch',
        save_strategy: 'no',
        report_to: ['tensorboard'],
        disable_tqdm: true,
        learning_rate: 1e-2,
      },
    });
    await trainer.train();
    const tb = readBack(path.join(out, 'runs'));
    expect(tb.files).toBe(1);
    const hist = trainer.state.log_history;
    const losses = hist.filter((r) => r.loss !== undefined);
    expect(tb.tags['train/loss'].map(([s, v]) => [s, v])).toEqual(losses.map((r) => [r.step, f32(r.loss)]));
    expect(tb.tags['train/learning_rate'].map(([s, v]) => [s, v])).toEqual(losses.map((r) => [r.step, f32(r.learning_rate)]));
    const evals = hist.filter((r) => r.eval_accuracy !== undefined);
    expect(evals.length).toBe(2);
    expect(tb.tags['eval/accuracy'].map(([s, v]) => [s, v])).toEqual(evals.map((r) => [r.step, f32(r.eval_accuracy)]));
    expect(tb.tags['eval/loss'].length).toBe(2);
    expect(tb.tags['train/train_loss'][0][1]).toBe(f32(hist[hist.length - 1].train_loss));
  });
});
