"""mcuqp beside TFLite Micro + CMSIS-NN on the MLPerf Tiny int8 models: flash, RAM, instructions.

mcuqp's figures come from benchmarks/results/mlperf_tiny.json (run benchmarks/mlperf_tiny.py
first). The other side is quoted, not rebuilt here:

- CMSIS-NN instructions per inference: CMSIS-NN v7.0.0-43 built with arm-none-eabi-gcc 12.2 -O3,
  whole model, every layer bit-exact with TFLite Micro, counted on the same QEMU boards with the
  same instruction-count plugin as mcuqp (measured for mcuqp's issue 11).
- TFLite Micro RAM: the tensor-arena size the MLPerf Tiny reference code (mlcommons/tiny,
  TFLite Micro) sets for each model; it holds activations only (no stack, no interpreter state).
- TFLite Micro flash: at least the .tflite flatbuffer, which TFLite Micro keeps in flash as is;
  its interpreter and kernels come on top and are not measured here.

Writes benchmarks/results/side_by_side.json and side_by_side.md (the README table).
Needs ../shared/models/mlperf_tiny/ for the flatbuffer sizes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models" / "mlperf_tiny"
RESULTS = ROOT / "benchmarks" / "results"

# model: (file, TFLite Micro reference arena bytes, CMSIS-NN instructions per inference on M4, on M55)
QUOTED = {
    "kws": ("kws_ref_model.tflite", 200 * 1024, 7_840_000, 1_780_000),
    "vww": ("vww_96_int8.tflite", 200 * 1024, 24_710_000, 6_420_000),
    "ic": ("pretrainedResnet_quant.tflite", 100 * 1024, 29_870_000, 4_810_000),
    "ad": ("ad01_int8.tflite", 10 * 1024, 580_000, 150_000),
}
BOARDS = {"mps2-an386": "M4", "mps3-an547": "M55"}


def records() -> list[dict]:
    ours = json.loads((RESULTS / "mlperf_tiny.json").read_text())
    by = {(r["model"], r["board"], r["plan"] == "default"): r for r in ours if r["plan"] != "smallest"}
    out = []
    for model, (file, tflm_arena, cmsis_m4, cmsis_m55) in QUOTED.items():
        cmsis = {"mps2-an386": cmsis_m4, "mps3-an547": cmsis_m55}
        m4 = by[(model, "mps2-an386", True)]
        rec = {
            "model": model,
            "bit_exact": all(r["bit_exact"] for k, r in by.items() if k[0] == model),
            "mcuqp_model_flash_bytes": m4["model_flash_bytes"],
            "tflm_flatbuffer_bytes": (SHARED / file).stat().st_size,
            "mcuqp_model_ram_bytes": m4["arena_bytes"] + m4["stack_bytes"],
            "mcuqp_arena_bytes": m4["arena_bytes"],
            "tflm_reference_arena_bytes": tflm_arena,
        }
        for board, core in BOARDS.items():
            default = by[(model, board, True)]["instructions_per_inference"]
            fastest = by[(model, board, False)]["instructions_per_inference"]
            rec[f"{core}_mcuqp_default_instructions"] = default
            rec[f"{core}_mcuqp_fastest_instructions"] = fastest
            rec[f"{core}_cmsis_nn_instructions"] = cmsis[board]
        out.append(rec)
    return out


def _m(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def table(recs: list[dict]) -> str:
    lines = [
        "| model | flash: mcuqp model / TFLM flatbuffer alone | RAM: mcuqp model (arena + stack) / TFLM arena alone | "
        "M4 instructions: mcuqp default / fastest / CMSIS-NN (fastest ÷ CMSIS-NN) | M55 instructions: same |",
        "|---|---|---|---|---|",
    ]
    for r in recs:
        cores = []
        for core in BOARDS.values():
            d, f, c = (r[f"{core}_{k}_instructions"] for k in ("mcuqp_default", "mcuqp_fastest", "cmsis_nn"))
            cores.append(f"{_m(d)} / {_m(f)} / {_m(c)} ({f / c:.2f}x)")
        lines.append(
            f"| {r['model']} | {r['mcuqp_model_flash_bytes']:,} / {r['tflm_flatbuffer_bytes']:,} | "
            f"{r['mcuqp_model_ram_bytes']:,} / {r['tflm_reference_arena_bytes']:,} | {cores[0]} | {cores[1]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    if not SHARED.exists():
        print(f"side_by_side: {SHARED} not found (the shared models folder sits beside the repository)", file=sys.stderr)
        return 2
    recs = records()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "side_by_side.json").write_text(json.dumps(recs, indent=2) + "\n")
    (RESULTS / "side_by_side.md").write_text(table(recs))
    print(table(recs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
