"""The Optuna study behind `mcuqp search`: storage, workers and the objective.

One study lives in an Optuna RDB storage: an SQLite file (`DIR/study.db`, the default) or a
PostgreSQL database that processes on several machines join. Every process runs the same
worker loop: ask the sampler for a configuration, train and measure it, tell the result.
The study stops growing when it holds `trials` finished or running trials, so running the
same command again resumes it. Budgets are constraints (TPE with `constraints_func`): a
trial over any budget is infeasible, its measured figures are kept as they are.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mcuqp.errors import McuqpError

STUDY_ATTR = "mcuqp_search"  # the study's settings, checked when a study is resumed
VALIDATION_FRACTION = 0.2  # of the training split: what trials are scored on
HEARTBEAT_SECONDS = 60  # a trial whose process died is failed after GRACE_SECONDS without a beat
GRACE_SECONDS = 300
FINISHED_OR_RUNNING = ("COMPLETE", "RUNNING")


@dataclass(frozen=True)
class SearchOptions:
    model: str
    dataset: str
    board: str
    out_dir: str
    flash_bytes: int
    ram_bytes: int
    instructions: int | None = None
    trials: int = 20
    workers: int = 1
    storage: str | None = None  # default: sqlite:///<out_dir>/study.db
    study: str = "mcuqp-search"
    seed: int = 0
    epochs: int = 1
    formats: tuple[str, ...] = ("int8", "int4", "ternary", "binary")
    max_sparsity: float = 0.9
    progress: bool = True

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out_dir).resolve() / 'study.db'}"

    def settings(self) -> dict:
        """What must not change when a study is resumed."""
        digest = hashlib.sha256(Path(self.model).read_bytes()).hexdigest()[:16]
        return {"model_sha256": digest, "dataset": self.dataset, "board": self.board,
                "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "instructions": self.instructions, "epochs": self.epochs, "seed": self.seed,
                "formats": list(self.formats), "max_sparsity": self.max_sparsity}


def redact(url: str) -> str:
    """A storage URL without its password, for printing and search.json."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is reported by open_storage
        return url.split("@")[-1]


def open_storage(url: str):
    import optuna
    from sqlalchemy.exc import ArgumentError, OperationalError

    kwargs: dict = {}
    if url.startswith("sqlite"):
        # Several worker processes share the file: wait for its lock instead of failing.
        kwargs = {"connect_args": {"timeout": 120}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=GRACE_SECONDS)
    except (ArgumentError, OperationalError, ImportError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise McuqpError(f"cannot open the study storage {redact(url)}: {first}") from None


def search_data(dataset: str):
    """The dataset with its training split cut into training and validation (as `test`):
    trials never see the test split, which only the final verification uses."""
    from mcuqp.datasets import Dataset, load_dataset

    d = load_dataset(dataset)
    n_val = int(round(len(d.x_train) * VALIDATION_FRACTION))
    return Dataset(d.name, d.x_train[:-n_val], d.y_train[:-n_val], d.x_train[-n_val:], d.y_train[-n_val:])


def _sampler(seed: int):
    """TPE with constraints: each trial records how far it is over each budget
    (`Trial.set_constraint`), and TPE models feasible and infeasible trials apart."""
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=4)


def _budget(opts: SearchOptions):
    from mcuqp.search.trial import Budget

    return Budget(opts.flash_bytes, opts.ram_bytes, opts.instructions)


def _space(module, data, opts: SearchOptions):
    import torch

    from mcuqp.search.space import Space

    return Space.of(module, torch.as_tensor(data.x_train[:1], dtype=torch.float32), formats=opts.formats,
                    max_sparsity=opts.max_sparsity)


