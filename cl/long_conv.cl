/*
 * Long convolution (H3, Hyena, S4 kernels), SM_OP_LONG_CONV.
 *
 *   y[b,t,c] = sum_{s <= min(t, taps-1)} h[c,s] x[b,t-s,c] + D_skip[c] x[b,t,c],
 *   taps = min(Lh, L) (later taps never meet an input).
 *
 * Two methods, chosen by the host; each is its own program variant.
 *
 * Direct (default build): long_conv_transpose_h copies h[:, :taps] as f32
 * into hT [taps][C], so one tap of VEC adjacent channels is one contiguous
 * vector. long_conv_direct: a work-item owns VEC adjacent channels (one
 * vector) and a run of TPI tokens of one batch row, with TPI accumulators
 * and a window of TPI inputs in registers; per tap it loads one h vector and
 * one new input (the window slides one token back), so loads are 2 per TPI
 * vector FMAs. Taps beyond the run's last token are skipped. Channels are a
 * vector part and a tail of C % VEC that a VEC = 1 variant computes, as in
 * conv1d. No local memory and no barriers: the window already reuses each
 * input TPI times from registers, and hT's rows are shared by a work-group's
 * channels through the cache. Global ids: 0 channel vector, 1 token run,
 * 2 batch.
 *
 * FFT (-DFFT): the host runs VkFFT between these kernels over `spectra`, rows
 * of ROW = N + 2 floats (N real samples, then the N/2 + 1 complex bins of the
 * in-place real transform), one row per (batch, channel) of a piece:
 *   long_conv_pack_x    x[b, :, c] (f32, zero padded to N) into row b*C' + c,
 *                       transposing a TILE x TILE block through local memory so
 *                       both the reads (channels) and writes (tokens) are
 *                       contiguous; one barrier between the two
 *   long_conv_pack_h    h[c, :taps] zero padded into row c
 *   long_conv_multiply  row r's bins times the filter's bins of channel r % C',
 *                       times `scale` (1/N: VkFFT's inverse is unnormalised)
 *   long_conv_unpack    y[b, t, c] = row[t] (+ D_skip x), transposed back
 * Pointers arrive already moved to the piece's first batch and channel.
 *
 * Build options: ACT, FILTER (h's dtype), SKIP (D_skip's dtype; absent: no
 * D_skip), VEC (1, 2, 4, 8, 16), TPI (direct), FFT, TILE (FFT). Sizes are int; element
 * offsets and strides long.
 */

#ifdef SKIP
#define SKIP_T SM_T(SKIP)
#else
#define SKIP_T float /* unused: the host binds a placeholder buffer */
#endif


#ifndef FFT

/* Global ids: 0 tap, 1 channel. hT[s][c] = h[c, s] for s < taps, as f32. */
kernel void long_conv_transpose_h(global const SM_T(FILTER) *h, long h_offset,
                                  long h_channel_stride, global float *h_t, int taps,
                                  int channels) {
  const int s = (int)get_global_id(0), c = (int)get_global_id(1);
  if (s >= taps || c >= channels) return;
  h_t[(long)s * channels + c] = SM_LOAD(FILTER, 1)(h + h_offset + (long)c * h_channel_stride + s);
}

#define floatv SM_FLOATN(VEC)

/* Global ids: 0 channel vector (from channel_begin), 1 token run, 2 batch. */
kernel void long_conv_direct(global const SM_T(ACT) *x, long x_offset, long x_batch_stride,
                             long x_token_stride, global const float *h_t,
                             global const SKIP_T *d_skip, long d_offset, global SM_T(ACT) *y,
                             long y_offset, long y_batch_stride, long y_token_stride, int tokens,
                             int channels, int taps, int channel_begin, int channel_groups) {
  const int group = (int)get_global_id(0);
  if (group >= channel_groups) return;
  const long c = channel_begin + (long)group * VEC;
  const int t0 = (int)get_global_id(1) * TPI;
  const long b = (long)get_global_id(2);
  const global SM_T(ACT) *x_row = x + x_offset + b * x_batch_stride + c;

  /* window[i] = x[t0 + i - s] at tap s (zero outside 0..tokens-1). */
  floatv window[TPI], acc[TPI];
#pragma unroll
  for (int i = 0; i < TPI; ++i) {
    acc[i] = 0.0f;
    window[i] = t0 + i < tokens ? SM_LOAD(ACT, VEC)(x_row + (long)(t0 + i) * x_token_stride)
                                : (floatv)0.0f;
  }
  const int s_end = min(taps, t0 + TPI);
  for (int s = 0; s < s_end; ++s) {
    const floatv hv = SM_LOAD(f32, VEC)(h_t + (long)s * channels + c);
#pragma unroll
    for (int i = 0; i < TPI; ++i) acc[i] += hv * window[i];
#pragma unroll
    for (int i = TPI - 1; i > 0; --i) window[i] = window[i - 1];
    const int t_in = t0 - s - 1;
    window[0] = t_in >= 0 ? SM_LOAD(ACT, VEC)(x_row + (long)t_in * x_token_stride) : (floatv)0.0f;
  }

  global SM_T(ACT) *y_row = y + y_offset + b * y_batch_stride + c;
#ifdef SKIP
  const floatv d = SM_LOAD(SKIP, VEC)(d_skip + d_offset + c);
#endif
  for (int i = 0; i < TPI && t0 + i < tokens; ++i) {
    floatv v = acc[i];
#ifdef SKIP
    v += d * SM_LOAD(ACT, VEC)(x_row + (long)(t0 + i) * x_token_stride);
#endif
    SM_STORE(ACT, VEC)(y_row + (long)(t0 + i) * y_token_stride, v);
  }
}

