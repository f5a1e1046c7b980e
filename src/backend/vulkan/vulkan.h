/*
 * The Vulkan backend's private types and the helpers its files share.
 *
 * device.c    instance, probe, open/close, the vtable, flush/sync entry points
 * memory.c    buffers: persistently mapped on unified-memory devices, device
 *             local plus a staging buffer elsewhere
 * pipeline.c  compute pipelines from embedded SPIR-V with specialization
 *             constants, descriptor sets, command recording and submission
 * conv1d.c    SM_OP_CONV1D_CAUSAL (shaders/conv1d.comp)
 * attention.c SM_OP_ATTENTION and SM_OP_ATTENTION_MERGE (shaders/attention.comp,
 *             shaders/attention_merge.comp)
 * ssm.c       SM_OP_SELECTIVE_SCAN, SM_OP_SSD and SM_OP_LINEAR_ATTENTION
 *             (shaders/selective_scan.comp, shaders/chunk_scan.comp)
 *
 * The stream: launches and copies record into one open command buffer, a
 * barrier in front of each command orders it after the previous one. The
 * buffer is submitted by flush, sync, a read, or when it gets long; sync waits
 * for every submission and then recycles descriptor pools.
 */
#ifndef SEQMIX_VULKAN_H
#define SEQMIX_VULKAN_H

#include "backend/backend.h"

#include <vulkan/vulkan.h>

/* Limits of the backend's own bookkeeping. */
enum {
  SM_VK_MAX_SPEC = 24,     /* specialization constants per pipeline (ids 0..n-1) */
  SM_VK_MAX_BINDINGS = 10, /* storage buffers per descriptor set (bindings 0..n-1); ops
                            * binding more than 8 check maxPerStageDescriptorStorageBuffers */
  SM_VK_PUSH_BYTES = 128,  /* push-constant range of every layout: the guaranteed minimum */
  SM_VK_SLOTS = 4,         /* command buffers in flight */
  SM_VK_MAX_RECORDED = 256 /* commands in one command buffer before it is submitted */
};
enum {
  SM_VK_SETS_PER_POOL = 256,     /* descriptor sets per descriptor pool */
  SM_VK_MAX_POOLS = 16,          /* pools in use before a launch syncs to recycle them */
  SM_VK_STAGING_BYTES = 16 << 20 /* staging buffer for devices without unified memory */
};

struct sm_buffer {
  VkBuffer buffer;
  VkDeviceMemory memory;
  VkDeviceSize bytes; /* as requested */
  void *mapped;       /* persistent mapping on unified-memory devices, else NULL */
};

/* One compute pipeline: an embedded SPIR-V module specialised with constants. */
typedef struct sm_vk_pipeline {
  char module[64];
  uint32_t spec[SM_VK_MAX_SPEC];
  uint32_t spec_count, binding_count;
  VkPipeline pipeline;
} sm_vk_pipeline;

/* A slot of the submission ring: a command buffer and the fence of its submit. */
typedef struct sm_vk_slot {
  VkCommandBuffer cmd;
  VkFence fence;
  bool submitted;
} sm_vk_slot;

/* What a device can do, read at open and used by supports() and the tuning tables. */
typedef struct sm_vk_caps {
  VkPhysicalDeviceProperties props;
  VkPhysicalDeviceMemoryProperties memory;
  uint32_t subgroup_size;
  uint32_t compute_units;      /* SMs / CUs where the driver says (NV, AMD extensions), else 0 */
  VkDeviceSize max_allocation; /* maxMemoryAllocationSize */
  bool storage16;              /* storageBuffer16BitAccess, enabled at open */
  bool unified;                /* buffers live in DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT memory */
} sm_vk_caps;

struct sm_device {
  VkInstance instance;
  VkDebugUtilsMessengerEXT messenger;
  VkPhysicalDevice physical;
  VkDevice device;
  VkQueue queue;
  uint32_t queue_family;
  sm_vk_caps caps;

  /* Pipelines and their layouts (one set layout and pipeline layout per binding count). */
  VkPipelineCache pipeline_cache;
  bool pipeline_cache_dirty;
  char cache_dir[1024], cache_name[64];
  sm_vk_pipeline **pipelines; /* pointers stay valid while the array grows */
  size_t pipeline_count, pipeline_capacity;
  VkDescriptorSetLayout set_layouts[SM_VK_MAX_BINDINGS + 1];
  VkPipelineLayout pipeline_layouts[SM_VK_MAX_BINDINGS + 1];

  /* Descriptor pools: sets are taken from pools[pool_current], which has handed
   * out pool_sets_used of its SM_VK_SETS_PER_POOL; all are reset at sync. */
  VkDescriptorPool pools[SM_VK_MAX_POOLS];
  uint32_t pool_count, pool_current, pool_sets_used;

  /* Recording and submission. */
  VkCommandPool command_pool;
  sm_vk_slot slots[SM_VK_SLOTS];
  int recording;                       /* slot being recorded, -1 if none */
  int next_slot;                       /* slot the next recording takes */
  uint32_t recorded;                   /* commands in the recording buffer */
  VkPipelineStageFlags previous_stage; /* stage of the last command recorded; 0: none yet */

