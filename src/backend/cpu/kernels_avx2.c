/* AVX2 + FMA + F16C kernels (x86-64), compiled with target attributes so the
 * rest of the library runs on any x86-64; chosen at run time. */
#include "backend/cpu/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))

/* exp(x) for x in [-88, 88]: 2^n * p(r), r = x - n ln2, |r| <= ln2/2, with
 * the Cephes degree-7 polynomial (relative error ~1e-7). */
TARGET static inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

TARGET static inline __m256 silu_avx2(__m256 v) {
  __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), v));
  return _mm256_div_ps(v, _mm256_add_ps(one, e));
}

TARGET static void conv1d_row_avx2(float *y, const float *const *rows, const float *w, int64_t w_stride, const float *bias, int K, int64_t C, bool silu, bool stream) {
  (void)stream; /* plain stores: streaming pays off only where measured (AVX-512) */
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    __m256 acc = bias ? _mm256_loadu_ps(bias + c) : _mm256_setzero_ps();
    for (int j = 0; j < K; ++j)
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + j * w_stride + c), _mm256_loadu_ps(rows[j] + c), acc);
    if (silu) acc = silu_avx2(acc);
    _mm256_storeu_ps(y + c, acc);
  }
  if (c < C) {
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(C - c)), lane);
    __m256 acc = bias ? _mm256_maskload_ps(bias + c, mask) : _mm256_setzero_ps();
    for (int j = 0; j < K; ++j)
      acc = _mm256_fmadd_ps(_mm256_maskload_ps(w + j * w_stride + c, mask),
                            _mm256_maskload_ps(rows[j] + c, mask), acc);
    if (silu) acc = silu_avx2(acc);
    _mm256_maskstore_ps(y + c, mask, acc);
  }
}

TARGET static void load_row_avx2(seqmix_dtype dtype, const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  int64_t i = 0;
  if (dtype == SEQMIX_F16) {
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; ++i) dst[i] = sm_f16_to_f32(h[i]);
  } else {
    for (; i + 8 <= n; i += 8) {
      __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(u, 16)));
    }
    for (; i < n; ++i) dst[i] = sm_bf16_to_f32(h[i]);
  }
}

TARGET static void store_row_avx2(seqmix_dtype dtype, const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  int64_t i = 0;
  if (dtype == SEQMIX_F16) {
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128((__m128i *)(h + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) h[i] = sm_f32_to_f16(src[i]);
  } else {
    for (; i < n; ++i) h[i] = sm_f32_to_bf16(src[i]);
  }
}

TARGET static float dot_avx2(const float *a, const float *b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  acc0 = _mm256_add_ps(acc0, acc1);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc0), _mm256_extractf128_ps(acc0, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float acc = _mm_cvtss_f32(s);
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
TARGET static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
  __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}
TARGET static void scale_avx2(float *y, float a, int64_t n) {
  __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(va, _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] *= a;
}

/* 4 rows x 16 columns of C in 8 registers; rows past M read row M-1 and are
 * not stored; a column tail goes through a zero-padded copy. */
TARGET static void mm_acc_avx2(float *C, int64_t ldc, const float *A, int64_t lda, const float *B,
                               int64_t ldb, int64_t M, int64_t N, int64_t K) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t j = 0; j < N; j += 16) {
    __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(N - j)), lane);
    __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(N - j - 8)), lane);
    for (int64_t i = 0; i < M; i += 4) {
      const float *a[4];
      __m256 c[4][2];
      for (int r = 0; r < 4; ++r) {
        a[r] = A + (i + r < M ? i + r : M - 1) * lda;
        c[r][0] = i + r < M ? _mm256_maskload_ps(C + (i + r) * ldc + j, m0) : _mm256_setzero_ps();
        c[r][1] = i + r < M ? _mm256_maskload_ps(C + (i + r) * ldc + j + 8, m1) : _mm256_setzero_ps();
      }
      for (int64_t k = 0; k < K; ++k) {
        const float *b = B + k * ldb + j;
        __m256 b0 = _mm256_maskload_ps(b, m0), b1 = _mm256_maskload_ps(b + 8, m1);
        for (int r = 0; r < 4; ++r) {
          __m256 av = _mm256_broadcast_ss(a[r] + k);
          c[r][0] = _mm256_fmadd_ps(av, b0, c[r][0]);
          c[r][1] = _mm256_fmadd_ps(av, b1, c[r][1]);
        }
      }
      for (int r = 0; r < 4 && i + r < M; ++r) {
        _mm256_maskstore_ps(C + (i + r) * ldc + j, m0, c[r][0]);
        _mm256_maskstore_ps(C + (i + r) * ldc + j + 8, m1, c[r][1]);
      }
    }
  }
}

TARGET static float exp_sum_avx2(float *x, float sub, int64_t n) {
  __m256 sum = _mm256_setzero_ps(), vs = _mm256_set1_ps(sub), floor = _mm256_set1_ps(-87.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + i), vs);
    __m256 e = _mm256_and_ps(exp_avx2(v), _mm256_cmp_ps(v, floor, _CMP_GE_OQ));
    _mm256_storeu_ps(x + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  float out[8], total = 0;
  _mm256_storeu_ps(out, sum);
  for (int k = 0; k < 8; ++k) total += out[k];
  for (; i < n; ++i) total += x[i] = expf(x[i] - sub);
  return total;
}

TARGET static void no_fence_avx2(void) {}

const sm_cpu_kernels sm_cpu_kernels_avx2 = {
    .isa = "avx2",
    .vector_floats = 8,
    .conv1d_row = conv1d_row_avx2,
    .stream_fence = no_fence_avx2,
    .dot = dot_avx2,
    .axpy = axpy_avx2,
    .scale = scale_avx2,
    .mm_acc = mm_acc_avx2,
    .exp_sum = exp_sum_avx2,
    .load_row = load_row_avx2,
    .store_row = store_row_avx2,
};
#endif
