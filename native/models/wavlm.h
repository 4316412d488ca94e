// WavLM (HF WavLMModel): conv feature encoder (group-norm or layer-norm variant), feature
// projection, weight-normed conv positions, gated relative position bias (from layer 0, gated per
// layer on the layer's input), post-LN (base, base-plus) or stable-layer-norm (large) encoder.
// Raw 16 kHz waveform (B, samples) → (B, frames, hidden).
#pragma once
#include "blocks/attention.h"
#include "blocks/speech_front.h"
#include "models/model.h"

namespace et::nn {

#define WAVLM_FIELDS(X)        \
  X(int64_t, num_buckets, 320) \
  X(int64_t, max_bucket_distance, 800)
ET_CONFIG_EXTENDS(WavLMConfig, SpeechEncoderConfig, ET_NO_FIELDS, WAVLM_FIELDS);

struct WavLMLayerImpl : torch::nn::Module {
  WavLMLayerImpl(const WavLMConfig& c, bool has_bias);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& pad, RelativeBias& bias);
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
  Outputs forward(const Inputs& in) override;
  // The conv feature encoder and feature projection: waveform (B, N) → (B, T, H), nothing masked.
  at::Tensor features(const at::Tensor& wave);
  // The transformer encoder over (B, T, H) states: frames where `valid` (B, T) is false (when
  // defined) are zeroed and masked out of attention; conv positions, layers.
  at::Tensor encode(at::Tensor x, const at::Tensor& valid);
  int64_t frames_for(int64_t samples) const;
  WavLMConfig cfg;
  SpeechFront front;
  torch::nn::LayerNorm enc_ln{nullptr};
  at::Tensor mask_embed;
  torch::nn::ModuleList layers{nullptr};
};

}  // namespace et::nn
