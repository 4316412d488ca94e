#include "kernels/fused.h"

#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace et::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::optional<at::Tensor> opt(const at::Tensor& b) { return b.defined() ? std::optional<at::Tensor>(b) : std::nullopt; }

bool fusable(const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided; }

// Rows per parallel task: about 16K elements each, so small tensors stay on one thread.
int64_t grain(int64_t row) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(row, 1)); }

// Σ a·b over n floats with eight independent sums (which the compiler vectorizes).
float dot(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) s[k] += a[i + k] * b[i + k];
  float total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

struct RmsNormFn : torch::autograd::Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
    at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
    int64_t H = x.size(-1), N = x.numel() / std::max<int64_t>(H, 1);
    at::Tensor y = at::empty_like(x), rstd = at::empty({N}, x.options());
    const float *xp = x.const_data_ptr<float>(), *wp = w.const_data_ptr<float>();
    float *yp = y.mutable_data_ptr<float>(), *rp = rstd.mutable_data_ptr<float>();
    const float e = static_cast<float>(eps);
    at::parallel_for(0, N, grain(H), [&](int64_t b, int64_t end) {
      for (int64_t i = b; i < end; ++i) {
        const float* xr = xp + i * H;
        float r = 1.0f / std::sqrt(dot(xr, xr, H) / static_cast<float>(H) + e);
        rp[i] = r;
        float* yr = yp + i * H;
        for (int64_t j = 0; j < H; ++j) yr[j] = wp[j] * (xr[j] * r);
      }
    });
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  // n = x·r; dw = Σ_rows g·n; dx = r·(g·w − n·mean(g·w·n)).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    at::Tensor g = grads[0].contiguous();
    int64_t H = x.size(-1), N = x.numel() / std::max<int64_t>(H, 1);
    bool want_w = ctx->needs_input_grad(1);
    int threads = at::get_num_threads();
    at::Tensor dx = at::empty_like(x);
    at::Tensor partial = at::zeros({want_w ? threads : 0, H}, x.options());  // per-thread Σ g·n
    const float *xp = x.const_data_ptr<float>(), *wp = w.const_data_ptr<float>(), *rp = rstd.const_data_ptr<float>(),
                *gp = g.const_data_ptr<float>();
    float* dxp = dx.mutable_data_ptr<float>();
    float* pp = want_w ? partial.mutable_data_ptr<float>() : nullptr;
    at::parallel_for(0, N, grain(H), [&](int64_t b, int64_t end) {
      float* acc = want_w ? pp + at::get_thread_num() * H : nullptr;
      std::vector<float> gw(H);
      for (int64_t i = b; i < end; ++i) {
        const float *xr = xp + i * H, *gr = gp + i * H;
        float r = rp[i];
        for (int64_t j = 0; j < H; ++j) gw[j] = gr[j] * wp[j];
        float c = dot(gw.data(), xr, H) * r / static_cast<float>(H);  // mean(g·w·n)
        float* dr = dxp + i * H;
        for (int64_t j = 0; j < H; ++j) dr[j] = r * (gw[j] - xr[j] * r * c);
        if (acc)
          for (int64_t j = 0; j < H; ++j) acc[j] += gr[j] * (xr[j] * r);
      }
    });
    at::Tensor dw = want_w ? partial.sum(0) : at::Tensor();
    return {dx, dw, at::Tensor()};
  }
};

// (N, A, B) → (N, B, A) contiguous, one (A, B) matrix at a time through ATen's blocked copy of a
// transposed 2-D matrix (a 3-D transposed copy goes element by element, several times slower);
// its gradient is the same transposition of the gradient, contiguous again.
at::Tensor swap_last_two(const at::Tensor& x_in) {
  at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty({x.size(0), x.size(2), x.size(1)}, x.options());
  at::parallel_for(0, x.size(0), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i].copy_(x[i].t());
  });
  return y;
}

struct SwapLastTwoFn : torch::autograd::Function<SwapLastTwoFn> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x) { return swap_last_two(x); }
  static variable_list backward(AutogradContext*, variable_list grads) { return {swap_last_two(grads[0])}; }
};

// rotate_half(x)[d] = −x[d + D/2] for d < D/2, x[d − D/2] otherwise; its transpose sends
// u to (u[d + D/2], −u[d − D/2]).
struct RotaryFn : torch::autograd::Function<RotaryFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& cos_in, const at::Tensor& sin_in) {
    at::Tensor x = x_in.contiguous(), cos = cos_in.contiguous(), sin = sin_in.contiguous();
    at::Tensor y = at::empty_like(x);
    rotate(x, cos, sin, y, false);
    ctx->save_for_backward({cos, sin});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor g = grads[0].contiguous();
    at::Tensor dx = at::empty_like(g);
    rotate(g, saved[0], saved[1], dx, true);
    return {dx, at::Tensor(), at::Tensor()};
  }
  // x (B, T, heads, D), cos/sin (B, T, D) → out; `transpose`: the backward map.
  static void rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& out, bool transpose) {
    int64_t B = x.size(0), T = x.size(1), heads = x.size(2), D = x.size(3), half = D / 2;
    const float *xp = x.const_data_ptr<float>(), *cp = cos.const_data_ptr<float>(), *sp = sin.const_data_ptr<float>();
    float* op = out.mutable_data_ptr<float>();
    at::parallel_for(0, B * T, grain(heads * D), [&](int64_t b, int64_t end) {
      for (int64_t bt = b; bt < end; ++bt) {
        const float *c = cp + bt * D, *s = sp + bt * D;
        for (int64_t h = 0; h < heads; ++h) {
          const float* xr = xp + (bt * heads + h) * D;
          float* o = op + (bt * heads + h) * D;
          if (!transpose) {
            for (int64_t d = 0; d < half; ++d) o[d] = xr[d] * c[d] + (-xr[d + half]) * s[d];
            for (int64_t d = half; d < D; ++d) o[d] = xr[d] * c[d] + xr[d - half] * s[d];
          } else {
            for (int64_t d = 0; d < half; ++d) o[d] = xr[d] * c[d] + xr[d + half] * s[d + half];
            for (int64_t d = half; d < D; ++d) o[d] = xr[d] * c[d] - xr[d - half] * s[d - half];
          }
        }
      }
    });
  }
};

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (fusable(x) && fusable(w) && w.dim() == 1 && x.size(-1) == w.size(0)) return RmsNormFn::apply(x, w, eps);
  auto h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, true) + eps);
  return w * h.to(x.scalar_type());
}

at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4 && cos.dim() == 3 && x.size(3) % 2 == 0, "rotary: expected x (B, T, heads, D) and cos/sin (B, T, D), got ",
              x.sizes(), " and ", cos.sizes());
  bool same = cos.size(0) == x.size(0) && cos.size(1) == x.size(1) && cos.size(2) == x.size(3) && sin.sizes() == cos.sizes();
  if (same && fusable(x) && fusable(cos) && fusable(sin) && !cos.requires_grad() && !sin.requires_grad())
    return RotaryFn::apply(x, cos, sin);
  int64_t half = x.size(3) / 2;
  auto rot = at::cat({-x.narrow(3, half, half), x.narrow(3, 0, half)}, 3);
  return x * cos.unsqueeze(2) + rot * sin.unsqueeze(2);
}

// ---- RMSNorm and rotary for decoding rows -----------------------------------------------------------

