/*
 * SM_OP_LONG_CONV on Vulkan (shaders/long_conv.comp; FFT through VkFFT).
 *
 * Direct: a dispatch copies h's first taps as f32 into hT [taps][C] (a
 * device buffer of this file), then the direct dispatch runs over groups of
 * whole batches whose x and y fit one binding each.
 *
 * FFT: per piece of (batches, channels), pack x into zero-padded f32 rows of
 * N + 2 floats in a scratch buffer, VkFFT's in-place R2C over all rows,
 * multiply each row's N/2 + 1 bins by its channel's filter bins (and 1/N),
 * VkFFT's C2R, unpack into y adding D_skip x. VkFFT records into the stream's
 * command buffer (sm_vk_record_begin puts the stream's barrier in front of
 * it, and VkFFT orders its own dispatches); the next dispatch's barrier
 * orders it after VkFFT's last. The filter's bins are computed the same way
 * (pack h, R2C, copy into their own buffer) and cached keyed by h's storage
 * version, view and the transform length, so a model that applies the same
 * h again pays only for x. Plans are cached per (N, rows) and bound to the
 * scratch buffer at creation (VkFFT writes its descriptor sets then), so
 * growing the scratch drops them. Both caches are small and
 * least-recently-used; anything the stream may still use is freed only
 * after a sync.
 *
 * Pieces keep the scratch within maxStorageBufferRange (128 MiB on lavapipe):
 * whole batches when all channels of one fit, else runs of channels of one
 * batch. A call whose single batch of x or y exceeds one binding, or whose
 * hT or h rows do not fit, goes to the CPU fallback (supports() says no).
 *
 * Without VkFFT (SEQMIX_HAVE_VKFFT_VULKAN undefined), an FFT call runs the
 * direct kernel where that is cheap enough, else supports() declines and the
 * CPU fallback runs it (see direct_instead_of_fft).
 */
#include "backend/vulkan/vulkan.h"

#include <stdlib.h>
#include <string.h>

#ifdef SEQMIX_HAVE_VKFFT_VULKAN
/* vkfft_c.h is vkFFT.h with what C and glslang 12 reject fixed (tools/vkfft_c.py). */
#include <glslang/Public/resource_limits_c.h>
#define VKFFT_BACKEND 0
#include "vkfft_c.h"
#endif

/* Specialization constant ids of long_conv.comp. */
enum {
  SPEC_WORKGROUP_SIZE,
  SPEC_WORKGROUP_HEIGHT,
  SPEC_MODE,
  SPEC_TOKENS_PER_INVOCATION,
  SPEC_CHANNEL_LANES,
  SPEC_TILE,
  SPEC_ACT_BF16,
  SPEC_FILTER_16,
  SPEC_SKIP_16,
  SPEC_HAS_SKIP,
  SPEC_COUNT
};
enum { MODE_TRANSPOSE_H, MODE_DIRECT, MODE_PACK_X, MODE_PACK_H, MODE_MULTIPLY, MODE_UNPACK };
enum { BIND_X, BIND_H, BIND_SKIP, BIND_Y, BIND_WORK, BIND_FILTER, BIND_COUNT };

/* The push constants of long_conv.comp, in its order. */
typedef struct long_conv_push {
  int32_t tokens, channels, taps, fft_size, row_floats, bins;
  int32_t x_offset, x_batch_stride, x_token_stride;
  int32_t y_offset, y_batch_stride, y_token_stride;
  int32_t h_offset, h_channel_stride;
  int32_t d_offset, filter_offset;
  float scale;
} long_conv_push;

/* Tunables by device type: invocations per work-group (clamped to the
 * device's limits, a power of two), tokens per direct invocation, and the
 * pack/unpack transpose tile (TILE x TILE invocations). */
typedef struct long_conv_tuning {
  VkPhysicalDeviceType type;
  uint32_t workgroup_size, tokens_per_invocation, tile;
} long_conv_tuning;

static const long_conv_tuning tunings[] = {
    /* lavapipe: long runs amortise the window's start; 8-lane SIMD rows. */
    {VK_PHYSICAL_DEVICE_TYPE_CPU, 64, 16, 16},
    {VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, 256, 8, 16},
    {VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU, 128, 8, 16},
};
static const long_conv_tuning default_tuning = {VK_PHYSICAL_DEVICE_TYPE_OTHER, 64, 8, 16};

/* What every dispatch of a call shares. */
typedef struct long_conv_plan {
  const char *module;
  uint32_t spec[SPEC_COUNT];
  uint32_t workgroup, tile, tokens_per_group;
  long_conv_push push; /* sizes and strides; offsets per dispatch */
  int64_t direct_batches; /* direct: batches per dispatch */
} long_conv_plan;

/* Filter taps that can matter: min(Lh, L). */
static int64_t taps_of(const sm_long_conv_desc *d) {
  return d->filter_len < d->tokens ? d->filter_len : d->tokens;
}

