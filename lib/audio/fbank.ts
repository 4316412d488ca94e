/**
 * Kaldi filter banks with any of torchaudio.compliance.kaldi's window types, as tensor ops: the
 * native `kaldiFbank` has the povey window only (BEATs' and SALMONN's), while LanguageBind's audio
 * processor asks for `window_type="hanning"`. Same formulas as torchaudio's `fbank`: frames cut
 * with snip_edges, DC offset removed, pre-emphasis, the window, a power-of-two DFT, the power (or
 * magnitude) spectrum through the Kaldi mel bank, log floored at float32's epsilon.
 *
 * The spectrum is a float64 matmul with the DFT's cosine and sine tables (no FFT op crosses the
 * binding), which is more exact than torchaudio's float32 FFT; the mel bank is computed in float32
 * with torchaudio's own operation order, as torchaudio uses it for a float32 waveform. Cost:
 * frames · 400 · 514 multiply-adds at 16 kHz (≈ 0.2 G for 10 s).
 * @internal
 */
import { Tensor, arange, cat, tensor, zeros } from '../tensor';

/** torchaudio.compliance.kaldi's window types. */
export type KaldiWindow = 'povey' | 'hanning' | 'hamming' | 'rectangular' | 'blackman';
export const KALDI_WINDOWS: readonly KaldiWindow[] = ['povey', 'hanning', 'hamming', 'rectangular', 'blackman'];

/** The fully defaulted options (kaldiFbank checks them). @internal */
export interface FbankConfig {
  numMelBins: number;
  sampleRate: number;
  frameLength: number;
  frameShift: number;
  preemphasis: number;
  lowFreq: number;
  highFreq: number;
  removeDcOffset: boolean;
  usePower: boolean;
  useLog: boolean;
  scale: number;
  normMean: number;
  normScale: number;
  windowType: KaldiWindow;
  blackmanCoeff: number;
}

const F32_EPS = 1.1920928955078125e-7;

/** The window as torchaudio's `_feature_window_function` (periodic=False windows). */
function windowOf(type: KaldiWindow, n: number, blackman: number): Float64Array {
  const w = new Float64Array(n);
  const a = (2 * Math.PI) / (n - 1);
  for (let i = 0; i < n; i++) {
    const hann = 0.5 - 0.5 * Math.cos(a * i);
    w[i] =
      type === 'hanning'
        ? hann
        : type === 'povey'
          ? Math.pow(hann, 0.85)
          : type === 'hamming'
            ? 0.54 - 0.46 * Math.cos(a * i)
            : type === 'blackman'
              ? blackman - 0.5 * Math.cos(a * i) + (0.5 - blackman) * Math.cos(2 * a * i)
              : 1;
  }
  return w;
}

/** torchaudio's `get_mel_banks` (no VTLN) in float32, padded with a zero Nyquist column: (bins, padded/2 + 1). */
function melBank(bins: number, padded: number, sr: number, low: number, high: number): Tensor {
  const nyquist = 0.5 * sr;
  if (high <= 0) high += nyquist;
  const binWidth = sr / padded;
  const melOf = (f: number) => 1127.0 * Math.log(1.0 + f / 700.0);
  const melLow = melOf(low),
    melHigh = melOf(high);
  const delta = (melHigh - melLow) / (bins + 1);
  const bin = arange(bins).unsqueeze(1).float(); // (bins, 1)
  const left = bin.mul(delta).add(melLow);
  const center = bin.add(1.0).mul(delta).add(melLow);
  const right = bin.add(2.0).mul(delta).add(melLow);
  const mel = arange(padded / 2)
    .float()
    .mul(binWidth)
    .div(700.0)
    .add(1.0)
    .log()
    .mul(1127.0)
    .unsqueeze(0); // (1, padded/2)
  const up = mel.sub(left).div(center.sub(left));
  const down = right.sub(mel).div(right.sub(center));
  const bank = up.minimum(down).maximum(zeros([1]));
  return cat([bank, zeros([bins, 1])], 1);
}

/**
 * Kaldi fbank of a float waveform batch (B, N) → float32 (B, frames, numMelBins).
 * @internal
 */
export function fbankOps(w: Tensor, o: FbankConfig): Tensor {
  const win = Math.trunc(o.sampleRate * o.frameLength * 0.001);
  const shift = Math.trunc(o.sampleRate * o.frameShift * 0.001);
  let padded = 1;
  while (padded < win) padded *= 2;
  const [b, n] = w.shape;
  const frames = 1 + Math.floor((n - win) / shift);
  // (frames, win) sample indices → frames (B, frames, win), float64.
  const idx = arange(frames).mul(shift).unsqueeze(1).add(arange(win).unsqueeze(0));
  let f = w.to({ dtype: 'float64' }).mul(o.scale).transpose(0, 1).index(idx).permute([2, 0, 1]);
  if (o.removeDcOffset) f = f.sub(f.mean(-1, true));
  if (o.preemphasis !== 0) f = f.sub(cat([f.slice(-1, 0, 1), f.slice(-1, 0, win - 1)], -1).mul(o.preemphasis));
  f = f.mul(tensor(windowOf(o.windowType, win, o.blackmanCoeff)));
  // Real DFT of the zero-padded frame: only its first `win` samples are non-zero.
  const k = arange(padded / 2 + 1);
  const angle = arange(win)
    .unsqueeze(1)
    .mul(k.unsqueeze(0))
    .remainder(padded)
    .to({ dtype: 'float64' })
    .mul((2 * Math.PI) / padded);
  const re = f.matmul(angle.cos()),
    im = f.matmul(angle.sin());
  let spec = re.square().add(im.square()); // (B, frames, padded/2 + 1)
  if (!o.usePower) spec = spec.sqrt();
  let mel = spec.matmul(melBank(o.numMelBins, padded, o.sampleRate, o.lowFreq, o.highFreq).to({ dtype: 'float64' }).transpose(0, 1));
  if (o.useLog) mel = mel.clamp(F32_EPS).log();
  if (o.normMean !== 0 || o.normScale !== 1) mel = mel.sub(o.normMean).div(o.normScale);
  void b;
  return mel.float();
}
