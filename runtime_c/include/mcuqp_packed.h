/*
 * mcuqp internal helpers shared by the packed-weight kernels (sparse, low-bit, fully
 * binary; not part of the public API): the int16 window buffer ("im2col" of one output
 * pixel, input offset applied, zeros for taps in the padding), the sparse row dot product,
 * the low-bit field decoders, sign-bit packing and popcount, and the output stage.
 *
 * Window buffers hold K = kh * kw * in_c values in the OHWI filter order (ky, kx, ci).
 * Layouts (mcuqp_pk_layout): natural order with a step (value k at k * step: step 2
 * interleaves two pixels so that one word load gives both, the sparse conv's layout), or
 * "swizzled": value k at position (k & ~3) | {0, 2, 1, 3}[k & 3], so that each group of
 * four reads as the int16 pairs {x0, x2} {x1, x3} that one SXTAB16 / SXTAB16 ROR #8 of the
 * four int8 inputs produce (the low-bit kernels' layout), optionally with two pixels'
 * words interleaved (the DSP low-bit conv: one LDRD loads the same pair of both).
 *
 * Buffers come from the caller (the kernels' `buffer`, 4-byte aligned); they are written
 * as int16 and read as int16 or, through memcpy or the DSP helpers, as 32-bit words.
 */
#ifndef MCUQP_PACKED_H
#define MCUQP_PACKED_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

#define MCUQP_SPARSE_SEGMENT 256

/* Where one image lives and how a window walks it. */
typedef struct {
    const int8_t *input; /* one batch: (in_h, in_w, in_c) */
    int32_t in_h;
    int32_t in_w;
    int32_t in_c;
    int32_t k_h;
    int32_t k_w;
    int32_t dil_h;
    int32_t dil_w;
    int32_t offset; /* input_offset */
} mcuqp_pk_geom;

MCUQP_INLINE size_t mcuqp_pk_swz(int32_t k)
{
    return (size_t)((k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1));
}

MCUQP_INLINE int32_t mcuqp_pk_round_up(int32_t v, int32_t m) { return (v + m - 1) / m * m; }

/* Where value k of a window goes in its int16 buffer. */
typedef struct {
    int swizzle;   /* 0: natural order, value k at k * step; 1: swizzled */
    int32_t step;  /* natural order: int16 between values (2: two pixels interleaved) */
    int pair;      /* swizzled: 1 when two pixels' words interleave (pixel p at word 2 w + p) */
    int32_t pixel; /* 0 or 1 */
} mcuqp_pk_layout;

MCUQP_INLINE size_t mcuqp_pk_pos(int32_t k, const mcuqp_pk_layout *l)
{
    if (!l->swizzle) {
        return (size_t)k * (size_t)l->step;
    }
    const size_t s = mcuqp_pk_swz(k);
    return l->pair ? ((((s >> 1) << 1) + (size_t)l->pixel) << 1) | (s & 1u) : s;
}

/* x[0 .. n) + offset into buf as values k0 .. k0 + n (k0 a multiple of 4 when swizzled). */
MCUQP_INLINE void mcuqp_pk_widen(const int8_t *x, int32_t n, int32_t offset, int16_t *buf, int32_t k0,
                                 const mcuqp_pk_layout *l)
{
    int32_t i = 0;
    if (l->swizzle) {
        /* {x0, x2} {x1, x3} are exactly SXTAB16 and SXTAB16 ROR #8 of the four bytes */
        const uint32_t off2 = mcuqp_dup_s16(offset);
        const size_t words = l->pair ? 2u : 1u;
        int16_t *b = buf + 2u * ((size_t)k0 / 2u * words + (size_t)l->pixel * (words - 1u));
        for (; i + 4 <= n; i += 4) {
            const uint32_t v = mcuqp_read_s8x4(x + i);
            const uint32_t even = mcuqp_sxtab16(off2, v);
            const uint32_t odd = mcuqp_sxtab16_ror8(off2, v);
            memcpy(b, &even, 4);
            memcpy(b + 2u * words, &odd, 4);
            b += 4u * words;
        }
    } else {
        const uint32_t off2 = mcuqp_dup_s16(offset);
        const size_t st = (size_t)l->step;
        for (; i + 4 <= n; i += 4) {
            const uint32_t v = mcuqp_read_s8x4(x + i);
            const uint32_t even = mcuqp_sxtab16(off2, v); /* {x0, x2} */
            const uint32_t odd = mcuqp_sxtab16_ror8(off2, v); /* {x1, x3} */
            int16_t *b = buf + (size_t)(k0 + i) * st;
            b[0] = (int16_t)even;
            b[st] = (int16_t)odd;
            b[2u * st] = (int16_t)(even >> 16);
            b[3u * st] = (int16_t)(odd >> 16);
        }
    }
    for (; i < n; ++i) {
        buf[mcuqp_pk_pos(k0 + i, l)] = (int16_t)(x[i] + offset);
    }
}

