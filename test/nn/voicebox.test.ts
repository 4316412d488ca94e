// USDM's unit-to-speech decoder against the ORIGINAL code (naver-ai/usdm src/decoder/voicebox, run by
// scripts/fixtures/usdm_voicebox.py on tiny random weights in the released layouts): the estimator's
// velocity, the Heun sampler's mel after each step and at the end (with and without a reference
// prompt and guidance; the original's recorded noise passed in, and again drawn from the same seed),
// process_unit's per-hop units, get_mel's log-mel, BigVGAN's waveform and the whole spoken answer.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith } from '../helpers';

const dir = path.join(FIXTURES, 'usdm_voicebox');
const io = async () => (await et.io.loadSafetensors(path.join(dir, 'io.safetensors'))).tensors;
const rel = (a: et.Tensor, b: et.Tensor): number => maxAbsDiff(a, b) / b.abs().max().item();
const MEL_MEAN = -5.5419,
  MEL_STD = 2.1575;

describe('Voicebox and BigVGAN = the original USDM decoder', () => {
  it('the estimator: one velocity of a padded batch', async () => {
    const t = await io();
    const vb = await et.nn.Voicebox.fromPretrained(path.join(dir, 'voicebox'));
    const { velocity } = await et.noGrad(() =>
      vb.forward({
        units: t.get('velocity.units')!,
        noisyMel: t.get('velocity.noisy')!,
        cond: t.get('velocity.cond')!,
        t: t.get('velocity.t')!,
        lengths: et.tensor([20, 14], { dtype: 'int64' }),
      }),
    );
    expect(rel(velocity, t.get('velocity')!)).toBeLessThan(1e-4);
  });

  for (const [name, steps, guidance] of [
    ['ref', 7, 1],
    ['noref', 7, 1],
    ['demo', 15, 1],
  ] as const) {
    it(`the sampler (${name}: n_timesteps ${steps}, guidance ${guidance}): the mel after each step and at the end`, async () => {
      const t = await io();
      const vb = await et.nn.Voicebox.fromPretrained(path.join(dir, 'voicebox'));
      const units = t.get(`${name}.units`)!.reshape([1, -1]);
      const cond = t.get(`${name}.cond`)!;
      const promptLength = name === 'noref' ? 0 : t.get('reference_mel')!.shape[2];
      const { mel, states } = await vb.generate(units, { cond, promptLength, steps, guidance, noise: t.get(`${name}.noise`)! });
      expect(rel(mel, t.get(`${name}.mel`)!)).toBeLessThan(1e-4);
      const want = t.get(`${name}.states`)!;
      expect(states.shape[0]).toBe(want.shape[0] + 1);
      for (let k = 0; k < want.shape[0]; k++) expect(rel(states.select(0, k), want.select(0, k))).toBeLessThan(1e-4);
      // the same draws from the same seed (torch.manual_seed(10) before the original's generate)
      const seeded = await vb.generate(units, { cond, promptLength, steps, guidance, seed: 10 });
      expect(rel(seeded.mel, t.get(`${name}.mel`)!)).toBeLessThan(1e-4);
    });
  }

  it('without guidance (gradient_scale 0)', async () => {
    const t = await io();
    const vb = await et.nn.Voicebox.fromPretrained(path.join(dir, 'voicebox'));
    const { mel } = await vb.generate(t.get('noref.units')!.reshape([1, -1]), { steps: 7, guidance: 0, noise: t.get('noguide.noise')! });
    expect(rel(mel, t.get('noguide.mel')!)).toBeLessThan(1e-4);
  });

  it("process_unit: 50 Hz units to 22.05 kHz hop-256 frames by each hop's most frequent unit (ties to the smaller)", async () => {
    const t = await io();
    const units = t.get('long_units')!.toArray() as number[];
    const { frames, samples } = et.nn.unitsToFrames(units);
    expect(frames).toEqual(t.get('long_frames')!.toArray());
    expect(samples).toBe(frames.length * 256);
  });

  it("get_mel: the reference's log-mel (22.05 kHz, cut to its units' span)", async () => {
    const t = await io();
    const wav = await et.audio.readWav(path.join(dir, 'reference.wav'), { sampleRate: null });
    expect(wav.sampleRate).toBe(22050);
    const want = t.get('reference_mel')!;
    const samples = want.shape[2] * 256;
    const mel = await et.audio.vocoderLogMel(et.tensor(wav.samples.subarray(0, samples)).reshape([1, -1]).clamp(-1, 1));
    expect(maxAbsDiff(mel, want)).toBeLessThan(1e-3);
  });

  it('BigVGAN: the released layout (weight_g / weight_v under "generator") loads and decodes as the original', async () => {
    const t = await io();
    const gan = await et.nn.BigVGAN.fromPretrained(path.join(dir, 'bigvgan'));
    const { waveform } = await et.noGrad(() => gan.forward({ mel: t.get('vocoder.mel')! }));
    expect(waveform.shape).toEqual([1, 1, 9 * 256]);
    expect(rel(waveform, t.get('vocoder.waveform')!)).toBeLessThan(1e-4);
  });

  it('BigVGAN with AMPBlock2 and plain Snake (alpha not log-scaled) decodes as the original, in inference and with a graph', async () => {
    const d = path.join(dir, 'bigvgan_snake');
    const t = (await et.io.loadSafetensors(path.join(d, 'io.safetensors'))).tensors;
    const gan = await et.nn.BigVGAN.fromPretrained(d);
    expect(gan.config).toMatchObject({ resblock: '2', activation: 'snake', snake_logscale: false });
    const want = t.get('waveform')!;
    // inference (the fused activation on the CPU) and with autograd recording (ATen's ops)
    const { waveform } = await et.noGrad(() => gan.forward({ mel: t.get('mel')! }));
    expect(waveform.shape).toEqual([1, 1, 11 * 256]);
    expect(rel(waveform, want)).toBeLessThan(1e-4);
    const graphed = (await gan.forward({ mel: t.get('mel')! })).waveform;
    expect(graphed.requiresGrad).toBe(true);
    expect(rel(graphed.detach(), want)).toBeLessThan(1e-4);
  });

  it('the whole answer (reconstruct_speech): units → mel → 22.05 kHz waveform', async () => {
    const t = await io();
    const vb = await et.nn.Voicebox.fromPretrained(path.join(dir, 'voicebox'));
    const gan = await et.nn.BigVGAN.fromPretrained(path.join(dir, 'bigvgan'));
    for (const name of ['ref', 'noref'] as const) {
      const P = name === 'ref' ? t.get('reference_mel')!.shape[2] : 0;
      const { mel } = await vb.generate(t.get(`${name}.units`)!.reshape([1, -1]), {
        cond: t.get(`${name}.cond`)!,
        promptLength: P,
        steps: 7,
        noise: t.get(`${name}.noise`)!,
      });
      const answer = mel.slice(2, P).mul(MEL_STD).add(MEL_MEAN);
      const { waveform } = await et.noGrad(() => gan.forward({ mel: answer }));
      expect(rel(waveform.flatten().clamp(-1, 1), t.get(`${name}.waveform`)!)).toBeLessThan(1e-4);
    }
  });

  it('in bfloat16 and float16 (the released weights cast as loaded): the mel and waveform stay close to the original float32 run', async () => {
    const t = await io();
    const units = t.get('noref.units')!.reshape([1, -1]);
    const cos = (a: et.Tensor, b: et.Tensor) => {
      const x = a.to({ dtype: 'float32' }).flatten(),
        y = b.flatten();
      return x.mul(y).sum().item() / Math.sqrt(x.square().sum().item() * y.square().sum().item());
    };
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const vb = await et.nn.Voicebox.fromPretrained(path.join(dir, 'voicebox'), { dtype });
      const gan = await et.nn.BigVGAN.fromPretrained(path.join(dir, 'bigvgan'), { dtype });
      const { mel } = await vb.generate(units, { steps: 7, noise: t.get('noref.noise')!.to({ dtype }), cond: et.zeros([1, 80, units.shape[1]], { dtype }) });
      expect(mel.dtype).toBe(dtype);
      // measured: bfloat16 0.99998 / 0.99896, float16 1.00000 / 1.00000
      expect(cos(mel, t.get('noref.mel')!), dtype).toBeGreaterThan(0.999);
      const { waveform } = await et.noGrad(() => gan.forward({ mel: mel.mul(MEL_STD).add(MEL_MEAN) }));
      expect(cos(waveform, t.get('noref.waveform')!), dtype).toBeGreaterThan(0.99);
    }
  });

  it('bad input is refused by name', async () => {
    const vb = await et.nn.Voicebox.fromPretrained(path.join(dir, 'voicebox'));
    await rejectsWith(vb.generate([1, 2, 58]), 'ERR_INVALID_ARG', /unit ids from 0 to 57/);
    await rejectsWith(vb.generate([1, 2, -1]), 'ERR_INVALID_ARG', /unit ids/);
    await rejectsWith(vb.generate([]), 'ERR_INVALID_ARG', /one row of at least one frame/);
    await rejectsWith(vb.generate(new Array(et.nn.VOICEBOX_MAX_FRAMES + 1).fill(1)), 'ERR_INVALID_ARG', /at most 4096 frames/);
    await rejectsWith(vb.generate([1, 2, 3], { steps: 0 }), 'ERR_INVALID_ARG', /opts\.steps/);
    await rejectsWith(vb.generate([1, 2, 3], { steps: 1e9 }), 'ERR_INVALID_ARG', /opts\.steps/);
    await rejectsWith(vb.generate([1, 2, 3], { guidance: NaN }), 'ERR_INVALID_ARG', /opts\.guidance/);
    await rejectsWith(vb.generate([1, 2, 3], { promptLength: 3 }), 'ERR_INVALID_ARG', /opts\.promptLength/);
    await rejectsWith(vb.generate([1, 2, 3], { noise: et.zeros([2, 1, 80, 3]) }), 'ERR_INVALID_ARG', /opts\.noise/);
    await rejectsWith(vb.generate([1, 2, 3], { noise: et.full([1, 1, 80, 3], NaN) }), 'ERR_INVALID_ARG', /opts\.noise/);
    await rejectsWith(vb.generate([1, 2, 3], { cond: et.full([1, 80, 3], NaN), promptLength: 1 }), 'ERR_INVALID_ARG', /opts\.cond/);
    await expect(et.nn.BigVGAN.fromPretrained(dir)).rejects.toMatchObject({ code: 'ERR_IO' });
    expect(() => et.nn.BigVGAN.create({ upsample_kernel_sizes: [8, 8, 4, 4, 4, 3] })).toThrow(/upsample_kernel_sizes\[5\]/);
    expect(() => et.nn.Voicebox.create({ num_hidden_layers: 3 })).toThrow(/num_hidden_layers/);
  });
});
