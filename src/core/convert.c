/* f16 / bf16 <-> f32 on the host, round to nearest even, NaN kept a NaN. */
#include "core/internal.h"

#include <string.h>

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

uint16_t sm_f32_to_bf16(float f) {
  uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float sm_bf16_to_f32(uint16_t h) { return float_of((uint32_t)h << 16); }

uint16_t sm_f32_to_f16(float f) {
  uint32_t u = bits_of(f);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
  if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to inf */
  if (abs < 0x38800000u) {                                   /* subnormal or zero */
    /* Add 0.5 (as a float) so the FPU rounds the mantissa to the f16 subnormal grid. */
    float scaled = float_of(abs) + 0.5f;
    return (uint16_t)(sign | (bits_of(scaled) - bits_of(0.5f)));
  }
  uint32_t mant_odd = (abs >> 13) & 1u;
  abs += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round */
  return (uint16_t)(sign | (abs >> 13));
}

float sm_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {
    float f = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24 */
    return float_of(bits_of(f) | sign);
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));
  return float_of(sign | ((exp + 112) << 23) | (mant << 13));
}

void sm_convert_to_f32(seqmix_dtype from, const void *src, float *dst, size_t n) {
  const uint16_t *h = src;
  switch (from) {
  case SEQMIX_F32: memcpy(dst, src, n * 4); break;
  case SEQMIX_F16:
    for (size_t i = 0; i < n; ++i) dst[i] = sm_f16_to_f32(h[i]);
    break;
  case SEQMIX_BF16:
    for (size_t i = 0; i < n; ++i) dst[i] = sm_bf16_to_f32(h[i]);
    break;
  case SEQMIX_I32:
    for (size_t i = 0; i < n; ++i) dst[i] = (float)((const int32_t *)src)[i];
    break;
  }
}

void sm_convert_from_f32(seqmix_dtype to, const float *src, void *dst, size_t n) {
  uint16_t *h = dst;
  switch (to) {
  case SEQMIX_F32: memcpy(dst, src, n * 4); break;
  case SEQMIX_F16:
    for (size_t i = 0; i < n; ++i) h[i] = sm_f32_to_f16(src[i]);
    break;
  case SEQMIX_BF16:
    for (size_t i = 0; i < n; ++i) h[i] = sm_f32_to_bf16(src[i]);
    break;
  case SEQMIX_I32:
    for (size_t i = 0; i < n; ++i) ((int32_t *)dst)[i] = (int32_t)src[i];
    break;
  }
}
