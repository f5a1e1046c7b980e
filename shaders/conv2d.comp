#version 450
// Depthwise 2D convolution (ConvNeXt, ConvFormer) and the pool mixer
// (PoolFormer), NHWC. One module, two ops chosen by the MODE constant.
//
// MODE 0, convolution:
//   y[b,i,j,c] = bias[c] + sum_{u,v} w[u,v,c] x[b, i sh - ph + u dh, j sw - pw + v dw, c],
//   taps outside the image reading zeros.
// MODE 1, pool mixer: the same window sum with unit weights (stride 1, pad
//   K/2, dilation 1, set by the host), divided by the number of its pixels
//   inside the image, minus x[b,i,j,c].
//
// Tiling. Work-groups: x over (column tile, channel block), channel block
// fastest; y over row tiles; z over batches. A work-group owns TILE_ROWS x
// TILE_COLS output pixels of CHANNEL_LANES vectors of VECTOR_WIDTH adjacent
// channels. Lane l takes the vector l % CHANNEL_LANES (adjacent lanes read
// adjacent channels: whole cache lines per pixel) and the pixel block
// l / CHANNEL_LANES, as (row lane, column lane), of OUT_ROWS x OUT_COLS
// adjacent outputs.
//  1. The group copies its input tile with halo, IN_ROWS x IN_COLS pixels of
//     its channel block, into shared memory as f32, zeros where the tile lies
//     outside the image (the zero padding) or past the last channel, so the
//     second phase needs no bounds checks. One barrier.
//  2. Each invocation computes its outputs from shared memory.
//     Fast path (KERNEL > 0: K x K taps, stride STRIDE both ways, dilation 1):
//     every loop is unrolled. Per kernel row it keeps the row's K taps and,
//     per output row, the input segment its OUT_COLS outputs read, in
//     registers: each input is read from shared memory once per kernel row and
//     output row instead of K times per output.
//     Generic path (KERNEL == 0): kernel size, stride and dilation from push
//     constants, one output per invocation, plain loops.
//     USE_SHARED false (generic path only, when not even one output's receptive
//     field fits shared memory): no phase 1, the taps are read from x.
//
// Sizes, strides and element offsets (inside each binding) are int32 push
// constants. A call too large for one binding is cut into dispatches over
// groups of batches or runs of output rows; each binds the rows it touches,
// and x_row_base / y_row_base say which image rows its x and y start at. The
// host checked that every index fits, that the channel count and x's and y's
// offsets and strides are multiples of VECTOR_WIDTH (and the parameters' too
// for PARAM_VECTORS), and that TILE_SIZE >= LOAD_ITERS * the work-group size
// (fast path) or the input tile (generic path).
//
// lavapipe (llvmpipe) notes: a work-group is one thread stepping over 8-lane
// rows; a memory access inside control flow becomes a loop over the lanes, so
// the fast path's loads are all outside branches (clamped addresses and a
// select instead of bounds checks) and its loops have constant trip counts.
// Only stores are behind a branch. The generic path's loops count towards
// llvmpipe's 65535 loop trips per invocation; the host keeps them below.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const int MODE = 0;
layout(constant_id = 2) const int KERNEL = 0; // fast path K x K; 0: generic
layout(constant_id = 3) const int STRIDE = 1; // fast path only
layout(constant_id = 4) const int CHANNEL_LANES = 8;
layout(constant_id = 5) const int ROW_LANES = 8;
layout(constant_id = 6) const int COL_LANES = 1;
layout(constant_id = 7) const int OUT_ROWS = 1; // 1 on the generic path
layout(constant_id = 8) const int OUT_COLS = 1; // likewise
layout(constant_id = 9) const bool USE_SHARED = true;
layout(constant_id = 10) const int TILE_SIZE = 1; // vectors of the shared tile
layout(constant_id = 11) const int LOAD_ITERS = 1; // fast path: phase 1 rounds
layout(constant_id = 12) const int VECTOR_WIDTH = 1;
layout(constant_id = 13) const bool PARAM_VECTORS = false; // weight and bias loaded as vectors
layout(constant_id = 14) const bool ACT_BF16 = false;
layout(constant_id = 15) const bool PARAM_BF16 = false;

const int W = VECTOR_WIDTH;
const int WG = ROW_LANES * COL_LANES * CHANNEL_LANES;
const int TILE_ROWS = ROW_LANES * OUT_ROWS;
const int TILE_COLS = COL_LANES * OUT_COLS;
const int FAST_KERNEL = KERNEL > 0 ? KERNEL : 1; // array sizes must be positive
const int FAST_IN_COLS = (TILE_COLS - 1) * STRIDE + KERNEL;
const int SEGMENT = (OUT_COLS - 1) * STRIDE + FAST_KERNEL; // inputs of one output row segment

