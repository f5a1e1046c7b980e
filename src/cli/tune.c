/*
 * seqmix tune: times every tuning knob of a device on the bench cases of the
 * ops it affects, keeps a candidate only when it beats the heuristic by more
 * than the noise margin and still passes the float64 check, and stores the
 * winners (seqmix_tuning_save) for every later context on that device.
 *
 * Knobs are tuned one after another, each with the winners before it in place.
 * Cases whose single call takes longer than --max-seconds are left out (a
 * 4k-token prefill on lavapipe takes half a minute).
 */
#include "options.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_CASES = 48, rounds = 3 };
static const double noise_margin = 0.97; /* a winner must be 3% faster in every round */

typedef struct tune_case {
  const cli_op *op;
  void *state;
} tune_case;

/* Whether `name` is one of the comma-separated ops in `list`. */
static bool in_list(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
    if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) return true;
  return false;
}

/* The fastest of a few synchronised calls after a warm-up (ms): interference
 * from the rest of the machine only ever adds time. */
static seqmix_status fastest_ms(const tune_case *tc, seqmix_context *ctx, double *ms) {
  seqmix_status st;
  if ((st = tc->op->run(tc->state)) || (st = seqmix_context_sync(ctx))) return st;
  double best = -1, start = cli_now();
  for (int i = 0; i < 3 || (i < 20 && cli_now() - start < 0.15); ++i) {
    double t0 = cli_now();
    if ((st = tc->op->run(tc->state)) || (st = seqmix_context_sync(ctx))) return st;
    double t = cli_now() - t0;
    if (best < 0 || t < best) best = t;
  }
  *ms = best * 1e3;
  return SEQMIX_OK;
}

/* Sum over the cases of ops in `ops` of their fastest times (ms); -1 on failure. */
static double total_ms(seqmix_context *ctx, const tune_case *cases, int n, const char *ops) {
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    if (!in_list(ops, cases[i].op->name)) continue;
    double ms;
    if (fastest_ms(&cases[i], ctx, &ms)) return -1;
    sum += ms;
  }
  return sum;
}

/* Times each of `count` settings (apply(i) makes setting i current) in
 * `rounds` interleaved rounds. ms[i]: setting i's best total (< 0 when it
 * failed); worst[i]: its largest time relative to setting 0 in the same round,
 * so a setting only counts as faster when it was faster every time, next to
 * the heuristic, whatever the rest of the machine was doing. */
typedef void (*apply_fn)(seqmix_context *ctx, const void *arg, int i);
static void compare(seqmix_context *ctx, const tune_case *cases, int n, const char *ops,
                    int count, apply_fn apply, const void *arg, double *ms, double *worst) {
  for (int i = 0; i < count; ++i) ms[i] = 0, worst[i] = 0;
  for (int r = 0; r < rounds; ++r) {
    double t[8];
    for (int i = 0; i < count; ++i) {
      t[i] = -1;
      if (ms[i] < 0) continue;
      apply(ctx, arg, i);
      t[i] = total_ms(ctx, cases, n, ops);
      ms[i] = t[i] < 0 ? -1 : (r == 0 || t[i] < ms[i]) ? t[i] : ms[i];
    }
    for (int i = 0; i < count; ++i)
      if (t[i] > 0 && t[0] > 0 && t[i] / t[0] > worst[i]) worst[i] = t[i] / t[0];
  }
}

static void apply_candidate(seqmix_context *ctx, const void *arg, int i) {
  const seqmix_tuning_knob *kb = arg;
  seqmix_tuning_set(ctx, kb->name, kb->candidates[i]);
}

/* Setting 0: every knob at its heuristic; 1: the winners in `values`. */
typedef struct knob_values {
  int count;
  int64_t values[32];
} knob_values;
static void apply_all(seqmix_context *ctx, const void *arg, int i) {
  const knob_values *w = arg;
  for (int k = 0; k < w->count; ++k) {
    seqmix_tuning_knob kb;
    seqmix_tuning_get(ctx, k, &kb);
    seqmix_tuning_set(ctx, kb.name, i ? w->values[k] : 0);
  }
}

