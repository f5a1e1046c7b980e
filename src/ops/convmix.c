/* Convolution mixers beyond conv1d: depthwise 2D convolution, long (FFT or
 * direct) convolution and the pool mixer. Argument rules, op descriptors, the
 * long convolution's cost model and the float64 references. */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Depthwise 2D convolution ------------------------------------------------ */

/* A conv2d parameter that must be >= lo (0 meaning `zero_means` where given). */
static seqmix_status check_param(const char *fn, const char *name, int32_t v, int32_t lo,
                                 int32_t *out, int32_t zero_means) {
  if (v == 0 && zero_means) v = zero_means;
  if (v < lo)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: params->%s is %d; it must be >= %d%s", fn,
                   name, (int)v, (int)lo, zero_means ? " (0 means 1)" : "");
  *out = v;
  return SEQMIX_OK;
}

/* Strides, pads and dilations with defaults applied, or the rule one breaks. */
static seqmix_status resolve_params(const char *fn, const seqmix_conv2d_params *params,
                                    int32_t *sh, int32_t *sw, int32_t *ph, int32_t *pw,
                                    int32_t *dh, int32_t *dw) {
  const seqmix_conv2d_params p = params ? *params : (seqmix_conv2d_params){0};
  seqmix_status st;
  if ((st = check_param(fn, "stride_h", p.stride_h, 1, sh, 1)) ||
      (st = check_param(fn, "stride_w", p.stride_w, 1, sw, 1)) ||
      (st = check_param(fn, "pad_h", p.pad_h, 0, ph, 0)) ||
      (st = check_param(fn, "pad_w", p.pad_w, 0, pw, 0)) ||
      (st = check_param(fn, "dilation_h", p.dilation_h, 1, dh, 1)) ||
      (st = check_param(fn, "dilation_w", p.dilation_w, 1, dw, 1)))
    return st;
  return SEQMIX_OK;
}

/* Output extent of one axis; < 1 when the dilated kernel does not fit. */
static int64_t conv_out_extent(int64_t in, int64_t k, int32_t stride, int32_t pad, int32_t dil) {
  int64_t span = (int64_t)dil * (k - 1) + 1, padded = in + 2 * (int64_t)pad;
  return padded < span ? 0 : (padded - span) / stride + 1;
}

seqmix_status seqmix_conv2d_depthwise(seqmix_context *ctx, const seqmix_tensor *x,
                                      const seqmix_tensor *weight, const seqmix_tensor *bias,
                                      seqmix_tensor *y, const seqmix_conv2d_params *params) {
  static const char fn[] = "seqmix_conv2d_depthwise";
  seqmix_status st;
  if ((st = sm_check_context(fn, ctx)) || (st = sm_check_tensor(fn, "x", ctx, x, false)) ||
      (st = sm_check_tensor(fn, "weight", ctx, weight, false)) ||
      (st = sm_check_tensor(fn, "bias", ctx, bias, true)) ||
      (st = sm_check_tensor(fn, "y", ctx, y, false)))
    return st;
  if (x->rank != 4)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x has rank %d; it must be [B, H, W, C]",
                   fn, x->rank);
  if (weight->rank != 3)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: weight has rank %d; it must be [KH, KW, C]", fn, weight->rank);
  int32_t sh, sw, ph, pw, dh, dw;
  if ((st = resolve_params(fn, params, &sh, &sw, &ph, &pw, &dh, &dw))) return st;
  const int64_t B = x->shape[0], H = x->shape[1], W = x->shape[2], C = x->shape[3];
  const int64_t KH = weight->shape[0], KW = weight->shape[1];
  const int64_t Ho = conv_out_extent(H, KH, sh, ph, dh), Wo = conv_out_extent(W, KW, sw, pw, dw);
  if (Ho < 1 || Wo < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: the dilated %lldx%lld kernel (%lldx%lld with dilation) does not fit the "
                   "%lldx%lld image padded by %d,%d; the output would be empty",
                   fn, (long long)KH, (long long)KW, (long long)((KH - 1) * dh + 1),
                   (long long)((KW - 1) * dw + 1), (long long)H, (long long)W, (int)ph, (int)pw);
  static const char *const bhwc[] = {"B", "Ho", "Wo", "C"}, *const khkwc[] = {"KH", "KW", "C"},
                           *const c_only[] = {"C"};
  const int64_t y_shape[] = {B, Ho, Wo, C}, w_shape[] = {KH, KW, C}, b_shape[] = {C};
  if ((st = sm_check_activation_dtype(fn, "x", x)) ||
      (st = sm_check_same_dtype(fn, "y", y, "x", x)) ||
      (st = sm_check_param_dtype(fn, "weight", weight, x)) ||
      (bias && (st = sm_check_param_dtype(fn, "bias", bias, x))) ||
      (st = sm_check_shape(fn, "weight", weight, 3, w_shape, khkwc)) ||
      (st = sm_check_shape(fn, "y", y, 4, y_shape, bhwc)) ||
      (bias && (st = sm_check_shape(fn, "bias", bias, 1, b_shape, c_only))) ||
      (st = sm_check_no_overlap(fn, "y", y, "x", x)) ||
      (st = sm_check_no_overlap(fn, "y", y, "weight", weight)) ||
      (st = sm_check_no_overlap(fn, "y", y, "bias", bias)))
    return st;

  sm_op op;
  memset(&op, 0, sizeof op);
  op.kind = SM_OP_CONV2D_DEPTHWISE;
  op.name = fn;
  op.tensor_count = 4;
  op.tensors[SM_CONV2D_X] = sm_tensor_ref_of(x);
  op.tensors[SM_CONV2D_WEIGHT] = sm_tensor_ref_of(weight);
  op.tensors[SM_CONV2D_BIAS] = sm_tensor_ref_of(bias);
  op.tensors[SM_CONV2D_Y] = sm_tensor_ref_of(y);
  op.output_mask = 1u << SM_CONV2D_Y;
  op.u.conv2d = (sm_conv2d_desc){B, H, W, C, KH, KW, Ho, Wo, sh, sw, ph, pw, dh, dw};
  return sm_dispatch(ctx, &op);
}

