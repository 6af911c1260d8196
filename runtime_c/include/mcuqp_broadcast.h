/*
 * mcuqp helpers shared by the broadcasting binary kernels (internal; not part of the public
 * API): the check of an mcuqp_broadcast and the walk over the output in row-major order.
 *
 * A kernel visits the output one innermost row (shape[5] elements) at a time:
 *
 *   mcuqp_broadcast_walk w;
 *   int32_t rows = mcuqp_broadcast_rows(shape);   // -1: invalid shape
 *   mcuqp_broadcast_start(&w);
 *   while (rows-- > 0) {
 *       ... output[k], input1[w.offset1 + k * stride1[5]], input2[w.offset2 + k * stride2[5]]
 *       mcuqp_broadcast_next_row(shape, &w);
 *   }
 *
 * Sizes: every shape entry >= 0, strides >= 0, the output's element count below 2^31.
 */
#ifndef MCUQP_BROADCAST_H
#define MCUQP_BROADCAST_H

#include <stdint.h>

#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

#define MCUQP_BROADCAST_INNER (MCUQP_BROADCAST_MAX_RANK - 1)

typedef struct {
    int32_t index[MCUQP_BROADCAST_MAX_RANK];
    int32_t offset1;
    int32_t offset2;
} mcuqp_broadcast_walk;

/* The number of innermost rows of the output (0 for an empty output), or -1 when a shape
 * entry or a stride is negative or the output has 2^31 elements or more. */
static inline int32_t mcuqp_broadcast_rows(const mcuqp_broadcast *b)
{
    int64_t elements = 1;
    int32_t d;
    for (d = 0; d < MCUQP_BROADCAST_MAX_RANK; ++d) {
        if (b->shape[d] < 0 || b->stride1[d] < 0 || b->stride2[d] < 0) {
            return -1;
        }
        elements *= b->shape[d];
        if (elements > INT32_MAX) {
            return -1;
        }
    }
    return elements == 0 ? 0 : (int32_t)(elements / b->shape[MCUQP_BROADCAST_INNER]);
}

static inline void mcuqp_broadcast_start(mcuqp_broadcast_walk *w)
{
    int32_t d;
    for (d = 0; d < MCUQP_BROADCAST_MAX_RANK; ++d) {
        w->index[d] = 0;
    }
    w->offset1 = 0;
    w->offset2 = 0;
}

/* Advance to the next innermost row: increment the outer index with carry. */
static inline void mcuqp_broadcast_next_row(const mcuqp_broadcast *b, mcuqp_broadcast_walk *w)
{
    int32_t d;
    for (d = MCUQP_BROADCAST_INNER - 1; d >= 0; --d) {
        w->offset1 += b->stride1[d];
        w->offset2 += b->stride2[d];
        if (++w->index[d] < b->shape[d]) {
            return;
        }
        w->offset1 -= b->stride1[d] * b->shape[d];
        w->offset2 -= b->stride2[d] * b->shape[d];
        w->index[d] = 0;
    }
}

/* ---- the ADD / SUB arithmetic of TFLite int8 (mcuqp_add_s8's header has the formula) ---- */

static inline int32_t mcuqp_add_wrap(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }

static inline int32_t mcuqp_scale_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift)
{
#if MCUQP_SINGLE_ROUNDING
    return mcuqp_requantize(x, multiplier, shift);
#else
    return mcuqp_mul_by_qm_smaller_than_one(x, multiplier, shift);
#endif
}

static inline int mcuqp_add_params_valid(const mcuqp_add_params *p)
{
    return p->left_shift >= 0 && p->left_shift <= 31 && p->input1_multiplier >= 0 && p->input1_shift <= 0 &&
           p->input1_shift >= -31 && p->input2_multiplier >= 0 && p->input2_shift <= 0 && p->input2_shift >= -31 &&
           p->output_multiplier >= 0 && p->output_shift <= 0 && p->output_shift >= -31 &&
           p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127;
}

/* One output of ADD (negate_input2 = 0) or SUB (1): the rescaled inputs are added or subtracted. */
static inline int8_t mcuqp_add_sub_element(const mcuqp_add_params *p, int8_t x1, int8_t x2, int negate_input2)
{
    const int32_t a1 = mcuqp_shl_wrap(mcuqp_add_wrap(p->input1_offset, x1), p->left_shift);
    const int32_t a2 = mcuqp_shl_wrap(mcuqp_add_wrap(p->input2_offset, x2), p->left_shift);
    const int32_t s1 = mcuqp_scale_smaller_than_one(a1, p->input1_multiplier, p->input1_shift);
    const int32_t s2 = mcuqp_scale_smaller_than_one(a2, p->input2_multiplier, p->input2_shift);
    const int32_t sum = negate_input2 ? (int32_t)((uint32_t)s1 - (uint32_t)s2) : mcuqp_add_wrap(s1, s2);
    const int32_t raw = mcuqp_scale_smaller_than_one(sum, p->output_multiplier, p->output_shift);
    return (int8_t)mcuqp_clamp_i32(mcuqp_add_wrap(raw, p->output_offset), p->act_min, p->act_max);
}

#endif /* MCUQP_BROADCAST_H */