namespace {

// bfloat16 / float16 rows: each row by the same loop (its sums in float32, in one order), so a row's
// result does not depend on the rows beside it; rounded to the dtype where the composite ATen ops
// round (HF's LlamaRMSNorm: the normalised row in float32, rounded, times the weight, rounded).
template <typename T>
at::Tensor rms_norm_rows_half(const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
  at::Tensor x = x_in.contiguous(), w = w_in.to(at::kFloat).contiguous();
  const int64_t H = x.size(-1), N = x.numel() / std::max<int64_t>(H, 1);
  at::Tensor y = at::empty_like(x);
  const T* xp = x.const_data_ptr<T>();
  const float* wp = w.const_data_ptr<float>();
  T* yp = y.mutable_data_ptr<T>();
  const float e = static_cast<float>(eps);
  at::parallel_for(0, N, grain(H), [&](int64_t b, int64_t end) {
    std::vector<float> row(H);
    for (int64_t i = b; i < end; ++i) {
      const T* xr = xp + i * H;
      for (int64_t j = 0; j < H; ++j) row[j] = static_cast<float>(xr[j]);
      const float r = 1.0f / std::sqrt(dot(row.data(), row.data(), H) / static_cast<float>(H) + e);
      T* yr = yp + i * H;
      for (int64_t j = 0; j < H; ++j) yr[j] = static_cast<T>(wp[j] * static_cast<float>(static_cast<T>(row[j] * r)));
    }
  });
  return y;
}

// x · cos + rotate_half(x) · sin with the dtype's rounding after each product and the sum, as the
// composite ATen ops on bfloat16 / float16 tensors; x (B, T, heads, D), cos / sin (B, T, D).
template <typename T>
at::Tensor rotary_rows_half(const at::Tensor& x_in, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  at::Tensor x = x_in.contiguous(), cos = cos_in.contiguous(), sin = sin_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t BT = x.size(0) * x.size(1), heads = x.size(2), D = x.size(3), half = D / 2;
  const T *xp = x.const_data_ptr<T>(), *cp = cos.const_data_ptr<T>(), *sp = sin.const_data_ptr<T>();
  T* op = y.mutable_data_ptr<T>();
  auto r = [](float v) { return static_cast<float>(static_cast<T>(v)); };
  at::parallel_for(0, BT, grain(heads * D), [&](int64_t b, int64_t end) {
    for (int64_t bt = b; bt < end; ++bt) {
      const T *c = cp + bt * D, *s = sp + bt * D;
      for (int64_t h = 0; h < heads; ++h) {
        const T* xr = xp + (bt * heads + h) * D;
        T* o = op + (bt * heads + h) * D;
        for (int64_t d = 0; d < D; ++d) {
          const float rot = d < half ? -static_cast<float>(xr[d + half]) : static_cast<float>(xr[d - half]);
          o[d] = static_cast<T>(r(static_cast<float>(xr[d]) * static_cast<float>(c[d])) + r(rot * static_cast<float>(s[d])));
        }
      }
    }
  });
  return y;
}

bool rows_kernel_dtype(const at::Tensor& t) {
  return t.device().is_cpu() && t.layout() == at::kStrided && (t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf);
}

}  // namespace

at::Tensor rms_norm_rows(const at::Tensor& x, const at::Tensor& w, double eps) {
  const bool graph = at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad());
  if (!graph && rows_kernel_dtype(x) && w.dim() == 1 && x.size(-1) == w.size(0) && w.device().is_cpu()) {
    return x.scalar_type() == at::kBFloat16 ? rms_norm_rows_half<at::BFloat16>(x, w, eps) : rms_norm_rows_half<at::Half>(x, w, eps);
  }
  if (fusable(x) || !x.device().is_cpu()) return rms_norm(x, w, eps);  // float32: the fused kernel goes row by row already; CUDA: one call
  std::vector<at::Tensor> rows;
  auto x2 = x.reshape({-1, x.size(-1)});
  for (int64_t r = 0; r < x2.size(0); ++r) rows.push_back(rms_norm(x2.narrow(0, r, 1), w, eps));
  return at::cat(rows, 0).view(x.sizes());
}

at::Tensor rotary_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const bool graph = at::GradMode::is_enabled() && x.requires_grad();
  const bool same = x.dim() == 4 && cos.dim() == 3 && cos.size(0) == x.size(0) && cos.size(1) == x.size(1) && cos.size(2) == x.size(3) &&
                    sin.sizes() == cos.sizes() && x.size(3) % 2 == 0;
  if (!graph && same && rows_kernel_dtype(x) && cos.scalar_type() == x.scalar_type() && sin.scalar_type() == x.scalar_type()) {
    return x.scalar_type() == at::kBFloat16 ? rotary_rows_half<at::BFloat16>(x, cos, sin) : rotary_rows_half<at::Half>(x, cos, sin);
  }
  if ((same && fusable(x) && fusable(cos) && fusable(sin)) || !x.device().is_cpu()) return rotary(x, cos, sin);
  std::vector<at::Tensor> rows;
  for (int64_t r = 0; r < x.size(0); ++r) rows.push_back(rotary(x.narrow(0, r, 1), cos.narrow(0, r, 1), sin.narrow(0, r, 1)));
  return at::cat(rows, 0);
}

// ---- linear on oneDNN ---------------------------------------------------------------------------

namespace {

using LinearPointwise = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, c10::string_view,
                                   c10::List<std::optional<at::Scalar>>, std::optional<c10::string_view>);

// EMOTORCH_CPU_LINEAR (lib/runtime.ts checks its value), read once: auto (time each kind), onednn
// or blas (pin linear's products), aten (ATen's own linear and conv1d throughout).
enum class CpuLinear : uint8_t { Auto, OneDnn, Blas, Aten };
CpuLinear cpu_linear_env() {
  static const CpuLinear mode = [] {
    const char* env = std::getenv("EMOTORCH_CPU_LINEAR");
    if (env && std::strcmp(env, "onednn") == 0) return CpuLinear::OneDnn;
    if (env && std::strcmp(env, "blas") == 0) return CpuLinear::Blas;
    if (env && std::strcmp(env, "aten") == 0) return CpuLinear::Aten;
    return CpuLinear::Auto;
  }();
  return mode;
}

// ATen's mkldnn::_linear_pointwise (a oneDNN matmul on dense, strided tensors): a Wᵀ (+ b), with
// a (N, in) and W (out, in). Null where this libtorch has no oneDNN, or EMOTORCH_CPU_LINEAR=aten.
const c10::TypedOperatorHandle<LinearPointwise>* onednn_op() {
  static const c10::TypedOperatorHandle<LinearPointwise>* op = []() -> const c10::TypedOperatorHandle<LinearPointwise>* {
    if (cpu_linear_env() == CpuLinear::Aten || !at::hasMKLDNN()) return nullptr;
    try {
      auto h = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "").typed<LinearPointwise>();
      auto probe = at::ones({2, 3});
      auto y = h.call(probe, probe, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);  // (2, 2) of 3s
      if (!y.sizes().equals({2, 2}) || y.min().item<float>() != 3.0f) return nullptr;
      return new c10::TypedOperatorHandle<LinearPointwise>(h);
    } catch (...) {
      return nullptr;
    }
  }();
  return op;
}

