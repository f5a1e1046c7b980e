/*
 * Causal depthwise conv1d on the CPU.
 *
 * Work split: tasks are (batch, run of tokens); a task walks blocks of
 * channels, and in each its tokens in order, computing output rows with the
 * SIMD row kernel; it prefetches the rows a few tokens ahead. The K input rows a token needs come
 * from x (read in place when f32, else converted once into a ring of K f32 rows), from the state
 * for tokens before the call, or a zero row. Tasks never write what others read, so no locks. The
 * state update runs as a second parallel-for after every output is done, since it may overwrite
 * state rows the first pass reads.
 */
#include "backend/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

typedef struct conv1d_job {
  const sm_conv1d_desc *desc;
  const sm_cpu_kernels *kernels;
  const char *x;
  seqmix_dtype act;
  int64_t x_stride_b, x_stride_t;
  char *y;
  int64_t y_stride_b, y_stride_t;
  float *state; /* NULL: no state */
  int64_t s_stride_b, s_stride_t;
  const float *weight_t; /* [K][C], f32 */
  const float *bias;     /* [C], f32, or NULL */
  int64_t tokens_per_task, tasks_per_batch;
  float *scratch; /* per worker: K ring rows, an output row, a zero row */
  size_t scratch_floats;
  const float **rows; /* per worker: K + 1 row pointers */
  bool stream;        /* y is too large to stay cached: write around the caches */
} conv1d_job;

/* Tunables: channels a task handles per pass, and how many tokens ahead it
 * prefetches. A pass over whole rows (up to 4096 channels: 16 KiB rows, the
 * weights and a ring of K + 4 rows stay in L2) reads x as one stream; blocks
 * of 512 channels walked the tokens 6 KiB apart and were 25% slower at
 * L4096 C1536 (2.6 vs 1.95 ms, AMD EPYC, 2 cores). */
enum { channel_block = 4096, prefetch_tokens = 4 };
/* Outputs larger than this (bytes) are written with streaming stores. */
static const size_t stream_bytes = 8u << 20;

static const char *x_row(const conv1d_job *job, int64_t b, int64_t t) {
  size_t esize = seqmix_dtype_size(job->act);
  return job->x + (size_t)(b * job->x_stride_b + t * job->x_stride_t) * esize;
}

static void conv1d_task(void *arg, int64_t task, int worker) {
  const conv1d_job *job = arg;
  const sm_conv1d_desc *d = job->desc;
  const int K = (int)d->kernel;
  const int64_t C = d->channels;
  const int64_t b = task / job->tasks_per_batch;
  const int64_t t0 = (task % job->tasks_per_batch) * job->tokens_per_task;
  const int64_t t1 = t0 + job->tokens_per_task < d->tokens ? t0 + job->tokens_per_task : d->tokens;
  const size_t esize = seqmix_dtype_size(job->act);
  const bool convert = job->act != SEQMIX_F32;
  float *scratch = job->scratch + (size_t)worker * job->scratch_floats;
  /* K + 1 ring slots: a two-token pass needs rows t-K+1 .. t+1. */
  const int slots = K + 1;
  float *ring = scratch, *out_row = scratch + (size_t)slots * channel_block;
  float *out_row2 = out_row + channel_block, *zero_row = out_row2 + channel_block;
  const float **rows = job->rows + (size_t)worker * (size_t)(K + 1);
  memset(zero_row, 0,
         (size_t)(C < (int64_t)channel_block ? C : (int64_t)channel_block) * sizeof(float));

  for (int64_t c0 = 0; c0 < C; c0 += channel_block) {
    const int64_t n = C - c0 < (int64_t)channel_block ? C - c0 : (int64_t)channel_block;
    /* Input row s at channel c0 (s < 0: from the state, or zeros). */
#define INPUT_ROW(s)                                                                               \
  ((s) >= 0     ? (convert ? ring + (size_t)((s) % slots) * channel_block                          \
                           : (const float *)x_row(job, b, (s)) + c0)                               \
   : job->state ? job->state + b * job->s_stride_b + (K - 1 + (s)) * job->s_stride_t + c0          \
                : zero_row)
    if (convert)
      for (int64_t s = t0 - K + 1 > 0 ? t0 - K + 1 : 0; s < t0; ++s)
        job->kernels->load_row(job->act, x_row(job, b, s) + (size_t)c0 * esize,
                               ring + (size_t)(s % slots) * channel_block, n);
    for (int64_t t = t0; t < t1; ++t) {
      /* The hardware prefetchers lose track of rows C apart: fetch ahead by hand. */
      if (t + prefetch_tokens < d->tokens) {
        const char *ahead = x_row(job, b, t + prefetch_tokens) + (size_t)c0 * esize;
        for (size_t off = 0; off < (size_t)n * esize; off += 64)
          __builtin_prefetch(ahead + off);
      }
      if (convert)
        job->kernels->load_row(job->act, x_row(job, b, t) + (size_t)c0 * esize,
                               ring + (size_t)(t % slots) * channel_block, n);
      for (int j = 0; j < K; ++j)
        rows[j] = INPUT_ROW(t - K + 1 + j);
      char *y = job->y + (size_t)(b * job->y_stride_b + t * job->y_stride_t + c0) * esize;
      const float *bias = job->bias ? job->bias + c0 : NULL;
      if (job->kernels->conv1d_row2 && t + 1 < t1) {
        /* Two tokens share the weight loads and K-1 input rows. */
        if (t + 1 + prefetch_tokens < d->tokens) {
          const char *ahead = x_row(job, b, t + 1 + prefetch_tokens) + (size_t)c0 * esize;
          for (size_t off = 0; off < (size_t)n * esize; off += 64)
            __builtin_prefetch(ahead + off);
        }
        if (convert)
          job->kernels->load_row(job->act, x_row(job, b, t + 1) + (size_t)c0 * esize,
                                 ring + (size_t)((t + 1) % slots) * channel_block, n);
        rows[K] = INPUT_ROW(t + 1);
        char *y1 = y + (size_t)job->y_stride_t * esize;
        job->kernels->conv1d_row2(convert ? out_row : (float *)y, convert ? out_row2 : (float *)y1,
                                  rows, job->weight_t + c0, C, bias, K, n, d->silu,
                                  job->stream && !convert);
        if (convert) {
          job->kernels->store_row(job->act, out_row, y, n);
          job->kernels->store_row(job->act, out_row2, y1, n);
        }
        ++t;
        continue;
      }
      float *dst = convert ? out_row : (float *)y;
      job->kernels->conv1d_row(dst, rows, job->weight_t + c0, C, bias, K, n, d->silu,
                               job->stream && !convert);
      if (convert) job->kernels->store_row(job->act, out_row, y, n);
    }
#undef INPUT_ROW
  }
  if (job->stream) job->kernels->stream_fence();
}

