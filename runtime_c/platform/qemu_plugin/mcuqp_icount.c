/*
 * mcuqp instruction-count plugin for qemu-system-arm.
 *
 *   -plugin mcuqp_icount.so,begin=ADDR,mark=ADDR,end=ADDR,out=FILE[,classes=on]
 *
 * Counts every executed guest instruction, and each time the CPU reaches the entry of
 * mcuqp_profile_begin / _mark / _end (addresses without the Thumb bit) appends a line
 * "b COUNT", "m COUNT" or "e COUNT" to FILE, COUNT being the number of instructions
 * executed before that one. At exit it appends "t TOTAL".
 *
 * With classes=on each of those lines also carries the MCUQP_N_CLASSES counters of
 * mcuqp_insn_class.h at that point (instructions by class, registers moved by load / store
 * multiples, taken branches): "m COUNT C0 C1 ...". A branch counts as taken when the next
 * block to run does not start right after it (a block always ends at a branch); this costs
 * one callback per executed block.
 *
 * Counting is per instruction, never per block: a translation block can stop part way
 * (exception, semihosting call, fault), and an instruction is counted only when the
 * CPU actually reaches it. The inline add is emitted in front of each instruction;
 * a marker instruction gets a callback instead, which reads the counter and then
 * counts the marker itself, so the recorded value does not depend on the order in
 * which QEMU would run an inline op and a callback attached to the same instruction.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcuqp_insn_class.h"
#include "mcuqp_qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = MCUQP_QEMU_PLUGIN_API_VERSION;
QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv);

enum { MARK_BEGIN, MARK_LAYER, MARK_END, N_MARKS };

static const char mark_tag[N_MARKS] = {'b', 'm', 'e'};
static const char *const mark_arg[N_MARKS] = {"begin=", "mark=", "end="};

static uint64_t insn_count; /* one vCPU: M-profile boards are single-core */
static uint64_t mark_addr[N_MARKS];
static FILE *out;
static int with_classes;
static uint64_t class_count[MCUQP_N_CLASSES];

/* A translated block, for taken-branch counting (kept for the whole run). */
typedef struct {
    uint64_t start;  /* its first instruction */
    uint64_t next;   /* the address after its last instruction */
    int ends_branch; /* its last instruction is a branch */
} block_info;

static const block_info *last_block;

static void on_block(unsigned int vcpu_index, void *userdata)
{
    const block_info *b = (const block_info *)userdata;
    (void)vcpu_index;
    if (last_block != NULL && last_block->ends_branch && last_block->next != b->start) {
        class_count[MCUQP_K_TAKEN] += 1;
    }
    last_block = b;
}

/* userdata of a marker: its kind in the low 8 bits, the instruction's class info above. */
static void count_classes(mcuqp_insn_info k)
{
    class_count[k.cls] += 1;
    if (k.cls == MCUQP_K_LDM) {
        class_count[MCUQP_K_LDM_REGS] += (uint64_t)k.regs;
    } else if (k.cls == MCUQP_K_STM) {
        class_count[MCUQP_K_STM_REGS] += (uint64_t)k.regs;
    }
}

static void on_mark(unsigned int vcpu_index, void *userdata)
{
    const uintptr_t u = (uintptr_t)userdata;
    const uintptr_t kind = u & 0xFFu;
    int i;
    (void)vcpu_index;
    fprintf(out, "%c %" PRIu64, mark_tag[kind], insn_count);
    if (with_classes) {
        for (i = 0; i < MCUQP_N_CLASSES; ++i) {
            fprintf(out, " %" PRIu64, class_count[i]);
        }
        mcuqp_insn_info k;
        k.cls = (int)((u >> 8) & 0xFFu);
        k.regs = (int)((u >> 16) & 0xFFu);
        k.branch = (int)((u >> 24) & 1u);
        count_classes(k);
    }
    fputc('\n', out);
    insn_count += 1;
}

/* The inline counter updates of one (non-marker) instruction. */
static void count_inline(struct qemu_plugin_insn *insn, mcuqp_insn_info k)
{
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &class_count[k.cls], 1);
    if (k.cls == MCUQP_K_LDM && k.regs > 0) {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &class_count[MCUQP_K_LDM_REGS],
                                                   (uint64_t)k.regs);
    } else if (k.cls == MCUQP_K_STM && k.regs > 0) {
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &class_count[MCUQP_K_STM_REGS],
                                                   (uint64_t)k.regs);
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    const size_t n = qemu_plugin_tb_n_insns(tb);
    mcuqp_insn_info last = {MCUQP_K_ALU, 0, 0};
    uint64_t next = qemu_plugin_tb_vaddr(tb);
    size_t i;
    (void)id;
    for (i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const uint64_t pc = qemu_plugin_insn_vaddr(insn);
        const size_t size = qemu_plugin_insn_size(insn);
        uintptr_t kind;
        last = with_classes ? mcuqp_classify((const uint8_t *)qemu_plugin_insn_data(insn), size) : last;
        next = pc + size;
        for (kind = 0; kind < N_MARKS && mark_addr[kind] != pc; ++kind) {
        }
        if (kind < N_MARKS) {
            const uintptr_t u = kind | ((uintptr_t)last.cls << 8) | ((uintptr_t)(last.regs & 0xFF) << 16) |
                                ((uintptr_t)(last.branch != 0) << 24);
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, (void *)u);
        } else {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &insn_count, 1);
            if (with_classes) {
                count_inline(insn, last);
            }
        }
    }
    if (with_classes) {
        block_info *b = malloc(sizeof *b); /* lives as long as the translation: never freed */
        if (b == NULL) {
            return;
        }
        b->start = qemu_plugin_tb_vaddr(tb);
        b->next = next;
        b->ends_branch = last.branch;
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
    }
}

static void on_qemu_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    fprintf(out, "t %" PRIu64 "\n", insn_count);
    fclose(out);
    out = NULL;
}

static int usage(const char *problem)
{
    char text[256];
    snprintf(text, sizeof text, "mcuqp_icount: %s; expected begin=ADDR,mark=ADDR,end=ADDR,out=FILE[,classes=on]\n",
             problem);
    qemu_plugin_outs(text);
    return -1;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    const char *path = NULL;
    int have[N_MARKS] = {0, 0, 0};
    int i;
    int k;

    (void)info;
    for (i = 0; i < argc; ++i) {
        int known = 0;
        for (k = 0; k < N_MARKS; ++k) {
            const size_t len = strlen(mark_arg[k]);
            if (strncmp(argv[i], mark_arg[k], len) == 0) {
                char *end;
                mark_addr[k] = strtoull(argv[i] + len, &end, 0) & ~(uint64_t)1; /* drop the Thumb bit */
                if (*end != '\0' || end == argv[i] + len) {
                    return usage("bad address");
                }
                have[k] = known = 1;
            }
        }
        if (strcmp(argv[i], "classes=on") == 0) {
            with_classes = 1;
            known = 1;
        }
        if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
            known = 1;
        }
        if (!known) {
            return usage("unknown argument");
        }
    }
    if (!path || !have[MARK_BEGIN] || !have[MARK_LAYER] || !have[MARK_END]) {
        return usage("missing argument");
    }
    if (mark_addr[MARK_BEGIN] == mark_addr[MARK_LAYER] || mark_addr[MARK_BEGIN] == mark_addr[MARK_END] ||
        mark_addr[MARK_LAYER] == mark_addr[MARK_END]) {
        return usage("the three marker addresses must differ");
    }
    out = fopen(path, "w");
    if (!out) {
        return usage("cannot create the output file");
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_qemu_exit, NULL);
    return 0;
}
