/* CPU decode kernels (fp32): a multi-threaded GEMV, y[N] = W[N, K] x[K] (+ b), and one-token
 * blocks built on it: the Mamba-1 mixer between in_proj and out_proj (jd_mamba_step), RMSNorm,
 * the SwiGLU MLP (jd_mlp) and Jamba's mixture of experts (jd_moe). engine/cpu_kernels.py calls them.
 *
 * Why: a decode step multiplies one row by every weight matrix, so it is bound by how fast the
 * weights stream from memory. torch's CPU GEMV (MKL sgemv) runs on one thread whatever the thread
 * count, and one core reads memory at about half the speed two do. This splits each product over a
 * small pool of worker threads.
 *
 * Glossary: N output rows, K inputs; W is row-major (stride_n = K, stride_k = 1: each output is a
 * dot product over a contiguous row) or column-major (stride_n = 1, stride_k = N: each input adds a
 * scaled contiguous column, "axpy").
 *
 * Scheduling: a product is cut into CHUNKS_PER_THREAD chunks of output rows per thread; the caller
 * and the workers claim chunks from one atomic word tagged with the job's number, so a worker that
 * is late, asleep or descheduled never holds the caller up (the caller does the chunks nobody
 * claimed) and can never claim a chunk of a later job. Workers spin (with a sched_yield every
 * YIELD_EVERY turns, for any other thread that wants the core) for up to SPIN_NS after their last
 * chunk, then sleep on a condition variable: between decode steps they stay awake, and an idle
 * engine costs no CPU. One product runs at a time; a second caller meanwhile computes on its own
 * thread. After fork() the child starts a new pool.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "pool.h"
#include "simd.h"

#define MAX_WORKERS 63
#define SPIN_NS 2000000LL           /* 2 ms */
#define CHUNKS_PER_THREAD 2         /* a late thread's share is taken by the others */
#define YIELD_EVERY 256             /* idle spins between sched_yield calls (lets other threads run) */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef int8_t v8c __attribute__((vector_size(8)));

/* 8 weights from w (fp32) or, when q is given, from q (int8, converted in registers: with AVX2 one
 * sign-extension and one conversion; GCC 12 turns the generic form into 8 scalar conversions, which
 * made int8 decode slower than fp32 on the bench model, perf 2026-11-28) */
static inline v8 weights8(const float *w, const int8_t *q, int64_t k) {
    if (!q) return load8(w + k);
#if defined(__AVX2__)
    return (v8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(q + k))));
#else
    v8c c;
    memcpy(&c, q + k, sizeof c);
    return __builtin_convertvector(c, v8);
#endif
}

/* w . x over K entries, w fp32 or (q != NULL) int8; inlined with a constant q, each kind gets its own loop */
static inline float dot(const float *w, const int8_t *q, const float *x, int64_t K) {
    v8 a0 = {0}, a1 = {0};
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        a0 += weights8(w, q, k) * load8(x + k);
        a1 += weights8(w, q, k + 8) * load8(x + k + 8);
    }
    float s = sum8(a0 + a1);
    for (; k < K; k++) s += (q ? (float)q[k] : w[k]) * x[k];
    return s;
}

/* rows r0..r1 of a row-major W: y[r] = W[r, :] . x */
static void dot_rows(const float *W, const float *x, float *y, int64_t K, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) y[r] = dot(W + r * K, NULL, x, K);
}

/* rows r0..r1 of an int8 row-major Q with one scale per row: y[r] = scale[r] * (Q[r, :] . x) */
static void dot_rows_q8(const int8_t *Q, const float *scale, const float *x, float *y, int64_t K,
                        int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) y[r] = dot(NULL, Q + r * K, x, K) * scale[r];
}

/* rows r0..r1 of a column-major W (element [r, k] at W[k * N + r]): y[r0:r1] = sum_k x[k] W[k, r0:r1] */
static void axpy_rows(const float *W, const float *x, float *y, int64_t N, int64_t K, int64_t r0, int64_t r1) {
    int64_t r = r0;
    for (; r + 32 <= r1; r += 32) {                   /* 32 outputs held in registers over all k */
        v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t k = 0; k < K; k++) {
            const float *w = W + k * N + r;
            float xk = x[k];
            a0 += load8(w) * xk; a1 += load8(w + 8) * xk; a2 += load8(w + 16) * xk; a3 += load8(w + 24) * xk;
        }
        store8(y + r, a0); store8(y + r + 8, a1); store8(y + r + 16, a2); store8(y + r + 24, a3);
    }
    for (; r < r1; r++) {
        float s = 0;
        for (int64_t k = 0; k < K; k++) s += W[k * N + r] * x[k];
        y[r] = s;
    }
}

