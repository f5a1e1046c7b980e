/* seqmix verify: every op on random inputs against the float64 reference, on
 * the user's device. One line per op, case, dtype and device; exit 1 on failure. */
#include "options.h"

#include <string.h>
#include <time.h>

int cli_verify(int argc, char **argv) {
  cli_options o;
  int rc = cli_parse_options("verify", argc, argv, &o, false);
  if (rc) return rc;
  if (o.dtype_count == 0) {
    o.dtypes[0] = SEQMIX_F32, o.dtypes[1] = SEQMIX_F16, o.dtypes[2] = SEQMIX_BF16;
    o.dtype_count = 3;
  }
  unsigned long long seed = o.seed ? o.seed : (unsigned long long)time(NULL);
  size_t devices[64], ndev;
  if ((rc = cli_select_devices("verify", o.device, devices, 64, &ndev))) return rc;
  printf("seqmix verify: seed %llu (rerun with --seed %llu)\n", seed, seed);
  int passed = 0, failed = 0;
  for (size_t d = 0; d < ndev; ++d) {
    seqmix_context *ctx = NULL;
    seqmix_device_info info;
    if (cli_open(devices[d], &ctx, &info)) {
      printf("FAIL  %-10s cannot open: %s\n", info.id, seqmix_last_error());
      failed++;
      continue;
    }
    for (int k = 0; k < cli_op_count; ++k) {
      const cli_op *op = cli_ops[k];
      if (o.op && strcmp(o.op, op->name)) continue;
      for (int t = 0; t < o.dtype_count; ++t)
        for (int c = 0; c < op->verify_count; ++c) {
          const cli_case *cs = &op->verify_cases[c];
          char shape[128];
          op->describe(cs, shape, sizeof shape);
          void *state = NULL;
          double err = 0, tol = cli_tolerance(o.dtypes[t]);
          seqmix_status st = op->setup(ctx, cs, o.dtypes[t], seed + (unsigned)c, &state);
          if (!st) st = op->check(state, &err);
          op->teardown(state);
          bool ok = !st && err <= tol;
          ok ? passed++ : failed++;
          if (st)
            printf("FAIL  %-10s %-8s %-5s %-40s %s: %s\n", info.id, op->name,
                   seqmix_dtype_name(o.dtypes[t]), shape, seqmix_status_name(st),
                   seqmix_last_error());
          else
            printf("%s  %-10s %-8s %-5s %-40s rel err %.2e (tolerance %.0e)\n", ok ? "ok  " : "FAIL",
                   info.id, op->name, seqmix_dtype_name(o.dtypes[t]), shape, err, tol);
          fflush(stdout);
        }
    }
    seqmix_context_stats stats;
    if (!seqmix_context_stats_get(ctx, &stats) && stats.ops_on_fallback)
      printf("note  %-10s %llu op calls ran on the CPU fallback (see the warnings above)\n",
             info.id, (unsigned long long)stats.ops_on_fallback);
    seqmix_context_destroy(ctx);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
