/**
 * WAV (RIFF/WAVE) decoding: PCM 8/16/24/32-bit integers and IEEE float 32/64, as plain format
 * codes (1, 3) or WAVE_FORMAT_EXTENSIBLE (0xFFFE) with its subformat GUID; any channel count;
 * unknown chunks (LIST, fact, cue, ...) skipped with RIFF's odd-size padding. Samples come back as
 * float32 in [-1, 1), mixed down or picked to one channel, resampled to the wanted rate.
 */
import { EmotorchError, invalid, checkInt, checkNumber, checkOptionNames, show } from '../errors';
import { readRegularFile } from '../io/file';
import { resample, ResampleOptions, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, MAX_SAMPLES, checkRate } from './resample';

/** Options of `readWav`, `decodeWav` and `readAudio`: output sample rate, channel, cut files and resampler. */
export interface WavOptions {
  /** Output sample rate in Hz (1000..768000), or null to keep the file's own. Default 16000. */
  sampleRate?: number | null;
  /** 'mix' averages all channels (default); an index picks one channel. */
  channel?: 'mix' | number;
  /**
   * Accept a data chunk cut short (its size field exceeds the file) by reading the whole frames
   * present. Default false: a cut file is an ERR_FORMAT error.
   */
  allowTruncated?: boolean;
  /** Filter design for the resampler. */
  resample?: ResampleOptions;
  /**
   * The longest audio read, in seconds (default {@link MAX_AUDIO_SECONDS}, an hour; `Infinity`
   * lifts it). A WAV that declares more is refused from its header; other files are decoded by
   * ffmpeg for at most this long (its `-t`) and refused when they last longer.
   */
  maxSeconds?: number;
  /** `readAudio` only: kill ffmpeg after this many milliseconds (default 120000). */
  timeoutMs?: number;
}

/**
 * The default longest audio read by `readWav`, `decodeWav` and `readAudio`: 3600 s (230 MB of
 * 16 kHz float32; `maxSeconds` changes it).
 * @example
 * await et.audio.readAudio('podcast.mp3', { maxSeconds: 3 * et.audio.MAX_AUDIO_SECONDS });
 */
export const MAX_AUDIO_SECONDS = 3600;

/** Decoded mono audio: samples, their rate, the file's own rate and channel count, and the duration. */
export interface Wav {
  /** Mono float32 samples at `sampleRate`. */
  samples: Float32Array;
  /** The rate of `samples` (the requested one). */
  sampleRate: number;
  /** The file's own sample rate. */
  sourceSampleRate: number;
  /** The file's channel count (samples are always one channel). */
  channels: number;
  /** Seconds: samples.length / sampleRate. */
  duration: number;
}

/** What a WAV file's header says: encoding, channels, sample rate, sample size and block align. */
export interface WavFormat {
  /** 1 = integer PCM, 3 = IEEE float (after resolving WAVE_FORMAT_EXTENSIBLE). */
  format: 1 | 3;
  channels: number;
  sampleRate: number;
  /** Bytes per sample in the container (1..4 for PCM, 4 or 8 for float). */
  bytesPerSample: number;
  blockAlign: number;
}

// The GUID tail shared by every KSDATAFORMAT_SUBTYPE_* (the first two bytes are the format code).
const GUID_TAIL = Buffer.from([0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71]);

function bad(file: string, why: string): never {
  throw new EmotorchError(`'${file}' is not a readable WAV file: ${why}`, 'ERR_FORMAT');
}

const OPTION_NAMES = ['sampleRate', 'channel', 'allowTruncated', 'resample', 'maxSeconds', 'timeoutMs'];

