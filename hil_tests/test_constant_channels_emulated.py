"""Pairs of constant channels (toolkit/constant_channels.py) skipped by the in-place 1x1
layers' channel loops in assembly (ek_conv.c `pw_paired_full_skip_asm`,
`pw_paired_wide_full_skip_asm`) on the DSP cores, and computed through a multiplier of 0 by the
portable loops: built for the M4, M7 and M55 stand-ins and the M0+ and M3, run once, the
outputs equal the reference interpreter's and the peak SRAM estimate equals the measurement."""

from __future__ import annotations

import pytest

from kernel_paths import BOARDS, DSP_BOARDS, elf_functions
from test_constant_channels import constant_pairs_graph  # noqa: E402

pytestmark = pytest.mark.hil

SKIP_LOOPS = {"pw_paired_full_skip_asm", "pw_paired_wide_full_skip_asm"}


@pytest.mark.parametrize("board", list(BOARDS))
def test_constant_pairs_skipped_bit_exact(board, tmp_path):
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    built = build_model(constant_pairs_graph(), board, tmp_path, seed=2)
    functions = elf_functions(built.elf_path)
    if board in DSP_BOARDS:
        assert functions & SKIP_LOOPS, "no skipping loop linked"
    else:
        assert not functions & SKIP_LOOPS
    measured = measure(resolve_firmware(tmp_path, None), BOARDS[board])
    assert measured["bit_exact"] is True, f"{board}: outputs differ"
    assert measured["peak_sram_bytes"] == built.manifest["estimate"]["peak_sram_bytes"]
