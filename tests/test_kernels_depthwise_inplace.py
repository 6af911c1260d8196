"""mcuqp_depthwise_conv2d_s8_inplace: the output written over the input, channel by channel
through an h * w scratch buffer. Host-compiled C == numpy reference == the regular C kernel,
bit for bit, on random shape-preserving cases in both rounding modes; the scratch buffer is
the only other memory written; invalid shapes and arguments are refused; the file builds for
Cortex-M warning-free. In generated models (the memory plan's in-place depthwise ops): the
kernel file ships, the calls use the planned scratch, and the model equals the reference on
the host and on QEMU."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest

from mcuqp.ir import Padding
from mcuqp.ops.common import conv_requant
from mcuqp.ops.conv2d import ConvAttrs, conv_output_hw
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8
import hostlib
import prereq
from kernel_cases import conv_params, cross_compile_errors, i8
from hostlib import dims, ptr

SOURCE = "depthwise_conv2d_s8_inplace.c"
RUNTIME_SRC = hostlib.RUNTIME_DIR / "src"
OK, ERR = 0, -1
GUARD = 64  # bytes either side of the scratch buffer that must stay untouched



def c_inplace(lib, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, a: ConvAttrs,
              out_shape: tuple[int, ...] | None = None, scratch: int | None = None,
              null_buffer: bool = False) -> tuple[int, np.ndarray, np.ndarray]:
    """Run the in-place kernel on a copy of x; returns (status, data after, guarded scratch)."""
    data = np.ascontiguousarray(x.copy())
    w = np.ascontiguousarray(w)
    n_scratch = x.shape[1] * x.shape[2] if scratch is None else scratch
    buf = np.full(n_scratch + 2 * GUARD, 55, np.int8)
    p = conv_params(a)
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    bp = None if b is None else ptr(b, C.c_int32)
    bufp = None if null_buffer else C.cast(C.addressof(C.c_int8.from_buffer(buf, GUARD)), C.POINTER(C.c_int8))
    rc = lib.mcuqp_depthwise_conv2d_s8_inplace(
        C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(data), C.byref(dims(w.shape)), ptr(w), bp,
        C.byref(dims(out_shape or x.shape)), bufp)
    return rc, data, buf


def c_regular(lib, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, a: ConvAttrs) -> np.ndarray:
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    y = np.full(x.shape, 77, np.int8)
    p = conv_params(a)
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    rc = lib.mcuqp_depthwise_conv2d_s8(C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(x),
                                       C.byref(dims(w.shape)), ptr(w), None if b is None else ptr(b, C.c_int32),
                                       C.byref(dims(y.shape)), ptr(y))
    assert rc == OK
    return y


def same_padding(rng: np.random.Generator, eff: int) -> tuple[int, int]:
    """(before, after) summing to eff - 1: the output keeps the input's size at stride 1.
    Mostly TFLite's SAME split, sometimes lopsided."""
    if rng.random() < 0.7:
        return (eff - 1) // 2, eff - 1 - (eff - 1) // 2
    before = int(rng.integers(0, eff))
    return before, eff - 1 - before


def split_padding(rng: np.random.Generator, total: int) -> tuple[int, int]:
    before = int(rng.integers(0, total + 1))
    return before, total - before


