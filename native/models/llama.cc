#include "models/llama.h"

#include <ATen/CPUGeneratorImpl.h>

#include "blocks/checkpoint.h"

#include "blocks/attention.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/linear.h"
#include "kernels/linear_rows.h"
#include "kernels/norms.h"
#include "kernels/positions.h"
#include "models/layers.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace et::nn {

namespace {

// 1 / base^(2i / dim) in float32, as transformers and the remote-code models compute it.
at::Tensor base_inv_freq(double base, int64_t dim) {
  auto exps = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  return 1.0 / at::pow(at::scalar_tensor(base, at::kFloat), exps);
}

// inv_freq at construction (float32), with linear or llama3 scaling; dynamic and longrope start
// from the plain table and are adjusted per run (rope_for).
at::Tensor rope_inv_freq(const LlamaConfig& c, int64_t dim) {
  auto inv = base_inv_freq(c.rope_theta, dim);
  if (c.rope_type == "linear") return inv / c.rope_factor;
  if (c.rope_type == "llama3") {
    double old_len = static_cast<double>(c.original_max_position_embeddings);
    double low_wavelen = old_len / c.low_freq_factor, high_wavelen = old_len / c.high_freq_factor;
    auto wavelen = 2 * M_PI / inv;
    auto scaled = at::where(wavelen > low_wavelen, inv / c.rope_factor, inv);
    auto smooth = (old_len / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
    auto smoothed = (1 - smooth) * scaled / c.rope_factor + smooth * scaled;
    auto medium = wavelen.ge(high_wavelen).logical_and(wavelen.le(low_wavelen));
    return at::where(medium, smoothed, scaled);
  }
  TORCH_CHECK(c.rope_type == "default" || c.rope_type == "dynamic" || c.rope_type == "longrope", "LLaMA: unsupported rope type '",
              c.rope_type, "'");
  if (c.rope_type == "longrope") {
    TORCH_CHECK(static_cast<int64_t>(c.short_factor.size()) == dim / 2 && static_cast<int64_t>(c.long_factor.size()) == dim / 2,
                "LLaMA: longrope short_factor and long_factor need ", dim / 2, " entries each, got ", c.short_factor.size(), " and ",
                c.long_factor.size());
  }
  return inv;
}

// Keep-mask (B, S) over cache + new positions → additive mask (B, 1, T, S): a query may see keys
// up to its own position that are not padding and, with a sliding window, fewer than `window`
// places back (HF's sliding_window_overlay: kv_idx > q_idx − window, over cache indices).
at::Tensor causal_mask(const at::Tensor& keep, int64_t T, at::ScalarType dtype, int64_t window) {
  int64_t S = keep.size(1), past = S - T;
  auto opts = at::TensorOptions().device(keep.device());
  auto qpos = at::arange(past, S, opts.dtype(at::kLong)).unsqueeze(1);  // (T, 1)
  auto kpos = at::arange(S, opts.dtype(at::kLong)).unsqueeze(0);         // (1, S)
  auto visible = kpos.le(qpos);
  if (window > 0) visible = visible.logical_and(kpos.gt(qpos - window));
  auto allowed = visible.unsqueeze(0).logical_and(keep.ne(0).unsqueeze(1));  // (B, T, S)
  // the dtype's lowest finite value, as torch.finfo(dtype).min in HF's masks (float32's lowest is
  // -inf in bfloat16, and a row masked throughout would then give NaN in eager attention)
  double low = dtype == at::kDouble ? std::numeric_limits<double>::lowest() : std::numeric_limits<float>::lowest();
  if (dtype == at::kHalf) low = -65504.0;
  if (dtype == at::kBFloat16) low = -3.3895313892515355e38;
  auto z = at::zeros({}, opts.dtype(dtype));
  return at::where(allowed.unsqueeze(1), z, at::full({}, low, opts.dtype(dtype)));
}

}  // namespace

void KVCache::layers(size_t n) {
  k.assign(n, at::Tensor());
  v.assign(n, at::Tensor());
  used.assign(n, 0);
}

namespace {
// A cache buffer (B, heads, capacity, D) holding n positions, made to hold `need`: a full one
// replaced by one of 1.5 × the length held, in steps of 64 positions (O(1) copies a position, at
// most half unused), its first n positions copied.
void grow(at::Tensor& buf, int64_t n, int64_t need, int64_t B, int64_t heads, int64_t D, const at::TensorOptions& opts) {
  if (buf.defined() && buf.size(2) >= need) return;
  const int64_t cap = (std::max(need, n + n / 2) + 63) / 64 * 64;
  auto bigger = at::empty({B, heads, cap, D}, opts);
  if (n > 0) bigger.narrow(2, 0, n).copy_(buf.narrow(2, 0, n));
  buf = bigger;
}
}  // namespace

std::pair<at::Tensor, at::Tensor> KVCache::append(size_t i, const at::Tensor& k_new, const at::Tensor& v_new) {
  const int64_t n = used[i], T = k_new.size(2), need = n + T;
  grow(k[i], n, need, k_new.size(0), k_new.size(1), k_new.size(3), k_new.options());
  grow(v[i], n, need, v_new.size(0), v_new.size(1), v_new.size(3), v_new.options());
  k[i].narrow(2, n, T).copy_(k_new);
  v[i].narrow(2, n, T).copy_(v_new);
  used[i] = need;
  return {k[i].narrow(2, 0, need), v[i].narrow(2, 0, need)};
}

int64_t KVCache::append_row(size_t i, const at::Tensor& k_rows, const at::Tensor& v_rows, int64_t r) {
  const int64_t n = used[i], Hkv = k_rows.size(2), D = k_rows.size(3);
  for (auto pair : {std::make_pair(&k[i], &k_rows), std::make_pair(&v[i], &v_rows)}) {
    at::Tensor& buf = *pair.first;
    const at::Tensor& src = *pair.second;
    grow(buf, n, n + 1, 1, Hkv, D, src.options());
    const bool flat = buf.device().is_cpu() && src.device().is_cpu() && buf.scalar_type() == src.scalar_type() && buf.stride(3) == 1 &&
                      src.stride(3) == 1;
    if (flat) {  // each head's D values: one copy, no ATen op
      const int64_t es = src.element_size();
      const auto* from = static_cast<const char*>(src.const_data_ptr()) + r * src.stride(0) * es;
      auto* to = static_cast<char*>(buf.data_ptr()) + n * buf.stride(2) * es;
      for (int64_t h = 0; h < Hkv; ++h)
        std::memcpy(to + h * buf.stride(1) * es, from + h * src.stride(2) * es, static_cast<size_t>(D * es));
    } else {
      buf.narrow(2, n, 1).copy_(src.narrow(0, r, 1).transpose(1, 2));
    }
  }
  return used[i] = n + 1;
}

void KVCache::select(const at::Tensor& rows) {
  for (auto& t : k)
    if (t.defined()) t = t.index_select(0, rows);
  for (auto& t : v)
    if (t.defined()) t = t.index_select(0, rows);
}

LlamaLayerImpl::LlamaLayerImpl(const LlamaConfig& c) : cfg(c) {
  int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size, Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  auto norm = [&](const char* name) {
    return register_module(name, std::make_shared<torch::nn::Module>())->register_parameter("weight", at::ones({H}));
  };
  if (c.model_type == "internlm2") {
    auto attn = register_module("attention", std::make_shared<torch::nn::Module>());
    qkv = attn->register_module("wqkv", Linear(H, (Hq + 2 * Hkv) * D, c.attention_bias));
    o_proj = attn->register_module("wo", Linear(Hq * D, H, c.attention_bias));
    auto ff = register_module("feed_forward", std::make_shared<torch::nn::Module>());
    gate_proj = ff->register_module("w1", Linear(H, I, c.mlp_bias));
    up_proj = ff->register_module("w3", Linear(H, I, c.mlp_bias));
    down_proj = ff->register_module("w2", Linear(I, H, c.mlp_bias));
    input_layernorm = norm("attention_norm");
    post_attention_layernorm = norm("ffn_norm");
    return;
  }
  auto attn = register_module("self_attn", std::make_shared<torch::nn::Module>());
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  bool qkv_bias = c.attention_bias || c.qkv_bias;
  if (c.model_type == "phi3") {
    qkv = attn->register_module("qkv_proj", Linear(H, (Hq + 2 * Hkv) * D, qkv_bias));
    gate_up = mlp->register_module("gate_up_proj", Linear(H, 2 * I, c.mlp_bias));
  } else {
    q_proj = attn->register_module("q_proj", Linear(H, Hq * D, qkv_bias));
    k_proj = attn->register_module("k_proj", Linear(H, Hkv * D, qkv_bias));
    v_proj = attn->register_module("v_proj", Linear(H, Hkv * D, qkv_bias));
    gate_proj = mlp->register_module("gate_proj", Linear(H, I, c.mlp_bias));
    up_proj = mlp->register_module("up_proj", Linear(H, I, c.mlp_bias));
  }
  // Registered after q/k/v as in HF, so parameters() lists them in the checkpoint's order.
  o_proj = attn->register_module("o_proj", Linear(Hq * D, H, c.attention_bias));
  down_proj = mlp->register_module("down_proj", Linear(I, H, c.mlp_bias));
  input_layernorm = norm("input_layernorm");
  post_attention_layernorm = norm("post_attention_layernorm");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> LlamaLayerImpl::project_qkv(const at::Tensor& h, bool rows) {
  int64_t B = h.size(0), T = h.size(1), Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;
  auto lin = [rows, &h](Linear& l) { return rows ? l->rows(h) : l(h); };
  if (!qkv) return {lin(q_proj).view({B, T, Hq, D}), lin(k_proj).view({B, T, Hkv, D}), lin(v_proj).view({B, T, Hkv, D})};
  auto x = lin(qkv);
  if (cfg.model_type == "internlm2") {
    // wqkv's rows per kv head: its g = Hq / Hkv query heads, then its key, then its value.
    int64_t g = Hq / Hkv;
    auto grouped = x.view({B, T, Hkv, g + 2, D});
    return {grouped.narrow(3, 0, g).reshape({B, T, Hq, D}), grouped.select(3, g), grouped.select(3, g + 1)};
  }
  // Phi-3: all query heads, then the key heads, then the value heads.
  return {x.narrow(2, 0, Hq * D).view({B, T, Hq, D}), x.narrow(2, Hq * D, Hkv * D).view({B, T, Hkv, D}),
          x.narrow(2, (Hq + Hkv) * D, Hkv * D).view({B, T, Hkv, D})};
}

at::Tensor LlamaLayerImpl::attend(const at::Tensor& q_rot, const at::Tensor& k_rot, const at::Tensor& v0, const at::Tensor& mask,
                                  KVCache* cache, size_t index) {
  auto q = q_rot.transpose(1, 2);  // (B, Hq, T, D)
  auto k = k_rot.transpose(1, 2);  // (B, Hkv, T, D)
  auto v = v0.transpose(1, 2);
  if (cache) std::tie(k, v) = cache->append(index, k, v);  // (B, Hkv, S, D)
  return attend_cached(q, k, v, mask, cache && !is_training());
}

at::Tensor LlamaLayerImpl::attend_cached(const at::Tensor& q, at::Tensor k, at::Tensor v, const at::Tensor& mask, bool prompt) {
  const int64_t Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads;
  // decoding (a few queries over the cache, no graph): the grouped heads read in place
  if (!is_training() && mask.defined()) {
    if (auto o = attention_rows(q, k, v, mask); o.defined()) return o;
  }
  // a bfloat16 prompt pass, causal: its queries by the same kernel (float32 keeps SDPA's flash
  // attention, the numbers transformers computes)
  if (prompt && !mask.defined() && q.scalar_type() == at::kBFloat16) {
    if (auto o = attention_causal(q, k, v); o.defined()) return o;
  }
  if (Hkv != Hq) {
    k = k.repeat_interleave(Hq / Hkv, 1);  // (B, Hq, S, D)
    v = v.repeat_interleave(Hq / Hkv, 1);
  }
  // No mask and no cache before the queries: nothing is padded, so SDPA's own causal path (as HF
  // takes it); after a cache (a reused prompt prefix), SDPA's causal path would align the queries
  // top-left: the causal mask bottom-right aligned instead.
  at::Tensor m = mask;
  if (!m.defined() && k.size(2) > q.size(2))
    m = causal_mask(at::ones({1, k.size(2)}, q.options().dtype(at::kLong)), q.size(2), q.scalar_type(), 0);
  // (the mask is finite, causal_mask's lowest value where masked: every row keeps a key)
  return sdpa(q, k, v, m.defined() ? std::optional<at::Tensor>(m) : std::nullopt, is_training() ? cfg.attention_dropout : 0.0, !m.defined(),
              std::nullopt, /*rows_keep_a_key=*/true);
}

at::Tensor LlamaLayerImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                                   KVCache* cache, size_t index) {
  int64_t B = x.size(0), T = x.size(1), Hq = cfg.num_attention_heads, D = cfg.head_dim;
  const bool prompt = cache && !is_training();
  auto h = normed(x, input_layernorm, prompt);
  auto [q0, k0, v0] = project_qkv(h, false);
  auto a = attend(rotate(q0, cos, sin, prompt), rotate(k0, cos, sin, prompt), v0, mask, cache, index);
  return feed_forward(x + o_proj(a.transpose(1, 2).reshape({B, T, Hq * D})), prompt);
}

at::Tensor LlamaLayerImpl::normed(const at::Tensor& x, const at::Tensor& w, bool prompt) const {
  return prompt ? rms_norm_rows(x, w, cfg.rms_norm_eps) : rms_norm(x, w, cfg.rms_norm_eps);
}

at::Tensor LlamaLayerImpl::rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool prompt) {
  return prompt ? rotary_rows(x, cos, sin) : rotary(x, cos, sin);
}

