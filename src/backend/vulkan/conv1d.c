/*
 * SM_OP_CONV1D_CAUSAL on Vulkan (shaders/conv1d.comp).
 *
 * One dispatch computes y; when a state is given a second, tiny dispatch
 * (behind the stream's barrier) overwrites it with the last K-1 inputs, since
 * the first one reads the old state. The SPIR-V variant follows the storage
 * types (conv1d_f32, conv1d_a16, conv1d_a16p16); f16 versus bf16 and every
 * tunable are specialization constants.
 */
#include "backend/vulkan/vulkan.h"

#include <string.h>

/* Kernel width held in registers; wider kernels go to the CPU fallback (long
 * filters are seqmix_long_conv's business). */
enum { CONV1D_MAX_KERNEL = 32 };

/* Specialization constant ids of conv1d.comp. */
enum {
  SPEC_WORKGROUP_SIZE,
  SPEC_MODE,
  SPEC_KERNEL,
  SPEC_CHANNELS_PER_INVOCATION,
  SPEC_TOKENS_PER_INVOCATION,
  SPEC_CHANNEL_LANES,
  SPEC_CHANNEL_STEP,
  SPEC_VECTOR_WIDTH,
  SPEC_SILU,
  SPEC_ACT_BF16,
  SPEC_PARAM_BF16,
  SPEC_COUNT
};
enum { MODE_OUTPUTS, MODE_STATE };

/* The push constants of conv1d.comp, in its order. */
typedef struct conv1d_push {
  int32_t batch, tokens, channels;
  int32_t x_offset, x_batch_stride, x_token_stride;
  int32_t y_offset, y_batch_stride, y_token_stride;
  int32_t state_offset, state_batch_stride, state_token_stride;
  int32_t weight_offset, weight_channel_stride;
  int32_t bias_offset;
  int32_t has_bias, has_state;
} conv1d_push;

/* Tunables by device type, passed as specialization constants. The
 * work-group size is clamped to the device's limits and rounded down to a
 * power of two; the vector width drops to what the tensors' alignment allows;
 * token runs shrink until there are min_groups work-groups to share out. */
typedef struct conv1d_tuning {
  VkPhysicalDeviceType type;
  uint32_t workgroup_size, vector_width, channels_per_invocation, tokens_per_invocation;
  uint32_t min_groups;
} conv1d_tuning;

static const conv1d_tuning tunings[] = {
    /* lavapipe: a work-group is one thread looping over 8-lane SIMD rows and
     * every lane's load is a scalar load: pairs of channels halve the loads
     * without the register spills of four, and long token runs amortise the
     * window's start (measured, B1 L4096 C1536 K4). */
    {VK_PHYSICAL_DEVICE_TYPE_CPU, 64, 2, 1, 256, 32},
    {VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, 256, 4, 1, 16, 256},
    {VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU, 128, 4, 1, 16, 64},
};
static const conv1d_tuning default_tuning = {VK_PHYSICAL_DEVICE_TYPE_OTHER, 64, 4, 1, 16, 64};

typedef struct conv1d_plan {
  const char *module;
  uint32_t spec[SPEC_COUNT];
  uint32_t groups[3];
  uint32_t state_spec[SPEC_COUNT];
  uint32_t state_groups[3];
  sm_vk_binding bindings[5];
  conv1d_push push;
} conv1d_plan;

static uint32_t floor_pow2(uint32_t v) {
  uint32_t p = 1;
  while (p * 2 <= v)
    p *= 2;
  return p;
}

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* A stride as a push constant: 0 for a dim of extent 1 (never stepped). */
static bool stride_of(const sm_tensor_ref *t, int dim, int32_t *out) {
  int64_t s = t->shape[dim] == 1 ? 0 : t->strides[dim];
  if (s > INT32_MAX) return false;
  *out = (int32_t)s;
  return true;
}