at::Tensor onednn_mm_t(const at::Tensor& a, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  return onednn_op()->call(a, w, b, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
}

// ATen's product (the BLAS libtorch was built with, MKL in PyTorch's wheels): a Wᵀ (+ b).
at::Tensor aten_mm_t(const at::Tensor& a, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  return b.has_value() ? at::addmm(*b, a, w.t()) : at::mm(a, w.t());
}

// Which of the two runs a product faster is neither a rule of the ISA nor of the shape: on an
// AMD EPYC oneDNN's fp32 GEMM ran twice as fast as MKL's, on an Intel Xeon capped at AVX2 MKL ran
// the transposed backward products of a training step in 0.6 of oneDNN's time. So the first
// product of each kind (rows bucketed to a power of two, inner and outer sizes, which operand
// is transposed, bias, thread count) runs on both, three times each, alternating, and the BLAS is
// kept when its best time is 5 % below oneDNN's, else oneDNN. The choice is written to a small
// file per machine (CPU model, ISA caps, libtorch version) in emotorch's cache folder and read by
// later processes, so a run and its resumption (or two ranks) use the same backend for the same
// product: same bits. EMOTORCH_CPU_LINEAR=onednn or =blas pins one (=aten also keeps ATen's whole
// linear, see onednn_op).

// A file of measured choices between two implementations of one kind of work (the first, 0, is
// the default), one line per kind: the kind's N numbers, then the choice. The file is per machine:
// <cache>/<prefix>-<hash>.txt, <cache> being EMOTORCH_CACHE_DIR, else $XDG_CACHE_HOME/emotorch,
// else ~/.cache/emotorch; the hash is of the CPU model, the ISA caps in the environment and the
// libtorch version. Later processes read it, so a run and its resumption (or two ranks) make the
// same choice for the same kind: same bits.
template <size_t N>
class ChoiceStore {
 public:
  using Key = std::array<int64_t, N>;
  // `choices`: how many implementations there are (0 … choices − 1)
  ChoiceStore(const char* prefix, int choices) : prefix_(prefix), choices_(choices) {}

  // This process's choice for `k`, else an earlier process's, else none.
  std::optional<int> find(const Key& k) {
    std::lock_guard<std::mutex> lk(mu_);
    if (auto it = used_.find(k); it != used_.end()) return it->second;
    if (!saved_) saved_ = read(nullptr);
    if (auto it = saved_->find(k); it != saved_->end()) return used_.emplace(k, it->second).first->second;
    return std::nullopt;
  }

  // Keeps `chosen` for `k` (written to the file) unless another process wrote a choice for `k`
  // meanwhile: its choice, written first, is the one later processes read, so it is taken too.
  int record(const Key& k, int chosen) {
    std::lock_guard<std::mutex> lk(mu_);
    bool damaged = false;
    auto now = read(&damaged);
    if (auto it = now.find(k); it != now.end()) chosen = it->second;
    if (used_.emplace(k, chosen).second && !now.count(k)) save(now, k, chosen, damaged);
    return used_.at(k);
  }

  // The kinds this process used, each with its choice.
  std::vector<std::pair<Key, int>> table() {
    std::lock_guard<std::mutex> lk(mu_);
    return {used_.begin(), used_.end()};
  }

 private:
  struct Hash {
    size_t operator()(const Key& k) const {
      size_t h = 0;
      for (int64_t v : k) h = h * 1000003 ^ std::hash<int64_t>()(v);
      return h;
    }
  };
  using Map = std::unordered_map<Key, int, Hash>;

  const std::string& file() {
    if (!file_) file_ = find_file();
    return *file_;
  }
  std::string find_file() const {
    std::string dir;
    if (const char* d = std::getenv("EMOTORCH_CACHE_DIR"); d && *d) dir = d;
    else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = std::string(x) + "/emotorch";
    else if (const char* h = std::getenv("HOME"); h && *h) dir = std::string(h) + "/.cache/emotorch";
    else return "";
    return dir + "/" + prefix_ + machine_suffix();
  }

  // "-<hash>.txt": the hash (FNV-1a) of the libtorch version, the ISA caps and the CPU model, worked
  // out once for every store.
  static const std::string& machine_suffix() {
    static const std::string suffix = [] {
      std::string id = std::string(TORCH_VERSION) + "|" + at::get_cpu_capability();
      for (const char* v : {"ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY"}) {
        const char* e = std::getenv(v);
        id += std::string("|") + (e ? e : "");
      }
      std::ifstream cpuinfo("/proc/cpuinfo");
      for (std::string line; std::getline(cpuinfo, line);) {
        if (line.rfind("model name", 0) == 0) {
          id += "|" + line;
          break;
        }
      }
      uint64_t h = 1469598103934665603ULL;
      for (unsigned char c : id) h = (h ^ c) * 1099511628211ULL;
      char name[64];
      std::snprintf(name, sizeof name, "-%016llx.txt", static_cast<unsigned long long>(h));
      return std::string(name);
    }();
    return suffix;
  }

  // The choices written to the file so far (the first line of a kind wins). `damaged`: the file
  // has something after the last line it could read.
  Map read(bool* damaged) {
    Map m;
    if (damaged) *damaged = false;
    const std::string& f = file();
    if (f.empty()) return m;
    std::ifstream in(f);
    if (!in) return m;
    Key k{};
    int64_t g;
    bool bad = false;
    for (;;) {
      size_t i = 0;
      while (i < N && in >> k[i]) i++;
      if (i < N || !(in >> g)) break;
      if (g < 0 || g >= choices_) {
        bad = true;
        break;
      }
      m.emplace(k, static_cast<int>(g));
    }
    if (damaged) *damaged = bad || !in.eof();
    return m;
  }

  // Writes the choice for `k` (best effort: an unwritable cache folder only means the next process
  // times again): appended to the file, or, when it was damaged, the file written anew with `keep` first.
  void save(const Map& keep, const Key& k, int g, bool damaged) {
    const std::string& f = file();
    if (f.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(f).parent_path(), ec);
    std::ofstream out(f, damaged ? std::ios::trunc : std::ios::app);
    if (!out) return;
    auto line = [&](const Key& c, int b) {
      for (int64_t v : c) out << v << ' ';
      out << b << '\n';
    };
    if (damaged)
      for (const auto& [c, b] : keep) line(c, b);
    line(k, g);
  }

  const char* prefix_;
  int choices_;
  std::mutex mu_;
  Map used_;
  std::optional<Map> saved_;
  std::optional<std::string> file_;
};

// Times candidates 0 … count − 1 (run(i)) and returns the one to keep: the first (the default)
// unless another is at least 5 % faster both by its best time and by its median time, so that a
// near tie, where timing noise alone would pick, always gives the default (the choice is kept for
// good). Each candidate first runs once untimed (its first call pays for its setup: oneDNN builds
// a primitive, fresh buffers fault in), then all run in turn, in alternating order, five times
// (two where a call takes over 50 ms): a burst of another process's work has to slow most runs of
// one to turn the choice. `out` ends with the result of the call that ran last, candidate `last`.
template <class Run>
int time_each(int count, const Run& run, at::Tensor& out, int& last) {
  using clock = std::chrono::steady_clock;
  auto timed = [&](int i) {
    out = at::Tensor();  // one result alive at a time
    auto t0 = clock::now();
    out = run(i);
    last = i;
    return std::chrono::duration<double>(clock::now() - t0).count();
  };
  double slowest = 0;
  for (int i = 0; i < count; i++) slowest = std::max(slowest, timed(i));
  int rounds = slowest > 0.05 ? 2 : 5;
  std::vector<std::vector<double>> times(count);
  for (int round = 0; round < rounds; round++) {
    for (int n = 0; n < count; n++) {
      int i = round % 2 ? count - 1 - n : n;
      times[i].push_back(timed(i));
    }
  }
  for (auto& t : times) std::sort(t.begin(), t.end());
  auto median = [](const std::vector<double>& t) { return t[t.size() / 2]; };
  int fastest = 0;
  for (int i = 1; i < count; i++)
    if (times[i][0] < times[fastest][0]) fastest = i;
  bool clear = fastest != 0 && times[fastest][0] < 0.95 * times[0][0] && median(times[fastest]) < 0.95 * median(times[0]);
  return clear ? fastest : 0;
}

// run(choice) for `key`: the choice this process or an earlier one made (one out of range, from a
// damaged file, runs the default), else the candidates timed and the choice recorded. Hands out the
// kept candidate's own result, so the call that timed them gives the bits of every later call.
template <size_t N, class Run>
at::Tensor run_chosen(ChoiceStore<N>& store, const typename ChoiceStore<N>::Key& key, int count, const Run& run) {
  auto valid = [count](int c) { return c < count ? c : 0; };
  if (auto c = store.find(key)) return run(valid(*c));
  at::Tensor y;
  int last = 0;
  int fastest = time_each(count, run, y, last);
  int kept = valid(store.record(key, fastest));
  return kept == last ? y : run(kept);
}

// The kinds `store` has chosen for in this process, each key followed by its choice.
template <size_t N>
std::vector<std::array<int64_t, N + 1>> flat_table(ChoiceStore<N>& store) {
  std::vector<std::array<int64_t, N + 1>> out;
  for (const auto& [k, c] : store.table()) {
    std::array<int64_t, N + 1> r{};
    std::copy(k.begin(), k.end(), r.begin());
    r[N] = c;
    out.push_back(r);
  }
  return out;
}

// linear's products: { rows bucket, inner, outer, threads, a transposed, W transposed, bias } →
// 0 = oneDNN, 1 = BLAS
ChoiceStore<7>& gemm_choices() {
  static auto* s = new ChoiceStore<7>("linear-backends", 2);
  return *s;
}

int64_t pow2_at_least(int64_t n) {
  int64_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// a Wᵀ (+ b) with a (N, in) and W (out, in), each as it lies (either may be a transposed view).
at::Tensor mm_t(const at::Tensor& a, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  auto run = [&](int c) { return c == 0 ? onednn_mm_t(a, w, b) : aten_mm_t(a, w, b); };
  if (cpu_linear_env() == CpuLinear::OneDnn || cpu_linear_env() == CpuLinear::Blas) return run(cpu_linear_env() == CpuLinear::OneDnn ? 0 : 1);
  ChoiceStore<7>::Key key{pow2_at_least(a.size(0)), a.size(1), w.size(0), at::get_num_threads(), a.stride(0) == 1 && a.size(0) > 1,
                          w.stride(0) == 1 && w.size(0) > 1, b.has_value()};
  return run_chosen(gemm_choices(), key, 2, run);
}

struct OneDnnLinear : torch::autograd::Function<OneDnnLinear> {
  // b: an optional (an undefined bias is no autograd input)
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
    auto x2 = x.reshape({-1, x.size(-1)}).contiguous();  // (N, in)
    // Keep only what the backward will use: x for dW, W for dx (a frozen W keeps no activation).
    ctx->save_for_backward({w.requires_grad() ? x2 : at::Tensor(), x.requires_grad() ? w : at::Tensor()});
    ctx->saved_data["bias"] = b.has_value() && b->requires_grad();
    auto shape = x.sizes().vec();
    shape.back() = w.size(0);
    return mm_t(x2, w, b).view(shape);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& g = grads[0];
    auto dy = g.reshape({-1, g.size(-1)}).contiguous();  // (N, out)
    // a Wᵀ for the gradients; with grad mode on (a graph of the backward itself) ATen's
    // differentiable matmul, since the oneDNN op has no derivative
    auto mm = [](const at::Tensor& a, const at::Tensor& w) { return at::GradMode::is_enabled() ? at::matmul(a, w.t()) : mm_t(a, w, std::nullopt); };
    at::Tensor dx, dw, db;
    if (saved[1].defined()) {
      auto shape = g.sizes().vec();
      shape.back() = saved[1].size(1);
      dx = mm(dy, saved[1].t()).view(shape);  // dy W: (N, in)
    }
    if (saved[0].defined()) dw = mm(dy.t(), saved[0].t());  // dyᵀ x: (out, in)
    if (ctx->saved_data["bias"].toBool()) db = dy.sum(0);
    return {dx, dw, db};
  }
};

bool onednn_linear_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!fusable(x) || !fusable(w) || (b.defined() && !fusable(b))) return false;
  if (x.dim() < 1 || w.dim() != 2 || x.numel() == 0 || w.numel() == 0 || (b.defined() && b.dim() != 1)) return false;
  if (at::autocast::is_autocast_enabled(at::kCPU)) return false;
  return onednn_op() != nullptr;
}

