"""The broadcasting binary ops: SUB, MAXIMUM, MINIMUM, PRELU and broadcasting ADD / MUL.

- host-compiled C (one mcuqp_broadcast walk shared by every kernel) == numpy twin exactly on
  hypothesis-drawn shape pairs of rank 1 to 6 (each dimension kept, 1, or missing on the left),
  in both rounding modes;
- numpy twin == TFLite Micro on single-op models with two inputs, and on every rank TFLite
  Micro accepts (a shape pair whose reduced broadcast needs more than 6 dimensions is
  refused by the lowerer, as TFLite Micro cannot run it);
- a model with all of them (plus TANH) imported from .tflite: reference == TFLite Micro and
  bit-exact on QEMU (Cortex-M4 and M55);
- MUL with a constant second input compiles (regression: two declarations named l<i>_in1).
"""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import prereq
from hostlib import AddParams, PreluParams, broadcast, ptr
from mcuqp.ops import tflite_lowering as tfl
from mcuqp.ops.add import PARAM_FIELDS, AddAttrs, add_attrs, add_s8
from mcuqp.ops.broadcast import walk
from mcuqp.ops.maximum_minimum import maximum_s8, minimum_s8
from mcuqp.ops.mul import MulAttrs, mul_attrs, mul_s8
from mcuqp.ops.prelu import FIELDS as PRELU_FIELDS
from mcuqp.ops.prelu import PreluAttrs, prelu_attrs, prelu_s8
from mcuqp.ops.sub import sub_s8

ZP = st.one_of(st.sampled_from([-128, 127, 0]), st.integers(-128, 127))
SCALE = st.floats(-3.5, 0.0).map(lambda e: float(np.float32(10.0 ** e)))


@st.composite
def shape_pair(draw, max_rank: int = 6, max_dim: int = 4):
    """(a, b, out): out of rank 1..max_rank; each input keeps a dimension, makes it 1, or
    (leading dimensions only) drops it."""
    out = tuple(draw(st.lists(st.integers(1, max_dim), min_size=1, max_size=max_rank)))

    def one() -> tuple[int, ...]:
        s = tuple(d if draw(st.booleans()) else 1 for d in out)
        return s[draw(st.integers(0, len(s) - 1)):]

    a, b = one(), one()
    return a, b, tuple(int(d) for d in np.broadcast_shapes(a, b))


def int8(data, shape) -> np.ndarray:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mode = data.draw(st.sampled_from(["random", "random", "random", "extremes"]))
    if mode == "extremes":
        return np.where(rng.random(shape) < 0.5, -128, 127).astype(np.int8)
    return rng.integers(-128, 128, shape).astype(np.int8)


def c_binary(lib, function: str, params, x1: np.ndarray, x2: np.ndarray, out: tuple[int, ...]):
    """Run `function(params?, &broadcast, x1, x2, y)`; (status, y)."""
    x1, x2 = np.ascontiguousarray(x1), np.ascontiguousarray(x2)
    y = np.full(out, 77, np.int8)
    b = broadcast(x1.shape, x2.shape, out)
    args = ([C.byref(params)] if params is not None else []) + [C.byref(b), ptr(x1), ptr(x2), ptr(y)]
    return getattr(lib, function)(*args), y


def c_add_sub(lib, function: str, x1, x2, a: AddAttrs, out):
    return c_binary(lib, function, AddParams(*(getattr(a, f) for f in PARAM_FIELDS)), x1, x2, out)


def c_mul(lib, x1, x2, a: MulAttrs, out):
    from test_kernels_mul import MulParams

    p = MulParams(*(getattr(a, f) for f in ("input1_offset", "input2_offset", "output_offset", "output_multiplier",
                                            "output_shift", "act_min", "act_max")))
    return c_binary(lib, "mcuqp_mul_s8", p, x1, x2, out)


def c_prelu(lib, x, alpha, a: PreluAttrs, out):
    return c_binary(lib, "mcuqp_prelu_s8", PreluParams(*(getattr(a, f) for f in PRELU_FIELDS)), x, alpha, out)


def draw_add(data) -> AddAttrs:
    return add_attrs(data.draw(SCALE), data.draw(ZP), data.draw(SCALE), data.draw(ZP), data.draw(SCALE),
                     data.draw(ZP), data.draw(st.sampled_from([None, "relu", "relu6"])))


def draw_mul(data) -> MulAttrs:
    if data.draw(st.booleans()):
        return mul_attrs(data.draw(SCALE), data.draw(ZP), data.draw(SCALE), data.draw(ZP), data.draw(SCALE),
                         data.draw(ZP), data.draw(st.sampled_from([None, "relu", "relu6"])))
    lo = data.draw(st.integers(-128, 127))  # anything the C contract allows
    return MulAttrs(data.draw(st.integers(-127, 128)), data.draw(st.integers(-127, 128)), data.draw(ZP),
                    data.draw(st.integers(1 << 30, (1 << 31) - 1)), data.draw(st.integers(-31, 7)), lo,
                    data.draw(st.integers(lo, 127)))


