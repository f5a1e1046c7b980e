/* seqmix_conv2d_depthwise, seqmix_long_conv and seqmix_pool_mixer on every
 * device against the float64 reference. */
#include "helpers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void destroy_all(seqmix_tensor **all, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (all[i]) seqmix_tensor_destroy(all[i]);
}

/* A 4-D tensor, or (views) a strided view into a larger NaN-poisoned base. */
static seqmix_tensor *make4(seqmix_context *ctx, seqmix_dtype dtype, const int64_t *shape,
                            float *data, bool views, seqmix_tensor **base) {
  static const int64_t pad[] = {1, 2, 3, 5};
  *base = NULL;
  if (views) return th_padded_view(ctx, dtype, 4, shape, pad, 11, data, base);
  return th_tensor(ctx, dtype, 4, shape, data);
}

/* ---- Depthwise 2D convolution ------------------------------------------------------- */

typedef struct conv2d_case {
  int64_t B, H, W, C, KH, KW;
  int32_t stride, pad, dilation; /* both axes unless the _w fields are set */
  int32_t stride_w, pad_w, dilation_w;
  bool bias, views;
  seqmix_dtype act, param;
} conv2d_case;

static void check_conv2d(seqmix_context *ctx, int device, conv2d_case c, uint64_t salt) {
  th_rng rng = th_rng_make(salt);
  seqmix_conv2d_params p = {.stride_h = c.stride, .pad_h = c.pad, .dilation_h = c.dilation,
                            .stride_w = c.stride_w ? c.stride_w : c.stride,
                            .pad_w = c.pad_w >= 0 ? c.pad_w : c.pad,
                            .dilation_w = c.dilation_w ? c.dilation_w : c.dilation};
  const int64_t sh = p.stride_h ? p.stride_h : 1, sw = p.stride_w ? p.stride_w : 1;
  const int64_t dh = p.dilation_h ? p.dilation_h : 1, dw = p.dilation_w ? p.dilation_w : 1;
  const int64_t Ho = (c.H + 2 * p.pad_h - dh * (c.KH - 1) - 1) / sh + 1;
  const int64_t Wo = (c.W + 2 * p.pad_w - dw * (c.KW - 1) - 1) / sw + 1;
  ck_assert(Ho >= 1 && Wo >= 1);
  const size_t nx = (size_t)(c.B * c.H * c.W * c.C), nw = (size_t)(c.KH * c.KW * c.C);
  const size_t ny = (size_t)(c.B * Ho * Wo * c.C);
  float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w), *b = malloc(c.C * sizeof *b);
  th_fill(&rng, x, nx, -2, 2);
  th_fill(&rng, w, nw, -1, 1);
  th_fill(&rng, b, (size_t)c.C, -0.5f, 0.5f);
  const int64_t xs[] = {c.B, c.H, c.W, c.C}, ws[] = {c.KH, c.KW, c.C}, bs[] = {c.C};
  const int64_t ys[] = {c.B, Ho, Wo, c.C};
  seqmix_tensor *xb, *yb;
  seqmix_tensor *tx = make4(ctx, c.act, xs, x, c.views, &xb);
  seqmix_tensor *tw = th_tensor(ctx, c.param, 3, ws, w);
  seqmix_tensor *tb = c.bias ? th_tensor(ctx, c.param, 1, bs, b) : NULL;
  seqmix_tensor *ty = make4(ctx, c.act, ys, NULL, c.views, &yb);
  th_ok(seqmix_conv2d_depthwise(ctx, tx, tw, tb, ty, &p));

  double *rx = th_to_double(x, nx), *rw = th_to_double(w, nw), *rb = th_to_double(b, c.C);
  double *ry = malloc(ny * sizeof *ry);
  th_ok(seqmix_reference_conv2d_depthwise(c.B, c.H, c.W, c.C, c.KH, c.KW, rx, rw,
                                          c.bias ? rb : NULL, ry, &p));
  float *y = th_read(ty);
  double err = th_rel_l2(y, ry, ny), tol = th_tolerance(c.act);
  ck_assert_msg(err <= tol,
                "%s: conv2d rel err %.3g > %.1g (B%lld %lldx%lld C%lld k%lldx%lld stride %d,%d "
                "pad %d,%d dil %d,%d bias%d views%d %s/%s, seed %llu)",
                th_device_id(device), err, tol, (long long)c.B, (long long)c.H, (long long)c.W,
                (long long)c.C, (long long)c.KH, (long long)c.KW, p.stride_h, p.stride_w, p.pad_h,
                p.pad_w, p.dilation_h, p.dilation_w, c.bias, c.views, seqmix_dtype_name(c.act),
                seqmix_dtype_name(c.param), (unsigned long long)th_seed());
  free(y), free(rx), free(rw), free(rb), free(ry), free(x), free(w), free(b);
  seqmix_tensor *all[] = {tx, tw, tb, ty, xb, yb};
  destroy_all(all, sizeof all / sizeof all[0]);
}

