/* Time loops of the GRU, LSTM and Elman RNN layers, forward and backward, float32.
 *
 * Built on first use by recurrent_rl/native.py (cc -O3 -march=native) and called through ctypes
 * from recurrent_rl/kernels.py, which keeps the NumPy loops as the reference and the fallback.
 * Each function runs one layer of C stacked cores over T steps; every array is C-contiguous and
 * per-step arrays are core-major, (C, T, B, X), so that each core's slice is one matrix (T*B, X)
 * for the weight gradients:
 *
 *   T time, C cores, B batch, H hidden, G = gates * H
 *   x-projections gx (C, T, B, G)  already hold x W_ih^T + b_ih (and b_hh where noted)
 *   keep (T, B)      0 where the carried state is zeroed before step t (an episode start)
 *   w_t (C, H, G)    W_hh transposed, for the forward product h W_hh^T
 *   w (C, G, H)      W_hh itself, for the backward product d W_hh
 *
 * The math is torch's (gate order r z n for GRU, i f g o for LSTM). Weight gradients are left to
 * the caller (one large matmul over all steps); these loops produce the per-step gradients.
 */
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

/* y (B, N) += x (B, K) m (K, N), row-major. Register blocks of 4 rows x 2 vectors: each row of
 * m is loaded once per 4 rows of x, and y is read and written once. */
static void matmul_acc(int B, int K, int N, const float *restrict x, const float *restrict m, float *restrict y) {
    int j = 0;
    for (; j + 2 * VW <= N; j += 2 * VW) {
        int b = 0;
        for (; b + 4 <= B; b += 4) {
            vf a00 = ld(y + (b + 0) * N + j), a01 = ld(y + (b + 0) * N + j + VW);
            vf a10 = ld(y + (b + 1) * N + j), a11 = ld(y + (b + 1) * N + j + VW);
            vf a20 = ld(y + (b + 2) * N + j), a21 = ld(y + (b + 2) * N + j + VW);
            vf a30 = ld(y + (b + 3) * N + j), a31 = ld(y + (b + 3) * N + j + VW);
            const float *x0 = x + (b + 0) * K, *x1 = x + (b + 1) * K, *x2 = x + (b + 2) * K, *x3 = x + (b + 3) * K;
            for (int k = 0; k < K; k++) {
                const vf m0 = ld(m + (int64_t)k * N + j), m1 = ld(m + (int64_t)k * N + j + VW);
                a00 += x0[k] * m0; a01 += x0[k] * m1;
                a10 += x1[k] * m0; a11 += x1[k] * m1;
                a20 += x2[k] * m0; a21 += x2[k] * m1;
                a30 += x3[k] * m0; a31 += x3[k] * m1;
            }
            st(y + (b + 0) * N + j, a00); st(y + (b + 0) * N + j + VW, a01);
            st(y + (b + 1) * N + j, a10); st(y + (b + 1) * N + j + VW, a11);
            st(y + (b + 2) * N + j, a20); st(y + (b + 2) * N + j + VW, a21);
            st(y + (b + 3) * N + j, a30); st(y + (b + 3) * N + j + VW, a31);
        }
        for (; b < B; b++) {
            vf a0 = ld(y + b * N + j), a1 = ld(y + b * N + j + VW);
            const float *xb = x + b * K;
            for (int k = 0; k < K; k++) {
                a0 += xb[k] * ld(m + (int64_t)k * N + j);
                a1 += xb[k] * ld(m + (int64_t)k * N + j + VW);
            }
            st(y + b * N + j, a0); st(y + b * N + j + VW, a1);
        }
    }
    for (; j < N; j++)
        for (int b = 0; b < B; b++) {
            float a = y[b * N + j];
            for (int k = 0; k < K; k++) a += x[b * K + k] * m[(int64_t)k * N + j];
            y[b * N + j] = a;
        }
}

/* ---------------------------------------------------------------- GRU */

/* gi (C,T,B,3H) = x W_ih^T + b_ih; b_hh (C,3H).
 * Saves per step: prev (C,T,B,H) state after the reset, rz (C,T,B,2H) gates, cand (C,T,B,H) n,
 * ghn (C,T,B,H) = h W_hn^T + b_hn. Writes out (C,T,B,H). */
