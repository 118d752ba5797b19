"""Instructions per layer of edgekit's conv / depthwise / fully-connected kernels on Unicorn's
Cortex-M4, for the MLPerf Tiny models, with every output checked bit-exact on the device.

For each model, one bare-metal program holds every CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED layer: its weights, bias, multipliers and params (const, in flash), and its input
as the reference interpreter computes it for one random model input. The program is built with
arm-none-eabi-gcc (-O2, -mcpu=cortex-m4, so the SXTB16/SMLAD path is compiled in) and run on
Unicorn's Cortex-M4 model: for each layer the host calls ``bench_setup(i)`` (copies the input into
RAM; not counted), then ``bench_run(i)`` (the kernel call; every executed instruction counted),
then reads the output from RAM and compares it with the interpreter's, byte for byte.
Depthwise layers that the planner may run in place (``depthwise_channelwise``) are measured in
that mode, since that is what the generated firmware runs for them.

    .venv/bin/python bench/kernels_conv.py [--models vww kws resnet ad01] [--portable]
                         [--no-effective-bias] [--out bench/results/kernels_conv.json]

CONV_2D layers get ek_conv2d_params.effective_bias (bias with the input offset folded in, as the
generator emits it) unless --no-effective-bias; FULLY_CONNECTED layers then get, as the generator
emits them, that folded bias as their bias and an input offset of 0.

Instructions are counted per translated block (a block hook, each block's instruction count
decoded once with capstone): every block inside ``bench_run`` runs to its end, so this is exact.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import capstone
import numpy as np
import unicorn
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection
from unicorn import arm_const

from edgekit.converters.tflite_reader import load_tflite
from edgekit.firmware.op_emitters import kernel_shifts
from edgekit.interpreter import Interpreter
from edgekit.ir import Graph, Op

REPO = Path(__file__).resolve().parents[1]
KERNELS = REPO / "firmware" / "c" / "kernels"
MODELS_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
MODELS = {"vww": "vww_96_int8.tflite", "kws": "kws_ref_model.tflite",
          "resnet": "pretrainedResnet_quant.tflite", "ad01": "ad01_int8.tflite"}
KERNEL_SOURCES = ("ek_conv.c", "ek_conv_depthwise.c")
CONV_KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: TFLite Micro + CMSIS-NN instructions per inference on Unicorn's Cortex-M4 (issue 4's table)
TFLM_CMSIS_INSTRUCTIONS = {"vww": 24_101_898, "kws": 7_697_339, "resnet": 29_864_628,
                           "ad01": 582_948}
CPU_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"]
FLASH_BASE, FLASH_SIZE = 0x0000_0000, 16 << 20
RAM_BASE, RAM_SIZE = 0x2000_0000, 4 << 20
STACK_BYTES = 8192

LINKER_SCRIPT = f"""
MEMORY {{ FLASH (rx) : ORIGIN = {FLASH_BASE:#x}, LENGTH = {FLASH_SIZE:#x}
         RAM (rwx) : ORIGIN = {RAM_BASE:#x}, LENGTH = {RAM_SIZE:#x} }}
SECTIONS {{
  .text : {{ *(.text*) *(.rodata*) }} > FLASH
  .data : {{ *(.data*) }} > RAM AT > FLASH
  .bss (NOLOAD) : {{ *(.bss*) *(COMMON) }} > RAM
}}
"""


@dataclass
class Layer:
    """One conv-family op of a model, with the values it is measured on."""

    index: int  # op index in the graph
    op: Op
    prepared: object
    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None
    expected: np.ndarray
    inplace: bool

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the full kernel window (padding taps included, as usual)."""
        out = self.expected
        if self.op.kind == "FULLY_CONNECTED":
            return out.size * self.w.shape[1]
        kh, kw = self.w.shape[1], self.w.shape[2]
        per_output = kh * kw * (self.x.shape[3] if self.op.kind == "CONV_2D" else 1)
        return out.size * per_output


def model_layers(graph: Graph, seed: int = 0) -> list[Layer]:
    """Every conv/depthwise/FC op of ``graph`` with its input, weights and expected output for
    one random model input (the reference interpreter's intermediate tensors)."""
    interpreter = Interpreter(graph)
    rng = np.random.default_rng(seed)
    inputs = [rng.integers(t.dtype.min, t.dtype.max + 1, size=t.shape).astype(t.dtype.numpy)
              for t in interpreter.input_tensors]
    _, values = interpreter.run(inputs, intermediates=True)
    layers = []
    for index, (op, prepared) in enumerate(zip(graph.ops, interpreter.prepared)):
        if op.kind not in CONV_KINDS:
            continue
        x = values[op.inputs[0]]
        expected = values[op.outputs[0]]
        bias = graph[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] else None
        inplace = (op.kind == "DEPTHWISE_CONV_2D" and prepared.depth_multiplier == 1
                   and expected.shape[1] * expected.shape[2] <= x.shape[1] * x.shape[2])
        layers.append(Layer(index, op, prepared, x, graph[op.inputs[1]].data, bias, expected,
                            inplace))
    return layers


# --- C program ----------------------------------------------------------------------------------

def _array(ctype: str, name: str, values: np.ndarray) -> str:
    flat = np.asarray(values).reshape(-1)
    body = ",".join(str(int(v)) for v in flat) if flat.size else "0"
    return (f"static const {ctype} {name}[{max(flat.size, 1)}]"
            f" __attribute__((aligned(4))) = {{{body}}};\n")


def effective_bias(layer: Layer) -> np.ndarray:
    """ek_conv2d_params.effective_bias (ek_conv.h): bias + input_offset * (sum of the output
    channel's weights), int32 wrapping -- what the generator emits for a CONV_2D."""
    out_c = layer.w.shape[0]
    bias = np.zeros(out_c, np.int64) if layer.bias is None else layer.bias.astype(np.int64)
    total = bias + layer.prepared.input_offset * layer.w.reshape(out_c, -1).astype(np.int64).sum(1)
    return ((total + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _folds_fc_bias(layer: Layer, with_effective_bias: bool) -> bool:
    """Whether the generator folds this FULLY_CONNECTED's input offset into its bias."""
    return (with_effective_bias and layer.op.kind == "FULLY_CONNECTED"
            and layer.prepared.filter_offset == 0)


def _interleaves_fc(layer: Layer, with_effective_bias: bool) -> bool:
    """Whether the generator emits this FULLY_CONNECTED's filter interleaved (ek_conv.h)."""
    from edgekit.firmware.op_emitters import fc_interleave_pays, fc_interleaves

    if not _folds_fc_bias(layer, with_effective_bias):
        return False
    units, depth = layer.w.shape
    return (fc_interleaves("s8", layer.prepared.filter_offset, units, depth)
            and fc_interleave_pays(layer.macs))


def _params(layer: Layer, i: int, with_effective_bias: bool) -> str:
    p, x, w = layer.prepared, layer.x, layer.w
    input_offset = 0 if _folds_fc_bias(layer, with_effective_bias) else p.input_offset
    common = (f".input_offset = {input_offset}, .filter_offset = {p.filter_offset}, "
              f".output_offset = {p.output_offset}, .act_min = {p.act_min}, "
              f".act_max = {p.act_max}, .multipliers = m{i}, .shifts = s{i}")
    if with_effective_bias and layer.op.kind == "CONV_2D":
        common += f", .effective_bias = eb{i}"
    if layer.op.kind == "FULLY_CONNECTED":
        from edgekit.firmware.op_emitters import requant_fast_everywhere

        units, depth = w.shape
        layout = ", .interleaved = 1" if _interleaves_fc(layer, with_effective_bias) else ""
        # as the generator marks it
        if requant_fast_everywhere(p.multipliers, kernel_shifts(p.multipliers, p.shifts)):
            layout += ", .requant_fast = 1"
        return (f"static const ek_fully_connected_params p{i} = {{.rows = {x.size // depth}, "
                f".depth = {depth}, .units = {units}, {common}{layout}}};\n")
    _, oh, ow, oc = p.out_shape
    return (f"static const ek_conv2d_params p{i} = {{.in_h = {x.shape[1]}, .in_w = {x.shape[2]},"
            f" .in_c = {x.shape[3]}, .out_h = {oh}, .out_w = {ow}, .out_c = {oc},"
            f" .k_h = {w.shape[1]}, .k_w = {w.shape[2]}, .stride_h = {p.stride[0]},"
            f" .stride_w = {p.stride[1]}, .dilation_h = {p.dilation[0]},"
            f" .dilation_w = {p.dilation[1]}, .pad_top = {p.pad[0]}, .pad_left = {p.pad[2]},"
            f" .depth_multiplier = {p.depth_multiplier}, {common}}};\n")


def _call(layer: Layer, i: int, with_effective_bias: bool) -> str:
    bias = f"b{i}" if layer.bias is not None else "0"
    if _folds_fc_bias(layer, with_effective_bias):
        bias = f"eb{i}"
    args = f"&p{i}, (int8_t *)io, w{i}, {bias}"
    if layer.op.kind == "FULLY_CONNECTED":
        return f"ek_fully_connected_s8({args}, io + OUT_AT);"
    if layer.op.kind == "CONV_2D":
        return f"ek_conv2d_s8({args}, io + OUT_AT);"
    if layer.inplace:
        return f"ek_depthwise_conv2d_s8_inplace({args}, (int8_t *)io, io + OUT_AT);"
    return f"ek_depthwise_conv2d_s8({args}, io + OUT_AT);"


def program_source(layers: list[Layer], with_effective_bias: bool = True) -> tuple[str, int]:
    """The C source of the bench program and the byte offset of outputs (and scratch) in io."""
    out_at = (max(layer.x.size for layer in layers) + 15) // 16 * 16
    io_bytes = out_at + max(max(layer.expected.size, layer.x.shape[1] * layer.x.shape[2]
                                if layer.x.ndim == 4 else 0) for layer in layers)
    parts = ["#include <stdint.h>\n#include <string.h>\n#include \"ek_conv.h\"\n",
             f"#define OUT_AT {out_at}\n",
             f"int8_t io[{io_bytes}] __attribute__((aligned(16)));\n"]
    setups, runs = [], []
    for i, layer in enumerate(layers):
        if _interleaves_fc(layer, with_effective_bias):
            from edgekit.firmware.op_emitters import interleave_fc_filter

            parts.append(_array("int8_t", f"w{i}", interleave_fc_filter(layer.w)))
        else:
            parts.append(_array("int8_t", f"w{i}", layer.w))
        parts.append(_array("int8_t", f"x{i}", layer.x))
        if layer.bias is not None:
            parts.append(_array("int32_t", f"b{i}", layer.bias.astype(np.int64)))
        parts.append(_array("int32_t", f"m{i}", layer.prepared.multipliers))
        parts.append(_array("int32_t", f"s{i}", kernel_shifts(layer.prepared.multipliers,
                                                              layer.prepared.shifts)))
        if (with_effective_bias and layer.op.kind == "CONV_2D"
                or _folds_fc_bias(layer, with_effective_bias)):
            parts.append(_array("int32_t", f"eb{i}", effective_bias(layer)))
        parts.append(_params(layer, i, with_effective_bias))
        setups.append(f"    case {i}: memcpy(io, x{i}, sizeof x{i}); break;\n")
        runs.append(f"    case {i}: {_call(layer, i, with_effective_bias)} break;\n")
    parts.append("void bench_setup(int i)\n{\n    switch (i) {\n" + "".join(setups)
                 + "    default: break;\n    }\n}\n")
    parts.append("void bench_run(int i)\n{\n    switch (i) {\n" + "".join(runs)
                 + "    default: break;\n    }\n}\n")
    parts.append("__attribute__((naked, noinline)) void bench_stop(void) { __asm__(\"b .\"); }\n")
    return "".join(parts), out_at


def build_program(layers: list[Layer], workdir: Path, portable: bool = False,
                  with_effective_bias: bool = True) -> tuple[Path, int]:
    """Compile and link the bench program for the Cortex-M4; returns the ELF and OUT_AT."""
    if shutil.which("arm-none-eabi-gcc") is None:
        raise RuntimeError("arm-none-eabi-gcc not found on PATH")
    source, out_at = program_source(layers, with_effective_bias)
    (workdir / "bench.c").write_text(source)
    (workdir / "bench.ld").write_text(LINKER_SCRIPT)
    elf = workdir / "bench.elf"
    defines = ["-DEDGEKIT_PORTABLE_KERNELS"] if portable else []
    cmd = ["arm-none-eabi-gcc", *CPU_FLAGS, "-O2", "-std=c99", "-Wall", "-ffunction-sections",
           "-fdata-sections", *defines, f"-I{KERNELS}", str(workdir / "bench.c"),
           *[str(KERNELS / s) for s in KERNEL_SOURCES], "-nostartfiles", "--specs=nano.specs",
           "-Wl,--gc-sections", "-Wl,-e,bench_run", "-Wl,-u,bench_setup", "-Wl,-u,bench_stop", f"-T{workdir / 'bench.ld'}", "-o", str(elf)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return elf, out_at


# --- Unicorn ------------------------------------------------------------------------------------

class CortexM4:
    """The bench ELF loaded on Unicorn's Cortex-M4, with exact instruction counting."""

    def __init__(self, elf_path: Path):
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(arm_const.UC_CPU_ARM_CORTEX_M4)
        self.uc.mem_map(FLASH_BASE, FLASH_SIZE)
        self.uc.mem_map(RAM_BASE, RAM_SIZE)
        self.symbols: dict[str, int] = {}
        with open(elf_path, "rb") as f:
            elf = ELFFile(f)
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_LOAD" and segment["p_filesz"]:
                    self.uc.mem_write(segment["p_paddr"], segment.data())
            for section in elf.iter_sections():
                if isinstance(section, SymbolTableSection):
                    for sym in section.iter_symbols():
                        if sym.name:
                            self.symbols[sym.name] = sym["st_value"] & ~1
            data = elf.get_section_by_name(".data")
            if data is not None and data["sh_size"]:  # copy .data to RAM as startup code would
                self.uc.mem_write(data["sh_addr"], data.data())
        self.disasm = capstone.Cs(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB | capstone.CS_MODE_MCLASS)
        self.block_sizes: dict[tuple[int, int], int] = {}
        self.count = 0
        self.uc.hook_add(unicorn.UC_HOOK_BLOCK, self._on_block)

    def _on_block(self, uc, address, size, _user):
        key = (address, size)
        n = self.block_sizes.get(key)
        if n is None:
            n = sum(1 for _ in self.disasm.disasm_lite(bytes(uc.mem_read(address, size)), address))
            self.block_sizes[key] = n
        self.count += n

    def call(self, name: str, *args: int) -> int:
        """Call ``name(args...)``; returns the instructions it executed."""
        stop = self.symbols["bench_stop"]
        self.uc.reg_write(arm_const.UC_ARM_REG_SP, RAM_BASE + RAM_SIZE - 16)
        self.uc.reg_write(arm_const.UC_ARM_REG_LR, stop | 1)
        for reg, value in zip((arm_const.UC_ARM_REG_R0, arm_const.UC_ARM_REG_R1), args):
            self.uc.reg_write(reg, value)
        self.count = 0
        self.uc.emu_start(self.symbols[name] | 1, stop)
        return self.count

    def read(self, symbol: str, offset: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(self.symbols[symbol] + offset, size))


def measure_layers(layers: list[Layer], portable: bool = False,
                   with_effective_bias: bool = True) -> list[dict]:
    """Build, run and check every layer on the Cortex-M4; one result row per layer."""
    with tempfile.TemporaryDirectory(prefix="ek-bench-conv-") as tmp:
        elf, out_at = build_program(layers, Path(tmp), portable, with_effective_bias)
        core = CortexM4(elf)
        rows = []
        for i, layer in enumerate(layers):
            core.call("bench_setup", i)
            instructions = core.call("bench_run", i)
            where = 0 if layer.inplace else out_at
            got = core.read("io", where, layer.expected.size)
            p = layer.prepared
            rows.append({
                "op_index": layer.index, "kind": layer.op.kind, "name": layer.op.name,
                "input_shape": list(layer.x.shape), "filter_shape": list(layer.w.shape),
                "output_shape": list(layer.expected.shape),
                "stride": list(getattr(p, "stride", (1, 1))), "inplace": layer.inplace,
                "macs": layer.macs, "instructions": instructions,
                "instructions_per_mac": round(instructions / layer.macs, 3),
                "bit_exact": got == layer.expected.tobytes(),
            })
        return rows


def bench_model(key: str, portable: bool = False, with_effective_bias: bool = True) -> dict:
    layers = model_layers(load_tflite(MODELS_DIR / MODELS[key]))
    rows = measure_layers(layers, portable, with_effective_bias)
    instructions = sum(r["instructions"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    return {
        "model": key, "layers": rows, "conv_family_instructions": instructions,
        "conv_family_macs": macs, "instructions_per_mac": round(instructions / macs, 3),
        "all_bit_exact": all(r["bit_exact"] for r in rows),
        "tflm_cmsis_instructions_per_inference": TFLM_CMSIS_INSTRUCTIONS[key],
        "conv_family_vs_tflm_cmsis_whole_model": round(instructions / TFLM_CMSIS_INSTRUCTIONS[key], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--portable", action="store_true",
                        help="build with -DEDGEKIT_PORTABLE_KERNELS (no DSP instructions)")
    parser.add_argument("--no-effective-bias", action="store_true",
                        help="CONV_2D params without effective_bias (input offset in the loop)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "kernels_conv.json")
    args = parser.parse_args(argv)
    results = []
    for key in args.models:
        result = bench_model(key, args.portable, not args.no_effective_bias)
        results.append(result)
        print(f"{key:7s} conv/dw/fc: {result['conv_family_instructions']:>11,} instructions,"
              f" {result['conv_family_macs']:>11,} MACs, {result['instructions_per_mac']:.2f}"
              f" instr/MAC, bit-exact: {result['all_bit_exact']}; TFLM+CMSIS-NN whole model"
              f" {result['tflm_cmsis_instructions_per_inference']:,}")
    payload = {"schema_version": 1, "cpu": "cortex-m4 (Unicorn)",
               "cflags": " ".join(CPU_FLAGS + ["-O2"]),
               "path": "portable" if args.portable else "dsp",
               "effective_bias": not args.no_effective_bias, "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["all_bit_exact"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
