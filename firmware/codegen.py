"""The code generator: Graph IR + memory plan -> C99 sources implementing the payload API.

    gen = generate(graph)                  # plans the graph unless a plan is given
    gen.files["model.c"], gen.expected_outputs, gen.plan.arena_bytes

What it writes (and nothing else runs on the device):

- ``model_weights.c`` / ``model_weights.h``: every constant an op reads (weights, biases) as a
  ``const`` array, 4-byte aligned, so it lives in flash.
- ``model.c``: one static arena of exactly ``plan.arena_bytes`` (``EDGEKIT_ARENA``: the linker
  script bounds and paints it), every activation at ``arena + plan offset``, per op a
  ``static const`` params struct with the numbers of `edgekit.reference.prepare` and one
  function (shapes and quantization in its comment), called in ``plan.schedule`` order from
  ``edgekit_payload_run``; in-place ops call the in-place kernel of the planner's mode, and an
  op's scratch is the plan's scratch buffer. No malloc, no interpreter.
- ``model_testdata.c``: the test inputs (in flash) that ``edgekit_payload_setup`` copies into
  the arena; the expected outputs are computed here with `edgekit.interpreter` and go into the
  build manifest, not the firmware.
- ``model.h``: the arena size and the input/output sizes as macros.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Sequence

import numpy as np

from edgekit import interpreter, planner
from edgekit.constant_channels import fold_constant_channels
from edgekit.errors import UnsupportedError
from edgekit.firmware.c_source import (C_TYPES, array_definition, comment_text,
                                       identifier, initializer, packed_int4, shape_text)
from edgekit.firmware import stack_paths
from edgekit.firmware.op_emitters import (DSP_PAIR_HELPERS, EMITTERS, INPLACE_MODE_KERNELS,
                                          CallConfig, EmitContext, OpCall, check_inplace_mode,
                                          emit_conv_add, model_config_header,
                                          pairs_path_applies, requant_needs_wide,
                                          requant_shortest, s8_via_s4_pays)
from edgekit.ir import DType, Graph, Op, Tensor
from edgekit.planner import MemoryPlan
from edgekit.reference.common import where

ARENA_SYMBOL = "ek_arena"
_DECLARATION = re.compile(r"\b(ek_\w+)\s*\(")
_IDENTIFIER = re.compile(r"\b[A-Za-z_]\w*\b")


def declared_kernels() -> frozenset[str]:
    """Kernel functions the C kernel headers declare (``c/kernels/*.h``)."""
    folder = resources.files("edgekit.firmware") / "c" / "kernels"
    names: set[str] = set()
    for entry in folder.iterdir():
        if entry.name.endswith(".h"):
            names.update(_DECLARATION.findall(entry.read_text()))
    return frozenset(names)


def available_inplace_modes() -> frozenset[str]:
    """The planner's in-place modes the generator can emit with the kernels present."""
    kernels = declared_kernels()
    return frozenset(mode for mode, kernel in INPLACE_MODE_KERNELS.items()
                     if kernel is None or kernel in kernels)


def firmware_plan(graph: Graph, **options) -> MemoryPlan:
    """`edgekit.planner.plan` restricted to the in-place modes the firmware implements."""
    options.setdefault("inplace", available_inplace_modes())
    return planner.plan(graph, **options)


@dataclass
class GeneratedModel:
    """The generated sources (file name -> text) and what the build needs to know about them."""

    graph: Graph
    plan: MemoryPlan
    files: dict[str, str]
    test_inputs: list[np.ndarray]
    expected_outputs: list[bytes]
    kernels: list[str] = field(default_factory=list)  # kernel per schedule step ("" for none)
    #: (schedule step, tensor) of every EDGEKIT_TRACE_OP: the tensor complete after that step
    traced: list[tuple[int, str]] = field(default_factory=list)
    #: conv kernels with at least one call that takes the DSP two-pixel path
    #: (`edgekit.firmware.op_emitters.pairs_path_applies`)
    pair_kernels: set[str] = field(default_factory=set)
    #: kernel helpers some call takes (`edgekit.firmware.stack_paths.taken_helpers`): the
    #: estimate's stack bound leaves the others out
    path_helpers: set[str] = field(default_factory=set)
    #: (kernel, params fields) of every call with a params struct, in schedule order: what
    #: ek_model_config.h is made of (`edgekit.firmware.op_emitters.CallConfig`)
    kernel_calls: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return sorted(name for name in self.files if name.endswith(".c"))


def _c_type(t: Tensor) -> str:
    if t.dtype == DType.INT4 and not t.is_constant:
        raise UnsupportedError(f"tensor {t.name!r} is an int4 activation: the firmware stores"
                               " int4 constants (packed weights) only")
    return C_TYPES[t.dtype.numpy.name]  # int4 constants: int8_t bytes, two values each


def _stored_values(t: Tensor) -> np.ndarray:
    """A constant's values as its flash array holds them (int4: packed, padded)."""
    return packed_int4(t.data) if t.dtype == DType.INT4 else t.data


def _quant_text(t: Tensor) -> str:
    q = t.quant
    if q is None:
        return t.dtype.value
    if q.per_channel:
        return (f"{t.dtype.value}, per-channel on axis {q.axis} ({q.scale.size} scales"
                f" {q.scale.min():.3g}..{q.scale.max():.3g})")
    return f"{t.dtype.value}, scale {q.scale[0]:.6g}, zero point {int(q.zero_point[0])}"


def check_supported(graph: Graph) -> None:
    """Raise `UnsupportedError` naming the first op or tensor the generator cannot emit."""
    for op in graph.ops:
        if op.kind not in EMITTERS:
            raise UnsupportedError(f"{where(op)}: the code generator has no kernel for"
                                   f" {op.kind} yet (supported: {', '.join(sorted(EMITTERS))})")
        if len(op.outputs) != 1:
            raise UnsupportedError(f"{where(op)}: ops with {len(op.outputs)} outputs are not"
                                   " generated")
    for t in graph.activations():
        if len(t.shape) >= 2 and t.shape[0] != 1:
            raise UnsupportedError(f"tensor {t.name!r} has batch size {t.shape[0]} (shape"
                                   f" {t.shape}); the firmware runs batch 1: re-export the model"
                                   " with batch 1")
        _c_type(t)


def random_test_inputs(graph: Graph, seed: int = 0) -> list[np.ndarray]:
    """One deterministic random input per graph input: the full integer range, N(0, 1) for
    float inputs, or valid rows for int32 ids that feed a GATHER (an id outside the table is
    an error, not a test)."""
    rng = np.random.default_rng(seed)
    rows = {}
    for op in graph.ops:
        if op.kind == "GATHER":
            size = graph[op.inputs[0]].shape[int(op.attrs.get("axis", 0))]
            rows[op.inputs[1]] = min(rows.get(op.inputs[1], size), size)
    values = []
    for name in graph.inputs:
        t = graph[name]
        if name in rows:
            values.append(rng.integers(0, rows[name], size=t.shape).astype(np.int32))
        elif t.dtype == DType.FLOAT32:
            values.append(rng.standard_normal(t.shape).astype(np.float32))
        else:
            values.append(rng.integers(t.dtype.min, t.dtype.max + 1, size=t.shape)
                          .astype(t.dtype.numpy))
    return values


class _Names:
    """C names of tensors and constants, unique and readable."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.tensor_macro: dict[str, str] = {}
        for index, name in enumerate(graph.tensors):
            prefix = "W" if graph[name].is_constant else "T"
            self.tensor_macro[name] = f"{prefix}{index}_{identifier(name, max_len=32)}"

    def weight_array(self, name: str) -> str:
        return "ek_w_" + self.tensor_macro[name].lower()


def generate(graph: Graph, plan: MemoryPlan | None = None, *,
             test_inputs: Sequence[np.ndarray] | None = None, seed: int = 0) -> GeneratedModel:
    """Generate the firmware sources of ``graph`` under ``plan`` (default: `planner.plan`).

    ``test_inputs`` (one array per graph input; default: `random_test_inputs` with ``seed``) are
    embedded in flash; their expected outputs come from the reference interpreter.
    """
    check_supported(graph)
    prepared = interpreter.Interpreter(graph)  # validates every op before any C is written
    if plan is None:
        plan = firmware_plan(graph)
    elif plan.graph is not graph:
        raise UnsupportedError("the plan was made for another graph")
    inputs = (random_test_inputs(graph, seed) if test_inputs is None
              else prepared.check_inputs(list(test_inputs)))
    outputs = prepared.run(inputs)
    # the firmware's requantisation: channels whose output is constant get a multiplier of 0
    firmware_params = [fold_constant_channels(op, graph, p)
                       for op, p in zip(graph.ops, prepared.prepared)]
    names = _Names(graph)

    used_constants: list[str] = []
    shared_constants = _SharedConstants()
    pair_kernels: set[str] = set()
    path_helpers: set[str] = set()
    kernel_calls: list[tuple[str, dict]] = []
    op_sections, calls, kernels, traced = [], [], [], []
    fusions = getattr(plan, "fusions", {})
    fused_adds = {f.add: f for f in fusions.values()}
    modes = {index: "conv_add_skip" if index in fusions
             else plan.buffers[op.outputs[0]].inplace_mode
             for index, op in enumerate(graph.ops) if op.kind == "CONV_2D"}
    via_s4 = s8_via_s4_pays(graph, firmware_params, modes)
    op_kernels: dict[int, str] = {}
    for step, index in enumerate(plan.schedule):
        op = graph.ops[index]
        if index in fused_adds:
            conv = fused_adds[index].conv
            calls.append(f"    /* op {index} (ADD) runs inside op {conv}'s fused call */")
            kernels.append("")
            continue
        section, call, kernel, out_name = _emit_op(graph, plan, names, op, index, step,
                                                   firmware_params,
                                                   used_constants, shared_constants,
                                                   fusions.get(index), pair_kernels,
                                                   path_helpers, kernel_calls, via_s4)
        op_kernels[index] = kernel
        op_sections.append(section)
        calls.append(call)
        kernels.append(kernel)
        traced.append((step, out_name))

    missing = sorted({k for k in kernels if k} - declared_kernels())
    if missing:
        raise UnsupportedError(f"the kernel library has no {', '.join(missing)} (needed by the"
                               " plan's in-place modes); plan with firmware_plan()")
    files = {
        "model.h": _model_header(graph, plan),
        "model_weights.h": _weights_header(graph, names, used_constants),
        "model_weights.c": _weights_source(graph, names, used_constants),
        "model_testdata.c": _testdata_source(graph, inputs),
        "model.c": _model_source(graph, plan, names, op_sections, calls),
        "ek_model_config.h": model_config_header(
            [CallConfig.of_call(kernel, fields) for kernel, fields in kernel_calls],
            pairs_path=bool(pair_kernels),
            requant_wide=any(op.kind in ("CONV_2D", "FULLY_CONNECTED")
                             and requant_needs_wide(firmware_params[index],
                                                    requant_shortest(op_kernels[index]))
                             for index, op in enumerate(graph.ops) if index in op_kernels)),
    }
    expected = [np.ascontiguousarray(o).tobytes() for o in outputs]
    return GeneratedModel(graph, plan, files, list(inputs), expected, kernels, traced,
                          pair_kernels, path_helpers, kernel_calls)


class _SharedConstants:
    """Per-op parameter arrays (multipliers, shifts, effective biases) and params structs,
    emitted once per distinct content: a patch schedule runs copies of the same op on every
    tile, and each copy's would otherwise take flash again. A repeat becomes a macro naming the
    first definition; struct initializers are compared with the arrays they name resolved to
    their first definitions."""

    def __init__(self):
        self._first: dict[tuple, str] = {}
        self._canonical: dict[str, str] = {}  # every name defined -> the first with its content

    def _alias(self, key: tuple, name: str) -> str | None:
        first = self._first.setdefault(key, name)
        self._canonical[name] = first
        return None if first == name else f"#define {name} {first} /* same values */\n"

    def define(self, ctype: str, name: str, values: np.ndarray) -> str:
        values = np.asarray(values)
        alias = self._alias((ctype, values.shape, values.tobytes()), name)
        return alias or array_definition(ctype, name, values)

    def define_struct(self, ctype: str, name: str, initializer_text: str) -> str:
        resolved = _IDENTIFIER.sub(lambda m: self._canonical.get(m.group(0), m.group(0)),
                                   initializer_text)
        alias = self._alias((ctype, resolved), name)
        return alias or f"static const {ctype} {name} = {initializer_text};\n"


def _emit_op(graph: Graph, plan: MemoryPlan, names: _Names, op: Op, index: int, step: int,
             params: Sequence, used_constants: list[str],
             shared_constants: "_SharedConstants", fusion=None,
             pair_kernels: set[str] | None = None,
             path_helpers: set[str] | None = None,
             kernel_calls: list[tuple[str, dict]] | None = None,
             s8_via_s4: bool = False) -> tuple[str, str, str, str]:
    out_name = fusion.output if fusion else op.outputs[0]
    mode = plan.buffers[out_name].inplace_mode if fusion is None else None
    scratch = plan.scratch.get(index)
    scratch_expr = f"(&{ARENA_SYMBOL}[{scratch.offset}])" if scratch else None
    fn = f"op{index:03d}_{op.kind.lower()}"

    def pointer(name: str) -> str:
        if graph[name].is_constant:
            if name not in used_constants:
                used_constants.append(name)
            return names.weight_array(name)
        return names.tensor_macro[name]

    check_inplace_mode(op, mode)
    ctx = EmitContext(graph, op, pointer, lambda suffix: f"{fn}_{suffix}", mode, scratch_expr,
                      s8_via_s4)
    if fusion is None:
        call: OpCall = EMITTERS[op.kind](ctx, params[index])
    else:
        add_op = graph.ops[fusion.add]
        fn = f"op{index:03d}_conv_2d_add"
        ctx = EmitContext(graph, op, pointer, lambda suffix: f"{fn}_{suffix}", None, scratch_expr)
        call = emit_conv_add(ctx, params[index], add_op, params[fusion.add],
                             fusion)

    if (pair_kernels is not None and call.kernel in DSP_PAIR_HELPERS
            and pairs_path_applies(call.fields)):
        pair_kernels.add(call.kernel)
    # the params fields, the per-op arrays' values in place of their names, the call's facts
    values = {**call.fields, **{suffix: data for _, suffix, data in call.arrays}, **call.facts,
              "requant_shortest": requant_shortest(call.kernel)}
    if path_helpers is not None:
        path_helpers |= stack_paths.taken_helpers(call.kernel, values)
    if kernel_calls is not None and call.params_type is not None:
        kernel_calls.append((call.kernel, values))
    lines = [_op_comment(graph, plan, names, op, index, step, scratch)]
    if fusion is not None:
        lines.append(_op_comment(graph, plan, names, graph.ops[fusion.add], fusion.add, step + 1,
                                 None, fused_into=index))
    for ctype, suffix, values in call.arrays:
        lines.append(shared_constants.define(ctype, f"{fn}_{suffix}", values))
    params = []
    if call.params_type is not None:
        lines.append(shared_constants.define_struct(call.params_type, f"{fn}_params",
                                                 initializer(call.fields)))
        params.append(f"&{fn}_params")
    for ptype, suffix, fields in call.extra_params:
        lines.append(shared_constants.define_struct(ptype, f"{fn}_{suffix}", initializer(fields)))
        params.append(f"&{fn}_{suffix}")
    if call.statement is None:
        body = f"    {call.kernel}({', '.join(params + call.args)});"
    else:
        body = f"    {call.statement}"
    # noinline keeps one symbol per op in the ELF: `edgekit measure --profile` attributes
    # instructions by entering it (it costs a call and a tail branch per op)
    lines.append(f"EK_OP_FUNCTION void {fn}(void)\n{{\n{body}\n}}\n")
    out = graph[out_name]
    trace = f"\n    EDGEKIT_TRACE_OP({step}, {names.tensor_macro[out.name]}, {out.nbytes});"
    return "\n".join(lines), f"    {fn}();{trace}", call.kernel, out_name


def _where(plan: MemoryPlan, name: str, constant: bool) -> str:
    if constant:
        return "flash"
    buf = plan.buffers.get(name)
    return f"arena+{buf.offset}" if buf else "never stored (fused)"


def _op_comment(graph: Graph, plan: MemoryPlan, names: _Names, op: Op, index: int, step: int,
                scratch, fused_into: int | None = None) -> str:
    short = op.name.split(";")[-1][-60:]
    title = f"op {index}: {op.kind}" + (f" '{short}'" if short else "") + f" (step {step})"
    if fused_into is not None:
        title += f", fused into op {fused_into}'s call (conv_add_skip)"
    rows = [title]
    for role, name in zip(("in", "in", "in", "in"), op.inputs):
        if name is None:
            rows.append("  (no bias)")
            continue
        t = graph[name]
        rows.append(f"  {role:3s} {names.tensor_macro[name]}: {shape_text(t.shape)}"
                    f" {_quant_text(t)} @ {_where(plan, name, t.is_constant)}")
    out = graph[op.outputs[0]]
    buf = plan.buffers.get(out.name)
    rows.append(f"  out {names.tensor_macro[out.name]}: {shape_text(out.shape)} {_quant_text(out)}"
                f" @ {_where(plan, out.name, False)}")
    attrs = {k: v for k, v in op.attrs.items() if k != "tflite_index"}
    if attrs:
        rows.append("  attrs: " + ", ".join(f"{k}={v}" for k, v in attrs.items()))
    if buf is not None and buf.alias_of:
        rows.append(f"  in place ({buf.inplace_mode}): writes over {names.tensor_macro[buf.alias_of]}")
    if scratch is not None:
        rows.append(f"  scratch: {scratch.size} B @ arena+{scratch.offset}")
    return "/* " + comment_text("\n * ".join(rows)) + " */"


def _model_header(graph: Graph, plan: MemoryPlan) -> str:
    lines = [f"/* {graph.name}: generated by edgekit.firmware.codegen; do not edit. */",
             "#ifndef EDGEKIT_MODEL_H", "#define EDGEKIT_MODEL_H", "",
             f"#define EK_MODEL_ARENA_BYTES {plan.arena_bytes}u /* the planner's arena */",
             f"#define EK_MODEL_INPUT_COUNT {len(graph.inputs)}u",
             f"#define EK_MODEL_OUTPUT_COUNT {len(graph.outputs)}u"]
    for i, name in enumerate(graph.inputs):
        lines.append(f"#define EK_MODEL_INPUT{i}_BYTES {graph[name].nbytes}u")
    for i, name in enumerate(graph.outputs):
        lines.append(f"#define EK_MODEL_OUTPUT{i}_BYTES {graph[name].nbytes}u")
    return "\n".join(lines) + "\n\n#endif\n"


def _weights_header(graph: Graph, names: _Names, used: list[str]) -> str:
    lines = ["/* Weights and biases in flash: generated by edgekit.firmware.codegen. */",
             "#ifndef EDGEKIT_MODEL_WEIGHTS_H", "#define EDGEKIT_MODEL_WEIGHTS_H", "",
             "#include <stdint.h>", ""]
    for name in used:
        t = graph[name]
        length = max(_stored_values(t).size, 1)
        lines.append(f"extern const {_c_type(t)} {names.weight_array(name)}[{length}];"
                     f" /* {comment_text(name)}: {shape_text(t.shape)} */")
    return "\n".join(lines) + "\n\n#endif\n"


def _weights_source(graph: Graph, names: _Names, used: list[str]) -> str:
    parts = ["/* Weights and biases (const: they stay in flash). Generated; do not edit. */",
             "#include \"model_weights.h\"\n"]
    for name in used:
        t = graph[name]
        parts.append(f"/* {comment_text(name)}: {shape_text(t.shape)} {_quant_text(t)} */")
        parts.append(array_definition(_c_type(t), names.weight_array(name), _stored_values(t),
                                      static=False))
    return "\n".join(parts)


def _testdata_source(graph: Graph, inputs: list[np.ndarray]) -> str:
    parts = ["/* The embedded test inputs (in flash): the harness copies them into the arena's",
             " * input tensors before each run. Generated; do not edit. */",
             "#include <stdint.h>\n"]
    for i, (name, value) in enumerate(zip(graph.inputs, inputs)):
        parts.append(f"/* input {i}: {comment_text(name)} {shape_text(value.shape)} */")
        parts.append(array_definition(_c_type(graph[name]), f"ek_test_input{i}", value,
                                      static=False))
    return "\n".join(parts)


def _model_source(graph: Graph, plan: MemoryPlan, names: _Names, sections: list[str],
                  calls: list[str]) -> str:
    header = [
        f"/* Model {comment_text(graph.name)}: {len(graph.ops)} ops, arena {plan.arena_bytes} B"
        f" (planner strategy {plan.strategy}, lower bound {plan.lower_bound_bytes} B),",
        f" * weights {graph.weights_bytes} B in flash. Generated by edgekit.firmware.codegen;"
        " do not edit.",
        " * Every activation lives in the one arena at the planner's offset; ops run in the",
        " * planner's schedule order. */",
        "#include <stdint.h>", "#include <string.h>", "",
        "#include \"edgekit_kernels.h\"", "#include \"edgekit_payload.h\"",
        "#include \"model.h\"", "#include \"model_weights.h\"", "",
        f"EDGEKIT_ARENA({ARENA_SYMBOL}, EK_MODEL_ARENA_BYTES);", "",
        "/* Host tests define EDGEKIT_TRACE_OP to check every op's output against the reference",
        " * interpreter; on the device it is nothing. */",
        "/* One symbol per op (`edgekit measure --profile` counts between their entries). */",
        "#if defined(__GNUC__)",
        "#define EK_OP_FUNCTION static __attribute__((noinline))",
        "#else",
        "#define EK_OP_FUNCTION static",
        "#endif", "",
        "#ifndef EDGEKIT_TRACE_OP",
        "#define EDGEKIT_TRACE_OP(step, tensor, nbytes) ((void)0)",
        "#endif", "",
        "/* Activations: arena offsets from the memory plan. */",
    ]
    for name, buf in plan.buffers.items():
        t = graph[name]
        alias = f", in place over {names.tensor_macro[buf.alias_of]}" if buf.alias_of else ""
        header.append(f"#define {names.tensor_macro[name]} (({_c_type(t)} *)&{ARENA_SYMBOL}"
                      f"[{buf.offset}]) /* {shape_text(t.shape)} {t.dtype.value},"
                      f" {buf.size} B, steps {buf.first}..{buf.last}{alias} */")
    header.append("")
    for i, name in enumerate(graph.inputs):
        header.append(f"extern const {_c_type(graph[name])} ek_test_input{i}[];")
    header.append("")

    payload = [
        f"const char edgekit_payload_name[] = \"{identifier(graph.name, max_len=24) or 'model'}\";",
        "",
        "void edgekit_payload_setup(void)",
        "{",
    ]
    for i, name in enumerate(graph.inputs):
        payload.append(f"    memcpy({names.tensor_macro[name]}, ek_test_input{i},"
                       f" EK_MODEL_INPUT{i}_BYTES);")
    payload += ["}", "", "int edgekit_payload_run(void)", "{", *calls, "    return 0;", "}", "",
                "uint32_t edgekit_payload_output_count(void) { return EK_MODEL_OUTPUT_COUNT; }",
                "", "const uint8_t *edgekit_payload_output(uint32_t index, uint32_t *len)", "{",
                "    switch (index) {"]
    for i, name in enumerate(graph.outputs):
        payload.append(f"    case {i}: *len = EK_MODEL_OUTPUT{i}_BYTES;"
                       f" return (const uint8_t *){names.tensor_macro[name]};")
    payload += ["    default: *len = 0; return 0;", "    }", "}", ""]
    return "\n".join(header) + "\n" + "\n".join(sections) + "\n" + "\n".join(payload)