void gru_forward(int T, int C, int B, int H, const float *restrict gi, const float *restrict h0, const float *restrict keep,
                 const float *restrict w_t, const float *restrict b_hh, float *restrict prev, float *restrict rz, float *restrict cand, float *restrict ghn,
                 float *restrict out, float *restrict g /* scratch (B, 3H) */) {
    const int G = 3 * H;
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < C; c++) {
            const int64_t row = ((int64_t)c * T + t) * B;  /* first (t, c, b=0) row */
            const float *restrict h = t == 0 ? h0 + (int64_t)c * B * H : out + (row - B) * H;
            float *restrict hp = prev + row * H;
            for (int b = 0; b < B; b++) {
                const float k = keep[(int64_t)t * B + b];
                for (int j = 0; j < H; j++) hp[b * H + j] = h[b * H + j] * k;
                memcpy(g + (int64_t)b * G, b_hh + (int64_t)c * G, sizeof(float) * G);
            }
            matmul_acc(B, H, G, hp, w_t + (int64_t)c * H * G, g);
            for (int b = 0; b < B; b++) {
                const float *restrict gib = gi + (row + b) * G, *restrict gb = g + (int64_t)b * G, *restrict hpb = hp + (int64_t)b * H;
                float *restrict rzb = rz + (row + b) * 2 * H, *restrict nb = cand + (row + b) * H, *restrict ghnb = ghn + (row + b) * H;
                float *restrict ob = out + (row + b) * H;
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
}

/* d_out (C,T,B,H) gradient wrt the outputs. Writes grad_gi (C,T,B,3H) wrt gi, grad_gh (C,T,B,3H)
 * wrt h W_hh^T + b_hh, dh0 (C,B,H) wrt h0. Uses the arrays saved by gru_forward and
 * w (C,3H,H). */
void gru_backward(int T, int C, int B, int H, const float *restrict d_out, const float *restrict keep, const float *restrict w,
                  const float *restrict prev, const float *restrict rz, const float *restrict cand, const float *restrict ghn, float *restrict grad_gi,
                  float *restrict grad_gh, float *restrict dh0, float *restrict dh /* scratch (C,B,H) */) {
    const int G = 3 * H;
    memset(dh, 0, sizeof(float) * (size_t)C * B * H);
    for (int t = T - 1; t >= 0; t--) {
        for (int c = 0; c < C; c++) {
            const int64_t row = ((int64_t)c * T + t) * B;
            float *restrict dhc = dh + (int64_t)c * B * H;
            for (int b = 0; b < B; b++) {
                const float *restrict dob = d_out + (row + b) * H, *restrict hpb = prev + (row + b) * H;
                const float *restrict rb = rz + (row + b) * 2 * H, *restrict zb = rb + H;
                const float *restrict nb = cand + (row + b) * H, *restrict ghnb = ghn + (row + b) * H;
                float *restrict ggi = grad_gi + (row + b) * G, *restrict ggh = grad_gh + (row + b) * G, *restrict dhb = dhc + (int64_t)b * H;
                for (int j = 0; j < H; j++) {
                    const float d = dhb[j] + dob[j], r = rb[j], z = zb[j], n = nb[j];
                    const float dn = d * (1.0f - z) * (1.0f - n * n);  /* wrt n's pre-activation */
                    const float dr = dn * ghnb[j] * r * (1.0f - r);
                    const float dz = d * (hpb[j] - n) * z * (1.0f - z);
                    ggi[j] = dr;
                    ggi[H + j] = dz;
                    ggi[2 * H + j] = dn;
                    ggh[j] = dr;
                    ggh[H + j] = dz;
                    ggh[2 * H + j] = dn * r;
                    dhb[j] = d * z;  /* the direct path h_{t-1} -> h_t */
                }
            }
            matmul_acc(B, G, H, grad_gh + row * G, w + (int64_t)c * G * H, dhc);
            for (int b = 0; b < B; b++) {
                const float k = keep[(int64_t)t * B + b];
                for (int j = 0; j < H; j++) dhc[b * H + j] *= k;
            }
        }
    }
    memcpy(dh0, dh, sizeof(float) * (size_t)C * B * H);
}

/* ---------------------------------------------------------------- LSTM */

/* gx (C,T,B,4H) = x W_ih^T + b_ih + b_hh, gates i f g o. Saves prev_h, prev_c (C,T,B,H) after the
 * reset, acts (C,T,B,4H) activated gates, tanh_c (C,T,B,H). Writes out (C,T,B,H), c_last (C,B,H). */
void lstm_forward(int T, int C, int B, int H, const float *restrict gx, const float *restrict h0, const float *restrict c0,
                  const float *restrict keep, const float *restrict w_t, float *restrict prev_h, float *restrict prev_c, float *restrict acts,
                  float *restrict tanh_c, float *restrict out, float *restrict c_last) {
    const int G = 4 * H;
    memcpy(c_last, c0, sizeof(float) * (size_t)C * B * H);  /* c_last carries c through the loop */
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < C; c++) {
            const int64_t row = ((int64_t)c * T + t) * B;
            const float *restrict h = t == 0 ? h0 + (int64_t)c * B * H : out + (row - B) * H;
            float *restrict cc = c_last + (int64_t)c * B * H;
            float *restrict hp = prev_h + row * H, *restrict cp = prev_c + row * H, *restrict a = acts + row * G;
            for (int b = 0; b < B; b++) {
                const float k = keep[(int64_t)t * B + b];
                for (int j = 0; j < H; j++) {
                    hp[b * H + j] = h[b * H + j] * k;
                    cp[b * H + j] = cc[b * H + j] * k;
                }
            }
            memcpy(a, gx + row * G, sizeof(float) * (size_t)B * G);
            matmul_acc(B, H, G, hp, w_t + (int64_t)c * H * G, a);
            for (int b = 0; b < B; b++) {
                float *restrict ab = a + (int64_t)b * G, *restrict tcb = tanh_c + (row + b) * H, *restrict ob = out + (row + b) * H;
                float *restrict ccb = cc + (int64_t)b * H;
                const float *restrict cpb = cp + (int64_t)b * H;
                for (int j = 0; j < H; j++) {
                    const float i = sigmoid_f(ab[j]), f = sigmoid_f(ab[H + j]);
                    const float gg = tanh_f(ab[2 * H + j]), o = sigmoid_f(ab[3 * H + j]);
                    ab[j] = i;
                    ab[H + j] = f;
                    ab[2 * H + j] = gg;
                    ab[3 * H + j] = o;
                    const float cn = f * cpb[j] + i * gg;
                    ccb[j] = cn;
                    const float tc = tanh_f(cn);
                    tcb[j] = tc;
                    ob[j] = o * tc;
                }
            }
        }
    }
}

