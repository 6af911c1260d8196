"""Which kernel source implements an op on a board.

Every op has a portable C kernel `runtime_c/src/<op>_s8.c`. An optimised variant with
the same contract may sit in `runtime_c/src/<feature>/<op>_s8.c` (for example `dsp/` for
Cortex-M DSP extension SMLAD paths); it is chosen when the board has that feature, in
the order of VARIANT_PREFERENCE.
"""
from __future__ import annotations

from pathlib import Path

from mcuqp.errors import UnsupportedModelError
from mcuqp.ir import OpKind

RUNTIME_SRC = Path(__file__).resolve().parents[2] / "runtime_c" / "src"
VARIANT_PREFERENCE = ("mve", "dsp")


def kernel_source(kind: OpKind, features: frozenset[str] = frozenset()) -> Path:
    """The source file implementing `mcuqp_<kind>_s8` for a board with `features`."""
    return variant_source(f"{kind.value}_s8.c", features)


def variant_source(name: str, features: frozenset[str] = frozenset()) -> Path:
    """runtime_c/src/<feature>/<name> for the first of the board's features that has one,
    else the portable runtime_c/src/<name> (e.g. the in-place kernels)."""
    for feature in VARIANT_PREFERENCE:
        if feature in features and (RUNTIME_SRC / feature / name).exists():
            return RUNTIME_SRC / feature / name
    portable = RUNTIME_SRC / name
    if not portable.exists():
        raise UnsupportedModelError(f"kernel source {name} is missing from runtime_c/src")
    return portable
