/*
 * Dispatch: an op runs on the context's device when its backend supports it;
 * otherwise the CPU backend runs it. The fallback waits for the device, copies
 * the span each tensor touches to host buffers, runs, and writes the outputs
 * back. It is logged once per op kind per context and counted in the stats:
 * never silent, never an error.
 */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

static seqmix_status open_fallback(seqmix_context *ctx) {
  if (ctx->fallback) return SEQMIX_OK;
  const sm_device_entry *entries;
  const sm_backend **backends;
  size_t count;
  seqmix_status st = sm_registry_get(&entries, &backends, &count);
  if (st) return st;
  return sm_cpu_backend.open(&entries[0], &ctx->open_options, &ctx->fallback);
}

/* The bytes a tensor touches: [*first, *first + return) in bytes. */
static size_t ref_span_bytes(const sm_tensor_ref *r, size_t *first) {
  int64_t last = r->offset;
  for (int i = 0; i < r->rank; ++i) last += (r->shape[i] - 1) * r->strides[i];
  size_t esize = seqmix_dtype_size(r->dtype);
  *first = (size_t)r->offset * esize;
  return (size_t)(last + 1 - r->offset) * esize;
}

/* Moves one tensor's span between the device and its CPU copy through a host
 * bounce buffer (the CPU backend's write and read take host memory). */
static seqmix_status bounce(seqmix_context *ctx, const sm_op *op, const sm_tensor_ref *r,
                            sm_buffer *copy, bool to_cpu, unsigned char **staging, size_t *cap) {
  size_t first, bytes = ref_span_bytes(r, &first);
  if (bytes > *cap) {
    unsigned char *grown = realloc(*staging, bytes);
    if (!grown)
      return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory for the CPU fallback",
                     op->name);
    *staging = grown, *cap = bytes;
  }
  const sm_backend *dev_b = ctx->backend, *cpu = &sm_cpu_backend;
  seqmix_status st;
  if (to_cpu) {
    st = dev_b->read(ctx->device, r->buffer, first, *staging, bytes);
    return st ? st : cpu->write(ctx->fallback, copy, 0, *staging, bytes);
  }
  st = cpu->read(ctx->fallback, copy, 0, *staging, bytes);
  return st ? st : dev_b->write(ctx->device, r->buffer, first, *staging, bytes);
}

static seqmix_status run_on_cpu(seqmix_context *ctx, const sm_op *op) {
  const sm_backend *cpu = &sm_cpu_backend;
  sm_op host = *op;
  sm_buffer *copies[SM_OP_MAX_TENSORS] = {0};
  unsigned char *staging = NULL;
  size_t cap = 0;
  seqmix_status st = open_fallback(ctx);
  if (!st) st = ctx->backend->sync(ctx->device);
  for (int i = 0; i < op->tensor_count && !st; ++i) {
    const sm_tensor_ref *r = &op->tensors[i];
    if (!r->buffer) continue;
    size_t first, bytes = ref_span_bytes(r, &first);
    if ((st = cpu->alloc(ctx->fallback, bytes, &copies[i]))) break;
    st = bounce(ctx, op, r, copies[i], true, &staging, &cap);
    host.tensors[i].buffer = copies[i];
    host.tensors[i].offset = 0;
  }
  if (!st) st = cpu->launch(ctx->fallback, &host);
  if (!st) st = cpu->sync(ctx->fallback);
  for (int i = 0; i < op->tensor_count && !st; ++i)
    if (op->tensors[i].buffer && (op->output_mask & (1u << i)))
      st = bounce(ctx, op, &op->tensors[i], copies[i], false, &staging, &cap);
  for (int i = 0; i < op->tensor_count; ++i)
    if (copies[i]) cpu->free(ctx->fallback, copies[i]);
  free(staging);
  return st;
}

static const char *const op_kind_names[SM_OP_KIND_COUNT] = {
    [SM_OP_CONV1D_CAUSAL] = "conv1d_causal",
    [SM_OP_ATTENTION] = "attention",
    [SM_OP_ATTENTION_MERGE] = "attention_merge",
    [SM_OP_SELECTIVE_SCAN] = "selective_scan",
    [SM_OP_SSD] = "ssd",
    [SM_OP_LINEAR_ATTENTION] = "linear_attention",
    [SM_OP_CONV2D_DEPTHWISE] = "conv2d_depthwise",
    [SM_OP_LONG_CONV] = "long_conv",
    [SM_OP_POOL_MIXER] = "pool_mixer",
};

uint32_t sm_op_kinds_from_list(const char *list) {
  uint32_t kinds = 0;
  if (!list) return 0;
  for (int k = 0; k < SM_OP_KIND_COUNT; ++k) {
    const char *p = list;
    size_t len = strlen(op_kind_names[k]);
    while ((p = strstr(p, op_kind_names[k])) != NULL) {
      bool starts = p == list || p[-1] == ',', ends = p[len] == '\0' || p[len] == ',';
      if (starts && ends) kinds |= 1u << k;
      p += len;
    }
  }
  if (!strcmp(list, "all")) kinds = (1u << SM_OP_KIND_COUNT) - 1;
  return kinds;
}

/* The op may change its outputs: their storages get fresh versions. */
static void bump_outputs(const sm_op *op) {
  for (int i = 0; i < op->tensor_count; ++i)
    if (op->tensors[i].owner && (op->output_mask & (1u << i)))
      ((sm_storage *)op->tensors[i].owner)->version = sm_next_version();
}

seqmix_status sm_dispatch(seqmix_context *ctx, sm_op *op) {
  op->tuning = &ctx->tuning;
  bump_outputs(op);
  bool forced = ctx->forced_fallback & (1u << op->kind);
  if (!forced && ctx->backend->supports(ctx->device, op)) {
    seqmix_status st = ctx->backend->launch(ctx->device, op);
    if (!st) ctx->stats.ops_on_device++;
    return st;
  }
  if (!ctx->fallback_logged[op->kind]) {
    ctx->fallback_logged[op->kind] = true;
    if (forced)
      sm_log(SEQMIX_LOG_WARNING, "%s: SEQMIX_FALLBACK_OPS sends it from %s to the CPU fallback",
             op->name, ctx->info.id);
    else
      sm_log(SEQMIX_LOG_WARNING,
             "%s: %s cannot run this call (dtypes, features or limits); the CPU fallback runs it",
             op->name, ctx->info.id);
  }
  seqmix_status st = run_on_cpu(ctx, op);
  if (!st) ctx->stats.ops_on_fallback++;
  return st;
}
