/*
 * seqmix demo: the mixer part of a small hybrid model, run as an inference
 * engine runs it, on one device, then checked against the same run on the CPU.
 *
 * The stack (width D = heads x head_dim):
 *   1. ConvFormer block: 7x7 depthwise conv over the prompt laid out as an
 *      image grid (a patch front end; decode tokens are text and skip it);
 *   2. Mamba-2: short causal conv (K 4, SiLU) over xBC, then SSD;
 *   3. GQA attention over a KV cache (Hk = heads / 4);
 *   4. Mamba-1: short causal conv, then the selective scan;
 *   5. gated linear attention (GLA, per-channel decay).
 * Each mixer's output is the next one's main input, written straight into
 * the next layer's input view. The projections and MLPs around the mixers are
 * outside seqmix: their outputs (B, C, dt, z, k, v, the decays) are random
 * activations made here for every prompt and decode position and uploaded once,
 * before the prompt. The prompt runs as one call per mixer; then each decode
 * step runs every mixer with L = 1 on views made before the loop, carrying the
 * conv, SSD, scan and GLA states and reading the KV cache through views that
 * grow by one token: the loop allocates and uploads nothing.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { K_CONV = 4, K_IMG = 7, MIXERS = 7 };
static const char *const mixer_names[MIXERS] = {
    "convformer dwconv 7x7", "mamba2 conv1d", "mamba2 ssd", "attention (gqa, kv cache)",
    "mamba1 conv1d",         "mamba1 scan",   "gla linear attention"};

typedef struct demo_dims {
  int64_t B, T, S, Ltot; /* batch, prompt, decode steps, all positions */
  int64_t H, P, D, Hk;   /* heads, head dim, width, k/v heads */
  int64_t N2, N1, C2;    /* SSD state, scan state, xBC channels (D + 2 N2) */
  int64_t W1, W3, W4;    /* widths of the per-layer projection streams */
  int64_t gh, gw;        /* prompt image grid */
} demo_dims;

/* The views one pass (the prompt, or one decode step) runs on. */
typedef struct demo_pass {
  seqmix_tensor *img_out;                           /* conv2d output (prompt only) */
  seqmix_tensor *xbc_in, *x2, *b2, *c2, *dt2, *z2;  /* Mamba-2 */
  seqmix_tensor *k, *v;                             /* cache views [B, p + n, Hk, P] */
  seqmix_tensor *u1, *delta1, *b1, *c1, *z1;        /* Mamba-1 */
  seqmix_tensor *q4, *k4, *v4, *g4;                 /* GLA */
  seqmix_tensor *out;                               /* [B, n, H, P] */
} demo_pass;

/* Dense activations of one pass length (T for the prompt, 1 for decode). */
typedef struct demo_acts {
  seqmix_tensor *xbc, *y2, *att, *u1, *y1;
} demo_acts;

typedef struct demo_model {
  seqmix_context *ctx;
  seqmix_dtype dtype;
  demo_dims d;
  /* weights */
  seqmix_tensor *img_w, *img_b, *conv2_w, *conv2_b, *A2, *D2, *dtb2;
  seqmix_tensor *conv1_w, *conv1_b, *A1, *D1, *db1;
  /* inputs made once: image patches, projection streams, KV cache */
  seqmix_tensor *img, *P1, *KV, *P3, *P4;
  /* states */
  seqmix_tensor *s_conv2, *s_ssd, *s_conv1, *s_scan, *s_gla;
  demo_acts prompt_acts, step_acts;
  seqmix_tensor *prompt_out, *decode_out; /* [B, T, H, P], [B, S, H, P] */
  demo_pass prompt;
  demo_pass *steps;
  double seconds[2][MIXERS]; /* [prefill, decode][mixer] */
} demo_model;

typedef struct demo_options {
  const char *device;
  seqmix_dtype dtype;
  int64_t batch, prompt, decode, heads, head_dim, state;
  unsigned long long seed;
  bool check;
} demo_options;

