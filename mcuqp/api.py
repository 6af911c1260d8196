"""The library's front door, for notebooks and CI scripts: load, compress, plan, compile,
verify and report. The CLI is a thin layer over these functions.

Every function returns a dataclass and never prints. `result.to_dict()` is exactly what
the matching command prints with `--json`: the same field names, as plain JSON types.
Fields that hold Python objects (the memory plan, the generated code, the arrays of a
verification run) are left out of it.

    import mcuqp
    model = mcuqp.load("net.pt", calib="digits")          # or an nn.Module, or a .tflite
    mcuqp.compile(model, "out/", board="mps2-an386").arena_bytes
    mcuqp.verify(model, board="mps2-an386", n_inputs=20).bit_exact
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np

from mcuqp.codegen.emit import GeneratedModel, check_name, default_name, generate, write_library
from mcuqp.codegen.provenance import Provenance, file_sha256, model_header, read_provenance
from mcuqp.errors import McuqpError, ToolchainError
from mcuqp.ir import Graph
from mcuqp.plan.choice import PlanKind, PlanMode, arena_and_stack_fit, choose_plan, resolve_mode
from mcuqp.plan.formats import apply_formats, choose_formats
from mcuqp.plan.memory import MemoryPlan, validate_plan
from mcuqp.quant.fixedpoint import Rounding
from mcuqp.reference.interpreter import run as reference_run
from mcuqp.target.boards import DEFAULT_BOARD, Board, load_board
from mcuqp.target.build import DEFAULT_STACK_BYTES
from mcuqp.target.footprint import Footprint, FirmwareKind, ModelSources, check_budget
from mcuqp.target.footprint import predict_footprint as _predict_linked

INTERNAL = {"json": False}  # field metadata: not part of to_dict() / --json


def _jsonable(v: Any) -> Any:
    if isinstance(v, Result):
        return v.to_dict()
    if is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


class Result:
    """Mixin for the result dataclasses: `to_dict()` is the command's `--json` object."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self) if f.metadata.get("json", True)}

    @classmethod
    def json_fields(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.metadata.get("json", True)]


CALIB_SAMPLES = 512


@dataclass
class LoadedModel:
    """An integer graph plus the data that came with it."""

    graph: Graph
    source: str
    verify_inputs: np.ndarray | None = None  # int8, batch-first, graph input layout (NHWC)
    labels: np.ndarray | None = None  # class labels of verify_inputs, when known
    float_logits: np.ndarray | None = None  # float model's outputs on the same samples
    float_module: object | None = None
    rounding: Rounding = "double"  # the requantization mode the graph's multipliers were computed for