/** Checks the options of readWav / decodeWav / readAudio and fills in the defaults. @internal */
export function checkOptions(opts: WavOptions): {
  sampleRate: number | null;
  channel: 'mix' | number;
  allowTruncated: boolean;
  resample: ResampleOptions;
  maxSeconds: number;
  timeoutMs: number;
} {
  if (opts === null || typeof opts !== 'object') invalid('an options object', 'options', opts);
  checkOptionNames(opts, OPTION_NAMES, 'audio options');
  const sampleRate = opts.sampleRate === undefined ? 16000 : opts.sampleRate === null ? null : checkRate(opts.sampleRate, 'sampleRate');
  const channel = opts.channel === undefined ? 'mix' : opts.channel;
  if (channel !== 'mix' && !(typeof channel === 'number' && Number.isInteger(channel) && channel >= 0)) {
    invalid("'mix' or a non-negative channel index", 'channel', channel);
  }
  if (opts.allowTruncated !== undefined && typeof opts.allowTruncated !== 'boolean') invalid('a boolean', 'allowTruncated', opts.allowTruncated);
  const maxSeconds = opts.maxSeconds === undefined ? MAX_AUDIO_SECONDS : opts.maxSeconds;
  if (typeof maxSeconds !== 'number' || !(maxSeconds > 0)) invalid('a positive number of seconds (Infinity for no limit)', 'maxSeconds', maxSeconds);
  const timeoutMs = opts.timeoutMs === undefined ? 120_000 : checkNumber(opts.timeoutMs, 'timeoutMs', 1);
  return { sampleRate, channel, allowTruncated: !!opts.allowTruncated, resample: opts.resample ?? {}, maxSeconds, timeoutMs };
}

function parseFmt(buf: Buffer, off: number, size: number, file: string): WavFormat {
  if (size < 16) bad(file, `the fmt chunk has ${size} bytes, fewer than 16`);
  let code = buf.readUInt16LE(off);
  const channels = buf.readUInt16LE(off + 2);
  const sampleRate = buf.readUInt32LE(off + 4);
  const blockAlign = buf.readUInt16LE(off + 12);
  const bits = buf.readUInt16LE(off + 14);
  if (code === 0xfffe) {
    if (size < 40) bad(file, `WAVE_FORMAT_EXTENSIBLE needs a 40-byte fmt chunk but this one has ${size} bytes`);
    const sub = buf.subarray(off + 24, off + 40);
    if (!sub.subarray(2).equals(GUID_TAIL)) bad(file, 'WAVE_FORMAT_EXTENSIBLE has a subformat GUID that is not a KSDATAFORMAT_SUBTYPE');
    code = sub.readUInt16LE(0);
  }
  if (code !== 1 && code !== 3) {
    const names: Record<number, string> = { 2: 'MS ADPCM', 6: 'A-law', 7: 'mu-law', 0x11: 'IMA ADPCM', 0x55: 'MPEG layer 3' };
    bad(file, `format code ${code}${names[code] ? ` (${names[code]})` : ''} is not supported; only PCM (1) and IEEE float (3) are`);
  }
  if (channels < 1) bad(file, 'the fmt chunk says 0 channels');
  if (sampleRate < MIN_SAMPLE_RATE || sampleRate > MAX_SAMPLE_RATE) {
    bad(file, `the fmt chunk says a sample rate of ${sampleRate} Hz, outside the ${MIN_SAMPLE_RATE}..${MAX_SAMPLE_RATE} Hz read here`);
  }
  if (blockAlign === 0 || blockAlign % channels !== 0) bad(file, `block align ${blockAlign} is not a multiple of the ${channels} channels`);
  const bytesPerSample = blockAlign / channels;
  if (code === 1) {
    if (bits < 1 || bits > 32 || Math.ceil(bits / 8) !== bytesPerSample || bytesPerSample > 4) {
      bad(file, `PCM with ${bits} bits per sample in ${bytesPerSample}-byte containers is not supported (8, 16, 24 and 32 are)`);
    }
  } else if (!((bits === 32 && bytesPerSample === 4) || (bits === 64 && bytesPerSample === 8))) {
    bad(file, `IEEE float with ${bits} bits per sample is not supported (32 and 64 are)`);
  }
  return { format: code as 1 | 3, channels, sampleRate, bytesPerSample, blockAlign };
}

/**
 * Finds the fmt and data chunks.
 * @returns the format, the byte range of whole frames in the data chunk
 */
