/* The recurrent mixers (seqmix_selective_scan, seqmix_ssd,
 * seqmix_linear_attention) on every device against the float64 reference. */
#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum op_kind { OP_SCAN, OP_SSD, OP_LA } op_kind;
enum { OPT_DSKIP = 1, OPT_Z = 2, OPT_BIAS = 4, OPT_SOFTPLUS = 8, OPT_STATE = 16, OPT_ALL = 31 };

/* One call. Dims by op: scan H = channels D, N = state size; SSD H heads, P head
 * dim, N state size; linear attention H heads, P = Dk, N = Dv. */
typedef struct mix_case {
  op_kind op;
  int64_t B, L, H, P, N, G;
  unsigned opts;
  seqmix_decay decay;
  int32_t chunk;
  seqmix_dtype act, param;
  bool views;  /* activations and state are strided views into larger tensors */
  bool strong; /* decays strong enough to underflow exp() within a few tokens */
} mix_case;

static mix_case mk(op_kind op, int64_t B, int64_t L, int64_t H, int64_t P, int64_t N, int64_t G,
                   unsigned opts, seqmix_decay decay, int32_t chunk) {
  return (mix_case){op, B, L, H, P, N, G, opts, decay, chunk, SEQMIX_F32, SEQMIX_F32, false, false};
}

enum { MAX_ARGS = 10 };
typedef struct arg_spec {
  const char *name;
  bool present, output, tokens; /* tokens: dim 1 is the token axis */
  seqmix_dtype dtype;
  int rank;
  int64_t shape[4];
  float lo, hi;
} arg_spec;

static size_t numel(const arg_spec *a) {
  size_t n = 1;
  for (int i = 0; i < a->rank; ++i) n *= (size_t)a->shape[i];
  return n;
}

#define SPEC(nm, pres, out, tok, dt, lo_, hi_, ...)                                                \
  (arg_spec) {                                                                                     \
    .name = nm, .present = (pres), .output = (out), .tokens = (tok), .dtype = (dt),               \
    .rank = (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), .shape = {__VA_ARGS__},    \
    .lo = (lo_), .hi = (hi_)                                                                       \
  }

