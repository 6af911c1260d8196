"""The hostile-input corpus: every case writes its input files into an empty folder and
returns the `mcuqp` command line to run there. tests/test_hostile.py runs each one as a
subprocess and requires exit status 2, exactly one line on stderr naming the problem, no
Python traceback and nothing written into the folder.

Models are built here from tests/tflite_builder.py (a valid small model, then one defect
each), so the corpus holds no binaries. Cases:
- corrupt files: empty, foreign bytes, truncations, bit flips of the flatbuffer's offsets;
- hand-crafted .tflite defects: indices out of range, zero / negative / huge dimensions,
  missing or wrong-length quantization, zero / negative / NaN / infinite scales, out-of-range
  zero points, int16 and float tensors, several subgraphs, cycles and dangling tensors,
  unsupported ops, an accumulator that can overflow int32;
- torch modules with unsupported layers or data-dependent control flow;
- bad options: unknown boards, impossible budgets, unreadable calibration data;
- the environment: no toolchain on PATH; on QEMU, a guest that hangs or faults.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tflite

from tflite_builder import ModelBuilder

DIGITS = ["--calib", "digits"]


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], list[str]]  # writes its files into the folder, returns the CLI arguments
    expect: str  # a fragment of the one-line message
    env: dict[str, str] = field(default_factory=dict)  # e.g. PATH without the toolchain
    qemu: bool = False  # runs the firmware on QEMU


# ------------------------------------------------------------------ .tflite models


def base_builder() -> ModelBuilder:
    """conv 3x3 stride 2 (1x8x8x1 -> 1x4x4x4, per-channel) -> fully connected 64 -> 10.
    Tensors: 0 x, 1 conv weights, 2 conv bias, 3 conv out, 4 fc weights, 5 fc bias, 6 out."""
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = b.add_input("x", (1, 8, 8, 1), scale=0.05, zero_point=-3)
    wscale = rng.uniform(0.005, 0.02, 4).astype(np.float32)
    w = b.add_constant("w", rng.integers(-127, 128, (4, 3, 3, 1)).astype(np.int8), scale=wscale)
    bias = b.add_constant("b", rng.integers(-500, 500, 4).astype(np.int32), scale=np.float32(0.05) * wscale)
    y = b.add_tensor("y", (1, 4, 4, 4), scale=0.1, zero_point=2)
    b.add_operator("CONV_2D", [x, w, bias], [y], {"padding": "SAME", "stride_w": 2, "stride_h": 2})
    fw = b.add_constant("fw", rng.integers(-127, 128, (10, 64)).astype(np.int8), scale=np.float32(0.01))
    fb = b.add_constant("fb", rng.integers(-500, 500, 10).astype(np.int32), scale=np.float32(0.001))
    out = b.add_tensor("out", (1, 10), scale=0.2, zero_point=-5)
    b.add_operator("FULLY_CONNECTED", [y, fw, fb], [out])
    b.mark_output(out)
    return b


def base_model() -> bytes:
    return base_builder().build()


def _tensor(b: ModelBuilder, i: int):
    return b._tensors[i]  # noqa: SLF001 - hostile cases break what the public API keeps valid


def _op(b: ModelBuilder, i: int):
    return b._operators[i]  # noqa: SLF001


def crafted(mutate: Callable[[ModelBuilder], object], **build) -> Callable[[], bytes]:
    def make() -> bytes:
        b = base_builder()
        mutate(b)
        return b.build(**build)
    return make


def _set(obj, **kw) -> None:
    for k, v in kw.items():
        setattr(obj, k, v)


def _quant(i: int, scale, zero_point=None, qdim: int = 0):
    def mutate(b: ModelBuilder) -> None:
        sc = np.atleast_1d(np.asarray(scale, np.float32))
        zp = np.zeros(sc.shape, np.int64) if zero_point is None else np.atleast_1d(np.asarray(zero_point, np.int64))
        _set(_tensor(b, i), scale=sc, zero_point=zp, quantized_dimension=qdim)
    return mutate


def _no_quant(i: int):
    return lambda b: _set(_tensor(b, i), scale=None, zero_point=None)


def _dtype(i: int, dtype):
    """Tensor i (a constant) re-encoded as `dtype`, its values unchanged."""
    def mutate(b: ModelBuilder) -> None:
        t = _tensor(b, i)
        old = np.frombuffer(b._buffers[t.buffer], t.dtype.newbyteorder("<"))  # noqa: SLF001
        b._buffers[t.buffer] = old.astype(np.dtype(dtype).newbyteorder("<")).tobytes()  # noqa: SLF001
        t.dtype = np.dtype(dtype)
    return mutate


def _int16_model() -> bytes:
    b = ModelBuilder()
    x = b.add_input("x", (1, 16), np.int16, scale=0.01, zero_point=0)
    y = b.add_tensor("y", (1, 16), np.int16, scale=1 / 32768, zero_point=0)
    b.add_operator("SOFTMAX", [x], [y], {"beta": 1.0})
    b.mark_output(y)
    return b.build()


def _float_model() -> bytes:
    b = ModelBuilder()
    x = b.add_input("x", (1, 16), np.float32)
    y = b.add_tensor("y", (1, 16), np.float32)
    b.add_operator("SOFTMAX", [x], [y], {"beta": 1.0})
    b.mark_output(y)
    return b.build()


def _cycle_model() -> bytes:
    """t1 = x + t2; t2 = t1 + x: each add needs the other's output."""
    b = ModelBuilder()
    x = b.add_input("x", (1, 8), scale=0.1, zero_point=0)
    t1 = b.add_tensor("t1", (1, 8), scale=0.2, zero_point=0)
    t2 = b.add_tensor("t2", (1, 8), scale=0.3, zero_point=0)
    b.add_operator("ADD", [x, t2], [t1])
    b.add_operator("ADD", [t1, x], [t2])
    b.mark_output(t2)
    return b.build()


