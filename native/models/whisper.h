// Whisper encoder (HF WhisperModel(...).encoder): conv stem with GELU, learned/sinusoidal
// positions, pre-LN layers, final norm. Log-mel (B, n_mels, frames) → (B, frames / 2, d_model).
// Fewer than 2 · max_source_positions frames are accepted (positions are sliced), so long
// dialogues can be encoded in chunks.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

namespace et::nn {

// lib/nn/whisper.ts declares the fields, HF names and defaults.
struct WhisperConfig {
  int64_t num_mel_bins, d_model, encoder_layers, encoder_attention_heads, encoder_ffn_dim;
  int64_t max_source_positions;
  double dropout, attention_dropout, activation_dropout, init_std;
  std::string activation_function;
  static WhisperConfig from(const ConfigReader& c);
};

struct WhisperLayerImpl : torch::nn::Module {
  WhisperLayerImpl(const WhisperConfig& c);
  at::Tensor forward(at::Tensor x);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr}, fc1{nullptr}, fc2{nullptr};
  torch::nn::LayerNorm self_attn_layer_norm{nullptr}, final_layer_norm{nullptr};
  WhisperConfig cfg;
};
TORCH_MODULE(WhisperLayer);

struct WhisperEncoder : Model {
  explicit WhisperEncoder(const WhisperConfig& c);
  // inputs: input_features (B, n_mels, frames); outputs: last_hidden_state (B, frames / 2, d_model)
  Tensors forward(const Tensors& in) override;
  WhisperConfig cfg;
  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
  torch::nn::Embedding embed_positions{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr};
};

}  // namespace et::nn
