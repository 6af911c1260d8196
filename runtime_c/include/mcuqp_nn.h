/*
 * mcuqp neural-network kernels: public prototypes and parameter structs.
 *
 * Data layouts (batch is always 1 in generated models, but kernels honour dims.n):
 *   activations     NHWC int8, or (1, N) int8 for vectors
 *   conv weights    OHWI int8  (out_ch, kh, kw, in_ch), symmetric, zero point 0
 *   depthwise w.    1HWC int8  (1, kh, kw, in_ch * depth_multiplier)
 *   fully-conn. w.  (out_ch, in_ch) int8, row-major
 *   bias            int32, one per output channel, scale in_scale * w_scale, or NULL
 *
 * Offsets follow TFLite: input_offset = -input_zero_point, output_offset =
 * +output_zero_point. act_min/act_max are the clamp in the output's int8 domain
 * (fused ReLU/ReLU6 become a narrower clamp). Requantization multipliers are Q31 in
 * [2^30, 2^31) with TFLite shift convention (see mcuqp_fixedpoint.h).
 *
 * Every kernel returns MCUQP_OK, or MCUQP_ERR_ARG when its arguments are inconsistent.
 * Kernels never allocate; the ones that need scratch have a *_buffer_size() helper.
 */
#ifndef MCUQP_NN_H
#define MCUQP_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MCUQP_OK = 0,
    MCUQP_ERR_ARG = -1,
} mcuqp_status;

typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} mcuqp_dims;

/* Per-output-channel (or per-tensor when count == 1) requantization. `flags` states facts
 * the code generator checked when it wrote the arrays, so kernels skip checking them on
 * every call; 0 (what a struct built without it gets) makes the kernels check. */
#define MCUQP_RQ_SHIFTS_OK 1 /* every shift is in [-31, 30] */
#define MCUQP_RQ_NOMIN 2     /* no multiplier is INT32_MIN */
#define MCUQP_RQ_HIGHWORD 4  /* every channel has a zero multiplier or a shift <= -2 */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t count; /* 1 (per-tensor) or the number of output channels */
    int32_t flags; /* MCUQP_RQ_* facts, or 0 */
} mcuqp_requant;

typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_h; /* top padding */
    int32_t pad_w; /* left padding */
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t depth_multiplier; /* depthwise only */
    int32_t act_min;
    int32_t act_max;
} mcuqp_conv_params;

typedef struct {
    int32_t input_offset;
    int32_t filter_offset;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
} mcuqp_fc_params;

typedef struct {
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_h;
    int32_t pad_w;
    int32_t filter_h;
    int32_t filter_w;
    int32_t act_min;
    int32_t act_max;
} mcuqp_pool_params;

typedef struct {
    int32_t left_shift;
    int32_t input1_offset;
    int32_t input1_multiplier;
    int32_t input1_shift;
    int32_t input2_offset;
    int32_t input2_multiplier;
    int32_t input2_shift;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t act_min;
    int32_t act_max;
} mcuqp_add_params;

typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} mcuqp_softmax_params;

/* y = requant(conv(x + input_offset, w) + bias) + output_offset, clamped. */
mcuqp_status mcuqp_conv2d_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                             const mcuqp_dims *input_dims, const int8_t *input,
                             const mcuqp_dims *filter_dims, const int8_t *filter,
                             const int32_t *bias, const mcuqp_dims *output_dims, int8_t *output);

/* filter_dims = (1, kh, kw, in_ch * depth_multiplier). */
mcuqp_status mcuqp_depthwise_conv2d_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                       const mcuqp_dims *input_dims, const int8_t *input,
                                       const mcuqp_dims *filter_dims, const int8_t *filter,
                                       const int32_t *bias, const mcuqp_dims *output_dims,
                                       int8_t *output);

/* batches rows of in_ch inputs -> batches rows of out_ch outputs. */
mcuqp_status mcuqp_fully_connected_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                      int32_t batches, int32_t in_ch, const int8_t *input,
                                      int32_t out_ch, const int8_t *filter, const int32_t *bias,
                                      int8_t *output);

/* Bytes of scratch the kernel variant built for this board uses for these shapes (0 for the
 * portable kernels; the DSP variants keep 1408, 1024 and 512 bytes of working buffers on
 * their stack today), or MCUQP_ERR_ARG for missing or out-of-range dims. */
int32_t mcuqp_conv2d_s8_get_buffer_size(const mcuqp_dims *input_dims, const mcuqp_dims *filter_dims);
int32_t mcuqp_depthwise_conv2d_s8_get_buffer_size(const mcuqp_dims *input_dims, const mcuqp_dims *filter_dims);
int32_t mcuqp_fully_connected_s8_get_buffer_size(int32_t in_ch);

