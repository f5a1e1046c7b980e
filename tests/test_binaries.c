/* Offline OpenCL binaries (DESIGN.md section 7): `seqmix compile`'s code path
 * writes a binary of every variant, and a device that may not compile runs
 * every op from them, on the device, against the float64 reference; a missing
 * or damaged binary is a clear error that leaves the context usable. */
#include "helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The ops, each on small odd shapes, checked against the reference ---- */

enum { MAX_ALLOCS = 64 };
static void *allocs[MAX_ALLOCS];
static int alloc_count;

static void *keep(void *p) {
  ck_assert_ptr_nonnull(p);
  ck_assert_int_lt(alloc_count, MAX_ALLOCS);
  return allocs[alloc_count++] = p;
}

static void free_all(void) {
  while (alloc_count > 0) free(allocs[--alloc_count]);
}

static size_t numel(int rank, const int64_t *shape) {
  size_t n = 1;
  for (int i = 0; i < rank; ++i) n *= (size_t)shape[i];
  return n;
}

/* A random f32 input on the device and its float64 copy. */
static seqmix_tensor *input(seqmix_context *ctx, th_rng *rng, int rank, const int64_t *shape,
                            float lo, float hi, double **ref) {
  const size_t n = numel(rank, shape);
  float *host = keep(malloc(n * sizeof *host));
  th_fill(rng, host, n, lo, hi);
  seqmix_tensor *t = th_tensor(ctx, SEQMIX_F32, rank, shape, host);
  *ref = keep(th_to_double(host, n));
  return t;
}

/* A NaN-poisoned output. */
static seqmix_tensor *output(seqmix_context *ctx, int rank, const int64_t *shape, double **ref) {
  *ref = keep(calloc(numel(rank, shape), sizeof **ref));
  return th_tensor(ctx, SEQMIX_F32, rank, shape, NULL);
}

static double error_of(const seqmix_tensor *t, const double *ref) {
  float *y = th_read(t);
  const double e = th_rel_l2(y, ref, (size_t)seqmix_tensor_numel(t));
  free(y);
  return e;
}

typedef seqmix_status (*op_fn)(seqmix_context *ctx, double *err);

static seqmix_status op_conv1d(seqmix_context *ctx, double *err) {
  th_rng rng = th_rng_make(1);
  const int64_t xs[] = {2, 19, 37}, ws[] = {37, 4}, bs[] = {37}, ss[] = {2, 3, 37};
  double *x, *w, *b, *s, *y;
  seqmix_tensor *tx = input(ctx, &rng, 3, xs, -1, 1, &x), *tw = input(ctx, &rng, 2, ws, -1, 1, &w);
  seqmix_tensor *tb = input(ctx, &rng, 1, bs, -1, 1, &b), *ts = input(ctx, &rng, 3, ss, -1, 1, &s);
  seqmix_tensor *ty = output(ctx, 3, xs, &y);
  const seqmix_conv1d_params p = {.silu = true};
  seqmix_status st = seqmix_conv1d_causal(ctx, tx, tw, tb, ts, ty, &p);
  if (st) return st;
  th_ok(seqmix_reference_conv1d_causal(2, 19, 37, 4, x, w, b, s, y, &p));
  *err = error_of(ty, y);
  return SEQMIX_OK;
}

static seqmix_status op_attention(seqmix_context *ctx, double *err) {
  th_rng rng = th_rng_make(2);
  const int64_t qs[] = {2, 7, 4, 16}, ks[] = {2, 29, 2, 16};
  double *q, *k, *v, *o;
  seqmix_tensor *tq = input(ctx, &rng, 4, qs, -1, 1, &q), *tk = input(ctx, &rng, 4, ks, -1, 1, &k);
  seqmix_tensor *tv = input(ctx, &rng, 4, ks, -1, 1, &v), *to = output(ctx, 4, qs, &o);
  const seqmix_attention_params p = {.causal = true};
  seqmix_status st = seqmix_attention(ctx, tq, tk, tv, to, NULL, &p);
  if (st) return st;
  const seqmix_reference_attention_shape shape = {2, 7, 29, 4, 2, 16, 16, NULL, NULL, NULL};
  th_ok(seqmix_reference_attention(&shape, q, k, v, o, NULL, &p));
  *err = error_of(to, o);
  return SEQMIX_OK;
}

