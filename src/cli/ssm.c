/* The recurrent mixers in `seqmix verify` and `seqmix bench`: scan (selective
 * scan), ssd and linattn. A case's dims are B, L, H, P, N, G, chunk, decay:
 * scan H = channels D and N = state size; ssd H heads, P head dim, N state size;
 * linattn H heads, P = Dk, N = Dv (decay a seqmix_decay). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

enum { OPT_DSKIP = 1, OPT_Z = 2, OPT_BIAS = 4, OPT_SOFTPLUS = 8, OPT_STATE = 16, OPT_ALL = 31 };
typedef enum mix_kind { MIX_SCAN, MIX_SSD, MIX_LA } mix_kind;
enum { MAX_ARGS = 10 };

typedef struct mix_arg {
  bool present, output, activation; /* activation: the call's dtype, else F32 */
  int rank;
  int64_t shape[4];
  float lo, hi;
} mix_arg;

typedef struct mix_state {
  seqmix_context *ctx;
  mix_kind kind;
  cli_case c;
  int count;
  mix_arg arg[MAX_ARGS];
  float *data[MAX_ARGS];
  seqmix_tensor *t[MAX_ARGS];
} mix_state;

static size_t numel(const mix_arg *a) {
  size_t n = 1;
  for (int i = 0; i < a->rank; ++i) n *= (size_t)a->shape[i];
  return n;
}

static mix_arg arg(bool present, bool output, bool activation, float lo, float hi, int rank,
                   int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  return (mix_arg){present, output, activation, rank, {d0, d1, d2, d3}, lo, hi};
}

/* The arguments of the op in the order of its public signature. */
static int args_of(mix_kind kind, const cli_case *c, mix_arg *a) {
  const int64_t B = c->dims[0], L = c->dims[1], H = c->dims[2], P = c->dims[3], N = c->dims[4],
                G = c->dims[5];
  const unsigned f = c->flags;
  const bool sp = f & OPT_SOFTPLUS;
  const float dlo = sp ? -3.0f : 0.01f, dhi = sp ? 1.0f : 0.5f;
  const float blo = sp ? -0.5f : 0.0f, bhi = sp ? 0.5f : 0.3f;
  switch (kind) {
  case MIX_SCAN:
    a[0] = arg(true, false, true, -1, 1, 3, B, L, H, 1);       /* u */
    a[1] = arg(true, false, true, dlo, dhi, 3, B, L, H, 1);    /* delta */
    a[2] = arg(true, false, false, -2, -0.1f, 2, H, N, 1, 1);  /* A */
    a[3] = arg(true, false, true, -1, 1, 4, B, L, G, N);       /* Bm */
    a[4] = arg(true, false, true, -1, 1, 4, B, L, G, N);       /* Cm */
    a[5] = arg(f & OPT_DSKIP, false, false, -1, 1, 1, H, 1, 1, 1);
    a[6] = arg(f & OPT_Z, false, true, -2, 2, 3, B, L, H, 1);
    a[7] = arg(f & OPT_BIAS, false, false, blo, bhi, 1, H, 1, 1, 1);
    a[8] = arg(f & OPT_STATE, true, false, -1, 1, 3, B, H, N, 1);
    a[9] = arg(true, true, true, 0, 0, 3, B, L, H, 1);
    return 10;
  case MIX_SSD:
    a[0] = arg(true, false, true, -1, 1, 4, B, L, H, P);
    a[1] = arg(true, false, true, dlo, dhi, 3, B, L, H, 1);
    a[2] = arg(true, false, false, -2, -0.1f, 1, H, 1, 1, 1);
    a[3] = arg(true, false, true, -1, 1, 4, B, L, G, N);
    a[4] = arg(true, false, true, -1, 1, 4, B, L, G, N);
    a[5] = arg(f & OPT_DSKIP, false, false, -1, 1, 1, H, 1, 1, 1);
    a[6] = arg(f & OPT_Z, false, true, -2, 2, 4, B, L, H, P);
    a[7] = arg(f & OPT_BIAS, false, false, blo, bhi, 1, H, 1, 1, 1);
    a[8] = arg(f & OPT_STATE, true, false, -1, 1, 4, B, H, P, N);
    a[9] = arg(true, true, true, 0, 0, 4, B, L, H, P);
    return 10;
  case MIX_LA: {
    a[0] = arg(true, false, true, -1, 1, 4, B, L, H, P);
    a[1] = arg(true, false, true, -1, 1, 4, B, L, H, P);
    a[2] = arg(true, false, true, -1, 1, 4, B, L, H, N);
    switch ((seqmix_decay)c->dims[7]) {
    case SEQMIX_DECAY_HEAD: a[3] = arg(true, false, true, -0.3f, -0.01f, 1, H, 1, 1, 1); break;
    case SEQMIX_DECAY_TOKEN: a[3] = arg(true, false, true, -1, 0, 3, B, L, H, 1); break;
    case SEQMIX_DECAY_VECTOR: a[3] = arg(true, false, true, -1, 0, 4, B, L, H, P); break;
    default: a[3] = arg(false, false, true, 0, 0, 1, 1, 1, 1, 1); break;
    }
    a[4] = arg(f & OPT_STATE, true, false, -1, 1, 4, B, H, P, N);
    a[5] = arg(true, true, true, 0, 0, 4, B, L, H, N);
    return 6;
  }
  }
  return 0;
}

