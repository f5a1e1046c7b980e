/* Attention for `seqmix verify` and `seqmix bench`. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* dims: B, Lq, Lk, Hq, Hk, D, Dv, window */
enum {
  ATTN_CAUSAL = 1, ATTN_LSE = 2, ATTN_SOFTCAP = 4, ATTN_SIGMOID = 8, ATTN_VARLEN = 16,
  ATTN_SEQUSED = 32,
};

/* The varlen case's sequence lengths (queries = keys), from the issue. */
static const int32_t varlen_lengths[] = {17, 512, 1000, 3};
enum { varlen_count = 4 };

typedef struct attn_state {
  seqmix_context *ctx;
  const cli_case *c;
  int64_t B, Lq, Lk; /* as the tensors are shaped (varlen: 1, total, total) */
  int32_t cu[varlen_count + 1], used[16];
  float *q, *k, *v;
  seqmix_tensor *tq, *tk, *tv, *to, *tl, *tcu, *tused;
  seqmix_attention_params params;
} attn_state;

static void attn_teardown(void *p) {
  attn_state *s = p;
  if (!s) return;
  seqmix_tensor *all[] = {s->tq, s->tk, s->tv, s->to, s->tl, s->tcu, s->tused};
  for (int i = 0; i < 7; ++i) seqmix_tensor_destroy(all[i]);
  free(s->q), free(s->k), free(s->v);
  free(s);
}

static seqmix_status attn_setup(seqmix_context *ctx, const cli_case *c, seqmix_dtype dtype,
                                unsigned long long seed, void **out) {
  attn_state *s = calloc(1, sizeof *s);
  if (!s) return SEQMIX_ERROR_OUT_OF_MEMORY;
  s->ctx = ctx, s->c = c;
  const int64_t *d = c->dims;
  s->B = d[0], s->Lq = d[1], s->Lk = d[2];
  if (c->flags & ATTN_VARLEN) {
    for (int i = 0; i < varlen_count; ++i) s->cu[i + 1] = s->cu[i] + varlen_lengths[i];
    s->B = 1, s->Lq = s->Lk = s->cu[varlen_count];
  }
  unsigned long long rng = seed | 1;
  const size_t nq = (size_t)(s->B * s->Lq * d[3] * d[5]), nk = (size_t)(s->B * s->Lk * d[4] * d[5]),
               nv = (size_t)(s->B * s->Lk * d[4] * d[6]);
  s->q = cli_random_floats(nq, -1, 1, &rng);
  s->k = cli_random_floats(nk, -1, 1, &rng);
  s->v = cli_random_floats(nv, -1, 1, &rng);
  const int64_t qs[] = {s->B, s->Lq, d[3], d[5]}, ks[] = {s->B, s->Lk, d[4], d[5]},
                vs[] = {s->B, s->Lk, d[4], d[6]}, os[] = {s->B, s->Lq, d[3], d[6]},
                ls[] = {s->B, d[3], s->Lq};
  seqmix_status st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!s->q || !s->k || !s->v) goto fail;
  if ((st = cli_make_tensor(ctx, dtype, 4, qs, s->q, &s->tq)) ||
      (st = cli_make_tensor(ctx, dtype, 4, ks, s->k, &s->tk)) ||
      (st = cli_make_tensor(ctx, dtype, 4, vs, s->v, &s->tv)) ||
      (st = cli_make_tensor(ctx, dtype, 4, os, NULL, &s->to)))
    goto fail;
  if ((c->flags & ATTN_LSE) && (st = cli_make_tensor(ctx, SEQMIX_F32, 3, ls, NULL, &s->tl))) goto fail;
  s->params.causal = c->flags & ATTN_CAUSAL;
  s->params.window = (int32_t)d[7];
  s->params.softcap = (c->flags & ATTN_SOFTCAP) ? 20.0f : 0.0f;
  s->params.score = (c->flags & ATTN_SIGMOID) ? SEQMIX_SCORE_SIGMOID : SEQMIX_SCORE_SOFTMAX;
  s->params.sigmoid_bias = (c->flags & ATTN_SIGMOID) ? -2.0f : 0.0f;
  if (c->flags & ATTN_VARLEN) {
    const int64_t cs[] = {varlen_count + 1};
    if ((st = seqmix_tensor_create(ctx, SEQMIX_I32, 1, cs, &s->tcu)) ||
        (st = seqmix_tensor_write(s->tcu, s->cu, sizeof s->cu)))
      goto fail;
    s->params.cu_seqlens_q = s->params.cu_seqlens_k = s->tcu;
  }
  if (c->flags & ATTN_SEQUSED) {
    /* A KV cache filled to about two thirds, one sequence to length 1. */
    const int64_t n = (c->flags & ATTN_VARLEN) ? varlen_count : s->B;
    for (int64_t b = 0; b < n && b < 16; ++b) {
      int64_t len = (c->flags & ATTN_VARLEN) ? varlen_lengths[b] : s->Lk;
      s->used[b] = (int32_t)(b == 1 ? 1 : len * 2 / 3);
    }
    const int64_t us[] = {n};
    if ((st = seqmix_tensor_create(ctx, SEQMIX_I32, 1, us, &s->tused)) ||
        (st = seqmix_tensor_write(s->tused, s->used, (size_t)n * sizeof(int32_t))))
      goto fail;
    s->params.seqused_k = s->tused;
  }
  *out = s;
  return SEQMIX_OK;
