/*
 * Compute pipelines, descriptor sets, command recording and submission.
 *
 * Pipelines: an embedded SPIR-V module (sm_embedded_find) specialised with
 * constants 0..n-1; made once per (module, constants, binding count) through a
 * VkPipelineCache that is loaded from and saved to the cache directory, named
 * by device UUID. Every pipeline with n storage buffers shares one descriptor
 * set layout and one pipeline layout with a SM_VK_PUSH_BYTES push-constant range.
 *
 * Descriptor sets come from pools of SM_VK_SETS_PER_POOL sets; more pools are
 * added as needed, and all are reset once sync has seen the work that used them
 * finish (after SM_VK_MAX_POOLS pools a launch syncs first).
 *
 * Recording: one command buffer is open at a time. Each command is preceded by
 * a memory barrier from the previous command's stage (compute or transfer) to
 * its own, so the stream executes in order; the first command of a buffer is
 * ordered after everything submitted before it, since barriers reach across
 * submissions on one queue. Each buffer ends with a barrier to the host so
 * mapped reads after the fence see the results. A buffer is submitted with its
 * slot's fence on flush, sync, a read, or after SM_VK_MAX_RECORDED commands;
 * SM_VK_SLOTS buffers may be in flight, and reusing a slot waits for its fence.
 */
#include "backend/vulkan/vulkan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Pipeline cache ------------------------------------------------------------ */

/* Only hand the driver a cache blob written for this very device and driver. */
static bool cache_blob_matches(const sm_device *dev, const void *data, size_t size) {
  VkPipelineCacheHeaderVersionOne header;
  if (size < sizeof header) return false;
  memcpy(&header, data, sizeof header);
  const VkPhysicalDeviceProperties *p = &dev->caps.props;
  return header.headerSize >= sizeof header && header.headerSize <= size &&
         header.headerVersion == VK_PIPELINE_CACHE_HEADER_VERSION_ONE &&
         header.vendorID == p->vendorID && header.deviceID == p->deviceID &&
         !memcmp(header.pipelineCacheUUID, p->pipelineCacheUUID, VK_UUID_SIZE);
}

seqmix_status sm_vk_pipelines_init(sm_device *dev, const char *cache_dir) {
  snprintf(dev->cache_dir, sizeof dev->cache_dir, "%s", cache_dir ? cache_dir : "");
  void *data = NULL;
  size_t size = 0;
  if (dev->cache_dir[0] && sm_cache_load(dev->cache_dir, dev->cache_name, &data, &size) &&
      !cache_blob_matches(dev, data, size)) {
    sm_log(SEQMIX_LOG_INFO, "vulkan backend: pipeline cache %s/%s is for another driver; rebuilt",
           dev->cache_dir, dev->cache_name);
    free(data);
    data = NULL;
    size = 0;
  }
  VkPipelineCacheCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
      .initialDataSize = size,
      .pInitialData = data,
  };
  VkResult r = vkCreatePipelineCache(dev->device, &info, NULL, &dev->pipeline_cache);
  if (r != VK_SUCCESS && data) { /* a driver that refuses its own old blob: start empty */
    info.initialDataSize = 0;
    info.pInitialData = NULL;
    r = vkCreatePipelineCache(dev->device, &info, NULL, &dev->pipeline_cache);
  }
  free(data);
  if (r != VK_SUCCESS) {
    dev->pipeline_cache = VK_NULL_HANDLE;
    return sm_vk_fail("vkCreatePipelineCache", r);
  }
  return SEQMIX_OK;
}

static void save_pipeline_cache(sm_device *dev) {
  if (!dev->pipeline_cache || !dev->pipeline_cache_dirty || !dev->cache_dir[0]) return;
  size_t size = 0;
  if (vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, NULL) != VK_SUCCESS ||
      size == 0)
    return;
  void *data = malloc(size);
  if (!data) return;
  if (vkGetPipelineCacheData(dev->device, dev->pipeline_cache, &size, data) == VK_SUCCESS)
    sm_cache_store(dev->cache_dir, dev->cache_name, data, size);
  free(data);
}

