"""What the hil tests of the kernels' DSP paths share: the emulated boards they build for (one
per core: the M4, M7 and M55 stand-ins run the assembly, the M0+ and M3 the portable loops over
the same generated layouts), the ELF's function names (which loops a build linked), and the
skip where arm-none-eabi-gcc is missing. Importing it puts tests/ on the path (graph_builders)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc is not installed: cannot build the firmware",
                allow_module_level=True)

#: board -> runner; the DSP cores first
BOARDS = {"nucleo-l4r5zi": "unicorn", "disco-f746ng": "unicorn", "mps3-an547": "qemu",
          "rpi-pico": "unicorn", "lm3s6965evb": "unicorn"}
DSP_BOARDS = ("nucleo-l4r5zi", "disco-f746ng", "mps3-an547")


def elf_functions(elf_path: Path) -> set[str]:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        table = next(s for s in elf.iter_sections() if isinstance(s, SymbolTableSection))
        return {s.name for s in table.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"}
