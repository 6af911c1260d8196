/*
 * Arm semihosting over "bkpt 0xAB" (Thumb), plus tiny number formatting so the
 * firmware needs no stdio. QEMU serves the calls when started with
 * -semihosting-config enable=on,target=native; file names are relative to its cwd.
 */
#include <string.h>

#include "mcuqp_platform.h"

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_FLEN = 0x0C,
    SYS_EXIT_EXTENDED = 0x20,
};

#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

static int32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

static uint32_t addr(const void *p)
{
    return (uint32_t)(uintptr_t)p;
}

int32_t mcuqp_sh_open(const char *name, int32_t mode)
{
    const uint32_t block[3] = {addr(name), (uint32_t)mode, (uint32_t)strlen(name)};
    return semihost(SYS_OPEN, block);
}

int32_t mcuqp_sh_close(int32_t handle)
{
    const uint32_t block[1] = {(uint32_t)handle};
    return semihost(SYS_CLOSE, block);
}

int32_t mcuqp_sh_read(int32_t handle, void *buf, uint32_t len)
{
    const uint32_t block[3] = {(uint32_t)handle, addr(buf), len};
    return semihost(SYS_READ, block);
}

int32_t mcuqp_sh_write(int32_t handle, const void *buf, uint32_t len)
{
    const uint32_t block[3] = {(uint32_t)handle, addr(buf), len};
    return semihost(SYS_WRITE, block);
}

int32_t mcuqp_sh_flen(int32_t handle)
{
    const uint32_t block[1] = {(uint32_t)handle};
    return semihost(SYS_FLEN, block);
}

void mcuqp_sh_write0(const char *text)
{
    (void)semihost(SYS_WRITE0, text);
}

void mcuqp_sh_exit(int32_t code)
{
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    for (;;) {
        (void)semihost(SYS_EXIT_EXTENDED, block);
    }
}

char *mcuqp_fmt_u32(char *dst, uint32_t v)
{
    char tmp[10];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0u);
    while (n > 0) {
        *dst++ = tmp[--n];
    }
    return dst;
}

char *mcuqp_fmt_i32(char *dst, int32_t v)
{
    if (v < 0) {
        *dst++ = '-';
        return mcuqp_fmt_u32(dst, 0u - (uint32_t)v);
    }
    return mcuqp_fmt_u32(dst, (uint32_t)v);
}

char *mcuqp_fmt_hex32(char *dst, uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    int shift;
    *dst++ = '0';
    *dst++ = 'x';
    for (shift = 28; shift >= 0; shift -= 4) {
        *dst++ = digits[(v >> shift) & 0xFu];
    }
    return dst;
}
