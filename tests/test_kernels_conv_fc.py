"""conv2d, depthwise conv2d and fully connected: host-compiled C == numpy reference, bit
for bit, over randomized shapes and quantization (both rounding modes); the numpy
reference == literal TFLite-style loops on small cases and == TFLite Micro on single-op
models; bad arguments are refused by both; the kernels build for Cortex-M and, built for
QEMU's Cortex-M3/M4 boards, give the numpy outputs there too."""
from __future__ import annotations

import ctypes as C
import subprocess
from dataclasses import replace

import numpy as np
import pytest

from mcuqp.errors import McuqpError
from mcuqp.ir import Padding, Requant
from mcuqp.ops.common import activation_range, conv_requant
from mcuqp.ops.conv2d import ConvAttrs, conv2d_s8, conv_output_hw
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8
from mcuqp.ops.fully_connected import FullyConnectedAttrs, fully_connected_s8
from mcuqp.ops.tflite_lowering import same_or_valid_padding
from mcuqp.quant import fixedpoint as fp
import hostlib
import prereq
from hostlib import ConvParams, FcParams, dims, ptr

from kernel_cases import (BAD_CONV_ATTRS, ERR, OK, Coverage, Layer, base_conv, c_conv, c_fc, conv_case, fc_case, i8,
                          random_padding, random_requant, run_layers_on_qemu, target_conv_layer, target_fc_layer)

MY_SOURCES = ["conv2d_s8.c", "depthwise_conv2d_s8.c", "fully_connected_s8.c"]
MAC_BUDGET = 1_500_000  # per random case, to keep the file fast


def channel_count(rng: np.random.Generator, hi: int = 64) -> int:
    return int(rng.choice([1, 2, 3, 4, 8, 16, 32, hi, int(rng.integers(1, hi + 1))]))


# ---- conv2d --------------------------------------------------------------------------


