/* Portable C kernels: the reference for the SIMD tables and the path on CPUs
 * without one. */
#include "backend/cpu/cpu.h"

#include <math.h>

static void conv1d_row_scalar(float *y, const float *const *rows, const float *w, int64_t w_stride, const float *bias, int K, int64_t C, bool silu) {
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

const sm_cpu_kernels sm_cpu_kernels_scalar = {
    .isa = "scalar",
    .vector_floats = 1,
    .conv1d_row = conv1d_row_scalar,
    .load_row = load_row_scalar,
    .store_row = store_row_scalar,
};
