/* The CPU backend's private types: host buffers, the thread pool, SIMD kernels. */
#ifndef SEQMIX_CPU_H
#define SEQMIX_CPU_H

#include "backend/backend.h"

struct sm_buffer {
  void *data;
  size_t bytes;
};

/* ---- Thread pool (pool.c): a parallel-for whose caller takes part. ---- */
typedef struct sm_pool sm_pool;
typedef void (*sm_task_fn)(void *arg, int64_t task, int worker);
seqmix_status sm_pool_create(int threads, sm_pool **out);
void sm_pool_destroy(sm_pool *pool);
int sm_pool_threads(const sm_pool *pool);
/* Runs fn(arg, i, worker) for i in [0, tasks) and returns when all are done. */
void sm_pool_run(sm_pool *pool, int64_t tasks, sm_task_fn fn, void *arg);

/* ---- SIMD kernels, one table per instruction set (chosen at open). ---- */
typedef struct sm_cpu_kernels {
  const char *isa; /* "avx512", "avx2", "neon", "scalar" */
  int vector_floats;
  /* y[c] = bias[c] + sum_j w[j*w_stride + c] * rows[j][c] for c < n; SiLU if silu.
   * stream: y will not be read soon; write around the caches where the ISA can
   * (the caller fences with stream_fence before others read y). */
  void (*conv1d_row)(float *y, const float *const *rows, const float *w, int64_t w_stride,
                     const float *bias, int K, int64_t n, bool silu, bool stream);
  void (*stream_fence)(void);
  /* Two consecutive tokens at once: y0 from rows[0..K-1], y1 from rows[1..K]
   * (weights loaded once for both). NULL where the ISA gains nothing. */
  void (*conv1d_row2)(float *y0, float *y1, const float *const *rows, const float *w,
                      int64_t w_stride, const float *bias, int K, int64_t n, bool silu,
                      bool stream);
  /* sum a[i] * b[i]; y[i] += a * x[i]; y[i] *= a (i < n). */
  float (*dot)(const float *a, const float *b, int64_t n);
  /* out[r * ldo + j] = sum_i q[r * ldq + i] * keys[j][i] for r < rows, j < nkeys,
   * i < n: few query rows against a block of key rows (decode scores). NULL:
   * the caller loops over dot. */
  void (*dot_block)(const float *q, int64_t ldq, int64_t rows, const float *const *keys,
                    int64_t nkeys, int64_t n, float *out, int64_t ldo);
  void (*axpy)(float *y, float a, const float *x, int64_t n);
  void (*scale)(float *y, float a, int64_t n);
  /* C[M x N] += A[M x K] . B[K x N], row-major with leading dims (elements). */
  void (*mm_acc)(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb,
                 int64_t M, int64_t N, int64_t K);
  /* x[i] = exp(x[i] - sub) (exactly 0 for -inf); returns the sum. */
  float (*exp_sum)(float *x, float sub, int64_t n);
  /* Selective-scan steps for a block of W channels: for each token t < T and
   * n < N, h[n][w] = exp(dt[t][w] At[n][w]) h[n][w] + du[t][w] Bt[t][n], and
   * y[t][w] = sum_n Ct[t][n] h[n][w]. NULL: a portable loop. */
  void (*scan_chunk)(float *h, const float *At, const float *dt, const float *du, const float *Bt,
                     const float *Ct, float *y, int64_t T, int64_t W, int64_t N);
  /* One token for W channels whose states are rows of N floats (decode): for
   * w < W, h_w = exp(dt[w] A_w) h_w + du[w] B; y[w] = C . h_w, with row w of h
   * at h + w * ldh and of A at A + w * lda. NULL: a portable loop. */
  void (*scan_step)(float *h, int64_t ldh, const float *A, int64_t lda, const float *dt,
                    const float *du, const float *B, const float *C, float *y, int64_t W,
                    int64_t N);
  /* x[i] = log(1 + exp(x[i])); y[i] *= silu(z[i]). NULL: libm loops. */
  void (*softplus_row)(float *x, int64_t n);
  void (*silu_mul_row)(float *y, const float *z, int64_t n);
  /* Depthwise taps: y[j*ldy + c] = bias[c] (0 if NULL) + sum_{u < nrows, v < taps}
   * w[u*wrow + v*ldw + c] * rows[u][j*xstep + v*tstep + c] for j < J, c < n
   * (tstep may be negative). 2D depthwise conv (a row of outputs), the pool
   * mixer's window sums and the direct long convolution. NULL: the portable
   * loop sm_cpu_dw_taps_portable. */
  void (*dw_taps)(float *y, int64_t ldy, const float *const *rows, int nrows, int64_t xstep,
                  int64_t tstep, const float *w, int64_t ldw, int64_t wrow, int64_t taps,
                  int64_t J, int64_t n, const float *bias);
  /* Causal taps of 8 consecutive outputs (direct long convolution): for j < 8,
   * c < n, y[j*ldy + c] (+)= sum_{s < taps} h[s*ldh + c] * x[(j - s)*ldx + c]
   * (+= when accumulate); x rows down to 1 - taps are readable. NULL: dw_taps. */
  void (*causal_taps8)(float *y, int64_t ldy, const float *x, int64_t ldx, const float *h,
                       int64_t ldh, int64_t taps, int64_t n, bool accumulate);
  /* Complex FFT of length n (a power of two) on 16 lanes at once, in place:
   * element k is x[32k .. 32k+15] (real parts) and x[32k+16 .. 32k+31]
   * (imaginary parts), x 64-byte aligned; tw[2p], tw[2p+1] = cos, -sin(2 pi p / n)
   * for p < n/2. Forward: natural order in, bit-reversed order out; inverse
   * (conjugate twiddles, unscaled): bit-reversed in, natural out.
   * NULL: KISS FFT per channel. */
  void (*fft16)(float *x, int64_t n, const float *tw, bool inverse);
  /* n elements of dtype (F16/BF16) to f32 and back (round to nearest even). */
  void (*load_row)(seqmix_dtype dtype, const void *src, float *dst, int64_t n);
  void (*store_row)(seqmix_dtype dtype, const float *src, void *dst, int64_t n);
} sm_cpu_kernels;

