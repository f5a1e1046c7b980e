/*
 * SM_OP_ATTENTION and SM_OP_ATTENTION_MERGE on OpenCL (cl/attention.cl).
 *
 * attn_fwd runs work-groups of WG rows, a row being (query token, q head of
 * the GQA group), over key blocks of BK keys staged in local memory. When the
 * (row block, sequence, k head) work-groups are too few to fill the device,
 * the keys are split into chunks across work-groups (dim 2); each writes a
 * partial (out, lse) to a scratch buffer and attn_combine merges them. The
 * public merge is attn_merge, one variant per part count.
 *
 * Head dims, block sizes and the work-group size are build options, so each
 * (dtype, D, Dv, flags) combination is its own program variant.
 */
#include "backend/opencl/opencl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ATTN_MAX_HEAD_DIM = 256 };
/* The key-parallel kernel: rows a work-group at most, work-items. */
enum { KEYPAR_MAX_ROWS = 16, KEYPAR_WORKGROUP = 128 };

/* Tunables, first matching row wins: rows a work-group (upper bound; fewer
 * rows get the next power of two), keys a block, work-groups per compute unit
 * the key split aims for. */
typedef struct attn_tuning {
  seqmix_device_kind kind;
  int workgroup, block_keys, groups_per_unit, vector_width;
  int key_parallel; /* rows a (sequence, k head) up to which the key-parallel kernel runs */
} attn_tuning;

static const attn_tuning tunings[] = {
    /* PoCL / llvmpipe: a work-group is one task of a worker thread; it
     * vectorises across work-items. */
    {SEQMIX_DEVICE_SOFTWARE, 64, 32, 4, 16, 0},
    {SEQMIX_DEVICE_CPU, 64, 32, 4, 16, 0},
    /* GPUs: decode and other few-row calls spread keys, not rows, over the
     * work-items (a row a work-item left 4 of 64 busy at Lq 1, GQA 4). */
    {SEQMIX_DEVICE_DISCRETE_GPU, 64, 32, 4, 4, KEYPAR_MAX_ROWS},
    {SEQMIX_DEVICE_INTEGRATED_GPU, 64, 32, 4, 4, KEYPAR_MAX_ROWS},
};
static const attn_tuning default_tuning = {SEQMIX_DEVICE_ACCELERATOR, 64, 16, 2, 4, 0};

static const attn_tuning *pick_tuning(const sm_device *dev) {
  for (size_t i = 0; i < sizeof tunings / sizeof tunings[0]; ++i)
    if (tunings[i].kind == dev->info.kind) return &tunings[i];
  return &default_tuning;
}

static cl_ulong device_ulong(const sm_device *dev, cl_device_info what, cl_ulong fallback) {
  cl_ulong v = 0;
  if (clGetDeviceInfo(dev->device, what, sizeof v, &v, NULL) != CL_SUCCESS || v == 0)
    return fallback;
  return v;
}

static cl_uint device_uint(const sm_device *dev, cl_device_info what, cl_uint fallback) {
  cl_uint v = 0;
  if (clGetDeviceInfo(dev->device, what, sizeof v, &v, NULL) != CL_SUCCESS || v == 0)
    return fallback;
  return v;
}

static bool act_dtype(seqmix_dtype dt) {
  return dt == SEQMIX_F32 || dt == SEQMIX_F16 || dt == SEQMIX_BF16;
}

/* Keys a block: K and V tiles in at most half the local memory. */
static size_t block_keys(const sm_device *dev, int64_t D, int64_t Dv) {
  const cl_ulong local_bytes = device_ulong(dev, CL_DEVICE_LOCAL_MEM_SIZE, 16384);
  size_t bk = (size_t)pick_tuning(dev)->block_keys;
  while (bk > 1 && bk * (size_t)(D + Dv) * sizeof(float) > local_bytes / 2)
    bk /= 2;
  return bk;
}

/* llvmpipe (rusticl) ends every loop of a work-item after 65535 iterations in
 * all (gallivm's loop limiter), silently: a work-group's key chunk is kept
 * within that budget by splitting the keys. 0: no limit. */
