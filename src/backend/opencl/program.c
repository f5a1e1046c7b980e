/*
 * Programs and kernels. A program variant is an embedded cl/ source built with
 * one options string (dtypes and tunables as -D); it is built once per open
 * device and kept until close, with its kernel objects.
 *
 * The runtime has no include path, so cl/common.h is prepended to each source
 * (with #line markers so build logs name the right file and line).
 *
 * Binaries are cached on disk (DESIGN.md section 7) under a name hashed from
 * everything that decides the binary: device name, vendor, version and driver,
 * the platform, the source text and the options. The payload starts with that
 * key in full, so a hash collision or a foreign file reads as a miss; a binary
 * the driver refuses is rebuilt from source and the entry rewritten.
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { BUILD_LOG_SHOWN = 640 }; /* characters of a build log that reach the last error */

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* common.h, then the op's source, as one NUL-terminated text (malloc'ed). */
static seqmix_status compose_source(const char *source_name, char **out) {
  *out = NULL;
  const sm_embedded_file *common = sm_embedded_find("common.h");
  const sm_embedded_file *file = sm_embedded_find(source_name);
  if (!common || !file)
    return sm_fail(SEQMIX_ERROR_BACKEND, "opencl backend: embedded source %s is missing",
                   common ? source_name : "common.h");
  const char *fmt = "#line 1 \"common.h\"\n%s\n#line 1 \"%s\"\n%s\n";
  size_t size = strlen(fmt) + common->size + strlen(source_name) + file->size + 1;
  char *text = malloc(size);
  if (!text) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  snprintf(text, size, fmt, (const char *)common->data, source_name, (const char *)file->data);
  *out = text;
  return SEQMIX_OK;
}

/* A device string of any length (malloc'ed; "" when the query fails). */
static char *device_text(cl_device_id device, cl_device_info what) {
  size_t size = 0;
  if (clGetDeviceInfo(device, what, 0, NULL, &size) != CL_SUCCESS) size = 0;
  char *text = malloc(size + 1);
  if (!text) return NULL;
  if (!size || clGetDeviceInfo(device, what, size, text, NULL) != CL_SUCCESS) size = 0;
  text[size] = '\0';
  return text;
}

/* The cache key (malloc'ed text) and the file name it hashes to. */
static char *cache_key(const sm_device *dev, const char *source, const char *options,
                       char *file_name, size_t file_name_size) {
  char *version = device_text(dev->device, CL_DEVICE_VERSION);
  if (!version) return NULL;
  const uint64_t source_hash = sm_hash64(source, strlen(source), 0);
  const char *fmt = "seqmix opencl binary 1\n%s\n%s\n%s\n%s\n%s\n%016llx\n%s\n";
  size_t size = strlen(fmt) + strlen(dev->info.name) + strlen(dev->info.vendor) +
                strlen(dev->info.driver) + strlen(dev->caps.platform_name) + strlen(version) + 16 +
                strlen(options) + 1;
  char *key = malloc(size);
  if (key) {
    snprintf(key, size, fmt, dev->info.name, dev->info.vendor, dev->info.driver,
             dev->caps.platform_name, version, (unsigned long long)source_hash, options);
    snprintf(file_name, file_name_size, "opencl-%016llx.bin",
             (unsigned long long)sm_hash64(key, strlen(key), 0x5e9));
  }
  free(version);
  return key;
}

/* Builds a program from a cached binary; false (and nothing made) on a miss or
 * a binary the driver refuses. */
static bool load_cached(sm_device *dev, const char *key, const char *file_name, const char *options,
                        cl_program *out) {
  void *payload = NULL;
  size_t size = 0;
  *out = NULL;
  if (!sm_cache_load(dev->cache_dir, file_name, &payload, &size)) return false;
  const size_t key_size = strlen(key) + 1;
  cl_program program = NULL;
  cl_int binary_status = CL_SUCCESS, err = CL_SUCCESS;
  if (size <= key_size || memcmp(payload, key, key_size) != 0) {
    sm_log(SEQMIX_LOG_INFO, "opencl backend: cache file %s is for another build", file_name);
    goto miss;
  }
  const unsigned char *binary = (const unsigned char *)payload + key_size;
  size_t binary_size = size - key_size;
  program = clCreateProgramWithBinary(dev->context, 1, &dev->device, &binary_size, &binary,
                                      &binary_status, &err);
  if (!program || err != CL_SUCCESS || binary_status != CL_SUCCESS) goto refused;
  err = clBuildProgram(program, 1, &dev->device, options, NULL, NULL);
  if (err != CL_SUCCESS) goto refused;
  free(payload);
  *out = program;
  return true;
refused:
  sm_log(SEQMIX_LOG_INFO, "opencl backend: cached binary %s refused (%s); building from source",
         file_name, sm_cl_error_name(err != CL_SUCCESS ? err : binary_status));
miss:
  if (program) clReleaseProgram(program);
  free(payload);
  return false;
}

