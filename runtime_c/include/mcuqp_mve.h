/*
 * mcuqp Helium (M-profile Vector Extension) helpers shared by the kernels in
 * runtime_c/src/mve/ (internal; not part of the public API). Cortex-M55 / M85 only:
 * build with -mcpu=cortex-m55 (arm_mve.h, __ARM_FEATURE_MVE).
 *
 * Requantization, four int32 lanes at a time, bit for bit equal to mcuqp_requantize():
 *  - double rounding: VSHL by the left shift (wraps like mcuqp_shl_wrap), VQRDMULH (gemmlowp
 *    SaturatingRoundingDoublingHighMul: both are floor((2 x m + 2^31) / 2^32), saturating
 *    only for INT32_MIN * INT32_MIN), then RoundingDivideByPOT as "subtract 1 from negative
 *    values (saturating), then VRSHL by -r", which rounds the halves of negative values away
 *    from zero and leaves every other value's rounding unchanged;
 *  - single rounding, shifts <= -1 only: floor((x m + 2^(30 + r)) / 2^(31 + r)) is
 *    VRSHL(VQDMULH(x, m), -r), since VQDMULH is floor(x m / 2^31) and adding a multiple of
 *    2^31 commutes with that floor.
 * mcuqp_mve_vector_requant() says whether a requantization can take that form (no multiplier
 * INT32_MIN; for single rounding, every shift <= -1); kernels otherwise take a per-output
 * scalar path with mcuqp_requantize().
 */
#ifndef MCUQP_MVE_H
#define MCUQP_MVE_H

#include <arm_mve.h>
#include <stddef.h>
#include <stdint.h>

#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

/* Hot loops are compiled without the first instruction-scheduling pass: with it, GCC 12
 * hoists the loads of long unrolled MVE sequences far ahead of their uses, which needs more
 * than the eight Q registers and spills to the stack (measured: 2-3x the instructions). */
#define MCUQP_MVE_NOINLINE __attribute__((noinline, optimize("no-schedule-insns", "no-tree-reassoc")))

/* acc + x * w (int32 lanes, modulo 2^32). One asm block so that GCC 12 keeps each product next
 * to its add: left to itself it computes all the products of a long unrolled sum first and
 * spills them to the stack. */
MCUQP_INLINE int32x4_t mcuqp_mve_mla(int32x4_t acc, int32x4_t x, int32x4_t w)
{
    int32x4_t t;
    __asm__("vmul.i32 %q1, %q2, %q3\n\tvadd.i32 %q0, %q0, %q1" : "+w"(acc), "=&w"(t) : "w"(x), "w"(w));
    return acc;
}

/* {a0, a1, a2, a3} by lane moves. (Not VCREATE: GCC 12 emits it as VMOVs of two general
 * registers to two lanes, which QEMU 7.2 fills in the opposite lane order.) */
MCUQP_INLINE int32x4_t mcuqp_mve_from4(int32_t a0, int32_t a1, int32_t a2, int32_t a3)
{
    int32x4_t v = vdupq_n_s32(a0);
    v = vsetq_lane_s32(a1, v, 1);
    v = vsetq_lane_s32(a2, v, 2);
    return vsetq_lane_s32(a3, v, 3);
}

/* A requantization for four lanes: multiplier, left shift (>= 0), right shift (<= 0). */
typedef struct {
    int32x4_t m;
    int32x4_t l;
    int32x4_t r;
} mcuqp_mve_rq;

MCUQP_INLINE int mcuqp_mve_vector_requant(const mcuqp_requant *q)
{
    int32_t i;
    for (i = 0; i < q->count; ++i) {
        if (q->multiplier[i] == INT32_MIN) {
            return 0;
        }
#if MCUQP_SINGLE_ROUNDING
        if (q->shift[i] > -1) {
            return 0;
        }
#endif
    }
    return 1;
}

