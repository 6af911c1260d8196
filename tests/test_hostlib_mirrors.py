"""The ctypes mirrors of the C params structs agree with runtime_c/include/mcuqp_nn.h, and
the compiled sizeof/offsetof probe that checks them catches a misaligned mirror."""
from __future__ import annotations

import ctypes as C

import hostlib


def test_every_registered_mirror_matches_the_header():
    assert {"mcuqp_dims", "mcuqp_requant", "mcuqp_conv_params", "mcuqp_fc_params"} <= set(hostlib.MIRRORS)
    assert hostlib.mirror_mismatches(hostlib.MIRRORS) == []


def test_the_probe_catches_a_reordered_missing_or_unknown_field():
    conv = hostlib.ConvParams._fields_

    class Swapped(C.Structure):
        _fields_ = [("h", C.c_int32), ("n", C.c_int32), ("w", C.c_int32), ("c", C.c_int32)]

    class Short(C.Structure):  # a field added in C that the mirror lacks
        _fields_ = [f for f in conv if f[0] != "dilation_w"]

    class Unknown(C.Structure):
        _fields_ = [*conv, ("no_such_field", C.c_int32)]

    swapped = hostlib.mirror_mismatches({"mcuqp_dims": Swapped})
    assert swapped[0] == "mcuqp_dims.h (offset, size): C 4 4, ctypes 0 4"
    short = hostlib.mirror_mismatches({"mcuqp_conv_params": Short})
    assert short[0].startswith("sizeof(mcuqp_conv_params): C 44, ctypes 40")
    assert any(m.startswith("mcuqp_conv_params.depth_multiplier") for m in short)
    assert "no_such_field" in hostlib.mirror_mismatches({"mcuqp_conv_params": Unknown})[0]
