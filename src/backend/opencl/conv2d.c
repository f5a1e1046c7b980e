/*
 * SM_OP_CONV2D_DEPTHWISE and SM_OP_POOL_MIXER on OpenCL (cl/conv2d.cl).
 *
 * Both ops are a window sliding over an NHWC image: the pool mixer is the
 * pool x pool window with stride 1, dilation 1 and pad pool / 2. A work-group
 * computes a tile of output pixels times a block of channel vectors from the
 * input tile and its halo, copied once into local memory. Tile sizes are cut
 * until that copy fits the device's local memory (else the CPU fallback runs
 * the op), and balanced over the image so edge tiles are not mostly empty.
 *
 * The local-memory tile is what GPUs need; on PoCL, whose work-group is one
 * task of a worker thread, the tuned work-group is a single work-item and the
 * tile is its cache-resident scratch (the input converted to f32 once).
 *
 * Channels are split into a vector part, VEC channels a work-item, and a tail
 * of C % VEC channels that a VEC = 1 variant of the same kernel computes, as
 * in conv1d.c. Variants are build options (dtypes, VEC, the 3x3, 5x5 and 7x7
 * fast paths, bias, alignment), each built once per device (program.c);
 * tile sizes, strides, padding and dilation are kernel arguments.
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <string.h>

/* Local memory a work-group may use (a little is left to the driver). */
enum { LOCAL_MEMORY_SLACK = 1024 };

/* Tunables, first matching row wins: channels per work-item (VEC, a power of
 * two up to 16), channel vectors per work-group (local size 0) and pixel lanes
 * (local size 1), output pixels per work-group (tile_h x tile_w, cut to fit
 * local memory and the image), adjacent outputs a work-item computes at once
 * (ROW_BLOCK). The tail launch (VEC = 1) takes vector_width channels a
 * work-group, so one block covers every tail. */
typedef struct conv2d_tuning {
  seqmix_device_kind kind;
  cl_uint min_native_float_width; /* the row needs at least this native vector width */
  int vector_width, channel_vectors, lanes, tile_h, tile_w, row_block;
} conv2d_tuning;

static const conv2d_tuning tunings[] = {
    /* CPU devices with wide native vectors (PoCL): a work-item's channels are
     * one SIMD register and a work-group is one work-item, which computes a
     * 16x16 tile in runs of 4 outputs (each weight load feeds 4 FMAs, 4
     * accumulators stay in registers). PoCL runs a work-group as one task of
     * a worker thread; more work-items a group only added the cost of its
     * work-item loops around the barrier. Measured on PoCL 3.1, AVX-512, 2
     * shared cores: 1 work-item beat 2 to 16 (in either dimension) by 5-25%,
     * 16x16 and 8x16 tiles beat 4x16 and 8x8, runs of 4 and 8 were within
     * noise of each other and about 2x faster than single outputs. */
    {SEQMIX_DEVICE_SOFTWARE, 16, 16, 1, 1, 16, 16, 4},
    {SEQMIX_DEVICE_SOFTWARE, 8, 8, 1, 1, 16, 16, 4},
    {SEQMIX_DEVICE_SOFTWARE, 4, 4, 1, 1, 16, 16, 4},
    /* llvmpipe (native width 1): vectorises across work-items (channels) itself. */
    {SEQMIX_DEVICE_SOFTWARE, 1, 1, 32, 4, 8, 8, 2},
    /* GPUs (not measured: no GPU on the development machine): 128-bit loads,
     * 32 channels (8 vectors of 4) x 32 or 16 pixel lanes, an 8x8 tile (its
     * 7x7 halo tile is 25 KiB), runs of 2 outputs. */
    {SEQMIX_DEVICE_DISCRETE_GPU, 1, 4, 8, 32, 8, 8, 2},
    {SEQMIX_DEVICE_INTEGRATED_GPU, 1, 4, 8, 16, 8, 8, 2},
    {SEQMIX_DEVICE_ACCELERATOR, 1, 4, 4, 16, 8, 8, 2},
};
static const conv2d_tuning default_tuning = {SEQMIX_DEVICE_ACCELERATOR, 1, 4, 4, 16, 8, 8, 2};