def random_conv(rng: np.random.Generator, depthwise: bool, rounding: str, cov: Coverage):
    kh = int(rng.choice([1, 1, 2, 3, 3, 5, 7]))
    kw = kh if rng.random() < 0.6 else int(rng.choice([1, 2, 3, 5]))
    dil = tuple(int(rng.choice([1, 1, 2])) for _ in range(2))
    stride = tuple(int(rng.choice([1, 1, 2, 3])) for _ in range(2))
    eff_h, eff_w = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    pad = random_padding(rng, eff_h, eff_w)
    h = int(rng.integers(max(1, eff_h - pad.top - pad.bottom), 15))
    w_ = int(rng.integers(max(1, eff_w - pad.left - pad.right), 15))
    n = int(rng.choice([1, 1, 2]))
    cin = channel_count(rng)
    dm = int(rng.integers(1, 4)) if depthwise else 1
    cout = cin * dm if depthwise else channel_count(rng)
    a = ConvAttrs(stride=stride, padding=pad, dilation=dil, depth_multiplier=dm)
    oh, ow = conv_output_hw(h, w_, kh, kw, a)
    taps = kh * kw * (1 if depthwise else cin)
    while n * oh * ow * cout * taps > MAC_BUDGET and cin > 1:
        cin = max(1, cin // 2)
        cout = cin * dm if depthwise else max(1, cout // 2)
        taps = kh * kw * (1 if depthwise else cin)
    return conv_case(rng, depthwise, a, (n, h, w_, cin), kh, kw, cout, taps, rounding, cov)


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_c_matches_numpy(runtime, depthwise):
    rng = np.random.default_rng(1234 + depthwise)
    cov = Coverage()
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    for case in range(200):
        x, w, bias, a = random_conv(rng, depthwise, "double", cov)
        want = ref(x, w, bias, a)
        rc, got = c_conv(runtime, depthwise, x, w, bias, a, want.shape, fill=i8(rng, want.shape))
        assert rc == OK, case
        assert np.array_equal(got, want), (case, x.shape, w.shape, a)
        cov.add_output(want, a.act_min, a.act_max)
    cov.check()


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_single_rounding_c_matches_numpy(runtime_single_rounding, depthwise):
    rng = np.random.default_rng(99 + depthwise)
    cov = Coverage()
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    for case in range(60):
        x, w, bias, a = random_conv(rng, depthwise, "single", cov)
        want = ref(x, w, bias, a, rounding="single")
        rc, got = c_conv(runtime_single_rounding, depthwise, x, w, bias, a, want.shape, fill=i8(rng, want.shape))
        assert rc == OK, case
        assert np.array_equal(got, want), (case, x.shape, w.shape, a)
    assert max(cov.shifts) <= 30


def test_rounding_modes_differ():
    """The rounding argument is honoured: on an exact-half case the modes disagree."""
    a = FullyConnectedAttrs(requant=Requant([1 << 30], [-1]))  # x * 0.25
    x, w = np.array([[5]], np.int8), np.array([[1]], np.int8)  # 1.25: double 2, single 1
    assert fully_connected_s8(x, w, None, a)[0, 0] == 2
    assert fully_connected_s8(x, w, None, a, rounding="single")[0, 0] == 1


# ---- fully connected ---------------------------------------------------------------


def random_fc(rng: np.random.Generator, rounding: str, cov: Coverage):
    b = int(rng.choice([1, 1, 2, 4]))
    cin = int(rng.choice([1, 2, 7, 16, 64, 250, 640, int(rng.integers(1, 700))]))
    cout = channel_count(rng)
    return fc_case(rng, b, cin, cout, rounding, cov)


def test_fc_c_matches_numpy(runtime, runtime_single_rounding):
    rng = np.random.default_rng(4321)
    cov = Coverage()
    for case in range(260):
        rounding = "double" if case < 200 else "single"
        lib = runtime if rounding == "double" else runtime_single_rounding
        x, w, bias, a = random_fc(rng, rounding, cov)
        want = fully_connected_s8(x, w, bias, a, rounding)
        rc, got = c_fc(lib, x, w, bias, a, fill=i8(rng, want.shape))
        assert rc == OK, case
        assert np.array_equal(got, want), (case, x.shape, w.shape, a)
        cov.add_output(want, a.act_min, a.act_max)
    cov.check()


# ---- numpy == literal TFLite reference loops ------------------------------------------


def tflite_requantize(acc: int, multiplier: int, shift: int, rounding: str = "double") -> int:
    """TFLite's int32 accumulator (two's complement) and its int32 result cast."""
    r = fp.multiply_by_quantized_multiplier(fp.wrap_int32(acc), multiplier, shift, rounding)
    return int(fp.wrap_int32(r))


def loop_conv(x, w, bias, a: ConvAttrs, depthwise: bool, out_hw: tuple[int, int], rounding: str) -> np.ndarray:
    """TFLite's reference ConvPerChannel / DepthwiseConvPerChannel, loop for loop, in Python ints."""
    n, h, wd, cin = x.shape
    kh, kw = w.shape[1:3]
    cout = w.shape[3] if depthwise else w.shape[0]
    y = np.zeros((n, *out_hw, cout), np.int8)
    for b in range(n):
        for oy in range(out_hw[0]):
            for ox in range(out_hw[1]):
                for oc in range(cout):
                    acc = 0
                    for fy in range(kh):
                        for fx in range(kw):
                            iy = oy * a.stride[0] - a.padding.top + a.dilation[0] * fy
                            ix = ox * a.stride[1] - a.padding.left + a.dilation[1] * fx
                            if not (0 <= iy < h and 0 <= ix < wd):
                                continue
                            if depthwise:
                                ic = oc // a.depth_multiplier
                                acc += int(w[0, fy, fx, oc]) * (int(x[b, iy, ix, ic]) + a.input_offset)
                            else:
                                for ic in range(cin):
                                    acc += int(w[oc, fy, fx, ic]) * (int(x[b, iy, ix, ic]) + a.input_offset)
                    if bias is not None:
                        acc += int(bias[oc])
                    q = 0 if a.requant.multiplier.size == 1 else oc
                    r = tflite_requantize(acc, int(a.requant.multiplier[q]), int(a.requant.shift[q]), rounding)
                    y[b, oy, ox, oc] = min(max(r + a.output_offset, a.act_min), a.act_max)
    return y


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_numpy_matches_reference_loops(depthwise):
    rng = np.random.default_rng(7 + depthwise)
    cov = Coverage()
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    checked = 0
    while checked < 25:
        x, w, bias, a = random_conv(rng, depthwise, "double", cov)
        if x.size * w.size > 40_000:
            continue
        for rounding in ("double", "single"):
            want = ref(x, w, bias, a, rounding)
            assert np.array_equal(loop_conv(x, w, bias, a, depthwise, want.shape[1:3], rounding), want), a
        checked += 1


def test_fc_numpy_matches_reference_loops():
    rng = np.random.default_rng(8)
    cov = Coverage()
    for _ in range(25):
        x, w, bias, a = random_fc(rng, "double", cov)
        x, w = x[:, :40], w[:8, :40]
        bias = None if bias is None else bias[:8]
        a.requant = Requant(a.requant.multiplier[:8], a.requant.shift[:8])
        want = fully_connected_s8(x, w, bias, a)
        for b in range(x.shape[0]):
            for oc in range(w.shape[0]):
                acc = sum((int(w[oc, i]) + a.filter_offset) * (int(x[b, i]) + a.input_offset)
                          for i in range(x.shape[1]))
                acc += 0 if bias is None else int(bias[oc])
                q = 0 if a.requant.multiplier.size == 1 else oc
                r = tflite_requantize(acc, int(a.requant.multiplier[q]), int(a.requant.shift[q]))
                assert want[b, oc] == min(max(r + a.output_offset, a.act_min), a.act_max)


# ---- hand-checked semantics ----------------------------------------------------------


def test_padding_taps_contribute_nothing(runtime):
    """A 3x3 all-ones filter over a 1x1 input of value 0 with zero point 10: only the centre
    tap is in bounds, so acc = 1 * (0 - 10) = -10 (padding would add 8 more * -10)."""
    x = np.zeros((1, 1, 1, 1), np.int8)
    w = np.ones((1, 3, 3, 1), np.int8)
    a = ConvAttrs(stride=(1, 1), padding=Padding(1, 1, 1, 1), input_offset=-10,
                  requant=Requant([1 << 30], [1]))  # x * 1.0
    assert conv2d_s8(x, w, None, a)[0, 0, 0, 0] == -10
    assert depthwise_conv2d_s8(x, w.reshape(1, 3, 3, 1), None, a)[0, 0, 0, 0] == -10
    rc, y = c_conv(runtime, False, x, w, None, a, (1, 1, 1, 1))
    assert rc == OK and y[0, 0, 0, 0] == -10
    rc, y = c_conv(runtime, True, x, w, None, a, (1, 1, 1, 1))
    assert rc == OK and y[0, 0, 0, 0] == -10


def test_depth_multiplier_channel_order(runtime):
    """Output channel oc reads input channel oc // depth_multiplier."""
    x = np.array([1, 2], np.int8).reshape(1, 1, 1, 2)
    w = np.array([1, 10, 100, 3, 30, 120], np.int8).reshape(1, 1, 1, 6)
    a = ConvAttrs(stride=(1, 1), padding=Padding(), depth_multiplier=3, requant=Requant([1 << 30], [1]))
    want = [1, 10, 100, 6, 60, 127]
    assert depthwise_conv2d_s8(x, w, None, a).ravel().tolist() == want
    rc, y = c_conv(runtime, True, x, w, None, a, (1, 1, 1, 6))
    assert rc == OK and y.ravel().tolist() == want


def test_accumulator_wraps_like_int32(runtime):
    """acc = 100 * 100 + (2^31 - 1) wraps to -2^31 + 9999, as TFLite's int32 add does on
    any two's-complement target; C and numpy agree (-1023.99 clamps to -128, not 127)."""
    x = np.array([[100]], np.int8)
    w = np.array([[100]], np.int8)
    bias = np.array([(1 << 31) - 1], np.int32)
    a = FullyConnectedAttrs(requant=Requant([1 << 30], [-20]))
    assert fully_connected_s8(x, w, bias, a)[0, 0] == -128
    rc, y = c_fc(runtime, x, w, bias, a)
    assert rc == OK and y[0, 0] == -128
    ca = ConvAttrs(stride=(1, 1), padding=Padding(), requant=a.requant)
    x4, w4 = x.reshape(1, 1, 1, 1), w.reshape(1, 1, 1, 1)
    assert conv2d_s8(x4, w4, bias, ca)[0, 0, 0, 0] == -128
    for depthwise in (False, True):
        rc, y = c_conv(runtime, depthwise, x4, w4, bias, ca, (1, 1, 1, 1))
        assert rc == OK and y[0, 0, 0, 0] == -128


def test_outputs_far_outside_the_input_hold_the_bias(runtime):
    """Output sizes beyond what the input covers (all taps in the padding) read nothing."""
    rng = np.random.default_rng(3)
    x = i8(rng, (1, 2, 2, 3))
    w = i8(rng, (4, 2, 2, 3))
    bias = np.array([-300, -5, 7, 300], np.int32)
    a = ConvAttrs(stride=(1, 1), padding=Padding(3, 3, 3, 3), requant=Requant([1 << 30], [0]), output_offset=3)
    want = conv2d_s8(x, w, bias, a)
    assert want.shape == (1, 7, 7, 4)
    assert want[0, 0, 0].tolist() == [-128, 1, 7, 127]  # bias * 0.5 + 3; SRDHM rounds -2.5 to -2
    rc, got = c_conv(runtime, False, x, w, bias, a, want.shape)
    assert rc == OK and np.array_equal(got, want)


# ---- numpy == TFLite Micro -----------------------------------------------------------

ACTIVATIONS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]


def _tflm_conv_case(rng: np.random.Generator, depthwise: bool):
    from tflite_builder import ModelBuilder

    kh, kw = (int(v) for v in rng.choice([1, 2, 3, 5], 2))
    sh, sw = (int(v) for v in rng.integers(1, 4, 2))
    dh, dw = (int(v) for v in rng.choice([1, 1, 2], 2))
    same = bool(rng.random() < 0.6)
    h = int(rng.integers(dh * (kh - 1) + 1, 13))
    w_ = int(rng.integers(dw * (kw - 1) + 1, 13))
    cin = int(rng.integers(1, 17))
    dm = int(rng.integers(1, 4)) if depthwise else 1
    cout = cin * dm if depthwise else int(rng.integers(1, 17))
    oh, top, bottom = same_or_valid_padding(same, h, kh, sh, dh)
    ow, left, right = same_or_valid_padding(same, w_, kw, sw, dw)
    x = i8(rng, (1, h, w_, cin))
    w = i8(rng, (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin), -127, 127)
    in_s = float(np.float32(10 ** rng.uniform(-3, 0)))
    taps = kh * kw * (1 if depthwise else cin)
    w_s = (10 ** rng.uniform(-3, -1, cout)).astype(np.float32)
    out_s = float(np.float32(in_s * float(np.median(w_s)) * np.sqrt(taps) * 74 * 74 / 40 * 2 ** rng.uniform(-2, 2)))
    in_z, out_z = (int(v) for v in rng.integers(-128, 128, 2))
    bias = rng.integers(-20000, 20000, cout).astype(np.int32)
    act = str(rng.choice(ACTIVATIONS))

    b = ModelBuilder()
    xi = b.add_input("x", x.shape, scale=in_s, zero_point=in_z)
    wi = b.add_constant("w", w, scale=w_s, quantized_dimension=3 if depthwise else 0)
    bi = b.add_constant("b", bias, scale=(np.float32(in_s) * w_s).astype(np.float32), quantized_dimension=0)
    yi = b.add_tensor("y", (1, oh, ow, cout), scale=out_s, zero_point=out_z)
    opts = {"padding": "SAME" if same else "VALID", "stride_h": sh, "stride_w": sw, "dilation_h_factor": dh,
            "dilation_w_factor": dw, "fused_activation_function": act}
    if depthwise:
        opts["depth_multiplier"] = dm
    b.add_operator("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", [xi, wi, bi], [yi], opts)
    b.mark_output(yi)
    lo, hi = activation_range(act.lower(), out_s, out_z)
    a = ConvAttrs(stride=(sh, sw), padding=Padding(top, bottom, left, right), dilation=(dh, dw), depth_multiplier=dm,
                  input_offset=-in_z, output_offset=out_z, requant=conv_requant(in_s, w_s, out_s), act_min=lo,
                  act_max=hi)
    return b.build(), x, w, bias, a


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_numpy_matches_tflm(depthwise):
    prereq.require_module("tflite_micro")
    from tflite_builder import run_tflm

    rng = np.random.default_rng(2024 + depthwise)
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    for case in range(30):
        model, x, w, bias, a = _tflm_conv_case(rng, depthwise)
        (got,) = run_tflm(model, [x])
        want = ref(x, w, bias, a)
        assert np.array_equal(got, want), (case, a)


def test_fc_numpy_matches_tflm():
    prereq.require_module("tflite_micro")
    from tflite_builder import ModelBuilder, run_tflm

    rng = np.random.default_rng(77)
    for case in range(30):
        batches, cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 300)), int(rng.integers(1, 40))
        x = i8(rng, (batches, cin))
        w = i8(rng, (cout, cin), -127, 127)
        in_s = float(np.float32(10 ** rng.uniform(-3, 0)))
        w_s = float(np.float32(10 ** rng.uniform(-3, -1)))
        out_s = float(np.float32(in_s * w_s * np.sqrt(cin) * 74 * 74 / 40 * 2 ** rng.uniform(-2, 2)))
        in_z, out_z = (int(v) for v in rng.integers(-128, 128, 2))
        bias = rng.integers(-20000, 20000, cout).astype(np.int32) if case % 4 else None
        act = str(rng.choice(ACTIVATIONS))
        b = ModelBuilder()
        xi = b.add_input("x", x.shape, scale=in_s, zero_point=in_z)
        wi = b.add_constant("w", w, scale=w_s)
        bi = -1 if bias is None else b.add_constant("b", bias, scale=float(np.float32(in_s) * np.float32(w_s)))
        yi = b.add_tensor("y", (batches, cout), scale=out_s, zero_point=out_z)
        b.add_operator("FULLY_CONNECTED", [xi, wi, bi], [yi], {"fused_activation_function": act})
        b.mark_output(yi)
        (got,) = run_tflm(b.build(), [x])
        lo, hi = activation_range(act.lower(), out_s, out_z)
        a = FullyConnectedAttrs(input_offset=-in_z, output_offset=out_z, requant=conv_requant(in_s, w_s, out_s),
                                act_min=lo, act_max=hi)
        assert np.array_equal(got, fully_connected_s8(x, w, bias, a)), case


