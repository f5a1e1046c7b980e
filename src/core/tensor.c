/* Tensors: dense allocations and strided views over shared storage. */
#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

const char *seqmix_dtype_name(seqmix_dtype dtype) {
  switch (dtype) {
  case SEQMIX_F32: return "f32";
  case SEQMIX_F16: return "f16";
  case SEQMIX_BF16: return "bf16";
  case SEQMIX_I32: return "i32";
  }
  return NULL;
}

size_t seqmix_dtype_size(seqmix_dtype dtype) {
  switch (dtype) {
  case SEQMIX_F32:
  case SEQMIX_I32: return 4;
  case SEQMIX_F16:
  case SEQMIX_BF16: return 2;
  }
  return 0;
}

int64_t sm_tensor_numel(const seqmix_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; ++i) n *= t->shape[i];
  return n;
}

size_t sm_tensor_bytes(const seqmix_tensor *t) {
  return (size_t)sm_tensor_numel(t) * seqmix_dtype_size(t->dtype);
}

void sm_tensor_span(const seqmix_tensor *t, int64_t *first, int64_t *last_plus_one) {
  int64_t last = t->offset;
  for (int i = 0; i < t->rank; ++i) last += (t->shape[i] - 1) * t->strides[i];
  *first = t->offset;
  *last_plus_one = last + 1;
}

static bool is_dense(const seqmix_tensor *t) {
  int64_t expect = 1;
  for (int i = t->rank - 1; i >= 0; --i) {
    if (t->shape[i] != 1 && t->strides[i] != expect) return false;
    expect *= t->shape[i];
  }
  return true;
}

uint64_t sm_next_version(void) {
  static _Atomic uint64_t counter;
  return ++counter;
}

sm_tensor_ref sm_tensor_ref_of(const seqmix_tensor *t) {
  sm_tensor_ref r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < SEQMIX_MAX_RANK; ++i) r.shape[i] = 1;
  if (!t) return r;
  r.buffer = t->storage->buffer;
  r.version = t->storage->version;
  r.owner = t->storage;
  r.dtype = t->dtype;
  r.rank = t->rank;
  r.offset = t->offset;
  for (int i = 0; i < t->rank; ++i) {
    r.shape[i] = t->shape[i];
    r.strides[i] = t->strides[i];
  }
  return r;
}

/* Validates rank and dims; the element count must fit in int64 and the byte
 * count in size_t. */
static seqmix_status check_shape(const char *fn, int rank, const int64_t *shape,
                                 seqmix_dtype dtype, int64_t *numel) {
  if (rank < 1 || rank > SEQMIX_MAX_RANK)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: rank is %d; it must be 1 to %d", fn, rank,
                   SEQMIX_MAX_RANK);
  if (!shape) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: shape is NULL", fn);
  int64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    if (shape[i] < 1)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: shape[%d] is %lld; every dim must be >= 1",
                     fn, i, (long long)shape[i]);
    if (n > INT64_MAX / shape[i])
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: shape overflows the element count", fn);
    n *= shape[i];
  }
  size_t esize = seqmix_dtype_size(dtype);
  if ((uint64_t)n > SIZE_MAX / esize || (uint64_t)n > (uint64_t)INT64_MAX / esize)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: shape overflows the byte size", fn);
  *numel = n;
  return SEQMIX_OK;
}

static void link_tensor(seqmix_context *ctx, seqmix_tensor *t) {
  t->prev = NULL;
  t->next = ctx->tensors;
  if (ctx->tensors) ctx->tensors->prev = t;
  ctx->tensors = t;
}

static void unlink_tensor(seqmix_context *ctx, seqmix_tensor *t) {
  if (t->prev) t->prev->next = t->next;
  else ctx->tensors = t->next;
  if (t->next) t->next->prev = t->prev;
}

