/*
 * seqmix: token mixers of sequence models (attention, state-space models,
 * convolution mixers) on any GPU, FPGA or CPU through OpenCL, Vulkan or a SIMD
 * CPU path. This header is the whole public API (C11).
 *
 * Conventions
 *  - Every fallible function returns seqmix_status; SEQMIX_OK is 0. The detail of
 *    the last failure on the calling thread is seqmix_last_error().
 *  - Shapes are listed outermost first, in elements; the innermost dimension is
 *    contiguous. Sequence tensors are token-major: [batch, tokens, channels].
 *  - Ops are asynchronous on the context's in-order stream; reads synchronise.
 *  - A NULL params pointer means all defaults (same as a zeroed struct).
 *  - Device listing and error reporting are thread-safe; a context (and its
 *    tensors) is used by one thread at a time. Use one context per thread.
 */
#ifndef SEQMIX_H
#define SEQMIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(SEQMIX_BUILDING)
#define SEQMIX_API __declspec(dllexport)
#elif defined(__GNUC__)
#define SEQMIX_API __attribute__((visibility("default")))
#else
#define SEQMIX_API
#endif

#define SEQMIX_VERSION_MAJOR 0
#define SEQMIX_VERSION_MINOR 1
#define SEQMIX_VERSION_PATCH 0

/* ---- Status and errors ------------------------------------------------- */

typedef enum seqmix_status {
  SEQMIX_OK = 0,
  SEQMIX_ERROR_INVALID_ARGUMENT,
  SEQMIX_ERROR_UNSUPPORTED,
  SEQMIX_ERROR_OUT_OF_MEMORY,
  SEQMIX_ERROR_DEVICE_LOST,
  SEQMIX_ERROR_BACKEND,
  SEQMIX_ERROR_IO,
} seqmix_status;

/* "SEQMIX_ERROR_INVALID_ARGUMENT"; "SEQMIX_UNKNOWN_STATUS" for other values. */
SEQMIX_API const char *seqmix_status_name(seqmix_status s);
/* This thread's last failure as a sentence naming the function, the argument
 * and the rule; "" if none. Valid until the next seqmix call on this thread. */
SEQMIX_API const char *seqmix_last_error(void);

/* ---- Logging ------------------------------------------------------------ */

typedef enum seqmix_log_level {
  SEQMIX_LOG_DEBUG,
  SEQMIX_LOG_INFO,
  SEQMIX_LOG_WARNING,
  SEQMIX_LOG_ERROR,
} seqmix_log_level;
typedef void (*seqmix_log_fn)(seqmix_log_level level, const char *message, void *user);
/* The library prints nothing by itself except through this hook. The default
 * hook writes warnings and errors to stderr; $SEQMIX_LOG=debug|info|warning|
 * error|quiet changes its threshold. fn NULL restores the default hook. */
SEQMIX_API void seqmix_set_log_callback(seqmix_log_fn fn, void *user);

/* ---- Dtypes and tensors ------------------------------------------------- */

typedef enum seqmix_dtype { SEQMIX_F32, SEQMIX_F16, SEQMIX_BF16, SEQMIX_I32 } seqmix_dtype;

/* "f32", "f16", "bf16", "i32"; NULL for other values. */
SEQMIX_API const char *seqmix_dtype_name(seqmix_dtype dtype);
/* Bytes per element; 0 for other values. */
SEQMIX_API size_t seqmix_dtype_size(seqmix_dtype dtype);

typedef struct seqmix_context seqmix_context;
typedef struct seqmix_tensor seqmix_tensor;

#define SEQMIX_MAX_RANK 4

/* A dense tensor in the context's device memory, rank 1 to 4, every dim >= 1.
 * Its contents are undefined until written. */
SEQMIX_API seqmix_status seqmix_tensor_create(seqmix_context *ctx, seqmix_dtype dtype, int rank,
                                              const int64_t *shape, seqmix_tensor **out);
/* A view of base's storage (base may itself be a view): strides in elements,
 * innermost stride must be 1, offset in elements from the start of base's
 * storage. The view keeps the storage alive; destroy views and bases in any order. */
