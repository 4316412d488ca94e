import { describe, it, expect, beforeAll, vi } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { rejectsWith, tmpdir } from '../helpers';
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
      model,
      trainDataset: asDataset(data.train),
      evalDataset: asDataset(data.eval),
      dataCollator: collate,
      computeMetrics: accuracy,
      args: {
        output_dir: out,
        num_train_epochs: 12,
        per_device_train_batch_size: 8,
        learning_rate: 1e-2,
        weight_decay: 0.01,
        warmup_ratio: 0.1,
        lr_scheduler_type: 'cosine',
        logging_steps: 5,
        eval_strategy: 'epoch',
        save_strategy: 'no',
        disable_tqdm: true,
        seed: 1,
      },
    });
    for (const k of Object.keys(events))
      trainer.on(k, () => {
        events[k]++;
      });
    const before = await trainer.evaluate();
    // the event loop stays free: a chain of setImmediate callbacks keeps running during train()
    let ticks = 0,
      live = true;
    const tick = () => {
      ticks++;
      if (live) setImmediate(tick);
    };
    setImmediate(tick);
    const r = await trainer.train();
    live = false;
    expect(ticks).toBeGreaterThan(r.globalStep);
    const after = await trainer.evaluate();
    console.log(
      `classifier: eval accuracy ${before.eval_accuracy.toFixed(3)} -> ${after.eval_accuracy.toFixed(3)}, loss ${r.trainingLoss.toFixed(3)}, ${r.globalStep} steps`,
    );
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
    expect(events.log).toBe(log.length + 2); // + the evaluations before and after train(), outside the log file
    for (const f of ['plot_loss.svg', 'plot_learning_rate.svg', 'plot_metrics.svg']) {
      const svg = fs.readFileSync(path.join(out, f), 'utf8');
      expect(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>')).toBe(true);
      expect(svg).toMatch(/<path /);
    }
    const pred = await trainer.predict(asDataset(data.eval));
    expect(pred.predictions.shape).toEqual([data.eval.length, 7]);
    expect(pred.metrics.test_accuracy).toBeCloseTo(after.eval_accuracy, 12);
  });

  /** A metric that follows a script, one value per evaluation (the bookkeeping under test does not care where it comes from). */
  const scripted = (values: number[]) => {
    let k = 0;
    return () => ({ score: values[k++] });
  };
  const small = (out: string, extra: Record<string, unknown>) => ({
    output_dir: out,
    per_device_train_batch_size: 16,
    learning_rate: 1e-2,
    eval_strategy: 'epoch',
    save_strategy: 'epoch',
    disable_tqdm: true,
    ...extra,
  });

  it('keeps the best checkpoint under save_total_limit and restores it with load_best_model_at_end', async () => {
    const steps = Math.ceil(data.train.length / 16);
    for (const limit of [1, 2]) {
      const out = path.join(root, `best-${limit}`);
      const model = new Classifier(0);
      const saves: number[] = [];
      const trainer = new et.train.Trainer({
        model,
        trainDataset: asDataset(data.train),
        evalDataset: asDataset(data.eval),
        dataCollator: collate,
        computeMetrics: scripted([0.1, 0.9, 0.3, 0.2, 0.4]),
        args: small(out, { num_train_epochs: 5, save_total_limit: limit, load_best_model_at_end: true, metric_for_best_model: 'score' }),
      });
      trainer.on('save', (e: { step: number }) => saves.push(e.step));
      await trainer.train();
      expect(saves).toEqual([1, 2, 3, 4, 5].map((e) => e * steps));
      const best = path.join(out, `checkpoint-${2 * steps}`);
      expect(
        fs
          .readdirSync(out)
          .filter((n) => n.startsWith('checkpoint-'))
          .sort(),
      ).toEqual([`checkpoint-${2 * steps}`, `checkpoint-${5 * steps}`].sort());
      const state = JSON.parse(fs.readFileSync(path.join(out, `checkpoint-${5 * steps}`, 'trainer_state.json'), 'utf8'));
      expect([state.best_metric, state.best_global_step, state.best_model_checkpoint, state.global_step]).toEqual([0.9, 2 * steps, best, 5 * steps]);
      expect(state.log_history.filter((r: Record<string, number>) => r.eval_score !== undefined).length).toBe(5);
      const saved = (await et.io.loadSafetensors(path.join(best, 'model.safetensors'))).tensors;
      const last = (await et.io.loadSafetensors(path.join(out, `checkpoint-${5 * steps}`, 'model.safetensors'))).tensors;
      for (const [n, p] of model.namedParameters()) {
        expect(p.sub(saved.get(n)!).abs().max().item(), n).toBe(0);
        expect(p.sub(last.get(n)!).abs().max().item()).toBeGreaterThan(0);
      }
    }
  });

  it("save_strategy 'best' saves exactly when an evaluation sets a new best metric", async () => {
    const steps = Math.ceil(data.train.length / 16);
    const out = path.join(root, 'save-best');
    const saves: number[] = [];
    const trainer = new et.train.Trainer({
      model: new Classifier(0),
      trainDataset: asDataset(data.train),
      evalDataset: asDataset(data.eval),
      dataCollator: collate,
      computeMetrics: scripted([0.1, 0.9, 0.3, 0.95, 0.2]),
      args: small(out, { num_train_epochs: 5, save_strategy: 'best', metric_for_best_model: 'score' }),
    });
    trainer.on('save', (e: { step: number }) => saves.push(e.step));
    await trainer.train();
    expect(saves).toEqual([1, 2, 4].map((e) => e * steps));
    expect(
      fs
        .readdirSync(out)
        .filter((n) => n.startsWith('checkpoint-'))
        .sort(),
    ).toEqual([1, 2, 4].map((e) => `checkpoint-${e * steps}`).sort());
    expect(trainer.state.best_model_checkpoint).toBe(path.join(out, `checkpoint-${4 * steps}`));
  });

  it('stops early after `patience` evaluations without an improvement above `threshold`', async () => {
    const out = path.join(root, 'early');
    const stopper = new et.train.EarlyStoppingCallback({ patience: 2, threshold: 0.05 });
    const trainer = new et.train.Trainer({
      model: new Classifier(0),
      trainDataset: asDataset(data.train),
      evalDataset: asDataset(data.eval),
      dataCollator: collate,
      computeMetrics: scripted([0.5, 0.6, 0.64, 0.59, 0.9, 0.9]),
      callbacks: [stopper],
      args: small(out, { num_train_epochs: 6, save_strategy: 'no', metric_for_best_model: 'score' }),
    });
    const r = await trainer.train();
    expect(r.stopReason).toBe('callback');
    expect(r.globalStep).toBe(4 * Math.ceil(data.train.length / 16));
    expect(stopper.patienceCounter).toBe(2);
    expect(trainer.state.best_metric).toBe(0.64);
    const noMetric = new et.train.Trainer({
      model: new Classifier(0),
      trainDataset: asDataset(data.train),
      callbacks: [new et.train.EarlyStoppingCallback()],
      args: { output_dir: path.join(root, 'early2'), disable_tqdm: true },
    });
    await expect(noMetric.train()).rejects.toThrow(/EarlyStoppingCallback needs args\.eval_strategy/);
  });

  it('stops on an AbortSignal after saving a checkpoint, and resume_from_checkpoint: true continues from it', async () => {
    const out = path.join(root, 'abort');
    const ac = new AbortController();
    const args = { output_dir: out, max_steps: 6, per_device_train_batch_size: 8, save_strategy: 'no', disable_tqdm: true, logging_steps: 1 } as const;
    const t1 = new et.train.Trainer({
      model: new Classifier(),
      trainDataset: asDataset(data.train),
      dataCollator: collate,
      signal: ac.signal,
      args,
      callbacks: [
        {
          onStepEnd: (ctx) => {
            if (ctx.state.global_step === 2) ac.abort();
          },
        },
      ],
    });
    const r1 = await t1.train();
    expect([r1.stopReason, r1.globalStep]).toEqual(['aborted', 2]);
    expect(fs.readdirSync(out).filter((n) => n.startsWith('checkpoint'))).toEqual(['checkpoint-2']);
    const t2 = new et.train.Trainer({
      model: new Classifier(),
      trainDataset: asDataset(data.train),
      dataCollator: collate,
      args: { ...args, resume_from_checkpoint: true },
    });
    const r2 = await t2.train();
    expect([r2.stopReason, r2.globalStep]).toEqual(['completed', 6]);
    expect(
      readJsonl(path.join(out, 'log.jsonl'))
        .filter((x) => x.loss !== undefined)
        .map((x) => x.step),
    ).toEqual([1, 2, 3, 4, 5, 6]);
    const t3 = new et.train.Trainer({
      model: new Classifier(),
      trainDataset: asDataset(data.train),
      args: { output_dir: path.join(root, 'none'), resume_from_checkpoint: true, disable_tqdm: true },
    });
    await expect(t3.train()).rejects.toThrow(/holds no complete checkpoint/);
  });
});