extern const sm_cpu_kernels sm_cpu_kernels_scalar;
#if defined(__x86_64__) || defined(__i386__)
extern const sm_cpu_kernels sm_cpu_kernels_avx2;
extern const sm_cpu_kernels sm_cpu_kernels_avx512;
#endif
#if defined(__aarch64__)
extern const sm_cpu_kernels sm_cpu_kernels_neon;
#endif

struct sm_device {
  sm_pool *pool;
  const sm_cpu_kernels *kernels;
  struct sm_cpu_fft_cache *fft; /* the long convolution's FFT plans and filter spectra */
  void *scratch;                /* sm_cpu_scratch's buffer */
  size_t scratch_bytes;
};

void sm_cpu_dw_taps_portable(float *y, int64_t ldy, const float *const *rows, int nrows,
                             int64_t xstep, int64_t tstep, const float *w, int64_t ldw,
                             int64_t wrow, int64_t taps, int64_t J, int64_t n,
                             const float *bias);

/* Element `index` of a parameter tensor (F32, F16 or BF16) as f32. */
static inline float sm_cpu_param_at(const sm_tensor_ref *r, int64_t index) {
  const void *base = r->buffer->data;
  switch (r->dtype) {
  case SEQMIX_F16: return sm_f16_to_f32(((const uint16_t *)base)[index]);
  case SEQMIX_BF16: return sm_bf16_to_f32(((const uint16_t *)base)[index]);
  default: return ((const float *)base)[index];
  }
}

/* Memory (memory.c). sm_cpu_scratch: a 64-byte aligned work buffer of at
 * least `bytes` kept by the device between ops (fresh pages for every call
 * cost more than small ops), valid until the next call; NULL when out of memory. */
void *sm_cpu_scratch(sm_device *dev, size_t bytes);
seqmix_status sm_cpu_alloc(sm_device *dev, size_t bytes, sm_buffer **out);
void sm_cpu_free(sm_device *dev, sm_buffer *buf);
seqmix_status sm_cpu_write(sm_device *dev, sm_buffer *buf, size_t offset, const void *src,
                           size_t bytes);
seqmix_status sm_cpu_read(sm_device *dev, sm_buffer *buf, size_t offset, void *dst, size_t bytes);
seqmix_status sm_cpu_copy(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                          size_t dst_offset, size_t bytes);

/* Per-op entry points (one file per op family). */
seqmix_status sm_cpu_conv1d(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_attention(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_attention_merge(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_selective_scan(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_ssd(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_linear_attention(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_conv2d_depthwise(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_pool_mixer(sm_device *dev, const sm_op *op);
seqmix_status sm_cpu_long_conv(sm_device *dev, const sm_op *op);
void sm_cpu_long_conv_release(sm_device *dev); /* at close */

#endif
