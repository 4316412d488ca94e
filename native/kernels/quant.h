// Quantized linear layers: a weight (out, in) kept in 8 or 4 bits, in the layouts the
// libraries users come from write, and the products over it.
//   int8: LLM.int8's vector-wise absmax (bitsandbytes Int8Params): one int8 per weight and the row's
//     absmax (SCB, float32); w = (q · SCB) · (1/127).
//   q8_0: llama.cpp's blocks of 32: a float16 scale d and 32 int8; w = q · d.
//   q4_0: llama.cpp's blocks of 32: a float16 scale d and 16 bytes of 4-bit q (element j in the low
//     nibble of byte j, element j + 16 in its high nibble); w = (q − 8) · d.
//   nf4: QLoRA's NormalFloat4 in bitsandbytes' layout: blocks of 64, two codes a byte (the first in
//     the high nibble), w = quant_map[q] · absmax, the blocks' absmax themselves quantized to 8 bits
//     (the dynamic signed map, blocks of 256, minus their mean `offset`: double quantization).
// Quantizing and the CPU products are kernels here: decoding rows on fused kernels that decode each
// block in registers (AVX-512, AVX2; on CPUs without AVX2, dequantized tiles through the row kernels
// of kernels/linear_rows.h); on CUDA the weight is dequantized with ATen's ops before the product.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace et::nn {

enum class QuantFormat { Int8, Q8_0, Q4_0, NF4 };

// "int8" | "q8_0" | "q4_0" | "nf4"; another name is an ERR_INVALID_ARG naming the ones taken.
QuantFormat quant_format(const std::string& name);
const char* quant_format_name(QuantFormat f);
// The block a row's length must be a multiple of (1 for int8).
int64_t quant_block(QuantFormat f);

struct QuantWeight {
  QuantFormat format = QuantFormat::Int8;
  int64_t out = 0, in = 0;
  // int8: int8 (out, in); q8_0 / q4_0: uint8 (out, in / 32 · 34 or 18), gguf's block bytes;
  // nf4: uint8 (out · in / 2, 1), bitsandbytes' packed codes.
  at::Tensor weight;
  at::Tensor scb;  // int8: float32 (out)
  // nf4: absmax uint8 (out · in / 64), quant_map float32 (16), nested_absmax float32
  // (⌈blocks / 256⌉), nested_quant_map float32 (256), offset float32 ().
  at::Tensor absmax, quant_map, nested_absmax, nested_quant_map, offset;
  // q4_0 and int8 on a CPU with AVX-512 VNNI (kernel_layout): `weight`'s bytes with each 16 rows'
  // blocks (int8: each 16 rows' bytes, four columns at a time) interleaved, as their kernels read
  // them (same shape and size; named() gives the files' bytes).
  bool interleaved = false;
  // The tensors by their bitsandbytes / gguf names ("weight", "SCB", "absmax", …; those of another
  // format left out), in the files' layout (an interleaved weight copied back to gguf's), or with
  // `as_held` the weight as held (no copy).
  std::vector<std::pair<std::string, at::Tensor>> named(bool as_held = false) const;
  // The inverse: each tensor by its name from `get` (undefined where it gives none).
  void set_named(const std::function<at::Tensor(const char*)>& get);
  // The same weight with its tensors on `device`.
  QuantWeight to(const at::Device& device) const;
  // The same weight with every tensor contiguous (those that are not copied: the kernels read each
  // as laid out in order; a view given across the bridge, a transpose or a strided slice, is not).
  QuantWeight contiguous() const;
  int64_t nbytes() const;
};

// q in the layout this CPU's row kernels read fastest: q4_0 and int8 on a CPU with AVX-512 VNNI get
// their weight interleaved (in place where nothing else holds it, else into a new tensor; see
// quant.cc); anything else is returned as it is.
QuantWeight kernel_layout(QuantWeight q);

// Quantizes w (out, in), a floating tensor on any device (computed on the CPU in float32). A row
// the format's block does not divide, or a weight that is not finite, is an ERR_INVALID_ARG
// naming `name`.
QuantWeight quantize_weight(const at::Tensor& w, QuantFormat f, const std::string& name);

// Checks a quantized weight read from a checkpoint (its tensors' dtypes, shapes and devices agree
// with format, out and in): ERR_STATE_DICT naming `name` and the tensor otherwise.
void check_quant_weight(const QuantWeight& q, const std::string& name);

// The weight (out, in) in dtype, on the quantized weight's device.
at::Tensor dequantize_weight(const QuantWeight& q, at::ScalarType dtype);

// y = x Wᵀ + b, x (..., in) floating, y in x's dtype. Without autograd, x is first quantized as the
// format's library does for inference (int8: LLM.int8 with threshold 6; q8_0 / q4_0: llama.cpp's
// Q8_0 blocks; nf4: not; see quant.cc). With `rows` (decoding) on the CPU every row is computed as
// if alone (each output one fixed chain of sums, the weight read once for all rows; integer sums on
// AVX-512 VNNI); otherwise the weight is dequantized in x's dtype for the product (the row kernels
// still take a few rows on the CPU). With autograd on, x is not quantized and the gradient flows to
// x (and b) through the dequantized weight, recomputed in backward instead of kept (QLoRA).
at::Tensor quant_linear(const at::Tensor& x, const QuantWeight& q, const at::Tensor& b, bool rows);

}  // namespace et::nn
