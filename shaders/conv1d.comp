#version 450
// Causal depthwise conv1d (Mamba/H3 short conv), bias and SiLU fused, conv
// state in/out. One module, two kernels chosen by the MODE constant.
//
// MODE 0, outputs:
//   y[b,t,c] = bias[c] + sum_{j<K} w[c,j] * xin(b, t-K+1+j, c), SiLU if asked,
//   xin(b,s,c) = x[b,s,c] for s >= 0, state[b,K-1+s,c] (or 0) for s < 0.
//   Work-groups: x over channel blocks, y over token blocks, z over batch.
//   A work-group's lanes are CHANNEL_LANES (channels) times WORKGROUP_SIZE /
//   CHANNEL_LANES (token runs). An invocation owns CHANNELS_PER_INVOCATION
//   vectors of VECTOR_WIDTH adjacent channels (one load per token each) for a
//   run of TOKENS_PER_INVOCATION consecutive tokens. Runs of CHANNEL_STEP lanes
//   take adjacent vectors, so a subgroup reads whole cache lines per token. The
//   invocation keeps its K taps and a K-wide window of inputs in registers and
//   slides the window one token at a time: each input is loaded once, plus K-1
//   at the start of the run. No shared memory and no barriers: invocations are
//   independent.
//
// MODE 1, state update (dispatched after MODE 0 behind a barrier, since it
//   overwrites what MODE 0 reads): new_state[b,i,c] = xin(b, L-(K-1)+i, c)
//   for i < K-1, one invocation per (b, c). Going upward over i, the read of
//   state[b,i+L,c] (when L < K-1) comes before anything overwrites it.
//
// A call whose tensors exceed one binding (maxStorageBufferRange) is split
// into dispatches over batch groups and token chunks: each binds the rows it
// touches, and token_base says where its token 0 sits in the call, so inputs
// before it come from x where the call has them and from the state otherwise.
// Sizes, strides and element offsets (inside each binding) are int32 push
// constants. The host checked that every index fits and that x's and y's
// offsets and strides and the channel count are multiples of VECTOR_WIDTH.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int MODE = 0;
layout(constant_id = 2) const int K = 4;
layout(constant_id = 3) const int CHANNELS_PER_INVOCATION = 1;
layout(constant_id = 4) const int TOKENS_PER_INVOCATION = 16;
layout(constant_id = 5) const int CHANNEL_LANES = 64;
layout(constant_id = 6) const int CHANNEL_STEP = 8;
layout(constant_id = 7) const int VECTOR_WIDTH = 1;
layout(constant_id = 8) const bool SILU = false;
layout(constant_id = 9) const bool ACT_BF16 = false;
layout(constant_id = 10) const bool PARAM_BF16 = false;

// x and y are declared per 1, 2 and 4 elements over one binding each (so not
// `restrict`); VECTOR_WIDTH picks the declaration a pipeline uses.
layout(std430, set = 0, binding = 0) readonly buffer XBuffer { ACT_T x[]; };
layout(std430, set = 0, binding = 0) readonly buffer XPairs { ACT2_T x2[]; };
layout(std430, set = 0, binding = 0) readonly buffer XQuads { ACT4_T x4[]; };
layout(std430, set = 0, binding = 1) restrict readonly buffer WeightBuffer { PARAM_T weight[]; };
layout(std430, set = 0, binding = 2) restrict readonly buffer BiasBuffer { PARAM_T bias[]; };
layout(std430, set = 0, binding = 3) restrict buffer StateBuffer { float state[]; };
layout(std430, set = 0, binding = 4) writeonly buffer YBuffer { ACT_T y[]; };
layout(std430, set = 0, binding = 4) writeonly buffer YPairs { ACT2_T y2[]; };
layout(std430, set = 0, binding = 4) writeonly buffer YQuads { ACT4_T y4[]; };

layout(push_constant) uniform Params {
  int batch, tokens, channels;
  int x_offset, x_batch_stride, x_token_stride;
  int y_offset, y_batch_stride, y_token_stride;
  int state_offset, state_batch_stride, state_token_stride;
  int weight_offset, weight_channel_stride;
  int bias_offset;
  int has_bias, has_state;
  int token_base; // the call's token index of this dispatch's token 0
} p;

const int CPI = CHANNELS_PER_INVOCATION;
const int TPI = TOKENS_PER_INVOCATION;
const int W = VECTOR_WIDTH;

// Values of W channels travel in a vec4; components past W are 0 and fold away.
// x at element index i (a multiple of W).
vec4 load_x(int i) {
  if (W == 4) return ACT4_LOAD(x4[i >> 2], ACT_BF16);
  if (W == 2) return vec4(ACT2_LOAD(x2[i >> 1], ACT_BF16), 0.0, 0.0);
  return vec4(ACT_LOAD(x[i], ACT_BF16), 0.0, 0.0, 0.0);
}

void store_y(int i, vec4 v) {
  if (W == 4) y4[i >> 2] = ACT4_STORE(v, ACT_BF16);
  else if (W == 2) y2[i >> 1] = ACT2_STORE(v.xy, ACT_BF16);
  else y[i] = ACT_STORE(v.x, ACT_BF16);
}

