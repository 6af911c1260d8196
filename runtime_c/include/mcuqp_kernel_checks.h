/*
 * mcuqp helpers shared by the portable and the optimised conv2d / depthwise / fully
 * connected kernels (internal; not part of the public API): argument validation, so that
 * every variant refuses exactly the same calls, and the in-bounds tap range of a window.
 *
 * Ranges accepted: every dimension, stride and dilation in [1, 2^15); padding in
 * [0, 2^15); input_offset (and FC filter_offset) in [-127, 128] (minus an int8 zero point); output_offset and
 * the clamp within int8; requant shifts in [-31, 30] (TFLite's contract).
 */
#ifndef MCUQP_KERNEL_CHECKS_H
#define MCUQP_KERNEL_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include "mcuqp_fixedpoint.h"
#include "mcuqp_nn.h"

#define MCUQP_CONV_MAX_DIM (1 << 15)

static inline int mcuqp_conv_valid_dim(int32_t v) { return v >= 1 && v < MCUQP_CONV_MAX_DIM; }

/* [*lo, *hi): the taps t in [0, taps) with 0 <= origin + t * dilation < size. */
static inline void mcuqp_tap_range(int32_t origin, int32_t dilation, int32_t taps, int32_t size, int32_t *lo,
                                   int32_t *hi)
{
    int32_t a = 0;
    int32_t b = taps;
    if (origin < 0) {
        a = (-origin + dilation - 1) / dilation;
    }
    if (origin + (taps - 1) * dilation >= size) {
        b = size > origin ? (size - origin + dilation - 1) / dilation : 0;
    }
    *lo = mcuqp_min_i32(a, taps);
    *hi = mcuqp_max_i32(b, *lo);
}

/* The input and filter dims a *_get_buffer_size() query accepts: present, each in range. */
static inline int mcuqp_conv_valid_shapes(const mcuqp_dims *in, const mcuqp_dims *f)
{
    return in != NULL && f != NULL && mcuqp_conv_valid_dim(in->n) && mcuqp_conv_valid_dim(in->h) &&
           mcuqp_conv_valid_dim(in->w) && mcuqp_conv_valid_dim(in->c) && mcuqp_conv_valid_dim(f->n) &&
           mcuqp_conv_valid_dim(f->h) && mcuqp_conv_valid_dim(f->w) && mcuqp_conv_valid_dim(f->c);
}

/* Strides, dilations, padding, offsets and clamp (depth_multiplier checked when `depthwise`). */
static inline int mcuqp_conv_valid_params(const mcuqp_conv_params *p, int depthwise)
{
    return mcuqp_conv_valid_dim(p->stride_h) && mcuqp_conv_valid_dim(p->stride_w) &&
           mcuqp_conv_valid_dim(p->dilation_h) && mcuqp_conv_valid_dim(p->dilation_w) &&
           (!depthwise || mcuqp_conv_valid_dim(p->depth_multiplier)) && p->pad_h >= 0 && p->pad_w >= 0 &&
           p->pad_h < MCUQP_CONV_MAX_DIM && p->pad_w < MCUQP_CONV_MAX_DIM && p->input_offset >= -127 &&
           p->input_offset <= 128 && p->output_offset >= -128 && p->output_offset <= 127 &&
           p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127;
}

/* One (multiplier, shift) per tensor or per output channel, shifts within TFLite's range. */
static inline int mcuqp_valid_requant(const mcuqp_requant *q, int32_t channels)
{
    int32_t i;
    if (q->multiplier == NULL || q->shift == NULL || (q->count != 1 && q->count != channels)) {
        return 0;
    }
    if ((q->flags & MCUQP_RQ_SHIFTS_OK) != 0) {
        return 1; /* checked at generation time */
    }
    for (i = 0; i < q->count; ++i) {
        if (q->shift[i] < -31 || q->shift[i] > 30) {
            return 0;
        }
    }
    return 1;
}