#else /* FFT */

/* Work-group (TILE, TILE); groups: 0 token tiles over N, 1 channel tiles, 2 batch. */
__attribute__((reqd_work_group_size(TILE, TILE, 1))) kernel void
long_conv_pack_x(global const SM_T(ACT) *x, long x_offset, long x_batch_stride, long x_token_stride,
                 global float *spectra, int tokens, int channels, int fft_size, int row_floats) {
  local float tile[TILE][TILE + 1]; /* [token][channel]; +1 spreads the banks */
  const int l0 = (int)get_local_id(0), l1 = (int)get_local_id(1);
  const int t_base = (int)get_group_id(0) * TILE, c_base = (int)get_group_id(1) * TILE;
  const long b = (long)get_group_id(2);
  {
    const int t = t_base + l1, c = c_base + l0; /* lanes along channels: contiguous reads */
    tile[l1][l0] = t < tokens && c < channels
                       ? SM_LOAD(ACT, 1)(x + x_offset + b * x_batch_stride +
                                         (long)t * x_token_stride + c)
                       : 0.0f;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const int t = t_base + l0, c = c_base + l1; /* lanes along tokens: contiguous writes */
  if (t < fft_size && c < channels)
    spectra[(b * channels + c) * (long)row_floats + t] = tile[l0][l1];
}

/* Global ids: 0 sample over N, 1 channel of the piece. */
kernel void long_conv_pack_h(global const SM_T(FILTER) *h, long h_offset, long h_channel_stride,
                             global float *spectra, int taps, int channels, int fft_size,
                             int row_floats) {
  const int s = (int)get_global_id(0), c = (int)get_global_id(1);
  if (s >= fft_size || c >= channels) return;
  spectra[(long)c * row_floats + s] =
      s < taps ? SM_LOAD(FILTER, 1)(h + h_offset + (long)c * h_channel_stride + s) : 0.0f;
}

/* Global ids: 0 bin, 1 row. filter holds the piece's channels' bins. */
kernel void long_conv_multiply(global float2 *spectra, global const float2 *filter,
                               long filter_offset, int bins, int rows, int channels, float scale) {
  const int k = (int)get_global_id(0), row = (int)get_global_id(1);
  if (k >= bins || row >= rows) return;
  const float2 a = spectra[(long)row * bins + k];
  const float2 f = filter[filter_offset + (long)(row % channels) * bins + k];
  spectra[(long)row * bins + k] = (float2)(a.x * f.x - a.y * f.y, a.x * f.y + a.y * f.x) * scale;
}

/* Work-group (TILE, TILE); groups: 0 token tiles over L, 1 channel tiles, 2 batch. */
__attribute__((reqd_work_group_size(TILE, TILE, 1))) kernel void
long_conv_unpack(global const float *spectra, global const SM_T(ACT) *x, long x_offset,
                 long x_batch_stride, long x_token_stride, global const SKIP_T *d_skip,
                 long d_offset, global SM_T(ACT) *y, long y_offset, long y_batch_stride,
                 long y_token_stride, int tokens, int channels, int row_floats) {
  local float tile[TILE][TILE + 1]; /* [channel][token] */
  const int l0 = (int)get_local_id(0), l1 = (int)get_local_id(1);
  const int t_base = (int)get_group_id(0) * TILE, c_base = (int)get_group_id(1) * TILE;
  const long b = (long)get_group_id(2);
  {
    const int t = t_base + l0, c = c_base + l1; /* lanes along tokens: contiguous reads */
    tile[l1][l0] = t < tokens && c < channels
                       ? spectra[(b * channels + c) * (long)row_floats + t] : 0.0f;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  const int t = t_base + l1, c = c_base + l0; /* lanes along channels: contiguous writes */
  if (t >= tokens || c >= channels) return;
  float v = tile[l0][l1];
#ifdef SKIP
  v += SM_LOAD(SKIP, 1)(d_skip + d_offset + c) *
       SM_LOAD(ACT, 1)(x + x_offset + b * x_batch_stride + (long)t * x_token_stride + c);
#endif
  SM_STORE(ACT, 1)(y + y_offset + b * y_batch_stride + (long)t * y_token_stride + c, v);
}

#endif
