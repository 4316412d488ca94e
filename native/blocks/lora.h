// The Linear layer every model uses, with optional LoRA adapters in peft's layout:
// y = x Wᵀ + b + dropout(x) Aᵀ Bᵀ · alpha / r, parameters `weight`, `bias`,
// `lora_A.default.weight` (r, in), `lora_B.default.weight` (out, r). merge() folds the update
// into W (and unmerge() takes it out again).
#pragma once
#include <torch/nn.h>

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
  at::Tensor weight, bias, lora_A, lora_B;
  double scaling = 0, lora_dropout = 0;
  bool merged = false;

 private:
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

}  // namespace et::nn
