/*
 * The OpenCL backend: every device of every platform the ICD loader lists,
 * opened as a context with one in-order command queue.
 *
 * Device entries carry the platform and device ids as their handle (ids of
 * root devices stay valid for the life of the process). Platforms without
 * devices (Mesa Clover with no hardware, rusticl without RUSTICL_ENABLE)
 * answer CL_DEVICE_NOT_FOUND and are skipped; no platform is assumed to be
 * the first one.
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Errors ---------------------------------------------------------------- */

const char *sm_cl_error_name(cl_int err) {
  switch (err) {
#define NAME(code)                                                                                 \
  case code: return #code;
    NAME(CL_SUCCESS)
    NAME(CL_DEVICE_NOT_FOUND)
    NAME(CL_DEVICE_NOT_AVAILABLE)
    NAME(CL_COMPILER_NOT_AVAILABLE)
    NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    NAME(CL_OUT_OF_RESOURCES)
    NAME(CL_OUT_OF_HOST_MEMORY)
    NAME(CL_PROFILING_INFO_NOT_AVAILABLE)
    NAME(CL_MEM_COPY_OVERLAP)
    NAME(CL_IMAGE_FORMAT_MISMATCH)
    NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    NAME(CL_BUILD_PROGRAM_FAILURE)
    NAME(CL_MAP_FAILURE)
    NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    NAME(CL_COMPILE_PROGRAM_FAILURE)
    NAME(CL_LINKER_NOT_AVAILABLE)
    NAME(CL_LINK_PROGRAM_FAILURE)
    NAME(CL_DEVICE_PARTITION_FAILED)
    NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    NAME(CL_INVALID_VALUE)
    NAME(CL_INVALID_DEVICE_TYPE)
    NAME(CL_INVALID_PLATFORM)
    NAME(CL_INVALID_DEVICE)
    NAME(CL_INVALID_CONTEXT)
    NAME(CL_INVALID_QUEUE_PROPERTIES)
    NAME(CL_INVALID_COMMAND_QUEUE)
    NAME(CL_INVALID_HOST_PTR)
    NAME(CL_INVALID_MEM_OBJECT)
    NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    NAME(CL_INVALID_IMAGE_SIZE)
    NAME(CL_INVALID_SAMPLER)
    NAME(CL_INVALID_BINARY)
    NAME(CL_INVALID_BUILD_OPTIONS)
    NAME(CL_INVALID_PROGRAM)
    NAME(CL_INVALID_PROGRAM_EXECUTABLE)
    NAME(CL_INVALID_KERNEL_NAME)
    NAME(CL_INVALID_KERNEL_DEFINITION)
    NAME(CL_INVALID_KERNEL)
    NAME(CL_INVALID_ARG_INDEX)
    NAME(CL_INVALID_ARG_VALUE)
    NAME(CL_INVALID_ARG_SIZE)
    NAME(CL_INVALID_KERNEL_ARGS)
    NAME(CL_INVALID_WORK_DIMENSION)
    NAME(CL_INVALID_WORK_GROUP_SIZE)
    NAME(CL_INVALID_WORK_ITEM_SIZE)
    NAME(CL_INVALID_GLOBAL_OFFSET)
    NAME(CL_INVALID_EVENT_WAIT_LIST)
    NAME(CL_INVALID_EVENT)
    NAME(CL_INVALID_OPERATION)
    NAME(CL_INVALID_GL_OBJECT)
    NAME(CL_INVALID_BUFFER_SIZE)
    NAME(CL_INVALID_MIP_LEVEL)
    NAME(CL_INVALID_GLOBAL_WORK_SIZE)
    NAME(CL_INVALID_PROPERTY)
    NAME(CL_INVALID_IMAGE_DESCRIPTOR)
    NAME(CL_INVALID_COMPILER_OPTIONS)
    NAME(CL_INVALID_LINKER_OPTIONS)
    NAME(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef NAME
  case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
  }
  return "CL_UNKNOWN_ERROR";
}

seqmix_status sm_cl_fail(const char *call, cl_int err) {
  seqmix_status st = SEQMIX_ERROR_BACKEND;
  if (err == CL_OUT_OF_HOST_MEMORY || err == CL_MEM_OBJECT_ALLOCATION_FAILURE)
    st = SEQMIX_ERROR_OUT_OF_MEMORY;
  return sm_fail(st, "%s: %s (%d)", call, sm_cl_error_name(err), (int)err);
}

/* ---- Device queries -------------------------------------------------------- */

static void device_string(cl_device_id device, cl_device_info what, char *out, size_t size) {
  out[0] = '\0';
  if (clGetDeviceInfo(device, what, size - 1, out, NULL) != CL_SUCCESS) out[0] = '\0';
  out[size - 1] = '\0';
}

static cl_ulong device_ulong(cl_device_id device, cl_device_info what) {
  cl_ulong v = 0;
  return clGetDeviceInfo(device, what, sizeof v, &v, NULL) == CL_SUCCESS ? v : 0;
}

static cl_uint device_uint(cl_device_id device, cl_device_info what) {
  cl_uint v = 0;
  return clGetDeviceInfo(device, what, sizeof v, &v, NULL) == CL_SUCCESS ? v : 0;
}

static bool device_bool(cl_device_id device, cl_device_info what) {
  cl_bool v = CL_FALSE;
  return clGetDeviceInfo(device, what, sizeof v, &v, NULL) == CL_SUCCESS && v;
}

/* Whether the space-separated extension list names `ext` exactly. */
static bool has_extension(cl_device_id device, const char *ext) {
  size_t size = 0;
  if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &size) != CL_SUCCESS || !size)
    return false;
  char *list = malloc(size + 1);
  if (!list) return false;
  bool found = false;
  if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, size, list, NULL) == CL_SUCCESS) {
    list[size] = '\0';
    size_t len = strlen(ext);
    for (const char *p = list; (p = strstr(p, ext)) != NULL; p += len)
      if ((p == list || p[-1] == ' ') && (p[len] == '\0' || p[len] == ' ')) found = true;
  }
  free(list);
  return found;
}