function parseChunks(buf: Buffer, file: string, allowTruncated: boolean): { fmt: WavFormat; dataStart: number; frames: number } {
  if (buf.length < 12) bad(file, `the file has ${buf.length} bytes, too few for a RIFF header`);
  const riff = buf.toString('latin1', 0, 4);
  if (riff === 'RF64' || riff === 'BW64') bad(file, `${riff} (64-bit WAV) is not supported`);
  if (riff !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') {
    bad(file, 'it does not start with a RIFF....WAVE header');
  }
  let fmt: WavFormat | null = null;
  let data: { start: number; size: number; declared: number } | null = null;
  let pos = 12;
  while (pos + 8 <= buf.length) {
    const id = buf.toString('latin1', pos, pos + 4);
    const declared = buf.readUInt32LE(pos + 4);
    const start = pos + 8;
    const avail = buf.length - start;
    if (id === 'fmt ') {
      if (declared > avail) bad(file, `the fmt chunk declares ${declared} bytes but only ${avail} follow`);
      fmt = parseFmt(buf, start, declared, file);
    } else if (id === 'data') {
      // 0xFFFFFFFF is what streaming writers leave when they cannot seek back: "to the end".
      const size = declared === 0xffffffff ? avail : Math.min(declared, avail);
      if (!data) data = { start, size, declared: declared === 0xffffffff ? avail : declared };
    }
    pos = start + declared + (declared & 1);
  }
  if (!fmt) bad(file, 'it has no fmt chunk');
  if (!data) bad(file, 'it has no data chunk');
  const { blockAlign } = fmt;
  if (data.size < data.declared || data.size % blockAlign !== 0) {
    const whole = Math.floor(data.size / blockAlign);
    if (!allowTruncated) {
      const what =
        data.size < data.declared
          ? `the data chunk declares ${data.declared} bytes but only ${data.size} are present`
          : `the data chunk's ${data.size} bytes are not a whole number of ${blockAlign}-byte frames`;
      throw new EmotorchError(`'${file}' is truncated: ${what} (pass { allowTruncated: true } to read the ${whole} whole frames)`, 'ERR_FORMAT');
    }
  }
  return { fmt, dataStart: data.start, frames: Math.floor(data.size / blockAlign) };
}

/** Decodes interleaved samples of one channel (or the mean of all) to float32. */
function decodeSamples(buf: Buffer, fmt: WavFormat, start: number, frames: number, channel: 'mix' | number): Float32Array {
  const { channels, bytesPerSample: bps, blockAlign, format } = fmt;
  const out = new Float32Array(frames);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const read = (o: number): number => {
    if (format === 3) return bps === 4 ? view.getFloat32(o, true) : view.getFloat64(o, true);
    switch (bps) {
      case 1:
        return (buf[o] - 128) / 128;
      case 2:
        return view.getInt16(o, true) / 32768;
      case 3:
        return (((buf[o] | (buf[o + 1] << 8) | (buf[o + 2] << 16)) << 8) >> 8) / 8388608;
      default:
        return view.getInt32(o, true) / 2147483648;
    }
  };
  const c0 = channel === 'mix' ? 0 : channel;
  const c1 = channel === 'mix' ? channels : channel + 1;
  const scale = 1 / (c1 - c0);
  for (let f = 0; f < frames; f++) {
    const base = start + f * blockAlign;
    let acc = 0;
    for (let c = c0; c < c1; c++) acc += read(base + c * bps);
    out[f] = acc * scale;
  }
  return out;
}

/**
 * Decodes a WAV file held in memory.
 *
 * @param buffer the whole file
 * @param opts `sampleRate` (default 16000, null keeps the file's), `channel` ('mix' or an
 *   index), `allowTruncated`, `resample` (filter design), `maxSeconds` (default an hour)
 * @param name the file name used in error messages (default '<buffer>')
 * @throws EmotorchError ERR_INVALID_ARG for bad options or a channel index the file lacks;
 *   ERR_FORMAT (naming the file) when it is not RIFF/WAVE, lacks a fmt or data chunk, uses an
 *   unsupported format code or bit depth, has a sample rate outside 1000..768000 Hz, is truncated,
 *   lasts longer than `maxSeconds`, or would resample to more than 2^30 samples.
 * @example
 * const { samples, sampleRate } = et.audio.decodeWav(fs.readFileSync('a.wav'), { sampleRate: 16000 });
 */
