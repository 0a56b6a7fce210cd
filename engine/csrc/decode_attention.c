/* Attention of one new token over a long K/V (fp32, CPU): decode's `attend` in one call, on the
 * pool of decode.c ("flash decoding"). engine/cpu_kernels.py calls it.
 *
 * Why: after a long prompt every decoded token reads the whole K/V once; torch's SDPA took 4.9 ms
 * for 64K keys (G 2, Hd 32) where reading them takes about 1 ms, and attention.c, built for blocks
 * of 24 queries, is no faster with one.
 *
 * Glossary: H query heads, G K/V heads (the P = H/G query heads of group g share K/V head g), L keys,
 * Hd head dim. The keys of each group are cut into chunks of CHUNK keys (a fixed size, so the result
 * does not depend on the number of threads); a unit is one (group, chunk). It walks its keys in
 * blocks of KB with the online softmax, keeping per query head a running max m, sum l and
 * unnormalised output acc [Hd]:
 *     s[p, key] = q_p . k_key            8 keys at a time, the 8 dot products reduced together
 *     m' = max(m, max s);  pr = 2^(s - m');  l = l 2^(m - m') + sum pr;  acc = acc 2^(m - m') + pr V
 * (q was scaled by Hd^-0.5 log2 e beforehand). The caller's thread then merges the chunks of each
 * head in chunk order: out = sum_c acc_c 2^(m_c - M) / sum_c l_c 2^(m_c - M), M = max_c m_c.
 */
#include <float.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "pool.h"
#include "simd.h"

#define CHUNK 2048                  /* keys a unit (1024-4096 alike at 64K keys) */
#define KB 64                       /* keys a block: K and V rows of a block stay in L1/L2 */
#define MAX_HD 256

typedef struct {
    const float *q, *k, *v;
    int64_t q_sh, kv_sh, kv_st, H, G, L, Hd, chunks;
    float scale;                    /* Hd^-0.5 log2 e */
    float *part;                    /* [G, chunks, P, Hd + 2]: acc, then m and l */
    _Atomic int *failed;
} decode_attend_t;

/* lane i = the sum of the 8 lanes of a[i] */
static inline v8 sum8x8(const v8 a[8]) {
#if defined(__AVX__)
    __m256 t0 = _mm256_hadd_ps((__m256)a[0], (__m256)a[1]), t1 = _mm256_hadd_ps((__m256)a[2], (__m256)a[3]);
    __m256 t2 = _mm256_hadd_ps((__m256)a[4], (__m256)a[5]), t3 = _mm256_hadd_ps((__m256)a[6], (__m256)a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);   /* halves of a0..a3, a4..a7 */
    return (v8)_mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
#else
    v8 out;
    for (int i = 0; i < 8; i++) out[i] = sum8(a[i]);
    return out;
#endif
}

/* s[p, 0..n) = q_p . K[key] for the n <= KB keys at K (row stride ks); lanes past n are -FLT_MAX.
 * 8 keys at a time: 8 independent FMA chains sharing each load of q. */
static void block_scores(const float *qs, int64_t P, const float *K, int64_t ks, int64_t n, int64_t Hd, float *s) {
    for (int64_t k0 = 0; k0 < n; k0 += 8) {
        const float *kr[8];
        for (int i = 0; i < 8; i++) kr[i] = K + (k0 + i < n ? k0 + i : n - 1) * ks;
        for (int64_t p = 0; p < P; p++) {
            const float *q = qs + p * Hd;
            v8 a[8] = {{0}};
            for (int64_t d = 0; d < Hd; d += 8) {
                const v8 qv = load8(q + d);
                a[0] += qv * load8(kr[0] + d); a[1] += qv * load8(kr[1] + d);
                a[2] += qv * load8(kr[2] + d); a[3] += qv * load8(kr[3] + d);
                a[4] += qv * load8(kr[4] + d); a[5] += qv * load8(kr[5] + d);
                a[6] += qv * load8(kr[6] + d); a[7] += qv * load8(kr[7] + d);
            }
            store8(s + p * KB + k0, sum8x8(a));
            if (k0 + 8 > n)                                 /* only the last group of a short block */
                for (int64_t i = n; i < k0 + 8; i++) s[p * KB + i] = -FLT_MAX;
        }
    }
}