SEQMIX_API seqmix_status seqmix_tensor_view(seqmix_tensor *base, int rank, const int64_t *shape,
                                            const int64_t *strides, int64_t offset,
                                            seqmix_tensor **out);
/* Host data is dense, row-major, of the tensor's shape and dtype; bytes must match. */
SEQMIX_API seqmix_status seqmix_tensor_write(seqmix_tensor *t, const void *src, size_t bytes);
SEQMIX_API seqmix_status seqmix_tensor_read(const seqmix_tensor *t, void *dst, size_t bytes);
/* Same, converting from/to float on the host (F32, F16, BF16 tensors; F16 and
 * BF16 round to nearest even). count must equal the element count. */
SEQMIX_API seqmix_status seqmix_tensor_write_f32(seqmix_tensor *t, const float *src, size_t count);
SEQMIX_API seqmix_status seqmix_tensor_read_f32(const seqmix_tensor *t, float *dst, size_t count);
/* dst = src on the context's stream: both dense (not strided views), of one
 * context, dtype and element count. */
SEQMIX_API seqmix_status seqmix_tensor_copy(seqmix_tensor *dst, const seqmix_tensor *src);
SEQMIX_API void seqmix_tensor_destroy(seqmix_tensor *t); /* NULL is a no-op */

/* Shape queries (for tensors made by any context). */
SEQMIX_API int seqmix_tensor_rank(const seqmix_tensor *t);
SEQMIX_API int64_t seqmix_tensor_dim(const seqmix_tensor *t, int axis);
SEQMIX_API seqmix_dtype seqmix_tensor_dtype(const seqmix_tensor *t);
SEQMIX_API int64_t seqmix_tensor_numel(const seqmix_tensor *t);

/* ---- Devices and contexts ----------------------------------------------- */

typedef enum seqmix_backend {
  SEQMIX_BACKEND_CPU,
  SEQMIX_BACKEND_OPENCL,
  SEQMIX_BACKEND_VULKAN
} seqmix_backend;
typedef enum seqmix_device_kind {
  SEQMIX_DEVICE_CPU,
  SEQMIX_DEVICE_INTEGRATED_GPU,
  SEQMIX_DEVICE_DISCRETE_GPU,
  SEQMIX_DEVICE_ACCELERATOR,
  SEQMIX_DEVICE_SOFTWARE,
} seqmix_device_kind;

typedef struct seqmix_device_info {
  char id[32]; /* "cpu", "opencl:0", "vulkan:1": what SEQMIX_DEVICE accepts */
  char name[256], vendor[128], driver[128];
  seqmix_backend backend;
  seqmix_device_kind kind;
  uint64_t memory_bytes, local_memory_bytes;
  uint32_t compute_units, subgroup_size, max_workgroup_size;
  bool unified_memory, fp16_storage, fp16_arithmetic, online_compiler;
} seqmix_device_info;

/* Devices of every backend built in; index 0 is always the native CPU path. */
SEQMIX_API seqmix_status seqmix_device_count(size_t *count);
SEQMIX_API seqmix_status seqmix_device_info_get(size_t index, seqmix_device_info *info);
/* "cpu", "opencl", "vulkan"; "seqmix_device_kind" names: "cpu", "integrated-gpu", ... */
SEQMIX_API const char *seqmix_backend_name(seqmix_backend backend);
SEQMIX_API const char *seqmix_device_kind_name(seqmix_device_kind kind);
/* The index `auto` would choose. */
SEQMIX_API seqmix_status seqmix_device_auto(size_t *index);

typedef struct seqmix_context_options {
  const char *device;    /* NULL: $SEQMIX_DEVICE, else "auto" */
  int cpu_threads;       /* 0: $SEQMIX_CPU_THREADS, else one per core */
  const char *cache_dir; /* NULL: $SEQMIX_CACHE_DIR, $XDG_CACHE_HOME/seqmix, ~/.cache/seqmix */
  uint32_t reserved[8];  /* zero: room to grow without breaking the ABI */
} seqmix_context_options;

SEQMIX_API seqmix_status seqmix_context_create(const seqmix_context_options *options,
                                               seqmix_context **out);
/* Waits for outstanding work, then frees everything the context made, tensors
 * included. NULL is a no-op. */