/* Pooling: input and output share scale and zero point. Average uses TFLite's rounding
 * ((sum +- count/2) / count over the in-bounds window). */
mcuqp_status mcuqp_max_pool2d_s8(const mcuqp_pool_params *params, const mcuqp_dims *input_dims,
                                 const int8_t *input, const mcuqp_dims *output_dims, int8_t *output);
mcuqp_status mcuqp_avg_pool2d_s8(const mcuqp_pool_params *params, const mcuqp_dims *input_dims,
                                 const int8_t *input, const mcuqp_dims *output_dims, int8_t *output);

/* Elementwise add of two int8 tensors of `size` elements (no broadcasting). */
mcuqp_status mcuqp_add_s8(const mcuqp_add_params *params, int32_t size, const int8_t *input1,
                          const int8_t *input2, int8_t *output);

/* TFLite integer softmax over rows of row_size; output scale 1/256, zero point -128. */
mcuqp_status mcuqp_softmax_s8(const mcuqp_softmax_params *params, int32_t rows, int32_t row_size,
                              const int8_t *input, int8_t *output);

/* Copy for reshapes that cannot alias (memmove semantics: overlap allowed). */
mcuqp_status mcuqp_reshape_s8(int32_t size, const int8_t *input, int8_t *output);

/* ---- ops added for TFLite import (MUL, MEAN, PAD, CONCATENATION, LOGISTIC, QUANTIZE) ---- */

typedef struct {
    int32_t input1_offset;
    int32_t input2_offset;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t act_min;
    int32_t act_max;
} mcuqp_mul_params;

typedef struct {
    int32_t count; /* input h * w */
    int32_t input_offset;
    int32_t output_offset;
    int32_t multiplier; /* includes the 1/count of TFLite Micro's MEAN */
    int32_t shift;
} mcuqp_mean_params;

typedef struct {
    int32_t before[4]; /* n, h, w, c */
    int32_t after[4];
    int32_t pad_value;
} mcuqp_pad_params;

typedef struct {
    int32_t input_zero_point;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t input_range_radius;
} mcuqp_logistic_params;

typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t multiplier;
    int32_t shift;
} mcuqp_quantize_params;

/* Mean over h and w: input (n, h, w, c) -> n * c outputs. */
mcuqp_status mcuqp_mean_s8(const mcuqp_mean_params *params, const mcuqp_dims *input_dims,
                           const int8_t *input, int8_t *output);

/* Constant padding; output dims = input dims + before + after. */
mcuqp_status mcuqp_pad_s8(const mcuqp_pad_params *params, const mcuqp_dims *input_dims,
                          const int8_t *input, const mcuqp_dims *output_dims, int8_t *output);

/* Concatenation of num_inputs tensors seen as (outer_size, axis_sizes[i], inner_size); the
 * inputs share the output's quantization, so this is a copy. */
mcuqp_status mcuqp_concatenation_s8(int32_t num_inputs, const int8_t *const *inputs,
                                    const int32_t *axis_sizes, int32_t outer_size,
                                    int32_t inner_size, int8_t *output);

/* TFLite Micro int8 logistic; output scale 1/256, zero point -128. */
mcuqp_status mcuqp_logistic_s8(const mcuqp_logistic_params *params, int32_t size,
                               const int8_t *input, int8_t *output);

/* int8 -> int8 requantization (QUANTIZE between two int8 quantizations). */
mcuqp_status mcuqp_quantize_s8(const mcuqp_quantize_params *params, int32_t size,
                               const int8_t *input, int8_t *output);

/* ---- standalone activations (LEAKY_RELU, RELU / RELU6 / RELU_N1_TO_1, HARD_SWISH) ---- */

typedef struct {
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t identity_multiplier;
    int32_t identity_shift;
    int32_t alpha_multiplier;
    int32_t alpha_shift;
} mcuqp_leaky_relu_params;

/* TFLite Micro int8 LEAKY_RELU: requantize x - input_zero_point by the identity (x >= zp) or
 * alpha (x < zp) multiplier, add output_zero_point, saturate. */
mcuqp_status mcuqp_leaky_relu_s8(const mcuqp_leaky_relu_params *params, int32_t size,
                                 const int8_t *input, int8_t *output);

typedef struct {
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t multiplier;
    int32_t shift;
    int32_t act_min;
    int32_t act_max;
} mcuqp_relu_params;

