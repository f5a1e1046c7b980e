/* Tensors, contexts and every bad input of API.md: a clear message naming the
 * argument, INVALID_ARGUMENT, nothing leaked, the context still usable. */
#include "helpers.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVALID SEQMIX_ERROR_INVALID_ARGUMENT

static seqmix_context *cpu_context(void) {
  seqmix_context_options o = {.device = "cpu"};
  seqmix_context *ctx = NULL;
  th_ok(seqmix_context_create(&o, &ctx));
  return ctx;
}

/* After a failure the context still runs a conv1d correctly. */
static void assert_still_usable(seqmix_context *ctx) {
  const int64_t xs[] = {1, 3, 2}, ws[] = {2, 2};
  float x[] = {1, 2, 3, 4, 5, 6}, w[] = {1, 1, 0, 1}, y[6];
  seqmix_tensor *tx = th_tensor(ctx, SEQMIX_F32, 3, xs, x), *tw = th_tensor(ctx, SEQMIX_F32, 2, ws, w);
  seqmix_tensor *ty = th_tensor(ctx, SEQMIX_F32, 3, xs, NULL);
  th_ok(seqmix_conv1d_causal(ctx, tx, tw, NULL, NULL, ty, NULL));
  th_ok(seqmix_tensor_read_f32(ty, y, 6));
  /* channel 0: w = [1, 1]: x[t-1] + x[t]; channel 1: w = [0, 1]: x[t] */
  const float want[] = {1, 2, 4, 4, 8, 6};
  for (int i = 0; i < 6; ++i) ck_assert_float_eq(y[i], want[i]);
  seqmix_tensor_destroy(tx), seqmix_tensor_destroy(tw), seqmix_tensor_destroy(ty);
}

START_TEST(status_names_and_empty_last_error) {
  ck_assert_str_eq(seqmix_status_name(SEQMIX_OK), "SEQMIX_OK");
  ck_assert_str_eq(seqmix_status_name(SEQMIX_ERROR_INVALID_ARGUMENT), "SEQMIX_ERROR_INVALID_ARGUMENT");
  ck_assert_str_eq(seqmix_status_name(SEQMIX_ERROR_IO), "SEQMIX_ERROR_IO");
  ck_assert_str_eq(seqmix_status_name((seqmix_status)99), "SEQMIX_UNKNOWN_STATUS");
  ck_assert_ptr_nonnull(seqmix_last_error());
  ck_assert_str_eq(seqmix_dtype_name(SEQMIX_BF16), "bf16");
  ck_assert_uint_eq(seqmix_dtype_size(SEQMIX_F16), 2);
}
END_TEST

START_TEST(tensor_write_read_round_trips_every_dtype) {
  seqmix_context *ctx = th_context(_i);
  const int64_t shape[] = {3, 5, 7};
  static const seqmix_dtype dtypes[] = {SEQMIX_F32, SEQMIX_F16, SEQMIX_BF16, SEQMIX_I32};
  for (int d = 0; d < 4; ++d) {
    seqmix_tensor *t = NULL;
    th_ok(seqmix_tensor_create(ctx, dtypes[d], 3, shape, &t));
    size_t bytes = 105 * seqmix_dtype_size(dtypes[d]);
    unsigned char *in = malloc(bytes), *out = malloc(bytes);
    for (size_t i = 0; i < bytes; ++i) in[i] = (unsigned char)(i * 7 + d);
    th_ok(seqmix_tensor_write(t, in, bytes));
    memset(out, 0, bytes);
    th_ok(seqmix_tensor_read(t, out, bytes));
    ck_assert_msg(memcmp(in, out, bytes) == 0, "%s: %s bytes differ", th_device_id(_i),
                  seqmix_dtype_name(dtypes[d]));
    ck_assert_int_eq(seqmix_tensor_rank(t), 3);
    ck_assert_int_eq(seqmix_tensor_dim(t, 2), 7);
    ck_assert_int_eq(seqmix_tensor_numel(t), 105);
    free(in), free(out);
    seqmix_tensor_destroy(t);
  }
  th_context_done(ctx);
}
END_TEST

