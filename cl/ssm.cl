/*
 * Recurrent mixers: the selective scan (Mamba-1), and one kernel family for
 * SSD (Mamba-2) and linear attention, which are the same recurrence
 *
 *   S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,   out_t = q_t S_t
 *
 * (SSD: q = Cm row of the head's group, k = dt' Bm row, v = x row, g = dt' A[h],
 * then y += D_skip x and y *= silu(z); linear attention: q scaled by scale).
 * Arithmetic and state are f32; ACT names the storage dtype of activations.
 * One source, three kernels, picked by a build option each:
 *
 * selective_scan (SELECTIVE_SCAN): per (batch, channel) a scan over tokens
 * with the N state values in registers. A work-item owns VEC adjacent
 * channels (one SIMD vector on CPU devices; channels are contiguous in u,
 * delta, z, y) and N / NSPLIT of their state values. With NSPLIT = 1 (CPU
 * devices) a work-item owns whole channels and needs no barrier. With
 * NSPLIT > 1 (GPUs, VEC = 1) NSPLIT adjacent work-items share a channel; per
 * block of TBLK tokens each writes its partial C.h sums to local memory, a
 * barrier, then the work-group sums them a channel and token at a time and
 * stores y; a second barrier before the next block reuses the buffer.
 * Global ids: 0 channel block (work-groups of WG), 1 batch.
 *
 * chunk_scan (CHUNK_SCAN): a work-group owns one (batch, head, tile of DVT
 * value columns) and walks the sequence in chunks of CHUNK tokens, the state
 * tile S [DK, DVT] in local memory. Per chunk, with a_t the cumulative
 * log-decay inside the chunk (<= 0, non-increasing):
 *   load   q, k (transposed), v tile, per-token decays into local memory
 *   prefix a_t (per key channel for the vector decay)
 *   scores P[i,j] = sum_c q_ic k_jc exp(a_ic - a_jc) for j <= i (scalar decays:
 *          (q_i.k_j) exp(a_i - a_j)), 0 above the diagonal
 *   scale  q_i *= exp(a_i), k_j *= exp(a_last - a_j) in place
 *   out    out_i = sum_{j<=i} P[i,j] v_j + q_i S   (then the SSD epilogue)
 *   state  S = exp(a_last) S + sum_j k_j^T v_j
 * with a barrier after each step, since each reads what the previous wrote
 * through other work-items' indices. Every exponent is <= 0 (differences
 * a_i - a_j with j <= i; 0 for lanes above the diagonal, which are masked),
 * so strong decays underflow to 0 and never overflow. Each step is one loop
 * over its elements, VW at a time (VW lanes of a float vector: the SIMD
 * width on CPU devices, 1 on GPUs, which vectorise across work-items), and
 * the matrix products RB rows at a time (register blocking: each vector
 * loaded from local memory feeds RB accumulators).
 * Tokens past the end of the sequence load as zeros with zero decay, so they
 * change nothing. Global ids: 0 value tile, 1 batch * heads + head.
 *
 * recurrent_scan (RECURRENT_SCAN): the token-by-token form for short calls
 * (decode): a work-item owns VW value columns of one (batch, head) and keeps
 * their DK x VW state in registers; with KEY_LANES (a state stored with the
 * key dim contiguous, SSD's) it owns one column and its lanes run over the key
 * dim instead. Per token the work-group stages q, k (and the vector decay's
 * factors) in local memory between two barriers.
 * Global ids: 0 value-column block, 1 batch * heads + head.
 *
 * Build options: ACT (f32|f16|bf16). SELECTIVE_SCAN: N, VEC, NSPLIT, WG, TBLK,
 * SKIP_T, BIAS_T (dtype of D_skip / delta_bias, absent if not given), HAS_Z,
 * HAS_STATE, SOFTPLUS. CHUNK_SCAN and RECURRENT_SCAN: DK, VW, WG, DECAY (0 none,
 * 1 per head, 2 per token, 3 per key channel), HAS_STATE; CHUNK, DVT, RB (chunk
 * only); KEY_LANES (recurrent only); SSD with SKIP_T, BIAS_T (dt_bias), HAS_Z,
 * SOFTPLUS. Index math is 64-bit where it reaches memory.
 */

#define ACT_T SM_T(ACT)
#define LD1 SM_LOAD(ACT, 1)
#define ST1 SM_STORE(ACT, 1)

/* softplus(x) = log(1 + e^x), x itself above 20; works lane-wise on vectors. */
#define SM_SOFTPLUS(x) select(log1p(exp(x)), (x), (x) > 20.0f)
#define SM_SILU(x) ((x) / (1.0f + exp(-(x))))

#ifdef SKIP_T
#define SKIP_PTR const global SM_T(SKIP_T) *
#else
#define SKIP_PTR const global float * /* unused: the host binds a placeholder */
#endif
#ifdef BIAS_T
#define BIAS_PTR const global SM_T(BIAS_T) *
#else
#define BIAS_PTR const global float *
#endif

/* ==== Selective scan ====================================================== */
#ifdef SELECTIVE_SCAN

