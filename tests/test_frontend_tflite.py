"""TFLite import: graph structure, TFLite's padding arithmetic, constant folding, errors,
and small hand-built models whose numpy-reference output must equal TFLite Micro's."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuqp import ir
from mcuqp.errors import McuqpError, UnsupportedModelError
from mcuqp.frontends.tflite import import_tflite, load_tflite
from mcuqp.ops.tflite_lowering import same_or_valid_padding
from tflite_builder import ModelBuilder
import prereq

SHARED_MODELS = prereq.SHARED_MODELS


@pytest.fixture
def needs_shared():
    prereq.require_shared_models()


def _write(tmp_path: Path, b: ModelBuilder, name: str = "m.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(b.build())
    return path


def _equal_to_tflm(path: Path, n: int = 48, seed: int = 0) -> ir.Graph:
    """Import `path`, run the reference and TFLite Micro on n random inputs, require equality
    and a non-constant output (so that equality is not trivially true)."""
    prereq.require_module("tflite_micro")
    from mcuqp.oracle import first_mismatch, tflm_run
    from mcuqp.reference.interpreter import run

    graph = load_tflite(path)
    x = np.random.default_rng(seed).integers(-128, 128, size=(n, *graph.input.shape[1:]), dtype=np.int8)
    ours, theirs = run(graph, x), tflm_run(path, x)
    assert ours.shape == theirs.shape
    if not np.array_equal(ours, theirs):
        pytest.fail(f"reference != TFLite Micro; first mismatch: {first_mismatch(graph, path, x)}")
    assert np.unique(theirs).size > 4, "degenerate test: the output is (nearly) constant"
    return graph


def _weights(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-127, 128, size=shape).astype(np.int8)


# ------------------------------------------------------------------------ padding


@pytest.mark.parametrize(
    ("same", "size", "k", "s", "d", "expected"),
    [
        (True, 49, 10, 2, 1, (25, 4, 5)),  # KWS first conv, rows: the odd pixel goes after
        (True, 10, 4, 2, 1, (5, 1, 1)),
        (True, 96, 3, 2, 1, (48, 0, 1)),
        (True, 8, 3, 1, 2, (8, 2, 2)),  # dilation 2: effective 5x5 filter
        (True, 7, 1, 3, 1, (3, 0, 0)),
        (False, 28, 3, 1, 1, (26, 0, 0)),
        (False, 9, 3, 2, 2, (3, 0, 0)),
        (False, 10, 3, 4, 1, (2, 0, 0)),
    ],
)
def test_same_or_valid_padding(same, size, k, s, d, expected) -> None:
    assert same_or_valid_padding(same, size, k, s, d) == expected


# ------------------------------------------------------------------ shared models


@pytest.mark.usefixtures("needs_shared")
def test_kws_structure_and_parameters() -> None:
    imported = import_tflite(SHARED_MODELS / "mlperf_tiny/kws_ref_model.tflite")
    g = imported.graph
    kinds = [op.kind for op in g.ops]
    assert kinds == [ir.OpKind.CONV2D] + [ir.OpKind.DEPTHWISE_CONV2D, ir.OpKind.CONV2D] * 4 + [
        ir.OpKind.AVG_POOL2D, ir.OpKind.RESHAPE, ir.OpKind.FULLY_CONNECTED, ir.OpKind.SOFTMAX]
    first = g.ops[0].attrs
    assert first.stride == (2, 2)
    assert first.padding == ir.Padding(top=4, bottom=5, left=1, right=1)
    assert first.input_offset == -83 and first.output_offset == -128
    assert first.requant.multiplier.shape == (64,)  # per-channel
    assert first.act_min == -128  # fused ReLU at zero point -128
    assert g.input.shape == (1, 49, 10, 1) and g.output.shape == (1, 12)
    assert g.input.quant.zp == 83 and g.input.quant.scale.dtype == np.float32
    w = g.tensors[g.ops[0].inputs[1]]
    assert w.data.dtype == np.int8 and w.shape == (64, 10, 4, 1) and w.quant.axis == 0
    b = g.tensors[g.ops[0].inputs[2]]
    assert b.data.dtype == np.int32 and b.shape == (64,)
    dw = g.ops[1]
    assert g.tensors[dw.inputs[1]].quant.axis == 3 and dw.attrs.depth_multiplier == 1
    # IR names are the TFLite names and map back to their indices.
    assert imported.tensor_index[g.inputs[0]] == 0 and g.inputs[0] == "input_1"
    assert imported.tensor_index[g.outputs[0]] == 34 and g.outputs[0] == "Identity"
    assert imported.op_index[g.ops[-1].name] == 12
    assert g.ops[0].source == "tflite op 0 CONV_2D"


@pytest.mark.usefixtures("needs_shared")
@pytest.mark.parametrize("name", ["digits_int8.tflite", "mixed28_int8.tflite"])
def test_flatten_shape_subgraph_is_folded(name: str) -> None:
    imported = import_tflite(SHARED_MODELS / "fixtures" / name)
    g = imported.graph
    assert len(imported.folded_ops) == 3  # SHAPE, STRIDED_SLICE, PACK
    reshape = next(op for op in g.ops if op.kind is ir.OpKind.RESHAPE)
    assert reshape.inputs == [reshape.inputs[0]]  # the folded shape tensor is gone
    assert g.tensors[reshape.outputs[0]].shape == (1, int(np.prod(g.tensors[reshape.inputs[0]].shape)))
    assert all(t.dtype in (ir.DType.INT8, ir.DType.INT32) for t in g.tensors.values())
    assert not any("Shape" in t.name or "strided_slice" in t.name for t in g.tensors.values())


@pytest.mark.usefixtures("needs_shared")
def test_all_shared_models_import() -> None:
    paths = sorted(SHARED_MODELS.glob("*/*.tflite"))
    assert len(paths) == 6
    for path in paths:
        g = load_tflite(path)
        g.validate()
        assert g.name == path.stem
        assert len(set(g.tensors)) == len(g.tensors)


# ---------------------------------------------------------- hand-built models vs TFLM


def _conv_model(*, depthwise: bool, multiplier: int = 1, padding: str = "SAME", stride: int = 2,
                dilation: int = 1, act: str = "NONE", per_channel: bool = True, bias: bool = True,
                in_shape=(1, 10, 8, 3), k: int = 3, cout: int = 5) -> ModelBuilder:
    rng = np.random.default_rng(11)
    cin = in_shape[3]
    b = ModelBuilder()
    x = b.add_input("x", in_shape, scale=0.05, zero_point=-3)
    cout = cin * multiplier if depthwise else cout
    wshape = (1, k, k, cout) if depthwise else (cout, k, k, cin)
    wscale = rng.uniform(0.005, 0.02, cout).astype(np.float32) if per_channel else np.float32(0.01)
    w = b.add_constant("w", _weights(rng, wshape), scale=wscale, quantized_dimension=3 if depthwise else 0)
    inputs = [x, w]
    if bias:
        bscale = np.float32(0.05) * np.atleast_1d(wscale).astype(np.float32)
        inputs.append(b.add_constant("b", rng.integers(-3000, 3000, cout).astype(np.int32),
                                     scale=np.broadcast_to(bscale, (cout,)) if per_channel else bscale))
    else:
        inputs.append(-1)
    eff = (k - 1) * dilation + 1
    oh, _, _ = same_or_valid_padding(padding == "SAME", in_shape[1], k, stride, dilation)
    ow, _, _ = same_or_valid_padding(padding == "SAME", in_shape[2], k, stride, dilation)
    assert oh > 0 and ow > 0 and eff <= max(in_shape[1:3]) + 2
    y = b.add_tensor("y", (1, oh, ow, cout), scale=0.2 if depthwise else 0.3, zero_point=4)
    options = {"padding": padding, "stride_w": stride, "stride_h": stride, "fused_activation_function": act,
               "dilation_w_factor": dilation, "dilation_h_factor": dilation}
    if depthwise:
        options["depth_multiplier"] = multiplier
    b.add_operator("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", inputs, [y], options)
    b.mark_output(y)
    return b


@pytest.mark.parametrize("kw", [
    dict(depthwise=False),
    dict(depthwise=False, padding="VALID", stride=1, dilation=2, act="RELU_N1_TO_1", bias=False),
    dict(depthwise=False, per_channel=False, act="RELU6", stride=3),
    dict(depthwise=True, multiplier=2),
    dict(depthwise=True, multiplier=3, stride=1, dilation=2, act="RELU"),
    # (TFLite Micro crashes on a depthwise convolution without bias, so every one has one.)
    dict(depthwise=True, padding="VALID", per_channel=False),
], ids=["conv-same-s2", "conv-valid-dil2-nobias", "conv-pertensor-relu6-s3", "dw-mult2", "dw-mult3-dil2",
        "dw-valid-pertensor"])
def test_conv_and_depthwise_equal_tflm(tmp_path: Path, kw: dict) -> None:
    g = _equal_to_tflm(_write(tmp_path, _conv_model(**kw)))
    attrs = g.ops[0].attrs
    assert attrs.depth_multiplier == kw.get("multiplier", 1)
    assert attrs.dilation == (kw.get("dilation", 1),) * 2


def _fc_model(in_shape, cin: int, cout: int, *, keep_num_dims=False, per_channel=False, bias=True,
              act="NONE", out_shape=None) -> ModelBuilder:
    rng = np.random.default_rng(5)
    b = ModelBuilder()
    x = b.add_input("x", in_shape, scale=0.04, zero_point=10)
    wscale = rng.uniform(0.005, 0.02, cout).astype(np.float32) if per_channel else np.float32(0.012)
    w = b.add_constant("w", _weights(rng, (cout, cin)), scale=wscale)
    bias_t = -1
    if bias:
        bias_t = b.add_constant("b", rng.integers(-2000, 2000, cout).astype(np.int32),
                                scale=np.float32(0.04) * np.atleast_1d(wscale))
    y = b.add_tensor("y", out_shape, scale=0.25, zero_point=-7)
    b.add_operator("FULLY_CONNECTED", [x, w, bias_t], [y],
                   {"keep_num_dims": keep_num_dims, "fused_activation_function": act})
    b.mark_output(y)
    return b


@pytest.mark.parametrize(("kw", "helper_reshape"), [
    (dict(in_shape=(1, 24), cin=24, cout=9, out_shape=(1, 9)), False),
    (dict(in_shape=(1, 24), cin=24, cout=9, out_shape=(1, 9), per_channel=True, bias=False, act="RELU"), False),
    (dict(in_shape=(1, 3, 16), cin=16, cout=6, out_shape=(1, 3, 6), keep_num_dims=True), False),
    (dict(in_shape=(1, 2, 2, 5), cin=20, cout=7, out_shape=(1, 7), act="RELU6"), True),
], ids=["per-tensor", "per-channel-nobias-relu", "keep-num-dims", "4d-input"])
def test_fully_connected_equals_tflm(tmp_path: Path, kw: dict, helper_reshape: bool) -> None:
    g = _equal_to_tflm(_write(tmp_path, _fc_model(**kw)))
    assert [op.kind for op in g.ops][-1] is ir.OpKind.FULLY_CONNECTED
    assert (g.ops[0].kind is ir.OpKind.RESHAPE) == helper_reshape
    if not kw.get("bias", True):
        assert len(g.ops[-1].inputs) == 2


@pytest.mark.parametrize(("op", "padding", "k", "s", "act"), [
    ("MAX_POOL_2D", "SAME", 3, 2, "NONE"),
    ("AVERAGE_POOL_2D", "SAME", 3, 2, "NONE"),
    ("AVERAGE_POOL_2D", "VALID", 2, 2, "RELU"),
    ("MAX_POOL_2D", "VALID", 2, 1, "RELU6"),
])
def test_pooling_equals_tflm(tmp_path: Path, op: str, padding: str, k: int, s: int, act: str) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 7, 6, 4), scale=0.1, zero_point=-20)
    oh = same_or_valid_padding(padding == "SAME", 7, k, s)[0]
    ow = same_or_valid_padding(padding == "SAME", 6, k, s)[0]
    y = b.add_tensor("y", (1, oh, ow, 4), scale=0.1, zero_point=-20)
    b.add_operator(op, [x], [y], {"padding": padding, "stride_w": s, "stride_h": s, "filter_width": k,
                                  "filter_height": k, "fused_activation_function": act})
    b.mark_output(y)
    _equal_to_tflm(_write(tmp_path, b))


def test_add_squeeze_reshape_softmax_chain_equals_tflm(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 1, 1, 12), scale=0.07, zero_point=5)
    s = b.add_tensor("s", (1, 12), scale=0.07, zero_point=5)
    b.add_operator("SQUEEZE", [x], [s], {"squeeze_dims": [1, 2]}, options_type="SqueezeOptions")
    a = b.add_tensor("a", (1, 12), scale=0.11, zero_point=-9)
    b.add_operator("ADD", [s, s], [a], {"fused_activation_function": "RELU"})
    shape = b.add_constant("shape", np.array([1, 3, 4], np.int32))
    r = b.add_tensor("r", (1, 3, 4), scale=0.11, zero_point=-9)
    b.add_operator("RESHAPE", [a, shape], [r], {"new_shape": [1, 3, 4]})
    y = b.add_tensor("y", (1, 3, 4), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [r], [y], {"beta": 0.5})
    b.mark_output(y)
    g = _equal_to_tflm(_write(tmp_path, b))
    assert [op.kind for op in g.ops] == [ir.OpKind.RESHAPE, ir.OpKind.ADD, ir.OpKind.RESHAPE, ir.OpKind.SOFTMAX]
    assert g.ops[-1].attrs.beta == 0.5


def _flatten_model() -> ModelBuilder:
    """Keras' Flatten with a dynamic batch: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE."""
    b = ModelBuilder()
    x = b.add_input("x", (1, 2, 3, 4), scale=0.1, zero_point=0)
    shp = b.add_tensor("shape", (4,), np.int32)
    b.add_operator("SHAPE", [x], [shp], {"out_type": 2})
    begin = b.add_constant("begin", np.array([0], np.int32))
    end = b.add_constant("end", np.array([1], np.int32))
    strides = b.add_constant("strides", np.array([1], np.int32))
    batch = b.add_tensor("batch", (), np.int32)
    b.add_operator("STRIDED_SLICE", [shp, begin, end, strides], [batch], {"shrink_axis_mask": 1})
    minus_one = b.add_constant("minus_one", np.array(24, np.int32))
    packed = b.add_tensor("packed", (2,), np.int32)
    b.add_operator("PACK", [batch, minus_one], [packed], {"values_count": 2, "axis": 0})
    flat = b.add_tensor("flat", (1, 24), scale=0.1, zero_point=0)
    b.add_operator("RESHAPE", [x, packed], [flat])
    y = b.add_tensor("y", (1, 24), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [flat], [y], {"beta": 1.0})
    b.mark_output(y)
    return b