static const conv2d_tuning *pick_tuning(const sm_device *dev) {
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].kind == dev->info.kind &&
        dev->caps.native_float_width >= tunings[i].min_native_float_width)
      return &tunings[i];
  return &default_tuning;
}

/* The sliding window of either op, and where its tensors sit in the op. */
typedef struct window {
  int64_t batch, height, width, channels, out_height, out_width, kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  const sm_tensor_ref *x, *y;
} window;

static window window_of(const sm_op *op) {
  if (op->kind == SM_OP_POOL_MIXER) {
    const sm_pool_desc *d = &op->u.pool;
    return (window){.batch = d->batch,
                    .height = d->height,
                    .width = d->width,
                    .channels = d->channels,
                    .out_height = d->height,
                    .out_width = d->width,
                    .kernel_h = d->pool,
                    .kernel_w = d->pool,
                    .stride_h = 1,
                    .stride_w = 1,
                    .pad_h = d->pool / 2,
                    .pad_w = d->pool / 2,
                    .dilation_h = 1,
                    .dilation_w = 1,
                    .x = &op->tensors[SM_POOL_X],
                    .y = &op->tensors[SM_POOL_Y]};
  }
  const sm_conv2d_desc *d = &op->u.conv2d;
  return (window){.batch = d->batch,
                  .height = d->height,
                  .width = d->width,
                  .channels = d->channels,
                  .out_height = d->out_height,
                  .out_width = d->out_width,
                  .kernel_h = d->kernel_h,
                  .kernel_w = d->kernel_w,
                  .stride_h = d->stride_h,
                  .stride_w = d->stride_w,
                  .pad_h = d->pad_h,
                  .pad_w = d->pad_w,
                  .dilation_h = d->dilation_h,
                  .dilation_w = d->dilation_w,
                  .x = &op->tensors[SM_CONV2D_X],
                  .y = &op->tensors[SM_CONV2D_Y]};
}

/* One launch's tiling. */
typedef struct tile_plan {
  int64_t channel_vectors; /* of the launch */
  int group_vectors;       /* channel vectors a work-group: local size 0 */
  int lanes;               /* local size 1 */
  int row_block;           /* adjacent outputs a work-item computes together (ROW_BLOCK) */
  int64_t tile_h, tile_w;  /* output pixels a work-group; tile_w a multiple of row_block */
  int64_t in_h, in_w;      /* input pixels it reads: the tile and its halo */
  int64_t tiles_h, tiles_w;
  size_t local_bytes;
} tile_plan;

/* llvmpipe (rusticl) ends every loop of a work-item after 65535 iterations in
 * all, silently (see attention.c): tiles there are cut until a work-item
 * iterates less. 0: no limit. */
static int64_t loop_budget(const sm_device *dev) {
  return strstr(dev->info.name, "llvmpipe") ? 60000 : 0;
}

/* Whether the window has a compile-time size (build option KSIZE_H/KSIZE_W):
 * the square 3x3, 5x5 and 7x7 windows, unrolled with weights in registers. */
static bool fast_window(const window *w) {
  return w->kernel_h == w->kernel_w && (w->kernel_h == 3 || w->kernel_h == 5 || w->kernel_h == 7);
}

/* Input extent one tile of `out` outputs reads along an axis. */
static int64_t halo_extent(int64_t out, int64_t kernel, int64_t stride, int64_t dilation) {
  return (out - 1) * stride + (kernel - 1) * dilation + 1;
}