static seqmix_device_kind device_kind(cl_device_id device) {
  cl_device_type type = 0;
  if (clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS)
    return SEQMIX_DEVICE_ACCELERATOR;
  if (type & CL_DEVICE_TYPE_GPU)
    return device_bool(device, CL_DEVICE_HOST_UNIFIED_MEMORY) ? SEQMIX_DEVICE_INTEGRATED_GPU
                                                              : SEQMIX_DEVICE_DISCRETE_GPU;
  /* PoCL's CPU device and rusticl on llvmpipe: software implementations, never
   * preferred by `auto` over the native CPU path. */
  if (type & CL_DEVICE_TYPE_CPU) return SEQMIX_DEVICE_SOFTWARE;
  return SEQMIX_DEVICE_ACCELERATOR; /* ACCELERATOR, CUSTOM (FPGA cards) */
}

static void fill_info(cl_platform_id platform, cl_device_id device, seqmix_device_info *info) {
  char platform_name[60] = "", version[64] = "";
  if (clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof platform_name - 1, platform_name,
                        NULL) != CL_SUCCESS)
    platform_name[0] = '\0';
  platform_name[sizeof platform_name - 1] = '\0';
  memset(info, 0, sizeof *info);
  device_string(device, CL_DEVICE_NAME, info->name, sizeof info->name);
  device_string(device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
  device_string(device, CL_DRIVER_VERSION, version, sizeof version);
  snprintf(info->driver, sizeof info->driver, "%s (%s)", version, platform_name);
  if (!info->name[0]) snprintf(info->name, sizeof info->name, "OpenCL device");
  info->backend = SEQMIX_BACKEND_OPENCL;
  info->kind = device_kind(device);
  info->memory_bytes = device_ulong(device, CL_DEVICE_GLOBAL_MEM_SIZE);
  info->local_memory_bytes = device_ulong(device, CL_DEVICE_LOCAL_MEM_SIZE);
  info->compute_units = device_uint(device, CL_DEVICE_MAX_COMPUTE_UNITS);
  info->subgroup_size = 0; /* OpenCL 1.2 has no portable query */
  size_t wg = 0;
  if (clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL) != CL_SUCCESS)
    wg = 1;
  info->max_workgroup_size = wg > UINT32_MAX ? UINT32_MAX : (wg ? (uint32_t)wg : 1);
  info->unified_memory = device_bool(device, CL_DEVICE_HOST_UNIFIED_MEMORY);
  info->fp16_storage = true; /* vload_half/vstore_half are core OpenCL C */
  info->fp16_arithmetic = has_extension(device, "cl_khr_fp16");
  info->online_compiler = device_bool(device, CL_DEVICE_COMPILER_AVAILABLE);
}

/* ---- Probe ------------------------------------------------------------------- */

