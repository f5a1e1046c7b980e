#version 450
// Log-sum-exp merge of attention partials, one part per dispatch.
//
// Dispatch i folds part i (out_i, lse_i) into a running f32 accumulator per
// row (acc[Dv], m, l) in a scratch buffer:
//   m' = max(m, lse_i), f = exp(m - m'), w = exp(lse_i - m'),
//   acc = acc * f + w * out_i, l = l * f + w
// (a part with lse_i = -inf contributes nothing). FIRST starts from
// acc = 0, m = -inf, l = 0 without reading the scratch; LAST writes
// out = acc / l (zeros when l = 0) and lse = m + log(l) instead of the
// accumulator. SIGMOID (key splits of sigmoid attention) adds the parts.
// ALL_PARTS (key splits of attention): one dispatch folds all p.nparts f32
// parts, which lie p.part_stride floats apart in binding 0 (out and lse
// alike), straight into out and lse: m = max lse_i, l = sum exp(lse_i - m),
// out = sum exp(lse_i - m) out_i / l. No accumulator, no dispatch per part.
// Serves SM_OP_ATTENTION_MERGE (parts in out's dtype, any strides) and the
// key splits of attention (parts f32 in the scratch buffer, PART_F32).
// A row is LANES adjacent invocations stepping over its Dv columns; rows are
// (b, t, h) in order, spread over x and y work-groups.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int LANES = 16;
layout(constant_id = 2) const bool FIRST = true;
layout(constant_id = 3) const bool LAST = true;
layout(constant_id = 4) const bool SIGMOID = false;
layout(constant_id = 5) const bool PART_F32 = false;
layout(constant_id = 6) const bool ACT_BF16 = false;
layout(constant_id = 7) const bool HAS_LSE = false;
layout(constant_id = 8) const bool ALL_PARTS = false;

layout(std430, set = 0, binding = 0) readonly buffer PartBuffer { ACT_T po[]; };
layout(std430, set = 0, binding = 0) readonly buffer PartF32 { float pof[]; };
layout(std430, set = 0, binding = 1) readonly buffer PartLse { float pl[]; };
layout(std430, set = 0, binding = 2) buffer Scratch { float scr[]; };
layout(std430, set = 0, binding = 3) writeonly buffer OutBuffer { ACT_T o[]; };
layout(std430, set = 0, binding = 4) writeonly buffer LseBuffer { float lse[]; };

layout(push_constant) uniform Params {
  int lq, hq, dv, rows;
  int po_off, po_s0, po_s1, po_s2;
  int pl_off, pl_s0, pl_s1, pl_s2; // [B, Hq, Lq]
  int o_off, o_s0, o_s1, o_s2;
  int l_off, l_s0, l_s1, l_s2;
  int acc_off, ml_off; // in scr: acc [rows][dv], then (m, l) per row
  int nparts, part_stride; // ALL_PARTS
} p;

#define NEG_INF uintBitsToFloat(0xff800000u)

// Every part of one row at once (ALL_PARTS; parts f32). Each lane of the row
// reads the row's lse values itself: no shared memory, no barrier.
void merge_all_parts(int row, int col, int b, int t, int h) {
  const int lse_at = p.pl_off + b * p.pl_s0 + h * p.pl_s1 + t * p.pl_s2;
  const int part_row = p.po_off + b * p.po_s0 + t * p.po_s1 + h * p.po_s2;
  float m = NEG_INF, l = 0.0;
  if (!SIGMOID) {
    for (int i = 0; i < p.nparts; ++i)
      m = max(m, pl[lse_at + i * p.part_stride]);
    if (m != NEG_INF)
      for (int i = 0; i < p.nparts; ++i)
        l += exp(pl[lse_at + i * p.part_stride] - m);
  }
  const int out_row = p.o_off + b * p.o_s0 + t * p.o_s1 + h * p.o_s2;
  for (int c = col; c < p.dv; c += LANES) {
    float a = 0.0;
    for (int i = 0; i < p.nparts; ++i) {
      const float x = pof[part_row + i * p.part_stride + c];
      if (SIGMOID) {
        a += x;
      } else {
        const float li = pl[lse_at + i * p.part_stride];
        // A part that saw no key (lse = -inf) adds nothing, whatever it holds.
        if (li != NEG_INF) a += exp(li - m) * x;
      }
    }
    o[out_row + c] = ACT_STORE(SIGMOID ? a : (l > 0.0 ? a / l : 0.0), ACT_BF16);
  }
  if (HAS_LSE && !SIGMOID && col == 0)
    lse[p.l_off + b * p.l_s0 + h * p.l_s1 + t * p.l_s2] = l > 0.0 ? m + log(l) : NEG_INF;
}

void main() {
  const int lane = int(gl_LocalInvocationID.x);
  const int per_group = int(gl_WorkGroupSize.x) / LANES;
  const int group = int(gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x);
  const int row = group * per_group + lane / LANES, col = lane % LANES;
  const bool live = row < p.rows;
  const int h = row % p.hq, t = (row / p.hq) % p.lq, b = row / (p.hq * p.lq);
  if (ALL_PARTS) { // a specialization constant: the same branch for every invocation
    if (live) merge_all_parts(row, col, b, t, h);
    return;
  }

  float m = NEG_INF, l = 0.0, f = 1.0, w = 1.0;
  if (live && !FIRST && !SIGMOID) {
    m = scr[p.ml_off + 2 * row];
    l = scr[p.ml_off + 2 * row + 1];
  }
  if (live && !SIGMOID) {
    const float li = pl[p.pl_off + b * p.pl_s0 + h * p.pl_s1 + t * p.pl_s2];
    if (li == NEG_INF) {
      w = 0.0;
    } else {
      const float m_new = max(m, li);
      f = m == NEG_INF ? 0.0 : exp(m - m_new);
      w = exp(li - m_new);
      l = l * f + w;
      m = m_new;
    }
  }
  if (live) {
    const int part_row = p.po_off + b * p.po_s0 + t * p.po_s1 + h * p.po_s2;
    const int out_row = p.o_off + b * p.o_s0 + t * p.o_s1 + h * p.o_s2;
    const int acc_row = p.acc_off + row * p.dv;
    for (int c = col; c < p.dv; c += LANES) {
      float a = FIRST ? 0.0 : scr[acc_row + c];
      if (w != 0.0) {
        const float x = PART_F32 ? pof[part_row + c] : ACT_LOAD(po[part_row + c], ACT_BF16);
        a = SIGMOID ? a + x : a * f + w * x;
      } else {
        a *= f;
      }
      if (LAST) {
        const float r = SIGMOID ? a : (l > 0.0 ? a / l : 0.0);
        o[out_row + c] = ACT_STORE(r, ACT_BF16);
      } else {
        scr[acc_row + c] = a;
      }
    }
  }
  // Every lane of the row has read (m, l) before its first lane overwrites them.
  barrier();
  if (live && col == 0 && !SIGMOID) {
    if (!LAST) {
      scr[p.ml_off + 2 * row] = m;
      scr[p.ml_off + 2 * row + 1] = l;
    } else if (HAS_LSE) {
      lse[p.l_off + b * p.l_s0 + h * p.l_s1 + t * p.l_s2] = l > 0.0 ? m + log(l) : NEG_INF;
    }
  }
}
