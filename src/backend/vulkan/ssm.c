/*
 * SM_OP_SELECTIVE_SCAN, SM_OP_SSD and SM_OP_LINEAR_ATTENTION on Vulkan
 * (shaders/selective_scan.comp, shaders/chunk_scan.comp).
 *
 * The selective scan is one dispatch over (channel block, batch). SSD and
 * linear attention share chunk_scan.comp: SSD is linear attention with
 * q = Cm, k = dt' Bm, v = x and the log-decay dt' A[h], so each op is first
 * described as a chunk_problem (which op slot feeds each shader binding, the
 * decay kind, the state's layout) and from there both run the same way.
 * chunk_scan.comp has two modes: chunkwise (chunk size from the call's hint
 * or the device's default, clamped to shared memory and the tuning) and token
 * by token (decode everywhere; every call without a hint on CPUs, see
 * chunk_tunings; calls whose chunk cannot fit shared memory).
 *
 * Both shaders bind ten tensors and use subgroup shuffles, so supports() asks
 * the device for both (device_can). The SPIR-V variant follows the
 * activations' storage (f32 or a16); whether D_skip and the dt biases are F32
 * or 16-bit is a specialization constant of each, so the a16p16 build is
 * never used.
 *
 * Pieces: a call is cut into runs of tokens that hand the state on from
 * piece to piece (through the device's scratch buffer when the call has no
 * state) where one invocation would loop too often (llvmpipe, see
 * loop_budget), and into groups of whole batches, or runs of tokens of one
 * batch, where its tensors do not fit one binding (maxStorageBufferRange,
 * int32 indices: 128 MiB on lavapipe). Each piece binds only the rows it
 * touches.
 */
#include "backend/vulkan/vulkan.h"

#include <stddef.h>
#include <string.h>

/* The largest state dimension (N, Dk) an invocation keeps in registers. */
enum { MAX_STATE_DIM = 256, BIND_COUNT = 10, MAX_SPEC = 23 };

/* ---- Shared plumbing: plans, pieces, dispatch --------------------------------------- */

/* How pieces cut a tensor: not at all (parameters), by batch (the state), or
 * by batch and token (sequences [B, L, ...]). */
typedef enum cut_kind { CUT_NONE, CUT_BATCH, CUT_SEQUENCE } cut_kind;

/* The head of both shaders' push constants: what changes from piece to piece. */
typedef struct piece_push {
  int32_t offsets[3]; /* element offsets of bindings 0..9 inside them, 8 bits each */
  int32_t tokens;
} piece_push;

/* selective_scan.comp's push constants, in its order. */
typedef struct scan_push {
  piece_push piece;
  int32_t channels, channels_per_group;
  int32_t u_sb, u_st, delta_sb, delta_st, z_sb, z_st, y_sb, y_st;
  int32_t bm_sb, bm_st, bm_sg, cm_sb, cm_st, cm_sg;
  int32_t a_row, state_sb, state_sd;
} scan_push;

/* chunk_scan.comp's push constants, in its order. */
typedef struct chunk_push {
  piece_push piece;
  float scale;
  int32_t q_sb, q_st, q_sh, k_sb, k_st, k_sh, v_sb, v_st, v_sh, o_sb, o_st, o_sh;
  int32_t g_sb, g_st, g_sh, s_sb, s_sh, s_row, z_sb, z_st, z_sh;
} chunk_push;

_Static_assert(sizeof(scan_push) <= SM_VK_PUSH_BYTES, "selective scan push constants");
_Static_assert(sizeof(chunk_push) <= SM_VK_PUSH_BYTES, "chunk scan push constants");

/* Everything a launch needs: built by the op's planner, run by run_plan. */
typedef struct ssm_plan {
  const char *module;
  uint32_t spec[MAX_SPEC], spec_count;
  uint32_t spec_state_in, spec_state_out; /* ids of the STATE_IN / STATE_OUT flags */
  int slot[BIND_COUNT];                   /* op tensor slot of each binding; -1: the dummy */
  cut_kind cut[BIND_COUNT];
  int state_binding;
  uint32_t groups[2]; /* x and y work-groups; z is the batches of a piece */
  int64_t batch, tokens;
  int64_t batch_group, token_chunk; /* piece sizes; the whole call when it fits */
  /* A dense f32 state [B, ...] in the scratch buffer, for runs of tokens of a
   * call without state (buffer set at launch); scratch_floats 0 when unused. */
  sm_tensor_ref scratch_state;
  uint64_t scratch_floats;
  union {
    piece_push piece;
    scan_push scan;
    chunk_push chunk;
  } push;
  uint32_t push_bytes;
} ssm_plan;

static bool fits_i32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* Stride of dim as a push constant: 0 for a dim of extent 1 (absent tensors
 * have strides 0; the scratch state has no buffer until launch). */
static bool stride_of(const sm_tensor_ref *t, int dim, int32_t *out) {
  int64_t s = t->shape[dim] == 1 ? 0 : t->strides[dim];
  if (!fits_i32(s)) return false;
  *out = (int32_t)s;
  return true;
}

/* Strides of dims first..first+n-1 into out[0..n-1]. */
static bool strides_of(const sm_tensor_ref *t, int first, int n, int32_t *const *out) {
  for (int i = 0; i < n; ++i)
    if (!stride_of(t, first + i, out[i])) return false;
  return true;
}

