/*
 * Tuning knobs: the registry, the public API, and the stored winners.
 *
 * Winners live in the cache directory as one entry per device identity
 * (backend, name, vendor, driver), a text payload:
 *   seqmix tuning 1
 *   device <identity>
 *   <knob name> <value>        (one line per knob that is not 0)
 * The entry's name hashes the identity and the payload repeats it in full, so a
 * collision or a foreign file reads as "no winners". A knob name this version
 * does not know, or a value outside the knob's candidates, is skipped with a
 * log line: a stale file only costs speed, never a wrong tile size.
 */
#include "core/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ANY_BACKEND = -1 };

const sm_knob_info sm_knobs[SM_KNOB_COUNT] = {
    [SM_KNOB_CPU_ATTN_Q_ROWS] = {"attention.q_rows", "attention", SEQMIX_BACKEND_CPU,
                                 {0, 32, 64, 128, 256},
                                 "most query rows a prefill task owns (each transposed K block "
                                 "serves them all)"},
    [SM_KNOB_CPU_ATTN_KV_TOKENS] = {"attention.decode_keys", "attention", SEQMIX_BACKEND_CPU,
                                    {0, 8, 16, 32, 64},
                                    "keys per block of the decode walk over all k heads"},
    [SM_KNOB_CPU_SSM_CHUNK] = {"ssm.chunk", "ssd,linattn", SEQMIX_BACKEND_CPU, {0, 32, 64, 128},
                               "tokens per chunk of the SSD / linear-attention chunkwise engine "
                               "when the call gives no chunk_size"},
    [SM_KNOB_VK_CONV1D_WORKGROUP] = {"conv1d.workgroup", "conv1d", SEQMIX_BACKEND_VULKAN,
                                     {0, 32, 64, 128, 256}, "invocations per work-group"},
    [SM_KNOB_VK_CONV1D_TOKENS] = {"conv1d.tokens", "conv1d", SEQMIX_BACKEND_VULKAN,
                                  {0, 4, 16, 64, 256}, "tokens per invocation"},
    [SM_KNOB_VK_ATTN_SPLIT_TARGET] = {"attention.split_target", "attention", SEQMIX_BACKEND_VULKAN,
                                      {0, 8, 32, 128, 512, 2048},
                                      "work-groups a call should fill before keys stop being "
                                      "split (decode)"},
    [SM_KNOB_VK_SSM_CHUNK] = {"ssm.chunk", "ssd,linattn", SEQMIX_BACKEND_VULKAN, {0, 16, 32, 64, 128},
                              "tokens per chunk of the chunkwise SSD / linear attention when "
                              "the call gives no chunk_size"},
    [SM_KNOB_CL_ATTN_GROUPS_PER_UNIT] = {"attention.groups_per_unit", "attention",
                                         SEQMIX_BACKEND_OPENCL, {0, 1, 2, 4, 8, 16},
                                         "work-groups per compute unit the key split aims for "
                                         "(launch sizes only: offline binaries still match)"},
    [SM_KNOB_LONG_CONV_CROSSOVER] = {"longconv.crossover", "longconv", ANY_BACKEND,
                                     {0, 25, 50, 200, 400, 800},
                                     "AUTO takes the FFT when the cost model's direct/FFT time "
                                     "exceeds value/100 (0: 100)"},
};

static bool knob_applies(const seqmix_context *ctx, int k) {
  return sm_knobs[k].backend == ANY_BACKEND || sm_knobs[k].backend == (int)ctx->info.backend;
}

static int candidate_count(int k) {
  int n = 1; /* 0 is always first */
  while (n < 8 && sm_knobs[k].candidates[n]) ++n;
  return n;
}

static bool is_candidate(int k, int64_t value) {
  for (int i = 0; i < candidate_count(k); ++i)
    if (sm_knobs[k].candidates[i] == value) return true;
  return false;
}

/* The knob of this context's backend called name, or -1. */
static int find_knob(const seqmix_context *ctx, const char *name) {
  for (int k = 0; k < SM_KNOB_COUNT; ++k)
    if (knob_applies(ctx, k) && !strcmp(sm_knobs[k].name, name)) return k;
  return -1;
}

static void identity(const seqmix_context *ctx, char *buf, size_t size) {
  snprintf(buf, size, "%s | %s | %s | %s", seqmix_backend_name(ctx->info.backend), ctx->info.name,
           ctx->info.vendor, ctx->info.driver);
}

static void entry_name(const char *ident, char *buf, size_t size) {
  snprintf(buf, size, "tuning-%016" PRIx64 ".txt", sm_hash64(ident, strlen(ident), 0x7475));
}