/* The requantization of channels ch .. ch + 3 (lanes past `n` are don't-care). */
MCUQP_INLINE mcuqp_mve_rq mcuqp_mve_rq_load(const mcuqp_requant *q, int32_t ch, int32_t n)
{
    mcuqp_mve_rq r;
    int32x4_t s;
    if (q->count == 1) {
        r.m = vdupq_n_s32(q->multiplier[0]);
        s = vdupq_n_s32(q->shift[0]);
    } else {
        const mve_pred16_t p = vctp32q((uint32_t)n);
        r.m = vldrwq_z_s32(q->multiplier + ch, p);
        s = vldrwq_z_s32(q->shift + ch, p);
    }
    r.l = vmaxq_s32(s, vdupq_n_s32(0));
    r.r = vminq_s32(s, vdupq_n_s32(0));
    return r;
}

/* The same for one channel in every lane. */
MCUQP_INLINE mcuqp_mve_rq mcuqp_mve_rq_dup(const mcuqp_requant *q, int32_t ch)
{
    const int32_t i = q->count == 1 ? 0 : ch;
    const int32_t s = q->shift[i];
    mcuqp_mve_rq r;
    r.m = vdupq_n_s32(q->multiplier[i]);
    r.l = vdupq_n_s32(s > 0 ? s : 0);
    r.r = vdupq_n_s32(s < 0 ? s : 0);
    return r;
}

/* mcuqp_requantize() on four lanes (only where mcuqp_mve_vector_requant() holds). */
MCUQP_INLINE int32x4_t mcuqp_mve_requantize(int32x4_t acc, const mcuqp_mve_rq *q)
{
#if MCUQP_SINGLE_ROUNDING
    return vrshlq_s32(vqdmulhq_s32(acc, q->m), q->r);
#else
    const int32x4_t x = vqrdmulhq_s32(vshlq_s32(acc, q->l), q->m);
    const int32x4_t fix = vshrq_n_s32(vandq_s32(x, q->r), 31);
    return vrshlq_s32(vqaddq_s32(x, fix), q->r);
#endif
}

/* mcuqp_requantize() of four lanes of one channel: multiplier m, left shift l >= 0, right
 * shift r <= 0 (the same conditions as mcuqp_mve_requantize). */
MCUQP_INLINE int32x4_t mcuqp_mve_requantize_1(int32x4_t acc, int32_t m, int32_t l, int32_t r)
{
#if MCUQP_SINGLE_ROUNDING
    (void)l;
    return vrshlq_n_s32(vqdmulhq_n_s32(acc, m), r);
#else
    const int32x4_t x = vqrdmulhq_n_s32(vshlq_r_s32(acc, l), m);
    const int32x4_t fix = vshrq_n_s32(vandq_s32(x, vdupq_n_s32(r)), 31);
    return vrshlq_n_s32(vqaddq_s32(x, fix), r);
#endif
}

/* The output stage: requantization (vector form when `vec`, else mcuqp_requantize()),
 * clamp to [act_min, act_max] (in the vector form to [lo, hi], the clamp minus the output
 * offset, so that the add cannot overflow), output offset. */
typedef struct {
    int32x4_t lo;
    int32x4_t hi;
    int32_t offset;
    int32_t act_min;
    int32_t act_max;
    int vec;
    const mcuqp_requant *quant;
} mcuqp_mve_out;

MCUQP_INLINE mcuqp_mve_out mcuqp_mve_out_init(const mcuqp_requant *quant, int32_t act_min, int32_t act_max,
                                              int32_t output_offset)
{
    mcuqp_mve_out o;
    o.lo = vdupq_n_s32(act_min - output_offset);
    o.hi = vdupq_n_s32(act_max - output_offset);
    o.offset = output_offset;
    o.act_min = act_min;
    o.act_max = act_max;
    o.vec = mcuqp_mve_vector_requant(quant);
    o.quant = quant;
    return o;
}

