// USDM's unit-to-mel decoder, the token Voicebox of naver-ai/usdm (src/decoder/voicebox/model):
// the flow-matching estimator (unit embedding + noisy mel + prompt mel → 1×1 conv, the flow time as
// an extra token in front, two grouped position convs, 24 post-LN layers with an ALiBi bias and
// U-Net skips) and its sampler (Heun over a uniform time grid, classifier-free guidance, the
// reference prompt's mel re-noised after every stage). Parameters under `estimator.`, as the
// released model.safetensors.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

namespace et::nn {

// naver-ai/xlsr-token-Voicebox's config.json (its defaults: that model's).
#define VOICEBOX_FIELDS(X)            \
  X(int64_t, n_feats, 80)             \
  X(int64_t, n_tokens, 10000)         \
  X(int64_t, embedding_dim, 1280)     \
  X(int64_t, hidden_size, 1024)       \
  X(int64_t, intermediate_size, 4096) \
  X(int64_t, num_attention_heads, 16) \
  X(int64_t, num_hidden_layers, 24)   \
  X(int64_t, convpos_width, 31)       \
  X(int64_t, convpos_groups, 16)      \
  X(int64_t, convpos_depth, 2)        \
  X(double, attention_dropout, 0.0)   \
  X(double, activation_dropout, 0.1)  \
  X(double, hidden_dropout, 0.0)      \
  X(std::string, solver, "euler")     \
  X(double, sigma_min, 1e-4)
ET_CONFIG(VoiceboxConfig, VOICEBOX_FIELDS);

struct VoiceboxLayerImpl : torch::nn::Module {
  explicit VoiceboxLayerImpl(const VoiceboxConfig& c);
  at::Tensor forward(const at::Tensor& h, const at::Tensor& keep, const at::Tensor& bias);
  Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr}, intermediate_dense{nullptr}, output_dense{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr}, final_layer_norm{nullptr};
  VoiceboxConfig cfg;
};
TORCH_MODULE(VoiceboxLayer);

struct VoiceboxEstimatorImpl : torch::nn::Module {
  explicit VoiceboxEstimatorImpl(const VoiceboxConfig& c);
  // units (B, T) int64, y and cond (B, n_feats, T), t (B), lengths (B) or undefined → (B, n_feats, T)
  at::Tensor forward(const at::Tensor& units, const at::Tensor& y, const at::Tensor& cond, const at::Tensor& t, const at::Tensor& lengths);
  VoiceboxConfig cfg;
  torch::nn::Embedding embed{nullptr};
  torch::nn::Conv1d proj_in{nullptr}, proj_out{nullptr};
  std::vector<torch::nn::Conv1d> pos_convs;
  torch::nn::LayerNorm layer_norm{nullptr};
  torch::nn::ModuleList layers{nullptr}, skip_connections_layers{nullptr};
};
TORCH_MODULE(VoiceboxEstimator);

struct Voicebox : Model {
  explicit Voicebox(const VoiceboxConfig& c);
  // One velocity: inputs units (B, T), noisy_mel and cond (B, n_feats, T), t (B), lengths (B, optional)
  // → velocity (B, n_feats, T). Or the sampler: units (1, T), cond (1, n_feats, T), noise
  // (draws, 1, n_feats, T: the first the start, then one after each stage while a prompt is re-noised),
  // timesteps (N + 1: the grid from 0 to 1), guidance (a 0-dim scale; 0 none), prompt_length (0-dim
  // int64: frames of cond that hold the reference; 0 none) → mel (1, n_feats, T) and states
  // (N, 1, n_feats, T: the mel after each step).
  Outputs forward(const Inputs& in) override;
  VoiceboxConfig cfg;
  VoiceboxEstimator estimator{nullptr};
};

}  // namespace et::nn
