/* Devices and backends: required backends present, `auto` rules, visible CPU
 * fallback, caches that only ever cost speed. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* ---- Cache files: the format DESIGN.md section 7 gives (src/core/cache.c) ----
 * magic "SEQMIXC1", u64 payload size, u64 FNV-1a hash of the payload, payload. */

static uint64_t fnv1a(const unsigned char *p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static unsigned char *read_all(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  *size = (size_t)ftell(f);
  rewind(f);
  unsigned char *data = malloc(*size + 1);
  ck_assert_ptr_nonnull(data);
  ck_assert_uint_eq(fread(data, 1, *size, f), *size);
  fclose(f);
  return data;
}

static void write_all(const char *path, const unsigned char *data, size_t size) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, size, f), size);
  fclose(f);
}

/* Whether the file is a whole, valid cache entry. */
static bool cache_file_valid(const char *path) {
  size_t size;
  unsigned char *d = read_all(path, &size);
  uint64_t header[2] = {0, 0};
  bool ok = size >= 24 && !memcmp(d, "SEQMIXC1", 8);
  if (ok) memcpy(header, d + 8, 16);
  ok = ok && header[0] == size - 24 && header[1] == fnv1a(d + 24, size - 24);
  free(d);
  return ok;
}

/* The cache files in dir (no temporaries), up to max. */
static int cache_files(const char *dir, char names[][256], int max) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max)
    if (e->d_name[0] != '.' && !strstr(e->d_name, ".tmp.")) snprintf(names[n++], 256, "%s", e->d_name);
  closedir(d);
  return n;
}

static void run_with_cache(const char *id, const char *dir) {
  seqmix_context_options o = {.device = id, .cache_dir = dir};
  seqmix_context *ctx = NULL;
  th_ok(seqmix_context_create(&o, &ctx));
  conv1d_smoke(ctx, id);
  th_context_done(ctx);
}

/* Truncated inside the payload, then valid files whose key names another
 * seqmix version or device: each is detected, the op is correct, and the file
 * is rebuilt and rewritten whole. */