MCUQP_INLINE int32x4_t mcuqp_mve_output(int32x4_t acc, const mcuqp_mve_rq *q, const mcuqp_mve_out *o)
{
    const int32x4_t r = mcuqp_mve_requantize(acc, q);
    return vaddq_n_s32(vmaxq_s32(vminq_s32(r, o->hi), o->lo), o->offset);
}

/* mcuqp_mve_output for requantizations without a left shift (q->l is not read). */
MCUQP_INLINE int32x4_t mcuqp_mve_output_nl(int32x4_t acc, const mcuqp_mve_rq *q, const mcuqp_mve_out *o)
{
#if MCUQP_SINGLE_ROUNDING
    const int32x4_t r = vrshlq_s32(vqdmulhq_s32(acc, q->m), q->r);
#else
    const int32x4_t x = vqrdmulhq_s32(acc, q->m);
    const int32x4_t r = vrshlq_s32(vqaddq_s32(x, vshrq_n_s32(vandq_s32(x, q->r), 31)), q->r);
#endif
    return vaddq_n_s32(vmaxq_s32(vminq_s32(r, o->hi), o->lo), o->offset);
}

/* The scalar output stage of channel ch. */
MCUQP_INLINE int8_t mcuqp_mve_output_scalar(int32_t acc, const mcuqp_mve_out *o, int32_t ch)
{
    const mcuqp_requant *q = o->quant;
    const int32_t i = q->count == 1 ? 0 : ch;
    const int32_t r = mcuqp_requantize(acc, q->multiplier[i], q->shift[i]);
    return (int8_t)(mcuqp_clamp_i32(r, o->act_min - o->offset, o->act_max - o->offset) + o->offset);
}

/* Per-channel data of a block of up to MCUQP_MVE_BLOCK output channels (on the stack):
 * base = bias + input_offset * sum(filter taps of the channel), and the requantization
 * split for the vector form. Entries past the block's channels are 0. */
#define MCUQP_MVE_BLOCK 64

typedef struct {
    int32_t c0;
    int32_t n;
    int32_t lsh_any; /* some channel of the block has a left shift (else the VSHL is skipped) */
    int32_t base[MCUQP_MVE_BLOCK];
    int32_t mult[MCUQP_MVE_BLOCK];
    int32_t lsh[MCUQP_MVE_BLOCK];
    int32_t rsh[MCUQP_MVE_BLOCK];
} mcuqp_mve_block;

/* The requantization part of a block for channels [c0, c0 + n). */
MCUQP_INLINE void mcuqp_mve_block_quant(mcuqp_mve_block *b, const mcuqp_requant *q, int32_t c0, int32_t n)
{
    const int32_t end = (n + 3) & ~3; /* the entries that groups of four read */
    int32_t i;
    b->c0 = c0;
    b->n = n;
    b->lsh_any = 0;
    for (i = 0; i < end; ++i) {
        const int32_t j = q->count == 1 ? 0 : c0 + i;
        const int32_t s = i < n ? q->shift[j] : 0;
        b->mult[i] = i < n ? q->multiplier[j] : 0;
        b->lsh[i] = s > 0 ? s : 0;
        b->lsh_any |= s > 0;
        b->rsh[i] = s < 0 ? s : 0;
        if (i >= n) {
            b->base[i] = 0;
        }
    }
}

/* Stores the outputs of block channels i .. i + 3 (the first n of them) at out[i ..]. */
MCUQP_INLINE void mcuqp_mve_store4(int8_t *out, int32x4_t acc, const mcuqp_mve_block *b, int32_t i, int32_t n,
                                   const mcuqp_mve_out *o)
{
    if (o->vec) {
        mcuqp_mve_rq rq;
        rq.m = vld1q_s32(b->mult + i);
        rq.l = vld1q_s32(b->lsh + i);
        rq.r = vld1q_s32(b->rsh + i);
        const int32x4_t y = mcuqp_mve_output(acc, &rq, o);
        if (n >= 4) {
            vstrbq_s32(out + i, y);
        } else {
            vstrbq_p_s32(out + i, y, vctp32q((uint32_t)n));
        }
    } else {
        int32_t a[4];
        int32_t j;
        vst1q_s32(a, acc);
        for (j = 0; j < n && j < 4; ++j) {
            out[i + j] = mcuqp_mve_output_scalar(a[j], o, b->c0 + i + j);
        }
    }
}

