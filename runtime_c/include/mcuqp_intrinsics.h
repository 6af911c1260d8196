/*
 * mcuqp internal header: the Cortex-M DSP-extension instructions used by the optimised
 * kernels in runtime_c/src/dsp/, with exact portable C twins.
 *
 * With __ARM_FEATURE_DSP (Cortex-M4, M7, M33 with DSP, M55, ...) every helper is one
 * instruction, through the ACLE intrinsics of <arm_acle.h>; four are one-line inline
 * assembly because GCC 12 has no intrinsic or does not emit the instruction: SXTB16 /
 * SXTAB16 with ROR #8 (no __ror, and the rotate is not folded), SMLAL (sometimes built
 * as a 64 x 64 multiply) and LDRD (word loads are rarely paired).
 * Elsewhere (the host, Cortex-M0/M3) the helpers are C functions with the same results
 * bit for bit, so the same optimised algorithms build and are tested on the host.
 *
 * Packed types: a uint32_t holds four int8 lanes (byte 0 = lowest address, as a
 * little-endian word load gives them) or two int16 lanes (lane 0 = bits 0..15).
 * Accumulators are int32 and every add wraps modulo 2^32, as SMLAD's result does (its Q
 * flag is never read).
 *
 * Also here: exact faster forms of mcuqp_requantize() for multipliers other than
 * INT32_MIN (mcuqp_requantize_nomin() and the per-channel prepared high-word form
 * mcuqp_rq_*), and the unaligned word load / store.
 */
#ifndef MCUQP_INTRINSICS_H
#define MCUQP_INTRINSICS_H

#include <stdint.h>
#include <string.h>

#include "mcuqp_fixedpoint.h"

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && defined(__ARM_FEATURE_SAT)
#define MCUQP_ACLE_DSP 1
#include <arm_acle.h>
#else
#define MCUQP_ACLE_DSP 0
#endif

/* A function kept out of line, so that its loop gets a register allocation of its own. */
#if defined(__GNUC__)
#define MCUQP_NOINLINE __attribute__((noinline))
#else
#define MCUQP_NOINLINE
#endif

/* ---- memory --------------------------------------------------------------------- */

/* Four bytes from any address, lane i = p[i] (one LDR on Cortex-M3 and up). */
MCUQP_INLINE uint32_t mcuqp_read_s8x4(const int8_t *p)
{
#if MCUQP_ACLE_DSP
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#else
    const uint8_t *u = (const uint8_t *)p;
    return (uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24);
#endif
}

/* n (0..3) bytes from p, zero-extended into a word: lane i = p[i] for i < n, 0 past n.
 * Plain static inline (not forced) like the copies it replaces, so code generation stays. */
static inline uint32_t mcuqp_read_partial_s8(const int8_t *p, int32_t n)
{
    uint32_t v = 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        v |= ((uint32_t)(uint8_t)p[i]) << (8 * i);
    }
    return v;
}

/* Store four bytes at any address, p[i] = lane i. */
MCUQP_INLINE void mcuqp_write_s8x4(int8_t *p, uint32_t v)
{
#if MCUQP_ACLE_DSP
    memcpy(p, &v, 4);
#else
    uint8_t *u = (uint8_t *)p;
    u[0] = (uint8_t)v;
    u[1] = (uint8_t)(v >> 8);
    u[2] = (uint8_t)(v >> 16);
    u[3] = (uint8_t)(v >> 24);
#endif
}

/* LDRD: lo, hi = the two words at (const uint8_t *)base + offset, for a word-aligned
 * address and a constant offset, a multiple of 4 in [0, 1020]. (Inline assembly on the
 * target: GCC 12 rarely pairs word loads by itself; the "m" operand tells it which
 * memory is read.) */
typedef struct {
    uint32_t w[2];
} mcuqp_u32x2;
#if MCUQP_ACLE_DSP
#define MCUQP_LDRD(base, offset, lo, hi)                                                                         \
    __asm__("ldrd %0, %1, [%2, %3]"                                                                              \
            : "=r"(lo), "=r"(hi)                                                                                 \
            : "r"(base), "n"(offset), "m"(*(const uint8_t(*)[(offset) + 8])(const void *)(base)))
#else
#define MCUQP_LDRD(base, offset, lo, hi)                                                                         \
    do {                                                                                                         \
        const uint32_t *p_ = (const uint32_t *)(const void *)((const uint8_t *)(base) + (offset));               \
        (lo) = p_[0];                                                                                            \
        (hi) = p_[1];                                                                                            \
    } while (0)
