// Activation functions by the names HF configs give them (hidden_act, activation_function …):
// relu, gelu, gelu_tanh, quick_gelu, tanh, silu, sigmoid, identity; and the same in place on a
// temporary where the activation has an in-place kernel.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace et::nn {

at::Tensor activate(const at::Tensor& x, const std::string& name);
// activate on a temporary of the caller's own (a layer's fresh output that nothing else holds):
// with no autograd graph to record, in place where the activation has an in-place kernel (no
// second tensor of the FFN's width written and read back).
at::Tensor activate_temp(at::Tensor x, const std::string& name);

// SiLU(g) · u for the rows of a decoding step (a gated MLP's activation): g and u of one shape
// (…, I), float32 or bfloat16 on the CPU, unit stride along I, without an autograd graph. As
// activate_temp(g, "silu") * u rounds it (SiLU in float32 rounded to the dtype, then the product
// rounded), with e^x by one vector polynomial (Cephes' expf, about 1e-7 relative) for every element
// wherever it lies and whole rows to a thread, so that a row's values do not depend on the rows
// beside it or the threads (ATen's element-wise loops take the elements a thread's share leaves
// past its last whole vector through scalar code). Undefined where it does not apply (the caller
// takes ATen's ops row by row).
at::Tensor silu_mul_rows(const at::Tensor& g, const at::Tensor& u);

}  // namespace et::nn

namespace et::nn {

// BigVGAN's anti-aliased Snake / SnakeBeta (alias_free_torch's Activation1d with kernel 12): each
// row of x (B, C, L) upsampled 2× (replicate-padded, the transposed Kaiser-sinc filter `up` times
// 2), s = u + inv_beta[c] · sin²(alpha[c] · u), then low-passed by `down` (replicate-padded) at
// stride 2 back to L. `alpha` and `inv_beta` (C) are the activation's values as applied (exp'd
// when log-scaled; inv_beta = 1 / (beta + 1e-9)); `up` and `down` the 12 filter taps. One pass over
// each row on the CPU, in float32, rows in parallel; the caller keeps the ATen ops for other dtypes
// and devices (anti_aliased_snake_fits).
bool anti_aliased_snake_fits(const at::Tensor& x);
at::Tensor anti_aliased_snake(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& inv_beta, const at::Tensor& up,
                              const at::Tensor& down);

}  // namespace et::nn
