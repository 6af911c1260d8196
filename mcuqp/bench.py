"""`mcuqp bench`: where the instructions and the estimated cycles of an inference go.

Builds the model's verification firmware for a board, runs a few inputs on QEMU with the
plugin counting instructions by class (mcuqp.target.cycles), checks the outputs against the
numpy reference, and reports per layer: op, shapes, kernel variant, MACs, instructions,
instructions per MAC, share of the inference, weight and scratch bytes and estimated cycles
(the CPU's cycle table: a first-order estimate, see mcuqp.target.cycles for its limits), and
for the whole inference cycles per MAC and milliseconds at the board's clock beside MLPerf
Tiny's published Cortex-M4 figures.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mcuqp.api import LoadedModel, compile
from mcuqp.errors import McuqpError

from mcuqp.ops.registry import KernelVariant
from mcuqp.plan.choice import PlanMode
from mcuqp.plan.cost import op_macs
from mcuqp.plan.memory import MemoryPlan
from mcuqp.reference.interpreter import run as reference_run
from mcuqp.target import cycles
from mcuqp.target.boards import Board, load_board



@dataclass
class BenchLayer:
    index: int
    name: str
    op: str
    input_shapes: list[list[int]]
    output_shape: list[int]
    kernel: str  # runtime_c/src-relative source of the kernel, e.g. "mve/conv2d_s8.c"
    macs: int
    instructions: int
    instructions_per_mac: float | None
    share: float  # of the inference's instructions
    weight_bytes: int
    scratch_bytes: int
    cycles: float
    classes: dict[str, int] = field(default_factory=dict)


@dataclass
class BenchResult:
    model: str
    board: str
    cpu: str
    plan: str  # the plan that ran: "fastest" or "smallest" (in place where it lowers the arena)
    bit_exact: bool
    inputs: int
    layers: list[BenchLayer]
    instructions: int  # per inference, epilogue included
    macs: int
    cycles: float
    cycle_table: str
    clock_hz: int | None
    classes: dict[str, int]
    flash_bytes: int = 0  # the verification image: text + rodata + data
    model_flash_bytes: int = 0  # the part from the generated model and its kernels
    ram_bytes: int = 0  # data + bss + measured stack
    arena_bytes: int = 0
    stack_bytes: int = 0

    @property
    def instructions_per_mac(self) -> float:
        return self.instructions / self.macs if self.macs else float("nan")

    @property
    def cycles_per_mac(self) -> float:
        return self.cycles / self.macs if self.macs else float("nan")

    def milliseconds(self, clock_hz: int | None = None) -> float | None:
        hz = clock_hz or self.clock_hz
        return 1000.0 * self.cycles / hz if hz else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(instructions_per_mac=self.instructions_per_mac, cycles_per_mac=self.cycles_per_mac,
                 milliseconds_at_board_clock=self.milliseconds(),
                 milliseconds_at_120_mhz=self.milliseconds(cycles.MLPERF_M4_CLOCK_HZ),
                 mlperf_m4_cycles_per_mac=list(cycles.MLPERF_M4_CYCLES_PER_MAC))
        return d

    def table(self) -> str:
        head = ("#", "layer", "op", "in -> out", "kernel", "MACs", "instr.", "instr./MAC", "share", "weights B",
                "scratch B", "est. cycles")
        rows = [head]
        for ly in self.layers:
            shapes = " ".join("x".join(map(str, s)) for s in ly.input_shapes) + " -> " + "x".join(
                map(str, ly.output_shape))
            rows.append((str(ly.index), ly.name, ly.op, shapes, ly.kernel, f"{ly.macs:,}", f"{ly.instructions:,}",
                         f"{ly.instructions_per_mac:.2f}" if ly.instructions_per_mac is not None else "-",
                         f"{100 * ly.share:.1f} %", f"{ly.weight_bytes:,}", f"{ly.scratch_bytes:,}",
                         f"{ly.cycles:,.0f}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lo, hi = cycles.MLPERF_M4_CYCLES_PER_MAC
        ms_board = self.milliseconds()
        clock = f"{self.clock_hz / 1e6:g} MHz" if self.clock_hz else "unknown clock"
        lines += [
            "",
            f"{self.model} on {self.board} ({self.cpu}), {self.plan} plan, bit-exact on {self.inputs} inputs: "
            f"{'yes' if self.bit_exact else 'NO'}",
            f"instructions/inference {self.instructions:,}  MACs {self.macs:,}  instructions/MAC "
            f"{self.instructions_per_mac:.2f}",
            f"estimated cycles {self.cycles:,.0f}  cycles/MAC {self.cycles_per_mac:.2f}  "
            + (f"{ms_board:.2f} ms at {clock}, " if ms_board is not None else "")
            + f"{self.milliseconds(cycles.MLPERF_M4_CLOCK_HZ):.2f} ms at 120 MHz",
            f"MLPerf Tiny v1.1 fastest published Cortex-M4 (120 MHz): about {lo}-{hi} cycles/MAC",
            f"cycle table: {self.cycle_table}; first-order estimate without wait states or caches "
            "(mcuqp.target.cycles)",
        ]
        return "\n".join(lines)


def _kernel_name(kernel: KernelVariant | None) -> str:
    return kernel.source if kernel is not None else "-"


def bench(
    model: LoadedModel,
    *,
    board: str | Board,
    plan: PlanMode = "auto",
    inplace: bool | None = None,
    ram_bytes: int | None = None,
    n_inputs: int = 2,
    rounding: str = "double",
    timeout: float = 900.0,
    formats: dict[str, str] | None = None,
    name: str | None = None,
) -> BenchResult:
    """Per-layer instructions, classes and estimated cycles of `model` on `board`."""
    from mcuqp.target.build import build_firmware, platform_include_dirs, platform_sources, verify_defines
    from mcuqp.target.mapfile import flash_bytes_of
    from mcuqp.target.qemu import run_firmware

    b = board if isinstance(board, Board) else load_board(board)
    cpu_table = cycles.table_for(b.cpu)
    if model.verify_inputs is None or len(model.verify_inputs) == 0:
        raise McuqpError("no inputs to run: pass --calib for a float model")
    x = np.ascontiguousarray(model.verify_inputs[:n_inputs])
    n = len(x)
    graph = model.graph
    ref = reference_run(graph, x, rounding=rounding)
    with tempfile.TemporaryDirectory(prefix="mcuqp-bench-") as work:
        lib = compile(model, Path(work) / "model", board=b.name, rounding=rounding, plan=plan, inplace=inplace,
                      ram_bytes=ram_bytes, formats=formats, name=name)
        sources = [f for f in lib.files if f.suffix == ".c"] + platform_sources(b)
        defines = ["MCUQP_PROFILE", *verify_defines(lib.name)] + (["MCUQP_SINGLE_ROUNDING=1"] if rounding == "single" else [])
        fw = build_firmware(sources, [lib.out_dir, *platform_include_dirs()], b, Path(work) / "build",
                            defines=defines)
        run = run_firmware(fw, b, x.reshape(n, -1), graph.output.size, timeout=timeout, count_classes=True)
        model_flash = flash_bytes_of(fw.map, {f.stem + ".o" for f in lib.files if f.suffix == ".c"})
    bit_exact = bool(np.array_equal(run.outputs.reshape(ref.shape), ref))
    per_layer = np.asarray(run.layer_classes, dtype=np.float64).mean(axis=0)  # (layers + epilogue, classes)
    total_classes = cycles.as_dict([int(round(v)) for v in per_layer.sum(axis=0)])
    total_instr = int(round(float(np.mean(run.instructions))))
    layers = []
    mem = lib.plan
    for i, op_index in enumerate(mem.order):
        op = graph.ops[op_index]
        k = cycles.as_dict([int(round(v)) for v in per_layer[i]])
        instr = cycles.instructions(k)
        macs = op_macs(graph, op)
        tensors = [graph.tensors[t] for t in op.inputs]
        layers.append(BenchLayer(
            index=i, name=op.name, op=op.kind.value,
            input_shapes=[list(t.shape) for t in tensors if not t.is_const],
            output_shape=list(graph.tensors[op.outputs[0]].shape),
            kernel=_kernel_name(lib.generated.layers[i].kernel),
            macs=macs, instructions=instr, instructions_per_mac=instr / macs if macs else None,
            share=instr / total_instr if total_instr else 0.0,
            weight_bytes=(gl.weight_bytes + gl.index_bytes + sum(int(t.data.nbytes) for t in tensors[2:] if t.is_const)
                          if (gl := lib.generated.layers[i]).weight_format
                          else sum(int(t.data.nbytes) for t in tensors if t.is_const)),
            scratch_bytes=int(mem.scratch.get(op_index, 0)),
            cycles=cycles.estimate_cycles(k, b.cpu), classes=k,
        ))
    return BenchResult(
        model=graph.name, board=b.name, cpu=b.cpu, plan=lib.plan_kind, bit_exact=bit_exact,
        inputs=n, layers=layers, instructions=total_instr, macs=sum(ly.macs for ly in layers),
        cycles=cycles.estimate_cycles(total_classes, b.cpu), cycle_table=cpu_table.source, clock_hz=b.clock_hz,
        classes=total_classes, flash_bytes=fw.flash_bytes, model_flash_bytes=model_flash,
        ram_bytes=fw.static_ram_bytes + run.stack_bytes, arena_bytes=mem.arena_bytes, stack_bytes=run.stack_bytes,
    )