/* ---- Long convolution ----------------------------------------------------------- */

/* The FFT length the backends use: the smallest 2^a 3^b 5^c 7^d (a >= 1) >= L + min(Lh, L) - 1,
 * so the circular product holds the causal one for t < L. */
int64_t sm_long_conv_fft_size(int64_t tokens, int64_t filter_len) {
  const int64_t taps = filter_len < tokens ? filter_len : tokens, need = tokens + taps - 1;
  int64_t best = sm_ceil_pow2((uint64_t)need);
  for (int64_t p7 = 1; p7 < best; p7 *= 7)
    for (int64_t p5 = p7; p5 < best; p5 *= 5)
      for (int64_t p3 = p5; p3 < best; p3 *= 3) {
        int64_t n = 2 * p3; /* even: real transforms need it */
        while (n < need)
          n *= 2;
        if (n < best) best = n;
      }
  return best < 2 ? 2 : best;
}

/* The cost model behind SEQMIX_CONV_AUTO. Direct: one multiply-add per tap
 * and output; FFT: a forward and an inverse real transform per (batch,
 * channel) and the pointwise product, ~2.5 N log2 N flops each, times 3.5 for
 * their memory-bound passes (the filter's transform is cached, so it is not
 * counted). The factor puts the crossover where the CPU path measured it: at
 * L = 4096, C = 768 about 250 taps (direct 4.0 ms / FFT 16 ms at 64 taps,
 * 20 / 21 ms at 256, 125 / 11 ms at 4096; `seqmix bench --op longconv`). */
double sm_long_conv_direct_over_fft(int64_t tokens, int64_t filter_len) {
  const double L = (double)tokens, taps = (double)(filter_len < tokens ? filter_len : tokens);
  const double direct = L * taps - taps * (taps - 1) / 2;
  const double n = (double)sm_long_conv_fft_size(tokens, filter_len);
  return direct / (3.5 * (2 * 2.5 * n * log2(n) + 4 * n));
}