describe('Trainer mixed precision', () => {
  it('bf16 autocast and fp16 with a GradScaler train, and the scaler state is checkpointed', async () => {
    for (const mode of ['bf16', 'fp16'] as const) {
      const out = path.join(root, `amp-${mode}`);
      const trainer = new et.train.Trainer({
        model: new Classifier(0),
        trainDataset: asDataset(data.train),
        dataCollator: collate,
        args: {
          output_dir: out,
          [mode]: true,
          max_steps: 6,
          save_steps: 6,
          per_device_train_batch_size: 8,
          learning_rate: 1e-2,
          logging_steps: 1,
          disable_tqdm: true,
        },
      });
      const r = await trainer.train();
      const losses = trainer.state.log_history.filter((x) => x.loss !== undefined).map((x) => x.loss);
      expect(losses.length).toBe(6);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[5]).toBeLessThan(losses[0]);
      expect(r.globalStep).toBe(6);
      expect(fs.existsSync(path.join(out, 'checkpoint-6', 'scaler.json'))).toBe(mode === 'fp16');
      if (mode === 'fp16') expect(JSON.parse(fs.readFileSync(path.join(out, 'checkpoint-6', 'scaler.json'), 'utf8'))).toEqual(trainer.scaler!.stateDict());
    }
  });
});

