// SPECTRA's audio encoder (AlibabaResearch/DAMO-ConvAI spectra/modeling_spectra/wavlm.py,
// WavLMForMultiTurn): WavLM whose frames are arranged per dialogue sample before the transformer.
// Two clips per sample (history first) become [audio_cls, history, audio_sep, current] with
// segment ids 0 (cls + history) / 1 (sep + current); one clip per sample becomes [audio_cls?,
// current] with segment id 1. Pre-training gives three clips per sample (context, response,
// negative), which become two rows [audio_cls, context, audio_sep, response / negative], and may
// mask frames of the conv output before the projection (masked acoustic modelling). Segment ids go
// through a given (2, H) table (RoBERTa's token-type embeddings) added before the encoder.
#pragma once
#include "models/wavlm.h"

namespace et::nn {

// SPECTRA's audio config: WavLM's fields and its own (lib/systems/spectra sends them;
// test/nn/config-agreement.test.ts checks what it sends).
// WavLM's fields, then: has_audio_cls: a single clip gets audio_cls prepended (the original's
// config.has_audio_cls); mask_audio_cls: the original masks that audio_cls out (true reproduces
// it); extra_frame: the original counts one frame more than the conv stack outputs.
#define SPECTRA_AUDIO_FIELDS(X)  \
  X(bool, has_audio_cls, true)   \
  X(bool, mask_audio_cls, false) \
  X(bool, extra_frame, true)
ET_CONFIG_EXTENDS(SpectraAudioConfig, WavLMConfig, ET_NO_FIELDS, SPECTRA_AUDIO_FIELDS);

struct SpectraAudioEncoder : WavLMModel {
  explicit SpectraAudioEncoder(const SpectraAudioConfig& c);
  // inputs: input_values (N, S), attention_mask (N, S) 1/0, batch size B (0-dim int64; N = B, 2B
  // with the history clip before the current clip, or 3B for pre-training: context, response,
  // negative), token-type table (2, H) or undefined, and for masked acoustic modelling: zeroed
  // frames (N, T) bool, source frames (N, T) int64 (each frame's own index, or the frame copied in),
  // detach the target (0-dim bool)
  // outputs: hidden states (B', T', H) with B' = B, or B · (clips per sample − 1) rows
  // [cls, first clip, sep, later clip], attention mask (B', T') int64 1 = frame / 0 = padding, and
  // with the masking inputs the clean conv features (N, T, C), the target
  Outputs forward(const Inputs& in) override;
  // Frames of each clip as the original counts them: the conv length formula (truncating
  // division) on the valid-sample count, plus one when extra_frame, at most `frames`.
  at::Tensor clip_frames(const at::Tensor& keep, int64_t frames) const;
  SpectraAudioConfig scfg;
  at::Tensor audio_cls, audio_sep;
};

}  // namespace et::nn
