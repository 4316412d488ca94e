#include "kernels/quant.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/autograd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <type_traits>
#include <vector>

#include "error.h"
#include "kernels/lanes.h"
#include "kernels/linear.h"
#include "kernels/linear_rows.h"
#if defined(ET_CUDA_QUANT)
#include "kernels/quant_cuda.h"
#endif

// Each product and sum is rounded on its own, as the formats' definitions compute them: no fused
// multiply-add may join them (GCC contracts a * b + c where the target has FMA).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace et::nn {

// Every loop over a kernel's block of weight rows (i < NB) or input rows (j < M) is unrolled, the
// first and last ones too: with one of them left a loop GCC 12 keeps the block's sums in memory or
// moves them between registers at every product (Int8Vnni's sixteen-row kernel had 60 register moves
// and 35 spills a step of 16 dpbusd, and ran at about half the products' peak).
#define ET_UNROLL _Pragma("GCC unroll 16")

namespace {

// QLoRA's NormalFloat4 values (bitsandbytes' NF4 quant_map, float32).
constexpr float kNF4[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};
constexpr int64_t kNF4Block = 64, kNestedBlock = 256, kGgufBlock = 32;

int64_t gguf_block_bytes(QuantFormat f) { return f == QuantFormat::Q8_0 ? 34 : 18; }

float half_to_float(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(c10::Half(h, c10::Half::from_bits()));
}
void float_to_half(float v, uint8_t* p) {
  uint16_t h = c10::Half(v).x;
  std::memcpy(p, &h, 2);
}

// bitsandbytes' dynamic signed 8-bit map (create_dynamic_map(signed=True)): for i = 0 … 6, the
// midpoints of linspace(0.1, 1, 2^i + 1) times ±10^(i − 6), then 0 and 1, sorted (float32).
at::Tensor dynamic_map() {
  std::vector<float> v;
  for (int i = 0; i < 7; ++i) {
    auto b = at::linspace(0.1, 1.0, (1 << i) + 1, at::kFloat);
    auto means = (b.narrow(0, 0, b.size(0) - 1) + b.narrow(0, 1, b.size(0) - 1)) / 2.0;
    auto pos = means * std::pow(10.0, i - 6), neg = means * -std::pow(10.0, i - 6);
    for (int64_t j = 0; j < means.size(0); ++j) {
      v.push_back(pos[j].item<float>());
      v.push_back(neg[j].item<float>());
    }
  }
  v.push_back(0.0f);
  v.push_back(1.0f);
  std::sort(v.begin(), v.end());
  return at::tensor(v, at::kFloat);
}

// The code of s in [−1, 1] on a sorted code of `n` values: how many of the midpoints between
// neighbouring values (each one float32 (a + b) / 2) lie below s (s on a midpoint takes the lower
// code), as bitsandbytes' quantizers decide (its PyTorch backend; its CUDA thresholds are the same
// float32 midpoints).
struct Midpoints {
  std::vector<float> m;
  explicit Midpoints(const float* code, int n) {
    for (int i = 0; i + 1 < n; ++i) m.push_back((code[i] + code[i + 1]) / 2.0f);
  }
  // (a lower bound without branches: the data decides no jump)
  uint8_t code(float s) const {
    const float* base = m.data();
    size_t n = m.size();
    while (n > 1) {
      const size_t half = n / 2;
      base = base[half] < s ? base + half : base;
      n -= half;
    }
    return static_cast<uint8_t>((base - m.data()) + (*base < s));
  }
};
const Midpoints& nf4_midpoints() {
  static const Midpoints m(kNF4, 16);
  return m;
}

// s = x · (1 / absmax) clamped to [−1, 1], the reciprocal of absmax clamped up to 1e-38 (an all-zero
// block gives 0), as bitsandbytes normalizes a block.
struct BlockScale {
  float inv;
  explicit BlockScale(float absmax) : inv(1.0f / std::max(absmax, 1e-38f)) {}
  float operator()(float x) const { return std::clamp(x * inv, -1.0f, 1.0f); }
};

// A weight's rows in float32, one at a time (no float copy of the whole weight): float32, bfloat16
// and float16 read as they are, other dtypes converted first.
struct FloatRows {
  at::Tensor w;
  int64_t K;
  explicit FloatRows(const at::Tensor& t) : w(t.detach().to(at::kCPU).contiguous()), K(t.size(1)) {
    const auto d = w.scalar_type();
    if (d != at::kFloat && d != at::kBFloat16 && d != at::kHalf) w = w.to(at::kFloat);
  }
  // row n into out; whether all its values are finite
  bool row(int64_t n, float* out) const {
    switch (w.scalar_type()) {
      case at::kBFloat16: {
        const auto* r = reinterpret_cast<const uint16_t*>(w.const_data_ptr()) + n * K;
        for (int64_t k = 0; k < K; ++k) {
          const uint32_t bits = static_cast<uint32_t>(r[k]) << 16;
          std::memcpy(out + k, &bits, 4);
        }
        break;
      }
      case at::kHalf: {
        const auto* r = w.const_data_ptr<at::Half>() + n * K;
        for (int64_t k = 0; k < K; ++k) out[k] = static_cast<float>(r[k]);
        break;
      }
      default: std::memcpy(out, w.const_data_ptr<float>() + n * K, static_cast<size_t>(K) * 4);
    }
    bool finite = true;
    for (int64_t k = 0; k < K; ++k) finite &= std::isfinite(out[k]);
    return finite;
  }
};

// ---- quantizing, a row at a time -------------------------------------------------------------------

// Each x rounded to float16 and back (round to nearest even, as c10::Half and F16C do), in place.
#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) void half_round_f16c(float* x, int64_t K) {
  int64_t k = 0;
  for (; k + 8 <= K; k += 8)
    _mm256_storeu_ps(x + k, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  for (; k < K; ++k) x[k] = _cvtsh_ss(_cvtss_sh(x[k], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#endif
void half_round(float* x, int64_t K) {
#if defined(__x86_64__)
  static const bool f16c = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  if (f16c) return half_round_f16c(x, K);
#endif
  for (int64_t k = 0; k < K; ++k) x[k] = static_cast<float>(c10::Half(x[k]));
}

// q = round-half-even(x · s), |x · s| ≤ 127.
#if defined(__x86_64__)
__attribute__((target("avx2"))) void round_to_int8_avx2(const float* x, int64_t K, float s, int8_t* q) {
  for (int64_t k = 0; k < K; ++k) q[k] = static_cast<int8_t>(static_cast<int>(std::nearbyint(x[k] * s)));
}
#endif
void round_to_int8(const float* x, int64_t K, float s, int8_t* q) {
#if defined(__x86_64__)
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
  }();
  if (avx2) return round_to_int8_avx2(x, K, s, q);
#endif
  for (int64_t k = 0; k < K; ++k) q[k] = static_cast<int8_t>(static_cast<int>(std::nearbyint(x[k] * s)));
}

// bitsandbytes' Int8Params: the row rounded to float16 first (in place, in x), its absmax, scale
// (1 / absmax) · 127, q = round-half-even(h · scale); an all-zero row gives zeros.
void quantize_int8_row(float* x, int64_t K, int8_t* q, float* scb) {
  half_round(x, K);
  float amax = 0;
  for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(x[k]));
  *scb = amax;
  const float s = amax > 0 ? (1.0f / amax) * 127.0f : 0.0f;
  round_to_int8(x, K, s, q);
}

void quantize_q8_0_row(const float* x, int64_t K, uint8_t* out) {
  for (int64_t b = 0; b < K / kGgufBlock; ++b, out += 34) {
    const float* v = x + b * kGgufBlock;
    float amax = 0;
    for (int j = 0; j < kGgufBlock; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    float_to_half(d, out);
    for (int j = 0; j < kGgufBlock; ++j) out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(v[j] * id)));
  }
}

void quantize_q4_0_row(const float* x, int64_t K, uint8_t* out) {
  for (int64_t b = 0; b < K / kGgufBlock; ++b, out += 18) {
    const float* v = x + b * kGgufBlock;
    float amax = std::fabs(v[0]), mx = v[0];  // the first of the largest magnitudes (gguf-py's argmax)
    for (int j = 1; j < kGgufBlock; ++j)
      if (std::fabs(v[j]) > amax) {
        amax = std::fabs(v[j]);
        mx = v[j];
      }
    const float d = mx / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
    float_to_half(d, out);
    auto code = [&](int j) {
      const float p = v[j] * id;  // two roundings (x · id, then + 8.5), as gguf-py computes it
      return static_cast<uint8_t>(std::min(15.0f, std::trunc(p + 8.5f)));
    };
    for (int j = 0; j < 16; ++j) out[2 + j] = static_cast<uint8_t>(code(j) | (code(j + 16) << 4));
  }
}

// NF4 codes of one row (blocks of 64) and its blocks' absmax (float32, before double quantization).
void quantize_nf4_row(const float* x, int64_t K, uint8_t* packed, float* absmax) {
  for (int64_t b = 0; b < K / kNF4Block; ++b) {
    const float* v = x + b * kNF4Block;
    float amax = 0;
    for (int j = 0; j < kNF4Block; ++j) amax = std::max(amax, std::fabs(v[j]));
    absmax[b] = amax;
    const BlockScale s(amax);
    const auto& m = nf4_midpoints();
    for (int j = 0; j < kNF4Block; j += 2)
      packed[(b * kNF4Block + j) / 2] = static_cast<uint8_t>((m.code(s(v[j])) << 4) | m.code(s(v[j + 1])));
  }
}

// ---- dequantizing a row to float32 ---------------------------------------------------------------

// The weight's tensors as the row functions read them (CPU, contiguous; small float state in float32).
struct View {
  QuantFormat f;
  int64_t K;
  const uint8_t* w;
  const float* scb = nullptr;
  const uint8_t* absmax = nullptr;
  const float *quant_map = nullptr, *nested_absmax = nullptr, *nested_map = nullptr;
  float offset = 0;
  // nf4 over bfloat16 or float16 rows: each weight rounded to that dtype before its product, as
  // bitsandbytes dequantizes a 4-bit weight to the compute dtype (here the activations')
  enum class Round : uint8_t { None, BF16, F16 } round = Round::None;
  bool interleaved = false;  // q4_0 and int8: see interleave_ (groups: the interleaved groups of 16 rows)
  int64_t groups = 0;
  at::Tensor keep[4];        // converted copies the pointers may point into
};

// ---- q4_0 interleaved for the decoding kernel ---------------------------------------------------
//
// A decoding step reads each weight once, so its speed is the bytes a thread streams from memory
// while it decodes them. q4_0 one row at a time (gguf's layout: a row's blocks of 18 bytes) costs
// per block of 32 weights a scalar scale, a broadcast and a nibble unpack, and on 2 Zen 4 threads
// read 26-28 GB/s where a plain stream read 31-35. On a CPU with AVX-512 VNNI each 16 rows are
// interleaved instead, as llama.cpp repacks Q4_0 for its x86 kernels (its q4_0_8x8): per block, the
// 16 rows' 16 code bytes in four 64-byte chunks (chunk m, lane i: row i's bytes 4m … 4m + 3), then
// their 16 float16 scales (18 bytes a row, as before: the same size, and rows past the last whole
// 16 stay as they are), one lane a row in every vector, one stream a thread (the scales kept apart,
// a second stream, read no faster than a row at a time): 36 GB/s on the same 2 threads. On AVX2
// (without VNNI) the same layout, each 64-byte chunk's halves eight rows a vector (q4_group_avx2):
// under the AVX2 cap a 1.1B step 31–34 → 21–23 ms on those threads, a 63-token prompt pass 956 →
// 502 ms.
constexpr int64_t kGroup = 16;

// ---- int8 interleaved for the integer kernel ------------------------------------------------------
//
// int8's many-row kernel on its rows as they lie sums each output in a vector of 16 partial sums
// over k and adds them up at the end: for the 1.1B's K = 2048 about a fifth of a product went to
// those sums and their scalar scaling, and the kernel ran at 80 % of dpbusd's peak on a Zen 4 core.
// On a CPU with AVX-512 VNNI each 16 rows are interleaved instead, k four at a time (chunk c, lane
// i: row i's bytes 4c … 4c + 3; K · 16 bytes a group, the same size, rows past the last whole 16 as
// they are): lane i of each sum is output i, an input row's four bytes are broadcast to all 16, and
// the scaling is done on 16 outputs at once (a sixteen-row product of a 5632 × 2048 weight on one
// core: 98 % of the peak, against 81 %).

// The weight's bytes in the kernels' layout ⇄ the files' layout (back: interleaved → the files'),
// in place (interleave_) or into a new tensor (interleaved_copy: w itself left as it is): a group
// of 16 rows spans the same bytes either way, so each is rearranged through a buffer of its own
// size. q4_0: per block the 16 rows' codes in four 64-byte chunks (chunk m, lane i: row i's bytes
// 4m … 4m + 3), then their 16 float16 scales; int8: per 4 columns c the 16 rows' bytes (lane i: row
// i's bytes 4c … 4c + 3).
void interleave_(QuantFormat f, uint8_t* w, int64_t N, int64_t K, bool back) {
  const bool int8 = f == QuantFormat::Int8;
  const int64_t nb = K / kGgufBlock, rb = int8 ? K : nb * 18;  // a row's bytes
  at::parallel_for(0, N / kGroup, 1, [&](int64_t g0, int64_t g1) {
    std::vector<uint8_t> buf(static_cast<size_t>(kGroup * rb));
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* grp = w + g * kGroup * rb;
      std::memcpy(buf.data(), grp, buf.size());
      // n bytes at `flat` in the files' layout ⇄ at `inter` in the kernels'
      auto move = [&](int64_t flat, int64_t inter, size_t n) {
        if (back) std::memcpy(grp + flat, buf.data() + inter, n);
        else std::memcpy(grp + inter, buf.data() + flat, n);
      };
      for (int64_t i = 0; i < kGroup; ++i) {
        if (int8) {
          for (int64_t c = 0; c < K / 4; ++c) move(i * K + 4 * c, c * 64 + 4 * i, 4);
          continue;
        }
        for (int64_t b = 0; b < nb; ++b) {
          const int64_t flat = i * rb + b * 18, inter = b * 288;
          move(flat, inter + 256 + 2 * i, 2);
          for (int64_t m = 0; m < 4; ++m) move(flat + 2 + 4 * m, inter + 64 * m + 4 * i, 4);
        }
      }
    }
  });
}

at::Tensor interleaved_copy(QuantFormat f, const at::Tensor& w, int64_t N, int64_t K, bool back) {
  auto out = w.contiguous().clone();
  interleave_(f, static_cast<uint8_t*>(out.data_ptr()), N, K, back);  // (int8's bytes are kChar)
  return out;
}

// Block b of q4_0 row n in gguf's 18 bytes: where it lies, or (interleaved) gathered into tmp.
inline const uint8_t* q4_block(const View& v, int64_t n, int64_t b, uint8_t* tmp) {
  const int64_t rb = v.K / kGgufBlock * 18;
  if (!v.interleaved || n >= v.groups * kGroup) return v.w + n * rb + b * 18;
  const uint8_t* grp = v.w + (n / kGroup) * kGroup * rb + b * 288;
  const int64_t i = n % kGroup;
  std::memcpy(tmp, grp + 256 + 2 * i, 2);
  for (int m = 0; m < 4; ++m) std::memcpy(tmp + 2 + 4 * m, grp + 64 * m + 4 * i, 4);
  return tmp;
}

// Row n of an int8 weight: where it lies, or (interleaved) gathered into tmp (K bytes).
inline const int8_t* int8_row(const View& v, int64_t n, int8_t* tmp) {
  const int64_t K = v.K;
  if (!v.interleaved || n >= v.groups * kGroup) return reinterpret_cast<const int8_t*>(v.w) + n * K;
  const uint8_t* grp = v.w + (n / kGroup) * kGroup * K + 4 * (n % kGroup);
  for (int64_t c = 0; c < K / 4; ++c) std::memcpy(tmp + 4 * c, grp + c * 64, 4);
  return tmp;
}

// A thread's buffer of K bytes for int8_row.
inline int8_t* int8_row_buffer(int64_t K) {
  thread_local std::vector<int8_t> buf;
  if (static_cast<int64_t>(buf.size()) < K) buf.resize(static_cast<size_t>(K));
  return buf.data();
}

View view_of(const QuantWeight& q) {
  View v;
  v.f = q.format;
  v.K = q.in;
  v.w = static_cast<const uint8_t*>(q.weight.const_data_ptr());
  v.interleaved = q.interleaved;
  v.groups = q.interleaved ? q.out / kGroup : 0;
  auto f32 = [&](const at::Tensor& t, int slot) {
    v.keep[slot] = t.scalar_type() == at::kFloat && t.is_contiguous() ? t : t.to(at::kFloat).contiguous();
    return v.keep[slot].const_data_ptr<float>();
  };
  if (q.format == QuantFormat::Int8) v.scb = f32(q.scb, 0);
  if (q.format == QuantFormat::NF4) {
    v.absmax = q.absmax.const_data_ptr<uint8_t>();
    v.quant_map = f32(q.quant_map, 0);
    v.nested_absmax = f32(q.nested_absmax, 1);
    v.nested_map = f32(q.nested_quant_map, 2);
    v.offset = q.offset.to(at::kFloat).item<float>();
  }
  return v;
}

// nf4 block g's absmax: nested_quant_map[absmax] · nested_absmax + offset, in float32.
inline float nf4_absmax(const View& v, int64_t g) { return v.nested_map[v.absmax[g]] * v.nested_absmax[g / kNestedBlock] + v.offset; }

// An nf4 block's 64 weights from its 32 bytes c and absmax a (the first of each pair in the high nibble).
inline void nf4_block(const View& v, const uint8_t* c, float a, float* out) {
  for (int j = 0; j < kNF4Block / 2; ++j) {
    out[2 * j] = v.quant_map[c[j] >> 4] * a;
    out[2 * j + 1] = v.quant_map[c[j] & 15] * a;
  }
}