def _load_calibration(calib: str, input_shape_nchw: tuple[int, ...] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(calibration inputs, verification inputs, verification labels) as float NCHW."""
    from mcuqp.datasets import DATASETS, load_dataset

    if calib in DATASETS:
        d = load_dataset(calib)
        return d.x_train[:CALIB_SAMPLES], d.x_test, d.y_test
    p = Path(calib)
    if p.suffix != ".npy" or not p.exists():
        raise McuqpError(f"--calib {calib!r}: give 'digits', 'mnist5k' or an existing .npy of float inputs (NCHW)")
    try:
        x = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any numpy read failure is a bad user file
        raise McuqpError(f"cannot read calibration data {p}: {e}") from None
    if not np.issubdtype(x.dtype, np.floating) or x.ndim < 2:
        raise McuqpError(f"calibration data {p} must be a float array (N, C, H, W) or (N, features); got {x.dtype} {x.shape}")
    x = x.astype(np.float32)
    return x, x, None


def load_torch_module(path: Path):
    """A whole nn.Module saved with torch.save(module); one-line errors for anything else."""
    import torch

    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - corrupt or foreign file
        raise McuqpError(f"cannot load {path} as a torch model: {str(e).splitlines()[0]}") from None
    if not isinstance(module, torch.nn.Module):
        raise McuqpError(f"{path} holds a {type(module).__name__}, not an nn.Module: save it with torch.save(module)")
    return module


def load(
    model: str | Path | object,
    *,
    calib: str | None = None,
    calib_method: str = "minmax",
    rounding: Rounding = "double",
    seed: int = 0,
    n_random: int = 256,
) -> LoadedModel:
    """Load a `.tflite` (int8), a `.pt` saved with `torch.save(module)`, or an nn.Module.

    Float models are quantized post-training with `calib` data ('digits', 'mnist5k', or an
    .npy of float NCHW inputs). Verification inputs are the dataset's test split, the
    first samples of the .npy, or (for a .tflite without `calib`) random int8 over the
    full range."""
    module = None
    if not isinstance(model, (str, Path)):  # an nn.Module (torch is only imported for those)
        import torch

        if not isinstance(model, torch.nn.Module):
            raise McuqpError(f"cannot load a {type(model).__name__}: give a .tflite or .pt path, or an nn.Module")
        module, source = model, type(model).__name__
    else:
        path = Path(model)
        source = str(path)
        if not path.exists():
            raise McuqpError(f"model file {path} does not exist")
        if path.suffix == ".tflite":
            from mcuqp.frontends.tflite import load_tflite

            graph = load_tflite(path, rounding)
            loaded = LoadedModel(graph, source, rounding=rounding)
            if calib is not None:
                _, x, y = _load_calibration(calib, None)
                from mcuqp.quant.ptq import quantize_input

                loaded.verify_inputs, loaded.labels = quantize_input(graph, x), y
            else:
                rng = np.random.default_rng(seed)
                loaded.verify_inputs = rng.integers(-128, 128, size=(n_random, *graph.input.shape[1:]), dtype=np.int8)
            return loaded
        if path.suffix not in (".pt", ".pth"):
            raise McuqpError(f"unsupported model file {path.name}: give a .tflite or a .pt saved with torch.save(module)")
        module = load_torch_module(path)
    if calib is None:
        raise McuqpError("a float torch model needs calibration data: pass --calib digits|mnist5k|FILE.npy")
    from mcuqp.compress.train import predict
    from mcuqp.quant.ptq import RANGES_ATTR, quantize_input, quantize_module

    module.eval()
    calib_x, test_x, test_y = _load_calibration(calib, None)
    # A module saved by `mcuqp compress` carries the activation ranges learnt in QAT.
    ranges = getattr(module, RANGES_ATTR, None)
    graph = quantize_module(module, calib_x, method=calib_method, ranges_override=ranges, rounding=rounding)
    return LoadedModel(
        graph,
        source,
        verify_inputs=quantize_input(graph, test_x),
        labels=test_y,
        float_logits=predict(module, test_x),
        float_module=module,
        rounding=rounding,
    )


ModelLike = Any  # LoadedModel, Graph, a .tflite / .pt path, or a torch.nn.Module


def _loaded(model: ModelLike, calib: str | None = None, rounding: Rounding | None = None) -> LoadedModel:
    """`model` as a LoadedModel: loaded (and quantized with `calib`) when it is a path or a module."""
    if isinstance(model, LoadedModel):
        if rounding is not None and rounding != model.rounding:
            raise McuqpError(f"the model was loaded for {model.rounding} rounding: load it again with rounding={rounding!r}")
        return model
    if isinstance(model, Graph):
        return LoadedModel(model, model.name, rounding=rounding or "double")
    return load(model, calib=calib, rounding=rounding or "double")


def weight_formats(model: LoadedModel | Graph, formats: Mapping[str, str] | None = None,
                   excess_flash_bytes: int = 0, features: frozenset[str] = frozenset()) -> Graph:
    """The graph with each conv / depthwise / fully connected layer's weight format chosen
    (mcuqp.plan.formats: the fastest on a CPU with `features`, or smaller ones to save
    `excess_flash_bytes`); `formats` (layer name -> format) overrides."""
    graph = model.graph if isinstance(model, LoadedModel) else model
    return apply_formats(graph, choose_formats(graph, overrides=formats, excess_bytes=excess_flash_bytes,
                                               features=features))


def compile_plan(model: LoadedModel | Graph, *, plan: PlanMode = "auto", inplace: bool | None = None,
                 board: str | Board = DEFAULT_BOARD, ram_bytes: int | None = None,
                 stack_bytes: int = DEFAULT_STACK_BYTES) -> MemoryPlan:
    """The memory plan for `plan` (see mcuqp.plan.choice), without generating anything
    (packed layers' scratch included: see `weight_formats`).

    plan: "fastest" keeps every op on the out-of-place kernels; "smallest" runs depthwise
    and 1x1 convolutions over their input where that lowers the arena; "auto" (default)
    takes the fastest plan when its arena plus `stack_bytes` fits the RAM budget
    (`ram_bytes`, default the board's RAM), else the smallest. `compile` decides "auto"
    with the linked RAM instead. inplace: the older flag (True = "smallest", False = "fastest")."""
    return _chosen_plan(model, plan=plan, inplace=inplace, board=board, ram_bytes=ram_bytes,
                        stack_bytes=stack_bytes)[1]


def _chosen_plan(model: LoadedModel | Graph, *, plan: PlanMode, inplace: bool | None, board: str | Board,
                 ram_bytes: int | None, stack_bytes: int) -> tuple[PlanKind, MemoryPlan]:
    graph = model.graph if isinstance(model, LoadedModel) else model
    b = board if isinstance(board, Board) else load_board(board)
    budget = b.ram_size if ram_bytes is None else int(ram_bytes)
    kind, mem = choose_plan(graph, resolve_mode(plan, inplace), arena_and_stack_fit(budget, stack_bytes))
    validate_plan(graph, mem)
    return kind, mem


def predict_footprint(graph: Graph, plan: MemoryPlan, generated: GeneratedModel, board: Board | str, *,
                      firmware: FirmwareKind = "verify", stack_bytes_reserved: int = DEFAULT_STACK_BYTES) -> Footprint:
    """Flash and RAM of `generated` on `board`, from a real link of its sources (see
    mcuqp.target.footprint), with each layer's constants named after its op."""
    if generated.arena_bytes != plan.arena_bytes:
        raise McuqpError(f"the generated model has a {generated.arena_bytes} B arena but the plan "
                         f"{plan.arena_bytes} B; pass the plan the model was generated from")
    peak = ""
    if plan.peak_step is not None:
        info = plan.steps[plan.peak_step]
        peak = f"{info.op}: {len(info.live)} live tensors, {info.storage_bytes:,} B"
    layers = [(graph.ops[i].name, graph.ops[i].kind.value) for i in plan.order]
    sources = ModelSources(generated.model_c, generated.model_h, generated.kernels, layers, peak, generated.name)
    return _predict_linked(sources, board, firmware=firmware, stack_bytes_reserved=stack_bytes_reserved)


@dataclass
class PlanResult(Result):
    """`mcuqp plan --json`: the static arena layer by layer, and how it compares with the board's RAM."""

    model: str
    board: str
    board_ram_bytes: int
    arena_fraction_of_ram: float  # arena_bytes / board_ram_bytes
    plan: str  # the plan chosen: "fastest" or "smallest"
    arena_bytes: int
    scratch_bytes: int
    lower_bound_bytes: int
    peak_storage_bytes: int
    strategy: str
    alignment: int
    order: list[str]
    inplace_depthwise: list[str]
    inplace_conv: list[str]
    tensors: list[dict]
    scratch: list[dict]
    layers: list[dict]
    plot: str | None
    memory_plan: MemoryPlan = field(repr=False, metadata=INTERNAL)
    graph: Graph = field(repr=False, metadata=INTERNAL)


def plan(
    model: ModelLike,
    *,
    board: str = DEFAULT_BOARD,
    calib: str | None = None,
    plan: PlanMode = "auto",
    inplace: bool | None = None,
    ram_bytes: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    plot: str | Path | None = None,
    formats: Mapping[str, str] | None = None,
) -> PlanResult:
    """Plan the static arena of `model` (see `compile_plan`: `plan`, `ram_bytes` and
    `stack_bytes` choose the plan); `plot` also draws it to a PNG.

    Example: `r = mcuqp.plan("model.tflite", board="mps3-an547")`; `r.arena_bytes, r.arena_fraction_of_ram`"""
    from mcuqp.plan.report import plan_json, plot_plan

    b = load_board(board)
    loaded = _loaded(model, calib)
    graph = weight_formats(loaded, formats, features=b.features)
    kind, p = _chosen_plan(graph, plan=plan, inplace=inplace, board=b, ram_bytes=ram_bytes, stack_bytes=stack_bytes)
    if plot is not None:
        plot_plan(graph, p, plot)
    d = plan_json(graph, p)
    return PlanResult(board=b.name, board_ram_bytes=b.ram_size, arena_fraction_of_ram=p.arena_bytes / b.ram_size, plan=kind,
                      plot=None if plot is None else str(plot), memory_plan=p, graph=graph, **d)


@dataclass
class CompileResult(Result):
    """`mcuqp compile --json`."""

    out_dir: Path
    board: str
    files: list[Path]
    layers: int
    arena_bytes: int
    lower_bound_bytes: int
    weight_bytes: int
    param_bytes: int
    predicted_flash_bytes: int | None  # the verification image; None without arm-none-eabi-gcc
    predicted_ram_bytes: int | None
    predicted_stack_bytes: int | None
    plan: MemoryPlan = field(repr=False, metadata=INTERNAL)
    generated: GeneratedModel = field(repr=False, metadata=INTERNAL)
    footprint: Footprint | None = field(repr=False, metadata=INTERNAL)
    plan_kind: str = "fastest"  # the plan chosen: "fastest" or "smallest" (see mcuqp.plan.choice)
    project_files: list[Path] = field(default_factory=list)  # CMake project, example main.c, README, qemu/
    weight_formats: list[dict] = field(default_factory=list)  # per layer with weights: format, weight/index bytes
    name: str = "model"  # the C prefix: NAME.c, NAME.h, NAME_invoke()


def model_name(model: LoadedModel, name: str | None = None) -> str:
    """`name` checked as a C prefix, or the one derived from the model file's name
    (`model` for an in-memory module)."""
    return check_name(name) if name is not None else default_name(model.source)


def footprint(
    model: ModelLike,
    *,
    board: str = DEFAULT_BOARD,
    calib: str | None = None,
    rounding: Rounding | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    plan: PlanMode = "auto",
    inplace: bool | None = None,
    formats: Mapping[str, str] | None = None,
    name: str | None = None,
) -> Footprint:
    """The flash and RAM of the verification image that `compile` predicts before writing
    anything (the definitions `verify` measures), without checking any budget."""
    loaded = _loaded(model, calib, rounding)
    b = load_board(board)
    graph = weight_formats(loaded, formats, features=b.features)
    mem = compile_plan(graph, plan=plan, inplace=inplace, board=b, stack_bytes=stack_bytes)
    gen = generate(graph, mem, rounding=loaded.rounding, board=b.name, features=b.features,
                   name=model_name(loaded, name))
    return predict_footprint(graph, mem, gen, b, stack_bytes_reserved=stack_bytes)


def _atomic_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))


def _replace_dir(tmp: Path, target: Path) -> None:
    old = None
    if target.exists():
        if not target.is_dir():
            raise McuqpError(f"output {target} exists and is not a folder")
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def compile(
    model: ModelLike,
    out_dir: str | Path,
    *,
    board: str = DEFAULT_BOARD,
    calib: str | None = None,
    rounding: Rounding | None = None,
    flash_bytes: int | None = None,
    ram_bytes: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    plan: PlanMode = "auto",
    inplace: bool | None = None,
    project: bool = True,
    formats: Mapping[str, str] | None = None,
    name: str | None = None,
) -> CompileResult:
    """Generate the C library into `out_dir` (written to a temporary folder, then renamed
    into place, so a failure never leaves a half-written library).

    project=True adds the CMake project around it (static library, example main.c with one
    checked inference, toolchain file with the board's flags, README, QEMU startup); see
    `mcuqp.codegen.project`.

    Before writing anything, predicts the flash and RAM of the verification image and
    raises BudgetError when it exceeds the budgets (default: the board's memories). The
    prediction needs arm-none-eabi-gcc; without it, and without explicit budgets, the
    library is still generated and the predicted sizes are None.

    Each conv / depthwise / fully connected layer gets the fastest weight format its
    weights allow (mcuqp.plan.formats) whose model fits the flash budget, smaller ones
    where it would not; `formats` (layer name -> "int8" | "sparse" | "int4" | "ternary" |
    "binary" | "xnor") overrides.

    plan: "auto" (default) generates the fastest plan when its predicted RAM (linked static
    RAM with the reserved stack, and the stack bound within the reservation) fits the RAM
    budget, else the smallest; "fastest" / "smallest" force one (see mcuqp.plan.choice).
    inplace: the older flag (True = "smallest", False = "fastest").

    name: the C prefix of the library (NAME.c, NAME.h, NAME_invoke...); default: the model
    file's name as a C identifier, `model` for an in-memory module.

    Example: `mcuqp.compile("model.tflite", "out/", board="mps2-an386").files`"""
    loaded = _loaded(model, calib, rounding)
    rounding = loaded.rounding
    name = model_name(loaded, name)
    b = load_board(board)
    graph = weight_formats(loaded, formats, features=b.features)
    extra = {"formats": ",".join(f"{k}={v}" for k, v in sorted(formats.items()))} if formats else {}
    mode = resolve_mode(plan, inplace)
    ram_budget = b.ram_size if ram_bytes is None else int(ram_bytes)

    def build(graph: Graph) -> tuple[PlanKind, MemoryPlan, Provenance, GeneratedModel, Footprint | None]:
        built: dict[int, tuple[Provenance, GeneratedModel, Footprint | None]] = {}

        def generated(kind: PlanKind, mem: MemoryPlan) -> tuple[Provenance, GeneratedModel, Footprint | None]:
            if id(mem) not in built:
                prov = Provenance.of(loaded.source, board=b.name, rounding=rounding, plan=kind, flash=flash_bytes,
                                     ram=ram_bytes, stack=stack_bytes, **extra)
                gen = generate(graph, mem, rounding=rounding, board=b.name, features=b.features, provenance=prov,
                               name=name)
                try:
                    fp = predict_footprint(graph, mem, gen, b, stack_bytes_reserved=stack_bytes)
                except ToolchainError:
                    if flash_bytes is not None or ram_bytes is not None:
                        raise
                    fp = None
                built[id(mem)] = (prov, gen, fp)
            return built[id(mem)]

        def fits(kind: PlanKind, mem: MemoryPlan) -> bool:
            fp = generated(kind, mem)[2]
            if fp is None:
                return mem.arena_bytes + stack_bytes <= ram_budget
            return fp.linked_ram_bytes <= ram_budget and fp.stack_bytes <= fp.stack_reserved_bytes

        kind, mem = choose_plan(graph, mode, fits)
        validate_plan(graph, mem)
        return (kind, mem, *generated(kind, mem))

    plan_kind, plan_, provenance, gen, footprint = build(graph)
    budget = flash_bytes if flash_bytes is not None else b.flash_size
    if footprint is not None and footprint.flash_bytes > budget:
        smaller = weight_formats(loaded, formats, excess_flash_bytes=footprint.flash_bytes - budget,
                                 features=b.features)
        if [getattr(o.attrs, "weight_format", None) for o in smaller.ops] != \
                [getattr(o.attrs, "weight_format", None) for o in graph.ops]:
            trial = build(smaller)
            # packed kernels add code: keep the smaller weights only where the image shrinks
            if trial[4] is None or trial[4].flash_bytes < footprint.flash_bytes:
                graph, (plan_kind, plan_, provenance, gen, footprint) = smaller, trial
    if footprint is not None:
        check_budget(footprint, b, flash_bytes=flash_bytes, ram_bytes=ram_bytes)
        # The header states the worst-case stack; a #define does not change the code it was measured on.
        gen = generate(graph, plan_, rounding=rounding, board=b.name, features=b.features, provenance=provenance,
                       stack_bytes=footprint.invoke_stack_bytes, name=name)
    target = Path(out_dir)
    tmp = _atomic_dir(target)
    try:
        files = write_library(gen, tmp)
        project_files = []
        if project:
            project_files = _write_project(tmp, loaded, gen, b, footprint, flash_bytes=flash_bytes,
                                           ram_bytes=ram_bytes, stack_bytes=stack_bytes)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fp = footprint
    return CompileResult(
        out_dir=target, board=b.name, files=[target / f.name for f in files], layers=len(graph.ops),
        arena_bytes=plan_.arena_bytes, lower_bound_bytes=plan_.lower_bound_bytes,
        weight_bytes=gen.weight_bytes, param_bytes=gen.param_bytes,
        predicted_flash_bytes=fp.flash_bytes if fp else None, predicted_ram_bytes=fp.ram_bytes if fp else None,
        predicted_stack_bytes=fp.stack_bytes if fp else None, plan=plan_, plan_kind=plan_kind, generated=gen,
        footprint=footprint,
        project_files=[target / f.relative_to(tmp) for f in project_files],
        weight_formats=[{"layer": ly.name, "kind": ly.kind, "format": ly.weight_format, "weight_bytes": ly.weight_bytes,
                         "index_bytes": ly.index_bytes} for ly in gen.layers if ly.weight_format],
        name=name,
    )


def existing_library(model: LoadedModel, folder: str | Path, board: Board, *, rounding: Rounding) -> CompileResult:
    """A folder generated earlier, as `compile` would have returned it; refused (one line)
    when its NAME.h names another model file, board or rounding than the ones given."""
    folder = Path(folder)
    prov = read_provenance(folder)
    name = model_header(folder).stem
    path = Path(model.source)
    if not path.is_file():
        raise McuqpError("--sources needs the model as a file (.tflite or .pt) to compare its sha256")
    digest = file_sha256(path)
    if digest != prov.model_sha256:
        raise McuqpError(f"{folder} was generated from another model (sha256 {prov.model_sha256[:16]}...), not "
                         f"{path.name} (sha256 {digest[:16]}...); regenerate it with `mcuqp compile`")
    for key, want in (("board", board.name), ("rounding", rounding)):
        if prov.options.get(key, want) != want:
            raise McuqpError(f"{folder} was generated with --{key} {prov.options[key]}, not {want}; "
                             f"pass --{key} {prov.options[key]}")
    given = dict(kv.split("=", 1) for kv in prov.options.get("formats", "").split(",") if "=" in kv)
    # Older headers record inplace=true|false instead of plan=fastest|smallest.
    kind = prov.options.get("plan") or ("smallest" if prov.options.get("inplace", "true") == "true" else "fastest")
    plan = compile_plan(weight_formats(model, given or None, features=board.features),
                        plan=kind if kind in ("fastest", "smallest") else "smallest", board=board)
    from mcuqp.codegen.project import EXAMPLE_SOURCES

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in EXAMPLE_SOURCES)
    return CompileResult(out_dir=folder, board=board.name, files=files, layers=len(model.graph.ops),
                         arena_bytes=plan.arena_bytes, lower_bound_bytes=plan.lower_bound_bytes,
                         weight_bytes=0, param_bytes=0, predicted_flash_bytes=None, predicted_ram_bytes=None,
                         predicted_stack_bytes=None, plan=plan, plan_kind=kind, generated=None,  # type: ignore[arg-type]
                         footprint=None, name=name)


