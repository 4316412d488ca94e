// LLaMA-family decoder (HF LlamaForCausalLM; Mistral / Vicuna / Qwen2 configs load too, and the
// InternVL2 family's InternLM2 and Phi-3 under their own module names with their fused
// projections): RMSNorm, RoPE (default, linear, llama3, dynamic NTK, Phi-3's longrope),
// grouped-query attention, SwiGLU, tied or untied head, KV cache, inputs_embeds (audio or image
// tokens spliced in as embeddings), left-padding masks, and the whole generation loop (greedy,
// sampling, beam search) in C++.
#pragma once
#include "blocks/lora.h"
#include "models/causal_lm.h"
#include "models/model.h"

#include <functional>
#include <list>
#include <optional>
#include <vector>

namespace et::nn {

// HF LlamaConfig's fields (lib/nn/llama.ts declares the same, with HF's names and its checks).
// model_type: llama | mistral | qwen2: HF's LLaMA names (q_proj, …, embed_tokens, lm_head);
//   internlm2: attention.wqkv (grouped q…q k v per kv head), attention.wo, feed_forward.w1/w3/w2,
//   attention_norm, ffn_norm, model.tok_embeddings, output;
//   phi3: self_attn.qkv_proj (q, k, v stacked), mlp.gate_up_proj (gate, up stacked).
#define LLAMA_FIELDS(X)                                                                                                          \
  X(std::string, model_type, "llama")                                                                                            \
  X(int64_t, vocab_size, 32000)                                                                                                  \
  X(int64_t, hidden_size, 4096)                                                                                                  \
  X(int64_t, intermediate_size, 11008)                                                                                           \
  X(int64_t, num_hidden_layers, 32)                                                                                              \
  X(int64_t, num_attention_heads, 32)                                                                                            \
  X(int64_t, num_key_value_heads, 32)                                                                                            \
  X(int64_t, head_dim, 0)                                                                                                        \
  X(int64_t, max_position_embeddings, 2048)                                                                                      \
  X(double, rms_norm_eps, 1e-06)                                                                                                 \
  X(double, rope_theta, 10000.0)                                                                                                 \
  X(double, initializer_range, 0.02)                                                                                             \
  X(double, attention_dropout, 0.0)                                                                                              \
  X(std::string, rope_type, "default") /* default | linear | llama3 | dynamic (InternLM2's NTK) | longrope (Phi-3's su) */       \
  X(double, rope_factor, 1.0)                                                                                                    \
  X(double, low_freq_factor, 1.0)                                                                                                \
  X(double, high_freq_factor, 4.0)                                                                                               \
  X(std::vector<double>, short_factor, {}) /* longrope: per-frequency divisors below / above original_max_position_embeddings */ \
  X(std::vector<double>, long_factor, {})                                                                                        \
  X(double, attention_factor, 1.0) /* cos and sin are multiplied by it (longrope; TypeScript derives Phi-3's) */                 \
  X(int64_t, original_max_position_embeddings, 8192)                                                                             \
  X(int64_t, sliding_window, 0) /* Mistral: a query sees at most this many positions (0: all earlier ones) */                    \
  X(bool, tie_word_embeddings, false)                                                                                            \
  X(bool, attention_bias, false)                                                                                                 \
  X(bool, mlp_bias, false)                                                                                                       \
  X(bool, qkv_bias, false) /* q, k, v only (Qwen2) */                                                                            \
  X(std::string, hidden_act, "silu")
ET_CONFIG(LlamaConfig, LLAMA_FIELDS);

// What one row brings to a layer's attention in a decoding step: its cache; its additive mask over
// the cache's S positions as the attention kernel takes it (float32 (S), undefined where it masks
// nothing), and the mask (1, 1, 1, S) in the rows' dtype for SDPA, made when asked.
struct RowStep {
  KVCache* cache;
  at::Tensor fmask;
  std::function<at::Tensor()> mask;
};

struct LlamaLayerImpl : torch::nn::Module {
  LlamaLayerImpl(const LlamaConfig& c);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask, KVCache* cache,
                     size_t index);
  // The same where only the last position's output is wanted (the last layer of a generation's
  // prompt pass): every position's key and value into the cache, the query, attention, o_proj and
  // MLP of the last position alone → (B, 1, H); undefined where it does not apply (training, a
  // fused qkv, one position), for the caller to run forward.
  at::Tensor forward_last(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask, KVCache* cache,
                          size_t index);
  // One decoding step of R rows (x (R, 1, H); cos / sin (R, 1, D), each row's own), each with its
  // own RowStep: products, norms, rotary, attention (each row over its own cache) and SiLU · up once
  // for all rows by kernels that compute each row as if alone (Linear::rows, rms_norm_rows,
  // rotary_rows, attention_rows, silu_mul_rows), so each row's result is the one it gets alone,
  // bit for bit.
  at::Tensor forward_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const std::vector<RowStep>& rows,
                          size_t index);
  LlamaConfig cfg;
  // q/k/v_proj, or one fused qkv (InternLM2's wqkv, Phi-3's qkv_proj); gate/up_proj, or Phi-3's gate_up.
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, qkv{nullptr}, o_proj{nullptr};
  Linear gate_proj{nullptr}, up_proj{nullptr}, gate_up{nullptr}, down_proj{nullptr};
  at::Tensor input_layernorm, post_attention_layernorm;

 private:
  std::tuple<at::Tensor, at::Tensor, at::Tensor> project_qkv(const at::Tensor& h, bool rows);  // each (B, T, heads, D)
  // q and k rotated (B, T, heads, D), v: the cache, SDPA → (B, Hq, T, D)
  at::Tensor attend(const at::Tensor& q_rot, const at::Tensor& k_rot, const at::Tensor& v0, const at::Tensor& mask, KVCache* cache,
                    size_t index);
  // q (B, Hq, T, D) over the keys and values so far (B, Hkv, S, D) → (B, Hq, T, D); `prompt`: a
  // generation's prompt pass (the causal kernel for bfloat16 where there is no mask)
  at::Tensor attend_cached(const at::Tensor& q, at::Tensor k, at::Tensor v, const at::Tensor& mask, bool prompt = false);
  // y + the MLP of post_attention_layernorm(y) (the layer's second half)
  at::Tensor feed_forward(const at::Tensor& y, bool prompt = false);
  // A generation's prompt pass (a cache, not training) takes the decoding rows' norm and rotary
  // kernels (for bfloat16 / float16 one loop a row where ATen chains a dozen ops; rotary's numbers
  // the same, the norm's sum in another order) and the causal attention kernel.
  at::Tensor normed(const at::Tensor& x, const at::Tensor& w, bool prompt) const;
  static at::Tensor rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool prompt);
  // act(g) · u: SiLU by silu_mul_rows for inference, else ATen's ops (with `rows`, row by row, so
  // that a decoding row's values are its own)
  at::Tensor gated(const at::Tensor& g, const at::Tensor& u, bool rows);
};
TORCH_MODULE(LlamaLayer);

