/*
 * Attention on the CPU, FlashAttention-2 style.
 *
 * A task owns (sequence, q head, block of up to q_block query rows, key split).
 * It walks the keys in blocks of k_block, skipping blocks wholly outside the
 * causal/window mask, converts K/V rows to f32 when stored as f16/bf16, and keeps
 * per row a running max m, sum l and unnormalised output acc (online softmax,
 * f32). With one split the task writes out and lse; with several (decode and
 * other cases with few rows and many keys) each writes (acc, m, l) partials and a
 * second pass merges them by log-sum-exp, as the GPU backends do.
 */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tunables. */
enum { q_block = 16, k_block = 64, min_keys_per_split = 128 };

typedef struct attn_job {
  const sm_attention_desc *d;
  const sm_cpu_kernels *kern;
  const sm_tensor_ref *q, *k, *v, *out, *lse;
  int64_t q_blocks, splits, split_len;
  float *partials; /* per (task row, split): acc[Dv], m, l */
  float *scratch;
  size_t scratch_floats;
} attn_job;

typedef struct seq_range {
  int64_t q0, k0, lq, lk; /* first rows in the tensors, lengths */
} seq_range;

static seq_range sequence(const sm_attention_desc *d, int64_t b) {
  seq_range r = {0, 0, d->q_tokens, d->k_tokens};
  if (d->varlen) {
    r.q0 = d->cu_q[b], r.k0 = d->cu_k[b];
    r.lq = d->cu_q[b + 1] - r.q0, r.lk = d->cu_k[b + 1] - r.k0;
  }
  if (d->seqused_k) r.lk = d->seqused_k[b];
  return r;
}

/* Visible keys of row i: [lo, hi] (empty when hi < lo). */
static void visible(const sm_attention_desc *d, const seq_range *s, int64_t i, int64_t *lo,
                    int64_t *hi) {
  *lo = 0;
  *hi = s->lk - 1;
  if (d->causal) {
    int64_t diag = i + s->lk - s->lq;
    if (diag < *hi) *hi = diag;
    if (d->window > 0 && diag - d->window + 1 > 0) *lo = diag - d->window + 1;
  }
}

/* Element offset of token t (absolute row in the tensor), head h, of a [B, L, H, D] ref. */
static size_t row_offset(const sm_tensor_ref *r, int64_t b, int64_t t, int64_t h) {
  return (size_t)(r->offset + b * r->strides[0] + t * r->strides[1] + h * r->strides[2]);
}

static const float *as_f32(const attn_job *job, const sm_tensor_ref *r, size_t off, int64_t n,
                           float *buf) {
  const char *base = r->buffer->data;
  if (r->dtype == SEQMIX_F32) return (const float *)base + off;
  job->kern->load_row(r->dtype, base + off * 2, buf, n);
  return buf;
}

