"""Generate the C library for an integer graph: model.h, model.c and the runtime files
it needs, into a folder that builds on its own.

Each op becomes constant parameter structs plus one kernel call on arena offsets
decided by the memory plan. Nothing is allocated at run time.
"""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from mcuqp.codegen.carrays import const_array
from mcuqp.codegen.kernels import kernel_source, variant_source
from mcuqp.errors import McuqpError, UnsupportedModelError
from mcuqp.ir import Graph, Op, OpKind, Tensor
from mcuqp.plan.memory import MemoryPlan
from mcuqp.quant.fixedpoint import Rounding

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
RUNTIME = ROOT / "runtime_c"
DEPTHWISE_INPLACE_SOURCE = RUNTIME / "src" / "depthwise_conv2d_s8_inplace.c"  # or its dsp/ / mve/ variant
CONV_INPLACE_SOURCE = RUNTIME / "src" / "conv2d_1x1_s8_inplace.c"  # or its dsp/ / mve/ variant


@dataclass
class Layer:
    index: int
    name: str
    kind: str
    source: str
    decls: list[str] = field(default_factory=list)
    call: str | None = None  # None: no code (e.g. an aliased reshape)
    comment: str = ""
    kernel: Path | None = None  # the kernel source when it is not the op kind's (in-place depthwise)


@dataclass
class GeneratedModel:
    model_c: str
    model_h: str
    build_files: dict[str, str]  # model.mk and CMakeLists.txt for the user's build
    kernels: list[Path]  # kernel sources (portable or a board-specific variant)
    arena_bytes: int
    weight_bytes: int  # bytes of constant tensors (weights, biases) in flash
    param_bytes: int  # bytes of requantization arrays and parameter structs


