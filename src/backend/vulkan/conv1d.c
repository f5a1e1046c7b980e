/*
 * SM_OP_CONV1D_CAUSAL on Vulkan (shaders/conv1d.comp).
 *
 * One dispatch computes y; when a state is given a second, tiny dispatch
 * (behind the stream's barrier) overwrites it with the last K-1 inputs, since
 * the first one reads the old state. The SPIR-V variant follows the storage
 * types (conv1d_f32, conv1d_a16, conv1d_a16p16); f16 versus bf16 and every
 * tunable are specialization constants.
 *
 * A call whose tensors do not fit one binding (maxStorageBufferRange, int32
 * indices: 128 MiB on lavapipe) is cut into pieces: groups of whole batches,
 * or, when one batch is too large, chunks of tokens of one batch. Each piece
 * binds only the rows it touches (x from K-1 rows before its first token);
 * every output piece is recorded before any state piece.
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
enum { BIND_X, BIND_WEIGHT, BIND_BIAS, BIND_STATE, BIND_Y, BIND_COUNT };

/* The push constants of conv1d.comp, in its order. */
typedef struct conv1d_push {
  int32_t batch, tokens, channels;
  int32_t x_offset, x_batch_stride, x_token_stride;
  int32_t y_offset, y_batch_stride, y_token_stride;
  int32_t state_offset, state_batch_stride, state_token_stride;
  int32_t weight_offset, weight_channel_stride;
  int32_t bias_offset;
  int32_t has_bias, has_state;
  int32_t token_base;
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
  uint32_t spec[SPEC_COUNT], state_spec[SPEC_COUNT];
  uint32_t channel_groups, tokens_per_group, state_channel_groups;
  int64_t batch_group, token_chunk; /* piece sizes; the whole call when it fits */
  conv1d_push push;                 /* sizes, offsets and token_base are per piece */
  sm_vk_binding weight, bias;
} conv1d_plan;

/* A stride as a push constant: 0 for a dim of extent 1 (never stepped). */
static bool stride_of(const sm_tensor_ref *t, int dim, int32_t *out) {
  int64_t s = t->shape[dim] == 1 ? 0 : t->strides[dim];
  if (s > INT32_MAX) return false;
  *out = (int32_t)s;
  return true;
}

/* Rows [row, row + rows) of batches [batch, batch + batches) of a [B, rows, C] tensor. */
static sm_tensor_ref rows_of(const sm_tensor_ref *t, int64_t batch, int64_t batches, int64_t row,
                             int64_t rows) {
  sm_tensor_ref r = *t;
  if (!t->buffer) return r;
  r.offset += batch * t->strides[0] + row * t->strides[1];
  r.shape[0] = batches;
  r.shape[1] = rows;
  return r;
}

/* Whether `rows` rows of `batches` batches fit one binding wherever they start
 * (the span plus the most that aligning its start down can add). */
static bool rows_fit(const sm_device *dev, const sm_tensor_ref *t, int64_t batches, int64_t rows) {
  if (!t->buffer) return true;
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  uint64_t esize = seqmix_dtype_size(t->dtype);
  uint64_t span = (uint64_t)(batches - 1) * (uint64_t)t->strides[0] +
                  (uint64_t)(rows - 1) * (uint64_t)t->strides[1] + (uint64_t)t->shape[2];
  uint64_t bytes = span * esize + limits->minStorageBufferOffsetAlignment;
  return bytes <= limits->maxStorageBufferRange && bytes / esize <= INT32_MAX;
}

/* Whether a piece of `batches` x `tokens` fits: x with the K-1 rows before it
 * (unless it is the whole sequence), y, and the state of its batches. */
static bool piece_fits(const sm_device *dev, const sm_op *op, int64_t batches, int64_t tokens) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  int64_t x_rows = tokens == d->tokens ? tokens : tokens + d->kernel - 1;
  return rows_fit(dev, &op->tensors[SM_CONV1D_X], batches, x_rows) &&
         rows_fit(dev, &op->tensors[SM_CONV1D_Y], batches, tokens) &&
         rows_fit(dev, &op->tensors[SM_CONV1D_STATE], batches, d->kernel - 1);
}

