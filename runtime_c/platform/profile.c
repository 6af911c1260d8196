/*
 * Profiling marker functions (see mcuqp_profile.h). The bodies are empty on purpose:
 * only their entry addresses matter to the QEMU plugin. noipa keeps GCC from inlining
 * them, dropping calls it could prove side-effect free, or folding the three identical
 * bodies into one address; the asm keeps the calls ordered against memory accesses.
 */
#include "mcuqp_profile.h"

#define MCUQP_MARKER __attribute__((noinline, noipa, used))

MCUQP_MARKER void mcuqp_profile_begin(void)
{
    __asm__ volatile("" ::: "memory");
}

MCUQP_MARKER void mcuqp_profile_mark(int32_t layer)
{
    __asm__ volatile("" : : "r"(layer) : "memory");
}

MCUQP_MARKER void mcuqp_profile_end(void)
{
    __asm__ volatile("" ::: "memory");
}
