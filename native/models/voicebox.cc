#include "models/voicebox.h"

#include "blocks/attention.h"

#include <cmath>

namespace et::nn {

VoiceboxLayerImpl::VoiceboxLayerImpl(const VoiceboxConfig& c) : cfg(c) {
  const int64_t d = c.hidden_size;
  auto attn = register_module("attention", std::make_shared<torch::nn::Module>());
  k_proj = attn->register_module("k_proj", Linear(d, d));
  v_proj = attn->register_module("v_proj", Linear(d, d));
  q_proj = attn->register_module("q_proj", Linear(d, d));
  out_proj = attn->register_module("out_proj", Linear(d, d));
  layer_norm = register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-5)));
  auto ff = register_module("feed_forward", std::make_shared<torch::nn::Module>());
  intermediate_dense = ff->register_module("intermediate_dense", Linear(d, c.intermediate_size));
  output_dense = ff->register_module("output_dense", Linear(c.intermediate_size, d));
  final_layer_norm = register_module("final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-5)));
}

// Post-LN (wav2vec2's layout): attention with the ALiBi + key-padding bias, residual, norm, FFN
// (exact GELU), residual, norm; padded positions zeroed after each.
at::Tensor VoiceboxLayerImpl::forward(const at::Tensor& x, const at::Tensor& keep, const at::Tensor& bias) {
  const bool train = is_training();
  const int64_t H = cfg.num_attention_heads, D = cfg.hidden_size / H;
  auto h = x * keep;
  auto a = attend(q_proj(h) * (1.0 / std::sqrt(static_cast<double>(D))), k_proj(h), v_proj(h), H, H, bias,
                  train ? cfg.attention_dropout : 0.0, false, 1.0);
  h = (h + at::dropout(out_proj(a), cfg.hidden_dropout, train)) * keep;
  h = layer_norm(h);
  auto f = at::dropout(at::gelu(intermediate_dense(h)), cfg.activation_dropout, train);
  h = (h + at::dropout(output_dense(f), cfg.hidden_dropout, train)) * keep;
  return final_layer_norm(h) * keep;
}

VoiceboxEstimatorImpl::VoiceboxEstimatorImpl(const VoiceboxConfig& c) : cfg(c) {
  TORCH_CHECK(c.num_hidden_layers % 2 == 0, "Voicebox: num_hidden_layers must be even (U-Net skips), got ", c.num_hidden_layers);
  TORCH_CHECK(
      c.hidden_size % c.num_attention_heads == 0 && c.hidden_size % c.convpos_groups == 0 && c.hidden_size % 2 == 0 && c.hidden_size >= 4,
      "Voicebox: hidden_size ", c.hidden_size, " must be even, ≥ 4 and a multiple of num_attention_heads and convpos_groups");
  const int64_t d = c.hidden_size;
  embed = register_module("embed", torch::nn::Embedding(c.n_tokens + 1, c.embedding_dim));
  proj_in = register_module("proj_in", torch::nn::Conv1d(torch::nn::Conv1dOptions(2 * c.n_feats + c.embedding_dim, d, 1)));
  auto pce = register_module("pos_conv_embeds", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.convpos_depth; ++i) {
    auto holder = std::make_shared<torch::nn::Module>();
    // the released weights hold it weight-normed per tap (dim 2): folded when loaded
    pos_convs.push_back(holder->register_module(
        "conv", torch::nn::Conv1d(torch::nn::Conv1dOptions(d, d, c.convpos_width).padding(c.convpos_width / 2).groups(c.convpos_groups))));
    pce->push_back(holder);
  }
  layer_norm = register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(1e-5)));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(VoiceboxLayer(c));
  skip_connections_layers = register_module("skip_connections_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers / 2; ++i) skip_connections_layers->push_back(Linear(2 * d, d));
  proj_out = register_module("proj_out", torch::nn::Conv1d(torch::nn::Conv1dOptions(d, c.n_feats, 1)));
}