START_TEST(truncated_or_foreign_cache_files_are_rebuilt) {
  char dir[] = "/tmp/seqmix-cache-test-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const char *id = th_device_id(_i);
  run_with_cache(id, dir);
  char names[32][256], path[320];
  const int n = cache_files(dir, names, 32);
  for (int round = 0; round < 2; ++round) {
    unsigned char *original[32];
    size_t sizes[32];
    for (int f = 0; f < n; ++f) {
      snprintf(path, sizeof path, "%s/%.255s", dir, names[f]);
      original[f] = read_all(path, &sizes[f]);
      ck_assert_msg(sizes[f] > 40, "%s: cache file %s too short to damage", id, names[f]);
      if (round == 0) {
        write_all(path, original[f], 24 + (sizes[f] - 24) / 2); /* header intact, payload cut */
      } else {
        /* A valid file whose key differs at byte 10 of the payload: the key's
         * version text (OpenCL) or the vendor id (Vulkan pipeline cache). */
        unsigned char *forged = malloc(sizes[f]);
        memcpy(forged, original[f], sizes[f]);
        forged[24 + 10] ^= 0x5a;
        const uint64_t header[2] = {sizes[f] - 24, fnv1a(forged + 24, sizes[f] - 24)};
        memcpy(forged + 8, header, 16);
        write_all(path, forged, sizes[f]);
        free(forged);
      }
    }
    run_with_cache(id, dir);
    for (int f = 0; f < n; ++f) {
      snprintf(path, sizeof path, "%s/%.255s", dir, names[f]);
      ck_assert_msg(cache_file_valid(path), "%s: %s was not rewritten whole (round %d)", id,
                    names[f], round);
      size_t size;
      unsigned char *now = read_all(path, &size);
      ck_assert_msg(size > 34 && now[24 + 10] == original[f][24 + 10],
                    "%s: %s still holds the foreign key (round %d)", id, names[f], round);
      free(now);
      free(original[f]);
    }
  }
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The child processes of two_processes_fill_one_cache_without_corrupting_it
 * (exec'd, not forked, so no driver state crosses the fork): run conv1d on the
 * device with the cache; exit 0 if correct, 1 if not, 2 if a cache file was
 * rejected or (mode "reuse") a program was built from source. */
static int cache_rejections, source_builds;
static void count_cache_messages(seqmix_log_level level, const char *message, void *user) {
  (void)level, (void)user;
  if (strstr(message, "damaged or foreign") || strstr(message, "for another")) cache_rejections++;
  if (strstr(message, "built from source")) source_builds++;
}

static int cache_child(const char *mode, const char *id, const char *dir) {
  seqmix_set_log_callback(count_cache_messages, NULL);
  seqmix_context_options o = {.device = id, .cache_dir = dir};
  seqmix_context *ctx = NULL;
  if (seqmix_context_create(&o, &ctx)) return 1;
  const int64_t xs[] = {1, 17, 3}, ws[] = {3, 4};
  float x[51], w[12], y[51];
  for (int i = 0; i < 51; ++i) x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
  for (int i = 0; i < 12; ++i) w[i] = (float)((i * 11) % 7) / 4.0f - 0.8f;
  double rx[51], rw[12], ry[51];
  for (int i = 0; i < 51; ++i) rx[i] = x[i];
  for (int i = 0; i < 12; ++i) rw[i] = w[i];
  seqmix_tensor *tx = NULL, *tw = NULL, *ty = NULL;
  int rc = 1;
  if (seqmix_tensor_create(ctx, SEQMIX_F32, 3, xs, &tx) || seqmix_tensor_create(ctx, SEQMIX_F32, 2, ws, &tw) ||
      seqmix_tensor_create(ctx, SEQMIX_F32, 3, xs, &ty) || seqmix_tensor_write(tx, x, sizeof x) ||
      seqmix_tensor_write(tw, w, sizeof w))
    goto done;
  for (int rep = 0; rep < 3; ++rep)
    if (seqmix_conv1d_causal(ctx, tx, tw, NULL, NULL, ty, NULL) || seqmix_tensor_read(ty, y, sizeof y))
      goto done;
  if (seqmix_reference_conv1d_causal(1, 17, 3, 4, rx, rw, NULL, NULL, ry, NULL)) goto done;
  double num = 0, den = 0;
  for (int i = 0; i < 51; ++i) num += (y[i] - ry[i]) * (y[i] - ry[i]), den += ry[i] * ry[i];
  rc = num <= 1e-10 * den ? 0 : 1;
done:
  seqmix_context_destroy(ctx);
  if (!rc && (cache_rejections || (!strcmp(mode, "reuse") && source_builds))) {
    fprintf(stderr, "%s: %d cache files rejected, %d programs built from source\n", id,
            cache_rejections, source_builds);
    rc = 2;
  }
  return rc;
}

static pid_t spawn_child(const char *mode, const char *id, const char *dir) {
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    /* This test program again; through the exe wrapper (qemu-user) when meson
     * runs a cross build's tests under one ($MESON_EXE_WRAPPER). */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) _exit(126);
    self[n] = '\0';
    char wrapper[1024] = "", *argv[16];
    int argc = 0;
    const char *env = getenv("MESON_EXE_WRAPPER");
    if (env) snprintf(wrapper, sizeof wrapper, "%s", env);
    for (char *save = NULL, *w = strtok_r(wrapper, " ", &save); w && argc < 10;
         w = strtok_r(NULL, " ", &save))
      argv[argc++] = w;
    argv[argc++] = self;
    argv[argc++] = "--cache-child";
    argv[argc++] = (char *)mode;
    argv[argc++] = (char *)id;
    argv[argc++] = (char *)dir;
    argv[argc] = NULL;
    execvp(argv[0], argv);
    _exit(127);
  }
  return pid;
}

static int wait_child(pid_t pid) {
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Two processes fill one empty cache directory at once; a third then finds
 * every file valid, rebuilds nothing and computes the right result. */
START_TEST(two_processes_fill_one_cache_without_corrupting_it) {
  char dir[] = "/tmp/seqmix-cache-test-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const char *id = th_device_id(_i);
  pid_t a = spawn_child("fill", id, dir), b = spawn_child("fill", id, dir);
  ck_assert_msg(wait_child(a) == 0, "%s: first filling process failed", id);
  ck_assert_msg(wait_child(b) == 0, "%s: second filling process failed", id);
  char names[32][256], path[320];
  const int n = cache_files(dir, names, 32);
  for (int f = 0; f < n; ++f) {
    snprintf(path, sizeof path, "%s/%.255s", dir, names[f]);
    ck_assert_msg(cache_file_valid(path), "%s: %s is damaged", id, names[f]);
  }
  const int rc = wait_child(spawn_child("reuse", id, dir));
  ck_assert_msg(rc == 0, "%s: the process reusing the cache %s", id,
                rc == 2 ? "rejected a file or rebuilt a program" : "failed");
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "--cache-child")) return cache_child(argv[2], argv[3], argv[4]);
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
  tcase_add_loop_test(dev, truncated_or_foreign_cache_files_are_rebuilt, 0, n);
  tcase_add_loop_test(dev, two_processes_fill_one_cache_without_corrupting_it, 0, n);
  suite_add_tcase(s, dev);
  return th_run_suite(s);
}
