/*
 * Depthwise 2D convolution and the pool mixer on the CPU, NHWC.
 *
 * Work split: tasks are (batch, run of output rows, block of channels). A task
 * keeps the input rows it needs as zero-padded f32 rows [W + 2 pad_w][cb] in a
 * small direct-mapped ring (slot = row mod ((KH-1) dil_h + 1), so the KH rows
 * one output row needs never collide and each input row is converted once per
 * task); rows above or below the image are one shared zero row. Each output row
 * is then one call of the tap kernel (sm_cpu_kernels.dw_taps, or the portable
 * loop): all KH x KW taps, a register tile of output pixels x 16 channels.
 *
 * The pool mixer runs the same machinery with all-ones weights (a pool x pool
 * window sum over zero padding) and then divides by the number of pixels
 * inside the image and subtracts x.
 */
#include "backend/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

/* Channels a task handles at once: the padded rows of a block stay small. */
enum { channel_block = 256 }; /* at most; blocks are evened out in multiples of 16 */

/* y[j*ldy + c] = bias[c] + sum_{u<nrows, v<taps} w[u*wrow + v*ldw + c] *
 * rows[u][j*xstep + v*tstep + c], j < J, c < n (the portable loop). */
void sm_cpu_dw_taps_portable(float *y, int64_t ldy, const float *const *rows, int nrows,
                             int64_t xstep, int64_t tstep, const float *w, int64_t ldw,
                             int64_t wrow, int64_t taps, int64_t J, int64_t n,
                             const float *bias) {
  for (int64_t j = 0; j < J; ++j) {
    float *out = y + j * ldy;
    for (int64_t c = 0; c < n; ++c) out[c] = bias ? bias[c] : 0.0f;
    for (int u = 0; u < nrows; ++u)
      for (int64_t v = 0; v < taps; ++v) {
        const float *x = rows[u] + j * xstep + v * tstep, *wv = w + u * wrow + v * ldw;
        for (int64_t c = 0; c < n; ++c) out[c] += wv[c] * x[c];
      }
  }
}

typedef struct dw_job {
  const sm_cpu_kernels *kernels;
  seqmix_dtype act;
  const char *x;
  int64_t xs[3]; /* batch, row, pixel strides (elements) */
  char *y;
  int64_t ys[3];
  int64_t B, H, W, C, KH, KW, Ho, Wo;
  int32_t sh, sw, ph, pw, dh, dw;
  const float *weight; /* [KH][KW][C] f32 */
  const float *bias;   /* [C] f32 or NULL */
  bool in_place;       /* F32 x read in place (dw_rows_in_place), no padded rows */
  bool pool;           /* pool mixer: divide by the inside count, subtract x */
  int64_t rows_per_task, row_tasks, channel_tasks, cb; /* cb: channels a task takes */
  int slots;     /* ring rows */
  int64_t wp;    /* padded row width (pixels) */
  float *scratch; /* per worker: ring, zero row, output row */
  size_t scratch_floats;
  int64_t *tags;      /* per worker: the input row each ring slot holds (-1: none) */
  const float **rows; /* per worker: KH row pointers */
} dw_job;

/* Input row r (channels c0 .. c0+n) into the padded f32 row `dst` [wp][n]. */
static void load_padded_row(const dw_job *job, int64_t b, int64_t r, int64_t c0, int64_t n,
                            float *dst) {
  const size_t esize = seqmix_dtype_size(job->act);
  memset(dst, 0, (size_t)(job->pw * n) * sizeof *dst);
  memset(dst + (job->pw + job->W) * n, 0, (size_t)(job->pw * n) * sizeof *dst);
  const char *src = job->x + (size_t)(b * job->xs[0] + r * job->xs[1] + c0) * esize;
  float *row = dst + job->pw * n;
  for (int64_t s = 0; s < job->W; ++s) {
    const char *px = src + (size_t)(s * job->xs[2]) * esize;
    if (job->act == SEQMIX_F32)
      memcpy(row + s * n, px, (size_t)n * sizeof(float));
    else
      job->kernels->load_row(job->act, px, row + s * n, n);
  }
}

typedef void (*taps_fn)(float *, int64_t, const float *const *, int, int64_t, int64_t,
                        const float *, int64_t, int64_t, int64_t, int64_t, int64_t,
                        const float *);

