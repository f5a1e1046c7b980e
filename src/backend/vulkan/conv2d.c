/*
 * SM_OP_CONV2D_DEPTHWISE and SM_OP_POOL_MIXER on Vulkan (shaders/conv2d.comp).
 *
 * Both are a sum over a window of x per output pixel and channel: the
 * convolution weighs it, the pool mixer (stride 1, pad pool / 2) divides it
 * by the pixels inside the image and subtracts x. So both are first described
 * as a window_problem and run by the same shader, MODE telling them apart.
 *
 * A work-group computes a tile of output pixels of a block of channels from
 * its input tile with halo in shared memory (see the shader). The tile comes
 * from the tuning table, the image and the device's limits (choose_tile).
 * K x K kernels with K in {3, 5, 7}, equal strides of 1 or 2 and no dilation
 * take the fast path: the kernel and stride are specialization constants,
 * every loop is unrolled and an invocation keeps a register tile of outputs.
 * Every other shape takes the generic path (loops, one output per
 * invocation), and when not even one output's receptive field fits shared
 * memory, reads x directly. The SPIR-V variant follows the storage types
 * (conv2d_f32, conv2d_a16, conv2d_a16p16); f16 versus bf16 and every tunable
 * are specialization constants.
 *
 * A call whose tensors do not fit one binding (maxStorageBufferRange, int32
 * indices: 128 MiB on lavapipe) is cut into pieces: groups of whole batches,
 * or, when one image is too large, runs of output rows of one image. Each
 * piece binds only the rows it touches.
 */
#include "backend/vulkan/vulkan.h"

#include <string.h>

/* Specialization constant ids of conv2d.comp. */
enum {
  SPEC_WORKGROUP_SIZE,
  SPEC_MODE,
  SPEC_KERNEL,
  SPEC_STRIDE,
  SPEC_CHANNEL_LANES,
  SPEC_ROW_LANES,
  SPEC_COL_LANES,
  SPEC_OUT_ROWS,
  SPEC_OUT_COLS,
  SPEC_USE_SHARED,
  SPEC_TILE_SIZE,
  SPEC_LOAD_ITERS,
  SPEC_VECTOR_WIDTH,
  SPEC_PARAM_VECTORS,
  SPEC_ACT_BF16,
  SPEC_PARAM_BF16,
  SPEC_COUNT
};
enum { MODE_CONV, MODE_POOL };
enum { BIND_X, BIND_WEIGHT, BIND_BIAS, BIND_Y, BIND_COUNT };

/* Fast-path limits: kernel sizes and strides with unrolled kernels, and the
 * most unrolled rounds of the tile copy. */
enum { FAST_MAX_STRIDE = 2, FAST_MAX_LOAD_ITERS = 64 };
/* Shared memory the shader's tile declarations of the two unused widths take. */
enum { UNUSED_TILE_BYTES = 32 };
static bool fast_kernel(int64_t k) { return k == 3 || k == 5 || k == 7; }

/* llvmpipe (lavapipe) ends every loop of an invocation after 65535 trips, all
 * loops together (see ssm.c): the generic path's trips must stay below it. */
enum { LLVMPIPE_LOOP_BUDGET = 60000 };

/* The push constants of conv2d.comp, in its order. */
typedef struct conv2d_push {
  int32_t height, width, channels, out_width;
  int32_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int32_t x_offset, x_batch_stride, x_row_stride, x_col_stride;
  int32_t y_offset, y_batch_stride, y_row_stride, y_col_stride;
  int32_t weight_offset, weight_row_stride, weight_col_stride;
  int32_t bias_offset, has_bias;
  int32_t x_row_base, x_rows; /* per piece */
  int32_t y_row_base, y_rows; /* per piece */
} conv2d_push;

/* Tunables by device type, passed as specialization constants: the
 * work-group size (clamped to the device's limits, rounded down to a power
 * of two), the channel vectors of a work-group, and the register tile of an
 * invocation on the fast path (out_rows x out_cols outputs). choose_tile
 * shrinks them to the image and to shared memory. */