def test_constant_shape_subgraph_is_folded_and_equals_tflm(tmp_path: Path) -> None:
    path = _write(tmp_path, _flatten_model())
    imported = import_tflite(path)
    assert imported.folded_ops == [0, 1, 2]
    assert [op.kind for op in imported.graph.ops] == [ir.OpKind.RESHAPE, ir.OpKind.SOFTMAX]
    _equal_to_tflm(path)


def test_duplicate_and_empty_tensor_names_are_made_unique(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.add_input("t", (1, 8), scale=0.1, zero_point=0)
    h = b.add_tensor("t", (1, 8), scale=0.1, zero_point=0)
    b.add_operator("RESHAPE", [x, b.add_constant("", np.array([1, 8], np.int32))], [h])
    y = b.add_tensor("", (1, 8), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [h], [y], {"beta": 1.0})
    b.mark_output(y)
    imported = import_tflite(_write(tmp_path, b))
    g = imported.graph
    assert g.inputs == ["t"]
    assert g.ops[0].outputs == ["t_1"] and g.outputs == ["tensor_3"]
    assert imported.tensor_index == {"t": 0, "t_1": 1, "tensor_3": 3}


# ------------------------------- MUL, MEAN, PAD, CONCATENATION, LOGISTIC, QUANTIZE vs TFLM


def test_mul_with_broadcasting_and_constants_equals_tflm(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    b = ModelBuilder()
    x = b.add_input("x", (1, 4, 5, 6), scale=0.05, zero_point=3)
    q = b.add_tensor("q", (1, 4, 5, 6), scale=0.07, zero_point=-5)
    b.add_operator("QUANTIZE", [x], [q])
    m = b.add_tensor("m", (1, 4, 5, 6), scale=0.02, zero_point=1)
    b.add_operator("MUL", [x, q], [m], {"fused_activation_function": "RELU"})
    c = b.add_constant("c", rng.integers(-128, 128, (6,)).astype(np.int8), scale=0.01, zero_point=2)
    m2 = b.add_tensor("m2", (1, 4, 5, 6), scale=0.003, zero_point=-1)
    b.add_operator("MUL", [m, c], [m2])  # per-channel constant, rank 1
    ax = b.add_constant("axes", np.array([-3, -2], np.int32))
    g = b.add_tensor("g", (1, 6), scale=0.004, zero_point=0)
    b.add_operator("MEAN", [m2, ax], [g], {"keep_dims": False})
    y = b.add_tensor("y", (1, 4, 5, 6), scale=0.001, zero_point=-3)
    b.add_operator("MUL", [g, m2], [y], {"fused_activation_function": "RELU6"})  # (1, 6) x (1, 4, 5, 6)
    b.mark_output(y)
    graph = _equal_to_tflm(_write(tmp_path, b), n=64)
    assert [op.kind for op in graph.ops] == [ir.OpKind.QUANTIZE, ir.OpKind.MUL, ir.OpKind.MUL, ir.OpKind.MEAN,
                                             ir.OpKind.MUL]
    assert graph.tensors[graph.ops[2].inputs[1]].is_const


@pytest.mark.parametrize(("keep", "same_quant"), [(True, True), (False, False), (True, False)])
def test_mean_equals_tflm(tmp_path: Path, keep: bool, same_quant: bool) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 7, 5, 8), scale=0.1, zero_point=5)
    ax = b.add_constant("axes", np.array([1, 2], np.int32))
    y = b.add_tensor("y", (1, 1, 1, 8) if keep else (1, 8), scale=0.1 if same_quant else 0.013,
                     zero_point=5 if same_quant else -7)
    b.add_operator("MEAN", [x, ax], [y], {"keep_dims": keep})
    b.mark_output(y)
    _equal_to_tflm(_write(tmp_path, b), n=200)