// ---- products of a few rows, each as if alone (decoding) -----------------------------------------
//
// y[r] = W x[r] for a weight (N, K) and R rows x (R, K), float32 or bfloat16, sums in float32: the
// weight is read once for all rows (decoding is bound by memory: one row, or sixteen, take the time
// the weight takes to stream), and each output is one fixed chain of sums over k, the same whatever
// R is and wherever the row lies, so a request decoded beside others gets the numbers it gets
// alone. ATen's bfloat16 GEMV ran at half the speed memory allows (a 1.1B LLaMA decoded at 7 tok/s
// in bfloat16, 14 in float16); the products of R rows on oneDNN or the BLAS pick their kernels and
// summation orders by R.

float bf16_to_float(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float as_float(float v) { return v; }
inline float as_float(uint16_t v) { return bf16_to_float(v); }

// s + Σ x[k]·w[k] over k in [k0, K): the elements the vector loops leave.
template <typename TX, typename TW>
float dot_tail(float s, const TX* x, const TW* w, int64_t k0, int64_t K) {
  for (int64_t k = k0; k < K; ++k) s += as_float(x[k]) * as_float(w[k]);
  return s;
}

// A kernel computes Y[r·ldy + n] for r < R, n in [n0, n1).
template <typename T>
using RowsKernel = void (*)(const T* W, const T* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K);

#if defined(__x86_64__)
// Each block computes NB weight rows (outputs n … n + NB − 1) for M input rows at once: NB·M
// accumulator pairs in registers, each weight vector loaded once for the M rows and each input
// vector once for the NB weight rows (one weight row at a time left a core at half the bandwidth
// memory gives, and sixteen rows compute-bound at 0.7 of what this blocking reaches). The chain of
// one output is the same whatever NB, M and the rows around it.
// The AVX-512 vector step of each dtype: L inputs per product into 16 float32 sums.
struct Bf16Avx512 {
  using T = uint16_t;
  using V = __m512bh;
  static constexpr int L = 32;
  __attribute__((target("avx512f,avx512bw,avx512bf16"))) static V load(const T* p) { return (V)_mm512_loadu_si512(p); }
  __attribute__((target("avx512f,avx512bw,avx512bf16"))) static __m512 madd(__m512 a, V x, V w) { return _mm512_dpbf16_ps(a, x, w); }
};
struct F32Avx512 {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  __attribute__((target("avx512f"))) static V load(const T* p) { return _mm512_loadu_ps(p); }
  __attribute__((target("avx512f"))) static __m512 madd(__m512 a, V x, V w) { return _mm512_fmadd_ps(x, w, a); }
};

// One output's chain: a0 takes the inputs [k, k + L) and a1 [k + L, k + 2L) of every 2L, a last
// block of L goes to a0, then a0 + a1 summed across lanes, then the scalar tail.
template <typename Op>
struct BlockAvx512 {
  template <int NB, int M>
  struct At {
    using T = typename Op::T;
    __attribute__((target("avx512f,avx512bw,avx512bf16")))
    static void run(const T* W, const T* X, float* Y, int64_t ldy, int64_t n, int64_t K) {
      constexpr int L = Op::L;
      __m512 a0[NB][M], a1[NB][M];
      for (int i = 0; i < NB; ++i)
        for (int j = 0; j < M; ++j) a0[i][j] = a1[i][j] = _mm512_setzero_ps();
      int64_t k = 0;
      for (; k + 2 * L <= K; k += 2 * L) {
        typename Op::V x0[M], x1[M];
        for (int j = 0; j < M; ++j) {
          x0[j] = Op::load(X + j * K + k);
          x1[j] = Op::load(X + j * K + k + L);
        }
        for (int i = 0; i < NB; ++i) {
          const T* w = W + (n + i) * K;
          const auto w0 = Op::load(w + k), w1 = Op::load(w + k + L);
          for (int j = 0; j < M; ++j) {
            a0[i][j] = Op::madd(a0[i][j], x0[j], w0);
            a1[i][j] = Op::madd(a1[i][j], x1[j], w1);
          }
        }
      }
      for (; k + L <= K; k += L)
        for (int i = 0; i < NB; ++i) {
          const auto w0 = Op::load(W + (n + i) * K + k);
          for (int j = 0; j < M; ++j) a0[i][j] = Op::madd(a0[i][j], Op::load(X + j * K + k), w0);
        }
      for (int i = 0; i < NB; ++i)
        for (int j = 0; j < M; ++j)
          Y[j * ldy + n + i] = dot_tail(_mm512_reduce_add_ps(_mm512_add_ps(a0[i][j], a1[i][j])), X + j * K, W + (n + i) * K, k, K);
    }
  };
};
template <int NB, int M> using BlockBf16Avx512 = BlockAvx512<Bf16Avx512>::At<NB, M>;
template <int NB, int M> using BlockF32Avx512 = BlockAvx512<F32Avx512>::At<NB, M>;

// 8 bfloat16 → 8 float32
__attribute__((target("avx2,fma"))) inline __m256 widen8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
__attribute__((target("avx2,fma"))) inline __m256 widen8(const float* p) { return _mm256_loadu_ps(p); }

__attribute__((target("avx2,fma"))) inline float hsum8(__m256 a) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// AVX2 has no bfloat16 products: a bfloat16 weight is widened to float32 as it is read, the rows
// are widened once per call (rows_avx2_bf16), the same numbers either way.
template <typename TW, typename TX>
struct BlockAvx2 {
  template <int NB, int M>
  struct At {
    __attribute__((target("avx2,fma")))
    static void run(const TW* W, const TX* X, float* Y, int64_t ldy, int64_t n, int64_t K) {
      __m256 a0[NB][M], a1[NB][M];
      for (int i = 0; i < NB; ++i)
        for (int j = 0; j < M; ++j) a0[i][j] = a1[i][j] = _mm256_setzero_ps();
      int64_t k = 0;
      for (; k + 16 <= K; k += 16) {
        for (int i = 0; i < NB; ++i) {
          const TW* w = W + (n + i) * K;
          const __m256 w0 = widen8(w + k), w1 = widen8(w + k + 8);
          for (int j = 0; j < M; ++j) {
            a0[i][j] = _mm256_fmadd_ps(widen8(X + j * K + k), w0, a0[i][j]);
            a1[i][j] = _mm256_fmadd_ps(widen8(X + j * K + k + 8), w1, a1[i][j]);
          }
        }
      }
      for (int i = 0; i < NB; ++i)
        for (int j = 0; j < M; ++j) Y[j * ldy + n + i] = dot_tail(hsum8(_mm256_add_ps(a0[i][j], a1[i][j])), X + j * K, W + (n + i) * K, k, K);
    }
  };
};
template <int NB, int M> using BlockAvx2Bf16 = BlockAvx2<uint16_t, float>::At<NB, M>;
template <int NB, int M> using BlockAvx2F32 = BlockAvx2<float, float>::At<NB, M>;

// Weight rows NB at a time (the last ones one by one), input rows MM at a time (MM 2 or 4; the
// rest two and one at a time).
template <typename TW, typename TX, template <int, int> class Blk, int NB, int MM = 2>
void rows_blocked(const TW* W, const TX* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  auto rows = [&](auto nb, int64_t n) {
    constexpr int B = decltype(nb)::value;
    int64_t r = 0;
    if constexpr (MM == 4)
      for (; r + 4 <= R; r += 4) Blk<B, 4>::run(W, X + r * K, Y + r * ldy, ldy, n, K);
    for (; r + 2 <= R; r += 2) Blk<B, 2>::run(W, X + r * K, Y + r * ldy, ldy, n, K);
    if (r < R) Blk<B, 1>::run(W, X + r * K, Y + r * ldy, ldy, n, K);
  };
  int64_t n = n0;
  for (; n + NB <= n1; n += NB) rows(std::integral_constant<int, NB>{}, n);
  for (; n < n1; ++n) rows(std::integral_constant<int, 1>{}, n);
}

// bfloat16 on AVX2: the rows widened once (exactly), then the weight rows one at a time against four rows.
void rows_avx2_bf16(const uint16_t* W, const uint16_t* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  thread_local std::vector<float> xf;
  xf.resize(static_cast<size_t>(R * K));
  for (int64_t i = 0; i < R * K; ++i) xf[i] = bf16_to_float(X[i]);
  rows_blocked<uint16_t, float, BlockAvx2Bf16, 1, 4>(W, xf.data(), Y, R, ldy, n0, n1, K);
}
#endif

template <typename T>
void rows_scalar(const T* W, const T* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t r = 0; r < R; ++r) Y[r * ldy + n] = dot_tail(0.f, X + r * K, W + n * K, 0, K);
}

