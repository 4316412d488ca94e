/**
 * LanguageBind's audio processor against the original's AudioTransform with torchaudio's Kaldi
 * fbank formulas (scripts/fixtures/languagebind_processors.py), and the tensor-op fbank (every
 * window type) against torchaudio's real outputs (test/fixtures/kaldi_fbank).
 */
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { fbankOps, FbankConfig } from '../../lib/audio/fbank';
import { FIXTURES, maxAbsDiff, rejectsWith } from '../helpers';
import { DIR, HAVE_FFMPEG, NO_FFMPEG, META, ref } from '../vision/helpers';

const BASE: FbankConfig = {
  numMelBins: 80,
  sampleRate: 16000,
  frameLength: 25,
  frameShift: 10,
  preemphasis: 0.97,
  lowFreq: 20,
  highFreq: 0,
  removeDcOffset: true,
  usePower: true,
  useLog: true,
  scale: 32768,
  normMean: 0,
  normScale: 1,
  windowType: 'povey',
  blackmanCoeff: 0.42,
};

describe('Kaldi fbank through tensor ops', () => {
  it('matches torchaudio (povey window, 80 and 128 bins) within 1e-3, as the native fbank does', async () => {
    const { tensors } = await et.io.loadSafetensors(path.join(FIXTURES, 'kaldi_fbank', 'cases.safetensors'));
    for (const w of ['a', 'b']) {
      for (const bins of [80, 128]) {
        const wave = tensors.get(`wave_${w}`)!.unsqueeze(0);
        const ours = fbankOps(wave, { ...BASE, numMelBins: bins }).squeeze(0);
        const want = tensors.get(`fbank${bins}_${w}`)!;
        expect(maxAbsDiff(ours, want), `${w} ${bins}`).toBeLessThan(1e-3);
        const native = (await et.audio.kaldiFbank(wave, { numMelBins: bins, scale: 32768 })).squeeze(0);
        expect(maxAbsDiff(ours, native)).toBeLessThan(1e-3);
      }
    }
  });

  it('kaldiFbank({ windowType }) takes the tensor-op path; other windows differ from povey', async () => {
    const x = et.randn([2, 4000]).mul(0.1);
    const povey = await et.audio.kaldiFbank(x, { numMelBins: 23 });
    const hann = await et.audio.kaldiFbank(x, { numMelBins: 23, windowType: 'hanning' });
    expect(hann.shape).toEqual(povey.shape);
    expect(maxAbsDiff(hann, fbankOps(x, { ...BASE, numMelBins: 23, scale: 1, windowType: 'hanning' }))).toBe(0);
    expect(maxAbsDiff(hann, povey)).toBeGreaterThan(0.01);
    for (const windowType of ['hamming', 'rectangular', 'blackman'] as const) {
      expect((await et.audio.kaldiFbank(x, { windowType })).shape).toEqual([2, 23, 23].map((v, i) => (i === 1 ? povey.shape[1] : v)));
    }
    await rejectsWith(et.audio.kaldiFbank(x, { windowType: 'hann' as never }), 'ERR_INVALID_ARG', /windowType/);
  });
});