describe('Trainer data order', () => {
  it('group_by_length batches items of similar length (length_column_name), and says so when items have none', async () => {
    const withLength = data.train.map((x, i) => ({ ...x, length: (i * 7) % 5 }));
    const batches: number[][] = [];
    const trainer = new et.train.Trainer({
      model: new Classifier(0),
      trainDataset: asDataset(withLength),
      dataCollator: (xs: typeof withLength) => {
        batches.push(xs.map((x) => x.length));
        return collate(xs);
      },
      args: {
        output_dir: path.join(root, 'group'),
        group_by_length: true,
        max_steps: 2,
        per_device_train_batch_size: 8,
        save_strategy: 'no',
        disable_tqdm: true,
      },
    });
    await trainer.train();
    expect(batches.length).toBeGreaterThanOrEqual(2);
    for (const b of batches.slice(0, 2)) expect(Math.max(...b) - Math.min(...b)).toBeLessThanOrEqual(1);
    const bad = new et.train.Trainer({
      model: new Classifier(0),
      trainDataset: asDataset(data.train),
      dataCollator: collate,
      args: { output_dir: path.join(root, 'group2'), group_by_length: true, max_steps: 1, save_strategy: 'no', disable_tqdm: true },
    });
    await expect(bad.train()).rejects.toThrow(/args\.group_by_length/);
  });
});

describe('Trainer log file', () => {
  it('a failing log.jsonl write (the step does not wait for it) fails train() with that error', async () => {
    const out = path.join(root, 'log-fail');
    const open = fs.promises.open;
    const spy = vi.spyOn(fs.promises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
      const fh = await open(...args);
      if (String(args[0]).endsWith('log.jsonl')) {
        fh.write = (async () => {
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }) as never;
      }
      return fh;
    });
    try {
      const trainer = new et.train.Trainer({
        model: new Classifier(0),
        trainDataset: asDataset(data.train),
        dataCollator: collate,
        args: { output_dir: out, max_steps: 3, per_device_train_batch_size: 8, logging_steps: 1, save_strategy: 'no', disable_tqdm: true },
      });
      await expect(trainer.train()).rejects.toThrow(/ENOSPC/);
    } finally {
      spy.mockRestore();
    }
  });
});

