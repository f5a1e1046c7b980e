/*
 * The OpenCL backend's private types and the helpers its files share.
 *
 * device.c   platforms and devices (probe), open/close, the vtable, flush/sync
 * memory.c   buffers: alloc/free, blocking write/read, copy on the queue
 * program.c  programs built from the embedded cl/ sources with -D options,
 *            binaries cached on disk, kernels cached per device; offline
 *            binaries (SEQMIX_CL_BINARY_DIR) and seqmix_compile_binaries, which
 *            asks each op file for its variants (sm_cl_*_variants)
 * conv1d.c   SM_OP_CONV1D_CAUSAL (cl/conv1d.cl)
 * attention.c SM_OP_ATTENTION, SM_OP_ATTENTION_MERGE (cl/attention.cl)
 * ssm.c      SM_OP_SELECTIVE_SCAN, SM_OP_SSD, SM_OP_LINEAR_ATTENTION (cl/ssm.cl)
 * conv2d.c   SM_OP_CONV2D_DEPTHWISE, SM_OP_POOL_MIXER (cl/conv2d.cl)
 * long_conv.c SM_OP_LONG_CONV (cl/long_conv.cl; FFT through VkFFT)
 *
 * The stream is one in-order command queue per open device: every enqueue is
 * ordered after the previous one, so ops need no events. Writes and reads
 * block (the caller's host memory is only borrowed for the call); copies and
 * launches are queued and run after what came before.
 */
#ifndef SEQMIX_OPENCL_H
#define SEQMIX_OPENCL_H

#include "backend/backend.h"

#include <CL/cl.h>

struct sm_buffer {
  cl_mem mem;
  size_t bytes; /* as requested */
};

/* A kernel object of a built program, with the limit its launches respect. */
typedef struct sm_cl_kernel {
  char name[64];
  cl_kernel kernel;
  size_t max_workgroup_size; /* CL_KERNEL_WORK_GROUP_SIZE */
} sm_cl_kernel;

enum { SM_CL_KERNELS_PER_PROGRAM = 4 };

/* One program variant: an embedded source built with one options string. */
typedef struct sm_cl_program {
  char *source_name; /* "conv1d.cl" */
  char *options;     /* "-DACT=f32 -DKSIZE=4 ..." */
  cl_program program;
  sm_cl_kernel kernels[SM_CL_KERNELS_PER_PROGRAM];
  int kernel_count;
} sm_cl_program;

/* What a device can do, read at open; supports() and the tuning tables use it. */
typedef struct sm_cl_caps {
  char platform_name[128];
  size_t max_workgroup_size;
  cl_ulong max_alloc_bytes;
  cl_uint base_align_bytes;   /* CL_DEVICE_MEM_BASE_ADDR_ALIGN: buffers start at a multiple */
  cl_uint native_float_width; /* CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT */
  bool online_compiler;
} sm_cl_caps;

/* Which attention kernel runs: the tuned choice, or one forced (tests, driver workarounds). */
typedef enum sm_cl_attention_kernel {
  SM_CL_ATTENTION_TUNED,
  SM_CL_ATTENTION_KEYS,
  SM_CL_ATTENTION_ROWS
} sm_cl_attention_kernel;

struct sm_device {
  cl_platform_id platform;
  cl_device_id device;
  cl_context context;
  cl_command_queue queue;
  seqmix_device_info info;
  sm_cl_caps caps;
  char cache_dir[1024];
  /* Offline binaries: kernels come only from binary_dir when the device has no
   * online compiler (or SEQMIX_CL_FORBID_COMPILE is set) or SEQMIX_CL_BINARY_DIR
   * is set; binary_dir "" then means nothing can be loaded (ops fall back). */
  bool binary_only;
  char binary_dir[1024];
  sm_cl_program **programs; /* built variants; pointers stay valid while the array grows */
  size_t program_count, program_capacity;
  sm_buffer *dummy; /* bound where an optional tensor is absent; made on first use */
  sm_cl_attention_kernel attention_kernel; /* SEQMIX_OPENCL_ATTENTION, read at open */
  struct sm_cl_long_conv_cache *long_conv; /* FFT plans and filter transforms (long_conv.c) */
};

/* ---- Errors (device.c) ---------------------------------------------------- */

/* "CL_OUT_OF_RESOURCES"; "CL_UNKNOWN_ERROR" for codes it does not know. */
const char *sm_cl_error_name(cl_int err);
/* sm_fail for a failed OpenCL call: "call: CL_NAME (code)". Host-memory and
 * allocation failures give OUT_OF_MEMORY, everything else BACKEND. */
seqmix_status sm_cl_fail(const char *call, cl_int err);

/* ---- Memory (memory.c) ---------------------------------------------------- */

seqmix_status sm_cl_alloc(sm_device *dev, size_t bytes, sm_buffer **out);
void sm_cl_free(sm_device *dev, sm_buffer *buf);
seqmix_status sm_cl_write(sm_device *dev, sm_buffer *buf, size_t offset, const void *src,
                          size_t bytes);
seqmix_status sm_cl_read(sm_device *dev, sm_buffer *buf, size_t offset, void *dst, size_t bytes);
seqmix_status sm_cl_copy(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                         size_t dst_offset, size_t bytes);
/* The buffer an absent optional tensor binds (never read by the kernel). */
seqmix_status sm_cl_dummy_buffer(sm_device *dev, cl_mem *out);

/* ---- Programs and kernels (program.c) -------------------------------------- */

