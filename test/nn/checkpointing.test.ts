// Gradient checkpointing (args.gradient_checkpointing, Module.setGradientCheckpointing): the
// LLaMA-family layers and InternViT's recompute in backward; gradients unchanged (LoRA dropout
// draws the same masks again), peak CPU memory of the step lower.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'm2se_internvl');

async function model(): Promise<et.systems.m2se.InternVL> {
  const tok = await et.data.Tokenizer.fromFile(path.join(DIR, 'tokenizer.json'));
  const m = await et.systems.m2se.InternVL.fromPretrained(path.join(DIR, 'internlm2'), { imgContextTokenId: tok.tokenToId('<IMG_CONTEXT>') });
  et.nn.applyLora(m, { r: 8, alpha: 32, dropout: 0.05, targetModules: et.systems.m2se.INTERNVL_LORA_TARGETS });
  for (const [n, p] of m.namedParameters()) if (n.startsWith('vision_model.encoder.')) p.requiresGrad = true; // the tower trains too: its layers recompute
  return m.train();
}

function batch(m: et.systems.m2se.InternVL, rows: number, len: number, tiles: number) {
  const ctx = m.imgContextTokenId!;
  const per = (tiles / rows) * m.numImageToken;
  const g = et.randint(5, 1400, [rows, len], { dtype: 'int64' }).toArray() as number[][];
  for (const r of g) for (let k = 0; k < per; k++) r[2 + k] = ctx;
  const inputIds = et.tensor(g, { dtype: 'int64' });
  return { inputIds, labels: inputIds, pixelValues: et.randn([tiles, 3, 56, 56]) };
}

async function step(m: et.systems.m2se.InternVL, b: ReturnType<typeof batch>): Promise<{ grads: Map<string, et.Tensor>; peak: number; loss: number }> {
  for (const p of m.parameters()) p.grad = null;
  et.manualSeed(11);
  et.cpu.resetPeakMemory();
  const base = et.cpu.cacheStats().allocatedBytes;
  const out = await m.forward(b);
  await out.loss!.backward();
  const peak = et.cpu.cacheStats().peakAllocatedBytes - base;
  const loss = out.loss!.item();
  out.logits.dispose();
  const grads = new Map(
    m
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n, p]) => [n, p.grad!.clone()] as [string, et.Tensor]),
  );
  return { grads, peak, loss };
}

describe('gradient checkpointing', () => {
  it('gives the same loss and gradients (LoRA dropout on) with a lower peak of CPU memory', async () => {
    const m = await model();
    et.manualSeed(3);
    const b = batch(m, 4, 160, 8);
    const plain = await step(m, b);
    expect(m.setGradientCheckpointing(true)).toBe(2); // InternViT and the LLM; mlp1 has no layers to recompute
    const ckpt = await step(m, b);
    expect(ckpt.loss).toBe(plain.loss);
    let worst = 0;
    for (const [n, g] of plain.grads) worst = Math.max(worst, maxAbsDiff(g, ckpt.grads.get(n)!) / Math.max(g.abs().max().item(), 1e-12));
    expect(worst).toBeLessThan(1e-5);
    expect(plain.grads.size).toBeGreaterThan(20);
    console.log(`gradient checkpointing: peak CPU memory of the step ${(plain.peak / 2 ** 20).toFixed(1)} MiB -> ${(ckpt.peak / 2 ** 20).toFixed(1)} MiB`);
    expect(ckpt.peak).toBeLessThan(0.8 * plain.peak);
    expect(m.setGradientCheckpointing(false)).toBe(2);
    m.eval();
  });

  it('is a TrainingArguments field; a model without recomputable layers is refused', async () => {
    const m = await model();
    const items = [{ inputIds: et.tensor([[1, 5, 6, 7, 8]], { dtype: 'int64' }), labels: et.tensor([[1, 5, 6, 7, 8]], { dtype: 'int64' }) }];
    const trainer = new et.train.Trainer({
      model: m,
      trainDataset: { length: 1, get: (i: number) => items[i] },
      dataCollator: (x) => x[0],
      args: { output_dir: tmpdir(), max_steps: 1, gradient_checkpointing: true, save_strategy: 'no', disable_tqdm: true },
    });
    expect((await trainer.train()).globalStep).toBe(1);
    class Plain extends et.nn.Module {
      async forward() {
        return {};
      }
    }
    const t2 = new et.train.Trainer({
      model: new Plain(),
      trainDataset: { length: 1, get: () => ({}) },
      args: { output_dir: tmpdir(), max_steps: 1, gradient_checkpointing: true, save_strategy: 'no', disable_tqdm: true },
    });
    await expect(t2.train()).rejects.toThrow(/gradient_checkpointing: the model has no layers/);
    expect(() => m.setGradientCheckpointing('yes' as never)).toThrow(/boolean/);
  });
});
