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

// Y[r·ldy + n] = Σ_k X[r, k] · W[n, k] for r < R, n < N, on the calling thread, with the chains of
// sums rows_product uses: a row's outputs do not depend on R, nor on which outputs a call takes.
// bf16: W and X are bfloat16 (on AVX2 the rows are widened to float32 each call); else both are
// float32. (The quantized layers of kernels/quant.h dequantize tiles of their weight into this: on
// CPUs without AVX2, and for a prompt's few bfloat16 rows.)
void rows_dot(bool bf16, const void* W, const void* X, float* Y, int64_t R, int64_t ldy, int64_t N, int64_t K);
// The most bfloat16 rows linear takes to the row kernels where rows_few_applies (a short prompt's
// pass; the measurements in kernels/linear.cc).
constexpr int64_t kFewRows = 64;
// Whether this CPU runs bfloat16 rows on bfloat16 products (AVX-512 BF16, not capped at AVX2).
bool rows_bf16_products();
// Whether linear takes a few bfloat16 rows (a short prompt) to the row kernels: on x86-64 with
// AVX-512 BF16 or AVX2 and FMA, and no AMX (where oneDNN's tiles are the faster way).
bool rows_few_applies();
// Whether the row kernels run on AVX-512 here (the CPU has AVX-512 F and BW, not capped at AVX2).
bool rows_avx512();

}  // namespace et::nn
