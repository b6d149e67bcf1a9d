/* Recurrent layers (GRU, LSTM, Elman RNN) forward and backward in float32, whole sequences.
 *
 * Built on first use by recurrent_rl/accel/native.py (cc -O3 -march=native) and called through the
 * torch operators of ops.cpp; recurrent_rl/accel/kernels.py keeps NumPy loops of the same recurrent
 * math as the reference and the fallback.
 *
 * One call runs one layer of C cores of the same kind and size (an actor's and a critic's memory)
 * over T steps of a batch of B columns, input projection and weight gradients included, so a
 * whole layer is one autograd node and costs one call from Python. Per-core tensors (inputs,
 * weights, states, outputs, gradients) are passed as arrays of C pointers; arrays saved for the
 * backward pass are core-major, (C, T, B, X). Everything is C-contiguous:
 *
 *   T time, C cores, B batch, F input features, H hidden, G = gates * H
 *   x (T, B, F), w_ih (G, F), b_ih (G), w_hh (G, H), b_hh (G), h0 and c0 (B, H), out (T, B, H)
 *   keep (T, B): 0 where the carried state is zeroed before step t (an episode start)
 *
 * The math is torch's: gate order r z n for GRU (n = tanh(x W_in + b_in + r (h W_hn + b_hn))),
 * i f g o for LSTM, tanh for the Elman RNN; the results equal stepping nn.GRU / nn.LSTM / nn.RNN
 * with the state multiplied by keep[t] before step t.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for float32 by Cody-Waite range reduction and a degree-6 polynomial (Cephes expf):
 * relative error below 2e-7 on [-87, 88]. Written without branches or calls so that the
 * element loops below vectorize. */
static inline float exp_f(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    /* round to nearest by truncation of a positive number (x + 87 > 0) */
    const int32_t ni = (int32_t)(x * 1.44269504088896341f + 126.5f) - 126;
    const float n = (float)ni;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

/* tanh(x) = 1 - 2 / (exp(2x) + 1): absolute error below 3e-7, exact limits +-1. */
static inline float tanh_f(float x) { return 1.0f - 2.0f / (exp_f(2.0f * x) + 1.0f); }

/* GCC/Clang vector extensions: lowered to AVX-512, AVX2, NEON or plain code, whatever -march
 * gives. Loads and stores go through memcpy, so no alignment is assumed. */
#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));

static inline vf ld(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, vf v) { memcpy(p, &v, sizeof v); }

typedef const float *const *cptrs; /* C pointers, read */
typedef float *const *ptrs;        /* C pointers, written */

/* Pin a vector in a register. Without it GCC folds the loads of m into every FMA (one load per
 * FMA instead of one per 4), and the loads, not the FMAs, set the pace: measured on a Zen 4 core,
 * the 8 x 64 x 192 product of a GRU step went from 55 to 105 GFLOPS with the pin. */
#if defined(__x86_64__) || defined(__i386__)
#define PIN(v) __asm__("" : "+v"(v))
#elif defined(__aarch64__)
#define PIN(v) __asm__("" : "+w"(v))
#else
#define PIN(v) ((void)0)
#endif

/* Register block of 4 rows of X by NV vectors of y's columns [j, j + NV * VW): each vector of m
 * is loaded once per 4 rows, and y is read and written once. */
#define GEMM_BLOCK(NV)                                                                                  \
    static inline void gemm_block##NV(int K, int64_t N, int64_t j, const float *restrict x0,          \
                                      const float *restrict x1, const float *restrict x2,               \
                                      const float *restrict x3, int64_t cs, const float *restrict m,    \
                                      float *restrict y) {                                              \
        vf a[4][NV];                                                                                    \
        for (int r = 0; r < 4; r++)                                                                     \
            for (int v = 0; v < NV; v++) a[r][v] = ld(y + r * N + j + v * VW);                          \
        for (int k = 0; k < K; k++) {                                                                   \
            vf mv[NV];                                                                                  \
            for (int v = 0; v < NV; v++) {                                                              \
                mv[v] = ld(m + (int64_t)k * N + j + v * VW);                                            \
                PIN(mv[v]);                                                                             \
            }                                                                                           \
            const float s[4] = {x0[k * cs], x1[k * cs], x2[k * cs], x3[k * cs]};                        \
            for (int r = 0; r < 4; r++)                                                                 \
                for (int v = 0; v < NV; v++) a[r][v] += s[r] * mv[v];                                   \
        }                                                                                               \
        for (int r = 0; r < 4; r++)                                                                     \
            for (int v = 0; v < NV; v++) st(y + r * N + j + v * VW, a[r][v]);                           \
    }
GEMM_BLOCK(3)
GEMM_BLOCK(2)

/* y (M, N) += X m (K, N), where X (M, K) is read at x[i * rs + k * cs]: rs = K, cs = 1 for a
 * row-major x (M, K); rs = 1, cs = M for x^T with x (K, M) row-major. Blocks of 4 rows by 3
 * vectors where the columns allow (a GRU's 3H), else by 2; then the leftover rows and columns. */
