/*
 * mcuqp internal: the SMLAD inner loops of the DSP low-bit kernels (runtime_c/src/dsp/, the low-bit files).
 *
 * A weight word holds 32 / bits codes, code 4 f + j in byte j at bits [bits f, bits f +
 * bits). Shifting field f to the top of every byte and masking the rest gives four int8
 * lanes equal to code * 2^(8 - bits) (int4: 16 w, ternary: 64 w, binary: -128 b); SXTB16
 * / SXTB16 ROR #8 turn them into the int16 pairs {j0, j2} {j1, j3} that meet the swizzled
 * inputs {x0, x2} {x1, x3} in two SMLADs. The scaled sum is exact while |sum| * 2^(8 -
 * bits) < 2^31 (rows shorter than 65536), and an arithmetic shift undoes the scale: int4
 * and ternary sum = acc >> (8 - bits); binary (+1 for b = 1, -1 for b = 0) sum =
 * 2 sum(b x) - sum(x) = -(acc >> 6) - sum(x).
 */
#ifndef MCUQP_LOWBIT_DSP_H
#define MCUQP_LOWBIT_DSP_H

#include "mcuqp_packed.h"

/* Field lanes (code * 2^(8 - bits)) meet input pairs i (words 2 i, 2 i + 1) of each window. */
#define MCUQP_LB_STEP(fw, i)                                                                                      \
    do {                                                                                                         \
        const uint32_t w02_ = mcuqp_sxtb16(fw);                                                                   \
        const uint32_t w13_ = mcuqp_sxtb16_ror8(fw);                                                              \
        a = mcuqp_smlad(xa[stride * 2 * (i)], w02_, a);                                                           \
        a = mcuqp_smlad(xa[stride * (2 * (i) + 1)], w13_, a);                                                     \
        if (pixels == 2) {                                                                                       \
            b = mcuqp_smlad(xb[stride * 2 * (i)], w02_, b);                                                       \
            b = mcuqp_smlad(xb[stride * (2 * (i) + 1)], w13_, b);                                                 \
        }                                                                                                        \
    } while (0)

/* acc[p] += scaled dot of one row (n_words words) with the swizzled window of pixel p:
 * `pixels` 1 (one window at x) or 2 (two windows interleaved word by word at x); bits and
 * pixels constant at every call, every field written out so that each shift is an
 * immediate. */
MCUQP_INLINE void mcuqp_lb_dot(const uint32_t *w, int32_t n_words, const uint32_t *x, int32_t pixels, int32_t bits,
                               int32_t acc[2])
{
    const int32_t stride = pixels;
    const uint32_t *xa = x;
    const uint32_t *xb = x + 1;
    const uint32_t *end = w + n_words;
    const int32_t step = 2 * (8 / bits) * stride;
    int32_t a = acc[0];
    int32_t b = acc[1];
    while (w != end) {
        const uint32_t v = *w++;
        if (bits == 4) {
            MCUQP_LB_STEP((v << 4) & 0xF0F0F0F0u, 0);
            MCUQP_LB_STEP(v & 0xF0F0F0F0u, 1);
        } else if (bits == 2) {
            MCUQP_LB_STEP((v << 6) & 0xC0C0C0C0u, 0);
            MCUQP_LB_STEP((v << 4) & 0xC0C0C0C0u, 1);
            MCUQP_LB_STEP((v << 2) & 0xC0C0C0C0u, 2);
            MCUQP_LB_STEP(v & 0xC0C0C0C0u, 3);
        } else {
            MCUQP_LB_STEP((v << 7) & 0x80808080u, 0);
            MCUQP_LB_STEP((v << 6) & 0x80808080u, 1);
            MCUQP_LB_STEP((v << 5) & 0x80808080u, 2);
            MCUQP_LB_STEP((v << 4) & 0x80808080u, 3);
            MCUQP_LB_STEP((v << 3) & 0x80808080u, 4);
            MCUQP_LB_STEP((v << 2) & 0x80808080u, 5);
            MCUQP_LB_STEP((v << 1) & 0x80808080u, 6);
            MCUQP_LB_STEP(v & 0x80808080u, 7);
        }
        xa += step;
        xb += step;
    }
    acc[0] = a;
    acc[1] = b;
}

/* Two rows (c, d) times two windows (a, b): one load of each input pair feeds both rows. */
#define MCUQP_LB_STEP22(fc, fd, i)                                                                                \
    do {                                                                                                         \
        const uint32_t c02_ = mcuqp_sxtb16(fc);                                                                   \
        const uint32_t c13_ = mcuqp_sxtb16_ror8(fc);                                                              \
        const uint32_t d02_ = mcuqp_sxtb16(fd);                                                                   \
        const uint32_t d13_ = mcuqp_sxtb16_ror8(fd);                                                              \
        uint32_t xa_ = x[4 * (i)];                                                                                \
        uint32_t xb_ = x[4 * (i) + 1];                                                                            \
        ac = mcuqp_smlad(xa_, c02_, ac);                                                                          \
        ad = mcuqp_smlad(xa_, d02_, ad);                                                                          \
        bc = mcuqp_smlad(xb_, c02_, bc);                                                                          \
        bd = mcuqp_smlad(xb_, d02_, bd);                                                                          \
        xa_ = x[4 * (i) + 2];                                                                                     \
        xb_ = x[4 * (i) + 3];                                                                                     \
        ac = mcuqp_smlad(xa_, c13_, ac);                                                                          \
        ad = mcuqp_smlad(xa_, d13_, ad);                                                                          \
        bc = mcuqp_smlad(xb_, c13_, bc);                                                                          \
        bd = mcuqp_smlad(xb_, d13_, bd);                                                                          \
    } while (0)

