/*
 * The recurrent mixers on the CPU: selective scan (Mamba-1), SSD (Mamba-2) and
 * linear attention.
 *
 * Selective scan: a task owns (batch, block of up to scan_block channels of one
 * group). It walks the tokens in chunks of scan_tokens, converts that chunk's
 * inputs to f32 rows (dt with its bias and softplus, dt * u, B, C), and the ISA's
 * scan_chunk kernel advances the block's state h[N][W] (channels innermost, so a
 * vector holds one n for 16 channels and B[n], C[n] are broadcasts).
 *
 * SSD and linear attention share one chunkwise engine: SSD is linear attention
 * with q = C, k = dt' B, v = x, the per-token log-decay dt' A[h], scale 1 and a
 * state stored transposed. A task owns (batch, head). Inside a chunk of T tokens
 * with cumulative log-decays a_t (<= 0, falling):
 *   out_i = sum_{j<=i} (q_i . k_j) e^{a_i - a_j} v_j + e^{a_i} q_i S
 *   S    <- e^{a_T} S + sum_j e^{a_T - a_j} k_j^T v_j
 * Every exponent evaluated is <= 0, so strong decays underflow to zero instead
 * of overflowing. For per-channel (GLA) decays, the intra-chunk scores between
 * sub-blocks I > J use the last token r of J as reference: q_i e^{a_i - a_r} and
 * k_j e^{a_r - a_j} both have exponents <= 0; diagonal sub-blocks take the exact
 * per-pair factors. Short calls (decode) run the recurrence token by token,
 * reading and writing the state once.
 */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
  scan_block = 256,   /* channels a scan task owns */
  scan_tokens = 32,  /* tokens converted to f32 at a time */
  default_chunk = 64,
  gla_sub = 16,      /* sub-block of the per-channel decay's intra-chunk scores */
  recurrent_max = 8, /* calls with at most this many tokens run the recurrence */
};

/* ---- Element access ------------------------------------------------------- */

static size_t esize(seqmix_dtype t) { return t == SEQMIX_F32 ? 4 : 2; }

static const char *ptr(const sm_tensor_ref *r, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
  return (const char *)r->buffer->data +
         (size_t)(r->offset + i0 * r->strides[0] + i1 * r->strides[1] + i2 * r->strides[2] +
                  i3 * r->strides[3]) *
             esize(r->dtype);
}

static void prefetch_row(const sm_tensor_ref *r, const char *p, int64_t n) {
  for (size_t off = 0; off < (size_t)n * esize(r->dtype); off += 64) __builtin_prefetch(p + off);
}

static void load(const sm_cpu_kernels *k, const sm_tensor_ref *r, const char *src, int64_t n,
                 float *dst) {
  if (r->dtype == SEQMIX_F32) memcpy(dst, src, (size_t)n * sizeof *dst);
  else k->load_row(r->dtype, src, dst, n);
}

static void store(const sm_cpu_kernels *k, const sm_tensor_ref *r, const float *src, int64_t n,
                  char *dst) {
  if (r->dtype == SEQMIX_F32) memcpy(dst, src, (size_t)n * sizeof *src);
  else k->store_row(r->dtype, src, dst, n);
}

/* Element i of a rank-1 parameter (F32, F16 or BF16); 0 when absent. */
static float param(const sm_tensor_ref *r, int64_t i) {
  if (!r->buffer) return 0.0f;
  const char *p = ptr(r, i, 0, 0, 0);
  switch (r->dtype) {
  case SEQMIX_F16: return sm_f16_to_f32(*(const uint16_t *)p);
  case SEQMIX_BF16: return sm_bf16_to_f32(*(const uint16_t *)p);
  default: return *(const float *)p;
  }
}

static float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

