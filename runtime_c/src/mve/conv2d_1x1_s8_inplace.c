/*
 * Pointwise (1x1) 2-D convolution computed in place, Helium (MVE) variant for the Cortex-M55
 * (same contract, argument checks and results as runtime_c/src/conv2d_1x1_s8_inplace.c).
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
 *
 * Why it is exact: pixels in increasing order; pixel p's outputs go to [p*out_c, (p+1)*out_c),
 * which with out_c <= in_c reaches no input byte of a later pixel. Pixel p's input is read
 * from data while (p+1)*out_c <= p*in_c (its outputs cannot reach it), else from a copy in
 * `buffer` made before any of its outputs is written.
 *
 * Technique: as the MVE mcuqp_conv2d_s8 pointwise path (mcuqp_mve.h): bias + input_offset *
 * sum(filter) and the requantization precomputed once per block of MCUQP_MVE_BLOCK output
 * channels, four channels per 16-byte input load with VMLADAVA. With more than
 * MCUQP_MVE_BLOCK output channels the later blocks are prepared again for every pixel.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_mve.h"
#include "mcuqp_nn.h"

int32_t mcuqp_conv2d_1x1_s8_inplace_buffer_size(const mcuqp_dims *input_dims)
{
    if (input_dims == NULL || !mcuqp_conv_valid_dim(input_dims->n) || !mcuqp_conv_valid_dim(input_dims->h) ||
        !mcuqp_conv_valid_dim(input_dims->w) || !mcuqp_conv_valid_dim(input_dims->c)) {
        return MCUQP_ERR_ARG;
    }
    return input_dims->c;
}

static int pwi_valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q, const mcuqp_dims *in,
                          const mcuqp_dims *f, const mcuqp_dims *out)
{
    return p->stride_h == 1 && p->stride_w == 1 && p->dilation_h == 1 && p->dilation_w == 1 && p->pad_h == 0 &&
           p->pad_w == 0 && p->input_offset >= -127 && p->input_offset <= 128 && p->output_offset >= -128 &&
           p->output_offset <= 127 && p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127 &&
           mcuqp_conv2d_1x1_s8_inplace_buffer_size(in) >= 0 && mcuqp_conv_valid_dim(f->n) && f->h == 1 &&
           f->w == 1 && f->c == in->c && f->n <= in->c && out->n == in->n && out->h == in->h && out->w == in->w &&
           out->c == f->n && mcuqp_valid_requant(q, f->n);
}

/* The block's channels of one pixel read at x. */
MCUQP_MVE_NOINLINE static void pwi_pixel(const int8_t *x, const int8_t *w, int32_t k, const mcuqp_mve_block *blk,
                                         const mcuqp_mve_out *o, int8_t *out)
{
    mcuqp_mve_pixel(x, w, k, blk, o, out);
}

MCUQP_INLINE void pwi_block(mcuqp_mve_block *blk, const mcuqp_requant *quant, const int8_t *filter,
                            const int32_t *bias, int32_t in_c, int32_t input_offset, int32_t c0, int32_t out_c)
{
    mcuqp_mve_block_quant(blk, quant, c0, mcuqp_min_i32(MCUQP_MVE_BLOCK, out_c - c0));
    mcuqp_mve_block_row_sums(blk, filter, (size_t)in_c, bias, input_offset);
}

mcuqp_status mcuqp_conv2d_1x1_s8_inplace(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                         const mcuqp_dims *input_dims, int8_t *data, const mcuqp_dims *filter_dims,
                                         const int8_t *filter, const int32_t *bias, const mcuqp_dims *output_dims,
                                         int8_t *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || data == NULL || filter_dims == NULL ||
        filter == NULL || output_dims == NULL || buffer == NULL ||
        !pwi_valid_args(params, quant, input_dims, filter_dims, output_dims)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t in_c = input_dims->c;
    const int32_t out_c = filter_dims->n;
    const size_t pixels = (size_t)input_dims->n * (size_t)input_dims->h * (size_t)input_dims->w;
    const mcuqp_mve_out o = mcuqp_mve_out_init(quant, params->act_min, params->act_max, params->output_offset);
    const int one_block = out_c <= MCUQP_MVE_BLOCK;
    mcuqp_mve_block blk;
    if (one_block) {
        pwi_block(&blk, quant, filter, bias, in_c, params->input_offset, 0, out_c);
    }
    size_t p;
    for (p = 0; p < pixels; ++p) {
        const int8_t *x = data + p * (size_t)in_c;
        if ((p + 1u) * (size_t)out_c > p * (size_t)in_c) {
            mcuqp_mve_copy(buffer, x, in_c);
            x = buffer;
        }
        int8_t *out = data + p * (size_t)out_c;
        if (one_block) {
            pwi_pixel(x, filter, in_c, &blk, &o, out);
            continue;
        }
        int32_t c0;
        for (c0 = 0; c0 < out_c; c0 += MCUQP_MVE_BLOCK) {
            pwi_block(&blk, quant, filter, bias, in_c, params->input_offset, c0, out_c);
            pwi_pixel(x, filter + (size_t)c0 * (size_t)in_c, in_c, &blk, &o, out + c0);
        }
    }
    return MCUQP_OK;
}