def random_case(rng: np.random.Generator, rounding: str):
    """A depthwise conv (depth multiplier 1) whose output has the input's shape."""
    kh = int(rng.choice([1, 2, 3, 3, 3, 5]))
    kw = kh if rng.random() < 0.7 else int(rng.choice([1, 2, 3, 5]))
    dil = tuple(int(rng.choice([1, 1, 1, 2])) for _ in range(2))
    eff_h, eff_w = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    (pt, pb), (pl, pr) = same_padding(rng, eff_h), same_padding(rng, eff_w)
    n = int(rng.choice([1, 1, 1, 2]))
    h, w_ = int(rng.integers(1, 14)), int(rng.integers(1, 14))
    stride = (1, 1)
    if rng.random() < 0.15:  # stride 2 with the padding that keeps the shape: inner windows step by 2
        stride = (int(rng.integers(1, 3)), 2)
        pt, pb = split_padding(rng, (h - 1) * stride[0] + eff_h - h)
        pl, pr = split_padding(rng, (w_ - 1) * 2 + eff_w - w_)
    c = int(rng.choice([1, 2, 3, 4, 5, 8, 16, 64, int(rng.integers(1, 40))]))
    x = i8(rng, (n, h, w_, c))
    if rng.random() < 0.05:
        x = np.full(x.shape, rng.choice([-128, 127]), np.int8)
    wt = i8(rng, (1, kh, kw, c), -127, 127)
    in_zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
    per_channel = c > 1 and rng.random() < 0.7
    in_s = float(np.float32(10 ** rng.uniform(-3, 0)))
    w_s = (10 ** rng.uniform(-4, -1)) * 2.0 ** rng.uniform(-2, 2, c if per_channel else 1)
    acc_std = max(1.0, np.sqrt(kh * kw) * float(np.std(wt.astype(np.float64)) or 1.0) * np.hypot(74.0, in_zp))
    out_s = float(np.float32(in_s * float(w_s.mean()) * acc_std / 40.0 * 2.0 ** rng.uniform(-3, 3)))
    rq = conv_requant(in_s, w_s.astype(np.float32), out_s, rounding)
    lo, hi = (-128, 127) if rng.random() < 0.6 else (max(-128, out_zp), 127)
    bias = None
    if rng.random() >= 0.2:
        bias = np.clip(rng.normal(0, 2 * acc_std, c), -(1 << 31), (1 << 31) - 1).astype(np.int32)
    a = ConvAttrs(stride=stride, padding=Padding(pt, pb, pl, pr), dilation=dil, depth_multiplier=1,
                  input_offset=-in_zp, output_offset=out_zp, requant=rq, act_min=lo, act_max=hi)
    assert conv_output_hw(h, w_, kh, kw, a) == (h, w_)
    return x, wt, bias, a


def check_cases(lib, rounding: str, seed: int, cases: int) -> None:
    rng = np.random.default_rng(seed)
    saturated = interior = 0
    for case in range(cases):
        x, w, bias, a = random_case(rng, rounding)
        want = depthwise_conv2d_s8(x, w, bias, a, rounding=rounding)
        rc, got, buf = c_inplace(lib, x, w, bias, a)
        assert rc == OK, case
        assert np.array_equal(got, want), (case, x.shape, w.shape, a)
        assert np.array_equal(got, c_regular(lib, x, w, bias, a)), case
        assert (buf[:GUARD] == 55).all() and (buf[-GUARD:] == 55).all(), f"case {case}: wrote outside the scratch"
        saturated += int(np.count_nonzero((want == a.act_min) | (want == a.act_max)))
        interior += int(np.count_nonzero((want > a.act_min) & (want < a.act_max)))
    assert saturated > 100 and interior > 1000, (saturated, interior)  # the sweep reached both regimes


def test_inplace_matches_numpy_double_rounding(runtime):
    check_cases(runtime, "double", seed=2024, cases=150)


def test_inplace_matches_numpy_single_rounding(runtime_single_rounding):
    check_cases(runtime_single_rounding, "single", seed=77, cases=80)


def test_kws_shaped_layer(runtime):
    """KWS's depthwise layer: 25x5x64, 3x3, SAME, per-channel, ReLU."""
    rng = np.random.default_rng(5)
    x = i8(rng, (1, 25, 5, 64))
    w = i8(rng, (1, 3, 3, 64), -127, 127)
    bias = rng.integers(-5000, 5000, 64).astype(np.int32)
    rq = conv_requant(0.05, (0.01 * 2.0 ** rng.uniform(-1, 1, 64)).astype(np.float32), 0.4)
    a = ConvAttrs((1, 1), Padding(1, 1, 1, 1), input_offset=128, output_offset=-128, requant=rq, act_min=-128)
    rc, got, _ = c_inplace(runtime, x, w, bias, a)
    assert rc == OK
    assert np.array_equal(got, depthwise_conv2d_s8(x, w, bias, a))