static void plan_extents(const window *w, int vector_width, tile_plan *p) {
  p->tiles_h = (int64_t)sm_div_up((uint64_t)w->out_height, (uint64_t)p->tile_h);
  p->tiles_w = (int64_t)sm_div_up((uint64_t)w->out_width, (uint64_t)p->tile_w);
  /* Even tiles: 14 rows in tiles of 8 become two tiles of 7. */
  p->tile_h = (int64_t)sm_div_up((uint64_t)w->out_height, (uint64_t)p->tiles_h);
  p->tile_w = (int64_t)sm_div_up((uint64_t)w->out_width, (uint64_t)p->tiles_w);
  p->tile_w = (p->tile_w + p->row_block - 1) / p->row_block * p->row_block;
  p->in_h = halo_extent(p->tile_h, w->kernel_h, w->stride_h, w->dilation_h);
  p->in_w = halo_extent(p->tile_w, w->kernel_w, w->stride_w, w->dilation_w);
  const double bytes = (double)p->in_h * (double)p->in_w * p->group_vectors * vector_width * 4.0;
  p->local_bytes = bytes < 1e18 ? (size_t)bytes : SIZE_MAX;
}

/* The loop iterations of one work-item, roughly: its share of the copy,
 * then for each of its runs of outputs the window's loops (none when
 * unrolled). */
static int64_t work_item_iterations(const window *w, const tile_plan *p) {
  const int64_t copy = (int64_t)sm_div_up((uint64_t)(p->in_h * p->in_w), (uint64_t)p->lanes);
  const int64_t runs =
      (int64_t)sm_div_up((uint64_t)(p->tile_h * (p->tile_w / p->row_block)), (uint64_t)p->lanes);
  return copy + runs * (fast_window(w) ? 1 : 1 + w->kernel_h * (1 + w->kernel_w));
}

/* The tiling of a launch over `channel_vectors` vectors of `vector_width`
 * channels: the tuned sizes cut to the image, then halved (the longer tile
 * side first, then the channel block, then the row block) until the input
 * tile fits local memory (and the work-items' loops the device's budget).
 * False if not even one pixel of one vector fits. */
static bool plan_tiles(const sm_device *dev, const window *w, const conv2d_tuning *tuning,
                       int vector_width, int64_t channel_vectors, tile_plan *p) {
  const uint64_t local = dev->info.local_memory_bytes;
  const size_t budget =
      (size_t)(local > 2 * LOCAL_MEMORY_SLACK ? local - LOCAL_MEMORY_SLACK : local / 2);
  const int64_t loops = loop_budget(dev);
  const int tuned_vectors = vector_width > 1 ? tuning->channel_vectors : tuning->vector_width;
  memset(p, 0, sizeof *p);
  p->channel_vectors = channel_vectors;
  p->group_vectors = (int)(sm_ceil_pow2((uint64_t)channel_vectors) < (uint64_t)tuned_vectors
                               ? sm_ceil_pow2((uint64_t)channel_vectors)
                               : (uint64_t)tuned_vectors);
  p->lanes = tuning->lanes;
  p->row_block = tuning->row_block;
  p->tile_h = w->out_height < tuning->tile_h ? w->out_height : tuning->tile_h;
  p->tile_w = w->out_width < tuning->tile_w ? w->out_width : tuning->tile_w;
  for (;;) {
    plan_extents(w, vector_width, p);
    if (p->local_bytes <= budget && (!loops || work_item_iterations(w, p) <= loops)) return true;
    if (p->tile_h > 1 && p->tile_h >= p->tile_w)
      p->tile_h = (p->tile_h + 1) / 2;
    else if (p->tile_w > p->row_block)
      p->tile_w = (p->tile_w + 1) / 2;
    else if (p->tile_h > 1)
      p->tile_h = (p->tile_h + 1) / 2;
    else if (p->group_vectors > 1)
      p->group_vectors /= 2;
    else if (p->row_block > 1)
      p->row_block = 1, p->tile_w = 1;
    else
      return false;
  }
}

static bool fits_int(int64_t v) { return v >= 0 && v <= INT32_MAX; }

/* Whether a launch over `channel_vectors` vectors has a tiling whose tile
 * count and image positions fit the kernel's int math: the last tile may
 * reach past the output by less than a tile, and its halo past the input. */