def _write_project(out: Path, loaded: LoadedModel, gen: GeneratedModel, b: Board, footprint: Footprint | None, *,
                   flash_bytes: int | None, ram_bytes: int | None, stack_bytes: int) -> list[Path]:
    from mcuqp.codegen.project import ProjectInfo, write_project
    from mcuqp.target.build import linker_script

    graph = loaded.graph
    x = loaded.verify_inputs
    if x is None or len(x) == 0:
        zp = graph.input.quant.zp if graph.input.quant is not None else 0
        x = np.full((1, *graph.input.shape[1:]), zp, dtype=np.int8)
    x = np.ascontiguousarray(x[:1])
    info = ProjectInfo(
        board=b.name, description=b.description, target_flags=tuple(b.gcc_flags), qemu_machine=b.qemu_machine,
        stand_in=b.verified_on, notes=b.notes,
        linker_script=linker_script(b.emulated(), flash_bytes=flash_bytes, ram_bytes=ram_bytes, stack_bytes=stack_bytes),
        stack_bytes=footprint.stack_bytes if footprint else None, stack_reserved_bytes=stack_bytes,
        flash_bytes=footprint.flash_bytes if footprint else None, ram_bytes=footprint.ram_bytes if footprint else None)
    expected = reference_run(graph, x, rounding=loaded.rounding)[0]
    return write_project(out, graph, gen, info, x[0], expected, rounding=loaded.rounding)


