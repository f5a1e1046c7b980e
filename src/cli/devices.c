/* seqmix devices: a table of every device the backends list. */
#include "cli.h"

#include <string.h>

static void human_bytes(uint64_t bytes, char *buf, size_t size) {
  if (bytes >= (1ull << 30)) snprintf(buf, size, "%.1f GiB", (double)bytes / (1ull << 30));
  else if (bytes >= (1ull << 20)) snprintf(buf, size, "%.1f MiB", (double)bytes / (1ull << 20));
  else snprintf(buf, size, "%llu KiB", (unsigned long long)(bytes >> 10));
}

int cli_devices(int argc, char **argv) {
  (void)argv;
  if (argc > 1) {
    fprintf(stderr, "usage: seqmix devices\n");
    return 2;
  }
  size_t n = 0, chosen = 0;
  if (seqmix_device_count(&n) || seqmix_device_auto(&chosen)) {
    fprintf(stderr, "seqmix devices: %s\n", seqmix_last_error());
    return 1;
  }
  printf("  %-10s %-7s %-15s %-44s %-28s %10s %4s %4s %10s %6s\n", "id", "backend", "kind", "name",
         "driver", "memory", "CUs", "SG", "local mem", "fp16");
  for (size_t i = 0; i < n; ++i) {
    seqmix_device_info d;
    if (seqmix_device_info_get(i, &d)) continue;
    char mem[32], local[32], fp16[16];
    human_bytes(d.memory_bytes, mem, sizeof mem);
    human_bytes(d.local_memory_bytes, local, sizeof local);
    snprintf(fp16, sizeof fp16, "%s", d.fp16_arithmetic ? "math" : d.fp16_storage ? "store" : "no");
    printf("%c %-10s %-7s %-15s %-44.44s %-28.28s %10s %4u %4u %10s %6s\n", i == chosen ? '*' : ' ',
           d.id, seqmix_backend_name(d.backend), seqmix_device_kind_name(d.kind), d.name, d.driver,
           mem, d.compute_units, d.subgroup_size, local, fp16);
  }
  printf("\n* = what `auto` picks (software implementations are never preferred over the CPU path)\n");
  return 0;
}
