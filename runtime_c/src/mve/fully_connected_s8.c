/*
 * Fully connected, int8 -> int8, Helium (MVE) variant for the Cortex-M55 (same contract and
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
 *   acc = sum over i of (filter[oc][i] + filter_offset) * (input[b][i] + input_offset)
 *         + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * The int32 accumulator wraps in two's complement; every sum is taken modulo 2^32.
 *
 * Technique: four output channels share each 16-byte input load. The input offset needs no
 * widening: filter . (x + o) = filter . x + filter . {o, o, ...}, two VMLADAVA into the same
 * accumulator, with the offset vector o an int8 when input_offset <= 127; for an offset of
 * 128 (input zero point -128) the sum is -(filter . ~x + filter . {-127, ...}), since
 * x + 128 = -(~x - 127). The filter offset adds filter_offset * (sum(x) + in_ch *
 * input_offset), once per batch row. Per 64 MACs: five loads, one EOR, eight VMLADAVA.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_mve.h"
#include "mcuqp_nn.h"

/* {(x ^ flip + ov) . w_j} for four rows, len bytes (modulo 2^32). */
MCUQP_INLINE int32x4_t fc_dot4(const int8_t *x, const int8_t *w0, const int8_t *w1, const int8_t *w2,
                               const int8_t *w3, int32_t len, int8x16_t flip, int8x16_t ov)
{
    int32_t a0 = 0;
    int32_t a1 = 0;
    int32_t a2 = 0;
    int32_t a3 = 0;
    const int32_t blocks = len >> 4;
    __asm__ volatile("   wls lr, %[cnt], 2f\n"
                     "1: vldrb.u8 q0, [%[px]], #16\n"
                     "   veor q0, q0, %q[fl]\n"
                     "   vldrb.u8 q1, [%[q0]], #16\n"
                     "   vmlava.s8 %[b0], q0, q1\n"
                     "   vmlava.s8 %[b0], %q[o], q1\n"
                     "   vldrb.u8 q1, [%[q1]], #16\n"
                     "   vmlava.s8 %[b1], q0, q1\n"
                     "   vmlava.s8 %[b1], %q[o], q1\n"
                     "   vldrb.u8 q1, [%[q2]], #16\n"
                     "   vmlava.s8 %[b2], q0, q1\n"
                     "   vmlava.s8 %[b2], %q[o], q1\n"
                     "   vldrb.u8 q1, [%[q3]], #16\n"
                     "   vmlava.s8 %[b3], q0, q1\n"
                     "   vmlava.s8 %[b3], %q[o], q1\n"
                     "   le lr, 1b\n"
                     "2:\n"
                     : [b0] "+Te"(a0), [b1] "+Te"(a1), [b2] "+Te"(a2), [b3] "+Te"(a3), [px] "+r"(x), [q0] "+r"(w0),
                       [q1] "+r"(w1), [q2] "+r"(w2), [q3] "+r"(w3)
                     : [cnt] "r"(blocks), [fl] "w"(flip), [o] "w"(ov)
                     : "q0", "q1", "lr", "memory");
    if ((len & 15) != 0) {
        const mve_pred16_t p = vctp8q((uint32_t)(len & 15));
        const int8x16_t v = veorq_s8(vldrbq_z_s8(x, p), flip);
        const int8x16_t u0 = vldrbq_z_s8(w0, p);
        const int8x16_t u1 = vldrbq_z_s8(w1, p);
        const int8x16_t u2 = vldrbq_z_s8(w2, p);
        const int8x16_t u3 = vldrbq_z_s8(w3, p);
        a0 = vmladavaq_p_s8(a0, v, u0, p);
        a1 = vmladavaq_p_s8(a1, v, u1, p);
        a2 = vmladavaq_p_s8(a2, v, u2, p);
        a3 = vmladavaq_p_s8(a3, v, u3, p);
        a0 = vmladavaq_p_s8(a0, ov, u0, p);
        a1 = vmladavaq_p_s8(a1, ov, u1, p);
        a2 = vmladavaq_p_s8(a2, ov, u2, p);
        a3 = vmladavaq_p_s8(a3, ov, u3, p);
    }
    int32x4_t acc = vdupq_n_s32(a0);
    acc = vsetq_lane_s32(a1, acc, 1);
    acc = vsetq_lane_s32(a2, acc, 2);
    return vsetq_lane_s32(a3, acc, 3);
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
    const int32_t io = params->input_offset;
    const int32_t fo = params->filter_offset;
    const int negate = io == 128;
    const int8x16_t flip = vdupq_n_s8((int8_t)(negate ? -1 : 0));
    const int8x16_t ov = vdupq_n_s8((int8_t)(negate ? -127 : io));
    const mcuqp_mve_out o = mcuqp_mve_out_init(quant, params->act_min, params->act_max, params->output_offset);
    int32_t b;
    for (b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * (size_t)in_ch;
        int8_t *out = output + (size_t)b * (size_t)out_ch;
        /* filter_offset * sum(x + input_offset) */
        const uint32_t xterm =
            fo == 0 ? 0u : (uint32_t)fo * ((uint32_t)mcuqp_mve_sum(x, in_ch) + (uint32_t)in_ch * (uint32_t)io);
        const int32x4_t base = vdupq_n_s32((int32_t)xterm);
        int32_t c;
        for (c = 0; c < out_ch; c += 4) {
            const int32_t n = mcuqp_min_i32(4, out_ch - c);
            const mve_pred16_t p = vctp32q((uint32_t)n);
            const int8_t *w0 = filter + (size_t)c * (size_t)in_ch;
            const int8_t *w1 = n > 1 ? w0 + in_ch : w0;
            const int8_t *w2 = n > 2 ? w1 + in_ch : w0;
            const int8_t *w3 = n > 3 ? w2 + in_ch : w0;
            int32x4_t acc = fc_dot4(x, w0, w1, w2, w3, in_ch, flip, ov);
            if (negate) {
                acc = vnegq_s32(acc);
            }
            acc = vaddq_s32(acc, base);
            if (bias != NULL) {
                acc = vaddq_s32(acc, vldrwq_z_s32(bias + c, p));
            }
            if (o.vec) {
                const mcuqp_mve_rq rq = mcuqp_mve_rq_load(quant, c, n);
                vstrbq_p_s32(out + c, mcuqp_mve_output(acc, &rq, &o), p);
            } else {
                int32_t a[4];
                int32_t j;
                vst1q_s32(a, acc);
                for (j = 0; j < n; ++j) {
                    out[c + j] = mcuqp_mve_output_scalar(a[j], &o, c + j);
                }
            }
        }
    }
    return MCUQP_OK;
}
