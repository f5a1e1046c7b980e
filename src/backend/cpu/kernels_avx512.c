/* AVX-512 (F, BW, DQ, VL) kernels (x86-64), compiled with target attributes and
 * chosen at run time. Tails use masked loads and stores. */
#include "backend/cpu/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))

/* exp(x) as in kernels_avx2.c; scalef applies 2^n without integer tricks and
 * underflows to 0 for very negative x (so the scan, whose exponents are <= 0,
 * calls it unclamped). */
TARGET static inline __m512 exp_unclamped_avx512(__m512 x) {
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

TARGET static inline __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  return exp_unclamped_avx512(x);
}

TARGET static inline __m512 silu_avx512(__m512 v) {
  __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), v));
  return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

TARGET static inline void store_y(float *y, __mmask16 m, __m512 v, bool stream) {
  if (stream && m == 0xffff && ((uintptr_t)y & 63) == 0)
    _mm512_stream_ps(y, v);
  else
    _mm512_mask_storeu_ps(y, m, v);
}

/* The row kernel for a kernel width known at compile time (the common K = 2..4
 * unrolls fully), or any K. */
TARGET static inline void conv1d_row_k(float *y, const float *const *rows, const float *w,
                                       int64_t w_stride, const float *bias, const int K, int64_t C,
                                       bool silu, bool stream) {
  for (int64_t c = 0; c < C; c += 16) {
    __mmask16 m = C - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (C - c)) - 1u);
    __m512 acc = bias ? _mm512_maskz_loadu_ps(m, bias + c) : _mm512_setzero_ps();
    for (int j = 0; j < K; ++j)
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + j * w_stride + c),
                            _mm512_maskz_loadu_ps(m, rows[j] + c), acc);
    if (silu) acc = silu_avx512(acc);
    store_y(y + c, m, acc, stream); /* streaming skips the read-for-ownership of y */
  }
}

TARGET static void stream_fence_avx512(void) { _mm_sfence(); }

/* Two consecutive tokens: the weights are loaded once and the inputs slide. */
TARGET static inline void conv1d_row2_k(float *y0, float *y1, const float *const *rows,
                                        const float *w, int64_t w_stride, const float *bias,
                                        const int K, int64_t C, bool silu, bool stream) {
  for (int64_t c = 0; c < C; c += 16) {
    __mmask16 m = C - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (C - c)) - 1u);
    __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + c) : _mm512_setzero_ps();
    __m512 acc0 = b, acc1 = b;
    __m512 x = _mm512_maskz_loadu_ps(m, rows[0] + c);
    for (int j = 0; j < K; ++j) {
      __m512 wj = _mm512_maskz_loadu_ps(m, w + j * w_stride + c);
      __m512 next = _mm512_maskz_loadu_ps(m, rows[j + 1] + c);
      acc0 = _mm512_fmadd_ps(wj, x, acc0);
      acc1 = _mm512_fmadd_ps(wj, next, acc1);
      x = next;
    }
    if (silu) acc0 = silu_avx512(acc0), acc1 = silu_avx512(acc1);
    store_y(y0 + c, m, acc0, stream);
    store_y(y1 + c, m, acc1, stream);
  }
}

TARGET static void conv1d_row2_avx512(float *y0, float *y1, const float *const *rows,
                                      const float *w, int64_t w_stride, const float *bias, int K,
                                      int64_t C, bool silu, bool stream) {
  switch (K) {
  case 2: conv1d_row2_k(y0, y1, rows, w, w_stride, bias, 2, C, silu, stream); break;
  case 3: conv1d_row2_k(y0, y1, rows, w, w_stride, bias, 3, C, silu, stream); break;
  case 4: conv1d_row2_k(y0, y1, rows, w, w_stride, bias, 4, C, silu, stream); break;
  default: conv1d_row2_k(y0, y1, rows, w, w_stride, bias, K, C, silu, stream); break;
  }
}