fail:
  attn_teardown(s);
  return st;
}

static seqmix_status attn_run(void *p) {
  attn_state *s = p;
  return seqmix_attention(s->ctx, s->tq, s->tk, s->tv, s->to, s->tl, &s->params);
}

static seqmix_status attn_check(void *p, double *rel_err) {
  attn_state *s = p;
  const int64_t *d = s->c->dims;
  const size_t no = (size_t)(s->B * s->Lq * d[3] * d[6]), nl = (size_t)(s->B * d[3] * s->Lq);
  (void)nl;
  const size_t nq = (size_t)(s->B * s->Lq * d[3] * d[5]), nk = (size_t)(s->B * s->Lk * d[4] * d[5]),
               nv = (size_t)(s->B * s->Lk * d[4] * d[6]);
  float *o = malloc(no * sizeof *o), *l = malloc(nl * sizeof *l);
  double *rq = cli_to_double(s->q, nq), *rk = cli_to_double(s->k, nk), *rv = cli_to_double(s->v, nv);
  double *ro = malloc(no * sizeof *ro), *rl = malloc(nl * sizeof *rl);
  seqmix_status st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!o || !l || !rq || !rk || !rv || !ro || !rl) goto done;
  cli_fill_nan(o, no);
  if ((st = seqmix_tensor_write_f32(s->to, o, no)) || (st = attn_run(s)) ||
      (st = seqmix_tensor_read_f32(s->to, o, no)))
    goto done;
  if (s->tl && (st = seqmix_tensor_read_f32(s->tl, l, nl))) goto done;
  const bool varlen = s->c->flags & ATTN_VARLEN;
  /* Large single sequences: the float64 reference checks the last rows only
   * (bottom-right alignment keeps their masks), or it would take minutes. */
  int64_t rows = s->Lq;
  if (!varlen && s->B == 1 && (double)s->Lq * (double)s->Lk * (double)d[3] > 1e8) rows = 64;
  const int64_t skip = s->Lq - rows;
  seqmix_reference_attention_shape shape = {
      varlen ? varlen_count : s->B, rows, s->Lk, d[3], d[4], d[5], d[6],
      varlen ? s->cu : NULL, varlen ? s->cu : NULL, s->tused ? s->used : NULL};
  if ((st = seqmix_reference_attention(&shape, rq + skip * d[3] * d[5], rk, rv, ro, rl, &s->params)))
    goto done;
  if (skip) {
    /* Keep the checked rows of out, and of lse [1, Hq, Lq]. */
    memmove(o, o + skip * d[3] * d[6], (size_t)(rows * d[3] * d[6]) * sizeof *o);
    for (int64_t h = 0; h < d[3]; ++h)
      memmove(l + h * rows, l + h * s->Lq + skip, (size_t)rows * sizeof *l);
  }
  *rel_err = cli_rel_l2(o, ro, (size_t)(s->B * rows * d[3] * d[6]));
  if (s->tl) {
    /* lse: finite values compared, -inf must match exactly. */
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)(s->B * d[3] * rows); ++i) {
      if (isinf(rl[i]) || isinf(l[i])) {
        if (!(isinf(rl[i]) && isinf(l[i]))) num = INFINITY;
        continue;
      }
      num += (l[i] - rl[i]) * (l[i] - rl[i]);
      den += rl[i] * rl[i];
    }
    double e = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
    if (!(e <= *rel_err)) *rel_err = e;
  }
done:
  free(o), free(l), free(rq), free(rk), free(rv), free(ro), free(rl);
  return st;
}