/* F32 convolution without the padded copies: x rows are read in place. Rows
 * outside the image are left out (their weights with them); the columns whose
 * taps all fall inside the image run as one call, each border column as a call
 * with only its inside taps. Used for kernels of up to 9 taps, where copying
 * costs as much as the taps (3x3 112x112x32: 89 -> 79 us); larger kernels keep
 * the padded rows (7x7 56x56x96: 140 vs 181 us in place, L1 against L2 loads
 * and border columns outside the register tiles). */
static void dw_rows_in_place(const dw_job *job, int64_t b, int64_t i0, int64_t i1, int64_t c0,
                             int64_t n, const float **rows, taps_fn taps) {
  const int64_t xp = job->xs[2], KW = job->KW, C = job->C;
  const float *x = (const float *)job->x + b * job->xs[0] + c0;
  const float *bias = job->bias ? job->bias + c0 : NULL;
  /* Interior columns: j*sw - pw >= 0 and j*sw - pw + (KW-1)*dw <= W - 1. */
  int64_t jl = (job->pw + job->sw - 1) / job->sw;
  int64_t jr = job->W - 1 - (KW - 1) * job->dw + job->pw;
  jr = jr < 0 ? 0 : jr / job->sw + 1;
  if (jl > job->Wo) jl = job->Wo;
  if (jr > job->Wo) jr = job->Wo;
  if (jr < jl) jr = jl;
  for (int64_t i = i0; i < i1; ++i) {
    int64_t u0 = 0, u1 = 0; /* kernel rows inside the image: u0 .. u1-1 */
    for (int64_t u = 0; u < job->KH; ++u) {
      const int64_t r = i * job->sh - job->ph + u * job->dh;
      if (r < 0) u0 = u + 1;
      else if (r < job->H) u1 = u + 1;
    }
    const int nrows = u1 > u0 ? (int)(u1 - u0) : 0;
    const float *w = job->weight + c0 + u0 * KW * C;
    float *y = (float *)job->y + b * job->ys[0] + i * job->ys[1] + c0;
    for (int k = 0; k < nrows; ++k)
      rows[k] = x + (i * job->sh - job->ph + (u0 + k) * job->dh) * job->xs[1] +
                (jl * job->sw - job->pw) * xp;
    if (jr > jl)
      taps(y + jl * job->ys[2], job->ys[2], rows, nrows, job->sw * xp, job->dw * xp, w, C, KW * C,
           KW, jr - jl, n, bias);
    for (int64_t j = 0; j < job->Wo; ++j) {
      if (j == jl) j = jr;
      if (j >= job->Wo) break;
      /* Taps v0 .. v1-1 land inside the row. */
      const int64_t s0 = j * job->sw - job->pw;
      int64_t v0 = s0 < 0 ? (-s0 + job->dw - 1) / job->dw : 0;
      int64_t v1 = job->W - 1 - s0 < 0 ? 0 : (job->W - 1 - s0) / job->dw + 1;
      if (v1 > KW) v1 = KW;
      if (v1 < v0) v1 = v0;
      for (int k = 0; k < nrows; ++k)
        rows[k] = x + (i * job->sh - job->ph + (u0 + k) * job->dh) * job->xs[1] +
                  (s0 + v0 * job->dw) * xp;
      taps(y + j * job->ys[2], job->ys[2], rows, v1 > v0 ? nrows : 0, job->sw * xp,
           job->dw * xp, w + v0 * C, C, KW * C, v1 - v0, 1, n, bias);
    }
  }
}

