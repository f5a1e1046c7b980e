/* State-space and linear-recurrent mixers: selective scan (Mamba-1), SSD
 * (Mamba-2) and linear attention. Argument rules, op descriptors, float64
 * references. */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Shared argument rules ----------------------------------------------- */

typedef struct named {
  const char *name;
  const seqmix_tensor *t; /* NULL: absent optional tensor */
} named;

/* Every tensor exists (or is optional), is on ctx, and no output shares
 * storage elements with another argument. */
static seqmix_status check_tensors(const char *fn, const seqmix_context *ctx, const named *ins,
                                   int n_in, const char *const *optional, const named *outs,
                                   int n_out) {
  seqmix_status st;
  if ((st = sm_check_context(fn, ctx))) return st;
  for (int i = 0; i < n_in + n_out; ++i) {
    const named *a = i < n_in ? &ins[i] : &outs[i - n_in];
    bool opt = false;
    for (const char *const *o = optional; *o; ++o) opt |= !strcmp(*o, a->name);
    if ((st = sm_check_tensor(fn, a->name, ctx, a->t, opt))) return st;
  }
  for (int o = 0; o < n_out; ++o) {
    for (int i = 0; i < n_in; ++i)
      if ((st = sm_check_no_overlap(fn, outs[o].name, outs[o].t, ins[i].name, ins[i].t))) return st;
    for (int p = o + 1; p < n_out; ++p)
      if ((st = sm_check_no_overlap(fn, outs[o].name, outs[o].t, outs[p].name, outs[p].t)))
        return st;
  }
  return SEQMIX_OK;
}

/* Optional per-channel parameter: dtype F32 or the activations', shape [n]. */
static seqmix_status check_vector(const char *fn, const char *arg, const seqmix_tensor *t,
                                  const seqmix_tensor *act, int64_t n, const char *dim) {
  seqmix_status st;
  if (!t) return SEQMIX_OK;
  const char *const names[] = {dim};
  if ((st = sm_check_param_dtype(fn, arg, t, act))) return st;
  return sm_check_shape(fn, arg, t, 1, &n, names);
}

static seqmix_status check_rank(const char *fn, const char *arg, const seqmix_tensor *t, int rank,
                                const char *layout) {
  if (t->rank != rank)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: %s has rank %d; it must be %s", fn, arg,
                   t->rank, layout);
  return SEQMIX_OK;
}

static seqmix_status check_groups(const char *fn, const char *who, int64_t count, int64_t groups) {
  if (groups < 1 || count % groups)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: Bm has %lld groups but there are %lld %s; %s must be a multiple of the "
                   "groups G",
                   fn, (long long)groups, (long long)count, who, who);
  return SEQMIX_OK;
}

static seqmix_status check_chunk(const char *fn, int32_t chunk) {
  if (chunk < 0 || chunk > 256)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: params->chunk_size is %d; it must be 0 (auto) or 1..256", fn, (int)chunk);
  return SEQMIX_OK;
}

static sm_op make_op(sm_op_kind kind, const char *fn, const named *args, int count,
                     uint32_t output_mask) {
  sm_op op;
  memset(&op, 0, sizeof op);
  op.kind = kind;
  op.name = fn;
  op.tensor_count = count;
  for (int i = 0; i < count; ++i) op.tensors[i] = sm_tensor_ref_of(args[i].t);
  op.output_mask = output_mask;
  return op;
}

/* ---- Selective scan ------------------------------------------------------ */

