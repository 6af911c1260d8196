"""Helium (MVE) kernels (runtime_c/src/mve/): built for the Cortex-M55 (QEMU mps3-an547, which
emulates MVE) they give the numpy reference's outputs bit for bit over randomized shapes —
channel counts that are not multiples of 4 or 16, padding, stride, dilation, depth
multipliers, long windows, per-tensor and per-channel requantization, both rounding
modes, multipliers outside the vector form — and they build warning-free."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

import numpy as np
import pytest

from mcuqp.ir import Padding, Requant
from mcuqp.ops.common import conv_requant
import hostlib

from kernel_cases import Layer, run_layers_on_qemu, target_conv_layer, target_fc_layer

MVE = hostlib.RUNTIME_DIR / "src" / "mve"
INCLUDE = hostlib.RUNTIME_DIR / "include"
BOARD = "mps3-an547"
MVE_SOURCES = ["conv2d_s8.c", "depthwise_conv2d_s8.c", "fully_connected_s8.c"]


def mve_sources(names=MVE_SOURCES):
    return [MVE / n for n in names]


@pytest.mark.qemu
@pytest.mark.parametrize("name", sorted(p.name for p in MVE.glob("*.c")))
def test_mve_kernels_compile_warning_free(tmp_path, name):
    for rounding in ("0", "1"):
        r = subprocess.run(
            ["arm-none-eabi-gcc", "-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard", "-O2", "-Wall", "-Wextra",
             "-Wconversion", "-Wshadow", "-Werror", "-std=c99", f"-DMCUQP_SINGLE_ROUNDING={rounding}",
             "-I", str(INCLUDE), "-c", str(MVE / name), "-o", str(tmp_path / "k.o")],
            capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def _random_layers(seed: int, rounding: str, kinds: tuple[str, ...]) -> list[Layer]:
    """Random conv / depthwise / fc layers around the kernels' boundaries."""
    rng = np.random.default_rng(seed)

    def make_requant(cout: int, std: float) -> Requant:
        scales = rng.uniform(0.002, 0.006, cout).astype(np.float32)
        if rng.random() < 0.3:
            scales = np.full(1, scales[0], np.float32)  # per-tensor
        return conv_requant(0.05, scales, 0.05 * float(np.mean(scales)) * std / float(rng.uniform(20, 60)), rounding)

    layers = []
    for kind in kinds:
        if kind == "fc":
            cin = int(rng.choice([1, 3, 15, 16, 17, 33, 64, 250, int(rng.integers(1, 700))]))
            cout = int(rng.choice([1, 2, 3, 5, 8, 10, 13, int(rng.integers(1, 70))]))
            layers.append(target_fc_layer(rng, rounding, cin, cout, w_zp=int(rng.choice([0, 0, 17, -9]))))
            continue
        depthwise = kind == "depthwise"
        kh = int(rng.choice([1, 1, 2, 3, 3, 5] if not depthwise else [1, 2, 3, 3, 3, 5]))
        kw = kh if rng.random() < 0.6 else int(rng.choice([1, 2, 3, 4]))
        dil = (int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2])))
        stride = (int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2])))
        eff_h, eff_w = dil[0] * (kh - 1) + 1, dil[1] * (kw - 1) + 1
        pad = Padding(int(rng.integers(0, eff_h)), int(rng.integers(0, eff_h)), int(rng.integers(0, eff_w)),
                      int(rng.integers(0, eff_w)))
        h = max(1, eff_h - pad.top - pad.bottom) + int(rng.integers(0, 6))
        w = max(1, eff_w - pad.left - pad.right) + int(rng.integers(0, 8))
        if depthwise:
            cin = int(rng.choice([1, 3, 4, 5, 8, 13, 16, 19, 32, int(rng.integers(1, 70))]))
            dm = 1 if rng.random() < 0.75 else int(rng.integers(2, 4))
            cout = cin * dm
        else:
            cin = int(rng.choice([1, 2, 3, 5, 16, 17, 31, 64, 130, int(rng.integers(1, 200))]))
            cout = int(rng.choice([1, 2, 3, 4, 5, 7, 16, 17, int(rng.integers(1, 40))]))
            dm = 1
        layers.append(target_conv_layer(rng, make_requant, kind, (1, h, w, cin), kh, kw, cout, stride=stride,
                                        pad=pad, dil=dil, dm=dm, edges=True))
    return layers


