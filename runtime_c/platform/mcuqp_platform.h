/*
 * mcuqp bare-metal platform for the QEMU Cortex-M boards: semihosting, exit codes,
 * stack measurement. No heap, no stdio.
 */
#ifndef MCUQP_PLATFORM_H
#define MCUQP_PLATFORM_H

#include <stdint.h>

/*
 * Guest exit codes (QEMU's own process exit status). 1 is left to QEMU, which uses it
 * for its own errors; mcuqp/target/qemu.py keeps the same table.
 */
#define MCUQP_EXIT_OK 0
#define MCUQP_EXIT_IO 2          /* a semihosting file operation failed */
#define MCUQP_EXIT_INPUT 3       /* input file length is not a positive multiple of the input size */
#define MCUQP_EXIT_MODEL 4       /* the model's NAME_invoke returned non-zero */
#define MCUQP_EXIT_STACK 5       /* the painted stack was used up completely */
#define MCUQP_EXIT_NMI 10
#define MCUQP_EXIT_HARDFAULT 11
#define MCUQP_EXIT_MEMMANAGE 12
#define MCUQP_EXIT_BUSFAULT 13
#define MCUQP_EXIT_USAGEFAULT 14
#define MCUQP_EXIT_SECUREFAULT 15
#define MCUQP_EXIT_UNEXPECTED 16 /* an exception with no handler (SVC, SysTick, IRQ...) */

/* Every console message of the guest starts with this, so the host can pick it out. */
#define MCUQP_MSG_PREFIX "mcuqp-guest: "

/* Semihosting SYS_OPEN modes (ISO C fopen modes "rb" and "wb"). */
#define MCUQP_SH_MODE_RB 1
#define MCUQP_SH_MODE_WB 5

int32_t mcuqp_sh_open(const char *name, int32_t mode);             /* handle, or -1 */
int32_t mcuqp_sh_close(int32_t handle);                            /* 0, or -1 */
int32_t mcuqp_sh_read(int32_t handle, void *buf, uint32_t len);    /* bytes NOT read */
int32_t mcuqp_sh_write(int32_t handle, const void *buf, uint32_t len); /* bytes NOT written */
int32_t mcuqp_sh_flen(int32_t handle);                             /* length, or -1 */
void mcuqp_sh_write0(const char *text);                            /* to the host console */
__attribute__((noreturn)) void mcuqp_sh_exit(int32_t code);        /* SYS_EXIT_EXTENDED */

/* Decimal / hexadecimal text of v into dst (no terminator); returns the end. */
char *mcuqp_fmt_u32(char *dst, uint32_t v);
char *mcuqp_fmt_i32(char *dst, int32_t v);
char *mcuqp_fmt_hex32(char *dst, uint32_t v);

/* Bytes of stack ever used (painted-stack method) and bytes reserved for it. */
uint32_t mcuqp_stack_used(void);
uint32_t mcuqp_stack_size(void);

#endif /* MCUQP_PLATFORM_H */
