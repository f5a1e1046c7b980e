/* seqmix: list devices, verify them against the float64 reference, benchmark. */
#include "cli.h"

#include <string.h>
#include <time.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: seqmix COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  devices                       list every device; * marks what `auto` picks\n"
          "  verify [--device ID|all] [--op NAME] [--dtype f32|f16|bf16] [--seed N]\n"
          "                                run each op on random inputs against the float64\n"
          "                                reference; exit status 1 on any failure\n"
          "  bench [--device ID|all] [--op NAME] [--dtype f32|f16|bf16] [--json]\n"
          "                                time each op on named shapes, as fractions of this\n"
          "                                machine's roofline measured in the same run\n"
          "  demo [--device ID] [--dtype f32|f16|bf16] [--prompt N] [--decode N] [...]\n"
          "                                the mixers of a small hybrid model: prompt prefill,\n"
          "                                then token-by-token decode, checked against the CPU\n"
          "  tune [--device ID|all] [--op NAME] [--dtype f32|f16|bf16] [--max-seconds S]\n"
          "                                time each tuning knob's candidates on the op's cases\n"
          "                                and store the winners for that device and driver\n"
          "  compile --device opencl:N --out DIR\n"
          "                                write OpenCL program binaries of every kernel variant\n"
          "                                (for FPGA and no-compiler devices)\n"
          "\n"
          "ops: ");
  for (int i = 0; i < cli_op_count; ++i) fprintf(f, "%s%s", i ? ", " : "", cli_ops[i]->name);
  fprintf(f, "\ndevice ids: auto, cpu, opencl:N, vulkan:N (see `seqmix devices`); default: "
             "$SEQMIX_DEVICE, else auto\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("seqmix %d.%d.%d\n", SEQMIX_VERSION_MAJOR, SEQMIX_VERSION_MINOR, SEQMIX_VERSION_PATCH);
    return 0;
  }
  if (!strcmp(argv[1], "devices")) return cli_devices(argc - 1, argv + 1);
  if (!strcmp(argv[1], "verify")) return cli_verify(argc - 1, argv + 1);
  if (!strcmp(argv[1], "bench")) return cli_bench(argc - 1, argv + 1);
  if (!strcmp(argv[1], "demo")) return cli_demo(argc - 1, argv + 1);
  if (!strcmp(argv[1], "compile")) return cli_compile(argc - 1, argv + 1);
  if (!strcmp(argv[1], "tune")) return cli_tune(argc - 1, argv + 1);
  fprintf(stderr, "seqmix: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}

double cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool cli_parse_dtype(const char *s, seqmix_dtype *out) {
  static const seqmix_dtype all[] = {SEQMIX_F32, SEQMIX_F16, SEQMIX_BF16};
  for (int i = 0; i < 3; ++i)
    if (!strcmp(s, seqmix_dtype_name(all[i]))) {
      *out = all[i];
      return true;
    }
  return false;
}

double cli_tolerance(seqmix_dtype dtype) {
  return dtype == SEQMIX_F16 ? 3e-3 : dtype == SEQMIX_BF16 ? 2e-2 : 1e-5;
}

const cli_op *const cli_ops[] = {&cli_conv1d_op, &cli_attention_op, &cli_scan_op, &cli_ssd_op,
                                 &cli_linattn_op, &cli_conv2d_op, &cli_longconv_op, &cli_pool_op};
const int cli_op_count = sizeof cli_ops / sizeof cli_ops[0];

const cli_op *cli_find_op(const char *name) {
  for (int i = 0; i < cli_op_count; ++i)
    if (!strcmp(cli_ops[i]->name, name)) return cli_ops[i];
  return NULL;
}