static void store_cached(sm_device *dev, const char *key, const char *file_name,
                         cl_program program) {
  size_t binary_size = 0;
  if (clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof binary_size, &binary_size, NULL) !=
          CL_SUCCESS ||
      binary_size == 0)
    return; /* the driver offers no binary: nothing to cache */
  const size_t key_size = strlen(key) + 1;
  unsigned char *payload = malloc(key_size + binary_size);
  if (!payload) return;
  memcpy(payload, key, key_size);
  unsigned char *binaries[1] = {payload + key_size};
  if (clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binaries, binaries, NULL) == CL_SUCCESS)
    sm_cache_store(dev->cache_dir, file_name, payload, key_size + binary_size);
  free(payload);
}

/* The build log of a failed build, its first BUILD_LOG_SHOWN characters. */
static void build_log(sm_device *dev, cl_program program, char *log, size_t size) {
  size_t full = 0;
  log[0] = '\0';
  if (clGetProgramBuildInfo(program, dev->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &full) !=
          CL_SUCCESS ||
      full == 0)
    return;
  char *text = malloc(full + 1);
  if (!text) return;
  if (clGetProgramBuildInfo(program, dev->device, CL_PROGRAM_BUILD_LOG, full, text, NULL) ==
      CL_SUCCESS) {
    text[full] = '\0';
    sm_log(SEQMIX_LOG_ERROR, "opencl backend: build log:\n%s", text);
    snprintf(log, size, "%s", text);
  }
  free(text);
}

static seqmix_status build_from_source(sm_device *dev, const char *source_name, const char *source,
                                       const char *options, cl_program *out) {
  *out = NULL;
  if (!dev->caps.online_compiler)
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED,
                   "opencl backend: %s has no online compiler and no cached binary of %s",
                   dev->info.name, source_name);
  cl_int err = CL_SUCCESS;
  cl_program program = clCreateProgramWithSource(dev->context, 1, &source, NULL, &err);
  if (!program || err != CL_SUCCESS) {
    if (program) clReleaseProgram(program);
    return sm_cl_fail("clCreateProgramWithSource", err ? err : CL_INVALID_PROGRAM);
  }
  const double start = now_ms();
  err = clBuildProgram(program, 1, &dev->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    char log[BUILD_LOG_SHOWN + 1];
    build_log(dev, program, log, sizeof log);
    clReleaseProgram(program);
    return sm_fail(SEQMIX_ERROR_BACKEND, "clBuildProgram: %s (%d) for %s with \"%s\" on %s: %s",
                   sm_cl_error_name(err), (int)err, source_name, options, dev->info.name,
                   log[0] ? log : "(no build log)");
  }
  sm_log(SEQMIX_LOG_DEBUG, "opencl backend: built %s [%s] in %.0f ms", source_name, options,
         now_ms() - start);
  *out = program;
  return SEQMIX_OK;
}

static seqmix_status build_program(sm_device *dev, const char *source_name, const char *options,
                                   cl_program *out) {
  char *source = NULL, *key = NULL;
  char file_name[64];
  *out = NULL;
  seqmix_status st = compose_source(source_name, &source);
  if (st) return st;
  key = cache_key(dev, source, options, file_name, sizeof file_name);
  if (!key) {
    st = sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
    goto done;
  }
  if (load_cached(dev, key, file_name, options, out)) goto done;
  st = build_from_source(dev, source_name, source, options, out);
  if (!st) store_cached(dev, key, file_name, *out);
done:
  free(key);
  free(source);
  return st;
}

static sm_cl_program *find_program(sm_device *dev, const char *source_name, const char *options) {
  for (size_t i = 0; i < dev->program_count; ++i) {
    sm_cl_program *p = dev->programs[i];
    if (!strcmp(p->source_name, source_name) && !strcmp(p->options, options)) return p;
  }
  return NULL;
}

static void program_destroy(sm_cl_program *p) {
  if (!p) return;
  for (int k = 0; k < p->kernel_count; ++k)
    clReleaseKernel(p->kernels[k].kernel);
  if (p->program) clReleaseProgram(p->program);
  free(p->source_name);
  free(p->options);
  free(p);
}