typedef struct conv2d_tuning {
  VkPhysicalDeviceType type;
  uint32_t workgroup_size, channel_lanes, out_rows, out_cols;
} conv2d_tuning;

static const conv2d_tuning tunings[] = {
    /* lavapipe: a work-group is one thread stepping over 8-lane rows, and
     * every load, shared memory included, is one scalar load per lane and
     * component, so loads per output decide: a 2 x 4 register tile reads
     * ~24 vectors per output vector of a 7x7 kernel (1 x 1: 98) and still
     * lets an 8 x 8 tile with its halo fit 32 KiB (measured: 1x1, 1x2, 1x8,
     * 2x4, 4x4, 4x8 on the bench shapes; 2x4 was as fast as any, 1x1 4x slower). */
    {VK_PHYSICAL_DEVICE_TYPE_CPU, 64, 8, 2, 4},
    {VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, 256, 8, 2, 2},
    {VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU, 128, 8, 2, 2},
};
static const conv2d_tuning default_tuning = {VK_PHYSICAL_DEVICE_TYPE_OTHER, 64, 8, 1, 2};

/* What both ops compute: a window sum over x per output pixel (see the top). */
typedef struct window_problem {
  int mode;
  int64_t batch, height, width, channels, out_height, out_width;
  int64_t kernel_h, kernel_w;
  int32_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  sm_tensor_ref x, weight, bias, y; /* weight and bias absent for the pool mixer */
} window_problem;

static void describe(const sm_op *op, window_problem *w) {
  memset(w, 0, sizeof *w);
  if (op->kind == SM_OP_POOL_MIXER) {
    const sm_pool_desc *d = &op->u.pool;
    w->mode = MODE_POOL;
    w->batch = d->batch, w->height = d->height, w->width = d->width, w->channels = d->channels;
    w->out_height = d->height, w->out_width = d->width;
    w->kernel_h = w->kernel_w = d->pool;
    w->stride_h = w->stride_w = w->dilation_h = w->dilation_w = 1;
    w->pad_h = w->pad_w = d->pool / 2;
    w->x = op->tensors[SM_POOL_X];
    w->y = op->tensors[SM_POOL_Y];
    return;
  }
  const sm_conv2d_desc *d = &op->u.conv2d;
  w->mode = MODE_CONV;
  w->batch = d->batch, w->height = d->height, w->width = d->width, w->channels = d->channels;
  w->out_height = d->out_height, w->out_width = d->out_width;
  w->kernel_h = d->kernel_h, w->kernel_w = d->kernel_w;
  w->stride_h = d->stride_h, w->stride_w = d->stride_w;
  w->pad_h = d->pad_h, w->pad_w = d->pad_w;
  w->dilation_h = d->dilation_h, w->dilation_w = d->dilation_w;
  w->x = op->tensors[SM_CONV2D_X];
  w->weight = op->tensors[SM_CONV2D_WEIGHT];
  w->bias = op->tensors[SM_CONV2D_BIAS];
  w->y = op->tensors[SM_CONV2D_Y];
}

/* A work-group's tile: channel_lanes vectors x (row_lanes x col_lanes)
 * invocations, each with out_rows x out_cols outputs. */
typedef struct tile_shape {
  uint32_t channel_lanes, row_lanes, col_lanes, out_rows, out_cols;
} tile_shape;

typedef struct conv2d_plan {
  const char *module;
  uint32_t spec[SPEC_COUNT];
  uint32_t groups_x, tile_rows;
  int64_t batch_group, row_chunk; /* piece sizes; the whole call when it fits */
  conv2d_push push;               /* offsets and the row fields are per piece */
  sm_vk_binding weight, bias;
} conv2d_plan;

/* A stride as a push constant: 0 for a dim of extent 1 (never stepped). */
static bool stride_of(const sm_tensor_ref *t, int dim, int32_t *out) {
  int64_t s = t->shape[dim] == 1 ? 0 : t->strides[dim];
  if (s > INT32_MAX) return false;
  *out = (int32_t)s;
  return true;
}

