#include "nn/wavlm.h"

#include "nn/attention.h"
#include "nn/builtin.h"

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

// `bias` comes in undefined to layer 0, which computes the (heads, T, T) relative bias and hands
// it on; every layer gates it with its own gru_rel_pos_* on its attention input.
at::Tensor WavLMLayerImpl::forward(const at::Tensor& x, const at::Tensor& pad, at::Tensor& bias) {
  bool train = is_training();
  int64_t B = x.size(0), T = x.size(1), Hh = cfg.num_attention_heads, D = x.size(2) / Hh;
  if (!bias.defined()) {
    auto pos = at::arange(T, at::TensorOptions().dtype(at::kLong).device(x.device()));
    auto rel = pos.unsqueeze(0) - pos.unsqueeze(1);  // key − query
    int64_t nb = cfg.num_buckets / 2, max_exact = nb / 2;
    auto a = rel.abs();
    auto large = (max_exact + at::log(a.to(at::kFloat) / max_exact) / std::log(static_cast<double>(cfg.max_bucket_distance) / max_exact) *
                                  (nb - max_exact)).to(at::kLong);
    auto bucket = rel.gt(0).to(at::kLong) * nb + at::where(a.lt(max_exact), a, at::clamp_max(large, nb - 1));
    bias = rel_attn_embed(bucket).permute({2, 0, 1}).to(x.scalar_type());  // (heads, T, T)
  }
  auto attention = [&](const at::Tensor& h) {
    auto g = at::sigmoid(gru_rel_pos_linear(h.view({B, T, Hh, D}).permute({0, 2, 1, 3})).view({B, Hh, T, 2, 4}).sum(-1));  // (B, Hh, T, 2)
    auto gate = g.narrow(-1, 0, 1) * (g.narrow(-1, 1, 1) * gru_rel_pos_const - 1.0) + 2.0;  // (B, Hh, T, 1)
    at::Tensor mask = gate * bias.unsqueeze(0);                                                 // (B, Hh, T, T)
    if (pad.defined()) mask = mask.masked_fill(pad.logical_not().view({B, 1, 1, T}), -std::numeric_limits<float>::infinity());
    auto q = q_proj(h).view({B, T, Hh, D}).transpose(1, 2);
    auto k = k_proj(h).view({B, T, Hh, D}).transpose(1, 2);
    auto v = v_proj(h).view({B, T, Hh, D}).transpose(1, 2);
    auto a = at::scaled_dot_product_attention(q, k, v, mask, train ? cfg.attention_dropout : 0.0, false);
    return out_proj(a.transpose(1, 2).reshape({B, T, Hh * D}));
  };
  auto ffn = [&](const at::Tensor& h) {
    auto f = at::dropout(activate(inter(h), cfg.hidden_act), cfg.activation_dropout, train);
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
  TORCH_CHECK(c.conv_dim.size() == c.conv_kernel.size() && c.conv_dim.size() == c.conv_stride.size() && !c.conv_dim.empty(),
              "WavLM: conv_dim, conv_kernel and conv_stride must have the same non-zero length");
  TORCH_CHECK(c.feat_extract_norm == "group" || c.feat_extract_norm == "layer", "WavLM: feat_extract_norm must be 'group' or 'layer'");
  auto fe = register_module("feature_extractor", std::make_shared<torch::nn::Module>());
  auto conv_layers = fe->register_module("conv_layers", torch::nn::ModuleList());
  int64_t in = 1;
  for (size_t i = 0; i < c.conv_dim.size(); ++i) {
    auto layer = std::make_shared<torch::nn::Module>();
    auto conv = layer->register_module("conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(in, c.conv_dim[i], c.conv_kernel[i]).stride(c.conv_stride[i]).bias(c.conv_bias)));
    convs.push_back(conv);
    if (c.feat_extract_norm == "layer") {
      norms.emplace_back(layer->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.conv_dim[i]}).elementwise_affine(true))));
    } else if (i == 0) {
      norms.emplace_back(layer->register_module("layer_norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.conv_dim[0], c.conv_dim[0]).affine(true))));
    } else {
      norms.emplace_back();
    }
    conv_layers->push_back(layer);
    in = c.conv_dim[i];
  }
  auto fp = register_module("feature_projection", std::make_shared<torch::nn::Module>());
  proj_ln = fp->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({in}).eps(c.layer_norm_eps)));
  projection = fp->register_module("projection", Linear(in, c.hidden_size));
  auto enc = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto pce = enc->register_module("pos_conv_embed", std::make_shared<torch::nn::Module>());
  auto conv = pce->register_module("conv", std::make_shared<torch::nn::Module>());
  pos_bias = conv->register_parameter("bias", at::zeros({c.hidden_size}));
  auto par = conv->register_module("parametrizations", std::make_shared<torch::nn::Module>());
  auto w = par->register_module("weight", std::make_shared<torch::nn::Module>());
  // weight_norm(dim=2): original0 = g (1, 1, K), original1 = v (H, H / groups, K)
  pos_v = w->register_parameter("original1", at::randn({c.hidden_size, c.hidden_size / c.num_conv_pos_embedding_groups, c.num_conv_pos_embeddings}) *
                                                 std::sqrt(4.0 / (c.num_conv_pos_embeddings * c.hidden_size)));
  pos_g = w->register_parameter("original0", at::linalg_vector_norm(pos_v.detach(), 2, at::IntArrayRef{0, 1}, true));
  enc_ln = enc->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  layers = enc->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(WavLMLayer(c, i == 0));
  if (c.masked_spec_embed) mask_embed = register_parameter("masked_spec_embed", at::rand({c.hidden_size}));
}