static void attend_chunk(const void *arg, int64_t unit) {
    const decode_attend_t *a = arg;
    const int64_t Hd = a->Hd, P = a->H / a->G, g = unit / a->chunks, c = unit % a->chunks;
    const int64_t first = c * CHUNK, last = first + CHUNK < a->L ? first + CHUNK : a->L;
    const float *K = a->k + g * a->kv_sh, *V = a->v + g * a->kv_sh;
    float *part = a->part + unit * P * (Hd + 2);
    /* scaled queries, scores: on the heap (threads of other runtimes may have small stacks) */
    float *qs = malloc(sizeof(float) * (P * Hd + P * KB));
    if (!qs) { atomic_store(a->failed, 1); return; }
    float *s = qs + P * Hd;
    for (int64_t p = 0; p < P; p++) {
        const float *q = a->q + (g * P + p) * a->q_sh;
        float *acc = part + p * (Hd + 2);
        for (int64_t d = 0; d < Hd; d++) { qs[p * Hd + d] = q[d] * a->scale; acc[d] = 0; }
        acc[Hd] = -FLT_MAX;                       /* m */
        acc[Hd + 1] = 0;                          /* l */
    }
    for (int64_t k0 = first; k0 < last; k0 += KB) {
        const int64_t n = last - k0 < KB ? last - k0 : KB;
        const float *Kb = K + k0 * a->kv_st, *Vb = V + k0 * a->kv_st;
        block_scores(qs, P, Kb, a->kv_st, n, Hd, s);
        for (int64_t p = 0; p < P; p++) {
            float *acc = part + p * (Hd + 2), *sp = s + p * KB;
            v8 mv = (v8){0} - FLT_MAX;
            for (int64_t kk = 0; kk < n; kk += 8) mv = max8(mv, load8(sp + kk));
            const float m_blk = hmax8(mv), m_old = acc[Hd], m_new = m_blk > m_old ? m_blk : m_old;
            v8 sum = {0};
            for (int64_t kk = 0; kk < n; kk += 8) {
                store8(sp + kk, exp2_8_upto126(load8(sp + kk) - m_new));
                for (int64_t i = n; i < kk + 8; i++) sp[i] = 0;    /* lanes past n: 2^-126, made 0 */
                sum += load8(sp + kk);
            }
            const float alpha = exp2_8_upto126((v8){0} + (m_old - m_new))[0];
            acc[Hd] = m_new;
            acc[Hd + 1] = acc[Hd + 1] * alpha + sum8(sum);
            int64_t d = 0;                                /* acc = alpha acc + pr V */
            for (; d + 32 <= Hd; d += 32) {   /* 4 vectors x even / odd keys: 8 independent FMA chains */
                v8 o0 = load8(acc + d) * alpha, o1 = load8(acc + d + 8) * alpha;
                v8 o2 = load8(acc + d + 16) * alpha, o3 = load8(acc + d + 24) * alpha;
                v8 e0 = {0}, e1 = {0}, e2 = {0}, e3 = {0};
                int64_t kk = 0;
                for (; kk + 2 <= n; kk += 2) {
                    const float *r0 = Vb + kk * a->kv_st + d, *r1 = r0 + a->kv_st;
                    const float w0 = sp[kk], w1 = sp[kk + 1];
                    o0 += w0 * load8(r0); o1 += w0 * load8(r0 + 8);
                    o2 += w0 * load8(r0 + 16); o3 += w0 * load8(r0 + 24);
                    e0 += w1 * load8(r1); e1 += w1 * load8(r1 + 8);
                    e2 += w1 * load8(r1 + 16); e3 += w1 * load8(r1 + 24);
                }
                if (kk < n) {
                    const float *r0 = Vb + kk * a->kv_st + d;
                    const float w0 = sp[kk];
                    o0 += w0 * load8(r0); o1 += w0 * load8(r0 + 8);
                    o2 += w0 * load8(r0 + 16); o3 += w0 * load8(r0 + 24);
                }
                store8(acc + d, o0 + e0); store8(acc + d + 8, o1 + e1);
                store8(acc + d + 16, o2 + e2); store8(acc + d + 24, o3 + e3);
            }
            for (; d < Hd; d += 8) {
                v8 o = load8(acc + d) * alpha;
                for (int64_t kk = 0; kk < n; kk++) o += sp[kk] * load8(Vb + kk * a->kv_st + d);
                store8(acc + d, o);
            }
        }
    }
    free(qs);
}

/* out[h] = softmax over keys 0..L-1 of (q[h] . k[g] Hd^-0.5) . v[g], g = h / (H / G): one query per
 * head. q element [h, d] at q[h q_sh + d]; k, v [g, key, d] at [g kv_sh + key kv_st + d]; out [H, Hd]
 * contiguous. Hd a multiple of 8, at most MAX_HD; H a multiple of G; L >= 1. Returns 0; -1 when the
 * shapes are outside that or memory ran out (nothing usable in out: the caller computes it another way). */
int jd_decode_attend(const float *q, int64_t q_sh, const float *k, const float *v, int64_t kv_sh,
                     int64_t kv_st, float *out, int64_t H, int64_t G, int64_t L, int64_t Hd, float scale) {
    if (Hd % 8 || Hd > MAX_HD || Hd <= 0 || G <= 0 || H % G || L <= 0) return -1;
    const int64_t P = H / G, chunks = (L + CHUNK - 1) / CHUNK;
    float *part = malloc(sizeof(float) * G * chunks * P * (Hd + 2));
    if (!part) return -1;
    _Atomic int failed = 0;
    decode_attend_t a = {q, k, v, q_sh, kv_sh, kv_st, H, G, L, Hd, chunks, scale * 1.44269504088896341f,
                         part, &failed};
    jd_parallel(attend_chunk, &a, G * chunks);
    if (atomic_load(&failed)) { free(part); return -1; }
    for (int64_t g = 0; g < G; g++) {
        for (int64_t p = 0; p < P; p++) {
            const float *first = part + (g * chunks * P + p) * (Hd + 2);
            float M = -FLT_MAX, l = 0;
            for (int64_t c = 0; c < chunks; c++) {
                const float m = first[c * P * (Hd + 2) + Hd];
                M = m > M ? m : M;
            }
            float *o = out + (g * P + p) * Hd;
            for (int64_t d = 0; d < Hd; d++) o[d] = 0;
            for (int64_t c = 0; c < chunks; c++) {      /* in chunk order: the same sums on any pool */
                const float *acc = first + c * P * (Hd + 2);
                const float w = exp2_8_upto126((v8){0} + (acc[Hd] - M))[0];
                l += acc[Hd + 1] * w;
                for (int64_t d = 0; d < Hd; d++) o[d] += acc[d] * w;
            }
            for (int64_t d = 0; d < Hd; d++) o[d] /= l;
        }
    }
    free(part);
    return 0;
}
