#include "kernels/linear_rows.h"

#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#include <ATen/autocast_mode.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kernels/linear.h"

namespace et::nn {

// ---- products of a few rows, each as if alone (decoding) -----------------------------------------
//
// y[r] = W x[r] for a weight (N, K) and R rows x (R, K), float32 or bfloat16, sums in float32: the
// weight is read once for all rows (decoding is bound by memory: one row, or sixteen, take the time
// the weight takes to stream), and each output is one fixed chain of sums over k, the same whatever
// R is and wherever the row lies, so a request decoded beside others gets the numbers it gets
// alone. ATen's bfloat16 GEMV ran at half the speed memory allows (a 1.1B LLaMA decoded at 7 tok/s
// in bfloat16, 14 in float16); the products of R rows on oneDNN or the BLAS pick their kernels and
// summation orders by R.

namespace {

float bf16_to_float(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float as_float(float v) { return v; }
inline float as_float(uint16_t v) { return bf16_to_float(v); }

// s + Σ x[k]·w[k] over k in [k0, K): the elements the vector loops leave.
template <typename TX, typename TW>
float dot_tail(float s, const TX* x, const TW* w, int64_t k0, int64_t K) {
  for (int64_t k = k0; k < K; ++k) s += as_float(x[k]) * as_float(w[k]);
  return s;
}

// A kernel computes Y[r·ldy + n] for r < R, n in [n0, n1).
template <typename T>
using RowsKernel = void (*)(const T* W, const T* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K);

#if defined(__x86_64__)
#define ET_AVX512 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define ET_AVX2 __attribute__((target("avx2,fma")))
#define ET_UNROLL _Pragma("GCC unroll 16")  // a loop over the NB weight rows or M input rows of a block

// One output's chain: one vector of float32 sums (16 lanes on AVX-512, 8 on AVX2) takes the blocks
// of L inputs k = 0, L, 2L, … in order, each lane its own products; then its lanes are summed (a
// fixed tree), then the scalar tail. Nothing in it depends on the rows or outputs beside it.
//
// A block computes NB weight rows (outputs n … n + NB − 1) for M input rows at once: NB·M
// accumulators in registers, each weight vector loaded once for the M rows and each input vector
// once for the NB weight rows. Where the rows make several groups of M, K is cut in chunks of KC
// inputs: the chunk of the NB weight rows comes from memory once and stays in L1 while every group
// takes it, the sums waiting in a small buffer between chunks (where they wait changes, not their
// chain). Before, the whole weight rows (NB 4 × K, larger than L1) were read again from L2 for every
// pair of rows, with two sums per output (NB 4 × M 2 × 2 accumulators): on a Zen 4 (2 threads)
// sixteen rows of a 2048 × 5632 bfloat16 product took 2.5–3 × one row's time on AVX-512 BF16 and
// 5–7 × on AVX2; now 2.2–2.5 × and about 3 ×. Against the dot products' peak measured later (12
// independent vdpbf16ps chains: 460 GFLOP/s on those 2 cores), perf puts a sixteen-row decoding
// step's later K chunks at about 76 % of it and a block's first chunk (its weight from memory) at
// about 43 %, not the 85 % once estimated here; the next block is now fetched while a block
// computes (rows_blocked), which took such a step from about 165 to about 130 ms. Since, the
// next chunk is fetched into L1 as well (rows_blocked): a sixteen-row step about 114 → 108 ms.

// Lines a block asks for ahead of their use while it computes: n rows ld bytes apart from p, at the
// block's k (a line of each a step).
struct Fetch {
  const char* p = nullptr;
  int64_t ld = 0;
  int n = 0;
};

struct Bf16Avx512 {
  using T = uint16_t;
  using V = __m512bh;
  static constexpr int L = 32;
  ET_AVX512 static V load(const T* p) { return (V)_mm512_loadu_si512(p); }
  ET_AVX512 static __m512 madd(__m512 a, V x, V w) { return _mm512_dpbf16_ps(a, x, w); }
};
struct F32Avx512 {
  using T = float;
  using V = __m512;
  static constexpr int L = 16;
  ET_AVX512 static V load(const T* p) { return _mm512_loadu_ps(p); }
  ET_AVX512 static __m512 madd(__m512 a, V x, V w) { return _mm512_fmadd_ps(x, w, a); }
};

template <typename Op>
struct BlockAvx512 {
  using T = typename Op::T;  // the weight's type
  using TX = T;              // the rows'
  static constexpr int L = Op::L, S = 16;  // inputs per vector step, sums per accumulator
  // acc[(j·NB + i)·S …] += the products of weight row i (W + i·ldw) and input row j (X + j·ldx)
  // over k in [0, len), len a multiple of L
  // (Z: the sums start at zero instead of from acc)
  // (l2, l1: lines fetched towards L2 and into L1 over the same k)
  template <int NB, int M, bool Z>
  ET_AVX512 static void run(const T* W, int64_t ldw, const T* X, int64_t ldx, float* acc, int64_t len, Fetch l2 = {}, Fetch l1 = {}) {
    __m512 a[NB * M];
    ET_UNROLL for (int t = 0; t < NB * M; ++t) a[t] = Z ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + t * S);
    for (int64_t k = 0; k < len; k += L) {
      for (int i = 0; i < l2.n; ++i) _mm_prefetch(l2.p + i * l2.ld + k * static_cast<int64_t>(sizeof(T)), _MM_HINT_T1);
      for (int i = 0; i < l1.n; ++i) _mm_prefetch(l1.p + i * l1.ld + k * static_cast<int64_t>(sizeof(T)), _MM_HINT_T0);
      typename Op::V w[NB];
      ET_UNROLL for (int i = 0; i < NB; ++i) w[i] = Op::load(W + i * ldw + k);
      ET_UNROLL for (int j = 0; j < M; ++j) {
        const auto x = Op::load(X + j * ldx + k);
        ET_UNROLL for (int i = 0; i < NB; ++i) a[j * NB + i] = Op::madd(a[j * NB + i], x, w[i]);
      }
    }
    ET_UNROLL for (int t = 0; t < NB * M; ++t) _mm512_storeu_ps(acc + t * S, a[t]);
  }
  // An output's 16 lanes summed by the tree sum4 takes for each of its four (the same adds of the
  // same pairs), so an output's sum does not depend on whether it fell in a block of four or one.
  ET_AVX512 static float sum(const float* acc) {
    const __m512 a = _mm512_loadu_ps(acc);
    const __m512 x = _mm512_add_ps(_mm512_unpacklo_ps(a, a), _mm512_unpackhi_ps(a, a));
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(x, x, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(x, x, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(z), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1)));
    return _mm_cvtss_f32(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
  // The four sums of acc[0 … 63] (an output's 16 lanes each) into out[0 … 3], by one fixed tree
  // for the four at once (lanes paired within 128-bit quarters, then the quarters added).
  static constexpr bool has_sum4 = true;
  ET_AVX512 static void sum4(const float* acc, float* out) {
    const __m512 a0 = _mm512_loadu_ps(acc), a1 = _mm512_loadu_ps(acc + 16), a2 = _mm512_loadu_ps(acc + 32), a3 = _mm512_loadu_ps(acc + 48);
    const __m512 x = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    const __m512 y = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(x, y, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(z), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(z), 1)));
    _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
};

// 8 bfloat16 → 8 float32 (exactly)
ET_AVX2 inline __m256 widen8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
ET_AVX2 inline __m256 widen8(const float* p) { return _mm256_loadu_ps(p); }

ET_AVX2 inline float hsum8(__m256 a) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

// AVX2 has no bfloat16 products: the rows are widened to float32 once per call (rows_avx2_bf16), a
// bfloat16 weight as it is read, by each group of rows (TW bfloat16; float32 weights: TW float32).
template <typename TW>
struct BlockAvx2 {
  using T = TW;
  using TX = float;
  static constexpr int L = 8, S = 8;
  template <int NB, int M, bool Z>
  ET_AVX2 static void run(const TW* W, int64_t ldw, const float* X, int64_t ldx, float* acc, int64_t len, Fetch l2 = {}, Fetch l1 = {}) {
    __m256 a[NB * M];
    ET_UNROLL for (int t = 0; t < NB * M; ++t) a[t] = Z ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + t * S);
    for (int64_t k = 0; k < len; k += L) {
      if (k % (64 / static_cast<int64_t>(sizeof(TW))) == 0) {
        for (int i = 0; i < l2.n; ++i) _mm_prefetch(l2.p + i * l2.ld + k * static_cast<int64_t>(sizeof(TW)), _MM_HINT_T1);
        for (int i = 0; i < l1.n; ++i) _mm_prefetch(l1.p + i * l1.ld + k * static_cast<int64_t>(sizeof(TW)), _MM_HINT_T0);
      }
      __m256 w[NB];
      ET_UNROLL for (int i = 0; i < NB; ++i) w[i] = widen8(W + i * ldw + k);
      ET_UNROLL for (int j = 0; j < M; ++j) {
        const __m256 x = _mm256_loadu_ps(X + j * ldx + k);
        ET_UNROLL for (int i = 0; i < NB; ++i) a[j * NB + i] = _mm256_fmadd_ps(x, w[i], a[j * NB + i]);
      }
    }
    ET_UNROLL for (int t = 0; t < NB * M; ++t) _mm256_storeu_ps(acc + t * S, a[t]);
  }
  ET_AVX2 static float sum(const float* acc) { return hsum8(_mm256_loadu_ps(acc)); }
  static constexpr bool has_sum4 = false;
};

// The block for the last m < MM rows.
template <typename Blk, int NB, int M, bool Z>
void run_rest(int m, const typename Blk::T* W, int64_t ldw, const typename Blk::TX* X, int64_t ldx, float* acc, int64_t len, Fetch l2, Fetch l1) {
  if (m == M) Blk::template run<NB, M, Z>(W, ldw, X, ldx, acc, len, l2, l1);
  else if constexpr (M > 1) run_rest<Blk, NB, M - 1, Z>(m, W, ldw, X, ldx, acc, len, l2, l1);
}

// K chunks of 1 KiB of each weight row (a block's NB rows of them stay in L1 with the rows' chunks)
// and rows widened to float32 64 bytes further apart than a multiple of 4 KiB: rows 4 KiB apart
// (K 1024 or 2048 in float32) fall on the same L1 sets.
// More than sixteen rows (a short prompt's pass): their chunk cannot stay in L1 whatever its size,
// and chunks of 4 KiB store and load the sums a quarter as often (the 1.1B's prompt pass in
// bfloat16 on 2 Zen 4 threads: 32 positions 188 → 180 ms, 48 280 → 263; under the AVX2 cap 24
// positions 297 → 277, 48 605 → 549).
constexpr int64_t kChunkBytes = 1024, kChunkBytesMany = 4096, kPad = 16;

// Outputs [n0, n1) of the R rows X (row stride ldx), W (N, K) read as the block's type: weight rows
// NB at a time (the last ones one by one), K in chunks of KC where the rows make several groups,
// input rows MM at a time (the last R mod MM together).
template <typename Blk, int NB, int MM>
void rows_blocked(const typename Blk::T* W, const typename Blk::TX* X, int64_t ldx, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1,
                  int64_t K) {
  using T = typename Blk::T;
  constexpr int S = Blk::S;
  const int64_t KC = (R > 16 ? kChunkBytesMany : kChunkBytes) / static_cast<int64_t>(sizeof(T));
  const int64_t Kv = K / Blk::L * Blk::L;                    // the vector part of each row
  const int64_t kc = R > MM ? KC : std::max<int64_t>(Kv, 1);  // one group of rows: nothing to share, no chunks
  // (where a chunk of every row takes at most half of L1: the next weight chunk fetched into L1 beside it)
  const bool l1_fits = R * kc * static_cast<int64_t>(sizeof(typename Blk::TX)) <= 16 * 1024;
  thread_local std::vector<float> acc;
  acc.resize(static_cast<size_t>(R * NB * S));
  auto block = [&](auto nb, int64_t n) {
    constexpr int B = decltype(nb)::value;
    if (Kv == 0) std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t k0 = 0; k0 < Kv; k0 += kc) {
      const int64_t len = std::min(kc, Kv - k0);
      const T* w = W + n * K + k0;
      const int64_t ldw = K;
      // The next block's weight asked of L2 while this one computes, spread over the steps: the
      // hardware's stream prefetch starts only after a new weight row's first misses, and with a
      // chunk's first group waiting on memory and the others not, memory and arithmetic took
      // turns. Where the rows make G groups, group j fetches the same chunk of the next block's
      // rows j, j + G, … as it goes, a line of each a step (one group: all of them). On a Zen 4 (2
      // threads, the 1.1B in bfloat16) a sixteen-row step went from 162–166 to 125–138 ms, an
      // eight-row one from 118 to 86, and one-row decoding 6–27 % faster (median 10 %; AVX2 17–33 %).
      const int64_t ahead = std::min<int64_t>(NB, n1 - n - B);  // rows of the next block
      const int64_t G = (R + MM - 1) / MM;
      const char* next = reinterpret_cast<const char*>(W + (n + B) * K + k0);
      const int64_t row = K * static_cast<int64_t>(sizeof(T));
      // rows [0, count) from base spread over `over` groups: the j-th takes rows j, j + over, …
      auto spread = [&](const char* base, int64_t count, int64_t over, int64_t j) {
        return Fetch{base + j * row, over * row, j < count ? static_cast<int>((count - j + over - 1) / over) : 0};
      };
      auto fetch = [&](int64_t j) { return spread(next, ahead, G, j); };
      // The chunk after this one (this block's next, else the next block's first) asked of L1 while
      // groups 1 … G − 1 take this one, its rows spread over them: the next chunk's first group
      // found it in L2 and waited on it (the same blocks over weights already in L1: about 30 % faster on a
      // Zen 4). A sixteen-row step of the 1.1B in bfloat16 (2 Zen 4 threads, one process alternating
      // with and without): 114 → 108 ms, twelve rows 104 → 93, six 58 → 54; under the AVX2 cap eight
      // rows 126 → 117, sixteen unchanged (their float32 chunk fills L1: not fetched there).
      const bool last = k0 + kc >= Kv;
      const char* after = reinterpret_cast<const char*>(last ? W + (n + B) * K : w + kc);
      const int64_t rows_after = last ? ahead : B;
      auto fetch1 = [&](int64_t j) { return l1_fits && j > 0 ? spread(after, rows_after, G - 1, j - 1) : Fetch{}; };
      auto groups = [&](auto zero) {
        constexpr bool Z = decltype(zero)::value;  // the first chunk: the sums start at zero
        int64_t r = 0;
        for (; r + MM <= R; r += MM) {
          const int64_t j = r / MM;
          Blk::template run<B, MM, Z>(w, ldw, X + r * ldx + k0, ldx, acc.data() + r * B * S, len, fetch(j), fetch1(j));
        }
        if constexpr (MM > 1)
          if (r < R)
            run_rest<Blk, B, MM - 1, Z>(static_cast<int>(R - r), w, ldw, X + r * ldx + k0, ldx, acc.data() + r * B * S, len, fetch(r / MM),
                                        fetch1(r / MM));
      };
      if (k0 == 0) groups(std::true_type{});
      else groups(std::false_type{});
    }
    for (int64_t r = 0; r < R; ++r) {
      float s4[4];
      if constexpr (B == 4 && Blk::has_sum4) Blk::sum4(acc.data() + r * B * S, s4);
      for (int i = 0; i < B; ++i) {
        float s = 0.f;
        if constexpr (B == 4 && Blk::has_sum4) s = s4[i];
        else s = Blk::sum(acc.data() + (r * B + i) * S);
        Y[r * ldy + n + i] = dot_tail(s, X + r * ldx, W + (n + i) * K, Kv, K);
      }
    }
  };
  int64_t n = n0;
  for (; n + NB <= n1; n += NB) block(std::integral_constant<int, NB>{}, n);
  for (; n < n1; ++n) block(std::integral_constant<int, 1>{}, n);
}

