/*
 * SM_OP_ATTENTION and SM_OP_ATTENTION_MERGE on Vulkan (shaders/attention.comp,
 * shaders/attention_merge.comp).
 *
 * Attention is one dispatch over (row block, k head x key split, sequence).
 * When there are too few row blocks to fill the device and the keys are many
 * (decode), the keys are split: each split writes an f32 partial output and
 * lse into the device's scratch buffer, and one dispatch of the merge shader
 * folds all parts into out and lse. SM_OP_ATTENTION_MERGE is the same merge
 * over the caller's tensors, one dispatch per part (each part has its own
 * binding; the stream's barrier orders them).
 *
 * Tunables (rows per work-group, keys per block, work-group size) are
 * specialization constants; keys per block follow from the shared memory the
 * device has and the head dims. Calls whose tensors exceed one binding
 * (maxStorageBufferRange, int32 indices) go to the CPU fallback.
 */
#include "backend/vulkan/vulkan.h"

#include <string.h>

/* MAX_GROUP_KEYS: the most keys one work-group walks. On lavapipe a work-group
 * walking more than about 1800 keys in blocks of 64 (3500 in blocks of 32) returns
 * garbage for its later rows; key splits bound the walk (measured, D64). */
enum { MAX_ROWS = 16, MAX_BLOCK = 64, MIN_KEYS_PER_SPLIT = 256, MAX_SPLITS = 64 };
enum { MAX_GROUP_KEYS = 1024, MAX_ACC = 64 };
enum { MERGE_WORKGROUP = 64, MERGE_LANES = 16 };

/* Specialization constant ids of attention.comp. */
enum {
  SPEC_WORKGROUP_SIZE,
  SPEC_ROWS,
  SPEC_BLOCK,
  SPEC_D,
  SPEC_DV,
  SPEC_ACC,
  SPEC_WG,
  SPEC_Q_SIZE,
  SPEC_KV_SIZE,
  SPEC_S_SIZE,
  SPEC_CAUSAL,
  SPEC_VARLEN,
  SPEC_HAS_USED,
  SPEC_HAS_LSE,
  SPEC_SIGMOID,
  SPEC_OUT_F32,
  SPEC_ACT_BF16,
  SPEC_SOFTCAP,
  SPEC_CPL,
  SPEC_COUNT
};
enum { BIND_Q, BIND_K, BIND_V, BIND_OUT, BIND_LSE, BIND_CU_Q, BIND_CU_K, BIND_USED, BIND_COUNT };

/* Specialization constants of attention_merge.comp. */
enum {
  MSPEC_WORKGROUP_SIZE,
  MSPEC_LANES,
  MSPEC_FIRST,
  MSPEC_LAST,
  MSPEC_SIGMOID,
  MSPEC_PART_F32,
  MSPEC_ACT_BF16,
  MSPEC_HAS_LSE,
  MSPEC_ALL_PARTS,
  MSPEC_COUNT
};
enum { MBIND_PART, MBIND_PART_LSE, MBIND_SCRATCH, MBIND_OUT, MBIND_LSE, MBIND_COUNT };

typedef struct attn_push {
  int32_t q_off, q_s0, q_s1, q_s2;
  int32_t k_off, k_s0, k_s1, k_s2;
  int32_t v_off, v_s0, v_s1, v_s2;
  int32_t o_off, o_s0, o_s1, o_s2;
  int32_t l_off, l_s0, l_s1, l_s2;
  int32_t part;
  int32_t lq, lk, group, splits, split_len, window;
  int32_t index_offsets;
  float scale, softcap, sigmoid_bias;
} attn_push;

typedef struct merge_push {
  int32_t lq, hq, dv, rows;
  int32_t po_off, po_s0, po_s1, po_s2;
  int32_t pl_off, pl_s0, pl_s1, pl_s2;
  int32_t o_off, o_s0, o_s1, o_s2;
  int32_t l_off, l_s0, l_s1, l_s2;
  int32_t acc_off, ml_off;
  int32_t nparts, part_stride; /* MSPEC_ALL_PARTS */
} merge_push;

_Static_assert(sizeof(attn_push) <= SM_VK_PUSH_BYTES, "attention push constants");
_Static_assert(sizeof(merge_push) <= SM_VK_PUSH_BYTES, "merge push constants");

