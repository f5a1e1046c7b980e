/* The convolution mixers in `seqmix verify` and `seqmix bench`: conv2d
 * (depthwise, dims B, H, W, C, K, stride, pad, dilation), longconv (B, L, C,
 * Lh; flags pick the method) and pool (B, H, W, C, pool). */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { CM_BIAS = 1, CM_PARAM_ACT = 2, CM_DIRECT = 4, CM_FFT = 8 };
typedef enum cm_kind { CM_CONV2D, CM_LONGCONV, CM_POOL } cm_kind;

typedef struct cm_state {
  seqmix_context *ctx;
  cm_kind kind;
  cli_case c;
  seqmix_dtype dtype;
  float *x, *w, *b;       /* host inputs, as stored */
  size_t nx, nw, nb, ny;
  int64_t yshape[4];
  seqmix_tensor *tx, *tw, *tb, *ty;
} cm_state;

static int64_t out_extent(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

static void cm_teardown(void *p) {
  cm_state *s = p;
  if (!s) return;
  seqmix_tensor_destroy(s->tx), seqmix_tensor_destroy(s->tw);
  seqmix_tensor_destroy(s->tb), seqmix_tensor_destroy(s->ty);
  free(s->x), free(s->w), free(s->b);
  free(s);
}

static seqmix_status cm_setup(cm_kind kind, seqmix_context *ctx, const cli_case *c,
                              seqmix_dtype dtype, unsigned long long seed, void **out) {
  cm_state *s = calloc(1, sizeof *s);
  if (!s) return SEQMIX_ERROR_OUT_OF_MEMORY;
  s->ctx = ctx, s->kind = kind, s->c = *c, s->dtype = dtype;
  const int64_t *d = c->dims;
  const seqmix_dtype param = (c->flags & CM_PARAM_ACT) ? dtype : SEQMIX_F32;
  unsigned long long rng = seed | 1;
  int xrank = 4, wrank = 0;
  int64_t xs[4] = {d[0], d[1], d[2], d[3]}, ws[3] = {0}, bs[1] = {0};
  switch (kind) {
  case CM_CONV2D:
    s->yshape[0] = d[0], s->yshape[3] = d[3];
    s->yshape[1] = out_extent(d[1], d[4], d[5], d[6], d[7]);
    s->yshape[2] = out_extent(d[2], d[4], d[5], d[6], d[7]);
    ws[0] = ws[1] = d[4], ws[2] = d[3], wrank = 3, bs[0] = d[3];
    s->nw = (size_t)(d[4] * d[4] * d[3]), s->nb = (c->flags & CM_BIAS) ? (size_t)d[3] : 0;
    break;
  case CM_LONGCONV:
    xrank = 3;
    memcpy(s->yshape, xs, sizeof xs);
    ws[0] = d[2], ws[1] = d[3], wrank = 2, bs[0] = d[2];
    s->nw = (size_t)(d[2] * d[3]), s->nb = (c->flags & CM_BIAS) ? (size_t)d[2] : 0;
    break;
  case CM_POOL: memcpy(s->yshape, xs, sizeof xs); break;
  }
  s->nx = (size_t)(d[0] * d[1] * d[2] * (xrank == 4 ? d[3] : 1));
  s->ny = (size_t)(s->yshape[0] * s->yshape[1] * s->yshape[2] * (xrank == 4 ? s->yshape[3] : 1));
  s->x = cli_random_floats(s->nx, -1, 1, &rng);
  s->w = cli_random_floats(s->nw, -1, 1, &rng);
  s->b = cli_random_floats(s->nb, -0.5f, 0.5f, &rng);
  seqmix_status st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!s->x || !s->w || !s->b) goto fail;
  if (kind == CM_LONGCONV) /* decaying filters, as S4/Hyena make them */
    for (int64_t ch = 0; ch < d[2]; ++ch)
      for (int64_t t = 0; t < d[3]; ++t) s->w[ch * d[3] + t] *= expf(-(float)t / 256.0f);
  if ((st = cli_make_tensor(ctx, dtype, xrank, xs, s->x, &s->tx)) ||
      (st = cli_make_tensor(ctx, dtype, xrank, s->yshape, NULL, &s->ty)) ||
      (wrank && (st = cli_make_tensor(ctx, param, wrank, ws, s->w, &s->tw))) ||
      (s->nb && (st = cli_make_tensor(ctx, param, 1, bs, s->b, &s->tb))))
    goto fail;
  *out = s;
  return SEQMIX_OK;
fail:
  cm_teardown(s);
  return st;
}

