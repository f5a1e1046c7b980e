/* SM_OP_CONV2D_DEPTHWISE and SM_OP_POOL_MIXER on Vulkan (shaders/conv2d.comp).
 * Not written yet: supports() says no and the CPU fallback runs them. */
#include "backend/vulkan/vulkan.h"

bool sm_vk_conv2d_supports(sm_device *dev, const sm_op *op) {
  (void)dev, (void)op;
  return false;
}

seqmix_status sm_vk_conv2d_launch(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend has no kernel for it", op->name);
}
