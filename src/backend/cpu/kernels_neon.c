/* NEON kernels (aarch64, where NEON is always present). */
#include "backend/cpu/cpu.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>

/* exp(x) as in kernels_avx2.c: 2^n * p(r) with the Cephes polynomial. */
static inline float32x4_t exp_neon(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.3f));
  float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
  int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

static void conv1d_row_neon(float *y, const float *const *rows, const float *w, int64_t w_stride, const float *bias, int K, int64_t C, bool silu, bool stream) {
  (void)stream; /* plain stores: streaming pays off only where measured (AVX-512) */
  int64_t c = 0;
  for (; c + 4 <= C; c += 4) {
    float32x4_t acc = bias ? vld1q_f32(bias + c) : vdupq_n_f32(0.0f);
    for (int j = 0; j < K; ++j) acc = vfmaq_f32(acc, vld1q_f32(w + j * w_stride + c), vld1q_f32(rows[j] + c));
    if (silu) {
      float32x4_t e = exp_neon(vnegq_f32(acc));
      acc = vdivq_f32(acc, vaddq_f32(vdupq_n_f32(1.0f), e));
    }
    vst1q_f32(y + c, acc);
  }
  for (; c < C; ++c) {
    float acc = bias ? bias[c] : 0.0f;
    for (int j = 0; j < K; ++j) acc = fmaf(w[j * w_stride + c], rows[j][c], acc);
    y[c] = silu ? acc / (1.0f + expf(-acc)) : acc;
  }
}

static void load_row_neon(seqmix_dtype dtype, const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  int64_t i = 0;
  if (dtype == SEQMIX_F16)
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
  else
    for (; i + 4 <= n; i += 4)
      vst1q_f32(dst + i, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(h + i), 16)));
  sm_cpu_kernels_scalar.load_row(dtype, h + i, dst + i, n - i);
}

static void store_row_neon(seqmix_dtype dtype, const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  int64_t i = 0;
  if (dtype == SEQMIX_F16)
    for (; i + 4 <= n; i += 4) vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
  sm_cpu_kernels_scalar.store_row(dtype, src + i, h + i, n - i);
}

static float dot_neon(const float *a, const float *b, int64_t n) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) acc = vfmaq_f32(acc, vld1q_f32(a + i), vld1q_f32(b + i));
  float s = vaddvq_f32(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
static void axpy_neon(float *y, float a, const float *x, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
  for (; i < n; ++i) y[i] += a * x[i];
}
static void scale_neon(float *y, float a, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), a));
  for (; i < n; ++i) y[i] *= a;
}

static void mm_acc_neon(float *C, int64_t ldc, const float *A, int64_t lda, const float *B,
                        int64_t ldb, int64_t M, int64_t N, int64_t K) {
  int64_t j = 0;
  for (; j + 16 <= N; j += 16)
    for (int64_t i = 0; i < M; ++i) {
      float32x4_t c0 = vld1q_f32(C + i * ldc + j), c1 = vld1q_f32(C + i * ldc + j + 4);
      float32x4_t c2 = vld1q_f32(C + i * ldc + j + 8), c3 = vld1q_f32(C + i * ldc + j + 12);
      for (int64_t k = 0; k < K; ++k) {
        const float *b = B + k * ldb + j;
        float a = A[i * lda + k];
        c0 = vfmaq_n_f32(c0, vld1q_f32(b), a);
        c1 = vfmaq_n_f32(c1, vld1q_f32(b + 4), a);
        c2 = vfmaq_n_f32(c2, vld1q_f32(b + 8), a);
        c3 = vfmaq_n_f32(c3, vld1q_f32(b + 12), a);
      }
      vst1q_f32(C + i * ldc + j, c0), vst1q_f32(C + i * ldc + j + 4, c1);
      vst1q_f32(C + i * ldc + j + 8, c2), vst1q_f32(C + i * ldc + j + 12, c3);
    }
  if (j < N) sm_cpu_kernels_scalar.mm_acc(C + j, ldc, A, lda, B + j, ldb, M, N - j, K);
}

static float exp_sum_neon(float *x, float sub, int64_t n) {
  float32x4_t sum = vdupq_n_f32(0.0f), vs = vdupq_n_f32(sub), floor = vdupq_n_f32(-87.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    float32x4_t v = vsubq_f32(vld1q_f32(x + i), vs);
    uint32x4_t live = vcgeq_f32(v, floor);
    float32x4_t e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(exp_neon(v)), live));
    vst1q_f32(x + i, e);
    sum = vaddq_f32(sum, e);
  }
  float total = vaddvq_f32(sum);
  for (; i < n; ++i) total += x[i] = expf(x[i] - sub);
  return total;
}

static void no_fence_neon(void) {}

const sm_cpu_kernels sm_cpu_kernels_neon = {
    .isa = "neon",
    .vector_floats = 4,
    .conv1d_row = conv1d_row_neon,
    .stream_fence = no_fence_neon,
    .dot = dot_neon,
    .axpy = axpy_neon,
    .scale = scale_neon,
    .mm_acc = mm_acc_neon,
    .exp_sum = exp_sum_neon,
    .load_row = load_row_neon,
    .store_row = store_row_neon,
};
#endif
