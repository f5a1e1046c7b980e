#!/usr/bin/env python3
"""Writes a copy of vkFFT.h (1.2.26, Debian libvkfft-dev) that compiles as C
against glslang 12 and does not leak:
- `VkCommandBuffer commandBuffer = {};` (an empty scalar initializer gcc
  rejects) becomes `= 0`;
- the positional glslang_resource_t initializer, older than glslang 12's
  struct, gives way to glslang's own glslang_default_resource();
- the R2C plan's host twiddle table is freed when the forward plan borrows the
  inverse plan's table (1.2.26 leaks it: up to N floats per plan).
The copy silences the header's own warnings (our build is -Werror), so the
backends that include it need no pragmas of their own.
Fails loudly when the header no longer matches."""
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
text = open(src).read()
fixed = text.replace("VkCommandBuffer commandBuffer = {};", "VkCommandBuffer commandBuffer = 0;")
fixed, n = re.subn(r"const glslang_resource_t default_resource = [{].*?[}] [}];", "", fixed,
                   flags=re.S)
fixed = fixed.replace("&default_resource,", "glslang_default_resource(),")
borrow = ("axis->bufferLUTSize = app->localFFTPlan_inverse->R2Cdecomposition.bufferLUTSize;\n"
          "\t\t\t\taxis->referenceLUT = 1;\n")
leaks = fixed.count(borrow)
fixed = fixed.replace(borrow, borrow + "\t\t\t\tfree(tempLUT);\n\t\t\t\ttempLUT = 0;\n")
if fixed == text or n == 0 or leaks == 0:
    sys.exit("vkfft_c.py: %s does not look like vkFFT 1.2.26; update the patch" % src)
silenced = ["unused-parameter", "unused-variable", "unused-but-set-variable", "unused-function",
            "sign-compare", "format-overflow", "format-truncation", "stringop-overflow",
            "stringop-truncation", "array-bounds", "maybe-uninitialized", "restrict",
            "missing-field-initializers", "dangling-pointer"]
head = "#pragma GCC diagnostic push\n" + "".join(
    '#pragma GCC diagnostic ignored "-W%s"\n' % w for w in silenced)
open(dst, "w").write(head + fixed + "\n#pragma GCC diagnostic pop\n")
