"""Cortex-M DSP-extension kernels (runtime_c/src/dsp/): the same optimised C, built for the
host with the exact C twins of the DSP instructions (runtime_c/include/mcuqp_intrinsics.h),
equals the numpy reference and the portable kernels bit for bit over randomized shapes,
paths and quantization in both rounding modes; the intrinsic twins and the fast
requantization are checked on their own; the files build warning-free for every board;
on QEMU (Cortex-M4 / M55 with the real instructions, Cortex-M3 with the twins) the
kernels give the numpy outputs and a small model using them verifies bit-exact."""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mcuqp.ir import Padding, Requant
from mcuqp.ops.common import conv_requant
from mcuqp.ops.conv2d import ConvAttrs, conv2d_s8, conv_output_hw
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8
from mcuqp.ops.fully_connected import FullyConnectedAttrs, fully_connected_s8
from mcuqp.quant import fixedpoint as fp
import hostlib
import prereq
from hostlib import ConvParams, FcParams, dims, ptr

from kernel_cases import (BAD_CONV_ATTRS, ERR, INT32_MAX, INT32_MIN, OK, Layer, acc_spread, base_conv, c_conv, c_fc,
                          conv_case, fc_case, i8, random_padding, random_requant, run_layers_on_qemu, target_conv_layer,
                          target_fc_layer)

SRC = hostlib.RUNTIME_DIR / "src"
DSP = SRC / "dsp"
INCLUDE = hostlib.RUNTIME_DIR / "include"
DSP_SOURCES = ["conv2d_s8.c", "depthwise_conv2d_s8.c", "fully_connected_s8.c"]

# Test-only exports of the header's inline helpers (bulk, for speed through ctypes).
SHIM = r"""
#include "mcuqp_intrinsics.h"

#define MAP1(name, expr) \
    void t_##name(const uint32_t *a, int32_t n, uint32_t *out) \
    { int32_t i; for (i = 0; i < n; ++i) { const uint32_t x = a[i]; out[i] = (uint32_t)(expr); } }
#define MAP2(name, expr) \
    void t_##name(const uint32_t *a, const uint32_t *b, int32_t n, uint32_t *out) \
    { int32_t i; for (i = 0; i < n; ++i) { const uint32_t x = a[i], y = b[i]; out[i] = (uint32_t)(expr); } }
#define MAP3(name, expr) \
    void t_##name(const uint32_t *a, const uint32_t *b, const uint32_t *c, int32_t n, uint32_t *out) \
    { int32_t i; for (i = 0; i < n; ++i) { const uint32_t x = a[i], y = b[i], z = c[i]; \
                                           out[i] = (uint32_t)(expr); } }

MAP1(sxtb16, mcuqp_sxtb16(x))
MAP1(sxtb16_ror8, mcuqp_sxtb16_ror8(x))
MAP2(sxtab16, mcuqp_sxtab16(x, y))
MAP2(sxtab16_ror8, mcuqp_sxtab16_ror8(x, y))
MAP3(smlad, mcuqp_smlad(x, y, (int32_t)z))
MAP3(smlabb, mcuqp_smlabb(x, y, (int32_t)z))
MAP3(smlatt, mcuqp_smlatt(x, y, (int32_t)z))
MAP2(qadd, mcuqp_qadd((int32_t)x, (int32_t)y))
MAP1(ssat8, mcuqp_ssat8((int32_t)x))
MAP1(read_s8x4, mcuqp_read_s8x4((const int8_t *)&a[i]) + 0u * x)
MAP3(requantize, mcuqp_requantize((int32_t)x, (int32_t)y, (int32_t)z))
MAP3(requantize_nomin, mcuqp_requantize_nomin((int32_t)x, (int32_t)y, (int32_t)z))

static int32_t rq_prepared(int32_t x, int32_t m, int32_t s)
{
    const mcuqp_rq q = mcuqp_rq_prepare(m, s);
    return mcuqp_rq_apply(x, &q);
}
MAP3(rq_apply, rq_prepared((int32_t)x, (int32_t)y, (int32_t)z))
"""