TARGET static void conv1d_row_avx512(float *y, const float *const *rows, const float *w,
                                     int64_t w_stride, const float *bias, int K, int64_t C,
                                     bool silu, bool stream) {
  switch (K) {
  case 2: conv1d_row_k(y, rows, w, w_stride, bias, 2, C, silu, stream); break;
  case 3: conv1d_row_k(y, rows, w, w_stride, bias, 3, C, silu, stream); break;
  case 4: conv1d_row_k(y, rows, w, w_stride, bias, 4, C, silu, stream); break;
  default: conv1d_row_k(y, rows, w, w_stride, bias, K, C, silu, stream); break;
  }
}

TARGET static void load_row_avx512(seqmix_dtype dtype, const void *src, float *dst, int64_t n) {
  const uint16_t *h = src;
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    __m256i raw = _mm256_maskz_loadu_epi16(m, h + i);
    __m512 v = dtype == SEQMIX_F16
                   ? _mm512_cvtph_ps(raw)
                   : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    _mm512_mask_storeu_ps(dst + i, m, v);
  }
}

TARGET static void store_row_avx512(seqmix_dtype dtype, const float *src, void *dst, int64_t n) {
  uint16_t *h = dst;
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, src + i);
    __m256i out;
    if (dtype == SEQMIX_F16) {
      out = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
      /* Round to nearest even on the high half; NaNs become quiet NaNs. */
      __m512i u = _mm512_castps_si512(v);
      __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
      __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
      __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      rounded = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x400000));
      out = _mm512_cvtepi32_epi16(_mm512_srli_epi32(rounded, 16));
    }
    _mm256_mask_storeu_epi16(h + i, m, out);
  }
}