def _quiet() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # RDBStorage's heartbeat (which fails trials of a crashed process) is marked experimental.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def prepare(opts: SearchOptions):
    """Create the study, or load it and check that it was run with the same settings."""
    import optuna

    from mcuqp import api

    _quiet()
    storage = open_storage(opts.storage_url)
    study = optuna.create_study(study_name=opts.study, storage=storage, direction="maximize",
                                sampler=_sampler(opts.seed), load_if_exists=True)
    settings = opts.settings()
    stored = study.user_attrs.get(STUDY_ATTR)
    if stored is None:
        study.set_user_attr(STUDY_ATTR, settings)
        module = api.load_torch_module(Path(opts.model))
        data = search_data(opts.dataset)
        space = _space(module, data, opts)
        # The first trials: the network shrunk uniformly to the widest width that fits, in int8
        # (the baseline the benchmark compares with), int4, and ternary between int8 ends:
        # feasible anchors for the sampler.
        base = 0.0
        for fmt, ends in space.seeds():  # int8 first: packed layers are never wider than that
            width = widest_uniform_width(module, space, data, opts, fmt=fmt, ends=ends, at_least=base)
            base = base or width
            study.enqueue_trial(space.uniform(width, fmt=fmt, ends=ends), skip_if_exists=True)
    elif stored != settings:
        diff = ", ".join(f"{k} {stored.get(k)} (now {v})" for k, v in settings.items() if stored.get(k) != v)
        raise McuqpError(f"study {opts.study!r} in {redact(opts.storage_url)} was run with other settings: {diff}; "
                         "use another --study name or output folder")
    return study


def widest_uniform_width(module, space, data, opts: SearchOptions, *, fmt: str = "int8",
                         ends: str | None = None, at_least: float = 0.0) -> float:
    """The widest uniform width (on the space's grid) whose predicted footprint fits the flash
    and RAM budgets with the layers in `fmt` (`ends` for the first and last), by bisection
    (footprints shrink with the width); the narrowest when none fits. Sizes do not depend on
    the weights' values, so the untrained shrink is measured. `at_least`: a width known to fit."""
    import torch

    from mcuqp.errors import BudgetError
    from mcuqp.search.space import MIN_WIDTH, WIDTH_STEP, Space
    from mcuqp.search.trial import predicted_footprint, shrink

    example = torch.as_tensor(data.x_train[:1], dtype=torch.float32)
    grid = [round(MIN_WIDTH + i * WIDTH_STEP, 4) for i in range(int(round((1.0 - MIN_WIDTH) / WIDTH_STEP)) + 1)]

    def fits(width: float) -> bool:
        config = Space.config_of(space.uniform(width, fmt=fmt, ends=ends))
        small = shrink(module, config, example)
        try:
            fp = predicted_footprint(small, config, opts.dataset, opts.board, space.layers)
        except BudgetError:
            return False
        return fp.flash_bytes <= opts.flash_bytes and fp.ram_bytes <= opts.ram_bytes

    lo = max([i for i, w in enumerate(grid) if w <= at_least + 1e-9], default=0)
    hi = len(grid) - 1  # invariant: everything above hi does not fit
    if fits(grid[hi]):
        return grid[hi]
    hi -= 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(grid[mid]):
            lo = mid
        else:
            hi = mid - 1
    return grid[lo]


def _count(study, *, before: int | None = None) -> int:
    import optuna

    states = tuple(getattr(optuna.trial.TrialState, s) for s in FINISHED_OR_RUNNING)
    trials = study.get_trials(deepcopy=False, states=states)
    return sum(1 for t in trials if before is None or t.number < before)


def trial_path(out_dir: str | Path, number: int) -> Path:
    return Path(out_dir) / "trials" / f"trial-{number:04d}.pt"


def worker(opts: SearchOptions, index: int = 0) -> None:
    """One worker: run trials until the study holds `opts.trials` of them."""
    import optuna
    import torch

    from mcuqp import api
    from mcuqp.compress.pipeline import RANGES_ATTR, save_module
    from mcuqp.search.trial import measure, train

    _quiet()
    if opts.workers > 1:
        torch.set_num_threads(1)  # K processes on K cores
    budget = _budget(opts)
    study = optuna.load_study(study_name=opts.study, storage=open_storage(opts.storage_url),
                              sampler=_sampler(_worker_seed(opts, index)))
    module = api.load_torch_module(Path(opts.model))
    data = search_data(opts.dataset)
    space = _space(module, data, opts)

    def objective(trial) -> float:
        if _count(study, before=trial.number) >= opts.trials:
            raise optuna.TrialPruned("the study already holds --trials trials")
        config = space.suggest(trial)
        seed = opts.seed + trial.number
        trained = train(module, config, data, epochs=opts.epochs, seed=seed)
        m = measure(trained, config, data, opts.dataset, opts.board, flash_bytes=opts.flash_bytes)
        save_module(trained, getattr(trained, RANGES_ATTR, None), trial_path(opts.out_dir, trial.number))
        violations = budget.violations(m.flash_bytes, m.ram_bytes, m.instructions_per_inference)
        violations["bit_exact"] = 1.0 if m.bit_exact is False else 0.0  # a mismatching firmware never wins
        for name, v in violations.items():
            trial.set_constraint(name, v)
        feasible = all(v <= 0 for v in violations.values())
        for k, v in {**asdict(m), "feasible": feasible, "seed": seed, "worker": index}.items():
            trial.set_user_attr(k, v)
        return m.accuracy

    def report(study, frozen) -> None:
        if opts.progress and frozen.state == optuna.trial.TrialState.COMPLETE:
            print(progress_line(study, frozen, opts.trials), file=sys.stderr, flush=True)

    while _count(study) < opts.trials:
        study.optimize(objective, n_trials=1, callbacks=[report])


