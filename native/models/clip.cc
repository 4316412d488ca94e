#include "models/clip.h"

#include "blocks/attention.h"
#include "models/layers.h"

#include <cmath>

namespace et::nn {
namespace {

torch::nn::LayerNorm layer_norm(int64_t dim, double eps) { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps)); }

// HF CLIPPreTrainedModel._init_weights for one attention block and MLP.
void init_attention(ClipAttentionImpl& a, int64_t dim, int64_t layers, double factor) {
  double in_std = std::pow(dim, -0.5) * std::pow(2.0 * layers, -0.5) * factor, out_std = std::pow(dim, -0.5) * factor;
  for (auto* l : {a.q_proj.get(), a.k_proj.get(), a.v_proj.get()}) l->weight.normal_(0, in_std);
  a.out_proj->weight.normal_(0, out_std);
}

void init_layers(std::vector<ClipLayer>& layers, int64_t dim, double factor) {
  int64_t n = static_cast<int64_t>(layers.size());
  for (auto& l : layers) {
    init_attention(*l->self_attn, dim, n, factor);
    if (l->temporal_attn) init_attention(*l->temporal_attn, dim, n, factor);
    l->fc1->weight.normal_(0, std::pow(2.0 * dim, -0.5) * factor);
    l->fc2->weight.normal_(0, std::pow(dim, -0.5) * std::pow(2.0 * n, -0.5) * factor);
    if (l->temporal_embedding.defined()) l->temporal_embedding.normal_(0, std::pow(dim, -0.5));
  }
}

// LayerNorms to (1, 0), every Linear bias to 0 (the rest of HF's CLIP init).
void init_norms_and_biases(torch::nn::Module& root) {
  for (auto& m : root.modules(/*include_self=*/false)) {
    if (auto* lin = m->as<LinearImpl>()) {
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* ln = m->as<torch::nn::LayerNorm>()) {
      ln->weight.fill_(1);
      ln->bias.zero_();
    }
  }
}

}  // namespace

ClipAttentionImpl::ClipAttentionImpl(int64_t dim, int64_t h, double drop) : heads(h), dropout(drop) {
  TORCH_CHECK(dim % h == 0, "CLIP: hidden size ", dim, " is not a multiple of the ", h, " attention heads");
  k_proj = register_module("k_proj", Linear(dim, dim));
  v_proj = register_module("v_proj", Linear(dim, dim));
  q_proj = register_module("q_proj", Linear(dim, dim));
  out_proj = register_module("out_proj", Linear(dim, dim));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x, const std::optional<at::Tensor>& mask) {
  return out_proj(attend(q_proj(x), k_proj(x), v_proj(x), heads, heads, mask, is_training() ? dropout : 0.0, false));
}

ClipLayerImpl::ClipLayerImpl(int64_t dim, int64_t heads, int64_t inter, double eps, double attn_drop, std::string a,
                             int64_t temporal_frames)
    : act(std::move(a)) {
  if (temporal_frames > 0) {
    temporal_embedding = register_parameter("temporal_embedding", at::zeros({1, temporal_frames, dim}));
    temporal_attn = register_module("temporal_attn", ClipAttention(dim, heads, attn_drop));
    temporal_layer_norm1 = register_module("temporal_layer_norm1", layer_norm(dim, eps));
  }
  self_attn = register_module("self_attn", ClipAttention(dim, heads, attn_drop));
  layer_norm1 = register_module("layer_norm1", layer_norm(dim, eps));
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  fc1 = mlp->register_module("fc1", Linear(dim, inter));
  fc2 = mlp->register_module("fc2", Linear(inter, dim));
  layer_norm2 = register_module("layer_norm2", layer_norm(dim, eps));
}

at::Tensor ClipLayerImpl::forward(at::Tensor x, const std::optional<at::Tensor>& mask, int64_t T) {
  if (temporal_attn) {
    int64_t BT = x.size(0), N = x.size(1), D = x.size(2), B = BT / T;
    if (T != 1) x = (x.view({B, T, N, D}) + temporal_embedding.narrow(1, 0, T).unsqueeze(2)).view({BT, N, D});
    // attention over the T frames of each patch: (B·T, N, D) → (B·N, T, D) and back
    auto h = x.view({B, T, N, D}).transpose(1, 2).reshape({B * N, T, D});
    h = temporal_attn(temporal_layer_norm1(h), std::nullopt);
    x = x + h.view({B, N, T, D}).transpose(1, 2).reshape({BT, N, D});
  }
  x = x + self_attn(layer_norm1(x), mask);
  return x + fc2(activate_temp(fc1(layer_norm2(x)), act));
}