static void softplus_row(const sm_cpu_kernels *k, float *x, int64_t n) {
  if (k->softplus_row) {
    k->softplus_row(x, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) x[i] = softplus(x[i]);
}

/* y[i] *= silu(z[i]). */
static void silu_gate(const sm_cpu_kernels *k, float *y, const float *z, int64_t n) {
  if (k->silu_mul_row) {
    k->silu_mul_row(y, z, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) y[i] *= z[i] / (1.0f + expf(-z[i]));
}

/* x[i] = exp(x[i]) in place (0 for -inf). */
static void exp_row(const sm_cpu_kernels *k, float *x, int64_t n) { (void)k->exp_sum(x, 0.0f, n); }

/* Per-worker scratch of a launch. */
typedef struct scratch {
  float *base;
  size_t floats; /* per worker */
} scratch;

static seqmix_status scratch_make(const sm_op *op, int threads, size_t floats, scratch *s) {
  s->floats = (floats + 15) & ~(size_t)15;
  s->base = aligned_alloc(64, (size_t)threads * s->floats * sizeof(float));
  if (!s->base) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", op->name);
  return SEQMIX_OK;
}

static float *scratch_of(const scratch *s, int worker) { return s->base + (size_t)worker * s->floats; }

/* ---- Selective scan -------------------------------------------------------- */

typedef struct scan_job {
  const sm_op *op;
  const sm_scan_desc *d;
  const sm_cpu_kernels *k;
  int64_t per_group, blocks_per_group; /* channels of a group, tasks over them */
  scratch s;
} scan_job;

/* h[n][w] = exp(dt[t][w] A[n][w]) h[n][w] + du[t][w] B[t][n]; y[t][w] = sum_n C[t][n] h[n][w]. */
static void scan_chunk_c(float *h, const float *At, const float *dt, const float *du,
                         const float *Bt, const float *Ct, float *y, int64_t T, int64_t W,
                         int64_t N) {
  for (int64_t t = 0; t < T; ++t) {
    float *yt = y + t * W;
    for (int64_t w = 0; w < W; ++w) yt[w] = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      const float b = Bt[t * N + n], c = Ct[t * N + n];
      float *hn = h + n * W;
      for (int64_t w = 0; w < W; ++w) {
        hn[w] = expf(dt[t * W + w] * At[n * W + w]) * hn[w] + du[t * W + w] * b;
        yt[w] += c * hn[w];
      }
    }
  }
}

/* y row of token t: + D_skip u, * silu(z), stored. zt is scratch for z. */
static void scan_epilogue(const scan_job *job, int64_t b, int64_t t, int64_t c0, int64_t W,
                          float *yr, const float *ur, const float *dskip, float *zt) {
  const sm_op *op = job->op;
  const sm_cpu_kernels *k = job->k;
  const sm_tensor_ref *z = &op->tensors[SM_SCAN_Z], *y = &op->tensors[SM_SCAN_Y];
  if (op->tensors[SM_SCAN_D_SKIP].buffer)
    for (int64_t w = 0; w < W; ++w) yr[w] += dskip[w] * ur[w];
  if (z->buffer) {
    load(k, z, ptr(z, b, t, c0, 0), W, zt);
    silu_gate(k, yr, zt, W);
  }
  store(k, y, yr, W, (char *)ptr(y, b, t, c0, 0));
}

/* Token t's inputs for channels c0..c0+W of group g as f32 rows: dt (with its
 * bias and softplus), u, dt * u, and the group's B and C. */
static void scan_inputs(const scan_job *job, int64_t b, int64_t t, int64_t c0, int64_t g,
                        int64_t W, const float *dbias, float *dt, float *ur, float *du, float *Bt,
                        float *Ct) {
  const sm_op *op = job->op;
  const sm_cpu_kernels *k = job->k;
  const sm_tensor_ref *u = &op->tensors[SM_SCAN_U], *delta = &op->tensors[SM_SCAN_DELTA],
                      *Bm = &op->tensors[SM_SCAN_B], *Cm = &op->tensors[SM_SCAN_C];
  load(k, delta, ptr(delta, b, t, c0, 0), W, dt);
  load(k, u, ptr(u, b, t, c0, 0), W, ur);
  for (int64_t w = 0; w < W; ++w) dt[w] += dbias[w];
  if (job->d->delta_softplus) softplus_row(k, dt, W);
  for (int64_t w = 0; w < W; ++w) du[w] = dt[w] * ur[w];
  load(k, Bm, ptr(Bm, b, t, g, 0), job->d->state_size, Bt);
  load(k, Cm, ptr(Cm, b, t, g, 0), job->d->state_size, Ct);
}

static void scan_step_c(float *h, int64_t ldh, const float *A, int64_t lda, const float *dt,
                        const float *du, const float *B, const float *C, float *y, int64_t W,
                        int64_t N) {
  for (int64_t w = 0; w < W; ++w) {
    float *hw = h + w * ldh, acc = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      hw[n] = expf(dt[w] * A[w * lda + n]) * hw[n] + du[w] * B[n];
      acc += C[n] * hw[n];
    }
    y[w] = acc;
  }
}