/* Batches [b0, b0 + nb) and (sequences) tokens [t0, t0 + nt) of a tensor. */
static sm_tensor_ref piece_of(const sm_tensor_ref *t, cut_kind cut, int64_t b0, int64_t nb,
                              int64_t t0, int64_t nt) {
  sm_tensor_ref r = *t;
  if (cut == CUT_NONE) return r;
  r.offset += b0 * t->strides[0];
  r.shape[0] = nb;
  if (cut == CUT_SEQUENCE) {
    r.offset += t0 * t->strides[1];
    r.shape[1] = nt;
  }
  return r;
}

/* Whether such a piece fits one binding wherever it starts: its span plus the
 * most that aligning the binding's start down can add. */
static bool piece_fits(const sm_device *dev, const sm_tensor_ref *t, cut_kind cut, int64_t nb,
                       int64_t nt) {
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  const sm_tensor_ref r = piece_of(t, cut, 0, nb, 0, nt);
  uint64_t span = 1;
  for (int i = 0; i < r.rank; ++i)
    span += (uint64_t)(r.shape[i] - 1) * (uint64_t)r.strides[i];
  const uint64_t esize = seqmix_dtype_size(r.dtype);
  return span <= INT32_MAX &&
         span * esize + limits->minStorageBufferOffsetAlignment <= limits->maxStorageBufferRange;
}

/* The tensor bound at `binding`: the op's (NULL: none), or the scratch state. */
static const sm_tensor_ref *bound_tensor(const sm_op *op, const ssm_plan *plan, int binding) {
  if (binding == plan->state_binding && plan->scratch_floats) return &plan->scratch_state;
  return plan->slot[binding] < 0 ? NULL : &op->tensors[plan->slot[binding]];
}

static bool all_fit(const sm_device *dev, const sm_op *op, const ssm_plan *plan, int64_t nb,
                    int64_t nt) {
  for (int i = 0; i < BIND_COUNT; ++i) {
    const sm_tensor_ref *t = bound_tensor(op, plan, i);
    if (t && (t->buffer || t == &plan->scratch_state) && !piece_fits(dev, t, plan->cut[i], nb, nt))
      return false;
  }
  return true;
}

/* The largest n in [lo, hi] with all_fit (monotone in n) for n batches of
 * `tokens` tokens (by_batch) or one batch of n tokens. */
static int64_t largest_fitting(const sm_device *dev, const sm_op *op, const ssm_plan *plan,
                               int64_t lo, int64_t hi, bool by_batch, int64_t tokens) {
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    if (by_batch ? all_fit(dev, op, plan, mid, tokens) : all_fit(dev, op, plan, 1, mid))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

/* Piece sizes: runs of at most max_tokens tokens (all if they fit a binding,
 * else as many as fit for one batch), then as many batches as fit. Runs of
 * tokens of a call without state carry theirs in the scratch buffer. */
static bool choose_pieces(const sm_device *dev, const sm_op *op, int64_t max_tokens,
                          ssm_plan *plan) {
  const int64_t max_batches = plan->batch < dev->caps.props.limits.maxComputeWorkGroupCount[2]
                                  ? plan->batch
                                  : dev->caps.props.limits.maxComputeWorkGroupCount[2];
  int64_t tokens = plan->tokens < max_tokens ? plan->tokens : max_tokens;
  if (!all_fit(dev, op, plan, 1, tokens)) {
    if (!all_fit(dev, op, plan, 1, 1)) return false;
    tokens = largest_fitting(dev, op, plan, 1, tokens, false, 0);
  }
  plan->token_chunk = tokens;
  if (tokens < plan->tokens && !op->tensors[plan->slot[plan->state_binding]].buffer) {
    plan->scratch_floats = 1;
    for (int i = 0; i < plan->scratch_state.rank; ++i)
      plan->scratch_floats *= (uint64_t)plan->scratch_state.shape[i];
    if (!all_fit(dev, op, plan, 1, tokens)) return false;
  }
  plan->batch_group = largest_fitting(dev, op, plan, 1, max_batches, true, tokens);
  return true;
}

/* llvmpipe (lavapipe) ends every loop of a shader invocation once the
 * invocation has made 65535 loop trips, all loops together
 * (LP_MAX_TGSI_LOOP_ITERATIONS in Mesa's gallivm): later results are garbage.
 * The trips one dispatch may spend there, with a margin; 0: no such limit. */
static uint64_t loop_budget(const sm_device *dev) {
  if (dev->caps.props.vendorID == VK_VENDOR_ID_MESA &&
      dev->caps.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU)
    return 60000;
  return 0;
}

/* Tokens per dispatch within the loop budget, for kernels spending `fixed`
 * trips once and `per_step` trips per step of `step` tokens. */
static int64_t budget_tokens(const sm_device *dev, uint64_t fixed, uint64_t per_step,
                             uint64_t step) {
  const uint64_t budget = loop_budget(dev);
  if (!budget) return INT64_MAX;
  const uint64_t steps = budget > fixed + per_step ? (budget - fixed) / per_step : 1;
  return (int64_t)(steps * step);
}

/* A dense f32 state of the given shape. */
static void dense_state(int rank, const int64_t *shape, sm_tensor_ref *out) {
  memset(out, 0, sizeof *out);
  out->dtype = SEQMIX_F32;
  out->rank = rank;
  int64_t stride = 1;
  for (int i = rank - 1; i >= 0; --i) {
    out->shape[i] = shape[i];
    out->strides[i] = stride;
    stride *= out->shape[i];
  }
}

/* Device features every plan needs: ten storage buffers per stage, subgroup
 * shuffles in compute shaders (both shaders use them where SPREAD > 1, so
 * their modules declare them), and 16-bit storage for F16/BF16 activations. */
static bool device_can(const sm_device *dev, seqmix_dtype act) {
  if (dev->caps.props.limits.maxPerStageDescriptorStorageBuffers < BIND_COUNT ||
      dev->caps.props.limits.maxDescriptorSetStorageBuffers < BIND_COUNT)
    return false;
  VkPhysicalDeviceSubgroupProperties subgroup = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
  VkPhysicalDeviceProperties2 props = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
                                       .pNext = &subgroup};
  vkGetPhysicalDeviceProperties2(dev->physical, &props);
  if (!(subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) ||
      !(subgroup.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT))
    return false;
  return act == SEQMIX_F32 || dev->caps.storage16;
}

