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
 *
 * Offline binaries (DESIGN.md section 7): in binary-only mode (no online
 * compiler, SEQMIX_CL_FORBID_COMPILE, or SEQMIX_CL_BINARY_DIR set) a program
 * comes only from binary_dir, from the file "<stem>-<hash>.clbin" named by
 * the source text and the options (so a binary of other kernel sources is
 * simply missing). It is a cache-format file (magic, size, checksum) whose
 * payload is a key naming the device (name, vendor, platform, OpenCL version),
 * the source and the options, then the driver's binary. A missing, damaged or
 * foreign file is an error naming the file and the variant; nothing falls
 * back to the compiler. seqmix_compile_binaries writes these files: each op
 * file walks the variants its launches can compose (sm_cl_*_variants, with
 * the same option functions) and emits them here, where duplicates are
 * dropped and each is built from source once.
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
                   "opencl backend: %s cannot compile %s with \"%s\": it has no online compiler "
                   "(or SEQMIX_CL_FORBID_COMPILE is set)",
                   dev->info.name, source_name, options);
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
  sm_log(SEQMIX_LOG_DEBUG, "opencl backend: program %s [%s] built from source in %.0f ms",
         source_name, options, now_ms() - start);
  *out = program;
  return SEQMIX_OK;
}

/* ---- Offline binaries ------------------------------------------------------------ */

/* "attention-0123456789abcdef.clbin": the source's stem and a hash of its text
 * and the options. */
static void offline_file_name(const char *source_name, const char *source, const char *options,
                              char *name, size_t size) {
  const uint64_t h = sm_hash64(options, strlen(options), sm_hash64(source, strlen(source), 0));
  const char *dot = strchr(source_name, '.');
  const int stem = dot ? (int)(dot - source_name) : (int)strlen(source_name);
  snprintf(name, size, "%.*s-%016llx.clbin", stem, source_name, (unsigned long long)h);
}

/* The payload's leading key (malloc'ed): device, source and options. The
 * driver version is left out: the driver itself refuses a binary it cannot run. */
static char *offline_key(const sm_device *dev, const char *source_name, const char *source,
                         const char *options) {
  char *version = device_text(dev->device, CL_DEVICE_VERSION);
  if (!version) return NULL;
  const char *fmt = "seqmix opencl offline binary 1\ndevice %s\nvendor %s\nplatform %s\n"
                    "version %s\nsource %s %016llx\noptions %s\n";
  size_t size = strlen(fmt) + strlen(dev->info.name) + strlen(dev->info.vendor) +
                strlen(dev->caps.platform_name) + strlen(version) + strlen(source_name) + 16 +
                strlen(options) + 1;
  char *key = malloc(size);
  if (key)
    snprintf(key, size, fmt, dev->info.name, dev->info.vendor, dev->caps.platform_name, version,
             source_name, (unsigned long long)sm_hash64(source, strlen(source), 0), options);
  free(version);
  return key;
}

/* The first line of a key that differs from `want` (for messages), in `out`. */
static void first_difference(const char *have, size_t have_size, const char *want, char *out,
                             size_t size) {
  size_t i = 0;
  while (i < have_size && want[i] && have[i] == want[i])
    ++i;
  while (i > 0 && want[i - 1] != '\n')
    --i;
  size_t n = 0;
  while (i + n < have_size && have[i + n] != '\n' && have[i + n] != '\0' && n + 1 < size)
    ++n;
  snprintf(out, size, "%.*s", (int)n, have + i);
}