// Row n of the weight in float32: exactly w = q · SCB / 127, q · d, (q − 8) · d, or quant_map[q] ·
// (nested_quant_map[absmax] · nested_absmax + offset), each product once in float32.
void dequant_row(const View& v, int64_t n, float* out) {
  const int64_t K = v.K;
  switch (v.f) {
    case QuantFormat::Int8: {
      const int8_t* q = int8_row(v, n, int8_row_buffer(K));
      const float s = v.scb[n];  // (q · SCB) · float32(1 / 127), as bitsandbytes' int8_vectorwise_dequant
      for (int64_t k = 0; k < K; ++k) out[k] = (static_cast<float>(q[k]) * s) * 7.874015718698502e-3f;
      return;
    }
    case QuantFormat::Q8_0: {
      const uint8_t* row = v.w + n * (K / kGgufBlock) * 34;
      for (int64_t b = 0; b < K / kGgufBlock; ++b) {
        const float d = half_to_float(row + b * 34);
        const auto* q = reinterpret_cast<const int8_t*>(row + b * 34 + 2);
        for (int j = 0; j < kGgufBlock; ++j) out[b * kGgufBlock + j] = static_cast<float>(q[j]) * d;
      }
      return;
    }
    case QuantFormat::Q4_0: {
      uint8_t tmp[18];
      for (int64_t b = 0; b < K / kGgufBlock; ++b) {
        const uint8_t* blk = q4_block(v, n, b, tmp);
        const float d = half_to_float(blk);
        const uint8_t* q = blk + 2;
        for (int j = 0; j < 16; ++j) {
          out[b * kGgufBlock + j] = static_cast<float>(static_cast<int>(q[j] & 15) - 8) * d;
          out[b * kGgufBlock + j + 16] = static_cast<float>(static_cast<int>(q[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case QuantFormat::NF4: {
      const uint8_t* q = v.w + n * K / 2;
      const int64_t b0 = n * K / kNF4Block;
      for (int64_t b = 0; b < K / kNF4Block; ++b) nf4_block(v, q + b * kNF4Block / 2, nf4_absmax(v, b0 + b), out + b * kNF4Block);
      return;
    }
  }
}

// Row n converted to dtype (float32 values rounded to nearest even, as .to(dtype) does).
template <typename T>
void dequant_row_as(const View& v, int64_t n, T* out, float* tmp) {
  dequant_row(v, n, tmp);
  for (int64_t k = 0; k < v.K; ++k) out[k] = static_cast<T>(tmp[k]);
}

#if defined(__x86_64__)
// ---- dequantizing a row on AVX-512: the same float32 products as dequant_row, 32 weights at a time

// The target includes AVX-512 BF16 for the bfloat16 stores (cvtne2ps_pbh: round to nearest even;
// denormals flushed, which no dequantized weight of a real checkpoint is); the float32
// instantiation uses none of its instructions, and the bfloat16 one runs only where the CPU has them.
#define ET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// Weights k … k + 31 of the row: a holds k … k + 15, b the next 16.
template <bool BF16>
ET_AVX512 inline void store32(void* out, int64_t k, __m512 a, __m512 b) {
  if constexpr (BF16) {
    _mm512_storeu_si512(static_cast<uint16_t*>(out) + k, (__m512i)_mm512_cvtne2ps_pbh(b, a));
  } else {
    auto* o = static_cast<float*>(out) + k;
    _mm512_storeu_ps(o, a);
    _mm512_storeu_ps(o + 16, b);
  }
}

// 16 int8 → 16 float32
ET_AVX512 inline __m512 int8x16(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <bool BF16>
ET_AVX512 void dequant_row_avx512(const View& v, int64_t n, void* out) {
  const int64_t K = v.K;
  switch (v.f) {
    case QuantFormat::Int8: {
      const int8_t* q = int8_row(v, n, int8_row_buffer(K));
      const float scb = v.scb[n], c = 7.874015718698502e-3f;
      const __m512 s = _mm512_set1_ps(scb), cv = _mm512_set1_ps(c);
      int64_t k = 0;
      for (; k + 32 <= K; k += 32)
        store32<BF16>(out, k, _mm512_mul_ps(_mm512_mul_ps(int8x16(q + k), s), cv),
                      _mm512_mul_ps(_mm512_mul_ps(int8x16(q + k + 16), s), cv));
      for (; k < K; ++k) {
        const float w = (static_cast<float>(q[k]) * scb) * c;
        if constexpr (BF16) static_cast<c10::BFloat16*>(out)[k] = c10::BFloat16(w);
        else static_cast<float*>(out)[k] = w;
      }
      return;
    }
    case QuantFormat::Q8_0: {
      const uint8_t* row = v.w + n * (K / kGgufBlock) * 34;
      for (int64_t b = 0; b < K / kGgufBlock; ++b) {
        const __m512 d = _mm512_set1_ps(half_to_float(row + b * 34));
        const auto* q = reinterpret_cast<const int8_t*>(row + b * 34 + 2);
        store32<BF16>(out, b * kGgufBlock, _mm512_mul_ps(int8x16(q), d), _mm512_mul_ps(int8x16(q + 16), d));
      }
      return;
    }
    case QuantFormat::Q4_0: {
      const __m512 codes = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
      const __m512i low = _mm512_set1_epi32(15);
      uint8_t tmp[18];
      for (int64_t b = 0; b < K / kGgufBlock; ++b) {
        const uint8_t* blk = q4_block(v, n, b, tmp);
        // (q − 8) · d for the 16 codes: the same product per weight as dequant_row
        const __m512 lut = _mm512_mul_ps(codes, _mm512_set1_ps(half_to_float(blk)));
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
        store32<BF16>(out, b * kGgufBlock, _mm512_permutexvar_ps(_mm512_and_si512(q, low), lut),
                      _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), lut));
      }
      return;
    }
    case QuantFormat::NF4: {
      const uint8_t* q = v.w + n * K / 2;
      const int64_t b0 = n * K / kNF4Block;
      const __m512 map = _mm512_loadu_ps(v.quant_map);
      const __m256i low = _mm256_set1_epi16(15);
      for (int64_t b = 0; b < K / kNF4Block; ++b) {
        const __m512 lut = _mm512_mul_ps(map, _mm512_set1_ps(nf4_absmax(v, b0 + b)));
        for (int h = 0; h < 2; ++h) {
          // 16 bytes → their 32 codes in element order (the first of each pair in the high nibble)
          const __m256i w16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + b * 32 + h * 16)));
          const __m256i pairs = _mm256_or_si256(_mm256_srli_epi16(w16, 4), _mm256_slli_epi16(_mm256_and_si256(w16, low), 8));
          const __m512i c0 = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(pairs)),
                        c1 = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(pairs, 1));
          store32<BF16>(out, b * kNF4Block + h * 32, _mm512_permutexvar_ps(c0, lut), _mm512_permutexvar_ps(c1, lut));
        }
      }
      return;
    }
  }
}
#endif

#if defined(__x86_64__)
void round_bf16_into(const float* y, uint16_t* o, int64_t n);

// ---- nf4 rows on AVX2 (a prompt's pass past 8 rows, a training step): the same float32 products as
// dequant_row, 8 weights at a time (a block's 16 values looked up by two permutations and a blend),
// rounded to bfloat16 as c10 rounds (round_bf16_into). Before, such rows went through the plain
// loops: the 1.1B's nf4 prompt pass of 38 positions under the AVX2 cap took 760 ms where
// bfloat16's takes 458.
#define ET_DQ256 __attribute__((target("avx2")))
template <bool BF16>
ET_DQ256 void dequant_nf4_avx2(const View& v, int64_t n, void* out, float* tmp) {
  const int64_t K = v.K, nb = K / kNF4Block, b0 = n * nb;
  const uint8_t* q = v.w + n * K / 2;
  const __m256 mlo = _mm256_loadu_ps(v.quant_map), mhi = _mm256_loadu_ps(v.quant_map + 8);
  const __m256i low = _mm256_set1_epi16(15), seven = _mm256_set1_epi32(7);
  for (int64_t b = 0; b < nb; ++b) {
    const float a = nf4_absmax(v, b0 + b);
    float* o = (BF16 ? tmp : static_cast<float*>(out)) + b * kNF4Block;
    const uint8_t* c = q + b * kNF4Block / 2;
    const __m256 lo = _mm256_mul_ps(mlo, _mm256_set1_ps(a)), hi = _mm256_mul_ps(mhi, _mm256_set1_ps(a));
    for (int h = 0; h < 2; ++h) {
      // 16 bytes → their 32 codes in element order (the first of each pair in the high nibble)
      const __m256i w16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + h * 16)));
      const __m256i pairs = _mm256_or_si256(_mm256_srli_epi16(w16, 4), _mm256_slli_epi16(_mm256_and_si256(w16, low), 8));
      const __m128i halves[2] = {_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1)};
      for (int e = 0; e < 4; ++e) {
        const __m128i bytes = e % 2 ? _mm_srli_si128(halves[e / 2], 8) : halves[e / 2];
        const __m256i idx = _mm256_cvtepu8_epi32(bytes);
        const __m256 val = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx),
                                            _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven)));
        _mm256_storeu_ps(o + h * 32 + e * 8, val);
      }
    }
  }
  if constexpr (BF16) round_bf16_into(tmp, static_cast<uint16_t*>(out), K);
}
#endif

// Row n into out as float32 or bfloat16 (tmp: K floats): on AVX-512 where the row kernels use it
// (bfloat16 where the CPU has AVX-512 BF16), else nf4 on AVX2, else dequant_row (the same values
// every way).
void dequant_row_into(const View& v, int64_t n, void* out, bool bf16, float* tmp) {
#if defined(__x86_64__)
  if (bf16 && rows_bf16_products()) return dequant_row_avx512<true>(v, n, out);
  if (!bf16 && rows_avx512()) return dequant_row_avx512<false>(v, n, out);
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (v.f == QuantFormat::NF4 && avx2) return bf16 ? dequant_nf4_avx2<true>(v, n, out, tmp) : dequant_nf4_avx2<false>(v, n, out, tmp);
#endif
  if (bf16) dequant_row_as(v, n, static_cast<c10::BFloat16*>(out), tmp);
  else dequant_row(v, n, static_cast<float*>(out));
}

// ---- on another device: the same arithmetic in ATen's ops ------------------------------------------

at::Tensor dequantize_aten(const QuantWeight& q, at::ScalarType dtype) {
  const int64_t N = q.out, K = q.in;
  at::Tensor w;
  auto half_scales = [&](const at::Tensor& blocks) {  // (N, nb, B) bytes → (N, nb, 1) float32 d
    return blocks.narrow(2, 0, 2).contiguous().view(at::kHalf).to(at::kFloat);
  };
  switch (q.format) {
    case QuantFormat::Int8: w = q.weight.to(at::kFloat) * q.scb.to(at::kFloat).unsqueeze(1) * 7.874015718698502e-3f; break;
    case QuantFormat::Q8_0: {
      auto blocks = q.weight.view({N, K / kGgufBlock, 34});
      w = (blocks.narrow(2, 2, 32).contiguous().view(at::kChar).to(at::kFloat) * half_scales(blocks)).view({N, K});
      break;
    }
    case QuantFormat::Q4_0: {
      auto blocks = q.weight.view({N, K / kGgufBlock, 18});
      auto qs = blocks.narrow(2, 2, 16);
      auto codes = at::cat({qs.bitwise_and(15), qs.bitwise_right_shift(4)}, 2).to(at::kFloat) - 8.0f;
      w = (codes * half_scales(blocks)).view({N, K});
      break;
    }
    case QuantFormat::NF4: {
      auto bytes = q.weight.view({-1});
      auto codes = at::stack({bytes.bitwise_right_shift(4), bytes.bitwise_and(15)}, 1).view({-1}).to(at::kLong);
      auto nb = N * K / kNF4Block;
      auto nested = q.nested_absmax.to(at::kFloat).repeat_interleave(kNestedBlock).narrow(0, 0, nb);
      auto a = q.nested_quant_map.to(at::kFloat).index_select(0, q.absmax.to(at::kLong)) * nested + q.offset.to(at::kFloat);
      w = (q.quant_map.to(at::kFloat).index_select(0, codes).view({nb, kNF4Block}) * a.unsqueeze(1)).view({N, K});
      break;
    }
  }
  return w.to(dtype);
}

// ---- products -------------------------------------------------------------------------------------
//
// y (R, N) float32 = x (R, K) Wᵀ over the quantized weight, each row as if alone. On AVX-512 and
// AVX2 the weight is decoded in registers, a step of one block at a time, into the float32 weights
// dequant_row gives (int8: the integers q, the row's SCB · (1/127) applied to the sum at the end),
// and multiplied there with the rows (widened to float32 once per call, exactly): no tile of
// dequantized weights stored and read again. Weight rows NB at a time and input rows M at a time,
// each weight step decoded once for the M rows; every output is one fixed chain of fused
// multiply-adds over k (one accumulator of 16 or 8 lanes, or one per weight vector of a step when a
// weight row goes alone, their lanes summed in a fixed order, then a scalar tail), whatever R, M or
// the rows around it, so a row's outputs are the ones it gets alone. nf4 decodes a byte's two codes into two vectors (its even and its odd
// elements): the rows are read in that order, permuted once per call; over bfloat16 rows its table is rounded to bfloat16
// (View::round; float16 rows: to float16). q4_0 and nf4 over bfloat16 rows on AVX-512 BF16 take bfloat16 products instead (Q4Bf16,
// Nf4Bf16). Without AVX2, tiles of the weight are dequantized and go through the row kernels (kernels/linear_rows.h).

// The rows as the fused kernels read them: float32, nf4's elements of each group of 2L (L the
// vector's lanes) reordered as its decoder produces them (the even elements, then the odd).
// (n elements, each group of 2L: its even elements, then its odd.)
template <typename T>
void even_then_odd(const T* x, T* xp, int64_t n, int L) {
  for (int64_t g = 0; g < n; g += 2 * L)
    for (int t = 0; t < L; ++t) {
      xp[g + t] = x[g + 2 * t];
      xp[g + L + t] = x[g + 2 * t + 1];
    }
}
void fused_rows_input(QuantFormat f, int L, const float* x, float* xp, int64_t R, int64_t K) {
  if (f != QuantFormat::NF4) {
    std::memcpy(xp, x, static_cast<size_t>(R * K) * 4);
    return;
  }
  even_then_odd(x, xp, R * K, L);
}

// The float32 sum s of row n's products, in y's terms: int8's rows scaled by SCB · (1/127).
inline float fused_finish(const View& v, int64_t n, float s) {
  return v.f == QuantFormat::Int8 ? (s * v.scb[n]) * 7.874015718698502e-3f : s;
}

using FusedKernel = void (*)(const View& v, const float* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1);

#if defined(__x86_64__)
#define ET_Q512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define ET_Q256 __attribute__((target("avx2,fma,f16c")))

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

// Finite float32 → the nearest bfloat16 (ties to even) as float32, as c10::BFloat16 rounds (the
// callers keep non-finite tables as they are: a NaN's rounding could carry into its sign).
ET_Q512 inline __m512 round_bf16(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i r =
      _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1)));
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}
ET_Q256 inline __m256 round_bf16(__m256 x) {
  const __m256i b = _mm256_castps_si256(x);
  const __m256i r =
      _mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1)));
  return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

// float32 → the nearest float16 (ties to even) as float32, as c10::Half rounds.
ET_Q512 inline __m512 round_f16(__m512 x) { return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
ET_Q256 inline __m256 round_f16(__m256 x) { return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }

// Decoders: S weights a step (V vectors of 16 or 8 lanes) of row n, step s.
struct Int8x512 {
  static constexpr int S = 64, V = 4;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + n * v.K + s * S; }
  ET_Q512 static void decode(const View& v, int64_t n, int64_t s, __m512* w) {
    const auto* q = reinterpret_cast<const int8_t*>(at(v, n, s));
    for (int u = 0; u < V; ++u)
      w[u] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * u))));
  }
};
struct Q8x512 {
  static constexpr int S = 32, V = 2;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + (n * (v.K / kGgufBlock) + s) * 34; }
  ET_Q512 static void decode(const View& v, int64_t n, int64_t s, __m512* w) {
    const uint8_t* p = at(v, n, s);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(load_u16(p)));
    for (int h = 0; h < 2; ++h)
      w[h] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 + 16 * h)))), d);
  }
};
struct Q4x512 {
  static constexpr int S = 32, V = 2;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + (n * (v.K / kGgufBlock) + s) * 18; }
  ET_Q512 static void decode(const View& v, int64_t n, int64_t s, __m512* w) {
    const uint8_t* p = at(v, n, s);
    // (q − 8) · d for the 16 codes, the product dequant_row takes; the permutation reads an index's low 4 bits
    const __m512 lut =
        _mm512_mul_ps(_mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_ps(_cvtsh_ss(load_u16(p))));
    const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2)));
    w[0] = _mm512_permutexvar_ps(q, lut);
    w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), lut);
  }
};
struct Nf4x512 {
  static constexpr int S = 64, V = 4;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + (n * (v.K / kNF4Block) + s) * 32; }
  ET_Q512 static void decode(const View& v, int64_t n, int64_t s, __m512* w) {
    const int64_t g = n * (v.K / kNF4Block) + s;
    const float a = nf4_absmax(v, g);
    __m512 lut = _mm512_mul_ps(_mm512_loadu_ps(v.quant_map), _mm512_set1_ps(a));
    if (v.round != View::Round::None && std::isfinite(a)) lut = v.round == View::Round::BF16 ? round_bf16(lut) : round_f16(lut);
    const uint8_t* p = v.w + g * 32;
    for (int h = 0; h < 2; ++h) {
      const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
      w[2 * h] = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), lut);  // elements 32h + 2t
      w[2 * h + 1] = _mm512_permutexvar_ps(q, lut);                      // elements 32h + 2t + 1
    }
  }
};

// Y[j·ldy + n + i] for i < NB, j < M.
template <typename D>
struct Fused512 {
  template <int NB, int M>
  struct At {
    // one accumulator per weight vector of a step where they fit in registers for any M ≤ 4 (one
    // weight row at a time: a chain of V fused multiply-adds a step would wait on their latency),
    // else one each; never a function of M, so that a row's chain does not depend on the rows beside it
    static constexpr int A = NB * 4 * D::V <= 16 ? D::V : 1;
    ET_Q512 static void run(const View& v, const float* X, float* Y, int64_t ldy, int64_t n) {
      const int64_t K = v.K, steps = K / D::S;
      __m512 acc[NB][M][A];
      ET_UNROLL for (int i = 0; i < NB; ++i)
        ET_UNROLL for (int j = 0; j < M; ++j)
          ET_UNROLL for (int c = 0; c < A; ++c) acc[i][j][c] = _mm512_setzero_ps();
      for (int64_t s = 0; s < steps; ++s)
        ET_UNROLL for (int i = 0; i < NB; ++i) {
          __m512 w[D::V];
          _mm_prefetch(reinterpret_cast<const char*>(D::at(v, n + i + NB, s)), _MM_HINT_T0);
          D::decode(v, n + i, s, w);
          ET_UNROLL for (int j = 0; j < M; ++j)
            ET_UNROLL for (int u = 0; u < D::V; ++u)
              acc[i][j][u % A] = _mm512_fmadd_ps(_mm512_loadu_ps(X + j * K + s * D::S + 16 * u), w[u], acc[i][j][u % A]);
        }
      ET_UNROLL for (int i = 0; i < NB; ++i)
        ET_UNROLL for (int j = 0; j < M; ++j) {
          ET_UNROLL for (int c = 1; c < A; ++c) acc[i][j][0] = _mm512_add_ps(acc[i][j][0], acc[i][j][c]);
          float t = _mm512_reduce_add_ps(acc[i][j][0]);
          if (v.f == QuantFormat::Int8) {  // the k a step leaves (the others' blocks divide K)
            const auto* q = reinterpret_cast<const int8_t*>(v.w) + (n + i) * K;
            for (int64_t k = steps * D::S; k < K; ++k) t += X
            [j * K + k] * static_cast<float>(q[k]);
          }
          Y[j * ldy + n + i] = fused_finish(v, n + i, t);
        }
    }
  };
};

ET_Q256 inline __m256 lut16(__m256i idx, __m256i sign, __m256 lo, __m256 hi) {
  // entries idx & 15 of the 16 in (lo, hi): the permutations read idx's low 3 bits, `sign` holds its bit 3 in the sign
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), _mm256_castsi256_ps(sign));
}
ET_Q256 inline __m256i bytes8(const uint8_t* p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))); }