static void dw_task(void *arg, int64_t task, int worker) {
  const dw_job *job = arg;
  const int64_t cb_count = job->channel_tasks, per_b = job->row_tasks * cb_count;
  const int64_t b = task / per_b, rt = task % per_b / cb_count, ct = task % cb_count;
  const int64_t c0 = ct * job->cb, n = job->C - c0 < job->cb ? job->C - c0 : job->cb;
  const int64_t i0 = rt * job->rows_per_task;
  const int64_t i1 = i0 + job->rows_per_task < job->Ho ? i0 + job->rows_per_task : job->Ho;
  const float **rows = job->rows + (size_t)worker * (size_t)job->KH;
  const taps_fn taps = job->kernels->dw_taps ? job->kernels->dw_taps : sm_cpu_dw_taps_portable;
  if (job->in_place) {
    dw_rows_in_place(job, b, i0, i1, c0, n, rows, taps);
    return;
  }
  const size_t row_floats = (size_t)(job->wp * n), esize = seqmix_dtype_size(job->act);
  float *ring = job->scratch + (size_t)worker * job->scratch_floats;
  float *zero = ring + (size_t)job->slots * row_floats, *out = zero + row_floats;
  int64_t *tags = job->tags + (size_t)worker * (size_t)job->slots;
  for (int s = 0; s < job->slots; ++s) tags[s] = -1;
  memset(zero, 0, row_floats * sizeof *zero);

  for (int64_t i = i0; i < i1; ++i) {
    for (int64_t u = 0; u < job->KH; ++u) {
      const int64_t r = i * job->sh - job->ph + u * job->dh;
      if (r < 0 || r >= job->H) {
        rows[u] = zero;
        continue;
      }
      const int slot = (int)(r % job->slots);
      float *dst = ring + (size_t)slot * row_floats;
      if (tags[slot] != r) {
        load_padded_row(job, b, r, c0, n, dst);
        tags[slot] = r;
      }
      rows[u] = dst;
    }
    char *y = job->y + (size_t)(b * job->ys[0] + i * job->ys[1] + c0) * esize;
    const bool direct = job->act == SEQMIX_F32 && !job->pool && job->ys[2] == n;
    float *dst = direct ? (float *)y : out;
    taps(dst, n, rows, (int)job->KH, job->sw * n, job->dw * n, job->weight + c0, job->C,
         job->KW * job->C, job->KW, job->Wo, n, job->bias ? job->bias + c0 : NULL);
    if (job->pool) {
      /* Window sums to averages over the pixels inside, minus x. */
      const int64_t r = job->KH / 2;
      const int64_t top = i - r < 0 ? 0 : i - r, bottom = i + r >= job->H ? job->H - 1 : i + r;
      const float *xrow = rows[r] + job->pw * n; /* row i itself, unpadded part */
      for (int64_t j = 0; j < job->Wo; ++j) {
        const int64_t left = j - r < 0 ? 0 : j - r, right = j + r >= job->W ? job->W - 1 : j + r;
        const float inv = 1.0f / (float)((bottom - top + 1) * (right - left + 1));
        float *o = out + j * n;
        const float *xp = xrow + j * n;
        for (int64_t c = 0; c < n; ++c) o[c] = o[c] * inv - xp[c];
      }
    }
    if (!direct)
      for (int64_t j = 0; j < job->Wo; ++j) {
        char *py = y + (size_t)(j * job->ys[2]) * esize;
        if (job->act == SEQMIX_F32)
          memcpy(py, out + j * n, (size_t)n * sizeof(float));
        else
          job->kernels->store_row(job->act, out + j * n, py, n);
      }
  }
}

/* Runs a filled-in job (geometry, weights) over the pool. */
static seqmix_status run_dw(sm_device *dev, const sm_op *op, dw_job *job, const sm_tensor_ref *x,
                            const sm_tensor_ref *y) {
  const size_t esize = seqmix_dtype_size(x->dtype);
  job->kernels = dev->kernels;
  job->act = x->dtype;
  job->x = (const char *)x->buffer->data + (size_t)x->offset * esize;
  job->y = (char *)y->buffer->data + (size_t)y->offset * esize;
  for (int i = 0; i < 3; ++i) job->xs[i] = x->strides[i], job->ys[i] = y->strides[i];
  job->slots = (int)((job->KH - 1) * job->dh + 1);
  job->wp = job->W + 2 * (int64_t)job->pw;
  job->channel_tasks = (job->C + channel_block - 1) / channel_block;
  int64_t cb = (job->C + job->channel_tasks - 1) / job->channel_tasks; /* 384: 192 + 192 */
  if (job->channel_tasks > 1) cb = (cb + 15) / 16 * 16;
  job->cb = cb;
  job->channel_tasks = (job->C + cb - 1) / cb;
  /* About 2 tasks a thread: each task converts KH - 1 rows more than its
   * outputs need, which costs as much as the taps on small images. */
  const int threads = sm_pool_threads(dev->pool);
  int64_t per = (job->B * job->Ho * job->channel_tasks + 2 * threads - 1) / (2 * threads);
  if (per < 2) per = 2;
  if (per > job->Ho) per = job->Ho;
  job->rows_per_task = per;
  job->row_tasks = (job->Ho + per - 1) / per;
  const size_t row_floats = (size_t)(job->wp * cb), out_floats = (size_t)(job->Wo * cb);
  job->scratch_floats = ((job->slots + 1) * row_floats + out_floats + 15) / 16 * 16;
  /* Per worker: the floats, then the ring's tags and the row pointers. */
  const size_t floats = (size_t)threads * job->scratch_floats * sizeof(float);
  const size_t tags = (size_t)threads * (size_t)job->slots * sizeof *job->tags;
  char *scratch = sm_cpu_scratch(dev, floats + tags + (size_t)threads * (size_t)job->KH * sizeof(float *));
  if (!scratch) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  job->scratch = (float *)scratch;
  job->tags = (int64_t *)(scratch + floats);
  job->rows = (const float **)(scratch + floats + tags);
  sm_pool_run(dev->pool, job->B * job->row_tasks * job->channel_tasks, dw_task, job);
  return SEQMIX_OK;
}