static seqmix_status load_offline(sm_device *dev, const char *source_name, const char *source,
                                  const char *options, cl_program *out) {
  char file[96], found[256];
  void *payload = NULL;
  size_t size = 0;
  cl_program program = NULL;
  seqmix_status st = SEQMIX_OK;
  *out = NULL;
  offline_file_name(source_name, source, options, file, sizeof file);
  if (!dev->binary_dir[0])
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED,
                   "opencl backend: %s has no online compiler and SEQMIX_CL_BINARY_DIR is not "
                   "set: no binary %s for %s with \"%s\"",
                   dev->info.name, file, source_name, options);
  char *key = offline_key(dev, source_name, source, options);
  if (!key) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
  switch (sm_cache_read(dev->binary_dir, file, &payload, &size)) {
  case SM_CACHE_MISSING:
    st = sm_fail(SEQMIX_ERROR_IO,
                 "opencl backend: offline binary %s/%s is missing (variant %s with \"%s\"); "
                 "write it with `seqmix compile --device %s --out DIR` on a device with a "
                 "compiler",
                 dev->binary_dir, file, source_name, options, dev->info.id);
    goto done;
  case SM_CACHE_DAMAGED:
    st = sm_fail(SEQMIX_ERROR_IO,
                 "opencl backend: offline binary %s/%s is damaged (bad header, size or checksum; "
                 "variant %s with \"%s\")",
                 dev->binary_dir, file, source_name, options);
    goto done;
  case SM_CACHE_OK: break;
  }
  const size_t key_size = strlen(key) + 1;
  if (size <= key_size || memcmp(payload, key, key_size) != 0) {
    first_difference(payload, size, key, found, sizeof found);
    st = sm_fail(SEQMIX_ERROR_IO,
                 "opencl backend: offline binary %s/%s is not for this device and variant (%s "
                 "with \"%s\" on %s); the file says \"%s\"",
                 dev->binary_dir, file, source_name, options, dev->info.name, found);
    goto done;
  }
  const unsigned char *binary = (const unsigned char *)payload + key_size;
  size_t binary_size = size - key_size;
  cl_int binary_status = CL_SUCCESS, err = CL_SUCCESS;
  program = clCreateProgramWithBinary(dev->context, 1, &dev->device, &binary_size, &binary,
                                      &binary_status, &err);
  if (!program || err != CL_SUCCESS || binary_status != CL_SUCCESS) {
    err = err != CL_SUCCESS ? err : binary_status != CL_SUCCESS ? binary_status : CL_INVALID_BINARY;
    st = sm_fail(SEQMIX_ERROR_BACKEND,
                 "clCreateProgramWithBinary: %s (%d) for offline binary %s/%s (%s with \"%s\")",
                 sm_cl_error_name(err), (int)err, dev->binary_dir, file, source_name, options);
    goto done;
  }
  err = clBuildProgram(program, 1, &dev->device, options, NULL, NULL);
  if (err != CL_SUCCESS) {
    st = sm_fail(SEQMIX_ERROR_BACKEND,
                 "clBuildProgram: %s (%d) for offline binary %s/%s (%s with \"%s\")",
                 sm_cl_error_name(err), (int)err, dev->binary_dir, file, source_name, options);
    goto done;
  }
  sm_log(SEQMIX_LOG_DEBUG, "opencl backend: program %s [%s] loaded from offline binary %s",
         source_name, options, file);
  *out = program;
  program = NULL;
done:
  if (program) clReleaseProgram(program);
  free(payload);
  free(key);
  return st;
}

