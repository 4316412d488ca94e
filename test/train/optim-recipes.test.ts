// The optimizers the seed systems trained with (transformers 4.x's AdamW, apex's FusedAdam), and
// SPECTRA main.py's accumulation (each loss / grad_acc, clipping after every micro-batch), against
// the formulas re-implemented from the published code and transformers' AdamW class run from its
// source (scripts/fixtures/optim_recipes.py -> test/fixtures/optim_recipes/).
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'optim_recipes');
interface Case {
  name: string;
  kind: 'adamw_hf' | 'fused_adam';
  lr: number;
  lr_b: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  correct_bias?: boolean;
  bias_correction?: boolean;
  adam_w_mode?: boolean;
}
const meta = JSON.parse(fs.readFileSync(path.join(DIR, 'cases.json'), 'utf8')) as {
  steps: number;
  cases: Case[];
  spectra: { lr: number; grad_acc: number; grad_norm: number; weight_decay: number };
};
let fx: Map<string, et.Tensor>;
beforeAll(async () => {
  fx = (await et.io.loadSafetensors(path.join(DIR, 'optim.safetensors'))).tensors;
});
const get = (k: string) => {
  const t = fx.get(k);
  if (!t) throw new Error(`fixture lacks ${k}`);
  return t;
};
const NAMES = ['w', 'v', 'b'] as const;

function make(c: Case, ps: Record<string, et.Tensor>): et.optim.Optimizer {
  const groups = [
    { params: [ps.w, ps.v], weightDecay: c.weight_decay },
    { params: [ps.b], weightDecay: 0, lr: c.lr_b },
  ];
  return c.kind === 'adamw_hf'
    ? new et.optim.AdamWHF(groups, { lr: c.lr, betas: c.betas, eps: c.eps, correctBias: c.correct_bias })
    : new et.optim.FusedAdam(groups, { lr: c.lr, betas: c.betas, eps: c.eps, biasCorrection: c.bias_correction, adamWMode: c.adam_w_mode });
}

/**
 * Steps an optimizer through the fixture's gradients; the worst |p - reference| over all steps (the
 * re-implemented formula, and transformers' own AdamW class where the fixture ran it), and the
 * reference vs torch.optim.AdamW at the end.
 */
async function trajectory(c: Case): Promise<{ worst: number; original: number | null; torch: number }> {
  const ps = Object.fromEntries(NAMES.map((n) => [n, get(`${n}_init`).clone().requiresGrad_()])) as Record<string, et.Tensor>;
  const opt = make(c, ps);
  let worst = 0,
    torch = 0;
  let original: number | null = fx.has(`original_${c.name}_w0`) ? 0 : null;
  for (let s = 0; s < meta.steps; s++) {
    for (const n of NAMES) ps[n].grad = get(`grad_${n}${s}`).clone();
    await opt.step();
    for (const n of NAMES) worst = Math.max(worst, maxAbsDiff(ps[n], get(`${c.name}_${n}${s}`)));
    if (original !== null) for (const n of NAMES) original = Math.max(original, maxAbsDiff(ps[n], get(`original_${c.name}_${n}${s}`)));
  }
  for (const n of NAMES) torch = Math.max(torch, maxAbsDiff(get(`${c.name}_${n}${meta.steps - 1}`), get(`torch_${c.name}_${n}${meta.steps - 1}`)));
  return { worst, original, torch };
}