/* The window of the output pixel whose first tap is input (y0, x0) into buf: K values,
 * input + offset inside the image, 0 in the padding. */
MCUQP_INLINE void mcuqp_pk_window(const mcuqp_pk_geom *g, int32_t y0, int32_t x0, int16_t *buf,
                                  const mcuqp_pk_layout *l)
{
    int32_t ky_lo;
    int32_t ky_hi;
    int32_t kx_lo;
    int32_t kx_hi;
    mcuqp_tap_range(y0, g->dil_h, g->k_h, g->in_h, &ky_lo, &ky_hi);
    mcuqp_tap_range(x0, g->dil_w, g->k_w, g->in_w, &kx_lo, &kx_hi);
    const int32_t c = g->in_c;
    const int fast = !l->swizzle || (c & 3) == 0;
    int32_t k = 0;
    int32_t ky;
    for (ky = 0; ky < g->k_h; ++ky) {
        const int row_in = ky >= ky_lo && ky < ky_hi;
        const int8_t *row = g->input + (size_t)(row_in ? y0 + ky * g->dil_h : 0) * (size_t)g->in_w * (size_t)c;
        int32_t kx;
        for (kx = 0; kx < g->k_w; ++kx, k += c) {
            int32_t i;
            if (row_in && kx >= kx_lo && kx < kx_hi) {
                const int8_t *px = row + (size_t)(x0 + kx * g->dil_w) * (size_t)c;
                if (fast) {
                    mcuqp_pk_widen(px, c, g->offset, buf, k, l);
                } else {
                    for (i = 0; i < c; ++i) {
                        buf[mcuqp_pk_pos(k + i, l)] = (int16_t)(px[i] + g->offset);
                    }
                }
            } else {
                for (i = 0; i < c; ++i) {
                    buf[mcuqp_pk_pos(k + i, l)] = 0;
                }
            }
        }
    }
}

/* PKHBT: {lo's low half, hi's low half} (one instruction with the DSP extension). */
MCUQP_INLINE uint32_t mcuqp_pk_pkhbt(uint32_t lo, uint32_t hi)
{
#if MCUQP_ACLE_DSP
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
#else
    return (lo & 0xFFFFu) | (hi << 16);
#endif
}

/* acc + sum over n stored nonzeros of value * x[column], modulo 2^32 (columns within one
 * segment of x); advances the index and value streams. */
MCUQP_INLINE uint32_t mcuqp_pk_sparse_run(uint32_t acc, const int16_t *x, int32_t n, const uint8_t **index,
                                          const int8_t **values)
{
    const uint8_t *ix = *index;
    const int8_t *v = *values;
    const uint8_t *end4 = ix + (n & ~3);
    int32_t a = (int32_t)acc;
    while (ix != end4) {
        /* four columns and four values by two word loads; {x0, x2} . {v0, v2} and
         * {x1, x3} . {v1, v3} by two SMLADs */
        const uint32_t cols = mcuqp_read_s8x4((const int8_t *)(const void *)ix);
        const uint32_t vals = mcuqp_read_s8x4(v);
        const uint16_t *xu = (const uint16_t *)(const void *)x;
        const uint32_t x0 = xu[cols & 0xFFu];
        const uint32_t x1 = xu[(cols >> 8) & 0xFFu];
        const uint32_t x2 = xu[(cols >> 16) & 0xFFu];
        const uint32_t x3 = xu[cols >> 24];
        a = mcuqp_smlad(mcuqp_pk_pkhbt(x0, x2), mcuqp_sxtb16(vals), a);
        a = mcuqp_smlad(mcuqp_pk_pkhbt(x1, x3), mcuqp_sxtb16_ror8(vals), a);
        ix += 4;
        v += 4;
    }
    acc = (uint32_t)a;
    switch (n & 3) { /* the last 1 to 3 without a loop */
    case 3:
        acc += (uint32_t)(x[ix[2]] * v[2]);
        /* fall through */
    case 2:
        acc += (uint32_t)(x[ix[1]] * v[1]);
        /* fall through */
    case 1:
        acc += (uint32_t)(x[ix[0]] * v[0]);
        break;
    default:
        break;
    }
    *index = ix + (n & 3);
    *values = v + (n & 3);
    return acc;
}