/* acc_j += s . p_j over n blocks of 16 bytes (j < 4), advancing every pointer by 16 n: one
 * load of s and four loads and VMLADAVs per block, in a low-overhead loop (WLS / LE).
 * Written in assembly because GCC 12 keeps too many of this loop's pointers on the stack. */
#define MCUQP_MVE_MLA16X4(s, p0, p1, p2, p3, n, a0, a1, a2, a3)                                                   \
    __asm__ volatile("   wls lr, %[cnt], 2f\n"                                                                  \
                     "1: vldrb.u8 q0, [%[ps]], #16\n"                                                           \
                     "   vldrb.u8 q1, [%[q0]], #16\n"                                                           \
                     "   vmlava.s8 %[b0], q0, q1\n"                                                             \
                     "   vldrb.u8 q1, [%[q1]], #16\n"                                                           \
                     "   vmlava.s8 %[b1], q0, q1\n"                                                             \
                     "   vldrb.u8 q1, [%[q2]], #16\n"                                                           \
                     "   vmlava.s8 %[b2], q0, q1\n"                                                             \
                     "   vldrb.u8 q1, [%[q3]], #16\n"                                                           \
                     "   vmlava.s8 %[b3], q0, q1\n"                                                             \
                     "   le lr, 1b\n"                                                                           \
                     "2:\n"                                                                                     \
                     : [b0] "+Te"(a0), [b1] "+Te"(a1), [b2] "+Te"(a2), [b3] "+Te"(a3), [ps] "+r"(s),          \
                       [q0] "+r"(p0), [q1] "+r"(p1), [q2] "+r"(p2), [q3] "+r"(p3)                              \
                     : [cnt] "r"(n)                                                                             \
                     : "q0", "q1", "lr", "memory")

/* {x . w0, x . w1, x . w2, x . w3} over len bytes (modulo 2^32). */
MCUQP_INLINE int32x4_t mcuqp_mve_dot4(const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2,
                                      const int8_t *w3, int32_t len)
{
    int32_t a0 = 0;
    int32_t a1 = 0;
    int32_t a2 = 0;
    int32_t a3 = 0;
    const int32_t blocks = len >> 4;
    MCUQP_MVE_MLA16X4(x, w0, w1, w2, w3, blocks, a0, a1, a2, a3);
    if ((len & 15) != 0) {
        const mve_pred16_t p = vctp8q((uint32_t)(len & 15));
        /* the zeroing loads leave 0 in the lanes past len: no predicated VMLADAV needed */
        const int8x16_t v = vldrbq_z_s8(x, p);
        a0 = vmladavaq_s8(a0, v, vldrbq_z_s8(w0, p));
        a1 = vmladavaq_s8(a1, v, vldrbq_z_s8(w1, p));
        a2 = vmladavaq_s8(a2, v, vldrbq_z_s8(w2, p));
        a3 = vmladavaq_s8(a3, v, vldrbq_z_s8(w3, p));
    }
    return mcuqp_mve_from4(a0, a1, a2, a3);
}

/* sum over k < len of w[k] (modulo 2^32). */
MCUQP_INLINE int32_t mcuqp_mve_sum(const int8_t *w, int32_t len)
{
    int32_t s = 0;
    int32_t n;
    for (n = len >> 4; n > 0; --n) {
        s = vaddvaq_s8(s, vldrbq_s8(w));
        w += 16;
    }
    if ((len & 15) != 0) {
        const mve_pred16_t p = vctp8q((uint32_t)(len & 15));
        s = vaddvaq_p_s8(s, vldrbq_z_s8(w, p), p);
    }
    return s;
}

