/*
 * SM_OP_LONG_CONV on OpenCL (cl/long_conv.cl; FFT through VkFFT).
 *
 * Direct: one launch of long_conv_direct (taps tiled through local memory).
 *
 * FFT: per piece of (batches, channels), pack x into zero-padded f32 rows of
 * N + 2 floats in a scratch buffer, VkFFT's in-place R2C over all rows,
 * multiply each row's N/2 + 1 bins by its channel's filter bins (and 1/N),
 * VkFFT's C2R, unpack into y adding D_skip x. The filter's bins are computed
 * the same way (pack h, R2C) and kept in the device's cache keyed by h's
 * storage version, view and the transform length, so a model that applies the
 * same h again pays only for x. Plans are cached per (N, rows). Both caches
 * are small and least-recently-used. Pieces keep the scratch buffer within
 * max_alloc_bytes (and SCRATCH_CAP): whole batches when all channels of one
 * fit, else runs of channels of one batch.
 *
 * Every step is enqueued on the device's in-order queue (VkFFT too, through
 * launchParams.commandQueue), so the steps need no events; the scratch buffer
 * is reused by the next piece only after the queue has run the previous one.
 *
 * Without VkFFT (SEQMIX_HAVE_VKFFT_OPENCL undefined), and on a device in
 * binary-only mode (offline binaries, program.c: VkFFT compiles its kernels
 * from source for every plan, so they cannot be shipped), an FFT call runs
 * the direct kernel where that is cheap enough, else supports() declines and
 * the CPU fallback runs it, visibly (see direct_instead_of_fft).
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef SEQMIX_HAVE_VKFFT_OPENCL
#define VKFFT_BACKEND 3
#include "vkfft_c.h" /* vkFFT.h, fixed (tools/vkfft_c.py) */
#endif

/* Tunables, first matching row wins. Direct: channels per work-item (a
 * power of two up to 16), tokens per work-item, work-items per work-group
 * (clamped to the device's and the kernel's limits, rounded down to a power
 * of two). FFT: the pack/unpack transpose tile (TILE x TILE work-items). */
typedef struct long_conv_tuning {
  seqmix_device_kind kind;
  cl_uint min_native_float_width; /* the row needs at least this native vector width */
  int vector_width, tokens, workgroup;
  int tile;
} long_conv_tuning;

static const long_conv_tuning tunings[] = {
    /* PoCL: a work-item's channels are one SIMD register (as conv1d); 16
     * tokens keep 32 vectors (accumulators and window) in registers. */
    {SEQMIX_DEVICE_SOFTWARE, 16, 16, 16, 16, 16},
    {SEQMIX_DEVICE_SOFTWARE, 8, 8, 16, 32, 16},
    {SEQMIX_DEVICE_SOFTWARE, 4, 4, 16, 64, 16},
    {SEQMIX_DEVICE_SOFTWARE, 1, 1, 16, 64, 16},
    /* GPUs: 128-bit loads, short runs for many work-items. */
    {SEQMIX_DEVICE_DISCRETE_GPU, 1, 4, 8, 256, 16},
    {SEQMIX_DEVICE_INTEGRATED_GPU, 1, 4, 8, 128, 16},
};
static const long_conv_tuning default_tuning = {SEQMIX_DEVICE_ACCELERATOR, 1, 4, 8, 64, 16};

static const long_conv_tuning *pick_tuning(const sm_device *dev) {
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].kind == dev->info.kind &&
        dev->caps.native_float_width >= tunings[i].min_native_float_width)
      return &tunings[i];
  return &default_tuning;
}

/* The FFT kernels' transpose tile: TILE x TILE work-items within the device's limit. */
static size_t tile_size(const sm_device *dev) {
  size_t tile = (size_t)pick_tuning(dev)->tile;
  while (tile > 1 && tile * tile > dev->caps.max_workgroup_size)
    tile /= 2;
  return tile;
}

/* Filter taps that can matter: min(Lh, L). */
static int64_t taps_of(const sm_long_conv_desc *d) {
  return d->filter_len < d->tokens ? d->filter_len : d->tokens;
}

/* x, y: [B, L, C] refs, batch and token strides (0 where the dim is 1). */
static void arg_sequence(sm_device *dev, sm_cl_args *a, const sm_tensor_ref *r, int64_t offset) {
  sm_cl_arg_buffer(dev, a, r->buffer);
  sm_cl_arg_long(a, r->offset + offset);
  sm_cl_arg_long(a, r->strides[0]);
  sm_cl_arg_long(a, r->strides[1]);
}

