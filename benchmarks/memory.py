"""Memory: planned arena against its bounds and TFLite Micro, and predicted flash / RAM against
what the built firmware measures on QEMU.

For the four MLPerf Tiny int8 models, the mixed28 fixture (its depthwise input dies at the
depthwise while a residual branch waits) and a seeded MNIST CNN (trained here on mnist5k), on each
board: the planned arena of the smallest plan (`--plan smallest`; the default plan is the
fastest whose RAM fits, which on these boards is the out-of-place one), the same plan without in-place depthwise convolution, how many depthwise
ops run in place and the scratch they take, the live-activation lower bound and the peak live
storage (from the memory plan), TFLite Micro's reference arena setting (from the MLPerf Tiny reference code; none
for the MNIST CNN), the flash and RAM `mcuqp.api.predict_footprint` predicts (from a real link) before
any build, and the verification firmware's measured flash (text + rodata + data) and RAM
(data + bss + the painted-stack high-water of a QEMU run).

Writes benchmarks/results/memory.json (a list of records) and benchmarks/results/memory.md
(the README table). Needs ../shared/models/mlperf_tiny/ for the MLPerf Tiny rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models" / "mlperf_tiny"
FIXTURES = ROOT.parent / "shared" / "models" / "fixtures"
RESULTS = ROOT / "benchmarks" / "results"

# name: (file, TFLite Micro reference arena in bytes, as published in shared/README.md)
MLPERF = {
    "kws": ("kws_ref_model.tflite", 200 * 1024),
    "vww": ("vww_96_int8.tflite", 200 * 1024),
    "ic": ("pretrainedResnet_quant.tflite", 100 * 1024),
    "ad": ("ad01_int8.tflite", 10 * 1024),
}
BOARDS = ("mps2-an386", "mps3-an547")
MNIST_EPOCHS = 10
SEED = 0


def _models(n_inputs: int):
    """(name, source, loaded model, TFLM reference arena or None), loading one at a time."""
    from mcuqp import api

    for name, (file, tflm) in MLPERF.items():
        yield name, file, api.load(SHARED / file, n_random=n_inputs, seed=SEED), tflm
    yield "mixed28", "fixtures/mixed28_int8.tflite", api.load(FIXTURES / "mixed28_int8.tflite", n_random=n_inputs,
                                                              seed=SEED), None
    from mcuqp.compress.train import FitConfig, fit
    from mcuqp.datasets import load_dataset
    from mcuqp.models import MnistCNN

    d = load_dataset("mnist5k")
    module = fit(MnistCNN(), d.x_train, d.y_train, FitConfig(epochs=MNIST_EPOCHS, lr=3e-3, seed=SEED))
    yield "mnist_cnn", f"MnistCNN, {MNIST_EPOCHS} epochs on mnist5k, seed {SEED}", api.load(module, calib="mnist5k"), None


def _error_pct(predicted: int, measured: int) -> float:
    return round(100.0 * (predicted - measured) / measured, 3)


def measure(n_inputs: int, boards: tuple[str, ...]) -> list[dict]:
    import tempfile

    from mcuqp import api
    from mcuqp.api import predict_footprint
    from mcuqp.plan.memory import plan_memory

    records = []
    for name, source, loaded, tflm in _models(n_inputs):
        for board in boards:
            with tempfile.TemporaryDirectory(prefix="mcuqp-memory-") as tmp:
                lib = api.compile(loaded, Path(tmp) / "model", board=board, plan="smallest")
                t0 = time.perf_counter()
                fp = predict_footprint(loaded.graph, lib.plan, lib.generated, board)
                predict_s = time.perf_counter() - t0
            res = api.verify(loaded, board=board, n_inputs=n_inputs, plan="smallest")
            plan = lib.plan
            rec = {
                "model": name,
                "source": source,
                "board": board,
                "bit_exact": res.bit_exact,
                "compared": res.compared,
                "arena_bytes": plan.arena_bytes,
                "arena_without_inplace_bytes": plan_memory(
                    loaded.graph, inplace_depthwise="never", inplace_conv="never").arena_bytes,
                "arena_inplace_depthwise_only_bytes": plan_memory(loaded.graph, inplace_conv="never").arena_bytes,
                "inplace_depthwise_ops": len(plan.inplace_depthwise),
                "inplace_conv_ops": len(plan.inplace_conv),
                "scratch_bytes": plan.scratch_bytes,
                "lower_bound_bytes": plan.lower_bound_bytes,
                "peak_storage_bytes": plan.peak_storage_bytes,
                "tflm_reference_arena_bytes": tflm,
                "measured_flash_bytes": res.flash_bytes,
                "predicted_flash_bytes": fp.flash_bytes,
                "flash_error_pct": _error_pct(fp.flash_bytes, res.flash_bytes),
                "measured_static_ram_bytes": res.static_ram_bytes,
                "measured_stack_bytes": res.stack_bytes,
                "measured_ram_bytes": res.ram_bytes,
                "predicted_stack_bytes": fp.stack_bytes,
                "predicted_ram_bytes": fp.ram_bytes,
                "ram_error_pct": _error_pct(fp.ram_bytes, res.ram_bytes),
                "predict_seconds": round(predict_s, 3),
                "predicted_breakdown": fp.breakdown,
                "largest_layers": [{"name": la.name, "bytes": la.total_bytes} for la in fp.largest_layers(3)],
                "stack_path": fp.stack_path,
            }
            records.append(rec)
            print(json.dumps({k: v for k, v in rec.items() if k not in ("predicted_breakdown",)}), file=sys.stderr)
    return records


CAPTION = (
    "Bytes. RAM = data + bss (the arena; the verification firmware reads and writes the model's tensors in "
    "place, with no I/O buffers of its own) + the stack high-water "
    "mark measured on QEMU by stack painting; flash = text + rodata + data of the verification firmware. The "
    "arena includes the scratch of depthwise ops run in place (output over the input, channel by channel "
    "through an h*w buffer) and of 1x1 convs run in place (pixel by pixel through an in_c buffer), each used "
    "only where that lowers the arena; scratch = the largest one op uses. Predictions are made before the "
    "firmware is built (`mcuqp.api.predict_footprint`, a real link of the sources). The TFLite Micro reference "
    "arena is the tensor-arena size the MLPerf Tiny reference code (mlcommons/tiny) sets for each model."
)


def table(records: list[dict]) -> str:
    lines = [
        "| model | board | arena (planned) | arena without in-place ops | arena with in-place dw only | "
        "in-place dw / 1x1 ops (scratch) | live lower bound | "
        "peak storage | TFLM reference arena | stack measured / predicted | RAM measured | RAM predicted (error) | "
        "flash measured | flash predicted (error) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        tflm = f"{r['tflm_reference_arena_bytes']:,}" if r["tflm_reference_arena_bytes"] else "n/a"
        lines.append(
            f"| {r['model']} | {r['board']} | {r['arena_bytes']:,} | {r['arena_without_inplace_bytes']:,} | "
            f"{r['arena_inplace_depthwise_only_bytes']:,} | "
            f"{r['inplace_depthwise_ops']} / {r['inplace_conv_ops']} ({r['scratch_bytes']:,}) | {r['lower_bound_bytes']:,} | "
            f"{r['peak_storage_bytes']:,} | {tflm} | {r['measured_stack_bytes']:,} / {r['predicted_stack_bytes']:,} | "
            f"{r['measured_ram_bytes']:,} | {r['predicted_ram_bytes']:,} ({r['ram_error_pct']:+.2f} %) | "
            f"{r['measured_flash_bytes']:,} | {r['predicted_flash_bytes']:,} ({r['flash_error_pct']:+.2f} %) |"
        )
    lines += [
        "",
        CAPTION,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=5, help="inputs run on QEMU per model and board")
    ap.add_argument("--boards", nargs="+", default=list(BOARDS), help="boards to build for")
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"memory: {SHARED} not found (the shared models folder sits beside the repository)", file=sys.stderr)
        return 2
    records = measure(args.inputs, tuple(args.boards))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(records, indent=2) + "\n")
    (RESULTS / "memory.md").write_text(table(records))
    print(table(records))
    return 0 if all(r["bit_exact"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