// Whether the process asks libtorch to stay at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 or
// ATEN_CPU_CAPABILITY=avx2, as the AVX2 benchmark profile and CI's second pass set).
bool capped_at_avx2() {
  auto capped = [](const char* var, const char* avx2) { const char* v = std::getenv(var); return v && std::string_view(v).find(avx2) == 0; };
  return capped("ONEDNN_MAX_CPU_ISA", "AVX2") || capped("ATEN_CPU_CAPABILITY", "avx2");
}

// The kernels for this CPU: AVX-512 (with BF16 for bfloat16), else AVX2, else plain C++; chosen once.
template <typename T>
RowsKernel<T> rows_kernel() {
  static const RowsKernel<T> k = []() -> RowsKernel<T> {
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool avx2_only = capped_at_avx2();
    if constexpr (std::is_same_v<T, uint16_t>) {
      if (!avx2_only && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw"))
        return &rows_blocked<T, T, BlockBf16Avx512, 4>;
    } else {
      if (!avx2_only && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))  // the block kernel's target
        return &rows_blocked<T, T, BlockF32Avx512, 4>;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      if constexpr (std::is_same_v<T, uint16_t>) return &rows_avx2_bf16;
      else return &rows_blocked<T, T, BlockAvx2F32, 1, 4>;
    }
#endif
    return &rows_scalar<T>;
  }();
  return k;
}

// Whether the row kernels take this product: float32 or bfloat16 rows and weight on the CPU, a
// contiguous weight, no autograd graph, no autocast.
bool rows_kernel_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!x.device().is_cpu() || w.dim() != 2 || !w.is_contiguous() || x.scalar_type() != w.scalar_type() || w.layout() != at::kStrided) return false;
  if (w.scalar_type() != at::kBFloat16 && w.scalar_type() != at::kFloat) return false;
  if (x.dim() < 1 || x.size(-1) != w.size(1) || w.numel() == 0 || x.numel() == 0) return false;
  if (b.defined() && (b.dim() != 1 || b.size(0) != w.size(0) || !b.device().is_cpu())) return false;
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()))) return false;
  return !at::autocast::is_autocast_enabled(at::kCPU);
}