/* "-DACT=f16 -DFILTER=f32 -DSKIP=f16": the dtypes every variant names. */
static void dtype_options(const sm_op *op, char *out, size_t size) {
  const sm_tensor_ref *skip = &op->tensors[SM_LCONV_D_SKIP];
  char skip_option[32] = "";
  if (skip->buffer)
    snprintf(skip_option, sizeof skip_option, " -DSKIP=%s", seqmix_dtype_name(skip->dtype));
  snprintf(out, size, "-DACT=%s -DFILTER=%s%s", seqmix_dtype_name(op->tensors[SM_LCONV_X].dtype),
           seqmix_dtype_name(op->tensors[SM_LCONV_H].dtype), skip_option);
}

/* ---- The device's cache --------------------------------------------------------- */

/* Cache sizes, and the FFT scratch buffer's cap beyond the device's allocation limit. */
enum { CACHED_PLANS = 4, CACHED_FILTERS = 4 };
#define SCRATCH_CAP ((uint64_t)512 << 20)

#ifdef SEQMIX_HAVE_VKFFT_OPENCL
/* A VkFFT application for `rows` in-place real transforms of length N over
 * the scratch buffer. VkFFT keeps pointers to buffer_bytes and to the
 * scratch's cl_mem, so both live as long as the plan. */
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
struct sm_cl_long_conv_cache {
  sm_buffer *transposed_h; /* the direct kernel's hT; grows */
#ifdef SEQMIX_HAVE_VKFFT_OPENCL
  sm_buffer *scratch; /* a piece's rows of N + 2 floats; grows */
  uint64_t clock;     /* use counter for least-recently-used eviction */
  fft_plan plans[CACHED_PLANS];
  filter_bins filters[CACHED_FILTERS];
#endif
};

static seqmix_status get_cache(sm_device *dev) {
  if (!dev->long_conv && !(dev->long_conv = calloc(1, sizeof *dev->long_conv)))
    return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  return SEQMIX_OK;
}

void sm_cl_long_conv_release(sm_device *dev) {
  struct sm_cl_long_conv_cache *cache = dev->long_conv;
  if (!cache) return;
#ifdef SEQMIX_HAVE_VKFFT_OPENCL
  for (int i = 0; i < CACHED_PLANS; ++i)
    delete_plan(&cache->plans[i]);
  for (int i = 0; i < CACHED_FILTERS; ++i)
    if (cache->filters[i].bins) sm_cl_free(dev, cache->filters[i].bins);
  if (cache->scratch) sm_cl_free(dev, cache->scratch);
#endif
  if (cache->transposed_h) sm_cl_free(dev, cache->transposed_h);
  free(cache);
  dev->long_conv = NULL;
}

/* hT [taps][C] f32 with room for `bytes` (grown; released buffers live on
 * until the queued commands that use them finish). */
static seqmix_status reserve_transposed_h(sm_device *dev, uint64_t bytes, sm_buffer **out) {
  seqmix_status st = get_cache(dev);
  if (st) return st;
  struct sm_cl_long_conv_cache *cache = dev->long_conv;
  if (!cache->transposed_h || cache->transposed_h->bytes < bytes) {
    if (cache->transposed_h) sm_cl_free(dev, cache->transposed_h);
    cache->transposed_h = NULL;
    if ((st = sm_cl_alloc(dev, (size_t)bytes, &cache->transposed_h))) return st;
  }
  *out = cache->transposed_h;
  return SEQMIX_OK;
}

/* ---- Direct ---------------------------------------------------------------------- */

/* Build options of the direct variant with `vector_width` channels a work-item. */
static void direct_options(const sm_device *dev, const sm_op *op, int vector_width, char *out,
                           size_t size) {
  char dtypes[96];
  dtype_options(op, dtypes, sizeof dtypes);
  snprintf(out, size, "%s -DVEC=%d -DTPI=%d", dtypes, vector_width, pick_tuning(dev)->tokens);
}

