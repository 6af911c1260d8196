"""Helpers shared by the conv2d / depthwise conv2d / fully connected kernel tests
(test_kernels_conv_fc.py: portable kernels; test_kernels_dsp.py: DSP kernels): ctypes
wrappers for the C kernels, random int8 cases and quantization, and the single-file
model that runs a list of layers on QEMU. Not a test module (imported as `kernel_cases`:
tests/ is on sys.path under pytest's default import mode).

`edges=True` (used by the DSP tests) widens the random draws with the extra corner cases
those kernels have paths for: -128 in sign-only weights, wrapping int32 biases, SAME
padding, INT32_MIN multipliers and dead channels (multiplier 0), extreme input zero
points. With `edges=False` the draws are exactly those of the portable-kernel tests."""
from __future__ import annotations

import ctypes as C
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from mcuqp.ir import Padding, Requant
from mcuqp.ops.common import conv_requant
from mcuqp.ops.conv2d import ConvAttrs, conv2d_s8
from mcuqp.ops.depthwise_conv2d import depthwise_conv2d_s8
from mcuqp.ops.fully_connected import FullyConnectedAttrs, fully_connected_s8
import hostlib
from hostlib import ConvParams, FcParams, dims, ptr

OK, ERR = 0, -1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def i8(rng: np.random.Generator, shape, lo: int = -128, hi: int = 127) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


# ---- C call wrappers ---------------------------------------------------------------


def _bias_ptr(bias: np.ndarray | None):
    if bias is None:
        return None, None
    b = np.ascontiguousarray(bias, dtype=np.int32)
    return ptr(b, C.c_int32), b