static seqmix_status op_selective_scan(seqmix_context *ctx, double *err) {
  th_rng rng = th_rng_make(3);
  const int64_t us[] = {2, 23, 12}, as[] = {12, 8}, bs[] = {2, 23, 2, 8}, ds[] = {12},
                ss[] = {2, 12, 8};
  double *u, *dl, *a, *b, *c, *d, *z, *s, *y;
  seqmix_tensor *tu = input(ctx, &rng, 3, us, -1, 1, &u), *tdl = input(ctx, &rng, 3, us, 0, 0.5f, &dl);
  seqmix_tensor *ta = input(ctx, &rng, 2, as, -2, -0.1f, &a), *tb = input(ctx, &rng, 4, bs, -1, 1, &b);
  seqmix_tensor *tc = input(ctx, &rng, 4, bs, -1, 1, &c), *td = input(ctx, &rng, 1, ds, -1, 1, &d);
  seqmix_tensor *tz = input(ctx, &rng, 3, us, -1, 1, &z), *ts = input(ctx, &rng, 3, ss, -1, 1, &s);
  seqmix_tensor *ty = output(ctx, 3, us, &y);
  const seqmix_selective_scan_params p = {.delta_softplus = true};
  seqmix_status st = seqmix_selective_scan(ctx, tu, tdl, ta, tb, tc, td, tz, NULL, ts, ty, &p);
  if (st) return st;
  th_ok(seqmix_reference_selective_scan(2, 23, 12, 8, 2, u, dl, a, b, c, d, z, NULL, s, y, &p));
  *err = error_of(ty, y);
  const double state_err = error_of(ts, s);
  if (state_err > *err) *err = state_err;
  return SEQMIX_OK;
}

static seqmix_status op_ssd(seqmix_context *ctx, double *err) {
  th_rng rng = th_rng_make(4);
  const int64_t xs[] = {1, 37, 2, 16}, dts[] = {1, 37, 2}, hs[] = {2}, bs[] = {1, 37, 1, 8},
                ss[] = {1, 2, 16, 8};
  double *x, *dt, *a, *b, *c, *s, *y;
  seqmix_tensor *tx = input(ctx, &rng, 4, xs, -1, 1, &x), *tdt = input(ctx, &rng, 3, dts, 0, 0.5f, &dt);
  seqmix_tensor *ta = input(ctx, &rng, 1, hs, -2, -0.1f, &a), *tb = input(ctx, &rng, 4, bs, -1, 1, &b);
  seqmix_tensor *tc = input(ctx, &rng, 4, bs, -1, 1, &c), *ts = input(ctx, &rng, 4, ss, -1, 1, &s);
  seqmix_tensor *ty = output(ctx, 4, xs, &y);
  seqmix_status st = seqmix_ssd(ctx, tx, tdt, ta, tb, tc, NULL, NULL, NULL, ts, ty, NULL);
  if (st) return st;
  th_ok(seqmix_reference_ssd(1, 37, 2, 16, 8, 1, x, dt, a, b, c, NULL, NULL, NULL, s, y, NULL));
  *err = error_of(ty, y);
  return SEQMIX_OK;
}

static seqmix_status op_linear_attention(seqmix_context *ctx, double *err) {
  th_rng rng = th_rng_make(5);
  const int64_t qs[] = {1, 3, 2, 16}, gs[] = {1, 3, 2};
  double *q, *k, *v, *g, *o;
  seqmix_tensor *tq = input(ctx, &rng, 4, qs, -1, 1, &q), *tk = input(ctx, &rng, 4, qs, -1, 1, &k);
  seqmix_tensor *tv = input(ctx, &rng, 4, qs, -1, 1, &v), *tg = input(ctx, &rng, 3, gs, -1, 0, &g);
  seqmix_tensor *to = output(ctx, 4, qs, &o);
  const seqmix_linear_attention_params p = {.decay = SEQMIX_DECAY_TOKEN};
  seqmix_status st = seqmix_linear_attention(ctx, tq, tk, tv, tg, NULL, to, &p);
  if (st) return st;
  th_ok(seqmix_reference_linear_attention(1, 3, 2, 16, 16, q, k, v, g, NULL, o, &p));
  *err = error_of(to, o);
  return SEQMIX_OK;
}