/* One GEMV, cut into chunks of `chunk` output rows: a job for the pool (gemv_chunk). */
typedef struct {
    const float *W, *x, *b;
    float *y;
    int64_t N, K, chunk;
    int col_major;
    const int8_t *Q;               /* int8 weights instead of W (row-major), with one scale per row */
    const float *scale;
} gemv_t;

static void gemv_chunk(const void *arg, int64_t c) {
    const gemv_t *j = arg;
    int64_t r0 = c * j->chunk, r1 = r0 + j->chunk < j->N ? r0 + j->chunk : j->N;
    if (j->Q) dot_rows_q8(j->Q, j->scale, j->x, j->y, j->K, r0, r1);
    else if (j->col_major) axpy_rows(j->W, j->x, j->y, j->N, j->K, r0, r1);
    else dot_rows(j->W, j->x, j->y, j->K, r0, r1);
    if (j->b) for (int64_t r = r0; r < r1; r++) j->y[r] += j->b[r];
}

/* -- the pool ------------------------------------------------------------------------------- */
/* The claim word: job number (24 bits) | the job's chunk count (20) | next chunk to claim (20).
 * Holding the count in the word itself means a claim is checked against the job it claims from. */
#define NO_SHIFT 40
#define COUNT_SHIFT 20
#define FIELD_MASK ((1u << 20) - 1)
#define MAX_CHUNKS FIELD_MASK
static void (*job_fn)(const void *, int64_t);   /* the published job: chunk c is job_fn(job_arg, c) */
static const void *job_arg;
static _Atomic uint64_t next_claim;
static _Atomic int64_t chunks_done;
static _Atomic int sleepers;
static _Atomic int quit;
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t workers[MAX_WORKERS];
static int n_workers;
static int pool_live;                      /* workers started in this process (0 again after fork) */
static uint32_t job_no;
static int want_threads;
static int atfork_set;

