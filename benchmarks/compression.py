"""Compression library benchmark: every pruning and quantization method of mcuqp.compress on
DigitsCNN (scikit-learn digits) and MnistCNN (MNIST-5k), each compressed model exported to int8,
its accuracy measured on the numpy integer reference over the full test split, and the
generated C built and run on QEMU (mps2-an386, Cortex-M4) and compared bit-exactly.

Per dataset the float model is trained once (seeded); every method starts from it. Writes
benchmarks/results/compression.json (one record per run), compression.md (the README table and
the MNIST-5k targets) and compression.png (accuracy vs bytes, one curve per method).

Byte counts per run:
- weight_bytes: the pipeline's count, weights packed at their bit width + int32 biases
  (unstructured zeros still stored);
- sparse_bytes: per layer the smaller of weight_bytes and a bitmap-sparse encoding (one
  occupancy bit per weight + the non-zero weights at their bit width + biases); an estimate of
  a format the C does not implement, used as the plot's x axis;
- c_weight_bytes: the read-only data of the generated model.c in the linked image (weights in
  their packed format, sparse indices, biases, requantization parameters);
- flash_bytes: the whole linked verification image.

Every model is built with packed layers: each conv / depthwise / fully connected layer in the
smallest weight format its weights allow (mcuqp.plan.formats: sparse, int4, ternary, binary,
fully binary, or int8 where nothing is smaller), and verified bit-exactly on QEMU.

`--packed` (also part of a full run) measures the issue's MLP 784-256-128-10 on MNIST-5k:
dense int8, 90 % global sparsity, ternary and binary weights, each built packed and dense
int8 and run on QEMU Cortex-M4 (mps2-an386) and Cortex-M55 (mps3-an547):
benchmarks/results/compression_packed.json and .md.

Needs arm-none-eabi-gcc and qemu-system-arm.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

BOARD = "mps2-an386"
SEED = 0
FLOAT_EPOCHS = {"digits": 40, "mnist5k": 30}
FLOAT_LR = 3e-3
# Epochs per stage (pruning fine-tune, then QAT): about the same number of optimizer steps on
# both datasets (digits: 1,438 training images, 23 steps an epoch; MNIST-5k: 4,000, 63 steps).
FINETUNE_EPOCHS = {"digits": 15, "mnist5k": 5}
GRADUAL_EPOCHS = {"digits": 45, "mnist5k": 15}  # Zhu & Gupta prune while training: a longer run
L1_LAMBDAS = {"digits": (1e-3, 3e-3, 1e-2), "mnist5k": (1e-4, 3e-4, 1e-3)}  # the penalty sums |W|
FINETUNE_LR = 3e-3
SPARSITIES = (0.5, 0.8, 0.9)
RATIOS = (0.25, 0.5)  # fraction of channels removed by the structured methods
MODEL_CLASS = {"digits": "DigitsCNN", "mnist5k": "MnistCNN"}


@dataclass(frozen=True)
class Run:
    method: str  # the curve this point belongs to
    prune: str | None  # pipeline prune spec
    quant: str | None  # pipeline quantization (None: int8 PTQ without QAT)
    epochs: int
    first_dense: bool = False  # keep the first Conv2d/Linear layer unpruned (per_layer sparsity 0)


def runs(dataset: str) -> list[Run]:
    ep = FINETUNE_EPOCHS[dataset]
    out = [Run("int8 PTQ", None, None, 0), Run("int8 QAT", None, "int8", ep)]
    for s in SPARSITIES:
        out.append(Run("magnitude (per layer)", f"magnitude:{s}", "int8", ep))
    for s in SPARSITIES[1:]:
        out.append(Run("magnitude (per layer, first layer dense)", f"magnitude:{s}", "int8", ep, first_dense=True))
    for s in SPARSITIES:
        out.append(Run("magnitude (global)", f"global:{s}", "int8", ep))
    for s in SPARSITIES:
        out.append(Run("gradual (Zhu-Gupta)", f"gradual:{s}", "int8", GRADUAL_EPOCHS[dataset]))
    for lam in L1_LAMBDAS[dataset]:
        out.append(Run("L1-regularised", f"l1:{lam:g}", "int8", ep))
    for s in SPARSITIES:
        out.append(Run("Taylor (iterative, global)", f"taylor:{s}", "int8", ep))
    for s in SPARSITIES:
        out.append(Run("OBD (iterative, global)", f"obd:{s}", "int8", ep))
    for method, name in (("filter", "filter L1-norm"), ("lasso", "LASSO channels"), ("correlation", "neuron correlation")):
        for r in RATIOS:
            out.append(Run(name, f"{method}:{r}", "int8", ep))
    for q in ("int4", "int2", "ternary", "binary"):
        out.append(Run("low-bit weights", None, q, ep))
    out.append(Run("magnitude + ternary", "magnitude:0.5", "ternary", ep))
    out.append(Run("magnitude + ternary", "global:0.8", "ternary", ep))
    return out


@dataclass
class Trained:
    dataset: str
    data: object
    model: object
    float_accuracy: float
    seconds: float
    extra: dict = field(default_factory=dict)


def train_float(dataset: str) -> Trained:
    import torch

    from mcuqp.compress.train import FitConfig, evaluate, fit
    from mcuqp.datasets import load_dataset
    from mcuqp.models import build_model

    data = load_dataset(dataset, seed=0)
    t = time.perf_counter()
    torch.manual_seed(SEED)  # the initial weights
    model = fit(build_model(dataset), data.x_train, data.y_train,
                FitConfig(epochs=FLOAT_EPOCHS[dataset], lr=FLOAT_LR, seed=SEED))
    return Trained(dataset, data, model, evaluate(model, data.x_test, data.y_test), time.perf_counter() - t)


def _sparse_bytes(layers) -> int:
    total = 0
    for r in layers:
        weights = r.params - r.biases
        bitmap = math.ceil(weights / 8) + math.ceil(r.nonzeros * r.bits / 8) + 4 * r.biases
        total += min(r.bytes, bitmap)
    return total


def smallest_formats(loaded) -> dict[str, str]:
    """Layer name -> the smallest weight format its weights allow."""
    from mcuqp.plan import formats as F

    g = loaded.graph
    return {g.ops[i].name: f for i, f in F.choose_formats(g, excess_bytes=1 << 40).items()}


def run_one(tr: Trained, run: Run, n_inputs: int, work: Path) -> dict:
    from mcuqp import api
    from mcuqp.compress import masks
    from mcuqp.compress.pipeline import PruneSpec, compress, save_compressed
    from mcuqp.reference.interpreter import run as reference_run

    t0 = time.perf_counter()
    per_layer = None
    if run.first_dense:
        per_layer = {next(iter(masks.prunable_layers(tr.model))): {"sparsity": 0.0}}
    res = compress(tr.model, tr.data, prune=run.prune, quant=run.quant, per_layer=per_layer,
                   finetune_epochs=run.epochs, lr=FINETUNE_LR, seed=SEED)
    t_compress = time.perf_counter() - t0
    path = save_compressed(res, work / "model.pt")
    loaded = api.load(path, calib=tr.dataset)  # QAT ranges travel in the file; PTQ calibrates (min/max)
    x, y = loaded.verify_inputs, loaded.labels
    logits = reference_run(loaded.graph, x).reshape(len(x), -1)
    accuracy = float((logits.argmax(1) == y).mean())
    formats = smallest_formats(loaded)
    ver = api.verify(loaded, board=BOARD, n_inputs=n_inputs, formats=formats)
    weights_before = sum(m.weight.numel() for m in masks.prunable_layers(tr.model).values())
    nonzero = sum(r.nonzeros for r in res.layers)
    spec = PruneSpec.parse(run.prune) if run.prune else None
    return {
        "dataset": tr.dataset,
        "model": MODEL_CLASS[tr.dataset],
        "method": run.method,
        "prune": spec.method if spec else "none",
        "prune_amount": spec.value if spec else None,
        "structured": bool(spec and spec.structured),
        "first_layer_dense": run.first_dense,
        "quant": run.quant or "int8",
        "qat": run.quant is not None,
        "finetune_epochs": run.epochs,
        "finetune_lr": FINETUNE_LR,
        "layer_bits": {r.name: r.bits for r in res.layers},
        "sparsity": 1.0 - nonzero / weights_before,  # weights removed, vs the float model
        "params": res.params_after,
        "params_before": res.params_before,
        "nonzero_weights": nonzero,
        "weight_bytes": res.bytes,
        "sparse_bytes": _sparse_bytes(res.layers),
        "c_weight_bytes": ver.model_const_bytes,
        "formats": formats,
        "accuracy": accuracy,
        "qat_accuracy": res.accuracy_after,  # the pipeline's float simulation
        "float_accuracy": tr.float_accuracy,
        "test_samples": int(len(x)),
        "board": ver.board,
        "bit_exact": ver.bit_exact,
        "compared": ver.compared,
        "device_accuracy_verified_inputs": ver.accuracy.get("device"),
        "instructions_per_inference": ver.instructions_per_inference,
        "flash_bytes": ver.flash_bytes,
        "model_flash_bytes": ver.model_flash_bytes,
        "ram_bytes": ver.ram_bytes,
        "compress_seconds": round(t_compress, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def measure(datasets: list[str], only: str | None, n_inputs: int) -> list[dict]:
    records = []
    commit = _commit()
    for dataset in datasets:
        plan = [r for r in runs(dataset) if only is None or only in r.method or only in (r.prune or "") or only == r.quant]
        tr = train_float(dataset)
        print(f"[{dataset}] float {MODEL_CLASS[dataset]} {FLOAT_EPOCHS[dataset]} epochs: "
              f"{tr.float_accuracy * 100:.2f} % ({tr.seconds:.0f} s)", file=sys.stderr, flush=True)
        for i, run in enumerate(plan, 1):
            with tempfile.TemporaryDirectory(prefix="mcuqp-bench-") as work:
                rec = run_one(tr, run, n_inputs, Path(work))
            rec["float_epochs"] = FLOAT_EPOCHS[dataset]
            rec["commit"] = commit
            records.append(rec)
            print(f"[{dataset} {i}/{len(plan)}] {run.method:<42} {run.prune or 'none':<16} {rec['quant']:<8} "
                  f"sparsity {rec['sparsity'] * 100:5.1f} %  {rec['weight_bytes']:>6} B  "
                  f"acc {rec['accuracy'] * 100:6.2f} %  {'bit-exact' if rec['bit_exact'] else 'MISMATCH'}  "
                  f"{rec['seconds']:.0f} s", file=sys.stderr, flush=True)
    return records


def _points(delta: float) -> str:
    """Accuracy difference in points, signed, without a "-0.0"."""
    v = round(delta * 100, 1)
    return f"{v if v != 0 else 0.0:+.1f}"


def _label(r: dict) -> str:
    if r["prune"] == "none":
        return "int8 PTQ" if not r["qat"] else f"{r['quant']} QAT"
    amount = f"{r['prune_amount']:g}"
    s = f"{r['prune']}:{amount}"
    return s + " (first layer dense)" if r["first_layer_dense"] else s


TARGETS = (  # (description, selector, allowed drop in points)
    ("int8 within 0.5 points of float", lambda r: r["prune"] == "none" and r["quant"] == "int8", 0.5),
    ("80 % unstructured sparsity + int8 within 1 point",
     lambda r: r["quant"] == "int8" and not r["structured"] and r["prune"] not in ("none", "l1")
     and r["prune_amount"] == 0.8, 1.0),
    ("ternary within 2 points", lambda r: r["prune"] == "none" and r["quant"] == "ternary", 2.0),
    ("binary weights within 5 points", lambda r: r["prune"] == "none" and r["quant"] == "binary", 5.0),
)


def targets(records: list[dict], dataset: str = "mnist5k") -> list[str]:
    lines = []
    recs = [r for r in records if r["dataset"] == dataset]
    for text, sel, points in TARGETS:
        hits = [r for r in recs if sel(r)]
        if not hits:
            continue
        parts = []
        for r in hits:
            ok = (r["float_accuracy"] - r["accuracy"]) * 100 <= points + 1e-9
            parts.append(f"{_label(r)} {r['accuracy'] * 100:.1f} % "
                         f"({_points(r['accuracy'] - r['float_accuracy'])}, {'met' if ok else 'missed'})")
        met = sum((r["float_accuracy"] - r["accuracy"]) * 100 <= points + 1e-9 for r in hits)
        lines.append(f"- {text}: {met} of {len(hits)} met — " + "; ".join(parts))
    return lines


def table(records: list[dict]) -> str:
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        recs = [r for r in records if r["dataset"] == dataset]
        f = recs[0]
        out.append(f"**{dataset}** ({f['model']}, {f.get('float_epochs', '?')} epochs, {f['test_samples']} test images, float accuracy "
                   f"{f['float_accuracy'] * 100:.1f} %; bit-exact on QEMU {BOARD}: "
                   f"{sum(r['bit_exact'] for r in recs)} of {len(recs)} models, {f['compared']} inputs each)\n")
        out.append("| method | prune | weights | sparsity | params | weight bytes (packed) | sparse bytes | C bytes | "
                   "int8 accuracy | vs float | bit-exact | instr./inference | flash |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in recs:
            bits = sorted(set(r["layer_bits"].values()))
            kept8 = "" if len(bits) == 1 else " (ends int8)"
            quant = ("int8 (PTQ)" if not r["qat"] else r["quant"]) + kept8
            out.append(
                f"| {r['method']} | {_label(r) if r['prune'] != 'none' else '—'} | {quant} | {r['sparsity'] * 100:.1f} % | "
                f"{r['params']:,} | {r['weight_bytes']:,} | {r['sparse_bytes']:,} | {r['c_weight_bytes']:,} | "
                f"{r['accuracy'] * 100:.1f} % | {_points(r['accuracy'] - r['float_accuracy'])} | "
                f"{'yes' if r['bit_exact'] else 'NO'} | {r['instructions_per_inference']:,} | {r['flash_bytes']:,} |"
            )
        out.append("")
    tl = targets(records)
    if tl:
        out.append("Targets (MNIST-5k, drop vs the float model in points):\n")
        out.extend(tl)
        out.append("")
    eps = ", ".join(f"{d} {FINETUNE_EPOCHS[d]} (gradual {GRADUAL_EPOCHS[d]})" for d in FINETUNE_EPOCHS)
    commit = records[0].get("commit")
    out.append(
        (f"Measured at commit {commit}. " if commit else "")
        + f"Float models: Adam at {FLOAT_LR:g}, seed {SEED}. Fine-tuning epochs per stage (pruning, then QAT): {eps}; "
        f"Adam at {FINETUNE_LR:g}, cosine schedule. Taylor and OBD prune in 5 rounds with a global ranking, retraining "
        "between rounds. Binary, ternary and int2 keep the first and last layers int8 (as in the papers). Weight bytes: "
        "weights packed at their bit width + int32 biases; sparse bytes: per layer the smaller of that and an occupancy "
        "bitmap + non-zero weights (an estimate of a format the C does not use); C bytes: the read-only data of the "
        "generated model.c in the linked image, every layer in the smallest packed format its weights allow (sparse, "
        "int4, ternary, binary; int8 where none is smaller), with indices, biases and requantization parameters; "
        "flash: the linked verification image. Accuracy: the int8 graph on the numpy reference over the whole test split."
    )
    return "\n".join(out) + "\n"


# ---- the MLP on MNIST-5k: packed against dense int8 on M4 and M55 ----------------

PACKED_BOARDS = ("mps2-an386", "mps3-an547")
MLP_EPOCHS = 15
# (name, prune spec, weight kind): low-bit kinds on the first two layers, the last (10 outputs) int8
MLP_RUNS = (
    ("int8 QAT", None, "int8"),
    ("90 % global sparsity + int8", "global:0.9", "int8"),
    ("ternary", None, "ternary"),
    ("binary", None, "binary"),
)


def mlp():
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def measure_packed(n_inputs: int) -> list[dict]:
    import torch
    from torch import nn

    from mcuqp import api
    from mcuqp.compress.pipeline import compress, save_compressed
    from mcuqp.compress.train import FitConfig, evaluate, fit
    from mcuqp.datasets import load_dataset
    from mcuqp.reference.interpreter import run as reference_run

    data = load_dataset("mnist5k", seed=0)
    torch.manual_seed(SEED)
    model = fit(mlp(), data.x_train, data.y_train, FitConfig(epochs=MLP_EPOCHS, lr=FLOAT_LR, seed=SEED))
    float_acc = evaluate(model, data.x_test, data.y_test)
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    records = []
    for name, prune, quant in MLP_RUNS:
        layers = None if quant == "int8" else {n: quant if i < 2 else "int8" for i, n in enumerate(linear)}
        res = compress(model, data, prune=prune, quant=quant, per_layer=layers, finetune_epochs=FINETUNE_EPOCHS["mnist5k"],
                       lr=FINETUNE_LR, seed=SEED)
        with tempfile.TemporaryDirectory(prefix="mcuqp-bench-") as work:
            loaded = api.load(save_compressed(res, Path(work) / "model.pt"), calib="mnist5k")
        x, y = loaded.verify_inputs, loaded.labels
        accuracy = float((reference_run(loaded.graph, x).reshape(len(x), -1).argmax(1) == y).mean())
        packed = smallest_formats(loaded)
        for board in PACKED_BOARDS:
            for build, formats in (("packed", packed), ("dense int8", {"*": "int8"})):
                ver = api.verify(loaded, board=board, n_inputs=n_inputs, formats=formats)
                records.append({
                    "model": "MLP 784-256-128-10", "dataset": "mnist5k", "compression": name, "build": build,
                    "board": board, "formats": {w["layer"]: w["format"] for w in ver.weight_formats},
                    "weight_bytes": sum(w["weight_bytes"] for w in ver.weight_formats),
                    "index_bytes": sum(w["index_bytes"] for w in ver.weight_formats),
                    "c_const_bytes": ver.model_const_bytes, "model_flash_bytes": ver.model_flash_bytes,
                    "flash_bytes": ver.flash_bytes, "instructions_per_inference": ver.instructions_per_inference,
                    "bit_exact": ver.bit_exact, "compared": ver.compared, "accuracy": accuracy,
                    "float_accuracy": float_acc, "commit": _commit(),
                })
                r = records[-1]
                print(f"[mlp] {name:<28} {board:<11} {build:<10} flash {r['flash_bytes']:>8,} B  "
                      f"{r['instructions_per_inference']:>9,} instr.  {'bit-exact' if r['bit_exact'] else 'MISMATCH'}",
                      file=sys.stderr, flush=True)
    return records


def packed_table(records: list[dict]) -> str:
    f = records[0]
    out = [f"**{f['model']} on MNIST-5k** (float accuracy {f['float_accuracy'] * 100:.1f} %, {MLP_EPOCHS} epochs; "
           f"{f['compared']} test images compared on QEMU per build)\n",
           "| compression | int8 accuracy | board | packed formats | weight + index bytes | flash packed | flash int8 | "
           "flash ratio | instr. packed | instr. int8 | instr. ratio | bit-exact |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in records if r["build"] == "packed"):
        d = next(x for x in records if x["build"] == "dense int8" and x["compression"] == r["compression"]
                 and x["board"] == r["board"])
        fmts = ", ".join(dict.fromkeys(r["formats"].values()))
        out.append(f"| {r['compression']} | {r['accuracy'] * 100:.1f} % | {r['board']} | {fmts} | "
                   f"{r['weight_bytes']:,} + {r['index_bytes']:,} | {r['flash_bytes']:,} | {d['flash_bytes']:,} | "
                   f"{r['flash_bytes'] / d['flash_bytes']:.3f} | {r['instructions_per_inference']:,} | "
                   f"{d['instructions_per_inference']:,} | "
                   f"{r['instructions_per_inference'] / d['instructions_per_inference']:.3f} | "
                   f"{'yes' if r['bit_exact'] and d['bit_exact'] else 'NO'} |")
    commit = f.get("commit")
    out.append("\n" + (f"Measured at commit {commit}. " if commit else "") +
               "Packed: every layer in the smallest format its weights allow (ternary and binary keep the last layer "
               "int8); int8: the same model with every layer dense (`--format '*=int8'`). Flash: the linked "
               "verification image. The packed kernels have no Helium variants: on the M55 the dense Helium kernels "
               "are faster, and `compile`'s default choice (the fastest format that fits) keeps int8 there.")
    return "\n".join(out) + "\n"


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    fig, axes = plt.subplots(1, len(datasets), figsize=(7.5 * len(datasets), 5.5), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in records))
    cmap = plt.get_cmap("tab20")
    markers = "os^vD<>pPX*hH8d"
    for ax, dataset in zip(axes[0], datasets):
        recs = [r for r in records if r["dataset"] == dataset]
        for k, method in enumerate(methods):
            pts = sorted((r["sparse_bytes"], r["accuracy"] * 100) for r in recs if r["method"] == method)
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker=markers[k % len(markers)], color=cmap(k % 20), label=method,
                    linestyle="-" if len(pts) > 1 else "none")
        ax.axhline(recs[0]["float_accuracy"] * 100, color="grey", linestyle=":", label="float")
        ax.set_xscale("log")
        ax.set_xlabel("model bytes (packed weights + biases; sparse layers as bitmap + non-zeros)")
        ax.set_ylabel("int8 test accuracy (%)")
        ax.set_title(f"{dataset} ({recs[0]['model']})")
        lo = min(r["accuracy"] * 100 for r in recs)
        ax.set_ylim(max(lo - 1, 0), 100)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"], choices=["digits", "mnist5k"])
    ap.add_argument("--inputs", type=int, default=50, help="test images compared on QEMU per model")
    ap.add_argument("--only", default=None, help="run only methods/specs containing this text (no results written)")
    ap.add_argument("--render", action="store_true", help="rewrite the .md and .png from the existing .json only")
    ap.add_argument("--packed", action="store_true", help="only the MLP packed-vs-int8 section (compression_packed.*)")
    args = ap.parse_args()
    if args.packed or args.only is None and not args.render:
        t = time.perf_counter()
        packed = measure_packed(args.inputs)
        print(packed_table(packed))
        print(f"packed section {time.perf_counter() - t:.0f} s", file=sys.stderr)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "compression_packed.json").write_text(json.dumps(packed, indent=2) + "\n")
        (RESULTS / "compression_packed.md").write_text(packed_table(packed))
        if args.packed:
            return 0 if all(r["bit_exact"] for r in packed) else 1
    if args.render:
        records = json.loads((RESULTS / "compression.json").read_text())
        (RESULTS / "compression.md").write_text(table(records))
        plot(records, RESULTS / "compression.png")
        print(table(records))
        return 0 if all(r["bit_exact"] for r in records) else 1
    t = time.perf_counter()
    records = measure(args.datasets, args.only, args.inputs)
    print(table(records))
    print(f"total {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if args.only is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "compression.json").write_text(json.dumps(records, indent=2) + "\n")
        (RESULTS / "compression.md").write_text(table(records))
        plot(records, RESULTS / "compression.png")
    return 0 if all(r["bit_exact"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
