/* Every op family on small shapes, on one device and on the CPU path, outputs
 * compared: the run CI does under oclgrind (tools/ci/oclgrind.sh), where the test
 * suites' shapes would take hours. The shapes are chosen to reach every kernel
 * and variant the OpenCL backend has: f32/f16/bf16 storage, optional inputs on
 * and off, state in/out, decode (one token), attention's row- and key-parallel
 * kernels, its key split and merge, direct and FFT long convolution.
 *
 *   kernel_smoke DEVICE [FAMILY]   DEVICE e.g. opencl:0; FAMILY one of conv1d, conv2d,
 *                                  long_conv, scan, ssd, linattn, attention (default: all);
 *                                  exit 1 on any failure
 *
 * Built by the CI script against the build's library with only the public header. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <seqmix.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DEV, CPU };

typedef struct pair {
  seqmix_tensor *t[2]; /* the same data on the device and on the CPU */
  size_t n;
} pair;

static seqmix_context *ctxs[2];
static const char *device_id;
static unsigned long long rng_state = 0x5eed5eedull;
static int failures, checks;
static pair made[64];
static int made_count;

static float uniform(float lo, float hi) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  const unsigned long long r = rng_state * 2685821657736338717ull;
  return lo + (hi - lo) * (float)((r >> 40) * (1.0 / 16777216.0));
}

static void fail(const char *what, const char *detail) {
  printf("FAIL  %s: %s\n", what, detail);
  failures++;
}

static size_t numel(int rank, const int64_t *shape) {
  size_t n = 1;
  for (int i = 0; i < rank; ++i) n *= (size_t)shape[i];
  return n;
}

/* A tensor on both contexts: uniform values in [lo, hi], or NaN (poison) when lo > hi. */
static pair make(seqmix_dtype dtype, int rank, const int64_t *shape, float lo, float hi) {
  pair p = {{NULL, NULL}, numel(rank, shape)};
  float *data = malloc(p.n * sizeof *data);
  for (size_t i = 0; i < p.n; ++i) data[i] = lo > hi ? NAN : uniform(lo, hi);
  for (int s = 0; s < 2; ++s)
    if (seqmix_tensor_create(ctxs[s], dtype, rank, shape, &p.t[s]) ||
        seqmix_tensor_write_f32(p.t[s], data, p.n)) {
      fprintf(stderr, "kernel_smoke: tensor: %s\n", seqmix_last_error());
      exit(1);
    }
  free(data);
  if (made_count < 64) made[made_count++] = p;
  return p;
}
#define IN(dtype, lo, hi, ...) \
  make(dtype, sizeof((int64_t[]){__VA_ARGS__}) / 8, (int64_t[]){__VA_ARGS__}, lo, hi)
#define OUT(dtype, ...) IN(dtype, 1, 0, __VA_ARGS__)
static const pair none = {{NULL, NULL}, 0};

/* Runs `call` on the device (S = DEV) and on the CPU (S = CPU); C is the
 * context and T(p) the pair's tensor for that side. */
#define T(p) ((p).t[S])
#define RUN(what, call)                                                      \
  do {                                                                       \
    for (int S = 0; S < 2; ++S) {                                            \
      seqmix_context *C = ctxs[S];                                           \
      seqmix_status st_ = (call);                                            \
      if (st_ == SEQMIX_OK) st_ = seqmix_context_sync(C);                    \
      if (st_ != SEQMIX_OK) fail(what, seqmix_last_error());                 \
    }                                                                        \
  } while (0)

static double tolerance(seqmix_dtype dtype) {
  return dtype == SEQMIX_F32 ? 1e-4 : dtype == SEQMIX_F16 ? 1e-2 : 6e-2;
}