// Issue 18 point 10: the state file is validated like any input, and output_dir errors are coded.
describe('Trainer resume validates trainer_state.json', () => {
  const base = path.join(root, 'state-base');
  const args = { max_steps: 2, save_steps: 2, per_device_train_batch_size: 8, logging_steps: 1, disable_tqdm: true } as const;
  const make = (out: string, extra: Record<string, unknown> = {}) =>
    new et.train.Trainer({
      model: new Classifier(0),
      trainDataset: asDataset(data.train),
      dataCollator: collate,
      args: { ...args, output_dir: out, ...extra },
    });
  beforeAll(async () => {
    await make(base).train();
  });
  /** A copy of checkpoint-2 whose trainer_state.json is changed by `edit`. */
  const corrupt = (name: string, edit: (st: Record<string, any>) => void | string) => {
    const out = path.join(root, `state-${name}`);
    fs.cpSync(path.join(base, 'checkpoint-2'), path.join(out, 'checkpoint-2'), { recursive: true });
    const file = path.join(out, 'checkpoint-2', 'trainer_state.json');
    const st = JSON.parse(fs.readFileSync(file, 'utf8'));
    const text = edit(st);
    fs.writeFileSync(file, typeof text === 'string' ? text : JSON.stringify(st));
    return { out, file };
  };
  const cases: Array<[string, string, (st: Record<string, any>) => void | string]> = [
    [
      'a string global_step',
      'global_step',
      (st) => {
        st.global_step = 'SECRET-four';
      },
    ],
    [
      'a negative global_step',
      'global_step',
      (st) => {
        st.global_step = -5;
      },
    ],
    [
      'a fractional global_step',
      'global_step',
      (st) => {
        st.global_step = 1.5;
      },
    ],
    [
      'a missing global_step',
      'global_step',
      (st) => {
        delete st.global_step;
      },
    ],
    [
      'a string epoch',
      'epoch',
      (st) => {
        st.epoch = 'SECRET';
      },
    ],
    [
      'a non-array log_history',
      'log_history',
      (st) => {
        st.log_history = 'SECRET';
      },
    ],
    [
      'a log record of strings',
      'log_history\\[0\\]',
      (st) => {
        st.log_history[0] = { loss: 'SECRET' };
      },
    ],
    [
      'a string best_metric',
      'best_metric',
      (st) => {
        st.best_metric = 'SECRET';
      },
    ],
    [
      'a string data epoch',
      'emotorch\\.data\\.epoch',
      (st) => {
        st.emotorch.data.epoch = 'SECRET';
      },
    ],
    [
      'a huge garbage data epoch',
      'emotorch\\.data\\.epoch',
      (st) => {
        st.emotorch.data.epoch = 1e300;
      },
    ],
    [
      'negative data batches',
      'emotorch\\.data\\.batches',
      (st) => {
        st.emotorch.data.batches = -3;
      },
    ],
    [
      'a missing data position',
      'emotorch\\.data',
      (st) => {
        delete st.emotorch.data;
      },
    ],
    [
      'a zero world',
      'emotorch\\.data\\.world',
      (st) => {
        st.emotorch.data.world = 0;
      },
    ],
    [
      'a string logSum',
      'emotorch\\.logSum',
      (st) => {
        st.emotorch.logSum = 'SECRET';
      },
    ],
    [
      'a negative logCount',
      'emotorch\\.logCount',
      (st) => {
        st.emotorch.logCount = -1;
      },
    ],
    [
      'a numeric stateful_callbacks',
      'stateful_callbacks',
      (st) => {
        st.stateful_callbacks = 5;
      },
    ],
  ];
  for (const [name, field, edit] of cases) {
    it(`${name} is ERR_FORMAT naming the file and the field, not the content (and train() can be called again)`, async () => {
      const { out, file } = corrupt(name.replace(/\W+/g, '-'), edit);
      const t = make(out, { resume_from_checkpoint: true });
      const e = await rejectsWith(() => t.train(), 'ERR_FORMAT', new RegExp(`${field} must be`));
      expect(e.message).toContain(file);
      expect(e.message.replace(file, '')).not.toMatch(/SECRET|1e\+300|-3|-5/);
      await rejectsWith(() => t.train(), 'ERR_FORMAT', new RegExp(`${field} must be`));
      expect(fs.readdirSync(out).filter((n) => n.startsWith('checkpoint-'))).toEqual(['checkpoint-2']);
    });
  }
  it('a state file that is not JSON is ERR_FORMAT without quoting it', async () => {
    const { out, file } = corrupt('not-json', () => '{"global_step": SECRET');
    const e = await rejectsWith(() => make(out, { resume_from_checkpoint: true }).train(), 'ERR_FORMAT', /is not valid JSON/);
    expect(e.message).toContain(file);
    expect(e.message).not.toMatch(/SECRET/);
  });
  it('a valid state still resumes (NaN sums written as null come back)', async () => {
    const { out } = corrupt('valid', (st) => {
      st.emotorch.logSum = null;
    });
    const r = await make(out, { resume_from_checkpoint: true, max_steps: 3, save_steps: 3 }).train();
    expect([r.stopReason, r.globalStep]).toEqual(['completed', 3]);
  });
});