/* A stride as a push constant: 0 for a dim of extent 1 (never stepped). */
static bool stride_of(const sm_tensor_ref *t, int dim, int32_t *out) {
  int64_t s = t->shape[dim] == 1 ? 0 : t->strides[dim];
  if (s > INT32_MAX) return false;
  *out = (int32_t)s;
  return true;
}

/* Batches [b0, b0 + batches) and channels [c0, c0 + channels) of x or y. */
static sm_tensor_ref sequence_piece(const sm_tensor_ref *t, int64_t b0, int64_t batches,
                                    int64_t c0, int64_t channels) {
  sm_tensor_ref r = *t;
  r.offset += b0 * t->strides[0] + c0;
  r.shape[0] = batches;
  r.shape[2] = channels;
  return r;
}

/* Channels [c0, c0 + channels) of h (its first `taps` taps) or of D_skip. */
static sm_tensor_ref channel_piece(const sm_tensor_ref *t, int64_t c0, int64_t channels,
                                   int64_t taps) {
  sm_tensor_ref r = *t;
  if (!t->buffer) return r;
  r.offset += c0 * t->strides[0];
  r.shape[0] = channels;
  if (t->rank == 2) r.shape[1] = taps;
  return r;
}

/* Whether a view fits one binding wherever it starts (its span plus the most
 * that aligning its start down can add), with int32 element indices. */
static bool view_fits(const sm_device *dev, const sm_tensor_ref *t) {
  if (!t->buffer) return true;
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  uint64_t esize = seqmix_dtype_size(t->dtype), span = 1;
  for (int i = 0; i < t->rank; ++i)
    span += (uint64_t)(t->shape[i] - 1) * (uint64_t)t->strides[i];
  uint64_t bytes = span * esize + limits->minStorageBufferOffsetAlignment;
  return bytes <= limits->maxStorageBufferRange && bytes / esize <= INT32_MAX;
}

/* Whether `batches` batches x `channels` channels of x and y fit their bindings. */
static bool sequences_fit(const sm_device *dev, const sm_op *op, int64_t batches,
                          int64_t channels) {
  sm_tensor_ref x = sequence_piece(&op->tensors[SM_LCONV_X], 0, batches, 0, channels);
  sm_tensor_ref y = sequence_piece(&op->tensors[SM_LCONV_Y], 0, batches, 0, channels);
  return view_fits(dev, &x) && view_fits(dev, &y);
}

/* The largest n in [1, max] with sequences_fit(n batches), or 0 if not even 1. */
static int64_t batches_that_fit(const sm_device *dev, const sm_op *op, int64_t max,
                                int64_t channels) {
  if (!sequences_fit(dev, op, 1, channels)) return 0;
  int64_t lo = 1, hi = max;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    if (sequences_fit(dev, op, mid, channels))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* Everything launch needs, or false where the device cannot run the direct
 * method (sizes, bindings) or the FFT's kernels (dtypes). */
static bool plan_common(const sm_device *dev, const sm_op *op, long_conv_plan *plan) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const sm_tensor_ref *x = &op->tensors[SM_LCONV_X], *h = &op->tensors[SM_LCONV_H],
                      *skip = &op->tensors[SM_LCONV_D_SKIP], *y = &op->tensors[SM_LCONV_Y];
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  memset(plan, 0, sizeof *plan);
  const bool act16 = x->dtype != SEQMIX_F32;
  if (act16 && !dev->caps.storage16) return false;
  if (d->batch > INT32_MAX || d->tokens > INT32_MAX || d->channels > INT32_MAX) return false;
  plan->module = act16 ? "long_conv_a16.spv" : "long_conv_f32.spv";

  const long_conv_tuning *tuning = &default_tuning;
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].type == dev->caps.props.deviceType) tuning = &tunings[i];
  uint32_t wg = tuning->workgroup_size;
  if (wg > limits->maxComputeWorkGroupInvocations) wg = limits->maxComputeWorkGroupInvocations;
  if (wg > limits->maxComputeWorkGroupSize[0]) wg = limits->maxComputeWorkGroupSize[0];
  plan->workgroup = (uint32_t)sm_floor_pow2(wg);
  uint32_t tile = tuning->tile;
  while (tile > 1 && (tile * tile > limits->maxComputeWorkGroupInvocations ||
                      tile > limits->maxComputeWorkGroupSize[1]))
    tile /= 2;
  plan->tile = tile;
  /* Few channels: spend the work-group's other lanes on token runs. */
  uint32_t channel_lanes = plan->workgroup;
  while (channel_lanes > 1 && channel_lanes / 2 >= (uint64_t)d->channels)
    channel_lanes /= 2;
  plan->tokens_per_group = plan->workgroup / channel_lanes * tuning->tokens_per_invocation;

  uint32_t *spec = plan->spec;
  spec[SPEC_WORKGROUP_SIZE] = plan->workgroup;
  spec[SPEC_WORKGROUP_HEIGHT] = 1;
  spec[SPEC_MODE] = MODE_DIRECT;
  spec[SPEC_TOKENS_PER_INVOCATION] = tuning->tokens_per_invocation;
  spec[SPEC_CHANNEL_LANES] = channel_lanes;
  spec[SPEC_TILE] = tile;
  spec[SPEC_ACT_BF16] = x->dtype == SEQMIX_BF16;
  spec[SPEC_FILTER_16] = h->dtype != SEQMIX_F32;
  spec[SPEC_SKIP_16] = skip->buffer && skip->dtype != SEQMIX_F32;
  spec[SPEC_HAS_SKIP] = skip->buffer != NULL;

  long_conv_push *p = &plan->push;
  p->tokens = (int32_t)d->tokens;
  p->channels = (int32_t)d->channels;
  p->taps = (int32_t)taps_of(d);
  if (!stride_of(x, 0, &p->x_batch_stride) || !stride_of(x, 1, &p->x_token_stride) ||
      !stride_of(y, 0, &p->y_batch_stride) || !stride_of(y, 1, &p->y_token_stride) ||
      !stride_of(h, 0, &p->h_channel_stride))
    return false;
  return true;
}

