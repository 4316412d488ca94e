#include "nn/wav2vec2.h"

#include "nn/attention.h"
#include "nn/builtin.h"

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

Wav2Vec2Model::Wav2Vec2Model(const Wav2Vec2Config& c) : cfg(c) {
  TORCH_CHECK(c.conv_dim.size() == c.conv_kernel.size() && c.conv_dim.size() == c.conv_stride.size() && !c.conv_dim.empty(),
              "Wav2Vec2: conv_dim, conv_kernel and conv_stride must have the same non-zero length");
  TORCH_CHECK(c.feat_extract_norm == "group" || c.feat_extract_norm == "layer", "Wav2Vec2: feat_extract_norm must be 'group' or 'layer'");
  auto fe = register_module("feature_extractor", std::make_shared<torch::nn::Module>());
  auto conv_layers = fe->register_module("conv_layers", torch::nn::ModuleList());
  int64_t in = 1;
  for (size_t i = 0; i < c.conv_dim.size(); ++i) {
    auto layer = std::make_shared<torch::nn::Module>();
    convs.push_back(layer->register_module(
        "conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(in, c.conv_dim[i], c.conv_kernel[i]).stride(c.conv_stride[i]).bias(c.conv_bias))));
    if (c.feat_extract_norm == "layer") {
      norms.emplace_back(layer->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.conv_dim[i]}))));
    } else if (i == 0) {
      norms.emplace_back(layer->register_module("layer_norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.conv_dim[0], c.conv_dim[0]))));
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
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Wav2Vec2Layer(c));
  if (c.masked_spec_embed) mask_embed = register_parameter("masked_spec_embed", at::rand({c.hidden_size}));
}

int64_t Wav2Vec2Model::frames_for(int64_t n) const {
  for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) n = (n - cfg.conv_kernel[i]) / cfg.conv_stride[i] + 1;
  return n;
}

at::Tensor Wav2Vec2Model::features(const at::Tensor& wave) {
  auto x = wave.unsqueeze(1);  // (B, 1, N)
  for (size_t i = 0; i < convs.size(); ++i) {
    x = convs[i]->forward(x);  // (B, C, T)
    if (!norms[i].is_empty()) {
      x = cfg.feat_extract_norm == "layer" ? norms[i].forward(x.transpose(1, 2)).transpose(1, 2) : norms[i].forward(x);
    }
    x = activate(x, cfg.feat_extract_activation);
  }
  x = x.transpose(1, 2);  // (B, T, C)
  return at::dropout(projection(proj_ln(x)), cfg.feat_proj_dropout, is_training());
}

Tensors Wav2Vec2Model::forward(const Tensors& in) {
  const at::Tensor& wave = in.at(0);
  const at::Tensor keep = in.size() > 1 ? in[1] : at::Tensor();
  const at::Tensor states = in.size() > 2 ? in[2] : at::Tensor();
  TORCH_CHECK(wave.dim() == 2, "Wav2Vec2: expected input_values (batch, samples) but got ", wave.sizes());
  TORCH_CHECK(frames_for(wave.size(1)) >= 1, "Wav2Vec2: ", wave.size(1), " samples are too few for one frame");
  int64_t L = cfg.num_hidden_layers, upto = states.defined() ? states.item<int64_t>() : L;
  TORCH_CHECK(upto >= 0 && upto <= L, "Wav2Vec2: hidden states up to layer ", upto, " requested but the model has ", L, " layers");
  bool train = is_training();
  auto x = features(wave);  // (B, T, H)
  int64_t B = x.size(0), T = x.size(1);
  at::Tensor valid, mask;
  if (keep.defined()) {
    TORCH_CHECK(keep.dim() == 2 && keep.size(0) == B && keep.size(1) == wave.size(1), "Wav2Vec2: attention_mask must be ", wave.sizes(), " but got ", keep.sizes());
    // Valid frames from each clip's valid sample count, through the conv length formula.
    auto len = keep.to(at::kLong).sum(1);
    for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) len = at::div(len - cfg.conv_kernel[i], cfg.conv_stride[i], "floor") + 1;
    valid = at::arange(T, len.options()).unsqueeze(0).lt(len.unsqueeze(1));  // (B, T)
    x = x.masked_fill(valid.logical_not().unsqueeze(-1), 0);
    mask = padding_mask_to_additive(valid, x.scalar_type());  // (B, 1, 1, T)
  }
  auto w = pos_v * (pos_g / at::linalg_vector_norm(pos_v, 2, at::IntArrayRef{0, 1}, true));
  auto pc = at::conv1d(x.transpose(1, 2), w, pos_bias, 1, cfg.num_conv_pos_embeddings / 2, 1, cfg.num_conv_pos_embedding_groups);  // (B, H, T')
  if (cfg.num_conv_pos_embeddings % 2 == 0) pc = pc.narrow(2, 0, pc.size(2) - 1);
  x = x + activate(pc, cfg.feat_extract_activation).transpose(1, 2);
  if (!cfg.do_stable_layer_norm) x = enc_ln(x);
  x = at::dropout(x, cfg.hidden_dropout, train);
  Tensors hidden;
  if (states.defined()) hidden.push_back(x);
  for (int64_t i = 0; i < upto; ++i) {
    // LayerDrop: in training each layer is skipped with probability `layerdrop`.
    if (!(train && cfg.layerdrop > 0 && at::rand({}).item<double>() < cfg.layerdrop)) x = layers[i]->as<Wav2Vec2LayerImpl>()->forward(x, mask);
    if (states.defined()) hidden.push_back(x);
  }
  at::Tensor last;
  if (upto == L) last = cfg.do_stable_layer_norm ? enc_ln(x) : x;
  Tensors out{last, valid};
  out.insert(out.end(), hidden.begin(), hidden.end());
  return out;
}

}  // namespace et::nn