# ---- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
@pytest.mark.parametrize("bad", sorted(BAD_CONV_ATTRS))
def test_conv_rejects_bad_params(runtime, depthwise, bad):
    x, w, a = base_conv(depthwise)
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    bad_a = replace(a, **BAD_CONV_ATTRS[bad])
    with pytest.raises(McuqpError) as e:
        ref(x, w, None, bad_a)
    assert "\n" not in str(e.value)
    fill = np.full((1, 5, 5, 4), 55, np.int8)
    rc, y = c_conv(runtime, depthwise, x, w, None, bad_a, fill.shape, fill=fill)
    assert rc == ERR and np.all(y == 55)  # refused before writing anything


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_rejects_mismatched_shapes(runtime, depthwise):
    x, w, a = base_conv(depthwise)
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    good = (1, 5, 5, 4)
    assert c_conv(runtime, depthwise, x, w, None, a, good)[0] == OK
    # input channels that do not match the weights
    with pytest.raises(McuqpError):
        ref(x[..., :1], w, None, a)
    assert c_conv(runtime, depthwise, np.ascontiguousarray(x[..., :1]), w, None, a, good)[0] == ERR
    # output channels, batch
    assert c_conv(runtime, depthwise, x, w, None, a, (1, 5, 5, 3))[0] == ERR
    assert c_conv(runtime, depthwise, x, w, None, a, (2, 5, 5, 4))[0] == ERR
    with pytest.raises(McuqpError):
        ref(x, w, np.zeros(3, np.int32), a)  # bias of the wrong length
    with pytest.raises(McuqpError):
        ref(x.astype(np.int16), w, None, a)
    with pytest.raises(McuqpError):
        ref(x, w, None, replace(a, padding=Padding()), rounding="nearest")
    with pytest.raises(McuqpError):
        ref(x[:, :1, :1], w, None, replace(a, padding=Padding()))  # filter larger than the input
    if depthwise:
        with pytest.raises(McuqpError):
            ref(x, w, None, replace(a, depth_multiplier=3))
        fill = np.zeros(good, np.int8)
        assert c_conv(runtime, True, x, w, None, replace(a, depth_multiplier=3), good, fill=fill)[0] == ERR
        w2 = np.ascontiguousarray(np.concatenate([w, w]))  # (2, kh, kw, c): not 1HWC
        assert c_conv(runtime, True, x, w2, None, a, good)[0] == ERR


