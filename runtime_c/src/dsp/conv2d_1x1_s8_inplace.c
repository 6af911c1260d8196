/*
 * Pointwise (1x1) 2-D convolution computed in place, Cortex-M DSP-extension variant (same
 * contract, argument checks and results as runtime_c/src/conv2d_1x1_s8_inplace.c).
 *
 * data    (n, h, w, in_c) int8 on entry; (n, h, w, out_c) int8 on return, in its first
 *         n * h * w * out_c bytes (the bytes after them are left unspecified)
 * filter  OHWI (out_c, 1, 1, in_c) int8               out_c <= in_c
 * bias    (out_c,) int32, or NULL for none
 * dims    input_dims (n, h, w, in_c), every one >= 1; filter_dims (out_c, 1, 1, in_c);
 *         output_dims (n, h, w, out_c)
 * params  stride_h/w == 1, dilation_h/w == 1, pad_h == pad_w == 0; offsets and clamp as
 *         mcuqp_conv2d_s8; depth_multiplier is ignored
 * quant   count 1 (per-tensor) or out_c (per-channel); shifts in [-31, 30]
 * buffer  scratch of mcuqp_conv2d_1x1_s8_inplace_buffer_size(input_dims) = in_c bytes,
 *         not overlapping data
 * Every dimension must be below 2^15.
 *
 *   acc = sum over ic of filter[oc][ic] * (input[p][ic] + input_offset) + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * The int32 accumulator wraps in two's complement.
 *
 * Why it is exact: pixels in increasing order, four at a time; the outputs of pixels p .. p+3
 * go to [p*out_c, (p+4)*out_c), which with out_c <= in_c reaches no input byte of a later
 * pixel, and the four pixels' inputs are widened to a stack copy before any of their outputs
 * is written.
 *
 * Technique: the inputs + input_offset of four pixels are widened once to int16 pairs
 * {x0, x2} {x1, x3} by SXTAB16 (the offset added for free); then each output channel loads
 * one filter word per four inputs, splits it with SXTB16 / SXTB16 ROR #8 and does two SMLADs
 * per pixel against one LDRD of that pixel's inputs: 16 MACs for 1 filter load, 2 SXTB16,
 * 4 LDRD and 8 SMLAD. The requantization of up to PWD_RQ channels is prepared once per call
 * (mcuqp_rq, high-word SMLAL form). Rows longer than PWD_ROW inputs, and a multiplier of
 * INT32_MIN, take a plain path through `buffer` with mcuqp_requantize().
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_intrinsics.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_nn.h"

#define PWD_ROW 256 /* inputs per pixel widened on the stack (four pixels: 2 KiB) */
#define PWD_RQ 128  /* output channels whose requantization is prepared once (2 KiB) */

int32_t mcuqp_conv2d_1x1_s8_inplace_buffer_size(const mcuqp_dims *input_dims)
{
    if (input_dims == NULL || !mcuqp_conv_valid_dim(input_dims->n) || !mcuqp_conv_valid_dim(input_dims->h) ||
        !mcuqp_conv_valid_dim(input_dims->w) || !mcuqp_conv_valid_dim(input_dims->c)) {
        return MCUQP_ERR_ARG;
    }
    return input_dims->c;
}

static int pwd_valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q, const mcuqp_dims *in,
                          const mcuqp_dims *f, const mcuqp_dims *out)
{
    return p->stride_h == 1 && p->stride_w == 1 && p->dilation_h == 1 && p->dilation_w == 1 && p->pad_h == 0 &&
           p->pad_w == 0 && p->input_offset >= -127 && p->input_offset <= 128 && p->output_offset >= -128 &&
           p->output_offset <= 127 && p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127 &&
           mcuqp_conv2d_1x1_s8_inplace_buffer_size(in) >= 0 && mcuqp_conv_valid_dim(f->n) && f->h == 1 &&
           f->w == 1 && f->c == in->c && f->n <= in->c && out->n == in->n && out->h == in->h && out->w == in->w &&
           out->c == f->n && mcuqp_valid_requant(q, f->n);
}