/* The largest n in [1, max] with fits(n), for a predicate true at 1 and monotone. */
static int64_t largest_fitting(const sm_device *dev, const sm_op *op, int64_t max, bool by_batch) {
  int64_t lo = 1, hi = max;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    bool fits =
        by_batch ? piece_fits(dev, op, mid, op->u.conv1d.tokens) : piece_fits(dev, op, 1, mid);
    if (fits)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* Piece sizes: the whole call, else groups of batches, else chunks of tokens. */
static bool choose_pieces(const sm_device *dev, const sm_op *op, uint64_t tokens_per_group,
                          conv1d_plan *plan) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  int64_t max_batches = d->batch < (int64_t)limits->maxComputeWorkGroupCount[2]
                            ? d->batch
                            : (int64_t)limits->maxComputeWorkGroupCount[2];
  uint64_t max_tokens_u = tokens_per_group * limits->maxComputeWorkGroupCount[1];
  int64_t max_tokens = max_tokens_u < (uint64_t)d->tokens ? (int64_t)max_tokens_u : d->tokens;
  if (max_tokens == d->tokens && piece_fits(dev, op, 1, d->tokens)) {
    plan->token_chunk = d->tokens;
    plan->batch_group = largest_fitting(dev, op, max_batches, true);
    return true;
  }
  if (!piece_fits(dev, op, 1, 1)) return false;
  plan->batch_group = 1;
  plan->token_chunk = largest_fitting(dev, op, max_tokens, false);
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
  p->channels = (int32_t)d->channels;
  p->has_bias = bias->buffer != NULL;
  p->has_state = state->buffer != NULL;
  if (!sm_vk_bind_tensor(dev, w, &plan->weight, &p->weight_offset) ||
      !sm_vk_bind_tensor(dev, bias, &plan->bias, &p->bias_offset))
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
  uint32_t wg =
      (uint32_t)sm_knob_or(op, SM_KNOB_VK_CONV1D_WORKGROUP, tuning->workgroup_size);
  if (wg > limits->maxComputeWorkGroupInvocations) wg = limits->maxComputeWorkGroupInvocations;
  if (wg > limits->maxComputeWorkGroupSize[0]) wg = limits->maxComputeWorkGroupSize[0];
  wg = sm_floor_pow2(wg);
  const uint32_t cpi = tuning->channels_per_invocation;
  /* W channels per load where every x and y row starts on a multiple of W.
   * Binding starts are aligned to a power of two, so the element offsets
   * inside them keep that property (both are powers of two). */
  int64_t width = tuning->vector_width;
  while (width > 1 && (d->channels % width || x->offset % width || p->x_batch_stride % width ||
                       p->x_token_stride % width || y->offset % width ||
                       p->y_batch_stride % width || p->y_token_stride % width))
    width /= 2;
  const uint64_t vectors = sm_div_up((uint64_t)d->channels, (uint64_t)width);
  /* Few channels: spend the work-group's other lanes on tokens. */
  uint32_t channel_lanes = wg;
  while (channel_lanes > 1 && (uint64_t)(channel_lanes / 2) * cpi >= vectors)
    channel_lanes /= 2;
  const uint32_t token_lanes = wg / channel_lanes;
  /* A subgroup's lanes take adjacent vectors: whole cache lines per token. */
  const uint32_t step =
      dev->caps.subgroup_size < channel_lanes ? dev->caps.subgroup_size : channel_lanes;
  const uint64_t channel_groups = sm_div_up(vectors, (uint64_t)channel_lanes * cpi);
  if (channel_groups > limits->maxComputeWorkGroupCount[0]) return false;
  uint32_t tpi =
      (uint32_t)sm_knob_or(op, SM_KNOB_VK_CONV1D_TOKENS, tuning->tokens_per_invocation);
  while (tpi > 1 && (double)channel_groups * (double)d->batch *
                            (double)sm_div_up((uint64_t)d->tokens, (uint64_t)token_lanes * tpi) <
                        tuning->min_groups)
    tpi /= 2;
  plan->channel_groups = (uint32_t)channel_groups;
  plan->tokens_per_group = token_lanes * tpi;
  if (!choose_pieces(dev, op, plan->tokens_per_group, plan)) return false;

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
    uint64_t state_groups = sm_div_up((uint64_t)d->channels, wg);
    if (state_groups > limits->maxComputeWorkGroupCount[0]) return false;
    plan->state_channel_groups = (uint32_t)state_groups;
  }
  return true;
}

