/*
 * mcuqp Helium (MVE) 3x3 depthwise pieces shared by runtime_c/src/mve/depthwise_conv2d_s8.c
 * and depthwise_conv2d_s8_inplace.c (internal): a pass of up to DW3_G channels reads three
 * input rows of a tile of up to DW3_TILE output pixels from a stack buffer in which every
 * column outside the input holds the input zero point (whose term is 0), so that border
 * pixels need no code of their own; the filter taps of the pass sit beside them.
 * Requires dilation 1 and depth multiplier 1; stride 1 or 2.
 */
#ifndef MCUQP_MVE_DW3_H
#define MCUQP_MVE_DW3_H

#include "mcuqp_mve.h"

#define DW3_G 16    /* channels per pass */
#define DW3_TILE 16 /* output pixels per row tile */
#define DW3_COLS ((DW3_TILE - 1) * 2 + 3 + 8) /* tile columns at stride 2, plus slack for the last group */

typedef struct {
    int8_t store[3][DW3_COLS * DW3_G]; /* three input rows of a tile, column-major, zero point outside */
    int8_t *rows[3];                   /* the window's rows ky = 0, 1, 2: slots of store */
    int8_t w[9 * DW3_G];               /* the pass's filter taps, [ky][kx][g] */
} dw3_buf;

/* rows[k] = store[k]. */
MCUQP_INLINE void dw3_buf_init(dw3_buf *buf)
{
    /* cppcheck-suppress uninitvar ; only the slots' addresses are taken, nothing is read */
    buf->rows[0] = buf->store[0];
    /* cppcheck-suppress uninitvar ; as above */
    buf->rows[1] = buf->store[1];
    /* cppcheck-suppress uninitvar ; as above */
    buf->rows[2] = buf->store[2];
}

/* a_j += the 3x3 window of output pixel j (stride 1) whose rows start at r0, r1, r2 (columns
 * of DW3_G bytes) times the taps at w ([ky][kx][DW3_G]): four int32 lanes of channels. One asm
 * block of 9 x 13 instructions, because GCC 12 computes all 36 products of the C version
 * first and spills them. */
MCUQP_INLINE void dw3_mac4_s1(const int8_t *r0, const int8_t *r1, const int8_t *r2, const int8_t *w, int32x4_t *a0,
                              int32x4_t *a1, int32x4_t *a2, int32x4_t *a3)
{
    int32x4_t qw;
    int32x4_t qx;
    const int8_t *w2 = w + 64;
    __asm__(
            "vldrb.s32 %q[qw], [%[w], #0]\n"
            "vldrb.s32 %q[qx], [%[r0], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #16]\n"
            "vldrb.s32 %q[qx], [%[r0], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #32]\n"
            "vldrb.s32 %q[qx], [%[r0], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #80]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #48]\n"
            "vldrb.s32 %q[qx], [%[r1], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #64]\n"
            "vldrb.s32 %q[qx], [%[r1], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #80]\n"
            "vldrb.s32 %q[qx], [%[r1], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #80]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #96]\n"
            "vldrb.s32 %q[qx], [%[r2], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #112]\n"
            "vldrb.s32 %q[qx], [%[r2], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w2], #64]\n"
            "vldrb.s32 %q[qx], [%[r2], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #80]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
        : [a0] "+w"(*a0), [a1] "+w"(*a1), [a2] "+w"(*a2), [a3] "+w"(*a3), [qw] "=&w"(qw), [qx] "=&w"(qx)
        : [r0] "r"(r0), [r1] "r"(r1), [r2] "r"(r2), [w] "r"(w), [w2] "r"(w2)
        : "memory");
}

/* a_j += the 3x3 window of output pixel j (stride 2) whose rows start at r0, r1, r2 (columns
 * of DW3_G bytes) times the taps at w ([ky][kx][DW3_G]): four int32 lanes of channels. One asm
 * block of 9 x 13 instructions, because GCC 12 computes all 36 products of the C version
 * first and spills them. */
