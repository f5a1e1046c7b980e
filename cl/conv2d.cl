/*
 * Depthwise 2D convolution (SM_OP_CONV2D_DEPTHWISE) and the pool mixer
 * (SM_OP_POOL_MIXER), NHWC.
 *
 *   conv2d_depthwise: y[b,i,j,c] = bias[c] + sum_{u<KH, v<KW} weight[u,v,c] *
 *                     x[b, i*stride_h - pad_h + u*dil_h, j*stride_w - pad_w + v*dil_w, c]
 *   pool_mixer:       y[b,i,j,c] = mean of x[b,.,.,c] over the pool x pool window
 *                     around (i, j) that lies inside the image, minus x[b,i,j,c]
 *
 * Taps outside the image read zeros. The pool mixer is the same window with
 * all-ones weights, stride 1, dilation 1 and pad pool / 2, divided by the
 * number of taps inside the image instead of adding a bias.
 *
 * Tiling: a work-group owns a tile of tile_h x tile_w output pixels of one
 * image times CG channel vectors of VEC adjacent channels (CG = local size 0).
 * It first copies the input pixels the tile reads, the tile with its halo
 * (tile_in_h x tile_in_w pixels, zeros outside the image), into local memory
 * as f32, each input once; then one barrier; then each work-item computes the
 * outputs of its channel vector from local memory, in runs of ROW_BLOCK
 * adjacent outputs of a row (runs lid1, lid1 + lanes, ... of the tile, lanes =
 * local size 1; tile_w is a multiple of ROW_BLOCK), so each weight it loads
 * feeds ROW_BLOCK accumulators held in registers.
 *
 * Local memory is a kernel argument sized by the host, so tile sizes, strides,
 * padding and dilations are run-time values and one build serves every shape.
 * Work-items whose channel vector is past the launch's channels copy nothing
 * and return after the barrier. The only loop before the barrier is the copy,
 * with one branch (inside the image), which keeps PoCL's barrier handling
 * cheap to compile.
 *
 * Global ids: 0 channel vector (channel_vectors of them from channel_begin,
 * rounded up to whole groups), 1 tile (tiles_w tiles a row of tiles) times
 * lanes, 2 batch. Index math into global memory is 64-bit; into the tile,
 * int (the host keeps the tile within local memory).
 *
 * Build options: ACT, WEIGHT (f32|f16|bf16), BIAS (absent: no bias), VEC (1, 2,
 * 4, 8, 16), ROW_BLOCK, KSIZE_H and KSIZE_W (fast path: the window is a
 * compile-time size, its loops unrolled and a work-item's weights held in
 * registers; absent: the run-time kernel_h x kernel_w), POOL (build pool_mixer
 * instead of conv2d_depthwise), ALIGNED (offsets and pixel strides of x and y
 * are multiples of VEC: whole-vector loads and stores).
 */

#define floatv SM_FLOATN(VEC)
#ifdef ALIGNED
#define LOAD_ACT SM_LOADA(ACT, VEC)
#define STORE_ACT SM_STOREA(ACT, VEC)
#else
#define LOAD_ACT SM_LOAD(ACT, VEC)
#define STORE_ACT SM_STORE(ACT, VEC)
#endif

#ifdef KSIZE_H
#define WINDOW_H KSIZE_H
#define WINDOW_W KSIZE_W
#define UNROLL_WINDOW _Pragma("unroll")
#else
#define WINDOW_H kernel_h
#define WINDOW_W kernel_w
#define UNROLL_WINDOW
#endif

/* The input tile of the work-group, with its halo, into local memory: tile
 * pixel p of channel vector lid0 at tile[p * cg + lid0]. (r0, s0): the image
 * position of tile pixel 0, possibly negative. */
