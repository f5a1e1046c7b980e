/*
 * SM_OP_SELECTIVE_SCAN, SM_OP_SSD and SM_OP_LINEAR_ATTENTION on OpenCL
 * (cl/ssm.cl).
 *
 * The selective scan is one kernel, selective_scan: a work-item per vector of
 * channels on CPU devices, NSPLIT work-items a channel on GPUs (the state spread
 * over them, y summed through local memory).
 *
 * SSD is linear attention with q = Cm, k = dt' Bm, v = x and a per-token decay
 * dt' A[h], so both ops become one chunk_job in linear-attention terms and run
 * the same kernels: chunk_scan (chunkwise, state tile in local memory), or
 * recurrent_scan (token by token, state in registers) for calls of a few
 * tokens, decode above all. The chunk size is the op's hint or the device's
 * default, cut until the work-group's tiles fit in local memory; results do
 * not depend on it beyond rounding.
 *
 * Sizes the kernels hold in registers or local memory (N, Dk) and the tiling
 * are build options, so each (dtype, sizes, flags) combination is a program
 * variant built once per device (program.c).
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <string.h>

/* State sizes a kernel keeps on chip; larger ones go to the CPU fallback. */
enum { SCAN_MAX_STATE = 256, CHUNK_MAX_KEY_DIM = 256, CHUNK_MAX_TOKENS = 256 };
/* Chunk sizes: a hint below CHUNK_MIN_HINT is raised to it (tiny chunks only
 * cost speed); local memory may cut a chunk down to CHUNK_MIN_TOKENS. */
enum { CHUNK_MIN_HINT = 8, CHUNK_MIN_TOKENS = 2 };

/* cl/ssm.cl's DECAY values. */
enum { DECAY_NONE, DECAY_HEAD, DECAY_TOKEN, DECAY_VECTOR };

/* Tunables, first matching row wins. */
typedef struct ssm_tuning {
  seqmix_device_kind kind;
  cl_uint min_native_float_width; /* the row needs at least this native vector width */
  int vector_width;               /* lanes a work-item computes (VEC, VW): CPU SIMD; 1 on GPUs */
  int scan_workgroup;             /* selective_scan work-items a group */
  int scan_split;                 /* work-items a channel's state is spread over, at most */
  int scan_block_tokens;          /* tokens between selective_scan's reductions (split > 1) */
  int chunk_workgroup;            /* chunk_scan / recurrent_scan work-items a group, at most */
  int chunk_tokens;               /* chunk when the op leaves it to us: scalar decays, SSD */
  int chunk_tokens_vector;        /* the same for the per-channel (GLA) decay */
  int value_tile;                 /* value columns a chunk_scan work-group; 0: all of them */
  int row_block;                  /* rows a chunk_scan work-item computes in its products */
  int recurrent_tokens;           /* calls of up to this many tokens run recurrent_scan */
} ssm_tuning;

static const ssm_tuning tunings[] = {
    /* CPU devices (PoCL): a work-item's lanes are one SIMD register; PoCL does
     * not vectorise across work-items whose code has loops. A work-group is
     * one task of a worker thread, and the heads (times batch) are enough
     * tasks, so a work-group takes all value columns and computes the
     * intra-chunk scores once. Measured on PoCL 3.1, AVX-512, 2 cores. */
    {SEQMIX_DEVICE_SOFTWARE, 16, 16, 16, 1, 1, 64, 64, 16, 0, 8, 8},
    {SEQMIX_DEVICE_SOFTWARE, 8, 8, 32, 1, 1, 64, 64, 16, 0, 8, 8},
    {SEQMIX_DEVICE_SOFTWARE, 4, 4, 64, 1, 1, 64, 64, 16, 0, 8, 8},
    /* llvmpipe (native width 1): vectorises across work-items itself. */
    {SEQMIX_DEVICE_SOFTWARE, 1, 1, 64, 1, 1, 64, 32, 16, 0, 1, 16},
    /* GPUs (not measured yet: no GPU on the development machine): a channel's
     * state over up to 16 work-items, so a batch-1 prefill still fills the
     * device; value tiles of 32 columns for more work-groups a head. */
    {SEQMIX_DEVICE_DISCRETE_GPU, 1, 1, 256, 16, 32, 256, 64, 32, 32, 2, 8},
    {SEQMIX_DEVICE_INTEGRATED_GPU, 1, 1, 128, 8, 32, 128, 32, 16, 32, 2, 8},
};
static const ssm_tuning default_tuning = {
    SEQMIX_DEVICE_ACCELERATOR, 1, 1, 64, 1, 1, 64, 32, 16, 16, 1, 8};