/* The device's values against the CPU's: relative L2, NaN fails. */
static void compare(const char *what, const char *name, pair p, double tol) {
  float *a = malloc(p.n * sizeof *a), *b = malloc(p.n * sizeof *b);
  char label[160];
  snprintf(label, sizeof label, "%s %s", what, name);
  checks++;
  if (seqmix_tensor_read_f32(p.t[DEV], a, p.n) || seqmix_tensor_read_f32(p.t[CPU], b, p.n)) {
    fail(label, seqmix_last_error());
  } else {
    double num = 0, den = 0;
    bool nan = false;
    for (size_t i = 0; i < p.n; ++i) {
      if (isnan(a[i]) != isnan(b[i]) || (isnan(a[i]) && isnan(b[i]))) nan = true;
      if (isinf(a[i]) && isinf(b[i]) && a[i] == b[i]) continue; /* lse of a row that sees no key */
      const double d = (double)a[i] - b[i];
      num += d * d, den += (double)b[i] * b[i];
    }
    const double err = den > 0 ? sqrt(num / den) : sqrt(num);
    char detail[96];
    snprintf(detail, sizeof detail, "rel err %.2e vs the CPU (tolerance %.0e)", err, tol);
    if (nan || !(err <= tol)) fail(label, nan ? "NaN (an output element not written)" : detail);
    else printf("ok    %-48s %s\n", label, detail);
  }
  free(a), free(b);
}

static void done(void) {
  for (int i = 0; i < made_count; ++i)
    for (int s = 0; s < 2; ++s) seqmix_tensor_destroy(made[i].t[s]);
  made_count = 0;
  fflush(stdout);
}

static void open_contexts(void) {
  for (int s = 0; s < 2; ++s) {
    seqmix_context_options o = {.device = s == DEV ? device_id : "cpu"};
    if (seqmix_context_create(&o, &ctxs[s])) {
      fprintf(stderr, "kernel_smoke: context on %s: %s\n", o.device, seqmix_last_error());
      exit(1);
    }
  }
}

static void close_contexts(void) {
  for (int s = 0; s < 2; ++s) {
    seqmix_context_stats stats;
    if (s == DEV && !seqmix_context_stats_get(ctxs[s], &stats) && stats.ops_on_fallback) {
      char detail[96];
      snprintf(detail, sizeof detail, "%llu op calls ran on the CPU fallback",
               (unsigned long long)stats.ops_on_fallback);
      fail(device_id, detail);
    }
    seqmix_context_destroy(ctxs[s]);
  }
}

static const seqmix_dtype dtypes[] = {SEQMIX_F32, SEQMIX_F16, SEQMIX_BF16};

static void conv1d(seqmix_dtype a) {
  const double tol = tolerance(a);
  /* bias, state, SiLU; f32 weights */
  pair x = IN(a, -1, 1, 2, 9, 13), w = IN(SEQMIX_F32, -1, 1, 13, 4), b = IN(SEQMIX_F32, -1, 1, 13);
  pair s = IN(SEQMIX_F32, -1, 1, 2, 3, 13), y = OUT(a, 2, 9, 13);
  seqmix_conv1d_params p = {.silu = true};
  RUN("conv1d", seqmix_conv1d_causal(C, T(x), T(w), T(b), T(s), T(y), &p));
  compare("conv1d B2 L9 C13 K4", "y", y, tol), compare("conv1d B2 L9 C13 K4", "state", s, tol);
  /* decode: one token through the state */
  pair x1 = IN(a, -1, 1, 2, 1, 13), y1 = OUT(a, 2, 1, 13);
  RUN("conv1d decode", seqmix_conv1d_causal(C, T(x1), T(w), T(b), T(s), T(y1), &p));
  compare("conv1d decode", "y", y1, tol), compare("conv1d decode", "state", s, tol);
  /* no bias, no state, weights in the activation dtype */
  pair x2 = IN(a, -1, 1, 1, 6, 5), w2 = IN(a, -1, 1, 5, 3), y2 = OUT(a, 1, 6, 5);
  seqmix_conv1d_params plain = {0};
  RUN("conv1d plain", seqmix_conv1d_causal(C, T(x2), T(w2), NULL, NULL, T(y2), &plain));
  compare("conv1d plain B1 L6 C5 K3", "y", y2, tol);
  /* a filter longer than a work-item's token run: the separate state kernel */
  pair x3 = IN(a, -1, 1, 1, 5, 6), w3 = IN(SEQMIX_F32, -1, 1, 6, 20);
  pair s3 = IN(SEQMIX_F32, -1, 1, 1, 19, 6), y3 = OUT(a, 1, 5, 6);
  RUN("conv1d K20", seqmix_conv1d_causal(C, T(x3), T(w3), NULL, T(s3), T(y3), &p));
  compare("conv1d B1 L5 C6 K20 state", "y", y3, tol);
  compare("conv1d B1 L5 C6 K20 state", "state", s3, tol);
  done();
}