TARGET static float dot_avx512(const float *a, const float *b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
/* v[i] = the sum of a[i]'s 16 lanes, for 16 vectors at once: 15 adds and 30
 * shuffles instead of 16 separate reductions. */
TARGET static inline __m512 hsum16_avx512(const __m512 *a) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i) /* per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3] */
    b[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                         _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
  for (int i = 0; i < 4; ++i) { /* per 128-bit lane: lane sums of a[4i .. 4i+3] */
    __m512d x = _mm512_castps_pd(b[2 * i]), y = _mm512_castps_pd(b[2 * i + 1]);
    c[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i)
    d[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(d[0], d[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Tiles of 4 rows x 4 keys: 8 loads per 16 FMAs, and one batched reduction. */
TARGET static void dot_block_avx512(const float *q, int64_t ldq, int64_t rows,
                                    const float *const *keys, int64_t nkeys, int64_t n, float *out,
                                    int64_t ldo) {
  for (int64_t r0 = 0; r0 < rows; r0 += 4) {
    const int64_t nr = rows - r0 < 4 ? rows - r0 : 4;
    const float *qr[4];
    for (int64_t r = 0; r < 4; ++r)
      qr[r] = q + (r0 + (r < nr ? r : 0)) * ldq;
    for (int64_t j = 0; j < nkeys; j += 4) {
      const int64_t nk = nkeys - j < 4 ? nkeys - j : 4;
      const float *kr[4];
      for (int64_t e = 0; e < 4; ++e)
        kr[e] = keys[j + (e < nk ? e : 0)];
      __m512 a[16];
      for (int e = 0; e < 16; ++e)
        a[e] = _mm512_setzero_ps();
      for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 k0 = _mm512_maskz_loadu_ps(m, kr[0] + i), k1 = _mm512_maskz_loadu_ps(m, kr[1] + i);
        __m512 k2 = _mm512_maskz_loadu_ps(m, kr[2] + i), k3 = _mm512_maskz_loadu_ps(m, kr[3] + i);
        for (int r = 0; r < 4; ++r) {
          __m512 qv = _mm512_maskz_loadu_ps(m, qr[r] + i);
          a[4 * r] = _mm512_fmadd_ps(qv, k0, a[4 * r]);
          a[4 * r + 1] = _mm512_fmadd_ps(qv, k1, a[4 * r + 1]);
          a[4 * r + 2] = _mm512_fmadd_ps(qv, k2, a[4 * r + 2]);
          a[4 * r + 3] = _mm512_fmadd_ps(qv, k3, a[4 * r + 3]);
        }
      }
      float sums[16];
      _mm512_storeu_ps(sums, hsum16_avx512(a)); /* sums[4r + e]: row r, key e */
      for (int64_t r = 0; r < nr; ++r)
        memcpy(out + (r0 + r) * ldo + j, sums + 4 * r, (size_t)nk * sizeof *out);
    }
  }
}
TARGET static void axpy_avx512(float *y, float a, const float *x, int64_t n) {
  __m512 va = _mm512_set1_ps(a);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(
        y + i, m,
        _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}
TARGET static void scale_avx512(float *y, float a, int64_t n) {
  __m512 va = _mm512_set1_ps(a);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

/* 4 rows x 64 columns of C in 16 registers; rows past M read row M-1 and are
 * not stored, columns past N are masked. */
TARGET static void mm_acc_avx512(float *C, int64_t ldc, const float *A, int64_t lda, const float *B,
                                 int64_t ldb, int64_t M, int64_t N, int64_t K) {
  for (int64_t j = 0; j < N; j += 64) {
    __mmask16 m[4];
    for (int v = 0; v < 4; ++v) {
      int64_t left = N - j - 16 * v;
      m[v] = left >= 16 ? (__mmask16)0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1u);
    }
    for (int64_t i = 0; i < M; i += 4) {
      const float *a[4];
      __m512 c[4][4];
      for (int r = 0; r < 4; ++r) {
        a[r] = A + (i + r < M ? i + r : M - 1) * lda;
        for (int v = 0; v < 4; ++v)
          c[r][v] = i + r < M ? _mm512_maskz_loadu_ps(m[v], C + (i + r) * ldc + j + 16 * v)
                              : _mm512_setzero_ps();
      }
      for (int64_t k = 0; k < K; ++k) {
        const float *b = B + k * ldb + j;
        __m512 b0 = _mm512_maskz_loadu_ps(m[0], b), b1 = _mm512_maskz_loadu_ps(m[1], b + 16);
        __m512 b2 = _mm512_maskz_loadu_ps(m[2], b + 32), b3 = _mm512_maskz_loadu_ps(m[3], b + 48);
        for (int r = 0; r < 4; ++r) {
          __m512 av = _mm512_set1_ps(a[r][k]);
          c[r][0] = _mm512_fmadd_ps(av, b0, c[r][0]);
          c[r][1] = _mm512_fmadd_ps(av, b1, c[r][1]);
          c[r][2] = _mm512_fmadd_ps(av, b2, c[r][2]);
          c[r][3] = _mm512_fmadd_ps(av, b3, c[r][3]);
        }
      }
      for (int r = 0; r < 4 && i + r < M; ++r)
        for (int v = 0; v < 4; ++v)
          _mm512_mask_storeu_ps(C + (i + r) * ldc + j + 16 * v, m[v], c[r][v]);
    }
  }
}

TARGET static float exp_sum_avx512(float *x, float sub, int64_t n) {
  __m512 sum = _mm512_setzero_ps(), vs = _mm512_set1_ps(sub), floor = _mm512_set1_ps(-87.0f);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    __mmask16 live = _mm512_mask_cmp_ps_mask(m, v, floor, _CMP_GE_OQ);
    __m512 e = _mm512_maskz_mov_ps(live, exp_avx512(v));
    _mm512_mask_storeu_ps(x + i, m, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

/* nb state rows of 16 channels stay in registers across the T tokens. */
TARGET static inline void scan_rows_avx512(float *h, const float *At, const float *dt,
                                           const float *du, const float *Bt, const float *Ct,
                                           float *y, int64_t T, int64_t W, int64_t N, int64_t w,
                                           int64_t n0, const int nb, __mmask16 m) {
  __m512 hv[16];
#pragma GCC unroll 16
  for (int i = 0; i < nb; ++i) hv[i] = _mm512_maskz_loadu_ps(m, h + (n0 + i) * W + w);
  for (int64_t t = 0; t < T; ++t) {
    const __m512 d = _mm512_maskz_loadu_ps(m, dt + t * W + w);
    const __m512 x = _mm512_maskz_loadu_ps(m, du + t * W + w);
    __m512 acc = n0 ? _mm512_maskz_loadu_ps(m, y + t * W + w) : _mm512_setzero_ps();
    const float *bt = Bt + t * N + n0, *ct = Ct + t * N + n0;
#pragma GCC unroll 16
    for (int i = 0; i < nb; ++i) {
      __m512 a = exp_unclamped_avx512(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, At + (n0 + i) * W + w)));
      hv[i] = _mm512_fmadd_ps(a, hv[i], _mm512_mul_ps(x, _mm512_set1_ps(bt[i])));
      acc = _mm512_fmadd_ps(_mm512_set1_ps(ct[i]), hv[i], acc);
    }
    _mm512_mask_storeu_ps(y + t * W + w, m, acc);
  }
#pragma GCC unroll 16
  for (int i = 0; i < nb; ++i) _mm512_mask_storeu_ps(h + (n0 + i) * W + w, m, hv[i]);
}

TARGET static void scan_chunk_avx512(float *h, const float *At, const float *dt, const float *du,
                                     const float *Bt, const float *Ct, float *y, int64_t T,
                                     int64_t W, int64_t N) {
  for (int64_t w = 0; w < W; w += 16) {
    const __mmask16 m = W - w >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (W - w)) - 1u);
    int64_t n0 = 0;
    for (; n0 + 16 <= N; n0 += 16) scan_rows_avx512(h, At, dt, du, Bt, Ct, y, T, W, N, w, n0, 16, m);
    for (; n0 + 4 <= N; n0 += 4) scan_rows_avx512(h, At, dt, du, Bt, Ct, y, T, W, N, w, n0, 4, m);
    for (; n0 < N; ++n0) scan_rows_avx512(h, At, dt, du, Bt, Ct, y, T, W, N, w, n0, 1, m);
  }
}

TARGET static void scan_step_avx512(float *h, int64_t ldh, const float *A, int64_t lda,
                                    const float *dt, const float *du, const float *B,
                                    const float *C, float *y, int64_t W, int64_t N) {
  for (int64_t w = 0; w < W; ++w) {
    const __m512 d = _mm512_set1_ps(dt[w]), x = _mm512_set1_ps(du[w]);
    float *hw = h + w * ldh;
    const float *aw = A + w * lda;
    if (w + 16 < W) /* the state streams from memory: ask for it early */
      for (int64_t n = 0; n < N; n += 16) _mm_prefetch((const char *)(hw + 16 * ldh + n), _MM_HINT_T0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t n = 0; n < N; n += 16) {
      const __mmask16 m = N - n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (N - n)) - 1u);
      __m512 a = exp_unclamped_avx512(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, aw + n)));
      __m512 hv = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, hw + n),
                                  _mm512_mul_ps(x, _mm512_maskz_loadu_ps(m, B + n)));
      _mm512_mask_storeu_ps(hw + n, m, hv);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, C + n), hv, acc);
    }
    y[w] = _mm512_reduce_add_ps(acc);
  }
}