/* Two pixels at once: x holds (pixel a, pixel b) int16 pairs per column; acc[0] / acc[1]
 * gain value * x_a / x_b over n stored nonzeros. */
MCUQP_INLINE uint32_t mcuqp_pk_pair(const int16_t *x, uint32_t column)
{
    uint32_t p;
    memcpy(&p, x + 2u * column, 4); /* one word load; little-endian: pixel a in the low half */
    return p;
}

/* SMLATB: acc + top half of x times the low half of y (exact twin off Arm). */
MCUQP_INLINE int32_t mcuqp_pk_smlatb(uint32_t x, uint32_t y, int32_t acc)
{
#if MCUQP_ACLE_DSP
    return __smlatb((int32_t)x, (int32_t)y, acc);
#else
    return (int32_t)((uint32_t)acc + (uint32_t)(mcuqp_hi_s16(x) * mcuqp_lo_s16(y)));
#endif
}

/* value * pixel a into a, value * pixel b into b, for one stored nonzero. */
#define MCUQP_PK_MAC2(x, col, val)                                                                                \
    do {                                                                                                         \
        const uint32_t p_ = mcuqp_pk_pair((x), (col));                                                            \
        const uint32_t v_ = (uint32_t)(int32_t)(val);                                                             \
        a = mcuqp_smlabb(p_, v_, a);                                                                              \
        b = mcuqp_pk_smlatb(p_, v_, b);                                                                           \
    } while (0)

MCUQP_INLINE void mcuqp_pk_sparse_run2(uint32_t acc[2], const int16_t *x, int32_t n, const uint8_t **index,
                                       const int8_t **values)
{
    const uint8_t *ix = *index;
    const int8_t *v = *values;
    const uint8_t *end4 = ix + (n & ~3);
    int32_t a = (int32_t)acc[0];
    int32_t b = (int32_t)acc[1];
    while (ix != end4) {
        MCUQP_PK_MAC2(x, ix[0], v[0]);
        MCUQP_PK_MAC2(x, ix[1], v[1]);
        MCUQP_PK_MAC2(x, ix[2], v[2]);
        MCUQP_PK_MAC2(x, ix[3], v[3]);
        ix += 4;
        v += 4;
    }
    switch (n & 3) {
    case 3:
        MCUQP_PK_MAC2(x, ix[2], v[2]);
        /* fall through */
    case 2:
        MCUQP_PK_MAC2(x, ix[1], v[1]);
        /* fall through */
    case 1:
        MCUQP_PK_MAC2(x, ix[0], v[0]);
        break;
    default:
        break;
    }
    acc[0] = (uint32_t)a;
    acc[1] = (uint32_t)b;
    *index = ix + (n & 3);
    *values = v + (n & 3);
}

/* Low-bit code -> weight. */
MCUQP_INLINE int32_t mcuqp_pk_decode(uint32_t code, int32_t bits)
{
    if (bits == 1) {
        return 2 * (int32_t)code - 1;
    }
    const int32_t half = 1 << (bits - 1);
    return ((int32_t)code ^ half) - half;
}

/* sum over n_words words of one low-bit row of weight * x (x swizzled), modulo 2^32. */
MCUQP_INLINE uint32_t mcuqp_pk_lowbit_dot(const uint32_t *w, int32_t n_words, const int16_t *x, int32_t bits)
{
    const int32_t fields = 8 / bits;
    const uint32_t mask = (1u << bits) - 1u;
    static const uint8_t swz[4] = {0u, 2u, 1u, 3u};
    uint32_t acc = 0u;
    int32_t k;
    for (k = 0; k < n_words; ++k) {
        const uint32_t v = w[k];
        const int16_t *xk = x + (size_t)k * (size_t)(4 * fields);
        int32_t f;
        for (f = 0; f < fields; ++f) {
            int32_t j;
            for (j = 0; j < 4; ++j) {
                const uint32_t code = (v >> (8 * j + bits * f)) & mask;
                acc += (uint32_t)(mcuqp_pk_decode(code, bits) * xk[4 * f + swz[j]]);
            }
        }
    }
    return acc;
}

