"""Search benchmark: `mcuqp search` on MNIST-5k at three flash / RAM budgets against a baseline
of the same network shrunk uniformly (int8, every channel space at the same width) to fit.

The network is MnistStridedCNN (mcuqp.models), trained once (seeded). At each budget one
`mcuqp.search` study (the budgets run side by side, one process each):
- baseline: the study's first trial, the network shrunk uniformly (int8, dense, every channel
  space at the same width) to the widest width whose predicted footprint fits, fine-tuned like
  every trial (same epochs, quantization-aware);
- search: the most accurate feasible trial on the validation split (the last 20 % of the
  training split).
Both are then built for the board with the linker script's memories set to the budget, run on
QEMU over the whole test split (1,000 images) and compared bit for bit with the reference; the
accuracies below are those on-device test accuracies. Flash and RAM are measured after linking
(RAM: data + bss + the painted-stack high-water mark), instructions per inference on QEMU.

Writes benchmarks/results/search.json and search.md (the README table). Needs arm-none-eabi-gcc
and qemu-system-arm.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

BOARD = "mps2-an386"
DATASET = "mnist5k"
SEED = 0
FLOAT_EPOCHS = 8
FLOAT_LR = 3e-3
EPOCHS = 2  # fine-tuning epochs per trial (and for the baseline): low-bit layers need them
TRIALS = 7
KIB = 1024
# (flash, RAM): the whole network's image takes 44 KB, about 13 KB of it startup and test harness.
BUDGETS = ((16 * KIB, 6 * KIB), (20 * KIB, 7 * KIB), (24 * KIB, 8 * KIB))
# Every format is stored packed (int4 4 bits, ternary 2, binary 1 a weight; pruned int8 layers
# sparse where needed to fit), so the search covers formats, sparsity, widths and the plan.
FORMATS = ("int8", "int4", "ternary", "binary")
MAX_SPARSITY = 0.5
TARGET_POINTS = 1.0  # the search beats the baseline by at least this at the two smallest budgets


def train_float(path: Path) -> float:
    import torch

    from mcuqp.compress.train import FitConfig, evaluate, fit
    from mcuqp.datasets import load_dataset
    from mcuqp.models import MnistStridedCNN
    from mcuqp.search.study import search_data

    if path.is_file():  # a rerun with --work: the same model, so the studies resume
        model = torch.load(path, weights_only=False)
    else:
        data = search_data(DATASET)  # the float model never sees the validation or test split
        model = fit(MnistStridedCNN(), data.x_train, data.y_train,
                    FitConfig(epochs=FLOAT_EPOCHS, lr=FLOAT_LR, seed=SEED))
        torch.save(model, path)
    test = load_dataset(DATASET)
    return evaluate(model, test.x_test, test.y_test)


def verify_at_budget(module_path: Path, flash: int, ram: int, plan: str) -> dict:
    """Build for the board with the budgets as the linker script's memory lengths, run the whole
    test split on QEMU, compare with the reference."""
    from mcuqp import api

    from mcuqp.search.trial import lowbit_formats

    loaded = api.load(module_path, calib=DATASET)
    fmts = lowbit_formats(loaded.graph) or None  # layers trained low-bit stay packed low-bit
    probe = api.footprint(loaded, board=BOARD, plan=plan, formats=fmts)
    stack = (ram - (probe.ram_bytes - probe.stack_bytes) - 64) // 8 * 8
    res = api.verify(loaded, board=BOARD, n_inputs=len(loaded.verify_inputs), flash_bytes=flash, ram_bytes=ram,
                     stack_bytes=stack, plan=plan, formats=fmts)
    return {"test_accuracy": res.accuracy["device"], "bit_exact": res.bit_exact, "compared": res.compared,
            "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes, "stack_bytes": res.stack_bytes,
            "instructions_per_inference": res.instructions_per_inference,
            "fits": res.flash_bytes <= flash and res.ram_bytes <= ram}


def run_budget(model_path: str, flash: int, ram: int, out: str, trials: int) -> dict:
    """One budget: the search, then its first trial (the uniform shrink that fits: the
    baseline) and its best trial verified on the whole test split at the budget."""
    import torch

    from mcuqp.errors import BudgetError
    from mcuqp.search.run import search
    from mcuqp.search.space import plan_of
    from mcuqp.search.study import SearchOptions, trial_path

    torch.set_num_threads(1)
    opts = SearchOptions(model=model_path, dataset=DATASET, board=BOARD, out_dir=out, flash_bytes=flash,
                         ram_bytes=ram, trials=trials, seed=SEED, epochs=EPOCHS, formats=FORMATS,
                         max_sparsity=MAX_SPARSITY, progress=True)
    summary = search(opts).summary
    first = summary["trials"][0]
    assert first["number"] == 0 and all(v == "int8" for k, v in first["params"].items() if k.startswith("format:"))
    widths = {v for k, v in first["params"].items() if k.startswith("width:")}
    base = {"width": widths.pop(), "validation_accuracy": first["accuracy"]}
    try:
        base.update(verify_at_budget(trial_path(out, 0), flash, ram, plan_of(first["params"])))
    except BudgetError:  # the width was chosen by the predicted footprint: report the miss
        base.update({"test_accuracy": float("nan"), "bit_exact": False, "compared": 0, "fits": False,
                     **{k: first[k] for k in ("flash_bytes", "ram_bytes", "instructions_per_inference")}})
    best = summary["best"]
    found = {"trials": len(summary["trials"]), "feasible_trials": sum(t["feasible"] for t in summary["trials"]),
             "number": best["number"], "params": best["params"], "validation_accuracy": best["accuracy"],
             "test_accuracy": best["test_accuracy"], "bit_exact": best["firmware"]["bit_exact"],
             "compared": best["test_images"], "flash_bytes": best["firmware"]["flash_bytes"],
             "ram_bytes": best["firmware"]["ram_bytes"], "stack_bytes": best["firmware"]["stack_used_bytes"],
             "instructions_per_inference": best["firmware"]["instructions_per_inference"],
             "fits": best["firmware"]["flash_bytes"] <= flash and best["firmware"]["ram_bytes"] <= ram,
             "description": describe(best["params"])}
    return {"flash_budget": flash, "ram_budget": ram, "baseline": base, "search": found,
            "gain_points": (found["test_accuracy"] - base["test_accuracy"]) * 100}


def describe(params: dict) -> str:
    from mcuqp.search.space import plan_of

    widths = [f"{k.split(':', 1)[1]} {v:.2f}" for k, v in params.items() if k.startswith("width:")]
    formats = sorted({v for k, v in params.items() if k.startswith("format:")}) or ["int8"]
    sparse = [v for k, v in params.items() if k.startswith("sparsity:") and v > 0]
    return (f"widths {', '.join(widths)}; formats {'/'.join(formats)}; "
            f"{len(sparse)} layers pruned; plan {plan_of(params)}")


def table(rows: list[dict], float_acc: float) -> str:
    head = ("budget flash / RAM", "model", "test accuracy", "flash (linked)", "RAM (linked + stack)",
            "instr./inference", "fits", "bit-exact")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        for label, d in (("baseline (uniform width %.2f, int8)" % r["baseline"]["width"], r["baseline"]),
                         ("search (trial %d of %d)" % (r["search"]["number"], r["search"]["trials"]), r["search"])):
            lines.append(f"| {r['flash_budget'] // KIB} KiB / {r['ram_budget'] // KIB} KiB | {label} | "
                         f"{d['test_accuracy'] * 100:.1f} % | {d['flash_bytes']:,} | {d['ram_bytes']:,} | "
                         f"{d['instructions_per_inference']:,} | {'yes' if d['fits'] else 'NO'} | "
                         f"{'yes' if d['bit_exact'] else 'NO'} ({d['compared']} images) |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=TRIALS)
    ap.add_argument("--work", type=Path, default=None, help="Keep the studies here (default: a temporary folder).")
    args = ap.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mcuqp-bench-search-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model_path = work / "float.pt"
        float_acc = train_float(model_path)
        print(f"float MnistStridedCNN: test accuracy {float_acc * 100:.2f} %", file=sys.stderr)
        # The budgets run side by side, one process each (a study per budget).
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(len(BUDGETS), mp_context=ctx) as pool:
            jobs = [pool.submit(run_budget, str(model_path), flash, ram, str(work / f"search-{flash // KIB}k"),
                                args.trials) for flash, ram in BUDGETS]
            rows = [j.result() for j in jobs]
    targets = {
        "all_fit": all(r["baseline"]["fits"] and r["search"]["fits"] for r in rows),
        "all_bit_exact": all(r["baseline"]["bit_exact"] and r["search"]["bit_exact"] for r in rows),
        "beats_baseline_by_1_point_at_two_smallest": all(r["gain_points"] >= TARGET_POINTS for r in rows[:2]),
    }
    result = {"board": BOARD, "dataset": DATASET, "network": "MnistStridedCNN", "float_test_accuracy": float_acc,
              "epochs_per_trial": EPOCHS, "float_epochs": FLOAT_EPOCHS, "trials": args.trials, "seed": SEED,
              "budgets": rows, "targets": targets, "seconds": round(time.time() - t0)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(result, indent=1))
    md = [table(rows, float_acc), "",
          f"Float MnistStridedCNN (31k parameters, {FLOAT_EPOCHS} epochs): {float_acc * 100:.1f} % on the test split. "
          f"{args.trials} trials per budget, {EPOCHS} fine-tuning epochs per trial (QAT), seed {SEED}, {BOARD}.",
          "", "Chosen configurations:", ""]
    md += [f"- {r['flash_budget'] // KIB} KiB: {r['search']['description']} "
           f"({r['gain_points']:+.1f} points over the baseline)" for r in rows]
    md += ["", "Targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in targets.items())]
    (RESULTS / "search.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
