/*
 * Attention (FlashAttention-2 style) and the log-sum-exp merge.
 *
 * attn_fwd: a work-group owns WG rows of one (sequence, k head); a row is a
 * (query token, q head of the GQA group) pair, so the q heads sharing a k
 * head share every K/V tile. Each work-item keeps one row's q and output
 * accumulator in registers; key blocks of BK keys are staged in local memory
 * as f32 and folded in with an online softmax (running max m and sum l).
 * Blocks wholly outside the causal/window mask of the work-group's rows are
 * never visited. With SPLIT, dim 2 picks a chunk of the keys and the
 * work-group writes a partial (out, lse) row to scratch; attn_combine merges
 * the chunks by log-sum-exp (sigmoid scores: plain sums).
 *
 * attn_merge (MERGE): the public merge of NPARTS partials, each with its own
 * strides (read from a small table), in PART dtype, into out (ACT dtype).
 *
 * Build options: ACT (storage dtype), D, DV (head dims), BK (keys a block), WG
 * (work-group size), CAUSAL, SIGMOID, SOFTCAP, SPLIT; MERGE, PART, NPARTS.
 */

#define T SM_T(ACT)
#define LD1 SM_LOAD(ACT, 1)
#define ST1 SM_STORE(ACT, 1)

#ifndef MERGE

/* VEC (divides D and DV): a work-item's q, accumulator and dot products are
 * vectors of VEC lanes. */
#if VEC == 1
typedef float vf;
#define VLOAD(i, p) ((p)[i])
#define VSTORE(v, i, p) ((p)[i] = (v))
static inline float hsum(float x) { return x; }
#else
typedef SM_CAT(float, VEC) vf;
#define VLOAD(i, p) SM_CAT(vload, VEC)(i, p)
#define VSTORE(v, i, p) SM_CAT(vstore, VEC)(v, i, p)
static inline float hsum2(float2 x) { return x.s0 + x.s1; }
static inline float hsum4(float4 x) { return hsum2(x.s01 + x.s23); }
static inline float hsum8(float8 x) { return hsum4(x.s0123 + x.s4567); }
static inline float hsum16(float16 x) { return hsum8(x.s01234567 + x.s89abcdef); }
#define hsum SM_CAT(hsum, VEC)
#endif

/* attn_fwd's arguments, the same for both variants. */
#define ATTN_FWD_ARGS                                                                             \
  const global T *q, long q_off, long q_s0, long q_s1, long q_s2, long q_s3, const global T *k,   \
      long k_off, long k_s0, long k_s1, long k_s2, long k_s3, const global T *v, long v_off,      \
      long v_s0, long v_s1, long v_s2, long v_s3, global T *o, long o_off, long o_s0, long o_s1,  \
      long o_s2, long o_s3, global float *lse, long l_off, long l_s0, long l_s1, long l_s2,       \
      int has_lse, const global int *idx, int varlen, int has_used, int lq_dense, int lk_dense,   \
      int q_heads, int group, float scale, float softcap, float sigmoid_bias, int window,         \
      int chunk, global float *part_out, global float *part_lse, long part_rows

/* The work-group's sequence b, k head hk and key split; the sequence's first
 * q/k rows (q0, k0), lengths (lq, lk) and rows (lq x group). idx: cu_q [n+1],
 * cu_k [n+1], seqused_k [n] (varlen/seqused only); qb: batch index of the
 * tensors. */
#define ATTN_SEQUENCE                                                                             \
  const int hk = get_group_id(1) % (q_heads / group);                                             \
  const int b = get_group_id(1) / (q_heads / group);                                              \
  const int split = get_group_id(2);                                                              \
  const int n = get_num_groups(1) / (q_heads / group);                                            \
  const global int *cu_q = idx, *cu_k = idx + n + 1, *used = idx + 2 * n + 2;                     \
  const int qb = varlen ? 0 : b;                                                                  \
  const int q0 = varlen ? cu_q[b] : 0, k0 = varlen ? cu_k[b] : 0;                                 \
  const int lq = varlen ? cu_q[b + 1] - q0 : lq_dense;                                            \
  const int lk = has_used ? used[b] : varlen ? cu_k[b + 1] - k0 : lk_dense;                       \
  const int rows = lq * group

