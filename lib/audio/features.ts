/**
 * Audio features computed natively (CPU or CUDA, batched, on the thread pool): Whisper's log-mel
 * spectrogram and Kaldi filter banks (BEATs' front end).
 */
import { binding } from '../native';
import { Tensor, tensor } from '../tensor';
import { checkInt, checkNumber, invalid, checkOptionNames } from '../errors';
import { fbankOps, KaldiWindow, KALDI_WINDOWS } from './fbank';

/** A waveform: Tensor (samples) or (batch, samples), or a Float32Array of samples. */
export type Waveform = Tensor | Float32Array;

function batched(x: Waveform, name: string): Tensor {
  const t = x instanceof Float32Array ? tensor(x) : x;
  if (!(t instanceof Tensor)) invalid('a Tensor or Float32Array waveform', name, x);
  const s = t.shape;
  if (s.length === 1) return t.unsqueeze(0);
  if (s.length !== 2) invalid('a waveform of shape (samples) or (batch, samples)', name, `shape [${s}]`);
  if (!t.dtype.startsWith('float') && t.dtype !== 'bfloat16') invalid('a floating-point waveform', name, t.dtype);
  return t;
}

/** Options of `whisperLogMel`: mel bins (WhisperFeatureExtractor's `feature_size`) and 30 s padding. */
export interface WhisperLogMelOptions {
  /** 80 (default; Whisper up to large-v2) or 128 (large-v3). */
  nMels?: number;
  /**
   * Pad or cut each clip to 30 s (3000 frames), as WhisperFeatureExtractor (default true). With
   * false, a clip of N samples gives N / 160 frames, so long dialogues can be encoded in chunks.
   */
  padTo30s?: boolean;
}

/**
 * Whisper's log-mel features of 16 kHz audio, equal to transformers' WhisperFeatureExtractor:
 * (batch, samples) → (batch, nMels, frames).
 * @throws EmotorchError for a bad shape, dtype or option.
 * @example
 * const feats = await et.audio.whisperLogMel(wave);          // (1, 80, 3000)
 */
export async function whisperLogMel(x: Waveform, opts: WhisperLogMelOptions = {}): Promise<Tensor> {
  checkOptionNames(opts, ['nMels', 'padTo30s'], 'whisperLogMel');
  const w = batched(x, 'waveform');
  const nMels = checkInt(opts.nMels ?? 80, 'nMels', 1);
  const pad = opts.padTo30s ?? true;
  if (typeof pad !== 'boolean') invalid('a boolean', 'padTo30s', pad);
  if (!pad && w.shape[1] <= 200) invalid('more than 200 samples', 'waveform length', w.shape[1]);
  return new Tensor(await binding.whisperLogMel(w.handle, nMels, pad));
}

/** Options of `kaldiFbank` (torchaudio.compliance.kaldi.fbank's arguments, camelCase). */
export interface KaldiFbankOptions {
  /** Mel bins (torchaudio default 23; BEATs 128). */
  numMelBins?: number;
  sampleRate?: number;
  /** Frame length and shift in milliseconds (25, 10). */
  frameLength?: number;
  frameShift?: number;
  preemphasis?: number;
  lowFreq?: number;
  /** ≤ 0 means Nyquist + highFreq (default 0). */
  highFreq?: number;
  removeDcOffset?: boolean;
  usePower?: boolean;
  useLog?: boolean;
  /** Multiply the waveform first (Kaldi expects int16 scale: BEATs uses 32768). Default 1. */
  scale?: number;
  /** Apply BEATs' normalization (x − 15.41663) / (2 · 6.55582) and its settings (128 bins, scale 32768). */
  beats?: boolean;
  /**
   * torchaudio's `window_type`: 'povey' (default; computed natively), or 'hanning' (LanguageBind),
   * 'hamming', 'rectangular', 'blackman', computed by tensor ops (a float64 DFT by matmul, slower
   * than the native FFT path but as exact).
   */
  windowType?: KaldiWindow;
  /** The 'blackman' window's coefficient (torchaudio's `blackman_coeff`, default 0.42). */
  blackmanCoeff?: number;
}

const BEATS_MEAN = 15.41663;
const BEATS_STD = 6.55582;

/**
 * Kaldi filter-bank features with torchaudio.compliance.kaldi.fbank semantics (povey window unless
 * `windowType`, dither 0, pre-emphasis 0.97, DC removal, snip edges, power spectrum, log):
 * (batch, samples) → (batch, frames, numMelBins), frames = 1 + (samples − 400) / 160 at 16 kHz.
 * `beats: true` gives exactly BEATs' input (128 bins, ×32768, normalized).
 * @throws EmotorchError for a bad shape or option, or a clip shorter than one frame.
 * @example
 * const fb = await et.audio.kaldiFbank(wave, { beats: true });   // (1, frames, 128)
 */
