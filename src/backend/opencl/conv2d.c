/* SM_OP_CONV2D_DEPTHWISE and SM_OP_POOL_MIXER on OpenCL (cl/conv2d.cl).
 * Not written yet: supports() says no and the CPU fallback runs them. */
#include "backend/opencl/opencl.h"

bool sm_cl_conv2d_supports(sm_device *dev, const sm_op *op) {
  (void)dev, (void)op;
  return false;
}

seqmix_status sm_cl_conv2d_launch(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the opencl backend has no kernel for it", op->name);
}