static seqmix_status add_program(sm_device *dev, const char *source_name, const char *options,
                                 sm_cl_program **out) {
  seqmix_status st = SEQMIX_OK;
  sm_cl_program *p = calloc(1, sizeof *p);
  if (!p) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  p->source_name = copy_string(source_name);
  p->options = copy_string(options);
  if (dev->program_count == dev->program_capacity) {
    size_t capacity = dev->program_capacity ? 2 * dev->program_capacity : 8;
    sm_cl_program **grown = realloc(dev->programs, capacity * sizeof *grown);
    if (grown) {
      dev->programs = grown;
      dev->program_capacity = capacity;
    }
  }
  if (!p->source_name || !p->options || dev->program_count == dev->program_capacity) {
    st = sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
    goto fail;
  }
  if ((st = build_program(dev, source_name, options, &p->program))) goto fail;
  dev->programs[dev->program_count++] = p;
  *out = p;
  return SEQMIX_OK;
fail:
  program_destroy(p);
  return st;
}

seqmix_status sm_cl_kernel_get(sm_device *dev, const char *source_name, const char *options,
                               const char *kernel_name, const sm_cl_kernel **out) {
  *out = NULL;
  sm_cl_program *p = find_program(dev, source_name, options);
  seqmix_status st;
  if (!p && (st = add_program(dev, source_name, options, &p))) return st;
  for (int k = 0; k < p->kernel_count; ++k)
    if (!strcmp(p->kernels[k].name, kernel_name)) {
      *out = &p->kernels[k];
      return SEQMIX_OK;
    }
  if (p->kernel_count == SM_CL_KERNELS_PER_PROGRAM || strlen(kernel_name) >= 64)
    return sm_fail(SEQMIX_ERROR_BACKEND, "opencl backend: no room for kernel %s of %s", kernel_name,
                   source_name);
  cl_int err = CL_SUCCESS;
  cl_kernel kernel = clCreateKernel(p->program, kernel_name, &err);
  if (!kernel || err != CL_SUCCESS) {
    if (kernel) clReleaseKernel(kernel);
    char call[128];
    snprintf(call, sizeof call, "clCreateKernel(%s)", kernel_name);
    return sm_cl_fail(call, err ? err : CL_INVALID_KERNEL);
  }
  sm_cl_kernel *k = &p->kernels[p->kernel_count++];
  snprintf(k->name, sizeof k->name, "%s", kernel_name);
  k->kernel = kernel;
  if (clGetKernelWorkGroupInfo(kernel, dev->device, CL_KERNEL_WORK_GROUP_SIZE,
                               sizeof k->max_workgroup_size, &k->max_workgroup_size,
                               NULL) != CL_SUCCESS ||
      k->max_workgroup_size == 0)
    k->max_workgroup_size = 1;
  *out = k;
  return SEQMIX_OK;
}

void sm_cl_programs_release(sm_device *dev) {
  for (size_t i = 0; i < dev->program_count; ++i)
    program_destroy(dev->programs[i]);
  free(dev->programs);
  dev->programs = NULL;
  dev->program_count = dev->program_capacity = 0;
}

/* ---- Arguments and launches ------------------------------------------------- */

void sm_cl_arg(sm_cl_args *args, size_t size, const void *value) {
  if (args->err == CL_SUCCESS) args->err = clSetKernelArg(args->kernel, args->next, size, value);
  args->next++;
}

void sm_cl_arg_buffer(sm_device *dev, sm_cl_args *args, const sm_buffer *buf) {
  cl_mem mem = NULL;
  if (buf)
    mem = buf->mem;
  else if (sm_cl_dummy_buffer(dev, &mem) != SEQMIX_OK && args->err == CL_SUCCESS)
    args->err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
  sm_cl_arg(args, sizeof mem, &mem);
}

seqmix_status sm_cl_enqueue(sm_device *dev, const sm_cl_kernel *kernel, cl_uint dims,
                            const size_t *global, const size_t *local) {
  cl_int err =
      clEnqueueNDRangeKernel(dev->queue, kernel->kernel, dims, NULL, global, local, 0, NULL, NULL);
  if (err == CL_SUCCESS) return SEQMIX_OK;
  char call[128];
  snprintf(call, sizeof call, "clEnqueueNDRangeKernel(%s)", kernel->name);
  return sm_cl_fail(call, err);
}
