/* seqmix_conv1d_causal on every device against the float64 reference. */
#include "helpers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_case {
  int64_t B, L, C, K;
  bool bias, state, silu;
  seqmix_dtype act, param;
  bool views; /* x, y and state are strided views into larger tensors */
} conv_case;

static seqmix_tensor *make(seqmix_context *ctx, const conv_case *c, seqmix_dtype dtype, int rank,
                           const int64_t *shape, float *data, seqmix_tensor **base) {
  static const int64_t pad[] = {1, 3, 5, 0};
  *base = NULL;
  if (c->views && rank == 3) return th_padded_view(ctx, dtype, rank, shape, pad, 7, data, base);
  return th_tensor(ctx, dtype, rank, shape, data);
}

/* Runs one case on ctx and checks y (and the final state) against the reference. */
static void check_case(seqmix_context *ctx, int device, conv_case c, uint64_t salt) {
  th_rng rng = th_rng_make(salt);
  const int64_t B = c.B, L = c.L, C = c.C, K = c.K, S = K - 1;
  const size_t nx = (size_t)(B * L * C), nw = (size_t)(C * K), ns = (size_t)(B * S * C);
  float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *bias = malloc(C * sizeof *bias);
  float *state = malloc((ns ? ns : 1) * sizeof *state);
  th_fill(&rng, x, nx, -2, 2);
  th_fill(&rng, w, nw, -1, 1);
  th_fill(&rng, bias, (size_t)C, -0.5f, 0.5f);
  th_fill(&rng, state, ns, -2, 2);

  seqmix_tensor *xb = NULL, *yb = NULL, *sb = NULL, *wb = NULL;
  const int64_t xs[] = {B, L, C}, ws[] = {C, K}, bs[] = {C}, ss[] = {B, S, C};
  seqmix_tensor *tx = make(ctx, &c, c.act, 3, xs, x, &xb);
  seqmix_tensor *tw = make(ctx, &c, c.param, 2, ws, w, &wb);
  seqmix_tensor *tb = c.bias ? th_tensor(ctx, c.param, 1, bs, bias) : NULL;
  seqmix_tensor *ts = c.state ? make(ctx, &c, SEQMIX_F32, 3, ss, state, &sb) : NULL;
  seqmix_tensor *ty = make(ctx, &c, c.act, 3, xs, NULL, &yb);
  seqmix_conv1d_params params = {.silu = c.silu};
  th_ok(seqmix_conv1d_causal(ctx, tx, tw, tb, ts, ty, &params));

  double *rx = th_to_double(x, nx), *rw = th_to_double(w, nw), *rb = th_to_double(bias, C);
  double *rs = th_to_double(state, ns), *ry = malloc(nx * sizeof *ry);
  th_ok(seqmix_reference_conv1d_causal(B, L, C, K, rx, rw, c.bias ? rb : NULL,
                                       c.state ? rs : NULL, ry, &params));
  float *y = th_read(ty);
  double err = th_rel_l2(y, ry, nx), tol = th_tolerance(c.act);
  ck_assert_msg(err <= tol,
                "%s: y rel err %.3g > %.1g (B%lld L%lld C%lld K%lld %s/%s bias%d state%d silu%d "
                "views%d, seed %llu)",
                th_device_id(device), err, tol, (long long)B, (long long)L, (long long)C,
                (long long)K, seqmix_dtype_name(c.act), seqmix_dtype_name(c.param), c.bias,
                c.state, c.silu, c.views, (unsigned long long)th_seed());
  if (c.state) {
    float *s = th_read(ts);
    /* The state holds inputs as stored: exact up to the f32 conversion. */
    double serr = th_rel_l2(s, rs, ns);
    ck_assert_msg(serr <= 1e-6, "%s: state rel err %.3g (B%lld L%lld C%lld K%lld, seed %llu)",
                  th_device_id(device), serr, (long long)B, (long long)L, (long long)C,
                  (long long)K, (unsigned long long)th_seed());
    free(s);
  }
  free(y);
  free(rx), free(rw), free(rb), free(rs), free(ry);
  free(x), free(w), free(bias), free(state);
  seqmix_tensor *all[] = {tx, tw, tb, ts, ty, xb, yb, sb, wb};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
    if (all[i]) seqmix_tensor_destroy(all[i]);
}