@dataclass
class LayerCount:
    index: int
    name: str
    kind: str
    instructions: int


@dataclass
class FirstMismatch:
    """The first layer whose output differs from TFLite Micro (`verify --per-layer`)."""

    op: str
    tensor: str
    values: int


@dataclass
class VerifyResult(Result):
    """`mcuqp verify --json`. Accuracies are None when the inputs have no labels."""

    board: str
    bit_exact: bool  # every output equals the reference (and at least one was compared)
    compared: int
    mismatches: int  # inputs whose output vector differs from the reference
    mismatched_elements: int
    flash_bytes: int
    model_flash_bytes: int  # the generated model and its kernels (the rest is startup and the test harness)
    ram_bytes: int  # data + bss (holds the arena) + measured stack high-water
    model_ram_bytes: int  # the model's own data + bss (the arena) + measured stack high-water
    static_ram_bytes: int
    stack_bytes: int
    arena_bytes: int
    instructions_per_inference: int  # mean over the inputs
    instructions_min: int
    instructions_max: int
    predicted_flash_bytes: int | None
    predicted_ram_bytes: int | None
    layers: list[LayerCount]
    float_accuracy: float | None = None
    reference_accuracy: float | None = None  # the int8 graph on the numpy reference
    device_accuracy: float | None = None
    first_mismatch_layer: FirstMismatch | None = None  # set by per_layer=True when a layer differs
    per_layer_checked: bool = False  # whether every layer was compared with TFLite Micro
    model_const_bytes: int = 0  # read-only data of model.c in the linked image: weights (packed), indices, parameters
    weight_formats: list[dict] = field(default_factory=list)  # per layer with weights, as CompileResult
    plan_kind: str = "fastest"  # the plan that ran: "fastest" or "smallest" (see mcuqp.plan.choice)
    inputs: np.ndarray = field(default=None, repr=False, metadata=INTERNAL)
    reference_outputs: np.ndarray = field(default=None, repr=False, metadata=INTERNAL)
    device_outputs: np.ndarray = field(default=None, repr=False, metadata=INTERNAL)

    @property
    def ok(self) -> bool:
        """Bit-exact and, when checked, equal to TFLite Micro layer by layer: exit status 0."""
        return self.bit_exact and self.first_mismatch_layer is None

    @property
    def accuracy(self) -> dict[str, float]:
        """{"float", "reference", "device"} -> top-1 accuracy, for those that are known."""
        acc = {"float": self.float_accuracy, "reference": self.reference_accuracy, "device": self.device_accuracy}
        return {k: v for k, v in acc.items() if v is not None}

    def summary(self) -> dict:
        return self.to_dict()


