"""The planner's elementwise mode for the row ops (SOFTMAX, LAYER_NORM, RMS_NORM) and the
lookup-table ops (GELU, SILU), end to end: generated C with the op's output over its own input
(asserted in the plan), compiled on the host, byte for byte the reference interpreter's output.
The cases are the kernel tests' random ones (tests/kernel_op_cases.py), int8 and batch 1."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import graph_builders as gb
from edgekit.firmware.codegen import firmware_plan, generate
from edgekit.firmware.host_run import run_on_host
from edgekit.firmware.op_emitters import supported_kinds
from edgekit.interpreter import Interpreter
from edgekit.ir import DType, Graph, Tensor
from kernel_op_cases import CASE_BUILDERS

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no host gcc")

KINDS = ("SOFTMAX", "GELU", "SILU", "LAYER_NORM", "RMS_NORM")


def _batch_one(graph: Graph) -> Graph:
    """The same op with a leading batch dimension of 1 on every activation: the firmware runs
    batch 1, and a leading 1 changes neither the rows nor the elements."""
    tensors = [t if t.is_constant or (len(t.shape) >= 2 and t.shape[0] == 1)
               else Tensor(t.name, (1, *t.shape), t.dtype, t.quant) for t in graph.tensors.values()]
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs, graph.name)


@pytest.mark.parametrize("kind", KINDS)
def test_row_and_lut_ops_in_place_are_bit_exact_on_the_host(kind, kernel_objects, tmp_path):
    if kind not in CASE_BUILDERS or kind not in supported_kinds():
        pytest.skip(f"{kind}: no kernel case or no emitter in this tree yet")
    rng = np.random.default_rng(sum(map(ord, kind)))
    checked = 0
    for case in range(40):
        graph = _batch_one(CASE_BUILDERS[kind](rng))
        op = graph.ops[0]
        x, y = op.inputs[0], op.outputs[0]
        if graph[x].dtype != DType.INT8 or graph[y].dtype != DType.INT8:
            continue
        p = firmware_plan(graph)
        assert (p.buffers[y].alias_of, p.buffers[y].inplace_mode) == (x, "elementwise"), kind
        inputs = [gb.random_input(rng, graph[name]) for name in graph.inputs]
        gen = generate(graph, test_inputs=inputs)
        expected = [np.ascontiguousarray(o).tobytes() for o in Interpreter(graph).run(inputs)]
        assert gen.expected_outputs == expected
        run = run_on_host(gen, tmp_path / f"{case}", defines=("EDGEKIT_PORTABLE_KERNELS",),
                          kernel_objects=kernel_objects["portable"])
        assert run.outputs == expected, f"{kind} case {case} in place differs"
        checked += 1
        if checked == 6:
            break
    assert checked >= 3, f"{kind}: too few int8 cases drawn"