static int64_t loop_budget(const sm_device *dev) {
  return strstr(dev->info.name, "llvmpipe") ? 60000 : 0;
}

/* The most keys one work-group may visit (a multiple of the block). */
static int64_t max_chunk_keys(const sm_device *dev, int64_t D, int64_t Dv, size_t bk) {
  const int64_t budget = loop_budget(dev);
  if (!budget) return INT64_MAX;
  /* Per key: the dot product, the value update, the tile loads (at most one
   * element each), the softmax; per row: q, acc and the stores. */
  const int64_t per_key = 2 * (D + Dv) + 4, fixed = 2 * (D + 2 * Dv) + 64;
  const int64_t keys = budget > fixed ? (budget - fixed) / per_key : 0;
  return keys / (int64_t)bk * (int64_t)bk;
}

/* Whether the key split a device with a loop budget needs stays within it,
 * attn_combine's loops included. */
static bool within_loop_budget(const sm_device *dev, const sm_attention_desc *d) {
  const int64_t budget = loop_budget(dev);
  if (!budget) return true;
  const int64_t chunk =
      max_chunk_keys(dev, d->head_dim, d->v_head_dim, block_keys(dev, d->head_dim, d->v_head_dim));
  if (chunk < 1) return false;
  const int64_t splits = sm_div_up(d->max_k_len, chunk);
  return splits * (d->v_head_dim + 3) + 64 <= budget;
}

bool sm_cl_attention_supports(sm_device *dev, const sm_op *op) {
  if (!sm_cl_can_build(dev)) return false; /* no compiler and no binary directory */
  if (op->kind == SM_OP_ATTENTION) {
    const sm_attention_desc *d = &op->u.attention;
    if (!act_dtype(op->tensors[SM_ATTN_Q].dtype)) return false;
    if (d->head_dim < 1 || d->head_dim > ATTN_MAX_HEAD_DIM || d->v_head_dim < 1 ||
        d->v_head_dim > ATTN_MAX_HEAD_DIM)
      return false;
    if (d->varlen && (!d->cu_q || !d->cu_k)) return false;
    if (op->tensors[SM_ATTN_SEQUSED_K].buffer && !d->seqused_k) return false;
    /* Token, row and head indices are int in the kernel. */
    const int64_t group = d->q_heads / d->k_heads;
    if (d->batch > INT32_MAX / 4 || d->q_tokens > INT32_MAX || d->k_tokens > INT32_MAX ||
        d->max_q_len * group > INT32_MAX / 2 || d->batch * d->k_heads > INT32_MAX ||
        d->q_heads > INT32_MAX)
      return false;
    return within_loop_budget(dev, d);
  }
  if (op->kind == SM_OP_ATTENTION_MERGE) {
    const sm_merge_desc *d = &op->u.merge;
    if (d->parts < 1 || d->parts > SM_MERGE_MAX_PARTS) return false;
    if (!act_dtype(op->tensors[SM_MERGE_OUT].dtype) ||
        !act_dtype(op->tensors[SM_MERGE_FIRST_PART].dtype))
      return false;
    for (int p = 1; p < d->parts; ++p)
      if (op->tensors[SM_MERGE_FIRST_PART + 2 * p].dtype != op->tensors[SM_MERGE_FIRST_PART].dtype)
        return false;
    if (d->q_tokens > INT32_MAX || d->q_heads > INT32_MAX || d->v_head_dim > INT32_MAX)
      return false;
    return true;
  }
  return false;
}

/* buffer, offset, then `strides` strides (zeros for an absent tensor). */
static void arg_view(sm_device *dev, sm_cl_args *a, const sm_tensor_ref *r, int strides) {
  sm_cl_arg_buffer(dev, a, r->buffer);
  sm_cl_arg_long(a, r->buffer ? r->offset : 0);
  for (int i = 0; i < strides; ++i)
    sm_cl_arg_long(a, r->buffer ? r->strides[i] : 0);
}