def _accuracies(loaded: LoadedModel, n: int, ref: np.ndarray, dev: np.ndarray) -> dict[str, float]:
    if loaded.labels is None:
        return {}
    y = np.asarray(loaded.labels)[:n]
    acc = {
        "reference_accuracy": float((ref.reshape(n, -1).argmax(1) == y).mean()),
        "device_accuracy": float((dev.reshape(n, -1).argmax(1) == y).mean()),
    }
    if loaded.float_logits is not None:
        acc["float_accuracy"] = float((loaded.float_logits[:n].argmax(1) == y).mean())
    return acc


def verify(
    model: ModelLike,
    *,
    board: str = DEFAULT_BOARD,
    n_inputs: int = 100,
    calib: str | None = None,
    rounding: Rounding | None = None,
    per_layer: bool = False,
    save_io: str | Path | None = None,
    timeout: float = 600.0,
    flash_bytes: int | None = None,
    ram_bytes: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    plan: PlanMode = "auto",
    inplace: bool | None = None,
    sources: str | Path | None = None,
    formats: Mapping[str, str] | None = None,
    name: str | None = None,
) -> VerifyResult:
    """Build the model with the verification firmware, run it on QEMU and compare every
    output with the numpy reference, exactly. `per_layer` (a .tflite) also compares every
    layer of the reference with TFLite Micro.

    Example: `r = mcuqp.verify("model.tflite", board="mps3-an547", n_inputs=20)`; `r.bit_exact, r.instructions_per_inference`

    sources: an existing generated folder (e.g. committed in a firmware tree) to check
    instead of generating one; it must have been generated from this model file.
    name: the C prefix of the generated library (see `compile`)."""
    from mcuqp.target.build import build_firmware, platform_include_dirs, platform_sources, verify_defines
    from mcuqp.target.mapfile import flash_bytes_of, input_sections, ram_bytes_of
    from mcuqp.target.qemu import run_firmware

    model = _loaded(model, calib, rounding)
    rounding = model.rounding
    if model.verify_inputs is None or len(model.verify_inputs) == 0:
        raise McuqpError("no verification inputs: pass --calib for a float model")
    mismatch = oracle_first_mismatch(model, n_inputs) if per_layer else None
    x = np.ascontiguousarray(model.verify_inputs[:n_inputs])
    n = len(x)
    graph = model.graph
    ref = reference_run(graph, x, rounding=rounding)
    b = load_board(board)
    with tempfile.TemporaryDirectory(prefix="mcuqp-verify-") as work:
        if sources is not None:
            lib = existing_library(model, sources, b, rounding=rounding)
        else:
            lib = compile(model, Path(work) / "model", board=board, flash_bytes=flash_bytes, ram_bytes=ram_bytes,
                          stack_bytes=stack_bytes, plan=plan, inplace=inplace, project=False, formats=formats,
                          name=name)
        # A real board's firmware runs on its QEMU stand-in, linked at the stand-in's addresses.
        emulated = b.emulated()
        c_sources = [f for f in lib.files if f.suffix == ".c"] + platform_sources(emulated)
        defines = ["MCUQP_PROFILE", *verify_defines(lib.name)] + (["MCUQP_SINGLE_ROUNDING=1"] if rounding == "single" else [])
        fw = build_firmware(c_sources, [lib.out_dir, *platform_include_dirs()], emulated, Path(work) / "build",
                            defines=defines, flash_bytes=flash_bytes, ram_bytes=ram_bytes, stack_bytes=stack_bytes)
        run = run_firmware(fw, emulated, x.reshape(n, -1), graph.output.size, timeout=timeout,
                           layer_names=[graph.ops[i].name for i in lib.plan.order])
        model_objects = {f.stem + ".o" for f in lib.files if f.suffix == ".c"}
        model_flash = flash_bytes_of(fw.map, model_objects)
        model_const = sum(r.size for r in input_sections(fw.map) if r.obj == f"{lib.name}.o" and r.name.startswith(".rodata"))
        model_ram = ram_bytes_of(fw.map, model_objects)
    dev = run.outputs.reshape(ref.shape)
    diff = dev != ref
    counts = np.asarray(run.instructions, dtype=np.int64)
    layer_counts = np.asarray(run.layer_instructions, dtype=np.int64).mean(axis=0) if len(run.layer_instructions) else []
    layers = [
        LayerCount(i, graph.ops[op_i].name, graph.ops[op_i].kind.value,
                   int(round(layer_counts[i])) if len(layer_counts) else 0)
        for i, op_i in enumerate(lib.plan.order)
    ]
    mismatches = int(diff.reshape(n, -1).any(axis=1).sum())
    result = VerifyResult(
        board=b.name,
        bit_exact=mismatches == 0 and n > 0,
        compared=n,
        mismatches=mismatches,
        mismatched_elements=int(diff.sum()),
        flash_bytes=fw.flash_bytes,
        model_flash_bytes=model_flash,
        ram_bytes=fw.static_ram_bytes + run.stack_bytes,
        model_ram_bytes=model_ram + run.stack_bytes,
        static_ram_bytes=fw.static_ram_bytes,
        stack_bytes=run.stack_bytes,
        arena_bytes=lib.plan.arena_bytes,
        plan_kind=lib.plan_kind,
        instructions_per_inference=int(round(counts.mean())) if counts.size else 0,
        instructions_min=int(counts.min()) if counts.size else 0,
        instructions_max=int(counts.max()) if counts.size else 0,
        predicted_flash_bytes=lib.footprint.flash_bytes if lib.footprint else None,
        predicted_ram_bytes=lib.footprint.ram_bytes if lib.footprint else None,
        layers=layers,
        first_mismatch_layer=None if mismatch is None else FirstMismatch(*mismatch),
        per_layer_checked=per_layer,
        model_const_bytes=model_const,
        weight_formats=lib.weight_formats,
        inputs=x,
        reference_outputs=ref,
        device_outputs=dev,
        **_accuracies(model, n, ref, dev),
    )
    if save_io is not None:
        save_verification_io(result, graph, Path(save_io))
    return result