SEQMIX_API void seqmix_context_destroy(seqmix_context *ctx);
SEQMIX_API seqmix_status seqmix_context_device(const seqmix_context *ctx, seqmix_device_info *info);
SEQMIX_API seqmix_status seqmix_context_sync(seqmix_context *ctx);

typedef struct seqmix_context_stats {
  uint64_t ops_on_device;   /* ops the context's device ran */
  uint64_t ops_on_fallback; /* ops the CPU fallback ran because the device could not */
  uint64_t reserved[6];
} seqmix_context_stats;
SEQMIX_API seqmix_status seqmix_context_stats_get(const seqmix_context *ctx,
                                                  seqmix_context_stats *stats);

/* ---- Tuning ---------------------------------------------------------------
 * Knobs are tile sizes and kernel variants the ops of the context's device
 * otherwise pick by heuristic (value 0). `seqmix tune` times each knob's
 * candidates and saves the winners in the cache directory, keyed by the device's
 * backend, name, vendor and driver; every context on such a device loads them.
 * Setting a knob changes only speed, never results beyond rounding. */
typedef struct seqmix_tuning_knob {
  const char *name;        /* "attention.q_rows" */
  const char *op;          /* the `seqmix bench` ops whose cases time it ("ssd,linattn") */
  const char *description;
  int64_t value;           /* in use: 0 = the heuristic */
  int candidate_count;
  int64_t candidates[8];   /* the values it may take, 0 first */
} seqmix_tuning_knob;
/* The knobs of the context's device, index 0 .. count-1. */
SEQMIX_API seqmix_status seqmix_tuning_count(const seqmix_context *ctx, int *count);
SEQMIX_API seqmix_status seqmix_tuning_get(const seqmix_context *ctx, int index,
                                           seqmix_tuning_knob *knob);
/* value must be one of the knob's candidates (0: the heuristic). */
SEQMIX_API seqmix_status seqmix_tuning_set(seqmix_context *ctx, const char *name, int64_t value);
/* Stores the knobs' values as the device's winners (an unwritable cache
 * directory gives SEQMIX_ERROR_IO). */
SEQMIX_API seqmix_status seqmix_tuning_save(seqmix_context *ctx);

/* ---- Offline kernel binaries (OpenCL: FPGA cards, devices without a compiler) ----
 * A context on an OpenCL device without an online compiler, or on any OpenCL
 * device while $SEQMIX_CL_BINARY_DIR is set, loads its kernels only from that
 * directory ($SEQMIX_CL_FORBID_COMPILE=1 makes a device behave as if it had no
 * compiler). seqmix_compile_binaries writes that directory: one file per kernel
 * variant the device's ops can launch, for the activation dtypes and the
 * shape-dependent sizes listed here (every other option, flags and tuning
 * included, is enumerated in full). */
typedef struct seqmix_compile_options {
  uint32_t dtypes;            /* activation dtypes, bits (1u << SEQMIX_F32) ...; 0: F32, F16, BF16 */
  const int32_t *head_dims;   /* attention D = Dv, SSD head dim P, linear-attention Dk = Dv; */
  int head_dim_count;         /*   NULL: 64, 128 */
  const int32_t *state_sizes; /* selective-scan and SSD state size N; NULL: 16, 64, 128 */
  int state_size_count;
  const int32_t *chunk_sizes; /* SSD / linear-attention chunk_size hints besides 0 (auto); NULL: none */
  int chunk_size_count;
  bool dry_run;               /* enumerate and name the files; build and write nothing */
  /* Optional: whether to build a variant (NULL: all of them). */
  bool (*want)(void *user, const char *source, const char *options);
  /* Optional: called for each variant enumerated, with the file written (or that
   * a dry run would write) and the outcome. */
  void (*on_variant)(void *user, const char *file, const char *source, const char *options,
                     seqmix_status status);
  void *user;
  uint32_t reserved[8];       /* zero */
} seqmix_compile_options;

typedef struct seqmix_compile_summary {
  size_t variants; /* enumerated (distinct source + options) */
  size_t written;  /* files written (0 in a dry run) */
  size_t skipped;  /* declined by want() */
  size_t failed;   /* builds or writes that failed (the first one is the last error) */
} seqmix_compile_summary;

