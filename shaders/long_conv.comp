#version 450
// Long convolution (H3, Hyena, S4 kernels), SM_OP_LONG_CONV:
//   y[b,t,c] = sum_{s <= min(t, taps-1)} h[c,s] x[b,t-s,c] + D_skip[c] x[b,t,c],
//   taps = min(Lh, L). One module, the kernel chosen by the MODE constant.
//
// Direct method:
// MODE 0, transpose h: hT[s][c] = h[c,s] for s < taps, as f32, so one tap of
//   adjacent channels is contiguous. Invocation x: tap; work-group y: channel.
// MODE 1, direct: a work-group's lanes are CHANNEL_LANES (channels) times
//   WORKGROUP_SIZE / CHANNEL_LANES (token runs); an invocation owns one
//   channel and a run of TOKENS_PER_INVOCATION tokens of one batch row
//   (work-groups: x channel block, y token block, z batch). It keeps the run's
//   accumulators and a window of as many inputs in registers; per tap it loads
//   one h value (hT: contiguous across the subgroup) and one new input (the
//   window slides back one token), so each input is loaded once per run plus
//   the taps. Taps past the run's last token are skipped. No shared memory
//   and no barriers: the window already reuses each input from registers.
//
// FFT method (the host records VkFFT between these dispatches over `work`,
// rows of row_floats = N + 2 floats: N real samples, then the N/2 + 1 complex
// bins of the in-place real transform, one row per (batch, channel) of a piece):
// MODE 2, pack x: x[b, :, c] (f32, zero padded to N) into row b * channels + c.
//   A TILE x TILE work-group transposes its block through shared memory, so
//   reads (along channels) and writes (along tokens) are both contiguous; one
//   barrier between them. Work-groups: x token tiles over N, y channel tiles, z batch.
// MODE 3, pack h: h[c, :taps] zero padded to N into row c. Invocation x: sample;
//   work-group y: channel.
// MODE 4, multiply: row r's bins times the filter's bins of channel r % channels,
//   times `scale` (1/N: VkFFT's inverse is unnormalised). Invocation x: bin;
//   work-group y: row.
// MODE 5, unpack: y[b, t, c] = row[t] (+ D_skip x), transposed back as in MODE 2.
//
// Every binding is the range one dispatch touches (the host cuts calls into
// pieces that fit maxStorageBufferRange); sizes, strides and element offsets
// inside the bindings are int32 push constants. h and D_skip are f32 or the
// activations' 16-bit type (FILTER_16, SKIP_16; the f32 module has only f32).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 2) const int MODE = 1;
layout(constant_id = 3) const int TOKENS_PER_INVOCATION = 16;
layout(constant_id = 4) const int CHANNEL_LANES = 64;
layout(constant_id = 5) const int TILE = 16;
layout(constant_id = 6) const bool ACT_BF16 = false;
layout(constant_id = 7) const bool FILTER_16 = false;
layout(constant_id = 8) const bool SKIP_16 = false;
layout(constant_id = 9) const bool HAS_SKIP = false;

const int MODE_TRANSPOSE_H = 0, MODE_DIRECT = 1, MODE_PACK_X = 2, MODE_PACK_H = 3,
          MODE_MULTIPLY = 4, MODE_UNPACK = 5;

layout(std430, set = 0, binding = 0) restrict readonly buffer XBuffer { ACT_T x[]; };
layout(std430, set = 0, binding = 1) readonly buffer HBuffer { float h[]; };
layout(std430, set = 0, binding = 2) readonly buffer SkipBuffer { float d_skip[]; };
#ifdef ACT_16BIT
layout(std430, set = 0, binding = 1) readonly buffer HBuffer16 { uint16_t h16[]; };
layout(std430, set = 0, binding = 2) readonly buffer SkipBuffer16 { uint16_t d_skip16[]; };
#endif
layout(std430, set = 0, binding = 3) restrict writeonly buffer YBuffer { ACT_T y[]; };
layout(std430, set = 0, binding = 4) buffer WorkBuffer { float work[]; };
layout(std430, set = 0, binding = 4) buffer WorkBins { vec2 work_bins[]; };
layout(std430, set = 0, binding = 5) restrict readonly buffer FilterBins { vec2 filter_bins[]; };

layout(push_constant) uniform Params {
  int tokens, channels, taps, fft_size, row_floats, bins;
  int x_offset, x_batch_stride, x_token_stride;
  int y_offset, y_batch_stride, y_token_stride;
  int h_offset, h_channel_stride;
  int d_offset, filter_offset;
  float scale;
} p;

const int TPI = TOKENS_PER_INVOCATION;

float h_at(int i) {
#ifdef ACT_16BIT
  if (FILTER_16) return sm_from_bits16(uint(h16[i]), ACT_BF16);
#endif
  return h[i];
}

float skip_at(int c) {
#ifdef ACT_16BIT
  if (SKIP_16) return sm_from_bits16(uint(d_skip16[p.d_offset + c]), ACT_BF16);
#endif
  return d_skip[p.d_offset + c];
}

float x_at(int b, int t, int c) {
  return ACT_LOAD(x[p.x_offset + b * p.x_batch_stride + t * p.x_token_stride + c], ACT_BF16);
}

