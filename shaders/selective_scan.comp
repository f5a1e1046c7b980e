#version 450
// Selective scan (Mamba-1), softplus on delta, D skip and SiLU(z) gate fused,
// state in/out.
//
// Per batch b and channel d, over tokens t (group g = d / channels_per_group):
//   dt = delta[b,t,d] (+ delta_bias[d]), softplus'd if asked
//   h[n] = exp(dt A[d,n]) h[n] + dt Bm[b,t,g,n] u[b,t,d]
//   y[b,t,d] = (sum_n Cm[b,t,g,n] h[n] + D_skip[d] u[b,t,d]) * silu(z[b,t,d])
// The state h (f32) lives in registers for the whole sequence; the scan is
// sequential over tokens and parallel over (b, d).
//
// Work-groups: x over blocks of WG / N_LANES channels, z over batches. N_LANES
// adjacent invocations share a channel, each owning STATES_PER_LANE of its N
// states (n = lane + N_LANES k, so the lanes of a channel read adjacent Bm and
// Cm words). With N_LANES = 1 an invocation owns a whole channel: no shared
// memory, no barriers (the layout for CPUs such as lavapipe, where a
// work-group is one thread stepping over 8-lane rows). With N_LANES > 1 the
// partial sums of y over n are reduced through shared memory once per block
// of TOKEN_BLOCK tokens: each invocation writes its partials for the block,
// one barrier, then lane l of a channel finishes the block's tokens i with
// i % N_LANES == l, and a second barrier before the partials are rewritten.
// GROUP_UNIFORM: every channel of a work-group is in one group, so Bm and Cm
// words are the same for all its invocations. SPREAD > 1 (CPUs such as
// lavapipe, whose JIT turns every memory access inside control flow into a
// loop over the lanes, uniform address or not): the SPREAD lanes of a
// subgroup, which share a group, each load one of SPREAD adjacent Bm and Cm
// words and subgroupShuffle hands every word to every lane (an extract after
// unrolling), a SPREAD-th of the loads. SPREAD is 1 or the subgroup size, and
// needs N_LANES == 1.
//
// Every loop but the one over tokens is unrolled ([[unroll]]; the bounds are
// specialization constants), so the state and the block's partials stay in
// registers (indexed by loop counters they would live in memory), and so that
// on llvmpipe, which ends every loop after 65535 trips of an invocation, all
// loops together, only the token loop counts (the host cuts long calls into
// runs of tokens below that).
//
// The host checked that N_LANES divides N, that every index fits in int32 and
// that each tensor fits its binding; element offsets inside the bindings are
// packed in p.offsets (SM_OFFSET). Lanes past the last channel shadow it (so
// loads need no branch) and store nothing.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int N = 16;
layout(constant_id = 2) const int N_LANES = 1;
layout(constant_id = 3) const int STATES_PER_LANE = 16; // N / N_LANES
layout(constant_id = 4) const int TOKEN_BLOCK = 1;
layout(constant_id = 5) const int PARTIALS_SIZE = 1; // WG * TOKEN_BLOCK when N_LANES > 1
layout(constant_id = 6) const bool HAS_D_SKIP = false;
layout(constant_id = 7) const bool HAS_Z = false;
layout(constant_id = 8) const bool HAS_DELTA_BIAS = false;
layout(constant_id = 9) const bool SOFTPLUS = false;
layout(constant_id = 10) const bool STATE_IN = false;
layout(constant_id = 11) const bool STATE_OUT = false;
layout(constant_id = 12) const bool ACT_BF16 = false;
layout(constant_id = 13) const bool D_SKIP_16 = false;     // D_skip in the activations' dtype
layout(constant_id = 14) const bool DELTA_BIAS_16 = false; // delta_bias likewise
layout(constant_id = 15) const bool GROUP_UNIFORM = false;
layout(constant_id = 16) const int SPREAD = 1;
const int SPREAD_BLOCKS = (STATES_PER_LANE + SPREAD - 1) / SPREAD; // runs of SPREAD states