MCUQP_INLINE void dw3_mac4_s2(const int8_t *r0, const int8_t *r1, const int8_t *r2, const int8_t *w, int32x4_t *a0,
                              int32x4_t *a1, int32x4_t *a2, int32x4_t *a3)
{
    int32x4_t qw;
    int32x4_t qx;
    const int8_t *w2 = w + 64;
    __asm__(
            "vldrb.s32 %q[qw], [%[w], #0]\n"
            "vldrb.s32 %q[qx], [%[r0], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0b], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0b], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #16]\n"
            "vldrb.s32 %q[qx], [%[r0], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0b], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0b], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #32]\n"
            "vldrb.s32 %q[qx], [%[r0], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0b], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r0b], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #48]\n"
            "vldrb.s32 %q[qx], [%[r1], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1b], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1b], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #64]\n"
            "vldrb.s32 %q[qx], [%[r1], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1b], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1b], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #80]\n"
            "vldrb.s32 %q[qx], [%[r1], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1b], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r1b], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #96]\n"
            "vldrb.s32 %q[qx], [%[r2], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2b], #0]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2b], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w], #112]\n"
            "vldrb.s32 %q[qx], [%[r2], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2b], #16]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2b], #48]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
            "vldrb.s32 %q[qw], [%[w2], #64]\n"
            "vldrb.s32 %q[qx], [%[r2], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a0], %q[a0], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a1], %q[a1], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2b], #32]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a2], %q[a2], %q[qx]\n"
            "vldrb.s32 %q[qx], [%[r2b], #64]\n"
            "vmul.i32 %q[qx], %q[qx], %q[qw]\n"
            "vadd.i32 %q[a3], %q[a3], %q[qx]\n"
        : [a0] "+w"(*a0), [a1] "+w"(*a1), [a2] "+w"(*a2), [a3] "+w"(*a3), [qw] "=&w"(qw), [qx] "=&w"(qx)
        : [r0] "r"(r0), [r1] "r"(r1), [r2] "r"(r2), [w] "r"(w), [w2] "r"(w2), [r0b] "r"(r0 + 64), [r1b] "r"(r1 + 64),
          [r2b] "r"(r2 + 64)
        : "memory");
}

/* Four output pixels (the first `count` stored) whose windows start at buffer column col. */
#define DW3_GROUP_FN(name, S)                                                                                   \
    MCUQP_MVE_NOINLINE static void name(const dw3_buf *buf, int32_t col, const mcuqp_mve_block *b,            \
                                        const mcuqp_mve_out *o, int8_t *out, size_t out_c, int32_t count)      \
    {                                                                                                           \
        const int8_t *r0 = buf->rows[0] + col * DW3_G;                                                          \
        const int8_t *r1 = buf->rows[1] + col * DW3_G;                                                          \
        const int8_t *r2 = buf->rows[2] + col * DW3_G;                                                          \
        const int8_t *w = buf->w;                                                                               \
        const size_t o1 = count > 1 ? out_c : 0u;                                                               \
        const size_t o2 = count > 2 ? 2u * out_c : 0u;                                                          \
        const size_t o3 = count > 3 ? 3u * out_c : 0u;                                                          \
        int32_t i;                                                                                              \
        for (i = 0; i < b->n; i += 4) {                                                                         \
            const int32x4_t init = vld1q_s32(b->base + i);                                                      \
            int32x4_t a0 = init;                                                                                \
            int32x4_t a1 = init;                                                                                \
            int32x4_t a2 = init;                                                                                \
            int32x4_t a3 = init;                                                                                \
            dw3_mac4_s##S(r0, r1, r2, w, &a0, &a1, &a2, &a3);                                                   \
            const int32_t m = mcuqp_min_i32(4, b->n - i);                                                       \
            if (o->vec) {                                                                                       \
                mcuqp_mve_rq rq;                                                                                \
                rq.m = vld1q_s32(b->mult + i);                                                                  \
                rq.l = vld1q_s32(b->lsh + i);                                                                   \
                rq.r = vld1q_s32(b->rsh + i);                                                                   \
                const mve_pred16_t pm = vctp32q((uint32_t)m);                                                   \
                const int32x4_t y0 = mcuqp_mve_output(a0, &rq, o);                                              \
                const int32x4_t y1 = mcuqp_mve_output(a1, &rq, o);                                              \
                const int32x4_t y2 = mcuqp_mve_output(a2, &rq, o);                                              \
                const int32x4_t y3 = mcuqp_mve_output(a3, &rq, o);                                              \
                vstrbq_p_s32(out + i, y0, pm);                                                                  \
                vstrbq_p_s32(out + o1 + i, y1, count > 1 ? pm : 0);                                             \
                vstrbq_p_s32(out + o2 + i, y2, count > 2 ? pm : 0);                                             \
                vstrbq_p_s32(out + o3 + i, y3, count > 3 ? pm : 0);                                             \
            } else {                                                                                            \
                mcuqp_mve_store4(out, a0, b, i, m, o);                                                          \
                mcuqp_mve_store4(out + o1, a1, b, i, count > 1 ? m : 0, o);                                     \
                mcuqp_mve_store4(out + o2, a2, b, i, count > 2 ? m : 0, o);                                     \
                mcuqp_mve_store4(out + o3, a3, b, i, count > 3 ? m : 0, o);                                     \
            }                                                                                                   \
            r0 += 4;                                                                                            \
            r1 += 4;                                                                                            \
            r2 += 4;                                                                                            \
            w += 4;                                                                                             \
        }                                                                                                       \
    }

