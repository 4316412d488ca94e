#include "kernels/positions.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <type_traits>
#include <vector>

#include "kernels/common.h"
#include "kernels/lanes.h"

namespace et::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

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

// ---- rotary for decoding rows -----------------------------------------------------------------------

namespace {

using namespace lanes;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
// One bfloat16 row of D = 2 · half: o = r(r(x · c) + r(rotate_half(x) · s)), r rounding to bfloat16
// (each element as the scalar loop of rotary_rows_half computes it), W lanes at a time.
template <int W>
[[gnu::always_inline]] inline void rotary_row_bf16(const uint16_t* x, const uint16_t* c, const uint16_t* s, uint16_t* o, int64_t half) {
  using F = typename Lanes<W>::F;
  int64_t d = 0;
  for (; d + W <= half; d += W) {
    const F x1 = load<W>(x + d), x2 = load<W>(x + d + half);
    store_bf16<W>(o + d, round_bf16<W>(round_bf16<W>(x1 * load<W>(c + d)) + round_bf16<W>((-x2) * load<W>(s + d))));
    store_bf16<W>(o + d + half, round_bf16<W>(round_bf16<W>(x2 * load<W>(c + d + half)) + round_bf16<W>(x1 * load<W>(s + d + half))));
  }
  auto r = [](float v) { return static_cast<float>(c10::BFloat16(v)); };
  for (; d < half; ++d) {
    const float x1 = widen(x[d]), x2 = widen(x[d + half]);
    o[d] = c10::BFloat16(r(x1 * widen(c[d])) + r(-x2 * widen(s[d]))).x;
    o[d + half] = c10::BFloat16(r(x2 * widen(c[d + half])) + r(x1 * widen(s[d + half]))).x;
  }
}

#pragma GCC diagnostic pop

using RotaryRowFn = void (*)(const uint16_t*, const uint16_t*, const uint16_t*, uint16_t*, int64_t);
#define ET_ROTARY_ROW(NAME, ATTR, W)                                                                   \
  ATTR void NAME(const uint16_t* x, const uint16_t* c, const uint16_t* s, uint16_t* o, int64_t half) { \
    rotary_row_bf16<W>(x, c, s, o, half);                                                              \
  }
#if defined(__x86_64__)
ET_ROTARY_ROW(rotary_row_avx512, ET_LANES16, 16)
ET_ROTARY_ROW(rotary_row_avx2, ET_LANES8, 8)
#endif
ET_ROTARY_ROW(rotary_row_plain, , 4)
#undef ET_ROTARY_ROW

RotaryRowFn rotary_row_fn() {
#if defined(__x86_64__)
  static const RotaryRowFn fn = lanes_pick<RotaryRowFn>(&rotary_row_avx512, &rotary_row_avx2, &rotary_row_plain);
  return fn;
#else
  return &rotary_row_plain;
#endif
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
  if constexpr (std::is_same_v<T, at::BFloat16>) {  // vector lanes (rotary_row_bf16)
    const RotaryRowFn row = rotary_row_fn();
    const auto* X
    = reinterpret_cast<const uint16_t*>(xp), *C = reinterpret_cast<const uint16_t*>(cp), *S = reinterpret_cast<const uint16_t*>(sp);
    auto* O = reinterpret_cast<uint16_t*>(op);
    at::parallel_for(0, BT, grain(heads * D), [&](int64_t b, int64_t end) {
      for (int64_t bt = b; bt < end; ++bt)
        for (int64_t h = 0; h < heads; ++h) row(X + (bt * heads + h) * D, C + bt * D, S + bt * D, O + (bt * heads + h) * D, half);
    });
    return y;
  }
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

}  // namespace

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

// ---- a gated relative-position bias --------------------------------------------------------------

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

}  // namespace et::nn
