/*
 * Constant padding of an int8 NHWC tensor (TFLite PAD / PADV2).
 *
 * output_dims = input_dims + before + after in every dimension (n, h, w, c), all >= 0;
 * the border holds params->pad_value (the output zero point for PAD). Input and output
 * share one quantization, so the interior is a copy. Input and output must not overlap.
 */
#include "mcuqp_nn.h"

mcuqp_status mcuqp_pad_s8(const mcuqp_pad_params *params, const mcuqp_dims *input_dims,
                          const int8_t *input, const mcuqp_dims *output_dims, int8_t *output)
{
    if (params == NULL || input_dims == NULL || output_dims == NULL || input == NULL || output == NULL) {
        return MCUQP_ERR_ARG;
    }
    const int32_t in[4] = {input_dims->n, input_dims->h, input_dims->w, input_dims->c};
    const int32_t out[4] = {output_dims->n, output_dims->h, output_dims->w, output_dims->c};
    int32_t k;
    for (k = 0; k < 4; ++k) {
        if (in[k] < 0 || params->before[k] < 0 || params->after[k] < 0 ||
            out[k] != in[k] + params->before[k] + params->after[k]) {
            return MCUQP_ERR_ARG;
        }
    }
    if (params->pad_value < -128 || params->pad_value > 127) {
        return MCUQP_ERR_ARG;
    }
    const int8_t value = (int8_t)params->pad_value;
    int32_t n, h, w, c;
    int8_t *y = output;
    for (n = 0; n < out[0]; ++n) {
        const int32_t xn = n - params->before[0];
        for (h = 0; h < out[1]; ++h) {
            const int32_t xh = h - params->before[1];
            for (w = 0; w < out[2]; ++w) {
                const int32_t xw = w - params->before[2];
                const int inside = xn >= 0 && xn < in[0] && xh >= 0 && xh < in[1] && xw >= 0 && xw < in[2];
                /* Only form the input pointer inside the tensor (out-of-range pointers are UB). */
                const int8_t *x = inside ? input + ((xn * in[1] + xh) * in[2] + xw) * in[3] : input;
                for (c = 0; c < out[3]; ++c) {
                    const int32_t xc = c - params->before[3];
                    *y++ = (inside && xc >= 0 && xc < in[3]) ? x[xc] : value;
                }
            }
        }
    }
    return MCUQP_OK;
}