/* Odd sizes: 1, primes, sizes that are no multiple of any tile or vector width. */
START_TEST(conv1d_matches_reference_on_odd_shapes) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t shapes[][4] = {{1, 1, 1, 1},   {1, 7, 3, 4},   {2, 13, 17, 4},
                                      {3, 64, 33, 2}, {1, 129, 1537, 4}, {2, 31, 64, 5},
                                      {1, 5, 9, 7},   {1, 1000, 40, 3}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
    const int64_t *s = shapes[i];
    for (int variant = 0; variant < 4; ++variant) {
      conv_case c = {s[0], s[1], s[2], s[3], variant & 1, (variant & 2) && s[3] > 1, variant == 1,
                     SEQMIX_F32, SEQMIX_F32, false};
      check_case(ctx, _i, c, i * 16 + (uint64_t)variant);
    }
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(conv1d_decode_with_one_token_uses_and_updates_state) {
  seqmix_context *ctx = th_context(_i);
  conv_case c = {4, 1, 1536, 4, true, true, true, SEQMIX_F32, SEQMIX_F32, false};
  check_case(ctx, _i, c, 101);
  c.B = 3, c.C = 5, c.K = 2;
  check_case(ctx, _i, c, 102);
  th_context_done(ctx);
}
END_TEST

START_TEST(conv1d_fewer_tokens_than_state_shifts_old_state) {
  seqmix_context *ctx = th_context(_i);
  for (int64_t L = 1; L <= 4; ++L) {
    conv_case c = {2, L, 19, 6, true, true, false, SEQMIX_F32, SEQMIX_F32, false};
    check_case(ctx, _i, c, 200 + (uint64_t)L);
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(conv1d_strided_views_work_without_copies) {
  seqmix_context *ctx = th_context(_i);
  conv_case c = {2, 37, 23, 4, true, true, true, SEQMIX_F32, SEQMIX_F32, true};
  check_case(ctx, _i, c, 301);
  c.act = SEQMIX_F16;
  check_case(ctx, _i, c, 302);
  th_context_done(ctx);
}
END_TEST

START_TEST(conv1d_f16_and_bf16_storage_within_tolerance) {
  seqmix_context *ctx = th_context(_i);
  static const seqmix_dtype acts[] = {SEQMIX_F16, SEQMIX_BF16};
  for (int a = 0; a < 2; ++a)
    for (int same = 0; same < 2; ++same) {
      seqmix_dtype param = same ? acts[a] : SEQMIX_F32;
      conv_case c = {2, 45, 67, 4, true, true, true, acts[a], param, false};
      check_case(ctx, _i, c, 400 + (uint64_t)(a * 2 + same));
      conv_case d = {1, 1, 1536, 4, true, true, false, acts[a], param, false};
      check_case(ctx, _i, d, 410 + (uint64_t)(a * 2 + same));
    }
  th_context_done(ctx);
}
END_TEST

/* Feeding a sequence in pieces through the state equals one call. */
START_TEST(conv1d_sequence_in_pieces_equals_one_call) {
  seqmix_context *ctx = th_context(_i);
  const int64_t B = 2, L = 23, C = 29, K = 4, S = K - 1;
  th_rng rng = th_rng_make(500);
  float x[B * L * C], w[C * K], bias[C];
  th_fill(&rng, x, sizeof x / 4, -1, 1);
  th_fill(&rng, w, sizeof w / 4, -1, 1);
  th_fill(&rng, bias, C, -1, 1);
  const int64_t ws[] = {C, K}, bs[] = {C}, ss[] = {B, S, C}, full[] = {B, L, C};
  seqmix_tensor *tw = th_tensor(ctx, SEQMIX_F32, 2, ws, w), *tb = th_tensor(ctx, SEQMIX_F32, 1, bs, bias);
  seqmix_tensor *tx = th_tensor(ctx, SEQMIX_F32, 3, full, x), *ty = th_tensor(ctx, SEQMIX_F32, 3, full, NULL);
  float zeros[B * S * C];
  memset(zeros, 0, sizeof zeros);
  seqmix_tensor *ts = th_tensor(ctx, SEQMIX_F32, 3, ss, zeros);
  seqmix_conv1d_params p = {.silu = true};
  th_ok(seqmix_conv1d_causal(ctx, tx, tw, tb, ts, ty, &p));
  float *whole = th_read(ty), *whole_state = th_read(ts);

  static const int64_t cuts[][4] = {{0, 1, 23, 23}, {0, 10, 23, 23}, {0, 2, 3, 23}};
  for (int k = 0; k < 3; ++k) {
    th_ok(seqmix_tensor_write_f32(ts, zeros, B * S * C));
    for (int piece = 0; piece < 3; ++piece) {
      int64_t t0 = cuts[k][piece], t1 = cuts[k][piece + 1];
      if (t1 <= t0) continue;
      const int64_t shape[] = {B, t1 - t0, C}, strides[] = {L * C, C, 1};
      seqmix_tensor *vx, *vy;
      th_ok(seqmix_tensor_view(tx, 3, shape, strides, t0 * C, &vx));
      th_ok(seqmix_tensor_view(ty, 3, shape, strides, t0 * C, &vy));
      th_ok(seqmix_conv1d_causal(ctx, vx, tw, tb, ts, vy, &p));
      seqmix_tensor_destroy(vx);
      seqmix_tensor_destroy(vy);
    }
    float *pieces = th_read(ty), *state = th_read(ts);
    for (size_t i = 0; i < (size_t)(B * L * C); ++i)
      ck_assert_msg(fabsf(pieces[i] - whole[i]) <= 1e-5f * (1 + fabsf(whole[i])),
                    "%s: split %d differs at %zu: %g vs %g", th_device_id(_i), k, i, pieces[i],
                    whole[i]);
    for (size_t i = 0; i < (size_t)(B * S * C); ++i)
      ck_assert_msg(state[i] == whole_state[i], "%s: split %d state differs at %zu",
                    th_device_id(_i), k, i);
    free(pieces);
    free(state);
  }
  free(whole);
  free(whole_state);
  th_context_done(ctx);
}
END_TEST

START_TEST(conv1d_runs_on_the_device_not_the_fallback) {
  seqmix_context *ctx = th_context(_i);
  conv_case c = {1, 9, 8, 3, true, true, false, SEQMIX_F32, SEQMIX_F32, false};
  check_case(ctx, _i, c, 600);
  seqmix_context_stats stats;
  th_ok(seqmix_context_stats_get(ctx, &stats));
  ck_assert_msg(stats.ops_on_device == 1 && stats.ops_on_fallback == 0,
                "%s: f32 conv1d ran on the fallback (device %llu, fallback %llu)", th_device_id(_i),
                (unsigned long long)stats.ops_on_device, (unsigned long long)stats.ops_on_fallback);
  th_context_done(ctx);
}
END_TEST

/* Tensors larger than one Vulkan storage-buffer binding (128 MiB on lavapipe). */
START_TEST(conv1d_tensors_past_128_mib_are_correct) {
  seqmix_context *ctx = th_context(_i);
  conv_case c = {1, 8200, 4100, 4, true, true, true, SEQMIX_F32, SEQMIX_F32, false};
  check_case(ctx, _i, c, 700);
  th_context_done(ctx);
}
END_TEST

/* Every candidate of the knobs that time conv1d gives the reference's answer. */
START_TEST(conv1d_every_tuning_candidate_matches_reference) {
  seqmix_context *ctx = th_context(_i);
  th_knob_iter it = {0};
  while (th_next_tuning_candidate(ctx, "conv1d", &it)) {
    conv_case prefill = {2, 300, 96, 4, true, true, true, SEQMIX_F32, SEQMIX_F32, false};
    conv_case decode = {3, 1, 1536, 4, true, true, true, SEQMIX_F32, SEQMIX_F32, false};
    check_case(ctx, _i, prefill, 900 + it.salt);
    check_case(ctx, _i, decode, 950 + it.salt);
  }
  th_context_done(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("conv1d");
  TCase *tc = tcase_create("every device");
  int n = th_device_count();
  tcase_add_loop_test(tc, conv1d_matches_reference_on_odd_shapes, 0, n);
  tcase_add_loop_test(tc, conv1d_decode_with_one_token_uses_and_updates_state, 0, n);
  tcase_add_loop_test(tc, conv1d_fewer_tokens_than_state_shifts_old_state, 0, n);
  tcase_add_loop_test(tc, conv1d_strided_views_work_without_copies, 0, n);
  tcase_add_loop_test(tc, conv1d_f16_and_bf16_storage_within_tolerance, 0, n);
  tcase_add_loop_test(tc, conv1d_sequence_in_pieces_equals_one_call, 0, n);
  tcase_add_loop_test(tc, conv1d_runs_on_the_device_not_the_fallback, 0, n);
  tcase_add_loop_test(tc, conv1d_tensors_past_128_mib_are_correct, 0, n);
  tcase_add_loop_test(tc, conv1d_every_tuning_candidate_matches_reference, 0, n);
  suite_add_tcase(s, tc);
  return th_run_suite(s);
}