static void arg_mem(sm_cl_args *a, sm_buffer *buf) { sm_cl_arg(a, sizeof buf->mem, &buf->mem); }

/* One attn_fwd program variant: everything its build options name. */
typedef struct attn_fwd_variant {
  seqmix_dtype dtype;
  int64_t head_dim, v_head_dim;
  int vec;                 /* VEC: elements of a row a work-item loads at once */
  size_t block_keys;       /* BK */
  size_t workgroup;        /* WG: rows (keys for the key-parallel kernel) a work-group */
  bool keypar;             /* the key-parallel kernel, with keypar_rows rows (R) */
  size_t keypar_rows;
  bool contig, causal, sigmoid, softcap, split;
} attn_fwd_variant;

/* The kernel, work-group and tiles for rows_per_seq rows of a (sequence, k
 * head); the score flags and the split are left false for the caller. */
static attn_fwd_variant plan_attn_fwd(const sm_device *dev, seqmix_dtype dtype, int64_t D,
                                      int64_t Dv, int64_t rows_per_seq, bool contig) {
  const attn_tuning *tuning = pick_tuning(dev);
  attn_fwd_variant v;
  memset(&v, 0, sizeof v);
  v.dtype = dtype, v.head_dim = D, v.v_head_dim = Dv, v.contig = contig;
  /* Kernel: key-parallel for few rows where tuned (SEQMIX_OPENCL_ATTENTION=keys
   * or rows forces one), else a row a work-item. */
  bool keypar = tuning->key_parallel > 0 && rows_per_seq <= tuning->key_parallel;
  if (dev->attention_kernel == SM_CL_ATTENTION_KEYS) keypar = rows_per_seq <= KEYPAR_MAX_ROWS;
  if (dev->attention_kernel == SM_CL_ATTENTION_ROWS) keypar = false;
  /* Mesa rusticl 22.3 (llvmpipe) gets the key-parallel kernel wrong for head
   * dims of 128 and 256 (PoCL, NVIDIA and oclgrind agree with the reference):
   * the row kernel serves rusticl, even when the key kernel is forced. */
  if (strstr(dev->info.driver, "rusticl")) keypar = false;
  const size_t local_floats = device_ulong(dev, CL_DEVICE_LOCAL_MEM_SIZE, 16384) / sizeof(float);
  size_t wg = 1, kp_rows = 0;
  if (keypar) {
    /* R rows (a power of two), WG keys a block: q rows and two R x WG tiles in local memory. */
    kp_rows = sm_ceil_pow2((size_t)(rows_per_seq > 0 ? rows_per_seq : 1));
    wg = KEYPAR_WORKGROUP;
    if (wg > dev->caps.max_workgroup_size) wg = sm_floor_pow2(dev->caps.max_workgroup_size);
    while (wg > 1 && kp_rows * ((size_t)D + 2 * wg) > local_floats)
      wg /= 2;
    if (kp_rows * ((size_t)D + 2 * wg) > local_floats) keypar = false, kp_rows = 0;
  }
  if (!keypar) {
    /* A row a work-item: the tuned size, fewer for few rows; within the device limit. */
    wg = sm_ceil_pow2((size_t)rows_per_seq);
    if (wg > (size_t)tuning->workgroup) wg = (size_t)tuning->workgroup;
    if (wg > dev->caps.max_workgroup_size) wg = sm_floor_pow2(dev->caps.max_workgroup_size);
    if (wg < 1) wg = 1;
  }
  v.keypar = keypar, v.keypar_rows = kp_rows, v.workgroup = wg;
  v.block_keys = block_keys(dev, D, Dv);
  /* Vector width of a work-item's rows: the widest of 16, 8, 4, 2 dividing D
   * and Dv within the tuned limit. */
  int vec = tuning->vector_width;
  while (vec > 1 && (D % vec || Dv % vec))
    vec /= 2;
  v.vec = vec;
  return v;
}

/* A kernel may allow fewer work-items than asked (registers, private
 * memory): the next work-group to build for. */