static void scan_task(void *arg, int64_t task, int worker) {
  const scan_job *job = arg;
  const sm_scan_desc *d = job->d;
  const sm_op *op = job->op;
  const sm_cpu_kernels *k = job->k;
  const sm_tensor_ref *u = &op->tensors[SM_SCAN_U], *delta = &op->tensors[SM_SCAN_DELTA],
                      *A = &op->tensors[SM_SCAN_A], *Dskip = &op->tensors[SM_SCAN_D_SKIP],
                      *z = &op->tensors[SM_SCAN_Z], *bias = &op->tensors[SM_SCAN_DELTA_BIAS],
                      *state = &op->tensors[SM_SCAN_STATE];
  const int64_t N = d->state_size, per_task = job->blocks_per_group * d->groups;
  const int64_t b = task / per_task, g = task % per_task / job->blocks_per_group;
  const int64_t blk = task % job->blocks_per_group;
  const int64_t c0 = g * job->per_group + blk * scan_block;
  const int64_t W = job->per_group - blk * scan_block < scan_block ? job->per_group - blk * scan_block
                                                                   : scan_block;
  const int64_t TW = scan_tokens * W, TN = scan_tokens * N;
  float *h = scratch_of(&job->s, worker), *At = h + N * W, *dt = At + N * W, *du = dt + TW,
        *ut = du + TW, *yt = ut + TW, *zt = yt + TW, *Bt = zt + TW, *Ct = Bt + TN, *dbias = Ct + TN,
        *dskip = dbias + W;
  for (int64_t w = 0; w < W; ++w) {
    dbias[w] = param(bias, c0 + w);
    dskip[w] = param(Dskip, c0 + w);
  }
  if (d->tokens == 1) {
    /* Decode: the state rows advance in place (or zero rows in scratch). */
    float *hs = state->buffer ? (float *)ptr(state, b, c0, 0, 0) : h;
    const int64_t ldh = state->buffer ? state->strides[1] : N;
    if (!state->buffer) memset(h, 0, (size_t)(W * N) * sizeof *h);
    scan_inputs(job, b, 0, c0, g, W, dbias, dt, ut, du, Bt, Ct);
    const float *Arow = (const float *)ptr(A, c0, 0, 0, 0);
    (k->scan_step ? k->scan_step : scan_step_c)(hs, ldh, Arow, A->strides[0], dt, du, Bt, Ct, yt,
                                                W, N);
    scan_epilogue(job, b, 0, c0, W, yt, ut, dskip, zt);
    return;
  }
  for (int64_t w = 0; w < W; ++w)
    for (int64_t n = 0; n < N; ++n) {
      At[n * W + w] = *(const float *)ptr(A, c0 + w, n, 0, 0);
      h[n * W + w] = state->buffer ? *(const float *)ptr(state, b, c0 + w, n, 0) : 0.0f;
    }
  for (int64_t t0 = 0; t0 < d->tokens; t0 += scan_tokens) {
    const int64_t T = d->tokens - t0 < scan_tokens ? d->tokens - t0 : scan_tokens;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t next = t0 + t + scan_tokens; /* prefetch the next chunk's rows */
      if (next < d->tokens) {
        prefetch_row(delta, ptr(delta, b, next, c0, 0), W);
        prefetch_row(u, ptr(u, b, next, c0, 0), W);
        if (z->buffer) prefetch_row(z, ptr(z, b, next, c0, 0), W);
      }
      scan_inputs(job, b, t0 + t, c0, g, W, dbias, dt + t * W, ut + t * W, du + t * W, Bt + t * N,
                  Ct + t * N);
    }
    if (k->scan_chunk) k->scan_chunk(h, At, dt, du, Bt, Ct, yt, T, W, N);
    else scan_chunk_c(h, At, dt, du, Bt, Ct, yt, T, W, N);
    for (int64_t t = 0; t < T; ++t)
      scan_epilogue(job, b, t0 + t, c0, W, yt + t * W, ut + t * W, dskip, zt);
  }
  if (state->buffer)
    for (int64_t w = 0; w < W; ++w)
      for (int64_t n = 0; n < N; ++n)
        *(float *)ptr(state, b, c0 + w, n, 0) = h[n * W + w];
}

