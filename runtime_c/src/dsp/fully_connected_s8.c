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
 * Technique: rows of up to FC_ROW_K = 256 inputs are widened once, on the stack (512
 * bytes), to int16 (input + input_offset) pairs {x0, x2} {x1, x3} by SXTAB16 / SXTAB16
 * ROR #8; then two output channels at a time load one filter word each, split it by
 * SXTB16 / SXTB16 ROR #8 and do two SMLADs per channel against one LDRD of inputs: 8 MACs
 * for 2 filter loads, 1 LDRD, 4 SXTB16 and 4 SMLAD, two groups per loop iteration. Longer
 * rows widen the inputs on the fly. A filter offset adds filter_offset * sum(input +
 * input_offset), computed once per row. The main loops are inline assembly on the
 * target (8 inputs x 2 rows per pass: 1.5 instructions per MAC on widened rows, 1.75 on
 * the fly; GCC spills registers there), the C beside them on the host. Requantization
 * uses the exact high-word SMLAL form of mcuqp_intrinsics.h; a multiplier of INT32_MIN
 * (outside the QuantizeMultiplier range, but accepted) sends the call to a plain loop with
 * mcuqp_requantize().
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

#define FC_ROW_K 256 /* inputs widened once per row on the stack: 512 bytes */

/* x[0 .. n) + offset as int16, {x0, x2} {x1, x3} per group of four, the last group padded
 * with zeros: ceil(n / 4) groups. */
static void widen_row(uint32_t *xw, const int8_t *x, int32_t n, uint32_t off2, int32_t offset)
{
    int32_t g;
    for (g = 0; g < n >> 2; ++g) {
        const uint32_t v = mcuqp_read_s8x4(x + 4 * g);
        xw[2 * g] = mcuqp_sxtab16(off2, v);
        xw[2 * g + 1] = mcuqp_sxtab16_ror8(off2, v);
    }
    if ((n & 3) != 0) {
        int32_t lane[4] = {0, 0, 0, 0};
        int32_t i;
        for (i = 0; i < (n & 3); ++i) {
            lane[i] = x[4 * g + i] + offset;
        }
        xw[2 * g] = mcuqp_pack_s16(lane[0], lane[2]);
        xw[2 * g + 1] = mcuqp_pack_s16(lane[1], lane[3]);
    }
}

/* One group of four widened inputs (at byte offset goff of xw) against filter words va, vb. */
#define FC_GROUP(xw, goff, va, vb)                                                                               \
    do {                                                                                                         \
        uint32_t xl_;                                                                                            \
        uint32_t xh_;                                                                                            \
        MCUQP_LDRD(xw, (goff), xl_, xh_);                                                                        \
        a0 = mcuqp_smlad(xl_, mcuqp_sxtb16(va), a0);                                                             \
        a0 = mcuqp_smlad(xh_, mcuqp_sxtb16_ror8(va), a0);                                                        \
        a1 = mcuqp_smlad(xl_, mcuqp_sxtb16(vb), a1);                                                             \
        a1 = mcuqp_smlad(xh_, mcuqp_sxtb16_ror8(vb), a1);                                                        \
    } while (0)

/* acc[r] += widened row . w_r over n inputs for the rows wa, wb; whole_tail: the last
 * partial group's filter words may be read whole (they stay inside the filter; their
 * extra lanes meet zero inputs). */