/* The direct method's pieces: batch groups whose x and y fit; hT and h fit. */
static bool plan_direct(const sm_device *dev, const sm_op *op, long_conv_plan *plan) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  const uint64_t h_t_bytes = (uint64_t)taps_of(d) * (uint64_t)d->channels * sizeof(float);
  sm_tensor_ref h = channel_piece(&op->tensors[SM_LCONV_H], 0, d->channels, taps_of(d));
  if (h_t_bytes > limits->maxStorageBufferRange || h_t_bytes > dev->caps.max_allocation ||
      !view_fits(dev, &h))
    return false;
  const uint64_t channel_groups = sm_div_up((uint64_t)d->channels, plan->spec[SPEC_CHANNEL_LANES]);
  const uint64_t token_groups = sm_div_up((uint64_t)d->tokens, plan->tokens_per_group);
  if (channel_groups > limits->maxComputeWorkGroupCount[0] ||
      token_groups > limits->maxComputeWorkGroupCount[1])
    return false;
  int64_t max = d->batch < (int64_t)limits->maxComputeWorkGroupCount[2]
                    ? d->batch
                    : (int64_t)limits->maxComputeWorkGroupCount[2];
  plan->direct_batches = batches_that_fit(dev, op, max, d->channels);
  return plan->direct_batches > 0;
}

/* Records one dispatch of `mode` with the plan's constants. */
static seqmix_status dispatch_mode(sm_device *dev, const long_conv_plan *plan, uint32_t mode,
                                   const sm_vk_binding *bindings, const long_conv_push *push,
                                   const uint32_t groups[3]) {
  uint32_t spec[SPEC_COUNT];
  memcpy(spec, plan->spec, sizeof spec);
  spec[SPEC_MODE] = mode;
  if (mode == MODE_PACK_X || mode == MODE_UNPACK) {
    spec[SPEC_WORKGROUP_SIZE] = spec[SPEC_WORKGROUP_HEIGHT] = plan->tile;
  }
  /* Constants a mode does not read stay fixed, so each mode has one pipeline. */
  if (mode != MODE_DIRECT) spec[SPEC_TOKENS_PER_INVOCATION] = spec[SPEC_CHANNEL_LANES] = 1;
  const sm_vk_pipeline *pipeline;
  seqmix_status st = sm_vk_pipeline_get(dev, plan->module, spec, SPEC_COUNT, BIND_COUNT, &pipeline);
  if (st) return st;
  return sm_vk_dispatch(dev, pipeline, bindings, push, sizeof *push, groups);
}

/* ---- The device's cache ---------------------------------------------------------- */

/* Cache sizes, and the FFT scratch buffer's cap below the device's limits. */
enum { CACHED_PLANS = 4, CACHED_FILTERS = 4 };
#define SCRATCH_CAP ((uint64_t)512 << 20)

#ifdef SEQMIX_HAVE_VKFFT_VULKAN
/* A VkFFT application for `rows` in-place real transforms of length N over
 * the scratch buffer. VkFFT keeps pointers to buffer_bytes and to the
 * scratch's VkBuffer, so both live as long as the plan. */
typedef struct fft_plan {
  int64_t fft_size, rows; /* rows 0: empty slot */
  uint64_t buffer_bytes, last_use;
  VkFFTApplication *app;
} fft_plan;

/* A filter's bins [C][N/2 + 1] (complex f32), with what they were computed from. */
typedef struct filter_bins {
  const sm_buffer *buffer; /* NULL: empty slot */
  uint64_t version;
  int64_t offset, channel_stride, fft_size, channels, taps;
  seqmix_dtype dtype;
  sm_buffer *bins;
  uint64_t last_use;
} filter_bins;