static conv2d_case conv2d_f32(int64_t B, int64_t H, int64_t W, int64_t C, int64_t K, int32_t stride,
                              int32_t pad, int32_t dilation) {
  return (conv2d_case){B, H, W, C, K, K, stride, pad, dilation, 0, -1, 0, true, false,
                       SEQMIX_F32, SEQMIX_F32};
}

/* Kernel sizes 1..7 and 11, each with strides 1-2, dilations 1-3 and paddings
 * 0..k where the dilated kernel fits; odd channel counts. */
START_TEST(conv2d_matches_reference_for_every_kernel_size_stride_dilation_and_padding) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t kernels[] = {1, 2, 3, 4, 5, 6, 7, 11};
  uint64_t salt = 1000;
  for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; ++k) {
    const int64_t K = kernels[k];
    for (int32_t stride = 1; stride <= 2; ++stride)
      for (int32_t dil = 1; dil <= 3; ++dil) {
        /* Paddings 0, about half, and k, cycling so every value is met. */
        const int32_t pads[] = {0, (int32_t)(K / 2), (int32_t)K};
        const int32_t pad = pads[(stride + dil + k) % 3];
        /* Small images, so most outputs see the border. */
        const int64_t span = dil * (K - 1) + 1, extra = (int64_t)(k % 3);
        const int64_t H = (span > 2 * pad ? span - 2 * pad : 1) + extra;
        const int64_t W = H + 3, C = 1 + (int64_t)((k * 7 + (size_t)dil * 5) % 23);
        check_conv2d(ctx, _i, conv2d_f32(1 + (stride == 2 && dil == 3), H, W, C, K, stride, pad, dil),
                     salt++);
      }
  }
  th_context_done(ctx);
}
END_TEST

/* Images from 1x1 to 56x56, the fast-path kernels, channels that are and are not
 * multiples of any vector width, asymmetric stride/pad/dilation. */
START_TEST(conv2d_matches_reference_on_odd_images) {
  seqmix_context *ctx = th_context(_i);
  check_conv2d(ctx, _i, conv2d_f32(1, 1, 1, 5, 1, 1, 0, 1), 1100);
  check_conv2d(ctx, _i, conv2d_f32(2, 1, 1, 3, 3, 1, 1, 1), 1101);
  check_conv2d(ctx, _i, conv2d_f32(1, 1, 1, 7, 7, 1, 3, 1), 1102);
  check_conv2d(ctx, _i, conv2d_f32(1, 56, 56, 96, 7, 1, 3, 1), 1103);
  check_conv2d(ctx, _i, conv2d_f32(1, 14, 14, 384, 7, 1, 3, 1), 1104);
  check_conv2d(ctx, _i, conv2d_f32(1, 23, 31, 33, 3, 2, 1, 1), 1105);
  check_conv2d(ctx, _i, conv2d_f32(3, 17, 9, 129, 5, 1, 2, 2), 1106);
  check_conv2d(ctx, _i, conv2d_f32(1, 37, 41, 1, 3, 1, 1, 1), 1107);
  check_conv2d(ctx, _i, conv2d_f32(1, 55, 7, 17, 7, 2, 3, 1), 1108);
  conv2d_case c = conv2d_f32(2, 19, 26, 11, 3, 2, 0, 3);
  c.KW = 5, c.stride_w = 1, c.pad_w = 4, c.dilation_w = 1;
  check_conv2d(ctx, _i, c, 1109);
  c = conv2d_f32(1, 12, 30, 40, 7, 1, 3, 1);
  c.KH = 1, c.pad = 0, c.bias = false;
  check_conv2d(ctx, _i, c, 1110);
  th_context_done(ctx);
}
END_TEST

