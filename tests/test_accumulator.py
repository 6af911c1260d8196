"""Generation refuses a layer whose int32 accumulator can overflow, and only such a layer:
the bound is exact (a layer that reaches INT32_MAX exactly is accepted)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuqp.codegen.accumulator import INT32_MAX, accumulator_range
from mcuqp.codegen.emit import generate
from mcuqp.errors import UnsupportedModelError
from mcuqp.frontends.tflite import load_tflite
from mcuqp.plan.memory import plan_memory
from mcuqp.ops.fully_connected import fully_connected_s8
from tflite_builder import ModelBuilder


def _fc(tmp_path: Path, n_in: int, w: np.ndarray, bias: np.ndarray, zero_point: int) -> Path:
    b = ModelBuilder()
    x = b.add_input("x", (1, n_in), scale=0.05, zero_point=zero_point)
    wt = b.add_constant("w", w, scale=np.float32(0.001))
    bt = b.add_constant("b", bias, scale=np.float32(0.05 * 0.001))
    y = b.add_tensor("y", (1, len(w)), scale=100.0, zero_point=0)
    b.add_operator("FULLY_CONNECTED", [x, wt, bt], [y])
    b.mark_output(y)
    path = tmp_path / "fc.tflite"
    path.write_bytes(b.build())
    return path


def test_range_is_the_exact_extreme_over_int8_inputs(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (3, 40)).astype(np.int8)
    bias = np.array([5, -7, 1000], np.int32)
    g = load_tflite(_fc(tmp_path, 40, w, bias, zero_point=-20))
    op = g.ops[0]
    lo, hi = accumulator_range(g, op)
    # the extreme inputs: per weight sign, -128 or 127, with the input offset 20 added
    off = op.attrs.input_offset
    best = np.where(w > 0, 127, -128) + off
    worst = np.where(w > 0, -128, 127) + off
    assert list(hi) == list((w.astype(np.int64) * best).sum(1) + bias)
    assert list(lo) == list((w.astype(np.int64) * worst).sum(1) + bias)


def test_overflowing_layer_is_refused_and_the_limit_itself_accepted(tmp_path):
    # 70,000 inputs at zero point -128 (x + 128 in [0, 255]): weights 127 reach 2,266,950,000.
    n = 70000
    w = np.full((2, n), 127, np.int8)
    g = load_tflite(_fc(tmp_path, n, w, np.zeros(2, np.int32), zero_point=-128))
    with pytest.raises(UnsupportedModelError, match=r"output channel 0 can reach 2,266,950,000 .*int32 accumulator"):
        generate(g, plan_memory(g))
    # The wrapped sum is what the kernels (and the reference) would compute: garbage.
    x = np.full((1, n), 127, np.int8)
    y = fully_connected_s8(x, g.tensors[g.ops[0].inputs[1]].data, np.zeros(2, np.int32), g.ops[0].attrs)
    assert (y < 0).all()  # a positive sum wrapped to a negative one

    # Exactly INT32_MAX is representable: the bias tops channel 0 up to it.
    w2 = np.full((1, 1000), 127, np.int8)
    top = 1000 * 127 * 255
    g2 = load_tflite(_fc(tmp_path, 1000, w2, np.array([INT32_MAX - top], np.int32), zero_point=-128))
    assert accumulator_range(g2, g2.ops[0])[1][0] == INT32_MAX
    generate(g2, plan_memory(g2))
    g3 = load_tflite(_fc(tmp_path, 1000, w2, np.array([INT32_MAX - top + 1], np.int32), zero_point=-128))
    with pytest.raises(UnsupportedModelError, match="2,147,483,648"):
        generate(g3, plan_memory(g3))
