"""The `mcuqp` command line. User mistakes print one line and exit with status 2."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mcuqp.errors import McuqpError
from mcuqp.target.boards import DEFAULT_BOARD

EXIT_USER_ERROR = 2


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except McuqpError as e:
            click.echo(f"mcuqp: error: {e}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo("mcuqp: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(package_name="mcuqp")
def main() -> None:
    """Compress small neural networks and generate bit-exact int8 C for Arm Cortex-M."""


board_option = click.option("--board", "-b", default=DEFAULT_BOARD, show_default=True, help="Target board (see `mcuqp boards`).")
calib_option = click.option(
    "--calib", default=None, help="Calibration data for a float model: digits, mnist5k or FILE.npy (float, NCHW)."
)
rounding_option = click.option(
    "--rounding", type=click.Choice(["double", "single"]), default="double", show_default=True,
    help="Requantization rounding: TFLite Micro's double rounding, or single rounding.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")


inplace_option = click.option(
    "--inplace/--no-inplace", default=True, show_default=True,
    help="Run depthwise and 1x1 convs over their input where that lowers the arena (less RAM, slower kernels).",
)


def _budget_options(f):
    f = click.option("--stack", "stack_bytes", type=click.IntRange(min=256), default=16384, show_default=True,
                     help="Stack bytes reserved in RAM.")(f)
    f = click.option("--ram", "ram_bytes", type=click.IntRange(min=1), default=None,
                     help="RAM budget in bytes (default: the board's RAM).")(f)
    f = click.option("--flash", "flash_bytes", type=click.IntRange(min=1), default=None,
                     help="Flash budget in bytes (default: the board's flash).")(f)
    return f


def _fmt_int(n: int) -> str:
    return f"{n:,}"


@main.command()
@json_option
def boards(as_json: bool) -> None:
    """List the supported boards."""
    from mcuqp.target.boards import list_boards

    bs = list_boards()
    if as_json:
        click.echo(json.dumps([vars(b) if not hasattr(b, "to_dict") else b.to_dict() for b in bs], default=str))
        return
    for b in bs:
        mark = " (default)" if b.name == DEFAULT_BOARD else ""
        click.echo(f"{b.name:<12} {b.cpu:<12} flash {_fmt_int(b.flash_size):>10} B  ram {_fmt_int(b.ram_size):>10} B  {b.description}{mark}")


@main.command(name="compile")
@click.argument("model", type=click.Path(dir_okay=False))
@board_option
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the generated C.")
@calib_option
@rounding_option
@_budget_options
@inplace_option
@json_option
def compile_cmd(model: str, board: str, out_dir: str, calib: str | None, rounding: str, flash_bytes: int | None,
                ram_bytes: int | None, stack_bytes: int, inplace: bool, as_json: bool) -> None:
    """Generate a self-contained C library for MODEL (.tflite or .pt)."""
    from mcuqp import api

    loaded = api.load(model, calib=calib, rounding=rounding)
    res = api.compile(loaded, out_dir, board=board, rounding=rounding, flash_bytes=flash_bytes,
                      ram_bytes=ram_bytes, stack_bytes=stack_bytes, inplace=inplace)
    fp = res.footprint
    info = {
        "out_dir": str(res.out_dir),
        "board": res.board.name,
        "files": [f.name for f in res.files],
        "arena_bytes": res.plan.arena_bytes,
        "lower_bound_bytes": res.plan.lower_bound_bytes,
        "weight_bytes": res.generated.weight_bytes,
        "param_bytes": res.generated.param_bytes,
        "layers": len(loaded.graph.ops),
        "predicted_flash_bytes": fp.flash_bytes if fp else None,
        "predicted_ram_bytes": fp.ram_bytes if fp else None,
        "predicted_stack_bytes": fp.stack_bytes if fp else None,
    }
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"wrote {len(res.files)} files to {res.out_dir} for {res.board.name}")
    click.echo(f"  layers        {info['layers']}")
    click.echo(f"  weights       {_fmt_int(info['weight_bytes'])} B (+ {_fmt_int(info['param_bytes'])} B of parameters)")
    click.echo(f"  arena         {_fmt_int(info['arena_bytes'])} B (live-activation lower bound {_fmt_int(info['lower_bound_bytes'])} B)")
    if fp is None:
        click.echo("  footprint     not predicted: arm-none-eabi-gcc is missing (make toolchain)")
    else:
        click.echo(f"  predicted     flash {_fmt_int(fp.flash_bytes)} B, RAM {_fmt_int(fp.ram_bytes)} B "
                   f"(arena {_fmt_int(fp.arena_bytes)} B + stack {_fmt_int(fp.stack_bytes)} B + other data) "
                   f"for the verification image on {res.board.name}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@board_option
@calib_option
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Draw the arena over time to this PNG.")
@inplace_option
@json_option
def plan(model: str, board: str, calib: str | None, plot: str | None, inplace: bool, as_json: bool) -> None:
    """Plan MODEL's static arena and print the live tensors per layer."""
    from mcuqp import api
    from mcuqp.plan.report import plan_json, plan_table, plot_plan
    from mcuqp.target.boards import load_board

    load_board(board)  # an unknown board is an error even though planning is board-independent
    loaded = api.load(model, calib=calib)
    p = api.compile_plan(loaded, inplace=inplace)
    if plot:
        plot_plan(loaded.graph, p, plot)
    if as_json:
        click.echo(json.dumps(plan_json(loaded.graph, p)))
        return
    click.echo(plan_table(loaded.graph, p).rstrip("\n"))
    if plot:
        click.echo(f"plot written to {plot}")


