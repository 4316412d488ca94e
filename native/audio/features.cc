#include "audio/features.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <numeric>
#include <tuple>

namespace et::audio {
namespace {

// Filter banks are built once per configuration and device (float64 math, stored float32).
std::mutex cache_mutex;
std::map<std::tuple<std::string, int64_t, double, double, double, int64_t>, at::Tensor> cache;

template <class Make>
at::Tensor cached(const std::string& kind, int64_t bins, double a, double b, double c, int64_t n_fft, const at::Device& dev, Make make) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto key = std::make_tuple(kind + dev.str(), bins, a, b, c, n_fft);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  at::Tensor t = make().to(dev, at::kFloat);
  cache.emplace(key, t);
  return t;
}

double hz_to_mel_slaney(double f) {
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp, logstep = std::log(6.4) / 27.0;
  return f >= min_log_hz ? min_log_mel + std::log(f / min_log_hz) / logstep : f / f_sp;
}
double mel_to_hz_slaney(double m) {
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp, logstep = std::log(6.4) / 27.0;
  return m >= min_log_mel ? min_log_hz * std::exp(logstep * (m - min_log_mel)) : f_sp * m;
}

// (n_fft/2 + 1, n_mels) Slaney-scale, Slaney-normalized triangles, as transformers'
// mel_filter_bank(norm="slaney", mel_scale="slaney").
at::Tensor slaney_mel_bank(int64_t n_mels, int64_t n_fft, double sr, double fmin, double fmax) {
  int64_t n_freq = n_fft / 2 + 1;
  auto out = at::zeros({n_freq, n_mels}, at::kDouble);
  auto acc = out.accessor<double, 2>();
  double mmin = hz_to_mel_slaney(fmin), mmax = hz_to_mel_slaney(fmax);
  std::vector<double> f(n_mels + 2);
  for (int64_t i = 0; i < n_mels + 2; ++i) f[i] = mel_to_hz_slaney(mmin + (mmax - mmin) * i / (n_mels + 1));
  for (int64_t k = 0; k < n_freq; ++k) {
    double fft_f = (sr / 2) * k / (n_freq - 1);
    for (int64_t m = 0; m < n_mels; ++m) {
      double down = (fft_f - f[m]) / (f[m + 1] - f[m]);
      double up = (f[m + 2] - fft_f) / (f[m + 2] - f[m + 1]);
      double v = std::max(0.0, std::min(down, up));
      acc[k][m] = v * 2.0 / (f[m + 2] - f[m]);
    }
  }
  return out;
}

double mel_kaldi(double f) { return 1127.0 * std::log(1.0 + f / 700.0); }

// (n_fft/2 + 1, bins) Kaldi mel triangles in mel space (the Nyquist row is zero), as
// torchaudio.compliance.kaldi.get_mel_banks without VTLN.
at::Tensor kaldi_mel_bank(int64_t bins, int64_t n_fft, double sr, double low, double high) {
  int64_t n_half = n_fft / 2;
  double nyquist = sr / 2;
  if (high <= 0) high += nyquist;
  TORCH_CHECK(low >= 0 && low < high && high <= nyquist, "kaldi fbank: bad frequency range [", low, ", ", high, "] for sample rate ", sr);
  double width = sr / n_fft, mlow = mel_kaldi(low), mhigh = mel_kaldi(high), delta = (mhigh - mlow) / (bins + 1);
  auto out = at::zeros({n_half + 1, bins}, at::kDouble);
  auto acc = out.accessor<double, 2>();
  for (int64_t b = 0; b < bins; ++b) {
    double left = mlow + b * delta, center = left + delta, right = center + delta;
    for (int64_t i = 0; i < n_half; ++i) {
      double m = mel_kaldi(width * i);
      double v = std::max(0.0, std::min((m - left) / (center - left), (right - m) / (right - center)));
      acc[i][b] = v;
    }
  }
  return out;
}

void check_waveform(const at::Tensor& w, const char* who) {
  TORCH_CHECK(w.dim() == 2, who, ": expected a waveform of shape (batch, samples) but got ", w.sizes());
  TORCH_CHECK(at::isFloatingType(w.scalar_type()), who, ": expected a floating-point waveform but got ", w.scalar_type());
}

}  // namespace