static void mix_teardown(void *p) {
  mix_state *s = p;
  if (!s) return;
  for (int i = 0; i < s->count; ++i) {
    seqmix_tensor_destroy(s->t[i]);
    free(s->data[i]);
  }
  free(s);
}

static seqmix_status mix_setup(mix_kind kind, seqmix_context *ctx, const cli_case *c,
                               seqmix_dtype dtype, unsigned long long seed, void **out) {
  mix_state *s = calloc(1, sizeof *s);
  if (!s) return SEQMIX_ERROR_OUT_OF_MEMORY;
  s->ctx = ctx, s->kind = kind, s->c = *c;
  s->count = args_of(kind, c, s->arg);
  unsigned long long rng = seed | 1;
  seqmix_status st = SEQMIX_OK;
  for (int i = 0; i < s->count && !st; ++i) {
    const mix_arg *a = &s->arg[i];
    if (!a->present) continue;
    /* Outputs keep their data as the initial state (y's is never used). */
    s->data[i] = cli_random_floats(numel(a), a->lo, a->hi, &rng);
    if (!s->data[i]) st = SEQMIX_ERROR_OUT_OF_MEMORY;
    else st = cli_make_tensor(ctx, a->activation ? dtype : SEQMIX_F32, a->rank, a->shape,
                              s->data[i], &s->t[i]);
  }
  if (st) {
    mix_teardown(s);
    return st;
  }
  *out = s;
  return SEQMIX_OK;
}

static seqmix_status mix_run(void *p) {
  mix_state *s = p;
  seqmix_tensor **t = s->t;
  const cli_case *c = &s->c;
  switch (s->kind) {
  case MIX_SCAN: {
    seqmix_selective_scan_params prm = {.delta_softplus = c->flags & OPT_SOFTPLUS};
    return seqmix_selective_scan(s->ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8],
                                 t[9], &prm);
  }
  case MIX_SSD: {
    seqmix_ssd_params prm = {.dt_softplus = c->flags & OPT_SOFTPLUS,
                             .chunk_size = (int32_t)c->dims[6]};
    return seqmix_ssd(s->ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], &prm);
  }
  case MIX_LA: {
    seqmix_linear_attention_params prm = {.decay = (seqmix_decay)c->dims[7],
                                          .chunk_size = (int32_t)c->dims[6]};
    return seqmix_linear_attention(s->ctx, t[0], t[1], t[2], t[3], t[4], t[5], &prm);
  }
  }
  return SEQMIX_ERROR_INVALID_ARGUMENT;
}

static seqmix_status reference(const mix_state *s, double *const *r) {
  const cli_case *c = &s->c;
  const int64_t *d = c->dims;
  switch (s->kind) {
  case MIX_SCAN: {
    seqmix_selective_scan_params prm = {.delta_softplus = c->flags & OPT_SOFTPLUS};
    return seqmix_reference_selective_scan(d[0], d[1], d[2], d[4], d[5], r[0], r[1], r[2], r[3],
                                           r[4], r[5], r[6], r[7], r[8], r[9], &prm);
  }
  case MIX_SSD: {
    seqmix_ssd_params prm = {.dt_softplus = c->flags & OPT_SOFTPLUS};
    return seqmix_reference_ssd(d[0], d[1], d[2], d[3], d[4], d[5], r[0], r[1], r[2], r[3], r[4],
                                r[5], r[6], r[7], r[8], r[9], &prm);
  }
  case MIX_LA: {
    seqmix_linear_attention_params prm = {.decay = (seqmix_decay)d[7]};
    return seqmix_reference_linear_attention(d[0], d[1], d[2], d[3], d[4], r[0], r[1], r[2], r[3],
                                             r[4], r[5], &prm);
  }
  }
  return SEQMIX_ERROR_INVALID_ARGUMENT;
}

