/*
 * Concatenation of int8 tensors along one axis (TFLite CONCATENATION).
 *
 * Each input i is viewed as (outer_size, axis_sizes[i], inner_size), where outer_size is
 * the product of the dimensions before the axis and inner_size of those after it; the
 * output is (outer_size, sum of axis_sizes, inner_size). TFLite Micro requires int8
 * inputs to share the output's scale and zero point, so values are copied unchanged.
 * The output must not overlap any input.
 */
#include <string.h>

#include "mcuqp_nn.h"

mcuqp_status mcuqp_concatenation_s8(int32_t num_inputs, const int8_t *const *inputs,
                                    const int32_t *axis_sizes, int32_t outer_size,
                                    int32_t inner_size, int8_t *output)
{
    if (num_inputs < 1 || inputs == NULL || axis_sizes == NULL || output == NULL || outer_size < 0 ||
        inner_size < 0) {
        return MCUQP_ERR_ARG;
    }
    int32_t i, o;
    for (i = 0; i < num_inputs; ++i) {
        if (inputs[i] == NULL || axis_sizes[i] < 0) {
            return MCUQP_ERR_ARG;
        }
    }
    int8_t *y = output;
    for (o = 0; o < outer_size; ++o) {
        for (i = 0; i < num_inputs; ++i) {
            const size_t block = (size_t)axis_sizes[i] * (size_t)inner_size;
            memcpy(y, inputs[i] + (size_t)o * block, block);
            y += block;
        }
    }
    return MCUQP_OK;
}