/* The arguments of c's op in the order of its public signature. */
static int specs_of(const mix_case *c, arg_spec *s) {
  const int64_t B = c->B, L = c->L, H = c->H, P = c->P, N = c->N, G = c->G;
  const seqmix_dtype act = c->act, par = c->param;
  const bool sp = c->opts & OPT_SOFTPLUS, st = c->opts & OPT_STATE;
  /* dt must stay positive without softplus, or A < 0 would make the state grow. */
  const float dlo = sp ? -3.0f : 0.01f, dhi = sp ? 1.0f : 0.5f;
  const float blo = sp ? -0.5f : 0.0f, bhi = sp ? 0.5f : 0.3f;
  const float alo = c->strong ? -60.0f : -2.0f, ahi = c->strong ? -20.0f : -0.1f;
  switch (c->op) {
  case OP_SCAN:
    s[0] = SPEC("u", true, false, true, act, -1, 1, B, L, H);
    s[1] = SPEC("delta", true, false, true, act, c->strong ? 2 : dlo, c->strong ? 5 : dhi, B, L, H);
    s[2] = SPEC("A", true, false, false, SEQMIX_F32, alo, ahi, H, N);
    s[3] = SPEC("Bm", true, false, true, act, -1, 1, B, L, G, N);
    s[4] = SPEC("Cm", true, false, true, act, -1, 1, B, L, G, N);
    s[5] = SPEC("D_skip", c->opts & OPT_DSKIP, false, false, par, -1, 1, H);
    s[6] = SPEC("z", c->opts & OPT_Z, false, true, act, -2, 2, B, L, H);
    s[7] = SPEC("delta_bias", c->opts & OPT_BIAS, false, false, par, blo, bhi, H);
    s[8] = SPEC("state", st, true, false, SEQMIX_F32, -1, 1, B, H, N);
    s[9] = SPEC("y", true, true, true, act, 0, 0, B, L, H);
    return 10;
  case OP_SSD:
    s[0] = SPEC("x", true, false, true, act, -1, 1, B, L, H, P);
    s[1] = SPEC("dt", true, false, true, act, c->strong ? 2 : dlo, c->strong ? 5 : dhi, B, L, H);
    s[2] = SPEC("A", true, false, false, SEQMIX_F32, alo, ahi, H);
    s[3] = SPEC("Bm", true, false, true, act, -1, 1, B, L, G, N);
    s[4] = SPEC("Cm", true, false, true, act, -1, 1, B, L, G, N);
    s[5] = SPEC("D_skip", c->opts & OPT_DSKIP, false, false, par, -1, 1, H);
    s[6] = SPEC("z", c->opts & OPT_Z, false, true, act, -2, 2, B, L, H, P);
    s[7] = SPEC("dt_bias", c->opts & OPT_BIAS, false, false, par, blo, bhi, H);
    s[8] = SPEC("state", st, true, false, SEQMIX_F32, -1, 1, B, H, P, N);
    s[9] = SPEC("y", true, true, true, act, 0, 0, B, L, H, P);
    return 10;
  case OP_LA: {
    s[0] = SPEC("q", true, false, true, act, -1, 1, B, L, H, P);
    s[1] = SPEC("k", true, false, true, act, -1, 1, B, L, H, P);
    s[2] = SPEC("v", true, false, true, act, -1, 1, B, L, H, N);
    const float glo = c->strong ? -60.0f : c->decay == SEQMIX_DECAY_HEAD ? -0.3f : -1.0f;
    const float ghi = c->strong ? -20.0f : c->decay == SEQMIX_DECAY_HEAD ? -0.01f : 0.0f;
    switch (c->decay) {
    case SEQMIX_DECAY_HEAD: s[3] = SPEC("g", true, false, false, act, glo, ghi, H); break;
    case SEQMIX_DECAY_TOKEN: s[3] = SPEC("g", true, false, true, act, glo, ghi, B, L, H); break;
    case SEQMIX_DECAY_VECTOR: s[3] = SPEC("g", true, false, true, act, glo, ghi, B, L, H, P); break;
    default: s[3] = SPEC("g", false, false, false, act, 0, 0, 1); break;
    }
    s[4] = SPEC("state", st, true, false, SEQMIX_F32, -1, 1, B, H, P, N);
    s[5] = SPEC("out", true, true, true, act, 0, 0, B, L, H, N);
    return 6;
  }
  }
  return 0;
}

/* Host data, device tensors and their bases (views) for one case. */
typedef struct mix_args {
  int count;
  arg_spec spec[MAX_ARGS];
  float *data[MAX_ARGS];
  double *ref[MAX_ARGS];
  seqmix_tensor *t[MAX_ARGS], *base[MAX_ARGS];
} mix_args;

static void args_make(seqmix_context *ctx, const mix_case *c, uint64_t salt, mix_args *a) {
  memset(a, 0, sizeof *a);
  a->count = specs_of(c, a->spec);
  th_rng rng = th_rng_make(salt);
  for (int i = 0; i < a->count; ++i) {
    const arg_spec *s = &a->spec[i];
    if (!s->present) continue;
    const size_t n = numel(s);
    const bool is_out = s->output && strcmp(s->name, "state");
    a->data[i] = malloc(n * sizeof(float));
    th_fill(&rng, a->data[i], n, s->lo, s->hi);
    float *init = is_out ? NULL : a->data[i];
    static const int64_t pad[] = {1, 3, 2, 5};
    if (c->views && s->rank >= 3)
      a->t[i] = th_padded_view(ctx, s->dtype, s->rank, s->shape, pad, 7, init, &a->base[i]);
    else
      a->t[i] = th_tensor(ctx, s->dtype, s->rank, s->shape, init);
    /* th_tensor rounded data to the dtype in place: the reference sees the same. */
    a->ref[i] = th_to_double(a->data[i], n);
  }
}

