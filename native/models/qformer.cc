#include "models/qformer.h"

#include "blocks/attention.h"
#include "models/layers.h"

#include <cmath>

namespace et::nn {

QFormerAttentionImpl::QFormerAttentionImpl(int64_t hidden, int64_t kv_dim, int64_t h, double eps) : heads(h) {
  auto attn = register_module("attention", std::make_shared<torch::nn::Module>());
  query = attn->register_module("query", Linear(hidden, hidden));
  key = attn->register_module("key", Linear(kv_dim, hidden));
  value = attn->register_module("value", Linear(kv_dim, hidden));
  auto output = register_module("output", std::make_shared<torch::nn::Module>());
  dense = output->register_module("dense", Linear(hidden, hidden));
  ln = output->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(eps)));
}

namespace {
// Cross-attention of few queries over many wide encoder states, with the key and value
// projections folded into the queries and the attention weights: per head,
//   scores = (q·W_k)·encᵀ + q·b_k          instead of  q·(enc·W_kᵀ + b_k)ᵀ
//   output = (p·enc)·W_vᵀ + (Σ p)·b_v      instead of  p·(enc·W_vᵀ + b_v)
// The same sums in another order: the projections of all S encoder states (2·B·S·E·H
// multiply-adds) become B·Q·E·(H + heads·S). SALMONN's window Q-Former (1 query over 17 frames of
// 2048) does 13× less work, forward and backward.
bool fold_pays(int64_t q, int64_t s, int64_t e, int64_t hidden, int64_t heads) { return 2 * q * e * (hidden + heads * s) < s * e * hidden; }

// q: the projected queries (B, Q, H); kv: (B, S, E); w_k, w_v: (H, E); b_k, b_v: (H) or undefined;
// mask: additive (B, 1, 1, S) or none. → (B, Q, H), as attend(q, kv·w_kᵀ + b_k, kv·w_vᵀ + b_v).
at::Tensor folded_attention(const at::Tensor& q, const at::Tensor& kv, const at::Tensor& w_k, const at::Tensor& b_k, const at::Tensor& w_v,
                            const at::Tensor& b_v, int64_t heads, const std::optional<at::Tensor>& mask, double dropout, bool train) {
  const int64_t B = kv.size(0), S = kv.size(1), E = kv.size(2), Q = q.size(1), H = q.size(2), D = H / heads;
  auto qh = q.reshape({B * Q, heads, D}).transpose(0, 1) * (1.0 / std::sqrt(static_cast<double>(D)));  // (heads, B·Q, D)
  auto qk = at::bmm(qh, w_k.view({heads, D, E}));                                   // (heads, B·Q, E)
  qk = qk.view({heads, B, Q, E}).permute({1, 0, 2, 3}).reshape({B, heads * Q, E});  // (B, heads·Q, E)
  auto scores = at::bmm(qk, kv.transpose(1, 2));                                    // (B, heads·Q, S)
  if (b_k.defined()) {
    auto qb = at::bmm(qh, b_k.view({heads, D, 1}));                                 // (heads, B·Q, 1)
    scores = scores + qb.view({heads, B, Q}).permute({1, 0, 2}).reshape({B, heads * Q, 1});
  }
  if (mask) scores = scores + mask->view({B, 1, S});
  auto p = at::dropout(at::softmax(scores, -1), dropout, train);                    // (B, heads·Q, S)
  auto ctx = at::bmm(p, kv).view({B, heads, Q, E}).permute({1, 0, 2, 3}).reshape({heads, B * Q, E});
  auto out = at::bmm(ctx, w_v.view({heads, D, E}).transpose(1, 2));                 // (heads, B·Q, D)
  if (b_v.defined()) {
    auto mass = p.sum(-1).view({B, heads, Q}).permute({1, 0, 2}).reshape({heads, B * Q, 1});  // Σ p (1 without dropout)
    out = out + mass * b_v.view({heads, 1, D});
  }
  return out.view({heads, B, Q, D}).permute({1, 2, 0, 3}).reshape({B, Q, H});
}
}  // namespace