describe('AdamWHF (transformers 4.x AdamW) and FusedAdam (apex) = their published formulas', () => {
  for (const c of meta.cases) {
    it(`${c.name}: ${c.kind}, ${meta.steps} steps, two groups, gradients down to |g| < 3e-7`, async () => {
      const { worst, original, torch } = await trajectory(c);
      console.log(
        `${c.name}: max |emotorch - reference| ${worst.toExponential(2)}${original === null ? '' : `, - transformers' AdamW class ${original.toExponential(2)}`} (reference vs torch.optim.AdamW: ${torch.toExponential(2)})`,
      );
      // parameters ~N(0, 1), updates ~1e-3: float32 rounding over 5 steps (a few ulps of 2 = 2.4e-7)
      expect(worst).toBeLessThan(2e-6);
      // the original class itself ran for the 'hf' case (transformers 4.x's AdamW, from its source)
      if (c.name === 'hf') expect(original).not.toBeNull();
      if (original !== null) expect(original).toBeLessThan(2e-6);
      expect(torch).toBeGreaterThan(1e-3); // the reference is not torch's AdamW: the comparison can fail
    });
  }

  it('keeps its state through stateDict / loadStateDict (kind checked)', async () => {
    const c = meta.cases.find((x) => x.name === 'fused')!;
    const ps = Object.fromEntries(NAMES.map((n) => [n, get(`${n}_init`).clone().requiresGrad_()])) as Record<string, et.Tensor>;
    const opt = make(c, ps);
    for (let s = 0; s < 2; s++) {
      for (const n of NAMES) ps[n].grad = get(`grad_${n}${s}`).clone();
      await opt.step();
    }
    const file = path.join(tmpdir(), 'fused.safetensors');
    await opt.save(file);
    const again = make(c, ps);
    await again.load(file);
    for (let s = 2; s < meta.steps; s++) {
      for (const n of NAMES) ps[n].grad = get(`grad_${n}${s}`).clone();
      await again.step();
    }
    for (const n of NAMES) expect(maxAbsDiff(ps[n], get(`fused_${n}${meta.steps - 1}`))).toBeLessThan(2e-6);
    const hf = make(meta.cases[0], ps);
    await rejectsWith(hf.load(file), 'ERR_STATE_DICT', /'fused_adam', not 'adamw_hf'/);
  });

  it('FusedAdam on bfloat16 parameters keeps float32 moments (as apex) and follows the float32 steps', async () => {
    const c = meta.cases.find((x) => x.name === 'fused')!;
    const ps = Object.fromEntries(NAMES.map((n) => [n, get(`${n}_init`).to({ dtype: 'bfloat16' }).requiresGrad_()])) as Record<string, et.Tensor>;
    const opt = make(c, ps);
    for (let s = 0; s < meta.steps; s++) {
      for (const n of NAMES) ps[n].grad = get(`grad_${n}${s}`).to({ dtype: 'bfloat16' });
      await opt.step();
    }
    const st = opt.stateDict().tensors;
    expect(st.get('0.0.exp_avg')!.dtype).toBe('float32');
    // bfloat16 rounds the start (2^-8 relative) and every step's result: within one bfloat16 step
    // of |p| < 4 of the float32 trajectory, and moved from the start
    for (const n of NAMES) {
      expect(maxAbsDiff(ps[n], get(`fused_${n}${meta.steps - 1}`))).toBeLessThan(2e-2);
      expect(maxAbsDiff(ps[n], get(`${n}_init`).to({ dtype: 'bfloat16' }))).toBeGreaterThan(0);
    }
  });

  it('refuses bad options', () => {
    const p = et.zeros([2]).requiresGrad_();
    throwsWith(() => new et.optim.AdamWHF([p], { correctBias: 1 as never }), 'ERR_INVALID_ARG', /correctBias/);
    throwsWith(() => new et.optim.AdamWHF([p], { weight_decay: 0.1 } as never), 'ERR_INVALID_ARG', /weight_decay/);
    throwsWith(() => new et.optim.FusedAdam([p], { betas: [0.9, 1] }), 'ERR_INVALID_ARG', /betas/);
    throwsWith(() => new et.optim.FusedAdam([p], { eps: -1 }), 'ERR_INVALID_ARG', /eps/);
    throwsWith(() => new et.optim.FusedAdam([p], { biasCorrection: 'no' as never }), 'ERR_INVALID_ARG', /biasCorrection/);
  });
});

/** A Linear(4, 3) whose loss is the summed squared error (the fixture's model). */
class Lin extends et.nn.Module {
  lin: et.nn.Linear;
  constructor() {
    super();
    this.lin = this.registerModule('lin', et.nn.Linear.create({ in_features: 4, out_features: 3 }));
  }
  async forward(b: { x: et.Tensor; y: et.Tensor }): Promise<{ loss: et.Tensor }> {
    return { loss: et.functional.mseLoss(await this.lin.forward(b.x), b.y, { reduction: 'sum' }) };
  }
}

