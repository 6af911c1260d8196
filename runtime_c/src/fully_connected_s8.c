/*
 * Fully connected, int8 -> int8 (TFLite int8 FullyConnected / FullyConnectedPerChannel
 * semantics).
 *
 * input   (batches, in_ch) int8, row-major             batches, in_ch, out_ch >= 1
 * filter  (out_ch, in_ch) int8, row-major
 * bias    (out_ch,) int32, or NULL for none
 * output  (batches, out_ch) int8
 * params  input_offset = -input zero point in [-127, 128],
 *         filter_offset = -filter zero point in [-127, 128] (0 for symmetric weights),
 *         output_offset = output zero point in [-128, 127],
 *         act_min <= act_max within [-128, 127]
 * quant   count 1 (per-tensor) or out_ch (per-channel); shifts in [-31, 30]
 *
 * For output (b, oc):
 *   acc = sum over i of (filter[oc][i] + filter_offset) * (input[b][i] + input_offset)
 *         + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * The int32 accumulator wraps in two's complement (uint32 arithmetic, defined behaviour);
 * it cannot wrap for in_ch below 16512 and |bias| below 2^30.
 *
 * Speed: four output channels at a time, so each input byte loaded (and offset) feeds
 * four multiply-accumulates. With a filter offset the sum splits
 * into sum(filter * (input + input_offset)) plus filter_offset * sum(input + input_offset),
 * the latter computed once per row. The code generator folds the input offset into the
 * bias where the result stays in int32 (bias + input_offset * filter row sums) and passes
 * input_offset 0, which takes a loop without the per-input add.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

/* sum of (x[i] + offset) * w[i], modulo 2^32 */
static inline uint32_t dot_offset_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t offset)
{
    uint32_t acc = 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        acc += (uint32_t)((x[i] + offset) * w[i]);
    }
    return acc;
}

/* Four rows of w (row_len apart) against x: acc[r] = sum of (x[i] + offset) * w_r[i]. */
static inline void dot4_offset_s8(const int8_t *x, const int8_t *w, size_t row_len, int32_t n, int32_t offset,
                                  uint32_t acc[4])
{
    const int8_t *w0 = w;
    const int8_t *w1 = w + row_len;
    const int8_t *w2 = w + 2 * row_len;
    const int8_t *w3 = w + 3 * row_len;
    uint32_t a0 = 0u;
    uint32_t a1 = 0u;
    uint32_t a2 = 0u;
    uint32_t a3 = 0u;
    if (offset == 0) {
        /* the generated code's case (offset folded into the bias): no add per input */
        /* one input per pass: unrolling makes GCC re-associate the sums into MUL + MLA + ADD */
        const int8_t *const end = x + n;
        while (x != end) {
            const int32_t v = *x++;
            a0 += (uint32_t)(v * *w0++);
            a1 += (uint32_t)(v * *w1++);
            a2 += (uint32_t)(v * *w2++);
            a3 += (uint32_t)(v * *w3++);
        }
    } else {
        int32_t i;
        for (i = 0; i < n; ++i) {
            const int32_t v = x[i] + offset;
            a0 += (uint32_t)(v * w0[i]);
            a1 += (uint32_t)(v * w1[i]);
            a2 += (uint32_t)(v * w2[i]);
            a3 += (uint32_t)(v * w3[i]);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

mcuqp_status mcuqp_fully_connected_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                      int32_t batches, int32_t in_ch, const int8_t *input,
                                      int32_t out_ch, const int8_t *filter, const int32_t *bias,
                                      int8_t *output)
{
    if (params == NULL || quant == NULL || input == NULL || filter == NULL || output == NULL ||
        !mcuqp_fc_valid_args(params, quant, batches, in_ch, out_ch)) {
        return MCUQP_ERR_ARG;
    }

    const int32_t in_offset = params->input_offset;
    const int32_t out_offset = params->output_offset;
    /* clamp(r + out_offset, act_min, act_max) without an int32 overflow in the add */
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const int per_channel = quant->count != 1;
    int32_t b;
    for (b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * (size_t)in_ch;
        int8_t *y = output + (size_t)b * (size_t)out_ch;
        uint32_t filter_offset_term = 0u;
        if (params->filter_offset != 0) {
            uint32_t x_sum = 0u;
            int32_t i;
            for (i = 0; i < in_ch; ++i) {
                x_sum += (uint32_t)(x[i] + in_offset);
            }
            filter_offset_term = (uint32_t)params->filter_offset * x_sum;
        }
        int32_t oc = 0;
        for (; oc + 4 <= out_ch; oc += 4) {
            uint32_t acc[4];
            dot4_offset_s8(x, filter + (size_t)oc * (size_t)in_ch, (size_t)in_ch, in_ch, in_offset, acc);
            int32_t j;
            for (j = 0; j < 4; ++j) {
                const int32_t q = per_channel ? oc + j : 0;
                const uint32_t bias_j = bias != NULL ? (uint32_t)bias[oc + j] : 0u;
                y[oc + j] = mcuqp_requantize_clamp_s8(acc[j] + filter_offset_term + bias_j, quant->multiplier[q], quant->shift[q],
                                      lo, hi, out_offset);
            }
        }
        for (; oc < out_ch; ++oc) {
            const uint32_t acc = dot_offset_s8(x, filter + (size_t)oc * (size_t)in_ch, in_ch, in_offset);
            const int32_t q = per_channel ? oc : 0;
            const uint32_t bias_oc = bias != NULL ? (uint32_t)bias[oc] : 0u;
            y[oc] = mcuqp_requantize_clamp_s8(acc + filter_offset_term + bias_oc, quant->multiplier[q], quant->shift[q], lo, hi,
                              out_offset);
        }
    }
    return MCUQP_OK;
}

/* No scratch: the portable kernel keeps its working values in registers. */
int32_t mcuqp_fully_connected_s8_get_buffer_size(int32_t in_ch)
{
    if (in_ch < 1) {
        return MCUQP_ERR_ARG;
    }
    return 0;
}
