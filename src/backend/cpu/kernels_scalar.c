/* Portable C kernels: the reference for the SIMD tables and the path on CPUs
 * without one. */
#include "backend/cpu/cpu.h"

#include <math.h>

static void conv1d_row_scalar(float *y, const float *const *rows, const float *w, int64_t w_stride, const float *bias, int K, int64_t C, bool silu, bool stream) {
  (void)stream; /* plain stores: streaming pays off only where measured (AVX-512) */
  for (int64_t c = 0; c < C; ++c) {
    float acc = bias ? bias[c] : 0.0f;
    for (int j = 0; j < K; ++j) acc = fmaf(w[j * w_stride + c], rows[j][c], acc);
    y[c] = silu ? acc / (1.0f + expf(-acc)) : acc;
  }
}

static void load_row_scalar(seqmix_dtype dtype, const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  if (dtype == SEQMIX_F16)
    for (int64_t i = 0; i < n; ++i) dst[i] = sm_f16_to_f32(h[i]);
  else
    for (int64_t i = 0; i < n; ++i) dst[i] = sm_bf16_to_f32(h[i]);
}

static void store_row_scalar(seqmix_dtype dtype, const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  if (dtype == SEQMIX_F16)
    for (int64_t i = 0; i < n; ++i) h[i] = sm_f32_to_f16(src[i]);
  else
    for (int64_t i = 0; i < n; ++i) h[i] = sm_f32_to_bf16(src[i]);
}

static float dot_scalar(const float *a, const float *b, int64_t n) {
  float acc = 0;
  for (int64_t i = 0; i < n; ++i) acc = fmaf(a[i], b[i], acc);
  return acc;
}
static void axpy_scalar(float *y, float a, const float *x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fmaf(a, x[i], y[i]);
}
static void scale_scalar(float *y, float a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

static void mm_acc_scalar(float *C, int64_t ldc, const float *A, int64_t lda, const float *B,
                          int64_t ldb, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) {
      const float a = A[i * lda + k];
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = fmaf(a, B[k * ldb + j], C[i * ldc + j]);
    }
}
static float exp_sum_scalar(float *x, float sub, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] = expf(x[i] - sub);
  return sum;
}

static void no_fence_scalar(void) {}

const sm_cpu_kernels sm_cpu_kernels_scalar = {
    .isa = "scalar",
    .vector_floats = 1,
    .conv1d_row = conv1d_row_scalar,
    .stream_fence = no_fence_scalar,
    .dot = dot_scalar,
    .axpy = axpy_scalar,
    .scale = scale_scalar,
    .mm_acc = mm_acc_scalar,
    .exp_sum = exp_sum_scalar,
    .load_row = load_row_scalar,
    .store_row = store_row_scalar,
};