static uint32_t tile_rows_of(const tile_shape *t) { return t->row_lanes * t->out_rows; }
static uint32_t tile_cols_of(const tile_shape *t) { return t->col_lanes * t->out_cols; }

/* The input tile's extent in pixels along one axis for `outputs` outputs. */
static uint64_t input_extent(uint64_t outputs, int32_t stride, int64_t kernel, int32_t dilation) {
  return (outputs - 1) * (uint64_t)stride + (uint64_t)(kernel - 1) * (uint64_t)dilation + 1;
}

/* Vectors of the shared tile: the input tile, rounded up to whole rounds of
 * the copy on the fast path (it has no bounds check) and to a power of two
 * on the generic one (fewer distinct pipelines). */
static uint64_t tile_size(const window_problem *w, const tile_shape *t, bool fast) {
  uint64_t vectors = input_extent(tile_rows_of(t), w->stride_h, w->kernel_h, w->dilation_h) *
                     input_extent(tile_cols_of(t), w->stride_w, w->kernel_w, w->dilation_w) *
                     t->channel_lanes;
  if (!fast) return sm_ceil_pow2(vectors);
  uint64_t wg = (uint64_t)t->channel_lanes * t->row_lanes * t->col_lanes;
  return sm_div_up(vectors, wg) * wg;
}

/* Halves the tile along its longer input axis: the register tile first
 * (keeping the work-group), then the lanes, then the channel lanes. False
 * when it is a single output of a single channel lane. */
static bool shrink_tile(const window_problem *w, tile_shape *t) {
  uint64_t rows = input_extent(tile_rows_of(t), w->stride_h, w->kernel_h, w->dilation_h);
  uint64_t cols = input_extent(tile_cols_of(t), w->stride_w, w->kernel_w, w->dilation_w);
  bool by_rows = rows > cols ? tile_rows_of(t) > 1 : tile_cols_of(t) == 1;
  if (by_rows && t->out_rows > 1)
    t->out_rows /= 2;
  else if (!by_rows && t->out_cols > 1)
    t->out_cols /= 2;
  else if (by_rows && t->row_lanes > 1)
    t->row_lanes /= 2;
  else if (!by_rows && t->col_lanes > 1)
    t->col_lanes /= 2;
  else if (t->channel_lanes > 1)
    t->channel_lanes /= 2;
  else
    return false;
  return true;
}

static uint64_t group_count(const window_problem *w, const tile_shape *t, uint32_t width) {
  uint64_t blocks = sm_div_up(sm_div_up((uint64_t)w->channels, width), t->channel_lanes);
  return blocks * sm_div_up((uint64_t)w->out_width, tile_cols_of(t)) *
         sm_div_up((uint64_t)w->out_height, tile_rows_of(t)) * (uint64_t)w->batch;
}

/* The tile for this call; *use_shared false when not even one output of one
 * channel lane fits shared memory (generic path only). False when the fast
 * path cannot hold it. */
