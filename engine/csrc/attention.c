/* Causal grouped-query attention for prefill and continuation (fp32, CPU): engine/attention.py's
 * `attend` in one call, on the pool of decode.c. engine/cpu_kernels.py calls it.
 *
 * Why: on a long context a prefill's attention costs as much as the rest of a small model, and
 * torch's CPU flash kernel reaches 45-70% of the machine's matmul speed at head dim 32; a
 * continuation also needs two of its calls (past keys, causal diagonal) merged by log-sum-exps.
 *
 * Glossary: H query heads, G K/V heads (the H/G query heads of group g share K/V head g), T queries,
 * past keys before them (L = past + T keys in all), Hd head dim. Query t sees keys 0 .. past + t.
 * A group's query rows are r = (head in group) T + t, R = (H/G) T of them.
 *
 * Layout of the work: a block is QB = 24 consecutive rows of one group (8 lanes x QV = 3 vectors:
 * a lane is a query), run over the keys it sees in blocks of KB keys with the online softmax of
 * flash attention; a unit is up to SUB such blocks, which share each block of keys while it is in
 * L1. Everything is kept transposed, lanes = queries, so the softmax's max and sum are lane-wise and
 * need no horizontal reductions:
 *     S^T [KB, QB] = K Q^T        4 keys x 3 vectors of accumulators, a broadcast K element per FMA row
 *     P^T = 2^(S^T - m)           (Q was scaled by Hd^-0.5 log2 e beforehand; masked keys give 0)
 *     O^T [Hd, QB] = alpha O^T + V^T P^T     4 dims x 3 vectors of accumulators
 * K and V are read in their own row-major layout; only the 24 query rows are transposed. Units are
 * claimed from the pool, so the costlier rows late in a causal prompt balance themselves.
 */
#include <float.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "pool.h"
#include "simd.h"

#define QV 3                        /* query vectors a block */
#define QB (8 * QV)                 /* query rows a block */
#define KB 64                       /* keys a block (32 and 128 measured the same) */
#define SUB 4                       /* blocks of QB rows a unit, at most (1, 2, 8 within noise) */
#define MAX_HD 256

/* Keeps three vectors in registers: without it GCC reloads them for each FMA (16 loads per 12 FMAs,
 * load-bound) to save the registers the 12 accumulators leave free. */
#if defined(__x86_64__) && defined(__AVX__)            /* a v8 fits one ymm register */
#define IN_REGISTERS(a, b, c) __asm__("" : "+x"(a), "+x"(b), "+x"(c))
#else
#define IN_REGISTERS(a, b, c) ((void)0)
#endif

typedef struct {
    const float *q, *k, *v;
    float *out;
    int64_t q_sh, q_st, kv_sh, kv_st, o_sh, o_st;   /* head and token strides (the last dim is contiguous) */
    int64_t H, G, T, past, Hd, sub, units_per_group;   /* sub: blocks of QB rows a unit */
    float scale;                                     /* Hd^-0.5 log2 e */
    _Atomic int *failed;                             /* set when a unit could not get its scratch memory */
} attend_t;

/* s[kk, :] = K[kk] . q^T for the n <= KB keys from K (row stride ks); kk past n read key n - 1.
 * mb[j] = max(mb[j], the scores of vector j) when mb is given. */
