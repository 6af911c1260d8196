/*
 * Depthwise 2-D convolution computed in place, Helium (MVE) variant for the Cortex-M55
 * (same contract, argument checks and results as runtime_c/src/depthwise_conv2d_s8_inplace.c).
 *
 * data    (n, h, w, c) int8: the input on entry, the output on return
 * filter  1HWC (1, k_h, k_w, c) int8                 depth_multiplier == 1
 * bias    (c,) int32, or NULL for none
 * dims    input_dims == output_dims (n, h, w, c), every one >= 1; filter_dims (1, k_h, k_w, c)
 * params  depth_multiplier == 1, strides, dilations and padding that keep the output the
 *         input's h and w; offsets and clamp as mcuqp_depthwise_conv2d_s8
 * quant   count 1 (per-tensor) or c (per-channel); shifts in [-31, 30]
 * buffer  scratch of mcuqp_depthwise_conv2d_s8_inplace_buffer_size(input_dims) = h * w bytes,
 *         not overlapping data
 * Every dimension, stride, dilation and padding must be below 2^15.
 *
 *   acc = sum over in-bounds taps of filter[ky][kx][ch] * (input + input_offset) + bias[ch]
 *   y   = clamp(requantize(acc, multiplier[ch], shift[ch]) + output_offset, act_min, act_max)
 *
 * Why it is exact (3x3, stride 1, dilation 1, padding 1: KWS, MobileNet): channels are taken
 * G at a time (G = min(16, h / 2) rounded down to a multiple of 4, so that two rows of w
 * pixels x G channels fit the h * w buffer) and output rows top to bottom. Output row y
 * needs input rows y - 1, y and y + 1; before any output of row y is written, input row y is
 * saved to the buffer, where input row y - 1 still is (saved one row earlier); row y + 1 is
 * still intact in data. The three rows go into the padded tile of mcuqp_mve_dw3.h and the
 * outputs over input row y. Other shapes (and h < 8) take a channel-at-a-time path: the
 * channel's h * w plane is copied to the buffer before any of its outputs is written.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
#include "mcuqp_mve.h"
#include "mcuqp_mve_dw3.h"
#include "mcuqp_nn.h"

int32_t mcuqp_depthwise_conv2d_s8_inplace_buffer_size(const mcuqp_dims *input_dims)
{
    if (input_dims == NULL || !mcuqp_conv_valid_dim(input_dims->n) || !mcuqp_conv_valid_dim(input_dims->h) ||
        !mcuqp_conv_valid_dim(input_dims->w) || !mcuqp_conv_valid_dim(input_dims->c)) {
        return MCUQP_ERR_ARG;
    }
    return input_dims->h * input_dims->w;
}

static int dwi_valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q, const mcuqp_dims *in,
                          const mcuqp_dims *f, const mcuqp_dims *out)
{
    return p->depth_multiplier == 1 && mcuqp_conv_valid_params(p, 1) &&
           mcuqp_depthwise_conv2d_s8_inplace_buffer_size(in) >= 0 && out->n == in->n && out->h == in->h &&
           out->w == in->w && out->c == in->c && f->n == 1 && mcuqp_conv_valid_dim(f->h) &&
           mcuqp_conv_valid_dim(f->w) && f->c == in->c && mcuqp_valid_requant(q, in->c);
}

/* Any shape: channel by channel through the h * w plane in the buffer, one output at a time. */
MCUQP_MVE_NOINLINE static void dwi_plain(const mcuqp_conv_params *p, const mcuqp_requant *quant,
                                         const mcuqp_dims *in, int8_t *data, const mcuqp_dims *f,
                                         const int8_t *filter, const int32_t *bias, int8_t *plane)
{
    const int32_t h = in->h;
    const int32_t w = in->w;
    const int32_t c = in->c;
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    int32_t n;
    for (n = 0; n < in->n; ++n) {
        int8_t *img = data + (size_t)n * (size_t)h * (size_t)w * (size_t)c;
        int32_t ch;
        for (ch = 0; ch < c; ++ch) {
            const int32_t q = quant->count == 1 ? 0 : ch;
            int32_t i;
            for (i = 0; i < h * w; ++i) {
                plane[i] = img[(size_t)i * (size_t)c + (size_t)ch];
            }
            int32_t oy;
            for (oy = 0; oy < h; ++oy) {
                const int32_t y0 = oy * p->stride_h - p->pad_h;
                int32_t ky_lo;
                int32_t ky_hi;
                mcuqp_tap_range(y0, p->dilation_h, f->h, h, &ky_lo, &ky_hi);
                int32_t ox;
                for (ox = 0; ox < w; ++ox) {
                    const int32_t x0 = ox * p->stride_w - p->pad_w;
                    int32_t kx_lo;
                    int32_t kx_hi;
                    mcuqp_tap_range(x0, p->dilation_w, f->w, w, &kx_lo, &kx_hi);
                    uint32_t acc = bias != NULL ? (uint32_t)bias[ch] : 0u;
                    int32_t ky;
                    for (ky = ky_lo; ky < ky_hi; ++ky) {
                        const int8_t *row = plane + (size_t)(y0 + ky * p->dilation_h) * (size_t)w;
                        int32_t kx;
                        for (kx = kx_lo; kx < kx_hi; ++kx) {
                            const int32_t x = row[x0 + kx * p->dilation_w] + p->input_offset;
                            acc += (uint32_t)(x * filter[(size_t)(ky * f->w + kx) * (size_t)c + (size_t)ch]);
                        }
                    }
                    const int32_t r = mcuqp_requantize((int32_t)acc, quant->multiplier[q], quant->shift[q]);
                    img[((size_t)oy * (size_t)w + (size_t)ox) * (size_t)c + (size_t)ch] =
                        (int8_t)(mcuqp_clamp_i32(r, lo, hi) + p->output_offset);
                }
            }
        }
    }
}

