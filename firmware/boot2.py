"""Write the RP2040 boot stage's CRC-32 into a linked ELF (standard library only: the build's
Makefile runs this file as its last step, so ``make`` alone makes a bootable ELF too).

The boot ROM checks the 256-byte second stage at the start of flash: the CRC-32 (polynomial
0x04C11DB7, initial value 0xFFFFFFFF, no reflection, no final XOR; "CRC-32/MPEG-2") of its first
252 bytes must equal its last 4 (little-endian). RP2040 datasheet 2.8.1.3.1.

    python3 boot2.py firmware.elf    # patches the .boot2 section in place
"""

from __future__ import annotations

import struct
import sys

BOOT2_BYTES = 256
SECTION = ".boot2"


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of `data` (MSB first)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def boot2_offset(elf: bytes) -> int | None:
    """File offset of the .boot2 section of a 32-bit little-endian ELF, or None without one."""
    if elf[:4] != b"\x7fELF" or elf[4] != 1 or elf[5] != 1:
        raise ValueError("not a 32-bit little-endian ELF")
    shoff, = struct.unpack_from("<I", elf, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x2E)
    names_offset = struct.unpack_from("<I", elf, shoff + shstrndx * shentsize + 0x10)[0]
    for index in range(shnum):
        header = shoff + index * shentsize
        name, _, _, _, offset, size = struct.unpack_from("<IIIIII", elf, header)
        end = elf.index(b"\0", names_offset + name)
        if elf[names_offset + name:end].decode() == SECTION:
            if size != BOOT2_BYTES:
                raise ValueError(f"{SECTION} is {size} bytes, not {BOOT2_BYTES}")
            return offset
    return None


def patch_elf(path: str) -> int | None:
    """Write the CRC into `path`'s .boot2 section; returns the CRC (None: no boot stage)."""
    with open(path, "rb") as handle:
        elf = bytearray(handle.read())
    offset = boot2_offset(bytes(elf))
    if offset is None:
        return None
    crc = crc32_mpeg2(bytes(elf[offset:offset + BOOT2_BYTES - 4]))
    struct.pack_into("<I", elf, offset + BOOT2_BYTES - 4, crc)
    with open(path, "wb") as handle:
        handle.write(elf)
    return crc


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 boot2.py FIRMWARE.elf")
    try:
        patch_elf(sys.argv[1])
    except (OSError, ValueError) as err:
        sys.exit(f"boot2.py: {sys.argv[1]}: {err}")