describe('Trainer output_dir', () => {
  it('an existing file, or a path under one, is ERR_INVALID_ARG naming output_dir (not a raw EEXIST / ENOTDIR)', async () => {
    const file = path.join(root, 'a-file');
    fs.writeFileSync(file, 'x');
    for (const out of [file, path.join(file, 'run')]) {
      const t = new et.train.Trainer({
        model: new Classifier(0),
        trainDataset: asDataset(data.train),
        dataCollator: collate,
        args: { output_dir: out, max_steps: 1, disable_tqdm: true },
      });
      await rejectsWith(() => t.train(), 'ERR_INVALID_ARG', /Expected a folder for args\.output_dir but received/);
      await rejectsWith(() => t.saveCheckpoint(), 'ERR_INVALID_ARG', /args\.output_dir/);
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
  });
});

describe('Trainer trainMetrics (ms-swift custom metrics)', () => {
  it('logs each micro-batch value / accumulation steps, summed, over the optimizer steps since the last log', async () => {
    et.manualSeed(0);
    const values = [1, 0, 1, 1, 0, 0, 1, 0]; // micro-batch by micro-batch
    let k = 0;
    const trainer = new et.train.Trainer({
      model: new Classifier(0.1),
      trainDataset: asDataset(data.train.slice(0, 8)),
      dataCollator: collate,
      trainMetrics: (outputs) => {
        expect(outputs.logits).toBeInstanceOf(et.Tensor);
        return { acc: values[k++] };
      },
      args: {
        output_dir: path.join(root, 'custom'),
        max_steps: 4,
        per_device_train_batch_size: 1,
        gradient_accumulation_steps: 2,
        logging_steps: 2,
        save_strategy: 'no',
        disable_tqdm: true,
        train_sampling_strategy: 'sequential',
      },
    });
    await trainer.train();
    const logged = readJsonl(path.join(root, 'custom', 'log.jsonl'))
      .filter((x) => x.loss !== undefined)
      .map((x) => x.acc);
    // steps 1-2: (1+0)/2 + (1+1)/2 over 2 steps = 0.75; steps 3-4: (0+0)/2 + (1+0)/2 over 2 = 0.25
    expect(logged).toEqual([0.75, 0.25]);
    await rejectsWith(
      new et.train.Trainer({
        model: new Classifier(0.1),
        trainDataset: asDataset(data.train.slice(0, 2)),
        dataCollator: collate,
        trainMetrics: () => ({ acc: NaN }),
        args: { output_dir: path.join(root, 'custom2'), max_steps: 1, save_strategy: 'no', disable_tqdm: true },
      }).train(),
      'ERR_INVALID_ARG',
      /trainMetrics\(\) result 'acc'/,
    );
  });
});

describe('Trainer: confusion matrix and report of a classification evaluation', () => {
  it('writes confusion_matrix_eval.svg (the counts in its cells) and classification_report_eval.txt next to the curves', async () => {
    et.manualSeed(1);
    const out = path.join(root, 'confusion');
    const names = ['anger', 'disgust', 'fear', 'joy', 'neutral', 'sadness', 'surprise'];
    const trainer = new et.train.Trainer({
      model: new Classifier(0.1),
      trainDataset: asDataset(data.train),
      evalDataset: asDataset(data.eval),
      dataCollator: collate,
      computeMetrics: accuracy,
      classNames: names,
      args: {
        output_dir: out,
        max_steps: 6,
        per_device_train_batch_size: 8,
        learning_rate: 1e-2,
        eval_strategy: 'no',
        save_strategy: 'no',
        disable_tqdm: true,
      },
    });
    await trainer.train();
    await trainer.evaluate();
    const pred = await trainer.predict(asDataset(data.eval));
    const p = (pred.predictions.argmax(1).toArray() as number[]).map(Number);
    const g = (pred.labelIds!.toArray() as number[]).map(Number);
    const counts = names.map((_, i) => names.map((__, j) => p.filter((x, k) => g[k] === i && x === j).length)); // counted here, by hand
    const svg = fs.readFileSync(path.join(out, 'confusion_matrix_eval.svg'), 'utf8');
    expect(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>')).toBe(true);
    const cells = [...svg.matchAll(/<text[^>]*>(\d+)<\/text>/g)].map((m) => Number(m[1]));
    expect(cells.filter((c) => c > 0).sort((a, b) => a - b)).toEqual(
      counts
        .flat()
        .filter((c) => c > 0)
        .sort((a, b) => a - b),
    );
    for (const n of names) expect(svg).toContain(`>${n}<`);
    const report = fs.readFileSync(path.join(out, 'classification_report_eval.txt'), 'utf8');
    expect(report.trim()).toBe(
      et.metrics.classificationReport(p, g, { labels: names.map((_, i) => i), targetNames: names, digits: 4, zeroDivision: 0 }).trim(),
    );
    const bad = new et.train.Trainer({
      model: new Classifier(0.1),
      evalDataset: asDataset(data.eval),
      dataCollator: collate,
      computeMetrics: accuracy,
      classNames: ['a', 'b'],
      args: { output_dir: path.join(root, 'confusion-bad'), disable_tqdm: true },
    });
    await rejectsWith(bad.evaluate(), 'ERR_INVALID_ARG', /classNames/);
  });
});