def _build(defines: tuple[str, ...]) -> Path:
    """dsp/*.c plus the portable kernels they do not replace plus the shim, as one .so."""
    dsp = sorted(DSP.glob("*.c"))
    portable = [p for p in sorted(SRC.glob("*.c")) if p.name not in {d.name for d in dsp}]
    cache = Path(os.environ.get("MCUQP_CACHE", Path(tempfile.gettempdir()) / "mcuqp-cache"))
    cache.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256(SHIM.encode())
    for p in dsp + portable + sorted(INCLUDE.glob("*.h")):
        h.update(str(p).encode())
        h.update(p.read_bytes())
    h.update(" ".join(hostlib.HOST_CFLAGS + list(defines)).encode())
    out = cache / f"libmcuqp-dsp-{h.hexdigest()[:16]}.so"
    if not out.exists():
        shim = cache / f"dsp-shim-{os.getpid()}.c"
        shim.write_text(SHIM)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        cmd = ["gcc", *hostlib.HOST_CFLAGS, *[f"-D{d}" for d in defines], "-shared", "-I", str(INCLUDE),
               *map(str, dsp + portable), str(shim), "-o", str(tmp)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        shim.unlink(missing_ok=True)
        assert r.returncode == 0, r.stderr
        os.replace(tmp, out)
    return out


@pytest.fixture(scope="module")
def dsp():
    return C.CDLL(str(_build(())))


@pytest.fixture(scope="module")
def dsp_single():
    return C.CDLL(str(_build(("MCUQP_SINGLE_ROUNDING=1",))))


def test_dsp_variants_exist_and_are_selected():
    from mcuqp.ir import OpKind
    from mcuqp.ops import registry
    from mcuqp.target.boards import load_board

    for name in DSP_SOURCES:
        assert (DSP / name).is_file(), name
    for board in ("mps2-an386", "mps2-an500", "mps3-an547"):
        feats = load_board(board).features
        for kind in (OpKind.CONV2D, OpKind.DEPTHWISE_CONV2D, OpKind.FULLY_CONNECTED):
            src = registry.select_kernel(registry.get(kind), feats).path
            assert src.parent.name in ("dsp", "mve"), (board, kind, src)
    assert registry.select_kernel(registry.get(OpKind.CONV2D), load_board("mps2-an385").features).path.parent == SRC


# ---- the intrinsic twins and the fast requantization -------------------------------------


def _u32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64) & 0xFFFFFFFF, dtype=np.uint32)


def _call(lib, name: str, *args: np.ndarray) -> np.ndarray:
    arrs = [_u32(a) for a in args]
    out = np.zeros(arrs[0].size, np.uint32)
    getattr(lib, f"t_{name}")(*[ptr(a, C.c_uint32) for a in arrs], C.c_int32(out.size), ptr(out, C.c_uint32))
    return out.astype(np.int64)


def _s(x: np.ndarray, bits: int) -> np.ndarray:
    """Signed view of the low `bits` bits."""
    x = np.asarray(x, np.int64) & ((1 << bits) - 1)
    return np.where(x >= 1 << (bits - 1), x - (1 << bits), x)


def _lanes8(x):
    return [_s(np.asarray(x, np.int64) >> (8 * i), 8) for i in range(4)]


def _lanes16(x):
    return _s(x, 16), _s(np.asarray(x, np.int64) >> 16, 16)


def _pack16(lo, hi):
    return (np.asarray(lo, np.int64) & 0xFFFF) | ((np.asarray(hi, np.int64) & 0xFFFF) << 16)


def _words(rng, n):
    w = rng.integers(0, 1 << 32, n, dtype=np.int64)
    w[:8] = [0, 0xFFFFFFFF, 0x80808080, 0x7F7F7F7F, 0x80007FFF, 0x7FFF8000, 0x00FF00FF, 0xFF00FF00]
    return w