at::Tensor LlamaLayerImpl::feed_forward(const at::Tensor& y, bool prompt) {
  auto h = normed(y, post_attention_layernorm, prompt);
  if (gate_up) {
    auto gu = gate_up(h).chunk(2, -1);  // Phi-3: gate, then up
    return y + down_proj(activate(gu[0], cfg.hidden_act) * gu[1]);
  }
  return y + down_proj(gated(gate_proj(h), up_proj(h), false));
}

at::Tensor LlamaLayerImpl::gated(const at::Tensor& g, const at::Tensor& u, bool rows) {
  if (cfg.hidden_act == "silu" && !is_training())
    if (auto m = silu_mul_rows(g, u); m.defined()) return m;
  if (!rows) return activate_temp(g, cfg.hidden_act) * u;
  std::vector<at::Tensor> out;
  for (int64_t r = 0; r < g.size(0); ++r) out.push_back(activate_temp(g.narrow(0, r, 1), cfg.hidden_act) * u.narrow(0, r, 1));
  return at::cat(out, 0);
}

at::Tensor LlamaLayerImpl::forward_last(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                                        KVCache* cache, size_t index) {
  const int64_t B = x.size(0), T = x.size(1), Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;
  if (is_training() || qkv || T < 2) return {};
  const bool prompt = cache != nullptr;
  auto h = normed(x, input_layernorm, prompt);
  auto last = [T](const at::Tensor& t) { return t.narrow(1, T - 1, 1); };
  auto q = rotate(q_proj(last(h)).view({B, 1, Hq, D}), last(cos), last(sin), prompt).transpose(1, 2);  // (B, Hq, 1, D)
  auto k = rotate(k_proj(h).view({B, T, Hkv, D}), cos, sin, prompt).transpose(1, 2);
  auto v = v_proj(h).view({B, T, Hkv, D}).transpose(1, 2);
  if (cache) std::tie(k, v) = cache->append(index, k, v);  // (B, Hkv, S, D)
  // the last query's row of the mask; where the causal path had none it sees every key
  at::Tensor m = mask.defined() ? mask.narrow(2, T - 1, 1) : at::zeros({B, 1, 1, k.size(2)}, q.options());
  return feed_forward(last(x) + o_proj(attend_cached(q, k, v, m).transpose(1, 2).reshape({B, 1, Hq * D})), prompt);
}

