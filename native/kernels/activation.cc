#include "kernels/activation.h"

#include "kernels/lanes.h"
#include "kernels/linear_rows.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace et::nn {

at::Tensor activate(const at::Tensor& x, const std::string& name) {
  if (name == "relu") return at::relu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "gelu_tanh") return at::gelu(x, "tanh");
  if (name == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (name == "tanh") return at::tanh(x);
  if (name == "silu") return at::silu(x);
  if (name == "sigmoid") return at::sigmoid(x);
  if (name == "identity") return x;
  TORCH_CHECK(false, "unknown activation '", name, "'");
}

at::Tensor activate_temp(at::Tensor x, const std::string& name) {
  if (at::GradMode::is_enabled() && x.requires_grad()) return activate(x, name);
  if (name == "gelu") return at::gelu_(x);
  if (name == "gelu_tanh") return at::gelu_(x, "tanh");
  if (name == "relu") return at::relu_(x);
  if (name == "silu") return at::silu_(x);
  if (name == "tanh") return at::tanh_(x);
  if (name == "sigmoid") return at::sigmoid_(x);
  return activate(x, name);
}

// ---- SiLU(g) · u of decoding rows (see activation.h)

namespace {

using namespace lanes;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
// Rows r0 … r1 of I elements (row strides in elements, unit stride along I), T float or bfloat16
// (uint16_t): s = g / (1 + e^−g), rounded to T, then s · u rounded to T. Every element by the same
// W-lane code, the last ones through a zero-padded vector.
template <int W, typename T>
[[gnu::always_inline]] inline void silu_mul_body(const T* g, const T* u, T* y, int64_t gs, int64_t us, int64_t I, int64_t r0, int64_t r1) {
  using F = typename Lanes<W>::F;
  constexpr bool bf16 = std::is_same_v<T, uint16_t>;
  auto one = [](F gv, F uv) {
    F s = gv / (1.0f + exp_lanes<W>(-gv));
    if constexpr (bf16) s = round_bf16<W>(s);
    const F p = s * uv;
    return bf16 ? round_bf16<W>(p) : p;
  };
  auto store = [](T* out, F v, int64_t n) {
    if constexpr (bf16) {
      uint32_t b[W];
      std::memcpy(b, &v, sizeof v);
      for (int64_t l = 0; l < n; ++l) out[l] = static_cast<uint16_t>(b[l] >> 16);
    } else {
      std::memcpy(out, &v, static_cast<size_t>(n) * 4);
    }
  };
  for (int64_t r = r0; r < r1; ++r) {
    const T* gr = g + r * gs;
    const T* ur = u + r * us;
    T* yr = y + r * I;
    int64_t k = 0;
    for (; k + W <= I; k += W) store(yr + k, one(load<W>(gr + k), load<W>(ur + k)), W);
    if (k < I) {
      T gt[W] = {}, ut[W] = {};
      std::memcpy(gt, gr + k, static_cast<size_t>(I - k) * sizeof(T));
      std::memcpy(ut, ur + k, static_cast<size_t>(I - k) * sizeof(T));
      store(yr + k, one(load<W>(gt), load<W>(ut)), I - k);
    }
  }
}
#pragma GCC diagnostic pop

template <typename T>
using SiluMulFn = void (*)(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t, int64_t);

#define ET_SILU_MUL(NAME, ATTR, W)                                                                          \
  template <typename T>                                                                                     \
  ATTR void NAME(const T* g, const T* u, T* y, int64_t gs, int64_t us, int64_t I, int64_t r0, int64_t r1) { \
    silu_mul_body<W, T>(g, u, y, gs, us, I, r0, r1);                                                        \
  }
#if defined(__x86_64__)
ET_SILU_MUL(silu_mul_avx512, ET_LANES16, 16)
ET_SILU_MUL(silu_mul_avx2, ET_LANES8, 8)
#endif
ET_SILU_MUL(silu_mul_plain, , 4)
#undef ET_SILU_MUL

template <typename T>
SiluMulFn<T> silu_mul_fn() {
#if defined(__x86_64__)
  static const SiluMulFn<T> fn = lanes_pick<SiluMulFn<T>>(&silu_mul_avx512<T>, &silu_mul_avx2<T>, &silu_mul_plain<T>);
  return fn;
#else
  return &silu_mul_plain<T>;
#endif
}

}  // namespace

