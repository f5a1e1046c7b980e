/*
 * Long convolution on the CPU: direct or FFT (core resolved AUTO).
 *
 * Direct: tasks are (batch, block of channels, block of tokens). A task copies
 * the inputs its outputs need, converted to f32, into [rows][cb] with zero rows
 * before t = 0, and runs the tap kernel (sm_cpu_kernels.dw_taps) on groups of
 * 8 tokens with the taps they reach (the causal triangle is skipped, up to 7
 * taps of zeros a group). The filter is transposed once to hT [taps][C].
 *
 * FFT (KISS FFT, real transforms): with N = sm_long_conv_fft_size(L, Lh) >=
 * L + taps - 1 the circular product equals the causal one for t < L. Tasks are
 * (batch, group of 8 channels): gather the channels' columns (one pass over
 * the rows), transform, multiply by the filter's spectrum, transform back,
 * scatter y = out / N + D_skip x. The filter's spectra [C][N/2+1] are kept in
 * the device keyed by h's content version and layout, so a model calling
 * with the same h again skips them; kiss_fftr keeps scratch in its plan, so
 * plans are per worker, cached per N.
 */
#include "backend/cpu/cpu.h"

#include <kiss_fftr.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Caches of plans and filter spectra (per device) ------------------------------ */

enum { cached_plans = 4, cached_filters = 4 };

typedef struct fft_plan {
  int64_t n; /* 0: empty */
  bool lanes; /* the 16-lane FFT (twiddles), else KISS FFT (per-worker plans) */
  int workers;
  kiss_fftr_cfg *forward, *inverse; /* one per worker */
  float *twiddles;                  /* [n/2][2] */
  int32_t *bitrev;                  /* [n]: where the forward transform puts frequency k */
  uint64_t used;
} fft_plan;

typedef struct filter_spectrum {
  uint64_t version; /* 0: empty */
  bool lanes;       /* layout: [C/16][n/2+1][re 16, im 16], else [C][n/2+1] complex */
  int64_t offset, strides[2], channels, filter_len, taps, n;
  seqmix_dtype dtype;
  kiss_fft_cpx *spectrum; /* [C][n/2 + 1] */
  uint64_t used;
} filter_spectrum;

struct sm_cpu_fft_cache {
  fft_plan plans[cached_plans];
  filter_spectrum filters[cached_filters];
  uint64_t clock;
  /* Workers' buffers, kept between calls: fresh pages cost more than the
   * transforms (page faults and zeroing of tens of MiB a call). */
  float *scratch;
  size_t scratch_bytes;
};

static void plan_clear(fft_plan *p) {
  for (int w = 0; w < p->workers; ++w) {
    if (p->forward) kiss_fftr_free(p->forward[w]);
    if (p->inverse) kiss_fftr_free(p->inverse[w]);
  }
  free(p->forward);
  free(p->inverse);
  free(p->twiddles);
  free(p->bitrev);
  memset(p, 0, sizeof *p);
}

void sm_cpu_long_conv_release(sm_device *dev) {
  if (!dev->fft) return;
  for (int i = 0; i < cached_plans; ++i) plan_clear(&dev->fft->plans[i]);
  for (int i = 0; i < cached_filters; ++i) free(dev->fft->filters[i].spectrum);
  free(dev->fft->scratch);
  free(dev->fft);
  dev->fft = NULL;
}

static seqmix_status cache_get(sm_device *dev, const char *fn) {
  if (!dev->fft && !(dev->fft = calloc(1, sizeof *dev->fft)))
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  return SEQMIX_OK;
}