at::Tensor whisper_log_mel(const at::Tensor& waveform, int64_t n_mels, bool pad_to_30s) {
  check_waveform(waveform, "whisper_log_mel");
  constexpr int64_t n_fft = 400, hop = 160, n_samples = 480000;
  at::Tensor x = waveform.to(at::kFloat);
  if (pad_to_30s) {
    int64_t n = x.size(1);
    x = n >= n_samples ? x.narrow(1, 0, n_samples) : at::constant_pad_nd(x, {0, n_samples - n}, 0);
  }
  TORCH_CHECK(x.size(1) > n_fft / 2, "whisper_log_mel: a clip of ", x.size(1), " samples is too short (needs more than ", n_fft / 2, ")");
  int64_t total = x.size(1) / hop;  // frames in the output
  auto window = at::hann_window(n_fft, /*periodic=*/true, at::TensorOptions().dtype(at::kFloat).device(x.device()));
  auto bank = cached("slaney", n_mels, 16000, 0, 8000, n_fft, x.device(), [&] { return slaney_mel_bank(n_mels, n_fft, 16000, 0, 8000); });
  // log10 mel (rows, n_mels, total). Frames whose whole window lies in trailing zeros (the padding
  // of short clips) have zero power, so log10(clamp(0, 1e-10)) = −10: the STFT runs only up to the
  // last frame that sees audio and the rest is filled with −10, exactly what the full computation gives.
  auto log_mel_of = [&](const at::Tensor& xs, int64_t needed) -> at::Tensor {
    at::Tensor power;
    if (needed == total) {
      auto spec = at::stft(xs, n_fft, hop, n_fft, window, /*center=*/true, "reflect", /*normalized=*/false,
                           /*onesided=*/true, /*return_complex=*/true);  // (rows, 201, total + 1)
      power = at::abs(spec.narrow(2, 0, total)).square();                // drop the last frame
    } else {
      // Centred framing by hand: reflect-pad the start only; frames < needed never reach the end.
      auto left = at::flip(xs.narrow(1, 1, n_fft / 2), {1});
      int64_t span = (needed - 1) * hop + n_fft / 2;
      power = at::abs(at::stft(at::cat({left, xs.narrow(1, 0, span)}, 1), n_fft, hop, n_fft, window, /*center=*/false, "reflect", false,
                               true, true))
                  .square();
    }
    auto lm = at::log10(at::clamp_min(at::matmul(bank.t(), power), 1e-10));  // (rows, n_mels, needed)
    return needed == total ? lm : at::constant_pad_nd(lm, {0, total - needed}, -10.0);
  };
  // Samples up to each clip's last non-zero one (a scan from the end on the CPU).
  auto last_nonzero = [&]() {
    std::vector<int64_t> out(x.size(0));
    if (x.is_cpu()) {
      auto c = x.contiguous();
      const float* p = c.data_ptr<float>();
      for (int64_t b = 0; b < c.size(0); ++b) {
        int64_t n = c.size(1);
        const float* row = p + b * n;
        while (n > 0 && row[n - 1] == 0.0f) --n;
        out[b] = n;
      }
    } else {
      auto idx = at::arange(1, x.size(1) + 1, at::TensorOptions().dtype(at::kLong).device(x.device()));
      auto last = std::get<0>((x.ne(0).to(at::kLong) * idx).max(1)).to(at::kCPU);
      for (int64_t b = 0; b < x.size(0); ++b) out[b] = last[b].item<int64_t>();
    }
    return out;
  };
  at::Tensor log_spec;
  std::vector<int64_t> needed(x.size(0), total);
  if (pad_to_30s) {
    auto last = last_nonzero();
    for (int64_t b = 0; b < x.size(0); ++b) needed[b] = std::min(total, (last[b] + n_fft / 2 + hop - 1) / hop + 1);
  }
  if (std::all_of(needed.begin(), needed.end(), [&](int64_t n) { return n == total; })) {
    log_spec = log_mel_of(x, total);
  } else {
    std::vector<at::Tensor> rows;
    for (int64_t b = 0; b < x.size(0); ++b) rows.push_back(log_mel_of(x.narrow(0, b, 1), needed[b]));
    log_spec = at::cat(rows, 0);
  }
  auto peak = std::get<0>(log_spec.flatten(1).max(1, true)).unsqueeze(2);  // per clip
  log_spec = at::maximum(log_spec, peak - 8.0);
  return (log_spec + 4.0) / 4.0;
}