def _edge_layers(rounding: str) -> list[Layer]:
    """Fixed cases: long windows (tap by tap), channel blocks over 128, a multiplier of
    INT32_MIN and shifts >= 0 (scalar output stage), the MLPerf-like shapes."""
    rng = np.random.default_rng(41)

    def make_requant(cout: int, std: float) -> Requant:
        return conv_requant(0.05, np.full(cout, 0.004, np.float32), 0.05 * 0.004 * std / 40, rounding)

    def conv(*args, **kw) -> Layer:
        return target_conv_layer(rng, make_requant, *args, edges=True, **kw)

    layers = [
        conv("conv2d", (1, 5, 4, 150), 3, 3, 6, pad=Padding(1, 1, 1, 1)),       # 1350-byte windows
        conv("conv2d", (1, 2, 3, 20), 1, 1, 133),                              # two channel blocks
        conv("conv2d", (1, 13, 5, 1), 10, 4, 9, stride=(2, 2), pad=Padding(4, 5, 1, 1)),  # KWS-like stem
        conv("conv2d", (1, 12, 12, 3), 3, 3, 8, stride=(2, 2), pad=Padding(0, 1, 0, 1)),  # image stem
        conv("depthwise", (1, 25, 5, 20), 3, 3, 20, pad=Padding(1, 1, 1, 1)),
        conv("depthwise", (1, 9, 9, 8), 3, 3, 8, stride=(2, 2), pad=Padding(0, 1, 0, 1)),
        conv("conv2d", (1, 6, 6, 32), 1, 1, 24),
        target_fc_layer(rng, rounding, 640, 128),
        # the faster paths: depthwise tiles of 5 and 6 (one group), partial channel groups
        conv("depthwise", (1, 7, 6, 32), 3, 3, 32, pad=Padding(1, 1, 1, 1)),
        conv("depthwise", (1, 5, 5, 10), 3, 3, 10, pad=Padding(1, 1, 1, 1)),
        conv("depthwise", (2, 4, 21, 16), 3, 3, 16, pad=Padding(1, 1, 1, 1)),   # tiles of 16 and 5
        # 1x1 with k <= 16 over contiguous pixels (fewer than four; a last group that overlaps)
        conv("conv2d", (1, 12, 12, 8), 1, 1, 16),
        conv("conv2d", (1, 3, 5, 7), 1, 1, 9),
        conv("conv2d", (1, 1, 3, 5), 1, 1, 6),
        # filter rows of whole 16-byte chunks interleaved straight from the input
        conv("conv2d", (1, 9, 8, 16), 3, 3, 13, pad=Padding(1, 1, 1, 1)),
        conv("conv2d", (1, 7, 7, 32), 3, 3, 6, stride=(2, 2), pad=Padding(0, 1, 0, 1)),
    ]
    odd = conv("conv2d", (1, 4, 4, 8), 3, 3, 5, pad=Padding(1, 1, 1, 1))
    m = odd.attrs.requant.multiplier.copy()
    s = odd.attrs.requant.shift.copy()
    m[1], s[2], s[3] = np.iinfo(np.int32).min, 0, 1
    odd.attrs = type(odd.attrs)(**{**odd.attrs.__dict__, "requant": Requant(m, s)})
    layers.append(odd)
    return layers


@pytest.mark.qemu
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mve_edge_layers_on_qemu(tmp_path, rounding):
    got, want, per_mac = run_layers_on_qemu(tmp_path, BOARD, rounding, _edge_layers(rounding), mve_sources())
    assert np.array_equal(got, want)


@pytest.mark.qemu
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mve_random_layers_on_qemu(tmp_path, rounding, seed):
    kinds = ("conv2d", "depthwise", "fc") * 4
    layers = _random_layers(seed + (50 if rounding == "single" else 0), rounding, kinds)
    got, want, _ = run_layers_on_qemu(tmp_path, BOARD, rounding, layers, mve_sources())
    assert np.array_equal(got, want)


