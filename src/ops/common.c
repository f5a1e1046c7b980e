/* Dtype and aliasing rules shared by every op family (API.md, "Dtypes"). */
#include "ops/ops.h"

seqmix_status sm_check_activation_dtype(const char *fn, const char *arg, const seqmix_tensor *t) {
  if (t->dtype == SEQMIX_F32 || t->dtype == SEQMIX_F16 || t->dtype == SEQMIX_BF16)
    return SEQMIX_OK;
  return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is %s; it must be f32, f16 or bf16", fn,
                 arg, seqmix_dtype_name(t->dtype));
}

seqmix_status sm_check_same_dtype(const char *fn, const char *arg, const seqmix_tensor *t,
                                  const char *act_arg, const seqmix_tensor *act) {
  if (t->dtype == act->dtype) return SEQMIX_OK;
  return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is %s but %s is %s; they must match", fn,
                 arg, seqmix_dtype_name(t->dtype), act_arg, seqmix_dtype_name(act->dtype));
}

seqmix_status sm_check_param_dtype(const char *fn, const char *arg, const seqmix_tensor *t,
                                   const seqmix_tensor *act) {
  if (t->dtype == SEQMIX_F32 || t->dtype == act->dtype) return SEQMIX_OK;
  return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                 "%s: %s is %s; parameters must be f32 or the activations' dtype (%s)", fn, arg,
                 seqmix_dtype_name(t->dtype), seqmix_dtype_name(act->dtype));
}

seqmix_status sm_check_f32(const char *fn, const char *arg, const seqmix_tensor *t) {
  if (t->dtype == SEQMIX_F32) return SEQMIX_OK;
  return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is %s; it must be f32", fn, arg,
                 seqmix_dtype_name(t->dtype));
}

seqmix_status sm_check_no_overlap(const char *fn, const char *out_arg, const seqmix_tensor *out,
                                  const char *in_arg, const seqmix_tensor *in) {
  if (!out || !in || out->storage != in->storage) return SEQMIX_OK;
  int64_t a0, a1, b0, b1;
  sm_tensor_span(out, &a0, &a1);
  sm_tensor_span(in, &b0, &b1);
  size_t ea = seqmix_dtype_size(out->dtype), eb = seqmix_dtype_size(in->dtype);
  if ((uint64_t)a1 * ea <= (uint64_t)b0 * eb || (uint64_t)b1 * eb <= (uint64_t)a0 * ea)
    return SEQMIX_OK;
  return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                 "%s: %s overlaps %s in memory; outputs must not alias the inputs", fn, out_arg,
                 in_arg);
}
