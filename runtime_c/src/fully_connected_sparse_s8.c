/*
 * Fully connected with sparse int8 weights (mcuqp_sparse_rows), int8 -> int8. Same
 * results as mcuqp_fully_connected_s8 on the unpacked weights (filter_offset 0).
 *
 * input   (batches, in_ch) int8                   batches, in_ch, out_ch >= 1
 * filter  out_ch rows of in_ch columns: counts (out_ch * ceil(in_ch / 256) uint16),
 *         index (uint8 column within its 256-column segment) and values (int8), per
 *         nonzero, row by row; a row (an output channel) may be empty
 * bias    (out_ch,) int32, or NULL
 * output  (batches, out_ch) int8
 * buffer  mcuqp_fully_connected_sparse_s8_get_buffer_size(in_ch) bytes: the input row
 *         widened to int16 with the input offset
 * params  as mcuqp_fully_connected_s8, filter_offset == 0
 *
 * acc[oc] = sum over the stored nonzeros of value * (input[col] + input_offset) + bias[oc]:
 * zeros are neither stored nor visited, so the work is about four instructions per
 * nonzero (load the column, the value and the widened input; multiply-accumulate).
 */
#include "mcuqp_packed.h"

/* Every row of a filter whose rows fit one segment (in_ch <= 256), kept out of line so
 * that its loops get the registers to themselves. */
MCUQP_NOINLINE static void rows_one_segment(const int16_t *x, const mcuqp_sparse_rows *filter, int32_t out_ch,
                                            const int32_t *bias, const mcuqp_pk_out *o, int8_t *y)
{
    const uint16_t *counts = filter->counts;
    const uint8_t *index = filter->index;
    const int8_t *values = filter->values;
    int32_t oc;
    for (oc = 0; oc < out_ch; ++oc) {
        const uint32_t acc = mcuqp_pk_sparse_run(bias != NULL ? (uint32_t)bias[oc] : 0u, x, (int32_t)counts[oc],
                                                 &index, &values);
        y[oc] = mcuqp_pk_store(o, acc, oc);
    }
}

int32_t mcuqp_fully_connected_sparse_s8_get_buffer_size(int32_t in_ch)
{
    return in_ch >= 1 ? 2 * in_ch : (int32_t)MCUQP_ERR_ARG;
}

mcuqp_status mcuqp_fully_connected_sparse_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                             int32_t batches, int32_t in_ch, const int8_t *input, int32_t out_ch,
                                             const mcuqp_sparse_rows *filter, const int32_t *bias, int8_t *output,
                                             void *buffer)
{
    if (params == NULL || quant == NULL || input == NULL || filter == NULL || filter->counts == NULL ||
        filter->index == NULL || filter->values == NULL || output == NULL || buffer == NULL ||
        !mcuqp_fc_valid_args(params, quant, batches, in_ch, out_ch) || params->filter_offset != 0) {
        return MCUQP_ERR_ARG;
    }
    int16_t *x = (int16_t *)buffer;
    const mcuqp_pk_layout natural = {0, 1, 0, 0};
    const int32_t segments = (in_ch + MCUQP_SPARSE_SEGMENT - 1) / MCUQP_SPARSE_SEGMENT;
    const mcuqp_pk_out o = mcuqp_pk_out_init(quant, params->act_min, params->act_max,
                                               params->output_offset);
    int32_t b;
    for (b = 0; b < batches; ++b) {
        mcuqp_pk_widen(input + (size_t)b * (size_t)in_ch, in_ch, params->input_offset, x, 0, &natural);
        int8_t *y = output + (size_t)b * (size_t)out_ch;
        if (segments == 1) {
            rows_one_segment(x, filter, out_ch, bias, &o, y);
        } else {
            const uint16_t *counts = filter->counts;
            const uint8_t *index = filter->index;
            const int8_t *values = filter->values;
            int32_t oc;
            for (oc = 0; oc < out_ch; ++oc) {
                uint32_t acc = bias != NULL ? (uint32_t)bias[oc] : 0u;
                int32_t s;
                for (s = 0; s < segments; ++s) {
                    acc = mcuqp_pk_sparse_run(acc, x + (size_t)s * MCUQP_SPARSE_SEGMENT, (int32_t)counts[s], &index,
                                              &values);
                }
                counts += segments;
                y[oc] = mcuqp_pk_store(&o, acc, oc);
            }
        }
    }
    return MCUQP_OK;
}