/* d_out (C,T,B,H), dc_last (C,B,H) gradients wrt the outputs and the last cell. Writes grad_gx
 * (C,T,B,4H), dh0, dc0 (C,B,H). w (C,4H,H). */
void lstm_backward(int T, int C, int B, int H, const float *restrict d_out, const float *restrict dc_last, const float *restrict keep,
                   const float *restrict w, const float *restrict prev_c, const float *restrict acts, const float *restrict tanh_c,
                   float *restrict grad_gx, float *restrict dh0, float *restrict dc0, float *restrict dh /* scratch (C,B,H) */) {
    const int G = 4 * H;
    memset(dh, 0, sizeof(float) * (size_t)C * B * H);
    memcpy(dc0, dc_last, sizeof(float) * (size_t)C * B * H);  /* dc0 carries dc through the loop */
    for (int t = T - 1; t >= 0; t--) {
        for (int c = 0; c < C; c++) {
            const int64_t row = ((int64_t)c * T + t) * B;
            float *restrict dhc = dh + (int64_t)c * B * H, *restrict dcc = dc0 + (int64_t)c * B * H;
            for (int b = 0; b < B; b++) {
                const float k = keep[(int64_t)t * B + b];
                const float *restrict dob = d_out + (row + b) * H, *restrict ab = acts + (row + b) * G;
                const float *restrict tcb = tanh_c + (row + b) * H, *restrict cpb = prev_c + (row + b) * H;
                float *restrict gp = grad_gx + (row + b) * G, *restrict dhb = dhc + (int64_t)b * H, *restrict dcb = dcc + (int64_t)b * H;
                for (int j = 0; j < H; j++) {
                    const float i = ab[j], f = ab[H + j], gg = ab[2 * H + j], o = ab[3 * H + j], tc = tcb[j];
                    const float d = dhb[j] + dob[j];
                    const float dc = dcb[j] + d * o * (1.0f - tc * tc);
                    gp[j] = dc * gg * i * (1.0f - i);
                    gp[H + j] = dc * cpb[j] * f * (1.0f - f);
                    gp[2 * H + j] = dc * i * (1.0f - gg * gg);
                    gp[3 * H + j] = d * tc * o * (1.0f - o);
                    dcb[j] = dc * f * k;
                    dhb[j] = 0.0f;
                }
            }
            matmul_acc(B, G, H, grad_gx + row * G, w + (int64_t)c * G * H, dhc);
            for (int b = 0; b < B; b++) {
                const float k = keep[(int64_t)t * B + b];
                for (int j = 0; j < H; j++) dhc[b * H + j] *= k;
            }
        }
    }
    memcpy(dh0, dh, sizeof(float) * (size_t)C * B * H);
}

