"""Helpers for the packed-weight kernel tests (test_kernels_packed.py): ctypes mirrors of
the packed filter structs, a caller for every packed kernel, random packed layers at a
given density, and the single-file model that runs layers on QEMU. Not a test module."""
from __future__ import annotations

import ctypes as C
from dataclasses import replace

import numpy as np

from mcuqp.codegen.packed import FORMATS, PackedLayer, kernel_sources, model_source
from mcuqp.ir import Padding
from mcuqp.ops.conv2d import ConvAttrs
from mcuqp.packing import VALUE_RANGE
from mcuqp.ops.conv2d import conv_output_hw
import hostlib
from hostlib import dims, ptr
from kernel_cases import conv_case, conv_params, fc_case, i8, random_padding

OK, ERR = 0, -1


class SparseRowsC(C.Structure):
    _fields_ = [("counts", C.POINTER(C.c_uint16)), ("index", C.POINTER(C.c_uint8)), ("values", C.POINTER(C.c_int8))]


class SparseDepthwiseC(C.Structure):
    _fields_ = [("counts", C.POINTER(C.c_uint8)), ("index", C.POINTER(C.c_uint8)), ("values", C.POINTER(C.c_int8))]


class LowBitC(C.Structure):
    _fields_ = [("words", C.POINTER(C.c_uint32)), ("bits", C.c_int32)]


def _arr(a: np.ndarray, dtype, ctype, keep: list):
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.size == 0:
        a = np.zeros(1, dtype)
    keep.append(a)
    return ptr(a, ctype)


def c_filter(ly: PackedLayer, keep: list, bits: int | None = None):
    """The kernel's filter argument (a pointer) for the layer's format."""
    p = ly.packed
    if p is None:
        return _arr(ly.w, np.int8, C.c_int8, keep)
    if ly.fmt == "sparse":
        if ly.op == "depthwise":
            s = SparseDepthwiseC(_arr(p.counts, np.uint8, C.c_uint8, keep), _arr(p.index, np.uint8, C.c_uint8, keep),
                                 _arr(p.values, np.int8, C.c_int8, keep))
        else:
            s = SparseRowsC(_arr(p.counts, np.uint16, C.c_uint16, keep), _arr(p.index, np.uint8, C.c_uint8, keep),
                            _arr(p.values, np.int8, C.c_int8, keep))
    else:
        s = LowBitC(_arr(p.words, np.uint32, C.c_uint32, keep), p.bits if bits is None else bits)
    keep.append(s)
    return C.byref(s)


def c_call(lib, ly: PackedLayer, x: np.ndarray, out_shape: tuple[int, ...], fmt: str | None = None,
           bits: int | None = None) -> tuple[int, np.ndarray]:
    """Runs the layer's kernel (or, with fmt="dense", the dense kernel on the effective
    weights; `bits` overrides a low-bit filter's bits) on the host library; returns
    (status, output). The output buffer starts as
    garbage so that a forgotten output cannot pass."""
    if fmt is not None:
        ly = PackedLayer(ly.op, fmt, ly.x_shape, ly.w, ly.bias, ly.attrs)
    keep: list = []
    x = np.ascontiguousarray(x)
    y = np.full(out_shape, 77, np.int8)
    a = ly.attrs
    rq, keep_rq = hostlib.requant(a.requant.multiplier, a.requant.shift)
    keep.append(keep_rq)
    bias = _arr(ly.bias, np.int32, C.c_int32, keep) if ly.bias is not None else None
    # exactly what the generated code reserves (an overrun is a sanitizer report), garbage too
    scratch = np.full(max(ly.scratch_bytes(), 1), 0x5A, np.uint8)
    extra = [] if ly.fmt == "dense" else [scratch.ctypes.data_as(C.c_void_p)]
    fn = getattr(lib, ly.kernel)
    if ly.op == "fc":
        p = hostlib.FcParams(a.input_offset, a.filter_offset, a.output_offset, a.act_min, a.act_max)
        rc = fn(C.byref(p), C.byref(rq), C.c_int32(x.shape[0]), C.c_int32(x.shape[1]), ptr(x),
                C.c_int32(ly.w.shape[0]), c_filter(ly, keep, bits), bias, ptr(y), *extra)
    else:
        p = conv_params(a)
        rc = fn(C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(x), C.byref(dims(ly.w.shape)),
                c_filter(ly, keep, bits), bias, C.byref(dims(y.shape)), ptr(y), *extra)
    return rc, y


def out_shape(ly: PackedLayer) -> tuple[int, ...]:
    if ly.op == "fc":
        return (ly.x_shape[0], ly.w.shape[0])
    oh, ow = conv_output_hw(ly.x_shape[1], ly.x_shape[2], ly.w.shape[1], ly.w.shape[2], ly.attrs)
    return (ly.x_shape[0], oh, ow, ly.w.shape[0] if ly.op == "conv2d" else ly.w.shape[3])