def test_intrinsic_twins(dsp):
    rng = np.random.default_rng(11)
    n = 20000
    x, y, z = _words(rng, n), _words(rng, n)[::-1].copy(), rng.integers(0, 1 << 32, n, dtype=np.int64)
    b = _lanes8(x)
    assert np.array_equal(_call(dsp, "sxtb16", x), _u32(_pack16(b[0], b[2])))
    assert np.array_equal(_call(dsp, "sxtb16_ror8", x), _u32(_pack16(b[1], b[3])))
    ylo, yhi = _lanes16(y)
    assert np.array_equal(_call(dsp, "sxtab16", y, x), _u32(_pack16(ylo + b[0], yhi + b[2])))
    assert np.array_equal(_call(dsp, "sxtab16_ror8", y, x), _u32(_pack16(ylo + b[1], yhi + b[3])))
    xlo, xhi = _lanes16(x)
    assert np.array_equal(_call(dsp, "smlad", x, y, z), _u32(z + xlo * ylo + xhi * yhi))
    assert np.array_equal(_call(dsp, "smlabb", x, y, z), _u32(z + xlo * ylo))
    assert np.array_equal(_call(dsp, "smlatt", x, y, z), _u32(z + xhi * yhi))
    sx, sy = _s(x, 32), _s(y, 32)
    assert np.array_equal(_call(dsp, "qadd", x, y), _u32(np.clip(sx + sy, INT32_MIN, INT32_MAX)))
    assert np.array_equal(_call(dsp, "ssat8", x), _u32(np.clip(sx, -128, 127)))
    # The word load: lane i is byte i in memory (a little-endian word on every target here).
    mem = _u32(x).view(np.uint8).reshape(-1, 4).astype(np.int64)
    want = mem[:, 0] | (mem[:, 1] << 8) | (mem[:, 2] << 16) | (mem[:, 3] << 24)
    assert np.array_equal(_call(dsp, "read_s8x4", x), want)


def _requant_cases(rng, n: int, rounding: str):
    acc = np.concatenate([
        rng.integers(INT32_MIN, INT32_MAX + 1, n, dtype=np.int64),
        rng.integers(-(1 << 20), 1 << 20, n),
        rng.choice([INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX], n),
    ])
    m = np.concatenate([
        rng.integers(1 << 30, 1 << 31, n, dtype=np.int64),
        rng.integers(INT32_MIN + 1, INT32_MAX + 1, n, dtype=np.int64),  # outside QuantizeMultiplier's range
        rng.choice([0, 1, 1 << 30, INT32_MAX, INT32_MIN + 1, -1], n),
    ])
    s = rng.integers(-31, 31, 3 * n)
    # Exact halves: acc * m / 2^(31 - s) = j + 1/2 with m = 2^30, where the roundings differ.
    k = n // 2
    s[:k] = rng.integers(-31, 1, k)
    m[:k] = 1 << 30
    acc[:k] = (2 * rng.integers(-(1 << 12), 1 << 12, k) + 1) << -s[:k]
    return fp.wrap_int32(acc), m, s


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requantize_nomin_equals_requantize(dsp, dsp_single, rounding):
    """mcuqp_requantize_nomin and the prepared high-word form mcuqp_rq_apply == mcuqp_requantize
    == numpy for every multiplier but INT32_MIN (all shifts, int32 extremes, exact halves)."""
    lib = dsp if rounding == "double" else dsp_single
    rng = np.random.default_rng(12 if rounding == "double" else 13)
    acc, m, s = _requant_cases(rng, 40000, rounding)
    want = fp.multiply_by_quantized_multiplier(acc, m, s, rounding)
    assert np.array_equal(_s(_call(lib, "requantize", acc, m, s), 32), want)
    assert np.array_equal(_s(_call(lib, "requantize_nomin", acc, m, s), 32), want)
    assert np.array_equal(_s(_call(lib, "rq_apply", acc, m, s), 32), want)


# ---- random cases aimed at the DSP paths ------------------------------------------------------

MAC_BUDGET = 600_000