/* Builds every kernel variant of ctx's device (OpenCL, with a compiler) and
 * writes each as a binary file into dir (created if absent). NULL options:
 * the defaults. UNSUPPORTED for devices of other backends or without a
 * compiler; the first failed build or write otherwise (all are attempted). */
SEQMIX_API seqmix_status seqmix_compile_binaries(seqmix_context *ctx, const char *dir,
                                                 const seqmix_compile_options *options,
                                                 seqmix_compile_summary *summary);

/* ---- Mixers ------------------------------------------------------------- */
/* Activation tensors of one call share one dtype: F32, F16 or BF16. Parameter
 * tensors (weight, bias) are F32 or that same dtype. State is always F32.
 * Arithmetic is f32 throughout. All outputs are written in full. */

/* Causal depthwise conv1d (Mamba/H3 short conv).
 * y[b,t,c] = bias[c] + sum_{j<K} weight[c,j] * x[b, t-K+1+j, c], earlier inputs
 * taken from state (zeros if NULL); then SiLU if params->silu. state is read as
 * the K-1 inputs before x and overwritten with the last K-1 inputs seen, so decode
 * is the same call with L = 1. */
typedef struct seqmix_conv1d_params {
  bool silu;
} seqmix_conv1d_params;
SEQMIX_API seqmix_status seqmix_conv1d_causal(seqmix_context *ctx,
                                              const seqmix_tensor *x,      /* [B, L, C] */
                                              const seqmix_tensor *weight, /* [C, K] */
                                              const seqmix_tensor *bias,   /* [C] or NULL */
                                              seqmix_tensor *state, /* F32 [B, K-1, C] or NULL */
                                              seqmix_tensor *y,     /* [B, L, C] */
                                              const seqmix_conv1d_params *params);

/* Depthwise 2D convolution (ConvNeXt, ConvFormer), NHWC.
 * y[b,i,j,c] = bias[c] + sum_{u<KH, v<KW} weight[u,v,c] *
 *              x[b, i*stride_h - pad_h + u*dil_h, j*stride_w - pad_w + v*dil_w, c],
 * taps outside the image reading zeros. Ho = (H + 2 pad_h - dil_h (KH-1) - 1) / stride_h + 1
 * (likewise Wo) must be >= 1. */
typedef struct seqmix_conv2d_params {
  int32_t stride_h, stride_w;     /* 0: 1 */
  int32_t pad_h, pad_w;           /* zero padding on each side, >= 0 */
  int32_t dilation_h, dilation_w; /* 0: 1 */
  uint32_t reserved[8];           /* zero */
} seqmix_conv2d_params;
SEQMIX_API seqmix_status seqmix_conv2d_depthwise(seqmix_context *ctx,
                                                 const seqmix_tensor *x,      /* [B, H, W, C] */
                                                 const seqmix_tensor *weight, /* [KH, KW, C] */
                                                 const seqmix_tensor *bias,   /* [C] or NULL */
                                                 seqmix_tensor *y, /* [B, Ho, Wo, C] */
                                                 const seqmix_conv2d_params *params);

/* Long causal convolution (H3, Hyena, S4 kernels), one filter per channel:
 * y[b,t,c] = sum_{s=0}^{min(t, Lh-1)} h[c,s] * x[b,t-s,c] + D_skip[c] * x[b,t,c].
 * AUTO picks direct or FFT by the cost model; both are exact to f32 rounding for
 * any L and Lh. The FFT path keeps plans per shape in the context and reuses the
 * filter's transform while h's storage is unchanged. */
typedef enum seqmix_conv_method {
  SEQMIX_CONV_AUTO,
  SEQMIX_CONV_DIRECT,
  SEQMIX_CONV_FFT
} seqmix_conv_method;
typedef struct seqmix_long_conv_params {
  seqmix_conv_method method;
  uint32_t reserved[8]; /* zero */
} seqmix_long_conv_params;
SEQMIX_API seqmix_status seqmix_long_conv(seqmix_context *ctx,
                                          const seqmix_tensor *x,      /* [B, L, C] */
                                          const seqmix_tensor *h,      /* [C, Lh], Lh >= 1 */
                                          const seqmix_tensor *D_skip, /* [C] or NULL */
                                          seqmix_tensor *y,            /* [B, L, C] */
                                          const seqmix_long_conv_params *params);

