// SPECTRA pre-training against the ORIGINAL code: scripts/fixtures/spectra_pretrain_model.py runs
// AlibabaResearch/DAMO-ConvAI's ATForPreTraining (with create_mam_samples), PretrainDataset and
// DataCollatorForPreTraining on a tiny random model. Given its batch and its masked acoustic frames,
// the four losses, every gradient and every parameter after one main.py optimizer step agree
// within 1e-4 of each tensor's largest value.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir, rejectsWith } from '../helpers';

const DIR = path.join(FIXTURES, 'spectra_pretrain_model');
const choices = JSON.parse(fs.readFileSync(path.join(DIR, 'choices.json'), 'utf8')) as { mam: et.systems.spectra.SpectraMamClip[] };
let io: Map<string, et.Tensor>;
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(DIR, 'io.safetensors'))).tensors;
});

/** Our parameter names → the original's (weight norm as weight_g / weight_v). */
const original = (k: string) => k.replace('parametrizations.weight.original0', 'weight_g').replace('parametrizations.weight.original1', 'weight_v');

function batch(): et.systems.spectra.SpectraPretrainInputs {
  const g = (n: string) => io.get(`batch.${n}`)!;
  return {
    audio: g('audio'),
    audioAttentionMask: g('audio_mask'),
    textInput: g('text'),
    mlmLabel: g('mlm_label'),
    textAttentionMask: g('text_mask'),
    startValid: g('start_valid').to({ dtype: 'bool' }),
    endValid: g('end_valid').to({ dtype: 'bool' }),
    turnId: g('turn_id'),
    starts: g('starts'),
    ends: g('ends'),
  };
}

/** max |a − b| ≤ tol · max |b|: the failures, named. */
function compare(got: et.Tensor, want: et.Tensor, name: string, tol = 1e-4): string[] {
  if (got.shape.join() !== want.shape.join()) return [`${name}: shape [${got.shape}] vs [${want.shape}]`];
  const a = got.to({ dtype: 'float64' }).dataSync() as Float64Array,
    b = want.to({ dtype: 'float64' }).dataSync() as Float64Array;
  let diff = 0,
    top = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    top = Math.max(top, Math.abs(b[i]));
  }
  return diff <= tol * Math.max(top, 1e-12) ? [] : [`${name}: max diff ${diff} vs max ${top}`];
}
const maxAbs = (t: et.Tensor) => t.abs().max().item();

