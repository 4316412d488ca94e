import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, throwsWith, tmpdir } from '../helpers';
import { Classifier } from './util';

describe('TrainingArguments', () => {
  it("has HF's defaults and ports the SemEval seed's arguments field by field", () => {
    const d = new et.train.TrainingArguments({});
    expect([
      d.output_dir,
      d.num_train_epochs,
      d.max_steps,
      d.per_device_train_batch_size,
      d.learning_rate,
      d.weight_decay,
      d.adam_beta1,
      d.adam_beta2,
      d.adam_epsilon,
      d.max_grad_norm,
      d.lr_scheduler_type,
      d.warmup_steps,
      d.eval_strategy,
      d.save_strategy,
      d.logging_strategy,
      d.save_steps,
      d.logging_steps,
      d.seed,
      d.fp16,
      d.bf16,
      d.save_total_limit,
    ]).toEqual(['trainer_output', 3, -1, 8, 5e-5, 0, 0.9, 0.999, 1e-8, 1, 'linear', 0, 'no', 'steps', 'steps', 500, 500, 42, false, false, null]);
    // experiment 1 of the SemEval seed (report_to wandb becomes tensorboard: the one built-in integration)
    const a = new et.train.TrainingArguments({
      output_dir: 'semeval/train_results/',
      evaluation_strategy: 'epoch',
      num_train_epochs: 10,
      save_strategy: 'epoch',
      save_total_limit: 1,
      report_to: 'tensorboard',
      logging_steps: 5,
      per_device_train_batch_size: 4,
      per_device_eval_batch_size: 4,
      gradient_accumulation_steps: 16,
      bf16: true,
      remove_unused_columns: false,
    });
    expect([a.eval_strategy, a.save_total_limit, a.report_to, a.gradient_accumulation_steps, a.bf16, a.logging_dir]).toEqual([
      'epoch',
      1,
      ['tensorboard'],
      16,
      true,
      'semeval/train_results//runs',
    ]);
    const b = new et.train.TrainingArguments({
      eval_strategy: 'steps',
      logging_steps: 7,
      load_best_model_at_end: true,
      save_steps: 14,
      metric_for_best_model: 'f1',
    });
    expect([b.eval_steps, b.metric_for_best_model, b.greater_is_better]).toEqual([7, 'f1', true]);
    expect(new et.train.TrainingArguments({ load_best_model_at_end: true, eval_strategy: 'epoch', save_strategy: 'epoch' }).metric_for_best_model).toBe('loss');
    expect(new et.train.TrainingArguments({ warmup_ratio: 0.1 }).warmupFor(95)).toBe(10);
    expect(new et.train.TrainingArguments({ warmup_steps: 0.05 }).warmupFor(100)).toBe(5);
    expect(new et.train.TrainingArguments({ group_by_length: true }).train_sampling_strategy).toBe('group_by_length');
  });

  it('rejects unknown and contradictory fields, naming the field, and writes nothing', () => {
    const out = path.join(tmpdir(), 'never');
    const model = new Classifier();
    const ds = { length: 4, get: () => ({}) };
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ learning_rat: 1e-4 }, /args field.*"learning_rat"/],
      [{ deepspeed: ['ds.json'] }, /args\.deepspeed/],
      [{ fp16: true, bf16: true }, /fp16 and args\.bf16/],
      [{ load_best_model_at_end: true, eval_strategy: 'epoch', save_strategy: 'steps' }, /save_strategy to equal args\.eval_strategy/],
      [{ load_best_model_at_end: true, eval_strategy: 'steps', eval_steps: 3, save_steps: 10 }, /save_steps \(10\) to be a multiple of args\.eval_steps \(3\)/],
      [{ load_best_model_at_end: true }, /load_best_model_at_end needs an args\.eval_strategy/],
      [{ warmup_steps: 10, warmup_ratio: 0.1 }, /warmup_steps.*warmup_ratio/],
      [{ eval_strategy: 'epoch', evaluation_strategy: 'epoch' }, /evaluation_strategy and args\.eval_strategy/],
      [{ lr_scheduler_type: 'polynomial' }, /args\.lr_scheduler_type/],
      [{ lr_scheduler_type: 'cosine_with_min_lr' }, /args\.lr_scheduler_kwargs/],
      [{ per_device_train_batch_size: 0 }, /args\.per_device_train_batch_size/],
      [{ learning_rate: -1 }, /args\.learning_rate/],
      [{ report_to: 'wandb' }, /args\.report_to/],
      [{ save_strategy: 'sometimes' }, /args\.save_strategy/],
      [{ max_steps: 0 }, /args\.max_steps/],
      [{ bf16: 'yes' }, /args\.bf16/],
      [{ warmup_steps: 1.5 }, /args\.warmup_steps/],
      [{ save_total_limit: 0 }, /args\.save_total_limit/],
      [{ output_dir: out, eval_strategy: 'epoch' }, /no evalDataset/],
      [{ output_dir: out, metric_for_best_model: 'f1', eval_strategy: 'epoch', save_strategy: 'epoch', load_best_model_at_end: true }, /no computeMetrics/],
    ];
    for (const [args, re] of bad) {
      const e = throwsWith(
        () =>
          new et.train.Trainer({
            model,
            args: { output_dir: out, ...args },
            trainDataset: ds,
            ...(re.source.includes('evalDataset') ? {} : { evalDataset: ds }),
          }),
        'ERR_INVALID_ARG',
        re,
      );
      expect(e.message.length).toBeLessThan(300);
    }
    throwsWith(() => new et.train.Trainer({ model, args: { output_dir: out }, trainDatset: ds } as never), 'ERR_INVALID_ARG', /Trainer option.*"trainDatset"/);
    throwsWith(() => new et.train.Trainer({ model: {} as never }), 'ERR_INVALID_ARG', /for model/);
    throwsWith(() => new et.train.EarlyStoppingCallback({ patience: 0 }), 'ERR_INVALID_ARG', /patience/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('HF learning-rate schedules', () => {
  it('equal transformers get_scheduler step by step', () => {
    const cases = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'train', 'schedules.json'), 'utf8'));
    expect(cases.length).toBe(8);
    for (const c of cases) {
      const s = et.optim.schedules.hfSchedule(c.name, {
        lr: c.lr,
        warmupSteps: c.warmup,
        totalSteps: c.total,
        numCycles: c.kwargs?.num_cycles,
        minLr: c.kwargs?.min_lr,
        minLrRate: c.kwargs?.min_lr_rate,
      });
      const ours = c.lrs.map((_: number, i: number) => s(i));
      for (let i = 0; i < ours.length; i++) expect(Math.abs(ours[i] - c.lrs[i]), `${c.name} step ${i}`).toBeLessThanOrEqual(1e-12 * c.lr);
    }
  });
  it('LRScheduler state round-trips', () => {
    const p = et.zeros([2]).requiresGrad_();
    const opt = new et.optim.SGD([p], { lr: 1 });
    const sched = new et.optim.LRScheduler(opt, et.optim.schedules.hfSchedule('linear', { lr: 1, warmupSteps: 2, totalSteps: 10 }));
    for (let i = 0; i < 4; i++) sched.step();
    const opt2 = new et.optim.SGD([p], { lr: 1 });
    const s2 = new et.optim.LRScheduler(opt2, et.optim.schedules.hfSchedule('linear', { lr: 1, warmupSteps: 2, totalSteps: 10 }));
    s2.loadStateDict(sched.stateDict());
    expect(opt2.getLr()).toBe(opt.getLr());
    throwsWith(() => s2.loadStateDict({ step: -1 }), 'ERR_INVALID_ARG', /step/);
  });
});
