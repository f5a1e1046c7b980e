/* Devices and backends: required backends present, `auto` rules, visible CPU
 * fallback, caches that only ever cost speed. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

START_TEST(required_backends_have_devices) {
  const char *want = getenv("SEQMIX_REQUIRE_BACKENDS");
  if (!want || !*want) return; /* nothing required: the suite runs what exists */
  char list[256];
  snprintf(list, sizeof list, "%s", want);
  size_t n = 0;
  th_ok(seqmix_device_count(&n));
  for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
    bool found = false;
    for (size_t i = 0; i < n; ++i) {
      seqmix_device_info info;
      th_ok(seqmix_device_info_get(i, &info));
      if (!strcmp(seqmix_backend_name(info.backend), name)) found = true;
    }
    ck_assert_msg(found, "SEQMIX_REQUIRE_BACKENDS names %s but no %s device is listed", name, name);
  }
}
END_TEST

START_TEST(device_zero_is_the_cpu_and_ids_are_unique) {
  size_t n = 0;
  th_ok(seqmix_device_count(&n));
  ck_assert_uint_ge(n, 1);
  seqmix_device_info info;
  th_ok(seqmix_device_info_get(0, &info));
  ck_assert_str_eq(info.id, "cpu");
  ck_assert_int_eq(info.backend, SEQMIX_BACKEND_CPU);
  for (size_t i = 0; i < n; ++i) {
    seqmix_device_info a, b;
    th_ok(seqmix_device_info_get(i, &a));
    ck_assert_msg(a.name[0] != '\0', "device %zu has no name", i);
    ck_assert_uint_ge(a.max_workgroup_size, 1);
    for (size_t j = i + 1; j < n; ++j) {
      th_ok(seqmix_device_info_get(j, &b));
      ck_assert_str_ne(a.id, b.id);
    }
  }
}
END_TEST

START_TEST(auto_never_prefers_a_software_device_over_the_cpu) {
  size_t index = 99;
  th_ok(seqmix_device_auto(&index));
  seqmix_device_info info;
  th_ok(seqmix_device_info_get(index, &info));
  ck_assert_int_ne(info.kind, SEQMIX_DEVICE_SOFTWARE);
  seqmix_context_options o = {.device = "auto"};
  seqmix_context *ctx = NULL;
  th_ok(seqmix_context_create(&o, &ctx));
  seqmix_device_info got;
  th_ok(seqmix_context_device(ctx, &got));
  ck_assert_str_eq(got.id, info.id);
  seqmix_context_destroy(ctx);
}
END_TEST

/* Every device, with conv1d forced to the fallback: correct result, counted,
 * logged once. */
START_TEST(fallback_is_visible_counted_and_correct) {
  setenv("SEQMIX_FALLBACK_OPS", "conv1d_causal", 1);
  seqmix_context *ctx = th_context(_i);
  unsetenv("SEQMIX_FALLBACK_OPS");
  seqmix_device_info info;
  th_ok(seqmix_context_device(ctx, &info));
  const int64_t xs[] = {2, 9, 5}, ws[] = {5, 3}, ss[] = {2, 2, 5};
  th_rng rng = th_rng_make(7);
  float x[90], w[15], s[20];
  th_fill(&rng, x, 90, -1, 1);
  th_fill(&rng, w, 15, -1, 1);
  th_fill(&rng, s, 20, -1, 1);
  /* x is a view at an offset, so the fallback must copy the right span. */
  const int64_t pad[] = {0, 1, 2};
  seqmix_tensor *xb;
  seqmix_tensor *tx = th_padded_view(ctx, SEQMIX_F32, 3, xs, pad, 3, x, &xb);
  seqmix_tensor *tw = th_tensor(ctx, SEQMIX_F32, 2, ws, w), *ts = th_tensor(ctx, SEQMIX_F32, 3, ss, s);
  seqmix_tensor *ty = th_tensor(ctx, SEQMIX_F32, 3, xs, NULL);
  for (int rep = 0; rep < 2; ++rep) th_ok(seqmix_conv1d_causal(ctx, tx, tw, NULL, rep ? NULL : ts, ty, NULL));
  double *rx = th_to_double(x, 90), *rw = th_to_double(w, 15), *rs = th_to_double(s, 20), ry[90];
  th_ok(seqmix_reference_conv1d_causal(2, 9, 5, 3, rx, rw, NULL, NULL, ry, NULL));
  float *y = th_read(ty);
  ck_assert_msg(th_rel_l2(y, ry, 90) <= 1e-5, "%s: fallback result wrong", info.id);
  seqmix_context_stats stats;
  th_ok(seqmix_context_stats_get(ctx, &stats));
  bool on_cpu = info.backend == SEQMIX_BACKEND_CPU;
  ck_assert_uint_eq(stats.ops_on_fallback, on_cpu ? 0 : 2);
  ck_assert_uint_eq(stats.ops_on_device, on_cpu ? 2 : 0);
  ck_assert_int_eq(th_fallback_warnings(), on_cpu ? 0 : 1);
  free(y), free(rx), free(rw), free(rs);
  th_context_done(ctx);
}
END_TEST

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

