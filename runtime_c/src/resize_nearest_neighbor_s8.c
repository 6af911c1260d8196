/*
 * Nearest-neighbour resize of an int8 NHWC tensor (TFLite RESIZE_NEAREST_NEIGHBOR).
 *
 * Output row oh reads input row y_map[oh], output column ow input column x_map[ow]. The
 * maps hold TFLite's nearest-neighbour indices (align_corners / half_pixel_centers),
 * computed at compile time so that no float runs here; each lies in [0, input h) and
 * [0, input w). n and c of input and output are equal. Input and output share one
 * quantization, so values are copied unchanged; they must not overlap.
 */
#include <string.h>

#include "mcuqp_nn.h"

mcuqp_status mcuqp_resize_nearest_neighbor_s8(const mcuqp_dims *input_dims, const int8_t *input,
                                              const int32_t *y_map, const int32_t *x_map,
                                              const mcuqp_dims *output_dims, int8_t *output)
{
    if (input_dims == NULL || input == NULL || y_map == NULL || x_map == NULL || output_dims == NULL ||
        output == NULL) {
        return MCUQP_ERR_ARG;
    }
    const int32_t h = input_dims->h, w = input_dims->w, c = input_dims->c;
    if (input_dims->n != output_dims->n || c != output_dims->c || input_dims->n < 0 || c < 0 || h < 1 ||
        w < 1 || output_dims->h < 0 || output_dims->w < 0) {
        return MCUQP_ERR_ARG;
    }
    int32_t n, oh, ow;
    for (oh = 0; oh < output_dims->h; ++oh) {
        if (y_map[oh] < 0 || y_map[oh] >= h) {
            return MCUQP_ERR_ARG;
        }
    }
    for (ow = 0; ow < output_dims->w; ++ow) {
        if (x_map[ow] < 0 || x_map[ow] >= w) {
            return MCUQP_ERR_ARG;
        }
    }
    const size_t row = (size_t)w * (size_t)c;
    int8_t *y = output;
    for (n = 0; n < input_dims->n; ++n) {
        const int8_t *image = input + (size_t)n * (size_t)h * row;
        for (oh = 0; oh < output_dims->h; ++oh) {
            const int8_t *x_row = image + (size_t)y_map[oh] * row;
            for (ow = 0; ow < output_dims->w; ++ow) {
                memcpy(y, x_row + (size_t)x_map[ow] * (size_t)c, (size_t)c);
                y += c;
            }
        }
    }
    return MCUQP_OK;
}
