/* Attention and the log-sum-exp merge: argument rules, op descriptors, float64
 * references. */
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { max_head_dim = 256 };

/* Reads a small I32 tensor to the host (for validation; a sync). */
static seqmix_status read_index(const char *fn, const char *arg, const seqmix_tensor *t,
                                int64_t want_len, int32_t **out) {
  *out = NULL;
  if (t->dtype != SEQMIX_I32)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is %s; it must be i32", fn, arg,
                   seqmix_dtype_name(t->dtype));
  if (t->rank != 1 || t->shape[0] != want_len)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s must be a vector of %lld elements", fn,
                   arg, (long long)want_len);
  int32_t *host = malloc((size_t)want_len * sizeof *host);
  if (!host) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  seqmix_status st = seqmix_tensor_read(t, host, (size_t)want_len * sizeof *host);
  if (st) {
    free(host);
    return st;
  }
  *out = host;
  return SEQMIX_OK;
}

static seqmix_status check_offsets(const char *fn, const char *arg, const int32_t *cu, int64_t n,
                                   int64_t total, bool must_cover) {
  if (cu[0] != 0)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s[0] is %d; it must be 0", fn, arg, cu[0]);
  for (int64_t b = 0; b < n; ++b)
    if (cu[b + 1] < cu[b])
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: %s decreases at %lld (%d then %d); offsets must not decrease", fn, arg,
                     (long long)b, cu[b], cu[b + 1]);
  if (cu[n] > total || (must_cover && cu[n] != total))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s ends at %d but the tensor has %lld tokens",
                   fn, arg, cu[n], (long long)total);
  return SEQMIX_OK;
}