struct Int8x256 {
  static constexpr int S = 32, V = 4;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + n * v.K + s * S; }
  ET_Q256 static void decode(const View& v, int64_t n, int64_t s, __m256* w) {
    const auto* q = reinterpret_cast<const int8_t*>(at(v, n, s));
    for (int u = 0; u < V; ++u)
      w[u] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * u))));
  }
};
struct Q8x256 {
  static constexpr int S = 32, V = 4;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + (n * (v.K / kGgufBlock) + s) * 34; }
  ET_Q256 static void decode(const View& v, int64_t n, int64_t s, __m256* w) {
    const uint8_t* p = at(v, n, s);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(p)));
    for (int h = 0; h < 4; ++h)
      w[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 + 8 * h)))), d);
  }
};
struct Q4x256 {
  static constexpr int S = 32, V = 4;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + (n * (v.K / kGgufBlock) + s) * 18; }
  ET_Q256 static void decode(const View& v, int64_t n, int64_t s, __m256* w) {
    const uint8_t* p = at(v, n, s);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(p)));
    const __m256 lo = _mm256_mul_ps(_mm256_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1), d),
                 hi = _mm256_mul_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), d);
    for (int h = 0; h < 2; ++h) {
      const __m256i q = bytes8(p + 2 + 8 * h);
      w[h] = lut16(q, _mm256_slli_epi32(q, 28), lo, hi);                             // elements 8h + t: low nibbles
      w[h + 2] = lut16(_mm256_srli_epi32(q, 4), _mm256_slli_epi32(q, 24), lo, hi);  // elements 16 + 8h + t: high
    }
  }
};
struct Nf4x256 {
  static constexpr int S = 64, V = 8;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + (n * (v.K / kNF4Block) + s) * 32; }
  ET_Q256 static void decode(const View& v, int64_t n, int64_t s, __m256* w) {
    const int64_t g = n * (v.K / kNF4Block) + s;
    const __m256 a = _mm256_set1_ps(nf4_absmax(v, g));
    __m256 lo = _mm256_mul_ps(_mm256_loadu_ps(v.quant_map), a), hi = _mm256_mul_ps(_mm256_loadu_ps(v.quant_map + 8), a);
    if (v.round == View::Round::F16) {  // (bfloat16 rows take Nf4Bf16x256)
      lo = round_f16(lo);
      hi = round_f16(hi);
    }
    const uint8_t* p = v.w + g * 32;
    for (int h = 0; h < 4; ++h) {
      const __m256i q = bytes8(p + 8 * h);
      w[2 * h] = lut16(_mm256_srli_epi32(q, 4), _mm256_slli_epi32(q, 24), lo, hi);  // elements 16h + 2t
      w[2 * h + 1] = lut16(q, _mm256_slli_epi32(q, 28), lo, hi);                     // elements 16h + 2t + 1
    }
  }
};

// nf4 over bfloat16 rows on AVX2: the block's table rounded to bfloat16 (finite tables; a NaN or
// an infinity keeps its upper half, still a NaN or an infinity) and split into the bfloat16s'
// low and high bytes, two byte lookups a 32 codes, the bytes joined into the float32s they are
// (fewer instructions than Nf4x256's float lookups and their rounded table). A half block
// (16 bytes) gives 4 vectors; vector u's lanes t hold element 2 · (16h + 4u + t mod 4) + (t < 4)
// of the block: nf4_bf16_avx2_input orders the rows so. Run one input row at a time with four
// sums an output (a chain of 8 multiply-adds a block would wait on their latency; the rows of a
// batch each decode the weight again): 1.1B decoding on 2 Zen 4 threads capped at AVX2 16.4–16.9
// tokens/s, against 12.7–13.1 for Nf4x256 rounding its table.
struct Nf4Bf16x256 {
  static constexpr int S = 64, V = 8;
  static const uint8_t* at(const View& v, int64_t n, int64_t s) { return v.w + (n * (v.K / kNF4Block) + s) * 32; }
  static int element(int u8, int t) { return 2 * (16 * (u8 / 4) + 4 * (u8 % 4) + t % 4) + (t < 4 ? 1 : 0); }
  ET_Q256 static void decode(const View& v, int64_t n, int64_t s, __m256* w) {
    const int64_t g = n * (v.K / kNF4Block) + s;
    const float am = nf4_absmax(v, g);
    const __m256 a = _mm256_set1_ps(am);
    __m256 lo = _mm256_mul_ps(_mm256_loadu_ps(v.quant_map), a), hi = _mm256_mul_ps(_mm256_loadu_ps(v.quant_map + 8), a);
    if (std::isfinite(am)) {
      lo = round_bf16(lo);
      hi = round_bf16(hi);
    }
    // bytes 2 and 3 of entries 0 … 15 → a low lane of the 16 bytes 2 and a high lane of the bytes 3
    const __m256i sl = _mm256_setr_epi8(2, 6, 10, 14, -1, -1, -1, -1, 3, 7, 11, 15, -1, -1, -1, -1, 2, 6, 10, 14, -1, -1, -1, -1, 3, 7, 11,
                                        15, -1, -1, -1, -1);
    const __m256i sh = _mm256_setr_epi8(-1, -1, -1, -1, 2, 6, 10, 14, -1, -1, -1, -1, 3, 7, 11, 15, -1, -1, -1, -1, 2, 6, 10, 14, -1, -1,
                                        -1, -1, 3, 7, 11, 15);
    const __m256i t = _mm256_permutevar8x32_epi32(
        _mm256_or_si256(_mm256_shuffle_epi8(_mm256_castps_si256(lo), sl), _mm256_shuffle_epi8(_mm256_castps_si256(hi), sh)),
        _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    const __m256i tlo = _mm256_permute2x128_si256(t, t, 0x00), thi = _mm256_permute2x128_si256(t, t, 0x11);
    const __m256i nib = _mm256_set1_epi8(15), z = _mm256_setzero_si256();
    const uint8_t* p = v.w + g * 32;
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
      // low lane: the low nibbles (odd elements), high lane: the high ones (even elements)
      const __m256i idx = _mm256_and_si256(_mm256_blend_epi32(q, _mm256_srli_epi16(q, 4), 0xF0), nib);
      const __m256i lb = _mm256_shuffle_epi8(tlo, idx), hb = _mm256_shuffle_epi8(thi, idx);
      const __m256i wl = _mm256_unpacklo_epi8(lb, hb), wh = _mm256_unpackhi_epi8(lb, hb);
      w[4 * h] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, wl));
      w[4 * h + 1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, wl));
      w[4 * h + 2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, wh));
      w[4 * h + 3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, wh));
    }
  }
};

// float32 rows in the order Nf4Bf16x256 decodes a block's elements.
void nf4_bf16_avx2_input(const float* x, float* xp, int64_t R, int64_t K) {
  for (int64_t b = 0; b < R * K; b += kNF4Block)
    for (int u = 0; u < 8; ++u)
      for (int t = 0; t < 8; ++t) xp[b + 8 * u + t] = x[b + Nf4Bf16x256::element(u, t)];
}

ET_Q256 inline float hsum256(__m256 a) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// nf4 over bfloat16 rows on AVX2, more than one row (a batch's step). Fused256<Nf4Bf16x256, 4>
// holds a block's eight decoded vectors beside one row's four sums, so it decoded each block again
// for every row: sixteen rows took 14.8 × one row's time (845 against 57 ms a step of the 1.1B
// under the AVX2 cap on 2 Zen 4 threads). Here 4 weight rows at a time are decoded a part of 8
// blocks at a time into a buffer the thread keeps (8 KiB), and the rows, three at a time, read the
// part for each of the 4 weight rows while it is in L1, their sums kept between parts. Each row's
// four sums take the same products in the same order as Fused256's, so a row's outputs are the
// ones it gets alone, bit for bit. One process alternating with Fused256 under the AVX2 cap: a
// sixteen-row step 818–835 → 388–396 ms, four rows 215 → 167 (each weight row decoded once for all
// the rows, then read three rows at a time from L1, without parts: sixteen rows 418 ms).
//
// Blocks [s0, s1) of one weight row, decoded in w (from block s0 on), for M rows of X: the sums
// start at zero (s0 = 0) or from acc (M · 32 floats), and end in acc, or (Y not null) in Y.
template <int M>
ET_Q256 void nf4_bf16_avx2_part(const View& v, const float* w, const float* X, int64_t s0, int64_t s1, float* acc, float* Y, int64_t ldy,
                                int64_t n) {
  constexpr int64_t S = Nf4Bf16x256::S;
  const int64_t K = v.K;
  __m256 a[M][4];
  ET_UNROLL for (int j = 0; j < M; ++j)
    ET_UNROLL for (int c = 0; c < 4; ++c) a[j][c] = s0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + (4 * j + c) * 8);
  for (int64_t s = s0; s < s1; ++s)
    ET_UNROLL for (int u = 0; u < Nf4Bf16x256::V; ++u) {
      const __m256 wv = _mm256_loadu_ps(w + (s - s0) * S + 8 * u);
      ET_UNROLL for (int j = 0; j < M; ++j) a[j][u % 4] = _mm256_fmadd_ps(_mm256_loadu_ps(X + j * K + s * S + 8 * u), wv, a[j][u % 4]);
    }
  if (Y) {
    ET_UNROLL for (int j = 0; j < M; ++j) {
      ET_UNROLL for (int c = 1; c < 4; ++c) a[j][0] = _mm256_add_ps(a[j][0], a[j][c]);
      Y[j * ldy + n] = fused_finish(v, n, hsum256(a[j][0]));
    }
  } else {
    ET_UNROLL for (int j = 0; j < M; ++j)
      ET_UNROLL for (int c = 0; c < 4; ++c) _mm256_storeu_ps(acc + (4 * j + c) * 8, a[j][c]);
  }
}

ET_Q256 void nf4_bf16_avx2_rows(const View& v, const float* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1) {
  constexpr int64_t S = Nf4Bf16x256::S;
  constexpr int64_t NW = 4, CB = 8;  // weight rows at a time, blocks a part
  const int64_t K = v.K, steps = K / S, G = (R + 2) / 3;
  thread_local std::vector<float> w, acc;
  w.resize(static_cast<size_t>(NW * CB * S));
  acc.resize(static_cast<size_t>(NW * G * 3 * 32));
  for (int64_t n = n0; n < n1; n += NW) {
    const int64_t ne = std::min(n1, n + NW);
    for (int64_t c = 0; c < steps; c += CB) {
      const int64_t c1 = std::min(steps, c + CB);
      for (int64_t i = n; i < ne; ++i)
        for (int64_t s = c; s < c1; ++s) {
          _mm_prefetch(reinterpret_cast<const char*>(Nf4Bf16x256::at(v, i + NW, s)), _MM_HINT_T1);
          __m256 d[Nf4Bf16x256::V];
          Nf4Bf16x256::decode(v, i, s, d);
          ET_UNROLL for (int u = 0; u < Nf4Bf16x256::V; ++u) _mm256_storeu_ps(w.data() + ((i - n) * CB + (s - c)) * S + 8 * u, d[u]);
        }
      for (int64_t g = 0; g < G; ++g) {
        const int64_t r = 3 * g, m = std::min<int64_t>(3, R - r);
        for (int64_t i = n; i < ne; ++i) {
          const float* wi = w.data() + (i - n) * CB * S;
          float* ai = acc.data() + ((i - n) * G + g) * 96;
          float* y = c1 == steps ? Y + r * ldy : nullptr;
          if (m == 3) nf4_bf16_avx2_part<3>(v, wi, X + r * K, c, c1, ai, y, ldy, i);
          else if (m == 2) nf4_bf16_avx2_part<2>(v, wi, X + r * K, c, c1, ai, y, ldy, i);
          else nf4_bf16_avx2_part<1>(v, wi, X + r * K, c, c1, ai, y, ldy, i);
        }
      }
    }
  }
}

// (A accumulators an output, its weight vectors' products taken by turns, added at the end: A > 1
// only for a kernel run one input row at a time, so that a row's chain never depends on M.)
template <typename D, int A = 1>
struct Fused256 {
  template <int NB, int M>
  struct At {
    static_assert(A == 1 || M == 1);
    ET_Q256 static void run(const View& v, const float* X, float* Y, int64_t ldy, int64_t n) {
      const int64_t K = v.K, steps = K / D::S;
      __m256 acc[NB][M][A];
      ET_UNROLL for (int i = 0; i < NB; ++i)
        ET_UNROLL for (int j = 0; j < M; ++j)
          ET_UNROLL for (int c = 0; c < A; ++c) acc[i][j][c] = _mm256_setzero_ps();
      for (int64_t s = 0; s < steps; ++s)
        ET_UNROLL for (int i = 0; i < NB; ++i) {
          __m256 w[D::V];
          // the same step of the weight rows NB ahead, towards L2: one-row decoding through a 7B's
          // MLP shapes under the AVX2 profile (Zen 4, 2 threads) 0.71–0.75 × the time of fetching
          // 768 bytes ahead in the row into L1 (int8, q8_0, q4_0; nf4 and sixteen-row steps the same)
          _mm_prefetch(reinterpret_cast<const char*>(D::at(v, n + i + NB, s)), _MM_HINT_T1);
          D::decode(v, n + i, s, w);
          ET_UNROLL for (int j = 0; j < M; ++j)
            ET_UNROLL for (int u = 0; u < D::V; ++u)
              acc[i][j][u % A] = _mm256_fmadd_ps(_mm256_loadu_ps(X + j * K + s * D::S + 8 * u), w[u], acc[i][j][u % A]);
        }
      ET_UNROLL for (int i = 0; i < NB; ++i)
        ET_UNROLL for (int j = 0; j < M; ++j) {
          ET_UNROLL for (int c = 1; c < A; ++c) acc[i][j][0] = _mm256_add_ps(acc[i][j][0], acc[i][j][c]);
          float t = hsum256(acc[i][j][0]);
          if (v.f == QuantFormat::Int8) {
            const auto* q = reinterpret_cast<const int8_t*>(v.w) + (n + i) * K;
            for (int64_t k = steps * D::S; k < K; ++k) t += X
            [j * K + k] * static_cast<float>(q[k]);
          }
          Y[j * ldy + n + i] = fused_finish(v, n + i, t);
        }
    }
  };
};

// q4_0 over bfloat16 rows on AVX-512 BF16: each code decoded to the exact integer q − 8 in bfloat16
// (a 32-entry word permutation), the products with the rows' bfloat16 exact in float32
// (dpbf16), each block's partial sums scaled by its d into the float32 sums. Two blocks a step:
// their 32 bytes as words, the low nibbles (elements 0 … 15 of each block) then the high ones
// (16 … 31), so a step's 64 elements of the row are read as block one's first 16, block two's
// first 16, block one's last 16, block two's last 16 (the rows permuted so once per call), and the
// 16 sums of a step take block one's d in lanes 0 … 7 and block two's in 8 … 15. An odd last block
// goes alone, in its elements' order.
#define ET_Q512BF __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#define ET_Q512BF_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c"), always_inline))

// bfloat16 of −8 … 7, exact (the float32 bits' upper halves), at the nibbles' indices.
alignas(64) constexpr int16_t kQ4Bf16[32] = {-16128, -16160, -16192, -16224, -16256, -16320, -16384, -16512,
                                             0,      16256,  16384,  16448,  16512,  16544,  16576,  16608};

// bfloat16 rows in the order Q4Bf16 reads them.
void q4_bf16_rows_input(const uint16_t* x, uint16_t* xp, int64_t R, int64_t K) {
  const int64_t pairs = K / 64;
  for (int64_t r = 0; r < R; ++r) {
    const uint16_t* a = x + r * K;
    uint16_t* o = xp + r * K;
    for (int64_t c = 0; c < pairs; ++c)
      for (int h = 0; h < 4; ++h) {  // out quarter h takes in quarter (0, 2, 1, 3)[h]
        const int src = (h == 1 ? 2 : h == 2 ? 1 : h);
        std::memcpy(o + c * 64 + h * 16, a + c * 64 + src * 16, 32);
      }
    std::memcpy(o + pairs * 64, a + pairs * 64, static_cast<size_t>(K - pairs * 64) * 2);
  }
}

template <int NB, int M>
struct Q4Bf16 {
  ET_Q512BF static void run(const View& v, const uint16_t* X, float* Y, int64_t ldy, int64_t n) {
    const int64_t K = v.K, nb = K / kGgufBlock, rb = nb * 18;
    const __m512i lut = _mm512_loadu_si512(kQ4Bf16);
    const __m512i low = _mm512_set1_epi16(15);
    const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 acc[NB][M];
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2)
      ET_UNROLL for (int i = 0; i < NB; ++i) {
        const uint8_t* p = v.w + (n + i) * rb + b * 18;
        _mm_prefetch(reinterpret_cast<const char*>(p) + NB * rb, _MM_HINT_T0);
        const __m512i q =
            _mm512_cvtepu8_epi16(_mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2))),
                                                         _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 20)), 1));
        const __m512bh wl = (__m512bh)_mm512_permutexvar_epi16(_mm512_and_si512(q, low), lut),
                       wh = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(q, 4), lut);
        const __m512 d = _mm512_permutexvar_ps(
            halves, _mm512_castps128_ps512(
                        _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(load_u16(p) | (static_cast<uint32_t>(load_u16(p + 18)) << 16))))));
        ET_UNROLL for (int j = 0; j < M; ++j) {
          const uint16_t* x = X
          +j* K + b* kGgufBlock;
          const __m512 s = _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)_mm512_loadu_si512(x), wl),
                                            (__m512bh)_mm512_loadu_si512(x + 32), wh);
          acc[i][j] = _mm512_fmadd_ps(s, d, acc[i][j]);
        }
      }
    if (b < nb)
      ET_UNROLL for (int i = 0; i < NB; ++i) {
        const uint8_t* p = v.w + (n + i) * rb + b * 18;
        const __m256i q = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2)));
        const __m512i idx =
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(q, _mm256_set1_epi16(15))), _mm256_srli_epi16(q, 4), 1);
        const __m512bh w = (__m512bh)_mm512_permutexvar_epi16(idx, lut);
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(load_u16(p)));
        ET_UNROLL for (int j = 0; j < M; ++j)
          acc[i][j] = _mm512_fmadd_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)_mm512_loadu_si512(X + j * K + b * kGgufBlock), w), d,
                                      acc[i][j]);
      }
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) Y[j * ldy + n + i] = _mm512_reduce_add_ps(acc[i][j]);
  }
};

// nf4 over bfloat16 rows on AVX-512 BF16: a block's 16 values quant_map · absmax rounded to
// bfloat16 (as dequant_row_avx512 stores them: the weight bitsandbytes' dequantize_4bit gives in a
// bfloat16 compute dtype) and read by a word permutation, the products with the rows' bfloat16
// exact in float32 (dpbf16). A block's 32 bytes as words: their high nibbles are its even elements,
// the low ones its odd; the rows permuted so once per call (each block's even elements, then its
// odd: even_then_odd with L = 32), each into float32 sums of its own, the even blocks' and the odd
// blocks' apart, the four added at the end in one order.

// Block absmax tables of the nested groups a thread read last, direct-mapped by group: the rows of
// a nested group (8 rows of 2048, 4 of 4096) share one; a row spans at most 4 groups up to K =
// 49152, and the weight rows nf4_bf16_parts takes in turn at most 7 (more only rebuild). The tables
// are a function of the view and the group alone, so the outputs are the same bit for bit whichever
// row built them. Built once a row before, they were 48 vector instructions a row (1.5 a block at K
// = 2048): in one process alternating the two, the 1.1B's nf4 decoding on 2 Zen 4 threads 37.4 →
// 39.7 tokens/s (median of 6; pairs 0.98–1.16).
struct Nf4Tables {
  static constexpr int kSlots = 8;
  alignas(64) float amax[kSlots][256];
  int64_t group[kSlots] = {-1, -1, -1, -1, -1, -1, -1, -1};
  ET_Q512BF const float* of(const View& v, int64_t h) {
    float* t = amax[h % kSlots];
    if (group[h % kSlots] == h) return t;
    group[h % kSlots] = h;
    const __m512 na = _mm512_set1_ps(v.nested_absmax[h]), off = _mm512_set1_ps(v.offset);
    for (int c = 0; c < 256; c += 16) _mm512_store_ps(t + c, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(v.nested_map + c), na), off));
    return t;
  }
};

