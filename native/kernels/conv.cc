#include "kernels/conv.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/autograd.h>

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "kernels/backend_choice.h"
#include "kernels/common.h"

namespace et::nn {

// ---- 1-D convolution over time-major rows ---------------------------------------------------------

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

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
  return x.device().is_cpu() && (x.scalar_type() == at::kBFloat16 || (at::autocast::is_autocast_enabled(at::kCPU) &&
                                                                      at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16));
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
  TORCH_CHECK(x_in.size(1) + 2 * padding >= w.size(2), "conv1d_rows: ", x_in.size(1), " frames (padding ", padding,
              ") are fewer than the kernel (", w.size(2), ")");
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
  ChoiceStore<9>::Key key{x.size(2),  w.size(0), w.size(2), stride, padding, groups, pow2_at_least(x.size(0) * T), at::get_num_threads(),
                          b.defined()};
  auto run = [&](int c) {
    if (c == 0) return conv_rows_nhwc(x, w, b, stride, padding, groups);
    if (c == 1) return conv_rows_ncw(x, w, b, stride, padding, groups).contiguous();
    return conv_rows_gemm(x, w, b, stride);
  };
  return run_chosen(conv_choices(), key, gemm ? 3 : 2, run);
}

std::vector<std::array<int64_t, 10>> conv_backend_table() { return flat_table(conv_choices()); }

// ---- the cached weight norm -----------------------------------------------------------------------

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
  w_ = at::_weight_norm(v, g, 2).permute({0, 2, 1}).contiguous().permute(
      {0, 2, 1});  // (C_out, C_in / groups, k), stored (C_out, k, C_in / groups)
  v_.take(v);
  g_.take(g);
  return w_;
}

}  // namespace et::nn