static void delete_plan(fft_plan *plan) {
  if (plan->app) {
    deleteVkFFT(plan->app);
    free(plan->app);
  }
  memset(plan, 0, sizeof *plan);
}
#endif

/* Made on first use, freed at close. */
struct sm_vk_long_conv_cache {
  sm_buffer *transposed_h; /* the direct method's hT; grows */
#ifdef SEQMIX_HAVE_VKFFT_VULKAN
  sm_buffer *scratch; /* a piece's rows of N + 2 floats; grows */
  VkFence fence;      /* VkFFT waits on it for its table uploads at plan time */
  uint64_t clock;     /* use counter for least-recently-used eviction */
  fft_plan plans[CACHED_PLANS];
  filter_bins filters[CACHED_FILTERS];
#endif
};

static seqmix_status get_cache(sm_device *dev) {
  if (dev->long_conv) return SEQMIX_OK;
  struct sm_vk_long_conv_cache *cache = calloc(1, sizeof *cache);
  if (!cache) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
#ifdef SEQMIX_HAVE_VKFFT_VULKAN
  VkFenceCreateInfo info = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VkResult r = vkCreateFence(dev->device, &info, NULL, &cache->fence);
  if (r != VK_SUCCESS) {
    free(cache);
    return sm_vk_fail("vkCreateFence", r);
  }
#endif
  dev->long_conv = cache;
  return SEQMIX_OK;
}

void sm_vk_long_conv_release(sm_device *dev) {
  struct sm_vk_long_conv_cache *cache = dev->long_conv;
  if (!cache) return;
#ifdef SEQMIX_HAVE_VKFFT_VULKAN
  for (int i = 0; i < CACHED_PLANS; ++i)
    delete_plan(&cache->plans[i]);
  for (int i = 0; i < CACHED_FILTERS; ++i)
    if (cache->filters[i].bins) sm_vk_free(dev, cache->filters[i].bins);
  if (cache->scratch) sm_vk_free(dev, cache->scratch);
  if (cache->fence) vkDestroyFence(dev->device, cache->fence, NULL);
#endif
  if (cache->transposed_h) sm_vk_free(dev, cache->transposed_h);
  free(cache);
  dev->long_conv = NULL;
}

/* hT [taps][C] f32 with room for `bytes` (grown; sm_vk_free syncs first when
 * the stream may still use the old one). */
static seqmix_status reserve_transposed_h(sm_device *dev, uint64_t bytes, sm_buffer **out) {
  seqmix_status st = get_cache(dev);
  if (st) return st;
  struct sm_vk_long_conv_cache *cache = dev->long_conv;
  if (!cache->transposed_h || cache->transposed_h->bytes < bytes) {
    if (cache->transposed_h) sm_vk_free(dev, cache->transposed_h);
    cache->transposed_h = NULL;
    if ((st = sm_vk_alloc(dev, (size_t)bytes, &cache->transposed_h))) return st;
  }
  *out = cache->transposed_h;
  return SEQMIX_OK;
}

/* ---- Direct ------------------------------------------------------------------------- */

