#include "kernels/attention.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/lanes.h"
#include "kernels/linear_rows.h"

namespace et::nn {

namespace {

using namespace lanes;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
struct Args {
  int64_t B, Hq, Hkv, Tq, S, D;
  const void *q, *k, *v;
  int64_t qs[3], ks[3], vs[3];  // strides of batch, head, position (elements)
  const float* mask;            // (MB, 1, MT, S) float32, contiguous; null: no mask
  int64_t mb, mt;               // whether the mask has the batch / query dimension
  float scale;
  void* out;    // (B, Hq, Tq, D) contiguous
  bool causal;  // query t sees the keys [0, S − Tq + t] only
};

// Query heads of one key/value head computed together (decoding: one query per head), so that a
// block of keys and each value row is read once for them: up to 4, their value sums in registers.
constexpr int kHeads = 4;

// out_i[0 … NV·W) = Σ_j p_i[j] · v_j[0 … NV·W) for the NH heads i, v_j = vb + j · vstride: each
// lane's sum in order of j, as for a head alone.
template <int W, int NH, int NV, typename T>
[[gnu::always_inline]] inline void weighted_sum(const T* vb, int64_t vstride, const float* const* p, int64_t S, float* const* out) {
  using F = typename Lanes<W>::F;
  F r[NH][NV] = {};
  for (int64_t j = 0; j < S; ++j) {
    const T* vp = vb + j * vstride;
    F v[NV];
    _Pragma("GCC unroll 8") for (int c = 0; c < NV; ++c) v[c] = load<W>(vp + c * W);
    _Pragma("GCC unroll 4") for (int i = 0; i < NH; ++i) {
      const float w = p[i][j];
      _Pragma("GCC unroll 8") for (int c = 0; c < NV; ++c) r[i][c] += w * v[c];
    }
  }
  for (int i = 0; i < NH; ++i)
    for (int c = 0; c < NV; ++c) std::memcpy(out[i] + c * W, &r[i][c], sizeof(F));
}

// weighted_sum with NV = nv, for 1 ≤ nv ≤ C
template <int W, int NH, int C, typename T>
[[gnu::always_inline]] inline void weighted_sum_n(int64_t nv, const T* vb, int64_t vstride, const float* const* p, int64_t S,
                                                  float* const* out) {
  if (nv == C) weighted_sum<W, NH, C>(vb, vstride, p, S, out);
  else if constexpr (C > 1) weighted_sum_n<W, NH, C - 1>(nv, vb, vstride, p, S, out);
}

// The value sums of NH heads over D's first Dv lanes, in chunks of up to 16 / NH vectors (8 at most)
template <int W, int NH, typename T>
[[gnu::always_inline]] inline void weighted_sums(const T* vb, int64_t vstride, const float* const* p, int64_t S, float* const* out,
                                                 int64_t Dv) {
  constexpr int C = NH <= 2 ? 8 : 4;
  for (int64_t d0 = 0; d0 < Dv; d0 += C * W) {
    float* o[NH];
    for (int i = 0; i < NH; ++i) o[i] = out[i] + d0;
    weighted_sum_n<W, NH, C>(std::min<int64_t>(C, (Dv - d0) / W), vb + d0, vstride, p, S, o);
  }
}

// The 16 lane sums of s[0 … 15] as one vector, each by lanes_sum<16>'s tree (lane i + lane i + 8,
// then + 4, + 2, + 1): four levels of pairs, where 16 sums of their own took 16 times four.
template <typename F>
[[gnu::always_inline]] inline void lanes_sums16(const F* s, F& out) {
  F r1[8], r2[4], r3[2];
  for (int i = 0; i < 8; ++i)
    r1[i] = __builtin_shufflevector(s[2 * i], s[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
            __builtin_shufflevector(s[2 * i], s[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int i = 0; i < 4; ++i)
    r2[i] = __builtin_shufflevector(r1[2 * i], r1[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
            __builtin_shufflevector(r1[2 * i], r1[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  for (int i = 0; i < 2; ++i)
    r3[i] = __builtin_shufflevector(r2[2 * i], r2[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
            __builtin_shufflevector(r2[2 * i], r2[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  out = __builtin_shufflevector(r3[0], r3[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
        __builtin_shufflevector(r3[0], r3[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

// The units [u0, u1) of (batch, head, query), each computed as alone; with one query per head,
// the heads of a key/value head kHeads at a time.
template <int W, typename T>
[[gnu::always_inline]] inline void units(const Args& a, int64_t u0, int64_t u1) {
  using F = typename Lanes<W>::F;
  const int64_t D = a.D, Dv = D / W * W, group = a.Hq / a.Hkv, ps = a.S + W;
  std::vector<float> pbuf(static_cast<size_t>(kHeads * ps)), qbuf(static_cast<size_t>(kHeads * D)), abuf(static_cast<size_t>(kHeads * D));
  const T* Q = static_cast<const T*>(a.q);
  const T* K = static_cast<const T*>(a.k);
  const T* V = static_cast<const T*>(a.v);
  for (int64_t u = u0; u < u1;) {
    const int64_t b = u / (a.Hq * a.Tq), h = u / a.Tq % a.Hq, t = u % a.Tq, g = h / group;
    const int64_t S = a.causal ? a.S - a.Tq + t + 1 : a.S;  // the keys this query sees
    // heads h … h + n − 1 (units u … u + n − 1: one query per head) share b, t and g
    const int64_t n = a.Tq == 1 ? std::min({u1 - u, group - h % group, static_cast<int64_t>(kHeads)}) : 1;
    const T* kb = K + b * a.ks[0] + g * a.ks[1];
    const T* vb = V + b * a.vs[0] + g * a.vs[1];
    const float* mrow = a.mask ? a.mask + ((a.mb ? b : 0) * (a.mt ? a.Tq : 1) + (a.mt ? t : 0)) * a.S : nullptr;
    float m[kHeads];
    for (int64_t i = 0; i < n; ++i) {
      const T* qp = Q + b * a.qs[0] + (h + i) * a.qs[1] + t * a.qs[2];
      for (int64_t d = 0; d < D; ++d) qbuf[i * D + d] = widen(qp[d]);
      m[i] = -std::numeric_limits<float>::infinity();
    }
    int64_t j0 = 0;
    if constexpr (W == 16) {  // 16 keys at a time: their sums by one tree (the same numbers)
      F mv[kHeads];
      for (int64_t i = 0; i < n; ++i) mv[i] = F{} + m[i];
      for (; j0 + W <= S; j0 += W) {
        const T* k0 = kb + j0 * a.ks[2];
        for (int64_t i = 0; i < n; ++i) {  // the block's keys from L1 after the first head
          const float* qf = qbuf.data() + i * D;
          F sv[W] = {};  // the keys' chains side by side, each over d in order
          for (int64_t d = 0; d < Dv; d += W) {
            const F qd = load<W>(qf + d);
            _Pragma("GCC unroll 16") for (int jj = 0; jj < W; ++jj) sv[jj] += qd * load<W>(k0 + jj * a.ks[2] + d);
          }
          F dots;
          lanes_sums16(sv, dots);
          for (int jj = 0; jj < W && Dv < D; ++jj) {
            const T* kp = k0 + jj * a.ks[2];
            for (int64_t d = Dv; d < D; ++d) dots[jj] += qf[d] * widen(kp[d]);
          }
          const F x = mrow ? dots * a.scale + load<W>(mrow + j0) : dots * a.scale;
          std::memcpy(pbuf.data() + i * ps + j0, &x, sizeof x);
          mv[i] = x > mv[i] ? x : mv[i];
        }
      }
      for (int64_t i = 0; i < n; ++i)
        for (int l = 0; l < W; ++l) m[i] = mv[i][l] > m[i] ? mv[i][l] : m[i];
    }
    for (int64_t j = j0; j < S; ++j) {
      const T* kp = kb + j * a.ks[2];
      for (int64_t i = 0; i < n; ++i) {
        const float* qf = qbuf.data() + i * D;
        F s = {};
        for (int64_t d = 0; d < Dv; d += W) s += load<W>(qf + d) * load<W>(kp + d);
        float dot = lanes_sum<W>(s);
        for (int64_t d = Dv; d < D; ++d) dot += qf[d] * widen(kp[d]);
        const float x = mrow ? dot * a.scale + mrow[j] : dot * a.scale;
        pbuf[i * ps + j] = x;
        m[i] = x > m[i] ? x : m[i];
      }
    }
    float sum[kHeads];
    for (int64_t i = 0; i < n; ++i) {
      float* p = pbuf.data() + i * ps;
      F l = {};
      int64_t j = 0;
      for (; j + W <= S; j += W) {
        F e = exp_lanes<W>(load<W>(p + j) - m[i]);
        std::memcpy(p + j, &e, sizeof e);
        l += e;
      }
      if (j < S) {  // the last keys through a zero-padded vector
        F x = {};
        for (int64_t k = j; k < S; ++k) x[k - j] = p[k] - m[i];
        const F e = exp_lanes<W>(x);
        for (int64_t k = j; k < S; ++k) {
          p[k] = e[k - j];
          l[k - j] += e[k - j];
        }
      }
      sum[i] = lanes_sum<W>(l);
    }
    // Σ_j p_j · v_j for each head, each lane's sum in order of j, held in registers over all S keys
    // (a sum stored and loaded back each key waited on the store); each value row read once for the n heads
    const float* ps_[kHeads];
    float* os_[kHeads];
    for (int64_t i = 0; i < n; ++i) {
      ps_[i] = pbuf.data() + i * ps;
      os_[i] = abuf.data() + i * D;
    }
    switch (n) {
      case 4: weighted_sums<W, 4>(vb, a.vs[2], ps_, S, os_, Dv); break;
      case 3: weighted_sums<W, 3>(vb, a.vs[2], ps_, S, os_, Dv); break;
      case 2: weighted_sums<W, 2>(vb, a.vs[2], ps_, S, os_, Dv); break;
      default: weighted_sums<W, 1>(vb, a.vs[2], ps_, S, os_, Dv); break;
    }
    for (int64_t i = 0; i < n; ++i) {
      float* acc = abuf.data() + i * D;
      const float* p = ps_[i];
      for (int64_t d = Dv; d < D; ++d) {
        float s = 0.0f;
        for (int64_t jj = 0; jj < S; ++jj) s += p[jj] * widen(vb[jj * a.vs[2] + d]);
        acc[d] = s;
      }
      const float inv = 1.0f / sum[i];
      if constexpr (std::is_same_v<T, float>) {
        float* o = static_cast<float*>(a.out) + (u + i) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = acc[d] * inv;
      } else {
        at::BFloat16* o = static_cast<at::BFloat16*>(a.out) + (u + i) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = at::BFloat16(acc[d] * inv);  // round to nearest even
      }
    }
    u += n;
  }
}
#pragma GCC diagnostic pop

using UnitsFn = void (*)(const Args&, int64_t, int64_t);

#define ET_ATTENTION_UNITS(NAME, ATTR, W)                 \
  template <typename T>                                   \
  ATTR void NAME(const Args& a, int64_t u0, int64_t u1) { \
    units<W, T>(a, u0, u1);                               \
  }
#if defined(__x86_64__)
ET_ATTENTION_UNITS(units_avx512, ET_LANES16, 16)
ET_ATTENTION_UNITS(units_avx2, ET_LANES8, 8)
#endif
ET_ATTENTION_UNITS(units_plain, , 4)
#undef ET_ATTENTION_UNITS

template <typename T>
UnitsFn units_fn() {
#if defined(__x86_64__)
  static const UnitsFn fn = lanes_pick<UnitsFn>(&units_avx512<T>, &units_avx2<T>, &units_plain<T>);
  return fn;
#else
  return &units_plain<T>;
#endif
}

// The kernel's arguments for one call (its output pointer left to the caller), with the float32
// mask they point into kept in `mf`; false where the kernel does not apply (see attention.h).
bool make_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask, std::optional<double> scale, Args& a,
               at::Tensor& mf, bool causal = false) {
  const auto dt = q.scalar_type();
  if (!q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu() || (dt != at::kFloat && dt != at::kBFloat16) ||
      k.scalar_type() != dt || v.scalar_type() != dt || q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    return false;
  if (at::GradMode::is_enabled() &&
      (q.requires_grad() || k.requires_grad() || v.requires_grad() || (mask.defined() && mask.requires_grad())))
    return false;
  const int64_t B = q.size(0), Hq = q.size(1), Tq = q.size(2), D = q.size(3), Hkv = k.size(1), S = k.size(2);
  if ((causal ? mask.defined() || S < Tq : Tq > 4) || S < 1 || D < 1 || Hkv < 1 || Hq % Hkv != 0 || k.size(0) != B || v.size(0) != B ||
      v.size(1) != Hkv || v.size(2) != S || k.size(3) != D || v.size(3) != D || q.stride(3) != 1 || k.stride(3) != 1 || v.stride(3) != 1)
    return false;
  if (mask.defined() &&
      (mask.dim() != 4 || !at::isFloatingType(mask.scalar_type()) || !mask.device().is_cpu() || (mask.size(0) != 1 && mask.size(0) != B) ||
       mask.size(1) != 1 || (mask.size(2) != 1 && mask.size(2) != Tq) || mask.size(3) != S))
    return false;
  mf = mask.defined() ? mask.to(at::kFloat).contiguous() : at::Tensor();
  a = Args{B,
           Hq,
           Hkv,
           Tq,
           S,
           D,
           q.const_data_ptr(),
           k.const_data_ptr(),
           v.const_data_ptr(),
           {q.stride(0), q.stride(1), q.stride(2)},
           {k.stride(0), k.stride(1), k.stride(2)},
           {v.stride(0), v.stride(1), v.stride(2)},
           mf.defined() ? mf.const_data_ptr<float>() : nullptr,
           mf.defined() && mf.size(0) != 1,
           mf.defined() && mf.size(2) != 1,
           static_cast<float>(scale ? *scale : 1.0 / std::sqrt(static_cast<double>(D))),
           nullptr,
           causal};
  return true;
}

UnitsFn units_for(at::ScalarType dt) { return dt == at::kFloat ? units_fn<float>() : units_fn<uint16_t>(); }

// The units of one call into a new output
at::Tensor run_args(const at::Tensor& q, Args& a) {
  auto out = at::empty({a.B, a.Hq, a.Tq, a.D}, q.options().memory_format(at::MemoryFormat::Contiguous));
  a.out = out.data_ptr();
  const UnitsFn fn = units_for(q.scalar_type());
  // about 32K multiply-adds a task, so a short cache stays on one thread
  const int64_t grain = std::max<int64_t>(1, 32768 / (a.S * a.D));
  at::parallel_for(0, a.B * a.Hq * a.Tq, grain, [&](int64_t u0, int64_t u1) { fn(a, u0, u1); });
  return out;
}

}  // namespace

at::Tensor attention_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                          std::optional<double> scale) {
  Args a;
  at::Tensor mf;
  return make_args(q, k, v, mask, scale, a, mf) ? run_args(q, a) : at::Tensor();
}

at::Tensor attention_causal(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, std::optional<double> scale) {
  Args a;
  at::Tensor mf;
  return make_args(q, k, v, at::Tensor(), scale, a, mf, true) ? run_args(q, a) : at::Tensor();
}

namespace {

// The calls' units in one parallel loop (first[r]: call r's first unit among all; each call's
// out already set) into out.
void run_calls(const std::vector<Args>& args, const std::vector<int64_t>& first, int64_t work, at::ScalarType dt) {
  const size_t R = args.size();
  const UnitsFn fn = units_for(dt);
  const int64_t units = first[R], grain = std::max<int64_t>(1, 32768 * units / std::max<int64_t>(work, 1));
  at::parallel_for(0, units, grain, [&](int64_t u0, int64_t u1) {
    // the calls whose units fall in [u0, u1), each its own range of units
    size_t r = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), u0) - first.begin()) - 1;
    for (; r < R && first[r] < u1; ++r) fn(args[r], std::max(u0, first[r]) - first[r], std::min(u1, first[r + 1]) - first[r]);
  });
}

}  // namespace

at::Tensor attention_rows(const at::Tensor& q, const std::vector<at::Tensor>& k, const std::vector<at::Tensor>& v,
                          const std::vector<int64_t>& len, const std::vector<at::Tensor>& mask) {
  const int64_t R = q.dim() == 4 ? q.size(0) : 0;
  const auto dt = q.scalar_type();
  if (R == 0 || static_cast<int64_t>(k.size()) != R || static_cast<int64_t>(v.size()) != R || static_cast<int64_t>(len.size()) != R ||
      static_cast<int64_t>(mask.size()) != R || q.size(1) != 1 || !q.device().is_cpu() || (dt != at::kFloat && dt != at::kBFloat16) ||
      q.stride(3) != 1 || (at::GradMode::is_enabled() && q.requires_grad()))
    return {};
  const int64_t Hq = q.size(2), D = q.size(3);
  std::vector<Args> args(static_cast<size_t>(R));
  std::vector<int64_t> first(static_cast<size_t>(R + 1), 0);
  int64_t work = 0;
  for (int64_t r = 0; r < R; ++r) {
    const at::Tensor &kr = k[r], &vr = v[r], &mr = mask[r];
    const int64_t S = len[r];
    if (!kr.device().is_cpu() || !vr.device().is_cpu() || kr.scalar_type() != dt || vr.scalar_type() != dt || kr.dim() != 4 ||
        vr.dim() != 4 || kr.size(0) != 1 || !kr.sizes().equals(vr.sizes()) || kr.size(3) != D || S < 1 || kr.size(2) < S ||
        kr.size(1) < 1 || Hq % kr.size(1) != 0 || kr.stride(3) != 1 || vr.stride(3) != 1 ||
        (at::GradMode::is_enabled() && (kr.requires_grad() || vr.requires_grad())))
      return {};
    if (mr.defined() && (mr.scalar_type() != at::kFloat || !mr.is_contiguous() || mr.numel() != S || !mr.device().is_cpu())) return {};
    const int64_t es = q.element_size();
    args[r] = Args{1,
                   Hq,
                   kr.size(1),
                   1,
                   S,
                   D,
                   static_cast<const char*>(q.const_data_ptr()) + r * q.stride(0) * es,
                   kr.const_data_ptr(),
                   vr.const_data_ptr(),
                   {0, q.stride(2), q.stride(1)},
                   {0, kr.stride(1), kr.stride(2)},
                   {0, vr.stride(1), vr.stride(2)},
                   mr.defined() ? mr.const_data_ptr<float>() : nullptr,
                   false,
                   false,
                   static_cast<float>(1.0 / std::sqrt(static_cast<double>(D))),
                   nullptr,
                   false};
    first[r + 1] = first[r] + Hq;
    work += Hq * S * D;
  }
  auto out = at::empty({R, Hq, 1, D}, q.options().memory_format(at::MemoryFormat::Contiguous));
  for (int64_t r = 0; r < R; ++r) args[r].out = static_cast<char*>(out.data_ptr()) + r * Hq * D * static_cast<int64_t>(out.element_size());
  run_calls(args, first, work, dt);
  return out;
}

at::Tensor attention_rows(const std::vector<at::Tensor>& q, const std::vector<at::Tensor>& k, const std::vector<at::Tensor>& v,
                          const std::vector<at::Tensor>& mask) {
  const size_t R = q.size();
  if (R == 0 || k.size() != R || v.size() != R || mask.size() != R) return {};
  std::vector<Args> args(R);
  std::vector<at::Tensor> mfs(R);
  std::vector<int64_t> first(R + 1, 0);  // each call's first unit among all
  int64_t work = 0, B = 0;
  for (size_t r = 0; r < R; ++r) {
    if (!make_args(q[r], k[r], v[r], mask[r], std::nullopt, args[r], mfs[r])) return {};
    const Args& a = args[r];
    if (q[r].scalar_type() != q[0].scalar_type() || a.Hq != args[0].Hq || a.Tq != args[0].Tq || a.D != args[0].D) return {};
    first[r + 1] = first[r] + a.B * a.Hq * a.Tq;
    work += a.B * a.Hq * a.Tq * a.S * a.D;
    B += a.B;
  }
  const Args& a0 = args[0];
  auto out = at::empty({B, a0.Hq, a0.Tq, a0.D}, q[0].options().memory_format(at::MemoryFormat::Contiguous));
  for (size_t r = 0; r < R; ++r)
    args[r].out = static_cast<char*>(out.data_ptr()) + first[r] * a0.D * static_cast<int64_t>(out.element_size());
  run_calls(args, first, work, q[0].scalar_type());
  return out;
}

at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const std::optional<at::Tensor>& mask, std::optional<double> scale, bool gqa, bool causal) {
  if (gqa || k.size(1) == q.size(1)) {
    if (causal && !mask && q.size(2) == k.size(2)) {
      if (auto o = attention_causal(q, k, v, scale); o.defined()) return o;
    } else if (!causal) {
      if (auto o = attention_rows(q, k, v, mask ? *mask : at::Tensor(), scale); o.defined()) return o;
    }
  }
  return at::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale, gqa && k.size(1) != q.size(1));
}

}  // namespace et::nn
