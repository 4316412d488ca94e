// BigVGAN v1 (NVIDIA/BigVGAN as naver-ai/usdm vendors it in src/decoder/voicebox/vocoder): log-mel
// (B, num_mels, frames) → waveform (B, 1, frames · hop). conv_pre, then per stage a transposed conv
// and the mean of anti-aliased multi-periodicity blocks (Snake / SnakeBeta between 2× up- and
// down-sampling by a Kaiser-windowed sinc), then the same activation, conv_post and tanh. Weight
// norm is folded when the released weights are loaded (as the original's remove_weight_norm).
#pragma once
#include "models/model.h"

namespace et::nn {

// bigvgan_22khz_80band's config.json (its defaults: that model's); resblock_dilation_sizes sent flat
// (one list of dilations per kernel size, each as long as the first).
#define BIGVGAN_FIELDS(X)                                                                             \
  X(int64_t, num_mels, 80)                                                                            \
  X(std::vector<int64_t>, upsample_rates, (std::vector<int64_t>{4, 4, 2, 2, 2, 2}))                   \
  X(std::vector<int64_t>, upsample_kernel_sizes, (std::vector<int64_t>{8, 8, 4, 4, 4, 4}))            \
  X(int64_t, upsample_initial_channel, 1536)                                                          \
  X(std::string, resblock, "1")                                                                       \
  X(std::vector<int64_t>, resblock_kernel_sizes, (std::vector<int64_t>{3, 7, 11}))                    \
  X(std::vector<int64_t>, resblock_dilation_sizes, (std::vector<int64_t>{1, 3, 5, 1, 3, 5, 1, 3, 5})) \
  X(std::string, activation, "snakebeta")                                                             \
  X(bool, snake_logscale, true)
ET_CONFIG(BigVGANConfig, BIGVGAN_FIELDS);

// Snake / SnakeBeta between 2× up- and down-sampling (alias_free_torch's Activation1d).
struct AntiAliasedImpl : torch::nn::Module {
  AntiAliasedImpl(int64_t channels, bool beta, bool logscale);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor alpha, beta, up_filter, down_filter;
  bool has_beta, logscale;
};
TORCH_MODULE(AntiAliased);

struct BigVGAN : Model {
  explicit BigVGAN(const BigVGANConfig& c);
  // inputs: mel (B, num_mels, frames); outputs: waveform (B, 1, frames · ∏ upsample_rates)
  Outputs forward(const Inputs& in) override;
  BigVGANConfig cfg;
  torch::nn::Conv1d conv_pre{nullptr}, conv_post{nullptr};
  std::vector<torch::nn::ConvTranspose1d> ups;
  // per block: its convs (convs1 then convs2 for "1"; convs for "2") and activations
  struct Block {
    std::vector<torch::nn::Conv1d> convs1, convs2;
    std::vector<AntiAliased> acts;
  };
  std::vector<Block> blocks;
  AntiAliased activation_post{nullptr};
};

}  // namespace et::nn