/* The sign bits of four int8 inputs at x (-1 / +1), as bits 0, 8, 16, 24 (1 for +1);
 * *ok is cleared when one of them is neither -1 nor +1. */
MCUQP_INLINE uint32_t mcuqp_pk_signs4(const int8_t *x, uint32_t *ok)
{
    const uint32_t v = mcuqp_read_s8x4(x);
    const uint32_t pos = 0x01010101u & ~(v >> 7);
    *ok &= (uint32_t)(v == ~(pos * 0xFEu)); /* +1 is 0x01, -1 is 0xFF */
    return pos;
}

/* 1 when every one of n int8 values is -1 or +1 (SIGN outputs). */
MCUQP_INLINE int mcuqp_pk_all_signs(const int8_t *x, size_t n)
{
    uint32_t ok = 1u;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        (void)mcuqp_pk_signs4(x + i, &ok);
    }
    for (; i < n; ++i) {
        ok &= (uint32_t)(x[i] == 1 || x[i] == -1);
    }
    return ok != 0u;
}

/* Value k of a sign-bit window or row: bit 8 (k & 3) + ((k & 31) >> 2) of word k >> 5. */
MCUQP_INLINE uint32_t mcuqp_pk_sign_bit(int32_t k)
{
    return 1u << (8 * (k & 3) + ((k & 31) >> 2));
}

/* Sign bits of n int8 inputs (-1 / +1) in the low-bit lane order into ceil(n / 32) words
 * (padding bits 0). Returns 0 when an input is neither -1 nor +1. */
MCUQP_INLINE int mcuqp_pk_sign_bits(const int8_t *x, int32_t n, uint32_t *bits)
{
    uint32_t ok = 1u;
    int32_t k;
    for (k = 0; k < (n + 31) / 32; ++k) {
        bits[k] = 0u;
    }
    for (k = 0; k + 4 <= n; k += 4) {
        bits[k >> 5] |= mcuqp_pk_signs4(x + k, &ok) << ((k & 31) >> 2);
    }
    for (; k < n; ++k) {
        ok &= (uint32_t)(x[k] == 1 || x[k] == -1);
        bits[k >> 5] |= x[k] > 0 ? mcuqp_pk_sign_bit(k) : 0u;
    }
    return ok != 0u;
}

/* A constant the compiler must keep in a register (an empty asm hides its value), so
 * that "(t >> n) & mask" becomes one AND with a shifted operand on Arm. */
MCUQP_INLINE uint32_t mcuqp_pk_reg(uint32_t v)
{
#if defined(__GNUC__)
    __asm__("" : "+r"(v));
#endif
    return v;
}

/* The nibble counts of one word (eight 4-bit fields, each <= 4); m1 = 0x55555555,
 * m2 = 0x33333333. */
MCUQP_INLINE uint32_t mcuqp_pk_nibbles(uint32_t t, uint32_t m1, uint32_t m2)
{
    t = t - (m1 & (t >> 1));
    return (t & m2) + (m2 & (t >> 2));
}

/* Four byte counts summed. */
MCUQP_INLINE uint32_t mcuqp_pk_fold_bytes(uint32_t bytes)
{
    const uint32_t halves = (bytes & 0x00FF00FFu) + ((bytes >> 8) & 0x00FF00FFu);
    return (halves + (halves >> 16)) & 0xFFFFu;
}

/* sum over k < n of popcount(a[k] ^ b[k]) (& m[k] when m is not NULL): nibble counts of
 * three words summed (<= 12) before widening to bytes, bytes summed over up to 30 words
 * (<= 240) before folding. `masked` is a constant at every call. */
