/* The CPU's float32 multiply-add peak, measured: N threads, each running 12 independent chains of
 * vector FMAs (more than the FMA latency times the FMA ports of any x86-64 core, so the chains
 * never wait on each other), for AVX2 (8 lanes) and, where the CPU has it, AVX-512 (16 lanes).
 * No memory is touched: this is the ceiling no float32 GEMM (oneDNN's, MKL's or anyone's) can pass
 * on this machine, the floor under the time of a model's matrix products. bench/run.mjs --ops
 * compiles and runs it to say how close both sides' products come to it.
 *   cc -O2 -pthread bench/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak [threads]
 * Prints one line per ISA: `avx2 <threads> <GFLOP/s>` (best of 5 runs of about 0.2 s each). */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CHAINS 12

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* The 12 chains as named variables (an array indexed in a loop may be kept in memory, where each
 * FMA would wait on a store), each multiplied by a and added b: x -> 0.999999 x + 1e-7 stays near
 * 0.1, never denormal. Each function returns the lanes' sum, so the compiler keeps the chains. */
#define CHAIN_STEP(FMA) /* one statement: the loop body */                               \
  (x0 = FMA(x0, a, b), x1 = FMA(x1, a, b), x2 = FMA(x2, a, b), x3 = FMA(x3, a, b),        \
   x4 = FMA(x4, a, b), x5 = FMA(x5, a, b), x6 = FMA(x6, a, b), x7 = FMA(x7, a, b),        \
   x8 = FMA(x8, a, b), x9 = FMA(x9, a, b), x10 = FMA(x10, a, b), x11 = FMA(x11, a, b))
#define CHAIN_SUM(ADD) ADD(ADD(ADD(ADD(x0, x1), ADD(x2, x3)), ADD(ADD(x4, x5), ADD(x6, x7))), ADD(ADD(x8, x9), ADD(x10, x11)))
#define CHAIN_DECL(V, SET1)                                                                         \
  const V a = SET1(0.999999f), b = SET1(1e-7f);                                                   \
  V x0 = SET1(0.f), x1 = SET1(1.f), x2 = SET1(2.f), x3 = SET1(3.f), x4 = SET1(4.f), x5 = SET1(5.f); \
  V x6 = SET1(6.f), x7 = SET1(7.f), x8 = SET1(8.f), x9 = SET1(9.f), x10 = SET1(10.f), x11 = SET1(11.f)

__attribute__((target("avx2,fma"))) static float run_avx2(long iters) {
  CHAIN_DECL(__m256, _mm256_set1_ps);
  for (long i = 0; i < iters; i++) CHAIN_STEP(_mm256_fmadd_ps);
  float lanes[8], s = 0;
  _mm256_storeu_ps(lanes, CHAIN_SUM(_mm256_add_ps));
  for (int l = 0; l < 8; l++) s += lanes[l];
  return s;
}

__attribute__((target("avx512f"))) static float run_avx512(long iters) {
  CHAIN_DECL(__m512, _mm512_set1_ps);
  for (long i = 0; i < iters; i++) CHAIN_STEP(_mm512_fmadd_ps);
  return _mm512_reduce_add_ps(CHAIN_SUM(_mm512_add_ps));
}

struct job {
  int wide;
  long iters;
  pthread_barrier_t* start;
  double t0, t1;
  float sink;
};

static void* worker(void* p) {
  struct job* j = p;
  pthread_barrier_wait(j->start);
  j->t0 = now();
  j->sink = j->wide ? run_avx512(j->iters) : run_avx2(j->iters);
  j->t1 = now();
  return NULL;
}

/* GFLOP/s of `threads` threads running `iters` rounds each (2 flops per lane per FMA), over the
 * span from the first thread's start to the last one's end, each taken by the thread itself (a
 * clock read by the main thread counts its own scheduling delays). */
static double measure(int wide, int threads, long iters) {
  pthread_t tid[256];
  struct job jobs[256];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, threads);
  for (int t = 0; t < threads; t++) {
    jobs[t] = (struct job){wide, iters, &start, 0, 0, 0};
    pthread_create(&tid[t], NULL, worker, &jobs[t]);
  }
  for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  pthread_barrier_destroy(&start);
  double first = jobs[0].t0, last = jobs[0].t1;
  float sink = 0;
  for (int t = 0; t < threads; t++) {
    if (jobs[t].t0 < first) first = jobs[t].t0;
    if (jobs[t].t1 > last) last = jobs[t].t1;
    sink += jobs[t].sink;
  }
  if (sink == 12345.0f) puts("");  /* keeps the results alive */
  return (double)threads * iters * CHAINS * (wide ? 16 : 8) * 2 / (last - first) / 1e9;
}

int main(int argc, char** argv) {
  int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (threads < 1 || threads > 256) {
    fprintf(stderr, "fma_peak: threads must be 1 to 256, got %s\n", argc > 1 ? argv[1] : "?");
    return 2;
  }
  __builtin_cpu_init();
  for (int wide = 0; wide <= 1; wide++) {
    if (wide ? !__builtin_cpu_supports("avx512f") : !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) continue;
    /* iterations for about 0.2 s: doubled from a short run until one takes 20 ms */
    long iters = 100000;
    double g = 0;
    for (;;) {
      g = measure(wide, 1, iters);
      if ((double)iters * CHAINS * (wide ? 16 : 8) * 2 / (g * 1e9) >= 0.02 || iters > (1L << 40)) break;
      iters *= 2;
    }
    iters = (long)(0.2 * g * 1e9 / (CHAINS * (wide ? 16 : 8) * 2));
    double best = 0;
    for (int r = 0; r < 5; r++) {
      double x = measure(wide, threads, iters);
      if (x > best) best = x;
    }
    printf("%s %d %.1f\n", wide ? "avx512" : "avx2", threads, best);
  }
  return 0;
}