void store_y(int b, int t, int c, float v) {
  if (HAS_SKIP) v += skip_at(c) * x_at(b, t, c);
  y[p.y_offset + b * p.y_batch_stride + t * p.y_token_stride + c] = ACT_STORE(v, ACT_BF16);
}

void transpose_h() {
  const int s = int(gl_GlobalInvocationID.x), c = int(gl_WorkGroupID.y);
  if (s >= p.taps) return;
  work[s * p.channels + c] = h_at(p.h_offset + c * p.h_channel_stride + s);
}

void direct() {
  const int lane = int(gl_LocalInvocationID.x);
  const int token_lanes = int(gl_WorkGroupSize.x) / CHANNEL_LANES;
  const int c = int(gl_WorkGroupID.x) * CHANNEL_LANES + lane % CHANNEL_LANES;
  const int t0 = (int(gl_WorkGroupID.y) * token_lanes + lane / CHANNEL_LANES) * TPI;
  const int b = int(gl_WorkGroupID.z);
  if (c >= p.channels || t0 >= p.tokens) return;

  // window[i] = x[t0 + i - s] at tap s (zero outside 0..tokens-1).
  // Loops over i are unrolled ([[unroll]], TPI is a constant) so window and
  // acc stay in registers; loads use clamped indices and a select, not a
  // branch (llvmpipe turns a load inside control flow into a loop over lanes).
  float window[TPI], acc[TPI];
  [[unroll]] for (int i = 0; i < TPI; ++i) {
    acc[i] = 0.0;
    const float v = x_at(b, min(t0 + i, p.tokens - 1), c);
    window[i] = t0 + i < p.tokens ? v : 0.0;
  }
  const int s_end = min(p.taps, t0 + TPI);
  for (int s = 0; s < s_end; ++s) {
    const float hv = work[s * p.channels + c];
    [[unroll]] for (int i = 0; i < TPI; ++i) acc[i] = fma(hv, window[i], acc[i]);
    [[unroll]] for (int i = TPI - 1; i > 0; --i) window[i] = window[i - 1];
    const float v = x_at(b, max(t0 - s - 1, 0), c);
    window[0] = t0 - s - 1 >= 0 ? v : 0.0;
  }
  [[unroll]] for (int i = 0; i < TPI; ++i)
    if (t0 + i < p.tokens) store_y(b, t0 + i, c, acc[i]);
}

shared float tile[TILE * (TILE + 1)]; // +1 spreads the banks

void pack_x() {
  const int l0 = int(gl_LocalInvocationID.x), l1 = int(gl_LocalInvocationID.y);
  const int t_base = int(gl_WorkGroupID.x) * TILE, c_base = int(gl_WorkGroupID.y) * TILE;
  const int b = int(gl_WorkGroupID.z);
  int t = t_base + l1, c = c_base + l0; // lanes along channels: contiguous reads
  tile[l1 * (TILE + 1) + l0] = t < p.tokens && c < p.channels ? x_at(b, t, c) : 0.0;
  barrier();
  t = t_base + l0, c = c_base + l1; // lanes along tokens: contiguous writes
  if (t < p.fft_size && c < p.channels)
    work[(b * p.channels + c) * p.row_floats + t] = tile[l0 * (TILE + 1) + l1];
}

void pack_h() {
  const int s = int(gl_GlobalInvocationID.x), c = int(gl_WorkGroupID.y);
  if (s >= p.fft_size) return;
  work[c * p.row_floats + s] = s < p.taps ? h_at(p.h_offset + c * p.h_channel_stride + s) : 0.0;
}

void multiply() {
  const int k = int(gl_GlobalInvocationID.x), row = int(gl_WorkGroupID.y);
  if (k >= p.bins) return;
  const vec2 a = work_bins[row * p.bins + k];
  const vec2 f = filter_bins[p.filter_offset + (row % p.channels) * p.bins + k];
  work_bins[row * p.bins + k] = vec2(a.x * f.x - a.y * f.y, a.x * f.y + a.y * f.x) * p.scale;
}

void unpack() {
  const int l0 = int(gl_LocalInvocationID.x), l1 = int(gl_LocalInvocationID.y);
  const int t_base = int(gl_WorkGroupID.x) * TILE, c_base = int(gl_WorkGroupID.y) * TILE;
  const int b = int(gl_WorkGroupID.z);
  int t = t_base + l0, c = c_base + l1; // lanes along tokens: contiguous reads
  tile[l1 * (TILE + 1) + l0] =
      t < p.tokens && c < p.channels ? work[(b * p.channels + c) * p.row_floats + t] : 0.0;
  barrier();
  t = t_base + l1, c = c_base + l0; // lanes along channels: contiguous writes
  if (t < p.tokens && c < p.channels) store_y(b, t, c, tile[l0 * (TILE + 1) + l1]);
}

void main() {
  if (MODE == MODE_TRANSPOSE_H) transpose_h();
  else if (MODE == MODE_DIRECT) direct();
  else if (MODE == MODE_PACK_X) pack_x();
  else if (MODE == MODE_PACK_H) pack_h();
  else if (MODE == MODE_MULTIPLY) multiply();
  else unpack();
}