# ---- any kernel call on the target ----------------------------------------------------------


@dataclass
class Call:
    """One kernel call of a QEMU test model: `decls` (C), `expr` (C, using `in` and `out`,
    pointers to its slices of the model's input and output), its input size and the numpy
    reference of its output."""
    decls: str
    expr: str
    x: np.ndarray  # int8 input (flattened into the model input)
    want: np.ndarray  # int8 output


def run_calls_on_qemu(tmp_path, rounding: str, calls: list[Call], sources: list,
                      board: str = BOARD) -> tuple[np.ndarray, np.ndarray]:
    from mcuqp.target import build, qemu

    body, decls = [], []
    in_off = out_off = 0
    for i, c in enumerate(calls):
        decls.append(c.decls.replace("@", str(i)))
        body.append(f"    {{\n        const int8_t *in = input + {in_off};\n        int8_t *out = output + {out_off};\n"
                    f"        (void)in;\n        if ({c.expr.replace('@', str(i))} != MCUQP_OK) {{\n"
                    f"            return {i + 1};\n        }}\n    }}\n    MCUQP_LAYER_HOOK({i});\n")
        in_off += c.x.size
        out_off += c.want.size
    from mcuqp.codegen import harness

    src = ('#include <string.h>\n#include "model.h"\n#include "mcuqp_nn.h"\n#include "mcuqp_profile.h"\n\n' +
           "".join(decls) + f"\nstatic int {harness.LAYERS}(const int8_t *input, int8_t *output)\n{{\n" +
           "".join(body) + "    return 0;\n}\n" + harness.api_source(in_off, out_off))
    hdr = harness.api_header(in_off, out_off)
    (tmp_path / "model.c").write_text(src)
    (tmp_path / "model.h").write_text(hdr)
    defines = ("MCUQP_SINGLE_ROUNDING=1",) if rounding == "single" else ()
    fw = build.build_firmware([tmp_path / "model.c", *sources, *build.platform_sources(board)],
                              [tmp_path, INCLUDE], board, tmp_path / "fw", defines=defines)
    inputs = np.concatenate([c.x.ravel() for c in calls])[None, :]
    want = np.concatenate([c.want.ravel() for c in calls])[None, :]
    r = qemu.run_firmware(fw, board, inputs, want.shape[1])
    return r.outputs, want


def add_call(x1: np.ndarray, x2: np.ndarray, a, rounding: str) -> Call:
    from mcuqp.ops.add import add_s8

    fields = [a.left_shift, a.input1_offset, a.input1_multiplier, a.input1_shift, a.input2_offset,
              a.input2_multiplier, a.input2_shift, a.output_offset, a.output_multiplier, a.output_shift, a.act_min,
              a.act_max]
    n = x1.size
    return Call(f"static const mcuqp_add_params p@ = {{{', '.join(map(str, fields))}}};\n",
                f"mcuqp_add_s8(&p@, {n}, in, in + {n}, out)", np.concatenate([x1.ravel(), x2.ravel()]),
                add_s8(x1, x2, a, rounding))


@pytest.mark.qemu
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mve_add_on_qemu(tmp_path, rounding):
    from test_kernels_pool_add_softmax import extreme_add_attrs, random_add_attrs

    rng = np.random.default_rng(61 if rounding == "double" else 62)
    calls = []
    for i in range(40):
        a = random_add_attrs(rng) if i % 2 else extreme_add_attrs(rng)
        n = int(rng.choice([1, 3, 4, 5, 15, 16, 17, 64, int(rng.integers(1, 300))]))
        x1 = rng.integers(-128, 128, n).astype(np.int8)
        x2 = rng.integers(-128, 128, n).astype(np.int8)
        calls.append(add_call(x1, x2, a, rounding))
    got, want = run_calls_on_qemu(tmp_path, rounding, calls, mve_sources(["add_s8.c"]))
    assert np.array_equal(got, want)