at::Tensor kaldi_fbank(const at::Tensor& waveform, const FbankOptions& o) {
  check_waveform(waveform, "kaldi_fbank");
  int64_t win = static_cast<int64_t>(o.sample_rate * o.frame_length_ms * 0.001);
  int64_t shift = static_cast<int64_t>(o.sample_rate * o.frame_shift_ms * 0.001);
  TORCH_CHECK(win > 1 && shift > 0, "kaldi_fbank: frame length ", win, " and shift ", shift, " samples are too small");
  TORCH_CHECK(o.snip_edges, "kaldi_fbank: only snip_edges=true is supported");
  if (waveform.size(0) > 1) {
    // clip by clip: the frames, spectra and their temporaries of one clip at a time (a batch of
    // 8 × 10 s held some 240 MB of them at once), the same numbers
    std::vector<at::Tensor> out;
    for (int64_t i = 0; i < waveform.size(0); i++) out.push_back(kaldi_fbank(waveform.narrow(0, i, 1), o));
    return at::cat(out, 0);
  }
  at::Tensor x = waveform.to(at::kFloat) * o.scale;
  int64_t n = x.size(1);
  TORCH_CHECK(n >= win, "kaldi_fbank: a clip of ", n, " samples is shorter than one frame (", win, ")");
  int64_t frames = 1 + (n - win) / shift;
  at::Tensor f = x.unfold(1, win, shift).narrow(1, 0, frames);  // (B, frames, win)
  if (o.remove_dc_offset) f = f - f.mean(-1, true);
  if (o.preemphasis != 0) {
    auto prev = at::cat({f.narrow(-1, 0, 1), f.narrow(-1, 0, win - 1)}, -1);  // replicate-pad left
    f = f - o.preemphasis * prev;
  }
  auto window = at::pow(at::hann_window(win, /*periodic=*/false, at::TensorOptions().dtype(at::kDouble)), 0.85).to(f.device(), at::kFloat);
  f = f * window;
  int64_t n_fft = 1;
  while (n_fft < win) n_fft <<= 1;
  auto spec = at::abs(at::fft_rfft(f, n_fft, -1));  // (B, frames, n_fft/2 + 1)
  if (o.use_power) spec = spec.square();
  auto bank = cached("kaldi", o.num_mel_bins, o.sample_rate, o.low_freq, o.high_freq, n_fft, f.device(),
                     [&] { return kaldi_mel_bank(o.num_mel_bins, n_fft, o.sample_rate, o.low_freq, o.high_freq); });
  auto mel = at::matmul(spec, bank);  // (B, frames, bins)
  if (o.use_log) mel = at::log(at::clamp_min(mel, std::numeric_limits<float>::epsilon()));
  if (o.norm_mean != 0.0 || o.norm_scale != 1.0) mel = (mel - o.norm_mean) / o.norm_scale;
  return mel;
}

at::Tensor fft_resample(const at::Tensor& x, int64_t num) {
  TORCH_CHECK(x.dim() == 1 && x.size(0) > 0 && num > 0, "fft_resample: expected a non-empty 1-D signal and num > 0, got ", x.sizes(),
              " and ", num);
  int64_t n = x.size(0), m = std::min(n, num), m2 = m / 2 + 1;
  auto X
  = at::fft_rfft(x).narrow(0, 0, m2).clone();  // (m2) complex
  if (m % 2 == 0 && num != n) X
  .select(0, m / 2).mul_(num < n ? 2.0 : 0.5);
  return at::fft_irfft(X.div_(static_cast<double>(n) / static_cast<double>(num)), num);
}