static seqmix_status op_conv2d(seqmix_context *ctx, double *err) {
  th_rng rng = th_rng_make(6);
  const int64_t xs[] = {1, 9, 11, 19}, ws[] = {3, 3, 19}, bs[] = {19};
  double *x, *w, *b, *y;
  seqmix_tensor *tx = input(ctx, &rng, 4, xs, -1, 1, &x), *tw = input(ctx, &rng, 3, ws, -1, 1, &w);
  seqmix_tensor *tb = input(ctx, &rng, 1, bs, -1, 1, &b), *ty = output(ctx, 4, xs, &y);
  const seqmix_conv2d_params p = {.pad_h = 1, .pad_w = 1};
  seqmix_status st = seqmix_conv2d_depthwise(ctx, tx, tw, tb, ty, &p);
  if (st) return st;
  th_ok(seqmix_reference_conv2d_depthwise(1, 9, 11, 19, 3, 3, x, w, b, y, &p));
  *err = error_of(ty, y);
  return SEQMIX_OK;
}

static seqmix_status long_conv(seqmix_context *ctx, seqmix_conv_method method, double *err) {
  th_rng rng = th_rng_make(7);
  const int64_t xs[] = {2, 41, 21}, hs[] = {21, 41}, ds[] = {21};
  double *x, *h, *d, *y;
  seqmix_tensor *tx = input(ctx, &rng, 3, xs, -1, 1, &x), *th = input(ctx, &rng, 2, hs, -1, 1, &h);
  seqmix_tensor *td = input(ctx, &rng, 1, ds, -1, 1, &d), *ty = output(ctx, 3, xs, &y);
  const seqmix_long_conv_params p = {.method = method};
  seqmix_status st = seqmix_long_conv(ctx, tx, th, td, ty, &p);
  if (st) return st;
  th_ok(seqmix_reference_long_conv(2, 41, 21, 41, x, h, d, y));
  *err = error_of(ty, y);
  return SEQMIX_OK;
}

static seqmix_status op_long_conv_direct(seqmix_context *ctx, double *err) {
  return long_conv(ctx, SEQMIX_CONV_DIRECT, err);
}

static seqmix_status op_long_conv_fft(seqmix_context *ctx, double *err) {
  return long_conv(ctx, SEQMIX_CONV_FFT, err);
}

static seqmix_status op_pool(seqmix_context *ctx, double *err) {
  th_rng rng = th_rng_make(8);
  const int64_t xs[] = {2, 7, 5, 18};
  double *x, *y;
  seqmix_tensor *tx = input(ctx, &rng, 4, xs, -1, 1, &x), *ty = output(ctx, 4, xs, &y);
  seqmix_status st = seqmix_pool_mixer(ctx, tx, ty, NULL);
  if (st) return st;
  th_ok(seqmix_reference_pool_mixer(2, 7, 5, 18, x, y, NULL));
  *err = error_of(ty, y);
  return SEQMIX_OK;
}

static const struct {
  const char *name;
  op_fn run;
} ops[] = {
    {"conv1d_causal", op_conv1d},         {"attention", op_attention},
    {"selective_scan", op_selective_scan}, {"ssd", op_ssd},
    {"linear_attention", op_linear_attention}, {"conv2d_depthwise", op_conv2d},
    {"long_conv direct", op_long_conv_direct}, {"long_conv fft", op_long_conv_fft},
    {"pool_mixer", op_pool},
};
enum { OP_COUNT = sizeof ops / sizeof ops[0] };

/* ---- Which variants the ops build (from the library's debug log) ---------- */

enum { MAX_VARIANTS = 256 };
typedef struct variant_set {
  char *items[MAX_VARIANTS]; /* "source [options]" */
  bool enumerated[MAX_VARIANTS];
  int count;
} variant_set;
static variant_set used;

static int find_variant(const variant_set *set, const char *item) {
  for (int i = 0; i < set->count; ++i)
    if (!strcmp(set->items[i], item)) return i;
  return -1;
}

