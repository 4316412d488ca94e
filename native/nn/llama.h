// LLaMA-family decoder (HF LlamaForCausalLM; Mistral / Vicuna configs load too): RMSNorm, RoPE
// (default, linear and llama3 scaling), grouped-query attention, SwiGLU, tied or untied head, KV
// cache, inputs_embeds (audio tokens spliced in as embeddings), left-padding masks, and the whole
// generation loop (greedy, sampling, beam search) in C++.
#pragma once
#include "nn/lora.h"
#include "nn/model.h"

#include <optional>
#include <vector>

namespace et::nn {

struct LlamaConfig {
  int64_t vocab_size = 32000, hidden_size = 4096, intermediate_size = 11008, num_hidden_layers = 32;
  int64_t num_attention_heads = 32, num_key_value_heads = 32, head_dim = 0, max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0, initializer_range = 0.02, attention_dropout = 0.0;
  std::string rope_type = "default";  // default | linear | llama3
  double rope_factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  int64_t sliding_window = 0;  // Mistral: a query sees at most this many positions (0: all earlier ones)
  bool tie_word_embeddings = false, attention_bias = false, mlp_bias = false;
  std::string hidden_act = "silu";
};

struct GenerationConfig {
  int64_t max_new_tokens = 20, min_new_tokens = 0, num_beams = 1, top_k = 0;
  double temperature = 1.0, top_p = 1.0, repetition_penalty = 1.0, length_penalty = 1.0;
  bool do_sample = false;
  std::string early_stopping = "true";  // "true" | "false" (heuristic) | "never"
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id = 0;
  // Half-open id ranges [start, end), flattened as start0, end0, start1, end1, …: banned ranges
  // can never be generated; when allowed ranges are given, ids outside all of them are banned too.
  std::vector<int64_t> banned_token_ranges, allowed_token_ranges;
};

// Per-layer key/value cache: (B, kv_heads, T, D) each.
struct KVCache {
  std::vector<at::Tensor> k, v;
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
  void select(const at::Tensor& rows);  // reorder / expand the batch (beam search)
};

struct LlamaLayerImpl : torch::nn::Module {
  LlamaLayerImpl(const LlamaConfig& c);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask, KVCache* cache,
                     size_t index);
  LlamaConfig cfg;
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr}, gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  at::Tensor input_layernorm, post_attention_layernorm;
};
TORCH_MODULE(LlamaLayer);

struct LlamaForCausalLM : Model {
  explicit LlamaForCausalLM(const LlamaConfig& c);
  // inputs: input_ids (B, T) or undefined, attention_mask (B, T) 1/0 or undefined, position_ids
  // (B, T) or undefined (0..T−1, as HF's plain forward), inputs_embeds (B, T, H) or undefined.
  // labels (B, T) int64 or undefined, num_items () or undefined.
  // outputs: logits (B, T, V), and with labels the causal-LM loss (see causal_lm_loss).
  Tensors forward(const Tensors& in) override;
  // Prompt as ids (B, T) or embeddings (B, T, H) with a keep-mask (B, T) (left padding) → the new
  // tokens (B, ≤ max_new_tokens), right-filled with pad_token_id after EOS. `prompt_ids` (may be
  // undefined) feeds the repetition penalty.
  at::Tensor generate(const at::Tensor& prompt_ids, const at::Tensor& prompt_embeds, const at::Tensor& attention_mask,
                      const GenerationConfig& g);
  // Runs the decoder over embeddings with a keep-mask covering cache + new positions.
  at::Tensor run(const at::Tensor& embeds, const at::Tensor& keep, const at::Tensor& positions, KVCache* cache);
  at::Tensor embed(const at::Tensor& ids);
  LlamaConfig cfg;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  at::Tensor norm_weight, inv_freq;
  Linear lm_head{nullptr};

 private:
  // (V) bool: true where generation.{banned,allowed}_token_ranges forbid the id; undefined when none do.
  at::Tensor banned_mask(const GenerationConfig& g, const at::Device& device) const;
  at::Tensor greedy_or_sample(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep, const GenerationConfig& g);
  at::Tensor beam_search(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep, const GenerationConfig& g);
};

// HF's causal-LM loss: cross entropy (in float32) of the logits at 0..T−2 against labels 1..T−1,
// −100 ignored; the mean over label tokens, or their sum divided by num_items (how gradient
// accumulation normalizes a token loss over all micro-batches).
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels, std::optional<double> num_items);

}  // namespace et::nn
