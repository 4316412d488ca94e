#include "kernels/linear.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>

#include <optional>

#include "kernels/backend_choice.h"
#include "kernels/common.h"
#include "kernels/linear_rows.h"

namespace et::nn {

// ---- linear on oneDNN ---------------------------------------------------------------------------

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using LinearPointwise = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, c10::string_view,
                                   c10::List<std::optional<at::Scalar>>, std::optional<c10::string_view>);

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

// linear's products: { rows bucket, inner, outer, threads, a transposed, W transposed, bias } →
// 0 = oneDNN, 1 = BLAS
ChoiceStore<7>& gemm_choices() {
  static auto* s = new ChoiceStore<7>("linear-backends", 2);
  return *s;
}

// a Wᵀ (+ b) with a (N, in) and W (out, in), each as it lies (either may be a transposed view).
at::Tensor mm_t(const at::Tensor& a, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  auto run = [&](int c) { return c == 0 ? onednn_mm_t(a, w, b) : aten_mm_t(a, w, b); };
  if (cpu_linear_env() == CpuLinear::OneDnn || cpu_linear_env() == CpuLinear::Blas)
    return run(cpu_linear_env() == CpuLinear::OneDnn ? 0 : 1);
  ChoiceStore<7>::Key key{
      pow2_at_least(a.size(0)),          a.size(1),    w.size(0), at::get_num_threads(), a.stride(0) == 1 && a.size(0) > 1,
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
    auto mm = [](const at::Tensor& a, const at::Tensor& w) {
      return at::GradMode::is_enabled() ? at::matmul(a, w.t()) : mm_t(a, w, std::nullopt);
    };
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

// x Wᵀ (+ b) for bfloat16 x (R × K, R ≥ kWidenRows) and W on a CPU without bfloat16 products
// (AVX2, or capped there): oneDNN and MKL multiply bfloat16 there at about a third of their float32
// speed (63 × 2048 by 5632 × 2048 on 2 Zen 4 threads under the AVX2 profile: 63.6 ms, 23.4 in
// float32), so the weight is widened to float32 a slice of outputs at a time, into a buffer the
// calling thread keeps (4 MiB; a fresh 46 MB tensor a call cost more in page faults than the product), and
// multiplied in float32 on the faster of oneDNN and the BLAS (mm_t's choice: ATen's MKL alone gave
// 556 / 1149 / 1823 ms below). Each product of two bfloat16 numbers is exact in float32, the sums
// float32 as before, the result rounded to bfloat16 once. The 1.1B LLaMA's prompt pass under that
// profile (2 threads, in-process A/B): 16 positions 764 → 385 ms, 63 2.81 → 0.91 s, 128 5.7 → 1.6 s.
// (Up to kFewRows rows the row kernels come first, where rows_few_applies: AVX2 with FMA too.)
constexpr int64_t kWidenRows = 16;
// kFewRows (kernels/linear_rows.h), the rows up to which a bfloat16 product takes the row kernels
// where rows_few_applies (see linear): with more than sixteen rows in chunks of 4 KiB
// (linear_rows.cc) they beat oneDNN's bfloat16 product up to about 80 rows on a Zen 4 (the 1.1B's
// prompt pass, 2 threads: 56 positions 326 against 346 ms, 64 365 against 377, 80 even, 96 540
// against 515) and the widened product under the AVX2 cap up to about 72 (49 582 against 679 ms,
// 64 744 against 797, 80 and 88 even).
bool widening_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
#if defined(__x86_64__)
  if (x.scalar_type() != at::kBFloat16 || w.scalar_type() != at::kBFloat16 || (b.defined() && b.scalar_type() != at::kBFloat16))
    return false;
  if (!x.device().is_cpu() || !w.device().is_cpu() || x.layout() != at::kStrided || w.layout() != at::kStrided || w.dim() != 2)
    return false;
  if (x.dim() < 1 || x.size(-1) != w.size(1) || w.size(1) == 0 || x.numel() < kWidenRows * w.size(1)) return false;
  if (b.defined() && (b.dim() != 1 || b.size(0) != w.size(0))) return false;
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()))) return false;
  if (at::autocast::is_autocast_enabled(at::kCPU) || cpu_linear_env() == CpuLinear::Aten) return false;
  return !rows_bf16_products();