/* How many lanes share the loads of words every invocation reads (SPREAD in
 * both shaders): the subgroup size on CPUs, where a load inside a loop costs a
 * scalar load per lane even at a uniform address (lavapipe); 1 on GPUs, whose
 * caches broadcast such loads. */
static uint32_t spread_width(const sm_device *dev) {
  return dev->caps.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? dev->caps.subgroup_size : 1;
}

/* Records the plan's dispatches, piece by piece: batch groups in order, and
 * inside each the runs of tokens in order (each reads the state the one
 * before it wrote; the stream's barrier orders them). */
static seqmix_status run_plan(sm_device *dev, const sm_op *op, ssm_plan *plan) {
  seqmix_status st = SEQMIX_OK;
  const bool user_state = op->tensors[plan->slot[plan->state_binding]].buffer != NULL;
  if (plan->scratch_floats) {
    if ((st = sm_vk_scratch_reserve(dev, plan->scratch_floats * sizeof(float)))) return st;
    plan->scratch_state.buffer = dev->scratch;
  }
  if (plan->batch_group < plan->batch || plan->token_chunk < plan->tokens)
    sm_log(SEQMIX_LOG_DEBUG, "%s: split into pieces of %lld batches x %lld tokens", op->name,
           (long long)plan->batch_group, (long long)plan->token_chunk);
  for (int64_t b0 = 0; b0 < plan->batch && !st; b0 += plan->batch_group) {
    const int64_t nb = plan->batch - b0 < plan->batch_group ? plan->batch - b0 : plan->batch_group;
    for (int64_t t0 = 0; t0 < plan->tokens && !st; t0 += plan->token_chunk) {
      const int64_t nt =
          plan->tokens - t0 < plan->token_chunk ? plan->tokens - t0 : plan->token_chunk;
      plan->spec[plan->spec_state_in] = t0 > 0 || user_state;
      plan->spec[plan->spec_state_out] = t0 + nt < plan->tokens || user_state;
      sm_vk_binding bindings[BIND_COUNT];
      piece_push *piece = &plan->push.piece;
      memset(piece->offsets, 0, sizeof piece->offsets);
      piece->tokens = (int32_t)nt;
      for (int i = 0; i < BIND_COUNT; ++i) {
        const sm_tensor_ref *t = bound_tensor(op, plan, i);
        sm_tensor_ref view = {0};
        if (t) view = piece_of(t, plan->cut[i], b0, nb, t0, nt);
        int32_t offset;
        /* choose_pieces sized the pieces so that every binding fits. */
        if (!sm_vk_bind_tensor(dev, &view, &bindings[i], &offset) || offset > 255)
          return sm_fail(SEQMIX_ERROR_BACKEND, "%s: a piece of the call exceeds a binding",
                         op->name);
        piece->offsets[i / 4] |= offset << (8 * (i % 4));
      }
      const sm_vk_pipeline *pipeline;
      st = sm_vk_pipeline_get(dev, plan->module, plan->spec, plan->spec_count, BIND_COUNT,
                              &pipeline);
      if (st) break;
      const uint32_t groups[3] = {plan->groups[0], plan->groups[1], (uint32_t)nb};
      st = sm_vk_dispatch(dev, pipeline, bindings, &plan->push, plan->push_bytes, groups);
    }
  }
  return st;
}

/* ---- Selective scan ---------------------------------------------------------------- */

/* Specialization constant ids of selective_scan.comp. */
enum {
  SCAN_WORKGROUP_SIZE,
  SCAN_N,
  SCAN_N_LANES,
  SCAN_STATES_PER_LANE,
  SCAN_TOKEN_BLOCK,
  SCAN_PARTIALS_SIZE,
  SCAN_HAS_D_SKIP,
  SCAN_HAS_Z,
  SCAN_HAS_DELTA_BIAS,
  SCAN_SOFTPLUS,
  SCAN_STATE_IN,
  SCAN_STATE_OUT,
  SCAN_ACT_BF16,
  SCAN_D_SKIP_16,
  SCAN_DELTA_BIAS_16,
  SCAN_GROUP_UNIFORM,
  SCAN_SPREAD,
  SCAN_SPEC_COUNT
};