DW3_GROUP_FN(dw3_group_s1, 1)
DW3_GROUP_FN(dw3_group_s2, 2)

/* One output pixel whose window starts at buffer column col (any stride). */
MCUQP_MVE_NOINLINE static void dw3_one(const dw3_buf *buf, int32_t col, const mcuqp_mve_block *b,
                                       const mcuqp_mve_out *o, int8_t *out)
{
    const int8_t *r0 = buf->rows[0] + col * DW3_G;
    const int8_t *r1 = buf->rows[1] + col * DW3_G;
    const int8_t *r2 = buf->rows[2] + col * DW3_G;
    const int8_t *w = buf->w;
    int32_t i;
    for (i = 0; i < b->n; i += 4) {
        int32x4_t a = vld1q_s32(b->base + i);
        a = mcuqp_mve_mla(a, vldrbq_s32(r0), vldrbq_s32(w));
        a = mcuqp_mve_mla(a, vldrbq_s32(r0 + DW3_G), vldrbq_s32(w + DW3_G));
        a = mcuqp_mve_mla(a, vldrbq_s32(r0 + 2 * DW3_G), vldrbq_s32(w + 2 * DW3_G));
        a = mcuqp_mve_mla(a, vldrbq_s32(r1), vldrbq_s32(w + 3 * DW3_G));
        a = mcuqp_mve_mla(a, vldrbq_s32(r1 + DW3_G), vldrbq_s32(w + 4 * DW3_G));
        a = mcuqp_mve_mla(a, vldrbq_s32(r1 + 2 * DW3_G), vldrbq_s32(w + 5 * DW3_G));
        a = mcuqp_mve_mla(a, vldrbq_s32(r2), vldrbq_s32(w + 6 * DW3_G));
        a = mcuqp_mve_mla(a, vldrbq_s32(r2 + DW3_G), vldrbq_s32(w + 7 * DW3_G));
        a = mcuqp_mve_mla(a, vldrbq_s32(r2 + 2 * DW3_G), vldrbq_s32(w + 8 * DW3_G));
        mcuqp_mve_store4(out, a, b, i, mcuqp_min_i32(4, b->n - i), o);
        r0 += 4;
        r1 += 4;
        r2 += 4;
        w += 4;
    }
}

/* dst[u] for u < cols: the input row's column ix0 + u (channels of the pass, 0 past them), or
 * the zero point outside the row. */
