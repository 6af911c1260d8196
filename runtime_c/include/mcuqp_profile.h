/*
 * Profiling markers for the QEMU instruction-count plugin.
 *
 * Generated model code calls MCUQP_LAYER_HOOK(i) after layer i. Without MCUQP_PROFILE
 * the hook compiles to nothing; with it, it calls mcuqp_profile_mark(i). The verification
 * firmware calls mcuqp_profile_begin() right before and mcuqp_profile_end() right after
 * each model invocation. The three functions (runtime_c/platform/profile.c) are never
 * inlined, cloned or merged, so each keeps its own entry address: the plugin records
 * the executed-instruction count whenever the CPU reaches one of those addresses.
 */
#ifndef MCUQP_PROFILE_H
#define MCUQP_PROFILE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void mcuqp_profile_begin(void);
void mcuqp_profile_mark(int32_t layer);
void mcuqp_profile_end(void);

#ifdef MCUQP_PROFILE
#define MCUQP_LAYER_HOOK(i) mcuqp_profile_mark((int32_t)(i))
#else
#define MCUQP_LAYER_HOOK(i) ((void)0)
#endif

#ifdef __cplusplus
}
#endif

#endif /* MCUQP_PROFILE_H */
