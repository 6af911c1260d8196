/*
 * Strided slice of an int8 tensor of rank <= 5 (TFLite STRIDED_SLICE, and SPLIT / SPLIT_V,
 * which are slices with stride 1).
 *
 * All four arrays of params are row-major and padded at the front to rank 5 (shape 1,
 * begin 0, stride 1, output 1). Begin, end and the masks are resolved at compile time:
 * output[i0, .., i4] = input[begin[d] + i[d] * strides[d] for each d], with strides != 0
 * (negative walks backwards) and every index read inside [0, input_shape[d]). An output
 * dimension may be 0 (nothing is written). Input and output share one quantization, so
 * values are copied unchanged. Input and output must not overlap. The input holds < 2^31
 * values.
 */
#include "mcuqp_nn.h"

#define RANK MCUQP_MAX_RANK

mcuqp_status mcuqp_strided_slice_s8(const mcuqp_strided_slice_params *params, const int8_t *input,
                                    int8_t *output)
{
    if (params == NULL || input == NULL || output == NULL) {
        return MCUQP_ERR_ARG;
    }
    int32_t step[RANK];
    int64_t stride = 1;
    int64_t base = 0;
    int32_t d;
    for (d = RANK - 1; d >= 0; --d) {
        const int32_t size = params->input_shape[d];
        const int32_t n = params->output_shape[d];
        const int32_t s = params->strides[d];
        const int32_t b = params->begin[d];
        if (size < 1 || n < 0 || s == 0) {
            return MCUQP_ERR_ARG;
        }
        if (n > 0) {
            const int64_t last = (int64_t)b + (int64_t)(n - 1) * s;
            if (b < 0 || b >= size || last < 0 || last >= size) {
                return MCUQP_ERR_ARG;
            }
        }
        /* |s| < size when n > 1 (the last index is inside), so the step fits in int32 */
        step[d] = n > 1 ? (int32_t)((int64_t)s * stride) : 0;
        base += (int64_t)b * stride;
        stride *= size;
        if (stride > INT32_MAX) {
            return MCUQP_ERR_ARG;
        }
    }
    const int32_t *n = params->output_shape;
    int32_t i0, i1, i2, i3, i4;
    int8_t *y = output;
    for (i0 = 0; i0 < n[0]; ++i0) {
        const int32_t o0 = (int32_t)base + i0 * step[0];
        for (i1 = 0; i1 < n[1]; ++i1) {
            const int32_t o1 = o0 + i1 * step[1];
            for (i2 = 0; i2 < n[2]; ++i2) {
                const int32_t o2 = o1 + i2 * step[2];
                for (i3 = 0; i3 < n[3]; ++i3) {
                    const int32_t o3 = o2 + i3 * step[3];
                    for (i4 = 0; i4 < n[4]; ++i4) {
                        *y++ = input[o3 + i4 * step[4]];
                    }
                }
            }
        }
    }
    return MCUQP_OK;
}
