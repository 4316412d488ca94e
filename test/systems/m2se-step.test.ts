// One M2SE SFT step against peft + the HF Trainer (scripts/fixtures/m2se_step.py ->
// test/fixtures/m2se_step/): the recipe's tokenization, the loss and every LoRA gradient, and the
// LoRA weights after one optimizer step of the recipe's Trainer.
import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'm2se_step');
const TOK = path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json');
const RECORDS = path.join(DIR, 'records.json');
const TOL = 1e-4;

let io: Map<string, et.Tensor>;
let tok: et.data.Tokenizer;
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(DIR, 'io.safetensors'))).tensors;
  tok = await et.data.Tokenizer.fromFile(TOK);
});

/** The fixture's base LLaMA with the recipe's LoRA (dropout 0) holding peft's starting weights. */
async function model(): Promise<et.nn.LlamaForCausalLM> {
  const m = await et.nn.LlamaForCausalLM.fromPretrained(path.join(DIR, 'llm'));
  et.nn.applyLora(m, { ...et.systems.m2se.M2SE_LORA, dropout: 0 });
  const lora = new Map([...io].filter(([k]) => k.startsWith('lora.')).map(([k, t]) => [k.slice(5), t] as [string, et.Tensor]));
  const own = m
    .namedParameters()
    .filter(([, p]) => p.requiresGrad)
    .map(([n]) => n)
    .sort();
  expect(own).toEqual([...lora.keys()].sort()); // the recipe's targets and rank give peft's parameters
  await m.loadStateDict(lora, { strict: false });
  m.train();
  return m;
}

const worstGrad = (m: et.nn.LlamaForCausalLM, prefix: string): number => {
  let worst = 0;
  for (const [n, p] of m.namedParameters().filter(([, q]) => q.requiresGrad)) worst = Math.max(worst, maxAbsDiff(p.grad!, io.get(`${prefix}${n}`)!));
  return worst;
};

describe('an M2SE SFT step = peft + HF Trainer', () => {
  it('tokenizes the records as the reference, and gives its loss and LoRA gradients (one batch, and batch 1 × accumulation 2)', async () => {
    const { examples } = await et.systems.m2se.m2seExamples(et.systems.m2se.m2seRecords(RECORDS), tok);
    expect(examples.length).toBe(2);
    for (let i = 0; i < 2; i++) {
      expect(examples[i].ids).toEqual(Array.from(io.get(`ex${i}.input_ids`)!.dataSync() as BigInt64Array, Number));
      expect(examples[i].labels).toEqual(Array.from(io.get(`ex${i}.labels`)!.dataSync() as BigInt64Array, Number));
    }
    const m = await model();
    const { loss } = await m.forward(et.systems.m2se.m2seCollate(examples));
    const dLoss = Math.abs(loss!.item() - io.get('batch.loss')!.item());
    await loss!.backward();
    const dGrad = worstGrad(m, 'batch.grad.');
    for (const p of m.parameters()) p.grad = null;

    const n = io.get('accum.num_items')!.item();
    let total = 0;
    for (const ex of examples) {
      const out = await m.forward({ ...et.systems.m2se.m2seCollate([ex]), numItemsInBatch: n });
      total += out.loss!.item();
      await out.loss!.backward();
    }
    const dLossAcc = Math.abs(total - io.get('accum.loss')!.item());
    const dGradAcc = worstGrad(m, 'accum.grad.');
    console.log(
      `M2SE step parity: batch loss ${dLoss.toExponential(2)}, grads ${dGrad.toExponential(2)}; accumulated loss ${dLossAcc.toExponential(2)}, grads ${dGradAcc.toExponential(2)}`,
    );
    expect(dLoss).toBeLessThan(TOL);
    expect(dGrad).toBeLessThan(TOL);
    expect(dLossAcc).toBeLessThan(TOL);
    expect(dGradAcc).toBeLessThan(TOL);
  });

  it('one m2seStages optimizer step (batch 1 × accumulation 2, AdamW, clip 0.5, decay 0.1) moves the LoRA weights as the HF Trainer', async () => {
    const m = await model();
    const before = new Map(
      m
        .namedParameters()
        .filter(([, p]) => p.requiresGrad)
        .map(([n, p]) => [n, p.detach().clone()] as [string, et.Tensor]),
    );
    const [res] = await et.systems.m2se.m2seStages({
      model: m,
      tokenizer: tok,
      outputDir: tmpdir(),
      stages: [
        {
          datasets: [RECORDS],
          args: { max_steps: 1, gradient_accumulation_steps: 2, learning_rate: 1e-3, lr_scheduler_type: 'constant', warmup_ratio: 0, save_strategy: 'no' },
        },
      ],
    });
    expect(res.globalStep).toBe(1);
    expect(Math.abs(res.trainingLoss - io.get('step.train_loss')!.item())).toBeLessThan(TOL);
    let worst = 0;
    let moved = 0;
    for (const [n, p] of m.namedParameters().filter(([, q]) => q.requiresGrad)) {
      worst = Math.max(worst, maxAbsDiff(p, io.get(`step.${n}`)!));
      moved = Math.max(moved, maxAbsDiff(p, before.get(n)!));
    }
    console.log(`M2SE Trainer step parity: LoRA weights ${worst.toExponential(2)} (largest change ${moved.toExponential(2)})`);
    expect(moved).toBeGreaterThan(5e-4);
    expect(worst).toBeLessThan(1e-6);
  });
});