// The blockings: NB·M accumulators, the NB weight vectors and one input vector in registers (32 on
// AVX-512, 16 on AVX2); on a Zen 4 4 × 4 beat 6 × 4, 4 × 6 and 3 × 8, and 3 × 4 beat 2 × 5 and 2 × 6.
constexpr int kNB512 = 4, kMM512 = 4, kNBAvx2 = 3, kMMAvx2 = 4;

template <typename Blk, typename T>
void rows_avx512_blocks(const T* W, const T* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  // one row: six weight rows at a time (3 % more tokens/s than four on a Zen 4)
  if (R == 1) rows_blocked<Blk, 6, 1>(W, X, K, Y, R, ldy, n0, n1, K);
  else rows_blocked<Blk, kNB512, kMM512>(W, X, K, Y, R, ldy, n0, n1, K);
}
void rows_avx2_f32(const float* W, const float* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  rows_blocked<BlockAvx2<float>, kNBAvx2, kMMAvx2>(W, X, K, Y, R, ldy, n0, n1, K);
}

// bfloat16 on AVX2: the rows widened once (exactly; each padded by 64 bytes, as above), the weight
// widened as it is read, by each group of rows from its chunk in L1. (Widened once into a float32
// chunk that every group read, the widening was where the weight's misses landed: 27 % of a
// sixteen-row step of the 1.1B on 2 Zen 4 threads under the AVX2 cap; read as it lies, 16 rows 299 →
// 215 ms a step, 8 rows 175 → 115, 5 rows 149 → 85.)
void rows_avx2_bf16(const uint16_t* W, const uint16_t* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  thread_local std::vector<float> xf;
  const int64_t ldx = K + kPad;
  xf.resize(static_cast<size_t>(R * ldx));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < K; ++k) xf[r * ldx + k] = bf16_to_float(X[r * K + k]);
  // one row: six weight rows at a time, six chains in flight (three left it 20 % below the speed
  // memory gives on a Zen 4)
  if (R == 1) rows_blocked<BlockAvx2<uint16_t>, 6, 1>(W, xf.data(), ldx, Y, R, ldy, n0, n1, K);
  else rows_blocked<BlockAvx2<uint16_t>, kNBAvx2, kMMAvx2>(W, xf.data(), ldx, Y, R, ldy, n0, n1, K);
}
#endif

