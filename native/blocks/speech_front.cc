#include "blocks/speech_front.h"

#include "kernels/activation.h"
#include "kernels/conv.h"
#include "kernels/norms.h"

#include <cmath>

namespace et::nn {

void SpeechFront::build_features(torch::nn::Module& model, const SpeechEncoderConfig& c) {
  TORCH_CHECK(c.conv_dim.size() == c.conv_kernel.size() && c.conv_dim.size() == c.conv_stride.size() && !c.conv_dim.empty(),
              "conv_dim, conv_kernel and conv_stride must have the same non-zero length");
  TORCH_CHECK(c.feat_extract_norm == "group" || c.feat_extract_norm == "layer", "feat_extract_norm must be 'group' or 'layer'");
  cfg = c;
  auto fe = model.register_module("feature_extractor", std::make_shared<torch::nn::Module>());
  auto conv_layers = fe->register_module("conv_layers", torch::nn::ModuleList());
  int64_t in = 1;
  for (size_t i = 0; i < c.conv_dim.size(); ++i) {
    auto layer = std::make_shared<torch::nn::Module>();
    convs.push_back(layer->register_module(
        "conv",
        torch::nn::Conv1d(torch::nn::Conv1dOptions(in, c.conv_dim[i], c.conv_kernel[i]).stride(c.conv_stride[i]).bias(c.conv_bias))));
    if (c.feat_extract_norm == "layer") {
      norms.emplace_back(layer->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.conv_dim[i]}))));
    } else if (i == 0) {
      norms.emplace_back(
          layer->register_module("layer_norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.conv_dim[0], c.conv_dim[0]))));
    } else {
      norms.emplace_back();
    }
    conv_layers->push_back(layer);
    in = c.conv_dim[i];
  }
  auto fp = model.register_module("feature_projection", std::make_shared<torch::nn::Module>());
  proj_ln = fp->register_module("layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({in}).eps(c.layer_norm_eps)));
  projection = fp->register_module("projection", Linear(in, c.hidden_size));
}

void SpeechFront::build_positions(torch::nn::Module& encoder, const SpeechEncoderConfig& c) {
  auto pce = encoder.register_module("pos_conv_embed", std::make_shared<torch::nn::Module>());
  auto conv = pce->register_module("conv", std::make_shared<torch::nn::Module>());
  pos_bias = conv->register_parameter("bias", at::zeros({c.hidden_size}));
  auto par = conv->register_module("parametrizations", std::make_shared<torch::nn::Module>());
  auto w = par->register_module("weight", std::make_shared<torch::nn::Module>());
  // weight_norm(dim=2): original0 = g (1, 1, K), original1 = v (H, H / groups, K)
  pos_v = w->register_parameter("original1",
                                at::randn({c.hidden_size, c.hidden_size / c.num_conv_pos_embedding_groups, c.num_conv_pos_embeddings}) *
                                    std::sqrt(4.0 / (c.num_conv_pos_embeddings * c.hidden_size)));
  pos_g = w->register_parameter("original0", at::linalg_vector_norm(pos_v.detach(), 2, at::IntArrayRef{0, 1}, true));
}

at::Tensor SpeechFront::features(const at::Tensor& wave, bool train) { return project(conv_features(wave), train); }

at::Tensor SpeechFront::project(const at::Tensor& x, bool train) {
  return at::dropout(projection(proj_ln(x)), cfg.feat_proj_dropout, train);
}

at::Tensor SpeechFront::conv_features(const at::Tensor& wave) {
  bool graph = false;
  if (at::GradMode::is_enabled()) {
    graph = wave.requires_grad();
    for (const auto& conv : convs)
      for (const auto& p : conv->parameters()) graph = graph || p.requires_grad();
    for (const auto& n : norms)
      if (!n.is_empty())
        for (const auto& p : n.ptr()->parameters()) graph = graph || p.requires_grad();
  }
  at::Tensor x;
  if (!graph) {
    // Nothing to differentiate (inference, or a frozen feature encoder): the rows stay time-major,
    // (B, T, C) contiguous, from the waveform (B, N, 1) on; each conv runs on them as they lie
    // (conv1d_rows: the faster of oneDNN's convolution and BLAS products over strided views,
    // timed once per kind), the layer norm reads contiguous rows, the group norm (first layer)
    // reads them as NHWC, and nothing is transposed.
    x = wave.unsqueeze(2);  // (B, N, 1)
    for (size_t i = 0; i < convs.size(); ++i) {
      const auto& conv = convs[i];
      x = conv1d_rows(x, conv->weight, conv->options.bias() ? conv->bias : at::Tensor(), cfg.conv_stride[i], 0, 1);
      // norm + GELU in one pass over the rows, in place (a fresh tensor of conv1d_rows's, contiguous
      // unless EMOTORCH_CPU_LINEAR=aten made it a transposed view)
      bool in_place = cfg.feat_extract_activation == "gelu" && norm_gelu_applies(x);
      if (in_place && cfg.feat_extract_norm == "layer") {
        auto ln = norms[i].get<torch::nn::LayerNorm>();
        layer_norm_gelu_(x, ln->weight, ln->bias, ln->options.eps());
        continue;
      }
      if (in_place && !norms[i].is_empty()) {
        auto gn = norms[i].get<torch::nn::GroupNorm>();
        channel_norm_gelu_(x, gn->weight, gn->bias, gn->options.eps());
        continue;
      }
      if (cfg.feat_extract_norm == "layer") x = norms[i].forward(x);
      else if (!norms[i].is_empty()) x = norms[i].forward(x.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2);  // (B, C, 1, T) NHWC
      x = activate_temp(x, cfg.feat_extract_activation);
    }
  } else if (cfg.feat_extract_norm == "layer") {
    // Channels-last: each conv runs as a 2-D conv over (B, C, 1, T) kept in NHWC memory, so its
    // output is (B, T, C) in memory. The layer norm over C then reads contiguous rows and no
    // transpose is copied before it or before the next conv (HF's channels-first layer costs
    // two strided copies per layer, and a conv over a strided input is slower).
    x = wave.unsqueeze(1).unsqueeze(2);  // (B, 1, 1, N)
    for (size_t i = 0; i < convs.size(); ++i) {
      const auto& conv = convs[i];
      auto w = conv->weight.unsqueeze(2).contiguous(at::MemoryFormat::ChannelsLast);  // (C_out, C_in, 1, k)
      auto b = conv->options.bias() ? std::optional<at::Tensor>(conv->bias) : std::nullopt;
      x = at::conv2d(x, w, b, {1, cfg.conv_stride[i]}).contiguous(at::MemoryFormat::ChannelsLast);  // (B, C, 1, T), NHWC
      auto rows = x.permute({0, 2, 3, 1});  // (B, 1, T, C): a contiguous view
      rows = activate(norms[i].forward(rows), cfg.feat_extract_activation);
      x = rows.permute({0, 3, 1, 2});  // (B, C, 1, T), NHWC again
    }
    x = x.squeeze(2).transpose(1, 2);  // (B, T, C), contiguous
  } else {
    // bfloat16 on the CPU: oneDNN computes these convolutions in NHWC and ATen copies each output,
    // and each input gradient, back to channels-first, transposing element by element (in
    // wav2vec2-base's stack most of the time outside the products). So after the first layer
    // (its GroupNorm is fast channels-first only) the rows are transposed once, in blocks, and the
    // other layers run on the rows (conv1d_rows takes NHWC there). In float32, oneDNN's NHWC
    // backward is the slower one: those stay channels-first, as HF runs them.
    bool rows = bf16_on_cpu(wave);
    x = wave.unsqueeze(1);  // (B, 1, N)
    for (size_t i = 0; i < convs.size(); ++i) {
      if (rows && i > 0) {
        if (i == 1) x = transpose_rows(x);  // (B, T, C)
        x = activate(conv1d_rows(x, convs[i]->weight, convs[i]->options.bias() ? convs[i]->bias : at::Tensor(), cfg.conv_stride[i], 0, 1),
                     cfg.feat_extract_activation);
        continue;
      }
      x = convs[i]->forward(x);  // (B, C, T)
      if (!norms[i].is_empty()) x = norms[i].forward(x);  // GroupNorm, first conv only
      x = activate(x, cfg.feat_extract_activation);
    }
    if (!rows || convs.size() == 1) x = x.transpose(1, 2);  // (B, T, C)
  }
  return x;
}

at::Tensor SpeechFront::add_positions(const at::Tensor& x) const {
  auto w = pos_w.get(pos_v, pos_g);  // kept while v and g stay as they are, when nothing is differentiated
  auto pc = conv1d_rows(x, w, pos_bias, 1, cfg.num_conv_pos_embeddings / 2, cfg.num_conv_pos_embedding_groups);  // (B, T', H)
  if (cfg.num_conv_pos_embeddings % 2 == 0) pc = pc.narrow(1, 0, pc.size(1) - 1);
  return x + activate_temp(pc, cfg.feat_extract_activation);
}

int64_t SpeechFront::frames_for(int64_t n) const {
  for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) n = (n - cfg.conv_kernel[i]) / cfg.conv_stride[i] + 1;
  return n;
}

at::Tensor SpeechFront::valid_frames(const at::Tensor& keep, int64_t frames) const {
  auto len = keep.to(at::kLong).sum(1);
  for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) len = at::div(len - cfg.conv_kernel[i], cfg.conv_stride[i], "floor") + 1;
  return at::arange(frames, len.options()).unsqueeze(0).lt(len.unsqueeze(1));  // (B, T)
}

}  // namespace et::nn