ClipVisionTowerImpl::ClipVisionTowerImpl(const ClipVisionConfig& c) : cfg(c) {
  int64_t D = c.hidden_size, p = c.patch_size;
  TORCH_CHECK(c.image_size.size() == 2, "CLIP vision: image_size must be (height, width)");
  auto emb = register_module("embeddings", std::make_shared<torch::nn::Module>());
  int64_t cls_rows = c.tube_size > 0 ? c.num_frames / c.tube_size : 0;
  class_embedding = emb->register_parameter("class_embedding", cls_rows ? at::empty({cls_rows, D}) : at::empty({D}));
  if (c.tube_size > 0) {
    patch_embedding3d = emb->register_module(
        "patch_embedding",
        torch::nn::Conv3d(torch::nn::Conv3dOptions(c.num_channels, D, {c.tube_size, p, p}).stride({c.tube_size, p, p}).bias(false)));
  } else {
    patch_embedding =
        emb->register_module("patch_embedding", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, D, p).stride(p).bias(false)));
  }
  int64_t positions = (c.image_size[0] / p) * (c.image_size[1] / p) + 1;
  position_embedding = emb->register_module("position_embedding", torch::nn::Embedding(positions, D));
  pre_layrnorm = register_module("pre_layrnorm", layer_norm(D, c.layer_norm_eps));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto list = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(ClipLayer(D, c.num_attention_heads, c.intermediate_size, c.layer_norm_eps, c.attention_dropout, c.hidden_act,
                               c.add_time_attn ? c.num_frames : 0));
    list->push_back(layers.back());
  }
  post_layernorm = register_module("post_layernorm", layer_norm(D, c.layer_norm_eps));
  at::NoGradGuard g;
  double f = c.initializer_factor;
  class_embedding.normal_(0, std::pow(D, -0.5) * f);
  (patch_embedding ? patch_embedding->weight : patch_embedding3d->weight).normal_(0, c.initializer_range * f);
  position_embedding->weight.normal_(0, c.initializer_range * f);
  init_layers(layers, D, f);
  init_norms_and_biases(*this);
}

std::pair<at::Tensor, at::Tensor> ClipVisionTowerImpl::forward(const at::Tensor& pixels) {
  TORCH_CHECK((pixels.dim() == 4 || pixels.dim() == 5) && pixels.size(1) == cfg.num_channels, "CLIP vision: pixel_values must be (batch, ",
              cfg.num_channels, ", height, width) or (batch, ", cfg.num_channels, ", frames, height, width) but got ", pixels.sizes());
  int64_t B = pixels.size(0), T = pixels.dim() == 5 ? pixels.size(2) : 1, D = cfg.hidden_size;
  int64_t H = pixels.size(-2), W = pixels.size(-1), p = cfg.patch_size;
  int64_t gh = cfg.image_size[0] / p, gw = cfg.image_size[1] / p;
  TORCH_CHECK(H / p == gh && W / p == gw, "CLIP vision: a ", H, " × ", W, " input makes a ", H / p, " × ", W / p,
              " patch grid, but the model's ", "position table is for ", gh, " × ", gw, " (image_size ", cfg.image_size[0], " × ",
              cfg.image_size[1], ", patch ", p, ")");
  if (cfg.add_time_attn) TORCH_CHECK(T <= cfg.num_frames, "CLIP vision: ", T, " frames exceed the model's num_frames ", cfg.num_frames);
  at::Tensor x;
  if (patch_embedding3d) {
    TORCH_CHECK(T == cfg.num_frames, "CLIP vision: the tube embedding needs exactly num_frames ", cfg.num_frames, " frames but got ", T);
    auto e = patch_embedding3d(pixels);  // (B, D, T', gh, gw)
    T = e.size(2);
    e = e.flatten(3).permute({0, 2, 3, 1});  // (B, T', gh·gw, D)
    auto cls = class_embedding.view({1, T, 1, D}).expand({B, T, 1, D});
    x = (at::cat({cls, e}, 2) + position_embedding->weight).reshape({B * T, -1, D});
  } else {
    auto frames = pixels.dim() == 5 ? pixels.transpose(1, 2).reshape({B * T, cfg.num_channels, H, W}) : pixels;
    auto e = patch_embedding(frames).flatten(2).transpose(1, 2);  // (B·T, gh·gw, D)
    x = at::cat({class_embedding.view({1, 1, D}).expand({B * T, 1, D}), e}, 1) + position_embedding->weight;
  }
  x = pre_layrnorm(drop_patches(x, B, T));
  for (auto& l : layers) x = l->forward(x, std::nullopt, T);
  auto pooled = post_layernorm(x.select(1, 0)).view({B, T, D}).mean(1);
  return {x, pooled};
}