/* Restores the state, poisons the output with NaN, runs once, compares the
 * output and the final state with the float64 reference. */
static seqmix_status mix_check(void *p, double *rel_err) {
  mix_state *s = p;
  double *r[MAX_ARGS] = {0};
  float *got = NULL;
  seqmix_status st = SEQMIX_OK;
  const int out = s->count - 1, state = s->count - 2;
  const size_t ny = numel(&s->arg[out]);
  for (int i = 0; i < s->count && !st; ++i)
    if (s->arg[i].present && !(r[i] = cli_to_double(s->data[i], numel(&s->arg[i]))))
      st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!st && !(got = malloc(ny * sizeof *got))) st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!st) {
    cli_fill_nan(got, ny);
    st = seqmix_tensor_write_f32(s->t[out], got, ny);
  }
  if (!st && s->t[state])
    st = seqmix_tensor_write_f32(s->t[state], s->data[state], numel(&s->arg[state]));
  if (!st) st = mix_run(s);
  if (!st) st = seqmix_tensor_read_f32(s->t[out], got, ny);
  if (!st) st = reference(s, r);
  if (!st) *rel_err = cli_rel_l2(got, r[out], ny);
  if (!st && s->t[state]) {
    const size_t ns = numel(&s->arg[state]);
    float *fs = malloc(ns * sizeof *fs);
    if (!fs) st = SEQMIX_ERROR_OUT_OF_MEMORY;
    if (!st) st = seqmix_tensor_read_f32(s->t[state], fs, ns);
    if (!st) {
      double e = cli_rel_l2(fs, r[state], ns);
      if (!(e <= *rel_err)) *rel_err = e;
    }
    free(fs);
  }
  free(got);
  for (int i = 0; i < s->count; ++i) free(r[i]);
  return st;
}

/* FLOPs of the recurrence: per state element and token, the decay multiply,
 * the input multiply-add and the output multiply-add (5), plus one per exp;
 * bytes: every input read once, outputs written once, the state read and written. */
static void mix_cost(mix_kind kind, const cli_case *c, seqmix_dtype dtype, double *flops,
                     double *bytes, bool *memory_bound) {
  mix_arg a[MAX_ARGS];
  const int n = args_of(kind, c, a);
  const double B = (double)c->dims[0], L = (double)c->dims[1], H = (double)c->dims[2],
               P = (double)c->dims[3], N = (double)c->dims[4];
  const double es = (double)seqmix_dtype_size(dtype);
  *bytes = 0;
  for (int i = 0; i < n; ++i)
    if (a[i].present) *bytes += (double)numel(&a[i]) * (a[i].activation ? es : 4) * (i == n - 2 ? 2 : 1);
  *memory_bound = c->dims[1] == 1;
  switch (kind) {
  case MIX_SCAN: *flops = B * L * H * N * 7; break;                 /* + dt A and exp */
  case MIX_SSD: *flops = B * L * H * (P * N * 5 + N + 1); break;    /* + dt B, exp */
  case MIX_LA: {
    const seqmix_decay decay = (seqmix_decay)c->dims[7];
    *flops = B * L * H * (P * N * 5 + (decay == SEQMIX_DECAY_VECTOR ? P : 1));
    break;
  }
  }
}

static void mix_describe(mix_kind kind, const cli_case *c, char *buf, size_t size) {
  const int64_t *d = c->dims;
  static const char *const decays[] = {"", " head-decay", " token-decay", " vector-decay"};
  if (kind == MIX_SCAN)
    snprintf(buf, size, "B%lld L%lld D%lld N%lld G%lld", (long long)d[0], (long long)d[1],
             (long long)d[2], (long long)d[4], (long long)d[5]);
  else if (kind == MIX_SSD)
    snprintf(buf, size, "B%lld L%lld H%lld P%lld N%lld G%lld", (long long)d[0], (long long)d[1],
             (long long)d[2], (long long)d[3], (long long)d[4], (long long)d[5]);
  else
    snprintf(buf, size, "B%lld L%lld H%lld %lldx%lld%s", (long long)d[0], (long long)d[1],
             (long long)d[2], (long long)d[3], (long long)d[4], decays[d[7] & 3]);
}

