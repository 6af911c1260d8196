"""The `mcuqp` command line: a thin layer over mcuqp.api that parses options and formats results.

Exit status: 0 ok, 1 an output differs (verify, report), 2 a usage or input error (one line on
stderr, nothing half-written), 130 interrupted.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from mcuqp import __version__
from mcuqp.errors import McuqpError
from mcuqp.target.boards import DEFAULT_BOARD

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USER_ERROR = 2

EXIT_STATUS_HELP = """\b
Exit status: 0 ok; 1 an output differs from the reference (verify, report);
2 usage or input error (one line on stderr, nothing half-written)."""


class _Group(click.Group):
    def main(self, *args, **kwargs):
        """Click's usage errors as one line too (click prints usage, a hint and the error)."""
        kwargs.pop("standalone_mode", None)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError" and e.ctx is not None:  # bare `mcuqp`: the help
                click.echo(e.ctx.get_help())
                sys.exit(e.exit_code)
            where = f"; see `{e.ctx.command_path} --help`" if e.ctx is not None else ""
            click.echo(f"mcuqp: error: {e.format_message().rstrip('.')}{where}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.ClickException as e:
            click.echo(f"mcuqp: error: {e.format_message()}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except click.Abort:
            click.echo("mcuqp: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except McuqpError as e:
            click.echo(f"mcuqp: error: {e}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo("mcuqp: interrupted", err=True)
            sys.exit(130)


def _example(*lines: str) -> str:
    """A command's epilog: `--help` ends with these example invocations (\\b keeps the lines)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines) + "\n\n" + EXIT_STATUS_HELP


@click.group(cls=_Group, epilog=_example("mcuqp boards", "mcuqp compile model.tflite -o out/",
                                          "mcuqp export small.pt --calib digits -o small.tflite",
                                          "mcuqp verify model.tflite --inputs 20", "mcuqp compile --help"))
@click.version_option(version=__version__, prog_name="mcuqp")
def main() -> None:
    """Compress small neural networks and generate bit-exact int8 C for Arm Cortex-M."""


class Output:
    """How a command reports: text (default), nothing (--quiet) or one JSON object (--json)."""

    def __init__(self, as_json: bool, quiet: bool, verbose: bool) -> None:
        if quiet and verbose:
            raise click.UsageError("--quiet and --verbose exclude each other")
        self.as_json, self.quiet, self.verbose = as_json, quiet, verbose

    def text(self, line: str = "") -> None:
        if not (self.quiet or self.as_json):
            click.echo(line)

    def detail(self, line: str) -> None:
        """Only with --verbose."""
        if self.verbose and not self.as_json:
            click.echo(line)

    def progress(self, line: str) -> None:
        """What is happening, on stderr, with --verbose."""
        if self.verbose:
            click.echo(f"mcuqp: {line}", err=True)

    def result(self, obj: dict, show: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(obj))
        elif not self.quiet:
            show()


def output_options(f):
    """--json, --quiet and --verbose, passed to the command as one `out: Output`."""
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Print nothing; the exit status tells the outcome.")(f)
    f = click.option("--verbose", "-v", is_flag=True, help="Also print progress (stderr) and per-layer details.")(f)
    return f


def _out(as_json: bool, quiet: bool, verbose: bool) -> Output:
    return Output(as_json, quiet, verbose)


board_option = click.option("--board", "-b", default=DEFAULT_BOARD, show_default=True, help="Target board (see `mcuqp boards`).")
calib_option = click.option(
    "--calib", default=None, help="Calibration data for a float model: digits, mnist5k or FILE.npy (float, NCHW)."
)
rounding_option = click.option(
    "--rounding", type=click.Choice(["double", "single"]), default="double", show_default=True,
    help="Requantization rounding: TFLite Micro's double rounding, or single rounding.",
)


def plan_options(f):
    """--plan (passed as `plan_mode`) and its older spelling --inplace/--no-inplace (`inplace`)."""
    f = click.option(
        "--inplace/--no-inplace", default=None,
        help="Older spelling of --plan: --inplace is --plan smallest, --no-inplace is --plan fastest.")(f)
    f = click.option(
        "--plan", "plan_mode", type=click.Choice(["auto", "fastest", "smallest"]), default="auto", show_default=True,
        help="Memory plan: fastest (out-of-place kernels), smallest (depthwise and 1x1 convs over their input where "
             "that lowers the arena; slower), auto = the fastest whose RAM fits the budget (--ram), else the smallest.")(f)
    return f


ram_option = click.option("--ram", "ram_bytes", type=click.IntRange(min=1), default=None,
                          help="RAM budget in bytes that --plan auto must fit (default: the board's RAM).")
model_argument = click.argument("model", type=click.Path(dir_okay=False))


def _parse_formats(ctx, param, values: tuple[str, ...]) -> dict[str, str] | None:
    """`--format LAYER=FORMAT` (repeatable) -> {layer: format}; layer names are checked
    against the model once it is loaded."""
    from mcuqp.plan.formats import FORMATS

    out: dict[str, str] = {}
    for v in values:
        layer, sep, fmt = v.rpartition("=")
        if not sep or not layer:
            raise click.BadParameter(f"{v!r} is not LAYER=FORMAT", param=param)
        if fmt not in FORMATS:
            raise click.BadParameter(f"{v!r}: unknown format {fmt!r} (one of {', '.join(FORMATS)})", param=param)
        out[layer] = fmt
    return out or None


format_option = click.option(
    "--format", "formats", multiple=True, callback=_parse_formats, metavar="LAYER=FORMAT",
    help="Weight format of one layer: int8, sparse, int4, ternary, binary or xnor (repeatable; "
         "default: the fastest its weights allow whose model fits the flash budget).")


def _check_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from mcuqp.codegen.emit import check_name

    try:
        return None if value is None else check_name(value)
    except McuqpError as e:
        raise click.BadParameter(str(e).removeprefix(f"--name {value!r} ")) from None


name_option = click.option(
    "--name", default=None, callback=_check_name,
    help="C prefix of the generated library: NAME.c, NAME.h, NAME_invoke(), NAME_INPUT_SIZE... "
         "[default: the model file's name as a C identifier]")


def _budget_options(f):
    f = click.option("--stack", "stack_bytes", type=click.IntRange(min=256), default=16384, show_default=True,
                     help="Stack bytes reserved in RAM.")(f)
    f = click.option("--ram", "ram_bytes", type=click.IntRange(min=1), default=None,
                     help="RAM budget in bytes (default: the board's RAM); --plan auto picks the fastest plan "
                          "that fits it.")(f)
    f = click.option("--flash", "flash_bytes", type=click.IntRange(min=1), default=None,
                     help="Flash budget in bytes (default: the board's flash).")(f)
    return f


def _fmt_int(n: int) -> str:
    return f"{n:,}"


@main.command(epilog=_example("mcuqp boards", "mcuqp boards --json"))
@output_options
def boards(as_json: bool, quiet: bool, verbose: bool) -> None:
    """List the supported boards."""
    from mcuqp import api

    out = _out(as_json, quiet, verbose)
    bs = api.boards()

    def show() -> None:
        for b in bs:
            mark = " (default)" if b.name == DEFAULT_BOARD else ""
            qemu = f"QEMU {b.qemu_machine}" if b.stand_in is None else f"stand-in {b.stand_in}"
            click.echo(f"{b.name:<18} {b.cpu:<14} flash {_fmt_int(b.flash_size):>9} B  ram {_fmt_int(b.ram_size):>9} B  "
                       f"{qemu:<21} {b.description}{mark}")
            out.detail(f"{'':<12} features: {', '.join(sorted(b.features)) or 'none'}; QEMU machine {b.qemu_machine}")

    if as_json:
        click.echo(json.dumps([{**vars(b), "features": sorted(b.features), "cflags": list(b.cflags)} for b in bs]))
    elif not quiet:
        show()


@main.command(name="compile", epilog=_example(
    "mcuqp compile model.tflite --board mps2-an386 -o out/",
    "mcuqp compile net.pt --calib digits -o out/ --json",
    "mcuqp compile kws_ref_model.tflite --name kws -o kws/"))
@model_argument
@board_option
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the generated C.")
@calib_option
@rounding_option
@_budget_options
@plan_options
@format_option
@name_option
@output_options
def compile_cmd(model: str, board: str, out_dir: str, calib: str | None, rounding: str, flash_bytes: int | None,
                ram_bytes: int | None, stack_bytes: int, plan_mode: str, inplace: bool | None, formats: dict | None,
                name: str | None, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Generate a self-contained C library for MODEL (.tflite or .pt)."""
    from mcuqp import api

    out = _out(as_json, quiet, verbose)
    out.progress(f"loading {model}")
    loaded = api.load(model, calib=calib, rounding=rounding)
    out.progress(f"planning and generating C for {board}")
    res = api.compile(loaded, out_dir, board=board, flash_bytes=flash_bytes,
                      ram_bytes=ram_bytes, stack_bytes=stack_bytes, plan=plan_mode, inplace=inplace, formats=formats,
                      name=name)

    def show() -> None:
        click.echo(f"wrote {len(res.files)} files to {res.out_dir} for {res.board}"
                   + (" (and a CMake project: see its README.md)" if res.project_files else ""))
        click.echo(f"  layers        {res.layers}")
        click.echo(f"  weights       {_fmt_int(res.weight_bytes)} B (+ {_fmt_int(res.param_bytes)} B of parameters)")
        click.echo(f"  arena         {_fmt_int(res.arena_bytes)} B (live-activation lower bound "
                   f"{_fmt_int(res.lower_bound_bytes)} B), {res.plan_kind} plan")
        for w in res.weight_formats:
            click.echo(f"  layer         {w['layer']}: {w['format']}, {_fmt_int(w['weight_bytes'])} B weights"
                       + (f" + {_fmt_int(w['index_bytes'])} B indices" if w["index_bytes"] else ""))
        if res.predicted_flash_bytes is None:
            click.echo("  footprint     not predicted: arm-none-eabi-gcc is missing (make toolchain)")
        else:
            click.echo(f"  predicted     flash {_fmt_int(res.predicted_flash_bytes)} B, RAM {_fmt_int(res.predicted_ram_bytes)} B "
                       f"(arena {_fmt_int(res.arena_bytes)} B + stack {_fmt_int(res.predicted_stack_bytes)} B + other data) "
                       f"for the verification image on {res.board}")
        for f in res.files:
            out.detail(f"  file          {f}")

    out.result(res.to_dict(), show)


@main.command(name="export", epilog=_example(
    "mcuqp export small.pt --calib digits -o small.tflite",
    "mcuqp export model.tflite -o copy.tflite --json"))
@model_argument
@calib_option
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False),
              help="The .tflite file to write.")
@output_options
def export_cmd(model: str, calib: str | None, out_path: str, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Write MODEL's integer graph as a dense int8 .tflite that TFLite Micro runs bit-exactly.

    The same scales, zero points, per-channel weights and biases as the generated C; sparse,
    int4 and ternary layers become int8 layers on their effective weights. Models with binary
    SIGN activations (fully binary layers) have no TFLite form and are refused."""
    from mcuqp import api

    out = _out(as_json, quiet, verbose)
    out.progress(f"loading {model}")
    res = api.export(model, out_path, calib=calib)

    def show() -> None:
        ops = ", ".join(f"{n} {k}" for k, n in sorted(res.ops.items()))
        click.echo(f"wrote {res.path} ({_fmt_int(res.bytes)} B): {res.layers} layers as {ops}")

    out.result(res.to_dict(), show)


@main.command(epilog=_example("mcuqp plan model.tflite --board mps3-an547", "mcuqp plan model.tflite --plot arena.png --json"))
@model_argument
@board_option
@calib_option
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Draw the arena over time to this PNG.")
@plan_options
@ram_option
@click.option("--stack", "stack_bytes", type=click.IntRange(min=256), default=16384, show_default=True,
              help="Stack bytes reserved in RAM (--plan auto: the arena plus this must fit --ram).")
@format_option
@output_options
def plan(model: str, board: str, calib: str | None, plot: str | None, plan_mode: str, inplace: bool | None,
         ram_bytes: int | None, stack_bytes: int, formats: dict | None, as_json: bool, quiet: bool,
         verbose: bool) -> None:
    """Plan MODEL's static arena, print the live tensors per layer and the arena's share of BOARD's RAM."""
    from mcuqp import api
    from mcuqp.plan.report import plan_table, weights_table

    out = _out(as_json, quiet, verbose)
    res = api.plan(model, board=board, calib=calib, plan=plan_mode, inplace=inplace, ram_bytes=ram_bytes,
                   stack_bytes=stack_bytes, plot=plot, formats=formats)

    def show() -> None:
        click.echo(plan_table(res.graph, res.memory_plan).rstrip("\n"))
        weights = weights_table(res.graph, res.memory_plan)
        if weights:
            click.echo("\n" + "\n".join(weights))
        click.echo(f"arena {_fmt_int(res.arena_bytes)} B = {res.arena_fraction_of_ram * 100:.2f} % of {res.board}'s "
                   f"{_fmt_int(res.board_ram_bytes)} B of RAM ({res.plan} plan)")
        if plot:
            click.echo(f"plot written to {plot}")

    out.result(res.to_dict(), show)


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
            parsed = json.loads(text)
        except json.JSONDecodeError as e:
            raise McuqpError(f"--per-layer: not valid JSON ({e.msg} at character {e.pos})") from None
        if not isinstance(parsed, dict):
            raise McuqpError("--per-layer: the JSON must be an object {layer: kind or {options}}")
        return parsed
    parsed = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, kind = item.partition("=")
        if not sep or not name or not kind:
            raise McuqpError(f"--per-layer: {item!r} is not LAYER=KIND (e.g. fc=int8,stem.0=ternary)")
        parsed[name] = kind
    return parsed


@main.command(epilog=_example("mcuqp compress net.pt --data digits --prune magnitude:0.5 --quant int8 -o small.pt",
                              "mcuqp compress net.pt --data mnist5k --quant ternary --per-layer fc=int8 -o t.pt --json"))
@model_argument
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
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False), help="Compressed model (.pt).")
@output_options
def compress(model: str, dataset: str, prune: str | None, quant: str, per_layer: str | None, finetune_epochs: int,
             lr: float, seed: int, out_path: str, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Prune and/or quantize MODEL (a float .pt) with fine-tuning; write OUT.pt for compile/verify."""
    from mcuqp import api
    from mcuqp.compress.pipeline import format_summary

    out = _out(as_json, quiet, verbose)
    res = api.compress(model, dataset, prune=prune, quant=None if quant == "none" else quant,
                       per_layer=_parse_per_layer(per_layer), finetune_epochs=finetune_epochs, lr=lr, seed=seed,
                       out=out_path, progress=verbose or (not (as_json or quiet) and sys.stderr.isatty()))

    def show() -> None:
        click.echo(format_summary(res.pipeline_result))
        click.echo(f"wrote {out_path}: next `mcuqp verify {out_path} --calib {dataset}`")

    out.result(res.to_dict(), show)


@main.command(epilog=_example(
    "mcuqp search net.pt --data mnist5k --board nucleo-l4r5zi --flash 49152 --ram 16384 -o found/",
    "mcuqp search net.pt --data digits --trials 40 --workers 2 -o found/",
    "mcuqp search net.pt --data mnist5k --storage postgresql://user:pw@host/db --study s1 -o found/"))
@model_argument
@click.option("--data", "dataset", type=click.Choice(["digits", "mnist5k"]), required=True,
              help="Training data for fine-tuning; trials are scored on a validation split of it.")
@board_option
@click.option("--flash", "flash_bytes", type=click.IntRange(min=1), default=None,
              help="Flash budget in bytes (default: the board's flash).")
@click.option("--ram", "ram_bytes", type=click.IntRange(min=1), default=None,
              help="RAM budget in bytes, stack included (default: the board's RAM).")
@click.option("--instructions", type=click.IntRange(min=1), default=None,
              help="Budget of executed instructions per inference (QEMU).")
@click.option("--trials", default=20, show_default=True, type=click.IntRange(min=1),
              help="Trials in the study; rerunning adds trials up to this number.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes on this machine, sharing the study.")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna RDB storage, e.g. postgresql://user:pw@host/db (default: sqlite DIR/study.db).")
@click.option("--study", "study_name", default="mcuqp-search", show_default=True, help="Study name in the storage.")
@click.option("--seed", default=0, show_default=True)
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=0),
              help="Fine-tuning epochs per trial.")
@click.option("--formats", default="int8,int4,ternary,binary", show_default=True,
              help="Weight formats a layer may take (the first and last layers: int8 or int4 only).")
@click.option("--max-sparsity", default=0.9, show_default=True, type=click.FloatRange(0.0, 0.9),
              help="Largest fraction of a layer's weights pruned; 0 searches no unstructured pruning.")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for study.db, search.json, pareto.png, best.pt, trials/ and firmware/.")
@output_options
def search(model: str, dataset: str, board: str, flash_bytes: int | None, ram_bytes: int | None,
           instructions: int | None, trials: int, workers: int, storage: str | None, study_name: str, seed: int,
           epochs: int, formats: str, max_sparsity: float, out_dir: str, as_json: bool, quiet: bool,
           verbose: bool) -> None:
    """Find the most accurate compressed MODEL (a float .pt) that fits BOARD's budgets."""
    from mcuqp.search.run import search as run_search
    from mcuqp.search.study import SearchOptions
    from mcuqp.target.boards import load_board

    out = _out(as_json, quiet, verbose)
    b = load_board(board)
    opts = SearchOptions(model=model, dataset=dataset, board=b.name, out_dir=out_dir,
                         flash_bytes=flash_bytes or b.flash_size, ram_bytes=ram_bytes or b.ram_size,
                         instructions=instructions, trials=trials, workers=workers, storage=storage,
                         study=study_name, seed=seed, epochs=epochs,
                         formats=tuple(f.strip() for f in formats.split(",") if f.strip()),
                         max_sparsity=max_sparsity, progress=not quiet)
    res = run_search(opts)
    summary = res.summary

    def show() -> None:
        best = summary["best"]
        fw = best["firmware"]
        click.echo(f"best of {len(summary['trials'])} trials: trial {best['number']}, validation accuracy "
                   f"{best['accuracy'] * 100:.2f} %, test accuracy on {b.name} {best['test_accuracy'] * 100:.2f} %")
        click.echo(f"  flash {_fmt_int(fw['flash_bytes'])} B of {_fmt_int(opts.flash_bytes)} B, RAM "
                   f"{_fmt_int(fw['ram_bytes'])} B of {_fmt_int(opts.ram_bytes)} B, "
                   f"{_fmt_int(fw['instructions_per_inference'])} instructions per inference, bit-exact on QEMU")
        where = "study.db " if storage is None else ""
        click.echo(f"wrote {res.out_dir}/: {where}search.json pareto.png best.pt trials/ firmware/")

    out.result(summary, show)


def _print_verify(res, title: str | None = None, out: Output | None = None) -> None:
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
    if res.per_layer_checked:
        m = res.first_mismatch_layer
        if m is None:
            click.echo(f"  per-layer vs TFLite Micro every layer's output is equal on {res.compared} inputs")
        else:
            click.echo(f"  per-layer vs TFLite Micro first difference at {m.op} (tensor {m.tensor}: {m.values} values differ)")
    if res.per_layer_checked or (out is not None and out.verbose):
        click.echo("  instructions per layer:")
        for layer in res.layers:
            click.echo(f"    {layer.index:3d} {layer.kind:<18} {layer.name:<40} {_fmt_int(layer.instructions):>12}")


@main.command(epilog=_example("mcuqp verify model.tflite --board mps3-an547 --inputs 50 --json",
                              "mcuqp verify net.pt --calib digits --save-io io/"))
@model_argument
@board_option
@click.option("--inputs", "n_inputs", default=100, show_default=True, type=click.IntRange(min=1), help="How many inputs to compare.")
@click.option("--save-io", type=click.Path(file_okay=False), default=None, help="Write inputs.npy, outputs_device.npy and io.json here.")
@calib_option
@rounding_option
@click.option("--per-layer", is_flag=True,
              help="Compare every layer with TFLite Micro (.tflite models) and print instructions per layer.")
@_budget_options
@plan_options
@format_option
@click.option("--sources", type=click.Path(file_okay=False, exists=True), default=None,
              help="Check this existing generated folder (e.g. one in your firmware tree) instead of generating one.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Seconds the firmware may run on QEMU.")
@name_option
@output_options
def verify(model: str, board: str, n_inputs: int, save_io: str | None, calib: str | None, rounding: str,
           per_layer: bool, flash_bytes: int | None, ram_bytes: int | None, stack_bytes: int, plan_mode: str,
           inplace: bool | None, formats: dict | None, sources: str | None, timeout: float, name: str | None, as_json: bool, quiet: bool,
           verbose: bool) -> None:
    """Build MODEL for BOARD, run it on QEMU and compare with the integer reference.

    With --sources, an existing generated folder is checked instead of a fresh one (exit 2
    when it was generated from another model)."""
    from mcuqp import api

    out = _out(as_json, quiet, verbose)
    out.progress(f"loading {model}")
    loaded = api.load(model, calib=calib, rounding=rounding)
    out.progress(f"building for {board} and running {min(n_inputs, 0 if loaded.verify_inputs is None else len(loaded.verify_inputs))} inputs on QEMU")
    res = api.verify(loaded, board=board, n_inputs=n_inputs, per_layer=per_layer, save_io=save_io,
                     flash_bytes=flash_bytes, ram_bytes=ram_bytes, stack_bytes=stack_bytes, plan=plan_mode,
                     inplace=inplace, sources=sources, timeout=timeout, formats=formats, name=name)
    out.result(res.to_dict(), lambda: _print_verify(res, f"{Path(model).name} on {res.board}:", out))
    if not res.ok:
        sys.exit(EXIT_MISMATCH)


@main.command(epilog=_example("mcuqp report model.tflite --board mps2-an386 -o report.html",
                              "mcuqp report net.pt --calib digits --inputs 50 -o report.html --json"))
@model_argument
@board_option
@calib_option
@rounding_option
@click.option("-o", "--output", "out_path", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--inputs", "n_inputs", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many inputs to run on QEMU for the bit-exact verdict and the instruction counts.")
@click.option("--no-device", is_flag=True, help="Skip the QEMU run (no verdict, no instructions, no device accuracy).")
@plan_options
@output_options
def report(model: str, board: str, calib: str | None, rounding: str, out_path: str, n_inputs: int, no_device: bool,
           plan_mode: str, inplace: bool | None, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Write one self-contained HTML report for MODEL on BOARD: layers, arena, flash and RAM, accuracy, verdict."""
    from mcuqp import api

    out = _out(as_json, quiet, verbose)
    out.progress(f"loading {model}")
    res = api.report(model, out_path, board=board, calib=calib, rounding=rounding, n_inputs=n_inputs,
                     device=not no_device, plan=plan_mode, inplace=inplace)

    def show() -> None:
        verdict = "not run" if res.bit_exact is None else ("BIT-EXACT" if res.bit_exact else "MISMATCH")
        click.echo(f"wrote {res.output} ({_fmt_int(res.html_bytes)} B): {res.layers} layers, flash "
                   f"{_fmt_int(res.flash_bytes)} B, RAM {_fmt_int(res.ram_bytes)} B on {res.board}, verdict {verdict}")

    out.result(res.to_dict(), show)
    if res.bit_exact is False:
        sys.exit(EXIT_MISMATCH)


@main.command(epilog=_example("mcuqp bench model.tflite --board mps3-an547",
                              "mcuqp bench net.pt --calib digits --board mps2-an386 --json"))
@model_argument
@board_option
@calib_option
@rounding_option
@click.option("--inputs", "n_inputs", default=2, show_default=True, type=click.IntRange(min=1),
              help="Inputs to run (counts are averaged; the outputs are checked against the reference).")
@plan_options
@ram_option
@format_option
@name_option
@output_options
def bench(model: str, board: str, calib: str | None, rounding: str, n_inputs: int, plan_mode: str,
          inplace: bool | None, ram_bytes: int | None, formats: dict | None, name: str | None, as_json: bool, quiet: bool,
          verbose: bool) -> None:
    """Per-layer instructions and estimated cycles of MODEL on BOARD (QEMU + cycle tables)."""
    from mcuqp import api
    from mcuqp.bench import bench as run_bench
    from mcuqp.target.boards import load_board

    out = _out(as_json, quiet, verbose)
    b = load_board(board)
    out.progress(f"loading {model}")
    loaded = api.load(model, calib=calib, rounding=rounding)
    res = run_bench(loaded, board=b, plan=plan_mode, inplace=inplace, ram_bytes=ram_bytes, n_inputs=n_inputs,
                    rounding=rounding, formats=formats, name=name)
    out.result(res.to_dict(), lambda: click.echo(res.table()))
    if not res.bit_exact:
        sys.exit(EXIT_MISMATCH)


@main.command(epilog=_example("mcuqp demo", "mcuqp demo --board mps3-an547 --epochs 10 --json"))
@board_option
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@output_options
def demo(board: str, epochs: int, seed: int, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Train a small CNN on digits, quantize to int8, generate C, run it on QEMU."""
    from mcuqp import api
    from mcuqp.compress.train import FitConfig, fit
    from mcuqp.datasets import load_dataset
    from mcuqp.models import DigitsCNN

    out = _out(as_json, quiet, verbose)
    data = load_dataset("digits")
    out.text(f"[1/4] training DigitsCNN on scikit-learn digits ({len(data.x_train)} train / {len(data.x_test)} test images)")
    progress = sys.stderr.isatty() and not (as_json or quiet)
    model = fit(DigitsCNN(), data.x_train, data.y_train, FitConfig(epochs=epochs, lr=3e-3, seed=seed, progress=progress))
    out.text("[2/4] folding batch norm and quantizing to int8 (per-channel weights, min/max calibration)")
    loaded = api.load(model, calib="digits")
    out.text(f"[3/4] generating C and building for {board}")
    out.text(f"[4/4] running {len(loaded.verify_inputs)} test images on QEMU and comparing with the reference")
    res = api.verify(loaded, board=board, n_inputs=len(loaded.verify_inputs))
    out.result(res.to_dict(), lambda: _print_verify(res, "result:", out))
    if not res.ok:
        sys.exit(EXIT_MISMATCH)


if __name__ == "__main__":
    main()
