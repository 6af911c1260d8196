"""Generation-time work for the kernels: the fully connected input offset folded into the
bias (exact, int32-checked), and the requantization facts (`mcuqp_requant.flags`) that let
kernels skip checking every channel on every call."""
from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

from mcuqp.codegen import rqflags
from mcuqp.codegen.rqflags import requant_flags
from mcuqp.ops.fully_connected import FullyConnectedAttrs, folded_bias, fully_connected_s8
import hostlib
from hostlib import ptr
from kernel_cases import fc_case, random_requant


@pytest.mark.parametrize("seed", range(6))
def test_folded_bias_gives_the_same_accumulators(seed):
    rng = np.random.default_rng(seed)
    cout, cin = int(rng.integers(1, 40)), int(rng.integers(1, 700))
    w = rng.integers(-128, 128, (cout, cin), dtype=np.int8)
    x = rng.integers(-128, 128, (3, cin), dtype=np.int8)
    bias = None if seed % 3 == 0 else rng.integers(-(1 << 20), 1 << 20, cout).astype(np.int32)
    io, fo = int(rng.integers(-127, 129)), (0 if seed % 2 else int(rng.integers(-127, 129)))
    folded = folded_bias(w, bias, io, fo)
    assert folded is not None and folded.dtype == np.int32
    want = (x.astype(np.int64) + io) @ (w.astype(np.int64) + fo).T + (0 if bias is None else bias.astype(np.int64))
    got = x.astype(np.int64) @ (w.astype(np.int64) + fo).T + folded.astype(np.int64)
    assert np.array_equal(got, want)
    # and the kernel contract: the layer with input_offset 0 and the folded bias is the same layer
    a = FullyConnectedAttrs(input_offset=io, filter_offset=fo, output_offset=-3,
                            requant=random_requant(rng, cout, 2000.0, "double"), act_min=-128, act_max=127)
    b = FullyConnectedAttrs(**{**a.__dict__, "input_offset": 0})
    assert np.array_equal(fully_connected_s8(x, w, bias, a), fully_connected_s8(x, w, folded, b))


def test_fold_declines_what_leaves_int32_and_offset_zero():
    w = np.full((2, 4000), 127, np.int8)
    bias = np.array([(1 << 31) - 1, 0], np.int32)
    assert folded_bias(w, bias, 128, 0) is None  # 2^31 - 1 + 128 * 508,000 overflows
    assert folded_bias(w, None, 128, 0) is not None  # 65,024,000 fits
    assert folded_bias(w, bias, 0, 0) is None  # nothing to fold


def test_requant_flags():
    assert requant_flags([1 << 30], [-5]) == rqflags.SHIFTS_OK | rqflags.NOMIN | rqflags.HIGHWORD
    assert requant_flags([1 << 30, 0], [-5, 3]) == rqflags.SHIFTS_OK | rqflags.NOMIN | rqflags.HIGHWORD
    assert requant_flags([1 << 30, 1 << 30], [-5, -1]) == rqflags.SHIFTS_OK | rqflags.NOMIN
    assert requant_flags([-(1 << 31)], [-5]) == rqflags.SHIFTS_OK
    assert requant_flags([1 << 30], [31]) == rqflags.NOMIN
    assert requant_flags([1 << 30], [-32]) == rqflags.NOMIN | rqflags.HIGHWORD


@pytest.mark.parametrize("which", ["portable", "dsp"])
def test_flagged_requant_gives_the_numpy_outputs(runtime, which):
    """A generated struct (flags set) and a hand-built one (flags 0) compute the same layer,
    the numpy twin's, on the portable kernel and the DSP kernel's host twin."""
    from test_kernels_dsp import _build

    lib = runtime if which == "portable" else C.CDLL(str(_build(())))
    rng = np.random.default_rng(4)
    flagged = 0
    for case in range(60):
        batches, cin, cout = int(rng.integers(1, 3)), int(rng.integers(1, 300)), int(rng.integers(1, 20))
        x, w, bias, a = fc_case(rng, batches, cin, cout, "double")
        want = fully_connected_s8(x, w, bias, a)
        flags = requant_flags(a.requant.multiplier, a.requant.shift)
        flagged += flags == rqflags.SHIFTS_OK | rqflags.NOMIN | rqflags.HIGHWORD
        for f in (0, flags):
            rq, keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
            rq.flags = f
            p = hostlib.FcParams(a.input_offset, a.filter_offset, a.output_offset, a.act_min, a.act_max)
            y = np.zeros((batches, cout), np.int8)
            b = None if bias is None else ptr(bias, C.c_int32)
            rc = lib.mcuqp_fully_connected_s8(C.byref(p), C.byref(rq), C.c_int32(batches), C.c_int32(cin), ptr(x),
                                              C.c_int32(cout), ptr(w), b, ptr(y))
            assert rc == 0 and np.array_equal(y, want), (case, f)
    assert flagged >= 20  # the flags' fast paths were taken
