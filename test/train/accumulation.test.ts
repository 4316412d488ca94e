import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { tmpdir } from '../helpers';

const CONFIG = {
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 32,
};
const T = 10;
/** 8 sequences whose label masks leave 8, 1, 5, 2, 9, 3, 7, 4 label tokens after the causal shift. */
const KEEP = [8, 1, 5, 2, 9, 3, 7, 4];
const rand = et.data.mulberry32(11);
const items = KEEP.map((k) => {
  const ids = Array.from({ length: T }, () => Math.floor(rand() * 64));
  return { ids, labels: ids.map((x, i) => (i >= T - k ? x : -100)) };
});
const dataset = { length: items.length, get: (i: number) => items[i] };
const collate = (xs: typeof items) => ({
  inputIds: et.tensor(
    xs.flatMap((x) => x.ids),
    { shape: [xs.length, T], dtype: 'int64' },
  ),
  labels: et.tensor(
    xs.flatMap((x) => x.labels),
    { shape: [xs.length, T], dtype: 'int64' },
  ),
});

/** One Trainer step with plain SGD (lr 1, no clipping, constant lr): the parameter change is minus the gradient. */
async function oneStep(base: et.nn.LlamaForCausalLM, batch: number, accumulation: number, computeLoss?: et.train.TrainerOptions['computeLoss']) {
  const model = et.nn.LlamaForCausalLM.create(CONFIG);
  await model.loadStateDict(base.stateDict());
  const trainer = new et.train.Trainer({
    model,
    trainDataset: dataset,
    dataCollator: collate,
    computeLoss,
    optimizer: new et.optim.SGD(model.trainableParameters(), { lr: 1 }),
    args: {
      output_dir: path.join(tmpdir(), 'acc'),
      max_steps: 1,
      per_device_train_batch_size: batch,
      gradient_accumulation_steps: accumulation,
      max_grad_norm: 0,
      lr_scheduler_type: 'constant',
      learning_rate: 1,
      train_sampling_strategy: 'sequential',
      save_strategy: 'no',
      logging_steps: 1,
      disable_tqdm: true,
    },
  });
  const r = await trainer.train();
  expect(r.globalStep).toBe(1);
  const before = new Map(base.namedParameters());
  return { grads: model.namedParameters().map(([n, p]) => [n, before.get(n)!.sub(p)] as const), loss: trainer.state.log_history[0].loss };
}

describe('gradient accumulation for token losses', () => {
  it('4 micro-batches of 2 give the gradients and loss of one batch of 8 (normalized by all label tokens)', async () => {
    et.manualSeed(3);
    const base = et.nn.LlamaForCausalLM.create(CONFIG);
    const full = await oneStep(base, 8, 1);
    const acc = await oneStep(base, 2, 4);
    // per-micro-batch means averaged over 4 (what a naive loop does) differ: the token counts are unequal
    const naive = await oneStep(base, 2, 4, async (m, b) => ((await m.forward({ inputIds: b.inputIds, labels: b.labels })) as { loss: et.Tensor }).loss.div(4));
    let worst = 0,
      naiveWorst = 0,
      scale = 0;
    full.grads.forEach(([n, g], i) => {
      expect(acc.grads[i][0]).toBe(n);
      worst = Math.max(worst, g.sub(acc.grads[i][1]).abs().max().item());
      naiveWorst = Math.max(naiveWorst, g.sub(naive.grads[i][1]).abs().max().item());
      scale = Math.max(scale, g.abs().max().item());
    });
    console.log(
      `accumulation 4x2 vs batch 8: max |grad diff| ${worst.toExponential(2)}, loss ${acc.loss} vs ${full.loss} (naive per-micro-batch mean: ${naiveWorst.toExponential(2)}; max |grad| ${scale.toExponential(2)})`,
    );
    expect(scale).toBeGreaterThan(1e-3);
    expect(worst).toBeLessThan(1e-6);
    expect(naiveWorst).toBeGreaterThan(1e-4);
    // the logged loss: a sum of 4 float32 partial means vs one float32 mean (a few ulps of ~4.2)
    expect(Math.abs(acc.loss - full.loss)).toBeLessThan(1e-6 * full.loss);
  });
});

describe('predict_with_generate', () => {
  it("evaluates on the model's generated tokens", async () => {
    const model = et.nn.LlamaForCausalLM.create(CONFIG);
    let seen: et.Tensor | null = null;
    const trainer = new et.train.Trainer({
      model,
      evalDataset: dataset,
      dataCollator: collate,
      generateOptions: { minNewTokens: 3 },
      computeMetrics: ({ predictions }) => {
        seen = predictions;
        return { n: predictions.shape[0] };
      },
      args: {
        output_dir: path.join(tmpdir(), 'gen'),
        predict_with_generate: true,
        generation_max_length: 3,
        per_device_eval_batch_size: 4,
        disable_tqdm: true,
      },
    });
    const m = await trainer.evaluate();
    expect(m.eval_n).toBe(8);
    const direct = await model.generate({ inputIds: collate(items.slice(4)).inputIds }, { maxNewTokens: 3, minNewTokens: 3 });
    expect(seen!.shape).toEqual([8, 3]);
    expect(seen!.slice(0, 4).toArray()).toEqual(direct.newTokens.toArray());
    expect(m.eval_loss).toBeGreaterThan(0);
  });
});