// ALiBi slopes of xformers / the original (get_slopes): geometric for a power of two heads, else the
// power of two below and every other slope of twice that.
static std::vector<double> alibi_slopes(int64_t n) {
  auto pow2 = [](int64_t m) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(m)) - 3)));
    std::vector<double> s(m);
    for (int64_t i = 0; i < m; ++i) s[i] = start * std::pow(start, static_cast<double>(i));
    return s;
  };
  const double l = std::log2(static_cast<double>(n));
  if (l == std::floor(l)) return pow2(n);
  const int64_t p = int64_t(1) << static_cast<int64_t>(std::floor(l));
  auto s = pow2(p);
  auto more = alibi_slopes(2 * p);
  for (int64_t i = 0; static_cast<int64_t>(s.size()) < n; i += 2) s.push_back(more[i]);
  return s;
}

at::Tensor VoiceboxEstimatorImpl::forward(const at::Tensor& units, const at::Tensor& y, const at::Tensor& cond, const at::Tensor& t,
                                          const at::Tensor& lengths) {
  const int64_t B = units.size(0), T = units.size(1), d = cfg.hidden_size, H = cfg.num_attention_heads;
  auto x = embed(units) * std::sqrt(static_cast<double>(cfg.embedding_dim));
  auto h = proj_in(at::cat({x.transpose(1, 2).to(y.scalar_type()), y, cond}, 1));
  // the flow time: a sinusoid of 1000 · t (no MLP), an extra token in front
  const int64_t half = d / 2;
  auto freqs = at::exp(at::arange(half, y.options().dtype(at::kFloat)) * (-std::log(10000.0) / static_cast<double>(half - 1)));
  auto e = (t.to(at::kFloat).reshape({B, 1}) * 1000.0) * freqs.unsqueeze(0);
  auto temb = at::cat({at::sin(e), at::cos(e)}, -1).to(h.scalar_type());
  h = at::cat({temb.unsqueeze(-1), h}, -1).transpose(1, 2);  // (B, T + 1, d)
  auto len = lengths.defined() ? lengths.to(at::kLong) + 1 : at::full({B}, T + 1, units.options().dtype(at::kLong));
  auto keep_b = at::arange(T + 1, len.options()).unsqueeze(0) < len.unsqueeze(1);  // (B, T + 1)
  auto keep = keep_b.to(h.scalar_type()).unsqueeze(-1);
  // ALiBi: −m_h · |i − j|, nothing toward the time token (key 0); padded keys get no bias and the
  // dtype's lowest value
  auto slopes = at::tensor(alibi_slopes(H), at::kDouble).to(at::kFloat).to(h.device()) * -1.0;
  auto r = at::arange(T + 1, h.options().dtype(at::kFloat));
  auto dist = (r.unsqueeze(0) - r.unsqueeze(1)).abs();
  auto alibi = slopes.view({H, 1, 1}) * dist.unsqueeze(0);
  alibi.select(2, 0).zero_();
  auto kf = keep_b.to(at::kFloat).view({B, 1, 1, T + 1});
  auto bias = alibi.unsqueeze(0) * kf + (1.0 - kf) * std::numeric_limits<float>::lowest();
  bias = bias.to(h.scalar_type());
  h = h * keep;
  auto res = h;
  for (auto& conv : pos_convs) h = at::gelu(conv(h.transpose(1, 2))).transpose(1, 2) * keep;
  h = layer_norm(h + res) * keep;
  h = at::dropout(h, cfg.hidden_dropout, is_training());
  std::vector<at::Tensor> skips{h};
  const int64_t L = cfg.num_hidden_layers, half_l = L / 2;
  for (int64_t i = 0; i < L; ++i) {
    auto* layer = layers[i]->as<VoiceboxLayerImpl>();
    if (i >= half_l) {
      auto s = skips.back();
      skips.pop_back();
      h = skip_connections_layers[i - half_l]->as<LinearImpl>()->forward(at::cat({h, s}, -1));
    }
    h = layer->forward(h, keep, bias);
    if (i < half_l - 1) skips.push_back(h);
  }
  auto out = proj_out((h * keep).transpose(1, 2)) * keep.transpose(1, 2);
  return out.narrow(2, 1, T);
}