static const ssm_tuning *pick_tuning(const sm_device *dev) {
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].kind == dev->info.kind &&
        dev->caps.native_float_width >= tunings[i].min_native_float_width)
      return &tunings[i];
  return &default_tuning;
}

static bool act_dtype(seqmix_dtype dt) {
  return dt == SEQMIX_F32 || dt == SEQMIX_F16 || dt == SEQMIX_BF16;
}

static int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/* The largest power of two <= limit that divides v. */
static int pow2_dividing(int64_t v, int limit) {
  int p = 1;
  while (p * 2 <= limit && v % (p * 2) == 0)
    p *= 2;
  return p;
}

/* Floats of local memory a work-group may use (a little is left to the driver). */
static size_t local_floats(const sm_device *dev) {
  const uint64_t bytes = dev->info.local_memory_bytes ? dev->info.local_memory_bytes : 16384;
  return (size_t)((bytes > 2048 ? bytes - 1024 : bytes / 2) / sizeof(float));
}

/* llvmpipe (rusticl) ends every loop of a work-item after 65535 iterations in
 * all, silently (see attention.c): shapes whose work-items would iterate more
 * go to the CPU fallback there. chunk_iterations is an estimate, and an SSD of
 * 2048 tokens that it put at 60000 lost its final state on rusticl 22.3: keep
 * half the limit as margin. 0: no limit. */
static int64_t loop_budget(const sm_device *dev) {
  return strstr(dev->info.name, "llvmpipe") ? 30000 : 0;
}

/* Work-items a group: `want` within the device's limit, a power of two. */
static size_t clamp_workgroup(const sm_device *dev, int64_t want) {
  size_t wg = want > 0 ? (size_t)want : 1;
  if (wg > dev->caps.max_workgroup_size) wg = dev->caps.max_workgroup_size;
  return sm_floor_pow2(wg ? wg : 1);
}

/* buffer, offset, then `strides` strides (zeros for an absent tensor). */
static void arg_view(sm_device *dev, sm_cl_args *a, const sm_tensor_ref *r, int strides) {
  sm_cl_arg_buffer(dev, a, r->buffer);
  sm_cl_arg_long(a, r->buffer ? r->offset : 0);
  for (int i = 0; i < strides; ++i)
    sm_cl_arg_long(a, r->buffer ? r->strides[i] : 0);
}

/* " -DNAME=dtype" for a present parameter tensor, "" for an absent one. */
static void dtype_option(char *out, size_t size, const char *name, const sm_tensor_ref *r) {
  out[0] = '\0';
  if (r->buffer) snprintf(out, size, " -D%s=%s", name, seqmix_dtype_name(r->dtype));
}

/* ==== Selective scan ====================================================== */

typedef struct scan_plan {
  int vec;          /* channels a work-item (VEC) */
  int split;        /* work-items a channel (NSPLIT) */
  int workgroup;    /* WG */
  int block_tokens; /* TBLK */
} scan_plan;

static scan_plan plan_scan(const sm_device *dev, const sm_scan_desc *d, size_t kernel_max) {
  const ssm_tuning *tu = pick_tuning(dev);
  scan_plan p;
  /* A work-item's channels share a group, so Bm and Cm are one row for all. */
  p.vec = pow2_dividing(d->channels / d->groups, tu->vector_width);
  p.split = p.vec == 1 ? pow2_dividing(d->state_size, tu->scan_split) : 1;
  size_t wg = clamp_workgroup(dev, tu->scan_workgroup);
  if (wg > kernel_max) wg = sm_floor_pow2(kernel_max ? kernel_max : 1);
  p.workgroup = (int)wg;
  if (p.split > p.workgroup) p.split = p.workgroup;
  p.block_tokens = 1;
  if (p.split > 1) {
    size_t block = (size_t)tu->scan_block_tokens;
    while (block > 1 && block * wg > local_floats(dev))
      block /= 2;
    if (block * wg > local_floats(dev)) p.split = 1;
    p.block_tokens = (int)block;
  }
  return p;
}

