/*
 * Vulkan buffers.
 *
 * On unified-memory devices (lavapipe, integrated GPUs) every buffer lives in
 * DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT memory and stays mapped: write and
 * read are a sync and a memcpy. Elsewhere buffers are device local and bytes
 * travel through one staging buffer in chunks, each chunk a recorded copy.
 * Either way write and copy are ordered after earlier work on the stream, and
 * read returns with the bytes after waiting for it.
 */
#include "backend/vulkan/vulkan.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool sm_vk_find_memory_type(const VkPhysicalDeviceMemoryProperties *memory, uint32_t allowed,
                            VkMemoryPropertyFlags want, uint32_t *index) {
  for (uint32_t i = 0; i < memory->memoryTypeCount; ++i)
    if ((allowed & (1u << i)) && (memory->memoryTypes[i].propertyFlags & want) == want) {
      *index = i;
      return true;
    }
  return false;
}

/* A buffer in memory with `want` properties (or, failing that, `fallback`), mapped if asked. */
static seqmix_status create_buffer(sm_device *dev, size_t bytes, VkMemoryPropertyFlags want,
                                   VkMemoryPropertyFlags fallback, bool map, sm_buffer **out) {
  *out = NULL;
  /* Sizes round up to 4 bytes: copies of 16-bit tensors stay whole words. */
  VkDeviceSize size = ((VkDeviceSize)bytes + 3) & ~(VkDeviceSize)3;
  if (size == 0) size = 4;
  if (size < bytes || (dev->caps.max_allocation && size > dev->caps.max_allocation))
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY,
                   "vulkan backend: %zu bytes exceed the device's largest allocation of %llu bytes",
                   bytes, (unsigned long long)dev->caps.max_allocation);
  sm_buffer *buf = calloc(1, sizeof *buf);
  if (!buf) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  buf->bytes = bytes;
  seqmix_status st;
  VkBufferCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
      .size = size,
      .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
               VK_BUFFER_USAGE_TRANSFER_DST_BIT,
      .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
  };
  VkResult r = vkCreateBuffer(dev->device, &info, NULL, &buf->buffer);
  if (r != VK_SUCCESS) {
    buf->buffer = VK_NULL_HANDLE;
    st = sm_vk_fail("vkCreateBuffer", r);
    goto fail;
  }
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(dev->device, buf->buffer, &req);
  uint32_t type;
  if (!sm_vk_find_memory_type(&dev->caps.memory, req.memoryTypeBits, want, &type) &&
      !sm_vk_find_memory_type(&dev->caps.memory, req.memoryTypeBits, fallback, &type)) {
    st = sm_fail(SEQMIX_ERROR_BACKEND, "vulkan backend: no memory type for a %zu-byte buffer",
                 bytes);
    goto fail;
  }
  VkMemoryAllocateInfo alloc = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
      .allocationSize = req.size,
      .memoryTypeIndex = type,
  };
  r = vkAllocateMemory(dev->device, &alloc, NULL, &buf->memory);
  if (r != VK_SUCCESS) {
    buf->memory = VK_NULL_HANDLE;
    st = sm_vk_fail("vkAllocateMemory", r);
    goto fail;
  }
  r = vkBindBufferMemory(dev->device, buf->buffer, buf->memory, 0);
  if (r != VK_SUCCESS) {
    st = sm_vk_fail("vkBindBufferMemory", r);
    goto fail;
  }
  if (map) {
    r = vkMapMemory(dev->device, buf->memory, 0, VK_WHOLE_SIZE, 0, &buf->mapped);
    if (r != VK_SUCCESS) {
      buf->mapped = NULL;
      st = sm_vk_fail("vkMapMemory", r);
      goto fail;
    }
  }
  *out = buf;
  return SEQMIX_OK;
fail:
  sm_vk_free(dev, buf);
  return st;
}

seqmix_status sm_vk_alloc(sm_device *dev, size_t bytes, sm_buffer **out) {
  if (dev->caps.unified) {
    const VkMemoryPropertyFlags shared = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT |
                                         VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                         VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    return create_buffer(dev, bytes, shared, shared, true, out);
  }
  return create_buffer(dev, bytes, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, false, out);
}

void sm_vk_free(sm_device *dev, sm_buffer *buf) {
  if (!buf) return;
  /* The stream may still use the buffer: core frees tensors without a sync. */
  if (!sm_vk_idle(dev)) {
    seqmix_status st = sm_vk_sync(dev);
    if (st)
      sm_log(SEQMIX_LOG_WARNING, "vulkan backend: freeing a buffer after a failed sync: %s",
             seqmix_last_error());
  }
  if (buf->mapped) vkUnmapMemory(dev->device, buf->memory);
  if (buf->buffer) vkDestroyBuffer(dev->device, buf->buffer, NULL);
  if (buf->memory) vkFreeMemory(dev->device, buf->memory, NULL);
  free(buf);
}