def _parse_per_layer(spec: str | None) -> dict | None:
    """`name=kind,name=kind`, a JSON object, or @FILE holding a JSON object."""
    if not spec:
        return None
    text = spec
    if spec.startswith("@"):
        try:
            text = Path(spec[1:]).read_text()
        except OSError as e:
            raise McuqpError(f"--per-layer {spec}: {e.strerror}") from None
    if text.lstrip().startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as e:
            raise McuqpError(f"--per-layer: not valid JSON ({e.msg} at character {e.pos})") from None
        if not isinstance(out, dict):
            raise McuqpError("--per-layer: the JSON must be an object {layer: kind or {options}}")
        return out
    out: dict = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, kind = item.partition("=")
        if not sep or not name or not kind:
            raise McuqpError(f"--per-layer: {item!r} is not LAYER=KIND (e.g. fc=int8,stem.0=ternary)")
        out[name] = kind
    return out


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "dataset", type=click.Choice(["digits", "mnist5k"]), required=True,
              help="Training / test data for fine-tuning and accuracy.")
@click.option("--prune", default=None, metavar="METHOD:AMOUNT",
              help="magnitude, global, gradual, l1, filter, taylor, obd, taylor-filter, obd-filter, lasso, correlation "
                   "(e.g. magnitude:0.8, l1:1e-4, lasso:0.5).")
@click.option("--quant", type=click.Choice(["int8", "int4", "int2", "ternary", "binary", "none"]), default="int8",
              show_default=True, help="Weight format (activations are int8; `none` keeps float weights).")
@click.option("--per-layer", "per_layer", default=None, metavar="SPEC",
              help="Per-layer overrides: LAYER=KIND,... or a JSON object (or @FILE).")
@click.option("--finetune-epochs", default=5, show_default=True, type=click.IntRange(min=0))
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True)
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Compressed model (.pt).")
@json_option
def compress(model: str, dataset: str, prune: str | None, quant: str, per_layer: str | None, finetune_epochs: int,
             lr: float, seed: int, out: str, as_json: bool) -> None:
    """Prune and/or quantize MODEL (a float .pt) with fine-tuning; write OUT.pt for compile/verify."""
    from mcuqp import api
    from mcuqp.compress.pipeline import compress as run_compress
    from mcuqp.compress.pipeline import format_summary, save_compressed

    path = Path(model)
    if path.suffix not in (".pt", ".pth") or not path.exists():
        raise McuqpError(f"{model}: give an existing float model saved with torch.save(module) (.pt)")
    module = api.load_torch_module(path)
    result = run_compress(
        module, dataset, prune=prune, quant=None if quant == "none" else quant,
        per_layer=_parse_per_layer(per_layer), finetune_epochs=finetune_epochs, lr=lr, seed=seed,
        progress=not as_json and sys.stderr.isatty(),
    )
    save_compressed(result, out)
    if as_json:
        click.echo(json.dumps({
            "output": out, "dataset": dataset, "prune": prune or "none", "quant": quant,
            "accuracy_before": result.accuracy_before, "accuracy_after": result.accuracy_after,
            "params_before": result.params_before, "params_after": result.params_after,
            "weight_bytes": result.bytes, "layers": [vars(r) for r in result.layers],
        }))
        return
    click.echo(format_summary(result))
    click.echo(f"wrote {out}: next `mcuqp verify {out} --calib {dataset}`")


def _print_verify(res, title: str | None = None) -> None:
    if title:
        click.echo(title)
    acc = res.accuracy
    if "float" in acc:
        click.echo(f"  float accuracy            {acc['float'] * 100:6.2f} %")
    if "reference" in acc:
        click.echo(f"  int8 reference accuracy   {acc['reference'] * 100:6.2f} %")
        click.echo(f"  on-device accuracy        {acc['device'] * 100:6.2f} %")
    verdict = "BIT-EXACT" if res.bit_exact else "MISMATCH"
    click.echo(f"  verdict                   {verdict}: {res.mismatches} of {res.compared} outputs differ from the reference")
    click.echo(f"  flash                     {_fmt_int(res.flash_bytes)} B (text + rodata + data of the linked image)")
    click.echo(
        f"  RAM                       {_fmt_int(res.ram_bytes)} B (data + bss {_fmt_int(res.static_ram_bytes)} B incl. arena "
        f"{_fmt_int(res.arena_bytes)} B, stack high-water {_fmt_int(res.stack_bytes)} B)"
    )
    click.echo(f"  instructions/inference    {_fmt_int(res.instructions_per_inference)} on {res.board}")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@board_option