seqmix_status seqmix_attention(seqmix_context *ctx, const seqmix_tensor *q, const seqmix_tensor *k,
                               const seqmix_tensor *v, seqmix_tensor *out, seqmix_tensor *lse,
                               const seqmix_attention_params *params) {
  static const char fn[] = "seqmix_attention";
  const seqmix_attention_params defaults = {0};
  const seqmix_attention_params *p = params ? params : &defaults;
  seqmix_status st;
  if ((st = sm_check_context(fn, ctx)) || (st = sm_check_tensor(fn, "q", ctx, q, false)) ||
      (st = sm_check_tensor(fn, "k", ctx, k, false)) ||
      (st = sm_check_tensor(fn, "v", ctx, v, false)) ||
      (st = sm_check_tensor(fn, "out", ctx, out, false)) ||
      (st = sm_check_tensor(fn, "lse", ctx, lse, true)) ||
      (st = sm_check_tensor(fn, "params->cu_seqlens_q", ctx, p->cu_seqlens_q, true)) ||
      (st = sm_check_tensor(fn, "params->cu_seqlens_k", ctx, p->cu_seqlens_k, true)) ||
      (st = sm_check_tensor(fn, "params->seqused_k", ctx, p->seqused_k, true)))
    return st;
  const char *names[] = {"q", "k", "v", "out"};
  const seqmix_tensor *ts[] = {q, k, v, out};
  for (int i = 0; i < 4; ++i)
    if (ts[i]->rank != 4)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s has rank %d; it must be [B, L, H, D]",
                     fn, names[i], ts[i]->rank);
  if ((st = sm_check_activation_dtype(fn, "q", q)) || (st = sm_check_same_dtype(fn, "k", k, "q", q)) ||
      (st = sm_check_same_dtype(fn, "v", v, "q", q)) ||
      (st = sm_check_same_dtype(fn, "out", out, "q", q)) ||
      (lse && (st = sm_check_f32(fn, "lse", lse))))
    return st;
  const int64_t B = q->shape[0], Lq = q->shape[1], Hq = q->shape[2], D = q->shape[3];
  const int64_t Lk = k->shape[1], Hk = k->shape[2], Dv = v->shape[3];
  static const char *const bkhd[] = {"B", "Lk", "Hk", "D"}, *const bkhdv[] = {"B", "Lk", "Hk", "Dv"},
                           *const bqhdv[] = {"B", "Lq", "Hq", "Dv"}, *const bhl[] = {"B", "Hq", "Lq"};
  const int64_t k_shape[] = {B, Lk, Hk, D}, v_shape[] = {B, Lk, Hk, Dv},
                o_shape[] = {B, Lq, Hq, Dv}, l_shape[] = {B, Hq, Lq};
  if ((st = sm_check_shape(fn, "k", k, 4, k_shape, bkhd)) ||
      (st = sm_check_shape(fn, "v", v, 4, v_shape, bkhdv)) ||
      (st = sm_check_shape(fn, "out", out, 4, o_shape, bqhdv)) ||
      (lse && (st = sm_check_shape(fn, "lse", lse, 3, l_shape, bhl))))
    return st;
  if (Hq % Hk != 0)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: k has %lld heads but q has %lld; q heads must be a multiple of k heads", fn,
                   (long long)Hk, (long long)Hq);
  if (D > max_head_dim || Dv > max_head_dim)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: head dims are D=%lld and Dv=%lld; both must be <= %d", fn, (long long)D,
                   (long long)Dv, max_head_dim);
  if (!isfinite(p->scale) || !isfinite(p->softcap) || p->softcap < 0 || !isfinite(p->sigmoid_bias))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: params->scale, softcap and sigmoid_bias must be finite, softcap >= 0", fn);
  if (p->window < 0 || (p->window > 0 && !p->causal))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: params->window is %d; it must be 0, or > 0 with causal", fn, p->window);
  if (p->score != SEQMIX_SCORE_SOFTMAX && p->score != SEQMIX_SCORE_SIGMOID)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: params->score is %d; it must be a seqmix_score",
                   fn, (int)p->score);
  if (lse && p->score == SEQMIX_SCORE_SIGMOID)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: lse is given but the score is sigmoid; lse exists for softmax only", fn);
  if (!p->cu_seqlens_q != !p->cu_seqlens_k)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: params->cu_seqlens_q and cu_seqlens_k go together; give both or neither", fn);
  const char *outs[] = {"out", "lse"};
  const seqmix_tensor *out_ts[] = {out, lse};
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 3; ++i)
      if ((st = sm_check_no_overlap(fn, outs[o], out_ts[o], names[i], ts[i]))) return st;
  if ((st = sm_check_no_overlap(fn, "lse", lse, "out", out))) return st;

  sm_op op;
  memset(&op, 0, sizeof op);
  op.kind = SM_OP_ATTENTION;
  op.name = fn;
  op.tensor_count = 8;
  op.tensors[SM_ATTN_Q] = sm_tensor_ref_of(q);
  op.tensors[SM_ATTN_K] = sm_tensor_ref_of(k);
  op.tensors[SM_ATTN_V] = sm_tensor_ref_of(v);
  op.tensors[SM_ATTN_OUT] = sm_tensor_ref_of(out);
  op.tensors[SM_ATTN_LSE] = sm_tensor_ref_of(lse);
  op.tensors[SM_ATTN_CU_Q] = sm_tensor_ref_of(p->cu_seqlens_q);
  op.tensors[SM_ATTN_CU_K] = sm_tensor_ref_of(p->cu_seqlens_k);
  op.tensors[SM_ATTN_SEQUSED_K] = sm_tensor_ref_of(p->seqused_k);
  op.output_mask = (1u << SM_ATTN_OUT) | (lse ? 1u << SM_ATTN_LSE : 0u);
  sm_attention_desc *d = &op.u.attention;
  *d = (sm_attention_desc){
      .batch = B, .q_tokens = Lq, .k_tokens = Lk, .q_heads = Hq, .k_heads = Hk,
      .head_dim = D, .v_head_dim = Dv, .max_q_len = Lq, .max_k_len = Lk,
      .scale = p->scale != 0 ? p->scale : 1.0f / sqrtf((float)D),
      .softcap = p->softcap, .sigmoid_bias = p->sigmoid_bias, .causal = p->causal,
      .sigmoid = p->score == SEQMIX_SCORE_SIGMOID, .window = p->window,
  };
  int32_t *cu_q = NULL, *cu_k = NULL, *used = NULL;
  if (p->cu_seqlens_q) {
    if (B != 1)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: q has batch %lld with cu_seqlens; a packed batch is [1, total, H, D]", fn,
                     (long long)B);
    const int64_t n = p->cu_seqlens_q->rank == 1 ? p->cu_seqlens_q->shape[0] - 1 : 0;
    if (n < 1)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: params->cu_seqlens_q must be an i32 vector of batch+1 >= 2 offsets", fn);
    if ((st = read_index(fn, "params->cu_seqlens_q", p->cu_seqlens_q, n + 1, &cu_q)) ||
        (st = read_index(fn, "params->cu_seqlens_k", p->cu_seqlens_k, n + 1, &cu_k)) ||
        (st = check_offsets(fn, "params->cu_seqlens_q", cu_q, n, Lq, true)) ||
        (st = check_offsets(fn, "params->cu_seqlens_k", cu_k, n, Lk, false)))
      goto done;
    d->varlen = true;
    d->batch = n;
    d->max_q_len = d->max_k_len = 0;
    for (int64_t b = 0; b < n; ++b) {
      if (cu_q[b + 1] - cu_q[b] > d->max_q_len) d->max_q_len = cu_q[b + 1] - cu_q[b];
      if (cu_k[b + 1] - cu_k[b] > d->max_k_len) d->max_k_len = cu_k[b + 1] - cu_k[b];
    }
  }
  if (p->seqused_k) {
    if ((st = read_index(fn, "params->seqused_k", p->seqused_k, d->batch, &used))) goto done;
    for (int64_t b = 0; b < d->batch; ++b) {
      int64_t len = cu_k ? cu_k[b + 1] - cu_k[b] : Lk;
      if (used[b] < 0 || used[b] > len) {
        st = sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: params->seqused_k[%lld] is %d; it must be 0 to %lld (the keys there)",
                     fn, (long long)b, used[b], (long long)len);
        goto done;
      }
    }
  }
  d->cu_q = cu_q, d->cu_k = cu_k, d->seqused_k = used;
  st = sm_dispatch(ctx, &op);
