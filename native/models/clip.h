// CLIP (HF CLIPModel, CLIPVisionModel[WithProjection], CLIPTextModel[WithProjection]) and the
// LanguageBind towers built on it: pre-LN layers (`pre_layrnorm`, sic), quick_gelu or gelu, a
// causal text tower pooled at the EOS position, a vision tower over a patch grid of any shape
// (LanguageBind audio's 112 × 1036 fbank "image": 8 × 74 patches + CLS), and LanguageBind video's
// per-layer temporal attention over the frames of each patch, its frame-averaged CLS pooling and
// the V1.5 Conv3d tube embedding.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

namespace et::nn {

// HF CLIPVisionConfig's fields (lib/nn/clip.ts declares the same; test/nn/config-agreement.test.ts
// holds them together).
// image_size: (height, width). projection_dim: visual_projection (no bias) when > 0.
// LanguageBind video: add_time_attn: temporal attention in every layer over up to num_frames
// frames; tube_size > 0 embeds (tube_size, patch, patch) tubes with a Conv3d (V1.5, `clip_type:
// vl_new`). force_patch_dropout: LanguageBind's PatchDropout in training: keep max(1, int(n·(1 − p)))
// of the n patch tokens (and the CLS), drawn per video from the CPU generator, the same patches in
// all its frames.
#define CLIP_VISION_FIELDS(X)                                           \
  X(int64_t, hidden_size, 768)                                          \
  X(int64_t, intermediate_size, 3072)                                   \
  X(int64_t, num_hidden_layers, 12)                                     \
  X(int64_t, num_attention_heads, 12)                                   \
  X(int64_t, num_channels, 3)                                           \
  X(int64_t, patch_size, 32)                                            \
  X(std::vector<int64_t>, image_size, (std::vector<int64_t>{224, 224})) \
  X(std::string, hidden_act, "quick_gelu")                              \
  X(double, layer_norm_eps, 1e-05)                                      \
  X(double, attention_dropout, 0.0)                                     \
  X(double, initializer_range, 0.02)                                    \
  X(double, initializer_factor, 1.0)                                    \
  X(bool, add_time_attn, false)                                         \
  X(int64_t, num_frames, 1)                                             \
  X(int64_t, tube_size, 0)                                              \
  X(double, force_patch_dropout, 0.0)                                   \
  X(int64_t, projection_dim, 512)
ET_CONFIG(ClipVisionConfig, CLIP_VISION_FIELDS);

#define CLIP_TEXT_FIELDS(X)                \
  X(int64_t, vocab_size, 49408)            \
  X(int64_t, hidden_size, 512)             \
  X(int64_t, intermediate_size, 2048)      \
  X(int64_t, num_hidden_layers, 12)        \
  X(int64_t, num_attention_heads, 8)       \
  X(int64_t, max_position_embeddings, 77)  \
  X(int64_t, eos_token_id, 49407)          \
  X(std::string, hidden_act, "quick_gelu") \
  X(double, layer_norm_eps, 1e-05)         \
  X(double, attention_dropout, 0.0)        \
  X(double, initializer_range, 0.02)       \
  X(double, initializer_factor, 1.0)       \
  X(int64_t, projection_dim, 512) /* text_projection (no bias) when > 0 */
ET_CONFIG(ClipTextConfig, CLIP_TEXT_FIELDS);

// The dual model: its towers' configs nested.
#define CLIP_FIELDS(X)                   \
  X(ClipTextConfig, text_config, {})     \
  X(ClipVisionConfig, vision_config, {}) \
  X(double, logit_scale_init_value, 2.6592)
ET_CONFIG(ClipConfig, CLIP_FIELDS);

// CLIPAttention: q/k/v/out projections with biases.
struct ClipAttentionImpl : torch::nn::Module {
  ClipAttentionImpl(int64_t dim, int64_t heads, double dropout);
  at::Tensor forward(const at::Tensor& x, const std::optional<at::Tensor>& mask);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  int64_t heads;
  double dropout;
};
TORCH_MODULE(ClipAttention);

// CLIPEncoderLayer (pre-LN attention and MLP), with LanguageBind video's temporal block first
// when `temporal`: x += temporal_embedding per frame; x += temporal_attn(temporal_layer_norm1(x))
// over the frames of each patch.
struct ClipLayerImpl : torch::nn::Module {
  ClipLayerImpl(int64_t dim, int64_t heads, int64_t inter, double eps, double attn_drop, std::string act, int64_t temporal_frames);
  // x (B·T, N, D), frames T (1 for images and text)
  at::Tensor forward(at::Tensor x, const std::optional<at::Tensor>& mask, int64_t frames);
  ClipAttention self_attn{nullptr}, temporal_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr}, temporal_layer_norm1{nullptr};
  Linear fc1{nullptr}, fc2{nullptr};
  at::Tensor temporal_embedding;  // (1, num_frames, D)
  std::string act;
};
TORCH_MODULE(ClipLayer);

