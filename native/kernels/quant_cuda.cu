// CUDA products of quantized weights for a few rows (kernels/quant_cuda.h). One warp per output
// column n: its lanes take the weight row's blocks in turn (block b to lane b mod 32), decode each
// in registers as dequant_row does (int8: q, its SCB · (1/127) applied to the sum at the end;
// q8_0: q · d; q4_0: (q − 8) · d; nf4: quant_map[q] · (nested_map[absmax] · nested_absmax + offset)),
// and multiply it with every row; the lanes' sums are then added across the warp. nf4's decoded
// values are rounded to the rows' dtype first (bfloat16 / float16), as the CPU kernels and
// bitsandbytes' dequantize_4bit in that compute dtype give them. The rows of the formats that round
// their input for inference are rounded first by one kernel (et_act_rows_cuda), as the CPU does it.
#include <cuda_bf16.h>
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

// A decoded weight value as the rows' dtype holds it (RND: 0 float32, 1 bfloat16, 2 float16).
template <int RND>
__device__ __forceinline__ float rounded(float v) {
  if (RND == 1) return __bfloat162float(__float2bfloat16_rn(v));
  if (RND == 2) return __half2float(__float2half_rn(v));
  return v;
}

template <int FMT, int RND>
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
        v[2 * j] = rounded<RND>(quant_map[p[j] >> 4] * a);
        v[2 * j + 1] = rounded<RND>(quant_map[p[j] & 15] * a);
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

// The largest of a and m, NaN if either is (as ATen's amax).
__device__ __forceinline__ float max_nan(float a, float m) { return (a != a || a > m) ? a : m; }

// LLM.int8's rounding of one row (bitsandbytes, threshold 6), a thread block per row: h the row in
// float16; its elements with |h| < 6 become q · (rs · (1/127)), q = round-half-even(h · (127 / rs)),
// rs their largest |h| (0: all zero); the others (NaN and infinities too) stay as they are.
__global__ void act_int8_kernel(const float* x, float* out, int64_t K) {
  __shared__ float part[32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * K;
  float* o = out + static_cast<int64_t>(blockIdx.x) * K;
  float m = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const float h = fabsf(__half2float(__float2half_rn(xr[k])));
    if (h < 6.f) m = fmaxf(m, h);
  }
  for (int s = 16; s > 0; s /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, s));
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.f;
    for (int s = 16; s > 0; s /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, s));
    if (threadIdx.x == 0) part[0] = m;
  }
  __syncthreads();
  const float rs = part[0], scale = rs > 0.f ? 127.0f / rs : 0.f, step = rs * (1.0f / 127.0f);
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const float h = __half2float(__float2half_rn(xr[k]));
    o[k] = fabsf(h) < 6.f ? rintf(h * scale) * step : xr[k];
  }
}

// llama.cpp's Q8_0 rounding of the rows, a warp per block of 32: d = amax / 127, q = round half away
// from zero of x · (1 / d) (0 where d is), x' = q · d as float16 holds it; a block with a NaN or an
// infinity becomes NaN.
__global__ void act_q8_kernel(const float* x, float* out, int64_t blocks) {
  const int64_t b = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (b >= blocks) return;  // (whole warps: blockDim.x is a multiple of 32)
  const float v = x[b * 32 + threadIdx.x % 32];
  float amax = isfinite(v) ? fabsf(v) : __int_as_float(0x7fc00000);
  for (int s = 16; s > 0; s /= 2) amax = max_nan(__shfl_xor_sync(0xffffffffu, amax, s), amax);
  const float d = amax / 127.0f, id = d != 0.f ? 1.0f / d : 0.f;
  const float t = v * id, a = fabsf(t), fl = floorf(a);
  const float q = copysignf(fl + floorf(2.f * (a - fl)), t);
  out[b * 32 + threadIdx.x % 32] = q * __half2float(__float2half_rn(d));
}

}  // namespace

extern "C" int et_act_rows_cuda(int fmt, const float* x, float* out, int R, int64_t K) {
  if (R < 1 || K < 1 || (fmt != 0 && fmt != 1 && fmt != 2) || (fmt != 0 && K % 32 != 0)) return static_cast<int>(cudaErrorInvalidValue);
  if (fmt == 0) {
    act_int8_kernel<<<R, 256>>>(x, out, K);
  } else {
    const int64_t blocks = R * (K / 32);
    act_q8_kernel<<<static_cast<unsigned>((blocks + 7) / 8), 256>>>(x, out, blocks);
  }
  return static_cast<int>(cudaGetLastError());
}

extern "C" int et_quant_rows_cuda(int fmt, const void* w, const float* scb, const uint8_t* absmax, const float* quant_map,
                                  const float* nested_absmax, const float* nested_map, const float* offset, const float* x, float* y, int R,
                                  int64_t N, int64_t K, int round) {
  if (R < 1 || R > kQuantCudaRows || N < 1 || K < 1 || round < 0 || round > 2) return static_cast<int>(cudaErrorInvalidValue);
  const dim3 grid(static_cast<unsigned>((N + kWarps - 1) / kWarps)), block(32 * kWarps);
  const auto* wb = static_cast<const uint8_t*>(w);
  switch (fmt) {
    case 0: rows_kernel<0, 0><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K); break;
    case 1: rows_kernel<1, 0><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K); break;
    case 2: rows_kernel<2, 0><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K); break;
    case 3:
      if (round == 1) rows_kernel<3, 1><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K);
      else if (round == 2) rows_kernel<3, 2><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K);
      else rows_kernel<3, 0><<<grid, block>>>(wb, scb, absmax, quant_map, nested_absmax, nested_map, offset, x, y, R, N, K);
      break;
    default: return static_cast<int>(cudaErrorInvalidValue);
  }
  return static_cast<int>(cudaGetLastError());
}