/* "opencl backend: program conv1d.cl [-DACT=f32 ...] built from source in 5 ms" */
static void record_programs(seqmix_log_level level, const char *message, void *user) {
  (void)level, (void)user;
  const char *p = strstr(message, "opencl backend: program ");
  if (p) {
    p += strlen("opencl backend: program ");
    const char *end = strchr(p, ']');
    /* VkFFT's helper kernels (-DFFT) are not shipped: binary-only devices
     * run FFT calls with the direct kernel (long_conv.c). */
    if (end && !strstr(p, "-DFFT") && used.count < MAX_VARIANTS) {
      char item[512];
      snprintf(item, sizeof item, "%.*s", (int)(end + 1 - p), p);
      if (find_variant(&used, item) < 0) used.items[used.count++] = strdup(item);
    }
  } else if (level >= SEQMIX_LOG_WARNING) {
    fprintf(stderr, "seqmix: %s\n", message);
  }
}

static bool want_used(void *user, const char *source, const char *options) {
  (void)user;
  char item[512];
  snprintf(item, sizeof item, "%s [%s]", source, options);
  return find_variant(&used, item) >= 0;
}

static void mark_enumerated(void *user, const char *file, const char *source, const char *options,
                            seqmix_status status) {
  (void)file;
  char item[512];
  snprintf(item, sizeof item, "%s [%s]", source, options);
  const int i = find_variant(&used, item);
  if (i >= 0) used.enumerated[i] = true;
  size_t *written = user;
  if (i >= 0 && status == SEQMIX_OK) ++*written;
}

/* The PoCL device: the OpenCL device whose driver names it (the suite's
 * reference implementation of OpenCL). */
static const char *pocl_id(void) {
  static char id[32];
  size_t n = 0;
  th_ok(seqmix_device_count(&n));
  for (size_t i = 0; i < n; ++i) {
    seqmix_device_info info;
    th_ok(seqmix_device_info_get(i, &info));
    if (info.backend == SEQMIX_BACKEND_OPENCL && strstr(info.driver, "Portable Computing")) {
      snprintf(id, sizeof id, "%s", info.id);
      return id;
    }
  }
  return NULL;
}

static seqmix_context *context_on(const char *id, const char *cache_dir) {
  seqmix_context_options o = {.device = id, .cache_dir = cache_dir};
  seqmix_context *ctx = NULL;
  th_ok(seqmix_context_create(&o, &ctx));
  return ctx;
}

static void run_ops(seqmix_context *ctx, const char *mode) {
  seqmix_context_stats before, after;
  for (int i = 0; i < OP_COUNT; ++i) {
    double err = 1;
    th_ok(seqmix_context_stats_get(ctx, &before));
    seqmix_status st = ops[i].run(ctx, &err);
    ck_assert_msg(st == SEQMIX_OK, "%s (%s): %s: %s", ops[i].name, mode, seqmix_status_name(st),
                  seqmix_last_error());
    ck_assert_msg(err <= 1e-5, "%s (%s): rel err %g (seed %llu)", ops[i].name, mode, err,
                  (unsigned long long)th_seed());
    th_ok(seqmix_context_stats_get(ctx, &after));
    ck_assert_msg(after.ops_on_device == before.ops_on_device + 1 &&
                      after.ops_on_fallback == before.ops_on_fallback,
                  "%s (%s) did not run on the device", ops[i].name, mode);
    free_all();
  }
}

static char *make_temp_dir(const char *what) {
  char *dir = malloc(64);
  ck_assert_ptr_nonnull(dir);
  snprintf(dir, 64, "/tmp/seqmix-%s-XXXXXX", what);
  ck_assert_ptr_nonnull(mkdtemp(dir));
  return dir;
}

static void remove_dir(char *dir) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
  free(dir);
}

/* The file of the first variant whose options start with the text in user. */
static char found_file[128];
static void find_file(void *user, const char *file, const char *source, const char *options,
                      seqmix_status status) {
  (void)source, (void)status;
  if (!found_file[0] && strstr(options, (const char *)user) == options)
    snprintf(found_file, sizeof found_file, "%s", file);
}

