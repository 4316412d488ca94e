#include "models/beats.h"

#include "kernels/conv.h"
#include "models/layers.h"

#include <cmath>

namespace et::nn {

BeatsLayerImpl::BeatsLayerImpl(const BeatsConfig& c, torch::nn::Embedding rel_bias) : cfg(c) {
  int64_t d = c.encoder_embed_dim, heads = c.encoder_attention_heads;
  alpha = c.deep_norm ? std::pow(2.0 * c.encoder_layers, 0.25) : 1.0;
  auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  k_proj = attn->register_module("k_proj", Linear(d, d));
  v_proj = attn->register_module("v_proj", Linear(d, d));
  q_proj = attn->register_module("q_proj", Linear(d, d));
  out_proj = attn->register_module("out_proj", Linear(d, d));
  if (c.gru_rel_pos) {
    grep_linear = attn->register_module("grep_linear", Linear(d / heads, 8));
    grep_a = attn->register_parameter("grep_a", at::ones({1, heads, 1, 1}));
  }
  // One table shared by every layer (registered under each, as the original's state dict lists it).
  if (rel_bias) relative_attention_bias = attn->register_module("relative_attention_bias", rel_bias);
  self_attn_layer_norm = register_module("self_attn_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  fc1 = register_module("fc1", Linear(d, c.encoder_ffn_embed_dim));
  fc2 = register_module("fc2", Linear(c.encoder_ffn_embed_dim, d));
  final_layer_norm = register_module("final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
}

at::Tensor BeatsLayerImpl::forward(const at::Tensor& x, const at::Tensor& pad, RelativeBias& bias) {
  bool train = is_training();
  int64_t B = x.size(0), L = x.size(1), H = cfg.encoder_attention_heads, D = x.size(2) / H;
  auto attention = [&](const at::Tensor& h) {
    auto q = q_proj(h);
    auto qh = q.view({B, L, H, D}).transpose(1, 2);                        // (B, H, L, D)
    auto kh = k_proj(h).view({B, L, H, D}).transpose(1, 2);
    auto vh = v_proj(h).view({B, L, H, D}).transpose(1, 2);
    at::Tensor mask;                                                        // additive (B, H, L, L)
    if (bias.defined()) {
      if (grep_linear) {
        // Gate from the unscaled per-head query (bias included): g = σ(Σ₄ grep_linear(q)).
        auto g = at::sigmoid(grep_linear(qh).view({B, H, L, 2, 4}).sum(-1));  // (B, H, L, 2)
        auto gate = g.narrow(-1, 0, 1) * (g.narrow(-1, 1, 1) * grep_a - 1.0) + 2.0;  // (B, H, L, 1)
        mask = bias.gated(gate);                                             // (B, H, L, L)
      } else {
        mask = bias.full().unsqueeze(0).expand({B, H, L, L});
      }
    }
    if (pad.defined()) {
      auto neg = at::zeros({B, 1, 1, L}, x.options()).masked_fill(pad.view({B, 1, 1, L}), -std::numeric_limits<float>::infinity());
      mask = mask.defined() ? mask + neg : neg;
    }
    double drop = train ? cfg.attention_dropout : 0.0;
    bool rows_keep_a_key = drop == 0 || !pad.defined() || pad.logical_not().any(1).all().item<bool>();  // no clip of padding only
    auto a = sdpa(qh, kh, vh, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt, drop, false, std::nullopt, rows_keep_a_key);
    return out_proj(a.transpose(1, 2).reshape({B, L, H * D}));
  };
  auto ffn = [&](const at::Tensor& h) {
    auto f = at::dropout(activate_temp(fc1(h), cfg.activation_fn), cfg.activation_dropout, train);
    return at::dropout(fc2(f), cfg.dropout, train);
  };
  if (cfg.layer_norm_first) {
    auto y = x + at::dropout(attention(self_attn_layer_norm(x)), cfg.dropout, train);
    return y + ffn(final_layer_norm(y));
  }
  // deep norm: LN(x·α + f(x)), as one add (f(x) + α·x) instead of a product and a sum
  auto y = self_attn_layer_norm(at::add(at::dropout(attention(x), cfg.dropout, train), x, alpha));
  return final_layer_norm(at::add(ffn(y), y, alpha));
}

BeatsEncoder::BeatsEncoder(const BeatsConfig& c) : cfg(c) {
  TORCH_CHECK(c.encoder_embed_dim % c.encoder_attention_heads == 0, "BEATs: encoder_embed_dim ", c.encoder_embed_dim,
              " is not a multiple of ", c.encoder_attention_heads, " heads");
  int64_t p = c.input_patch_size, d = c.encoder_embed_dim;
  patch_embedding =
      register_module("patch_embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, c.embed_dim, p).stride(p).bias(c.conv_bias)));
  layer_norm = register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.embed_dim})));
  if (c.embed_dim != d) post_extract_proj = register_module("post_extract_proj", Linear(c.embed_dim, d));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto pos_conv = encoder->register_module("pos_conv", std::make_shared<torch::nn::Module>());
  auto conv = pos_conv->register_module("0", std::make_shared<torch::nn::Module>());
  // weight_norm(dim=2): W[:, :, k] = g[k] · v[:, :, k] / ‖v[:, :, k]‖ (norm over dims 0 and 1)
  double std = std::sqrt(4.0 / (c.conv_pos * d));
  pos_weight_v = conv->register_parameter("weight_v", at::randn({d, d / c.conv_pos_groups, c.conv_pos}) * std);
  pos_weight_g = conv->register_parameter("weight_g", at::linalg_vector_norm(pos_weight_v.detach(), 2, at::IntArrayRef{0, 1}, true));
  pos_bias = conv->register_parameter("bias", at::zeros({d}));
  encoder_layer_norm = encoder->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  layers = encoder->register_module("layers", torch::nn::ModuleList());
  torch::nn::Embedding rel{nullptr};
  if (c.relative_position_embedding) rel = torch::nn::Embedding(c.num_buckets, c.encoder_attention_heads);
  for (int64_t i = 0; i < c.encoder_layers; ++i) layers->push_back(BeatsLayer(c, rel));
}