MCUQP_INLINE void dot_wide_1x2(const uint32_t *xw, const int8_t *wa, const int8_t *wb, int32_t n, int whole_tail,
                               int32_t acc[2])
{
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    const uint32_t *end = xw + 4 * (n >> 3);
#if MCUQP_ACLE_DSP
    if (xw != end) {
        /* 8 inputs x 2 rows per pass in 24 instructions (1.5 per MAC): GCC spills here */
        uint32_t xl;
        uint32_t xh;
        uint32_t w;
        uint32_t t;
        __asm__ volatile(
            "1:\n\t"
            "ldrd   %[xl], %[xh], [%[xp]], #8\n\t"
            "ldr    %[w], [%[pa]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a0], %[xl], %[t], %[a0]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a0], %[xh], %[w], %[a0]\n\t"
            "ldr    %[w], [%[pb]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a1], %[xl], %[t], %[a1]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a1], %[xh], %[w], %[a1]\n\t"
            "ldrd   %[xl], %[xh], [%[xp]], #8\n\t"
            "ldr    %[w], [%[pa]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a0], %[xl], %[t], %[a0]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a0], %[xh], %[w], %[a0]\n\t"
            "ldr    %[w], [%[pb]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a1], %[xl], %[t], %[a1]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a1], %[xh], %[w], %[a1]\n\t"
            "cmp    %[xp], %[end]\n\t"
            "bne    1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [xp] "+r"(xw), [pa] "+r"(wa), [pb] "+r"(wb), [xl] "=&r"(xl),
              [xh] "=&r"(xh), [w] "=&r"(w), [t] "=&r"(t)
            : [end] "r"(end)
            : "cc", "memory");
    }
#else
    while (xw != end) {
        uint32_t va = mcuqp_read_s8x4(wa);
        uint32_t vb = mcuqp_read_s8x4(wb);
        FC_GROUP(xw, 0, va, vb);
        va = mcuqp_read_s8x4(wa + 4);
        vb = mcuqp_read_s8x4(wb + 4);
        FC_GROUP(xw, 8, va, vb);
        wa += 8;
        wb += 8;
        xw += 4;
    }
#endif
    if ((n & 4) != 0) {
        const uint32_t va = mcuqp_read_s8x4(wa);
        const uint32_t vb = mcuqp_read_s8x4(wb);
        FC_GROUP(xw, 0, va, vb);
        wa += 4;
        wb += 4;
        xw += 2;
    }
    if ((n & 3) != 0) {
        const uint32_t va = whole_tail ? mcuqp_read_s8x4(wa) : mcuqp_read_partial_s8(wa, n & 3);
        const uint32_t vb = whole_tail ? mcuqp_read_s8x4(wb) : mcuqp_read_partial_s8(wb, n & 3);
        FC_GROUP(xw, 0, va, vb);
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* acc[r] = sum over i < n of (x[i] + offset) * w_r[i] for the two rows wa, wb, the
 * inputs split and offset by SXTAB16 on the fly (rows longer than FC_ROW_K). */
MCUQP_INLINE void dot_1x2(const int8_t *x, const int8_t *wa, const int8_t *wb, int32_t n, int32_t offset,
                          int32_t acc[2])
{
    const uint32_t off2 = mcuqp_dup_s16(offset);
    int32_t a0 = acc[0];
    int32_t a1 = acc[1];
    int32_t i = n >> 2;
#if MCUQP_ACLE_DSP
    if (i >= 2) {
        /* 8 inputs x 2 rows per pass in 28 instructions: the inputs split and offset by
         * SXTAB16 once for both rows */
        const int8_t *const end = x + 8 * (n >> 3);
        uint32_t xl;
        uint32_t xh;
        uint32_t w;
        uint32_t t;
        __asm__ volatile(
            "1:\n\t"
            "ldr    %[xh], [%[xp]], #4\n\t"
            "sxtab16 %[xl], %[off], %[xh]\n\t"
            "sxtab16 %[xh], %[off], %[xh], ror #8\n\t"
            "ldr    %[w], [%[pa]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a0], %[xl], %[t], %[a0]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a0], %[xh], %[w], %[a0]\n\t"
            "ldr    %[w], [%[pb]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a1], %[xl], %[t], %[a1]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a1], %[xh], %[w], %[a1]\n\t"
            "ldr    %[xh], [%[xp]], #4\n\t"
            "sxtab16 %[xl], %[off], %[xh]\n\t"
            "sxtab16 %[xh], %[off], %[xh], ror #8\n\t"
            "ldr    %[w], [%[pa]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a0], %[xl], %[t], %[a0]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a0], %[xh], %[w], %[a0]\n\t"
            "ldr    %[w], [%[pb]], #4\n\t"
            "sxtb16 %[t], %[w]\n\t"
            "smlad  %[a1], %[xl], %[t], %[a1]\n\t"
            "sxtb16 %[w], %[w], ror #8\n\t"
            "smlad  %[a1], %[xh], %[w], %[a1]\n\t"
            "cmp    %[xp], %[end]\n\t"
            "bne    1b\n\t"
            : [a0] "+r"(a0), [a1] "+r"(a1), [xp] "+r"(x), [pa] "+r"(wa), [pb] "+r"(wb), [xl] "=&r"(xl),
              [xh] "=&r"(xh), [w] "=&r"(w), [t] "=&r"(t)
            : [end] "r"(end), [off] "r"(off2)
            : "cc", "memory");
        i = (n >> 2) & 1;
    }
#endif
    for (; i > 0; --i) {
        const uint32_t xv = mcuqp_read_s8x4(x);
        const uint32_t xl = mcuqp_sxtab16(off2, xv);
        const uint32_t xh = mcuqp_sxtab16_ror8(off2, xv);
        const uint32_t va = mcuqp_read_s8x4(wa);
        const uint32_t vb = mcuqp_read_s8x4(wb);
        x += 4;
        wa += 4;
        wb += 4;
        a0 = mcuqp_smlad(xl, mcuqp_sxtb16(va), a0);
        a0 = mcuqp_smlad(xh, mcuqp_sxtb16_ror8(va), a0);
        a1 = mcuqp_smlad(xl, mcuqp_sxtb16(vb), a1);
        a1 = mcuqp_smlad(xh, mcuqp_sxtb16_ror8(vb), a1);
    }
    for (i = n & 3; i > 0; --i) {
        const int32_t v = *x++ + offset;
        a0 = (int32_t)((uint32_t)a0 + (uint32_t)(v * *wa++));
        a1 = (int32_t)((uint32_t)a1 + (uint32_t)(v * *wb++));
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* What the output channels of a row share. */
typedef struct {
    const int32_t *bias;
    const int32_t *mult;
    const int32_t *shift;
    int32_t per_channel;
    uint32_t base; /* filter_offset * sum(x + input_offset) */
    int32_t out_offset;
    int32_t lo;
    int32_t hi;
    int full;
    int quick;
} fc_out;

MCUQP_INLINE int8_t fc_store(int32_t acc, int32_t oc, const fc_out *o)
{
    const int32_t q = o->per_channel ? oc : 0;
    const mcuqp_rq rq = mcuqp_rq_prepare(o->mult[q], o->shift[q]);
    const int32_t a = (int32_t)((uint32_t)acc + o->base + (o->bias != NULL ? (uint32_t)o->bias[oc] : 0u));
    if (o->quick) {
        return (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast(a, &rq), o->out_offset);
    }
    return mcuqp_rq_output(a, &rq, o->full, o->lo, o->hi, o->out_offset);
}

/* One output of the quick form (every requantization in the high-word form, full clamp). */
MCUQP_INLINE int8_t fc_store_quick(uint32_t acc, const mcuqp_rq *rq, int32_t out_offset)
{
    return (int8_t)mcuqp_out_full(mcuqp_rq_apply_fast((int32_t)acc, rq), out_offset);
}

/* Every output of one input row, quick output stage; `wide` and `per_channel` are
 * constants at each call site, so each loop is compiled without the tests (and a
 * per-tensor requantization is prepared once). */
MCUQP_INLINE void fc_row_quick(const int8_t *x, const uint32_t *xw, int wide, int per_channel, int32_t in_ch,
                               int32_t in_offset, const int8_t *filter, int32_t out_ch, const fc_out *o, int8_t *y)
{
    /* locals instead of the struct: the per-output cost is most of a short row's */
    const int32_t *bias = o->bias;
    const int32_t *mult = o->mult;
    const int32_t *shift = o->shift;
    const mcuqp_rq fixed = mcuqp_rq_prepare(mult[0], shift[0]);
    const uint32_t base = o->base;
    const int32_t out_offset = o->out_offset;
    const size_t row = (size_t)in_ch;
    /* Whole tail words read up to 3 bytes past row oc + 1: fine while a later row holds them. */
    const int32_t last_whole = out_ch - 1 - (3 + in_ch - 1) / in_ch;
    const int8_t *wa = filter;
    int32_t oc;
    for (oc = 0; oc + 1 < out_ch; oc += 2) {
        int32_t acc[2] = {0, 0};
        if (wide) {
            dot_wide_1x2(xw, wa, wa + row, in_ch, oc + 1 <= last_whole, acc);
        } else {
            dot_1x2(x, wa, wa + row, in_ch, in_offset, acc);
        }
        wa += 2 * row;
        uint32_t b0 = base;
        uint32_t b1 = base;
        if (bias != NULL) {
            b0 += (uint32_t)bias[oc];
            b1 += (uint32_t)bias[oc + 1];
        }
        if (per_channel) {
            const mcuqp_rq r0 = mcuqp_rq_prepare(mult[oc], shift[oc]);
            const mcuqp_rq r1 = mcuqp_rq_prepare(mult[oc + 1], shift[oc + 1]);
            y[oc] = fc_store_quick((uint32_t)acc[0] + b0, &r0, out_offset);
            y[oc + 1] = fc_store_quick((uint32_t)acc[1] + b1, &r1, out_offset);
        } else {
            y[oc] = fc_store_quick((uint32_t)acc[0] + b0, &fixed, out_offset);
            y[oc + 1] = fc_store_quick((uint32_t)acc[1] + b1, &fixed, out_offset);
        }
    }
    if (oc < out_ch) {
        /* an odd last channel: computed twice, stored once */
        int32_t acc[2] = {0, 0};
        if (wide) {
            dot_wide_1x2(xw, wa, wa, in_ch, 0, acc);
        } else {
            dot_1x2(x, wa, wa, in_ch, in_offset, acc);
        }
        const uint32_t b0 = base + (bias != NULL ? (uint32_t)bias[oc] : 0u);
        const mcuqp_rq r0 = per_channel ? mcuqp_rq_prepare(mult[oc], shift[oc]) : fixed;
        y[oc] = fc_store_quick((uint32_t)acc[0] + b0, &r0, out_offset);
    }
}

/* One input row x against every filter row: y[oc] for oc < out_ch. */
MCUQP_NOINLINE static void fc_row(const int8_t *x, int32_t in_ch, int32_t in_offset, const int8_t *filter,
                                  int32_t out_ch, const fc_out *o, int8_t *y)
{
    uint32_t xw[FC_ROW_K / 2];
    const int wide = in_ch <= FC_ROW_K;
    const size_t row = (size_t)in_ch;
    int32_t oc;
    if (wide) {
        widen_row(xw, x, in_ch, mcuqp_dup_s16(in_offset), in_offset);
    }
    if (o->quick) {
        if (wide && o->per_channel) {
            fc_row_quick(x, xw, 1, 1, in_ch, in_offset, filter, out_ch, o, y);
        } else if (wide) {
            fc_row_quick(x, xw, 1, 0, in_ch, in_offset, filter, out_ch, o, y);
        } else if (o->per_channel) {
            fc_row_quick(x, xw, 0, 1, in_ch, in_offset, filter, out_ch, o, y);
        } else {
            fc_row_quick(x, xw, 0, 0, in_ch, in_offset, filter, out_ch, o, y);
        }
        return;
    }
    for (oc = 0; oc < out_ch; oc += 2) {
        /* Channels oc and ocb; an odd last channel is computed twice, stored once. */
        const int32_t ocb = oc + 1 < out_ch ? oc + 1 : oc;
        const int8_t *wa = filter + (size_t)oc * row;
        const int8_t *wb = filter + (size_t)ocb * row;
        int32_t acc[2] = {0, 0};
        if (wide) {
            /* Whole tail words read up to 3 bytes past row ocb: only when later rows hold them. */
            dot_wide_1x2(xw, wa, wb, in_ch, (out_ch - 1 - ocb) * in_ch >= 3, acc);
        } else {
            dot_1x2(x, wa, wb, in_ch, in_offset, acc);
        }
        y[ocb] = fc_store(acc[1], ocb, o);
        y[oc] = fc_store(acc[0], oc, o);
    }
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
        !mcuqp_fc_valid_args(params, quant, batches, in_ch, out_ch)) {
        return MCUQP_ERR_ARG;
    }
    if (!mcuqp_requant_nomin(quant)) {
        fc_plain(params, quant, batches, in_ch, input, out_ch, filter, bias, output);
        return MCUQP_OK;
    }

    const int32_t in_offset = params->input_offset;
    fc_out o;
    o.bias = bias;
    o.mult = quant->multiplier;
    o.shift = quant->shift;
    o.per_channel = quant->count != 1;
    o.out_offset = params->output_offset;
    o.lo = params->act_min - params->output_offset;
    o.hi = params->act_max - params->output_offset;
    o.full = params->act_min == -128 && params->act_max == 127;
    o.quick = o.full;
    int32_t i;
    if ((quant->flags & MCUQP_RQ_HIGHWORD) == 0) {
        for (i = 0; i < quant->count; ++i) {
            const mcuqp_rq rq = mcuqp_rq_prepare(quant->multiplier[i], quant->shift[i]);
            o.quick = o.quick && mcuqp_rq_fast(&rq);
        }
    }
    int32_t b;
    for (b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * (size_t)in_ch;
        o.base = 0u;
        if (params->filter_offset != 0) {
            uint32_t x_sum = 0u;
            for (i = 0; i < in_ch; ++i) {
                x_sum += (uint32_t)(x[i] + in_offset);
            }
            o.base = (uint32_t)params->filter_offset * x_sum;
        }
        fc_row(x, in_ch, in_offset, filter, out_ch, &o, output + (size_t)b * (size_t)out_ch);
    }
    return MCUQP_OK;
}

/* The widened input row: 512 bytes (on this kernel's stack today). */
int32_t mcuqp_fully_connected_s8_get_buffer_size(int32_t in_ch)
{
    if (in_ch < 1) {
        return MCUQP_ERR_ARG;
    }
    return (int32_t)(sizeof(uint32_t) * (FC_ROW_K / 2));
}