export function decodeWav(buffer: Buffer | Uint8Array, opts: WavOptions = {}, name = '<buffer>'): Wav {
  if (!(buffer instanceof Uint8Array)) invalid('a Buffer', 'buffer', buffer);
  const o = checkOptions(opts);
  const buf = Buffer.isBuffer(buffer) ? buffer : Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const { fmt, dataStart, frames } = parseChunks(buf, name, o.allowTruncated);
  if (o.channel !== 'mix' && o.channel >= fmt.channels) {
    invalid(`a channel index below ${fmt.channels} (the channels of ${show(name)})`, 'channel', o.channel);
  }
  if (frames / fmt.sampleRate > o.maxSeconds) {
    throw new EmotorchError(
      `'${name}' holds ${(frames / fmt.sampleRate).toFixed(3)} s of audio, more than the ${o.maxSeconds} s read (maxSeconds)`,
      'ERR_FORMAT',
    );
  }
  const rate = o.sampleRate ?? fmt.sampleRate;
  const outLen = Math.ceil((frames * rate) / fmt.sampleRate);
  if (Math.max(frames, outLen) > MAX_SAMPLES)
    bad(name, `${frames} frames at ${fmt.sampleRate} Hz make ${outLen} samples at ${rate} Hz, more than the ${MAX_SAMPLES} read here`);
  let samples = decodeSamples(buf, fmt, dataStart, frames, o.channel);
  if (rate !== fmt.sampleRate) samples = resample(samples, fmt.sampleRate, rate, o.resample);
  return { samples, sampleRate: rate, sourceSampleRate: fmt.sampleRate, channels: fmt.channels, duration: samples.length / rate };
}

/**
 * Reads a WAV file (the read is asynchronous; decoding runs on the calling thread).
 *
 * @param path the file
 * @param opts as {@link decodeWav}
 * @throws EmotorchError ERR_IO when the file cannot be read or is not a regular file (a directory,
 *   FIFO or device is refused before anything is read); ERR_FORMAT / ERR_INVALID_ARG as
 *   {@link decodeWav}.
 * @example
 * const { samples, duration } = await et.audio.readWav('speech.wav', { sampleRate: 16000 });
 */
export async function readWav(path: string, opts: WavOptions = {}): Promise<Wav> {
  if (typeof path !== 'string') invalid('a file path', 'path', path);
  checkOptions(opts);
  return decodeWav(await readRegularFile(path), opts, path);
}

/**
 * Encodes mono or interleaved samples as a WAV file image (16-bit PCM by default, or 32-bit
 * float). Values outside [-1, 1] are clipped for PCM.
 *
 * @param samples interleaved samples in [-1, 1]
 * @param sampleRate the rate in Hz
 * @param opts `channels` (default 1), `format`: 'pcm16' (default) or 'float32'
 * @throws EmotorchError ERR_INVALID_ARG for a bad rate, channel count or length.
 * @example
 * fs.writeFileSync('out.wav', et.audio.encodeWav(samples, 16000));
 */
export function encodeWav(samples: Float32Array | number[], sampleRate: number, opts: { channels?: number; format?: 'pcm16' | 'float32' } = {}): Buffer {
  checkOptionNames(opts, ['channels', 'format'], 'encodeWav');
  checkRate(sampleRate, 'sampleRate');
  const channels = opts.channels === undefined ? 1 : checkInt(opts.channels, 'channels', 1);
  if (channels > 1024) invalid('at most 1024 channels', 'channels', channels);
  const format = opts.format ?? 'pcm16';
  if (format !== 'pcm16' && format !== 'float32') invalid("'pcm16' or 'float32'", 'format', format);
  if (samples.length % channels !== 0) invalid(`a length divisible by ${channels} channels`, 'samples', samples.length);
  const bps = format === 'pcm16' ? 2 : 4;
  const dataBytes = samples.length * bps;
  if (dataBytes > 0xffffffff - 44) invalid('samples that fit a WAV file (under 4 GiB)', 'samples', `${samples.length} samples`);
  const buf = Buffer.alloc(44 + dataBytes + (dataBytes & 1));
  buf.write('RIFF', 0, 'latin1');
  buf.writeUInt32LE(buf.length - 8, 4);
  buf.write('WAVEfmt ', 8, 'latin1');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(format === 'pcm16' ? 1 : 3, 20);
  buf.writeUInt16LE(channels, 22);
  buf.writeUInt32LE(sampleRate, 24);
  buf.writeUInt32LE(sampleRate * channels * bps, 28);
  buf.writeUInt16LE(channels * bps, 32);
  buf.writeUInt16LE(bps * 8, 34);
  buf.write('data', 36, 'latin1');
  buf.writeUInt32LE(dataBytes, 40);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i];
    if (format === 'pcm16') buf.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(v * 32768))), 44 + 2 * i);
    else buf.writeFloatLE(v, 44 + 4 * i);
  }
  return buf;
}
