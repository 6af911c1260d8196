/*
 * Verification firmware: runs the generated model on every input of a semihosting file
 * and writes the outputs and run statistics back to the host.
 *
 * It uses the model the way an application does, with no buffer of its own: each input is
 * read straight into NAME_input() (the arena), NAME_invoke() runs, and the output is written
 * from NAME_output(). NAME is MCUQP_VERIFY_MODEL (default `model`: model.h, model_invoke,
 * MODEL_INPUT_SIZE...), its upper-case form MCUQP_VERIFY_MODEL_UPPER and its header
 * MCUQP_VERIFY_HEADER; mcuqp.target.build.verify_defines(NAME) gives the three.
 *
 * Files, in QEMU's working directory:
 *   MCUQP_VERIFY_INPUT   N * NAME_INPUT_SIZE bytes, read
 *   MCUQP_VERIFY_OUTPUT  N * NAME_OUTPUT_SIZE bytes, written
 *   MCUQP_VERIFY_STATS   "key value" text lines, written
 */
#include <stdint.h>
#include <string.h>

#include "mcuqp_platform.h"
#include "mcuqp_profile.h"

#ifndef MCUQP_VERIFY_MODEL
#define MCUQP_VERIFY_MODEL model
#define MCUQP_VERIFY_MODEL_UPPER MODEL
#define MCUQP_VERIFY_HEADER "model.h"
#endif

#include MCUQP_VERIFY_HEADER

#define MCUQP_PASTE2(a, b) a##b
#define MCUQP_PASTE(a, b) MCUQP_PASTE2(a, b)
#define MODEL_IN_SIZE MCUQP_PASTE(MCUQP_VERIFY_MODEL_UPPER, _INPUT_SIZE)
#define MODEL_OUT_SIZE MCUQP_PASTE(MCUQP_VERIFY_MODEL_UPPER, _OUTPUT_SIZE)
#define model_input_ptr MCUQP_PASTE(MCUQP_VERIFY_MODEL, _input)
#define model_output_ptr MCUQP_PASTE(MCUQP_VERIFY_MODEL, _output)
#define model_invoke_fn MCUQP_PASTE(MCUQP_VERIFY_MODEL, _invoke)
#define MCUQP_STR2(x) #x
#define MCUQP_STR(x) MCUQP_STR2(x)

#ifndef MCUQP_VERIFY_INPUT
#define MCUQP_VERIFY_INPUT "mcuqp_input.bin"
#endif
#ifndef MCUQP_VERIFY_OUTPUT
#define MCUQP_VERIFY_OUTPUT "mcuqp_output.bin"
#endif
#ifndef MCUQP_VERIFY_STATS
#define MCUQP_VERIFY_STATS "mcuqp_stats.txt"
#endif

static char *put(char *dst, const char *s)
{
    size_t n = strlen(s);
    memcpy(dst, s, n);
    return dst + n;
}

/* An error message is built piecewise ("what", number, "what"...) then printed. */
static char msg[200] = MCUQP_MSG_PREFIX;
static char *msg_end = msg + sizeof MCUQP_MSG_PREFIX - 1;

static void msg_text(const char *s)
{
    size_t room = (size_t)(msg + sizeof msg - 2 - msg_end);
    size_t n = strlen(s);
    n = n < room ? n : room;
    memcpy(msg_end, s, n);
    msg_end += n;
}

static void msg_num(int32_t v)
{
    char digits[12];
    char *e = mcuqp_fmt_i32(digits, v);
    *e = '\0';
    msg_text(digits);
}

static int msg_fail(int code)
{
    *msg_end++ = '\n';
    *msg_end = '\0';
    mcuqp_sh_write0(msg);
    return code;
}

static int fail(int code, const char *what, int32_t number, const char *tail)
{
    msg_text(what);
    msg_num(number);
    msg_text(tail);
    return msg_fail(code);
}

