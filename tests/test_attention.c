/* seqmix_attention and seqmix_attention_merge on every device against the
 * float64 reference. */
#include "helpers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct attn_case {
  int64_t B, Lq, Lk, Hq, Hk, D, Dv;
  bool causal;
  int32_t window;
  float softcap, scale;
  bool sigmoid, with_lse;
  seqmix_dtype dtype;
  const int32_t *seqlens_q, *seqlens_k; /* varlen: B lengths each */
  const int32_t *used_k;                /* seqused_k: B values */
  bool packed_qkv;                      /* q, k, v as views of one [B, L, Hq+2Hk, D] buffer */
} attn_case;

static void check_attention(seqmix_context *ctx, int device, attn_case c, uint64_t salt) {
  th_rng rng = th_rng_make(salt);
  const bool varlen = c.seqlens_q != NULL;
  int32_t cu_q[65] = {0}, cu_k[65] = {0};
  int64_t B = c.B, Lq = c.Lq, Lk = c.Lk;
  if (varlen) {
    for (int64_t b = 0; b < c.B; ++b) {
      cu_q[b + 1] = cu_q[b] + c.seqlens_q[b];
      cu_k[b + 1] = cu_k[b] + c.seqlens_k[b];
    }
    B = 1, Lq = cu_q[c.B], Lk = cu_k[c.B];
  }
  const size_t nq = (size_t)(B * Lq * c.Hq * c.D), nk = (size_t)(B * Lk * c.Hk * c.D),
               nv = (size_t)(B * Lk * c.Hk * c.Dv), no = (size_t)(B * Lq * c.Hq * c.Dv),
               nl = (size_t)(B * c.Hq * Lq);
  float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4);
  th_fill(&rng, q, nq, -1, 1);
  th_fill(&rng, k, nk, -1, 1);
  th_fill(&rng, v, nv, -1, 1);
  const int64_t qs[] = {B, Lq, c.Hq, c.D}, ks[] = {B, Lk, c.Hk, c.D}, vs[] = {B, Lk, c.Hk, c.Dv},
                os[] = {B, Lq, c.Hq, c.Dv}, ls[] = {B, c.Hq, Lq};
  seqmix_tensor *tq, *tk, *tv, *packed = NULL;
  if (c.packed_qkv) {
    /* One [B, L, Hq + 2 Hk, D] buffer, the way engines project QKV (D == Dv, Lq == Lk). */
    const int64_t H = c.Hq + 2 * c.Hk, ps[] = {B, Lq, H, c.D};
    packed = th_tensor(ctx, c.dtype, 4, ps, NULL);
    const int64_t st[] = {Lq * H * c.D, H * c.D, c.D, 1};
    th_ok(seqmix_tensor_view(packed, 4, qs, st, 0, &tq));
    th_ok(seqmix_tensor_view(packed, 4, ks, st, c.Hq * c.D, &tk));
    th_ok(seqmix_tensor_view(packed, 4, vs, st, (c.Hq + c.Hk) * c.D, &tv));
    th_ok(seqmix_tensor_write_f32(tq, q, nq));
    th_ok(seqmix_tensor_read_f32(tq, q, nq));
    th_ok(seqmix_tensor_write_f32(tk, k, nk));
    th_ok(seqmix_tensor_read_f32(tk, k, nk));
    th_ok(seqmix_tensor_write_f32(tv, v, nv));
    th_ok(seqmix_tensor_read_f32(tv, v, nv));
  } else {
    tq = th_tensor(ctx, c.dtype, 4, qs, q);
    tk = th_tensor(ctx, c.dtype, 4, ks, k);
    tv = th_tensor(ctx, c.dtype, 4, vs, v);
  }
  seqmix_tensor *to = th_tensor(ctx, c.dtype, 4, os, NULL);
  seqmix_tensor *tl = c.with_lse ? th_tensor(ctx, SEQMIX_F32, 3, ls, NULL) : NULL;
  seqmix_tensor *tcq = NULL, *tck = NULL, *tu = NULL;
  const int64_t cs[] = {c.B + 1}, us[] = {c.B};
  if (varlen) {
    th_ok(seqmix_tensor_create(ctx, SEQMIX_I32, 1, cs, &tcq));
    th_ok(seqmix_tensor_create(ctx, SEQMIX_I32, 1, cs, &tck));
    th_ok(seqmix_tensor_write(tcq, cu_q, (size_t)(c.B + 1) * 4));
    th_ok(seqmix_tensor_write(tck, cu_k, (size_t)(c.B + 1) * 4));
  }
  if (c.used_k) {
    th_ok(seqmix_tensor_create(ctx, SEQMIX_I32, 1, us, &tu));
    th_ok(seqmix_tensor_write(tu, c.used_k, (size_t)c.B * 4));
  }
  seqmix_attention_params p = {.scale = c.scale,
                               .causal = c.causal,
                               .window = c.window,
                               .softcap = c.softcap,
                               .score = c.sigmoid ? SEQMIX_SCORE_SIGMOID : SEQMIX_SCORE_SOFTMAX,
                               .sigmoid_bias = c.sigmoid ? -1.5f : 0.0f,
                               .cu_seqlens_q = tcq,
                               .cu_seqlens_k = tck,
                               .seqused_k = tu};
  th_ok(seqmix_attention(ctx, tq, tk, tv, to, tl, &p));

  double *rq = th_to_double(q, nq), *rk = th_to_double(k, nk), *rv = th_to_double(v, nv);
  double *ro = malloc(no * 8), *rl = malloc((nl ? nl : 1) * 8);
  seqmix_reference_attention_shape shape = {
      varlen ? c.B : B,     Lq,      Lk, c.Hq, c.Hk, c.D, c.Dv, varlen ? cu_q : NULL,
      varlen ? cu_k : NULL, c.used_k};
  th_ok(seqmix_reference_attention(&shape, rq, rk, rv, ro, rl, &p));
  float *o = th_read(to);
  double err = th_rel_l2(o, ro, no), tol = th_tolerance(c.dtype);
  ck_assert_msg(
      err <= tol,
      "%s: out rel err %.3g > %.1g (B%lld Lq%lld Lk%lld Hq%lld Hk%lld D%lld Dv%lld causal%d "
      "window%d softcap%g sigmoid%d varlen%d %s, seed %llu)",
      th_device_id(device), err, tol, (long long)c.B, (long long)c.Lq, (long long)c.Lk,
      (long long)c.Hq, (long long)c.Hk, (long long)c.D, (long long)c.Dv, c.causal, c.window,
      c.softcap, c.sigmoid, varlen, seqmix_dtype_name(c.dtype), (unsigned long long)th_seed());
  if (tl) {
    float *l = th_read(tl);
    for (size_t i = 0; i < nl; ++i) {
      bool both_inf = isinf(rl[i]) && isinf(l[i]) && l[i] < 0;
      ck_assert_msg(both_inf || fabs(l[i] - rl[i]) <=
                                    1e-4 * (1 + fabs(rl[i])) * (c.dtype == SEQMIX_F32 ? 1 : 30),
                    "%s: lse[%zu] = %g, reference %g (seed %llu)", th_device_id(device), i, l[i],
                    rl[i], (unsigned long long)th_seed());
    }
    free(l);
  }
  free(o), free(rq), free(rk), free(rv), free(ro), free(rl), free(q), free(k), free(v);
  seqmix_tensor *all[] = {tq, tk, tv, to, tl, tcq, tck, tu, packed};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
    seqmix_tensor_destroy(all[i]);
}