seqmix_status sm_cpu_selective_scan(sm_device *dev, const sm_op *op) {
  const sm_scan_desc *d = &op->u.scan;
  scan_job job = {.op = op, .d = d, .k = dev->kernels};
  job.per_group = d->channels / d->groups;
  job.blocks_per_group = (job.per_group + scan_block - 1) / scan_block;
  const size_t W = scan_block, N = (size_t)d->state_size, T = scan_tokens;
  seqmix_status st = scratch_make(op, sm_pool_threads(dev->pool),
                                  2 * N * W + 5 * T * W + 2 * T * N + 2 * W, &job.s);
  if (st) return st;
  sm_pool_run(dev->pool, d->batch * d->groups * job.blocks_per_group, scan_task, &job);
  free(job.s.base);
  return SEQMIX_OK;
}

/* ---- The chunkwise engine of SSD and linear attention ----------------------- */

typedef struct chunk_job {
  const sm_op *op;
  const sm_cpu_kernels *k;
  bool ssd;
  int64_t B, L, H, Dk, Dv, T; /* T: chunk */
  int64_t heads_per_group;    /* SSD */
  seqmix_decay decay;         /* SSD: TOKEN */
  float scale;
  bool softplus;
  scratch s;
} chunk_job;

/* Loads token t of (b, h): q, k (k scaled by dt' for SSD), v rows, and the
 * log-decay: one value (lg[0]) or Dk values (VECTOR). */
static void load_token(const chunk_job *j, int64_t b, int64_t h, int64_t t, float *q, float *kk,
                       float *v, float *lg) {
  const sm_op *op = j->op;
  const sm_cpu_kernels *k = j->k;
  if (j->ssd) {
    const sm_tensor_ref *x = &op->tensors[SM_SSD_X], *dt = &op->tensors[SM_SSD_DT],
                        *Bm = &op->tensors[SM_SSD_B], *Cm = &op->tensors[SM_SSD_C];
    const int64_t g = h / j->heads_per_group;
    float dtv;
    load(k, dt, ptr(dt, b, t, h, 0), 1, &dtv);
    dtv += param(&op->tensors[SM_SSD_DT_BIAS], h);
    if (j->softplus) dtv = softplus(dtv);
    load(k, Cm, ptr(Cm, b, t, g, 0), j->Dk, q);
    load(k, Bm, ptr(Bm, b, t, g, 0), j->Dk, kk);
    for (int64_t i = 0; i < j->Dk; ++i) kk[i] *= dtv;
    load(k, x, ptr(x, b, t, h, 0), j->Dv, v);
    lg[0] = dtv * param(&op->tensors[SM_SSD_A], h);
    return;
  }
  const sm_tensor_ref *qr = &op->tensors[SM_LA_Q], *kr = &op->tensors[SM_LA_K],
                      *vr = &op->tensors[SM_LA_V], *g = &op->tensors[SM_LA_G];
  load(k, qr, ptr(qr, b, t, h, 0), j->Dk, q);
  load(k, kr, ptr(kr, b, t, h, 0), j->Dk, kk);
  load(k, vr, ptr(vr, b, t, h, 0), j->Dv, v);
  switch (j->decay) {
  case SEQMIX_DECAY_NONE: lg[0] = 0.0f; break;
  case SEQMIX_DECAY_HEAD: lg[0] = param(g, h); break;
  case SEQMIX_DECAY_TOKEN: load(k, g, ptr(g, b, t, h, 0), 1, lg); break;
  case SEQMIX_DECAY_VECTOR: load(k, g, ptr(g, b, t, h, 0), j->Dk, lg); break;
  }
}