static inline void load_tile(const global SM_T(ACT) *x_image, long x_row_stride,
                             long x_col_stride, int height, int width, int r0, int s0,
                             int tile_in_h, int tile_in_w, bool live, local floatv *tile) {
  const int lid0 = get_local_id(0), cg = get_local_size(0);
  const int pixels = live ? tile_in_h * tile_in_w : 0;
  for (int p = get_local_id(1); p < pixels; p += get_local_size(1)) {
    const int r = r0 + p / tile_in_w, s = s0 + p % tile_in_w;
    floatv v = 0.0f;
    if (r >= 0 && r < height && s >= 0 && s < width)
      v = LOAD_ACT(x_image + r * x_row_stride + s * x_col_stride);
    tile[p * cg + lid0] = v;
  }
}

#ifndef POOL

#ifdef BIAS
#define BIAS_T SM_T(BIAS)
#else
#define BIAS_T float /* unused: the host binds a placeholder buffer */
#endif

kernel void conv2d_depthwise(global const SM_T(ACT) *x, long x_offset, long x_batch_stride,
                             long x_row_stride, long x_col_stride,
                             global const SM_T(WEIGHT) *weight, long weight_offset,
                             long weight_row_stride, long weight_col_stride,
                             global const BIAS_T *bias, long bias_offset, global SM_T(ACT) *y,
                             long y_offset, long y_batch_stride, long y_row_stride,
                             long y_col_stride, local floatv *tile, int height, int width,
                             int out_height, int out_width, int kernel_h, int kernel_w,
                             int stride_h, int stride_w, int pad_h, int pad_w, int dil_h,
                             int dil_w, int tile_h, int tile_w, int tile_in_h, int tile_in_w,
                             int tiles_w, int channel_begin, int channel_vectors) {
  const int lid0 = get_local_id(0), cg = get_local_size(0);
  const int cv = get_group_id(0) * cg + lid0;
  const bool live = cv < channel_vectors;
  const long c = channel_begin + (long)min(cv, channel_vectors - 1) * VEC;
  const long b = get_global_id(2);
  const int oi0 = get_group_id(1) / tiles_w * tile_h, oj0 = get_group_id(1) % tiles_w * tile_w;

  load_tile(x + x_offset + b * x_batch_stride + c, x_row_stride, x_col_stride, height, width,
            oi0 * stride_h - pad_h, oj0 * stride_w - pad_w, tile_in_h, tile_in_w, live, tile);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (!live) return;

  const global SM_T(WEIGHT) *w_channel = weight + weight_offset + c;
#ifdef KSIZE_H
  floatv w[KSIZE_H * KSIZE_W];
#pragma unroll
  for (int u = 0; u < KSIZE_H; ++u)
#pragma unroll
    for (int v = 0; v < KSIZE_W; ++v)
      w[u * KSIZE_W + v] =
          SM_LOAD(WEIGHT, VEC)(w_channel + u * weight_row_stride + v * weight_col_stride);
#endif
#ifdef BIAS
  const floatv bias_v = SM_LOAD(BIAS, VEC)(bias + bias_offset + c);
#else
  const floatv bias_v = 0.0f;
#endif

  global SM_T(ACT) *y_image = y + y_offset + b * y_batch_stride + c;
  const int runs_w = tile_w / ROW_BLOCK;
  for (int q = get_local_id(1); q < tile_h * runs_w; q += get_local_size(1)) {
    const int i = q / runs_w, j = q % runs_w * ROW_BLOCK;
    const int oi = oi0 + i, oj = oj0 + j;
    if (oi >= out_height || oj >= out_width) continue;
    /* Products like i * stride_h stay below tile_in_h: no int overflow. */
    const local floatv *t = tile + (i * stride_h * tile_in_w + j * stride_w) * cg + lid0;
    floatv acc[ROW_BLOCK];
#pragma unroll
    for (int k = 0; k < ROW_BLOCK; ++k)
      acc[k] = bias_v;
    UNROLL_WINDOW
    for (int u = 0; u < WINDOW_H; ++u)
      UNROLL_WINDOW
      for (int v = 0; v < WINDOW_W; ++v) {
#ifdef KSIZE_H
        const floatv wt = w[u * KSIZE_W + v];
#else
        const floatv wt =
            SM_LOAD(WEIGHT, VEC)(w_channel + u * weight_row_stride + v * weight_col_stride);
#endif
        const local floatv *tap = t + (u * dil_h * tile_in_w + v * dil_w) * cg;
#pragma unroll
        for (int k = 0; k < ROW_BLOCK; ++k)
          acc[k] = fma(wt, tap[k * stride_w * cg], acc[k]);
      }
    global SM_T(ACT) *yp = y_image + oi * y_row_stride + oj * y_col_stride;
#pragma unroll
    for (int k = 0; k < ROW_BLOCK; ++k)
      if (oj + k < out_width) STORE_ACT(yp + k * y_col_stride, acc[k]);
  }
}

