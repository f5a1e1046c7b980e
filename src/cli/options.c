/* Options shared by verify and bench. */
#include "options.h"

#include <stdlib.h>
#include <string.h>

int cli_parse_options(const char *cmd, int argc, char **argv, cli_options *o, bool allow_json) {
  memset(o, 0, sizeof *o);
  o->dtype_count = 0;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json") && allow_json) {
      o->json = true;
      continue;
    }
    if (!v || strncmp(a, "--", 2)) {
      fprintf(stderr, "seqmix %s: unexpected argument '%s'\n", cmd, a);
      return 2;
    }
    ++i;
    if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--op")) {
      if (!cli_find_op(v)) {
        fprintf(stderr, "seqmix %s: unknown op '%s'\n", cmd, v);
        return 2;
      }
      o->op = v;
    } else if (!strcmp(a, "--dtype")) {
      if (!cli_parse_dtype(v, &o->dtypes[0])) {
        fprintf(stderr, "seqmix %s: --dtype must be f32, f16 or bf16, not '%s'\n", cmd, v);
        return 2;
      }
      o->dtype_count = 1;
    } else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 0);
    else {
      fprintf(stderr, "seqmix %s: unknown option '%s'\n", cmd, a);
      return 2;
    }
  }
  return 0;
}

int cli_select_devices(const char *cmd, const char *want, size_t *indices, size_t cap,
                       size_t *count) {
  size_t n = 0;
  *count = 0;
  if (seqmix_device_count(&n)) {
    fprintf(stderr, "seqmix %s: %s\n", cmd, seqmix_last_error());
    return 1;
  }
  if (!want || !*want) want = getenv("SEQMIX_DEVICE");
  if (!want || !*want || !strcmp(want, "auto")) {
    size_t chosen = 0;
    seqmix_device_auto(&chosen);
    indices[(*count)++] = chosen;
    return 0;
  }
  for (size_t i = 0; i < n && *count < cap; ++i) {
    seqmix_device_info info;
    if (seqmix_device_info_get(i, &info)) continue;
    if (!strcmp(want, "all") || !strcmp(want, info.id)) indices[(*count)++] = i;
  }
  if (*count == 0) {
    fprintf(stderr, "seqmix %s: no device '%s' (see `seqmix devices`)\n", cmd, want);
    return 2;
  }
  return 0;
}

seqmix_status cli_open(size_t index, seqmix_context **ctx, seqmix_device_info *info) {
  seqmix_status st = seqmix_device_info_get(index, info);
  if (st) return st;
  seqmix_context_options o = {.device = info->id};
  return seqmix_context_create(&o, ctx);
}