static void scan_options(const sm_op *op, const scan_plan *p, char *options, size_t size) {
  const sm_scan_desc *d = &op->u.scan;
  char skip[32], bias[32];
  dtype_option(skip, sizeof skip, "SKIP_T", &op->tensors[SM_SCAN_D_SKIP]);
  dtype_option(bias, sizeof bias, "BIAS_T", &op->tensors[SM_SCAN_DELTA_BIAS]);
  snprintf(options, size,
           "-DSELECTIVE_SCAN -DACT=%s -DN=%d -DVEC=%d -DNSPLIT=%d -DWG=%d -DTBLK=%d%s%s%s%s%s",
           seqmix_dtype_name(op->tensors[SM_SCAN_U].dtype), (int)d->state_size, p->vec, p->split,
           p->workgroup, p->block_tokens, skip, bias,
           op->tensors[SM_SCAN_Z].buffer ? " -DHAS_Z" : "",
           op->tensors[SM_SCAN_STATE].buffer ? " -DHAS_STATE" : "",
           d->delta_softplus ? " -DSOFTPLUS" : "");
}

static bool scan_supports(sm_device *dev, const sm_op *op) {
  const sm_scan_desc *d = &op->u.scan;
  if (!act_dtype(op->tensors[SM_SCAN_U].dtype)) return false;
  if (d->state_size < 1 || d->state_size > SCAN_MAX_STATE) return false;
  /* Token and channel indices are int in the kernel. */
  if (d->tokens > INT32_MAX || d->channels > INT32_MAX) return false;
  const int64_t budget = loop_budget(dev);
  if (budget) {
    const scan_plan p = plan_scan(dev, d, SIZE_MAX);
    if (d->tokens * (d->state_size / p.split + 2) + 2 * d->state_size > budget) return false;
  }
  return true;
}

static seqmix_status scan_launch(sm_device *dev, const sm_op *op) {
  const sm_scan_desc *d = &op->u.scan;
  char options[256];
  const sm_cl_kernel *k;
  seqmix_status st;
  /* A kernel may allow fewer work-items than asked: build again for what it allows. */
  scan_plan p = plan_scan(dev, d, SIZE_MAX);
  for (;;) {
    scan_options(op, &p, options, sizeof options);
    if ((st = sm_cl_kernel_get(dev, "ssm.cl", options, "selective_scan", &k))) return st;
    if ((size_t)p.workgroup <= k->max_workgroup_size) break;
    if (p.workgroup == 1)
      return sm_fail(SEQMIX_ERROR_BACKEND, "%s: selective_scan allows no work-item", op->name);
    p = plan_scan(dev, d,
                  k->max_workgroup_size < (size_t)p.workgroup ? k->max_workgroup_size
                                                              : (size_t)p.workgroup / 2);
  }
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_view(dev, &a, &op->tensors[SM_SCAN_U], 2);
  arg_view(dev, &a, &op->tensors[SM_SCAN_DELTA], 2);
  arg_view(dev, &a, &op->tensors[SM_SCAN_A], 1);
  arg_view(dev, &a, &op->tensors[SM_SCAN_B], 3);
  arg_view(dev, &a, &op->tensors[SM_SCAN_C], 3);
  arg_view(dev, &a, &op->tensors[SM_SCAN_D_SKIP], 0);
  arg_view(dev, &a, &op->tensors[SM_SCAN_Z], 2);
  arg_view(dev, &a, &op->tensors[SM_SCAN_DELTA_BIAS], 0);
  arg_view(dev, &a, &op->tensors[SM_SCAN_STATE], 2);
  arg_view(dev, &a, &op->tensors[SM_SCAN_Y], 2);
  sm_cl_arg_int(&a, d->tokens);
  sm_cl_arg_int(&a, d->channels);
  sm_cl_arg_int(&a, d->channels / d->groups);
  if (a.err != CL_SUCCESS) return sm_cl_fail("clSetKernelArg(selective_scan)", a.err);
  const int64_t vectors = d->channels / p.vec, per_group = p.workgroup / p.split;
  const size_t local[2] = {(size_t)p.workgroup, 1};
  const size_t global[2] = {(size_t)sm_div_up(vectors, per_group) * local[0], (size_t)d->batch};
  return sm_cl_enqueue(dev, k, 2, global, local);
}

/* ==== SSD and linear attention ============================================= */