typedef SM_FLOATN(VEC) vecf;
#define LDV SM_LOAD(ACT, VEC)
#define STV SM_STORE(ACT, VEC)
#if VEC == 1
#define VLOAD_PRIVATE(p) (*(p))
#else
#define VLOAD_PRIVATE(p) SM_CAT(vload, VEC)(0, p)
#endif
#define NPER (N / NSPLIT) /* state values a work-item owns */
#define CPG (WG / NSPLIT) /* channel vectors a work-group owns */

/* One token of one work-item: h[k] (state value lane + k * NSPLIT) decays and
 * takes dt u B; returns its share of sum_n C[n] h[n]. */
static inline vecf scan_step(vecf *h, const vecf *a, vecf dt, vecf dx, const global ACT_T *bp,
                             const global ACT_T *cp) {
  vecf acc = 0.0f;
  for (int k = 0; k < NPER; ++k) {
    h[k] = fma(exp(dt * a[k]), h[k], dx * LD1(bp + k * NSPLIT));
    acc = fma((vecf)LD1(cp + k * NSPLIT), h[k], acc);
  }
  return acc;
}

/* y = (acc + D_skip u) * silu(z). */
static inline vecf scan_epilogue(vecf acc, vecf x, vecf skip, const global ACT_T *zp) {
#ifdef SKIP_T
  acc = fma(skip, x, acc);
#endif
#ifdef HAS_Z
  const vecf zv = LDV(zp);
  acc *= SM_SILU(zv);
#endif
  return acc;
}

#define SELECTIVE_SCAN_ARGS                                                                        \
  const global ACT_T *u, long u_off, long u_s0, long u_s1, const global ACT_T *delta, long dl_off, \
      long dl_s0, long dl_s1, const global float *A, long a_off, long a_s0,                        \
      const global ACT_T *Bm, long b_off, long b_s0, long b_s1, long b_s2, const global ACT_T *Cm, \
      long c_off, long c_s0, long c_s1, long c_s2, SKIP_PTR d_skip, long skip_off,                 \
      const global ACT_T *z, long z_off, long z_s0, long z_s1, BIAS_PTR delta_bias, long bias_off, \
      global float *state, long st_off, long st_s0, long st_s1, global ACT_T *y, long y_off,       \
      long y_s0, long y_s1, int tokens, int channels, int channels_per_group

