/*
 * The interface every backend implements: the only way core talks to one.
 *
 * A backend lists its devices (probe), opens one (open), and then moves bytes
 * (alloc/free/write/read/copy) and runs op descriptors (supports/launch) on an
 * in-order stream (flush submits what is recorded, sync waits for it).
 * Backends never validate user arguments: src/ops did that before the op
 * descriptor was built. They report driver failures through sm_fail() naming
 * the driver call and its code.
 */
#ifndef SEQMIX_BACKEND_H
#define SEQMIX_BACKEND_H

#include "seqmix.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sm_device sm_device; /* a backend's open device */
typedef struct sm_buffer sm_buffer; /* a backend's allocation */

/* One device as a backend lists it. `handle` is the backend's own token for
 * open() (a platform/device index pair, a physical device, ...). */
typedef struct sm_device_entry {
  seqmix_device_info info;
  uintptr_t handle[2];
} sm_device_entry;

typedef struct sm_open_options {
  const char *cache_dir; /* never NULL; may not exist or be unwritable */
  int cpu_threads;       /* resolved: >= 1 */
} sm_open_options;

/* ---- Op descriptors ----------------------------------------------------- */

typedef enum sm_op_kind {
  SM_OP_CONV1D_CAUSAL,
  SM_OP_ATTENTION,
  SM_OP_ATTENTION_MERGE,
  SM_OP_SELECTIVE_SCAN,
  SM_OP_SSD,
  SM_OP_LINEAR_ATTENTION,
  SM_OP_CONV2D_DEPTHWISE,
  SM_OP_LONG_CONV,
  SM_OP_POOL_MIXER,
  SM_OP_KIND_COUNT,
} sm_op_kind;

/* A tensor as kernels see it: storage, element offset, shape, strides (all in
 * elements, innermost stride 1). Unused dims are 1 with stride 0. */
typedef struct sm_tensor_ref {
  sm_buffer *buffer; /* NULL: absent optional tensor */
  seqmix_dtype dtype;
  int rank;
  int64_t offset;
  int64_t shape[SEQMIX_MAX_RANK];
  int64_t strides[SEQMIX_MAX_RANK];
  /* The storage's content version when the op was built: equal versions mean
   * equal contents (unique across storages and never reused). */
  uint64_t version;
  void *owner; /* core's storage; opaque to backends */
} sm_tensor_ref;

enum { SM_OP_MAX_TENSORS = 20 };

/* Tensor slots of SM_OP_CONV1D_CAUSAL. */
enum { SM_CONV1D_X, SM_CONV1D_WEIGHT, SM_CONV1D_BIAS, SM_CONV1D_STATE, SM_CONV1D_Y };

typedef struct sm_conv1d_desc {
  int64_t batch, tokens, channels, kernel; /* B, L, C, K */
  bool silu;
} sm_conv1d_desc;

/* Tensor slots of SM_OP_ATTENTION. lse, the cu_seqlens and seqused_k may be absent. */
enum {
  SM_ATTN_Q,
  SM_ATTN_K,
  SM_ATTN_V,
  SM_ATTN_OUT,
  SM_ATTN_LSE,
  SM_ATTN_CU_Q,
  SM_ATTN_CU_K,
  SM_ATTN_SEQUSED_K,
};

/* Attention. Dense: q [B, Lq, Hq, D], k [B, Lk, Hk, D], v [B, Lk, Hk, Dv],
 * out [B, Lq, Hq, Dv], lse [B, Hq, Lq]. Varlen (cu_q/cu_k present): batch is the
 * number of sequences, tensors have a leading dim of 1, q_tokens/k_tokens are the
 * totals, and sequence b owns q rows cu_q[b]..cu_q[b+1] and k rows cu_k[b]..cu_k[b+1];
 * lse is [1, Hq, total_q]. seqused_k[b] (if present) caps the keys of sequence b.
 * Core has checked every offset; host copies are valid during launch. */
