// Whisper encoder (HF WhisperModel(...).encoder): conv stem with GELU, learned/sinusoidal
// positions, pre-LN layers, final norm. Log-mel (B, n_mels, frames) → (B, frames / 2, d_model).
// Fewer than 2 · max_source_positions frames are accepted (positions are sliced), so long
// dialogues can be encoded in chunks.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

namespace et::nn {

// HF WhisperConfig's encoder fields (defaults: whisper-large-v2's sizes).
#define WHISPER_FIELDS(X)                 \
  X(int64_t, num_mel_bins, 80)            \
  X(int64_t, d_model, 1280)               \
  X(int64_t, encoder_layers, 32)          \
  X(int64_t, encoder_attention_heads, 20) \
  X(int64_t, encoder_ffn_dim, 5120)       \
  X(int64_t, max_source_positions, 1500)  \
  X(double, dropout, 0.0)                 \
  X(double, attention_dropout, 0.0)       \
  X(double, activation_dropout, 0.0)      \
  X(double, init_std, 0.02)               \
  X(std::string, activation_function, "gelu")
ET_CONFIG(WhisperConfig, WHISPER_FIELDS);

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
  Outputs forward(const Inputs& in) override;
  WhisperConfig cfg;
  torch::nn::Conv1d conv1{nullptr}, conv2{nullptr};
  torch::nn::Embedding embed_positions{nullptr};
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm layer_norm{nullptr};
};

}  // namespace et::nn