static size_t shrink_workgroup(size_t wg, size_t kernel_max) {
  return sm_floor_pow2(kernel_max < wg ? kernel_max : wg / 2);
}

static void attn_fwd_options(const attn_fwd_variant *v, char *options, size_t size) {
  char keypar_opts[32] = "";
  if (v->keypar) snprintf(keypar_opts, sizeof keypar_opts, " -DKEYPAR -DR=%d", (int)v->keypar_rows);
  snprintf(options, size, "-DACT=%s -DD=%d -DDV=%d -DVEC=%d -DBK=%d -DWG=%d%s%s%s%s%s%s",
           seqmix_dtype_name(v->dtype), (int)v->head_dim, (int)v->v_head_dim, v->vec,
           (int)v->block_keys, (int)v->workgroup, v->contig ? " -DCONTIG" : "",
           v->causal ? " -DCAUSAL" : "", v->sigmoid ? " -DSIGMOID" : "",
           v->softcap ? " -DSOFTCAP" : "", v->split ? " -DSPLIT" : "", keypar_opts);
}

static void merge_options(seqmix_dtype out, seqmix_dtype part, int parts, char *options,
                          size_t size) {
  snprintf(options, size, "-DMERGE -DACT=%s -DPART=%s -DNPARTS=%d", seqmix_dtype_name(out),
           seqmix_dtype_name(part), parts);
}