static inline void gemm_acc(int M, int K, int N, const float *restrict x, int64_t rs, int64_t cs,
                            const float *restrict m, float *restrict y) {
    const int nv = N % (3 * VW) == 0 ? 3 : 2;
    int j = 0;
    for (; j + nv * VW <= N; j += nv * VW) {
        int64_t b = 0;
        for (; b + 4 <= M; b += 4) {
            const float *x0 = x + (b + 0) * rs, *x1 = x + (b + 1) * rs, *x2 = x + (b + 2) * rs, *x3 = x + (b + 3) * rs;
            if (nv == 3) gemm_block3(K, N, j, x0, x1, x2, x3, cs, m, y + b * N);
            else gemm_block2(K, N, j, x0, x1, x2, x3, cs, m, y + b * N);
        }
        for (; b < M; b++) {
            const float *xb = x + b * rs;
            for (int v = 0; v < nv; v++) {
                vf a = ld(y + b * N + j + v * VW);
                for (int k = 0; k < K; k++) a += xb[k * cs] * ld(m + (int64_t)k * N + j + v * VW);
                st(y + b * N + j + v * VW, a);
            }
        }
    }
    for (; j + VW <= N; j += VW)
        for (int64_t b = 0; b < M; b++) {
            vf a = ld(y + b * N + j);
            for (int k = 0; k < K; k++) a += x[b * rs + k * cs] * ld(m + (int64_t)k * N + j);
            st(y + b * N + j, a);
        }
    for (; j < N; j++)
        for (int64_t b = 0; b < M; b++) {
            float a = y[b * N + j];
            for (int k = 0; k < K; k++) a += x[b * rs + k * cs] * m[(int64_t)k * N + j];
            y[b * N + j] = a;
        }
}

/* y (M, N) += x (M, K) m (K, N), all row-major */
static void matmul_acc(int M, int K, int N, const float *restrict x, const float *restrict m, float *restrict y) {
    gemm_acc(M, K, N, x, K, 1, m, y);
}

/* y (M, N) += x^T m (K, N), x (K, M) row-major */
static void matmul_tn_acc(int M, int K, int N, const float *restrict x, const float *restrict m, float *restrict y) {
    gemm_acc(M, K, N, x, 1, M, m, y);
}

/* y (M, N) = x (M, K) m^T, m (N, K) row-major, for narrow outputs (N < 2 vectors): dot products
 * of contiguous rows. */
static void matmul_nt(int64_t M, int K, int N, const float *restrict x, const float *restrict m, float *restrict y) {
    for (int64_t r = 0; r < M; r++) {
        const float *xr = x + r * K;
        for (int n = 0; n < N; n++) {
            const float *mn = m + (int64_t)n * K;
            vf acc = {0};
            int k = 0;
            for (; k + VW <= K; k += VW) acc += ld(xr + k) * ld(mn + k);
            float s = 0.0f;
            for (int i = 0; i < VW; i++) s += acc[i];
            for (; k < K; k++) s += xr[k] * mn[k];
            y[r * N + n] = s;
        }
    }
}

/* at (K, R) = a (R, K)^T, in 16 x 16 tiles: a plain double loop writes with a stride of R floats,
 * which for power-of-two-ish R maps every write to the same few cache sets (10x slower). */
static void transpose(int64_t R, int K, const float *restrict a, float *restrict at) {
    enum { TILE = 16 };
    for (int64_t r0 = 0; r0 < R; r0 += TILE) {
        const int64_t r1 = r0 + TILE < R ? r0 + TILE : R;
        for (int k0 = 0; k0 < K; k0 += TILE) {
            const int k1 = k0 + TILE < K ? k0 + TILE : K;
            for (int64_t r = r0; r < r1; r++)
                for (int k = k0; k < k1; k++) at[(int64_t)k * R + r] = a[r * K + k];
        }
    }
}

/* y (M, N) = x (M, K) w (N, K)^T + b (N) (+ b2 (N) if not NULL); wt is scratch (K, N). */
static void linear(int64_t M, int K, int N, const float *restrict x, const float *restrict w, const float *restrict b,
                   const float *restrict b2, float *restrict wt, float *restrict y) {
    transpose(N, K, w, wt);
    for (int64_t r = 0; r < M; r++)
        for (int j = 0; j < N; j++) y[r * N + j] = b[j] + (b2 ? b2[j] : 0.0f);
    matmul_acc((int)M, K, N, x, wt, y);
}

/* The weight and input gradients of y = x w^T + b, given dy (M, N); tr is scratch (K, N).
 * dw (N, K) = dy^T x; db (N) = column sums of dy (skipped if NULL); dx (M, K) = dy w (if not NULL). */
static void linear_backward(int64_t M, int K, int N, const float *restrict dy, const float *restrict x,
                            const float *restrict w, float *restrict tr, float *restrict dw, float *restrict db,
                            float *restrict dx) {
    /* dw^T (K, N) = x^T dy: the wide gate dimension N is the vectorized one */
    memset(tr, 0, sizeof(float) * (size_t)K * N);
    matmul_tn_acc(K, (int)M, N, x, dy, tr);
    transpose(K, N, tr, dw);
    if (db) {
        memset(db, 0, sizeof(float) * (size_t)N);
        for (int64_t r = 0; r < M; r++)
            for (int j = 0; j < N; j++) db[j] += dy[r * N + j];
    }
    if (dx) {
        if (K >= 2 * VW) {
            memset(dx, 0, sizeof(float) * (size_t)M * K);
            matmul_acc((int)M, N, K, dy, w, dx);
        } else {  /* few input features: dx[r, k] = dy[r, :] . w[:, k], with w^T in tr */
            transpose(N, K, w, tr);
            matmul_nt(M, N, K, dy, tr, dx);
        }
    }
}