/* In a forked child the workers are gone and the locks may be held by threads that no longer exist. */
static void reset_in_child(void) {
    pthread_mutex_init(&submit_lock, NULL);
    pthread_mutex_init(&sleep_lock, NULL);
    pthread_cond_init(&wake, NULL);
    n_workers = 0;
    pool_live = 0;
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Claim and run chunks of job `no` until none is left. */
static void work_on(uint32_t no) {
    uint64_t cur = atomic_load(&next_claim);
    for (;;) {
        if ((uint32_t)(cur >> NO_SHIFT) != no || (cur & FIELD_MASK) >= ((cur >> COUNT_SHIFT) & FIELD_MASK)) return;
        if (atomic_compare_exchange_weak(&next_claim, &cur, cur + 1)) {
            job_fn(job_arg, (int64_t)(cur & FIELD_MASK));
            atomic_fetch_add(&chunks_done, 1);
            cur = atomic_load(&next_claim);
        }
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    uint32_t seen = (uint32_t)(atomic_load(&next_claim) >> NO_SHIFT);
    int64_t idle_since = now_ns();
    uint64_t spins = 0;
    while (!atomic_load(&quit)) {
        uint64_t cur = atomic_load(&next_claim);
        uint32_t no = (uint32_t)(cur >> NO_SHIFT);
        if (no != seen) {
            seen = no;
            work_on(no);
            idle_since = now_ns();
            continue;
        }
        if (++spins % YIELD_EVERY) { cpu_relax(); continue; }
        if (now_ns() - idle_since < SPIN_NS) { sched_yield(); continue; }
        pthread_mutex_lock(&sleep_lock);
        atomic_fetch_add(&sleepers, 1);
        while ((uint32_t)(atomic_load(&next_claim) >> NO_SHIFT) == seen && !atomic_load(&quit))
            pthread_cond_wait(&wake, &sleep_lock);
        atomic_fetch_sub(&sleepers, 1);
        pthread_mutex_unlock(&sleep_lock);
        idle_since = now_ns();
    }
    return NULL;
}

/* Start (or, after fork, restart) a pool of `threads` - 1 workers; returns the workers started. */
int jd_pool_start(int threads) {
    int want = threads - 1 < 0 ? 0 : (threads - 1 > MAX_WORKERS ? MAX_WORKERS : threads - 1);
    pthread_mutex_lock(&submit_lock);
    if (!atfork_set) { pthread_atfork(NULL, NULL, reset_in_child); atfork_set = 1; }
    want_threads = threads;
    if (pool_live && n_workers == want) { pthread_mutex_unlock(&submit_lock); return n_workers; }
    if (pool_live && n_workers) {          /* resize: stop the old workers */
        atomic_store(&quit, 1);
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
        for (int i = 0; i < n_workers; i++) pthread_join(workers[i], NULL);
    }
    atomic_store(&quit, 0);
    atomic_store(&sleepers, 0);
    n_workers = 0;
    for (int i = 0; i < want; i++) {
        if (pthread_create(&workers[i], NULL, worker_main, NULL) != 0) break;
        n_workers++;
    }
    pool_live = 1;
    pthread_mutex_unlock(&submit_lock);
    return n_workers;
}

int jd_pool_threads(void) { return pool_live ? n_workers + 1 : 1; }

/* Run fn(arg, 0) .. fn(arg, n - 1) on the pool, the caller taking part; on this thread alone when
 * there is no pool or it is busy (a concurrent caller). Returns when all are done. */
void jd_parallel(void (*fn)(const void *arg, int64_t unit), const void *arg, int64_t n) {
    if (!pool_live && want_threads > 1) jd_pool_start(want_threads);   /* a forked child */
    if (!pool_live || n_workers == 0 || n <= 1 || n > MAX_CHUNKS || pthread_mutex_trylock(&submit_lock) != 0) {
        for (int64_t c = 0; c < n; c++) fn(arg, c);
        return;
    }
    job_fn = fn;
    job_arg = arg;
    atomic_store(&chunks_done, 0);
    uint32_t no = ++job_no & ((1u << 24) - 1);
    atomic_store(&next_claim, (uint64_t)no << NO_SHIFT | (uint64_t)n << COUNT_SHIFT);   /* publishes the job */
    if (atomic_load(&sleepers)) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    work_on(no);
    for (uint64_t spins = 1; atomic_load(&chunks_done) < n; spins++)   /* chunks a worker is finishing */
        if (spins % YIELD_EVERY) cpu_relax(); else sched_yield();
    pthread_mutex_unlock(&submit_lock);
}

/* One product on the pool: CHUNKS_PER_THREAD chunks of output rows per thread (whole register
 * blocks of axpy_rows), one chunk on this thread when it is small. */
static void gemv(gemv_t j) {
    int64_t N = j.N;
    if (N <= 0) return;
    int64_t parts = (int64_t)(n_workers + 1) * CHUNKS_PER_THREAD;
    j.chunk = ((N + parts - 1) / parts + 31) / 32 * 32;
    if (j.chunk >= N) j.chunk = N;
    if ((N + j.chunk - 1) / j.chunk > MAX_CHUNKS) j.chunk = ((N + MAX_CHUNKS - 1) / MAX_CHUNKS + 31) / 32 * 32;
    jd_parallel(gemv_chunk, &j, (N + j.chunk - 1) / j.chunk);
}

/* y[N] = W x (+ b). W row-major [N, K] (col_major = 0) or column-major (col_major = 1). */
void jd_gemv(const float *W, const float *x, const float *b, float *y, int64_t N, int64_t K, int col_major) {
    gemv((gemv_t){W, x, b, y, N, K, 0, col_major, NULL, NULL});
}

/* y[N] = scale * (Q x) (+ b): ExpertsInt8 weights, Q [N, K] int8 row-major, scale [N] (per row). */
void jd_gemv_q8(const int8_t *Q, const float *scale, const float *x, const float *b, float *y, int64_t N, int64_t K) {
    gemv((gemv_t){NULL, x, b, y, N, K, 0, 0, Q, scale});
}

/* -- one-token Mamba-1 step ------------------------------------------------------------------
 * Glossary: E inner channels, N state size, R dt rank, Kc conv taps. Everything between in_proj
 * and out_proj for one token, in one call instead of some twenty small torch ops (engine/mamba.py
 * is the reference: causal_conv, silu, x_proj, rms_norm_groups, dt_proj, softplus, ssm_step):
 *   xs, z = xz[:E], xz[E:]
 *   u = silu(conv_b + sum_k conv_w[e, k] * [window; xs][k])         window [Kc-1, E] -> window_out
 *   dt, B, C = RMSNorm each part of x_proj u  (weights norm_w [R + 2N])
 *   dt = softplus(dt_proj dt + dt_bias)                              [E]
 *   h = exp(dt A) * h0 + dt u B                                      [E, N] -> h_out
 *   y = (h C + D u) * silu(z)                                        [E]
 * conv_w is given by strides (element [e, k] at conv_w[e * cw_se + k * cw_sk]); x_proj [R+2N, E]
 * and dt_proj [E, R] are row-major. scratch holds 2E + R + 2N floats.
 */
/* v[i] <- v[i] * silu(g[i]) over n entries. */
static void mul_silu(float *v, const float *g, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) store8(v + i, load8(v + i) * silu8(load8(g + i)));
    for (; i < n; i++) v[i] *= silu1(g[i]);
}

/* v[i] <- silu(v[i]) over n entries. */
static void silu_(float *v, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) store8(v + i, silu8(load8(v + i)));
    for (; i < n; i++) v[i] = silu1(v[i]);
}