export async function kaldiFbank(x: Waveform, opts: KaldiFbankOptions = {}): Promise<Tensor> {
  checkOptionNames(
    opts,
    [
      'numMelBins',
      'sampleRate',
      'frameLength',
      'frameShift',
      'preemphasis',
      'lowFreq',
      'highFreq',
      'removeDcOffset',
      'usePower',
      'useLog',
      'scale',
      'beats',
      'windowType',
      'blackmanCoeff',
    ],
    'kaldiFbank',
  );
  const w = batched(x, 'waveform');
  const beats = opts.beats ?? false;
  const o = {
    numMelBins: checkInt(opts.numMelBins ?? (beats ? 128 : 23), 'numMelBins', 1),
    sampleRate: checkNumber(opts.sampleRate ?? 16000, 'sampleRate', 1),
    frameLength: checkNumber(opts.frameLength ?? 25, 'frameLength', 0),
    frameShift: checkNumber(opts.frameShift ?? 10, 'frameShift', 0),
    preemphasis: checkNumber(opts.preemphasis ?? 0.97, 'preemphasis', 0, 1),
    lowFreq: checkNumber(opts.lowFreq ?? 20, 'lowFreq', 0),
    highFreq: checkNumber(opts.highFreq ?? 0, 'highFreq'),
    removeDcOffset: opts.removeDcOffset ?? true,
    usePower: opts.usePower ?? true,
    useLog: opts.useLog ?? true,
    scale: checkNumber(opts.scale ?? (beats ? 32768 : 1), 'scale'),
    normMean: beats ? BEATS_MEAN : 0,
    normScale: beats ? 2 * BEATS_STD : 1,
    windowType: opts.windowType ?? 'povey',
    blackmanCoeff: checkNumber(opts.blackmanCoeff ?? 0.42, 'blackmanCoeff'),
  };
  if (!KALDI_WINDOWS.includes(o.windowType)) invalid(KALDI_WINDOWS.map((k) => `'${k}'`).join(', '), 'windowType', o.windowType);
  const frame = Math.floor((o.sampleRate * o.frameLength) / 1000);
  if (w.shape[1] < frame) invalid(`at least one frame (${frame} samples)`, 'waveform length', w.shape[1]);
  if (o.windowType !== 'povey') return fbankOps(w, o);
  const { windowType: _w, blackmanCoeff: _b, ...native } = o;
  return new Tensor(await binding.kaldiFbank(w.handle, native));
}

/** Options of `vocoderLogMel` (defaults: bigvgan_22khz_80band's, which USDM's decoder uses). */
export interface VocoderLogMelOptions {
  sampleRate?: number;
  nFft?: number;
  nMels?: number;
  hop?: number;
  win?: number;
  fmin?: number;
  fmax?: number;
}

/**
 * HiFi-GAN / BigVGAN's `mel_spectrogram` (USDM's get_mel): (batch, samples) → natural-log mel
 * (batch, nMels, frames), frames = samples / hop for a whole number of hops; the signal reflected by
 * (nFft − hop) / 2 on each side, an STFT that is not centred, periodic Hann, magnitude
 * √(re² + im² + 1e-9), Slaney mel from fmin to fmax, log of max(·, 1e-5). In float32.
 * @throws EmotorchError for a bad shape or option, or a clip shorter than (nFft − hop) / 2 + 1 samples.
 * @example
 * const mel = await et.audio.vocoderLogMel(wave);   // 22.05 kHz → (1, 80, samples / 256)
 */
export async function vocoderLogMel(x: Waveform, opts: VocoderLogMelOptions = {}): Promise<Tensor> {
  checkOptionNames(opts, ['sampleRate', 'nFft', 'nMels', 'hop', 'win', 'fmin', 'fmax'], 'vocoderLogMel');
  const w = batched(x, 'waveform');
  const sr = checkNumber(opts.sampleRate ?? 22050, 'sampleRate', 1);
  const nFft = checkInt(opts.nFft ?? 1024, 'nFft', 2);
  const nMels = checkInt(opts.nMels ?? 80, 'nMels', 1);
  const hop = checkInt(opts.hop ?? 256, 'hop', 1);
  const win = checkInt(opts.win ?? nFft, 'win', 1);
  const fmin = checkNumber(opts.fmin ?? 0, 'fmin', 0);
  const fmax = checkNumber(opts.fmax ?? 8000, 'fmax', 0);
  if (hop > nFft) invalid(`at most nFft (${nFft})`, 'hop', hop);
  if (win > nFft) invalid(`at most nFft (${nFft})`, 'win', win);
  if (fmax <= fmin || fmax > sr / 2) invalid(`above fmin (${fmin}) and at most half the rate (${sr / 2})`, 'fmax', fmax);
  const pad = Math.floor((nFft - hop) / 2);
  if (w.shape[1] <= pad || w.shape[1] + 2 * pad < nFft) invalid(`at least ${Math.max(pad + 1, nFft - 2 * pad)} samples`, 'waveform length', w.shape[1]);
  return new Tensor(await binding.vocoderLogMel(w.handle, sr, nFft, nMels, hop, win, fmin, fmax));
}

/** libsoxr's quality recipes by the names librosa and python-soxr give them (soxr_quality_spec's `recipe`). @internal */
export const SOXR_RECIPES = { soxr_qq: 0, soxr_lq: 1, soxr_mq: 2, soxr_hq: 4, soxr_vhq: 6 } as const;

/**
 * Resamples mono float32 samples natively: 'fft' (scipy.signal.resample to `num` samples),
 * 'torchaudio' (torchaudio.functional.resample's defaults) or a libsoxr quality (python-soxr's
 * `resample`, before librosa's fix_length). Checked and bounded by `resample`. @internal
 */
export function resampleNative(
  x: Float32Array,
  method: 'fft' | 'torchaudio' | keyof typeof SOXR_RECIPES,
  fromRate: number,
  toRate: number,
  num: number,
): Float32Array {
  const kind = method === 'fft' || method === 'torchaudio' ? method : `soxr:${SOXR_RECIPES[method]}`;
  return binding.resampleSignal(x, kind, fromRate, toRate, num);
}

/**
 * Whether libsoxr (the SoX resampler library behind librosa's default `soxr_hq` resampling) can
 * be used in this process: it is opened at run time, never needed to build.
 * @returns `{ available, why, version }`: `why` says what is missing and how to install it
 * @example
 * if (!et.audio.soxrStatus().available) console.log(et.audio.soxrStatus().why);
 */
export function soxrStatus(): { available: boolean; why: string; version: string } {
  return binding.soxrStatus();
}