/* n consecutive parameters from element `index` as f32. */
static void param_row(const sm_device *dev, const sm_tensor_ref *r, int64_t index, int64_t n,
                      float *dst) {
  const char *src = (const char *)r->buffer->data + (size_t)index * seqmix_dtype_size(r->dtype);
  if (r->dtype == SEQMIX_F32)
    memcpy(dst, src, (size_t)n * sizeof *dst);
  else
    dev->kernels->load_row(r->dtype, src, dst, n);
}

seqmix_status sm_cpu_conv2d_depthwise(sm_device *dev, const sm_op *op) {
  const sm_conv2d_desc *d = &op->u.conv2d;
  const sm_tensor_ref *w = &op->tensors[SM_CONV2D_WEIGHT], *bias = &op->tensors[SM_CONV2D_BIAS];
  const int64_t C = d->channels, taps = d->kernel_h * d->kernel_w;
  float *weight = malloc((size_t)((taps + 1) * C) * sizeof(float));
  if (!weight) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  for (int64_t u = 0; u < d->kernel_h; ++u)
    for (int64_t v = 0; v < d->kernel_w; ++v)
      param_row(dev, w, w->offset + u * w->strides[0] + v * w->strides[1], C,
                weight + (u * d->kernel_w + v) * C);
  if (bias->buffer) param_row(dev, bias, bias->offset, C, weight + taps * C);
  dw_job job = {.B = d->batch, .H = d->height, .W = d->width, .C = C, .KH = d->kernel_h,
                .KW = d->kernel_w, .Ho = d->out_height, .Wo = d->out_width, .sh = d->stride_h,
                .sw = d->stride_w, .ph = d->pad_h, .pw = d->pad_w, .dh = d->dilation_h,
                .dw = d->dilation_w, .weight = weight,
                .bias = bias->buffer ? weight + taps * C : NULL};
  job.in_place = op->tensors[SM_CONV2D_X].dtype == SEQMIX_F32 && taps <= 9;
  seqmix_status st = run_dw(dev, op, &job, &op->tensors[SM_CONV2D_X], &op->tensors[SM_CONV2D_Y]);
  free(weight);
  return st;
}

seqmix_status sm_cpu_pool_mixer(sm_device *dev, const sm_op *op) {
  const sm_pool_desc *d = &op->u.pool;
  const int64_t C = d->channels, k = d->pool, taps = k * k;
  float *ones = malloc((size_t)(taps * C) * sizeof(float));
  if (!ones) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  for (int64_t i = 0; i < taps * C; ++i) ones[i] = 1.0f;
  dw_job job = {.B = d->batch, .H = d->height, .W = d->width, .C = C, .KH = k, .KW = k,
                .Ho = d->height, .Wo = d->width, .sh = 1, .sw = 1, .ph = (int32_t)(k / 2),
                .pw = (int32_t)(k / 2), .dh = 1, .dw = 1, .weight = ones, .pool = true};
  seqmix_status st = run_dw(dev, op, &job, &op->tensors[SM_POOL_X], &op->tensors[SM_POOL_Y]);
  free(ones);
  return st;
}
