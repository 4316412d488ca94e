// LLaMA-family decoder (HF LlamaForCausalLM; Mistral / Vicuna / Qwen2 configs load too, and the
// InternVL2 family's InternLM2 and Phi-3 under their own module names with their fused
// projections): RMSNorm, RoPE (default, linear, llama3, dynamic NTK, Phi-3's longrope),
// grouped-query attention, SwiGLU, tied or untied head, KV cache, inputs_embeds (audio or image
// tokens spliced in as embeddings), left-padding masks, and the whole generation loop (greedy,
// sampling, beam search) in C++.
#pragma once
#include "blocks/lora.h"
#include "models/model.h"

#include <functional>
#include <optional>
#include <vector>

namespace et::nn {

// lib/nn/llama.ts declares the fields, HF names and defaults.
struct LlamaConfig {
  // llama | mistral | qwen2: HF's LLaMA names (q_proj, …, embed_tokens, lm_head);
  // internlm2: attention.wqkv (grouped q…q k v per kv head), attention.wo, feed_forward.w1/w3/w2,
  //   attention_norm, ffn_norm, model.tok_embeddings, output;
  // phi3: self_attn.qkv_proj (q, k, v stacked), mlp.gate_up_proj (gate, up stacked).
  std::string model_type;
  int64_t vocab_size, hidden_size, intermediate_size, num_hidden_layers;
  int64_t num_attention_heads, num_key_value_heads, head_dim, max_position_embeddings;
  double rms_norm_eps, rope_theta, initializer_range, attention_dropout;
  std::string rope_type;  // default | linear | llama3 | dynamic (InternLM2's NTK) | longrope (Phi-3's su)
  double rope_factor, low_freq_factor, high_freq_factor;
  std::vector<double> short_factor, long_factor;  // longrope: per-frequency divisors below / above original_max_position_embeddings
  double attention_factor;                        // longrope: cos and sin are multiplied by it
  int64_t original_max_position_embeddings;
  int64_t sliding_window;  // Mistral: a query sees at most this many positions (0: all earlier ones)
  bool tie_word_embeddings, attention_bias, mlp_bias, qkv_bias;  // qkv_bias: q, k, v only (Qwen2)
  std::string hidden_act;
  static LlamaConfig from(const ConfigReader& c);
};

// generate()'s settings (generation_config.json names); lib/nn/llama.ts declares their defaults.
struct GenerationConfig {
  int64_t max_new_tokens, min_new_tokens, num_beams, top_k;
  double temperature, top_p, repetition_penalty, length_penalty;
  bool do_sample;
  std::string early_stopping;  // "true" | "false" (heuristic) | "never"
  std::vector<int64_t> eos_token_ids;
  int64_t pad_token_id;
  // Sampling: row b draws from its own generator seeded seed + b; −1: the global generator.
  int64_t seed;
  // Half-open id ranges [start, end), flattened as start0, end0, start1, end1, …: banned ranges
  // can never be generated; when allowed ranges are given, ids outside all of them are banned too.
  std::vector<int64_t> banned_token_ranges, allowed_token_ranges;
  // Not from the config. on_tokens: called after every greedy / sampling step with each row's
  // new token (streaming). stop: polled before the prompt pass and every step; true ends the
  // loop with the tokens made so far (cancellation).
  std::function<void(const std::vector<int64_t>&)> on_tokens;
  std::function<bool()> stop;
  bool stopped() const { return stop && stop(); }
  static GenerationConfig from(const ConfigReader& c);
};

// Per-layer key/value cache: (B, kv_heads, T, D) each.
struct KVCache {
  std::vector<at::Tensor> k, v;
  int64_t length() const { return k.empty() || !k[0].defined() ? 0 : k[0].size(2); }
  void select(const at::Tensor& rows);  // reorder / expand the batch (beam search)
};

// One sequence of a decoding batch (continuous batching): its prompt run by
// LlamaForCausalLM::start_row, its own cache and choices. Rows of any lengths step together
// (decode_rows), join between steps and leave when done; a row gets the tokens it gets alone.
struct DecodeRow {
  GenerationConfig g;  // greedy or sampling (num_beams 1); its callbacks are not used
  KVCache cache;
  at::Tensor keep;     // (1, S): the cache's positions, all kept
  at::Tensor seen;     // (1, n): the prompt's ids and the tokens chosen (for the repetition penalty)
  at::Tensor last;     // (1, V): the logits the next token is chosen from
  at::Tensor banned;   // (V) bool, or undefined when no range is banned
  int64_t next_pos = 0, steps = 0;
  bool done = false;
  std::optional<at::Generator> generator;  // its own sampling generator (a seed), else the global one
};

// What one row brings to a layer's attention in a decoding step: its mask (1, 1, 1, S) or
// undefined, its cache.
struct RowStep {
  at::Tensor mask;
  KVCache* cache;
};

struct LlamaLayerImpl : torch::nn::Module {
  LlamaLayerImpl(const LlamaConfig& c);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask, KVCache* cache,
                     size_t index);
  // One decoding step of R rows (x (R, 1, H); cos / sin (R, 1, D), each row's own), each with its
  // own RowStep: products, norms and rotary once for all rows by kernels that compute each row as
  // if alone (Linear::rows, rms_norm_rows, rotary_rows), attention and activations row by row, so
  // each row's result is the one it gets alone, bit for bit.
  at::Tensor forward_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const std::vector<RowStep>& rows, size_t index);
  LlamaConfig cfg;
  // q/k/v_proj, or one fused qkv (InternLM2's wqkv, Phi-3's qkv_proj); gate/up_proj, or Phi-3's gate_up.
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, qkv{nullptr}, o_proj{nullptr};
  Linear gate_proj{nullptr}, up_proj{nullptr}, gate_up{nullptr}, down_proj{nullptr};
  at::Tensor input_layernorm, post_attention_layernorm;

 private:
  std::tuple<at::Tensor, at::Tensor, at::Tensor> project_qkv(const at::Tensor& h, bool rows);  // each (B, T, heads, D)
  // q and k rotated (B, T, heads, D), v: the cache, SDPA → (B, Hq, T, D)
  at::Tensor attend(const at::Tensor& q_rot, const at::Tensor& k_rot, const at::Tensor& v0, const at::Tensor& mask, KVCache* cache, size_t index);
};
TORCH_MODULE(LlamaLayer);