/* long_conv_direct over channels [channel_begin, channel_begin + groups * vector_width). */
static seqmix_status launch_direct_part(sm_device *dev, const sm_op *op, sm_buffer *h_t,
                                        int vector_width, int64_t channel_begin, int64_t groups) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const long_conv_tuning *t = pick_tuning(dev);
  const sm_tensor_ref *skip = &op->tensors[SM_LCONV_D_SKIP];
  char options[256];
  direct_options(dev, op, vector_width, options, sizeof options);
  const sm_cl_kernel *k;
  seqmix_status st = sm_cl_kernel_get(dev, "long_conv.cl", options, "long_conv_direct", &k);
  if (st) return st;
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_sequence(dev, &a, &op->tensors[SM_LCONV_X], 0);
  sm_cl_arg_buffer(dev, &a, h_t);
  sm_cl_arg_buffer(dev, &a, skip->buffer);
  sm_cl_arg_long(&a, skip->offset);
  arg_sequence(dev, &a, &op->tensors[SM_LCONV_Y], 0);
  sm_cl_arg_int(&a, d->tokens);
  sm_cl_arg_int(&a, d->channels);
  sm_cl_arg_int(&a, taps_of(d));
  sm_cl_arg_int(&a, channel_begin);
  sm_cl_arg_int(&a, groups);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(long_conv_direct)", a.err);
  const size_t local[3] = {sm_cl_workgroup_size(dev, k, t->workgroup), 1, 1};
  const size_t global[3] = {sm_div_up((size_t)groups, local[0]) * local[0],
                            sm_div_up((size_t)d->tokens, (size_t)t->tokens), (size_t)d->batch};
  return sm_cl_enqueue(dev, k, 3, global, local);
}

static seqmix_status launch_direct(sm_device *dev, const sm_op *op) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const sm_tensor_ref *h = &op->tensors[SM_LCONV_H];
  const int64_t taps = taps_of(d);
  const int vector_width = pick_tuning(dev)->vector_width;
  const int64_t vector_groups = vector_width > 1 ? d->channels / vector_width : 0;
  const int64_t tail_begin = vector_groups * vector_width;
  /* long_conv_transpose_h comes from the first variant launched. */
  char options[256];
  direct_options(dev, op, vector_groups > 0 ? vector_width : 1, options, sizeof options);
  cl_mem placeholder;
  sm_buffer *h_t;
  const sm_cl_kernel *k;
  seqmix_status st;
  if ((!op->tensors[SM_LCONV_D_SKIP].buffer && (st = sm_cl_dummy_buffer(dev, &placeholder))) ||
      (st = reserve_transposed_h(dev, (uint64_t)taps * (uint64_t)d->channels * sizeof(float),
                                 &h_t)) ||
      (st = sm_cl_kernel_get(dev, "long_conv.cl", options, "long_conv_transpose_h", &k)))
    return st;
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  sm_cl_arg_buffer(dev, &a, h->buffer);
  sm_cl_arg_long(&a, h->offset);
  sm_cl_arg_long(&a, h->strides[0]);
  sm_cl_arg_buffer(dev, &a, h_t);
  sm_cl_arg_int(&a, taps);
  sm_cl_arg_int(&a, d->channels);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(long_conv_transpose_h)", a.err);
  const size_t local[2] = {64, 1};
  const size_t global[2] = {sm_div_up((size_t)taps, 64) * 64, (size_t)d->channels};
  if ((st = sm_cl_enqueue(dev, k, 2, global, local))) return st;

  if (vector_groups > 0 &&
      (st = launch_direct_part(dev, op, h_t, vector_width, 0, vector_groups)))
    return st;
  if (tail_begin < d->channels)
    st = launch_direct_part(dev, op, h_t, 1, tail_begin, d->channels - tail_begin);
  return st;
}

/* ---- FFT (VkFFT) ------------------------------------------------------------------ */

#ifdef SEQMIX_HAVE_VKFFT_OPENCL

/* How an FFT call is cut: N, the row length, and pieces of `batches` batches
 * x `channels` channels (rows = batches * channels rows of the scratch). */
typedef struct fft_pieces {
  int64_t fft_size, row_floats, bins;
  int64_t batches, channels, rows;
} fft_pieces;