def _dangling_model() -> bytes:
    """The add reads a tensor no operator computes and that is not an input."""
    b = ModelBuilder()
    x = b.add_input("x", (1, 8), scale=0.1, zero_point=0)
    ghost = b.add_tensor("ghost", (1, 8), scale=0.1, zero_point=0)
    y = b.add_tensor("y", (1, 8), scale=0.2, zero_point=0)
    b.add_operator("ADD", [x, ghost], [y])
    b.mark_output(y)
    return b.build()


def _two_writers_model() -> bytes:
    b = ModelBuilder()
    x = b.add_input("x", (1, 8), scale=0.1, zero_point=0)
    y = b.add_tensor("y", (1, 8), scale=0.2, zero_point=0)
    b.add_operator("ADD", [x, x], [y])
    b.add_operator("ADD", [x, x], [y])
    b.mark_output(y)
    return b.build()


def _unsupported_op_model() -> bytes:
    b = ModelBuilder()
    x = b.add_input("x", (1, 8), scale=0.1, zero_point=0)
    y = b.add_tensor("y", (1, 8), scale=1 / 128, zero_point=0)
    b.add_operator("EXP", [x], [y])
    b.mark_output(y)
    return b.build()


def _overflow_fc_model() -> bytes:
    """A fully connected layer whose worst case sum |w| * 255 + |bias| exceeds int32:
    70,000 inputs at zero point -128, every weight 127 (2,266,950,000 > 2,147,483,647)."""
    b = ModelBuilder()
    x = b.add_input("x", (1, 70000), scale=0.05, zero_point=-128)
    w = b.add_constant("w", np.full((2, 70000), 127, np.int8), scale=np.float32(0.001))
    bias = b.add_constant("b", np.zeros(2, np.int32), scale=np.float32(0.05 * 0.001))
    y = b.add_tensor("y", (1, 2), scale=100.0, zero_point=0)
    b.add_operator("FULLY_CONNECTED", [x, w, bias], [y])
    b.mark_output(y)
    return b.build()


def _huge_model() -> bytes:
    b = ModelBuilder()
    x = b.add_input("x", (1, 100000, 100000, 3), scale=0.1, zero_point=0)
    y = b.add_tensor("y", (1, 100000, 100000, 3), scale=0.1, zero_point=0)
    b.add_operator("MAX_POOL_2D", [x], [y], {"filter_width": 1, "filter_height": 1, "stride_w": 1, "stride_h": 1})
    b.mark_output(y)
    return b.build()


