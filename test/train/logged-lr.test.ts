// The learning rate the Trainer logs is the one each step used, as HF's Trainer logs it (read
// before the scheduler steps): compared with transformers' own Trainer on the same arguments
// (scripts/fixtures/train_logs.py -> test/fixtures/train/trainer_logs.json), in the 'log' events,
// log.jsonl and the state's log_history. And the loss it logs with gradient accumulation when an
// epoch ends in a short window, with the loss's components (trainMetrics), as HF (>= 4.46) logs it.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir } from '../helpers';
import { Classifier, Item, collate, ecfSplits, makeSampleData, readJsonl } from './util';

interface LossCase {
  args: Record<string, number>;
  logged: Array<[number, number]>;
  components: Array<[number, number]>;
  windows: number[];
  init: { 'lin.weight': number[][]; 'lin.bias': number[] };
  x: number[][];
  labels: number[];
}
const REF = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'train', 'trainer_logs.json'), 'utf8')) as {
  cases: Array<{ args: Record<string, number | string>; logged: Array<[number, number]> }>;
  losses: LossCase[];
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
        model: new Classifier(0),
        trainDataset: { length: data.length, get: (k: number) => data[k] },
        dataCollator: collate,
        args: { ...c.args, output_dir: out, per_device_train_batch_size: 4, save_strategy: 'no', disable_tqdm: true },
      });
      const events: Array<[number, number]> = [];
      trainer.on('log', (r: Record<string, number>) => {
        if (r.learning_rate !== undefined) events.push([r.step, r.learning_rate]);
      });
      await trainer.train();
      const close = (got: Array<[number, number]>) => {
        expect(got.map(([s]) => s)).toEqual(c.logged.map(([s]) => s));
        for (const [k, [, lr]] of c.logged.entries()) expect(Math.abs(got[k][1] - lr)).toBeLessThanOrEqual(1e-12 * Math.max(1, lr));
      };
      close(events);
      close(
        readJsonl(path.join(out, 'log.jsonl'))
          .filter((r) => r.learning_rate !== undefined)
          .map((r) => [r.step, r.learning_rate]),
      );
      // TensorBoard and the plots are written from this history (test/train/tensorboard.test.ts)
      close(trainer.state.log_history.filter((r) => r.learning_rate !== undefined).map((r) => [r.step, r.learning_rate]));
    });
  }
});

/** The fixture's Linear(4, 1) whose loss is MSE + L1, with both components in its outputs. */
class TwoLosses extends et.nn.Module {
  lin: et.nn.Linear;
  constructor() {
    super();
    this.lin = this.registerModule('lin', et.nn.Linear.create({ in_features: 4, out_features: 1 }));
  }
  async forward(b: { x: et.Tensor; labels: et.Tensor }): Promise<{ loss: et.Tensor; mse: et.Tensor; l1: et.Tensor }> {
    const y = (await this.lin.forward(b.x)).squeeze(-1);
    const mse = et.functional.mseLoss(y, b.labels),
      l1 = et.functional.l1Loss(y, b.labels);
    return { loss: mse.add(l1), mse, l1 };
  }
}

async function trainLosses(c: LossCase, accumulation?: et.train.TrainerOptions['accumulation']): Promise<Array<Record<string, number>>> {
  const model = new TwoLosses();
  await model.loadStateDict({ 'lin.weight': et.tensor(c.init['lin.weight'].flat(), { shape: [1, 4] }), 'lin.bias': et.tensor(c.init['lin.bias']) });
  const items = c.x.map((x, i) => ({ x, label: c.labels[i] }));
  const out = path.join(root, `losses-${c.args.logging_steps}-${accumulation?.divisor ?? 'window'}`);
  const trainer = new et.train.Trainer({
    model,
    accumulation,
    trainDataset: { length: items.length, get: (k: number) => items[k] },
    dataCollator: (b: typeof items) => ({
      x: et.tensor(
        b.flatMap((t) => t.x),
        { shape: [b.length, 4] },
      ),
      labels: et.tensor(b.map((t) => t.label)),
    }),
    trainMetrics: (o) => ({ mse: (o.mse as et.Tensor).item(), l1: (o.l1 as et.Tensor).item() }),
    args: {
      ...c.args,
      output_dir: out,
      per_device_train_batch_size: 4,
      train_sampling_strategy: 'sequential',
      save_strategy: 'no',
      disable_tqdm: true,
      report_to: 'none',
    },
  });
  await trainer.train();
  const fromFile = readJsonl(path.join(out, 'log.jsonl')).filter((r) => r.loss !== undefined);
  expect(fromFile).toEqual(trainer.state.log_history.filter((r) => r.loss !== undefined));
  return fromFile;
}

describe('logged losses = HF Trainer, in a short last window of each epoch too', () => {
  for (const c of REF.losses) {
    it(`accumulation ${c.args.gradient_accumulation_steps} over windows ${c.windows.join(', ')}, logging every ${c.args.logging_steps}: the loss and its components`, async () => {
      const got = await trainLosses(c);
      expect(got.map((r) => r.step)).toEqual(c.logged.map(([s]) => s));
      for (const [k, [, loss]] of c.logged.entries()) {
        const r = got[k];
        // float32 training of the same steps (torch's AdamW both sides): agreement to ~1e-6 relative
        expect(Math.abs(r.loss - loss)).toBeLessThan(2e-5 * loss);
        expect(Math.abs(r.mse - c.components[k][0])).toBeLessThan(2e-5 * loss);
        expect(Math.abs(r.l1 - c.components[k][1])).toBeLessThan(2e-5 * loss);
        // the components add up to the loss trained on (they were divided by 3 in the short window before)
        expect(Math.abs(r.mse + r.l1 - r.loss)).toBeLessThan(1e-6 * r.loss);
      }
    });
  }

  it("with accumulation.divisor 'gradient_accumulation_steps' the short window's loss is divided by 3, logged as trained on", async () => {
    const c = REF.losses.find((x) => x.args.logging_steps === 1)!;
    const got = await trainLosses(c, { divisor: 'gradient_accumulation_steps' });
    // steps 1-2 are full windows (the same training); step 3 holds one micro-batch, its loss / 3
    for (const k of [0, 1]) expect(Math.abs(got[k].loss - c.logged[k][1])).toBeLessThan(2e-5 * c.logged[k][1]);
    expect(Math.abs(got[2].loss - c.logged[2][1] / 3)).toBeLessThan(2e-5 * c.logged[2][1]);
    for (const r of got) expect(Math.abs(r.mse + r.l1 - r.loss)).toBeLessThan(1e-6 * r.loss);
  });
});
