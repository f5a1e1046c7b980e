/*
 * The machine's own limits, measured in the same run as the benchmark, so
 * results read as fractions of a roofline and compare across noisy machines:
 * the f32 FMA peak of the host CPU on every core, and the memory copy bandwidth
 * (bytes read + written) on every core.
 */
#include "cli.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

enum { FMA_CHAINS = 12 };

/* Independent FMA chains keep every FMA pipe busy; returns flops done. */
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx512f"))) static double fma_avx512(long iters, float *sink) {
  __m512 acc[FMA_CHAINS];
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int i = 0; i < FMA_CHAINS; ++i) acc[i] = _mm512_set1_ps((float)i);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < FMA_CHAINS; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 sum = acc[0];
  for (int i = 1; i < FMA_CHAINS; ++i) sum = _mm512_add_ps(sum, acc[i]);
  *sink = _mm512_reduce_add_ps(sum);
  return 2.0 * 16 * FMA_CHAINS * (double)iters;
}

__attribute__((target("avx2,fma"))) static double fma_avx2(long iters, float *sink) {
  __m256 acc[FMA_CHAINS];
  __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int i = 0; i < FMA_CHAINS; ++i) acc[i] = _mm256_set1_ps((float)i);
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < FMA_CHAINS; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  float out[8];
  __m256 sum = acc[0];
  for (int i = 1; i < FMA_CHAINS; ++i) sum = _mm256_add_ps(sum, acc[i]);
  _mm256_storeu_ps(out, sum);
  *sink = out[0];
  return 2.0 * 8 * FMA_CHAINS * (double)iters;
}
#endif

typedef float vec4 __attribute__((vector_size(16)));
static double fma_generic(long iters, float *sink) {
  vec4 acc[FMA_CHAINS];
  vec4 a = {0.999999f, 0.999999f, 0.999999f, 0.999999f}, b = {1e-7f, 1e-7f, 1e-7f, 1e-7f};
  for (int i = 0; i < FMA_CHAINS; ++i) acc[i] = (vec4){(float)i, 0, 0, 0};
  for (long it = 0; it < iters; ++it)
    for (int i = 0; i < FMA_CHAINS; ++i) acc[i] = acc[i] * a + b;
  *sink = acc[0][0] + acc[FMA_CHAINS - 1][0];
  return 2.0 * 4 * FMA_CHAINS * (double)iters;
}

typedef struct worker {
  pthread_t thread;
  pthread_barrier_t *start;
  int kind; /* 0: fma, 1: copy */
  double flops, seconds;
  char *src, *dst;
  size_t bytes;
  int reps;
  float sink;
} worker;

static double run_fma(long iters, float *sink) {
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx512f")) return fma_avx512(iters, sink);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return fma_avx2(iters, sink);
#endif
  return fma_generic(iters, sink);
}

static void *worker_main(void *p) {
  worker *w = p;
  pthread_barrier_wait(w->start);
  double t0 = cli_now();
  if (w->kind == 0) {
    w->flops = run_fma(20 * 1000 * 1000, &w->sink);
  } else {
    double best = 1e30;
    for (int r = 0; r < w->reps; ++r) {
      double s = cli_now();
      memcpy(w->dst, w->src, w->bytes);
      double e = cli_now() - s;
      if (e < best) best = e;
    }
    w->seconds = best;
    return NULL;
  }
  w->seconds = cli_now() - t0;
  return NULL;
}

static int core_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)(n > 256 ? 256 : n) : 1;
}

static double run_workers(int kind, size_t bytes_per_thread) {
  int n = core_count();
  worker *w = calloc((size_t)n, sizeof *w);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)n);
  double result = 0;
  for (int i = 0; i < n; ++i) {
    w[i].start = &start;
    w[i].kind = kind;
    w[i].reps = 5;
    if (kind == 1) {
      w[i].bytes = bytes_per_thread;
      w[i].src = malloc(bytes_per_thread);
      w[i].dst = malloc(bytes_per_thread);
      if (!w[i].src || !w[i].dst) return 0;
      memset(w[i].src, 1, bytes_per_thread);
      memset(w[i].dst, 2, bytes_per_thread);
    }
  }
  for (int i = 1; i < n; ++i) pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
  worker_main(&w[0]);
  for (int i = 1; i < n; ++i) pthread_join(w[i].thread, NULL);
  double slowest = 0;
  for (int i = 0; i < n; ++i) {
    if (w[i].seconds > slowest) slowest = w[i].seconds;
    result += kind == 0 ? w[i].flops : 2.0 * (double)w[i].bytes;
    free(w[i].src);
    free(w[i].dst);
  }
  pthread_barrier_destroy(&start);
  free(w);
  return slowest > 0 ? result / slowest * 1e-9 : 0;
}

void cli_measure_roofline(cli_roofline *r) {
  r->fma_gflops = run_workers(0, 0);
  /* 256 MiB in all: far beyond any cache. */
  r->copy_gbs = run_workers(1, (size_t)(256u << 20) / (size_t)core_count());
}

double cli_device_copy_gbs(seqmix_context *ctx) {
  const int64_t shape[] = {64 << 20}; /* 256 MiB of f32 */
  seqmix_tensor *a = NULL, *b = NULL;
  double best = 0;
  if (seqmix_tensor_create(ctx, SEQMIX_F32, 1, shape, &a) ||
      seqmix_tensor_create(ctx, SEQMIX_F32, 1, shape, &b))
    goto done;
  if (seqmix_tensor_copy(b, a) || seqmix_context_sync(ctx)) goto done;
  for (int r = 0; r < 5; ++r) {
    double t0 = cli_now();
    if (seqmix_tensor_copy(b, a) || seqmix_context_sync(ctx)) goto done;
    double gbs = 2.0 * (double)(256u << 20) / (cli_now() - t0) * 1e-9;
    if (gbs > best) best = gbs;
  }
done:
  seqmix_tensor_destroy(a);
  seqmix_tensor_destroy(b);
  return best;
}