int64_t WavLMModel::frames_for(int64_t n) const {
  for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) n = (n - cfg.conv_kernel[i]) / cfg.conv_stride[i] + 1;
  return n;
}

at::Tensor WavLMModel::features(const at::Tensor& wave) {
  auto x = wave.unsqueeze(1);  // (B, 1, N)
  for (size_t i = 0; i < convs.size(); ++i) {
    x = convs[i]->forward(x);
    if (!norms[i].is_empty()) {
      x = cfg.feat_extract_norm == "layer" ? norms[i].forward(x.transpose(1, 2)).transpose(1, 2) : norms[i].forward(x);
    }
    x = activate(x, cfg.feat_extract_activation);
  }
  x = x.transpose(1, 2);  // (B, T, C)
  return at::dropout(projection(proj_ln(x)), cfg.feat_proj_dropout, is_training());
}

at::Tensor WavLMModel::encode(at::Tensor x, const at::Tensor& valid) {
  bool train = is_training();
  if (valid.defined()) x = x.masked_fill(valid.logical_not().unsqueeze(-1), 0);
  auto w = pos_v * (pos_g / at::linalg_vector_norm(pos_v, 2, at::IntArrayRef{0, 1}, true));
  auto pc = at::conv1d(x.transpose(1, 2), w, pos_bias, 1, cfg.num_conv_pos_embeddings / 2, 1, cfg.num_conv_pos_embedding_groups);
  if (cfg.num_conv_pos_embeddings % 2 == 0) pc = pc.narrow(2, 0, pc.size(2) - 1);
  x = x + activate(pc, cfg.feat_extract_activation).transpose(1, 2);
  if (!cfg.do_stable_layer_norm) x = enc_ln(x);
  x = at::dropout(x, cfg.hidden_dropout, train);
  at::Tensor bias;
  for (const auto& l : *layers) x = l->as<WavLMLayerImpl>()->forward(x, valid, bias);
  if (cfg.do_stable_layer_norm) x = enc_ln(x);
  return x;
}

Tensors WavLMModel::forward(const Tensors& in) {
  const at::Tensor& wave = in.at(0);
  const at::Tensor& keep = in.size() > 1 ? in[1] : at::Tensor();
  TORCH_CHECK(wave.dim() == 2, "WavLM: expected input_values (batch, samples) but got ", wave.sizes());
  TORCH_CHECK(frames_for(wave.size(1)) >= 1, "WavLM: ", wave.size(1), " samples are too few for one frame");
  auto x = features(wave);  // (B, T, H)
  int64_t B = x.size(0), T = x.size(1);
  at::Tensor valid;
  if (keep.defined()) {
    TORCH_CHECK(keep.dim() == 2 && keep.size(0) == B && keep.size(1) == wave.size(1), "WavLM: attention_mask must be ", wave.sizes(), " but got ", keep.sizes());
    // Valid frames from each clip's valid sample count, through the conv length formula.
    auto len = keep.to(at::kLong).sum(1);
    for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) len = at::div(len - cfg.conv_kernel[i], cfg.conv_stride[i], "floor") + 1;
    valid = at::arange(T, len.options()).unsqueeze(0).lt(len.unsqueeze(1));  // (B, T)
  }
  return {encode(x, valid), valid};
}

}  // namespace et::nn
