/*
 * OpenCL buffers. Writes and reads block: the host memory they name is the
 * caller's only for the duration of the call, and a read must return filled.
 * Copies are queued; the in-order queue runs them after earlier work.
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <stdlib.h>

seqmix_status sm_cl_alloc(sm_device *dev, size_t bytes, sm_buffer **out) {
  *out = NULL;
  if (dev->caps.max_alloc_bytes && bytes > dev->caps.max_alloc_bytes)
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY,
                   "clCreateBuffer: %zu bytes exceed CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu) of %s",
                   bytes, (unsigned long long)dev->caps.max_alloc_bytes, dev->info.name);
  sm_buffer *buf = calloc(1, sizeof *buf);
  if (!buf) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  cl_int err = CL_SUCCESS;
  /* Zero-byte buffers are not allowed; keep one byte so every tensor has storage. */
  buf->mem = clCreateBuffer(dev->context, CL_MEM_READ_WRITE, bytes ? bytes : 1, NULL, &err);
  if (!buf->mem || err != CL_SUCCESS) {
    if (buf->mem) clReleaseMemObject(buf->mem);
    free(buf);
    if (err == CL_OUT_OF_RESOURCES || err == CL_INVALID_BUFFER_SIZE)
      return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "clCreateBuffer: %s (%d) for %zu bytes",
                     sm_cl_error_name(err), (int)err, bytes);
    return sm_cl_fail("clCreateBuffer", err ? err : CL_MEM_OBJECT_ALLOCATION_FAILURE);
  }
  buf->bytes = bytes;
  *out = buf;
  return SEQMIX_OK;
}

void sm_cl_free(sm_device *dev, sm_buffer *buf) {
  (void)dev;
  if (!buf) return;
  /* The runtime keeps the memory alive until queued commands that use it finish. */
  clReleaseMemObject(buf->mem);
  free(buf);
}

seqmix_status sm_cl_write(sm_device *dev, sm_buffer *buf, size_t offset, const void *src,
                          size_t bytes) {
  if (!bytes) return SEQMIX_OK;
  cl_int err =
      clEnqueueWriteBuffer(dev->queue, buf->mem, CL_TRUE, offset, bytes, src, 0, NULL, NULL);
  return err == CL_SUCCESS ? SEQMIX_OK : sm_cl_fail("clEnqueueWriteBuffer", err);
}

seqmix_status sm_cl_read(sm_device *dev, sm_buffer *buf, size_t offset, void *dst, size_t bytes) {
  if (!bytes) return SEQMIX_OK;
  cl_int err =
      clEnqueueReadBuffer(dev->queue, buf->mem, CL_TRUE, offset, bytes, dst, 0, NULL, NULL);
  return err == CL_SUCCESS ? SEQMIX_OK : sm_cl_fail("clEnqueueReadBuffer", err);
}

seqmix_status sm_cl_copy(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                         size_t dst_offset, size_t bytes) {
  if (!bytes) return SEQMIX_OK;
  cl_int err = clEnqueueCopyBuffer(dev->queue, src->mem, dst->mem, src_offset, dst_offset, bytes, 0,
                                   NULL, NULL);
  return err == CL_SUCCESS ? SEQMIX_OK : sm_cl_fail("clEnqueueCopyBuffer", err);
}

seqmix_status sm_cl_dummy_buffer(sm_device *dev, cl_mem *out) {
  if (!dev->dummy) {
    seqmix_status st = sm_cl_alloc(dev, 64, &dev->dummy);
    if (st) return st;
  }
  *out = dev->dummy->mem;
  return SEQMIX_OK;
}
