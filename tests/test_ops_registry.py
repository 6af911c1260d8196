"""The op registry (mcuqp.ops): every op module declares a complete, consistent OpDef, and
the code generator picks a layer's kernel from the declared variants by the board's CPU
features."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import DType, Graph, Op, OpKind, Padding, QParams, Tensor
from mcuqp.ops import registry
from mcuqp.ops.conv2d import ConvAttrs
from mcuqp.ops.registry import RUNTIME_SRC
from mcuqp.plan.cost import graph_macs
from mcuqp.target.boards import load_board

NN_HEADER = RUNTIME_SRC.parent / "include" / "mcuqp_nn.h"
OPS = registry.all_ops()


def test_every_op_is_registered_once_with_the_ops_the_pipeline_emits() -> None:
    kinds = [str(d.kind) for d in OPS]
    assert len(kinds) == len(set(kinds))
    assert {"conv2d", "depthwise_conv2d", "fully_connected", "max_pool2d", "avg_pool2d", "add", "softmax",
            "reshape", "mul", "mean", "pad", "concatenation", "logistic", "quantize", "sign"} <= set(kinds)


@pytest.mark.parametrize("d", OPS, ids=lambda d: str(d.kind))
def test_op_definition_is_complete(d: registry.OpDef) -> None:
    assert dataclasses.is_dataclass(d.attrs)
    assert callable(d.reference) and callable(d.emit) and callable(d.macs)
    header = NN_HEADER.read_text()
    for k in d.kernels:
        assert k.path.is_file(), k.source
        assert re.search(rf"\b{k.function}\(", header), f"{k.function} is not declared in mcuqp_nn.h"
        assert f"{k.function}(" in k.path.read_text(), f"{k.source} does not define {k.function}"
    # every op runs on a board without extensions: a portable, out-of-place, dense int8 kernel
    portable = registry.select_kernel(d, frozenset())
    assert not portable.features and not portable.inplace and portable.weight_format == registry.DENSE_INT8
    assert (d.inplace is not None) == any(k.inplace for k in d.kernels)
    if d.weight_axis is not None or d.float_run is not None:
        assert d.from_float is not None and d.float_run is not None


def test_each_tflite_opcode_has_one_lowerer() -> None:
    seen: dict[str, str] = {}
    for d in OPS:
        for opcode in d.tflite:
            assert opcode not in seen, f"{opcode} is lowered by {seen[opcode]} and {d.kind}"
            seen[opcode] = str(d.kind)
    assert registry.tflite_lowerers().keys() == seen.keys()


def test_kernel_selection_follows_the_board_features() -> None:
    conv = registry.get(OpKind.CONV2D)
    assert registry.select_kernel(conv, load_board("mps2-an385").features).source == "conv2d_s8.c"
    assert registry.select_kernel(conv, load_board("mps2-an386").features).source == "dsp/conv2d_s8.c"
    assert registry.select_kernel(conv, frozenset(), inplace=True).function == "mcuqp_conv2d_1x1_s8_inplace"
    with pytest.raises(UnsupportedModelError, match="no C kernel for op reshape"):
        registry.select_kernel(registry.get(OpKind.RESHAPE), frozenset(), inplace=True)
    # packed weight formats: their own kernels, a DSP variant where one exists
    assert registry.select_kernel(conv, frozenset({"dsp"}), weight_format="int4").source == "dsp/conv2d_lowbit_s8.c"
    assert registry.select_kernel(conv, frozenset(), weight_format="ternary").source == "conv2d_lowbit_s8.c"
    assert registry.select_kernel(conv, frozenset({"dsp"}), weight_format="sparse").source == "conv2d_sparse_s8.c"
    depthwise = registry.get(OpKind.DEPTHWISE_CONV2D)
    assert registry.select_kernel(depthwise, frozenset(), weight_format="binary").calls_dense
    with pytest.raises(UnsupportedModelError, match="no C kernel for op depthwise_conv2d .xnor weights"):
        registry.select_kernel(depthwise, frozenset({"dsp"}), weight_format="xnor")


def test_unknown_op_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedModelError, match="unknown op 'no_such_op'"):
        registry.get("no_such_op")


def test_op_kinds_are_interned_strings() -> None:
    k = OpKind("conv2d")
    assert k is OpKind.CONV2D and k == "conv2d" and k.value == "conv2d"
    assert Op("conv2d", "c", [], [], None).kind is OpKind.CONV2D


def test_macs_come_from_the_op_modules() -> None:
    g = Graph()
    g.add_tensor(Tensor("x", (1, 6, 6, 3), DType.INT8, QParams(0.1, 0)))
    g.add_tensor(Tensor("w", (4, 3, 3, 3), DType.INT8, QParams(0.1, 0), np.zeros((4, 3, 3, 3), np.int8)))
    g.add_tensor(Tensor("y", (1, 4, 4, 4), DType.INT8, QParams(0.1, 0)))
    g.add_tensor(Tensor("z", (1, 64), DType.INT8, QParams(0.1, 0)))
    g.ops = [Op(OpKind.CONV2D, "c", ["x", "w"], ["y"], ConvAttrs(stride=(1, 1), padding=Padding())),
             Op(OpKind.RESHAPE, "r", ["y"], ["z"], None)]
    assert graph_macs(g) == 4 * 4 * 4 * 3 * 3 * 3


def test_no_branching_on_op_kinds_outside_the_registry() -> None:
    """Front ends, PTQ, interpreter, planner and code generator ask the registry; only
    mcuqp/ops and the torch front end's layer mapping (which op a torch layer becomes) name
    op kinds in comparisons."""
    import ast
    from pathlib import Path

    package = Path(registry.__file__).resolve().parents[1]
    allowed = {package / "frontends" / "torch_fx.py"}
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.is_relative_to(package / "ops") or path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            names = [n for o in operands for n in ast.walk(o)
                     if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "OpKind"]
            if names:
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert not offenders, offenders
