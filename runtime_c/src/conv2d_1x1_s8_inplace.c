/*
 * Pointwise (1x1) 2-D convolution computed in place, int8 NHWC -> int8 NHWC over the same
 * bytes (TFLite int8 ConvPerChannel semantics, the arithmetic of mcuqp_conv2d_s8).
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
 * For output pixel p (p over n * h * w, row-major) and channel oc:
 *   acc = sum over ic of filter[oc][ic] * (input[p][ic] + input_offset) + bias[oc]
 *   y   = clamp(requantize(acc, multiplier[oc], shift[oc]) + output_offset, act_min, act_max)
 * The int32 accumulator wraps in two's complement (uint32 arithmetic).
 *
 * Why it is exact: output pixel p reads input pixel p only. Pixels are processed in
 * increasing order; pixel p's in_c input bytes [p*in_c, (p+1)*in_c) are copied to `buffer`
 * before any of its outputs is written, and its outputs go to [p*out_c, (p+1)*out_c).
 * With out_c <= in_c, (p+1)*out_c <= (p+1)*in_c: the writes reach no byte of an input pixel
 * q > p (still unread); they only cover input bytes of pixels <= p, already copied. So the
 * output is the prefix [0, n*h*w*out_c) of the input region.
 *
 * Speed: output channels four at a time, each input byte loaded from the buffer feeds four
 * multiply-accumulates. The regular kernel (and its DSP variant) is faster: the memory
 * planner uses this one only where it lowers the arena.
 */
#include "mcuqp_fixedpoint.h"
#include "mcuqp_kernel_checks.h"
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
    if (p->stride_h != 1 || p->stride_w != 1 || p->dilation_h != 1 || p->dilation_w != 1 || p->pad_h != 0 ||
        p->pad_w != 0 || p->input_offset < -127 || p->input_offset > 128 || p->output_offset < -128 ||
        p->output_offset > 127 || p->act_min > p->act_max || p->act_min < -128 || p->act_max > 127) {
        return 0;
    }
    if (mcuqp_conv2d_1x1_s8_inplace_buffer_size(in) < 0 || !mcuqp_conv_valid_dim(f->n) || f->h != 1 || f->w != 1 ||
        f->c != in->c || f->n > in->c || out->n != in->n || out->h != in->h || out->w != in->w ||
        out->c != f->n) {
        return 0;
    }
    return mcuqp_valid_requant(q, f->n);
}

/* Output channel oc of one pixel from its dot product `acc` (bias not yet added). */
MCUQP_INLINE void pwi_store(int8_t *dst, int32_t oc, uint32_t acc, const int32_t *bias, const mcuqp_requant *quant,
                            int32_t lo, int32_t hi, int32_t out_offset)
{
    const int32_t q = quant->count == 1 ? 0 : oc;
    if (bias != NULL) {
        acc += (uint32_t)bias[oc];
    }
    dst[oc] = mcuqp_requantize_clamp_s8(acc, quant->multiplier[q], quant->shift[q], lo, hi, out_offset);
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
    const int32_t off = params->input_offset;
    const int32_t out_offset = params->output_offset;
    const int32_t lo = params->act_min - out_offset;
    const int32_t hi = params->act_max - out_offset;
    const size_t pixels = (size_t)input_dims->n * (size_t)input_dims->h * (size_t)input_dims->w;
    size_t px;
    for (px = 0; px < pixels; ++px) {
        const int8_t *src = data + px * (size_t)in_c;
        int8_t *dst = data + px * (size_t)out_c;
        int32_t i;
        for (i = 0; i < in_c; ++i) {
            buffer[i] = src[i];
        }
        int32_t oc;
        for (oc = 0; oc + 3 < out_c; oc += 4) {
            const int8_t *w0 = filter + (size_t)oc * (size_t)in_c;
            const int8_t *w1 = w0 + in_c;
            const int8_t *w2 = w1 + in_c;
            const int8_t *w3 = w2 + in_c;
            uint32_t a0 = 0u;
            uint32_t a1 = 0u;
            uint32_t a2 = 0u;
            uint32_t a3 = 0u;
            /* rolled over walking pointers: loads with write-back, no index arithmetic */
            const int8_t *x = buffer;
            const int8_t *const end = buffer + in_c;
            while (x != end) {
                const int32_t u = *x++ + off;
                a0 += (uint32_t)(u * *w0++);
                a1 += (uint32_t)(u * *w1++);
                a2 += (uint32_t)(u * *w2++);
                a3 += (uint32_t)(u * *w3++);
            }
            pwi_store(dst, oc, a0, bias, quant, lo, hi, out_offset);
            pwi_store(dst, oc + 1, a1, bias, quant, lo, hi, out_offset);
            pwi_store(dst, oc + 2, a2, bias, quant, lo, hi, out_offset);
            pwi_store(dst, oc + 3, a3, bias, quant, lo, hi, out_offset);
        }
        for (; oc < out_c; ++oc) {
            const int8_t *w0 = filter + (size_t)oc * (size_t)in_c;
            uint32_t a0 = 0u;
            for (i = 0; i < in_c; ++i) {
                a0 += (uint32_t)((buffer[i] + off) * w0[i]);
            }
            pwi_store(dst, oc, a0, bias, quant, lo, hi, out_offset);
        }
    }
    return MCUQP_OK;
}
