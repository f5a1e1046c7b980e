/* The device registry: every backend's devices, probed once, CPU first. */
#include "core/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const sm_backend *const backends[] = {
    &sm_cpu_backend,
#ifdef SEQMIX_HAVE_OPENCL
    &sm_opencl_backend,
#endif
#ifdef SEQMIX_HAVE_VULKAN
    &sm_vulkan_backend,
#endif
};
enum { BACKEND_COUNT = sizeof backends / sizeof backends[0] };

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static sm_device_entry *entries;
static const sm_backend **entry_backends;
static size_t entry_count;

static void probe_all(void) {
  for (size_t b = 0; b < BACKEND_COUNT; ++b) {
    sm_device_entry *found = NULL;
    size_t n = 0;
    seqmix_status st = backends[b]->probe(&found, &n);
    if (st) {
      sm_log(SEQMIX_LOG_WARNING, "%s backend unavailable: %s", backends[b]->name,
             seqmix_last_error());
      continue;
    }
    sm_device_entry *grown = realloc(entries, (entry_count + n) * sizeof *grown);
    const sm_backend **grown_b = realloc(entry_backends, (entry_count + n) * sizeof *grown_b);
    if (grown) entries = grown;
    if (grown_b) entry_backends = grown_b;
    if (!grown || !grown_b) {
      free(found);
      continue;
    }
    for (size_t i = 0; i < n; ++i) {
      sm_device_entry *e = &entries[entry_count];
      *e = found[i];
      e->info.backend = backends[b]->kind;
      if (backends[b]->kind == SEQMIX_BACKEND_CPU) snprintf(e->info.id, sizeof e->info.id, "cpu");
      else snprintf(e->info.id, sizeof e->info.id, "%s:%zu", backends[b]->name, i);
      entry_backends[entry_count++] = backends[b];
    }
    free(found);
  }
}

seqmix_status sm_registry_get(const sm_device_entry **out_entries,
                              const sm_backend ***out_backends, size_t *count) {
  pthread_once(&probe_once, probe_all);
  if (entry_count == 0 || entry_backends[0] != &sm_cpu_backend)
    return sm_fail(SEQMIX_ERROR_BACKEND, "device registry: the CPU backend failed to probe");
  *out_entries = entries;
  *out_backends = entry_backends;
  *count = entry_count;
  return SEQMIX_OK;
}

seqmix_status seqmix_device_count(size_t *count) {
  if (!count) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "seqmix_device_count: count is NULL");
  const sm_device_entry *e = NULL;
  const sm_backend **b = NULL;
  return sm_registry_get(&e, &b, count);
}

seqmix_status seqmix_device_info_get(size_t index, seqmix_device_info *info) {
  static const char fn[] = "seqmix_device_info_get";
  if (!info) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: info is NULL", fn);
  const sm_device_entry *e = NULL;
  const sm_backend **b = NULL;
  size_t n = 0;
  seqmix_status st = sm_registry_get(&e, &b, &n);
  if (st) return st;
  if (index >= n)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: index is %zu; there are %zu devices", fn,
                   index, n);
  *info = e[index].info;
  return SEQMIX_OK;
}

const char *seqmix_backend_name(seqmix_backend backend) {
  switch (backend) {
  case SEQMIX_BACKEND_CPU: return "cpu";
  case SEQMIX_BACKEND_OPENCL: return "opencl";
  case SEQMIX_BACKEND_VULKAN: return "vulkan";
  }
  return "unknown";
}

const char *seqmix_device_kind_name(seqmix_device_kind kind) {
  switch (kind) {
  case SEQMIX_DEVICE_CPU: return "cpu";
  case SEQMIX_DEVICE_INTEGRATED_GPU: return "integrated-gpu";
  case SEQMIX_DEVICE_DISCRETE_GPU: return "discrete-gpu";
  case SEQMIX_DEVICE_ACCELERATOR: return "accelerator";
  case SEQMIX_DEVICE_SOFTWARE: return "software";
  }
  return "unknown";
}

/* `auto`: discrete GPU > integrated GPU > accelerator > the native CPU path.
 * Software implementations are never chosen over the native CPU path. */
static int auto_rank(seqmix_device_kind kind) {
  switch (kind) {
  case SEQMIX_DEVICE_DISCRETE_GPU: return 4;
  case SEQMIX_DEVICE_INTEGRATED_GPU: return 3;
  case SEQMIX_DEVICE_ACCELERATOR: return 2;
  case SEQMIX_DEVICE_CPU: return 1;
  case SEQMIX_DEVICE_SOFTWARE: return 0;
  }
  return 0;
}

seqmix_status seqmix_device_auto(size_t *index) {
  if (!index) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "seqmix_device_auto: index is NULL");
  const sm_device_entry *e = NULL;
  const sm_backend **b = NULL;
  size_t n = 0;
  seqmix_status st = sm_registry_get(&e, &b, &n);
  if (st) return st;
  size_t best = 0; /* the native CPU path */
  for (size_t i = 1; i < n; ++i)
    if (auto_rank(e[i].info.kind) > auto_rank(e[best].info.kind)) best = i;
  *index = best;
  return SEQMIX_OK;
}