static void args_free(mix_args *a) {
  for (int i = 0; i < a->count; ++i) {
    free(a->data[i]);
    free(a->ref[i]);
    if (a->t[i]) seqmix_tensor_destroy(a->t[i]);
    if (a->base[i]) seqmix_tensor_destroy(a->base[i]);
  }
}

static seqmix_status run_op(seqmix_context *ctx, const mix_case *c, seqmix_tensor *const *t) {
  switch (c->op) {
  case OP_SCAN: {
    seqmix_selective_scan_params p = {.delta_softplus = c->opts & OPT_SOFTPLUS};
    return seqmix_selective_scan(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9],
                                 &p);
  }
  case OP_SSD: {
    seqmix_ssd_params p = {.dt_softplus = c->opts & OPT_SOFTPLUS, .chunk_size = c->chunk};
    return seqmix_ssd(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], &p);
  }
  case OP_LA: {
    seqmix_linear_attention_params p = {.decay = c->decay, .chunk_size = c->chunk};
    return seqmix_linear_attention(ctx, t[0], t[1], t[2], t[3], t[4], t[5], &p);
  }
  }
  return SEQMIX_ERROR_INVALID_ARGUMENT;
}

static void run_reference(const mix_case *c, double *const *r) {
  switch (c->op) {
  case OP_SCAN: {
    seqmix_selective_scan_params p = {.delta_softplus = c->opts & OPT_SOFTPLUS};
    th_ok(seqmix_reference_selective_scan(c->B, c->L, c->H, c->N, c->G, r[0], r[1], r[2], r[3],
                                          r[4], r[5], r[6], r[7], r[8], r[9], &p));
    break;
  }
  case OP_SSD: {
    seqmix_ssd_params p = {.dt_softplus = c->opts & OPT_SOFTPLUS};
    th_ok(seqmix_reference_ssd(c->B, c->L, c->H, c->P, c->N, c->G, r[0], r[1], r[2], r[3], r[4],
                               r[5], r[6], r[7], r[8], r[9], &p));
    break;
  }
  case OP_LA: {
    seqmix_linear_attention_params p = {.decay = c->decay};
    th_ok(seqmix_reference_linear_attention(c->B, c->L, c->H, c->P, c->N, r[0], r[1], r[2], r[3],
                                            r[4], r[5], &p));
    break;
  }
  }
}

static const char *op_name(op_kind op) {
  return op == OP_SCAN ? "selective_scan" : op == OP_SSD ? "ssd" : "linear_attention";
}

static void describe(const mix_case *c, char *buf, size_t size) {
  snprintf(buf, size,
           "%s B%lld L%lld H%lld P%lld N%lld G%lld opts%u decay%d chunk%d %s/%s views%d strong%d",
           op_name(c->op), (long long)c->B, (long long)c->L, (long long)c->H, (long long)c->P,
           (long long)c->N, (long long)c->G, c->opts, (int)c->decay, (int)c->chunk,
           seqmix_dtype_name(c->act), seqmix_dtype_name(c->param), c->views, c->strong);
}

/* Runs c on device `device` and checks the output and the final state. */
static void check_case(seqmix_context *ctx, int device, mix_case c, uint64_t salt) {
  if (c.G == 0) c.G = 1;
  mix_args a;
  args_make(ctx, &c, salt, &a);
  th_ok(run_op(ctx, &c, a.t));
  run_reference(&c, a.ref);
  char what[200];
  describe(&c, what, sizeof what);
  const double long_tol = c.L >= 4096 ? 1e-4 : 1e-5;
  for (int i = 0; i < a.count; ++i) {
    if (!a.spec[i].present || !a.spec[i].output) continue;
    const bool state = !strcmp(a.spec[i].name, "state");
    float *got = th_read(a.t[i]);
    double err = th_rel_l2(got, a.ref[i], numel(&a.spec[i]));
    double tol = state ? long_tol : c.act == SEQMIX_F32 ? long_tol : th_tolerance(c.act);
    ck_assert_msg(err <= tol, "%s: %s rel err %.3g > %.1g (%s, seed %llu)", th_device_id(device),
                  a.spec[i].name, err, tol, what, (unsigned long long)th_seed());
    free(got);
  }
  args_free(&a);
}