START_TEST(views_read_and_write_only_their_elements) {
  seqmix_context *ctx = th_context(_i);
  const int64_t base_shape[] = {4, 6};
  float data[24], got[24];
  for (int i = 0; i < 24; ++i) data[i] = (float)i;
  seqmix_tensor *base = th_tensor(ctx, SEQMIX_F32, 2, base_shape, data);
  /* rows 1..2, columns 2..4 */
  const int64_t shape[] = {2, 3}, strides[] = {6, 1};
  seqmix_tensor *view = NULL;
  th_ok(seqmix_tensor_view(base, 2, shape, strides, 8, &view));
  float v[6];
  th_ok(seqmix_tensor_read_f32(view, v, 6));
  const float want[] = {8, 9, 10, 14, 15, 16};
  for (int i = 0; i < 6; ++i) ck_assert_float_eq(v[i], want[i]);
  const float neg[] = {-1, -2, -3, -4, -5, -6};
  th_ok(seqmix_tensor_write_f32(view, neg, 6));
  th_ok(seqmix_tensor_read_f32(base, got, 24));
  for (int i = 0; i < 24; ++i) {
    int r = i / 6, c = i % 6;
    bool inside = r >= 1 && r <= 2 && c >= 2 && c <= 4;
    float expect = inside ? -(float)((r - 1) * 3 + (c - 2) + 1) : (float)i;
    ck_assert_msg(got[i] == expect, "%s: element %d is %g, want %g", th_device_id(_i), i, got[i],
                  expect);
  }
  /* The view keeps the storage alive after its base is destroyed. */
  seqmix_tensor_destroy(base);
  th_ok(seqmix_tensor_read_f32(view, v, 6));
  ck_assert_float_eq(v[0], -1);
  seqmix_tensor_destroy(view);
  th_context_done(ctx);
}
END_TEST

START_TEST(f16_and_bf16_conversion_rounds_to_nearest_even) {
  seqmix_context *ctx = cpu_context();
  const int64_t shape[] = {6};
  const float in[] = {1.0f, 1.0f + 1.0f / 2048, 65504.0f, 1e-7f, -2.5f, NAN};
  float out[6];
  seqmix_tensor *t = th_tensor(ctx, SEQMIX_F16, 1, shape, NULL);
  th_ok(seqmix_tensor_write_f32(t, in, 6));
  th_ok(seqmix_tensor_read_f32(t, out, 6));
  ck_assert_float_eq(out[0], 1.0f);
  ck_assert_float_eq(out[1], 1.0f); /* tie: rounds to even */
  ck_assert_float_eq(out[2], 65504.0f);
  ck_assert_float_eq_tol(out[3], 1.1920929e-7f, 1e-9f); /* subnormal */
  ck_assert_float_eq(out[4], -2.5f);
  ck_assert(isnan(out[5]));
  seqmix_tensor_destroy(t);
  t = th_tensor(ctx, SEQMIX_BF16, 1, shape, NULL);
  th_ok(seqmix_tensor_write_f32(t, in, 6));
  th_ok(seqmix_tensor_read_f32(t, out, 6));
  ck_assert_float_eq(out[0], 1.0f);
  ck_assert_float_eq(out[4], -2.5f);
  ck_assert_float_eq(out[2], 65536.0f);
  ck_assert(isnan(out[5]));
  seqmix_tensor_destroy(t);
  seqmix_context_destroy(ctx);
}
END_TEST

START_TEST(context_bad_options_are_rejected) {
  seqmix_context *ctx = NULL;
  th_fails(seqmix_context_create(NULL, NULL), INVALID, "out is NULL");
  seqmix_context_options o = {.device = "vulkan:99"};
  th_fails(seqmix_context_create(&o, &ctx), INVALID, "vulkan:99");
  ck_assert_ptr_null(ctx);
  o.device = "gpu-please";
  th_fails(seqmix_context_create(&o, &ctx), INVALID, "must be auto or one of");
  o.device = "cpu";
  o.cpu_threads = -2;
  th_fails(seqmix_context_create(&o, &ctx), INVALID, "cpu_threads");
  th_fails(seqmix_context_sync(NULL), INVALID, "ctx is NULL");
  seqmix_device_info info;
  th_fails(seqmix_context_device(NULL, &info), INVALID, "ctx is NULL");
  th_fails(seqmix_device_info_get(100000, &info), INVALID, "index");
  th_fails(seqmix_device_count(NULL), INVALID, "count is NULL");
  seqmix_context_destroy(NULL);
  seqmix_tensor_destroy(NULL);
}
END_TEST

