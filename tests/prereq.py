"""Test prerequisites that live outside the repository (the arm toolchain, QEMU, the shared
models folder beside the repository, the TFLite Micro oracle).

One rule for all of them: locally a missing prerequisite skips the test with a reason; with
the environment variable `CI` set it fails the test, so evidence never vanishes silently.
"""
from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"
ARM_TOOLS = ("arm-none-eabi-gcc",)
QEMU_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def missing(reason: str, *, module_level: bool = False) -> None:
    """Skip (locally) or fail (in CI) the current test or module with `reason`."""
    if in_ci():
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def require_tools(*tools: str, module_level: bool = False) -> None:
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        missing(f"{', '.join(absent)} not installed (run `make toolchain`)", module_level=module_level)


def shared_model(rel: str | Path, *, module_level: bool = False) -> Path:
    """A file under ../shared/models (read-only test data beside the repository)."""
    p = SHARED_MODELS / rel
    if not p.exists():
        missing(f"{p} not present: the shared models folder sits beside the repository", module_level=module_level)
    return p


def require_shared_models(*, module_level: bool = False) -> Path:
    if not SHARED_MODELS.is_dir():
        missing(f"shared models not found at {SHARED_MODELS} (they live beside the repository, in ../shared)",
                module_level=module_level)
    return SHARED_MODELS


def require_module(name: str, *, module_level: bool = False) -> ModuleType:
    """importorskip for third-party test oracles (never for mcuqp's own modules)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"{name} is not installed ({e}); `make test` installs it", module_level=module_level)
        raise  # unreachable: missing() always raises