def _conv_decls(a, x_shape, w, bias, out_shape) -> str:
    from kernel_cases import c_array

    fields = [a.input_offset, a.output_offset, *a.stride, a.padding.top, a.padding.left, *a.dilation,
              a.depth_multiplier, a.act_min, a.act_max]
    return (c_array("int8_t", "w@", w) + c_array("int32_t", "b@", bias) +
            c_array("int32_t", "m@", a.requant.multiplier) + c_array("int32_t", "s@", a.requant.shift) +
            f"static const mcuqp_requant q@ = {{m@, s@, {a.requant.multiplier.size}, 0}};\n"
            f"static const mcuqp_conv_params p@ = {{{', '.join(map(str, fields))}}};\n" +
            "".join(f"static const mcuqp_dims {t}@ = {{{', '.join(map(str, s))}}};\n"
                    for t, s in (("i", x_shape), ("f", w.shape), ("o", out_shape))))


def inplace_call(layer: Layer, rng, rounding: str, scratch: int) -> Call:
    """The layer run by the in-place kernel over a copy of its input in a static buffer."""
    x = rng.integers(-128, 128, layer.x_shape).astype(np.int8)
    want = layer.run(x, rounding)
    fn = ("mcuqp_depthwise_conv2d_s8_inplace" if layer.kind == "depthwise" else "mcuqp_conv2d_1x1_s8_inplace")
    decls = (_conv_decls(layer.attrs, layer.x_shape, layer.w, layer.bias, want.shape) +
             f"static int8_t data@[{x.size}];\nstatic int8_t scratch@[{scratch}];\n"
             f"static int run@(const int8_t *in, int8_t *out)\n{{\n    memcpy(data@, in, {x.size});\n"
             f"    if ({fn}(&p@, &q@, &i@, data@, &f@, w@, b@, &o@, scratch@) != MCUQP_OK) {{\n"
             f"        return MCUQP_ERR_ARG;\n    }}\n    memcpy(out, data@, {want.size});\n"
             f"    return MCUQP_OK;\n}}\n")
    return Call(decls, "run@(in, out)", x, want)


def _inplace_layers(rng, rounding: str) -> list[tuple[Layer, int]]:
    def make_requant(cout: int, std: float) -> Requant:
        return conv_requant(0.05, rng.uniform(0.002, 0.006, cout).astype(np.float32), 0.05 * 0.004 * std / 40,
                            rounding)

    def dw(shape, kh=3, kw=3, pad=Padding(1, 1, 1, 1), **kw_):
        ly = target_conv_layer(rng, make_requant, "depthwise", shape, kh, kw, shape[3], pad=pad, edges=True, **kw_)
        return ly, shape[1] * shape[2]

    def pw(shape, cout):
        ly = target_conv_layer(rng, make_requant, "conv2d", shape, 1, 1, cout, edges=True)
        return ly, shape[3]

    return [
        dw((1, 25, 5, 64)),                 # KWS: row path, four passes of 16
        dw((1, 9, 7, 13)),                  # h = 9: passes of 4, a channel tail
        dw((2, 20, 19, 21)),                # batches, a row over one tile
        dw((1, 6, 5, 8)),                   # h < 8: channel-at-a-time path
        dw((1, 7, 6, 5), 5, 3, Padding(2, 2, 1, 1)),  # another filter: channel-at-a-time path
        pw((1, 25, 5, 64), 64),             # KWS
        pw((1, 5, 6, 40), 17),              # out_c < in_c: direct reads after a few pixels
        pw((2, 3, 4, 150), 130),            # over one channel block
        pw((1, 4, 4, 7), 7),
    ]


@pytest.mark.qemu
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_mve_inplace_kernels_on_qemu(tmp_path, rounding):
    rng = np.random.default_rng(71 if rounding == "double" else 72)
    calls = [inplace_call(ly, rng, rounding, scratch) for ly, scratch in _inplace_layers(rng, rounding)]
    got, want = run_calls_on_qemu(tmp_path, rounding, calls,
                                  mve_sources(["depthwise_conv2d_s8_inplace.c", "conv2d_1x1_s8_inplace.c"]))
    assert np.array_equal(got, want)