/* ---- Making the model --------------------------------------------------- */

/* A tensor of random values in [lo, hi) (zeros when lo == hi). */
static seqmix_status random_tensor(demo_model *m, seqmix_dtype dtype, int rank,
                                   const int64_t *shape, float lo, float hi,
                                   unsigned long long *rng, seqmix_tensor **out) {
  seqmix_status st = seqmix_tensor_create(m->ctx, dtype, rank, shape, out);
  if (st) return st;
  size_t n = (size_t)seqmix_tensor_numel(*out);
  float *h = cli_random_floats(n, lo, hi, rng);
  if (!h) return SEQMIX_ERROR_OUT_OF_MEMORY;
  st = seqmix_tensor_write_f32(*out, h, n);
  free(h);
  return st;
}

/* A view of base [B, L, W] at positions [p, p + n), inner elements [off, ...)
 * shaped inner[0..ir) (dense inside a position). */
static seqmix_status tok_view(seqmix_tensor *base, int64_t B, int64_t L, int64_t W,
                              int64_t p, int64_t n, int64_t off, int ir, const int64_t *inner,
                              seqmix_tensor **out) {
  int64_t shape[6] = {B, n}, strides[6] = {L * W, W};
  int64_t stride = 1;
  for (int i = ir - 1; i >= 0; --i) {
    shape[2 + i] = inner[i];
    strides[2 + i] = stride;
    stride *= inner[i];
  }
  return seqmix_tensor_view(base, 2 + ir, shape, strides, p * W + off, out);
}

/* A tensor written once with zeros, so its memory is in place before the timed
 * run (first touches of fresh pages are not the mixers' time). */
static seqmix_status zero_tensor(demo_model *m, seqmix_dtype dtype, int rank, const int64_t *shape,
                                 seqmix_tensor **out) {
  unsigned long long unused = 1;
  return random_tensor(m, dtype, rank, shape, 0, 0, &unused, out);
}

static seqmix_status make_acts(demo_model *m, int64_t n, demo_acts *a) {
  const demo_dims *d = &m->d;
  const int64_t xbc[3] = {d->B, n, d->C2}, hp[4] = {d->B, n, d->H, d->P}, bd[3] = {d->B, n, d->D};
  seqmix_status st;
  if ((st = zero_tensor(m, m->dtype, 3, xbc, &a->xbc)) ||
      (st = zero_tensor(m, m->dtype, 4, hp, &a->y2)) ||
      (st = zero_tensor(m, m->dtype, 4, hp, &a->att)) ||
      (st = zero_tensor(m, m->dtype, 3, bd, &a->u1)) ||
      (st = zero_tensor(m, m->dtype, 3, bd, &a->y1)))
    return st;
  return SEQMIX_OK;
}

/* The views of one pass over positions [p, p + n); out is a view of dst at
 * position dst_p (dst has dst_L positions). */