static seqmix_status attention_launch(sm_device *dev, const sm_op *op) {
  const sm_attention_desc *d = &op->u.attention;
  const attn_tuning *tuning = pick_tuning(dev);
  const seqmix_dtype dt = op->tensors[SM_ATTN_Q].dtype;
  const int64_t group = d->q_heads / d->k_heads;
  const int64_t D = d->head_dim, Dv = d->v_head_dim;
  const int64_t total_q = d->varlen ? d->q_tokens : d->batch * d->q_tokens;
  const bool has_used = op->tensors[SM_ATTN_SEQUSED_K].buffer != NULL;
  seqmix_status st;
  cl_mem placeholder;
  if ((st = sm_cl_dummy_buffer(dev, &placeholder))) return st;
  if (total_q == 0) return SEQMIX_OK;

  attn_fwd_variant v =
      plan_attn_fwd(dev, dt, D, Dv, d->max_q_len * group,
                    op->tensors[SM_ATTN_K].strides[3] == 1 && op->tensors[SM_ATTN_V].strides[3] == 1);
  v.causal = d->causal, v.sigmoid = d->sigmoid, v.softcap = d->softcap > 0;
  const bool keypar = v.keypar;
  const size_t bk = v.block_keys, kp_rows = v.keypar_rows;
  const int64_t rows_per_seq = d->max_q_len * group;
  const int64_t max_chunk = max_chunk_keys(dev, D, Dv, keypar ? v.workgroup : bk);
  /* A kernel may allow fewer work-items than asked (registers, private
   * memory): build again for what it allows. */
  int64_t row_blocks, splits, chunk;
  char options[256];
  const sm_cl_kernel *k;
  for (;;) {
    /* Keys a block; rows a work-group. */
    const int64_t kb = keypar ? (int64_t)v.workgroup : (int64_t)bk;
    row_blocks = sm_div_up(rows_per_seq, keypar ? (int64_t)kp_rows : (int64_t)v.workgroup);
    const int64_t groups = row_blocks * d->batch * d->k_heads;
    /* Key split: enough work-groups for every compute unit, chunks of >= 4
     * blocks (2 for the key-parallel kernel's blocks of WG keys). */
    const int64_t min_blocks = keypar ? 2 : 4;
    const int64_t units = device_uint(dev, CL_DEVICE_MAX_COMPUTE_UNITS, 1);
    const int64_t target =
        units * sm_knob_or(op, SM_KNOB_CL_ATTN_GROUPS_PER_UNIT, tuning->groups_per_unit);
    splits = 1, chunk = d->max_k_len > 0 ? d->max_k_len : 1;
    if (groups < target && d->max_k_len >= 2 * min_blocks * kb) {
      splits = sm_div_up(target, groups);
      const int64_t max_splits = d->max_k_len / (min_blocks * kb);
      if (splits > max_splits) splits = max_splits;
      if (splits > 1) {
        chunk = sm_div_up(sm_div_up(d->max_k_len, splits), kb) * kb;
        splits = sm_div_up(d->max_k_len, chunk);
      }
      if (splits <= 1) splits = 1, chunk = d->max_k_len;
    }
    if (chunk > max_chunk) {
      chunk = max_chunk;
      splits = sm_div_up(d->max_k_len, chunk);
    }
    if (chunk < 1) chunk = 1;
    v.split = splits > 1;
    attn_fwd_options(&v, options, sizeof options);
    if ((st = sm_cl_kernel_get(dev, "attention.cl", options, "attn_fwd", &k))) return st;
    if (v.workgroup <= k->max_workgroup_size) break;
    if (v.workgroup == 1)
      return sm_fail(SEQMIX_ERROR_BACKEND, "%s: attn_fwd allows no work-item", op->name);
    v.workgroup = shrink_workgroup(v.workgroup, k->max_workgroup_size);
  }
  const size_t wg = v.workgroup;

  /* Sequence offsets and key counts, packed (the host copies are current). */
  sm_buffer *idx = NULL, *part = NULL, *part_lse = NULL;
  if (d->varlen || has_used) {
    const int64_t n = d->batch, count = 3 * n + 2;
    cl_int *host = calloc((size_t)count, sizeof *host);
    if (!host) return sm_fail(SEQMIX_ERROR_OUT_OF_MEMORY, "opencl backend: out of host memory");
    for (int64_t b = 0; b <= n && d->varlen; ++b)
      host[b] = d->cu_q[b], host[n + 1 + b] = d->cu_k[b];
    for (int64_t b = 0; b < n && has_used; ++b)
      host[2 * n + 2 + b] = d->seqused_k[b];
    st = sm_cl_alloc(dev, (size_t)count * sizeof *host, &idx);
    if (!st) st = sm_cl_write(dev, idx, 0, host, (size_t)count * sizeof *host);
    free(host);
    if (st) goto done;
  }
  const int64_t part_rows = total_q * d->q_heads;
  if (splits > 1 &&
      ((st = sm_cl_alloc(dev, (size_t)(splits * part_rows * Dv) * sizeof(float), &part)) ||
       (st = sm_cl_alloc(dev, (size_t)(splits * part_rows) * sizeof(float), &part_lse))))
    goto done;

  const sm_tensor_ref *lse = &op->tensors[SM_ATTN_LSE];
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_view(dev, &a, &op->tensors[SM_ATTN_Q], 4);
  arg_view(dev, &a, &op->tensors[SM_ATTN_K], 4);
  arg_view(dev, &a, &op->tensors[SM_ATTN_V], 4);
  arg_view(dev, &a, &op->tensors[SM_ATTN_OUT], 4);
  arg_view(dev, &a, lse, 3);
  sm_cl_arg_int(&a, lse->buffer != NULL);
  sm_cl_arg_buffer(dev, &a, idx);
  sm_cl_arg_int(&a, d->varlen);
  sm_cl_arg_int(&a, has_used);
  sm_cl_arg_int(&a, d->q_tokens);
  sm_cl_arg_int(&a, d->k_tokens);
  sm_cl_arg_int(&a, d->q_heads);
  sm_cl_arg_int(&a, group);
  sm_cl_arg_float(&a, d->scale);
  sm_cl_arg_float(&a, d->softcap > 0 ? d->softcap : 1.0f);
  sm_cl_arg_float(&a, d->sigmoid_bias);
  sm_cl_arg_int(&a, d->causal ? d->window : 0);
  sm_cl_arg_int(&a, chunk);
  sm_cl_arg_buffer(dev, &a, part);
  sm_cl_arg_buffer(dev, &a, part_lse);
  sm_cl_arg_long(&a, part_rows);
  if (a.err != CL_SUCCESS) {
    st = sm_cl_fail("clSetKernelArg(attn_fwd)", a.err);
    goto done;
  }
  {
    const size_t local[3] = {wg, 1, 1};
    const size_t global[3] = {(size_t)row_blocks * wg, (size_t)(d->batch * d->k_heads),
                              (size_t)splits};
    if ((st = sm_cl_enqueue(dev, k, 3, global, local))) goto done;
  }
  if (splits > 1) {
    const sm_cl_kernel *c;
    if ((st = sm_cl_kernel_get(dev, "attention.cl", options, "attn_combine", &c))) goto done;
    sm_cl_args b = {c->kernel, 0, CL_SUCCESS};
    arg_mem(&b, part);
    arg_mem(&b, part_lse);
    sm_cl_arg_long(&b, part_rows);
    sm_cl_arg_int(&b, splits);
    arg_view(dev, &b, &op->tensors[SM_ATTN_OUT], 4);
    arg_view(dev, &b, lse, 3);
    sm_cl_arg_int(&b, lse->buffer != NULL);
    sm_cl_arg_int(&b, d->q_heads);
    sm_cl_arg_int(&b, d->varlen ? total_q : d->q_tokens);
    if (b.err != CL_SUCCESS) {
      st = sm_cl_fail("clSetKernelArg(attn_combine)", b.err);
      goto done;
    }
    size_t cwg = 64;
    if (cwg > c->max_workgroup_size) cwg = sm_floor_pow2(c->max_workgroup_size);
    const size_t local[1] = {cwg};
    const size_t global[1] = {(size_t)sm_div_up(part_rows, (int64_t)cwg) * cwg};
    st = sm_cl_enqueue(dev, c, 1, global, local);
  }
done:
  /* Released now, freed by the runtime once the queued kernels are done. */
  sm_cl_free(dev, idx);
  sm_cl_free(dev, part);
  sm_cl_free(dev, part_lse);
  return st;
}

