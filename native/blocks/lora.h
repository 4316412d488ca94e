// The Linear layer every model uses, with optional LoRA adapters in peft's layout:
// y = x Wᵀ + b + dropout(x) Aᵀ Bᵀ · alpha / r, parameters `weight`, `bias`,
// `lora_A.default.weight` (r, in), `lora_B.default.weight` (out, r). merge() folds the update
// into W (and unmerge() takes it out again). Its weight may be quantized (kernels/quant.h): then
// `weight` is no parameter any more, the quantized tensors live in `quant` (listed by
// quantized_state under bitsandbytes' names), and adapters train over the dequantized weight (QLoRA).
#pragma once
#include <torch/nn.h>

#include "kernels/quant.h"

#include <memory>

#include <string>
#include <vector>

namespace et::nn {

// torch.nn.Linear's reset_parameters: U(±1/√fan_in) for W and b (= kaiming_uniform(a=√5) for W).
void reset_linear(at::Tensor& weight, at::Tensor& bias);

struct LinearImpl : torch::nn::Module {
  LinearImpl(int64_t in, int64_t out, bool bias = true);
  at::Tensor forward(const at::Tensor& x);
  // forward for decoding rows, each computed as if alone (nn::linear_rows).
  at::Tensor rows(const at::Tensor& x);
  void add_lora(int64_t r, double alpha, double dropout);
  void merge();
  void unmerge();
  bool has_lora() const { return lora_A.defined(); }
  // Quantizes the weight (`name` for messages); the float weight is released.
  void quantize(QuantFormat f, const std::string& name);
  // Takes a quantized weight as read from a checkpoint (checked against this layer's shape).
  void set_quantized(QuantWeight q, const std::string& name);
  at::Tensor weight, bias, lora_A, lora_B;
  std::shared_ptr<QuantWeight> quant;  // set when the weight is quantized (then `weight` is undefined)
  int64_t in_features, out_features;
  double scaling = 0, lora_dropout = 0;
  bool merged = false;

 private:
  // Drops the float weight once quantized (storage freed, no longer a parameter).
  void release_weight();
  // y = product(x, W, b) plus the adapters' update through the same product
  at::Tensor apply(const at::Tensor& x, at::Tensor (*product)(const at::Tensor&, const at::Tensor&, const at::Tensor&));
};
TORCH_MODULE(Linear);

// Adds LoRA to every Linear whose name (relative to root) is one of `targets`;
// returns the wrapped modules' names. Throws when nothing matches.
std::vector<std::string> apply_lora(torch::nn::Module& root, const std::vector<std::string>& targets, int64_t r, double alpha,
                                    double dropout);
// Merges (or unmerges) every LoRA layer; returns how many changed.
int64_t merge_lora(torch::nn::Module& root, bool merge);

// Quantizes the Linear layers of root named in `names` (relative to root); ERR_INVALID_ARG naming
// a name that is not a Linear layer of root.
void quantize_linears(torch::nn::Module& root, const std::vector<std::string>& names, QuantFormat f);
// Every quantized layer's tensors under their full names (`<layer>.weight`, `<layer>.SCB`,
// `<layer>.weight.absmax`, …: bitsandbytes' keys; see QuantWeight::named): as held, or with
// `file_layout` a weight held in a kernel's layout copied back to the file's.
std::vector<std::pair<std::string, at::Tensor>> quantized_state(torch::nn::Module& root, bool file_layout);
// Moves every quantized layer's tensors to device.
void move_quantized(torch::nn::Module& root, const at::Device& device);

}  // namespace et::nn
