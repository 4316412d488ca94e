// The learning rate the Trainer logs is the one each step used, as HF's Trainer logs it (read
// before the scheduler steps): compared with transformers' own Trainer on the same arguments
// (scripts/fixtures/train_logs.py -> test/fixtures/train/trainer_logs.json), in the 'log' events,
// log.jsonl and the state's log_history.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir } from '../helpers';
import { Classifier, Item, collate, ecfSplits, makeSampleData, readJsonl } from './util';

const REF = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'train', 'trainer_logs.json'), 'utf8')) as {
  cases: Array<{ args: Record<string, number | string>; logged: Array<[number, number]> }>;
};

let data: Item[];
const root = tmpdir();
beforeAll(async () => {
  makeSampleData(path.join(root, 'sample'));
  data = (await ecfSplits(path.join(root, 'sample'))).train;
});

describe('logged learning rates = HF Trainer', () => {
  for (const [i, c] of REF.cases.entries()) {
    it(`${c.args.lr_scheduler_type}, warm-up ${c.args.warmup_steps}, logging every ${c.args.logging_steps}${c.args.gradient_accumulation_steps ? `, accumulation ${c.args.gradient_accumulation_steps}` : ''}`, async () => {
      et.manualSeed(0);
      const out = path.join(root, `case${i}`);
      const trainer = new et.train.Trainer({
        model: new Classifier(0), trainDataset: { length: data.length, get: (k: number) => data[k] }, dataCollator: collate,
        args: { ...c.args, output_dir: out, per_device_train_batch_size: 4, save_strategy: 'no', disable_tqdm: true },
      });
      const events: Array<[number, number]> = [];
      trainer.on('log', (r: Record<string, number>) => { if (r.learning_rate !== undefined) events.push([r.step, r.learning_rate]); });
      await trainer.train();
      const close = (got: Array<[number, number]>) => {
        expect(got.map(([s]) => s)).toEqual(c.logged.map(([s]) => s));
        for (const [k, [, lr]] of c.logged.entries()) expect(Math.abs(got[k][1] - lr)).toBeLessThanOrEqual(1e-12 * Math.max(1, lr));
      };
      close(events);
      close(readJsonl(path.join(out, 'log.jsonl')).filter((r) => r.learning_rate !== undefined).map((r) => [r.step, r.learning_rate]));
      // TensorBoard and the plots are written from this history (test/train/tensorboard.test.ts)
      close(trainer.state.log_history.filter((r) => r.learning_rate !== undefined).map((r) => [r.step, r.learning_rate]));
    });
  }
});
