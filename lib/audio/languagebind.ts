/**
 * LanguageBind's audio processor (`AudioTransform` of languagebind/audio/processing_audio.py): the
 * waveform's mean removed, Kaldi fbank (htk_compat, no energy, hanning window, dither 0, 25 ms /
 * 10 ms, 112 bins), three chunks of `targetLength` frames (front / middle / back of a long clip; a
 * short clip repeated; an exact one copied), transposed, normalised by (x − mean) / (2 · std).
 */
import { checkInt, checkNumber, checkOptionNames, invalid } from '../errors';
import { Tensor, checkTensor, stack, tensor } from '../tensor';
import { mulberry32 } from '../runtime';
import { kaldiFbank } from './features';
import { resample, checkRate, ResampleOptions } from './resample';
import type { Wav } from './wav';

/** Options of {@link languageBindAudio}. */
export interface LanguageBindAudioOptions {
  /** The processor's sample rate (`audio_sample_rate`, 16000); a Wav at another rate is resampled. */
  sampleRate?: number;
  /** `num_mel_bins` (112). */
  numMelBins?: number;
  /** `target_length` in frames (1036 ≈ 10.4 s). */
  targetLength?: number;
  /** `audio_mean` (−4.2677393) and `audio_std` (4.5689974). */
  mean?: number;
  std?: number;
  /**
   * Where the three chunks of a clip longer than `targetLength` start: 'random' (default, as the
   * original: uniform within the front, middle and back thirds of the possible starts, drawn with
   * `rng` / `seed`), 'first' (the first start of each third: the original's commented-out fixed
   * choice), or three explicit start frames.
   */
  chunks?: 'random' | 'first' | readonly [number, number, number];
  /** Seed of the chunk choice (mulberry32); ignored when `rng` is given. */
  seed?: number;
  /** A generator of floats in [0, 1) for the chunk choice (default `Math.random`). */
  rng?: () => number;
  /** The resampler for a Wav at another rate (default `{ method: 'torchaudio' }`, as the original). */
  resample?: ResampleOptions;
}

/**
 * The three chunk starts the original can choose from: `np.array_split(range(0, T − L + 1), 3)`,
 * an empty middle or back third replaced by [0]. Each third as [first, count].
 */
function thirds(frames: number, target: number): [number, number][] {
  const len = frames - target + 1;
  const base = Math.floor(len / 3),
    extra = len % 3;
  const out: [number, number][] = [];
  let start = 0;
  for (let k = 0; k < 3; k++) {
    const size = base + (k < extra ? 1 : 0);
    out.push(size === 0 ? [0, 1] : [start, size]);
    start += size;
  }
  return out;
}

/**
 * LanguageBind's audio input: a mono waveform → float32 [3, numMelBins, targetLength], equal to
 * `LanguageBindAudioProcessor`'s `pixel_values` for one clip. The mean of the waveform is
 * subtracted, then torchaudio's Kaldi fbank (window 'hanning', htk_compat, use_energy false,
 * dither 0, 25 / 10 ms); a clip of T frames longer than `targetLength` gives three chunks (see
 * `chunks`), a shorter one is repeated `int(targetLength / T) + 1` times and cut, an exact one is
 * copied three times; then transposed and normalised by (x − mean) / (2 · std).
 *
 * The original reads files with torchaudio (channels kept; the mean is over all of them and fbank
 * takes channel 0): pass `readAudio(file, { channel: 0, sampleRate: null })`'s Wav to match it on
 * multi-channel files. A Wav at another rate is resampled as the original does, with
 * `torchaudio.functional.resample`'s defaults (`resample: { method: 'torchaudio' }`, the default here).
 * @param audio mono samples at `sampleRate` (Float32Array or a 1-D Tensor), or a {@link Wav}
 * @throws EmotorchError ERR_INVALID_ARG for a bad option or a clip shorter than one 25 ms frame.
 * @example
 * const wav = await et.audio.readAudio('dia1_utt3.mp4', { sampleRate: 16000 });
 * const x = await et.audio.languageBindAudio(wav, { chunks: 'first' });   // [3, 112, 1036]
 */
export async function languageBindAudio(audio: Float32Array | Tensor | Wav, opts: LanguageBindAudioOptions = {}): Promise<Tensor> {
  const o = checkOptionNames(
    opts,
    ['sampleRate', 'numMelBins', 'targetLength', 'mean', 'std', 'chunks', 'seed', 'rng', 'resample'],
    'languageBindAudio options',
  );
  const rate = o.sampleRate === undefined ? 16000 : checkRate(o.sampleRate, 'sampleRate');
  const bins = checkInt(o.numMelBins ?? 112, 'numMelBins', 1);
  const target = checkInt(o.targetLength ?? 1036, 'targetLength', 1);
  const mean = checkNumber(o.mean ?? -4.2677393, 'mean');
  const std = checkNumber(o.std ?? 4.5689974, 'std', Number.MIN_VALUE);
  const chunks = o.chunks ?? 'random';
  if (chunks !== 'random' && chunks !== 'first' && !(Array.isArray(chunks) && chunks.length === 3))
    invalid("'random', 'first' or three start frames", 'chunks', chunks);
  let rand: () => number = Math.random;
  if (o.rng !== undefined) {
    if (typeof o.rng !== 'function') invalid('a function returning floats in [0, 1)', 'rng', o.rng);
    rand = o.rng;
  } else if (o.seed !== undefined) rand = mulberry32(checkInt(o.seed, 'seed', 0));

  let x: Tensor;
  if (audio instanceof Float32Array) x = tensor(audio);
  else if (audio instanceof Tensor) {
    checkTensor(audio, 'audio');
    if (audio.ndim !== 1 || !audio.dtype.startsWith('float')) invalid('a 1-D float waveform', 'audio', `${audio.dtype} [${audio.shape}]`);
    x = audio.float();
  } else if (audio && typeof audio === 'object' && (audio as Wav).samples instanceof Float32Array) {
    const w = audio as Wav;
    x = tensor(
      w.sampleRate === rate ? w.samples : resample(w.samples, checkRate(w.sampleRate, 'audio.sampleRate'), rate, o.resample ?? { method: 'torchaudio' }),
    );
  } else invalid('a Float32Array, a 1-D Tensor or a Wav', 'audio', audio);

  x = x.sub(x.mean()); // audio_data -= audio_data.mean()
  const mel = (await kaldiFbank(x, { sampleRate: rate, numMelBins: bins, windowType: 'hanning', frameLength: 25, frameShift: 10 })).squeeze(0); // (T, bins)
  const frames = mel.shape[0];
  let fused: Tensor; // (3, target, bins)
  if (frames > target) {
    const parts = thirds(frames, target);
    const starts = Array.isArray(chunks)
      ? chunks.map((s, k) => checkInt(s, `chunks[${k}]`, 0))
      : parts.map(([first, count]) => (chunks === 'first' ? first : first + Math.floor(rand() * count)));
    starts.forEach((s, k) => {
      if (s + target > frames) invalid(`a start of at most ${frames - target} (the clip has ${frames} frames)`, `chunks[${k}]`, s);
    });
    fused = stack(starts.map((s) => mel.slice(0, s, s + target)));
  } else if (frames < target) {
    const once = mel.repeat([Math.trunc(target / frames) + 1, 1]).slice(0, 0, target);
    fused = stack([once, once, once]);
  } else {
    fused = stack([mel, mel, mel]);
  }
  return fused
    .transpose(1, 2)
    .sub(mean)
    .div(std * 2)
    .contiguous(); // (3, bins, target)
}