START_TEST(conv2d_strided_views_and_16_bit_storage) {
  seqmix_context *ctx = th_context(_i);
  conv2d_case c = conv2d_f32(2, 13, 15, 21, 3, 1, 1, 1);
  c.views = true;
  check_conv2d(ctx, _i, c, 1200);
  static const seqmix_dtype acts[] = {SEQMIX_F16, SEQMIX_BF16};
  for (int a = 0; a < 2; ++a)
    for (int same = 0; same < 2; ++same) {
      conv2d_case d = conv2d_f32(1, 28, 28, 48, 7, 1, 3, 1);
      d.act = acts[a], d.param = same ? acts[a] : SEQMIX_F32;
      d.views = same;
      check_conv2d(ctx, _i, d, 1210 + (uint64_t)(a * 2 + same));
      conv2d_case e = conv2d_f32(1, 15, 16, 19, 5, 2, 2, 2);
      e.act = acts[a], e.param = d.param;
      check_conv2d(ctx, _i, e, 1220 + (uint64_t)(a * 2 + same));
    }
  th_context_done(ctx);
}
END_TEST

/* ---- Pool mixer --------------------------------------------------------------------- */

static void check_pool(seqmix_context *ctx, int device, int64_t B, int64_t H, int64_t W,
                       int64_t C, int32_t pool, seqmix_dtype act, bool views, uint64_t salt) {
  th_rng rng = th_rng_make(salt);
  const size_t n = (size_t)(B * H * W * C);
  float *x = malloc(n * sizeof *x);
  th_fill(&rng, x, n, -2, 2);
  const int64_t shape[] = {B, H, W, C};
  seqmix_tensor *xb, *yb;
  seqmix_tensor *tx = make4(ctx, act, shape, x, views, &xb);
  seqmix_tensor *ty = make4(ctx, act, shape, NULL, views, &yb);
  seqmix_pool_params p = {.pool = pool};
  th_ok(seqmix_pool_mixer(ctx, tx, ty, &p));
  double *rx = th_to_double(x, n), *ry = malloc(n * sizeof *ry);
  th_ok(seqmix_reference_pool_mixer(B, H, W, C, rx, ry, &p));
  float *y = th_read(ty);
  double err = th_rel_l2(y, ry, n), tol = th_tolerance(act);
  ck_assert_msg(err <= tol,
                "%s: pool rel err %.3g > %.1g (B%lld %lldx%lld C%lld pool %d %s views%d, seed %llu)",
                th_device_id(device), err, tol, (long long)B, (long long)H, (long long)W,
                (long long)C, pool, seqmix_dtype_name(act), views, (unsigned long long)th_seed());
  free(y), free(rx), free(ry), free(x);
  seqmix_tensor *all[] = {tx, ty, xb, yb};
  destroy_all(all, sizeof all / sizeof all[0]);
}

/* Pool sizes 3 and 5 where the window crosses the borders (images smaller than
 * the window included); the divisor counts only pixels inside. */
START_TEST(pool_mixer_matches_reference_at_image_borders) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t images[][4] = {{1, 1, 1, 3},   {1, 2, 3, 5},  {2, 4, 4, 7},
                                      {1, 56, 56, 96}, {1, 9, 13, 33}, {3, 5, 2, 129}};
  for (size_t i = 0; i < sizeof images / sizeof images[0]; ++i)
    for (int32_t pool = 3; pool <= 5; pool += 2)
      check_pool(ctx, _i, images[i][0], images[i][1], images[i][2], images[i][3], pool,
                 SEQMIX_F32, false, 1300 + i * 2 + (uint64_t)pool);
  check_pool(ctx, _i, 1, 6, 7, 9, 1, SEQMIX_F32, false, 1320); /* pool 1: y = 0 up to rounding */
  check_pool(ctx, _i, 1, 10, 9, 11, 7, SEQMIX_F32, false, 1321);
  check_pool(ctx, _i, 1, 8, 8, 16, 0, SEQMIX_F32, false, 1322); /* default 3 */
  th_context_done(ctx);
}
END_TEST