#endif

/* ---- lane helpers for the portable twins -------------------------------------------- */

MCUQP_INLINE int32_t mcuqp_lane_s8(uint32_t x, int lane) { return (int32_t)(int8_t)(uint8_t)(x >> (8 * lane)); }
MCUQP_INLINE int32_t mcuqp_lo_s16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)x; }
MCUQP_INLINE int32_t mcuqp_hi_s16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }
MCUQP_INLINE uint32_t mcuqp_pack_s16(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* ---- sign extension ---------------------------------------------------------------- */

/* SXTB16: {lane 0, lane 2} sign-extended to two int16. */
MCUQP_INLINE uint32_t mcuqp_sxtb16(uint32_t x)
{
#if MCUQP_ACLE_DSP
    return (uint32_t)__sxtb16((int32_t)x);
#else
    return mcuqp_pack_s16(mcuqp_lane_s8(x, 0), mcuqp_lane_s8(x, 2));
#endif
}

/* SXTB16 x, ROR #8: {lane 1, lane 3} sign-extended to two int16. */
MCUQP_INLINE uint32_t mcuqp_sxtb16_ror8(uint32_t x)
{
#if MCUQP_ACLE_DSP
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return mcuqp_pack_s16(mcuqp_lane_s8(x, 1), mcuqp_lane_s8(x, 3));
#endif
}

/* SXTAB16: a + {lane 0, lane 2}, two int16 adds modulo 2^16. */
MCUQP_INLINE uint32_t mcuqp_sxtab16(uint32_t a, uint32_t x)
{
#if MCUQP_ACLE_DSP
    return (uint32_t)__sxtab16((int32_t)a, (int32_t)x);
#else
    return mcuqp_pack_s16(mcuqp_lo_s16(a) + mcuqp_lane_s8(x, 0), mcuqp_hi_s16(a) + mcuqp_lane_s8(x, 2));
#endif
}

/* SXTAB16 a, x, ROR #8: a + {lane 1, lane 3}, two int16 adds modulo 2^16. */
MCUQP_INLINE uint32_t mcuqp_sxtab16_ror8(uint32_t a, uint32_t x)
{
#if MCUQP_ACLE_DSP
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
#else
    return mcuqp_pack_s16(mcuqp_lo_s16(a) + mcuqp_lane_s8(x, 1), mcuqp_hi_s16(a) + mcuqp_lane_s8(x, 3));
#endif
}

/* {v, v} as two int16 lanes (v in [-32768, 32767]): the operand that makes SXTAB16 add
 * an input offset to both lanes for free. */
MCUQP_INLINE uint32_t mcuqp_dup_s16(int32_t v) { return mcuqp_pack_s16(v, v); }

/* ---- multiply-accumulate ------------------------------------------------------------- */

/* SMLAD: acc + x.lo * y.lo + x.hi * y.hi (int16 lanes), modulo 2^32. */
MCUQP_INLINE int32_t mcuqp_smlad(uint32_t x, uint32_t y, int32_t acc)
{
#if MCUQP_ACLE_DSP
    return __smlad((int32_t)x, (int32_t)y, acc);
#else
    return (int32_t)((uint32_t)acc + (uint32_t)(mcuqp_lo_s16(x) * mcuqp_lo_s16(y)) +
                     (uint32_t)(mcuqp_hi_s16(x) * mcuqp_hi_s16(y)));
#endif
}

/* SMLABB: acc + x.lo * y.lo, modulo 2^32. */
MCUQP_INLINE int32_t mcuqp_smlabb(uint32_t x, uint32_t y, int32_t acc)
{
#if MCUQP_ACLE_DSP
    return __smlabb((int32_t)x, (int32_t)y, acc);
#else
    return (int32_t)((uint32_t)acc + (uint32_t)(mcuqp_lo_s16(x) * mcuqp_lo_s16(y)));
#endif
}

/* SMLATT: acc + x.hi * y.hi, modulo 2^32. */
MCUQP_INLINE int32_t mcuqp_smlatt(uint32_t x, uint32_t y, int32_t acc)
{
#if MCUQP_ACLE_DSP
    return __smlatt((int32_t)x, (int32_t)y, acc);
#else
    return (int32_t)((uint32_t)acc + (uint32_t)(mcuqp_hi_s16(x) * mcuqp_hi_s16(y)));
#endif
}

/* SMLAL: {*hi, *lo} += x * y, a signed 32 x 32 -> 64-bit multiply-accumulate. (Inline
 * assembly on the target: GCC 12 otherwise sometimes builds a 64 x 64 multiply.) */
MCUQP_INLINE void mcuqp_smlal(uint32_t *lo, int32_t *hi, int32_t x, int32_t y)
{
#if MCUQP_ACLE_DSP
    __asm__("smlal %0, %1, %2, %3" : "+r"(*lo), "+r"(*hi) : "r"(x), "r"(y));
#else
    const uint64_t acc = (((uint64_t)(uint32_t)*hi << 32) | *lo) + (uint64_t)((int64_t)x * y);
    *lo = (uint32_t)acc;
    *hi = (int32_t)(uint32_t)(acc >> 32);
#endif
}

/* ---- saturation ---------------------------------------------------------------------- */

/* QADD: a + b saturated to int32. */
MCUQP_INLINE int32_t mcuqp_qadd(int32_t a, int32_t b)
{
#if MCUQP_ACLE_DSP
    return __qadd(a, b);
#else
    const int64_t s = (int64_t)a + (int64_t)b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
#endif
}

/* SSAT #8: x saturated to [-128, 127]. */
MCUQP_INLINE int32_t mcuqp_ssat8(int32_t x)
{
#if MCUQP_ACLE_DSP
    /* The builtin behind arm_acle.h's __ssat, whose macro body trips -Wsign-conversion in GCC 12. */
    return (int32_t)__builtin_arm_ssat(x, 8);
#else
    return x < -128 ? -128 : (x > 127 ? 127 : x);
#endif
}

/* ---- requantization ------------------------------------------------------------------ */

/* mcuqp_requantize(x, multiplier, shift), bit for bit, for any multiplier except
 * INT32_MIN (kernels check for that value once and take their plain path).
 *
 * Double rounding: SaturatingRoundingDoublingHighMul saturates only for INT32_MIN *
 * INT32_MIN; otherwise its nudge-and-truncate equals floor((a * b + 2^30) / 2^31) for
 * either sign (for a * b < 0, truncating (a * b + 1 - 2^30) / 2^31 toward zero is its
 * ceiling, i.e. the floor of (a * b + 2^30) / 2^31), which is one SMLAL and a 64-bit
 * shift. RoundingDivideByPOT then rounds half away from zero with a mask compare.
 * Single rounding: the 64-bit shift by 31 - shift, taken from the high word alone when
 * the shift is 32 or more. */
MCUQP_INLINE int32_t mcuqp_requantize_nomin(int32_t x, int32_t multiplier, int32_t shift)
{
#if MCUQP_SINGLE_ROUNDING
    const int64_t p = (int64_t)x * multiplier + ((int64_t)1 << (30 - shift));
    if (shift < 0) {
        return (int32_t)(p >> 32) >> (-shift - 1);
    }
    return (int32_t)(uint32_t)((uint64_t)p >> (31 - shift));
#else
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int64_t p = (int64_t)mcuqp_shl_wrap(x, left) * multiplier + ((int64_t)1 << 30);
    const int32_t t = (int32_t)(p >> 31);
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1u);
    const int32_t threshold = (mask >> 1) + (int32_t)((uint32_t)t >> 31);
    return (t >> right) + ((t & mask) > threshold ? 1 : 0);
#endif
}