def oracle_first_mismatch(model: LoadedModel, n_inputs: int) -> tuple[str, str, int] | None:
    """Per-layer comparison of the numpy reference with TFLite Micro on a .tflite model:
    the first op whose output differs as (op, tensor, values), or None."""
    if not str(model.source).endswith(".tflite"):
        raise McuqpError("--per-layer compares with TFLite Micro layer by layer: it needs a .tflite model")
    from mcuqp.oracle import first_mismatch

    return first_mismatch(model.graph, model.source, np.ascontiguousarray(model.verify_inputs[:n_inputs]))


@dataclass
class CompressLayer:
    name: str
    kind: str  # conv, depthwise or linear
    params: int  # weights + biases
    nonzeros: int  # non-zero weights
    bits: int  # bits per weight
    bytes: int  # weights packed at `bits` + int32 biases
    biases: int
    sparsity: float


@dataclass
class CompressResult(Result):
    """`mcuqp compress --json`. `model` is the compressed float module (save it with `save`)."""

    output: str | None  # the .pt written, if any
    dataset: str
    prune: str
    quant: str
    accuracy_before: float  # the float input model on the test split
    accuracy_after: float  # the compressed model (int8 activations simulated when quantized)
    params_before: int
    params_after: int
    weight_bytes: int
    stages: list[tuple[str, float]]  # (stage, test accuracy)
    layers: list[CompressLayer]
    model: Any = field(repr=False, metadata=INTERNAL)
    pipeline_result: Any = field(repr=False, metadata=INTERNAL)

    def save(self, path: str | Path) -> Path:
        """Write the compressed model as a .pt that `load`, `compile` and `verify` accept."""
        from mcuqp.compress.pipeline import save_compressed

        out = save_compressed(self.pipeline_result, path)
        self.output = str(path)
        return Path(out)