static void attn_cost(const cli_case *c, seqmix_dtype dtype, double *flops, double *bytes,
                      bool *memory_bound) {
  const int64_t *d = c->dims;
  const double esize = (double)seqmix_dtype_size(dtype);
  double pairs = 0, q_rows = 0, k_rows = 0;
  const int n = (c->flags & ATTN_VARLEN) ? varlen_count : (int)d[0];
  for (int b = 0; b < n; ++b) {
    double lq = (c->flags & ATTN_VARLEN) ? varlen_lengths[b] : (double)d[1];
    double lk = (c->flags & ATTN_VARLEN) ? varlen_lengths[b] : (double)d[2];
    /* Causal squares see about half the pairs. */
    pairs += (c->flags & ATTN_CAUSAL) && lq == lk ? lq * lk / 2 : lq * lk;
    q_rows += lq, k_rows += lk;
  }
  *flops = 2.0 * pairs * (double)d[3] * (double)(d[5] + d[6]);
  *bytes = esize * (q_rows * (double)d[3] * (double)(d[5] + d[6]) +
                    k_rows * (double)d[4] * (double)(d[5] + d[6]));
  /* Decode reads every key once for few queries: bound by memory. */
  *memory_bound = d[1] <= 16 && !(c->flags & ATTN_VARLEN);
}

static void attn_describe(const cli_case *c, char *buf, size_t size) {
  const int64_t *d = c->dims;
  if (c->flags & ATTN_VARLEN)
    snprintf(buf, size, "L{17,512,1000,3} H%lld/%lld D%lld%s", (long long)d[3], (long long)d[4],
             (long long)d[5], (c->flags & ATTN_CAUSAL) ? " causal" : "");
  else
    snprintf(buf, size, "B%lld Lq%lld Lk%lld H%lld/%lld D%lld%s%s%s%s", (long long)d[0],
             (long long)d[1], (long long)d[2], (long long)d[3], (long long)d[4], (long long)d[5],
             d[6] != d[5] ? " Dv!=D" : "", (c->flags & ATTN_CAUSAL) ? " causal" : "",
             d[7] ? " window" : "", (c->flags & ATTN_SIGMOID) ? " sigmoid" : "");
}

static const cli_case attn_verify[] = {
    {"odd", {1, 7, 63, 2, 1, 64, 64, 0}, ATTN_LSE},
    {"causal", {2, 65, 65, 4, 2, 64, 64, 0}, ATTN_CAUSAL | ATTN_LSE},
    {"decode-gqa", {1, 1, 1000, 32, 8, 128, 128, 0}, ATTN_CAUSAL | ATTN_LSE},
    {"prefix", {1, 7, 129, 8, 1, 80, 80, 0}, ATTN_CAUSAL | ATTN_LSE},
    {"window-softcap", {1, 129, 129, 2, 2, 96, 96, 32}, ATTN_CAUSAL | ATTN_LSE | ATTN_SOFTCAP},
    {"dv-differs", {1, 33, 40, 4, 4, 256, 128, 0}, ATTN_LSE},
    {"sigmoid", {2, 31, 31, 2, 1, 32, 32, 0}, ATTN_CAUSAL | ATTN_SIGMOID},
    {"varlen", {0, 0, 0, 4, 2, 64, 64, 0}, ATTN_VARLEN | ATTN_CAUSAL | ATTN_LSE},
    {"kv-cache", {3, 2, 300, 4, 2, 64, 64, 0}, ATTN_CAUSAL | ATTN_LSE | ATTN_SEQUSED},
};
static const cli_case attn_bench[] = {
    {"prefill-1k", {1, 1024, 1024, 8, 8, 64, 64, 0}, ATTN_CAUSAL},
    {"prefill-4k", {1, 4096, 4096, 8, 8, 128, 128, 0}, ATTN_CAUSAL},
    {"decode-4k", {1, 1, 4096, 32, 8, 128, 128, 0}, ATTN_CAUSAL},
    {"decode-16k", {1, 1, 16384, 32, 8, 128, 128, 0}, ATTN_CAUSAL},
    {"varlen", {0, 0, 0, 8, 8, 64, 64, 0}, ATTN_VARLEN | ATTN_CAUSAL},
};

const cli_op cli_attention_op = {
    .name = "attention",
    .verify_cases = attn_verify,
    .verify_count = sizeof attn_verify / sizeof attn_verify[0],
    .bench_cases = attn_bench,
    .bench_count = sizeof attn_bench / sizeof attn_bench[0],
    .setup = attn_setup,
    .run = attn_run,
    .check = attn_check,
    .teardown = attn_teardown,
    .cost = attn_cost,
    .describe = attn_describe,
};
