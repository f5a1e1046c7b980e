/* CPU recurrent mixers: selective scan, SSD, linear attention. (work in progress) */
#include "backend/cpu/cpu.h"

seqmix_status sm_cpu_selective_scan(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: not yet on the CPU", op->name);
}
seqmix_status sm_cpu_ssd(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: not yet on the CPU", op->name);
}
seqmix_status sm_cpu_linear_attention(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: not yet on the CPU", op->name);
}