def _big_activation_model() -> bytes:
    """A 12 MB activation: no board's RAM holds its arena."""
    b = ModelBuilder()
    x = b.add_input("x", (1, 2048, 2048, 3), scale=0.1, zero_point=0)
    y = b.add_tensor("y", (1, 2048, 2048, 3), scale=0.1, zero_point=0)
    b.add_operator("MAX_POOL_2D", [x], [y], {"filter_width": 1, "filter_height": 1, "stride_w": 1, "stride_h": 1})
    b.mark_output(y)
    return b.build()


def _field_offset(table, slot: int) -> int:
    """Absolute position of the uoffset stored in `table`'s field at vtable `slot`."""
    o = table._tab.Offset(slot)  # noqa: SLF001 - locating a field inside the flatbuffer
    assert o, f"field at slot {slot} absent"
    return table._tab.Pos + o  # noqa: SLF001


def flipped(locate: Callable[[object], object], slot: int, bit: int = 31) -> Callable[[], bytes]:
    """The base model with one bit of one stored offset flipped (bit 31: it points far past
    the end of the file)."""
    def make() -> bytes:
        raw = bytearray(base_model())
        table = locate(tflite.Model.GetRootAsModel(bytes(raw), 0))
        pos = _field_offset(table, slot) + bit // 8
        raw[pos] ^= 1 << (bit % 8)
        return bytes(raw)
    return make