static seqmix_status opencl_probe(sm_device_entry **entries, size_t *count) {
  *entries = NULL;
  *count = 0;
  cl_uint platform_count = 0;
  cl_int err = clGetPlatformIDs(0, NULL, &platform_count);
  if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR: no ICD installed */ || platform_count == 0)
    return SEQMIX_OK;
  if (err != CL_SUCCESS) return sm_cl_fail("clGetPlatformIDs", err);
  cl_platform_id *platforms = calloc(platform_count, sizeof *platforms);
  sm_device_entry *list = NULL;
  size_t listed = 0;
  if (!platforms) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  err = clGetPlatformIDs(platform_count, platforms, NULL);
  if (err != CL_SUCCESS) {
    free(platforms);
    return sm_cl_fail("clGetPlatformIDs", err);
  }
  for (cl_uint p = 0; p < platform_count; ++p) {
    cl_uint device_count = 0;
    err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &device_count);
    if (err == CL_DEVICE_NOT_FOUND || (err == CL_SUCCESS && device_count == 0)) continue;
    if (err != CL_SUCCESS) {
      sm_log(SEQMIX_LOG_INFO, "opencl backend: skipping platform %u: clGetDeviceIDs: %s (%d)", p,
             sm_cl_error_name(err), (int)err);
      continue;
    }
    cl_device_id *devices = calloc(device_count, sizeof *devices);
    sm_device_entry *grown = realloc(list, (listed + device_count) * sizeof *grown);
    if (grown) list = grown;
    if (!devices || !grown) {
      free(devices);
      free(list);
      free(platforms);
      return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
    }
    err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, device_count, devices, NULL);
    for (cl_uint d = 0; err == CL_SUCCESS && d < device_count; ++d) {
      if (!device_bool(devices[d], CL_DEVICE_AVAILABLE)) continue;
      sm_device_entry *e = &list[listed++];
      memset(e, 0, sizeof *e);
      fill_info(platforms[p], devices[d], &e->info);
      e->handle[0] = (uintptr_t)platforms[p];
      e->handle[1] = (uintptr_t)devices[d];
    }
    free(devices);
  }
  free(platforms);
  if (listed == 0) {
    free(list);
    list = NULL;
  }
  *entries = list;
  *count = listed;
  return SEQMIX_OK;
}

/* ---- Open and close ---------------------------------------------------------- */

static void read_caps(sm_device *dev) {
  sm_cl_caps *caps = &dev->caps;
  if (clGetPlatformInfo(dev->platform, CL_PLATFORM_NAME, sizeof caps->platform_name - 1,
                        caps->platform_name, NULL) != CL_SUCCESS)
    caps->platform_name[0] = '\0';
  caps->platform_name[sizeof caps->platform_name - 1] = '\0';
  caps->max_workgroup_size = dev->info.max_workgroup_size;
  caps->max_alloc_bytes = device_ulong(dev->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  caps->base_align_bytes = device_uint(dev->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN) / 8;
  caps->native_float_width = device_uint(dev->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT);
  caps->online_compiler = dev->info.online_compiler;
}

static void opencl_close(sm_device *dev);

static seqmix_status opencl_open(const sm_device_entry *entry, const sm_open_options *options,
                                 sm_device **out) {
  *out = NULL;
  sm_device *dev = calloc(1, sizeof *dev);
  if (!dev) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  seqmix_status st;
  cl_int err = CL_SUCCESS;
  dev->platform = (cl_platform_id)entry->handle[0];
  dev->device = (cl_device_id)entry->handle[1];
  dev->info = entry->info;
  snprintf(dev->cache_dir, sizeof dev->cache_dir, "%s", options->cache_dir);
  const char *kernel = getenv("SEQMIX_OPENCL_ATTENTION");
  if (kernel && !strcmp(kernel, "keys")) dev->attention_kernel = SM_CL_ATTENTION_KEYS;
  if (kernel && !strcmp(kernel, "rows")) dev->attention_kernel = SM_CL_ATTENTION_ROWS;
  read_caps(dev);
  /* Offline binaries (program.c): SEQMIX_CL_FORBID_COMPILE makes the device
   * behave as one without a compiler (tests, and checking a binary directory). */
  const char *forbid = getenv("SEQMIX_CL_FORBID_COMPILE");
  if (forbid && *forbid && strcmp(forbid, "0") != 0) dev->caps.online_compiler = false;
  const char *binary_dir = getenv("SEQMIX_CL_BINARY_DIR");
  if (binary_dir && *binary_dir)
    snprintf(dev->binary_dir, sizeof dev->binary_dir, "%s", binary_dir);
  dev->binary_only = !dev->caps.online_compiler || dev->binary_dir[0];
  if (dev->binary_only && !dev->binary_dir[0])
    sm_log(SEQMIX_LOG_WARNING,
           "opencl backend: %s cannot compile kernels and SEQMIX_CL_BINARY_DIR is not set: "
           "its ops run on the CPU fallback",
           dev->info.name);
  else if (dev->binary_only)
    sm_log(SEQMIX_LOG_DEBUG, "opencl backend: %s loads kernels only from %s", dev->info.name,
           dev->binary_dir);

  const cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)dev->platform,
                                         0};
  dev->context = clCreateContext(props, 1, &dev->device, NULL, NULL, &err);
  if (!dev->context) {
    st = sm_cl_fail("clCreateContext", err ? err : CL_INVALID_CONTEXT);
    goto fail;
  }
  dev->queue = clCreateCommandQueue(dev->context, dev->device, 0, &err);
  if (!dev->queue) {
    st = sm_cl_fail("clCreateCommandQueue", err ? err : CL_INVALID_COMMAND_QUEUE);
    goto fail;
  }
  sm_log(SEQMIX_LOG_DEBUG, "opencl backend: opened %s (%s), max work-group %zu, float width %u",
         dev->info.name, dev->info.driver, dev->caps.max_workgroup_size,
         dev->caps.native_float_width);
  *out = dev;
  return SEQMIX_OK;