/* Every case of ops in `ops` still matches the float64 reference. */
static bool still_correct(const tune_case *cases, int n, const char *ops, seqmix_dtype dtype,
                          double *worst) {
  *worst = 0;
  for (int i = 0; i < n; ++i) {
    if (!in_list(ops, cases[i].op->name)) continue;
    double err;
    if (cases[i].op->check(cases[i].state, &err) || !(err <= cli_tolerance(dtype))) {
      *worst = err;
      return false;
    }
    if (err > *worst) *worst = err;
  }
  return true;
}

static int tune_device(size_t index, const char *only_op, seqmix_dtype dtype, double max_seconds,
                       unsigned long long seed) {
  seqmix_context *ctx;
  seqmix_device_info info;
  if (cli_open(index, &ctx, &info)) {
    fprintf(stderr, "seqmix tune: cannot open device %zu: %s\n", index, seqmix_last_error());
    return 1;
  }
  int knobs = 0;
  seqmix_tuning_count(ctx, &knobs);
  printf("tuning %s (%s, %s), %s\n", info.id, info.name, info.driver, seqmix_dtype_name(dtype));
  /* Start the knobs to tune from their heuristics; collect the ops they touch. */
  char ops[256] = "";
  for (int k = 0; k < knobs; ++k) {
    seqmix_tuning_knob kb;
    seqmix_tuning_get(ctx, k, &kb);
    if (only_op && !in_list(kb.op, only_op)) continue; /* keeps its stored winner */
    seqmix_tuning_set(ctx, kb.name, 0);
    for (int o = 0; o < cli_op_count; ++o)
      if (in_list(kb.op, cli_ops[o]->name) && !in_list(ops, cli_ops[o]->name))
        snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s%s", ops[0] ? "," : "",
                 cli_ops[o]->name);
  }
  if (!ops[0]) {
    printf("  no knobs%s%s on this device\n", only_op ? " for " : "", only_op ? only_op : "");
    seqmix_context_destroy(ctx);
    return 0;
  }

  tune_case cases[MAX_CASES];
  int n = 0, rc = 0;
  for (int o = 0; o < cli_op_count; ++o) {
    const cli_op *op = cli_ops[o];
    if (!in_list(ops, op->name) || (only_op && strcmp(op->name, only_op))) continue;
    const cli_case *list = op->tune_cases ? op->tune_cases : op->bench_cases;
    const int count = op->tune_cases ? op->tune_count : op->bench_count;
    for (int c = 0; c < count && n < MAX_CASES; ++c) {
      void *state;
      if (op->setup(ctx, &list[c], dtype, seed, &state)) {
        fprintf(stderr, "seqmix tune: %s %s: setup failed: %s\n", op->name, list[c].name,
                seqmix_last_error());
        continue;
      }
      /* The first call also builds kernels and plans: time the second. */
      seqmix_status st = op->run(state);
      if (!st) st = seqmix_context_sync(ctx);
      double t0 = cli_now();
      if (!st) st = op->run(state);
      if (!st) st = seqmix_context_sync(ctx);
      const double seconds = cli_now() - t0;
      if (st || seconds > max_seconds) {
        printf("  leaving out %s %s: %s\n", op->name, list[c].name,
               st ? seqmix_last_error() : "one call takes longer than --max-seconds");
        op->teardown(state);
        continue;
      }
      cases[n++] = (tune_case){op, state};
    }
  }

  printf("  %-24s %-58s %8s %8s\n", "knob", "ms over its cases: heuristic | candidates", "winner",
         "speed-up");
  for (int k = 0; k < knobs; ++k) {
    seqmix_tuning_knob kb;
    seqmix_tuning_get(ctx, k, &kb);
    if (only_op && !in_list(kb.op, only_op)) continue;
    double ms[8], worst[8], best_ratio = 1;
    int best = 0;
    char line[256] = "";
    compare(ctx, cases, n, kb.op, kb.candidate_count, apply_candidate, &kb, ms, worst);
    for (int i = 0; i < kb.candidate_count; ++i) {
      if (i) snprintf(line + strlen(line), sizeof line - strlen(line), " | %lld: ",
                      (long long)kb.candidates[i]);
      if (ms[i] < 0) {
        snprintf(line + strlen(line), sizeof line - strlen(line), "failed");
        continue;
      }
      snprintf(line + strlen(line), sizeof line - strlen(line), "%.2f", ms[i]);
      if (i && worst[i] < noise_margin && worst[i] < best_ratio) best_ratio = worst[i], best = i;
    }
    if (ms[0] < 0) {
      printf("  %-24s %-58s %8s\n", kb.name, line, "(failed)");
      seqmix_tuning_set(ctx, kb.name, 0);
      rc = 1;
      continue;
    }
    seqmix_tuning_set(ctx, kb.name, kb.candidates[best]);
    double err;
    if (best && !still_correct(cases, n, kb.op, dtype, &err)) {
      printf("  %-24s %-58s rejected %lld: wrong results (rel err %.1e)\n", kb.name, line,
             (long long)kb.candidates[best], err);
      seqmix_tuning_set(ctx, kb.name, 0);
      rc = 1;
      continue;
    }
    char winner[24];
    if (best) snprintf(winner, sizeof winner, "%lld", (long long)kb.candidates[best]);
    else snprintf(winner, sizeof winner, "heur.");
    printf("  %-24s %-58s %8s %7.2fx\n", kb.name, line, winner, best ? 1 / best_ratio : 1.0);
  }

  /* Heuristics against winners, per op, interleaved. */
  knob_values w = {.count = knobs < 32 ? knobs : 32};
  for (int k = 0; k < w.count; ++k) {
    seqmix_tuning_knob kb;
    seqmix_tuning_get(ctx, k, &kb);
    w.values[k] = kb.value;
  }
  printf("  with the winners:");
  for (int o = 0; o < cli_op_count; ++o) {
    if (!in_list(ops, cli_ops[o]->name)) continue;
    double ms[2], worst[2];
    compare(ctx, cases, n, cli_ops[o]->name, 2, apply_all, &w, ms, worst);
    if (ms[0] > 0 && ms[1] > 0)
      printf(" %s %.2f -> %.2f ms (%.2fx);", cli_ops[o]->name, ms[0], ms[1], ms[0] / ms[1]);
  }
  printf("\n");
  apply_all(ctx, &w, 1);
  for (int i = 0; i < n; ++i) cases[i].op->teardown(cases[i].state);
  if (seqmix_tuning_save(ctx)) {
    fprintf(stderr, "seqmix tune: %s\n", seqmix_last_error());
    rc = 1;
  } else {
    printf("  stored for every context on this device (cache directory)\n");
  }
  seqmix_context_destroy(ctx);
  return rc;
}