void sm_vk_pipelines_destroy(sm_device *dev) {
  if (!dev->device) return;
  save_pipeline_cache(dev);
  for (size_t i = 0; i < dev->pipeline_count; ++i) {
    vkDestroyPipeline(dev->device, dev->pipelines[i]->pipeline, NULL);
    free(dev->pipelines[i]);
  }
  free(dev->pipelines);
  dev->pipelines = NULL;
  dev->pipeline_count = dev->pipeline_capacity = 0;
  for (int n = 0; n <= SM_VK_MAX_BINDINGS; ++n) {
    if (dev->pipeline_layouts[n])
      vkDestroyPipelineLayout(dev->device, dev->pipeline_layouts[n], NULL);
    if (dev->set_layouts[n]) vkDestroyDescriptorSetLayout(dev->device, dev->set_layouts[n], NULL);
    dev->pipeline_layouts[n] = VK_NULL_HANDLE;
    dev->set_layouts[n] = VK_NULL_HANDLE;
  }
  for (uint32_t i = 0; i < dev->pool_count; ++i)
    vkDestroyDescriptorPool(dev->device, dev->pools[i], NULL);
  dev->pool_count = dev->pool_current = dev->pool_sets_used = 0;
  if (dev->pipeline_cache) vkDestroyPipelineCache(dev->device, dev->pipeline_cache, NULL);
  dev->pipeline_cache = VK_NULL_HANDLE;
}

/* ---- Layouts and pipelines ----------------------------------------------------------- */

static seqmix_status ensure_layout(sm_device *dev, uint32_t binding_count) {
  if (dev->pipeline_layouts[binding_count]) return SEQMIX_OK;
  VkDescriptorSetLayoutBinding bindings[SM_VK_MAX_BINDINGS];
  for (uint32_t i = 0; i < binding_count; ++i)
    bindings[i] = (VkDescriptorSetLayoutBinding){
        .binding = i,
        .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .descriptorCount = 1,
        .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
    };
  VkDescriptorSetLayoutCreateInfo set_info = {
      .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
      .bindingCount = binding_count,
      .pBindings = bindings,
  };
  VkResult r =
      vkCreateDescriptorSetLayout(dev->device, &set_info, NULL, &dev->set_layouts[binding_count]);
  if (r != VK_SUCCESS) {
    dev->set_layouts[binding_count] = VK_NULL_HANDLE;
    return sm_vk_fail("vkCreateDescriptorSetLayout", r);
  }
  VkPushConstantRange push = {
      .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = SM_VK_PUSH_BYTES};
  VkPipelineLayoutCreateInfo layout_info = {
      .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
      .setLayoutCount = 1,
      .pSetLayouts = &dev->set_layouts[binding_count],
      .pushConstantRangeCount = 1,
      .pPushConstantRanges = &push,
  };
  r = vkCreatePipelineLayout(dev->device, &layout_info, NULL,
                             &dev->pipeline_layouts[binding_count]);
  if (r != VK_SUCCESS) {
    dev->pipeline_layouts[binding_count] = VK_NULL_HANDLE;
    return sm_vk_fail("vkCreatePipelineLayout", r);
  }
  return SEQMIX_OK;
}

static seqmix_status create_pipeline(sm_device *dev, const sm_embedded_file *file,
                                     sm_vk_pipeline *p) {
  /* Embedded bytes carry no alignment promise; pCode must be 4-byte aligned. */
  uint32_t *code = malloc(file->size);
  if (!code) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  memcpy(code, file->data, file->size);
  VkShaderModuleCreateInfo module_info = {
      .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
      .codeSize = file->size,
      .pCode = code,
  };
  VkShaderModule module;
  VkResult r = vkCreateShaderModule(dev->device, &module_info, NULL, &module);
  free(code);
  if (r != VK_SUCCESS) return sm_vk_fail("vkCreateShaderModule", r);

  VkSpecializationMapEntry entries[SM_VK_MAX_SPEC];
  for (uint32_t i = 0; i < p->spec_count; ++i)
    entries[i] = (VkSpecializationMapEntry){
        .constantID = i, .offset = i * (uint32_t)sizeof(uint32_t), .size = sizeof(uint32_t)};
  VkSpecializationInfo spec = {
      .mapEntryCount = p->spec_count,
      .pMapEntries = entries,
      .dataSize = p->spec_count * sizeof(uint32_t),
      .pData = p->spec,
  };
  VkComputePipelineCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
      .stage =
          {
              .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
              .stage = VK_SHADER_STAGE_COMPUTE_BIT,
              .module = module,
              .pName = "main",
              .pSpecializationInfo = &spec,
          },
      .layout = dev->pipeline_layouts[p->binding_count],
  };
  r = vkCreateComputePipelines(dev->device, dev->pipeline_cache, 1, &info, NULL, &p->pipeline);
  vkDestroyShaderModule(dev->device, module, NULL);
  if (r != VK_SUCCESS) {
    p->pipeline = VK_NULL_HANDLE;
    return sm_vk_fail("vkCreateComputePipelines", r);
  }
  dev->pipeline_cache_dirty = true;
  return SEQMIX_OK;
}