#ifdef PARAM_16BIT
#define PARAM2_T uint
#define PARAM4_T uvec2
#define PARAM2_LOAD(v, bf16) sm_from_bits16x2(v, bf16)
#define PARAM4_LOAD(v, bf16) sm_from_bits16x4(v, bf16)
#else
#define PARAM2_T vec2
#define PARAM4_T vec4
#define PARAM2_LOAD(v, bf16) (v)
#define PARAM4_LOAD(v, bf16) (v)
#endif

// x, y and the parameters are declared per 1, 2 and 4 elements over one
// binding each (so not `restrict`); VECTOR_WIDTH picks the declaration.
layout(std430, set = 0, binding = 0) readonly buffer XBuffer { ACT_T x[]; };
layout(std430, set = 0, binding = 0) readonly buffer XPairs { ACT2_T x2[]; };
layout(std430, set = 0, binding = 0) readonly buffer XQuads { ACT4_T x4[]; };
layout(std430, set = 0, binding = 1) readonly buffer WeightBuffer { PARAM_T weight[]; };
layout(std430, set = 0, binding = 1) readonly buffer WeightPairs { PARAM2_T weight2[]; };
layout(std430, set = 0, binding = 1) readonly buffer WeightQuads { PARAM4_T weight4[]; };
layout(std430, set = 0, binding = 2) readonly buffer BiasBuffer { PARAM_T bias[]; };
layout(std430, set = 0, binding = 2) readonly buffer BiasPairs { PARAM2_T bias2[]; };
layout(std430, set = 0, binding = 2) readonly buffer BiasQuads { PARAM4_T bias4[]; };
layout(std430, set = 0, binding = 3) writeonly buffer YBuffer { ACT_T y[]; };
layout(std430, set = 0, binding = 3) writeonly buffer YPairs { ACT2_T y2[]; };
layout(std430, set = 0, binding = 3) writeonly buffer YQuads { ACT4_T y4[]; };

layout(push_constant) uniform Params {
  int height, width, channels, out_width;
  int kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int x_offset, x_batch_stride, x_row_stride, x_col_stride;
  int y_offset, y_batch_stride, y_row_stride, y_col_stride;
  int weight_offset, weight_row_stride, weight_col_stride;
  int bias_offset, has_bias;
  int x_row_base, x_rows; // image rows [x_row_base, + x_rows) are bound (x_rows may be 0)
  int y_row_base, y_rows; // output rows [y_row_base, + y_rows) are this dispatch's
} p;

// The tile as W-wide vectors, [IN_ROWS][IN_COLS][CHANNEL_LANES]; the two
// declarations VECTOR_WIDTH does not use shrink to one element.
shared vec4 tile4[W == 4 ? TILE_SIZE : 1];
shared vec2 tile2[W == 2 ? TILE_SIZE : 1];
shared float tile1[W == 1 ? TILE_SIZE : 1];

// Values of W channels travel in a vec4; components past W are 0 and fold away.
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

// The taps of W channels from weight element i (channels are adjacent).
vec4 load_weight(int i) {
  if (PARAM_VECTORS && W == 4) return PARAM4_LOAD(weight4[i >> 2], PARAM_BF16);
  if (PARAM_VECTORS && W == 2) return vec4(PARAM2_LOAD(weight2[i >> 1], PARAM_BF16), 0.0, 0.0);
  vec4 r = vec4(0.0);
  [[unroll]] for (int k = 0; k < W; ++k) r[k] = PARAM_LOAD(weight[i + k], PARAM_BF16);
  return r;
}

vec4 load_bias(int i) {
  if (PARAM_VECTORS && W == 4) return PARAM4_LOAD(bias4[i >> 2], PARAM_BF16);
  if (PARAM_VECTORS && W == 2) return vec4(PARAM2_LOAD(bias2[i >> 1], PARAM_BF16), 0.0, 0.0);
  vec4 r = vec4(0.0);
  [[unroll]] for (int k = 0; k < W; ++k) r[k] = PARAM_LOAD(bias[i + k], PARAM_BF16);
  return r;
}

vec4 tile_load(int i) {
  if (W == 4) return tile4[i];
  if (W == 2) return vec4(tile2[i], 0.0, 0.0);
  return vec4(tile1[i], 0.0, 0.0, 0.0);
}