int cli_tune(int argc, char **argv) {
  /* --max-seconds is ours; the rest are the common options. */
  double max_seconds = 2.0;
  char *rest[64];
  int nrest = 0;
  for (int i = 0; i < argc && nrest < 64; ++i) {
    if (i > 0 && !strcmp(argv[i], "--max-seconds")) {
      char *end;
      max_seconds = i + 1 < argc ? strtod(argv[i + 1], &end) : 0;
      if (i + 1 >= argc || *end || !(max_seconds > 0)) {
        fprintf(stderr, "seqmix tune: --max-seconds must be a positive number of seconds\n");
        return 2;
      }
      ++i;
      continue;
    }
    rest[nrest++] = argv[i];
  }
  cli_options o;
  int rc = cli_parse_options("tune", nrest, rest, &o, false);
  if (rc) return rc;
  const seqmix_dtype dtype = o.dtype_count ? o.dtypes[0] : SEQMIX_F32;
  size_t devices[64], ndev;
  if ((rc = cli_select_devices("tune", o.device, devices, 64, &ndev))) return rc;
  const unsigned long long seed = o.seed ? o.seed : (unsigned long long)(cli_now() * 1e6);
  for (size_t d = 0; d < ndev; ++d)
    rc |= tune_device(devices[d], o.op, dtype, max_seconds, seed);
  return rc;
}
