// SALMONN's runner.py recipe: the learning rate of every iteration and optimizer step against a
// re-implementation of optims.py's LinearWarmupCosineLRScheduler driven as runner.py drives it
// (scripts/fixtures/salmonn_schedule.py -> test/fixtures/salmonn_schedule.json), the optimizer's
// weight-decay groups against get_optimizer's rule on the checkpoint's key names, and the
// Trainer's `schedule` option.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, tmpdir } from '../helpers';

const fx = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn_schedule.json'), 'utf8'));
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);

describe('SALMONN runner recipe = optims.py + runner.py', () => {
  it('gives the rate of every iteration and of every optimizer step (warm-up restarting each epoch, accumulation)', () => {
    for (const c of fx.cases) {
      const o = c.options;
      c.iteration_lr.forEach((row: number[], e: number) =>
        row.forEach((lr, i) => expect(rel(et.systems.salmonn.salmonnIterationLr(o, e, i), lr)).toBeLessThan(1e-12)),
      );
      const s = et.systems.salmonn.salmonnSchedule(o);
      expect(et.systems.salmonn.salmonnTotalSteps(o)).toBe(c.step_lr.length);
      c.step_lr.forEach((lr: number, k: number) => expect(rel(s(k), lr)).toBeLessThan(1e-12));
      expect(s(c.step_lr.length + 5)).toBe(s(c.step_lr.length - 1)); // past the end: the last rate
    }
    // the quirk is in the data: with warmup_steps 25 > iters_per_epoch 10 epoch 1 starts over at warmup_start_lr
    expect(fx.cases[1].iteration_lr[1][0]).toBe(1e-6);
  });

  it('rejects options the runner could not run', () => {
    const ok = { max_epoch: 2, iters_per_epoch: 10, init_lr: 1e-4, min_lr: 0 };
    expect(() => et.systems.salmonn.salmonnSchedule({ ...ok, accum_grad_iters: 3 })).toThrow(
      /multiple of accum_grad_iters \(3\).*iters_per_epoch|iters_per_epoch.*multiple of accum_grad_iters \(3\)/,
    );
    expect(() => et.systems.salmonn.salmonnSchedule({ ...ok, max_epoch: 0 })).toThrow(/max_epoch/);
    expect(() => et.systems.salmonn.salmonnSchedule({ ...ok, init_lr: Number.NaN })).toThrow(/init_lr/);
    expect(() => et.systems.salmonn.salmonnSchedule({ ...ok, warmup: 3 } as never)).toThrow(/warmup/);
  });

  it("groups the trainable tensors for weight decay as get_optimizer (ndim < 2 or 'bias' / 'ln' / 'bn' in the name: no decay)", async () => {
    const m = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'),
      checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn.pth'),
      config: JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'config.json'), 'utf8')),
    });
    const groups = et.systems.salmonn.salmonnParamGroups(m, 0.05);
    expect(groups.map((g) => g.weightDecay)).toEqual([0.05, 0]);
    // the groups hold tensors; compare them by name through their count and size
    const trainable = m
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n, p]) => [m.originalName(n), p.numel] as [string, number]);
    const inFixture = new Set([...fx.groups.decay, ...fx.groups.no_decay]);
    expect(trainable.every(([n]) => inFixture.has(n))).toBe(true); // every trainable tensor is in the checkpoint
    for (const [g, names] of [
      [groups[0], fx.groups.decay],
      [groups[1], fx.groups.no_decay],
    ] as Array<[et.train.ParamGroup, string[]]>) {
      const want = trainable.filter(([n]) => names.includes(n));
      expect(g.params.length).toBe(want.length);
      expect(g.params.reduce((a, p) => a + p.numel, 0)).toBe(want.reduce((a, [, k]) => a + k, 0));
    }
    expect(fx.groups.decay).toContain('speech_query_tokens'); // 3-D: decayed by the original's rule
    expect(trainable.filter(([n]) => fx.groups.decay.includes(n)).length).toBeGreaterThan(10);
  });

  it("drives the Trainer's learning rate through `schedule`, and a bad rate names its step", async () => {
    et.manualSeed(0);
    const model = et.nn.Mlp.create({ sizes: [4, 8, 2] });
    const data = { length: 8, get: (i: number) => ({ x: et.randn([4]), y: i % 2 }) };
    const collate = (xs: Array<{ x: et.Tensor; y: number }>) => ({
      x: et.stack(xs.map((b) => b.x)),
      labels: et.tensor(
        xs.map((b) => b.y),
        { dtype: 'int64' },
      ),
    });
    const computeLoss = async (m: et.nn.Module, b: et.train.Batch) =>
      et.functional.crossEntropy(await (m as et.nn.Mlp).forward(b.x as et.Tensor), b.labels as et.Tensor);
    const o = { max_epoch: 2, iters_per_epoch: 4, init_lr: 1e-2, min_lr: 1e-4, warmup_steps: 3, warmup_start_lr: 1e-3, accum_grad_iters: 2 };
    const schedule = et.systems.salmonn.salmonnSchedule(o);
    const seen: number[] = [];
    const trainer = new et.train.Trainer({
      model,
      trainDataset: data,
      dataCollator: collate,
      computeLoss,
      schedule,
      callbacks: [
        {
          onStepBegin: () => {
            seen.push(trainer.optimizer!.getLr());
          },
        },
      ],
      args: {
        output_dir: tmpdir(),
        max_steps: et.systems.salmonn.salmonnTotalSteps(o),
        per_device_train_batch_size: 1,
        gradient_accumulation_steps: 2,
        save_strategy: 'no',
        disable_tqdm: true,
        learning_rate: 5,
      },
    });
    await trainer.train();
    expect(seen).toEqual(Array.from({ length: 4 }, (_, k) => schedule(k)));
    const bad = new et.train.Trainer({
      model,
      trainDataset: data,
      dataCollator: collate,
      computeLoss,
      schedule: (s) => (s === 2 ? Number.NaN : 1e-3),
      args: { output_dir: tmpdir(), max_steps: 4, per_device_train_batch_size: 1, save_strategy: 'no', disable_tqdm: true },
    });
    await rejectsWith(bad.train(), 'ERR_INVALID_ARG', /schedule\(2\)/);
    expect(() => new et.train.Trainer({ model, trainDataset: data, schedule: 3 as never, args: { output_dir: tmpdir() } })).toThrow(/schedule/);
  });
});