static void attn_task(void *arg, int64_t task, int worker) {
  const attn_job *job = arg;
  const sm_attention_desc *d = job->d;
  const int64_t D = d->head_dim, Dv = d->v_head_dim, Hq = d->q_heads;
  const int64_t split = task % job->splits, qb = (task / job->splits) % job->q_blocks;
  const int64_t h = (task / job->splits / job->q_blocks) % Hq;
  const int64_t b = task / job->splits / job->q_blocks / Hq;
  const int64_t hk = h / (Hq / d->k_heads);
  const int64_t tb = d->varlen ? 0 : b; /* batch index in the tensors */
  const seq_range s = sequence(d, b);
  const int64_t i0 = qb * q_block, i1 = i0 + q_block < s.lq ? i0 + q_block : s.lq;
  if (i0 >= s.lq) return;

  float *scratch = job->scratch + (size_t)worker * job->scratch_floats;
  float *qrows = scratch, *acc = qrows + q_block * D, *m = acc + q_block * Dv, *l = m + q_block;
  float *scores = l + q_block, *kbuf = scores + k_block, *vbuf = kbuf + k_block * D;
  const float **krows = (const float **)(vbuf + k_block * Dv);
  const float **vrows = krows + k_block;

  /* Keys this task may see: the union of its rows' ranges, cut to its split. */
  int64_t lo_all = INT64_MAX, hi_all = -1;
  for (int64_t i = i0; i < i1; ++i) {
    int64_t lo, hi;
    visible(d, &s, i, &lo, &hi);
    if (hi >= lo) {
      if (lo < lo_all) lo_all = lo;
      if (hi > hi_all) hi_all = hi;
    }
  }
  const int64_t split_lo = split * job->split_len, split_hi = split_lo + job->split_len - 1;
  if (split_lo > lo_all) lo_all = split_lo;
  if (split_hi < hi_all) hi_all = split_hi;

  for (int64_t i = i0; i < i1; ++i) {
    float *qi = qrows + (i - i0) * D;
    const float *src = as_f32(job, job->q, row_offset(job->q, tb, s.q0 + i, h), D, qi);
    if (src != qi) memcpy(qi, src, (size_t)D * sizeof *qi);
    memset(acc + (i - i0) * Dv, 0, (size_t)Dv * sizeof *acc);
    m[i - i0] = -INFINITY;
    l[i - i0] = 0;
  }

  for (int64_t j0 = lo_all; j0 <= hi_all; j0 += k_block) {
    const int64_t j1 = j0 + k_block - 1 < hi_all ? j0 + k_block - 1 : hi_all;
    for (int64_t j = j0; j <= j1; ++j) {
      krows[j - j0] = as_f32(job, job->k, row_offset(job->k, tb, s.k0 + j, hk), D, kbuf + (j - j0) * D);
      vrows[j - j0] = as_f32(job, job->v, row_offset(job->v, tb, s.k0 + j, hk), Dv, vbuf + (j - j0) * Dv);
    }
    for (int64_t i = i0; i < i1; ++i) {
      int64_t lo, hi;
      visible(d, &s, i, &lo, &hi);
      if (lo < j0) lo = j0;
      if (hi > j1) hi = j1;
      if (hi < lo) continue;
      const float *qi = qrows + (i - i0) * D;
      float *ai = acc + (i - i0) * Dv;
      float block_max = -INFINITY;
      for (int64_t j = lo; j <= hi; ++j) {
        float sc = d->scale * job->kern->dot(qi, krows[j - j0], D);
        if (d->softcap > 0) sc = d->softcap * tanhf(sc / d->softcap);
        scores[j - j0] = sc;
        if (sc > block_max) block_max = sc;
      }
      if (d->sigmoid) {
        for (int64_t j = lo; j <= hi; ++j) {
          float w = 1.0f / (1.0f + expf(-(scores[j - j0] + d->sigmoid_bias)));
          job->kern->axpy(ai, w, vrows[j - j0], Dv);
        }
        continue;
      }
      float *mi = &m[i - i0], *li = &l[i - i0];
      if (block_max > *mi) {
        float factor = expf(*mi - block_max);
        job->kern->scale(ai, factor, Dv);
        *li *= factor;
        *mi = block_max;
      }
      for (int64_t j = lo; j <= hi; ++j) {
        float w = expf(scores[j - j0] - *mi);
        *li += w;
        job->kern->axpy(ai, w, vrows[j - j0], Dv);
      }
    }
  }

  for (int64_t i = i0; i < i1; ++i) {
    float *ai = acc + (i - i0) * Dv;
    if (job->splits > 1) {
      int64_t row = ((b * Hq + h) * job->q_blocks * q_block + i) * job->splits + split;
      float *part = job->partials + row * (Dv + 2);
      memcpy(part, ai, (size_t)Dv * sizeof *ai);
      part[Dv] = m[i - i0];
      part[Dv + 1] = l[i - i0];
      continue;
    }
    float mi = m[i - i0], li = l[i - i0];
    if (!d->sigmoid) job->kern->scale(ai, li > 0 ? 1.0f / li : 0.0f, Dv);
    char *out = (char *)job->out->buffer->data;
    size_t off = row_offset(job->out, tb, s.q0 + i, h);
    if (job->out->dtype == SEQMIX_F32) memcpy((float *)out + off, ai, (size_t)Dv * sizeof *ai);
    else job->kern->store_row(job->out->dtype, ai, out + off * 2, Dv);
    if (job->lse->buffer) {
      const sm_tensor_ref *r = job->lse;
      float *lse = (float *)r->buffer->data + r->offset + tb * r->strides[0] + h * r->strides[1] +
                   (s.q0 + i) * r->strides[2];
      *lse = li > 0 ? mi + logf(li) : -INFINITY;
    }
  }
}