#else /* POOL */

kernel void pool_mixer(global const SM_T(ACT) *x, long x_offset, long x_batch_stride,
                       long x_row_stride, long x_col_stride, global SM_T(ACT) *y, long y_offset,
                       long y_batch_stride, long y_row_stride, long y_col_stride,
                       local floatv *tile, int height, int width, int kernel_h, int kernel_w,
                       int tile_h, int tile_w, int tile_in_h, int tile_in_w, int tiles_w,
                       int channel_begin, int channel_vectors) {
  const int lid0 = get_local_id(0), cg = get_local_size(0);
  const int cv = get_group_id(0) * cg + lid0;
  const bool live = cv < channel_vectors;
  const long c = channel_begin + (long)min(cv, channel_vectors - 1) * VEC;
  const long b = get_global_id(2);
  const int oi0 = get_group_id(1) / tiles_w * tile_h, oj0 = get_group_id(1) % tiles_w * tile_w;
  const int radius = kernel_h / 2; /* the window is square: kernel_w == kernel_h */

  load_tile(x + x_offset + b * x_batch_stride + c, x_row_stride, x_col_stride, height, width,
            oi0 - radius, oj0 - radius, tile_in_h, tile_in_w, live, tile);
  barrier(CLK_LOCAL_MEM_FENCE);
  if (!live) return;

  global SM_T(ACT) *y_image = y + y_offset + b * y_batch_stride + c;
  const int runs_w = tile_w / ROW_BLOCK;
  for (int q = get_local_id(1); q < tile_h * runs_w; q += get_local_size(1)) {
    const int i = q / runs_w, j = q % runs_w * ROW_BLOCK;
    const int oi = oi0 + i, oj = oj0 + j;
    if (oi >= height || oj >= width) continue;
    const local floatv *t = tile + (i * tile_in_w + j) * cg + lid0;
    floatv sum[ROW_BLOCK];
#pragma unroll
    for (int k = 0; k < ROW_BLOCK; ++k)
      sum[k] = 0.0f;
    UNROLL_WINDOW
    for (int u = 0; u < WINDOW_H; ++u)
      UNROLL_WINDOW
      for (int v = 0; v < WINDOW_W; ++v)
#pragma unroll
        for (int k = 0; k < ROW_BLOCK; ++k)
          sum[k] += t[(u * tile_in_w + v + k) * cg];
    /* Taps inside the image: the window clipped to it on each axis. */
    const int rows = min(oi + radius, height - 1) - max(oi - radius, 0) + 1;
    global SM_T(ACT) *yp = y_image + oi * y_row_stride + oj * y_col_stride;
#pragma unroll
    for (int k = 0; k < ROW_BLOCK; ++k) {
      const int cols = min(oj + k + radius, width - 1) - max(oj + k - radius, 0) + 1;
      const floatv self = t[(radius * tile_in_w + radius + k) * cg];
      if (oj + k < width) STORE_ACT(yp + k * y_col_stride, sum[k] / (float)(rows * cols) - self);
    }
  }
}

#endif