#if defined(__x86_64__)
// ---- bfloat16 rows on AMX --------------------------------------------------------------------------
//
// On CPUs with AMX the vector kernels above are compute-bound from a few rows on (sixteen rows of a
// 1.1B model: 0.3 s a step where streaming the weights takes 0.1 s). The tiles compute Yᵀ = W Xᵀ:
// A = 16 weight rows × 32 k as they lie in memory, B = 32 k × 16 input rows packed in pairs (the
// tiles' VNNI layout, made once per call from the few rows), C = 16 × 16 float32 sums. Each sum
// takes its own weight row and input row through the same chain of tile products whatever the other
// columns hold (zeros where fewer than 16 rows), so a row's outputs are the ones it gets alone.
// Whole blocks of 16 outputs take the tiles; the last N mod 16 outputs and any K not a multiple of
// 32 take the vector kernel (the choice depends on the weight's shape only).

struct TileConfig {
  uint8_t palette_id = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// AMX-BF16 and AMX-TILE present, the process allowed to use the tile data (Linux asks each process
// to request it), and no AVX2 cap asked for; checked once.
bool amx_bf16() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (capped_at_avx2() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;  // AMX-BF16, AMX-TILE
    constexpr long kReqXcompPerm = 0x1023, kXtiledata = 18;   // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtiledata) == 0;
  }();
  return ok;
}

// Rows r0 … r0 + m − 1 (m ≤ 16) of X (·, K) as B tiles: P[kb][i][c] = the pair of bfloat16 k = 32·kb + 2i, 2i + 1 of row r0 + c.
void pack_rows_vnni(const uint16_t* X, int64_t r0, int64_t m, int64_t K, uint32_t* P) {
  std::memset(P, 0, static_cast<size_t>(K / 32) * 256 * 4);
  for (int64_t c = 0; c < m; ++c) {
    const auto* x = reinterpret_cast<const uint32_t*>(X + (r0 + c) * K);
    for (int64_t kb = 0; kb < K / 32; ++kb)
      for (int i = 0; i < 16; ++i) P[(kb * 16 + i) * 16 + c] = x[kb * 16 + i];
  }
}

// Output blocks [nb0, nb1) (16 outputs each) for the m packed rows: Y[(r0 + c)·ldy + n].
__attribute__((target("amx-tile,amx-bf16")))
void amx_blocks(const uint16_t* W, const uint32_t* P, float* Y, int64_t r0, int64_t m, int64_t ldy, int64_t nb0, int64_t nb1, int64_t K) {
  TileConfig cfg;
  for (int t = 0; t < 5; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  alignas(64) float out[2][16][16];
  for (int64_t nb = nb0; nb < nb1; nb += 2) {
    const bool two = nb + 1 < nb1;
    _tile_zero(0);
    _tile_zero(1);
    for (int64_t kb = 0; kb < K / 32; ++kb) {
      // each row of a block is its own stream; a weight mapped from its file lies in 4 KiB pages,
      // whose ends stop the hardware prefetcher: fetch 8 tiles (512 bytes) ahead by hand
      if (kb + 8 < K / 32)
        for (int64_t i = 0; i < (two ? 32 : 16); ++i) _mm_prefetch(reinterpret_cast<const char*>(W + (nb * 16 + i) * K + (kb + 8) * 32), _MM_HINT_T0);
      _tile_loadd(4, P + kb * 256, 64);
      _tile_loadd(2, W + nb * 16 * K + kb * 32, K * 2);
      _tile_dpbf16ps(0, 2, 4);
      if (two) {
        _tile_loadd(3, W + (nb + 1) * 16 * K + kb * 32, K * 2);
        _tile_dpbf16ps(1, 3, 4);
      }
    }
    _tile_stored(0, out[0], 64);
    if (two) _tile_stored(1, out[1], 64);
    for (int h = 0; h <= static_cast<int>(two); ++h)
      for (int i = 0; i < 16; ++i)
        for (int64_t c = 0; c < m; ++c) Y[(r0 + c) * ldy + (nb + h) * 16 + i] = out[h][i][c];
  }
  _tile_release();
}
#endif

at::Tensor rows_product(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const int64_t N = w.size(0), K = w.size(1), R = x.numel() / K;
  auto xc = x.contiguous();
  auto y = at::empty({R, N}, x.options().dtype(at::kFloat));
  float* Y = y.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(4, 65536 / std::max<int64_t>(K * R, 1));
  if (w.scalar_type() == at::kBFloat16) {
    const auto* W = reinterpret_cast<const uint16_t*>(w.const_data_ptr());
    const auto* X = reinterpret_cast<const uint16_t*>(xc.const_data_ptr());
    const auto kernel = rows_kernel<uint16_t>();
    int64_t tiled = 0;  // outputs [0, tiled) on AMX
#if defined(__x86_64__)
    if (K % 32 == 0 && N >= 16 && amx_bf16()) {
      tiled = N / 16 * 16;
      std::vector<uint32_t> packed(static_cast<size_t>(K / 32) * 256);
      for (int64_t r0 = 0; r0 < R; r0 += 16) {
        const int64_t m = std::min<int64_t>(16, R - r0);
        pack_rows_vnni(X, r0, m, K, packed.data());
        // pairs of blocks per task, about 1 MiB of weight each
        at::parallel_for(0, tiled / 32 + (tiled % 32 ? 1 : 0), std::max<int64_t>(1, (1 << 20) / (32 * K * 2)), [&](int64_t p0, int64_t p1) {
          amx_blocks(W, packed.data(), Y, r0, m, N, 2 * p0, std::min<int64_t>(2 * p1, tiled / 16), K);
        });
      }
    }
#endif
    if (tiled < N) at::parallel_for(tiled, N, grain, [&](int64_t n0, int64_t n1) { kernel(W, X, Y, R, N, n0, n1, K); });
  } else {
    const float* W = w.const_data_ptr<float>();
    const float* X = xc.const_data_ptr<float>();
    const auto kernel = rows_kernel<float>();
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) { kernel(W, X, Y, R, N, n0, n1, K); });
  }
  if (b.defined()) y.add_(b);
  auto shape = x.sizes().vec();
  shape.back() = N;
  return (w.scalar_type() == at::kFloat ? y : y.to(w.scalar_type())).view(shape);
}

}  // namespace

std::vector<std::array<int64_t, 8>> linear_backend_table() { return flat_table(gemm_choices()); }

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  auto bias = opt(b);
  // one bfloat16 row (decoding): the row kernel, at the speed memory streams the weight
  if (x.scalar_type() == at::kBFloat16 && x.numel() == w.size(-1) && rows_kernel_applies(x, w, b)) return rows_product(x, w, b);
  if (!onednn_linear_applies(x, w, b)) return at::linear(x, w, bias);
  TORCH_CHECK(x.size(-1) == w.size(1), "linear: input (..., ", x.size(-1), ") does not match weight (", w.size(0), ", ", w.size(1), ")");
  if (b.defined()) TORCH_CHECK(b.size(0) == w.size(0), "linear: bias (", b.size(0), ") does not match weight (", w.size(0), ", ", w.size(1), ")");
  if (!at::GradMode::is_enabled() || !(x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()))) {
    auto shape = x.sizes().vec();
    shape.back() = w.size(0);
    return mm_t(x.reshape({-1, x.size(-1)}).contiguous(), w, bias).view(shape);
  }
  return OneDnnLinear::apply(x, w, bias);
}

