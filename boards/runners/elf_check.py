"""Check a firmware ELF before anything runs it: a Cortex-M image every runner can load.

QEMU given a truncated or foreign ELF either refuses it with a message on stderr or, worse,
starts a CPU with nothing at the reset vector and waits out the whole timeout; Unicorn's and
the size reader's ELF parsing (pyelftools) raise their own exceptions. So every runner, and
`edgekit flash`, calls `validate_elf` first: one pass over the headers with pyelftools that
refuses, with a `FirmwareFormatError` naming the file, anything that is not a 32-bit
little-endian Arm executable whose program headers, sections and entry point lie inside it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from edgekit.errors import FirmwareFormatError

#: a Cortex-M firmware with debug information stays far below this; more is not a firmware
MAX_ELF_BYTES = 256 << 20
_ADDRESS_SPACE = 1 << 32
#: what pyelftools (and the struct/construct code under it) raises on a corrupt file
PARSE_ERRORS = (ELFError, ConstructError, struct.error, ValueError, KeyError, IndexError,
                TypeError, OverflowError, UnicodeDecodeError, AssertionError)


@dataclass(frozen=True)
class ElfSummary:
    """What the check saw: the entry point and the loadable (address, file bytes, memory bytes)."""

    entry: int
    loads: tuple[tuple[int, int, int], ...]
    #: the first 8 bytes loaded at the lowest load address (a Cortex-M image's initial SP and
    #: reset vector), or b"" when that segment is shorter
    vectors: bytes = b""

    def check_reset_vector(self, path: Path) -> None:
        """`FirmwareFormatError` unless the vector table at the image's lowest load address has a
        Thumb reset vector inside a loadable segment: where QEMU (-kernel) starts the core. A
        firmware that fails this would lock up at once and only end at the timeout."""
        if len(self.vectors) < 8:
            raise FirmwareFormatError(f"firmware file {path}: no vector table (initial SP and "
                                      "reset vector) at its lowest load address")
        reset = int.from_bytes(self.vectors[4:8], "little")
        inside = any(start <= (reset & ~1) < start + memsz for start, _, memsz in self.loads)
        if not reset & 1 or not inside:
            raise FirmwareFormatError(
                f"firmware file {path}: reset vector {reset:#010x} is not a Thumb address inside "
                "the image: the core would not start (is the vector table first in flash?)")


def validate_elf(path: str | Path) -> ElfSummary:
    """Check `path` is a loadable 32-bit little-endian Arm ELF; `FirmwareFormatError` otherwise."""
    path = Path(path)

    def bad(what: str) -> FirmwareFormatError:
        return FirmwareFormatError(f"firmware file {path}: {what}")

    if not path.is_file():
        raise FirmwareFormatError(f"firmware file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_ELF_BYTES:
        raise bad(f"{size} bytes is more than a firmware ELF can be ({MAX_ELF_BYTES} bytes)")
    with path.open("rb") as handle:
        head = handle.read(52)
        if head[:4] != b"\x7fELF":
            raise bad("not an ELF file (no \\x7fELF magic)")
        if len(head) < 52:
            raise bad(f"truncated ELF header ({len(head)} of 52 bytes)")
        if head[4] != 1:
            raise bad("not a 32-bit ELF (EI_CLASS is not ELFCLASS32): Cortex-M firmware is 32-bit")
        if head[5] != 1:
            raise bad("not a little-endian ELF (EI_DATA is not ELFDATA2LSB)")
        try:
            return _check_structure(ELFFile(handle), size, bad)
        except FirmwareFormatError:
            raise
        except PARSE_ERRORS as err:
            raise bad(f"corrupt ELF: {err}") from None


def _check_structure(elf: ELFFile, size: int, bad) -> ElfSummary:
    header = elf.header
    if header["e_machine"] != "EM_ARM":
        raise bad(f"an ELF for {header['e_machine']}, not for an Arm core (EM_ARM)")
    if header["e_type"] != "ET_EXEC":
        raise bad(f"an ELF of type {header['e_type']}, not a linked executable (ET_EXEC)")
    for what, offset, count, entry_size in (
            ("program header table", header["e_phoff"], header["e_phnum"], header["e_phentsize"]),
            ("section header table", header["e_shoff"], header["e_shnum"], header["e_shentsize"])):
        if count and offset + count * entry_size > size:
            raise bad(f"the {what} ({count} entries at offset {offset}) runs past the end of "
                      f"the file ({size} bytes): truncated?")
    loads = []
    lowest = None
    for index, segment in enumerate(elf.iter_segments()):
        if segment["p_type"] != "PT_LOAD":
            continue
        offset, filesz, memsz = segment["p_offset"], segment["p_filesz"], segment["p_memsz"]
        if offset + filesz > size:
            raise bad(f"loadable segment {index} ({filesz} bytes at file offset {offset}) runs "
                      f"past the end of the file ({size} bytes): truncated?")
        if filesz > memsz:
            raise bad(f"loadable segment {index} has more file bytes ({filesz}) than memory "
                      f"bytes ({memsz})")
        for address in (segment["p_vaddr"], segment["p_paddr"]):
            if address + memsz > _ADDRESS_SPACE:
                raise bad(f"loadable segment {index} at {address:#x} ({memsz} bytes) runs past "
                          "the 4 GiB address space")
        loads.append((segment["p_vaddr"], filesz, memsz))
        if filesz and (lowest is None or segment["p_paddr"] < lowest[0]):
            lowest = (segment["p_paddr"], segment)
    if not any(filesz for _, filesz, _ in loads):
        raise bad("no loadable segment with contents (PT_LOAD with file bytes): nothing to run")
    entry = header["e_entry"] & ~1  # a Thumb entry symbol carries bit 0
    if not any(start <= entry < start + memsz for start, _, memsz in loads):
        raise bad(f"entry point {header['e_entry']:#010x} lies outside every loadable segment")
    for index, section in enumerate(elf.iter_sections()):
        if section["sh_type"] != "SHT_NOBITS" and section["sh_offset"] + section["sh_size"] > size:
            raise bad(f"section {index} {section.name!r} ({section['sh_size']} bytes at offset "
                      f"{section['sh_offset']}) runs past the end of the file ({size} bytes)")
        if section.name == ".symtab" and not isinstance(section, SymbolTableSection):
            raise bad(f"section {index} is named .symtab but is of type {section['sh_type']}, "
                      "not a symbol table")
        if isinstance(section, SymbolTableSection):
            for _symbol in section.iter_symbols():  # names and values must all parse
                pass
    vectors = lowest[1].data()[:8] if lowest is not None else b""
    return ElfSummary(entry=header["e_entry"], loads=tuple(loads), vectors=vectors)