def flipped_element(locate: Callable[[object], object], slot: int, bit: int) -> Callable[[], bytes]:
    """The base model with one bit of the first int32 of a stored vector flipped."""
    def make() -> bytes:
        raw = bytearray(base_model())
        table = locate(tflite.Model.GetRootAsModel(bytes(raw), 0))
        start = table._tab.Vector(table._tab.Offset(slot))  # noqa: SLF001
        raw[start + bit // 8] ^= 1 << (bit % 8)
        return bytes(raw)
    return make


def truncated(fraction: float) -> Callable[[], bytes]:
    def make() -> bytes:
        raw = base_model()
        return raw[: int(len(raw) * fraction)]
    return make


def root_flip(byte: int) -> Callable[[], bytes]:
    def make() -> bytes:
        raw = bytearray(base_model())
        raw[byte] ^= 0x80
        return bytes(raw)
    return make


def tflite_case(name: str, make: Callable[[], bytes], expect: str, command: str = "compile",
                extra: tuple[str, ...] = ()) -> Case:
    def setup(d: Path) -> list[str]:
        (d / "model.tflite").write_bytes(make())
        out = {"compile": ["-o", "out"], "verify": ["--save-io", "io"]}.get(command, [])
        return [command, "model.tflite", *out, *extra]
    return Case(name, setup, expect)


_SG = lambda m: m.Subgraphs(0)  # noqa: E731
_TENSOR = lambda i: (lambda m: m.Subgraphs(0).Tensors(i))  # noqa: E731
_OPER = lambda i: (lambda m: m.Subgraphs(0).Operators(i))  # noqa: E731
NOT_TFLITE = "not a TFLite flatbuffer"

TFLITE_CASES = [
    tflite_case("empty-file", lambda: b"", NOT_TFLITE),
    tflite_case("foreign-bytes", lambda: bytes(range(256)) * 4, NOT_TFLITE),
    tflite_case("onnx-magic", lambda: b"\x08\x07\x12\x04onnx" + bytes(200), NOT_TFLITE),
    *[tflite_case(f"truncated-{int(f * 100)}pct", truncated(f), "TFLite") for f in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99)],
    tflite_case("flip-root-offset", root_flip(3), NOT_TFLITE),
    tflite_case("flip-identifier", root_flip(5), NOT_TFLITE),
    tflite_case("flip-model-opcodes", flipped(lambda m: m, 6), NOT_TFLITE),
    tflite_case("flip-model-subgraphs", flipped(lambda m: m, 8), NOT_TFLITE),
    tflite_case("flip-model-buffers", flipped(lambda m: m, 12), NOT_TFLITE),
    tflite_case("flip-subgraph-tensors", flipped(_SG, 4), NOT_TFLITE),
    tflite_case("flip-subgraph-inputs", flipped(_SG, 6), NOT_TFLITE),
    tflite_case("flip-subgraph-operators", flipped(_SG, 10), NOT_TFLITE),
    tflite_case("flip-tensor-shape", flipped(_TENSOR(0), 4), NOT_TFLITE),
    tflite_case("flip-tensor-quantization", flipped(_TENSOR(3), 12), NOT_TFLITE),
    tflite_case("flip-operator-inputs", flipped(_OPER(0), 6), NOT_TFLITE),
    tflite_case("flip-input-batch-bit", flipped_element(_TENSOR(0), 4, bit=6), "batch 1"),
    tflite_case("flip-weight-dim-bit", flipped_element(_TENSOR(4), 4, bit=30), "buffer holds"),
    tflite_case("op-input-index-out-of-range", crafted(lambda b: _op(b, 0).inputs.__setitem__(0, 99)), "tensor 99"),
    tflite_case("op-input-index-negative", crafted(lambda b: _op(b, 1).inputs.__setitem__(1, -7)), "tensor -7"),
    tflite_case("op-output-index-out-of-range", crafted(lambda b: _op(b, 1).outputs.__setitem__(0, 1000)),
                "tensor 1000"),
    tflite_case("graph-input-index-out-of-range", crafted(lambda b: b._inputs.__setitem__(0, 42)), "tensor 42"),
    tflite_case("buffer-index-out-of-range", crafted(lambda b: _set(_tensor(b, 1), buffer=77)), "buffer 77"),
    tflite_case("opcode-index-out-of-range", crafted(lambda b: _set(_op(b, 1), opcode_index=9)), "opcode 9"),
    tflite_case("zero-dimension", crafted(lambda b: _set(_tensor(b, 0), shape=(1, 0, 8, 1))), "positive"),
    tflite_case("negative-dimension", crafted(lambda b: _set(_tensor(b, 0), shape=(-1, 8, 8, 1))), "positive"),
    tflite_case("huge-dimensions", _huge_model, "elements"),
    tflite_case("arena-larger-than-any-board", _big_activation_model, "RAM"),
    tflite_case("weights-buffer-too-short", crafted(lambda b: b._buffers.__setitem__(4, bytes(10))), "buffer"),
    tflite_case("missing-input-quantization", crafted(_no_quant(0)), "quantization"),
    tflite_case("missing-weight-quantization", crafted(_no_quant(1)), "not quantized"),
    tflite_case("wrong-length-weight-scales", crafted(_quant(1, [0.01, 0.01, 0.01])), "3 scales"),
    tflite_case("scales-zero-points-mismatch", crafted(_quant(1, [0.01] * 4, [0, 0])), "zero points"),
    tflite_case("per-channel-axis-out-of-range", crafted(_quant(1, [0.01] * 4, qdim=6)), "axis 6"),
    tflite_case("zero-scale", crafted(_quant(3, 0.0, 2)), "scale 0.0"),
    tflite_case("negative-scale", crafted(_quant(0, -0.05, -3)), "scale -0.05"),
    tflite_case("nan-scale", crafted(_quant(6, float("nan"), -5)), "scale nan"),
    tflite_case("inf-weight-scale", crafted(_quant(1, [0.01, np.inf, 0.01, 0.01])), "scale inf"),
    tflite_case("zero-point-out-of-range", crafted(_quant(3, 0.1, 300)), "zero point 300"),
    tflite_case("int16-activations", _int16_model, "int16"),
    tflite_case("float-model", _float_model, "float model"),
    tflite_case("float-weights", crafted(_dtype(4, np.float32)), "float32"),
    tflite_case("int16-weights", crafted(_dtype(4, np.int16)), "int16"),
    tflite_case("two-subgraphs", crafted(lambda b: None, subgraphs=2), "2 subgraphs"),
    tflite_case("no-subgraph", crafted(lambda b: None, subgraphs=0), "no subgraph"),
    tflite_case("cycle", _cycle_model, "cycle"),
    tflite_case("dangling-tensor", _dangling_model, "used before it is produced"),
    tflite_case("two-writers", _two_writers_model, "written by operators"),
    tflite_case("unsupported-op", _unsupported_op_model, "EXP"),
    tflite_case("conv-output-shape-wrong", crafted(lambda b: _set(_tensor(b, 3), shape=(1, 5, 5, 4))), "shape"),
    tflite_case("accumulator-overflow", _overflow_fc_model, "int32 accumulator"),
    tflite_case("verify-corrupt", truncated(0.5), "TFLite", command="verify"),
    tflite_case("plan-corrupt", root_flip(3), NOT_TFLITE, command="plan"),
]