/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|); log1p(e) = 2 atanh(e / (2 + e)), e in (0, 1]. */
TARGET static void softplus_row_avx512(float *x, int64_t n) {
  const __m512 big = _mm512_set1_ps(20.0f);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    __m512 e = exp_unclamped_avx512(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(v)));
    __m512 s = _mm512_div_ps(e, _mm512_add_ps(e, _mm512_set1_ps(2.0f))), s2 = _mm512_mul_ps(s, s);
    __m512 p = _mm512_set1_ps(1.0f / 13);
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 11));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 9));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 7));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 5));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f / 3));
    p = _mm512_fmadd_ps(p, s2, _mm512_set1_ps(1.0f));
    __m512 r = _mm512_fmadd_ps(_mm512_add_ps(s, s), p, _mm512_max_ps(v, _mm512_setzero_ps()));
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, big, _CMP_GT_OQ), v);
    _mm512_mask_storeu_ps(x + i, m, r);
  }
}

TARGET static void silu_mul_row_avx512(float *y, const float *z, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
    __m512 g = silu_avx512(_mm512_maskz_loadu_ps(m, z + i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

/* Depthwise taps (cpu.h): register tiles of R <= 8 outputs x 16 channels; a
 * weight vector loaded once serves the R outputs. R is a constant at each
 * call site, so the accumulators live in registers. */
TARGET static inline __attribute__((always_inline)) void
dw_tile_avx512(float *y, int64_t ldy, const float *const *rows, int64_t off, int nrows,
               int64_t xstep, int64_t tstep, const float *w, int64_t ldw, int64_t wrow,
               int64_t taps, __mmask16 m, __m512 b, const int R) {
  __m512 a[8];
  for (int r = 0; r < R; ++r) a[r] = b;
  for (int u = 0; u < nrows; ++u) {
    const float *x = rows[u] + off, *wu = w + u * wrow;
    for (int64_t v = 0; v < taps; ++v, x += tstep, wu += ldw) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, wu);
      for (int r = 0; r < R; ++r)
        a[r] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + r * xstep), a[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_mask_storeu_ps(y + r * ldy, m, a[r]);
}

/* The 3x3, 5x5 and 7x7 fast path (output step = tap step, i.e. stride =
 * dilation): per kernel row the R + KW - 1 inputs R outputs share are loaded
 * once and slide under the KW weights (R + 2 KW - 1 loads for R KW FMAs). */
TARGET static inline __attribute__((always_inline)) void
dw_tile_sliding_avx512(float *y, int64_t ldy, const float *const *rows, int64_t off, int nrows,
                       int64_t step, const float *w, int64_t ldw, int64_t wrow, __mmask16 m,
                       __m512 b, const int R, const int KW) {
  __m512 a[8], r[8 + 7];
  for (int j = 0; j < R; ++j) a[j] = b;
  for (int u = 0; u < nrows; ++u) {
    const float *x = rows[u] + off, *wu = w + u * wrow;
    for (int k = 0; k < R + KW - 1; ++k) r[k] = _mm512_maskz_loadu_ps(m, x + k * step);
    for (int v = 0; v < KW; ++v) {
      const __m512 wv = _mm512_maskz_loadu_ps(m, wu + v * ldw);
      for (int j = 0; j < R; ++j) a[j] = _mm512_fmadd_ps(wv, r[j + v], a[j]);
    }
  }
  for (int j = 0; j < R; ++j) _mm512_mask_storeu_ps(y + j * ldy, m, a[j]);
}

#define DW_SLIDING_R(KW)                                                                           \
  switch (R) {                                                                                     \
  case 8: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 8, KW); break;    \
  case 7: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 7, KW); break;    \
  case 6: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 6, KW); break;    \
  case 5: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 5, KW); break;    \
  case 4: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 4, KW); break;    \
  case 3: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 3, KW); break;    \
  case 2: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 2, KW); break;    \
  default: dw_tile_sliding_avx512(o, ldy, rows, off, nrows, xstep, wc, ldw, wrow, m, b, 1, KW); break;   \
  }