template <int NB, int M>
struct Nf4Bf16 {
  static_assert(NB == 1, "one weight row at a time (its nested groups' tables below)");
  // Sums per input row: [block parity][even / odd elements], 16 lanes each.
  static constexpr int kSums = 4 * 16;
  ET_Q512BF static void run(const View& v, const uint16_t* rows, float* Y, int64_t ldy, int64_t n, Nf4Tables& tables) {
    part(v, rows, n, tables, 0, v.K / kNF4Block, nullptr, Y, ldy);
  }
  // Blocks [b0, b1) of weight row n for the M rows: the sums start at zero (b0 = 0) or from acc (M ·
  // kSums floats), and end in acc, or (Y not null) are added up into Y[j · ldy + n]. A row's chains
  // are the same whether its blocks come in one part or several.
  ET_Q512BF static void part(const View& v, const uint16_t* rows, int64_t n, Nf4Tables& tables, int64_t b0, int64_t b1, float* acc,
                             float* Y, int64_t ldy) {
    const int64_t K = v.K, nb = K / kNF4Block, rb = K / 2, g0 = n * nb;
    const __m512 map = _mm512_loadu_ps(v.quant_map);
    // [block parity][row]: each block's even and odd elements apart
    __m512 even[2][M], odd[2][M];
    ET_UNROLL for (int h = 0; h < 2; ++h)
      ET_UNROLL for (int j = 0; j < M; ++j) {
        even[h][j] = b0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + j * kSums + (2 * h) * 16);
        odd[h][j] = b0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + j * kSums + (2 * h + 1) * 16);
      }
    // The row's blocks a nested group at a time: its 256 blocks share nested_absmax, so a block's
    // absmax by its code, amax[c] = nested_map[c] · nested_absmax[group] + offset (nf4_absmax's
    // product and sum, in vectors), is made once a group (Nf4Tables) and read with one load; and the even
    // blocks and the odd ones each into sums of their own, twice the chains in flight. Before, a
    // block cost 25 instructions (its absmax from three loads, a division by 256 of a signed index),
    // one chain: in one process alternating the two, a 4096 → 11008 layer (7B-shaped) 0.98 → 0.80 ms
    // for one row (24 → 29 GB/s on 2 Zen 4 threads), 1.86 → 1.70 for four, the 1.1B's 2048 → 5632
    // 0.34 → 0.28 ms; the table alone, the same sums, 1.02 → 0.89 and 0.35 → 0.31.
    const float* amax = nullptr;
    auto block = [&](int64_t b, auto parity) ET_Q512BF_INLINE {
      constexpr int h = decltype(parity)::value;
      const uint8_t* p = v.w + (g0 + b) * 32;
      _mm_prefetch(reinterpret_cast<const char*>(p) + rb, _MM_HINT_T0);
      // the block's 16 values in bfloat16, twice: a word's low 5 bits then pick its low nibble's
      // value without masking (1.1B nf4 decoding on 2 Zen 4 threads: 28.0 → 26.9 ms a step)
      const __m512 t = _mm512_mul_ps(map, _mm512_set1_ps(amax[v.absmax[g0 + b]]));
      const __m512i lut = (__m512i)_mm512_cvtne2ps_pbh(t, t);
      const __m512i q = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      const __m512bh wo = (__m512bh)_mm512_permutexvar_epi16(q, lut),
                     we = (__m512bh)_mm512_permutexvar_epi16(_mm512_srli_epi16(q, 4), lut);
      ET_UNROLL for (int j = 0; j < M; ++j) {
        const uint16_t* x = rows + j * K + b * kNF4Block;
        even[h][j] = _mm512_dpbf16_ps(even[h][j], (__m512bh)_mm512_loadu_si512(x), we);
        odd[h][j] = _mm512_dpbf16_ps(odd[h][j], (__m512bh)_mm512_loadu_si512(x + 32), wo);
      }
    };
    using Even = std::integral_constant<int, 0>;
    using Odd = std::integral_constant<int, 1>;
    for (int64_t b = b0; b < b1;) {
      const int64_t h = (g0 + b) / kNestedBlock, end = std::min(b1, (h + 1) * kNestedBlock - g0);
      amax = tables.of(v, h);
      if (b < end && (b & 1)) block(b++, Odd{});
      for (; b + 2 <= end; b += 2) {
        block(b, Even{});
        block(b + 1, Odd{});
      }
      if (b < end) block(b++, Even{});
    }
    if (Y) {
      ET_UNROLL for (int j = 0; j < M; ++j)
        Y[j * ldy + n] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(even[0][j], odd[0][j]), _mm512_add_ps(even[1][j], odd[1][j])));
    } else {
      ET_UNROLL for (int h = 0; h < 2; ++h)
        ET_UNROLL for (int j = 0; j < M; ++j) {
          _mm512_storeu_ps(acc + j * kSums + (2 * h) * 16, even[h][j]);
          _mm512_storeu_ps(acc + j * kSums + (2 * h + 1) * 16, odd[h][j]);
        }
    }
  }
};

// nf4 over bfloat16 rows, more than one group of 4 input rows (a batch's decoding step). Taken
// weight row by weight row, each row's blocks once for each group of 4 input rows, the sixteen rows
// of a step (64 KiB at K = 2048) came from L2 for every weight row. Now NW weight rows at a time
// (as many as span at most 7 nested groups, up to 32), and for each group of rows K in parts of 32
// blocks (the group's 16 KiB of rows), each part taken by the NW weight rows in turn while it is in
// L1, the sums waiting in acc between parts: the same chains of sums, so the same outputs bit for
// bit. One process alternating the two on 2 Zen 4 threads: a sixteen-row step of the 1.1B in nf4
// 181–190 → 158–163 ms (medians of 5), eight rows 104 → 92; three layers of the 7B's shape 123 →
// 117 ms (their bfloat16 LM head included). Parts of 16 blocks were slower than whole rows, and
// with four tables the 1.1B's 2048 → 5632 layers (88 blocks a row) rebuilt them part after part.
ET_Q512BF void nf4_bf16_parts(const View& v, const uint16_t* rows, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1,
                              Nf4Tables& tables) {
  constexpr int64_t kPart = 32;
  const int64_t K = v.K, nb = K / kNF4Block;
  const int64_t NW = std::clamp<int64_t>((Nf4Tables::kSlots - 1) * kNestedBlock / nb, 2, 32);
  thread_local std::vector<float> acc;
  acc.resize(static_cast<size_t>(NW * 4 * Nf4Bf16<1, 4>::kSums));
  auto group = [&](auto m, int64_t r, int64_t n, int64_t ne) {
    constexpr int M = decltype(m)::value;
    for (int64_t c = 0; c < nb; c += kPart) {
      const int64_t c1 = std::min(nb, c + kPart);
      for (int64_t i = n; i < ne; ++i)
        Nf4Bf16<1, M>::part(v, rows + r * K, i, tables, c, c1, acc.data() + (i - n) * 4 * Nf4Bf16<1, 4>::kSums,
                            c1 == nb ? Y + r * ldy : nullptr, ldy);
    }
  };
  for (int64_t n = n0; n < n1; n += NW) {
    const int64_t ne = std::min(n1, n + NW);
    int64_t r = 0;
    for (; r + 4 <= R; r += 4) group(std::integral_constant<int, 4>{}, r, n, ne);
    for (; r + 2 <= R; r += 2) group(std::integral_constant<int, 2>{}, r, n, ne);
    for (; r < R; ++r) group(std::integral_constant<int, 1>{}, r, n, ne);
  }
}

// Weight rows NB at a time (the last ones one by one), input rows 4, 2 and 1 at a time (M ≤ MM).
template <template <int, int> class Blk, int NB, int MM, typename TX = float, typename... Ctx>
void fused_blocked(const View& v, const TX* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, Ctx&... ctx) {
  const int64_t K = v.K;
  auto rows = [&](auto nb, int64_t n) {
    constexpr int B = decltype(nb)::value;
    int64_t r = 0;
    if constexpr (MM >= 4)
      for (; r + 4 <= R; r += 4) Blk<B, 4>::run(v, X + r * K, Y + r * ldy, ldy, n, ctx...);
    if constexpr (MM >= 2)
      for (; r + 2 <= R; r += 2) Blk<B, 2>::run(v, X + r * K, Y + r * ldy, ldy, n, ctx...);
    for (; r < R; ++r) Blk<B, 1>::run(v, X + r * K, Y + r * ldy, ldy, n, ctx...);
  };
  int64_t n = n0;
  for (; n + NB <= n1; n += NB) rows(std::integral_constant<int, NB>{}, n);
  for (; n < n1; ++n) rows(std::integral_constant<int, 1>{}, n);
}

template <typename D>
using F512 = Fused512<D>;
template <typename D>
using F256 = Fused256<D>;

// The fused kernel for this CPU and format, and its vector's lanes; none without AVX2.
FusedKernel fused_kernel(QuantFormat f, int* lanes) {
  static const int isa = [] {
    __builtin_cpu_init();
    if (rows_avx512()) return 512;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 256 : 0;
  }();
  *lanes = isa / 32;
  if (isa == 512) switch (f) {
      case QuantFormat::Int8: return &fused_blocked<F512<Int8x512>::At, 4, 4>;
      case QuantFormat::Q8_0: return &fused_blocked<F512<Q8x512>::At, 4, 4>;
      case QuantFormat::Q4_0: return &fused_blocked<F512<Q4x512>::At, 4, 4>;
      case QuantFormat::NF4: return &fused_blocked<F512<Nf4x512>::At, 1, 4>;  // (one weight row at a time: 6 % more tokens/s on a Zen 4)
    }
  if (isa == 256) switch (f) {
      case QuantFormat::Int8: return &fused_blocked<F256<Int8x256>::At, 2, 4>;
      case QuantFormat::Q8_0: return &fused_blocked<F256<Q8x256>::At, 2, 4>;
      case QuantFormat::Q4_0: return &fused_blocked<F256<Q4x256>::At, 2, 4>;
      case QuantFormat::NF4: return &fused_blocked<F256<Nf4x256>::At, 2, 2>;  // (four rows spill its 8 weight vectors)
    }
  return nullptr;
}
#else
FusedKernel fused_kernel(QuantFormat, int*) { return nullptr; }
#endif

// Without AVX2: the weight dequantized a tile of rows at a time into a float32 buffer, then the row
// kernels over the tile (a tile's values and the kernels' chains do not depend on R).
void rows_quant_tiles(const View& v, const float* X, float* Y, int64_t R, int64_t N) {
  const int64_t K = v.K;
  const int64_t tile = std::clamp<int64_t>((64 << 10) / (K * 4) / 4 * 4, 4, 64);
  at::parallel_for(0, (N + tile - 1) / tile, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> buf(static_cast<size_t>(tile * K));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * tile, nt = std::min(tile, N - n0);
      for (int64_t i = 0; i < nt; ++i) dequant_row(v, n0 + i, buf.data() + i * K);
      if (v.round == View::Round::BF16)
        for (int64_t e = 0; e < nt * K; ++e) buf[e] = static_cast<float>(c10::BFloat16(buf[e]));
      if (v.round == View::Round::F16) half_round(buf.data(), nt * K);
      rows_dot(false, buf.data(), X, Y + n0, R, N, nt, K);
    }
  });
}

// ---- Inference: the input quantized as each format's library quantizes it ----------------------------
//
// Without autograd, a layer's input is quantized before its products, as the library each format
// comes from does when it runs the layer for inference:
//   int8: bitsandbytes' LLM.int8 (MatMul8bitLt with transformers' default llm_int8_threshold 6.0):
//     the row in float16; elements with |x| ≥ 6 are outliers, multiplied in float with the
//     dequantized weight; the others are quantized by the absmax rs of the rest of the row,
//     q = round-half-even(x · (127 / rs)), and y = Σ q·q_w · (rs · SCB) / 127² + Σ_outliers x · w.
//     (bitsandbytes takes the union of the outlier columns over all rows of a product; emotorch takes
//     each row's own, which is what bitsandbytes does for one row, so that a row's result never
//     depends on the rows beside it.)
//   q8_0 / q4_0: llama.cpp's CPU products, which quantize the input to Q8_0 (blocks of 32,
//     d = amax / 127 rounded to float16, q = round-half-away(x / d)) and sum integer products.
// So y = x'·Wᵀ with x' the input as quantized (x' = q · d; int8: q · rs / 127, or the outlier
// itself). nf4 keeps its input (bitsandbytes' 4-bit layers dequantize the weight for the product,
// to their compute dtype: here the input's, so over bfloat16 rows each weight is rounded to
// bfloat16 first, as dequantize_weight(bfloat16) gives it to a prompt pass).
// With autograd (training) no format quantizes the input: the gradient flows through the
// dequantized weight, as bitsandbytes' CPU layers train (MatMul8bitFp).

constexpr float kInt8Threshold = 6.0f;

bool quantizes_input(QuantFormat f) { return f != QuantFormat::NF4; }

// A product's rows quantized: q (R × K), the scales (q8_0 / q4_0: R × K / 32 block d, float16-exact;
// int8: R row absmax), and int8's outliers, per row (k, x).
struct ActRows {
  int64_t R = 0, K = 0, nb = 0;
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<std::vector<std::pair<int64_t, float>>> outliers;
};

#if defined(__x86_64__)
// AVX2 with FMA and F16C (the integer kernels and the input's rounding where AVX-512 (VNNI) is
// missing or capped off).
bool avx2_integer_products() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return ok;
}
#endif

// A row's q8_0 blocks of the input (nb blocks of 32): q and each block's d, float16-exact, as
// quantize_q8_0_row makes them; a block with a NaN or an infinity gets d NaN and q 0, so that its
// products are NaN, as the float product's would be.
void act_q8_blocks_plain(const float* x, int64_t nb, int8_t* q, float* d) {
  uint8_t blk[34];
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kGgufBlock;
    if (std::all_of(xb, xb + kGgufBlock, [](float e) { return std::isfinite(e); })) {
      quantize_q8_0_row(xb, kGgufBlock, blk);
      d[b] = half_to_float(blk);
      std::memcpy(q + b * kGgufBlock, blk + 2, kGgufBlock);
    } else {
      d[b] = std::numeric_limits<float>::quiet_NaN();
      std::memset(q + b * kGgufBlock, 0, kGgufBlock);
    }
  }
}

#if defined(__x86_64__)
// The same in 512-bit vectors: d = amax / 127 and x · (1 / d) as the plain code computes them, and
// its round half away from zero exactly (floor(|p|), plus 1 where |p| − floor(|p|) ≥ ½, p's sign).
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void act_q8_blocks_avx512(const float* x, int64_t nb, int8_t* q, float* d) {
  const __m512 zero = _mm512_setzero_ps(), half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  for (int64_t b = 0; b < nb; ++b) {
    const __m512 v[2] = {_mm512_loadu_ps(x + b * kGgufBlock), _mm512_loadu_ps(x + b * kGgufBlock + 16)};
    const __mmask16 finite =
        _mm512_cmp_ps_mask(_mm512_sub_ps(v[0], v[0]), zero, _CMP_EQ_OQ) & _mm512_cmp_ps_mask(_mm512_sub_ps(v[1], v[1]), zero, _CMP_EQ_OQ);
    if (finite != 0xFFFF) {
      d[b] = std::numeric_limits<float>::quiet_NaN();
      std::memset(q + b * kGgufBlock, 0, kGgufBlock);
      continue;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
    const float db = amax / 127.0f, id = db != 0 ? 1.0f / db : 0.0f;
    d[b] = _cvtsh_ss(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (int h = 0; h < 2; ++h) {
      const __m512 p = _mm512_mul_ps(v[h], _mm512_set1_ps(id)), a = _mm512_abs_ps(p);
      const __m512 fl = _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m512 r = _mm512_mask_add_ps(fl, _mm512_cmp_ps_mask(_mm512_sub_ps(a, fl), half, _CMP_GE_OQ), fl, one);
      const __m512 sr = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), _mm512_and_si512(_mm512_castps_si512(p), sign)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kGgufBlock + 16 * h), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(sr)));
    }
  }
}

// The same in AVX2's vectors of 8 (under the AVX2 cap the plain code took about 3 % of a 1.1B q4_0
// decoding step).
__attribute__((target("avx2,fma,f16c"))) void act_q8_blocks_avx2(const float* x, int64_t nb, int8_t* q, float* d) {
  const __m256 zero = _mm256_setzero_ps(), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    __m256 v[4];
    __m256 fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1)), m = zero;
    for (int u = 0; u < 4; ++u) {
      v[u] = _mm256_loadu_ps(x + b * kGgufBlock + 8 * u);
      fin = _mm256_and_ps(fin, _mm256_cmp_ps(_mm256_sub_ps(v[u], v[u]), zero, _CMP_EQ_OQ));
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[u]));
    }
    if (_mm256_movemask_ps(fin) != 0xFF) {
      d[b] = std::numeric_limits<float>::quiet_NaN();
      std::memset(q + b * kGgufBlock, 0, kGgufBlock);
      continue;
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    float amax = 0.0f;
    for (int l = 0; l < 8; ++l) amax = std::max(amax, lanes[l]);
    const float db = amax / 127.0f, id = db != 0 ? 1.0f / db : 0.0f;
    d[b] = _cvtsh_ss(_cvtss_sh(db, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i i32[4];
    for (int u = 0; u < 4; ++u) {
      const __m256 p = _mm256_mul_ps(v[u], _mm256_set1_ps(id)), a = _mm256_andnot_ps(sign, p);
      const __m256 fl = _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m256 r = _mm256_add_ps(fl, _mm256_and_ps(_mm256_cmp_ps(_mm256_sub_ps(a, fl), half, _CMP_GE_OQ), one));
      i32[u] = _mm256_cvtps_epi32(_mm256_or_ps(r, _mm256_and_ps(p, sign)));
    }
    // (packs interleave the 128-bit halves: the permutation puts the 32 bytes back in order)
    const __m256i w16a = _mm256_packs_epi32(i32[0], i32[1]), w16b = _mm256_packs_epi32(i32[2], i32[3]);
    const __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w16a, w16b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kGgufBlock), b8);
  }
}
#endif

void act_q8_blocks(const float* x, int64_t nb, int8_t* q, float* d) {
#if defined(__x86_64__)
  static const bool avx512 = rows_avx512() && __builtin_cpu_supports("f16c");
  if (avx512) return act_q8_blocks_avx512(x, nb, q, d);
  if (avx2_integer_products()) return act_q8_blocks_avx2(x, nb, q, d);
#endif
  act_q8_blocks_plain(x, nb, q, d);
}

// A row of int8's input as bitsandbytes' int8 inference rounds it: h = x rounded to float16, its
// outliers (|h| ≥ 6, NaN and infinities too: they reach y through the float sum) kept apart as (k,
// x) with h zeroed there, d = the absmax of the rest, q = round-half-even(h · 127 / d).
// Elements k0 … K of a row whose h (x rounded to float16) is written: each kept (rs its absmax so far)
// or an outlier.
void int8_row_split(const float* x, float* h, int64_t k0, int64_t K, float& rs, std::vector<std::pair<int64_t, float>>& out) {
  for (int64_t k = k0; k < K; ++k) {
    if (std::fabs(h[k]) < kInt8Threshold) {
      rs = std::max(rs, std::fabs(h[k]));
    } else {
      out.emplace_back(k, x[k]);
      h[k] = 0;
    }
  }
}

void act_int8_row_plain(const float* x, int64_t K, int8_t* q, float* d, std::vector<std::pair<int64_t, float>>& out) {
  std::vector<float> h(x, x + K);
  half_round(h.data(), K);
  float rs = 0;
  int8_row_split(x, h.data(), 0, K, rs, out);
  *d = rs;
  round_to_int8(h.data(), K, rs > 0 ? 127.0f / rs : 0.0f, q);
}