at::Tensor LlamaLayerImpl::forward_rows(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const std::vector<RowStep>& rows,
                                        size_t index) {
  const int64_t R = x.size(0), Hq = cfg.num_attention_heads, D = cfg.head_dim;
  auto each = [R](const std::function<at::Tensor(int64_t)>& f) {
    std::vector<at::Tensor> out;
    for (int64_t r = 0; r < R; ++r) out.push_back(f(r));
    return at::cat(out, 0);
  };
  auto h = rms_norm_rows(x, input_layernorm, cfg.rms_norm_eps);  // (R, 1, H)
  auto [q0, k0, v0] = project_qkv(h, true);
  auto q = rotary_rows(q0, cos, sin), k = rotary_rows(k0, cos, sin);
  // each row's new position into its own cache, then every row's attention in one call over the
  // caches in place (no views a row); else (training, other dtypes) row by row through SDPA
  at::Tensor a;
  const bool cached = std::all_of(rows.begin(), rows.end(), [](const RowStep& s) { return s.cache != nullptr; });
  if (cached) {
    std::vector<at::Tensor> ks(R), vs(R), masks(R);
    std::vector<int64_t> len(R);
    for (int64_t r = 0; r < R; ++r) {
      KVCache& c = *rows[r].cache;
      len[r] = c.append_row(index, k, v0, r);
      ks[r] = c.k[index];
      vs[r] = c.v[index];
      masks[r] = rows[r].fmask;
    }
    if (!is_training()) a = attention_rows(q, ks, vs, len, masks);
    if (!a.defined())
      a = each([&](int64_t r) {
        return attend_cached(q.narrow(0, r, 1).transpose(1, 2), ks[r].narrow(2, 0, len[r]), vs[r].narrow(2, 0, len[r]), rows[r].mask());
      });
  } else {  // (a row without a cache: none in DecodeBatch's steps)
    a = each([&](int64_t r) {
      auto kr = k.narrow(0, r, 1).transpose(1, 2), vr = v0.narrow(0, r, 1).transpose(1, 2);
      if (rows[r].cache) std::tie(kr, vr) = rows[r].cache->append(index, kr, vr);
      return attend_cached(q.narrow(0, r, 1).transpose(1, 2), kr, vr, rows[r].mask());
    });
  }  // (R, Hq, 1, D)
  auto y = x + o_proj->rows(a.transpose(1, 2).reshape({R, 1, Hq * D}));
  h = rms_norm_rows(y, post_attention_layernorm, cfg.rms_norm_eps);
  if (gate_up) {
    auto gu = gate_up->rows(h).chunk(2, -1);  // Phi-3: gate, then up
    return y + down_proj->rows(gated(gu[0], gu[1], true));
  }
  return y + down_proj->rows(gated(gate_proj->rows(h), up_proj->rows(h), true));
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& c) : cfg(c) {
  if (cfg.head_dim <= 0) cfg.head_dim = c.hidden_size / c.num_attention_heads;
  TORCH_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, "LLaMA: num_attention_heads ", c.num_attention_heads,
              " is not a multiple of num_key_value_heads ", c.num_key_value_heads);
  TORCH_CHECK(c.model_type != "internlm2" || !c.tie_word_embeddings, "LLaMA: InternLM2 has no tied head (output.weight)");
  bool internlm2 = c.model_type == "internlm2";
  auto model = register_module("model", std::make_shared<torch::nn::Module>());
  embed_tokens = model->register_module(internlm2 ? "tok_embeddings" : "embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = model->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaLayer(cfg));
  auto norm = model->register_module("norm", std::make_shared<torch::nn::Module>());
  norm_weight = norm->register_parameter("weight", at::ones({c.hidden_size}));
  if (!c.tie_word_embeddings) lm_head = register_module(internlm2 ? "output" : "lm_head", Linear(c.hidden_size, c.vocab_size, false));
  init_bert_weights(*this, c.initializer_range);
  inv_freq = rope_inv_freq(cfg, cfg.head_dim);  // not a parameter or buffer: derived from the config
}

