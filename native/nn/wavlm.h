// WavLM (HF WavLMModel): conv feature encoder (group-norm or layer-norm variant), feature
// projection, weight-normed conv positions, gated relative position bias (from layer 0, gated per
// layer on the layer's input), post-LN (base, base-plus) or stable-layer-norm (large) encoder.
// Raw 16 kHz waveform (B, samples) → (B, frames, hidden).
#pragma once
#include "nn/lora.h"
#include "nn/model.h"

namespace et::nn {

struct WavLMConfig {
  std::vector<int64_t> conv_dim{512, 512, 512, 512, 512, 512, 512}, conv_kernel{10, 3, 3, 3, 3, 2, 2}, conv_stride{5, 2, 2, 2, 2, 2, 2};
  bool conv_bias = false, do_stable_layer_norm = false, masked_spec_embed = true;
  std::string feat_extract_norm = "group", feat_extract_activation = "gelu", hidden_act = "gelu";
  int64_t hidden_size = 768, num_hidden_layers = 12, num_attention_heads = 12, intermediate_size = 3072;
  int64_t num_conv_pos_embeddings = 128, num_conv_pos_embedding_groups = 16, num_buckets = 320, max_bucket_distance = 800;
  double layer_norm_eps = 1e-5, hidden_dropout = 0.1, attention_dropout = 0.1, activation_dropout = 0.0, feat_proj_dropout = 0.0;
};

struct WavLMLayerImpl : torch::nn::Module {
  WavLMLayerImpl(const WavLMConfig& c, bool has_bias);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& pad, at::Tensor& bias);
  WavLMConfig cfg;
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr}, gru_rel_pos_linear{nullptr}, inter{nullptr}, out{nullptr};
  torch::nn::Embedding rel_attn_embed{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr}, final_layer_norm{nullptr};
  at::Tensor gru_rel_pos_const;
};
TORCH_MODULE(WavLMLayer);

struct WavLMModel : Model {
  explicit WavLMModel(const WavLMConfig& c);
  // inputs: input_values (B, N), attention_mask (B, N) 1/0 or undefined
  // outputs: last_hidden_state (B, T, H), frame mask (B, T) bool true = valid (undefined without a mask)
  Tensors forward(const Tensors& in) override;
  // The conv feature encoder and feature projection: waveform (B, N) → (B, T, H), nothing masked.
  at::Tensor features(const at::Tensor& wave);
  // The transformer encoder over (B, T, H) states: frames where `valid` (B, T) is false (when
  // defined) are zeroed and masked out of attention; conv positions, layers.
  at::Tensor encode(at::Tensor x, const at::Tensor& valid);
  int64_t frames_for(int64_t samples) const;
  WavLMConfig cfg;
  std::vector<torch::nn::Conv1d> convs;
  std::vector<torch::nn::AnyModule> norms;  // GroupNorm (layer 0 only) or LayerNorm per layer
  torch::nn::LayerNorm proj_ln{nullptr}, enc_ln{nullptr};
  Linear projection{nullptr};
  at::Tensor pos_g, pos_v, pos_bias, mask_embed;
  torch::nn::ModuleList layers{nullptr};
};

}  // namespace et::nn