describe('languageBindAudio', () => {
  const cases = Object.entries(META.audio).filter(([, m]) => m.file.endsWith('.wav'));

  it.each(cases)('%s: within 1e-4 of the original (chunks: first)', async (key, m) => {
    const wav = await et.audio.readAudio(path.join(DIR, m.file), { sampleRate: null });
    const out = await et.audio.languageBindAudio(wav, { numMelBins: m.numMelBins, targetLength: m.targetLength, chunks: 'first' });
    expect(out.shape).toEqual([3, m.numMelBins, m.targetLength]);
    expect(out.dtype).toBe('float32');
    let d: number;
    if (m.targetLength === 1036) {
      d = Math.max(
        maxAbsDiff(out.select(0, 0).slice(0, null, null, 2).slice(1, 0, 210), await ref(`${key}.out_head`)),
        maxAbsDiff(out.slice(2, -5), await ref(`${key}.out_tail`)),
      );
      // T = 198 < 1036: three equal copies of the mel repeated int(1036 / 198) + 1 times
      expect(maxAbsDiff(out.select(0, 1), out.select(0, 0))).toBe(0);
      expect(maxAbsDiff(out.slice(2, 198, 396), out.slice(2, 0, 198))).toBe(0);
    } else {
      d = maxAbsDiff(out, await ref(`${key}.out`));
    }
    console.log(`${key} (T = ${m.frames}): max |diff| ${d.toExponential(2)}`);
    expect(d).toBeLessThan(1e-4);
  });

  it('random chunks: seeded, reproducible, each start inside its third (T = 250, target 100)', async () => {
    const wav = await et.audio.readAudio(path.join(DIR, 'a_T250.wav'));
    const mel = await ref('a_T250.mel'); // (250, 40), normalised
    const thirds = [
      [0, 50],
      [51, 100],
      [101, 150],
    ];
    const seen = new Set<string>();
    for (const seed of [0, 1, 2, 3, 4, 5]) {
      const a = await et.audio.languageBindAudio(wav, { numMelBins: 40, targetLength: 100, seed });
      const b = await et.audio.languageBindAudio(wav, { numMelBins: 40, targetLength: 100, rng: et.data.mulberry32(seed) });
      expect(maxAbsDiff(a, b)).toBe(0);
      const starts = [0, 1, 2].map((k) => {
        const chunk = a.select(0, k).transpose(0, 1); // (100, 40)
        const [lo, hi] = thirds[k];
        for (let s = lo; s <= hi; s++) if (maxAbsDiff(chunk, mel.slice(0, s, s + 100)) < 1e-4) return s;
        return -1;
      });
      expect(
        starts.every((s) => s >= 0),
        `seed ${seed}: starts ${starts}`,
      ).toBe(true);
      seen.add(starts.join());
      const fixed = await et.audio.languageBindAudio(wav, { numMelBins: 40, targetLength: 100, chunks: starts as [number, number, number] });
      expect(maxAbsDiff(fixed, a)).toBe(0);
    }
    expect(seen.size).toBeGreaterThan(1);
  });

  it('checks its input and options', async () => {
    await rejectsWith(et.audio.languageBindAudio(new Float32Array(100)), 'ERR_INVALID_ARG', /at least one frame/);
    await rejectsWith(et.audio.languageBindAudio(new Float32Array(20000), { chunks: 'middle' as never }), 'ERR_INVALID_ARG', /chunks/);
    await rejectsWith(et.audio.languageBindAudio(new Float32Array(40240), { targetLength: 100, chunks: [0, 0, 200] }), 'ERR_INVALID_ARG', /chunks\[2\]/);
    await rejectsWith(et.audio.languageBindAudio(new Float32Array(20000), { windowType: 'povey' } as never), 'ERR_INVALID_ARG', /windowType/);
    await rejectsWith(et.audio.languageBindAudio('a.wav' as never), 'ERR_INVALID_ARG', /Wav/);
  });

  it('a Wav at another rate is resampled to sampleRate first', async () => {
    const wav = await et.audio.readAudio(path.join(DIR, 'a_T250.wav'), { sampleRate: 22050 });
    const out = await et.audio.languageBindAudio(wav, { numMelBins: 40, targetLength: 100, chunks: 'first' });
    const want = await ref('a_T250.out');
    expect(out.shape).toEqual(want.shape);
    // 16 → 22.05 → 16 kHz through torchaudio's resampler (the original's; rolloff 0.99 of 8 kHz) empties the top bins; below 6.5 kHz close
    const low = maxAbsDiff(out.slice(1, 0, 34), want.slice(1, 0, 34));
    console.log(`resampled 22.05 kHz input: max |diff| ${low.toExponential(2)} on the 34 bins below 6.5 kHz, ${maxAbsDiff(out, want).toFixed(3)} on all 40`);
    expect(low).toBeLessThan(0.02);
  });

  it.skipIf(!HAVE_FFMPEG)(
    `the AAC track of an mp4 (read by ffmpeg) is within 1e-3 of PyAV's decode through the original (skipped when ${NO_FFMPEG})`,
    async () => {
      const m = META.audio.v97x61_7fps_audio;
      const wav = await et.audio.readAudio(path.join(DIR, m.file), { sampleRate: null });
      expect(wav.samples.length).toBe(m.samples);
      const out = await et.audio.languageBindAudio(wav, { chunks: 'first' });
      const d = maxAbsDiff(
        out
          .select(0, 0)
          .slice(0, null, null, 4)
          .slice(1, 0, m.frames + 4),
        await ref('v97x61_7fps_audio.out_head'),
      );
      console.log(`mp4 AAC track (T = ${m.frames}): max |diff| ${d.toExponential(2)}`);
      // The two AAC decoders (the ffmpeg on PATH, PyAV's own FFmpeg) differ by ~5e-8 in samples, which a
      // pure tone's near-empty bins magnify: 3.9e-4 measured with ffmpeg 5.1 against PyAV 18.1.
      expect(d).toBeLessThan(1e-3);
    },
  );
});