static bool launch_fits(const sm_device *dev, const window *w, const conv2d_tuning *tuning,
                        int vector_width, int64_t channel_vectors) {
  tile_plan p;
  if (!plan_tiles(dev, w, tuning, vector_width, channel_vectors, &p)) return false;
  return fits_int(p.tiles_h * p.tiles_w) &&
         fits_int(halo_extent(p.tiles_h * p.tile_h, w->kernel_h, w->stride_h, w->dilation_h) +
                  w->pad_h) &&
         fits_int(halo_extent(p.tiles_w * p.tile_w, w->kernel_w, w->stride_w, w->dilation_w) +
                  w->pad_w);
}

bool sm_cl_conv2d_supports(sm_device *dev, const sm_op *op) {
  const window w = window_of(op);
  const seqmix_dtype act = w.x->dtype;
  if (!sm_cl_can_build(dev)) return false; /* no compiler and no binary directory */
  if (act != SEQMIX_F32 && act != SEQMIX_F16 && act != SEQMIX_BF16) return false;
  /* Pixel, channel and window indices are int in the kernels. */
  const int64_t ints[] = {w.height,    w.width,    w.channels, w.out_height,
                          w.out_width, w.kernel_h, w.kernel_w};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; ++i)
    if (!fits_int(ints[i])) return false;
  const conv2d_tuning *tuning = pick_tuning(dev);
  const int vector_width = tuning->vector_width;
  const int64_t vector_groups = vector_width > 1 ? w.channels / vector_width : 0;
  const int64_t tail = w.channels - vector_groups * vector_width;
  return (vector_groups == 0 || launch_fits(dev, &w, tuning, vector_width, vector_groups)) &&
         (tail == 0 || launch_fits(dev, &w, tuning, 1, tail));
}

/* Whether every x and y vector of the vector part starts on a whole-vector
 * boundary: offsets and strides multiples of the width, buffers aligned. */
static bool vectors_aligned(const sm_device *dev, const window *w, int vector_width) {
  const sm_tensor_ref *refs[] = {w->x, w->y};
  if (vector_width == 1) return false;
  const size_t vector_bytes = (size_t)vector_width * seqmix_dtype_size(refs[0]->dtype);
  if (dev->caps.base_align_bytes == 0 || dev->caps.base_align_bytes % vector_bytes) return false;
  for (int i = 0; i < 2; ++i)
    if (refs[i]->offset % vector_width || refs[i]->strides[0] % vector_width ||
        refs[i]->strides[1] % vector_width || refs[i]->strides[2] % vector_width)
      return false;
  return true;
}

/* Build options of one variant. */
static void variant_options(const sm_device *dev, const sm_op *op, const window *w,
                            int vector_width, int row_block, char *options, size_t size) {
  char extra[96] = "";
  if (op->kind == SM_OP_POOL_MIXER) {
    snprintf(extra, sizeof extra, " -DPOOL");
  } else {
    const sm_tensor_ref *bias = &op->tensors[SM_CONV2D_BIAS];
    int n = snprintf(extra, sizeof extra, " -DWEIGHT=%s",
                     seqmix_dtype_name(op->tensors[SM_CONV2D_WEIGHT].dtype));
    if (bias->buffer)
      n += snprintf(extra + n, sizeof extra - (size_t)n, " -DBIAS=%s",
                    seqmix_dtype_name(bias->dtype));
  }
  char window_option[48] = "";
  if (fast_window(w))
    snprintf(window_option, sizeof window_option, " -DKSIZE_H=%d -DKSIZE_W=%d", (int)w->kernel_h,
             (int)w->kernel_w);
  snprintf(options, size, "-DACT=%s%s -DVEC=%d -DROW_BLOCK=%d%s%s", seqmix_dtype_name(w->x->dtype),
           extra, vector_width, row_block, window_option,
           vectors_aligned(dev, w, vector_width) ? " -DALIGNED" : "");
}