/** The fixture's 7 micro-batches of 2 through the Trainer (grad_acc 3: windows 3, 3, 1). */
async function spectraRun(
  kind: 'spectra_fused' | 'spectra_hf',
  accumulation?: et.train.TrainerOptions['accumulation'],
  fp16 = false,
  logs: Array<Record<string, number>> = [],
) {
  const model = new Lin();
  await model.loadStateDict({ 'lin.weight': get('spectra_weight0'), 'lin.bias': get('spectra_bias0') });
  const xs = get('spectra_x'),
    ys = get('spectra_y');
  const items = Array.from({ length: 14 }, (_, i) => ({
    x: xs.select(0, Math.floor(i / 2)).select(0, i % 2),
    y: ys.select(0, Math.floor(i / 2)).select(0, i % 2),
  }));
  const s = meta.spectra;
  const groups = et.systems.spectra.spectraParamGroups(model, s.weight_decay);
  const optimizer =
    kind === 'spectra_fused' ? new et.optim.FusedAdam(groups, { lr: s.lr, biasCorrection: false }) : new et.optim.AdamWHF(groups, { lr: s.lr, eps: 1e-8 });
  const trainer = new et.train.Trainer({
    model,
    optimizer,
    accumulation,
    trainDataset: { length: items.length, get: (i: number) => items[i] },
    dataCollator: (b: typeof items) => ({ x: et.stack(b.map((t) => t.x)), y: et.stack(b.map((t) => t.y)) }),
    args: {
      output_dir: path.join(tmpdir(), kind),
      num_train_epochs: 1,
      per_device_train_batch_size: 2,
      gradient_accumulation_steps: s.grad_acc,
      max_grad_norm: s.grad_norm,
      learning_rate: s.lr,
      lr_scheduler_type: 'constant',
      train_sampling_strategy: 'sequential',
      save_strategy: 'no',
      logging_steps: 1,
      disable_tqdm: true,
      report_to: 'none',
      fp16,
    },
  });
  const r = await trainer.train();
  expect(r.globalStep).toBe(3);
  logs.push(...trainer.state.log_history.filter((x) => x.loss !== undefined));
  return Math.max(
    maxAbsDiff(model.lin.stateDict().get('weight')!, get(`${kind}_weight_after6`)),
    maxAbsDiff(model.lin.stateDict().get('bias')!, get(`${kind}_bias_after6`)),
  );
}

