/* The ops `seqmix verify` and `seqmix bench` run: cases, setup, reference checks. */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared: random data, tensors, comparison ---- */

static unsigned long long rng_next_(unsigned long long *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

float *cli_random_floats(size_t n, float lo, float hi, unsigned long long *rng) {
  float *p = malloc((n ? n : 1) * sizeof *p);
  if (!p) return NULL;
  for (size_t i = 0; i < n; ++i)
    p[i] = lo + (hi - lo) * (float)((rng_next_(rng) >> 40) * (1.0 / 16777216.0));
  return p;
}

/* Creates a tensor holding data; data is replaced by the values as stored. */
seqmix_status cli_make_tensor(seqmix_context *ctx, seqmix_dtype dtype, int rank,
                              const int64_t *shape, float *data, seqmix_tensor **out) {
  seqmix_status st = seqmix_tensor_create(ctx, dtype, rank, shape, out);
  if (st || !data) return st;
  size_t n = (size_t)seqmix_tensor_numel(*out);
  if ((st = seqmix_tensor_write_f32(*out, data, n))) return st;
  return seqmix_tensor_read_f32(*out, data, n);
}

double *cli_to_double(const float *f, size_t n) {
  double *d = malloc((n ? n : 1) * sizeof *d);
  if (d)
    for (size_t i = 0; i < n; ++i) d[i] = f[i];
  return d;
}

double cli_rel_l2(const float *out, const double *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (isnan(out[i])) return INFINITY;
    double d = out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

void cli_fill_nan(float *p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = NAN;
}

/* ---- conv1d ---- */

enum { CONV_BIAS = 1, CONV_STATE = 2, CONV_SILU = 4, CONV_PARAM_ACT = 8 };

typedef struct conv1d_state {
  seqmix_context *ctx;
  int64_t B, L, C, K;
  unsigned flags;
  float *x, *w, *bias, *state0;
  seqmix_tensor *tx, *tw, *tb, *ts, *ty;
} conv1d_state;

static void conv1d_teardown(void *p) {
  conv1d_state *s = p;
  if (!s) return;
  seqmix_tensor *all[] = {s->tx, s->tw, s->tb, s->ts, s->ty};
  for (int i = 0; i < 5; ++i) seqmix_tensor_destroy(all[i]);
  free(s->x), free(s->w), free(s->bias), free(s->state0);
  free(s);
}

static seqmix_status conv1d_setup(seqmix_context *ctx, const cli_case *c, seqmix_dtype dtype,
                                  unsigned long long seed, void **out) {
  conv1d_state *s = calloc(1, sizeof *s);
  if (!s) return SEQMIX_ERROR_OUT_OF_MEMORY;
  s->ctx = ctx;
  s->B = c->dims[0], s->L = c->dims[1], s->C = c->dims[2], s->K = c->dims[3];
  s->flags = c->flags;
  unsigned long long rng = seed | 1;
  const int64_t xs[] = {s->B, s->L, s->C}, ws[] = {s->C, s->K}, bs[] = {s->C},
                ss[] = {s->B, s->K - 1, s->C};
  size_t nx = (size_t)(s->B * s->L * s->C), ns = (size_t)(s->B * (s->K - 1) * s->C);
  s->x = cli_random_floats(nx, -2, 2, &rng);
  s->w = cli_random_floats((size_t)(s->C * s->K), -1, 1, &rng);
  s->bias = cli_random_floats((size_t)s->C, -0.5f, 0.5f, &rng);
  s->state0 = cli_random_floats(ns, -2, 2, &rng);
  seqmix_dtype param = (c->flags & CONV_PARAM_ACT) ? dtype : SEQMIX_F32;
  seqmix_status st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!s->x || !s->w || !s->bias || !s->state0) goto fail;
  if ((st = cli_make_tensor(ctx, dtype, 3, xs, s->x, &s->tx)) ||
      (st = cli_make_tensor(ctx, param, 2, ws, s->w, &s->tw)) ||
      (st = cli_make_tensor(ctx, dtype, 3, xs, NULL, &s->ty)))
    goto fail;
  if ((c->flags & CONV_BIAS) && (st = cli_make_tensor(ctx, param, 1, bs, s->bias, &s->tb))) goto fail;
  if ((c->flags & CONV_STATE) && (st = cli_make_tensor(ctx, SEQMIX_F32, 3, ss, s->state0, &s->ts)))
    goto fail;
  *out = s;
  return SEQMIX_OK;
fail:
  conv1d_teardown(s);
  return st;
}

static seqmix_status conv1d_run(void *p) {
  conv1d_state *s = p;
  seqmix_conv1d_params params = {.silu = (s->flags & CONV_SILU) != 0};
  return seqmix_conv1d_causal(s->ctx, s->tx, s->tw, s->tb, s->ts, s->ty, &params);
}

static seqmix_status conv1d_check(void *p, double *rel_err) {
  conv1d_state *s = p;
  size_t ny = (size_t)(s->B * s->L * s->C), ns = (size_t)(s->B * (s->K - 1) * s->C);
  float *y = malloc(ny * sizeof *y), *state = malloc((ns ? ns : 1) * sizeof *state);
  double *rx = cli_to_double(s->x, ny), *rw = cli_to_double(s->w, (size_t)(s->C * s->K));
  double *rb = cli_to_double(s->bias, (size_t)s->C), *rs = cli_to_double(s->state0, ns);
  double *ry = malloc(ny * sizeof *ry);
  seqmix_status st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!y || !state || !rx || !rw || !rb || !rs || !ry) goto done;
  /* Fresh state and a NaN-poisoned output, so an unwritten element fails. */
  cli_fill_nan(y, ny);
  if ((st = seqmix_tensor_write_f32(s->ty, y, ny))) goto done;
  if (s->ts && (st = seqmix_tensor_write_f32(s->ts, s->state0, ns))) goto done;
  if ((st = conv1d_run(s)) || (st = seqmix_tensor_read_f32(s->ty, y, ny))) goto done;
  if (s->ts && (st = seqmix_tensor_read_f32(s->ts, state, ns))) goto done;
  seqmix_conv1d_params params = {.silu = (s->flags & CONV_SILU) != 0};
  st = seqmix_reference_conv1d_causal(s->B, s->L, s->C, s->K, rx, rw, s->tb ? rb : NULL,
                                      s->ts ? rs : NULL, ry, &params);
  if (st) goto done;
  *rel_err = cli_rel_l2(y, ry, ny);
  if (s->ts) {
    double e = cli_rel_l2(state, rs, ns);
    if (!(e <= *rel_err)) *rel_err = e;
  }
done:
  free(y), free(state), free(rx), free(rw), free(rb), free(rs), free(ry);
  return st;
}