// The relative bias from the shared table, with the original's bucketing.
RelativeBias BeatsEncoder::relative_bias(int64_t L, const at::Device& dev, at::ScalarType dtype) {
  return RelativeBias(relative_buckets(L, cfg.num_buckets, cfg.max_distance, /*truncate_first=*/true, dev),
                      layers[0]->as<BeatsLayerImpl>()->relative_attention_bias, dtype);
}

// The original's forward_padding_mask: drop the remainder, then a position is padding when all
// the finer positions it covers are.
static at::Tensor reduce_mask(const at::Tensor& mask, int64_t target) {
  int64_t extra = mask.size(1) % target;
  auto m = extra ? mask.narrow(1, 0, mask.size(1) - extra) : mask;
  return m.view({m.size(0), target, -1}).all(-1);
}

Outputs BeatsEncoder::forward(const Inputs& in) {
  const at::Tensor& fbank = in.at("input_features");
  at::Tensor pad = in.opt("padding_mask");
  TORCH_CHECK(fbank.dim() == 3 && fbank.size(2) % cfg.input_patch_size == 0,
              "BEATs: expected fbank (batch, frames, bins) with bins a multiple of ", cfg.input_patch_size, " but got ", fbank.sizes());
  TORCH_CHECK(fbank.size(1) >= cfg.input_patch_size, "BEATs: ", fbank.size(1), " frames are fewer than one patch (", cfg.input_patch_size,
              ")");
  bool train = is_training();
  int64_t B = fbank.size(0);
  if (pad.defined()) {
    TORCH_CHECK(pad.dim() == 2 && pad.size(0) == B, "BEATs: padding_mask must be (batch, samples) but got ", pad.sizes());
    pad = reduce_mask(pad.to(at::kBool), fbank.size(1));
  }
  auto x = patch_embedding(fbank.unsqueeze(1));  // (B, E, T/16, bins/16)
  x = x.reshape({B, x.size(1), -1}).transpose(1, 2);  // (B, L, E), time-major patches
  x = layer_norm(x);
  int64_t L = x.size(1);
  if (pad.defined()) pad = reduce_mask(pad, L);
  if (post_extract_proj) x = post_extract_proj(x);
  x = at::dropout(x, cfg.dropout_input, train);
  if (pad.defined()) x = x.masked_fill(pad.unsqueeze(-1), 0);
  // Conv positions: weight-normed grouped conv, drop the last frame (even kernel), GELU.
  auto w = pos_w.get(pos_weight_v, pos_weight_g);  // kept while v and g stay as they are, when nothing is differentiated
  auto c = conv1d_rows(x, w, pos_bias, 1, cfg.conv_pos / 2, cfg.conv_pos_groups);  // (B, L + 1, C)
  if (cfg.conv_pos % 2 == 0) c = c.narrow(1, 0, c.size(1) - 1);
  x = x + activate_temp(c, "gelu");
  if (!cfg.layer_norm_first) x = encoder_layer_norm(x);
  x = at::dropout(x, cfg.dropout, train);
  RelativeBias bias = cfg.relative_position_embedding ? relative_bias(L, x.device(), x.scalar_type()) : RelativeBias();
  for (const auto& l : *layers) x = l->as<BeatsLayerImpl>()->forward(x, pad, bias);
  if (cfg.layer_norm_first) x = encoder_layer_norm(x);
  Outputs out{{"last_hidden_state", x}};
  if (pad.defined()) out["padding_mask"] = pad;
  return out;
}

static const ModelKind beats_kind = ModelKind::of<BeatsEncoder, BeatsConfig>("beats");

}  // namespace et::nn