seqmix_status seqmix_selective_scan(seqmix_context *ctx, const seqmix_tensor *u,
                                    const seqmix_tensor *delta, const seqmix_tensor *A,
                                    const seqmix_tensor *Bm, const seqmix_tensor *Cm,
                                    const seqmix_tensor *D_skip, const seqmix_tensor *z,
                                    const seqmix_tensor *delta_bias, seqmix_tensor *state,
                                    seqmix_tensor *y, const seqmix_selective_scan_params *params) {
  static const char fn[] = "seqmix_selective_scan";
  static const char *const optional[] = {"D_skip", "z", "delta_bias", "state", NULL};
  /* In the order of the SM_SCAN_* slots. */
  const named args[] = {{"u", u},           {"delta", delta}, {"A", A},
                        {"Bm", Bm},         {"Cm", Cm},       {"D_skip", D_skip},
                        {"z", z},           {"delta_bias", delta_bias},
                        {"state", state},   {"y", y}};
  seqmix_status st;
  if ((st = check_tensors(fn, ctx, args, 8, optional, args + 8, 2))) return st;
  if ((st = check_rank(fn, "u", u, 3, "[B, L, D]")) || (st = check_rank(fn, "A", A, 2, "[D, N]")) ||
      (st = check_rank(fn, "Bm", Bm, 4, "[B, L, G, N]")))
    return st;
  const int64_t B = u->shape[0], L = u->shape[1], D = u->shape[2], N = A->shape[1],
                G = Bm->shape[2];
  static const char *const bld[] = {"B", "L", "D"}, *const dn[] = {"D", "N"},
                           *const blgn[] = {"B", "L", "G", "N"}, *const bdn[] = {"B", "D", "N"};
  const int64_t s_bld[] = {B, L, D}, s_dn[] = {D, N}, s_blgn[] = {B, L, G, N}, s_bdn[] = {B, D, N};
  if ((st = sm_check_activation_dtype(fn, "u", u)) ||
      (st = sm_check_same_dtype(fn, "delta", delta, "u", u)) ||
      (st = sm_check_same_dtype(fn, "Bm", Bm, "u", u)) ||
      (st = sm_check_same_dtype(fn, "Cm", Cm, "u", u)) ||
      (st = sm_check_same_dtype(fn, "y", y, "u", u)) ||
      (z && (st = sm_check_same_dtype(fn, "z", z, "u", u))) || (st = sm_check_f32(fn, "A", A)) ||
      (state && (st = sm_check_f32(fn, "state", state))))
    return st;
  if ((st = sm_check_shape(fn, "delta", delta, 3, s_bld, bld)) ||
      (st = sm_check_shape(fn, "A", A, 2, s_dn, dn)) ||
      (st = sm_check_shape(fn, "Bm", Bm, 4, s_blgn, blgn)) ||
      (st = sm_check_shape(fn, "Cm", Cm, 4, s_blgn, blgn)) ||
      (z && (st = sm_check_shape(fn, "z", z, 3, s_bld, bld))) ||
      (state && (st = sm_check_shape(fn, "state", state, 3, s_bdn, bdn))) ||
      (st = sm_check_shape(fn, "y", y, 3, s_bld, bld)) ||
      (st = check_vector(fn, "D_skip", D_skip, u, D, "D")) ||
      (st = check_vector(fn, "delta_bias", delta_bias, u, D, "D")) ||
      (st = check_groups(fn, "channels D", D, G)))
    return st;

  sm_op op = make_op(SM_OP_SELECTIVE_SCAN, fn, args, 10,
                     (1u << SM_SCAN_Y) | (state ? 1u << SM_SCAN_STATE : 0u));
  op.u.scan = (sm_scan_desc){B, L, D, N, G, params && params->delta_softplus};
  return sm_dispatch(ctx, &op);
}

/* ---- SSD --------------------------------------------------------------- */

