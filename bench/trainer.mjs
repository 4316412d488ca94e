// emotorch side of `npm run bench -- trainer`: a tiny LLaMA trained for `trainSteps` optimizer
// steps per call by et.train.Trainer (batch 8, accumulation 2, linear schedule with warmup,
// clipping, logging every step, no saving), against transformers' Trainer on the same model
// size, data and arguments (bench/torch_worker.py), and against a bare emotorch loop doing the
// same work without the Trainer (for the Trainer's overhead).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as et from 'emotorch';

const MODEL = {
  vocab_size: 512,
  hidden_size: 128,
  intermediate_size: 256,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  max_position_embeddings: 128,
};

/** The same token sequences as the Python side: a fixed formula, labels = ids with the first quarter masked. */
function dataset(cfg) {
  const items = [];
  for (let i = 0; i < cfg.examples; i++) {
    const ids = Array.from({ length: cfg.seq }, (_, j) => (i * 7 + j * 13 + ((i * j) % 5)) % MODEL.vocab_size);
    items.push({ ids, labels: ids.map((x, j) => (j < cfg.seq / 4 ? -100 : x)) });
  }
  return items;
}
const collate = (xs) => ({
  inputIds: et.tensor(
    xs.flatMap((x) => x.ids),
    { shape: [xs.length, xs[0].ids.length], dtype: 'int64' },
  ),
  labels: et.tensor(
    xs.flatMap((x) => x.labels),
    { shape: [xs.length, xs[0].ids.length], dtype: 'int64' },
  ),
});
const ARGS = (cfg, out) => ({
  output_dir: out,
  max_steps: cfg.trainSteps,
  per_device_train_batch_size: cfg.batch,
  gradient_accumulation_steps: cfg.accumulation,
  learning_rate: 1e-3,
  warmup_steps: 2,
  lr_scheduler_type: 'linear',
  weight_decay: 0.01,
  logging_steps: 1,
  save_strategy: 'no',
  disable_tqdm: true,
  seed: 0,
  train_sampling_strategy: 'random',
});

async function setup(cfg) {
  et.manualSeed(0);
  const model = et.nn.LlamaForCausalLM.create(MODEL);
  const items = dataset(cfg);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-trainer-'));
  const trainer = new et.train.Trainer({ model, trainDataset: { length: items.length, get: (i) => items[i] }, dataCollator: collate, args: ARGS(cfg, out) });
  return async () => {
    await trainer.train();
  };
}

/** The same steps by hand: the work the Trainer must add (almost) nothing to. */
async function baseline(cfg) {
  et.manualSeed(0);
  const model = et.nn.LlamaForCausalLM.create(MODEL);
  const items = dataset(cfg);
  const a = ARGS(cfg, '');
  const loader = new et.data.DataLoader({ length: items.length, get: (i) => items[i] }, { batchSize: cfg.batch, shuffle: true, seed: 0, collate });
  const opt = new et.optim.AdamW(et.optim.decayGroups(model, a.weight_decay), { lr: a.learning_rate, weightDecay: a.weight_decay });
  return async () => {
    const sched = new et.optim.LRScheduler(
      opt,
      et.optim.schedules.hfSchedule('linear', { lr: a.learning_rate, warmupSteps: a.warmup_steps, totalSteps: cfg.trainSteps }),
    );
    const params = model.trainableParameters();
    let step = 0;
    const log = [];
    while (step < cfg.trainSteps) {
      let micro = [];
      for await (const batch of loader) {
        micro.push(batch);
        if (micro.length < cfg.accumulation) continue;
        const n = micro.reduce((s, b) => s + b.labels.slice(1, 1).ne(-100).sum().item(), 0);
        let loss = 0;
        for (const b of micro) {
          const out = await model.forward({ ...b, numItemsInBatch: n });
          loss += out.loss.item();
          await out.loss.backward();
        }
        const norm = await et.optim.clipGradNorm(params, 1);
        await opt.step();
        sched.step();
        opt.zeroGrad();
        log.push({ loss, grad_norm: norm, learning_rate: opt.getLr(), step: ++step });
        micro = [];
        if (step >= cfg.trainSteps) break;
      }
    }
  };
}

export const cases = {
  trainer: {
    config: { examples: 64, seq: 64, batch: 8, accumulation: 2, trainSteps: 40, steps: 1, warmup: 1, trials: 7 },
    stepsPerCall: (c) => c.trainSteps,
    describe: (c) =>
      `Trainer: LLaMA (2 layers, hidden 128, vocab 512), ${c.examples} sequences of ${c.seq} tokens, batch ${c.batch} × accumulation ${c.accumulation}, linear warmup schedule, clipping, logging every step, no saving; ${c.trainSteps} optimizer steps per train() call`,
    setup,
    baseline,
  },
};