MCUQP_INLINE void dw3_fill_row(int8_t *dst, const int8_t *src, size_t in_c, int32_t ix0, int32_t cols, int32_t in_w,
                               int8x16_t zv, mve_pred16_t pc)
{
    const int32_t lo = mcuqp_min_i32(mcuqp_max_i32(-ix0, 0), cols);
    const int32_t hi = mcuqp_max_i32(mcuqp_min_i32(in_w - ix0, cols), lo);
    const int8_t *x = src + (size_t)(ix0 + lo) * in_c;
    int32_t u;
    for (u = 0; u < lo; ++u, dst += DW3_G) {
        vstrbq_s8(dst, zv);
    }
    for (; u < hi; ++u, dst += DW3_G, x += in_c) {
        vstrbq_s8(dst, vldrbq_z_s8(x, pc));
    }
    for (; u < cols; ++u, dst += DW3_G) {
        vstrbq_s8(dst, zv);
    }
}

/* The block's base (bias + input_offset * sum of the 9 taps) and the pass's taps, for
 * channels [b->c0, b->c0 + b->n) of a 1HWC 3x3 filter with out_c channels. */
MCUQP_INLINE void dw3_prepare(dw3_buf *buf, mcuqp_mve_block *b, const int8_t *filter, const int32_t *bias,
                              int32_t out_c, int32_t input_offset)
{
    const mve_pred16_t pc = vctp8q((uint32_t)b->n);
    int32_t t;
    for (t = 0; t < 9; ++t) {
        vstrbq_s8(buf->w + t * DW3_G, vldrbq_z_s8(filter + (size_t)t * (size_t)out_c + (size_t)b->c0, pc));
    }
    int32_t i;
    for (i = 0; i < DW3_G; i += 4) {
        const mve_pred16_t pi = i < b->n ? vctp32q((uint32_t)(b->n - i)) : 0;
        int32x4_t sum = vdupq_n_s32(0);
        for (t = 0; t < 9; ++t) {
            sum = vaddq_s32(sum, vldrbq_s32(buf->w + t * DW3_G + i));
        }
        int32x4_t bv = bias != NULL ? vldrwq_z_s32(bias + b->c0 + i, pi) : vdupq_n_s32(0);
        bv = vmlaq_n_s32(bv, sum, input_offset);
        vst1q_s32(b->base + i, vpselq_s32(bv, vdupq_n_s32(0), pi));
    }
}

/* Five or six output pixels at stride 1 (a tile of 5 or 6, or a tile's last 5 or 6): one pass
 * instead of a group of four and a group that computes four for one or two. Each tap is one
 * weight load and, per pixel, a load, VMUL and VADD ("DW3_M" below); the taps' offsets are
 * literal (16 bytes per column, the weights past tap 3 from w + 64). The widening VLDRB.S32
 * takes only r0-r7 as its base ("l"). */
#define DW3_M(a, r, off)                                                                                        \
    "vldrb.s32 %q[qx], [%[" #r "], #" #off "]\n\tvmul.i32 %q[qx], %q[qx], %q[qw]\n\t"                      \
    "vadd.i32 %q[" #a "], %q[" #a "], %q[qx]\n\t"
#define DW3_W(p, off) "vldrb.s32 %q[qw], [%[" #p "], #" #off "]\n\t"
#define DW3_K5(r, o0, o1, o2, o3, o4) DW3_M(a0, r, o0) DW3_M(a1, r, o1) DW3_M(a2, r, o2) DW3_M(a3, r, o3) DW3_M(a4, r, o4)
#define DW3_ROW5(r) DW3_K5(r, 0, 16, 32, 48, 64)
#define DW3_ROW5_1(r) DW3_K5(r, 16, 32, 48, 64, 80)
#define DW3_ROW5_2(r) DW3_K5(r, 32, 48, 64, 80, 96)
#define DW3_TAPS5                                                                                               \
    DW3_W(w, 0) DW3_ROW5(r0) DW3_W(w, 16) DW3_ROW5_1(r0) DW3_W(w, 32) DW3_ROW5_2(r0)                            \
    DW3_W(w, 48) DW3_ROW5(r1) DW3_W(w2, 0) DW3_ROW5_1(r1) DW3_W(w2, 16) DW3_ROW5_2(r1)                         \
    DW3_W(w2, 32) DW3_ROW5(r2) DW3_W(w2, 48) DW3_ROW5_1(r2) DW3_W(w2, 64) DW3_ROW5_2(r2)