/* Plans of length n for every worker: cached, or made in the least recently used slot. */
static seqmix_status plan_get(sm_device *dev, const char *fn, int64_t n, bool lanes, int workers,
                              const fft_plan **out) {
  struct sm_cpu_fft_cache *cache = dev->fft;
  fft_plan *victim = &cache->plans[0];
  for (int i = 0; i < cached_plans; ++i) {
    fft_plan *p = &cache->plans[i];
    if (p->n == n && p->lanes == lanes && (lanes || p->workers >= workers)) {
      p->used = ++cache->clock;
      *out = p;
      return SEQMIX_OK;
    }
    if (p->used < victim->used) victim = p;
  }
  plan_clear(victim);
  if (lanes) {
    victim->twiddles = malloc((size_t)n * sizeof(float));
    victim->bitrev = malloc((size_t)n * sizeof(int32_t));
    if (!victim->twiddles || !victim->bitrev || n > INT32_MAX) {
      plan_clear(victim);
      return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    }
    for (int64_t p = 0; p < n / 2; ++p) {
      const double a = 2 * M_PI * (double)p / (double)n;
      victim->twiddles[2 * p] = (float)cos(a), victim->twiddles[2 * p + 1] = (float)-sin(a);
    }
    int bits = 0;
    while ((INT64_C(1) << bits) < n) ++bits;
    for (int64_t k = 0; k < n; ++k) {
      int64_t r = 0;
      for (int i = 0; i < bits; ++i) r |= (k >> i & 1) << (bits - 1 - i);
      victim->bitrev[k] = (int32_t)r;
    }
    victim->n = n, victim->lanes = true, victim->used = ++cache->clock;
    *out = victim;
    return SEQMIX_OK;
  }
  victim->forward = calloc((size_t)workers, sizeof *victim->forward);
  victim->inverse = calloc((size_t)workers, sizeof *victim->inverse);
  victim->workers = workers;
  bool ok = victim->forward && victim->inverse && n <= INT32_MAX;
  for (int w = 0; w < workers && ok; ++w) {
    victim->forward[w] = kiss_fftr_alloc((int)n, 0, NULL, NULL);
    victim->inverse[w] = kiss_fftr_alloc((int)n, 1, NULL, NULL);
    ok = victim->forward[w] && victim->inverse[w];
  }
  if (!ok) {
    plan_clear(victim);
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory for FFT plans of %lld",
                   fn, (long long)n);
  }
  victim->n = n;
  victim->used = ++cache->clock;
  *out = victim;
  return SEQMIX_OK;
}

/* ---- Shared helpers -------------------------------------------------------------- */

typedef struct lconv_job {
  const sm_long_conv_desc *desc;
  const sm_cpu_kernels *kernels;
  seqmix_dtype act;
  const char *x;
  int64_t x_sb, x_st;
  char *y;
  int64_t y_sb, y_st;
  const float *d_skip; /* [C] f32 or NULL */
  int64_t taps;        /* min(Lh, L) */
  /* direct */
  const float *ht; /* [taps][C] */
  int64_t token_block, token_tasks, channel_tasks;
  /* fft */
  const fft_plan *plan;
  const kiss_fft_cpx *spectrum; /* [C][n/2 + 1] */
  const sm_tensor_ref *h;
  int64_t n;
  float *scratch;
  size_t scratch_floats;
} lconv_job;

/* Rows t0 .. t1-1 of x (channels c0 .. c0+n) as f32 into dst [t1-t0][n]. */
static void load_rows(const lconv_job *job, int64_t b, int64_t t0, int64_t t1, int64_t c0,
                      int64_t n, float *dst) {
  const size_t esize = seqmix_dtype_size(job->act);
  for (int64_t t = t0; t < t1; ++t) {
    const char *src = job->x + (size_t)(b * job->x_sb + t * job->x_st + c0) * esize;
    if (job->act == SEQMIX_F32)
      memcpy(dst + (t - t0) * n, src, (size_t)n * sizeof(float));
    else
      job->kernels->load_row(job->act, src, dst + (t - t0) * n, n);
  }
}

/* y rows t0 .. t1-1 (channels c0 .. c0+n) = out [t1-t0][ldo] (times scale) + D_skip x. */
static void store_rows(const lconv_job *job, int64_t b, int64_t t0, int64_t t1, int64_t c0,
                       int64_t n, float *out, int64_t ldo, const float *xrows, int64_t ldx) {
  const size_t esize = seqmix_dtype_size(job->act);
  for (int64_t t = t0; t < t1; ++t) {
    float *o = out + (t - t0) * ldo;
    if (job->d_skip) {
      const float *x = xrows + (t - t0) * ldx, *d = job->d_skip + c0;
      for (int64_t c = 0; c < n; ++c) o[c] += d[c] * x[c];
    }
    char *dst = job->y + (size_t)(b * job->y_sb + t * job->y_st + c0) * esize;
    if (job->act == SEQMIX_F32)
      memcpy(dst, o, (size_t)n * sizeof(float));
    else
      job->kernels->store_row(job->act, o, dst, n);
  }
}

/* ---- Direct ----------------------------------------------------------------------- */

enum { direct_channels = 64, group = 8, tap_span = 1024 };