typedef struct sm_attention_desc {
  int64_t batch, q_tokens, k_tokens, q_heads, k_heads, head_dim, v_head_dim;
  int64_t max_q_len, max_k_len; /* longest sequence (dense: q_tokens, k_tokens) */
  float scale, softcap, sigmoid_bias;
  bool causal, sigmoid, varlen;
  int32_t window;
  const int32_t *cu_q, *cu_k, *seqused_k; /* host copies or NULL */
} sm_attention_desc;

/* SM_OP_ATTENTION_MERGE: tensors are out, lse (may be absent), then pairs
 * (out_i, lse_i) for i < parts; shapes as in seqmix_attention_merge. */
enum { SM_MERGE_OUT, SM_MERGE_LSE, SM_MERGE_FIRST_PART, SM_MERGE_MAX_PARTS = 8 };
typedef struct sm_merge_desc {
  int parts;
  int64_t batch, q_tokens, q_heads, v_head_dim;
} sm_merge_desc;

/* ---- State-space and linear-recurrent mixers ----
 * Every tensor may be a strided view (innermost stride 1), state included, so a
 * state can live inside a larger cache tensor. An absent state (NULL buffer)
 * means zeros in, final state discarded. Parameter tensors (D_skip, the dt
 * biases) are F32 or the activations' dtype; A and state are always F32. */

/* Tensor slots of SM_OP_SELECTIVE_SCAN (Mamba-1). u, delta, z, y [B, L, D];
 * A [D, N]; Bm, Cm [B, L, G, N] (channel d uses group d / (D / G)); D_skip,
 * delta_bias [D]; state [B, D, N]. Per (b, d), with dt = delta (+ delta_bias,
 * softplus'd if asked): h[n] = exp(dt A[d,n]) h[n] + dt B[n] u;
 * y = sum_n C[n] h[n] + D_skip[d] u; y *= silu(z) if z. */
enum {
  SM_SCAN_U,
  SM_SCAN_DELTA,
  SM_SCAN_A,
  SM_SCAN_B,
  SM_SCAN_C,
  SM_SCAN_D_SKIP,
  SM_SCAN_Z,
  SM_SCAN_DELTA_BIAS,
  SM_SCAN_STATE,
  SM_SCAN_Y,
};
typedef struct sm_scan_desc {
  int64_t batch, tokens, channels, state_size, groups; /* B, L, D, N, G */
  bool delta_softplus;
} sm_scan_desc;

/* Tensor slots of SM_OP_SSD (Mamba-2). x, z, y [B, L, H, P]; dt [B, L, H];
 * A, D_skip, dt_bias [H]; Bm, Cm [B, L, G, N] (head h uses group h / (H / G));
 * state [B, H, P, N]. Per (b, h), dt' = dt (+ dt_bias, softplus'd if asked):
 * h[p,n] = exp(dt' A[h]) h[p,n] + dt' x[p] B[n]; y[p] = sum_n C[n] h[p,n] +
 * D_skip[h] x[p]; y *= silu(z) if z. This is linear attention with q = C,
 * k = dt' B, v = x, per-token log-decay dt' A[h], scale 1 and the state stored
 * transposed ([P, N] = [Dv, Dk]). */
enum {
  SM_SSD_X,
  SM_SSD_DT,
  SM_SSD_A,
  SM_SSD_B,
  SM_SSD_C,
  SM_SSD_D_SKIP,
  SM_SSD_Z,
  SM_SSD_DT_BIAS,
  SM_SSD_STATE,
  SM_SSD_Y,
};
typedef struct sm_ssd_desc {
  int64_t batch, tokens, heads, head_dim, state_size, groups; /* B, L, H, P, N, G */
  bool dt_softplus;
  int32_t chunk_size; /* tokens per chunk; 0: the backend chooses. A hint: results
                       * do not depend on it beyond rounding. */
} sm_ssd_desc;