/* The op in linear-attention terms (see the top of this file). */
typedef struct chunk_job {
  const char *name;
  bool ssd, softplus;
  int decay; /* DECAY_*; SSD: per token */
  int64_t batch, tokens, heads, head_div, key_dim, value_dim;
  float scale;
  int32_t chunk_hint; /* 0: the device's default */
  const sm_tensor_ref *q, *k, *v, *g, *out, *state;
  const sm_tensor_ref *a, *skip, *bias, *z; /* SSD only (else NULL) */
  int64_t state_key_stride, state_value_stride;
} chunk_job;

static chunk_job job_of(const sm_op *op) {
  chunk_job j;
  memset(&j, 0, sizeof j);
  j.name = op->name;
  if (op->kind == SM_OP_SSD) {
    const sm_ssd_desc *d = &op->u.ssd;
    const sm_tensor_ref *state = &op->tensors[SM_SSD_STATE];
    j.ssd = true;
    j.softplus = d->dt_softplus;
    j.decay = DECAY_TOKEN;
    j.batch = d->batch, j.tokens = d->tokens, j.heads = d->heads;
    j.head_div = d->heads / d->groups;
    j.key_dim = d->state_size, j.value_dim = d->head_dim;
    j.scale = 1.0f;
    j.chunk_hint = d->chunk_size;
    j.q = &op->tensors[SM_SSD_C], j.k = &op->tensors[SM_SSD_B], j.v = &op->tensors[SM_SSD_X];
    j.g = &op->tensors[SM_SSD_DT], j.out = &op->tensors[SM_SSD_Y], j.state = state;
    j.a = &op->tensors[SM_SSD_A], j.skip = &op->tensors[SM_SSD_D_SKIP];
    j.bias = &op->tensors[SM_SSD_DT_BIAS], j.z = &op->tensors[SM_SSD_Z];
    /* state [B, H, P, N]: (key n, value p) at p * stride + n. */
    j.state_key_stride = 1;
    j.state_value_stride = state->buffer ? state->strides[2] : 0;
  } else {
    const sm_linear_attention_desc *d = &op->u.linear_attention;
    const sm_tensor_ref *state = &op->tensors[SM_LA_STATE];
    j.decay = d->decay == SEQMIX_DECAY_HEAD     ? DECAY_HEAD
              : d->decay == SEQMIX_DECAY_TOKEN  ? DECAY_TOKEN
              : d->decay == SEQMIX_DECAY_VECTOR ? DECAY_VECTOR
                                                : DECAY_NONE;
    j.batch = d->batch, j.tokens = d->tokens, j.heads = d->heads, j.head_div = 1;
    j.key_dim = d->key_dim, j.value_dim = d->value_dim;
    j.scale = d->scale;
    j.chunk_hint = d->chunk_size;
    j.q = &op->tensors[SM_LA_Q], j.k = &op->tensors[SM_LA_K], j.v = &op->tensors[SM_LA_V];
    j.g = &op->tensors[SM_LA_G], j.out = &op->tensors[SM_LA_OUT], j.state = state;
    /* state [B, H, Dk, Dv]: (key c, value v) at c * stride + v. */
    j.state_key_stride = state->buffer ? state->strides[2] : 0;
    j.state_value_stride = 1;
  }
  return j;
}

typedef struct chunk_plan {
  bool recurrent; /* recurrent_scan, else chunk_scan */
  bool key_lanes; /* recurrent_scan: lanes over the key dim, a value column a work-item */
  int vw;         /* lanes a work-item (VW) */
  int chunk;      /* tokens a chunk (CHUNK), a multiple of vw */
  int value_tile; /* value columns a work-group (DVT), a multiple of vw */
  int row_block;  /* RB: divides chunk and the padded key dim */
  int workgroup;  /* WG */
} chunk_plan;

/* chunk_scan's local arrays, in floats (cl/ssm.cl). */
static size_t chunk_footprint(const chunk_job *j, int vw, int64_t chunk, int64_t tile) {
  const int64_t dkp = round_up(j->key_dim, vw);
  int64_t floats = 2 * chunk * dkp + chunk * tile + chunk * chunk + dkp * tile;
  if (j->decay == DECAY_VECTOR)
    floats += 2 * chunk * dkp; /* a as compensated pairs (hi, lo) */
  else if (j->decay != DECAY_NONE)
    floats += 3 * chunk;
  if (j->ssd) floats += chunk;
  return (size_t)floats;
}

