/* Causal depthwise conv1d: argument rules, op descriptor, float64 reference. */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

seqmix_status seqmix_conv1d_causal(seqmix_context *ctx, const seqmix_tensor *x,
                                   const seqmix_tensor *weight, const seqmix_tensor *bias,
                                   seqmix_tensor *state, seqmix_tensor *y,
                                   const seqmix_conv1d_params *params) {
  static const char fn[] = "seqmix_conv1d_causal";
  seqmix_status st;
  if ((st = sm_check_context(fn, ctx)) || (st = sm_check_tensor(fn, "x", ctx, x, false)) ||
      (st = sm_check_tensor(fn, "weight", ctx, weight, false)) ||
      (st = sm_check_tensor(fn, "bias", ctx, bias, true)) ||
      (st = sm_check_tensor(fn, "state", ctx, state, true)) ||
      (st = sm_check_tensor(fn, "y", ctx, y, false)))
    return st;
  if (x->rank != 3)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x has rank %d; it must be [B, L, C]", fn,
                   x->rank);
  if (weight->rank != 2)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: weight has rank %d; it must be [C, K]", fn,
                   weight->rank);
  const int64_t B = x->shape[0], L = x->shape[1], C = x->shape[2], K = weight->shape[1];
  static const char *const bl_c[] = {"B", "L", "C"}, *const c_k[] = {"C", "K"},
                           *const c_only[] = {"C"}, *const b_k1_c[] = {"B", "K-1", "C"};
  const int64_t y_shape[] = {B, L, C}, w_shape[] = {C, K}, b_shape[] = {C},
                s_shape[] = {B, K - 1, C};
  if ((st = sm_check_activation_dtype(fn, "x", x)) || (st = sm_check_same_dtype(fn, "y", y, "x", x)) ||
      (st = sm_check_param_dtype(fn, "weight", weight, x)) ||
      (bias && (st = sm_check_param_dtype(fn, "bias", bias, x))) ||
      (state && (st = sm_check_f32(fn, "state", state))))
    return st;
  if ((st = sm_check_shape(fn, "weight", weight, 2, w_shape, c_k)) ||
      (st = sm_check_shape(fn, "y", y, 3, y_shape, bl_c)) ||
      (bias && (st = sm_check_shape(fn, "bias", bias, 1, b_shape, c_only))))
    return st;
  if (state) {
    if (K < 2)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: state is given but K is 1; a kernel of width 1 has no state (pass NULL)",
                     fn);
    if ((st = sm_check_shape(fn, "state", state, 3, s_shape, b_k1_c))) return st;
  }
  if ((st = sm_check_no_overlap(fn, "y", y, "x", x)) ||
      (st = sm_check_no_overlap(fn, "y", y, "weight", weight)) ||
      (st = sm_check_no_overlap(fn, "y", y, "bias", bias)) ||
      (st = sm_check_no_overlap(fn, "y", y, "state", state)) ||
      (st = sm_check_no_overlap(fn, "state", state, "x", x)) ||
      (st = sm_check_no_overlap(fn, "state", state, "weight", weight)) ||
      (st = sm_check_no_overlap(fn, "state", state, "bias", bias)))
    return st;

  sm_op op;
  memset(&op, 0, sizeof op);
  op.kind = SM_OP_CONV1D_CAUSAL;
  op.name = fn;
  op.tensor_count = 5;
  op.tensors[SM_CONV1D_X] = sm_tensor_ref_of(x);
  op.tensors[SM_CONV1D_WEIGHT] = sm_tensor_ref_of(weight);
  op.tensors[SM_CONV1D_BIAS] = sm_tensor_ref_of(bias);
  op.tensors[SM_CONV1D_STATE] = sm_tensor_ref_of(state);
  op.tensors[SM_CONV1D_Y] = sm_tensor_ref_of(y);
  op.output_mask = (1u << SM_CONV1D_Y) | (state ? 1u << SM_CONV1D_STATE : 0u);
  op.u.conv1d = (sm_conv1d_desc){B, L, C, K, params ? params->silu : false};
  return sm_dispatch(ctx, &op);
}

seqmix_status seqmix_reference_conv1d_causal(int64_t batch, int64_t tokens, int64_t channels,
                                             int64_t kernel, const double *x,
                                             const double *weight, const double *bias,
                                             double *state, double *y,
                                             const seqmix_conv1d_params *params) {
  static const char fn[] = "seqmix_reference_conv1d_causal";
  if (batch < 1 || tokens < 1 || channels < 1 || kernel < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: sizes must be >= 1", fn);
  if (!x || !weight || !y)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x, weight and y are required", fn);
  if (state && kernel < 2)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: state needs kernel >= 2", fn);
  const int64_t B = batch, L = tokens, C = channels, K = kernel, S = K - 1;
  const bool silu = params && params->silu;
  /* xin(s) for s in [-S, L): the state's columns, then x. */
  double *seq = malloc((size_t)(S + L) * sizeof *seq);
  if (!seq) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t s = 0; s < S; ++s) seq[s] = state ? state[(b * S + s) * C + c] : 0.0;
      for (int64_t t = 0; t < L; ++t) seq[S + t] = x[(b * L + t) * C + c];
      for (int64_t t = 0; t < L; ++t) {
        double acc = bias ? bias[c] : 0.0;
        for (int64_t j = 0; j < K; ++j) acc += weight[c * K + j] * seq[t + j];
        if (silu) acc = acc / (1.0 + exp(-acc));
        y[(b * L + t) * C + c] = acc;
      }
      if (state)
        for (int64_t s = 0; s < S; ++s) state[(b * S + s) * C + c] = seq[L + s];
    }
  free(seq);
  return SEQMIX_OK;
}