/* hp (B, H) = h (B, H) * keep (B) row-wise */
static void reset_rows(int B, int H, const float *restrict h, const float *restrict keep, float *restrict hp) {
    for (int b = 0; b < B; b++) {
        const float k = keep[b];
        for (int j = 0; j < H; j++) hp[b * H + j] = h[b * H + j] * k;
    }
}

/* h (B, H) *= keep (B) row-wise, in place */
static void scale_rows(int B, int H, float *restrict h, const float *restrict keep) {
    for (int b = 0; b < B; b++) {
        const float k = keep[b];
        for (int j = 0; j < H; j++) h[b * H + j] *= k;
    }
}

/* The end of every backward pass: dh0 from the gradient carried past step 0, then the weight,
 * bias and input gradients of both projections from the gate gradients of all steps: g_hh (T*B, G)
 * for W_hh and b_hh, g_ih for W_ih, b_ih and dx (dx skipped if NULL). When both are the same array
 * (LSTM, RNN: the biases enter as one sum) b_hh is a copy of b_ih instead of a second sum. */
static void finish_backward(int64_t TB, int B, int F, int H, int G, const float *dh, const float *g_hh,
                            const float *g_ih, const float *prev, const float *x, const float *w_hh,
                            const float *w_ih, float *tr, float *dh0, float *dw_hh, float *db_hh, float *dw_ih,
                            float *db_ih, float *dx) {
    const int same = g_hh == g_ih;
    memcpy(dh0, dh, sizeof(float) * (size_t)B * H);
    linear_backward(TB, H, G, g_hh, prev, w_hh, tr, dw_hh, same ? NULL : db_hh, NULL);
    linear_backward(TB, F, G, g_ih, x, w_ih, tr, dw_ih, db_ih, dx);
    if (same) memcpy(db_hh, db_ih, sizeof(float) * (size_t)G);
}

/* ---------------------------------------------------------------- cores in parallel */

/* The cores of one call (an actor's and a critic's memory) share nothing but the resets, so
 * with threads > 1 the first half of them runs on a helper thread while the caller runs the
 * rest: no synchronisation inside the time loop, one hand-off per call. Each core's arithmetic
 * is the same either way, so results do not depend on the thread count.
 *
 * The hand-off must cost little next to a call (~150 us per core at T=32, B=8, H=64), and
 * waking a sleeping thread costs tens of microseconds (more in a VM), so after each job the
 * helper keeps polling for the next one for SPIN_NS (a PPO update calls every few hundred
 * microseconds), yielding the CPU while it polls, and only then sleeps on a condition
 * variable. A caller that finds the helper in use by another thread runs every core itself.
 *
 * Whoever claims a posted job first runs it: the helper when it sees it, or the caller once its
 * own half is done and the helper has not started (asleep, or its CPU taken by the host), so a
 * call never waits for a helper that is not running; at worst it costs what one thread does. */

#include <sched.h>
#include <time.h>

typedef void (*core_fn)(const void *args, int c);

enum { SPIN_NS = 3000000 };