at::Tensor ClipVisionTowerImpl::drop_patches(const at::Tensor& x, int64_t B, int64_t T) {
  double p = cfg.force_patch_dropout;
  if (!is_training() || p == 0) return x;
  int64_t n = x.size(1) - 1, D = x.size(2);
  int64_t keep = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(n) * (1 - p)));
  // The original draws on the CPU whatever the device (torch.randn(B, n)), per video; with the
  // tube embedding T counts tubes (the original passes the frame count there, which fails for
  // tube_size > 1).
  auto idx = std::get<1>(at::randn({B, n}, at::kFloat).topk(keep, -1));   // (B, keep)
  idx = idx.to(x.device()).unsqueeze(1).expand({B, T, keep}).reshape({B * T, keep, 1}).expand({B * T, keep, D});
  return at::cat({x.narrow(1, 0, 1), x.narrow(1, 1, n).gather(1, idx)}, 1);
}

ClipTextTowerImpl::ClipTextTowerImpl(const ClipTextConfig& c) : cfg(c) {
  int64_t D = c.hidden_size;
  auto emb = register_module("embeddings", std::make_shared<torch::nn::Module>());
  token_embedding = emb->register_module("token_embedding", torch::nn::Embedding(c.vocab_size, D));
  position_embedding = emb->register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, D));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  auto list = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(ClipLayer(D, c.num_attention_heads, c.intermediate_size, c.layer_norm_eps, c.attention_dropout, c.hidden_act, 0));
    list->push_back(layers.back());
  }
  final_layer_norm = register_module("final_layer_norm", layer_norm(D, c.layer_norm_eps));
  at::NoGradGuard g;
  token_embedding->weight.normal_(0, 0.02 * c.initializer_factor);
  position_embedding->weight.normal_(0, 0.02 * c.initializer_factor);
  init_layers(layers, D, c.initializer_factor);
  init_norms_and_biases(*this);
}

std::pair<at::Tensor, at::Tensor> ClipTextTowerImpl::forward(const at::Tensor& ids, const at::Tensor& keep) {
  TORCH_CHECK(ids.dim() == 2, "CLIP text: input_ids must be (batch, length) but got ", ids.sizes());
  int64_t B = ids.size(0), L = ids.size(1);
  TORCH_CHECK(L <= cfg.max_position_embeddings, "CLIP text: ", L, " tokens exceed max_position_embeddings ", cfg.max_position_embeddings);
  auto x = token_embedding(ids) + position_embedding->weight.narrow(0, 0, L);
  // causal, and padding keys masked: additive, the dtype's lowest value where masked
  auto allowed = at::ones({L, L}, ids.options().dtype(at::kBool)).tril().view({1, 1, L, L});
  if (keep.defined()) allowed = allowed.logical_and(keep.ne(0).view({B, 1, 1, L}));
  auto lowest = at::scalar_tensor(std::numeric_limits<float>::lowest(), x.options());
  if (x.scalar_type() == at::kDouble) lowest.fill_(std::numeric_limits<double>::lowest());
  std::optional<at::Tensor> mask = at::where(allowed, at::zeros({}, x.options()), lowest);
  for (auto& l : layers) x = l->forward(x, mask, 1);
  x = final_layer_norm(x);
  // HF: the highest id (the EOS of OpenAI's vocabulary) for the legacy eos_token_id 2, else the first EOS
  auto at_eos = cfg.eos_token_id == 2 ? ids.argmax(-1) : ids.eq(cfg.eos_token_id).to(at::kInt).argmax(-1);
  auto pooled = x.index({at::arange(B, ids.options().dtype(at::kLong)), at_eos});
  return {x, pooled};
}