START_TEST(pool_mixer_strided_views_and_16_bit_storage) {
  seqmix_context *ctx = th_context(_i);
  check_pool(ctx, _i, 2, 11, 12, 13, 3, SEQMIX_F32, true, 1400);
  check_pool(ctx, _i, 1, 14, 14, 40, 3, SEQMIX_F16, false, 1401);
  check_pool(ctx, _i, 1, 14, 14, 40, 5, SEQMIX_BF16, true, 1402);
  th_context_done(ctx);
}
END_TEST

/* ---- Long convolution --------------------------------------------------------------- */

typedef struct lconv_case {
  int64_t B, L, C, Lh;
  seqmix_conv_method method;
  bool skip, views;
  seqmix_dtype act, param;
} lconv_case;

/* y of one long_conv call (malloc'ed floats). x, h and d are rounded in place
 * to the dtypes the device stores, so the reference sees what it sees. */
static float *run_lconv(seqmix_context *ctx, const lconv_case *c, float *xc, float *hc,
                        float *dc) {
  const int64_t xs[] = {c->B, c->L, c->C}, hs[] = {c->C, c->Lh}, ds[] = {c->C};
  static const int64_t pad[] = {1, 3, 5, 0};
  seqmix_tensor *xb = NULL, *yb = NULL, *hb = NULL, *tx, *ty, *th;
  if (c->views) {
    tx = th_padded_view(ctx, c->act, 3, xs, pad, 7, xc, &xb);
    ty = th_padded_view(ctx, c->act, 3, xs, pad, 3, NULL, &yb);
    th = th_padded_view(ctx, c->param, 2, hs, pad + 1, 5, hc, &hb);
  } else {
    tx = th_tensor(ctx, c->act, 3, xs, xc);
    ty = th_tensor(ctx, c->act, 3, xs, NULL);
    th = th_tensor(ctx, c->param, 2, hs, hc);
  }
  seqmix_tensor *td = c->skip ? th_tensor(ctx, c->param, 1, ds, dc) : NULL;
  seqmix_long_conv_params p = {.method = c->method};
  th_ok(seqmix_long_conv(ctx, tx, th, td, ty, &p));
  float *y = th_read(ty);
  seqmix_tensor *all[] = {tx, ty, th, td, xb, yb, hb};
  destroy_all(all, sizeof all / sizeof all[0]);
  return y;
}

/* Random inputs for a case (malloc'ed). */
static void lconv_inputs(const lconv_case *c, uint64_t salt, float **x, float **h, float **d) {
  th_rng rng = th_rng_make(salt);
  const size_t nx = (size_t)(c->B * c->L * c->C), nh = (size_t)(c->C * c->Lh);
  *x = malloc(nx * sizeof **x), *h = malloc(nh * sizeof **h), *d = malloc(c->C * sizeof **d);
  th_fill(&rng, *x, nx, -1, 1);
  /* Decaying filters, as in S4/Hyena, so long sums stay O(1). */
  for (int64_t ch = 0; ch < c->C; ++ch)
    for (int64_t s = 0; s < c->Lh; ++s)
      (*h)[ch * c->Lh + s] = th_uniform(&rng, -1, 1) * expf(-(float)s / (8.0f + (float)(ch % 5) * 40));
  th_fill(&rng, *d, (size_t)c->C, -1, 1);
}

static void check_lconv(seqmix_context *ctx, int device, lconv_case c, uint64_t salt) {
  float *x, *h, *d;
  lconv_inputs(&c, salt, &x, &h, &d);
  float *y = run_lconv(ctx, &c, x, h, d);
  const size_t nx = (size_t)(c.B * c.L * c.C), nh = (size_t)(c.C * c.Lh);
  double *rx = th_to_double(x, nx), *rh = th_to_double(h, nh), *rd = th_to_double(d, c.C);
  double *ry = malloc(nx * sizeof *ry);
  th_ok(seqmix_reference_long_conv(c.B, c.L, c.C, c.Lh, rx, rh, c.skip ? rd : NULL, ry));
  double err = th_rel_l2(y, ry, nx), tol = th_tolerance(c.act);
  static const char *const methods[] = {"auto", "direct", "fft"};
  ck_assert_msg(err <= tol,
                "%s: long_conv rel err %.3g > %.1g (B%lld L%lld C%lld Lh%lld %s skip%d views%d "
                "%s/%s, seed %llu)",
                th_device_id(device), err, tol, (long long)c.B, (long long)c.L, (long long)c.C,
                (long long)c.Lh, methods[c.method], c.skip, c.views, seqmix_dtype_name(c.act),
                seqmix_dtype_name(c.param), (unsigned long long)th_seed());
  free(y), free(rx), free(rh), free(rd), free(ry), free(x), free(h), free(d);
}

