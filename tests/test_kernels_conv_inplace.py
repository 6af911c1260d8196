"""mcuqp_conv2d_1x1_s8_inplace: a pointwise conv (1x1, stride 1, no padding, out_c <= in_c)
written over its input pixel by pixel through an in_c-byte scratch buffer. Host-compiled C ==
numpy reference == the regular C kernel, bit for bit, on random cases in both rounding modes;
the output is the prefix of the input region and only the scratch is written besides; invalid
shapes and arguments are refused; the file builds for Cortex-M warning-free. In generated
models (the memory plan's in-place 1x1 convs): KWS with its depthwise and pointwise layers in
place equals the reference on the host and, below its live lower bound, on QEMU."""
from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest

from mcuqp.ir import Padding
from mcuqp.ops.common import conv_requant
from mcuqp.ops.conv2d import ConvAttrs, conv2d_s8
import hostlib
import prereq
from kernel_cases import conv_params, cross_compile_errors, i8
from hostlib import dims, ptr

SOURCE = "conv2d_1x1_s8_inplace.c"
RUNTIME_SRC = hostlib.RUNTIME_DIR / "src"
OK, ERR = 0, -1
GUARD = 64  # bytes either side of the scratch buffer and after the data that must stay untouched



def c_inplace(lib, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, a: ConvAttrs,
              out_shape: tuple[int, ...] | None = None, null_buffer: bool = False):
    """Run the in-place kernel on a copy of x followed by guard bytes.
    Returns (status, region after (x.size bytes), guard after the region, guarded scratch)."""
    region = np.full(x.size + GUARD, 66, np.int8)
    region[:x.size] = x.reshape(-1)
    buf = np.full(x.shape[3] + 2 * GUARD, 55, np.int8)
    p = conv_params(a)
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    w = np.ascontiguousarray(w)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    bufp = None if null_buffer else C.cast(C.addressof(C.c_int8.from_buffer(buf, GUARD)), C.POINTER(C.c_int8))
    out = out_shape or (*x.shape[:3], w.shape[0])
    rc = lib.mcuqp_conv2d_1x1_s8_inplace(
        C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(region), C.byref(dims(w.shape)), ptr(w),
        None if b is None else ptr(b, C.c_int32), C.byref(dims(out)), bufp)
    return rc, region[:x.size], region[x.size:], buf


def c_regular(lib, x, w, bias, a) -> np.ndarray:
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    y = np.full((*x.shape[:3], w.shape[0]), 77, np.int8)
    p = conv_params(a)
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    rc = lib.mcuqp_conv2d_s8(C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(x), C.byref(dims(w.shape)),
                             ptr(w), None if b is None else ptr(b, C.c_int32), C.byref(dims(y.shape)), ptr(y))
    assert rc == OK
    return y


def random_case(rng: np.random.Generator, rounding: str):
    n = int(rng.choice([1, 1, 1, 2]))
    h, w_ = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    cin = int(rng.choice([1, 2, 3, 4, 8, 16, 64, int(rng.integers(1, 80))]))
    cout = cin if rng.random() < 0.5 else int(rng.integers(1, cin + 1))
    x = i8(rng, (n, h, w_, cin))
    if rng.random() < 0.05:
        x = np.full(x.shape, rng.choice([-128, 127]), np.int8)
    wt = i8(rng, (cout, 1, 1, cin), -127, 127)
    in_zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
    per_channel = cout > 1 and rng.random() < 0.7
    in_s = float(np.float32(10 ** rng.uniform(-3, 0)))
    w_s = (10 ** rng.uniform(-4, -1)) * 2.0 ** rng.uniform(-2, 2, cout if per_channel else 1)
    acc_std = max(1.0, np.sqrt(cin) * float(np.std(wt.astype(np.float64)) or 1.0) * np.hypot(74.0, in_zp))
    out_s = float(np.float32(in_s * float(w_s.mean()) * acc_std / 40.0 * 2.0 ** rng.uniform(-3, 3)))
    rq = conv_requant(in_s, w_s.astype(np.float32), out_s, rounding)
    lo, hi = (-128, 127) if rng.random() < 0.6 else (max(-128, out_zp), 127)
    bias = None
    if rng.random() >= 0.2:
        bias = np.clip(rng.normal(0, 2 * acc_std, cout), -(1 << 31), (1 << 31) - 1).astype(np.int32)
    a = ConvAttrs((1, 1), Padding(0, 0, 0, 0), input_offset=-in_zp, output_offset=out_zp, requant=rq,
                  act_min=lo, act_max=hi)
    return x, wt, bias, a


