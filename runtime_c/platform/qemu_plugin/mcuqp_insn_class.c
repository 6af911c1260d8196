/*
 * Thumb / Thumb-2 instruction classes (see mcuqp_insn_class.h). Encodings follow the Armv7-M
 * and Armv8-M Architecture Reference Manuals (T32 instruction set encoding tables). The
 * classes are what a first-order cycle model needs, not a full decoder: undefined encodings
 * fall into MCUQP_K_ALU.
 */
#include "mcuqp_insn_class.h"

static int popcount16(uint32_t x)
{
    int n = 0;
    x &= 0xFFFFu;
    while (x != 0u) {
        n += (int)(x & 1u);
        x >>= 1;
    }
    return n;
}

static mcuqp_insn_info info(int cls, int regs, int branch)
{
    mcuqp_insn_info r;
    r.cls = cls;
    r.regs = regs;
    r.branch = branch;
    return r;
}

static mcuqp_insn_info classify16(uint32_t op)
{
    if ((op & 0xFF07u) == 0x4700u) { /* BX, BLX (register) */
        return info(MCUQP_K_BRANCH, 0, 1);
    }
    if ((op & 0xFC87u) == 0x4487u) { /* ADD / MOV pc, Rm */
        return info(MCUQP_K_BRANCH, 0, 1);
    }
    if ((op & 0xF000u) == 0xD000u) { /* B<cond>; SVC and UDF for cond 111x */
        return ((op >> 9) & 7u) == 7u ? info(MCUQP_K_ALU, 0, 0) : info(MCUQP_K_BRANCH, 0, 1);
    }
    if ((op & 0xF800u) == 0xE000u || (op & 0xF500u) == 0xB100u) { /* B, CBZ / CBNZ */
        return info(MCUQP_K_BRANCH, 0, 1);
    }
    if ((op & 0xFE00u) == 0xBC00u) { /* POP */
        return info(MCUQP_K_LDM, popcount16(op & 0x1FFu), (op & 0x100u) != 0u);
    }
    if ((op & 0xFE00u) == 0xB400u) { /* PUSH */
        return info(MCUQP_K_STM, popcount16(op & 0x1FFu), 0);
    }
    if ((op & 0xF000u) == 0xC000u) { /* STM / LDM */
        return info((op & 0x0800u) ? MCUQP_K_LDM : MCUQP_K_STM, popcount16(op & 0xFFu), 0);
    }
    if ((op & 0xF000u) == 0x5000u) { /* load / store, register offset */
        return info(((op >> 9) & 7u) < 3u ? MCUQP_K_STORE : MCUQP_K_LOAD, 0, 0);
    }
    if ((op & 0xE000u) == 0x6000u || (op & 0xE000u) == 0x8000u) { /* immediate and SP-relative */
        return info((op & 0x0800u) ? MCUQP_K_LOAD : MCUQP_K_STORE, 0, 0);
    }
    if ((op & 0xF800u) == 0x4800u) { /* LDR literal */
        return info(MCUQP_K_LOAD, 0, 0);
    }
    if ((op & 0xFFC0u) == 0x4340u) { /* MULS */
        return info(MCUQP_K_MUL, 0, 0);
    }
    return info(MCUQP_K_ALU, 0, 0);
}

/* EE / FE (and EF / FF) coprocessor-space data instructions: FP, or Helium on cp 14 / 15. */
static mcuqp_insn_info classify_cp_data(uint32_t hw1, uint32_t hw2)
{
    const uint32_t cp = (hw2 >> 8) & 0xFu;
    if ((hw1 & 0xEF00u) == 0xEF00u) { /* Helium vector data processing */
        return info(cp == 0x9u || cp == 0xBu ? MCUQP_K_MVE_MUL : MCUQP_K_MVE, 0, 0);
    }
    if (cp == 0xAu) {
        return info(MCUQP_K_FP, 0, 0);
    }
    if (cp == 0xBu) { /* VDUP, VMOV lane: vector register moves on Helium cores */
        return info((hw2 & 0x0010u) ? MCUQP_K_MVE : MCUQP_K_FP, 0, 0);
    }
    if ((hw1 & 0x00F0u) == 0x00F0u && (hw1 & 1u) == 0u && (hw2 & 0x0F01u) == 0x0F00u) { /* VMLADAV */
        return info(MCUQP_K_MVE_MUL, 0, 0);
    }
    if ((hw1 & 0x00E0u) == 0x0080u && (hw2 & 0x0F01u) == 0x0E00u) { /* VMLALDAV */
        return info(MCUQP_K_MVE_MUL, 0, 0);
    }
    if ((hw2 & 0x0F50u) == 0x0E40u && (hw1 & 1u) == 1u) { /* VMLA / VMLAS by a scalar */
        return info(MCUQP_K_MVE_MUL, 0, 0);
    }
    return info(MCUQP_K_MVE, 0, 0);
}