/* L in {1, 64, 513, 1000, 4096} and Lh in {1, 17, L, 2L}, each by both methods. */
START_TEST(long_conv_direct_and_fft_match_reference) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t lengths[] = {1, 64, 513, 1000, 4096};
  uint64_t salt = 2000;
  for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; ++i) {
    const int64_t L = lengths[i], filters[] = {1, 17, L, 2 * L};
    for (int f = 0; f < 4; ++f)
      for (int m = SEQMIX_CONV_DIRECT; m <= SEQMIX_CONV_FFT; ++m) {
        const int64_t C = L >= 4096 ? 24 : 5 + (int64_t)(i * 4 + (size_t)f) % 13;
        lconv_case c = {1 + (L <= 64), L, C, filters[f], (seqmix_conv_method)m, f != 1, false,
                        SEQMIX_F32, SEQMIX_F32};
        check_lconv(ctx, _i, c, salt++);
      }
  }
  th_context_done(ctx);
}
END_TEST

/* L = 65536 with a filter as long: FFT against the reference on a few
 * channels (the reference is quadratic), and AUTO picks the FFT. */
START_TEST(long_conv_65536_tokens_by_fft) {
  seqmix_context *ctx = th_context(_i);
  lconv_case c = {1, 65536, 3, 65536, SEQMIX_CONV_FFT, true, false, SEQMIX_F32, SEQMIX_F32};
  check_lconv(ctx, _i, c, 2100);
  c.method = SEQMIX_CONV_AUTO, c.Lh = 131072, c.C = 2;
  check_lconv(ctx, _i, c, 2101);
  th_context_done(ctx);
}
END_TEST

