// CUDA products of quantized weights for a few rows (kernels/quant_cuda.h). One warp per output
// column n: its lanes take the weight row's blocks in turn (block b to lane b mod 32), decode each
// in registers as dequant_row does (int8: q, its SCB · (1/127) applied to the sum at the end;
// q8_0: q · d; q4_0: (q − 8) · d; nf4: quant_map[q] · (nested_map[absmax] · nested_absmax + offset)),
// and multiply it with every row; the lanes' sums are then added across the warp.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "quant_cuda.h"

namespace {

constexpr int kWarps = 8;  // warps (output columns) a thread block

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(p[0] | (p[1] << 8))));
}

// Adds block values v[0 … E) (elements k0 …) times every row into acc.
template <int E>
__device__ __forceinline__ void accumulate(const float (&v)[E], const float* x, int R, int64_t K, int64_t k0,
                                           float (&acc)[kQuantCudaRows]) {
#pragma unroll
  for (int r = 0; r < kQuantCudaRows; ++r) {
    if (r >= R) break;
    const float* xr = x + r * K + k0;
    float s = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) s = fmaf(xr[e], v[e], s);
    acc[r] += s;
  }
}

template <int FMT>
__global__ void rows_kernel(const uint8_t* w, const float* scb, const uint8_t* absmax, const float* quant_map, const float* nested_absmax,
                            const float* nested_map, const float* offset, const float* x, float* y, int R, int64_t N, int64_t K) {
  const int lane = threadIdx.x % 32;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (n >= N) return;
  float acc[kQuantCudaRows];
#pragma unroll
  for (int r = 0; r < kQuantCudaRows; ++r) acc[r] = 0.f;
  if (FMT == 0) {  // int8: blocks of 32 of the row, then its last K mod 32 elements
    const int8_t* q = reinterpret_cast<const int8_t*>(w) + n * K;
    for (int64_t b = lane; b < K / 32; b += 32) {
      float v[32];
#pragma unroll
      for (int e = 0; e < 32; ++e) v[e] = static_cast<float>(q[b * 32 + e]);
      accumulate(v, x, R, K, b * 32, acc);
    }
    for (int64_t k = K / 32 * 32 + lane; k < K; k += 32) {
      const float v[1] = {static_cast<float>(q[k])};
      accumulate(v, x, R, K, k, acc);
    }
  } else if (FMT == 1 || FMT == 2) {  // q8_0 / q4_0: gguf blocks of 32
    const int64_t bb = FMT == 1 ? 34 : 18;
    const uint8_t* row = w + n * (K / 32) * bb;
    for (int64_t b = lane; b < K / 32; b += 32) {
      const uint8_t* p = row + b * bb;
      const float d = half_at(p);
      float v[32];
      if (FMT == 1) {
#pragma unroll
        for (int e = 0; e < 32; ++e) v[e] = static_cast<float>(static_cast<int8_t>(p[2 + e])) * d;
      } else {
#pragma unroll
        for (int e = 0; e < 16; ++e) {
          v[e] = static_cast<float>(static_cast<int>(p[2 + e] & 15) - 8) * d;
          v[e + 16] = static_cast<float>(static_cast<int>(p[2 + e] >> 4) - 8) * d;
        }
      }
      accumulate(v, x, R, K, b * 32, acc);
    }
  } else {  // nf4: blocks of 64, two codes a byte (the first in the high nibble)
    const int64_t blocks = K / 64;
    for (int64_t b = lane; b < blocks; b += 32) {
      const int64_t g = n * blocks + b;
      const float a = nested_map[absmax[g]] * nested_absmax[g / 256] + offset[0];
      const uint8_t* p = w + g * 32;
      float v[64];
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        v[2 * j] = quant_map[p[j] >> 4] * a;
        v[2 * j + 1] = quant_map[p[j] & 15] * a;
      }
      accumulate(v, x, R, K, b * 64, acc);
    }
  }
#pragma unroll
  for (int r = 0; r < kQuantCudaRows; ++r) {
    if (r >= R) break;
    float s = acc[r];
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) y[r * N + n] = FMT == 0 ? (s * scb[n]) * 7.874015718698502e-3f : s;
  }
}

}  // namespace

extern "C" int et_quant_rows_cuda(int fmt, const void* w, const float* scb, const uint8_t* absmax, const float* quant_map,
                                  const float* nested_absmax, const float* nested_map, const float* offset, const float* x, float* y, int R,
                                  int64_t N, int64_t K) {
  if (R < 1 || R > kQuantCudaRows || N < 1 || K < 1) return static_cast<int>(cudaErrorInvalidValue);
  const dim3 grid(static_cast<unsigned>((N + kWarps - 1) / kWarps)), block(32 * kWarps);
  const auto* wb = static_cast<const uint8_t*>(w);
  switch (fmt) {
    case 0: rows_kernel<0><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K); break;
    case 1: rows_kernel<1><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K); break;
    case 2: rows_kernel<2><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K); break;
    case 3: rows_kernel<3><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K); break;
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
  return static_cast<int>(cudaGetLastError());
}
