// Products of a few rows for decoding, each row as if it were alone: one pass over the weight for all
// rows, each output one fixed chain of float32 sums, on AVX-512 (BF16), AVX2 or plain C++ kernels,
// bfloat16 on AMX tiles where the CPU has them (the ISA detected once, capped at AVX2 when the
// process asks libtorch to stay there).
#pragma once
#include <ATen/ATen.h>

namespace et::nn {

// linear for decoding: every row of x (..., in) computed as if it were alone, so that a row's
// result does not depend on how many rows go with it (a request decoded beside others gets the
// tokens it gets alone). float32 and bfloat16 on the CPU: one pass over W for all rows, each output
// one fixed chain of float32 sums (see kernels/linear_rows.cc); other CPU dtypes one product per
// row; CUDA one product for all rows.
at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

// For linear (kernels/linear.cc), which sends one bfloat16 row here: whether the row kernels take
// this product, and the product on them.
bool rows_kernel_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);
at::Tensor rows_product(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b);

}  // namespace et::nn