/* Channels [b->c0, b->c0 + b->n) of one image, row by row (3x3, stride 1, padding 1). */
MCUQP_MVE_NOINLINE static void dwi_rows(int8_t *img, int32_t h, int32_t w, int32_t c, int32_t g, int8_t z,
                                        const mcuqp_mve_block *b, const mcuqp_mve_out *o, dw3_buf *buf,
                                        int8_t *buffer)
{
    const mve_pred16_t pc = vctp8q((uint32_t)b->n);
    const int8x16_t zv = vdupq_n_s8(z);
    const size_t px = (size_t)c;
    int8_t *above = buffer;                      /* input row y - 1 */
    int8_t *current = buffer + (size_t)w * (size_t)g; /* input row y */
    int32_t y;
    for (y = 0; y < h; ++y) {
        int8_t *row = img + (size_t)y * (size_t)w * px + (size_t)b->c0;
        int32_t x;
        for (x = 0; x < w; ++x) {
            vstrbq_p_s8(current + (size_t)x * (size_t)g, vldrbq_z_s8(row + (size_t)x * px, pc), pc);
        }
        int32_t x0;
        for (x0 = 0; x0 < w; x0 += DW3_TILE) {
            const int32_t tile = mcuqp_min_i32(DW3_TILE, w - x0);
            const int32_t cols = tile + 2;
            if (y > 0) {
                dw3_fill_row(buf->rows[0], above, (size_t)g, x0 - 1, cols, w, zv, pc);
            } else {
                dw3_fill_row(buf->rows[0], above, (size_t)g, x0 - 1, cols, 0, zv, pc);
            }
            dw3_fill_row(buf->rows[1], current, (size_t)g, x0 - 1, cols, w, zv, pc);
            dw3_fill_row(buf->rows[2], row + (size_t)w * px, px, x0 - 1, cols, y + 1 < h ? w : 0, zv, pc);
            dw3_tile(buf, tile, 1, b, o, row + (size_t)x0 * px, px);
        }
        int8_t *t = above;
        above = current;
        current = t;
    }
}

mcuqp_status mcuqp_depthwise_conv2d_s8_inplace(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                               const mcuqp_dims *input_dims, int8_t *data,
                                               const mcuqp_dims *filter_dims, const int8_t *filter,
                                               const int32_t *bias, const mcuqp_dims *output_dims,
                                               int8_t *buffer)
{
    if (params == NULL || quant == NULL || input_dims == NULL || data == NULL || filter_dims == NULL ||
        filter == NULL || output_dims == NULL || buffer == NULL ||
        !dwi_valid_args(params, quant, input_dims, filter_dims, output_dims)) {
        return MCUQP_ERR_ARG;
    }
    const int32_t h = input_dims->h;
    const int32_t w = input_dims->w;
    const int32_t c = input_dims->c;
    const int32_t g = mcuqp_min_i32(DW3_G, (h / 2) & ~3);
    const int rows_3x3 = filter_dims->h == 3 && filter_dims->w == 3 && params->stride_h == 1 &&
                         params->stride_w == 1 && params->dilation_h == 1 && params->dilation_w == 1 &&
                         params->pad_h == 1 && params->pad_w == 1;
    if (!rows_3x3 || g < 4) {
        dwi_plain(params, quant, input_dims, data, filter_dims, filter, bias, buffer);
        return MCUQP_OK;
    }
    const mcuqp_mve_out o = mcuqp_mve_out_init(quant, params->act_min, params->act_max, params->output_offset);
    const int8_t z = (int8_t)(-params->input_offset);
    mcuqp_mve_block blk;
    dw3_buf buf;
    dw3_buf_init(&buf);
    int32_t c0;
    for (c0 = 0; c0 < c; c0 += g) {
        mcuqp_mve_block_quant(&blk, quant, c0, mcuqp_min_i32(g, c - c0));
        dw3_prepare(&buf, &blk, filter, bias, c, params->input_offset);
        int32_t n;
        for (n = 0; n < input_dims->n; ++n) {
            dwi_rows(data + (size_t)n * (size_t)h * (size_t)w * (size_t)c, h, w, c, g, z, &blk, &o, &buf, buffer);
        }
    }
    return MCUQP_OK;
}