def test_kernels_reject_null_pointers(runtime):
    x, w, a = base_conv(False)
    y = np.zeros((1, 5, 5, 4), np.int8)
    p = ConvParams(stride_h=1, stride_w=1, dilation_h=1, dilation_w=1, depth_multiplier=1, act_min=-128, act_max=127)
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    d_in, d_w, d_out = dims(x.shape), dims(w.shape), dims(y.shape)
    args = [C.byref(p), C.byref(rq), C.byref(d_in), ptr(x), C.byref(d_w), ptr(w), None, C.byref(d_out), ptr(y)]
    assert runtime.mcuqp_conv2d_s8(*args) == OK
    for i in (0, 1, 2, 3, 4, 5, 7, 8):
        assert runtime.mcuqp_conv2d_s8(*[None if j == i else v for j, v in enumerate(args)]) == ERR, i
    fp_ = FcParams(0, 0, 0, -128, 127)
    fc_args = [C.byref(fp_), C.byref(rq), C.c_int32(1), C.c_int32(4), ptr(x), C.c_int32(4), ptr(x), None, ptr(y)]
    assert runtime.mcuqp_fully_connected_s8(*fc_args) == OK
    for i in (0, 1, 4, 6, 8):
        assert runtime.mcuqp_fully_connected_s8(*[None if j == i else v for j, v in enumerate(fc_args)]) == ERR, i