/* Merges the key splits of one (sequence, head, query block) by log-sum-exp. */
static void merge_splits_task(void *arg, int64_t task, int worker) {
  const attn_job *job = arg;
  const sm_attention_desc *d = job->d;
  const int64_t Dv = d->v_head_dim, Hq = d->q_heads;
  const int64_t qb = task % job->q_blocks, h = (task / job->q_blocks) % Hq,
                b = task / job->q_blocks / Hq, tb = d->varlen ? 0 : b;
  const seq_range s = sequence(d, b);
  float *acc = job->scratch + (size_t)worker * job->scratch_floats;
  for (int64_t i = qb * q_block; i < s.lq && i < (qb + 1) * q_block; ++i) {
    const float *parts = job->partials + ((b * Hq + h) * job->q_blocks * q_block + i) * job->splits * (Dv + 2);
    float mx = -INFINITY, l = 0;
    for (int64_t p = 0; p < job->splits; ++p)
      if (parts[p * (Dv + 2) + Dv] > mx) mx = parts[p * (Dv + 2) + Dv];
    memset(acc, 0, (size_t)Dv * sizeof *acc);
    for (int64_t p = 0; p < job->splits; ++p) {
      const float *part = parts + p * (Dv + 2);
      float w = d->sigmoid ? 1.0f : (part[Dv + 1] > 0 ? expf(part[Dv] - mx) : 0.0f);
      l += w * part[Dv + 1];
      job->kern->axpy(acc, w, part, Dv);
    }
    if (!d->sigmoid) job->kern->scale(acc, l > 0 ? 1.0f / l : 0.0f, Dv);
    char *out = (char *)job->out->buffer->data;
    size_t off = row_offset(job->out, tb, s.q0 + i, h);
    if (job->out->dtype == SEQMIX_F32) memcpy((float *)out + off, acc, (size_t)Dv * sizeof *acc);
    else job->kern->store_row(job->out->dtype, acc, out + off * 2, Dv);
    if (job->lse->buffer) {
      const sm_tensor_ref *r = job->lse;
      float *lse = (float *)r->buffer->data + r->offset + tb * r->strides[0] + h * r->strides[1] +
                   (s.q0 + i) * r->strides[2];
      *lse = l > 0 ? mx + logf(l) : -INFINITY;
    }
  }
}