at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  TORCH_CHECK(x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1), "linear_rows: input ", x.sizes(), " does not match weight ", w.sizes());
  if (rows_kernel_applies(x, w, b)) return rows_product(x, w, b);
  const int64_t R = x.numel() / std::max<int64_t>(x.size(-1), 1);
  if (R <= 1 || !x.device().is_cpu()) return linear(x, w, b);  // CUDA: one product for all rows
  auto x2 = x.reshape({R, 1, x.size(-1)});
  std::vector<at::Tensor> ys;
  for (int64_t r = 0; r < R; ++r) ys.push_back(linear(x2[r], w, b));
  auto shape = x.sizes().vec();
  shape.back() = w.size(0);
  return at::cat(ys, 0).view(shape);
}

// ---- 1-D convolution over time-major rows ---------------------------------------------------------

namespace {

// oneDNN's convolution on the rows as they lie: (B, T, C) contiguous is (B, C, 1, T) in NHWC memory.
at::Tensor conv_rows_nhwc(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t s, int64_t pad, int64_t groups) {
  auto w4 = w.unsqueeze(2).contiguous(at::MemoryFormat::ChannelsLast);
  std::array<int64_t, 2> st{1, s}, pd{0, pad}, dil{1, 1};
  auto y = at::conv2d(x.permute({0, 2, 1}).unsqueeze(2), w4, opt(b), st, pd, dil, groups);
  return y.contiguous(at::MemoryFormat::ChannelsLast).squeeze(2).permute({0, 2, 1});  // (B, T, C_out), contiguous
}

// The channels-first convolution (B, C, T) on the rows transposed (a copy), what PyTorch runs for
// HF's Conv1d; returns its output transposed, a view.
at::Tensor conv_rows_ncw(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t s, int64_t pad, int64_t groups) {
  return at::conv1d(x.transpose(1, 2), w, opt(b), s, pad, 1, groups).transpose(1, 2);
}

// Groups 1, no padding: y[t] = b + Σ_j W_j x[s·t + j] as BLAS products over views of the rows,
// nothing copied. The taps go in blocks of s: block q (taps q·s … q·s + n − 1) reads, for output t,
// the rows s·(t + q) … s·(t + q) + n − 1, which lie together (n·C_in numbers) one stride of s·C_in
// from output t to t + 1; so the block is a (T, n·C_in) matrix with leading dimension s·C_in ≥
// n·C_in, times the matching columns of the weight laid out [o, j·C_in + c]. A thin input (C_in < 16,
// the waveform) whose taps overlap is unfolded into one (T, k·C_in) copy instead.
at::Tensor conv_rows_gemm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t s) {
  int64_t B = x.size(0), Tin = x.size(1), Ci = x.size(2), Co = w.size(0), k = w.size(2), T = (Tin - k) / s + 1;
  auto wf = w.permute({0, 2, 1}).contiguous().view({Co, k * Ci});
  at::Tensor src = x;
  int64_t row = s * Ci, per_batch = Tin * Ci;
  std::vector<std::pair<int64_t, int64_t>> blocks;  // (first column, width)
  if (Ci < 16 && k > s) {
    src = x.as_strided({B, T, k * Ci}, {Tin * Ci, s * Ci, 1}).contiguous();
    row = k * Ci;
    per_batch = T * k * Ci;
    blocks.emplace_back(0, k * Ci);
  } else {
    for (int64_t q = 0; q * s < k; q++) blocks.emplace_back(q * s * Ci, std::min(s, k - q * s) * Ci);
  }
  auto y = at::empty({B, T, Co}, x.options());
  for (int64_t i = 0; i < B; i++) {
    auto yi = y.select(0, i);
    for (size_t q = 0; q < blocks.size(); q++) {
      auto [col, n] = blocks[q];
      auto a = src.as_strided({T, n}, {row, 1}, src.storage_offset() + i * per_batch + col);
      auto wq = wf.narrow(1, col, n).t();
      if (q > 0) yi.addmm_(a, wq);
      else if (b.defined()) at::addmm_out(yi, b, a, wq);
      else at::mm_out(yi, a, wq);
    }
  }
  return y;
}

// conv1d_rows's kinds: { C_in, C_out, kernel, stride, padding, groups, rows bucket (B·T_out),
// threads, bias } → 0 = oneDNN on the rows (NHWC), 1 = channels-first, 2 = BLAS products
ChoiceStore<9>& conv_choices() {
  static auto* s = new ChoiceStore<9>("conv-backends", 3);
  return *s;
}

}  // namespace

bool bf16_on_cpu(const at::Tensor& x) {
  return x.device().is_cpu() && (x.scalar_type() == at::kBFloat16 ||
                                 (at::autocast::is_autocast_enabled(at::kCPU) && at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16));
}

at::Tensor transpose_rows(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "transpose_rows: expected (batch, rows, columns) but got ", x.sizes());
  if (!x.device().is_cpu() || x.size(1) * x.size(2) < 3600) return x.transpose(1, 2).contiguous();
  return SwapLastTwoFn::apply(x);
}

at::Tensor conv1d_rows(const at::Tensor& x_in, const at::Tensor& w, const at::Tensor& b, int64_t stride, int64_t padding, int64_t groups) {
  TORCH_CHECK(x_in.dim() == 3 && w.dim() == 3 && groups > 0 && x_in.size(2) == w.size(1) * groups && w.size(0) % groups == 0,
              "conv1d_rows: expected x (B, T, C_in) and weight (C_out, C_in / groups, k), got ", x_in.sizes(), " and ", w.sizes());
  TORCH_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "conv1d_rows: bias must be (", w.size(0), ")");
  TORCH_CHECK(x_in.size(1) + 2 * padding >= w.size(2), "conv1d_rows: ", x_in.size(1), " frames (padding ", padding, ") are fewer than the kernel (",
              w.size(2), ")");
  bool graph = at::GradMode::is_enabled() && (x_in.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()));
  // oneDNN's bfloat16 grouped convolution on AMX CPUs (libtorch 2.13) returns wrong numbers when a
  // group has fewer than 16 input channels (48 channels in 4 groups: errors the size of the output,
  // PyTorch's own F.conv1d alike); such convolutions run in float32 and are rounded back.
  if (x_in.device().is_cpu() && x_in.scalar_type() == at::kBFloat16 && groups > 1 && w.size(1) < 16) {
    auto y = conv_rows_ncw(x_in.to(at::kFloat), w.to(at::kFloat), b.defined() ? b.to(at::kFloat) : b, stride, padding, groups);
    return y.to(at::kBFloat16);
  }
  // bfloat16 with a graph (groups 1): oneDNN computes in NHWC either way, and ATen's channels-first
  // convolution copies its output and its input gradient back element by element
  if (graph && groups == 1 && bf16_on_cpu(x_in)) return conv_rows_nhwc(x_in, w, b, stride, padding, groups);
  if (graph || !fusable(x_in) || !fusable(w) || (b.defined() && !fusable(b)) || !at::hasMKLDNN() || cpu_linear_env() == CpuLinear::Aten)
    return conv_rows_ncw(x_in, w, b, stride, padding, groups);
  at::Tensor x = x_in.contiguous();
  int64_t T = (x.size(1) + 2 * padding - w.size(2)) / stride + 1;
  bool gemm = groups == 1 && padding == 0;
  ChoiceStore<9>::Key key{x.size(2), w.size(0), w.size(2), stride, padding, groups, pow2_at_least(x.size(0) * T), at::get_num_threads(), b.defined()};
  auto run = [&](int c) {
    if (c == 0) return conv_rows_nhwc(x, w, b, stride, padding, groups);
    if (c == 1) return conv_rows_ncw(x, w, b, stride, padding, groups).contiguous();
    return conv_rows_gemm(x, w, b, stride);
  };
  return run_chosen(conv_choices(), key, gemm ? 3 : 2, run);
}

