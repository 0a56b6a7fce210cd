/* The selective scan of a Mamba-1 prefill chunk (fp32, CPU): engine/mamba.py's `ssm_scan` in one
 * call on the pool of decode.c. engine/cpu_kernels.py calls it.
 *
 * Why: the scan is a recurrence over time, so torch runs it as many small ops (mamba.py: about
 * 4 sqrt(T) steps per tile, each over [T/m, N, E]), on one thread because a thread team's wake-up
 * cost more than it saved; on the bench model that was 20 ms of each 1024-token chunk's ~70 ms per
 * Mamba layer while the other core idled. Channels are independent, so here each thread walks the
 * tokens in order for its own channels, the state in L1, discretisation and output fused in.
 *
 * Glossary: T tokens, E channels, N state size. Per channel e and state n:
 *     h_t[e, n] = 2^(dt_t[e] A[e, n] log2 e) h_{t-1}[e, n] + dt_t[e] B_t[n] x_t[e]
 *     y_t[e]    = (sum_n C_t[n] h_t[e, n] + D[e] x_t[e]) silu(z_t[e])
 * A unit is VC x 8 consecutive channels (lanes = channels); its state h [N, VC] vectors and A
 * [N, VC] vectors (scaled by log2 e, transposed) sit in the unit's scratch. Channels past the
 * last full vector run the same steps one lane at a time.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "simd.h"

#define VC 2                      /* vectors of channels a unit */
#define UNIT (8 * VC)             /* channels a unit */

typedef struct {
    const float *x, *dt, *A, *B, *C, *D, *z, *h0;
    float *y, *h;
    int64_t T, E, N, xs, dts, bs, cs, zs;   /* row strides of x, dt, B, C, z (the last dim is contiguous) */
    _Atomic int *failed;                      /* set when a unit could not get its scratch memory */
} scan_t;

/* Channels e0 .. e0 + UNIT - 1, all present: vectors of 8 channels. */
static void scan_vectors(const scan_t *s, int64_t e0, v8 *h, v8 *a) {
    const int64_t N = s->N, E = s->E;
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < VC; c++)
            for (int j = 0; j < 8; j++) {
                int64_t e = e0 + 8 * c + j;
                a[n * VC + c][j] = s->A[e * N + n] * 1.44269504088896341f;
                h[n * VC + c][j] = s->h0[e * N + n];
            }
    v8 d[VC];
    for (int c = 0; c < VC; c++) d[c] = load8(s->D + e0 + 8 * c);
    for (int64_t t = 0; t < s->T; t++) {
        const float *B = s->B + t * s->bs, *C = s->C + t * s->cs;
        v8 x[VC], dt[VC], dx[VC], acc[VC];
        for (int c = 0; c < VC; c++) {
            x[c] = load8(s->x + t * s->xs + e0 + 8 * c);
            dt[c] = load8(s->dt + t * s->dts + e0 + 8 * c);
            dx[c] = dt[c] * x[c];
            acc[c] = d[c] * x[c];
        }
        for (int64_t n = 0; n < N; n++) {
            float b = B[n], cn = C[n];
            for (int c = 0; c < VC; c++) {
                v8 hn = exp2_8(dt[c] * a[n * VC + c]) * h[n * VC + c] + dx[c] * b;
                h[n * VC + c] = hn;
                acc[c] += hn * cn;
            }
        }
        for (int c = 0; c < VC; c++) {
            v8 z = load8(s->z + t * s->zs + e0 + 8 * c);
            store8(s->y + t * E + e0 + 8 * c, acc[c] * silu8(z));
        }
    }
    for (int64_t n = 0; n < N; n++)
        for (int c = 0; c < VC; c++)
            for (int j = 0; j < 8; j++) s->h[(e0 + 8 * c + j) * N + n] = h[n * VC + c][j];
}

/* One channel (the ones past the last full unit). */
static void scan_channel(const scan_t *s, int64_t e) {
    const int64_t N = s->N;
    float *h = s->h + e * N;
    for (int64_t n = 0; n < N; n++) h[n] = s->h0[e * N + n];
    for (int64_t t = 0; t < s->T; t++) {
        const float *B = s->B + t * s->bs, *C = s->C + t * s->cs;
        float x = s->x[t * s->xs + e], dt = s->dt[t * s->dts + e], dx = dt * x, acc = s->D[e] * x;
        for (int64_t n = 0; n < N; n++) {
            h[n] = exp2f(dt * (s->A[e * N + n] * 1.44269504088896341f)) * h[n] + dx * B[n];
            acc += h[n] * C[n];
        }
        s->y[t * s->E + e] = acc * silu1(s->z[t * s->zs + e]);
    }
}

static void scan_unit(const void *arg, int64_t unit) {
    const scan_t *s = arg;
    const int64_t e0 = unit * UNIT;
    if (e0 + UNIT <= s->E) {
        v8 *buf = aligned_alloc(sizeof(v8), sizeof(v8) * 2 * s->N * VC);   /* h and A of the unit */
        if (!buf) { atomic_store(s->failed, 1); return; }
        scan_vectors(s, e0, buf, buf + s->N * VC);
        free(buf);
    } else {
        for (int64_t e = e0; e < s->E; e++) scan_channel(s, e);
    }
}

/* y [T, E] and h [E, N] (contiguous) from x, dt, z [T, E] (row strides xs, dts, zs), B, C [T, N]
 * (row strides bs, cs), A [E, N], D [E], h0 [E, N] (contiguous); dt after softplus. h may not be
 * h0. Returns 0, or -1 when scratch memory ran out (y and h are then incomplete). */
int jd_scan(const float *x, int64_t xs, const float *dt, int64_t dts, const float *A, const float *B, int64_t bs,
            const float *C, int64_t cs, const float *D, const float *z, int64_t zs, const float *h0,
            float *y, float *h, int64_t T, int64_t E, int64_t N) {
    _Atomic int failed = 0;
    scan_t s = {x, dt, A, B, C, D, z, h0, y, h, T, E, N, xs, dts, bs, cs, zs, &failed};
    jd_parallel(scan_unit, &s, (E + UNIT - 1) / UNIT);
    return atomic_load(&failed) ? -1 : 0;
}

/* out[i] = 2^t[i] by simd.h's exp2_8 (the attention's softmax and this scan use it): for the tests. */
void jd_exp2(const float *t, float *out, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) store8(out + i, exp2_8(load8(t + i)));
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, t + i, sizeof(float) * (size_t)(n - i));
        store8(buf, exp2_8(load8(buf)));
        memcpy(out + i, buf, sizeof(float) * (size_t)(n - i));
    }
}