static bool fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* Strides of dims 0..n-1 as push constants (0 for extent-1 dims). */
static bool strides_of(const sm_tensor_ref *t, int n, int32_t *out) {
  for (int i = 0; i < n; ++i) {
    int64_t s = !t->buffer || t->shape[i] == 1 ? 0 : t->strides[i];
    if (!fits_i32(s)) return false;
    out[i] = (int32_t)s;
  }
  return true;
}

/* ---- Merge ---------------------------------------------------------------------------- */

typedef struct merge_plan {
  const char *module;
  uint32_t spec[MSPEC_COUNT];
  uint32_t groups[3];
  merge_push push;
  sm_vk_binding out, lse;
  uint64_t scratch_floats; /* acc and (m, l) */
} merge_plan;

/* The part-independent half of a merge over rows [B, Lq, Hq] of Dv columns. */
static bool plan_merge(const sm_device *dev, const sm_tensor_ref *out, const sm_tensor_ref *lse,
                       int64_t batch, int64_t lq, int64_t hq, int64_t dv, bool sigmoid,
                       bool part_f32, merge_plan *plan) {
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  memset(plan, 0, sizeof *plan);
  bool act16 = out->dtype != SEQMIX_F32;
  if (act16 && !dev->caps.storage16) return false;
  plan->module = act16 ? "attention_merge_a16.spv" : "attention_merge_f32.spv";
  const int64_t rows = batch * lq * hq;
  if (!fits_i32(rows) || !fits_i32(rows * dv + 2 * rows)) return false;
  /* The accumulator of a merge one part at a time; key splits (part_f32) merge all at once. */
  plan->scratch_floats = part_f32 ? 0 : (uint64_t)(rows * dv + 2 * rows);
  if (plan->scratch_floats * 4 > limits->maxStorageBufferRange) return false;
  merge_push *p = &plan->push;
  p->lq = (int32_t)lq, p->hq = (int32_t)hq, p->dv = (int32_t)dv, p->rows = (int32_t)rows;
  p->acc_off = 0, p->ml_off = (int32_t)(rows * dv);
  int32_t s[4];
  if (!sm_vk_bind_tensor(dev, out, &plan->out, &p->o_off) || !strides_of(out, 3, s)) return false;
  p->o_s0 = s[0], p->o_s1 = s[1], p->o_s2 = s[2];
  if (!sm_vk_bind_tensor(dev, lse, &plan->lse, &p->l_off) || !strides_of(lse, 3, s)) return false;
  p->l_s0 = s[0], p->l_s1 = s[1], p->l_s2 = s[2];
  uint32_t wg = MERGE_WORKGROUP;
  if (wg > limits->maxComputeWorkGroupInvocations) wg = limits->maxComputeWorkGroupInvocations;
  if (wg > limits->maxComputeWorkGroupSize[0]) wg = limits->maxComputeWorkGroupSize[0];
  uint32_t lanes = MERGE_LANES < wg ? MERGE_LANES : wg;
  uint64_t groups = sm_div_up((uint64_t)rows, wg / lanes);
  uint64_t gx =
      groups < limits->maxComputeWorkGroupCount[0] ? groups : limits->maxComputeWorkGroupCount[0];
  uint64_t gy = sm_div_up(groups, gx);
  if (gy > limits->maxComputeWorkGroupCount[1]) return false;
  plan->groups[0] = (uint32_t)(gx ? gx : 1), plan->groups[1] = (uint32_t)(gy ? gy : 1);
  plan->groups[2] = 1;
  uint32_t *spec = plan->spec;
  spec[MSPEC_WORKGROUP_SIZE] = wg;
  spec[MSPEC_LANES] = lanes;
  spec[MSPEC_SIGMOID] = sigmoid;
  spec[MSPEC_PART_F32] = part_f32;
  spec[MSPEC_ACT_BF16] = out->dtype == SEQMIX_BF16;
  spec[MSPEC_HAS_LSE] = lse->buffer != NULL;
  return true;
}

/* Records the merge dispatches: part i is (parts[i], part_lses[i]) with its
 * element offsets and strides already in pushes[i]. */