/* The loop iterations of one work-item, roughly (llvmpipe's loop budget). */
static int64_t chunk_iterations(const chunk_job *j, const chunk_plan *p) {
  const int64_t dkp = round_up(j->key_dim, p->vw), wg = p->workgroup;
  if (p->recurrent)
    return j->tokens * (j->key_dim + sm_div_up(dkp, wg) + 8) + 2 * j->key_dim * p->vw;
  const int64_t t = p->chunk, tile = p->value_tile, vw = p->vw;
  const int64_t per_chunk = sm_div_up(t * dkp, wg) + sm_div_up(t * tile, wg) + t +
                            sm_div_up(t * t / vw, wg) * dkp + sm_div_up(t * dkp / vw, wg) * vw +
                            sm_div_up(t * tile / vw, wg) * (t + dkp) +
                            sm_div_up(dkp * tile / vw, wg) * t;
  return sm_div_up(j->tokens, t) * per_chunk + 2 * sm_div_up(dkp * tile, wg);
}

/* The plan for a job, false when its tiles cannot fit the device. kernel_max
 * caps the work-group (a kernel that allows fewer work-items than asked). */
static bool plan_chunk(const sm_device *dev, const chunk_job *j, size_t kernel_max, chunk_plan *p) {
  const ssm_tuning *tu = pick_tuning(dev);
  memset(p, 0, sizeof *p);
  p->vw = tu->vector_width;
  size_t wg_limit = clamp_workgroup(dev, tu->chunk_workgroup);
  if (wg_limit > kernel_max) wg_limit = sm_floor_pow2(kernel_max ? kernel_max : 1);
  if (j->tokens <= tu->recurrent_tokens) {
    p->recurrent = true;
    /* SSD stores the state with the key dim contiguous: lanes go over it. */
    p->key_lanes = j->ssd && p->vw > 1;
    const uint64_t columns = p->key_lanes ? (uint64_t)j->value_dim : sm_div_up(j->value_dim, p->vw);
    size_t wg = (size_t)sm_ceil_pow2(columns);
    p->workgroup = (int)(wg < wg_limit ? wg : wg_limit);
    return 3 * (size_t)round_up(j->key_dim, p->vw) <= local_floats(dev);
  }
  const int vw = p->vw;
  int64_t chunk = j->chunk_hint > 0          ? j->chunk_hint
                  : j->decay == DECAY_VECTOR ? tu->chunk_tokens_vector
                                             : tu->chunk_tokens;
  chunk = chunk < CHUNK_MIN_HINT     ? CHUNK_MIN_HINT
          : chunk > CHUNK_MAX_TOKENS ? CHUNK_MAX_TOKENS
                                     : chunk;
  chunk = round_up(chunk, vw);
  const int64_t all_columns = round_up(j->value_dim, vw);
  int64_t tile = tu->value_tile > 0 ? round_up(tu->value_tile, vw) : all_columns;
  if (tile > all_columns) tile = all_columns;
  /* Narrower value tiles first (down to 16 columns), then shorter chunks. */
  const size_t budget = local_floats(dev);
  while (chunk_footprint(j, vw, chunk, tile) > budget) {
    if (tile > 16 && tile > vw)
      tile = round_up(tile / 2, vw);
    else if (chunk > vw && chunk > CHUNK_MIN_TOKENS)
      chunk = round_up(chunk / 2 > CHUNK_MIN_TOKENS ? chunk / 2 : CHUNK_MIN_TOKENS, vw);
    else if (tile > vw)
      tile = vw;
    else
      return false;
  }
  p->chunk = (int)chunk;
  p->value_tile = (int)tile;
  p->row_block = pow2_dividing(chunk, pow2_dividing(round_up(j->key_dim, vw), tu->row_block));
  p->workgroup = (int)wg_limit;
  return true;
}