/* int8 RELU / RELU6 / RELU_N1_TO_1: requantize x - input_zero_point, add output_zero_point,
 * clamp to [act_min, act_max]. */
mcuqp_status mcuqp_relu_s8(const mcuqp_relu_params *params, int32_t size, const int8_t *input,
                           int8_t *output);

typedef struct {
    int32_t input_zero_point;
    int32_t output_zero_point;
    int32_t reluish_multiplier; /* int16 range */
    int32_t reluish_exponent;
    int32_t output_multiplier; /* int16 range */
    int32_t output_exponent;   /* <= 0 */
} mcuqp_hard_swish_params;

/* TFLite Micro int8 HARD_SWISH (int16 fixed point, two Q0.15 multipliers). */
mcuqp_status mcuqp_hard_swish_s8(const mcuqp_hard_swish_params *params, int32_t size,
                                 const int8_t *input, int8_t *output);

/* ---- depthwise convolution in place (memory planning) ---- */

/* mcuqp_depthwise_conv2d_s8 with the output written over the input: `data` holds the input
 * (n, h, w, c) on entry and the output on return. Needs depth_multiplier == 1 and
 * output_dims == input_dims; `buffer` is scratch of
 * mcuqp_depthwise_conv2d_s8_inplace_buffer_size(input_dims) bytes (h * w) outside `data`. */
mcuqp_status mcuqp_depthwise_conv2d_s8_inplace(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                               const mcuqp_dims *input_dims, int8_t *data,
                                               const mcuqp_dims *filter_dims, const int8_t *filter,
                                               const int32_t *bias, const mcuqp_dims *output_dims,
                                               int8_t *buffer);

/* Bytes of scratch mcuqp_depthwise_conv2d_s8_inplace needs (h * w), or MCUQP_ERR_ARG for
 * invalid dims. */
int32_t mcuqp_depthwise_conv2d_s8_inplace_buffer_size(const mcuqp_dims *input_dims);

/* ---- pointwise (1x1) convolution in place (memory planning) ---- */

/* mcuqp_conv2d_s8 for a 1x1 filter, stride 1, dilation 1, no padding and out_c <= in_c,
 * with the output written over the input: `data` holds the input (n, h, w, in_c) on entry
 * and the output (n, h, w, out_c) in its first n*h*w*out_c bytes on return; `buffer` is
 * scratch of mcuqp_conv2d_1x1_s8_inplace_buffer_size(input_dims) bytes (in_c) outside `data`. */
mcuqp_status mcuqp_conv2d_1x1_s8_inplace(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                         const mcuqp_dims *input_dims, int8_t *data, const mcuqp_dims *filter_dims,
                                         const int8_t *filter, const int32_t *bias, const mcuqp_dims *output_dims,
                                         int8_t *buffer);

/* Bytes of scratch mcuqp_conv2d_1x1_s8_inplace needs (in_c), or MCUQP_ERR_ARG for invalid dims. */
int32_t mcuqp_conv2d_1x1_s8_inplace_buffer_size(const mcuqp_dims *input_dims);

/* ---- sign (binary activations) ---- */

typedef struct {
    int32_t input_zero_point;
} mcuqp_sign_params;

/* int8 sign, sign(0) = +1: output 1 where input >= input_zero_point (real value >= 0), -1
 * elsewhere; output scale 1.0, zero point 0. input_zero_point must be in [-128, 127]. */
mcuqp_status mcuqp_sign_s8(const mcuqp_sign_params *params, int32_t size, const int8_t *input, int8_t *output);

/* ---- packed weight formats (sparse, int4 / ternary / binary, fully binary) ----
 * Layouts are defined in mcuqp/packing.py; every packed kernel gives exactly the output of
 * the dense int8 kernel on the unpacked (effective) weights. Weights are symmetric: the FC
 * params' filter_offset must be 0. `buffer` is scratch of *_get_buffer_size() bytes,
 * 4-byte aligned, not overlapping the input or output. */

/* Sparse rows (FC (out_ch, in_ch), conv OHWI rows of kh * kw * in_c): for each row and each
 * segment of 256 columns a count of nonzeros; per nonzero, its column within the segment
 * and its value, row by row, columns ascending. */
typedef struct {
    const uint16_t *counts; /* rows * ceil(row_len / 256) */
    const uint8_t *index;
    const int8_t *values;
} mcuqp_sparse_rows;

/* Sparse depthwise filter (1, kh, kw, C), kh * kw <= 255: per channel a count; per nonzero
 * its tap ky * kw + kx and its value, channel by channel. */
