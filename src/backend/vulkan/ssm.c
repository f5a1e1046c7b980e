/* Vulkan launches of the recurrent mixers (selective scan, SSD, linear attention). */
#include "backend/vulkan/vulkan.h"