static void conv1d_cost(const cli_case *c, seqmix_dtype dtype, double *flops, double *bytes,
                        bool *memory_bound) {
  *memory_bound = true;
  double B = (double)c->dims[0], L = (double)c->dims[1], C = (double)c->dims[2],
         K = (double)c->dims[3];
  double esize = (double)seqmix_dtype_size(dtype);
  double psize = (c->flags & CONV_PARAM_ACT) ? esize : 4;
  *flops = 2 * K * B * L * C + ((c->flags & CONV_BIAS) ? B * L * C : 0);
  /* x read once, y written once, weights and bias once, the state read and written. */
  *bytes = 2 * B * L * C * esize + C * (K + ((c->flags & CONV_BIAS) ? 1 : 0)) * psize +
           ((c->flags & CONV_STATE) ? 2 * B * (K - 1) * C * 4 : 0);
}

static void conv1d_describe(const cli_case *c, char *buf, size_t size) {
  snprintf(buf, size, "B%lld L%lld C%lld K%lld%s%s%s%s", (long long)c->dims[0],
           (long long)c->dims[1], (long long)c->dims[2], (long long)c->dims[3],
           (c->flags & CONV_BIAS) ? " bias" : "", (c->flags & CONV_STATE) ? " state" : "",
           (c->flags & CONV_SILU) ? " silu" : "", (c->flags & CONV_PARAM_ACT) ? " params-act" : "");
}

static const cli_case conv1d_verify[] = {
    {"one", {1, 1, 1, 1}, 0},
    {"odd", {2, 45, 67, 4}, CONV_BIAS | CONV_STATE | CONV_SILU},
    {"odd-params-act", {3, 31, 19, 3}, CONV_BIAS | CONV_STATE | CONV_PARAM_ACT},
    {"short-with-state", {3, 2, 19, 6}, CONV_BIAS | CONV_STATE},
    {"wide", {1, 257, 1537, 4}, CONV_BIAS | CONV_STATE | CONV_SILU},
    {"decode", {4, 1, 1536, 4}, CONV_BIAS | CONV_STATE | CONV_SILU},
    {"long", {1, 1000, 40, 3}, CONV_SILU},
};
static const cli_case conv1d_bench[] = {
    {"prefill-4k", {1, 4096, 1536, 4}, CONV_BIAS | CONV_STATE | CONV_SILU},
    {"decode", {16, 1, 1536, 4}, CONV_BIAS | CONV_STATE | CONV_SILU},
};

const cli_op cli_conv1d_op = {
    .name = "conv1d",
    .verify_cases = conv1d_verify,
    .verify_count = sizeof conv1d_verify / sizeof conv1d_verify[0],
    .bench_cases = conv1d_bench,
    .bench_count = sizeof conv1d_bench / sizeof conv1d_bench[0],
    .setup = conv1d_setup,
    .run = conv1d_run,
    .check = conv1d_check,
    .teardown = conv1d_teardown,
    .cost = conv1d_cost,
    .describe = conv1d_describe,
};