template <typename T>
void rows_scalar(const T* W, const T* X, float* Y, int64_t R, int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t r = 0; r < R; ++r) Y[r * ldy + n] = dot_tail(0.f, X + r * K, W + n * K, 0, K);
}

// Whether the process asks libtorch to stay at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2 or
// ATEN_CPU_CAPABILITY=avx2, as the AVX2 benchmark profile and CI's second pass set).
bool capped_at_avx2() {
  auto capped = [](const char* var, const char* avx2) {
    const char* v = std::getenv(var);
    return v && std::string_view(v).find(avx2) == 0;
  };
  return capped("ONEDNN_MAX_CPU_ISA", "AVX2") || capped("ATEN_CPU_CAPABILITY", "avx2");
}

// The kernels for this CPU: AVX-512 (with BF16 for bfloat16), else AVX2, else plain C++; chosen once.
template <typename T>
RowsKernel<T> rows_kernel() {
  static const RowsKernel<T> k = []() -> RowsKernel<T> {
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool avx2_only = capped_at_avx2();
    if constexpr (std::is_same_v<T, uint16_t>) {
      if (!avx2_only && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw"))
        return &rows_avx512_blocks<BlockAvx512<Bf16Avx512>, T>;
    } else {
      if (!avx2_only && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))  // the block kernel's target
        return &rows_avx512_blocks<BlockAvx512<F32Avx512>, T>;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
      if constexpr (std::is_same_v<T, uint16_t>) return &rows_avx2_bf16;
      else return &rows_avx2_f32;
    }
#endif
    return &rows_scalar<T>;
  }();
  return k;
}

}  // namespace