@pytest.mark.parametrize("op", ["PAD", "PADV2"])
def test_pad_equals_tflm(tmp_path: Path, op: str) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 3, 4, 2), scale=0.08, zero_point=-7)
    pads = b.add_constant("pads", np.array([[0, 0], [1, 2], [0, 3], [2, 1]], np.int32))
    inputs = [x, pads]
    if op == "PADV2":
        inputs.append(b.add_constant("value", np.array([33], np.int8), scale=0.08, zero_point=-7))
    y = b.add_tensor("y", (1, 6, 7, 5), scale=0.08, zero_point=-7)
    b.add_operator(op, inputs, [y], options_type="PadV2Options" if op == "PADV2" else None)
    b.mark_output(y)
    graph = _equal_to_tflm(_write(tmp_path, b))
    assert graph.ops[0].attrs.pad_value == (33 if op == "PADV2" else -7)
    assert graph.ops[0].attrs.paddings == ((0, 0), (1, 2), (0, 3), (2, 1))


def test_concatenation_with_a_constant_equals_tflm(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    b = ModelBuilder()
    x = b.add_input("x", (1, 3, 2, 4), scale=0.05, zero_point=1)
    r = b.add_tensor("r", (1, 3, 2, 4), scale=0.05, zero_point=1)
    b.add_operator("RESHAPE", [x, b.add_constant("s", np.array([1, 3, 2, 4], np.int32))], [r])
    c = b.add_constant("c", rng.integers(-128, 128, (1, 3, 1, 4)).astype(np.int8), scale=0.05, zero_point=1)
    y = b.add_tensor("y", (1, 3, 5, 4), scale=0.05, zero_point=1)
    b.add_operator("CONCATENATION", [x, c, r], [y], {"axis": -2})
    b.mark_output(y)
    graph = _equal_to_tflm(_write(tmp_path, b))
    assert graph.ops[-1].attrs.axis == 2


@pytest.mark.parametrize(("scale", "zp"), [(0.002, 0), (0.03, -20), (0.1, 5), (0.6, 100)])
def test_logistic_and_quantize_equal_tflm_on_every_input_value(tmp_path: Path, scale: float, zp: int) -> None:
    prereq.require_module("tflite_micro")
    from mcuqp.oracle import tflm_run_all_tensors
    from mcuqp.reference.interpreter import run_all

    b = ModelBuilder()
    x = b.add_input("x", (1, 256), scale=scale, zero_point=zp)
    s = b.add_tensor("s", (1, 256), scale=1 / 256, zero_point=-128)
    b.add_operator("LOGISTIC", [x], [s])
    y = b.add_tensor("y", (1, 256), scale=0.009, zero_point=20)
    b.add_operator("QUANTIZE", [s], [y])
    b.mark_output(y)
    path = _write(tmp_path, b)
    every = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    ours = run_all(load_tflite(path), every)
    theirs = tflm_run_all_tensors(path, every)
    np.testing.assert_array_equal(ours["s"], theirs[s])
    np.testing.assert_array_equal(ours["y"], theirs[y])
    assert np.unique(theirs[s]).size > 4


# --------------------------------------------------------------------------- errors


def test_unsupported_ops_are_all_listed_in_one_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    b = ModelBuilder()
    x = b.add_input("x", (1, 16), scale=0.1, zero_point=0)
    t = b.add_tensor("t", (1, 16), scale=1 / 128, zero_point=0)
    b.add_operator("EXP", [x], [t])
    s = b.add_tensor("s", (1, 16), scale=0.1, zero_point=0)
    b.add_operator("LOG", [t], [s])
    w = b.add_constant("w", _weights(rng, (4, 16)), scale=0.01)
    f = b.add_tensor("f", (1, 4), scale=0.1, zero_point=0)
    b.add_operator("FULLY_CONNECTED", [s, w, -1], [f], {"fused_activation_function": "TANH"})
    y = b.add_tensor("y", (1, 4), scale=1 / 256, zero_point=-128)
    b.add_operator("SOFTMAX", [f], [y], {"beta": 1.0})  # supported: must not be listed
    b.mark_output(y)
    with pytest.raises(UnsupportedModelError) as e:
        load_tflite(_write(tmp_path, b))
    msg = str(e.value)
    assert "\n" not in msg
    assert "3 unsupported ops" in msg
    assert "#0 EXP" in msg and "#1 LOG" in msg and "#2 FULLY_CONNECTED (fused activation TANH" in msg
    assert "#3" not in msg


def test_float_model_is_rejected(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 4), np.float32)
    w = b.add_constant("w", np.ones((2, 4), np.float32))
    y = b.add_tensor("y", (1, 2), np.float32)
    b.add_operator("FULLY_CONNECTED", [x, w, -1], [y])
    b.mark_output(y)
    with pytest.raises(UnsupportedModelError, match="float model .*float32.*full-int8"):
        load_tflite(_write(tmp_path, b))


