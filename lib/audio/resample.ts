/**
 * Band-limited resampling with a Kaiser-windowed sinc filter (polyphase), written for emotorch.
 *
 * Quality (defaults, measured by test/audio/resample.test.ts): the low-pass cutoff sits at
 * `rolloff` = 0.94 of the lower of the two Nyquist frequencies; the filter spans `halfWidth` =
 * 64 zero crossings of its sinc on each side and is windowed by a Kaiser window with β = 12
 * (a design stopband of ≈ 120 dB; the transition band ends at the lower Nyquist frequency).
 * Measured 44.1 kHz → 16 kHz: gain within 0.04 dB up to 7.2 kHz (0.9 of Nyquist), −6 dB at
 * 7.52 kHz, −38.6 dB at 7.8 kHz, ≤ −120 dB from 8.0 kHz up (12 kHz: −139 dB). It costs ≈ 380
 * multiply-adds per output sample: about 0.1 s per 10 s of 44.1 kHz audio on one core.
 *
 * `method: 'soxr_hq'` (and the other soxr qualities) resamples instead with libsoxr, as
 * `librosa.resample(y, orig_sr=…, target_sr=…)` does by default (librosa ≥ 0.10, which
 * `librosa.load(path, sr=16000)` calls): python-soxr's block-wise `soxr.resample`, then librosa's
 * `fix_length` to `ceil(n · toRate / fromRate)` samples. The systems whose original loads audio
 * that way (USDM) use it by default, so their units equal the original's on 22.05 / 44.1 / 48 kHz audio.
 */
import { invalid, checkInt, checkNumber, checkOptionNames } from '../errors';
import { resampleNative, SOXR_RECIPES } from './features';

/**
 * The sample rates read, written and resampled here, in Hz. 1 kHz is far below any rate audio is
 * recorded at (telephone speech is 8 kHz) and 768 kHz is the highest rate audio interfaces and
 * codecs offer. The bound matters: the resampling filter has taps ∝ fromRate / toRate and its
 * output ∝ toRate / fromRate, so a 1 Hz WAV header made a 40 KB file resample for minutes.
 */
export const MIN_SAMPLE_RATE = 1000;
export const MAX_SAMPLE_RATE = 768000;
/** The longest signal decoded or resampled, in samples (2^30: 4 GiB of float32, 18 h at 16 kHz). */
export const MAX_SAMPLES = 2 ** 30;

/** Checks a sample rate option: an integer in [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]. */
export function checkRate(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_SAMPLE_RATE || v > MAX_SAMPLE_RATE) {
    invalid(`an integer sample rate in [${MIN_SAMPLE_RATE}, ${MAX_SAMPLE_RATE}] Hz`, name, v);
  }
  return v;
}

/**
 * The resampler: `'sinc'` is emotorch's Kaiser-windowed sinc (the filter options below);
 * `'torchaudio'` is `torchaudio.functional.resample` with its defaults (a Hann-windowed sinc over
 * 6 zero crossings, rolloff 0.99), which LanguageBind's audio processor calls; `'fft'` is
 * librosa's `res_type='fft'` (`scipy.signal.resample` to ceil(n · to / from) samples: the whole
 * clip's spectrum cut at the new Nyquist frequency), which SALMONN v1's `model.py` calls;
 * `'soxr_hq'` (librosa's default since 0.10), `'soxr_vhq'`, `'soxr_mq'`, `'soxr_lq'`, `'soxr_qq'`
 * are libsoxr's qualities as librosa names them (libsoxr is opened at run time: Debian's
 * `libsoxr0`; {@link soxrStatus} says whether it is there).
 */
export type ResampleMethod = 'sinc' | 'torchaudio' | 'fft' | keyof typeof SOXR_RECIPES;

/** The resampler (`method`) and, for `'sinc'`, its filter design: the Kaiser-windowed sinc's half-width, cutoff and window β. */
export interface ResampleOptions {
  /** Default `'sinc'`; a system whose original resamples with librosa (USDM) passes `'soxr_hq'`, with torchaudio (LanguageBind) `'torchaudio'`. */
  method?: ResampleMethod;
  /** Zero crossings of the sinc kept on each side of the centre (filter half-width). Default 64. */
  halfWidth?: number;
  /** Cutoff as a fraction of the lower Nyquist frequency, in (0, 1]. Default 0.94. */
  rolloff?: number;
  /** Kaiser window β (stopband attenuation ≈ β / 0.1102 + 8.7 dB). Default 12. */
  beta?: number;
}