static void scores(const float *qt, const float *K, int64_t ks, int64_t n, int64_t Hd, float *s, v8 *mb) {
    for (int64_t kk = 0; kk < n; kk += 4) {
        const float *k0 = K + kk * ks;
        const float *k1 = K + (kk + 1 < n ? kk + 1 : n - 1) * ks;
        const float *k2 = K + (kk + 2 < n ? kk + 2 : n - 1) * ks;
        const float *k3 = K + (kk + 3 < n ? kk + 3 : n - 1) * ks;
        v8 a00 = {0}, a01 = {0}, a02 = {0}, a10 = {0}, a11 = {0}, a12 = {0};
        v8 a20 = {0}, a21 = {0}, a22 = {0}, a30 = {0}, a31 = {0}, a32 = {0};
        for (int64_t d = 0; d < Hd; d++) {
            v8 q0 = load8(qt + d * QB), q1 = load8(qt + d * QB + 8), q2 = load8(qt + d * QB + 16);
            IN_REGISTERS(q0, q1, q2);
            float b0 = k0[d], b1 = k1[d], b2 = k2[d], b3 = k3[d];
            a00 += b0 * q0; a01 += b0 * q1; a02 += b0 * q2;
            a10 += b1 * q0; a11 += b1 * q1; a12 += b1 * q2;
            a20 += b2 * q0; a21 += b2 * q1; a22 += b2 * q2;
            a30 += b3 * q0; a31 += b3 * q1; a32 += b3 * q2;
        }
        if (mb) {
            mb[0] = max8(mb[0], max8(max8(a00, a10), max8(a20, a30)));
            mb[1] = max8(mb[1], max8(max8(a01, a11), max8(a21, a31)));
            mb[2] = max8(mb[2], max8(max8(a02, a12), max8(a22, a32)));
        }
        float *r = s + kk * QB;
        store8(r, a00); store8(r + 8, a01); store8(r + 16, a02);
        store8(r + QB, a10); store8(r + QB + 8, a11); store8(r + QB + 16, a12);
        store8(r + 2 * QB, a20); store8(r + 2 * QB + 8, a21); store8(r + 2 * QB + 16, a22);
        store8(r + 3 * QB, a30); store8(r + 3 * QB + 8, a31); store8(r + 3 * QB + 16, a32);
    }
}

/* ot[d, :] = alpha ot[d, :] + sum_kk V[kk, d] p[kk, :] for the n keys from V (row stride vs). */
static void accumulate(float *ot, const v8 alpha[QV], const float *p, const float *V, int64_t vs, int64_t n,
                       int64_t Hd) {
    for (int64_t d = 0; d < Hd; d += 4) {
        float *o = ot + d * QB;
        v8 a00 = load8(o) * alpha[0], a01 = load8(o + 8) * alpha[1], a02 = load8(o + 16) * alpha[2];
        v8 a10 = load8(o + QB) * alpha[0], a11 = load8(o + QB + 8) * alpha[1], a12 = load8(o + QB + 16) * alpha[2];
        v8 a20 = load8(o + 2 * QB) * alpha[0], a21 = load8(o + 2 * QB + 8) * alpha[1];
        v8 a22 = load8(o + 2 * QB + 16) * alpha[2];
        v8 a30 = load8(o + 3 * QB) * alpha[0], a31 = load8(o + 3 * QB + 8) * alpha[1];
        v8 a32 = load8(o + 3 * QB + 16) * alpha[2];
        const float *vr = V + d;
        for (int64_t kk = 0; kk < n; kk++, vr += vs) {
            const float *pr = p + kk * QB;
            v8 p0 = load8(pr), p1 = load8(pr + 8), p2 = load8(pr + 16);
            IN_REGISTERS(p0, p1, p2);
            float b0 = vr[0], b1 = vr[1], b2 = vr[2], b3 = vr[3];
            a00 += b0 * p0; a01 += b0 * p1; a02 += b0 * p2;
            a10 += b1 * p0; a11 += b1 * p1; a12 += b1 * p2;
            a20 += b2 * p0; a21 += b2 * p1; a22 += b2 * p2;
            a30 += b3 * p0; a31 += b3 * p1; a32 += b3 * p2;
        }
        store8(o, a00); store8(o + 8, a01); store8(o + 16, a02);
        store8(o + QB, a10); store8(o + QB + 8, a11); store8(o + QB + 16, a12);
        store8(o + 2 * QB, a20); store8(o + 2 * QB + 8, a21); store8(o + 2 * QB + 16, a22);
        store8(o + 3 * QB, a30); store8(o + 3 * QB + 8, a31); store8(o + 3 * QB + 16, a32);
    }
}

/* lane-wise: where mask (all ones) a, else b */
static inline v8 select8(v8i mask, v8 a, v8 b) { return (v8)(((v8i)a & mask) | ((v8i)b & ~mask)); }

/* p = 2^(s - m) in place for the n rows of s, and sum[j] = the sum of vector j's p over them.
 * With lim, keys past a lane's lim get p = 0 (their s is -FLT_MAX already: 2^-126 otherwise). */
