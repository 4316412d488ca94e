// The front end WavLM and Wav2Vec2 share (HF's Wav2Vec2FeatureEncoder, Wav2Vec2FeatureProjection
// and Wav2Vec2PositionalConvEmbedding): conv feature encoder (group-norm or layer-norm variant),
// feature projection, weight-normed conv positions, and the conv stack's frame count.
#pragma once
#include "blocks/lora.h"
#include "config.h"
#include "kernels/conv.h"

namespace et::nn {

// Config fields both encoders have (HF names); each model's config extends it.
// lib/nn/wavlm.ts and lib/nn/wav2vec2.ts declare the fields, HF names and defaults.
#define SPEECH_ENCODER_FIELDS(X)                                                               \
  X(std::vector<int64_t>, conv_dim, (std::vector<int64_t>{512, 512, 512, 512, 512, 512, 512})) \
  X(std::vector<int64_t>, conv_kernel, (std::vector<int64_t>{10, 3, 3, 3, 3, 2, 2}))           \
  X(std::vector<int64_t>, conv_stride, (std::vector<int64_t>{5, 2, 2, 2, 2, 2, 2}))            \
  X(bool, conv_bias, false)                                                                    \
  X(bool, do_stable_layer_norm, false)                                                         \
  X(bool, masked_spec_embed, true)                                                             \
  X(std::string, feat_extract_norm, "group")                                                   \
  X(std::string, feat_extract_activation, "gelu")                                              \
  X(std::string, hidden_act, "gelu")                                                           \
  X(int64_t, hidden_size, 768)                                                                 \
  X(int64_t, num_hidden_layers, 12)                                                            \
  X(int64_t, num_attention_heads, 12)                                                          \
  X(int64_t, intermediate_size, 3072)                                                          \
  X(int64_t, num_conv_pos_embeddings, 128)                                                     \
  X(int64_t, num_conv_pos_embedding_groups, 16)                                                \
  X(double, layer_norm_eps, 1e-05)                                                             \
  X(double, hidden_dropout, 0.1)                                                               \
  X(double, attention_dropout, 0.1)                                                            \
  X(double, activation_dropout, 0.0)                                                           \
  X(double, feat_proj_dropout, 0.0)
ET_CONFIG(SpeechEncoderConfig, SPEECH_ENCODER_FIELDS);

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
