import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { tmpdir } from '../helpers';
import { Classifier, Item, accuracy, collate, ecfSplits, makeSampleData, readJsonl } from './util';

let data: { train: Item[]; eval: Item[] };
const root = tmpdir();
beforeAll(async () => {
  makeSampleData(path.join(root, 'sample'));
  data = await ecfSplits(path.join(root, 'sample'));
});
const asDataset = (xs: Item[]) => ({ length: xs.length, get: (i: number) => xs[i] });

describe('Trainer', () => {
  it('trains a classifier on the sample data to a set accuracy, with logs, events and plots', async () => {
    et.manualSeed(0);
    const model = new Classifier(0.1);
    const out = path.join(root, 'cls');
    const events: Record<string, number> = { log: 0, evaluate: 0, save: 0 };
    const trainer = new et.train.Trainer({
      model, trainDataset: asDataset(data.train), evalDataset: asDataset(data.eval), dataCollator: collate, computeMetrics: accuracy,
      args: { output_dir: out, num_train_epochs: 12, per_device_train_batch_size: 8, learning_rate: 1e-2, weight_decay: 0.01, warmup_ratio: 0.1,
        lr_scheduler_type: 'cosine', logging_steps: 5, eval_strategy: 'epoch', save_strategy: 'no', disable_tqdm: true, seed: 1 },
    });
    for (const k of Object.keys(events)) trainer.on(k, () => { events[k]++; });
    const before = await trainer.evaluate();
    const r = await trainer.train();
    const after = await trainer.evaluate();
    console.log(`classifier: eval accuracy ${before.eval_accuracy.toFixed(3)} -> ${after.eval_accuracy.toFixed(3)}, loss ${r.trainingLoss.toFixed(3)}, ${r.globalStep} steps`);
    expect(r.stopReason).toBe('completed');
    expect(r.globalStep).toBe(12 * Math.ceil(data.train.length / 8));
    expect(after.eval_accuracy).toBeGreaterThanOrEqual(0.9);
    expect(after.eval_loss).toBeLessThan(before.eval_loss / 3);
    expect(events.evaluate).toBe(12 + 2);
    expect(events.save).toBe(0);
    const log = readJsonl(path.join(out, 'log.jsonl'));
    const train = log.filter((x) => x.loss !== undefined);
    expect(train.length).toBe(Math.floor(r.globalStep / 5));
    expect(train.every((x) => x.step % 5 === 0 && x.learning_rate >= 0 && x.grad_norm > 0 && x.epoch > 0)).toBe(true);
    expect(log.filter((x) => x.eval_accuracy !== undefined).length).toBe(12);
    expect(log[log.length - 1].train_loss).toBeCloseTo(r.trainingLoss, 12);
    expect(events.log).toBe(log.length + 2);  // + the evaluations before and after train(), outside the log file
    for (const f of ['plot_loss.svg', 'plot_learning_rate.svg', 'plot_metrics.svg']) {
      const svg = fs.readFileSync(path.join(out, f), 'utf8');
      expect(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg).toMatch(/<path /);
    }
    const pred = await trainer.predict(asDataset(data.eval));
    expect(pred.predictions.shape).toEqual([data.eval.length, 7]);
    expect(pred.metrics.test_accuracy).toBeCloseTo(after.eval_accuracy, 12);
  });
});
