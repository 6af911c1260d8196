"""Where the non-Python parts of mcuqp live: `runtime_c/`, `templates/` and `boards/`.

In the repository they are top-level folders beside the package. A wheel carries copies
of them inside the package, under `mcuqp/_data/` (setup.py copies them at build time).
This module is the one place that knows both layouts; nothing else computes paths
relative to the package.
"""
from __future__ import annotations

from pathlib import Path

RESOURCE_DIRS = ("runtime_c", "templates", "boards")

_PACKAGE = Path(__file__).resolve().parent
_PACKAGED = _PACKAGE / "_data"
_CHECKOUT = _PACKAGE.parent


def _root() -> Path:
    if all((_PACKAGED / name).is_dir() for name in RESOURCE_DIRS):
        return _PACKAGED
    return _CHECKOUT


ROOT = _root()
RUNTIME_DIR = ROOT / "runtime_c"
TEMPLATES_DIR = ROOT / "templates"
BOARDS_DIR = ROOT / "boards"
