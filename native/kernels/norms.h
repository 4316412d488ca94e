// Normalizations on the CPU where ATen's default path is slower than it needs to be: RMSNorm (HF
// LlamaRMSNorm; forward and backward each one pass over memory instead of a chain of ATen ops, for
// float32 CPU tensors; anything else (CUDA, half precision, autocast) takes the composite ATen path,
// which is also the reference it is tested against) and its decoding-row form; layer norm + GELU
// and channel norm (GroupNorm(C, C)) + GELU in place, a block of rows at a time in cache.
#pragma once
#include <ATen/ATen.h>

namespace et::nn {

// HF LlamaRMSNorm: w · (x / sqrt(mean(x², -1) + eps)), statistics in float32, result in x's dtype
// times w. x (..., H), w (H).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// rms_norm for decoding rows (x (R, …)): each row computed by one loop whatever R, so a row's
// result is what it gets alone. float32: the fused kernel above (row by row already); bfloat16 /
// float16 on the CPU: a kernel of its own, its sums in float32 and the dtype's rounding where the
// composite ATen ops round; anything else row by row (CUDA: one call). (rotary_rows, the same for
// rotary: kernels/positions.h.)
at::Tensor rms_norm_rows(const at::Tensor& x, const at::Tensor& w, double eps);

// Whether x is what layer_norm_gelu_ and channel_norm_gelu_ take: contiguous float32 CPU, 2-D or more.
bool norm_gelu_applies(const at::Tensor& x);

// In place on x (..., C), contiguous float32 CPU, with no autograd graph wanted: layer norm over C
// (weight, bias (C) or undefined) then exact GELU, a block of rows at a time (each block normalized
// into a small buffer that stays in cache, GELU'd there and copied back): one pass over x in memory
// where layer_norm then gelu_ make three, and no new tensor of x's size. ATen's own layer_norm and
// gelu kernels on each block: the same numbers as the two calls on the whole.
void layer_norm_gelu_(at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps);

// In place on x (B, T, C), contiguous float32 CPU, with no autograd graph wanted: torch's
// GroupNorm(C, C) over each channel's T values (as on (B, C, T)), then exact GELU. The statistics
// in one pass (sums in double), then x·scale + shift and GELU a block of rows at a time, in cache.
void channel_norm_gelu_(at::Tensor& x, const at::Tensor& w, const at::Tensor& b, double eps);

}  // namespace et::nn