static void chunk_options(const chunk_job *j, const chunk_plan *p, char *options, size_t size) {
  char skip[32] = "", bias[32] = "", tiles[48] = "";
  if (j->ssd) {
    dtype_option(skip, sizeof skip, "SKIP_T", j->skip);
    dtype_option(bias, sizeof bias, "BIAS_T", j->bias);
  }
  if (!p->recurrent)
    snprintf(tiles, sizeof tiles, " -DCHUNK=%d -DDVT=%d -DRB=%d", p->chunk, p->value_tile,
             p->row_block);
  if (p->key_lanes) snprintf(tiles, sizeof tiles, " -DKEY_LANES");
  snprintf(options, size, "-D%s -DACT=%s -DDK=%d -DVW=%d -DWG=%d -DDECAY=%d%s%s%s%s%s%s%s",
           p->recurrent ? "RECURRENT_SCAN" : "CHUNK_SCAN", seqmix_dtype_name(j->q->dtype),
           (int)j->key_dim, p->vw, p->workgroup, j->decay, tiles, j->ssd ? " -DSSD" : "", skip,
           bias, j->ssd && j->z->buffer ? " -DHAS_Z" : "",
           j->ssd && j->softplus ? " -DSOFTPLUS" : "", j->state->buffer ? " -DHAS_STATE" : "");
}

static bool chunk_supports(sm_device *dev, const sm_op *op) {
  const chunk_job j = job_of(op);
  if (!act_dtype(j.q->dtype)) return false;
  if (j.key_dim < 1 || j.key_dim > CHUNK_MAX_KEY_DIM || j.value_dim < 1) return false;
  /* Token, head and column indices are int in the kernels. */
  if (j.tokens > INT32_MAX - CHUNK_MAX_TOKENS || j.value_dim > INT32_MAX / 2 ||
      j.batch * j.heads > INT32_MAX)
    return false;
  chunk_plan p;
  if (!plan_chunk(dev, &j, SIZE_MAX, &p)) return false;
  const int64_t budget = loop_budget(dev);
  return !budget || chunk_iterations(&j, &p) <= budget;
}

/* g's view as the kernels index it: per head, g + h; per token, g + b s0 + t s1 + h;
 * per key channel, g + b s0 + t s1 + h s2 + c. */
static void arg_decay(sm_device *dev, sm_cl_args *a, const chunk_job *j) {
  const sm_tensor_ref *g = j->g;
  const bool rows = g->buffer && (j->decay == DECAY_TOKEN || j->decay == DECAY_VECTOR);
  sm_cl_arg_buffer(dev, a, g->buffer);
  sm_cl_arg_long(a, g->buffer ? g->offset : 0);
  sm_cl_arg_long(a, rows ? g->strides[0] : 0);
  sm_cl_arg_long(a, rows ? g->strides[1] : 0);
  sm_cl_arg_long(a, rows && j->decay == DECAY_VECTOR ? g->strides[2] : 0);
}

static seqmix_status chunk_launch(sm_device *dev, const sm_op *op) {
  const chunk_job j = job_of(op);
  const char *kernel_name;
  char options[320];
  const sm_cl_kernel *k;
  chunk_plan p;
  seqmix_status st;
  if (!plan_chunk(dev, &j, SIZE_MAX, &p))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: tiles do not fit the device", j.name);
  for (;;) {
    kernel_name = p.recurrent ? "recurrent_scan" : "chunk_scan";
    chunk_options(&j, &p, options, sizeof options);
    if ((st = sm_cl_kernel_get(dev, "ssm.cl", options, kernel_name, &k))) return st;
    if ((size_t)p.workgroup <= k->max_workgroup_size) break;
    if (p.workgroup == 1)
      return sm_fail(SEQMIX_ERROR_BACKEND, "%s: %s allows no work-item", j.name, kernel_name);
    const size_t cap = k->max_workgroup_size < (size_t)p.workgroup ? k->max_workgroup_size
                                                                   : (size_t)p.workgroup / 2;
    if (!plan_chunk(dev, &j, cap, &p))
      return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: tiles do not fit the device", j.name);
  }
  const sm_tensor_ref absent = {0};
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_view(dev, &a, j.q, 3);
  arg_view(dev, &a, j.k, 3);
  arg_view(dev, &a, j.v, 3);
  arg_decay(dev, &a, &j);
  arg_view(dev, &a, j.ssd ? j.a : &absent, 0);
  arg_view(dev, &a, j.ssd ? j.skip : &absent, 0);
  arg_view(dev, &a, j.ssd ? j.bias : &absent, 0);
  arg_view(dev, &a, j.ssd ? j.z : &absent, 3);
  arg_view(dev, &a, j.state, 2);
  sm_cl_arg_long(&a, j.state_key_stride);
  sm_cl_arg_long(&a, j.state_value_stride);
  arg_view(dev, &a, j.out, 3);
  sm_cl_arg_int(&a, j.tokens);
  sm_cl_arg_int(&a, j.heads);
  sm_cl_arg_int(&a, j.head_div);
  sm_cl_arg_int(&a, j.value_dim);
  sm_cl_arg_float(&a, j.scale);
  if (a.err != CL_SUCCESS) {
    char call[64];
    snprintf(call, sizeof call, "clSetKernelArg(%s)", kernel_name);
    return sm_cl_fail(call, a.err);
  }
  const int64_t columns_per_group = !p.recurrent  ? p.value_tile
                                    : p.key_lanes ? p.workgroup
                                                  : (int64_t)p.workgroup * p.vw;
  const size_t local[2] = {(size_t)p.workgroup, 1};
  const size_t global[2] = {(size_t)sm_div_up(j.value_dim, columns_per_group) * local[0],
                            (size_t)(j.batch * j.heads)};
  return sm_cl_enqueue(dev, k, 2, global, local);
}

