"""Sizes of a firmware ELF, read with pyelftools, as the design notes define them.

- ``flash_bytes``: what is programmed into flash: every allocated section with contents
  (.text, .rodata, .ARM.exidx and the .data load image).
- ``static_ram_bytes``: .data + .bss (+ a separate .arena where a board keeps the arena apart);
  the reserved ``.stack`` is left out: the stack is measured on the device instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from edgekit.errors import BuildError

#: sections reserved, not used: their size is a limit, not a figure
_RESERVED = (".stack",)


@dataclass(frozen=True)
class SectionSize:
    name: str
    address: int
    size: int
    kind: str  # "flash" (contents loaded from flash) or "ram" (NOBITS: zeroed or reserved)
    writable: bool


@dataclass(frozen=True)
class ElfSizes:
    """Size figures of one ELF; indexable like a dict (``sizes["flash_bytes"]``) too."""

    flash_bytes: int
    static_ram_bytes: int
    text_bytes: int
    rodata_bytes: int
    data_bytes: int
    bss_bytes: int
    stack_reserved_bytes: int
    arena_bytes: int
    sections: tuple[SectionSize, ...] = field(default=())

    def __getitem__(self, key: str):
        return getattr(self, key)

    def as_dict(self) -> dict:
        return asdict(self)


def _symbol_values(elf: ELFFile, names: tuple[str, ...]) -> dict[str, int]:
    table = elf.get_section_by_name(".symtab")
    found: dict[str, int] = {}
    if table is None:
        return found
    for name in names:
        symbols = table.get_symbol_by_name(name)
        if symbols:
            found[name] = symbols[0]["st_value"]
    return found


def weight_bytes(elf_path: str | Path) -> int:
    """Bytes of the model's weights in the ELF: the tensors' arrays (``ek_w_``) and the
    filters an op emits re-laid out as its own array (``opNNN_<kind>_filter``: an int8
    FULLY_CONNECTED's interleaved filter, op_emitters.interleave_fc_filter)."""
    return sum(size for name, size in symbol_sizes(elf_path).items()
               if name.startswith("ek_w_") or (name.startswith("op") and name.endswith("_filter")))


def symbol_sizes(elf_path: str | Path, prefix: str = "") -> dict[str, int]:
    """Size in bytes of every data object (``STT_OBJECT``) of the ELF whose name starts with
    ``prefix``, e.g. ``ek_w_`` for the model's weight arrays."""
    path = Path(elf_path)
    try:
        with path.open("rb") as handle:
            table = ELFFile(handle).get_section_by_name(".symtab")
            if table is None:
                return {}
            return {sym.name: sym["st_size"] for sym in table.iter_symbols()
                    if sym["st_info"]["type"] == "STT_OBJECT" and sym.name.startswith(prefix)}
    except FileNotFoundError:
        raise BuildError(f"{path}: no such ELF file") from None
    except ELFError as err:
        raise BuildError(f"{path}: not a readable ELF file: {err}") from None


def sizes(elf_path: str | Path) -> ElfSizes:
    """Flash and static-RAM figures of the ELF at `elf_path`, with per-section details."""
    path = Path(elf_path)
    try:
        with path.open("rb") as handle:
            elf = ELFFile(handle)
            sections = []
            for section in elf.iter_sections():
                flags = section["sh_flags"]
                if not flags & SH_FLAGS.SHF_ALLOC or section["sh_size"] == 0:
                    continue
                sections.append(SectionSize(
                    name=section.name, address=section["sh_addr"], size=section["sh_size"],
                    kind="ram" if section["sh_type"] == "SHT_NOBITS" else "flash",
                    writable=bool(flags & SH_FLAGS.SHF_WRITE)))
            symbols = _symbol_values(elf, ("__arena_start", "__arena_end"))
    except FileNotFoundError:
        raise BuildError(f"{path}: no such ELF file") from None
    except ELFError as err:
        raise BuildError(f"{path}: not a readable ELF file: {err}") from None

    def total(predicate) -> int:
        return sum(s.size for s in sections if predicate(s))

    arena = symbols.get("__arena_end", 0) - symbols.get("__arena_start", 0)
    return ElfSizes(
        flash_bytes=total(lambda s: s.kind == "flash"),
        static_ram_bytes=total(lambda s: s.writable and s.name not in _RESERVED),
        text_bytes=total(lambda s: s.name == ".text"),
        rodata_bytes=total(lambda s: s.kind == "flash" and not s.writable and s.name != ".text"),
        data_bytes=total(lambda s: s.kind == "flash" and s.writable),
        bss_bytes=total(lambda s: s.kind == "ram" and s.name not in _RESERVED),
        stack_reserved_bytes=total(lambda s: s.name in _RESERVED),
        arena_bytes=max(arena, 0),
        sections=tuple(sections),
    )
