/* OpenCL launches of the recurrent mixers (selective scan, SSD, linear attention). */
#include "backend/opencl/opencl.h"