static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;  /* held by the caller using the helper */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;  /* guards sleeping / waking */
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static int pool_started = 0, pool_failed = 0, pool_sleeping = 0;
static unsigned long pool_posted = 0, pool_finished = 0;      /* atomic */
static int pool_taken = 1;  /* atomic: 0 while the posted job is unclaimed */
static core_fn pool_fn;
static const void *pool_args;
static int pool_first, pool_last;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void *pool_main(void *unused) {
    (void)unused;
    unsigned long seen = 0;
    for (;;) {
        /* poll for the next job for SPIN_NS, then sleep until one is posted */
        int64_t deadline = now_ns() + SPIN_NS;
        for (unsigned spins = 0; __atomic_load_n(&pool_posted, __ATOMIC_ACQUIRE) == seen; spins++) {
            if (spins < 256) {
                cpu_relax();
                continue;
            }
            sched_yield();
            if ((spins & 63) == 0 && now_ns() > deadline) {
                pthread_mutex_lock(&pool_lock);
                pool_sleeping = 1;
                while (__atomic_load_n(&pool_posted, __ATOMIC_ACQUIRE) == seen) pthread_cond_wait(&pool_wake, &pool_lock);
                pool_sleeping = 0;
                pthread_mutex_unlock(&pool_lock);
                break;
            }
        }
        seen = __atomic_load_n(&pool_posted, __ATOMIC_ACQUIRE);
        if (__atomic_exchange_n(&pool_taken, 1, __ATOMIC_ACQ_REL) == 0) {  /* else the caller ran it */
            for (int c = pool_first; c < pool_last; c++) pool_fn(pool_args, c);
        }
        __atomic_store_n(&pool_finished, seen, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* A forked child has no helper thread: start a new one there on first use. */
static void pool_after_fork_child(void) {
    pthread_mutex_init(&pool_busy, NULL);
    pthread_mutex_init(&pool_lock, NULL);
    pthread_cond_init(&pool_wake, NULL);
    pool_started = pool_failed = pool_sleeping = 0;
    pool_posted = pool_finished = 0;
    pool_taken = 1;
}

static int pool_start(void) {  /* called with pool_busy held */
    if (pool_started) return 1;
    if (pool_failed) return 0;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    const int failed = pthread_create(&thread, &attr, pool_main, NULL);
    pthread_attr_destroy(&attr);
    if (failed) {
        pool_failed = 1;  /* no threads: run serially from now on */
        return 0;
    }
    static int registered = 0;
    if (!registered) {
        pthread_atfork(NULL, NULL, pool_after_fork_child);
        registered = 1;
    }
    pool_started = 1;
    return 1;
}

static void for_cores(int C, int threads, core_fn fn, const void *args) {
    if (threads < 2 || C < 2 || pthread_mutex_trylock(&pool_busy) != 0) {
        for (int c = 0; c < C; c++) fn(args, c);
        return;
    }
    if (!pool_start()) {
        pthread_mutex_unlock(&pool_busy);
        for (int c = 0; c < C; c++) fn(args, c);
        return;
    }
    const int split = C / 2;  /* helper: cores [0, split), caller: [split, C) */
    pool_fn = fn;
    pool_args = args;
    pool_first = 0;
    pool_last = split;
    __atomic_store_n(&pool_taken, 0, __ATOMIC_RELEASE);  /* publishes the fields to whoever claims */
    const unsigned long id = __atomic_add_fetch(&pool_posted, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_lock(&pool_lock);
    if (pool_sleeping) pthread_cond_signal(&pool_wake);
    pthread_mutex_unlock(&pool_lock);
    for (int c = split; c < C; c++) fn(args, c);
    if (__atomic_exchange_n(&pool_taken, 1, __ATOMIC_ACQ_REL) == 0) {
        for (int c = 0; c < split; c++) fn(args, c);  /* the helper has not started: run its half */
    } else {  /* the helper runs it: wait until it is done (ids only grow) */
        for (unsigned spins = 0; (long)(__atomic_load_n(&pool_finished, __ATOMIC_ACQUIRE) - id) < 0; spins++) {
            if (spins < 256) cpu_relax();
            else sched_yield();
        }
    }
    pthread_mutex_unlock(&pool_busy);
}

/* Every entry point takes (threads, T, C, B, F, H) first; scratch arrays hold one block per core. */

/* ---------------------------------------------------------------- GRU */

/* One core: x (T,B,F), weights, h0 (B,H); writes this core's saved arrays prev, cand, ghn
 * (T,B,H), rz (T,B,2H) and out (T,B,H). Scratch: gi (T,B,3H), wt (max(F,H), 3H), g (B,3H).
 * (Per-core arrays arrive as restrict parameters: GCC honours restrict on parameters, not on
 * local pointers, and the gate loops only vectorize with it.) */
static void gru_forward_one(int T, int B, int F, int H, const float *restrict x, const float *restrict w_ih,
                            const float *restrict b_ih, const float *restrict w_hh, const float *restrict bh,
                            const float *restrict h0, const float *restrict keep, float *restrict gi,
                            float *restrict wt, float *restrict g, float *restrict prev, float *restrict rz,
                            float *restrict cand, float *restrict ghn, float *restrict o) {
    const int G = 3 * H;
    const int64_t TB = (int64_t)T * B;
    linear(TB, F, G, x, w_ih, b_ih, NULL, wt, gi);
    transpose(G, H, w_hh, wt);  /* wt (H, G) from here on */
    for (int t = 0; t < T; t++) {
        const int64_t row = (int64_t)t * B;
        float *restrict hp = prev + row * H;
        reset_rows(B, H, t == 0 ? h0 : o + (int64_t)(t - 1) * B * H, keep + row, hp);
        for (int b = 0; b < B; b++) memcpy(g + (int64_t)b * G, bh, sizeof(float) * G);
        matmul_acc(B, H, G, hp, wt, g);
        for (int b = 0; b < B; b++) {
            const float *restrict gib = gi + (row + b) * G, *restrict gb = g + (int64_t)b * G;
            const float *restrict hpb = hp + (int64_t)b * H;
            float *restrict rzb = rz + (row + b) * 2 * H, *restrict nb = cand + (row + b) * H;
            float *restrict ghnb = ghn + (row + b) * H, *restrict ob = o + (row + b) * H;
            for (int j = 0; j < 2 * H; j++) rzb[j] = sigmoid_f(gib[j] + gb[j]);
            for (int j = 0; j < H; j++) {
                ghnb[j] = gb[2 * H + j];
                const float n = tanh_f(gib[2 * H + j] + rzb[j] * gb[2 * H + j]);
                nb[j] = n;
                ob[j] = n + rzb[H + j] * (hpb[j] - n);
            }
        }
    }
}

struct gru_fwd {
    int T, B, F, H;
    cptrs x, w_ih, b_ih, w_hh, b_hh, h0;
    const float *keep;
    float *gi, *wt, *g, *prev, *rz, *cand, *ghn;
    ptrs out;
};

static void gru_forward_core(const void *args, int c) {
    const struct gru_fwd *a = args;
    const int64_t TB = (int64_t)a->T * a->B, G = 3 * a->H, K = a->F > a->H ? a->F : a->H, H = a->H;
    gru_forward_one(a->T, a->B, a->F, a->H, a->x[c], a->w_ih[c], a->b_ih[c], a->w_hh[c], a->b_hh[c], a->h0[c],
                    a->keep, a->gi + c * TB * G, a->wt + c * K * G, a->g + c * a->B * G, a->prev + c * TB * H,
                    a->rz + c * TB * 2 * H, a->cand + c * TB * H, a->ghn + c * TB * H, a->out[c]);
}

/* Saves per core and step: prev (C,T,B,H) state after the reset, rz (C,T,B,2H) gates r and z,
 * cand (C,T,B,H) n, ghn (C,T,B,H) = h W_hn^T + b_hn. Scratch per core: gi (T,B,3H),
 * wt (max(F,H), 3H), g (B,3H). */
void gru_forward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs b_ih, cptrs w_hh,
                 cptrs b_hh, cptrs h0, const float *keep, float *gi, float *wt, float *g, float *prev, float *rz,
                 float *cand, float *ghn, ptrs out) {
    const struct gru_fwd a = {T, B, F, H, x, w_ih, b_ih, w_hh, b_hh, h0, keep, gi, wt, g, prev, rz, cand, ghn, out};
    for_cores(C, threads, gru_forward_core, &a);
}

/* One core's backward; the saved arrays are this core's. */
static void gru_backward_one(int T, int B, int F, int H, const float *restrict x, const float *restrict w_ih,
                             const float *restrict w_hh, const float *restrict keep, const float *restrict prev,
                             const float *restrict rz, const float *restrict cand, const float *restrict ghn,
                             const float *restrict d_out, float *restrict ggi, float *restrict ggh,
                             float *restrict tr, float *restrict dh, float *restrict dx, float *restrict dw_ih,
                             float *restrict db_ih, float *restrict dw_hh, float *restrict db_hh,
                             float *restrict dh0) {
    const int G = 3 * H;
    const int64_t TB = (int64_t)T * B;
    memset(dh, 0, sizeof(float) * (size_t)B * H);
    for (int t = T - 1; t >= 0; t--) {
        for (int b = 0; b < B; b++) {
            const int64_t tb = (int64_t)t * B + b;
            const float *restrict dob = d_out + tb * H, *restrict hpb = prev + tb * H;
            const float *restrict rb = rz + tb * 2 * H, *restrict zb = rb + H;
            const float *restrict nb = cand + tb * H, *restrict ghnb = ghn + tb * H;
            float *restrict gi_b = ggi + tb * G, *restrict gh_b = ggh + tb * G, *restrict dhb = dh + (int64_t)b * H;
            for (int j = 0; j < H; j++) {
                const float d = dhb[j] + dob[j], r = rb[j], z = zb[j], n = nb[j];
                const float dn = d * (1.0f - z) * (1.0f - n * n);  /* wrt n's pre-activation */
                const float dr = dn * ghnb[j] * r * (1.0f - r);
                const float dz = d * (hpb[j] - n) * z * (1.0f - z);
                gi_b[j] = dr;
                gi_b[H + j] = dz;
                gi_b[2 * H + j] = dn;
                gh_b[j] = dr;
                gh_b[H + j] = dz;
                gh_b[2 * H + j] = dn * r;
                dhb[j] = d * z;  /* the direct path h_{t-1} -> h_t */
            }
        }
        matmul_acc(B, G, H, ggh + (int64_t)t * B * G, w_hh, dh);
        scale_rows(B, H, dh, keep + (int64_t)t * B);
    }
    finish_backward(TB, B, F, H, G, dh, ggh, ggi, prev, x, w_hh, w_ih, tr, dh0, dw_hh, db_hh, dw_ih, db_ih, dx);
}

struct gru_bwd {
    int T, B, F, H;
    cptrs x, w_ih, w_hh;
    const float *keep, *prev, *rz, *cand, *ghn;
    cptrs d_out;
    float *ggi, *ggh, *tr, *dh;
    ptrs dx, dw_ih, db_ih, dw_hh, db_hh, dh0;
};

static void gru_backward_core(const void *args, int c) {
    const struct gru_bwd *a = args;
    const int64_t TB = (int64_t)a->T * a->B, G = 3 * a->H, K = a->F > a->H ? a->F : a->H, H = a->H;
    gru_backward_one(a->T, a->B, a->F, a->H, a->x[c], a->w_ih[c], a->w_hh[c], a->keep, a->prev + c * TB * H,
                     a->rz + c * TB * 2 * H, a->cand + c * TB * H, a->ghn + c * TB * H, a->d_out[c],
                     a->ggi + c * TB * G, a->ggh + c * TB * G, a->tr + c * K * G, a->dh + c * a->B * H, a->dx[c],
                     a->dw_ih[c], a->db_ih[c], a->dw_hh[c], a->db_hh[c], a->dh0[c]);
}

/* d_out: per core (T,B,H), the gradient wrt the outputs. Writes per core dx (T,B,F) (entries may
 * be NULL), dw_ih (3H,F), db_ih (3H), dw_hh (3H,H), db_hh (3H), dh0 (B,H). Scratch per core:
 * ggi and ggh (T,B,3H), tr (max(F,H), 3H), dh (B,H). */
void gru_backward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs w_hh,
                  const float *keep, const float *prev, const float *rz, const float *cand, const float *ghn,
                  cptrs d_out, float *ggi, float *ggh, float *tr, float *dh, ptrs dx, ptrs dw_ih, ptrs db_ih,
                  ptrs dw_hh, ptrs db_hh, ptrs dh0) {
    const struct gru_bwd a = {T, B, F, H, x, w_ih, w_hh, keep, prev, rz, cand, ghn, d_out, ggi, ggh, tr, dh,
                              dx, dw_ih, db_ih, dw_hh, db_hh, dh0};
    for_cores(C, threads, gru_backward_core, &a);
}

/* ---------------------------------------------------------------- LSTM */

/* One core: writes prev_h, prev_c, tanh_c (T,B,H), acts (T,B,4H), out (T,B,H), c_last (B,H).
 * Scratch: wt (max(F,H), 4H). */
static void lstm_forward_one(int T, int B, int F, int H, const float *restrict x, const float *restrict w_ih,
                             const float *restrict b_ih, const float *restrict w_hh, const float *restrict b_hh,
                             const float *restrict h0, const float *restrict c0, const float *restrict keep,
                             float *restrict wt, float *restrict prev_h, float *restrict prev_c,
                             float *restrict acts, float *restrict tanh_c, float *restrict o,
                             float *restrict cc) {
    const int G = 4 * H;
    const int64_t TB = (int64_t)T * B;
    linear(TB, F, G, x, w_ih, b_ih, b_hh, wt, acts);  /* pre-activations first, in place */
    transpose(G, H, w_hh, wt);
    memcpy(cc, c0, sizeof(float) * (size_t)B * H);  /* c_last carries c through the loop */
    for (int t = 0; t < T; t++) {
        const int64_t row = (int64_t)t * B;
        float *restrict hp = prev_h + row * H, *restrict cp = prev_c + row * H, *restrict a = acts + row * G;
        reset_rows(B, H, t == 0 ? h0 : o + (int64_t)(t - 1) * B * H, keep + row, hp);
        reset_rows(B, H, cc, keep + row, cp);
        matmul_acc(B, H, G, hp, wt, a);
        for (int b = 0; b < B; b++) {
            float *restrict ab = a + (int64_t)b * G, *restrict tcb = tanh_c + (row + b) * H;
            float *restrict ob = o + (row + b) * H, *restrict ccb = cc + (int64_t)b * H;
            const float *restrict cpb = cp + (int64_t)b * H;
            for (int j = 0; j < H; j++) {
                const float i = sigmoid_f(ab[j]), f = sigmoid_f(ab[H + j]);
                const float gg = tanh_f(ab[2 * H + j]), og = sigmoid_f(ab[3 * H + j]);
                ab[j] = i;
                ab[H + j] = f;
                ab[2 * H + j] = gg;
                ab[3 * H + j] = og;
                const float cn = f * cpb[j] + i * gg;
                ccb[j] = cn;
                const float tc = tanh_f(cn);
                tcb[j] = tc;
                ob[j] = og * tc;
            }
        }
    }
}

struct lstm_fwd {
    int T, B, F, H;
    cptrs x, w_ih, b_ih, w_hh, b_hh, h0, c0;
    const float *keep;
    float *wt, *prev_h, *prev_c, *acts, *tanh_c;
    ptrs out, c_last;
};

static void lstm_forward_core(const void *args, int c) {
    const struct lstm_fwd *a = args;
    const int64_t TB = (int64_t)a->T * a->B, G = 4 * a->H, K = a->F > a->H ? a->F : a->H, H = a->H;
    lstm_forward_one(a->T, a->B, a->F, a->H, a->x[c], a->w_ih[c], a->b_ih[c], a->w_hh[c], a->b_hh[c], a->h0[c],
                     a->c0[c], a->keep, a->wt + c * K * G, a->prev_h + c * TB * H, a->prev_c + c * TB * H,
                     a->acts + c * TB * G, a->tanh_c + c * TB * H, a->out[c], a->c_last[c]);
}

/* Saves per core and step: prev_h, prev_c (C,T,B,H) after the reset, acts (C,T,B,4H) activated
 * gates i f g o, tanh_c (C,T,B,H). Writes out (T,B,H) and c_last (B,H) per core. Scratch per
 * core: wt (max(F,H), 4H). */
void lstm_forward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs b_ih, cptrs w_hh,
                  cptrs b_hh, cptrs h0, cptrs c0, const float *keep, float *wt, float *prev_h, float *prev_c,
                  float *acts, float *tanh_c, ptrs out, ptrs c_last) {
    const struct lstm_fwd a = {T, B, F, H, x, w_ih, b_ih, w_hh, b_hh, h0, c0, keep, wt, prev_h, prev_c, acts,
                               tanh_c, out, c_last};
    for_cores(C, threads, lstm_forward_core, &a);
}

static void lstm_backward_one(int T, int B, int F, int H, const float *restrict x, const float *restrict w_ih,
                              const float *restrict w_hh, const float *restrict keep,
                              const float *restrict prev_h, const float *restrict prev_c,
                              const float *restrict acts, const float *restrict tanh_c,
                              const float *restrict d_out, const float *restrict dc_last, float *restrict gp,
                              float *restrict tr, float *restrict dh, float *restrict dx, float *restrict dw_ih,
                              float *restrict db_ih, float *restrict dw_hh, float *restrict db_hh,
                              float *restrict dh0, float *restrict dc) {
    const int G = 4 * H;
    const int64_t TB = (int64_t)T * B;
    memcpy(dc, dc_last, sizeof(float) * (size_t)B * H);  /* dc0 carries dc through the loop */
    memset(dh, 0, sizeof(float) * (size_t)B * H);
    for (int t = T - 1; t >= 0; t--) {
        const float *restrict kt = keep + (int64_t)t * B;
        for (int b = 0; b < B; b++) {
            const int64_t tb = (int64_t)t * B + b;
            const float k = kt[b];
            const float *restrict dob = d_out + tb * H, *restrict ab = acts + tb * G;
            const float *restrict tcb = tanh_c + tb * H, *restrict cpb = prev_c + tb * H;
            float *restrict gpb = gp + tb * G, *restrict dhb = dh + (int64_t)b * H, *restrict dcb = dc + (int64_t)b * H;
            for (int j = 0; j < H; j++) {
                const float i = ab[j], f = ab[H + j], gg = ab[2 * H + j], og = ab[3 * H + j], tc = tcb[j];
                const float d = dhb[j] + dob[j];
                const float dcj = dcb[j] + d * og * (1.0f - tc * tc);
                gpb[j] = dcj * gg * i * (1.0f - i);
                gpb[H + j] = dcj * cpb[j] * f * (1.0f - f);
                gpb[2 * H + j] = dcj * i * (1.0f - gg * gg);
                gpb[3 * H + j] = d * tc * og * (1.0f - og);
                dcb[j] = dcj * f * k;
                dhb[j] = 0.0f;
            }
        }
        matmul_acc(B, G, H, gp + (int64_t)t * B * G, w_hh, dh);
        scale_rows(B, H, dh, kt);
    }
    finish_backward(TB, B, F, H, G, dh, gp, gp, prev_h, x, w_hh, w_ih, tr, dh0, dw_hh, db_hh, dw_ih, db_ih, dx);
}

struct lstm_bwd {
    int T, B, F, H;
    cptrs x, w_ih, w_hh;
    const float *keep, *prev_h, *prev_c, *acts, *tanh_c;
    cptrs d_out, dc_last;
    float *gp, *tr, *dh;
    ptrs dx, dw_ih, db_ih, dw_hh, db_hh, dh0, dc0;
};

static void lstm_backward_core(const void *args, int c) {
    const struct lstm_bwd *a = args;
    const int64_t TB = (int64_t)a->T * a->B, G = 4 * a->H, K = a->F > a->H ? a->F : a->H, H = a->H;
    lstm_backward_one(a->T, a->B, a->F, a->H, a->x[c], a->w_ih[c], a->w_hh[c], a->keep, a->prev_h + c * TB * H,
                      a->prev_c + c * TB * H, a->acts + c * TB * G, a->tanh_c + c * TB * H, a->d_out[c],
                      a->dc_last[c], a->gp + c * TB * G, a->tr + c * K * G, a->dh + c * a->B * H, a->dx[c],
                      a->dw_ih[c], a->db_ih[c], a->dw_hh[c], a->db_hh[c], a->dh0[c], a->dc0[c]);
}

/* d_out (T,B,H) and dc_last (B,H) per core. Writes per core dx (T,B,F) (entries may be NULL),
 * dw_ih (4H,F), db_ih (4H), dw_hh (4H,H), db_hh (4H), dh0, dc0 (B,H). Scratch per core:
 * gp (T,B,4H), tr (max(F,H), 4H), dh (B,H). */
void lstm_backward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs w_hh,
                   const float *keep, const float *prev_h, const float *prev_c, const float *acts,
                   const float *tanh_c, cptrs d_out, cptrs dc_last, float *gp, float *tr, float *dh, ptrs dx,
                   ptrs dw_ih, ptrs db_ih, ptrs dw_hh, ptrs db_hh, ptrs dh0, ptrs dc0) {
    const struct lstm_bwd a = {T, B, F, H, x, w_ih, w_hh, keep, prev_h, prev_c, acts, tanh_c, d_out, dc_last,
                               gp, tr, dh, dx, dw_ih, db_ih, dw_hh, db_hh, dh0, dc0};
    for_cores(C, threads, lstm_backward_core, &a);
}

