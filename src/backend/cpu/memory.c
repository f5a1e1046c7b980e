/* CPU buffers: 64-byte aligned host memory. */
#include "backend/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

seqmix_status sm_cpu_alloc(sm_device *dev, size_t bytes, sm_buffer **out) {
  (void)dev;
  sm_buffer *buf = malloc(sizeof *buf);
  size_t rounded = (bytes + 63) & ~(size_t)63;
  void *data = NULL;
  if (!buf || rounded < bytes || posix_memalign(&data, 64, rounded ? rounded : 64) != 0) {
    free(buf);
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "cpu backend: cannot allocate %zu bytes", bytes);
  }
  buf->data = data;
  buf->bytes = bytes;
  *out = buf;
  return SEQMIX_OK;
}

void *sm_cpu_scratch(sm_device *dev, size_t bytes) {
  if (dev->scratch_bytes >= bytes) return dev->scratch;
  free(dev->scratch);
  dev->scratch = NULL, dev->scratch_bytes = 0;
  size_t rounded = (bytes + 63) & ~(size_t)63;
  if (rounded < bytes || posix_memalign(&dev->scratch, 64, rounded ? rounded : 64) != 0) {
    dev->scratch = NULL;
    return NULL;
  }
  dev->scratch_bytes = rounded;
  return dev->scratch;
}

void sm_cpu_free(sm_device *dev, sm_buffer *buf) {
  (void)dev;
  if (!buf) return;
  free(buf->data);
  free(buf);
}

seqmix_status sm_cpu_write(sm_device *dev, sm_buffer *buf, size_t offset, const void *src,
                           size_t bytes) {
  (void)dev;
  memcpy((char *)buf->data + offset, src, bytes);
  return SEQMIX_OK;
}

seqmix_status sm_cpu_read(sm_device *dev, sm_buffer *buf, size_t offset, void *dst, size_t bytes) {
  (void)dev;
  memcpy(dst, (const char *)buf->data + offset, bytes);
  return SEQMIX_OK;
}

seqmix_status sm_cpu_copy(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                          size_t dst_offset, size_t bytes) {
  (void)dev;
  memmove((char *)dst->data + dst_offset, (const char *)src->data + src_offset, bytes);
  return SEQMIX_OK;
}