// CLIPVisionTransformer (`vision_model.*`).
struct ClipVisionTowerImpl : torch::nn::Module {
  explicit ClipVisionTowerImpl(const ClipVisionConfig& c);
  // pixel_values (B, C, H, W) or video (B, C, T, H, W) → last_hidden_state (B·T, N + 1, D) and
  // pooled (B, D): post_layernorm of each frame's CLS, averaged over the frames.
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& pixel_values);
  // x (B·T, N + 1, D) → (B·T, keep + 1, D) in training with force_patch_dropout > 0; else x
  at::Tensor drop_patches(const at::Tensor& x, int64_t B, int64_t T);
  ClipVisionConfig cfg;
  at::Tensor class_embedding;
  torch::nn::Conv2d patch_embedding{nullptr};
  torch::nn::Conv3d patch_embedding3d{nullptr};
  torch::nn::Embedding position_embedding{nullptr};
  torch::nn::LayerNorm pre_layrnorm{nullptr}, post_layernorm{nullptr};
  std::vector<ClipLayer> layers;
};
TORCH_MODULE(ClipVisionTower);

// CLIPTextTransformer (`text_model.*`).
struct ClipTextTowerImpl : torch::nn::Module {
  explicit ClipTextTowerImpl(const ClipTextConfig& c);
  // input_ids (B, L), attention_mask (B, L) or undefined → last_hidden_state (B, L, D) and the
  // hidden state at the EOS token (B, D)
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& ids, const at::Tensor& attention_mask);
  ClipTextConfig cfg;
  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
  std::vector<ClipLayer> layers;
};
TORCH_MODULE(ClipTextTower);

struct ClipVisionModel : Model {
  explicit ClipVisionModel(const ClipVisionConfig& c);
  // inputs: pixel_values (B, C, H, W) or (B, C, T, H, W)
  // outputs: last_hidden_state (B·T, N + 1, D), pooler_output (B, D), image_embeds (B, P) or undefined
  Outputs forward(const Inputs& in) override;
  ClipVisionTower vision_model{nullptr};
  Linear visual_projection{nullptr};
};

struct ClipTextModel : Model {
  explicit ClipTextModel(const ClipTextConfig& c);
  // inputs: input_ids (B, L), attention_mask (B, L) or undefined
  // outputs: last_hidden_state (B, L, D), pooler_output (B, D), text_embeds (B, P) or undefined
  Outputs forward(const Inputs& in) override;
  ClipTextTower text_model{nullptr};
  Linear text_projection{nullptr};
};

struct ClipModel : Model {
  explicit ClipModel(const ClipConfig& c) : ClipModel(c.text_config, c.vision_config, c.logit_scale_init_value) {}
  ClipModel(const ClipTextConfig& t, const ClipVisionConfig& v, double logit_scale_init);
  // inputs: input_ids (B, L) or undefined, attention_mask or undefined, pixel_values or undefined
  // outputs: logits_per_image (Bi, Bt), logits_per_text (Bt, Bi) (both undefined unless text and
  // images are given), text_embeds (Bt, P), image_embeds (Bi, P) (L2-normalised), text_pooler_output,
  // vision_pooler_output, text_last_hidden_state, vision_last_hidden_state
  Outputs forward(const Inputs& in) override;
  ClipTextTower text_model{nullptr};
  ClipVisionTower vision_model{nullptr};
  Linear text_projection{nullptr}, visual_projection{nullptr};
  at::Tensor logit_scale;
};

}  // namespace et::nn
