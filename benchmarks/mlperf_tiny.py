"""MLPerf Tiny int8 reference models: generated, built, run on QEMU and checked bit-exact.

Writes benchmarks/results/mlperf_tiny.json (one record per model and board) and
benchmarks/results/mlperf_tiny.md (the README table). Instruction counts and byte sizes are
deterministic. Needs ../shared/models/mlperf_tiny/.
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
BOARDS = ("mps2-an386", "mps3-an547")


def measure(n_inputs: int) -> list[dict]:
    from mcuqp import api
    from mcuqp.plan.cost import graph_macs

    records = []
    for name, (file, tflm_arena) in MODELS.items():
        path = SHARED / file
        loaded = api.load(path, n_random=n_inputs, seed=0)
        macs = graph_macs(loaded.graph)
        lower_bound = api.compile_plan(loaded).lower_bound_bytes
        for board in BOARDS:
            for inplace in (True, False):
                res = api.verify(loaded, board=board, n_inputs=n_inputs, inplace=inplace)
                rec = {
                    "model": name,
                    "file": file,
                    "board": board,
                    "inplace": inplace,
                    "bit_exact": res.bit_exact,
                    "compared": res.compared,
                    "flash_bytes": res.flash_bytes,
                    "model_flash_bytes": res.model_flash_bytes,
                    "ram_bytes": res.ram_bytes,
                    "model_ram_bytes": res.model_ram_bytes,
                    "arena_bytes": res.arena_bytes,
                    "stack_bytes": res.stack_bytes,
                    "lower_bound_bytes": lower_bound,
                    "tflm_reference_arena_bytes": tflm_arena,
                    "instructions_per_inference": res.instructions_per_inference,
                    "macs": macs,
                    "instructions_per_mac": round(res.instructions_per_inference / macs, 3),
                }
                records.append(rec)
                print(json.dumps(rec), file=sys.stderr)
    return records


def table(records: list[dict]) -> str:
    by = {(r["model"], r["board"], r["inplace"]): r for r in records}
    lines = [
        "| model | bit-exact (QEMU) | flash: image / model | arena: smallest / fastest (lower bound; TFLM arena) | stack | RAM: image / model | MACs | instr./MAC M4: smallest / fastest | instr./MAC M55: smallest / fastest | instr./inference M4 (fastest) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in MODELS:
        small, fast = by[(name, BOARDS[0], True)], by[(name, BOARDS[0], False)]
        m55s, m55f = by[(name, BOARDS[1], True)], by[(name, BOARDS[1], False)]
        runs = [r for r in records if r["model"] == name]
        ok = f"{'yes' if all(r['bit_exact'] for r in runs) else 'NO'} ({len(runs)} builds x {small['compared']} inputs)"
        lines.append(
            f"| {name} | {ok} | {small['flash_bytes']:,} / {small['model_flash_bytes']:,} | "
            f"{small['arena_bytes']:,} / {fast['arena_bytes']:,} ({small['lower_bound_bytes']:,}; "
            f"{small['tflm_reference_arena_bytes']:,}) | {small['stack_bytes']:,} | "
            f"{small['ram_bytes']:,} / {small['model_ram_bytes']:,} | {small['macs']:,} | "
            f"{small['instructions_per_mac']:.2f} / {fast['instructions_per_mac']:.2f} | "
            f"{m55s['instructions_per_mac']:.2f} / {m55f['instructions_per_mac']:.2f} | "
            f"{fast['instructions_per_inference']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--inputs", type=int, default=20, help="random int8 inputs compared per model and board")
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
