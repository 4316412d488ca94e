#include "models/spectra.h"

namespace et::nn {

namespace {
WavLMConfig without_mask_embed(WavLMConfig c) {
  c.masked_spec_embed = false;  // WavLMForMultiTurn has no masked_spec_embed
  return c;
}
}  // namespace

SpectraAudioEncoder::SpectraAudioEncoder(const SpectraAudioConfig& c) : WavLMModel(without_mask_embed(c)), scfg(c) {
  audio_cls = register_parameter("audio_cls", at::randn({c.hidden_size}));
  audio_sep = register_parameter("audio_sep", at::randn({c.hidden_size}));
}

at::Tensor SpectraAudioEncoder::clip_frames(const at::Tensor& keep, int64_t frames) const {
  auto len = keep.to(at::kLong).sum(1);
  for (size_t i = 0; i < cfg.conv_kernel.size(); ++i) len = at::div(len - cfg.conv_kernel[i], cfg.conv_stride[i], "trunc") + 1;
  if (scfg.extra_frame) len = len + 1;
  return at::clamp(len, 0, frames);
}

Outputs SpectraAudioEncoder::forward(const Inputs& in) {
  const at::Tensor& wave = in.at("input_values");
  const at::Tensor& keep = in.at("attention_mask");
  const int64_t B = in.at("batch_size").item<int64_t>();
  const at::Tensor table = in.opt("token_type_table");
  const at::Tensor zero = in.opt("mam_zero");
  const at::Tensor source = in.opt("mam_source");
  const at::Tensor detach = in.opt("detach_target");
  const bool detach_target = detach.defined() && detach.item<bool>();
  TORCH_CHECK(wave.dim() == 2, "SPECTRA audio: expected input_values (clips, samples) but got ", wave.sizes());
  TORCH_CHECK(keep.defined() && keep.sizes() == wave.sizes(), "SPECTRA audio: attention_mask must be ", wave.sizes());
  const int64_t N = wave.size(0), H = cfg.hidden_size;
  TORCH_CHECK(B > 0 && (N == B || N == 2 * B || N == 3 * B), "SPECTRA audio: ", N, " clips for ", B,
              " samples (expected one, two or three per sample)");
  TORCH_CHECK(frames_for(wave.size(1)) >= 1, "SPECTRA audio: ", wave.size(1), " samples are too few for one frame");
  TORCH_CHECK(!table.defined() || (table.dim() == 2 && table.size(0) >= 2 && table.size(1) == H),
              "SPECTRA audio: the token-type table must be (2, ", H, ") but got ", table.sizes());
  auto conv = front.conv_features(wave);  // (N, T, C)
  const int64_t T = conv.size(1);
  at::Tensor target;
  if (zero.defined()) {
    // Masked acoustic modelling (wavlm.py create_mam_samples): frames copied from `source` (a
    // frame's own index, or the clean frame put in its place), then the zeroed ones cleared; the
    // clean conv output is the target (the original does not detach it: the L1 gradient reaches the
    // conv stack through both sides).
    TORCH_CHECK(zero.sizes() == at::IntArrayRef({N, T}) && source.defined() && source.sizes() == zero.sizes(),
                "SPECTRA audio: the masked-frame choices must be (", N, ", ", T, ")");
    target = detach_target ? conv.detach() : conv;
    auto src = source.to(conv.device(), at::kLong).unsqueeze(-1).expand({N, T, conv.size(2)});
    conv = conv.gather(1, src).masked_fill(zero.to(conv.device(), at::kBool).unsqueeze(-1), 0);
  }
  auto h = front.project(conv, is_training());  // (N, T, H)
  auto len = clip_frames(keep, T).cpu();
  auto L = len.accessor<int64_t, 1>();
  auto lopt = at::TensorOptions().dtype(at::kLong).device(h.device());
  at::Tensor x, valid, types;
  if (N > B) {
    // [audio_cls, first clip, audio_sep, a later clip]: per sample (history, current) with two
    // clips, or (context, response) and (context, negative) with three (pre-training)
    const int64_t per = N / B, rows_per = per - 1, Tn = 2 * T + 2;
    auto hv = h.view({B, per, T, H});
    std::vector<at::Tensor> rows;
    std::vector<int64_t> used, first;
    for (int64_t i = 0; i < B; ++i) {
      int64_t l1 = L[per * i];
      for (int64_t k = 1; k <= rows_per; ++k) {
        int64_t l2 = L[per * i + k];
        used.push_back(l1 + l2 + 2);
        first.push_back(l1 + 1);
        auto row = at::cat({audio_cls.unsqueeze(0), hv[i][0].narrow(0, 0, l1), audio_sep.unsqueeze(0), hv[i][k].narrow(0, 0, l2)});
        rows.push_back(at::constant_pad_nd(row, {0, 0, 0, Tn - used.back()}));  // (Tn, H)
      }
    }
    x = at::stack(rows);  // (B · rows_per, Tn, H)
    auto pos = at::arange(Tn, lopt).unsqueeze(0);
    valid = pos.lt(at::tensor(used, lopt).unsqueeze(1));
    types = pos.ge(at::tensor(first, lopt).unsqueeze(1)).to(at::kLong);  // 0 for cls + the first clip
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
  Outputs out{{"last_hidden_state", encode(x, valid)}, {"attention_mask", valid.to(at::kLong)}};
  if (target.defined()) out["target"] = target;
  return out;
}

static const ModelKind spectra_audio_kind = ModelKind::of<SpectraAudioEncoder, SpectraAudioConfig>("spectra_audio");

}  // namespace et::nn