struct LlamaForCausalLM : Model {
  explicit LlamaForCausalLM(const LlamaConfig& c);
  // inputs: input_ids (B, T) or undefined, attention_mask (B, T) 1/0 or undefined, position_ids
  // (B, T) or undefined (0..T−1, as HF's plain forward), inputs_embeds (B, T, H) or undefined.
  // labels (B, T) int64 or undefined, num_items () or undefined.
  // outputs: logits (B, T, V), and with labels the causal-LM loss (see causal_lm_loss).
  Tensors forward(const Tensors& in) override;
  bool supports_gradient_checkpointing() const override { return true; }
  // Prompt as ids (B, T) or embeddings (B, T, H) with a keep-mask (B, T) (left padding) → the new
  // tokens (B, ≤ max_new_tokens), right-filled with pad_token_id after EOS. `prompt_ids` (may be
  // undefined) feeds the repetition penalty.
  at::Tensor generate(const at::Tensor& prompt_ids, const at::Tensor& prompt_embeds, const at::Tensor& attention_mask,
                      const GenerationConfig& g);
  // Runs the decoder over embeddings with a keep-mask covering cache + new positions.
  at::Tensor run(const at::Tensor& embeds, const at::Tensor& keep, const at::Tensor& positions, KVCache* cache);
  // A decoding row for one prompt (ids (1, T) and / or embeddings (1, T, H), keep-mask (1, T) or
  // undefined): its padding left out, the prompt run, nothing chosen yet. g: greedy or sampling.
  std::shared_ptr<DecodeRow> start_row(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep, const GenerationConfig& g,
                                       std::optional<uint64_t> seed);
  // One step of every row: each row not done chooses its next token (returned; −1 for a row done
  // before this step) and, unless that ends it (an end token, max_new_tokens), the rows still going
  // run it together and have their next logits.
  std::vector<int64_t> decode_rows(const std::vector<DecodeRow*>& rows);
  at::Tensor embed(const at::Tensor& ids);
  LlamaConfig cfg;
  torch::nn::Embedding embed_tokens{nullptr};  // model.embed_tokens (model.tok_embeddings for InternLM2)
  torch::nn::ModuleList layers{nullptr};
  at::Tensor norm_weight, inv_freq;
  Linear lm_head{nullptr};  // lm_head (output for InternLM2); null when tied

 private:
  // inv_freq (D/2) and the cos/sin multiplier for a run over S positions (cache + new): dynamic NTK
  // and longrope depend on S, as the originals' rotary embeddings do on kv_seq_len.
  std::pair<at::Tensor, double> rope_for(int64_t S) const;
  // cos and sin (B, T, D) in `dtype` for positions (B, T) of a run over S positions.
  std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor& positions, int64_t S, at::ScalarType dtype) const;
  // The additive mask for T new positions over keep (B, S), or undefined where SDPA's causal path is it.
  at::Tensor attention_mask(const at::Tensor& keep, int64_t T, at::ScalarType dtype) const;
  at::Tensor run_rows(const at::Tensor& embeds, const std::vector<DecodeRow*>& rows);
  int64_t choose(DecodeRow& row) const;
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