// Whether the row kernels take this product: float32 or bfloat16 rows and weight on the CPU, a
// contiguous weight, no autograd graph, no autocast.
bool rows_kernel_applies(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (!x.device().is_cpu() || w.dim() != 2 || !w.is_contiguous() || x.scalar_type() != w.scalar_type() || w.layout() != at::kStrided)
    return false;
  if (w.scalar_type() != at::kBFloat16 && w.scalar_type() != at::kFloat) return false;
  if (x.dim() < 1 || x.size(-1) != w.size(1) || w.numel() == 0 || x.numel() == 0) return false;
  if (b.defined() && (b.dim() != 1 || b.size(0) != w.size(0) || !b.device().is_cpu())) return false;
  if (at::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (b.defined() && b.requires_grad()))) return false;
  return !at::autocast::is_autocast_enabled(at::kCPU);
}

namespace {

#if defined(__x86_64__)
// ---- bfloat16 rows on AMX --------------------------------------------------------------------------
//
// On CPUs with AMX the vector kernels above are compute-bound from a few rows on (sixteen rows of a
// 1.1B model: 0.3 s a step where streaming the weights takes 0.1 s). The tiles compute Yᵀ = W Xᵀ:
// A = 16 weight rows × 32 k as they lie in memory, B = 32 k × 16 input rows packed in pairs (the
// tiles' VNNI layout, made once per call from the few rows), C = 16 × 16 float32 sums. Each sum
// takes its own weight row and input row through the same chain of tile products whatever the other
// columns hold (zeros where fewer than 16 rows), so a row's outputs are the ones it gets alone.
// Whole blocks of 16 outputs take the tiles; the last N mod 16 outputs and any K not a multiple of
// 32 take the vector kernel (the choice depends on the weight's shape only).

struct TileConfig {
  uint8_t palette_id = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// AMX-BF16 and AMX-TILE present, the process allowed to use the tile data (Linux asks each process
// to request it), and no AVX2 cap asked for; checked once.
bool amx_bf16() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (capped_at_avx2() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;  // AMX-BF16, AMX-TILE
    constexpr long kReqXcompPerm = 0x1023, kXtiledata = 18;   // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtiledata) == 0;
  }();
  return ok;
}

// Rows r0 … r0 + m − 1 (m ≤ 16) of X (·, K) as B tiles: P[kb][i][c] = the pair of bfloat16 k = 32·kb + 2i, 2i + 1 of row r0 + c.
void pack_rows_vnni(const uint16_t* X, int64_t r0, int64_t m, int64_t K, uint32_t* P) {
  std::memset(P, 0, static_cast<size_t>(K / 32) * 256 * 4);
  for (int64_t c = 0; c < m; ++c) {
    const auto* x = reinterpret_cast<const uint32_t*>(X + (r0 + c) * K);
    for (int64_t kb = 0; kb < K / 32; ++kb)
      for (int i = 0; i < 16; ++i) P[(kb * 16 + i) * 16 + c] = x[kb * 16 + i];
  }
}

// Output blocks [nb0, nb1) (16 outputs each) for the m packed rows: Y[(r0 + c)·ldy + n].
__attribute__((target("amx-tile,amx-bf16"))) void amx_blocks(const uint16_t* W, const uint32_t* P, float* Y, int64_t r0, int64_t m,
                                                             int64_t ldy, int64_t nb0, int64_t nb1, int64_t K) {
  TileConfig cfg;
  for (int t = 0; t < 5; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  alignas(64) float out[2][16][16];
  for (int64_t nb = nb0; nb < nb1; nb += 2) {
    const bool two = nb + 1 < nb1;
    _tile_zero(0);
    _tile_zero(1);
    for (int64_t kb = 0; kb < K / 32; ++kb) {
      // each row of a block is its own stream; a weight mapped from its file lies in 4 KiB pages,
      // whose ends stop the hardware prefetcher: fetch 8 tiles (512 bytes) ahead by hand
      if (kb + 8 < K / 32)
        for (int64_t i = 0; i < (two ? 32 : 16); ++i)
          _mm_prefetch(reinterpret_cast<const char*>(W + (nb * 16 + i) * K + (kb + 8) * 32), _MM_HINT_T0);
      _tile_loadd(4, P + kb * 256, 64);
      _tile_loadd(2, W + nb * 16 * K + kb * 32, K * 2);
      _tile_dpbf16ps(0, 2, 4);
      if (two) {
        _tile_loadd(3, W + (nb + 1) * 16 * K + kb * 32, K * 2);
        _tile_dpbf16ps(1, 3, 4);
      }
    }
    _tile_stored(0, out[0], 64);
    if (two) _tile_stored(1, out[1], 64);
    for (int h = 0; h <= static_cast<int>(two); ++h)
      for (int i = 0; i < 16; ++i)
        for (int64_t c = 0; c < m; ++c) Y[(r0 + c) * ldy + (nb + h) * 16 + i] = out[h][i][c];
  }
  _tile_release();
}
#endif

}  // namespace

at::Tensor rows_product(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const int64_t N = w.size(0), K = w.size(1), R = x.numel() / K;
  auto xc = x.contiguous();
  auto y = at::empty({R, N}, x.options().dtype(at::kFloat));
  float* Y = y.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(4, 65536 / std::max<int64_t>(K * R, 1));
  if (w.scalar_type() == at::kBFloat16) {
    const auto* W = reinterpret_cast<const uint16_t*>(w.const_data_ptr());
    const auto* X
    = reinterpret_cast<const uint16_t*>(xc.const_data_ptr());
    const auto kernel = rows_kernel<uint16_t>();
    int64_t tiled = 0;  // outputs [0, tiled) on AMX
#if defined(__x86_64__)
    if (K % 32 == 0 && N >= 16 && amx_bf16()) {
      tiled = N / 16 * 16;
      std::vector<uint32_t> packed(static_cast<size_t>(K / 32) * 256);
      for (int64_t r0 = 0; r0 < R; r0 += 16) {
        const int64_t m = std::min<int64_t>(16, R - r0);
        pack_rows_vnni(X, r0, m, K, packed.data());
        // pairs of blocks per task, about 1 MiB of weight each
        at::parallel_for(0, tiled / 32 + (tiled % 32 ? 1 : 0), std::max<int64_t>(1, (1 << 20) / (32 * K * 2)), [&](int64_t p0, int64_t p1) {
          amx_blocks(W, packed.data(), Y, r0, m, N, 2 * p0, std::min<int64_t>(2 * p1, tiled / 16), K);
        });
      }
    }
#endif
    if (tiled < N) at::parallel_for(tiled, N, grain, [&](int64_t n0, int64_t n1) { kernel(W, X, Y, R, N, n0, n1, K); });
  } else {
    const float* W = w.const_data_ptr<float>();
    const float* X
    = xc.const_data_ptr<float>();
    const auto kernel = rows_kernel<float>();
    at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) { kernel(W, X, Y, R, N, n0, n1, K); });
  }
  if (b.defined()) y.add_(b);
  auto shape = x.sizes().vec();
  shape.back() = N;
  return (w.scalar_type() == at::kFloat ? y : y.to(w.scalar_type())).view(shape);
}

