"""Target boards: one TOML data file per board in <repo>/boards/.

Adding a board means adding a file; nothing here names a board except the default.

Two kinds of file: an emulator board (an Arm MPS2/MPS3 FPGA image that qemu-system-arm
models) names its `qemu_machine`; a real board (a NUCLEO, a Pico, ...) names instead its
`stand_in`, the emulator board whose QEMU machine executes the same instruction set. The
real board's firmware is compiled with its own CPU flags and sized against its own memories;
for verification the same objects are linked at the stand-in's memory addresses
(`Board.emulated()`) and run on the stand-in's machine.
"""
from __future__ import annotations

import dataclasses
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
    stand_in: str | None = None  # the emulator board verifying a real board (None: this is one)
    notes: str = ""  # limits of the verification on the stand-in

    @property
    def verified_on(self) -> str:
        """The emulator board whose QEMU machine runs this board's firmware."""
        return self.stand_in or self.name

    def emulated(self) -> Board:
        """This board's CPU and memory sizes at the stand-in's memory addresses: what is
        linked to run on QEMU. An emulator board is its own stand-in."""
        if self.stand_in is None:
            return self
        s = load_board(self.stand_in)
        return dataclasses.replace(self, flash_origin=s.flash_origin, ram_origin=s.ram_origin)

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
        stand_in = load_board(str(d["stand_in"])) if "stand_in" in d else None
        if stand_in is not None and "qemu_machine" in d:
            raise McuqpError(f"board file {path} names both qemu_machine and stand_in; a real board names only its stand_in")
        board = Board(
            name=str(d["name"]),
            description=str(d["description"]),
            cpu=str(d["cpu"]),
            cflags=tuple(str(f) for f in d.get("cflags", [])),
            features=frozenset(str(f) for f in d.get("features", [])),
            qemu_machine=stand_in.qemu_machine if stand_in else str(d["qemu_machine"]),
            flash_origin=int(d["flash"]["origin"]),
            flash_size=int(d["flash"]["size"]),
            ram_origin=int(d["ram"]["origin"]),
            ram_size=int(d["ram"]["size"]),
            clock_hz=int(d["clock_hz"]) if "clock_hz" in d else None,
            stand_in=stand_in.name if stand_in else None,
            notes=str(d.get("notes", "")),
        )
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError) as e:
        raise McuqpError(f"board file {path} is malformed ({type(e).__name__}: {e}); fix or remove it") from e
    if stand_in is not None:
        if stand_in.stand_in is not None:
            raise McuqpError(f"board file {path}: stand-in {stand_in.name!r} is itself a real board; name an emulator board")
        if board.flash_size > stand_in.flash_size or board.ram_size > stand_in.ram_size:
            raise McuqpError(f"board file {path}: its memories exceed those of its stand-in {stand_in.name} "
                             f"({stand_in.flash_size} B flash, {stand_in.ram_size} B RAM); pick a larger stand-in")
    return board


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