/* x, y: [B, H, W, C] refs with their batch, row and column strides. */
static void arg_image(sm_device *dev, sm_cl_args *a, const sm_tensor_ref *r) {
  sm_cl_arg_buffer(dev, a, r->buffer);
  sm_cl_arg_long(a, r->offset);
  for (int i = 0; i < 3; ++i)
    sm_cl_arg_long(a, r->strides[i]);
}

/* One kernel launch over channels [channel_begin, channel_begin +
 * channel_vectors * vector_width). */
static seqmix_status launch_channels(sm_device *dev, const sm_op *op, const window *w,
                                     int vector_width, int64_t channel_begin,
                                     int64_t channel_vectors) {
  const bool pool = op->kind == SM_OP_POOL_MIXER;
  const char *name = pool ? "pool_mixer" : "conv2d_depthwise";
  char options[256];
  tile_plan p;
  if (!plan_tiles(dev, w, pick_tuning(dev), vector_width, channel_vectors, &p))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED,
                   "%s: no tile fits this device's local memory and loop limits", op->name);
  variant_options(dev, op, w, vector_width, p.row_block, options, sizeof options);
  const sm_cl_kernel *k;
  seqmix_status st = sm_cl_kernel_get(dev, "conv2d.cl", options, name, &k);
  if (st) return st;
  /* Within the device's and the kernel's work-group limits: fewer lanes first
   * (the tile stays), then fewer channel vectors (smaller in local memory). */
  size_t limit = dev->caps.max_workgroup_size < k->max_workgroup_size ? dev->caps.max_workgroup_size
                                                                      : k->max_workgroup_size;
  if (limit == 0) limit = 1;
  while ((size_t)p.group_vectors * (size_t)p.lanes > limit) {
    if (p.lanes > 1)
      p.lanes /= 2;
    else
      p.group_vectors /= 2;
  }
  plan_extents(w, vector_width, &p);

  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_image(dev, &a, w->x);
  if (!pool) {
    const sm_tensor_ref *weight = &op->tensors[SM_CONV2D_WEIGHT],
                        *bias = &op->tensors[SM_CONV2D_BIAS];
    sm_cl_arg_buffer(dev, &a, weight->buffer);
    sm_cl_arg_long(&a, weight->offset);
    sm_cl_arg_long(&a, weight->strides[0]);
    sm_cl_arg_long(&a, weight->strides[1]);
    sm_cl_arg_buffer(dev, &a, bias->buffer);
    sm_cl_arg_long(&a, bias->buffer ? bias->offset : 0);
  }
  arg_image(dev, &a, w->y);
  sm_cl_arg(&a, p.local_bytes, NULL); /* the input tile */
  sm_cl_arg_int(&a, w->height);
  sm_cl_arg_int(&a, w->width);
  if (!pool) {
    sm_cl_arg_int(&a, w->out_height);
    sm_cl_arg_int(&a, w->out_width);
  }
  sm_cl_arg_int(&a, w->kernel_h);
  sm_cl_arg_int(&a, w->kernel_w);
  if (!pool) {
    /* A one-tap axis never moves by its dilation: 1 keeps the kernel's
     * products small (the halo extents bound the others). */
    sm_cl_arg_int(&a, w->stride_h);
    sm_cl_arg_int(&a, w->stride_w);
    sm_cl_arg_int(&a, w->pad_h);
    sm_cl_arg_int(&a, w->pad_w);
    sm_cl_arg_int(&a, w->kernel_h > 1 ? w->dilation_h : 1);
    sm_cl_arg_int(&a, w->kernel_w > 1 ? w->dilation_w : 1);
  }
  sm_cl_arg_int(&a, p.tile_h);
  sm_cl_arg_int(&a, p.tile_w);
  sm_cl_arg_int(&a, p.in_h);
  sm_cl_arg_int(&a, p.in_w);
  sm_cl_arg_int(&a, p.tiles_w);
  sm_cl_arg_int(&a, channel_begin);
  sm_cl_arg_int(&a, channel_vectors);
  if (a.err != CL_SUCCESS) {
    char call[64];
    snprintf(call, sizeof call, "clSetKernelArg(%s)", name);
    return sm_cl_fail(call, a.err);
  }
  const size_t local[3] = {(size_t)p.group_vectors, (size_t)p.lanes, 1};
  const size_t global[3] = {sm_div_up((uint64_t)channel_vectors, (uint64_t)p.group_vectors) *
                                local[0],
                            (size_t)(p.tiles_h * p.tiles_w) * local[1], (size_t)w->batch};
  return sm_cl_enqueue(dev, k, 3, global, local);
}