/* Pool mixer (PoolFormer): y = avgpool(x; pool x pool, stride 1, pad pool/2,
 * padding not counted) - x. pool is odd. */
typedef struct seqmix_pool_params {
  int32_t pool;         /* 0: 3 */
  uint32_t reserved[8]; /* zero */
} seqmix_pool_params;
SEQMIX_API seqmix_status seqmix_pool_mixer(seqmix_context *ctx, const seqmix_tensor *x,
                                           seqmix_tensor *y, /* both [B, H, W, C] */
                                           const seqmix_pool_params *params);

/* Attention (softmax or sigmoid), FlashAttention-style on every device.
 * Query i (of Lq) sees key j (of Lk) iff causal is false or j <= i + Lk - Lq
 * (bottom-right alignment), and, with window W > 0, j > i + Lk - Lq - W.
 * s = scale * q.k; with softcap c > 0, s = c * tanh(s / c); softmax over the
 * visible keys, or sigmoid(s + sigmoid_bias) per key. GQA/MQA: q head h reads k/v
 * head h / (Hq / Hk). A query row that sees no key outputs zeros and lse = -inf. */
typedef enum seqmix_score { SEQMIX_SCORE_SOFTMAX, SEQMIX_SCORE_SIGMOID } seqmix_score;
typedef struct seqmix_attention_params {
  float scale;        /* 0: 1/sqrt(head_dim) */
  bool causal;        /* query i (of Lq) sees key j (of Lk) iff j <= i + Lk - Lq */
  int32_t window;     /* 0: none; W > 0 (causal only): also j > i + Lk - Lq - W */
  float softcap;      /* 0: none; else s = softcap * tanh(s / softcap) */
  seqmix_score score; /* softmax over keys, or sigmoid(s + sigmoid_bias) per key */
  float sigmoid_bias;
  const seqmix_tensor *cu_seqlens_q; /* I32 [B+1]: packed variable-length batch; */
  const seqmix_tensor *cu_seqlens_k; /*   q is then [1, total_q, Hq, D], k/v [1, total_k, Hk, D] */
  const seqmix_tensor *seqused_k;    /* I32 [B]: keys in use per sequence (KV cache), NULL: all */
  uint32_t reserved[8];              /* zero */
} seqmix_attention_params;

SEQMIX_API seqmix_status seqmix_attention(seqmix_context *ctx,
                                          const seqmix_tensor *q, /* [B, Lq, Hq, D] */
                                          const seqmix_tensor *k, /* [B, Lk, Hk, D] */
                                          const seqmix_tensor *v, /* [B, Lk, Hk, Dv] */
                                          seqmix_tensor *out,     /* [B, Lq, Hq, Dv] */
                                          seqmix_tensor *lse, /* F32 [B, Hq, Lq] or NULL (softmax) */
                                          const seqmix_attention_params *params);

/* Combines n partial softmax results over disjoint key sets (split-K, several
 * devices): out = sum_i exp(lse_i - lse) out_i, lse = log sum_i exp(lse_i).
 * outs[i] [B, Lq, Hq, Dv] and lses[i] F32 [B, Hq, Lq]; lse may be NULL. */
SEQMIX_API seqmix_status seqmix_attention_merge(seqmix_context *ctx, int n,
                                                const seqmix_tensor *const *outs,
                                                const seqmix_tensor *const *lses,
                                                seqmix_tensor *out, seqmix_tensor *lse);

/* ---- State-space and linear-recurrent mixers ---------------------------- */
/* state tensors (F32) are read as the initial state and overwritten with the
 * final state, so a long sequence can be fed in pieces and decode is the same
 * call with L = 1; NULL means zeros in, final state discarded. Any tensor may be
 * a strided view (a state slice of a larger cache included). */

