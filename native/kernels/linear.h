// The linear layer's matrix products on the CPU: on oneDNN or the BLAS, whichever runs each kind of
// product faster on this machine (timed on first use, the choice kept per machine: see mm_t in
// kernels/linear.cc and kernels/backend_choice.h), for float32 CPU tensors outside autocast;
// anything else (CUDA, half precision, autocast) takes at::linear, which is also the reference it
// is tested against. One bfloat16 row (decoding) goes to the row kernels (kernels/linear_rows.h).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <vector>

namespace et::nn {

// at::linear (x Wᵀ + b; x (..., in), W (out, in), b (out) or undefined), with the forward and both
// backward products (dx = dy W, dW = dyᵀ x) on oneDNN's matmul for float32 CPU tensors outside
// autocast: on CPUs where the BLAS ATen uses is slow (MKL on AMD runs about half as fast as oneDNN
// on the same fp32 product) this halves the time of every linear layer. Same fp32 arithmetic,
// other summation order. EMOTORCH_CPU_LINEAR=aten keeps ATen's path everywhere.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// The products linear has timed on both backends so far and the one each keeps (see mm_t in
// kernels/linear.cc): per product kind { rows bucket, inner, outer, threads, a transposed,
// W transposed, bias, 0 = oneDNN | 1 = BLAS }.
std::vector<std::array<int64_t, 8>> linear_backend_table();

}  // namespace et::nn
