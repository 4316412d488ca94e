#include "models/wavlm.h"

#include "blocks/attention.h"
#include "models/layers.h"

#include <cmath>

namespace et::nn {

WavLMLayerImpl::WavLMLayerImpl(const WavLMConfig& c, bool has_bias) : cfg(c) {
  int64_t H = c.hidden_size, heads = c.num_attention_heads;
  auto attn = register_module("attention", std::make_shared<torch::nn::Module>());
  k_proj = attn->register_module("k_proj", Linear(H, H));
  v_proj = attn->register_module("v_proj", Linear(H, H));
  q_proj = attn->register_module("q_proj", Linear(H, H));
  out_proj = attn->register_module("out_proj", Linear(H, H));
  gru_rel_pos_const = attn->register_parameter("gru_rel_pos_const", at::ones({1, heads, 1, 1}));
  gru_rel_pos_linear = attn->register_module("gru_rel_pos_linear", Linear(H / heads, 8));
  if (has_bias) rel_attn_embed = attn->register_module("rel_attn_embed", torch::nn::Embedding(c.num_buckets, heads));
  layer_norm = register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
  auto ff = register_module("feed_forward", std::make_shared<torch::nn::Module>());
  inter = ff->register_module("intermediate_dense", Linear(H, c.intermediate_size));
  out = ff->register_module("output_dense", Linear(c.intermediate_size, H));
  final_layer_norm = register_module("final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
}

// `bias` comes in undefined to layer 0, which buckets the offsets and hands the bias on; every layer
// gates it with its own gru_rel_pos_* on its attention input.
at::Tensor WavLMLayerImpl::forward(const at::Tensor& x, const at::Tensor& pad, RelativeBias& bias) {
  bool train = is_training();
  int64_t B = x.size(0), T = x.size(1), Hh = cfg.num_attention_heads, D = x.size(2) / Hh;
  if (!bias.defined())
    bias = RelativeBias(relative_buckets(T, cfg.num_buckets, cfg.max_bucket_distance, /*truncate_first=*/false, x.device()), rel_attn_embed,
                        x.scalar_type());
  auto attention = [&](const at::Tensor& h) {
    auto g = at::sigmoid(gru_rel_pos_linear(h.view({B, T, Hh, D}).permute({0, 2, 1, 3})).view({B, Hh, T, 2, 4}).sum(-1));  // (B, Hh, T, 2)
    auto gate = g.narrow(-1, 0, 1) * (g.narrow(-1, 1, 1) * gru_rel_pos_const - 1.0) + 2.0;  // (B, Hh, T, 1)
    at::Tensor mask = bias.gated(gate);  // (B, Hh, T, T)
    if (pad.defined()) mask = mask.masked_fill(pad.logical_not().view({B, 1, 1, T}), -std::numeric_limits<float>::infinity());
    auto q = q_proj(h).view({B, T, Hh, D}).transpose(1, 2);
    auto k = k_proj(h).view({B, T, Hh, D}).transpose(1, 2);
    auto v = v_proj(h).view({B, T, Hh, D}).transpose(1, 2);
    // in bfloat16 (autocast) the scores take the mask in bfloat16, as HF's baddbmm does under autocast
    if (at::isReducedFloatingType(q.scalar_type()) && mask.scalar_type() != q.scalar_type()) mask = mask.to(q.scalar_type());
    double drop = train ? cfg.attention_dropout : 0.0;
    bool rows_keep_a_key = drop == 0 || !pad.defined() || pad.ne(0).any(1).all().item<bool>();  // no clip without a frame
    auto a = sdpa(q, k, v, mask, drop, false, std::nullopt, rows_keep_a_key);
    return out_proj(a.transpose(1, 2).reshape({B, T, Hh * D}));
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

WavLMModel::WavLMModel(const WavLMConfig& c) : cfg(c) {
  front.build_features(*this, c);
  auto enc = register_module("encoder", std::make_shared<torch::nn::Module>());
  front.build_positions(*enc, c);
  enc_ln = enc->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  layers = enc->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(WavLMLayer(c, i == 0));
  if (c.masked_spec_embed) mask_embed = register_parameter("masked_spec_embed", at::rand({c.hidden_size}));
}

int64_t WavLMModel::frames_for(int64_t n) const { return front.frames_for(n); }

at::Tensor WavLMModel::features(const at::Tensor& wave) { return front.features(wave, is_training()); }

at::Tensor WavLMModel::encode(at::Tensor x, const at::Tensor& valid) {
  bool train = is_training();
  if (valid.defined()) x = x.masked_fill(valid.logical_not().unsqueeze(-1), 0);
  x = front.add_positions(x);
  if (!cfg.do_stable_layer_norm) x = enc_ln(x);
  x = at::dropout(x, cfg.hidden_dropout, train);
  RelativeBias bias;
  // without padding frames the attention needs no padding mask (a (B, heads, T, T) fill per layer)
  at::Tensor pad = valid.defined() && !valid.all().item<bool>() ? valid : at::Tensor();
  for (const auto& l : *layers) x = l->as<WavLMLayerImpl>()->forward(x, pad, bias);
  if (cfg.do_stable_layer_norm) x = enc_ln(x);
  return x;
}

Outputs WavLMModel::forward(const Inputs& in) {
  const at::Tensor& wave = in.at("input_values");
  const at::Tensor keep = in.opt("attention_mask");
  TORCH_CHECK(wave.dim() == 2, "WavLM: expected input_values (batch, samples) but got ", wave.sizes());
  TORCH_CHECK(frames_for(wave.size(1)) >= 1, "WavLM: ", wave.size(1), " samples are too few for one frame");
  auto x = features(wave);  // (B, T, H)
  int64_t B = x.size(0), T = x.size(1);
  at::Tensor valid;
  if (keep.defined()) {
    TORCH_CHECK(keep.dim() == 2 && keep.size(0) == B && keep.size(1) == wave.size(1), "WavLM: attention_mask must be ", wave.sizes(),
                " but got ", keep.sizes());
    valid = front.valid_frames(keep, T);  // (B, T)
  }
  Outputs out{{"last_hidden_state", encode(x, valid)}};
  if (valid.defined()) out["frame_mask"] = valid;
  return out;
}

static const ModelKind wavlm_kind = ModelKind::of<WavLMModel, WavLMConfig>("wavlm");

}  // namespace et::nn