typedef struct {
    const uint8_t *counts; /* C */
    const uint8_t *index;
    const int8_t *values;
} mcuqp_sparse_depthwise;

/* Low-bit weights: bits 4 (int4, [-8, 7]), 2 (ternary: 0b01 = +1, 0b11 = -1, 0b00 = 0) or
 * 1 (binary: 1 = +1, 0 = -1), 32 / bits per little-endian word; value 4 f + j of a word in
 * byte j, bits [bits * f, bits * (f + 1)). FC / conv: each row padded to whole words;
 * depthwise: the filter (kh, kw, C) as one stream padded to whole words. */
typedef struct {
    const uint32_t *words;
    int32_t bits;
} mcuqp_lowbit_weights;

mcuqp_status mcuqp_fully_connected_sparse_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                             int32_t batches, int32_t in_ch, const int8_t *input, int32_t out_ch,
                                             const mcuqp_sparse_rows *filter, const int32_t *bias, int8_t *output,
                                             void *buffer);
int32_t mcuqp_fully_connected_sparse_s8_get_buffer_size(int32_t in_ch);

mcuqp_status mcuqp_conv2d_sparse_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                    const mcuqp_dims *input_dims, const int8_t *input, const mcuqp_dims *filter_dims,
                                    const mcuqp_sparse_rows *filter, const int32_t *bias,
                                    const mcuqp_dims *output_dims, int8_t *output, void *buffer);
int32_t mcuqp_conv2d_sparse_s8_get_buffer_size(const mcuqp_dims *filter_dims);

mcuqp_status mcuqp_depthwise_conv2d_sparse_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                              const mcuqp_dims *input_dims, const int8_t *input,
                                              const mcuqp_dims *filter_dims, const mcuqp_sparse_depthwise *filter,
                                              const int32_t *bias, const mcuqp_dims *output_dims, int8_t *output,
                                              void *buffer);
int32_t mcuqp_depthwise_conv2d_sparse_s8_get_buffer_size(const mcuqp_dims *filter_dims);

mcuqp_status mcuqp_fully_connected_lowbit_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                             int32_t batches, int32_t in_ch, const int8_t *input, int32_t out_ch,
                                             const mcuqp_lowbit_weights *filter, const int32_t *bias,
                                             int8_t *output, void *buffer);
int32_t mcuqp_fully_connected_lowbit_s8_get_buffer_size(int32_t in_ch);

mcuqp_status mcuqp_conv2d_lowbit_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                    const mcuqp_dims *input_dims, const int8_t *input, const mcuqp_dims *filter_dims,
                                    const mcuqp_lowbit_weights *filter, const int32_t *bias,
                                    const mcuqp_dims *output_dims, int8_t *output, void *buffer);
int32_t mcuqp_conv2d_lowbit_s8_get_buffer_size(const mcuqp_dims *filter_dims);

mcuqp_status mcuqp_depthwise_conv2d_lowbit_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                              const mcuqp_dims *input_dims, const int8_t *input,
                                              const mcuqp_dims *filter_dims, const mcuqp_lowbit_weights *filter,
                                              const int32_t *bias, const mcuqp_dims *output_dims, int8_t *output,
                                              void *buffer);
int32_t mcuqp_depthwise_conv2d_lowbit_s8_get_buffer_size(const mcuqp_dims *filter_dims);

/* Fully binary: binary weights (bits 1) and SIGN outputs (every input -1 or +1, input_offset
 * 0); XOR and popcount over 32-bit words. */
mcuqp_status mcuqp_fully_connected_xnor_s8(const mcuqp_fc_params *params, const mcuqp_requant *quant,
                                           int32_t batches, int32_t in_ch, const int8_t *input, int32_t out_ch,
                                           const mcuqp_lowbit_weights *filter, const int32_t *bias, int8_t *output,
                                           void *buffer);
int32_t mcuqp_fully_connected_xnor_s8_get_buffer_size(int32_t in_ch);

mcuqp_status mcuqp_conv2d_xnor_s8(const mcuqp_conv_params *params, const mcuqp_requant *quant,
                                  const mcuqp_dims *input_dims, const int8_t *input, const mcuqp_dims *filter_dims,
                                  const mcuqp_lowbit_weights *filter, const int32_t *bias,
                                  const mcuqp_dims *output_dims, int8_t *output, void *buffer);
int32_t mcuqp_conv2d_xnor_s8_get_buffer_size(const mcuqp_dims *filter_dims);

/* ---- broadcasting binary ops (ADD, SUB, MUL, MAXIMUM, MINIMUM, PRELU) and TANH ---- */

