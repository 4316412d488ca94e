#include "models/intern_vit.h"

#include "blocks/attention.h"
#include "blocks/checkpoint.h"

#include "kernels/norms.h"
#include "models/layers.h"

#include <cmath>

namespace et::nn {

InternAttentionImpl::InternAttentionImpl(const InternVisionConfig& c) : cfg(c) {
  int64_t D = c.hidden_size;
  qkv = register_module("qkv", Linear(D, 3 * D, c.qkv_bias));
  if (c.qk_normalization) {
    q_norm = register_module("q_norm", std::make_shared<torch::nn::Module>())->register_parameter("weight", at::ones({D}));
    k_norm = register_module("k_norm", std::make_shared<torch::nn::Module>())->register_parameter("weight", at::ones({D}));
  }
  proj = register_module("proj", Linear(D, D, true));
}

at::Tensor InternAttentionImpl::forward(const at::Tensor& x) {
  int64_t B = x.size(0), N = x.size(1), D = cfg.hidden_size, H = cfg.num_attention_heads, hd = D / H;
  auto parts = qkv(x).chunk(3, -1);  // q, k, v (B, N, D) each
  at::Tensor q = parts[0], k = parts[1], v = parts[2];
  if (cfg.qk_normalization) {  // over all heads at once, as the original's q_norm(flatten(heads))
    q = rms_norm(q, q_norm, cfg.layer_norm_eps);
    k = rms_norm(k, k_norm, cfg.layer_norm_eps);
  }
  auto heads = [&](const at::Tensor& t) { return t.reshape({B, N, H, hd}).transpose(1, 2); };  // (B, H, N, hd)
  auto a = sdpa(heads(q), heads(k), heads(v), std::nullopt, is_training() ? cfg.attention_dropout : 0.0, false, std::nullopt,
                /*rows_keep_a_key=*/true);
  auto y = proj(a.transpose(1, 2).reshape({B, N, D}));
  return is_training() && cfg.dropout > 0 ? at::dropout(y, cfg.dropout, true) : y;
}

InternVisionLayerImpl::InternVisionLayerImpl(const InternVisionConfig& c, double drop_path) : cfg(c), drop_path(drop_path) {
  int64_t D = c.hidden_size;
  attn = register_module("attn", InternAttention(c));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  fc1 = mlp->register_module("fc1", Linear(D, c.intermediate_size, true));
  fc2 = mlp->register_module("fc2", Linear(c.intermediate_size, D, true));
  bool ln = c.norm_type == "layer_norm";
  auto n1 = register_module("norm1", std::make_shared<torch::nn::Module>());
  norm1_weight = n1->register_parameter("weight", at::ones({D}));
  if (ln) norm1_bias = n1->register_parameter("bias", at::zeros({D}));
  auto n2 = register_module("norm2", std::make_shared<torch::nn::Module>());
  norm2_weight = n2->register_parameter("weight", at::ones({D}));
  if (ln) norm2_bias = n2->register_parameter("bias", at::zeros({D}));
  ls1 = register_parameter("ls1", at::full({D}, c.initializer_factor));
  ls2 = register_parameter("ls2", at::full({D}, c.initializer_factor));
}

at::Tensor InternVisionLayerImpl::norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const {
  if (cfg.norm_type == "rms_norm") return rms_norm(x, w, cfg.layer_norm_eps);
  return at::layer_norm(x, {cfg.hidden_size}, w, b, cfg.layer_norm_eps);
}

namespace {
// timm's DropPath in training: each sample's branch kept with probability 1 − p and scaled by 1 / (1 − p).
at::Tensor drop_branch(const at::Tensor& y, double p, bool training) {
  if (!training || p <= 0) return y;
  auto keep = at::empty({y.size(0), 1, 1}, y.options()).bernoulli_(1 - p) / (1 - p);
  return y * keep;
}
}  // namespace

at::Tensor InternVisionLayerImpl::forward(const at::Tensor& x) {
  auto h = x + drop_branch(attn(norm(x, norm1_weight, norm1_bias)) * ls1, drop_path, is_training());
  auto m = fc2(activate_temp(fc1(norm(h, norm2_weight, norm2_bias)), cfg.hidden_act));
  return h + drop_branch(m * ls2, drop_path, is_training());
}

InternVisionModel::InternVisionModel(const InternVisionConfig& c) : cfg(c) {
  TORCH_CHECK(c.hidden_size % c.num_attention_heads == 0, "InternViT: hidden_size ", c.hidden_size,
              " is not a multiple of num_attention_heads ", c.num_attention_heads);
  int64_t D = c.hidden_size, side = c.image_size / c.patch_size;
  auto emb = register_module("embeddings", std::make_shared<torch::nn::Module>());
  class_embedding = emb->register_parameter("class_embedding", at::randn({1, 1, D}));
  patch_embedding = emb->register_module("patch_embedding",
                                         torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, D, c.patch_size).stride(c.patch_size)));
  position_embedding = emb->register_parameter("position_embedding", at::randn({1, side * side + 1, D}));
  auto enc = register_module("encoder", std::make_shared<torch::nn::Module>());
  layers = enc->register_module("layers", torch::nn::ModuleList());
  // Stochastic depth grows linearly over the layers: linspace(0, drop_path_rate, L), as the original.
  auto rates = at::linspace(0, c.drop_path_rate, std::max<int64_t>(c.num_hidden_layers, 1), at::kDouble);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(InternVisionLayer(c, rates[i].item<double>()));
}