bool rows_bf16_products() {
#if defined(__x86_64__)
  static const bool ok = [] {
    __builtin_cpu_init();
    return !capped_at_avx2() && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  }();
  return ok;
#else
  return false;
#endif
}

bool rows_few_applies() {
#if defined(__x86_64__)
  static const bool ok = (rows_bf16_products() || rows_kernel<uint16_t>() == &rows_avx2_bf16) && !amx_bf16();
  return ok;
#else
  return false;
#endif
}

bool rows_avx512() {
#if defined(__x86_64__)
  static const bool ok = [] {
    __builtin_cpu_init();
    return !capped_at_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
  }();
  return ok;
#else
  return false;
#endif
}

void rows_dot(bool bf16, const void* W, const void* X, float* Y, int64_t R, int64_t ldy, int64_t N, int64_t K) {
  if (bf16) rows_kernel<uint16_t>()(static_cast<const uint16_t*>(W), static_cast<const uint16_t*>(X), Y, R, ldy, 0, N, K);
  else rows_kernel<float>()(static_cast<const float*>(W), static_cast<const float*>(X), Y, R, ldy, 0, N, K);
}

at::Tensor linear_rows(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  TORCH_CHECK(x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1), "linear_rows: input ", x.sizes(), " does not match weight ",
              w.sizes());
  if (rows_kernel_applies(x, w, b)) return rows_product(x, w, b);
  const int64_t R = x.numel() / std::max<int64_t>(x.size(-1), 1);
  if (R <= 1 || !x.device().is_cpu()) return linear(x, w, b);  // CUDA: one product for all rows
  auto x2 = x.reshape({R, 1, x.size(-1)});
  std::vector<at::Tensor> ys;
  for (int64_t r = 0; r < R; ++r) ys.push_back(linear(x2[r], w, b));
  auto shape = x.sizes().vec();
  shape.back() = w.size(0);
  return at::cat(ys, 0).view(shape);
}

}  // namespace et::nn
