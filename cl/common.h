/*
 * Shared by every seqmix OpenCL C kernel (OpenCL C 1.2; the host prepends this
 * text to each source, there is no include path at run time).
 *
 * Storage dtypes are build options naming one of f32, f16, bf16 (-DACT=f16).
 * Arithmetic is always f32: f16 goes through vload_half/vstore_half (core
 * OpenCL C, no cl_khr_fp16 needed), bf16 is stored as ushort and widened by a
 * shift. Loads and stores come in widths 1, 2, 4, 8, 16 over contiguous
 * elements; a pointer needs only its element's alignment.
 *
 *   SM_T(dt)          storage element type: float, half, ushort
 *   SM_FLOATN(n)      sm_float1 (= float), float2, ... float16
 *   SM_LOAD(dt, n)    sm_floatn f(const global SM_T(dt) *p): p[0..n) as f32
 *   SM_STORE(dt, n)   void f(global SM_T(dt) *p, sm_floatn v): round to nearest even
 *   SM_LOADA, SM_STOREA  the same for p aligned to the whole vector (n elements),
 *                     which lets compilers use single vector loads and stores
 *                     (some split vloadn/vstoren of 16-bit types into scalars)
 */
#ifndef SEQMIX_CL_COMMON_H
#define SEQMIX_CL_COMMON_H

#define SM_CAT_(a, b) a##b
#define SM_CAT(a, b) SM_CAT_(a, b)
#define SM_CAT3(a, b, c) SM_CAT(SM_CAT(a, b), c)

typedef float sm_f32_t;
typedef half sm_f16_t;
typedef ushort sm_bf16_t;
#define SM_T(dt) SM_CAT3(sm_, dt, _t)

typedef float sm_float1;
typedef float2 sm_float2;
typedef float4 sm_float4;
typedef float8 sm_float8;
typedef float16 sm_float16;
#define SM_FLOATN(n) SM_CAT(sm_float, n)

#define SM_LOAD(dt, n) SM_CAT3(SM_CAT(sm_load, n), _, dt)
#define SM_STORE(dt, n) SM_CAT3(SM_CAT(sm_store, n), _, dt)
#define SM_LOADA(dt, n) SM_CAT3(SM_CAT(sm_loada, n), _, dt)
#define SM_STOREA(dt, n) SM_CAT3(SM_CAT(sm_storea, n), _, dt)

/* f32 -> bf16 bits, round to nearest even; a NaN stays a (quiet) NaN. */
static inline ushort sm_bf16_bits(float f) {
  uint u = as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
  return (ushort)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Width 1. */
static inline float sm_load1_f32(const global float *p) { return *p; }
static inline float sm_load1_f16(const global half *p) { return vload_half(0, p); }
static inline float sm_load1_bf16(const global ushort *p) { return as_float((uint)*p << 16); }
static inline void sm_store1_f32(global float *p, float v) { *p = v; }
static inline void sm_store1_f16(global half *p, float v) { vstore_half_rte(v, 0, p); }
static inline void sm_store1_bf16(global ushort *p, float v) { *p = sm_bf16_bits(v); }
#define sm_loada1_f32 sm_load1_f32
#define sm_loada1_f16 sm_load1_f16
#define sm_loada1_bf16 sm_load1_bf16
#define sm_storea1_f32 sm_store1_f32
#define sm_storea1_f16 sm_store1_f16
#define sm_storea1_bf16 sm_store1_bf16

/* Widths 2 to 16: the same, lane by lane. */
#define SM_DEFINE_WIDTH(n)                                                                         \
  static inline ushort##n sm_bf16_bits##n(float##n f) {                                            \
    uint##n u = as_uint##n(f);                                                                     \
    uint##n rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;                                      \
    uint##n quiet_nan = (u >> 16) | 0x40u;                                                         \
    return convert_ushort##n(select(rounded, quiet_nan, (u & 0x7fffffffu) > 0x7f800000u));         \
  }                                                                                                \
  static inline float##n sm_load##n##_f32(const global float *p) { return vload##n(0, p); }       \
  static inline float##n sm_load##n##_f16(const global half *p) { return vload_half##n(0, p); }   \
  static inline float##n sm_load##n##_bf16(const global ushort *p) {                              \
    return as_float##n(convert_uint##n(vload##n(0, p)) << 16);                                     \
  }                                                                                                \
  static inline void sm_store##n##_f32(global float *p, float##n v) { vstore##n(v, 0, p); }       \
  static inline void sm_store##n##_f16(global half *p, float##n v) {                              \
    vstore_half##n##_rte(v, 0, p);                                                                 \
  }                                                                                                \
  static inline void sm_store##n##_bf16(global ushort *p, float##n v) {                           \
    vstore##n(sm_bf16_bits##n(v), 0, p);                                                           \
  }                                                                                                \
  static inline float##n sm_loada##n##_f32(const global float *p) {                               \
    return *(const global float##n *)p;                                                            \
  }                                                                                                \
  static inline float##n sm_loada##n##_f16(const global half *p) { return vloada_half##n(0, p); } \
  static inline float##n sm_loada##n##_bf16(const global ushort *p) {                             \
    return as_float##n(convert_uint##n(*(const global ushort##n *)p) << 16);                      \
  }                                                                                                \
  static inline void sm_storea##n##_f32(global float *p, float##n v) { *(global float##n *)p = v; } \
  static inline void sm_storea##n##_f16(global half *p, float##n v) {                             \
    vstorea_half##n##_rte(v, 0, p);                                                                \
  }                                                                                                \
  static inline void sm_storea##n##_bf16(global ushort *p, float##n v) {                          \
    *(global ushort##n *)p = sm_bf16_bits##n(v);                                                   \
  }
SM_DEFINE_WIDTH(2)
SM_DEFINE_WIDTH(4)
SM_DEFINE_WIDTH(8)
SM_DEFINE_WIDTH(16)
#undef SM_DEFINE_WIDTH

#endif