static void table_entry(cl_long *e, const sm_tensor_ref *out, const sm_tensor_ref *lse) {
  e[0] = out->offset;
  for (int i = 0; i < 4; ++i)
    e[1 + i] = out->strides[i];
  e[5] = lse->buffer ? lse->offset : 0;
  for (int i = 0; i < 3; ++i)
    e[6 + i] = lse->buffer ? lse->strides[i] : 0;
}

static seqmix_status merge_launch(sm_device *dev, const sm_op *op) {
  const sm_merge_desc *d = &op->u.merge;
  const int parts = d->parts;
  const int64_t rows = d->batch * d->q_tokens * d->q_heads;
  seqmix_status st;
  cl_mem placeholder;
  if ((st = sm_cl_dummy_buffer(dev, &placeholder))) return st;
  if (rows == 0) return SEQMIX_OK;
  char options[128];
  merge_options(op->tensors[SM_MERGE_OUT].dtype, op->tensors[SM_MERGE_FIRST_PART].dtype, parts,
                options, sizeof options);
  const sm_cl_kernel *k;
  if ((st = sm_cl_kernel_get(dev, "attention.cl", options, "attn_merge", &k))) return st;
  cl_long table[(SM_MERGE_MAX_PARTS + 1) * 9];
  for (int p = 0; p < parts; ++p)
    table_entry(table + p * 9, &op->tensors[SM_MERGE_FIRST_PART + 2 * p],
                &op->tensors[SM_MERGE_FIRST_PART + 2 * p + 1]);
  table_entry(table + parts * 9, &op->tensors[SM_MERGE_OUT], &op->tensors[SM_MERGE_LSE]);
  sm_buffer *tab = NULL;
  const size_t tab_bytes = (size_t)(parts + 1) * 9 * sizeof(cl_long);
  if ((st = sm_cl_alloc(dev, tab_bytes, &tab)) || (st = sm_cl_write(dev, tab, 0, table, tab_bytes)))
    goto done;
  sm_cl_args a = {k->kernel, 0, CL_SUCCESS};
  arg_mem(&a, tab);
  sm_cl_arg_buffer(dev, &a, op->tensors[SM_MERGE_OUT].buffer);
  sm_cl_arg_buffer(dev, &a, op->tensors[SM_MERGE_LSE].buffer);
  sm_cl_arg_int(&a, op->tensors[SM_MERGE_LSE].buffer != NULL);
  for (int p = 0; p < SM_MERGE_MAX_PARTS; ++p) {
    const bool have = p < parts;
    sm_cl_arg_buffer(dev, &a, have ? op->tensors[SM_MERGE_FIRST_PART + 2 * p].buffer : NULL);
    sm_cl_arg_buffer(dev, &a, have ? op->tensors[SM_MERGE_FIRST_PART + 2 * p + 1].buffer : NULL);
  }
  sm_cl_arg_int(&a, d->q_tokens);
  sm_cl_arg_int(&a, d->q_heads);
  sm_cl_arg_int(&a, d->v_head_dim);
  sm_cl_arg_long(&a, rows);
  if (a.err != CL_SUCCESS) {
    st = sm_cl_fail("clSetKernelArg(attn_merge)", a.err);
    goto done;
  }
  {
    size_t wg = 64;
    if (wg > k->max_workgroup_size) wg = sm_floor_pow2(k->max_workgroup_size);
    const size_t local[1] = {wg};
    const size_t global[1] = {(size_t)sm_div_up(rows, (int64_t)wg) * wg};
    st = sm_cl_enqueue(dev, k, 1, global, local);
  }
done:
  sm_cl_free(dev, tab);
  return st;
}

