/* Depthwise 2D convolution and the pool mixer, NHWC (not written yet). */