/* Selective scan (Mamba-1). Per batch b and channel d, over tokens t:
 * dt = delta + delta_bias (softplus(dt) = log(1 + e^dt) if delta_softplus);
 * h[n] = exp(dt A[d,n]) h[n] + dt Bm[g,n] u;  y = sum_n Cm[g,n] h[n] + D_skip[d] u;
 * y *= silu(z) if z; channel d uses group g = d / (D / G). */
typedef struct seqmix_selective_scan_params {
  bool delta_softplus;
  uint32_t reserved[8]; /* zero */
} seqmix_selective_scan_params;
SEQMIX_API seqmix_status seqmix_selective_scan(seqmix_context *ctx,
                                               const seqmix_tensor *u,          /* [B, L, D] */
                                               const seqmix_tensor *delta,      /* [B, L, D] */
                                               const seqmix_tensor *A,          /* F32 [D, N] */
                                               const seqmix_tensor *Bm,         /* [B, L, G, N] */
                                               const seqmix_tensor *Cm,         /* [B, L, G, N] */
                                               const seqmix_tensor *D_skip,     /* [D] or NULL */
                                               const seqmix_tensor *z,          /* [B, L, D] or NULL */
                                               const seqmix_tensor *delta_bias, /* [D] or NULL */
                                               seqmix_tensor *state, /* F32 [B, D, N] or NULL */
                                               seqmix_tensor *y,     /* [B, L, D] */
                                               const seqmix_selective_scan_params *params);

/* SSD (Mamba-2), chunkwise. Per batch b and head h (group g = h / (H / G)):
 * dt' = dt + dt_bias (softplus'd if dt_softplus);
 * s[p,n] = exp(dt' A[h]) s[p,n] + dt' x[p] Bm[g,n];  y[p] = sum_n Cm[g,n] s[p,n] + D_skip[h] x[p];
 * y *= silu(z) if z. chunk_size (0: chosen per device, else 1..256) is the
 * chunk of the chunkwise algorithm: a tuning hint that changes only rounding. */
typedef struct seqmix_ssd_params {
  bool dt_softplus;
  int32_t chunk_size;
  uint32_t reserved[8]; /* zero */
} seqmix_ssd_params;
SEQMIX_API seqmix_status seqmix_ssd(seqmix_context *ctx,
                                    const seqmix_tensor *x,       /* [B, L, H, P] */
                                    const seqmix_tensor *dt,      /* [B, L, H] */
                                    const seqmix_tensor *A,       /* F32 [H] */
                                    const seqmix_tensor *Bm,      /* [B, L, G, N], H % G == 0 */
                                    const seqmix_tensor *Cm,      /* [B, L, G, N] */
                                    const seqmix_tensor *D_skip,  /* [H] or NULL */
                                    const seqmix_tensor *z,       /* [B, L, H, P] or NULL */
                                    const seqmix_tensor *dt_bias, /* [H] or NULL */
                                    seqmix_tensor *state,         /* F32 [B, H, P, N] or NULL */
                                    seqmix_tensor *y,             /* [B, L, H, P] */
                                    const seqmix_ssd_params *params);

/* Linear attention, chunkwise: S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t;
 * out_t = scale q_t S_t (scale 0: 1/sqrt(Dk)). g is a log-decay (<= 0; not
 * checked) whose shape follows the decay kind. chunk_size as in SSD. */
typedef enum seqmix_decay {
  SEQMIX_DECAY_NONE,   /* g NULL: plain linear attention */
  SEQMIX_DECAY_HEAD,   /* g [H]: constant log-decay per head (RetNet) */
  SEQMIX_DECAY_TOKEN,  /* g [B, L, H]: log-decay per token and head */
  SEQMIX_DECAY_VECTOR, /* g [B, L, H, Dk]: log-decay per key channel (GLA) */
} seqmix_decay;
typedef struct seqmix_linear_attention_params {
  float scale;
  seqmix_decay decay;
  int32_t chunk_size;
  uint32_t reserved[8]; /* zero */
} seqmix_linear_attention_params;
SEQMIX_API seqmix_status seqmix_linear_attention(seqmix_context *ctx,
                                                 const seqmix_tensor *q, /* [B, L, H, Dk] */
                                                 const seqmix_tensor *k, /* [B, L, H, Dk] */
                                                 const seqmix_tensor *v, /* [B, L, H, Dv] */
                                                 const seqmix_tensor *g, /* by decay kind */
                                                 seqmix_tensor *state, /* F32 [B, H, Dk, Dv] or NULL */
                                                 seqmix_tensor *out,   /* [B, L, H, Dv] */
                                                 const seqmix_linear_attention_params *params);

