/*
 * SM_OP_CONV1D_CAUSAL on OpenCL (cl/conv1d.cl).
 *
 * Channels are split into a vector part, VEC channels a work-item, and a tail
 * of C % VEC channels that a VEC = 1 variant of the same kernel computes, so
 * no work-item needs a ragged edge. The new state is written by the work-items
 * that read the old one when a token run covers K-1 tokens; otherwise a second,
 * tiny kernel overwrites it after the outputs (the in-order queue runs it
 * after them).
 *
 * Variants are build options (dtypes, K, bias/state/SiLU, tunables), each
 * built once per device (program.c).
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <string.h>

/* Kernel width held in registers; wider kernels go to the CPU fallback (long
 * filters are seqmix_long_conv's business). */
enum { CONV1D_MAX_KERNEL = 32 };

/* Tunables, first matching row wins: channels per work-item (a power of two up
 * to 16), tokens per work-item, work-items per work-group (clamped to the
 * device's and the kernel's limits, rounded down to a power of two). */
typedef struct conv1d_tuning {
  seqmix_device_kind kind;
  cl_uint min_native_float_width; /* the row needs at least this native vector width */
  int vector_width, tokens, workgroup;
} conv1d_tuning;

static const conv1d_tuning tunings[] = {
    /* CPU devices with wide native vectors (PoCL): a work-item's channels are
     * one SIMD register; a work-group (256 channels x 128 tokens) is one task
     * of a worker thread, which loops over its work-items. Measured on PoCL
     * 3.1, AVX-512, 2 cores: 16/128/16 within noise of the best prefill and
     * decode settings. */
    {SEQMIX_DEVICE_SOFTWARE, 16, 16, 128, 16},
    {SEQMIX_DEVICE_SOFTWARE, 8, 8, 128, 32},
    {SEQMIX_DEVICE_SOFTWARE, 4, 4, 128, 64},
    /* llvmpipe (native width 1): vectorises across work-items itself. */
    {SEQMIX_DEVICE_SOFTWARE, 1, 1, 64, 64},
    /* GPUs: 128-bit loads, short runs for many work-items. */
    {SEQMIX_DEVICE_DISCRETE_GPU, 1, 4, 16, 256},
    {SEQMIX_DEVICE_INTEGRATED_GPU, 1, 4, 16, 128},
    {SEQMIX_DEVICE_ACCELERATOR, 1, 4, 32, 64},
};
static const conv1d_tuning default_tuning = {SEQMIX_DEVICE_ACCELERATOR, 1, 4, 16, 64};

static const conv1d_tuning *pick_tuning(const sm_device *dev) {
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].kind == dev->info.kind &&
        dev->caps.native_float_width >= tunings[i].min_native_float_width)
      return &tunings[i];
  return &default_tuning;
}

bool sm_cl_conv1d_supports(sm_device *dev, const sm_op *op) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const seqmix_dtype act = op->tensors[SM_CONV1D_X].dtype;
  if (!sm_cl_can_build(dev)) return false; /* no compiler and no binary directory */
  if (act != SEQMIX_F32 && act != SEQMIX_F16 && act != SEQMIX_BF16) return false;
  if (d->kernel < 1 || d->kernel > CONV1D_MAX_KERNEL) return false;
  /* Token and channel indices and the batch id are int in the kernels. */
  if (d->batch > INT32_MAX || d->tokens > INT32_MAX || d->channels > INT32_MAX) return false;
  return true;
}

/* Whether every x and y vector of the vector part starts on a whole-vector
 * boundary: offsets and strides multiples of the width, buffers aligned. */
static bool vectors_aligned(const sm_device *dev, const sm_op *op, int vector_width) {
  const sm_tensor_ref *refs[] = {&op->tensors[SM_CONV1D_X], &op->tensors[SM_CONV1D_Y]};
  if (vector_width == 1) return false;
  const size_t vector_bytes = (size_t)vector_width * seqmix_dtype_size(refs[0]->dtype);
  if (dev->caps.base_align_bytes == 0 || dev->caps.base_align_bytes % vector_bytes) return false;
  for (int i = 0; i < 2; ++i)
    if (refs[i]->offset % vector_width || refs[i]->strides[0] % vector_width ||
        refs[i]->strides[1] % vector_width)
      return false;
  return true;
}

