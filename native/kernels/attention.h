// Attention of a few query positions over a key/value cache, for inference on the CPU (decoding):
// softmax(scale · q·kᵀ + mask) · v per query head, each group of query heads reading its shared
// key/value head in place. ATen's SDPA here took a BLAS GEMV call per head and per product (about
// 10 µs each for a 64-wide head over 100 keys: a tenth of a 1.1B LLaMA's 4-bit decoding step) and
// needs the grouped heads copied out per query head first (repeat_interleave).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace et::nn {

// q (B, Hq, Tq, D); k, v (B, Hkv, S, D) with Hq a multiple of Hkv, each with unit stride on D;
// mask additive, (B or 1, 1, Tq or 1, S), any floating dtype, or undefined (every key); scale
// 1 / √D unless given (SDPA's default). Each (batch, head, query) is one fixed computation in
// float32 (dot products, the softmax with its maximum taken out, the weighted sum of the values
// divided by the weights' sum, as ATen's flash attention orders it), whatever B, Tq and the
// threads are, so a row's result is what it gets alone; the result is rounded to q's dtype once.
// Returns (B, Hq, Tq, D) in q's dtype, or an undefined tensor where it does not apply, for the
// caller to take SDPA: not the CPU, dtypes other than float32 / bfloat16 or not one dtype, an
// autograd graph wanted, Tq > 4, another mask shape or a boolean mask.
at::Tensor attention_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                          std::optional<double> scale = std::nullopt);

// The causal attention of a prompt's positions over its cache, for inference on the CPU (a
// generation's prompt pass): q (B, Hq, Tq, D), k, v (B, Hkv, S, D) with S ≥ Tq, query t seeing the
// keys [0, S − Tq + t] (the cache before the prompt, then the prompt up to itself: the last Tq keys
// causal), scale 1 / √D unless given, each query computed as attention_rows computes one, over its keys only (a masked key's
// weight is an exact zero, so leaving it out is the same sum). Undefined where it does not apply
// (as attention_rows, Tq any; no mask). (ATen's flash attention over bfloat16 took 0.8 ms a layer
// for a 63-position prompt of a 1.1B LLaMA on 2 Zen 4 threads: a tenth of the prompt pass's time.)
at::Tensor attention_causal(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::optional<double> scale = std::nullopt);

// The attention of several calls at once (one parallel loop for all): call r its own q[r], k[r],
// v[r] and mask[r] as above (any batch and cache length; Hq, Tq, D and the dtype shared), the
// results (ΣB, Hq, Tq, D) in the calls' order, each the numbers attention_rows gives it alone;
// undefined where a call does not apply. (The rows of a decoding step, each over its own cache.)
at::Tensor attention_rows(const std::vector<at::Tensor>& q, const std::vector<at::Tensor>& k, const std::vector<at::Tensor>& v,
                          const std::vector<at::Tensor>& mask);

// The same for a decoding step whose rows each have a cache of their own, read in place: q (R, 1,
// Hq, D) the rows' new positions (unit stride on D); row r's keys and values the first len[r]
// positions of k[r], v[r] (1, Hkv, ≥ len[r], D; unit stride on D; Hq a multiple of Hkv), its mask
// mask[r] float32, contiguous, len[r] values (additive), or undefined (every key). → (R, Hq, 1, D),
// each row the numbers attention_rows gives it alone; undefined where it does not apply (as above).
// No tensor views are made per row (a step of 16 rows of a 22-layer model made about 6,000).
at::Tensor attention_rows(const at::Tensor& q, const std::vector<at::Tensor>& k, const std::vector<at::Tensor>& v,
                          const std::vector<int64_t>& len, const std::vector<at::Tensor>& mask);

// torch's F.scaled_dot_product_attention(q, k, v, mask, scale=scale, enable_gqa=gqa,
// is_causal=causal) without dropout, for (B, H, T, D) tensors: attention_rows where it applies (and
// attention_causal for is_causal where Tq = S, torch's causal mask then being the last Tq keys'),
// else ATen's SDPA (with its enable_gqa). (A mask and is_causal together are refused by the caller.)
at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const std::optional<at::Tensor>& mask, std::optional<double> scale, bool gqa, bool causal = false);

}  // namespace et::nn
