"""Boards as data: one JSON file per board in this folder, the board id is the file name.

    >>> from edgekit.boards import load_board, list_boards, target_for
    >>> load_board("mps2-an386").cpu
    'cortex-m4'
    >>> target_for("disco-f746ng").host.id       # built to run on its emulated stand-in
    'mps2-an500'

Files are validated against `edgekit.boards.schema` on load; a bad file raises `BoardError`
naming the file and the field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from edgekit.boards.schema import Board, Console, Emulation, Flasher, MemoryRegion, parse_board
from edgekit.boards.target import Target, resolve_target
from edgekit.errors import BoardError

__all__ = ["Board", "Console", "Emulation", "Flasher", "MemoryRegion", "Target",
           "BOARDS_DIR", "load_board", "load_board_file", "list_boards", "resolve_target", "runners_for", "target_for"]

#: where the shipped board files live
BOARDS_DIR = Path(__file__).resolve().parent

_BOARD_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def load_board_file(path: str | Path) -> Board:
    """Load and validate one board file; the board id is its file name without ``.json``."""
    path = Path(path)
    board_id = path.stem
    if not _BOARD_ID.match(board_id):
        raise BoardError(f"{path}: board id {board_id!r} must be lowercase letters, digits and '-'")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BoardError(f"{path}: no such board file") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        # ValueError: JSONDecodeError, and integers too long to convert
        raise BoardError(f"{path}: not valid JSON: {err}") from None
    except OSError as err:
        raise BoardError(f"{path}: cannot read the board file: {err}") from None
    return parse_board(board_id, raw, str(path))


def list_boards(directory: str | Path | None = None) -> list[Board]:
    """Every board in `directory` (default: the shipped boards), sorted by id, each validated."""
    folder = Path(directory) if directory is not None else BOARDS_DIR
    boards = [load_board_file(p) for p in sorted(folder.glob("*.json"))]
    by_id = {b.id: b for b in boards}
    for board in boards:
        stand_in = board.emulation.stand_in
        if stand_in and stand_in not in by_id:
            raise BoardError(f"{board.source}: field emulation.stand_in: unknown board {stand_in!r}")
    return boards


def load_board(board_id: str, directory: str | Path | None = None) -> Board:
    """The board `board_id` (e.g. ``"mps2-an386"``), validated."""
    folder = Path(directory) if directory is not None else BOARDS_DIR
    path = folder / f"{board_id}.json"
    if not _BOARD_ID.match(board_id) or not path.is_file():
        known = ", ".join(p.stem for p in sorted(folder.glob("*.json")))
        raise BoardError(f"unknown board {board_id!r}; known boards: {known}")
    return load_board_file(path)


def target_for(board_id: str, *, emulated: bool = True, directory: str | Path | None = None) -> Target:
    """Resolve the build target of `board_id`: for a real board used in emulation, the stand-in's
    memory origins and console with the real board's sizes and core (see `resolve_target`)."""
    board = load_board(board_id, directory)
    host = None
    if board.kind == "real" and emulated and board.emulation.stand_in:
        host = load_board(board.emulation.stand_in, directory)
        if host.kind != "emulated":
            raise BoardError(f"{board.source}: field emulation.stand_in: {host.id!r} is not an "
                             f"emulated board")
    return resolve_target(board, host, emulated=emulated)


#: Renode board scripts (one ``<board id>.resc`` per board Renode really runs)
RENODE_SCRIPTS_DIR = BOARDS_DIR / "renode"


def runners_for(board: Board, directory: str | Path | None = None) -> tuple[str, ...]:
    """Runner names that really run `board`'s firmware: its own emulators, its stand-in's, and
    Renode only where a board script ships (a platform in the board file is not enough: Renode
    runs a real board's hardware build on its model of the chip, through that script)."""
    names = [n for n in board.runners if n != "renode"]
    if board.emulation.renode_platform and (RENODE_SCRIPTS_DIR / f"{board.id}.resc").is_file():
        names.append("renode")
    if board.emulation.stand_in:
        host = load_board(board.emulation.stand_in, directory)
        names = [n for n in host.runners if n in ("qemu", "unicorn")] + names
    return tuple(dict.fromkeys(names))