/* Writes output row t of (b, h) from o (Dv floats, already scaled); SSD adds the
 * skip term and the gate. o is clobbered. */
static void store_token(const chunk_job *j, int64_t b, int64_t h, int64_t t, float *o,
                        const float *v, float *tmp) {
  const sm_op *op = j->op;
  const sm_cpu_kernels *k = j->k;
  if (j->ssd) {
    const sm_tensor_ref *z = &op->tensors[SM_SSD_Z], *y = &op->tensors[SM_SSD_Y];
    if (op->tensors[SM_SSD_D_SKIP].buffer) k->axpy(o, param(&op->tensors[SM_SSD_D_SKIP], h), v, j->Dv);
    if (z->buffer) {
      load(k, z, ptr(z, b, t, h, 0), j->Dv, tmp);
      silu_gate(k, o, tmp, j->Dv);
    }
    store(k, y, o, j->Dv, (char *)ptr(y, b, t, h, 0));
    return;
  }
  const sm_tensor_ref *out = &op->tensors[SM_LA_OUT];
  store(k, out, o, j->Dv, (char *)ptr(out, b, t, h, 0));
}

static const sm_tensor_ref *state_of(const chunk_job *j) {
  return &j->op->tensors[j->ssd ? SM_SSD_STATE : SM_LA_STATE];
}

/* The state of (b, h) into S[Dk][Dv] (SSD stores it as [Dv][Dk]), or zeros. */
static void state_in(const chunk_job *j, int64_t b, int64_t h, float *S) {
  const sm_tensor_ref *st = state_of(j);
  for (int64_t i = 0; i < j->Dk; ++i)
    for (int64_t c = 0; c < j->Dv; ++c)
      S[i * j->Dv + c] = !st->buffer ? 0.0f
                         : j->ssd    ? *(const float *)ptr(st, b, h, c, i)
                                     : *(const float *)ptr(st, b, h, i, c);
}

static void state_out(const chunk_job *j, int64_t b, int64_t h, const float *S) {
  const sm_tensor_ref *st = state_of(j);
  if (!st->buffer) return;
  for (int64_t i = 0; i < j->Dk; ++i)
    for (int64_t c = 0; c < j->Dv; ++c)
      *(float *)(j->ssd ? ptr(st, b, h, c, i) : ptr(st, b, h, i, c)) = S[i * j->Dv + c];
}

/* Token by token (decode): each state row is read and written once per token. */
static void recurrent_task(const chunk_job *j, int64_t b, int64_t h, float *w) {
  const int64_t Dk = j->Dk, Dv = j->Dv;
  const sm_cpu_kernels *k = j->k;
  const sm_tensor_ref *st = state_of(j);
  float *q = w, *kk = q + Dk, *v = kk + Dk, *lg = v + Dv, *o = lg + Dk, *tmp = o + Dv,
        *rows = tmp + Dv;
  const bool vector = j->decay == SEQMIX_DECAY_VECTOR;
  /* Rows of the state as stored: LA [Dk][Dv] (row i pairs with k_i), SSD [Dv][Dk]
   * (row p pairs with v_p, and y_p = C . row). Direct when dense f32 rows exist. */
  const int64_t nrows = j->ssd ? Dv : Dk, rlen = j->ssd ? Dk : Dv;
  float *S = rows;
  const bool direct = st->buffer != NULL;
  if (!direct) memset(S, 0, (size_t)(nrows * rlen) * sizeof *S);
  for (int64_t t = 0; t < j->L; ++t) {
    load_token(j, b, h, t, q, kk, v, lg);
    if (vector) exp_row(k, lg, Dk);
    else lg[0] = expf(lg[0]);
    memset(o, 0, (size_t)Dv * sizeof *o);
    for (int64_t r = 0; r < nrows; ++r) {
      float *row = direct ? (float *)ptr(st, b, h, r, 0) : S + r * rlen;
      k->scale(row, vector ? lg[r] : lg[0], rlen);
      if (j->ssd) {
        k->axpy(row, v[r], kk, rlen); /* s_p += (dt' x_p) B: kk holds dt' B */
        o[r] = k->dot(q, row, rlen);
      } else {
        k->axpy(row, kk[r], v, rlen);
        k->axpy(o, q[r], row, rlen);
      }
    }
    if (!j->ssd) k->scale(o, j->scale, Dv);
    store_token(j, b, h, t, o, v, tmp);
  }
}

