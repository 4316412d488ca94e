// Small general-purpose models: Linear, Mlp, LayerNorm, Embedding.
#pragma once
#include "blocks/lora.h"
#include "kernels/activation.h"
#include "models/model.h"

#include <string>

namespace et::nn {

#define LINEAR_FIELDS(X)      \
  X(int64_t, in_features, 1)  \
  X(int64_t, out_features, 1) \
  X(bool, bias, true)
ET_CONFIG(LinearConfig, LINEAR_FIELDS);
#define MLP_FIELDS(X)                \
  X(std::vector<int64_t>, sizes, {}) \
  X(std::string, activation, "relu") \
  X(double, dropout, 0.0)            \
  X(bool, bias, true)
ET_CONFIG(MlpConfig, MLP_FIELDS);
#define LAYER_NORM_FIELDS(X)      \
  X(int64_t, normalized_shape, 1) \
  X(double, eps, 1e-05)           \
  X(bool, elementwise_affine, true)
ET_CONFIG(LayerNormConfig, LAYER_NORM_FIELDS);
// padding_idx −1: no padding row (torch's None).
#define EMBEDDING_FIELDS(X)     \
  X(int64_t, num_embeddings, 1) \
  X(int64_t, embedding_dim, 1)  \
  X(int64_t, padding_idx, -1)
ET_CONFIG(EmbeddingConfig, EMBEDDING_FIELDS);

// y = x Wᵀ + b; W (out_features, in_features), as torch.nn.Linear.
struct LinearModel : Model {
  explicit LinearModel(const LinearConfig& c) : LinearModel(c.in_features, c.out_features, c.bias) {}
  LinearModel(int64_t in_features, int64_t out_features, bool bias);
  Outputs forward(const Inputs& in) override;
  at::Tensor weight, bias;
};

// sizes[0] → sizes[1] → … → sizes.back(); activation between layers (not after the last);
// dropout after each activation. Parameters are layers.N.{weight,bias} (LoRA-capable Linear).
struct MlpModel : Model {
  explicit MlpModel(const MlpConfig& c) : MlpModel(c.sizes, c.activation, c.dropout, c.bias) {}
  MlpModel(const std::vector<int64_t>& sizes, const std::string& activation, double dropout, bool bias);
  Outputs forward(const Inputs& in) override;
  torch::nn::ModuleList layers;
  std::string activation;
  double dropout;
};

// torch.nn.LayerNorm over the last dimension.
struct LayerNormModel : Model {
  explicit LayerNormModel(const LayerNormConfig& c) : LayerNormModel(c.normalized_shape, c.eps, c.elementwise_affine) {}
  LayerNormModel(int64_t dim, double eps, bool affine);
  Outputs forward(const Inputs& in) override;
  at::Tensor weight, bias;
  int64_t dim;
  double eps;
};

// torch.nn.Embedding (weight N(0, 1), padding row zeroed).
struct EmbeddingModel : Model {
  explicit EmbeddingModel(const EmbeddingConfig& c) : EmbeddingModel(c.num_embeddings, c.embedding_dim, c.padding_idx) {}
  EmbeddingModel(int64_t num, int64_t dim, int64_t padding_idx);
  Outputs forward(const Inputs& in) override;
  at::Tensor weight;
  int64_t padding_idx;
};

}  // namespace et::nn