/** Zeroth-order modified Bessel function of the first kind (series; converges fast for β ≤ 30). */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 200; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * The largest phase table (phases × taps), and the most phases tabulated. Rates whose ratio
 * needs more phases (coprime rates such as 44100 → 16001) get up to 4096 evenly spaced phases,
 * and each output interpolates linearly between the two phases around it: the kernel varies on
 * the scale of 1 / (2·cutoff) ≥ 1 input sample, so the step is tiny. Measured against evaluating
 * the kernel at every output's exact phase: 44100 → 16001, 16000 → 44101 and 767999 → 1000
 * agree to −139 dB of the peak (float32 rounding), and run 4–9× faster (767999 → 1000 took 14 s
 * per second of audio that way). Common rates (48k, 44.1k, 22.05k, 8k → 16k) have ≤ 441 phases
 * and stay exact.
 */
const MAX_TABLE = 4_000_000;
const MAX_ROWS = 4096;
/** The longest filter (taps); the defaults need at most 104 579 (768 kHz → 1 kHz). */
const MAX_TAPS = 1 << 20;

/**
 * Resamples a mono signal from `fromRate` to `toRate` (integers in 1000..768000 Hz).
 * The output has `ceil(n · toRate / fromRate)` samples; outside the signal the input is taken
 * as zero. Equal rates return a copy.
 *
 * @param samples the input signal
 * @param fromRate its sample rate
 * @param toRate the wanted sample rate
 * @param opts `method` (`'sinc'` (default) or a libsoxr quality such as `'soxr_hq'`, librosa's
 *   default) and, for `'sinc'`, the filter design: `halfWidth`, `rolloff`, `beta` (see the module comment)
 * @returns a new Float32Array at `toRate`
 * @throws EmotorchError ERR_INVALID_ARG for a non-array input, rates that are not integers in
 *   1000..768000, an output longer than 2^30 samples, or bad options; ERR_IO for a soxr method
 *   where libsoxr is not installed (the message says how to install it).
 * @example
 * const y = et.audio.resample(x, 44100, 16000);
 * const z = et.audio.resample(x, 22050, 16000, { method: 'soxr_hq' });   // = librosa.resample(x, orig_sr=22050, target_sr=16000)
 */