/* ---- Float64 references -------------------------------------------------- */
/* The float64 reference implementations every device is checked against, on
 * dense row-major host arrays. Used by `seqmix verify` and the tests; they are
 * slow and exact, not for production. Optional arrays may be NULL. */
SEQMIX_API seqmix_status seqmix_reference_conv1d_causal(int64_t batch, int64_t tokens,
                                                        int64_t channels, int64_t kernel,
                                                        const double *x, const double *weight,
                                                        const double *bias, double *state,
                                                        double *y,
                                                        const seqmix_conv1d_params *params);
SEQMIX_API seqmix_status seqmix_reference_conv2d_depthwise(
    int64_t batch, int64_t height, int64_t width, int64_t channels, int64_t kernel_h,
    int64_t kernel_w, const double *x, const double *weight, const double *bias, double *y,
    const seqmix_conv2d_params *params); /* y: [B, Ho, Wo, C] */
SEQMIX_API seqmix_status seqmix_reference_long_conv(int64_t batch, int64_t tokens,
                                                    int64_t channels, int64_t filter_len,
                                                    const double *x, const double *h,
                                                    const double *D_skip, double *y);
SEQMIX_API seqmix_status seqmix_reference_pool_mixer(int64_t batch, int64_t height,
                                                     int64_t width, int64_t channels,
                                                     const double *x, double *y,
                                                     const seqmix_pool_params *params);

/* Attention on dense arrays with the layouts of seqmix_attention. Varlen:
 * cu_seqlens_q/k hold batch+1 offsets and q_tokens/k_tokens are the totals
 * (batch is then the number of sequences and the arrays have one leading batch
 * of 1). seqused_k may be NULL. lse may be NULL. */
typedef struct seqmix_reference_attention_shape {
  int64_t batch, q_tokens, k_tokens, q_heads, k_heads, head_dim, v_head_dim;
  const int32_t *cu_seqlens_q, *cu_seqlens_k, *seqused_k;
} seqmix_reference_attention_shape;
SEQMIX_API seqmix_status seqmix_reference_attention(const seqmix_reference_attention_shape *shape,
                                                    const double *q, const double *k,
                                                    const double *v, double *out, double *lse,
                                                    const seqmix_attention_params *params);
SEQMIX_API seqmix_status seqmix_reference_attention_merge(int n, int64_t batch, int64_t q_tokens,
                                                          int64_t q_heads, int64_t v_head_dim,
                                                          const double *const *outs,
                                                          const double *const *lses, double *out,
                                                          double *lse);

/* The recurrent mixers on dense arrays with the layouts above (state may be NULL). */
SEQMIX_API seqmix_status seqmix_reference_selective_scan(
    int64_t batch, int64_t tokens, int64_t channels, int64_t state_size, int64_t groups,
    const double *u, const double *delta, const double *A, const double *Bm, const double *Cm,
    const double *D_skip, const double *z, const double *delta_bias, double *state, double *y,
    const seqmix_selective_scan_params *params);
SEQMIX_API seqmix_status seqmix_reference_ssd(int64_t batch, int64_t tokens, int64_t heads,
                                              int64_t head_dim, int64_t state_size,
                                              int64_t groups, const double *x, const double *dt,
                                              const double *A, const double *Bm, const double *Cm,
                                              const double *D_skip, const double *z,
                                              const double *dt_bias, double *state, double *y,
                                              const seqmix_ssd_params *params);
SEQMIX_API seqmix_status seqmix_reference_linear_attention(
    int64_t batch, int64_t tokens, int64_t heads, int64_t key_dim, int64_t value_dim,
    const double *q, const double *k, const double *v, const double *g, double *state,
    double *out, const seqmix_linear_attention_params *params);

#ifdef __cplusplus
}
#endif
#endif /* SEQMIX_H */