static seqmix_status launch_direct(sm_device *dev, const sm_op *op) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  long_conv_plan plan;
  if (!plan_common(dev, op, &plan) || !plan_direct(dev, op, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  const int64_t taps = taps_of(d);
  const uint64_t h_t_bytes = (uint64_t)taps * (uint64_t)d->channels * sizeof(float);
  sm_buffer *h_t;
  seqmix_status st = reserve_transposed_h(dev, h_t_bytes, &h_t);
  if (st) return st;
  sm_vk_binding bindings[BIND_COUNT];
  long_conv_push push = plan.push;
  sm_tensor_ref h = channel_piece(&op->tensors[SM_LCONV_H], 0, d->channels, taps);
  const sm_tensor_ref none = {0};
  int32_t unused;
  /* plan_direct checked that these fit. */
  for (int i = 0; i < BIND_COUNT; ++i)
    sm_vk_bind_tensor(dev, &none, &bindings[i], &unused);
  sm_vk_bind_tensor(dev, &h, &bindings[BIND_H], &push.h_offset);
  sm_vk_bind_tensor(dev, &op->tensors[SM_LCONV_D_SKIP], &bindings[BIND_SKIP], &push.d_offset);
  bindings[BIND_WORK] = (sm_vk_binding){h_t, 0, h_t_bytes};
  const uint32_t transpose_groups[3] = {(uint32_t)sm_div_up((uint64_t)taps, plan.workgroup),
                                        (uint32_t)d->channels, 1};
  if (transpose_groups[1] > dev->caps.props.limits.maxComputeWorkGroupCount[1])
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: too many channels for one dispatch", op->name);
  if ((st = dispatch_mode(dev, &plan, MODE_TRANSPOSE_H, bindings, &push, transpose_groups)))
    return st;

  for (int64_t b0 = 0; b0 < d->batch && !st; b0 += plan.direct_batches) {
    const int64_t batches = d->batch - b0 < plan.direct_batches ? d->batch - b0 : plan.direct_batches;
    sm_tensor_ref x = sequence_piece(&op->tensors[SM_LCONV_X], b0, batches, 0, d->channels);
    sm_tensor_ref y = sequence_piece(&op->tensors[SM_LCONV_Y], b0, batches, 0, d->channels);
    if (!sm_vk_bind_tensor(dev, &x, &bindings[BIND_X], &push.x_offset) ||
        !sm_vk_bind_tensor(dev, &y, &bindings[BIND_Y], &push.y_offset))
      return sm_fail(SEQMIX_ERROR_BACKEND, "%s: a piece of the call exceeds a binding", op->name);
    const uint32_t groups[3] = {
        (uint32_t)sm_div_up((uint64_t)d->channels, plan.spec[SPEC_CHANNEL_LANES]),
        (uint32_t)sm_div_up((uint64_t)d->tokens, plan.tokens_per_group), (uint32_t)batches};
    st = dispatch_mode(dev, &plan, MODE_DIRECT, bindings, &push, groups);
  }
  return st;
}

/* ---- FFT (VkFFT) ------------------------------------------------------------------- */

#ifdef SEQMIX_HAVE_VKFFT_VULKAN

/* How an FFT call is cut: N, the row length, and pieces of `batches` batches
 * x `channels` channels (rows = batches * channels rows of the scratch). */
typedef struct fft_pieces {
  int64_t fft_size, row_floats, bins;
  int64_t batches, channels, rows;
} fft_pieces;

static bool plan_pieces(const sm_device *dev, const sm_op *op, const long_conv_plan *plan,
                        fft_pieces *p) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  p->fft_size = sm_long_conv_fft_size(d->tokens, d->filter_len);
  p->row_floats = p->fft_size + 2;
  p->bins = p->fft_size / 2 + 1;
  uint64_t limit = limits->maxStorageBufferRange;
  if (limit > dev->caps.max_allocation) limit = dev->caps.max_allocation;
  if (limit > SCRATCH_CAP) limit = SCRATCH_CAP;
  const uint64_t row_bytes = (uint64_t)p->row_floats * sizeof(float);
  uint64_t rows_max = limit / row_bytes;
  /* Rows and channels are work-group counts along y (multiply, pack h). */
  if (rows_max > limits->maxComputeWorkGroupCount[1]) rows_max = limits->maxComputeWorkGroupCount[1];
  if (rows_max < 1 || sm_div_up((uint64_t)p->fft_size, plan->workgroup) >
                          limits->maxComputeWorkGroupCount[0])
    return false;
  if ((uint64_t)d->channels <= rows_max) {
    p->channels = d->channels;
    int64_t batches = (int64_t)(rows_max / (uint64_t)d->channels);
    if (batches > d->batch) batches = d->batch;
    if (batches > (int64_t)limits->maxComputeWorkGroupCount[2])
      batches = (int64_t)limits->maxComputeWorkGroupCount[2];
    p->batches = batches_that_fit(dev, op, batches, p->channels);
  } else {
    p->channels = (int64_t)rows_max;
    p->batches = batches_that_fit(dev, op, 1, p->channels);
  }
  p->rows = p->batches * p->channels;
  sm_tensor_ref h = channel_piece(&op->tensors[SM_LCONV_H], 0, p->channels, taps_of(d));
  return p->batches > 0 && view_fits(dev, &h);
}

/* The scratch buffer with room for `bytes`. Growing it drops the plans (they
 * are bound to the old buffer) once the stream is done with them. */
static seqmix_status reserve_scratch(sm_device *dev, uint64_t bytes) {
  struct sm_vk_long_conv_cache *cache = dev->long_conv;
  if (cache->scratch && cache->scratch->bytes >= bytes) return SEQMIX_OK;
  seqmix_status st = sm_vk_sync(dev);
  if (st) return st;
  for (int i = 0; i < CACHED_PLANS; ++i)
    delete_plan(&cache->plans[i]);
  if (cache->scratch) sm_vk_free(dev, cache->scratch);
  cache->scratch = NULL;
  return sm_vk_alloc(dev, (size_t)bytes, &cache->scratch);
}

/* The plan for (N, rows) over the scratch buffer: cached, or made in place of
 * the least recently used one (after a sync: recorded work may use it). */