at::Tensor QFormerAttentionImpl::forward(const at::Tensor& h, const at::Tensor& kv, const std::optional<at::Tensor>& mask, double attn_drop,
                                         double hidden_drop) {
  bool train = is_training();
  double drop = train ? attn_drop : 0.0;
  bool plain = (!key->has_lora() || key->merged) && (!value->has_lora() || value->merged);
  bool mask_ok = !mask || (mask->dim() == 4 && kv.dim() == 3 && mask->sizes() == at::IntArrayRef{kv.size(0), 1, 1, kv.size(1)});
  at::Tensor a;
  if (plain && mask_ok && kv.dim() == 3 && fold_pays(h.size(1), kv.size(1), kv.size(2), h.size(2), heads)) {
    a = folded_attention(query(h), kv, key->weight, key->bias, value->weight, value->bias, heads, mask, drop, train);
  } else {
    a = attend(query(h), key(kv), value(kv), heads, heads, mask, drop, false);
  }
  return ln(at::dropout(dense(a), hidden_drop, train) + h);
}

QFormerLayerImpl::QFormerLayerImpl(const QFormerConfig& c, bool cross) : cfg(c) {
  int64_t H = c.hidden_size;
  attention = register_module("attention", QFormerAttention(H, H, c.num_attention_heads, c.layer_norm_eps));
  if (cross)
    crossattention = register_module("crossattention", QFormerAttention(H, c.encoder_hidden_size, c.num_attention_heads, c.layer_norm_eps));
  auto iq = register_module("intermediate_query", std::make_shared<torch::nn::Module>());
  inter = iq->register_module("dense", Linear(H, c.intermediate_size));
  auto oq = register_module("output_query", std::make_shared<torch::nn::Module>());
  out = oq->register_module("dense", Linear(c.intermediate_size, H));
  out_ln = oq->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
}

at::Tensor QFormerLayerImpl::forward(at::Tensor h, const at::Tensor& enc, const std::optional<at::Tensor>& enc_mask) {
  h = attention(h, h, std::nullopt, cfg.attention_probs_dropout_prob, cfg.hidden_dropout_prob);
  if (crossattention) h = crossattention(h, enc, enc_mask, cfg.attention_probs_dropout_prob, cfg.hidden_dropout_prob);
  auto f = out(activate_temp(inter(h), cfg.hidden_act));
  return out_ln(at::dropout(f, cfg.hidden_dropout_prob, is_training()) + h);
}

QFormer::QFormer(const QFormerConfig& c) : cfg(c) {
  TORCH_CHECK(c.hidden_size % c.num_attention_heads == 0, "Q-Former: hidden_size ", c.hidden_size, " is not a multiple of ",
              c.num_attention_heads, " heads");
  TORCH_CHECK(c.cross_attention_frequency > 0, "Q-Former: cross_attention_frequency must be positive");
  layernorm = register_module("layernorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layer = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layer->push_back(QFormerLayer(c, i % c.cross_attention_frequency == 0));
  init_bert_weights(*this, c.initializer_range);
  if (c.num_query_tokens > 0)
    query_tokens = register_parameter("query_tokens", at::randn({1, c.num_query_tokens, c.hidden_size}) * c.initializer_range);
}

Outputs QFormer::forward(const Inputs& in) {
  at::Tensor q = in.opt("query_embeds");
  const at::Tensor& enc = in.at("encoder_hidden_states");
  const at::Tensor enc_keep = in.opt("encoder_attention_mask");
  TORCH_CHECK(enc.dim() == 3 && enc.size(2) == cfg.encoder_hidden_size, "Q-Former: expected encoder_hidden_states (batch, length, ",
              cfg.encoder_hidden_size, ") but got ", enc.sizes());
  if (!q.defined()) {
    TORCH_CHECK(query_tokens.defined(), "Q-Former: no query_embeds given and the model has no query_tokens");
    q = query_tokens.expand({enc.size(0), -1, -1});
  }
  TORCH_CHECK(q.dim() == 3 && q.size(2) == cfg.hidden_size && q.size(0) == enc.size(0), "Q-Former: expected query_embeds (", enc.size(0),
              ", queries, ", cfg.hidden_size, ") but got ", q.sizes());
  std::optional<at::Tensor> mask;
  if (enc_keep.defined()) mask = padding_mask_to_additive(enc_keep, q.scalar_type());
  auto h = at::dropout(layernorm(q), cfg.hidden_dropout_prob, is_training());
  for (const auto& l : *layer) h = l->as<QFormerLayerImpl>()->forward(h, enc, mask);
  return {{"last_hidden_state", h}};
}

static const ModelKind qformer_kind = ModelKind::of<QFormer, QFormerConfig>("qformer");

}  // namespace et::nn