static seqmix_status cm_run(void *p) {
  cm_state *s = p;
  const int64_t *d = s->c.dims;
  switch (s->kind) {
  case CM_CONV2D: {
    seqmix_conv2d_params q = {.stride_h = (int32_t)d[5], .stride_w = (int32_t)d[5],
                              .pad_h = (int32_t)d[6], .pad_w = (int32_t)d[6],
                              .dilation_h = (int32_t)d[7], .dilation_w = (int32_t)d[7]};
    return seqmix_conv2d_depthwise(s->ctx, s->tx, s->tw, s->tb, s->ty, &q);
  }
  case CM_LONGCONV: {
    seqmix_long_conv_params q = {.method = (s->c.flags & CM_DIRECT) ? SEQMIX_CONV_DIRECT
                                           : (s->c.flags & CM_FFT)  ? SEQMIX_CONV_FFT
                                                                    : SEQMIX_CONV_AUTO};
    return seqmix_long_conv(s->ctx, s->tx, s->tw, s->tb, s->ty, &q);
  }
  case CM_POOL: {
    seqmix_pool_params q = {.pool = (int32_t)d[4]};
    return seqmix_pool_mixer(s->ctx, s->tx, s->ty, &q);
  }
  }
  return SEQMIX_ERROR_INVALID_ARGUMENT;
}

/* Long convolutions whose full reference would take too long are checked on
 * `samples` output tokens spread over the sequence (the last one included),
 * every channel and batch, each an exact double sum over its taps. */
enum { samples = 256 };
static bool sampled(const cli_case *c) {
  const double taps = (double)(c->dims[3] < c->dims[1] ? c->dims[3] : c->dims[1]);
  return (double)c->dims[0] * (double)c->dims[1] * (double)c->dims[2] * taps > 4e9;
}

static double sampled_long_conv_error(const cm_state *s, const float *y) {
  const int64_t B = s->c.dims[0], L = s->c.dims[1], C = s->c.dims[2], Lh = s->c.dims[3];
  double num = 0, den = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int k = 0; k < samples; ++k) {
      const int64_t t = (L - 1) - (int64_t)k * (L - 1) / (samples - 1);
      for (int64_t c = 0; c < C; ++c) {
        double acc = s->nb ? (double)s->b[c] * s->x[(b * L + t) * C + c] : 0.0;
        for (int64_t j = 0; j <= t && j < Lh; ++j)
          acc += (double)s->w[c * Lh + j] * s->x[(b * L + t - j) * C + c];
        const double out = y[(b * L + t) * C + c], diff = out - acc;
        if (isnan(out)) return INFINITY;
        num += diff * diff, den += acc * acc;
      }
    }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

static seqmix_status cm_check(void *p, double *rel_err) {
  cm_state *s = p;
  const int64_t *d = s->c.dims;
  float *y = malloc(s->ny * sizeof *y);
  double *rx = cli_to_double(s->x, s->nx), *rw = cli_to_double(s->w, s->nw);
  double *rb = cli_to_double(s->b, s->nb), *ry = malloc(s->ny * sizeof *ry);
  seqmix_status st = SEQMIX_ERROR_OUT_OF_MEMORY;
  if (!y || !rx || !rw || !rb || !ry) goto done;
  cli_fill_nan(y, s->ny); /* an unwritten element fails */
  if ((st = seqmix_tensor_write_f32(s->ty, y, s->ny)) || (st = cm_run(s)) ||
      (st = seqmix_tensor_read_f32(s->ty, y, s->ny)))
    goto done;
  switch (s->kind) {
  case CM_CONV2D: {
    seqmix_conv2d_params q = {.stride_h = (int32_t)d[5], .stride_w = (int32_t)d[5],
                              .pad_h = (int32_t)d[6], .pad_w = (int32_t)d[6],
                              .dilation_h = (int32_t)d[7], .dilation_w = (int32_t)d[7]};
    st = seqmix_reference_conv2d_depthwise(d[0], d[1], d[2], d[3], d[4], d[4], rx, rw,
                                           s->nb ? rb : NULL, ry, &q);
    break;
  }
  case CM_LONGCONV:
    if (sampled(&s->c)) {
      *rel_err = sampled_long_conv_error(s, y);
      goto done;
    }
    st = seqmix_reference_long_conv(d[0], d[1], d[2], d[3], rx, rw, s->nb ? rb : NULL, ry);
    break;
  case CM_POOL: {
    seqmix_pool_params q = {.pool = (int32_t)d[4]};
    st = seqmix_reference_pool_mixer(d[0], d[1], d[2], d[3], rx, ry, &q);
    break;
  }
  }
  if (!st) *rel_err = cli_rel_l2(y, ry, s->ny);
done:
  free(y), free(rx), free(rw), free(rb), free(ry);
  return st;
}