static bool choose_tile(const sm_device *dev, const window_problem *w, bool fast, uint32_t width,
                        tile_shape *t, bool *use_shared) {
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  const conv2d_tuning *tuning = &default_tuning;
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].type == dev->caps.props.deviceType) tuning = &tunings[i];
  uint32_t wg = tuning->workgroup_size;
  if (wg > limits->maxComputeWorkGroupInvocations) wg = limits->maxComputeWorkGroupInvocations;
  if (wg > limits->maxComputeWorkGroupSize[0]) wg = limits->maxComputeWorkGroupSize[0];
  wg = sm_floor_pow2(wg);

  const uint64_t vectors = sm_div_up((uint64_t)w->channels, width);
  t->channel_lanes = tuning->channel_lanes < wg ? tuning->channel_lanes : wg;
  while (t->channel_lanes > 1 && t->channel_lanes / 2 >= vectors)
    t->channel_lanes /= 2;
  t->out_rows = fast ? tuning->out_rows : 1;
  t->out_cols = fast ? tuning->out_cols : 1;
  while (t->out_rows > 1 && t->out_rows / 2 >= w->out_height)
    t->out_rows /= 2;
  while (t->out_cols > 1 && t->out_cols / 2 >= w->out_width)
    t->out_cols /= 2;
  /* Pixel lanes go to the axis whose tile is shorter while it does not yet
   * cover the image; lanes left over go back to channels if there are more. */
  t->row_lanes = t->col_lanes = 1;
  for (uint32_t pixel_lanes = wg / t->channel_lanes; t->row_lanes * t->col_lanes < pixel_lanes;) {
    bool rows_short = tile_rows_of(t) < w->out_height, cols_short = tile_cols_of(t) < w->out_width;
    if (!rows_short && !cols_short) break;
    if (rows_short && (!cols_short || tile_rows_of(t) <= tile_cols_of(t)))
      t->row_lanes *= 2;
    else
      t->col_lanes *= 2;
  }
  while (t->channel_lanes * 2 * t->row_lanes * t->col_lanes <= wg && t->channel_lanes < vectors)
    t->channel_lanes *= 2;

  /* Shared memory holds the tile as f32 vectors of `width` channels, beside
   * the one-element arrays of the other two widths. */
  const uint64_t budget = (limits->maxComputeSharedMemorySize - UNUSED_TILE_BYTES) / (4 * width);
  tile_shape fitted = *t;
  bool fits = true;
  while (fits && tile_size(w, &fitted, fast) > budget)
    fits = shrink_tile(w, &fitted);
  /* Enough work-groups to keep the device busy, where the tile allows. */
  const uint64_t target = sm_vk_target_groups(dev);
  tile_shape smaller = fitted;
  while (fits && group_count(w, &smaller, width) < target &&
         (smaller.out_rows > 1 || smaller.out_cols > 1 || smaller.row_lanes > 1 ||
          smaller.col_lanes > 1) &&
         shrink_tile(w, &smaller))
    fitted = smaller;
  *use_shared = fits;
  if (fits) {
    *t = fitted;
    uint64_t wg_fitted = (uint64_t)t->channel_lanes * t->row_lanes * t->col_lanes;
    return !fast || tile_size(w, t, true) / wg_fitted <= FAST_MAX_LOAD_ITERS;
  }
  if (fast) return false;
  t->out_rows = t->out_cols = 1; /* direct reads: keep the whole work-group */
  return true;
}

/* Rows [row, row + rows) of batches [batch, batch + batches) of a 4D tensor. */
static sm_tensor_ref rows_of(const sm_tensor_ref *t, int64_t batch, int64_t batches, int64_t row,
                             int64_t rows) {
  sm_tensor_ref r = *t;
  r.offset += batch * t->strides[0] + row * t->strides[1];
  r.shape[0] = batches;
  r.shape[1] = rows;
  return r;
}

/* Whether `rows` rows of `batches` batches fit one binding wherever they start
 * (the span plus the most that aligning its start down can add). */
static bool rows_fit(const sm_device *dev, const sm_tensor_ref *t, int64_t batches, int64_t rows) {
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  uint64_t esize = seqmix_dtype_size(t->dtype);
  uint64_t span = (uint64_t)(batches - 1) * (uint64_t)t->strides[0] +
                  (uint64_t)(rows - 1) * (uint64_t)t->strides[1] +
                  (uint64_t)(t->shape[2] - 1) * (uint64_t)t->strides[2] + (uint64_t)t->shape[3];
  uint64_t bytes = span * esize + limits->minStorageBufferOffsetAlignment;
  return bytes <= limits->maxStorageBufferRange && bytes / esize <= INT32_MAX;
}

/* The input rows [*first, *first + *count) that output rows [row, row + rows)
 * read; *count is 0 when they all lie in the padding. */