/* ---------------------------------------------------------------- Elman RNN (tanh) */

static void rnn_forward_one(int T, int B, int F, int H, const float *restrict x, const float *restrict w_ih,
                            const float *restrict b_ih, const float *restrict w_hh, const float *restrict b_hh,
                            const float *restrict h0, const float *restrict keep, float *restrict wt,
                            float *restrict prev, float *restrict o) {
    const int64_t TB = (int64_t)T * B;
    linear(TB, F, H, x, w_ih, b_ih, b_hh, wt, o);  /* out holds the pre-activations */
    transpose(H, H, w_hh, wt);
    for (int t = 0; t < T; t++) {
        float *restrict hp = prev + (int64_t)t * B * H, *restrict ot = o + (int64_t)t * B * H;
        reset_rows(B, H, t == 0 ? h0 : o + (int64_t)(t - 1) * B * H, keep + (int64_t)t * B, hp);
        matmul_acc(B, H, H, hp, wt, ot);
        for (int j = 0; j < B * H; j++) ot[j] = tanh_f(ot[j]);
    }
}

struct rnn_fwd {
    int T, B, F, H;
    cptrs x, w_ih, b_ih, w_hh, b_hh, h0;
    const float *keep;
    float *wt, *prev;
    ptrs out;
};

static void rnn_forward_core(const void *args, int c) {
    const struct rnn_fwd *a = args;
    const int64_t TB = (int64_t)a->T * a->B, K = a->F > a->H ? a->F : a->H, H = a->H;
    rnn_forward_one(a->T, a->B, a->F, a->H, a->x[c], a->w_ih[c], a->b_ih[c], a->w_hh[c], a->b_hh[c], a->h0[c],
                    a->keep, a->wt + c * K * H, a->prev + c * TB * H, a->out[c]);
}

