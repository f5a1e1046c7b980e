#include "helpers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dlfcn.h>

/* Keep lavapipe loaded until exit so LeakSanitizer can name its frames. */
__attribute__((constructor)) static void keep_lavapipe_loaded(void) {
  (void)dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
}

static char ids[64][32];
static int id_count = -1;
static int validation_messages, fallback_warnings;

static void count_validation(seqmix_log_level level, const char *message, void *user) {
  (void)user;
  if (!strncmp(message, "vulkan validation", 17)) {
    validation_messages++;
    fprintf(stderr, "VALIDATION: %s\n", message);
  } else if (level >= SEQMIX_LOG_WARNING) {
    if (strstr(message, "CPU fallback")) fallback_warnings++;
    fprintf(stderr, "seqmix: %s\n", message);
  }
}

/* One entry of $SEQMIX_TEST_DEVICES: a device id ("opencl:1"), or BACKEND/TEXT
 * for every device of that backend whose name, vendor or driver contains TEXT
 * ("opencl/rusticl"), which does not depend on the order the ICD loader lists
 * platforms in. */
static bool entry_matches(const char *entry, const seqmix_device_info *info) {
  const char *slash = strchr(entry, '/');
  if (!slash) return !strcmp(entry, info->id);
  const char *backend = seqmix_backend_name(info->backend);
  if (strlen(backend) != (size_t)(slash - entry) || strncmp(entry, backend, strlen(backend)))
    return false;
  const char *text = slash + 1;
  return strstr(info->name, text) || strstr(info->vendor, text) || strstr(info->driver, text);
}

/* $SEQMIX_TEST_CPU_ISA (CI: "neon" under qemu): the SIMD level the CPU device
 * must report (its driver string ends with it), so a suite cannot pass on the
 * scalar kernels by mistake. $SEQMIX_CPU_ISA, where set, is what it must report
 * instead. Exits 1 otherwise. */
static void check_cpu_isa(void) {
  const char *want = getenv("SEQMIX_CPU_ISA");
  if (!want || !*want) want = getenv("SEQMIX_TEST_CPU_ISA");
  if (!want || !*want) return;
  seqmix_device_info cpu;
  if (seqmix_device_info_get(0, &cpu) != SEQMIX_OK) {
    fprintf(stderr, "seqmix_device_info_get(0): %s\n", seqmix_last_error());
    exit(1);
  }
  const size_t n = strlen(cpu.driver), w = strlen(want);
  if (n <= w || strcmp(cpu.driver + n - w, want) || cpu.driver[n - w - 1] != ' ') {
    fprintf(stderr, "the CPU device runs \"%s\", not the %s kernels the test asks for\n",
            cpu.driver, want);
    exit(1);
  }
}

/* Every entry of $SEQMIX_TEST_DEVICES must match a device: a device CI asks for
 * that is missing fails the suite (exit 1) instead of leaving it nothing to test. */
static void load_devices(void) {
  if (id_count >= 0) return;
  seqmix_set_log_callback(count_validation, NULL);
  id_count = 0;
  const char *want = getenv("SEQMIX_TEST_DEVICES");
  char list[1024] = "";
  char *entries[64];
  bool matched[64] = {false};
  int entry_count = 0;
  if (want && *want) {
    snprintf(list, sizeof list, "%s", want);
    for (char *e = strtok(list, ","); e && entry_count < 64; e = strtok(NULL, ","))
      entries[entry_count++] = e;
  }
  size_t n = 0;
  if (seqmix_device_count(&n) != SEQMIX_OK) {
    fprintf(stderr, "seqmix_device_count: %s\n", seqmix_last_error());
    exit(1);
  }
  for (size_t i = 0; i < n && id_count < 64; ++i) {
    seqmix_device_info info;
    if (seqmix_device_info_get(i, &info) != SEQMIX_OK) continue;
    bool take = entry_count == 0;
    for (int e = 0; e < entry_count; ++e)
      if (entry_matches(entries[e], &info)) take = matched[e] = true;
    if (take) snprintf(ids[id_count++], sizeof ids[0], "%s", info.id);
  }
  check_cpu_isa();
  for (int e = 0; e < entry_count; ++e)
    if (!matched[e]) {
      fprintf(stderr, "SEQMIX_TEST_DEVICES names %s but no listed device matches it\n",
              entries[e]);
      exit(1);
    }
}

int th_device_count(void) {
  load_devices();
  return id_count;
}

const char *th_device_id(int index) {
  load_devices();
  return ids[index];
}

seqmix_context *th_context(int index) {
  load_devices();
  seqmix_context_options options = {0};
  options.device = ids[index];
  seqmix_context *ctx = NULL;
  seqmix_status st = seqmix_context_create(&options, &ctx);
  ck_assert_msg(st == SEQMIX_OK, "context on %s: %s", ids[index], seqmix_last_error());
  validation_messages = 0;
  fallback_warnings = 0;
  return ctx;
}

void th_context_done(seqmix_context *ctx) {
  seqmix_device_info info;
  seqmix_context_device(ctx, &info);
  seqmix_context_destroy(ctx);
  ck_assert_msg(validation_messages == 0, "%d Vulkan validation messages on %s",
                validation_messages, info.id);
}

