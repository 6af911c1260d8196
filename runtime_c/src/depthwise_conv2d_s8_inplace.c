/*
 * Depthwise 2-D convolution computed in place, int8 NHWC -> int8 NHWC over the same bytes
 * (TFLite int8 DepthwiseConvPerChannel semantics, the arithmetic of
 * mcuqp_depthwise_conv2d_s8).
 *
 * data    (n, h, w, c) int8: the input on entry, the output on return
 * filter  1HWC (1, k_h, k_w, c) int8                 depth_multiplier == 1
 * bias    (c,) int32, or NULL for none
 * dims    input_dims == output_dims (n, h, w, c), every one >= 1; filter_dims (1, k_h, k_w, c)
 * params  depth_multiplier == 1, stride_h/w >= 1, dilation_h/w >= 1, pad_h/pad_w = top/left
 *         padding >= 0, any combination that keeps the output the input's h and w (stride 1
 *         with "same" padding in practice); offsets and clamp as mcuqp_depthwise_conv2d_s8
 * quant   count 1 (per-tensor) or c (per-channel); shifts in [-31, 30]
 * buffer  scratch of mcuqp_depthwise_conv2d_s8_inplace_buffer_size(input_dims) = h * w bytes,
 *         not overlapping data
 * Every dimension, stride, dilation and padding must be below 2^15.
 *
 * For output (b, oy, ox, ch):
 *   acc = sum over in-bounds taps (ky, kx) of filter[ky][kx][ch] * (input + input_offset)
 *         + bias[ch]
 *   y   = clamp(requantize(acc, multiplier[ch], shift[ch]) + output_offset, act_min, act_max)
 * with taps at input row oy*stride_h - pad_h + ky*dilation_h and column
 * ox*stride_w - pad_w + kx*dilation_w; taps outside the input contribute nothing. The int32
 * accumulator wraps in two's complement (uint32 arithmetic).
 *
 * Why it is exact: output channel ch reads input channel ch only. Each (batch, channel) is
 * copied to `buffer` (h * w values, gathered at a stride of c) before any of its outputs is
 * written; its outputs are then computed from the buffer and stored over the channel. Other
 * channels are not touched, so every channel is read while it still holds the input.
 *
 * Speed: one channel at a time. Windows fully inside the image add input_offset *
 * sum(filter) (precomputed per channel) to a plain dot product over the contiguous buffer,
 * and for 3x3 filters with dilation 1 (KWS, MobileNet) keep the nine weights in registers;
 * border windows add the offset to each input they read. The regular kernel is still
 * faster: the memory planner uses this one only where it lowers the arena.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
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
    if (p->depth_multiplier != 1 || !mcuqp_conv_valid_dim(p->stride_h) || !mcuqp_conv_valid_dim(p->stride_w) ||
        !mcuqp_conv_valid_dim(p->dilation_h) || !mcuqp_conv_valid_dim(p->dilation_w) || p->pad_h < 0 || p->pad_w < 0 ||
        p->pad_h >= MCUQP_CONV_MAX_DIM || p->pad_w >= MCUQP_CONV_MAX_DIM || p->input_offset < -127 || p->input_offset > 128 ||
        p->output_offset < -128 || p->output_offset > 127 || p->act_min > p->act_max || p->act_min < -128 ||
        p->act_max > 127) {
        return 0;
    }
    if (mcuqp_depthwise_conv2d_s8_inplace_buffer_size(in) < 0 || out->n != in->n || out->h != in->h ||
        out->w != in->w || out->c != in->c || f->n != 1 || !mcuqp_conv_valid_dim(f->h) || !mcuqp_conv_valid_dim(f->w) ||
        f->c != in->c) {
        return 0;
    }
    return mcuqp_valid_requant(q, in->c);
}

/* One channel: its input in `src` (h * w, contiguous), its weights at `w` with a stride of
 * w_tap between taps, its outputs to `dst` at a stride of out_px. */
