// Internal to native/kernels: the small helpers its files share (which tensors the float32 kernels
// take, how rows are split among threads, an optional bias). Not for use outside native/kernels.
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <optional>

namespace et::nn {

inline std::optional<at::Tensor> opt(const at::Tensor& b) { return b.defined() ? std::optional<at::Tensor>(b) : std::nullopt; }

inline bool fusable(const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided; }

// Rows per parallel task: about 16K elements each, so small tensors stay on one thread.
inline int64_t grain(int64_t row) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(row, 1)); }

// bfloat16 / float16 CPU tensors: what the decoding-row kernels of rms_norm_rows and rotary_rows take.
inline bool rows_kernel_dtype(const at::Tensor& t) {
  return t.device().is_cpu() && t.layout() == at::kStrided && (t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf);
}

}  // namespace et::nn