done:
  free(cu_q), free(cu_k), free(used);
  return st;
}

/* ---- merge ---- */

static seqmix_status merge_round(seqmix_context *ctx, int n, const seqmix_tensor *const *outs,
                                 const seqmix_tensor *const *lses, seqmix_tensor *out,
                                 seqmix_tensor *lse) {
  sm_op op;
  memset(&op, 0, sizeof op);
  op.kind = SM_OP_ATTENTION_MERGE;
  op.name = "seqmix_attention_merge";
  op.tensor_count = SM_MERGE_FIRST_PART + 2 * n;
  op.tensors[SM_MERGE_OUT] = sm_tensor_ref_of(out);
  op.tensors[SM_MERGE_LSE] = sm_tensor_ref_of(lse);
  for (int i = 0; i < n; ++i) {
    op.tensors[SM_MERGE_FIRST_PART + 2 * i] = sm_tensor_ref_of(outs[i]);
    op.tensors[SM_MERGE_FIRST_PART + 2 * i + 1] = sm_tensor_ref_of(lses[i]);
  }
  op.output_mask = (1u << SM_MERGE_OUT) | (lse ? 1u << SM_MERGE_LSE : 0u);
  op.u.merge = (sm_merge_desc){n, out->shape[0], out->shape[1], out->shape[2], out->shape[3]};
  return sm_dispatch(ctx, &op);
}

