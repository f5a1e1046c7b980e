#ifndef SEQMIX_CLI_OPTIONS_H
#define SEQMIX_CLI_OPTIONS_H

#include "cli.h"

typedef struct cli_options {
  const char *device; /* NULL: $SEQMIX_DEVICE or auto; "all": every device */
  const char *op;     /* NULL: every op */
  seqmix_dtype dtypes[3];
  int dtype_count; /* 0: the command's default */
  bool json;
  unsigned long long seed; /* 0: fresh */
} cli_options;

/* Returns 0, or the exit status after printing the problem. */
int cli_parse_options(const char *cmd, int argc, char **argv, cli_options *o, bool allow_json);
int cli_select_devices(const char *cmd, const char *want, size_t *indices, size_t cap,
                       size_t *count);
seqmix_status cli_open(size_t index, seqmix_context **ctx, seqmix_device_info *info);

#endif
