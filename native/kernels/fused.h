// CPU kernels for float32 work where ATen's default path is slower than it needs to be: RMSNorm
// and rotary position embedding (forward and backward each one pass over memory instead of a
// chain of ATen ops), and the linear layer's matrix products on oneDNN instead of the BLAS. They
// apply to float32 CPU tensors; anything else (CUDA, half precision, autocast) takes the
// composite ATen path, which is also the reference they are tested against.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <vector>

namespace et::nn {

// HF LlamaRMSNorm: w · (x / sqrt(mean(x², -1) + eps)), statistics in float32, result in x's dtype
// times w. x (..., H), w (H).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

// HF apply_rotary_pos_emb on one projection laid out (B, T, heads, D) (before the transpose to
// heads-major): x · cos + rotate_half(x) · sin, with cos and sin (B, T, D). Returns (B, T, heads, D).
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// rms_norm and rotary for decoding rows (x (R, …)): each row computed by one loop whatever R, so a
// row's result is what it gets alone. float32: the fused kernels above (row by row already);
// bfloat16 / float16 on the CPU: kernels of their own, their sums in float32 and the dtype's
// rounding where the composite ATen ops round; anything else row by row (CUDA: one call).
at::Tensor rms_norm_rows(const at::Tensor& x, const at::Tensor& w, double eps);
at::Tensor rotary_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// at::linear (x Wᵀ + b; x (..., in), W (out, in), b (out) or undefined), with the forward and both
// backward products (dx = dy W, dW = dyᵀ x) on oneDNN's matmul for float32 CPU tensors outside
// autocast: on CPUs where the BLAS ATen uses is slow (MKL on AMD runs about half as fast as oneDNN
// on the same fp32 product) this halves the time of every linear layer. Same fp32 arithmetic,
// other summation order. EMOTORCH_CPU_LINEAR=aten keeps ATen's path everywhere.
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// linear for decoding: every row of x (..., in) computed as if it were alone, so that a row's
// result does not depend on how many rows go with it (a request decoded beside others gets the
// tokens it gets alone). float32 and bfloat16 on the CPU: one pass over W for all rows, each output
// one fixed chain of float32 sums (see fused.cc); other CPU dtypes one product per row; CUDA one
// product for all rows.
at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// The products linear has timed on both backends so far and the one each keeps (see mm_t in
// fused.cc): per product kind { rows bucket, inner, outer, threads, a transposed, W transposed,
// bias, 0 = oneDNN | 1 = BLAS }.
std::vector<std::array<int64_t, 8>> linear_backend_table();

// Conv1d (no dilation) over time-major rows: x (B, T_in, C_in) → (B, T_out, C_out), weight
// (C_out, C_in / groups, k), bias (C_out) or undefined, zero padding on both ends. Same numbers as
// at::conv1d on x transposed, without the two transposed copies. With no autograd graph recorded,
// for float32 CPU tensors, each kind of convolution runs the fastest of oneDNN's convolution on the
// rows as they lie (NHWC), the channels-first one, and (groups 1, no padding) BLAS products over
// strided views of the rows, timed on first use like linear's products and kept in
// conv-backends-<hash>.txt beside them; otherwise (a graph, other dtypes or devices,
// EMOTORCH_CPU_LINEAR=aten) the channels-first at::conv1d, its output a transposed view; except in
// bfloat16 with a graph and groups 1, where oneDNN's convolution runs on the rows (NHWC).
at::Tensor conv1d_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t stride, int64_t padding, int64_t groups);

// Whether x computes in bfloat16 on the CPU: a bfloat16 CPU tensor, or any CPU tensor under CPU
// autocast to bfloat16.
bool bf16_on_cpu(const at::Tensor& x);

// (B, T, C) → (B, C, T) (or back), contiguous, differentiable: on the CPU a blocked copy of each
// sample's matrix, its gradient the same; elsewhere x.transpose(1, 2).contiguous().
at::Tensor transpose_rows(const at::Tensor& x);

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

// torch's weight_norm(dim=2) of a conv positional embedding's weight: W[:, :, k] = g[k] · v[:, :, k]
// / ‖v[:, :, k]‖. With no autograd graph (inference, or v and g frozen) the result is kept, laid out
// (C_out, k, C_in / groups) in memory, which conv1d_rows reads without the copy it would make
// otherwise, and handed out again until v or g change (another tensor: its storage; an in-place
// write: its version counter); with a graph it is computed on every call. One forward at a time (the compute
// thread).
class WeightNormCache {
 public:
  at::Tensor get(const at::Tensor& v, const at::Tensor& g);

 private:
  // What w_ was computed from: the storage (a weak reference: a tensor made later at the same
  // address is not taken for it), the data pointer and the version counter.
  struct Seen {
    c10::weak_intrusive_ptr<c10::StorageImpl> storage{c10::weak_intrusive_ptr<c10::StorageImpl>(c10::intrusive_ptr<c10::StorageImpl>())};
    const void* data = nullptr;
    uint32_t version = 0;
    bool is(const at::Tensor& t) const;
    void take(const at::Tensor& t);
  };
  at::Tensor w_;
  Seen v_, g_;
};

// The convolutions conv1d_rows has timed so far: { C_in, C_out, kernel, stride, padding, groups,
// rows bucket, threads, bias, 0 = oneDNN NHWC | 1 = channels-first | 2 = BLAS }.
std::vector<std::array<int64_t, 10>> conv_backend_table();

}  // namespace et::nn