static seqmix_status record_merge(sm_device *dev, const merge_plan *plan, int parts,
                                  const sm_vk_binding *part_bind, const sm_vk_binding *lse_bind,
                                  const merge_push *pushes) {
  seqmix_status st = SEQMIX_OK;
  for (int i = 0; i < parts && !st; ++i) {
    uint32_t spec[MSPEC_COUNT];
    memcpy(spec, plan->spec, sizeof spec);
    spec[MSPEC_FIRST] = i == 0;
    spec[MSPEC_LAST] = i == parts - 1;
    const sm_vk_pipeline *pipeline;
    st = sm_vk_pipeline_get(dev, plan->module, spec, MSPEC_COUNT, MBIND_COUNT, &pipeline);
    if (st) break;
    sm_vk_binding b[MBIND_COUNT] = {
        [MBIND_PART] = part_bind[i],
        [MBIND_PART_LSE] = lse_bind[i],
        [MBIND_SCRATCH] = {dev->scratch, 0, plan->scratch_floats * 4},
        [MBIND_OUT] = plan->out,
        [MBIND_LSE] = plan->lse,
    };
    /* The scratch accumulator is unused with a single part. */
    if (parts == 1) b[MBIND_SCRATCH] = (sm_vk_binding){dev->dummy, 0, dev->dummy->bytes};
    st = sm_vk_dispatch(dev, pipeline, b, &pushes[i], sizeof pushes[i], plan->groups);
  }
  return st;
}

static bool plan_public_merge(const sm_device *dev, const sm_op *op, merge_plan *plan,
                              sm_vk_binding *parts, sm_vk_binding *lses, merge_push *pushes) {
  const sm_merge_desc *d = &op->u.merge;
  if (d->parts < 1 || d->parts > SM_MERGE_MAX_PARTS) return false;
  if (!plan_merge(dev, &op->tensors[SM_MERGE_OUT], &op->tensors[SM_MERGE_LSE], d->batch,
                  d->q_tokens, d->q_heads, d->v_head_dim, false, false, plan))
    return false;
  for (int i = 0; i < d->parts; ++i) {
    const sm_tensor_ref *o = &op->tensors[SM_MERGE_FIRST_PART + 2 * i];
    const sm_tensor_ref *l = &op->tensors[SM_MERGE_FIRST_PART + 2 * i + 1];
    if (o->dtype != op->tensors[SM_MERGE_OUT].dtype) return false;
    merge_push *p = &pushes[i];
    *p = plan->push;
    int32_t s[3];
    if (!sm_vk_bind_tensor(dev, o, &parts[i], &p->po_off) || !strides_of(o, 3, s)) return false;
    p->po_s0 = s[0], p->po_s1 = s[1], p->po_s2 = s[2];
    if (!sm_vk_bind_tensor(dev, l, &lses[i], &p->pl_off) || !strides_of(l, 3, s)) return false;
    p->pl_s0 = s[0], p->pl_s1 = s[1], p->pl_s2 = s[2];
  }
  return true;
}

bool sm_vk_merge_supports(sm_device *dev, const sm_op *op) {
  merge_plan plan;
  sm_vk_binding parts[SM_MERGE_MAX_PARTS], lses[SM_MERGE_MAX_PARTS];
  merge_push pushes[SM_MERGE_MAX_PARTS];
  return plan_public_merge(dev, op, &plan, parts, lses, pushes);
}

seqmix_status sm_vk_merge_launch(sm_device *dev, const sm_op *op) {
  merge_plan plan;
  sm_vk_binding parts[SM_MERGE_MAX_PARTS], lses[SM_MERGE_MAX_PARTS];
  merge_push pushes[SM_MERGE_MAX_PARTS];
  if (!plan_public_merge(dev, op, &plan, parts, lses, pushes))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  seqmix_status st = SEQMIX_OK;
  if (op->u.merge.parts > 1) st = sm_vk_scratch_reserve(dev, plan.scratch_floats * 4);
  if (st) return st;
  return record_merge(dev, &plan, op->u.merge.parts, parts, lses, pushes);
}

/* ---- Attention ------------------------------------------------------------------------ */