  sm_buffer *staging; /* lazily made on devices without unified memory */
  sm_buffer *dummy;   /* bound where an optional tensor is absent */
  sm_buffer *scratch; /* attention's key-split partials and merge accumulators; grows */
  struct sm_vk_long_conv_cache *long_conv; /* FFT plans and filter transforms (long_conv.c) */
};

/* ---- Errors (device.c) ---------------------------------------------------- */

const char *sm_vk_result_name(VkResult r);
/* sm_fail for a failed Vulkan call: "vkCall: VK_ERROR_...", with the status its
 * code maps to (OUT_OF_MEMORY, DEVICE_LOST, else BACKEND). */
seqmix_status sm_vk_fail(const char *call, VkResult r);

/* ---- Memory (memory.c) ---------------------------------------------------- */

seqmix_status sm_vk_alloc(sm_device *dev, size_t bytes, sm_buffer **out);
void sm_vk_free(sm_device *dev, sm_buffer *buf);
seqmix_status sm_vk_write(sm_device *dev, sm_buffer *buf, size_t offset, const void *src,
                          size_t bytes);
seqmix_status sm_vk_read(sm_device *dev, sm_buffer *buf, size_t offset, void *dst, size_t bytes);
seqmix_status sm_vk_copy(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                         size_t dst_offset, size_t bytes);
/* Memory type index with all of `want` among `allowed` bits; false if none. */
uint64_t sm_vk_target_groups(const sm_device *dev);
seqmix_status sm_vk_scratch_reserve(sm_device *dev, uint64_t bytes);
bool sm_vk_find_memory_type(const VkPhysicalDeviceMemoryProperties *memory, uint32_t allowed,
                            VkMemoryPropertyFlags want, uint32_t *index);

/* ---- Pipelines, descriptors, recording (pipeline.c) ------------------------ */

seqmix_status sm_vk_pipelines_init(sm_device *dev, const char *cache_dir);
void sm_vk_pipelines_destroy(sm_device *dev); /* saves the pipeline cache */

/* The pipeline for (module, spec constants 0..spec_count-1, binding count),
 * made on first use. */
seqmix_status sm_vk_pipeline_get(sm_device *dev, const char *module, const uint32_t *spec,
                                 uint32_t spec_count, uint32_t binding_count,
                                 const sm_vk_pipeline **out);

/* A byte range of a buffer bound as one storage buffer. */
typedef struct sm_vk_binding {
  sm_buffer *buffer;
  VkDeviceSize offset, range;
} sm_vk_binding;

/* Binds a tensor: from its first element's byte offset aligned down to
 * minStorageBufferOffsetAlignment through its last element. *element_offset is
 * where the tensor starts inside the binding. False when the range exceeds
 * maxStorageBufferRange or its element count does not fit in int32. An absent
 * tensor (buffer NULL) binds the dummy buffer at offset 0. */
bool sm_vk_bind_tensor(const sm_device *dev, const sm_tensor_ref *t, sm_vk_binding *out,
                       int32_t *element_offset);

/* Records a dispatch: descriptor set from bindings, push constants (at most
 * SM_VK_PUSH_BYTES), groups[3] work-groups, after a barrier on earlier work. */
seqmix_status sm_vk_dispatch(sm_device *dev, const sm_vk_pipeline *pipeline,
                             const sm_vk_binding *bindings, const void *push, uint32_t push_bytes,
                             const uint32_t groups[3]);

/* Opens the recording command buffer if needed and records a barrier that
 * orders a command of `stage` after the previous one. */
seqmix_status sm_vk_record_begin(sm_device *dev, VkPipelineStageFlags stage, VkCommandBuffer *cmd);
/* Counts the command just recorded; submits when the buffer is long. */
seqmix_status sm_vk_record_end(sm_device *dev);

seqmix_status sm_vk_flush(sm_device *dev); /* submit what is recorded */
seqmix_status sm_vk_sync(sm_device *dev);  /* submit and wait for everything */
bool sm_vk_idle(const sm_device *dev);     /* nothing recorded or in flight */

/* ---- Ops ---------------------------------------------------------------- */

bool sm_vk_conv1d_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_conv1d_launch(sm_device *dev, const sm_op *op);
bool sm_vk_attention_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_attention_launch(sm_device *dev, const sm_op *op);
bool sm_vk_merge_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_merge_launch(sm_device *dev, const sm_op *op);
bool sm_vk_selective_scan_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_selective_scan_launch(sm_device *dev, const sm_op *op);
bool sm_vk_ssd_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_ssd_launch(sm_device *dev, const sm_op *op);
bool sm_vk_linear_attention_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_linear_attention_launch(sm_device *dev, const sm_op *op);
bool sm_vk_conv2d_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_conv2d_launch(sm_device *dev, const sm_op *op);
bool sm_vk_long_conv_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_vk_long_conv_launch(sm_device *dev, const sm_op *op);
/* Frees the long convolution's FFT plans and cached filter transforms
 * (dev->long_conv); called by close after the device is idle. */
void sm_vk_long_conv_release(sm_device *dev);

#endif
