// RoBERTa (HF RobertaModel): embeddings with RoBERTa position ids (padding_idx + 1 offset), token
// types, post-LN encoder, optional pooler. Also SPECTRA's text encoder and fused layers.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

namespace et::nn {

// HF RobertaConfig's fields (lib/nn/roberta.ts declares the same;
// test/nn/config-agreement.test.ts holds them together).
#define ROBERTA_FIELDS(X)                      \
  X(int64_t, vocab_size, 50265)                \
  X(int64_t, hidden_size, 768)                 \
  X(int64_t, num_hidden_layers, 12)            \
  X(int64_t, num_attention_heads, 12)          \
  X(int64_t, intermediate_size, 3072)          \
  X(int64_t, max_position_embeddings, 514)     \
  X(int64_t, type_vocab_size, 1)               \
  X(int64_t, pad_token_id, 1)                  \
  X(double, layer_norm_eps, 1e-12)             \
  X(double, hidden_dropout_prob, 0.1)          \
  X(double, attention_probs_dropout_prob, 0.1) \
  X(double, initializer_range, 0.02)           \
  X(std::string, hidden_act, "gelu")           \
  X(bool, add_pooling_layer, true)
ET_CONFIG(RobertaConfig, ROBERTA_FIELDS);

// One post-LN transformer layer with BERT names (attention.self.query, …, output.LayerNorm).
struct BertLayerImpl : torch::nn::Module {
  BertLayerImpl(int64_t hidden, int64_t heads, int64_t inter, double eps, double hidden_drop, double attn_drop, std::string act);
  at::Tensor forward(const at::Tensor& x, const std::optional<at::Tensor>& mask);
  Linear query{nullptr}, key{nullptr}, value{nullptr}, attn_out{nullptr}, inter{nullptr}, out{nullptr};
  torch::nn::LayerNorm attn_ln{nullptr}, out_ln{nullptr};
  int64_t heads;
  double hidden_drop, attn_drop;
  std::string act;
};
TORCH_MODULE(BertLayer);

struct RobertaModel : Model {
  explicit RobertaModel(const RobertaConfig& c);
  // inputs: input_ids (B, T) int, attention_mask (B, T) or undefined, token_type_ids (B, T) or
  // undefined, inputs_embeds (B, T, H) or undefined (instead of input_ids)
  // outputs: last_hidden_state (B, T, H), pooler_output (B, H) or undefined
  Outputs forward(const Inputs& in) override;
  // The encoder alone over given hidden states (SPECTRA's fused layers use this).
  at::Tensor encode(at::Tensor x, const at::Tensor& attention_mask);
  RobertaConfig cfg;
  torch::nn::Embedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  torch::nn::LayerNorm emb_ln{nullptr};
  torch::nn::ModuleList layer{nullptr};
  Linear pooler{nullptr};
};

// A stack of RoBERTa layers without embeddings, named 0.*, 1.*, … (HF RobertaLayer names inside):
// SPECTRA's fused encoder (`fused_encoder.N.*`).
#define ROBERTA_LAYERS_FIELDS(X) X(int64_t, num_layers, 1)
ET_CONFIG_EXTENDS(RobertaLayersConfig, RobertaConfig, ET_NO_FIELDS, ROBERTA_LAYERS_FIELDS);

struct RobertaLayers : Model {
  explicit RobertaLayers(const RobertaLayersConfig& c) : RobertaLayers(c, c.num_layers) {}
  RobertaLayers(const RobertaConfig& c, int64_t num_layers);
  // inputs: hidden_states (B, T, H), attention_mask (B, T) 1 = attend / 0 = padding, or undefined
  // outputs: hidden_states (B, T, H)
  Outputs forward(const Inputs& in) override;
  RobertaConfig cfg;
  std::vector<BertLayer> layers;
};

}  // namespace et::nn