BAD_FC_ATTRS = {
    "input_offset": {"input_offset": -128},
    "filter_offset": {"filter_offset": 200},
    "output_offset": {"output_offset": -129},
    "clamp": {"act_min": 5, "act_max": 4},
    "requant_count": {"requant": Requant([1 << 30] * 2, [0] * 2)},
    "shift": {"requant": Requant([1 << 30], [-40])},
}


@pytest.mark.parametrize("bad", sorted(BAD_FC_ATTRS))
def test_fc_rejects_bad_params(runtime, bad):
    rng = np.random.default_rng(6)
    x, w = i8(rng, (2, 10)), i8(rng, (3, 10))
    a = replace(FullyConnectedAttrs(requant=Requant([1 << 30], [-5])), **BAD_FC_ATTRS[bad])
    with pytest.raises(McuqpError) as e:
        fully_connected_s8(x, w, None, a)
    assert "\n" not in str(e.value)
    fill = np.full((2, 3), 55, np.int8)
    rc, y = c_fc(runtime, x, w, None, a, fill=fill)
    assert rc == ERR and np.all(y == 55)


def test_fc_rejects_bad_shapes(runtime):
    rng = np.random.default_rng(6)
    x, w = i8(rng, (2, 10)), i8(rng, (3, 10))
    a = FullyConnectedAttrs(requant=Requant([1 << 30], [-5]))
    with pytest.raises(McuqpError):
        fully_connected_s8(x[:, :9], w, None, a)
    with pytest.raises(McuqpError):
        fully_connected_s8(x.reshape(2, 10, 1), w, None, a)
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    p = FcParams(0, 0, 0, -128, 127)
    y = np.zeros((2, 3), np.int8)
    for batches, in_ch, out_ch in ((0, 10, 3), (2, 0, 3), (2, 10, 0), (-1, 10, 3)):
        rc = runtime.mcuqp_fully_connected_s8(C.byref(p), C.byref(rq), C.c_int32(batches), C.c_int32(in_ch), ptr(x),
                                              C.c_int32(out_ch), ptr(w), None, ptr(y))
        assert rc == ERR, (batches, in_ch, out_ch)


