#include "models/whisper.h"

#include "blocks/attention.h"
#include "models/layers.h"

#include <cmath>

namespace et::nn {

WhisperLayerImpl::WhisperLayerImpl(const WhisperConfig& c) : cfg(c) {
  int64_t d = c.d_model;
  auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  k_proj = attn->register_module("k_proj", Linear(d, d, false));
  v_proj = attn->register_module("v_proj", Linear(d, d));
  q_proj = attn->register_module("q_proj", Linear(d, d));
  out_proj = attn->register_module("out_proj", Linear(d, d));
  self_attn_layer_norm = register_module("self_attn_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  fc1 = register_module("fc1", Linear(d, c.encoder_ffn_dim));
  fc2 = register_module("fc2", Linear(c.encoder_ffn_dim, d));
  final_layer_norm = register_module("final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
}

at::Tensor WhisperLayerImpl::forward(at::Tensor x) {
  bool train = is_training();
  auto h = self_attn_layer_norm(x);
  auto a = attend(q_proj(h), k_proj(h), v_proj(h), cfg.encoder_attention_heads, cfg.encoder_attention_heads, std::nullopt,
                  train ? cfg.attention_dropout : 0.0, false);
  x = x + at::dropout(out_proj(a), cfg.dropout, train);
  h = at::dropout(activate_temp(fc1(final_layer_norm(x)), cfg.activation_function), cfg.activation_dropout, train);
  return x + at::dropout(fc2(h), cfg.dropout, train);
}

// Whisper's sinusoidal position table (length, channels): [sin | cos].
static at::Tensor sinusoids(int64_t length, int64_t channels) {
  double inc = std::log(10000.0) / (channels / 2 - 1);
  auto inv = at::exp(-inc * at::arange(channels / 2, at::kDouble));
  auto t = at::arange(length, at::kDouble).unsqueeze(1) * inv.unsqueeze(0);
  return at::cat({at::sin(t), at::cos(t)}, 1).to(at::kFloat);
}

WhisperEncoder::WhisperEncoder(const WhisperConfig& c) : cfg(c) {
  TORCH_CHECK(c.d_model % c.encoder_attention_heads == 0, "Whisper: d_model ", c.d_model, " is not a multiple of ",
              c.encoder_attention_heads, " heads");
  conv1 = register_module("conv1", torch::nn::Conv1d(torch::nn::Conv1dOptions(c.num_mel_bins, c.d_model, 3).padding(1)));
  conv2 = register_module("conv2", torch::nn::Conv1d(torch::nn::Conv1dOptions(c.d_model, c.d_model, 3).stride(2).padding(1)));
  embed_positions = register_module("embed_positions", torch::nn::Embedding(c.max_source_positions, c.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.encoder_layers; ++i) layers->push_back(WhisperLayer(c));
  layer_norm = register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  init_bert_weights(*this, c.init_std);
  at::NoGradGuard g;
  embed_positions->weight.copy_(sinusoids(c.max_source_positions, c.d_model));
}

Outputs WhisperEncoder::forward(const Inputs& in) {
  const at::Tensor& feats = in.at("input_features");
  TORCH_CHECK(feats.dim() == 3 && feats.size(1) == cfg.num_mel_bins, "Whisper: expected input_features (batch, ", cfg.num_mel_bins,
              ", frames) but got ", feats.sizes());
  int64_t max_frames = 2 * cfg.max_source_positions;
  TORCH_CHECK(feats.size(2) <= max_frames, "Whisper: ", feats.size(2), " frames exceed the model's ", max_frames,
              " (30 s); encode longer audio in chunks");
  auto x = at::gelu(conv1(feats));
  x = at::gelu(conv2(x)).permute({0, 2, 1});  // (B, T, d_model)
  x = x + embed_positions->weight.narrow(0, 0, x.size(1));
  x = at::dropout(x, cfg.dropout, is_training());
  for (const auto& l : *layers) x = l->as<WhisperLayerImpl>()->forward(x);
  return {{"last_hidden_state", layer_norm(x)}};
}

static const ModelKind whisper_kind = ModelKind::of<WhisperEncoder, WhisperConfig>("whisper_encoder");

}  // namespace et::nn
