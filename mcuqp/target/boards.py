"""Target boards: one TOML data file per board in <repo>/boards/.

Adding a board means adding a file; nothing here names a board except the default.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from mcuqp.errors import McuqpError
from mcuqp.resources import BOARDS_DIR

DEFAULT_BOARD = "mps2-an386"


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    cpu: str  # gcc -mcpu value
    cflags: tuple[str, ...]  # extra gcc flags: -mthumb, float ABI, FPU
    features: frozenset[str]  # e.g. "dsp", "mve", "fpu"
    qemu_machine: str
    flash_origin: int
    flash_size: int
    ram_origin: int
    ram_size: int
    clock_hz: int | None = None  # CPU clock of the real board, for estimated milliseconds

    @property
    def gcc_flags(self) -> list[str]:
        """Target flags shared by compiling and linking (they select the newlib multilib)."""
        return [f"-mcpu={self.cpu}", *self.cflags]

    @property
    def hard_float(self) -> bool:
        return "-mfloat-abi=hard" in self.cflags

    def has(self, feature: str) -> bool:
        return feature in self.features


def _parse(path: Path) -> Board:
    try:
        d = tomllib.loads(path.read_text())
        return Board(
            name=str(d["name"]),
            description=str(d["description"]),
            cpu=str(d["cpu"]),
            cflags=tuple(str(f) for f in d.get("cflags", [])),
            features=frozenset(str(f) for f in d.get("features", [])),
            qemu_machine=str(d["qemu_machine"]),
            flash_origin=int(d["flash"]["origin"]),
            flash_size=int(d["flash"]["size"]),
            ram_origin=int(d["ram"]["origin"]),
            ram_size=int(d["ram"]["size"]),
            clock_hz=int(d["clock_hz"]) if "clock_hz" in d else None,
        )
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as e:
        raise McuqpError(f"board file {path} is malformed ({type(e).__name__}: {e}); fix or remove it") from e


def list_boards() -> list[Board]:
    return [_parse(p) for p in sorted(BOARDS_DIR.glob("*.toml"))]


def load_board(name: str) -> Board:
    """A board by name (boards/<name>.toml), or from an explicit path to a .toml file."""
    if name.endswith(".toml") and Path(name).is_file():
        return _parse(Path(name))
    path = BOARDS_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(BOARDS_DIR.glob("*.toml")))
        raise McuqpError(f"unknown board {name!r}; known boards: {known}")
    board = _parse(path)
    if board.name != name:
        raise McuqpError(f"board file {path} declares name {board.name!r}; rename the file or fix its name")
    return board