// Bindings follow the op's tensor slots (SM_SCAN_*).
layout(std430, set = 0, binding = 0) restrict readonly buffer UBuffer { ACT_T u[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer DeltaBuffer { ACT_T delta[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer ABuffer { float a_log[]; };
layout(std430, set = 0, binding = 3) restrict readonly buffer BBuffer { ACT_T bm[]; };
layout(std430, set = 0, binding = 4) restrict readonly buffer CBuffer { ACT_T cm[]; };
layout(std430, set = 0, binding = 5) readonly buffer DSkip { float d_skip[]; };
layout(std430, set = 0, binding = 6) restrict readonly buffer ZBuffer { ACT_T z[]; };
layout(std430, set = 0, binding = 7) readonly buffer DeltaBias { float delta_bias[]; };
layout(std430, set = 0, binding = 8) restrict buffer StateBuffer { float state[]; };
layout(std430, set = 0, binding = 9) restrict writeonly buffer YBuffer { ACT_T y[]; };
#ifdef ACT_16BIT
// Parameters are F32 or the activations' dtype, each on its own.
layout(std430, set = 0, binding = 5) readonly buffer DSkip16 { uint16_t d_skip16[]; };
layout(std430, set = 0, binding = 7) readonly buffer DeltaBias16 { uint16_t delta_bias16[]; };
#endif
const int B_U = 0, B_DELTA = 1, B_A = 2, B_BM = 3, B_CM = 4, B_D_SKIP = 5, B_Z = 6,
          B_DELTA_BIAS = 7, B_STATE = 8, B_Y = 9;

layout(push_constant) uniform Params {
  int offsets[3]; // element offsets of the bindings, 8 bits each
  int tokens, channels, channels_per_group;
  int u_sb, u_st, delta_sb, delta_st, z_sb, z_st, y_sb, y_st;
  int bm_sb, bm_st, bm_sg, cm_sb, cm_st, cm_sg;
  int a_row, state_sb, state_sd;
} p;

shared float partials[PARTIALS_SIZE]; // [TOKEN_BLOCK][WG]

float d_skip_at(int d) {
#ifdef ACT_16BIT
  if (D_SKIP_16)
    return sm_from_bits16(uint(d_skip16[SM_OFFSET(p.offsets, B_D_SKIP) + d]), ACT_BF16);
#endif
  return d_skip[SM_OFFSET(p.offsets, B_D_SKIP) + d];
}

float delta_bias_at(int d) {
#ifdef ACT_16BIT
  if (DELTA_BIAS_16)
    return sm_from_bits16(uint(delta_bias16[SM_OFFSET(p.offsets, B_DELTA_BIAS) + d]), ACT_BF16);
#endif
  return delta_bias[SM_OFFSET(p.offsets, B_DELTA_BIAS) + d];
}

void main() {
  const int WG = int(gl_WorkGroupSize.x);
  const int lane = int(gl_LocalInvocationID.x);
  const int channels_per_wg = WG / N_LANES;
  const int first = int(gl_WorkGroupID.x) * channels_per_wg;
  const int n_lane = lane % N_LANES;
  const bool live = first + lane / N_LANES < p.channels;
  const int d = min(first + lane / N_LANES, p.channels - 1);
  const int b = int(gl_WorkGroupID.z);
  const int group = GROUP_UNIFORM ? first / p.channels_per_group : d / p.channels_per_group;
  const int sub = SPREAD == 1 ? 0 : int(gl_SubgroupInvocationID);

  float a[STATES_PER_LANE], h[STATES_PER_LANE];
  const int a_row = SM_OFFSET(p.offsets, B_A) + d * p.a_row;
  const int state_row = SM_OFFSET(p.offsets, B_STATE) + b * p.state_sb + d * p.state_sd;
  [[unroll]] for (int k = 0; k < STATES_PER_LANE; ++k) {
    const int n = n_lane + N_LANES * k;
    a[k] = a_log[a_row + n];
    h[k] = STATE_IN ? state[state_row + n] : 0.0;
  }
  const float skip = HAS_D_SKIP ? d_skip_at(d) : 0.0;
  const float bias = HAS_DELTA_BIAS ? delta_bias_at(d) : 0.0;

  int u_at = SM_OFFSET(p.offsets, B_U) + b * p.u_sb + d;
  int delta_at = SM_OFFSET(p.offsets, B_DELTA) + b * p.delta_sb + d;
  int z_at = SM_OFFSET(p.offsets, B_Z) + b * p.z_sb + d;
  int y_at = SM_OFFSET(p.offsets, B_Y) + b * p.y_sb + d;
  int bm_at = SM_OFFSET(p.offsets, B_BM) + b * p.bm_sb + group * p.bm_sg + n_lane;
  int cm_at = SM_OFFSET(p.offsets, B_CM) + b * p.cm_sb + group * p.cm_sg + n_lane;

  for (int t0 = 0; t0 < p.tokens; t0 += TOKEN_BLOCK) {
    const int count = min(TOKEN_BLOCK, p.tokens - t0);
    float part[TOKEN_BLOCK], x[TOKEN_BLOCK];
    [[unroll]] for (int i = 0; i < TOKEN_BLOCK; ++i) {
      part[i] = 0.0;
      x[i] = 0.0;
      if (i < count) {
        float dt = ACT_LOAD(delta[delta_at], ACT_BF16) + bias;
        if (SOFTPLUS) dt = sm_softplus(dt);
        x[i] = ACT_LOAD(u[u_at], ACT_BF16);
        const float dtx = dt * x[i];
        float b_run[SPREAD_BLOCKS], c_run[SPREAD_BLOCKS];
        [[unroll]] for (int r = 0; r < SPREAD_BLOCKS; ++r) {
          const int k = min(r * SPREAD + sub, STATES_PER_LANE - 1);
          b_run[r] = ACT_LOAD(bm[bm_at + N_LANES * k], ACT_BF16);
          c_run[r] = ACT_LOAD(cm[cm_at + N_LANES * k], ACT_BF16);
        }
        [[unroll]] for (int k = 0; k < STATES_PER_LANE; ++k) {
          const int r = k / SPREAD, l = k % SPREAD;
          const float bn = SPREAD == 1 ? b_run[r] : subgroupShuffle(b_run[r], l);
          const float cn = SPREAD == 1 ? c_run[r] : subgroupShuffle(c_run[r], l);
          h[k] = fma(exp(dt * a[k]), h[k], dtx * bn);
          part[i] = fma(cn, h[k], part[i]);
        }
        u_at += p.u_st;
        delta_at += p.delta_st;
        bm_at += p.bm_st;
        cm_at += p.cm_st;
      }
    }

    if (N_LANES > 1) {
      // Lane n_lane of a channel finishes the tokens i = n_lane (mod N_LANES).
      [[unroll]] for (int i = 0; i < TOKEN_BLOCK; ++i) partials[i * WG + lane] = part[i];
      barrier();
      [[unroll]] for (int i = 0; i < TOKEN_BLOCK; ++i) {
        if (i % N_LANES == n_lane) {
          part[i] = 0.0;
          [[unroll]] for (int l = 0; l < N_LANES; ++l)
            part[i] += partials[i * WG + lane - n_lane + l];
        }
      }
      barrier();
    }
    [[unroll]] for (int i = 0; i < TOKEN_BLOCK; ++i) {
      if (i < count && i % N_LANES == n_lane) {
        float result = fma(skip, x[i], part[i]);
        if (HAS_Z) result *= sm_silu(ACT_LOAD(z[z_at + i * p.z_st], ACT_BF16));
        if (live) y[y_at + i * p.y_st] = ACT_STORE(result, ACT_BF16);
      }
    }
    z_at += count * p.z_st;
    y_at += count * p.y_st;
  }

  if (STATE_OUT && live) {
    [[unroll]] for (int k = 0; k < STATES_PER_LANE; ++k)
      state[state_row + n_lane + N_LANES * k] = h[k];
  }
}
