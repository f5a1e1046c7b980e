/* SM_OP_LONG_CONV on Vulkan (shaders/long_conv.comp; FFT through VkFFT).
 * Not written yet: supports() says no and the CPU fallback runs it. */
#include "backend/vulkan/vulkan.h"

bool sm_vk_long_conv_supports(sm_device *dev, const sm_op *op) {
  (void)dev, (void)op;
  return false;
}

seqmix_status sm_vk_long_conv_launch(sm_device *dev, const sm_op *op) {
  (void)dev;
  return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend has no kernel for it", op->name);
}

void sm_vk_long_conv_release(sm_device *dev) { (void)dev; }