START_TEST(tensor_bad_arguments_name_the_argument) {
  seqmix_context *ctx = cpu_context();
  seqmix_tensor *t = NULL;
  const int64_t good[] = {2, 3}, zero[] = {2, 0}, neg[] = {-1, 3}, huge[] = {INT64_MAX / 2, 4};
  const int64_t five[] = {1, 1, 1, 1, 1};
  th_fails(seqmix_tensor_create(NULL, SEQMIX_F32, 2, good, &t), INVALID, "ctx is NULL");
  th_fails(seqmix_tensor_create(ctx, SEQMIX_F32, 2, good, NULL), INVALID, "out is NULL");
  th_fails(seqmix_tensor_create(ctx, SEQMIX_F32, 0, good, &t), INVALID, "rank is 0");
  th_fails(seqmix_tensor_create(ctx, SEQMIX_F32, 5, five, &t), INVALID, "rank is 5");
  th_fails(seqmix_tensor_create(ctx, SEQMIX_F32, 2, NULL, &t), INVALID, "shape is NULL");
  th_fails(seqmix_tensor_create(ctx, SEQMIX_F32, 2, zero, &t), INVALID, "shape[1] is 0");
  th_fails(seqmix_tensor_create(ctx, SEQMIX_F32, 2, neg, &t), INVALID, "shape[0] is -1");
  th_fails(seqmix_tensor_create(ctx, SEQMIX_F32, 2, huge, &t), INVALID, "overflows");
  th_fails(seqmix_tensor_create(ctx, (seqmix_dtype)42, 2, good, &t), INVALID, "dtype");
  ck_assert_ptr_null(t);

  th_ok(seqmix_tensor_create(ctx, SEQMIX_F32, 2, good, &t));
  float buf[6] = {0};
  th_fails(seqmix_tensor_write(t, buf, 20), INVALID, "bytes is 20");
  th_fails(seqmix_tensor_read(t, buf, 28), INVALID, "bytes is 28");
  th_fails(seqmix_tensor_write(t, NULL, 24), INVALID, "src is NULL");
  th_fails(seqmix_tensor_read(t, NULL, 24), INVALID, "dst is NULL");
  th_fails(seqmix_tensor_write(NULL, buf, 24), INVALID, "t is NULL");
  th_fails(seqmix_tensor_write_f32(t, buf, 5), INVALID, "count is 5");

  seqmix_tensor *v = NULL;
  const int64_t vshape[] = {2, 2}, past[] = {3, 1}, inner[] = {3, 2}, negs[] = {-3, 1};
  th_fails(seqmix_tensor_view(t, 2, vshape, inner, 0, &v), INVALID, "innermost stride must be 1");
  th_fails(seqmix_tensor_view(t, 2, vshape, past, 3, &v), INVALID, "past its base");
  th_fails(seqmix_tensor_view(t, 2, vshape, past, -1, &v), INVALID, "offset is -1");
  th_fails(seqmix_tensor_view(t, 2, vshape, negs, 4, &v), INVALID, "strides[0]");
  th_fails(seqmix_tensor_view(NULL, 2, vshape, past, 0, &v), INVALID, "base is NULL");
  th_fails(seqmix_tensor_view(t, 2, vshape, NULL, 0, &v), INVALID, "strides is NULL");
  th_fails(seqmix_tensor_view(t, 2, huge, past, 0, &v), INVALID, "overflows");
  ck_assert_ptr_null(v);
  th_ok(seqmix_tensor_view(t, 2, vshape, past, 1, &v)); /* last element: 1 + 3 + 1 = 5 */
  seqmix_tensor_destroy(v);
  seqmix_tensor_destroy(t);
  assert_still_usable(ctx);
  seqmix_context_destroy(ctx);
}
END_TEST

