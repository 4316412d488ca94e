// Audio feature extraction on the thread pool: marshalling around native/audio.
// Features are float32 whatever autocast the caller has on (as a feature extractor outside the
// model computes them): their mel products never run in bfloat16 / float16.
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <cstring>
#include "audio/features.h"
#include "audio/soxr.h"
#include "bridge/bridge.h"

namespace et::bridge {
namespace {

// whisperLogMel(waveform (B, N), nMels, padTo30s) → Promise<Tensor (B, nMels, frames)>
Napi::Value WhisperLogMel(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor x = to_tensor(info[0], "waveform");
    int64_t n_mels = static_cast<int64_t>(to_double(info[1], "nMels"));
    bool pad = info[2].ToBoolean().Value();
    auto out = std::make_shared<at::Tensor>();
    return run_async(info.Env(), "emotorch.whisperLogMel", nullptr, [x, n_mels, pad, out] {
      at::NoGradGuard g;
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
      *out = audio::whisper_log_mel(x, n_mels, pad);
    }, [out](Napi::Env env) { return TensorHandle::wrap(env, *out); });
  });
}

// vocoderLogMel(waveform (B, N), sampleRate, nFft, nMels, hop, win, fmin, fmax) → Promise<Tensor (B, nMels, frames)>
Napi::Value VocoderLogMel(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor x = to_tensor(info[0], "waveform");
    const double sr = to_double(info[1], "sampleRate"), fmin = to_double(info[6], "fmin"), fmax = to_double(info[7], "fmax");
    const auto n_fft = static_cast<int64_t>(to_double(info[2], "nFft")), n_mels = static_cast<int64_t>(to_double(info[3], "nMels"));
    const auto hop = static_cast<int64_t>(to_double(info[4], "hop")), win = static_cast<int64_t>(to_double(info[5], "win"));
    auto out = std::make_shared<at::Tensor>();
    return run_async(info.Env(), "emotorch.vocoderLogMel", nullptr, [x, sr, n_fft, n_mels, hop, win, fmin, fmax, out] {
      at::NoGradGuard g;
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
      *out = audio::vocoder_log_mel(x, sr, n_fft, n_mels, hop, win, fmin, fmax);
    }, [out](Napi::Env env) { return TensorHandle::wrap(env, *out); });
  });
}

// kaldiFbank(waveform (B, N), options) → Promise<Tensor (B, frames, bins)>
Napi::Value KaldiFbank(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    at::Tensor x = to_tensor(info[0], "waveform");
    auto o = info[1].As<Napi::Object>();
    audio::FbankOptions opt;
    auto num = [&](const char* k, double& dst) {
      if (o.Has(k)) dst = to_double(o.Get(k), k);
    };
    auto flag = [&](const char* k, bool& dst) {
      if (o.Has(k)) dst = o.Get(k).ToBoolean().Value();
    };
    double bins = static_cast<double>(opt.num_mel_bins);
    num("numMelBins", bins);
    opt.num_mel_bins = static_cast<int64_t>(bins);
    num("sampleRate", opt.sample_rate);
    num("frameLength", opt.frame_length_ms);
    num("frameShift", opt.frame_shift_ms);
    num("preemphasis", opt.preemphasis);
    num("lowFreq", opt.low_freq);
    num("highFreq", opt.high_freq);
    num("scale", opt.scale);
    num("normMean", opt.norm_mean);
    num("normScale", opt.norm_scale);
    flag("removeDcOffset", opt.remove_dc_offset);
    flag("usePower", opt.use_power);
    flag("useLog", opt.use_log);
    auto out = std::make_shared<at::Tensor>();
    return run_async(info.Env(), "emotorch.kaldiFbank", nullptr, [x, opt, out] {
      at::NoGradGuard g;
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
      *out = audio::kaldi_fbank(x, opt);
    }, [out](Napi::Env env) { return TensorHandle::wrap(env, *out); });
  });
}

// resampleSignal(samples Float32Array, method, fromRate, toRate, num) → Float32Array, synchronously
// (each method runs many times faster than real time; TypeScript checks the method and bounds the
// lengths and rates): 'fft' (scipy.signal.resample to num samples), 'torchaudio'
// (torchaudio.functional.resample's defaults), or a libsoxr quality recipe 'soxr:<recipe>'.
Napi::Value ResampleSignal(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      throw CodedError("ERR_INVALID_ARG", "Expected a Float32Array for samples");
    auto x = info[0].As<Napi::Float32Array>();
    std::string method = info[1].ToString().Utf8Value();
    double from = to_double(info[2], "fromRate"), to = to_double(info[3], "toRate");
    auto num = static_cast<int64_t>(to_double(info[4], "num"));
    if (method.rfind("soxr:", 0) == 0) {
      std::vector<float> y = audio::soxr_resample(x.Data(), x.ElementLength(), from, to, std::stoul(method.substr(5)));
      auto out = Napi::Float32Array::New(info.Env(), y.size());
      std::copy(y.begin(), y.end(), out.Data());
      return out;
    }
    at::Tensor y;
    {
      at::NoGradGuard g;
      auto in = at::from_blob(x.Data(), {static_cast<int64_t>(x.ElementLength())}, at::kFloat);
      if (method == "fft") y = audio::fft_resample(in, num);
      else if (method == "torchaudio") y = audio::sinc_hann_resample(in, static_cast<int64_t>(from), static_cast<int64_t>(to));
      else
        throw CodedError("ERR_INVALID_ARG",
                         "Expected 'fft', 'torchaudio' or 'soxr:<recipe>' for the resampling method but received '" + method + "'");
      y = y.contiguous();
    }
    auto out = Napi::Float32Array::New(info.Env(), y.numel());
    std::memcpy(out.Data(), y.data_ptr<float>(), y.numel() * sizeof(float));
    return out;
  });
}

// soxrStatus() → { available: boolean, why: string, version: string }
Napi::Value SoxrStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto o = Napi::Object::New(env);
  std::string why = audio::soxr_unavailable();
  o.Set("available", Napi::Boolean::New(env, why.empty()));
  o.Set("why", Napi::String::New(env, why));
  o.Set("version", Napi::String::New(env, audio::soxr_version()));
  return o;
}

}  // namespace

void init_audio(Napi::Env env, Napi::Object exports) {
  exports.Set("whisperLogMel", Napi::Function::New(env, WhisperLogMel));
  exports.Set("kaldiFbank", Napi::Function::New(env, KaldiFbank));
  exports.Set("vocoderLogMel", Napi::Function::New(env, VocoderLogMel));
  exports.Set("resampleSignal", Napi::Function::New(env, ResampleSignal));
  exports.Set("soxrStatus", Napi::Function::New(env, SoxrStatus));
}

}  // namespace et::bridge