def random_conv(rng, depthwise: bool, rounding: str):
    """Shapes around the kernels' internal boundaries: 1x1 (direct widening), k_h == 1 rows,
    windows of up to 128 entries (one column chunk) and more, in_c a multiple of 4 or not,
    pixel counts not a multiple of 4, channel blocks of 16, dead channels (multiplier 0),
    depthwise 3x3 (unrolled) and other filters over input rows wider than one ring slot,
    channel counts not a multiple of 4."""
    kh = int(rng.choice([1, 1, 1, 2, 3, 3, 3, 5, 10] if not depthwise else [1, 2, 3, 3, 3, 3, 5, 9]))
    kw = kh if rng.random() < 0.6 else int(rng.choice([1, 2, 3, 4, 5]))
    dil = tuple(int(rng.choice([1, 1, 1, 2, 3])) for _ in range(2))
    stride = tuple(int(rng.choice([1, 1, 2, 3])) for _ in range(2))
    eff_h, eff_w = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
    pad = random_padding(rng, eff_h, eff_w, edges=True)
    h = max(1, eff_h - pad.top - pad.bottom) + int(rng.integers(0, 14))
    w_ = max(1, eff_w - pad.left - pad.right) + int(rng.integers(0, 14))
    if depthwise and rng.random() < 0.3:
        w_ += int(rng.integers(20, 90))  # rows wider than a ring slot: several column tiles
    n = int(rng.choice([1, 1, 1, 2]))
    if depthwise:
        cin = int(rng.choice([1, 3, 4, 8, 12, 16, 32, 64, 6, 13, int(rng.integers(1, 80))]))
        dm = 1 if rng.random() < 0.8 else int(rng.integers(2, 4))
        cout = cin * dm
    else:
        cin = int(rng.choice([1, 2, 3, 4, 5, 8, 16, 31, 32, 64, 96, 128, 129, 256, 257, int(rng.integers(1, 300))]))
        cout = int(rng.choice([1, 2, 3, 8, 16, 33, 64, 70, int(rng.integers(1, 80))]))
        dm = 1
    a = ConvAttrs(stride=stride, padding=pad, dilation=dil, depth_multiplier=dm)
    oh, ow = conv_output_hw(h, w_, kh, kw, a)
    taps = kh * kw * (1 if depthwise else cin)
    while n * oh * ow * cout * taps > MAC_BUDGET and (h > eff_h or w_ > eff_w):
        h, w_ = max(eff_h, h - 2), max(eff_w, w_ - 2)
        oh, ow = conv_output_hw(h, w_, kh, kw, a)
    return conv_case(rng, depthwise, a, (n, h, w_, cin), kh, kw, cout, taps, rounding, edges=True)


def random_fc(rng, rounding: str):
    b = int(rng.choice([1, 1, 2, 3]))
    cin = int(rng.choice([1, 2, 3, 4, 7, 16, 64, 250, 640, int(rng.integers(1, 700))]))
    cout = int(rng.choice([1, 2, 3, 4, 5, 10, 12, 32, 128, int(rng.integers(1, 150))]))
    return fc_case(rng, b, cin, cout, rounding, edges=True)


# ---- DSP C == numpy == portable C --------------------------------------------------------------


@pytest.mark.parametrize("rounding", ["double", "single"])
@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_dsp_matches_numpy_and_portable(dsp, dsp_single, runtime, runtime_single_rounding, depthwise,
                                             rounding):
    lib, portable = (dsp, runtime) if rounding == "double" else (dsp_single, runtime_single_rounding)
    rng = np.random.default_rng((21 if depthwise else 22) + (100 if rounding == "single" else 0))
    ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
    seen = set()
    for case in range(220 if rounding == "double" else 90):
        x, w, bias, a = random_conv(rng, depthwise, rounding)
        want = ref(x, w, bias, a, rounding)
        rc, got = c_conv(lib, depthwise, x, w, bias, a, want.shape, fill=i8(rng, want.shape))
        assert rc == OK, case
        assert np.array_equal(got, want), (case, x.shape, w.shape, a)
        rc, port = c_conv(portable, depthwise, x, w, bias, a, want.shape)
        assert rc == OK and np.array_equal(port, got), case
        kh, kw = w.shape[1:3]
        k = kh * kw * (1 if depthwise else x.shape[3])
        seen.add("chunked" if not depthwise and k > 128 else "one_chunk")
        seen.add("zero_multiplier" if 0 in a.requant.multiplier else "nonzero_multipliers")
        seen.add("pointwise" if kh == kw == 1 else "window")
        seen.add("odd_pixels" if want.shape[0] * want.shape[1] * want.shape[2] % 2 else "even_pixels")
        seen.add("int32_min" if INT32_MIN in a.requant.multiplier else "fast_requant")
        if depthwise:
            seen.add("dm>1" if a.depth_multiplier > 1 else ("tail_channels" if x.shape[3] % 4 else "groups_of_4"))
            seen.add("3x3" if (kh, kw, a.dilation[1]) == (3, 3, 1) else "other_filter")
            if x.shape[2] > 40:
                seen.add("tiles")
        else:
            seen.add("blocks" if k > 128 and w.shape[0] > 16 else "one_block")
    want_seen = {"one_chunk", "pointwise", "window", "odd_pixels", "even_pixels", "fast_requant", "zero_multiplier"}
    if rounding == "double":
        want_seen |= {"int32_min"}
    want_seen |= ({"dm>1", "tail_channels", "groups_of_4", "3x3", "other_filter", "tiles"} if depthwise
                  else {"chunked", "blocks", "one_block"})
    assert want_seen <= seen, want_seen - seen