/* ---------------------------------------------------------------- Elman RNN (tanh) */

/* gx (C,T,B,H) = x W_ih^T + b_ih + b_hh. Saves prev (C,T,B,H); writes out (C,T,B,H). */
void rnn_forward(int T, int C, int B, int H, const float *restrict gx, const float *restrict h0, const float *restrict keep,
                 const float *restrict w_t, float *restrict prev, float *restrict out) {
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < C; c++) {
            const int64_t row = ((int64_t)c * T + t) * B;
            const float *restrict h = t == 0 ? h0 + (int64_t)c * B * H : out + (row - B) * H;
            float *restrict hp = prev + row * H, *restrict o = out + row * H;
            for (int b = 0; b < B; b++) {
                const float k = keep[(int64_t)t * B + b];
                for (int j = 0; j < H; j++) hp[b * H + j] = h[b * H + j] * k;
            }
            memcpy(o, gx + row * H, sizeof(float) * (size_t)B * H);
            matmul_acc(B, H, H, hp, w_t + (int64_t)c * H * H, o);
            for (int j = 0; j < B * H; j++) o[j] = tanh_f(o[j]);
        }
    }
}

/* Writes grad_gx (C,T,B,H) and dh0 (C,B,H). w (C,H,H). */
void rnn_backward(int T, int C, int B, int H, const float *restrict d_out, const float *restrict keep, const float *restrict w,
                  const float *restrict out, float *restrict grad_gx, float *restrict dh0, float *restrict dh /* scratch (C,B,H) */) {
    memset(dh, 0, sizeof(float) * (size_t)C * B * H);
    for (int t = T - 1; t >= 0; t--) {
        for (int c = 0; c < C; c++) {
            const int64_t row = ((int64_t)c * T + t) * B;
            float *restrict dhc = dh + (int64_t)c * B * H, *restrict ga = grad_gx + row * H;
            const float *restrict dob = d_out + row * H, *restrict ob = out + row * H;
            for (int j = 0; j < B * H; j++) {
                ga[j] = (dhc[j] + dob[j]) * (1.0f - ob[j] * ob[j]);
                dhc[j] = 0.0f;
            }
            matmul_acc(B, H, H, ga, w + (int64_t)c * H * H, dhc);
            for (int b = 0; b < B; b++) {
                const float k = keep[(int64_t)t * B + b];
                for (int j = 0; j < H; j++) dhc[b * H + j] *= k;
            }
        }
    }
    memcpy(dh0, dh, sizeof(float) * (size_t)C * B * H);
}