@click.option("--inputs", "n_inputs", default=100, show_default=True, type=click.IntRange(min=1), help="How many inputs to compare.")
@click.option("--save-io", type=click.Path(file_okay=False), default=None, help="Write inputs.npy, outputs_device.npy and io.json here.")
@calib_option
@rounding_option
@click.option("--per-layer", is_flag=True,
              help="Compare every layer with TFLite Micro (.tflite models) and print instructions per layer.")
@_budget_options
@inplace_option
@json_option
def verify(model: str, board: str, n_inputs: int, save_io: str | None, calib: str | None, rounding: str,
           per_layer: bool, flash_bytes: int | None, ram_bytes: int | None, stack_bytes: int, inplace: bool,
           as_json: bool) -> None:
    """Build MODEL for BOARD, run it on QEMU and compare with the integer reference."""
    from mcuqp import api

    loaded = api.load(model, calib=calib, rounding=rounding)
    mismatch = api.oracle_first_mismatch(loaded, n_inputs) if per_layer else None
    res = api.verify(loaded, board=board, n_inputs=n_inputs, rounding=rounding, save_io=save_io,
                     flash_bytes=flash_bytes, ram_bytes=ram_bytes, stack_bytes=stack_bytes, inplace=inplace)
    if as_json:
        out = res.summary()
        if per_layer:
            out["first_mismatch_layer"] = None if mismatch is None else {
                "op": mismatch[0], "tensor": mismatch[1], "values": mismatch[2]}
        click.echo(json.dumps(out))
    else:
        _print_verify(res, f"{Path(model).name} on {res.board}:")
        if per_layer:
            if mismatch is None:
                click.echo(f"  per-layer vs TFLite Micro every layer's output is equal on {res.compared} inputs")
            else:
                click.echo(f"  per-layer vs TFLite Micro first difference at {mismatch[0]} "
                           f"(tensor {mismatch[1]}: {mismatch[2]} values differ)")
            click.echo("  instructions per layer:")
            for layer in res.layers:
                click.echo(f"    {layer.index:3d} {layer.kind:<18} {layer.name:<40} {_fmt_int(layer.instructions):>12}")
    if not res.bit_exact or mismatch is not None:
        sys.exit(1)


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@board_option
@calib_option
@rounding_option
@click.option("--inputs", "n_inputs", default=2, show_default=True, type=click.IntRange(min=1),
              help="Inputs to run (counts are averaged; the outputs are checked against the reference).")
@inplace_option
@json_option
def bench(model: str, board: str, calib: str | None, rounding: str, n_inputs: int, inplace: bool,
          as_json: bool) -> None:
    """Per-layer instructions and estimated cycles of MODEL on BOARD (QEMU + cycle tables)."""
    from mcuqp import api
    from mcuqp.bench import bench as run_bench
    from mcuqp.target.boards import load_board

    b = load_board(board)
    loaded = api.load(model, calib=calib, rounding=rounding)
    res = run_bench(loaded, board=b, inplace=inplace, n_inputs=n_inputs, rounding=rounding)
    click.echo(json.dumps(res.to_dict()) if as_json else res.table())
    if not res.bit_exact:
        sys.exit(1)


@main.command()
@board_option
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
def demo(board: str, epochs: int, seed: int) -> None:
    """Train a small CNN on digits, quantize to int8, generate C, run it on QEMU."""
    from mcuqp import api
    from mcuqp.compress.train import FitConfig, evaluate, fit
    from mcuqp.datasets import load_dataset
    from mcuqp.models import DigitsCNN

    data = load_dataset("digits")
    click.echo(f"[1/4] training DigitsCNN on scikit-learn digits ({len(data.x_train)} train / {len(data.x_test)} test images)")
    model = fit(DigitsCNN(), data.x_train, data.y_train, FitConfig(epochs=epochs, lr=3e-3, seed=seed, progress=sys.stderr.isatty()))
    click.echo(f"      float test accuracy {evaluate(model, data.x_test, data.y_test) * 100:.2f} %")
    click.echo("[2/4] folding batch norm and quantizing to int8 (per-channel weights, min/max calibration)")
    loaded = api.load(model, calib="digits")
    click.echo(f"[3/4] generating C and building for {board}")
    click.echo(f"[4/4] running {len(loaded.verify_inputs)} test images on QEMU and comparing with the reference")
    res = api.verify(loaded, board=board, n_inputs=len(loaded.verify_inputs))
    _print_verify(res, "result:")
    if not res.bit_exact:
        sys.exit(1)


if __name__ == "__main__":
    main()