/* Tensor slots of SM_OP_LINEAR_ATTENTION. q, k [B, L, H, Dk]; v, out
 * [B, L, H, Dv]; g by decay kind: absent (NONE), [H] (HEAD), [B, L, H] (TOKEN),
 * [B, L, H, Dk] (VECTOR); state [B, H, Dk, Dv]. Per (b, h):
 * S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t; out_t = scale q_t S_t. */
enum { SM_LA_Q, SM_LA_K, SM_LA_V, SM_LA_G, SM_LA_STATE, SM_LA_OUT };
typedef struct sm_linear_attention_desc {
  int64_t batch, tokens, heads, key_dim, value_dim; /* B, L, H, Dk, Dv */
  float scale;                                      /* resolved (never 0) */
  seqmix_decay decay;
  int32_t chunk_size; /* as in sm_ssd_desc */
} sm_linear_attention_desc;

/* ---- Convolution mixers ---- */

/* Tensor slots of SM_OP_CONV2D_DEPTHWISE: x [B, H, W, C], weight [KH, KW, C],
 * bias [C] (may be absent), y [B, Ho, Wo, C]. Taps outside the image are zeros:
 * y[b,i,j,c] = bias[c] + sum_{u,v} weight[u,v,c] *
 *              x[b, i*stride_h - pad_h + u*dil_h, j*stride_w - pad_w + v*dil_w, c]. */
enum { SM_CONV2D_X, SM_CONV2D_WEIGHT, SM_CONV2D_BIAS, SM_CONV2D_Y };
typedef struct sm_conv2d_desc {
  int64_t batch, height, width, channels; /* B, H, W, C */
  int64_t kernel_h, kernel_w;             /* KH, KW */
  int64_t out_height, out_width;          /* Ho, Wo (>= 1) */
  int32_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w; /* resolved (>= 1, pads >= 0) */
} sm_conv2d_desc;

/* Tensor slots of SM_OP_LONG_CONV: x, y [B, L, C]; h [C, Lh]; D_skip [C] (may be
 * absent). y[b,t,c] = sum_{s <= min(t, Lh-1)} h[c,s] x[b,t-s,c] + D_skip[c] x[b,t,c].
 * Taps s >= L never contribute. `method` is DIRECT or FFT (core resolved AUTO by
 * sm_long_conv_direct_over_fft); a backend may run either method, but should honour it.
 * h's ref carries its content version: a backend may cache h's transform keyed
 * on (version, offset, strides, dtype, transform length). */
enum { SM_LCONV_X, SM_LCONV_H, SM_LCONV_D_SKIP, SM_LCONV_Y };
typedef struct sm_long_conv_desc {
  int64_t batch, tokens, channels, filter_len; /* B, L, C, Lh */
  seqmix_conv_method method;                   /* DIRECT or FFT */
} sm_long_conv_desc;

/* Tensor slots of SM_OP_POOL_MIXER: x, y [B, H, W, C]; y = the average of x over
 * the pool x pool window around each pixel (stride 1, pad pool / 2, only pixels
 * inside the image counted) minus x. */
enum { SM_POOL_X, SM_POOL_Y };
typedef struct sm_pool_desc {
  int64_t batch, height, width, channels; /* B, H, W, C */
  int32_t pool;                           /* odd, >= 1 */
} sm_pool_desc;

/* ---- Tuning knobs ------------------------------------------------------- *
 * A knob is a tile size or kernel variant an op otherwise picks by heuristic.
 * `seqmix tune` times each knob's candidates on a device and stores the winners
 * in the cache directory, keyed by device and driver; contexts load them. Value
 * 0 always means "the heuristic". Backends read knobs with sm_knob(op, KNOB). */