static void conv1d_smoke(seqmix_context *ctx, const char *id) {
  const int64_t xs[] = {1, 17, 3}, ws[] = {3, 4};
  th_rng rng = th_rng_make(11);
  float x[51], w[12];
  th_fill(&rng, x, 51, -1, 1);
  th_fill(&rng, w, 12, -1, 1);
  seqmix_tensor *tx = th_tensor(ctx, SEQMIX_F32, 3, xs, x), *tw = th_tensor(ctx, SEQMIX_F32, 2, ws, w);
  seqmix_tensor *ty = th_tensor(ctx, SEQMIX_F32, 3, xs, NULL);
  th_ok(seqmix_conv1d_causal(ctx, tx, tw, NULL, NULL, ty, NULL));
  double *rx = th_to_double(x, 51), *rw = th_to_double(w, 12), ry[51];
  th_ok(seqmix_reference_conv1d_causal(1, 17, 3, 4, rx, rw, NULL, NULL, ry, NULL));
  float *y = th_read(ty);
  ck_assert_msg(th_rel_l2(y, ry, 51) <= 1e-5, "%s: wrong result with this cache", id);
  free(y), free(rx), free(rw);
}

/* A cache directory full of damaged files, then a fresh one, then one that
 * cannot be written: the op is correct every time. */
START_TEST(damaged_or_unwritable_cache_only_costs_speed) {
  char dir[] = "/tmp/seqmix-cache-test-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const char *id = th_device_id(_i);
  for (int round = 0; round < 3; ++round) {
    seqmix_context_options o = {.device = id, .cache_dir = dir};
    if (round == 2) o.cache_dir = "/proc/seqmix-cannot-write-here";
    seqmix_context *ctx = NULL;
    th_ok(seqmix_context_create(&o, &ctx));
    conv1d_smoke(ctx, id);
    th_context_done(ctx);
    if (round == 0) {
      /* Damage every file the first run wrote: truncate, or replace with junk. */
      char cmd[512];
      snprintf(cmd, sizeof cmd,
               "for f in %s/*; do [ -f \"$f\" ] && head -c 7 \"$f\" > \"$f.cut\" && mv \"$f.cut\" \"$f\"; done; true",
               dir);
      ck_assert_int_eq(system(cmd), 0);
      char junk[600];
      snprintf(junk, sizeof junk, "%s/junk", dir);
      write_file(junk, "not a cache file");
    }
  }
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("backends");
  TCase *tc = tcase_create("registry");
  tcase_add_test(tc, required_backends_have_devices);
  tcase_add_test(tc, device_zero_is_the_cpu_and_ids_are_unique);
  tcase_add_test(tc, auto_never_prefers_a_software_device_over_the_cpu);
  suite_add_tcase(s, tc);
  TCase *dev = tcase_create("every device");
  int n = th_device_count();
  tcase_add_loop_test(dev, fallback_is_visible_counted_and_correct, 0, n);
  tcase_add_loop_test(dev, damaged_or_unwritable_cache_only_costs_speed, 0, n);
  suite_add_tcase(s, dev);
  return th_run_suite(s);
}