static void conv2d_and_pool(seqmix_dtype a) {
  const double tol = tolerance(a);
  pair x = IN(a, -1, 1, 1, 7, 6, 5), w = IN(SEQMIX_F32, -1, 1, 3, 3, 5), b = IN(SEQMIX_F32, -1, 1, 5);
  pair y = OUT(a, 1, 7, 6, 5);
  seqmix_conv2d_params p = {.pad_h = 1, .pad_w = 1};
  RUN("conv2d", seqmix_conv2d_depthwise(C, T(x), T(w), T(b), T(y), &p));
  compare("conv2d 3x3 B1 7x6x5 pad1", "y", y, tol);
  /* 5x5, stride 2, dilation 2, weights in the activation dtype, no bias */
  pair x2 = IN(a, -1, 1, 2, 9, 11, 3), w2 = IN(a, -1, 1, 5, 5, 3), y2 = OUT(a, 2, 5, 6, 3);
  seqmix_conv2d_params q = {.stride_h = 2, .stride_w = 2, .pad_h = 4, .pad_w = 4,
                            .dilation_h = 2, .dilation_w = 2};
  RUN("conv2d strided", seqmix_conv2d_depthwise(C, T(x2), T(w2), NULL, T(y2), &q));
  compare("conv2d 5x5 stride2 dil2 B2 9x11x3", "y", y2, tol);
  for (int pool = 3; pool <= 5; pool += 2) {
    pair px = IN(a, -1, 1, 1, 5, 6, 7), py = OUT(a, 1, 5, 6, 7);
    seqmix_pool_params pp = {.pool = pool};
    RUN("pool", seqmix_pool_mixer(C, T(px), T(py), &pp));
    compare(pool == 3 ? "pool 3x3 B1 5x6x7" : "pool 5x5 B1 5x6x7", "y", py, tol);
  }
  done();
}

static void long_conv(seqmix_dtype a) {
  const double tol = tolerance(a);
  static const seqmix_conv_method methods[] = {SEQMIX_CONV_DIRECT, SEQMIX_CONV_FFT};
  for (int m = 0; m < 2; ++m) {
    pair x = IN(a, -1, 1, 2, 37, 3), h = IN(SEQMIX_F32, -1, 1, 3, 37), d = IN(SEQMIX_F32, -1, 1, 3);
    pair y = OUT(a, 2, 37, 3);
    seqmix_long_conv_params p = {.method = methods[m]};
    RUN("long_conv", seqmix_long_conv(C, T(x), T(h), T(d), T(y), &p));
    compare(m ? "long_conv fft B2 L37 C3 Lh37" : "long_conv direct B2 L37 C3 Lh37", "y", y, tol);
    /* a short filter in the activation dtype, no skip */
    pair h2 = IN(a, -1, 1, 3, 5), y2 = OUT(a, 2, 37, 3);
    RUN("long_conv short", seqmix_long_conv(C, T(x), T(h2), NULL, T(y2), &p));
    compare(m ? "long_conv fft Lh5" : "long_conv direct Lh5", "y", y2, tol);
  }
  if (a == SEQMIX_F32) {
    /* an FFT length that is not a power of two (VkFFT's other code paths) */
    pair x = IN(a, -1, 1, 2, 513, 17), h = IN(SEQMIX_F32, -1, 1, 17, 17), y = OUT(a, 2, 513, 17);
    seqmix_long_conv_params p = {.method = SEQMIX_CONV_FFT};
    RUN("long_conv fft L513", seqmix_long_conv(C, T(x), T(h), NULL, T(y), &p));
    compare("long_conv fft B2 L513 C17 Lh17", "y", y, tol);
  }
  done();
}

