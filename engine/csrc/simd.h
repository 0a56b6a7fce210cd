/* 8-lane fp32 vectors (GCC/Clang vector extensions: AVX2 with -march=native on x86, NEON pairs on
 * arm64) and the exp shared by the kernels in this folder. */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

#if defined(__AVX__)
#include <immintrin.h>
/* one instruction each (the generic form below is a compare and a blend); same NaN rule: b */
static inline v8 min8(v8 a, v8 b) { return (v8)_mm256_min_ps((__m256)a, (__m256)b); }
static inline v8 max8(v8 a, v8 b) { return (v8)_mm256_max_ps((__m256)a, (__m256)b); }
#else
static inline v8 min8(v8 a, v8 b) { return (v8)(((v8i)a & (a < b)) | ((v8i)b & ~(a < b))); }
static inline v8 max8(v8 a, v8 b) { return (v8)(((v8i)a & (a > b)) | ((v8i)b & ~(a > b))); }
#endif

/* The sum and the largest of the 8 lanes (the sum in lane order). */
static inline float sum8(v8 x) {
    float s = 0;
    for (int i = 0; i < 8; i++) s += x[i];
    return s;
}

static inline float hmax8(v8 x) {
    float m = x[0];
    for (int i = 1; i < 8; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* 2^t, 8 lanes, for t <= 126: t = n + f with n = round(t) (adding 1.5 * 2^23 rounds and leaves n
 * in the low mantissa bits), |f| <= 1/2; 2^f = 1 + f q(f), q a degree-5 polynomial fitted for the
 * least maximum relative error (2.8e-9; 1.05e-7 = 1.8 ulp with fp32 rounding, measured over the
 * range), 2^n from the exponent bits. Inputs below -126 are raised to -126 (no denormals: 2^-126
 * stands for 0). */
static inline v8 exp2_8_upto126(v8 t) {
    const v8 magic = (v8){0} + 12582912.0f;                  /* 1.5 * 2^23 */
    t = max8(t, (v8){0} - 126.0f);
    v8 tm = t + magic;
    v8 f = t - (tm - magic);
    v8 p = f * 1.5353362e-4f + 1.3398874e-3f;
    p = p * f + 9.6184369e-3f;
    p = p * f + 5.5503324e-2f;
    p = p * f + 2.4022648e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    return p * (v8)((((v8i)tm - (v8i)magic) + 127) << 23);
}

/* 2^t, 8 lanes, any t (clamped to -126 .. 126: no overflow). */
static inline v8 exp2_8(v8 t) { return exp2_8_upto126(min8(t, (v8){0} + 126.0f)); }

/* e^x, 8 lanes (exp2_8 of x log2 e). */
static inline v8 exp8(v8 x) { return exp2_8(x * 1.44269504088896341f); }

/* silu(x) = x / (1 + e^-x): 8 lanes, and one value (the tails of vector loops). */
static inline v8 silu8(v8 x) { return x / (1.0f + exp8(-x)); }
static inline float silu1(float x) { return x / (1.0f + expf(-x)); }
