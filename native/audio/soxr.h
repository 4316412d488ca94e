// libsoxr (the SoX resampler library) opened at run time with dlopen: the resampler that librosa
// (>= 0.10, `res_type='soxr_hq'`, its default) and python-soxr call, for the systems whose original
// loads audio with `librosa.load(path, sr=...)` (USDM). No libtorch, no napi.h: floats in, floats out.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace et::audio {

// Why libsoxr cannot be used in this process ("" when it can): the library is opened once.
std::string soxr_unavailable();

// The version libsoxr reports (e.g. "libsoxr-0.1.3"), or "" when it cannot be opened.
std::string soxr_version();

// Resamples n mono float32 samples from in_rate to out_rate with soxr's quality recipe `recipe`
// (0 QQ, 1 LQ, 2 MQ, 4 HQ, 6 VHQ: soxr_quality_spec(recipe, 0)), as python-soxr's `resample`
// runs it: input fed in blocks of max(1000, 48000 * in / out) samples, then flushed; at most
// n * out / in + 1 samples come out. Throws et::CodedError ERR_IO when libsoxr is missing.
std::vector<float> soxr_resample(const float* x, size_t n, double in_rate, double out_rate, unsigned long recipe);

}  // namespace et::audio