#define DW3_K6(r, o0, o1, o2, o3, o4, o5) DW3_K5(r, o0, o1, o2, o3, o4) DW3_M(a5, r, o5)
#define DW3_TAPS6                                                                                               \
    DW3_W(w, 0) DW3_K6(r0, 0, 16, 32, 48, 64, 80) DW3_W(w, 16) DW3_K6(r0, 16, 32, 48, 64, 80, 96)                \
    DW3_W(w, 32) DW3_K6(r0, 32, 48, 64, 80, 96, 112) DW3_W(w, 48) DW3_K6(r1, 0, 16, 32, 48, 64, 80)              \
    DW3_W(w2, 0) DW3_K6(r1, 16, 32, 48, 64, 80, 96) DW3_W(w2, 16) DW3_K6(r1, 32, 48, 64, 80, 96, 112)            \
    DW3_W(w2, 32) DW3_K6(r2, 0, 16, 32, 48, 64, 80) DW3_W(w2, 48) DW3_K6(r2, 16, 32, 48, 64, 80, 96)             \
    DW3_W(w2, 64) DW3_K6(r2, 32, 48, 64, 80, 96, 112)

/* The output stage of one pixel's channels i .. i + 3 (the first m stored at out + i); `fast`
 * (vector requantization, whole groups of four channels; 2: no left shift either) is decided
 * once per call. */
MCUQP_INLINE void dw3_out1(int8_t *out, int32x4_t acc, const mcuqp_mve_block *b, int32_t i, int32_t m,
                           const mcuqp_mve_out *o, int fast)
{
    if (fast == 2) {
        mcuqp_mve_rq rq;
        rq.m = vld1q_s32(b->mult + i);
        rq.r = vld1q_s32(b->rsh + i);
        vstrbq_s32(out + i, mcuqp_mve_output_nl(acc, &rq, o));
    } else if (fast) {
        mcuqp_mve_rq rq;
        rq.m = vld1q_s32(b->mult + i);
        rq.l = vld1q_s32(b->lsh + i);
        rq.r = vld1q_s32(b->rsh + i);
        vstrbq_s32(out + i, mcuqp_mve_output(acc, &rq, o));
    } else {
        mcuqp_mve_store4(out, acc, b, i, m, o);
    }
}

MCUQP_MVE_NOINLINE static void dw3_group5_s1(const dw3_buf *buf, int32_t col, const mcuqp_mve_block *b,
                                             const mcuqp_mve_out *o, int8_t *out, size_t out_c)
{
    const int8_t *r0 = buf->rows[0] + col * DW3_G;
    const int8_t *r1 = buf->rows[1] + col * DW3_G;
    const int8_t *r2 = buf->rows[2] + col * DW3_G;
    const int8_t *w = buf->w;
    const int fast = o->vec && (b->n & 3) == 0 ? 2 - b->lsh_any : 0;
    int32_t i;
    for (i = 0; i < b->n; i += 4, r0 += 4, r1 += 4, r2 += 4, w += 4) {
        const int32x4_t init = vld1q_s32(b->base + i);
        int32x4_t a0 = init;
        int32x4_t a1 = init;
        int32x4_t a2 = init;
        int32x4_t a3 = init;
        int32x4_t a4 = init;
        int32x4_t qw;
        int32x4_t qx;
        __asm__(DW3_TAPS5
                : [a0] "+w"(a0), [a1] "+w"(a1), [a2] "+w"(a2), [a3] "+w"(a3), [a4] "+w"(a4), [qw] "=&w"(qw),
                  [qx] "=&w"(qx)
                : [r0] "l"(r0), [r1] "l"(r1), [r2] "l"(r2), [w] "l"(w), [w2] "l"(w + 64)
                : "memory");
        const int32_t m = mcuqp_min_i32(4, b->n - i);
        dw3_out1(out, a0, b, i, m, o, fast);
        dw3_out1(out + out_c, a1, b, i, m, o, fast);
        dw3_out1(out + 2 * out_c, a2, b, i, m, o, fast);
        dw3_out1(out + 3 * out_c, a3, b, i, m, o, fast);
        dw3_out1(out + 4 * out_c, a4, b, i, m, o, fast);
    }
}