#if defined(__x86_64__)
// The same in vectors of 16 (the scalar loops took about a seventh of a 64-row int8 prompt pass on a
// Zen 4): the float16 rounding, the masked absmax and the products are the scalar path's operations
// on each element, and cvtps rounds half to even as nearbyint does, so q and d are the same bits.
__attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) void act_int8_row_avx512(const float* x, int64_t K, int8_t* q, float* d,
                                                                                   std::vector<std::pair<int64_t, float>>& out) {
  thread_local std::vector<float> hbuf;
  if (static_cast<int64_t>(hbuf.size()) < K) hbuf.resize(static_cast<size_t>(K));
  float* h = hbuf.data();
  const __m512 thr = _mm512_set1_ps(kInt8Threshold);
  __m512 m = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 live = K - k >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (K - k)) - 1);
    const __m512 v = _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_maskz_loadu_ps(live, x + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m512 av = _mm512_abs_ps(v);
    const __mmask16 in = _mm512_cmp_ps_mask(av, thr, _CMP_LT_OQ) & live;
    m = _mm512_max_ps(m, _mm512_maskz_mov_ps(in, av));
    _mm512_mask_storeu_ps(h + k, live, _mm512_maskz_mov_ps(in, v));
    if (in != live)
      for (int l = 0; l < 16 && k + l < K; ++l)
        if (!(in >> l & 1)) out.emplace_back(k + l, x[k + l]);
  }
  const float rs = _mm512_reduce_max_ps(m);
  *d = rs;
  const __m512 sv = _mm512_set1_ps(rs > 0 ? 127.0f / rs : 0.0f);
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 live = K - k >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (K - k)) - 1);
    const __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(live, h + k), sv));
    _mm_mask_storeu_epi8(q + k, live, _mm512_cvtepi32_epi8(qi));
  }
}

// The same in AVX2's vectors of 8, the elements past the last 8 as the scalar path takes them.
__attribute__((target("avx2,fma,f16c"))) void act_int8_row_avx2(const float* x, int64_t K, int8_t* q, float* d,
                                                                 std::vector<std::pair<int64_t, float>>& out) {
  thread_local std::vector<float> hbuf;
  if (static_cast<int64_t>(hbuf.size()) < K) hbuf.resize(static_cast<size_t>(K));
  float* h = hbuf.data();
  const __m256 thr = _mm256_set1_ps(kInt8Threshold), sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  const int64_t K8 = K / 8 * 8;
  for (int64_t k = 0; k < K8; k += 8) {
    const __m256 v = _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256 av = _mm256_andnot_ps(sign, v), in = _mm256_cmp_ps(av, thr, _CMP_LT_OQ);
    m = _mm256_max_ps(m, _mm256_and_ps(av, in));
    _mm256_storeu_ps(h + k, _mm256_and_ps(v, in));
    const int bits = _mm256_movemask_ps(in);
    if (bits != 0xFF)
      for (int l = 0; l < 8; ++l)
        if (!(bits >> l & 1)) out.emplace_back(k + l, x[k + l]);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float rs = 0;
  for (int l = 0; l < 8; ++l) rs = std::max(rs, lanes[l]);
  std::copy(x + K8, x + K, h + K8);
  half_round(h + K8, K - K8);
  int8_row_split(x, h, K8, K, rs, out);
  *d = rs;
  const float s = rs > 0 ? 127.0f / rs : 0.0f;
  const __m256 sv = _mm256_set1_ps(s);
  for (int64_t k = 0; k < K8; k += 8) {
    const __m256i i32 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(h + k), sv));
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packs_epi16(w16, w16));
  }
  round_to_int8(h + K8, K - K8, s, q + K8);
}
#endif

void act_int8_row(const float* x, int64_t K, int8_t* q, float* d, std::vector<std::pair<int64_t, float>>& out) {
#if defined(__x86_64__)
  static const bool avx512 = rows_avx512() && __builtin_cpu_supports("f16c");
  if (avx512) return act_int8_row_avx512(x, K, q, d, out);
  if (avx2_integer_products()) return act_int8_row_avx2(x, K, q, d, out);
#endif
  act_int8_row_plain(x, K, q, d, out);
}

// The rows quantized, row r's K float32 values from row(r, buffer) (a pointer to them, or into the
// thread's buffer of K floats), the rows in parallel.
ActRows act_quantize_rows(QuantFormat f, int64_t R, int64_t K, const std::function<const float*(int64_t, float*)>& row) {
  ActRows a;
  a.R = R, a.K = K, a.nb = f == QuantFormat::Int8 ? 1 : K / kGgufBlock;
  a.q.resize(static_cast<size_t>(R * K));
  a.d.resize(static_cast<size_t>(R * a.nb));
  if (f == QuantFormat::Int8) a.outliers.resize(static_cast<size_t>(R));
  at::parallel_for(0, R, 1, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> buf;
    if (static_cast<int64_t>(buf.size()) < K) buf.resize(static_cast<size_t>(K));
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = row(r, buf.data());
      int8_t* qr = a.q.data() + r * K;
      if (f != QuantFormat::Int8) {
        act_q8_blocks(xr, a.nb, qr, a.d.data() + r * a.nb);
        continue;
      }
      act_int8_row(xr, K, qr, a.d.data() + r, a.outliers[r]);
    }
  });
  return a;
}

ActRows act_quantize(QuantFormat f, const float* x, int64_t R, int64_t K) {
  return act_quantize_rows(f, R, K, [x, K](int64_t r, float*) { return x + r * K; });
}

// n float32 values rounded to bfloat16 as c10::BFloat16 rounds them (to nearest even; NaN 0x7FC0),
// W lanes at a time (lanes.h's round_bf16), then one by one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
template <int W>
[[gnu::always_inline]] inline void round_bf16_lanes(const float* y, uint16_t* o, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) lanes::store_bf16<W>(o + i, lanes::round_bf16<W>(lanes::load<W>(y + i)));
  for (; i < n; ++i) o[i] = c10::BFloat16(y[i]).x;
}
// n bfloat16 values widened to float32 (exactly), W lanes at a time
template <int W>
[[gnu::always_inline]] inline void widen_bf16_lanes(const uint16_t* x, float* o, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const auto v = lanes::load<W>(x + i);
    std::memcpy(o + i, &v, sizeof v);
  }
  for (; i < n; ++i) o[i] = lanes::widen(x[i]);
}
#pragma GCC diagnostic pop
using RoundBf16Fn = void (*)(const float*, uint16_t*, int64_t);
using WidenBf16Fn = void (*)(const uint16_t*, float*, int64_t);
#define ET_BF16_LANES(SUFFIX, ATTR, W)                                                                    \
  ATTR void round_bf16_##SUFFIX(const float* y, uint16_t* o, int64_t n) { round_bf16_lanes<W>(y, o, n); } \
  ATTR void widen_bf16_##SUFFIX(const uint16_t* x, float* o, int64_t n) { widen_bf16_lanes<W>(x, o, n); }
#if defined(__x86_64__)
ET_BF16_LANES(avx512, ET_LANES16, 16)
ET_BF16_LANES(avx2, ET_LANES8, 8)
#endif
ET_BF16_LANES(plain, , 4)
#undef ET_BF16_LANES

void round_bf16_into(const float* y, uint16_t* o, int64_t n) {
#if defined(__x86_64__)
  static const RoundBf16Fn fn = lanes::lanes_pick<RoundBf16Fn>(&round_bf16_avx512, &round_bf16_avx2, &round_bf16_plain);
  fn(y, o, n);
#else
  round_bf16_plain(y, o, n);
#endif
}

void widen_bf16_into(const uint16_t* x, float* o, int64_t n) {
#if defined(__x86_64__)
  static const WidenBf16Fn fn = lanes::lanes_pick<WidenBf16Fn>(&widen_bf16_avx512, &widen_bf16_avx2, &widen_bf16_plain);
  fn(x, o, n);
#else
  widen_bf16_plain(x, o, n);
#endif
}

// The same from rows x2 (R, K) of float32, bfloat16 or float16 with unit stride along K: each
// bfloat16 or float16 row widened (exactly) by the thread that quantizes it, where a whole float32
// copy of the rows was made first, one ATen op a product.
ActRows act_quantize(QuantFormat f, const at::Tensor& x2) {
  const int64_t R = x2.size(0), K = x2.size(1), rs = x2.stride(0);
  const auto dt = x2.scalar_type();
  TORCH_CHECK(x2.stride(1) == 1 || K == 1, "act_quantize: rows of unit stride expected");
  if (dt == at::kFloat) {
    const float* x = x2.const_data_ptr<float>();
    return act_quantize_rows(f, R, K, [x, rs](int64_t r, float*) { return x + r * rs; });
  }
  TORCH_CHECK(dt == at::kBFloat16 || dt == at::kHalf, "act_quantize: float32, bfloat16 or float16 rows expected, got ", dt);
  const auto* x = static_cast<const uint16_t*>(x2.const_data_ptr());
  const bool bf16 = dt == at::kBFloat16;
  return act_quantize_rows(f, R, K, [x, rs, K, bf16](int64_t r, float* buf) {
    const uint16_t* xr = x + r * rs;
    if (bf16) {
      widen_bf16_into(xr, buf, K);
    } else {
      for (int64_t k = 0; k < K; ++k) buf[k] = half_to_float(reinterpret_cast<const uint8_t*>(xr + k));
    }
    return static_cast<const float*>(buf);
  });
}

// x' of the rows (R × K float32): what the float products multiply.
void act_dequantize(QuantFormat f, const ActRows& a, float* xp) {
  const int64_t K = a.K;
  at::parallel_for(0, a.R, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int8_t* q = a.q.data() + r * K;
      float* o = xp + r * K;
      if (f == QuantFormat::Int8) {
        const float s = a.d[r] * (1.0f / 127.0f);
        for (int64_t k = 0; k < K; ++k) o[k] = static_cast<float>(q[k]) * s;
        for (const auto& [k, v] : a.outliers[r]) o[k] = v;
      } else {
        for (int64_t k = 0; k < K; ++k) o[k] = static_cast<float>(q[k]) * a.d[r * a.nb + k / kGgufBlock];
      }
    }
  });
}

// The same quantization with ATen's operations, for inputs on other devices (CUDA).
at::Tensor act_dequantize_aten(const at::Tensor& x, QuantFormat f) {
  auto xf = x.to(at::kFloat);
  if (f == QuantFormat::Int8) {
    auto h = xf.to(at::kHalf).to(at::kFloat);
    auto inlier = h.abs() < kInt8Threshold;
    auto kept = h.masked_fill(inlier.logical_not(), 0);
    auto rs = kept.abs().amax(-1, true);
    auto q = (kept * at::where(rs > 0, 127.0f / rs, at::zeros_like(rs))).round();
    return at::where(inlier, q * (rs * (1.0f / 127.0f)), xf).to(x.scalar_type());
  }
  auto b = xf.reshape({-1, x.size(-1) / kGgufBlock, kGgufBlock});
  auto d = b.abs().amax(-1, true) / 127.0f;
  auto v = b * at::where(d != 0, 1.0f / d, at::zeros_like(d));
  auto a = v.abs(), fl = a.floor();
  auto q = at::sign(v) * (fl + (2 * (a - fl)).floor());  // round half away from zero, exactly (gguf's np_roundf)
  return (q * d.to(at::kHalf).to(at::kFloat)).reshape(x.sizes()).to(x.scalar_type());
}

// The rows as the kernels read them: int8's whole-row offset (128 · the row's sum of q over the
// steps of 64 Int8Vnni takes; row_all: over all of it, as Int8Group takes it); q8_0's
// offsets of each block's eight 4-byte lanes (−128 · the lane's sum); q4_0's rows with each step of
// two blocks in quarters 0, 2, 1, 3, and per step of 64 its lanes' offsets and input scales.
struct ActSteps {
  int64_t steps = 0;
  std::vector<int64_t> row_off, row_all;
  std::vector<int32_t> boff;
  std::vector<int8_t> q;
  std::vector<int32_t> off;
  std::vector<float> dx;
};

#if defined(__x86_64__)
bool vnni_products();
void q4_steps_vnni(const ActRows& a, ActSteps& s);
#endif

ActSteps act_steps(QuantFormat f, const ActRows& a, bool interleaved) {
  ActSteps s;
  const int64_t R = a.R, K = a.K;
  s.steps = K / 64;
  const int64_t S = s.steps;
  // (the rows in parallel where there are more than about 64K elements: a 63-row prompt's sums had
  // taken about 1 % of its int8 pass on one thread while the other waited)
  auto rows = [R, K](const std::function<void(int64_t)>& f) {
    at::parallel_for(0, R, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) f(r);
    });
  };
  if (interleaved && f == QuantFormat::Q4_0) {  // q4_0 interleaved: each block's offset, −8 · its sum of q
    s.boff.resize(static_cast<size_t>(R * a.nb));
    rows([&](int64_t r) {
      for (int64_t b = 0; b < a.nb; ++b) {
        int32_t sum = 0;
        for (int e = 0; e < kGgufBlock; ++e) sum += a.q[r * K + b * kGgufBlock + e];
        s.boff[r * a.nb + b] = -8 * sum;
      }
    });
    return s;
  }
  if (f == QuantFormat::Int8) {
    s.row_off.resize(static_cast<size_t>(R));
    if (interleaved) s.row_all.resize(static_cast<size_t>(R));
    rows([&](int64_t r) {
      int32_t sum = 0;  // (|sum| ≤ 127 · 65536: int8's integer kernels take K ≤ 65536)
      for (int64_t k = 0; k < S * 64; ++k) sum += a.q[r * K + k];
      s.row_off[r] = 128 * static_cast<int64_t>(sum);
      for (int64_t k = S * 64; k < K && interleaved; ++k) sum += a.q[r * K + k];
      if (interleaved) s.row_all[r] = 128 * static_cast<int64_t>(sum);
    });
    return s;
  }
  if (f == QuantFormat::Q8_0) {
    const int64_t nb = K / kGgufBlock;
    s.boff.resize(static_cast<size_t>(R * nb * 8));
    for (int64_t r = 0; r < R; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const int8_t* q = a.q.data() + r * K + b * kGgufBlock;
        for (int l = 0; l < 8; ++l) s.boff[(r * nb + b) * 8 + l] = -128 * (q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]);
      }
    return s;
  }
  // q4_0: the rows permuted, per step of 64 the lanes' offsets (−8 · the lane's sum) and input scales
#if defined(__x86_64__)
  if (vnni_products()) {
    q4_steps_vnni(a, s);
    return s;
  }
#endif
  s.q = a.q;
  s.off.resize(static_cast<size_t>(R * S * 16));
  s.dx.resize(static_cast<size_t>(R * S * 16));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t t = 0; t < S; ++t) {
      int8_t* o = s.q.data() + r * K + t * 64;
      const int8_t* in = a.q.data() + r * K + t * 64;
      for (int h = 0; h < 4; ++h) std::memcpy(o + h * 16, in + (h == 1 ? 2 : h == 2 ? 1 : h) * 16, 16);
      for (int l = 0; l < 16; ++l) {
        s.off[(r * S + t) * 16 + l] = -8 * (o[4 * l] + o[4 * l + 1] + o[4 * l + 2] + o[4 * l + 3]);
        // lanes 0-3 and 8-11 hold the step's first block, 4-7 and 12-15 its second
        s.dx[(r * S + t) * 16 + l] = a.d[r * a.nb + 2 * t + (l / 4) % 2];
      }
    }
  return s;
}

#if defined(__x86_64__)
// Integer products on AVX-512 VNNI (dpbusd: unsigned bytes times signed bytes, four a lane into
// int32): the weight's bytes made unsigned (int8 and q8_0: q + 128, a flip of the top bit; q4_0:
// its codes 0 … 15, which are q + 8) and the offset taken back through the input's sums
// (precomputed per 4-byte lane: −128 or −8 times the lane's sum of q). The integer sums are exact;
// each output is one fixed chain over its k whatever the rows around it.
#define ET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

bool vnni_products() {
  static const bool ok = [] {
    __builtin_cpu_init();
    return rows_avx512() && __builtin_cpu_supports("avx512vnni");
  }();
  return ok;
}

// act_steps' q4_0 rows in vectors: each step's quarters 0, 2, 1, 3, the lanes' sums (times −8)
// through dpbusd with unsigned ones, the two blocks' input scales spread over their lanes.
ET_VNNI void q4_steps_vnni(const ActRows& a, ActSteps& s) {
  const int64_t R = a.R, K = a.K, S = s.steps;
  s.q.resize(static_cast<size_t>(R * K));
  s.off.resize(static_cast<size_t>(R * S * 16));
  s.dx.resize(static_cast<size_t>(R * S * 16));
  const __m512i ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
  const __m512i halves = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t t = 0; t < S; ++t) {
      const __m512i in = _mm512_loadu_si512(a.q.data() + r * K + t * 64);
      const __m512i o = _mm512_shuffle_i64x2(in, in, _MM_SHUFFLE(3, 1, 2, 0));
      _mm512_storeu_si512(s.q.data() + r * K + t * 64, o);
      const __m512i sum = _mm512_dpbusd_epi32(zero, ones, o);
      _mm512_storeu_si512(s.off.data() + (r * S + t) * 16, _mm512_sub_epi32(zero, _mm512_slli_epi32(sum, 3)));
      const __m128 d2 = _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a.d.data() + r * a.nb + 2 * t)));
      _mm512_storeu_ps(s.dx.data() + (r * S + t) * 16, _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(d2)));
    }
}

// int8's output n for input row r from the integer sum of its first k0 products (the VNNI and
// AVX2 kernels alike, so that their outputs are the same bits): the products from k0 on, the row's
// scales, then its outliers' float products.
__attribute__((always_inline)) inline float int8_output(const View& v, const ActRows& a, int64_t n, int64_t r, int64_t isum, int64_t k0) {
  const int64_t K = v.K;
  const auto* qw = reinterpret_cast<const int8_t*>(v.w) + n * K;
  const float scb = v.scb[n];
  for (int64_t k = k0; k < K; ++k) isum += static_cast<int32_t>(qw[k]) * a.q[r * K + k];
  float y = static_cast<float>(isum) * (a.d[r] * scb) * (1.0f / 16129.0f);
  for (const auto& [k, x] : a.outliers[r]) y += x * ((static_cast<float>(qw[k]) * scb) * 7.874015718698502e-3f);
  return y;
}

// Y[j·ldy + n + i] for i < NB, j < M (the loops unrolled: see ET_UNROLL; a 64-row prompt's products
// on a Zen 4 core ran at 55 % of dpbusd's peak before, at 80 % after).
template <int NB, int M>
struct Int8Vnni {
  ET_VNNI static void run(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0) {
    const int64_t K = v.K, S = s.steps;
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const int8_t* x = a.q.data() + r0 * K;
    const uint8_t* w0 = v.w + n * K;
    __m512i acc[NB][M];
    ET_UNROLL for (int i = 0; i < NB; ++i) ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int64_t t = 0; t < S; ++t) {
      __m512i xv[M];
      ET_UNROLL for (int j = 0; j < M; ++j) xv[j] = _mm512_loadu_si512(x + j * K + t * 64);
      ET_UNROLL for (int i = 0; i < NB; ++i) {
        const uint8_t* p = w0 + i * K + t * 64;
        // the next block's line towards L2, not L1: on a Zen 4 (2 threads, the 1.1B) one-row
        // decoding took 1.38–1.44 × the tokens/s and a sixteen-row step 0.86–0.92 × the time
        // (q8_0's kernel and the AVX2 ones fetch towards L2 too, each as far ahead as measured best)
        _mm_prefetch(reinterpret_cast<const char*>(p + NB * K), _MM_HINT_T1);
        const __m512i w = _mm512_xor_si512(_mm512_loadu_si512(p), flip);
        ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], w, xv[j]);
      }
    }
    ET_UNROLL for (int i = 0; i < NB; ++i) ET_UNROLL for (int j = 0; j < M; ++j) {
      const int64_t isum = static_cast<int64_t>(_mm512_reduce_add_epi32(acc[i][j])) - s.row_off[r0 + j];
      Y[j * ldy + n + i] = int8_output(v, a, n + i, r0 + j, isum, S * 64);
    }
  }
};