at::Tensor sinc_hann_resample(const at::Tensor& x, int64_t from, int64_t to) {
  TORCH_CHECK(x.dim() == 1 && from > 0 && to > 0, "sinc_hann_resample: expected a 1-D signal and positive rates, got ", x.sizes());
  const int64_t g = std::gcd(from, to), M = from / g, L = to / g, n = x.size(0);
  const double lpw = 6, cut = 0.99 * static_cast<double>(std::min(M, L));
  const auto w = static_cast<int64_t>(std::ceil(lpw * static_cast<double>(M) / cut));
  // the kernel of the last rate pair, kept (a dataset's clips share one rate; torchaudio's Resample keeps it too)
  static std::mutex lock;
  static std::tuple<int64_t, int64_t, at::ScalarType, at::Device> last_key{0, 0, at::kFloat, at::kCPU};
  static at::Tensor last;
  std::lock_guard<std::mutex> hold(lock);
  if (last.defined() && last_key == std::make_tuple(M, L, x.scalar_type(), x.device())) {
    auto padded = at::constant_pad_nd(x.view({1, 1, n}), {w, w + M});
    return at::conv1d(padded, last, {}, M).transpose(1, 2).reshape({-1}).narrow(0, 0, (L * n + M - 1) / M);
  }
  auto f64 = x.options().dtype(at::kDouble);
  auto t = at::arange(0, -L, -1, f64).div(L).unsqueeze(1) + at::arange(-w, w + M, f64).div(M).unsqueeze(0);  // (L, 2w + M)
  t = t.mul(cut).clamp(-lpw, lpw);
  auto window = at::cos(t * (M_PI / lpw / 2)).pow(2);
  t = t * M_PI;
  auto kernel = (at::where(t.eq(0), at::ones_like(t), at::sin(t) / t) * window * (cut / M)).to(x.scalar_type()).unsqueeze(1);  // (L, 1, K)
  last = kernel;
  last_key = std::make_tuple(M, L, x.scalar_type(), x.device());
  auto padded = at::constant_pad_nd(x.view({1, 1, n}), {w, w + M});
  auto y = at::conv1d(padded, kernel, {}, M).transpose(1, 2).reshape({-1});  // (blocks · L): phases interleaved
  return y.narrow(0, 0, (L * n + M - 1) / M);
}

at::Tensor vocoder_log_mel(const at::Tensor& waveform, double sr, int64_t n_fft, int64_t n_mels, int64_t hop, int64_t win, double fmin,
                           double fmax) {
  check_waveform(waveform, "vocoder_log_mel");
  TORCH_CHECK(
      n_fft >= 2 && hop >= 1 && hop <= n_fft && win >= 1 && win <= n_fft && n_mels >= 1 && fmin >= 0 && fmax > fmin && fmax <= sr / 2,
      "vocoder_log_mel: bad settings (n_fft ", n_fft, ", hop ", hop, ", win ", win, ", n_mels ", n_mels, ", fmin ", fmin, ", fmax ", fmax,
      ", rate ", sr, ")");
  const int64_t pad = (n_fft - hop) / 2;
  at::Tensor x = waveform.to(at::kFloat);
  TORCH_CHECK(x.size(1) > pad && x.size(1) + 2 * pad >= n_fft, "vocoder_log_mel: a clip of ", x.size(1), " samples is too short (needs ",
              std::max(pad + 1, n_fft - 2 * pad), ")");
  x = at::pad(x.unsqueeze(1), {pad, pad}, "reflect").squeeze(1);
  auto window = at::hann_window(win, /*periodic=*/true, at::TensorOptions().dtype(at::kFloat).device(x.device()));
  auto spec = at::stft(x, n_fft, hop, win, window, /*normalized=*/false, /*onesided=*/true, /*return_complex=*/true);
  auto mag = at::sqrt(at::real(spec).pow(2) + at::imag(spec).pow(2) + 1e-9);
  auto bank = cached("slaney", n_mels, sr, fmin, fmax, n_fft, x.device(), [&] { return slaney_mel_bank(n_mels, n_fft, sr, fmin, fmax); });
  auto mel = at::matmul(bank.t(), mag);  // (n_mels, F) · (B, F, frames)
  return at::log(at::clamp_min(mel, 1e-5));
}

}  // namespace et::audio