/* Tunables by device type. An invocation owns states_per_lane states of one
 * channel (all N where lanes is 1); a work-group covers workgroup_size / lanes
 * channels, halved down to min_channels while there are too few work-groups. */
typedef struct scan_tuning {
  VkPhysicalDeviceType type;
  uint32_t workgroup_size, max_lanes, states_per_lane, token_block, min_channels;
} scan_tuning;

static const scan_tuning scan_tunings[] = {
    /* lavapipe: a work-group is one thread over 8-lane rows; a channel per
     * invocation keeps the state in registers and needs no reduction. */
    {VK_PHYSICAL_DEVICE_TYPE_CPU, 64, 1, 0, 1, 8},
    {VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, 128, 8, 4, 8, 16},
    {VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU, 128, 8, 4, 8, 16},
};
static const scan_tuning scan_default_tuning = {VK_PHYSICAL_DEVICE_TYPE_OTHER, 64, 4, 4, 8, 8};

/* The largest power of two <= want that a work-group may have. */
static uint32_t workgroup_limit(const sm_device *dev, uint32_t want) {
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  if (want > limits->maxComputeWorkGroupInvocations) want = limits->maxComputeWorkGroupInvocations;
  if (want > limits->maxComputeWorkGroupSize[0]) want = limits->maxComputeWorkGroupSize[0];
  return (uint32_t)sm_floor_pow2(want);
}

static bool plan_selective_scan(const sm_device *dev, const sm_op *op, ssm_plan *plan) {
  const sm_scan_desc *d = &op->u.scan;
  const sm_tensor_ref *u = &op->tensors[SM_SCAN_U], *delta = &op->tensors[SM_SCAN_DELTA],
                      *A = &op->tensors[SM_SCAN_A], *Bm = &op->tensors[SM_SCAN_B],
                      *Cm = &op->tensors[SM_SCAN_C], *skip = &op->tensors[SM_SCAN_D_SKIP],
                      *z = &op->tensors[SM_SCAN_Z], *bias = &op->tensors[SM_SCAN_DELTA_BIAS],
                      *y = &op->tensors[SM_SCAN_Y];
  memset(plan, 0, sizeof *plan);
  if (!device_can(dev, u->dtype)) return false;
  if (d->state_size < 1 || d->state_size > MAX_STATE_DIM || !fits_i32(d->tokens) ||
      !fits_i32(d->channels))
    return false;
  plan->module = u->dtype == SEQMIX_F32 ? "selective_scan_f32.spv" : "selective_scan_a16.spv";
  plan->batch = d->batch;
  plan->tokens = d->tokens;
  for (int i = 0; i < BIND_COUNT; ++i) {
    plan->slot[i] = i; /* bindings follow the SM_SCAN_* slots */
    plan->cut[i] = CUT_SEQUENCE;
  }
  plan->cut[SM_SCAN_A] = plan->cut[SM_SCAN_D_SKIP] = plan->cut[SM_SCAN_DELTA_BIAS] = CUT_NONE;
  plan->cut[SM_SCAN_STATE] = CUT_BATCH;
  plan->state_binding = SM_SCAN_STATE;
  const int64_t state_shape[] = {d->batch, d->channels, d->state_size};
  dense_state(3, state_shape, &plan->scratch_state);

  const scan_tuning *tuning = &scan_default_tuning;
  for (size_t i = 0; i < sizeof scan_tunings / sizeof scan_tunings[0]; ++i)
    if (scan_tunings[i].type == dev->caps.props.deviceType) tuning = &scan_tunings[i];
  /* Lanes per channel: a power of two dividing N, with about states_per_lane each. */
  uint32_t lanes = 1;
  while (lanes * 2 <= tuning->max_lanes && d->state_size % (lanes * 2) == 0 &&
         (uint64_t)d->state_size / (lanes * 2) >= tuning->states_per_lane)
    lanes *= 2;
  uint32_t wg = workgroup_limit(dev, tuning->workgroup_size);
  if (wg < lanes) lanes = wg;
  uint32_t channels = wg / lanes;
  const uint64_t target = sm_vk_target_groups(dev);
  while (channels > tuning->min_channels && channels / 2 * lanes >= 8 &&
         sm_div_up((uint64_t)d->channels, channels) * (uint64_t)d->batch < target)
    channels /= 2;
  wg = channels * lanes;
  const uint64_t channel_groups = sm_div_up((uint64_t)d->channels, channels);
  if (channel_groups > dev->caps.props.limits.maxComputeWorkGroupCount[0]) return false;
  const uint32_t token_block = lanes > 1 ? tuning->token_block : 1;
  if ((uint64_t)wg * token_block * 4 > dev->caps.props.limits.maxComputeSharedMemorySize)
    return false;
  plan->groups[0] = (uint32_t)channel_groups;
  plan->groups[1] = 1;
  /* Loop trips: only the loop over tokens is not unrolled. */
  const uint32_t states = (uint32_t)d->state_size / lanes;
  if (!choose_pieces(dev, op, budget_tokens(dev, 16, 2, 1), plan)) return false;

  scan_push *p = &plan->push.scan;
  plan->push_bytes = sizeof *p;
  const int64_t per_group = d->channels / d->groups;
  p->channels = (int32_t)d->channels;
  p->channels_per_group = (int32_t)per_group;
  const sm_tensor_ref *s = bound_tensor(op, plan, plan->state_binding);
  if (!strides_of(u, 0, 2, (int32_t *[]){&p->u_sb, &p->u_st}) ||
      !strides_of(delta, 0, 2, (int32_t *[]){&p->delta_sb, &p->delta_st}) ||
      !strides_of(z, 0, 2, (int32_t *[]){&p->z_sb, &p->z_st}) ||
      !strides_of(y, 0, 2, (int32_t *[]){&p->y_sb, &p->y_st}) ||
      !strides_of(Bm, 0, 3, (int32_t *[]){&p->bm_sb, &p->bm_st, &p->bm_sg}) ||
      !strides_of(Cm, 0, 3, (int32_t *[]){&p->cm_sb, &p->cm_st, &p->cm_sg}) ||
      !strides_of(A, 0, 1, (int32_t *[]){&p->a_row}) ||
      !strides_of(s, 0, 2, (int32_t *[]){&p->state_sb, &p->state_sd}))
    return false;

  uint32_t *spec = plan->spec;
  plan->spec_count = SCAN_SPEC_COUNT;
  plan->spec_state_in = SCAN_STATE_IN;
  plan->spec_state_out = SCAN_STATE_OUT;
  spec[SCAN_WORKGROUP_SIZE] = wg;
  spec[SCAN_N] = (uint32_t)d->state_size;
  spec[SCAN_N_LANES] = lanes;
  spec[SCAN_STATES_PER_LANE] = states;
  spec[SCAN_TOKEN_BLOCK] = token_block;
  spec[SCAN_PARTIALS_SIZE] = lanes > 1 ? wg * token_block : 1;
  spec[SCAN_HAS_D_SKIP] = skip->buffer != NULL;
  spec[SCAN_HAS_Z] = z->buffer != NULL;
  spec[SCAN_HAS_DELTA_BIAS] = bias->buffer != NULL;
  spec[SCAN_SOFTPLUS] = d->delta_softplus;
  spec[SCAN_ACT_BF16] = u->dtype == SEQMIX_BF16;
  spec[SCAN_D_SKIP_16] = skip->buffer && skip->dtype != SEQMIX_F32;
  spec[SCAN_DELTA_BIAS_16] = bias->buffer && bias->dtype != SEQMIX_F32;
  spec[SCAN_GROUP_UNIFORM] = per_group % channels == 0;
  /* Spread loads need every subgroup's channels in one group. */
  const uint32_t spread = spread_width(dev);
  spec[SCAN_SPREAD] = lanes == 1 && per_group % spread == 0 && wg % spread == 0 ? spread : 1;
  return true;
}