def draw_prelu(data) -> PreluAttrs:
    return prelu_attrs(data.draw(SCALE), data.draw(ZP), data.draw(SCALE), data.draw(ZP), data.draw(SCALE),
                       data.draw(ZP))


def check_case(lib, rounding: str, op: str, data) -> None:
    """One drawn case of `op` (add, sub, mul, maximum, minimum, prelu): C == numpy twin."""
    a_shape, b_shape, out = data.draw(shape_pair())
    x1, x2 = int8(data, a_shape), int8(data, b_shape)
    if op in ("add", "sub"):
        attrs = draw_add(data)
        want = add_s8(x1, x2, attrs, rounding) if op == "add" else sub_s8(x1, x2, attrs, rounding)
        rc, got = c_add_sub(lib, f"mcuqp_{op}_broadcast_s8" if op == "add" else "mcuqp_sub_s8", x1, x2, attrs, out)
    elif op == "mul":
        attrs = draw_mul(data)
        want, (rc, got) = mul_s8(x1, x2, attrs, rounding), c_mul(lib, x1, x2, attrs, out)
    elif op == "prelu":
        attrs = draw_prelu(data)
        want, (rc, got) = prelu_s8(x1, x2, attrs, rounding), c_prelu(lib, x1, x2, attrs, out)
    else:
        attrs = None
        want = (maximum_s8 if op == "maximum" else minimum_s8)(x1, x2)
        rc, got = c_binary(lib, f"mcuqp_{op}_s8", None, x1, x2, out)
    assert rc == 0
    assert np.array_equal(got, want), (op, a_shape, b_shape, attrs)


