"""The TFLite models of ../shared/models generated, built and run on QEMU, compared with
the numpy reference exactly (the reference itself equals TFLite Micro: test_oracle_models.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuqp import api
import prereq

MODELS = {
    "kws": "mlperf_tiny/kws_ref_model.tflite",
    "vww": "mlperf_tiny/vww_96_int8.tflite",
    "ic": "mlperf_tiny/pretrainedResnet_quant.tflite",
    "ad": "mlperf_tiny/ad01_int8.tflite",
    "digits": "fixtures/digits_int8.tflite",
    "mixed28": "fixtures/mixed28_int8.tflite",
}
CASES = [(m, "mps2-an386") for m in MODELS] + [("kws", "mps3-an547"), ("ic", "mps3-an547")]


def _path(name: str) -> Path:
    return prereq.shared_model(MODELS[name])


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize("model,board", CASES, ids=[f"{m}-{b}" for m, b in CASES])
def test_tflite_model_bit_exact_on_qemu(model, board, tmp_path):
    loaded = api.load(_path(model), n_random=24, seed=7)
    res = api.verify(loaded, board=board, n_inputs=24, save_io=tmp_path)
    assert res.compared == 24
    assert res.mismatches == 0, f"{res.mismatched_elements} elements differ"
    assert np.array_equal(res.device_outputs, res.reference_outputs)
    # and directly against the oracle of record, TFLite Micro's reference kernels
    from mcuqp.oracle import tflm_run

    assert np.array_equal(res.device_outputs, tflm_run(_path(model), res.inputs).reshape(res.device_outputs.shape))
    # the inputs span the full int8 range, so saturation paths are exercised
    assert res.inputs.min() == -128 and res.inputs.max() == 127
    assert np.array_equal(np.load(tmp_path / "outputs_device.npy"), res.device_outputs)
    assert res.instructions_per_inference > 0 and res.flash_bytes > 0