seqmix_status seqmix_long_conv(seqmix_context *ctx, const seqmix_tensor *x, const seqmix_tensor *h,
                               const seqmix_tensor *D_skip, seqmix_tensor *y,
                               const seqmix_long_conv_params *params) {
  static const char fn[] = "seqmix_long_conv";
  seqmix_status st;
  if ((st = sm_check_context(fn, ctx)) || (st = sm_check_tensor(fn, "x", ctx, x, false)) ||
      (st = sm_check_tensor(fn, "h", ctx, h, false)) ||
      (st = sm_check_tensor(fn, "D_skip", ctx, D_skip, true)) ||
      (st = sm_check_tensor(fn, "y", ctx, y, false)))
    return st;
  if (x->rank != 3)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x has rank %d; it must be [B, L, C]", fn,
                   x->rank);
  if (h->rank != 2)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: h has rank %d; it must be [C, Lh]", fn,
                   h->rank);
  const seqmix_conv_method method = params ? params->method : SEQMIX_CONV_AUTO;
  if (method != SEQMIX_CONV_AUTO && method != SEQMIX_CONV_DIRECT && method != SEQMIX_CONV_FFT)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: params->method is %d; it must be SEQMIX_CONV_AUTO, _DIRECT or _FFT", fn,
                   (int)method);
  const int64_t B = x->shape[0], L = x->shape[1], C = x->shape[2], Lh = h->shape[1];
  static const char *const blc[] = {"B", "L", "C"}, *const c_lh[] = {"C", "Lh"},
                           *const c_only[] = {"C"};
  const int64_t y_shape[] = {B, L, C}, h_shape[] = {C, Lh}, d_shape[] = {C};
  if ((st = sm_check_activation_dtype(fn, "x", x)) ||
      (st = sm_check_same_dtype(fn, "y", y, "x", x)) ||
      (st = sm_check_param_dtype(fn, "h", h, x)) ||
      (D_skip && (st = sm_check_param_dtype(fn, "D_skip", D_skip, x))) ||
      (st = sm_check_shape(fn, "h", h, 2, h_shape, c_lh)) ||
      (st = sm_check_shape(fn, "y", y, 3, y_shape, blc)) ||
      (D_skip && (st = sm_check_shape(fn, "D_skip", D_skip, 1, d_shape, c_only))) ||
      (st = sm_check_no_overlap(fn, "y", y, "x", x)) ||
      (st = sm_check_no_overlap(fn, "y", y, "h", h)) ||
      (st = sm_check_no_overlap(fn, "y", y, "D_skip", D_skip)))
    return st;

  sm_op op;
  memset(&op, 0, sizeof op);
  op.kind = SM_OP_LONG_CONV;
  op.name = fn;
  op.tensor_count = 4;
  op.tensors[SM_LCONV_X] = sm_tensor_ref_of(x);
  op.tensors[SM_LCONV_H] = sm_tensor_ref_of(h);
  op.tensors[SM_LCONV_D_SKIP] = sm_tensor_ref_of(D_skip);
  op.tensors[SM_LCONV_Y] = sm_tensor_ref_of(y);
  op.output_mask = 1u << SM_LCONV_Y;
  seqmix_conv_method resolved = method;
  if (method == SEQMIX_CONV_AUTO) {
    /* A tuned crossover moves the cost model's threshold (percent). */
    const int64_t knob = ctx->tuning.value[SM_KNOB_LONG_CONV_CROSSOVER];
    const double threshold = knob > 0 ? (double)knob / 100.0 : 1.0;
    resolved = sm_long_conv_direct_over_fft(L, Lh) > threshold ? SEQMIX_CONV_FFT
                                                               : SEQMIX_CONV_DIRECT;
  }
  op.u.long_conv = (sm_long_conv_desc){B, L, C, Lh, resolved};
  return sm_dispatch(ctx, &op);
}

/* ---- Pool mixer ------------------------------------------------------------------- */

seqmix_status seqmix_pool_mixer(seqmix_context *ctx, const seqmix_tensor *x, seqmix_tensor *y,
                                const seqmix_pool_params *params) {
  static const char fn[] = "seqmix_pool_mixer";
  seqmix_status st;
  if ((st = sm_check_context(fn, ctx)) || (st = sm_check_tensor(fn, "x", ctx, x, false)) ||
      (st = sm_check_tensor(fn, "y", ctx, y, false)))
    return st;
  if (x->rank != 4)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x has rank %d; it must be [B, H, W, C]",
                   fn, x->rank);
  const int32_t pool = params && params->pool ? params->pool : 3;
  if (pool < 1 || pool % 2 == 0)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: params->pool is %d; it must be odd and >= 1 (0 means 3)", fn, (int)pool);
  static const char *const bhwc[] = {"B", "H", "W", "C"};
  if ((st = sm_check_activation_dtype(fn, "x", x)) ||
      (st = sm_check_same_dtype(fn, "y", y, "x", x)) ||
      (st = sm_check_shape(fn, "y", y, 4, x->shape, bhwc)) ||
      (st = sm_check_no_overlap(fn, "y", y, "x", x)))
    return st;
  sm_op op;
  memset(&op, 0, sizeof op);
  op.kind = SM_OP_POOL_MIXER;
  op.name = fn;
  op.tensor_count = 2;
  op.tensors[SM_POOL_X] = sm_tensor_ref_of(x);
  op.tensors[SM_POOL_Y] = sm_tensor_ref_of(y);
  op.output_mask = 1u << SM_POOL_Y;
  op.u.pool = (sm_pool_desc){x->shape[0], x->shape[1], x->shape[2], x->shape[3], pool};
  return sm_dispatch(ctx, &op);
}