/* 1 when no multiplier of q is INT32_MIN (the flag, or a look at every channel). */
static inline int mcuqp_requant_nomin(const mcuqp_requant *q)
{
    int32_t i;
    if ((q->flags & MCUQP_RQ_NOMIN) != 0) {
        return 1;
    }
    for (i = 0; i < q->count; ++i) {
        if (q->multiplier[i] == INT32_MIN) {
            return 0;
        }
    }
    return 1;
}

/* conv2d: filter (out_c, kh, kw, in_c). */
static inline int mcuqp_conv2d_valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q, const mcuqp_dims *in,
                                          const mcuqp_dims *f, const mcuqp_dims *out)
{
    return mcuqp_conv_valid_params(p, 0) && mcuqp_conv_valid_dim(in->n) && mcuqp_conv_valid_dim(in->h) &&
           mcuqp_conv_valid_dim(in->w) && mcuqp_conv_valid_dim(in->c) && mcuqp_conv_valid_dim(f->n) &&
           mcuqp_conv_valid_dim(f->h) && mcuqp_conv_valid_dim(f->w) && f->c == in->c && out->n == in->n &&
           out->c == f->n && mcuqp_conv_valid_dim(out->h) && mcuqp_conv_valid_dim(out->w) &&
           mcuqp_valid_requant(q, f->n);
}

/* depthwise: filter (1, kh, kw, in_c * depth_multiplier). */
static inline int mcuqp_depthwise_valid_args(const mcuqp_conv_params *p, const mcuqp_requant *q,
                                             const mcuqp_dims *in, const mcuqp_dims *f, const mcuqp_dims *out)
{
    return mcuqp_conv_valid_params(p, 1) && mcuqp_conv_valid_dim(in->n) && mcuqp_conv_valid_dim(in->h) &&
           mcuqp_conv_valid_dim(in->w) && mcuqp_conv_valid_dim(in->c) && f->n == 1 && mcuqp_conv_valid_dim(f->h) &&
           mcuqp_conv_valid_dim(f->w) && (int64_t)f->c == (int64_t)in->c * p->depth_multiplier &&
           out->n == in->n && out->c == f->c && mcuqp_conv_valid_dim(out->h) && mcuqp_conv_valid_dim(out->w) &&
           mcuqp_valid_requant(q, f->c);
}

/* fully connected: batches rows of in_ch inputs, out_ch outputs. */
static inline int mcuqp_fc_valid_args(const mcuqp_fc_params *p, const mcuqp_requant *q, int32_t batches,
                                      int32_t in_ch, int32_t out_ch)
{
    return batches >= 1 && in_ch >= 1 && out_ch >= 1 && p->input_offset >= -127 && p->input_offset <= 128 &&
           p->filter_offset >= -127 && p->filter_offset <= 128 && p->output_offset >= -128 &&
           p->output_offset <= 127 && p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127 &&
           mcuqp_valid_requant(q, out_ch);
}

/* max / average pooling: the same channels and batch in and out, a clamp within int8. */
static inline int mcuqp_pool_valid_args(const mcuqp_pool_params *p, const mcuqp_dims *in, const int8_t *input,
                                        const mcuqp_dims *out, const int8_t *output)
{
    if (p == NULL || in == NULL || input == NULL || out == NULL || output == NULL) {
        return 0;
    }
    return p->filter_h >= 1 && p->filter_w >= 1 && p->stride_h >= 1 && p->stride_w >= 1 && p->pad_h >= 0 &&
           p->pad_w >= 0 && p->act_min <= p->act_max && p->act_min >= -128 && p->act_max <= 127 && in->n >= 1 &&
           in->h >= 1 && in->w >= 1 && in->c >= 1 && out->n == in->n && out->c == in->c && out->h >= 1 &&
           out->w >= 1;
}

#endif /* MCUQP_KERNEL_CHECKS_H */