#ifndef KEYPAR
__attribute__((reqd_work_group_size(WG, 1, 1))) kernel void
attn_fwd(ATTN_FWD_ARGS) {
  local float kt[BK * D];
  local float vt[BK * DV];
  const int lid = get_local_id(0);
  ATTN_SEQUENCE;
  const int r_begin = get_group_id(0) * WG;
  if (r_begin >= rows) return; /* the whole work-group */
  const int r_last = min(r_begin + WG, rows) - 1;
  const int row = min(r_begin + lid, rows - 1); /* idle work-items repeat the last row */
  const int i = row / group, h = hk * group + row % group;
  const int shift = lk - lq;

  /* Keys this work-group visits: its split's chunk, cut to its rows' mask. */
  int blo = split * chunk, bhi = min(lk, blo + chunk) - 1;
#ifdef CAUSAL
  bhi = min(bhi, r_last / group + shift);
  if (window > 0) blo = max(blo, r_begin / group + shift - window + 1);
#endif
  /* This row's keys. */
  int lo = 0, hi = lk - 1;
#ifdef CAUSAL
  hi = min(hi, i + shift);
  if (window > 0) lo = max(lo, i + shift - window + 1);
#endif

  vf qr[D / VEC];
  const global T *qp = q + q_off + qb * q_s0 + (long)(q0 + i) * q_s1 + h * q_s2;
  for (int c = 0; c < D / VEC; ++c) {
    float tmp[VEC];
    for (int e = 0; e < VEC; ++e)
      tmp[e] = LD1(qp + (c * VEC + e) * q_s3) * scale;
    qr[c] = VLOAD(0, tmp);
  }
  vf acc[DV / VEC];
  for (int c = 0; c < DV / VEC; ++c)
    acc[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  const global T *kbase = k + k_off + qb * k_s0 + (long)k0 * k_s1 + hk * k_s2;
  const global T *vbase = v + v_off + qb * v_s0 + (long)k0 * v_s1 + hk * v_s2;
  blo = max(blo, 0);
  const int nblocks = bhi >= blo ? (bhi - blo) / BK + 1 : 0;
  for (int blk = 0; blk < nblocks; ++blk) {
    const int j0 = blo + blk * BK;
    barrier(CLK_LOCAL_MEM_FENCE);
#ifdef CONTIG
    /* Rows of K and V contiguous: VEC elements a load. */
    for (int e = lid; e < BK * D / VEC; e += WG) {
      const int j = e / (D / VEC), c = e % (D / VEC);
      const vf x = SM_LOAD(ACT, VEC)(kbase + (long)min(j0 + j, bhi) * k_s1 + c * VEC);
      VSTORE(j0 + j <= bhi ? x : (vf)0.0f, e, kt);
    }
    for (int e = lid; e < BK * DV / VEC; e += WG) {
      const int j = e / (DV / VEC), c = e % (DV / VEC);
      const vf x = SM_LOAD(ACT, VEC)(vbase + (long)min(j0 + j, bhi) * v_s1 + c * VEC);
      VSTORE(j0 + j <= bhi ? x : (vf)0.0f, e, vt);
    }
#else
    for (int e = lid; e < BK * D; e += WG) {
      const int j = e / D, d = e % D;
      kt[e] = j0 + j <= bhi ? LD1(kbase + (long)(j0 + j) * k_s1 + d * k_s3) : 0.0f;
    }
    for (int e = lid; e < BK * DV; e += WG) {
      const int j = e / DV, d = e % DV;
      vt[e] = j0 + j <= bhi ? LD1(vbase + (long)(j0 + j) * v_s1 + d * v_s3) : 0.0f;
    }
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    float s[BK];
    float tmax = -INFINITY;
    for (int j = 0; j < BK; ++j) {
      vf dv = 0.0f;
      for (int c = 0; c < D / VEC; ++c)
        dv = fma(qr[c], VLOAD(c, kt + j * D), dv);
      float dot = hsum(dv);
#ifdef SOFTCAP
      dot = softcap * tanh(dot / softcap);
#endif
      const int key = j0 + j;
      const bool ok = key >= lo && key <= hi && key <= bhi;
#ifdef SIGMOID
      s[j] = ok ? 1.0f / (1.0f + exp(-(dot + sigmoid_bias))) : 0.0f;
#else
      s[j] = ok ? dot : -INFINITY;
      tmax = fmax(tmax, s[j]);
#endif
    }
#ifndef SIGMOID
    const float mn = fmax(m, tmax);
    const float base = mn == -INFINITY ? 0.0f : mn;
    /* Masked keys and the first block: weights of exactly 0. */
    const float alpha = m == -INFINITY ? 0.0f : exp(m - base);
    l *= alpha;
    for (int j = 0; j < BK; ++j) {
      s[j] = s[j] == -INFINITY ? 0.0f : exp(s[j] - base);
      l += s[j];
    }
    m = mn;
    for (int c = 0; c < DV / VEC; ++c)
      acc[c] *= alpha;
#endif
    for (int j = 0; j < BK; ++j)
      for (int c = 0; c < DV / VEC; ++c)
        acc[c] = fma((vf)s[j], VLOAD(c, vt + j * DV), acc[c]);
  }

  if (r_begin + lid >= rows) return;
#ifdef SIGMOID
  const float inv = 1.0f;
  const float row_lse = 0.0f;
#else
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  const float row_lse = l > 0.0f ? m + log(l) : -INFINITY;
#endif
#ifdef SPLIT
  const long prow = (long)split * part_rows + ((long)qb * lq_dense + q0 + i) * q_heads + h;
  for (int c = 0; c < DV / VEC; ++c)
    VSTORE(acc[c] * inv, c, part_out + prow * DV);
  part_lse[prow] = row_lse;
#else
  global T *op = o + o_off + qb * o_s0 + (long)(q0 + i) * o_s1 + h * o_s2;
  for (int c = 0; c < DV / VEC; ++c) {
    float tmp[VEC];
    VSTORE(acc[c] * inv, 0, tmp);
    for (int e = 0; e < VEC; ++e)
      ST1(op + (c * VEC + e) * o_s3, tmp[e]);
  }
  if (has_lse) lse[l_off + qb * l_s0 + h * l_s1 + (long)(q0 + i) * l_s2] = row_lse;
#endif
}

#else /* KEYPAR */

/* Key-parallel attn_fwd for few rows a (sequence, k head), decode above all,
 * on GPUs: a work-group of WG work-items owns R rows (R a power of two, at
 * most 16). For each block of WG keys, work-item j scores key j against all R
 * rows (q rows in local memory, the K row read once), a tree reduction in
 * local memory gives each row's block maximum, the key's owner turns its
 * scores into weights, and for the P.V product work-item c owns output columns
 * c, c + WG, ... so a V row is read by adjacent work-items. Same arguments,
 * masks and outputs as the row-parallel attn_fwd. */
#define CPI ((DV + WG - 1) / WG)
__attribute__((reqd_work_group_size(WG, 1, 1))) kernel void
attn_fwd(ATTN_FWD_ARGS) {
  local float qs[R * D];
  local float ps[R * WG]; /* scores, then weights */
  local float red[R * WG]; /* the row maxima's tree */
  const int lid = get_local_id(0);
  ATTN_SEQUENCE;
  const int r_begin = get_group_id(0) * R;
  if (r_begin >= rows) return; /* the whole work-group */
  const int r_last = min(r_begin + R, rows) - 1;
  const int shift = lk - lq;

  int blo = split * chunk, bhi = min(lk, blo + chunk) - 1;
#ifdef CAUSAL
  bhi = min(bhi, r_last / group + shift);
  if (window > 0) blo = max(blo, r_begin / group + shift - window + 1);
#endif
  blo = max(blo, 0);

  /* q rows, scaled (rows past the last repeat it); each row's keys. */
  for (int e = lid; e < R * D; e += WG) {
    const int row = min(r_begin + e / D, rows - 1);
    const int i = row / group, h = hk * group + row % group;
    qs[e] = LD1(q + q_off + qb * q_s0 + (long)(q0 + i) * q_s1 + h * q_s2 + (e % D) * q_s3) * scale;
  }
  int lo[R], hi[R];
  float m[R], l[R], acc[R][CPI];
  for (int r = 0; r < R; ++r) {
    const int i = min(r_begin + r, rows - 1) / group;
    lo[r] = 0, hi[r] = lk - 1;
#ifdef CAUSAL
    hi[r] = min(hi[r], i + shift);
    if (window > 0) lo[r] = max(lo[r], i + shift - window + 1);
#endif
    m[r] = -INFINITY, l[r] = 0.0f;
    for (int c = 0; c < CPI; ++c)
      acc[r][c] = 0.0f;
  }

  const global T *kbase = k + k_off + qb * k_s0 + (long)k0 * k_s1 + hk * k_s2;
  const global T *vbase = v + v_off + qb * v_s0 + (long)k0 * v_s1 + hk * v_s2;
  const int nblocks = bhi >= blo ? (bhi - blo) / WG + 1 : 0;
  for (int blk = 0; blk < nblocks; ++blk) {
    const int j0 = blo + blk * WG, key = j0 + lid;
    /* q is staged; the last block's weights and maxima are read. */
    barrier(CLK_LOCAL_MEM_FENCE);
    float dot[R];
    for (int r = 0; r < R; ++r)
      dot[r] = 0.0f;
    if (key <= bhi) {
      const global T *kp = kbase + (long)key * k_s1;
#ifdef CONTIG
      for (int c = 0; c < D / VEC; ++c) {
        const vf kv = SM_LOAD(ACT, VEC)(kp + c * VEC);
        for (int r = 0; r < R; ++r)
          dot[r] += hsum(VLOAD(c, qs + r * D) * kv);
      }
#else
      for (int d = 0; d < D; ++d) {
        const float kv = LD1(kp + d * k_s3);
        for (int r = 0; r < R; ++r)
          dot[r] = fma(qs[r * D + d], kv, dot[r]);
      }
#endif
    }
    for (int r = 0; r < R; ++r) {
      float x = dot[r];
#ifdef SOFTCAP
      x = softcap * tanh(x / softcap);
#endif
      const bool ok = key >= lo[r] && key <= hi[r] && key <= bhi;
#ifdef SIGMOID
      ps[r * WG + lid] = ok ? 1.0f / (1.0f + exp(-(x + sigmoid_bias))) : 0.0f;
#else
      ps[r * WG + lid] = red[r * WG + lid] = ok ? x : -INFINITY;
#endif
    }
#ifndef SIGMOID
    for (int st = WG / 2; st > 0; st >>= 1) {
      barrier(CLK_LOCAL_MEM_FENCE);
      if (lid < st)
        for (int r = 0; r < R; ++r)
          red[r * WG + lid] = fmax(red[r * WG + lid], red[r * WG + lid + st]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int r = 0; r < R; ++r) {
      const float mn = fmax(m[r], red[r * WG]);
      const float base = mn == -INFINITY ? 0.0f : mn;
      /* Masked keys and the first block: weights of exactly 0. */
      const float alpha = m[r] == -INFINITY ? 0.0f : exp(m[r] - base);
      l[r] *= alpha;
      for (int c = 0; c < CPI; ++c)
        acc[r][c] *= alpha;
      m[r] = mn;
      const float x = ps[r * WG + lid];
      ps[r * WG + lid] = x == -INFINITY ? 0.0f : exp(x - base);
    }
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    const int nk = min(WG, bhi - j0 + 1);
    for (int j = 0; j < nk; ++j) {
      const global T *vp = vbase + (long)(j0 + j) * v_s1;
      float vv[CPI];
      for (int c = 0; c < CPI; ++c)
        vv[c] = lid + c * WG < DV ? LD1(vp + (lid + c * WG) * v_s3) : 0.0f;
      for (int r = 0; r < R; ++r) {
        const float w = ps[r * WG + j];
        l[r] += w;
        for (int c = 0; c < CPI; ++c)
          acc[r][c] = fma(w, vv[c], acc[r][c]);
      }
    }
  }

  for (int r = 0; r < R && r_begin + r < rows; ++r) {
    const int row = r_begin + r, i = row / group, h = hk * group + row % group;
#ifdef SIGMOID
    const float inv = 1.0f, row_lse = 0.0f;
#else
    const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    const float row_lse = l[r] > 0.0f ? m[r] + log(l[r]) : -INFINITY;
#endif
#ifdef SPLIT
    const long prow = (long)split * part_rows + ((long)qb * lq_dense + q0 + i) * q_heads + h;
    for (int c = 0; c < CPI; ++c)
      if (lid + c * WG < DV) part_out[prow * DV + lid + c * WG] = acc[r][c] * inv;
    if (lid == 0) part_lse[prow] = row_lse;
#else
    global T *op = o + o_off + qb * o_s0 + (long)(q0 + i) * o_s1 + h * o_s2;
    for (int c = 0; c < CPI; ++c)
      if (lid + c * WG < DV) ST1(op + (lid + c * WG) * o_s3, acc[r][c] * inv);
    if (has_lse && lid == 0) lse[l_off + qb * l_s0 + h * l_s1 + (long)(q0 + i) * l_s2] = row_lse;
#endif
  }
}
#endif /* KEYPAR */

#ifdef SPLIT
/* One work-item a row (token t of the flattened q tokens, head h): merges the
 * splits' partials. tokens_per_batch maps t to (batch, token). */
kernel void attn_combine(const global float *part_out, const global float *part_lse,
                         long part_rows, int splits, global T *o, long o_off, long o_s0,
                         long o_s1, long o_s2, long o_s3, global float *lse, long l_off,
                         long l_s0, long l_s1, long l_s2, int has_lse, int q_heads,
                         int tokens_per_batch) {
  const long r = get_global_id(0);
  if (r >= part_rows) return;
  const int h = r % q_heads;
  const long t = r / q_heads;
  const long b = t / tokens_per_batch, i = t % tokens_per_batch;
  global T *op = o + o_off + b * o_s0 + i * o_s1 + h * o_s2;
#ifdef SIGMOID
  for (int d = 0; d < DV; ++d) {
    float a = 0.0f;
    for (int s = 0; s < splits; ++s)
      a += part_out[((long)s * part_rows + r) * DV + d];
    ST1(op + d * o_s3, a);
  }
#else
  float m = -INFINITY;
  for (int s = 0; s < splits; ++s)
    m = fmax(m, part_lse[(long)s * part_rows + r]);
  const float base = m == -INFINITY ? 0.0f : m;
  float sum = 0.0f;
  for (int s = 0; s < splits; ++s)
    sum += exp(part_lse[(long)s * part_rows + r] - base);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int d = 0; d < DV; ++d) {
    float a = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const long pr = (long)s * part_rows + r;
      a += exp(part_lse[pr] - base) * part_out[pr * DV + d];
    }
    ST1(op + d * o_s3, a * inv);
  }
  if (has_lse) lse[l_off + b * l_s0 + h * l_s1 + i * l_s2] = m == -INFINITY ? m : m + log(sum);
#endif
}
#endif

