#include "blocks/attention.h"

#include "blocks/lora.h"
#include "kernels/positions.h"

namespace et::nn {

at::Tensor sdpa(const at::Tensor& qh, const at::Tensor& kh, const at::Tensor& vh, const std::optional<at::Tensor>& mask, double dropout,
                bool causal, std::optional<double> scale, bool rows_keep_a_key) {
  // bfloat16 / half with a graph: ATen's CPU flash-attention backward is several times slower than
  // the eager products (LanguageBind's LoRA step), so those take the same steps without dropout
  // (callers vouch for `rows_keep_a_key` only with dropout: without it the mask is looked at here)
  bool reduced_graph = dropout == 0 && at::isReducedFloatingType(qh.scalar_type()) && at::GradMode::is_enabled() &&
                       (qh.requires_grad() || kh.requires_grad() || vh.requires_grad()) &&
                       (!mask || !at::isFloatingType(mask->scalar_type()) || !mask->isneginf().any().item<bool>());
  bool graph = at::GradMode::is_enabled() && (qh.requires_grad() || kh.requires_grad() || vh.requires_grad());
  bool fast = (dropout > 0 || reduced_graph) && !causal && rows_keep_a_key && qh.device().is_cpu() &&
              (!mask || at::isFloatingType(mask->scalar_type()));
  // A query row masked throughout by a finite lowest value (a left-padded position under a causal
  // mask, as HF's masks make it): softmax then weighs every key alike, as HF's eager attention does.
  // ATen's fused backward gets such a row wrong (it recomputes the probabilities from a
  // log-sum-exp that the lowest value swamps: a left-padded LLaMA's gradients came out ~10^3 off),
  // so with a graph those rows take the eager steps, whose gradients are eager attention's.
  if (!fast && graph && !causal && rows_keep_a_key && mask && at::isFloatingType(mask->scalar_type()) && mask->dim() >= 1 &&
      mask->size(-1) > 0) {
    double low = mask->scalar_type() == at::kHalf ? -65504.0 : mask->scalar_type() == at::kBFloat16 ? -3.38e38 : -3.4e38;
    fast = mask->amax(-1).le(low / 2).any().item<bool>() && !mask->isneginf().any().item<bool>();
  }
  if (!fast) return at::scaled_dot_product_attention(qh, kh, vh, mask, dropout, causal, scale);
  double root = std::sqrt(scale ? *scale : 1.0 / std::sqrt(static_cast<double>(qh.size(-1))));
  auto scores = at::matmul(qh * root, kh.transpose(-2, -1) * root);  // (B, heads, Tq, Tk)
  // a wider mask widens the scores, as eager attention's `scores + mask` does (a float32 mask's
  // lowest value would round to -inf in bfloat16)
  if (mask) scores = mask->scalar_type() == scores.scalar_type() ? scores.add_(*mask) : scores + *mask;
  auto p = at::softmax(scores, -1);
  if (dropout > 0) p = at::dropout(p, dropout, true);
  return at::matmul(p.to(vh.scalar_type()), vh);
}

at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t heads, int64_t kv_heads,
                  const std::optional<at::Tensor>& mask, double dropout, bool causal, std::optional<double> scale) {
  int64_t B = q.size(0), Tq = q.size(1), Tk = k.size(1), D = q.size(2) / heads;
  auto qh = q.view({B, Tq, heads, D}).transpose(1, 2);     // (B, heads, Tq, D)
  auto kh = k.view({B, Tk, kv_heads, D}).transpose(1, 2);  // (B, kv_heads, Tk, D)
  auto vh = v.view({B, Tk, kv_heads, D}).transpose(1, 2);
  if (kv_heads != heads) {
    kh = kh.repeat_interleave(heads / kv_heads, 1);         // (B, heads, Tk, D)
    vh = vh.repeat_interleave(heads / kv_heads, 1);
  }
  // the masks given here are (B, 1, 1, Tk) or (B, 1, Tq, Tk): a look for -inf is cheap (and only
  // needed with dropout)
  bool rows_keep_a_key = dropout == 0 || !mask || !at::isFloatingType(mask->scalar_type()) || !mask->isneginf().any().item<bool>();
  auto out = sdpa(qh, kh, vh, mask, dropout, causal, scale, rows_keep_a_key);  // (B, heads, Tq, D)
  return out.transpose(1, 2).reshape({B, Tq, heads * D});
}

at::Tensor relative_buckets(int64_t T, int64_t num_buckets, int64_t max_distance, bool truncate_first, const at::Device& dev) {
  auto rel = at::arange(-(T - 1), T, at::TensorOptions().dtype(at::kLong).device(dev));  // key − query
  int64_t nb = num_buckets / 2, max_exact = nb / 2;
  auto a = rel.abs();
  auto x = at::log(a.to(at::kFloat) / max_exact) / std::log(static_cast<double>(max_distance) / max_exact) * (nb - max_exact);
  auto large = truncate_first ? max_exact + x.to(at::kLong) : (max_exact + x).to(at::kLong);
  return rel.gt(0).to(at::kLong) * nb + at::where(a.lt(max_exact), a, at::clamp_max(large, nb - 1));
}

RelativeBias::RelativeBias(at::Tensor bucket, torch::nn::Embedding table, at::ScalarType dtype)
    : bucket_(std::move(bucket)), table_(std::move(table)), dtype_(dtype) {}

at::Tensor RelativeBias::gated(const at::Tensor& gate) {
  if (at::GradMode::is_enabled() && (gate.requires_grad() || table_->weight.requires_grad())) return gate * full().unsqueeze(0);
  if (!diag_.defined()) diag_ = table_(bucket_).t().to(dtype_).contiguous();  // (H, 2T − 1)
  return gated_relative_bias(gate, diag_);
}

at::Tensor RelativeBias::full() {
  if (!full_.defined()) {
    int64_t T = (bucket_.size(0) + 1) / 2;
    full_ =
        table_(bucket_.index_select(0, relative_offsets(T, bucket_.options()))).view({T, T, -1}).permute({2, 0, 1}).to(dtype_).contiguous();
  }
  return full_;
}

at::Tensor padding_mask_to_additive(const at::Tensor& keep, at::ScalarType dtype) {
  TORCH_CHECK(keep.dim() == 2, "attention mask: expected (batch, length) but got ", keep.sizes());
  auto lowest = at::scalar_tensor(std::numeric_limits<float>::lowest(), at::TensorOptions().dtype(dtype).device(keep.device()));
  if (dtype == at::kDouble) lowest.fill_(std::numeric_limits<double>::lowest());
  auto pad = keep.eq(0).unsqueeze(1).unsqueeze(2);  // (B, 1, 1, T)
  return at::where(pad, lowest, at::zeros({}, lowest.options()));
}

void init_bert_weights(torch::nn::Module& root, double std) {
  at::NoGradGuard g;
  for (auto& m : root.modules(/*include_self=*/false)) {
    if (auto* lin = m->as<LinearImpl>()) {
      lin->weight.normal_(0, std);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = m->as<torch::nn::Embedding>()) {
      emb->weight.normal_(0, std);
      if (emb->options.padding_idx()) emb->weight[*emb->options.padding_idx()].zero_();
    } else if (auto* ln = m->as<torch::nn::LayerNorm>()) {
      if (ln->weight.defined()) ln->weight.fill_(1);
      if (ln->bias.defined()) ln->bias.zero_();
    }
  }
}

}  // namespace et::nn
