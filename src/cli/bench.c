/*
 * seqmix bench: times each op on each device for the named cases and reports
 * GFLOP/s, GB/s and the fraction of the roofline bound that applies (FMA peak
 * for compute-bound ops, copy bandwidth for memory-bound ones), with the limits
 * measured in the same run. CPU and software devices (PoCL, lavapipe, llvmpipe)
 * run on the host, so they are held to the host's roofline; hardware GPUs to
 * their own copy bandwidth, measured through seqmix_tensor_copy.
 */
#include "options.h"

#include <stdlib.h>
#include <string.h>

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of per-call times (each call synchronised): warm-up first, then at
 * least 5 calls and about half a second; calls over a second (a direct long
 * convolution on a CPU device) get one warm-up and 3 timed calls. */
seqmix_status cli_time_op(const cli_op *op, void *state, seqmix_context *ctx, double *ms) {
  seqmix_status st;
  double first = cli_now();
  if ((st = op->run(state)) || (st = seqmix_context_sync(ctx))) return st;
  const bool slow = cli_now() - first > 1.0;
  if (!slow && ((st = op->run(state)) || (st = seqmix_context_sync(ctx)))) return st;
  double times[400];
  int n = 0;
  double start = cli_now();
  while (n < 400 && (n < (slow ? 3 : 5) || (!slow && cli_now() - start < 0.5))) {
    double t0 = cli_now();
    if ((st = op->run(state)) || (st = seqmix_context_sync(ctx))) return st;
    times[n++] = cli_now() - t0;
  }
  qsort(times, (size_t)n, sizeof times[0], compare_double);
  *ms = times[n / 2] * 1e3;
  return SEQMIX_OK;
}

int cli_bench(int argc, char **argv) {
  cli_options o;
  int rc = cli_parse_options("bench", argc, argv, &o, true);
  if (rc) return rc;
  if (o.dtype_count == 0) {
    o.dtypes[0] = SEQMIX_F32, o.dtypes[1] = SEQMIX_F16;
    o.dtype_count = 2;
  }
  size_t devices[64], ndev;
  if ((rc = cli_select_devices("bench", o.device, devices, 64, &ndev))) return rc;

  fprintf(stderr, "measuring this machine's roofline...\r");
  cli_roofline roof;
  cli_measure_roofline(&roof);
  if (o.json)
    printf("{\"roofline\":{\"fma_gflops\":%.1f,\"copy_gbs\":%.1f}}\n", roof.fma_gflops, roof.copy_gbs);
  else
    printf("host roofline: f32 FMA peak %.1f GFLOP/s, copy bandwidth %.1f GB/s (read + write)\n",
           roof.fma_gflops, roof.copy_gbs);

  int total = 0, done = 0, failures = 0;
  for (int k = 0; k < cli_op_count; ++k)
    if (!o.op || !strcmp(o.op, cli_ops[k]->name)) total += cli_ops[k]->bench_count;
  total *= (int)ndev * o.dtype_count;

  for (size_t d = 0; d < ndev; ++d) {
    seqmix_context *ctx = NULL;
    seqmix_device_info info;
    if (cli_open(devices[d], &ctx, &info)) {
      fprintf(stderr, "seqmix bench: %s\n", seqmix_last_error());
      failures++;
      continue;
    }
    bool host_bound = info.kind == SEQMIX_DEVICE_CPU || info.kind == SEQMIX_DEVICE_SOFTWARE;
    double copy_gbs = roof.copy_gbs;
    if (!host_bound) {
      copy_gbs = cli_device_copy_gbs(ctx);
      if (!o.json) printf("%s copy bandwidth %.1f GB/s\n", info.id, copy_gbs);
    }
    if (!o.json)
      printf("\n%-8s %-11s %-10s %-5s %-34s %9s %9s %8s %7s %9s\n", "op", "case", "device",
             "dtype", "shape", "ms", "GFLOP/s", "GB/s", "roof%", "rel err");
    for (int k = 0; k < cli_op_count; ++k) {
      const cli_op *op = cli_ops[k];
      if (o.op && strcmp(o.op, op->name)) continue;
      for (int c = 0; c < op->bench_count; ++c)
        for (int t = 0; t < o.dtype_count; ++t) {
          const cli_case *cs = &op->bench_cases[c];
          seqmix_dtype dtype = o.dtypes[t];
          char shape[128];
          op->describe(cs, shape, sizeof shape);
          fprintf(stderr, "\r[%d/%d] %s %s %s on %s...%20s\r", ++done, total, op->name, cs->name,
                  seqmix_dtype_name(dtype), info.id, "");
          void *state = NULL;
          double ms = 0, err = -1, flops, bytes;
          bool memory_bound;
          seqmix_status st = op->setup(ctx, cs, dtype, 12345u + (unsigned)c, &state);
          if (!st) st = cli_time_op(op, state, ctx, &ms);
          if (!st) st = op->check(state, &err);
          op->teardown(state);
          if (st) {
            fprintf(stderr, "\nseqmix bench: %s %s on %s: %s\n", op->name, cs->name, info.id,
                    seqmix_last_error());
            failures++;
            continue;
          }
          op->cost(cs, dtype, &flops, &bytes, &memory_bound);
          double gflops = flops / (ms * 1e-3) * 1e-9, gbs = bytes / (ms * 1e-3) * 1e-9;
          double peak = memory_bound ? gbs / copy_gbs
                                         : (host_bound ? gflops / roof.fma_gflops : 0);
          if (o.json)
            printf("{\"op\":\"%s\",\"case\":\"%s\",\"device\":\"%s\",\"shape\":\"%s\",\"dtype\":"
                   "\"%s\",\"ms\":%.4f,\"gflops\":%.2f,\"gbs\":%.2f,\"peak_fraction\":%.3f,"
                   "\"max_rel_err\":%.3g}\n",
                   op->name, cs->name, info.id, shape, seqmix_dtype_name(dtype), ms, gflops, gbs,
                   peak, err);
          else
            printf("%-8s %-11s %-10s %-5s %-34s %9.3f %9.2f %8.2f %6.1f%% %9.1e\n", op->name,
                   cs->name, info.id, seqmix_dtype_name(dtype), shape, ms, gflops, gbs,
                   peak * 100, err);
          fflush(stdout);
        }
    }
    seqmix_context_destroy(ctx);
  }
  fprintf(stderr, "%60s\r", "");
  return failures ? 1 : 0;
}
