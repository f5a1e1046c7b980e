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

/* Tunables: query rows a task owns (query tokens x the q heads that share one
 * k head), keys per block, fewest keys worth a split of their own. */
enum { q_block = 32, k_block = 64, min_keys_per_split = 256, dot_rows = 4, prefetch_keys = 32 };

typedef struct attn_job {
  const sm_attention_desc *d;
  const sm_cpu_kernels *kern;
  const sm_tensor_ref *q, *k, *v, *out, *lse;
  int64_t group;    /* q heads per k head */
  int64_t q_blocks; /* blocks of q_block rows over (token, head in group) */
  int64_t splits, split_len;
  float *partials; /* per (row, split): acc[Dv], m, l */
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

/* Visible keys of query token i: [lo, hi] (empty when hi < lo). */
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

static void prefetch_row(const sm_tensor_ref *r, size_t off, int64_t n) {
  const size_t esize = r->dtype == SEQMIX_F32 ? 4 : 2, bytes = (size_t)n * esize;
  const char *p = (const char *)r->buffer->data + off * esize;
  for (size_t b = 0; b < bytes; b += 64)
    __builtin_prefetch(p + b);
}

static void load_f32(const attn_job *job, const sm_tensor_ref *r, size_t off, int64_t n,
                     float *dst) {
  const char *base = r->buffer->data;
  if (r->dtype == SEQMIX_F32)
    memcpy(dst, (const float *)base + off, (size_t)n * sizeof *dst);
  else
    job->kern->load_row(r->dtype, base + off * 2, dst, n);
}

/* The lse element of batch b, token t, head h of an F32 [B, Hq, Lq] ref. */
static float *lse_at(const sm_tensor_ref *l, int64_t b, int64_t t, int64_t h) {
  return (float *)l->buffer->data + l->offset + b * l->strides[0] + h * l->strides[1] +
         t * l->strides[2];
}

/* Writes an f32 row of Dv outputs (and its lse, when lse has a buffer). */
static void write_out(const sm_cpu_kernels *kern, const sm_tensor_ref *o, const sm_tensor_ref *l,
                      int64_t b, int64_t t, int64_t h, const float *row, int64_t Dv, float lse) {
  const size_t off = row_offset(o, b, t, h);
  char *base = o->buffer->data;
  if (o->dtype == SEQMIX_F32)
    memcpy((float *)base + off, row, (size_t)Dv * sizeof *row);
  else
    kern->store_row(o->dtype, row, base + off * 2, Dv);
  if (l->buffer) *lse_at(l, b, t, h) = lse;
}

static void store_out(const attn_job *job, int64_t tb, int64_t t, int64_t h, const float *row,
                      float lse) {
  write_out(job->kern, job->out, job->lse, tb, t, h, row, job->d->v_head_dim, lse);
}

/*
 * One task: sequence b, k head hk, a block of rows r = token * group + g (so the
 * q heads that share a k head share every K/V block loaded), one key split.
 * Per key block: S = Q K^T with the mm kernel on a transposed K block, mask and
 * softcap, online softmax (block max, rescale, exp), O += P V with the mm kernel.
 */
static void attn_task(void *arg, int64_t task, int worker) {
  const attn_job *job = arg;
  const sm_attention_desc *d = job->d;
  const sm_cpu_kernels *kern = job->kern;
  const int64_t D = d->head_dim, Dv = d->v_head_dim, G = job->group, Hk = d->k_heads;
  const int64_t split = task % job->splits, qb = (task / job->splits) % job->q_blocks;
  const int64_t hk = (task / job->splits / job->q_blocks) % Hk;
  const int64_t b = task / job->splits / job->q_blocks / Hk;
  const int64_t tb = d->varlen ? 0 : b;
  const seq_range s = sequence(d, b);
  const int64_t r0 = qb * q_block, r1 = r0 + q_block < s.lq * G ? r0 + q_block : s.lq * G;
  if (r0 >= r1) return;
  const int64_t rows = r1 - r0;

  float *scratch = job->scratch + (size_t)worker * job->scratch_floats;
  float *qs = scratch, *acc = qs + q_block * D, *m = acc + q_block * Dv, *l = m + q_block;
  float *sc = l + q_block, *kt = sc + q_block * k_block, *vb = kt + D * k_block;

  /* Keys any row may see, cut to this split. */
  int64_t lo_all = INT64_MAX, hi_all = -1;
  for (int64_t i = r0 / G; i <= (r1 - 1) / G; ++i) {
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

  for (int64_t r = r0; r < r1; ++r) {
    float *qr = qs + (r - r0) * D;
    load_f32(job, job->q, row_offset(job->q, tb, s.q0 + r / G, hk * G + r % G), D, qr);
    kern->scale(qr, d->scale, D); /* s = (scale q) . k */
    memset(acc + (r - r0) * Dv, 0, (size_t)Dv * sizeof *acc);
    m[r - r0] = -INFINITY;
    l[r - r0] = 0;
  }

  const bool v_direct = job->v->dtype == SEQMIX_F32;
  for (int64_t j0 = lo_all; j0 <= hi_all; j0 += k_block) {
    const int64_t n = hi_all - j0 + 1 < k_block ? hi_all - j0 + 1 : k_block;
    if (rows <= dot_rows) {
      /* Few rows (decode): dot products straight from the K rows, no transpose. */
      /* Pairs of keys: their prefetches spread between the dot products. */
      for (int64_t j = 0; j < n; j += 2) {
        const int64_t nk = n - j < 2 ? n - j : 2;
        const float *krows[2];
        for (int64_t e = j; e < j + nk; ++e) {
          /* K/V rows of one head sit a token stride apart, beyond what hardware
           * prefetchers follow: fetch a few keys ahead by hand. */
          if (j0 + e + prefetch_keys <= hi_all) {
            prefetch_row(job->k, row_offset(job->k, tb, s.k0 + j0 + e + prefetch_keys, hk), D);
            prefetch_row(job->v, row_offset(job->v, tb, s.k0 + j0 + e + prefetch_keys, hk), Dv);
          }
          const size_t off = row_offset(job->k, tb, s.k0 + j0 + e, hk);
          if (job->k->dtype == SEQMIX_F32) {
            krows[e - j] = (const float *)job->k->buffer->data + off;
          } else {
            load_f32(job, job->k, off, D, kt + (e - j) * D);
            krows[e - j] = kt + (e - j) * D;
          }
        }
        if (kern->dot_block) {
          kern->dot_block(qs, D, rows, krows, nk, D, sc + j, k_block);
        } else {
          for (int64_t e = 0; e < nk; ++e)
            for (int64_t r = 0; r < rows; ++r)
              sc[r * k_block + j + e] = kern->dot(qs + r * D, krows[e], D);
        }
      }
    } else {
      /* K block transposed to [D][k_block] so S = Q . Kt runs along keys. */
      memset(sc, 0, (size_t)(rows * k_block) * sizeof *sc);
      for (int64_t j = 0; j < n; ++j) {
        float *row = vb; /* borrow vb as a row buffer before V is loaded */
        load_f32(job, job->k, row_offset(job->k, tb, s.k0 + j0 + j, hk), D, row);
        for (int64_t e = 0; e < D; ++e)
          kt[e * k_block + j] = row[e];
      }
      kern->mm_acc(sc, k_block, qs, D, kt, k_block, rows, n, D);
    }
    const float *vrows;
    int64_t ldv;
    if (v_direct) {
      vrows = (const float *)job->v->buffer->data + row_offset(job->v, tb, s.k0 + j0, hk);
      ldv = job->v->strides[1];
    } else {
      for (int64_t j = 0; j < n; ++j)
        load_f32(job, job->v, row_offset(job->v, tb, s.k0 + j0 + j, hk), Dv, vb + j * Dv);
      vrows = vb;
      ldv = Dv;
    }

    for (int64_t r = r0; r < r1; ++r) {
      float *sr = sc + (r - r0) * k_block;
      int64_t lo, hi;
      visible(d, &s, r / G, &lo, &hi);
      lo -= j0, hi -= j0;
      for (int64_t j = 0; j < n; ++j) {
        if (j < lo || j > hi) {
          sr[j] = -INFINITY;
          continue;
        }
        if (d->softcap > 0) sr[j] = d->softcap * tanhf(sr[j] / d->softcap);
      }
      if (d->sigmoid) {
        for (int64_t j = 0; j < n; ++j)
          sr[j] = sr[j] == -INFINITY ? 0.0f : 1.0f / (1.0f + expf(-(sr[j] + d->sigmoid_bias)));
        continue;
      }
      float block_max = -INFINITY;
      for (int64_t j = 0; j < n; ++j)
        if (sr[j] > block_max) block_max = sr[j];
      if (block_max == -INFINITY) { /* nothing visible in this block */
        memset(sr, 0, (size_t)n * sizeof *sr);
        continue;
      }
      float *mr = &m[r - r0], *lr = &l[r - r0];
      if (block_max > *mr) {
        float factor = expf(*mr - block_max);
        kern->scale(acc + (r - r0) * Dv, factor, Dv);
        *lr *= factor;
        *mr = block_max;
      }
      *lr += kern->exp_sum(sr, *mr, n);
    }
    kern->mm_acc(acc, Dv, sc, k_block, vrows, ldv, rows, Dv, n);
  }

  for (int64_t r = r0; r < r1; ++r) {
    float *ar = acc + (r - r0) * Dv;
    const int64_t i = r / G, h = hk * G + r % G;
    if (job->splits > 1) {
      int64_t row = ((b * Hk + hk) * job->q_blocks * q_block + r) * job->splits + split;
      float *part = job->partials + row * (Dv + 2);
      memcpy(part, ar, (size_t)Dv * sizeof *ar);
      part[Dv] = m[r - r0];
      part[Dv + 1] = l[r - r0];
      continue;
    }
    float mr = m[r - r0], lr = l[r - r0];
    if (!d->sigmoid) kern->scale(ar, lr > 0 ? 1.0f / lr : 0.0f, Dv);
    store_out(job, tb, s.q0 + i, h, ar, lr > 0 ? mr + logf(lr) : -INFINITY);
  }
}

/* Merges the key splits of one task's rows by log-sum-exp. */
static void merge_splits_task(void *arg, int64_t task, int worker) {
  const attn_job *job = arg;
  const sm_attention_desc *d = job->d;
  const int64_t Dv = d->v_head_dim, G = job->group, Hk = d->k_heads;
  const int64_t qb = task % job->q_blocks, hk = (task / job->q_blocks) % Hk,
                b = task / job->q_blocks / Hk, tb = d->varlen ? 0 : b;
  const seq_range s = sequence(d, b);
  float *acc = job->scratch + (size_t)worker * job->scratch_floats;
  for (int64_t r = qb * q_block; r < s.lq * G && r < (qb + 1) * q_block; ++r) {
    const float *parts =
        job->partials + ((b * Hk + hk) * job->q_blocks * q_block + r) * job->splits * (Dv + 2);
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
    store_out(job, tb, s.q0 + r / G, hk * G + r % G, acc, l > 0 ? mx + logf(l) : -INFINITY);
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
      .group = d->q_heads / d->k_heads,
      .splits = 1,
  };
  job.q_blocks = (d->max_q_len * job.group + q_block - 1) / q_block;
  if (job.q_blocks == 0) job.q_blocks = 1;
  const int64_t tasks = d->batch * d->k_heads * job.q_blocks;
  /* Few tasks and many keys (decode): split the keys so every thread has work. */
  if (tasks < 4 * threads && d->max_k_len >= 2 * min_keys_per_split) {
    int64_t want = (4 * threads + tasks - 1) / tasks;
    int64_t most = d->max_k_len / min_keys_per_split;
    job.splits = want < most ? want : most;
  }
  job.split_len = (d->max_k_len + job.splits - 1) / job.splits;
  if (job.split_len < 1) job.split_len = 1;
  const int64_t D = d->head_dim, Dv = d->v_head_dim;
  job.scratch_floats = (size_t)(q_block * (D + Dv + 2) + q_block * k_block + D * k_block +
                                k_block * (Dv > D ? Dv : D)) +
                       16;
  job.scratch = malloc((size_t)threads * job.scratch_floats * sizeof(float));
  if (job.splits > 1)
    job.partials =
        malloc((size_t)(tasks * q_block * job.splits) * (size_t)(Dv + 2) * sizeof(float));
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
          lses[p] = *lse_at(r, b, t, h);
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
        write_out(dev->kernels, out, lse, b, t, h, acc, Dv, l > 0 ? mx + logf(l) : -INFINITY);
      }
  free(acc);
  return SEQMIX_OK;
}
