/*
 * Attention on the CPU, FlashAttention-2 style.
 *
 * A task owns (sequence, q head, block of up to q_rows query rows, key split).
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
enum {
  most_q_rows = 256,  /* query rows a task owns, at most: each K block is transposed once */
  least_q_rows = 32, /* ... and at least, when there are few tasks */
  token_rows = 64,   /* most rows per k head for the token-major (decode) walk */
  k_block = 64,
  min_keys_per_split = 256,
  dot_rows = 4,   /* rows scored by plain dot products when there is no dot_block */
  few_rows = 16,  /* rows scored straight from the K rows (no transpose) */
  prefetch_keys = 32,
  kv_tokens = 16, /* keys per block of the token-major (decode) walk (knob: <= k_block) */
};

typedef struct attn_job {
  const sm_attention_desc *d;
  const sm_cpu_kernels *kern;
  const sm_tensor_ref *q, *k, *v, *out, *lse;
  int64_t group;    /* q heads per k head */
  int64_t q_rows;   /* rows a task owns (and of one running state in the scratch) */
  int64_t q_blocks; /* blocks of q_rows rows over (token, head in group) */
  int64_t splits, split_len;
  int64_t kv_tokens; /* keys per block of the token-major walk */
  float *partials; /* per (row, split): acc[Dv], m, l */
  float *scratch;
  size_t scratch_floats;
  struct rows_state *states;  /* per worker, one per k head (token-major walk) */
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

/*
 * What a key block prefetches while it runs, spread over its keys: either the
 * K/V rows of keys j0 + e (up to key hi) of k head hk, or (when k and v are set)
 * a byte range of each, front to back.
 */
typedef struct prefetch_plan {
  int64_t hk, j0, hi;
  const char *k, *v;
  size_t k_bytes, v_bytes;
} prefetch_plan;

/* The share of plan pf for keys [e, e + count) of a block of n keys. */
static void prefetch_step(const attn_job *job, const seq_range *s, int64_t tb,
                          const prefetch_plan *pf, int64_t e, int64_t count, int64_t n) {
  if (pf->k) {
    for (size_t b = pf->k_bytes * (size_t)e / (size_t)n & ~(size_t)63,
                end = pf->k_bytes * (size_t)(e + count) / (size_t)n;
         b < end; b += 64)
      __builtin_prefetch(pf->k + b);
    for (size_t b = pf->v_bytes * (size_t)e / (size_t)n & ~(size_t)63,
                end = pf->v_bytes * (size_t)(e + count) / (size_t)n;
         b < end; b += 64)
      __builtin_prefetch(pf->v + b);
    return;
  }
  for (int64_t j = pf->j0 + e; j < pf->j0 + e + count && j <= pf->hi; ++j) {
    prefetch_row(job->k, row_offset(job->k, tb, s->k0 + j, pf->hk), job->d->head_dim);
    prefetch_row(job->v, row_offset(job->v, tb, s->k0 + j, pf->hk), job->d->v_head_dim);
  }
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

/* The rows of one (sequence, k head) a task owns, and their running state. */
typedef struct rows_state {
  int64_t hk, r0, r1; /* k head, rows r = token * group + g in [r0, r1) */
  float *qs, *acc, *m, *l;
} rows_state;

/* Per-worker scratch for one key block: scores, a K block, a V block. */
typedef struct block_scratch {
  float *sc, *kt, *vb;
} block_scratch;

/* Loads the scaled q rows and clears the running state. */
static void begin_rows(const attn_job *job, const seq_range *s, int64_t tb, rows_state *st) {
  const int64_t D = job->d->head_dim, Dv = job->d->v_head_dim, G = job->group;
  for (int64_t r = st->r0; r < st->r1; ++r) {
    float *qr = st->qs + (r - st->r0) * D;
    load_f32(job, job->q, row_offset(job->q, tb, s->q0 + r / G, st->hk * G + r % G), D, qr);
    job->kern->scale(qr, job->d->scale, D); /* s = (scale q) . k */
    memset(st->acc + (r - st->r0) * Dv, 0, (size_t)Dv * sizeof *st->acc);
    st->m[r - st->r0] = -INFINITY;
    st->l[r - st->r0] = 0;
  }
}

/* Keys [lo, hi] that any of rows [r0, r1) may see, cut to [cut_lo, cut_hi]. */
static void key_span(const attn_job *job, const seq_range *s, int64_t r0, int64_t r1,
                     int64_t cut_lo, int64_t cut_hi, int64_t *lo_all, int64_t *hi_all) {
  *lo_all = INT64_MAX, *hi_all = -1;
  for (int64_t i = r0 / job->group; i <= (r1 - 1) / job->group; ++i) {
    int64_t lo, hi;
    visible(job->d, s, i, &lo, &hi);
    if (hi >= lo) {
      if (lo < *lo_all) *lo_all = lo;
      if (hi > *hi_all) *hi_all = hi;
    }
  }
  if (cut_lo > *lo_all) *lo_all = cut_lo;
  if (cut_hi < *hi_all) *hi_all = cut_hi;
}

/*
 * Keys [j0, j0 + n) against the rows of st: S = Q K^T (dot products straight
 * from the K rows for few rows, else the mm kernel on a transposed K block), mask
 * and softcap, online softmax (block max, rescale, exp), O += P V. Few rows also
 * run prefetch plan pf.
 */
static void attend_block(const attn_job *job, const seq_range *s, int64_t tb, rows_state *st,
                         const block_scratch *bs, int64_t j0, int64_t n,
                         const prefetch_plan *pf) {
  const sm_attention_desc *d = job->d;
  const sm_cpu_kernels *kern = job->kern;
  const int64_t D = d->head_dim, Dv = d->v_head_dim, G = job->group, hk = st->hk;
  const int64_t rows = st->r1 - st->r0;
  float *sc = bs->sc, *kt = bs->kt, *vb = bs->vb;
  if (rows <= few_rows && kern->dot_block) {
    /* Four keys at a time: their prefetches spread between the dot products. */
    for (int64_t j = 0; j < n; j += 4) {
      const int64_t nk = n - j < 4 ? n - j : 4;
      const float *krows[4];
      /* K/V rows of one head sit a token stride apart, beyond what hardware
       * prefetchers follow: fetch ahead by hand. */
      prefetch_step(job, s, tb, pf, j, nk, n);
      for (int64_t e = j; e < j + nk; ++e) {
        const size_t off = row_offset(job->k, tb, s->k0 + j0 + e, hk);
        if (job->k->dtype == SEQMIX_F32) {
          krows[e - j] = (const float *)job->k->buffer->data + off;
        } else {
          load_f32(job, job->k, off, D, kt + (e - j) * D);
          krows[e - j] = kt + (e - j) * D;
        }
      }
      kern->dot_block(st->qs, D, rows, krows, nk, D, sc + j, k_block);
    }
  } else if (rows <= dot_rows) {
    for (int64_t j = 0; j < n; ++j) {
      const size_t off = row_offset(job->k, tb, s->k0 + j0 + j, hk);
      const float *krow = (const float *)job->k->buffer->data + off;
      if (job->k->dtype != SEQMIX_F32) {
        load_f32(job, job->k, off, D, kt);
        krow = kt;
      }
      for (int64_t r = 0; r < rows; ++r)
        sc[r * k_block + j] = kern->dot(st->qs + r * D, krow, D);
    }
  } else {
    /* K block transposed to [D][k_block] so S = Q . Kt runs along keys. */
    memset(sc, 0, (size_t)(rows * k_block) * sizeof *sc);
    for (int64_t j = 0; j < n; ++j) {
      float *row = vb; /* borrow vb as a row buffer before V is loaded */
      load_f32(job, job->k, row_offset(job->k, tb, s->k0 + j0 + j, hk), D, row);
      for (int64_t e = 0; e < D; ++e)
        kt[e * k_block + j] = row[e];
    }
    kern->mm_acc(sc, k_block, st->qs, D, kt, k_block, rows, n, D);
  }
  const float *vrows;
  int64_t ldv;
  if (job->v->dtype == SEQMIX_F32) {
    vrows = (const float *)job->v->buffer->data + row_offset(job->v, tb, s->k0 + j0, hk);
    ldv = job->v->strides[1];
  } else {
    for (int64_t j = 0; j < n; ++j)
      load_f32(job, job->v, row_offset(job->v, tb, s->k0 + j0 + j, hk), Dv, vb + j * Dv);
    vrows = vb;
    ldv = Dv;
  }

  for (int64_t r = st->r0; r < st->r1; ++r) {
    float *sr = sc + (r - st->r0) * k_block;
    int64_t lo, hi;
    visible(d, s, r / G, &lo, &hi);
    lo -= j0, hi -= j0;
    if (lo > 0 || hi < n - 1 || d->softcap > 0) /* else every score stands as it is */
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
    float *mr = &st->m[r - st->r0], *lr = &st->l[r - st->r0];
    if (block_max > *mr) {
      float factor = expf(*mr - block_max);
      kern->scale(st->acc + (r - st->r0) * Dv, factor, Dv);
      *lr *= factor;
      *mr = block_max;
    }
    *lr += kern->exp_sum(sr, *mr, n);
  }
  kern->mm_acc(st->acc, Dv, sc, k_block, vrows, ldv, rows, Dv, n);
}

/* Writes the rows of st: as split partials (acc, m, l), or normalised to out/lse. */
static void end_rows(const attn_job *job, int64_t b, int64_t tb, const seq_range *s,
                     const rows_state *st, int64_t split) {
  const sm_attention_desc *d = job->d;
  const int64_t Dv = d->v_head_dim, G = job->group, Hk = d->k_heads, hk = st->hk;
  for (int64_t r = st->r0; r < st->r1; ++r) {
    float *ar = st->acc + (r - st->r0) * Dv;
    const float mr = st->m[r - st->r0], lr = st->l[r - st->r0];
    if (job->splits > 1) {
      int64_t row = ((b * Hk + hk) * job->q_blocks * job->q_rows + r) * job->splits + split;
      float *part = job->partials + row * (Dv + 2);
      memcpy(part, ar, (size_t)Dv * sizeof *ar);
      part[Dv] = mr;
      part[Dv + 1] = lr;
      continue;
    }
    if (!d->sigmoid) job->kern->scale(ar, lr > 0 ? 1.0f / lr : 0.0f, Dv);
    store_out(job, tb, s->q0 + r / G, hk * G + r % G, ar, lr > 0 ? mr + logf(lr) : -INFINITY);
  }
}

/* Carves a worker's scratch into the running state of `heads` row blocks and one
 * key block's buffers. */
static block_scratch carve_scratch(const attn_job *job, int worker, rows_state *st,
                                   int64_t heads) {
  const int64_t D = job->d->head_dim, Dv = job->d->v_head_dim, cap = job->q_rows;
  float *p = job->scratch + (size_t)worker * job->scratch_floats;
  for (int64_t h = 0; h < heads; ++h) {
    st[h].qs = p, st[h].acc = p + cap * D, st[h].m = st[h].acc + cap * Dv;
    st[h].l = st[h].m + cap;
    p = st[h].l + cap;
  }
  block_scratch bs = {.sc = p, .kt = p + cap * k_block};
  bs.vb = bs.kt + D * k_block;
  return bs;
}

/*
 * Head-major task: sequence b, k head hk, a block of rows r = token * group + g
 * (so the q heads that share a k head share every K/V block loaded), one key
 * split, walking the keys in blocks of k_block.
 */
static void attn_task(void *arg, int64_t task, int worker) {
  const attn_job *job = arg;
  const int64_t split = task % job->splits, qb = (task / job->splits) % job->q_blocks;
  const int64_t hk = (task / job->splits / job->q_blocks) % job->d->k_heads;
  const int64_t b = task / job->splits / job->q_blocks / job->d->k_heads;
  const int64_t tb = job->d->varlen ? 0 : b;
  const seq_range s = sequence(job->d, b);
  rows_state st = {.hk = hk, .r0 = qb * job->q_rows};
  st.r1 = st.r0 + job->q_rows < s.lq * job->group ? st.r0 + job->q_rows : s.lq * job->group;
  if (st.r0 >= st.r1) return;
  const block_scratch bs = carve_scratch(job, worker, &st, 1);

  int64_t lo_all, hi_all;
  const int64_t split_lo = split * job->split_len;
  key_span(job, &s, st.r0, st.r1, split_lo, split_lo + job->split_len - 1, &lo_all, &hi_all);
  begin_rows(job, &s, tb, &st);
  for (int64_t j0 = lo_all; j0 <= hi_all; j0 += k_block) {
    const int64_t n = hi_all - j0 + 1 < k_block ? hi_all - j0 + 1 : k_block;
    const prefetch_plan pf = {.hk = hk, .j0 = j0 + prefetch_keys, .hi = hi_all};
    attend_block(job, &s, tb, &st, &bs, j0, n, &pf);
  }
  end_rows(job, b, tb, &s, &st, split);
}

/*
 * Token-major task, for calls whose every sequence has at most token_rows rows per k
 * head (decode): sequence b, one key split, every k head. Blocks of kv_tokens keys
 * run head after head, so K and V are read front to back a few pages at a time
 * (the head-major walk crosses a page per key and stalls on the TLB and the
 * prefetchers), and each head prefetches its next block.
 */
static void attn_tokens_task(void *arg, int64_t task, int worker) {
  const attn_job *job = arg;
  const int64_t Hk = job->d->k_heads, split = task % job->splits, b = task / job->splits;
  const int64_t tb = job->d->varlen ? 0 : b;
  const seq_range s = sequence(job->d, b);
  if (s.lq == 0) return;
  rows_state *st = job->states + (size_t)worker * (size_t)Hk;
  const block_scratch bs = carve_scratch(job, worker, st, Hk);
  for (int64_t hk = 0; hk < Hk; ++hk) {
    st[hk].hk = hk, st[hk].r0 = 0, st[hk].r1 = s.lq * job->group;
    begin_rows(job, &s, tb, &st[hk]);
  }
  int64_t lo_all, hi_all;
  const int64_t split_lo = split * job->split_len;
  key_span(job, &s, 0, s.lq * job->group, split_lo, split_lo + job->split_len - 1, &lo_all,
           &hi_all);
  const int64_t D = job->d->head_dim, Dv = job->d->v_head_dim;
  const size_t esize_k = job->k->dtype == SEQMIX_F32 ? 4 : 2;
  const size_t esize_v = job->v->dtype == SEQMIX_F32 ? 4 : 2;
  const bool dense = job->k->strides[2] == D && job->k->strides[1] == Hk * D &&
                     job->v->strides[2] == Dv && job->v->strides[1] == Hk * Dv;
  for (int64_t j0 = lo_all; j0 <= hi_all; j0 += job->kv_tokens) {
    const int64_t n = hi_all - j0 + 1 < job->kv_tokens ? hi_all - j0 + 1 : job->kv_tokens;
    const int64_t j1 = j0 + job->kv_tokens;
    const int64_t n1 = hi_all - j1 + 1 < job->kv_tokens ? hi_all - j1 + 1 : job->kv_tokens;
    for (int64_t hk = 0; hk < Hk; ++hk) {
      /* Dense K/V: head hk's share of the next block's bytes; else the next head's rows. */
      prefetch_plan pf = {.hk = (hk + 1) % Hk, .j0 = hk + 1 < Hk ? j0 : j1, .hi = hi_all};
      if (dense && n1 > 0) {
        const size_t kb = (size_t)(n1 * Hk * D) * esize_k, vb = (size_t)(n1 * Hk * Dv) * esize_v;
        pf.k = (const char *)job->k->buffer->data +
               row_offset(job->k, tb, s.k0 + j1, 0) * esize_k + kb * (size_t)hk / (size_t)Hk;
        pf.v = (const char *)job->v->buffer->data +
               row_offset(job->v, tb, s.k0 + j1, 0) * esize_v + vb * (size_t)hk / (size_t)Hk;
        pf.k_bytes = kb / (size_t)Hk, pf.v_bytes = vb / (size_t)Hk;
      }
      attend_block(job, &s, tb, &st[hk], &bs, j0, n, &pf);
    }
  }
  for (int64_t hk = 0; hk < Hk; ++hk)
    end_rows(job, b, tb, &s, &st[hk], split);
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
  for (int64_t r = qb * job->q_rows; r < s.lq * G && r < (qb + 1) * job->q_rows; ++r) {
    const float *parts =
        job->partials + ((b * Hk + hk) * job->q_blocks * job->q_rows + r) * job->splits * (Dv + 2);
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
  /* Every sequence's rows of a k head in one block (decode): walk the keys token
   * by token over all heads, split so every thread has work. */
  const int64_t max_rows = d->max_q_len * job.group > 0 ? d->max_q_len * job.group : 1;
  const bool by_tokens = max_rows <= token_rows;
  /* Head-major: the most rows per task that still leave every thread 4 tasks. */
  const int64_t q_rows_knob = sm_knob(op, SM_KNOB_CPU_ATTN_Q_ROWS);
  job.kv_tokens = sm_knob_or(op, SM_KNOB_CPU_ATTN_KV_TOKENS, kv_tokens);
  job.q_rows = by_tokens ? max_rows : q_rows_knob ? q_rows_knob : most_q_rows;
  while (!by_tokens && !q_rows_knob && job.q_rows > least_q_rows &&
         d->batch * d->k_heads * ((max_rows + job.q_rows - 1) / job.q_rows) < 4 * threads)
    job.q_rows /= 2;
  job.q_blocks = (max_rows + job.q_rows - 1) / job.q_rows;
  const int64_t tasks = by_tokens ? d->batch : d->batch * d->k_heads * job.q_blocks;
  const int64_t min_tasks = by_tokens ? 2 * threads : 4 * threads;
  /* Few tasks and many keys: split the keys. */
  if (tasks < min_tasks && d->max_k_len >= 2 * min_keys_per_split) {
    int64_t want = (min_tasks + tasks - 1) / tasks;
    int64_t most = d->max_k_len / min_keys_per_split;
    job.splits = want < most ? want : most;
  }
  job.split_len = (d->max_k_len + job.splits - 1) / job.splits;
  if (by_tokens)
    job.split_len = (job.split_len + job.kv_tokens - 1) / job.kv_tokens * job.kv_tokens;
  if (job.split_len < 1) job.split_len = 1;
  const int64_t D = d->head_dim, Dv = d->v_head_dim, heads = by_tokens ? d->k_heads : 1;
  job.scratch_floats = (size_t)(heads * job.q_rows * (D + Dv + 2) + job.q_rows * k_block +
                                D * k_block + k_block * (Dv > D ? Dv : D)) +
                       16;
  job.scratch = malloc((size_t)threads * job.scratch_floats * sizeof(float));
  if (by_tokens) job.states = malloc((size_t)(threads * heads) * sizeof *job.states);
  const int64_t merge_tasks = d->batch * d->k_heads * job.q_blocks;
  if (job.splits > 1)
    job.partials = malloc((size_t)(merge_tasks * job.q_rows * job.splits) * (size_t)(Dv + 2) *
                          sizeof(float));
  if (!job.scratch || (job.splits > 1 && !job.partials) || (by_tokens && !job.states)) {
    free(job.scratch);
    free(job.partials);
    free(job.states);
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  }
  sm_pool_run(dev->pool, tasks * job.splits, by_tokens ? attn_tokens_task : attn_task, &job);
  if (job.splits > 1) sm_pool_run(dev->pool, merge_tasks, merge_splits_task, &job);
  free(job.scratch);
  free(job.partials);
  free(job.states);
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
