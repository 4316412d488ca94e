#include "nn/qformer.h"

#include "nn/attention.h"
#include "nn/builtin.h"

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

at::Tensor QFormerAttentionImpl::forward(const at::Tensor& h, const at::Tensor& kv, const std::optional<at::Tensor>& mask, double attn_drop,
                                         double hidden_drop) {
  bool train = is_training();
  auto a = attend(query(h), key(kv), value(kv), heads, heads, mask, train ? attn_drop : 0.0, false);
  return ln(at::dropout(dense(a), hidden_drop, train) + h);
}

QFormerLayerImpl::QFormerLayerImpl(const QFormerConfig& c, bool cross) : cfg(c) {
  int64_t H = c.hidden_size;
  attention = register_module("attention", QFormerAttention(H, H, c.num_attention_heads, c.layer_norm_eps));
  if (cross) crossattention = register_module("crossattention", QFormerAttention(H, c.encoder_hidden_size, c.num_attention_heads, c.layer_norm_eps));
  auto iq = register_module("intermediate_query", std::make_shared<torch::nn::Module>());
  inter = iq->register_module("dense", Linear(H, c.intermediate_size));
  auto oq = register_module("output_query", std::make_shared<torch::nn::Module>());
  out = oq->register_module("dense", Linear(c.intermediate_size, H));
  out_ln = oq->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(c.layer_norm_eps)));
}

at::Tensor QFormerLayerImpl::forward(at::Tensor h, const at::Tensor& enc, const std::optional<at::Tensor>& enc_mask) {
  h = attention(h, h, std::nullopt, cfg.attention_probs_dropout_prob, cfg.hidden_dropout_prob);
  if (crossattention) h = crossattention(h, enc, enc_mask, cfg.attention_probs_dropout_prob, cfg.hidden_dropout_prob);
  auto f = out(activate(inter(h), cfg.hidden_act));
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
  if (c.num_query_tokens > 0) query_tokens = register_parameter("query_tokens", at::randn({1, c.num_query_tokens, c.hidden_size}) * c.initializer_range);
}

Tensors QFormer::forward(const Tensors& in) {
  at::Tensor q = in.at(0);
  const at::Tensor& enc = in.at(1);
  const at::Tensor& enc_keep = in.size() > 2 ? in[2] : at::Tensor();
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
  return {h};
}

}  // namespace et::nn
