"""MLPerf Tiny int8 reference models on every core: generated, built, run on QEMU, checked
bit-exact, instructions counted by class and priced by the cycle tables (mcuqp bench).

For the Cortex-M3 (mps2-an385, portable kernels), M4 (mps2-an386, DSP kernels), M7
(mps2-an500, DSP kernels) and M55 (mps3-an547, Helium kernels), the fastest plan
(`--plan fastest`), the smallest (`--plan smallest`: depthwise and 1x1 convs in place where
that lowers the arena) and the default (`--plan auto`: the fastest plan whose RAM fits the
board, else the smallest; recorded as a copy of the plan it chose, with "default_is").
Writes benchmarks/results/mlperf_tiny.json (one record per model, board and plan) and
benchmarks/results/mlperf_tiny.md (the README tables). Instruction counts and byte
sizes are deterministic; cycles are a first-order estimate (mcuqp/target/cycles.py). Needs
../shared/models/mlperf_tiny/.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models" / "mlperf_tiny"
RESULTS = ROOT / "benchmarks" / "results"

MODELS = {  # name: (file, TFLite Micro reference arena from shared/README.md)
    "kws": ("kws_ref_model.tflite", 200 * 1024),
    "vww": ("vww_96_int8.tflite", 200 * 1024),
    "ic": ("pretrainedResnet_quant.tflite", 100 * 1024),
    "ad": ("ad01_int8.tflite", 10 * 1024),
}
BOARDS = {"mps2-an385": "M3", "mps2-an386": "M4", "mps2-an500": "M7", "mps3-an547": "M55"}
# CMSIS-NN v7.0.0-43, arm-none-eabi-gcc 12.2 -O3, whole model, instructions per inference on
# the same QEMU boards (issue 11); no M7 figures were measured.
CMSIS_NN = {
    "M3": {"kws": 10.54e6, "ic": 41.75e6, "vww": 32.07e6, "ad": 0.95e6},
    "M4": {"kws": 7.84e6, "ic": 29.87e6, "vww": 24.71e6, "ad": 0.58e6},
    "M55": {"kws": 1.78e6, "ic": 4.81e6, "vww": 6.42e6, "ad": 0.15e6},
}
# Issue 11's targets for the default plan, as a fraction of CMSIS-NN's instructions.
TARGET_RATIO = {"M3": 0.75, "M4": 0.60, "M55": 0.75}


def measure(n_inputs: int) -> list[dict]:
    import tempfile

    from mcuqp import api
    from mcuqp.bench import bench

    records = []
    for name, (file, tflm_arena) in MODELS.items():
        loaded = api.load(SHARED / file, n_random=n_inputs, seed=0)
        lower_bound = api.compile_plan(loaded).lower_bound_bytes
        for board, core in BOARDS.items():
            with tempfile.TemporaryDirectory() as tmp:  # which plan the default (auto) gives: no run needed
                default_is = api.compile(loaded, Path(tmp) / "m", board=board, project=False).plan_kind
            by_plan = {}
            for plan in ("fastest", "smallest"):
                res = bench(loaded, board=board, plan=plan, n_inputs=n_inputs)
                rec = {
                    "model": name, "file": file, "board": board, "core": core, "plan": plan,
                    "bit_exact": res.bit_exact, "compared": res.inputs,
                    "flash_bytes": res.flash_bytes, "model_flash_bytes": res.model_flash_bytes,
                    "ram_bytes": res.ram_bytes, "arena_bytes": res.arena_bytes, "stack_bytes": res.stack_bytes,
                    "lower_bound_bytes": lower_bound, "tflm_reference_arena_bytes": tflm_arena,
                    "instructions_per_inference": res.instructions, "macs": res.macs,
                    "instructions_per_mac": round(res.instructions_per_mac, 3),
                    "estimated_cycles": round(res.cycles), "estimated_cycles_per_mac": round(res.cycles_per_mac, 3),
                    "estimated_ms_at_board_clock": round(res.milliseconds() or 0.0, 3),
                    "estimated_ms_at_120_mhz": round(res.milliseconds(120_000_000) or 0.0, 3),
                    "cycle_table": res.cycle_table, "classes": res.classes,
                    "layers": [{"name": ly.name, "op": ly.op, "kernel": ly.kernel, "macs": ly.macs,
                                "instructions": ly.instructions, "estimated_cycles": round(ly.cycles)}
                               for ly in res.layers],
                    "cmsis_nn_instructions": CMSIS_NN.get(core, {}).get(name),
                }
                records.append(rec)
                by_plan[plan] = rec
                print(json.dumps({k: v for k, v in rec.items() if k not in ("layers", "classes")}), file=sys.stderr)
            records.append({**by_plan[default_is], "plan": "default", "default_is": default_is})
    return records


def _m(x: float) -> str:
    return f"{x / 1e6:.3f} M" if x < 1e6 else f"{x / 1e6:.2f} M"


def table(records: list[dict]) -> str:
    by = {(r["model"], r["core"], r["plan"]): r for r in records}
    lines = [
        "| model | core | bit-exact | default plan | instr./inference: default / fastest / smallest | CMSIS-NN "
        "| default / CMSIS-NN (target) | instr./MAC: default / smallest | est. cycles/MAC: default / smallest "
        "| est. ms at 120 MHz (default) | model flash: fastest / smallest | arena: fastest / smallest |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        for core in BOARDS.values():
            d, f, s = (by[(name, core, p)] for p in ("default", "fastest", "smallest"))
            ok = "yes" if f["bit_exact"] and s["bit_exact"] else "NO"
            ref = d["cmsis_nn_instructions"]
            ratio = "n/a"
            if ref:
                target = TARGET_RATIO[core]
                r = d["instructions_per_inference"] / ref
                ratio = f"{r:.2f}x ({'met' if r <= target else 'missed'} <= {target:.2f}x)"
            lines.append(
                f"| {name} | {core} | {ok} ({d['compared']} inputs) | {d['default_is']} | "
                f"{_m(d['instructions_per_inference'])} / {_m(f['instructions_per_inference'])} / "
                f"{_m(s['instructions_per_inference'])} | {_m(ref) if ref else 'n/a'} | {ratio} | "
                f"{d['instructions_per_mac']:.2f} / {s['instructions_per_mac']:.2f} | "
                f"{d['estimated_cycles_per_mac']:.2f} / {s['estimated_cycles_per_mac']:.2f} | "
                f"{d['estimated_ms_at_120_mhz']:.1f} | {f['model_flash_bytes']:,} / {s['model_flash_bytes']:,} | "
                f"{f['arena_bytes']:,} / {s['arena_bytes']:,} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--inputs", type=int, default=10, help="random int8 inputs compared per model, board and plan")
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"mlperf_tiny: {SHARED} not found (the shared models folder sits beside the repository)", file=sys.stderr)
        return 2
    records = measure(args.inputs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mlperf_tiny.json").write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / "mlperf_tiny.md").write_text(table(records))
    print(table(records))
    return 0 if all(r["bit_exact"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
