/*
 * Fully connected with low-bit weights (mcuqp_lowbit_weights: int4, ternary or binary),
 * int8 -> int8. Same results as mcuqp_fully_connected_s8 on the decoded weights
 * (filter_offset 0).
 *
 * input   (batches, in_ch) int8                   batches, out_ch >= 1, 1 <= in_ch < 2^16
 * filter  bits 4, 2 or 1; out_ch rows of ceil(in_ch / (32 / bits)) words
 * bias    (out_ch,) int32, or NULL
 * output  (batches, out_ch) int8
 * buffer  mcuqp_fully_connected_lowbit_s8_get_buffer_size(in_ch) bytes: the input row
 *         widened to int16 with the input offset (swizzled, padded with zeros to 32)
 * params  as mcuqp_fully_connected_s8, filter_offset == 0
 *
 * Portable version: each code is decoded (sign extension, or 2 b - 1 for binary) and
 * multiplied; the DSP variant (dsp/) turns one field of all four bytes of a word into
 * SMLAD operands at once.
 */
#include "mcuqp_packed.h"

int32_t mcuqp_fully_connected_lowbit_s8_get_buffer_size(int32_t in_ch)
{
    return in_ch >= 1 && in_ch < (1 << 16) ? 2 * mcuqp_pk_round_up(in_ch, 32) : (int32_t)MCUQP_ERR_ARG;
}

mcuqp_status mcuqp_fully_connected_lowbit_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                             int32_t batches, int32_t in_ch, const int8_t *input, int32_t out_ch,
                                             const mcuqp_lowbit_weights *filter, const int32_t *bias,
                                             int8_t *output, void *buffer)
{
    if (params == NULL || quant == NULL || input == NULL || filter == NULL || filter->words == NULL ||
        output == NULL || buffer == NULL || !mcuqp_fc_valid_args(params, quant, batches, in_ch, out_ch) ||
        params->filter_offset != 0 || !mcuqp_pk_valid_bits(filter->bits) ||
        mcuqp_fully_connected_lowbit_s8_get_buffer_size(in_ch) < 0) {
        return MCUQP_ERR_ARG;
    }
    int16_t *x = (int16_t *)buffer;
    const mcuqp_pk_layout swizzled = {1, 1, 0, 0};
    const int32_t bits = filter->bits;
    const int32_t row_words = (in_ch + 32 / bits - 1) / (32 / bits);
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
    const int32_t padded = mcuqp_pk_round_up(in_ch, 32);
    int32_t i;
    for (i = in_ch; i < padded; ++i) {
        x[mcuqp_pk_swz(i)] = 0;
    }
    int32_t b;
    for (b = 0; b < batches; ++b) {
        mcuqp_pk_widen(input + (size_t)b * (size_t)in_ch, in_ch, params->input_offset, x, 0, &swizzled);
        int8_t *y = output + (size_t)b * (size_t)out_ch;
        int32_t oc;
        for (oc = 0; oc < out_ch; ++oc) {
            const uint32_t *w = filter->words + (size_t)oc * (size_t)row_words;
            uint32_t acc;
            switch (bits) { /* constant field widths: unrolled decoding */
            case 4:
                acc = mcuqp_pk_lowbit_dot(w, row_words, x, 4);
                break;
            case 2:
                acc = mcuqp_pk_lowbit_dot(w, row_words, x, 2);
                break;
            default:
                acc = mcuqp_pk_lowbit_dot(w, row_words, x, 1);
                break;
            }
            acc += bias != NULL ? (uint32_t)bias[oc] : 0u;
            y[oc] = mcuqp_pk_store(&o, acc, oc);
        }
    }
    return MCUQP_OK;
}