def test_int16_activations_are_rejected(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 4), np.int16, scale=0.001, zero_point=0)
    y = b.add_tensor("y", (1, 4), np.int16, scale=0.001, zero_point=0)
    b.add_operator("RESHAPE", [x, b.add_constant("s", np.array([1, 4], np.int32))], [y])
    b.mark_output(y)
    with pytest.raises(UnsupportedModelError, match="int16.*int8 inputs"):
        load_tflite(_write(tmp_path, b))


def test_int4_weights_are_reported_not_called_corrupt(tmp_path: Path) -> None:
    import tflite

    raw = bytearray(_conv_model(depthwise=False).build())
    g = tflite.Model.GetRootAsModel(raw, 0).Subgraphs(0)
    w = next(g.Tensors(i) for i in range(g.TensorsLength()) if g.Tensors(i).Name() == b"w")
    raw[w._tab.Pos + w._tab.Offset(6)] = 17  # Tensor.type (vtable slot 6) := INT4
    path = tmp_path / "int4.tflite"
    path.write_bytes(bytes(raw))
    with pytest.raises(UnsupportedModelError, match=r"#0 CONV_2D \(weights 'w' is int4, expected int8\)"):
        load_tflite(path)


def test_dynamic_reshape_is_reported(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 4), scale=0.1, zero_point=0)
    shape = b.add_tensor("shape", (2,), np.int32)  # not constant, not computable
    y = b.add_tensor("y", (1, 4), scale=0.1, zero_point=0)
    b.add_operator("RESHAPE", [x, shape], [y])
    b.mark_output(y)
    with pytest.raises(UnsupportedModelError, match=r"#0 RESHAPE \(the new shape is not a constant"):
        load_tflite(_write(tmp_path, b))