def check_cases(lib, rounding: str, seed: int, cases: int) -> None:
    rng = np.random.default_rng(seed)
    saturated = interior = narrower = 0
    for case in range(cases):
        x, w, bias, a = random_case(rng, rounding)
        want = conv2d_s8(x, w, bias, a, rounding=rounding)
        rc, region, after, buf = c_inplace(lib, x, w, bias, a)
        assert rc == OK, case
        got = region[:want.size].reshape(want.shape)  # the output is the prefix of the input region
        assert np.array_equal(got, want), (case, x.shape, w.shape)
        assert np.array_equal(got, c_regular(lib, x, w, bias, a)), case
        assert (after == 66).all(), f"case {case}: wrote past the input region"
        assert (buf[:GUARD] == 55).all() and (buf[-GUARD:] == 55).all(), f"case {case}: wrote outside the scratch"
        narrower += w.shape[0] < x.shape[3]
        saturated += int(np.count_nonzero((want == a.act_min) | (want == a.act_max)))
        interior += int(np.count_nonzero((want > a.act_min) & (want < a.act_max)))
    assert saturated > 100 and interior > 1000 and narrower > cases // 5, (saturated, interior, narrower)


def test_inplace_matches_numpy_double_rounding(runtime):
    check_cases(runtime, "double", seed=2025, cases=150)


def test_inplace_matches_numpy_single_rounding(runtime_single_rounding):
    check_cases(runtime_single_rounding, "single", seed=78, cases=80)


def test_kws_shaped_layer(runtime):
    """KWS's pointwise layer: 25x5x64 -> 64, per-channel, ReLU."""
    rng = np.random.default_rng(6)
    x = i8(rng, (1, 25, 5, 64))
    w = i8(rng, (64, 1, 1, 64), -127, 127)
    bias = rng.integers(-5000, 5000, 64).astype(np.int32)
    rq = conv_requant(0.05, (0.01 * 2.0 ** rng.uniform(-1, 1, 64)).astype(np.float32), 0.8)
    a = ConvAttrs((1, 1), Padding(0, 0, 0, 0), input_offset=128, output_offset=-128, requant=rq, act_min=-128)
    rc, region, _, _ = c_inplace(runtime, x, w, bias, a)
    assert rc == OK
    assert np.array_equal(region.reshape(x.shape), conv2d_s8(x, w, bias, a))


def test_buffer_size(runtime):
    fn = runtime.mcuqp_conv2d_1x1_s8_inplace_buffer_size
    fn.restype = C.c_int32
    assert fn(C.byref(dims((1, 25, 5, 64)))) == 64
    assert fn(C.byref(dims((2, 7, 3, 1)))) == 1
    for bad in ((1, 0, 5, 64), (1, 25, 0, 64), (1, 25, 5, 0), (0, 25, 5, 64), (1, 1, 1, 1 << 15)):
        assert fn(C.byref(dims(bad))) == ERR, bad
    assert fn(None) == ERR


def test_refuses_what_it_cannot_run_in_place(runtime):
    rng = np.random.default_rng(3)
    x = i8(rng, (1, 6, 5, 4))
    w = i8(rng, (4, 1, 1, 4), -127, 127)
    rq = conv_requant(0.1, np.full(4, 0.01, np.float32), 0.2)
    a = ConvAttrs((1, 1), Padding(0, 0, 0, 0), requant=rq)
    assert c_inplace(runtime, x, w, None, a)[0] == OK

    def refused(**kw) -> None:
        rc, region, after, buf = c_inplace(runtime, kw.pop("x", x), kw.pop("w", w), None, kw.pop("a", a), **kw)
        assert rc == ERR
        assert np.array_equal(region, x.reshape(-1)) and (after == 66).all() and (buf == 55).all()

    # out_c > in_c: pixel p's outputs would overwrite pixel p+1's unread input
    w8 = i8(rng, (8, 1, 1, 4), -127, 127)
    refused(w=w8, a=ConvAttrs((1, 1), Padding(0, 0, 0, 0), requant=conv_requant(0.1, np.full(8, 0.01, np.float32), 0.2)))
    refused(w=i8(rng, (4, 3, 3, 4)), a=ConvAttrs((1, 1), Padding(1, 1, 1, 1), requant=rq))  # 3x3
    refused(w=i8(rng, (4, 1, 3, 4)), out_shape=(1, 6, 3, 4))
    refused(a=ConvAttrs((2, 2), Padding(0, 0, 0, 0), requant=rq), out_shape=(1, 3, 3, 4))  # stride 2
    refused(a=ConvAttrs((1, 2), Padding(0, 0, 0, 0), requant=rq))
    refused(a=ConvAttrs((1, 1), Padding(0, 0, 0, 0), dilation=(2, 1), requant=rq))
    refused(a=ConvAttrs((1, 1), Padding(1, 0, 0, 0), requant=rq))  # padding
    refused(a=ConvAttrs((1, 1), Padding(0, 0, 1, 0), requant=rq))
    refused(out_shape=(1, 5, 5, 4))
    refused(out_shape=(1, 6, 4, 4))
    refused(out_shape=(2, 6, 5, 4))
    refused(out_shape=(1, 6, 5, 3))  # output channels unlike the filter's
    refused(w=i8(rng, (4, 1, 1, 3)))  # filter in_c != input c
    refused(null_buffer=True)
    refused(a=ConvAttrs((1, 1), Padding(0, 0, 0, 0), requant=rq, act_min=10, act_max=0))
    refused(a=ConvAttrs((1, 1), Padding(0, 0, 0, 0), requant=conv_requant(0.1, np.full(3, 0.01, np.float32), 0.2)))
    bad_shift = conv_requant(0.1, np.full(4, 0.01, np.float32), 0.2)
    bad_shift.shift[1] = 31
    refused(a=ConvAttrs((1, 1), Padding(0, 0, 0, 0), requant=bad_shift))


