/**
 * Regression cases from issue 7 for WAV reading and resampling (findings 9, 14, 15): absurd
 * sample rates, odd rate ratios, output bounds, messages that do not echo file content.
 * Imports the audio modules directly: they need no native addon.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { readWav, decodeWav, encodeWav } from '../../lib/audio/wav';
import { resample } from '../../lib/audio/resample';
import { EmotorchError } from '../../lib/errors';
import { tmpdir } from '../tmp';

const DIR = tmpdir();

async function failure(p: Promise<unknown> | (() => unknown)): Promise<EmotorchError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(EmotorchError);
    return e as EmotorchError;
  }
  throw new Error('expected an EmotorchError');
}

/** A 16-bit mono WAV whose header claims `rate` Hz. */
function wavAt(rate: number, frames: number): Buffer {
  const b = encodeWav(
    new Float32Array(frames).map((_, i) => Math.sin(i / 3) / 2),
    16000,
  );
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE((rate * 2) >>> 0, 28);
  return b;
}

describe('WAV sample rates (finding 9: a 1 Hz header resampled for minutes, 1 MB threw a RangeError)', () => {
  for (const rate of [1, 999, 768001, 0xffffffff]) {
    it(`refuses a header rate of ${rate} Hz with ERR_FORMAT naming the file`, async () => {
      const file = path.join(DIR, `rate-${rate}.wav`);
      fs.writeFileSync(file, wavAt(rate, 20000)); // 40 KB: the reported case
      const e = await failure(readWav(file));
      expect(e.code).toBe('ERR_FORMAT');
      expect(e.message).toContain(file);
      expect(e.message).toMatch(/sample rate of \d+ Hz, outside the 1000\.\.768000 Hz/);
      expect((await failure(readWav(file, { sampleRate: null }))).code).toBe('ERR_FORMAT');
    });
  }
  it('refuses a 1 MB file with a 1 Hz header (was an uncoded RangeError)', async () => {
    expect((await failure(() => decodeWav(wavAt(1, 500_000), {}, 'big.wav'))).code).toBe('ERR_FORMAT');
  });
  it('reads the extreme rates that are allowed', () => {
    const lo = decodeWav(wavAt(1000, 1000), { sampleRate: 1000 });
    expect(lo.sourceSampleRate).toBe(1000);
    expect(lo.samples.length).toBe(1000);
    const hi = decodeWav(wavAt(768000, 7680), { sampleRate: 16000 });
    expect(hi.samples.length).toBe(160);
  });
  it('bounds the requested rate and resample() rates with ERR_INVALID_ARG', async () => {
    for (const r of [0, 1, 999, 768001, 1e12, 16000.5]) {
      expect((await failure(() => decodeWav(wavAt(16000, 10), { sampleRate: r }))).code).toBe('ERR_INVALID_ARG');
      expect((await failure(() => resample(new Float32Array(4), r, 16000))).code).toBe('ERR_INVALID_ARG');
      expect((await failure(() => resample(new Float32Array(4), 16000, r))).code).toBe('ERR_INVALID_ARG');
      expect((await failure(() => encodeWav(new Float32Array(4), r))).code).toBe('ERR_INVALID_ARG');
    }
  });
  it('bounds the filter options (a huge halfWidth used to allocate without limit)', async () => {
    expect((await failure(() => resample(new Float32Array(4), 44100, 16000, { halfWidth: 1e9 }))).code).toBe('ERR_INVALID_ARG');
    expect((await failure(() => resample(new Float32Array(4), 768000, 1000, { rolloff: 0.001 }))).code).toBe('ERR_INVALID_ARG');
  });
});

describe('coprime rate ratios (in range, but each output used to evaluate the whole kernel: 14 s per second of 767999 Hz audio)', () => {
  const sine = (f: number, rate: number, n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin((2 * Math.PI * f * i) / rate));
  for (const [from, to, f] of [
    [767999, 1000, 100],
    [1001, 16000, 100],
    [44100, 16001, 1000],
  ]) {
    it(`${from} → ${to} Hz keeps a ${f} Hz tone: equal to the analytic sine away from the edges`, () => {
      const seconds = from > 100000 ? 1 : 2;
      const y = resample(sine(f, from, from * seconds), from, to);
      expect(y.length).toBe(Math.ceil(to * seconds));
      let err = 0;
      for (let m = Math.floor(y.length * 0.25); m < y.length * 0.75; m++) err = Math.max(err, Math.abs(y[m] - 0.5 * Math.sin((2 * Math.PI * f * m) / to)));
      expect(err).toBeLessThan(1e-4);
    });
  }
});

describe('few outputs (a 120-sample file at 597 824 Hz built a 1.3 M-entry filter table for 4 outputs)', () => {
  it("computes each output's own filter row when there are fewer outputs than table rows, with the same values", () => {
    const x = Float32Array.from({ length: 44100 }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 1000 * i) / 44100));
    const long = resample(x, 44100, 16001); // 16001 outputs: interpolated table
    const short = resample(x.subarray(0, 2205), 44100, 16001); // 801 outputs: a row per output
    expect(short.length).toBe(801);
    let err = 0;
    for (let m = 200; m < 600; m++) err = Math.max(err, Math.abs(short[m] - long[m]), Math.abs(short[m] - 0.5 * Math.sin((2 * Math.PI * 1000 * m) / 16001)));
    expect(err).toBeLessThan(1e-4);
  });
});

describe('messages name the file and the problem, not its content (finding 15)', () => {
  it('does not quote the first bytes of a non-WAV file', async () => {
    const file = path.join(DIR, 'passwd');
    fs.writeFileSync(file, 'rootsecret:x:0:0:root:/root:/bin/bash\n');
    const e = await failure(readWav(file));
    expect(e.code).toBe('ERR_FORMAT');
    expect(e.message).toContain(file);
    expect(e.message).not.toMatch(/root|secret|:0:/);
  });
});
