// Wav2Vec2 (HF Wav2Vec2Model; XLS-R is its layer-norm, stable-layer-norm variant): conv feature
// encoder (group-norm or layer-norm variant), feature projection, weight-normed conv positions,
// post-LN or stable-layer-norm (pre-LN) transformer encoder, no relative position bias.
// Raw 16 kHz waveform (B, samples) → (B, frames, hidden), and the hidden state of any layer.
#pragma once
#include "blocks/speech_front.h"
#include "models/model.h"

namespace et::nn {

#define WAV2VEC2_DEFAULTS(X) X(double, activation_dropout, 0.1)
#define WAV2VEC2_FIELDS(X) X(double, layerdrop, 0.1)
ET_CONFIG_EXTENDS(Wav2Vec2Config, SpeechEncoderConfig, WAV2VEC2_DEFAULTS, WAV2VEC2_FIELDS);

struct Wav2Vec2LayerImpl : torch::nn::Module {
  explicit Wav2Vec2LayerImpl(const Wav2Vec2Config& c);
  // x (B, T, H); mask additive (B, 1, 1, T) or undefined.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);
  Wav2Vec2Config cfg;
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr}, inter{nullptr}, out{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr}, final_layer_norm{nullptr};
};
TORCH_MODULE(Wav2Vec2Layer);

struct Wav2Vec2Model : Model {
  explicit Wav2Vec2Model(const Wav2Vec2Config& c);
  // inputs: input_values (B, N); attention_mask (B, N) 1/0 or undefined; states (0-d integer) or
  // undefined: when given as k (0 ≤ k ≤ layers), only the first k layers run and the outputs
  // carry hidden states 0..k after the two below.
  // outputs: last_hidden_state (B, T, H) (undefined when k < layers), frame mask (B, T) bool true
  // = valid (undefined without a mask), then hidden_states[0..k] (B, T, H): [0] the encoder's
  // input after the conv positions, [i] the output of layer i (as transformers 5 records them).
  Outputs forward(const Inputs& in) override;
  // Conv feature encoder + feature projection: waveform (B, N) → (B, T, H), nothing masked.
  at::Tensor features(const at::Tensor& wave);
  int64_t frames_for(int64_t samples) const;
  Wav2Vec2Config cfg;
  SpeechFront front;
  torch::nn::LayerNorm enc_ln{nullptr};
  at::Tensor mask_embed;
  torch::nn::ModuleList layers{nullptr};
};

}  // namespace et::nn