static char *stat_line(char *dst, const char *key, uint32_t value)
{
    dst = put(dst, key);
    *dst++ = ' ';
    dst = mcuqp_fmt_u32(dst, value);
    *dst++ = '\n';
    return dst;
}

/* noinline: its text buffer must not enlarge main's frame, which counts in the stack
 * high-water mark (measured before this runs). */
__attribute__((noinline)) static int write_stats(uint32_t inferences, uint32_t stack_used)
{
    char text[256];
    char *e = text;
    int32_t fd;

    e = stat_line(e, "inferences", inferences);
    e = stat_line(e, "input_size", (uint32_t)MODEL_IN_SIZE);
    e = stat_line(e, "output_size", (uint32_t)MODEL_OUT_SIZE);
    e = stat_line(e, "stack_used", stack_used);
    e = stat_line(e, "stack_size", mcuqp_stack_size());
    fd = mcuqp_sh_open(MCUQP_VERIFY_STATS, MCUQP_SH_MODE_WB);
    if (fd < 0) {
        return fail(MCUQP_EXIT_IO, "cannot create the stats file, code ", fd, " (" MCUQP_VERIFY_STATS ")");
    }
    if (mcuqp_sh_write(fd, text, (uint32_t)(e - text)) != 0 || mcuqp_sh_close(fd) != 0) {
        msg_text("writing the stats file failed");
        return msg_fail(MCUQP_EXIT_IO);
    }
    return MCUQP_EXIT_OK;
}

int main(void)
{
    int32_t in_fd;
    int32_t out_fd;
    int32_t len;
    int32_t count;
    int32_t k;
    uint32_t stack_used;

    in_fd = mcuqp_sh_open(MCUQP_VERIFY_INPUT, MCUQP_SH_MODE_RB);
    if (in_fd < 0) {
        return fail(MCUQP_EXIT_IO, "cannot open the input file, code ", in_fd, " (" MCUQP_VERIFY_INPUT ")");
    }
    len = mcuqp_sh_flen(in_fd);
    if (len <= 0 || len % MODEL_IN_SIZE != 0) {
        return fail(MCUQP_EXIT_INPUT, "input file length ", len,
                    " is not a positive multiple of " MCUQP_STR(MODEL_IN_SIZE));
    }
    count = len / MODEL_IN_SIZE;
    out_fd = mcuqp_sh_open(MCUQP_VERIFY_OUTPUT, MCUQP_SH_MODE_WB);
    if (out_fd < 0) {
        return fail(MCUQP_EXIT_IO, "cannot create the output file, code ", out_fd, " (" MCUQP_VERIFY_OUTPUT ")");
    }

    for (k = 0; k < count; ++k) {
        int rc;
        if (mcuqp_sh_read(in_fd, model_input_ptr(), MODEL_IN_SIZE) != 0) {
            return fail(MCUQP_EXIT_IO, "short read of input ", k, "");
        }
        mcuqp_profile_begin();
        rc = model_invoke_fn();
        mcuqp_profile_end();
        if (rc != 0) {
            msg_text(MCUQP_STR(model_invoke_fn) " returned ");
            msg_num(rc);
            return fail(MCUQP_EXIT_MODEL, " on input ", k, "");
        }
        if (mcuqp_sh_write(out_fd, model_output_ptr(), MODEL_OUT_SIZE) != 0) {
            return fail(MCUQP_EXIT_IO, "short write of output ", k, "");
        }
    }
    if (mcuqp_sh_close(in_fd) != 0 || mcuqp_sh_close(out_fd) != 0) {
        return fail(MCUQP_EXIT_IO, "closing the data files failed after ", count, " inferences");
    }
    stack_used = mcuqp_stack_used();
    if (stack_used >= mcuqp_stack_size()) {
        return fail(MCUQP_EXIT_STACK, "stack exhausted: all ", (int32_t)mcuqp_stack_size(),
                    " bytes used; raise the stack size");
    }
    return write_stats((uint32_t)count, stack_used);
}