/* dst[0 .. n) = src[0 .. n). */
MCUQP_INLINE void mcuqp_mve_copy(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 16; n -= 16) {
        vstrbq_s8(dst, vldrbq_s8(src));
        dst += 16;
        src += 16;
    }
    if (n > 0) {
        const mve_pred16_t p = vctp8q((uint32_t)n);
        vstrbq_p_s8(dst, vldrbq_z_s8(src, p), p);
    }
}

/* dst[0 .. n) = v. */
MCUQP_INLINE void mcuqp_mve_fill(int8_t *dst, int8_t v, int32_t n)
{
    const int8x16_t x = vdupq_n_s8(v);
    for (; n >= 16; n -= 16) {
        vstrbq_s8(dst, x);
        dst += 16;
    }
    if (n > 0) {
        vstrbq_p_s8(dst, x, vctp8q((uint32_t)n));
    }
}

/* The block's output channels of one pixel whose window, k bytes in filter order, is at x;
 * filter points at the block's first row; outputs to out[0 .. b->n). */
MCUQP_INLINE void mcuqp_mve_pixel(const int8_t *x, const int8_t *filter, int32_t k, const mcuqp_mve_block *b,
                                  const mcuqp_mve_out *o, int8_t *out)
{
    const int8_t *w = filter;
    const int32_t n = b->n;
    int32_t i;
    for (i = 0; i + 4 <= n; i += 4) {
        const int32x4_t acc = mcuqp_mve_dot4(x, w, w + k, w + 2 * k, w + 3 * k, k);
        mcuqp_mve_store4(out, vaddq_s32(acc, vld1q_s32(b->base + i)), b, i, 4, o);
        w += 4 * k;
    }
    if (i < n) {
        const int32_t r = n - i;
        const int8_t *w1 = r > 1 ? w + k : w;
        const int8_t *w2 = r > 2 ? w + 2 * k : w;
        const int32x4_t acc = mcuqp_mve_dot4(x, w, w1, w2, w, k);
        mcuqp_mve_store4(out, vaddq_s32(acc, vld1q_s32(b->base + i)), b, i, r, o);
    }
}

/* Channel i of four pixels (acc lane j: pixel j) to out + offsets[j] + i. */
MCUQP_INLINE void mcuqp_mve_store_pixels4(int8_t *out, int32x4_t acc, const mcuqp_mve_block *b, int32_t i,
                                          const mcuqp_mve_out *o, uint32x4_t offsets)
{
    if (o->vec) {
        const int32x4_t r = mcuqp_mve_requantize_1(acc, b->mult[i], b->lsh[i], b->rsh[i]);
        const int32x4_t y = vaddq_n_s32(vmaxq_s32(vminq_s32(r, o->hi), o->lo), o->offset);
        vstrbq_scatter_offset_s32(out + i, offsets, y);
    } else {
        int32_t a[4];
        uint32_t off[4];
        int32_t j;
        vst1q_s32(a, acc);
        vst1q_u32(off, offsets);
        for (j = 0; j < 4; ++j) {
            out[off[j] + (uint32_t)i] = mcuqp_mve_output_scalar(a[j], o, b->c0 + i);
        }
    }
}

/* The block's channels of four pixels whose inputs (k bytes each, in filter order) are at
 * x[0 .. 3]: pixel j's channel c0 + i goes to out + offsets[j] + i (a scatter store; repeat a
 * pixel and its offset to compute fewer than four). Per channel: the four dot products share
 * each 16-byte filter load (four VMLADAV), then one requantization and one VSTRB scatter. */