static void direct_task(void *arg, int64_t task, int worker) {
  const lconv_job *job = arg;
  const sm_long_conv_desc *d = job->desc;
  const int64_t per_b = job->token_tasks * job->channel_tasks;
  const int64_t b = task / per_b, tt = task % per_b / job->channel_tasks;
  const int64_t c0 = task % job->channel_tasks * direct_channels;
  const int64_t n = d->channels - c0 < direct_channels ? d->channels - c0 : direct_channels;
  const int64_t t0 = tt * job->token_block;
  const int64_t t1 = t0 + job->token_block < d->tokens ? t0 + job->token_block : d->tokens;
  /* Inputs t0 - taps + 1 .. t1 - 1, with `group` zero rows before t = 0. */
  const int64_t lo = t0 - job->taps + 1 > 0 ? t0 - job->taps + 1 : 0;
  const int64_t zero_rows = lo == 0 ? group : 0;
  float *xs = job->scratch + (size_t)worker * job->scratch_floats;
  memset(xs, 0, (size_t)(zero_rows * n) * sizeof *xs);
  float *xrows = xs + zero_rows * n; /* row t at xrows + (t - lo) * n */
  load_rows(job, b, lo, t1, c0, n, xrows);
  float *out = xrows + (t1 - lo) * n, *scratch_y = out + (t1 - t0) * n;
  void (*taps_fn)(float *, int64_t, const float *const *, int, int64_t, int64_t, const float *,
                  int64_t, int64_t, int64_t, int64_t, int64_t, const float *) =
      job->kernels->dw_taps ? job->kernels->dw_taps : sm_cpu_dw_taps_portable;
  /* Taps in spans of tap_span, each over all the block's groups, so the span's
   * input rows and filter rows stay in L2. */
  const int64_t reach_max = t1 < job->taps ? t1 : job->taps;
  for (int64_t s0 = 0; s0 < reach_max; s0 += tap_span)
    for (int64_t t = t0; t < t1; t += group) {
      const int64_t J = t1 - t < group ? t1 - t : group;
      /* The group's last token reaches tap min(t + J - 1, taps - 1). */
      const int64_t reach = t + J < job->taps ? t + J : job->taps;
      if (reach <= s0) continue;
      const int64_t span = reach - s0 < tap_span ? reach - s0 : tap_span;
      const float *row = xrows + (t - s0 - lo) * n, *h = job->ht + s0 * d->channels + c0;
      float *y = out + (t - t0) * n;
      if (J == group && job->kernels->causal_taps8) {
        job->kernels->causal_taps8(y, n, row, n, h, d->channels, span, n, s0 > 0);
      } else {
        taps_fn(scratch_y, n, &row, 1, n, -n, h, d->channels, 0, span, J, n, NULL);
        for (int64_t k = 0; k < J * n; ++k) y[k] = s0 > 0 ? y[k] + scratch_y[k] : scratch_y[k];
      }
    }
  store_rows(job, b, t0, t1, c0, n, out, n, xrows + (t0 - lo) * n, n);
}

static seqmix_status run_direct(sm_device *dev, const sm_op *op, lconv_job *job) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const sm_tensor_ref *h = &op->tensors[SM_LCONV_H];
  const int64_t C = d->channels, taps = job->taps;
  float *ht = malloc((size_t)(taps * C) * sizeof *ht);
  if (!ht) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t s = 0; s < taps; ++s)
      ht[s * C + c] = sm_cpu_param_at(h, h->offset + c * h->strides[0] + s);
  job->ht = ht;
  const int threads = sm_pool_threads(dev->pool);
  job->channel_tasks = (C + direct_channels - 1) / direct_channels;
  /* About 8 tasks a thread; blocks of at least 64 tokens (each reloads taps rows). */
  int64_t block = d->batch * d->tokens * job->channel_tasks / (threads * 8);
  block = (block + group - 1) / group * group;
  if (block < 64) block = 64;
  if (block > d->tokens) block = d->tokens;
  job->token_block = block;
  job->token_tasks = (d->tokens + block - 1) / block;
  job->scratch_floats = (size_t)((2 * group + taps + 2 * block) * direct_channels);
  job->scratch = malloc((size_t)threads * job->scratch_floats * sizeof(float));
  if (!job->scratch) {
    free(ht);
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  }
  sm_pool_run(dev->pool, d->batch * job->token_tasks * job->channel_tasks, direct_task, job);
  free(job->scratch);
  free(ht);
  return SEQMIX_OK;
}