TARGET static void dw_taps_avx512(float *y, int64_t ldy, const float *const *rows, int nrows,
                                  int64_t xstep, int64_t tstep, const float *w, int64_t ldw,
                                  int64_t wrow, int64_t taps, int64_t J, int64_t n,
                                  const float *bias) {
  const bool sliding = xstep == tstep && (taps == 3 || taps == 5 || taps == 7);
  for (int64_t c = 0; c < n; c += 16) {
    const __mmask16 m = n - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - c)) - 1);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + c) : _mm512_setzero_ps();
    /* Tiles of R <= 8 outputs, as even as possible (14 = 7 + 7, not 8 + 6). */
    const int64_t tiles = (J + 7) / 8;
    for (int64_t tile = 0, j = 0; tile < tiles; ++tile) {
      const int R = (int)((J - j) / (tiles - tile) + ((J - j) % (tiles - tile) != 0));
      const int64_t off = j * xstep + c; /* this tile's first output and channel */
      float *o = y + j * ldy + c;
      const float *wc = w + c;
      j += R;
      if (sliding) {
        if (taps == 3) {
          DW_SLIDING_R(3)
        } else if (taps == 5) {
          DW_SLIDING_R(5)
        } else {
          DW_SLIDING_R(7)
        }
        continue;
      }
      switch (R) {
      case 8: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 8); break;
      case 7: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 7); break;
      case 6: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 6); break;
      case 5: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 5); break;
      case 4: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 4); break;
      case 3: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 3); break;
      case 2: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 2); break;
      default: dw_tile_avx512(o, ldy, rows, off, nrows, xstep, tstep, wc, ldw, wrow, taps, m, b, 1); break;
      }
    }
  }
}

