/*
 * Transpose of an int8 tensor of rank <= 5 (TFLite TRANSPOSE).
 *
 * params->input_shape holds the input's dimensions, row-major, padded at the front with
 * 1s to rank 5; params->perm is a permutation of 0..4 (the padded leading axes keep
 * their place). Output dimension d is input_shape[perm[d]], and
 * output[i0, .., i4] = input[j] with j[perm[d]] = i[d]. Input and output share one
 * quantization, so values are copied unchanged. Input and output must not overlap.
 * Dimensions are >= 1 and the input holds < 2^31 values.
 */
#include "mcuqp_nn.h"

#define RANK MCUQP_MAX_RANK

mcuqp_status mcuqp_transpose_s8(const mcuqp_transpose_params *params, const int8_t *input, int8_t *output)
{
    if (params == NULL || input == NULL || output == NULL) {
        return MCUQP_ERR_ARG;
    }
    int32_t in_stride[RANK];
    int32_t out_shape[RANK];
    int32_t step[RANK]; /* input offset change per unit of output index d */
    int32_t seen = 0;
    int32_t d;
    int64_t total = 1;
    for (d = RANK - 1; d >= 0; --d) {
        if (params->input_shape[d] < 1) {
            return MCUQP_ERR_ARG;
        }
        in_stride[d] = (int32_t)total;
        total *= params->input_shape[d];
        if (total > INT32_MAX) {
            return MCUQP_ERR_ARG;
        }
    }
    for (d = 0; d < RANK; ++d) {
        const int32_t p = params->perm[d];
        if (p < 0 || p >= RANK || (seen & (1 << p)) != 0) {
            return MCUQP_ERR_ARG;
        }
        seen |= 1 << p;
        out_shape[d] = params->input_shape[p];
        step[d] = in_stride[p];
    }
    int32_t i0, i1, i2, i3, i4;
    int8_t *y = output;
    for (i0 = 0; i0 < out_shape[0]; ++i0) {
        const int8_t *x0 = input + (size_t)i0 * (size_t)step[0];
        for (i1 = 0; i1 < out_shape[1]; ++i1) {
            const int8_t *x1 = x0 + (size_t)i1 * (size_t)step[1];
            for (i2 = 0; i2 < out_shape[2]; ++i2) {
                const int8_t *x2 = x1 + (size_t)i2 * (size_t)step[2];
                for (i3 = 0; i3 < out_shape[3]; ++i3) {
                    const int8_t *x3 = x2 + (size_t)i3 * (size_t)step[3];
                    for (i4 = 0; i4 < out_shape[4]; ++i4) {
                        *y++ = x3[(size_t)i4 * (size_t)step[4]];
                    }
                }
            }
        }
    }
    return MCUQP_OK;
}