int th_fallback_warnings(void) { return fallback_warnings; }

uint64_t th_seed(void) {
  static uint64_t seed;
  if (!seed) {
    const char *env = getenv("SEQMIX_TEST_SEED");
    seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
  }
  return seed;
}

th_rng th_rng_make(uint64_t salt) {
  th_rng rng = {th_seed() ^ (salt * 0x9e3779b97f4a7c15ull)};
  if (!rng.state) rng.state = 1;
  return rng;
}

float th_uniform(th_rng *rng, float lo, float hi) {
  /* xorshift64*: fast, good enough for test data. */
  rng->state ^= rng->state >> 12;
  rng->state ^= rng->state << 25;
  rng->state ^= rng->state >> 27;
  uint64_t r = rng->state * 2685821657736338717ull;
  return lo + (hi - lo) * (float)((r >> 40) * (1.0 / 16777216.0));
}

void th_fill(th_rng *rng, float *data, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; ++i) data[i] = th_uniform(rng, lo, hi);
}

static size_t numel(int rank, const int64_t *shape) {
  size_t n = 1;
  for (int i = 0; i < rank; ++i) n *= (size_t)shape[i];
  return n;
}

static void poison_or_write(seqmix_tensor *t, float *data, size_t n) {
  if (data) {
    th_ok(seqmix_tensor_write_f32(t, data, n));
    th_ok(seqmix_tensor_read_f32(t, data, n)); /* data now holds the stored values */
  } else {
    float *nan = malloc(n * sizeof *nan);
    for (size_t i = 0; i < n; ++i) nan[i] = NAN;
    th_ok(seqmix_tensor_write_f32(t, nan, n));
    free(nan);
  }
}

seqmix_tensor *th_tensor(seqmix_context *ctx, seqmix_dtype dtype, int rank, const int64_t *shape,
                         float *data) {
  seqmix_tensor *t = NULL;
  th_ok(seqmix_tensor_create(ctx, dtype, rank, shape, &t));
  poison_or_write(t, data, numel(rank, shape));
  return t;
}

seqmix_tensor *th_padded_view(seqmix_context *ctx, seqmix_dtype dtype, int rank,
                              const int64_t *shape, const int64_t *pad, int64_t offset,
                              float *data, seqmix_tensor **base) {
  int64_t outer[SEQMIX_MAX_RANK], strides[SEQMIX_MAX_RANK];
  for (int i = 0; i < rank; ++i) outer[i] = shape[i] + pad[i];
  outer[0] += (offset + numel(rank - 1, outer + 1) - 1) / (int64_t)numel(rank - 1, outer + 1);
  *base = th_tensor(ctx, dtype, rank, outer, NULL);
  int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    strides[i] = stride;
    stride *= outer[i];
  }
  seqmix_tensor *view = NULL;
  th_ok(seqmix_tensor_view(*base, rank, shape, strides, offset, &view));
  poison_or_write(view, data, numel(rank, shape));
  return view;
}

float *th_read(const seqmix_tensor *t) {
  size_t n = (size_t)seqmix_tensor_numel(t);
  float *out = malloc(n * sizeof *out);
  ck_assert_ptr_nonnull(out);
  th_ok(seqmix_tensor_read_f32(t, out, n));
  return out;
}

double *th_to_double(const float *data, size_t n) {
  double *out = malloc((n ? n : 1) * sizeof *out);
  ck_assert_ptr_nonnull(out);
  for (size_t i = 0; i < n; ++i) out[i] = data[i];
  return out;
}

double th_rel_l2(const float *out, const double *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (isnan(out[i]) || isnan(ref[i])) return INFINITY;
    double d = (double)out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  if (den == 0) return num == 0 ? 0 : INFINITY;
  return sqrt(num / den);
}

double th_tolerance(seqmix_dtype dtype) {
  switch (dtype) {
  case SEQMIX_F16: return 3e-3;
  case SEQMIX_BF16: return 2e-2;
  default: return 1e-5;
  }
}

bool th_next_tuning_candidate(seqmix_context *ctx, const char *op, th_knob_iter *it) {
  int count;
  th_ok(seqmix_tuning_count(ctx, &count));
  for (; it->knob < count; ++it->knob, it->candidate = 0) {
    seqmix_tuning_knob kb;
    th_ok(seqmix_tuning_get(ctx, it->knob, &kb));
    if (!strstr(kb.op, op)) continue;
    if (it->candidate < kb.candidate_count) {
      th_ok(seqmix_tuning_set(ctx, kb.name, kb.candidates[it->candidate]));
      it->salt = (uint64_t)(it->knob * 10 + it->candidate);
      ++it->candidate;
      return true;
    }
    th_ok(seqmix_tuning_set(ctx, kb.name, 0));
  }
  return false;
}

int th_run_suite(Suite *suite) {
  SRunner *runner = srunner_create(suite);
  srunner_set_fork_status(runner, CK_NOFORK);
  srunner_run_all(runner, CK_NORMAL);
  int failed = srunner_ntests_failed(runner);
  srunner_free(runner);
  if (failed) fprintf(stderr, "seed: SEQMIX_TEST_SEED=%llu\n", (unsigned long long)th_seed());
  return failed ? 1 : 0;
}
