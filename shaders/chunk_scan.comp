#version 450
// Linear recurrences with a matrix state, chunkwise: linear attention (no
// decay, per-head, per-token and per-key-channel (GLA) log-decays) and SSD
// (Mamba-2). Per batch b and head h, with the state S [DK, DV] in f32:
//   S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   out_t = scale q_t S_t
// SSD is the same recurrence with q = Cm and k = dt' Bm (rows of the head's
// group), v = x, g_t = dt' A[h] (dt' = dt (+ dt_bias), softplus'd if asked),
// scale 1, its state stored transposed ([P, N] = [DV, DK]), then
// out += D_skip[h] x and out *= silu(z).
//
// Work-groups: x over tiles of WG * COLS value columns, y over heads, z over
// batches. Invocation `lane` owns the COLS value columns j = tile * WG * COLS
// + lane + WG m (m < COLS) and keeps S[:, j] (DK floats each) in registers from
// the first token to the last: the columns of S never interact, so nothing is
// reduced across invocations.
//
// MODE_RECURRENT: token by token, S[c] = e_c S[c] + k_c v_j and
// out_j = sum_c q_c S[c]; the q, k and g words are the same for every
// invocation and each serves COLS columns. No shared memory, no barriers.
// Decode uses it everywhere; on CPUs (lavapipe, where memory accesses cost per
// lane and arithmetic is cheap) it also beats the chunked form for long
// sequences, with several columns per invocation.
//
// MODE_CHUNKED: chunks of T tokens with in-chunk cumulative log-decays a_t
// (a_t <= 0 and decreasing for log-decays g <= 0):
//   out_i = sum_{j<=i} (q_i . k_j) exp(a_i - a_j) v_j + exp(a_i) q_i S
//   S     = exp(a_last) S + sum_j exp(a_last - a_j) k_j^T v_j
// and for the per-channel (VECTOR) decay the factors move inside the dot
// products, one per key channel c. Every exponent evaluated for a term that is
// kept is a_later - a_earlier <= 0: nothing is divided by a decayed quantity,
// so strong decays underflow to 0 instead of overflowing. The prefix sums a_t
// are compensated (hi + lo, TwoSum): after a strong decay (a reaching -2400)
// the differences of weak ones keep f32 precision. Per chunk:
//   1. stage q (times scale) as qs [T][DKP] and k transposed as kt [DKP][T] in
//      shared memory; the value column in registers (vr); the cumulative
//      log-decays: one invocation for the scalar kinds (cum, and kscale = dt'
//      for SSD), one per key channel for VECTOR (at [DKP][T]). Tokens past the
//      end of the sequence stage zeros and repeat the last decay.   barrier
//   2. masked, decayed scores ps [T][T]: invocation (set, jj) owns key token jj
//      and rows set, set + ROW_SETS, ...; the qs words of a row are the same
//      for every invocation of a subgroup (T is a multiple of SPREAD).
//                                                                     barrier
//   3. VECTOR only: qs *= exp(a_i), kt *= exp(a_last - a_t), edecay =
//      exp(a_last), in place.                                         barrier
//   4. every invocation: its column of the chunk's outputs (ps times vr plus
//      qs times S, all T rows at once per key channel), then its column of S;
//      every shared word it reads is read by all invocations.        barrier
// Words every invocation reads: with SPREAD > 1 (CPUs such as lavapipe, whose
// JIT turns every memory access inside control flow into a loop over the
// lanes with a bounds check, uniform address or not) the SPREAD lanes of a
// subgroup each load one of SPREAD adjacent
// words and subgroupShuffle hands every word to every lane (an extract after
// unrolling): a SPREAD-th of the loads. SPREAD is 1 or the subgroup size; key
// rows are padded to DKP, a multiple of it, with zeros.
// Every loop with a constant trip count is unrolled ([[unroll]]; the bounds
// are specialization constants), so S, the value column and the row sums stay
// in registers (indexed by loop counters they would live in memory), and so
// that on llvmpipe, which ends every loop after 65535 trips of an invocation,
// all loops together, only the loops over tokens and chunks count (the host
// cuts long calls into runs of tokens below that).
// The host checked that every index fits in int32 and each tensor fits its
// binding; element offsets inside bindings are packed in p.offsets. Lanes past
// the last column shadow it (loads need no branch) and store nothing.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_KHR_shader_subgroup_shuffle : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int DK = 64;
layout(constant_id = 2) const int DV = 64;
layout(constant_id = 3) const int T = 16; // tokens per chunk, <= WG, a multiple of SPREAD
layout(constant_id = 4) const int MODE = 0;
layout(constant_id = 5) const int DECAY = 0;
layout(constant_id = 6) const int ROW_SETS = 4; // WG / T
layout(constant_id = 7) const int SPREAD = 1;
layout(constant_id = 8) const int GROUP_HEADS = 1; // SSD: heads per Bm/Cm group
layout(constant_id = 9) const bool STATE_IN = false;
layout(constant_id = 10) const bool STATE_OUT = false;
layout(constant_id = 11) const bool STATE_TRANSPOSED = false;
layout(constant_id = 12) const bool HAS_D_SKIP = false;
layout(constant_id = 13) const bool HAS_Z = false;
layout(constant_id = 14) const bool HAS_DT_BIAS = false;
layout(constant_id = 15) const bool SOFTPLUS = false;
layout(constant_id = 16) const bool ACT_BF16 = false;
layout(constant_id = 17) const bool D_SKIP_16 = false;  // D_skip in the activations' dtype
layout(constant_id = 18) const bool DT_BIAS_16 = false; // dt_bias likewise
layout(constant_id = 19) const int COLS = 1; // value columns per invocation (MODE_CHUNKED: 1)