at::Tensor silu_mul_rows(const at::Tensor& g, const at::Tensor& u) {
  const auto dt = g.scalar_type();
  if (!g.device().is_cpu() || !u.device().is_cpu() || (dt != at::kFloat && dt != at::kBFloat16) || u.scalar_type() != dt ||
      !g.sizes().equals(u.sizes()) || g.dim() < 1 || g.stride(-1) != 1 || u.stride(-1) != 1)
    return {};
  if (at::GradMode::is_enabled() && (g.requires_grad() || u.requires_grad())) return {};
  const int64_t I = g.size(-1), R = I > 0 ? g.numel() / I : 0;
  // rows as (R, I) with a row stride: every dimension but the last must fold into one
  auto row_stride = [&](const at::Tensor& t) -> int64_t {
    int64_t stride = -1, expect = 0;
    for (int64_t d = t.dim() - 2; d >= 0; --d) {
      if (t.size(d) == 1) continue;
      if (stride < 0) stride = expect = t.stride(d);
      else if (t.stride(d) != expect) return -1;
      expect *= t.size(d);
    }
    return stride < 0 ? I : stride;
  };
  const int64_t gs = row_stride(g), us = row_stride(u);
  if (gs < 0 || us < 0) return {};
  auto y = at::empty(g.sizes(), g.options().memory_format(at::MemoryFormat::Contiguous));
  if (R == 0 || I == 0) return y;
  const int64_t grain = std::max<int64_t>(1, 16384 / I);  // whole rows a task
  if (dt == at::kFloat) {
    const auto fn = silu_mul_fn<float>();
    const float *gp = g.const_data_ptr<float>(), *up = u.const_data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, R, grain, [&](int64_t r0, int64_t r1) { fn(gp, up, yp, gs, us, I, r0, r1); });
  } else {
    const auto fn = silu_mul_fn<uint16_t>();
    const auto* gp = static_cast<const uint16_t*>(g.const_data_ptr());
    const auto* up = static_cast<const uint16_t*>(u.const_data_ptr());
    auto* yp = static_cast<uint16_t*>(y.data_ptr());
    at::parallel_for(0, R, grain, [&](int64_t r0, int64_t r1) { fn(gp, up, yp, gs, us, I, r0, r1); });
  }
  return y;
}

}  // namespace et::nn

// ---- BigVGAN's anti-aliased Snake, fused (see activation.h)