typedef struct {
    const int8_t *src;
    const int8_t *w;
    size_t w_tap;
    int8_t *dst;
    size_t out_px;
    uint32_t full; /* bias + input_offset * sum(weights): windows inside the image */
    uint32_t bias; /* windows crossing the border */
    int32_t mult;
    int32_t shift;
} dwi_channel;

/* Taps [ky_lo, ky_hi) x [kx_lo, kx_hi) of the window at (y0, x0), each input plus `off`. */
static uint32_t dwi_window(const dwi_channel *ch, const mcuqp_conv_params *p, int32_t in_w, int32_t k_w, int32_t y0,
                           int32_t x0, int32_t ky_lo, int32_t ky_hi, int32_t kx_lo, int32_t kx_hi, int32_t off)
{
    uint32_t acc = 0u;
    int32_t ky;
    for (ky = ky_lo; ky < ky_hi; ++ky) {
        /* in-bounds taps only: every index below is >= 0 */
        const int8_t *x = ch->src + (size_t)((y0 + ky * p->dilation_h) * in_w + x0 + kx_lo * p->dilation_w);
        const int8_t *w = ch->w + (size_t)(ky * k_w + kx_lo) * ch->w_tap;
        int32_t kx;
        for (kx = 0; kx < kx_hi - kx_lo; ++kx) {
            acc += (uint32_t)((x[(size_t)(kx * p->dilation_w)] + off) * w[(size_t)kx * ch->w_tap]);
        }
    }
    return acc;
}

/* [*a, *b): the output columns whose window lies inside the image horizontally. */
static void dwi_inner_columns(const mcuqp_conv_params *p, int32_t w, int32_t k_w, int32_t *a, int32_t *b)
{
    const int32_t last = w - 1 - (k_w - 1) * p->dilation_w + p->pad_w; /* largest x0 + pad_w that fits */
    *a = mcuqp_min_i32((p->pad_w + p->stride_w - 1) / p->stride_w, w);
    *b = last < 0 ? *a : mcuqp_max_i32(mcuqp_min_i32(last / p->stride_w + 1, w), *a);
}

/* Inner windows of one output row, 3x3 taps with dilation 1: the nine weights stay in
 * registers. r0 points at input row y0, column x0 of the first window. */
static void dwi_row_3x3(const dwi_channel *ch, const mcuqp_conv_params *p, const int8_t *r0, size_t in_w,
                        int32_t count, int8_t *o, int32_t lo, int32_t hi)
{
    const size_t t = ch->w_tap;
    const int32_t w0 = ch->w[0], w1 = ch->w[t], w2 = ch->w[2 * t];
    const int32_t w3 = ch->w[3 * t], w4 = ch->w[4 * t], w5 = ch->w[5 * t];
    const int32_t w6 = ch->w[6 * t], w7 = ch->w[7 * t], w8 = ch->w[8 * t];
    const size_t step = (size_t)p->stride_w;
    int32_t i;
    for (i = 0; i < count; ++i) {
        const int8_t *a = r0 + (size_t)i * step;
        const int8_t *b = a + in_w;
        const int8_t *c = b + in_w;
        /* |sum| <= 9 * 128 * 127: no int32 overflow */
        const int32_t dot = a[0] * w0 + a[1] * w1 + a[2] * w2 + b[0] * w3 + b[1] * w4 + b[2] * w5 + c[0] * w6 +
                            c[1] * w7 + c[2] * w8;
        o[(size_t)i * ch->out_px] = mcuqp_requantize_clamp_s8((uint32_t)dot + ch->full, ch->mult, ch->shift, lo, hi, p->output_offset);
    }
}

