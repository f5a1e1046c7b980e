#version 450
// Softmax (or sigmoid) attention, FlashAttention-2 style.
//
// A work-group owns ROWS query rows of one (sequence, k head): row r is query
// token r / G and q head hk * G + r % G (G = q heads per k head), so the q
// heads sharing a k head share every K/V block staged in shared memory. It
// walks the keys the rows can see (cut to its key split) in blocks of BK:
//   1. stage K block (f32) in shared memory
//   2. S = (scale Q) K^T for ROWS x BK, masked (causal/window/split end) to
//      -inf, softcapped; an invocation owns one key and RPL rows, walking D
//      once (K transposed in shared memory)
//   3. stage V block over the K block; one invocation per row runs the online
//      softmax (block max, rescale factor, exp, running sum) on its row of S
//   4. O = O * factor + P V, O in registers: invocation i owns columns
//      i, i + WG, ... of every row of the ROWS x DV output tile
// The work-group is BK invocations, and rows and columns are loop counters,
// so that shared Q and P words are uniform loads (on lavapipe, a per-lane
// shared load costs a scalar load per lane).
// Blocks wholly outside every row's mask are never visited.
// Work-groups: x over row blocks, y over (k head, key split), z over sequences.
// Without splits, out and lse get the final rows. With splits (decode and
// other few-row cases) each split writes its normalised partial output (f32)
// and lse into a scratch part (part stride p.part), merged afterwards by
// attention_merge.comp; sigmoid writes unnormalised sums, merged by adding.
// Sizes, strides and element offsets (inside each binding) are int32 push
// constants; the host checked that every index fits.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int ROWS = 16;
layout(constant_id = 2) const int BK = 16;
layout(constant_id = 3) const int D = 64;
layout(constant_id = 4) const int DV = 64;
layout(constant_id = 5) const int UNUSED5 = 0;
layout(constant_id = 6) const int WG = 64;    // = local size = BK
layout(constant_id = 7) const int Q_SIZE = 1024;  // ROWS * D
layout(constant_id = 8) const int KV_SIZE = 1024; // BK * max(D, DV)
layout(constant_id = 9) const int S_SIZE = 256;   // ROWS * BK
layout(constant_id = 10) const bool CAUSAL = false;
layout(constant_id = 11) const bool VARLEN = false;
layout(constant_id = 12) const bool HAS_USED = false;
layout(constant_id = 13) const bool HAS_LSE = false;
layout(constant_id = 14) const bool SIGMOID = false;
layout(constant_id = 15) const bool OUT_F32 = false; // splits: f32 scratch parts
layout(constant_id = 16) const bool ACT_BF16 = false;
layout(constant_id = 17) const bool SOFTCAP = false;
layout(constant_id = 18) const int CPL = 1; // ceil(DV / WG): output columns per invocation