// int8 interleaved (interleave_): Y[j·ldy + n + 16i + l] for NB groups of 16 weight rows (lane
// l of group i is row n + 16i + l) and M input rows, r0 … r0 + M − 1. Each step adds a chunk of 4
// k: the groups' 64 bytes made unsigned, each input row's 4 bytes broadcast from memory into the
// product (EVEX's {1to16}; written in asm because GCC 12 otherwise copies the sums between
// registers at every product). Then per output int8_output's float arithmetic, 16 lanes at a time,
// the same operations in the same order (this file contracts nothing), so the outputs are the
// plain rows' kernels' bits.
template <int NB, int M>
struct Int8Group {
  // (out of line: inlined into its caller GCC 12 kept the sums of 16 rows on the stack)
  [[gnu::noinline]] ET_VNNI static void run(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0) {
    const int64_t K = v.K, G = kGroup * K;
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const int8_t* x = a.q.data() + r0 * K;
    const uint8_t* w0 = v.w + n * K;
    __m512i acc[NB][M];
    ET_UNROLL for (int i = 0; i < NB; ++i) ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int64_t c = 0; c < K / 4; ++c) {
      __m512i w[NB];
      ET_UNROLL for (int i = 0; i < NB; ++i) {
        const uint8_t* p = w0 + i * G + c * 64;
        _mm_prefetch(reinterpret_cast<const char*>(p + NB * G), _MM_HINT_T1);  // the next block's line, as Int8Vnni
        w[i] = _mm512_xor_si512(_mm512_loadu_si512(p), flip);
      }
      ET_UNROLL for (int j = 0; j < M; ++j) {
        const auto* xj = reinterpret_cast<const int32_t*>(x + j * K + 4 * c);
        ET_UNROLL for (int i = 0; i < NB; ++i) asm("vpdpbusd %[x]%{1to16%}, %[w], %[a]" : [a] "+v"(acc[i][j]) : [w] "v"(w[i]), [x] "m"(*xj));
      }
    }
    const __m512 c127 = _mm512_set1_ps(7.874015718698502e-3f), c16129 = _mm512_set1_ps(1.0f / 16129.0f);
    ET_UNROLL for (int i = 0; i < NB; ++i) {
      const __m512 scb = _mm512_loadu_ps(v.scb + n + kGroup * i);
      ET_UNROLL for (int j = 0; j < M; ++j) {
        const int64_t r = r0 + j;
        const __m512i isum = _mm512_sub_epi32(acc[i][j], _mm512_set1_epi32(static_cast<int32_t>(s.row_all[r])));
        __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(_mm512_set1_ps(a.d[r]), scb)), c16129);
        for (const auto& [k, xo] : a.outliers[r]) {
          // the 16 rows' weights at k: byte k % 4 of each lane of chunk k / 4, sign-extended
          const __m512i chunk = _mm512_loadu_si512(w0 + i * G + (k / 4) * 64);
          const __m512i q = _mm512_srai_epi32(_mm512_sll_epi32(chunk, _mm_cvtsi32_si128(static_cast<int>(24 - 8 * (k % 4)))), 24);
          y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_set1_ps(xo), _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q), scb), c127)));
        }
        _mm512_storeu_ps(Y + j * ldy + n + kGroup * i, y);
      }
    }
  }
};

// Input rows r0 … r1 over NB groups from row n: 8 rows a pass, then the rest in one.
template <int NB, int M = 8>
ET_VNNI void int8_group_rows(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0,
                             int64_t r1) {
  if constexpr (M == 8)
    for (; r0 + 8 <= r1; r0 += 8) Int8Group<NB, 8>::run(v, a, s, Y + r0 * ldy, ldy, n, r0);
  if (r1 - r0 == M) return Int8Group<NB, M>::run(v, a, s, Y + r0 * ldy, ldy, n, r0);
  if constexpr (M > 1) int8_group_rows<NB, M - 1>(v, a, s, Y, ldy, n, r0, r1);
}

// q4_0: a step is two blocks (their 32 bytes of codes, the low nibbles then the high ones, as the
// rows were permuted), each lane's sum scaled by its block's d_w · d_x; an odd last block is summed
// alone after the vector's lanes. A step's 36 bytes come in one masked load (nothing past them is
// read); word permutations then lay out its codes (each 16-bit word of codes twice, the second
// copy shifted down 4 bits for the high nibbles) and its two float16 scales over their lanes.
alignas(64) constexpr int16_t kQ4Codes[32] = {1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
                                              1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17};
alignas(64) constexpr int16_t kQ4Scales[32] = {0, 0, 0, 0, 9, 9, 9, 9, 0, 0, 0, 0, 9, 9, 9, 9,
                                               0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(64) constexpr int16_t kQ4Shifts[32] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                               4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};

template <int NB, int M>
struct Q4Vnni {
  ET_VNNI static void run(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0) {
    const int64_t K = v.K, S = s.steps, nb = K / kGgufBlock, rb = nb * 18;
    const __m512i low = _mm512_set1_epi8(15), codes = _mm512_load_si512(kQ4Codes), scales = _mm512_load_si512(kQ4Scales),
                  shifts = _mm512_load_si512(kQ4Shifts);
    const __mmask32 step_words = (1u << 18) - 1;  // 36 bytes
    __m512 acc[NB][M][2];
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j][0] = acc[i][j][1] = _mm512_setzero_ps();
    // a step into sum c of each output (steps alternate between two sums: one chain of
    // multiply-adds a step would wait on their latency)
    auto step = [&](int64_t t, int c) __attribute__((always_inline)) {
      ET_UNROLL for (int i = 0; i < NB; ++i) {
        const uint8_t* p = v.w + (n + i) * rb + t * 36;
        _mm_prefetch(reinterpret_cast<const char*>(p + NB * rb), _MM_HINT_T0);
        const __m512i raw = _mm512_maskz_loadu_epi16(step_words, p);
        const __m512i w = _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutexvar_epi16(codes, raw), shifts), low);
        const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(scales, raw)));
        ET_UNROLL for (int j = 0; j < M; ++j) {
          const int64_t o = ((r0 + j) * S + t) * 16;
          const __m512i sum =
              _mm512_dpbusd_epi32(_mm512_loadu_si512(s.off.data() + o), w, _mm512_loadu_si512(s.q.data() + (r0 + j) * K + t * 64));
          acc[i][j][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_loadu_ps(s.dx.data() + o)), acc[i][j][c]);
        }
      }
    };
    int64_t t = 0;
    for (; t + 2 <= S; t += 2) {
      step(t, 0);
      step(t + 1, 1);
    }
    if (t < S) step(t, 0);
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) {
        float y = _mm512_reduce_add_ps(_mm512_add_ps(acc[i][j][0], acc[i][j][1]));
        const int64_t r = r0 + j;
        if (2 * S < nb) {  // the odd last block
          const uint8_t* p = v.w + (n + i) * rb + (nb - 1) * 18;
          const int8_t* qx = a.q.data() + r * K + (nb - 1) * kGgufBlock;
          int32_t isum = 0;
          for (int e = 0; e < 16; ++e) isum += ((p[2 + e] & 15) - 8) * qx[e] + ((p[2 + e] >> 4) - 8) * qx[e + 16];
          y += static_cast<float>(isum) * (half_to_float(p) * a.d[r * a.nb + nb - 1]);
        }
        Y[j * ldy + n + i] = y;
      }
  }
};

// q8_0 a block of 32 at a time in 256-bit vectors: the block's integer sums in eight lanes, scaled
// by d_w · d_x (one float product, broadcast) into the lanes' float sums. (On a Zen 4, which splits
// 512-bit operations in two, this takes fewer cycles a block than two blocks a 512-bit step with
// per-lane scales; q4_0's nibbles unpack better two blocks at a time.)
template <int NB, int M>
struct Q8Vnni {
  ET_VNNI static void run(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0) {
    const int64_t K = v.K, nb = K / kGgufBlock, rb = nb * 34;
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    __m256 acc[NB][M];
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b)
      ET_UNROLL for (int i = 0; i < NB; ++i) {
        const uint8_t* p = v.w + (n + i) * rb + b * 34;
        // two weight rows ahead, towards L2: one-row decoding through a 7B's MLP shapes on a Zen 4
        // (2 threads) 0.86–0.90 × the time of one row ahead into L1, a sixteen-row step the same
        _mm_prefetch(reinterpret_cast<const char*>(p + 2 * NB * rb), _MM_HINT_T1);
        const __m256i w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)), flip);
        const float dw = _cvtsh_ss(load_u16(p));
        ET_UNROLL for (int j = 0; j < M; ++j) {
          const int64_t r = r0 + j;
          const __m256i sum =
              _mm256_dpbusd_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.boff.data() + (r * nb + b) * 8)), w,
                                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + r * K + b * kGgufBlock)));
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(dw * a.d[r * nb + b]), acc[i][j]);
        }
      }
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) Y[j * ldy + n + i] = hsum256(acc[i][j]);
  }
};

// q4_0 interleaved (interleave_), M input rows: lane i of a group's vectors is weight row i.
// Per block each lane's integer sum is exact (dpbusd of the codes 0 … 15 with the input's bytes,
// four broadcast at a time, from the block's offset −8 · Σ q), then acc[b % 2] += float(sum) ·
// (d_w · d_x); the two sums are added last. Each output's chain is the same whatever M.
// The cache lines a step's 288 bytes (16 rows' block) span.
constexpr int kStepLines = (kGroup * 18 + 63) / 64;

// With parts > 0, the lines l ≡ part (mod parts) of each step's 288 bytes in the next group are
// fetched towards L2 as the step computes (the passes of several input rows over one group share
// the next group's lines between them).
template <int M>
ET_VNNI void q4_group_vnni(const uint8_t* grp, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0,
                           int part = 0, int parts = 0) {
  const int64_t K = a.K, nb = a.nb;
  const __m512i low = _mm512_set1_epi8(15);
  __m512 acc[M][2];
  ET_UNROLL for (int j = 0; j < M; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c = grp + b * 288;
    for (int l = part; l < kStepLines && parts > 0; l += parts)
      _mm_prefetch(reinterpret_cast<const char*>(c + kGroup * nb * 18 + l * 64), _MM_HINT_T1);
    __m512i lo[4], hi[4];
    for (int m = 0; m < 4; ++m) {
      const __m512i w = _mm512_loadu_si512(c + 64 * m);
      lo[m] = _mm512_and_si512(w, low);
      hi[m] = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 256)));
    ET_UNROLL for (int j = 0; j < M; ++j) {
      const int64_t r = r0 + j;
      const int8_t* x = a.q.data() + r * K + b * kGgufBlock;
      auto x4 = [&](int e) {
        int32_t u;
        std::memcpy(&u, x + 4 * e, 4);
        return _mm512_set1_epi32(u);
      };
      __m512i s0 = _mm512_set1_epi32(s.boff[r * nb + b]), s1 = _mm512_setzero_si512();
      for (int m = 0; m < 4; ++m) {
        s0 = _mm512_dpbusd_epi32(s0, lo[m], x4(m));
        s1 = _mm512_dpbusd_epi32(s1, hi[m], x4(4 + m));
      }
      acc[j][b & 1] =
          _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(dw, _mm512_set1_ps(a.d[r * nb + b])), acc[j][b & 1]);
    }
  }
  ET_UNROLL for (int j = 0; j < M; ++j) _mm512_storeu_ps(Y + j * ldy + n, _mm512_add_ps(acc[j][0], acc[j][1]));
}

// Weight row n of an interleaved q4_0 weight past its last group (as in gguf's layout) for R input
// rows, in scalar code: each output's chain as q4_group_vnni's.
inline void q4_row_after_groups(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t R, int64_t ldy, int64_t n) {
  const int64_t nb = a.nb;
  const uint8_t* row = v.w + n * nb * 18;
  for (int64_t r = 0; r < R; ++r) {
    float acc[2] = {0.0f, 0.0f};
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = row + b * 18;
      const int8_t* x = a.q.data() + r * a.K + b * kGgufBlock;
      int32_t sum = s.boff[r * nb + b];
      for (int e = 0; e < 16; ++e) sum += (p[2 + e] & 15) * x[e] + (p[2 + e] >> 4) * x[e + 16];
      acc[b & 1] = std::fma(static_cast<float>(sum), half_to_float(p) * a.d[r * nb + b], acc[b & 1]);
    }
    Y[r * ldy + n] = acc[0] + acc[1];
  }
}

// Units u0 … u1 of an interleaved q4_0 weight: the groups of 16 rows, then the rows after them one
// at a time (the same chain in scalar code), for R input rows 4, 2 and 1 at a time.
ET_VNNI void q4_interleaved_rows(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t R, int64_t ldy, int64_t u0,
                                 int64_t u1) {
  const int64_t nb = a.nb, rb = nb * 18;
  for (int64_t u = u0; u < u1; ++u) {
    if (u < v.groups) {
      const uint8_t* grp = v.w + u * kGroup * rb;
      const int64_t n = u * kGroup;
      // the next group fetched over the passes where the rows make several of 4 (one row: the
      // hardware's stream prefetch does better alone; a sixteen-row step of the 1.1B on a Zen 4
      // 0.76–0.89 × the time with it)
      const int parts = R > 4 && u + 1 < v.groups ? static_cast<int>(std::min<int64_t>((R + 3) / 4, kStepLines)) : 0;
      auto part = [&](int64_t r) { return static_cast<int>(r / 4 % kStepLines); };  // the pass's share
      int64_t r = 0;
      for (; r + 4 <= R; r += 4) q4_group_vnni<4>(grp, a, s, Y + r * ldy, ldy, n, r, part(r), parts);
      for (; r + 2 <= R; r += 2) q4_group_vnni<2>(grp, a, s, Y + r * ldy, ldy, n, r, part(r), parts);
      if (r < R) q4_group_vnni<1>(grp, a, s, Y + r * ldy, ldy, n, r, part(r), parts);
      continue;
    }
    q4_row_after_groups(v, a, s, Y, R, ldy, v.groups * kGroup + (u - v.groups));
  }
}

// The same on AVX2 (interleaved there too): a 64-byte chunk's halves are weight rows 0 … 7 and
// 8 … 15 of the group, eight outputs a vector. Per chunk and input row the codes (unsigned, 0 … 15)
// times the input's four broadcast bytes (maddubs: a pair's sum at most 2 · 15 · 127, the low and
// high nibbles' pairs added in 16 bits: at most 7620), their pairs summed into 32 bits (madd); the
// block's sum from its offset −8 · Σ x is each output's exact integer, and the float steps after it
// are q4_group_vnni's, so the outputs equal the VNNI kernel's bit for bit. H halves a pass (M rows).
template <int M, int H>
ET_Q256 void q4_group_avx2(const uint8_t* grp, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0, int h0) {
  const int64_t K = a.K, nb = a.nb;
  const __m256i low = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
  __m256 acc[H][M][2];
  ET_UNROLL for (int h = 0; h < H; ++h) ET_UNROLL for (int j = 0; j < M; ++j) acc[h][j][0] = acc[h][j][1] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* c = grp + b * 288;
    __m256i sum[H][M];
    ET_UNROLL for (int h = 0; h < H; ++h) ET_UNROLL for (int j = 0; j < M; ++j) sum[h][j] = _mm256_set1_epi32(s.boff[(r0 + j) * nb + b]);
    ET_UNROLL for (int m = 0; m < 4; ++m) ET_UNROLL for (int h = 0; h < H; ++h) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 64 * m + 32 * (h0 + h)));
      const __m256i lo = _mm256_and_si256(w, low), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
      ET_UNROLL for (int j = 0; j < M; ++j) {
        const int8_t* x = a.q.data() + (r0 + j) * K + b * kGgufBlock;
        int32_t ul, uh;
        std::memcpy(&ul, x + 4 * m, 4);
        std::memcpy(&uh, x + 16 + 4 * m, 4);
        const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_set1_epi32(ul)), _mm256_maddubs_epi16(hi, _mm256_set1_epi32(uh)));
        sum[h][j] = _mm256_add_epi32(sum[h][j], _mm256_madd_epi16(p, ones));
      }
    }
    ET_UNROLL for (int h = 0; h < H; ++h) {
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + 256 + 16 * (h0 + h))));
      ET_UNROLL for (int j = 0; j < M; ++j)
        acc[h][j][b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[h][j]), _mm256_mul_ps(dw, _mm256_set1_ps(a.d[(r0 + j) * nb + b])), acc[h][j][b & 1]);
    }
  }
  ET_UNROLL for (int h = 0; h < H; ++h) ET_UNROLL for (int j = 0; j < M; ++j)
    _mm256_storeu_ps(Y + j * ldy + n + 8 * (h0 + h), _mm256_add_ps(acc[h][j][0], acc[h][j][1]));
}

// q4_interleaved_rows on AVX2: one row both halves of a group in one pass, more rows two at a time
// over each half (the half's bytes then read from cache by each pass).
ET_Q256 void q4_interleaved_rows_avx2(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t R, int64_t ldy, int64_t u0,
                                      int64_t u1) {
  const int64_t rb = a.nb * 18;
  for (int64_t u = u0; u < u1; ++u) {
    if (u >= v.groups) {
      q4_row_after_groups(v, a, s, Y, R, ldy, v.groups * kGroup + (u - v.groups));
      continue;
    }
    const uint8_t* grp = v.w + u * kGroup * rb;
    const int64_t n = u * kGroup;
    if (R == 1) {
      q4_group_avx2<1, 2>(grp, a, s, Y, ldy, n, 0, 0);
      continue;
    }
    for (int h = 0; h < 2; ++h) {
      int64_t r = 0;
      for (; r + 2 <= R; r += 2) q4_group_avx2<2, 1>(grp, a, s, Y + r * ldy, ldy, n, r, h);
      if (r < R) q4_group_avx2<1, 1>(grp, a, s, Y + r * ldy, ldy, n, r, h);
    }
  }
}

// Integer products on AVX2 (CPUs without AVX-512 VNNI): a block of 32 signed weight bytes w with
// the input's 32 bytes x as llama.cpp's AVX2 code takes them, |w| (unsigned) times x with w's sign
// (maddubs: byte pairs into int16; |w| ≤ 128 and |x| ≤ 127, so a pair's sum never saturates), the
// pairs then added into eight int32 lanes, lane l the products 4l … 4l+3: the lanes dpbusd gives,
// so int8's and q8_0's outputs are the VNNI kernels' bit for bit. The input rows' steps (ActSteps)
// are not read.
ET_Q256 inline __m256i dot_i8x32(__m256i w, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

template <int NB, int M>
struct Int8Avx2 {
  ET_Q256 static void run(const View& v, const ActRows& a, const ActSteps&, float* Y, int64_t ldy, int64_t n, int64_t r0) {
    const int64_t K = v.K, S = K / 32;
    __m256i acc[NB][M];
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j] = _mm256_setzero_si256();
    for (int64_t t = 0; t < S; ++t)
      ET_UNROLL for (int i = 0; i < NB; ++i) {
        const uint8_t* p = v.w + (n + i) * K + t * 32;
        _mm_prefetch(reinterpret_cast<const char*>(p + NB * K), _MM_HINT_T1);
        const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        ET_UNROLL for (int j = 0; j < M; ++j)
          acc[i][j] = _mm256_add_epi32(
              acc[i][j], dot_i8x32(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + (r0 + j) * K + t * 32))));
      }
    ET_UNROLL for (int i = 0; i < NB; ++i)
      ET_UNROLL for (int j = 0; j < M; ++j) {
        alignas(32) int32_t lanes[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[i][j]);
        int64_t isum = 0;
        for (int l = 0; l < 8; ++l) isum += lanes[l];
        Y[j * ldy + n + i] = int8_output(v, a, n + i, r0 + j, isum, S * 32);
      }
  }
};