seqmix_status seqmix_ssd(seqmix_context *ctx, const seqmix_tensor *x, const seqmix_tensor *dt,
                         const seqmix_tensor *A, const seqmix_tensor *Bm, const seqmix_tensor *Cm,
                         const seqmix_tensor *D_skip, const seqmix_tensor *z,
                         const seqmix_tensor *dt_bias, seqmix_tensor *state, seqmix_tensor *y,
                         const seqmix_ssd_params *params) {
  static const char fn[] = "seqmix_ssd";
  static const char *const optional[] = {"D_skip", "z", "dt_bias", "state", NULL};
  const named args[] = {{"x", x},   {"dt", dt}, {"A", A},         {"Bm", Bm},       {"Cm", Cm},
                        {"D_skip", D_skip}, {"z", z}, {"dt_bias", dt_bias}, {"state", state},
                        {"y", y}};
  seqmix_status st;
  if ((st = check_tensors(fn, ctx, args, 8, optional, args + 8, 2))) return st;
  if ((st = check_rank(fn, "x", x, 4, "[B, L, H, P]")) ||
      (st = check_rank(fn, "Bm", Bm, 4, "[B, L, G, N]")))
    return st;
  const int64_t B = x->shape[0], L = x->shape[1], H = x->shape[2], P = x->shape[3],
                G = Bm->shape[2], N = Bm->shape[3];
  static const char *const blhp[] = {"B", "L", "H", "P"}, *const blh[] = {"B", "L", "H"},
                           *const h1[] = {"H"}, *const blgn[] = {"B", "L", "G", "N"},
                           *const bhpn[] = {"B", "H", "P", "N"};
  const int64_t s_blhp[] = {B, L, H, P}, s_blh[] = {B, L, H}, s_h[] = {H}, s_blgn[] = {B, L, G, N},
                s_bhpn[] = {B, H, P, N};
  if ((st = sm_check_activation_dtype(fn, "x", x)) ||
      (st = sm_check_same_dtype(fn, "dt", dt, "x", x)) ||
      (st = sm_check_same_dtype(fn, "Bm", Bm, "x", x)) ||
      (st = sm_check_same_dtype(fn, "Cm", Cm, "x", x)) ||
      (st = sm_check_same_dtype(fn, "y", y, "x", x)) ||
      (z && (st = sm_check_same_dtype(fn, "z", z, "x", x))) || (st = sm_check_f32(fn, "A", A)) ||
      (state && (st = sm_check_f32(fn, "state", state))))
    return st;
  if ((st = sm_check_shape(fn, "dt", dt, 3, s_blh, blh)) ||
      (st = sm_check_shape(fn, "Bm", Bm, 4, s_blgn, blgn)) ||
      (st = sm_check_shape(fn, "A", A, 1, s_h, h1)) ||
      (st = sm_check_shape(fn, "Cm", Cm, 4, s_blgn, blgn)) ||
      (z && (st = sm_check_shape(fn, "z", z, 4, s_blhp, blhp))) ||
      (state && (st = sm_check_shape(fn, "state", state, 4, s_bhpn, bhpn))) ||
      (st = sm_check_shape(fn, "y", y, 4, s_blhp, blhp)) ||
      (st = check_vector(fn, "D_skip", D_skip, x, H, "H")) ||
      (st = check_vector(fn, "dt_bias", dt_bias, x, H, "H")) ||
      (st = check_groups(fn, "heads H", H, G)) ||
      (st = check_chunk(fn, params ? params->chunk_size : 0)))
    return st;

  sm_op op = make_op(SM_OP_SSD, fn, args, 10, (1u << SM_SSD_Y) | (state ? 1u << SM_SSD_STATE : 0u));
  op.u.ssd = (sm_ssd_desc){B, L, H, P, N, G, params && params->dt_softplus,
                           params ? params->chunk_size : 0};
  return sm_dispatch(ctx, &op);
}

/* ---- Linear attention ---------------------------------------------------- */

seqmix_status seqmix_linear_attention(seqmix_context *ctx, const seqmix_tensor *q,
                                      const seqmix_tensor *k, const seqmix_tensor *v,
                                      const seqmix_tensor *g, seqmix_tensor *state,
                                      seqmix_tensor *out,
                                      const seqmix_linear_attention_params *params) {
  static const char fn[] = "seqmix_linear_attention";
  static const char *const optional[] = {"g", "state", NULL};
  const named args[] = {{"q", q}, {"k", k}, {"v", v}, {"g", g}, {"state", state}, {"out", out}};
  seqmix_status st;
  if ((st = check_tensors(fn, ctx, args, 4, optional, args + 4, 2))) return st;
  if ((st = check_rank(fn, "q", q, 4, "[B, L, H, Dk]")) ||
      (st = check_rank(fn, "v", v, 4, "[B, L, H, Dv]")))
    return st;
  const int64_t B = q->shape[0], L = q->shape[1], H = q->shape[2], Dk = q->shape[3],
                Dv = v->shape[3];
  const seqmix_decay decay = params ? params->decay : SEQMIX_DECAY_NONE;
  const float scale = params && params->scale != 0.0f ? params->scale : 1.0f / sqrtf((float)Dk);
  static const char *const blhk[] = {"B", "L", "H", "Dk"}, *const blhv[] = {"B", "L", "H", "Dv"},
                           *const blh[] = {"B", "L", "H"}, *const h1[] = {"H"},
                           *const bhkv[] = {"B", "H", "Dk", "Dv"};
  const int64_t s_blhk[] = {B, L, H, Dk}, s_blhv[] = {B, L, H, Dv}, s_blh[] = {B, L, H},
                s_h[] = {H}, s_bhkv[] = {B, H, Dk, Dv};
  if ((st = sm_check_activation_dtype(fn, "q", q)) ||
      (st = sm_check_same_dtype(fn, "k", k, "q", q)) ||
      (st = sm_check_same_dtype(fn, "v", v, "q", q)) ||
      (st = sm_check_same_dtype(fn, "out", out, "q", q)) ||
      (g && (st = sm_check_same_dtype(fn, "g", g, "q", q))) ||
      (state && (st = sm_check_f32(fn, "state", state))))
    return st;
  if ((st = sm_check_shape(fn, "k", k, 4, s_blhk, blhk)) ||
      (st = sm_check_shape(fn, "v", v, 4, s_blhv, blhv)) ||
      (st = sm_check_shape(fn, "out", out, 4, s_blhv, blhv)) ||
      (state && (st = sm_check_shape(fn, "state", state, 4, s_bhkv, bhkv))) ||
      (st = check_chunk(fn, params ? params->chunk_size : 0)))
    return st;
  if (!isfinite(scale))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: params->scale must be finite", fn);
  switch (decay) {
  case SEQMIX_DECAY_NONE:
    if (g)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: g is given but params->decay is SEQMIX_DECAY_NONE; pass NULL or pick a "
                     "decay kind",
                     fn);
    break;
  case SEQMIX_DECAY_HEAD:
  case SEQMIX_DECAY_TOKEN:
  case SEQMIX_DECAY_VECTOR:
    if (!g)
      return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                     "%s: g is NULL but params->decay asks for a decay; g is required", fn);
    if (decay == SEQMIX_DECAY_HEAD) st = sm_check_shape(fn, "g", g, 1, s_h, h1);
    else if (decay == SEQMIX_DECAY_TOKEN) st = sm_check_shape(fn, "g", g, 3, s_blh, blh);
    else st = sm_check_shape(fn, "g", g, 4, s_blhk, blhk);
    if (st) return st;
    break;
  default:
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT,
                   "%s: params->decay is %d; it must be a seqmix_decay value", fn, (int)decay);
  }

  sm_op op = make_op(SM_OP_LINEAR_ATTENTION, fn, args, 6,
                     (1u << SM_LA_OUT) | (state ? 1u << SM_LA_STATE : 0u));
  op.u.linear_attention =
      (sm_linear_attention_desc){B, L, H, Dk, Dv, scale, decay, params ? params->chunk_size : 0};
  return sm_dispatch(ctx, &op);
}