def compress(
    model: Any,
    data: str,
    *,
    prune: str | None = None,
    quant: str | None = "int8",
    per_layer: dict | None = None,
    finetune_epochs: int = 5,
    lr: float = 3e-3,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
) -> CompressResult:
    """Prune and/or quantize a float model (an nn.Module or a .pt) with fine-tuning on
    `data` ('digits' or 'mnist5k'); `out` also writes the result as a .pt.

    Example: `r = mcuqp.compress(net, "digits", prune="magnitude:0.5", quant="int8", out="small.pt")`; `r.accuracy_after, r.weight_bytes`"""
    import torch

    from mcuqp.compress.pipeline import compress as run_compress

    if not isinstance(model, torch.nn.Module):
        path = Path(model)
        if path.suffix not in (".pt", ".pth") or not path.exists():
            raise McuqpError(f"{model}: give an existing float model saved with torch.save(module) (.pt)")
        model = load_torch_module(path)
    r = run_compress(model, data, prune=prune, quant=quant, per_layer=per_layer, finetune_epochs=finetune_epochs,
                     lr=lr, seed=seed, progress=progress)
    result = CompressResult(
        output=None, dataset=str(data), prune=prune or "none", quant=quant or "none",
        accuracy_before=r.accuracy_before, accuracy_after=r.accuracy_after, params_before=r.params_before,
        params_after=r.params_after, weight_bytes=r.bytes, stages=list(r.stages),
        layers=[CompressLayer(l.name, l.kind, l.params, l.nonzeros, l.bits, l.bytes, l.biases, l.sparsity)
                for l in r.layers],
        model=r.model, pipeline_result=r,
    )
    if out is not None:
        result.save(out)
    return result


@dataclass
class ExportResult(Result):
    """`mcuqp export --json`: the .tflite written, its size and its TFLite operators."""

    path: Path
    bytes: int
    ops: dict[str, int]  # TFLite builtin operator -> how many
    layers: int  # ops of the integer graph