static bool plan_pieces(const sm_device *dev, const sm_long_conv_desc *d, fft_pieces *p) {
  p->fft_size = sm_long_conv_fft_size(d->tokens, d->filter_len);
  p->row_floats = p->fft_size + 2;
  p->bins = p->fft_size / 2 + 1;
  if (p->fft_size > INT32_MAX / 2) return false;
  uint64_t limit = dev->caps.max_alloc_bytes < SCRATCH_CAP ? dev->caps.max_alloc_bytes : SCRATCH_CAP;
  const uint64_t row_bytes = (uint64_t)p->row_floats * sizeof(float);
  const uint64_t rows_max = limit / row_bytes;
  if (rows_max < 1) return false;
  if ((uint64_t)d->channels <= rows_max) {
    p->channels = d->channels;
    p->batches = (int64_t)(rows_max / (uint64_t)d->channels);
    if (p->batches > d->batch) p->batches = d->batch;
  } else {
    p->channels = (int64_t)rows_max;
    p->batches = 1;
  }
  p->rows = p->batches * p->channels;
  return true;
}

/* The scratch buffer with room for `bytes`. Growing it drops the plans (they
 * are bound to the old buffer) after the queue has finished with both. */
static seqmix_status reserve_scratch(sm_device *dev, uint64_t bytes) {
  struct sm_cl_long_conv_cache *cache = dev->long_conv;
  if (cache->scratch && cache->scratch->bytes >= bytes) return SEQMIX_OK;
  cl_int err = clFinish(dev->queue);
  if (err != CL_SUCCESS) return sm_cl_fail("clFinish", err);
  for (int i = 0; i < CACHED_PLANS; ++i)
    delete_plan(&cache->plans[i]);
  if (cache->scratch) sm_cl_free(dev, cache->scratch);
  cache->scratch = NULL;
  return sm_cl_alloc(dev, (size_t)bytes, &cache->scratch);
}

/* The plan for (N, rows) over the scratch buffer: cached, or made in place of
 * the least recently used one. */