describe("SPECTRA main.py's step(): loss / grad_acc in every window, clipping after every micro-batch", () => {
  for (const kind of ['spectra_fused', 'spectra_hf'] as const) {
    it(`${kind === 'spectra_fused' ? 'FusedAdam (--apex_level 1)' : "transformers' AdamW (--apex_level 0)"}: the Trainer with accumulation { clip: 'micro-batch', divisor: 'gradient_accumulation_steps' }`, async () => {
      const d = await spectraRun(kind, { clip: 'micro-batch', divisor: 'gradient_accumulation_steps' });
      const hf = await spectraRun(kind); // HF's accumulation: one clip per step, the short window's loss / 1
      console.log(`${kind}: max |emotorch - main.py| ${d.toExponential(2)} (with HF's accumulation: ${hf.toExponential(2)})`);
      // steps of ~3e-2 (no bias correction: m/√v ≈ 3 at first); float32 rounding of (1 − β) and the clip
      expect(d).toBeLessThan(5e-6);
      expect(hf).toBeGreaterThan(1e-2);
    });
  }

  it('with fp16 (a GradScaler) the clip bound is scaled with the loss: the float32 run within float16 error', async () => {
    // small values, so that 2^16 × the loss's gradients stay finite in float16 (no skipped step)
    et.manualSeed(5);
    const xs = et.randn([14, 4]).mul(0.3),
      ys = et.randn([14, 3]).mul(0.1);
    const run = async (fp16: boolean) => {
      et.manualSeed(6);
      const model = new Lin();
      const trainer = new et.train.Trainer({
        model,
        optimizer: new et.optim.FusedAdam(et.systems.spectra.spectraParamGroups(model, 0.01), { lr: 1e-2, biasCorrection: false }),
        accumulation: { clip: 'micro-batch', divisor: 'gradient_accumulation_steps' },
        trainDataset: { length: 14, get: (i: number) => i },
        dataCollator: (b: number[]) => ({ x: et.stack(b.map((i) => xs.select(0, i))), y: et.stack(b.map((i) => ys.select(0, i))) }),
        args: {
          output_dir: path.join(tmpdir(), `fp16-${fp16}`),
          num_train_epochs: 1,
          per_device_train_batch_size: 2,
          gradient_accumulation_steps: 3,
          max_grad_norm: 0.05,
          learning_rate: 1e-2,
          lr_scheduler_type: 'constant',
          train_sampling_strategy: 'sequential',
          save_strategy: 'no',
          logging_steps: 1,
          disable_tqdm: true,
          report_to: 'none',
          fp16,
        },
      });
      await trainer.train();
      return {
        norms: trainer.state.log_history.filter((x) => x.loss !== undefined).map((x) => x.grad_norm as number),
        w: model.lin.stateDict().get('weight')!,
      };
    };
    const f32 = await run(false),
      f16 = await run(true);
    console.log(
      `fp16 vs float32, micro-batch clipping: grad norms ${f16.norms.map((x) => x.toFixed(4))} vs ${f32.norms.map((x) => x.toFixed(4))}, weights ${maxAbsDiff(f16.w, f32.w).toExponential(2)}`,
    );
    expect(f32.norms.length).toBe(3);
    expect(Math.min(...f32.norms)).toBeGreaterThan(0.05); // every step clipped
    // the logged norm is the unscaled one (before the last micro-batch's clip), as in float32
    f16.norms.forEach((n, i) => expect(Math.abs(n - f32.norms[i])).toBeLessThan(2e-2 * f32.norms[i]));
    expect(maxAbsDiff(f16.w, f32.w)).toBeLessThan(2e-3);
  });

  it('refuses bad accumulation options', () => {
    const model = new Lin();
    throwsWith(() => new et.train.Trainer({ model, accumulation: { clip: 'each' as never } }), 'ERR_INVALID_ARG', /accumulation\.clip/);
    throwsWith(() => new et.train.Trainer({ model, accumulation: { divisor: 4 as never } }), 'ERR_INVALID_ARG', /accumulation\.divisor/);
    throwsWith(() => new et.train.Trainer({ model, accumulation: { clipping: 'step' } as never }), 'ERR_INVALID_ARG', /clipping/);
  });
});

describe("TrainingArguments optim 'adamw_hf' (HF <= 4.3x's default, the SemEval team's)", () => {
  it("the Trainer's default optimizer is then transformers' AdamW (AdamWHF); 'adamw_apex_fused' apex's FusedAdam; else torch's", async () => {
    expect(et.systems.semeval.LANGUAGEBIND_SEMEVAL_ARGS.optim).toBe('adamw_hf');
    const kinds: string[] = [];
    for (const optim of ['adamw_hf', 'adamw_torch', 'adamw_apex_fused']) {
      const model = new Lin();
      const out = path.join(tmpdir(), optim);
      const items = Array.from({ length: 4 }, (_, i) => ({ x: et.full([4], i), y: et.full([3], 1) }));
      await new et.train.Trainer({
        model,
        trainDataset: { length: 4, get: (i: number) => items[i] },
        dataCollator: (b: typeof items) => ({ x: et.stack(b.map((t) => t.x)), y: et.stack(b.map((t) => t.y)) }),
        args: {
          output_dir: out,
          optim,
          max_steps: 1,
          per_device_train_batch_size: 4,
          save_strategy: 'steps',
          save_steps: 1,
          disable_tqdm: true,
          report_to: 'none',
        },
      }).train();
      kinds.push((await et.io.loadSafetensors(path.join(out, 'checkpoint-1', 'optimizer.safetensors'))).metadata.kind);
    }
    expect(kinds).toEqual(['adamw_hf', 'adamw', 'fused_adam']);
  });
});
