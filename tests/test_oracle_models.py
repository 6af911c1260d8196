"""The numpy reference on imported .tflite models equals TFLite Micro exactly.

Uses the read-only models in ../shared/models (MLPerf Tiny and two Keras fixtures); the
whole module skips when that directory is absent (a clone of the project alone), and fails
when CI is set.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mcuqp.frontends.tflite import import_tflite, load_tflite
from mcuqp.ir import Graph

import prereq  # noqa: E402

prereq.require_module("tflite_micro", module_level=True)

from mcuqp.oracle import first_mismatch, tflm_run, tflm_run_all_tensors  # noqa: E402
from mcuqp.reference.interpreter import run  # noqa: E402

SHARED_MODELS = prereq.require_shared_models(module_level=True)

N_RANDOM = 200
# Measured for 200 inputs on the shared 2-core box (numpy reference batch / TFLM loop):
# digits 0.03 / 0.05 s, mixed28 0.12 / 0.04 s, ad01 0.04 / 0.04 s, KWS 1.2 / 0.7 s,
# ResNet-8 4.9 / 2.9 s, VWW 5.9 / 1.9 s. The last three are marked slow.
MODELS = [
    pytest.param("fixtures/digits_int8.tflite", id="digits"),
    pytest.param("fixtures/mixed28_int8.tflite", id="mixed28"),
    pytest.param("mlperf_tiny/ad01_int8.tflite", id="ad01"),
    pytest.param("mlperf_tiny/kws_ref_model.tflite", id="kws", marks=pytest.mark.slow),
    pytest.param("mlperf_tiny/pretrainedResnet_quant.tflite", id="resnet8", marks=pytest.mark.slow),
    pytest.param("mlperf_tiny/vww_96_int8.tflite", id="vww", marks=pytest.mark.slow),
]


def _random_inputs(graph: Graph, n: int, seed: int) -> np.ndarray:
    shape = (n, *graph.input.shape[1:])
    return np.random.default_rng(seed).integers(-128, 128, size=shape, dtype=np.int8)


def _quantize(x: np.ndarray, graph: Graph) -> np.ndarray:
    q = graph.input.quant
    scaled = np.floor(x / np.float32(q.s) + 0.5) + q.zp  # inputs are >= 0: half away from zero
    return np.clip(scaled, -128, 127).astype(np.int8)


def _digits(size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits in [0, 1] (the fixtures' training scaling), NHWC, optionally
    upsampled bilinearly to size x size."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.float32) / 16.0
    if size is not None:
        from scipy.ndimage import zoom

        images = zoom(images, (1, size / 8, size / 8), order=1).clip(0.0, 1.0)
    return images[..., None], d.target


def _assert_equal_to_tflm(graph: Graph, path: Path, x: np.ndarray) -> dict[str, float]:
    t0 = time.perf_counter()
    ours = run(graph, x)
    t1 = time.perf_counter()
    theirs = tflm_run(path, x)
    t2 = time.perf_counter()
    assert ours.dtype == theirs.dtype == np.int8
    assert ours.shape == theirs.shape
    bad = np.flatnonzero((ours != theirs).reshape(len(x), -1).any(axis=1))
    if bad.size:
        where = first_mismatch(graph, path, x[bad[:4]])
        pytest.fail(f"{path.name}: {bad.size}/{len(x)} inputs differ from TFLite Micro; first mismatch {where}")
    return {"reference_s": t1 - t0, "tflm_s": t2 - t1}


@pytest.mark.parametrize("rel", MODELS)
def test_reference_equals_tflm_on_random_inputs(rel: str, record_property) -> None:
    path = SHARED_MODELS / rel
    graph = load_tflite(path)
    x = _random_inputs(graph, N_RANDOM, seed=2024)
    timing = _assert_equal_to_tflm(graph, path, x)
    for k, v in timing.items():
        record_property(k, round(v, 3))


def test_digits_fixture_on_real_digits() -> None:
    path = SHARED_MODELS / "fixtures/digits_int8.tflite"
    graph = load_tflite(path)
    images, labels = _digits()
    x = _quantize(images, graph)
    _assert_equal_to_tflm(graph, path, x)
    # The fixture was trained on these images scaled to [0, 1]: a high accuracy shows the
    # inputs are real, in-distribution data and not noise.
    accuracy = float((run(graph, x).argmax(axis=1) == labels).mean())
    assert accuracy > 0.9


def test_mixed28_fixture_on_upsampled_digits() -> None:
    path = SHARED_MODELS / "fixtures/mixed28_int8.tflite"
    graph = load_tflite(path)
    images, labels = _digits(size=28)
    x = _quantize(images[:300], graph)
    _assert_equal_to_tflm(graph, path, x)
    assert float((run(graph, x).argmax(axis=1) == labels[:300]).mean()) > 0.8


@pytest.mark.parametrize("rel", [
    "fixtures/digits_int8.tflite",
    "fixtures/mixed28_int8.tflite",
    pytest.param("mlperf_tiny/kws_ref_model.tflite", marks=pytest.mark.slow),
])
def test_every_intermediate_tensor_matches(rel: str) -> None:
    path = SHARED_MODELS / rel
    imported = import_tflite(path)
    x = _random_inputs(imported.graph, 16, seed=7)
    assert first_mismatch(imported.graph, path, x) is None
    # And directly: every IR tensor with a TFLite twin holds TFLM's values.
    from mcuqp.reference.interpreter import run_all

    ours = run_all(imported.graph, x)
    theirs = tflm_run_all_tensors(path, x)
    for op in imported.graph.ops:
        if not op.name.endswith("_flatten"):  # helper reshapes the importer adds have no twin
            assert op.outputs[0] in imported.tensor_index, op.name
    for name, index in imported.tensor_index.items():
        if name in ours:
            np.testing.assert_array_equal(ours[name], theirs[index], err_msg=name)


def test_first_mismatch_names_the_first_wrong_op() -> None:
    path = SHARED_MODELS / "fixtures/mixed28_int8.tflite"
    graph = load_tflite(path)
    x = _random_inputs(graph, 8, seed=3)
    victim = graph.ops[2]  # the depthwise convolution
    victim.attrs.output_offset += 5
    op_name, tensor, count = first_mismatch(graph, path, x)
    assert (op_name, tensor) == (victim.name, victim.outputs[0])
    assert count > 0


def test_tflm_run_checks_its_input() -> None:
    path = SHARED_MODELS / "fixtures/digits_int8.tflite"
    with pytest.raises(ValueError, match="int8"):
        tflm_run(path, np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="shape"):
        tflm_run(path, np.zeros((1, 8, 8, 2), np.int8))
    assert tflm_run(path, np.zeros((0, 8, 8, 1), np.int8)).shape == (0, 10)