static seqmix_status get_plan(sm_device *dev, const fft_pieces *p, fft_plan **out) {
  struct sm_cl_long_conv_cache *cache = dev->long_conv;
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
  if (victim->app) {
    cl_int err = clFinish(dev->queue); /* its kernels may be queued */
    if (err != CL_SUCCESS) return sm_cl_fail("clFinish", err);
    delete_plan(victim);
  }
  victim->app = calloc(1, sizeof *victim->app);
  if (!victim->app) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  victim->buffer_bytes = (uint64_t)p->rows * (uint64_t)p->row_floats * sizeof(float);
  VkFFTConfiguration config = {0};
  config.FFTdim = 1;
  config.size[0] = (uint64_t)p->fft_size;
  config.numberBatches = (uint64_t)p->rows;
  config.performR2C = 1; /* in place: rows of N/2 + 1 complex, N reals on input */
  config.useLUT = 1;     /* twiddles from a table made in double: accurate at large N */
  config.platform = &dev->platform;
  config.device = &dev->device;
  config.context = &dev->context;
  config.commandQueue = &dev->queue;
  config.buffer = &cache->scratch->mem;
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

/* Zeroes the scratch rows [rows, plan rows) a piece leaves unused: VkFFT
 * transforms every row of its plan, two rows at a time as one complex
 * transform (mergeSequencesR2C), so stale values there would leak into the
 * row paired with them. */
static seqmix_status clear_unused_rows(sm_device *dev, const fft_pieces *p, int64_t rows) {
  if (rows >= p->rows) return SEQMIX_OK;
  const size_t row_bytes = (size_t)p->row_floats * sizeof(float);
  const cl_float zero = 0.0f;
  cl_int err = clEnqueueFillBuffer(dev->queue, dev->long_conv->scratch->mem, &zero, sizeof zero,
                                   (size_t)rows * row_bytes, (size_t)(p->rows - rows) * row_bytes,
                                   0, NULL, NULL);
  return err == CL_SUCCESS ? SEQMIX_OK : sm_cl_fail("clEnqueueFillBuffer", err);
}

/* Enqueues the plan's forward (R2C) or inverse (C2R, unnormalised) transform. */
static seqmix_status run_plan(sm_device *dev, fft_plan *plan, bool inverse) {
  VkFFTLaunchParams launch = {0};
  launch.commandQueue = &dev->queue;
  VkFFTResult r = VkFFTAppend(plan->app, inverse ? 1 : -1, &launch);
  if (r != VKFFT_SUCCESS)
    return sm_fail(SEQMIX_ERROR_BACKEND, "VkFFTAppend: VkFFT error %d", (int)r);
  return SEQMIX_OK;
}

/* The FFT program's kernel `name`. */
static seqmix_status fft_kernel(sm_device *dev, const sm_op *op, const char *name,
                                const sm_cl_kernel **out) {
  char dtypes[96], options[160];
  dtype_options(op, dtypes, sizeof dtypes);
  snprintf(options, sizeof options, "-DFFT %s -DTILE=%d", dtypes, (int)tile_size(dev));
  return sm_cl_kernel_get(dev, "long_conv.cl", options, name, out);
}

/* Transforms h's channels [c0, c0 + channels) into filter->bins. */
static seqmix_status filter_piece(sm_device *dev, const sm_op *op, const fft_pieces *p,
                                  fft_plan *plan, filter_bins *filter, int64_t c0,
                                  int64_t channels) {
  const sm_tensor_ref *h = &op->tensors[SM_LCONV_H];
  struct sm_cl_long_conv_cache *cache = dev->long_conv;
  const sm_cl_kernel *k;
  seqmix_status st = fft_kernel(dev, op, "long_conv_pack_h", &k);
  if (st) return st;
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  sm_cl_arg_buffer(dev, &a, h->buffer);
  sm_cl_arg_long(&a, h->offset + c0 * h->strides[0]);
  sm_cl_arg_long(&a, h->strides[0]);
  sm_cl_arg_buffer(dev, &a, cache->scratch);
  sm_cl_arg_int(&a, filter->taps);
  sm_cl_arg_int(&a, channels);
  sm_cl_arg_int(&a, p->fft_size);
  sm_cl_arg_int(&a, p->row_floats);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(long_conv_pack_h)", a.err);
  const size_t local[2] = {64, 1};
  const size_t global[2] = {sm_div_up((size_t)p->fft_size, 64) * 64, (size_t)channels};
  if ((st = sm_cl_enqueue(dev, k, 2, global, local)) ||
      (st = clear_unused_rows(dev, p, channels)) || (st = run_plan(dev, plan, false)))
    return st;
  const size_t row_bytes = (size_t)p->row_floats * sizeof(float);
  return sm_cl_copy(dev, cache->scratch, 0, filter->bins, (size_t)c0 * row_bytes,
                    (size_t)channels * row_bytes);
}

/* The bins of the call's filter: cached, or computed in place of the least
 * recently used entry (on the queue, ahead of the call's pieces). */
static seqmix_status get_filter(sm_device *dev, const sm_op *op, const fft_pieces *p,
                                fft_plan *plan, filter_bins **out) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const sm_tensor_ref *h = &op->tensors[SM_LCONV_H];
  struct sm_cl_long_conv_cache *cache = dev->long_conv;
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
  /* Released buffers live on until the queue's commands that use them finish. */
  if (victim->bins) sm_cl_free(dev, victim->bins);
  memset(victim, 0, sizeof *victim);
  sm_buffer *bins;
  seqmix_status st = sm_cl_alloc(
      dev, (size_t)d->channels * (size_t)p->row_floats * sizeof(float), &bins);
  if (st) return st;
  victim->bins = bins;
  victim->taps = key.taps;
  for (int64_t c0 = 0; c0 < d->channels && !st; c0 += p->rows) {
    const int64_t channels = d->channels - c0 < p->rows ? d->channels - c0 : p->rows;
    st = filter_piece(dev, op, p, plan, victim, c0, channels);
  }
  if (st) {
    sm_cl_free(dev, bins);
    memset(victim, 0, sizeof *victim);
    return st;
  }
  *victim = key;
  victim->bins = bins;
  victim->last_use = ++cache->clock;
  *out = victim;
  return SEQMIX_OK;
}

