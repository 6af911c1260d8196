/*
 * Elementwise multiply of two int8 tensors with broadcasting (TFLite int8 MUL).
 *
 * params  offsets: input_offset = -input zero point, output_offset = output zero point;
 *         output_multiplier Q31 in [0, 2^31) with shift in [-31, 30] for
 *         in1_scale * in2_scale / out_scale; act_min <= act_max within [-128, 127]
 *         (input offsets in [-127, 128], as from int8 zero points)
 *
 * Per output element:
 *   y = MultiplyByQuantizedMultiplier((x1 + input1_offset) * (x2 + input2_offset))
 *       + output_offset, clamped to [act_min, act_max]
 * The product of two offset int8 values is at most 256 * 256 in magnitude, so the int32
 * arithmetic never overflows.
 *
 * shape   mcuqp_broadcast: output shape (rank 6, padded with leading 1s) and the element
 *         strides of each input over it (0 along a broadcast dimension)
 * input1, input2  int8, addressed through the strides; output  int8, dense row-major
 */
#include "mcuqp_broadcast.h"
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

static int valid(const mcuqp_mul_params *p)
{
    return p->input1_offset >= -127 && p->input1_offset <= 128 && p->input2_offset >= -127 &&
           p->input2_offset <= 128 && p->output_multiplier >= 0 && p->output_shift >= -31 && p->output_shift <= 30 &&
           p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127;
}

static inline int8_t mul_element(const mcuqp_mul_params *p, int8_t x1, int8_t x2)
{
    const int32_t prod = ((int32_t)x1 + p->input1_offset) * ((int32_t)x2 + p->input2_offset);
    const int32_t r = mcuqp_requantize(prod, p->output_multiplier, p->output_shift);
    return (int8_t)mcuqp_clamp_i32(r + p->output_offset, p->act_min, p->act_max);
}

mcuqp_status mcuqp_mul_s8(const mcuqp_mul_params *params, const mcuqp_broadcast *shape, const int8_t *input1,
                          const int8_t *input2, int8_t *output)
{
    if (params == NULL || shape == NULL || input1 == NULL || input2 == NULL || output == NULL) {
        return MCUQP_ERR_ARG;
    }
    int32_t rows = mcuqp_broadcast_rows(shape);
    if (rows < 0 || !valid(params)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t n = shape->shape[MCUQP_BROADCAST_INNER];
    const int32_t s1 = shape->stride1[MCUQP_BROADCAST_INNER];
    const int32_t s2 = shape->stride2[MCUQP_BROADCAST_INNER];
    mcuqp_broadcast_walk w;
    mcuqp_broadcast_start(&w);
    int8_t *y = output;
    while (rows-- > 0) {
        const int8_t *a = input1 + w.offset1;
        const int8_t *b = input2 + w.offset2;
        int32_t k;
        for (k = 0; k < n; ++k) {
            *y++ = mul_element(params, a[k * s1], b[k * s2]);
        }
        mcuqp_broadcast_next_row(shape, &w);
    }
    return MCUQP_OK;
}
