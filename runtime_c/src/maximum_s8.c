/*
 * Elementwise maximum of two int8 tensors with broadcasting (TFLite Micro int8 MAXIMUM:
 * the raw values are compared; inputs and output share one quantization).
 *
 * shape   mcuqp_broadcast: output shape (rank 6, padded with leading 1s) and the element
 *         strides of each input over it (0 along a broadcast dimension)
 * input1, input2  int8, addressed through the strides; output  int8, dense row-major
 */
#include "mcuqp_broadcast.h"
#include "mcuqp_nn.h"

mcuqp_status mcuqp_maximum_s8(const mcuqp_broadcast *shape, const int8_t *input1, const int8_t *input2,
                              int8_t *output)
{
    if (shape == NULL || input1 == NULL || input2 == NULL || output == NULL) {
        return MCUQP_ERR_ARG;
    }
    int32_t rows = mcuqp_broadcast_rows(shape);
    if (rows < 0) {
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
            const int8_t va = a[k * s1];
            const int8_t vb = b[k * s2];
            *y++ = va > vb ? va : vb;
        }
        mcuqp_broadcast_next_row(shape, &w);
    }
    return MCUQP_OK;
}