MCUQP_INLINE uint32_t mcuqp_pk_xor_popcount(const uint32_t *a, const uint32_t *b, const uint32_t *m, int32_t n,
                                            int masked)
{
    const uint32_t m1 = mcuqp_pk_reg(0x55555555u);
    const uint32_t m2 = mcuqp_pk_reg(0x33333333u);
    const uint32_t m4 = mcuqp_pk_reg(0x0F0F0F0Fu);
    uint32_t total = 0u;
    while (n >= 3) {
        const int32_t chunk = n < 30 ? n / 3 : 10; /* triples before the bytes could overflow */
        uint32_t bytes = 0u;
        int32_t i;
        for (i = 0; i < chunk; ++i) {
            uint32_t t0 = a[0] ^ b[0];
            uint32_t t1 = a[1] ^ b[1];
            uint32_t t2 = a[2] ^ b[2];
            if (masked) {
                t0 &= m[0];
                t1 &= m[1];
                t2 &= m[2];
                m += 3;
            }
            a += 3;
            b += 3;
            const uint32_t nib = mcuqp_pk_nibbles(t0, m1, m2) + mcuqp_pk_nibbles(t1, m1, m2) +
                                 mcuqp_pk_nibbles(t2, m1, m2);
            bytes += (nib & m4) + (m4 & (nib >> 4));
        }
        total += mcuqp_pk_fold_bytes(bytes);
        n -= 3 * chunk;
    }
    uint32_t nib = 0u;
    for (; n > 0; --n) {
        uint32_t t = *a++ ^ *b++;
        if (masked) {
            t &= *m++;
        }
        nib += mcuqp_pk_nibbles(t, m1, m2);
    }
    return total + mcuqp_pk_fold_bytes((nib & m4) + (m4 & (nib >> 4)));
}

/* Requantize channel oc's accumulator, add the output offset and clamp (lo/hi are the
 * clamp minus the offset): the exact high-word form of mcuqp_intrinsics.h where it
 * applies, mcuqp_requantize() for an INT32_MIN multiplier. */
MCUQP_INLINE int8_t mcuqp_pk_output(uint32_t acc, const mcuqp_requant *q, int32_t oc, int32_t lo, int32_t hi,
                                    int32_t out_offset)
{
    const int32_t i = q->count == 1 ? 0 : oc;
    const int32_t m = q->multiplier[i];
    int32_t r;
    if (m != INT32_MIN) {
        const mcuqp_rq p = mcuqp_rq_prepare(m, q->shift[i]);
        r = mcuqp_rq_apply((int32_t)acc, &p);
    } else {
        r = mcuqp_requantize((int32_t)acc, m, q->shift[i]);
    }
    return (int8_t)(mcuqp_clamp_i32(r, lo, hi) + out_offset);
}

/* The output stage of a call: with the full int8 clamp and a channel's requantization in
 * the high-word form (the usual case) each output is one SMLAL, QADD and SSAT. */
typedef struct {
    const mcuqp_requant *q;
    int32_t lo;
    int32_t hi;
    int32_t out_offset;
    int quick; /* full clamp, and every channel in the high-word form */
} mcuqp_pk_out;

MCUQP_INLINE mcuqp_pk_out mcuqp_pk_out_init(const mcuqp_requant *q, int32_t act_min, int32_t act_max,
                                            int32_t out_offset)
{
    mcuqp_pk_out o;
    o.q = q;
    o.lo = act_min - out_offset;
    o.hi = act_max - out_offset;
    o.out_offset = out_offset;
    int quick = act_min == -128 && act_max == 127;
    int32_t i;
    for (i = 0; i < q->count; ++i) { /* mcuqp_rq_fast() of every channel, INT32_MIN excluded */
        const int32_t m = q->multiplier[i];
        quick &= (q->shift[i] <= -2 || m == 0) && m != INT32_MIN;
    }
    o.quick = quick;
    return o;
}

MCUQP_INLINE int8_t mcuqp_pk_store(const mcuqp_pk_out *o, uint32_t acc, int32_t oc)
{
    if (o->quick) {
        const int32_t i = o->q->count == 1 ? 0 : oc;
        const mcuqp_rq r = mcuqp_rq_prepare(o->q->multiplier[i], o->q->shift[i]);
        return (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast((int32_t)acc, &r), o->out_offset);
    }
    return mcuqp_pk_output(acc, o->q, oc, o->lo, o->hi, o->out_offset);
}

MCUQP_INLINE int mcuqp_pk_valid_bits(int32_t bits) { return bits == 1 || bits == 2 || bits == 4; }

#endif /* MCUQP_PACKED_H */