START_TEST(conv1d_bad_arguments_name_the_argument) {
  seqmix_context *ctx = th_context(_i);
  const int64_t xs[] = {2, 5, 3}, ws[] = {3, 4}, bs[] = {3}, ss[] = {2, 3, 3};
  seqmix_tensor *x = th_tensor(ctx, SEQMIX_F32, 3, xs, NULL), *w = th_tensor(ctx, SEQMIX_F32, 2, ws, NULL);
  seqmix_tensor *b = th_tensor(ctx, SEQMIX_F32, 1, bs, NULL), *s = th_tensor(ctx, SEQMIX_F32, 3, ss, NULL);
  seqmix_tensor *y = th_tensor(ctx, SEQMIX_F32, 3, xs, NULL);
  const int64_t bad_ws[] = {4, 4}, bad_xs[] = {2, 5, 4}, bad_ss[] = {2, 2, 3}, rank2[] = {5, 3};
  seqmix_tensor *w_bad = th_tensor(ctx, SEQMIX_F32, 2, bad_ws, NULL);
  seqmix_tensor *y_bad = th_tensor(ctx, SEQMIX_F32, 3, bad_xs, NULL);
  seqmix_tensor *s_bad = th_tensor(ctx, SEQMIX_F32, 3, bad_ss, NULL);
  seqmix_tensor *x_rank2 = th_tensor(ctx, SEQMIX_F32, 2, rank2, NULL);
  seqmix_tensor *y_f16 = th_tensor(ctx, SEQMIX_F16, 3, xs, NULL);
  seqmix_tensor *s_f16 = th_tensor(ctx, SEQMIX_F16, 3, ss, NULL);
  seqmix_tensor *x_i32 = NULL;
  th_ok(seqmix_tensor_create(ctx, SEQMIX_I32, 3, xs, &x_i32));
  seqmix_tensor *w_bf16 = th_tensor(ctx, SEQMIX_BF16, 2, ws, NULL);
  seqmix_tensor *y_over = NULL;
  const int64_t st[] = {15, 3, 1};
  th_ok(seqmix_tensor_view(x, 3, xs, st, 0, &y_over));

  const char *fn = "seqmix_conv1d_causal";
  th_fails(seqmix_conv1d_causal(NULL, x, w, b, s, y, NULL), INVALID, "ctx is NULL");
  th_fails(seqmix_conv1d_causal(ctx, NULL, w, b, s, y, NULL), INVALID, "x is NULL");
  th_fails(seqmix_conv1d_causal(ctx, x, NULL, b, s, y, NULL), INVALID, "weight is NULL");
  th_fails(seqmix_conv1d_causal(ctx, x, w, b, s, NULL, NULL), INVALID, "y is NULL");
  th_fails(seqmix_conv1d_causal(ctx, x_rank2, w, b, s, y, NULL), INVALID, "x has rank 2");
  th_fails(seqmix_conv1d_causal(ctx, x, w_bad, b, s, y, NULL), INVALID, "weight has shape [4, 4]");
  th_fails(seqmix_conv1d_causal(ctx, x, w, b, s, y_bad, NULL), INVALID, "y has shape");
  th_fails(seqmix_conv1d_causal(ctx, x, w, b, s_bad, y, NULL), INVALID, "state has shape");
  th_fails(seqmix_conv1d_causal(ctx, x, w, b, s, y_f16, NULL), INVALID, "y is f16 but x is f32");
  th_fails(seqmix_conv1d_causal(ctx, x, w, b, s_f16, y, NULL), INVALID, "state is f16");
  th_fails(seqmix_conv1d_causal(ctx, x_i32, w, b, s, y, NULL), INVALID, "x is i32");
  th_fails(seqmix_conv1d_causal(ctx, x, w_bf16, b, s, y, NULL), INVALID, "weight is bf16");
  th_fails(seqmix_conv1d_causal(ctx, x, w, b, s, y_over, NULL), INVALID, "y overlaps x");
  ck_assert_ptr_nonnull(strstr(seqmix_last_error(), fn));

  /* A tensor from another context. */
  seqmix_context *other = cpu_context();
  seqmix_tensor *foreign = th_tensor(other, SEQMIX_F32, 2, ws, NULL);
  th_fails(seqmix_conv1d_causal(ctx, x, foreign, b, s, y, NULL), INVALID,
           "weight belongs to another context");
  seqmix_context_destroy(other); /* frees foreign too */

  /* K = 1 with a state. */
  const int64_t w1s[] = {3, 1}, s0[] = {2, 1, 3};
  seqmix_tensor *w1 = th_tensor(ctx, SEQMIX_F32, 2, w1s, NULL), *s1 = th_tensor(ctx, SEQMIX_F32, 3, s0, NULL);
  th_fails(seqmix_conv1d_causal(ctx, x, w1, b, s1, y, NULL), INVALID, "K is 1");

  /* Outputs were not touched by the failures: y is still all NaN. */
  float out[30];
  th_ok(seqmix_tensor_read_f32(y, out, 30));
  for (int i = 0; i < 30; ++i) ck_assert(isnan(out[i]));
  assert_still_usable(ctx);
  th_context_done(ctx); /* destroys the remaining tensors */
}
END_TEST

START_TEST(destroying_a_context_frees_its_tensors) {
  /* Run under the sanitizer build, a leak here fails the suite. */
  seqmix_context *ctx = th_context(_i);
  const int64_t shape[] = {16, 16};
  seqmix_tensor *t = NULL, *v = NULL;
  for (int i = 0; i < 8; ++i) th_ok(seqmix_tensor_create(ctx, SEQMIX_F16, 2, shape, &t));
  const int64_t vs[] = {4, 4}, st[] = {16, 1};
  th_ok(seqmix_tensor_view(t, 2, vs, st, 3, &v));
  th_context_done(ctx);
}
END_TEST