const int MODE_RECURRENT = 0, MODE_CHUNKED = 1;
const int DECAY_NONE = 0, DECAY_HEAD = 1, DECAY_TOKEN = 2, DECAY_VECTOR = 3, DECAY_SSD = 4;
const bool CHUNKED = MODE == MODE_CHUNKED, VECTOR = DECAY == DECAY_VECTOR;
const int DKP = (DK + SPREAD - 1) / SPREAD * SPREAD;        // key rows, padded
const int ROWS_PER_LANE = (T + ROW_SETS - 1) / ROW_SETS;    // score rows per invocation
const int T_RUNS = (T + SPREAD - 1) / SPREAD;               // runs of SPREAD tokens
const int QK_SIZE = CHUNKED ? T * DKP : 1;
const int AT_SIZE = CHUNKED && VECTOR ? DKP * T : 1;
const int E_SIZE = CHUNKED && VECTOR ? DKP : 1;

const int B_Q = 0, B_K = 1, B_V = 2, B_G = 3, B_STATE = 4, B_OUT = 5, B_A = 6, B_D_SKIP = 7,
          B_Z = 8, B_DT_BIAS = 9;
layout(std430, set = 0, binding = 0) restrict readonly buffer QBuffer { ACT_T q[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer KBuffer { ACT_T k[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer VBuffer { ACT_T v[]; };
layout(std430, set = 0, binding = 3) restrict readonly buffer GBuffer { ACT_T g[]; };
layout(std430, set = 0, binding = 4) restrict buffer StateBuffer { float state[]; };
layout(std430, set = 0, binding = 5) restrict writeonly buffer OutBuffer { ACT_T o[]; };
layout(std430, set = 0, binding = 6) restrict readonly buffer ABuffer { float a_head[]; };
layout(std430, set = 0, binding = 7) readonly buffer DSkip { float d_skip[]; };
layout(std430, set = 0, binding = 8) restrict readonly buffer ZBuffer { ACT_T z[]; };
layout(std430, set = 0, binding = 9) readonly buffer DtBias { float dt_bias[]; };
#ifdef ACT_16BIT
// Parameters are F32 or the activations' dtype, each on its own.
layout(std430, set = 0, binding = 7) readonly buffer DSkip16 { uint16_t d_skip16[]; };
layout(std430, set = 0, binding = 9) readonly buffer DtBias16 { uint16_t dt_bias16[]; };
#endif

layout(push_constant) uniform Params {
  int offsets[3]; // element offsets of the bindings, 8 bits each
  int tokens;
  float scale;
  int q_sb, q_st, q_sh;
  int k_sb, k_st, k_sh;
  int v_sb, v_st, v_sh;
  int o_sb, o_st, o_sh;
  int g_sb, g_st, g_sh;
  int s_sb, s_sh, s_row; // state: batch, head, and row ([DK] rows, or [DV] rows if transposed)
  int z_sb, z_st, z_sh;
} p;

shared float qs[QK_SIZE];    // [T][DKP]
shared float kt[QK_SIZE];    // [DKP][T]
shared float ps[T * T];      // [T][T]
shared vec2 at[AT_SIZE];     // VECTOR: [DKP][T] cumulative log-decays (hi, lo)
shared float edecay[E_SIZE]; // VECTOR: exp(a_last) per key channel
shared vec2 cum[T];          // scalar decays: cumulative log-decay per token (hi, lo)
shared float kscale[T];      // the factor k is scaled by: dt' (SSD), 1, 0 past the end

float S[DKP * COLS]; // this invocation's columns of the state, S[c * COLS + m]; rows past DK: 0
int sub;      // this invocation's word of a run of SPREAD (gl_SubgroupInvocationID)
// Per-head parameters, loaded once.
float head_a, head_dt_bias, head_skip, head_g;

// Word l of the run whose word `sub` this invocation holds in `mine`.
#define SPREAD_WORD(mine, l) (SPREAD == 1 ? (mine) : subgroupShuffle((mine), (l)))

float d_skip_at(int h) {
#ifdef ACT_16BIT
  if (D_SKIP_16)
    return sm_from_bits16(uint(d_skip16[SM_OFFSET(p.offsets, B_D_SKIP) + h]), ACT_BF16);
#endif
  return d_skip[SM_OFFSET(p.offsets, B_D_SKIP) + h];
}

float dt_bias_at(int h) {
#ifdef ACT_16BIT
  if (DT_BIAS_16)
    return sm_from_bits16(uint(dt_bias16[SM_OFFSET(p.offsets, B_DT_BIAS) + h]), ACT_BF16);
#endif
  return dt_bias[SM_OFFSET(p.offsets, B_DT_BIAS) + h];
}

// Prefix sums as hi + lo (TwoSum): adding x, and the difference of two sums.
vec2 sum_add(vec2 a, float x) {
  precise float s = a.x + x;
  precise float v = s - a.x;
  precise float e = (a.x - (s - v)) + (x - v);
  return vec2(s, a.y + e);
}

float sum_sub(vec2 a, vec2 b) {
  precise float d = (a.x - b.x) + (a.y - b.y);
  return d;
}

// Scalar decay kinds: (log-decay of token t, factor of its k).
vec2 token_decay(int b, int t, int h) {
  if (DECAY == DECAY_HEAD) return vec2(head_g, 1.0);
  const int g_at = SM_OFFSET(p.offsets, B_G) + b * p.g_sb + t * p.g_st + h * p.g_sh;
  if (DECAY == DECAY_TOKEN) return vec2(ACT_LOAD(g[g_at], ACT_BF16), 1.0);
  if (DECAY == DECAY_SSD) {
    float dt = ACT_LOAD(g[g_at], ACT_BF16) + head_dt_bias;
    if (SOFTPLUS) dt = sm_softplus(dt);
    return vec2(dt * head_a, dt);
  }
  return vec2(0.0, 1.0);
}

int state_at(int b, int h, int c, int j) {
  return SM_OFFSET(p.offsets, B_STATE) + b * p.s_sb + h * p.s_sh +
         (STATE_TRANSPOSED ? j * p.s_row + c : c * p.s_row + j);
}

// Stores out[b, t, h, j] = acc (SSD: plus the skip, times the gate); x = v[t, j].
void store_output(int b, int t, int h, int j, bool live, float acc, float x) {
  acc = fma(head_skip, x, acc);
  if (HAS_Z)
    acc *= sm_silu(ACT_LOAD(
        z[SM_OFFSET(p.offsets, B_Z) + b * p.z_sb + t * p.z_st + h * p.z_sh + j], ACT_BF16));
  if (live)
    o[SM_OFFSET(p.offsets, B_OUT) + b * p.o_sb + t * p.o_st + h * p.o_sh + j] =
        ACT_STORE(acc, ACT_BF16);
}

// Columns j0 + WG m; `live` bit m: column m exists.
void run_recurrent(int b, int h, int hq, int j0, uint live) {
  const int KEY_RUNS = DKP / SPREAD;
  const int WG = int(gl_WorkGroupSize.x);
  const int q_row = SM_OFFSET(p.offsets, B_Q) + b * p.q_sb + hq * p.q_sh;
  const int k_row = SM_OFFSET(p.offsets, B_K) + b * p.k_sb + hq * p.k_sh;
  const int v_row = SM_OFFSET(p.offsets, B_V) + b * p.v_sb + h * p.v_sh;
  const int g_row = SM_OFFSET(p.offsets, B_G) + b * p.g_sb + h * p.g_sh;
  for (int t = 0; t < p.tokens; ++t) {
    const vec2 decay = token_decay(b, t, h);
    const float e = exp(decay.x);
    float x[COLS], acc[COLS];
    [[unroll]] for (int m = 0; m < COLS; ++m) {
      x[m] = ACT_LOAD(v[v_row + t * p.v_st + min(j0 + WG * m, DV - 1)], ACT_BF16);
      acc[m] = 0.0;
    }
    float q_run[KEY_RUNS], k_run[KEY_RUNS], e_run[KEY_RUNS];
    [[unroll]] for (int r = 0; r < KEY_RUNS; ++r) {
      const int c = min(r * SPREAD + sub, DK - 1);
      q_run[r] = ACT_LOAD(q[q_row + t * p.q_st + c], ACT_BF16);
      k_run[r] = ACT_LOAD(k[k_row + t * p.k_st + c], ACT_BF16) * decay.y;
      if (VECTOR) e_run[r] = exp(ACT_LOAD(g[g_row + t * p.g_st + c], ACT_BF16));
    }
    [[unroll]] for (int c = 0; c < DK; ++c) {
      const int r = c / SPREAD, l = c % SPREAD;
      const float ec = VECTOR ? SPREAD_WORD(e_run[r], l) : e;
      const float qc = SPREAD_WORD(q_run[r], l), kc = SPREAD_WORD(k_run[r], l);
      [[unroll]] for (int m = 0; m < COLS; ++m) {
        S[c * COLS + m] = fma(ec, S[c * COLS + m], kc * x[m]);
        acc[m] = fma(qc, S[c * COLS + m], acc[m]);
      }
    }
    [[unroll]] for (int m = 0; m < COLS; ++m)
      store_output(b, t, h, min(j0 + WG * m, DV - 1), (live >> m & 1u) != 0, acc[m] * p.scale,
                   x[m]);
  }
}

void run_chunked(int b, int h, int hq, int j, bool live) {
  const int WG = int(gl_WorkGroupSize.x);
  const int lane = int(gl_LocalInvocationID.x);
  const int q_base = SM_OFFSET(p.offsets, B_Q) + b * p.q_sb + hq * p.q_sh;
  const int k_base = SM_OFFSET(p.offsets, B_K) + b * p.k_sb + hq * p.k_sh;
  const int v_base = SM_OFFSET(p.offsets, B_V) + b * p.v_sb + h * p.v_sh + j;
  const int g_base = SM_OFFSET(p.offsets, B_G) + b * p.g_sb + h * p.g_sh;
  for (int t0 = 0; t0 < p.tokens; t0 += T) {
    const int n = min(T, p.tokens - t0);

    // 1. Stage the chunk.
    for (int e = lane; e < T * DKP; e += WG) {
      const int i = e / DKP, c = e % DKP;
      float qv = 0.0, kv = 0.0;
      if (i < n && c < DK) {
        qv = ACT_LOAD(q[q_base + (t0 + i) * p.q_st + c], ACT_BF16) * p.scale;
        kv = ACT_LOAD(k[k_base + (t0 + i) * p.k_st + c], ACT_BF16);
      }
      qs[e] = qv;
      kt[c * T + i] = kv;
    }
    if (VECTOR) {
      for (int c = lane; c < DKP; c += WG) {
        vec2 a = vec2(0.0);
        [[unroll]] for (int t = 0; t < T; ++t) {
          if (t < n && c < DK)
            a = sum_add(a, ACT_LOAD(g[g_base + (t0 + t) * p.g_st + c], ACT_BF16));
          at[c * T + t] = a;
        }
      }
    } else if (lane == 0) {
      vec2 a = vec2(0.0);
      [[unroll]] for (int t = 0; t < T; ++t) {
        vec2 decay = vec2(0.0);
        if (t < n) decay = token_decay(b, t0 + t, h);
        a = sum_add(a, decay.x);
        cum[t] = a;
        kscale[t] = decay.y;
      }
    }
    float vr[T];
    [[unroll]] for (int t = 0; t < T; ++t)
      vr[t] = t < n ? ACT_LOAD(v[v_base + (t0 + t) * p.v_st], ACT_BF16) : 0.0;
    barrier();

    // 2. Scores: ps[i][jj] = (q_i . k_jj) exp(a_i - a_jj) for jj <= i, else 0.
    if (lane < ROW_SETS * T) {
      const int set = lane / T, jj = lane % T;
      float dots[ROWS_PER_LANE];
      [[unroll]] for (int r = 0; r < ROWS_PER_LANE; ++r) dots[r] = 0.0;
      [[unroll]] for (int c0 = 0; c0 < DKP; c0 += SPREAD) {
        float q_run[ROWS_PER_LANE];
        vec2 a_run[ROWS_PER_LANE];
        [[unroll]] for (int r = 0; r < ROWS_PER_LANE; ++r) {
          const int i = min(set + ROW_SETS * r, T - 1);
          q_run[r] = qs[i * DKP + c0 + sub];
          if (VECTOR) a_run[r] = at[(c0 + sub) * T + i];
        }
        [[unroll]] for (int l = 0; l < SPREAD; ++l) {
          const int c = c0 + l;
          const float kc = kt[c * T + jj];
          const vec2 a_j = VECTOR ? at[c * T + jj] : vec2(0.0);
          [[unroll]] for (int r = 0; r < ROWS_PER_LANE; ++r) {
            const float qc = SPREAD_WORD(q_run[r], l);
            // Terms with i < jj may overflow; the select below drops them.
            if (VECTOR)
              dots[r] = fma(qc * kc, exp(sum_sub(SPREAD_WORD(a_run[r], l), a_j)), dots[r]);
            else
              dots[r] = fma(qc, kc, dots[r]);
          }
        }
      }
      const vec2 a_jj = VECTOR ? vec2(0.0) : cum[jj];
      const float k_jj = VECTOR ? 1.0 : kscale[jj];
      [[unroll]] for (int r = 0; r < ROWS_PER_LANE; ++r) {
        const int i = set + ROW_SETS * r;
        if (i < T) {
          float s = 0.0;
          if (jj <= i) s = VECTOR ? dots[r] : dots[r] * k_jj * exp(sum_sub(cum[i], a_jj));
          ps[i * T + jj] = s;
        }
      }
    }
    barrier();

    // 3. VECTOR: fold the decays into q, k and the state's decay.
    if (VECTOR) {
      for (int e = lane; e < T * DKP; e += WG) {
        const int i = e / DKP, c = e % DKP;
        const vec2 a_i = at[c * T + i];
        qs[e] *= exp(a_i.x + a_i.y);
        kt[c * T + i] *= exp(sum_sub(at[c * T + T - 1], a_i));
      }
      for (int c = lane; c < DKP; c += WG) {
        const vec2 a_last = at[c * T + T - 1];
        edecay[c] = exp(a_last.x + a_last.y);
      }
      barrier();
    }

    // 4. This column of the chunk's outputs, then of the state. Rows past n
    // are computed (they are zero) but not stored.
    vec2 cum_run[T_RUNS];
    float kscale_run[T_RUNS];
    [[unroll]] for (int r = 0; r < T_RUNS; ++r) {
      const int t = r * SPREAD + sub;
      cum_run[r] = VECTOR ? vec2(0.0) : cum[t];
      kscale_run[r] = VECTOR ? 1.0 : kscale[t];
    }
    float inter[T];
    [[unroll]] for (int i = 0; i < T; ++i) inter[i] = 0.0;
    [[unroll]] for (int c = 0; c < DKP; ++c) {
      [[unroll]] for (int r = 0; r < T_RUNS; ++r) {
        const float q_word = qs[(r * SPREAD + sub) * DKP + c];
        [[unroll]] for (int l = 0; l < SPREAD; ++l)
          inter[r * SPREAD + l] =
              fma(SPREAD_WORD(q_word, l), S[c * COLS], inter[r * SPREAD + l]);
      }
    }
    [[unroll]] for (int i = 0; i < T; ++i) {
      if (i < n) {
        float intra = 0.0;
        [[unroll]] for (int r = 0; r < T_RUNS; ++r) {
          const float p_word = ps[i * T + r * SPREAD + sub];
          [[unroll]] for (int l = 0; l < SPREAD; ++l)
            intra = fma(SPREAD_WORD(p_word, l), vr[r * SPREAD + l], intra);
        }
        const vec2 a_i = SPREAD_WORD(cum_run[i / SPREAD], i % SPREAD);
        const float acc = VECTOR ? intra + inter[i] : fma(exp(a_i.x + a_i.y), inter[i], intra);
        store_output(b, t0 + i, h, j, live, acc, vr[i]);
      }
    }
    // The state: w[t] = v[t] times the k factor and decay of token t (VECTOR:
    // both are in kt). Padded tokens repeat the last decay and have kscale 0.
    const vec2 last = SPREAD_WORD(cum_run[T_RUNS - 1], (T - 1) % SPREAD);
    const float e_last = exp(last.x + last.y);
    float w[T];
    [[unroll]] for (int t = 0; t < T; ++t) {
      const int r = t / SPREAD, l = t % SPREAD;
      w[t] = VECTOR ? vr[t]
                    : vr[t] * SPREAD_WORD(kscale_run[r], l) *
                          exp(sum_sub(last, SPREAD_WORD(cum_run[r], l)));
    }
    [[unroll]] for (int c0 = 0; c0 < DKP; c0 += SPREAD) {
      const float e_word = VECTOR ? edecay[c0 + sub] : e_last;
      [[unroll]] for (int l = 0; l < SPREAD; ++l) {
        const int c = c0 + l;
        float s = S[c * COLS] * (VECTOR ? SPREAD_WORD(e_word, l) : e_last);
        [[unroll]] for (int r = 0; r < T_RUNS; ++r) {
          const float k_word = kt[c * T + r * SPREAD + sub];
          [[unroll]] for (int m = 0; m < SPREAD; ++m)
            s = fma(SPREAD_WORD(k_word, m), w[r * SPREAD + m], s);
        }
        S[c * COLS] = s;
      }
    }
    barrier();
  }
}

void main() {
  const int WG = int(gl_WorkGroupSize.x);
  const int lane = int(gl_LocalInvocationID.x);
  const int h = int(gl_WorkGroupID.y), b = int(gl_WorkGroupID.z);
  const int hq = h / GROUP_HEADS;
  const int j0 = int(gl_WorkGroupID.x) * WG * COLS + lane;
  uint live = 0u; // bit m: column j0 + WG m exists
  [[unroll]] for (int m = 0; m < COLS; ++m)
    if (j0 + WG * m < DV) live |= 1u << m;
  sub = SPREAD == 1 ? 0 : int(gl_SubgroupInvocationID);
  head_a = DECAY == DECAY_SSD ? a_head[SM_OFFSET(p.offsets, B_A) + h] : 0.0;
  head_dt_bias = HAS_DT_BIAS ? dt_bias_at(h) : 0.0;
  head_skip = HAS_D_SKIP ? d_skip_at(h) : 0.0;
  head_g =
      DECAY == DECAY_HEAD ? ACT_LOAD(g[SM_OFFSET(p.offsets, B_G) + h * p.g_sh], ACT_BF16) : 0.0;

  // Columns past DV shadow the last one (loads need no branch) and store nothing.
  [[unroll]] for (int c = 0; c < DKP; ++c)
    [[unroll]] for (int m = 0; m < COLS; ++m)
      S[c * COLS + m] = STATE_IN && c < DK
                            ? state[state_at(b, h, min(c, DK - 1), min(j0 + WG * m, DV - 1))]
                            : 0.0;
  if (MODE == MODE_RECURRENT) run_recurrent(b, h, hq, j0, live);
  else run_chunked(b, h, hq, min(j0, DV - 1), live != 0u);
  [[unroll]] for (int m = 0; m < COLS; ++m) {
    if (STATE_OUT && (live >> m & 1u) != 0) {
      [[unroll]] for (int c = 0; c < DK; ++c)
        state[state_at(b, h, c, j0 + WG * m)] = S[c * COLS + m];
    }
  }
}
