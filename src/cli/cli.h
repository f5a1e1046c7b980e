/* The `seqmix` command: shared declarations. Uses only the public header. */
#ifndef SEQMIX_CLI_H
#define SEQMIX_CLI_H

#include <seqmix.h>

#include <stdio.h>

/* One shape of one op, as verify and bench run it. */
typedef struct cli_case {
  const char *name; /* bench case name from the issue, e.g. "prefill-4k" */
  int64_t dims[8];  /* op-specific: conv1d B, L, C, K */
  unsigned flags;   /* op-specific options */
} cli_case;

/* An op the command knows: cases, and how to set up, run and check one. */
typedef struct cli_op {
  const char *name;
  const cli_case *verify_cases;
  int verify_count;
  const cli_case *bench_cases;
  int bench_count;
  const cli_case *tune_cases; /* what `seqmix tune` times; NULL: the bench cases */
  int tune_count;
  /* Makes random inputs and outputs for a case on ctx. */
  seqmix_status (*setup)(seqmix_context *ctx, const cli_case *c, seqmix_dtype dtype,
                         unsigned long long seed, void **state);
  seqmix_status (*run)(void *state);
  /* Restores the inputs, runs once, compares every output with the float64
   * reference: the worst relative L2 error. */
  seqmix_status (*check)(void *state, double *rel_err);
  void (*teardown)(void *state);
  /* FLOPs and bytes moved by one run, and which roofline bound applies. */
  void (*cost)(const cli_case *c, seqmix_dtype dtype, double *flops, double *bytes,
               bool *memory_bound);
  void (*describe)(const cli_case *c, char *buf, size_t size);
} cli_op;

extern const cli_op cli_conv1d_op;
extern const cli_op cli_attention_op;
extern const cli_op cli_scan_op, cli_ssd_op, cli_linattn_op;
extern const cli_op cli_conv2d_op, cli_longconv_op, cli_pool_op;
extern const cli_op *const cli_ops[];
extern const int cli_op_count;

const cli_op *cli_find_op(const char *name);
double cli_tolerance(seqmix_dtype dtype);

/* Helpers shared by the ops in cases.c and attention.c. */
float *cli_random_floats(size_t n, float lo, float hi, unsigned long long *rng);
seqmix_status cli_make_tensor(seqmix_context *ctx, seqmix_dtype dtype, int rank,
                              const int64_t *shape, float *data, seqmix_tensor **out);
double *cli_to_double(const float *f, size_t n);
double cli_rel_l2(const float *out, const double *ref, size_t n);
void cli_fill_nan(float *p, size_t n);
double cli_now(void); /* seconds, monotonic */
bool cli_parse_dtype(const char *s, seqmix_dtype *out);

/* Machine limits measured in this run (roofline.c). */
typedef struct cli_roofline {
  double fma_gflops;  /* f32 FMA peak of the host CPU, all cores */
  double copy_gbs;    /* host memory copy bandwidth, read + write */
} cli_roofline;
void cli_measure_roofline(cli_roofline *r);
/* Copy bandwidth (read + write GB/s) of a device through seqmix_tensor_copy. */
double cli_device_copy_gbs(seqmix_context *ctx);

int cli_devices(int argc, char **argv);
int cli_verify(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_demo(int argc, char **argv);    /* demo.c */
int cli_compile(int argc, char **argv); /* compile.c */
int cli_tune(int argc, char **argv);    /* tune.c */
/* Median milliseconds of synchronised calls after a warm-up (bench.c). */
seqmix_status cli_time_op(const cli_op *op, void *state, seqmix_context *ctx, double *ms);

#endif