/* ---- per-channel prepared requantization --------------------------------------------
 *
 * For the common shifts the result is read from the high word of one 64-bit
 * multiply-accumulate. With P = x * multiplier (exact) and r = -shift:
 *  - double rounding, r >= 2: SaturatingRoundingDoublingHighMul is floor((P + 2^30) / 2^31)
 *    (see above) and RoundingDivideByPOT(t, r) is floor((t + 2^(r-1) - [t < 0]) / 2^r);
 *    nesting the floors gives floor((P + C - [t < 0] * 2^31) / 2^(31 + r)) with
 *    C = 2^30 + 2^(30 + r). With Q = P + C, [t < 0] is [Q < 2^(30 + r)], i.e. high word
 *    of Q < K = 2^(r - 2), and subtracting 2^31 borrows from the high word iff the low
 *    word is below 2^31. So the result is (hi - [hi < K and lo < 2^31]) >> (r - 1).
 *  - single rounding, r >= 2: (P + 2^(30 + r)) >> (31 + r) is (hi(P) + 2^(r - 2)) >> (r - 1).
 * Other shifts (r <= 1: effective scales of 1/4 and more) use mcuqp_requantize_nomin(). */
typedef struct {
    int32_t multiplier;
    int32_t shift;
    int32_t k;  /* 2^(r - 2) */
    int32_t sh; /* r - 1 for the high-word form, -1 for the general one */
} mcuqp_rq;

