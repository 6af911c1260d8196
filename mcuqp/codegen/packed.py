"""C for layers with packed weights: the const arrays of a packed filter, the kernel call,
the scratch each kernel needs, and the numpy twin that checks it.

A `PackedLayer` is (op, weight format) with its effective int8 weights; `pack_layer`
builds the format's arrays (mcuqp/packing.py) and `emit_layer` the C. Formats per op are
in FORMATS; "dense" is the plain int8 kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mcuqp import packing
from mcuqp.ops.conv2d import ConvAttrs
from mcuqp.ops.fully_connected import FullyConnectedAttrs
from mcuqp.plan.formats import kernel_scratch_bytes
from mcuqp.reference import packed as twins
from mcuqp.ops.conv2d import conv2d_s8
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8
from mcuqp.ops.fully_connected import fully_connected_s8

OPS = ("fc", "conv2d", "depthwise")
FORMATS: dict[str, tuple[str, ...]] = {
    "fc": ("dense", "sparse", "int4", "ternary", "binary", "xnor"),
    "conv2d": ("dense", "sparse", "int4", "ternary", "binary", "xnor"),
    "depthwise": ("dense", "sparse", "int4", "ternary", "binary"),
}
_C_OP = {"fc": "fully_connected", "conv2d": "conv2d", "depthwise": "depthwise_conv2d"}
_LOWBIT = ("int4", "ternary", "binary")


@dataclass
class PackedLayer:
    op: str  # "fc" | "conv2d" | "depthwise"
    fmt: str  # one of FORMATS[op]
    x_shape: tuple[int, ...]  # fc (batches, in); conv NHWC
    w: np.ndarray  # effective int8 weights: fc (out, in), conv OHWI, depthwise (1, kh, kw, C)
    bias: np.ndarray | None
    attrs: ConvAttrs | FullyConnectedAttrs
    packed: object = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS[self.op]:
            raise ValueError(f"{self.op} has no {self.fmt} format (one of {FORMATS[self.op]})")
        self.packed = pack_layer(self.op, self.fmt, self.w)

    @property
    def kernel(self) -> str:
        fmt = "" if self.fmt == "dense" else "_" + ("lowbit" if self.fmt in _LOWBIT else self.fmt)
        return f"mcuqp_{_C_OP[self.op]}{fmt}_s8"

    @property
    def weight_bytes(self) -> int:
        return int(self.w.size) if self.packed is None else self.packed.weight_bytes

    @property
    def index_bytes(self) -> int:
        return 0 if self.packed is None else self.packed.index_bytes

    def scratch_bytes(self) -> int:
        """What the kernel's *_get_buffer_size() returns (0 for dense)."""
        return kernel_scratch_bytes(self.op, "int8" if self.fmt == "dense" else self.fmt, tuple(self.w.shape))

    def reference(self, x: np.ndarray, rounding: str = "double") -> np.ndarray:
        """The numpy twin of the packed kernel (the dense reference for "dense")."""
        return _TWINS[(self.op, self.fmt)](self, x, rounding)

    def dense_reference(self, x: np.ndarray, rounding: str = "double") -> np.ndarray:
        return _TWINS[(self.op, "dense")](self, x, rounding)

    def macs(self, out_size: int) -> int:
        if self.op == "fc":
            return out_size * self.w.shape[1]
        per = self.w.shape[1] * self.w.shape[2]
        return out_size * per * (1 if self.op == "depthwise" else self.w.shape[3])


def pack_layer(op: str, fmt: str, w: np.ndarray):
    if fmt == "dense":
        return None
    if fmt == "sparse":
        return packing.pack_sparse_depthwise(w) if op == "depthwise" else packing.pack_sparse_rows(w)
    return packing.pack_lowbit(w, "binary" if fmt == "xnor" else fmt, depthwise=op == "depthwise")


def _kh_kw(ly: PackedLayer) -> tuple[int, int]:
    return int(ly.w.shape[1]), int(ly.w.shape[2])