seqmix_status seqmix_tensor_create(seqmix_context *ctx, seqmix_dtype dtype, int rank,
                                   const int64_t *shape, seqmix_tensor **out) {
  static const char fn[] = "seqmix_tensor_create";
  if (!out) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  *out = NULL;
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  if (!seqmix_dtype_size(dtype))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: dtype %d is not a seqmix_dtype", fn,
                   (int)dtype);
  int64_t numel;
  seqmix_status st = check_shape(fn, rank, shape, dtype, &numel);
  if (st) return st;

  seqmix_tensor *t = calloc(1, sizeof *t);
  sm_storage *s = calloc(1, sizeof *s);
  if (!t || !s) {
    st = sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    goto fail;
  }
  s->ctx = ctx;
  s->bytes = (size_t)numel * seqmix_dtype_size(dtype);
  s->refs = 1;
  s->version = sm_next_version();
  st = ctx->backend->alloc(ctx->device, s->bytes, &s->buffer);
  if (st) goto fail;

  t->ctx = ctx;
  t->storage = s;
  t->dtype = dtype;
  t->rank = rank;
  int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    t->shape[i] = shape[i];
    t->strides[i] = stride;
    stride *= shape[i];
  }
  pthread_mutex_lock(&ctx->lock);
  link_tensor(ctx, t);
  pthread_mutex_unlock(&ctx->lock);
  *out = t;
  return SEQMIX_OK;
fail:
  free(s);
  free(t);
  return st;
}

seqmix_status seqmix_tensor_view(seqmix_tensor *base, int rank, const int64_t *shape,
                                 const int64_t *strides, int64_t offset, seqmix_tensor **out) {
  static const char fn[] = "seqmix_tensor_view";
  if (!out) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  *out = NULL;
  if (!base) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: base is NULL", fn);
  int64_t numel;
  seqmix_status st = check_shape(fn, rank, shape, base->dtype, &numel);
  if (st) return st;
  if (!strides) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: strides is NULL", fn);
  if (strides[rank - 1] != 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: strides[%d] is %lld; the innermost stride must be 1", fn, rank - 1,
                   (long long)strides[rank - 1]);
  if (offset < 0)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: offset is %lld; it must be >= 0", fn,
                   (long long)offset);
  int64_t capacity = (int64_t)(base->storage->bytes / seqmix_dtype_size(base->dtype));
  int64_t last = offset;
  for (int i = 0; i < rank; ++i) {
    if (strides[i] < 0)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: strides[%d] is %lld; strides must be >= 0",
                     fn, i, (long long)strides[i]);
    if (strides[i] > 0 && shape[i] - 1 > (capacity - last) / strides[i])
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: the view reaches past its base's storage of %lld elements", fn,
                     (long long)capacity);
    last += (shape[i] - 1) * strides[i];
  }
  if (last >= capacity)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: the view reaches past its base's storage of %lld elements", fn,
                   (long long)capacity);

  seqmix_tensor *t = calloc(1, sizeof *t);
  if (!t) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  seqmix_context *ctx = base->ctx;
  t->ctx = ctx;
  t->storage = base->storage;
  t->dtype = base->dtype;
  t->rank = rank;
  t->offset = offset;
  for (int i = 0; i < rank; ++i) {
    t->shape[i] = shape[i];
    t->strides[i] = strides[i];
  }
  pthread_mutex_lock(&ctx->lock);
  t->storage->refs++;
  link_tensor(ctx, t);
  pthread_mutex_unlock(&ctx->lock);
  *out = t;
  return SEQMIX_OK;
}

static void release_storage(seqmix_context *ctx, sm_storage *s) {
  if (--s->refs > 0) return;
  ctx->backend->free(ctx->device, s->buffer);
  free(s);
}

void seqmix_tensor_destroy(seqmix_tensor *t) {
  if (!t) return;
  seqmix_context *ctx = t->ctx;
  pthread_mutex_lock(&ctx->lock);
  unlink_tensor(ctx, t);
  release_storage(ctx, t->storage);
  pthread_mutex_unlock(&ctx->lock);
  free(t);
}

