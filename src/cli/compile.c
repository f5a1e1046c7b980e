/* seqmix compile: OpenCL program binaries for offline devices (being written). */
#include "cli.h"

int cli_compile(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "seqmix compile: not available in this build\n");
  return 2;
}