#define CASE(...) ((attn_case){__VA_ARGS__, .dtype = SEQMIX_F32})

START_TEST(attention_odd_lengths_match_reference) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t lens[] = {1, 2, 7, 63, 65, 129, 1000};
  for (int a = 0; a < 7; ++a)
    for (int b = 0; b < 7; b += 2) {
      attn_case c = CASE(.B = 1, .Lq = lens[a], .Lk = lens[b], .Hq = 2, .Hk = 1, .D = 32, .Dv = 32,
                         .with_lse = true);
      check_attention(ctx, _i, c, (uint64_t)(a * 10 + b));
      c.causal = true;
      check_attention(ctx, _i, c, (uint64_t)(a * 10 + b + 100));
    }
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_causal_fewer_queries_than_keys_aligns_bottom_right) {
  seqmix_context *ctx = th_context(_i);
  attn_case c = CASE(.B = 2, .Lq = 5, .Lk = 40, .Hq = 4, .Hk = 4, .D = 64, .Dv = 64, .causal = true,
                     .with_lse = true);
  check_attention(ctx, _i, c, 1);
  c.Lq = 1; /* decode */
  check_attention(ctx, _i, c, 2);
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_more_queries_than_keys_masks_whole_rows) {
  seqmix_context *ctx = th_context(_i);
  /* Causal with Lq > Lk: the first Lq - Lk rows see no key: zeros and lse = -inf. */
  attn_case c = CASE(.B = 1, .Lq = 20, .Lk = 6, .Hq = 2, .Hk = 2, .D = 16, .Dv = 16, .causal = true,
                     .with_lse = true);
  check_attention(ctx, _i, c, 3);
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_gqa_ratios_and_head_dims) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t ratios[][2] = {{1, 1}, {2, 1}, {4, 1}, {8, 2}, {32, 4}};
  static const int64_t dims[][2] = {{32, 32},   {64, 64},   {80, 80}, {96, 96},
                                    {128, 128}, {256, 256}, {64, 32}, {40, 72}};
  for (int r = 0; r < 5; ++r) {
    attn_case c = CASE(.B = 1, .Lq = 9, .Lk = 33, .Hq = ratios[r][0], .Hk = ratios[r][1], .D = 64,
                       .Dv = 64, .causal = true, .with_lse = true);
    check_attention(ctx, _i, c, 10 + (uint64_t)r);
  }
  for (int d = 0; d < 8; ++d) {
    attn_case c = CASE(.B = 2, .Lq = 17, .Lk = 17, .Hq = 2, .Hk = 1, .D = dims[d][0],
                       .Dv = dims[d][1], .causal = true, .with_lse = true);
    check_attention(ctx, _i, c, 20 + (uint64_t)d);
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_window_softcap_scale_and_sigmoid) {
  seqmix_context *ctx = th_context(_i);
  attn_case c = CASE(.B = 1, .Lq = 100, .Lk = 100, .Hq = 4, .Hk = 2, .D = 64, .Dv = 64,
                     .causal = true, .window = 16, .with_lse = true);
  check_attention(ctx, _i, c, 30);
  c.softcap = 5.0f, c.scale = 0.3f;
  check_attention(ctx, _i, c, 31);
  c.window = 0;
  check_attention(ctx, _i, c, 32);
  attn_case s =
      CASE(.B = 2, .Lq = 31, .Lk = 70, .Hq = 2, .Hk = 1, .D = 32, .Dv = 48, .sigmoid = true);
  check_attention(ctx, _i, s, 33);
  s.causal = true, s.window = 9, s.softcap = 2.0f;
  check_attention(ctx, _i, s, 34);
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_varlen_and_seqused_k) {
  seqmix_context *ctx = th_context(_i);
  static const int32_t lq[] = {17, 1, 64, 3}, lk[] = {17, 30, 64, 200}, used[] = {10, 30, 1, 0};
  attn_case c = CASE(.B = 4, .Hq = 4, .Hk = 2, .D = 64, .Dv = 64, .causal = true, .with_lse = true,
                     .seqlens_q = lq, .seqlens_k = lk);
  check_attention(ctx, _i, c, 40);
  c.used_k = used; /* seqused_k 0: a sequence with no keys */
  check_attention(ctx, _i, c, 41);
  attn_case d = CASE(.B = 3, .Lq = 4, .Lk = 50, .Hq = 2, .Hk = 2, .D = 32, .Dv = 32, .causal = true,
                     .with_lse = true, .used_k = used);
  check_attention(ctx, _i, d, 42);
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_packed_qkv_views_and_low_precision) {
  seqmix_context *ctx = th_context(_i);
  attn_case c = CASE(.B = 2, .Lq = 37, .Lk = 37, .Hq = 4, .Hk = 2, .D = 64, .Dv = 64,
                     .causal = true, .with_lse = true, .packed_qkv = true);
  check_attention(ctx, _i, c, 50);
  c.dtype = SEQMIX_F16;
  check_attention(ctx, _i, c, 51);
  c.dtype = SEQMIX_BF16, c.packed_qkv = false;
  check_attention(ctx, _i, c, 52);
  c.dtype = SEQMIX_F16, c.Lq = 1, c.Lk = 700;
  check_attention(ctx, _i, c, 53);
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_long_sequence_does_not_overflow) {
  seqmix_context *ctx = th_context(_i);
  attn_case c = CASE(.B = 1, .Lq = 4096, .Lk = 4096, .Hq = 1, .Hk = 1, .D = 64, .Dv = 64,
                     .causal = true, .with_lse = true);
  check_attention(ctx, _i, c, 60);
  attn_case d = CASE(.B = 1, .Lq = 1, .Lk = 16384, .Hq = 8, .Hk = 2, .D = 128, .Dv = 128,
                     .causal = true, .with_lse = true);
  check_attention(ctx, _i, d, 61);
  th_context_done(ctx);
}
END_TEST