@pytest.mark.tools("arm-none-eabi-gcc")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0plus", "cortex-m55"])
@pytest.mark.parametrize("single", [0, 1])
def test_compiles_for_cortex_m(tmp_path, cpu, single):
    assert cross_compile_errors(SOURCE, tmp_path, cpu, single) == ""


# ---- in generated models: the planner's in-place 1x1 convs, on the host and on QEMU ----

def kws() -> Path:
    return prereq.shared_model("mlperf_tiny/kws_ref_model.tflite")


def test_generated_kws_runs_pointwise_in_place_on_the_host(tmp_path):
    from mcuqp.codegen.emit import generate, write_library
    from mcuqp.frontends.tflite import load_tflite
    from mcuqp.plan.memory import plan_memory, validate_plan
    from mcuqp.reference.interpreter import run

    g = load_tflite(kws())
    plan = plan_memory(g)
    validate_plan(g, plan)
    assert plan.inplace_conv == [2, 4, 6, 8] and plan.inplace_depthwise == [1, 3, 5, 7]
    gen = generate(g, plan)
    assert RUNTIME_SRC / "conv2d_1x1_s8_inplace.c" in gen.kernels and RUNTIME_SRC / "depthwise_conv2d_s8_inplace.c" in gen.kernels
    for oi in plan.inplace_conv:
        call = f"(model_arena + {plan.offsets[g.ops[oi].inputs[0]]}), &l{plan.order.index(oi)}_filter"
        assert call in gen.model_c and f"(model_arena + {plan.scratch_offsets[oi]}))" in gen.model_c
    assert gen.model_c.count("mcuqp_conv2d_1x1_s8_inplace(") == 4
    assert gen.model_c.count("mcuqp_conv2d_s8(") == 1  # the first conv (10x4, stride 2) stays regular
    write_library(gen, tmp_path)
    x = np.random.default_rng(12).integers(-128, 128, (16, *g.input.shape[1:]), dtype=np.int8)
    want = run(g, x)
    got = hostlib.HostModel(tmp_path, g.input.size, g.output.size)(x).reshape(want.shape)
    assert np.array_equal(got, want)


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2-an386", "mps3-an547"])
def test_kws_in_place_below_the_lower_bound_on_qemu(board):
    """KWS with its depthwise and 1x1 convs in place: arena 8,492 B against a live lower
    bound of 16,000 B, bit-exact on the target."""
    from mcuqp import api

    loaded = api.load(kws(), n_random=8, seed=5)
    plan = api.compile_plan(loaded, plan="smallest")
    assert plan.inplace_conv == [2, 4, 6, 8] and plan.inplace_depthwise == [1, 3, 5, 7]
    res = api.verify(loaded, board=board, n_inputs=8, plan="smallest")
    assert res.bit_exact and np.array_equal(res.device_outputs, res.reference_outputs)
    assert res.arena_bytes == plan.arena_bytes == 8492 < plan.lower_bound_bytes == 16000


@pytest.mark.qemu
@pytest.mark.slow
def test_mixed28_auto_runs_a_pointwise_conv_in_place_on_qemu():
    """mixed28 under auto: one 1x1 conv in place (and no depthwise) gives 3,144 B, below both
    its 4,704 B lower bound and the 3,332 B of the in-place depthwise; bit-exact on the target."""
    from mcuqp import api

    path = prereq.shared_model("fixtures/mixed28_int8.tflite")
    loaded = api.load(path, n_random=8, seed=3)
    plan = api.compile_plan(loaded, plan="smallest")
    assert plan.inplace_conv == [1] and plan.inplace_depthwise == []
    res = api.verify(loaded, board="mps2-an386", n_inputs=8, plan="smallest")
    assert res.bit_exact and np.array_equal(res.device_outputs, res.reference_outputs)
    assert res.arena_bytes == plan.arena_bytes == 3144 < plan.lower_bound_bytes == 4704
    assert res.predicted_flash_bytes == res.flash_bytes
