// BEATs audio encoder, exactly as the original microsoft/unilm code that SALMONN uses: patch
// embedding, post_extract_proj, weight-normed conv positions, deep-norm post-LN layers with gated
// relative position bias (computed from layer 0's table, shared by all layers), padding mask.
// Normalized Kaldi fbank (B, T, 128) → (B, 8·⌊T/16⌋, encoder_embed_dim).
#pragma once
#include "blocks/attention.h"
#include "blocks/lora.h"
#include "kernels/conv.h"
#include "models/model.h"

namespace et::nn {

// The original's config fields (lib/nn/beats.ts declares the same;
// test/nn/config-agreement.test.ts holds them together).
#define BEATS_FIELDS(X)                       \
  X(int64_t, input_patch_size, 16)            \
  X(int64_t, embed_dim, 512)                  \
  X(int64_t, encoder_layers, 12)              \
  X(int64_t, encoder_embed_dim, 768)          \
  X(int64_t, encoder_ffn_embed_dim, 3072)     \
  X(int64_t, encoder_attention_heads, 12)     \
  X(int64_t, conv_pos, 128)                   \
  X(int64_t, conv_pos_groups, 16)             \
  X(int64_t, num_buckets, 320)                \
  X(int64_t, max_distance, 1280)              \
  X(bool, conv_bias, false)                   \
  X(bool, layer_norm_first, false)            \
  X(bool, deep_norm, false)                   \
  X(bool, relative_position_embedding, false) \
  X(bool, gru_rel_pos, false)                 \
  X(double, dropout, 0.1)                     \
  X(double, attention_dropout, 0.1)           \
  X(double, activation_dropout, 0.0)          \
  X(double, dropout_input, 0.0)               \
  X(std::string, activation_fn, "gelu")
ET_CONFIG(BeatsConfig, BEATS_FIELDS);

struct BeatsLayerImpl : torch::nn::Module {
  BeatsLayerImpl(const BeatsConfig& c, torch::nn::Embedding rel_bias);
  // x (B, L, C); pad (B, L) bool or undefined; bias: the raw relative bias, or undefined
  at::Tensor forward(const at::Tensor& x, const at::Tensor& pad, RelativeBias& bias);
  BeatsConfig cfg;
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr}, grep_linear{nullptr}, fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  torch::nn::Embedding relative_attention_bias{nullptr};
  at::Tensor grep_a;
  double alpha;
};
TORCH_MODULE(BeatsLayer);

struct BeatsEncoder : Model {
  explicit BeatsEncoder(const BeatsConfig& c);
  // inputs: fbank (B, T, 128) normalized; padding_mask (B, N) bool, true = padding, at the
  // waveform's sample level (or at fbank frames), or undefined.
  // outputs: features (B, L, C), padding mask (B, L) bool (undefined without an input mask)
  Outputs forward(const Inputs& in) override;
  RelativeBias relative_bias(int64_t L, const at::Device& dev, at::ScalarType dtype);
  BeatsConfig cfg;
  torch::nn::Conv2d patch_embedding{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr}, encoder_layer_norm{nullptr};
  Linear post_extract_proj{nullptr};
  at::Tensor pos_weight_g, pos_weight_v, pos_bias;
  WeightNormCache pos_w;  // the weight-normed pos conv weight at inference
  torch::nn::ModuleList layers{nullptr};
};

}  // namespace et::nn