/* dst[c][r] = src[r][c] for r < rows, c < cols (8 x 8 blocks). */
static void transpose(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                      int64_t cols) {
  for (int64_t r0 = 0; r0 < rows; r0 += 8)
    for (int64_t c0 = 0; c0 < cols; c0 += 8) {
      const int64_t r1 = r0 + 8 < rows ? r0 + 8 : rows, c1 = c0 + 8 < cols ? c0 + 8 : cols;
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * lds + c];
    }
}

/* Rows i of A [n x Dk] scaled per element by e^{a[i][c] - ref[c]} (ref NULL: 0), or
 * by e^{ref[c] - a[i][c]} when negate, into dst; na == 1 broadcasts one log-decay per
 * row. Callers pick ref so that every exponent is <= 0 (or bounded, see below). */
static void decayed_rows(const sm_cpu_kernels *k, float *dst, const float *A, const double *a,
                         int64_t na, const double *ref, int64_t n, int64_t Dk, bool negate) {
  for (int64_t i = 0; i < n; ++i) {
    float *d = dst + i * Dk;
    for (int64_t c = 0; c < Dk; ++c) {
      const float e = (float)(a[i * na + (na > 1 ? c : 0)] - (ref ? ref[na > 1 ? c : 0] : 0.0));
      d[c] = negate ? -e : e;
    }
    exp_row(k, d, Dk);
    for (int64_t c = 0; c < Dk; ++c) d[c] *= A[i * Dk + c];
  }
}

/* Largest per-channel log-decay within a chunk (a is cumulative, falling). */
static double decay_span(const double *a, int64_t na, int64_t n) {
  double span = 0.0;
  for (int64_t c = 0; c < na; ++c)
    if (a[c] - a[(n - 1) * na + c] > span) span = a[c] - a[(n - 1) * na + c];
  return span;
}

/* P[i][j] for j <= i of row blocks of 16 (lower blocks only) from Qi and KT. */
static void lower_scores(const sm_cpu_kernels *k, float *P, int64_t T, const float *Qi,
                         const float *KT, int64_t ldk, int64_t n, int64_t Dk) {
  for (int64_t I = 0; I < n; I += 16) {
    const int64_t ni = n - I < 16 ? n - I : 16;
    k->mm_acc(P + I * T, T, Qi + I * Dk, Dk, KT, ldk, ni, I + ni, Dk);
  }
}

/* Per-channel decays too strong to factor through one reference token: q_i and k_j
 * meet through a reference between their 16-token sub-blocks (exponents <= 0 on
 * both sides), and diagonal sub-blocks take exact per-pair factors. */
static void exact_vector_scores(const sm_cpu_kernels *k, float *P, int64_t T, const float *Q,
                                const float *K, const double *a, int64_t n, int64_t Dk, float *Qd,
                                float *KdT, float *tmp) {
  for (int64_t I = 0; I < n; I += gla_sub) {
    const int64_t ni = n - I < gla_sub ? n - I : gla_sub;
    for (int64_t J = 0; J < I; J += gla_sub) {
      const double *ar = a + (J + gla_sub - 1) * Dk;
      decayed_rows(k, Qd, Q + I * Dk, a + I * Dk, Dk, ar, ni, Dk, false);
      for (int64_t jj = 0; jj < gla_sub; ++jj) {
        for (int64_t c = 0; c < Dk; ++c) tmp[c] = (float)(ar[c] - a[(J + jj) * Dk + c]);
        exp_row(k, tmp, Dk);
        for (int64_t c = 0; c < Dk; ++c) KdT[c * gla_sub + jj] = tmp[c] * K[(J + jj) * Dk + c];
      }
      k->mm_acc(P + I * T + J, T, Qd, Dk, KdT, gla_sub, ni, gla_sub, Dk);
    }
    for (int64_t i = 0; i < ni; ++i)
      for (int64_t jj = 0; jj <= i; ++jj) {
        const double *ai = a + (I + i) * Dk, *aj = a + (I + jj) * Dk;
        for (int64_t c = 0; c < Dk; ++c) tmp[c] = (float)(ai[c] - aj[c]);
        exp_row(k, tmp, Dk);
        for (int64_t c = 0; c < Dk; ++c) tmp[c] *= K[(I + jj) * Dk + c];
        P[(I + i) * T + I + jj] = k->dot(Q + (I + i) * Dk, tmp, Dk);
      }
  }
}

