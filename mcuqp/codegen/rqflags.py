"""The `flags` of a generated mcuqp_requant (runtime_c/include/mcuqp_nn.h): facts about the
multiplier and shift arrays checked here, once, so the kernels skip checking them on every
call. The values mirror the C macros MCUQP_RQ_*."""
from __future__ import annotations

import numpy as np

SHIFTS_OK = 1  # every shift is in [-31, 30]
NOMIN = 2  # no multiplier is INT32_MIN
HIGHWORD = 4  # every channel has a zero multiplier or a shift <= -2 (the kernels' high-word form)


def requant_flags(multiplier: np.ndarray, shift: np.ndarray) -> int:
    m = np.asarray(multiplier, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    flags = 0
    if s.size and s.min() >= -31 and s.max() <= 30:
        flags |= SHIFTS_OK
    if not np.any(m == np.iinfo(np.int32).min):
        flags |= NOMIN
        if np.all((m == 0) | (s <= -2)):
            flags |= HIGHWORD
    return flags