static seqmix_status make_pass(demo_model *m, int64_t p, int64_t n, const demo_acts *a,
                               seqmix_tensor *dst, int64_t dst_L, int64_t dst_p, demo_pass *ps) {
  const demo_dims *d = &m->d;
  const int64_t B = d->B, L = d->Ltot, H = d->H, P = d->P, D = d->D;
  const int64_t hp[2] = {H, P}, hkp[2] = {d->Hk, P}, g2[2] = {1, d->N2}, g1[2] = {1, d->N1};
  const int64_t c2[1] = {d->C2}, dd[1] = {D}, hh[1] = {H};
  seqmix_status st;
  if (p == 0) { /* the prompt: the image grid's output lands in P1's x columns */
    const int64_t shape[4] = {B, d->gh, d->gw, D};
    const int64_t strides[4] = {L * d->W1, d->gw * d->W1, d->W1, 1};
    if ((st = seqmix_tensor_view(m->P1, 4, shape, strides, 0, &ps->img_out))) return st;
  }
  /* Mamba-2: xBC and z, dt from P1; x, B, C from the conv output. */
  if ((st = tok_view(m->P1, B, L, d->W1, p, n, 0, 1, c2, &ps->xbc_in)) ||
      (st = tok_view(m->P1, B, L, d->W1, p, n, d->C2, 2, hp, &ps->z2)) ||
      (st = tok_view(m->P1, B, L, d->W1, p, n, d->C2 + D, 1, hh, &ps->dt2)) ||
      (st = tok_view(a->xbc, B, n, d->C2, 0, n, 0, 2, hp, &ps->x2)) ||
      (st = tok_view(a->xbc, B, n, d->C2, 0, n, D, 2, g2, &ps->b2)) ||
      (st = tok_view(a->xbc, B, n, d->C2, 0, n, D + d->N2, 2, g2, &ps->c2)))
    return st;
  /* Attention: the cache's first p + n positions, k then v in each position. */
  if ((st = tok_view(m->KV, B, L, 2 * d->Hk * P, 0, p + n, 0, 2, hkp, &ps->k)) ||
      (st = tok_view(m->KV, B, L, 2 * d->Hk * P, 0, p + n, d->Hk * P, 2, hkp, &ps->v)))
    return st;
  /* Mamba-1: u is the attention output; delta, B, C, z from P3. */
  if ((st = tok_view(a->att, B, n, D, 0, n, 0, 1, dd, &ps->u1)) ||
      (st = tok_view(m->P3, B, L, d->W3, p, n, 0, 1, dd, &ps->delta1)) ||
      (st = tok_view(m->P3, B, L, d->W3, p, n, D, 2, g1, &ps->b1)) ||
      (st = tok_view(m->P3, B, L, d->W3, p, n, D + d->N1, 2, g1, &ps->c1)) ||
      (st = tok_view(m->P3, B, L, d->W3, p, n, D + 2 * d->N1, 1, dd, &ps->z1)))
    return st;
  /* GLA: q is the scan output; k, v and the log-decays from P4. */
  if ((st = tok_view(a->y1, B, n, D, 0, n, 0, 2, hp, &ps->q4)) ||
      (st = tok_view(m->P4, B, L, d->W4, p, n, 0, 2, hp, &ps->k4)) ||
      (st = tok_view(m->P4, B, L, d->W4, p, n, D, 2, hp, &ps->v4)) ||
      (st = tok_view(m->P4, B, L, d->W4, p, n, 2 * D, 2, hp, &ps->g4)) ||
      (st = tok_view(dst, B, dst_L, D, dst_p, n, 0, 2, hp, &ps->out)))
    return st;
  return SEQMIX_OK;
}