static seqmix_status get_plan(sm_device *dev, const fft_pieces *p, fft_plan **out) {
  struct sm_vk_long_conv_cache *cache = dev->long_conv;
  fft_plan *victim = &cache->plans[0];
  for (int i = 0; i < CACHED_PLANS; ++i) {
    fft_plan *plan = &cache->plans[i];
    if (plan->rows == p->rows && plan->fft_size == p->fft_size) {
      plan->last_use = ++cache->clock;
      *out = plan;
      return SEQMIX_OK;
    }
    if (plan->last_use < victim->last_use) victim = plan;
  }
  seqmix_status st;
  if (victim->app && (st = sm_vk_sync(dev))) return st;
  delete_plan(victim);
  victim->app = calloc(1, sizeof *victim->app);
  if (!victim->app) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "vulkan backend: out of host memory");
  victim->buffer_bytes = (uint64_t)p->rows * (uint64_t)p->row_floats * sizeof(float);
  VkFFTConfiguration config = {0};
  config.FFTdim = 1;
  config.size[0] = (uint64_t)p->fft_size;
  config.numberBatches = (uint64_t)p->rows;
  config.performR2C = 1; /* in place: rows of N/2 + 1 complex, N reals on input */
  config.useLUT = 1;     /* twiddles from a table made in double: accurate at large N */
  config.physicalDevice = &dev->physical;
  config.device = &dev->device;
  config.queue = &dev->queue;
  config.commandPool = &dev->command_pool;
  config.fence = &cache->fence;
  config.buffer = &cache->scratch->buffer;
  config.bufferSize = &victim->buffer_bytes;
  VkFFTResult r = initializeVkFFT(victim->app, config);
  if (r != VKFFT_SUCCESS) {
    free(victim->app); /* initializeVkFFT cleans up after itself on failure */
    memset(victim, 0, sizeof *victim);
    return sm_fail(SEQMIX_ERROR_BACKEND, "initializeVkFFT: VkFFT error %d (N %lld, %lld rows)",
                   (int)r, (long long)p->fft_size, (long long)p->rows);
  }
  victim->fft_size = p->fft_size;
  victim->rows = p->rows;
  victim->last_use = ++cache->clock;
  *out = victim;
  return SEQMIX_OK;
}

/* Records the plan's forward (R2C) or inverse (C2R, unnormalised) transform. */
static seqmix_status record_plan(sm_device *dev, fft_plan *plan, bool inverse) {
  VkCommandBuffer cmd;
  seqmix_status st = sm_vk_record_begin(dev, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, &cmd);
  if (st) return st;
  VkFFTLaunchParams launch = {0};
  launch.commandBuffer = &cmd;
  VkFFTResult r = VkFFTAppend(plan->app, inverse ? 1 : -1, &launch);
  if (r != VKFFT_SUCCESS)
    return sm_fail(SEQMIX_ERROR_BACKEND, "VkFFTAppend: VkFFT error %d", (int)r);
  return sm_vk_record_end(dev);
}

/* Zeroes the scratch rows [rows, plan rows) a piece leaves unused: VkFFT
 * transforms every row of its plan, two rows at a time as one complex
 * transform (mergeSequencesR2C), so stale values there would leak into the
 * row paired with them. */
static seqmix_status clear_unused_rows(sm_device *dev, const fft_pieces *p, int64_t rows) {
  if (rows >= p->rows) return SEQMIX_OK;
  const VkDeviceSize row_bytes = (VkDeviceSize)p->row_floats * sizeof(float);
  VkCommandBuffer cmd;
  seqmix_status st = sm_vk_record_begin(dev, VK_PIPELINE_STAGE_TRANSFER_BIT, &cmd);
  if (st) return st;
  vkCmdFillBuffer(cmd, dev->long_conv->scratch->buffer, (VkDeviceSize)rows * row_bytes,
                  (VkDeviceSize)(p->rows - rows) * row_bytes, 0);
  return sm_vk_record_end(dev);
}

/* Bindings every FFT dispatch starts from: the dummy everywhere, the scratch as work. */
static void fft_bindings(sm_device *dev, const fft_pieces *p, sm_vk_binding *bindings) {
  const sm_tensor_ref none = {0};
  int32_t unused;
  for (int i = 0; i < BIND_COUNT; ++i)
    sm_vk_bind_tensor(dev, &none, &bindings[i], &unused);
  bindings[BIND_WORK] = (sm_vk_binding){dev->long_conv->scratch, 0,
                                        (VkDeviceSize)p->rows * p->row_floats * sizeof(float)};
}

