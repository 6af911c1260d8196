/*
 * mcuqp instruction-count plugin for qemu-system-arm.
 *
 *   -plugin mcuqp_icount.so,begin=ADDR,mark=ADDR,end=ADDR,out=FILE
 *
 * Counts every executed guest instruction, and each time the CPU reaches the entry of
 * mcuqp_profile_begin / _mark / _end (addresses without the Thumb bit) appends a line
 * "b COUNT", "m COUNT" or "e COUNT" to FILE, COUNT being the number of instructions
 * executed before that one. At exit it appends "t TOTAL".
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

#include "mcuqp_qemu_plugin_api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = MCUQP_QEMU_PLUGIN_API_VERSION;
QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv);

enum { MARK_BEGIN, MARK_LAYER, MARK_END, N_MARKS };

static const char mark_tag[N_MARKS] = {'b', 'm', 'e'};
static const char *const mark_arg[N_MARKS] = {"begin=", "mark=", "end="};

static uint64_t insn_count; /* one vCPU: M-profile boards are single-core */
static uint64_t mark_addr[N_MARKS];
static FILE *out;

static void on_mark(unsigned int vcpu_index, void *userdata)
{
    const uintptr_t kind = (uintptr_t)userdata;
    (void)vcpu_index;
    fprintf(out, "%c %" PRIu64 "\n", mark_tag[kind], insn_count);
    insn_count += 1;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    const size_t n = qemu_plugin_tb_n_insns(tb);
    size_t i;
    (void)id;
    for (i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        const uint64_t pc = qemu_plugin_insn_vaddr(insn);
        uintptr_t kind;
        for (kind = 0; kind < N_MARKS && mark_addr[kind] != pc; ++kind) {
        }
        if (kind < N_MARKS) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, (void *)kind);
        } else {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &insn_count, 1);
        }
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
    snprintf(text, sizeof text, "mcuqp_icount: %s; expected begin=ADDR,mark=ADDR,end=ADDR,out=FILE\n", problem);
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