def c_conv(lib, depthwise: bool, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, a: ConvAttrs,
           out_shape: tuple[int, ...], fill: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    # Garbage in the output buffer, so that an output the kernel forgets cannot pass.
    y = np.ascontiguousarray(fill if fill is not None else np.full(out_shape, 77, np.int8))
    p = ConvParams(
        input_offset=a.input_offset, output_offset=a.output_offset, stride_h=a.stride[0], stride_w=a.stride[1],
        pad_h=a.padding.top, pad_w=a.padding.left, dilation_h=a.dilation[0], dilation_w=a.dilation[1],
        depth_multiplier=a.depth_multiplier, act_min=a.act_min, act_max=a.act_max,
    )
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    bp, _b = _bias_ptr(bias)
    fn = lib.mcuqp_depthwise_conv2d_s8 if depthwise else lib.mcuqp_conv2d_s8
    rc = fn(C.byref(p), C.byref(rq), C.byref(dims(x.shape)), ptr(x), C.byref(dims(w.shape)), ptr(w), bp,
            C.byref(dims(y.shape)), ptr(y))
    return rc, y


def c_fc(lib, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, a: FullyConnectedAttrs,
         fill: np.ndarray | None = None) -> tuple[int, np.ndarray]:
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    y = np.ascontiguousarray(fill if fill is not None else np.full((x.shape[0], w.shape[0]), 77, np.int8))
    p = FcParams(a.input_offset, a.filter_offset, a.output_offset, a.act_min, a.act_max)
    rq, _keep = hostlib.requant(a.requant.multiplier, a.requant.shift)
    bp, _b = _bias_ptr(bias)
    rc = lib.mcuqp_fully_connected_s8(C.byref(p), C.byref(rq), C.c_int32(x.shape[0]), C.c_int32(w.shape[1]), ptr(x),
                                      C.c_int32(w.shape[0]), ptr(w), bp, ptr(y))
    return rc, y


# ---- random quantization -----------------------------------------------------------


@dataclass
class Coverage:
    """What the random cases reached; asserted so that the sweep cannot silently go soft."""

    shifts: set[int] = field(default_factory=set)
    per_tensor: int = 0
    per_channel: int = 0
    no_bias: int = 0
    narrow_clamp: int = 0
    saturated_low: int = 0
    saturated_high: int = 0
    interior: int = 0  # outputs strictly inside the clamp

    def add_output(self, y: np.ndarray, lo: int, hi: int) -> None:
        self.saturated_low += int(np.count_nonzero(y == -128))
        self.saturated_high += int(np.count_nonzero(y == 127))
        self.interior += int(np.count_nonzero((y > lo) & (y < hi)))

    def check(self) -> None:
        assert max(self.shifts) >= 1, "no effective scale above one"
        assert min(self.shifts) <= -30, "no tiny effective scale"
        assert min(self.per_tensor, self.per_channel, self.no_bias, self.narrow_clamp) > 0, self
        assert min(self.saturated_low, self.saturated_high) > 0, "outputs never saturated"
        assert self.interior > 1000, "too few unsaturated outputs"


def random_requant(rng: np.random.Generator, channels: int, acc_std: float, rounding: str,
                   cov: Coverage | None = None, edges: bool = False) -> Requant:
    """Multipliers from conv_requant over float32 scales; most effective scales map the
    accumulator's spread onto int8, the rest are far above one or near 2^-31. With `edges`,
    also INT32_MIN multipliers (double rounding) and dead channels."""
    regimes = ["typical"] * 4 + ["large", "tiny", "wide", "int32_min"] if edges else \
        ["typical"] * 3 + ["large", "tiny", "wide"]
    regime = rng.choice(regimes)
    if regime == "int32_min" and rounding == "double":
        # Not a QuantizeMultiplier output, but accepted by the kernels: their plain path.
        m = rng.integers(1 << 30, 1 << 31, channels, dtype=np.int64)
        m[rng.integers(0, channels)] = INT32_MIN
        return Requant(m.astype(np.int32), rng.integers(-12, 2, channels).astype(np.int32))
    if regime in ("typical", "int32_min"):
        target = 40.0 / acc_std * 2.0 ** rng.uniform(-3, 4)
    elif regime == "large":
        target = 2.0 ** rng.uniform(0.1, 29.9 if rng.random() < 0.2 else 8.0)
    elif regime == "tiny":
        target = 2.0 ** rng.uniform(-32.5, -29.0)
    else:
        target = 40.0 / acc_std
    per_channel = channels > 1 and rng.random() < 0.7
    spread = 2.0 ** rng.uniform(-(14 if regime == "wide" else 2), 2, channels if per_channel else 1)
    spread = np.minimum(spread, 2.0**29.9 / target)  # shift 30 at most
    if edges and per_channel and rng.random() < 0.2:
        spread[rng.random(channels) < 0.3] = 0.0  # dead channels: QuantizeMultiplier gives (0, 0)
    in_scale = float(np.float32(10 ** rng.uniform(-3, 0)))
    w_ref = float(10 ** rng.uniform(-4, -1))
    out_scale = float(np.float32(in_scale * w_ref / target))
    rq = conv_requant(in_scale, (w_ref * spread).astype(np.float32), out_scale, rounding)
    if cov is not None:
        cov.shifts.update(int(s) for s in rq.shift)
        cov.per_channel += per_channel
        cov.per_tensor += not per_channel
    return rq


def random_clamp(rng: np.random.Generator, out_zp: int, cov: Coverage | None = None) -> tuple[int, int]:
    kind = rng.random()
    if kind < 0.5:
        return -128, 127
    if cov is not None:
        cov.narrow_clamp += 1
    if kind < 0.75:
        return max(-128, out_zp), 127  # ReLU
    lo = int(rng.integers(-128, 100))
    return lo, int(rng.integers(lo, 128))


def random_weights(rng: np.random.Generator, shape, edges: bool = False) -> np.ndarray:
    r = rng.random()
    if r < 0.15:
        return i8(rng, shape, -2, 2)
    if r < 0.25:  # sign only; with `edges` -128 too: any int8 is accepted
        return np.where(rng.random(shape) < 0.5, -128 if edges else -127, 127).astype(np.int8)
    return i8(rng, shape, -127, 127)


def random_input(rng: np.random.Generator, shape) -> np.ndarray:
    r = rng.random()
    if r < 0.05:
        return np.full(shape, rng.choice([-128, 127]), np.int8)  # extreme accumulators
    return i8(rng, shape)


def random_bias(rng: np.random.Generator, channels: int, acc_std: float, cov: Coverage | None = None,
                edges: bool = False) -> np.ndarray | None:
    r = rng.random()
    if r < 0.2:
        if cov is not None:
            cov.no_bias += 1
        return None
    if r < 0.25:
        return rng.integers(-(1 << 30), 1 << 30, channels).astype(np.int32)
    if edges and r < 0.28:
        return rng.integers(INT32_MIN, INT32_MAX + 1, channels, dtype=np.int64).astype(np.int32)  # wraps
    return np.clip(rng.normal(0, 2 * acc_std, channels), INT32_MIN, INT32_MAX).astype(np.int32)


def acc_spread(taps: int, input_offset: int, w: np.ndarray) -> float:
    w_std = float(np.std(w.astype(np.float64))) or 1.0
    return max(1.0, np.sqrt(taps) * w_std * np.hypot(74.0, input_offset))


def random_padding(rng: np.random.Generator, eff_h: int, eff_w: int, edges: bool = False) -> Padding:
    mode = rng.choice(["zero", "random", "random", "same", "over"] if edges else ["zero", "random", "random", "over"])
    if mode == "zero":
        return Padding()
    if mode == "same":
        return Padding((eff_h - 1) // 2, eff_h // 2, (eff_w - 1) // 2, eff_w // 2)
    extra = 2 if mode == "over" else 0  # "over": some windows lie entirely in the padding
    t, b = (int(v) for v in rng.integers(0, eff_h + extra, 2))
    lft, r = (int(v) for v in rng.integers(0, eff_w + extra, 2))
    return Padding(top=t, bottom=b, left=lft, right=r)


# ---- random cases: the draws after the shapes ----------------------------------------


def conv_case(rng: np.random.Generator, depthwise: bool, a: ConvAttrs, x_shape: tuple[int, ...], kh: int, kw: int,
              cout: int, taps: int, rounding: str, cov: Coverage | None = None, edges: bool = False):
    """Input, weights, quantization and bias of a conv case whose shapes and geometry (`a`) are drawn."""
    x = random_input(rng, x_shape)
    cin = x_shape[3]
    w = random_weights(rng, (1, kh, kw, cout) if depthwise else (cout, kh, kw, cin), edges)
    in_zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
    if edges and rng.random() < 0.1:
        in_zp = int(rng.choice([-128, 127]))
    std = acc_spread(taps, -in_zp, w)
    lo, hi = random_clamp(rng, out_zp, cov)
    a = replace(a, input_offset=-in_zp, output_offset=out_zp, act_min=lo, act_max=hi,
                requant=random_requant(rng, cout, std, rounding, cov, edges))
    return x, w, random_bias(rng, cout, std, cov, edges), a


def fc_case(rng: np.random.Generator, batches: int, cin: int, cout: int, rounding: str, cov: Coverage | None = None,
            edges: bool = False):
    """Input, weights, quantization and bias of a fully connected case of the given shape."""
    x = random_input(rng, (batches, cin))
    w = random_weights(rng, (cout, cin), edges)
    in_zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
    w_zp = 0 if rng.random() < 0.6 else int(rng.integers(-128, 128))
    std = acc_spread(cin, -in_zp, w.astype(np.int16) - w_zp)
    lo, hi = random_clamp(rng, out_zp, cov)
    a = FullyConnectedAttrs(input_offset=-in_zp, filter_offset=-w_zp, output_offset=out_zp, act_min=lo, act_max=hi,
                            requant=random_requant(rng, cout, std, rounding, cov, edges))
    return x, w, random_bias(rng, cout, std, cov, edges), a


# ---- bad arguments ---------------------------------------------------------------------


def base_conv(depthwise: bool):
    """A valid 5x5x2 -> 5x5x4 3x3 conv (depth multiplier 2 if depthwise), to spoil one argument at a time."""
    rng = np.random.default_rng(5)
    x = i8(rng, (1, 5, 5, 2))
    w = i8(rng, (1, 3, 3, 4) if depthwise else (4, 3, 3, 2))
    a = ConvAttrs(stride=(1, 1), padding=Padding(1, 1, 1, 1), depth_multiplier=2 if depthwise else 1,
                  requant=Requant([1 << 30] * 4, [-8] * 4))
    return x, w, a


BAD_CONV_ATTRS = {
    "stride0": {"stride": (0, 1)},
    "dilation0": {"dilation": (1, 0)},
    "negative_pad": {"padding": Padding(-1, 1, 1, 1)},
    "input_offset": {"input_offset": 129},
    "output_offset": {"output_offset": 128},
    "clamp_order": {"act_min": 10, "act_max": 9},
    "clamp_range": {"act_min": -129},
    "requant_count": {"requant": Requant([1 << 30] * 3, [0] * 3)},
    "shift_high": {"requant": Requant([1 << 30], [31])},
    "shift_low": {"requant": Requant([1 << 30] * 4, [0, 0, -32, 0])},
}


# ---- on the target: layers as one model.c ------------------------------------------


@dataclass
class Layer:
    kind: str  # "conv2d" | "depthwise" | "fc"
    x_shape: tuple[int, ...]
    w: np.ndarray
    bias: np.ndarray | None
    attrs: ConvAttrs | FullyConnectedAttrs

    def run(self, x: np.ndarray, rounding: str) -> np.ndarray:
        if self.kind == "fc":
            return fully_connected_s8(x, self.w, self.bias, self.attrs, rounding)
        ref = depthwise_conv2d_s8 if self.kind == "depthwise" else conv2d_s8
        return ref(x, self.w, self.bias, self.attrs, rounding)

    def macs(self, out_size: int) -> int:
        if self.kind == "fc":
            return out_size * self.w.shape[1]
        return out_size * self.w.shape[1] * self.w.shape[2] * (1 if self.kind == "depthwise" else self.w.shape[3])


def target_conv_layer(rng: np.random.Generator, make_requant: Callable[[int, float], Requant], kind: str,
                      x_shape, kh, kw, cout, stride=(1, 1), pad=Padding(), dil=(1, 1), dm=1,
                      edges: bool = False) -> Layer:
    """A conv layer for the QEMU model; make_requant(cout, accumulator spread) draws its requantization."""
    cin = x_shape[3]
    w = random_weights(rng, (1, kh, kw, cout) if kind == "depthwise" else (cout, kh, kw, cin), edges)
    zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
    std = acc_spread(kh * kw * (1 if kind == "depthwise" else cin), -zp, w)
    a = ConvAttrs(stride=stride, padding=pad, dilation=dil, depth_multiplier=dm, input_offset=-zp,
                  output_offset=out_zp, requant=make_requant(cout, std), act_min=max(-128, out_zp))
    return Layer(kind, x_shape, w, rng.integers(-20000, 20000, cout).astype(np.int32), a)


def target_fc_layer(rng: np.random.Generator, rounding: str, cin: int, cout: int, w_zp: int = 0) -> Layer:
    w = i8(rng, (cout, cin), -127, 127)
    zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
    a = FullyConnectedAttrs(input_offset=-zp, filter_offset=-w_zp, output_offset=out_zp,
                            requant=conv_requant(0.05, 0.004, 0.05 * 0.004 * np.sqrt(cin) * 74 * 74 / 40, rounding))
    return Layer("fc", (1, cin), w, rng.integers(-20000, 20000, cout).astype(np.int32), a)


def c_array(ctype: str, name: str, values: np.ndarray) -> str:
    return f"static const {ctype} {name}[] = {{{', '.join(str(int(v)) for v in np.ravel(values))}}};\n"


def target_model(layers: list[Layer], out_shapes: list[tuple[int, ...]]) -> tuple[str, str]:
    """model.c / model.h running every layer on its slice of one input and one output buffer."""
    decls, calls = [], []
    in_off = out_off = 0
    for i, (ly, out_shape) in enumerate(zip(layers, out_shapes)):
        a = ly.attrs
        decls.append(c_array("int8_t", f"w{i}", ly.w))
        decls.append(c_array("int32_t", f"b{i}", ly.bias))
        decls.append(c_array("int32_t", f"m{i}", a.requant.multiplier))
        decls.append(c_array("int32_t", f"s{i}", a.requant.shift))
        decls.append(f"static const mcuqp_requant q{i} = {{m{i}, s{i}, {a.requant.multiplier.size}, 0}};\n")
        if ly.kind == "fc":
            decls.append(f"static const mcuqp_fc_params p{i} = {{{a.input_offset}, {a.filter_offset}, "
                         f"{a.output_offset}, {a.act_min}, {a.act_max}}};\n")
            call = (f"mcuqp_fully_connected_s8(&p{i}, &q{i}, {ly.x_shape[0]}, {ly.x_shape[1]}, input + {in_off}, "
                    f"{ly.w.shape[0]}, w{i}, b{i}, output + {out_off})")
        else:
            fields = [a.input_offset, a.output_offset, *a.stride, a.padding.top, a.padding.left, *a.dilation,
                      a.depth_multiplier, a.act_min, a.act_max]
            decls.append(f"static const mcuqp_conv_params p{i} = {{{', '.join(map(str, fields))}}};\n")
            for tag, shape in (("i", ly.x_shape), ("f", ly.w.shape), ("o", out_shape)):
                decls.append(f"static const mcuqp_dims {tag}{i} = {{{', '.join(map(str, shape))}}};\n")
            fn = "mcuqp_depthwise_conv2d_s8" if ly.kind == "depthwise" else "mcuqp_conv2d_s8"
            call = f"{fn}(&p{i}, &q{i}, &i{i}, input + {in_off}, &f{i}, w{i}, b{i}, &o{i}, output + {out_off})"
        calls.append(f"    if ({call} != MCUQP_OK) {{\n        return {i + 1};\n    }}\n    MCUQP_LAYER_HOOK({i});\n")
        in_off += int(np.prod(ly.x_shape))
        out_off += int(np.prod(out_shape))
    from mcuqp.codegen import harness

    source = ('#include "model.h"\n#include "mcuqp_nn.h"\n#include "mcuqp_profile.h"\n\n' + "".join(decls) +
              f"\nstatic int {harness.LAYERS}(const int8_t *input, int8_t *output)\n{{\n" + "".join(calls) +
              "    return 0;\n}\n" + harness.api_source(in_off, out_off))
    return source, harness.api_header(in_off, out_off)


def run_layers_on_qemu(tmp_path, board: str, rounding: str, layers: list[Layer], kernel_sources: list,
                       n: int = 3) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Builds `layers` as one model with the given kernel .c files for `board`, runs n random
    inputs (seed 32) on QEMU; returns the outputs, the numpy outputs and the executed
    instructions per MAC of each layer."""
    from mcuqp.target import build, qemu

    rng = np.random.default_rng(32)
    xs = [np.concatenate([random_input(rng, ly.x_shape) for _ in range(n)]) for ly in layers]
    outs = [ly.run(x, rounding) for ly, x in zip(layers, xs)]
    out_shapes = [(ly.x_shape[0], *o.shape[1:]) for ly, o in zip(layers, outs)]
    src, hdr = target_model(layers, out_shapes)
    (tmp_path / "model.c").write_text(src)
    (tmp_path / "model.h").write_text(hdr)
    srcs = [tmp_path / "model.c", *kernel_sources, *build.platform_sources(board)]
    defines = ("MCUQP_SINGLE_ROUNDING=1",) if rounding == "single" else ()
    fw = build.build_firmware(srcs, [tmp_path, hostlib.RUNTIME_DIR / "include"], board, tmp_path / "fw",
                              defines=defines)
    inputs = np.stack([np.concatenate([x.reshape(n, *ly.x_shape)[k].ravel() for ly, x in zip(layers, xs)])
                       for k in range(n)])
    want = np.stack([np.concatenate([o.reshape(n, -1)[k] for o in outs]) for k in range(n)])
    r = qemu.run_firmware(fw, board, inputs, want.shape[1])
    per_mac = [r.layer_instructions[0][i] / ly.macs(int(np.prod(shape)))
               for i, (ly, shape) in enumerate(zip(layers, out_shapes))]
    print(board, " ".join(f"{ly.kind}:{v:.2f}" for ly, v in zip(layers, per_mac)), "instructions/MAC")
    return r.outputs, want, per_mac


def conv_params(a: ConvAttrs) -> ConvParams:
    """The C parameter struct of a conv/depthwise op."""
    return ConvParams(
        input_offset=a.input_offset, output_offset=a.output_offset, stride_h=a.stride[0], stride_w=a.stride[1],
        pad_h=a.padding.top, pad_w=a.padding.left, dilation_h=a.dilation[0], dilation_w=a.dilation[1],
        depth_multiplier=a.depth_multiplier, act_min=a.act_min, act_max=a.act_max,
    )


def cross_compile_errors(source: str, out_dir, cpu: str, single_rounding: int) -> str:
    """arm-none-eabi-gcc -Wall -Wextra -Werror on runtime_c/src/<source> for `cpu`; the
    compiler's complaints ('' when it compiles cleanly)."""
    import subprocess

    r = subprocess.run(
        ["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c99",
         f"-DMCUQP_SINGLE_ROUNDING={single_rounding}", "-I", str(hostlib.RUNTIME_DIR / "include"), "-c",
         str(hostlib.RUNTIME_DIR / "src" / source), "-o", str(out_dir / "k.o")],
        capture_output=True, text=True,
    )
    return "" if r.returncode == 0 else r.stderr or f"exit {r.returncode}"