/* ---- Float64 references -------------------------------------------------- */

static double softplus(double x) { return x > 30.0 ? x : log1p(exp(x)); }
static double silu(double x) { return x / (1.0 + exp(-x)); }

seqmix_status seqmix_reference_selective_scan(int64_t batch, int64_t tokens, int64_t channels,
                                              int64_t state_size, int64_t groups, const double *u,
                                              const double *delta, const double *A,
                                              const double *Bm, const double *Cm,
                                              const double *D_skip, const double *z,
                                              const double *delta_bias, double *state, double *y,
                                              const seqmix_selective_scan_params *params) {
  static const char fn[] = "seqmix_reference_selective_scan";
  const int64_t B = batch, L = tokens, D = channels, N = state_size, G = groups;
  if (B < 1 || L < 1 || D < 1 || N < 1 || G < 1 || D % G)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: sizes must be >= 1 and D %% G == 0", fn);
  if (!u || !delta || !A || !Bm || !Cm || !y)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: u, delta, A, Bm, Cm and y are required", fn);
  double *h = malloc((size_t)N * sizeof *h);
  if (!h) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  const bool sp = params && params->delta_softplus;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d) {
      const int64_t grp = d / (D / G);
      double *hs = state ? state + (b * D + d) * N : NULL;
      for (int64_t n = 0; n < N; ++n) h[n] = hs ? hs[n] : 0.0;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t i = (b * L + t) * D + d;
        const double *bt = Bm + ((b * L + t) * G + grp) * N, *ct = Cm + ((b * L + t) * G + grp) * N;
        double dt = delta[i] + (delta_bias ? delta_bias[d] : 0.0);
        if (sp) dt = softplus(dt);
        double acc = 0.0;
        for (int64_t n = 0; n < N; ++n) {
          h[n] = exp(dt * A[d * N + n]) * h[n] + dt * bt[n] * u[i];
          acc += ct[n] * h[n];
        }
        if (D_skip) acc += D_skip[d] * u[i];
        if (z) acc *= silu(z[i]);
        y[i] = acc;
      }
      if (hs) memcpy(hs, h, (size_t)N * sizeof *h);
    }
  free(h);
  return SEQMIX_OK;
}