bool sm_vk_selective_scan_supports(sm_device *dev, const sm_op *op) {
  ssm_plan plan;
  return plan_selective_scan(dev, op, &plan);
}

seqmix_status sm_vk_selective_scan_launch(sm_device *dev, const sm_op *op) {
  ssm_plan plan;
  if (!plan_selective_scan(dev, op, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  return run_plan(dev, op, &plan);
}

/* ---- SSD and linear attention (chunk_scan.comp) ------------------------------------ */

/* Specialization constant ids of chunk_scan.comp. */
enum {
  CHUNK_WORKGROUP_SIZE,
  CHUNK_DK,
  CHUNK_DV,
  CHUNK_T,
  CHUNK_MODE,
  CHUNK_DECAY,
  CHUNK_ROW_SETS,
  CHUNK_SPREAD,
  CHUNK_GROUP_HEADS,
  CHUNK_STATE_IN,
  CHUNK_STATE_OUT,
  CHUNK_STATE_TRANSPOSED,
  CHUNK_HAS_D_SKIP,
  CHUNK_HAS_Z,
  CHUNK_HAS_DT_BIAS,
  CHUNK_SOFTPLUS,
  CHUNK_ACT_BF16,
  CHUNK_D_SKIP_16,
  CHUNK_DT_BIAS_16,
  CHUNK_COLS,
  CHUNK_SPEC_COUNT
};
_Static_assert((int)CHUNK_SPEC_COUNT <= (int)MAX_SPEC && (int)MAX_SPEC <= (int)SM_VK_MAX_SPEC,
               "spec constants");
enum { MODE_RECURRENT, MODE_CHUNKED };
enum { DECAY_NONE, DECAY_HEAD, DECAY_TOKEN, DECAY_VECTOR, DECAY_SSD };
/* chunk_scan.comp's bindings. */
enum { CB_Q, CB_K, CB_V, CB_G, CB_STATE, CB_OUT, CB_A, CB_D_SKIP, CB_Z, CB_DT_BIAS };

/* Calls this short run token by token everywhere (decode). */
enum { DECODE_TOKENS = 8 };

/* Tunables by device type: tokens per chunk when the call gives no hint, and
 * the most whatever the hint (chunk loops are unrolled: T x T and T x Dk
 * bodies); the most value columns per work-group; whether calls without a
 * chunk hint run token by token whatever their length; and, token by token,
 * the state floats an invocation keeps (its columns times Dk; 0: one column
 * per invocation). */
typedef struct chunk_tuning {
  VkPhysicalDeviceType type;
  uint32_t chunk, max_chunk, max_columns;
  bool hintless_recurrent;
  uint32_t state_floats;
} chunk_tuning;

static const chunk_tuning chunk_tunings[] = {
    /* lavapipe: every memory access costs a scalar access per lane while
     * arithmetic is cheap, so the token-by-token form with one subgroup per
     * work-group and several columns per invocation (each q and k word
     * serves them all, no shared memory, no barriers) beats chunks by 5-10x
     * (measured, SSD B1 L1024 H24 P64 N128). Its JIT compiles unrolled code
     * slowly: state_floats 256 keeps a pipeline near a second (Dk 256: 1.7 s
     * against 10 s at 1024, for the same speed), and chunks of 64 take 5-15 s
     * against 1.5 s at 16. */
    {VK_PHYSICAL_DEVICE_TYPE_CPU, 16, 16, 256, true, 256},
    {VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, 32, 64, 64, false, 0},
    {VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU, 32, 64, 64, false, 0},
};
static const chunk_tuning chunk_default_tuning = {
    VK_PHYSICAL_DEVICE_TYPE_OTHER, 16, 64, 64, false, 0};

/* What SSD and linear attention look like to chunk_scan.comp. */
typedef struct chunk_problem {
  int64_t batch, tokens, heads, key_dim, value_dim, group_heads;
  int decay;
  float scale;
  bool state_transposed, softplus;
  int32_t chunk_hint;
  int slot[BIND_COUNT]; /* op slot of each binding, -1: none */
} chunk_problem;

/* Key rows padded to a multiple of the spread (chunk_scan.comp's DKP). */
static uint64_t padded_keys(const chunk_problem *c, uint32_t spread) {
  return sm_div_up((uint64_t)c->key_dim, spread) * spread;
}

/* Shared floats of a chunk of t tokens. */
static uint64_t chunk_shared_floats(const chunk_problem *c, uint64_t t, uint32_t spread) {
  const uint64_t keys = padded_keys(c, spread);
  uint64_t floats = 2 * t * keys + t * t + 3 * t;             /* qs, kt, ps, cum (hi, lo), kscale */
  if (c->decay == DECAY_VECTOR) floats += (2 * t + 1) * keys; /* at (hi, lo), edecay */
  return floats;
}

static bool plan_chunk_scan(const sm_device *dev, const sm_op *op, const chunk_problem *c,
                            ssm_plan *plan) {
  const VkPhysicalDeviceLimits *limits = &dev->caps.props.limits;
  const sm_tensor_ref *q = &op->tensors[c->slot[CB_Q]], *k = &op->tensors[c->slot[CB_K]],
                      *v = &op->tensors[c->slot[CB_V]], *out = &op->tensors[c->slot[CB_OUT]];
  sm_tensor_ref none;
  memset(&none, 0, sizeof none);
  for (int i = 0; i < SEQMIX_MAX_RANK; ++i)
    none.shape[i] = 1;
  const sm_tensor_ref *g = c->slot[CB_G] >= 0 ? &op->tensors[c->slot[CB_G]] : &none;
  const sm_tensor_ref *z = c->slot[CB_Z] >= 0 ? &op->tensors[c->slot[CB_Z]] : &none;
  const sm_tensor_ref *skip = c->slot[CB_D_SKIP] >= 0 ? &op->tensors[c->slot[CB_D_SKIP]] : &none;
  const sm_tensor_ref *bias = c->slot[CB_DT_BIAS] >= 0 ? &op->tensors[c->slot[CB_DT_BIAS]] : &none;
  memset(plan, 0, sizeof *plan);
  if (!device_can(dev, q->dtype)) return false;
  if (c->key_dim < 1 || c->key_dim > MAX_STATE_DIM || !fits_i32(c->tokens) ||
      !fits_i32(c->value_dim) || (uint64_t)c->heads > limits->maxComputeWorkGroupCount[1])
    return false;
  plan->module = q->dtype == SEQMIX_F32 ? "chunk_scan_f32.spv" : "chunk_scan_a16.spv";
  plan->batch = c->batch;
  plan->tokens = c->tokens;
  for (int i = 0; i < BIND_COUNT; ++i) {
    plan->slot[i] = c->slot[i];
    plan->cut[i] = CUT_SEQUENCE;
  }
  plan->cut[CB_A] = plan->cut[CB_D_SKIP] = plan->cut[CB_DT_BIAS] = CUT_NONE;
  if (c->decay == DECAY_HEAD) plan->cut[CB_G] = CUT_NONE;
  plan->cut[CB_STATE] = CUT_BATCH;
  plan->state_binding = CB_STATE;
  const int64_t state_shape[] = {c->batch, c->heads,
                                 c->state_transposed ? c->value_dim : c->key_dim,
                                 c->state_transposed ? c->key_dim : c->value_dim};
  dense_state(4, state_shape, &plan->scratch_state);

  const chunk_tuning *tuning = &chunk_default_tuning;
  for (size_t i = 0; i < sizeof chunk_tunings / sizeof chunk_tunings[0]; ++i)
    if (chunk_tunings[i].type == dev->caps.props.deviceType) tuning = &chunk_tunings[i];
  const uint32_t wg_max = workgroup_limit(dev, 1024);
  const uint32_t spread = spread_width(dev);
  if (spread > wg_max) return false;
  /* Token by token for decode, on devices that prefer it without a hint, and
   * where not even a chunk of `spread` tokens fits shared memory. */
  const bool recurrent =
      c->tokens <= DECODE_TOKENS || (c->chunk_hint == 0 && tuning->hintless_recurrent) ||
      chunk_shared_floats(c, spread, spread) * 4 > limits->maxComputeSharedMemorySize;
  const uint64_t target = sm_vk_target_groups(dev), tasks = (uint64_t)(c->batch * c->heads);
  uint64_t chunk = spread, columns, cols = 1;
  if (recurrent) {
    /* Token by token: chunk only sizes arrays. One subgroup of invocations
     * with state_floats of state each where the tuning says so, halving the
     * columns while there are too few work-groups; else lanes over columns. */
    if (tuning->state_floats) {
      columns = spread;
      cols = sm_div_up((uint64_t)c->value_dim, columns);
      const uint64_t most = tuning->state_floats / padded_keys(c, spread);
      if (cols > most) cols = most > 0 ? most : 1;
      while (cols > 1 && tasks * sm_div_up((uint64_t)c->value_dim, columns * cols) < target)
        cols = sm_div_up(cols, 2);
    } else {
      columns = sm_ceil_pow2((uint64_t)c->value_dim);
      if (columns > tuning->max_columns) columns = tuning->max_columns;
      if (columns > wg_max) columns = wg_max;
      while (columns > 8 && columns > spread &&
             tasks * sm_div_up((uint64_t)c->value_dim, columns) < target)
        columns /= 2;
    }
  } else {
    /* Chunk: the hint (or the tuning), a power of two, no longer than the
     * call needs, no wider than a work-group, within shared memory, and a
     * multiple of the spread. */
    chunk = sm_floor_pow2(c->chunk_hint > 0 ? (uint64_t)c->chunk_hint : tuning->chunk);
    if (chunk > tuning->max_chunk) chunk = tuning->max_chunk;
    if (chunk > sm_ceil_pow2((uint64_t)c->tokens)) chunk = sm_ceil_pow2((uint64_t)c->tokens);
    if (chunk > wg_max) chunk = wg_max;
    while (chunk > spread &&
           chunk_shared_floats(c, chunk, spread) * 4 > limits->maxComputeSharedMemorySize)
      chunk /= 2;
    if (chunk < spread) chunk = spread;
    /* Columns per work-group: all of Dv up to max_columns, halved while too
     * few work-groups (each redoes the chunk's scores), at least the chunk. */
    columns = sm_ceil_pow2((uint64_t)c->value_dim);
    if (columns > tuning->max_columns) columns = tuning->max_columns;
    if (columns > wg_max) columns = wg_max;
    while (columns > 8 && columns / 2 >= chunk &&
           tasks * sm_div_up((uint64_t)c->value_dim, columns) < target)
      columns /= 2;
  }
  if (columns < 8) columns = 8 < wg_max ? 8 : wg_max;
  if (columns < chunk) columns = chunk;
  if (columns < spread) columns = spread;
  const uint32_t wg = (uint32_t)columns;
  const uint64_t tiles = sm_div_up((uint64_t)c->value_dim, columns * cols);
  if (tiles > limits->maxComputeWorkGroupCount[0]) return false;
  plan->groups[0] = (uint32_t)tiles;
  plan->groups[1] = (uint32_t)c->heads;
  /* Loop trips: the loop over tokens or chunks, and per chunk the loops whose
   * trip count depends on the invocation (the others are unrolled). */
  int64_t max_tokens = budget_tokens(dev, 16, 2, 1);
  if (!recurrent) {
    const uint64_t keys = padded_keys(c, spread);
    const uint64_t staging = sm_div_up(chunk * keys, wg), per_key = sm_div_up(keys, wg);
    max_tokens = budget_tokens(dev, 16, 4 + 2 * staging + 2 * per_key, chunk);
  }
  if (!choose_pieces(dev, op, max_tokens, plan)) return false;

  chunk_push *p = &plan->push.chunk;
  plan->push_bytes = sizeof *p;
  p->scale = c->scale;
  const sm_tensor_ref *s = bound_tensor(op, plan, plan->state_binding);
  if (!strides_of(q, 0, 3, (int32_t *[]){&p->q_sb, &p->q_st, &p->q_sh}) ||
      !strides_of(k, 0, 3, (int32_t *[]){&p->k_sb, &p->k_st, &p->k_sh}) ||
      !strides_of(v, 0, 3, (int32_t *[]){&p->v_sb, &p->v_st, &p->v_sh}) ||
      !strides_of(out, 0, 3, (int32_t *[]){&p->o_sb, &p->o_st, &p->o_sh}) ||
      !strides_of(z, 0, 3, (int32_t *[]){&p->z_sb, &p->z_st, &p->z_sh}) ||
      !strides_of(s, 0, 3, (int32_t *[]){&p->s_sb, &p->s_sh, &p->s_row}))
    return false;
  if (c->decay == DECAY_HEAD) {
    if (!stride_of(g, 0, &p->g_sh)) return false;
  } else if (!strides_of(g, 0, 3, (int32_t *[]){&p->g_sb, &p->g_st, &p->g_sh})) {
    return false;
  }

  uint32_t *spec = plan->spec;
  plan->spec_count = CHUNK_SPEC_COUNT;
  plan->spec_state_in = CHUNK_STATE_IN;
  plan->spec_state_out = CHUNK_STATE_OUT;
  spec[CHUNK_WORKGROUP_SIZE] = wg;
  spec[CHUNK_DK] = (uint32_t)c->key_dim;
  spec[CHUNK_DV] = (uint32_t)c->value_dim;
  spec[CHUNK_T] = (uint32_t)chunk;
  spec[CHUNK_MODE] = recurrent ? MODE_RECURRENT : MODE_CHUNKED;
  spec[CHUNK_DECAY] = (uint32_t)c->decay;
  spec[CHUNK_ROW_SETS] = wg / (uint32_t)chunk;
  spec[CHUNK_SPREAD] = spread;
  spec[CHUNK_GROUP_HEADS] = (uint32_t)c->group_heads;
  spec[CHUNK_STATE_TRANSPOSED] = c->state_transposed;
  spec[CHUNK_HAS_D_SKIP] = skip->buffer != NULL;
  spec[CHUNK_HAS_Z] = z->buffer != NULL;
  spec[CHUNK_HAS_DT_BIAS] = bias->buffer != NULL;
  spec[CHUNK_SOFTPLUS] = c->softplus;
  spec[CHUNK_ACT_BF16] = q->dtype == SEQMIX_BF16;
  spec[CHUNK_D_SKIP_16] = skip->buffer && skip->dtype != SEQMIX_F32;
  spec[CHUNK_DT_BIAS_16] = bias->buffer && bias->dtype != SEQMIX_F32;
  spec[CHUNK_COLS] = (uint32_t)cols;
  return true;
}

/* SSD: q = Cm, k = Bm (scaled by dt' in the shader), v = x, g = dt. */
static chunk_problem ssd_problem(const sm_op *op) {
  const sm_ssd_desc *d = &op->u.ssd;
  chunk_problem c = {
      .batch = d->batch,
      .tokens = d->tokens,
      .heads = d->heads,
      .key_dim = d->state_size,
      .value_dim = d->head_dim,
      .group_heads = d->heads / d->groups,
      .decay = DECAY_SSD,
      .scale = 1.0f,
      .state_transposed = true,
      .softplus = d->dt_softplus,
      .chunk_hint = d->chunk_size ? d->chunk_size : (int32_t)sm_knob(op, SM_KNOB_VK_SSM_CHUNK),
      .slot = {[CB_Q] = SM_SSD_C,
               [CB_K] = SM_SSD_B,
               [CB_V] = SM_SSD_X,
               [CB_G] = SM_SSD_DT,
               [CB_STATE] = SM_SSD_STATE,
               [CB_OUT] = SM_SSD_Y,
               [CB_A] = SM_SSD_A,
               [CB_D_SKIP] = SM_SSD_D_SKIP,
               [CB_Z] = SM_SSD_Z,
               [CB_DT_BIAS] = SM_SSD_DT_BIAS},
  };
  return c;
}

static chunk_problem linear_attention_problem(const sm_op *op) {
  const sm_linear_attention_desc *d = &op->u.linear_attention;
  static const int decays[] = {[SEQMIX_DECAY_NONE] = DECAY_NONE,
                               [SEQMIX_DECAY_HEAD] = DECAY_HEAD,
                               [SEQMIX_DECAY_TOKEN] = DECAY_TOKEN,
                               [SEQMIX_DECAY_VECTOR] = DECAY_VECTOR};
  chunk_problem c = {
      .batch = d->batch,
      .tokens = d->tokens,
      .heads = d->heads,
      .key_dim = d->key_dim,
      .value_dim = d->value_dim,
      .group_heads = 1,
      .decay = decays[d->decay],
      .scale = d->scale,
      .chunk_hint = d->chunk_size ? d->chunk_size : (int32_t)sm_knob(op, SM_KNOB_VK_SSM_CHUNK),
      .slot = {[CB_Q] = SM_LA_Q,
               [CB_K] = SM_LA_K,
               [CB_V] = SM_LA_V,
               [CB_G] = d->decay == SEQMIX_DECAY_NONE ? -1 : SM_LA_G,
               [CB_STATE] = SM_LA_STATE,
               [CB_OUT] = SM_LA_OUT,
               [CB_A] = -1,
               [CB_D_SKIP] = -1,
               [CB_Z] = -1,
               [CB_DT_BIAS] = -1},
  };
  return c;
}

bool sm_vk_ssd_supports(sm_device *dev, const sm_op *op) {
  ssm_plan plan;
  const chunk_problem c = ssd_problem(op);
  return plan_chunk_scan(dev, op, &c, &plan);
}

seqmix_status sm_vk_ssd_launch(sm_device *dev, const sm_op *op) {
  ssm_plan plan;
  const chunk_problem c = ssd_problem(op);
  if (!plan_chunk_scan(dev, op, &c, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  return run_plan(dev, op, &plan);
}

bool sm_vk_linear_attention_supports(sm_device *dev, const sm_op *op) {
  ssm_plan plan;
  const chunk_problem c = linear_attention_problem(op);
  return plan_chunk_scan(dev, op, &c, &plan);
}

seqmix_status sm_vk_linear_attention_launch(sm_device *dev, const sm_op *op) {
  ssm_plan plan;
  const chunk_problem c = linear_attention_problem(op);
  if (!plan_chunk_scan(dev, op, &c, &plan))
    return sm_fail(SEQMIX_ERROR_UNSUPPORTED, "%s: the vulkan backend cannot run this call",
                   op->name);
  return run_plan(dev, op, &plan);
}