fail:
  opencl_close(dev);
  return st;
}

static void opencl_close(sm_device *dev) {
  if (!dev) return;
  if (dev->queue) clFinish(dev->queue);
  sm_cl_long_conv_release(dev);
  sm_cl_programs_release(dev);
  if (dev->dummy) sm_cl_free(dev, dev->dummy);
  if (dev->queue) clReleaseCommandQueue(dev->queue);
  if (dev->context) clReleaseContext(dev->context);
  free(dev);
}

/* ---- Ops and the stream ------------------------------------------------------- */

static bool opencl_supports(sm_device *dev, const sm_op *op) {
  switch (op->kind) {
  case SM_OP_CONV1D_CAUSAL: return sm_cl_conv1d_supports(dev, op);
  case SM_OP_ATTENTION:
  case SM_OP_ATTENTION_MERGE: return sm_cl_attention_supports(dev, op);
  case SM_OP_SELECTIVE_SCAN:
  case SM_OP_SSD:
  case SM_OP_LINEAR_ATTENTION: return sm_cl_ssm_supports(dev, op);
  case SM_OP_CONV2D_DEPTHWISE:
  case SM_OP_POOL_MIXER: return sm_cl_conv2d_supports(dev, op);
  case SM_OP_LONG_CONV: return sm_cl_long_conv_supports(dev, op);
  default: return false; /* the CPU fallback runs the rest */
  }
}

static seqmix_status opencl_launch(sm_device *dev, const sm_op *op) {
  switch (op->kind) {
  case SM_OP_CONV1D_CAUSAL: return sm_cl_conv1d_launch(dev, op);
  case SM_OP_ATTENTION:
  case SM_OP_ATTENTION_MERGE: return sm_cl_attention_launch(dev, op);
  case SM_OP_SELECTIVE_SCAN:
  case SM_OP_SSD:
  case SM_OP_LINEAR_ATTENTION: return sm_cl_ssm_launch(dev, op);
  case SM_OP_CONV2D_DEPTHWISE:
  case SM_OP_POOL_MIXER: return sm_cl_conv2d_launch(dev, op);
  case SM_OP_LONG_CONV: return sm_cl_long_conv_launch(dev, op);
  default: break;
  }
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the opencl backend has no kernel for it", op->name);
}

static seqmix_status opencl_flush(sm_device *dev) {
  cl_int err = clFlush(dev->queue);
  return err == CL_SUCCESS ? SEQMIX_OK : sm_cl_fail("clFlush", err);
}

static seqmix_status opencl_sync(sm_device *dev) {
  cl_int err = clFinish(dev->queue);
  return err == CL_SUCCESS ? SEQMIX_OK : sm_cl_fail("clFinish", err);
}

const sm_backend sm_opencl_backend = {
    .name = "opencl",
    .kind = SEQMIX_BACKEND_OPENCL,
    .probe = opencl_probe,
    .open = opencl_open,
    .close = opencl_close,
    .alloc = sm_cl_alloc,
    .free = sm_cl_free,
    .write = sm_cl_write,
    .read = sm_cl_read,
    .copy = sm_cl_copy,
    .supports = opencl_supports,
    .launch = opencl_launch,
    .flush = opencl_flush,
    .sync = opencl_sync,
    .compile_binaries = sm_cl_compile_binaries,
};