/* ---- FFT ---------------------------------------------------------------------------- */

/* Spectrum of channel c's filter (taps, zero-padded to n). */
static void filter_task(void *arg, int64_t c, int worker) {
  const lconv_job *job = arg;
  const sm_tensor_ref *h = job->h;
  float *buf = job->scratch + (size_t)worker * job->scratch_floats;
  for (int64_t s = 0; s < job->taps; ++s) buf[s] = sm_cpu_param_at(h, h->offset + c * h->strides[0] + s);
  memset(buf + job->taps, 0, (size_t)(job->n - job->taps) * sizeof *buf);
  kiss_fftr(job->plan->forward[worker], buf,
            (kiss_fft_cpx *)job->spectrum + c * (job->n / 2 + 1));
}

static void fft_task(void *arg, int64_t task, int worker) {
  const lconv_job *job = arg;
  const sm_long_conv_desc *d = job->desc;
  const int64_t groups = (d->channels + group - 1) / group;
  const int64_t b = task / groups, c0 = task % groups * group;
  const int64_t g = d->channels - c0 < group ? d->channels - c0 : group;
  const int64_t L = d->tokens, n = job->n, bins = n / 2 + 1;
  float *rows = job->scratch + (size_t)worker * job->scratch_floats; /* [L][g] */
  float *col = rows + L * g;                                            /* [n] */
  kiss_fft_cpx *freq = (kiss_fft_cpx *)(col + n);                       /* [bins] */
  float *out = (float *)(freq + bins);                                  /* [L][g] */
  load_rows(job, b, 0, L, c0, g, rows);
  const float inv_n = 1.0f / (float)n;
  for (int64_t k = 0; k < g; ++k) {
    for (int64_t t = 0; t < L; ++t) col[t] = rows[t * g + k];
    memset(col + L, 0, (size_t)(n - L) * sizeof *col);
    kiss_fftr(job->plan->forward[worker], col, freq);
    const kiss_fft_cpx *hf = job->spectrum + (c0 + k) * bins;
    for (int64_t f = 0; f < bins; ++f) {
      const float re = freq[f].r * hf[f].r - freq[f].i * hf[f].i;
      const float im = freq[f].r * hf[f].i + freq[f].i * hf[f].r;
      freq[f].r = re, freq[f].i = im;
    }
    kiss_fftri(job->plan->inverse[worker], freq, col);
    for (int64_t t = 0; t < L; ++t) out[t * g + k] = col[t] * inv_n;
  }
  store_rows(job, b, 0, L, c0, g, out, g, rows, g);
}

/* ---- FFT on 16 lanes (sm_cpu_kernels.fft16) ------------------------------------------
 * Channels c0 .. c0+31 travel as one complex signal z = (c0..c0+15) + i (c0+16..c0+31):
 * a row of x is already one element of it. From Z = FFT(z), with k' = n - k,
 *   A[k] = (Z[k] + conj Z[k']) / 2,  B[k] = -i (Z[k] - conj Z[k']) / 2
 * are the spectra of the two halves; the product W = A Ha + i B Hb goes back
 * through one inverse FFT whose real and imaginary parts are the two halves' y. */

enum { lanes = 16, pair = 32 };

/* A (k) and B (k) of the two 16-channel halves from Z[k] and Z[n - k]. */
static void split_halves(const float *zk, const float *zm, float *a, float *b) {
  for (int l = 0; l < lanes; ++l) {
    const float kr = zk[l], ki = zk[lanes + l], mr = zm[l], mi = zm[lanes + l];
    a[l] = 0.5f * (kr + mr), a[lanes + l] = 0.5f * (ki - mi);
    b[l] = 0.5f * (ki + mi), b[lanes + l] = -0.5f * (kr - mr);
  }
}

static float *pair_buffer(const lconv_job *job, int worker) {
  return job->scratch + (size_t)worker * job->scratch_floats;
}