_TWINS: dict[tuple[str, str], Callable] = {
    ("fc", "dense"): lambda ly, x, r: fully_connected_s8(x, ly.w, ly.bias, ly.attrs, r),
    ("conv2d", "dense"): lambda ly, x, r: conv2d_s8(x, ly.w, ly.bias, ly.attrs, r),
    ("depthwise", "dense"): lambda ly, x, r: depthwise_conv2d_s8(x, ly.w, ly.bias, ly.attrs, r),
    ("fc", "sparse"): lambda ly, x, r: twins.fully_connected_sparse_s8(x, ly.packed, ly.bias, ly.attrs, r),
    ("conv2d", "sparse"): lambda ly, x, r: twins.conv2d_sparse_s8(x, ly.packed, *_kh_kw(ly), ly.bias, ly.attrs, r),
    ("depthwise", "sparse"): lambda ly, x, r: twins.depthwise_conv2d_sparse_s8(x, ly.packed, *_kh_kw(ly), ly.bias,
                                                                              ly.attrs, r),
    ("fc", "xnor"): lambda ly, x, r: twins.fully_connected_xnor_s8(x, ly.packed, ly.bias, ly.attrs, r),
    ("conv2d", "xnor"): lambda ly, x, r: twins.conv2d_xnor_s8(x, ly.packed, *_kh_kw(ly), ly.bias, ly.attrs, r),
}
for _f in _LOWBIT:
    _TWINS[("fc", _f)] = lambda ly, x, r: twins.fully_connected_lowbit_s8(x, ly.packed, ly.bias, ly.attrs, r)
    _TWINS[("conv2d", _f)] = lambda ly, x, r: twins.conv2d_lowbit_s8(x, ly.packed, *_kh_kw(ly), ly.bias, ly.attrs, r)
    _TWINS[("depthwise", _f)] = lambda ly, x, r: twins.depthwise_conv2d_lowbit_s8(x, ly.packed, *_kh_kw(ly),
                                                                                 ly.bias, ly.attrs, r)


def c_array(ctype: str, name: str, values: np.ndarray, attrs: str = "") -> str:
    """`static const T name[] attrs = {...};` (attrs: e.g. the model's weights-section macro)."""
    v = np.ravel(values)
    attrs = f" {attrs}" if attrs else ""
    if ctype == "uint32_t":  # no -Wconversion warning on words >= 2^31
        body = ", ".join(f"{int(e)}u" for e in v) if v.size else "0"
        return f"static const {ctype} {name}[]{attrs} = {{{body}}};\n"
    body = ", ".join(str(int(e)) for e in v) if v.size else "0"  # C has no empty arrays
    return f"static const {ctype} {name}[]{attrs} = {{{body}}};\n"


def weight_symbols(name: str, ly: PackedLayer) -> dict[str, str]:
    """Symbol -> "weight" | "index": the arrays `emit_layer` declares for the filter."""
    if ly.fmt == "dense":
        return {name: "weight"}
    if ly.fmt == "sparse":
        return {f"{name}_values": "weight", f"{name}_index": "index", f"{name}_counts": "index"}
    return {f"{name}_words": "weight"}


def filter_decls(name: str, ly: PackedLayer) -> tuple[str, str]:
    """The const arrays of the filter and the C expression passed as the kernel's filter."""
    if ly.packed is None:
        return c_array("int8_t", name, ly.w), name
    return packed_filter_decls(name, ly.op, ly.fmt, ly.packed)


def packed_filter_decls(name: str, op: str, fmt: str, p, attrs: str = "") -> tuple[str, str]:
    """The const arrays and struct of a packed filter `p` (pack_layer(op, fmt, w)) and the
    C expression passed as the kernel's filter; `attrs` goes on every array (a section macro)."""
    if fmt == "sparse":
        ctype = "uint8_t" if op == "depthwise" else "uint16_t"
        struct = "mcuqp_sparse_depthwise" if op == "depthwise" else "mcuqp_sparse_rows"
        decl = (c_array(ctype, f"{name}_counts", p.counts, attrs) + c_array("uint8_t", f"{name}_index", p.index, attrs) +
                c_array("int8_t", f"{name}_values", p.values, attrs) +
                f"static const {struct} {name} = {{{name}_counts, {name}_index, {name}_values}};\n")
        return decl, f"&{name}"
    decl = (c_array("uint32_t", f"{name}_words", p.words, attrs) +
            f"static const mcuqp_lowbit_weights {name} = {{{name}_words, {p.bits}}};\n")
    return decl, f"&{name}"


