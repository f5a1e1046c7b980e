/* Contexts: one device, its stream, the CPU fallback, the tensors made on it. */
#include "core/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void resolve_cache_dir(const char *option, char *dir, size_t size) {
  const char *env;
  if (option && *option) snprintf(dir, size, "%s", option);
  else if ((env = getenv("SEQMIX_CACHE_DIR")) && *env) snprintf(dir, size, "%s", env);
  else if ((env = getenv("XDG_CACHE_HOME")) && *env) snprintf(dir, size, "%s/seqmix", env);
  else if ((env = getenv("HOME")) && *env) snprintf(dir, size, "%s/.cache/seqmix", env);
  else snprintf(dir, size, "/tmp/seqmix-cache");
}

static int resolve_threads(int option) {
  if (option > 0) return option;
  const char *env = getenv("SEQMIX_CPU_THREADS");
  if (env && atoi(env) > 0) return atoi(env);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* Finds the registry index for a device string: auto, cpu, opencl:N, vulkan:N. */
static seqmix_status find_device(const char *want, const sm_device_entry *e, size_t n,
                                 size_t *index) {
  static const char fn[] = "seqmix_context_create";
  if (!strcmp(want, "auto")) return seqmix_device_auto(index);
  for (size_t i = 0; i < n; ++i)
    if (!strcmp(e[i].info.id, want)) {
      *index = i;
      return SEQMIX_OK;
    }
  char listed[512] = "";
  size_t len = 0;
  for (size_t i = 0; i < n && len < sizeof listed; ++i)
    len += (size_t)snprintf(listed + len, sizeof listed - len, "%s%s", i ? ", " : "", e[i].info.id);
  return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                 "%s: device \"%s\" is not available; it must be auto or one of: %s", fn, want,
                 listed);
}

seqmix_status seqmix_context_create(const seqmix_context_options *options, seqmix_context **out) {
  static const char fn[] = "seqmix_context_create";
  if (!out) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  *out = NULL;
  seqmix_context_options defaults = {0};
  if (!options) options = &defaults;
  if (options->cpu_threads < 0)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: options->cpu_threads is %d; it must be >= 0 (0: one per core)", fn,
                   options->cpu_threads);

  const sm_device_entry *entries;
  const sm_backend **backends;
  size_t count, index;
  seqmix_status st = sm_registry_get(&entries, &backends, &count);
  if (st) return st;
  const char *want = options->device;
  if (!want || !*want) want = getenv("SEQMIX_DEVICE");
  if (!want || !*want) want = "auto";
  st = find_device(want, entries, count, &index);
  if (st) return st;

  seqmix_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  pthread_mutex_init(&ctx->lock, NULL);
  resolve_cache_dir(options->cache_dir, ctx->cache_dir, sizeof ctx->cache_dir);
  ctx->open_options.cache_dir = ctx->cache_dir;
  ctx->open_options.cpu_threads = resolve_threads(options->cpu_threads);
  ctx->backend = backends[index];
  ctx->info = entries[index].info;
  st = ctx->backend->open(&entries[index], &ctx->open_options, &ctx->device);
  if (st) {
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
    return st;
  }
  sm_tuning_load(ctx);
  if (ctx->backend == &sm_cpu_backend) ctx->fallback = ctx->device;
  else ctx->forced_fallback = sm_op_kinds_from_list(getenv("SEQMIX_FALLBACK_OPS"));
  sm_log(SEQMIX_LOG_INFO, "context on %s (%s)", ctx->info.id, ctx->info.name);
  *out = ctx;
  return SEQMIX_OK;
}

void seqmix_context_destroy(seqmix_context *ctx) {
  if (!ctx) return;
  ctx->backend->sync(ctx->device);
  sm_context_release_tensors(ctx);
  if (ctx->fallback && ctx->fallback != ctx->device) sm_cpu_backend.close(ctx->fallback);
  ctx->backend->close(ctx->device);
  pthread_mutex_destroy(&ctx->lock);
  free(ctx);
}

seqmix_status seqmix_context_device(const seqmix_context *ctx, seqmix_device_info *info) {
  static const char fn[] = "seqmix_context_device";
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  if (!info) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: info is NULL", fn);
  *info = ctx->info;
  return SEQMIX_OK;
}

seqmix_status seqmix_context_sync(seqmix_context *ctx) {
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "seqmix_context_sync: ctx is NULL");
  return ctx->backend->sync(ctx->device);
}

seqmix_status seqmix_context_stats_get(const seqmix_context *ctx, seqmix_context_stats *stats) {
  static const char fn[] = "seqmix_context_stats_get";
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  if (!stats) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: stats is NULL", fn);
  *stats = ctx->stats;
  return SEQMIX_OK;
}