void sm_tuning_load(seqmix_context *ctx) {
  memset(&ctx->tuning, 0, sizeof ctx->tuning);
  char ident[700], name[64], header[800];
  identity(ctx, ident, sizeof ident);
  entry_name(ident, name, sizeof name);
  void *data;
  size_t size;
  if (!sm_cache_load(ctx->cache_dir, name, &data, &size)) return;
  char *text = realloc(data, size + 1);
  if (!text) {
    free(data);
    return;
  }
  text[size] = '\0';
  snprintf(header, sizeof header, "seqmix tuning 1\ndevice %s\n", ident);
  if (strncmp(text, header, strlen(header)) != 0) {
    sm_log(SEQMIX_LOG_INFO, "tuning: %s/%s belongs to another device or version; ignored",
           ctx->cache_dir, name);
    free(text);
    return;
  }
  char *save = NULL;
  int loaded = 0;
  for (char *line = strtok_r(text + strlen(header), "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char knob[64];
    long long value;
    int k;
    if (sscanf(line, "%63s %lld", knob, &value) != 2 || (k = find_knob(ctx, knob)) < 0 ||
        !is_candidate(k, value)) {
      sm_log(SEQMIX_LOG_INFO, "tuning: skipping \"%s\" in %s/%s", line, ctx->cache_dir, name);
      continue;
    }
    ctx->tuning.value[k] = value;
    ++loaded;
  }
  free(text);
  sm_log(SEQMIX_LOG_INFO, "tuning: %d stored winner(s) for %s from %s/%s", loaded, ctx->info.id,
         ctx->cache_dir, name);
}

seqmix_status seqmix_tuning_count(const seqmix_context *ctx, int *count) {
  static const char fn[] = "seqmix_tuning_count";
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  if (!count) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: count is NULL", fn);
  *count = 0;
  for (int k = 0; k < SM_KNOB_COUNT; ++k) *count += knob_applies(ctx, k);
  return SEQMIX_OK;
}

seqmix_status seqmix_tuning_get(const seqmix_context *ctx, int index, seqmix_tuning_knob *knob) {
  static const char fn[] = "seqmix_tuning_get";
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  if (!knob) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: knob is NULL", fn);
  int count;
  seqmix_tuning_count(ctx, &count);
  if (index < 0 || index >= count)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: index is %d; it must be in [0, %d) (seqmix_tuning_count)", fn, index,
                   count);
  for (int k = 0, i = 0; k < SM_KNOB_COUNT; ++k) {
    if (!knob_applies(ctx, k) || i++ != index) continue;
    *knob = (seqmix_tuning_knob){.name = sm_knobs[k].name,
                                 .op = sm_knobs[k].bench_op,
                                 .description = sm_knobs[k].what,
                                 .value = ctx->tuning.value[k],
                                 .candidate_count = candidate_count(k)};
    memcpy(knob->candidates, sm_knobs[k].candidates, sizeof knob->candidates);
    break;
  }
  return SEQMIX_OK;
}

seqmix_status seqmix_tuning_set(seqmix_context *ctx, const char *name, int64_t value) {
  static const char fn[] = "seqmix_tuning_set";
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  if (!name) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: name is NULL", fn);
  int k = find_knob(ctx, name);
  if (k < 0)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: name \"%s\" is not a knob of %s (see seqmix_tuning_get)", fn, name,
                   ctx->info.id);
  if (!is_candidate(k, value)) {
    char list[160] = "";
    for (int i = 0; i < candidate_count(k); ++i)
      snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? ", " : "",
               (long long)sm_knobs[k].candidates[i]);
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: value %lld for %s must be one of: %s", fn,
                   (long long)value, name, list);
  }
  ctx->tuning.value[k] = value;
  return SEQMIX_OK;
}

seqmix_status seqmix_tuning_save(seqmix_context *ctx) {
  static const char fn[] = "seqmix_tuning_save";
  if (!ctx) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: ctx is NULL", fn);
  char ident[700], name[64];
  identity(ctx, ident, sizeof ident);
  entry_name(ident, name, sizeof name);
  char text[4096];
  size_t n = (size_t)snprintf(text, sizeof text, "seqmix tuning 1\ndevice %s\n", ident);
  for (int k = 0; k < SM_KNOB_COUNT && n < sizeof text; ++k)
    if (knob_applies(ctx, k) && ctx->tuning.value[k])
      n += (size_t)snprintf(text + n, sizeof text - n, "%s %lld\n", sm_knobs[k].name,
                            (long long)ctx->tuning.value[k]);
  if (n >= sizeof text) return sm_fail(SEQMIX_ERROR_BACKEND, "%s: too many knobs", fn);
  sm_cache_store(ctx->cache_dir, name, text, n);
  /* The store only logs failures: read it back to know. */
  void *back; /* NULL unless loaded */
  size_t size;
  bool ok = sm_cache_load(ctx->cache_dir, name, &back, &size) && size == n && !memcmp(back, text, n);
  free(back);
  if (!ok)
    return sm_fail(SEQMIX_ERROR_IO, "%s: cannot store the winners in %s/%s", fn, ctx->cache_dir,
                   name);
  sm_log(SEQMIX_LOG_INFO, "tuning: stored %s/%s", ctx->cache_dir, name);
  return SEQMIX_OK;
}