namespace et::nn {
namespace {

constexpr int64_t kTaps = 12;

// sin²(x) for |x| < 1e5: x − n·π (n the nearest integer to x / π, π in four parts so n·π is exact
// enough) lies in [−π/2, π/2], where sin² is the same; sin of it by its Taylor series to r¹³
// (error below 1e-9 there). Plain float arithmetic, so the loops around it vectorize.
__attribute__((always_inline)) inline float sin2_reduced(float x) {
  const float n = (x * 0.318309886183790671f + 12582912.0f) - 12582912.0f;
  float r = x - n * 3.140625f;
  r = r - n * 9.670257568359375e-4f;
  r = r - n * 6.2771141529083251953e-7f;
  r = r - n * 1.2154201256553420762e-10f;
  const float r2 = r * r;
  float p = 1.6059043836821614e-10f;
  p = p * r2 - 2.5052108385441718e-8f;
  p = p * r2 + 2.7557319223985893e-6f;
  p = p * r2 - 1.9841269841269841e-4f;
  p = p * r2 + 8.3333333333333333e-3f;
  p = p * r2 - 1.6666666666666667e-1f;
  const float s = r + r * r2 * p;
  return s * s;
}

// One row: x (L) → y (L); xb (L + 8), se / so (L + 6 each) are scratch.
__attribute__((always_inline)) inline void snake_row(const float* x, float* y, int64_t L, float a, float ib, const float* up2,
                                                     const float* dn, float* xb, float* se, float* so) {
  // xb[n] = x[clamp(n − 5)]: the replicate padding of the upsampler
  for (int64_t n = 0; n < L + 8; ++n) xb[n] = x[std::min(std::max<int64_t>(n - 5, 0), L - 1)];
  // u[2t] = Σ_q up2[2q+1] · xb[t+7−q], u[2t+1] = Σ_q up2[2q] · xb[t+8−q]; snake of each, kept at
  // se[t+3] / so[t+3]
  float* e = se + 3;
  float* o = so + 3;
  for (int64_t t = 0; t < L; ++t) {
    e[t] = 0.f;
    o[t] = 0.f;
  }
  for (int q = 0; q < 6; ++q) {
    const float fe = up2[2 * q + 1], fo = up2[2 * q];
    const float* pe = xb + 7 - q;
    const float* po = xb + 8 - q;
    for (int64_t t = 0; t < L; ++t) {
      e[t] += fe * pe[t];
      o[t] += fo * po[t];
    }
  }
  bool big = false;
  for (int64_t t = 0; t < L; ++t) big |= std::abs(e[t] * a) >= 1e5f || std::abs(o[t] * a) >= 1e5f;
  if (!big) {
    for (int64_t t = 0; t < L; ++t) {
      e[t] = e[t] + ib * sin2_reduced(e[t] * a);
      o[t] = o[t] + ib * sin2_reduced(o[t] * a);
    }
  } else {
    for (int64_t t = 0; t < L; ++t) {
      const float se_ = std::sin(e[t] * a), so_ = std::sin(o[t] * a);
      e[t] = e[t] + ib * se_ * se_;
      o[t] = o[t] + ib * so_ * so_;
    }
  }
  // the downsampler's replicate padding of s (2L long): s[0] = e[0] before, s[2L−1] = o[L−1] after
  for (int j = 0; j < 3; ++j) {
    se[j] = so[j] = e[0];
    se[L + 3 + j] = so[L + 3 + j] = o[L - 1];
  }
  // y[i] = Σ_q dn[2q+1] · e[i+q−2] + Σ_q dn[2q] · o[i+q−3]
  for (int64_t i = 0; i < L; ++i) y[i] = 0.f;
  for (int q = 0; q < 6; ++q) {
    const float fe = dn[2 * q + 1], fo = dn[2 * q];
    const float* pe = se + 1 + q;
    const float* po = so + q;
    for (int64_t i = 0; i < L; ++i) y[i] += fe * pe[i] + fo * po[i];
  }
}

// the rows r0 … r1 with the row code inlined under each target (a lambda would not inherit it)
#define ET_SNAKE_ROWS(NAME, ATTR)                                                                                         \
  ATTR void NAME(const float* x, float* y, int64_t r0, int64_t r1, int64_t C, int64_t L, const float* a, const float* ib, \
                 const float* up2, const float* dn) {                                                                     \
    std::vector<float> buf(static_cast<size_t>(3 * L + 20));                                                              \
    for (int64_t r = r0; r < r1; ++r) {                                                                                   \
      const int64_t c = r % C;                                                                                            \
      snake_row(x + r * L, y + r * L, L, a[c], ib[c], up2, dn, buf.data(), buf.data() + L + 8, buf.data() + 2 * L + 14);  \
    }                                                                                                                     \
  }
ET_SNAKE_ROWS(snake_rows_avx512, __attribute__((target("avx512f,avx2,fma"))))
ET_SNAKE_ROWS(snake_rows_avx2, __attribute__((target("avx2,fma"))))
ET_SNAKE_ROWS(snake_rows_plain, )
#undef ET_SNAKE_ROWS

}  // namespace

bool anti_aliased_snake_fits(const at::Tensor& x) {
  return x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 3 && x.size(2) >= 1 &&
         !(at::GradMode::is_enabled() && x.requires_grad());
}

at::Tensor anti_aliased_snake(const at::Tensor& x_, const at::Tensor& alpha, const at::Tensor& inv_beta, const at::Tensor& up,
                              const at::Tensor& down) {
  TORCH_CHECK(anti_aliased_snake_fits(x_), "anti_aliased_snake: a float32 CPU tensor (B, C, L) without a graph");
  TORCH_CHECK(up.numel() == kTaps && down.numel() == kTaps, "anti_aliased_snake: filters of 12 taps");
  const auto x = x_.contiguous();
  const int64_t B = x.size(0), C = x.size(1), L = x.size(2);
  TORCH_CHECK(alpha.numel() == C && inv_beta.numel() == C, "anti_aliased_snake: alpha and inv_beta of C values");
  auto y = at::empty_like(x);
  const auto a = alpha.to(at::kFloat).contiguous(), ib = inv_beta.to(at::kFloat).contiguous();
  const auto up2 = (up.to(at::kFloat).reshape({kTaps}) * 2).contiguous(), dn = down.to(at::kFloat).reshape({kTaps}).contiguous();
  // the row kernels' choice of ISA (capped at AVX2 when the process asks libtorch to stay there), made once
  static const auto fn = rows_avx512()                                                     ? snake_rows_avx512
                         : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? snake_rows_avx2
                                                                                           : snake_rows_plain;
  const float *px = x.data_ptr<float>(), *pa = a.data_ptr<float>(), *pib = ib.data_ptr<float>(), *pu = up2.data_ptr<float>(),
              *pd = dn.data_ptr<float>();
  float* py = y.data_ptr<float>();
  at::parallel_for(0, B * C, 1, [&](int64_t r0, int64_t r1) { fn(px, py, r0, r1, C, L, pa, pib, pu, pd); });
  return y;
}

}  // namespace et::nn