static seqmix_status make_model(demo_model *m, const demo_options *o) {
  demo_dims *d = &m->d;
  d->B = o->batch, d->T = o->prompt, d->S = o->decode, d->Ltot = d->T + d->S;
  d->H = o->heads, d->P = o->head_dim, d->D = d->H * d->P, d->Hk = d->H >= 4 ? d->H / 4 : 1;
  d->N2 = o->state, d->N1 = 16, d->C2 = d->D + 2 * d->N2;
  d->W1 = d->C2 + d->D + d->H, d->W3 = 2 * d->D + 2 * d->N1, d->W4 = 3 * d->D;
  d->gw = 1;
  for (int64_t w = 1; w * w <= d->T; ++w)
    if (d->T % w == 0) d->gw = w;
  d->gh = d->T / d->gw;
  if (d->gh < d->gw) { /* wider than tall */
    int64_t t = d->gh;
    d->gh = d->gw, d->gw = t;
  }
  unsigned long long rng = o->seed * 0x9e3779b97f4a7c15ull + 1;
  const seqmix_dtype act = m->dtype, f32 = SEQMIX_F32;
  const int64_t B = d->B, L = d->Ltot, D = d->D;
  const int64_t s_img_w[3] = {K_IMG, K_IMG, D}, s_d[1] = {D}, s_c2[1] = {d->C2};
  const int64_t s_c2w[2] = {d->C2, K_CONV}, s_dw[2] = {D, K_CONV}, s_h[1] = {d->H};
  const int64_t s_A1[2] = {D, d->N1};
  const int64_t s_img[4] = {B, d->gh, d->gw, D}, s_P1[3] = {B, L, d->W1},
                s_KV[3] = {B, L, 2 * d->Hk * d->P}, s_P3[3] = {B, L, d->W3}, s_P4[3] = {B, L, d->W4};
  const int64_t s_sc2[3] = {B, K_CONV - 1, d->C2}, s_ssd[4] = {B, d->H, d->P, d->N2},
                s_sc1[3] = {B, K_CONV - 1, D}, s_scan[3] = {B, D, d->N1},
                s_gla[4] = {B, d->H, d->P, d->P};
  const int64_t s_pout[4] = {B, d->T, d->H, d->P}, s_dout[4] = {B, d->S > 0 ? d->S : 1, d->H, d->P};
  const float w_img = 1.0f / K_IMG, w_conv = 0.5f;
  seqmix_status st;
  if ((st = random_tensor(m, f32, 3, s_img_w, -w_img, w_img, &rng, &m->img_w)) ||
      (st = random_tensor(m, f32, 1, s_d, -0.1f, 0.1f, &rng, &m->img_b)) ||
      (st = random_tensor(m, f32, 2, s_c2w, -w_conv, w_conv, &rng, &m->conv2_w)) ||
      (st = random_tensor(m, f32, 1, s_c2, -0.1f, 0.1f, &rng, &m->conv2_b)) ||
      (st = random_tensor(m, f32, 1, s_h, -2.0f, -0.1f, &rng, &m->A2)) ||
      (st = random_tensor(m, f32, 1, s_h, -1.0f, 1.0f, &rng, &m->D2)) ||
      (st = random_tensor(m, f32, 1, s_h, -0.5f, 0.5f, &rng, &m->dtb2)) ||
      (st = random_tensor(m, f32, 2, s_dw, -w_conv, w_conv, &rng, &m->conv1_w)) ||
      (st = random_tensor(m, f32, 1, s_d, -0.1f, 0.1f, &rng, &m->conv1_b)) ||
      (st = random_tensor(m, f32, 2, s_A1, -2.0f, -0.1f, &rng, &m->A1)) ||
      (st = random_tensor(m, f32, 1, s_d, -1.0f, 1.0f, &rng, &m->D1)) ||
      (st = random_tensor(m, f32, 1, s_d, -0.5f, 0.5f, &rng, &m->db1)))
    return st;
  /* Activations from outside the mixers. The dt/delta columns go through
   * softplus; GLA's log-decays are <= 0. */
  if ((st = random_tensor(m, act, 4, s_img, -1, 1, &rng, &m->img)) ||
      (st = random_tensor(m, act, 3, s_P1, -1, 1, &rng, &m->P1)) ||
      (st = random_tensor(m, act, 3, s_KV, -1, 1, &rng, &m->KV)) ||
      (st = random_tensor(m, act, 3, s_P3, -1, 1, &rng, &m->P3)) ||
      (st = random_tensor(m, act, 3, s_P4, -1, 1, &rng, &m->P4)))
    return st;
  {
    /* GLA log-decays: -(0.01 .. 0.7), per channel: rewrite P4's g columns. */
    size_t n = (size_t)(B * L * d->W4);
    float *h = malloc(n * sizeof *h);
    if (!h) return SEQMIX_ERROR_OUT_OF_MEMORY;
    if ((st = seqmix_tensor_read_f32(m->P4, h, n))) {
      free(h);
      return st;
    }
    for (size_t r = 0; r < (size_t)(B * L); ++r)
      for (int64_t c = 2 * D; c < 3 * D; ++c) {
        float *g = &h[r * (size_t)d->W4 + (size_t)c];
        *g = -0.01f - 0.35f * (*g + 1.0f);
      }
    st = seqmix_tensor_write_f32(m->P4, h, n);
    free(h);
    if (st) return st;
  }
  if ((st = zero_tensor(m, f32, 3, s_sc2, &m->s_conv2)) ||
      (st = zero_tensor(m, f32, 4, s_ssd, &m->s_ssd)) ||
      (st = zero_tensor(m, f32, 3, s_sc1, &m->s_conv1)) ||
      (st = zero_tensor(m, f32, 3, s_scan, &m->s_scan)) ||
      (st = zero_tensor(m, f32, 4, s_gla, &m->s_gla)) ||
      (st = zero_tensor(m, act, 4, s_pout, &m->prompt_out)) ||
      (st = zero_tensor(m, act, 4, s_dout, &m->decode_out)))
    return st;
  if ((st = make_acts(m, d->T, &m->prompt_acts)) || (st = make_acts(m, 1, &m->step_acts)))
    return st;
  if ((st = make_pass(m, 0, d->T, &m->prompt_acts, m->prompt_out, d->T, 0, &m->prompt)))
    return st;
  m->steps = calloc((size_t)(d->S > 0 ? d->S : 1), sizeof *m->steps);
  if (!m->steps) return SEQMIX_ERROR_OUT_OF_MEMORY;
  for (int64_t t = 0; t < d->S; ++t)
    if ((st = make_pass(m, d->T + t, 1, &m->step_acts, m->decode_out, d->S, t, &m->steps[t])))
      return st;
  return SEQMIX_OK;
}