typedef enum sm_knob_id {
  SM_KNOB_CPU_ATTN_Q_ROWS,     /* query rows a prefill task owns (sm_cpu attention) */
  SM_KNOB_CPU_ATTN_KV_TOKENS,  /* keys per block of the decode walk */
  SM_KNOB_CPU_SSM_CHUNK,       /* chunk of the SSD / linear-attention chunkwise engine */
  SM_KNOB_VK_CONV1D_WORKGROUP, /* Vulkan conv1d: invocations per work-group */
  SM_KNOB_VK_CONV1D_TOKENS,    /* Vulkan conv1d: tokens per invocation */
  SM_KNOB_VK_ATTN_SPLIT_TARGET, /* Vulkan attention: work-groups to fill before splitting stops */
  SM_KNOB_VK_SSM_CHUNK,        /* Vulkan SSD / linear attention chunk */
  SM_KNOB_CL_ATTN_GROUPS_PER_UNIT, /* OpenCL attention: key-split work-groups per compute unit */
  SM_KNOB_LONG_CONV_CROSSOVER, /* long conv AUTO: FFT when direct/FFT cost > value / 100 */
  SM_KNOB_COUNT
} sm_knob_id;

typedef struct sm_knob_info {
  const char *name;      /* "attention.q_rows": op, dot, what */
  const char *bench_op;  /* the `seqmix bench` ops whose cases time it ("ssd,linattn") */
  int backend;           /* seqmix_backend it applies to; -1: every backend */
  int64_t candidates[8]; /* values worth timing, 0 (the heuristic) first; 0-terminated after */
  const char *what;
} sm_knob_info;
extern const sm_knob_info sm_knobs[SM_KNOB_COUNT];

typedef struct sm_tuning {
  int64_t value[SM_KNOB_COUNT]; /* 0: the heuristic */
} sm_tuning;

typedef struct sm_op {
  sm_op_kind kind;
  const char *name; /* the public function, for messages */
  int tensor_count;
  sm_tensor_ref tensors[SM_OP_MAX_TENSORS];
  /* Which slots the op writes (bit i = tensors[i]); the fallback copies these back. */
  uint32_t output_mask;
  const sm_tuning *tuning; /* the context's stored winners; set by dispatch */
  union {
    sm_conv1d_desc conv1d;
    sm_attention_desc attention;
    sm_merge_desc merge;
    sm_scan_desc scan;
    sm_ssd_desc ssd;
    sm_linear_attention_desc linear_attention;
    sm_conv2d_desc conv2d;
    sm_long_conv_desc long_conv;
    sm_pool_desc pool;
  } u;
} sm_op;

/* The op's value of a knob: a stored or set winner, else 0 (the heuristic). */
static inline int64_t sm_knob(const sm_op *op, sm_knob_id knob) {
  return op->tuning ? op->tuning->value[knob] : 0;
}
/* The knob's value, or `heuristic` when it is 0. */
static inline int64_t sm_knob_or(const sm_op *op, sm_knob_id knob, int64_t heuristic) {
  const int64_t v = sm_knob(op, knob);
  return v > 0 ? v : heuristic;
}

/* ---- The vtable ---------------------------------------------------------- */

typedef struct sm_backend {
  const char *name; /* "cpu", "opencl", "vulkan": the id prefix */
  seqmix_backend kind;
  /* List every device; *entries is malloc'ed (free()d by the caller). A backend
   * whose driver is absent returns SEQMIX_OK with zero devices. */
  seqmix_status (*probe)(sm_device_entry **entries, size_t *count);
  seqmix_status (*open)(const sm_device_entry *entry, const sm_open_options *options,
                        sm_device **out);
  void (*close)(sm_device *dev); /* waits for outstanding work first */
  seqmix_status (*alloc)(sm_device *dev, size_t bytes, sm_buffer **out);
  void (*free)(sm_device *dev, sm_buffer *buf);
  /* Byte ranges. write and copy are ordered after earlier work on the stream;
   * read waits for earlier work and returns with dst filled. */
  seqmix_status (*write)(sm_device *dev, sm_buffer *buf, size_t offset, const void *src,
                         size_t bytes);
  seqmix_status (*read)(sm_device *dev, sm_buffer *buf, size_t offset, void *dst, size_t bytes);
  seqmix_status (*copy)(sm_device *dev, sm_buffer *src, size_t src_offset, sm_buffer *dst,
                        size_t dst_offset, size_t bytes);
  /* Whether launch() can run this op (dtypes, features, limits). Never fails. */
  bool (*supports)(sm_device *dev, const sm_op *op);
  seqmix_status (*launch)(sm_device *dev, const sm_op *op);
  seqmix_status (*flush)(sm_device *dev);
  seqmix_status (*sync)(sm_device *dev);
  /* Optional (NULL: nothing to compile offline): seqmix_compile_binaries, with
   * options resolved (never NULL) and the summary zeroed. */
  seqmix_status (*compile_binaries)(sm_device *dev, const char *dir,
                                    const seqmix_compile_options *options,
                                    seqmix_compile_summary *summary);
} sm_backend;