def c_ident(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return s if s and not s[0].isdigit() else "_" + s


def nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    s = (1,) * (4 - len(shape)) + tuple(int(x) for x in shape)
    if len(s) != 4:
        raise UnsupportedModelError(f"tensor of rank {len(shape)} is not supported (at most 4)")
    return s  # type: ignore[return-value]


class _Emitter:
    def __init__(self, graph: Graph, plan: MemoryPlan):
        self.graph = graph
        self.plan = plan
        self.weight_bytes = 0
        self.param_bytes = 0

    def buf(self, tensor: str) -> str:
        return f"(mcuqp_arena + {self.plan.offsets[tensor]})"

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
        layer.decls.append(const_array(name, a, comment=comment))
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

    def requant(self, layer: Layer, requant) -> str:
        m = self.const(layer, "mult", requant.multiplier, weight=False)
        s = self.const(layer, "shift", requant.shift, weight=False)
        name = f"l{layer.index}_quant"
        layer.decls.append(f"static const mcuqp_requant {name} = {{{m}, {s}, {requant.multiplier.size}}};\n")
        self.param_bytes += 12
        return f"&{name}"

    def struct(self, layer: Layer, ctype: str, fields: dict[str, int]) -> str:
        name = f"l{layer.index}_params"
        body = ", ".join(f".{k} = {int(v)}" for k, v in fields.items())
        layer.decls.append(f"static const {ctype} {name} = {{{body}}};\n")
        self.param_bytes += 4 * len(fields)
        return f"&{name}"

    # --- one function per op kind ---------------------------------------------------

    def conv(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        w = self.graph.tensors[op.inputs[1]]
        params = self.struct(layer, "mcuqp_conv_params", {
            "input_offset": a.input_offset, "output_offset": a.output_offset,
            "stride_h": a.stride[0], "stride_w": a.stride[1],
            "pad_h": a.padding.top, "pad_w": a.padding.left,
            "dilation_h": a.dilation[0], "dilation_w": a.dilation[1],
            "depth_multiplier": a.depth_multiplier, "act_min": a.act_min, "act_max": a.act_max,
        })
        quant = self.requant(layer, a.requant)
        wname = self.tensor_const(layer, "weights", op, 1)
        bname = self.tensor_const(layer, "bias", op, 2)
        if op.kind == OpKind.DEPTHWISE_CONV2D and self.plan.order[layer.index] in self.plan.inplace_depthwise:
            self.depthwise_inplace(layer, op, params, quant, wname, bname)
            return
        if op.kind == OpKind.CONV2D and self.plan.order[layer.index] in self.plan.inplace_conv:
            self.conv_inplace(layer, op, params, quant, wname, bname)
            return
        fn = "mcuqp_conv2d_s8" if op.kind == OpKind.CONV2D else "mcuqp_depthwise_conv2d_s8"
        layer.call = (
            f"{fn}({params}, {quant}, {self.dims(layer, 'in', x.shape)}, {self.buf(x.name)}, "
            f"{self.dims(layer, 'filter', w.shape)}, {wname}, {bname}, "
            f"{self.dims(layer, 'out', y.shape)}, {self.buf(y.name)})"
        )

    def depthwise_inplace(self, layer: Layer, op: Op, params: str, quant: str, wname: str, bname: str) -> None:
        """The plan writes this depthwise op's output over its input: the in-place kernel,
        with its h*w scratch where the plan put it in the arena."""
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        w = self.graph.tensors[op.inputs[1]]
        op_index = self.plan.order[layer.index]
        scratch = self.plan.scratch_offsets.get(op_index)
        if self.plan.offsets[x.name] != self.plan.offsets[y.name] or scratch is None:
            raise McuqpError(f"plan lists {op.name} as in-place depthwise but does not alias its output onto its "
                             f"input or place its scratch")
        layer.comment = f"in place over its input; {self.plan.scratch[op_index]} B of scratch at arena + {scratch}"
        layer.kernel = DEPTHWISE_INPLACE_SOURCE
        layer.call = (
            f"mcuqp_depthwise_conv2d_s8_inplace({params}, {quant}, {self.dims(layer, 'in', x.shape)}, "
            f"{self.buf(x.name)}, {self.dims(layer, 'filter', w.shape)}, {wname}, {bname}, "
            f"{self.dims(layer, 'out', y.shape)}, (mcuqp_arena + {scratch}))"
        )

    def conv_inplace(self, layer: Layer, op: Op, params: str, quant: str, wname: str, bname: str) -> None:
        """The plan writes this 1x1 conv's output over its input (the prefix of its bytes):
        the in-place kernel, with its in_c scratch where the plan put it in the arena."""
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        w = self.graph.tensors[op.inputs[1]]
        op_index = self.plan.order[layer.index]
        scratch = self.plan.scratch_offsets.get(op_index)
        if self.plan.offsets[x.name] != self.plan.offsets[y.name] or scratch is None:
            raise McuqpError(f"plan lists {op.name} as in-place conv but does not alias its output onto its "
                             f"input or place its scratch")
        layer.comment = f"in place over its input; {self.plan.scratch[op_index]} B of scratch at arena + {scratch}"
        layer.kernel = CONV_INPLACE_SOURCE
        layer.call = (
            f"mcuqp_conv2d_1x1_s8_inplace({params}, {quant}, {self.dims(layer, 'in', x.shape)}, "
            f"{self.buf(x.name)}, {self.dims(layer, 'filter', w.shape)}, {wname}, {bname}, "
            f"{self.dims(layer, 'out', y.shape)}, (mcuqp_arena + {scratch}))"
        )

    def fully_connected(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        w = self.graph.tensors[op.inputs[1]]
        out_ch, in_ch = w.shape
        params = self.struct(layer, "mcuqp_fc_params", {
            "input_offset": a.input_offset, "filter_offset": a.filter_offset,
            "output_offset": a.output_offset, "act_min": a.act_min, "act_max": a.act_max,
        })
        quant = self.requant(layer, a.requant)
        wname = self.tensor_const(layer, "weights", op, 1)
        bname = self.tensor_const(layer, "bias", op, 2)
        layer.call = (
            f"mcuqp_fully_connected_s8({params}, {quant}, {x.size // in_ch}, {in_ch}, {self.buf(x.name)}, "
            f"{out_ch}, {wname}, {bname}, {self.buf(y.name)})"
        )

    def pool(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        params = self.struct(layer, "mcuqp_pool_params", {
            "stride_h": a.stride[0], "stride_w": a.stride[1],
            "pad_h": a.padding.top, "pad_w": a.padding.left,
            "filter_h": a.filter[0], "filter_w": a.filter[1],
            "act_min": a.act_min, "act_max": a.act_max,
        })
        fn = "mcuqp_max_pool2d_s8" if op.kind == OpKind.MAX_POOL2D else "mcuqp_avg_pool2d_s8"
        layer.call = (
            f"{fn}({params}, {self.dims(layer, 'in', x.shape)}, {self.buf(x.name)}, "
            f"{self.dims(layer, 'out', y.shape)}, {self.buf(y.name)})"
        )

    def add(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x1, x2 = (self.graph.tensors[n] for n in op.inputs[:2])
        y = self.graph.tensors[op.outputs[0]]
        if x1.shape != x2.shape:
            raise UnsupportedModelError(f"{op.name}: ADD with broadcasting ({x1.shape} + {x2.shape}) is not supported")
        fields = {k: getattr(a, k) for k in (
            "left_shift", "input1_offset", "input1_multiplier", "input1_shift", "input2_offset",
            "input2_multiplier", "input2_shift", "output_offset", "output_multiplier", "output_shift",
            "act_min", "act_max")}
        params = self.struct(layer, "mcuqp_add_params", fields)
        a1, a2 = self.operand(layer, op, 0), self.operand(layer, op, 1)
        layer.call = f"mcuqp_add_s8({params}, {y.size}, {a1}, {a2}, {self.buf(y.name)})"

    def softmax(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        params = self.struct(layer, "mcuqp_softmax_params", {
            "input_multiplier": a.input_multiplier, "input_left_shift": a.input_left_shift,
            "diff_min": a.diff_min,
        })
        row = x.shape[-1]
        layer.call = f"mcuqp_softmax_s8({params}, {x.size // row}, {row}, {self.buf(x.name)}, {self.buf(y.name)})"

    def reshape(self, layer: Layer, op: Op) -> None:
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        if self.plan.offsets[x.name] == self.plan.offsets[y.name]:
            layer.comment = "aliased: the output shares the input's bytes"
            return
        layer.call = f"mcuqp_reshape_s8({y.size}, {self.buf(x.name)}, {self.buf(y.name)})"

    def mul(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x1, x2 = (self.graph.tensors[n] for n in op.inputs[:2])
        y = self.graph.tensors[op.outputs[0]]
        params = self.struct(layer, "mcuqp_mul_params", {k: getattr(a, k) for k in (
            "input1_offset", "input2_offset", "output_offset", "output_multiplier", "output_shift",
            "act_min", "act_max")})
        layer.call = (
            f"mcuqp_mul_s8({params}, {self.dims(layer, 'in1', x1.shape)}, {self.operand(layer, op, 0)}, "
            f"{self.dims(layer, 'in2', x2.shape)}, {self.operand(layer, op, 1)}, "
            f"{self.dims(layer, 'out', y.shape)}, {self.buf(y.name)})"
        )

    def mean(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        params = self.struct(layer, "mcuqp_mean_params", {k: getattr(a, k) for k in (
            "count", "input_offset", "output_offset", "multiplier", "shift")})
        layer.call = f"mcuqp_mean_s8({params}, {self.dims(layer, 'in', x.shape)}, {self.buf(x.name)}, {self.buf(y.name)})"

    def pad(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        pads = [(0, 0)] * (4 - len(a.paddings)) + [tuple(p) for p in a.paddings]
        name = f"l{layer.index}_params"
        before = ", ".join(str(int(p[0])) for p in pads)
        after = ", ".join(str(int(p[1])) for p in pads)
        layer.decls.append(
            f"static const mcuqp_pad_params {name} = {{{{{before}}}, {{{after}}}, {int(a.pad_value)}}};\n"
        )
        self.param_bytes += 36
        layer.call = (
            f"mcuqp_pad_s8(&{name}, {self.dims(layer, 'in', x.shape)}, {self.buf(x.name)}, "
            f"{self.dims(layer, 'out', y.shape)}, {self.buf(y.name)})"
        )

    def concatenation(self, layer: Layer, op: Op) -> None:
        y = self.graph.tensors[op.outputs[0]]
        axis = op.attrs.axis % len(y.shape)
        ins = [self.graph.tensors[n] for n in op.inputs]
        ptrs = f"l{layer.index}_inputs"
        layer.decls.append(
            f"static const int8_t *const {ptrs}[{len(ins)}] = {{"
            + ", ".join(self.operand(layer, op, i) for i in range(len(ins))) + "};\n"
        )
        sizes = self.const(layer, "axis_sizes", np.array([t.shape[axis] for t in ins], dtype=np.int32), weight=False)
        outer = int(np.prod(y.shape[:axis], dtype=np.int64))
        inner = int(np.prod(y.shape[axis + 1:], dtype=np.int64))
        layer.call = f"mcuqp_concatenation_s8({len(ins)}, {ptrs}, {sizes}, {outer}, {inner}, {self.buf(y.name)})"

    def logistic(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        params = self.struct(layer, "mcuqp_logistic_params", {k: getattr(a, k) for k in (
            "input_zero_point", "input_multiplier", "input_left_shift", "input_range_radius")})
        layer.call = f"mcuqp_logistic_s8({params}, {y.size}, {self.buf(x.name)}, {self.buf(y.name)})"

    def quantize(self, layer: Layer, op: Op) -> None:
        a = op.attrs
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        params = self.struct(layer, "mcuqp_quantize_params", {k: getattr(a, k) for k in (
            "input_offset", "output_offset", "multiplier", "shift")})
        layer.call = f"mcuqp_quantize_s8({params}, {y.size}, {self.buf(x.name)}, {self.buf(y.name)})"

    def sign(self, layer: Layer, op: Op) -> None:
        x, y = self.graph.tensors[op.inputs[0]], self.graph.tensors[op.outputs[0]]
        params = self.struct(layer, "mcuqp_sign_params", {"input_zero_point": op.attrs.input_zero_point})
        layer.call = f"mcuqp_sign_s8({params}, {y.size}, {self.buf(x.name)}, {self.buf(y.name)})"


_EMITTERS: dict[OpKind, Callable[[_Emitter, Layer, Op], None]] = {
    OpKind.CONV2D: _Emitter.conv,
    OpKind.DEPTHWISE_CONV2D: _Emitter.conv,
    OpKind.FULLY_CONNECTED: _Emitter.fully_connected,
    OpKind.MAX_POOL2D: _Emitter.pool,
    OpKind.AVG_POOL2D: _Emitter.pool,
    OpKind.ADD: _Emitter.add,
    OpKind.SOFTMAX: _Emitter.softmax,
    OpKind.RESHAPE: _Emitter.reshape,
    OpKind.MUL: _Emitter.mul,
    OpKind.MEAN: _Emitter.mean,
    OpKind.PAD: _Emitter.pad,
    OpKind.CONCATENATION: _Emitter.concatenation,
    OpKind.LOGISTIC: _Emitter.logistic,
    OpKind.QUANTIZE: _Emitter.quantize,
    OpKind.SIGN: _Emitter.sign,
}


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
) -> GeneratedModel:
    """Render model.c / model.h for `graph` with tensors placed by `plan`."""
    graph.validate()
    emitter = _Emitter(graph, plan)
    layers: list[Layer] = []
    kernels: list[Path] = []
    for step, op_index in enumerate(plan.order):
        op = graph.ops[op_index]
        fn = _EMITTERS.get(op.kind)
        if fn is None:
            raise UnsupportedModelError(f"no C kernel for op {op.kind.value} ({op.name})")
        layer = Layer(step, op.name, op.kind.value, op.source)
        fn(emitter, layer, op)
        layers.append(layer)
        source = variant_source(layer.kernel.name, features) if layer.kernel else kernel_source(op.kind, features)
        if layer.call is not None and source not in kernels:
            kernels.append(source)
    inp, out = graph.input, graph.output
    in_s, in_zp = _qparams(inp)
    out_s, out_zp = _qparams(out)
    ctx = dict(
        graph=graph,
        name=graph.name,
        board=board,
        layers=layers,
        arena_bytes=max(plan.arena_bytes, 1),
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
    )
    env = _env()
    sources = ["model.c", *(k.name for k in kernels)]
    build_ctx = dict(name=graph.name, board=board, sources=sources, single_rounding=ctx["single_rounding"],
                     target=c_ident(f"mcuqp_{graph.name}"))
    return GeneratedModel(
        model_c=env.get_template("model.c.j2").render(**ctx),
        model_h=env.get_template("model.h.j2").render(**ctx),
        build_files={
            "model.mk": env.get_template("model.mk.j2").render(**build_ctx),
            "CMakeLists.txt": env.get_template("CMakeLists.txt.j2").render(**build_ctx),
        },
        kernels=kernels,
        arena_bytes=plan.arena_bytes,
        weight_bytes=emitter.weight_bytes,
        param_bytes=emitter.param_bytes,
    )


def write_library(gen: GeneratedModel, out_dir: Path) -> list[Path]:
    """Write model.c/h plus the runtime headers and the kernels used into `out_dir`
    (a self-contained folder: `cc -I. *.c` builds it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.c").write_text(gen.model_c)
    (out_dir / "model.h").write_text(gen.model_h)
    files = [out_dir / "model.c", out_dir / "model.h"]
    for name, text in gen.build_files.items():
        (out_dir / name).write_text(text)
        files.append(out_dir / name)
    for src in sorted((RUNTIME / "include").glob("*.h")):
        files.append(Path(shutil.copy2(src, out_dir / src.name)))
    for src in gen.kernels:
        files.append(Path(shutil.copy2(src, out_dir / src.name)))
    return files