static void free_model(demo_model *m) {
  /* The context frees every tensor and view it made. */
  seqmix_context_destroy(m->ctx);
  free(m->steps);
  memset(m, 0, sizeof *m);
}

/* ---- Running it ---------------------------------------------------------- */

/* Runs mixer i's call, then waits for it so its time is its own. */
#define TIMED(m, phase, i, call)                                                    \
  do {                                                                              \
    double t0_ = cli_now();                                                         \
    seqmix_status st_ = (call);                                                     \
    if (!st_) st_ = seqmix_context_sync((m)->ctx);                                  \
    if (st_) {                                                                      \
      fprintf(stderr, "\nseqmix demo: %s failed: %s\n", mixer_names[i], seqmix_last_error()); \
      return st_;                                                                   \
    }                                                                               \
    (m)->seconds[phase][i] += cli_now() - t0_;                                      \
  } while (0)

static seqmix_status run_pass(demo_model *m, const demo_pass *ps, const demo_acts *a, int phase) {
  const seqmix_conv1d_params silu = {.silu = true};
  const seqmix_ssd_params ssd = {.dt_softplus = true};
  const seqmix_attention_params att = {.causal = true};
  const seqmix_selective_scan_params scan = {.delta_softplus = true};
  const seqmix_linear_attention_params gla = {.decay = SEQMIX_DECAY_VECTOR};
  const seqmix_conv2d_params img = {.pad_h = K_IMG / 2, .pad_w = K_IMG / 2};
  if (ps->img_out)
    TIMED(m, phase, 0, seqmix_conv2d_depthwise(m->ctx, m->img, m->img_w, m->img_b, ps->img_out, &img));
  TIMED(m, phase, 1,
        seqmix_conv1d_causal(m->ctx, ps->xbc_in, m->conv2_w, m->conv2_b, m->s_conv2, a->xbc, &silu));
  TIMED(m, phase, 2,
        seqmix_ssd(m->ctx, ps->x2, ps->dt2, m->A2, ps->b2, ps->c2, m->D2, ps->z2, m->dtb2,
                   m->s_ssd, a->y2, &ssd));
  TIMED(m, phase, 3, seqmix_attention(m->ctx, a->y2, ps->k, ps->v, a->att, NULL, &att));
  TIMED(m, phase, 4,
        seqmix_conv1d_causal(m->ctx, ps->u1, m->conv1_w, m->conv1_b, m->s_conv1, a->u1, &silu));
  TIMED(m, phase, 5,
        seqmix_selective_scan(m->ctx, a->u1, ps->delta1, m->A1, ps->b1, ps->c1, m->D1, ps->z1,
                              m->db1, m->s_scan, a->y1, &scan));
  TIMED(m, phase, 6,
        seqmix_linear_attention(m->ctx, ps->q4, ps->k4, ps->v4, ps->g4, m->s_gla, ps->out, &gla));
  return SEQMIX_OK;
}

