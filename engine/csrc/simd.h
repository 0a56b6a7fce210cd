/* 8-lane fp32 vectors (GCC/Clang vector extensions: AVX2 with -march=native on x86, NEON pairs on
 * arm64) and the exp shared by the kernels in this folder. */
#pragma once
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

static inline v8 min8(v8 a, v8 b) { return (v8)(((v8i)a & (a < b)) | ((v8i)b & ~(a < b))); }
static inline v8 max8(v8 a, v8 b) { return (v8)(((v8i)a & (a > b)) | ((v8i)b & ~(a > b))); }

/* 2^t, 8 lanes: t = n + f with n = round(t) (adding 1.5 * 2^23 rounds and leaves n in the low
 * mantissa bits), |f| <= 1/2; 2^f by the degree-6 Taylor polynomial of e^(f ln 2) (relative error
 * below 2e-7), 2^n from the exponent bits. Inputs are clamped to -126 .. 126 (no denormals, no
 * overflow: 2^-126 stands for 0). */
static inline v8 exp2_8(v8 t) {
    const v8 magic = (v8){0} + 12582912.0f;                  /* 1.5 * 2^23 */
    t = max8(min8(t, (v8){0} + 126.0f), (v8){0} - 126.0f);
    v8 tm = t + magic;
    v8 f = t - (tm - magic);
    v8 p = f * 1.5403530393381609e-4f + 1.3333558146428443e-3f;   /* (ln 2)^i / i! */
    p = p * f + 9.6181291076284772e-3f;
    p = p * f + 5.5504108664821580e-2f;
    p = p * f + 2.4022650695910071e-1f;
    p = p * f + 6.9314718055994531e-1f;
    p = p * f + 1.0f;
    return p * (v8)((((v8i)tm - (v8i)magic) + 127) << 23);
}

/* e^x, 8 lanes (exp2_8 of x log2 e). */
static inline v8 exp8(v8 x) { return exp2_8(x * 1.44269504088896341f); }