static const op_kind all_ops[] = {OP_SCAN, OP_SSD, OP_LA};

/* A small problem for each op with options `opts`. */
static mix_case small_case(op_kind op, unsigned opts) {
  switch (op) {
  case OP_SCAN: return mk(OP_SCAN, 2, 37, 24, 1, 16, 2, opts, 0, 0);
  case OP_SSD: return mk(OP_SSD, 2, 37, 4, 8, 16, 2, opts, 0, 16);
  case OP_LA:
    return mk(OP_LA, 2, 37, 3, 16, 8, 1, opts & OPT_STATE, SEQMIX_DECAY_TOKEN, 16);
  }
  return mk(OP_SCAN, 1, 1, 1, 1, 1, 1, 0, 0, 0);
}

START_TEST(each_option_alone_and_together) {
  seqmix_context *ctx = th_context(_i);
  static const unsigned combos[] = {0, OPT_DSKIP, OPT_Z, OPT_BIAS, OPT_SOFTPLUS, OPT_STATE, OPT_ALL};
  for (int o = 0; o < 3; ++o)
    for (size_t k = 0; k < sizeof combos / sizeof combos[0]; ++k)
      check_case(ctx, _i, small_case(all_ops[o], combos[k]), 100 + (uint64_t)(o * 10) + k);
  th_context_done(ctx);
}
END_TEST

START_TEST(linear_attention_every_decay_kind) {
  seqmix_context *ctx = th_context(_i);
  static const seqmix_decay decays[] = {SEQMIX_DECAY_NONE, SEQMIX_DECAY_HEAD, SEQMIX_DECAY_TOKEN,
                                        SEQMIX_DECAY_VECTOR};
  for (int d = 0; d < 4; ++d)
    for (int st = 0; st < 2; ++st) {
      mix_case c = mk(OP_LA, 2, 45, 2, 24, 20, 1, st ? OPT_STATE : 0, decays[d], 0);
      check_case(ctx, _i, c, 200 + (uint64_t)(d * 2 + st));
    }
  th_context_done(ctx);
}
END_TEST

/* L in {1, 2, 31, 64, 100, 257, 2048} against N in {4, 16, 64, 128}. */
START_TEST(lengths_and_state_sizes) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t Ls[] = {1, 2, 31, 64, 100, 257, 2048}, Ns[] = {4, 16, 64, 128};
  for (int li = 0; li < 7; ++li)
    for (int ni = 0; ni < 4; ++ni) {
      const int64_t L = Ls[li], N = Ns[ni];
      const bool long_ = L >= 2048;
      /* Keep the long cases narrow: the reference and the CPU drivers are slow. */
      mix_case scan = mk(OP_SCAN, 1, L, long_ ? 8 : 12, 1, N, 1, OPT_ALL, 0, 0);
      mix_case ssd = mk(OP_SSD, 1, L, 2, long_ ? 8 : 16, N, 1, OPT_ALL, 0, 0);
      mix_case la = mk(OP_LA, 1, L, 1, N, long_ ? 8 : 16, 1, OPT_STATE, SEQMIX_DECAY_VECTOR, 0);
      const uint64_t salt = 300 + (uint64_t)(li * 4 + ni) * 3;
      check_case(ctx, _i, scan, salt);
      check_case(ctx, _i, ssd, salt + 1);
      check_case(ctx, _i, la, salt + 2);
    }
  th_context_done(ctx);
}
END_TEST

