"""The one check every host test of generated C makes: each traced op output, read at its
planned arena offset, and the model outputs equal the reference interpreter's byte for byte.

Usage::

    from generated_c import assert_matches_interpreter
    run = run_on_host(gen, tmp_path, defines=..., kernel_objects=...)
    assert_matches_interpreter(graph, gen, run, label="kws int4")
"""

from __future__ import annotations

import numpy as np

from edgekit.interpreter import Interpreter


def assert_matches_interpreter(graph, gen, run, label: str = "") -> None:
    """``run`` (`edgekit.firmware.host_run.run_on_host` of ``gen``, generated from ``graph``)
    against the interpreter on ``gen.test_inputs``; a failure names the first op that differs
    (a fused conv+ADD traces the ADD's output, so there is one trace per emitted call)."""
    _, values = Interpreter(graph).run(gen.test_inputs, intermediates=True)
    prefix = f"{label or graph.name}: "
    assert len(run.op_outputs) == len(gen.traced) >= len(graph.ops) - len(gen.plan.fusions), (
        f"{prefix}{len(run.op_outputs)} op outputs traced, {len(gen.traced)} emitted calls")
    for (step, name), got in zip(gen.traced, run.op_outputs):
        index = gen.plan.schedule[step]
        assert got == np.ascontiguousarray(values[name]).tobytes(), (
            f"{prefix}step {step} op {index} ({graph.ops[index].kind}) output {name!r} differs")
    assert run.outputs == gen.expected_outputs, f"{prefix}model outputs differ"