seqmix_status sm_cl_conv2d_launch(sm_device *dev, const sm_op *op) {
  const window w = window_of(op);
  const int vector_width = pick_tuning(dev)->vector_width;
  const int64_t vector_groups = vector_width > 1 ? w.channels / vector_width : 0;
  const int64_t tail_begin = vector_groups * vector_width;
  seqmix_status st;
  if (vector_groups > 0 && (st = launch_channels(dev, op, &w, vector_width, 0, vector_groups)))
    return st;
  if (tail_begin < w.channels &&
      (st = launch_channels(dev, op, &w, 1, tail_begin, w.channels - tail_begin)))
    return st;
  return SEQMIX_OK;
}

/* Every variant sm_cl_conv2d_launch can compose on this device: both ops,
 * every dtype combination and bias, the 3x3, 5x5 and 7x7 fast windows and
 * the general one, the vector part (aligned or not) and the tail, with the
 * tuned row block and the single-output one plan_tiles may fall back to. */
void sm_cl_conv2d_variants(sm_device *dev, sm_cl_variant_sink *sink) {
  const conv2d_tuning *tuning = pick_tuning(dev);
  seqmix_dtype acts[3];
  const int act_count = sm_cl_sink_dtypes(sink, acts);
  static const int windows[] = {2, 3, 5, 7}; /* 2: any window without a fast path */
  char options[256];
  for (int a = 0; a < act_count; ++a)
    for (int pool = 0; pool < 2; ++pool)
      for (int params = 0; params < (pool ? 1 : 6); ++params) /* weight dtype x bias kind */
        for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; ++wi)
          for (int part = 0; part < 3; ++part) /* vector aligned, vector, tail */
            for (int rb = 0; rb < 2; ++rb) {
              const int vector_width = part < 2 ? tuning->vector_width : 1;
              if (part < 2 && vector_width == 1) continue;
              sm_op op;
              memset(&op, 0, sizeof op);
              op.kind = pool ? SM_OP_POOL_MIXER : SM_OP_CONV2D_DEPTHWISE;
              /* A pool window is odd: 1 stands for the windows without a fast path. */
              const int k = pool && windows[wi] == 2 ? 1 : windows[wi];
              if (pool)
                op.u.pool.pool = k;
              else
                op.u.conv2d.kernel_h = op.u.conv2d.kernel_w = k;
              sm_tensor_ref *x = &op.tensors[pool ? SM_POOL_X : SM_CONV2D_X];
              sm_tensor_ref *y = &op.tensors[pool ? SM_POOL_Y : SM_CONV2D_Y];
              x->dtype = y->dtype = acts[a];
              x->buffer = y->buffer = &sm_cl_present;
              x->offset = y->offset = part == 0 ? 0 : 1;
              for (int i = 0; i < 3; ++i)
                x->strides[i] = y->strides[i] = vector_width;
              if (!pool) {
                op.tensors[SM_CONV2D_WEIGHT].dtype = params / 3 ? acts[a] : SEQMIX_F32;
                op.tensors[SM_CONV2D_BIAS].buffer = params % 3 ? &sm_cl_present : NULL;
                op.tensors[SM_CONV2D_BIAS].dtype = params % 3 == 2 ? acts[a] : SEQMIX_F32;
              }
              const window w = window_of(&op);
              variant_options(dev, &op, &w, vector_width, rb ? 1 : tuning->row_block, options,
                              sizeof options);
              sm_cl_emit(sink, "conv2d.cl", options, NULL);
            }
}
