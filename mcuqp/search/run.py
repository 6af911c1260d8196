"""`mcuqp search`: run the study, then write search.json, pareto.png, best.pt and firmware/."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mcuqp.errors import BudgetError, McuqpError
from mcuqp.search import study as st
from mcuqp.search.study import SearchOptions

STACK_SLACK = 64  # bytes of the RAM budget left for section alignment when the stack takes the rest


class NothingFitsError(BudgetError):
    """No trial met the budgets."""


@dataclass
class SearchResult:
    out_dir: Path
    summary: dict  # the content of search.json


def check_options(opts: SearchOptions) -> None:
    """Bad input fails before anything is written."""
    from mcuqp.datasets import DATASETS
    from mcuqp.target.boards import load_board

    model = Path(opts.model)
    if model.suffix not in (".pt", ".pth") or not model.is_file():
        raise McuqpError(f"{opts.model}: give an existing float model saved with torch.save(module) (.pt)")
    if opts.dataset not in DATASETS:
        raise McuqpError(f"--data {opts.dataset!r}: choose one of {', '.join(DATASETS)}")
    b = load_board(opts.board)
    if opts.flash_bytes > b.flash_size or opts.ram_bytes > b.ram_size:
        raise McuqpError(f"budget flash {opts.flash_bytes:,} B / RAM {opts.ram_bytes:,} B exceeds {b.name} "
                         f"({b.flash_size:,} B / {b.ram_size:,} B); lower --flash / --ram")
    from mcuqp.search.space import FORMATS

    bad = [f for f in opts.formats if f not in FORMATS]
    if bad or not opts.formats:
        raise McuqpError(f"--formats {','.join(opts.formats)}: choose among {', '.join(FORMATS)}")
    if not 0.0 <= opts.max_sparsity <= 0.9:
        raise McuqpError(f"--max-sparsity {opts.max_sparsity}: give a fraction in [0, 0.9]")
    if opts.trials < 1 or opts.workers < 1 or opts.epochs < 0:
        raise McuqpError("--trials and --workers must be >= 1 and --epochs >= 0")
    if opts.storage is not None and not opts.storage.startswith(("sqlite:", "postgresql", "mysql")):
        raise McuqpError(f"--storage {st.redact(opts.storage)}: give an SQLAlchemy URL, "
                         "e.g. postgresql://user:password@host/db or sqlite:///study.db")


def search(opts: SearchOptions) -> SearchResult:
    """Run (or resume) the study and write the outputs. Raises NothingFitsError when no trial
    meets the budgets (search.json and pareto.png are still written)."""
    check_options(opts)
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study = st.prepare(opts)
    st.run_workers(opts)
    st.wait_for_running(study, progress=opts.progress)
    trials = st.completed(study)
    best = st.best_trial(trials)
    summary = {
        "study": opts.study,
        "storage": st.redact(opts.storage_url),
        "model": str(opts.model),
        "dataset": opts.dataset,
        "board": opts.board,
        "budget": {"flash_bytes": opts.flash_bytes, "ram_bytes": opts.ram_bytes,
                   "instructions_per_inference": opts.instructions},
        "epochs": opts.epochs,
        "accuracy": "int8 reference on the validation split (the last 20 % of the training split)",
        "trials": [st.trial_record(t) for t in sorted(trials, key=lambda t: t.number)],
        "best": None,
    }
    from mcuqp.search.report import plot_pareto

    plot_pareto(summary, out / "pareto.png")
    if best is None:
        st.write_json(out / "search.json", summary)
        raise NothingFitsError(_nothing_fits(opts, trials))
    summary["best"] = {**st.trial_record(best), **_finish(opts, best, out)}
    plot_pareto(summary, out / "pareto.png")
    st.write_json(out / "search.json", summary)
    return SearchResult(out, summary)


def _nothing_fits(opts: SearchOptions, trials: list) -> str:
    small = st.smallest(trials)
    budget = f"flash {opts.flash_bytes:,} B, RAM {opts.ram_bytes:,} B" + (
        f", {opts.instructions:,} instructions" if opts.instructions else "")
    if small is None:
        return f"no trial finished, so nothing fits {budget}; rerun the same command to resume"
    a = small.user_attrs
    instr = a["instructions_per_inference"]
    return (f"no model fits {budget} on {opts.board} after {len(trials)} trials: the smallest seen takes flash "
            f"{a['flash_bytes']:,} B, RAM {a['ram_bytes']:,} B" + (f", {instr:,} instructions" if instr else "")
            + f" (trial {small.number}); raise the budget or shrink the model")


def _best_module(opts: SearchOptions, best):
    """The best trial's module: its saved file, or (when another machine ran it) retrained
    from its parameters and seed, which is deterministic."""
    from mcuqp import api
    from mcuqp.search.space import Space
    from mcuqp.search.trial import train

    path = st.trial_path(opts.out_dir, best.number)
    if path.is_file():
        return api.load_torch_module(path)
    module = api.load_torch_module(Path(opts.model))
    return train(module, Space.config_of(best.params), st.search_data(opts.dataset),
                 epochs=opts.epochs, seed=best.user_attrs["seed"])


def _finish(opts: SearchOptions, best, out: Path) -> dict:
    """best.pt, and firmware/ for the board verified bit-exact on QEMU with the linker
    script's memories set to the budget (the stack takes the RAM the model leaves)."""
    from mcuqp import api
    from mcuqp.compress.pipeline import RANGES_ATTR, save_module

    module = _best_module(opts, best)
    save_module(module, getattr(module, RANGES_ATTR, None), out / "best.pt")
    loaded = api.load(out / "best.pt", calib=opts.dataset)
    from mcuqp.search.space import plan_of
    from mcuqp.search.trial import lowbit_formats

    plan = plan_of(best.params)
    fmts = lowbit_formats(loaded.graph) or None  # layers trained low-bit stay packed low-bit
    probe = api.footprint(loaded, board=opts.board, plan=plan, formats=fmts)
    static = probe.ram_bytes - probe.stack_bytes
    stack = (opts.ram_bytes - static - STACK_SLACK) // 8 * 8
    from mcuqp.codegen.emit import default_name

    # the firmware is named after the searched model file (digits.pt -> digits.c), not best.pt
    kwargs = dict(board=opts.board, flash_bytes=opts.flash_bytes, ram_bytes=opts.ram_bytes, stack_bytes=stack,
                  plan=plan, formats=fmts, name=default_name(opts.model))
    res = api.verify(loaded, n_inputs=len(loaded.verify_inputs), **kwargs)  # the whole test split
    if not res.bit_exact:
        raise McuqpError(f"the best model's firmware differs from the reference on {res.mismatches} of "
                         f"{res.compared} inputs on {res.board}: report this as a bug")
    fw = out / "firmware"
    api.compile(loaded, fw, **kwargs)
    summary = res.summary()
    st.write_json(fw / "verification.json", {k: v for k, v in summary.items() if k != "layers"})
    return {
        "test_accuracy": res.accuracy.get("device"),
        "test_images": res.compared,
        "firmware": {"bit_exact": res.bit_exact, "flash_bytes": res.flash_bytes, "ram_bytes": res.ram_bytes,
                     "stack_reserved_bytes": stack, "stack_used_bytes": res.stack_bytes,
                     "instructions_per_inference": res.instructions_per_inference},
    }
