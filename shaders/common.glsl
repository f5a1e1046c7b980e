// Shared GLSL for seqmix kernels: storage types and load/store helpers.
//
// Each shader is compiled three times (meson.build):
//   (no defines)                 activations and parameters stored as float
//   -DACT_16BIT                  activations uint16_t, parameters float
//   -DACT_16BIT -DPARAM_16BIT    both uint16_t
// Whether 16 bits hold f16 or bf16 is a specialization constant of the
// shader, passed to the helpers below as `bf16`. Arithmetic is always f32;
// f16 goes through unpackHalf2x16/packHalf2x16, so no shaderFloat16 is needed,
// only storageBuffer16BitAccess.
#ifndef SEQMIX_COMMON_GLSL
#define SEQMIX_COMMON_GLSL

#if defined(ACT_16BIT) || defined(PARAM_16BIT)
#extension GL_EXT_shader_16bit_storage : require
#endif

float sm_from_bits16(uint bits, bool bf16) {
  return bf16 ? uintBitsToFloat(bits << 16) : unpackHalf2x16(bits).x;
}

// f32 -> bf16 bits, round to nearest even; a NaN stays a (quiet) NaN.
uint sm_bf16_bits(float f) {
  uint u = floatBitsToUint(f);
  if (isnan(f)) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

uint sm_to_bits16(float f, bool bf16) {
  return bf16 ? sm_bf16_bits(f) : (packHalf2x16(vec2(f, 0.0)) & 0xffffu);
}

// Two or four 16-bit values packed in uints, low half first (little endian).
vec2 sm_from_bits16x2(uint bits, bool bf16) {
  if (bf16) return uintBitsToFloat(uvec2(bits << 16, bits & 0xffff0000u));
  return unpackHalf2x16(bits);
}

uint sm_to_bits16x2(vec2 f, bool bf16) {
  if (bf16) return sm_bf16_bits(f.x) | (sm_bf16_bits(f.y) << 16);
  return packHalf2x16(f);
}

vec4 sm_from_bits16x4(uvec2 bits, bool bf16) {
  return vec4(sm_from_bits16x2(bits.x, bf16), sm_from_bits16x2(bits.y, bf16));
}

uvec2 sm_to_bits16x4(vec4 f, bool bf16) {
  return uvec2(sm_to_bits16x2(f.xy, bf16), sm_to_bits16x2(f.zw, bf16));
}

// ACT_T: one activation element; ACT2_T, ACT4_T: two and four adjacent ones
// (16-bit: packed into uints).
#ifdef ACT_16BIT
#define ACT_T uint16_t
#define ACT2_T uint
#define ACT4_T uvec2
#define ACT_LOAD(v, bf16) sm_from_bits16(uint(v), bf16)
#define ACT_STORE(f, bf16) uint16_t(sm_to_bits16(f, bf16))
#define ACT2_LOAD(v, bf16) sm_from_bits16x2(v, bf16)
#define ACT2_STORE(f, bf16) sm_to_bits16x2(f, bf16)
#define ACT4_LOAD(v, bf16) sm_from_bits16x4(v, bf16)
#define ACT4_STORE(f, bf16) sm_to_bits16x4(f, bf16)
#else
#define ACT_T float
#define ACT2_T vec2
#define ACT4_T vec4
#define ACT_LOAD(v, bf16) (v)
#define ACT_STORE(f, bf16) (f)
#define ACT2_LOAD(v, bf16) (v)
#define ACT2_STORE(f, bf16) (f)
#define ACT4_LOAD(v, bf16) (v)
#define ACT4_STORE(f, bf16) (f)
#endif

#ifdef PARAM_16BIT
#define PARAM_T uint16_t
#define PARAM_LOAD(v, bf16) sm_from_bits16(uint(v), bf16)
#else
#define PARAM_T float
#define PARAM_LOAD(v, bf16) (v)
#endif

// ---- Activations shared by the recurrent mixers ----

// softplus(x) = log(1 + e^x) in f32 without cancellation: x itself for x > 20
// (where the two agree in f32); for e^x <= 0.25, log1p(e^x) = 2 atanh(s) with
// s = e^x / (2 + e^x) <= 1/9 through its series (log(1 + e^x) would lose the
// small e^x to rounding, and GLSL's log may be off by 2^-21 near 1);
// log(1 + e^x) otherwise.
float sm_softplus(float x) {
  if (x > 20.0) return x;
  const float e = exp(x);
  if (e > 0.25) return log(1.0 + e);
  const float s = e / (2.0 + e), s2 = s * s;
  return 2.0 * s *
         (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0)))));
}

// silu(x) = x sigmoid(x); for very negative x, exp(-x) = inf gives -0.
float sm_silu(float x) { return x / (1.0 + exp(-x)); }

// Element offsets of up to 12 bindings packed 8 bits each into 3 ints (push
// constants are scarce). Every offset is below minStorageBufferOffsetAlignment
// (at most 256 bytes) divided by the element size, so it fits.
#define SM_OFFSET(packed, binding) (((packed)[(binding) >> 2] >> (8 * ((binding)&3))) & 255)

#endif