static void conv2d_cost(const cli_case *c, seqmix_dtype dtype, double *flops, double *bytes,
                        bool *memory_bound) {
  const int64_t *d = c->dims;
  const double Ho = (double)out_extent(d[1], d[4], d[5], d[6], d[7]);
  const double Wo = (double)out_extent(d[2], d[4], d[5], d[6], d[7]);
  const double esize = (double)seqmix_dtype_size(dtype), out = (double)d[0] * Ho * Wo * (double)d[3];
  *flops = 2.0 * (double)(d[4] * d[4]) * out;
  *bytes = ((double)(d[0] * d[1] * d[2] * d[3]) + out) * esize;
  /* The bound that applies: FMA peak above ~10 flops a byte (this machine's
   * balance is 4-8), copy bandwidth below. */
  *memory_bound = *flops / *bytes < 10;
}

static void longconv_cost(const cli_case *c, seqmix_dtype dtype, double *flops, double *bytes,
                          bool *memory_bound) {
  const double B = (double)c->dims[0], L = (double)c->dims[1], C = (double)c->dims[2];
  const double taps = (double)(c->dims[3] < c->dims[1] ? c->dims[3] : c->dims[1]);
  if (c->flags & CM_FFT) {
    /* A forward and an inverse real transform (2.5 n log2 n each, n about the
     * power of two >= L + taps - 1) and the complex product per (b, c). */
    double n = 2;
    while (n < L + taps - 1) n *= 2;
    *flops = B * C * (5 * n * log2(n) + 3 * n);
  } else {
    *flops = 2 * B * C * (L * taps - taps * (taps - 1) / 2); /* the causal triangle */
  }
  *bytes = 2 * B * L * C * (double)seqmix_dtype_size(dtype);
  *memory_bound = false;
}

static void pool_cost(const cli_case *c, seqmix_dtype dtype, double *flops, double *bytes,
                      bool *memory_bound) {
  const double n = (double)(c->dims[0] * c->dims[1] * c->dims[2] * c->dims[3]);
  *flops = n * (double)(c->dims[4] * c->dims[4] + 2);
  *bytes = 2 * n * (double)seqmix_dtype_size(dtype);
  *memory_bound = true;
}

static void conv2d_describe(const cli_case *c, char *buf, size_t size) {
  const int64_t *d = c->dims;
  snprintf(buf, size, "%lldx%lldx%lldx%lld k%lld s%lld p%lld d%lld%s", (long long)d[0],
           (long long)d[1], (long long)d[2], (long long)d[3], (long long)d[4], (long long)d[5],
           (long long)d[6], (long long)d[7], (c->flags & CM_BIAS) ? " bias" : "");
}

static void longconv_describe(const cli_case *c, char *buf, size_t size) {
  const int64_t *d = c->dims;
  snprintf(buf, size, "B%lld L%lld C%lld Lh%lld %s%s%s", (long long)d[0], (long long)d[1],
           (long long)d[2], (long long)d[3],
           (c->flags & CM_DIRECT) ? "direct" : (c->flags & CM_FFT) ? "fft" : "auto",
           (c->flags & CM_BIAS) ? " skip" : "", sampled(c) ? " (sampled check)" : "");
}

static void pool_describe(const cli_case *c, char *buf, size_t size) {
  const int64_t *d = c->dims;
  snprintf(buf, size, "%lldx%lldx%lldx%lld pool%lld", (long long)d[0], (long long)d[1],
           (long long)d[2], (long long)d[3], (long long)d[4]);
}

static seqmix_status conv2d_setup(seqmix_context *ctx, const cli_case *c, seqmix_dtype dtype,
                                  unsigned long long seed, void **out) {
  return cm_setup(CM_CONV2D, ctx, c, dtype, seed, out);
}
static seqmix_status longconv_setup(seqmix_context *ctx, const cli_case *c, seqmix_dtype dtype,
                                    unsigned long long seed, void **out) {
  return cm_setup(CM_LONGCONV, ctx, c, dtype, seed, out);
}
static seqmix_status pool_setup(seqmix_context *ctx, const cli_case *c, seqmix_dtype dtype,
                                unsigned long long seed, void **out) {
  return cm_setup(CM_POOL, ctx, c, dtype, seed, out);
}

