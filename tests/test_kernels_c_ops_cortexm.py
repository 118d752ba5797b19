"""The same non-convolution C kernels cross-compiled with arm-none-eabi-gcc for the boards' cores
(Cortex-M0+, M3, M4F, M7F: soft and hard float, with and without SMULL/UMULL) and run on
Unicorn's model of each core, byte-equal with the reference interpreter on the randomized cases
of `kernel_op_cases`, out of place and (element-wise kernels) in place.

The host tests prove the C arithmetic; these prove that the compiler and the instruction set of
each core do not change it (64-bit multiplies become __aeabi_lmul on ARMv6-M, the float
rounding of QUANTIZE and the double of DEQUANTIZE go through the FPU or soft-float helpers).
They also record the instruction counts of the int8 kernels the MLPerf models use, per element,
and bound them (a regression in the generated code shows up here, not only in the benchmark).
"""

from __future__ import annotations

import numpy as np
import pytest

from c_kernels import arm_struct, build_arm_kernels, fill_struct
from kernel_op_cases import (ADD, CASE_BUILDERS, ELEMENTWISE_IN_PLACE, POOL, SOFTMAX, SOURCES,
                             broadcast_fields, case_inputs, equal_bytes, kernel_calls,
                             reference_output)
from edgekit import reference
from edgekit.ir import DType, Graph

CORES = ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7")
CASES = 40
VARIANTS = (0, 1, 3)  # random, all-minimum, random with extremes (see case_inputs)


@pytest.fixture(scope="module", params=CORES)
def arm(request):
    return build_arm_kernels(SOURCES, request.param)


def run_arm(arm, graph: Graph, inputs: dict[str, np.ndarray], *, in_place: str | None = None
            ) -> np.ndarray:
    """The op's kernel calls on the core; ``in_place`` names the input that is also the
    output."""
    arm.reset_heap()
    y = graph["y"]
    values = {**{t.name: t.data for t in graph.constants()}, **inputs}  # GATHER tables too
    addresses = {name: arm.put(np.ascontiguousarray(value)) for name, value in values.items()}
    like = np.zeros(y.shape, dtype=y.dtype.numpy)
    if in_place is not None:
        out = addresses[in_place]
    else:
        poison = np.full(y.shape, 0x5A if y.dtype != DType.FLOAT32 else np.nan, y.dtype.numpy)
        out = arm.put(poison)
    for function, params, names, scratch_bytes in kernel_calls(graph):
        args = [arm.put(arm_struct(arm, params)), *(addresses[n] for n in names), out]
        if scratch_bytes is not None:
            args.append(arm.put(np.full(max(scratch_bytes // 4, 1), 0x12345678, np.int32)))
        arm.call(function, *args)
    return arm.get(out, like)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_kernels_bit_exact_on_cortex_m(arm):
    compared = in_place_compared = 0
    for kind in sorted(CASE_BUILDERS):
        rng = np.random.default_rng(sum(map(ord, kind)) * 31 + 7)
        for case in range(CASES):
            graph = CASE_BUILDERS[kind](rng)
            for variant in VARIANTS:
                inputs = case_inputs(rng, graph, variant)
                expected = reference_output(graph, inputs)
                got = run_arm(arm, graph, inputs)
                assert equal_bytes(got, expected), (
                    f"{arm.cpu} {kind} case {case} variant {variant}:"
                    f" {reference.prepare(graph.ops[0], graph)}\n"
                    f"got {got.reshape(-1)[:24]}\nref {expected.reshape(-1)[:24]}")
                compared += 1
                for name in graph.ops[0].present_inputs() if kind in ELEMENTWISE_IN_PLACE else ():
                    aliased = graph[name]
                    same_layout = aliased.shape == graph["y"].shape or kind == "RESHAPE"
                    if (same_layout and not aliased.is_constant
                            and aliased.dtype.bits == graph["y"].dtype.bits):
                        got = run_arm(arm, graph, inputs, in_place=name)
                        assert equal_bytes(got, expected), (
                            f"{arm.cpu} {kind} case {case}: in place on {name}")
                        in_place_compared += 1
    assert compared == len(CASE_BUILDERS) * CASES * len(VARIANTS)
    assert in_place_compared > 200


def _count(arm, function: str, params, *arrays: np.ndarray) -> int:
    arm.reset_heap()
    return arm.call(function, arm.put(params), *(arm.put(a) for a in arrays))


def test_instructions_per_element_of_the_mlperf_kernels():
    """Instructions of ek_add_s8 (resnet's residual adds), ek_avg_pool_s8 and ek_softmax_s8 on
    Unicorn's Cortex-M4 at the MLPerf layer sizes, against bounds with a little headroom over
    what they measure today (printed): a slower build of these loops fails here."""
    arm = build_arm_kernels(SOURCES, "cortex-m4")
    rng = np.random.default_rng(3)
    shape = (1, 32, 32, 16)  # resnet's first residual add
    a = rng.integers(-128, 128, size=shape).astype(np.int8)
    b = rng.integers(-128, 128, size=shape).astype(np.int8)
    add = fill_struct(ADD, {
        "input1_offset": 3, "input2_offset": -7, "output_offset": -2, "left_shift": 20,
        "input1_multiplier": 1518500250, "input1_shift": -1, "input2_multiplier": 1200000000,
        "input2_shift": 0, "output_multiplier": 1717986918, "output_shift": -19,
        "act_min": -128, "act_max": 127, "shape": broadcast_fields(shape, shape, shape)})
    add_per_element = _count(arm, "ek_add_s8", add, a, b, np.zeros_like(a)) / a.size

    x = rng.integers(-128, 128, size=(1, 25, 5, 64)).astype(np.int8)  # kws's average pool
    pool = fill_struct(POOL, {"in_h": 25, "in_w": 5, "channels": 64, "out_h": 1, "out_w": 1,
                              "filter_h": 25, "filter_w": 5, "stride_h": 25, "stride_w": 5,
                              "pad_top": 0, "pad_left": 0, "act_min": -128, "act_max": 127})
    pool_per_tap = _count(arm, "ek_avg_pool_s8", pool, x, np.zeros(64, np.int8)) / x.size

    logits = rng.integers(-128, 128, size=(1, 12)).astype(np.int8)  # kws's softmax
    softmax = fill_struct(SOFTMAX, {"input_multiplier": 1509949440, "input_left_shift": 22,
                                    "diff_min": -248, "rows": 1, "depth": 12})
    softmax_total = _count(arm, "ek_softmax_s8", softmax, logits, np.zeros_like(logits))

    print(f"\nCortex-M4 instructions: ek_add_s8 {add_per_element:.1f}/element,"
          f" ek_avg_pool_s8 {pool_per_tap:.2f}/tap, ek_softmax_s8 {softmax_total} for 12 logits")
    assert add_per_element <= 60
    assert pool_per_tap <= 9
    assert softmax_total <= 6000