OPS = ["add", "sub", "mul", "maximum", "minimum", "prelu"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_broadcast_c_matches_numpy(runtime, runtime_single_rounding, rounding: str, op: str) -> None:
    lib = runtime if rounding == "double" else runtime_single_rounding

    @settings(max_examples=120, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data) -> None:
        check_case(lib, rounding, op, data)

    run()


def test_broadcast_walk_reduces_like_tflm() -> None:
    # Same shapes: one dense row. Broadcast dims merge with their neighbours of the same kind.
    assert walk((2, 3, 4), (2, 3, 4), (2, 3, 4)) == ([1, 1, 1, 1, 1, 24], [0] * 5 + [1], [0] * 5 + [1])
    assert walk((1, 4, 1, 3), (5, 1), (1, 4, 5, 3)) == (
        [1, 1, 1, 4, 5, 3], [0, 0, 0, 3, 0, 1], [0, 0, 0, 0, 1, 0])
    # Rank 8 that reduces to 6 dimensions runs; 7 alternating dimensions do not.
    assert walk((1, 1, 1, 2, 1, 2, 1, 2), (1, 1, 3, 1, 3, 1, 3, 1), (1, 1, 3, 2, 3, 2, 3, 2))[0] == [3, 2, 3, 2, 3, 2]
    with pytest.raises(tfl.Reject, match="7 dimensions"):
        walk((1, 2, 1, 2, 1, 2, 1, 2), (1, 1, 3, 1, 3, 1, 3, 1), (1, 2, 3, 2, 3, 2, 3, 2))


def test_broadcast_numpy_definitions() -> None:
    # SUB by hand: scales 1, 1 -> 1 with zero points 0: 5 - (-3) = 8; 5 - 7 = -2.
    a = add_attrs(1.0, 0, 1.0, 0, 1.0, 0)
    assert sub_s8(np.array([[5], [5]], np.int8), np.array([[-3, 7]], np.int8), a).tolist() == [[8, -2], [8, -2]]
    assert maximum_s8(np.array([1, -5], np.int8), np.array([[0], [-9]], np.int8)).tolist() == [[1, 0], [1, -5]]
    assert minimum_s8(np.array([1, -5], np.int8), np.array([[0], [-9]], np.int8)).tolist() == [[0, -5], [-9, -9]]
    # PRELU by hand: scales 1, alpha scale 0.25 (alpha 2 -> 0.5): 8 -> 8, -8 -> -4.
    p = prelu_attrs(1.0, 0, 0.25, 0, 1.0, 0)
    assert prelu_s8(np.array([8, -8], np.int8), np.array([2], np.int8), p).tolist() == [8, -4]


def test_broadcast_kernels_reject_bad_arguments(runtime) -> None:
    x = np.zeros((2, 3), np.int8)
    rc, _ = c_add_sub(runtime, "mcuqp_sub_s8", x, x, AddAttrs(act_min=5, act_max=4), (2, 3))
    assert rc == -1
    rc, _ = c_prelu(runtime, x, x, PreluAttrs(output_multiplier_1=-1), (2, 3))
    assert rc == -1
    b = broadcast((2, 3), (2, 3), (2, 3))
    b.shape[0] = -1
    y = np.zeros((2, 3), np.int8)
    assert runtime.mcuqp_maximum_s8(C.byref(b), ptr(x), ptr(x), ptr(y)) == -1
    rc, _ = c_add_sub(runtime, "mcuqp_sub_s8", x, x, AddAttrs(), (2, 3))
    assert rc == 0


# ---- TFLite Micro oracle -------------------------------------------------------------

OPTIONS = {"MAXIMUM": "MaximumMinimumOptions", "MINIMUM": "MaximumMinimumOptions"}


def _two_input_model(opcode: str, a_shape, b_shape, out, q1, q2, qo, activation: str = "NONE") -> bytes:
    from tflite_builder import ModelBuilder

    b = ModelBuilder()
    x1 = b.add_input("x1", a_shape, scale=q1[0], zero_point=q1[1])
    x2 = b.add_input("x2", b_shape, scale=q2[0], zero_point=q2[1])
    y = b.add_tensor("y", out, scale=qo[0], zero_point=qo[1])
    opts = {"fused_activation_function": activation} if opcode in ("ADD", "SUB", "MUL") else None
    b.add_operator(opcode, [x1, x2], [y], opts, options_type=OPTIONS.get(opcode))
    b.mark_output(y)
    return b.build()


@pytest.mark.parametrize("opcode", ["ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "PRELU"])
def test_broadcast_numpy_matches_tflm(opcode: str) -> None:
    prereq.require_module("tflite_micro")
    from tflite_builder import run_tflm

    act_names = {None: "NONE", "relu": "RELU", "relu6": "RELU6"}

    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data) -> None:
        a_shape, b_shape, out = data.draw(shape_pair(max_rank=6, max_dim=3))
        q1, q2, qo = ((data.draw(SCALE), data.draw(ZP)) for _ in range(3))
        if opcode in ("MAXIMUM", "MINIMUM"):
            q2 = qo = q1
        act = data.draw(st.sampled_from([None, "relu", "relu6"])) if opcode in ("ADD", "SUB", "MUL") else None
        model = _two_input_model(opcode, a_shape, b_shape, out, q1, q2, qo, act_names[act])
        x1, x2 = int8(data, a_shape), int8(data, b_shape)
        got = run_tflm(model, [x1, x2])[0]
        if opcode in ("ADD", "SUB"):
            attrs = add_attrs(*q1, *q2, *qo, act)
            want = add_s8(x1, x2, attrs) if opcode == "ADD" else sub_s8(x1, x2, attrs)
        elif opcode == "MUL":
            want = mul_s8(x1, x2, mul_attrs(*q1, *q2, *qo, act))
        elif opcode == "PRELU":
            want = prelu_s8(x1, x2, prelu_attrs(*q1, *q2, *qo))
        else:
            want = (maximum_s8 if opcode == "MAXIMUM" else minimum_s8)(x1, x2)
        assert got.shape == want.shape and np.array_equal(got, want), (a_shape, b_shape, q1, q2, qo, act)

    run()


def _all_ops_model(path: Path, rank5: bool = False) -> Path:
    """x -> SUB const (broadcast) -> MAXIMUM const -> MINIMUM const -> MUL const -> ADD with a
    MEAN of itself (two activations, broadcast; rank 5: with h1) -> PRELU (per-channel alpha)
    -> TANH -> y."""
    from tflite_builder import ModelBuilder

    rng = np.random.default_rng(81)
    shape = (1, 2, 3, 4, 5) if rank5 else (1, 5, 4, 3)
    c = shape[-1]
    b = ModelBuilder()
    qx, qh = (0.05, -3), (0.07, 4)
    x = b.add_input("x", shape, scale=qx[0], zero_point=qx[1])

    def t(name, s=shape, q=qh):
        return b.add_tensor(name, s, scale=q[0], zero_point=q[1])

    def k(name, s, q=(0.03, 2)):
        return b.add_constant(name, rng.integers(-128, 128, s).astype(np.int8), scale=q[0], zero_point=q[1])

    h1 = t("h1")
    b.add_operator("SUB", [x, k("k1", (c,))], [h1], {"fused_activation_function": "NONE"})
    h2 = t("h2")
    b.add_operator("MAXIMUM", [h1, k("k2", (shape[-2], 1), qh)], [h2], options_type="MaximumMinimumOptions")
    h3 = t("h3")
    b.add_operator("MINIMUM", [k("k3", (1,) * (len(shape) - 1) + (c,), qh), h2], [h3],
                   options_type="MaximumMinimumOptions")
    h4 = t("h4", q=(0.05, -10))
    b.add_operator("MUL", [h3, k("k4", (shape[-2], c))], [h4], {"fused_activation_function": "NONE"})
    if rank5:  # MEAN of rank 5 is not lowered: add an activation of the same shape
        m = h1
    else:
        axes = b.add_constant("axes", np.array(range(1, len(shape) - 1), np.int32))
        m = t("m", (1,) * (len(shape) - 1) + (c,), q=(0.05, -10))
        b.add_operator("MEAN", [h4, axes], [m], {"keep_dims": True})
    h5 = t("h5", q=(0.09, 1))
    b.add_operator("ADD", [h4, m], [h5], {"fused_activation_function": "NONE"})
    h6 = t("h6", q=(0.06, -5))
    b.add_operator("PRELU", [h5, k("alpha", (c,), (0.01, 0))], [h6])
    y = t("y", q=(1.0 / 128, 0))
    b.add_operator("TANH", [h6], [y])
    b.mark_output(y)
    path.write_bytes(b.build())
    return path


@pytest.mark.parametrize("rank5", [False, True])
def test_all_ops_model_reference_matches_tflm(tmp_path: Path, rank5: bool) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp import api
    from mcuqp.ir import OpKind

    loaded = api.load(_all_ops_model(tmp_path / "m.tflite", rank5), n_random=16, seed=3)
    kinds = {op.kind for op in loaded.graph.ops}
    assert {OpKind.SUB, OpKind.MAXIMUM, OpKind.MINIMUM, OpKind.MUL, OpKind.ADD, OpKind.PRELU, OpKind.TANH} <= kinds
    assert api.oracle_first_mismatch(loaded, 16) is None


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_all_ops_model_bit_exact_on_qemu(board: str, tmp_path: Path) -> None:
    from mcuqp import api

    loaded = api.load(_all_ops_model(tmp_path / "m.tflite"), n_random=10, seed=5)
    res = api.verify(loaded, board=board, n_inputs=10)
    assert res.compared == 10 and res.mismatches == 0, f"{res.mismatched_elements} elements differ"
    assert np.array_equal(res.device_outputs, res.reference_outputs)


# ---- generated C on the host ---------------------------------------------------------


def _host_run(model: Path, n: int = 12) -> tuple[np.ndarray, np.ndarray, str]:
    """(generated C on the host, numpy reference, model.c) for `n` random inputs."""
    import hostlib
    from mcuqp.codegen.emit import generate, write_library
    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.plan.memory import plan_memory, validate_plan
    from mcuqp.reference.interpreter import run

    g = load_tflite(model)
    plan = plan_memory(g)
    validate_plan(g, plan)
    gen = generate(g, plan)
    out = model.parent / "lib"
    write_library(gen, out)
    x = np.random.default_rng(13).integers(-128, 128, (n, *g.input.shape[1:]), dtype=np.int8)
    want = run(g, x)
    got = hostlib.HostModel(out, g.input.size, g.output.size)(x).reshape(want.shape)
    return got, want, gen.model_c


def _mul_const_model(path: Path) -> Path:
    from tflite_builder import ModelBuilder

    b = ModelBuilder()
    x = b.add_input("x", (1, 3, 4), scale=0.05, zero_point=2)
    k = b.add_constant("k", np.array([3, -7, 100, -128], np.int8), scale=0.02, zero_point=1)
    y = b.add_tensor("y", (1, 3, 4), scale=0.04, zero_point=-1)
    b.add_operator("MUL", [x, k], [y], {"fused_activation_function": "NONE"})
    b.mark_output(y)
    path.write_bytes(b.build())
    return path


def test_mul_with_a_constant_second_input_compiles_and_matches(tmp_path: Path) -> None:
    """Regression: the constant operand and the input-1 dims were both declared l0_in1."""
    got, want, model_c = _host_run(_mul_const_model(tmp_path / "m.tflite"))
    assert "mcuqp_mul_s8(" in model_c
    assert np.array_equal(got, want)


@pytest.mark.parametrize("rank5", [False, True])
def test_all_ops_model_generated_c_matches_reference_on_the_host(tmp_path: Path, rank5: bool) -> None:
    got, want, model_c = _host_run(_all_ops_model(tmp_path / "m.tflite", rank5=rank5))
    for fn in ("mcuqp_sub_s8(", "mcuqp_maximum_s8(", "mcuqp_minimum_s8(", "mcuqp_mul_s8(",
               "mcuqp_add_s8(" if rank5 else "mcuqp_add_broadcast_s8(", "mcuqp_prelu_s8(", "mcuqp_tanh_s8("):
        assert fn in model_c, fn
    assert np.array_equal(got, want)
