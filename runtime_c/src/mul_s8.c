/*
 * Elementwise multiply of two int8 tensors with broadcasting (TFLite int8 MUL).
 *
 * input1_dims, input2_dims  NHWC; every dimension equals output_dims' or is 1 (broadcast)
 * params  offsets: input_offset = -input zero point, output_offset = output zero point;
 *         output_multiplier Q31 in [0, 2^31) with shift in [-31, 30] for
 *         in1_scale * in2_scale / out_scale; act_min <= act_max within [-128, 127]
 *
 * Per output element:
 *   y = MultiplyByQuantizedMultiplier((x1 + input1_offset) * (x2 + input2_offset))
 *       + output_offset, clamped to [act_min, act_max]
 * The product of two offset int8 values is at most 255 * 255 in magnitude, so the int32
 * arithmetic never overflows.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

static int broadcastable(const mcuqp_dims *in, const mcuqp_dims *out)
{
    return (in->n == out->n || in->n == 1) && (in->h == out->h || in->h == 1) &&
           (in->w == out->w || in->w == 1) && (in->c == out->c || in->c == 1);
}

/* Strides of an input over the output's index space: 0 along broadcast dimensions. */
static void strides(const mcuqp_dims *d, int32_t s[4])
{
    s[3] = d->c == 1 ? 0 : 1;
    s[2] = d->w == 1 ? 0 : d->c;
    s[1] = d->h == 1 ? 0 : d->w * d->c;
    s[0] = d->n == 1 ? 0 : d->h * d->w * d->c;
}

mcuqp_status mcuqp_mul_s8(const mcuqp_mul_params *params, const mcuqp_dims *input1_dims,
                          const int8_t *input1, const mcuqp_dims *input2_dims, const int8_t *input2,
                          const mcuqp_dims *output_dims, int8_t *output)
{
    if (params == NULL || input1_dims == NULL || input2_dims == NULL || output_dims == NULL ||
        input1 == NULL || input2 == NULL || output == NULL) {
        return MCUQP_ERR_ARG;
    }
    const mcuqp_dims *o = output_dims;
    if (o->n < 0 || o->h < 0 || o->w < 0 || o->c < 0 || !broadcastable(input1_dims, o) ||
        !broadcastable(input2_dims, o) || params->output_multiplier < 0 || params->output_shift < -31 ||
        params->output_shift > 30 || params->act_min > params->act_max || params->act_min < -128 ||
        params->act_max > 127) {
        return MCUQP_ERR_ARG;
    }
    int32_t s1[4], s2[4];
    strides(input1_dims, s1);
    strides(input2_dims, s2);

    int32_t n, h, w, c;
    int8_t *y = output;
    for (n = 0; n < o->n; ++n) {
        for (h = 0; h < o->h; ++h) {
            for (w = 0; w < o->w; ++w) {
                const int32_t base1 = n * s1[0] + h * s1[1] + w * s1[2];
                const int32_t base2 = n * s2[0] + h * s2[1] + w * s2[2];
                for (c = 0; c < o->c; ++c) {
                    const int32_t a = input1[base1 + c * s1[3]] + params->input1_offset;
                    const int32_t b = input2[base2 + c * s2[3]] + params->input2_offset;
                    const int32_t r = mcuqp_requantize(a * b, params->output_multiplier, params->output_shift);
                    *y++ = (int8_t)mcuqp_clamp_i32(r + params->output_offset, params->act_min, params->act_max);
                }
            }
        }
    }
    return MCUQP_OK;
}