static void dwi_run_channel(const dwi_channel *ch, const mcuqp_conv_params *p, int32_t h, int32_t w, int32_t k_h,
                            int32_t k_w)
{
    const int32_t lo = p->act_min - p->output_offset;
    const int32_t hi = p->act_max - p->output_offset;
    const int fast_3x3 = k_h == 3 && k_w == 3 && p->dilation_h == 1 && p->dilation_w == 1;
    int32_t in_a;
    int32_t in_b;
    dwi_inner_columns(p, w, k_w, &in_a, &in_b);
    int32_t oy;
    for (oy = 0; oy < h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        int32_t ky_lo;
        int32_t ky_hi;
        mcuqp_tap_range(y0, p->dilation_h, k_h, h, &ky_lo, &ky_hi);
        const int inner = ky_lo == 0 && ky_hi == k_h && in_b > in_a;
        const int32_t skip_a = inner ? in_a : w; /* columns [skip_a, skip_b) take the inner path */
        const int32_t skip_b = inner ? in_b : w;
        int8_t *o = ch->dst + (size_t)oy * (size_t)w * ch->out_px;
        int32_t ox;
        for (ox = 0; ox < w; ++ox) {
            if (ox == skip_a) {
                ox = skip_b - 1;
                continue;
            }
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int32_t kx_lo;
            int32_t kx_hi;
            mcuqp_tap_range(x0, p->dilation_w, k_w, w, &kx_lo, &kx_hi);
            uint32_t acc = ch->bias;
            if (kx_hi > kx_lo) {
                acc += dwi_window(ch, p, w, k_w, y0, x0, ky_lo, ky_hi, kx_lo, kx_hi, p->input_offset);
            }
            o[(size_t)ox * ch->out_px] = mcuqp_requantize_clamp_s8(acc, ch->mult, ch->shift, lo, hi, p->output_offset);
        }
        if (!inner) {
            continue;
        }
        const int32_t x0 = skip_a * p->stride_w - p->pad_w;
        if (fast_3x3) {
            dwi_row_3x3(ch, p, ch->src + (size_t)y0 * (size_t)w + (size_t)x0, (size_t)w, skip_b - skip_a,
                        o + (size_t)skip_a * ch->out_px, lo, hi);
            continue;
        }
        for (ox = skip_a; ox < skip_b; ++ox) {
            const uint32_t acc = dwi_window(ch, p, w, k_w, y0, ox * p->stride_w - p->pad_w, 0, k_h, 0, k_w, 0);
            o[(size_t)ox * ch->out_px] = mcuqp_requantize_clamp_s8(acc + ch->full, ch->mult, ch->shift, lo, hi, p->output_offset);
        }
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
    const int32_t k_h = filter_dims->h;
    const int32_t k_w = filter_dims->w;
    const size_t pixels = (size_t)h * (size_t)w;
    const size_t image = pixels * (size_t)c;
    int32_t n;
    for (n = 0; n < input_dims->n; ++n) {
        int8_t *img = data + (size_t)n * image;
        int32_t ch;
        for (ch = 0; ch < c; ++ch) {
            const int32_t q = quant->count == 1 ? 0 : ch;
            const int8_t *w_ch = filter + ch;
            uint32_t w_sum = 0u;
            size_t i;
            for (i = 0; i < (size_t)k_h * (size_t)k_w; ++i) {
                const int32_t v = w_ch[i * (size_t)c]; /* named: see conv2d_s8.c */
                w_sum += (uint32_t)v;
            }
            for (i = 0; i < pixels; ++i) {
                buffer[i] = img[i * (size_t)c + (size_t)ch];
            }
            dwi_channel one;
            one.src = buffer;
            one.w = w_ch;
            one.w_tap = (size_t)c;
            one.dst = img + ch;
            one.out_px = (size_t)c;
            one.bias = bias != NULL ? (uint32_t)bias[ch] : 0u;
            one.full = one.bias + (uint32_t)params->input_offset * w_sum;
            one.mult = quant->multiplier[q];
            one.shift = quant->shift[q];
            dwi_run_channel(&one, params, h, w, k_h, k_w);
        }
    }
    return MCUQP_OK;
}