at::Tensor LlamaForCausalLM::embed(const at::Tensor& ids) { return embed_tokens(ids); }

std::pair<at::Tensor, double> LlamaForCausalLM::rope_for(int64_t S) const {
  const int64_t dim = cfg.head_dim;
  if (cfg.rope_type == "dynamic" && S > cfg.max_position_embeddings) {
    // InternLM2's dynamic NTK: the base grows with the length once it passes max_position_embeddings.
    double f = cfg.rope_factor;
    double base = cfg.rope_theta * std::pow(f * static_cast<double>(S) / static_cast<double>(cfg.max_position_embeddings) - (f - 1),
                                            static_cast<double>(dim) / static_cast<double>(dim - 2));
    return {base_inv_freq(base, dim), 1.0};
  }
  if (cfg.rope_type == "longrope") {
    // Phi-3's su / longrope: each frequency divided by its short or long factor.
    const auto& ext = S > cfg.original_max_position_embeddings ? cfg.long_factor : cfg.short_factor;
    auto exps = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
    auto inv = 1.0 / (at::tensor(ext, at::kDouble).to(at::kFloat) * at::pow(at::scalar_tensor(cfg.rope_theta, at::kFloat), exps));
    return {inv, cfg.attention_factor};
  }
  return {inv_freq, 1.0};
}

std::pair<at::Tensor, at::Tensor> LlamaForCausalLM::rope_cos_sin(const at::Tensor& positions, int64_t S, at::ScalarType dtype) const {
  auto [inv_cpu, scale] = rope_for(S);
  auto inv = inv_cpu.to(positions.device());
  auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv;  // (B, T, D/2)
  auto emb = at::cat({freqs, freqs}, -1);
  auto cos = emb.cos(), sin = emb.sin();
  if (scale != 1.0) {
    cos = cos * scale;
    sin = sin * scale;
  }
  return {cos.to(dtype), sin.to(dtype)};  // (B, T, D)
}

int64_t LlamaForCausalLM::window_span() const {
  // Phi-3's remote code masks with _prepare_4d_causal_attention_mask, which lets a query see
  // sliding_window + 1 positions (itself and sliding_window before it); Mistral's sees sliding_window.
  return cfg.sliding_window > 0 && cfg.model_type == "phi3" ? cfg.sliding_window + 1 : cfg.sliding_window;
}

at::Tensor LlamaForCausalLM::attention_mask(const at::Tensor& keep, int64_t T, at::ScalarType dtype) const {
  const int64_t span = window_span(), window = span > 0 && keep.size(1) > span ? span : 0;
  bool plain = keep.size(1) == T && window == 0 && keep.ne(0).all().item<bool>();
  return plain ? at::Tensor() : causal_mask(keep, T, dtype, window);  // undefined: causal, nothing padded
}

at::Tensor LlamaForCausalLM::run(const at::Tensor& embeds, const at::Tensor& keep, const at::Tensor& positions, KVCache* cache,
                                 bool last_only, bool over_cache) {
  int64_t T = embeds.size(1);
  auto [cos, sin] = rope_cos_sin(positions.to(embeds.device()), keep.size(1), embeds.scalar_type());
  auto mask = over_cache && window_span() == 0 ? at::Tensor() : attention_mask(keep, T, embeds.scalar_type());
  at::Tensor x = embeds;
  if (cache && cache->k.empty()) cache->layers(layers->size());
  bool recompute = !cache && recompute_layers(x);
  for (size_t i = 0; i < layers->size(); ++i) {
    std::shared_ptr<torch::nn::Module> layer = layers[i];
    LayerRun run;
    if (recompute) {
      run = [layer, cos, sin, mask, i](const at::Tensor& h) {
        return checkpoint([layer, cos, sin, mask, i](const at::Tensor& h2) {
          return layer->as<LlamaLayerImpl>()->forward(h2, cos, sin, mask, nullptr, i);
        }, h);
      };
    } else {
      run = [layer, cos, sin, mask, cache, i](const at::Tensor& h) {
        return layer->as<LlamaLayerImpl>()->forward(h, cos, sin, mask, cache, i);
      };
    }
    // the prompt pass of generation: the last layer's query, attention and MLP for the last position
    // alone (every position's key and value still cached): about a 22nd of a 1.1B's products less
    if (last_only && i + 1 == layers->size() && !shard_hooks && !recompute)
      if (auto y = layer->as<LlamaLayerImpl>()->forward_last(x, cos, sin, mask, cache, i); y.defined()) {
        x = y;
        continue;
      }
    x = shard_hooks ? shard_hooks->layer(*this, *layer, x, run) : run(x);
  }
  if (last_only && x.size(1) != 1) x = x.narrow(1, T - 1, 1);
  x = rms_norm(x, norm_weight, cfg.rms_norm_eps);
  return lm_head ? lm_head(x) : nn::linear(x, embed_tokens->weight, {});
}

// embeds (R, 1, H): each row's new token; each row's keep already covers it. → logits (R, V)
at::Tensor LlamaForCausalLM::run_rows(const at::Tensor& embeds, const std::vector<DecodeRow*>& rows) {
  const int64_t R = embeds.size(0);
  const auto dtype = embeds.scalar_type();
  std::vector<RowStep> steps;
  std::vector<at::Tensor> coss, sins;
  auto lopts = at::TensorOptions().dtype(at::kLong).device(embeds.device());
  const int64_t span = window_span();
  for (auto* row : rows) {
    // each row's own rotary table (dynamic NTK and longrope depend on its length)
    auto [cos, sin] = rope_cos_sin(at::full({1, 1}, row->next_pos, lopts), row->keep.size(1), dtype);
    coss.push_back(cos);
    sins.push_back(sin);
    // a row keeps every position of its cache (start_row leaves padding out), so its mask masks
    // nothing but a sliding window's past: the kernel's float32 mask only then; the mask in the
    // rows' dtype for SDPA only when asked (training, other dtypes)
    const at::Tensor keep = row->keep;
    at::Tensor fmask = span > 0 && keep.size(1) > span ? attention_mask(keep, 1, at::kFloat).reshape({-1}) : at::Tensor();
    steps.push_back({row->cache.k.empty() ? nullptr : &row->cache, fmask, [this, keep, dtype] { return attention_mask(keep, 1, dtype); }});
  }
  auto cos = at::cat(coss, 0), sin = at::cat(sins, 0);  // (R, 1, D)
  at::Tensor x = embeds;
  for (size_t i = 0; i < layers->size(); ++i) x = layers[i]->as<LlamaLayerImpl>()->forward_rows(x, cos, sin, steps, i);
  x = rms_norm_rows(x, norm_weight, cfg.rms_norm_eps);
  return (lm_head ? lm_head->rows(x) : nn::linear_rows(x, embed_tokens->weight, {})).select(1, 0);
}

