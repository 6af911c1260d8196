/*
 * int8 sign for binary activations (BNN / XNOR-Net style, see mcuqp.compress.binary_act).
 *
 * params  input_zero_point in [-128, 127].
 * Output scale 1.0, zero point 0.
 *
 * Per element: y = 1 if x >= input_zero_point (real value >= 0, sign(0) = +1), else -1.
 * Works in place (input == output).
 */
#include "mcuqp_nn.h"

mcuqp_status mcuqp_sign_s8(const mcuqp_sign_params *params, int32_t size, const int8_t *input, int8_t *output)
{
    if (params == NULL || size < 0 || (size > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (params->input_zero_point < -128 || params->input_zero_point > 127) {
        return MCUQP_ERR_ARG;
    }
    const int32_t zp = params->input_zero_point;
    int32_t i;
    for (i = 0; i < size; ++i) {
        output[i] = (int8_t)((int32_t)input[i] >= zp ? 1 : -1);
    }
    return MCUQP_OK;
}