/* A context on `device` with its cache in `dir`. */
static seqmix_context *context_in(const char *device, const char *dir) {
  seqmix_context_options o = {.device = device, .cache_dir = dir};
  seqmix_context *ctx = NULL;
  th_ok(seqmix_context_create(&o, &ctx));
  return ctx;
}

static int64_t knob_value(seqmix_context *ctx, const char *name) {
  int count;
  th_ok(seqmix_tuning_count(ctx, &count));
  for (int k = 0; k < count; ++k) {
    seqmix_tuning_knob kb;
    th_ok(seqmix_tuning_get(ctx, k, &kb));
    if (!strcmp(kb.name, name)) return kb.value;
  }
  ck_abort_msg("no knob %s", name);
  return -1;
}

/* Knobs: bad names and values are refused by name; winners saved on a device
 * come back in the next context on it, whatever else lies in the directory; a
 * foreign or damaged file and an unwritable directory only cost speed. */
START_TEST(tuning_winners_round_trip_and_bad_input_is_refused) {
  char dir[] = "/tmp/seqmix-tuning-test-XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const char *id = th_device_id(_i);
  seqmix_context *ctx = context_in(id, dir);
  int count;
  th_ok(seqmix_tuning_count(ctx, &count));
  th_fails(seqmix_tuning_count(NULL, &count), INVALID, "ctx");
  th_fails(seqmix_tuning_get(ctx, count, &(seqmix_tuning_knob){0}), INVALID, "index");
  th_fails(seqmix_tuning_set(ctx, "no.such.knob", 1), INVALID, "no.such.knob");
  th_fails(seqmix_tuning_set(ctx, NULL, 1), INVALID, "name");
  /* Every device has the long convolution's crossover. */
  th_fails(seqmix_tuning_set(ctx, "longconv.crossover", 37), INVALID, "must be one of");
  /* Another knob too, when the device has one. */
  seqmix_tuning_knob first;
  th_ok(seqmix_tuning_get(ctx, 0, &first));
  ck_assert_int_eq(first.candidates[0], 0);
  ck_assert_int_ge(first.candidate_count, 2);
  const bool other = strcmp(first.name, "longconv.crossover") != 0;
  if (other) th_ok(seqmix_tuning_set(ctx, first.name, first.candidates[1]));
  th_ok(seqmix_tuning_set(ctx, "longconv.crossover", 400));
  th_ok(seqmix_tuning_save(ctx));
  seqmix_context_destroy(ctx);

  ctx = context_in(id, dir);
  ck_assert_int_eq(knob_value(ctx, "longconv.crossover"), 400);
  if (other) ck_assert_int_eq(knob_value(ctx, first.name), first.candidates[1]);
  assert_still_usable(ctx);
  seqmix_context_destroy(ctx);

  /* Damage every tuning entry: the next context starts from the heuristics. */
  char cmd[512];
  snprintf(cmd, sizeof cmd, "for f in %s/tuning-*; do printf 'junk' > \"$f\"; done", dir);
  ck_assert_int_eq(system(cmd), 0);
  ctx = context_in(id, dir);
  ck_assert_int_eq(knob_value(ctx, "longconv.crossover"), 0);
  assert_still_usable(ctx);
  seqmix_context_destroy(ctx);

  /* A directory that cannot be written: saving says so, nothing else breaks. */
  ctx = context_in(id, "/proc/seqmix-cannot-write-here");
  th_ok(seqmix_tuning_set(ctx, "longconv.crossover", 50));
  th_fails(seqmix_tuning_save(ctx), SEQMIX_ERROR_IO, "cannot store");
  assert_still_usable(ctx);
  seqmix_context_destroy(ctx);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api");
  TCase *host = tcase_create("host");
  tcase_add_test(host, status_names_and_empty_last_error);
  tcase_add_test(host, f16_and_bf16_conversion_rounds_to_nearest_even);
  tcase_add_test(host, context_bad_options_are_rejected);
  tcase_add_test(host, tensor_bad_arguments_name_the_argument);
  suite_add_tcase(s, host);
  TCase *dev = tcase_create("every device");
  int n = th_device_count();
  tcase_add_loop_test(dev, tensor_write_read_round_trips_every_dtype, 0, n);
  tcase_add_loop_test(dev, views_read_and_write_only_their_elements, 0, n);
  tcase_add_loop_test(dev, conv1d_bad_arguments_name_the_argument, 0, n);
  tcase_add_loop_test(dev, destroying_a_context_frees_its_tensors, 0, n);
  tcase_add_loop_test(dev, tuning_winners_round_trip_and_bad_input_is_refused, 0, n);
  suite_add_tcase(s, dev);
  return th_run_suite(s);
}