export function resample(samples: Float32Array | Float64Array | number[], fromRate: number, toRate: number, opts: ResampleOptions = {}): Float32Array {
  if (!(samples instanceof Float32Array || samples instanceof Float64Array || Array.isArray(samples))) {
    invalid('a Float32Array, Float64Array or number[]', 'samples', samples);
  }
  checkRate(fromRate, 'fromRate');
  checkRate(toRate, 'toRate');
  if (opts === null || typeof opts !== 'object') invalid('an options object', 'options', opts);
  checkOptionNames(opts, ['method', 'halfWidth', 'rolloff', 'beta'], 'resample options');
  const method = opts.method ?? 'sinc';
  if (method !== 'sinc' && method !== 'torchaudio' && method !== 'fft' && !Object.prototype.hasOwnProperty.call(SOXR_RECIPES, method)) {
    invalid(
      `one of 'sinc', 'torchaudio', 'fft', ${Object.keys(SOXR_RECIPES)
        .map((k) => `'${k}'`)
        .join(', ')}`,
      'resample method',
      method,
    );
  }
  if (method !== 'sinc') {
    for (const k of ['halfWidth', 'rolloff', 'beta'] as const)
      if (opts[k] !== undefined) invalid(`no ${k} with method '${method}' (it designs the 'sinc' filter only)`, k, opts[k]);
    return nativeResample(samples, fromRate, toRate, method);
  }
  const halfWidth = opts.halfWidth === undefined ? 64 : checkInt(opts.halfWidth, 'halfWidth', 1);
  if (halfWidth > 1024) invalid('an integer in [1, 1024]', 'halfWidth', halfWidth);
  const rolloff = opts.rolloff === undefined ? 0.94 : checkNumber(opts.rolloff, 'rolloff', 1e-3, 1);
  const beta = opts.beta === undefined ? 12 : checkNumber(opts.beta, 'beta', 0, 50);
  const n = samples.length;
  if (fromRate === toRate) return Float32Array.from(samples);

  const g = gcd(fromRate, toRate);
  const up = toRate / g; // L: output samples per period
  const down = fromRate / g; // M: input samples per period
  const outLen = Math.ceil((n * up) / down);
  if (outLen > MAX_SAMPLES) invalid(`a signal that resamples to at most ${MAX_SAMPLES} samples`, 'samples', `${n} samples (${outLen} at ${toRate} Hz)`);
  const out = new Float32Array(outLen);
  if (n === 0) return out;

  // Cutoff in cycles per INPUT sample; the kernel h(τ) = 2fc·sinc(2fc·τ)·w(τ) has unit DC gain.
  const fc = 0.5 * rolloff * Math.min(1, toRate / fromRate);
  const span = halfWidth / (2 * fc); // kernel half-length in input samples
  const taps = 2 * Math.ceil(span) + 1;
  if (taps > MAX_TAPS) invalid(`options that keep the filter under ${MAX_TAPS} taps (it would have ${taps})`, 'resample options', opts);
  const left = Math.ceil(span); // taps run over x[i - left .. i - left + taps - 1]
  const i0b = besselI0(beta);
  const kernel = (tau: number): number => {
    const r = tau / span;
    if (r <= -1 || r >= 1) return 0;
    const w = besselI0(beta * Math.sqrt(1 - r * r)) / i0b;
    const a = 2 * fc * tau;
    const s = a === 0 ? 1 : Math.sin(Math.PI * a) / (Math.PI * a);
    return 2 * fc * s * w;
  };

  // Output m sits at input time t = m·M/L = i + p/L with i = floor(m·M/L), p = (m·M) mod L.
  // Kernel rows per phase: all L phases when L ≤ MAX_ROWS and the table fits ('exact'); else rows
  // at fractions r/rows plus the row at fraction 1, interpolated between. With fewer outputs than
  // rows, each output's own exact row is computed when it is needed instead ('direct').
  const exact = up <= MAX_ROWS && up * taps <= MAX_TABLE;
  const rows = exact ? up : Math.max(1, Math.min(MAX_ROWS, Math.floor(MAX_TABLE / taps) - 1));
  const direct = outLen < rows;
  const table = new Float64Array((direct ? 1 : exact ? rows : rows + 1) * taps);
  const fill = (r: number, frac: number): void => {
    for (let k = 0; k < taps; k++) table[r * taps + k] = kernel(k - left - frac);
  };
  if (!direct) for (let r = 0; r * taps < table.length; r++) fill(r, r / rows);
  const x = samples;
  const dot = (base: number, start: number, k0: number, k1: number): number => {
    let acc = 0;
    for (let k = k0; k < k1; k++) acc += x[start + k] * table[base + k];
    return acc;
  };
  for (let m = 0; m < outLen; m++) {
    const pos = m * down;
    const i = Math.floor(pos / up);
    const p = pos - i * up;
    const start = i - left;
    const k0 = Math.max(0, -start);
    const k1 = Math.min(taps, n - start);
    if (direct) {
      fill(0, p / up);
      out[m] = dot(0, start, k0, k1);
    } else if (exact) {
      out[m] = dot(p * taps, start, k0, k1);
    } else {
      const f = (p * rows) / up;
      const r = Math.floor(f);
      const a = dot(r * taps, start, k0, k1);
      out[m] = a + (f - r) * (dot((r + 1) * taps, start, k0, k1) - a);
    }
  }
  return out;
}

/**
 * The native resamplers, as their originals give them: `ceil(n · toRate / fromRate)` samples
 * (librosa's fix_length after soxr, which zero-pads or cuts; scipy's and torchaudio's own length),
 * equal rates returned as a copy (librosa and torchaudio return the input).
 */
function nativeResample(
  samples: Float32Array | Float64Array | number[],
  fromRate: number,
  toRate: number,
  method: Exclude<ResampleMethod, 'sinc'>,
): Float32Array {
  const n = samples.length;
  const outLen = Math.ceil((n * toRate) / fromRate);
  if (outLen > MAX_SAMPLES) invalid(`a signal that resamples to at most ${MAX_SAMPLES} samples`, 'samples', `${n} samples (${outLen} at ${toRate} Hz)`);
  if (fromRate === toRate) return Float32Array.from(samples);
  if (n === 0) return new Float32Array(0);
  if (method === 'torchaudio') {
    // torchaudio's kernel: one row of 2·ceil(6·M / (0.99·min(M, L))) + M taps per output phase (M, L: the reduced rates)
    const g = gcd(fromRate, toRate),
      M = fromRate / g,
      L = toRate / g;
    const taps = 2 * Math.ceil((6 * M) / (0.99 * Math.min(M, L))) + M;
    if (L * taps > MAX_TABLE)
      invalid(
        `rates whose reduced ratio keeps torchaudio's kernel under ${MAX_TABLE} values (it would have ${L * taps})`,
        'resample rates',
        `${fromRate} → ${toRate} Hz`,
      );
  }
  const y = resampleNative(samples instanceof Float32Array ? samples : Float32Array.from(samples), method, fromRate, toRate, outLen);
  if (y.length === outLen) return y;
  const out = new Float32Array(outLen);
  out.set(y.length > outLen ? y.subarray(0, outLen) : y);
  return out;
}