/* Build options of one variant. */
static void variant_options(const sm_device *dev, const sm_op *op, const conv1d_tuning *tuning,
                            int vector_width, char *options, size_t size) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const sm_tensor_ref *bias = &op->tensors[SM_CONV1D_BIAS];
  char bias_option[32] = "";
  if (bias->buffer)
    snprintf(bias_option, sizeof bias_option, " -DBIAS=%s", seqmix_dtype_name(bias->dtype));
  snprintf(options, size, "-DACT=%s -DWEIGHT=%s%s%s%s -DKSIZE=%d -DVEC=%d -DTOKENS=%d%s",
           seqmix_dtype_name(op->tensors[SM_CONV1D_X].dtype),
           seqmix_dtype_name(op->tensors[SM_CONV1D_WEIGHT].dtype), bias_option,
           op->tensors[SM_CONV1D_STATE].buffer ? " -DHAS_STATE" : "", d->silu ? " -DSILU" : "",
           (int)d->kernel, vector_width, tuning->tokens,
           vectors_aligned(dev, op, vector_width) ? " -DALIGNED" : "");
}

/* x, y: [B, L, C] refs, batch and token strides; state [B, K-1, C]. */
static void arg_sequence(sm_device *dev, sm_cl_args *a, const sm_tensor_ref *r) {
  sm_cl_arg_buffer(dev, a, r->buffer);
  sm_cl_arg_long(a, r->offset);
  sm_cl_arg_long(a, r->buffer ? r->strides[0] : 0);
  sm_cl_arg_long(a, r->buffer ? r->strides[1] : 0);
}

/* conv1d_causal over channels [channel_begin, channel_begin + groups * vector_width). */
static seqmix_status launch_outputs(sm_device *dev, const sm_op *op, const char *options,
                                    const conv1d_tuning *tuning, int64_t channel_begin,
                                    int64_t groups) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const sm_tensor_ref *w = &op->tensors[SM_CONV1D_WEIGHT], *bias = &op->tensors[SM_CONV1D_BIAS];
  const sm_cl_kernel *k;
  seqmix_status st = sm_cl_kernel_get(dev, "conv1d.cl", options, "conv1d_causal", &k);
  if (st) return st;
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_sequence(dev, &a, &op->tensors[SM_CONV1D_X]);
  sm_cl_arg_buffer(dev, &a, w->buffer);
  sm_cl_arg_long(&a, w->offset);
  sm_cl_arg_long(&a, w->strides[0]);
  sm_cl_arg_buffer(dev, &a, bias->buffer);
  sm_cl_arg_long(&a, bias->offset);
  arg_sequence(dev, &a, &op->tensors[SM_CONV1D_STATE]);
  arg_sequence(dev, &a, &op->tensors[SM_CONV1D_Y]);
  sm_cl_arg_int(&a, d->tokens);
  sm_cl_arg_int(&a, channel_begin);
  sm_cl_arg_int(&a, groups);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(conv1d_causal)", a.err);
  const size_t local[3] = {sm_cl_workgroup_size(dev, k, tuning->workgroup), 1, 1};
  const size_t global[3] = {sm_div_up((size_t)groups, local[0]) * local[0],
                            sm_div_up((size_t)d->tokens, (size_t)tuning->tokens), (size_t)d->batch};
  return sm_cl_enqueue(dev, k, 3, global, local);
}

static seqmix_status launch_state(sm_device *dev, const sm_op *op, const char *options,
                                  const conv1d_tuning *tuning) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const sm_cl_kernel *k;
  seqmix_status st = sm_cl_kernel_get(dev, "conv1d.cl", options, "conv1d_causal_state", &k);
  if (st) return st;
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_sequence(dev, &a, &op->tensors[SM_CONV1D_X]);
  arg_sequence(dev, &a, &op->tensors[SM_CONV1D_STATE]);
  sm_cl_arg_int(&a, d->tokens);
  sm_cl_arg_int(&a, d->channels);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(conv1d_causal_state)", a.err);
  const size_t local[2] = {sm_cl_workgroup_size(dev, k, tuning->workgroup), 1};
  const size_t global[2] = {sm_div_up((size_t)d->channels, local[0]) * local[0], (size_t)d->batch};
  return sm_cl_enqueue(dev, k, 2, global, local);
}