def _worker_seed(opts: SearchOptions, index: int) -> int:
    """The sampler seed: the study's seed for a lone local worker (reproducible); several
    workers, here or on other machines, must not propose the same configurations."""
    if opts.workers <= 1 and opts.storage is None:
        return opts.seed
    return opts.seed + 7919 * index + os.getpid()


def _worker_process(opts: SearchOptions, index: int) -> None:
    try:
        worker(opts, index)
    except McuqpError as e:
        print(f"mcuqp: error: worker {index}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def run_workers(opts: SearchOptions) -> None:
    """`opts.workers` worker processes on this machine (one runs in this process when 1)."""
    if opts.workers <= 1:
        worker(opts, 0)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_process, args=(opts, i), name=f"mcuqp-search-{i}")
             for i in range(opts.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise
    failed = [p.name for p in procs if p.exitcode != 0]
    if failed:
        raise McuqpError(f"search worker(s) {', '.join(failed)} failed (see above); rerun the same command to resume")


def wait_for_running(study, *, progress: bool, poll_seconds: float = 2.0) -> None:
    """Wait until no trial of the study runs (other processes or machines may still be
    finishing theirs); a trial whose process died is failed once its heartbeat is stale."""
    import time

    import optuna

    shown = False
    while True:
        optuna.storages.fail_stale_trials(study)
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if not running:
            return
        if progress and not shown:
            print(f"search: waiting for {len(running)} trial(s) running in other processes", file=sys.stderr,
                  flush=True)
            shown = True
        time.sleep(poll_seconds)


def completed(study) -> list:
    import optuna

    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "feasible" in t.user_attrs]


def best_trial(trials: list):
    """The most accurate feasible trial; ties go to the smaller flash, then the earlier trial."""
    feasible = [t for t in trials if t.user_attrs["feasible"]]
    if not feasible:
        return None
    return min(feasible, key=lambda t: (-t.value, t.user_attrs["flash_bytes"], t.number))


def progress_line(study, frozen, total: int) -> str:
    a = frozen.user_attrs
    done = len(completed(study))
    instr = a.get("instructions_per_inference")
    fits = "fits" if a.get("feasible") else "over budget"
    best = best_trial(completed(study))
    best_s = f"best {best.value * 100:.2f} % (trial {best.number})" if best else "no feasible trial yet"
    return (f"search: trial {frozen.number} ({done}/{total} done): accuracy {frozen.value * 100:.2f} %, "
            f"flash {a['flash_bytes']:,} B, RAM {a['ram_bytes']:,} B, "
            f"{'-' if instr is None else f'{instr:,}'} instr., {fits} | {best_s}")


def trial_record(t) -> dict:
    a = t.user_attrs
    return {"number": t.number, "params": t.params, "accuracy": t.value, "flash_bytes": a["flash_bytes"],
            "ram_bytes": a["ram_bytes"], "instructions_per_inference": a["instructions_per_inference"],
            "feasible": a["feasible"], "measured": a["measured"], "bit_exact": a["bit_exact"]}


def smallest(trials: list):
    return min(trials, key=lambda t: (t.user_attrs["flash_bytes"], t.user_attrs["ram_bytes"])) if trials else None


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)
