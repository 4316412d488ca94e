// 1-D convolutions over time-major rows (the convolutional front ends and positional embeddings of
// Wav2Vec2, WavLM, BEATs) and what goes with them: the conv positional embedding's weight norm,
// cached; the (B, T, C) ↔ (B, C, T) transpose; whether a tensor computes in bfloat16 on the CPU.
// Each kind of float32 convolution runs the fastest of its backends, timed on first use and kept
// per machine like linear's products (kernels/backend_choice.h).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <vector>

namespace et::nn {

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