START_TEST(ops_run_from_offline_binaries_with_compilation_forbidden) {
  const char *id = pocl_id();
  if (!id) {
    ck_assert_msg(!getenv("SEQMIX_REQUIRE_BACKENDS") || !strstr(getenv("SEQMIX_REQUIRE_BACKENDS"), "opencl"),
                  "SEQMIX_REQUIRE_BACKENDS names opencl but PoCL is not listed");
    return;
  }
  char *cache = make_temp_dir("cache"), *bins = make_temp_dir("binaries");
  unsetenv("SEQMIX_CL_FORBID_COMPILE");
  unsetenv("SEQMIX_CL_BINARY_DIR");
  seqmix_set_log_callback(record_programs, NULL);

  /* 1. The ops with an online compiler: which variants they build. */
  seqmix_context *ctx = context_on(id, cache);
  run_ops(ctx, "online");
  ck_assert_int_gt(used.count, 0);

  /* 2. seqmix compile's code path, for the sizes the ops use, building only
   * the variants they built (every other one is enumerated but skipped, to
   * keep the test short): the enumeration must name each of them. */
  const int32_t head_dims[] = {16}, state_sizes[] = {8};
  size_t written = 0;
  seqmix_compile_options co = {.dtypes = 1u << SEQMIX_F32,
                               .head_dims = head_dims,
                               .head_dim_count = 1,
                               .state_sizes = state_sizes,
                               .state_size_count = 1,
                               .want = want_used,
                               .on_variant = mark_enumerated,
                               .user = &written};
  seqmix_compile_summary summary;
  th_ok(seqmix_compile_binaries(ctx, bins, &co, &summary));
  for (int i = 0; i < used.count; ++i)
    ck_assert_msg(used.enumerated[i], "the ops built %s, which the enumeration does not name",
                  used.items[i]);
  ck_assert_uint_eq(written, (size_t)used.count);
  ck_assert_uint_eq(summary.written, (size_t)used.count);
  ck_assert_uint_eq(summary.failed, 0);
  ck_assert_uint_gt(summary.variants, summary.written); /* the rest were enumerated, skipped */
  /* The binary of a conv1d variant no op here uses (K = 5), for step 4. */
  co.dry_run = true, co.want = NULL, co.on_variant = find_file, co.user = "-DACT=f32 -DWEIGHT=f32 -DKSIZE=5 -DVEC=1 ";
  th_ok(seqmix_compile_binaries(ctx, bins, &co, &summary));
  ck_assert_msg(found_file[0], "no conv1d variant with KSIZE=5 enumerated");
  seqmix_context_destroy(ctx);

  /* 3. Compilation forbidden, kernels only from the directory: every op
   * correct, on the device (FFT long conv: the direct kernel stands in). */
  setenv("SEQMIX_CL_FORBID_COMPILE", "1", 1);
  setenv("SEQMIX_CL_BINARY_DIR", bins, 1);
  char *empty_cache = make_temp_dir("cache");
  ctx = context_on(id, empty_cache);
  run_ops(ctx, "binaries only");
  /* Compiling is refused there, with the reason. */
  co.dry_run = false, co.on_variant = NULL;
  th_fails(seqmix_compile_binaries(ctx, bins, &co, NULL), SEQMIX_ERROR_UNSUPPORTED,
           "no online compiler");

  /* 4. A variant without its binary: a clear error naming the file and the
   * variant; the context still runs what it has. */
  th_rng rng = th_rng_make(9);
  const int64_t xs[] = {1, 9, 3}, ws[] = {3, 5};
  double *x, *w, *y;
  seqmix_tensor *tx = input(ctx, &rng, 3, xs, -1, 1, &x), *tw = input(ctx, &rng, 2, ws, -1, 1, &w);
  seqmix_tensor *ty = output(ctx, 3, xs, &y);
  th_fails(seqmix_conv1d_causal(ctx, tx, tw, NULL, NULL, ty, NULL), SEQMIX_ERROR_IO, found_file);
  ck_assert_msg(strstr(seqmix_last_error(), "missing") && strstr(seqmix_last_error(), "conv1d.cl") &&
                    strstr(seqmix_last_error(), "-DKSIZE=5"),
                "the error does not name the variant: %s", seqmix_last_error());
  free_all();
  run_ops(ctx, "binaries only, after a missing binary");
  seqmix_context_destroy(ctx);

  /* 5. A damaged binary (truncated, then junk): reported, not crashed on. */
  for (int d = 0; d < 2; ++d) {
    /* The binary of the conv1d tail variant run_ops uses (named by a dry run). */
    found_file[0] = '\0';
    co.dry_run = true, co.on_variant = find_file, co.user = "-DACT=f32 -DWEIGHT=f32 -DBIAS=f32 -DHAS_STATE -DSILU -DKSIZE=4 -DVEC=1 ";
    unsetenv("SEQMIX_CL_FORBID_COMPILE");
    unsetenv("SEQMIX_CL_BINARY_DIR");
    ctx = context_on(id, empty_cache);
    th_ok(seqmix_compile_binaries(ctx, bins, &co, NULL));
    seqmix_context_destroy(ctx);
    char cmd[1024];
    if (d == 0)
      snprintf(cmd, sizeof cmd, "head -c 100 %s/%s > %s/cut && mv %s/cut %s/%s", bins, found_file,
               bins, bins, bins, found_file);
    else
      snprintf(cmd, sizeof cmd, "printf 'not a binary' > %s/%s", bins, found_file);
    ck_assert_int_eq(system(cmd), 0);
    setenv("SEQMIX_CL_FORBID_COMPILE", "1", 1);
    setenv("SEQMIX_CL_BINARY_DIR", bins, 1);
    ctx = context_on(id, empty_cache);
    double err;
    th_fails(op_conv1d(ctx, &err), SEQMIX_ERROR_IO, "damaged");
    ck_assert_msg(strstr(seqmix_last_error(), found_file), "%s", seqmix_last_error());
    free_all();
    double ok_err = 1;
    th_ok(op_pool(ctx, &ok_err)); /* still usable */
    ck_assert(ok_err <= 1e-5);
    free_all();
    seqmix_context_destroy(ctx);
  }

  unsetenv("SEQMIX_CL_FORBID_COMPILE");
  unsetenv("SEQMIX_CL_BINARY_DIR");
  seqmix_set_log_callback(NULL, NULL);
  for (int i = 0; i < used.count; ++i) free(used.items[i]);
  remove_dir(cache);
  remove_dir(bins);
  remove_dir(empty_cache);
}
END_TEST