void tile_store(int i, vec4 v) {
  if (W == 4) tile4[i] = v;
  else if (W == 2) tile2[i] = v.xy;
  else tile1[i] = v.x;
}

// x at image pixel (row, col), channels [channel, channel + W) of batch b (of
// this dispatch); zeros outside the bound rows, the image or the channels.
// The load itself is unconditional, from a clamped address.
vec4 fetch_x(int b, int row, int col, int channel) {
  const int r = row - p.x_row_base;
  const bool inside = r >= 0 && r < p.x_rows && col >= 0 && col < p.width && channel < p.channels;
  const int i = p.x_offset + b * p.x_batch_stride +
                clamp(r, 0, max(p.x_rows - 1, 0)) * p.x_row_stride +
                clamp(col, 0, p.width - 1) * p.x_col_stride + min(channel, p.channels - W);
  const vec4 v = load_x(i);
  return inside ? v : vec4(0.0);
}

// The input tile's extent in pixels.
ivec2 tile_extent() {
  if (KERNEL > 0) return ivec2((TILE_ROWS - 1) * STRIDE + KERNEL, FAST_IN_COLS);
  return ivec2((TILE_ROWS - 1) * p.stride_h + (p.kernel_h - 1) * p.dilation_h + 1,
               (TILE_COLS - 1) * p.stride_w + (p.kernel_w - 1) * p.dilation_w + 1);
}

// Phase 1: tile vector i = (pixel row, pixel col, channel lane) from x, the
// tile's pixel (0, 0) being image pixel `origin`.
void load_tile_vector(int i, int b, ivec2 origin, int in_cols, int block_channel) {
  const int vector = i % CHANNEL_LANES, pixel = i / CHANNEL_LANES;
  const int row = pixel / in_cols, col = pixel - row * in_cols;
  tile_store(i, fetch_x(b, origin.x + row, origin.y + col, block_channel + vector * W));
}

void load_tile(int b, ivec2 origin, int block_channel) {
  const int lane = int(gl_LocalInvocationID.x);
  const ivec2 extent = tile_extent();
  if (KERNEL > 0) {
    // Vectors past the tile land in the padding of TILE_SIZE, so no branch.
    [[unroll]] for (int k = 0; k < LOAD_ITERS; ++k)
      load_tile_vector(k * WG + lane, b, origin, extent.y, block_channel);
  } else {
    const int count = extent.x * extent.y * CHANNEL_LANES;
    for (int i = lane; i < count; i += WG) load_tile_vector(i, b, origin, extent.y, block_channel);
  }
}

// Pool mixer: pixels of the window around output (i, j) inside the image.
float window_count(int i, int j) {
  const int r = KERNEL > 0 ? KERNEL / 2 : p.pad_h;
  const int rows = min(i + r, p.height - 1) - max(i - r, 0) + 1;
  const int cols = min(j + r, p.width - 1) - max(j - r, 0) + 1;
  return float(max(rows * cols, 1));
}

// An invocation's outputs and, for the pool mixer, their window counts
// (registers: every index is a constant after unrolling).
vec4 acc[OUT_ROWS][OUT_COLS];
float count[OUT_ROWS][OUT_COLS];

// The fast path: acc += outputs (row0 + [0, OUT_ROWS), col0 + [0, OUT_COLS))
// of the tile, whose input rows start at tile row row0 * STRIDE. Pool
// outputs come out as sum - count x; the caller divides by the count.
void compute_fast(int row0, int col0, int channel_lane, int channel) {
  [[unroll]] for (int u = 0; u < KERNEL; ++u) {
    vec4 taps[FAST_KERNEL];
    if (MODE == 0)
      [[unroll]] for (int v = 0; v < KERNEL; ++v)
        taps[v] = load_weight(p.weight_offset + u * p.weight_row_stride +
                              v * p.weight_col_stride + channel);
    [[unroll]] for (int r = 0; r < OUT_ROWS; ++r) {
      const int tile_row = (row0 + r) * STRIDE + u;
      const int first = (tile_row * FAST_IN_COLS + col0 * STRIDE) * CHANNEL_LANES + channel_lane;
      vec4 segment[SEGMENT];
      [[unroll]] for (int s = 0; s < SEGMENT; ++s)
        segment[s] = tile_load(first + s * CHANNEL_LANES);
      [[unroll]] for (int c = 0; c < OUT_COLS; ++c) {
        [[unroll]] for (int v = 0; v < KERNEL; ++v) {
          if (MODE == 0) acc[r][c] = fma(taps[v], segment[c * STRIDE + v], acc[r][c]);
          else acc[r][c] += segment[c * STRIDE + v];
        }
        if (MODE == 1 && u == KERNEL / 2) acc[r][c] -= count[r][c] * segment[c + KERNEL / 2];
      }
    }
  }
}