seqmix_status sm_cl_conv1d_launch(sm_device *dev, const sm_op *op) {
  const sm_conv1d_desc *d = &op->u.conv1d;
  const conv1d_tuning *tuning = pick_tuning(dev);
  const bool has_state = op->tensors[SM_CONV1D_STATE].buffer != NULL;
  const int vector_width = tuning->vector_width;
  const int64_t vector_groups = vector_width > 1 ? d->channels / vector_width : 0;
  const int64_t tail_begin = vector_groups * vector_width;
  char options[256], last_options[256] = "";
  seqmix_status st;
  cl_mem placeholder;
  /* Absent tensors bind a placeholder buffer: make it before any argument. */
  if ((!op->tensors[SM_CONV1D_BIAS].buffer || !has_state) &&
      (st = sm_cl_dummy_buffer(dev, &placeholder)))
    return st;
  if (vector_groups > 0) {
    variant_options(dev, op, tuning, vector_width, options, sizeof options);
    if ((st = launch_outputs(dev, op, options, tuning, 0, vector_groups))) return st;
    memcpy(last_options, options, sizeof options);
  }
  if (tail_begin < d->channels) {
    variant_options(dev, op, tuning, 1, options, sizeof options);
    if ((st = launch_outputs(dev, op, options, tuning, tail_begin, d->channels - tail_begin)))
      return st;
    memcpy(last_options, options, sizeof options);
  }
  /* Runs shorter than K-1 tokens: the outputs kernel leaves the state to
   * conv1d_causal_state, which every variant has; take one already built. */
  const bool state_kernel = has_state && tuning->tokens < d->kernel - 1;
  return state_kernel ? launch_state(dev, op, last_options, tuning) : SEQMIX_OK;
}

/* Every variant sm_cl_conv1d_launch can compose on this device: each dtype
 * combination, bias/state/SiLU, every kernel width up to CONV1D_MAX_KERNEL,
 * the vector part (aligned or not) and the tail, described as representative
 * ops for variant_options. */
void sm_cl_conv1d_variants(sm_device *dev, sm_cl_variant_sink *sink) {
  const conv1d_tuning *tuning = pick_tuning(dev);
  seqmix_dtype acts[3];
  const int act_count = sm_cl_sink_dtypes(sink, acts);
  char options[256];
  for (int a = 0; a < act_count; ++a)
    for (int weight = 0; weight < 2; ++weight)
      for (int bias = 0; bias < 3; ++bias) /* absent, f32, the activations' dtype */
        for (int flags = 0; flags < 4; ++flags)
          for (int k = 1; k <= CONV1D_MAX_KERNEL; ++k)
            for (int part = 0; part < 3; ++part) { /* vector aligned, vector, tail */
              const int vector_width = part < 2 ? tuning->vector_width : 1;
              if (part < 2 && vector_width == 1) continue;
              sm_op op;
              memset(&op, 0, sizeof op);
              op.kind = SM_OP_CONV1D_CAUSAL;
              op.u.conv1d.kernel = k;
              op.u.conv1d.silu = flags & 1;
              sm_tensor_ref *x = &op.tensors[SM_CONV1D_X], *y = &op.tensors[SM_CONV1D_Y];
              x->dtype = y->dtype = acts[a];
              x->buffer = y->buffer = &sm_cl_present;
              x->offset = y->offset = part == 0 ? 0 : 1;
              x->strides[0] = x->strides[1] = y->strides[0] = y->strides[1] = vector_width;
              op.tensors[SM_CONV1D_WEIGHT].dtype = weight ? acts[a] : SEQMIX_F32;
              op.tensors[SM_CONV1D_BIAS].buffer = bias ? &sm_cl_present : NULL;
              op.tensors[SM_CONV1D_BIAS].dtype = bias == 2 ? acts[a] : SEQMIX_F32;
              op.tensors[SM_CONV1D_STATE].buffer = flags & 2 ? &sm_cl_present : NULL;
              variant_options(dev, &op, tuning, vector_width, options, sizeof options);
              sm_cl_emit(sink, "conv1d.cl", options, NULL);
            }
}