/* Splitting the keys in n parts and merging equals attention over all keys. */
START_TEST(attention_merge_of_partials_equals_full_result) {
  seqmix_context *ctx = th_context(_i);
  const int64_t B = 2, Lq = 3, Lk = 90, H = 4, D = 32;
  th_rng rng = th_rng_make(70);
  float *q = malloc(B * Lq * H * D * 4), *k = malloc(B * Lk * H * D * 4),
        *v = malloc(B * Lk * H * D * 4);
  th_fill(&rng, q, B * Lq * H * D, -1, 1);
  th_fill(&rng, k, B * Lk * H * D, -1, 1);
  th_fill(&rng, v, B * Lk * H * D, -1, 1);
  const int64_t qs[] = {B, Lq, H, D}, ks[] = {B, Lk, H, D}, ls[] = {B, H, Lq};
  seqmix_tensor *tq = th_tensor(ctx, SEQMIX_F32, 4, qs, q),
                *tk = th_tensor(ctx, SEQMIX_F32, 4, ks, k);
  seqmix_tensor *tv = th_tensor(ctx, SEQMIX_F32, 4, ks, v);
  seqmix_tensor *full = th_tensor(ctx, SEQMIX_F32, 4, qs, NULL),
                *full_lse = th_tensor(ctx, SEQMIX_F32, 3, ls, NULL);
  th_ok(seqmix_attention(ctx, tq, tk, tv, full, full_lse, NULL));
  float *want = th_read(full), *want_lse = th_read(full_lse);
  for (int n = 2; n <= 4; ++n) {
    seqmix_tensor *outs[4], *lses[4], *kv[8];
    for (int i = 0; i < n; ++i) {
      int64_t k0 = Lk * i / n, k1 = Lk * (i + 1) / n;
      const int64_t part[] = {B, k1 - k0, H, D}, st[] = {Lk * H * D, H * D, D, 1};
      th_ok(seqmix_tensor_view(tk, 4, part, st, k0 * H * D, &kv[2 * i]));
      th_ok(seqmix_tensor_view(tv, 4, part, st, k0 * H * D, &kv[2 * i + 1]));
      outs[i] = th_tensor(ctx, SEQMIX_F32, 4, qs, NULL);
      lses[i] = th_tensor(ctx, SEQMIX_F32, 3, ls, NULL);
      th_ok(seqmix_attention(ctx, tq, kv[2 * i], kv[2 * i + 1], outs[i], lses[i], NULL));
    }
    seqmix_tensor *merged = th_tensor(ctx, SEQMIX_F32, 4, qs, NULL),
                  *merged_lse = th_tensor(ctx, SEQMIX_F32, 3, ls, NULL);
    th_ok(seqmix_attention_merge(ctx, n, (const seqmix_tensor *const *)outs,
                                 (const seqmix_tensor *const *)lses, merged, merged_lse));
    float *got = th_read(merged), *got_lse = th_read(merged_lse);
    double *ref = th_to_double(want, (size_t)(B * Lq * H * D)),
           *ref_lse = th_to_double(want_lse, (size_t)(B * H * Lq));
    ck_assert_msg(th_rel_l2(got, ref, (size_t)(B * Lq * H * D)) <= 1e-5, "%s: merge of %d differs",
                  th_device_id(_i), n);
    ck_assert_msg(th_rel_l2(got_lse, ref_lse, (size_t)(B * H * Lq)) <= 1e-5,
                  "%s: merged lse of %d differs", th_device_id(_i), n);
    free(got), free(got_lse), free(ref), free(ref_lse);
    for (int i = 0; i < n; ++i) {
      seqmix_tensor_destroy(outs[i]), seqmix_tensor_destroy(lses[i]);
      seqmix_tensor_destroy(kv[2 * i]), seqmix_tensor_destroy(kv[2 * i + 1]);
    }
    seqmix_tensor_destroy(merged), seqmix_tensor_destroy(merged_lse);
  }
  free(want), free(want_lse), free(q), free(k), free(v);
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_bad_arguments_name_the_argument) {
  seqmix_context *ctx = th_context(_i);
  const int64_t qs[] = {1, 4, 6, 8}, ks[] = {1, 5, 4, 8}, os[] = {1, 4, 6, 8}, ls[] = {1, 6, 4};
  seqmix_tensor *q = th_tensor(ctx, SEQMIX_F32, 4, qs, NULL),
                *k = th_tensor(ctx, SEQMIX_F32, 4, ks, NULL);
  seqmix_tensor *v = th_tensor(ctx, SEQMIX_F32, 4, ks, NULL),
                *o = th_tensor(ctx, SEQMIX_F32, 4, os, NULL);
  seqmix_tensor *l = th_tensor(ctx, SEQMIX_F32, 3, ls, NULL);
  const seqmix_status INVALID = SEQMIX_ERROR_INVALID_ARGUMENT;
  th_fails(seqmix_attention(ctx, q, k, v, o, NULL, NULL), INVALID,
           "k has 4 heads but q has 6; q heads must be a multiple of k heads");
  th_fails(seqmix_attention(ctx, NULL, k, v, o, NULL, NULL), INVALID, "q is NULL");
  seqmix_attention_params p = {.window = 4};
  const int64_t ks2[] = {1, 5, 3, 8};
  seqmix_tensor *k3 = th_tensor(ctx, SEQMIX_F32, 4, ks2, NULL),
                *v3 = th_tensor(ctx, SEQMIX_F32, 4, ks2, NULL);
  th_fails(seqmix_attention(ctx, q, k3, v3, o, NULL, &p), INVALID, "window");
  p = (seqmix_attention_params){.score = SEQMIX_SCORE_SIGMOID};
  th_fails(seqmix_attention(ctx, q, k3, v3, o, l, &p), INVALID, "lse exists for softmax only");
  p = (seqmix_attention_params){.softcap = -1};
  th_fails(seqmix_attention(ctx, q, k3, v3, o, NULL, &p), INVALID, "softcap");
  const int64_t big[] = {1, 4, 6, 300};
  seqmix_tensor *qb = th_tensor(ctx, SEQMIX_F32, 4, big, NULL);
  th_fails(seqmix_attention(ctx, qb, k3, v3, o, NULL, NULL), INVALID, "k has shape");
  seqmix_tensor *cu = NULL;
  const int64_t cs[] = {2};
  th_ok(seqmix_tensor_create(ctx, SEQMIX_I32, 1, cs, &cu));
  const int32_t bad_cu[] = {0, 3};
  th_ok(seqmix_tensor_write(cu, bad_cu, 8));
  p = (seqmix_attention_params){.cu_seqlens_q = cu, .cu_seqlens_k = cu};
  th_fails(seqmix_attention(ctx, q, k3, v3, o, NULL, &p), INVALID, "cu_seqlens_q ends at 3");
  p = (seqmix_attention_params){.cu_seqlens_q = cu};
  th_fails(seqmix_attention(ctx, q, k3, v3, o, NULL, &p), INVALID, "go together");
  const seqmix_tensor *parts[] = {o};
  th_fails(seqmix_attention_merge(ctx, 0, parts, parts, o, NULL), INVALID, "n is 0");
  th_fails(seqmix_attention_merge(ctx, 1, parts, (const seqmix_tensor *const *)&l, o, NULL),
           INVALID, "out overlaps outs[0]");
  th_context_done(ctx);
}
END_TEST