/* dims: B, L, H, P, N, G, chunk, decay. */
static const cli_case scan_verify[] = {
    {"odd", {2, 37, 24, 1, 16, 2, 0, 0}, OPT_ALL},
    {"plain", {1, 63, 33, 1, 4, 1, 0, 0}, 0},
    {"decode", {4, 1, 96, 1, 16, 1, 0, 0}, OPT_ALL},
    {"long", {1, 1000, 16, 1, 64, 1, 0, 0}, OPT_STATE | OPT_SOFTPLUS},
};
static const cli_case scan_bench[] = {
    {"prefill", {1, 4096, 1536, 1, 16, 1, 0, 0}, OPT_ALL},
    {"decode", {16, 1, 1536, 1, 16, 1, 0, 0}, OPT_ALL},
};
static const cli_case ssd_verify[] = {
    {"odd", {2, 37, 4, 8, 16, 2, 16, 0}, OPT_ALL},
    {"plain", {1, 65, 3, 5, 7, 1, 0, 0}, 0},
    {"decode", {4, 1, 4, 16, 32, 1, 0, 0}, OPT_ALL},
    {"long", {1, 1000, 2, 16, 128, 1, 48, 0}, OPT_STATE | OPT_SOFTPLUS},
};
static const cli_case ssd_bench[] = {
    {"prefill", {1, 4096, 24, 64, 128, 1, 0, 0}, OPT_ALL},
    {"decode", {16, 1, 24, 64, 128, 1, 0, 0}, OPT_ALL},
};
static const cli_case la_verify[] = {
    {"plain", {2, 37, 3, 16, 8, 1, 16, SEQMIX_DECAY_NONE}, OPT_STATE},
    {"retnet", {1, 100, 2, 32, 24, 1, 0, SEQMIX_DECAY_HEAD}, OPT_STATE},
    {"token", {2, 65, 2, 16, 16, 1, 7, SEQMIX_DECAY_TOKEN}, 0},
    {"gla", {1, 257, 2, 64, 64, 1, 0, SEQMIX_DECAY_VECTOR}, OPT_STATE},
    {"decode", {4, 1, 4, 64, 64, 1, 0, SEQMIX_DECAY_VECTOR}, OPT_STATE},
};
static const cli_case la_bench[] = {
    {"gla-prefill", {1, 4096, 8, 64, 64, 1, 0, SEQMIX_DECAY_VECTOR}, OPT_STATE},
    {"decode", {16, 1, 8, 64, 64, 1, 0, SEQMIX_DECAY_VECTOR}, OPT_STATE},
};

#define MIX_OP(ident, opname, kind, verify, bench)                                                 \
  static seqmix_status ident##_setup(seqmix_context *ctx, const cli_case *c, seqmix_dtype dtype,  \
                                     unsigned long long seed, void **out) {                       \
    return mix_setup(kind, ctx, c, dtype, seed, out);                                             \
  }                                                                                                \
  static void ident##_cost(const cli_case *c, seqmix_dtype dtype, double *flops, double *bytes,   \
                           bool *memory_bound) {                                                  \
    mix_cost(kind, c, dtype, flops, bytes, memory_bound);                                          \
  }                                                                                                \
  static void ident##_describe(const cli_case *c, char *buf, size_t size) {                       \
    mix_describe(kind, c, buf, size);                                                              \
  }                                                                                                \
  const cli_op cli_##ident##_op = {                                                                \
      .name = opname,                                                                              \
      .verify_cases = verify,                                                                      \
      .verify_count = sizeof verify / sizeof verify[0],                                            \
      .bench_cases = bench,                                                                        \
      .bench_count = sizeof bench / sizeof bench[0],                                               \
      .setup = ident##_setup,                                                                      \
      .run = mix_run,                                                                              \
      .check = mix_check,                                                                          \
      .teardown = mix_teardown,                                                                    \
      .cost = ident##_cost,                                                                        \
      .describe = ident##_describe,                                                                \
  };

MIX_OP(scan, "scan", MIX_SCAN, scan_verify, scan_bench)
MIX_OP(ssd, "ssd", MIX_SSD, ssd_verify, ssd_bench)
MIX_OP(linattn, "linattn", MIX_LA, la_verify, la_bench)
