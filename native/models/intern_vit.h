// InternViT (InternVL's `InternVisionModel`, remote code modeling_intern_vit.py): a class token and
// a Conv2d patch embedding, position embeddings resized bicubically to the patch grid, pre-norm
// layers (LayerNorm for the 300M towers, RMSNorm and QK-norm for the 6B ones) with layer scale
// (`ls1`, `ls2`) and stochastic depth, and no final norm.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

namespace et::nn {

// The remote code's InternVisionConfig fields (lib/nn/intern_vit.ts declares the same;
// test/nn/config-agreement.test.ts holds them together).
#define INTERN_VISION_FIELDS(X)                                     \
  X(int64_t, hidden_size, 3200)                                     \
  X(int64_t, intermediate_size, 12800)                              \
  X(int64_t, num_hidden_layers, 48)                                 \
  X(int64_t, num_attention_heads, 25)                               \
  X(int64_t, num_channels, 3)                                       \
  X(int64_t, patch_size, 14)                                        \
  X(int64_t, image_size, 224)                                       \
  X(bool, qkv_bias, false)                                          \
  X(bool, qk_normalization, true)                                   \
  X(std::string, norm_type, "rms_norm") /* layer_norm | rms_norm */ \
  X(std::string, hidden_act, "gelu")                                \
  X(double, layer_norm_eps, 1e-06)                                  \
  X(double, dropout, 0.0)                                           \
  X(double, attention_dropout, 0.0)                                 \
  X(double, drop_path_rate, 0.0)                                    \
  X(double, initializer_range, 0.02)                                \
  X(double, initializer_factor, 0.1)
ET_CONFIG(InternVisionConfig, INTERN_VISION_FIELDS);

// InternAttention: one qkv projection, optional RMSNorm of all q and all k (q_norm, k_norm), proj.
struct InternAttentionImpl : torch::nn::Module {
  explicit InternAttentionImpl(const InternVisionConfig& c);
  at::Tensor forward(const at::Tensor& x);  // (B, N, D) → (B, N, D)
  InternVisionConfig cfg;
  Linear qkv{nullptr}, proj{nullptr};
  at::Tensor q_norm, k_norm;  // RMSNorm weights (D), when qk_normalization
};
TORCH_MODULE(InternAttention);

// InternVisionEncoderLayer: x += drop_path(attn(norm1(x)) · ls1); x += drop_path(mlp(norm2(x)) · ls2).
struct InternVisionLayerImpl : torch::nn::Module {
  InternVisionLayerImpl(const InternVisionConfig& c, double drop_path);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor norm(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) const;
  InternVisionConfig cfg;
  double drop_path;
  InternAttention attn{nullptr};
  Linear fc1{nullptr}, fc2{nullptr};
  at::Tensor norm1_weight, norm1_bias, norm2_weight, norm2_bias, ls1, ls2;
};
TORCH_MODULE(InternVisionLayer);

struct InternVisionModel : Model {
  explicit InternVisionModel(const InternVisionConfig& c);
  // inputs: pixel_values (B, C, H, W) with H and W multiples of patch_size; hidden_state_index ()
  //   int64 or undefined: which of the num_hidden_layers + 1 hidden states (embeddings first,
  //   negative from the end, as Python indexes output_hidden_states) to return as well.
  // outputs: last_hidden_state (B, 1 + H/p · W/p, D), pooler_output (B, D) (the class token's),
  //   the asked hidden state or undefined.
  Outputs forward(const Inputs& in) override;
  bool supports_gradient_checkpointing() const override { return true; }
  at::Tensor embed(const at::Tensor& pixel_values);
  InternVisionConfig cfg;
  at::Tensor class_embedding, position_embedding;  // (1, 1, D), (1, 1 + (image_size / p)², D)
  torch::nn::Conv2d patch_embedding{nullptr};
  torch::nn::ModuleList layers{nullptr};
};

// InternVLChatModel's bridge from the vision tower to the LLM (extract_feature after the tower):
// drop the class token, pixel_shuffle the square patch grid by downsample_ratio (ps_version v2
// swaps height and width back; v1, the original's first version, leaves them transposed), then
// `mlp1` = LayerNorm, Linear, GELU, Linear (parameters mlp1.0, mlp1.1, mlp1.3).
// ps_version: v1 | v2 (pixel shuffle's layout).
#define INTERNVL_PROJECTOR_FIELDS(X) \
  X(int64_t, vit_hidden_size, 0)     \
  X(int64_t, llm_hidden_size, 0)     \
  X(double, downsample_ratio, 0.5)   \
  X(std::string, ps_version, "v2")
ET_CONFIG(InternVLProjectorConfig, INTERNVL_PROJECTOR_FIELDS);

struct InternVLProjector : Model {
  explicit InternVLProjector(const InternVLProjectorConfig& c);
  // inputs: vision hidden states (B, 1 + side², vit_hidden) → outputs: (B, side² · ratio², llm_hidden)
  Outputs forward(const Inputs& in) override;
  InternVLProjectorConfig cfg;
  at::Tensor norm_weight, norm_bias;
  Linear fc1{nullptr}, fc2{nullptr};
};

}  // namespace et::nn