// A tower model's outputs: its last hidden state, its pooled output, and that projected (under
// `embeds`) when it has a projection.
static Outputs tower_outputs(const at::Tensor& last, const at::Tensor& pooled, Linear& projection, const char* embeds) {
  Outputs out{{"last_hidden_state", last}, {"pooler_output", pooled}};
  if (projection) out[embeds] = projection(pooled);
  return out;
}

ClipVisionModel::ClipVisionModel(const ClipVisionConfig& c) {
  vision_model = register_module("vision_model", ClipVisionTower(c));
  if (c.projection_dim > 0) {
    visual_projection = register_module("visual_projection", Linear(c.hidden_size, c.projection_dim, false));
    at::NoGradGuard g;
    visual_projection->weight.normal_(0, std::pow(c.hidden_size, -0.5) * c.initializer_factor);
  }
}

Outputs ClipVisionModel::forward(const Inputs& in) {
  auto [last, pooled] = vision_model->forward(in.at("pixel_values"));
  return tower_outputs(last, pooled, visual_projection, "image_embeds");
}

ClipTextModel::ClipTextModel(const ClipTextConfig& c) {
  text_model = register_module("text_model", ClipTextTower(c));
  if (c.projection_dim > 0) {
    text_projection = register_module("text_projection", Linear(c.hidden_size, c.projection_dim, false));
    at::NoGradGuard g;
    text_projection->weight.normal_(0, std::pow(c.hidden_size, -0.5) * c.initializer_factor);
  }
}

Outputs ClipTextModel::forward(const Inputs& in) {
  auto [last, pooled] = text_model->forward(in.at("input_ids"), in.opt("attention_mask"));
  return tower_outputs(last, pooled, text_projection, "text_embeds");
}

ClipModel::ClipModel(const ClipTextConfig& t, const ClipVisionConfig& v, double logit_scale_init) {
  TORCH_CHECK(t.projection_dim == v.projection_dim && t.projection_dim > 0, "CLIP: both towers need the same projection_dim");
  text_model = register_module("text_model", ClipTextTower(t));
  vision_model = register_module("vision_model", ClipVisionTower(v));
  visual_projection = register_module("visual_projection", Linear(v.hidden_size, v.projection_dim, false));
  text_projection = register_module("text_projection", Linear(t.hidden_size, t.projection_dim, false));
  logit_scale = register_parameter("logit_scale", at::full({}, logit_scale_init));
  at::NoGradGuard g;
  visual_projection->weight.normal_(0, std::pow(v.hidden_size, -0.5) * v.initializer_factor);
  text_projection->weight.normal_(0, std::pow(t.hidden_size, -0.5) * t.initializer_factor);
}

Outputs ClipModel::forward(const Inputs& in) {
  const at::Tensor ids = in.opt("input_ids");
  const at::Tensor keep = in.opt("attention_mask");
  const at::Tensor pixels = in.opt("pixel_values");
  TORCH_CHECK(ids.defined() || pixels.defined(), "CLIP: give input_ids, pixel_values or both");
  at::Tensor text_embeds, image_embeds, text_pooled, image_pooled, text_last, image_last, per_image, per_text;
  if (ids.defined()) {
    std::tie(text_last, text_pooled) = text_model->forward(ids, keep);
    auto e = text_projection(text_pooled);
    text_embeds = e / e.norm(2, -1, true);
  }
  if (pixels.defined()) {
    std::tie(image_last, image_pooled) = vision_model->forward(pixels);
    auto e = visual_projection(image_pooled);
    image_embeds = e / e.norm(2, -1, true);
  }
  if (text_embeds.defined() && image_embeds.defined()) {
    per_text = at::matmul(text_embeds, image_embeds.t().to(text_embeds.scalar_type())) * logit_scale.exp().to(text_embeds.scalar_type());
    per_image = per_text.t();
  }
  return {{"logits_per_image", per_image},       {"logits_per_text", per_text},          {"text_embeds", text_embeds},
          {"image_embeds", image_embeds},        {"text_pooler_output", text_pooled},    {"image_pooler_output", image_pooled},
          {"text_last_hidden_state", text_last}, {"image_last_hidden_state", image_last}};
}

static const ModelKind clip_vision_kind = ModelKind::of<ClipVisionModel, ClipVisionConfig>("clip_vision");
static const ModelKind clip_text_kind = ModelKind::of<ClipTextModel, ClipTextConfig>("clip_text");
static const ModelKind clip_kind = ModelKind::of<ClipModel, ClipConfig>("clip");

}  // namespace et::nn
