import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith } from '../helpers';

let mel: Map<string, et.Tensor>;
let kaldi: Map<string, et.Tensor>;
let beats: Map<string, et.Tensor>;
beforeAll(async () => {
  mel = (await et.io.loadSafetensors(path.join(FIXTURES, 'whisper_mel', 'cases.safetensors'))).tensors;
  kaldi = (await et.io.loadSafetensors(path.join(FIXTURES, 'kaldi_fbank', 'cases.safetensors'))).tensors;
  beats = (await et.io.loadSafetensors(path.join(FIXTURES, 'beats', 'inputs.safetensors'))).tensors;
});
const m = (k: string) => mel.get(k)!;

describe('whisperLogMel equals transformers WhisperFeatureExtractor', () => {
  it('pads a batch to 30 s (80 bins)', async () => {
    const a = m('wave_a');
    const b = m('wave_b');
    const batch = et.stack([et.cat([a, et.zeros([b.shape[0] - a.shape[0]])]), b]);
    // Padding the shorter clip with zeros first is what the extractor does too.
    const out = await et.audio.whisperLogMel(batch);
    expect(out.shape).toEqual([2, 80, 3000]);
    expect(maxAbsDiff(out.slice(2, 0, 256), m('mel80_head'))).toBeLessThan(1e-3);
    expect(maxAbsDiff(out.slice(2, -64), m('mel80_tail'))).toBeLessThan(1e-3);
  });
  it('computes 128 bins (large-v3)', async () => {
    const out = await et.audio.whisperLogMel(m('wave_b'), { nMels: 128 });
    expect(out.shape).toEqual([1, 128, 3000]);
    expect(maxAbsDiff(out.slice(2, 0, 256), m('mel128_head'))).toBeLessThan(1e-3);
    expect(maxAbsDiff(out.slice(2, -64), m('mel128_tail'))).toBeLessThan(1e-3);
  });
  it('keeps the real length when asked', async () => {
    const out = await et.audio.whisperLogMel(m('wave_b'), { padTo30s: false });
    expect(out.shape).toEqual([1, 80, 500]);
    expect(maxAbsDiff(out, m('mel80_unpadded_b'))).toBeLessThan(1e-3);
  });
  it('cuts clips longer than 30 s', async () => {
    const n = 31 * 16000;
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) w[i] = 0.5 * Math.sin((2 * Math.PI * 440 * i) / 16000) * (1 + 0.5 * Math.sin((2 * Math.PI * 3 * i) / 16000));
    const out = await et.audio.whisperLogMel(w);
    expect(out.shape).toEqual([1, 80, 3000]);
    expect(maxAbsDiff(out.slice(2, 0, 64), m('long_head'))).toBeLessThan(1e-3);
    expect(maxAbsDiff(out.slice(2, -64), m('long_tail'))).toBeLessThan(1e-3);
  });
  it('rejects bad input clearly', async () => {
    await rejectsWith(() => et.audio.whisperLogMel(et.zeros([2, 3, 4])), 'ERR_INVALID_ARG', /\(samples\) or \(batch, samples\)/);
    await rejectsWith(() => et.audio.whisperLogMel(et.zeros([1, 100]), { padTo30s: false }), 'ERR_INVALID_ARG', /more than 200 samples/);
    await rejectsWith(() => et.audio.whisperLogMel(et.zeros([1, 1000], { dtype: 'int64' })), 'ERR_INVALID_ARG', /floating-point waveform/);
    await rejectsWith(() => et.audio.whisperLogMel(et.zeros([1, 1000]), { nMels: 0 }), 'ERR_INVALID_ARG', /nMels/);
  });
});

describe('kaldiFbank equals torchaudio.compliance.kaldi.fbank', () => {
  for (const w of ['a', 'b']) {
    for (const bins of [128, 80]) {
      it(`wave_${w}, ${bins} bins`, async () => {
        const out = await et.audio.kaldiFbank(kaldi.get(`wave_${w}`)!, { numMelBins: bins, scale: 32768 });
        const ref = kaldi.get(`fbank${bins}_${w}`)!;
        expect(maxAbsDiff(out.squeeze(0), ref)).toBeLessThan(1e-3);
      });
    }
  }
  it('gives BEATs its normalized input, batched', async () => {
    const out = await et.audio.kaldiFbank(beats.get('waveform')!, { beats: true });
    expect(out.shape).toEqual([2, 135, 128]);
    expect(maxAbsDiff(out, beats.get('fbank')!)).toBeLessThan(1e-3);
  });
  it('rejects a clip shorter than one frame', async () => {
    await rejectsWith(() => et.audio.kaldiFbank(et.zeros([1, 300])), 'ERR_INVALID_ARG', /at least one frame \(400 samples\)/);
  });
});