/* ==== Entry points ========================================================= */

bool sm_cl_ssm_supports(sm_device *dev, const sm_op *op) {
  if (!sm_cl_can_build(dev)) return false; /* no compiler and no binary directory */
  switch (op->kind) {
  case SM_OP_SELECTIVE_SCAN: return scan_supports(dev, op);
  case SM_OP_SSD:
  case SM_OP_LINEAR_ATTENTION: return chunk_supports(dev, op);
  default: return false;
  }
}

seqmix_status sm_cl_ssm_launch(sm_device *dev, const sm_op *op) {
  cl_mem placeholder;
  seqmix_status st;
  /* Absent tensors bind a placeholder buffer: make it before any argument. */
  if ((st = sm_cl_dummy_buffer(dev, &placeholder))) return st;
  return op->kind == SM_OP_SELECTIVE_SCAN ? scan_launch(dev, op) : chunk_launch(dev, op);
}

/* ==== Offline variants ====================================================== */

/* The selective-scan variants: per dtype and state size of the sink, every
 * vector width the channels of a group can give, every optional input and
 * flag, following scan_launch's shrink loop. */
static void scan_variants(sm_device *dev, sm_cl_variant_sink *sink, seqmix_dtype act) {
  const seqmix_compile_options *o = sm_cl_sink_options(sink);
  const ssm_tuning *tu = pick_tuning(dev);
  char options[256];
  for (int s = 0; s < o->state_size_count; ++s) {
    if (o->state_sizes[s] > SCAN_MAX_STATE) continue;
    for (int per_group = 1; per_group <= tu->vector_width; per_group *= 2)
      for (int skip = 0; skip < 3; ++skip) /* absent, f32, the activations' dtype */
        for (int bias = 0; bias < 3; ++bias)
          for (int flags = 0; flags < 8; ++flags) {
            sm_op op;
            memset(&op, 0, sizeof op);
            op.kind = SM_OP_SELECTIVE_SCAN;
            sm_scan_desc *d = &op.u.scan;
            d->channels = per_group, d->groups = 1, d->state_size = o->state_sizes[s];
            d->delta_softplus = flags & 4;
            op.tensors[SM_SCAN_U].dtype = act;
            op.tensors[SM_SCAN_D_SKIP].buffer = skip ? &sm_cl_present : NULL;
            op.tensors[SM_SCAN_D_SKIP].dtype = skip == 2 ? act : SEQMIX_F32;
            op.tensors[SM_SCAN_DELTA_BIAS].buffer = bias ? &sm_cl_present : NULL;
            op.tensors[SM_SCAN_DELTA_BIAS].dtype = bias == 2 ? act : SEQMIX_F32;
            op.tensors[SM_SCAN_Z].buffer = flags & 1 ? &sm_cl_present : NULL;
            op.tensors[SM_SCAN_STATE].buffer = flags & 2 ? &sm_cl_present : NULL;
            scan_plan p = plan_scan(dev, d, SIZE_MAX);
            for (;;) {
              scan_options(&op, &p, options, sizeof options);
              const size_t limit = sm_cl_emit(sink, "ssm.cl", options, "selective_scan");
              if ((size_t)p.workgroup <= limit || p.workgroup == 1) break;
              p = plan_scan(dev, d, limit < (size_t)p.workgroup ? limit : (size_t)p.workgroup / 2);
            }
          }
  }
}

/* One job's variants: the recurrent kernel (a call of one token) and the
 * chunked one (one token past the recurrent limit) for each chunk hint,
 * following chunk_launch's shrink loop. */