Outputs LlamaForCausalLM::forward(const Inputs& in) {
  const at::Tensor ids = in.opt("input_ids");
  const at::Tensor keep_in = in.opt("attention_mask");
  const at::Tensor pos_in = in.opt("position_ids");
  const at::Tensor embeds_in = in.opt("inputs_embeds");
  const at::Tensor labels = in.opt("labels");
  const at::Tensor num_items = in.opt("num_items_in_batch");
  TORCH_CHECK(ids.defined() != embeds_in.defined(), "LLaMA: give exactly one of input_ids and inputs_embeds");
  at::Tensor embeds = ids.defined() ? embed(ids) : embeds_in;
  int64_t B = embeds.size(0), T = embeds.size(1);
  auto lopts = at::TensorOptions().dtype(at::kLong).device(embeds.device());
  at::Tensor keep = keep_in.defined() ? keep_in.to(lopts) : at::ones({B, T}, lopts);
  at::Tensor pos = pos_in.defined() ? pos_in.to(lopts) : at::arange(T, lopts).unsqueeze(0).expand({B, T});
  at::Tensor logits = run(embeds, keep, pos, nullptr);
  if (!labels.defined()) return {{"logits", logits}};
  return {{"logits", logits},
          {"loss", causal_lm_loss(logits, labels, num_items.defined() ? std::optional<double>(num_items.item<double>()) : std::nullopt)}};
}

at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels, std::optional<double> num_items) {
  int64_t T = logits.size(1), V = logits.size(2);
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == logits.size(0) && labels.size(1) == T, "LLaMA: labels ", labels.sizes(),
              " do not match the logits ", logits.sizes());
  // The logits at t predict the label at t + 1: the labels move left by one and −100 fills the
  // last place (HF pads the labels rather than slicing the logits, so nothing is copied).
  auto targets = at::constant_pad_nd(labels.to(logits.device(), at::kLong).narrow(1, 1, T - 1), {0, 1}, -100).reshape({-1});
  auto flat = logits.reshape({-1, V}).to(at::kFloat);
  if (!num_items) return at::cross_entropy_loss(flat, targets, {}, at::Reduction::Mean, -100);
  return at::cross_entropy_loss(flat, targets, {}, at::Reduction::Sum, -100) / *num_items;
}

namespace {

void apply_repetition_penalty(at::Tensor& scores, const at::Tensor& seen, double penalty) {
  if (penalty == 1.0 || seen.size(1) == 0) return;
  auto s = scores.gather(1, seen);
  s = at::where(s.lt(0), s * penalty, s / penalty);
  scores.scatter_(1, seen, s);
}

void apply_min_new_tokens(at::Tensor& scores, int64_t step, const GenerationConfig& g) {
  if (step >= g.min_new_tokens) return;
  for (auto e : g.eos_token_id) scores.select(1, e).fill_(-std::numeric_limits<float>::infinity());
}

// Temperature, then top-k, then top-p, as HF's logits warpers.
at::Tensor warp(at::Tensor scores, const GenerationConfig& g) {
  if (g.temperature != 1.0) scores = scores / g.temperature;
  const float ninf = -std::numeric_limits<float>::infinity();
  if (g.top_k > 0 && g.top_k < scores.size(1)) {
    auto kth = std::get<0>(scores.topk(g.top_k, 1)).narrow(1, g.top_k - 1, 1);
    scores = scores.masked_fill(scores.lt(kth), ninf);
  }
  if (g.top_p < 1.0) {
    auto [sorted, idx] = scores.sort(1, /*descending=*/false);
    auto cum = sorted.softmax(1).cumsum(1);
    auto remove = cum.le(1 - g.top_p);
    remove.select(1, remove.size(1) - 1).fill_(false);  // keep at least one
    scores = scores.masked_fill(remove.scatter(1, idx, remove), ninf);
  }
  return scores;
}

// Banned ids (HF's bad_words_ids of single tokens) get −inf before any choice is made.
void apply_bans(at::Tensor& scores, const at::Tensor& banned) {
  if (banned.defined()) scores.masked_fill_(banned.unsqueeze(0), -std::numeric_limits<float>::infinity());
}

at::Tensor initial_positions(const at::Tensor& keep) {  // beam search's
  return (keep.cumsum(1) - 1).clamp_min(0);  // left padding: real tokens start at 0
}

}  // namespace

at::Tensor LlamaForCausalLM::generate(const at::Tensor& ids, const at::Tensor& embeds_in, const at::Tensor& keep_in,
                                      const GenerationConfig& g) {
  TORCH_CHECK(ids.defined() || embeds_in.defined(), "generate: needs input_ids or inputs_embeds");
  TORCH_CHECK(g.max_new_tokens > 0, "generate: max_new_tokens must be positive");
  for (auto e : g.eos_token_id) TORCH_CHECK(e >= 0 && e < cfg.vocab_size, "generate: eos token ", e, " is outside the vocabulary");
  at::Tensor embeds = embeds_in.defined() ? embeds_in : embed(ids);
  auto lopts = at::TensorOptions().dtype(at::kLong).device(embeds.device());
  at::Tensor keep = keep_in.defined() ? keep_in.to(lopts) : at::ones({embeds.size(0), embeds.size(1)}, lopts);
  at::Tensor seen = ids.defined() ? ids.to(lopts) : at::empty({embeds.size(0), 0}, lopts);
  return g.num_beams > 1 ? beam_search(seen, embeds, keep, g) : greedy_or_sample(seen, embeds, keep, g, !embeds_in.defined());
}

