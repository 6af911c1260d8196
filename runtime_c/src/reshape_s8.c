/*
 * Reshape: a byte copy (a reshape never changes the data order of an NHWC tensor).
 *
 * input, output  `size` int8 values; the buffers may overlap (memmove semantics) or be
 *                the same buffer (nothing to do). size >= 0; NULL only when size == 0.
 */
#include <string.h>

#include "mcuqp_nn.h"

mcuqp_status mcuqp_reshape_s8(int32_t size, const int8_t *input, int8_t *output)
{
    if (size < 0 || (size > 0 && (input == NULL || output == NULL))) {
        return MCUQP_ERR_ARG;
    }
    if (size > 0 && input != output) {
        memmove(output, input, (size_t)size);
    }
    return MCUQP_OK;
}