static void progress(const char *what, int64_t done, int64_t total, bool tty) {
  if (!tty && done != total) return;
  enum { WIDTH = 40 };
  int64_t fill = total ? done * WIDTH / total : WIDTH;
  fprintf(stderr, "\r%-8s [", what);
  for (int64_t i = 0; i < WIDTH; ++i) fputc(i < fill ? '#' : '.', stderr);
  fprintf(stderr, "] %lld/%lld", (long long)done, (long long)total);
  if (done == total) fputc('\n', stderr);
  fflush(stderr);
}

/* Prefill, then decode; fills the model's timers. */
static seqmix_status run_model(demo_model *m, const char *label, double *prefill_s,
                               double *decode_s) {
  const bool tty = isatty(2);
  fprintf(stderr, "%s: prompt of %lld tokens...", label, (long long)m->d.T);
  double t0 = cli_now();
  seqmix_status st = run_pass(m, &m->prompt, &m->prompt_acts, 0);
  *prefill_s = cli_now() - t0;
  if (st) return st;
  fprintf(stderr, " %.1f ms\n", *prefill_s * 1e3);
  t0 = cli_now();
  for (int64_t t = 0; t < m->d.S; ++t) {
    if ((st = run_pass(m, &m->steps[t], &m->step_acts, 1))) return st;
    if (t % 8 == 7 || t + 1 == m->d.S) progress("decode", t + 1, m->d.S, tty);
  }
  *decode_s = cli_now() - t0;
  return SEQMIX_OK;
}

static double rel_l2(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double e = (double)a[i] - (double)ref[i];
    num += e * e;
    den += (double)ref[i] * ref[i];
  }
  if (num != num) return INFINITY; /* NaN anywhere fails the check */
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static seqmix_status read_outputs(demo_model *m, float **prompt, float **decode) {
  size_t np = (size_t)seqmix_tensor_numel(m->prompt_out);
  size_t nd = (size_t)seqmix_tensor_numel(m->decode_out);
  *prompt = malloc(np * sizeof **prompt);
  *decode = malloc(nd * sizeof **decode);
  if (!*prompt || !*decode) return SEQMIX_ERROR_OUT_OF_MEMORY;
  seqmix_status st = seqmix_tensor_read_f32(m->prompt_out, *prompt, np);
  return st ? st : seqmix_tensor_read_f32(m->decode_out, *decode, nd);
}

/* ---- The command --------------------------------------------------------- */

static bool parse_count(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || *end || x < lo || x > hi) {
    fprintf(stderr, "seqmix demo: %s must be an integer in [%lld, %lld], not '%s'\n", flag,
            (long long)lo, (long long)hi, v ? v : "(missing)");
    return false;
  }
  *out = x;
  return true;
}

static void demo_usage(FILE *f) {
  fprintf(f, "usage: seqmix demo [--device ID] [--dtype f32|f16|bf16] [--batch B] [--prompt T]\n"
             "                   [--decode S] [--heads H] [--head-dim P] [--state N] [--seed N]\n"
             "                   [--no-check]\n"
             "defaults: device $SEQMIX_DEVICE or auto, f32, B 1, T 2048, S 256, H 16, P 64,\n"
             "N 64 (the SSD state; the scan's is 16)\n");
}