typedef struct attn_shape {
  const char *name;
  int64_t B, Lq, Lk, Hq, Hk, D, Dv;
  seqmix_attention_params p;
  bool lse;
} attn_shape;

static void attention_case(seqmix_dtype a, attn_shape c) {
  const double tol = tolerance(a);
  pair q = IN(a, -1, 1, c.B, c.Lq, c.Hq, c.D), k = IN(a, -1, 1, c.B, c.Lk, c.Hk, c.D);
  pair v = IN(a, -1, 1, c.B, c.Lk, c.Hk, c.Dv), o = OUT(a, c.B, c.Lq, c.Hq, c.Dv);
  pair l = c.lse ? OUT(SEQMIX_F32, c.B, c.Hq, c.Lq) : none;
  RUN(c.name, seqmix_attention(C, T(q), T(k), T(v), T(o), T(l), &c.p));
  compare(c.name, "out", o, tol);
  if (c.lse) compare(c.name, "lse", l, 1e-4);
}

static pair i32(const int32_t *values, int64_t n) {
  pair p = {{NULL, NULL}, (size_t)n};
  for (int s = 0; s < 2; ++s)
    if (seqmix_tensor_create(ctxs[s], SEQMIX_I32, 1, &n, &p.t[s]) ||
        seqmix_tensor_write(p.t[s], values, (size_t)n * 4)) {
      fprintf(stderr, "kernel_smoke: tensor: %s\n", seqmix_last_error());
      exit(1);
    }
  if (made_count < 64) made[made_count++] = p;
  return p;
}