/* The registry: every backend built in, CPU first. */
extern const sm_backend sm_cpu_backend;
#ifdef SEQMIX_HAVE_OPENCL
extern const sm_backend sm_opencl_backend;
#endif
#ifdef SEQMIX_HAVE_VULKAN
extern const sm_backend sm_vulkan_backend;
#endif

/* ---- Services core offers backends (src/core) ---------------------------- */

/* Sets this thread's last error (printf-style) and returns status. */
seqmix_status sm_fail(seqmix_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sm_log(seqmix_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* On-disk cache (DESIGN.md section 7): whole files under dir, written to a
 * temporary name and renamed; a header with magic, version and a payload hash,
 * so a truncated or foreign file reads as absent. Failures only cost speed. */
bool sm_cache_load(const char *dir, const char *name, void **data, size_t *size);
/* false (and logged at info) when it could not be stored. */
bool sm_cache_store(const char *dir, const char *name, const void *data, size_t size);
/* sm_cache_load that tells a missing file from a damaged one (offline
 * binaries must report which). */
typedef enum sm_cache_result { SM_CACHE_OK, SM_CACHE_MISSING, SM_CACHE_DAMAGED } sm_cache_result;
sm_cache_result sm_cache_read(const char *dir, const char *name, void **data, size_t *size);
uint64_t sm_hash64(const void *data, size_t size, uint64_t seed);

/* Embedded kernel sources (generated at build time). */
typedef struct sm_embedded_file {
  const char *name; /* file name, e.g. "conv1d.cl" or "conv1d_f32.spv" */
  const unsigned char *data;
  size_t size;
} sm_embedded_file;
const sm_embedded_file *sm_embedded_find(const char *name);

/* f16/bf16 <-> f32 on the host, round to nearest even. */
uint16_t sm_f32_to_f16(float f);
float sm_f16_to_f32(uint16_t h);
uint16_t sm_f32_to_bf16(float f);
float sm_bf16_to_f32(uint16_t h);

/* The long convolution (src/ops/convmix.c): the FFT length for L tokens and a
 * filter of Lh taps (even, 7-smooth, >= L + min(Lh, L) - 1), and the cost
 * model's estimate of direct time over FFT time (AUTO takes the FFT above 1). */
int64_t sm_long_conv_fft_size(int64_t tokens, int64_t filter_len);
double sm_long_conv_direct_over_fft(int64_t tokens, int64_t filter_len);

/* Integer helpers for tile and launch sizes. */
static inline uint64_t sm_div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* The largest power of two <= v (1 for v = 0). */
static inline uint64_t sm_floor_pow2(uint64_t v) {
  uint64_t p = 1;
  while (p * 2 <= v)
    p *= 2;
  return p;
}

/* The smallest power of two >= v. */
static inline uint64_t sm_ceil_pow2(uint64_t v) {
  uint64_t p = 1;
  while (p < v)
    p *= 2;
  return p;
}

#endif /* SEQMIX_BACKEND_H */