static seqmix_status ensure_staging(sm_device *dev) {
  if (dev->staging) return SEQMIX_OK;
  const VkMemoryPropertyFlags host =
      VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  return create_buffer(dev, SM_VK_STAGING_BYTES, host | VK_MEMORY_PROPERTY_HOST_CACHED_BIT, host,
                       true, &dev->staging);
}

static seqmix_status record_copy(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                                 size_t dst_offset, size_t bytes) {
  VkCommandBuffer cmd;
  seqmix_status st = sm_vk_record_begin(dev, VK_PIPELINE_STAGE_TRANSFER_BIT, &cmd);
  if (st) return st;
  VkBufferCopy region = {.srcOffset = src_offset, .dstOffset = dst_offset, .size = bytes};
  vkCmdCopyBuffer(cmd, src->buffer, dst->buffer, 1, &region);
  return sm_vk_record_end(dev);
}

seqmix_status sm_vk_write(sm_device *dev, sm_buffer *buf, size_t offset, const void *src,
                          size_t bytes) {
  if (bytes == 0) return SEQMIX_OK;
  /* Earlier work may still read the bytes we are about to replace. */
  seqmix_status st = sm_vk_sync(dev);
  if (st) return st;
  if (buf->mapped) {
    memcpy((char *)buf->mapped + offset, src, bytes);
    return SEQMIX_OK;
  }
  if ((st = ensure_staging(dev))) return st;
  for (size_t done = 0; done < bytes;) {
    size_t chunk = bytes - done < SM_VK_STAGING_BYTES ? bytes - done : SM_VK_STAGING_BYTES;
    if (done && (st = sm_vk_sync(dev))) return st; /* the previous chunk left staging */
    memcpy(dev->staging->mapped, (const char *)src + done, chunk);
    if ((st = record_copy(dev, dev->staging, 0, buf, offset + done, chunk))) return st;
    done += chunk;
  }
  /* The last copy stays on the stream: staging is only reused after a sync. */
  return sm_vk_flush(dev);
}

seqmix_status sm_vk_read(sm_device *dev, sm_buffer *buf, size_t offset, void *dst, size_t bytes) {
  if (bytes == 0) return sm_vk_sync(dev);
  seqmix_status st;
  if (buf->mapped) {
    if ((st = sm_vk_sync(dev))) return st;
    memcpy(dst, (const char *)buf->mapped + offset, bytes);
    return SEQMIX_OK;
  }
  if ((st = ensure_staging(dev))) return st;
  for (size_t done = 0; done < bytes;) {
    size_t chunk = bytes - done < SM_VK_STAGING_BYTES ? bytes - done : SM_VK_STAGING_BYTES;
    if ((st = record_copy(dev, buf, offset + done, dev->staging, 0, chunk)) ||
        (st = sm_vk_sync(dev)))
      return st;
    memcpy((char *)dst + done, dev->staging->mapped, chunk);
    done += chunk;
  }
  return SEQMIX_OK;
}

seqmix_status sm_vk_copy(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                         size_t dst_offset, size_t bytes) {
  if (bytes == 0) return SEQMIX_OK;
  return record_copy(dev, src, src_offset, dst, dst_offset, bytes);
}

/* Work-groups the device should have in flight before splitting work further
 * stops paying: 8 per compute unit where the driver tells their number, else
 * by device type. */
uint64_t sm_vk_target_groups(const sm_device *dev) {
  if (dev->caps.compute_units > 0) return 8 * (uint64_t)dev->caps.compute_units;
  switch (dev->caps.props.deviceType) {
  case VK_PHYSICAL_DEVICE_TYPE_CPU: {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? 4 * (uint64_t)n : 8;
  }
  case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 512;
  case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 128;
  default: return 64;
  }
}

/* The device's scratch buffer with at least `bytes`, grown in powers of two
 * (after the stream drains) when it is smaller. */
seqmix_status sm_vk_scratch_reserve(sm_device *dev, uint64_t bytes) {
  if (dev->scratch && dev->scratch->bytes >= bytes) return SEQMIX_OK;
  uint64_t size = 1 << 20;
  while (size < bytes)
    size *= 2;
  if (size > dev->caps.max_allocation) size = bytes;
  if (dev->scratch) {
    sm_vk_free(dev, dev->scratch); /* syncs first when the stream may use it */
    dev->scratch = NULL;
  }
  return sm_vk_alloc(dev, (size_t)size, &dev->scratch);
}