@pytest.mark.parametrize("rounding", ["double", "single"])
def test_fc_dsp_matches_numpy_and_portable(dsp, dsp_single, runtime, runtime_single_rounding, rounding):
    lib, portable = (dsp, runtime) if rounding == "double" else (dsp_single, runtime_single_rounding)
    rng = np.random.default_rng(23 if rounding == "double" else 123)
    for case in range(250 if rounding == "double" else 100):
        x, w, bias, a = random_fc(rng, rounding)
        want = fully_connected_s8(x, w, bias, a, rounding)
        rc, got = c_fc(lib, x, w, bias, a, fill=i8(rng, want.shape))
        assert rc == OK, case
        assert np.array_equal(got, want), (case, x.shape, w.shape, a)
        rc, port = c_fc(portable, x, w, bias, a)
        assert rc == OK and np.array_equal(port, got), case


def test_mlperf_like_layers(dsp, runtime):
    """The layer shapes of the MLPerf Tiny models (the paths the benchmark times)."""
    rng = np.random.default_rng(24)
    layers = [  # (depthwise, x shape, (kh, kw), cout, stride, padding)
        (False, (1, 49, 10, 1), (10, 4), 64, (2, 2), Padding(4, 5, 1, 1)),
        (True, (1, 25, 5, 64), (3, 3), 64, (1, 1), Padding(1, 1, 1, 1)),
        (False, (1, 25, 5, 64), (1, 1), 64, (1, 1), Padding()),
        (False, (1, 96, 96, 3), (3, 3), 8, (2, 2), Padding(0, 1, 0, 1)),
        (True, (1, 48, 48, 16), (3, 3), 16, (2, 2), Padding(0, 1, 0, 1)),
        (False, (1, 3, 3, 256), (1, 1), 256, (1, 1), Padding()),
        (False, (1, 16, 16, 32), (3, 3), 64, (2, 2), Padding(0, 1, 0, 1)),
        (False, (1, 8, 8, 64), (3, 3), 64, (1, 1), Padding(1, 1, 1, 1)),
        (False, (1, 32, 32, 16), (1, 1), 32, (2, 2), Padding()),
    ]
    for depthwise, xs, (kh, kw), cout, stride, pad in layers:
        x = i8(rng, xs)
        w = i8(rng, (1, kh, kw, cout) if depthwise else (cout, kh, kw, xs[3]), -127, 127)
        zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
        std = acc_spread(kh * kw * (1 if depthwise else xs[3]), -zp, w)
        a = ConvAttrs(stride=stride, padding=pad, input_offset=-zp, output_offset=out_zp, act_min=max(-128, out_zp),
                      requant=random_requant(np.random.default_rng(len(xs) + cout), cout, std, "double",
                                             edges=True))
        bias = rng.integers(-20000, 20000, cout).astype(np.int32)
        ref = depthwise_conv2d_s8 if depthwise else conv2d_s8
        want = ref(x, w, bias, a)
        rc, got = c_conv(dsp, depthwise, x, w, bias, a, want.shape)
        assert rc == OK and np.array_equal(got, want), (xs, kh, kw, cout)
        rc, port = c_conv(runtime, depthwise, x, w, bias, a, want.shape)
        assert rc == OK and np.array_equal(port, got)


def test_padding_taps_contribute_nothing(dsp):
    """3x3 all-ones over a 1x1 input of value 0, zero point 10: only the centre tap counts."""
    x = np.zeros((1, 1, 1, 4), np.int8)
    a = ConvAttrs(stride=(1, 1), padding=Padding(1, 1, 1, 1), input_offset=-10, requant=Requant([1 << 30], [1]))
    rc, y = c_conv(dsp, False, x, np.ones((1, 3, 3, 4), np.int8), None, a, (1, 1, 1, 1))
    assert rc == OK and y[0, 0, 0, 0] == -40
    rc, y = c_conv(dsp, True, x, np.ones((1, 3, 3, 4), np.int8), None, a, (1, 1, 1, 4))
    assert rc == OK and y.ravel().tolist() == [-10] * 4


