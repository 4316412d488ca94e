#include "models/wav2vec2.h"

#include "blocks/attention.h"
#include "models/layers.h"

#include <cmath>

namespace et::nn {

Wav2Vec2LayerImpl::Wav2Vec2LayerImpl(const Wav2Vec2Config& c) : cfg(c) {
  int64_t H = c.hidden_size;
  auto attn = register_module("attention", std::make_shared<torch::nn::Module>());
  k_proj = attn->register_module("k_proj", Linear(H, H));
  v_proj = attn->register_module("v_proj", Linear(H, H));
  q_proj = attn->register_module("q_proj", Linear(H, H));
  out_proj = attn->register_module("out_proj", Linear(H, H));
  layer_norm = register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
  auto ff = register_module("feed_forward", std::make_shared<torch::nn::Module>());
  inter = ff->register_module("intermediate_dense", Linear(H, c.intermediate_size));
  out = ff->register_module("output_dense", Linear(c.intermediate_size, H));
  final_layer_norm = register_module("final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
}

at::Tensor Wav2Vec2LayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  bool train = is_training();
  int64_t heads = cfg.num_attention_heads;
  auto attention = [&](const at::Tensor& h) {
    auto m = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
    return out_proj(attend(q_proj(h), k_proj(h), v_proj(h), heads, heads, m, train ? cfg.attention_dropout : 0.0, false));
  };
  auto ffn = [&](const at::Tensor& h) {
    auto f = at::dropout(activate_temp(inter(h), cfg.hidden_act), cfg.activation_dropout, train);
    return at::dropout(out(f), cfg.hidden_dropout, train);
  };
  if (cfg.do_stable_layer_norm) {
    auto y = x + at::dropout(attention(layer_norm(x)), cfg.hidden_dropout, train);
    return y + ffn(final_layer_norm(y));
  }
  auto y = layer_norm(x + at::dropout(attention(x), cfg.hidden_dropout, train));
  return final_layer_norm(y + ffn(y));
}

Wav2Vec2Model::Wav2Vec2Model(const Wav2Vec2Config& c) : cfg(c) {
  front.build_features(*this, c);
  auto enc = register_module("encoder", std::make_shared<torch::nn::Module>());
  front.build_positions(*enc, c);
  enc_ln = enc->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  layers = enc->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Wav2Vec2Layer(c));
  if (c.masked_spec_embed) mask_embed = register_parameter("masked_spec_embed", at::rand({c.hidden_size}));
}

int64_t Wav2Vec2Model::frames_for(int64_t n) const { return front.frames_for(n); }

at::Tensor Wav2Vec2Model::features(const at::Tensor& wave) { return front.features(wave, is_training()); }

Outputs Wav2Vec2Model::forward(const Inputs& in) {
  const at::Tensor& wave = in.at("input_values");
  const at::Tensor keep = in.opt("attention_mask");
  const at::Tensor states = in.opt("hidden_states_up_to");
  TORCH_CHECK(wave.dim() == 2, "Wav2Vec2: expected input_values (batch, samples) but got ", wave.sizes());
  TORCH_CHECK(frames_for(wave.size(1)) >= 1, "Wav2Vec2: ", wave.size(1), " samples are too few for one frame");
  int64_t L = cfg.num_hidden_layers, upto = states.defined() ? states.item<int64_t>() : L;
  TORCH_CHECK(upto >= 0 && upto <= L, "Wav2Vec2: hidden states up to layer ", upto, " requested but the model has ", L, " layers");
  bool train = is_training();
  auto x = features(wave);  // (B, T, H)
  int64_t B = x.size(0), T = x.size(1);
  at::Tensor valid, mask;
  if (keep.defined()) {
    TORCH_CHECK(keep.dim() == 2 && keep.size(0) == B && keep.size(1) == wave.size(1), "Wav2Vec2: attention_mask must be ", wave.sizes(),
                " but got ", keep.sizes());
    valid = front.valid_frames(keep, T);  // (B, T)
    x = x.masked_fill(valid.logical_not().unsqueeze(-1), 0);
    mask = padding_mask_to_additive(valid, x.scalar_type());  // (B, 1, 1, T)
  }
  x = front.add_positions(x);
  if (!cfg.do_stable_layer_norm) x = enc_ln(x);
  x = at::dropout(x, cfg.hidden_dropout, train);
  Tensors hidden;
  if (states.defined()) hidden.push_back(x);
  for (int64_t i = 0; i < upto; ++i) {
    // LayerDrop: in training each layer is skipped with probability `layerdrop`.
    if (!(train && cfg.layerdrop > 0 && at::rand({}).item<double>() < cfg.layerdrop))
      x = layers[i]->as<Wav2Vec2LayerImpl>()->forward(x, mask);
    if (states.defined()) hidden.push_back(x);
  }
  at::Tensor last;
  if (upto == L) last = cfg.do_stable_layer_norm ? enc_ln(x) : x;
  Outputs out;
  if (last.defined()) out["last_hidden_state"] = last;
  if (valid.defined()) out["frame_mask"] = valid;
  for (size_t i = 0; i < hidden.size(); ++i) out["hidden_states." + std::to_string(i)] = hidden[i];
  return out;
}

static const ModelKind wav2vec2_kind = ModelKind::of<Wav2Vec2Model, Wav2Vec2Config>("wav2vec2");

}  // namespace et::nn