def export(model: ModelLike, out: str | Path, *, calib: str | None = None, rounding: Rounding | None = None) -> ExportResult:
    """Write the dense-equivalent int8 .tflite of the integer graph `compile` generates C
    for: the same scales, zero points, per-channel weights and biases, so TFLite Micro
    computes the same integers (sparse, int4 and ternary layers are written as int8 layers on
    their effective weights). Every op is imported back and checked to keep its integer
    parameters; a layer TFLite cannot represent (a binary SIGN activation) raises
    ExportError and nothing is written (the file is written to a temporary name, then renamed).

    Example: `mcuqp.export("small.pt", "small.tflite", calib="digits").ops`"""
    from mcuqp.export.graph import to_tflite

    loaded = _loaded(model, calib, rounding)
    exported = to_tflite(loaded.graph, loaded.rounding)
    target = Path(out)
    if target.is_dir():
        raise McuqpError(f"output {target} is a folder: give a file name such as {target / 'model.tflite'}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(exported.data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportResult(path=target, bytes=len(exported.data), ops=exported.ops, layers=len(loaded.graph.ops))


def boards() -> list[Board]:
    """The supported boards (one TOML file each)."""
    from mcuqp.target.boards import list_boards

    return list_boards()


@dataclass
class ReportResult(Result):
    """`mcuqp report --json`: the key figures of the HTML page written to `output`."""

    output: Path
    html_bytes: int
    model: str
    board: str
    rounding: str
    layers: int
    macs: int
    weight_bytes: int
    arena_bytes: int
    lower_bound_bytes: int
    memory_source: str  # "measured" (the verification image on QEMU) or "predicted" (before building)
    flash_bytes: int | None
    ram_bytes: int | None
    flash_budget_bytes: int
    ram_budget_bytes: int
    instructions_per_inference: int | None
    bit_exact: bool | None  # None: not run on the device
    compared: int
    mismatches: int
    float_accuracy: float | None
    reference_accuracy: float | None  # the int8 graph on the numpy reference, over all labelled inputs
    device_accuracy: float | None  # over the `compared` inputs run on QEMU
    accuracy_inputs: int  # labelled inputs behind float_accuracy and reference_accuracy
    layer_table: list[Any]  # htmlreport.LayerRow per op, in execution order


def report(
    model: ModelLike,
    output: str | Path,
    *,
    board: str = DEFAULT_BOARD,
    calib: str | None = None,
    rounding: Rounding | None = None,
    n_inputs: int = 20,
    device: bool = True,
    plan: PlanMode = "auto",
    inplace: bool | None = None,
) -> ReportResult:
    """Write one self-contained HTML report (inline CSS, the arena plot as a data: URI):
    model summary, per-layer table, arena, flash and RAM against the board's budget,
    accuracy (float / int8 / device, when `calib` gives labelled data) and the bit-exact
    verdict of `n_inputs` inputs on QEMU (`device=False` skips the QEMU run).

    Example: `mcuqp.report("net.pt", "report.html", calib="digits").bit_exact`"""
    from mcuqp import __version__
    from mcuqp.htmlreport import layer_rows, plot_data_uri, render
    from mcuqp.plan.cost import graph_macs

    out = Path(output)
    if out.suffix.lower() not in (".html", ".htm"):
        raise McuqpError(f"report output {out}: give a file name ending in .html")
    loaded = _loaded(model, calib, rounding)
    graph = loaded.graph
    b = load_board(board)
    ver = verify(loaded, board=b.name, n_inputs=n_inputs, plan=plan, inplace=inplace) if device else None
    if ver is not None:
        flash, ram, source, kind = ver.flash_bytes, ver.ram_bytes, "measured", ver.plan_kind
    else:
        with tempfile.TemporaryDirectory(prefix="mcuqp-report-") as work:
            lib = compile(loaded, Path(work) / "model", board=b.name, plan=plan, inplace=inplace)
        flash, ram, source, kind = lib.predicted_flash_bytes, lib.predicted_ram_bytes, "predicted", lib.plan_kind
    mem = compile_plan(graph, plan=kind, board=b)  # type: ignore[arg-type]
    acc_n, float_acc, ref_acc = 0, None, None
    if loaded.labels is not None and loaded.verify_inputs is not None:
        y = np.asarray(loaded.labels)
        acc_n = len(y)
        ref = reference_run(graph, loaded.verify_inputs[:acc_n], rounding=loaded.rounding)
        ref_acc = float((ref.reshape(acc_n, -1).argmax(1) == y).mean())
        if loaded.float_logits is not None:
            float_acc = float((np.asarray(loaded.float_logits)[:acc_n].argmax(1) == y).mean())
    rows = layer_rows(graph, mem, None if ver is None else [layer.instructions for layer in ver.layers])
    result = ReportResult(
        output=out, html_bytes=0, model=Path(str(loaded.source)).name, board=b.name, rounding=loaded.rounding,
        layers=len(graph.ops), macs=graph_macs(graph), weight_bytes=sum(r.weight_bytes for r in rows),
        arena_bytes=mem.arena_bytes, lower_bound_bytes=mem.lower_bound_bytes, memory_source=source,
        flash_bytes=flash, ram_bytes=ram, flash_budget_bytes=b.flash_size, ram_budget_bytes=b.ram_size,
        instructions_per_inference=None if ver is None else ver.instructions_per_inference,
        bit_exact=None if ver is None else ver.bit_exact, compared=0 if ver is None else ver.compared,
        mismatches=0 if ver is None else ver.mismatches, float_accuracy=float_acc, reference_accuracy=ref_acc,
        device_accuracy=None if ver is None else ver.device_accuracy, accuracy_inputs=acc_n, layer_table=rows,
    )
    html = render(result, rows, plot_data_uri(graph, mem), board_description=b.description, version=__version__,
                  input_shape=list(graph.input.shape), output_shape=list(graph.output.shape))
    data = html.encode("utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result.html_bytes = len(data)
    return result


def save_verification_io(result: VerifyResult, graph: Graph, out: Path) -> None:
    import json

    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "inputs.npy", result.inputs.astype(np.int8))
    np.save(out / "outputs_device.npy", result.device_outputs.astype(np.int8))
    np.save(out / "outputs_reference.npy", result.reference_outputs.astype(np.int8))
    inp, outp = graph.input.quant, graph.output.quant
    (out / "io.json").write_text(json.dumps({
        "input_scale": inp.s if inp else 1.0,
        "input_zero_point": inp.zp if inp else 0,
        "output_scale": outp.s if outp else 1.0,
        "output_zero_point": outp.zp if outp else 0,
        "input_shape": list(graph.input.shape),
        "output_shape": list(graph.output.shape),
        "layout": "NHWC" if len(graph.input.shape) == 4 else "NC",
    }, indent=2) + "\n")