def test_accumulator_wraps_like_int32(dsp):
    x, w = np.array([[100]], np.int8), np.array([[100]], np.int8)
    bias = np.array([INT32_MAX], np.int32)
    a = FullyConnectedAttrs(requant=Requant([1 << 30], [-20]))
    rc, y = c_fc(dsp, x, w, bias, a)
    assert rc == OK and y[0, 0] == -128
    ca = ConvAttrs(stride=(1, 1), padding=Padding(), requant=a.requant)
    for depthwise in (False, True):
        rc, y = c_conv(dsp, depthwise, x.reshape(1, 1, 1, 1), w.reshape(1, 1, 1, 1), bias, ca, (1, 1, 1, 1))
        assert rc == OK and y[0, 0, 0, 0] == -128


# ---- bad arguments: refused exactly like the portable kernels ------------------------------------

BAD_DSP_CONV_ATTRS = {**BAD_CONV_ATTRS, "depth_multiplier": {"depth_multiplier": 3}}


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
@pytest.mark.parametrize("bad", sorted(BAD_DSP_CONV_ATTRS))
def test_conv_rejects_bad_params(dsp, runtime, depthwise, bad):
    x, w, a = base_conv(depthwise)
    bad_a = replace(a, **BAD_DSP_CONV_ATTRS[bad])
    fill = np.full((1, 5, 5, 4), 55, np.int8)
    rc, y = c_conv(dsp, depthwise, x, w, None, bad_a, fill.shape, fill=fill)
    rc_port, _ = c_conv(runtime, depthwise, x, w, None, bad_a, fill.shape, fill=fill.copy())
    assert rc == rc_port
    if rc == ERR:
        assert np.all(y == 55)
    else:
        assert bad == "depth_multiplier" and not depthwise  # conv2d ignores it
    for shape in ((1, 5, 5, 3), (2, 5, 5, 4)):  # output channels, batch
        assert c_conv(dsp, depthwise, x, w, None, a, shape)[0] == ERR
    assert c_conv(dsp, depthwise, np.ascontiguousarray(x[..., :1]), w, None, a, (1, 5, 5, 4))[0] == ERR


def test_kernels_reject_null_pointers_and_bad_fc(dsp):
    rng = np.random.default_rng(6)
    x = i8(rng, (1, 5, 5, 2))
    w = i8(rng, (4, 3, 3, 2))
    y = np.zeros((1, 5, 5, 4), np.int8)
    p = ConvParams(stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1, dilation_w=1, depth_multiplier=1,
                   act_min=-128, act_max=127)
    rq, _keep = hostlib.requant(np.array([1 << 30]), np.array([-8]))
    args = [C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(x), C.byref(dims(w.shape)), ptr(w), None,
            C.byref(dims(y.shape)), ptr(y)]
    assert dsp.mcuqp_conv2d_s8(*args) == OK
    for i in (0, 1, 2, 3, 4, 5, 7, 8):
        assert dsp.mcuqp_conv2d_s8(*[None if j == i else v for j, v in enumerate(args)]) == ERR, i
    dw = i8(rng, (1, 3, 3, 2))
    y2 = np.zeros((1, 5, 5, 2), np.int8)
    args = [C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(x), C.byref(dims(dw.shape)), ptr(dw), None,
            C.byref(dims(y2.shape)), ptr(y2)]
    assert dsp.mcuqp_depthwise_conv2d_s8(*args) == OK
    for i in (0, 1, 2, 3, 4, 5, 7, 8):
        assert dsp.mcuqp_depthwise_conv2d_s8(*[None if j == i else v for j, v in enumerate(args)]) == ERR, i
    xf, wf = i8(rng, (2, 10)), i8(rng, (3, 10))
    yf = np.full((2, 3), 55, np.int8)
    for fp_, batches, in_ch, out_ch in (((0, 0, 0, -128, 127), 0, 10, 3), ((0, 0, 0, -128, 127), 2, 0, 3),
                                        ((0, 0, 0, -128, 127), 2, 10, 0), ((-128, 0, 0, -128, 127), 2, 10, 3),
                                        ((0, 200, 0, -128, 127), 2, 10, 3), ((0, 0, 0, 5, 4), 2, 10, 3)):
        fpp = FcParams(*fp_)
        rc = dsp.mcuqp_fully_connected_s8(C.byref(fpp), C.byref(rq), C.c_int32(batches), C.c_int32(in_ch), ptr(xf),
                                          C.c_int32(out_ch), ptr(wf), None, ptr(yf))
        assert rc == ERR and np.all(yf == 55)
    fpp = FcParams(0, 0, 0, -128, 127)
    fc_args = [C.byref(fpp), C.byref(rq), C.c_int32(2), C.c_int32(10), ptr(xf), C.c_int32(3), ptr(wf), None, ptr(yf)]
    assert dsp.mcuqp_fully_connected_s8(*fc_args) == OK
    for i in (0, 1, 4, 6, 8):
        assert dsp.mcuqp_fully_connected_s8(*[None if j == i else v for j, v in enumerate(fc_args)]) == ERR, i


