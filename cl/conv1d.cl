/*
 * Causal depthwise conv1d (Mamba/H3 short conv), SM_OP_CONV1D_CAUSAL.
 *
 *   y[b,t,c] = bias[c] + sum_{j<K} weight[c,j] * xin(b, t-K+1+j, c), SiLU if asked,
 *   xin(b,s,c) = x[b,s,c] for s >= 0, else state[b,K-1+s,c] (or 0 without state).
 *   Afterwards state[b,i,c] = xin(b, L-(K-1)+i, c) for i < K-1.
 *
 * conv1d_causal: a work-item owns VEC adjacent channels (one vector, since
 * channels are contiguous) and a run of TOKENS tokens of one batch row. It
 * keeps the K weights of its channels and a sliding window of the last K
 * inputs in registers, so each input is loaded once per run (plus K-1 loads
 * to start the window) and each output stored once. Global ids: 0 channel
 * vector, 1 token run, 2 batch. No local memory, no barriers.
 *
 * The state: only the first run of a (batch, channels) reads the old state
 * when TOKENS >= K-1, so that work-item also writes the new one, after its
 * window is loaded: no other work-item touches those state elements. Row i
 * takes input L-(K-1)+i, which is state row i+L when L < K-1; going upward
 * reads it before anything overwrites it. With shorter runs, the host
 * launches conv1d_causal_state afterwards instead (the queue is in order),
 * one work-item per (b, c), doing the same.
 *
 * Build options: ACT, WEIGHT (f32|f16|bf16), BIAS (absent: no bias), HAS_STATE,
 * SILU, KSIZE (K), VEC (1, 2, 4, 8, 16), TOKENS, ALIGNED (x and y offsets and
 * strides are multiples of VEC: whole-vector loads and stores). Index math is
 * 64-bit.
 */

#if defined(HAS_STATE) && TOKENS >= KSIZE - 1
#define STATE_IN_OUTPUT_KERNEL
#endif

#define floatv SM_FLOATN(VEC)
#ifdef ALIGNED /* every x and y vector starts at a multiple of VEC elements */
#define LOAD_ACT SM_LOADA(ACT, VEC)
#define STORE_ACT SM_STOREA(ACT, VEC)
#else
#define LOAD_ACT SM_LOAD(ACT, VEC)
#define STORE_ACT SM_STORE(ACT, VEC)
#endif
#define LOAD_STATE SM_LOAD(f32, VEC)
#define STORE_STATE SM_STORE(f32, VEC)

#if VEC == 1
#define VLOAD_PRIVATE(p) (*(p))
#else
#define VLOAD_PRIVATE(p) SM_CAT(vload, VEC)(0, p)
#endif

#ifdef BIAS
#define BIAS_T SM_T(BIAS)
#else
#define BIAS_T float /* unused: the host binds a placeholder buffer */
#endif

kernel void conv1d_causal(global const SM_T(ACT) *x, long x_offset, long x_batch_stride,
                          long x_token_stride, global const SM_T(WEIGHT) *weight,
                          long weight_offset, long weight_channel_stride,
                          global const BIAS_T *bias, long bias_offset,
                          global float *state, long state_offset, long state_batch_stride,
                          long state_token_stride, global SM_T(ACT) *y, long y_offset,
                          long y_batch_stride, long y_token_stride, int tokens, int channel_begin,
                          int channel_groups) {
  const int group = (int)get_global_id(0);
  if (group >= channel_groups) return;
  const long c = channel_begin + (long)group * VEC;
  const int t0 = (int)get_global_id(1) * TOKENS;
  const int t_end = (int)min((long)t0 + TOKENS, (long)tokens);
  const long b = (long)get_global_id(2);

  floatv w[KSIZE];
#pragma unroll
  for (int j = 0; j < KSIZE; ++j) {
    float lanes[VEC];
    for (int i = 0; i < VEC; ++i)
      lanes[i] = SM_LOAD(WEIGHT, 1)(weight + weight_offset + (c + i) * weight_channel_stride + j);
    w[j] = VLOAD_PRIVATE(lanes);
  }
#ifdef BIAS
  const floatv bias_v = SM_LOAD(BIAS, VEC)(bias + bias_offset + c);
#else
  const floatv bias_v = 0.0f;
#endif

  /* window[j] holds xin(t-K+1+j); the first K-1 come from before the run. */
  const global SM_T(ACT) *x_row = x + x_offset + b * x_batch_stride + c;
  floatv window[KSIZE];
#pragma unroll
  for (int j = 0; j < KSIZE - 1; ++j) {
    const int s = t0 - (KSIZE - 1) + j;
    if (s >= 0) window[j] = LOAD_ACT(x_row + s * x_token_stride);
    else
#ifdef HAS_STATE
      window[j] = LOAD_STATE(state + state_offset + b * state_batch_stride +
                             (KSIZE - 1 + s) * state_token_stride + c);
#else
      window[j] = 0.0f;
#endif
  }

#ifdef STATE_IN_OUTPUT_KERNEL
  if (t0 == 0) {
    global float *s_row = state + state_offset + b * state_batch_stride + c;
    for (int i = 0; i < KSIZE - 1; ++i) {
      const int s = tokens - (KSIZE - 1) + i;
      const floatv v = s >= 0 ? LOAD_ACT(x_row + s * x_token_stride)
                              : LOAD_STATE(s_row + ((long)i + tokens) * state_token_stride);
      STORE_STATE(s_row + i * state_token_stride, v);
    }
  }
#endif

  const global SM_T(ACT) *xp = x_row + t0 * x_token_stride;
  global SM_T(ACT) *yp = y + y_offset + b * y_batch_stride + t0 * y_token_stride + c;
  for (int t = t0; t < t_end; ++t) {
    window[KSIZE - 1] = LOAD_ACT(xp);
    floatv acc = bias_v;
#pragma unroll
    for (int j = 0; j < KSIZE; ++j) acc += w[j] * window[j];
#ifdef SILU
    acc = acc / (1.0f + exp(-acc));
#endif
    STORE_ACT(yp, acc);
#pragma unroll
    for (int j = 0; j < KSIZE - 1; ++j) window[j] = window[j + 1];
    xp += x_token_stride;
    yp += y_token_stride;
  }
}

#if defined(HAS_STATE) && !defined(STATE_IN_OUTPUT_KERNEL)
kernel void conv1d_causal_state(global const SM_T(ACT) *x, long x_offset, long x_batch_stride,
                                long x_token_stride, global float *state, long state_offset,
                                long state_batch_stride, long state_token_stride, int tokens,
                                int channels) {
  const int c = (int)get_global_id(0);
  if (c >= channels) return;
  const long b = (long)get_global_id(1);
  const global SM_T(ACT) *x_row = x + x_offset + b * x_batch_stride + c;
  global float *s_row = state + state_offset + b * state_batch_stride + c;
  for (int i = 0; i < KSIZE - 1; ++i) {
    const int s = tokens - (KSIZE - 1) + i;
    s_row[i * state_token_stride] = s >= 0 ? SM_LOAD(ACT, 1)(x_row + s * x_token_stride)
                                           : s_row[((long)i + tokens) * state_token_stride];
  }
}
#endif