/* One piece: batches [b0, b0 + batches) x channels [c0, c0 + channels). */
static seqmix_status fft_piece(sm_device *dev, const sm_op *op, const fft_pieces *p,
                               fft_plan *plan, const filter_bins *filter, int64_t b0,
                               int64_t batches, int64_t c0, int64_t channels) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const sm_tensor_ref *x = &op->tensors[SM_LCONV_X], *y = &op->tensors[SM_LCONV_Y],
                      *skip = &op->tensors[SM_LCONV_D_SKIP];
  struct sm_cl_long_conv_cache *cache = dev->long_conv;
  const int64_t x_first = b0 * x->strides[0] + c0, y_first = b0 * y->strides[0] + c0;
  const size_t tile = tile_size(dev);
  const sm_cl_kernel *pack, *multiply, *unpack;
  seqmix_status st;
  if ((st = fft_kernel(dev, op, "long_conv_pack_x", &pack)) ||
      (st = fft_kernel(dev, op, "long_conv_multiply", &multiply)) ||
      (st = fft_kernel(dev, op, "long_conv_unpack", &unpack)))
    return st;

  sm_cl_args a = {pack->kernel, 0, CL_SUCCESS};
  arg_sequence(dev, &a, x, x_first);
  sm_cl_arg_buffer(dev, &a, cache->scratch);
  sm_cl_arg_int(&a, d->tokens);
  sm_cl_arg_int(&a, channels);
  sm_cl_arg_int(&a, p->fft_size);
  sm_cl_arg_int(&a, p->row_floats);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(long_conv_pack_x)", a.err);
  const size_t tile_local[3] = {tile, tile, 1};
  const size_t channel_span = sm_div_up((size_t)channels, tile) * tile;
  const size_t pack_global[3] = {sm_div_up((size_t)p->fft_size, tile) * tile, channel_span,
                                 (size_t)batches};
  if ((st = sm_cl_enqueue(dev, pack, 3, pack_global, tile_local)) ||
      (st = clear_unused_rows(dev, p, batches * channels)) || (st = run_plan(dev, plan, false)))
    return st;

  a = (sm_cl_args){multiply->kernel, 0, CL_SUCCESS};
  sm_cl_arg_buffer(dev, &a, cache->scratch);
  sm_cl_arg_buffer(dev, &a, filter->bins);
  sm_cl_arg_long(&a, c0 * p->bins);
  sm_cl_arg_int(&a, p->bins);
  sm_cl_arg_int(&a, batches * channels);
  sm_cl_arg_int(&a, channels);
  sm_cl_arg_float(&a, 1.0f / (float)p->fft_size);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(long_conv_multiply)", a.err);
  const size_t multiply_local[2] = {64, 1};
  const size_t multiply_global[2] = {sm_div_up((size_t)p->bins, 64) * 64,
                                     (size_t)(batches * channels)};
  if ((st = sm_cl_enqueue(dev, multiply, 2, multiply_global, multiply_local)) ||
      (st = run_plan(dev, plan, true)))
    return st;

  a = (sm_cl_args){unpack->kernel, 0, CL_SUCCESS};
  sm_cl_arg_buffer(dev, &a, cache->scratch);
  arg_sequence(dev, &a, x, x_first);
  sm_cl_arg_buffer(dev, &a, skip->buffer);
  sm_cl_arg_long(&a, skip->offset + c0);
  arg_sequence(dev, &a, y, y_first);
  sm_cl_arg_int(&a, d->tokens);
  sm_cl_arg_int(&a, channels);
  sm_cl_arg_int(&a, p->row_floats);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(long_conv_unpack)", a.err);
  const size_t unpack_global[3] = {sm_div_up((size_t)d->tokens, tile) * tile, channel_span,
                                   (size_t)batches};
  return sm_cl_enqueue(dev, unpack, 3, unpack_global, tile_local);
}

static seqmix_status launch_fft(sm_device *dev, const sm_op *op) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  fft_pieces p;
  if (!plan_pieces(dev, d, &p))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the FFT length exceeds the opencl device",
                   op->name);
  cl_mem placeholder;
  fft_plan *plan = NULL;
  filter_bins *filter = NULL;
  seqmix_status st;
  if ((st = get_cache(dev)) ||
      (!op->tensors[SM_LCONV_D_SKIP].buffer && (st = sm_cl_dummy_buffer(dev, &placeholder))) ||
      (st = reserve_scratch(dev, (uint64_t)p.rows * (uint64_t)p.row_floats * sizeof(float))) ||
      (st = get_plan(dev, &p, &plan)) || (st = get_filter(dev, op, &p, plan, &filter)))
    return st;
  if (p.batches < d->batch || p.channels < d->channels)
    sm_log(SEQMIX_LOG_DEBUG, "%s: FFT in pieces of %lld batches x %lld channels", op->name,
           (long long)p.batches, (long long)p.channels);
  for (int64_t b0 = 0; b0 < d->batch && !st; b0 += p.batches) {
    const int64_t batches = d->batch - b0 < p.batches ? d->batch - b0 : p.batches;
    for (int64_t c0 = 0; c0 < d->channels && !st; c0 += p.channels) {
      const int64_t channels = d->channels - c0 < p.channels ? d->channels - c0 : p.channels;
      st = fft_piece(dev, op, &p, plan, filter, b0, batches, c0, channels);
    }
  }
  return st;
}