seqmix_status seqmix_attention_merge(seqmix_context *ctx, int n, const seqmix_tensor *const *outs,
                                     const seqmix_tensor *const *lses, seqmix_tensor *out,
                                     seqmix_tensor *lse) {
  static const char fn[] = "seqmix_attention_merge";
  seqmix_status st;
  if ((st = sm_check_context(fn, ctx)) || (st = sm_check_tensor(fn, "out", ctx, out, false)) ||
      (st = sm_check_tensor(fn, "lse", ctx, lse, true)))
    return st;
  if (n < 1) return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: n is %d; it must be >= 1", fn, n);
  if (!outs || !lses)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s is NULL", fn, outs ? "lses" : "outs");
  if (out->rank != 4)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: out has rank %d; it must be [B, Lq, Hq, Dv]",
                   fn, out->rank);
  if ((st = sm_check_activation_dtype(fn, "out", out)) || (lse && (st = sm_check_f32(fn, "lse", lse))))
    return st;
  const int64_t B = out->shape[0], Lq = out->shape[1], Hq = out->shape[2];
  static const char *const bqhdv[] = {"B", "Lq", "Hq", "Dv"}, *const bhl[] = {"B", "Hq", "Lq"};
  const int64_t l_shape[] = {B, Hq, Lq};
  if (lse && (st = sm_check_shape(fn, "lse", lse, 3, l_shape, bhl))) return st;
  for (int i = 0; i < n; ++i) {
    char on[32], ln[32];
    snprintf(on, sizeof on, "outs[%d]", i);
    snprintf(ln, sizeof ln, "lses[%d]", i);
    if ((st = sm_check_tensor(fn, on, ctx, outs[i], false)) ||
        (st = sm_check_tensor(fn, ln, ctx, lses[i], false)) ||
        (st = sm_check_same_dtype(fn, on, outs[i], "out", out)) ||
        (st = sm_check_f32(fn, ln, lses[i])) ||
        (st = sm_check_shape(fn, on, outs[i], 4, out->shape, bqhdv)) ||
        (st = sm_check_shape(fn, ln, lses[i], 3, l_shape, bhl)) ||
        (st = sm_check_no_overlap(fn, "out", out, on, outs[i])) ||
        (st = sm_check_no_overlap(fn, "out", out, ln, lses[i])) ||
        (st = sm_check_no_overlap(fn, "lse", lse, on, outs[i])) ||
        (st = sm_check_no_overlap(fn, "lse", lse, ln, lses[i])))
      return st;
  }
  if (n <= SM_MERGE_MAX_PARTS) return merge_round(ctx, n, outs, lses, out, lse);
  /* More parts than one launch takes: merge in groups into f32 partials, then
   * merge those (log-sum-exp merging is associative). */
  const int groups = (n + SM_MERGE_MAX_PARTS - 1) / SM_MERGE_MAX_PARTS;
  if (groups > SM_MERGE_MAX_PARTS)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: n is %d; at most %d parts are supported", fn,
                   n, SM_MERGE_MAX_PARTS * SM_MERGE_MAX_PARTS);
  seqmix_tensor *g_out[SM_MERGE_MAX_PARTS] = {0}, *g_lse[SM_MERGE_MAX_PARTS] = {0};
  for (int g = 0; g < groups && !st; ++g) {
    int first = g * SM_MERGE_MAX_PARTS, count = n - first < SM_MERGE_MAX_PARTS ? n - first : SM_MERGE_MAX_PARTS;
    if ((st = seqmix_tensor_create(ctx, SEQMIX_F32, 4, out->shape, &g_out[g])) ||
        (st = seqmix_tensor_create(ctx, SEQMIX_F32, 3, l_shape, &g_lse[g])))
      break;
    st = merge_round(ctx, count, outs + first, lses + first, g_out[g], g_lse[g]);
  }
  if (!st) {
    /* The group partials are f32; the final merge writes out's dtype. */
    st = merge_round(ctx, groups, (const seqmix_tensor *const *)g_out,
                     (const seqmix_tensor *const *)g_lse, out, lse);
  }
  for (int g = 0; g < groups; ++g) {
    seqmix_tensor_destroy(g_out[g]);
    seqmix_tensor_destroy(g_lse[g]);
  }
  return st;
}

/* ---- float64 references ---- */

