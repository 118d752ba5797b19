"""The two-pixel paths' channel loops in assembly (ek_conv.c: `pw_paired_full_asm`,
`pw_paired_wide_full_asm`, `conv_wide_full_asm`, `conv_wide_wide_full_asm`) on the DSP cores,
over the shapes their loops branch on: windows of 1 to 18 four-byte steps (every remainder of
the four-step pass), short windows whose length is no multiple of 4 (the tail step), an odd
out_c (the last channel in C after the pairs), an odd pixel count (the lone last pixel), and
layers whose right shifts are too long for the fast requantisation (the wide form). Built for
the M4, M7 and M55 stand-ins (the assembly) and the M0+ and M3 (the portable loops over the same
generated layouts), with int8 weights and re-quantized to int4 (`s4_channels_full_asm`,
`s4_channels_wide_full_asm`), run once: the outputs equal the reference interpreter's and the peak SRAM
estimate equals the measurement."""

from __future__ import annotations

import numpy as np
import pytest

from kernel_paths import BOARDS, DSP_BOARDS, elf_functions
import graph_builders as gb  # noqa: E402

pytestmark = pytest.mark.hil

ASM_LOOPS = {"8": ("pw_paired_full_asm", "pw_paired_wide_full_asm", "conv_wide_full_asm",
                    "conv_wide_wide_full_asm"),
             "4": ("s4_channels_full_asm", "s4_channels_wide_full_asm")}

#: (out_channels, kernel, wide): `wide` layers have their first channel's filter scale (and so
#: its bias scale) divided by 2**20, which lengthens that channel's right shift by 20, past the
#: fast form's 23 (checked below): the layer takes the wide form, and its other channels still
#: carry the values on (a whole layer that far down would give the zero point everywhere and
#: hide every error before it); that channel's bias sits where its output rounds up, so it is
#: no constant channel (which would get a multiplier of 0 and the fast form)
LAYERS = [(7, 3, False), (12, 3, False), (20, 1, False), (28, 1, True), (8, 1, True),
          (16, 1, False), (4, 1, False), (6, 3, True), (10, 1, False)]


def conv_chain(rng, layers, in_shape, weights):
    """CONV_2Ds in a row with `weights` (INT8 or INT4) filters, no activation (the int8-range
    clamp the assembly takes)."""

    def layer(out_channels, k, wide):
        def make(shape):
            g = gb.conv2d(rng, in_shape=shape, out_channels=out_channels, kernel=(k, k),
                          padding="SAME" if k > 1 else "VALID", weight_dtype=weights)
            return gb.shrink_channels(g, [0], live=True) if wide else g
        return make

    return gb.chain(in_shape, [layer(*spec) for spec in layers], name="channel_loops")


@pytest.fixture(scope="module", params=["8", "4"])
def graph(request):
    """The chain with int8 or int4 weights (the int4 loop: its 1x1 layers over 8 and 16
    channels, its widened convolutions)."""
    from edgekit.firmware.codegen import random_test_inputs
    from edgekit.firmware.op_emitters import requant_needs_wide
    from edgekit.interpreter import Interpreter

    from edgekit.ir import DType

    weights = DType.INT8 if request.param == "8" else DType.INT4
    g = conv_chain(np.random.default_rng(11), LAYERS, (1, 9, 9, 3), weights)
    _, values = Interpreter(g).run(random_test_inputs(g, 2), intermediates=True)
    spread = [len(np.unique(values[f"t{i}"])) for i in range(len(LAYERS))]
    assert min(spread) >= 8, spread  # no layer crushes the values (that would hide errors)
    wide = [requant_needs_wide(p) for p in Interpreter(g).prepared]
    if request.param == "8":
        assert wide == [w for _, _, w in LAYERS], wide  # both requantisation forms
    else:  # int4 scales differ: some layers wide, the others not
        assert any(wide) and not all(wide), wide
    return request.param, g


@pytest.mark.parametrize("board", list(BOARDS))
def test_channel_loops_bit_exact(graph, board, tmp_path):
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    bits, g = graph
    built = build_model(g, board, tmp_path, seed=2)
    functions, loops = elf_functions(built.elf_path), set(ASM_LOOPS[bits])
    if board in DSP_BOARDS:
        assert loops <= functions, sorted(loops - functions)
    else:
        assert not loops & functions
    measured = measure(resolve_firmware(tmp_path, None), BOARDS[board])
    assert measured["bit_exact"] is True, f"{board}: outputs differ"
    assert measured["peak_sram_bytes"] == built.manifest["estimate"]["peak_sram_bytes"]


#: 3x3 windows over 3 channels (27 taps: no whole groups of four) -> whether the build needs
#: the widened path's part-group C loop (EK_CONV_WIDE_TAIL): not where the assembly takes
#: every channel pair; an odd last channel, a clamped activation or no bias keep the C loop
PART_GROUP_LAYERS = {"even_full": (8, "NONE", True, 0), "odd_channels": (7, "NONE", True, 1),
                     "relu6": (8, "RELU6", True, 1), "no_bias": (8, "NONE", False, 1)}


@pytest.mark.parametrize("case", list(PART_GROUP_LAYERS))
def test_part_group_windows_compile_their_loop_where_taken(case, tmp_path):
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model

    out_c, activation, bias, tail = PART_GROUP_LAYERS[case]
    g = gb.conv2d(np.random.default_rng(5), in_shape=(1, 12, 12, 3), out_channels=out_c,
                  activation=activation, bias=bias)
    built = build_model(g, "mps2-an386", tmp_path, seed=1)
    config = (tmp_path / "src" / "ek_model_config.h").read_text()
    assert f"#define EK_CONV_WIDE_TAIL {tail} " in config
    assert ("dot2x2_wide_tail" in elf_functions(built.elf_path)) == bool(tail)
    measured = measure(resolve_firmware(tmp_path, None), "unicorn")
    assert measured["bit_exact"] is True, case


@pytest.mark.parametrize("out_c, odd", [(9, 1), (10, 0)])
def test_int4_pointwise_odd_last_channel_compiled_where_taken(out_c, odd, tmp_path):
    """An in-place int4 1x1 layer's odd last channel (after the assembly's pairs) is compiled in
    only where some such layer has one (EK_PW_ODD_S4); both builds bit-exact."""
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model
    from edgekit.ir import DType

    g = conv_chain(np.random.default_rng(3), [(16, 3, False), (out_c, 1, False)], (1, 16, 16, 3),
                   DType.INT4)
    built = build_model(g, "mps2-an386", tmp_path, seed=1)
    assert "ek_conv2d_s4_pointwise_inplace" in built.manifest["kernels"]
    config = (tmp_path / "src" / "ek_model_config.h").read_text()
    assert f"#define EK_PW_ODD_S4 {odd} " in config
    measured = measure(resolve_firmware(tmp_path, None), "unicorn")
    assert measured["bit_exact"] is True, out_c