void sm_context_release_tensors(seqmix_context *ctx) {
  while (ctx->tensors) seqmix_tensor_destroy(ctx->tensors);
}

/* Visits the dense row-major element order of t: calls fn for every innermost
 * row with the element offset of the row in storage and its index in dense order. */
typedef void (*row_fn)(int64_t storage_offset, int64_t dense_index, int64_t row_len, void *arg);
static void for_each_row(const seqmix_tensor *t, int64_t base, row_fn fn, void *arg) {
  int64_t idx[SEQMIX_MAX_RANK] = {0};
  int inner = t->rank - 1;
  int64_t row_len = t->shape[inner];
  int64_t rows = sm_tensor_numel(t) / row_len;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off = t->offset - base;
    for (int i = 0; i < inner; ++i) off += idx[i] * t->strides[i];
    fn(off, r * row_len, row_len, arg);
    for (int i = inner - 1; i >= 0; --i) {
      if (++idx[i] < t->shape[i]) break;
      idx[i] = 0;
    }
  }
}

typedef struct row_copy {
  unsigned char *span;
  unsigned char *dense;
  size_t esize;
  bool to_dense;
} row_copy;

static void copy_row(int64_t storage_offset, int64_t dense_index, int64_t row_len, void *arg) {
  row_copy *c = arg;
  unsigned char *s = c->span + (size_t)storage_offset * c->esize;
  unsigned char *d = c->dense + (size_t)dense_index * c->esize;
  if (c->to_dense) memcpy(d, s, (size_t)row_len * c->esize);
  else memcpy(s, d, (size_t)row_len * c->esize);
}

static seqmix_status check_io(const char *fn, const seqmix_tensor *t, const void *data,
                              const char *data_name, size_t bytes) {
  if (!t) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: t is NULL", fn);
  if (!data) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", fn, data_name);
  if (bytes != sm_tensor_bytes(t))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: bytes is %zu; the tensor holds %zu bytes (%lld %s elements)", fn, bytes,
                   sm_tensor_bytes(t), (long long)sm_tensor_numel(t), seqmix_dtype_name(t->dtype));
  return SEQMIX_OK;
}

/* Moves dense host bytes to or from a tensor: directly when the tensor is
 * dense, else through a host copy of the span it touches. */
static seqmix_status transfer(const char *fn, const seqmix_tensor *t, void *dense, bool to_device) {
  seqmix_context *ctx = t->ctx;
  if (to_device) t->storage->version = sm_next_version();
  size_t esize = seqmix_dtype_size(t->dtype);
  if (is_dense(t)) {
    size_t off = (size_t)t->offset * esize, bytes = sm_tensor_bytes(t);
    return to_device ? ctx->backend->write(ctx->device, t->storage->buffer, off, dense, bytes)
                     : ctx->backend->read(ctx->device, t->storage->buffer, off, dense, bytes);
  }
  int64_t first, end;
  sm_tensor_span(t, &first, &end);
  size_t span_bytes = (size_t)(end - first) * esize;
  unsigned char *span = malloc(span_bytes);
  if (!span) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  /* Writes read the span first so elements between the view's rows keep their values. */
  seqmix_status st = ctx->backend->read(ctx->device, t->storage->buffer, (size_t)first * esize,
                                        span, span_bytes);
  if (!st) {
    row_copy c = {span, dense, esize, !to_device};
    for_each_row(t, first, copy_row, &c);
    if (to_device)
      st = ctx->backend->write(ctx->device, t->storage->buffer, (size_t)first * esize, span,
                               span_bytes);
  }
  free(span);
  return st;
}

seqmix_status seqmix_tensor_write(seqmix_tensor *t, const void *src, size_t bytes) {
  static const char fn[] = "seqmix_tensor_write";
  seqmix_status st = check_io(fn, t, src, "src", bytes);
  if (st) return st;
  return transfer(fn, t, (void *)src, true);
}

