"""int8 CONV_2Ds run by the int4 unit (``ek_conv2d_s8_via_s4``: ek_conv.c's int4 widened path
on int8 rows, its channel loops in assembly `s8_rows_full_asm` and `s8_rows_wide_full_asm`) on
every emulated core: a chain whose int8 layers are a short first window (27 taps, padded to 32)
requantised in the wide form, and a long window over 16 channels (144 taps) in the fast form,
between int4 layers, over an odd pixel count (the lone last pixel). On the M4, M7 and M55
stand-ins the assembly runs and ek_conv.c's int8 convolution is not linked; on the M0+ and M3
the portable loop reads the same layout. Outputs equal the reference interpreter's and peak
SRAM equals its estimate."""

from __future__ import annotations

import numpy as np
import pytest

from kernel_paths import BOARDS, DSP_BOARDS, elf_functions
import graph_builders as gb  # noqa: E402

pytestmark = pytest.mark.hil

#: (out_channels, kernel, wide, int8): `wide` as in test_channel_loops_asm_emulated.py
LAYERS = [(8, 3, True, True), (16, 3, False, False), (10, 3, False, True), (8, 1, False, False)]


@pytest.fixture(scope="module")
def graph():
    from edgekit.converters.int4_requant import requantize_weights
    from edgekit.firmware.codegen import random_test_inputs
    from edgekit.firmware.op_emitters import requant_needs_wide
    from edgekit.interpreter import Interpreter

    rng = np.random.default_rng(21)

    def layer(out_channels, k, wide, _int8):
        def make(shape):
            g = gb.conv2d(rng, in_shape=shape, out_channels=out_channels, kernel=(k, k),
                          padding="SAME" if k > 1 else "VALID")
            return gb.shrink_channels(g, [0], live=True) if wide else g
        return make

    g = gb.chain((1, 9, 9, 3), [layer(*spec) for spec in LAYERS], name="s8_via_s4")
    int4 = ",".join(f"#{i}=4" for i, spec in enumerate(LAYERS) if not spec[3])
    g = requantize_weights(g, f"mixed:default=8,{int4}")
    _, values = Interpreter(g).run(random_test_inputs(g, 2), intermediates=True)
    spread = [len(np.unique(values[f"t{i}"])) for i in range(len(LAYERS))]
    assert min(spread) >= 8, spread  # no layer crushes the values (that would hide errors)
    prepared = Interpreter(g).prepared
    assert requant_needs_wide(prepared[0], 1) and not requant_needs_wide(prepared[2], 1)
    return g


@pytest.mark.parametrize("board", list(BOARDS))
def test_int8_layers_in_the_int4_unit_bit_exact(graph, board, tmp_path):
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    built = build_model(graph, board, tmp_path, seed=2)
    assert "ek_conv2d_s8_via_s4" in built.manifest["kernels"]
    assert "ek_conv2d_s8" not in built.manifest["kernels"]
    functions = elf_functions(built.elf_path)
    loops = {"s8_rows_full_asm", "s8_rows_wide_full_asm"}
    if board in DSP_BOARDS:
        assert loops <= functions, sorted(loops - functions)
        assert "conv2d_wide_plain" not in functions  # ek_conv.c's int8 widened path
    else:
        assert not loops & functions
    measured = measure(resolve_firmware(tmp_path, None), BOARDS[board])
    assert measured["bit_exact"] is True, f"{board}: outputs differ"
    assert measured["peak_sram_bytes"] == built.manifest["estimate"]["peak_sram_bytes"]
