/*
 * Instruction classes for mcuqp's QEMU plugin: a decoder of Thumb / Thumb-2 encodings
 * (ARMv7-M, ARMv7E-M DSP, ARMv8.1-M MVE and low-overhead loops) into the classes that the
 * per-CPU cycle tables of mcuqp/target/cycles.py price. The order of this enum is the order
 * of the counters in the plugin's output and of CLASSES in cycles.py.
 */
#ifndef MCUQP_INSN_CLASS_H
#define MCUQP_INSN_CLASS_H

#include <stddef.h>
#include <stdint.h>

enum mcuqp_insn_class {
    MCUQP_K_ALU,        /* data processing, moves, compares, IT, hints, system */
    MCUQP_K_LOAD,       /* one load: LDR*, LDREX, VLDR (FP) */
    MCUQP_K_STORE,      /* one store */
    MCUQP_K_LDM,        /* load multiple: LDM, POP, LDRD, VLDM / VPOP */
    MCUQP_K_STM,        /* store multiple: STM, PUSH, STRD, VSTM / VPUSH */
    MCUQP_K_LDM_REGS,   /* registers transferred by the load multiples (a sum, not instructions) */
    MCUQP_K_STM_REGS,   /* registers transferred by the store multiples */
    MCUQP_K_MUL,        /* 32-bit result multiplies and MACs: MUL, MLA, MLS, SMLAD, SMLABB, SMMUL... */
    MCUQP_K_MUL_LONG,   /* 64-bit result: SMULL, UMULL, SMLAL, UMLAL, SMLALD... */
    MCUQP_K_SIMD,       /* DSP-extension SIMD and saturation: SADD16, SXTB16, SXTAB16, QADD, SSAT, PKHBT... */
    MCUQP_K_DIV,        /* SDIV, UDIV */
    MCUQP_K_BRANCH,     /* branch instructions: B, BL, BX, CBZ, TBB, LE... (POP {pc} and LDR pc count as loads) */
    MCUQP_K_TAKEN,      /* the branches after which execution did not continue in sequence */
    MCUQP_K_MVE,        /* other Helium vector instructions (and VCTP, VPST) */
    MCUQP_K_MVE_MUL,    /* Helium multiplies: VMUL, VMLA, VMLADAV, VMLALDAV, VQDMULH, VQRDMULH */
    MCUQP_K_MVE_LOAD,   /* Helium loads, gathers included */
    MCUQP_K_MVE_STORE,  /* Helium stores, scatters included */
    MCUQP_K_FP,         /* scalar floating point and core <-> FP/vector register moves (VMOV, VMRS) */
    MCUQP_N_CLASSES
};

typedef struct {
    int cls;      /* enum mcuqp_insn_class (never MCUQP_K_TAKEN or a _REGS counter) */
    int regs;     /* registers of a load / store multiple, else 0 */
    int branch;   /* 1 when the instruction may change the flow (for taken-branch counting) */
} mcuqp_insn_info;

/* Decodes the `size`-byte (2 or 4) Thumb instruction at `bytes`. */
mcuqp_insn_info mcuqp_classify(const uint8_t *bytes, size_t size);

#endif /* MCUQP_INSN_CLASS_H */
