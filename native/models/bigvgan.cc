#include "models/bigvgan.h"

#include "kernels/activation.h"

#include <cmath>

namespace et::nn {

// alias_free_torch's kaiser_sinc_filter1d (kernel 12, even): a Kaiser-windowed sinc low-pass at
// `cutoff` (cycles per sample) with transition `half_width`, normalized to sum 1; (1, 1, K).
static at::Tensor kaiser_sinc(double cutoff, double half_width, int64_t K) {
  const int64_t half = K / 2;
  const double delta_f = 4 * half_width;
  const double A = 2.285 * (half - 1) * M_PI * delta_f + 7.95;
  const double beta = A > 50.0 ? 0.1102 * (A - 8.7) : A >= 21.0 ? 0.5842 * std::pow(A - 21.0, 0.4) + 0.07886 * (A - 21.0) : 0.0;
  auto window = at::kaiser_window(K, /*periodic=*/false, beta, at::TensorOptions().dtype(at::kFloat));
  auto time = at::arange(-half, half, at::kFloat) + 0.5;
  auto f = window * at::sinc(time * (2 * cutoff)) * (2 * cutoff);
  return (f / f.sum()).view({1, 1, K});
}

AntiAliasedImpl::AntiAliasedImpl(int64_t channels, bool b, bool log) : has_beta(b), logscale(log) {
  auto act = register_module("act", std::make_shared<torch::nn::Module>());
  alpha = act->register_parameter("alpha", log ? at::zeros({channels}) : at::ones({channels}));
  if (b) beta = act->register_parameter("beta", log ? at::zeros({channels}) : at::ones({channels}));
  auto up = register_module("upsample", std::make_shared<torch::nn::Module>());
  up_filter = up->register_buffer("filter", kaiser_sinc(0.25, 0.3, 12));
  auto down = register_module("downsample", std::make_shared<torch::nn::Module>());
  auto lp = down->register_module("lowpass", std::make_shared<torch::nn::Module>());
  down_filter = lp->register_buffer("filter", kaiser_sinc(0.25, 0.3, 12));
}

at::Tensor AntiAliasedImpl::forward(const at::Tensor& x) {
  const int64_t C = x.size(1);
  if (anti_aliased_snake_fits(x) && !(at::GradMode::is_enabled() && (alpha.requires_grad() || (has_beta && beta.requires_grad())))) {
    // inference in float32 on the CPU: the same steps in one pass over each row
    at::NoGradGuard ng;
    auto a = logscale ? at::exp(alpha) : alpha;
    auto b = has_beta ? (logscale ? at::exp(beta) : beta) : a;
    return anti_aliased_snake(x, a, 1.0 / (b + 1e-9), up_filter, down_filter);
  }
  // 2× up: replicate-pad 5, transposed depthwise conv by the filter (stride 2) times 2, 15 cut each side
  auto u = at::conv_transpose1d(at::pad(x, {5, 5}, "replicate"), up_filter.expand({C, 1, -1}).to(x.scalar_type()), std::nullopt,
                                at::IntArrayRef{2}, at::IntArrayRef{0}, at::IntArrayRef{0}, C) *
           2;
  u = u.narrow(2, 15, u.size(2) - 30);
  auto a = alpha.to(x.scalar_type()).view({1, C, 1});
  auto b = has_beta ? beta.to(x.scalar_type()).view({1, C, 1}) : a;
  if (logscale) {
    a = at::exp(a);
    b = has_beta ? at::exp(b) : a;
  }
  u = u + (1.0 / (b + 1e-9)) * at::pow(at::sin(u * a), 2);
  // 2× down: replicate-pad (5, 6), depthwise conv by the filter, stride 2
  return at::conv1d(at::pad(u, {5, 6}, "replicate"), down_filter.expand({C, 1, -1}).to(x.scalar_type()), std::nullopt, at::IntArrayRef{2},
                    at::IntArrayRef{0}, at::IntArrayRef{1}, C);
}

BigVGAN::BigVGAN(const BigVGANConfig& c) : cfg(c) {
  const auto& rates = c.upsample_rates;
  const auto& kernels = c.resblock_kernel_sizes;
  TORCH_CHECK(!rates.empty() && rates.size() == c.upsample_kernel_sizes.size(),
              "BigVGAN: upsample_rates and upsample_kernel_sizes differ in length");
  TORCH_CHECK(!kernels.empty() && c.resblock_dilation_sizes.size() % kernels.size() == 0 && !c.resblock_dilation_sizes.empty(),
              "BigVGAN: resblock_dilation_sizes needs as many dilations for each of the ", kernels.size(), " kernel sizes");
  TORCH_CHECK(c.resblock == "1" || c.resblock == "2", "BigVGAN: resblock is \"1\" or \"2\", got \"", c.resblock, "\"");
  TORCH_CHECK(c.activation == "snake" || c.activation == "snakebeta", "BigVGAN: activation is snake or snakebeta, got ", c.activation);
  TORCH_CHECK(c.upsample_initial_channel >> rates.size() >= 1, "BigVGAN: upsample_initial_channel ", c.upsample_initial_channel,
              " is too small to halve ", rates.size(), " times");
  const bool sb = c.activation == "snakebeta";
  const int64_t per = static_cast<int64_t>(c.resblock_dilation_sizes.size() / kernels.size());
  conv_pre = register_module("conv_pre", torch::nn::Conv1d(torch::nn::Conv1dOptions(c.num_mels, c.upsample_initial_channel, 7).padding(3)));
  auto ups_list = register_module("ups", torch::nn::ModuleList());
  for (size_t i = 0; i < rates.size(); ++i) {
    const int64_t k = c.upsample_kernel_sizes[i], u = rates[i];
    TORCH_CHECK(k >= u && (k - u) % 2 == 0, "BigVGAN: upsample kernel ", k, " and rate ", u, " do not keep the length × rate");
    auto holder = torch::nn::ModuleList();
    auto conv = torch::nn::ConvTranspose1d(
        torch::nn::ConvTranspose1dOptions(c.upsample_initial_channel >> i, c.upsample_initial_channel >> (i + 1), k)
            .stride(u)
            .padding((k - u) / 2));
    holder->push_back(conv);
    ups_list->push_back(holder);
    ups.push_back(conv);
  }
  auto rb = register_module("resblocks", torch::nn::ModuleList());
  for (size_t i = 0; i < rates.size(); ++i) {
    const int64_t ch = c.upsample_initial_channel >> (i + 1);
    for (size_t j = 0; j < kernels.size(); ++j) {
      const int64_t k = kernels[j];
      auto m = std::make_shared<torch::nn::Module>();
      Block blk;
      auto c1 = m->register_module(c.resblock == "1" ? "convs1" : "convs", torch::nn::ModuleList());
      torch::nn::ModuleList c2 = c.resblock == "1" ? m->register_module("convs2", torch::nn::ModuleList()) : torch::nn::ModuleList(nullptr);
      auto acts = m->register_module("activations", torch::nn::ModuleList());
      for (int64_t n = 0; n < per; ++n) {
        const int64_t d = c.resblock_dilation_sizes[j * per + n];
        auto a = torch::nn::Conv1d(torch::nn::Conv1dOptions(ch, ch, k).dilation(d).padding((k * d - d) / 2));
        c1->push_back(a);
        blk.convs1.push_back(a);
        if (c2) {
          auto b = torch::nn::Conv1d(torch::nn::Conv1dOptions(ch, ch, k).padding((k - 1) / 2));
          c2->push_back(b);
          blk.convs2.push_back(b);
        }
      }
      const int64_t n_acts = c2 ? 2 * per : per;
      for (int64_t a = 0; a < n_acts; ++a) {
        auto act = AntiAliased(ch, sb, c.snake_logscale);
        acts->push_back(act);
        blk.acts.push_back(act);
      }
      rb->push_back(m);
      blocks.push_back(std::move(blk));
    }
  }
  const int64_t last = c.upsample_initial_channel >> rates.size();
  activation_post = register_module("activation_post", AntiAliased(last, sb, c.snake_logscale));
  conv_post = register_module("conv_post", torch::nn::Conv1d(torch::nn::Conv1dOptions(last, 1, 7).padding(3)));
}

Outputs BigVGAN::forward(const Inputs& in) {
  const at::Tensor& mel = in.at("mel");
  TORCH_CHECK(mel.dim() == 3 && mel.size(1) == cfg.num_mels && mel.size(2) >= 1, "BigVGAN: expected mel (batch, ", cfg.num_mels,
              ", frames ≥ 1), got ", mel.sizes());
  auto x = conv_pre(mel);
  const size_t K = cfg.resblock_kernel_sizes.size();
  for (size_t i = 0; i < ups.size(); ++i) {
    x = ups[i](x);
    at::Tensor xs;
    for (size_t j = 0; j < K; ++j) {
      auto& b = blocks[i * K + j];
      auto h = x;
      for (size_t n = 0; n < b.convs1.size(); ++n) {
        at::Tensor t;
        if (!b.convs2.empty()) {
          t = b.convs2[n](b.acts[2 * n + 1](b.convs1[n](b.acts[2 * n](h))));
        } else {
          t = b.convs1[n](b.acts[n](h));
        }
        h = t + h;
      }
      xs = xs.defined() ? xs + h : h;
    }
    x = xs / static_cast<double>(K);
  }
  x = at::tanh(conv_post(activation_post(x)));
  return {{"waveform", x}};
}

static const ModelKind bigvgan_kind = ModelKind::of<BigVGAN, BigVGANConfig>("bigvgan");

}  // namespace et::nn
