"""The in-place depthwise pair ring (ek_conv_depthwise.c: `inplace_quad_pairs` and its row loops
in assembly, `dw_pairs_rows_s1_asm` and `dw_pairs_rows_s2_asm`) on the DSP cores, over what
its loops branch on: strides 1 and 2, every size of a last partial block (out_w % 4 of 0 to
3), left padding of 0 and 1 (a pair word holding a padding column), the ring in the scratch
plane or on the stack, a layer whose activation clamps inside the int8 range (its groups take
the C row loop, dw_pairs_rows, on the device too), and layers with channels in the wide fast
requantisation (`dw_pairs_rows_s1_wide_asm`, `dw_pairs_rows_s2_wide_asm`) and in none of the
fast forms (the C loop for those channels, beside the assembly for the others). Chains of
depthwise layers, each planned in place, built for the M4, M7 and M55 stand-ins and the M0+ and
M3 (the portable ring over the same layers), run once: the outputs equal the reference
interpreter's and the peak SRAM estimate equals the measurement (bounds it, within 1%, where a
path it counts is not taken)."""

from __future__ import annotations

import numpy as np
import pytest

from kernel_paths import BOARDS, DSP_BOARDS, elf_functions
import graph_builders as gb  # noqa: E402

pytestmark = pytest.mark.hil

PAIR_LOOPS = ("dw_pairs_rows_s1_asm", "dw_pairs_rows_s2_asm")
WIDE_LOOPS = {"dw_pairs_rows_s1_wide_asm", "dw_pairs_rows_s2_wide_asm"}
#: the chains some of whose groups take the C row loop (dw_pairs_rows) on the DSP cores
C_ROW_CHAINS = ("wide", "forms")

#: per chain: its input and the layers (stride, padding, activation); the comments give out_w
#: and what the layer covers (left padding, where its ring lives)
CHAINS = {
    "wide": ((1, 30, 30, 8), [(1, "SAME", "NONE"),     # 30: last block 2, left 1, plane
                              (2, "SAME", "NONE"),     # 15: last block 3, left 0, plane
                              (1, "SAME", "RELU6"),    # 15: the C row loop, stack
                              (2, "VALID", "NONE"),    # 7: last block 3, slack word
                              (1, "VALID", "NONE")]),  # 5: last block 1
    "narrow": ((1, 20, 20, 12), [(1, "VALID", "NONE"),    # 18: last block 2, left 0
                                 (2, "SAME", "NONE"),     # 9: last block 1, left 0
                                 (2, "SAME", "NONE"),     # 5: last block 1, left 1
                                 (1, "SAME", "NONE"),     # 5
                                 (1, "VALID", "NONE")]),  # 3: last block 3
    "whole": ((1, 18, 18, 16), [(1, "VALID", "NONE"),    # 16: whole blocks
                                (2, "SAME", "NONE"),     # 8: whole blocks, stride 2
                                (1, "SAME", "NONE")]),   # 8
    # channels 1 and 5 with right shifts over 23 (the wide form's loops), 0 and 3 with a right
    # shift of 1 (no fast form: the C loop), both strides
    "forms": ((1, 12, 12, 8), [(1, "SAME", "NONE", "forms"), (2, "SAME", "NONE", "forms")]),
}


def requant_forms(graph):
    return gb.shrink_channels(gb.shrink_channels(graph, [1, 5], 2**18, live=True), [0, 3],
                              1 / 128)


def depthwise_chain(rng, in_shape, layers):
    """3x3 DEPTHWISE_CONV_2Ds in a row."""

    def layer(stride, padding, activation, forms=None):
        def make(shape):
            g = gb.depthwise_conv2d(rng, in_shape=shape, stride=(stride, stride),
                                    padding=padding, activation=activation)
            return requant_forms(g) if forms else g
        return make

    return gb.chain(in_shape, [layer(*spec) for spec in layers], name="depthwise_pairs")


@pytest.fixture(scope="module", params=list(CHAINS))
def chain(request):
    from edgekit.firmware.codegen import random_test_inputs
    from edgekit.interpreter import Interpreter

    in_shape, layers = CHAINS[request.param]
    g = depthwise_chain(np.random.default_rng(5), in_shape, layers)
    _, values = Interpreter(g).run(random_test_inputs(g, 2), intermediates=True)
    spread = [len(np.unique(values[f"t{i}"])) for i in range(len(layers))]
    assert min(spread) >= 8, spread  # no layer crushes the values (that would hide errors)
    if request.param == "forms":
        from edgekit.constant_channels import fold_constant_channels

        for op, p in zip(g.ops, Interpreter(g).prepared):
            right = -np.asarray(fold_constant_channels(op, g, p).shifts)
            assert (right > 23).any() and (right < 2).any(), right
    return request.param, g


@pytest.mark.parametrize("board", list(BOARDS))
def test_pair_ring_bit_exact(chain, board, tmp_path):
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.firmware.model_build import build_model
    from edgekit.planner import plan

    name, graph = chain
    chosen = plan(graph, inplace={"depthwise_channelwise"})
    modes = {chosen.buffers[op.outputs[0]].inplace_mode for op in graph.ops}
    assert modes == {"depthwise_channelwise"}, modes  # every layer in place
    built = build_model(graph, board, tmp_path, seed=2, plan=chosen)
    functions = elf_functions(built.elf_path)
    loops = set(PAIR_LOOPS) | (WIDE_LOOPS if name == "forms" else set())
    if board in DSP_BOARDS:
        assert loops <= functions, sorted(loops - functions)
    else:
        assert not loops & functions
    measured = measure(resolve_firmware(tmp_path, None), BOARDS[board])
    assert measured["bit_exact"] is True, f"{board}: outputs differ"
    estimate, peak = built.manifest["estimate"]["peak_sram_bytes"], measured["peak_sram_bytes"]
    if board in DSP_BOARDS and name not in C_ROW_CHAINS:
        assert peak == estimate
    else:
        # the C row loop's frame (a clamped layer's groups, channels in no fast form) holds
        # words only its generic requantisation writes, and the M0+'s bound counts the plane
        # kernel no layer here takes
        assert peak <= estimate <= 1.01 * peak
