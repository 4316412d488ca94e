#include "kernels/norms.h"

#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <vector>

#include "kernels/common.h"

namespace et::nn {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

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

}  // namespace

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  if (fusable(x) && fusable(w) && w.dim() == 1 && x.size(-1) == w.size(0)) return RmsNormFn::apply(x, w, eps);
  auto h = x.to(at::kFloat);
  h = h * at::rsqrt(h.pow(2).mean(-1, true) + eps);
  return w * h.to(x.scalar_type());
}

// ---- RMSNorm for decoding rows ----------------------------------------------------------------------

namespace {

// bfloat16 / float16 rows: each row by the same loop (its sums in float32, in one order), so a row's
// result does not depend on the rows beside it; rounded to the dtype where the composite ATen ops
// round (HF's LlamaRMSNorm: the normalised row in float32, rounded, times the weight, rounded).
// The weight read in its own dtype where it is the rows' (a model's norms in bfloat16) or float32,
// widened exactly as it is read: no float32 copy a call (two a layer a decoding step, each an ATen
// call while the other threads waited).
template <typename T, typename W>
void rms_norm_rows_into(const T* xp, const W* wp, T* yp, int64_t N, int64_t H, float e) {
  at::parallel_for(0, N, grain(H), [&](int64_t b, int64_t end) {
    std::vector<float> row(H);
    for (int64_t i = b; i < end; ++i) {
      const T* xr = xp + i * H;
      for (int64_t j = 0; j < H; ++j) row[j] = static_cast<float>(xr[j]);
      const float r = 1.0f / std::sqrt(dot(row.data(), row.data(), H) / static_cast<float>(H) + e);
      T* yr = yp + i * H;
      for (int64_t j = 0; j < H; ++j) yr[j] = static_cast<T>(static_cast<float>(wp[j]) * static_cast<float>(static_cast<T>(row[j] * r)));
    }
  });
}

template <typename T>
at::Tensor rms_norm_rows_half(const at::Tensor& x_in, const at::Tensor& w_in, double eps) {
  const bool own = w_in.scalar_type() == x_in.scalar_type() || w_in.scalar_type() == at::kFloat;
  at::Tensor x = x_in.contiguous(), w = own ? w_in.contiguous() : w_in.to(at::kFloat).contiguous();
  const int64_t H = x.size(-1), N = x.numel() / std::max<int64_t>(H, 1);
  at::Tensor y = at::empty_like(x);
  const T* xp = x.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  const float e = static_cast<float>(eps);
  if (w.scalar_type() == at::kFloat) rms_norm_rows_into(xp, w.const_data_ptr<float>(), yp, N, H, e);
  else rms_norm_rows_into(xp, w.const_data_ptr<T>(), yp, N, H, e);
  return y;
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

// ---- norm + GELU in place ----------------------------------------------------------------------------

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
  auto wd = w.defined() ? std::optional<at::Tensor>(w.detach()) : std::nullopt,
       bd = b.defined() ? std::optional<at::Tensor>(b.detach()) : std::nullopt;
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

}  // namespace et::nn