MCUQP_INLINE void mcuqp_mve_pixels4(const int8_t *const x[4], const int8_t *filter, int32_t k,
                                    const mcuqp_mve_block *b, const mcuqp_mve_out *o, int8_t *out,
                                    uint32x4_t offsets)
{
    const int8_t *w = filter;
    const int32_t full = k >> 4;
    const int32_t rest = k & 15;
    const mve_pred16_t pr = vctp8q((uint32_t)rest);
    int32_t i;
    if (o->vec && rest == 0) {
        /* the common case with the output stage's invariants hoisted */
        const int8_t *const x0 = x[0];
        const int8_t *const x1 = x[1];
        const int8_t *const x2 = x[2];
        const int8_t *const x3 = x[3];
        const int32_t *base = b->base;
        const int32_t *mult = b->mult;
        const int32_t *lsh = b->lsh;
        const int32_t *rsh = b->rsh;
        const int32_t n = b->n;
        const int32x4_t hi = o->hi;
        const int32x4_t lo = o->lo;
        const int32_t off = o->offset;
        for (i = 0; i < n; ++i, ++out) {
            const int8_t *p0 = x0;
            const int8_t *p1 = x1;
            const int8_t *p2 = x2;
            const int8_t *p3 = x3;
            int32_t a0 = base[i];
            int32_t a1 = a0;
            int32_t a2 = a0;
            int32_t a3 = a0;
            MCUQP_MVE_MLA16X4(w, p0, p1, p2, p3, full, a0, a1, a2, a3);
            const int32x4_t r = mcuqp_mve_requantize_1(mcuqp_mve_from4(a0, a1, a2, a3), mult[i], lsh[i], rsh[i]);
            vstrbq_scatter_offset_s32(out, offsets, vaddq_n_s32(vmaxq_s32(vminq_s32(r, hi), lo), off));
        }
        return;
    }
    for (i = 0; i < b->n; ++i) {
        const int8_t *p0 = x[0];
        const int8_t *p1 = x[1];
        const int8_t *p2 = x[2];
        const int8_t *p3 = x[3];
        int32_t a0 = b->base[i];
        int32_t a1 = a0;
        int32_t a2 = a0;
        int32_t a3 = a0;
        MCUQP_MVE_MLA16X4(w, p0, p1, p2, p3, full, a0, a1, a2, a3);
        if (rest != 0) {
            const int8x16_t wv = vldrbq_z_s8(w, pr); /* 0 past the row: plain VMLADAVs */
            a0 = vmladavaq_s8(a0, vldrbq_z_s8(p0, pr), wv);
            a1 = vmladavaq_s8(a1, vldrbq_z_s8(p1, pr), wv);
            a2 = vmladavaq_s8(a2, vldrbq_z_s8(p2, pr), wv);
            a3 = vmladavaq_s8(a3, vldrbq_z_s8(p3, pr), wv);
            w += rest;
        }
        const int32x4_t acc = mcuqp_mve_from4(a0, a1, a2, a3);
        mcuqp_mve_store_pixels4(out, acc, b, i, o, offsets);
    }
}

/* mcuqp_mve_pixels4 for k <= 16: the four inputs stay in registers (zero past k) over all
 * the block's channels, so a channel costs one weight load and four VMLADAVs; the output
 * stage is hoisted out of the channel loop. */
MCUQP_INLINE void mcuqp_mve_pixels4_short(const int8_t *const x[4], const int8_t *filter, int32_t k,
                                          const mcuqp_mve_block *b, const mcuqp_mve_out *o, int8_t *out,
                                          uint32x4_t offsets)
{
    const mve_pred16_t pk = vctp8q((uint32_t)k);
    const int8x16_t x0 = vldrbq_z_s8(x[0], pk);
    const int8x16_t x1 = vldrbq_z_s8(x[1], pk);
    const int8x16_t x2 = vldrbq_z_s8(x[2], pk);
    const int8x16_t x3 = vldrbq_z_s8(x[3], pk);
    const int8_t *w = filter;
    const int32_t n = b->n;
    int32_t i;
    if (!o->vec) {
        for (i = 0; i < n; ++i, w += k) {
            const int8x16_t wv = vldrbq_z_s8(w, pk);
            const int32_t base = b->base[i];
            const int32x4_t acc = mcuqp_mve_from4(vmladavaq_s8(base, x0, wv), vmladavaq_s8(base, x1, wv),
                                                  vmladavaq_s8(base, x2, wv), vmladavaq_s8(base, x3, wv));
            mcuqp_mve_store_pixels4(out, acc, b, i, o, offsets);
        }
        return;
    }
    const int32_t *base = b->base;
    const int32_t *mult = b->mult;
    const int32_t *lsh = b->lsh;
    const int32_t *rsh = b->rsh;
    const int32_t offset = o->offset;
    for (i = 0; i < n; ++i, w += k, ++out) {
        const int8x16_t wv = vldrbq_z_s8(w, pk);
        const int32_t s = base[i];
        const int32x4_t acc = mcuqp_mve_from4(vmladavaq_s8(s, x0, wv), vmladavaq_s8(s, x1, wv),
                                              vmladavaq_s8(s, x2, wv), vmladavaq_s8(s, x3, wv));
        const int32x4_t r = mcuqp_mve_requantize_1(acc, mult[i], lsh[i], rsh[i]);
        vstrbq_scatter_offset_s32(out, offsets, vaddq_n_s32(vmaxq_s32(vminq_s32(r, o->hi), o->lo), offset));
    }
}

