/* Long convolution on the CPU (being written). */
#include "backend/cpu/cpu.h"

seqmix_status sm_cpu_long_conv(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: not written yet", op->name);
}