typedef struct attn_plan {
  const char *module;
  uint32_t spec[SPEC_COUNT];
  uint32_t groups[3];
  attn_push push;
  sm_vk_binding bind[BIND_COUNT];
  int64_t splits;
  /* Key splits: the parts, f32, in the scratch buffer. */
  int64_t part_floats, out_floats; /* per part; its out section */
  merge_plan merge;
} attn_plan;

static bool plan_attention(const sm_device *dev, const sm_op *op, attn_plan *plan) {
  const sm_attention_desc *d = &op->u.attention;
  const sm_tensor_ref *q = &op->tensors[SM_ATTN_Q], *k = &op->tensors[SM_ATTN_K],
                      *v = &op->tensors[SM_ATTN_V], *out = &op->tensors[SM_ATTN_OUT],
                      *lse = &op->tensors[SM_ATTN_LSE];
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  memset(plan, 0, sizeof *plan);
  const bool act16 = q->dtype != SEQMIX_F32;
  if (act16 && !dev->caps.storage16) return false;
  if (k->dtype != q->dtype || v->dtype != q->dtype || out->dtype != q->dtype) return false;
  if (d->head_dim < 1 || d->head_dim > 256 || d->v_head_dim < 1 || d->v_head_dim > 256)
    return false;
  if (!fits_i32(d->q_tokens) || !fits_i32(d->k_tokens) || !fits_i32(d->q_heads) ||
      !fits_i32(d->batch) || !fits_i32(d->max_q_len * d->q_heads))
    return false;
  plan->module = act16 ? "attention_a16.spv" : "attention_f32.spv";
  const int64_t D = d->head_dim, Dv = d->v_head_dim, G = d->q_heads / d->k_heads;

  attn_push *p = &plan->push;
  int32_t s[3];
  const sm_tensor_ref *ts[] = {q, k, v};
  int32_t *offs[] = {&p->q_off, &p->k_off, &p->v_off};
  int32_t *strs[] = {&p->q_s0, &p->k_s0, &p->v_s0};
  for (int i = 0; i < 3; ++i) {
    if (!sm_vk_bind_tensor(dev, ts[i], &plan->bind[i], offs[i]) || !strides_of(ts[i], 3, s))
      return false;
    strs[i][0] = s[0], strs[i][1] = s[1], strs[i][2] = s[2];
  }
  int32_t cu_off[3];
  for (int i = 0; i < 3; ++i) {
    if (!sm_vk_bind_tensor(dev, &op->tensors[SM_ATTN_CU_Q + i], &plan->bind[BIND_CU_Q + i],
                           &cu_off[i]) ||
        cu_off[i] > 1023)
      return false;
  }
  p->index_offsets = cu_off[0] | cu_off[1] << 10 | cu_off[2] << 20;
  /* Dense calls index batches by stride; varlen ones by cu offsets with batch 0. */
  p->lq = (int32_t)d->q_tokens, p->lk = (int32_t)d->k_tokens, p->group = (int32_t)G;
  p->window = d->window, p->scale = d->scale, p->softcap = d->softcap;
  p->sigmoid_bias = d->sigmoid_bias;

  /* Tiles: rows per work-group up to MAX_ROWS (fewer for decode), keys per
   * block as many as shared memory holds, a power of two; one invocation per
   * key of a block; rows x columns per invocation at most MAX_ACC registers. */
  uint32_t wg_max = limits->maxComputeWorkGroupInvocations;
  if (wg_max > limits->maxComputeWorkGroupSize[0]) wg_max = limits->maxComputeWorkGroupSize[0];
  wg_max = sm_floor_pow2(wg_max);
  int64_t want_rows = d->max_q_len * G;
  uint32_t rows = 1;
  while (rows < MAX_ROWS && rows < want_rows)
    rows *= 2;
  const uint64_t shared = limits->maxComputeSharedMemorySize;
  const int64_t kvw = D > Dv ? D : Dv;
  uint32_t block = 0;
  for (;;) {
    block = MAX_BLOCK < wg_max ? MAX_BLOCK : wg_max;
    while (block > 8 &&
           4 * ((uint64_t)rows * D + block * kvw + (uint64_t)rows * block + 3 * rows) > shared)
      block /= 2;
    bool fits =
        4 * ((uint64_t)rows * D + block * kvw + (uint64_t)rows * block + 3 * rows) <= shared;
    if (fits && rows * sm_div_up((uint64_t)Dv, block) <= MAX_ACC) break;
    if (rows == 1) return false;
    rows /= 2;
  }
  const uint32_t wg = block;
  const uint64_t q_blocks =
      d->max_q_len * G > 0 ? sm_div_up((uint64_t)(d->max_q_len * G), rows) : 1;
  /* Key splits for few work-groups and many keys. */
  const uint64_t tasks = (uint64_t)d->batch * (uint64_t)d->k_heads * q_blocks;
  int64_t splits = 1;
  const uint64_t target = (uint64_t)sm_knob_or(op, SM_KNOB_VK_ATTN_SPLIT_TARGET,
                                                (int64_t)sm_vk_target_groups(dev));
  if (tasks < target && d->max_k_len >= 2 * MIN_KEYS_PER_SPLIT) {
    int64_t want = (int64_t)sm_div_up(target, tasks), most = d->max_k_len / MIN_KEYS_PER_SPLIT;
    splits = want < most ? want : most;
    if (splits > MAX_SPLITS) splits = MAX_SPLITS;
  }
  const int64_t needed = (int64_t)sm_div_up((uint64_t)d->max_k_len, MAX_GROUP_KEYS);
  if (splits < needed) splits = needed;
  if (splits > MAX_SPLITS) return false;
  int64_t split_len = (int64_t)sm_div_up((uint64_t)(d->max_k_len > 0 ? d->max_k_len : 1), splits);
  split_len = (int64_t)sm_div_up((uint64_t)split_len, block) * block;
  if (split_len > INT32_MAX) return false;
  if (q_blocks > limits->maxComputeWorkGroupCount[0] ||
      (uint64_t)(d->k_heads * splits) > limits->maxComputeWorkGroupCount[1] ||
      (uint64_t)d->batch > limits->maxComputeWorkGroupCount[2])
    return false;
  const bool has_lse = lse->buffer != NULL && !d->sigmoid;

  if (splits > 1) {
    /* Parts: out [B', Lq', Hq, Dv] then lse [B', Hq, Lq'], f32, contiguous. */
    const int64_t b1 = d->varlen ? 1 : d->batch, lq1 = d->q_tokens, hq = d->q_heads;
    const int64_t rows_all = b1 * lq1 * hq;
    plan->out_floats = rows_all * Dv;
    plan->part_floats = plan->out_floats + rows_all;
    if (!plan_merge(dev, out, lse, b1, lq1, hq, Dv, d->sigmoid, true, &plan->merge)) {
      splits = 1;
    } else {
      uint64_t total = (uint64_t)(splits * plan->part_floats);
      if (total * 4 > limits->maxStorageBufferRange || total > INT32_MAX) splits = 1;
    }
    if (splits == 1 && needed > 1) return false;
    if (splits > 1) {
      p->part = (int32_t)plan->part_floats;
      p->o_off = 0, p->o_s0 = (int32_t)(lq1 * hq * Dv), p->o_s1 = (int32_t)(hq * Dv);
      p->o_s2 = (int32_t)Dv;
      p->l_off = (int32_t)plan->out_floats, p->l_s0 = (int32_t)(hq * lq1), p->l_s1 = (int32_t)lq1;
      p->l_s2 = 1;
      if (b1 == 1) p->o_s0 = p->l_s0 = 0;
    }
  }
  if (splits == 1) {
    split_len = d->max_k_len > 0 ? d->max_k_len : 1;
    if (!sm_vk_bind_tensor(dev, out, &plan->bind[BIND_OUT], &p->o_off) || !strides_of(out, 3, s))
      return false;
    p->o_s0 = s[0], p->o_s1 = s[1], p->o_s2 = s[2];
    if (!sm_vk_bind_tensor(dev, lse, &plan->bind[BIND_LSE], &p->l_off) || !strides_of(lse, 3, s))
      return false;
    p->l_s0 = s[0], p->l_s1 = s[1], p->l_s2 = s[2];
  }
  plan->splits = splits;
  p->splits = (int32_t)splits;
  p->split_len = (int32_t)split_len;
  plan->groups[0] = (uint32_t)q_blocks;
  plan->groups[1] = (uint32_t)(d->k_heads * splits);
  plan->groups[2] = (uint32_t)d->batch;

  uint32_t *spec = plan->spec;
  spec[SPEC_WORKGROUP_SIZE] = wg;
  spec[SPEC_ROWS] = rows;
  spec[SPEC_BLOCK] = block;
  spec[SPEC_D] = (uint32_t)D;
  spec[SPEC_DV] = (uint32_t)Dv;
  spec[SPEC_ACC] = 0;
  spec[SPEC_WG] = wg;
  spec[SPEC_Q_SIZE] = rows * (uint32_t)D;
  spec[SPEC_KV_SIZE] = block * (uint32_t)kvw;
  spec[SPEC_S_SIZE] = rows * block;
  spec[SPEC_CAUSAL] = d->causal;
  spec[SPEC_VARLEN] = d->varlen;
  spec[SPEC_HAS_USED] = op->tensors[SM_ATTN_SEQUSED_K].buffer != NULL;
  spec[SPEC_HAS_LSE] = splits > 1 ? !d->sigmoid : has_lse;
  spec[SPEC_SIGMOID] = d->sigmoid;
  spec[SPEC_OUT_F32] = splits > 1;
  spec[SPEC_ACT_BF16] = q->dtype == SEQMIX_BF16;
  spec[SPEC_SOFTCAP] = d->softcap > 0;
  spec[SPEC_CPL] = (uint32_t)sm_div_up((uint64_t)Dv, wg);
  return true;
}