static void attention(seqmix_dtype a) {
  const attn_shape cases[] = {
      {"attention B1 Lq7 Lk13 Hq2 Hk1 D32", 1, 7, 13, 2, 1, 32, 32, {.scale = 0}, true},
      {"attention causal B2 L9 Hq2 D16 Dv24", 2, 9, 9, 2, 2, 16, 24, {.causal = true}, true},
      {"attention causal Lq3 Lk20 (bottom-right)", 1, 3, 20, 4, 2, 32, 32, {.causal = true}, true},
      {"attention window5 softcap B1 L17", 1, 17, 17, 2, 2, 32, 32,
       {.causal = true, .window = 5, .softcap = 8.0f, .scale = 0.3f}, true},
      {"attention sigmoid B1 L11 Hq2 Hk1", 1, 11, 11, 2, 1, 32, 32,
       {.causal = true, .score = SEQMIX_SCORE_SIGMOID, .sigmoid_bias = -1.0f}, false},
      {"attention decode Lq1 Lk700 Hq4 Hk1 (split)", 1, 1, 700, 4, 1, 32, 32, {.causal = true}, true},
      {"attention Lq40 Lk300 (split rows)", 1, 40, 300, 2, 1, 16, 16, {.scale = 0}, true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) attention_case(a, cases[i]);
  done();
  /* varlen with seqused_k: q [1, 4, 2, 32], k/v [1, 14, 1, 32] */
  static const int32_t cu_q[] = {0, 1, 3, 4}, cu_k[] = {0, 5, 12, 14}, used[] = {5, 4, 0};
  pair cq = i32(cu_q, 4), ck = i32(cu_k, 4), u = i32(used, 3);
  pair q = IN(a, -1, 1, 1, 4, 2, 32), k = IN(a, -1, 1, 1, 14, 1, 32), v = IN(a, -1, 1, 1, 14, 1, 32);
  pair o = OUT(a, 1, 4, 2, 32), l = OUT(SEQMIX_F32, 1, 2, 4);
  seqmix_attention_params vp = {.causal = true};
  RUN("attention varlen", (vp.cu_seqlens_q = T(cq), vp.cu_seqlens_k = T(ck), vp.seqused_k = T(u),
                           seqmix_attention(C, T(q), T(k), T(v), T(o), T(l), &vp)));
  compare("attention varlen seqused_k", "out", o, tolerance(a));
  compare("attention varlen seqused_k", "lse", l, 1e-4);
  done();
  /* merge of three partials (one with lse -inf rows would be the CPU's job too) */
  pair outs[3], lses[3];
  for (int i = 0; i < 3; ++i) outs[i] = IN(a, -1, 1, 2, 3, 2, 24), lses[i] = IN(SEQMIX_F32, -3, 3, 2, 2, 3);
  pair mo = OUT(a, 2, 3, 2, 24), ml = OUT(SEQMIX_F32, 2, 2, 3);
  const seqmix_tensor *po[2][3], *pl[2][3];
  for (int s = 0; s < 2; ++s)
    for (int i = 0; i < 3; ++i) po[s][i] = outs[i].t[s], pl[s][i] = lses[i].t[s];
  RUN("attention_merge", seqmix_attention_merge(C, 3, po[S], pl[S], T(mo), T(ml)));
  compare("attention_merge 3 parts", "out", mo, tolerance(a));
  compare("attention_merge 3 parts", "lse", ml, 1e-4);
  done();
}

static void selective_scan(seqmix_dtype a) {
  const double tol = tolerance(a) * (a == SEQMIX_F32 ? 1 : 2);
  for (int decode = 0; decode < 2; ++decode) {
    const int64_t B = 2, L = decode ? 1 : 9, D = 6, N = 4, G = 2;
    pair u = IN(a, -1, 1, B, L, D), dt = IN(a, -1, 0.5f, B, L, D), A = IN(SEQMIX_F32, -2, -0.1f, D, N);
    pair Bm = IN(a, -1, 1, B, L, G, N), Cm = IN(a, -1, 1, B, L, G, N), Dk = IN(SEQMIX_F32, -1, 1, D);
    pair z = IN(a, -1, 1, B, L, D), db = IN(SEQMIX_F32, -0.5f, 0.5f, D);
    pair s = IN(SEQMIX_F32, -1, 1, B, D, N), y = OUT(a, B, L, D);
    seqmix_selective_scan_params p = {.delta_softplus = true};
    const char *name = decode ? "scan decode B2 D6 N4 G2" : "scan B2 L9 D6 N4 G2 all inputs";
    RUN(name, seqmix_selective_scan(C, T(u), T(dt), T(A), T(Bm), T(Cm), T(Dk), T(z), T(db), T(s),
                                    T(y), &p));
    compare(name, "y", y, tol), compare(name, "state", s, tol);
  }
  /* nothing optional */
  pair u = IN(a, -1, 1, 1, 7, 5), dt = IN(a, 0, 0.5f, 1, 7, 5), A = IN(SEQMIX_F32, -2, -0.1f, 5, 3);
  pair Bm = IN(a, -1, 1, 1, 7, 1, 3), Cm = IN(a, -1, 1, 1, 7, 1, 3), y = OUT(a, 1, 7, 5);
  seqmix_selective_scan_params plain = {0};
  RUN("scan plain", seqmix_selective_scan(C, T(u), T(dt), T(A), T(Bm), T(Cm), NULL, NULL, NULL,
                                          NULL, T(y), &plain));
  compare("scan plain B1 L7 D5 N3", "y", y, tol);
  done();
}

static void ssd(seqmix_dtype a) {
  const double tol = tolerance(a) * (a == SEQMIX_F32 ? 1 : 2);
  for (int decode = 0; decode < 2; ++decode) {
    const int64_t B = 1, L = decode ? 1 : 19, H = 2, P = 4, N = 8, G = 1;
    pair x = IN(a, -1, 1, B, L, H, P), dt = IN(a, -1, 0.5f, B, L, H), A = IN(SEQMIX_F32, -2, -0.1f, H);
    pair Bm = IN(a, -1, 1, B, L, G, N), Cm = IN(a, -1, 1, B, L, G, N), Dk = IN(SEQMIX_F32, -1, 1, H);
    pair z = IN(a, -1, 1, B, L, H, P), db = IN(SEQMIX_F32, -0.5f, 0.5f, H);
    pair s = IN(SEQMIX_F32, -1, 1, B, H, P, N), y = OUT(a, B, L, H, P);
    seqmix_ssd_params p = {.dt_softplus = true, .chunk_size = 8};
    const char *name = decode ? "ssd decode H2 P4 N8" : "ssd B1 L19 H2 P4 N8 chunk8 all inputs";
    RUN(name, seqmix_ssd(C, T(x), T(dt), T(A), T(Bm), T(Cm), T(Dk), T(z), T(db), T(s), T(y), &p));
    compare(name, "y", y, tol), compare(name, "state", s, tol);
  }
  pair x = IN(a, -1, 1, 1, 13, 3, 5), dt = IN(a, 0, 0.5f, 1, 13, 3), A = IN(SEQMIX_F32, -2, -0.1f, 3);
  pair Bm = IN(a, -1, 1, 1, 13, 3, 7), Cm = IN(a, -1, 1, 1, 13, 3, 7), y = OUT(a, 1, 13, 3, 5);
  seqmix_ssd_params plain = {0};
  RUN("ssd plain", seqmix_ssd(C, T(x), T(dt), T(A), T(Bm), T(Cm), NULL, NULL, NULL, NULL, T(y),
                              &plain));
  compare("ssd plain B1 L13 H3 P5 N7 G3", "y", y, tol);
  done();
}

static void linear_attention(seqmix_dtype a) {
  const double tol = tolerance(a) * (a == SEQMIX_F32 ? 1 : 2);
  static const char *names[] = {"none", "head", "token", "vector"};
  for (int decay = SEQMIX_DECAY_NONE; decay <= SEQMIX_DECAY_VECTOR; ++decay)
    for (int decode = 0; decode < 2; ++decode) {
      const int64_t B = 1, L = decode ? 1 : 19, H = 2, Dk = 8, Dv = 12;
      pair q = IN(a, -1, 1, B, L, H, Dk), k = IN(a, -1, 1, B, L, H, Dk), v = IN(a, -1, 1, B, L, H, Dv);
      pair g = decay == SEQMIX_DECAY_HEAD    ? IN(a, -0.5f, 0, H)
               : decay == SEQMIX_DECAY_TOKEN ? IN(a, -0.5f, 0, B, L, H)
               : decay == SEQMIX_DECAY_VECTOR ? IN(a, -0.5f, 0, B, L, H, Dk)
                                              : none;
      pair s = IN(SEQMIX_F32, -1, 1, B, H, Dk, Dv), o = OUT(a, B, L, H, Dv);
      seqmix_linear_attention_params p = {.decay = (seqmix_decay)decay, .chunk_size = 8};
      char name[80];
      snprintf(name, sizeof name, "linattn decay %s %s", names[decay], decode ? "decode" : "L19 chunk8");
      RUN(name, seqmix_linear_attention(C, T(q), T(k), T(v), T(g), T(s), T(o), &p));
      compare(name, "out", o, tol), compare(name, "state", s, tol);
      done();
    }
}

static const char *family;
static bool want(const char *name) { return !family || !strcmp(family, name); }

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: kernel_smoke DEVICE [FAMILY]   (e.g. opencl:0 attention)\n");
    return 2;
  }
  device_id = argv[1];
  family = argc == 3 ? argv[2] : NULL;
  setvbuf(stdout, NULL, _IOLBF, 0);
  open_contexts();
  for (int i = 0; i < 3; ++i) {
    if (want("conv1d")) conv1d(dtypes[i]);
    if (want("conv2d")) conv2d_and_pool(dtypes[i]);
    if (want("long_conv")) long_conv(dtypes[i]);
    if (want("scan")) selective_scan(dtypes[i]);
    if (want("ssd")) ssd(dtypes[i]);
    if (want("linattn")) linear_attention(dtypes[i]);
  }
  close_contexts();
  /* Attention once per OpenCL kernel choice: the device's own, then each forced. */
  static const char *kernels[] = {NULL, "keys", "rows"};
  for (int i = 0; i < 3 && want("attention"); ++i) {
    if (kernels[i]) setenv("SEQMIX_OPENCL_ATTENTION", kernels[i], 1);
    open_contexts();
    for (int t = 0; t < 3; ++t)
      if (kernels[i] == NULL || t == 0) attention(dtypes[t]);
    close_contexts();
  }
  printf("kernel_smoke %s: %d checks, %d failures\n", device_id, checks, failures);
  return failures ? 1 : 0;
}
