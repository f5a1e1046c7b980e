/*
 * seqmix compile: OpenCL program binaries of every kernel variant a device's
 * ops can launch, for FPGA cards and other devices without an online compiler
 * (DESIGN.md section 7). The library enumerates the variants
 * (seqmix_compile_binaries); this command parses the sizes to enumerate,
 * shows progress and writes DIR/MANIFEST.txt (file, source, options).
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_SIZES = 64 };

typedef struct compile_run {
  FILE *manifest; /* NULL in a dry run: the list goes to stdout */
  bool verbose;
  size_t seen, failed;
  double start;
} compile_run;

static void on_variant(void *user, const char *file, const char *source, const char *options,
                       seqmix_status status) {
  compile_run *run = user;
  run->seen++;
  if (status) run->failed++;
  FILE *out = run->manifest ? run->manifest : stdout;
  fprintf(out, "%s\t%s\t%s%s%s\n", file, source, options, status ? "\tFAILED " : "",
          status ? seqmix_status_name(status) : "");
  if (status) fprintf(stderr, "\nseqmix compile: %s [%s]: %s\n", source, options, seqmix_last_error());
  if (run->manifest && (run->verbose || run->seen % 25 == 0))
    fprintf(stderr, "\r%zu variants built (%zu failed), %.0f s", run->seen, run->failed,
            cli_now() - run->start);
}

/* "64,128" into sizes; false (with a message) on anything else. */
static bool parse_sizes(const char *flag, const char *text, int32_t *sizes, int *count) {
  *count = 0;
  const char *p = text;
  while (*p) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < 1 || v > 4096 || (*end && *end != ',')) {
      fprintf(stderr, "seqmix compile: %s '%s': expected sizes 1 to 4096 separated by commas\n",
              flag, text);
      return false;
    }
    if (*count == MAX_SIZES) {
      fprintf(stderr, "seqmix compile: %s: at most %d sizes\n", flag, MAX_SIZES);
      return false;
    }
    sizes[(*count)++] = (int32_t)v;
    p = *end ? end + 1 : end;
  }
  if (*count == 0) {
    fprintf(stderr, "seqmix compile: %s needs at least one size\n", flag);
    return false;
  }
  return true;
}

static bool parse_dtypes(const char *text, uint32_t *mask) {
  char list[64];
  snprintf(list, sizeof list, "%s", text);
  *mask = 0;
  for (char *name = strtok(list, ","); name; name = strtok(NULL, ",")) {
    seqmix_dtype dt;
    if (!cli_parse_dtype(name, &dt)) {
      fprintf(stderr, "seqmix compile: --dtype '%s': expected f32, f16 or bf16 (comma-separated)\n",
              text);
      return false;
    }
    *mask |= 1u << dt;
  }
  return *mask != 0;
}

static void usage(FILE *f) {
  fprintf(f, "usage: seqmix compile --device opencl:N --out DIR [--dtype f32,f16,bf16]\n"
             "                      [--head-dims 64,128] [--state-sizes 16,64,128]\n"
             "                      [--chunk-sizes N,...] [--dry-run] [--verbose]\n"
             "Writes an OpenCL program binary of every kernel variant the device's ops can\n"
             "launch for these dtypes and sizes (every flag and tuning choice included) into\n"
             "DIR, and DIR/MANIFEST.txt. A device without a compiler, or any device while\n"
             "SEQMIX_CL_BINARY_DIR=DIR is set, then loads its kernels only from DIR.\n"
             "--dry-run lists the variants (file, source, options) without building them.\n");
}

int cli_compile(int argc, char **argv) {
  const char *device = NULL, *out = NULL;
  int32_t head_dims[MAX_SIZES], state_sizes[MAX_SIZES], chunk_sizes[MAX_SIZES];
  seqmix_compile_options o = {0};
  compile_run run = {0};
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const bool has_value = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--dry-run")) {
      o.dry_run = true;
    } else if (!strcmp(a, "--verbose")) {
      run.verbose = true;
    } else if (!has_value) {
      fprintf(stderr, "seqmix compile: %s needs a value (or is unknown)\n\n", a);
      usage(stderr);
      return 2;
    } else if (!strcmp(a, "--device")) {
      device = argv[++i];
    } else if (!strcmp(a, "--out")) {
      out = argv[++i];
    } else if (!strcmp(a, "--dtype")) {
      if (!parse_dtypes(argv[++i], &o.dtypes)) return 2;
    } else if (!strcmp(a, "--head-dims")) {
      if (!parse_sizes(a, argv[++i], head_dims, &o.head_dim_count)) return 2;
      o.head_dims = head_dims;
    } else if (!strcmp(a, "--state-sizes")) {
      if (!parse_sizes(a, argv[++i], state_sizes, &o.state_size_count)) return 2;
      o.state_sizes = state_sizes;
    } else if (!strcmp(a, "--chunk-sizes")) {
      if (!parse_sizes(a, argv[++i], chunk_sizes, &o.chunk_size_count)) return 2;
      o.chunk_sizes = chunk_sizes;
    } else {
      fprintf(stderr, "seqmix compile: unknown option '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!device || (!out && !o.dry_run)) {
    fprintf(stderr, "seqmix compile: --device and --out are required (--out not with --dry-run)\n\n");
    usage(stderr);
    return 2;
  }
  seqmix_context_options co = {.device = device};
  seqmix_context *ctx = NULL;
  seqmix_status st = seqmix_context_create(&co, &ctx);
  if (st) {
    fprintf(stderr, "seqmix compile: --device %s: %s\n", device, seqmix_last_error());
    return 1;
  }
  char manifest_path[4096];
  if (!o.dry_run) {
    /* The library creates DIR; the manifest is written once it exists. */
    snprintf(manifest_path, sizeof manifest_path, "%s/MANIFEST.txt.tmp", out);
    run.manifest = tmpfile();
    if (!run.manifest) {
      fprintf(stderr, "seqmix compile: cannot make a temporary file: %s\n", strerror(errno));
      seqmix_context_destroy(ctx);
      return 1;
    }
  }
  o.on_variant = on_variant;
  o.user = &run;
  run.start = cli_now();
  seqmix_compile_summary summary;
  st = seqmix_compile_binaries(ctx, out ? out : "/nonexistent", &o, &summary);
  const char *error = st ? seqmix_last_error() : "";
  if (run.manifest) fprintf(stderr, "\r");
  fprintf(stderr, "seqmix compile: %zu variants, %zu written, %zu failed, %.1f s%s%s\n",
          summary.variants, summary.written, summary.failed, cli_now() - run.start,
          st ? ": " : "", error);
  int rc = st ? 1 : 0;
  if (run.manifest && summary.written > 0) {
    /* Copy the manifest next to the binaries. */
    FILE *f = fopen(manifest_path, "w");
    bool ok = f != NULL;
    rewind(run.manifest);
    char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, run.manifest)) > 0)
      ok = fwrite(buf, 1, n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    char final_path[4096];
    snprintf(final_path, sizeof final_path, "%s/MANIFEST.txt", out);
    if (!ok || rename(manifest_path, final_path) != 0) {
      fprintf(stderr, "seqmix compile: cannot write %s: %s\n", final_path, strerror(errno));
      remove(manifest_path);
      rc = 1;
    }
  }
  if (run.manifest) fclose(run.manifest);
  seqmix_context_destroy(ctx);
  return rc;
}
