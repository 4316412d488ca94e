import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import * as fs from 'fs';
import * as path from 'path';
import { throwsWith, FIXTURES } from '../helpers';

const sine = (f: number, rate: number, seconds: number, amp = 0.5): Float32Array =>
  Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => amp * Math.sin((2 * Math.PI * f * i) / rate));

/** Amplitude and phase of frequency f in x (least squares over the middle, edges excluded). */
function tone(x: Float32Array, f: number, rate: number): number {
  const a = Math.floor(x.length * 0.2),
    b = Math.floor(x.length * 0.8);
  let c = 0,
    s = 0;
  for (let i = a; i < b; i++) {
    c += x[i] * Math.cos((2 * Math.PI * f * i) / rate);
    s += x[i] * Math.sin((2 * Math.PI * f * i) / rate);
  }
  return (2 * Math.hypot(c, s)) / (b - a);
}
function rms(x: Float32Array): number {
  const a = Math.floor(x.length * 0.2),
    b = Math.floor(x.length * 0.8);
  let s = 0;
  for (let i = a; i < b; i++) s += x[i] * x[i];
  return Math.sqrt(s / (b - a));
}

describe('resample', () => {
  it('keeps a 1 kHz tone through 44.1 kHz → 16 kHz (amplitude within 1%, same frequency)', () => {
    const x = sine(1000, 44100, 0.5);
    const y = et.audio.resample(x, 44100, 16000);
    expect(y.length).toBe(Math.ceil((x.length * 16000) / 44100));
    const amp = tone(y, 1000, 16000);
    expect(Math.abs(amp - 0.5) / 0.5).toBeLessThan(0.01);
    // all the energy is at 1 kHz: residual after removing the fitted tone is tiny
    expect(tone(y, 1010, 16000)).toBeLessThan(0.01);
    expect(Math.abs(rms(y) - 0.5 / Math.SQRT2)).toBeLessThan(0.005);
    console.log(`1 kHz 44.1k→16k amplitude error ${((Math.abs(amp - 0.5) / 0.5) * 100).toFixed(4)}%`);
  });

  it('attenuates a 12 kHz tone (above the new Nyquist) by at least 40 dB', () => {
    const x = sine(12000, 44100, 0.5);
    const y = et.audio.resample(x, 44100, 16000);
    const db = 20 * Math.log10(rms(y) / rms(x));
    console.log(`12 kHz 44.1k→16k attenuation ${db.toFixed(1)} dB`);
    expect(db).toBeLessThan(-40);
    // and the alias band right past Nyquist (8.5 kHz) too
    const z = et.audio.resample(sine(8500, 44100, 0.5), 44100, 16000);
    const db2 = 20 * Math.log10(rms(z) / rms(sine(8500, 44100, 0.5)));
    console.log(`8.5 kHz 44.1k→16k attenuation ${db2.toFixed(1)} dB`);
    expect(db2).toBeLessThan(-40);
  });

  it('passes 7 kHz (0.875 of the new Nyquist) within 0.1 dB', () => {
    const y = et.audio.resample(sine(7000, 44100, 0.5), 44100, 16000);
    const db = 20 * Math.log10(tone(y, 7000, 16000) / 0.5);
    console.log(`7 kHz passband gain ${db.toFixed(4)} dB`);
    expect(Math.abs(db)).toBeLessThan(0.1);
  });

  it('is the identity for equal rates and upsamples 8 kHz → 16 kHz cleanly', () => {
    const x = sine(300, 16000, 0.1);
    const y = et.audio.resample(x, 16000, 16000);
    expect(y).toEqual(x);
    expect(y).not.toBe(x);
    const u = et.audio.resample(sine(1000, 8000, 0.5), 8000, 16000);
    expect(u.length).toBe(8000);
    expect(Math.abs(tone(u, 1000, 16000) - 0.5)).toBeLessThan(0.005);
    // an upsampled signal sits on the original samples at even indices
    const v = sine(1000, 8000, 0.5);
    let m = 0;
    for (let i = 1000; i < 3000; i++) m = Math.max(m, Math.abs(u[2 * i] - v[i]));
    expect(m).toBeLessThan(1e-3);
  });

  it('handles odd ratios (44.1k → 16.001k) and empty input, and validates', () => {
    const y = et.audio.resample(sine(1000, 44100, 0.1), 44100, 16001);
    expect(y.length).toBe(Math.ceil((4410 * 16001) / 44100));
    expect(Math.abs(tone(y, 1000, 16001) - 0.5)).toBeLessThan(0.005);
    expect(et.audio.resample(new Float32Array(0), 44100, 16000).length).toBe(0);
    throwsWith(() => et.audio.resample(new Float32Array(4), 0, 16000), 'ERR_INVALID_ARG', /for fromRate/);
    throwsWith(() => et.audio.resample(new Float32Array(4), 8000, 16000, { rolloff: 2 }), 'ERR_INVALID_ARG', /for rolloff/);
  });
});