at::Tensor LlamaForCausalLM::banned_mask(const GenerationConfig& g, const at::Device& device) const {
  if (g.banned_token_ranges.empty() && g.allowed_token_ranges.empty()) return {};
  auto fill = [&](const std::vector<int64_t>& r, at::Tensor& m, bool value, const char* what) {
    TORCH_CHECK(r.size() % 2 == 0, "generate: ", what, " must be (start, end) pairs");
    for (size_t i = 0; i < r.size(); i += 2) {
      TORCH_CHECK(0 <= r[i] && r[i] <= r[i + 1] && r[i + 1] <= cfg.vocab_size, "generate: ", what, " [", r[i], ", ", r[i + 1],
                  ") is not inside the vocabulary [0, ", cfg.vocab_size, ")");
      m.narrow(0, r[i], r[i + 1] - r[i]).fill_(value);
    }
  };
  at::Tensor banned = at::full({cfg.vocab_size}, !g.allowed_token_ranges.empty(), at::TensorOptions().dtype(at::kBool));
  fill(g.allowed_token_ranges, banned, false, "allowed_token_ranges");
  fill(g.banned_token_ranges, banned, true, "banned_token_ranges");
  TORCH_CHECK(!banned.all().item<bool>(), "generate: the token bans leave no token to generate");
  return banned.to(device);
}

std::shared_ptr<DecodeRow> LlamaForCausalLM::start_row(const at::Tensor& ids, const at::Tensor& embeds_in, const at::Tensor& keep_in,
                                                       const GenerationConfig& g, std::optional<uint64_t> seed) {
  return start_row(ids, embeds_in, keep_in, g, seed, ids.defined() && !embeds_in.defined());
}

std::shared_ptr<DecodeRow> LlamaForCausalLM::start_row(const at::Tensor& ids, const at::Tensor& embeds_in, const at::Tensor& keep_in,
                                                       const GenerationConfig& g, std::optional<uint64_t> seed, bool from_ids) {
  TORCH_CHECK(ids.defined() || embeds_in.defined(), "generate: needs input_ids or inputs_embeds");
  TORCH_CHECK(g.max_new_tokens > 0, "generate: max_new_tokens must be positive");
  TORCH_CHECK(g.num_beams == 1, "generate: a decoding row takes greedy or sampling settings, not num_beams ", g.num_beams);
  for (auto e : g.eos_token_id) TORCH_CHECK(e >= 0 && e < cfg.vocab_size, "generate: eos token ", e, " is outside the vocabulary");
  at::Tensor embeds = embeds_in.defined() ? embeds_in : embed(ids);
  TORCH_CHECK(embeds.dim() == 3 && embeds.size(0) == 1, "generate: a decoding row takes one prompt, got embeddings ", embeds.sizes());
  auto lopts = at::TensorOptions().dtype(at::kLong).device(embeds.device());
  auto row = std::make_shared<DecodeRow>();
  row->g = g;
  row->g.on_tokens = nullptr;
  row->g.stop = nullptr;
  if (seed) {
    row->generator = at::make_generator<at::CPUGeneratorImpl>(*seed);
  }
  row->seen = ids.defined() ? ids.to(lopts) : at::empty({1, 0}, lopts);
  if (keep_in.defined()) {
    // padding (left or inside) left out: the same sums as masking it, over the real positions only
    auto idx = keep_in.to(lopts).select(0, 0).nonzero().select(1, 0);
    TORCH_CHECK(idx.numel() > 0, "generate: the attention mask keeps no position of the prompt");
    if (idx.numel() < embeds.size(1)) embeds = embeds.index_select(1, idx);
  }
  const int64_t T = embeds.size(1);
  row->keep = at::ones({1, T}, lopts);
  row->banned = banned_mask(g, embeds.device());
  // a prompt of ids, nothing left out: the positions a kept prompt shares with it are not run again
  const bool cached = prefix_stats_.capacity > 0 && from_ids && ids.dim() == 2 && ids.size(1) == T;
  std::vector<int64_t> p;
  int64_t m = 0;
  if (cached) {
    auto flat = ids.to(at::kCPU, at::kLong).contiguous();
    p.assign(flat.const_data_ptr<int64_t>(), flat.const_data_ptr<int64_t>() + T);
    m = prefix_lookup(p, row->cache);
  }
  auto rest = m ? embeds.narrow(1, m, T - m) : embeds;
  row->last = run(rest, row->keep, at::arange(m, T, lopts).unsqueeze(0), &row->cache, true, m > 0).select(1, 0);  // (1, V)
  row->next_pos = T;
  if (cached) prefix_store(std::move(p), row->cache);
  return row;
}

void LlamaForCausalLM::set_prefix_cache(int64_t bytes) {
  TORCH_CHECK(bytes >= 0, "prefix cache: a size in bytes ≥ 0, got ", bytes);
  prefix_stats_ = PrefixCacheStats();
  prefix_stats_.capacity = bytes;
  prefix_.clear();
}

PrefixCacheStats LlamaForCausalLM::prefix_cache_stats() const {
  PrefixCacheStats s = prefix_stats_;
  s.entries = static_cast<int64_t>(prefix_.size());
  s.bytes = 0;
  for (const auto& e : prefix_) s.bytes += e.bytes;
  return s;
}

