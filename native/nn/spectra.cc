#include "nn/spectra.h"

namespace et::nn {

namespace {
WavLMConfig without_mask_embed(WavLMConfig c) {
  c.masked_spec_embed = false;  // WavLMForMultiTurn has no masked_spec_embed
  return c;
}
}  // namespace

SpectraAudioEncoder::SpectraAudioEncoder(const SpectraAudioConfig& c) : WavLMModel(without_mask_embed(c.wavlm)), scfg(c) {
  audio_cls = register_parameter("audio_cls", at::randn({c.wavlm.hidden_size}));
  audio_sep = register_parameter("audio_sep", at::randn({c.wavlm.hidden_size}));
}

at::Tensor SpectraAudioEncoder::clip_frames(const at::Tensor& keep, int64_t frames) const {
  auto len = keep.to(at::kLong).sum(1);
  for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) len = at::div(len - cfg.conv_kernel[i], cfg.conv_stride[i], "trunc") + 1;
  if (scfg.extra_frame) len = len + 1;
  return at::clamp(len, 0, frames);
}

Tensors SpectraAudioEncoder::forward(const Tensors& in) {
  const at::Tensor& wave = in.at(0);
  const at::Tensor& keep = in.at(1);
  const int64_t B = in.at(2).item<int64_t>();
  const at::Tensor& table = in.size() > 3 ? in[3] : at::Tensor();
  TORCH_CHECK(wave.dim() == 2, "SPECTRA audio: expected input_values (clips, samples) but got ", wave.sizes());
  TORCH_CHECK(keep.defined() && keep.sizes() == wave.sizes(), "SPECTRA audio: attention_mask must be ", wave.sizes());
  const int64_t N = wave.size(0), H = cfg.hidden_size;
  TORCH_CHECK(B > 0 && (N == B || N == 2 * B), "SPECTRA audio: ", N, " clips for ", B, " samples (expected one or two per sample)");
  TORCH_CHECK(frames_for(wave.size(1)) >= 1, "SPECTRA audio: ", wave.size(1), " samples are too few for one frame");
  TORCH_CHECK(!table.defined() || (table.dim() == 2 && table.size(0) >= 2 && table.size(1) == H), "SPECTRA audio: the token-type table must be (2, ",
              H, ") but got ", table.sizes());
  auto h = features(wave);  // (N, T, H)
  const int64_t T = h.size(1);
  auto len = clip_frames(keep, T).cpu();
  auto L = len.accessor<int64_t, 1>();
  auto lopt = at::TensorOptions().dtype(at::kLong).device(h.device());
  at::Tensor x, valid, types;
  if (N == 2 * B) {
    const int64_t Tn = 2 * T + 2;
    auto hv = h.view({B, 2, T, H});  // (B, [history, current], T, H)
    std::vector<at::Tensor> rows;
    std::vector<int64_t> used(B), first(B);
    for (int64_t i = 0; i < B; ++i) {
      int64_t l1 = L[2 * i], l2 = L[2 * i + 1];
      used[i] = l1 + l2 + 2;
      first[i] = l1 + 1;
      auto row = at::cat({audio_cls.unsqueeze(0), hv[i][0].narrow(0, 0, l1), audio_sep.unsqueeze(0), hv[i][1].narrow(0, 0, l2)});
      rows.push_back(at::constant_pad_nd(row, {0, 0, 0, Tn - used[i]}));  // (Tn, H)
    }
    x = at::stack(rows);  // (B, Tn, H)
    auto pos = at::arange(Tn, lopt).unsqueeze(0);
    valid = pos.lt(at::tensor(used, lopt).unsqueeze(1));               // (B, Tn)
    types = pos.ge(at::tensor(first, lopt).unsqueeze(1)).to(at::kLong);  // 0 for cls + history
  } else {
    valid = at::arange(T, lopt).unsqueeze(0).lt(len.to(h.device()).unsqueeze(1));  // (B, T)
    x = h;
    if (scfg.has_audio_cls) {
      x = at::cat({audio_cls.view({1, 1, H}).expand({B, 1, H}), x}, 1);
      valid = at::cat({at::full({B, 1}, !scfg.mask_audio_cls, valid.options()), valid}, 1);
    }
    types = at::ones({B, x.size(1)}, lopt);
  }
  if (table.defined()) x = x + at::embedding(table, types);
  return {encode(x, valid), valid.to(at::kLong)};
}

SpectraAudioConfig SpectraAudioConfig::from(const ConfigReader& c) {
  SpectraAudioConfig s;
  s.wavlm = WavLMConfig::from(c);
  s.has_audio_cls = c.flag("has_audio_cls");
  s.mask_audio_cls = c.flag("mask_audio_cls");
  s.extra_frame = c.flag("extra_frame");
  return s;
}

static const ModelKind spectra_audio_kind("spectra_audio", [](const ConfigReader& c) {
  return std::make_shared<SpectraAudioEncoder>(SpectraAudioConfig::from(c));
});

}  // namespace et::nn
