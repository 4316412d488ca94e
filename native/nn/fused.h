// Fused CPU kernels for the decoder's elementwise work: RMSNorm and rotary position embedding,
// forward and backward each one pass over memory instead of a chain of ATen ops (each with its
// own dispatch, allocation and sweep). They apply to float32 CPU tensors; anything else (CUDA,
// half precision) takes the composite ATen path, which is also the reference the kernels are
// tested against (transformers' LlamaRMSNorm and apply_rotary_pos_emb).
#pragma once
#include <ATen/ATen.h>

namespace et::nn {

// HF LlamaRMSNorm: w · (x / sqrt(mean(x², -1) + eps)), statistics in float32, result in x's dtype
// times w. x (..., H), w (H).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// HF apply_rotary_pos_emb on one projection laid out (B, T, heads, D) (before the transpose to
// heads-major): x · cos + rotate_half(x) · sin, with cos and sin (B, T, D). Returns (B, T, heads, D).
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace et::nn