layout(std430, set = 0, binding = 0) restrict readonly buffer QBuffer { ACT_T q[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer KBuffer { ACT_T k[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer VBuffer { ACT_T v[]; };
layout(std430, set = 0, binding = 3) writeonly buffer OutBuffer { ACT_T o[]; };
layout(std430, set = 0, binding = 3) writeonly buffer OutF32 { float of[]; };
layout(std430, set = 0, binding = 4) writeonly buffer LseBuffer { float lse[]; };
layout(std430, set = 0, binding = 5) restrict readonly buffer CuQ { int cu_q[]; };
layout(std430, set = 0, binding = 6) restrict readonly buffer CuK { int cu_k[]; };
layout(std430, set = 0, binding = 7) restrict readonly buffer Used { int used[]; };

layout(push_constant) uniform Params {
  int q_off, q_s0, q_s1, q_s2;
  int k_off, k_s0, k_s1, k_s2;
  int v_off, v_s0, v_s1, v_s2;
  int o_off, o_s0, o_s1, o_s2;
  int l_off, l_s0, l_s1, l_s2; // lse [B, Hq, Lq]
  int part;                    // element stride between split parts (out and lse)
  int lq, lk, group, splits, split_len, window;
  int index_offsets;           // cu_q, cu_k, seqused_k element offsets, 10 bits each
  float scale, softcap, sigmoid_bias;
} p;

shared float qs[Q_SIZE];
shared float kv[KV_SIZE];
shared float ss[S_SIZE];
shared float row_factor[ROWS];
shared float row_l[ROWS];
shared float row_m[ROWS];

#define NEG_INF uintBitsToFloat(0xff800000u)

void main() {
  const int lane = int(gl_LocalInvocationID.x);
  const int qb = int(gl_WorkGroupID.x);
  const int split = int(gl_WorkGroupID.y) % p.splits, hk = int(gl_WorkGroupID.y) / p.splits;
  const int b = int(gl_WorkGroupID.z);
  int q0 = 0, k0 = 0, lq = p.lq, lk = p.lk, tb = b;
  if (VARLEN) {
    const int cq = p.index_offsets & 1023, ck = (p.index_offsets >> 10) & 1023;
    q0 = cu_q[cq + b];
    lq = cu_q[cq + b + 1] - q0;
    k0 = cu_k[ck + b];
    lk = cu_k[ck + b + 1] - k0;
    tb = 0;
  }
  if (HAS_USED) lk = used[((p.index_offsets >> 20) & 1023) + b];
  const int G = p.group;
  const int r0 = qb * ROWS;
  if (r0 >= lq * G) return; // the whole work-group: before any barrier
  const int rows = min(ROWS, lq * G - r0);

  // Keys any row may see, cut to this split.
  const int shift = lk - lq;
  int lo = 0, hi = lk - 1;
  if (CAUSAL) {
    hi = min(hi, (r0 + rows - 1) / G + shift);
    if (p.window > 0) lo = max(0, r0 / G + shift - p.window + 1);
  }
  lo = max(lo, split * p.split_len);
  hi = min(hi, split * p.split_len + p.split_len - 1);

  for (int e = lane; e < ROWS * D; e += WG) {
    const int r = e / D, c = e % D;
    float x = 0.0;
    if (r < rows) {
      const int row = r0 + r, t = row / G, h = hk * G + row % G;
      x = ACT_LOAD(q[p.q_off + tb * p.q_s0 + (q0 + t) * p.q_s1 + h * p.q_s2 + c], ACT_BF16) *
          p.scale;
    }
    qs[e] = x;
  }

  for (int r = lane; r < ROWS; r += WG) {
    row_m[r] = NEG_INF;
    row_l[r] = 0.0;
  }
  // acc[t * CPL + u]: row t, column lane + WG * u.
  float acc[ROWS * CPL];
  for (int i = 0; i < ROWS * CPL; ++i) acc[i] = 0.0;
  const int k_base = p.k_off + tb * p.k_s0 + k0 * p.k_s1 + hk * p.k_s2;
  const int v_base = p.v_off + tb * p.v_s0 + k0 * p.v_s1 + hk * p.v_s2;

  for (int j0 = lo; j0 <= hi; j0 += BK) {
    const int n = min(BK, hi - j0 + 1);
    barrier(); // the previous block's V and P are consumed (and Q is staged)
    // K block transposed, [D][BK]: invocation j reads column j.
    for (int e = lane; e < BK * D; e += WG) {
      const int j = e / D, c = e % D;
      kv[c * BK + j] = j < n ? ACT_LOAD(k[k_base + (j0 + j) * p.k_s1 + c], ACT_BF16) : 0.0;
    }
    barrier();
    {
      // Invocation j = lane owns key j for every row (BK == WG): the row and
      // column indices are loop counters, so q words are uniform loads.
      const int j = lane;
      float dots[ROWS];
      for (int t = 0; t < ROWS; ++t) dots[t] = 0.0;
      for (int c = 0; c < D; ++c) {
        const float kc = kv[c * BK + j];
        for (int t = 0; t < ROWS; ++t) dots[t] = fma(qs[t * D + c], kc, dots[t]);
      }
      const int key = j0 + j;
      for (int t = 0; t < ROWS; ++t) {
        const int diag = (r0 + t) / G + shift;
        bool seen = t < rows && j < n;
        if (CAUSAL) seen = seen && key <= diag && (p.window <= 0 || key > diag - p.window);
        ss[t * BK + j] = seen ? (SOFTCAP ? p.softcap * tanh(dots[t] / p.softcap) : dots[t])
                              : NEG_INF;
      }
    }
    barrier();
    for (int e = lane; e < BK * DV; e += WG) {
      const int j = e / DV, c = e % DV;
      kv[e] = j < n ? ACT_LOAD(v[v_base + (j0 + j) * p.v_s1 + c], ACT_BF16) : 0.0;
    }
    for (int r = lane; r < ROWS; r += WG) {
      float factor = 1.0, m = row_m[r], l = row_l[r];
      if (SIGMOID) {
        for (int j = 0; j < BK; ++j) {
          const float s = ss[r * BK + j];
          const float w = s == NEG_INF ? 0.0 : 1.0 / (1.0 + exp(-(s + p.sigmoid_bias)));
          ss[r * BK + j] = w;
          l += w;
        }
      } else {
        float block_max = NEG_INF;
        for (int j = 0; j < BK; ++j) block_max = max(block_max, ss[r * BK + j]);
        if (block_max == NEG_INF) {
          for (int j = 0; j < BK; ++j) ss[r * BK + j] = 0.0;
        } else {
          const float m_new = max(m, block_max);
          factor = m == NEG_INF ? 0.0 : exp(m - m_new);
          float sum = 0.0;
          for (int j = 0; j < BK; ++j) {
            const float s = ss[r * BK + j];
            const float w = s == NEG_INF ? 0.0 : exp(s - m_new);
            ss[r * BK + j] = w;
            sum += w;
          }
          l = l * factor + sum;
          m = m_new;
        }
      }
      row_factor[r] = factor;
      row_m[r] = m;
      row_l[r] = l;
    }
    barrier();
    // O = O * factor + P V: P words are uniform loads, V words adjacent.
    for (int t = 0; t < ROWS; ++t) {
      const float f = row_factor[t];
      for (int u = 0; u < CPL; ++u) acc[t * CPL + u] *= f;
    }
    for (int j = 0; j < BK; ++j)
      for (int u = 0; u < CPL; ++u) {
        const int c = min(lane + WG * u, DV - 1);
        const float vj = kv[j * DV + c];
        for (int t = 0; t < ROWS; ++t) acc[t * CPL + u] = fma(ss[t * BK + j], vj, acc[t * CPL + u]);
      }
  }

  barrier();
  const int part = split * p.part;
  for (int t = 0; t < rows; ++t) {
    const int row = r0 + t, qt = row / G, h = hk * G + row % G;
    const float lr = row_l[t];
    for (int u = 0; u < CPL; ++u) {
      const int c = lane + WG * u;
      if (c >= DV) break;
      const float a = acc[t * CPL + u];
      const float x = SIGMOID ? a : (lr > 0.0 ? a / lr : 0.0);
      const int at = p.o_off + part + tb * p.o_s0 + (q0 + qt) * p.o_s1 + h * p.o_s2 + c;
      if (OUT_F32) of[at] = x;
      else o[at] = ACT_STORE(x, ACT_BF16);
    }
  }
  for (int r = lane; HAS_LSE && r < rows; r += WG) {
    const int row = r0 + r, t = row / G, h = hk * G + row % G;
    const float l = row_l[r];
    lse[p.l_off + part + tb * p.l_s0 + h * p.l_s1 + (q0 + t) * p.l_s2] =
        l > 0.0 ? row_m[r] + log(l) : NEG_INF;
  }
}