static void probabilities(float *s, int64_t n, const v8 m[QV], const v8 *lim, int64_t k0, v8 sum[QV]) {
    const v8 m0 = m[0], m1 = m[1], m2 = m[2];
    v8 s0 = {0}, s1 = {0}, s2 = {0};
    if (!lim) {                                    /* every lane sees every key: the common case */
        for (int64_t kk = 0; kk < n; kk++) {
            float *r = s + kk * QB;
            v8 p0 = exp2_8_upto126(load8(r) - m0), p1 = exp2_8_upto126(load8(r + 8) - m1);
            v8 p2 = exp2_8_upto126(load8(r + 16) - m2);
            store8(r, p0); store8(r + 8, p1); store8(r + 16, p2);
            s0 += p0; s1 += p1; s2 += p2;
        }
    } else {
        for (int64_t kk = 0; kk < n; kk++) {
            float *r = s + kk * QB;
            v8 key = (v8){0} + (float)(k0 + kk);
            v8 p0 = select8(key > lim[0], (v8){0}, exp2_8_upto126(load8(r) - m0));
            v8 p1 = select8(key > lim[1], (v8){0}, exp2_8_upto126(load8(r + 8) - m1));
            v8 p2 = select8(key > lim[2], (v8){0}, exp2_8_upto126(load8(r + 16) - m2));
            store8(r, p0); store8(r + 8, p1); store8(r + 16, p2);
            s0 += p0; s1 += p1; s2 += p2;
        }
    }
    sum[0] = s0; sum[1] = s1; sum[2] = s2;
}

/* The running state of QB query rows (a block): Q^T scaled, O^T so far, softmax max and sum. */
typedef struct {
    float *qt, *ot;                 /* [Hd, QB] each */
    v8 m[QV], l[QV], lim[QV];       /* lim: the last key each lane sees */
    int64_t r0, rows, lo, hi;       /* first row, valid rows, smallest and largest lim */
} block_t;

static void block_start(const attend_t *a, int64_t g, int64_t r0, block_t *b) {
    const int64_t Hd = a->Hd, T = a->T, per = a->H / a->G, R = per * T;
    b->r0 = r0;
    b->rows = R - r0 < QB ? R - r0 : QB;
    b->lo = INT64_MAX;
    b->hi = 0;
    float lim[QB];
    for (int64_t j = 0; j < b->rows; j++) {
        int64_t h = g * per + (r0 + j) / T, t = (r0 + j) % T;
        const float *qr = a->q + h * a->q_sh + t * a->q_st;
        for (int64_t d = 0; d < Hd; d++) b->qt[d * QB + j] = qr[d] * a->scale;
        int64_t last = a->past + t;
        lim[j] = (float)last;                                           /* exact: keys < 2^24 */
        b->lo = last < b->lo ? last : b->lo;
        b->hi = last > b->hi ? last : b->hi;
    }
    for (int64_t j = b->rows; j < QB; j++) {  /* padding lanes: zero queries that see what the others see */
        for (int64_t d = 0; d < Hd; d++) b->qt[d * QB + j] = 0;
        lim[j] = (float)b->hi;
    }
    memset(b->ot, 0, sizeof(float) * Hd * QB);
    for (int j = 0; j < QV; j++) {
        b->m[j] = (v8){0} - FLT_MAX;
        b->l[j] = (v8){0};
        b->lim[j] = load8(lim + 8 * j);
    }
}

/* Keys k0 .. k0+n-1 (n <= KB) for block b: scores, online softmax, O^T update. s: [(KB + 4) QB] scratch. */
static void block_step(const attend_t *a, const float *K, const float *V, int64_t k0, int64_t n, block_t *b,
                       float *s) {
    const int64_t Hd = a->Hd, ks = a->kv_st;
    if (k0 > b->hi) return;
    if (k0 + n - 1 > b->hi) n = b->hi + 1 - k0;
    int masked = k0 + n - 1 > b->lo;          /* some lane does not see every key of this block */
    v8 mb[QV] = {b->m[0], b->m[1], b->m[2]};
    scores(b->qt, K + k0 * ks, ks, n, Hd, s, masked ? NULL : mb);
    for (int64_t kk = 0; masked && kk < n; kk++) {
        v8 key = (v8){0} + (float)(k0 + kk);
        for (int j = 0; j < QV; j++) {
            v8 x = select8(key > b->lim[j], (v8){0} - FLT_MAX, load8(s + kk * QB + 8 * j));
            store8(s + kk * QB + 8 * j, x);
            mb[j] = max8(mb[j], x);
        }
    }
    v8 alpha[QV], sum[QV];
    for (int j = 0; j < QV; j++) {
        alpha[j] = exp2_8_upto126(b->m[j] - mb[j]);
        b->m[j] = mb[j];
    }
    probabilities(s, n, b->m, masked ? b->lim : NULL, k0, sum);
    for (int j = 0; j < QV; j++) b->l[j] = b->l[j] * alpha[j] + sum[j];
    accumulate(b->ot, alpha, s, V + k0 * ks, ks, n, Hd);
}