seqmix_status seqmix_tensor_read(const seqmix_tensor *t, void *dst, size_t bytes) {
  static const char fn[] = "seqmix_tensor_read";
  seqmix_status st = check_io(fn, t, dst, "dst", bytes);
  if (st) return st;
  return transfer(fn, t, dst, false);
}

static seqmix_status check_float_io(const char *fn, const seqmix_tensor *t, const void *data,
                                    const char *data_name, size_t count) {
  if (!t) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: t is NULL", fn);
  if (!data) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", fn, data_name);
  if (t->dtype == SEQMIX_I32)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: t is i32; it must be f32, f16 or bf16", fn);
  if ((int64_t)count != sm_tensor_numel(t))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: count is %zu; the tensor holds %lld elements",
                   fn, count, (long long)sm_tensor_numel(t));
  return SEQMIX_OK;
}

seqmix_status seqmix_tensor_write_f32(seqmix_tensor *t, const float *src, size_t count) {
  static const char fn[] = "seqmix_tensor_write_f32";
  seqmix_status st = check_float_io(fn, t, src, "src", count);
  if (st) return st;
  if (t->dtype == SEQMIX_F32) return transfer(fn, t, (void *)src, true);
  void *tmp = malloc(sm_tensor_bytes(t));
  if (!tmp) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  sm_convert_from_f32(t->dtype, src, tmp, count);
  st = transfer(fn, t, tmp, true);
  free(tmp);
  return st;
}

seqmix_status seqmix_tensor_read_f32(const seqmix_tensor *t, float *dst, size_t count) {
  static const char fn[] = "seqmix_tensor_read_f32";
  seqmix_status st = check_float_io(fn, t, dst, "dst", count);
  if (st) return st;
  if (t->dtype == SEQMIX_F32) return transfer(fn, t, dst, false);
  void *tmp = malloc(sm_tensor_bytes(t));
  if (!tmp) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  st = transfer(fn, t, tmp, false);
  if (!st) sm_convert_to_f32(t->dtype, tmp, dst, count);
  free(tmp);
  return st;
}

int seqmix_tensor_rank(const seqmix_tensor *t) { return t ? t->rank : 0; }
int64_t seqmix_tensor_dim(const seqmix_tensor *t, int axis) {
  return (t && axis >= 0 && axis < t->rank) ? t->shape[axis] : 0;
}
seqmix_dtype seqmix_tensor_dtype(const seqmix_tensor *t) { return t ? t->dtype : SEQMIX_F32; }
int64_t seqmix_tensor_numel(const seqmix_tensor *t) { return t ? sm_tensor_numel(t) : 0; }

seqmix_status seqmix_tensor_copy(seqmix_tensor *dst, const seqmix_tensor *src) {
  static const char fn[] = "seqmix_tensor_copy";
  if (!dst) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: dst is NULL", fn);
  if (!src) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: src is NULL", fn);
  if (dst->ctx != src->ctx)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: src and dst belong to different contexts",
                   fn);
  if (dst->dtype != src->dtype || sm_tensor_numel(dst) != sm_tensor_numel(src))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: dst is %lld %s elements but src is %lld %s; they must match", fn,
                   (long long)sm_tensor_numel(dst), seqmix_dtype_name(dst->dtype),
                   (long long)sm_tensor_numel(src), seqmix_dtype_name(src->dtype));
  if (!is_dense(dst) || !is_dense(src))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: %s is a strided view; only dense tensors can be copied", fn,
                   is_dense(dst) ? "src" : "dst");
  seqmix_context *ctx = dst->ctx;
  size_t esize = seqmix_dtype_size(dst->dtype);
  if (dst->storage == src->storage) {
    size_t a = (size_t)dst->offset, b = (size_t)src->offset, n = (size_t)sm_tensor_numel(dst);
    if (a < b + n && b < a + n)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: dst overlaps src", fn);
  }
  dst->storage->version = sm_next_version();
  return ctx->backend->copy(ctx->device, src->storage->buffer, (size_t)src->offset * esize,
                            dst->storage->buffer, (size_t)dst->offset * esize, sm_tensor_bytes(dst));
}
