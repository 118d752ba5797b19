"""The helpers the memory estimate may leave out of the stack bound (`edgekit.firmware.
stack_paths`): each is a function of the compiled kernels, called only from the kernels listed
for it, and deeper than the kernel's other paths (else listing it would change nothing); the code
generator records a helper exactly when a call's params take its path."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import graph_builders as gb
from c_kernels import ARM_CPU_FLAGS, KERNEL_DIR, require_arm_toolchain
from edgekit.firmware.codegen import generate
from edgekit.firmware.stack_bound import analyse
from edgekit.firmware.stack_paths import PATH_HELPERS, never_called

SOURCES = ["ek_conv.c", "ek_conv_depthwise.c", "ek_elementwise.c", "ek_misc.c", "ek_norm.c",
           "ek_pool.c", "ek_softmax.c", "ek_transformer.c"]
DSP_ONLY = {"conv2d_pairs_plain", "conv2d_pairs_fused", "conv2d_wide_plain", "conv2d_wide_fused",
            "conv2d_wide_s4_plain", "conv2d_wide_s4_fused",
            "dot4_raw", "pw_inplace_pairs",
            "inplace_quad_on_stack", "dw_quad_store_each", "dw_pairs_rows", "fc_dot4_interleaved",
            "fc_store4_fast", "wide_window_gathered", "pw_channels_fast", "pw_channels_exact",
            "pw_channels_wide", "pw_channels_full", "pw_channels_wide_full", "pw_paired_full_asm",
            "pw_paired_wide_full_asm", "conv_wide_full_asm", "conv_wide_wide_full_asm",
            "pw_paired_full_skip_asm", "pw_paired_wide_full_skip_asm"}


def _depths(frames, never=()):
    memo = {}

    def depth(address):
        if address not in memo:
            frame = frames[address]
            memo[address] = max([frame.frame_bytes] + [
                at + depth(t) for at, t in frame.calls
                if t in frames and frames[t].name not in never])
        return memo[address]
    return {f.name: depth(a) for a, f in frames.items()}


def _kernel_callers(frames, address) -> set[str]:
    """The kernels (ek_* entry points) whose calls reach `address`, through static helpers
    (conv_acc4_interior calls dot4_raw for ek_conv2d_s8)."""
    found, todo, seen = set(), [address], set()
    while todo:
        target = todo.pop()
        for caller_address, frame in frames.items():
            if caller_address in seen or not any(t == target for _, t in frame.calls):
                continue
            if frame.name.startswith("ek_"):
                found.add(frame.name)
            else:
                seen.add(caller_address)
                todo.append(caller_address)
    return found


def _kernels_elf(tmp_path, cpu: str):
    """Every kernel, compiled as the firmware compiles it (-O2, the core's flags) and linked
    with newlib-nano and libgcc, nothing discarded."""
    elf = tmp_path / f"kernels_{cpu}.elf"
    subprocess.run([require_arm_toolchain(), *ARM_CPU_FLAGS[cpu], "-mthumb", "-O2", "-std=c99",
                    f"-I{KERNEL_DIR}", "-nostartfiles", "-specs=nano.specs", "-Wl,-e,0",
                    "-Wl,-Ttext=0", "-o", str(elf), *(str(KERNEL_DIR / s) for s in SOURCES),
                    "-lc", "-lgcc"], check=True, capture_output=True)
    return elf


@pytest.mark.parametrize("cpu", ["cortex-m0", "cortex-m4", "cortex-m7"])
def test_helpers_are_called_only_from_their_kernels_and_deepen_them(cpu, tmp_path):
    frames = analyse(_kernels_elf(tmp_path, cpu))
    names = {f.name: a for a, f in frames.items()}
    full, pruned = _depths(frames), _depths(frames, never=set(PATH_HELPERS))
    for helper, (kernels, _) in PATH_HELPERS.items():
        if helper not in names:  # a DSP helper on the M0, or one of the int4 kernels only
            assert (helper in DSP_ONLY and cpu == "cortex-m0"
                    or not any(kernel in names for kernel in kernels)), (helper, cpu)
            continue
        callers = _kernel_callers(frames, names[helper])
        linked = {kernel for kernel in kernels if kernel in names}  # the int4 kernels are not
        assert callers == linked, (helper, callers)
        for kernel in linked:
            assert full[kernel] > pruned[kernel], (kernel, helper, full[kernel])


def _kernel_helpers(graph):
    return generate(graph).path_helpers


def test_codegen_records_the_broadcast_walk_only_for_broadcasting_calls():
    rng = np.random.default_rng(4)
    same = gb.add(rng, shape_a=(1, 4, 4, 8), shape_b=(1, 4, 4, 8))
    row = gb.mul(rng, shape_a=(1, 4, 4, 8), shape_b=(1, 1, 1, 8))
    assert _kernel_helpers(same) == set()
    assert _kernel_helpers(row) == {"ek_mul_s8_broadcast"}
    assert "ek_mul_s8_broadcast" not in never_called({"ek_mul_s8_broadcast"})
    assert "ek_add_s8_broadcast" in never_called({"ek_mul_s8_broadcast"})


def test_gather_fills_an_index_outside_the_table_without_memset():
    # the fill is a loop so that this path (ids are runtime data) is no deeper than the copy
    import ctypes

    from c_kernels import build_library, carray, fill_struct
    from kernel_op_cases import GATHER

    lib = build_library(["ek_transformer.c", "ek_elementwise.c", "ek_softmax.c"])  # ATTENTION calls both
    table = np.arange(5 * 3, dtype=np.int8).reshape(5, 3)
    idx = np.array([4, -1, 0, 5, 2], dtype=np.int32)
    out = np.full((5, 3), 0x5A, np.int8)
    params = fill_struct(GATHER, {"outer": 1, "axis_size": 5, "inner_bytes": 3,
                                  "num_indices": 5, "fill": -7})
    lib.ek_gather(ctypes.byref(params), carray(table), carray(idx), carray(out))
    want = np.stack([table[4], [-7] * 3, table[0], [-7] * 3, table[2]]).astype(np.int8)
    assert np.array_equal(out, want)
