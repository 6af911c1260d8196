/*
 * int8 PRELU with broadcasting (TFLite Micro reference kernel): the alpha tensor broadcasts
 * against the input like a second operand.
 *
 * params  input_offset = -input zero point, alpha_offset = -alpha zero point (each in
 *         [-127, 128]), output_offset = output zero point in [-128, 127];
 *         (output_multiplier_1, output_shift_1) for in_scale / out_scale and
 *         (output_multiplier_2, output_shift_2) for in_scale * alpha_scale / out_scale,
 *         multipliers Q31 in [0, 2^31), shifts in [-31, 30]
 *
 * Per output element, with v = x + input_offset:
 *   v >= 0: y = MultiplyByQuantizedMultiplier(v, output_multiplier_1, output_shift_1)
 *   v <  0: y = MultiplyByQuantizedMultiplier(v * (alpha + alpha_offset), output_multiplier_2,
 *               output_shift_2)
 *   y + output_offset, clamped to [-128, 127]
 *
 * shape   mcuqp_broadcast: output shape (rank 6, padded with leading 1s) and the element
 *         strides of each input over it (0 along a broadcast dimension)
 * input, alpha  int8, addressed through the strides; output  int8, dense row-major
 */
#include "mcuqp_broadcast.h"
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

static int valid(const mcuqp_prelu_params *p)
{
    return p->input_offset >= -127 && p->input_offset <= 128 && p->alpha_offset >= -127 && p->alpha_offset <= 128 &&
           p->output_offset >= -128 && p->output_offset <= 127 && p->output_multiplier_1 >= 0 &&
           p->output_shift_1 >= -31 && p->output_shift_1 <= 30 && p->output_multiplier_2 >= 0 &&
           p->output_shift_2 >= -31 && p->output_shift_2 <= 30;
}

static inline int8_t prelu_element(const mcuqp_prelu_params *p, int8_t x, int8_t alpha)
{
    const int32_t v = (int32_t)x + p->input_offset;
    const int32_t r = v >= 0 ? mcuqp_requantize(v, p->output_multiplier_1, p->output_shift_1)
                             : mcuqp_requantize(v * ((int32_t)alpha + p->alpha_offset), p->output_multiplier_2,
                                                p->output_shift_2);
    return (int8_t)mcuqp_clamp_i32(r + p->output_offset, -128, 127);
}

mcuqp_status mcuqp_prelu_s8(const mcuqp_prelu_params *params, const mcuqp_broadcast *shape, const int8_t *input,
                            const int8_t *alpha, int8_t *output)
{
    if (params == NULL || shape == NULL || input == NULL || alpha == NULL || output == NULL) {
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
        const int8_t *a = input + w.offset1;
        const int8_t *b = alpha + w.offset2;
        int32_t k;
        for (k = 0; k < n; ++k) {
            *y++ = prelu_element(params, a[k * s1], b[k * s2]);
        }
        mcuqp_broadcast_next_row(shape, &w);
    }
    return MCUQP_OK;
}