seqmix_status sm_vk_pipeline_get(sm_device *dev, const char *module, const uint32_t *spec,
                                 uint32_t spec_count, uint32_t binding_count,
                                 const sm_vk_pipeline **out) {
  *out = NULL;
  for (size_t i = 0; i < dev->pipeline_count; ++i) {
    const sm_vk_pipeline *p = dev->pipelines[i];
    if (p->spec_count == spec_count && p->binding_count == binding_count &&
        !strcmp(p->module, module) && !memcmp(p->spec, spec, spec_count * sizeof *spec)) {
      *out = p;
      return SEQMIX_OK;
    }
  }
  if (spec_count > SM_VK_MAX_SPEC || binding_count > SM_VK_MAX_BINDINGS ||
      strlen(module) >= sizeof((sm_vk_pipeline *)0)->module)
    return sm_fail(SEQMIX_ERROR_BACKEND, "vulkan backend: pipeline %s exceeds the backend's limits",
                   module);
  const sm_embedded_file *file = sm_embedded_find(module);
  if (!file || file->size == 0 || file->size % 4 != 0)
    return sm_fail(SEQMIX_ERROR_BACKEND, "vulkan backend: shader %s is not embedded in this build",
                   module);
  seqmix_status st = ensure_layout(dev, binding_count);
  if (st) return st;
  if (dev->pipeline_count == dev->pipeline_capacity) {
    size_t capacity = dev->pipeline_capacity ? 2 * dev->pipeline_capacity : 16;
    sm_vk_pipeline **grown = realloc(dev->pipelines, capacity * sizeof *grown);
    if (!grown) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
    dev->pipelines = grown;
    dev->pipeline_capacity = capacity;
  }
  sm_vk_pipeline *p = calloc(1, sizeof *p);
  if (!p) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  snprintf(p->module, sizeof p->module, "%s", module);
  memcpy(p->spec, spec, spec_count * sizeof *spec);
  p->spec_count = spec_count;
  p->binding_count = binding_count;
  st = create_pipeline(dev, file, p);
  if (st) {
    free(p);
    return st;
  }
  sm_log(SEQMIX_LOG_DEBUG, "vulkan backend: pipeline %s with %u constants", module, spec_count);
  dev->pipelines[dev->pipeline_count++] = p;
  *out = p;
  return SEQMIX_OK;
}

/* ---- Bindings and descriptor sets ------------------------------------------------------ */

bool sm_vk_bind_tensor(const sm_device *dev, const sm_tensor_ref *t, sm_vk_binding *out,
                       int32_t *element_offset) {
  if (!t->buffer) {
    *out = (sm_vk_binding){dev->dummy, 0, dev->dummy->bytes};
    *element_offset = 0;
    return true;
  }
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  uint64_t esize = seqmix_dtype_size(t->dtype), last = (uint64_t)t->offset;
  for (int i = 0; i < t->rank; ++i)
    last += (uint64_t)(t->shape[i] - 1) * (uint64_t)t->strides[i];
  uint64_t start = (uint64_t)t->offset * esize, end = (last + 1) * esize;
  uint64_t align =
      limits->minStorageBufferOffsetAlignment ? limits->minStorageBufferOffsetAlignment : 1;
  uint64_t base = start - start % align, range = end - base;
  if (range > limits->maxStorageBufferRange || range / esize > INT32_MAX) return false;
  *out = (sm_vk_binding){t->buffer, base, range};
  *element_offset = (int32_t)((start - base) / esize);
  return true;
}