/* x[0 .. n) + offset as int16 pairs {x0, x2} {x1, x3} per group of four, the last group
 * padded with zeros. */
static void widen(uint32_t *xw, const int8_t *x, int32_t n, uint32_t off2, int32_t offset)
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

/* Up to 3 filter bytes, zero-extended into a word. */
static inline uint32_t read_tail(const int8_t *p, int32_t n)
{
    uint32_t v = 0u;
    int32_t i;
    for (i = 0; i < n; ++i) {
        v |= ((uint32_t)(uint8_t)p[i]) << (8 * i);
    }
    return v;
}

typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const mcuqp_requant *quant;
    const mcuqp_rq *rq; /* prepared requantization of channels [0, min(out_c, PWD_RQ)) */
    int32_t in_c;
    int32_t out_c;
    int32_t out_offset;
    int32_t lo;
    int32_t hi;
    int full;
} pwd_ctx;

MCUQP_INLINE int8_t pwd_out(const pwd_ctx *c, int32_t oc, int32_t acc)
{
    if (oc < PWD_RQ) {
        return mcuqp_rq_output(acc, &c->rq[oc], c->full, c->lo, c->hi, c->out_offset);
    }
    const int32_t q = c->quant->count == 1 ? 0 : oc;
    const mcuqp_rq rq = mcuqp_rq_prepare(c->quant->multiplier[q], c->quant->shift[q]);
    return mcuqp_rq_output(acc, &rq, c->full, c->lo, c->hi, c->out_offset);
}

#define PWD_COL (PWD_ROW / 2) /* words between the widened pixels */

/* acc_j += widened pixel j . filter word v, for the group of four inputs at word offset i. */
#define PWD_MAC4(x, i, v)                                                                                          \
    do {                                                                                                           \
        const uint32_t wl_ = mcuqp_sxtb16(v);                                                                      \
        const uint32_t wh_ = mcuqp_sxtb16_ror8(v);                                                                 \
        a0 = mcuqp_smlad((x)[(i)], wl_, a0);                                                                       \
        a0 = mcuqp_smlad((x)[(i) + 1], wh_, a0);                                                                   \
        a1 = mcuqp_smlad((x)[PWD_COL + (i)], wl_, a1);                                                             \
        a1 = mcuqp_smlad((x)[PWD_COL + (i) + 1], wh_, a1);                                                         \
        a2 = mcuqp_smlad((x)[2 * PWD_COL + (i)], wl_, a2);                                                         \
        a2 = mcuqp_smlad((x)[2 * PWD_COL + (i) + 1], wh_, a2);                                                     \
        a3 = mcuqp_smlad((x)[3 * PWD_COL + (i)], wl_, a3);                                                         \
        a3 = mcuqp_smlad((x)[3 * PWD_COL + (i) + 1], wh_, a3);                                                     \
    } while (0)

/* Every output channel of four pixels whose widened inputs are xw + j * PWD_COL words; pixel
 * j's outputs at out[j]. */
MCUQP_NOINLINE static void pwd_pixels(const pwd_ctx *c, const uint32_t *xw, int8_t *const out[4])
{
    const int32_t in_c = c->in_c;
    const int32_t groups = in_c >> 2;
    const int32_t rest = in_c & 3;
    int8_t *o0 = out[0];
    int8_t *o1 = out[1];
    int8_t *o2 = out[2];
    int8_t *o3 = out[3];
    int32_t oc;
    for (oc = 0; oc < c->out_c; ++oc) {
        const int8_t *w = c->filter + (size_t)oc * (size_t)in_c;
        const int32_t b = c->bias != NULL ? c->bias[oc] : 0;
        int32_t a0 = b;
        int32_t a1 = b;
        int32_t a2 = b;
        int32_t a3 = b;
        const uint32_t *x = xw;
        const uint32_t *end = xw + 2 * groups;
        while (x != end) {
            const uint32_t v = mcuqp_read_s8x4(w);
            PWD_MAC4(x, 0, v);
            x += 2;
            w += 4;
        }
        if (rest != 0) {
            const uint32_t v = read_tail(w, rest);
            PWD_MAC4(x, 0, v);
        }
        o3[oc] = pwd_out(c, oc, a3);
        o2[oc] = pwd_out(c, oc, a2);
        o1[oc] = pwd_out(c, oc, a1);
        o0[oc] = pwd_out(c, oc, a0);
    }
}