// The generic path: output (row0, col0) of the tile, whose pixel (0, 0) is
// image pixel `origin`. Pool outputs as in compute_fast.
vec4 compute_generic(int b, ivec2 origin, int row0, int col0, int in_cols, int channel_lane,
                     int channel, float count, vec4 acc) {
  for (int u = 0; u < p.kernel_h; ++u) {
    const int tile_row = row0 * p.stride_h + u * p.dilation_h;
    for (int v = 0; v < p.kernel_w; ++v) {
      const int tile_col = col0 * p.stride_w + v * p.dilation_w;
      const vec4 tap_input =
          USE_SHARED ? tile_load((tile_row * in_cols + tile_col) * CHANNEL_LANES + channel_lane)
                     : fetch_x(b, origin.x + tile_row, origin.y + tile_col, channel);
      if (MODE == 0)
        acc = fma(load_weight(p.weight_offset + u * p.weight_row_stride + v * p.weight_col_stride +
                              channel),
                  tap_input, acc);
      else
        acc += tap_input;
    }
  }
  if (MODE == 1) {
    const int row = row0 + p.pad_h, col = col0 + p.pad_w;
    acc -= count * (USE_SHARED ? tile_load((row * in_cols + col) * CHANNEL_LANES + channel_lane)
                               : fetch_x(b, origin.x + row, origin.y + col, channel));
  }
  return acc;
}

void main() {
  const int lane = int(gl_LocalInvocationID.x);
  const int channel_lane = lane % CHANNEL_LANES, pixel_lane = lane / CHANNEL_LANES;
  const int row_lane = pixel_lane / COL_LANES, col_lane = pixel_lane % COL_LANES;
  const int channel_blocks = (p.channels + CHANNEL_LANES * W - 1) / (CHANNEL_LANES * W);
  const int block = int(gl_WorkGroupID.x) % channel_blocks;
  const int col_tile = int(gl_WorkGroupID.x) / channel_blocks;
  const int b = int(gl_WorkGroupID.z);
  // Output pixel (0, 0) of the tile, and its input pixel (0, 0).
  const int tile_i = p.y_row_base + int(gl_WorkGroupID.y) * TILE_ROWS;
  const int tile_j = col_tile * TILE_COLS;
  const ivec2 origin = ivec2(tile_i * p.stride_h - p.pad_h, tile_j * p.stride_w - p.pad_w);
  const int block_channel = block * CHANNEL_LANES * W;
  const int channel = block_channel + channel_lane * W;
  const bool live = channel < p.channels;
  // Lanes past the last channel shadow the last vector (so loads need no
  // branch) and store nothing.
  const int safe_channel = min(channel, p.channels - W);

  if (USE_SHARED) {
    load_tile(b, origin, block_channel);
    barrier();
  }

  const int row0 = row_lane * OUT_ROWS, col0 = col_lane * OUT_COLS;
  const vec4 start =
      MODE == 0 && p.has_bias != 0 ? load_bias(p.bias_offset + safe_channel) : vec4(0.0);
  [[unroll]] for (int r = 0; r < OUT_ROWS; ++r)
    [[unroll]] for (int c = 0; c < OUT_COLS; ++c) {
      count[r][c] = MODE == 1 ? window_count(tile_i + row0 + r, tile_j + col0 + c) : 1.0;
      acc[r][c] = start;
    }
  if (KERNEL > 0)
    compute_fast(row0, col0, channel_lane, safe_channel);
  else
    acc[0][0] = compute_generic(b, origin, row0, col0, tile_extent().y, channel_lane, safe_channel,
                                count[0][0], acc[0][0]);

  [[unroll]] for (int r = 0; r < OUT_ROWS; ++r) {
    const int i = tile_i + row0 + r - p.y_row_base;
    [[unroll]] for (int c = 0; c < OUT_COLS; ++c) {
      const int j = tile_j + col0 + c;
      const vec4 value = MODE == 1 ? acc[r][c] / count[r][c] : acc[r][c];
      if (live && i < p.y_rows && j < p.out_width)
        store_y(p.y_offset + b * p.y_batch_stride + i * p.y_row_stride + j * p.y_col_stride +
                    channel,
                value);
    }
  }
}