/* ---- Float64 references ------------------------------------------------------------ */

seqmix_status seqmix_reference_conv2d_depthwise(int64_t batch, int64_t height, int64_t width,
                                                int64_t channels, int64_t kernel_h,
                                                int64_t kernel_w, const double *x,
                                                const double *weight, const double *bias,
                                                double *y, const seqmix_conv2d_params *params) {
  static const char fn[] = "seqmix_reference_conv2d_depthwise";
  if (batch < 1 || height < 1 || width < 1 || channels < 1 || kernel_h < 1 || kernel_w < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: sizes must be >= 1", fn);
  if (!x || !weight || !y)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x, weight and y are required", fn);
  int32_t sh, sw, ph, pw, dh, dw;
  seqmix_status st = resolve_params(fn, params, &sh, &sw, &ph, &pw, &dh, &dw);
  if (st) return st;
  const int64_t C = channels, Ho = conv_out_extent(height, kernel_h, sh, ph, dh),
                Wo = conv_out_extent(width, kernel_w, sw, pw, dw);
  if (Ho < 1 || Wo < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: the output would be empty", fn);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < Ho; ++i)
      for (int64_t j = 0; j < Wo; ++j)
        for (int64_t c = 0; c < C; ++c) {
          double acc = bias ? bias[c] : 0.0;
          for (int64_t u = 0; u < kernel_h; ++u) {
            const int64_t r = i * sh - ph + u * dh;
            if (r < 0 || r >= height) continue;
            for (int64_t v = 0; v < kernel_w; ++v) {
              const int64_t s = j * sw - pw + v * dw;
              if (s < 0 || s >= width) continue;
              acc += weight[(u * kernel_w + v) * C + c] * x[((b * height + r) * width + s) * C + c];
            }
          }
          y[((b * Ho + i) * Wo + j) * C + c] = acc;
        }
  return SEQMIX_OK;
}

seqmix_status seqmix_reference_long_conv(int64_t batch, int64_t tokens, int64_t channels,
                                         int64_t filter_len, const double *x, const double *h,
                                         const double *D_skip, double *y) {
  static const char fn[] = "seqmix_reference_long_conv";
  if (batch < 1 || tokens < 1 || channels < 1 || filter_len < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: sizes must be >= 1", fn);
  if (!x || !h || !y)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x, h and y are required", fn);
  const int64_t L = tokens, C = channels, Lh = filter_len;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c) {
        const double *xc = x + b * L * C + c;
        double acc = D_skip ? D_skip[c] * xc[t * C] : 0.0;
        const int64_t taps = t + 1 < Lh ? t + 1 : Lh;
        for (int64_t s = 0; s < taps; ++s) acc += h[c * Lh + s] * xc[(t - s) * C];
        y[(b * L + t) * C + c] = acc;
      }
  return SEQMIX_OK;
}

seqmix_status seqmix_reference_pool_mixer(int64_t batch, int64_t height, int64_t width,
                                          int64_t channels, const double *x, double *y,
                                          const seqmix_pool_params *params) {
  static const char fn[] = "seqmix_reference_pool_mixer";
  if (batch < 1 || height < 1 || width < 1 || channels < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: sizes must be >= 1", fn);
  if (!x || !y) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x and y are required", fn);
  const int64_t pool = params && params->pool ? params->pool : 3, r = pool / 2, C = channels;
  if (pool < 1 || pool % 2 == 0)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: pool must be odd and >= 1", fn);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < height; ++i)
      for (int64_t j = 0; j < width; ++j) {
        const int64_t i0 = i - r < 0 ? 0 : i - r, i1 = i + r >= height ? height - 1 : i + r;
        const int64_t j0 = j - r < 0 ? 0 : j - r, j1 = j + r >= width ? width - 1 : j + r;
        const double count = (double)((i1 - i0 + 1) * (j1 - j0 + 1));
        for (int64_t c = 0; c < C; ++c) {
          double sum = 0.0;
          for (int64_t u = i0; u <= i1; ++u)
            for (int64_t v = j0; v <= j1; ++v) sum += x[((b * height + u) * width + v) * C + c];
          const double self = x[((b * height + i) * width + j) * C + c];
          y[((b * height + i) * width + j) * C + c] = sum / count - self;
        }
      }
  return SEQMIX_OK;
}