__attribute__((reqd_work_group_size(WG, 1, 1))) kernel void selective_scan(SELECTIVE_SCAN_ARGS) {
#if NSPLIT > 1
  local float part[TBLK * WG];
#endif
  const int lid = get_local_id(0);
  const int lane = lid % NSPLIT;
  const int vecs = channels / VEC;
  const int cvec = get_group_id(0) * CPG + lid / NSPLIT;
#if NSPLIT == 1
  if (cvec >= vecs) return; /* no barriers in this variant */
#endif
  /* Work-items past the last channel repeat it (from a zero state) and store nothing. */
  const long d = (long)min(cvec, vecs - 1) * VEC;
  const long b = get_group_id(1);
  const long grp = d / channels_per_group;

  /* A rows and state rows are contiguous per channel: read them a channel at
   * a time, then gather the lanes. */
  vecf a[NPER], h[NPER];
  global float *sp = state + st_off + b * st_s0 + d * st_s1 + lane;
  {
    float la[NPER * VEC], lh[NPER * VEC];
    for (int i = 0; i < VEC; ++i)
      for (int k = 0; k < NPER; ++k) {
        la[k * VEC + i] = A[a_off + (d + i) * a_s0 + lane + k * NSPLIT];
#ifdef HAS_STATE
        lh[k * VEC + i] = cvec < vecs ? sp[i * st_s1 + k * NSPLIT] : 0.0f;
#else
        lh[k * VEC + i] = 0.0f;
#endif
      }
    for (int k = 0; k < NPER; ++k) {
      a[k] = VLOAD_PRIVATE(la + k * VEC);
      h[k] = VLOAD_PRIVATE(lh + k * VEC);
    }
  }
#ifdef SKIP_T
  const vecf skip = SM_LOAD(SKIP_T, VEC)(d_skip + skip_off + d);
#else
  const vecf skip = 0.0f;
#endif
#ifdef BIAS_T
  const vecf bias = SM_LOAD(BIAS_T, VEC)(delta_bias + bias_off + d);
#else
  const vecf bias = 0.0f;
#endif
  const global ACT_T *up = u + u_off + b * u_s0 + d;
  const global ACT_T *dp = delta + dl_off + b * dl_s0 + d;
  const global ACT_T *zp = z + z_off + b * z_s0 + d;
  global ACT_T *yp = y + y_off + b * y_s0 + d;
  const global ACT_T *bp = Bm + b_off + b * b_s0 + grp * b_s2 + lane;
  const global ACT_T *cp = Cm + c_off + b * c_s0 + grp * c_s2 + lane;

#if NSPLIT == 1
  for (int t = 0; t < tokens; ++t) {
    vecf dt = LDV(dp + t * dl_s1) + bias;
#ifdef SOFTPLUS
    dt = SM_SOFTPLUS(dt);
#endif
    const vecf x = LDV(up + t * u_s1);
    const vecf acc = scan_step(h, a, dt, dt * x, bp + t * b_s1, cp + t * c_s1);
    STV(yp + t * y_s1, scan_epilogue(acc, x, skip, zp + t * z_s1));
  }
#else
  const long d0 = (long)get_group_id(0) * CPG; /* VEC is 1 here */
  for (int t0 = 0; t0 < tokens; t0 += TBLK) {
    const int tn = min(TBLK, tokens - t0);
    for (int tt = 0; tt < tn; ++tt) {
      const long t = t0 + tt;
      vecf dt = LDV(dp + t * dl_s1) + bias;
#ifdef SOFTPLUS
      dt = SM_SOFTPLUS(dt);
#endif
      const vecf x = LDV(up + t * u_s1);
      part[tt * WG + lid] = scan_step(h, a, dt, dt * x, bp + t * b_s1, cp + t * c_s1);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = lid; e < tn * CPG; e += WG) {
      const int tt = e / CPG, c = e % CPG;
      const long dd = d0 + c, t = t0 + tt;
      if (dd < channels) {
        float acc = 0.0f;
        for (int l = 0; l < NSPLIT; ++l)
          acc += part[tt * WG + c * NSPLIT + l];
        const float x = LD1(u + u_off + b * u_s0 + t * u_s1 + dd);
#ifdef SKIP_T
        acc = fma(SM_LOAD(SKIP_T, 1)(d_skip + skip_off + dd), x, acc);
#endif
#ifdef HAS_Z
        const float zv = LD1(z + z_off + b * z_s0 + t * z_s1 + dd);
        acc *= SM_SILU(zv);
#endif
        ST1(y + y_off + b * y_s0 + t * y_s1 + dd, acc);
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (cvec >= vecs) return;
#endif

#ifdef HAS_STATE
  float lh[NPER * VEC];
  for (int k = 0; k < NPER; ++k)
#if VEC == 1
    lh[k] = h[k];
#else
    SM_CAT(vstore, VEC)(h[k], k, lh);
#endif
  for (int i = 0; i < VEC; ++i)
    for (int k = 0; k < NPER; ++k)
      sp[i * st_s1 + k * NSPLIT] = lh[k * VEC + i];
#endif
}

#endif /* SELECTIVE_SCAN */

/* ==== SSD and linear attention ============================================= */
#if defined(CHUNK_SCAN) || defined(RECURRENT_SCAN)

#define DECAY_NONE 0
#define DECAY_HEAD 1
#define DECAY_TOKEN 2
#define DECAY_VECTOR 3
#define SCALAR_DECAY (DECAY == DECAY_HEAD || DECAY == DECAY_TOKEN)

/* Key dim padded to whole vectors; the padding holds zeros. */
#define DKP (((DK + VW - 1) / VW) * VW)

#if VW == 1
typedef float vw_t;
typedef int vw_int;
#define VLD(p) (*(p))
#define VST(v, p) (*(p) = (v))
#define VW_IOTA 0
#else
typedef SM_CAT(float, VW) vw_t;
typedef SM_CAT(int, VW) vw_int;
#define VLD(p) SM_CAT(vload, VW)(0, p)
#define VST(v, p) SM_CAT(vstore, VW)(v, 0, p)
#if VW == 2
#define VW_IOTA ((int2)(0, 1))
#elif VW == 4
#define VW_IOTA ((int4)(0, 1, 2, 3))
#elif VW == 8
#define VW_IOTA ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#elif VW == 16
#define VW_IOTA ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#endif
#endif

/* Both kernels take the op in linear-attention terms. SSD: q = Cm, k = Bm
 * (rows of head h / head_div), v = x, g = dt, out = y; a, skip, bias, z are its
 * A, D_skip, dt_bias and z. state element (c, v) of a (b, h) sits at
 * st_off + b st_s0 + h st_s1 + c st_sk + v st_sv (SSD stores it transposed). */
#define SCAN_ARGS                                                                                  \
  const global ACT_T *q, long q_off, long q_s0, long q_s1, long q_s2, const global ACT_T *k,       \
      long k_off, long k_s0, long k_s1, long k_s2, const global ACT_T *v, long v_off, long v_s0,   \
      long v_s1, long v_s2, const global ACT_T *g, long g_off, long g_s0, long g_s1, long g_s2,    \
      const global float *a, long a_off, SKIP_PTR skip, long skip_off, BIAS_PTR bias,              \
      long bias_off, const global ACT_T *z, long z_off, long z_s0, long z_s1, long z_s2,           \
      global float *state, long st_off, long st_s0, long st_s1, long st_sk, long st_sv,            \
      global ACT_T *o, long o_off, long o_s0, long o_s1, long o_s2, int tokens, int heads,         \
      int head_div, int value_dim, float scale

/* The (b, h) rows: pointers to token 0 of q, k (the head's group), v, out, z,
 * g, and the state. */
#define SCAN_ROWS(bh)                                                                              \
  const long b = (bh) / heads;                                                                     \
  const int h = (bh) % heads, hg = h / head_div;                                                   \
  const global ACT_T *qb = q + q_off + b * q_s0 + hg * q_s2;                                       \
  const global ACT_T *kb = k + k_off + b * k_s0 + hg * k_s2;                                       \
  const global ACT_T *vb = v + v_off + b * v_s0 + h * v_s2;                                        \
  global ACT_T *ob = o + o_off + b * o_s0 + h * o_s2;                                              \
  const global ACT_T *zb = z + z_off + b * z_s0 + h * z_s2;                                        \
  const global ACT_T *gb = g + g_off + b * g_s0 + h * (DECAY == DECAY_VECTOR ? g_s2 : 1);          \
  global float *sb = state + st_off + b * st_s0 + h * st_s1

#ifdef SSD
/* dt' of token t: dt + dt_bias, softplus'd if asked. */
static inline float ssd_dt(const global ACT_T *gb, long g_s1, int t, float bias_h) {
  float dt = LD1(gb + t * g_s1) + bias_h;
#ifdef SOFTPLUS
  dt = SM_SOFTPLUS(dt);
#endif
  return dt;
}
#endif

/* Scalar per-token log-decay of the linear-attention kinds (SSD: dt' A[h]). */
static inline float token_log_decay(const global ACT_T *gb, long g_s1, int t) {
#if DECAY == DECAY_HEAD
  (void)g_s1, (void)t;
  return LD1(gb); /* g [H]: gb already points at g[h] */
#elif DECAY == DECAY_TOKEN
  return LD1(gb + t * g_s1);
#else
  (void)gb, (void)g_s1, (void)t;
  return 0.0f;
#endif
}

/* Up to VW activations at p: the first `count` (lanes past it are zero). */
static inline vw_t load_partial(const global ACT_T *p, int count) {
  if (count >= VW) return SM_LOAD(ACT, VW)(p);
  float lanes[VW];
  for (int l = 0; l < VW; ++l)
    lanes[l] = l < count ? LD1(p + l) : 0.0f;
  return VLD(lanes);
}

static inline void store_partial(global ACT_T *p, vw_t x, int count) {
  if (count >= VW) {
    SM_STORE(ACT, VW)(p, x);
    return;
  }
  float lanes[VW];
  VST(x, lanes);
  for (int l = 0; l < VW && l < count; ++l)
    ST1(p + l, lanes[l]);
}

/* The SSD epilogue on VW outputs of column j of token t: + D_skip x, * silu(z). */
#ifdef SSD
#define SSD_EPILOGUE(acc, x, t, j, count)                                                          \
  do {                                                                                             \
    if (has_skip) acc = fma((vw_t)skip_h, (x), acc);                                               \
    if (HAS_Z_FLAG) {                                                                              \
      const vw_t zv = load_partial(zb + (long)(t)*z_s1 + (j), (count));                            \
      acc *= SM_SILU(zv);                                                                          \
    }                                                                                              \
  } while (0)
#ifdef HAS_Z
#define HAS_Z_FLAG 1
#else
#define HAS_Z_FLAG 0
#endif
#endif

/* The per-head SSD parameters: A[h], D_skip[h], dt_bias[h]. */
#ifdef SSD
#define SSD_HEAD_PARAMS                                                                            \
  const float a_h = a[a_off + h];                                                                  \
  float skip_h = 0.0f, bias_h = 0.0f;                                                              \
  bool has_skip = false;                                                                           \
  SSD_HEAD_SKIP;                                                                                   \
  SSD_HEAD_BIAS
#ifdef SKIP_T
#define SSD_HEAD_SKIP skip_h = SM_LOAD(SKIP_T, 1)(skip + skip_off + h), has_skip = true
#else
#define SSD_HEAD_SKIP (void)skip, (void)skip_off
#endif
#ifdef BIAS_T
#define SSD_HEAD_BIAS bias_h = SM_LOAD(BIAS_T, 1)(bias + bias_off + h)
#else
#define SSD_HEAD_BIAS (void)bias, (void)bias_off
#endif
#endif

#endif /* CHUNK_SCAN || RECURRENT_SCAN */

/* ---- chunk_scan ------------------------------------------------------------ */
#ifdef CHUNK_SCAN

/* The cumulative log-decays a_t are compensated sums: a_t = hi_t + lo_t, with
 * hi_t the f32 running sum and lo_t the sum of its rounding errors (TwoSum:
 * additions only, so contraction cannot change it). A strong decay followed by
 * weak ones makes |a| large while a_i - a_j stays small; f32 alone would lose
 * the difference to the rounding step of a. (hi_i - hi_j) is exact when the
 * two are close (Sterbenz), and the lo difference restores the rest. */
#if DECAY == DECAY_VECTOR
/* a of token t, key channel c (cumulative, transposed [DKP][CHUNK]). */
#define A_AT(c, t) at[(c)*CHUNK + (t)]
#define A_LO(c, t) al[(c)*CHUNK + (t)]
#elif SCALAR_DECAY || defined(SSD)
#define A_AT(c, t) as[t]
#define A_LO(c, t) al[t]
#endif
#define A_LAST(c) A_AT(c, CHUNK - 1)
#define A_LAST_LO(c) A_LO(c, CHUNK - 1)
/* a_i - a_j from the pairs (j <= i); rounding can leave it a little above
 * 0, so exponents go through nonpos or A_MASKED_EXP (NaN passes through). */
#define A_DIFF(hi, lo, hj, lj) (((hi) - (hj)) + ((lo) - (lj)))
/* exp(d) on lanes where mask is set and d <= 0, else exp(0). */
#define A_MASKED_EXP(d, mask) exp(select((vw_t)0.0f, (d), (mask) & ~((d) > (vw_t)0.0f)))
/* exp(a) for a single a (<= 0): exp(hi) exp(lo), exp(lo) = 1 + lo to f32
 * wherever exp(hi) is not 0 (|lo| is then far below 1e-3). */
#define A_EXP(hi, lo) (exp(hi) * (1.0f + (lo)))

static inline vw_t nonpos(vw_t d) { return select(d, (vw_t)0.0f, d > (vw_t)0.0f); }

/* One compensated step: hi += g, the rounding error into lo. */
#define A_STEP(hi, lo, g)                                                                         \
  do {                                                                                             \
    const float a_s_ = (hi) + (g), a_b_ = a_s_ - (hi);                                             \
    (lo) += ((hi) - (a_s_ - a_b_)) + ((g)-a_b_);                                                   \
    (hi) = a_s_;                                                                                   \
  } while (0)

__attribute__((reqd_work_group_size(WG, 1, 1))) kernel void chunk_scan(SCAN_ARGS) {
  local float qs[CHUNK * DKP];   /* q rows, then q_i exp(a_i) */
  local float kt[DKP * CHUNK];   /* k transposed, then k_j exp(a_last - a_j) (dt'_j) */
  local float vs[CHUNK * DVT];   /* v rows of the tile */
  local float ps[CHUNK * CHUNK]; /* intra-chunk weights P[i][j] */
  local float ss[DKP * DVT];     /* the state tile */
#if DECAY == DECAY_VECTOR
  local float at[DKP * CHUNK], al[DKP * CHUNK]; /* g, then a (hi), transposed; a (lo) */
#elif SCALAR_DECAY || defined(SSD)
  local float gs[CHUNK], as[CHUNK], al[CHUNK]; /* per-token log-decay, its prefix sums */
#endif
#ifdef SSD
  local float dts[CHUNK]; /* dt' */
#endif
  const int lid = get_local_id(0);
  const int v0 = get_group_id(0) * DVT;
  SCAN_ROWS((long)get_group_id(1));
#ifdef SSD
  SSD_HEAD_PARAMS;
#else
  (void)a, (void)a_off, (void)skip, (void)skip_off, (void)bias, (void)bias_off, (void)zb;
#endif

  for (int e = lid; e < DKP * DVT; e += WG) {
    const int c = e / DVT, j = e % DVT;
#ifdef HAS_STATE
    ss[e] = c < DK && v0 + j < value_dim ? sb[c * st_sk + (long)(v0 + j) * st_sv] : 0.0f;
#else
    ss[e] = 0.0f;
#endif
  }

  for (int c0 = 0; c0 < tokens; c0 += CHUNK) {
    const int n = min(CHUNK, tokens - c0);
    /* The previous chunk's state step has read kt and vs. */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int e = lid; e < CHUNK * DKP; e += WG) {
      const int t = e / DKP, c = e % DKP;
      const bool live = t < n && c < DK;
      const long row = (long)(c0 + t);
      qs[e] = live ? LD1(qb + row * q_s1 + c) * scale : 0.0f;
      kt[c * CHUNK + t] = live ? LD1(kb + row * k_s1 + c) : 0.0f;
#if DECAY == DECAY_VECTOR
      at[c * CHUNK + t] = live ? LD1(gb + row * g_s1 + c) : 0.0f;
#endif
    }
    for (int e = lid; e < CHUNK * DVT; e += WG) {
      const int t = e / DVT, j = e % DVT;
      vs[e] = t < n && v0 + j < value_dim ? LD1(vb + (long)(c0 + t) * v_s1 + v0 + j) : 0.0f;
    }
#if defined(SSD)
    for (int t = lid; t < CHUNK; t += WG) {
      const float dt = t < n ? ssd_dt(gb, g_s1, c0 + t, bias_h) : 0.0f;
      dts[t] = dt;
      gs[t] = dt * a_h;
    }
#elif SCALAR_DECAY
    for (int t = lid; t < CHUNK; t += WG)
      gs[t] = t < n ? token_log_decay(gb, g_s1, c0 + t) : 0.0f;
#endif
    barrier(CLK_LOCAL_MEM_FENCE);

    /* Prefix sums, compensated (hi, lo): every work-item forms the same
     * partial sums in the same order, so the pairs of one chunk agree. */
#if DECAY == DECAY_VECTOR
    for (int c = lid; c < DKP; c += WG) {
      float hi = 0.0f, lo = 0.0f;
      for (int t = 0; t < CHUNK; ++t) {
        A_STEP(hi, lo, at[c * CHUNK + t]);
        at[c * CHUNK + t] = hi;
        al[c * CHUNK + t] = lo;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#elif SCALAR_DECAY || defined(SSD)
    for (int t = lid; t < CHUNK; t += WG) {
      float hi = 0.0f, lo = 0.0f;
      /* s < CHUNK is implied by t < CHUNK, but stating it keeps clang from turning
       * the out-of-range path into an endless loop (PoCL 3.1 then mis-predicates
       * the barrier below and skips this block when CHUNK is 1). */
      for (int s = 0; s <= t && s < CHUNK; ++s)
        A_STEP(hi, lo, gs[s]);
      as[t] = hi;
      al[t] = lo;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#endif

    /* Scores: work-item (rows i0..i0+RB, columns j..j+VW). Lanes above the
     * diagonal get exponent 0 and are masked to 0 afterwards. */
    for (int e = lid; e < CHUNK / RB * (CHUNK / VW); e += WG) {
      const int i0 = e / (CHUNK / VW) * RB, j = e % (CHUNK / VW) * VW;
      vw_t s[RB];
#pragma unroll
      for (int r = 0; r < RB; ++r)
        s[r] = 0.0f;
      if (j < i0 + RB) {
        for (int c = 0; c < DKP; ++c) {
          const vw_t kv = VLD(kt + c * CHUNK + j);
#if DECAY == DECAY_VECTOR
          const vw_t aj = VLD(at + c * CHUNK + j), lj = VLD(al + c * CHUNK + j);
#pragma unroll
          for (int r = 0; r < RB; ++r) {
            const vw_int below = (vw_int)(j + VW_IOTA) <= (vw_int)(i0 + r);
            const vw_t d = A_DIFF((vw_t)A_AT(c, i0 + r), (vw_t)A_LO(c, i0 + r), aj, lj);
            const vw_t w = A_MASKED_EXP(d, below);
            s[r] = fma((vw_t)qs[(i0 + r) * DKP + c], kv * w, s[r]);
          }
#else
#pragma unroll
          for (int r = 0; r < RB; ++r)
            s[r] = fma((vw_t)qs[(i0 + r) * DKP + c], kv, s[r]);
#endif
        }
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          const vw_int below = (vw_int)(j + VW_IOTA) <= (vw_int)(i0 + r);
#if SCALAR_DECAY || defined(SSD)
          const vw_t d =
              A_DIFF((vw_t)as[i0 + r], (vw_t)al[i0 + r], VLD(as + j), VLD(al + j));
          s[r] *= A_MASKED_EXP(d, below);
#endif
#ifdef SSD
          s[r] *= VLD(dts + j);
#endif
          s[r] = select((vw_t)0.0f, s[r], below);
        }
      }
#pragma unroll
      for (int r = 0; r < RB; ++r)
        VST(s[r], ps + (i0 + r) * CHUNK + j);
    }
#if DECAY != DECAY_NONE || defined(SSD)
    barrier(CLK_LOCAL_MEM_FENCE);
    /* q_i exp(a_i) and k_j exp(a_last - a_j) (dt'_j), VW at a time. */
    for (int e = lid; e < CHUNK * DKP / VW; e += WG) {
      const int t = e / (DKP / VW), c = e % (DKP / VW) * VW;
#if DECAY == DECAY_VECTOR
      float la[VW], ll[VW];
      for (int l = 0; l < VW; ++l) {
        la[l] = A_AT(c + l, t);
        ll[l] = A_LO(c + l, t);
      }
      VST(VLD(qs + t * DKP + c) * A_EXP(VLD(la), VLD(ll)), qs + t * DKP + c);
#else
      VST(VLD(qs + t * DKP + c) * A_EXP(as[t], al[t]), qs + t * DKP + c);
#endif
      const int kc = e / (CHUNK / VW), kj = e % (CHUNK / VW) * VW;
      vw_t f = exp(nonpos(A_DIFF((vw_t)A_LAST(kc), (vw_t)A_LAST_LO(kc), VLD(&A_AT(kc, kj)),
                                 VLD(&A_LO(kc, kj)))));
#ifdef SSD
      f *= VLD(dts + kj);
#endif
      VST(VLD(kt + kc * CHUNK + kj) * f, kt + kc * CHUNK + kj);
    }
#endif
    barrier(CLK_LOCAL_MEM_FENCE);

    /* Outputs: work-item (rows i0..i0+RB, columns j..j+VW of the tile). P is 0
     * above the diagonal, so the rows share one loop over s < i0 + RB. */
    for (int e = lid; e < CHUNK / RB * (DVT / VW); e += WG) {
      const int i0 = e / (DVT / VW) * RB, j = e % (DVT / VW) * VW;
      const int count = value_dim - v0 - j;
      if (i0 < n && count > 0) {
        vw_t acc[RB];
#pragma unroll
        for (int r = 0; r < RB; ++r)
          acc[r] = 0.0f;
        for (int s = 0; s < i0 + RB; ++s) {
          const vw_t x = VLD(vs + s * DVT + j);
#pragma unroll
          for (int r = 0; r < RB; ++r)
            acc[r] = fma((vw_t)ps[(i0 + r) * CHUNK + s], x, acc[r]);
        }
        for (int c = 0; c < DKP; ++c) {
          const vw_t x = VLD(ss + c * DVT + j);
#pragma unroll
          for (int r = 0; r < RB; ++r)
            acc[r] = fma((vw_t)qs[(i0 + r) * DKP + c], x, acc[r]);
        }
#pragma unroll
        for (int r = 0; r < RB; ++r) {
          if (i0 + r < n) {
#ifdef SSD
            SSD_EPILOGUE(acc[r], VLD(vs + (i0 + r) * DVT + j), c0 + i0 + r, v0 + j, count);
#endif
            store_partial(ob + (long)(c0 + i0 + r) * o_s1 + v0 + j, acc[r], count);
          }
        }
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* State: work-item (key rows c..c+RB, columns j..j+VW). */
    for (int e = lid; e < DKP / RB * (DVT / VW); e += WG) {
      const int c = e / (DVT / VW) * RB, j = e % (DVT / VW) * VW;
      vw_t s[RB];
#pragma unroll
      for (int r = 0; r < RB; ++r)
#if DECAY != DECAY_NONE || defined(SSD)
        s[r] = VLD(ss + (c + r) * DVT + j) * A_EXP(A_LAST(c + r), A_LAST_LO(c + r));
#else
        s[r] = VLD(ss + (c + r) * DVT + j);
#endif
      for (int t = 0; t < n; ++t) {
        const vw_t x = VLD(vs + t * DVT + j);
#pragma unroll
        for (int r = 0; r < RB; ++r)
          s[r] = fma((vw_t)kt[(c + r) * CHUNK + t], x, s[r]);
      }
#pragma unroll
      for (int r = 0; r < RB; ++r)
        VST(s[r], ss + (c + r) * DVT + j);
    }
  }

#ifdef HAS_STATE
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int e = lid; e < DKP * DVT; e += WG) {
    const int c = e / DVT, j = e % DVT;
    if (c < DK && v0 + j < value_dim) sb[c * st_sk + (long)(v0 + j) * st_sv] = ss[e];
  }
#endif
}

#endif /* CHUNK_SCAN */

/* ---- recurrent_scan --------------------------------------------------------- */
#ifdef RECURRENT_SCAN

/* q (scaled), k and the vector decay's factors of token t into local memory,
 * work-items over the key channels; the padding gets q = k = 0, factor 1. */
#if DECAY == DECAY_VECTOR
#define STAGE_VECTOR_DECAY(t, c, in) dv[c] = in ? exp(LD1(gb + (long)(t)*g_s1 + c)) : 1.0f
#else
#define STAGE_VECTOR_DECAY(t, c, in) (void)0
#endif
#define STAGE_TOKEN(t)                                                                             \
  for (int c = lid; c < DKP; c += WG) {                                                            \
    const bool in = c < DK;                                                                        \
    qv[c] = in ? LD1(qb + (long)(t)*q_s1 + c) * scale : 0.0f;                                      \
    kv[c] = in ? LD1(kb + (long)(t)*k_s1 + c) : 0.0f;                                              \
    STAGE_VECTOR_DECAY(t, c, in);                                                                  \
  }

/* Token t's decay factor (scalar kinds, SSD) and key factor (SSD: dt'). */
#ifdef SSD
#define TOKEN_TERMS(t)                                                                             \
  const float dt_ = ssd_dt(gb, g_s1, t, bias_h);                                                   \
  const float decay = exp(dt_ * a_h), kscale = dt_
#elif SCALAR_DECAY
#define TOKEN_TERMS(t) const float decay = exp(token_log_decay(gb, g_s1, t)), kscale = 1.0f
#else
#define TOKEN_TERMS(t) const float decay = 1.0f, kscale = 1.0f
#endif

#ifndef KEY_LANES
/* A work-item owns VW value columns j.. and their DK x VW state. */
__attribute__((reqd_work_group_size(WG, 1, 1))) kernel void recurrent_scan(SCAN_ARGS) {
  local float qv[DKP], kv[DKP];
#if DECAY == DECAY_VECTOR
  local float dv[DKP]; /* exp(g) per key channel */
#endif
  const int lid = get_local_id(0);
  const int j = (get_group_id(0) * WG + lid) * VW; /* first value column */
  const int count = value_dim - j;
  SCAN_ROWS((long)get_group_id(1));
#ifdef SSD
  SSD_HEAD_PARAMS;
#else
  (void)a, (void)a_off, (void)skip, (void)skip_off, (void)bias, (void)bias_off, (void)zb;
#endif

  global float *sj = sb + (long)j * st_sv;
  const bool rows = st_sv == 1 && count >= VW; /* whole-vector state access */
  vw_t s[DK];
  for (int c = 0; c < DK; ++c) {
#ifdef HAS_STATE
    if (rows) {
      s[c] = SM_LOAD(f32, VW)(sj + c * st_sk);
      continue;
    }
    float lanes[VW];
    for (int l = 0; l < VW; ++l)
      lanes[l] = l < count ? sj[c * st_sk + l * st_sv] : 0.0f;
    s[c] = VLD(lanes);
#else
    s[c] = 0.0f;
#endif
  }

  for (int t = 0; t < tokens; ++t) {
    barrier(CLK_LOCAL_MEM_FENCE); /* the last token's q, k are read */
    STAGE_TOKEN(t);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (count > 0) {
      TOKEN_TERMS(t);
      const vw_t x = load_partial(vb + (long)t * v_s1 + j, count);
      const vw_t kx = x * kscale;
      vw_t acc = 0.0f;
      for (int c = 0; c < DK; ++c) {
#if DECAY == DECAY_VECTOR
        s[c] = fma((vw_t)dv[c], s[c], kv[c] * kx);
#else
        s[c] = fma((vw_t)decay, s[c], kv[c] * kx);
#endif
        acc = fma((vw_t)qv[c], s[c], acc);
      }
#ifdef SSD
      SSD_EPILOGUE(acc, x, t, j, count);
#endif
      store_partial(ob + (long)t * o_s1 + j, acc, count);
    }
  }

#ifdef HAS_STATE
  for (int c = 0; c < DK; ++c) {
    if (rows) {
      SM_STORE(f32, VW)(sj + c * st_sk, s[c]);
      continue;
    }
    float lanes[VW];
    VST(s[c], lanes);
    for (int l = 0; l < VW && l < count; ++l)
      sj[c * st_sk + l * st_sv] = lanes[l];
  }
#endif
}

#else /* KEY_LANES */
/* For a state whose key dim is contiguous (SSD's [P, N]): a work-item owns
 * one value column j and its DK state values across the VW lanes, so state
 * rows load and store as whole vectors; out is a horizontal sum. */
__attribute__((reqd_work_group_size(WG, 1, 1))) kernel void recurrent_scan(SCAN_ARGS) {
  local float qv[DKP], kv[DKP];
#if DECAY == DECAY_VECTOR
  local float dv[DKP];
#endif
  const int lid = get_local_id(0);
  const int j = get_group_id(0) * WG + lid; /* the value column */
  const bool live = j < value_dim;
  SCAN_ROWS((long)get_group_id(1));
#ifdef SSD
  SSD_HEAD_PARAMS;
#else
  (void)a, (void)a_off, (void)skip, (void)skip_off, (void)bias, (void)bias_off, (void)zb;
#endif
  global float *sj = sb + (long)j * st_sv;
  const bool rows = st_sk == 1; /* whole-vector state access */

  vw_t s[DKP / VW];
  for (int c = 0; c < DKP; c += VW) {
#ifdef HAS_STATE
    if (live && rows && c + VW <= DK) {
      s[c / VW] = SM_LOAD(f32, VW)(sj + c);
      continue;
    }
    float lanes[VW];
    for (int l = 0; l < VW; ++l)
      lanes[l] = live && c + l < DK ? sj[(c + l) * st_sk] : 0.0f;
    s[c / VW] = VLD(lanes);
#else
    s[c / VW] = 0.0f;
#endif
  }

  for (int t = 0; t < tokens; ++t) {
    barrier(CLK_LOCAL_MEM_FENCE); /* the last token's q, k are read */
    STAGE_TOKEN(t);
    barrier(CLK_LOCAL_MEM_FENCE);
    if (live) {
      TOKEN_TERMS(t);
      const float x = LD1(vb + (long)t * v_s1 + j);
      const float kx = x * kscale;
      vw_t acc = 0.0f;
      for (int c = 0; c < DKP / VW; ++c) {
#if DECAY == DECAY_VECTOR
        s[c] = fma(VLD(dv + c * VW), s[c], VLD(kv + c * VW) * kx);
#else
        s[c] = fma((vw_t)decay, s[c], VLD(kv + c * VW) * kx);
#endif
        acc = fma(VLD(qv + c * VW), s[c], acc);
      }
      float lanes[VW], y = 0.0f;
      VST(acc, lanes);
      for (int l = 0; l < VW; ++l)
        y += lanes[l];
#ifdef SSD
      if (has_skip) y = fma(skip_h, x, y);
#ifdef HAS_Z
      const float zv = LD1(zb + (long)t * z_s1 + j);
      y *= SM_SILU(zv);
#endif
#endif
      ST1(ob + (long)t * o_s1 + j, y);
    }
  }

#ifdef HAS_STATE
  if (!live) return;
  for (int c = 0; c < DKP; c += VW) {
    if (rows && c + VW <= DK) {
      SM_STORE(f32, VW)(sj + c, s[c / VW]);
      continue;
    }
    float lanes[VW];
    VST(s[c / VW], lanes);
    for (int l = 0; l < VW && c + l < DK; ++l)
      sj[(c + l) * st_sk] = lanes[l];
  }
#endif
}
#endif /* KEY_LANES */

#endif /* RECURRENT_SCAN */