START_TEST(attention_and_merge_run_on_the_device_not_the_fallback) {
  seqmix_context *ctx = th_context(_i);
  attn_case c = CASE(.B = 1, .Lq = 33, .Lk = 70, .Hq = 4, .Hk = 2, .D = 64, .Dv = 64,
                     .causal = true, .with_lse = true);
  check_attention(ctx, _i, c, 80);
  c.Lq = 1, c.Lk = 3000; /* decode: split keys and the merge kernel */
  check_attention(ctx, _i, c, 81);
  c.dtype = SEQMIX_F16, c.Lq = 17, c.Lk = 17;
  check_attention(ctx, _i, c, 82);
  seqmix_context_stats stats;
  th_ok(seqmix_context_stats_get(ctx, &stats));
  ck_assert_msg(stats.ops_on_fallback == 0, "%s: %llu attention calls ran on the CPU fallback",
                th_device_id(_i), (unsigned long long)stats.ops_on_fallback);
  th_context_done(ctx);
}
END_TEST

/* OpenCL runs few-row calls (decode) on GPUs with a key-parallel kernel; force
 * it here so software devices check it too (other backends ignore the knob). */
START_TEST(attention_key_parallel_kernel_for_few_rows) {
  setenv("SEQMIX_OPENCL_ATTENTION", "keys", 1);
  seqmix_context *ctx = th_context(_i);
  attn_case c = CASE(.B = 1, .Lq = 1, .Lk = 1000, .Hq = 8, .Hk = 2, .D = 128, .Dv = 128,
                     .causal = true, .with_lse = true); /* key splits and the combine */
  check_attention(ctx, _i, c, 90);
  c = CASE(.B = 2, .Lq = 3, .Lk = 50, .Hq = 4, .Hk = 1, .D = 64, .Dv = 64, .causal = true,
           .window = 8, .softcap = 4.0f, .with_lse = true); /* 12 rows of 16 */
  check_attention(ctx, _i, c, 91);
  c = CASE(.B = 1, .Lq = 2, .Lk = 300, .Hq = 2, .Hk = 1, .D = 32, .Dv = 48, .causal = true,
           .sigmoid = true);
  check_attention(ctx, _i, c, 92);
  c = CASE(.B = 1, .Lq = 1, .Lk = 129, .Hq = 2, .Hk = 2, .D = 256, .Dv = 200, .with_lse = true);
  c.dtype = SEQMIX_F16; /* columns past one work-group */
  check_attention(ctx, _i, c, 93);
  static const int32_t lq[] = {1, 2, 1}, lk[] = {5, 300, 1}, used[] = {5, 260, 0};
  c = CASE(.B = 3, .Hq = 4, .Hk = 2, .D = 64, .Dv = 64, .causal = true, .with_lse = true,
           .seqlens_q = lq, .seqlens_k = lk, .used_k = used);
  check_attention(ctx, _i, c, 94);
  c = CASE(.B = 1, .Lq = 1, .Lk = 65, .Hq = 8, .Hk = 1, .D = 80, .Dv = 80, .causal = true);
  c.dtype = SEQMIX_BF16; /* MQA */
  check_attention(ctx, _i, c, 95);
  c = CASE(.B = 2, .Lq = 2, .Lk = 1, .Hq = 2, .Hk = 2, .D = 64, .Dv = 64, .causal = true,
           .with_lse = true); /* the first row sees no key */
  check_attention(ctx, _i, c, 96);
  th_context_done(ctx);
  unsetenv("SEQMIX_OPENCL_ATTENTION");
}
END_TEST