seqmix_status sm_cl_attention_launch(sm_device *dev, const sm_op *op) {
  return op->kind == SM_OP_ATTENTION ? attention_launch(dev, op) : merge_launch(dev, op);
}

/* Every variant the launches above can compose on this device: per dtype and
 * head dim of the sink, every rows-per-sequence class (powers of two up to
 * where the work-group stops growing), both K/V layouts, every score flag and
 * the split, following attn_fwd's shrink loop; and every merge. */
void sm_cl_attention_variants(sm_device *dev, sm_cl_variant_sink *sink) {
  const seqmix_compile_options *o = sm_cl_sink_options(sink);
  seqmix_dtype acts[3];
  const int act_count = sm_cl_sink_dtypes(sink, acts);
  const int64_t most_rows = 2 * (int64_t)sm_ceil_pow2(pick_tuning(dev)->workgroup > KEYPAR_MAX_ROWS
                                                          ? (uint64_t)pick_tuning(dev)->workgroup
                                                          : KEYPAR_MAX_ROWS);
  char options[256];
  for (int a = 0; a < act_count; ++a)
    for (int h = 0; h < o->head_dim_count; ++h) {
      const int64_t D = o->head_dims[h];
      if (D > ATTN_MAX_HEAD_DIM) continue;
      for (int64_t rows = 1; rows <= most_rows; rows *= 2)
        for (int flags = 0; flags < 32; ++flags) {
          attn_fwd_variant v = plan_attn_fwd(dev, acts[a], D, D, rows, flags & 1);
          v.causal = flags & 2, v.sigmoid = flags & 4, v.softcap = flags & 8, v.split = flags & 16;
          for (;;) {
            attn_fwd_options(&v, options, sizeof options);
            const size_t limit = sm_cl_emit(sink, "attention.cl", options, "attn_fwd");
            if (v.workgroup <= limit || v.workgroup == 1) break;
            v.workgroup = shrink_workgroup(v.workgroup, limit);
          }
        }
    }
  for (int a = 0; a < act_count; ++a)
    for (int p = 0; p < act_count; ++p)
      for (int parts = 1; parts <= SM_MERGE_MAX_PARTS; ++parts) {
        merge_options(acts[a], acts[p], parts, options, sizeof options);
        sm_cl_emit(sink, "attention.cl", options, NULL);
      }
}