/* Spectra of the filters of channels 32p .. 32p+31 into two 16-lane groups. */
static void lane_filter_task(void *arg, int64_t p, int worker) {
  const lconv_job *job = arg;
  const sm_tensor_ref *h = job->h;
  const int64_t n = job->n, bins = n / 2 + 1, C = job->desc->channels, c0 = p * pair;
  float *z = pair_buffer(job, worker);
  const int32_t *pos = job->plan->bitrev;
  memset(z, 0, (size_t)(n * pair) * sizeof *z);
  for (int64_t l = 0; l < pair && c0 + l < C; ++l)
    for (int64_t s = 0; s < job->taps; ++s)
      z[s * pair + l] = sm_cpu_param_at(h, h->offset + (c0 + l) * h->strides[0] + s);
  job->kernels->fft16(z, n, job->plan->twiddles, false);
  float *spec = (float *)job->spectrum;
  float *ha = spec + (size_t)(2 * p) * (size_t)(bins * pair), *hb = ha + bins * pair;
  for (int64_t k = 0; k < bins; ++k)
    split_halves(z + pos[k] * pair, z + pos[(n - k) & (n - 1)] * pair, ha + k * pair,
                 hb + k * pair);
}

static void lane_fft_task(void *arg, int64_t task, int worker) {
  const lconv_job *job = arg;
  const sm_long_conv_desc *d = job->desc;
  const int64_t pairs = (d->channels + pair - 1) / pair, b = task / pairs, p = task % pairs;
  const int64_t c0 = p * pair, g = d->channels - c0 < pair ? d->channels - c0 : pair;
  const int64_t L = d->tokens, n = job->n, bins = n / 2 + 1;
  float *z = pair_buffer(job, worker), *rows = z + n * pair; /* rows [L][g] */
  const int32_t *pos = job->plan->bitrev;
  load_rows(job, b, 0, L, c0, g, rows);
  memset(z, 0, (size_t)(n * pair) * sizeof *z);
  for (int64_t t = 0; t < L; ++t) memcpy(z + t * pair, rows + t * g, (size_t)g * sizeof *z);
  job->kernels->fft16(z, n, job->plan->twiddles, false);
  const float *spec = (const float *)job->spectrum;
  const float *ha = spec + (size_t)(2 * p) * (size_t)(bins * pair), *hb = ha + bins * pair;
  for (int64_t k = 0; k < bins; ++k) {
    float *zk = z + pos[k] * pair, *zm = z + pos[(n - k) & (n - 1)] * pair, a[pair], bb[pair];
    split_halves(zk, zm, a, bb);
    const float *fa = ha + k * pair, *fb = hb + k * pair;
    for (int l = 0; l < lanes; ++l) {
      const float yar = a[l] * fa[l] - a[lanes + l] * fa[lanes + l];
      const float yai = a[l] * fa[lanes + l] + a[lanes + l] * fa[l];
      const float ybr = bb[l] * fb[l] - bb[lanes + l] * fb[lanes + l];
      const float ybi = bb[l] * fb[lanes + l] + bb[lanes + l] * fb[l];
      zk[l] = yar - ybi, zk[lanes + l] = yai + ybr; /* W[k] = Ya + i Yb */
      zm[l] = yar + ybi, zm[lanes + l] = ybr - yai; /* W[n-k] = conj Ya + i conj Yb */
    }
  }
  job->kernels->fft16(z, n, job->plan->twiddles, true);
  float *w = z;
  const float inv_n = 1.0f / (float)n;
  for (int64_t t = 0; t < L; ++t)
    for (int64_t l = 0; l < g; ++l) w[t * g + l] = w[t * pair + l] * inv_n; /* compact to [L][g] */
  store_rows(job, b, 0, L, c0, g, w, g, rows, g);
}