bool sm_vk_attention_supports(sm_device *dev, const sm_op *op) {
  attn_plan plan;
  return plan_attention(dev, op, &plan);
}

seqmix_status sm_vk_attention_launch(sm_device *dev, const sm_op *op) {
  attn_plan plan;
  if (!plan_attention(dev, op, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  const sm_attention_desc *d = &op->u.attention;
  /* Nothing to compute: no query rows. */
  if (d->q_tokens == 0 || d->batch == 0) return SEQMIX_OK;
  seqmix_status st = SEQMIX_OK;
  const uint64_t parts_floats = (uint64_t)(plan.splits * plan.part_floats);
  if (plan.splits > 1) {
    st = sm_vk_scratch_reserve(dev, parts_floats * 4);
    if (st) return st;
    plan.bind[BIND_OUT] = (sm_vk_binding){dev->scratch, 0, parts_floats * 4};
    plan.bind[BIND_LSE] = plan.bind[BIND_OUT];
  }
  const sm_vk_pipeline *pipeline;
  st = sm_vk_pipeline_get(dev, plan.module, plan.spec, SPEC_COUNT, BIND_COUNT, &pipeline);
  if (!st) st = sm_vk_dispatch(dev, pipeline, plan.bind, &plan.push, sizeof plan.push, plan.groups);
  if (st || plan.splits == 1) return st;

  /* One merge dispatch over every part: they lie part_floats apart in scratch. */
  merge_plan *m = &plan.merge;
  merge_push push = m->push;
  push.po_off = 0, push.pl_off = (int32_t)plan.out_floats;
  push.po_s0 = plan.push.o_s0, push.po_s1 = plan.push.o_s1, push.po_s2 = plan.push.o_s2;
  push.pl_s0 = plan.push.l_s0, push.pl_s1 = plan.push.l_s1, push.pl_s2 = plan.push.l_s2;
  push.nparts = (int32_t)plan.splits, push.part_stride = (int32_t)plan.part_floats;
  m->spec[MSPEC_FIRST] = m->spec[MSPEC_LAST] = 1;
  m->spec[MSPEC_ALL_PARTS] = 1;
  st = sm_vk_pipeline_get(dev, m->module, m->spec, MSPEC_COUNT, MBIND_COUNT, &pipeline);
  if (st) return st;
  const sm_vk_binding parts = {dev->scratch, 0, parts_floats * 4};
  const sm_vk_binding b[MBIND_COUNT] = {
      [MBIND_PART] = parts,
      [MBIND_PART_LSE] = parts,
      [MBIND_SCRATCH] = {dev->dummy, 0, dev->dummy->bytes},
      [MBIND_OUT] = m->out,
      [MBIND_LSE] = m->lse,
  };
  return sm_vk_dispatch(dev, pipeline, b, &push, sizeof push, m->groups);
}
