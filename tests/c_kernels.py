"""Host test support for the C kernels: compile them with the host gcc into a shared library and
call them from Python with ctypes.

Usage::

    from c_kernels import build_library, carray, struct_type
    lib = build_library(["ek_elementwise.c"], shim="size_t size_of_x(void) { ... }")
    lib.ek_relu_s8(ctypes.byref(params), carray(x), carray(y))

A library is built once per test session per (sources, defines, shim, flags, file contents):
the shared object goes into a private temporary folder named by a hash of all of that, so a
second call, or a second test file asking for the same thing, loads it without recompiling.

The kernels are compiled as the firmware compiles them (C99, -O2, every warning an error) plus
UndefinedBehaviorSanitizer when the host gcc has it: a signed overflow or an oversized shift in a
kernel would make its result compiler-dependent, so bit-exactness on the host would not carry
over to the board. UBSan reports go to a log file instead of killing the test process; call
`assert_no_undefined_behaviour()` after kernel calls (tests/test_kernels_c_ops.py does it after
every call) to turn a report into a test failure with UBSan's message.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
KERNEL_DIR = REPO_ROOT / "firmware" / "c" / "kernels"

BASE_FLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared")
UBSAN_FLAGS = ("-fsanitize=undefined",)

_BUILD_DIR = Path(tempfile.mkdtemp(prefix="edgekit-c-kernels-"))
atexit.register(shutil.rmtree, _BUILD_DIR, ignore_errors=True)
_UBSAN_LOG = _BUILD_DIR / "ubsan"
# libubsan reads its options from the process's initial environment, which Python cannot
# change; it also asks the program for defaults through __ubsan_default_options(), which every
# sanitized library built here defines: log to a file and keep going, so that the test (not
# the process) fails, with the report (the file is ubsan.<pid>).
_UBSAN_DEFAULTS = (f'const char *__ubsan_default_options(void);\n'
                   f'const char *__ubsan_default_options(void)'
                   f' {{ return "log_path={_UBSAN_LOG}:halt_on_error=0"; }}\n')


def assert_no_undefined_behaviour() -> None:
    """Fail the test if UBSan reported anything since the last call (and clear the report)."""
    log = Path(f"{_UBSAN_LOG}.{os.getpid()}")
    if log.exists():
        report = log.read_text()
        log.unlink()
        if report.strip():
            pytest.fail(f"undefined behaviour in a C kernel:\n{report}", pytrace=False)


def require_host_gcc() -> str:
    """The host gcc's path; skips the calling test when there is none."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("host gcc not installed (needed to compile the C kernels)")
    return gcc


@functools.lru_cache(maxsize=None)
def _ubsan_available(gcc: str) -> bool:
    probe = _BUILD_DIR / "ubsan_probe"
    source = probe.with_suffix(".c")
    source.write_text("int probe(int x) { return x + 1; }\n")
    result = subprocess.run([gcc, *BASE_FLAGS, *UBSAN_FLAGS, "-o", str(probe.with_suffix(".so")),
                             str(source)], capture_output=True, text=True)
    return result.returncode == 0


def build_library(sources: Sequence[str], *, defines: Sequence[str] = (), shim: str = "",
                  extra_flags: Sequence[str] = (), sanitize: bool = True) -> ctypes.CDLL:
    """Compile ``sources`` (file names in firmware/c/kernels, or absolute paths) plus an optional
    C ``shim`` (prefixed with <stddef.h> and <stdint.h>; include the kernel headers it needs
    itself) into a shared library.

    ``defines`` are ``NAME`` or ``NAME=VALUE`` strings passed as ``-D``. Compiler errors fail
    the test with gcc's message.
    """
    gcc = require_host_gcc()
    paths = [Path(s) if Path(s).is_absolute() else KERNEL_DIR / s for s in sources]
    flags = [*BASE_FLAGS, *(f"-D{d}" for d in defines), *extra_flags]
    if sanitize and _ubsan_available(gcc):
        flags += UBSAN_FLAGS
        shim = _UBSAN_DEFAULTS + shim
    return _build(gcc, tuple(str(p) for p in paths), tuple(flags), shim,
                  _content_key(paths, shim))