def test_buffer_size(runtime):
    fn = runtime.mcuqp_depthwise_conv2d_s8_inplace_buffer_size
    fn.restype = C.c_int32
    assert fn(C.byref(dims((1, 25, 5, 64)))) == 125
    assert fn(C.byref(dims((2, 7, 3, 1)))) == 21
    for bad in ((1, 0, 5, 64), (1, 25, 0, 64), (1, 25, 5, 0), (0, 25, 5, 64), (1, 1 << 15, 1, 1)):
        assert fn(C.byref(dims(bad))) == ERR, bad
    assert fn(None) == ERR


def test_refuses_shapes_it_cannot_run_in_place(runtime):
    rng = np.random.default_rng(3)
    x = i8(rng, (1, 6, 5, 4))
    w = i8(rng, (1, 3, 3, 4), -127, 127)
    rq = conv_requant(0.1, np.full(4, 0.01, np.float32), 0.2)
    a = ConvAttrs((1, 1), Padding(1, 1, 1, 1), requant=rq)
    assert c_inplace(runtime, x, w, None, a)[0] == OK

    def refused(**kw) -> None:
        rc, data, buf = c_inplace(runtime, kw.pop("x", x), kw.pop("w", w), None, kw.pop("a", a), **kw)
        assert rc == ERR
        assert (buf == 55).all(), "a refused call wrote to the scratch"

    refused(out_shape=(1, 5, 5, 4))  # "valid" padding: smaller output
    refused(out_shape=(1, 6, 4, 4))
    refused(out_shape=(1, 6, 5, 8))
    refused(out_shape=(2, 6, 5, 4))
    # depth multiplier 2: output channel 2c+1 reads input channel c, the output is twice the input
    w2 = i8(rng, (1, 3, 3, 8), -127, 127)
    rq2 = conv_requant(0.1, np.full(8, 0.01, np.float32), 0.2)
    a2 = ConvAttrs((1, 1), Padding(1, 1, 1, 1), depth_multiplier=2, requant=rq2)
    refused(w=w2, a=a2, out_shape=(1, 6, 5, 8))
    refused(w=w2, a=ConvAttrs((1, 1), Padding(1, 1, 1, 1), depth_multiplier=1, requant=rq2))  # filter c != c
    refused(null_buffer=True)
    refused(a=ConvAttrs((0, 1), Padding(1, 1, 1, 1), requant=rq))
    refused(a=ConvAttrs((1, 1), Padding(1, 1, 1, 1), requant=rq, act_min=10, act_max=0))
    refused(a=ConvAttrs((1, 1), Padding(1, 1, 1, 1), requant=conv_requant(0.1, np.full(3, 0.01, np.float32), 0.2)))
    bad_shift = conv_requant(0.1, np.full(4, 0.01, np.float32), 0.2)
    bad_shift.shift[1] = 31
    refused(a=ConvAttrs((1, 1), Padding(1, 1, 1, 1), requant=bad_shift))


@pytest.mark.tools("arm-none-eabi-gcc")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0plus", "cortex-m55"])
@pytest.mark.parametrize("single", [0, 1])
def test_compiles_for_cortex_m(tmp_path, cpu, single):
    assert cross_compile_errors(SOURCE, tmp_path, cpu, single) == ""


# ---- in generated models: the planner's in-place depthwise ops, on the host and on QEMU ----

SHARED = prereq.SHARED_MODELS
MIXED28 = SHARED / "fixtures" / "mixed28_int8.tflite"
KWS = SHARED / "mlperf_tiny" / "kws_ref_model.tflite"


def shared_model(path: Path) -> Path:
    return prereq.shared_model(path.relative_to(SHARED))