static seqmix_status create_pool(sm_device *dev) {
  VkDescriptorPoolSize size = {
      .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
      .descriptorCount = SM_VK_SETS_PER_POOL * SM_VK_MAX_BINDINGS,
  };
  VkDescriptorPoolCreateInfo info = {
      .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
      .maxSets = SM_VK_SETS_PER_POOL,
      .poolSizeCount = 1,
      .pPoolSizes = &size,
  };
  VkResult r = vkCreateDescriptorPool(dev->device, &info, NULL, &dev->pools[dev->pool_count]);
  if (r != VK_SUCCESS) return sm_vk_fail("vkCreateDescriptorPool", r);
  dev->pool_count++;
  return SEQMIX_OK;
}

static seqmix_status allocate_set(sm_device *dev, uint32_t binding_count, VkDescriptorSet *out) {
  seqmix_status st;
  if (dev->pool_sets_used == SM_VK_SETS_PER_POOL) {
    dev->pool_current++;
    dev->pool_sets_used = 0;
  }
  if (dev->pool_current == SM_VK_MAX_POOLS && (st = sm_vk_sync(dev))) return st; /* resets pools */
  if (dev->pool_current == dev->pool_count && (st = create_pool(dev))) return st;
  VkDescriptorSetAllocateInfo info = {
      .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
      .descriptorPool = dev->pools[dev->pool_current],
      .descriptorSetCount = 1,
      .pSetLayouts = &dev->set_layouts[binding_count],
  };
  VkResult r = vkAllocateDescriptorSets(dev->device, &info, out);
  if (r != VK_SUCCESS) return sm_vk_fail("vkAllocateDescriptorSets", r);
  dev->pool_sets_used++;
  return SEQMIX_OK;
}

static void reset_pools(sm_device *dev) {
  if (dev->pool_current == 0 && dev->pool_sets_used == 0) return;
  for (uint32_t i = 0; i < dev->pool_count && i <= dev->pool_current; ++i)
    vkResetDescriptorPool(dev->device, dev->pools[i], 0);
  dev->pool_current = 0;
  dev->pool_sets_used = 0;
}

/* ---- Recording and submission ---------------------------------------------------------- */

static VkAccessFlags reads_of(VkPipelineStageFlags stages) {
  VkAccessFlags a = 0;
  if (stages & VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT) a |= VK_ACCESS_SHADER_READ_BIT;
  if (stages & VK_PIPELINE_STAGE_TRANSFER_BIT) a |= VK_ACCESS_TRANSFER_READ_BIT;
  if (stages & VK_PIPELINE_STAGE_HOST_BIT) a |= VK_ACCESS_HOST_READ_BIT;
  return a;
}

static VkAccessFlags writes_of(VkPipelineStageFlags stages) {
  VkAccessFlags a = 0;
  if (stages & VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT) a |= VK_ACCESS_SHADER_WRITE_BIT;
  if (stages & VK_PIPELINE_STAGE_TRANSFER_BIT) a |= VK_ACCESS_TRANSFER_WRITE_BIT;
  return a;
}

static void barrier(VkCommandBuffer cmd, VkPipelineStageFlags from, VkPipelineStageFlags to) {
  VkMemoryBarrier b = {
      .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
      .srcAccessMask = writes_of(from),
      .dstAccessMask = reads_of(to) | writes_of(to),
  };
  vkCmdPipelineBarrier(cmd, from, to, 0, 1, &b, 0, NULL, 0, NULL);
}

static seqmix_status wait_slot(sm_device *dev, sm_vk_slot *slot) {
  if (!slot->submitted) return SEQMIX_OK;
  VkResult r = vkWaitForFences(dev->device, 1, &slot->fence, VK_TRUE, UINT64_MAX);
  if (r != VK_SUCCESS) return sm_vk_fail("vkWaitForFences", r);
  slot->submitted = false;
  r = vkResetFences(dev->device, 1, &slot->fence);
  if (r != VK_SUCCESS) return sm_vk_fail("vkResetFences", r);
  return SEQMIX_OK;
}