/* One (b, h) over all chunks. */
static void chunked_task(const chunk_job *j, int64_t b, int64_t h, float *w) {
  const int64_t Dk = j->Dk, Dv = j->Dv, T = j->T;
  const sm_cpu_kernels *k = j->k;
  const bool vector = j->decay == SEQMIX_DECAY_VECTOR;
  const int64_t na = vector ? Dk : 1;           /* log-decay values per token */
  const int64_t kt = T > gla_sub ? T : gla_sub; /* columns of KT and KdT */
  /* The cumulative log-decays are summed in double: differences of long sums
   * (a strong decay followed by weak ones) keep their precision. */
  double *a = (double *)w;
  float *S = w + 2 * T * na, *Q = S + Dk * Dv, *K = Q + T * Dk, *V = K + T * Dk,
        *O = V + T * Dv, *P = O + T * Dv, *Qd = P + T * T, *KT = Qd + T * Dk, *KdT = KT + Dk * kt,
        *Vd = KdT + Dk * kt, *tmp = Vd + T * (Dk > Dv ? Dk : Dv), *aT = tmp + T + Dk + Dv;
  state_in(j, b, h, S);
  for (int64_t t0 = 0; t0 < j->L; t0 += T) {
    const int64_t n = j->L - t0 < T ? j->L - t0 : T;
    for (int64_t t = 0; t < n; ++t) {
      load_token(j, b, h, t0 + t, Q + t * Dk, K + t * Dk, V + t * Dv, tmp);
      for (int64_t c = 0; c < na; ++c) a[t * na + c] = (t ? a[(t - 1) * na + c] : 0.0) + tmp[c];
    }
    const double *alast = a + (n - 1) * na;
    /* Intra-chunk scores P[i][j], j <= i, with their decay factors. */
    memset(P, 0, (size_t)(n * T) * sizeof *P);
    transpose(KT, kt, K, Dk, n, Dk);
    if (!vector) {
      lower_scores(k, P, T, Q, KT, kt, n, Dk);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t jj = 0; jj <= i; ++jj) tmp[jj] = (float)(a[i] - a[jj]);
        exp_row(k, tmp, i + 1);
        for (int64_t jj = 0; jj <= i; ++jj) P[i * T + jj] *= tmp[jj];
      }
    } else if (decay_span(a, Dk, n) <= 60.0) {
      /* Through token 0: q_i e^{a_i - a_0} (<= 1) and k_j e^{a_0 - a_j} (<= e^60). */
      decayed_rows(k, Qd, Q, a, Dk, a, n, Dk, false);
      decayed_rows(k, Vd, K, a, Dk, a, n, Dk, true); /* Vd holds the keys for now */
      transpose(KdT, kt, Vd, Dk, n, Dk);
      lower_scores(k, P, T, Qd, KdT, kt, n, Dk);
    } else {
      exact_vector_scores(k, P, T, Q, K, a, n, Dk, Qd, KdT, tmp);
    }
    for (int64_t i = 0; i < n; ++i) /* the upper triangle of diagonal blocks */
      memset(P + i * T + i + 1, 0, (size_t)((i | 15) < n - 1 ? (i | 15) - i : n - 1 - i) * sizeof *P);
    memset(O, 0, (size_t)(n * Dv) * sizeof *O);
    for (int64_t I = 0; I < n; I += 16) {
      const int64_t ni = n - I < 16 ? n - I : 16;
      k->mm_acc(O + I * Dv, Dv, P + I * T, T, V, Dv, ni, Dv, I + ni);
    }
    /* Inter-chunk: O += (q_i e^{a_i}) S. */
    decayed_rows(k, Qd, Q, a, na, NULL, n, Dk, false);
    k->mm_acc(O, Dv, Qd, Dk, S, Dv, n, Dv, Dk);
    /* State: S = e^{a_T} S + sum_j e^{a_T - a_j} k_j^T v_j. */
    for (int64_t c = 0; c < na; ++c) aT[c] = (float)alast[c];
    exp_row(k, aT, na);
    for (int64_t c = 0; c < Dk; ++c) k->scale(S + c * Dv, aT[vector ? c : 0], Dv);
    if (vector) {
      decayed_rows(k, Vd, K, a, Dk, alast, n, Dk, true);
      transpose(KdT, kt, Vd, Dk, n, Dk);
      k->mm_acc(S, Dv, KdT, kt, V, Dv, Dk, Dv, n);
    } else {
      for (int64_t jj = 0; jj < n; ++jj) tmp[jj] = (float)(alast[0] - a[jj]);
      exp_row(k, tmp, n);
      for (int64_t jj = 0; jj < n; ++jj) {
        memcpy(Vd + jj * Dv, V + jj * Dv, (size_t)Dv * sizeof *Vd);
        k->scale(Vd + jj * Dv, tmp[jj], Dv);
      }
      k->mm_acc(S, Dv, KT, kt, Vd, Dv, Dk, Dv, n);
    }
    for (int64_t t = 0; t < n; ++t) {
      float *o = O + t * Dv;
      if (!j->ssd) k->scale(o, j->scale, Dv);
      store_token(j, b, h, t0 + t, o, V + t * Dv, tmp);
    }
  }
  state_out(j, b, h, S);
}