/* Everything launch needs, or false where the device cannot run this call. */
static bool plan_conv1d(const sm_device *dev, const sm_op *op, conv1d_plan *plan) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const sm_tensor_ref *x = &op->tensors[SM_CONV1D_X], *w = &op->tensors[SM_CONV1D_WEIGHT],
                      *bias = &op->tensors[SM_CONV1D_BIAS], *state = &op->tensors[SM_CONV1D_STATE],
                      *y = &op->tensors[SM_CONV1D_Y];
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  memset(plan, 0, sizeof *plan);

  bool act16 = x->dtype != SEQMIX_F32, param16 = w->dtype != SEQMIX_F32;
  if ((act16 || param16) && !dev->caps.storage16) return false;
  if (bias->buffer && bias->dtype != w->dtype) return false; /* no variant mixes the two */
  if (d->kernel < 1 || d->kernel > CONV1D_MAX_KERNEL) return false;
  if (d->batch > INT32_MAX || d->tokens > INT32_MAX || d->channels > INT32_MAX) return false;
  plan->module = !act16 ? "conv1d_f32.spv" : param16 ? "conv1d_a16p16.spv" : "conv1d_a16.spv";

  conv1d_push *p = &plan->push;
  p->batch = (int32_t)d->batch;
  p->tokens = (int32_t)d->tokens;
  p->channels = (int32_t)d->channels;
  p->has_bias = bias->buffer != NULL;
  p->has_state = state->buffer != NULL;
  if (!sm_vk_bind_tensor(dev, x, &plan->bindings[0], &p->x_offset) ||
      !sm_vk_bind_tensor(dev, w, &plan->bindings[1], &p->weight_offset) ||
      !sm_vk_bind_tensor(dev, bias, &plan->bindings[2], &p->bias_offset) ||
      !sm_vk_bind_tensor(dev, state, &plan->bindings[3], &p->state_offset) ||
      !sm_vk_bind_tensor(dev, y, &plan->bindings[4], &p->y_offset))
    return false;
  if (!stride_of(x, 0, &p->x_batch_stride) || !stride_of(x, 1, &p->x_token_stride) ||
      !stride_of(y, 0, &p->y_batch_stride) || !stride_of(y, 1, &p->y_token_stride) ||
      !stride_of(w, 0, &p->weight_channel_stride))
    return false;
  if (state->buffer && (!stride_of(state, 0, &p->state_batch_stride) ||
                        !stride_of(state, 1, &p->state_token_stride)))
    return false;

  const conv1d_tuning *tuning = &default_tuning;
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].type == dev->caps.props.deviceType) tuning = &tunings[i];
  uint32_t wg = tuning->workgroup_size;
  if (wg > limits->maxComputeWorkGroupInvocations) wg = limits->maxComputeWorkGroupInvocations;
  if (wg > limits->maxComputeWorkGroupSize[0]) wg = limits->maxComputeWorkGroupSize[0];
  wg = floor_pow2(wg);
  const uint32_t cpi = tuning->channels_per_invocation;
  /* W channels per load where every x and y row starts on a multiple of W. */
  int32_t width = (int32_t)tuning->vector_width;
  while (width > 1 && (d->channels % width || p->x_offset % width || p->x_batch_stride % width ||
                       p->x_token_stride % width || p->y_offset % width ||
                       p->y_batch_stride % width || p->y_token_stride % width))
    width /= 2;
  const uint64_t vectors = div_up((uint64_t)d->channels, (uint64_t)width);
  /* Few channels: spend the work-group's other lanes on tokens. */
  uint32_t channel_lanes = wg;
  while (channel_lanes > 1 && (uint64_t)(channel_lanes / 2) * cpi >= vectors)
    channel_lanes /= 2;
  const uint32_t token_lanes = wg / channel_lanes;
  /* A subgroup's lanes take adjacent vectors: whole cache lines per token. */
  const uint32_t step =
      dev->caps.subgroup_size < channel_lanes ? dev->caps.subgroup_size : channel_lanes;
  uint64_t groups[3] = {div_up(vectors, (uint64_t)channel_lanes * cpi), 0, (uint64_t)d->batch};
  uint32_t tpi = tuning->tokens_per_invocation;
  for (;; tpi /= 2) {
    groups[1] = div_up((uint64_t)d->tokens, (uint64_t)token_lanes * tpi);
    if (tpi == 1 || (double)groups[0] * (double)groups[1] * (double)groups[2] >= tuning->min_groups)
      break;
  }
  for (int i = 0; i < 3; ++i) {
    if (groups[i] > limits->maxComputeWorkGroupCount[i]) return false;
    plan->groups[i] = (uint32_t)groups[i];
  }

  uint32_t *spec = plan->spec;
  spec[SPEC_WORKGROUP_SIZE] = wg;
  spec[SPEC_MODE] = MODE_OUTPUTS;
  spec[SPEC_KERNEL] = (uint32_t)d->kernel;
  spec[SPEC_CHANNELS_PER_INVOCATION] = cpi;
  spec[SPEC_TOKENS_PER_INVOCATION] = tpi;
  spec[SPEC_CHANNEL_LANES] = channel_lanes;
  spec[SPEC_CHANNEL_STEP] = step;
  spec[SPEC_VECTOR_WIDTH] = (uint32_t)width;
  spec[SPEC_SILU] = d->silu;
  spec[SPEC_ACT_BF16] = x->dtype == SEQMIX_BF16;
  spec[SPEC_PARAM_BF16] = w->dtype == SEQMIX_BF16;

  if (state->buffer) {
    /* One invocation per (b, c); the tunables that do not apply stay fixed. */
    memcpy(plan->state_spec, spec, sizeof plan->state_spec);
    plan->state_spec[SPEC_MODE] = MODE_STATE;
    plan->state_spec[SPEC_CHANNELS_PER_INVOCATION] = 1;
    plan->state_spec[SPEC_TOKENS_PER_INVOCATION] = 1;
    plan->state_spec[SPEC_CHANNEL_LANES] = wg;
    plan->state_spec[SPEC_CHANNEL_STEP] = 1;
    plan->state_spec[SPEC_VECTOR_WIDTH] = 1;
    plan->state_spec[SPEC_SILU] = 0;
    plan->state_spec[SPEC_PARAM_BF16] = 0;
    uint64_t state_groups = div_up((uint64_t)d->channels, wg);
    if (state_groups > limits->maxComputeWorkGroupCount[0]) return false;
    plan->state_groups[0] = (uint32_t)state_groups;
    plan->state_groups[1] = 1;
    plan->state_groups[2] = (uint32_t)d->batch;
  }
  return true;
}

bool sm_vk_conv1d_supports(sm_device *dev, const sm_op *op) {
  conv1d_plan plan;
  return plan_conv1d(dev, op, &plan);
}

seqmix_status sm_vk_conv1d_launch(sm_device *dev, const sm_op *op) {
  conv1d_plan plan;
  if (!plan_conv1d(dev, op, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  const sm_vk_pipeline *outputs, *state = NULL;
  seqmix_status st = sm_vk_pipeline_get(dev, plan.module, plan.spec, SPEC_COUNT, 5, &outputs);
  if (!st && plan.push.has_state)
    st = sm_vk_pipeline_get(dev, plan.module, plan.state_spec, SPEC_COUNT, 5, &state);
  if (st) return st;
  st = sm_vk_dispatch(dev, outputs, plan.bindings, &plan.push, sizeof plan.push, plan.groups);
  if (!st && state)
    st = sm_vk_dispatch(dev, state, plan.bindings, &plan.push, sizeof plan.push, plan.state_groups);
  return st;
}