# ---- the kernels build for Cortex-M ------------------------------------------------


@pytest.mark.tools("arm-none-eabi-gcc")
@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0plus", "cortex-m55"])
def test_kernels_compile_for_cortex_m(tmp_path, cpu):
    for name in MY_SOURCES:
        r = subprocess.run(
            ["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c99",
             "-I", str(hostlib.RUNTIME_DIR / "include"), "-c", str(hostlib.RUNTIME_DIR / "src" / name),
             "-o", str(tmp_path / f"{name}.o")],
            capture_output=True, text=True,
        )
        assert r.returncode == 0, r.stderr


# ---- on the target: QEMU Cortex-M == numpy ---------------------------------------------


def _target_layers(rounding: str) -> list[Layer]:
    """MLPerf-Tiny-like layers (3x3 and pointwise convs, depthwise, FC) plus odd ones."""
    rng = np.random.default_rng(31)
    cov = Coverage()

    def conv(*args, **kw) -> Layer:
        return target_conv_layer(rng, lambda cout, std: random_requant(rng, cout, std, rounding, cov), *args, **kw)

    def fc(cin, cout, w_zp=0) -> Layer:
        return target_fc_layer(rng, rounding, cin, cout, w_zp)

    return [
        conv("conv2d", (1, 12, 12, 16), 3, 3, 16, pad=Padding(1, 1, 1, 1)),
        conv("depthwise", (1, 12, 12, 32), 3, 3, 32, pad=Padding(1, 1, 1, 1)),
        conv("conv2d", (1, 12, 12, 32), 1, 1, 32),
        conv("conv2d", (1, 16, 16, 3), 3, 3, 8, stride=(2, 2), pad=Padding(0, 1, 0, 1)),
        conv("depthwise", (1, 9, 11, 6), 3, 2, 12, stride=(2, 1), pad=Padding(2, 1, 0, 2), dil=(2, 2), dm=2),
        conv("conv2d", (2, 7, 6, 5), 5, 3, 7, stride=(1, 3), pad=Padding(3, 2, 1, 0), dil=(1, 2)),
        fc(256, 32),
        fc(100, 10, w_zp=17),
    ]


@pytest.mark.qemu
@pytest.mark.parametrize("board, rounding", [("mps2-an386", "double"), ("mps2-an385", "single")])
def test_kernels_on_qemu_match_numpy(tmp_path, board, rounding):
    """The kernels built for the board (Cortex-M4 / M3) give the numpy outputs bit for bit,
    and the executed instructions per MAC of the common layers stay where they were
    measured (QEMU counts are deterministic; the bounds leave ~25% headroom)."""
    got, want, per_mac = run_layers_on_qemu(tmp_path, board, rounding, _target_layers(rounding),
                                            [hostlib.RUNTIME_DIR / "src" / s for s in MY_SOURCES])
    assert np.array_equal(got, want)
    # 3x3 conv 16->16, 3x3 depthwise 32, pointwise 32->32, FC 256->32
    assert per_mac[0] < 4.0 and per_mac[1] < 17.0 and per_mac[2] < 6.0 and per_mac[6] < 6.0, per_mac