# ---- builds warning-free for every board ------------------------------------------------------


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an385", "mps2-an386", "mps2-an500", "mps3-an547"])
def test_dsp_kernels_compile_for_every_board(tmp_path, board):
    from mcuqp.target.boards import load_board

    b = load_board(board)
    for rounding in ((), ("-DMCUQP_SINGLE_ROUNDING=1",)):
        for name in DSP_SOURCES:
            r = subprocess.run(
                ["arm-none-eabi-gcc", *b.gcc_flags, "-O2", "-Wall", "-Wextra", "-Werror", "-std=c99", *rounding,
                 "-I", str(INCLUDE), "-c", str(DSP / name), "-o", str(tmp_path / f"{name}.o")],
                capture_output=True, text=True,
            )
            assert r.returncode == 0, r.stderr


# ---- on the target ------------------------------------------------------------------------------


def _target_layers(rounding: str) -> list[Layer]:
    rng = np.random.default_rng(31)

    def make_requant(cout: int, std: float) -> Requant:
        return conv_requant(0.05, np.full(cout, 0.004, np.float32), 0.05 * 0.004 * std / 40, rounding)

    def conv(*args, **kw) -> Layer:
        return target_conv_layer(rng, make_requant, *args, edges=True, **kw)

    def fc(cin, cout, w_zp=0) -> Layer:
        return target_fc_layer(rng, rounding, cin, cout, w_zp)

    return [
        conv("conv2d", (1, 12, 12, 16), 3, 3, 16, pad=Padding(1, 1, 1, 1)),      # 0: one chunk
        conv("depthwise", (1, 12, 12, 32), 3, 3, 32, pad=Padding(1, 1, 1, 1)),   # 1: 3x3 unrolled
        conv("conv2d", (1, 12, 12, 32), 1, 1, 32),                               # 2: pointwise
        conv("conv2d", (1, 8, 8, 64), 3, 3, 40, pad=Padding(1, 1, 1, 1)),        # 3: chunks, blocks
        conv("conv2d", (1, 16, 16, 3), 3, 3, 8, stride=(2, 2), pad=Padding(0, 1, 0, 1)),
        conv("depthwise", (1, 9, 11, 6), 3, 2, 12, stride=(2, 1), pad=Padding(2, 1, 0, 2), dil=(2, 2), dm=2),
        conv("depthwise", (1, 9, 7, 20), 5, 3, 20, stride=(2, 1), pad=Padding(2, 2, 1, 1), dil=(1, 2)),
        conv("conv2d", (2, 7, 6, 5), 5, 3, 7, stride=(1, 3), pad=Padding(3, 2, 1, 0), dil=(1, 2)),
        conv("conv2d", (1, 13, 5, 1), 10, 4, 9, stride=(2, 2), pad=Padding(4, 5, 1, 1)),
        fc(256, 32),
        fc(101, 10, w_zp=17),
        fc(640, 33),  # rows longer than the widened buffer: the on-the-fly loop, an odd last channel
        fc(24, 7),
        fc(8, 5, w_zp=-3),
        fc(300, 2, w_zp=4),
    ]


