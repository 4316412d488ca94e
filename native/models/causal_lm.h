// Generation as a capability: a causal language model's decoding interface, its settings and its
// decoding rows. A model that decodes (LlamaForCausalLM) implements CausalLM; the bridge's
// generation calls (native/bridge/generation.cc) reach it through this interface, knowing no model.
#pragma once
#include <ATen/ATen.h>

#include "config.h"

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace et::nn {

// generate()'s settings (generation_config.json names); lib/nn/llama.ts declares their defaults.
// early_stopping: "true" | "false" (heuristic) | "never". seed: in sampling, row b draws from its
// own generator seeded seed + b; −1: the global generator. banned / allowed_token_ranges: half-open
// id ranges [start, end), flattened as start0, end0, start1, end1, …: banned ranges can never be
// generated; when allowed ranges are given, ids outside all of them are banned too.
#define GENERATION_FIELDS(X)                       \
  X(int64_t, max_new_tokens, 20)                   \
  X(int64_t, min_new_tokens, 0)                    \
  X(int64_t, num_beams, 1)                         \
  X(int64_t, top_k, 0)                             \
  X(double, temperature, 1.0)                      \
  X(double, top_p, 1.0)                            \
  X(double, repetition_penalty, 1.0)               \
  X(double, length_penalty, 1.0)                   \
  X(bool, do_sample, false)                        \
  X(std::string, early_stopping, "true")           \
  X(std::vector<int64_t>, eos_token_id, {})        \
  X(int64_t, pad_token_id, 0)                      \
  X(int64_t, seed, -1)                             \
  X(std::vector<int64_t>, banned_token_ranges, {}) \
  X(std::vector<int64_t>, allowed_token_ranges, {})
ET_CONFIG(GenerationFields, GENERATION_FIELDS);

struct GenerationConfig : GenerationFields {
  GenerationConfig() = default;
  GenerationConfig(const GenerationFields& f) : GenerationFields(f) {}
  // Not from the config. on_tokens: called after every greedy / sampling step with each row's
  // new token (streaming). stop: polled before the prompt pass and every step; true ends the
  // loop with the tokens made so far (cancellation).
  std::function<void(const std::vector<int64_t>&)> on_tokens;
  std::function<bool()> stop;
  bool stopped() const { return stop && stop(); }
};

// Per-layer key/value cache. Each layer's keys and values lie in buffers (B, kv_heads, capacity, D)
// with room to grow, the first `used` positions held: a decoding step writes its position in
// place instead of copying the whole cache into a new tensor (at 7B, 0.5 MB a position).
struct KVCache {
  std::vector<at::Tensor> k, v;  // the buffers (undefined until a layer's first append)
  std::vector<int64_t> used;     // positions held, per layer
  void layers(size_t n);         // n layers, empty
  // Appends k_new, v_new (B, kv_heads, T, D) to layer i → its keys and values so far (views of the
  // buffers, (B, kv_heads, used, D)). A full buffer is replaced by one about 1.5 × as long.
  std::pair<at::Tensor, at::Tensor> append(size_t i, const at::Tensor& k_new, const at::Tensor& v_new);
  // Appends row r of k_rows, v_rows (R, 1, kv_heads, D: a decoding step's new positions) to layer
  // i of this one-sequence cache, copied into the buffers in place (no views made) → the positions
  // now held; the buffers are k[i], v[i] (1, kv_heads, ≥ that, D).
  int64_t append_row(size_t i, const at::Tensor& k_rows, const at::Tensor& v_rows, int64_t r);
  void select(const at::Tensor& rows);  // reorder / expand the batch (beam search)
};

// One sequence of a decoding batch (continuous batching): its prompt run by
// CausalLM::start_row, its own cache and choices. Rows of any lengths step together
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

// What a causal LM's prompt prefix cache holds and has done (CausalLM::set_prefix_cache).
struct PrefixCacheStats {
  int64_t capacity = 0;  // bytes it may hold (0: off)
  int64_t bytes = 0, entries = 0;  // held now: keys and values of `entries` prompts
  int64_t lookups = 0, hits = 0, reused = 0;  // prompts looked up, found a prefix, its positions not run again
};

struct CausalLM {
  virtual ~CausalLM() = default;
  // Prompt as ids (B, T) or embeddings (B, T, H) with a keep-mask (B, T) (left padding) → the new
  // tokens (B, ≤ max_new_tokens), right-filled with pad_token_id after EOS. `prompt_ids` (may be
  // undefined) feeds the repetition penalty.
  virtual at::Tensor generate(const at::Tensor& prompt_ids, const at::Tensor& prompt_embeds, const at::Tensor& attention_mask,
                              const GenerationConfig& g) = 0;
  // A decoding row for one prompt (ids (1, T) and / or embeddings (1, T, H), keep-mask (1, T) or
  // undefined): its padding left out, the prompt run, nothing chosen yet. g: greedy or sampling.
  virtual std::shared_ptr<DecodeRow> start_row(const at::Tensor& ids, const at::Tensor& embeds, const at::Tensor& keep,
                                               const GenerationConfig& g, std::optional<uint64_t> seed) = 0;
  // One step of every row: each row not done chooses its next token (returned; −1 for a row done
  // before this step) and, unless that ends it (an end token, max_new_tokens), the rows still going
  // run it together and have their next logits.
  virtual std::vector<int64_t> decode_rows(const std::vector<DecodeRow*>& rows) = 0;
  // Prefix caching: the keys and values of the latest prompts of ids (no embeddings, no padding)
  // are kept, up to `bytes` in all (the least recently used dropped first; 0: off and emptied),
  // and a prompt that begins with a kept one's first positions runs only the positions after them.
  // Emptied whenever a weight changes. Counters survive until the next call.
  virtual void set_prefix_cache(int64_t bytes) = 0;
  virtual PrefixCacheStats prefix_cache_stats() const = 0;
};

}  // namespace et::nn