#define MCUQP_BROADCAST_MAX_RANK 6

/* Element strides of two inputs over the output's index space (TFLite broadcasting: shapes
 * right-aligned and padded at the front with 1s; an input dimension of 1 repeats, stride 0).
 * shape: the output shape, row-major, padded at the front with 1s; each entry >= 0. */
typedef struct {
    int32_t shape[MCUQP_BROADCAST_MAX_RANK];
    int32_t stride1[MCUQP_BROADCAST_MAX_RANK];
    int32_t stride2[MCUQP_BROADCAST_MAX_RANK];
} mcuqp_broadcast;

/* ADD with broadcasting (mcuqp_add_s8's arithmetic per output element). */
mcuqp_status mcuqp_add_broadcast_s8(const mcuqp_add_params *params, const mcuqp_broadcast *shape,
                                    const int8_t *input1, const int8_t *input2, int8_t *output);

/* SUB: as ADD with the rescaled second input subtracted (TFLite Micro int8 SUB). */
mcuqp_status mcuqp_sub_s8(const mcuqp_add_params *params, const mcuqp_broadcast *shape, const int8_t *input1,
                          const int8_t *input2, int8_t *output);

/* y = max / min(x1, x2) of the raw int8 values (inputs and output share quantization). */
mcuqp_status mcuqp_maximum_s8(const mcuqp_broadcast *shape, const int8_t *input1, const int8_t *input2,
                              int8_t *output);
mcuqp_status mcuqp_minimum_s8(const mcuqp_broadcast *shape, const int8_t *input1, const int8_t *input2,
                              int8_t *output);

typedef struct {
    int32_t input_offset; /* -input zero point */
    int32_t alpha_offset; /* -alpha zero point */
    int32_t output_offset;
    int32_t output_multiplier_1; /* in_scale / out_scale, for x >= zero point */
    int32_t output_shift_1;
    int32_t output_multiplier_2; /* in_scale * alpha_scale / out_scale, for x < zero point */
    int32_t output_shift_2;
} mcuqp_prelu_params;

/* MUL: y = requant((x1 + input1_offset) * (x2 + input2_offset)) + output_offset, clamped. */
mcuqp_status mcuqp_mul_s8(const mcuqp_mul_params *params, const mcuqp_broadcast *shape, const int8_t *input1,
                          const int8_t *input2, int8_t *output);

/* PRELU: input1 = x, input2 = alpha (broadcast like a second input). */
mcuqp_status mcuqp_prelu_s8(const mcuqp_prelu_params *params, const mcuqp_broadcast *shape, const int8_t *input,
                            const int8_t *alpha, int8_t *output);

/* TFLite Micro int8 TANH: output scale 1/128, zero point 0; params as LOGISTIC's. */
mcuqp_status mcuqp_tanh_s8(const mcuqp_logistic_params *params, int32_t size, const int8_t *input,
                           int8_t *output);

/* ---- data movement of rank <= 5 tensors (TRANSPOSE, STRIDED_SLICE / SPLIT, RESIZE) ---- */

#define MCUQP_MAX_RANK 5

/* Shapes row-major, padded at the front with 1s to rank 5. */
typedef struct {
    int32_t input_shape[MCUQP_MAX_RANK];
    int32_t perm[MCUQP_MAX_RANK]; /* output dimension d is input dimension perm[d] */
} mcuqp_transpose_params;

typedef struct {
    int32_t input_shape[MCUQP_MAX_RANK];
    int32_t begin[MCUQP_MAX_RANK]; /* first index read, resolved (masks, negative values) */
    int32_t strides[MCUQP_MAX_RANK]; /* != 0; negative walks backwards */
    int32_t output_shape[MCUQP_MAX_RANK];
} mcuqp_strided_slice_params;

/* output[i] = input[j], j[perm[d]] = i[d]: a copy (input and output share quantization). */
mcuqp_status mcuqp_transpose_s8(const mcuqp_transpose_params *params, const int8_t *input, int8_t *output);

/* output[i] = input[begin + i * strides] per dimension: a copy. */
mcuqp_status mcuqp_strided_slice_s8(const mcuqp_strided_slice_params *params, const int8_t *input,
                                    int8_t *output);

/* Nearest-neighbour resize of NHWC: output (n, oh, ow, c) = input (n, y_map[oh], x_map[ow], c). */
mcuqp_status mcuqp_resize_nearest_neighbor_s8(const mcuqp_dims *input_dims, const int8_t *input,
                                              const int32_t *y_map, const int32_t *x_map,
                                              const mcuqp_dims *output_dims, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* MCUQP_NN_H */