static seqmix_status build_program(sm_device *dev, const char *source_name, const char *options,
                                   cl_program *out) {
  char *source = NULL, *key = NULL;
  char file_name[64];
  *out = NULL;
  seqmix_status st = compose_source(source_name, &source);
  if (st) return st;
  if (dev->binary_only) {
    st = load_offline(dev, source_name, source, options, out);
    goto done;
  }
  key = cache_key(dev, source, options, file_name, sizeof file_name);
  if (!key) {
    st = sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
    goto done;
  }
  if (load_cached(dev, key, file_name, options, out)) {
    sm_log(SEQMIX_LOG_DEBUG, "opencl backend: program %s [%s] loaded from the cache", source_name,
           options);
    goto done;
  }
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

/* ---- seqmix_compile_binaries --------------------------------------------------- */

sm_buffer sm_cl_present;

enum { SINK_SOURCES = 8 };

/* Variants already emitted: an open-addressing table of file-name hashes
 * (never 0) with the work-group limit each variant's kernel reported. */
struct sm_cl_variant_sink {
  sm_device *dev;
  const char *dir;
  const seqmix_compile_options *options;
  seqmix_compile_summary *summary;
  seqmix_status first_error;
  char first_message[1024];
  struct {
    const char *name;
    char *text;
  } sources[SINK_SOURCES]; /* composed sources, by name */
  uint64_t *keys;
  size_t *limits;
  size_t capacity, count;
  bool out_of_memory;
};

const seqmix_compile_options *sm_cl_sink_options(const sm_cl_variant_sink *sink) {
  return sink->options;
}

int sm_cl_sink_dtypes(const sm_cl_variant_sink *sink, seqmix_dtype out[3]) {
  static const seqmix_dtype all[] = {SEQMIX_F32, SEQMIX_F16, SEQMIX_BF16};
  int n = 0;
  for (int i = 0; i < 3; ++i)
    if (sink->options->dtypes & (1u << all[i])) out[n++] = all[i];
  return n;
}

/* The slot of `key`: where it is, or the empty slot where it goes. */
static size_t sink_slot(const sm_cl_variant_sink *sink, uint64_t key) {
  size_t i = (size_t)key & (sink->capacity - 1);
  while (sink->keys[i] && sink->keys[i] != key)
    i = (i + 1) & (sink->capacity - 1);
  return i;
}

static bool sink_grow(sm_cl_variant_sink *sink) {
  const size_t capacity = sink->capacity ? 2 * sink->capacity : 1024;
  uint64_t *keys = calloc(capacity, sizeof *keys);
  size_t *limits = calloc(capacity, sizeof *limits);
  if (!keys || !limits) {
    free(keys);
    free(limits);
    return false;
  }
  uint64_t *old_keys = sink->keys;
  size_t *old_limits = sink->limits, old_capacity = sink->capacity;
  sink->keys = keys, sink->limits = limits, sink->capacity = capacity;
  for (size_t i = 0; i < old_capacity; ++i)
    if (old_keys[i]) {
      const size_t slot = sink_slot(sink, old_keys[i]);
      sink->keys[slot] = old_keys[i];
      sink->limits[slot] = old_limits[i];
    }
  free(old_keys);
  free(old_limits);
  return true;
}

static const char *sink_source(sm_cl_variant_sink *sink, const char *source_name) {
  for (int i = 0; i < SINK_SOURCES && sink->sources[i].name; ++i)
    if (!strcmp(sink->sources[i].name, source_name)) return sink->sources[i].text;
  for (int i = 0; i < SINK_SOURCES; ++i)
    if (!sink->sources[i].name) {
      char *text = NULL;
      if (compose_source(source_name, &text)) return NULL;
      sink->sources[i].name = source_name;
      sink->sources[i].text = text;
      return text;
    }
  sm_fail(SEQMIX_ERROR_BACKEND, "opencl backend: more than %d kernel sources", SINK_SOURCES);
  return NULL;
}

static void sink_failed(sm_cl_variant_sink *sink, seqmix_status st) {
  sink->summary->failed++;
  if (!sink->first_error) {
    sink->first_error = st;
    snprintf(sink->first_message, sizeof sink->first_message, "%s", seqmix_last_error());
  }
}

/* Builds the variant from source, writes its file; the kernel's work-group
 * limit through *limit. */
static seqmix_status write_variant(sm_cl_variant_sink *sink, const char *source_name,
                                   const char *source, const char *options, const char *file,
                                   const char *kernel_name, size_t *limit) {
  sm_device *dev = sink->dev;
  cl_program program = NULL;
  unsigned char *payload = NULL;
  char *key = NULL;
  seqmix_status st = build_from_source(dev, source_name, source, options, &program);
  if (st) return st;
  size_t binary_size = 0;
  cl_int err = clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof binary_size,
                                &binary_size, NULL);
  if (err != CL_SUCCESS || binary_size == 0) {
    st = err != CL_SUCCESS ? sm_cl_fail("clGetProgramInfo(CL_PROGRAM_BINARY_SIZES)", err)
                           : sm_fail(SEQMIX_ERROR_UNSUPPORTED,
                                     "opencl backend: %s offers no program binary for %s",
                                     dev->info.name, source_name);
    goto done;
  }
  key = offline_key(dev, source_name, source, options);
  const size_t key_size = key ? strlen(key) + 1 : 0;
  payload = key ? malloc(key_size + binary_size) : NULL;
  if (!payload) {
    st = sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
    goto done;
  }
  memcpy(payload, key, key_size);
  unsigned char *binaries[1] = {payload + key_size};
  if ((err = clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binaries, binaries, NULL)) !=
      CL_SUCCESS) {
    st = sm_cl_fail("clGetProgramInfo(CL_PROGRAM_BINARIES)", err);
    goto done;
  }
  if (!sm_cache_store(sink->dir, file, payload, key_size + binary_size)) {
    st = sm_fail(SEQMIX_ERROR_IO, "seqmix_compile_binaries: cannot write %s/%s", sink->dir, file);
    goto done;
  }
  sink->summary->written++;
  *limit = SIZE_MAX;
  if (kernel_name) {
    cl_kernel kernel = clCreateKernel(program, kernel_name, &err);
    size_t wg = 0;
    if (!kernel || err != CL_SUCCESS) {
      st = sm_cl_fail("clCreateKernel", err != CL_SUCCESS ? err : CL_INVALID_KERNEL);
    } else if (clGetKernelWorkGroupInfo(kernel, dev->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg,
                                        &wg, NULL) == CL_SUCCESS &&
               wg > 0) {
      *limit = wg;
    }
    if (kernel) clReleaseKernel(kernel);
  }
