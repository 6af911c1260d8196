/*
 * Fully connected, int8 -> int8, Cortex-M DSP-extension variant (same contract and
 * results as runtime_c/src/fully_connected_s8.c; TFLite int8 FullyConnected /
 * FullyConnectedPerChannel semantics).
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
 * The int32 accumulator wraps in two's complement; every sum here is taken modulo 2^32,
 * so the order of the terms cannot change a result.
 *
 * Technique: four output channels at a time. Each word of four inputs is loaded once
 * and split by SXTAB16 / SXTAB16 ROR #8 into {x0, x2} and {x1, x3} int16 pairs with the
 * input offset added in the same instruction; each filter word is split the same way by
 * SXTB16, and two SMLADs per filter word do its four multiply-accumulates: 23
 * instructions per 16 MACs. A filter offset adds filter_offset * sum(input +
 * input_offset), computed once per row. Requantization uses the exact SMLAL form of
 * mcuqp_intrinsics.h; a multiplier of INT32_MIN (outside the QuantizeMultiplier range,
 * but accepted) sends the call to a plain loop with mcuqp_requantize().
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_nn.h"

/* acc[r] = sum over i < n of (x[i] + offset) * w_r[i] for the four rows w_r = w + r * row. */
MCUQP_INLINE void dot_1x4(const int8_t *x, const int8_t *w, size_t row, int32_t n, int32_t offset, int32_t acc[4])
{
    const int8_t *w0 = w;
    const int8_t *w1 = w + row;
    const int8_t *w2 = w + 2 * row;
    const int8_t *w3 = w + 3 * row;
    const uint32_t off2 = mcuqp_dup_s16(offset);
    int32_t a0 = 0;
    int32_t a1 = 0;
    int32_t a2 = 0;
    int32_t a3 = 0;
    int32_t i;
    for (i = n >> 2; i > 0; --i) {
        const uint32_t xv = mcuqp_read_s8x4(x);
        const uint32_t xl = mcuqp_sxtab16(off2, xv);
        const uint32_t xh = mcuqp_sxtab16_ror8(off2, xv);
        uint32_t wv;
        x += 4;
        wv = mcuqp_read_s8x4(w0);
        w0 += 4;
        a0 = mcuqp_smlad(xl, mcuqp_sxtb16(wv), a0);
        a0 = mcuqp_smlad(xh, mcuqp_sxtb16_ror8(wv), a0);
        wv = mcuqp_read_s8x4(w1);
        w1 += 4;
        a1 = mcuqp_smlad(xl, mcuqp_sxtb16(wv), a1);
        a1 = mcuqp_smlad(xh, mcuqp_sxtb16_ror8(wv), a1);
        wv = mcuqp_read_s8x4(w2);
        w2 += 4;
        a2 = mcuqp_smlad(xl, mcuqp_sxtb16(wv), a2);
        a2 = mcuqp_smlad(xh, mcuqp_sxtb16_ror8(wv), a2);
        wv = mcuqp_read_s8x4(w3);
        w3 += 4;
        a3 = mcuqp_smlad(xl, mcuqp_sxtb16(wv), a3);
        a3 = mcuqp_smlad(xh, mcuqp_sxtb16_ror8(wv), a3);
    }
    for (i = n & 3; i > 0; --i) {
        const int32_t v = *x++ + offset;
        a0 = (int32_t)((uint32_t)a0 + (uint32_t)(v * *w0++));
        a1 = (int32_t)((uint32_t)a1 + (uint32_t)(v * *w1++));
        a2 = (int32_t)((uint32_t)a2 + (uint32_t)(v * *w2++));
        a3 = (int32_t)((uint32_t)a3 + (uint32_t)(v * *w3++));
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* sum over i < n of (x[i] + offset) * w[i], modulo 2^32. */
MCUQP_INLINE int32_t dot_1x1(const int8_t *x, const int8_t *w, int32_t n, int32_t offset)
{
    const uint32_t off2 = mcuqp_dup_s16(offset);
    int32_t acc = 0;
    int32_t i;
    for (i = n >> 2; i > 0; --i) {
        const uint32_t xv = mcuqp_read_s8x4(x);
        const uint32_t wv = mcuqp_read_s8x4(w);
        x += 4;
        w += 4;
        acc = mcuqp_smlad(mcuqp_sxtab16(off2, xv), mcuqp_sxtb16(wv), acc);
        acc = mcuqp_smlad(mcuqp_sxtab16_ror8(off2, xv), mcuqp_sxtb16_ror8(wv), acc);
    }
    for (i = n & 3; i > 0; --i) {
        acc = (int32_t)((uint32_t)acc + (uint32_t)((*x++ + offset) * *w++));
    }
    return acc;
}

static int valid_args(const mcuqp_fc_params *p, const mcuqp_requant *q, int32_t batches, int32_t in_ch,
                      int32_t out_ch)
{
    int32_t i;
    if (batches < 1 || in_ch < 1 || out_ch < 1 || p->input_offset < -127 || p->input_offset > 128 ||
        p->filter_offset < -127 || p->filter_offset > 128 || p->output_offset < -128 || p->output_offset > 127 ||
        p->act_min > p->act_max || p->act_min < -128 || p->act_max > 127) {
        return 0;
    }
    if (q->multiplier == NULL || q->shift == NULL || (q->count != 1 && q->count != out_ch)) {
        return 0;
    }
    for (i = 0; i < q->count; ++i) {
        if (q->shift[i] < -31 || q->shift[i] > 30) {
            return 0;
        }
    }
    return 1;
}

/* The plain path (any multiplier): one output at a time, mcuqp_requantize(). */
MCUQP_NOINLINE static void fc_plain(const mcuqp_fc_params *params, const mcuqp_requant *quant, int32_t batches, int32_t in_ch,
                     const int8_t *input, int32_t out_ch, const int8_t *filter, const int32_t *bias, int8_t *output)
{
    const int32_t lo = params->act_min - params->output_offset;
    const int32_t hi = params->act_max - params->output_offset;
    int32_t b;
    for (b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * (size_t)in_ch;
        int32_t oc;
        for (oc = 0; oc < out_ch; ++oc) {
            const int8_t *w = filter + (size_t)oc * (size_t)in_ch;
            const int32_t q = quant->count == 1 ? 0 : oc;
            uint32_t acc = bias != NULL ? (uint32_t)bias[oc] : 0u;
            int32_t i;
            for (i = 0; i < in_ch; ++i) {
                acc += (uint32_t)((w[i] + params->filter_offset) * (x[i] + params->input_offset));
            }
            const int32_t r = mcuqp_requantize((int32_t)acc, quant->multiplier[q], quant->shift[q]);
            output[(size_t)b * (size_t)out_ch + (size_t)oc] = (int8_t)(mcuqp_clamp_i32(r, lo, hi) + params->output_offset);
        }
    }
}

mcuqp_status mcuqp_fully_connected_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                      int32_t batches, int32_t in_ch, const int8_t *input,
                                      int32_t out_ch, const int8_t *filter, const int32_t *bias,
                                      int8_t *output)
{
    if (params == NULL || quant == NULL || input == NULL || filter == NULL || output == NULL ||
        !valid_args(params, quant, batches, in_ch, out_ch)) {
        return MCUQP_ERR_ARG;
    }
    if (!mcuqp_multipliers_nomin(quant->multiplier, quant->count)) {
        fc_plain(params, quant, batches, in_ch, input, out_ch, filter, bias, output);
        return MCUQP_OK;
    }

    const int32_t in_offset = params->input_offset;
    const int32_t out_offset = params->output_offset;
    const int full = params->act_min == -128 && params->act_max == 127;
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const int32_t *mult = quant->multiplier;
    const int32_t *shift = quant->shift;
    const int per_channel = quant->count != 1;
    int32_t b;
    for (b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * (size_t)in_ch;
        int8_t *y = output + (size_t)b * (size_t)out_ch;
        uint32_t base = 0u; /* filter_offset * sum(x + input_offset) */
        if (params->filter_offset != 0) {
            uint32_t x_sum = 0u;
            int32_t i;
            for (i = 0; i < in_ch; ++i) {
                x_sum += (uint32_t)(x[i] + in_offset);
            }
            base = (uint32_t)params->filter_offset * x_sum;
        }
        int32_t oc = 0;
        for (; oc + 4 <= out_ch; oc += 4) {
            int32_t acc[4];
            int32_t j;
            dot_1x4(x, filter + (size_t)oc * (size_t)in_ch, (size_t)in_ch, in_ch, in_offset, acc);
            for (j = 0; j < 4; ++j) {
                const int32_t q = per_channel ? oc + j : 0;
                const uint32_t bias_j = bias != NULL ? (uint32_t)bias[oc + j] : 0u;
                const mcuqp_rq rq = mcuqp_rq_prepare(mult[q], shift[q]);
                y[oc + j] = mcuqp_rq_output((int32_t)((uint32_t)acc[j] + base + bias_j), &rq, full, lo, hi, out_offset);
            }
        }
        for (; oc < out_ch; ++oc) {
            const int32_t acc = dot_1x1(x, filter + (size_t)oc * (size_t)in_ch, in_ch, in_offset);
            const int32_t q = per_channel ? oc : 0;
            const uint32_t bias_oc = bias != NULL ? (uint32_t)bias[oc] : 0u;
            const mcuqp_rq rq = mcuqp_rq_prepare(mult[q], shift[q]);
            y[oc] = mcuqp_rq_output((int32_t)((uint32_t)acc + base + bias_oc), &rq, full, lo, hi, out_offset);
        }
    }
    return MCUQP_OK;
}