def _content_key(paths: list[Path], shim: str) -> str:
    digest = hashlib.sha256(shim.encode())
    for path in paths:
        digest.update(str(path).encode())
        digest.update(path.read_bytes())
    # Headers change the build too: hash every header in the kernel folder.
    for header in sorted(KERNEL_DIR.glob("*.h")):
        digest.update(header.name.encode())
        digest.update(header.read_bytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _build(gcc: str, sources: tuple[str, ...], flags: tuple[str, ...], shim: str,
           key: str) -> ctypes.CDLL:
    name = hashlib.sha256(repr((sources, flags, key)).encode()).hexdigest()[:16]
    target = _BUILD_DIR / f"kernels_{name}.so"
    inputs = list(sources)
    if shim.strip():
        shim_file = _BUILD_DIR / f"shim_{name}.c"
        shim_file.write_text("#include <stddef.h>\n#include <stdint.h>\n" + shim)
        inputs.append(str(shim_file))
    result = subprocess.run([gcc, *flags, f"-I{KERNEL_DIR}", "-o", str(target), *inputs, "-lm"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"host gcc failed on {', '.join(Path(s).name for s in sources)}:\n"
                    f"{result.stderr}", pytrace=False)
    return ctypes.CDLL(str(target))


def carray(array: np.ndarray) -> ctypes.c_void_p:
    """A pointer to a C-contiguous numpy array's data (keep the array alive during the call)."""
    if not array.flags["C_CONTIGUOUS"]:
        raise ValueError("carray needs a C-contiguous array")
    return ctypes.c_void_p(array.ctypes.data)


_CTYPES = {"int32_t": ctypes.c_int32, "float": ctypes.c_float, "double": ctypes.c_double,
           "int8_t": ctypes.c_int8, "int64_t": ctypes.c_int64, "void*": ctypes.c_void_p}


def struct_type(name: str, fields: Sequence[tuple[str, str]]) -> type[ctypes.Structure]:
    """A ctypes Structure mirroring a C struct. ``fields`` in declaration order as (name, type):
    type is ``int32_t``, ``int64_t``, ``float``, ``double``, ``void*`` (filled from a numpy
    array, kept alive in the instance's ``arrays``), ``int32_t[N]`` or another struct type made
    here (pass the class's ``__name__`` registered through `register_struct`)."""
    members = []
    for field_name, ctype in fields:
        if ctype in _CTYPES:
            members.append((field_name, _CTYPES[ctype]))
        elif ctype.endswith("]"):
            base, count = ctype[:-1].split("[")
            members.append((field_name, _CTYPES[base] * int(count)))
        elif ctype in _STRUCTS:
            members.append((field_name, _STRUCTS[ctype]))
        else:
            raise ValueError(f"unknown C type {ctype!r} for field {field_name!r}")
    cls = type(name, (ctypes.Structure,), {"_fields_": members})
    _STRUCTS[name] = cls
    return cls


_STRUCTS: dict[str, type[ctypes.Structure]] = {}


def fill_struct(cls: type[ctypes.Structure], values: dict) -> ctypes.Structure:
    """An instance of ``cls`` with every field set from ``values`` (missing or extra names
    raise: a test must not silently leave a field 0)."""
    names = [f[0] for f in cls._fields_]
    if set(values) != set(names):
        raise KeyError(f"{cls.__name__}: missing {sorted(set(names) - set(values))}, unknown"
                       f" {sorted(set(values) - set(names))}")
    instance = cls()
    for field_name, field_type in cls._fields_:
        value = values[field_name]
        if field_type is ctypes.c_void_p:  # a pointer field: a C-contiguous array, kept alive
            instance.__dict__.setdefault("arrays", {})[field_name] = value
            value = value.ctypes.data
        elif isinstance(value, dict):
            value = fill_struct(field_type, value)
        elif isinstance(value, (list, tuple, np.ndarray)):
            value = field_type(*[int(v) for v in value])
        elif isinstance(value, (np.integer, int)):
            value = int(value)
        else:
            value = float(value)
        setattr(instance, field_name, value)
    return instance


def arm_struct(arm, struct: ctypes.Structure) -> ctypes.Structure:
    """``struct`` laid out for the 32-bit target: each pointer field (``void*``, see
    `fill_struct`) re-pointed at a copy of its array in the target's RAM (``arm.put``). The
    other fields keep their host layout, which is the AAPCS one (int64 8-aligned on both)."""
    arrays = struct.__dict__.get("arrays")
    if not arrays:
        return struct
    fields = [(n, ctypes.c_uint32 if t is ctypes.c_void_p else t) for n, t in struct._fields_]
    target = type(f"{type(struct).__name__}_arm", (ctypes.Structure,), {"_fields_": fields})()
    for name, ctype in struct._fields_:
        setattr(target, name, arm.put(arrays[name]) if ctype is ctypes.c_void_p
                else getattr(struct, name))
    return target


def sizeof_shim(struct_names: Sequence[str], headers: Sequence[str]) -> str:
    """C source defining ``size_t ek_test_sizeof_<name>(void)`` for each struct, to check that
    a ctypes mirror has the C layout's size."""
    lines = [f'#include "{h}"' for h in headers]
    lines += [f"size_t ek_test_sizeof_{n}(void) {{ return sizeof({n}); }}" for n in struct_names]
    return "\n".join(lines) + "\n"


def c_sizeof(lib: ctypes.CDLL, struct_name: str) -> int:
    fn = getattr(lib, f"ek_test_sizeof_{struct_name}")
    fn.restype = ctypes.c_size_t
    return int(fn())


# --- the same kernels cross-compiled for a Cortex-M core, called on Unicorn ----------------------

ARM_GCC = "arm-none-eabi-gcc"
#: -mcpu plus float flags per core, as firmware/build.py compiles for the boards
ARM_CPU_FLAGS = {
    "cortex-m0": ("-mcpu=cortex-m0plus", "-mfloat-abi=soft"),
    "cortex-m3": ("-mcpu=cortex-m3", "-mfloat-abi=soft"),
    "cortex-m4": ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
    # disco-f746ng's single-precision FPU; Unicorn's Cortex-M7 model has no double-precision
    # VFP instructions either (fpv5-d16 code faults there on the first f64 instruction).
    "cortex-m7": ("-mcpu=cortex-m7", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"),
}
_ARM_FLASH, _ARM_RAM, _ARM_SIZE = 0x0000_0000, 0x2000_0000, 0x0040_0000
_ARM_STACK_BYTES = 0x1_0000
_ARM_RETURN = _ARM_FLASH + _ARM_SIZE - 0x100  # an address no code uses: a call returns here
_LINKER_SCRIPT = f"""
MEMORY {{
  FLASH (rx) : ORIGIN = {_ARM_FLASH:#x}, LENGTH = {_ARM_SIZE:#x}
  RAM (rwx)  : ORIGIN = {_ARM_RAM:#x}, LENGTH = {_ARM_SIZE:#x}
}}
SECTIONS {{
  .text : {{ *(.text*) *(.rodata*) }} > FLASH
  .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
  .data : {{ *(.data*) }} > RAM
  .bss : {{ *(.bss*) *(COMMON) }} > RAM
}}
"""


def require_arm_toolchain() -> str:
    gcc = shutil.which(ARM_GCC)
    if gcc is None:
        pytest.skip(f"{ARM_GCC} not installed (needed to cross-compile the C kernels)")
    try:
        import unicorn  # noqa: F401
    except ImportError:
        pytest.skip("unicorn not installed (needed to run Cortex-M code)")
    return gcc


class ArmKernels:
    """Kernels cross-compiled for one Cortex-M core (the firmware's flags, -O2) and called on
    Unicorn's model of that core, one function call at a time, AAPCS: the first four arguments
    in r0-r3, the rest on the stack. Buffers live in a RAM window the test fills and reads.

    ``call`` returns the number of instructions the call executed (Unicorn's Cortex-M4 counts
    are the benchmark unit of issue 4), counted per translated block like the board runner.
    """

    def __init__(self, elf: Path, cpu: str):
        import capstone
        import unicorn
        from elftools.elf.elffile import ELFFile
        from unicorn import arm_const
        self._arm = arm_const
        self.cpu = cpu
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        models = {"cortex-m0": arm_const.UC_CPU_ARM_CORTEX_M0,
                  "cortex-m3": arm_const.UC_CPU_ARM_CORTEX_M3,
                  "cortex-m4": arm_const.UC_CPU_ARM_CORTEX_M4,
                  "cortex-m7": arm_const.UC_CPU_ARM_CORTEX_M7}
        self.uc.ctl_set_cpu_model(models[cpu])
        self.uc.mem_map(_ARM_FLASH, _ARM_SIZE)
        self.uc.mem_map(_ARM_RAM, _ARM_SIZE)
        self.symbols: dict[str, int] = {}
        with open(elf, "rb") as f:
            image = ELFFile(f)
            for segment in image.iter_segments():
                if segment["p_type"] == "PT_LOAD" and segment["p_memsz"]:
                    data = segment.data() + bytes(segment["p_memsz"] - segment["p_filesz"])
                    self.uc.mem_write(segment["p_vaddr"], data)
            for sym in image.get_section_by_name(".symtab").iter_symbols():
                if sym["st_info"]["type"] == "STT_FUNC":
                    self.symbols[sym.name] = sym["st_value"]
        self.uc.mem_write(_ARM_RETURN, b"\x00\xbe\x00\xbe")  # bkpt: never reached
        self._heap = _ARM_RAM + 0x10_0000
        self._disassembler = capstone.Cs(capstone.CS_ARCH_ARM,
                                         capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        self._block_sizes: dict[int, int] = {}
        self._instructions = 0
        self.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)
        if cpu in ("cortex-m4", "cortex-m7"):
            # CPACR: full access to CP10/CP11, as the BSP's reset handler grants before main
            self.uc.reg_write(arm_const.UC_ARM_REG_CPACR if hasattr(arm_const, "UC_ARM_REG_CPACR")
                              else arm_const.UC_ARM_REG_C1_C0_2, 0xF << 20)

    def _on_block(self, uc, address: int, size: int, _user) -> None:
        count = self._block_sizes.get(address)
        if count is None:
            code = bytes(uc.mem_read(address, size))
            count = sum(1 for _ in self._disassembler.disasm_lite(code, address))
            self._block_sizes[address] = count
        self._instructions += count

    def reset_heap(self) -> None:
        """Forget every buffer (the next `put` starts at the bottom of the window again)."""
        self._heap = _ARM_RAM + 0x10_0000

    def put(self, data: bytes | np.ndarray | ctypes.Structure, align: int = 8) -> int:
        """Copy ``data`` into RAM; returns its address."""
        raw = bytes(data) if not isinstance(data, np.ndarray) else data.tobytes()
        address = (self._heap + align - 1) // align * align
        if address + len(raw) > _ARM_RAM + _ARM_SIZE:
            raise MemoryError("ArmKernels RAM window full: call reset_heap()")
        self.uc.mem_write(address, raw)
        self._heap = address + max(len(raw), 1)
        return address

    def get(self, address: int, like: np.ndarray) -> np.ndarray:
        """Read back an array shaped and typed like ``like``."""
        raw = bytes(self.uc.mem_read(address, like.nbytes))
        return np.frombuffer(raw, dtype=like.dtype).reshape(like.shape).copy()

    def call(self, function: str, *args: int) -> int:
        """Run ``function(args...)`` to its return; the instructions it executed."""
        arm = self._arm
        sp = _ARM_RAM + _ARM_STACK_BYTES
        stacked = [a & 0xFFFFFFFF for a in args[4:]]
        sp -= 4 * len(stacked)
        sp &= ~7
        for i, value in enumerate(stacked):
            self.uc.mem_write(sp + 4 * i, value.to_bytes(4, "little"))
        for reg, value in zip((arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2,
                               arm.UC_ARM_REG_R3), args[:4]):
            self.uc.reg_write(reg, value & 0xFFFFFFFF)
        self.uc.reg_write(arm.UC_ARM_REG_SP, sp)
        self.uc.reg_write(arm.UC_ARM_REG_LR, _ARM_RETURN | 1)
        self._instructions = 0
        self.uc.emu_start(self.symbols[function] | 1, _ARM_RETURN)
        return self._instructions


def build_arm_kernels(sources: Sequence[str], cpu: str, *, defines: Sequence[str] = (),
                      extra_flags: Sequence[str] = ()) -> ArmKernels:
    """Cross-compile ``sources`` (as `build_library` names them) for ``cpu`` (a key of
    `ARM_CPU_FLAGS`) and load them on Unicorn. Built once per session per inputs."""
    gcc = require_arm_toolchain()
    paths = [Path(s) if Path(s).is_absolute() else KERNEL_DIR / s for s in sources]
    flags = (*ARM_CPU_FLAGS[cpu], "-mthumb", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
             *(f"-D{d}" for d in defines), *extra_flags)
    elf = _build_arm(gcc, tuple(str(p) for p in paths), flags, _content_key(paths, ""))
    return ArmKernels(elf, cpu)


@functools.lru_cache(maxsize=None)
def _build_arm(gcc: str, sources: tuple[str, ...], flags: tuple[str, ...], key: str) -> Path:
    name = hashlib.sha256(repr((sources, flags, key)).encode()).hexdigest()[:16]
    script = _BUILD_DIR / "kernels.ld"
    script.write_text(_LINKER_SCRIPT)
    elf = _BUILD_DIR / f"kernels_{name}.elf"
    # No start files: nothing runs but the called function. newlib-nano gives memcpy/memmove,
    # libgcc the soft-float and 64-bit helpers; every kernel function is kept (no gc-sections).
    result = subprocess.run([gcc, *flags, f"-I{KERNEL_DIR}", "-nostartfiles", "-specs=nano.specs",
                             f"-Wl,-T,{script}", "-Wl,-e,0", "-o", str(elf), *sources, "-lc",
                             "-lgcc"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"{ARM_GCC} failed on {', '.join(Path(s).name for s in sources)}:\n"
                    f"{result.stderr}", pytrace=False)
    return elf