done:
  free(payload);
  free(key);
  clReleaseProgram(program);
  return st;
}

size_t sm_cl_emit(sm_cl_variant_sink *sink, const char *source_name, const char *options,
                  const char *kernel_name) {
  const seqmix_compile_options *o = sink->options;
  if (sink->out_of_memory) return SIZE_MAX;
  const char *source = sink_source(sink, source_name);
  if (!source) {
    sink_failed(sink, SEQMIX_ERROR_BACKEND);
    return SIZE_MAX;
  }
  char file[96];
  offline_file_name(source_name, source, options, file, sizeof file);
  uint64_t key = sm_hash64(file, strlen(file), 0);
  key = key ? key : 1;
  if (2 * (sink->count + 1) > sink->capacity && !sink_grow(sink)) {
    sink->out_of_memory = true;
    sink_failed(sink, sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory"));
    return SIZE_MAX;
  }
  size_t slot = sink_slot(sink, key);
  if (sink->keys[slot]) return sink->limits[slot];
  size_t limit = SIZE_MAX;
  seqmix_status st = SEQMIX_OK;
  sink->summary->variants++;
  if (o->want && !o->want(o->user, source_name, options)) {
    sink->summary->skipped++;
  } else if (!o->dry_run) {
    st = write_variant(sink, source_name, source, options, file, kernel_name, &limit);
    if (st) sink_failed(sink, st);
  }
  sink->keys[slot] = key;
  sink->limits[slot] = limit;
  sink->count++;
  if (o->on_variant) o->on_variant(o->user, file, source_name, options, st);
  return limit;
}

seqmix_status sm_cl_compile_binaries(sm_device *dev, const char *dir,
                                     const seqmix_compile_options *options,
                                     seqmix_compile_summary *summary) {
  if (!dev->caps.online_compiler && !options->dry_run)
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED,
                   "seqmix_compile_binaries: %s (%s) cannot compile: it has no online compiler "
                   "(or SEQMIX_CL_FORBID_COMPILE is set); build the binaries on a device of the "
                   "same model that has one",
                   dev->info.id, dev->info.name);
  sm_cl_variant_sink sink = {.dev = dev, .dir = dir, .options = options, .summary = summary};
  const double start = now_ms();
  sm_cl_conv1d_variants(dev, &sink);
  sm_cl_attention_variants(dev, &sink);
  sm_cl_ssm_variants(dev, &sink);
  sm_cl_conv2d_variants(dev, &sink);
  sm_cl_long_conv_variants(dev, &sink);
  for (int i = 0; i < SINK_SOURCES; ++i)
    free(sink.sources[i].text);
  free(sink.keys);
  free(sink.limits);
  sm_log(SEQMIX_LOG_INFO, "opencl backend: %zu variants for %s (%zu written, %zu skipped, %zu failed) in %.1f s",
         summary->variants, dev->info.name, summary->written, summary->skipped, summary->failed,
         (now_ms() - start) / 1e3);
  if (sink.first_error)
    return sm_fail(sink.first_error, "seqmix_compile_binaries: %zu of %zu variants failed; the first: %s",
                   summary->failed, summary->variants, sink.first_message);
  return SEQMIX_OK;
}