/* Every candidate of every tuning knob that times attention gives the
 * reference's answer: tuning may only change speed. */
START_TEST(attention_every_tuning_candidate_matches_reference) {
  seqmix_context *ctx = th_context(_i);
  th_knob_iter it = {0};
  while (th_next_tuning_candidate(ctx, "attention", &it)) {
    attn_case decode = CASE(.B = 2, .Lq = 1, .Lk = 700, .Hq = 8, .Hk = 2, .D = 64, .Dv = 64,
                            .causal = true, .with_lse = true);
    attn_case prefill = CASE(.B = 1, .Lq = 300, .Lk = 300, .Hq = 4, .Hk = 2, .D = 32, .Dv = 32,
                             .causal = true, .with_lse = true);
    check_attention(ctx, _i, decode, 500 + it.salt);
    check_attention(ctx, _i, prefill, 600 + it.salt);
  }
  th_context_done(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("every device");
  int n = th_device_count();
  tcase_add_loop_test(tc, attention_odd_lengths_match_reference, 0, n);
  tcase_add_loop_test(tc, attention_causal_fewer_queries_than_keys_aligns_bottom_right, 0, n);
  tcase_add_loop_test(tc, attention_more_queries_than_keys_masks_whole_rows, 0, n);
  tcase_add_loop_test(tc, attention_gqa_ratios_and_head_dims, 0, n);
  tcase_add_loop_test(tc, attention_window_softcap_scale_and_sigmoid, 0, n);
  tcase_add_loop_test(tc, attention_varlen_and_seqused_k, 0, n);
  tcase_add_loop_test(tc, attention_packed_qkv_views_and_low_precision, 0, n);
  tcase_add_loop_test(tc, attention_long_sequence_does_not_overflow, 0, n);
  tcase_add_loop_test(tc, attention_merge_of_partials_equals_full_result, 0, n);
  tcase_add_loop_test(tc, attention_bad_arguments_name_the_argument, 0, n);
  tcase_add_loop_test(tc, attention_and_merge_run_on_the_device_not_the_fallback, 0, n);
  tcase_add_loop_test(tc, attention_key_parallel_kernel_for_few_rows, 0, n);
  tcase_add_loop_test(tc, attention_every_tuning_candidate_matches_reference, 0, n);
  suite_add_tcase(s, tc);
  return th_run_suite(s);
}