seqmix_status sm_vk_record_begin(sm_device *dev, VkPipelineStageFlags stage, VkCommandBuffer *cmd) {
  VkPipelineStageFlags from = dev->previous_stage;
  if (dev->recording < 0) {
    sm_vk_slot *slot = &dev->slots[dev->next_slot];
    seqmix_status st = wait_slot(dev, slot);
    if (st) return st;
    VkCommandBufferBeginInfo info = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VkResult r = vkBeginCommandBuffer(slot->cmd, &info);
    if (r != VK_SUCCESS) return sm_vk_fail("vkBeginCommandBuffer", r);
    dev->recording = dev->next_slot;
    dev->next_slot = (dev->next_slot + 1) % SM_VK_SLOTS;
    dev->recorded = 0;
    /* Earlier submissions may still run: order after any of their commands. */
    if (from) from = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  }
  *cmd = dev->slots[dev->recording].cmd;
  if (from) barrier(*cmd, from, stage);
  dev->previous_stage = stage;
  return SEQMIX_OK;
}

seqmix_status sm_vk_record_end(sm_device *dev) {
  if (++dev->recorded >= SM_VK_MAX_RECORDED) return sm_vk_flush(dev);
  return SEQMIX_OK;
}

seqmix_status sm_vk_flush(sm_device *dev) {
  if (dev->recording < 0) return SEQMIX_OK;
  sm_vk_slot *slot = &dev->slots[dev->recording];
  dev->recording = -1;
  /* Make the results visible to mapped reads once the fence signals. */
  barrier(slot->cmd, dev->previous_stage, VK_PIPELINE_STAGE_HOST_BIT);
  VkResult r = vkEndCommandBuffer(slot->cmd);
  if (r != VK_SUCCESS) return sm_vk_fail("vkEndCommandBuffer", r);
  VkSubmitInfo submit = {
      .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
      .commandBufferCount = 1,
      .pCommandBuffers = &slot->cmd,
  };
  r = vkQueueSubmit(dev->queue, 1, &submit, slot->fence);
  if (r != VK_SUCCESS) return sm_vk_fail("vkQueueSubmit", r);
  slot->submitted = true;
  return SEQMIX_OK;
}

seqmix_status sm_vk_sync(sm_device *dev) {
  seqmix_status st = sm_vk_flush(dev);
  /* Oldest first; every slot is waited for even after a failure. */
  for (int i = 0; i < SM_VK_SLOTS; ++i) {
    seqmix_status wait = wait_slot(dev, &dev->slots[(dev->next_slot + i) % SM_VK_SLOTS]);
    if (!st) st = wait;
  }
  if (!st) reset_pools(dev);
  return st;
}

bool sm_vk_idle(const sm_device *dev) {
  if (dev->recording >= 0) return false;
  for (int i = 0; i < SM_VK_SLOTS; ++i)
    if (dev->slots[i].submitted) return false;
  return true;
}

seqmix_status sm_vk_dispatch(sm_device *dev, const sm_vk_pipeline *pipeline,
                             const sm_vk_binding *bindings, const void *push, uint32_t push_bytes,
                             const uint32_t groups[3]) {
  VkDescriptorSet set;
  seqmix_status st = allocate_set(dev, pipeline->binding_count, &set);
  if (st) return st;
  VkDescriptorBufferInfo infos[SM_VK_MAX_BINDINGS];
  VkWriteDescriptorSet writes[SM_VK_MAX_BINDINGS];
  for (uint32_t i = 0; i < pipeline->binding_count; ++i) {
    infos[i] =
        (VkDescriptorBufferInfo){bindings[i].buffer->buffer, bindings[i].offset, bindings[i].range};
    writes[i] = (VkWriteDescriptorSet){
        .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
        .dstSet = set,
        .dstBinding = i,
        .descriptorCount = 1,
        .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .pBufferInfo = &infos[i],
    };
  }
  vkUpdateDescriptorSets(dev->device, pipeline->binding_count, writes, 0, NULL);

  VkCommandBuffer cmd;
  if ((st = sm_vk_record_begin(dev, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, &cmd))) return st;
  VkPipelineLayout layout = dev->pipeline_layouts[pipeline->binding_count];
  vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline->pipeline);
  vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, NULL);
  if (push_bytes) vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  vkCmdDispatch(cmd, groups[0], groups[1], groups[2]);
  return sm_vk_record_end(dev);
}