/* Whether the device can get kernels at all: a compiler, or a binary directory.
 * Every op's supports() asks this first. */
static inline bool sm_cl_can_build(const sm_device *dev) {
  return dev->binary_only ? dev->binary_dir[0] != '\0' : dev->caps.online_compiler;
}

/* The kernel `kernel_name` of the embedded source `source_name` built with
 * `options`; built (or loaded from the binary cache) on first use, then kept
 * until the device closes. The source is cl/common.h followed by the file. */
seqmix_status sm_cl_kernel_get(sm_device *dev, const char *source_name, const char *options,
                               const char *kernel_name, const sm_cl_kernel **out);
void sm_cl_programs_release(sm_device *dev);

/* ---- Offline binaries (program.c; each op file walks its own variants) ---- */

/* The sizes seqmix_compile_binaries enumerates for shape-dependent options,
 * and where each variant goes. */
typedef struct sm_cl_variant_sink sm_cl_variant_sink;
const seqmix_compile_options *sm_cl_sink_options(const sm_cl_variant_sink *sink);
/* Builds (or, in a dry run, names) the variant `options` of `source_name` once,
 * however often it is emitted, and returns the work-group limit of its kernel
 * `kernel_name` (SIZE_MAX in a dry run, for a variant not built, or for kernel
 * NULL), so walkers can follow an op's shrink-and-rebuild loop. */
size_t sm_cl_emit(sm_cl_variant_sink *sink, const char *source_name, const char *options,
                  const char *kernel_name);
/* The activation dtypes the sink wants, in order; returns the count (<= 3). */
int sm_cl_sink_dtypes(const sm_cl_variant_sink *sink, seqmix_dtype out[3]);
/* A placeholder buffer for the representative ops walkers describe: marks a
 * tensor present; never dereferenced by option code. */
extern sm_buffer sm_cl_present;

void sm_cl_conv1d_variants(sm_device *dev, sm_cl_variant_sink *sink);
void sm_cl_attention_variants(sm_device *dev, sm_cl_variant_sink *sink);
void sm_cl_ssm_variants(sm_device *dev, sm_cl_variant_sink *sink);
void sm_cl_conv2d_variants(sm_device *dev, sm_cl_variant_sink *sink);
void sm_cl_long_conv_variants(sm_device *dev, sm_cl_variant_sink *sink);
seqmix_status sm_cl_compile_binaries(sm_device *dev, const char *dir,
                                     const seqmix_compile_options *options,
                                     seqmix_compile_summary *summary);

/* Kernel arguments set in order; the first failure is kept in err, so a
 * launch sets them all and checks once. */
typedef struct sm_cl_args {
  cl_kernel kernel;
  cl_uint next;
  cl_int err;
} sm_cl_args;
void sm_cl_arg(sm_cl_args *args, size_t size, const void *value);
/* A buffer argument: an absent buffer binds the device's dummy buffer. */
void sm_cl_arg_buffer(sm_device *dev, sm_cl_args *args, const sm_buffer *buf);

/* Scalar arguments by their OpenCL C type (long, int, float). */
static inline void sm_cl_arg_long(sm_cl_args *args, int64_t v) {
  cl_long l = (cl_long)v;
  sm_cl_arg(args, sizeof l, &l);
}
static inline void sm_cl_arg_int(sm_cl_args *args, int64_t v) {
  cl_int i = (cl_int)v;
  sm_cl_arg(args, sizeof i, &i);
}
static inline void sm_cl_arg_float(sm_cl_args *args, float v) {
  cl_float f = v;
  sm_cl_arg(args, sizeof f, &f);
}

/* Enqueues an NDRange launch on the device's queue. */
seqmix_status sm_cl_enqueue(sm_device *dev, const sm_cl_kernel *kernel, cl_uint dims,
                            const size_t *global, const size_t *local);

/* ---- Ops ---------------------------------------------------------------- */

bool sm_cl_conv1d_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_cl_conv1d_launch(sm_device *dev, const sm_op *op);
/* Work-items per group along dim 0: the tuned size within the device's and
 * the kernel's limits, a power of two. Not shrunk for small launches (idle
 * work-items return at once): PoCL compiles a kernel again for each
 * work-group size it meets, so one size per variant keeps first runs short. */
static inline size_t sm_cl_workgroup_size(const sm_device *dev, const sm_cl_kernel *k, int tuned) {
  size_t wg = (size_t)tuned;
  if (wg > dev->caps.max_workgroup_size) wg = dev->caps.max_workgroup_size;
  if (wg > k->max_workgroup_size) wg = k->max_workgroup_size;
  return sm_floor_pow2(wg ? wg : 1);
}

bool sm_cl_conv2d_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_cl_conv2d_launch(sm_device *dev, const sm_op *op);
bool sm_cl_long_conv_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_cl_long_conv_launch(sm_device *dev, const sm_op *op);
/* Frees the long convolution's FFT plans and cached filter transforms
 * (dev->long_conv); called by close after the queue drained. */
void sm_cl_long_conv_release(sm_device *dev);
/* SM_OP_ATTENTION and SM_OP_ATTENTION_MERGE (attention.c). */
bool sm_cl_attention_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_cl_attention_launch(sm_device *dev, const sm_op *op);
/* SM_OP_SELECTIVE_SCAN, SM_OP_SSD and SM_OP_LINEAR_ATTENTION (ssm.c). */
bool sm_cl_ssm_supports(sm_device *dev, const sm_op *op);
seqmix_status sm_cl_ssm_launch(sm_device *dev, const sm_op *op);

#endif