// q8_0 and q4_0 a block of 32 at a time: the block's integer sums in eight lanes, scaled by
// d_w · d_x into the lanes' float sums (q8_0: as Q8Vnni). q4_0's 16 bytes of codes: the low nibbles
// are its first 16 elements, the high ones the next 16, each minus 8.
template <bool Q4>
struct GgufAvx2 {
  template <int NB, int M>
  struct At {
    ET_Q256 static void run(const View& v, const ActRows& a, const ActSteps&, float* Y, int64_t ldy, int64_t n, int64_t r0) {
      constexpr int64_t bb = Q4 ? 18 : 34;  // a block's bytes
      const int64_t K = v.K, nb = K / kGgufBlock, rb = nb * bb;
      const __m256i low = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
      __m256 acc[NB][M];
      ET_UNROLL for (int i = 0; i < NB; ++i)
        ET_UNROLL for (int j = 0; j < M; ++j) acc[i][j] = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b)
        ET_UNROLL for (int i = 0; i < NB; ++i) {
          const uint8_t* p = v.w + (n + i) * rb + b * bb;
          _mm_prefetch(reinterpret_cast<const char*>(p + 2 * NB * rb), _MM_HINT_T1);
          __m256i w;
          if constexpr (Q4) {
            const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
            w = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(c, 4), c), low), eight);
          } else {
            w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
          }
          const float dw = _cvtsh_ss(load_u16(p));
          ET_UNROLL for (int j = 0; j < M; ++j) {
            const int64_t r = r0 + j;
            const __m256i sum = dot_i8x32(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + r * K + b * kGgufBlock)));
            acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(dw * a.d[r * nb + b]), acc[i][j]);
          }
        }
      ET_UNROLL for (int i = 0; i < NB; ++i)
        ET_UNROLL for (int j = 0; j < M; ++j) Y[j * ldy + n + i] = hsum256(acc[i][j]);
    }
  };
};

using IntegerKernel = void (*)(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t r0, int64_t r1, int64_t ldy,
                               int64_t n0, int64_t n1);

// Outputs n0 … n1 of input rows r0 … r1: weight rows NB at a time (the last ones one by one), input
// rows 4 at a time, then 3, or 2 and 1 (each pass over the NB weight rows serves as many rows as it
// can: a 63-token prompt's last three rows in one pass, not two).
template <template <int, int> class Blk, int NB>
void integer_blocked(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t r0, int64_t r1, int64_t ldy, int64_t n0,
                     int64_t n1) {
  auto rows = [&](auto nbc, int64_t n) {
    constexpr int B = decltype(nbc)::value;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) Blk<B, 4>::run(v, a, s, Y + r * ldy, ldy, n, r);
    if (r + 3 == r1) {
      Blk<B, 3>::run(v, a, s, Y + r * ldy, ldy, n, r);
      return;
    }
    for (; r + 2 <= r1; r += 2) Blk<B, 2>::run(v, a, s, Y + r * ldy, ldy, n, r);
    if (r < r1) Blk<B, 1>::run(v, a, s, Y + r * ldy, ldy, n, r);
  };
  int64_t n = n0;
  for (; n + NB <= n1; n += NB) rows(std::integral_constant<int, NB>{}, n);
  for (; n < n1; ++n) rows(std::integral_constant<int, 1>{}, n);
}

// Units u0 … u1 of an interleaved int8 weight (the groups of 16 rows, then the rows after them one a
// unit, on Int8Vnni) for input rows r0 … r1: three groups a block from 4 rows on (24 sums with 8
// rows a pass), six below (decoding: bound by memory, yet one group's single chain of sums and
// single stream of lines read it slower: a 1.1B int8 step on 2 Zen 4 threads 30.3 ms with one
// group a pass, 28.1 with three, 25.0 with six or eight).
// 9 to 16 rows (a decoding step's) over one group in one pass: Int8Group<1, M> with M = r1 − r0
template <int M>
ET_VNNI void int8_group_wide(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t ldy, int64_t n, int64_t r0, int64_t r1) {
  if (r1 - r0 == M) return Int8Group<1, M>::run(v, a, s, Y + r0 * ldy, ldy, n, r0);
  if constexpr (M > 9) int8_group_wide<M - 1>(v, a, s, Y, ldy, n, r0, r1);
}

ET_VNNI void int8_interleaved_rows(const View& v, const ActRows& a, const ActSteps& s, float* Y, int64_t r0, int64_t r1, int64_t ldy,
                                   int64_t u0, int64_t u1) {
  const int64_t g1 = std::min(u1, v.groups);
  int64_t g = u0;
  if (r1 - r0 > 8 && r1 - r0 <= 16)
    for (; g < g1; ++g) int8_group_wide<16>(v, a, s, Y, ldy, g * kGroup, r0, r1);
  if (r1 - r0 >= 4)
    for (; g + 3 <= g1; g += 3) int8_group_rows<3>(v, a, s, Y, ldy, g * kGroup, r0, r1);
  else
    for (; g + 6 <= g1; g += 6) int8_group_rows<6, 3>(v, a, s, Y, ldy, g * kGroup, r0, r1);
  for (; g < g1; ++g) int8_group_rows<1>(v, a, s, Y, ldy, g * kGroup, r0, r1);
  if (u1 > v.groups) {
    const int64_t n0 = v.groups * kGroup + (std::max(u0, v.groups) - v.groups), n1 = v.groups * kGroup + (u1 - v.groups);
    integer_blocked<Int8Vnni, 1>(v, a, s, Y, r0, r1, ldy, n0, n1);
  }
}

IntegerKernel avx2_kernel(QuantFormat f, int64_t K, int64_t R) {
  switch (f) {
    case QuantFormat::Int8: return K > 65536 ? nullptr : R == 1 ? &integer_blocked<Int8Avx2, 4> : &integer_blocked<Int8Avx2, 2>;
    case QuantFormat::Q8_0: return R == 1 ? &integer_blocked<GgufAvx2<false>::At, 4> : &integer_blocked<GgufAvx2<false>::At, 2>;
    case QuantFormat::Q4_0: return &integer_blocked<GgufAvx2<true>::At, 2>;
    default: return nullptr;
  }
}

// The integer kernel for this CPU and format: AVX-512 VNNI's, else AVX2's (avx2_kernel: weight rows
// 2 at a time from 4 input rows on), else none (int8: nor for rows so long that a lane's int32 sum
// could overflow). For fewer than 4 rows (decoding: bound by memory, yet one weight row's single
// chain of sums left bandwidth unused: a 1.1B step on 2 Zen 4 threads, q8_0 30.1 → 26.2 ms with two
// rows a pass; under the AVX2 cap int8 35.4 → 30.4 → 29.0 ms with one, two and four, q8_0 33.1 →
// 29.5 → 28.7, q4_0 32.0 → 31.3 with two) with VNNI q8_0's weight rows two at a time (q4_0's one,
// its unpacking the bound; int8's rows past its interleaved groups one), on AVX2 four for one row,
// else two (q4_0's two; a q4_0 weight held interleaved, on either, takes its own kernel); from 4
// rows on with VNNI 4 (int8: 6, its 24 sums and the 4 input vectors fit the 32 registers; q4_0: 2,
// its sums take two registers an output) side by side, so each input vector loaded serves several
// weight rows: on 2 Zen 4 threads a 64-token int8 prompt pass of the 1.1B model took 469 ms with
// one and 327 with four, a 16-row decoding step 147 and 120 ms (q8_0 276 and 191, q4_0 291 and
// 212); later, with int8's sums in registers, a 1.1B MLP's products of 63 rows 5.19 ms with four
// and 4.83 with six, of 16 rows 1.56 and 1.38. Each output's chain of sums is the same either way
// (int8's integer sums are exact in any order).
IntegerKernel integer_kernel(QuantFormat f, int64_t K, int64_t R) {
  const bool many = R >= 4;
  if (!vnni_products()) return avx2_integer_products() ? avx2_kernel(f, K, R) : nullptr;
  switch (f) {
    case QuantFormat::Int8: return K > 65536 ? nullptr : many ? &integer_blocked<Int8Vnni, 6> : &integer_blocked<Int8Vnni, 1>;
    case QuantFormat::Q8_0: return many ? &integer_blocked<Q8Vnni, 4> : &integer_blocked<Q8Vnni, 2>;
    case QuantFormat::Q4_0: return many ? &integer_blocked<Q4Vnni, 2> : &integer_blocked<Q4Vnni, 1>;
    default: return nullptr;
  }
}
#else
using IntegerKernel = void (*)(const View&, const ActRows&, const ActSteps&, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
IntegerKernel integer_kernel(QuantFormat, int64_t, int64_t) { return nullptr; }
bool vnni_products() { return false; }
#endif

// The rows' products with the quantized weight (R × N): in bfloat16 where `out` asks for it, each
// output rounded from its float32 sum (to nearest even; by the thread that computed it where the
// kernel is threaded), else in float32. With `act`, the rows quantized first as the format's
// library does for inference.
at::Tensor rows_quant(const at::Tensor& x2, const QuantWeight& q, bool act, at::ScalarType out = at::kFloat) {
  const int64_t R = x2.size(0), K = q.in, N = q.out;
  auto y = at::empty({R, N}, x2.options().dtype(at::kFloat));
  View v = view_of(q);
  if (q.format == QuantFormat::NF4 && x2.scalar_type() == at::kBFloat16) v.round = View::Round::BF16;
  if (q.format == QuantFormat::NF4 && x2.scalar_type() == at::kHalf) v.round = View::Round::F16;
  float* Y = y.data_ptr<float>();
  // bfloat16 outputs rounded by each task, column range by column range, where a conversion of the
  // whole product followed it: an ATen call (about 5 µs) a layer a step less, during which the
  // other threads had waited (the 1.1B decoding: 154 a token)
  at::Tensor yb = out == at::kBFloat16 ? at::empty({R, N}, x2.options().dtype(at::kBFloat16)) : at::Tensor();
  auto* YB = yb.defined() ? static_cast<uint16_t*>(yb.data_ptr()) : nullptr;
  auto round_out = [&](int64_t r0, int64_t r1, int64_t n0, int64_t n1) {
    if (YB)
      for (int64_t r = r0; r < r1; ++r) round_bf16_into(Y + r * N + n0, YB + r * N + n0, n1 - n0);
  };
  auto result = [&] { return yb.defined() ? yb : y; };
  // interleaved weights: the first output of unit u (a group of kGroup, then single rows)
  auto column = [&](int64_t u) { return u < v.groups ? u * kGroup : v.groups * kGroup + (u - v.groups); };
  // about 64 KiB of weight a task
  const int64_t grain = std::max<int64_t>(4, (64 << 10) / std::max<int64_t>(q.nbytes() / N, 1));
#if defined(__x86_64__)
  if (!act && q.format == QuantFormat::Q4_0 && !v.interleaved && x2.scalar_type() == at::kBFloat16 && rows_bf16_products()) {
    auto xc = x2.contiguous();
    std::vector<uint16_t> xp(static_cast<size_t>(R * K));
    q4_bf16_rows_input(reinterpret_cast<const uint16_t*>(xc.const_data_ptr()), xp.data(), R, K);
    const uint16_t* X
    = xp.data();
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      fused_blocked<Q4Bf16, 4, 4, uint16_t>(v, X, Y, R, N, n0, n1);
      round_out(0, R, n0, n1);
    });
    return result();
  }
  if (v.round == View::Round::BF16 && rows_bf16_products()) {
    auto xc = x2.contiguous();
    std::vector<uint16_t> xp(static_cast<size_t>(R * K));
    even_then_odd(reinterpret_cast<const uint16_t*>(xc.const_data_ptr()), xp.data(), R * K, kNF4Block / 2);
    const uint16_t* rows = xp.data();
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      Nf4Tables tables;
      if (R > 4) nf4_bf16_parts(v, rows, Y, R, N, n0, n1, tables);
      else fused_blocked<Nf4Bf16, 1, 4, uint16_t>(v, rows, Y, R, N, n0, n1, tables);
      round_out(0, R, n0, n1);
    });
    return result();
  }
#endif
  at::Tensor xf;  // the rows in float32 where a kernel below takes them so
  if (act) {
    const ActRows a = act_quantize(q.format, x2.stride(1) == 1 ? x2 : x2.contiguous());
#if defined(__x86_64__)
    if (v.interleaved && q.format == QuantFormat::Int8) {
      const ActSteps s = act_steps(q.format, a, true);
      const int64_t units = v.groups + (N - v.groups * kGroup);
      const int64_t chunk = std::max<int64_t>(8, ((256 << 10) / K) / 8 * 8);  // (as below)
      for (int64_t r0 = 0; r0 < R; r0 += chunk) {
        const int64_t r1 = std::min(R, r0 + chunk);
        at::parallel_for(0, units, std::max<int64_t>(1, grain / kGroup), [&](int64_t u0, int64_t u1) {
          int8_interleaved_rows(v, a, s, Y, r0, r1, N, u0, u1);
          round_out(r0, r1, column(u0), column(u1));
        });
      }
      return result();
    }
    if (v.interleaved) {
      const ActSteps s = act_steps(q.format, a, true);
      const int64_t units = v.groups + (N - v.groups * kGroup);
      const bool vnni = vnni_products();
      at::parallel_for(0, units, std::max<int64_t>(1, grain / kGroup), [&](int64_t u0, int64_t u1) {
        if (vnni) q4_interleaved_rows(v, a, s, Y, R, N, u0, u1);
        else q4_interleaved_rows_avx2(v, a, s, Y, R, N, u0, u1);
        round_out(0, R, column(u0), column(u1));
      });
      return result();
    }
#endif
    if (const IntegerKernel kernel = integer_kernel(q.format, K, R)) {
      const ActSteps s = vnni_products() ? act_steps(q.format, a, false) : ActSteps{};
      // a long prompt in chunks of about 256 KiB of quantized input, each read from cache by every
      // task (the 1.1B's int8 pass on 2 Zen 4 threads: chunks of 32, 64, 128 rows or none within 2 %)
      const int64_t chunk = std::max<int64_t>(4, ((256 << 10) / K) / 4 * 4);
      for (int64_t r0 = 0; r0 < R; r0 += chunk) {
        const int64_t r1 = std::min(R, r0 + chunk);
        at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
          kernel(v, a, s, Y, r0, r1, N, n0, n1);
          round_out(r0, r1, n0, n1);
        });
      }
      return result();
    }
    xf = at::empty({R, K}, x2.options().dtype(at::kFloat));
    act_dequantize(q.format, a, xf.data_ptr<float>());
  } else {
    xf = x2.to(at::kFloat).contiguous();  // bfloat16 and float16 rows widen exactly
  }
  int lanes = 0;
  const FusedKernel kernel = fused_kernel(q.format, &lanes);
  if (!kernel || v.interleaved) {  // (interleaved q4_0 with autograd on: the tiles read its rows)
    rows_quant_tiles(v, xf.const_data_ptr<float>(), Y, R, N);
    round_out(0, R, 0, N);
    return result();
  }
  std::vector<float> xp(static_cast<size_t>(R * K));
#if defined(__x86_64__)
  if (lanes == 8 && v.round == View::Round::BF16) {  // (AVX2: nf4's table looked up as bfloat16 bytes)
    nf4_bf16_avx2_input(xf.const_data_ptr<float>(), xp.data(), R, K);
    const float* rows = xp.data();
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
      if (R > 1) nf4_bf16_avx2_rows(v, rows, Y, R, N, n0, n1);
      else fused_blocked<Fused256<Nf4Bf16x256, 4>::At, 1, 1>(v, rows, Y, R, N, n0, n1);
      round_out(0, R, n0, n1);
    });
    return result();
  }
#endif
  fused_rows_input(q.format, lanes, xf.const_data_ptr<float>(), xp.data(), R, K);
  const float* X
  = xp.data();
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    kernel(v, X, Y, R, N, n0, n1);
    round_out(0, R, n0, n1);
  });
  return result();
}

#if defined(ET_CUDA_QUANT)
// CUDA rows x (…, K) rounded for inference by one kernel (kernels/quant_cuda.cu): (R, K) float32.
at::Tensor act_rows_cuda(const at::Tensor& x, QuantFormat f) {
  const int64_t K = x.size(-1), R = x.numel() / K;
  auto xf = x.reshape({R, K}).to(at::kFloat).contiguous(), out = at::empty_like(xf);
  const int rc = et_act_rows_cuda(static_cast<int>(f), xf.const_data_ptr<float>(), out.data_ptr<float>(), static_cast<int>(R), K);
  TORCH_CHECK(rc == 0, "quantized linear: the CUDA kernel rounding the input did not start (cudaError_t ", rc, ")");
  return out;
}
#endif

// The input as the products see it for inference (x' above), in x's dtype and device.
at::Tensor act_input(const at::Tensor& x, QuantFormat f) {
#if defined(ET_CUDA_QUANT)
  if (x.is_cuda() && x.numel() > 0) return act_rows_cuda(x, f).view(x.sizes()).to(x.scalar_type());
#endif
  if (!x.device().is_cpu()) return act_dequantize_aten(x, f);
  const int64_t K = x.size(-1), R = x.numel() / K;
  auto xf = x.to(at::kFloat).contiguous();
  const ActRows a = act_quantize(f, xf.const_data_ptr<float>(), R, K);
  auto out = at::empty_like(xf);
  act_dequantize(f, a, out.data_ptr<float>());
  return out.to(x.scalar_type());
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The quantized weight through autograd's saved data: its tensors as held and format.
void save_quant(AutogradContext* ctx, const QuantWeight& q) {
  ctx->saved_data["format"] = static_cast<int64_t>(q.format);
  ctx->saved_data["out"] = q.out;
  ctx->saved_data["in"] = q.in;
  ctx->saved_data["interleaved"] = q.interleaved;
  for (const auto& [k, t] : q.named(true)) ctx->saved_data[k] = t;
}
QuantWeight load_quant(AutogradContext* ctx) {
  QuantWeight q;
  q.format = static_cast<QuantFormat>(ctx->saved_data["format"].toInt());
  q.out = ctx->saved_data["out"].toInt();
  q.in = ctx->saved_data["in"].toInt();
  q.set_named([&](const char* k) { return ctx->saved_data.count(k) ? ctx->saved_data[k].toTensor() : at::Tensor(); });
  q.interleaved = ctx->saved_data["interleaved"].toBool();
  return q;
}

// y = x Wᵀ over the dequantized weight, which backward dequantizes again rather than keep (a
// layer's float weight alive from forward to backward, for every layer, is the float model). (A
// bias is added outside, by autograd: a custom function's inputs must all be defined.)
struct QuantLinearFn : torch::autograd::Function<QuantLinearFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const QuantWeight& q) {
    save_quant(ctx, q);
    return nn::linear(x, dequantize_weight(q, x.scalar_type()), {});
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto q = load_quant(ctx);
    const auto& gy = grads[0];
    return {at::matmul(gy, dequantize_weight(q, gy.scalar_type())), at::Tensor()};
  }
};

}  // namespace

QuantFormat quant_format(const std::string& name) {
  if (name == "int8") return QuantFormat::Int8;
  if (name == "q8_0") return QuantFormat::Q8_0;
  if (name == "q4_0") return QuantFormat::Q4_0;
  if (name == "nf4") return QuantFormat::NF4;
  throw CodedError("ERR_INVALID_ARG", "unknown quantization '" + name + "': expected int8, q8_0, q4_0 or nf4");
}