static void chunk_task(void *arg, int64_t task, int worker) {
  const chunk_job *j = arg;
  float *w = scratch_of(&j->s, worker);
  const int64_t b = task / j->H, h = task % j->H;
  if (j->L <= recurrent_max) recurrent_task(j, b, h, w);
  else chunked_task(j, b, h, w);
}

static seqmix_status run_chunked(sm_device *dev, const sm_op *op, chunk_job *j, int32_t chunk) {
  j->op = op;
  j->k = dev->kernels;
  j->T = chunk > 0 ? chunk : sm_knob_or(op, SM_KNOB_CPU_SSM_CHUNK, default_chunk);
  const size_t Dk = (size_t)j->Dk, Dv = (size_t)j->Dv, T = (size_t)j->T;
  const size_t kt = T > gla_sub ? T : gla_sub;
  size_t floats = Dk * Dv + T * (5 * Dk + 2 * Dv + T + (Dk > Dv ? Dk : Dv)) + 2 * Dk * kt + T +
                  2 * Dk + Dv;
  const size_t rec = 4 * Dk + 3 * Dv + Dk * Dv;
  if (rec > floats) floats = rec;
  seqmix_status st = scratch_make(op, sm_pool_threads(dev->pool), floats, &j->s);
  if (st) return st;
  sm_pool_run(dev->pool, j->B * j->H, chunk_task, j);
  free(j->s.base);
  return SEQMIX_OK;
}

seqmix_status sm_cpu_ssd(sm_device *dev, const sm_op *op) {
  const sm_ssd_desc *d = &op->u.ssd;
  chunk_job j = {.ssd = true,
                 .B = d->batch,
                 .L = d->tokens,
                 .H = d->heads,
                 .Dk = d->state_size,
                 .Dv = d->head_dim,
                 .heads_per_group = d->heads / d->groups,
                 .decay = SEQMIX_DECAY_TOKEN,
                 .scale = 1.0f,
                 .softplus = d->dt_softplus};
  return run_chunked(dev, op, &j, d->chunk_size);
}

seqmix_status sm_cpu_linear_attention(sm_device *dev, const sm_op *op) {
  const sm_linear_attention_desc *d = &op->u.linear_attention;
  chunk_job j = {.B = d->batch,
                 .L = d->tokens,
                 .H = d->heads,
                 .Dk = d->key_dim,
                 .Dv = d->value_dim,
                 .decay = d->decay,
                 .scale = d->scale};
  return run_chunked(dev, op, &j, d->chunk_size);
}