@pytest.mark.qemu
@pytest.mark.parametrize("board, rounding", [("mps2-an386", "double"), ("mps3-an547", "single"),
                                             ("mps2-an500", "double"), ("mps2-an385", "double")])
def test_dsp_kernels_on_qemu_match_numpy(tmp_path, board, rounding):
    """Built for the board (M4 / M55 / M7: SMLAD and friends; M3: the C twins), the DSP
    kernels give the numpy outputs bit for bit; on the M4 the common layers stay fast."""
    got, want, per_mac = run_layers_on_qemu(tmp_path, board, rounding, _target_layers(rounding),
                                            [DSP / s for s in DSP_SOURCES])
    assert np.array_equal(got, want)
    if board == "mps2-an386":
        # Measured (QEMU counts are deterministic) 1.60, 6.23, 2.59, 1.46, 12.4 and 2.20; the
        # bounds leave ~20% headroom. (Small layers: per-output costs weigh more than in
        # the MLPerf models.) 3x3 conv 16->16, 3x3 depthwise 32, pointwise 32->32, chunked
        # 3x3 64->40, depthwise multiplier 2, FC 256->32:
        bounds = {0: 1.95, 1: 7.5, 2: 3.1, 3: 1.8, 5: 15.0, 9: 2.7}
        assert all(per_mac[i] < b for i, b in bounds.items()), per_mac


def _shared_model(*parts: str) -> Path:
    return prereq.shared_model(Path(*parts))


def _kernel_dirs(loaded, board: str, inplace: bool = True) -> dict[str, Path]:
    from mcuqp import api

    with tempfile.TemporaryDirectory(prefix="mcuqp-dsp-") as tmp:
        lib = api.compile(loaded, Path(tmp) / "model", board=board, inplace=inplace)
    return {k.name: k.parent for k in lib.generated.kernels}


@pytest.mark.qemu
def test_model_with_dsp_layers_bit_exact_on_m4():
    """A small TFLite model (conv 3x3 stride 2, pointwise, depthwise 3x3, conv 3x3 valid, two FC)
    built for the M4 picks the DSP variants and verifies bit-exact on QEMU. (Its depthwise
    layer may run in place, with the portable in-place kernel, when the planner says so.)"""
    from mcuqp import api

    loaded = api.load(_shared_model("fixtures", "mixed28_int8.tflite"), n_random=20, seed=0)
    used = _kernel_dirs(loaded, "mps2-an386")
    assert used["conv2d_s8.c"] == DSP and used["fully_connected_s8.c"] == DSP, used
    # Its depthwise layer runs either in place (portable kernel) or on the DSP variant.
    assert any(op.kind.value == "depthwise_conv2d" for op in loaded.graph.ops)
    if api.compile_plan(loaded, plan="smallest").inplace_depthwise:
        assert used["depthwise_conv2d_s8_inplace.c"] == SRC and "depthwise_conv2d_s8.c" not in used, used
    else:
        assert used["depthwise_conv2d_s8.c"] == DSP, used
    # Out of place, every weighted layer runs on its DSP variant.
    assert all(_kernel_dirs(loaded, "mps2-an386", inplace=False).get(name) == DSP for name in DSP_SOURCES)
    res = api.verify(loaded, board="mps2-an386", n_inputs=20)
    assert res.bit_exact, res.summary()


@pytest.mark.qemu
@pytest.mark.parametrize("board", ["mps2-an386", "mps2-an500"])
def test_kws_with_all_dsp_kernels_bit_exact(board):
    """MLPerf Tiny KWS (conv 10x4, four depthwise 3x3 + pointwise pairs, FC) uses all three DSP
    variants (with the out-of-place plan) and verifies bit-exact on QEMU (M4 and M7; the M55
    takes the Helium variants: tests/test_kernels_mve.py)."""
    from mcuqp import api

    loaded = api.load(_shared_model("mlperf_tiny", "kws_ref_model.tflite"), n_random=8, seed=1)
    used = _kernel_dirs(loaded, board, inplace=False)
    assert all(used.get(name) == DSP for name in DSP_SOURCES), used
    res = api.verify(loaded, board=board, n_inputs=8, inplace=False)
    assert res.bit_exact, res.summary()
