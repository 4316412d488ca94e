import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'wav');
const EXPECTED = JSON.parse(fs.readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Record<
  string,
  { sampleRate: number; channels: number; samples: number[][] }
>;

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('readWav', () => {
  for (const [name, exp] of Object.entries(EXPECTED)) {
    it(`decodes ${name} (written by Python) per channel and mixed`, async () => {
      const file = path.join(DIR, name);
      for (let c = 0; c < exp.channels; c++) {
        const w = await et.audio.readWav(file, { sampleRate: null, channel: c });
        expect(w.sampleRate).toBe(exp.sampleRate);
        expect(w.sourceSampleRate).toBe(exp.sampleRate);
        expect(w.channels).toBe(exp.channels);
        expect(maxDiff(w.samples, exp.samples[c])).toBeLessThan(1e-6);
      }
      const mixed = await et.audio.readWav(file, { sampleRate: null });
      const mean = exp.samples[0].map((_, i) => exp.samples.reduce((s, ch) => s + ch[i], 0) / exp.channels);
      expect(maxDiff(mixed.samples, mean)).toBeLessThan(1e-6);
      expect(mixed.duration).toBeCloseTo(mean.length / exp.sampleRate, 9);
    });
  }

  it('resamples to 16 kHz by default', async () => {
    const w = await et.audio.readWav(path.join(DIR, 'pcm16_stereo_22k.wav'));
    expect(w.sampleRate).toBe(16000);
    expect(w.sourceSampleRate).toBe(22050);
    expect(w.samples.length).toBe(Math.ceil((200 * 16000) / 22050));
  });

  it('round-trips its own encoder (pcm16 and float32)', () => {
    const x = Float32Array.from({ length: 101 }, (_, i) => Math.sin(i / 7) * 0.9);
    const a = et.audio.decodeWav(et.audio.encodeWav(x, 8000), { sampleRate: null });
    expect(maxDiff(a.samples, x)).toBeLessThan(1 / 32768 + 1e-7);
    const b = et.audio.decodeWav(et.audio.encodeWav(x, 8000, { format: 'float32' }), { sampleRate: null });
    expect(maxDiff(b.samples, x)).toBe(0);
  });

  it('names the file for bad headers, missing chunks, unsupported formats and truncation', async () => {
    const dir = tmpdir();
    const good = fs.readFileSync(path.join(DIR, 'pcm16_mono_16k.wav'));
    const write = (name: string, b: Buffer): string => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, b);
      return f;
    };

    await rejectsWith(et.audio.readWav(write('text.wav', Buffer.from('hello, this is not audio'))), 'ERR_FORMAT', /text\.wav.*RIFF/);
    await rejectsWith(et.audio.readWav(write('tiny.wav', Buffer.from('RIFF'))), 'ERR_FORMAT', /tiny\.wav/);
    const noData = Buffer.from(good.subarray(0, 36));
    await rejectsWith(et.audio.readWav(write('nodata.wav', noData)), 'ERR_FORMAT', /nodata\.wav.*no data chunk/);
    const noFmt = Buffer.concat([Buffer.from('RIFF\x10\x00\x00\x00WAVE', 'latin1'), Buffer.from('data\x04\x00\x00\x00\x00\x00\x00\x00', 'latin1')]);
    await rejectsWith(et.audio.readWav(write('nofmt.wav', noFmt)), 'ERR_FORMAT', /nofmt\.wav.*no fmt chunk/);
    const alaw = Buffer.from(good);
    alaw.writeUInt16LE(6, 20);
    await rejectsWith(et.audio.readWav(write('alaw.wav', alaw)), 'ERR_FORMAT', /alaw\.wav.*format code 6 \(A-law\)/);
    const bits12 = Buffer.from(good);
    bits12.writeUInt16LE(4, 32);
    bits12.writeUInt16LE(20, 34); // 20-bit in 4 bytes
    await rejectsWith(et.audio.readWav(write('bits.wav', bits12)), 'ERR_FORMAT', /bits\.wav.*20 bits/);
    const f16 = Buffer.from(good);
    f16.writeUInt16LE(3, 20);
    await rejectsWith(et.audio.readWav(write('f16.wav', f16)), 'ERR_FORMAT', /f16\.wav.*IEEE float with 16 bits/);

    const cut = write('cut.wav', good.subarray(0, good.length - 100));
    await rejectsWith(et.audio.readWav(cut), 'ERR_FORMAT', /cut\.wav' is truncated.*allowTruncated/);
    const w = await et.audio.readWav(cut, { sampleRate: null, allowTruncated: true });
    expect(w.samples.length).toBe(240 - 50);
    const half = write('half.wav', good.subarray(0, good.length - 1));
    await rejectsWith(et.audio.readWav(half), 'ERR_FORMAT', /half\.wav' is truncated/);
    expect((await et.audio.readWav(half, { sampleRate: null, allowTruncated: true })).samples.length).toBe(239);

    await rejectsWith(et.audio.readWav(path.join(dir, 'absent.wav')), 'ERR_IO', /absent\.wav/);
    // random garbage never crashes
    for (let s = 0; s < 50; s++) {
      const g = Buffer.from(good);
      for (let k = 0; k < 8; k++) g[Math.floor(Math.random() * 44)] = Math.floor(Math.random() * 256);
      try {
        et.audio.decodeWav(g);
      } catch (e) {
        expect(e).toBeInstanceOf(et.EmotorchError);
      }
    }
  });

  it('validates options', async () => {
    const f = path.join(DIR, 'pcm16_stereo_22k.wav');
    await rejectsWith(et.audio.readWav(f, { channel: 2 }), 'ERR_INVALID_ARG', /Expected a channel index below 2/);
    await rejectsWith(et.audio.readWav(f, { channel: 'left' as never }), 'ERR_INVALID_ARG', /for channel but received "left"/);
    await rejectsWith(et.audio.readWav(f, { sampleRate: 0 }), 'ERR_INVALID_ARG', /for sampleRate/);
    throwsWith(() => et.audio.decodeWav('x' as never), 'ERR_INVALID_ARG', /a Buffer for buffer/);
  });
});
