// Small general-purpose models: Linear, Mlp, LayerNorm, Embedding.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

#include <string>

namespace et::nn {

// y = x Wᵀ + b; W (out_features, in_features), as torch.nn.Linear.
struct LinearModel : Model {
  LinearModel(int64_t in_features, int64_t out_features, bool bias);
  Tensors forward(const Tensors& in) override;
  at::Tensor weight, bias;
};

// sizes[0] → sizes[1] → … → sizes.back(); activation between layers (not after the last);
// dropout after each activation. Parameters are layers.N.{weight,bias} (LoRA-capable Linear).
struct MlpModel : Model {
  MlpModel(const std::vector<int64_t>& sizes, const std::string& activation, double dropout, bool bias);
  Tensors forward(const Tensors& in) override;
  torch::nn::ModuleList layers;
  std::string activation;
  double dropout;
};

// torch.nn.LayerNorm over the last dimension.
struct LayerNormModel : Model {
  LayerNormModel(int64_t dim, double eps, bool affine);
  Tensors forward(const Tensors& in) override;
  at::Tensor weight, bias;
  int64_t dim;
  double eps;
};

// torch.nn.Embedding (weight N(0, 1), padding row zeroed).
struct EmbeddingModel : Model {
  EmbeddingModel(int64_t num, int64_t dim, int64_t padding_idx);
  Tensors forward(const Tensors& in) override;
  at::Tensor weight;
  int64_t padding_idx;
};

at::Tensor activate(const at::Tensor& x, const std::string& name);
// activate on a temporary of the caller's own (a layer's fresh output that nothing else holds):
// with no autograd graph to record, in place where the activation has an in-place kernel (no
// second tensor of the FFN's width written and read back).
at::Tensor activate_temp(at::Tensor x, const std::string& name);

}  // namespace et::nn