# ------------------------------------------------------------------ torch modules


def torch_case(name: str, cls: str, expect: str) -> Case:
    def setup(d: Path) -> list[str]:
        import torch

        from hostile.torch_modules import MODULES

        torch.manual_seed(0)
        torch.save(MODULES[cls]().eval(), d / "net.pt")
        return ["compile", "net.pt", *DIGITS, "-o", "out"]
    return Case(name, setup, expect)


def _state_dict(d: Path) -> list[str]:
    import torch

    torch.save({"fc.weight": torch.zeros(10, 64)}, d / "net.pt")
    return ["compile", "net.pt", *DIGITS, "-o", "out"]


def _corrupt_pt(d: Path) -> list[str]:
    (d / "net.pt").write_bytes(b"PK\x03\x04" + bytes(range(200)))
    return ["compile", "net.pt", *DIGITS, "-o", "out"]


TORCH_CASES = [
    torch_case("torch-gelu", "GeluNet", "gelu"),
    torch_case("torch-lstm", "LstmNet", "not supported"),
    torch_case("torch-conv-transpose", "ConvTransposeNet", "ConvTranspose2d"),
    torch_case("torch-upsample", "UpsampleNet", "mode='nearest'"),
    torch_case("torch-data-dependent-branch", "BranchNet", "BranchNet"),
    torch_case("torch-data-dependent-loop", "LoopNet", "LoopNet"),
    torch_case("torch-wrong-input-shape", "WrongShapeNet", "cannot be multiplied"),
    torch_case("torch-infinite-weights", "InfNet", "infinite"),
    torch_case("torch-nan-weight", "NanWeightNet", "NaN"),
    torch_case("torch-two-outputs", "TwoOutputNet", "tuple"),
    torch_case("torch-no-layers", "IdentityNet", "no supported layers"),
    torch_case("torch-grouped-conv", "GroupedConvNet", "groups=2"),
    Case("torch-state-dict", _state_dict, "not an nn.Module"),
    Case("torch-corrupt-file", _corrupt_pt, "cannot load"),
]

# ------------------------------------------------------------------ options and environment


def _with_model(args: list[str], model: Callable[[], bytes] = base_model) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        (d / "model.tflite").write_bytes(model())
        return args
    return setup


def _calib_file(data: np.ndarray | bytes) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        import torch

        from hostile.torch_modules import MODULES

        torch.save(MODULES["GeluNet"]().eval(), d / "net.pt")
        if isinstance(data, bytes):
            (d / "calib.npy").write_bytes(data)
        else:
            np.save(d / "calib.npy", data)
        return ["compile", "net.pt", "--calib", "calib.npy", "-o", "out"]
    return setup


NO_TOOLCHAIN = {"PATH": "/nonexistent"}