uint64_t LlamaForCausalLM::weights_fingerprint() {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over each tensor's identity
  auto mix = [&h](uint64_t x) {
    for (int i = 0; i < 8; ++i) {
      h ^= (x >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  auto take = [&](const at::Tensor& t) {
    if (!t.defined()) return mix(0);
    mix(reinterpret_cast<uintptr_t>(t.has_storage() ? t.storage().unsafeGetStorageImpl() : nullptr));
    mix(static_cast<uint64_t>(t.storage_offset()));
    mix(t.is_inference() ? ~0ull : static_cast<uint64_t>(t._version()));
    mix(static_cast<uint64_t>(t.scalar_type()));
    for (auto d : t.sizes()) mix(static_cast<uint64_t>(d));
  };
  for (const auto& p : named_parameters(true)) take(p.value());
  for (const auto& b : named_buffers(true)) take(b.value());
  // the quantized layers' tensors, as held (set anew by loading, a LoRA merge quantizing again)
  for (const auto& q : quantized_state(*this, /*file_layout=*/false)) take(q.second);
  return h;
}

int64_t LlamaForCausalLM::prefix_lookup(const std::vector<int64_t>& ids, KVCache& cache) {
  const uint64_t w = weights_fingerprint();
  if (w != prefix_weights_) {  // a weight changed (training, loading, adapters): nothing kept holds
    prefix_.clear();
    prefix_weights_ = w;
  }
  prefix_stats_.lookups++;
  // the last two positions always run: the last for its logits, and one position alone would take
  // the decoding kernels, whose sums differ from a prompt pass's
  const int64_t most = static_cast<int64_t>(ids.size()) - 2;
  auto best = prefix_.end();
  int64_t m = 0;
  for (auto it = prefix_.begin(); it != prefix_.end(); ++it) {
    const int64_t n = std::min<int64_t>(most, static_cast<int64_t>(it->ids.size()));
    int64_t l = 0;
    while (l < n && it->ids[l] == ids[l]) ++l;
    if (l > m) {
      m = l;
      best = it;
    }
  }
  if (m == 0) return 0;
  prefix_.splice(prefix_.begin(), prefix_, best);  // the most recently used
  cache.layers(best->k.size());
  for (size_t i = 0; i < best->k.size(); ++i) {
    // views of the entry: the prompt pass's append copies them into buffers of its own (it always
    // adds a position, so the entry is never written)
    cache.k[i] = best->k[i].narrow(2, 0, m);
    cache.v[i] = best->v[i].narrow(2, 0, m);
    cache.used[i] = m;
  }
  prefix_stats_.hits++;
  prefix_stats_.reused += m;
  return m;
}

void LlamaForCausalLM::prefix_store(std::vector<int64_t> ids, const KVCache& cache) {
  const int64_t T = static_cast<int64_t>(ids.size());
  for (auto it = prefix_.begin(); it != prefix_.end(); ++it)
    if (it->ids.size() >= ids.size() && std::equal(ids.begin(), ids.end(), it->ids.begin())) return;  // held already
  PrefixEntry e;
  for (size_t i = 0; i < cache.k.size(); ++i) {
    TORCH_CHECK(cache.k[i].defined() && cache.used[i] == T, "prefix cache: layer ", i, " holds ", cache.used[i], " positions, not ", T);
    e.k.push_back(cache.k[i].narrow(2, 0, T).clone());
    e.v.push_back(cache.v[i].narrow(2, 0, T).clone());
    e.bytes += 2 * e.k.back().numel() * e.k.back().element_size();
  }
  if (e.bytes > prefix_stats_.capacity) return;
  e.ids = std::move(ids);
  // a held prompt this one extends is dropped: the new one holds all it did
  prefix_.remove_if(
      [&](const PrefixEntry& o) { return o.ids.size() < e.ids.size() && std::equal(o.ids.begin(), o.ids.end(), e.ids.begin()); });
  int64_t bytes = e.bytes;
  for (const auto& o : prefix_) bytes += o.bytes;
  while (bytes > prefix_stats_.capacity && !prefix_.empty()) {
    bytes -= prefix_.back().bytes;
    prefix_.pop_back();
  }
  prefix_.push_front(std::move(e));
}

int64_t LlamaForCausalLM::choose(DecodeRow& row) const {
  at::Tensor scores = row.last.to(at::kFloat);
  apply_repetition_penalty(scores, row.seen, row.g.repetition_penalty);
  apply_bans(scores, row.banned);
  apply_min_new_tokens(scores, row.steps, row.g);
  if (!row.g.do_sample) return scores.argmax(1).item<int64_t>();
  auto probs = warp(scores, row.g).softmax(1);
  if (row.generator) return at::multinomial(probs.to(at::kCPU), 1, false, *row.generator).item<int64_t>();
  return at::multinomial(probs, 1).item<int64_t>();
}

std::vector<int64_t> LlamaForCausalLM::decode_rows(const std::vector<DecodeRow*>& rows) {
  std::vector<int64_t> out(rows.size(), -1);
  std::vector<DecodeRow*> going;
  std::vector<int64_t> tokens;
  for (size_t i = 0; i < rows.size(); ++i) {
    DecodeRow& r = *rows[i];
    if (r.done) continue;
    const int64_t t = choose(r);
    out[i] = t;
    r.steps++;
    const bool eos = std::find(r.g.eos_token_id.begin(), r.g.eos_token_id.end(), t) != r.g.eos_token_id.end();
    if (eos || r.steps >= r.g.max_new_tokens) {
      r.done = true;
      r.cache = KVCache();  // its memory back now
      r.last = at::Tensor();
      continue;
    }
    auto lopts = r.seen.options();
    r.seen = at::cat({r.seen, at::full({1, 1}, t, lopts)}, 1);
    r.keep = at::cat({r.keep, at::ones({1, 1}, lopts)}, 1);
    going.push_back(&r);
    tokens.push_back(t);
  }
  if (going.empty()) return out;
  auto ids = at::tensor(tokens, at::TensorOptions().dtype(at::kLong)).to(going[0]->seen.device()).unsqueeze(1);  // (R, 1)
  at::Tensor logits = run_rows(embed(ids), going);  // (R, V)
  for (size_t j = 0; j < going.size(); ++j) {
    going[j]->last = logits.narrow(0, static_cast<int64_t>(j), 1);
    going[j]->next_pos++;
  }
  return out;
}

// Greedy or sampling: each prompt a decoding row (its padding left out), the rows stepping together.
at::Tensor LlamaForCausalLM::greedy_or_sample(const at::Tensor& seen, const at::Tensor& embeds, const at::Tensor& keep,
                                              const GenerationConfig& g, bool from_ids) {
  const int64_t B = embeds.size(0);
  auto lopts = at::TensorOptions().dtype(at::kLong).device(embeds.device());
  if (g.stopped()) return at::empty({B, 0}, lopts);
  std::vector<std::shared_ptr<DecodeRow>> own;
  std::vector<DecodeRow*> rows;
  for (int64_t b = 0; b < B; ++b) {
    own.push_back(start_row(seen.size(1) ? seen.narrow(0, b, 1) : at::Tensor(), embeds.narrow(0, b, 1), keep.narrow(0, b, 1), g,
                            g.seed >= 0 ? std::optional<uint64_t>(static_cast<uint64_t>(g.seed + b)) : std::nullopt, from_ids));
    rows.push_back(own.back().get());
  }
  std::vector<at::Tensor> out;
  while (std::any_of(rows.begin(), rows.end(), [](DecodeRow* r) { return !r->done; })) {
    auto t = decode_rows(rows);
    for (auto& x : t)
      if (x < 0) x = g.pad_token_id;
    out.push_back(at::tensor(t, at::TensorOptions().dtype(at::kLong)));
    if (g.on_tokens) g.on_tokens(t);
    if (g.stopped()) break;
  }
  if (out.empty()) return at::empty({B, 0}, lopts);
  return at::stack(out, 1).to(embeds.device());
}

at::Tensor LlamaForCausalLM::beam_search(const at::Tensor& seen_in, const at::Tensor& embeds_in, const at::Tensor& keep_in,
                                         const GenerationConfig& g) {
  const int64_t B = embeds_in.size(0), K = g.num_beams, V = cfg.vocab_size;
  auto lopts = at::TensorOptions().dtype(at::kLong).device(embeds_in.device());
  // Every beam starts from the prompt; only beam 0 is live at first.
  at::Tensor embeds = embeds_in.repeat_interleave(K, 0), keep = keep_in.repeat_interleave(K, 0), seen = seen_in.repeat_interleave(K, 0);
  at::Tensor pos = initial_positions(keep);
  if (g.stopped()) return at::empty({B, 0}, lopts);
  KVCache cache;
  at::Tensor last = run(embeds, keep, pos, &cache, true).select(1, 0);  // (B·K, V)
  at::Tensor next_pos = pos.select(1, pos.size(1) - 1).unsqueeze(1);
  std::vector<std::vector<double>> beam_scores(B, std::vector<double>(K, -1e9));
  for (auto& b : beam_scores) b[0] = 0;
  std::vector<std::vector<std::vector<int64_t>>> running(B, std::vector<std::vector<int64_t>>(K));
  struct Hyp {
    double score;
    std::vector<int64_t> tokens;
  };
  std::vector<std::vector<Hyp>> hyps(B);
  std::vector<bool> done(B, false);
  auto is_eos = [&](int64_t t) { return std::find(g.eos_token_id.begin(), g.eos_token_id.end(), t) != g.eos_token_id.end(); };
  auto add_hyp = [&](int64_t b, double sum_logprobs, std::vector<int64_t> tokens) {
    double score = sum_logprobs / std::pow(static_cast<double>(tokens.size()), g.length_penalty);
    auto& h = hyps[b];
    if (static_cast<int64_t>(h.size()) < K ||
        score > std::min_element(h.begin(), h.end(), [](auto& a, auto& c) { return a.score < c.score; })->score) {
      h.push_back({score, std::move(tokens)});
      if (static_cast<int64_t>(h.size()) > K)
        h.erase(std::min_element(h.begin(), h.end(), [](auto& a, auto& c) { return a.score < c.score; }));
    }
  };
  auto worst = [&](int64_t b) {
    return std::min_element(hyps[b].begin(), hyps[b].end(), [](auto& a, auto& c) { return a.score < c.score; })->score;
  };
  at::Tensor banned = banned_mask(g, embeds.device());
  int64_t steps = 0;
  for (int64_t step = 0; step < g.max_new_tokens; ++step) {
    steps = step + 1;
    at::Tensor logp = last.to(at::kFloat).log_softmax(1);  // (B·K, V)
    apply_repetition_penalty(logp, seen, g.repetition_penalty);
    apply_bans(logp, banned);
    apply_min_new_tokens(logp, step, g);
    auto bs = at::tensor(std::vector<double>([&] {
      std::vector<double> f;
      for (auto& r : beam_scores) f.insert(f.end(), r.begin(), r.end());
      return f;
    }()),
                         at::TensorOptions().dtype(at::kFloat))
                  .to(logp.device());
    auto cand = (logp + bs.unsqueeze(1)).view({B, K * V});
    auto [topv, topi] = cand.topk(2 * K, 1);
    topv = topv.to(at::kCPU).to(at::kDouble).contiguous();
    topi = topi.to(at::kCPU).contiguous();
    auto tv = topv.accessor<double, 2>();
    auto ti = topi.accessor<int64_t, 2>();
    std::vector<int64_t> rows(B * K), tokens(B * K, g.pad_token_id);
    std::vector<std::vector<std::vector<int64_t>>> next_running(B, std::vector<std::vector<int64_t>>(K));
    std::vector<std::vector<double>> next_scores(B, std::vector<double>(K, 0));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < K; ++k) rows[b * K + k] = b * K + k;
      if (done[b]) continue;
      int64_t n = 0;
      for (int64_t j = 0; j < 2 * K && n < K; ++j) {
        int64_t beam = ti[b][j] / V, tok = ti[b][j] % V;
        if (is_eos(tok)) {
          if (j >= K) continue;  // only EOS among the top num_beams candidates finishes a hypothesis
          auto t = running[b][beam];
          t.push_back(tok);
          add_hyp(b, tv[b][j], std::move(t));
        } else {
          rows[b * K + n] = b * K + beam;
          tokens[b * K + n] = tok;
          next_scores[b][n] = tv[b][j];
          next_running[b][n] = running[b][beam];
          next_running[b][n].push_back(tok);
          ++n;
        }
      }
      // Is this batch item finished?
      if (static_cast<int64_t>(hyps[b].size()) >= K) {
        if (g.early_stopping == "true") done[b] = true;
        else {
          double denom =
              g.early_stopping == "never" && g.length_penalty > 0 ? static_cast<double>(g.max_new_tokens) : static_cast<double>(steps);
          done[b] = worst(b) >= next_scores[b][0] / std::pow(denom, g.length_penalty);
        }
      }
    }
    running = std::move(next_running);
    beam_scores = std::move(next_scores);
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; }) || step + 1 == g.max_new_tokens || g.stopped()) break;
    auto row_t = at::tensor(rows, lopts);
    auto tok_t = at::tensor(tokens, lopts);
    cache.select(row_t);
    seen = at::cat({seen.index_select(0, row_t), tok_t.unsqueeze(1)}, 1);
    keep = at::cat({keep.index_select(0, row_t), at::ones({B * K, 1}, lopts)}, 1);
    next_pos = next_pos.index_select(0, row_t) + 1;
    last = run(embed(tok_t.unsqueeze(1)), keep, next_pos, &cache).select(1, 0);
  }
  // Beams still running at the end become hypotheses too.
  for (int64_t b = 0; b < B; ++b) {
    if (done[b]) continue;
    for (int64_t k = 0; k < K; ++k)
      if (!running[b][k].empty()) add_hyp(b, beam_scores[b][k], running[b][k]);
  }
  size_t longest = 1;
  std::vector<std::vector<int64_t>> best(B);
  for (int64_t b = 0; b < B; ++b) {
    best[b] = std::max_element(hyps[b].begin(), hyps[b].end(), [](auto& a, auto& c) { return a.score < c.score; })->tokens;
    longest = std::max(longest, best[b].size());
  }
  auto out = at::full({B, static_cast<int64_t>(longest)}, g.pad_token_id, at::kLong);
  auto acc = out.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; ++b)
    for (size_t i = 0; i < best[b].size(); ++i) acc[b][i] = best[b][i];
  return out.to(lopts.device());
}

static const ModelKind llama_kind = ModelKind::of<LlamaForCausalLM, LlamaConfig>("llama");

}  // namespace et::nn
