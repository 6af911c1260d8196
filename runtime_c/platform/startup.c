/*
 * Cortex-M startup for the mcuqp firmware: vector table, reset handler, fault handlers
 * and the painted-stack high-water measurement. Linker symbols come from link.ld.in.
 */
#include <stdint.h>
#include <string.h>

#include "mcuqp_platform.h"

#define MCUQP_STACK_PAINT 0xDEADC0DEu

#define SCB_CCR (*(volatile uint32_t *)0xE000ED14u)
#define SCB_SHCSR (*(volatile uint32_t *)0xE000ED24u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

#define CCR_UNALIGN_TRP (1u << 3)
#define CCR_DIV_0_TRP (1u << 4)
#define SHCSR_FAULTS_ENA ((1u << 16) | (1u << 17) | (1u << 18) | (1u << 19))
#define CPACR_CP10_CP11_FULL (0xFu << 20)

extern uint32_t __stack_limit[];
extern uint32_t __stack_top[];
extern uint32_t __data_start[];
extern uint32_t __data_end[];
extern const uint32_t __data_load[];
extern uint32_t __bss_start[];
extern uint32_t __bss_end[];
extern uint32_t __ram_start[];
extern uint32_t __ram_end[];

int main(void);

void Reset_Handler(void);
void NMI_Handler(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void SecureFault_Handler(void);
void Default_Handler(void);
__attribute__((noreturn, used)) void mcuqp_fault_report(const uint32_t *frame, uint32_t code);

typedef void (*mcuqp_vector)(void);

/* Only the system exceptions: the firmware enables no interrupt. */
__attribute__((section(".vectors"), used)) const mcuqp_vector mcuqp_vector_table[16] = {
    (mcuqp_vector)(uintptr_t)__stack_top,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler, /* reserved on v7-M */
    0,
    0,
    0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    Default_Handler, /* SysTick */
};

void Reset_Handler(void)
{
    volatile uint32_t *p;
    uint32_t sp;

#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* Before any compiler-generated FP or MVE instruction can run. */
    SCB_CPACR |= CPACR_CP10_CP11_FULL;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
#if defined(__ARM_ARCH_8M_MAIN__)
    /* v8-M: a stack overflow becomes a UsageFault instead of silent corruption. */
    __asm__ volatile("msr msplim, %0" : : "r"(__stack_limit));
#endif
    SCB_CCR |= CCR_DIV_0_TRP;
#if defined(__ARM_ARCH_6M__)
    /* An ARMv6-M build verified on an ARMv7-M stand-in: trap unaligned accesses, which
     * the M0+ always does (its CCR.UNALIGN_TRP reads as one and ignores the write). */
    SCB_CCR |= CCR_UNALIGN_TRP;
#endif
    SCB_SHCSR |= SHCSR_FAULTS_ENA;

    memcpy(__data_start, __data_load, (size_t)((char *)__data_end - (char *)__data_start));
    memset(__bss_start, 0, (size_t)((char *)__bss_end - (char *)__bss_start));

    /* Paint the unused stack below our own frame; volatile keeps GCC from turning the
     * loop into a memset call whose frame would sit inside the painted range. */
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (p = __stack_limit; (uintptr_t)p < (uintptr_t)sp; ++p) {
        *p = MCUQP_STACK_PAINT;
    }

    mcuqp_sh_exit(main());
}

uint32_t mcuqp_stack_size(void)
{
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)__stack_limit);
}

uint32_t mcuqp_stack_used(void)
{
    const volatile uint32_t *p = __stack_limit;
    while ((uintptr_t)p < (uintptr_t)__stack_top && *p == MCUQP_STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

static const char *fault_name(uint32_t code)
{
    switch (code) {
    case MCUQP_EXIT_NMI: return "NMI";
    case MCUQP_EXIT_HARDFAULT: return "HardFault";
    case MCUQP_EXIT_MEMMANAGE: return "MemManage fault";
    case MCUQP_EXIT_BUSFAULT: return "BusFault";
    case MCUQP_EXIT_USAGEFAULT: return "UsageFault";
    case MCUQP_EXIT_SECUREFAULT: return "SecureFault";
    default: return "unexpected exception";
    }
}

void mcuqp_fault_report(const uint32_t *frame, uint32_t code)
{
    char msg[160];
    char *e = msg;
    const char *name = fault_name(code);
    const uintptr_t f = (uintptr_t)frame;

    memcpy(e, MCUQP_MSG_PREFIX, sizeof MCUQP_MSG_PREFIX - 1);
    e += sizeof MCUQP_MSG_PREFIX - 1;
    memcpy(e, name, strlen(name));
    e += strlen(name);
    /* The stacked frame is only readable if the stack pointer was still inside RAM. */
    if ((f & 3u) == 0u && f >= (uintptr_t)__ram_start && f + 32u <= (uintptr_t)__ram_end) {
        memcpy(e, " pc=", 4);
        e = mcuqp_fmt_hex32(e + 4, frame[6]);
        memcpy(e, " lr=", 4);
        e = mcuqp_fmt_hex32(e + 4, frame[5]);
    }
    memcpy(e, " cfsr=", 6);
    e = mcuqp_fmt_hex32(e + 6, SCB_CFSR);
    memcpy(e, " hfsr=", 6);
    e = mcuqp_fmt_hex32(e + 6, SCB_HFSR);
    *e++ = '\n';
    *e = '\0';
    mcuqp_sh_write0(msg);
    mcuqp_sh_exit((int32_t)code);
}

/* Each handler passes the faulting frame (MSP) and its exit code to the reporter. It
 * stays on the current stack, below the frame, unless the stack is nearly used up (a
 * fault caused by overflow): then it restarts at the stack top so the report can run. */
#define MCUQP_STR2(x) #x
#define MCUQP_STR(x) MCUQP_STR2(x)
#define MCUQP_FAULT_HANDLER(fn, code)                                                     \
    __attribute__((naked)) void fn(void)                                                  \
    {                                                                                     \
        __asm__ volatile("mrs r0, msp\n\t"                                                \
                         "ldr r2, =__stack_limit + 512\n\t"                               \
                         "cmp r0, r2\n\t"                                                 \
                         "bhs 1f\n\t"                                                     \
                         "ldr r2, =__stack_top\n\t"                                       \
                         "msr msp, r2\n"                                                  \
                         "1:\n\t"                                                         \
                         "movs r1, #" MCUQP_STR(code) "\n\t"                              \
                         "b mcuqp_fault_report\n\t"                                       \
                         ".ltorg");                                                       \
    }

MCUQP_FAULT_HANDLER(NMI_Handler, MCUQP_EXIT_NMI)
MCUQP_FAULT_HANDLER(HardFault_Handler, MCUQP_EXIT_HARDFAULT)
MCUQP_FAULT_HANDLER(MemManage_Handler, MCUQP_EXIT_MEMMANAGE)
MCUQP_FAULT_HANDLER(BusFault_Handler, MCUQP_EXIT_BUSFAULT)
MCUQP_FAULT_HANDLER(UsageFault_Handler, MCUQP_EXIT_USAGEFAULT)
MCUQP_FAULT_HANDLER(SecureFault_Handler, MCUQP_EXIT_SECUREFAULT)
MCUQP_FAULT_HANDLER(Default_Handler, MCUQP_EXIT_UNEXPECTED)
