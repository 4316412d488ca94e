// Shared attention pieces: scaled dot-product attention over packed heads, masks, and BERT-style
// initialization. Every model's attention goes through attend() or sdpa() (at::scaled_dot_product_attention).
#pragma once
#include <torch/nn.h>

#include <optional>

namespace et::nn {

// at::scaled_dot_product_attention on heads, q (B, heads, Tq, D), k and v (B, heads, Tk, D), except
// with dropout on CPU: ATen then runs its math path, whose _safe_softmax adds three passes over the
// (B, heads, Tq, Tk) scores and one more in the backward (an == -inf test, a row reduction and a
// where, which set a row masked throughout to 0 where softmax gives NaN). Where no row of `mask` is
// -inf throughout (`rows_keep_a_key`, the caller's to know; a finite mask always) the same steps
// run without them: q and k each scaled by √scale, the mask added, softmax, dropout, the product
// with v. In half and bfloat16 (and under autocast) the products stay in that precision, as in
// the eager attention of the Python models (HF RoBERTa, torch's multi_head_attention_forward),
// where the math path would compute them in float32. The same steps run in half and bfloat16
// without dropout when an autograd graph is recorded and no row of the mask is -inf throughout
// (looked at here): ATen's CPU flash-attention backward is the slower one there. Otherwise without
// dropout, or on a GPU, ATen's SDPA runs.
at::Tensor sdpa(const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh, const std::optional<at::Tensor>& mask, double dropout,
                bool causal, std::optional<double> scale, bool rows_keep_a_key);

// q (B, Tq, heads·D), k and v (B, Tk, kv_heads·D) → (B, Tq, heads·D). `mask` is additive (float,
// broadcastable to (B, heads, Tq, Tk)) or boolean (true = attend). kv_heads < heads repeats
// key/value heads (grouped-query attention). `bias` is added to the scores (relative positions).
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, int64_t kv_heads,
                  const std::optional<at::Tensor>& mask, double dropout, bool causal, std::optional<double> scale = std::nullopt);

// (B, T) keep-mask (1 = token, 0 = padding; any dtype) → additive (B, 1, 1, T) mask in `dtype`
// with the dtype's lowest value at padding, as transformers' get_extended_attention_mask.
at::Tensor padding_mask_to_additive(const at::Tensor& keep, at::ScalarType dtype);

// The relative-position bias of WavLM and BEATs, shared by the layers of one forward. It depends
// on key − query only, so it is kept as one bucket per offset (2T − 1 of them), and gated() reads
// the table's rows for them as diagonals (gated_relative_bias) instead of a (H, T, T) bias; where an
// autograd graph is wanted, it multiplies the full bias, built once per forward.
// The bucket of each offset key − query = −(T − 1) … T − 1 (2T − 1 of them, in that order): the
// bidirectional log buckets of WavLM and BEATs in float32 arithmetic, half of num_buckets for
// positive offsets, exact below a quarter of them, logarithmic up to max_distance. The originals
// round the logarithmic part differently: HF WavLM truncates max_exact + x, BEATs adds max_exact to
// x truncated (`truncate_first`); they differ where the float32 sum rounds up to a whole number.
at::Tensor relative_buckets(int64_t T, int64_t num_buckets, int64_t max_distance, bool truncate_first, const at::Device& dev);

class RelativeBias {
 public:
  RelativeBias() = default;
  // bucket (2T − 1) int64: at d, the bucket of offset key − query = d − (T − 1); table (buckets, H)
  RelativeBias(at::Tensor bucket, torch::nn::Embedding table, at::ScalarType dtype);
  bool defined() const { return bucket_.defined(); }
  // gate (B, H, T, 1) → gate · bias, (B, H, T, T)
  at::Tensor gated(const at::Tensor& gate);
  // The bias, (H, T, T)
  at::Tensor full();

 private:
  at::Tensor bucket_, diag_, full_;
  torch::nn::Embedding table_{nullptr};
  at::ScalarType dtype_ = at::kFloat;
};

// Normal(0, std) weights and zero biases for Linear/Embedding, ones/zeros for LayerNorm: the
// BERT / HF `_init_weights` scheme.
void init_bert_weights(torch::nn::Module& m, double std);

}  // namespace et::nn