OPTION_CASES = [
    Case("unknown-board-compile", _with_model(["compile", "model.tflite", "--board", "stm32-nosuch", "-o", "out"]),
         "stm32-nosuch"),
    Case("unknown-board-verify", _with_model(["verify", "model.tflite", "--board", "esp32", "--save-io", "io"]),
         "esp32"),
    Case("unknown-board-plan", _with_model(["plan", "model.tflite", "--board", "mps9"]), "mps9"),
    Case("impossible-flash-budget", _with_model(["compile", "model.tflite", "--flash", "1000", "-o", "out"]),
         "--flash"),
    Case("impossible-ram-budget", _with_model(["compile", "model.tflite", "--ram", "300", "-o", "out"]), "--ram"),
    Case("stack-larger-than-ram", _with_model(["compile", "model.tflite", "--ram", "4096", "--stack", "8192",
                                               "-o", "out"]), "RAM"),
    Case("missing-model-file", lambda d: ["compile", "nosuch.tflite", "-o", "out"], "does not exist"),
    Case("unknown-model-format", lambda d: (d / "m.onnx").write_bytes(b"x") and ["compile", "m.onnx", "-o", "out"],
         "unsupported model file"),
    Case("output-is-a-file", lambda d: (d / "out").write_text("keep me") and _with_model(
        ["compile", "model.tflite", "-o", "out"])(d), "is a file"),
    Case("calib-wrong-shape", _calib_file(np.zeros((4, 3, 5, 5), np.float32)), "does not run on an input of shape"),
    Case("calib-integer-dtype", _calib_file(np.zeros((4, 1, 8, 8), np.int64)), "float"),
    Case("calib-not-npy", _calib_file(b"not a numpy file"), "calibration data"),
    Case("calib-unknown-dataset", _with_model(["verify", "model.tflite", "--calib", "imagenet", "--save-io", "io"]),
         "imagenet"),
    Case("torch-without-calib", lambda d: _calib_file(np.zeros((2, 1, 8, 8), np.float32))(d)[:2] + ["-o", "out"],
         "--calib"),
    Case("no-toolchain-verify", _with_model(["verify", "model.tflite", "--save-io", "io"]), "not found",
         env=NO_TOOLCHAIN),
    Case("no-toolchain-budget", _with_model(["compile", "model.tflite", "--flash", "100000", "-o", "out"]),
         "not found", env=NO_TOOLCHAIN),
]

# ------------------------------------------------------------------ generated folders (verify --sources)


def _library(d: Path, edit: Callable[[str], str] | None = None, model: Callable[[], bytes] = base_model) -> None:
    """model.tflite and the library generated from it in lib/, model.c passed through `edit`."""
    from mcuqp import api

    (d / "model.tflite").write_bytes(model())
    api.compile(api.load(d / "model.tflite"), d / "lib")
    if edit is not None:
        c = d / "lib" / "model.c"
        new = edit(c.read_text())
        assert new != c.read_text(), "the edit did not apply"
        c.write_text(new)


def _sources_case(name: str, edit: Callable[[str], str] | None, expect: str, extra: tuple[str, ...] = (),
                  qemu: bool = True, after: Callable[[Path], None] | None = None) -> Case:
    def setup(d: Path) -> list[str]:
        _library(d, edit)
        if after is not None:
            after(d)
        return ["verify", "model.tflite", "--sources", "lib", "--inputs", "4", "--save-io", "io", *extra]
    return Case(name, setup, expect, qemu=qemu)


def _hang(c: str) -> str:
    """An endless loop after the first layer."""
    return c.replace("    MCUQP_LAYER_HOOK(0);\n", "    MCUQP_LAYER_HOOK(0);\n    for (;;) {\n        __asm__ volatile(\"\");\n    }\n", 1)


def _fault(c: str) -> str:
    """The fully connected layer (layer 2, after the conv and the flatten) reads its input
    from unmapped memory."""
    m = re.search(r"mcuqp_fully_connected_s8\(&l\d+_params, &l\d+_quant, 1, 64, ", c)
    start = m.end()
    end = c.index(",", start)
    return c[:start] + "(const int8_t *)0xF0000000u" + c[end:]


def _other_model(d: Path) -> None:
    """model.tflite replaced by another model after lib/ was generated."""
    b = base_builder()
    _tensor(b, 6).zero_point = np.array([-4], np.int64)
    (d / "model.tflite").write_bytes(b.build())


SOURCES_CASES = [
    _sources_case("guest-hangs", _hang, "did not finish within 5 s", extra=("--timeout", "5")),
    _sources_case("guest-faults", _fault, "in layer 2 (fully_connected_1"),
    _sources_case("sources-from-another-model", None, "generated from another model", qemu=False, after=_other_model),
    _sources_case("sources-without-header", None, "no generated model header", qemu=False,
                  after=lambda d: (d / "lib" / "model.h").unlink()),
    _sources_case("sources-other-rounding", None, "--rounding double", extra=("--rounding", "single"), qemu=False),
    _sources_case("sources-other-board", None, "--board mps2-an386", extra=("--board", "mps3-an547"), qemu=False),
]

CASES: list[Case] = [*TFLITE_CASES, *TORCH_CASES, *OPTION_CASES, *SOURCES_CASES]