/* The filter's spectra: from the cache when h's contents and layout match. */
static seqmix_status filter_get(sm_device *dev, const sm_op *op, lconv_job *job) {
  const sm_tensor_ref *h = &op->tensors[SM_LCONV_H];
  const sm_long_conv_desc *d = &op->u.long_conv;
  struct sm_cpu_fft_cache *cache = dev->fft;
  filter_spectrum *victim = &cache->filters[0];
  for (int i = 0; i < cached_filters; ++i) {
    filter_spectrum *f = &cache->filters[i];
    if (f->spectrum && f->version == h->version && f->offset == h->offset &&
        f->strides[0] == h->strides[0] && f->strides[1] == h->strides[1] &&
        f->dtype == h->dtype && f->channels == d->channels && f->filter_len == d->filter_len &&
        f->taps == job->taps && f->n == job->n && f->lanes == job->plan->lanes) {
      f->used = ++cache->clock;
      job->spectrum = f->spectrum;
      return SEQMIX_OK;
    }
    if (f->used < victim->used) victim = f;
  }
  free(victim->spectrum);
  memset(victim, 0, sizeof *victim);
  const bool lanes_fft = job->plan->lanes;
  const int64_t pairs = (d->channels + pair - 1) / pair;
  /* Lanes: 2 groups of 16 per pair of [bins][32] floats; else [C][bins] complex. */
  const size_t bytes = lanes_fft ? (size_t)(2 * pairs * (job->n / 2 + 1) * pair) * sizeof(float)
                                 : (size_t)(d->channels * (job->n / 2 + 1)) * sizeof(kiss_fft_cpx);
  victim->spectrum = malloc(bytes);
  if (!victim->spectrum)
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  job->spectrum = victim->spectrum;
  job->h = h;
  if (lanes_fft)
    sm_pool_run(dev->pool, pairs, lane_filter_task, job);
  else
    sm_pool_run(dev->pool, d->channels, filter_task, job);
  *victim = (filter_spectrum){h->version, lanes_fft, h->offset, {h->strides[0], h->strides[1]},
                              d->channels, d->filter_len, job->taps, job->n, h->dtype,
                              victim->spectrum, ++cache->clock};
  return SEQMIX_OK;
}

static seqmix_status run_fft(sm_device *dev, const sm_op *op, lconv_job *job) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const int threads = sm_pool_threads(dev->pool);
  seqmix_status st;
  /* The 16-lane FFT takes powers of two; KISS FFT any 7-smooth length. */
  const bool lanes_fft = dev->kernels->fft16 != NULL;
  const int64_t L = d->tokens;
  job->n = lanes_fft ? (int64_t)sm_ceil_pow2((uint64_t)(L + job->taps - 1))
                     : sm_long_conv_fft_size(L, d->filter_len);
  if (job->n < 2) job->n = 2;
  if ((st = cache_get(dev, op->name)) ||
      (st = plan_get(dev, op->name, job->n, lanes_fft, threads, &job->plan)))
    return st;
  const int64_t n = job->n;
  job->scratch_floats = lanes_fft ? (size_t)((n + L) * pair)
                                  : (size_t)(2 * L * group + n + 2 * (n / 2 + 1) + 16);
  job->scratch_floats = (job->scratch_floats + 15) / 16 * 16; /* 64-byte aligned per worker */
  struct sm_cpu_fft_cache *cache = dev->fft;
  const size_t bytes = (size_t)threads * job->scratch_floats * sizeof(float);
  if (cache->scratch_bytes < bytes) {
    free(cache->scratch);
    cache->scratch_bytes = 0;
    if (!(cache->scratch = aligned_alloc(64, bytes)))
      return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
    cache->scratch_bytes = bytes;
  }
  job->scratch = cache->scratch;
  st = filter_get(dev, op, job);
  if (!st && lanes_fft)
    sm_pool_run(dev->pool, d->batch * ((d->channels + pair - 1) / pair), lane_fft_task, job);
  else if (!st)
    sm_pool_run(dev->pool, d->batch * ((d->channels + group - 1) / group), fft_task, job);
  return st;
}

seqmix_status sm_cpu_long_conv(sm_device *dev, const sm_op *op) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const sm_tensor_ref *x = &op->tensors[SM_LCONV_X], *y = &op->tensors[SM_LCONV_Y],
                      *dskip = &op->tensors[SM_LCONV_D_SKIP];
  const size_t esize = seqmix_dtype_size(x->dtype);
  lconv_job job = {
      .desc = d,
      .kernels = dev->kernels,
      .act = x->dtype,
      .x = (const char *)x->buffer->data + (size_t)x->offset * esize,
      .x_sb = x->strides[0],
      .x_st = x->strides[1],
      .y = (char *)y->buffer->data + (size_t)y->offset * esize,
      .y_sb = y->strides[0],
      .y_st = y->strides[1],
      .taps = d->filter_len < d->tokens ? d->filter_len : d->tokens,
  };
  float *dvec = NULL;
  if (dskip->buffer) {
    if (!(dvec = malloc((size_t)d->channels * sizeof *dvec)))
      return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
    for (int64_t c = 0; c < d->channels; ++c) dvec[c] = sm_cpu_param_at(dskip, dskip->offset + c);
    job.d_skip = dvec;
  }
  seqmix_status st =
      d->method == SEQMIX_CONV_FFT ? run_fft(dev, op, &job) : run_direct(dev, op, &job);
  free(dvec);
  return st;
}
