// The front end WavLM and Wav2Vec2 share (HF's Wav2Vec2FeatureEncoder, Wav2Vec2FeatureProjection
// and Wav2Vec2PositionalConvEmbedding): conv feature encoder (group-norm or layer-norm variant),
// feature projection, weight-normed conv positions, and the conv stack's frame count.
#pragma once
#include "config.h"
#include "kernels/fused.h"
#include "blocks/lora.h"

namespace et::nn {

// Config fields both encoders have (HF names); each model's config extends it.
// lib/nn/wavlm.ts and lib/nn/wav2vec2.ts declare the fields, HF names and defaults.
struct SpeechEncoderConfig {
  std::vector<int64_t> conv_dim, conv_kernel, conv_stride;
  bool conv_bias, do_stable_layer_norm, masked_spec_embed;
  std::string feat_extract_norm, feat_extract_activation, hidden_act;
  int64_t hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
  int64_t num_conv_pos_embeddings, num_conv_pos_embedding_groups;
  double layer_norm_eps, hidden_dropout, attention_dropout, activation_dropout, feat_proj_dropout;
  // Reads these fields into `w`.
  static void read(const ConfigReader& c, SpeechEncoderConfig& w);
};

struct SpeechFront {
  // Registers feature_extractor.* and feature_projection.* on `model`.
  void build_features(torch::nn::Module& model, const SpeechEncoderConfig& c);
  // Registers pos_conv_embed.* on `encoder`.
  void build_positions(torch::nn::Module& encoder, const SpeechEncoderConfig& c);
  // Waveform (B, N) → projected features (B, T, H), nothing masked.
  at::Tensor features(const at::Tensor& wave, bool train);
  // The two halves of features: the conv stack's output (B, T, C), and its layer norm + projection
  // (+ dropout) to (B, T, H).
  at::Tensor conv_features(const at::Tensor& wave);
  at::Tensor project(const at::Tensor& x, bool train);
  // x (B, T, H) plus its conv positional embedding.
  at::Tensor add_positions(const at::Tensor& x) const;
  // Frames the conv stack makes of `samples`.
  int64_t frames_for(int64_t samples) const;
  // Valid frames (B, T) bool from an attention mask over samples (B, N), through the length formula.
  at::Tensor valid_frames(const at::Tensor& keep, int64_t frames) const;

  SpeechEncoderConfig cfg;
  std::vector<torch::nn::Conv1d> convs;
  std::vector<torch::nn::AnyModule> norms;  // GroupNorm (layer 0 only) or LayerNorm per layer
  torch::nn::LayerNorm proj_ln{nullptr};
  Linear projection{nullptr};
  at::Tensor pos_g, pos_v, pos_bias;
  mutable WeightNormCache pos_w;  // the weight-normed pos conv weight at inference
};

}  // namespace et::nn
