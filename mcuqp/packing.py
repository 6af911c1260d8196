"""Packed weight formats: how compressed int8 weights are laid out in flash for the
packed C kernels (runtime_c/src/*_sparse_s8.c, *_lowbit_s8.c, *_xnor_s8.c).

Every format stores the same *effective* int8 weights as the dense layer (a ternary or
binary weight is an int8 -1 / 0 / +1 with its channel's scale), so a packed kernel's
output equals the dense kernel's on `unpack(pack(w))` bit for bit.

Formats (a "row" is one output channel's filter flattened in the dense layout: FC
(in_ch,), conv OHWI (kh * kw * in_ch,)):

- `SparseRows` (FC, conv): per row and per segment of 256 columns a uint16 count of
  nonzeros, then for each nonzero its column within the segment (uint8) and its value
  (int8), row by row, segment by segment, columns ascending. Empty rows and all-zero
  channels cost their counts only.
- `SparseDepthwise` (depthwise, kh * kw <= 255): per channel a uint8 count, then for each
  nonzero its tap ky * kw + kx (uint8) and its value (int8), channel by channel.
- `LowBit` (int4: bits 4, ternary: bits 2, binary: bits 1): values packed into 32-bit
  little-endian words of G = 32 / bits values; in each word value 4 f + j (f < 8 / bits,
  j < 4) sits in byte j at bits [bits * f, bits * f + bits). Codes: int4 two's complement
  in [-8, 7]; ternary 0b00 = 0, 0b01 = +1, 0b11 = -1; binary 1 = +1, 0 = -1. FC and conv
  rows are each padded to whole words (padding codes 0); a depthwise filter (kh, kw, C)
  is one stream padded to whole words. The byte-lane order lets the DSP kernels turn one
  field of every byte into SMLAD operands with one shift and one mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mcuqp.errors import UnsupportedModelError

SEGMENT = 256  # columns per sparse segment: a uint8 column index
LowBitKind = Literal["int4", "ternary", "binary"]
BITS: dict[str, int] = {"int4": 4, "ternary": 2, "binary": 1}
VALUE_RANGE: dict[str, tuple[int, int]] = {"int4": (-8, 7), "ternary": (-1, 1), "binary": (-1, 1)}


@dataclass(frozen=True)
class SparseRows:
    rows: int
    row_len: int
    counts: np.ndarray  # uint16 (rows, segments)
    index: np.ndarray  # uint8 (nnz,)
    values: np.ndarray  # int8 (nnz,)

    @property
    def segments(self) -> int:
        return -(-self.row_len // SEGMENT)

    @property
    def weight_bytes(self) -> int:
        return int(self.values.size)

    @property
    def index_bytes(self) -> int:
        return int(self.index.size + 2 * self.counts.size)


@dataclass(frozen=True)
class SparseDepthwise:
    taps: int  # kh * kw
    channels: int
    counts: np.ndarray  # uint8 (channels,)
    index: np.ndarray  # uint8 (nnz,): ky * kw + kx
    values: np.ndarray  # int8 (nnz,)

    @property
    def weight_bytes(self) -> int:
        return int(self.values.size)

    @property
    def index_bytes(self) -> int:
        return int(self.index.size + self.counts.size)


@dataclass(frozen=True)
class LowBit:
    kind: LowBitKind
    rows: int  # 1 for a depthwise stream
    row_len: int
    words: np.ndarray  # uint32 (rows, words_per_row)

    @property
    def bits(self) -> int:
        return BITS[self.kind]

    @property
    def words_per_row(self) -> int:
        return int(self.words.shape[1])

    @property
    def weight_bytes(self) -> int:
        return int(4 * self.words.size)

    @property
    def index_bytes(self) -> int:
        return 0


def _check_int8(w: np.ndarray, ndim: int) -> np.ndarray:
    w = np.asarray(w)
    if w.dtype != np.int8 or w.ndim != ndim or min(w.shape) < 1:
        raise UnsupportedModelError(f"packing takes int8 weights of rank {ndim}, got {w.dtype} {w.shape}")
    return w


def pack_sparse_rows(w: np.ndarray) -> SparseRows:
    """FC (out, in) or conv OHWI (out, kh, kw, in) int8 weights -> SparseRows."""
    w = np.asarray(w)
    rows = _check_int8(w, w.ndim).reshape(w.shape[0], -1)
    n_rows, row_len = rows.shape
    seg = -(-row_len // SEGMENT)
    r, c = np.nonzero(rows)  # row-major: rows, then columns ascending
    counts = np.zeros((n_rows, seg), np.int64)
    np.add.at(counts, (r, c // SEGMENT), 1)
    return SparseRows(n_rows, row_len, counts.astype(np.uint16), (c % SEGMENT).astype(np.uint8),
                      rows[r, c].astype(np.int8))


def unpack_sparse_rows(p: SparseRows) -> np.ndarray:
    """The dense (rows, row_len) int8 matrix of a SparseRows."""
    out = np.zeros((p.rows, p.row_len), np.int8)
    flat = p.counts.astype(np.int64).ravel()
    seg_of = np.repeat(np.arange(flat.size), flat)  # the (row, segment) of each nonzero
    cols = (seg_of % p.segments) * SEGMENT + p.index.astype(np.int64)
    out[seg_of // p.segments, cols] = p.values
    return out


def pack_sparse_depthwise(w: np.ndarray) -> SparseDepthwise:
    """Depthwise (1, kh, kw, C) int8 weights -> SparseDepthwise (kh * kw <= 255)."""
    w = _check_int8(w, 4)
    if w.shape[0] != 1 or w.shape[1] * w.shape[2] > 255:
        raise UnsupportedModelError(f"sparse depthwise packing takes (1, kh, kw, C) with kh*kw <= 255, got {w.shape}")
    taps = w.shape[1] * w.shape[2]
    per_channel = w.reshape(taps, w.shape[3]).T  # (C, taps)
    c, t = np.nonzero(per_channel)
    counts = np.bincount(c, minlength=per_channel.shape[0]).astype(np.uint8)
    return SparseDepthwise(taps, per_channel.shape[0], counts, t.astype(np.uint8), per_channel[c, t].astype(np.int8))


def unpack_sparse_depthwise(p: SparseDepthwise, kh: int, kw: int) -> np.ndarray:
    per_channel = np.zeros((p.channels, p.taps), np.int8)
    ch = np.repeat(np.arange(p.channels), p.counts.astype(np.int64))
    per_channel[ch, p.index.astype(np.int64)] = p.values
    return per_channel.T.reshape(1, kh, kw, p.channels)


def _codes(values: np.ndarray, kind: LowBitKind) -> np.ndarray:
    lo, hi = VALUE_RANGE[kind]
    if values.size and (values.min() < lo or values.max() > hi):
        raise UnsupportedModelError(f"{kind} weights must lie in [{lo}, {hi}], got [{values.min()}, {values.max()}]")
    v = values.astype(np.int64)
    if kind == "binary":
        if np.any(v == 0):
            raise UnsupportedModelError("binary weights must be -1 or +1, got a 0 (use ternary)")
        return (v > 0).astype(np.int64)
    return v & ((1 << BITS[kind]) - 1)


def _pack_words(codes: np.ndarray, bits: int) -> np.ndarray:
    """(rows, n) codes -> (rows, ceil(n / G)) uint32 words in the LowBit lane order."""
    per_word = 32 // bits
    rows, n = codes.shape
    n_words = max(1, -(-n // per_word))
    padded = np.zeros((rows, n_words * per_word), np.int64)
    padded[:, :n] = codes
    g = padded.reshape(rows, n_words, per_word // 4, 4)  # value 4 f + j -> [f, j]
    shifts = 8 * np.arange(4)[None, :] + bits * np.arange(per_word // 4)[:, None]  # [f, j]
    return (g << shifts).sum(axis=(2, 3)).astype(np.uint32)


def _unpack_words(words: np.ndarray, bits: int, n: int) -> np.ndarray:
    per_word = 32 // bits
    w = words.astype(np.int64)[:, :, None, None]
    shifts = 8 * np.arange(4)[None, :] + bits * np.arange(per_word // 4)[:, None]
    codes = (w >> shifts) & ((1 << bits) - 1)  # (rows, words, f, j)
    return codes.reshape(words.shape[0], -1)[:, :n]


def decode(codes: np.ndarray, kind: LowBitKind) -> np.ndarray:
    bits = BITS[kind]
    if kind == "binary":
        return (2 * codes - 1).astype(np.int8)
    return np.where(codes >= 1 << (bits - 1), codes - (1 << bits), codes).astype(np.int8)


def pack_lowbit(w: np.ndarray, kind: LowBitKind, depthwise: bool = False) -> LowBit:
    """FC (out, in) or conv OHWI int8 weights (rows), or a depthwise (1, kh, kw, C) filter
    (one stream), -> LowBit."""
    if kind not in BITS:
        raise UnsupportedModelError(f"unknown low-bit format {kind!r}: expected one of {sorted(BITS)}")
    w = np.asarray(w)
    _check_int8(w, w.ndim)
    rows = w.reshape(1, -1) if depthwise else w.reshape(w.shape[0], -1)
    return LowBit(kind, rows.shape[0], rows.shape[1], _pack_words(_codes(rows, kind), BITS[kind]))


def unpack_lowbit(p: LowBit) -> np.ndarray:
    """The effective int8 (rows, row_len) weights of a LowBit."""
    return decode(_unpack_words(p.words, p.bits, p.row_len), p.kind)
