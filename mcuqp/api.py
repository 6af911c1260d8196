"""The library's front door: load a model, compile it to C, verify it on an emulator.

Functions return result objects and never print; the CLI formats them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mcuqp.codegen.emit import GeneratedModel, generate, write_library
from mcuqp.codegen.provenance import Provenance, file_sha256, read_provenance
from mcuqp.errors import McuqpError, ToolchainError
from mcuqp.ir import Graph
from mcuqp.plan.footprint import Footprint, check_budget, predict_footprint
from mcuqp.plan.memory import MemoryPlan, plan_memory, validate_plan
from mcuqp.quant.fixedpoint import Rounding
from mcuqp.reference.interpreter import run as reference_run
from mcuqp.target.boards import DEFAULT_BOARD, Board, load_board
from mcuqp.target.build import DEFAULT_STACK_BYTES

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

            graph = load_tflite(path)
            loaded = LoadedModel(graph, source)
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
    from mcuqp.compress.pipeline import RANGES_ATTR
    from mcuqp.compress.train import predict
    from mcuqp.quant.ptq import quantize_input, quantize_module

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
    )


def compile_plan(model: LoadedModel | Graph, *, inplace: bool = True) -> MemoryPlan:
    """The memory plan `compile` would use, without generating anything.

    inplace: run depthwise and 1x1 convolutions over their input where that lowers the
    arena (smallest RAM); False keeps every op on the faster out-of-place kernels."""
    graph = model.graph if isinstance(model, LoadedModel) else model
    mode = "auto" if inplace else "never"
    plan = plan_memory(graph, inplace_depthwise=mode, inplace_conv=mode)
    validate_plan(graph, plan)
    return plan


@dataclass
class CompileResult:
    out_dir: Path
    files: list[Path]
    board: Board
    plan: MemoryPlan
    generated: GeneratedModel
    footprint: Footprint | None  # predicted verification-image footprint; None without the toolchain


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
    model: LoadedModel | Graph,
    out_dir: str | Path,
    *,
    board: str = DEFAULT_BOARD,
    rounding: Rounding = "double",
    flash_bytes: int | None = None,
    ram_bytes: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    inplace: bool = True,
) -> CompileResult:
    """Generate the C library into `out_dir` (written to a temporary folder, then renamed
    into place, so a failure never leaves a half-written library).

    Before writing anything, predicts the flash and RAM of the verification image and
    raises BudgetError when it exceeds the budgets (default: the board's memories). The
    prediction needs arm-none-eabi-gcc; without it, and without explicit budgets, the
    library is still generated and `footprint` is None."""
    graph = model.graph if isinstance(model, LoadedModel) else model
    b = load_board(board)
    plan = compile_plan(graph, inplace=inplace)
    provenance = Provenance.of(model.source if isinstance(model, LoadedModel) else None, board=b.name,
                               rounding=rounding, inplace=inplace, flash=flash_bytes, ram=ram_bytes, stack=stack_bytes)
    gen = generate(graph, plan, rounding=rounding, board=b.name, features=b.features, provenance=provenance)
    try:
        footprint = predict_footprint(graph, plan, gen, b, stack_bytes_reserved=stack_bytes)
    except ToolchainError:
        if flash_bytes is not None or ram_bytes is not None:
            raise
        footprint = None
    if footprint is not None:
        check_budget(footprint, b, flash_bytes=flash_bytes, ram_bytes=ram_bytes)
    target = Path(out_dir)
    tmp = _atomic_dir(target)
    try:
        files = write_library(gen, tmp)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CompileResult(target, [target / f.name for f in files], b, plan, gen, footprint)


def existing_library(model: LoadedModel, folder: str | Path, board: Board, *, rounding: Rounding) -> CompileResult:
    """A folder generated earlier, as `compile` would have returned it; refused (one line)
    when its model.h names another model file, board or rounding than the ones given."""
    folder = Path(folder)
    prov = read_provenance(folder)
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
    plan = compile_plan(model.graph, inplace=prov.options.get("inplace", "true") == "true")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    return CompileResult(folder, files, board, plan, None, None)  # type: ignore[arg-type]


@dataclass
class LayerCount:
    index: int
    name: str
    kind: str
    instructions: int


@dataclass
class VerifyResult:
    board: str
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
    layers: list[LayerCount]
    predicted_flash_bytes: int | None
    predicted_ram_bytes: int | None
    inputs: np.ndarray
    reference_outputs: np.ndarray
    device_outputs: np.ndarray
    accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0 and self.compared > 0

    def summary(self) -> dict:
        d = {
            "board": self.board,
            "bit_exact": self.bit_exact,
            "mismatches": self.mismatches,
            "mismatched_elements": self.mismatched_elements,
            "compared": self.compared,
            "flash_bytes": self.flash_bytes,
            "model_flash_bytes": self.model_flash_bytes,
            "ram_bytes": self.ram_bytes,
            "model_ram_bytes": self.model_ram_bytes,
            "static_ram_bytes": self.static_ram_bytes,
            "stack_bytes": self.stack_bytes,
            "arena_bytes": self.arena_bytes,
            "instructions_per_inference": self.instructions_per_inference,
            "instructions_min": self.instructions_min,
            "instructions_max": self.instructions_max,
            "predicted_flash_bytes": self.predicted_flash_bytes,
            "predicted_ram_bytes": self.predicted_ram_bytes,
            "layers": [vars(layer) for layer in self.layers],
        }
        d.update({f"{k}_accuracy": v for k, v in self.accuracy.items()})
        return d


def _accuracies(loaded: LoadedModel, n: int, ref: np.ndarray, dev: np.ndarray) -> dict[str, float]:
    if loaded.labels is None:
        return {}
    y = np.asarray(loaded.labels)[:n]
    acc = {
        "reference": float((ref.reshape(n, -1).argmax(1) == y).mean()),
        "device": float((dev.reshape(n, -1).argmax(1) == y).mean()),
    }
    if loaded.float_logits is not None:
        acc["float"] = float((loaded.float_logits[:n].argmax(1) == y).mean())
    return acc


def verify(
    model: LoadedModel,
    *,
    board: str = DEFAULT_BOARD,
    n_inputs: int = 100,
    rounding: Rounding = "double",
    save_io: str | Path | None = None,
    timeout: float = 600.0,
    flash_bytes: int | None = None,
    ram_bytes: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    inplace: bool = True,
    sources: str | Path | None = None,
) -> VerifyResult:
    """Build the model with the verification firmware, run it on QEMU and compare every
    output with the numpy reference, exactly.

    sources: an existing generated folder (e.g. committed in a firmware tree) to check
    instead of generating one; it must have been generated from this model file."""
    from mcuqp.target.build import build_firmware, platform_include_dirs, platform_sources
    from mcuqp.target.mapfile import flash_bytes_of, ram_bytes_of
    from mcuqp.target.qemu import run_firmware

    if model.verify_inputs is None or len(model.verify_inputs) == 0:
        raise McuqpError("no verification inputs: pass --calib for a float model")
    x = np.ascontiguousarray(model.verify_inputs[:n_inputs])
    n = len(x)
    graph = model.graph
    ref = reference_run(graph, x, rounding=rounding)
    b = load_board(board)
    with tempfile.TemporaryDirectory(prefix="mcuqp-verify-") as work:
        if sources is not None:
            lib = existing_library(model, sources, b, rounding=rounding)
        else:
            lib = compile(model, Path(work) / "model", board=board, rounding=rounding,
                          flash_bytes=flash_bytes, ram_bytes=ram_bytes, stack_bytes=stack_bytes, inplace=inplace)
        sources = [f for f in lib.files if f.suffix == ".c"] + platform_sources(b)
        defines = ["MCUQP_PROFILE"] + (["MCUQP_SINGLE_ROUNDING=1"] if rounding == "single" else [])
        fw = build_firmware(sources, [lib.out_dir, *platform_include_dirs()], b, Path(work) / "build",
                            defines=defines, flash_bytes=flash_bytes, ram_bytes=ram_bytes, stack_bytes=stack_bytes)
        run = run_firmware(fw, b, x.reshape(n, -1), graph.output.size, timeout=timeout,
                           layer_names=[graph.ops[i].name for i in lib.plan.order])
        model_objects = {f.stem + ".o" for f in lib.files if f.suffix == ".c"}
        model_flash = flash_bytes_of(fw.map, model_objects)
        model_ram = ram_bytes_of(fw.map, model_objects)
    dev = run.outputs.reshape(ref.shape)
    diff = dev != ref
    counts = np.asarray(run.instructions, dtype=np.int64)
    per_layer = np.asarray(run.layer_instructions, dtype=np.int64).mean(axis=0) if len(run.layer_instructions) else []
    layers = [
        LayerCount(i, graph.ops[op_i].name, graph.ops[op_i].kind.value, int(round(per_layer[i])) if i < len(per_layer) else 0)
        for i, op_i in enumerate(lib.plan.order)
    ]
    result = VerifyResult(
        board=b.name,
        compared=n,
        mismatches=int(diff.reshape(n, -1).any(axis=1).sum()),
        mismatched_elements=int(diff.sum()),
        flash_bytes=fw.flash_bytes,
        model_flash_bytes=model_flash,
        ram_bytes=fw.static_ram_bytes + run.stack_bytes,
        model_ram_bytes=model_ram + run.stack_bytes,
        static_ram_bytes=fw.static_ram_bytes,
        stack_bytes=run.stack_bytes,
        arena_bytes=lib.plan.arena_bytes,
        instructions_per_inference=int(round(counts.mean())) if counts.size else 0,
        instructions_min=int(counts.min()) if counts.size else 0,
        instructions_max=int(counts.max()) if counts.size else 0,
        layers=layers,
        predicted_flash_bytes=lib.footprint.flash_bytes if lib.footprint else None,
        predicted_ram_bytes=lib.footprint.ram_bytes if lib.footprint else None,
        inputs=x,
        reference_outputs=ref,
        device_outputs=dev,
        accuracy=_accuracies(model, n, ref, dev),
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