def format_weights(rng: np.random.Generator, fmt: str, shape, density: float, zero_channels: bool,
                   channel_axis: int) -> np.ndarray:
    """Effective int8 weights of a format: values in the format's range, a fraction
    `density` nonzero (sparse, int4, ternary), optionally some all-zero output channels."""
    if fmt in ("binary", "xnor"):
        return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int8)
    lo, hi = VALUE_RANGE.get(fmt, (-128, 127))
    w = i8(rng, shape, lo, hi)
    w[rng.random(shape) >= density] = 0
    if zero_channels and fmt != "dense":
        dead = rng.random(w.shape[channel_axis]) < 0.3
        idx = [slice(None)] * w.ndim
        idx[channel_axis] = dead
        w[tuple(idx)] = 0
    return w


def random_layer(rng: np.random.Generator, op: str, fmt: str, density: float, rounding: str = "double",
                 tiny: bool = False) -> tuple[PackedLayer, np.ndarray]:
    """A random layer of `op` in `fmt` (shapes across the kernels' paths; `tiny`: one-element
    layers) and an input for it."""
    zero_channels = rng.random() < 0.4
    if op == "fc":
        batches = 1 if tiny else int(rng.integers(1, 4))
        cin = 1 if tiny else int(rng.choice([rng.integers(1, 40), rng.integers(250, 600)]))
        cout = 1 if tiny else int(rng.integers(1, 24))
        x, _w, bias, a = fc_case(rng, batches, cin, cout, rounding, edges=bool(rng.random() < 0.3))
        a = replace(a, filter_offset=0)
        w = format_weights(rng, fmt, (cout, cin), density, zero_channels, 0)
    else:
        depthwise = op == "depthwise"
        dil = (1, 1) if tiny or rng.random() < 0.7 else tuple(int(v) for v in rng.integers(1, 3, 2))
        if tiny:
            kh = kw = cin = 1
            x_shape = (1, 1, 1, 1)
        else:
            kh, kw = (int(v) for v in rng.integers(1, 4, 2))
            cin = int(rng.choice([rng.integers(1, 9), rng.integers(9, 40)]))
            eh, ew = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
            x_shape = (int(rng.integers(1, 3)), int(rng.integers(eh, eh + 6)), int(rng.integers(ew, ew + 6)), cin)
        dm = int(rng.integers(1, 4)) if depthwise and not tiny else 1
        cout = cin * dm if depthwise else (1 if tiny else int(rng.integers(1, 20)))
        stride = (1, 1) if tiny else tuple(int(v) for v in rng.integers(1, 3, 2))
        pad = Padding() if tiny else random_padding(rng, dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1)
        a = ConvAttrs(stride=stride, padding=pad, dilation=dil, depth_multiplier=dm)
        taps = kh * kw * (1 if depthwise else cin)
        x, _w, bias, a = conv_case(rng, depthwise, a, x_shape, kh, kw, cout, taps, rounding,
                                  edges=bool(rng.random() < 0.3))
        wshape = (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin)
        w = format_weights(rng, fmt, wshape, density, zero_channels, 3 if depthwise else 0)
    if fmt == "xnor":
        x = np.where(rng.random(x.shape) < 0.5, -1, 1).astype(np.int8)
        a = replace(a, input_offset=0)
    return PackedLayer(op, fmt, tuple(x.shape), w, bias, a), x


def run_on_qemu(tmp_path, board: str, layers: list[PackedLayer], inputs: list[np.ndarray], dsp: bool,
                rounding: str = "double"):
    """Builds the layers as one model (DSP kernel variants when `dsp`), runs the given
    inputs (one per layer, batch-stacked: each x has shape (n * x_shape[0], ...)); returns
    (device outputs, numpy twin outputs, QEMU run result)."""
    from mcuqp.target import build, qemu

    n = inputs[0].shape[0] // layers[0].x_shape[0]
    outs = [ly.reference(x, rounding) for ly, x in zip(layers, inputs)]
    shapes = [(ly.x_shape[0], *o.shape[1:]) for ly, o in zip(layers, outs)]
    src, hdr = model_source(layers, shapes)
    (tmp_path / "model.c").write_text(src)
    (tmp_path / "model.h").write_text(hdr)
    srcs = [tmp_path / "model.c", *kernel_sources(layers, hostlib.RUNTIME_DIR / "src", dsp),
            *build.platform_sources(board)]
    defines = ("MCUQP_SINGLE_ROUNDING=1",) if rounding == "single" else ()
    fw = build.build_firmware(srcs, [tmp_path, hostlib.RUNTIME_DIR / "include"], board, tmp_path / "fw",
                              defines=defines)
    rows = np.stack([np.concatenate([x.reshape(n, *ly.x_shape)[k].ravel() for ly, x in zip(layers, inputs)])
                     for k in range(n)])
    want = np.stack([np.concatenate([o.reshape(n, -1)[k] for o in outs]) for k in range(n)])
    r = qemu.run_firmware(fw, board, rows, want.shape[1])
    return r.outputs, want, r, fw


__all__ = ["FORMATS", "OK", "ERR", "c_call", "out_shape", "random_layer", "run_on_qemu"]
