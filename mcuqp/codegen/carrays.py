"""Formatting numpy arrays as C initialisers."""
from __future__ import annotations

import numpy as np

_CTYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.uint32): "uint32_t",
}


def ctype(a: np.ndarray) -> str:
    try:
        return _CTYPES[np.asarray(a).dtype]
    except KeyError:
        raise TypeError(f"no C type for {np.asarray(a).dtype}") from None


def _literal(v: int, dtype: np.dtype) -> str:
    # INT32_MIN cannot be written as a negative literal without a cast.
    if dtype == np.int32 and v == -(1 << 31):
        return "INT32_MIN"
    return str(v)


def initializer(a: np.ndarray, per_line: int = 20) -> str:
    a = np.asarray(a)
    flat = a.reshape(-1).tolist()
    if not flat:
        return "{0}"
    lines = []
    for i in range(0, len(flat), per_line):
        lines.append("    " + ", ".join(_literal(int(v), a.dtype) for v in flat[i : i + per_line]) + ",")
    return "{\n" + "\n".join(lines) + "\n}"


def const_array(name: str, a: np.ndarray, *, align: int = 4, comment: str = "", attrs: str = "") -> str:
    """`static const T name[N] attrs __attribute__((aligned(align))) = {...};` (attrs: e.g. a
    section macro)."""
    a = np.asarray(a)
    head = f"/* {comment} */\n" if comment else ""
    attrs = f"{attrs} " if attrs else ""
    return (
        f"{head}static const {ctype(a)} {name}[{max(a.size, 1)}] {attrs}__attribute__((aligned({align}))) = "
        f"{initializer(a)};\n"
    )
