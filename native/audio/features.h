// Audio front ends as torch ops (CPU and CUDA, batched): Whisper's log-mel spectrogram and
// Kaldi's filter-bank features (torchaudio.compliance.kaldi.fbank semantics).
#pragma once
#include <ATen/ATen.h>

namespace et::audio {

// waveform (B, N) float at 16 kHz → (B, n_mels, frames). pad_to_30s: pad or cut each clip to
// 480000 samples first (3000 frames), as WhisperFeatureExtractor; otherwise frames = N / 160.
// STFT n_fft 400, hop 160, periodic Hann, centred with reflect padding; power; Slaney mel
// (0–8 kHz); log10 with floor 1e-10; per-clip clamp to max − 8; (x + 4) / 4.
at::Tensor whisper_log_mel(const at::Tensor& waveform, int64_t n_mels, bool pad_to_30s);

struct FbankOptions {
  int64_t num_mel_bins = 23;
  double sample_rate = 16000, frame_length_ms = 25, frame_shift_ms = 10;
  double preemphasis = 0.97, low_freq = 20, high_freq = 0;  // high ≤ 0: Nyquist + high
  bool remove_dc_offset = true, use_power = true, use_log = true, snip_edges = true;
  double scale = 1.0;  // multiply the waveform first (BEATs: 32768)
  double norm_mean = 0.0, norm_scale = 1.0;  // output (fbank − mean) / scale (BEATs: 15.41663, 2 · 6.55582)
};

// waveform (B, N) → (B, frames, num_mel_bins), frames = 1 + (N − frame_length) / frame_shift
// (snip_edges). Povey window, padded to a power-of-two FFT, dither 0.
at::Tensor kaldi_fbank(const at::Tensor& waveform, const FbankOptions& o);

// scipy.signal.resample(x, num) of a real 1-D signal (librosa's res_type 'fft'): the one-sided
// spectrum cut (or zero-padded) to min(n, num) // 2 + 1 bins, an unpaired bin at m // 2 (m =
// min(n, num) even) doubled when downsampling and halved when upsampling, scaled by num / n and
// transformed back to num samples. In x's dtype.
at::Tensor fft_resample(const at::Tensor& x, int64_t num);

// torchaudio.functional.resample(x, from, to) with its defaults (lowpass_filter_width 6, rolloff
// 0.99, sinc_interp_hann): the rates divided by their gcd (M in, L out), phase j's kernel
// h_j(k) = sinc(π·t)·cos²(π·t / 12)·c / M with c = 0.99·min(M, L) and t = c·((k − w) / M − j / L)
// clamped to ±6 (w = ceil(6·M / c)), the signal padded by w zeros before and w + M after, one
// strided convolution, the phases interleaved; ceil(n · L / M) samples. Kernel in float64, then x's dtype.
at::Tensor sinc_hann_resample(const at::Tensor& x, int64_t from, int64_t to);

// HiFi-GAN / BigVGAN's mel_spectrogram (meldataset.py; USDM's get_mel): waveform (B, N) → natural-log
// mel (B, n_mels, frames), frames = (N + 2·pad − n_fft) / hop + 1 with pad = (n_fft − hop) / 2
// reflected on each side; STFT not centred, periodic Hann of `win` samples; magnitude
// sqrt(re² + im² + 1e-9); Slaney mel (librosa's defaults) from fmin to fmax; log of max(·, 1e-5).
at::Tensor vocoder_log_mel(const at::Tensor& waveform, double sr, int64_t n_fft, int64_t n_mels, int64_t hop, int64_t win, double fmin,
                           double fmax);

}  // namespace et::audio