static int parse_demo(int argc, char **argv, demo_options *o) {
  *o = (demo_options){.dtype = SEQMIX_F32, .batch = 1, .prompt = 2048, .decode = 256,
                      .heads = 16, .head_dim = 64, .state = 64, .check = true};
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t seed = 0;
    bool ok = true;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      demo_usage(stdout);
      return -1;
    } else if (!strcmp(a, "--no-check")) {
      o->check = false;
      continue;
    } else if (!strcmp(a, "--device")) {
      if (!v) ok = false;
      o->device = v;
    } else if (!strcmp(a, "--dtype")) {
      if (!v || !cli_parse_dtype(v, &o->dtype)) {
        fprintf(stderr, "seqmix demo: --dtype must be f32, f16 or bf16, not '%s'\n",
                v ? v : "(missing)");
        return 2;
      }
    } else if (!strcmp(a, "--batch")) {
      ok = parse_count(a, v, 1, 64, &o->batch);
    } else if (!strcmp(a, "--prompt")) {
      ok = parse_count(a, v, 1, 1 << 20, &o->prompt);
    } else if (!strcmp(a, "--decode")) {
      ok = parse_count(a, v, 0, 1 << 16, &o->decode);
    } else if (!strcmp(a, "--heads")) {
      ok = parse_count(a, v, 1, 256, &o->heads);
    } else if (!strcmp(a, "--head-dim")) {
      ok = parse_count(a, v, 1, 256, &o->head_dim);
    } else if (!strcmp(a, "--state")) {
      ok = parse_count(a, v, 1, 256, &o->state);
    } else if (!strcmp(a, "--seed")) {
      ok = parse_count(a, v, 1, INT64_MAX, &seed);
      o->seed = (unsigned long long)seed;
    } else {
      fprintf(stderr, "seqmix demo: unknown option '%s'\n", a);
      demo_usage(stderr);
      return 2;
    }
    if (!ok) {
      if (!v) fprintf(stderr, "seqmix demo: %s needs a value\n", a);
      return 2;
    }
    ++i;
  }
  if (o->heads % 4 && o->heads > 4) {
    fprintf(stderr, "seqmix demo: --heads must be a multiple of 4 (GQA groups of 4), not %lld\n",
            (long long)o->heads);
    return 2;
  }
  if (!o->seed) o->seed = (unsigned long long)(cli_now() * 1e6);
  return 0;
}

static seqmix_status open_model(demo_model *m, const char *device, const demo_options *o) {
  memset(m, 0, sizeof *m);
  m->dtype = o->dtype;
  seqmix_context_options co = {.device = device};
  seqmix_status st = seqmix_context_create(&co, &m->ctx);
  return st ? st : make_model(m, o);
}

static void print_times(const demo_model *m, double prefill_s, double decode_s) {
  const demo_dims *d = &m->d;
  printf("\n%-28s %12s %16s\n", "mixer", "prefill ms", "decode ms/token");
  for (int i = 0; i < MIXERS; ++i) {
    if (i == 0)
      printf("%-28s %12.2f %16s\n", mixer_names[i], m->seconds[0][i] * 1e3, "(prompt only)");
    else
      printf("%-28s %12.2f %16.4f\n", mixer_names[i], m->seconds[0][i] * 1e3,
             d->S ? m->seconds[1][i] * 1e3 / (double)d->S : 0.0);
  }
  printf("\nprefill: %lld tokens in %.1f ms = %.0f tokens/s\n", (long long)(d->B * d->T),
         prefill_s * 1e3, (double)(d->B * d->T) / prefill_s);
  if (d->S)
    printf("decode:  %lld steps x %lld sequences in %.1f ms = %.1f tokens/s (%.3f ms/step)\n",
           (long long)d->S, (long long)d->B, decode_s * 1e3,
           (double)(d->S * d->B) / decode_s, decode_s * 1e3 / (double)d->S);
  printf("(each mixer call is waited for, so its time is its own)\n");
}

