"""Generate the C library for an integer graph: NAME.h, NAME.c and the runtime files
it needs, into a folder that builds on its own (NAME: `--name`, a C identifier that
prefixes every symbol and macro of the model, so that several models link into one image).

Each op becomes constant parameter structs plus one kernel call on arena offsets
decided by the memory plan. Nothing is allocated at run time. A layer is (op, weight
format, kernel variant): the op's registry entry (mcuqp.ops) lists its C variants and the
CPU features each needs, and emits the call; this module picks the variant for the board
and the plan, and provides the arena, constant and struct helpers every emitter uses.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from mcuqp.codegen.accumulator import check_accumulators
from mcuqp.codegen.carrays import const_array
from mcuqp.codegen.packed import pack_layer, packed_filter_decls
from mcuqp.codegen.provenance import Provenance
from mcuqp.codegen.rqflags import requant_flags
from mcuqp.errors import McuqpError, UnsupportedModelError
from mcuqp.ir import Graph, Op, Requant, Tensor
from mcuqp.ops import registry
from mcuqp.ops.registry import KernelVariant
from mcuqp.plan.formats import op_family
from mcuqp.plan.memory import MemoryPlan, plan_in_place
from mcuqp.quant.fixedpoint import Rounding
from mcuqp.resources import RUNTIME_DIR as RUNTIME
from mcuqp.resources import TEMPLATES_DIR as TEMPLATES



@dataclass
class Layer:
    index: int
    name: str
    kind: str
    source: str
    decls: list[str] = field(default_factory=list)
    call: str | None = None  # None: no code (e.g. an aliased reshape)
    comment: str = ""
    kernel: KernelVariant | None = None  # the C implementation chosen for this layer
    weight_format: str = ""  # layers with weights: "int8" or a packed format (mcuqp.plan.formats)
    weight_bytes: int = 0  # filter values in flash (packed words, nonzeros or int8 weights)
    index_bytes: int = 0  # sparse counts and column indices


@dataclass
class GeneratedModel:
    model_c: str
    model_h: str
    build_files: dict[str, str]  # model.mk and CMakeLists.txt for the user's build
    kernels: list[Path]  # kernel sources (portable or a board-specific variant)
    arena_bytes: int
    weight_bytes: int  # bytes of constant tensors (weights, biases) in flash
    param_bytes: int  # bytes of requantization arrays and parameter structs
    layers: list[Layer] = field(default_factory=list)  # in execution order, with each one's kernel
    name: str = "model"  # the C prefix: NAME.c / NAME.h, NAME_invoke, NAME_INPUT_SIZE...

    @property
    def source_name(self) -> str:
        return f"{self.name}.c"

    @property
    def header_name(self) -> str:
        return f"{self.name}.h"


def c_ident(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


DEFAULT_NAME = "model"  # an in-memory model (no file name to derive one from)
_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "_Bool _Complex _Imaginary bool true false asm".split())
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")


def check_name(name: str) -> str:
    """`name` when it can prefix the model's C symbols; McuqpError (one line) otherwise."""
    if not _NAME.match(name) or name in _C_KEYWORDS or name.lower().startswith("mcuqp"):
        raise McuqpError(f"--name {name!r} is not usable as a C prefix: give a C identifier of at most 40 letters, "
                         "digits and underscores that starts with a letter, is not a C keyword and does not start "
                         "with 'mcuqp' (e.g. --name kws)")
    return name


def default_name(source: str) -> str:
    """The model file's name as a C identifier (`vww-96.tflite` -> `vww_96`), or `model`."""
    path = Path(str(source))
    if path.suffix.lower() not in (".tflite", ".pt", ".pth"):
        return DEFAULT_NAME
    s = re.sub(r"_+", "_", re.sub(r"[^0-9A-Za-z_]", "_", path.stem)).strip("_")[:36]
    if not s or not s[0].isalpha() or s.lower().startswith("mcuqp"):
        s = f"m_{s}".rstrip("_")
    return f"{s}_model" if s in _C_KEYWORDS else s


def nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A rank 1-5 shape as NHWC: missing leading dimensions are 1; the two leading
    dimensions of a rank-5 shape fold into n (an outer loop for every kernel taking dims)."""
    if not 1 <= len(shape) <= 5:
        raise UnsupportedModelError(f"tensor of rank {len(shape)} is not supported (1 to 5)")
    s = tuple(int(x) for x in shape)
    if len(s) == 5:
        s = (s[0] * s[1], *s[2:])
    return (1,) * (4 - len(s)) + s  # type: ignore[return-value]


class _Emitter:
    def __init__(self, graph: Graph, plan: MemoryPlan, name: str = DEFAULT_NAME):
        self.graph = graph
        self.plan = plan
        self.arena = f"{name}_arena"  # the pointer every kernel call indexes (see templates/model.c.j2)
        self.weights_section = f"{name.upper()}_WEIGHTS_SECTION"
        self.weight_bytes = 0
        self.param_bytes = 0

    def buf(self, tensor: str) -> str:
        return f"({self.arena} + {self.plan.offsets[tensor]})"

    def operand(self, layer: Layer, op: Op, i: int) -> str:
        """An input that is either an activation in the arena or a constant array."""
        t = self.graph.tensors[op.inputs[i]]
        if t.is_const:
            return self.const(layer, f"in{i}", t.data, comment=f"{t.name} {t.dtype.value} {list(t.shape)}")
        return self.buf(t.name)

    def dims(self, layer: Layer, suffix: str, shape: tuple[int, ...]) -> str:
        n, h, w, c = nhwc(shape)
        name = f"l{layer.index}_{suffix}"
        layer.decls.append(f"static const mcuqp_dims {name} = {{{n}, {h}, {w}, {c}}};\n")
        self.param_bytes += 16
        return f"&{name}"

    def const(self, layer: Layer, suffix: str, a: np.ndarray, comment: str = "", weight: bool = True) -> str:
        name = f"l{layer.index}_{suffix}"
        layer.decls.append(const_array(name, a, comment=comment, attrs=self.weights_section if weight else ""))
        if weight:
            self.weight_bytes += a.nbytes
        else:
            self.param_bytes += a.nbytes
        return name

    def tensor_const(self, layer: Layer, suffix: str, op: Op, i: int) -> str:
        if len(op.inputs) <= i or not op.inputs[i]:
            return "NULL"
        t = self.graph.tensors[op.inputs[i]]
        return self.const(layer, suffix, t.data, comment=f"{t.name} {t.dtype.value} {list(t.shape)}")

    def requant(self, layer: Layer, requant: Requant) -> str:
        m = self.const(layer, "mult", requant.multiplier, weight=False)
        s = self.const(layer, "shift", requant.shift, weight=False)
        name = f"l{layer.index}_quant"
        flags = requant_flags(requant.multiplier, requant.shift)
        layer.decls.append(f"static const mcuqp_requant {name} = {{{m}, {s}, {requant.multiplier.size}, {flags}}};\n")
        self.param_bytes += 16
        return f"&{name}"

    def struct(self, layer: Layer, ctype: str, fields: dict[str, int]) -> str:
        name = f"l{layer.index}_params"
        body = ", ".join(f".{k} = {int(v)}" for k, v in fields.items())
        layer.decls.append(f"static const {ctype} {name} = {{{body}}};\n")
        self.param_bytes += 4 * len(fields)
        return f"&{name}"

    def decl(self, layer: Layer, text: str, param_bytes: int) -> None:
        """A declaration the op builds itself (counted as `param_bytes` of parameters)."""
        layer.decls.append(text)
        self.param_bytes += param_bytes

    def weights(self, layer: Layer, op: Op, kernel: KernelVariant) -> str:
        """The filter (input 1) in the kernel's weight format: the int8 array, or the packed
        arrays and their struct (mcuqp.codegen.packed), whose address is passed."""
        t = self.graph.tensors[op.inputs[1]]
        layer.weight_format = kernel.weight_format
        if kernel.weight_format == registry.DENSE_INT8:
            name = self.tensor_const(layer, "weights", op, 1)
            layer.weight_bytes = t.nbytes
            return name
        fam = op_family(op)
        packed = pack_layer(fam, kernel.weight_format, t.data)
        decls, expr = packed_filter_decls(f"l{layer.index}_weights", fam, kernel.weight_format, packed,
                                          self.weights_section)
        layer.decls.append(f"/* {t.name} int8 {list(t.shape)} as {kernel.weight_format} */\n" + decls)
        layer.weight_bytes, layer.index_bytes = packed.weight_bytes, packed.index_bytes
        self.weight_bytes += packed.weight_bytes + packed.index_bytes
        return expr

    def packed_scratch(self, layer: Layer, op: Op) -> str:
        """The planned scratch of a packed kernel (its *_get_buffer_size() bytes)."""
        op_index = self.plan.order[layer.index]
        offset = self.plan.scratch_offsets.get(op_index)
        if offset is None:
            raise McuqpError(f"plan has no scratch for the packed layer {op.name}: plan it with "
                             f"mcuqp.plan.formats.scratch_requests")
        layer.comment = f"{self.plan.scratch[op_index]} B of scratch at arena + {offset}"
        return f"({self.arena} + {offset})"

    def aliased(self, op: Op) -> bool:
        """The plan gave the op's output the bytes of its input."""
        return self.plan.offsets[op.inputs[0]] == self.plan.offsets[op.outputs[0]]

    def scratch(self, layer: Layer, op: Op) -> str:
        """The planned scratch of an op the plan runs over its own input."""
        op_index = self.plan.order[layer.index]
        offset = self.plan.scratch_offsets.get(op_index)
        if not self.aliased(op) or offset is None:
            raise McuqpError(f"plan lists {op.name} as in-place {op.kind} but does not alias its output onto its "
                             f"input or place its scratch")
        layer.comment = f"in place over its input; {self.plan.scratch[op_index]} B of scratch at arena + {offset}"
        return f"({self.arena} + {offset})"


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _qparams(t: Tensor) -> tuple[float, int]:
    return (t.quant.s, t.quant.zp) if t.quant is not None else (1.0, 0)