struct LlamaForCausalLM : Model, CausalLM {
  explicit LlamaForCausalLM(const LlamaConfig& c);
  // inputs: input_ids (B, T) or inputs_embeds (B, T, H); optional attention_mask (B, T) 1/0,
  // position_ids (B, T) (default 0..T−1, as HF's plain forward), labels (B, T) int64,
  // num_items_in_batch () float64.
  // outputs: logits (B, T, V), and with labels the causal-LM loss (see causal_lm_loss).
  Outputs forward(const Inputs& in) override;
  bool supports_gradient_checkpointing() const override { return true; }
  bool shards_layers() const override { return true; }
  // CausalLM (models/causal_lm.h): the generation loop, decoding rows.
  at::Tensor generate(const at::Tensor& prompt_ids, const at::Tensor& prompt_embeds, const at::Tensor& attention_mask,
                      const GenerationConfig& g) override;
  std::shared_ptr<DecodeRow> start_row(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep, const GenerationConfig& g,
                                       std::optional<uint64_t> seed) override;
  std::vector<int64_t> decode_rows(const std::vector<DecodeRow*>& rows) override;
  void set_prefix_cache(int64_t bytes) override;
  PrefixCacheStats prefix_cache_stats() const override;
  // Runs the decoder over embeddings with a keep-mask covering cache + new positions → logits
  // (B, T, V); last_only: the last position's alone (B, 1, V), the final norm and the LM head run on
  // it only (a prompt pass of generation, as transformers' generate asks with logits_to_keep = 1).
  // over_cache: the new positions follow the cache's, nothing masked but the future (a prompt after
  // a reused prefix): causal attention bottom-right aligned, without a mask where the kernel takes it.
  at::Tensor run(const at::Tensor& embeds, const at::Tensor& keep, const at::Tensor& positions, KVCache* cache, bool last_only = false,
                 bool over_cache = false);
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
  // How many positions a query sees under a sliding window (0: all): Phi-3's sliding_window + 1.
  int64_t window_span() const;
  // The additive mask for T new positions over keep (B, S), or undefined where SDPA's causal path is it.
  at::Tensor attention_mask(const at::Tensor& keep, int64_t T, at::ScalarType dtype) const;
  at::Tensor run_rows(const at::Tensor& embeds, const std::vector<DecodeRow*>& rows);
  int64_t choose(DecodeRow& row) const;
  // (V) bool: true where generation.{banned,allowed}_token_ranges forbid the id; undefined when none do.
  at::Tensor banned_mask(const GenerationConfig& g, const at::Device& device) const;
  at::Tensor greedy_or_sample(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep, const GenerationConfig& g,
                              bool from_ids);
  at::Tensor beam_search(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep, const GenerationConfig& g);
  // start_row; from_ids: the embeddings are the ids' own (the prompt may use the prefix cache)
  std::shared_ptr<DecodeRow> start_row(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep, const GenerationConfig& g,
                                       std::optional<uint64_t> seed, bool from_ids);
  // The prefix cache: a prompt's ids and every layer's keys and values of them (1, kv_heads, T, D),
  // the most recently used first.
  struct PrefixEntry {
    std::vector<int64_t> ids;
    std::vector<at::Tensor> k, v;
    int64_t bytes = 0;
  };
  std::list<PrefixEntry> prefix_;
  PrefixCacheStats prefix_stats_;
  uint64_t prefix_weights_ = 0;  // the weights' fingerprint its entries were computed with
  // The weights' fingerprint: every parameter's, buffer's and quantized tensor's storage, version, shape and dtype.
  uint64_t weights_fingerprint();
  // The cache's longest prefix of `ids` (at most ids.size() − 2 positions) set as `cache`'s first
  // positions (views of the entry) → its length (0: none).
  int64_t prefix_lookup(const std::vector<int64_t>& ids, KVCache& cache);
  void prefix_store(std::vector<int64_t> ids, const KVCache& cache);
};

// HF's causal-LM loss: cross entropy (in float32) of the logits at 0..T−2 against labels 1..T−1,
// −100 ignored; the mean over label tokens, or their sum divided by num_items (how gradient
// accumulation normalizes a token loss over all micro-batches).
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels, std::optional<double> num_items);

}  // namespace et::nn