seqmix_status seqmix_reference_attention(const seqmix_reference_attention_shape *s,
                                         const double *q, const double *k, const double *v,
                                         double *out, double *lse,
                                         const seqmix_attention_params *params) {
  static const char fn[] = "seqmix_reference_attention";
  if (!s || !q || !k || !v || !out)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: shape, q, k, v and out are required", fn);
  const seqmix_attention_params defaults = {0};
  const seqmix_attention_params *p = params ? params : &defaults;
  const int64_t Hq = s->q_heads, Hk = s->k_heads, D = s->head_dim, Dv = s->v_head_dim;
  const bool varlen = s->cu_seqlens_q != NULL;
  if (Hk < 1 || Hq % Hk || D < 1 || Dv < 1 || s->batch < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: bad shape", fn);
  const double scale = p->scale != 0 ? p->scale : 1.0 / sqrt((double)D);
  const int64_t group = Hq / Hk;
  const int64_t total_q = varlen ? s->q_tokens : s->batch * s->q_tokens;
  double *scores = malloc((size_t)(varlen ? s->k_tokens : s->k_tokens) * sizeof *scores + 8);
  if (!scores) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  (void)total_q;
  for (int64_t b = 0; b < s->batch; ++b) {
    int64_t q0 = varlen ? s->cu_seqlens_q[b] : b * s->q_tokens;
    int64_t k0 = varlen ? s->cu_seqlens_k[b] : b * s->k_tokens;
    int64_t lq = varlen ? s->cu_seqlens_q[b + 1] - q0 : s->q_tokens;
    int64_t lk = varlen ? s->cu_seqlens_k[b + 1] - k0 : s->k_tokens;
    if (s->seqused_k) lk = s->seqused_k[b];
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h / group;
      for (int64_t i = 0; i < lq; ++i) {
        const double *qi = q + ((q0 + i) * Hq + h) * D;
        double *oi = out + ((q0 + i) * Hq + h) * Dv;
        int64_t hi = lk - 1, lo = 0; /* visible keys lo..hi */
        if (p->causal) hi = i + lk - lq < hi ? i + lk - lq : hi;
        if (p->causal && p->window > 0) lo = i + lk - lq - p->window + 1 > 0 ? i + lk - lq - p->window + 1 : 0;
        double m = -INFINITY;
        for (int64_t j = lo; j <= hi; ++j) {
          const double *kj = k + ((k0 + j) * Hk + hk) * D;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
          double sc = scale * dot;
          if (p->softcap > 0) sc = p->softcap * tanh(sc / p->softcap);
          scores[j] = sc;
          if (sc > m) m = sc;
        }
        for (int64_t d = 0; d < Dv; ++d) oi[d] = 0;
        double sum = 0;
        for (int64_t j = lo; j <= hi; ++j) {
          double w = p->score == SEQMIX_SCORE_SIGMOID
                         ? 1.0 / (1.0 + exp(-(scores[j] + p->sigmoid_bias)))
                         : exp(scores[j] - m);
          sum += w;
          const double *vj = v + ((k0 + j) * Hk + hk) * Dv;
          for (int64_t d = 0; d < Dv; ++d) oi[d] += w * vj[d];
        }
        if (p->score != SEQMIX_SCORE_SIGMOID && hi >= lo)
          for (int64_t d = 0; d < Dv; ++d) oi[d] /= sum;
        if (lse) {
          /* lse [B, Hq, Lq]; varlen: [1, Hq, total_q] */
          int64_t row = varlen ? h * s->q_tokens + q0 + i : (b * Hq + h) * s->q_tokens + i;
          lse[row] = hi >= lo ? m + log(sum) : -INFINITY;
        }
      }
    }
  }
  free(scores);
  return SEQMIX_OK;
}

seqmix_status seqmix_reference_attention_merge(int n, int64_t batch, int64_t q_tokens,
                                               int64_t q_heads, int64_t v_head_dim,
                                               const double *const *outs,
                                               const double *const *lses, double *out,
                                               double *lse) {
  if (n < 1 || !outs || !lses || !out)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "seqmix_reference_attention_merge: bad arguments");
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < q_tokens; ++t)
      for (int64_t h = 0; h < q_heads; ++h) {
        const int64_t row = (b * q_heads + h) * q_tokens + t, o = ((b * q_tokens + t) * q_heads + h) * v_head_dim;
        double m = -INFINITY;
        for (int i = 0; i < n; ++i)
          if (lses[i][row] > m) m = lses[i][row];
        double sum = 0;
        for (int64_t d = 0; d < v_head_dim; ++d) out[o + d] = 0;
        if (m > -INFINITY) {
          for (int i = 0; i < n; ++i) {
            double w = exp(lses[i][row] - m);
            sum += w;
            for (int64_t d = 0; d < v_head_dim; ++d) out[o + d] += w * outs[i][o + d];
          }
          for (int64_t d = 0; d < v_head_dim; ++d) out[o + d] /= sum;
        }
        if (lse) lse[row] = m > -INFINITY ? m + log(sum) : -INFINITY;
      }
  return SEQMIX_OK;
}
