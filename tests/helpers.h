/* Test helpers: devices under test, random tensors, NaN poison, comparison with
 * the float64 reference. Each test reads as a few lines of intent. */
#ifndef SEQMIX_TEST_HELPERS_H
#define SEQMIX_TEST_HELPERS_H

#include <check.h>
#include <seqmix.h>

#include <stdint.h>

/* Devices under test: every device the registry lists, or those the
 * comma-separated entries of $SEQMIX_TEST_DEVICES name: a device id ("opencl:1")
 * or BACKEND/TEXT, every device of that backend whose name, vendor or driver
 * contains TEXT ("opencl/rusticl"). An entry that matches no device makes the
 * test program exit with status 1. */
int th_device_count(void);
const char *th_device_id(int index);
/* A context on device `index`; fails the test (naming the device) otherwise. */
seqmix_context *th_context(int index);
/* Ends a test's use of ctx: checks no Vulkan validation message was logged. */
void th_context_done(seqmix_context *ctx);
/* Warnings about the CPU fallback logged since th_context(). */
int th_fallback_warnings(void);

/* Seeded RNG: $SEQMIX_TEST_SEED or a fresh seed, printed in failure messages. */
uint64_t th_seed(void);
typedef struct th_rng {
  uint64_t state;
} th_rng;
th_rng th_rng_make(uint64_t salt);
float th_uniform(th_rng *rng, float lo, float hi);
void th_fill(th_rng *rng, float *data, size_t n, float lo, float hi);

/* A tensor holding data (rounded to dtype in place, so the reference sees what
 * the device sees); data NULL poisons it with NaN. */
seqmix_tensor *th_tensor(seqmix_context *ctx, seqmix_dtype dtype, int rank, const int64_t *shape,
                         float *data);
/* A strided view of a larger, NaN-poisoned base: each dim padded by pad[i]
 * elements, starting `offset` elements in. The base is returned through *base. */
seqmix_tensor *th_padded_view(seqmix_context *ctx, seqmix_dtype dtype, int rank,
                              const int64_t *shape, const int64_t *pad, int64_t offset,
                              float *data, seqmix_tensor **base);
/* Reads a tensor as floats (malloc'ed) and fails the test on error. */
float *th_read(const seqmix_tensor *t);
double *th_to_double(const float *data, size_t n);

/* ||out - ref|| / ||ref||; infinity if out holds a NaN or ref is zero while out is not. */
double th_rel_l2(const float *out, const double *ref, size_t n);
double th_tolerance(seqmix_dtype dtype); /* DESIGN.md section 6 */

/* ck_assert with the status name and last error. */
#define th_ok(call)                                                                               \
  do {                                                                                            \
    seqmix_status th_st_ = (call);                                                                \
    ck_assert_msg(th_st_ == SEQMIX_OK, "%s -> %s: %s (seed %llu)", #call,                         \
                  seqmix_status_name(th_st_), seqmix_last_error(), (unsigned long long)th_seed()); \
  } while (0)

/* The call fails with status and a last error that contains `words`. */
#define th_fails(call, status, words)                                                             \
  do {                                                                                            \
    seqmix_status th_st_ = (call);                                                                \
    ck_assert_msg(th_st_ == (status), "%s -> %s, expected %s (%s)", #call,                        \
                  seqmix_status_name(th_st_), seqmix_status_name(status), seqmix_last_error());   \
    ck_assert_msg(strstr(seqmix_last_error(), (words)) != NULL,                                   \
                  "%s: message \"%s\" does not mention \"%s\"", #call, seqmix_last_error(),        \
                  (words));                                                                       \
  } while (0)

/* Steps through every candidate of every tuning knob of ctx's device that
 * times `op` (a `seqmix bench` op name), making it current; returns false, with
 * those knobs back at 0, when done:
 *   th_knob_iter it = {0};
 *   while (th_next_tuning_candidate(ctx, "attention", &it)) check(..., it.salt);
 * salt differs per (knob, candidate), for the cases' random inputs. */
typedef struct th_knob_iter {
  int knob, candidate;
  uint64_t salt;
} th_knob_iter;
bool th_next_tuning_candidate(seqmix_context *ctx, const char *op, th_knob_iter *it);

/* Runs a suite without forking (drivers and sanitizers dislike fork). */
int th_run_suite(Suite *suite);

#endif
