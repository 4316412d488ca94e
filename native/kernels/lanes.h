// Internal to native/kernels: float32 vectors in GCC's vector types for kernels written once and
// compiled under several targets (AVX-512: 16 lanes, AVX2: 8, plain C++: 4) by inlining into a
// function of each target: loads of float32 or bfloat16, e^x. Not for use outside native/kernels.
#pragma once
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/linear_rows.h"

namespace et::nn::lanes {

#if defined(__x86_64__)
// The targets a kernel's 16- and 8-lane builds are compiled for (the 4-lane one: plain C++).
#define ET_LANES16 __attribute__((target("avx512f,avx512bw,avx2,fma,prefer-vector-width=512")))
#define ET_LANES8 __attribute__((target("avx2,fma")))

// The build this CPU runs: 16 lanes with AVX-512 as the row kernels take it (rows_avx512: not
// capped off), 8 with AVX2 and FMA, else 4.
template <typename Fn>
Fn lanes_pick(Fn w16, Fn w8, Fn w4) {
  if (rows_avx512()) return w16;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? w8 : w4;
}
#endif

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
// W float32 lanes in GCC's vector types: one body, compiled under each target below (AVX-512: 16
// lanes, AVX2: 8, plain C++: 4) by inlining into a function of that target.
template <int W>
struct Lanes {
  typedef float F __attribute__((vector_size(4 * W)));
  typedef int32_t I __attribute__((vector_size(4 * W)));
  typedef uint32_t U __attribute__((vector_size(4 * W)));
  typedef uint16_t H __attribute__((vector_size(2 * W)));
};

inline float widen(float v) { return v; }
inline float widen(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if defined(__x86_64__)
// 16 bfloat16 → float32 in one zero-extending load, inlined where the AVX-512 kernel inlines
// load<16> (GCC 12 makes four instructions of the generic conversion below for 16 lanes)
[[gnu::target("avx512f")]] inline Lanes<16>::F load_bf16x16(const uint16_t* p) {
  const __m512i u = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16);
  Lanes<16>::F v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}
#endif
template <int W, typename T>
[[gnu::always_inline]] inline typename Lanes<W>::F load(const T* p) {
  using L = Lanes<W>;
  typename L::F v;
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(&v, p, sizeof v);
#if defined(__x86_64__)
  } else if constexpr (W == 16) {
    v = load_bf16x16(p);
#endif
  } else {  // bfloat16: the top half of a float32
    typename L::H h;
    std::memcpy(&h, p, sizeof h);
    const typename L::U u = __builtin_convertvector(h, typename L::U) << 16;
    std::memcpy(&v, &u, sizeof v);
  }
  return v;
}

// The lanes' sum by halves (upper half onto the lower, then again): log2 W vector adds, where a
// lane after lane chain was W dependent scalar adds per dot product.
template <int W>
[[gnu::always_inline]] inline float lanes_sum(typename Lanes<W>::F v) {
  if constexpr (W == 16)
    return lanes_sum<8>(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                        __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
  else if constexpr (W == 8) return lanes_sum<4>(__builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7));
  else if constexpr (W == 4) return (v[0] + v[2]) + (v[1] + v[3]);
  else {
    float s = 0;
    for (int i = 0; i < W; ++i) s += v[i];
    return s;
  }
}

// e^x (Cephes' expf: x = n·ln 2 + r, a degree-6 polynomial in r, times 2^n; relative error about
// 1e-7); 0 below −87 (e^−87 ≈ 1.6e−38, where 2^n would leave float32's normal range); NaN stays NaN.
template <int W>
[[gnu::always_inline]] inline typename Lanes<W>::F exp_lanes(typename Lanes<W>::F x) {
  using F = typename Lanes<W>::F;
  using I = typename Lanes<W>::I;
  const F zero = {};
  const auto under = x < -87.0f;
  x = under ? zero - 87.0f : x;
  x = x > 88.0f ? zero + 88.0f : x;
  const F n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // nearest integer
  const F r = x - n * 0.693359375f - n * -2.12194440e-4f;
  F y = 1.9875691500e-4f * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const I bits = (__builtin_convertvector(n, I) + 127) << 23;
  F two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  return under ? zero : y * two_n;
}

// float32 → the nearest bfloat16, ties to even, as c10::BFloat16 rounds (NaN → 0x7FC0), returned
// as the float32 it is.
template <int W>
[[gnu::always_inline]] inline typename Lanes<W>::F round_bf16(typename Lanes<W>::F x) {
  using L = Lanes<W>;
  typename L::U u;
  std::memcpy(&u, &x, sizeof u);
  const typename L::U rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  const typename L::U r = x != x ? typename L::U{} + 0x7FC00000u : rounded;
  typename L::F y;
  std::memcpy(&y, &r, sizeof y);
  return y;
}

// Lanes already rounded to bfloat16 (round_bf16) stored as bfloat16: their top halves.
template <int W>
[[gnu::always_inline]] inline void store_bf16(uint16_t* p, typename Lanes<W>::F x) {
  using L = Lanes<W>;
  typename L::U u;
  std::memcpy(&u, &x, sizeof u);
  const typename L::H h = __builtin_convertvector(u >> 16, typename L::H);
  std::memcpy(p, &h, sizeof h);
}
#pragma GCC diagnostic pop

}  // namespace et::nn::lanes