def emit_layer(i: int, ly: PackedLayer, out_shape: tuple[int, ...], src: str, dst: str,
               scratch: str) -> tuple[str, str]:
    """(declarations, call expression) of layer i reading `src`, writing `dst`."""
    a = ly.attrs
    decls, wexpr = filter_decls(f"w{i}", ly)
    decls += c_array("int32_t", f"b{i}", ly.bias) if ly.bias is not None else ""
    bias = f"b{i}" if ly.bias is not None else "NULL"
    decls += c_array("int32_t", f"m{i}", a.requant.multiplier) + c_array("int32_t", f"s{i}", a.requant.shift)
    decls += f"static const mcuqp_requant q{i} = {{m{i}, s{i}, {a.requant.multiplier.size}, 0}};\n"
    buf = "" if ly.fmt == "dense" else f", {scratch}"
    if ly.op == "fc":
        decls += (f"static const mcuqp_fc_params p{i} = {{{a.input_offset}, {a.filter_offset}, {a.output_offset}, "
                  f"{a.act_min}, {a.act_max}}};\n")
        call = (f"{ly.kernel}(&p{i}, &q{i}, {ly.x_shape[0]}, {ly.x_shape[1]}, {src}, {ly.w.shape[0]}, {wexpr}, "
                f"{bias}, {dst}{buf})")
        return decls, call
    fields = [a.input_offset, a.output_offset, *a.stride, a.padding.top, a.padding.left, *a.dilation,
              a.depth_multiplier, a.act_min, a.act_max]
    decls += f"static const mcuqp_conv_params p{i} = {{{', '.join(map(str, fields))}}};\n"
    for tag, shape in (("i", ly.x_shape), ("f", ly.w.shape), ("o", out_shape)):
        decls += f"static const mcuqp_dims {tag}{i} = {{{', '.join(map(str, shape))}}};\n"
    call = f"{ly.kernel}(&p{i}, &q{i}, &i{i}, {src}, &f{i}, {wexpr}, {bias}, &o{i}, {dst}{buf})"
    return decls, call


def kernel_sources(layers: list[PackedLayer], runtime_src, dsp: bool) -> list:
    """The runtime .c files the layers call (DSP variants where they exist and `dsp`)."""
    names = set()
    for ly in layers:
        names.add(ly.kernel[len("mcuqp_"):] + ".c")
        if ly.op == "depthwise" and ly.fmt in _LOWBIT:
            names.add("depthwise_conv2d_s8.c")  # the low-bit depthwise decodes and calls it
    out = []
    for n in sorted(names):
        variant = runtime_src / "dsp" / n
        out.append(variant if dsp and variant.exists() else runtime_src / n)
    return out


def model_source(layers: list[PackedLayer], out_shapes: list[tuple[int, ...]],
                 shared_input: bool = False) -> tuple[str, str]:
    """model.c / model.h of a test or benchmark model that runs every layer, each on its own
    slice of the input (or all on the same input when `shared_input`), each writing its own
    slice of the output; one static scratch buffer serves all. Layer i's filter arrays are
    named w{i}* (see weight_symbols)."""
    decls, calls = [], []
    in_off = out_off = 0
    scratch = max([ly.scratch_bytes() for ly in layers] + [4])
    for i, (ly, shape) in enumerate(zip(layers, out_shapes)):
        d, call = emit_layer(i, ly, shape, f"input + {in_off}", f"output + {out_off}", "scratch")
        decls.append(d)
        calls.append(f"    if ({call} != MCUQP_OK) {{\n        return {i + 1};\n    }}\n    MCUQP_LAYER_HOOK({i});\n")
        if not shared_input:
            in_off += int(np.prod(ly.x_shape))
        out_off += int(np.prod(shape))
    in_size = int(np.prod(layers[0].x_shape)) if shared_input else in_off
    from mcuqp.codegen import harness

    source = ('#include <stddef.h>\n#include "model.h"\n#include "mcuqp_nn.h"\n#include "mcuqp_profile.h"\n\n'
              f"static int32_t scratch[{-(-scratch // 4)}];\n" + "".join(decls) +
              f"\nstatic int {harness.LAYERS}(const int8_t *input, int8_t *output)\n{{\n" + "".join(calls) +
              "    return 0;\n}\n" + harness.api_source(in_size, out_off))
    return source, harness.api_header(in_size, out_off)