/* Binds a piece's rows of x, y and state and records one dispatch. x is bound
 * from x_row (its rows before `token` serve as history); the piece's token 0
 * is the call's token `token`. */
static seqmix_status dispatch_piece(sm_device *dev, const sm_op *op, const conv1d_plan *plan,
                                    const sm_vk_pipeline *pipeline, int64_t batch, int64_t batches,
                                    int64_t x_row, int64_t token, int64_t tokens,
                                    const uint32_t groups[3]) {
  const int64_t history = op->u.conv1d.kernel - 1;
  conv1d_push push = plan->push;
  sm_vk_binding bindings[BIND_COUNT] = {[BIND_WEIGHT] = plan->weight, [BIND_BIAS] = plan->bias};
  sm_tensor_ref x =
      rows_of(&op->tensors[SM_CONV1D_X], batch, batches, x_row, token + tokens - x_row);
  sm_tensor_ref y = rows_of(&op->tensors[SM_CONV1D_Y], batch, batches, token, tokens);
  sm_tensor_ref state = rows_of(&op->tensors[SM_CONV1D_STATE], batch, batches, 0, history);
  /* plan_conv1d sized the pieces so that these bindings fit. */
  if (!sm_vk_bind_tensor(dev, &x, &bindings[BIND_X], &push.x_offset) ||
      !sm_vk_bind_tensor(dev, &y, &bindings[BIND_Y], &push.y_offset) ||
      !sm_vk_bind_tensor(dev, &state, &bindings[BIND_STATE], &push.state_offset))
    return sm_fail(SEQMIX_ERROR_BACKEND, "%s: a piece of the call exceeds a binding", op->name);
  push.x_offset += (int32_t)(token - x_row) * push.x_token_stride;
  push.batch = (int32_t)batches;
  push.tokens = (int32_t)tokens;
  push.token_base = (int32_t)token;
  return sm_vk_dispatch(dev, pipeline, bindings, &push, sizeof push, groups);
}

bool sm_vk_conv1d_supports(sm_device *dev, const sm_op *op) {
  conv1d_plan plan;
  return plan_conv1d(dev, op, &plan);
}

seqmix_status sm_vk_conv1d_launch(sm_device *dev, const sm_op *op) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  conv1d_plan plan;
  if (!plan_conv1d(dev, op, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  const sm_vk_pipeline *outputs, *state = NULL;
  seqmix_status st =
      sm_vk_pipeline_get(dev, plan.module, plan.spec, SPEC_COUNT, BIND_COUNT, &outputs);
  if (!st && plan.push.has_state)
    st = sm_vk_pipeline_get(dev, plan.module, plan.state_spec, SPEC_COUNT, BIND_COUNT, &state);
  const int64_t history = d->kernel - 1;
  if (plan.batch_group < d->batch || plan.token_chunk < d->tokens)
    sm_log(SEQMIX_LOG_DEBUG, "%s: split into pieces of %lld batches x %lld tokens to fit bindings",
           op->name, (long long)plan.batch_group, (long long)plan.token_chunk);
  for (int64_t b = 0; b < d->batch && !st; b += plan.batch_group) {
    int64_t batches = d->batch - b < plan.batch_group ? d->batch - b : plan.batch_group;
    for (int64_t t = 0; t < d->tokens && !st; t += plan.token_chunk) {
      int64_t tokens = d->tokens - t < plan.token_chunk ? d->tokens - t : plan.token_chunk;
      int64_t x_row = t < history ? 0 : t - history;
      uint32_t groups[3] = {plan.channel_groups,
                            (uint32_t)sm_div_up((uint64_t)tokens, plan.tokens_per_group),
                            (uint32_t)batches};
      st = dispatch_piece(dev, op, &plan, outputs, b, batches, x_row, t, tokens, groups);
    }
  }
  /* The state pieces read the last K-1 inputs (or, for L < K-1, the old state). */
  const int64_t state_tokens = d->tokens < history ? d->tokens : history;
  for (int64_t b = 0; state && b < d->batch && !st; b += plan.batch_group) {
    int64_t batches = d->batch - b < plan.batch_group ? d->batch - b : plan.batch_group;
    uint32_t groups[3] = {plan.state_channel_groups, 1, (uint32_t)batches};
    int64_t first = d->tokens - state_tokens;
    st = dispatch_piece(dev, op, &plan, state, b, batches, first, first, state_tokens, groups);
  }
  return st;
}
