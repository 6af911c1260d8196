/*
 * Fully binary fully connected: binary weights (mcuqp_lowbit_weights, bits 1: 1 = +1,
 * 0 = -1) after a SIGN activation (every input -1 or +1, input_offset 0), int8 -> int8.
 * Same results as mcuqp_fully_connected_s8 on the decoded weights.
 *
 * input   (batches, in_ch) int8, each -1 or +1 (MCUQP_ERR_ARG otherwise)
 * filter  out_ch rows of ceil(in_ch / 32) words
 * bias    (out_ch,) int32, or NULL
 * output  (batches, out_ch) int8
 * buffer  mcuqp_fully_connected_xnor_s8_get_buffer_size(in_ch) bytes: the input's sign bits
 * params  as mcuqp_fully_connected_s8 with input_offset == 0 and filter_offset == 0
 *
 * acc = in_ch - 2 * popcount(weight bits XOR input bits) + bias: 32 multiply-accumulates
 * per XOR and (SWAR) popcount; the input bits are packed once per row in the weights'
 * lane order, and padding bits are 0 on both sides so they never differ.
 */
#include "mcuqp_packed.h"

int32_t mcuqp_fully_connected_xnor_s8_get_buffer_size(int32_t in_ch)
{
    return in_ch >= 1 && in_ch < (1 << 24) ? 4 * ((in_ch + 31) / 32) : (int32_t)MCUQP_ERR_ARG;
}

mcuqp_status mcuqp_fully_connected_xnor_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                           int32_t batches, int32_t in_ch, const int8_t *input, int32_t out_ch,
                                           const mcuqp_lowbit_weights *filter, const int32_t *bias, int8_t *output,
                                           void *buffer)
{
    if (params == NULL || quant == NULL || input == NULL || filter == NULL || filter->words == NULL ||
        output == NULL || buffer == NULL || !mcuqp_fc_valid_args(params, quant, batches, in_ch, out_ch) ||
        params->filter_offset != 0 || params->input_offset != 0 || filter->bits != 1 ||
        mcuqp_fully_connected_xnor_s8_get_buffer_size(in_ch) < 0) {
        return MCUQP_ERR_ARG;
    }
    uint32_t *xb = (uint32_t *)buffer;
    int32_t b;
    for (b = 1; b < batches; ++b) { /* every row checked before any output is written */
        if (!mcuqp_pk_sign_bits(input + (size_t)b * (size_t)in_ch, in_ch, xb)) {
            return MCUQP_ERR_ARG;
        }
    }
    const int32_t words = (in_ch + 31) / 32;
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
    for (b = 0; b < batches; ++b) {
        if (!mcuqp_pk_sign_bits(input + (size_t)b * (size_t)in_ch, in_ch, xb)) {
            return MCUQP_ERR_ARG; /* only the first row can fail here */
        }
        int8_t *y = output + (size_t)b * (size_t)out_ch;
        const uint32_t *w = filter->words;
        int32_t oc;
        for (oc = 0; oc < out_ch; ++oc) {
            const uint32_t diff = mcuqp_pk_xor_popcount(w, xb, NULL, words, 0);
            uint32_t acc = (uint32_t)in_ch - 2u * diff;
            acc += bias != NULL ? (uint32_t)bias[oc] : 0u;
            y[oc] = mcuqp_pk_store(&o, acc, oc);
            w += words;
        }
    }
    return MCUQP_OK;
}
