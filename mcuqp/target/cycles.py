"""Estimated cycles from executed instructions counted by class.

QEMU executes instructions, it has no timing. The plugin (runtime_c/platform/qemu_plugin/)
counts executed instructions by class (mcuqp_insn_class.h; CLASSES below is the same order),
and a per-CPU table of cycles per class, read from Arm's Technical Reference Manuals, turns
them into a first-order estimate:

    cycles = sum over classes of count * cost  (+ registers moved by LDM/STM, + taken branches)

Sources (cycle counts of the instruction-set summary tables):
- Cortex-M3: Cortex-M3 Technical Reference Manual r2p0 (Arm DDI 0337), section 18.2,
  Table 18-1 "Cortex-M3 instruction set summary": ALU 1; LDR 2; STR 2; LDM/STM 1+N; MUL 1,
  MLA/MLS 2; UMULL/SMULL 3-5, UMLAL/SMLAL 4-7 (early termination); SDIV/UDIV 2-12; taken
  branch 1+P with P the pipeline refill of 1-3 cycles.
- Cortex-M4: Cortex-M4 Technical Reference Manual r0p1 (Arm DDI 0439B), section 3.3.1,
  Table 3-1 "Cortex-M4 instruction set summary": as the M3, but every multiply and MAC
  (32-bit and 64-bit results, SMLAD, SMLAL...) is 1 cycle and the DSP SIMD and saturating
  instructions are 1 cycle.
- Cortex-M7: the Cortex-M7 TRM (Arm DDI 0489) gives no per-instruction table; it describes a
  six-stage in-order pipeline that can issue two instructions per cycle (two ALUs, one
  load/store pipe with a 64-bit path to the TCMs, one MAC pipe) and a branch predictor. The
  table below is a coarse dual-issue model: ALU and SIMD 0.5, loads and stores 1, multiples
  1 + N/2, multiplies 1, predicted taken branches 1 extra.
- Cortex-M55: Cortex-M55 TRM (Arm 101051) and its Software Optimization Guide: scalar
  instructions as the M4 (LDRD/STRD and the 64-bit TCM interface move two registers per
  cycle); Helium is "dual-beat": a 128-bit vector instruction occupies its unit for two
  cycles, and a load/store can overlap the arithmetic of the neighbouring instruction. The
  table charges 2 cycles per vector instruction and 1 more for a vector load or store that
  cannot overlap, i.e. no overlap is credited: an upper bound of the vector part.

Limits (all deliberate): no wait states (code and data in zero-wait-state SRAM or TCM, as on
the MPS2/MPS3 images), no caches, no bus contention, no interlocks between dependent
instructions beyond what the tables fold in, taken branches at the middle of the TRM's
refill range, divides at the middle of theirs. Expect the estimate within roughly +-30 % of
a real part running from zero-wait-state memory; it is a way to compare kernels and cores,
not a measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

# The plugin's counters, in the order of enum mcuqp_insn_class.
CLASSES = (
    "alu", "load", "store", "load_multiple", "store_multiple", "load_multiple_regs", "store_multiple_regs",
    "mul", "mul_long", "simd", "div", "branch", "taken_branch", "mve", "mve_mul", "mve_load", "mve_store", "fp",
)
# Counters that are not instructions (registers moved, branches counted again as taken).
NOT_INSTRUCTIONS = frozenset({"load_multiple_regs", "store_multiple_regs", "taken_branch"})


@dataclass(frozen=True)
class CycleTable:
    cpu: str
    source: str
    cost: dict[str, float]  # cycles per counted unit of each class (missing classes: 1)


_M4 = {
    "alu": 1, "load": 2, "store": 2, "load_multiple": 1, "store_multiple": 1, "load_multiple_regs": 1,
    "store_multiple_regs": 1, "mul": 1, "mul_long": 1, "simd": 1, "div": 7, "branch": 1, "taken_branch": 2,
    "fp": 1,
}

TABLES: dict[str, CycleTable] = {
    "cortex-m3": CycleTable("cortex-m3", "Cortex-M3 TRM r2p0 (DDI 0337) Table 18-1", {
        **_M4, "mul": 1.5, "mul_long": 5, "simd": 1}),
    "cortex-m4": CycleTable("cortex-m4", "Cortex-M4 TRM r0p1 (DDI 0439B) Table 3-1", dict(_M4)),
    "cortex-m7": CycleTable("cortex-m7", "Cortex-M7 TRM (DDI 0489): dual-issue model, no TRM table", {
        **_M4, "alu": 0.5, "simd": 0.5, "load": 1, "store": 1, "load_multiple_regs": 0.5, "store_multiple_regs": 0.5,
        "taken_branch": 1, "fp": 0.5}),
    "cortex-m55": CycleTable("cortex-m55", "Cortex-M55 TRM (101051) and Software Optimization Guide: dual-beat MVE", {
        **_M4, "load_multiple_regs": 0.5, "store_multiple_regs": 0.5, "mve": 2, "mve_mul": 2, "mve_load": 3,
        "mve_store": 3}),
}

# MLPerf Tiny v1.1 closed division, fastest published Cortex-M4 result (STM32L4R5 at 120 MHz):
# about 1.6 to 2.2 cycles per MAC across the four models (shared/README.md).
MLPERF_M4_CYCLES_PER_MAC = (1.6, 2.2)
MLPERF_M4_CLOCK_HZ = 120_000_000


def table_for(cpu: str) -> CycleTable:
    try:
        return TABLES[cpu]
    except KeyError:
        raise KeyError(f"no cycle table for {cpu!r}; known: {', '.join(sorted(TABLES))}") from None


def as_dict(counts: list[int] | tuple[int, ...]) -> dict[str, int]:
    if len(counts) != len(CLASSES):
        raise ValueError(f"expected {len(CLASSES)} class counters, got {len(counts)}; rebuild the QEMU plugin")
    return dict(zip(CLASSES, (int(c) for c in counts)))


def instructions(classes: dict[str, int]) -> int:
    """Executed instructions in a class breakdown (the non-instruction counters left out)."""
    return sum(v for k, v in classes.items() if k not in NOT_INSTRUCTIONS)


def estimate_cycles(classes: dict[str, int], cpu: str) -> float:
    """Estimated cycles of a class breakdown on `cpu` (see the module's limits)."""
    cost = table_for(cpu).cost
    return float(sum(n * cost.get(k, 1.0) for k, n in classes.items()))