seqmix_status sm_cpu_attention(sm_device *dev, const sm_op *op) {
  const sm_attention_desc *d = &op->u.attention;
  const int threads = sm_pool_threads(dev->pool);
  attn_job job = {
      .d = d,
      .kern = dev->kernels,
      .q = &op->tensors[SM_ATTN_Q],
      .k = &op->tensors[SM_ATTN_K],
      .v = &op->tensors[SM_ATTN_V],
      .out = &op->tensors[SM_ATTN_OUT],
      .lse = &op->tensors[SM_ATTN_LSE],
      .q_blocks = (d->max_q_len + q_block - 1) / q_block,
      .splits = 1,
  };
  if (job.q_blocks == 0) job.q_blocks = 1;
  const int64_t tasks = d->batch * d->q_heads * job.q_blocks;
  /* Few tasks and many keys (decode): split the keys so every thread has work. */
  if (tasks < 4 * threads && d->max_k_len >= 2 * min_keys_per_split) {
    int64_t want = (4 * threads + tasks - 1) / tasks;
    int64_t most = d->max_k_len / min_keys_per_split;
    job.splits = want < most ? want : most;
  }
  job.split_len = (d->max_k_len + job.splits - 1) / job.splits;
  if (job.split_len < 1) job.split_len = 1;
  const int64_t D = d->head_dim, Dv = d->v_head_dim;
  job.scratch_floats = (size_t)(q_block * (D + Dv + 2) + k_block * (1 + D + Dv)) +
                       2 * k_block * sizeof(float *) / sizeof(float) + 16;
  job.scratch = malloc((size_t)threads * job.scratch_floats * sizeof(float));
  if (job.splits > 1)
    job.partials = malloc((size_t)(tasks * q_block * job.splits) * (size_t)(Dv + 2) * sizeof(float));
  if (!job.scratch || (job.splits > 1 && !job.partials)) {
    free(job.scratch);
    free(job.partials);
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  }
  sm_pool_run(dev->pool, tasks * job.splits, attn_task, &job);
  if (job.splits > 1) sm_pool_run(dev->pool, tasks, merge_splits_task, &job);
  free(job.scratch);
  free(job.partials);
  return SEQMIX_OK;
}

seqmix_status sm_cpu_attention_merge(sm_device *dev, const sm_op *op) {
  const sm_merge_desc *d = &op->u.merge;
  const sm_tensor_ref *out = &op->tensors[SM_MERGE_OUT], *lse = &op->tensors[SM_MERGE_LSE];
  const int64_t Dv = d->v_head_dim;
  float *acc = malloc((size_t)Dv * 2 * sizeof *acc);
  if (!acc) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  float *row = acc + Dv;
  for (int64_t b = 0; b < d->batch; ++b)
    for (int64_t t = 0; t < d->q_tokens; ++t)
      for (int64_t h = 0; h < d->q_heads; ++h) {
        float lses[SM_MERGE_MAX_PARTS], mx = -INFINITY, l = 0;
        for (int p = 0; p < d->parts; ++p) {
          const sm_tensor_ref *r = &op->tensors[SM_MERGE_FIRST_PART + 2 * p + 1];
          lses[p] = ((const float *)r->buffer->data)[r->offset + b * r->strides[0] + h * r->strides[1] + t * r->strides[2]];
          if (lses[p] > mx) mx = lses[p];
        }
        memset(acc, 0, (size_t)Dv * sizeof *acc);
        for (int p = 0; p < d->parts && mx > -INFINITY; ++p) {
          if (lses[p] == -INFINITY) continue;
          const sm_tensor_ref *r = &op->tensors[SM_MERGE_FIRST_PART + 2 * p];
          size_t off = row_offset(r, b, t, h);
          const char *base = r->buffer->data;
          const float *src = (const float *)base + off;
          if (r->dtype != SEQMIX_F32) {
            dev->kernels->load_row(r->dtype, base + off * 2, row, Dv);
            src = row;
          }
          float w = expf(lses[p] - mx);
          l += w;
          dev->kernels->axpy(acc, w, src, Dv);
        }
        if (l > 0) dev->kernels->scale(acc, 1.0f / l, Dv);
        size_t off = row_offset(out, b, t, h);
        char *dst = out->buffer->data;
        if (out->dtype == SEQMIX_F32) memcpy((float *)dst + off, acc, (size_t)Dv * sizeof *acc);
        else dev->kernels->store_row(out->dtype, acc, dst + off * 2, Dv);
        if (lse->buffer)
          ((float *)lse->buffer->data)[lse->offset + b * lse->strides[0] + h * lse->strides[1] + t * lse->strides[2]] =
              l > 0 ? mx + logf(l) : -INFINITY;
      }
  free(acc);
  return SEQMIX_OK;
}