#else
  return false;
#endif
}

at::Tensor widened_product(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const int64_t K = w.size(1), N = w.size(0);
  const auto x2 = x.reshape({-1, K}).to(at::kFloat).contiguous();
  const int64_t R = x2.size(0);
  auto y = at::empty({R, N}, x2.options());
  const int64_t nc = std::max<int64_t>(16, (4 << 20) / (4 * K));  // about 4 MiB of float32 weight a slice
  thread_local at::Tensor buf;
  if (!buf.defined() || buf.numel() < nc * K) buf = at::empty({nc * K}, x2.options());
  for (int64_t n0 = 0; n0 < N; n0 += nc) {
    const int64_t m = std::min(nc, N - n0);
    auto wf = buf.narrow(0, 0, m * K).view({m, K});
    wf.copy_(w.narrow(0, n0, m));
    auto yc = y.narrow(1, n0, m);
    yc.copy_(mm_t(x2, wf, std::nullopt));
  }
  if (b.defined()) y.add_(b.to(at::kFloat));
  auto shape = x.sizes().vec();
  shape.back() = N;
  return y.to(x.scalar_type()).view(shape);
}

}  // namespace

std::vector<std::array<int64_t, 8>> linear_backend_table() { return flat_table(gemm_choices()); }

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  auto bias = opt(b);
  // one bfloat16 row (decoding): the row kernel, at the speed memory streams the weight
  if (x.scalar_type() == at::kBFloat16 && x.numel() == w.size(-1) && rows_kernel_applies(x, w, b)) return rows_product(x, w, b);
  // a few bfloat16 rows without AMX (a short prompt's pass, one after a reused prefix): the row
  // kernels too, which read the weight as it lies. On AVX-512 BF16, oneDNN's product of so few rows
  // took about 60 ms more a pass of a 1.1B LLaMA on 2 Zen 4 threads (8 positions 120 → 80 ms, 24
  // 185 → 150, 40 270 → 230, 56 323 → 313; 63 356 against 381): its bfloat16 kernels first lay
  // the weight out in pairs of k. On AVX2 (the same machine capped there) against oneDNN's bfloat16
  // product below 16 rows and the widened product from 16: 4 positions 203 → 57 ms, 8 363 → 105,
  // 16 348 → 194, 24 410 → 280, 32 485 → 380, 48 676 → 586; with their chunks of 4 KiB past
  // sixteen rows, up to 64 on both (kFewRows).
  if (x.scalar_type() == at::kBFloat16 && w.dim() == 2 && w.size(1) > 0 && x.numel() / w.size(1) <= kFewRows && rows_few_applies() &&
      rows_kernel_applies(x, w, b))
    return rows_product(x, w, b);
  if (widening_applies(x, w, b)) return widened_product(x, w, b);
  if (!onednn_linear_applies(x, w, b)) return at::linear(x, w, bias);
  TORCH_CHECK(x.size(-1) == w.size(1), "linear: input (..., ", x.size(-1), ") does not match weight (", w.size(0), ", ", w.size(1), ")");
  if (b.defined())
    TORCH_CHECK(b.size(0) == w.size(0), "linear: bias (", b.size(0), ") does not match weight (", w.size(0), ", ", w.size(1), ")");
  if (!at::GradMode::is_enabled() || !(x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()))) {
    auto shape = x.sizes().vec();
    shape.back() = w.size(0);
    return mm_t(x.reshape({-1, x.size(-1)}).contiguous(), w, bias).view(shape);
  }
  return OneDnnLinear::apply(x, w, bias);
}

}  // namespace et::nn
