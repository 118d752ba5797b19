"""Run generated model sources on the host: compile them with the host's gcc together with the
kernels and a tiny main, run once, and read back the output bytes.

The test suite uses this to compare the generated C with the reference interpreter without an
emulator (emlearn compiles its generated C in its tests the same way). The host build takes the
portable kernel path unless ``defines`` asks for ``EDGEKIT_EMULATE_DSP``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

from edgekit.errors import BuildError, ToolchainMissingError
from edgekit.firmware.codegen import GeneratedModel

#: forced into every host source (-include): model.c calls the trace after every op
HOST_TRACE = r"""
#include <stdio.h>
#include <stdint.h>

/* "T <step> <hex of the op's output tensor>" */
static inline void edgekit_host_trace(int step, const void *tensor, unsigned nbytes)
{
    const uint8_t *bytes = (const uint8_t *)tensor;
    printf("T %d ", step);
    for (unsigned k = 0; k < nbytes; ++k) printf("%02x", bytes[k]);
    printf("\n");
}
#define EDGEKIT_TRACE_OP(step, tensor, nbytes) edgekit_host_trace((step), (tensor), (nbytes))
"""

#: prints every output as "O <index> <hex>"; the payload API is all it uses
HOST_MAIN = r"""
#include "edgekit_payload.h"

int main(void)
{
    edgekit_payload_setup();
    int status = edgekit_payload_run();
    for (uint32_t i = 0; i < edgekit_payload_output_count(); ++i) {
        uint32_t len = 0;
        const uint8_t *bytes = edgekit_payload_output(i, &len);
        printf("O %u ", (unsigned)i);
        for (uint32_t k = 0; k < len; ++k) printf("%02x", bytes[k]);
        printf("\n");
    }
    return status;
}
"""


def kernel_dir() -> Path:
    """The folder of the C kernels (``edgekit.firmware`` package data)."""
    return Path(str(resources.files("edgekit.firmware") / "c" / "kernels"))


def harness_dir() -> Path:
    return Path(str(resources.files("edgekit.firmware") / "c" / "harness"))


def write_sources(model: GeneratedModel, directory: Path) -> list[Path]:
    """Write the generated files into `directory`; returns the .c files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in model.files.items():
        (directory / name).write_text(text)
    return [directory / name for name in model.sources]


def _host_flags(directory: Path, defines: Sequence[str], sanitize: bool) -> list[str]:
    flags = ["-std=c99", "-O1", "-g", "-Wall", "-Wextra",
             "-Werror=implicit-function-declaration", "-Werror=incompatible-pointer-types",
             f"-I{directory}", f"-I{kernel_dir()}", f"-I{harness_dir()}",
             "-include", str(directory / "host_trace.h")]
    if sanitize:
        flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    return flags + [f"-D{d}" for d in defines]


def _compile(cc: str, args: list[str], what: str) -> None:
    if shutil.which(cc) is None:
        raise ToolchainMissingError(f"host C compiler {cc!r} not found on PATH")
    proc = subprocess.run([cc, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"host build of {what} failed:\n{proc.stderr[-4000:]}")


def compile_kernels(directory: str | Path, *, defines: Sequence[str] = (), sanitize: bool = True,
                    cc: str = "gcc") -> list[Path]:
    """Compile every kernel once into `directory` (object files), for many host models."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "host_trace.h").write_text(HOST_TRACE)
    objects = []
    for source in sorted(kernel_dir().glob("*.c")):
        obj = directory / (source.stem + ".o")
        _compile(cc, [*_host_flags(directory, defines, sanitize), "-c", str(source), "-o",
                      str(obj)], source.name)
        objects.append(obj)
    return objects


def compile_on_host(model: GeneratedModel, directory: str | Path, *,
                    defines: Sequence[str] = (), sanitize: bool = True, cc: str = "gcc",
                    kernel_objects: Sequence[Path] | None = None) -> Path:
    """Build a host executable of `model` in `directory`; returns its path. ``sanitize`` adds
    AddressSanitizer (an access outside the arena or a weight array fails the run) and UBSan.
    ``kernel_objects`` (from `compile_kernels`, same defines and sanitize) skips recompiling the
    kernels."""
    directory = Path(directory)
    sources = write_sources(model, directory)
    # model.c calls EDGEKIT_TRACE_OP: every source gets the host trace hook with -include
    (directory / "host_trace.h").write_text(HOST_TRACE)
    (directory / "host_main.c").write_text(HOST_MAIN)
    sources.append(directory / "host_main.c")
    if kernel_objects is None:
        sources += sorted(kernel_dir().glob("*.c"))
    else:
        sources += list(kernel_objects)
    exe = directory / "model_host"
    _compile(cc, [*_host_flags(directory, defines, sanitize), *map(str, sources), "-o", str(exe)],
             model.graph.name)
    return exe


@dataclass
class HostRun:
    """What a host run printed: the output tensors, and every op's output by schedule step."""

    outputs: list[bytes]
    op_outputs: list[bytes]


def run_on_host(model: GeneratedModel, directory: str | Path, *, defines: Sequence[str] = (),
                sanitize: bool = True, timeout_s: float = 120.0,
                kernel_objects: Sequence[Path] | None = None) -> HostRun:
    """Compile and run `model` on the host, tracing every op's output tensor."""
    exe = compile_on_host(model, directory, defines=defines, sanitize=sanitize,
                          kernel_objects=kernel_objects)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise BuildError(f"host run of {model.graph.name} exited {proc.returncode}:\n"
                         f"{proc.stderr[-4000:]}")
    run = HostRun([], [])
    for line in proc.stdout.splitlines():
        tag, _, rest = line.partition(" ")
        _, _, hex_text = rest.partition(" ")
        (run.outputs if tag == "O" else run.op_outputs).append(bytes.fromhex(hex_text))
    return run