/* Causal taps of 8 outputs (cpu.h). Per block of 8 taps s0..s0+7 the 15 input
 * rows they touch, x[-s0-7 .. 7-s0], are loaded once into registers and give
 * all 64 products: 23 loads for 64 FMAs instead of 72. */
TARGET static void causal_taps8_avx512(float *y, int64_t ldy, const float *x, int64_t ldx,
                                       const float *h, int64_t ldh, int64_t taps, int64_t n,
                                       bool accumulate) {
  for (int64_t c = 0; c < n; c += 16) {
    const __mmask16 m = n - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - c)) - 1);
    __m512 a[8];
    for (int j = 0; j < 8; ++j)
      a[j] = accumulate ? _mm512_maskz_loadu_ps(m, y + j * ldy + c) : _mm512_setzero_ps();
    int64_t s0 = 0;
    for (; s0 + 8 <= taps; s0 += 8) {
      const float *base = x + (-s0 - 7) * ldx + c; /* row -s0-7 */
      __m512 r[15];
      for (int k = 0; k < 15; ++k) r[k] = _mm512_maskz_loadu_ps(m, base + k * ldx);
      for (int i = 0; i < 8; ++i) {
        const __m512 hv = _mm512_maskz_loadu_ps(m, h + (s0 + i) * ldh + c);
        for (int j = 0; j < 8; ++j) a[j] = _mm512_fmadd_ps(hv, r[j - i + 7], a[j]);
      }
    }
    for (; s0 < taps; ++s0) {
      const __m512 hv = _mm512_maskz_loadu_ps(m, h + s0 * ldh + c);
      for (int j = 0; j < 8; ++j)
        a[j] = _mm512_fmadd_ps(hv, _mm512_maskz_loadu_ps(m, x + (j - s0) * ldx + c), a[j]);
    }
    for (int j = 0; j < 8; ++j) _mm512_mask_storeu_ps(y + j * ldy + c, m, a[j]);
  }
}

/* FFT on 16 lanes (cpu.h), in place and depth first, so once a sub-transform
 * fits the caches all its passes run there. Forward: decimation in frequency,
 * natural order in, bit-reversed out; inverse: decimation in time, the exact
 * reverse (bit-reversed in, natural out), conjugate twiddles. w^j = tw[j * step]. */
