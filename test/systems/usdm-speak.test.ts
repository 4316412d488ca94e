// USDM speaks: et.systems.usdm.UsdmSpeaker against the ORIGINAL reconstruct_speech (naver-ai/usdm,
// run by scripts/fixtures/usdm_voicebox.py on tiny weights): 50 Hz units → per-hop frames → the
// Voicebox sampler from the same seed (with the reference's units and 22.05 kHz log-mel in front, and
// without) → BigVGAN → the 22.05 kHz answer; a 44.1 kHz stereo-mixed reference is resampled first;
// bad references and units are refused by name, never NaN audio.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir, usdmToyTokenizer } from '../helpers';

const dir = path.join(FIXTURES, 'usdm_voicebox');
const speaker = () => et.systems.usdm.UsdmSpeaker.fromPretrained(path.join(dir, 'voicebox'), path.join(dir, 'bigvgan'));
const io = async () => (await et.io.loadSafetensors(path.join(dir, 'io.safetensors'))).tensors;

describe('UsdmSpeaker = the original reconstruct_speech', () => {
  it('speaks with and without the reference voice, from the seed the original ran with', async () => {
    const t = await io();
    const s = await speaker();
    const ref = await et.audio.readWav(path.join(dir, 'reference.wav'), { sampleRate: null });
    const agent = t.get('agent_units')!.toArray() as number[];
    const reference = { units: t.get('reference_units')!.toArray() as number[], samples: ref.samples, sampleRate: ref.sampleRate };
    for (const [name, opts] of [
      ['ref', { reference, steps: 7, seed: 10 }],
      ['noref', { steps: 7, seed: 10 }],
      ['demo', { reference, steps: 15, seed: 10 }],
    ] as const) {
      const out = await s.speak(agent, opts);
      const want = t.get(`${name}.waveform`)!;
      expect(out.sampleRate).toBe(22050);
      expect(out.samples.length).toBe(Math.floor((agent.length * 441) / 256) * 256);
      const got = et.tensor(out.samples);
      expect(maxAbsDiff(got, want) / want.abs().max().item(), name).toBeLessThan(1e-4);
    }
  });

  it('Usdm.infer with a speaker: the three stages end in the waveform of the agent units (seeded as speak)', async () => {
    const tokFile = path.join(tmpdir(), 'tokenizer.json');
    usdmToyTokenizer(tokFile);
    const tok = await et.data.Tokenizer.fromFile(tokFile);
    const ids = { newline: 13, space: 28, continue: 100, correspond: 101, unit0: 102, numUnits: 57, pad: 159, bos: 1 };
    const usdm = await et.systems.usdm.Usdm.fromPretrained(path.join(FIXTURES, 'usdm', 'mistral'), { tokenIds: ids });
    const codec = { encode: (x: string) => tok.encode(x, { addSpecialTokens: false }), decode: (x: number[]) => tok.decode(x) };
    const s = await speaker();
    const r = await et.noGrad(() => usdm.infer([3, 3, 17, 50, 2, 9], codec, { maxNewTokens: 12, speaker: s, speak: { steps: 3, seed: 5 } }));
    expect(r.agentUnits.length).toBeGreaterThan(0);
    const alone = await s.speak(r.agentUnits, { steps: 3, seed: 5 });
    expect(r.speech!.sampleRate).toBe(22050);
    expect(maxAbsDiff(et.tensor(r.speech!.samples), et.tensor(alone.samples))).toBeLessThan(1e-6);
    await rejectsWith(usdm.infer([3], codec, { speak: { steps: 3 } }), 'ERR_INVALID_ARG', /speak/);
  });

  it('a reference at 44.1 kHz is resampled to the vocoder rate (torchaudio, as get_mel); the answer stays finite', async () => {
    const t = await io();
    const s = await speaker();
    const ref = await et.audio.readWav(path.join(dir, 'reference.wav'), { sampleRate: 44100 });
    const out = await s.speak(t.get('agent_units')!.toArray() as number[], {
      reference: { units: t.get('reference_units')!.toArray() as number[], samples: ref.samples, sampleRate: 44100 },
      steps: 3,
      seed: 1,
    });
    expect(out.samples.every(Number.isFinite)).toBe(true);
    expect(out.samples.length).toBe(51 * 256);
  });

  it('bad units and references are refused by name', async () => {
    const s = await speaker();
    const ok = { units: [1, 2, 3, 4, 5, 6], samples: new Float32Array(6 * 441).map((_, i) => Math.sin(i / 7) * 0.3), sampleRate: 22050 };
    await rejectsWith(s.speak([]), 'ERR_INVALID_ARG', /units/);
    await rejectsWith(s.speak([1, 2, 57]), 'ERR_INVALID_ARG', /units\[2\]/);
    await rejectsWith(s.speak([1.5]), 'ERR_INVALID_ARG', /units\[0\]/);
    await rejectsWith(s.speak([1, 2], { reference: { ...ok, samples: new Float32Array(6 * 441) } }), 'ERR_INVALID_ARG', /silent/);
    await rejectsWith(s.speak([1, 2], { reference: { ...ok, samples: ok.samples.subarray(0, 300) } }), 'ERR_INVALID_ARG', /fewer than/);
    await rejectsWith(s.speak([1, 2], { reference: { ...ok, samples: ok.samples.map((x, i) => (i === 5 ? NaN : x)) } }), 'ERR_INVALID_ARG', /finite/);
    await rejectsWith(s.speak([1, 2], { reference: { ...ok, sampleRate: 5 } }), 'ERR_INVALID_ARG', /sampleRate/);
    await rejectsWith(s.speak([1, 2], { steps: 0 }), 'ERR_INVALID_ARG', /steps/);
    await rejectsWith(s.speak([1, 2], { stepz: 3 } as never), 'ERR_INVALID_ARG', /stepz/);
  });
});