static void job_variants(sm_device *dev, sm_cl_variant_sink *sink, chunk_job *j) {
  const seqmix_compile_options *o = sm_cl_sink_options(sink);
  const ssm_tuning *tu = pick_tuning(dev);
  char options[320];
  for (int recurrent = 1; recurrent >= 0; --recurrent)
    for (int h = -1; h < (recurrent ? 0 : o->chunk_size_count); ++h) {
      j->tokens = recurrent ? 1 : tu->recurrent_tokens + 1;
      j->chunk_hint = h < 0 ? 0 : o->chunk_sizes[h];
      chunk_plan p;
      if (!plan_chunk(dev, j, SIZE_MAX, &p)) continue;
      for (;;) {
        chunk_options(j, &p, options, sizeof options);
        const size_t limit =
            sm_cl_emit(sink, "ssm.cl", options, p.recurrent ? "recurrent_scan" : "chunk_scan");
        if ((size_t)p.workgroup <= limit || p.workgroup == 1) break;
        const size_t cap = limit < (size_t)p.workgroup ? limit : (size_t)p.workgroup / 2;
        if (!plan_chunk(dev, j, cap, &p)) break;
      }
    }
}

/* SSD (N from the sink's state sizes, P from its head dims) and linear
 * attention (Dk = Dv from the head dims) with every decay kind, optional
 * input and flag. */
static void chunk_variants(sm_device *dev, sm_cl_variant_sink *sink, seqmix_dtype act) {
  const seqmix_compile_options *o = sm_cl_sink_options(sink);
  sm_tensor_ref q = {.dtype = act}, state = {0}, skip = {0}, bias = {0}, z = {0}, none = {0};
  for (int hd = 0; hd < o->head_dim_count; ++hd) {
    for (int s = 0; s < o->state_size_count; ++s)
      for (int kinds = 0; kinds < 3 * 3; ++kinds) { /* absent, f32, the activations' dtype */
        const int skip_kind = kinds / 3, bias_kind = kinds % 3;
        chunk_job j;
        memset(&j, 0, sizeof j);
        j.ssd = true, j.decay = DECAY_TOKEN, j.head_div = 1, j.batch = 1, j.heads = 1;
        j.key_dim = o->state_sizes[s], j.value_dim = o->head_dims[hd], j.scale = 1.0f;
        if (j.key_dim > CHUNK_MAX_KEY_DIM) continue;
        skip = (sm_tensor_ref){.buffer = skip_kind ? &sm_cl_present : NULL,
                               .dtype = skip_kind == 2 ? act : SEQMIX_F32};
        bias = (sm_tensor_ref){.buffer = bias_kind ? &sm_cl_present : NULL,
                               .dtype = bias_kind == 2 ? act : SEQMIX_F32};
        j.q = j.k = j.v = j.g = j.out = &q;
        j.a = &none, j.skip = &skip, j.bias = &bias, j.z = &z;
        for (int rest = 0; rest < 8; ++rest) {
          z.buffer = rest & 1 ? &sm_cl_present : NULL;
          state.buffer = rest & 2 ? &sm_cl_present : NULL;
          j.softplus = rest & 4;
          j.state = &state;
          job_variants(dev, sink, &j);
        }
      }
    for (int decay = DECAY_NONE; decay <= DECAY_VECTOR; ++decay)
      for (int has_state = 0; has_state < 2; ++has_state) {
        chunk_job j;
        memset(&j, 0, sizeof j);
        j.decay = decay, j.head_div = 1, j.batch = 1, j.heads = 1;
        j.key_dim = j.value_dim = o->head_dims[hd], j.scale = 1.0f;
        if (j.key_dim > CHUNK_MAX_KEY_DIM) continue;
        state.buffer = has_state ? &sm_cl_present : NULL;
        j.q = j.k = j.v = j.g = j.out = &q;
        j.state = &state;
        job_variants(dev, sink, &j);
      }
  }
}

void sm_cl_ssm_variants(sm_device *dev, sm_cl_variant_sink *sink) {
  seqmix_dtype acts[3];
  const int act_count = sm_cl_sink_dtypes(sink, acts);
  for (int a = 0; a < act_count; ++a) {
    scan_variants(dev, sink, acts[a]);
    chunk_variants(dev, sink, acts[a]);
  }
}
