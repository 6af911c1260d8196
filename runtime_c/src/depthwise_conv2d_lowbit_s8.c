/*
 * Depthwise 2-D convolution with low-bit weights (mcuqp_lowbit_weights: int4, ternary or
 * binary), int8 NHWC -> int8 NHWC. Same results as mcuqp_depthwise_conv2d_s8 on the
 * decoded weights.
 *
 * filter  filter_dims = (1, k_h, k_w, out_c); the filter (k_h, k_w, out_c) as one stream of
 *         ceil(k_h * k_w * out_c / (32 / bits)) words
 * buffer  mcuqp_depthwise_conv2d_lowbit_s8_get_buffer_size(filter_dims) bytes: the decoded
 *         int8 filter (k_h * k_w * out_c)
 * input, bias, output, params, quant  as mcuqp_depthwise_conv2d_s8
 *
 * A depthwise filter is small and each weight is used once per output pixel, so the
 * filter is decoded once per call into the buffer and mcuqp_depthwise_conv2d_s8 (the
 * variant linked for the board: portable or DSP) does the convolution.
 */
#include "mcuqp_packed.h"

int32_t mcuqp_depthwise_conv2d_lowbit_s8_get_buffer_size(const mcuqp_dims *filter_dims)
{
    if (filter_dims == NULL || !mcuqp_conv_valid_dim(filter_dims->h) || !mcuqp_conv_valid_dim(filter_dims->w) ||
        !mcuqp_conv_valid_dim(filter_dims->c)) {
        return (int32_t)MCUQP_ERR_ARG;
    }
    const int64_t k = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    return k < (1 << 28) ? (int32_t)mcuqp_pk_round_up((int32_t)k, 4) : (int32_t)MCUQP_ERR_ARG;
}

mcuqp_status mcuqp_depthwise_conv2d_lowbit_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                              const mcuqp_dims *input_dims, const int8_t *input,
                                              const mcuqp_dims *filter_dims, const mcuqp_lowbit_weights *filter,
                                              const int32_t *bias, const mcuqp_dims *output_dims, int8_t *output,
                                              void *buffer)
{
    if (filter == NULL || filter->words == NULL || buffer == NULL || !mcuqp_pk_valid_bits(filter->bits) ||
        mcuqp_depthwise_conv2d_lowbit_s8_get_buffer_size(filter_dims) < 0) {
        return MCUQP_ERR_ARG;
    }
    const int32_t bits = filter->bits;
    const int32_t per_word = 32 / bits;
    const int32_t n = filter_dims->h * filter_dims->w * filter_dims->c;
    const uint32_t mask = (1u << bits) - 1u;
    int8_t *w = (int8_t *)buffer;
    int32_t k;
    for (k = 0; k < n; ++k) {
        const int32_t in_word = k % per_word;
        const uint32_t code = (filter->words[k / per_word] >> (8 * (in_word & 3) + bits * (in_word >> 2))) & mask;
        w[k] = (int8_t)mcuqp_pk_decode(code, bits);
    }
    return mcuqp_depthwise_conv2d_s8(params, quant, input_dims, input, filter_dims, w, bias, output_dims, output);
}