/* Transforms h's channels [c0, c0 + channels) into filter->bins. */
static seqmix_status filter_piece(sm_device *dev, const sm_op *op, const long_conv_plan *plan,
                                  const fft_pieces *p, fft_plan *fft, sm_buffer *bins,
                                  int64_t c0, int64_t channels) {
  sm_vk_binding bindings[BIND_COUNT];
  fft_bindings(dev, p, bindings);
  long_conv_push push = plan->push;
  push.fft_size = (int32_t)p->fft_size;
  push.row_floats = (int32_t)p->row_floats;
  sm_tensor_ref h = channel_piece(&op->tensors[SM_LCONV_H], c0, channels, plan->push.taps);
  if (!sm_vk_bind_tensor(dev, &h, &bindings[BIND_H], &push.h_offset))
    return sm_fail(SEQMIX_ERROR_BACKEND, "%s: a piece of h exceeds a binding", op->name);
  const uint32_t groups[3] = {(uint32_t)sm_div_up((uint64_t)p->fft_size, plan->workgroup),
                              (uint32_t)channels, 1};
  seqmix_status st;
  if ((st = dispatch_mode(dev, plan, MODE_PACK_H, bindings, &push, groups)) ||
      (st = clear_unused_rows(dev, p, channels)) || (st = record_plan(dev, fft, false)))
    return st;
  const size_t row_bytes = (size_t)p->row_floats * sizeof(float);
  return sm_vk_copy(dev, dev->long_conv->scratch, 0, bins, (size_t)c0 * row_bytes,
                    (size_t)channels * row_bytes);
}

/* The bins of the call's filter: cached, or computed in place of the least
 * recently used entry (recorded ahead of the call's pieces). */
static seqmix_status get_filter(sm_device *dev, const sm_op *op, const long_conv_plan *plan,
                                const fft_pieces *p, fft_plan *fft, filter_bins **out) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const sm_tensor_ref *h = &op->tensors[SM_LCONV_H];
  struct sm_vk_long_conv_cache *cache = dev->long_conv;
  const filter_bins key = {.buffer = h->buffer,
                           .version = h->version,
                           .offset = h->offset,
                           .channel_stride = h->strides[0],
                           .fft_size = p->fft_size,
                           .channels = d->channels,
                           .taps = taps_of(d),
                           .dtype = h->dtype};
  filter_bins *victim = &cache->filters[0];
  for (int i = 0; i < CACHED_FILTERS; ++i) {
    filter_bins *f = &cache->filters[i];
    if (f->buffer == key.buffer && f->version == key.version && f->offset == key.offset &&
        f->channel_stride == key.channel_stride && f->fft_size == key.fft_size &&
        f->channels == key.channels && f->taps == key.taps && f->dtype == key.dtype) {
      f->last_use = ++cache->clock;
      *out = f;
      return SEQMIX_OK;
    }
    if (f->last_use < victim->last_use) victim = f;
  }
  if (victim->bins) sm_vk_free(dev, victim->bins); /* syncs first if the stream may use it */
  memset(victim, 0, sizeof *victim);
  sm_buffer *bins = NULL;
  seqmix_status st =
      sm_vk_alloc(dev, (size_t)d->channels * (size_t)p->row_floats * sizeof(float), &bins);
  for (int64_t c0 = 0; c0 < d->channels && !st; c0 += p->rows) {
    const int64_t channels = d->channels - c0 < p->rows ? d->channels - c0 : p->rows;
    st = filter_piece(dev, op, plan, p, fft, bins, c0, channels);
  }
  if (st) {
    if (bins) sm_vk_free(dev, bins);
    return st;
  }
  *victim = key;
  victim->bins = bins;
  victim->last_use = ++cache->clock;
  *out = victim;
  return SEQMIX_OK;
}

