/* Core's private types: contexts, tensors, the device registry, dispatch. */
#ifndef SEQMIX_CORE_INTERNAL_H
#define SEQMIX_CORE_INTERNAL_H

#include "backend/backend.h"

#include <pthread.h>

/* Storage shared by a tensor and its views; freed with the last reference. */
typedef struct sm_storage {
  seqmix_context *ctx;
  sm_buffer *buffer;
  size_t bytes;
  int refs;
  /* Changes whenever the contents may have changed (write, copy, an op's
   * output); unique across storages (sm_next_version), so backends can key
   * derived data such as a filter's transform on it. */
  uint64_t version;
} sm_storage;

/* A fresh content version (a process-wide counter). */
uint64_t sm_next_version(void);

struct seqmix_tensor {
  seqmix_context *ctx;
  sm_storage *storage;
  seqmix_dtype dtype;
  int rank;
  int64_t shape[SEQMIX_MAX_RANK];
  int64_t strides[SEQMIX_MAX_RANK];
  int64_t offset; /* elements from the start of storage */
  seqmix_tensor *prev, *next; /* the context's list of live tensors */
};

struct seqmix_context {
  const sm_backend *backend;
  sm_device *device;
  seqmix_device_info info;
  /* The CPU device that runs ops the context's device cannot; lazily opened
   * (and the same as `device` when the context is on the CPU). */
  sm_device *fallback;
  sm_open_options open_options;
  char cache_dir[1024];
  seqmix_tensor *tensors; /* live tensors, freed by context_destroy */
  seqmix_context_stats stats;
  bool fallback_logged[SM_OP_KIND_COUNT];
  uint32_t forced_fallback; /* op kinds $SEQMIX_FALLBACK_OPS sends to the CPU (bit = kind) */
  sm_tuning tuning;         /* knob values: stored winners (tuning.c), else 0 */
  pthread_mutex_t lock; /* guards the tensor list and storage refcounts */
};

/* Device registry (device.c). */
seqmix_status sm_registry_get(const sm_device_entry **entries, const sm_backend ***backends,
                              size_t *count);

/* Tensors (tensor.c). */
size_t sm_tensor_bytes(const seqmix_tensor *t); /* dense bytes of its shape */
int64_t sm_tensor_numel(const seqmix_tensor *t);
sm_tensor_ref sm_tensor_ref_of(const seqmix_tensor *t); /* t may be NULL */
void sm_context_release_tensors(seqmix_context *ctx);

/* Tuning (tuning.c): loads the stored winners of the context's device. */
void sm_tuning_load(seqmix_context *ctx);

/* Dispatch (dispatch.c): run on the context's device, or visibly on the CPU;
 * op->tuning is set to the context's knobs first. */
seqmix_status sm_dispatch(seqmix_context *ctx, sm_op *op);
/* Op kinds named in a comma-separated list ("conv1d_causal,..." or "all"). */
uint32_t sm_op_kinds_from_list(const char *list);

/* Argument checks shared by the ops (status.c). Each returns OK or sets the
 * last error naming fn and arg, and returns INVALID_ARGUMENT. */
seqmix_status sm_check_context(const char *fn, const seqmix_context *ctx);
seqmix_status sm_check_tensor(const char *fn, const char *arg, const seqmix_context *ctx,
                              const seqmix_tensor *t, bool optional);
seqmix_status sm_check_shape(const char *fn, const char *arg, const seqmix_tensor *t, int rank,
                             const int64_t *shape, const char *const *dim_names);

/* Strides-aware element counts and the byte span a tensor touches. */
void sm_tensor_span(const seqmix_tensor *t, int64_t *first, int64_t *last_plus_one);

/* Host conversion of n elements between dtypes via float (convert.c). */
void sm_convert_to_f32(seqmix_dtype from, const void *src, float *dst, size_t n);
void sm_convert_from_f32(seqmix_dtype to, const float *src, void *dst, size_t n);

#endif
