// Q-Former (HF Blip2QFormerModel, any cross_attention_frequency): learned queries pass through
// BERT layers with self-attention, cross-attention to encoder states (every
// cross_attention_frequency-th layer) and a query feed-forward. SALMONN runs it per window.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

namespace et::nn {

// HF Blip2QFormerConfig's fields (lib/nn/qformer.ts declares the same;
// test/nn/config-agreement.test.ts holds them together).
#define QFORMER_FIELDS(X)                      \
  X(int64_t, hidden_size, 768)                 \
  X(int64_t, num_hidden_layers, 12)            \
  X(int64_t, num_attention_heads, 12)          \
  X(int64_t, intermediate_size, 3072)          \
  X(int64_t, encoder_hidden_size, 1408)        \
  X(int64_t, cross_attention_frequency, 2)     \
  X(int64_t, num_query_tokens, 0)              \
  X(double, layer_norm_eps, 1e-12)             \
  X(double, hidden_dropout_prob, 0.1)          \
  X(double, attention_probs_dropout_prob, 0.1) \
  X(double, initializer_range, 0.02)           \
  X(std::string, hidden_act, "gelu")
ET_CONFIG(QFormerConfig, QFORMER_FIELDS);

// BERT attention block with post-LN: names attention.{query,key,value}, output.{dense,LayerNorm}.
struct QFormerAttentionImpl : torch::nn::Module {
  QFormerAttentionImpl(int64_t hidden, int64_t kv_dim, int64_t heads, double eps);
  at::Tensor forward(const at::Tensor& h, const at::Tensor& kv, const std::optional<at::Tensor>& mask, double attn_drop,
                     double hidden_drop);
  Linear query{nullptr}, key{nullptr}, value{nullptr}, dense{nullptr};
  torch::nn::LayerNorm ln{nullptr};
  int64_t heads;
};
TORCH_MODULE(QFormerAttention);

struct QFormerLayerImpl : torch::nn::Module {
  QFormerLayerImpl(const QFormerConfig& c, bool cross);
  at::Tensor forward(at::Tensor h, const at::Tensor& enc, const std::optional<at::Tensor>& enc_mask);
  QFormerConfig cfg;
  QFormerAttention attention{nullptr}, crossattention{nullptr};
  Linear inter{nullptr}, out{nullptr};
  torch::nn::LayerNorm out_ln{nullptr};
};
TORCH_MODULE(QFormerLayer);

struct QFormer : Model {
  explicit QFormer(const QFormerConfig& c);
  // inputs: query_embeds (B, Q, H) (or undefined: the model's own query_tokens, expanded to the
  // batch of encoder_hidden_states), encoder_hidden_states (B, S, E), encoder_attention_mask (B, S)
  // 1 = keep or undefined. outputs: last_hidden_state (B, Q, H)
  Outputs forward(const Inputs& in) override;
  QFormerConfig cfg;
  torch::nn::LayerNorm layernorm{nullptr};
  torch::nn::ModuleList layer{nullptr};
  at::Tensor query_tokens;
};

}  // namespace et::nn