/* Four pixels' inputs interleaved in 16-byte chunks: chunk c of pixel j at il + (4 c + j) 16,
 * k bytes per pixel, zero from k up to the next multiple of 16. */
MCUQP_INLINE void mcuqp_mve_interleave(int8_t *il, int32_t j, const int8_t *src, int32_t k)
{
    int8_t *dst = il + 16 * j;
    for (; k >= 16; k -= 16, dst += 64, src += 16) {
        vstrbq_s8(dst, vldrbq_s8(src));
    }
    if (k > 0) {
        vstrbq_s8(dst, vldrbq_z_s8(src, vctp8q((uint32_t)k)));
    }
}

/* a_j += x_j . w over n chunks of four interleaved pixels (j < 4): per chunk one weight load,
 * four input loads and four VMLADAVs, in a low-overhead loop; w advances by 16 n and x by
 * 64 n. (Two weight rows per pass would need eight accumulators, and VMLADAV accumulates only
 * into even registers, of which lr is the eighth.) */
#define MCUQP_MVE_MLA1X4(x, w, n, a0, a1, a2, a3)                                                               \
    __asm__ volatile("   wls lr, %[cnt], 2f\n"                                                                  \
                     "1: vldrb.u8 q0, [%[pw]], #16\n"                                                           \
                     "   vldrb.u8 q1, [%[px], #16]\n"                                                           \
                     "   vmlava.s8 %[b1], q1, q0\n"                                                             \
                     "   vldrb.u8 q1, [%[px], #32]\n"                                                           \
                     "   vmlava.s8 %[b2], q1, q0\n"                                                             \
                     "   vldrb.u8 q1, [%[px], #48]\n"                                                           \
                     "   vmlava.s8 %[b3], q1, q0\n"                                                             \
                     "   vldrb.u8 q1, [%[px]], #64\n"                                                           \
                     "   vmlava.s8 %[b0], q1, q0\n"                                                             \
                     "   le lr, 1b\n"                                                                           \
                     "2:\n"                                                                                     \
                     : [b0] "+Te"(a0), [b1] "+Te"(a1), [b2] "+Te"(a2), [b3] "+Te"(a3), [px] "+r"(x),          \
                       [pw] "+r"(w)                                                                             \
                     : [cnt] "r"(n)                                                                             \
                     : "q0", "q1", "lr", "memory")

/* The block's channels of four pixels whose inputs (k bytes each, in filter order) are
 * interleaved at il (mcuqp_mve_interleave): pixel j's channel c0 + i goes to out +
 * offsets[j] + i (repeat a pixel and its offset to compute fewer than four). One input
 * pointer instead of four leaves the output stage its registers. */
