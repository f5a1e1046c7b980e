/* Depthwise 2D convolution and the pool mixer on the CPU (being written). */
#include "backend/cpu/cpu.h"

seqmix_status sm_cpu_conv2d_depthwise(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: not written yet", op->name);
}

seqmix_status sm_cpu_pool_mixer(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: not written yet", op->name);
}