/* new_state[i] = input row L-(K-1)+i; rows from the old state move down, going
 * upward so a row is read before it is overwritten. */
static void state_task(void *arg, int64_t b, int worker) {
  (void)worker;
  const conv1d_job *job = arg;
  const sm_conv1d_desc *d = job->desc;
  const int64_t S = d->kernel - 1, L = d->tokens, C = d->channels;
  for (int64_t i = 0; i < S; ++i) {
    float *dst = job->state + b * job->s_stride_b + i * job->s_stride_t;
    int64_t s = L - S + i;
    if (s >= 0) {
      if (job->act == SEQMIX_F32)
        memcpy(dst, x_row(job, b, s), (size_t)C * sizeof(float));
      else
        job->kernels->load_row(job->act, x_row(job, b, s), dst, C);
    } else {
      memmove(dst, job->state + b * job->s_stride_b + (S + s) * job->s_stride_t,
              (size_t)C * sizeof(float));
    }
  }
}

seqmix_status sm_cpu_conv1d(sm_device *dev, const sm_op *op) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const sm_tensor_ref *x = &op->tensors[SM_CONV1D_X], *w = &op->tensors[SM_CONV1D_WEIGHT],
                      *bias = &op->tensors[SM_CONV1D_BIAS], *state = &op->tensors[SM_CONV1D_STATE],
                      *y = &op->tensors[SM_CONV1D_Y];
  const int64_t K = d->kernel, C = d->channels;
  const int threads = sm_pool_threads(dev->pool);
  conv1d_job job = {
      .desc = d,
      .kernels = dev->kernels,
      .act = x->dtype,
      .x = (const char *)x->buffer->data + (size_t)x->offset * seqmix_dtype_size(x->dtype),
      .x_stride_b = x->strides[0],
      .x_stride_t = x->strides[1],
      .y = (char *)y->buffer->data + (size_t)y->offset * seqmix_dtype_size(y->dtype),
      .y_stride_b = y->strides[0],
      .y_stride_t = y->strides[1],
      .state = state->buffer ? (float *)state->buffer->data + state->offset : NULL,
      .s_stride_b = state->strides[0],
      .s_stride_t = state->strides[1],
      .scratch_floats = (size_t)(K + 4) * channel_block + 16,
  };
  job.stream = (double)d->batch * (double)d->tokens * (double)C * 4 > (double)stream_bytes;
  /* About 8 tasks a thread so uneven runs even out, at least 16 tokens a task. */
  int64_t per_task = (d->batch * d->tokens + threads * 8 - 1) / (threads * 8);
  if (per_task < 16) per_task = 16;
  if (per_task > d->tokens) per_task = d->tokens;
  job.tokens_per_task = per_task;
  job.tasks_per_batch = (d->tokens + per_task - 1) / per_task;

  float *weight_t = malloc((size_t)(K + 1) * (size_t)C * sizeof(float));
  float *scratch = malloc((size_t)threads * job.scratch_floats * sizeof(float));
  const float **rows = malloc((size_t)threads * (size_t)(K + 1) * sizeof *rows);
  if (!weight_t || !scratch || !rows) {
    free(weight_t);
    free(scratch);
    free(rows);
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j < K; ++j)
      weight_t[j * C + c] = sm_cpu_param_at(w, w->offset + c * w->strides[0] + j);
  if (bias->buffer) {
    float *b = weight_t + K * C;
    for (int64_t c = 0; c < C; ++c)
      b[c] = sm_cpu_param_at(bias, bias->offset + c);
    job.bias = b;
  }
  job.weight_t = weight_t;
  job.scratch = scratch;
  job.rows = rows;
  sm_pool_run(dev->pool, d->batch * job.tasks_per_batch, conv1d_task, &job);
  if (job.state) sm_pool_run(dev->pool, d->batch, state_task, &job);
  free(weight_t);
  free(scratch);
  free(rows);
  return SEQMIX_OK;
}