#else /* MERGE */

#define PT SM_T(PART)
#define PLD1 SM_LOAD(PART, 1)

/* Table per part p (9 longs at p * 9): out offset and 4 strides, lse offset
 * and 3 strides; then the same for out and lse at NPARTS * 9. */
kernel void attn_merge(const global long *tab, global T *o, global float *lse, int has_lse,
                       const global PT *o0, const global float *l0, const global PT *o1,
                       const global float *l1, const global PT *o2, const global float *l2,
                       const global PT *o3, const global float *l3, const global PT *o4,
                       const global float *l4, const global PT *o5, const global float *l5,
                       const global PT *o6, const global float *l6, const global PT *o7,
                       const global float *l7, int tokens, int q_heads, int dv, long rows) {
  const long r = get_global_id(0);
  if (r >= rows) return;
  const long h = r % q_heads, t = (r / q_heads) % tokens, b = r / ((long)q_heads * tokens);
  const global PT *po[8] = {o0, o1, o2, o3, o4, o5, o6, o7};
  const global float *pl[8] = {l0, l1, l2, l3, l4, l5, l6, l7};
  long obase[NPARTS];
  float w[NPARTS];
  float m = -INFINITY;
  for (int p = 0; p < NPARTS; ++p) {
    const global long *e = tab + p * 9;
    obase[p] = e[0] + b * e[1] + t * e[2] + h * e[3];
    w[p] = pl[p][e[5] + b * e[6] + h * e[7] + t * e[8]];
    m = fmax(m, w[p]);
  }
  const float base = m == -INFINITY ? 0.0f : m;
  float sum = 0.0f;
  for (int p = 0; p < NPARTS; ++p) {
    w[p] = exp(w[p] - base);
    sum += w[p];
  }
  const float inv = m == -INFINITY ? 0.0f : 1.0f / sum;
  const global long *e = tab + NPARTS * 9;
  global T *op = o + e[0] + b * e[1] + t * e[2] + h * e[3];
  for (int d = 0; d < dv; ++d) {
    float a = 0.0f;
    for (int p = 0; p < NPARTS; ++p)
      a += w[p] * PLD1(po[p] + obase[p] + d * tab[p * 9 + 4]);
    ST1(op + d * e[4], m == -INFINITY ? 0.0f : a * inv);
  }
  if (has_lse) lse[e[5] + b * e[6] + h * e[7] + t * e[8]] = m == -INFINITY ? m : m + log(sum);
}

#endif