static mcuqp_insn_info classify32(uint32_t hw1, uint32_t hw2)
{
    if ((hw1 & 0xF800u) == 0xF000u && (hw2 & 0x8000u) != 0u) { /* branches, misc control, LOB */
        switch (hw2 & 0x5000u) {
        case 0x5000u: /* BL */
        case 0x1000u: /* B.W */
            return info(MCUQP_K_BRANCH, 0, 1);
        case 0x0000u: /* B<cond>.W, or MSR / MRS / hints / barriers for cond 111x */
            return ((hw1 >> 7) & 7u) == 7u ? info(MCUQP_K_ALU, 0, 0) : info(MCUQP_K_BRANCH, 0, 1);
        default: /* 0x4000: low-overhead loops, branch future, VCTP */
            if ((hw2 & 0xF001u) == 0xC001u) { /* LE, LETP, WLS, WLSTP */
                return info(MCUQP_K_BRANCH, 0, 1);
            }
            if ((hw2 & 0xF801u) == 0xE801u) { /* VCTP */
                return info(MCUQP_K_MVE, 0, 0);
            }
            return info(MCUQP_K_ALU, 0, 0); /* DLS, DLSTP, LCTP, BF */
        }
    }
    if ((hw1 & 0xFE40u) == 0xE800u) { /* LDM / STM (incl. PUSH.W / POP.W) */
        if (hw1 & 0x10u) {
            return info(MCUQP_K_LDM, popcount16(hw2), (hw2 & 0x8000u) != 0u);
        }
        return info(MCUQP_K_STM, popcount16(hw2), 0);
    }
    if ((hw1 & 0xFE40u) == 0xE840u) { /* LDRD / STRD, exclusives, TBB / TBH */
        if ((hw1 & 0xFFF0u) == 0xE8D0u && (hw2 & 0xFFE0u) == 0xF000u) {
            return info(MCUQP_K_BRANCH, 0, 1);
        }
        if ((hw1 & 0x0120u) != 0u) {
            return info((hw1 & 0x10u) ? MCUQP_K_LDM : MCUQP_K_STM, 2, 0);
        }
        return info((hw1 & 0x10u) ? MCUQP_K_LOAD : MCUQP_K_STORE, 0, 0);
    }
    if ((hw1 & 0xFE00u) == 0xF800u) { /* single loads and stores */
        if ((hw1 & 0x10u) == 0u) {
            return info(MCUQP_K_STORE, 0, 0);
        }
        if ((hw2 >> 12) == 0xFu) { /* Rt = pc: LDR pc (a branch), or PLD / PLI */
            return ((hw1 >> 5) & 3u) == 2u ? info(MCUQP_K_LOAD, 0, 1) : info(MCUQP_K_ALU, 0, 0);
        }
        return info(MCUQP_K_LOAD, 0, 0);
    }
    if ((hw1 & 0xFF80u) == 0xFB00u) {
        return info(MCUQP_K_MUL, 0, 0);
    }
    if ((hw1 & 0xFF80u) == 0xFB80u) {
        if ((hw1 & 0xFFD0u) == 0xFB90u && (hw2 & 0x00F0u) == 0x00F0u) { /* SDIV / UDIV */
            return info(MCUQP_K_DIV, 0, 0);
        }
        return info(MCUQP_K_MUL_LONG, 0, 0);
    }
    if ((hw1 & 0xFF00u) == 0xFA00u && (hw2 & 0xF000u) == 0xF000u) {
        if (hw1 & 0x80u) { /* parallel add / subtract, QADD / QSUB, misc */
            return info(MCUQP_K_SIMD, 0, 0);
        }
        if ((hw2 & 0x80u) && ((hw1 & 0x70u) == 0x20u || (hw1 & 0x70u) == 0x30u)) { /* SXT(A)B16, UXT(A)B16 */
            return info(MCUQP_K_SIMD, 0, 0);
        }
        return info(MCUQP_K_ALU, 0, 0);
    }
    if ((hw1 & 0xFB00u) == 0xF300u && (hw2 & 0x8000u) == 0u) { /* SSAT, SSAT16, USAT, USAT16 */
        const uint32_t op = (hw1 >> 4) & 0x1Fu;
        if (op == 0x10u || op == 0x12u || op == 0x18u || op == 0x1Au) {
            return info(MCUQP_K_SIMD, 0, 0);
        }
        return info(MCUQP_K_ALU, 0, 0);
    }
    if ((hw1 & 0xFFE0u) == 0xEAC0u) { /* PKHBT / PKHTB */
        return info(MCUQP_K_SIMD, 0, 0);
    }
    if ((hw1 & 0xEE00u) == 0xEC00u) { /* coprocessor loads / stores (FP and Helium) */
        const uint32_t cp = (hw2 >> 8) & 0xFu;
        const int load = (hw1 & 0x10u) != 0u;
        if (cp == 0xAu || cp == 0xBu) {
            if ((hw1 & 0xFFE0u) == 0xEC40u) { /* VMOV between two core registers and FP */
                return info(MCUQP_K_FP, 0, 0);
            }
            if ((hw1 & 0x0120u) == 0x0100u) { /* VLDR / VSTR */
                return info(load ? MCUQP_K_LOAD : MCUQP_K_STORE, 0, 0);
            }
            const int regs = (int)(hw2 & 0xFFu) / (cp == 0xBu ? 2 : 1);
            return info(load ? MCUQP_K_LDM : MCUQP_K_STM, regs, 0);
        }
        return info(load ? MCUQP_K_MVE_LOAD : MCUQP_K_MVE_STORE, 0, 0);
    }
    if ((hw1 & 0xEE00u) == 0xEE00u) {
        return classify_cp_data(hw1, hw2);
    }
    return info(MCUQP_K_ALU, 0, 0);
}

mcuqp_insn_info mcuqp_classify(const uint8_t *bytes, size_t size)
{
    const uint32_t hw1 = (uint32_t)bytes[0] | ((uint32_t)bytes[1] << 8);
    if (size < 4u) {
        return classify16(hw1);
    }
    return classify32(hw1, (uint32_t)bytes[2] | ((uint32_t)bytes[3] << 8));
}
