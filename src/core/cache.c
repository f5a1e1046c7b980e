/*
 * The on-disk cache (DESIGN.md section 7). Each entry is one file:
 *   magic "SEQMIXC1", u64 payload size, u64 payload hash, payload.
 * Written to a unique temporary name and renamed, so readers never see a
 * partial file and two processes filling the cache at once do not corrupt it.
 * A file with a bad header, size or hash reads as absent (and is rewritten by
 * the next store). An unwritable directory only costs speed.
 *
 * seqmix_compile_binaries (offline kernel binaries, DESIGN.md section 7) is
 * here too: it resolves its options and hands the device's backend the work.
 */
#include "core/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char cache_magic[8] = {'S', 'E', 'Q', 'M', 'I', 'X', 'C', '1'};

uint64_t sm_hash64(const void *data, size_t size, uint64_t seed) {
  /* FNV-1a, 64 bit: cache keys and integrity, not security. */
  const unsigned char *p = data;
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static bool make_dirs(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1; *p; ++p) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return false;
    *p = '/';
  }
  return mkdir(path, 0755) == 0 || errno == EEXIST;
}

sm_cache_result sm_cache_read(const char *dir, const char *name, void **data, size_t *size) {
  char path[1280];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  *data = NULL;
  *size = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return SM_CACHE_MISSING;
  char magic[8];
  uint64_t header[2];
  void *payload = NULL;
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, cache_magic, 8) != 0) goto bad;
  if (fread(header, sizeof header[0], 2, f) != 2) goto bad;
  if (header[0] > ((uint64_t)1 << 31)) goto bad;
  payload = malloc(header[0] ? (size_t)header[0] : 1);
  if (!payload) goto bad;
  if (fread(payload, 1, (size_t)header[0], f) != header[0]) goto bad; /* truncated */
  if (fgetc(f) != EOF) goto bad; /* trailing bytes: not a file we wrote */
  if (sm_hash64(payload, (size_t)header[0], 0) != header[1]) goto bad;
  fclose(f);
  *data = payload;
  *size = (size_t)header[0];
  return SM_CACHE_OK;
bad:
  sm_log(SEQMIX_LOG_INFO, "cache: ignoring damaged or foreign file %s", path);
  free(payload);
  fclose(f);
  return SM_CACHE_DAMAGED;
}

bool sm_cache_load(const char *dir, const char *name, void **data, size_t *size) {
  return sm_cache_read(dir, name, data, size) == SM_CACHE_OK;
}

bool sm_cache_store(const char *dir, const char *name, const void *data, size_t size) {
  char path[1280], tmp[1400];
  if (!make_dirs(dir)) {
    sm_log(SEQMIX_LOG_INFO, "cache: cannot create %s: %s", dir, strerror(errno));
    return false;
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%lx", path, (long)getpid(),
           (unsigned long)(uintptr_t)&tmp);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    sm_log(SEQMIX_LOG_INFO, "cache: cannot write %s: %s", tmp, strerror(errno));
    return false;
  }
  uint64_t header[2] = {size, sm_hash64(data, size, 0)};
  bool ok = fwrite(cache_magic, 1, 8, f) == 8 && fwrite(header, sizeof header[0], 2, f) == 2 &&
            fwrite(data, 1, size, f) == size;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    sm_log(SEQMIX_LOG_INFO, "cache: cannot store %s", path);
    remove(tmp);
    return false;
  }
  return true;
}

/* ---- Offline binaries ------------------------------------------------------------ */

seqmix_status seqmix_compile_binaries(seqmix_context *ctx, const char *dir,
                                      const seqmix_compile_options *options,
                                      seqmix_compile_summary *summary) {
  static const char *const fn = "seqmix_compile_binaries";
  static const int32_t default_head_dims[] = {64, 128}, default_state_sizes[] = {16, 64, 128};
  seqmix_compile_summary ignored;
  if (!summary) summary = &ignored;
  memset(summary, 0, sizeof *summary);
  seqmix_status st = sm_check_context(fn, ctx);
  if (st) return st;
  if (!dir || !*dir)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: dir is NULL or empty; name a directory",
                   fn);
  seqmix_compile_options o = {0};
  if (options) o = *options;
  if (o.dtypes & ~((1u << SEQMIX_F32) | (1u << SEQMIX_F16) | (1u << SEQMIX_BF16)))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: options->dtypes has bits other than F32, F16 and BF16", fn);
  if (!o.dtypes) o.dtypes = (1u << SEQMIX_F32) | (1u << SEQMIX_F16) | (1u << SEQMIX_BF16);
  const struct {
    const char *name;
    const int32_t **list;
    int *count;
    const int32_t *fallback;
    int fallback_count;
  } lists[] = {
      {"head_dims", &o.head_dims, &o.head_dim_count, default_head_dims, 2},
      {"state_sizes", &o.state_sizes, &o.state_size_count, default_state_sizes, 3},
      {"chunk_sizes", &o.chunk_sizes, &o.chunk_size_count, NULL, 0},
  };
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; ++i) {
    if (!*lists[i].list) {
      *lists[i].list = lists[i].fallback;
      *lists[i].count = lists[i].fallback_count;
      continue;
    }
    if (*lists[i].count < 0)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: options->%s_count is negative", fn,
                     lists[i].name);
    for (int k = 0; k < *lists[i].count; ++k)
      if ((*lists[i].list)[k] < 1 || (*lists[i].list)[k] > 4096)
        return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                       "%s: options->%s[%d] is %d; sizes are 1 to 4096", fn, lists[i].name, k,
                       (int)(*lists[i].list)[k]);
  }
  if (!ctx->backend->compile_binaries)
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED,
                   "%s: ctx is on %s (%s backend), which has no offline binaries; name an OpenCL "
                   "device (opencl:N)",
                   fn, ctx->info.id, ctx->backend->name);
  return ctx->backend->compile_binaries(ctx->device, dir, &o, summary);
}