int cli_demo(int argc, char **argv) {
  demo_options o;
  int rc = parse_demo(argc, argv, &o);
  if (rc) return rc < 0 ? 0 : rc;
  demo_model m;
  seqmix_status st = open_model(&m, o.device, &o);
  seqmix_device_info info;
  if (st || (st = seqmix_context_device(m.ctx, &info))) {
    fprintf(stderr, "seqmix demo: cannot set up the model on %s: %s\n",
            o.device ? o.device : "the default device", seqmix_last_error());
    free_model(&m);
    return 1;
  }
  const demo_dims *d = &m.d;
  printf("seqmix demo on %s (%s, %s), %s, seed %llu\n", info.id, info.name,
         seqmix_device_kind_name(info.kind), seqmix_dtype_name(o.dtype), o.seed);
  printf("model: width %lld (%lld heads x %lld), batch %lld, prompt %lld (image grid %lldx%lld), "
         "decode %lld\n",
         (long long)d->D, (long long)d->H, (long long)d->P, (long long)d->B, (long long)d->T,
         (long long)d->gh, (long long)d->gw, (long long)d->S);
  printf("  convformer 7x7 -> mamba2 (conv K4, ssd N%lld) -> attention (Hq %lld, Hk %lld, kv "
         "cache) -> mamba1 (conv K4, scan N%lld) -> gla\n",
         (long long)d->N2, (long long)d->H, (long long)d->Hk, (long long)d->N1);
  fflush(stdout);
  double prefill_s = 0, decode_s = 0;
  if ((st = run_model(&m, info.id, &prefill_s, &decode_s))) {
    free_model(&m);
    return 1;
  }
  print_times(&m, prefill_s, decode_s);
  seqmix_context_stats stats;
  if (!seqmix_context_stats_get(m.ctx, &stats))
    printf("ops on %s: %llu; on the CPU fallback: %llu\n", info.id,
           (unsigned long long)stats.ops_on_device, (unsigned long long)stats.ops_on_fallback);
  if (!o.check) {
    free_model(&m);
    return 0;
  }

  /* The same run on the CPU: the native path for other devices, the portable
   * (scalar) kernels when the device is the CPU itself. */
  float *out_p = NULL, *out_d = NULL, *ref_p = NULL, *ref_d = NULL;
  rc = 1;
  if ((st = read_outputs(&m, &out_p, &out_d))) goto done;
  const bool on_cpu = info.backend == SEQMIX_BACKEND_CPU;
  const size_t np = (size_t)seqmix_tensor_numel(m.prompt_out);
  const size_t nd = d->S ? (size_t)seqmix_tensor_numel(m.decode_out) : 0;
  free_model(&m);
  if (on_cpu) setenv("SEQMIX_CPU_ISA", "scalar", 1);
  st = open_model(&m, "cpu", &o);
  if (on_cpu) unsetenv("SEQMIX_CPU_ISA");
  if (st) goto done;
  printf("\nchecking against the same run on the CPU (%s kernels)...\n",
         on_cpu ? "portable scalar" : "native SIMD");
  fflush(stdout);
  double ref_prefill, ref_decode;
  if ((st = run_model(&m, on_cpu ? "cpu (scalar)" : "cpu", &ref_prefill, &ref_decode)) ||
      (st = read_outputs(&m, &ref_p, &ref_d)))
    goto done;
  const double tol = o.dtype == SEQMIX_F32 ? 1e-4 : o.dtype == SEQMIX_F16 ? 5e-3 : 4e-2;
  const double e_p = rel_l2(out_p, ref_p, np), e_d = nd ? rel_l2(out_d, ref_d, nd) : 0;
  printf("relative L2 error vs the CPU: prefill output %.2e, decode outputs %.2e "
         "(tolerance %.0e): %s\n",
         e_p, e_d, tol, e_p <= tol && e_d <= tol ? "ok" : "FAILED");
  rc = e_p <= tol && e_d <= tol ? 0 : 1;
done:
  if (st) fprintf(stderr, "seqmix demo: the CPU check failed to run: %s\n", seqmix_last_error());
  free(out_p), free(out_d), free(ref_p), free(ref_d);
  free_model(&m);
  return rc;
}
