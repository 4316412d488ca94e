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

}  // namespace

std::vector<std::array<int64_t, 8>> linear_backend_table() { return flat_table(gemm_choices()); }

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  auto bias = opt(b);
  // one bfloat16 row (decoding): the row kernel, at the speed memory streams the weight
  if (x.scalar_type() == at::kBFloat16 && x.numel() == w.size(-1) && rows_kernel_applies(x, w, b)) return rows_product(x, w, b);
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