MCUQP_MVE_NOINLINE static void dw3_group6_s1(const dw3_buf *buf, int32_t col, const mcuqp_mve_block *b,
                                             const mcuqp_mve_out *o, int8_t *out, size_t out_c)
{
    const int8_t *r0 = buf->rows[0] + col * DW3_G;
    const int8_t *r1 = buf->rows[1] + col * DW3_G;
    const int8_t *r2 = buf->rows[2] + col * DW3_G;
    const int8_t *w = buf->w;
    const int fast = o->vec && (b->n & 3) == 0 ? 2 - b->lsh_any : 0;
    int32_t i;
    for (i = 0; i < b->n; i += 4, r0 += 4, r1 += 4, r2 += 4, w += 4) {
        const int32x4_t init = vld1q_s32(b->base + i);
        int32x4_t a0 = init;
        int32x4_t a1 = init;
        int32x4_t a2 = init;
        int32x4_t a3 = init;
        int32x4_t a4 = init;
        int32x4_t a5 = init;
        int32x4_t qw;
        int32x4_t qx;
        __asm__(DW3_TAPS6
                : [a0] "+w"(a0), [a1] "+w"(a1), [a2] "+w"(a2), [a3] "+w"(a3), [a4] "+w"(a4), [a5] "+w"(a5),
                  [qw] "=&w"(qw), [qx] "=&w"(qx)
                : [r0] "l"(r0), [r1] "l"(r1), [r2] "l"(r2), [w] "l"(w), [w2] "l"(w + 64)
                : "memory");
        const int32_t m = mcuqp_min_i32(4, b->n - i);
        dw3_out1(out, a0, b, i, m, o, fast);
        dw3_out1(out + out_c, a1, b, i, m, o, fast);
        dw3_out1(out + 2 * out_c, a2, b, i, m, o, fast);
        dw3_out1(out + 3 * out_c, a3, b, i, m, o, fast);
        dw3_out1(out + 4 * out_c, a4, b, i, m, o, fast);
        dw3_out1(out + 5 * out_c, a5, b, i, m, o, fast);
    }
}

/* The output pixels [0, tile) of a tile whose rows are in buf (stride sw), to out (pixel
 * 0, channel b->c0), out_c bytes per pixel. */
MCUQP_INLINE void dw3_tile(const dw3_buf *buf, int32_t tile, int32_t sw, const mcuqp_mve_block *b,
                           const mcuqp_mve_out *o, int8_t *out, size_t out_c)
{
    int32_t j;
    for (j = 0; j < tile; j += 4, out += 4 * out_c) {
        const int32_t count = mcuqp_min_i32(4, tile - j);
        if (sw == 1 && tile - j == 5) {
            dw3_group5_s1(buf, j, b, o, out, out_c);
            return;
        }
        if (sw == 1 && tile - j == 6) {
            dw3_group6_s1(buf, j, b, o, out, out_c);
            return;
        }
        if (count == 1) {
            dw3_one(buf, sw * j, b, o, out);
        } else if (sw == 1) {
            dw3_group_s1(buf, j, b, o, out, out_c, count);
        } else {
            dw3_group_s2(buf, 2 * j, b, o, out, out_c, count);
        }
    }
}

#endif /* MCUQP_MVE_DW3_H */
