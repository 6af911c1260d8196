"""`mcuqp report`: one self-contained HTML page, rendered in headless Chromium.

The page's text (Chromium's DOM dump) must carry the key figures the API returned, and its
screenshot must not be blank.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mcuqp import api
from mcuqp.cli import main
from mcuqp.compress.train import FitConfig, fit
from mcuqp.datasets import load_dataset
from mcuqp.models import DigitsCNN

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1800"]


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make toolchain` installs it")
        pytest.skip("chromium is not installed (run `make toolchain`)")
    return exe


def _chromium(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")})


def _text(dom: str) -> str:
    body = re.sub(r"(?s)<(style|script)\b.*?</\1>", " ", dom)
    text = re.sub(r"<[^>]+>", " ", body).replace("&nbsp;", " ").replace("&amp;", "&")
    return re.sub(r"\s+", " ", text)


@pytest.fixture(scope="module")
def trained():
    d = load_dataset("digits")
    return fit(DigitsCNN(), d.x_train, d.y_train, FitConfig(epochs=3, lr=3e-3, seed=0))


@pytest.fixture(scope="module")
def rendered(trained, chromium, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = api.report(trained, out, board="mps2-an386", calib="digits", n_inputs=12)
    dom = _chromium(chromium, "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    shot = out.with_suffix(".png")
    r = _chromium(chromium, f"--screenshot={shot}", out.as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    return res, out, _text(dom.stdout), shot


@pytest.mark.qemu
@pytest.mark.slow
def test_report_page_shows_the_key_figures(rendered):
    res, _, text, _ = rendered
    assert res.bit_exact is True and res.compared == 12
    assert "BIT-EXACT" in text and "12 of 12 outputs equal the reference" in text
    for figure in (res.flash_bytes, res.ram_bytes, res.flash_budget_bytes, res.ram_budget_bytes, res.arena_bytes,
                   res.macs, res.weight_bytes, res.instructions_per_inference):
        assert f"{figure:,}" in text, figure
    for label, acc in (("float (PyTorch)", res.float_accuracy), ("int8 (numpy reference)", res.reference_accuracy),
                       ("int8 on the device", res.device_accuracy)):
        assert acc is not None and label in text and f"{acc * 100:.1f} %" in text
    for row in res.layer_table:
        assert row.name in text and f"{row.macs:,}" in text and f"{row.instructions:,}" in text
    assert res.memory_source == "measured" and "(measured)" in text
    assert sum(r.macs for r in res.layer_table) == res.macs > 0


@pytest.mark.qemu
@pytest.mark.slow
def test_report_page_is_self_contained_and_not_blank(rendered):
    from PIL import Image

    _, out, _, shot = rendered
    html = out.read_text()
    # nothing fetched: no external URL in src/href/url(), the plot is a data: URI
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", html)
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html)
    assert "<script" not in html and 'src="data:image/png;base64,' in html
    img = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("L"), dtype=np.float64)
    assert img.shape[0] > 500 and img.shape[1] > 500
    assert img.std() > 20, f"screenshot looks blank (pixel std {img.std():.1f})"
    # the page has text and a plot in the upper part, not just a white frame
    assert (img < 128).mean() > 0.01


def test_report_without_device_run_predicts_and_says_so(trained, tmp_path):
    out = tmp_path / "r.html"
    res = api.report(trained, out, calib="digits", device=False)
    html = out.read_text()
    assert res.bit_exact is None and res.instructions_per_inference is None
    assert "not run" in html and res.memory_source in html
    assert res.reference_accuracy is not None and res.float_accuracy is not None
    assert res.to_dict()["output"] == str(out)


def test_report_cli_rejects_a_non_html_output_without_writing(tmp_path):
    r = CliRunner().invoke(main, ["report", "missing.tflite", "-o", str(tmp_path / "r.txt")])
    assert r.exit_code == 2
    assert not (tmp_path / "r.txt").exists()
