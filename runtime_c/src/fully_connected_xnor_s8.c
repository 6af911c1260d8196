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

/* Every output of one input row, out of line so that its loop keeps its registers. Rows
 * of up to 30 words (960 inputs) go by word pairs (nibble counts <= 8, byte counts <= 16
 * per pair) and need one byte fold each. */
MCUQP_NOINLINE static void xnor_rows(const uint32_t *xb, const uint32_t *w, int32_t words, int32_t in_ch,
                                     int32_t out_ch, const int32_t *bias, const mcuqp_pk_out *o, int8_t *y)
{
    const uint32_t m1 = mcuqp_pk_reg(0x55555555u);
    const uint32_t m2 = mcuqp_pk_reg(0x33333333u);
    const uint32_t m4 = mcuqp_pk_reg(0x0F0F0F0Fu);
    const uint32_t *x_pairs = xb + (words & ~1);
    int32_t oc;
    for (oc = 0; oc < out_ch; ++oc) {
        uint32_t diff;
        if (words <= 30) {
            const uint32_t *x = xb;
            uint32_t bytes = 0u;
            while (x != x_pairs) {
                const uint32_t nib = mcuqp_pk_nibbles(w[0] ^ x[0], m1, m2) + mcuqp_pk_nibbles(w[1] ^ x[1], m1, m2);
                bytes += (nib & m4) + (m4 & (nib >> 4));
                w += 2;
                x += 2;
            }
            if ((words & 1) != 0) {
                const uint32_t nib = mcuqp_pk_nibbles(*w++ ^ *x, m1, m2);
                bytes += (nib & m4) + (m4 & (nib >> 4));
            }
            diff = mcuqp_pk_fold_bytes(bytes);
        } else {
            diff = mcuqp_pk_xor_popcount(w, xb, NULL, words, 0);
            w += words;
        }
        const uint32_t acc = (uint32_t)in_ch - 2u * diff + (bias != NULL ? (uint32_t)bias[oc] : 0u);
        y[oc] = mcuqp_pk_store(o, acc, oc);
    }
}

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
        xnor_rows(xb, filter->words, words, in_ch, out_ch, bias, &o, output + (size_t)b * (size_t)out_ch);
    }
    return MCUQP_OK;
}