def test_concatenation_with_differing_quantization_is_reported(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 2), scale=0.1, zero_point=0)
    c = b.add_constant("c", np.ones((1, 2), np.int8), scale=0.3, zero_point=0)
    y = b.add_tensor("y", (1, 4), scale=0.1, zero_point=0)
    b.add_operator("CONCATENATION", [x, c], [y], {"axis": 1})
    b.mark_output(y)
    with pytest.raises(UnsupportedModelError, match="#0 CONCATENATION .*different scale or zero point"):
        load_tflite(_write(tmp_path, b))


def test_mean_over_axes_that_are_not_consecutive_is_reported(tmp_path: Path) -> None:
    b = ModelBuilder()
    x = b.add_input("x", (1, 2, 2, 3), scale=0.1, zero_point=0)
    ax = b.add_constant("axes", np.array([1, 3], np.int32))
    y = b.add_tensor("y", (1, 2), scale=0.1, zero_point=0)
    b.add_operator("MEAN", [x, ax], [y], {"keep_dims": False})
    b.mark_output(y)
    with pytest.raises(UnsupportedModelError, match=r"#0 MEAN \(mean over axes \[1, 3\]"):
        load_tflite(_write(tmp_path, b))


@pytest.mark.parametrize("content", [
    b"",
    b"hello, this is not a model at all",
    bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)),
    b"\x10\x00\x00\x00TFL3" + b"\xff" * 64,
], ids=["empty", "text", "random", "tfl3-garbage"])
def test_corrupt_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(McuqpError, match="not a TFLite flatbuffer"):
        load_tflite(path)


def test_truncated_model_is_rejected(tmp_path: Path) -> None:
    raw = _conv_model(depthwise=False).build()
    path = tmp_path / "cut.tflite"
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(McuqpError, match="not a TFLite flatbuffer"):
        load_tflite(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(McuqpError, match="cannot read"):
        load_tflite(tmp_path / "nope.tflite")