def generate(
    graph: Graph,
    plan: MemoryPlan,
    *,
    rounding: Rounding = "double",
    board: str = "",
    features: frozenset[str] = frozenset(),
    provenance: Provenance | None = None,
    stack_bytes: int | None = None,
    name: str = DEFAULT_NAME,
) -> GeneratedModel:
    """Render NAME.c / NAME.h for `graph` with tensors placed by `plan`; `provenance`
    (version, model sha256, options) goes into NAME.h."""
    check_name(name)
    graph.validate()
    check_accumulators(graph)
    emitter = _Emitter(graph, plan, name)
    in_place = plan_in_place(plan)
    layers: list[Layer] = []
    kernels: list[Path] = []
    for step, op_index in enumerate(plan.order):
        op = graph.ops[op_index]
        d = registry.get(op.kind)
        layer = Layer(step, op.name, op.kind.value, op.source)
        # an op whose weights are packed says so in its attrs (dense int8 otherwise)
        weight_format = getattr(op.attrs, "weight_format", registry.DENSE_INT8)
        layer.kernel = registry.select_kernel(d, features, inplace=op_index in in_place, weight_format=weight_format)
        d.emit(emitter, layer, op, layer.kernel)
        layers.append(layer)
        if layer.call is not None and layer.kernel.path not in kernels:
            kernels.append(layer.kernel.path)
        if layer.call is not None and layer.kernel.calls_dense:
            dense = registry.select_kernel(d, features).path
            if dense not in kernels:
                kernels.append(dense)
    inp, out = graph.input, graph.output
    in_s, in_zp = _qparams(inp)
    out_s, out_zp = _qparams(out)
    ctx = dict(
        graph=graph,
        name=name,
        NAME=name.upper(),
        arena=emitter.arena,
        board=board,
        layers=layers,
        arena_bytes=max(plan.arena_bytes, 1),
        stack_bytes=stack_bytes,
        input=inp,
        output=out,
        input_offset=plan.offsets[inp.name],
        output_offset=plan.offsets[out.name],
        input_scale=repr(float(in_s)),
        input_zero_point=in_zp,
        output_scale=repr(float(out_s)),
        output_zero_point=out_zp,
        rounding=rounding,
        single_rounding=int(rounding == "single"),
        provenance=provenance,
    )
    env = _env()
    sources = [f"{name}.c", *(k.name for k in kernels)]
    build_ctx = dict(name=name, NAME=name.upper(), board=board, sources=sources,
                     single_rounding=ctx["single_rounding"], target=library_target(name))
    return GeneratedModel(
        model_c=env.get_template("model.c.j2").render(**ctx),
        model_h=env.get_template("model.h.j2").render(**ctx),
        build_files={
            f"{name}.mk": env.get_template("model.mk.j2").render(**build_ctx),
            "CMakeLists.txt": env.get_template("CMakeLists.txt.j2").render(**build_ctx),
        },
        kernels=kernels,
        arena_bytes=plan.arena_bytes,
        weight_bytes=emitter.weight_bytes,
        param_bytes=emitter.param_bytes,
        layers=layers,
        name=name,
    )


def library_target(name: str) -> str:
    """The CMake static-library target of model `name`."""
    return f"mcuqp_{name}"


def write_library(gen: GeneratedModel, out_dir: Path) -> list[Path]:
    """Write NAME.c/h plus the runtime headers and the kernels used into `out_dir`
    (a self-contained folder: `cc -I. *.c` builds it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / gen.source_name).write_text(gen.model_c)
    (out_dir / gen.header_name).write_text(gen.model_h)
    files = [out_dir / gen.source_name, out_dir / gen.header_name]
    for name, text in gen.build_files.items():
        (out_dir / name).write_text(text)
        files.append(out_dir / name)
    for src in sorted((RUNTIME / "include").glob("*.h")):
        files.append(Path(shutil.copy2(src, out_dir / src.name)))
    for src in gen.kernels:
        files.append(Path(shutil.copy2(src, out_dir / src.name)))
    return files