/* Bad arguments: a clear error naming the argument and the rule. */
START_TEST(compile_rejects_bad_arguments_and_non_opencl_devices) {
  seqmix_context *ctx = context_on("cpu", NULL);
  th_fails(seqmix_compile_binaries(NULL, "/tmp/x", NULL, NULL), SEQMIX_ERROR_INVALID_ARGUMENT,
           "ctx");
  th_fails(seqmix_compile_binaries(ctx, NULL, NULL, NULL), SEQMIX_ERROR_INVALID_ARGUMENT, "dir");
  const int32_t bad[] = {0};
  seqmix_compile_options o = {.head_dims = bad, .head_dim_count = 1};
  th_fails(seqmix_compile_binaries(ctx, "/tmp/x", &o, NULL), SEQMIX_ERROR_INVALID_ARGUMENT,
           "head_dims[0]");
  o = (seqmix_compile_options){.dtypes = 1u << SEQMIX_I32};
  th_fails(seqmix_compile_binaries(ctx, "/tmp/x", &o, NULL), SEQMIX_ERROR_INVALID_ARGUMENT,
           "dtypes");
  th_fails(seqmix_compile_binaries(ctx, "/tmp/x", NULL, NULL), SEQMIX_ERROR_UNSUPPORTED,
           "opencl:N");
  seqmix_context_destroy(ctx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("binaries");
  TCase *tc = tcase_create("offline binaries");
  tcase_add_test(tc, compile_rejects_bad_arguments_and_non_opencl_devices);
  tcase_add_test(tc, ops_run_from_offline_binaries_with_compilation_forbidden);
  suite_add_tcase(s, tc);
  return th_run_suite(s);
}