/* y = x / sqrt(mean(x^2) + eps) * w over n entries (y may be x). */
void jd_rms_norm(const float *x, const float *w, float *y, int64_t n, float eps) {
    float ss = 0;
    for (int64_t i = 0; i < n; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * inv * w[i];
}

void jd_mamba_step(const float *xz, const float *window, const float *conv_w, int64_t cw_se, int64_t cw_sk,
                   const float *conv_b, const float *x_proj, const float *norm_w, float eps,
                   const float *dt_proj, const float *dt_bias, const float *A, const float *D, const float *h0,
                   int64_t E, int64_t N, int64_t R, int64_t Kc,
                   float *y, float *window_out, float *h_out, float *scratch) {
    const float *xs = xz, *z = xz + E;
    float *u = scratch, *dt = scratch + E, *dbc = scratch + 2 * E;   /* u [E], dt [E], dbc [R + 2N] */
    for (int64_t e = 0; e < E; e++) u[e] = conv_b ? conv_b[e] : 0.0f;
    for (int64_t k = 0; k < Kc; k++) {                               /* conv over [window; xs] */
        const float *src = k < Kc - 1 ? window + k * E : xs, *w = conv_w + k * cw_sk;
        if (cw_se == 1) for (int64_t e = 0; e < E; e++) u[e] += src[e] * w[e];
        else for (int64_t e = 0; e < E; e++) u[e] += src[e] * w[e * cw_se];
    }
    silu_(u, E);
    if (Kc > 1) {
        memcpy(window_out, window + E, (size_t)((Kc - 2) * E) * sizeof(float));
        memcpy(window_out + (Kc - 2) * E, xs, (size_t)E * sizeof(float));
    }
    jd_gemv(x_proj, u, NULL, dbc, R + 2 * N, E, 0);              /* pooled: [288, 8192] on Jamba 1.5 Mini */
    jd_rms_norm(dbc, norm_w, dbc, R, eps);
    jd_rms_norm(dbc + R, norm_w + R, dbc + R, N, eps);
    jd_rms_norm(dbc + R + N, norm_w + R + N, dbc + R + N, N, eps);
    const float *B = dbc + R, *C = dbc + R + N;
    jd_gemv(dt_proj, dbc, dt_bias, dt, E, R, 0);                  /* dt_proj dt + dt_bias, pooled */
    for (int64_t e = 0; e < E; e++) {
        float d = dt[e];
        dt[e] = d > 20.0f ? d : log1pf(expf(d));                     /* softplus, threshold 20 as torch */
    }
    for (int64_t e = 0; e < E; e++) {
        float d = dt[e], du = d * u[e], acc;
        const float *a = A + e * N, *hp = h0 + e * N;
        float *ho = h_out + e * N;
        int64_t n = 0;
        v8 acc8 = {0};
        for (; n + 8 <= N; n += 8) {
            v8 h = exp8(load8(a + n) * d) * load8(hp + n) + load8(B + n) * du;
            store8(ho + n, h);
            acc8 += h * load8(C + n);
        }
        acc = sum8(acc8);
        for (; n < N; n++) {
            float h = expf(d * a[n]) * hp[n] + du * B[n];
            ho[n] = h;
            acc += h * C[n];
        }
        y[e] = acc + D[e] * u[e];
    }
    mul_silu(y, z, E);
}

/* -- one-token SwiGLU MLP ----------------------------------------------------------------------
 * y = scale * down(silu(gate x) * up x) (+ y when accumulate): a dense MLP, or one expert of a MoE
 * added into the token's output with its router weight. gate_up [2I, D] (gate rows, then up rows)
 * and down [D, I], each fp32 row- or column-major, or ExpertsInt8 (int8 row-major with a scale per
 * row: matrix_t.q); both products run on the pool. scratch: 2I + D floats.
 */
typedef struct {
    const float *w;                /* fp32 weights, or NULL when q is given */
    int col_major;
    const int8_t *q;               /* int8 row-major weights ... */
    const float *scale;            /* ... and one scale per row */
} matrix_t;

static void product(matrix_t m, const float *x, float *y, int64_t N, int64_t K) {
    gemv((gemv_t){m.w, x, NULL, y, N, K, 0, m.col_major, m.q, m.scale});
}

static void mlp(const float *x, matrix_t gate_up, matrix_t down, float *y, int64_t D, int64_t I, float scale,
                int accumulate, float *scratch) {
    float *h = scratch, *act = scratch + I, *out = scratch + 2 * I;
    product(gate_up, x, h, 2 * I, D);                            /* h = [gate x; up x] */
    mul_silu(act, h, I);                                          /* act = up x * silu(gate x) */
    product(down, act, out, D, I);
    if (accumulate) for (int64_t d = 0; d < D; d++) y[d] += scale * out[d];
    else for (int64_t d = 0; d < D; d++) y[d] = scale * out[d];
}

/* gate_up and down given as (fp32 weights, column-major flag, int8 weights, scales): w NULL for int8. */
void jd_mlp(const float *x, const float *gate_up, int gu_col_major, const int8_t *gu_q, const float *gu_scale,
            const float *down, int dn_col_major, const int8_t *dn_q, const float *dn_scale,
            float *y, int64_t D, int64_t I, float scale, int accumulate, float *scratch) {
    mlp(x, (matrix_t){gate_up, gu_col_major, gu_q, gu_scale}, (matrix_t){down, dn_col_major, dn_q, dn_scale},
        y, D, I, scale, accumulate, scratch);
}

/* -- one-token mixture of experts ----------------------------------------------------------------
 * Jamba's MoE for one token: probs = softmax(router x) over X experts, the top_k largest (in
 * descending order, as torch.topk), y = sum_j probs[e_j] * expert_{e_j}(x) (no renormalisation).
 * router [X, D] row-major; expert e: gate_up[e] [2I, D], down[e] [D, I] as in jd_mlp (fp32 with
 * their layouts, or int8 with scales: then gate_up[e] / down[e] are NULL). scratch: X + 2I + D
 * floats. Returns nothing; the chosen experts are written to chosen[top_k].
 */
void jd_moe(const float *x, const float *router, int64_t X, int64_t top_k,
            const float *const *gate_up, const int *gu_col_major, const int8_t *const *gu_q,
            const float *const *gu_scale, const float *const *down, const int *dn_col_major,
            const int8_t *const *dn_q, const float *const *dn_scale,
            float *y, int64_t D, int64_t I, float *scratch, int64_t *chosen) {
    float *probs = scratch;
    dot_rows(router, x, probs, D, 0, X);
    float m = probs[0], sum = 0;
    for (int64_t e = 1; e < X; e++) m = probs[e] > m ? probs[e] : m;
    for (int64_t e = 0; e < X; e++) { probs[e] = expf(probs[e] - m); sum += probs[e]; }
    for (int64_t e = 0; e < X; e++) probs[e] /= sum;
    for (int64_t j = 0; j < top_k; j++) {
        int64_t best = -1;
        for (int64_t e = 0; e < X; e++) {
            int taken = 0;
            for (int64_t i = 0; i < j; i++) taken |= chosen[i] == e;
            if (!taken && (best < 0 || probs[e] > probs[best])) best = e;
        }
        chosen[j] = best;
        mlp(x, (matrix_t){gate_up[best], gu_col_major[best], gu_q[best], gu_scale[best]},
            (matrix_t){down[best], dn_col_major[best], dn_q[best], dn_scale[best]}, y, D, I, probs[best], j > 0,
            scratch + X);
    }
}