// scripts/fixtures/resample_soxr.py: librosa.resample (python-soxr 1.1.0; res_type 'fft': scipy) on clips at the rates
// datasets ship (22.05, 44.1, 48, 8 kHz; 16 → 22.05 kHz), odd lengths, energy at 7–8 kHz.
describe("resample { method: 'soxr_*' | 'fft' } = librosa.resample (libsoxr; scipy.signal.resample)", () => {
  const dir = path.join(FIXTURES, 'resample');
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'soxr.json'), 'utf8')) as {
    cases: Array<{ from: number; to: number; method: 'soxr_hq'; n: number; out: number }>;
  };
  it("gives librosa's samples (length ceil(n · to / from)) for each rate and quality", async () => {
    expect(et.audio.soxrStatus().available, et.audio.soxrStatus().why).toBe(true);
    const t = (await et.io.loadSafetensors(path.join(dir, 'soxr.safetensors'))).tensors;
    for (const [i, c] of meta.cases.entries()) {
      const x = t.get(`x.${i}`)!.dataSync() as Float32Array,
        want = t.get(`y.${i}`)!.dataSync() as Float32Array;
      expect(x.length).toBe(c.n);
      const y = et.audio.resample(x, c.from, c.to, { method: c.method });
      expect(y.length, `case ${i}`).toBe(want.length);
      let err = 0;
      for (let k = 0; k < y.length; k++) err = Math.max(err, Math.abs(y[k] - want[k]));
      expect(err, `case ${i}: ${c.from} → ${c.to} ${c.method}`).toBeLessThan(1e-5);
      // emotorch's sinc filter is another resampler: it differs where soxr's passband ends
      if (c.method === 'soxr_hq' && c.from > c.to) {
        const sinc = et.audio.resample(x, c.from, c.to);
        let d = 0;
        for (let k = 0; k < y.length; k++) d = Math.max(d, Math.abs(sinc[k] - want[k]));
        expect(d, `case ${i}`).toBeGreaterThan(1e-3);
      }
    }
  });
  it("takes readWav's resample option and refuses options that do not apply", () => {
    const x = sine(440, 22050, 0.1);
    const wav = et.audio.decodeWav(et.audio.encodeWav(x, 22050), { sampleRate: 16000, resample: { method: 'soxr_hq' } });
    expect(wav.samples).toEqual(
      et.audio.resample(et.audio.decodeWav(et.audio.encodeWav(x, 22050), { sampleRate: null }).samples, 22050, 16000, { method: 'soxr_hq' }),
    );
    throwsWith(() => et.audio.resample(x, 22050, 16000, { method: 'soxr_hq', halfWidth: 32 }), 'ERR_INVALID_ARG', /halfWidth.*'sinc' filter only/);
    throwsWith(
      () => et.audio.resample(x, 22050, 16000, { method: 'kaiser' as never }),
      'ERR_INVALID_ARG',
      /one of 'sinc', 'torchaudio', 'fft', 'soxr_qq'.*'soxr_vhq'.*kaiser/,
    );
    throwsWith(() => et.audio.resample(x, 22050, 16000, { mehtod: 'soxr_hq' } as never), 'ERR_INVALID_ARG', /mehtod/);
    expect(et.audio.resample(x, 16000, 16000, { method: 'soxr_hq' })).toEqual(x);
  });
});

// scripts/fixtures/resample_torchaudio.py: torchaudio.functional.resample's steps (re-typed from its
// source: torchaudio has no wheel here) in float32, as LanguageBind's processor runs them.
describe("resample { method: 'torchaudio' } = torchaudio.functional.resample", () => {
  it('gives its samples for 44.1 / 48 / 22.05 / 8 kHz → 16 kHz and 16 → 48 kHz, odd lengths', async () => {
    const dir = path.join(FIXTURES, 'resample');
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'torchaudio.json'), 'utf8')) as { cases: Array<{ from: number; to: number; n: number }> };
    const t = (await et.io.loadSafetensors(path.join(dir, 'torchaudio.safetensors'))).tensors;
    for (const [i, c] of meta.cases.entries()) {
      const x = t.get(`x.${i}`)!.dataSync() as Float32Array,
        want = t.get(`y.${i}`)!.dataSync() as Float32Array;
      const y = et.audio.resample(x, c.from, c.to, { method: 'torchaudio' });
      expect(y.length, `case ${i}`).toBe(want.length);
      let err = 0,
        peak = 0;
      for (let k = 0; k < y.length; k++) {
        err = Math.max(err, Math.abs(y[k] - want[k]));
        peak = Math.max(peak, Math.abs(want[k]));
      }
      expect(err / peak, `case ${i}: ${c.from} → ${c.to}`).toBeLessThan(2e-5);
    }
  });
});
