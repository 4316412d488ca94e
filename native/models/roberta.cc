#include "models/roberta.h"

#include "blocks/attention.h"
#include "models/layers.h"

namespace et::nn {

BertLayerImpl::BertLayerImpl(int64_t hidden, int64_t h, int64_t inter_size, double eps, double hd, double ad, std::string a)
    : heads(h), hidden_drop(hd), attn_drop(ad), act(std::move(a)) {
  TORCH_CHECK(hidden % h == 0, "hidden size ", hidden, " is not a multiple of the ", h, " attention heads");
  auto attention = register_module("attention", std::make_shared<torch::nn::Module>());
  auto self = attention->register_module("self", std::make_shared<torch::nn::Module>());
  query = self->register_module("query", Linear(hidden, hidden));
  key = self->register_module("key", Linear(hidden, hidden));
  value = self->register_module("value", Linear(hidden, hidden));
  auto aout = attention->register_module("output", std::make_shared<torch::nn::Module>());
  attn_out = aout->register_module("dense", Linear(hidden, hidden));
  attn_ln = aout->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(eps)));
  auto intermediate = register_module("intermediate", std::make_shared<torch::nn::Module>());
  inter = intermediate->register_module("dense", Linear(hidden, inter_size));
  auto output = register_module("output", std::make_shared<torch::nn::Module>());
  out = output->register_module("dense", Linear(inter_size, hidden));
  out_ln = output->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden}).eps(eps)));
}

at::Tensor BertLayerImpl::forward(const at::Tensor& x, const std::optional<at::Tensor>& mask) {
  bool train = is_training();
  auto a = attend(query(x), key(x), value(x), heads, heads, mask, train ? attn_drop : 0.0, false);  // (B, T, H)
  auto h = attn_ln(x + at::dropout(attn_out(a), hidden_drop, train));
  auto f = out(activate_temp(inter(h), act));
  return out_ln(h + at::dropout(f, hidden_drop, train));
}

RobertaModel::RobertaModel(const RobertaConfig& c) : cfg(c) {
  auto emb = register_module("embeddings", std::make_shared<torch::nn::Module>());
  word_embeddings = emb->register_module(
      "word_embeddings", torch::nn::Embedding(torch::nn::EmbeddingOptions(c.vocab_size, c.hidden_size).padding_idx(c.pad_token_id)));
  position_embeddings = emb->register_module(
      "position_embeddings",
      torch::nn::Embedding(torch::nn::EmbeddingOptions(c.max_position_embeddings, c.hidden_size).padding_idx(c.pad_token_id)));
  token_type_embeddings = emb->register_module("token_type_embeddings", torch::nn::Embedding(c.type_vocab_size, c.hidden_size));
  emb_ln = emb->register_module("LayerNorm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
  auto encoder = register_module("encoder", std::make_shared<torch::nn::Module>());
  layer = encoder->register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    layer->push_back(BertLayer(c.hidden_size, c.num_attention_heads, c.intermediate_size, c.layer_norm_eps, c.hidden_dropout_prob,
                               c.attention_probs_dropout_prob, c.hidden_act));
  if (c.add_pooling_layer) {
    auto p = register_module("pooler", std::make_shared<torch::nn::Module>());
    pooler = p->register_module("dense", Linear(c.hidden_size, c.hidden_size));
  }
  init_bert_weights(*this, c.initializer_range);
}

at::Tensor RobertaModel::encode(at::Tensor x, const at::Tensor& attention_mask) {
  std::optional<at::Tensor> mask;
  if (attention_mask.defined()) mask = padding_mask_to_additive(attention_mask, x.scalar_type());
  for (const auto& l : *layer) x = l->as<BertLayerImpl>()->forward(x, mask);
  return x;
}

Outputs RobertaModel::forward(const Inputs& in) {
  const at::Tensor ids = in.opt("input_ids");
  const at::Tensor mask = in.opt("attention_mask");
  const at::Tensor types = in.opt("token_type_ids");
  const at::Tensor embeds = in.opt("inputs_embeds");
  TORCH_CHECK(ids.defined() != embeds.defined(), "RoBERTa: give exactly one of input_ids and inputs_embeds");
  at::Tensor x, pos;
  if (ids.defined()) {
    TORCH_CHECK(ids.dim() == 2, "RoBERTa: input_ids must be (batch, length) but got ", ids.sizes());
    // RoBERTa positions count non-padding tokens, starting after padding_idx.
    auto keep = ids.ne(cfg.pad_token_id).to(at::kLong);
    pos = at::cumsum(keep, 1) * keep + cfg.pad_token_id;  // (B, T)
    x = word_embeddings(ids);
  } else {
    x = embeds;
    int64_t T = x.size(1);
    pos = at::arange(cfg.pad_token_id + 1, cfg.pad_token_id + 1 + T, at::TensorOptions().dtype(at::kLong).device(x.device()))
              .unsqueeze(0)
              .expand({x.size(0), T});
  }
  TORCH_CHECK(pos.max().item<int64_t>() < cfg.max_position_embeddings, "RoBERTa: sequence of length ", x.size(1),
              " exceeds max_position_embeddings ", cfg.max_position_embeddings, " (minus padding offset)");
  at::Tensor tt = types.defined() ? types : at::zeros({x.size(0), x.size(1)}, at::TensorOptions().dtype(at::kLong).device(x.device()));
  x = x + token_type_embeddings(tt) + position_embeddings(pos);
  x = at::dropout(emb_ln(x), cfg.hidden_dropout_prob, is_training());
  x = encode(x, mask);
  at::Tensor pooled;
  if (pooler) pooled = at::tanh(pooler(x.select(1, 0)));
  Outputs out{{"last_hidden_state", x}};
  if (pooled.defined()) out["pooler_output"] = pooled;
  return out;
}

RobertaLayers::RobertaLayers(const RobertaConfig& c, int64_t n) : cfg(c) {
  for (int64_t i = 0; i < n; ++i)
    layers.push_back(
        register_module(std::to_string(i), BertLayer(c.hidden_size, c.num_attention_heads, c.intermediate_size, c.layer_norm_eps,
                                                     c.hidden_dropout_prob, c.attention_probs_dropout_prob, c.hidden_act)));
  init_bert_weights(*this, c.initializer_range);
}

Outputs RobertaLayers::forward(const Inputs& in) {
  at::Tensor x = in.at("hidden_states");
  const at::Tensor keep = in.opt("attention_mask");
  TORCH_CHECK(x.dim() == 3 && x.size(2) == cfg.hidden_size, "RoBERTa layers: hidden_states must be (batch, length, ", cfg.hidden_size,
              ") but got ", x.sizes());
  std::optional<at::Tensor> mask;
  if (keep.defined()) {
    TORCH_CHECK(keep.dim() == 2 && keep.size(0) == x.size(0) && keep.size(1) == x.size(1), "RoBERTa layers: attention_mask must be (",
                x.size(0), ", ", x.size(1), ") but got ", keep.sizes());
    mask = padding_mask_to_additive(keep, x.scalar_type());
  }
  for (auto& l : layers) x = l->forward(x, mask);
  return {{"last_hidden_state", x}};
}

static const ModelKind roberta_kind = ModelKind::of<RobertaModel, RobertaConfig>("roberta");
static const ModelKind roberta_layers_kind = ModelKind::of<RobertaLayers, RobertaLayersConfig>("roberta_layers");

}  // namespace et::nn