Voicebox::Voicebox(const VoiceboxConfig& c) : cfg(c) {
  TORCH_CHECK(c.n_feats >= 1 && c.n_tokens >= 1 && c.convpos_width >= 1 && c.convpos_width % 2 == 1,
              "Voicebox: convpos_width must be odd (an even width's trimmed frame is not part of emotorch), got ", c.convpos_width);
  estimator = register_module("estimator", VoiceboxEstimator(c));
}

Outputs Voicebox::forward(const Inputs& in) {
  const at::Tensor& units = in.at("units");
  const at::Tensor& cond = in.at("cond");
  TORCH_CHECK(
      units.dim() == 2 && cond.dim() == 3 && cond.size(0) == units.size(0) && cond.size(1) == cfg.n_feats && cond.size(2) == units.size(1),
      "Voicebox: expected units (batch, frames) and cond (batch, ", cfg.n_feats, ", frames), got ", units.sizes(), " and ", cond.sizes());
  auto& est = *estimator;
  if (in.opt("noise").defined() == false) {
    return {{"velocity", est.forward(units, in.at("noisy_mel"), cond, in.at("t"), in.opt("lengths"))}};
  }
  // the sampler (CFM.generate with solve_heun), batch of one
  at::NoGradGuard no_grad;
  const at::Tensor noise = in.at("noise");
  const auto grid = in.at("timesteps").to(at::kFloat).contiguous();
  const double g = in.at("guidance").item<double>();
  const int64_t P = in.at("prompt_length").item<int64_t>();
  const int64_t N = grid.numel() - 1, T = units.size(1);
  const int64_t need = P > 0 ? 2 * N : 1;
  TORCH_CHECK(units.size(0) == 1 && N >= 1 && noise.dim() == 4 && noise.size(0) == need && noise.size(1) == 1 &&
                  noise.size(2) == cfg.n_feats && noise.size(3) == T && P >= 0 && P <= T,
              "Voicebox: the sampler takes one row, ≥ 2 timesteps and ", need, " noise draws (1, ", cfg.n_feats, ", ", T, "); got units ",
              units.sizes(), ", ", grid.numel(), " timesteps, noise ", noise.sizes(), ", prompt_length ", P);
  const float* ts = grid.const_data_ptr<float>();
  const auto c = P > 0 ? cond : at::zeros_like(cond);  // no prompt: the condition is masked out whole
  const auto mask_units = at::full_like(units, cfg.n_tokens);
  const auto sigma = static_cast<float>(1.0 - cfg.sigma_min);
  auto sample = [&](const at::Tensor& z, float t) {
    auto tt = at::full({1}, t, cond.options().dtype(at::kFloat));
    if (g <= 0) return est.forward(units, z, c, tt, at::Tensor());
    auto v = est.forward(at::cat({mask_units, units}, 0), at::cat({z, z}, 0), at::cat({at::zeros_like(c), c}, 0), at::cat({tt, tt}, 0),
                         at::Tensor());
    auto vu = v.narrow(0, 0, 1), vc = v.narrow(0, 1, 1);
    return vc + (vc - vu) * g;
  };
  int64_t draw = 0;
  auto renoise = [&](at::Tensor& zh, float t) {
    if (P == 0) return;
    const float a = 1.0f - sigma * t;
    auto p = noise[++draw].to(c.scalar_type()) * a + c * t;
    zh.narrow(2, 0, P).copy_(p.narrow(2, 0, P));
  };
  auto z = noise[0].to(cond.scalar_type());
  float t = ts[0], dt = ts[1] - ts[0];
  std::vector<at::Tensor> states;
  for (int64_t step = 1; step <= N; ++step) {
    auto v1 = sample(z, t);
    auto zh = z + v1 * dt;
    t = t + dt;
    renoise(zh, t);
    if (step < N) {
      auto v2 = sample(zh, t);
      zh = z + ((v1 + v2) * dt) / 2;
      renoise(zh, t);
    }
    z = zh;
    states.push_back(z);
    if (step < N) dt = ts[step + 1] - t;
  }
  return {{"mel", z}, {"states", at::stack(states, 0)}};
}

static const ModelKind voicebox_kind = ModelKind::of<Voicebox, VoiceboxConfig>("voicebox");

}  // namespace et::nn