/* Any row length and multiplier: pixel by pixel through `buffer`, mcuqp_requantize(). */
MCUQP_NOINLINE static void pwd_plain(const mcuqp_conv_params *p, const mcuqp_requant *quant, int8_t *data,
                                     size_t pixels, int32_t in_c, int32_t out_c, const int8_t *filter,
                                     const int32_t *bias, int8_t *buffer)
{
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    size_t px;
    for (px = 0; px < pixels; ++px) {
        int32_t i;
        for (i = 0; i < in_c; ++i) {
            buffer[i] = data[px * (size_t)in_c + (size_t)i];
        }
        int32_t oc;
        for (oc = 0; oc < out_c; ++oc) {
            const int8_t *w = filter + (size_t)oc * (size_t)in_c;
            uint32_t acc = bias != NULL ? (uint32_t)bias[oc] : 0u;
            for (i = 0; i < in_c; ++i) {
                acc += (uint32_t)(w[i] * (buffer[i] + p->input_offset));
            }
            const int32_t q = quant->count == 1 ? 0 : oc;
            const int32_t r = mcuqp_requantize((int32_t)acc, quant->multiplier[q], quant->shift[q]);
            data[px * (size_t)out_c + (size_t)oc] = (int8_t)(mcuqp_clamp_i32(r, lo, hi) + p->output_offset);
        }
    }
}

mcuqp_status mcuqp_conv2d_1x1_s8_inplace(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                         const mcuqp_dims *input_dims, int8_t *data, const mcuqp_dims *filter_dims,
                                         const int8_t *filter, const int32_t *bias, const mcuqp_dims *output_dims,
                                         int8_t *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || data == NULL || filter_dims == NULL ||
        filter == NULL || output_dims == NULL || buffer == NULL ||
        !pwd_valid_args(params, quant, input_dims, filter_dims, output_dims)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t in_c = input_dims->c;
    const int32_t out_c = filter_dims->n;
    const size_t pixels = (size_t)input_dims->n * (size_t)input_dims->h * (size_t)input_dims->w;
    if (in_c > PWD_ROW || !mcuqp_requant_nomin(quant)) {
        pwd_plain(params, quant, data, pixels, in_c, out_c, filter, bias, buffer);
        return MCUQP_OK;
    }
    uint32_t xw[4 * PWD_COL];
    mcuqp_rq rq[PWD_RQ];
    int32_t oc;
    for (oc = 0; oc < out_c && oc < PWD_RQ; ++oc) {
        const int32_t q = quant->count == 1 ? 0 : oc;
        rq[oc] = mcuqp_rq_prepare(quant->multiplier[q], quant->shift[q]);
    }
    pwd_ctx c;
    c.filter = filter;
    c.bias = bias;
    c.quant = quant;
    c.rq = rq;
    c.in_c = in_c;
    c.out_c = out_c;
    c.out_offset = params->output_offset;
    c.lo = params->act_min - params->output_offset;
    c.hi = params->act_max - params->output_offset;
    c.full = params->act_min == -128 && params->act_max == 127;
    const uint32_t off2 = mcuqp_dup_s16(params->input_offset);
    size_t px;
    for (px = 0; px < pixels; px += 4) {
        /* past the last pixel the last one is computed and stored again (the same values) */
        int8_t *out[4];
        int32_t j;
        for (j = 0; j < 4; ++j) {
            const size_t q = px + (size_t)j < pixels ? px + (size_t)j : pixels - 1u;
            widen(xw + (size_t)j * PWD_COL, data + q * (size_t)in_c, in_c, off2, params->input_offset);
            out[j] = data + q * (size_t)out_c;
        }
        pwd_pixels(&c, xw, out);
    }
    return MCUQP_OK;
}
