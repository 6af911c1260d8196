"""The wheel is self-sufficient: built from the sources, installed non-editable into a fresh
venv, it compiles and verifies a model from an unrelated folder.

The fresh venv reaches the already-installed dependencies (torch, numpy, ...) through a
.pth file naming this interpreter's site-packages. Paths listed in a .pth are not site
directories, so the editable install of the repository that lives there (its own .pth /
finder) is never activated: `mcuqp` can only come from the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "mcuqp", "runtime_c", "templates", "boards")
BUILD_ARTEFACTS = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "_data", "*.o", "*.so")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(bin folder of a fresh venv holding the mcuqp wheel, environment to run it in)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:  # build from a copy: the build writes build/ and *.egg-info beside the sources
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=BUILD_ARTEFACTS)
        else:
            shutil.copy2(p, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    r = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
              "-w", str(tmp / "dist"), str(src)], tmp, env)
    assert r.returncode == 0, r.stderr
    (wheel,) = (tmp / "dist").glob("mcuqp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for must in ("mcuqp/_data/boards/mps2-an386.toml", "mcuqp/_data/templates/model.c.j2",
                 "mcuqp/_data/runtime_c/include/mcuqp_nn.h", "mcuqp/_data/runtime_c/platform/link.ld.in",
                 "mcuqp/_data/runtime_c/platform/qemu_plugin/mcuqp_icount.c"):
        assert must in names, f"{must} missing from the wheel"

    venv = tmp / "venv"
    r = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    assert r.returncode == 0, r.stderr
    purelib = _run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   tmp, env).stdout.strip()
    Path(purelib, "outer-site-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    r = _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
              "--no-index", "-q", str(wheel)], tmp, env)
    assert r.returncode == 0, r.stderr
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv / "bin", env


def test_installed_package_is_the_wheel(installed, tmp_path):
    bindir, env = installed
    r = _run([str(bindir / "python"), "-c",
              "import mcuqp, mcuqp.resources as r; print(mcuqp.__file__); print(r.ROOT); print(mcuqp.__version__)"],
             tmp_path, env)
    assert r.returncode == 0, r.stderr
    module_file, root, version = r.stdout.split()
    venv = bindir.parent
    assert Path(module_file).is_relative_to(venv) and Path(root).is_relative_to(venv), r.stdout
    assert not Path(module_file).is_relative_to(REPO)
    assert Path(root).name == "_data"
    assert version == "0.1.0"


@pytest.mark.slow
@pytest.mark.qemu
def test_wheel_compiles_and_verifies_from_an_unrelated_folder(installed, tmp_path):
    import torch

    from mcuqp.models import DigitsCNN

    bindir, env = installed
    torch.manual_seed(0)
    work = tmp_path / "elsewhere"
    work.mkdir()
    torch.save(DigitsCNN().eval(), work / "net.pt")

    r = _run([str(bindir / "mcuqp"), "boards", "--json"], work, env)
    assert r.returncode == 0, r.stderr
    assert "mps2-an386" in {b["name"] for b in json.loads(r.stdout)}

    r = _run([str(bindir / "mcuqp"), "compile", "net.pt", "--calib", "digits", "--board", "mps2-an386",
              "-o", "out", "--json"], work, env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["board"] == "mps2-an386" and info["predicted_flash_bytes"] > 0
    assert (work / "out" / "net.c").is_file() and (work / "out" / "net.h").is_file()  # named after net.pt

    r = _run([str(bindir / "mcuqp"), "verify", "net.pt", "--calib", "digits", "--inputs", "5", "--json"], work, env)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert res["bit_exact"] is True and res["compared"] == 5
    assert res["instructions_per_inference"] > 0