static void block_finish(const attend_t *a, int64_t g, const block_t *b) {
    const int64_t T = a->T, per = a->H / a->G;
    for (int64_t j = 0; j < b->rows; j++) {
        int64_t h = g * per + (b->r0 + j) / T, t = (b->r0 + j) % T;
        float inv = 1.0f / b->l[j / 8][j % 8];
        float *o = a->out + h * a->o_sh + t * a->o_st;
        for (int64_t d = 0; d < a->Hd; d++) o[d] = b->ot[d * QB + j] * inv;
    }
}

/* One unit: up to `sub` blocks of consecutive rows of one group; each block of keys (KB x Hd of K
 * and of V, in L1) serves all of them before the next is read. */
static void attend_unit(const void *arg, int64_t unit) {
    const attend_t *a = arg;
    const int64_t Hd = a->Hd, R = (a->H / a->G) * a->T;
    const int64_t g = unit / a->units_per_group, r0 = (unit % a->units_per_group) * a->sub * QB;
    const float *K = a->k + g * a->kv_sh, *V = a->v + g * a->kv_sh;
    /* Q^T and O^T of each block (up to 192 KiB at Hd 256) on the heap: threads of other runtimes
     * may have small stacks */
    float *scratch = malloc(sizeof(float) * (2 * a->sub * Hd * QB + (KB + 4) * QB));
    if (!scratch) { atomic_store(a->failed, 1); return; }
    float *s = scratch + 2 * a->sub * Hd * QB;
    block_t b[SUB];
    int64_t nb = 0, hi = 0;
    for (; nb < a->sub && r0 + nb * QB < R; nb++) {
        b[nb].qt = scratch + 2 * nb * Hd * QB;
        b[nb].ot = scratch + (2 * nb + 1) * Hd * QB;
        block_start(a, g, r0 + nb * QB, &b[nb]);
        hi = b[nb].hi > hi ? b[nb].hi : hi;
    }
    for (int64_t k0 = 0; k0 <= hi; k0 += KB) {
        int64_t n = hi + 1 - k0 < KB ? hi + 1 - k0 : KB;
        for (int64_t i = 0; i < nb; i++) block_step(a, K, V, k0, n, &b[i], s);
    }
    for (int64_t i = 0; i < nb; i++) block_finish(a, g, &b[i]);
    free(scratch);
}

/* out[h, t] = softmax over keys 0..past+t of (q[h, t] . k[g] Hd^-0.5) . v[g], g = h / (H / G).
 * q element [h, t, d] at q[h q_sh + t q_st + d]; k, v [g, key, d] at [g kv_sh + key kv_st + d];
 * out likewise with o_sh, o_st. Hd must be a multiple of 4, at most MAX_HD (256); H a multiple of G.
 * Returns 0; -1 when the shapes are outside that (nothing done) or scratch memory ran out (out is
 * then incomplete: the caller computes it another way). */
int jd_attend(const float *q, int64_t q_sh, int64_t q_st, const float *k, const float *v, int64_t kv_sh,
              int64_t kv_st, float *out, int64_t o_sh, int64_t o_st, int64_t H, int64_t G, int64_t T,
              int64_t past, int64_t Hd, float scale) {
    if (Hd % 4 || Hd > MAX_HD || Hd <= 0 || G <= 0 || H % G || T <= 0 || past < 0 || past + T >= (1 << 24))
        return -1;
    _Atomic int failed = 0;
    attend_t a = {q, k, v, out, q_sh, q_st, kv_sh, kv_st, o_sh, o_st, H, G, T, past, Hd, 1, 0,
                  scale * 1.44269504088896341f, &failed};
    int64_t blocks = ((H / G) * T + QB - 1) / QB;   /* of one group */
    /* SUB blocks a unit where that still leaves 4 units a thread */
    while (a.sub < SUB && G * ((blocks + 2 * a.sub - 1) / (2 * a.sub)) >= 4 * jd_pool_threads()) a.sub *= 2;
    a.units_per_group = (blocks + a.sub - 1) / a.sub;
    jd_parallel(attend_unit, &a, G * a.units_per_group);
    return atomic_load(&failed) ? -1 : 0;
}