MCUQP_INLINE void mcuqp_mve_pixels4_il(const int8_t *il, const int8_t *filter, int32_t k, const mcuqp_mve_block *b,
                                       const mcuqp_mve_out *o, int8_t *out, uint32x4_t offsets)
{
    const int32_t full = k >> 4;
    const int32_t rest = k & 15;
    const mve_pred16_t pr = vctp8q((uint32_t)rest);
    const int32_t n = b->n;
    const int8_t *w = filter;
    int32_t i;
    if (o->vec) {
        /* the output stage's invariants hoisted */
        const int32x4_t hi = o->hi;
        const int32x4_t lo = o->lo;
        const int32_t off = o->offset;
        const int32_t *base = b->base;
        const int32_t *mult = b->mult;
        const int32_t *lsh = b->lsh;
        const int32_t *rsh = b->rsh;
        for (i = 0; i < n; ++i, ++out) {
            const int8_t *x = il;
            int32_t a0 = base[i];
            int32_t a1 = a0;
            int32_t a2 = a0;
            int32_t a3 = a0;
            MCUQP_MVE_MLA1X4(x, w, full, a0, a1, a2, a3);
            if (rest != 0) {
                const int8x16_t v = vldrbq_z_s8(w, pr);
                a0 = vmladavaq_s8(a0, vldrbq_s8(x), v);
                a1 = vmladavaq_s8(a1, vldrbq_s8(x + 16), v);
                a2 = vmladavaq_s8(a2, vldrbq_s8(x + 32), v);
                a3 = vmladavaq_s8(a3, vldrbq_s8(x + 48), v);
                w += rest;
            }
            const int32x4_t r = mcuqp_mve_requantize_1(mcuqp_mve_from4(a0, a1, a2, a3), mult[i], lsh[i], rsh[i]);
            vstrbq_scatter_offset_s32(out, offsets, vaddq_n_s32(vmaxq_s32(vminq_s32(r, hi), lo), off));
        }
        return;
    }
    for (i = 0; i < n; ++i) {
        const int8_t *x = il;
        int32_t a0 = b->base[i];
        int32_t a1 = a0;
        int32_t a2 = a0;
        int32_t a3 = a0;
        MCUQP_MVE_MLA1X4(x, w, full, a0, a1, a2, a3);
        if (rest != 0) {
            /* the inputs are 0 past k, so the zeroing weight load needs no predicated VMLADAVs */
            const int8x16_t v = vldrbq_z_s8(w, pr);
            a0 = vmladavaq_s8(a0, vldrbq_s8(x), v);
            a1 = vmladavaq_s8(a1, vldrbq_s8(x + 16), v);
            a2 = vmladavaq_s8(a2, vldrbq_s8(x + 32), v);
            a3 = vmladavaq_s8(a3, vldrbq_s8(x + 48), v);
            w += rest;
        }
        mcuqp_mve_store_pixels4(out, mcuqp_mve_from4(a0, a1, a2, a3), b, i, o, offsets);
    }
}

/* The scatter offsets of `count` (1 .. 4) pixels `stride` bytes apart (the last repeated). */
MCUQP_INLINE uint32x4_t mcuqp_mve_offsets4(int32_t count, int32_t stride)
{
    uint32_t t[4];
    int32_t j;
    for (j = 0; j < 4; ++j) {
        t[j] = (uint32_t)((j < count ? j : count - 1) * stride);
    }
    return vld1q_u32(t);
}

/* base[i] = bias[c0 + i] + input_offset * sum(filter row c0 + i) for the block's channels;
 * rows of `row` bytes. */
MCUQP_INLINE void mcuqp_mve_block_row_sums(mcuqp_mve_block *b, const int8_t *filter, size_t row,
                                           const int32_t *bias, int32_t input_offset)
{
    int32_t i;
    for (i = 0; i < b->n; ++i) {
        const uint32_t s = (uint32_t)mcuqp_mve_sum(filter + (size_t)(b->c0 + i) * row, (int32_t)row);
        const uint32_t bb = bias != NULL ? (uint32_t)bias[b->c0 + i] : 0u;
        b->base[i] = (int32_t)(bb + (uint32_t)input_offset * s);
    }
}

#endif /* MCUQP_MVE_H */
