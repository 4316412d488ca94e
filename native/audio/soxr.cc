// libsoxr through dlopen (soxr.h). The few declarations below mirror libsoxr 0.1's public ABI
// (soxr.h of libsoxr 0.1.x: soxr_create, soxr_process, soxr_delete, soxr_quality_spec and its
// struct); the library's header is not needed to build, only the library (Debian: libsoxr0) to run.
#include "audio/soxr.h"

#include <dlfcn.h>
#include <algorithm>
#include <mutex>

#include "error.h"

namespace et::audio {
namespace {

// struct soxr_quality_spec (libsoxr 0.1): precision, phase response, passband end, stopband
// begin, a reserved pointer and flags.
struct QualitySpec {
  double precision, phase_response, passband_end, stopband_begin;
  void* e;
  unsigned long flags;
};
using soxr_t = void*;
using Create = soxr_t (*)(double, double, unsigned, const char**, const void*, const QualitySpec*, const void*);
using Process = const char* (*)(soxr_t, const void*, size_t, size_t*, void*, size_t, size_t*);
using Delete = void (*)(soxr_t);
using Quality = QualitySpec (*)(unsigned long, unsigned long);
using Version = const char* (*)();

struct Soxr {
  Create create = nullptr;
  Process process = nullptr;
  Delete del = nullptr;
  Quality quality = nullptr;
  Version version = nullptr;
  std::string why;
};

const Soxr& lib() {
  static Soxr s = [] {
    Soxr s;
    void* h = dlopen("libsoxr.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      s.why =
          "libsoxr (libsoxr.so.0, the SoX resampler library) is not installed: install it with your package manager "
          "(Debian/Ubuntu: apt install libsoxr0; Fedora: dnf install soxr; macOS: brew install libsoxr)";
      return s;
    }
    s.create = reinterpret_cast<Create>(dlsym(h, "soxr_create"));
    s.process = reinterpret_cast<Process>(dlsym(h, "soxr_process"));
    s.del = reinterpret_cast<Delete>(dlsym(h, "soxr_delete"));
    s.quality = reinterpret_cast<Quality>(dlsym(h, "soxr_quality_spec"));
    s.version = reinterpret_cast<Version>(dlsym(h, "soxr_version"));
    if (!s.create || !s.process || !s.del || !s.quality || !s.version) s.why = "libsoxr.so.0 lacks the soxr_* functions of libsoxr 0.1";
    return s;
  }();
  return s;
}

}  // namespace

std::string soxr_unavailable() { return lib().why; }

std::string soxr_version() {
  const Soxr& s = lib();
  return s.why.empty() ? std::string(s.version()) : std::string();
}

std::vector<float> soxr_resample(const float* x, size_t n, double in_rate, double out_rate, unsigned long recipe) {
  const Soxr& s = lib();
  if (!s.why.empty()) throw CodedError("ERR_IO", s.why);
  const QualitySpec q = s.quality(recipe, 0);
  const char* err = nullptr;
  // Default I/O (float32 interleaved) and runtime (one thread) specs.
  soxr_t r = s.create(in_rate, out_rate, 1, &err, nullptr, &q, nullptr);
  if (err || !r) throw CodedError("ERR_INVALID_ARG", std::string("libsoxr refused the resampler: ") + (err ? err : "no resampler"));
  const size_t olen = static_cast<size_t>(static_cast<double>(n) * out_rate / in_rate + 1);
  const size_t block = static_cast<size_t>(std::max(1000., 48000 * in_rate / out_rate));
  std::vector<float> y(olen);
  size_t pos = 0, done = 0;
  for (size_t i = 0; i < n && !err; i += block) {
    err = s.process(r, x + i, std::min(block, n - i), nullptr, y.data() + pos, olen - pos, &done);
    pos += done;
  }
  if (!err) {
    err = s.process(r, nullptr, 0, nullptr, y.data() + pos, olen - pos, &done);  // end of input: flush
    pos += done;
  }
  s.del(r);
  if (err) throw CodedError("ERR_NATIVE", std::string("libsoxr failed: ") + err);
  y.resize(pos);
  return y;
}

}  // namespace et::audio