MCUQP_INLINE mcuqp_rq mcuqp_rq_prepare(int32_t multiplier, int32_t shift)
{
    /* A zero multiplier gives 0 for every shift (QuantizeMultiplier's (0, 0) for a zero
     * scale): any r >= 2 computes that. */
    const int32_t s = multiplier == 0 ? -2 : shift;
    mcuqp_rq q;
    q.multiplier = multiplier;
    q.shift = shift;
    q.sh = s <= -2 ? -s - 1 : -1;
    q.k = s <= -2 ? (int32_t)((uint32_t)1 << (-s - 2)) : 0;
    return q;
}

/* 1 when q takes the high-word form (r >= 2). */
MCUQP_INLINE int mcuqp_rq_fast(const mcuqp_rq *q) { return q->sh >= 0; }

/* The high-word form; only for mcuqp_rq_fast(q). */
MCUQP_INLINE int32_t mcuqp_rq_apply_fast(int32_t x, const mcuqp_rq *q)
{
#if MCUQP_SINGLE_ROUNDING
    uint32_t lo = 0u;
    int32_t hi = q->k; /* + 2^(30 + r), whose low word is 0 */
    mcuqp_smlal(&lo, &hi, x, q->multiplier);
    return hi >> q->sh;
#else
    uint32_t lo = 1u << 30; /* + C = 2^30 + 2^(30 + r) */
    int32_t hi = q->k;
    mcuqp_smlal(&lo, &hi, x, q->multiplier);
    const int32_t borrow = (int32_t)((((uint32_t)hi - (uint32_t)q->k) & ~lo) >> 31);
    return (hi - borrow) >> q->sh;
#endif
}

/* mcuqp_requantize(x, multiplier, shift) for a multiplier other than INT32_MIN. */
MCUQP_INLINE int32_t mcuqp_rq_apply(int32_t x, const mcuqp_rq *q)
{
    if (!mcuqp_rq_fast(q)) {
        return mcuqp_requantize_nomin(x, q->multiplier, q->shift);
    }
    return mcuqp_rq_apply_fast(x, q);
}

/* r + output_offset saturated to int8: the output for the full clamp [-128, 127]. */
MCUQP_INLINE int32_t mcuqp_out_full(int32_t r, int32_t output_offset)
{
    return mcuqp_ssat8(mcuqp_qadd(r, output_offset));
}

/* The output stage: requantize, add the output offset, clamp to [act_min, act_max]. With
 * the full int8 range (full != 0) that is QADD + SSAT; otherwise lo/hi are the clamp minus
 * the output offset (so the int32 add cannot overflow), as in the portable kernels. */
MCUQP_INLINE int8_t mcuqp_rq_output(int32_t acc, const mcuqp_rq *q, int full, int32_t lo, int32_t hi,
                                    int32_t output_offset)
{
    const int32_t r = mcuqp_rq_apply(acc, q);
    if (full) {
        return (int8_t)mcuqp_out_full(r, output_offset);
    }
    return (int8_t)(mcuqp_clamp_i32(r, lo, hi) + output_offset);
}

/* The same output stage with mcuqp_requantize_nomin(). */
MCUQP_INLINE int8_t mcuqp_output_nomin(int32_t acc, int32_t multiplier, int32_t shift, int32_t lo, int32_t hi,
                                      int32_t output_offset)
{
    const int32_t r = mcuqp_requantize_nomin(acc, multiplier, shift);
    return (int8_t)(mcuqp_clamp_i32(r, lo, hi) + output_offset);
}

/* 1 when every multiplier of a requantization can use mcuqp_requantize_nomin(). */
MCUQP_INLINE int mcuqp_multipliers_nomin(const int32_t *multiplier, int32_t count)
{
    int32_t i;
    for (i = 0; i < count; ++i) {
        if (multiplier[i] == INT32_MIN) {
            return 0;
        }
    }
    return 1;
}

#endif /* MCUQP_INTRINSICS_H */
