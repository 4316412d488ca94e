// Position encodings: rotary position embedding (HF apply_rotary_pos_emb; forward and backward each
// one pass over memory instead of a chain of ATen ops, for float32 CPU tensors; anything else
// (CUDA, half precision, autocast) takes the composite ATen path, which is also the reference it is
// tested against) and its decoding-row form; a gated relative-position bias kept as its diagonals.
#pragma once
#include <ATen/ATen.h>

namespace et::nn {

// HF apply_rotary_pos_emb on one projection laid out (B, T, heads, D) (before the transpose to
// heads-major): x · cos + rotate_half(x) · sin, with cos and sin (B, T, D). Returns (B, T, heads, D).
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// rotary for decoding rows (x (R, …)): each row computed by one loop whatever R, so a row's result
// is what it gets alone. float32: the fused kernel above (row by row already); bfloat16 / float16
// on the CPU: a kernel of its own, its sums in float32 and the dtype's rounding where the composite
// ATen ops round; anything else row by row (CUDA: one call). (rms_norm_rows, the same for rms_norm:
// kernels/norms.h.)
at::Tensor rotary_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// A relative-position bias that depends on key − query only, kept as its 2T − 1 diagonals: diag
// (H, 2T − 1), diag[h, T − 1 + j − i] being head h's bias of query i and key j; times a gate per
// query, gate (B, H, T, 1): returns (B, H, T, T) = gate[b, h, i] · diag[h, T − 1 + j − i], the
// products gate · bias makes on the full (H, T, T) bias, bit for bit, without reading T² numbers
// per head. No autograd graph (it refuses one); float32 CPU tensors in one pass, others through
// the full bias.
at::Tensor gated_relative_bias(const at::Tensor& gate, const at::Tensor& diag);

// (T · T) int64 on `opts`' device: T − 1 + j − i at [i, j], the index of query i and key j's
// offset among a relative bias's 2T − 1 diagonals.
at::Tensor relative_offsets(int64_t T, const at::TensorOptions& opts);

}  // namespace et::nn