seqmix_status seqmix_reference_ssd(int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                                   int64_t state_size, int64_t groups, const double *x,
                                   const double *dt, const double *A, const double *Bm,
                                   const double *Cm, const double *D_skip, const double *z,
                                   const double *dt_bias, double *state, double *y,
                                   const seqmix_ssd_params *params) {
  static const char fn[] = "seqmix_reference_ssd";
  const int64_t B = batch, L = tokens, H = heads, P = head_dim, N = state_size, G = groups;
  if (B < 1 || L < 1 || H < 1 || P < 1 || N < 1 || G < 1 || H % G)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: sizes must be >= 1 and H %% G == 0", fn);
  if (!x || !dt || !A || !Bm || !Cm || !y)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: x, dt, A, Bm, Cm and y are required", fn);
  double *s = malloc((size_t)(P * N) * sizeof *s);
  if (!s) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  const bool sp = params && params->dt_softplus;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t hd = 0; hd < H; ++hd) {
      const int64_t grp = hd / (H / G);
      double *ss = state ? state + (b * H + hd) * P * N : NULL;
      for (int64_t i = 0; i < P * N; ++i) s[i] = ss ? ss[i] : 0.0;
      for (int64_t t = 0; t < L; ++t) {
        const double *bt = Bm + ((b * L + t) * G + grp) * N, *ct = Cm + ((b * L + t) * G + grp) * N;
        const double *xt = x + ((b * L + t) * H + hd) * P;
        double d = dt[(b * L + t) * H + hd] + (dt_bias ? dt_bias[hd] : 0.0);
        if (sp) d = softplus(d);
        const double decay = exp(d * A[hd]);
        for (int64_t p = 0; p < P; ++p) {
          double acc = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            s[p * N + n] = decay * s[p * N + n] + d * xt[p] * bt[n];
            acc += ct[n] * s[p * N + n];
          }
          if (D_skip) acc += D_skip[hd] * xt[p];
          const int64_t i = ((b * L + t) * H + hd) * P + p;
          if (z) acc *= silu(z[i]);
          y[i] = acc;
        }
      }
      if (ss) memcpy(ss, s, (size_t)(P * N) * sizeof *s);
    }
  free(s);
  return SEQMIX_OK;
}

seqmix_status seqmix_reference_linear_attention(int64_t batch, int64_t tokens, int64_t heads,
                                                int64_t key_dim, int64_t value_dim,
                                                const double *q, const double *k, const double *v,
                                                const double *g, double *state, double *out,
                                                const seqmix_linear_attention_params *params) {
  static const char fn[] = "seqmix_reference_linear_attention";
  const int64_t B = batch, L = tokens, H = heads, Dk = key_dim, Dv = value_dim;
  const seqmix_decay decay = params ? params->decay : SEQMIX_DECAY_NONE;
  if (B < 1 || L < 1 || H < 1 || Dk < 1 || Dv < 1)
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: sizes must be >= 1", fn);
  if (!q || !k || !v || !out || (decay != SEQMIX_DECAY_NONE && !g))
    return sm_fail(SEQMIX_ERROR_INVALID_ARGUMENT, "%s: q, k, v, out (and g for a decay) are required",
                   fn);
  const double scale = params && params->scale != 0.0f ? params->scale : 1.0 / sqrt((double)Dk);
  double *s = malloc((size_t)(Dk * Dv) * sizeof *s);
  if (!s) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t hd = 0; hd < H; ++hd) {
      double *ss = state ? state + (b * H + hd) * Dk * Dv : NULL;
      for (int64_t i = 0; i < Dk * Dv; ++i) s[i] = ss ? ss[i] : 0.0;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t row = (b * L + t) * H + hd;
        const double *qt = q + row * Dk, *kt = k + row * Dk, *vt = v + row * Dv;
        for (int64_t i = 0; i < Dk; ++i) {
          double lg = 0.0;
          if (decay == SEQMIX_DECAY_HEAD) lg = g[hd];
          else if (decay == SEQMIX_DECAY_TOKEN) lg = g[row];
          else if (decay == SEQMIX_DECAY_VECTOR) lg = g[row * Dk + i];
          const double f = exp(lg);
          for (int64_t j = 0; j < Dv; ++j) s[i * Dv + j] = f * s[i * Dv + j] + kt[i] * vt[j];
        }
        for (int64_t j = 0; j < Dv; ++j) {
          double acc = 0.0;
          for (int64_t i = 0; i < Dk; ++i) acc += qt[i] * s[i * Dv + j];
          out[row * Dv + j] = scale * acc;
        }
      }
      if (ss) memcpy(ss, s, (size_t)(Dk * Dv) * sizeof *s);
    }
  free(s);
  return SEQMIX_OK;
}