at::Tensor InternVisionModel::embed(const at::Tensor& pixel_values) {
  auto dtype = patch_embedding->weight.scalar_type();
  auto patches = patch_embedding(pixel_values.to(dtype));  // (B, D, h, w)
  int64_t B = patches.size(0), D = patches.size(1), h = patches.size(2), w = patches.size(3), side = cfg.image_size / cfg.patch_size;
  auto tokens = patches.flatten(2).transpose(1, 2);  // (B, h·w, D)
  auto cls = class_embedding.expand({B, 1, D}).to(dtype);
  // The grid's position embeddings resized (bicubic, float32) to h × w, as _get_pos_embed always does.
  auto grid = position_embedding.narrow(1, 1, side * side).to(at::kFloat).reshape({1, side, side, D}).permute({0, 3, 1, 2});
  auto resized = at::upsample_bicubic2d(grid, {h, w}, /*align_corners=*/false).reshape({1, D, h * w}).permute({0, 2, 1});
  auto pos = at::cat({position_embedding.narrow(1, 0, 1), resized.to(position_embedding.scalar_type())}, 1);
  return at::cat({cls, tokens}, 1) + pos.to(dtype);
}

Outputs InternVisionModel::forward(const Inputs& in) {
  const at::Tensor& pixels = in.at("pixel_values");
  const at::Tensor layer = in.opt("select_layer");
  TORCH_CHECK(pixels.dim() == 4 && pixels.size(1) == cfg.num_channels, "InternViT: pixel_values must be (B, ", cfg.num_channels,
              ", H, W), got ", pixels.sizes());
  int64_t L = static_cast<int64_t>(layers->size());
  int64_t want = layer.defined() ? layer.item<int64_t>() : L;
  if (want < 0) want += L + 1;
  TORCH_CHECK(want >= 0 && want <= L, "InternViT: hidden state index out of range for ", L, " layers");
  at::Tensor x = embed(pixels), asked;
  if (want == 0) asked = x;
  bool recompute = recompute_layers(x);
  for (int64_t i = 0; i < L; ++i) {
    if (recompute) {
      std::shared_ptr<torch::nn::Module> layer = layers[i];
      x = checkpoint([layer](const at::Tensor& h) { return layer->as<InternVisionLayerImpl>()->forward(h); }, x);
    } else {
      x = layers[i]->as<InternVisionLayerImpl>()->forward(x);
    }
    if (want == i + 1) asked = x;
  }
  Outputs out{{"last_hidden_state", x}, {"pooler_output", x.select(1, 0)}};
  if (layer.defined()) out["selected_hidden_state"] = asked;
  return out;
}

InternVLProjector::InternVLProjector(const InternVLProjectorConfig& c) : cfg(c) {
  int64_t scale = std::llround(1.0 / c.downsample_ratio), in = c.vit_hidden_size * scale * scale;
  auto norm = register_module("0", std::make_shared<torch::nn::Module>());
  norm_weight = norm->register_parameter("weight", at::ones({in}));
  norm_bias = norm->register_parameter("bias", at::zeros({in}));
  fc1 = register_module("1", Linear(in, c.llm_hidden_size, true));
  fc2 = register_module("3", Linear(c.llm_hidden_size, c.llm_hidden_size, true));
}

Outputs InternVLProjector::forward(const Inputs& in) {
  const at::Tensor& hidden = in.at("vit_embeds");
  TORCH_CHECK(hidden.dim() == 3 && hidden.size(2) == cfg.vit_hidden_size, "InternVL projector: expected vision hidden states (B, 1 + N, ",
              cfg.vit_hidden_size, "), got ", hidden.sizes());
  int64_t n = hidden.size(0), N = hidden.size(1) - 1, c = cfg.vit_hidden_size, side = std::llround(std::sqrt(static_cast<double>(N)));
  double s = cfg.downsample_ratio;
  int64_t hs = std::llround(side * s), cs = std::llround(c / s), css = std::llround(c / (s * s));
  TORCH_CHECK(side * side == N && std::abs(hs - side * s) < 1e-9, "InternVL projector: ", N, " patches are not a square grid whose side ",
              "downsample_ratio ", s, " divides");
  auto x = hidden.narrow(1, 1, N).reshape({n, side, side, c});  // (n, w, h, c) in the original's names
  x = x.view({n, side, hs, cs}).permute({0, 2, 1, 3}).contiguous();  // (n, h·s, w, c/s)
  x = x.view({n, hs, hs, css});                                      // (n, h·s, w·s, c/s²)
  if (cfg.ps_version != "v1") x = x.permute({0, 2, 1, 3}).contiguous();
  x = x.reshape({n, hs * hs, css});
  x = at::layer_norm(x, {css}, norm_weight, norm_bias, 1e-5);
  return {{"image_tokens", fc2(at::gelu(fc1(x)))}};
}

static const ModelKind internvl_projector_kind = ModelKind::of<InternVLProjector, InternVLProjectorConfig>("internvl_projector");

static const ModelKind intern_vit_kind = ModelKind::of<InternVisionModel, InternVisionConfig>("intern_vit");

}  // namespace et::nn