@pytest.mark.parametrize(("model", "mode", "in_place"), [
    (MIXED28, "auto", [2]), (KWS, "auto", []), (KWS, "always", [1, 3, 5, 7]),
], ids=["mixed28-auto", "kws-auto", "kws-always"])
def test_generated_model_runs_depthwise_in_place_on_the_host(tmp_path, model, mode, in_place):
    from mcuqp.codegen.emit import generate, write_library
    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.plan.memory import plan_memory, validate_plan
    from mcuqp.reference.interpreter import run

    g = load_tflite(shared_model(model))
    plan = plan_memory(g, inplace_depthwise=mode, inplace_conv="never")  # the 1x1 convs: test_kernels_conv_inplace
    validate_plan(g, plan)
    assert plan.inplace_depthwise == in_place
    gen = generate(g, plan)
    regular = RUNTIME_SRC / "depthwise_conv2d_s8.c"
    assert (RUNTIME_SRC / "depthwise_conv2d_s8_inplace.c" in gen.kernels) == bool(in_place)
    n_depthwise = sum(op.kind.value == "depthwise_conv2d" for op in g.ops)
    assert (regular in gen.kernels) == (len(in_place) < n_depthwise)
    for oi in in_place:
        call = f"(model_arena + {plan.offsets[g.ops[oi].inputs[0]]}), &l{plan.order.index(oi)}_filter"
        assert call in gen.model_c and f"(model_arena + {plan.scratch_offsets[oi]}))" in gen.model_c
    assert gen.model_c.count("mcuqp_depthwise_conv2d_s8_inplace(") == len(in_place)
    write_library(gen, tmp_path)
    x = np.random.default_rng(11).integers(-128, 128, (16, *g.input.shape[1:]), dtype=np.int8)
    want = run(g, x)
    got = hostlib.HostModel(tmp_path, g.input.size, g.output.size)(x).reshape(want.shape)
    assert np.array_equal(got, want)


def _forced_plan(**forced):
    """plan_memory with some in-place modes pinned, whatever the caller asks for."""
    from mcuqp.plan.memory import plan_memory

    def plan(graph, **kw):
        return plan_memory(graph, **{**kw, **forced})

    return plan


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_mixed28_in_place_below_the_lower_bound_on_qemu(monkeypatch, board):
    """mixed28's depthwise runs in place: arena 3,332 B against a live lower bound of 4,704 B
    (1x1 convs kept regular here; with them in place auto prefers a 1x1 conv instead:
    tests/test_kernels_conv_inplace.py)."""
    from mcuqp import api

    monkeypatch.setattr("mcuqp.plan.choice.plan_memory", _forced_plan(inplace_conv="never"))

    loaded = api.load(shared_model(MIXED28), n_random=12, seed=3)
    plan = api.compile_plan(loaded, plan="smallest")
    assert plan.inplace_depthwise == [2]
    res = api.verify(loaded, board=board, n_inputs=12, plan="smallest")
    assert res.bit_exact and np.array_equal(res.device_outputs, res.reference_outputs)
    assert res.arena_bytes == plan.arena_bytes == 3332 < plan.lower_bound_bytes == 4704
    # the footprint prediction counts the in-place kernel's code (flash) and its scratch (in the arena)
    assert res.predicted_flash_bytes == res.flash_bytes
    assert res.ram_bytes <= res.predicted_ram_bytes <= res.ram_bytes * 1.05


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "always"])
def test_kws_bit_exact_on_qemu(monkeypatch, mode):
    """With the 1x1 convs kept regular, KWS peaks at its pointwise convs (two 8,000 B tensors
    whatever the depthwise does), so auto keeps the regular depthwise kernel and the arena at
    the 16,000 B lower bound; forced in place, all four depthwise layers run the in-place
    kernel on the target, still bit-exact. (Both kinds in place, below the bound:
    tests/test_kernels_conv_inplace.py.)"""
    from mcuqp import api

    monkeypatch.setattr("mcuqp.plan.choice.plan_memory", _forced_plan(inplace_depthwise=mode, inplace_conv="never"))
    loaded = api.load(shared_model(KWS), n_random=8, seed=5)
    plan = api.compile_plan(loaded, plan="smallest")
    assert plan.inplace_depthwise == ([1, 3, 5, 7] if mode == "always" else [])
    res = api.verify(loaded, board="mps2-an386", n_inputs=8, plan="smallest")
    assert res.bit_exact and np.array_equal(res.device_outputs, res.reference_outputs)
    assert res.arena_bytes == plan.arena_bytes == plan.lower_bound_bytes == 16000
