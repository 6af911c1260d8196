"""DSP-extension variants of the in-place kernels (runtime_c/src/dsp/*_inplace.c): built for
the host with the C twins of the DSP instructions they equal the numpy reference (and the
regular kernels) bit for bit on the random cases of the portable in-place tests, in both
rounding modes, writing nothing outside the data and the scratch; on QEMU (Cortex-M4 with
the real instructions, Cortex-M3 with the twins) they give the numpy outputs."""
from __future__ import annotations

import ctypes as C

import numpy as np
import pytest

import hostlib
from test_kernels_conv_inplace import check_cases as check_pointwise
from test_kernels_depthwise_inplace import check_cases as check_depthwise
from test_kernels_depthwise_inplace import test_refuses_shapes_it_cannot_run_in_place as check_depthwise_refusals
from test_kernels_dsp import _build
from test_kernels_mve import _inplace_layers, inplace_call, run_calls_on_qemu

DSP = hostlib.RUNTIME_DIR / "src" / "dsp"
INPLACE_SOURCES = ["conv2d_1x1_s8_inplace.c", "depthwise_conv2d_s8_inplace.c"]


@pytest.fixture(scope="module")
def dsp():
    return C.CDLL(str(_build(())))


@pytest.fixture(scope="module")
def dsp_single():
    return C.CDLL(str(_build(("MCUQP_SINGLE_ROUNDING=1",))))


def test_dsp_inplace_variants_are_selected():
    from mcuqp.ops import registry
    from mcuqp.target.boards import load_board

    for kind in ("conv2d", "depthwise_conv2d"):
        d = registry.get(kind)
        m4 = registry.select_kernel(d, load_board("mps2-an386").features, inplace=True)
        m3 = registry.select_kernel(d, load_board("mps2-an385").features, inplace=True)
        m55 = registry.select_kernel(d, load_board("mps3-an547").features, inplace=True)
        assert m4.path.parent == DSP and m4.path.name in INPLACE_SOURCES
        assert m3.path == hostlib.RUNTIME_DIR / "src" / m4.path.name
        assert m55.path.parent.name == "mve" and m55.path.name == m4.path.name


def test_dsp_pointwise_inplace_matches_numpy(dsp, dsp_single):
    check_pointwise(dsp, "double", seed=3031, cases=150)
    check_pointwise(dsp_single, "single", seed=3032, cases=80)


def test_dsp_depthwise_inplace_matches_numpy(dsp, dsp_single):
    check_depthwise(dsp, "double", seed=3033, cases=200)
    check_depthwise(dsp_single, "single", seed=3034, cases=80)
    check_depthwise_refusals(dsp)


@pytest.mark.qemu
@pytest.mark.parametrize("board, rounding", [("mps2-an386", "double"), ("mps2-an386", "single"),
                                             ("mps2-an385", "double")])
def test_dsp_inplace_on_qemu(tmp_path, board, rounding):
    rng = np.random.default_rng(81 if rounding == "double" else 82)
    layers = [(ly, s) for ly, s in _inplace_layers(rng, rounding)
              if ly.kind != "depthwise" or "depthwise_conv2d_s8_inplace.c" in INPLACE_SOURCES]
    calls = [inplace_call(ly, rng, rounding, scratch) for ly, scratch in layers]
    srcs = [DSP / n for n in INPLACE_SOURCES]
    if "depthwise_conv2d_s8_inplace.c" not in INPLACE_SOURCES:
        srcs.append(hostlib.RUNTIME_DIR / "src" / "depthwise_conv2d_s8_inplace.c")
    got, want = run_calls_on_qemu(tmp_path, rounding, calls, srcs, board=board)
    assert np.array_equal(got, want)