/* Direct and FFT give the same result (to f32 rounding) on one input. */
START_TEST(long_conv_direct_and_fft_agree) {
  seqmix_context *ctx = th_context(_i);
  static const int64_t shapes[][4] = {{2, 700, 33, 700}, {1, 2048, 64, 100}, {3, 129, 7, 1000}};
  for (size_t i = 0; i < 3; ++i) {
    lconv_case c = {shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], SEQMIX_CONV_DIRECT,
                    true, false, SEQMIX_F32, SEQMIX_F32};
    float *x, *h, *d;
    lconv_inputs(&c, 2200 + i, &x, &h, &d);
    float *direct = run_lconv(ctx, &c, x, h, d);
    c.method = SEQMIX_CONV_FFT;
    float *fft = run_lconv(ctx, &c, x, h, d);
    const size_t n = (size_t)(c.B * c.L * c.C);
    double *ref = th_to_double(direct, n);
    double err = th_rel_l2(fft, ref, n);
    ck_assert_msg(err <= 1e-5, "%s: direct and fft differ by %.3g (B%lld L%lld C%lld Lh%lld)",
                  th_device_id(_i), err, (long long)c.B, (long long)c.L, (long long)c.C,
                  (long long)c.Lh);
    free(direct), free(fft), free(ref), free(x), free(h), free(d);
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(long_conv_strided_views_and_16_bit_storage) {
  seqmix_context *ctx = th_context(_i);
  for (int m = SEQMIX_CONV_DIRECT; m <= SEQMIX_CONV_FFT; ++m) {
    lconv_case c = {2, 300, 19, 257, (seqmix_conv_method)m, true, true, SEQMIX_F32, SEQMIX_F32};
    check_lconv(ctx, _i, c, 2300 + (uint64_t)m);
    static const seqmix_dtype acts[] = {SEQMIX_F16, SEQMIX_BF16};
    for (int a = 0; a < 2; ++a)
      for (int same = 0; same < 2; ++same) {
        lconv_case e = {1, 777, 21, 600, (seqmix_conv_method)m, true, same, acts[a],
                        same ? acts[a] : SEQMIX_F32};
        check_lconv(ctx, _i, e, 2310 + (uint64_t)(m * 4 + a * 2 + same));
      }
  }
  th_context_done(ctx);
}
END_TEST

/* The filter's transform is cached per h: calls with the same h reuse it, and
 * rewriting h (or using another h of the same shape) must not reuse a stale one. */
START_TEST(long_conv_filter_cache_follows_h_contents) {
  seqmix_context *ctx = th_context(_i);
  const int64_t B = 1, L = 600, C = 9, Lh = 600;
  const size_t nx = (size_t)(B * L * C), nh = (size_t)(C * Lh);
  th_rng rng = th_rng_make(2400);
  float *x = malloc(nx * sizeof *x), *h1 = malloc(nh * sizeof *h1), *h2 = malloc(nh * sizeof *h2);
  th_fill(&rng, x, nx, -1, 1);
  th_fill(&rng, h1, nh, -0.1f, 0.1f);
  th_fill(&rng, h2, nh, -0.1f, 0.1f);
  const int64_t xs[] = {B, L, C}, hs[] = {C, Lh};
  seqmix_tensor *tx = th_tensor(ctx, SEQMIX_F32, 3, xs, x), *ty = th_tensor(ctx, SEQMIX_F32, 3, xs, NULL);
  seqmix_tensor *th = th_tensor(ctx, SEQMIX_F32, 2, hs, h1);
  seqmix_tensor *th2 = th_tensor(ctx, SEQMIX_F32, 2, hs, h2);
  double *rx = th_to_double(x, nx), *ry = malloc(nx * sizeof *ry);
  seqmix_long_conv_params p = {.method = SEQMIX_CONV_FFT};
  for (int round = 0; round < 4; ++round) {
    /* h1, h1 again (cached), h rewritten with h2's values, then the other tensor. */
    const float *hv = round < 2 ? h1 : h2;
    if (round == 2) th_ok(seqmix_tensor_write(th, h2, nh * sizeof *h2));
    th_ok(seqmix_long_conv(ctx, tx, round == 3 ? th2 : th, NULL, ty, &p));
    double *rh = th_to_double(hv, nh);
    th_ok(seqmix_reference_long_conv(B, L, C, Lh, rx, rh, NULL, ry));
    float *y = th_read(ty);
    double err = th_rel_l2(y, ry, nx);
    ck_assert_msg(err <= 1e-5, "%s: round %d rel err %.3g (a stale filter transform?)",
                  th_device_id(_i), round, err);
    free(y), free(rh);
  }
  /* h written by an op (here: as a conv2d output viewed as [C, Lh]) also counts. */
  const int64_t img[] = {1, C, Lh, 1}, k1[] = {1, 1, 1}, b1[] = {1};
  float one = 1.0f, zero = 0.0f;
  seqmix_tensor *src = th_tensor(ctx, SEQMIX_F32, 4, img, h1);
  seqmix_tensor *w = th_tensor(ctx, SEQMIX_F32, 3, k1, &one), *bz = th_tensor(ctx, SEQMIX_F32, 1, b1, &zero);
  seqmix_tensor *h_img, *h_view;
  th_ok(seqmix_tensor_create(ctx, SEQMIX_F32, 4, img, &h_img));
  const int64_t view_strides[] = {Lh, 1};
  th_ok(seqmix_tensor_view(h_img, 2, hs, view_strides, 0, &h_view));
  th_ok(seqmix_tensor_write(h_view, h2, nh * sizeof *h2));
  th_ok(seqmix_long_conv(ctx, tx, h_view, NULL, ty, &p)); /* caches h2's transform */
  th_ok(seqmix_conv2d_depthwise(ctx, src, w, bz, h_img, NULL)); /* h_img = h1 */
  th_ok(seqmix_long_conv(ctx, tx, h_view, NULL, ty, &p));
  double *rh = th_to_double(h1, nh);
  th_ok(seqmix_reference_long_conv(B, L, C, Lh, rx, rh, NULL, ry));
  float *y = th_read(ty);
  double err = th_rel_l2(y, ry, nx);
  ck_assert_msg(err <= 1e-5, "%s: after an op rewrote h, rel err %.3g", th_device_id(_i), err);
  free(y), free(rh), free(rx), free(ry), free(x), free(h1), free(h2);
  seqmix_tensor *all[] = {tx, ty, th, th2, src, w, bz, h_view, h_img};
  destroy_all(all, sizeof all / sizeof all[0]);
  th_context_done(ctx);
}
END_TEST

/* ---- Device, not fallback; bad arguments --------------------------------------------- */

START_TEST(conv_mixers_run_on_the_device_not_the_fallback) {
  seqmix_context *ctx = th_context(_i);
  check_conv2d(ctx, _i, conv2d_f32(1, 9, 10, 12, 3, 1, 1, 1), 3000);
  check_pool(ctx, _i, 1, 9, 10, 12, 3, SEQMIX_F32, false, 3001);
  lconv_case c = {1, 100, 8, 30, SEQMIX_CONV_DIRECT, true, false, SEQMIX_F32, SEQMIX_F32};
  check_lconv(ctx, _i, c, 3002);
  c.method = SEQMIX_CONV_FFT;
  check_lconv(ctx, _i, c, 3003);
  seqmix_context_stats stats;
  th_ok(seqmix_context_stats_get(ctx, &stats));
  ck_assert_msg(stats.ops_on_fallback == 0 && stats.ops_on_device == 4,
                "%s: conv mixers ran on the fallback (device %llu, fallback %llu)",
                th_device_id(_i), (unsigned long long)stats.ops_on_device,
                (unsigned long long)stats.ops_on_fallback);
  ck_assert_int_eq(th_fallback_warnings(), 0);
  th_context_done(ctx);
}
END_TEST

START_TEST(conv_mixers_refuse_bad_arguments_with_a_clear_message) {
  seqmix_context *ctx = th_context(_i);
  const seqmix_status INVALID = SEQMIX_ERROR_INVALID_ARGUMENT;
  const int64_t img[] = {1, 8, 8, 4}, w3[] = {3, 3, 4}, w_bad[] = {3, 3, 5}, c4[] = {4};
  const int64_t y6[] = {1, 6, 6, 4}, big_k[] = {11, 11, 4};
  seqmix_tensor *x = th_tensor(ctx, SEQMIX_F32, 4, img, NULL);
  seqmix_tensor *y = th_tensor(ctx, SEQMIX_F32, 4, img, NULL), *y6t = th_tensor(ctx, SEQMIX_F32, 4, y6, NULL);
  seqmix_tensor *w = th_tensor(ctx, SEQMIX_F32, 3, w3, NULL), *wb = th_tensor(ctx, SEQMIX_F32, 3, w_bad, NULL);
  seqmix_tensor *wk = th_tensor(ctx, SEQMIX_F32, 3, big_k, NULL), *b = th_tensor(ctx, SEQMIX_F32, 1, c4, NULL);
  seqmix_tensor *y16 = th_tensor(ctx, SEQMIX_F16, 4, img, NULL);
  seqmix_conv2d_params same = {.pad_h = 1, .pad_w = 1};
  th_fails(seqmix_conv2d_depthwise(NULL, x, w, b, y, &same), INVALID, "ctx is NULL");
  th_fails(seqmix_conv2d_depthwise(ctx, NULL, w, b, y, &same), INVALID, "x is NULL");
  th_fails(seqmix_conv2d_depthwise(ctx, x, wb, b, y, &same), INVALID, "weight has shape");
  th_fails(seqmix_conv2d_depthwise(ctx, x, w, b, y, NULL), INVALID, "y has shape [1, 8, 8, 4]");
  th_fails(seqmix_conv2d_depthwise(ctx, x, w, b, y16, &same), INVALID, "y is f16 but x is f32");
  th_fails(seqmix_conv2d_depthwise(ctx, x, wk, b, y6t, NULL), INVALID, "does not fit");
  th_fails(seqmix_conv2d_depthwise(ctx, x, w, b, x, &same), INVALID, "y overlaps x");
  seqmix_conv2d_params neg = {.stride_h = -1};
  th_fails(seqmix_conv2d_depthwise(ctx, x, w, b, y6t, &neg), INVALID, "params->stride_h is -1");
  neg = (seqmix_conv2d_params){.pad_w = -2};
  th_fails(seqmix_conv2d_depthwise(ctx, x, w, b, y6t, &neg), INVALID, "params->pad_w is -2");

  seqmix_pool_params even = {.pool = 4};
  th_fails(seqmix_pool_mixer(ctx, x, y, &even), INVALID, "params->pool is 4; it must be odd");
  th_fails(seqmix_pool_mixer(ctx, x, y6t, NULL), INVALID, "y has shape");
  th_fails(seqmix_pool_mixer(ctx, x, x, NULL), INVALID, "y overlaps x");

  const int64_t seq[] = {2, 10, 4}, filt[] = {4, 33}, filt_bad[] = {5, 33};
  seqmix_tensor *sx = th_tensor(ctx, SEQMIX_F32, 3, seq, NULL), *sy = th_tensor(ctx, SEQMIX_F32, 3, seq, NULL);
  seqmix_tensor *h = th_tensor(ctx, SEQMIX_F32, 2, filt, NULL), *hb = th_tensor(ctx, SEQMIX_F32, 2, filt_bad, NULL);
  seqmix_tensor *h_bf16 = th_tensor(ctx, SEQMIX_BF16, 2, filt, NULL);
  th_fails(seqmix_long_conv(ctx, sx, NULL, NULL, sy, NULL), INVALID, "h is NULL");
  th_fails(seqmix_long_conv(ctx, sx, hb, NULL, sy, NULL), INVALID, "h has shape [5, 33]");
  th_fails(seqmix_long_conv(ctx, sx, h_bf16, NULL, sy, NULL), INVALID, "h is bf16");
  th_fails(seqmix_long_conv(ctx, x, h, NULL, sy, NULL), INVALID, "x has rank 4");
  th_fails(seqmix_long_conv(ctx, sx, h, NULL, sx, NULL), INVALID, "y overlaps x");
  seqmix_long_conv_params bad_method = {.method = (seqmix_conv_method)7};
  th_fails(seqmix_long_conv(ctx, sx, h, NULL, sy, &bad_method), INVALID, "params->method is 7");

  /* The context still works. */
  check_pool(ctx, _i, 1, 5, 5, 3, 3, SEQMIX_F32, false, 3100);
  seqmix_tensor *all[] = {x, y, y6t, w, wb, wk, b, y16, sx, sy, h, hb, h_bf16};
  destroy_all(all, sizeof all / sizeof all[0]);
  th_context_done(ctx);
}
END_TEST

/* Every candidate of the long convolution's crossover knob gives the
 * reference's answer with AUTO, whichever method it picks. */
START_TEST(long_conv_every_tuning_candidate_matches_reference) {
  seqmix_context *ctx = th_context(_i);
  th_knob_iter it = {0};
  int runs = 0;
  while (th_next_tuning_candidate(ctx, "longconv", &it)) {
    lconv_case c = {1, 1000, 5, 300, SEQMIX_CONV_AUTO, true, false, SEQMIX_F32, SEQMIX_F32};
    check_lconv(ctx, _i, c, 3000 + it.salt);
    ++runs;
  }
  ck_assert_int_ge(runs, 6); /* every device has longconv.crossover's 6 candidates */
  th_context_done(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("convmix");
  TCase *tc = tcase_create("every device");
  int n = th_device_count();
  tcase_add_loop_test(tc, conv2d_matches_reference_for_every_kernel_size_stride_dilation_and_padding, 0, n);
  tcase_add_loop_test(tc, conv2d_matches_reference_on_odd_images, 0, n);
  tcase_add_loop_test(tc, conv2d_strided_views_and_16_bit_storage, 0, n);
  tcase_add_loop_test(tc, pool_mixer_matches_reference_at_image_borders, 0, n);
  tcase_add_loop_test(tc, pool_mixer_strided_views_and_16_bit_storage, 0, n);
  tcase_add_loop_test(tc, long_conv_direct_and_fft_match_reference, 0, n);
  tcase_add_loop_test(tc, long_conv_65536_tokens_by_fft, 0, n);
  tcase_add_loop_test(tc, long_conv_direct_and_fft_agree, 0, n);
  tcase_add_loop_test(tc, long_conv_strided_views_and_16_bit_storage, 0, n);
  tcase_add_loop_test(tc, long_conv_filter_cache_follows_h_contents, 0, n);
  tcase_add_loop_test(tc, conv_mixers_run_on_the_device_not_the_fallback, 0, n);
  tcase_add_loop_test(tc, conv_mixers_refuse_bad_arguments_with_a_clear_message, 0, n);
  tcase_add_loop_test(tc, long_conv_every_tuning_candidate_matches_reference, 0, n);
  suite_add_tcase(s, tc);
  return th_run_suite(s);
}