/* One piece: batches [b0, b0 + batches) x channels [c0, c0 + channels). */
static seqmix_status fft_piece(sm_device *dev, const sm_op *op, const long_conv_plan *plan,
                               const fft_pieces *p, fft_plan *fft, const filter_bins *filter,
                               int64_t b0, int64_t batches, int64_t c0, int64_t channels) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  sm_vk_binding bindings[BIND_COUNT];
  fft_bindings(dev, p, bindings);
  long_conv_push push = plan->push;
  push.channels = (int32_t)channels;
  push.fft_size = (int32_t)p->fft_size;
  push.row_floats = (int32_t)p->row_floats;
  push.bins = (int32_t)p->bins;
  push.scale = 1.0f / (float)p->fft_size;
  sm_tensor_ref x = sequence_piece(&op->tensors[SM_LCONV_X], b0, batches, c0, channels);
  sm_tensor_ref y = sequence_piece(&op->tensors[SM_LCONV_Y], b0, batches, c0, channels);
  sm_tensor_ref skip = channel_piece(&op->tensors[SM_LCONV_D_SKIP], c0, channels, 0);
  /* The filter's rows from c0, bound from an aligned start: rows are whole
   * vec2s (N is even), so the remainder is too. */
  const VkDeviceSize row_bytes = (VkDeviceSize)p->row_floats * sizeof(float);
  const VkDeviceSize first = (VkDeviceSize)c0 * row_bytes;
  const VkDeviceSize align = dev->caps.props.limits.minStorageBufferOffsetAlignment;
  const VkDeviceSize base = align > 1 ? first - first % align : first;
  bindings[BIND_FILTER] =
      (sm_vk_binding){filter->bins, base, first - base + (VkDeviceSize)channels * row_bytes};
  push.filter_offset = (int32_t)((first - base) / (2 * sizeof(float)));
  if (!sm_vk_bind_tensor(dev, &x, &bindings[BIND_X], &push.x_offset) ||
      !sm_vk_bind_tensor(dev, &y, &bindings[BIND_Y], &push.y_offset) ||
      !sm_vk_bind_tensor(dev, &skip, &bindings[BIND_SKIP], &push.d_offset))
    return sm_fail(SEQMIX_ERROR_BACKEND, "%s: a piece of the call exceeds a binding", op->name);
  const uint32_t channel_tiles = (uint32_t)sm_div_up((uint64_t)channels, plan->tile);
  const uint32_t pack_groups[3] = {(uint32_t)sm_div_up((uint64_t)p->fft_size, plan->tile),
                                   channel_tiles, (uint32_t)batches};
  const uint32_t multiply_groups[3] = {(uint32_t)sm_div_up((uint64_t)p->bins, plan->workgroup),
                                       (uint32_t)(batches * channels), 1};
  const uint32_t unpack_groups[3] = {(uint32_t)sm_div_up((uint64_t)d->tokens, plan->tile),
                                     channel_tiles, (uint32_t)batches};
  seqmix_status st;
  if ((st = dispatch_mode(dev, plan, MODE_PACK_X, bindings, &push, pack_groups)) ||
      (st = clear_unused_rows(dev, p, batches * channels)) ||
      (st = record_plan(dev, fft, false)) ||
      (st = dispatch_mode(dev, plan, MODE_MULTIPLY, bindings, &push, multiply_groups)) ||
      (st = record_plan(dev, fft, true)))
    return st;
  return dispatch_mode(dev, plan, MODE_UNPACK, bindings, &push, unpack_groups);
}

static seqmix_status launch_fft(sm_device *dev, const sm_op *op) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  long_conv_plan plan;
  fft_pieces p;
  if (!plan_common(dev, op, &plan) || !plan_pieces(dev, op, &plan, &p))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  fft_plan *fft = NULL;
  filter_bins *filter = NULL;
  seqmix_status st;
  if ((st = get_cache(dev)) ||
      (st = reserve_scratch(dev, (uint64_t)p.rows * (uint64_t)p.row_floats * sizeof(float))) ||
      (st = get_plan(dev, &p, &fft)) || (st = get_filter(dev, op, &plan, &p, fft, &filter)))
    return st;
  if (p.batches < d->batch || p.channels < d->channels)
    sm_log(SEQMIX_LOG_DEBUG, "%s: FFT in pieces of %lld batches x %lld channels", op->name,
           (long long)p.batches, (long long)p.channels);
  for (int64_t b0 = 0; b0 < d->batch && !st; b0 += p.batches) {
    const int64_t batches = d->batch - b0 < p.batches ? d->batch - b0 : p.batches;
    for (int64_t c0 = 0; c0 < d->channels && !st; c0 += p.channels) {
      const int64_t channels = d->channels - c0 < p.channels ? d->channels - c0 : p.channels;
      st = fft_piece(dev, op, &plan, &p, fft, filter, b0, batches, c0, channels);
    }
  }
  return st;
}

#else /* no VkFFT */

/* Whether an FFT call may run the direct kernel instead, by the cost model's
 * measures of both (src/ops/convmix.c). */
static bool direct_instead_of_fft(const sm_long_conv_desc *d) {
  /* The direct kernel stands in for a missing FFT while it costs at most this
   * many times the FFT's work: up to there the device still beats moving the
   * call to the CPU; past it the CPU's FFT wins, so the fallback runs it. */
  enum { DIRECT_FOR_FFT_RATIO = 8 };
  return sm_long_conv_direct_over_fft(d->tokens, d->filter_len) <= DIRECT_FOR_FFT_RATIO;
}

#endif

/* ---- Entry points ------------------------------------------------------------------ */

bool sm_vk_long_conv_supports(sm_device *dev, const sm_op *op) {
  long_conv_plan plan;
  if (!plan_common(dev, op, &plan)) return false;
  if (op->u.long_conv.method != SEQMIX_CONV_FFT) return plan_direct(dev, op, &plan);
#ifdef SEQMIX_HAVE_VKFFT_VULKAN
  fft_pieces p;
  return plan_pieces(dev, op, &plan, &p);
#else
  return direct_instead_of_fft(&op->u.long_conv) && plan_direct(dev, op, &plan);
#endif
}

seqmix_status sm_vk_long_conv_launch(sm_device *dev, const sm_op *op) {
#ifdef SEQMIX_HAVE_VKFFT_VULKAN
  if (op->u.long_conv.method == SEQMIX_CONV_FFT) return launch_fft(dev, op);
#endif
  return launch_direct(dev, op); /* without VkFFT: supports() let FFT calls through where cheap */
}
