/* Long convolution: direct kernel and the FFT path's pack, multiply and unpack (not written yet). */
