"""*_get_buffer_size(): the portable kernels need no scratch, the DSP variants report the
working buffers they keep on their stack today (so the arena can take them over), and both
refuse missing or out-of-range dims."""
from __future__ import annotations

import ctypes as C
import os
import shutil

import pytest

from hostlib import Dims, dims
from mcuqp.target import build
from mcuqp.target.boards import load_board
from mcuqp.target.footprint import read_stack_usage
from test_kernels_dsp import DSP, _build

ERR = -1
DSP_BYTES = {"conv2d": 1408, "depthwise_conv2d": 1024, "fully_connected": 512}


def _sizes(lib) -> dict[str, int]:
    for name in ("conv2d", "depthwise_conv2d"):
        getattr(lib, f"mcuqp_{name}_s8_get_buffer_size").argtypes = [C.POINTER(Dims), C.POINTER(Dims)]
    conv_in, conv_f = dims((1, 49, 10, 64)), dims((64, 3, 3, 64))
    return {
        "conv2d": lib.mcuqp_conv2d_s8_get_buffer_size(C.byref(conv_in), C.byref(conv_f)),
        "depthwise_conv2d": lib.mcuqp_depthwise_conv2d_s8_get_buffer_size(C.byref(conv_in), C.byref(dims((1, 3, 3, 64)))),
        "fully_connected": lib.mcuqp_fully_connected_s8_get_buffer_size(C.c_int32(250)),
    }


def _refusals(lib) -> list[int]:
    good, zero, huge = dims((1, 8, 8, 4)), dims((1, 0, 8, 4)), dims((1, 8, 1 << 15, 4))
    out = []
    for name in ("conv2d", "depthwise_conv2d"):
        fn = getattr(lib, f"mcuqp_{name}_s8_get_buffer_size")
        out += [fn(None, C.byref(good)), fn(C.byref(good), None), fn(C.byref(zero), C.byref(good)),
                fn(C.byref(good), C.byref(huge))]
    return out + [lib.mcuqp_fully_connected_s8_get_buffer_size(C.c_int32(0))]


def test_portable_kernels_need_no_scratch(runtime):
    assert _sizes(runtime) == dict.fromkeys(DSP_BYTES, 0)
    assert _refusals(runtime) == [ERR] * 9


def test_dsp_kernels_report_their_working_buffers():
    lib = C.CDLL(str(_build(())))
    assert _sizes(lib) == DSP_BYTES
    assert _refusals(lib) == [ERR] * 9


def test_dsp_buffers_are_the_bulk_of_the_stack_frames(tmp_path):
    """On Cortex-M4 the reported bytes sit inside the kernel's own frame (-fstack-usage) today."""
    if shutil.which(build.CC) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{build.CC} not installed")
        pytest.skip(f"{build.CC} not installed (make toolchain)")
    objs = build.compile_objects(sorted(DSP.glob("*.c")), [], load_board("mps2-an386"), tmp_path)
    frames = {}
    for o in objs:
        frames.update(read_stack_usage(o.with_suffix(".su")))
    holder = {"conv2d": "mcuqp_conv2d_s8", "depthwise_conv2d": "mcuqp_depthwise_conv2d_s8", "fully_connected": "fc_row"}
    for name, n in DSP_BYTES.items():
        frame = frames[holder[name]]
        assert n <= frame < n + 600, f"{holder[name]}: frame {frame} B, buffers {n} B"