const char* quant_format_name(QuantFormat f) {
  switch (f) {
    case QuantFormat::Int8: return "int8";
    case QuantFormat::Q8_0: return "q8_0";
    case QuantFormat::Q4_0: return "q4_0";
    case QuantFormat::NF4: return "nf4";
  }
  return "?";
}

int64_t quant_block(QuantFormat f) { return f == QuantFormat::Int8 ? 1 : f == QuantFormat::NF4 ? kNF4Block : kGgufBlock; }

std::vector<std::pair<std::string, at::Tensor>> QuantWeight::named(bool as_held) const {
  std::vector<std::pair<std::string, at::Tensor>> ts{
      {"weight", interleaved && !as_held ? interleaved_copy(format, weight, out, in, true) : weight}};
  if (format == QuantFormat::Int8) ts.emplace_back("SCB", scb);
  if (format == QuantFormat::NF4) {
    ts.emplace_back("absmax", absmax);
    ts.emplace_back("quant_map", quant_map);
    ts.emplace_back("nested_absmax", nested_absmax);
    ts.emplace_back("nested_quant_map", nested_quant_map);
    ts.emplace_back("offset", offset);
  }
  return ts;
}

void QuantWeight::set_named(const std::function<at::Tensor(const char*)>& get) {
  interleaved = false;
  weight = get("weight");
  scb = get("SCB");
  absmax = get("absmax");
  quant_map = get("quant_map");
  nested_absmax = get("nested_absmax");
  nested_quant_map = get("nested_quant_map");
  offset = get("offset");
}

// Every tensor of q, in one list (those of other formats undefined).
template <typename Q>
static std::array<decltype(&std::declval<Q&>().weight), 7> all_tensors(Q& q) {
  return {&q.weight, &q.scb, &q.absmax, &q.quant_map, &q.nested_absmax, &q.nested_quant_map, &q.offset};
}

QuantWeight QuantWeight::to(const at::Device& device) const {
  QuantWeight q = *this;
  if (interleaved && !device.is_cpu()) {  // other devices' kernels read gguf's layout
    q.weight = interleaved_copy(format, weight, out, in, true);
    q.interleaved = false;
  }
  for (auto* t : all_tensors(q))
    if (t->defined()) *t = t->to(device);
  return q;
}

QuantWeight QuantWeight::contiguous() const {
  QuantWeight q = *this;
  for (auto* t : all_tensors(q))
    if (t->defined()) *t = t->contiguous();
  return q;
}

int64_t QuantWeight::nbytes() const {
  int64_t n = 0;
  for (const auto* t : all_tensors(*this)) n += t->defined() ? t->nbytes() : 0;
  return n;
}

QuantWeight kernel_layout(QuantWeight q) {
#if defined(__x86_64__)
  // (int8: its integer kernel's sums stay within int32 up to 65536 columns, and take 4 at a time)
  const bool takes = q.format == QuantFormat::Q4_0 || (q.format == QuantFormat::Int8 && q.in % 4 == 0 && q.in <= 65536);
  // (q4_0 on AVX2 too: its kernel there reads the same layout)
  const bool kernel = vnni_products() || (q.format == QuantFormat::Q4_0 && avx2_integer_products());
  if (takes && !q.interleaved && q.out >= kGroup && q.weight.defined() && q.weight.device().is_cpu() && kernel) {
    // in place where nothing else holds the bytes (a weight just quantized), else into a copy
    const auto& w = q.weight;
    if (w.is_contiguous() && w.storage_offset() == 0 && w.use_count() == 1 && w.storage().use_count() == 1)
      interleave_(q.format, static_cast<uint8_t*>(w.data_ptr()), q.out, q.in, false);
    else q.weight = interleaved_copy(q.format, w, q.out, q.in, false);
    q.interleaved = true;
  }
#endif
  return q;
}

QuantWeight quantize_weight(const at::Tensor& w, QuantFormat f, const std::string& name) {
  if (w.dim() != 2 || !at::isFloatingType(w.scalar_type()))
    throw CodedError("ERR_INVALID_ARG", "quantize: weight '" + name + "' must be a floating (out, in) matrix");
  const int64_t N = w.size(0), K = w.size(1), B = quant_block(f);
  if (N == 0 || K == 0 || K % B != 0)
    throw CodedError("ERR_INVALID_ARG", std::string("quantize: ") + quant_format_name(f) + "'s block of " + std::to_string(B) +
                                            " does not divide the rows of weight '" + name + "' (" + std::to_string(N) + " × " +
                                            std::to_string(K) + ")");
  const FloatRows rows(w);
  // each task's rows through a buffer of its own; a row that is not finite (or, for int8, beyond
  // float16's range) is reported after the loop
  std::atomic<int> bad{0};
  auto each_row = [&](const std::function<void(int64_t, float*)>& fn) {
    at::parallel_for(0, N, 1, [&](int64_t a, int64_t b) {
      std::vector<float> buf(static_cast<size_t>(K));
      for (int64_t n = a; n < b && !bad.load(std::memory_order_relaxed); ++n) {
        if (!rows.row(n, buf.data())) {
          bad = 1;
          return;
        }
        if (f == QuantFormat::Int8 && std::any_of(buf.begin(), buf.end(), [](float v) { return std::fabs(v) >= 65520.0f; })) {
          bad = 2;
          return;
        }
        fn(n, buf.data());
      }
    });
    if (bad == 1) throw CodedError("ERR_INVALID_ARG", "quantize: weight '" + name + "' has NaN or infinite values");
    if (bad == 2)
      throw CodedError("ERR_INVALID_ARG", "quantize: weight '" + name +
                                              "' has values beyond float16's range, which int8 (bitsandbytes' Int8Params) rounds through");
  };
  QuantWeight q;
  q.format = f;
  q.out = N;
  q.in = K;
  const auto u8 = at::TensorOptions().dtype(at::kByte);
  switch (f) {
    case QuantFormat::Int8: {
      q.weight = at::empty({N, K}, at::kChar);
      q.scb = at::empty({N}, at::kFloat);
      auto* Q = q.weight.data_ptr<int8_t>();
      auto* S = q.scb.data_ptr<float>();
      each_row([&](int64_t n, float* x) { quantize_int8_row(x, K, Q + n * K, S + n); });
      break;
    }
    case QuantFormat::Q8_0:
    case QuantFormat::Q4_0: {
      const int64_t rb = K / kGgufBlock * gguf_block_bytes(f);
      q.weight = at::empty({N, rb}, u8);
      auto* Q = q.weight.data_ptr<uint8_t>();
      each_row(
          [&](int64_t n, float* x) { f == QuantFormat::Q8_0 ? quantize_q8_0_row(x, K, Q + n * rb) : quantize_q4_0_row(x, K, Q + n * rb); });
      break;
    }
    case QuantFormat::NF4: {
      const int64_t nb = N * K / kNF4Block;
      q.weight = at::empty({N * K / 2, 1}, u8);
      auto absmax = at::empty({nb}, at::kFloat);
      auto* Q = q.weight.data_ptr<uint8_t>();
      auto* A = absmax.data_ptr<float>();
      each_row([&](int64_t n, float* x) { quantize_nf4_row(x, K, Q + n * K / 2, A + n * (K / kNF4Block)); });
      // double quantization: the absmax less their mean, in blocks of 256 on the dynamic map
      q.quant_map = at::tensor(std::vector<float>(kNF4, kNF4 + 16), at::kFloat);
      q.nested_quant_map = dynamic_map();
      q.offset = absmax.mean();
      const float off = q.offset.item<float>();
      const int64_t nn = (nb + kNestedBlock - 1) / kNestedBlock;
      q.nested_absmax = at::empty({nn}, at::kFloat);
      q.absmax = at::empty({nb}, u8);
      const Midpoints mid(q.nested_quant_map.const_data_ptr<float>(), 256);
      auto* NA = q.nested_absmax.data_ptr<float>();
      auto* QA = q.absmax.data_ptr<uint8_t>();
      for (int64_t g = 0; g < nn; ++g) {
        const int64_t e = std::min(nb, (g + 1) * kNestedBlock);
        float amax = 0;
        for (int64_t i = g * kNestedBlock; i < e; ++i) amax = std::max(amax, std::fabs(A[i] - off));
        NA[g] = amax;
        const BlockScale s(amax);
        for (int64_t i = g * kNestedBlock; i < e; ++i) QA[i] = mid.code(s(A[i] - off));
      }
      break;
    }
  }
  return w.device().is_cpu() ? q : q.to(w.device());
}

void check_quant_weight(const QuantWeight& q, const std::string& name) {
  auto bad = [&](const std::string& what) { throw CodedError("ERR_STATE_DICT", "quantized weight '" + name + "': " + what); };
  auto need = [&](const at::Tensor& t, const char* key, at::ScalarType dt, std::vector<int64_t> shape) {
    if (!t.defined()) bad(std::string("the checkpoint has no '") + key + "'");
    if (t.scalar_type() != dt && !(at::isFloatingType(dt) && at::isFloatingType(t.scalar_type())))
      bad(std::string("'") + key + "' is " + std::string(c10::toString(t.scalar_type())) + ", expected " + c10::toString(dt));
    if (!t.sizes().equals(shape)) {
      std::ostringstream s;
      s << "'" << key << "' has shape " << t.sizes() << ", expected " << at::IntArrayRef(shape);
      bad(s.str());
    }
    if (t.device() != q.weight.device()) bad(std::string("'") + key + "' is on another device than 'weight'");
  };
  const int64_t N = q.out, K = q.in, B = quant_block(q.format);
  if (N <= 0 || K <= 0 || K % B != 0)
    bad("its rows (" + std::to_string(K) + ") are not a multiple of the block (" + std::to_string(B) + ")");
  switch (q.format) {
    case QuantFormat::Int8:
      need(q.weight, "weight", at::kChar, {N, K});
      need(q.scb, "SCB", at::kFloat, {N});
      break;
    case QuantFormat::Q8_0:
    case QuantFormat::Q4_0: need(q.weight, "weight", at::kByte, {N, K / kGgufBlock * gguf_block_bytes(q.format)}); break;
    case QuantFormat::NF4: {
      const int64_t nb = N * K / kNF4Block;
      need(q.weight, "weight", at::kByte, {N * K / 2, 1});
      need(q.absmax, "absmax", at::kByte, {nb});
      need(q.quant_map, "quant_map", at::kFloat, {16});
      need(q.nested_absmax, "nested_absmax", at::kFloat, {(nb + kNestedBlock - 1) / kNestedBlock});
      need(q.nested_quant_map, "nested_quant_map", at::kFloat, {256});
      need(q.offset, "offset", at::kFloat, {});
      break;
    }
  }
}

at::Tensor dequantize_weight(const QuantWeight& q, at::ScalarType dtype) {
  if (!q.weight.device().is_cpu()) return dequantize_aten(q, dtype);
  const int64_t N = q.out, K = q.in;
  auto out = at::empty({N, K}, at::TensorOptions().dtype(dtype));
  const View v = view_of(q);
  at::parallel_for(0, N, std::max<int64_t>(1, 16384 / K), [&](int64_t a, int64_t b) {
    std::vector<float> tmp(static_cast<size_t>(K));
    for (int64_t n = a; n < b; ++n) {
      switch (dtype) {
        case at::kFloat: dequant_row_into(v, n, out.data_ptr<float>() + n * K, false, tmp.data()); break;
        case at::kBFloat16: dequant_row_into(v, n, out.data_ptr<c10::BFloat16>() + n * K, true, tmp.data()); break;
        case at::kHalf: dequant_row_as(v, n, out.data_ptr<c10::Half>() + n * K, tmp.data()); break;
        case at::kDouble: dequant_row_as(v, n, out.data_ptr<double>() + n * K, tmp.data()); break;
        default: TORCH_CHECK(false, "dequantize: unsupported dtype ", dtype);
      }
    }
  });
  return out;
}

namespace {

// A prompt's pass of a few bfloat16 rows (R ≤ kFewRows, past what the row kernels over the
// quantized weight take): the weight dequantized a tile of outputs at a time (128 KiB, in a buffer
// the thread keeps) and the bfloat16 row kernels over each tile while it is in cache. The same values
// and chains of sums as linear gives over the whole dequantized weight (rows_dot), outputs bit for
// bit equal, without writing that weight out and reading it back (a 7B's 11008 × 4096 is 90 MB a
// call). One process alternating the two on 2 Zen 4 threads, 38 rows: nf4 4096 → 11008 13.5 →
// 12.3 ms, 64 rows 21.5 → 18.7; q8_0 past its 24 rows, 40 rows, 14.7 → 13.5; the 1.1B's nf4 prompt
// pass of 38 positions 256–277 → 246–247 ms.
at::Tensor dequant_tiles_bf16(const at::Tensor& x2, const QuantWeight& q, const at::Tensor& b) {
  const View v = view_of(q);
  const int64_t N = q.out, K = q.in, R = x2.size(0);
  auto y = at::empty({R, N}, x2.options().dtype(at::kFloat));
  const auto* X
  = reinterpret_cast<const uint16_t*>(x2.const_data_ptr());
  float* Y = y.data_ptr<float>();
  const int64_t tile = std::clamp<int64_t>((128 << 10) / (K * 2) / 4 * 4, 4, 1024);
  at::parallel_for(0, (N + tile - 1) / tile, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<uint16_t> buf;
    thread_local std::vector<float> tmp;
    buf.resize(static_cast<size_t>(tile * K));
    tmp.resize(static_cast<size_t>(K));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * tile, nt = std::min(tile, N - n0);
      for (int64_t i = 0; i < nt; ++i) dequant_row_into(v, n0 + i, buf.data() + i * K, true, tmp.data());
      rows_dot(true, buf.data(), X, Y + n0, R, N, nt, K);
    }
  });
  if (b.defined()) y.add_(b);
  return y.to(at::kBFloat16);
}

}  // namespace

#if defined(ET_CUDA_QUANT)
// A few rows on CUDA: kernels/quant_cuda.cu over the rows (rounded first for inference by one kernel,
// as on the CPU), the weight decoded in registers.
at::Tensor rows_quant_cuda(const at::Tensor& x, const QuantWeight& q, const at::Tensor& b, bool act) {
  const int64_t R = x.numel() / q.in;
  // (rounded as the CPU rounds it, in float32: not back to the rows' dtype)
  const auto x2 = act ? act_rows_cuda(x, q.format) : x.reshape({R, q.in}).to(at::kFloat).contiguous();
  auto y = at::empty({R, q.out}, x2.options());
  auto f32 = [](const at::Tensor& t) { return t.defined() ? t.to(at::kFloat).contiguous() : t; };
  const at::Tensor scb = f32(q.scb), qm = f32(q.quant_map), na = f32(q.nested_absmax), nm = f32(q.nested_quant_map), off = f32(q.offset);
  auto ptr = [](const at::Tensor& t) { return t.defined() ? t.const_data_ptr<float>() : nullptr; };
  // nf4's decoded weight rounded to the rows' dtype, as on the CPU (View::round)
  const bool nf4 = q.format == QuantFormat::NF4;
  const int rnd = nf4 && x.scalar_type() == at::kBFloat16 ? 1 : nf4 && x.scalar_type() == at::kHalf ? 2 : 0;
  const int rc = et_quant_rows_cuda(static_cast<int>(q.format), q.weight.const_data_ptr(), ptr(scb),
                                    q.absmax.defined() ? q.absmax.const_data_ptr<uint8_t>() : nullptr, ptr(qm), ptr(na), ptr(nm), ptr(off),
                                    x2.const_data_ptr<float>(), y.data_ptr<float>(), static_cast<int>(R), q.out, q.in, rnd);
  TORCH_CHECK(rc == 0, "quantized linear: the CUDA kernel did not start (cudaError_t ", rc, ")");
  if (b.defined()) y.add_(b.to(at::kFloat));
  auto shape = x.sizes().vec();
  shape.back() = q.out;
  return y.to(x.scalar_type()).view(shape);
}
#endif

at::Tensor quant_linear(const at::Tensor& x, const QuantWeight& q, const at::Tensor& b, bool rows) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == q.in, "quantized linear: input ", x.sizes(), " does not match weight (", q.out, ", ", q.in,
              ")");
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "quantized linear: input must be floating, got ", x.scalar_type());
  const bool grad = at::GradMode::is_enabled() && (x.requires_grad() || (b.defined() && b.requires_grad()));
  const int64_t R = x.numel() / q.in;
  const bool act = !at::GradMode::is_enabled() && quantizes_input(q.format);
  // the row kernels: decoding rows, and prompts the integer kernels take faster than dequantizing the
  // weight for oneDNN (2 Zen 4 threads, the 1.1B's prompt pass): int8's at every length (72 positions
  // 359 against 526 ms, 512 2.7 s against 3.5), q8_0's up to 24 (12: 133 against 207 ms, 24 262
  // against 288, 32 about even, 64 634 against 490), interleaved q4_0's at every length (16 108
  // against 265 ms, 128 568 against 918, 512 2.3 s where bfloat16's own pass took 3.0), other rows up to 8;
  // on AVX2 without VNNI (its integer kernels; the 1.1B's MLP under the AVX2 profile, bfloat16 rows)
  // int8's at every length (16 rows 3.7 against 15.6 ms, 128 26 against 44), q8_0's up to 64 (64: 23
  // against 29; 128: 45 against 45; q4_0 held row by row was alike), interleaved q4_0's at every
  // length (the 1.1B's pass under the AVX2 cap: 16 positions 251 → 141 ms, 128 1.78 → 1.01 s, 512
  // 7.0 → 4.3 s, against its row-by-row kernel up to 64 and dequantized past it)
  const bool integer = act && integer_kernel(q.format, q.in, 1);
  const bool all = act && (q.interleaved || (q.format == QuantFormat::Int8 && integer));
  const int64_t few = !integer ? 8 : !vnni_products() ? 64 : q.format == QuantFormat::Q8_0 ? 24 : 8;
  if (!grad && x.device().is_cpu() && R > 0 && (rows || all || R <= few) &&
      (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf)) {
    auto y = rows_quant(x.reshape({R, q.in}), q, act, b.defined() ? at::kFloat : x.scalar_type());
    if (b.defined()) y.add_(b.to(at::kFloat));
    auto shape = x.sizes().vec();
    shape.back() = q.out;
    return y.to(x.scalar_type()).view(shape);
  }
#if defined(ET_CUDA_QUANT)
  if (!grad && x.is_cuda() && R > 0 && R <= kQuantCudaRows && (rows || R <= 8)) return rows_quant_cuda(x, q, b, act);
#endif
  // a prompt's few bfloat16 rows, where linear would take the whole dequantized weight to the row
  // kernels, on bfloat16 products (on AVX2, whose row kernels widen the rows each call, tiles of 128
  // KiB made the 1.1B's 2048 → 5632 8 % slower at 38 and 64 rows)
  if (!grad && x.device().is_cpu() && x.scalar_type() == at::kBFloat16 && R > 1 && R <= kFewRows && rows_bf16_products() &&
      rows_few_applies() && !at::autocast::is_autocast_enabled(at::kCPU) && (!b.defined() || (b.dim() == 1 && b.device().is_cpu()))) {
    auto x2 = (act ? act_input(x, q.format) : x).reshape({R, q.in}).contiguous();
    auto shape = x.sizes().vec();
    shape.back() = q.out;
    return dequant_tiles_bf16(x2, q, b).view(shape);
  }
  if (grad) {
    auto y = QuantLinearFn::apply(x, q);
    return b.defined() ? y + b : y;
  }
  return nn::linear(act && R > 0 ? act_input(x, q.format) : x, dequantize_weight(q, x.scalar_type()), b);
}

}  // namespace et::nn
