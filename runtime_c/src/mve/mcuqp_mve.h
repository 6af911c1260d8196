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

#define MCUQP_MVE_NOINLINE __attribute__((noinline))

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

/* The output stage: clamp to [lo, hi] (the clamp minus the output offset, so that the add
 * cannot overflow), add the output offset. */
typedef struct {
    int32x4_t lo;
    int32x4_t hi;
    int32_t offset;
} mcuqp_mve_out;

MCUQP_INLINE mcuqp_mve_out mcuqp_mve_out_init(int32_t act_min, int32_t act_max, int32_t output_offset)
{
    mcuqp_mve_out o;
    o.lo = vdupq_n_s32(act_min - output_offset);
    o.hi = vdupq_n_s32(act_max - output_offset);
    o.offset = output_offset;
    return o;
}

MCUQP_INLINE int32x4_t mcuqp_mve_output(int32x4_t acc, const mcuqp_mve_rq *q, const mcuqp_mve_out *o)
{
    const int32x4_t r = mcuqp_mve_requantize(acc, q);
    return vaddq_n_s32(vmaxq_s32(vminq_s32(r, o->hi), o->lo), o->offset);
}

/* The scalar output stage, for requantizations the vector form does not cover. */
MCUQP_INLINE int8_t mcuqp_mve_output_scalar(int32_t acc, const mcuqp_requant *q, int32_t ch, int32_t act_min,
                                           int32_t act_max, int32_t output_offset)
{
    const int32_t i = q->count == 1 ? 0 : ch;
    const int32_t r = mcuqp_requantize(acc, q->multiplier[i], q->shift[i]);
    return (int8_t)(mcuqp_clamp_i32(r, act_min - output_offset, act_max - output_offset) + output_offset);
}

/* {x . w0, x . w1, x . w2, x . w3} over len bytes (modulo 2^32). */
MCUQP_INLINE int32x4_t mcuqp_mve_dot4(const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2,
                                      const int8_t *w3, int32_t len)
{
    int32_t a0 = 0;
    int32_t a1 = 0;
    int32_t a2 = 0;
    int32_t a3 = 0;
    int32_t n;
    for (n = len >> 4; n > 0; --n) {
        const int8x16_t v = vldrbq_s8(x);
        a0 = vmladavaq_s8(a0, v, vldrbq_s8(w0));
        a1 = vmladavaq_s8(a1, v, vldrbq_s8(w1));
        a2 = vmladavaq_s8(a2, v, vldrbq_s8(w2));
        a3 = vmladavaq_s8(a3, v, vldrbq_s8(w3));
        x += 16;
        w0 += 16;
        w1 += 16;
        w2 += 16;
        w3 += 16;
    }
    if ((len & 15) != 0) {
        const mve_pred16_t p = vctp8q((uint32_t)(len & 15));
        const int8x16_t v = vldrbq_z_s8(x, p);
        a0 = vmladavaq_p_s8(a0, v, vldrbq_z_s8(w0, p), p);
        a1 = vmladavaq_p_s8(a1, v, vldrbq_z_s8(w1, p), p);
        a2 = vmladavaq_p_s8(a2, v, vldrbq_z_s8(w2, p), p);
        a3 = vmladavaq_p_s8(a3, v, vldrbq_z_s8(w3, p), p);
    }
    int32x4_t acc = vdupq_n_s32(a0);
    acc = vsetq_lane_s32(a1, acc, 1);
    acc = vsetq_lane_s32(a2, acc, 2);
    return vsetq_lane_s32(a3, acc, 3);
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

/* sums[i] = bias[c0 + i] + input_offset * sum(filter row c0 + i), for i < n (modulo 2^32). */
MCUQP_INLINE void mcuqp_mve_row_sums(int32_t *sums, const int8_t *filter, size_t row, const int32_t *bias,
                                     int32_t input_offset, int32_t c0, int32_t n)
{
    int32_t i;
    for (i = 0; i < n; ++i) {
        const uint32_t s = (uint32_t)mcuqp_mve_sum(filter + (size_t)(c0 + i) * row, (int32_t)row);
        const uint32_t b = bias != NULL ? (uint32_t)bias[c0 + i] : 0u;
        sums[i] = (int32_t)(b + (uint32_t)input_offset * s);
    }
}

/* Output channels [c0, c1) of one pixel whose window, k bytes in filter order, is at x:
 * out[c] for c in [c0, c1). sums[c - c0] = bias + input_offset * sum(filter row c);
 * vec: mcuqp_mve_vector_requant(q). */
MCUQP_INLINE void mcuqp_mve_pixel(const int8_t *x, const int8_t *filter, int32_t k, const int32_t *sums, int32_t c0,
                                  int32_t c1, const mcuqp_requant *q, int vec, const mcuqp_mve_out *o,
                                  int32_t act_min, int32_t act_max, int8_t *out)
{
    int32_t c;
    for (c = c0; c < c1; c += 4) {
        const int32_t n = mcuqp_min_i32(4, c1 - c);
        const int8_t *w0 = filter + (size_t)c * (size_t)k;
        const int8_t *w1 = n > 1 ? w0 + k : w0;
        const int8_t *w2 = n > 2 ? w1 + k : w0;
        const int8_t *w3 = n > 3 ? w2 + k : w0;
        const mve_pred16_t p = vctp32q((uint32_t)n);
        const int32x4_t acc = vaddq_s32(mcuqp_mve_dot4(x, w0, w1, w2, w3, k), vldrwq_z_s32(sums + (c - c0), p));
        if (vec) {
            const mcuqp_mve_rq rq = mcuqp_mve_rq_load(q, c, n);
            vstrbq_p_s32(out + c, mcuqp_mve_output(acc, &rq, o), p);
        } else {
            int32_t a[4];
            int32_t j;
            vst1q_s32(a, acc);
            for (j = 0; j < n; ++j) {
                out[c + j] = mcuqp_mve_output_scalar(a[j], q, c + j, act_min, act_max, o->offset);
            }
        }
    }
}

#endif /* MCUQP_MVE_H */