#endif

/* Whether an FFT call may run the direct kernel instead, by the cost model's
 * measures of both (src/ops/convmix.c). */
static bool direct_instead_of_fft(const sm_long_conv_desc *d) {
  /* The direct kernel stands in for a missing FFT while it costs at most this
   * many times the FFT's work: up to there the device still beats moving the
   * call to the CPU; past it the CPU's FFT wins, so the fallback runs it. */
  enum { DIRECT_FOR_FFT_RATIO = 8 };
  return sm_long_conv_direct_over_fft(d->tokens, d->filter_len) <= DIRECT_FOR_FFT_RATIO;
}

/* ---- Entry points ------------------------------------------------------------------ */

bool sm_cl_long_conv_supports(sm_device *dev, const sm_op *op) {
  const sm_long_conv_desc *d = &op->u.long_conv;
  const seqmix_dtype act = op->tensors[SM_LCONV_X].dtype;
  if (!sm_cl_can_build(dev)) return false; /* no compiler and no binary directory */
  if (act != SEQMIX_F32 && act != SEQMIX_F16 && act != SEQMIX_BF16) return false;
  /* Token, channel and tap indices are int in the kernels. */
  if (d->batch > INT32_MAX || d->tokens > INT32_MAX || d->channels > INT32_MAX) return false;
  if (d->method != SEQMIX_CONV_FFT) return true;
  /* Binary-only devices have no VkFFT kernels (it builds them from source per
   * plan): the direct kernel stands in where cheap, else the CPU runs it. */
  if (dev->binary_only) return direct_instead_of_fft(d);
#ifdef SEQMIX_HAVE_VKFFT_OPENCL
  fft_pieces p;
  return plan_pieces(dev, d, &p) && p.rows <= INT32_MAX;
#else
  return direct_instead_of_fft(d);
#endif
}

seqmix_status sm_cl_long_conv_launch(sm_device *dev, const sm_op *op) {
#ifdef SEQMIX_HAVE_VKFFT_OPENCL
  if (op->u.long_conv.method == SEQMIX_CONV_FFT && !dev->binary_only) return launch_fft(dev, op);
#endif
  /* Without VkFFT or in binary-only mode supports() let FFT calls through where cheap. */
  return launch_direct(dev, op);
}

/* Every variant the direct method can compose on this device (the vector
 * part and the tail, each dtype combination, with or without D_skip). The
 * FFT method's programs are not enumerated: VkFFT builds its own kernels from
 * source for each plan, so a device in binary-only mode runs FFT calls with
 * the direct kernel or sends them to the CPU (sm_cl_long_conv_supports). */
void sm_cl_long_conv_variants(sm_device *dev, sm_cl_variant_sink *sink) {
  seqmix_dtype acts[3];
  const int act_count = sm_cl_sink_dtypes(sink, acts);
  const int widths[2] = {pick_tuning(dev)->vector_width, 1};
  char options[256];
  for (int a = 0; a < act_count; ++a)
    for (int filter = 0; filter < 2; ++filter)
      for (int skip = 0; skip < 3; ++skip) /* absent, f32, the activations' dtype */
        for (int part = 0; part < 2; ++part) {
          sm_op op;
          memset(&op, 0, sizeof op);
          op.kind = SM_OP_LONG_CONV;
          op.tensors[SM_LCONV_X].dtype = acts[a];
          op.tensors[SM_LCONV_H].dtype = filter ? acts[a] : SEQMIX_F32;
          op.tensors[SM_LCONV_D_SKIP].buffer = skip ? &sm_cl_present : NULL;
          op.tensors[SM_LCONV_D_SKIP].dtype = skip == 2 ? acts[a] : SEQMIX_F32;
          direct_options(dev, &op, widths[part], options, sizeof options);
          sm_cl_emit(sink, "long_conv.cl", options, NULL);
        }
}