static void input_rows(const window_problem *w, int64_t row, int64_t rows, int64_t *first,
                       int64_t *count) {
  int64_t lo = row * w->stride_h - w->pad_h;
  int64_t hi = (row + rows - 1) * w->stride_h - w->pad_h + (w->kernel_h - 1) * w->dilation_h;
  if (lo < 0) lo = 0;
  if (hi > w->height - 1) hi = w->height - 1;
  *first = lo <= hi ? lo : (lo < w->height ? lo : w->height - 1);
  *count = lo <= hi ? hi - lo + 1 : 0;
}

/* Whether a piece of `batches` images x `rows` output rows fits, wherever
 * its rows start. */
static bool piece_fits(const sm_device *dev, const window_problem *w, int64_t batches,
                       int64_t rows) {
  uint64_t x_rows = input_extent((uint64_t)rows, w->stride_h, w->kernel_h, w->dilation_h);
  if (x_rows > (uint64_t)w->height) x_rows = (uint64_t)w->height;
  return rows_fit(dev, &w->x, batches, (int64_t)x_rows) && rows_fit(dev, &w->y, batches, rows);
}

/* The largest n in [1, max] with fits(n), for a predicate true at 1 and monotone. */
static int64_t largest_fitting(const sm_device *dev, const window_problem *w, int64_t max,
                               bool by_batch) {
  int64_t lo = 1, hi = max;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    bool fits = by_batch ? piece_fits(dev, w, mid, w->out_height) : piece_fits(dev, w, 1, mid);
    if (fits)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* Piece sizes: the whole call, else groups of batches, else runs of rows
 * (whole tiles where they can be). */
static bool choose_pieces(const sm_device *dev, const window_problem *w, uint32_t tile_rows,
                          conv2d_plan *plan) {
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  int64_t max_batches = w->batch < (int64_t)limits->maxComputeWorkGroupCount[2]
                            ? w->batch
                            : (int64_t)limits->maxComputeWorkGroupCount[2];
  uint64_t max_rows_u = (uint64_t)tile_rows * limits->maxComputeWorkGroupCount[1];
  int64_t max_rows = max_rows_u < (uint64_t)w->out_height ? (int64_t)max_rows_u : w->out_height;
  if (max_rows == w->out_height && piece_fits(dev, w, 1, w->out_height)) {
    plan->row_chunk = w->out_height;
    plan->batch_group = largest_fitting(dev, w, max_batches, true);
    return true;
  }
  if (!piece_fits(dev, w, 1, 1)) return false;
  plan->batch_group = 1;
  plan->row_chunk = largest_fitting(dev, w, max_rows, false);
  if (plan->row_chunk >= tile_rows) plan->row_chunk -= plan->row_chunk % tile_rows;
  return true;
}

/* Everything launch needs, or false where the device cannot run this call. */
static bool plan_conv2d(const sm_device *dev, const window_problem *w, conv2d_plan *plan) {
  const sm_tensor_ref *x = &w->x, *weight = &w->weight, *bias = &w->bias, *y = &w->y;
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  memset(plan, 0, sizeof *plan);

  bool act16 = x->dtype != SEQMIX_F32, param16 = weight->buffer && weight->dtype != SEQMIX_F32;
  if ((act16 || param16) && !dev->caps.storage16) return false;
  if (bias->buffer && bias->dtype != weight->dtype) return false; /* no variant mixes the two */
  if (w->height > INT32_MAX || w->width > INT32_MAX || w->channels > INT32_MAX ||
      w->out_width > INT32_MAX || w->kernel_h > INT32_MAX || w->kernel_w > INT32_MAX)
    return false;
  plan->module = !act16 ? "conv2d_f32.spv" : param16 ? "conv2d_a16p16.spv" : "conv2d_a16.spv";

  conv2d_push *p = &plan->push;
  p->height = (int32_t)w->height, p->width = (int32_t)w->width;
  p->channels = (int32_t)w->channels, p->out_width = (int32_t)w->out_width;
  p->kernel_h = (int32_t)w->kernel_h, p->kernel_w = (int32_t)w->kernel_w;
  p->stride_h = w->stride_h, p->stride_w = w->stride_w, p->pad_h = w->pad_h, p->pad_w = w->pad_w;
  p->dilation_h = w->dilation_h, p->dilation_w = w->dilation_w;
  p->has_bias = bias->buffer != NULL;
  if (!sm_vk_bind_tensor(dev, weight, &plan->weight, &p->weight_offset) ||
      !sm_vk_bind_tensor(dev, bias, &plan->bias, &p->bias_offset))
    return false;
  if (!stride_of(x, 0, &p->x_batch_stride) || !stride_of(x, 1, &p->x_row_stride) ||
      !stride_of(x, 2, &p->x_col_stride) || !stride_of(y, 0, &p->y_batch_stride) ||
      !stride_of(y, 1, &p->y_row_stride) || !stride_of(y, 2, &p->y_col_stride))
    return false;
  if (weight->buffer && (!stride_of(weight, 0, &p->weight_row_stride) ||
                         !stride_of(weight, 1, &p->weight_col_stride)))
    return false;

  /* W channels per load where every pixel of x and y starts on a multiple of
   * W (binding starts are aligned to a power of two, so the element offsets
   * inside them keep that property); the parameters as vectors where theirs
   * do too. */
  uint32_t width = 4;
  while (width > 1 &&
         (w->channels % width || x->offset % width || p->x_batch_stride % width ||
          p->x_row_stride % width || p->x_col_stride % width || y->offset % width ||
          p->y_batch_stride % width || p->y_row_stride % width || p->y_col_stride % width))
    width /= 2;
  const bool param_vectors =
      !weight->buffer ||
      (weight->offset % width == 0 && p->weight_row_stride % (int32_t)width == 0 &&
       p->weight_col_stride % (int32_t)width == 0 && (!bias->buffer || bias->offset % width == 0));

  bool fast = fast_kernel(w->kernel_h) && w->kernel_w == w->kernel_h &&
              w->stride_h == w->stride_w && w->stride_h <= FAST_MAX_STRIDE && w->dilation_h == 1 &&
              w->dilation_w == 1;
  tile_shape tile;
  bool use_shared = true;
  if (fast && !choose_tile(dev, w, true, width, &tile, &use_shared)) fast = false;
  if (!fast) choose_tile(dev, w, false, width, &tile, &use_shared);
  const uint32_t wg = tile.channel_lanes * tile.row_lanes * tile.col_lanes;
  const uint64_t shared_vectors = use_shared ? tile_size(w, &tile, fast) : 1;
  if (!fast && dev->caps.props.vendorID == VK_VENDOR_ID_MESA &&
      dev->caps.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    uint64_t trips = (uint64_t)w->kernel_h * (uint64_t)(w->kernel_w + 1);
    if (use_shared) trips += sm_div_up(shared_vectors, wg);
    if (trips > LLVMPIPE_LOOP_BUDGET) return false;
  }

  const uint64_t blocks = sm_div_up(sm_div_up((uint64_t)w->channels, width), tile.channel_lanes);
  const uint64_t groups_x = blocks * sm_div_up((uint64_t)w->out_width, tile_cols_of(&tile));
  if (groups_x > limits->maxComputeWorkGroupCount[0]) return false;
  plan->groups_x = (uint32_t)groups_x;
  plan->tile_rows = tile_rows_of(&tile);
  if (!choose_pieces(dev, w, plan->tile_rows, plan)) return false;

  uint32_t *spec = plan->spec;
  spec[SPEC_WORKGROUP_SIZE] = wg;
  spec[SPEC_MODE] = (uint32_t)w->mode;
  spec[SPEC_KERNEL] = fast ? (uint32_t)w->kernel_h : 0;
  spec[SPEC_STRIDE] = fast ? (uint32_t)w->stride_h : 1;
  spec[SPEC_CHANNEL_LANES] = tile.channel_lanes;
  spec[SPEC_ROW_LANES] = tile.row_lanes;
  spec[SPEC_COL_LANES] = tile.col_lanes;
  spec[SPEC_OUT_ROWS] = tile.out_rows;
  spec[SPEC_OUT_COLS] = tile.out_cols;
  spec[SPEC_USE_SHARED] = use_shared;
  spec[SPEC_TILE_SIZE] = (uint32_t)shared_vectors;
  spec[SPEC_LOAD_ITERS] = fast ? (uint32_t)(shared_vectors / wg) : 1;
  spec[SPEC_VECTOR_WIDTH] = width;
  spec[SPEC_PARAM_VECTORS] = param_vectors;
  spec[SPEC_ACT_BF16] = x->dtype == SEQMIX_BF16;
  spec[SPEC_PARAM_BF16] = weight->buffer && weight->dtype == SEQMIX_BF16;
  return true;
}

/* Binds a piece's rows of x and y and records one dispatch. */
static seqmix_status dispatch_piece(sm_device *dev, const sm_op *op, const window_problem *w,
                                    const conv2d_plan *plan, const sm_vk_pipeline *pipeline,
                                    int64_t batch, int64_t batches, int64_t row, int64_t rows) {
  conv2d_push push = plan->push;
  sm_vk_binding bindings[BIND_COUNT] = {[BIND_WEIGHT] = plan->weight, [BIND_BIAS] = plan->bias};
  int64_t x_first, x_count;
  input_rows(w, row, rows, &x_first, &x_count);
  sm_tensor_ref x = rows_of(&w->x, batch, batches, x_first, x_count > 0 ? x_count : 1);
  sm_tensor_ref y = rows_of(&w->y, batch, batches, row, rows);
  /* plan_conv2d sized the pieces so that these bindings fit. */
  if (!sm_vk_bind_tensor(dev, &x, &bindings[BIND_X], &push.x_offset) ||
      !sm_vk_bind_tensor(dev, &y, &bindings[BIND_Y], &push.y_offset))
    return sm_fail(SEQMIX_ERROR_BACKEND, "%s: a piece of the call exceeds a binding", op->name);
  push.x_row_base = (int32_t)x_first;
  push.x_rows = (int32_t)x_count;
  push.y_row_base = (int32_t)row;
  push.y_rows = (int32_t)rows;
  const uint32_t groups[3] = {plan->groups_x, (uint32_t)sm_div_up((uint64_t)rows, plan->tile_rows),
                              (uint32_t)batches};
  return sm_vk_dispatch(dev, pipeline, bindings, &push, sizeof push, groups);
}

bool sm_vk_conv2d_supports(sm_device *dev, const sm_op *op) {
  window_problem w;
  conv2d_plan plan;
  describe(op, &w);
  return plan_conv2d(dev, &w, &plan);
}

seqmix_status sm_vk_conv2d_launch(sm_device *dev, const sm_op *op) {
  window_problem w;
  conv2d_plan plan;
  describe(op, &w);
  if (!plan_conv2d(dev, &w, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  const sm_vk_pipeline *pipeline;
  seqmix_status st =
      sm_vk_pipeline_get(dev, plan.module, plan.spec, SPEC_COUNT, BIND_COUNT, &pipeline);
  if (plan.batch_group < w.batch || plan.row_chunk < w.out_height)
    sm_log(SEQMIX_LOG_DEBUG, "%s: split into pieces of %lld images x %lld rows to fit bindings",
           op->name, (long long)plan.batch_group, (long long)plan.row_chunk);
  for (int64_t b = 0; b < w.batch && !st; b += plan.batch_group) {
    int64_t batches = w.batch - b < plan.batch_group ? w.batch - b : plan.batch_group;
    for (int64_t row = 0; row < w.out_height && !st; row += plan.row_chunk) {
      int64_t rows = w.out_height - row < plan.row_chunk ? w.out_height - row : plan.row_chunk;
      st = dispatch_piece(dev, op, &w, &plan, pipeline, b, batches, row, rows);
    }
  }
  return st;
}