// Per-channel values at i, i + stride, ... (parameters and state: any alignment).
vec4 load_weight(int i, int stride) {
  vec4 r = vec4(0.0);
  for (int k = 0; k < W; ++k) r[k] = PARAM_LOAD(weight[i + k * stride], PARAM_BF16);
  return r;
}

vec4 load_bias(int i) {
  vec4 r = vec4(0.0);
  for (int k = 0; k < W; ++k) r[k] = PARAM_LOAD(bias[i + k], PARAM_BF16);
  return r;
}

vec4 load_state(int i) {
  vec4 r = vec4(0.0);
  for (int k = 0; k < W; ++k) r[k] = state[i + k];
  return r;
}

// The inputs at token s >= -(K-1) for W channels from c: x (bound from K-1
// rows before token 0 where the call has them), or the state before x.
vec4 load_input(int b, int s, int c) {
  const int call_token = p.token_base + s;
  if (call_token >= 0) return load_x(p.x_offset + b * p.x_batch_stride + s * p.x_token_stride + c);
  if (p.has_state == 0) return vec4(0.0);
  return load_state(p.state_offset + b * p.state_batch_stride +
                    (K - 1 + call_token) * p.state_token_stride + c);
}

void update_state() {
  const int c = int(gl_GlobalInvocationID.x), b = int(gl_WorkGroupID.z);
  if (c >= p.channels) return;
  const int base = p.state_offset + b * p.state_batch_stride + c;
  for (int i = 0; i < K - 1; ++i) {
    const int s = p.tokens - (K - 1) + i;
    float v;
    if (s >= 0)
      v = ACT_LOAD(x[p.x_offset + b * p.x_batch_stride + s * p.x_token_stride + c], ACT_BF16);
    else
      v = state[base + (i + p.tokens) * p.state_token_stride];
    state[base + i * p.state_token_stride] = v;
  }
}

void compute_outputs() {
  const int lane = int(gl_LocalInvocationID.x);
  const int token_lanes = int(gl_WorkGroupSize.x) / CHANNEL_LANES;
  const int channel_lane = lane % CHANNEL_LANES;
  const int c_first = (int(gl_WorkGroupID.x) * CHANNEL_LANES * CPI +
                       (channel_lane / CHANNEL_STEP) * CHANNEL_STEP * CPI +
                       channel_lane % CHANNEL_STEP) * W;
  const int t_first = (int(gl_WorkGroupID.y) * token_lanes + lane / CHANNEL_LANES) * TPI;
  const int b = int(gl_WorkGroupID.z);
  if (t_first >= p.tokens) return;

  // Channels past the end load the last vector (always valid) and store
  // nothing, so loads need no branches.
  int c[CPI];
  bool live[CPI];
  vec4 taps[CPI][K], window[CPI][K], bias0[CPI];
  for (int v = 0; v < CPI; ++v) {
    const int channel = c_first + v * CHANNEL_STEP * W;
    live[v] = channel < p.channels;
    c[v] = min(channel, p.channels - W);
    const int w0 = p.weight_offset + c[v] * p.weight_channel_stride;
    for (int j = 0; j < K; ++j) taps[v][j] = load_weight(w0 + j, p.weight_channel_stride);
    bias0[v] = p.has_bias != 0 ? load_bias(p.bias_offset + c[v]) : vec4(0.0);
    for (int j = 0; j < K - 1; ++j) window[v][j] = load_input(b, t_first - (K - 1) + j, c[v]);
  }

  // The next token's inputs are loaded one iteration ahead, and each token's
  // outputs are stored one iteration late: on lavapipe the first keeps two
  // loads in flight, the second keeps the SiLU's division a vector operation
  // (its JIT otherwise sinks it into the per-lane store loop as scalar divides).
  const int t_end = min(t_first + TPI, p.tokens);
  int x_row = p.x_offset + b * p.x_batch_stride + t_first * p.x_token_stride;
  int y_row = p.y_offset + b * p.y_batch_stride + t_first * p.y_token_stride;
  vec4 pending[CPI], ahead[CPI];
  for (int v = 0; v < CPI; ++v) ahead[v] = load_x(x_row + c[v]);
  for (int t = t_first; t < t_end; ++t) {
    const int next_row = t + 1 < p.tokens ? x_row + p.x_token_stride : x_row;
    for (int v = 0; v < CPI; ++v) {
      window[v][K - 1] = ahead[v];
      ahead[v] = load_x(next_row + c[v]);
      vec4 acc = bias0[v];
      for (int j = 0; j < K; ++j) acc = fma(taps[v][j], window[v][j], acc);
      if (SILU) acc = acc / (1.0 + exp(-acc));
      if (t != t_first && live[v]) store_y(y_row - p.y_token_stride + c[v], pending[v]);
      pending[v] = acc;
      for (int j = 0; j < K - 1; ++j) window[v][j] = window[v][j + 1];
    }
    x_row += p.x_token_stride;
    y_row += p.y_token_stride;
  }
  for (int v = 0; v < CPI; ++v)
    if (live[v]) store_y(y_row - p.y_token_stride + c[v], pending[v]);
}

void main() {
  if (MODE == 1) update_state();
  else compute_outputs();
}