/* Saves prev (C,T,B,H) after the reset; writes out (T,B,H) per core. Scratch per core:
 * wt (max(F,H), H). */
void rnn_forward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs b_ih, cptrs w_hh,
                 cptrs b_hh, cptrs h0, const float *keep, float *wt, float *prev, ptrs out) {
    const struct rnn_fwd a = {T, B, F, H, x, w_ih, b_ih, w_hh, b_hh, h0, keep, wt, prev, out};
    for_cores(C, threads, rnn_forward_core, &a);
}

static void rnn_backward_one(int T, int B, int F, int H, const float *restrict x, const float *restrict w_ih,
                             const float *restrict w_hh, const float *restrict keep, const float *restrict prev,
                             const float *restrict out, const float *restrict d_out, float *restrict ga,
                             float *restrict tr, float *restrict dh, float *restrict dx, float *restrict dw_ih,
                             float *restrict db_ih, float *restrict dw_hh, float *restrict db_hh,
                             float *restrict dh0) {
    const int64_t TB = (int64_t)T * B;
    memset(dh, 0, sizeof(float) * (size_t)B * H);
    for (int t = T - 1; t >= 0; t--) {
        const int64_t off = (int64_t)t * B * H;
        const float *restrict dob = d_out + off, *restrict ob = out + off;
        float *restrict gat = ga + off;
        for (int j = 0; j < B * H; j++) {
            gat[j] = (dh[j] + dob[j]) * (1.0f - ob[j] * ob[j]);
            dh[j] = 0.0f;
        }
        matmul_acc(B, H, H, gat, w_hh, dh);
        scale_rows(B, H, dh, keep + (int64_t)t * B);
    }
    finish_backward(TB, B, F, H, H, dh, ga, ga, prev, x, w_hh, w_ih, tr, dh0, dw_hh, db_hh, dw_ih, db_ih, dx);
}

