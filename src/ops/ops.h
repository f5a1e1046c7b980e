/* Helpers shared by the op families in src/ops: dtype rules of API.md. */
#ifndef SEQMIX_OPS_H
#define SEQMIX_OPS_H

#include "core/internal.h"

/* Activation tensors: F32, F16 or BF16. */
seqmix_status sm_check_activation_dtype(const char *fn, const char *arg, const seqmix_tensor *t);
/* t has the dtype of the activations of the call (named act_arg). */
seqmix_status sm_check_same_dtype(const char *fn, const char *arg, const seqmix_tensor *t,
                                  const char *act_arg, const seqmix_tensor *act);
/* Parameter tensors: F32 or the activations' dtype. */
seqmix_status sm_check_param_dtype(const char *fn, const char *arg, const seqmix_tensor *t,
                                   const seqmix_tensor *act);
/* State tensors: F32. */
seqmix_status sm_check_f32(const char *fn, const char *arg, const seqmix_tensor *t);
/* An output must not share elements' storage with an input it reads. */
seqmix_status sm_check_no_overlap(const char *fn, const char *out_arg, const seqmix_tensor *out,
                                  const char *in_arg, const seqmix_tensor *in);

#endif
