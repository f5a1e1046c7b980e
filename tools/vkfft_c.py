#!/usr/bin/env python3
"""Writes a copy of vkFFT.h (1.2.26, Debian libvkfft-dev) that compiles as C
against glslang 12: `VkCommandBuffer commandBuffer = {};` (an empty scalar
initializer gcc rejects) becomes `= 0`, and the positional glslang_resource_t
initializer, older than glslang 12's struct, gives way to glslang's own
glslang_default_resource(). Fails loudly when the header no longer matches."""
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
text = open(src).read()
fixed = text.replace("VkCommandBuffer commandBuffer = {};", "VkCommandBuffer commandBuffer = 0;")
fixed, n = re.subn(r"const glslang_resource_t default_resource = [{].*?[}] [}];", "", fixed,
                   flags=re.S)
fixed = fixed.replace("&default_resource,", "glslang_default_resource(),")
if fixed == text or n == 0:
    sys.exit("vkfft_c.py: %s does not look like vkFFT 1.2.26; update the patch" % src)
open(dst, "w").write(fixed)