struct rnn_bwd {
    int T, B, F, H;
    cptrs x, w_ih, w_hh;
    const float *keep, *prev;
    cptrs out, d_out;
    float *ga, *tr, *dh;
    ptrs dx, dw_ih, db_ih, dw_hh, db_hh, dh0;
};

static void rnn_backward_core(const void *args, int c) {
    const struct rnn_bwd *a = args;
    const int64_t TB = (int64_t)a->T * a->B, K = a->F > a->H ? a->F : a->H, H = a->H;
    rnn_backward_one(a->T, a->B, a->F, a->H, a->x[c], a->w_ih[c], a->w_hh[c], a->keep, a->prev + c * TB * H,
                     a->out[c], a->d_out[c], a->ga + c * TB * H, a->tr + c * K * H, a->dh + c * a->B * H, a->dx[c],
                     a->dw_ih[c], a->db_ih[c], a->dw_hh[c], a->db_hh[c], a->dh0[c]);
}

/* d_out, out (T,B,H) per core. Writes per core dx (T,B,F) (entries may be NULL), dw_ih (H,F),
 * db_ih (H), dw_hh (H,H), db_hh (H), dh0 (B,H). Scratch per core: ga (T,B,H), tr (max(F,H), H),
 * dh (B,H). */
void rnn_backward(int threads, int T, int C, int B, int F, int H, cptrs x, cptrs w_ih, cptrs w_hh,
                  const float *keep, const float *prev, cptrs out, cptrs d_out, float *ga, float *tr, float *dh,
                  ptrs dx, ptrs dw_ih, ptrs db_ih, ptrs dw_hh, ptrs db_hh, ptrs dh0) {
    const struct rnn_bwd a = {T, B, F, H, x, w_ih, w_hh, keep, prev, out, d_out, ga, tr, dh, dx, dw_ih, db_ih,
                              dw_hh, db_hh, dh0};
    for_cores(C, threads, rnn_backward_core, &a);
}