def avg_pool_call(rng, rounding: str) -> Call:
    from mcuqp.errors import McuqpError
    from mcuqp.ops.pool import PoolAttrs, avg_pool2d_s8

    while True:
        fh, fw = (int(v) for v in rng.integers(1, 6, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        pad = Padding(int(rng.integers(0, fh)), int(rng.integers(0, fh)), int(rng.integers(0, fw)),
                      int(rng.integers(0, fw)))
        n, h, w, c = 1 + int(rng.random() < 0.2), int(rng.integers(fh, 12)), int(rng.integers(fw, 12)), \
            int(rng.choice([1, 3, 4, 7, 16, 64, int(rng.integers(1, 70))]))
        lo = int(rng.integers(-128, 20))
        a = PoolAttrs((fh, fw), (sh, sw), pad, act_min=lo, act_max=int(rng.integers(lo, 128)))
        x = rng.integers(-128, 128, (n, h, w, c)).astype(np.int8)
        try:
            want = avg_pool2d_s8(x, a)
        except McuqpError:
            continue  # a window entirely in the padding
        break
    fields = [sh, sw, pad.top, pad.left, fh, fw, a.act_min, a.act_max]
    decls = (f"static const mcuqp_pool_params p@ = {{{', '.join(map(str, fields))}}};\n"
             f"static const mcuqp_dims i@ = {{{n}, {h}, {w}, {c}}};\n"
             f"static const mcuqp_dims o@ = {{{', '.join(map(str, want.shape))}}};\n")
    return Call(decls, "mcuqp_avg_pool2d_s8(&p@, &i@, in, &o@, out)", x, want)


@pytest.mark.qemu
def test_mve_avg_pool_on_qemu(tmp_path):
    rng = np.random.default_rng(91)
    calls = [avg_pool_call(rng, "double") for _ in range(30)]
    x = rng.integers(-128, 128, (1, 25, 5, 64)).astype(np.int8)  # KWS's global pool
    from mcuqp.ops.pool import PoolAttrs, avg_pool2d_s8

    want = avg_pool2d_s8(x, PoolAttrs((25, 5), (1, 1), Padding()))
    calls.append(Call("static const mcuqp_pool_params p@ = {1, 1, 0, 0, 25, 5, -128, 127};\n"
                      "static const mcuqp_dims i@ = {1, 25, 5, 64};\nstatic const mcuqp_dims o@ = {1, 1, 1, 64};\n",
                      "mcuqp_avg_pool2d_s8(&p@, &i@, in, &o@, out)", x, want))
    got, want_all = run_calls_on_qemu(tmp_path, "double", calls, mve_sources(["avg_pool2d_s8.c"]))
    assert np.array_equal(got, want_all)


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("inplace", [True, False], ids=["default-plan", "fastest-plan"])
def test_mlperf_models_pick_mve_and_match_tflm_on_m55(inplace):
    """The four MLPerf Tiny models built for the M55 run their conv, depthwise, FC, add and
    pooling layers on the Helium kernels (the default plan's in-place layers too) and equal
    the numpy reference and TFLite Micro bit for bit on QEMU mps3-an547."""
    import os
    import tempfile
    from pathlib import Path

    from mcuqp import api
    from mcuqp.oracle import tflm_run

    shared = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
    if not shared.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{shared} is missing (the shared models folder sits beside the repository)")
        pytest.skip(f"{shared} not found")
    for name in ("kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite", "ad01_int8.tflite"):
        loaded = api.load(shared / name, n_random=4, seed=11)
        with tempfile.TemporaryDirectory() as tmp:
            lib = api.compile(loaded, Path(tmp) / "m", board=BOARD, inplace=inplace)
        mve = {k.name for k in lib.generated.kernels if k.parent == MVE}
        ops = {op.kind.value for op in loaded.graph.ops}
        for kind in ("conv2d", "depthwise_conv2d", "fully_connected", "add", "avg_pool2d"):
            if kind in ops:
                assert any(m.startswith(kind) for m in mve), (name, kind, mve)
        res = api.verify(loaded, board=BOARD, n_inputs=4, inplace=inplace)
        assert res.bit_exact, (name, res.summary())
        assert np.array_equal(res.device_outputs, tflm_run(shared / name, res.inputs).reshape(res.device_outputs.shape))
