// The CUDA products of quantized weights for a few rows (decoding), kernels/quant_cuda.cu: the weight
// decoded in registers as kernels/quant.cc's dequant_row decodes it, never a dequantized copy. Built
// only against a CUDA libtorch with a CUDA compiler at hand (CMakeLists.txt defines ET_CUDA_QUANT);
// a plain C interface, so that the .cu needs no libtorch header.
#pragma once
#include <cstdint>

// The most rows one call takes.
constexpr int kQuantCudaRows = 16;

// y (R × N, float32) = x (R × K, float32) · Wᵀ for the quantized weight of format `fmt`
// (QuantFormat's order: 0 int8, 1 q8_0, 2 q4_0, 3 nf4), every pointer on the device: `w` the weight's
// bytes; int8: `scb` (N); nf4: `absmax` (N·K/64 bytes), `quant_map` (16), `nested_absmax`,
// `nested_map` (256), `offset` (1) (the others may be null). R ≤ kQuantCudaRows. `round`: nf4's
// decoded weight as the rows' dtype holds it (0 float32, 1 bfloat16, 2 float16). Queued on the
// default stream; returns the launch's cudaError_t (0: queued).
extern "C" int et_quant_rows_cuda(int fmt, const void* w, const float* scb, const uint8_t* absmax, const float* quant_map,
                                  const float* nested_absmax, const float* nested_map, const float* offset, const float* x, float* y, int R,
                                  int64_t N, int64_t K, int round);

// out (R × K, float32) = x (R × K, float32) rounded for inference as the format's library rounds its
// input: fmt 0 (int8) LLM.int8's rows (threshold 6), 1 / 2 (q8_0, q4_0) llama.cpp's Q8_0 blocks of
// 32 (K a multiple of 32), as kernels/quant.cc's act_quantize then act_dequantize. Returns the
// launch's cudaError_t (0: queued).
extern "C" int et_act_rows_cuda(int fmt, const float* x, float* out, int R, int64_t K);