describe('SpectraForPreTraining = the original ATForPreTraining', () => {
  it('losses, every gradient and the parameters after one optimizer step as main.py sets it up', async () => {
    const model = await et.systems.spectra.SpectraForPreTraining.fromPretrained(path.join(DIR, 'pretrained'));
    model.eval(); // the fixture's dropout is off
    const out = await model.forward({ ...batch(), mam: choices.mam });
    const bad: string[] = [];
    for (const k of ['mlm', 'mam', 'rs', 'span'] as const) bad.push(...compare(out[`${k}Loss`].reshape([1]), io.get(`loss.${k}`)!, `${k} loss`));
    expect(bad).toEqual([]);
    await out.loss.backward();
    // Gradients that are zero in exact arithmetic (softmax ignores a key bias; the group norm after
    // the first conv cancels its bias) are rounding noise on both sides: checked to be below 1e-6 of
    // the largest gradient, and left out of the step (Adam moves a weight by about lr whatever its
    // gradient's size, so noise moves it by ±lr). Every other tensor: within 1e-4 of its own largest value.
    const ZERO = /(k_proj|self\.key)\.bias$|conv_layers\.0\.conv\.bias$/;
    const grads = [...io.entries()].filter(([k]) => k.startsWith('grad.'));
    const floor = Math.max(...grads.map(([, t]) => maxAbs(t)));
    const before = new Map(model.namedParameters().map(([k, p]) => [k, p.detach().clone()]));
    let n = 0;
    for (const [k, p] of model.namedParameters()) {
      const want = io.get(`grad.${original(k)}`);
      if (!want) {
        if (p.grad !== null && maxAbs(p.grad) !== 0) bad.push(`${k} has a gradient the original has not`);
        continue;
      }
      n++;
      if (ZERO.test(k)) {
        if (Math.max(maxAbs(p.grad!), maxAbs(want)) > 1e-6 * floor) bad.push(`grad ${k} is not rounding noise`);
        continue;
      }
      bad.push(...compare(p.grad!, want, `grad ${k}`));
    }
    expect(bad).toEqual([]);
    expect(n).toBe(grads.length);
    expect(model.namedParameters().filter(([k]) => ZERO.test(k)).length).toBe(6); // 2 WavLM + 2 RoBERTa + 1 fused key bias, the conv bias
    // main.py without apex: transformers 4.x's AdamW (eps 1e-8), the groups' weight decay
    const opt = new et.optim.AdamWHF(et.systems.spectra.spectraParamGroups(model, 0.01), { lr: 1e-3, eps: 1e-8 });
    await opt.clipGradNorm(1.0);
    await opt.step();
    for (const [k, p] of model.namedParameters()) {
      if (ZERO.test(k)) continue;
      const b = before.get(k)!,
        want = io.get(`after.${original(k)}`)!;
      bad.push(...compare(p, want, `after ${k}`));
      // and the step's change (about lr) on its own, within 1e-3 of its largest value (4e-4 seen):
      // Adam's first step turns a 1e-6 relative gradient difference into more where |g| is near eps.
      // torch's AdamW (eps after the bias correction) is off by up to 0.55 of the step here.
      bad.push(...compare(p.sub(b), want.sub(b), `step of ${k}`, 1e-3));
    }
    expect(bad).toEqual([]);
  });

  it('saves the layout ATForPreTraining saves: it loads back, and into Spectra for fine-tuning', async () => {
    const model = await et.systems.spectra.SpectraForPreTraining.fromPretrained(path.join(DIR, 'pretrained'));
    const dir = path.join(tmpdir(), 'spectra-pre');
    await model.savePretrained(dir);
    const keys = [...(await et.io.loadSafetensors(path.join(dir, 'model.safetensors'))).tensors.keys()].map(original).sort();
    // the original's state dict: every parameter of ATForPreTraining, the tied biases under both names
    const want = [...io.keys()]
      .filter((k) => k.startsWith('after.'))
      .map((k) => k.slice(6))
      .concat(['mlm_head.decoder.bias', 'mam_head.decoder.bias'])
      .sort();
    expect(keys).toEqual(want);
    const again = await et.systems.spectra.SpectraForPreTraining.fromPretrained(dir);
    expect(again.loadInfo.initialized).toEqual([]);
    for (const [k, p] of again.namedParameters()) expect(maxAbs(p.sub(model.namedParameters().find(([n]) => n === k)![1])), k).toBe(0);
    const cls = await et.systems.spectra.Spectra.fromPretrained(dir, { task: 'iemocap' });
    expect(cls.loadInfo.skipped.length).toBe(20); // the five heads' 18 parameters and the two tied biases' second names
    expect(cls.loadInfo.initialized.sort()).toEqual(['head.0.bias', 'head.0.weight', 'head.2.bias', 'head.2.weight']);
  });

  it('draws the masked frames as the original does: spans of 20-50 frames, 80 % zeroed / 10 % replaced / 10 % kept, seeded, and replays them', async () => {
    let r = 0;
    const seeded = () => {
      r = (r * 16807 + 11) % 2147483647;
      return r / 2147483647;
    };
    const clips = Array.from({ length: 400 }, () => et.systems.spectra.drawSpectraMam(499, seeded));
    let zeroed = 0,
      replaced = 0,
      kept = 0;
    for (const c of clips) {
      expect(c.frames.length).toBe(c.action.length);
      // consecutive runs of one span length, none past frame 499 - span - 1 + span
      const runs: number[][] = [];
      c.frames.forEach((f, j) => (j > 0 && f === c.frames[j - 1] + 1 && runs[runs.length - 1].length < 50 ? runs[runs.length - 1].push(f) : runs.push([f])));
      for (const a of c.action) a === -1 ? zeroed++ : a === -2 ? kept++ : replaced++;
      expect(c.frames.every((f) => f < 498)).toBe(true);
      expect(c.action.every((a) => a >= -2 && a < 499)).toBe(true);
    }
    const n = zeroed + replaced + kept;
    expect(zeroed / n).toBeGreaterThan(0.77);
    expect(zeroed / n).toBeLessThan(0.83);
    expect(replaced / n).toBeGreaterThan(0.08);
    expect(kept / n).toBeGreaterThan(0.08);
    // about 15 % of the walk's steps start a span: roughly a third to a half of the frames are masked
    const share = n / (400 * 499);
    expect(share).toBeGreaterThan(0.3);
    expect(share).toBeLessThan(0.75);
    // a clip no longer than a span has none
    expect(et.systems.spectra.drawSpectraMam(20, seeded)).toEqual({ frames: [], action: [] });

    const model = await et.systems.spectra.SpectraForPreTraining.fromPretrained(path.join(DIR, 'pretrained'), { seed: 4 });
    model.eval();
    const a = await model.forward(batch());
    const b = await model.forward({ ...batch(), mam: a.mam });
    expect(b.loss.item()).toBeCloseTo(a.loss.item(), 5);
    expect(a.mam.length).toBe(9);
    const again = await (await et.systems.spectra.SpectraForPreTraining.fromPretrained(path.join(DIR, 'pretrained'), { seed: 4 })).forward(batch());
    expect(again.mam).toEqual(a.mam);
    // the fixed fused mask changes the numbers; the tiled one is the original's
    const fixed = await (
      await et.systems.spectra.SpectraForPreTraining.fromPretrained(path.join(DIR, 'pretrained'), { tiledFusedMask: false })
    ).forward({ ...batch(), mam: choices.mam });
    expect(Math.abs(fixed.rsLoss.item() - io.get('loss.rs')!.item())).toBeGreaterThan(1e-4);
    expect(Number.isFinite(fixed.loss.item())).toBe(true);
  });

  it('nothing masked, no word: the losses are 0 without NaN; bad inputs are coded errors', async () => {
    const model = await et.systems.spectra.SpectraForPreTraining.fromPretrained(path.join(DIR, 'pretrained'));
    const none = choices.mam.map(() => ({ frames: [], action: [] }));
    const base = batch();
    const B = base.mlmLabel.shape[0],
      L = base.mlmLabel.shape[1];
    const out = await model.forward({
      ...base,
      mam: none,
      mlmLabel: et.full([B, L], -100, { dtype: 'int64' }),
      startValid: et.zeros([B, L], { dtype: 'bool' }),
      endValid: et.zeros([B, L], { dtype: 'bool' }),
      starts: et.zeros([0]),
      ends: et.zeros([0]),
    });
    expect([out.mlmLoss.item(), out.mamLoss.item(), out.spanLoss.item()]).toEqual([0, 0, 0]);
    expect(Number.isFinite(out.loss.item())).toBe(true);
    await out.loss.backward();

    await rejectsWith(model.forward({ ...base, mam: choices.mam.slice(1) }), 'ERR_INVALID_ARG', /9 clips' masked frames/);
    await rejectsWith(
      model.forward({ ...base, mam: choices.mam.map((c, i) => (i === 2 ? { frames: [9999], action: [-1] } : c)) }),
      'ERR_INVALID_ARG',
      /mam\[2\]\.frames\[0\]/,
    );
    await rejectsWith(model.forward({ ...base, starts: base.starts.slice(0, 0, 2) }), 'ERR_INVALID_ARG', /one start per startValid flag/);
    // a collate with RoBERTa's default <mask> (50264) against a 60-token model
    await rejectsWith(
      model.forward({ ...base, textInput: base.textInput.maskedFill(base.textInput.eq(5), 50264) }),
      'ERR_INVALID_ARG',
      /token ids in 0\.\.59 .*give it the tokenizer/,
    );
    await rejectsWith(
      model.forward({ ...base, audio: base.audio.slice(0, 0, 6), audioAttentionMask: base.audioAttentionMask.slice(0, 0, 6) }),
      'ERR_INVALID_ARG',
      /9 clips/,
    );
    const emptyResp = et.cat([base.audioAttentionMask.slice(0, 0, 4), et.zeros([1, base.audio.shape[1]]), base.audioAttentionMask.slice(0, 5)], 0);
    await rejectsWith(model.forward({ ...base, audioAttentionMask: emptyResp }), 'ERR_INVALID_ARG', /response audio of sample 1/);
  });
});
