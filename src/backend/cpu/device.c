/* The CPU backend: the native path, always device 0. Ops run at launch on a
 * thread pool with SIMD kernels chosen from the CPU's features. */
#include "backend/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const sm_cpu_kernels *pick_kernels(void) {
  const char *force = getenv("SEQMIX_CPU_ISA"); /* for tests: scalar, avx2, avx512, neon */
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
              __builtin_cpu_supports("f16c");
  if (force && !strcmp(force, "scalar")) return &sm_cpu_kernels_scalar;
  if (force && !strcmp(force, "avx2") && avx2) return &sm_cpu_kernels_avx2;
  if (avx512) return &sm_cpu_kernels_avx512;
  if (avx2) return &sm_cpu_kernels_avx2;
#elif defined(__aarch64__)
  if (!(force && !strcmp(force, "scalar"))) return &sm_cpu_kernels_neon;
#else
  (void)force;
#endif
  return &sm_cpu_kernels_scalar;
}

static void read_cpu_name(char *name, size_t size) {
  snprintf(name, size, "CPU");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    if (!colon || (strncmp(line, "model name", 10) && strncmp(line, "Model", 5))) continue;
    colon++;
    while (*colon == ' ' || *colon == '\t') colon++;
    colon[strcspn(colon, "\n")] = '\0';
    snprintf(name, size, "%s", colon);
    break;
  }
  fclose(f);
}

static seqmix_status cpu_probe(sm_device_entry **entries, size_t *count) {
  sm_device_entry *e = calloc(1, sizeof *e);
  if (!e) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "cpu backend: out of host memory");
  seqmix_device_info *info = &e->info;
  read_cpu_name(info->name, sizeof info->name);
  snprintf(info->vendor, sizeof info->vendor, "host");
  snprintf(info->driver, sizeof info->driver, "seqmix %d.%d.%d %s", SEQMIX_VERSION_MAJOR,
           SEQMIX_VERSION_MINOR, SEQMIX_VERSION_PATCH, pick_kernels()->isa);
  info->backend = SEQMIX_BACKEND_CPU;
  info->kind = SEQMIX_DEVICE_CPU;
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  info->memory_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
  long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  info->local_memory_bytes = l2 > 0 ? (uint64_t)l2 : 0;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  info->compute_units = cores > 0 ? (uint32_t)cores : 1;
  info->subgroup_size = (uint32_t)pick_kernels()->vector_floats;
  info->max_workgroup_size = 1;
  info->unified_memory = true;
  info->fp16_storage = true;
  info->fp16_arithmetic = false;
  info->online_compiler = false;
  *entries = e;
  *count = 1;
  return SEQMIX_OK;
}

static seqmix_status cpu_open(const sm_device_entry *entry, const sm_open_options *options,
                              sm_device **out) {
  (void)entry;
  sm_device *dev = calloc(1, sizeof *dev);
  if (!dev) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "cpu backend: out of host memory");
  seqmix_status st = sm_pool_create(options->cpu_threads, &dev->pool);
  if (st) {
    free(dev);
    return st;
  }
  dev->kernels = pick_kernels();
  sm_log(SEQMIX_LOG_DEBUG, "cpu backend: %d threads, %s kernels", options->cpu_threads,
         dev->kernels->isa);
  *out = dev;
  return SEQMIX_OK;
}

static void cpu_close(sm_device *dev) {
  if (!dev) return;
  sm_cpu_long_conv_release(dev);
  free(dev->scratch);
  sm_pool_destroy(dev->pool);
  free(dev);
}

static bool cpu_supports(sm_device *dev, const sm_op *op) {
  (void)dev;
  return op->kind < SM_OP_KIND_COUNT;
}

static seqmix_status cpu_launch(sm_device *dev, const sm_op *op) {
  switch (op->kind) {
  case SM_OP_CONV1D_CAUSAL: return sm_cpu_conv1d(dev, op);
  case SM_OP_ATTENTION: return sm_cpu_attention(dev, op);
  case SM_OP_ATTENTION_MERGE: return sm_cpu_attention_merge(dev, op);
  case SM_OP_SELECTIVE_SCAN: return sm_cpu_selective_scan(dev, op);
  case SM_OP_SSD: return sm_cpu_ssd(dev, op);
  case SM_OP_LINEAR_ATTENTION: return sm_cpu_linear_attention(dev, op);
  case SM_OP_CONV2D_DEPTHWISE: return sm_cpu_conv2d_depthwise(dev, op);
  case SM_OP_LONG_CONV: return sm_cpu_long_conv(dev, op);
  case SM_OP_POOL_MIXER: return sm_cpu_pool_mixer(dev, op);
  case SM_OP_KIND_COUNT: break;
  }
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the cpu backend has no kernel for it", op->name);
}

/* Ops run to completion at launch: nothing is ever queued. */
static seqmix_status cpu_flush(sm_device *dev) {
  (void)dev;
  return SEQMIX_OK;
}

const sm_backend sm_cpu_backend = {
    .name = "cpu",
    .kind = SEQMIX_BACKEND_CPU,
    .probe = cpu_probe,
    .open = cpu_open,
    .close = cpu_close,
    .alloc = sm_cpu_alloc,
    .free = sm_cpu_free,
    .write = sm_cpu_write,
    .read = sm_cpu_read,
    .copy = sm_cpu_copy,
    .supports = cpu_supports,
    .launch = cpu_launch,
    .flush = cpu_flush,
    .sync = cpu_flush,
};