std::vector<std::array<int64_t, 10>> conv_backend_table() { return flat_table(conv_choices()); }

// ---- norm + GELU in place, and the cached weight norm -------------------------------------------

namespace {

// Rows per block: about 64K floats (256 KiB, in L2 with its normalized copy).
int64_t block_rows(int64_t C) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(C, 1)); }

void check_in_place(const at::Tensor& x, const char* what) {
  TORCH_CHECK(norm_gelu_applies(x), what, ": expected a contiguous float32 CPU tensor, got ", x.sizes(), " ", x.scalar_type(), " on ",
              x.device());
  TORCH_CHECK(!(at::GradMode::is_enabled() && x.requires_grad()), what, ": works in place, without an autograd graph");
}

}  // namespace

bool norm_gelu_applies(const at::Tensor& x) { return fusable(x) && x.is_contiguous() && x.dim() >= 2; }

void layer_norm_gelu_(at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  check_in_place(x, "layer_norm_gelu_");
  int64_t C = x.size(-1), N = x.numel() / std::max<int64_t>(C, 1), block = block_rows(C);
  auto rows = x.view({N, C});
  auto wd = w.defined() ? std::optional<at::Tensor>(w.detach()) : std::nullopt, bd = b.defined() ? std::optional<at::Tensor>(b.detach()) : std::nullopt;
  std::array<int64_t, 1> shape{C};
  // Inside a task ATen's kernels run on the calling thread; grad mode is per thread, so off here too.
  at::parallel_for(0, (N + block - 1) / block, 1, [&](int64_t first, int64_t end) {
    at::NoGradGuard no_grad;
    for (int64_t i = first; i < end; ++i) {
      auto r = rows.narrow(0, i * block, std::min(block, N - i * block));
      auto y = at::layer_norm(r, shape, wd, bd, eps);
      at::gelu_(y);
      r.copy_(y);
    }
  });
}

void channel_norm_gelu_(at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps) {
  check_in_place(x, "channel_norm_gelu_");
  TORCH_CHECK(x.dim() == 3, "channel_norm_gelu_: expected x (B, T, C), got ", x.sizes());
  at::NoGradGuard no_grad;
  int64_t B = x.size(0), T = x.size(1), C = x.size(2), block = block_rows(C), per = (T + block - 1) / block;
  // Σx and Σx² per (batch, channel) in double, each thread over its own rows, in one pass (ATen's
  // var_mean over the middle dimension took 71 ms on WavLM's first conv output, (1, 31999, 512))
  int threads = at::get_num_threads();
  auto partial = at::zeros({threads, B, 2, C}, x.options().dtype(at::kDouble));
  const float* xp = x.const_data_ptr<float>();
  double* pp = partial.mutable_data_ptr<double>();
  at::parallel_for(0, B * T, grain(C), [&](int64_t first, int64_t end) {
    double* acc = pp + static_cast<int64_t>(at::get_thread_num()) * B * 2 * C;
    for (int64_t r = first; r < end; ++r) {
      const float* row = xp + r * C;
      double *s = acc + (r / T) * 2 * C, *q = s + C;
      for (int64_t c = 0; c < C; ++c) {
        double v = row[c];
        s[c] += v;
        q[c] += v * v;
      }
    }
  });
  auto sums = partial.sum(0);  // (B, 2, C)
  auto mean = sums.select(1, 0).div(static_cast<double>(T));
  auto var = sums.select(1, 1).div(static_cast<double>(T)).sub_(mean * mean).clamp_min_(0);
  auto scale = var.add_(eps).rsqrt_();
  if (w.defined()) scale.mul_(w.detach().to(at::kDouble));
  auto shift = mean.mul(scale).neg_();
  if (b.defined()) shift.add_(b.detach().to(at::kDouble));
  scale = scale.to(at::kFloat).unsqueeze(1);  // (B, 1, C)
  shift = shift.to(at::kFloat).unsqueeze(1);
  at::parallel_for(0, B * per, 1, [&](int64_t first, int64_t end) {
    at::NoGradGuard no_grad_here;
    for (int64_t i = first; i < end; ++i) {
      int64_t n = i / per, t = (i % per) * block;
      auto r = x.select(0, n).narrow(0, t, std::min(block, T - t));
      r.mul_(scale.select(0, n)).add_(shift.select(0, n));
      at::gelu_(r);
    }
  });
}

at::Tensor relative_offsets(int64_t T, const at::TensorOptions& opts) {
  auto pos = at::arange(T, opts.dtype(at::kLong));
  return (pos.unsqueeze(0) - pos.unsqueeze(1) + (T - 1)).view({-1});
}

at::Tensor gated_relative_bias(const at::Tensor& gate_in, const at::Tensor& diag_in) {
  TORCH_CHECK(gate_in.dim() == 4 && gate_in.size(3) == 1 && diag_in.dim() == 2 && diag_in.size(0) == gate_in.size(1) &&
                  diag_in.size(1) == 2 * gate_in.size(2) - 1,
              "gated_relative_bias: expected gate (B, H, T, 1) and diagonals (H, 2T - 1), got ", gate_in.sizes(), " and ", diag_in.sizes());
  TORCH_CHECK(!(at::GradMode::is_enabled() && (gate_in.requires_grad() || diag_in.requires_grad())),
              "gated_relative_bias: no autograd graph (multiply the full bias for one)");
  int64_t B = gate_in.size(0), H = gate_in.size(1), T = gate_in.size(2), W = 2 * T - 1;
  if (!fusable(gate_in) || !fusable(diag_in) || gate_in.scalar_type() != diag_in.scalar_type()) {
    return gate_in * diag_in.index_select(1, relative_offsets(T, gate_in.options())).view({1, H, T, T});
  }
  at::Tensor gate = gate_in.contiguous(), diag = diag_in.contiguous();
  at::Tensor out = at::empty({B, H, T, T}, gate.options());
  const float *gp = gate.const_data_ptr<float>(), *dp = diag.const_data_ptr<float>();
  float* op = out.mutable_data_ptr<float>();
  at::parallel_for(0, B * H * T, grain(T), [&](int64_t first, int64_t end) {
    for (int64_t r = first; r < end; ++r) {  // r: the row (b, h, i)
      int64_t h = (r / T) % H, i = r % T;
      const float g = gp[r];
      const float* d = dp + h * W + (T - 1 - i);  // d[j] = diag[h, T − 1 + j − i]
      float* o = op + r * T;
      for (int64_t j = 0; j < T; ++j) o[j] = g * d[j];
    }
  });
  return out;
}

bool WeightNormCache::Seen::is(const at::Tensor& t) const {
  return !storage.expired() && storage._unsafe_get_target() == t.storage().unsafeGetStorageImpl() && data == t.data_ptr() &&
         version == t._version();
}

void WeightNormCache::Seen::take(const at::Tensor& t) {
  storage = t.storage().getWeakStorageImpl();
  data = t.data_ptr();
  version = t._version();
}

at::Tensor WeightNormCache::get(const at::Tensor& v, const at::Tensor& g) {
  if (at::GradMode::is_enabled() && (v.requires_grad() || g.requires_grad())) return at::_weight_norm(v, g, 2);
  if (w_.defined() && v_.is(v) && g_.is(g)) return w_;
  at::NoGradGuard no_grad;
  w_ = at::_weight_norm(v, g, 2).permute({0, 2, 1}).contiguous().permute({0, 2, 1});  // (C_out, C_in / groups, k), stored (C_out, k, C_in / groups)
  v_.take(v);
  g_.take(g);
  return w_;
}

}  // namespace et::nn