/* One weight word of each row (u of c, v of d) against the input pairs at x. */
#define MCUQP_LB_WORD22(u, v)                                                                                     \
    do {                                                                                                         \
        if (bits == 4) {                                                                                         \
            MCUQP_LB_STEP22(((u) << 4) & 0xF0F0F0F0u, ((v) << 4) & 0xF0F0F0F0u, 0);                              \
            MCUQP_LB_STEP22((u) & 0xF0F0F0F0u, (v) & 0xF0F0F0F0u, 1);                                            \
        } else if (bits == 2) {                                                                                  \
            MCUQP_LB_STEP22(((u) << 6) & 0xC0C0C0C0u, ((v) << 6) & 0xC0C0C0C0u, 0);                              \
            MCUQP_LB_STEP22(((u) << 4) & 0xC0C0C0C0u, ((v) << 4) & 0xC0C0C0C0u, 1);                              \
            MCUQP_LB_STEP22(((u) << 2) & 0xC0C0C0C0u, ((v) << 2) & 0xC0C0C0C0u, 2);                              \
            MCUQP_LB_STEP22((u) & 0xC0C0C0C0u, (v) & 0xC0C0C0C0u, 3);                                            \
        } else {                                                                                                 \
            MCUQP_LB_STEP22(((u) << 7) & 0x80808080u, ((v) << 7) & 0x80808080u, 0);                              \
            MCUQP_LB_STEP22(((u) << 6) & 0x80808080u, ((v) << 6) & 0x80808080u, 1);                              \
            MCUQP_LB_STEP22(((u) << 5) & 0x80808080u, ((v) << 5) & 0x80808080u, 2);                              \
            MCUQP_LB_STEP22(((u) << 4) & 0x80808080u, ((v) << 4) & 0x80808080u, 3);                              \
            MCUQP_LB_STEP22(((u) << 3) & 0x80808080u, ((v) << 3) & 0x80808080u, 4);                              \
            MCUQP_LB_STEP22(((u) << 2) & 0x80808080u, ((v) << 2) & 0x80808080u, 5);                              \
            MCUQP_LB_STEP22(((u) << 1) & 0x80808080u, ((v) << 1) & 0x80808080u, 6);                              \
            MCUQP_LB_STEP22((u) & 0x80808080u, (v) & 0x80808080u, 7);                                            \
        }                                                                                                        \
        x += step;                                                                                               \
    } while (0)

/* acc = {a.c, b.c, a.d, b.d}: rows wc, wd against the windows a, b interleaved word by
 * word at x (one LDRD loads a pair of both); bits constant. */
MCUQP_INLINE void mcuqp_lb_dot22(const uint32_t *wc, const uint32_t *wd, int32_t n_words, const uint32_t *x,
                                 int32_t bits, int32_t acc[4])
{
    const int32_t step = 4 * (8 / bits);
    const ptrdiff_t d = wd - wc; /* the second row as an offset: one register fewer */
    const uint32_t *x_end = x + (size_t)n_words * (size_t)step;
    int32_t ac = 0;
    int32_t bc = 0;
    int32_t ad = 0;
    int32_t bd = 0;
    while (x != x_end) {
        const uint32_t u = wc[0];
        const uint32_t v = wc[d];
        ++wc;
        MCUQP_LB_WORD22(u, v);
    }
    acc[0] = ac;
    acc[1] = bc;
    acc[2] = ad;
    acc[3] = bd;
}

MCUQP_INLINE void mcuqp_lb_dot22_any(const uint32_t *wc, const uint32_t *wd, int32_t n_words, const uint32_t *x,
                                     int32_t bits, int32_t acc[4])
{
    if (bits == 4) {
        mcuqp_lb_dot22(wc, wd, n_words, x, 4, acc);
    } else if (bits == 2) {
        mcuqp_lb_dot22(wc, wd, n_words, x, 2, acc);
    } else {
        mcuqp_lb_dot22(wc, wd, n_words, x, 1, acc);
    }
}

/* The row dot for a run-time bits, dispatched once per row to constant-bits loops. */
MCUQP_INLINE void mcuqp_lb_dot_any(const uint32_t *w, int32_t n_words, const uint32_t *x, int32_t pixels,
                                   int32_t bits, int32_t acc[2])
{
    if (bits == 4) {
        if (pixels == 2) {
            mcuqp_lb_dot(w, n_words, x, 2, 4, acc);
        } else {
            mcuqp_lb_dot(w, n_words, x, 1, 4, acc);
        }
    } else if (bits == 2) {
        if (pixels == 2) {
            mcuqp_lb_dot(w, n_words, x, 2, 2, acc);
        } else {
            mcuqp_lb_dot(w, n_words, x, 1, 2, acc);
        }
    } else if (pixels == 2) {
        mcuqp_lb_dot(w, n_words, x, 2, 1, acc);
    } else {
        mcuqp_lb_dot(w, n_words, x, 1, 1, acc);
    }
}

/* sum of the n_values values of a swizzled window whose words are `stride` apart (for
 * binary rows). */
MCUQP_INLINE int32_t mcuqp_lb_window_sum(const uint32_t *x, int32_t n_values, int32_t stride)
{
    int32_t s = 0;
    int32_t i;
    for (i = 0; i < n_values / 2; ++i) {
        s = mcuqp_smlad(x[i * stride], 0x00010001u, s);
    }
    return s;
}

/* The true row sum from the scaled accumulator (see the header comment). */
MCUQP_INLINE uint32_t mcuqp_lb_unscale(int32_t acc, int32_t bits, int32_t window_sum)
{
    if (bits == 1) {
        return (uint32_t)(-(acc >> 6)) - (uint32_t)window_sum;
    }
    return (uint32_t)(acc >> (8 - bits));
}

#endif /* MCUQP_LOWBIT_DSP_H */