START_TEST(chunk_sizes_that_do_not_divide_the_length) {
  seqmix_context *ctx = th_context(_i);
  static const int32_t chunks[] = {1, 7, 16, 48, 64, 256};
  for (int k = 0; k < 6; ++k) {
    mix_case ssd = mk(OP_SSD, 1, 100, 2, 8, 16, 1, OPT_ALL, 0, chunks[k]);
    mix_case la = mk(OP_LA, 1, 100, 2, 16, 8, 1, OPT_STATE, SEQMIX_DECAY_VECTOR, chunks[k]);
    check_case(ctx, _i, ssd, 400 + (uint64_t)k * 2);
    check_case(ctx, _i, la, 401 + (uint64_t)k * 2);
    la.decay = SEQMIX_DECAY_HEAD;
    check_case(ctx, _i, la, 420 + (uint64_t)k);
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(groups_share_B_and_C) {
  seqmix_context *ctx = th_context(_i);
  mix_case scan = mk(OP_SCAN, 2, 33, 24, 1, 16, 4, OPT_ALL, 0, 0);
  mix_case ssd = mk(OP_SSD, 2, 33, 8, 8, 16, 4, OPT_ALL, 0, 0);
  check_case(ctx, _i, scan, 500);
  check_case(ctx, _i, ssd, 501);
  scan.G = 24, ssd.G = 8;
  check_case(ctx, _i, scan, 502);
  check_case(ctx, _i, ssd, 503);
  th_context_done(ctx);
}
END_TEST

/* Decode: the per-token call of an inference engine, L = 1 with a state. */
START_TEST(decode_one_token_with_state) {
  seqmix_context *ctx = th_context(_i);
  mix_case scan = mk(OP_SCAN, 16, 1, 96, 1, 16, 1, OPT_ALL, 0, 0);
  mix_case ssd = mk(OP_SSD, 16, 1, 4, 16, 32, 1, OPT_ALL, 0, 0);
  mix_case la = mk(OP_LA, 16, 1, 2, 16, 16, 1, OPT_STATE, SEQMIX_DECAY_VECTOR, 0);
  check_case(ctx, _i, scan, 600);
  check_case(ctx, _i, ssd, 601);
  check_case(ctx, _i, la, 602);
  la.decay = SEQMIX_DECAY_NONE;
  check_case(ctx, _i, la, 603);
  th_context_done(ctx);
}
END_TEST

/* Decays that underflow exp() must give zeros, never NaN or Inf. */
START_TEST(strong_decays_stay_finite) {
  seqmix_context *ctx = th_context(_i);
  for (int o = 0; o < 3; ++o) {
    mix_case c = small_case(all_ops[o], OPT_ALL);
    c.strong = true, c.L = 70;
    check_case(ctx, _i, c, 700 + (uint64_t)o);
  }
  static const seqmix_decay decays[] = {SEQMIX_DECAY_HEAD, SEQMIX_DECAY_TOKEN, SEQMIX_DECAY_VECTOR};
  for (int d = 0; d < 3; ++d) {
    mix_case la = mk(OP_LA, 1, 70, 2, 16, 16, 1, OPT_STATE, decays[d], 0);
    la.strong = true;
    check_case(ctx, _i, la, 710 + (uint64_t)d);
  }
  th_context_done(ctx);
}
END_TEST

/* A decay of -50 a token for 48 tokens, then weak ones, inside one 64-token chunk:
 * the cumulative log-decay reaches -2400, and the weak tokens' factors must not
 * inherit its rounding (differences of long prefix sums). */
START_TEST(weak_decays_after_strong_ones_keep_precision) {
  seqmix_context *ctx = th_context(_i);
  static const seqmix_decay decays[] = {SEQMIX_DECAY_TOKEN, SEQMIX_DECAY_VECTOR, SEQMIX_DECAY_HEAD};
  for (int d = 0; d < 3; ++d) {
    mix_case c = mk(d < 2 ? OP_LA : OP_SSD, 1, 100, 2, 16, 16, 1, OPT_STATE, decays[d], 64);
    mix_args a;
    args_make(ctx, &c, 1300 + (uint64_t)d, &a);
    /* LA: g itself; SSD: dt (A in [-2, -0.1]), which also scales the inputs. */
    const int gi = c.op == OP_LA ? 3 : 1;
    const int64_t per_token = c.op == OP_LA && c.decay == SEQMIX_DECAY_VECTOR ? c.H * c.P : c.H;
    th_rng rng = th_rng_make(1310 + (uint64_t)d);
    for (int64_t t = 0; t < c.L; ++t)
      for (int64_t i = 0; i < per_token; ++i) {
        float *v = &a.data[gi][t * per_token + i];
        if (c.op == OP_LA) *v = t < 48 ? -50.0f : th_uniform(&rng, -0.02f, 0.0f);
        else *v = t < 48 ? 30.0f : th_uniform(&rng, 0.01f, 0.05f);
        a.ref[gi][t * per_token + i] = *v;
      }
    th_ok(seqmix_tensor_write_f32(a.t[gi], a.data[gi], numel(&a.spec[gi])));
    th_ok(run_op(ctx, &c, a.t));
    run_reference(&c, a.ref);
    for (int i = a.count - 2; i < a.count; ++i) {
      float *got = th_read(a.t[i]);
      double err = th_rel_l2(got, a.ref[i], numel(&a.spec[i]));
      ck_assert_msg(err <= 1e-5, "%s: %s %s decay %d rel err %.3g (seed %llu)", th_device_id(_i),
                    op_name(c.op), a.spec[i].name, (int)c.decay, err, (unsigned long long)th_seed());
      free(got);
    }
    args_free(&a);
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(f16_and_bf16_storage_within_tolerance) {
  seqmix_context *ctx = th_context(_i);
  static const seqmix_dtype acts[] = {SEQMIX_F16, SEQMIX_BF16};
  for (int a = 0; a < 2; ++a)
    for (int o = 0; o < 3; ++o)
      for (int same = 0; same < 2; ++same) {
        mix_case c = small_case(all_ops[o], OPT_ALL);
        c.act = acts[a], c.param = same ? acts[a] : SEQMIX_F32;
        if (c.op == OP_LA) c.decay = same ? SEQMIX_DECAY_VECTOR : SEQMIX_DECAY_HEAD;
        check_case(ctx, _i, c, 800 + (uint64_t)(a * 6 + o * 2 + same));
      }
  th_context_done(ctx);
}
END_TEST

START_TEST(strided_views_work_without_copies) {
  seqmix_context *ctx = th_context(_i);
  for (int o = 0; o < 3; ++o) {
    mix_case c = small_case(all_ops[o], OPT_ALL);
    c.views = true;
    check_case(ctx, _i, c, 900 + (uint64_t)o);
    c.act = SEQMIX_BF16;
    check_case(ctx, _i, c, 910 + (uint64_t)o);
  }
  th_context_done(ctx);
}
END_TEST

/* Feeding a sequence in 1, 2 and 3 pieces through the state equals one call. */
START_TEST(sequence_in_pieces_equals_one_call) {
  seqmix_context *ctx = th_context(_i);
  for (int o = 0; o < 3; ++o) {
    mix_case c = small_case(all_ops[o], OPT_ALL);
    c.L = 50;
    mix_args a;
    args_make(ctx, &c, 1000 + (uint64_t)o, &a);
    const int si = a.count - 2, yi = a.count - 1; /* state, then the output */
    const size_t ns = numel(&a.spec[si]), ny = numel(&a.spec[yi]);
    th_ok(run_op(ctx, &c, a.t));
    float *whole = th_read(a.t[yi]), *whole_state = th_read(a.t[si]);

    static const int64_t cuts[][4] = {{0, 50, 50, 50}, {0, 1, 50, 50}, {0, 17, 18, 50}};
    for (int k = 0; k < 3; ++k) {
      th_ok(seqmix_tensor_write_f32(a.t[si], a.data[si], ns));
      for (int piece = 0; piece < 3; ++piece) {
        const int64_t t0 = cuts[k][piece], t1 = cuts[k][piece + 1];
        if (t1 <= t0) continue;
        seqmix_tensor *v[MAX_ARGS];
        for (int i = 0; i < a.count; ++i) {
          v[i] = a.t[i];
          if (!a.t[i] || !a.spec[i].tokens) continue;
          int64_t shape[4], strides[4], stride = 1;
          for (int d = a.spec[i].rank - 1; d >= 0; --d) {
            shape[d] = a.spec[i].shape[d];
            strides[d] = stride;
            stride *= shape[d];
          }
          shape[1] = t1 - t0;
          th_ok(seqmix_tensor_view(a.t[i], a.spec[i].rank, shape, strides, t0 * strides[1], &v[i]));
        }
        mix_case piece_case = c;
        piece_case.L = t1 - t0;
        th_ok(run_op(ctx, &piece_case, v));
        for (int i = 0; i < a.count; ++i)
          if (v[i] != a.t[i]) seqmix_tensor_destroy(v[i]);
      }
      float *pieces = th_read(a.t[yi]), *state = th_read(a.t[si]);
      double *ref_y = th_to_double(whole, ny), *ref_s = th_to_double(whole_state, ns);
      double ey = th_rel_l2(pieces, ref_y, ny), es = th_rel_l2(state, ref_s, ns);
      ck_assert_msg(ey <= 1e-5 && es <= 1e-5,
                    "%s: %s in pieces %d: y rel err %.3g, state %.3g against one call (seed %llu)",
                    th_device_id(_i), op_name(c.op), k, ey, es, (unsigned long long)th_seed());
      free(pieces), free(state), free(ref_y), free(ref_s);
    }
    free(whole), free(whole_state);
    args_free(&a);
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(mixers_run_on_the_device_not_the_fallback) {
  seqmix_context *ctx = th_context(_i);
  for (int o = 0; o < 3; ++o) check_case(ctx, _i, small_case(all_ops[o], OPT_ALL), 1100 + (uint64_t)o);
  mix_case la = small_case(OP_LA, OPT_STATE);
  la.decay = SEQMIX_DECAY_VECTOR;
  check_case(ctx, _i, la, 1110);
  seqmix_context_stats stats;
  th_ok(seqmix_context_stats_get(ctx, &stats));
  ck_assert_msg(stats.ops_on_device == 4 && stats.ops_on_fallback == 0,
                "%s: recurrent mixers ran on the fallback (device %llu, fallback %llu)",
                th_device_id(_i), (unsigned long long)stats.ops_on_device,
                (unsigned long long)stats.ops_on_fallback);
  th_context_done(ctx);
}
END_TEST

/* Bad input: a clear error naming the argument and the rule; the context stays usable. */
START_TEST(bad_arguments_are_refused_with_a_clear_message) {
  seqmix_context *ctx = th_context(_i);
  mix_case c = small_case(OP_SCAN, OPT_ALL);
  mix_args a;
  args_make(ctx, &c, 1200, &a);
  seqmix_tensor **t = a.t;
  seqmix_selective_scan_params sp = {0};
  th_fails(seqmix_selective_scan(ctx, NULL, t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], &sp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "u");
  th_fails(seqmix_selective_scan(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[0], &sp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "y");
  const int64_t a16[] = {24, 16}, g5[] = {2, 37, 5, 16}, st_bad[] = {2, 24, 15};
  seqmix_tensor *A16 = th_tensor(ctx, SEQMIX_F16, 2, a16, NULL);
  th_fails(seqmix_selective_scan(ctx, t[0], t[1], A16, t[3], t[4], t[5], t[6], t[7], t[8], t[9], &sp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "A");
  seqmix_tensor *B5 = th_tensor(ctx, SEQMIX_F32, 4, g5, NULL);
  th_fails(seqmix_selective_scan(ctx, t[0], t[1], t[2], B5, B5, t[5], t[6], t[7], t[8], t[9], &sp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "multiple of the groups");
  seqmix_tensor *sbad = th_tensor(ctx, SEQMIX_F32, 3, st_bad, NULL);
  th_fails(seqmix_selective_scan(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], sbad, t[9], &sp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "state");
  seqmix_tensor_destroy(A16), seqmix_tensor_destroy(B5), seqmix_tensor_destroy(sbad);
  args_free(&a);

  c = small_case(OP_SSD, OPT_ALL);
  args_make(ctx, &c, 1201, &a);
  seqmix_ssd_params dp = {.chunk_size = 300};
  th_fails(seqmix_ssd(ctx, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], &dp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "chunk_size");
  dp.chunk_size = 0;
  th_fails(seqmix_ssd(ctx, t[0], t[0], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], &dp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "dt");
  args_free(&a);

  c = small_case(OP_LA, OPT_STATE);
  args_make(ctx, &c, 1202, &a);
  seqmix_linear_attention_params lp = {.decay = SEQMIX_DECAY_NONE};
  th_fails(seqmix_linear_attention(ctx, t[0], t[1], t[2], t[3], t[4], t[5], &lp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "SEQMIX_DECAY_NONE");
  lp.decay = SEQMIX_DECAY_VECTOR;
  th_fails(seqmix_linear_attention(ctx, t[0], t[1], t[2], NULL, t[4], t[5], &lp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "g");
  lp.decay = SEQMIX_DECAY_TOKEN;
  lp.scale = INFINITY;
  th_fails(seqmix_linear_attention(ctx, t[0], t[1], t[2], t[3], t[4], t[5], &lp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "scale");
  lp.scale = 0;
  th_fails(seqmix_linear_attention(ctx, t[0], t[1], t[2], t[3], t[4], t[2], &lp),
           SEQMIX_ERROR_INVALID_ARGUMENT, "out");
  args_free(&a);
  /* Still usable. */
  check_case(ctx, _i, small_case(OP_LA, OPT_STATE), 1203);
  th_context_done(ctx);
}
END_TEST

/* Every candidate of the knobs that time SSD and linear attention gives the
 * reference's answer (the chunk is a knob): tuning may only change speed. */
START_TEST(every_tuning_candidate_matches_reference) {
  seqmix_context *ctx = th_context(_i);
  th_knob_iter it = {0};
  while (th_next_tuning_candidate(ctx, "ssd", &it)) {
    check_case(ctx, _i, mk(OP_SSD, 1, 300, 4, 16, 32, 1, OPT_ALL, 0, 0), 700 + it.salt);
    check_case(ctx, _i, mk(OP_LA, 1, 300, 2, 32, 16, 1, OPT_STATE, SEQMIX_DECAY_VECTOR, 0),
               800 + it.salt);
  }
  th_context_done(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ssm");
  TCase *tc = tcase_create("every device");
  int n = th_device_count();
  tcase_add_loop_test(tc, each_option_alone_and_together, 0, n);
  tcase_add_loop_test(tc, linear_attention_every_decay_kind, 0, n);
  tcase_add_loop_test(tc, lengths_and_state_sizes, 0, n);
  tcase_add_loop_test(tc, chunk_sizes_that_do_not_divide_the_length, 0, n);
  tcase_add_loop_test(tc, groups_share_B_and_C, 0, n);
  tcase_add_loop_test(tc, decode_one_token_with_state, 0, n);
  tcase_add_loop_test(tc, strong_decays_stay_finite, 0, n);
  tcase_add_loop_test(tc, weak_decays_after_strong_ones_keep_precision, 0, n);
  tcase_add_loop_test(tc, f16_and_bf16_storage_within_tolerance, 0, n);
  tcase_add_loop_test(tc, strided_views_work_without_copies, 0, n);
  tcase_add_loop_test(tc, sequence_in_pieces_equals_one_call, 0, n);
  tcase_add_loop_test(tc, mixers_run_on_the_device_not_the_fallback, 0, n);
  tcase_add_loop_test(tc, bad_arguments_are_refused_with_a_clear_message, 0, n);
  tcase_add_loop_test(tc, every_tuning_candidate_matches_reference, 0, n);
  suite_add_tcase(s, tc);
  return th_run_suite(s);
}