TARGET static void fft16_dif_avx512(float *x, int64_t n, const float *tw, int64_t step) {
  if (n < 2) return;
  const int64_t h = n / 2;
  float *xb = x + 32 * h;
  for (int64_t j = 0; j < h; ++j) {
    const __m512 wr = _mm512_set1_ps(tw[2 * j * step]), wi = _mm512_set1_ps(tw[2 * j * step + 1]);
    const __m512 ar = _mm512_load_ps(x + 32 * j), ai = _mm512_load_ps(x + 32 * j + 16);
    const __m512 br = _mm512_load_ps(xb + 32 * j), bi = _mm512_load_ps(xb + 32 * j + 16);
    _mm512_store_ps(x + 32 * j, _mm512_add_ps(ar, br));
    _mm512_store_ps(x + 32 * j + 16, _mm512_add_ps(ai, bi));
    const __m512 dr = _mm512_sub_ps(ar, br), di = _mm512_sub_ps(ai, bi);
    _mm512_store_ps(xb + 32 * j, _mm512_fmsub_ps(dr, wr, _mm512_mul_ps(di, wi)));
    _mm512_store_ps(xb + 32 * j + 16, _mm512_fmadd_ps(dr, wi, _mm512_mul_ps(di, wr)));
  }
  fft16_dif_avx512(x, h, tw, 2 * step);
  fft16_dif_avx512(xb, h, tw, 2 * step);
}

TARGET static void fft16_dit_avx512(float *x, int64_t n, const float *tw, int64_t step) {
  if (n < 2) return;
  const int64_t h = n / 2;
  float *xb = x + 32 * h;
  fft16_dit_avx512(x, h, tw, 2 * step);
  fft16_dit_avx512(xb, h, tw, 2 * step);
  for (int64_t j = 0; j < h; ++j) {
    const __m512 wr = _mm512_set1_ps(tw[2 * j * step]), wi = _mm512_set1_ps(-tw[2 * j * step + 1]);
    const __m512 ar = _mm512_load_ps(x + 32 * j), ai = _mm512_load_ps(x + 32 * j + 16);
    const __m512 br0 = _mm512_load_ps(xb + 32 * j), bi0 = _mm512_load_ps(xb + 32 * j + 16);
    const __m512 br = _mm512_fmsub_ps(br0, wr, _mm512_mul_ps(bi0, wi));
    const __m512 bi = _mm512_fmadd_ps(br0, wi, _mm512_mul_ps(bi0, wr));
    _mm512_store_ps(x + 32 * j, _mm512_add_ps(ar, br));
    _mm512_store_ps(x + 32 * j + 16, _mm512_add_ps(ai, bi));
    _mm512_store_ps(xb + 32 * j, _mm512_sub_ps(ar, br));
    _mm512_store_ps(xb + 32 * j + 16, _mm512_sub_ps(ai, bi));
  }
}

TARGET static void fft16_avx512(float *x, int64_t n, const float *tw, bool inverse) {
  if (inverse)
    fft16_dit_avx512(x, n, tw, 1);
  else
    fft16_dif_avx512(x, n, tw, 1);
}

const sm_cpu_kernels sm_cpu_kernels_avx512 = {
    .isa = "avx512",
    .vector_floats = 16,
    .conv1d_row = conv1d_row_avx512,
    .stream_fence = stream_fence_avx512,
    .conv1d_row2 = conv1d_row2_avx512,
    .dot = dot_avx512,
    .dot_block = dot_block_avx512,
    .axpy = axpy_avx512,
    .scale = scale_avx512,
    .mm_acc = mm_acc_avx512,
    .exp_sum = exp_sum_avx512,
    .scan_chunk = scan_chunk_avx512,
    .scan_step = scan_step_avx512,
    .softplus_row = softplus_row_avx512,
    .silu_mul_row = silu_mul_row_avx512,
    .dw_taps = dw_taps_avx512,
    .causal_taps8 = causal_taps8_avx512,
    .fft16 = fft16_avx512,
    .load_row = load_row_avx512,
    .store_row = store_row_avx512,
};
#endif