static const cli_case conv2d_verify[] = {
    {"1x1", {1, 1, 1, 3, 1, 1, 0, 1}, CM_BIAS},
    {"7x7-odd", {2, 23, 19, 33, 7, 1, 3, 1}, CM_BIAS},
    {"5x5-stride2-dil2", {1, 31, 29, 17, 5, 2, 4, 2}, CM_BIAS | CM_PARAM_ACT},
    {"3x3-nopad", {3, 9, 13, 40, 3, 1, 0, 1}, 0},
    {"11x11", {1, 20, 24, 9, 11, 1, 5, 1}, CM_BIAS},
    {"7x7-56", {1, 56, 56, 96, 7, 1, 3, 1}, CM_BIAS},
};
static const cli_case conv2d_bench[] = {
    {"7x7-56", {1, 56, 56, 96, 7, 1, 3, 1}, CM_BIAS},
    {"7x7-14", {1, 14, 14, 384, 7, 1, 3, 1}, CM_BIAS},
    {"3x3-112", {1, 112, 112, 32, 3, 1, 1, 1}, CM_BIAS},
};
static const cli_case longconv_verify[] = {
    {"one", {1, 1, 3, 1}, CM_BIAS},
    {"short-direct", {2, 513, 17, 17}, CM_BIAS | CM_DIRECT},
    {"short-fft", {2, 513, 17, 17}, CM_BIAS | CM_FFT},
    {"long-h-direct", {1, 1000, 9, 2000}, CM_DIRECT | CM_PARAM_ACT},
    {"long-h-fft", {1, 1000, 9, 2000}, CM_FFT | CM_PARAM_ACT},
    {"4k-auto", {1, 4096, 16, 4096}, CM_BIAS},
};
static const cli_case longconv_bench[] = {
    {"4k-direct", {1, 4096, 768, 4096}, CM_DIRECT},
    {"4k-fft", {1, 4096, 768, 4096}, CM_FFT},
    {"4k-h64-dir", {1, 4096, 768, 64}, CM_DIRECT},
    {"4k-h64-fft", {1, 4096, 768, 64}, CM_FFT},
    {"4k-h256-dir", {1, 4096, 768, 256}, CM_DIRECT},
    {"4k-h256-fft", {1, 4096, 768, 256}, CM_FFT},
    {"64k-fft", {1, 65536, 64, 65536}, CM_FFT},
    {"64k-direct", {1, 65536, 64, 65536}, CM_DIRECT},
};
/* AUTO around the crossover, for `seqmix tune` (longconv.crossover). */
static const cli_case longconv_tune[] = {
    {"4k-h64", {1, 4096, 768, 64}, 0},   {"4k-h128", {1, 4096, 768, 128}, 0},
    {"4k-h256", {1, 4096, 768, 256}, 0}, {"4k-h512", {1, 4096, 768, 512}, 0},
    {"4k-h1k", {1, 4096, 768, 1024}, 0},
};
static const cli_case pool_verify[] = {
    {"3x3-tiny", {1, 2, 3, 5, 3}, 0},
    {"5x5-odd", {2, 9, 13, 33, 5}, 0},
    {"3x3-56", {1, 56, 56, 96, 3}, 0},
};
static const cli_case pool_bench[] = {
    {"3x3-56", {1, 56, 56, 96, 3}, 0},
};

const cli_op cli_conv2d_op = {
    .name = "conv2d",
    .verify_cases = conv2d_verify,
    .verify_count = sizeof conv2d_verify / sizeof conv2d_verify[0],
    .bench_cases = conv2d_bench,
    .bench_count = sizeof conv2d_bench / sizeof conv2d_bench[0],
    .setup = conv2d_setup,
    .run = cm_run,
    .check = cm_check,
    .teardown = cm_teardown,
    .cost = conv2d_cost,
    .describe = conv2d_describe,
};

const cli_op cli_longconv_op = {
    .name = "longconv",
    .verify_cases = longconv_verify,
    .verify_count = sizeof longconv_verify / sizeof longconv_verify[0],
    .bench_cases = longconv_bench,
    .bench_count = sizeof longconv_bench / sizeof longconv_bench[0],
    .tune_cases = longconv_tune,
    .tune_count = sizeof longconv_tune / sizeof longconv_tune[0],
    .setup = longconv_setup,
    .run = cm_run,
    .check = cm_check,
    .teardown = cm_teardown,
    .cost = longconv_cost,
    .describe = longconv_describe,
};

const cli_op cli_pool_op = {
    .name = "pool",
    .verify_cases = pool_verify,
    .verify_count = sizeof pool_verify / sizeof pool_verify[0],
    .bench_cases = pool_bench,
    .bench_count = sizeof pool_bench / sizeof pool_bench[0],
    .setup = pool_setup,
    .run = cm_run,
    .check = cm_check,
    .teardown = cm_teardown,
    .cost = pool_cost,
    .describe = pool_describe,
};
