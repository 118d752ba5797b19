"""The portable C kernels of every op except convolution / depthwise / fully connected, compiled
with the host gcc (UBSan on), against the reference interpreter's kernels (`edgekit.reference`),
byte for byte, on randomized single-op graphs.

Each case: a random graph from `graph_builders` (random shapes, quantization, activations,
broadcasting, padding, int8 and where the reference allows int16), the reference's
``prepare`` numbers put into the C params struct exactly as the code generator does (one field
per Prepared field, plus shapes), random inputs (and edge inputs: all min, all max), then the C
output must equal ``edgekit.reference.run_op``'s bytes. Element-wise kernels are run a second
time in place (output pointer == input pointer), the planner's "elementwise" mode.
Fixed seeds: the same cases every run; case counts are asserted.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from c_kernels import (assert_no_undefined_behaviour, build_library, c_sizeof, carray, fill_struct,
                       sizeof_shim)
from kernel_op_cases import (ADD, ALL_STRUCTS, CASE_BUILDERS, ELEMENTWISE_IN_PLACE, HEADERS, MUL,
                             REQUANTIZE, SOURCES, SUFFIX, UNARY_EXHAUSTIVE, broadcast_fields,
                             case_inputs, equal_bytes, kernel_calls, prepared_fields,
                             reference_output)
import norm_cases
from edgekit import reference
from edgekit.ir import DType, Graph, Tensor

CASES = 150


@pytest.fixture(scope="module")
def lib():
    shim = sizeof_shim([s.__name__ for s in ALL_STRUCTS], HEADERS) + ADD_ELEMENT_SHIM
    return build_library(SOURCES, shim=shim)


#: the per-element ADD entry points a fused convolution + residual add calls (ek_conv*), looped
ADD_ELEMENT_SHIM = """
void ek_test_add_element_s8(const ek_add_params *p, const int8_t *a, const int8_t *b,
                            int8_t *out, int32_t n)
{
    for (int32_t i = 0; i < n; ++i) out[i] = (int8_t)ek_add_element(p, a[i], b[i]);
}
void ek_test_add_s8_output(const ek_add_params *p, const int8_t *a, const int8_t *b,
                           int8_t *out, int32_t n)
{
    const ek_add_s8_consts k = ek_add_s8_prepare(p);
    for (int32_t i = 0; i < n; ++i) out[i] = ek_add_s8_output(&k, a[i], b[i]);
}
/* one input's rescaling in the fast forms: general (sign term) and, for shift 0, the e0 one */
void ek_test_add_s8_fast_input(int32_t offset, int32_t m, int32_t shift, const int8_t *a,
                               int32_t *general, int32_t *e0, int32_t n)
{
    ek_add_params p = {0};
    p.input1_offset = offset; p.input2_offset = offset;
    p.input1_multiplier = m; p.input2_multiplier = m;
    p.input1_shift = shift; p.input2_shift = shift;
    p.output_multiplier = 1 << 30; p.output_shift = -2;
    const ek_add_s8_consts k = ek_add_s8_prepare(&p);
    for (int32_t i = 0; i < n; ++i) {
        general[i] = ek_add_s8_fast_input(a[i], k.x_off1, k.m1, k.hi1, k.sign1, k.e1);
        e0[i] = ek_add_s8_fast_input_e0(a[i], k.x_off2, k.m2);
    }
}
"""


def run_c(lib, graph: Graph, inputs: dict[str, np.ndarray], *, in_place: str | None = None
          ) -> np.ndarray:
    """Run the op's kernel calls; ``in_place`` names the input whose buffer is also the
    output (the planner's "elementwise" mode)."""
    y = graph["y"]
    arrays = {t.name: t.data for t in graph.constants()}  # tables (GATHER) are read in place
    arrays.update({name: np.ascontiguousarray(value.copy()) for name, value in inputs.items()})
    if in_place is not None:
        out = arrays[in_place]
    else:
        # Poison the output so a kernel that skips an element cannot pass by luck.
        out = np.full(y.shape, 0x5A if y.dtype != DType.FLOAT32 else np.nan, dtype=y.dtype.numpy)
    for function, params, names, scratch_bytes in kernel_calls(graph):
        args = [ctypes.byref(params), *(carray(arrays[n]) for n in names), carray(out)]
        scratch = None
        if scratch_bytes is not None:
            scratch = np.full(max(scratch_bytes // 4, 1), 0x12345678, dtype=np.int32)
            args.append(carray(scratch))
        fn = getattr(lib, function)
        fn.restype = None
        fn(*args)
        assert_no_undefined_behaviour()
    return out.reshape(y.shape)


@pytest.mark.parametrize("kind", sorted(CASE_BUILDERS))
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_kernel_bit_exact_with_reference(lib, kind):
    rng = np.random.default_rng(sum(map(ord, kind)) * 7919)
    compared = in_place_compared = 0
    for case in range(CASES):
        graph = CASE_BUILDERS[kind](rng)
        op = graph.ops[0]
        for variant in range(4):
            inputs = case_inputs(rng, graph, variant)
            expected = reference_output(graph, inputs)
            got = run_c(lib, graph, inputs)
            assert equal_bytes(got, expected), (
                f"{kind} case {case} variant {variant}: C differs from the reference\n"
                f"shapes {[graph[n].shape for n in graph.inputs]} -> {graph['y'].shape},"
                f" params {reference.prepare(op, graph)}\n"
                f"inputs {inputs}\nC {got.reshape(-1)[:32]}\nref {expected.reshape(-1)[:32]}")
            compared += 1
            for name in op.present_inputs() if kind in ELEMENTWISE_IN_PLACE else ():
                aliased = graph[name]
                same_layout = aliased.shape == graph["y"].shape or kind == "RESHAPE"
                if (same_layout and not aliased.is_constant
                        and aliased.dtype.bits == graph["y"].dtype.bits):
                    got = run_c(lib, graph, inputs, in_place=name).view(expected.dtype)
                    assert equal_bytes(got, expected), f"{kind} case {case}: in place on {name}"
                    in_place_compared += 1
    assert compared == 4 * CASES
    if kind in ELEMENTWISE_IN_PLACE - {"DEQUANTIZE"}:
        assert in_place_compared > CASES  # the in-place path was really exercised


def _with_shape(graph: Graph, shape: tuple[int, ...]) -> Graph:
    tensors = [Tensor(t.name, shape, t.dtype, t.quant) for t in graph.tensors.values()]
    return Graph(tensors, graph.ops, graph.inputs, graph.outputs, graph.name)


@pytest.mark.parametrize("kind", sorted(UNARY_EXHAUSTIVE))
def test_unary_kernel_on_every_input_value(lib, kind):
    """Every int8 (and int16) input value at once, under many random quantizations: the
    transcendental kernels (exp, logistic, hard-swish) are checked on their whole domain.
    For SOFTMAX the row is all 256 values (and their maximum is 127)."""
    rng = np.random.default_rng(sum(map(ord, kind)) * 104729)
    checked = 0
    while checked < 60:
        graph = UNARY_EXHAUSTIVE[kind](rng)
        x = graph[graph.inputs[0]]
        if x.dtype == DType.FLOAT32:
            continue
        values = np.arange(x.dtype.min, x.dtype.max + 1, dtype=np.int64).astype(x.dtype.numpy)
        graph = _with_shape(graph, (1, values.size))
        inputs = {graph.inputs[0]: values.reshape(1, -1)}
        expected = reference_output(graph, inputs)
        got = run_c(lib, graph, inputs)
        assert equal_bytes(got, expected), (
            f"{kind} {reference.prepare(graph.ops[0], graph)}: first difference at input"
            f" {values[np.argmax(got.reshape(-1) != expected.reshape(-1))]}")
        checked += 1


def test_struct_layouts_match_the_headers(lib):
    for struct in ALL_STRUCTS:
        assert c_sizeof(lib, struct.__name__) == ctypes.sizeof(struct), struct.__name__


def test_every_non_conv_op_kind_has_a_kernel():
    from edgekit.ir import OP_KINDS
    conv = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    # ATTENTION's kernel calls the BATCH_MATMUL and SOFTMAX kernels checked here; it is checked
    # as generated C against the unfused graph in tests/test_attention_fused.py
    assert set(CASE_BUILDERS) == set(OP_KINDS) - conv - {"ATTENTION"}


# --- arbitrary parameters: every rounding step, not only where prepare() puts the numbers ------

def _multiplier(rng) -> int:
    """A QuantizeMultiplier output: 0, exactly 2^30, 2^j times an odd number (so that inputs
    shifted left by 30 - j land exactly on a rounding tie), or uniform in [2^30, 2^31)."""
    roll = rng.random()
    if roll < 0.05:
        return 0
    if roll < 0.2:
        return 1 << 30
    if roll < 0.5:
        j = int(rng.integers(0, 30))
        odd = int(rng.integers((1 << 30) >> j, (1 << 31) >> j)) | 1
        return min(odd << j, (1 << 31) - 1) if (odd << j) >= (1 << 30) else (1 << 30) + (1 << j)
    return int(rng.integers(1 << 30, 1 << 31))


def _all_pairs(dtype) -> tuple[np.ndarray, np.ndarray]:
    if dtype == DType.INT8:
        values = np.arange(-128, 128)
        a, b = np.meshgrid(values, values, indexing="ij")
    else:  # a random 64k sample of int16 pairs, with the extremes
        rng = np.random.default_rng(5)
        a = rng.integers(-32768, 32768, size=65536)
        b = rng.integers(-32768, 32768, size=65536)
        a[:4], b[:4] = [-32768, 32767, -32768, 32767], [-32768, 32767, 32767, -32768]
    return a.reshape(-1).astype(dtype.numpy), b.reshape(-1).astype(dtype.numpy)


@pytest.mark.parametrize("dtype", [DType.INT8, DType.INT16])
def test_add_on_arbitrary_parameters(lib, dtype):
    """ek_add_s8 (its own faster arithmetic) and ek_add_s16 (ek_add_element) against the
    reference ADD on all int8 input pairs, with multipliers and shifts drawn over their whole
    valid range. Small input shifts make the sums small, so the output's rounding steps show in
    the int8 result instead of being divided away by a 2^20 shift."""
    rng = np.random.default_rng(31 + dtype.bits)
    a, b = _all_pairs(dtype)
    left_shift = 20 if dtype == DType.INT8 else 15
    for _ in range(150):
        small = rng.random() < 0.6
        in_shift = lambda: -int(rng.integers(left_shift - 2, 32) if small else rng.integers(0, 4))
        out_shift = -int(rng.choice([0, 0, 1, 2]) if small else rng.integers(left_shift - 3, 32))
        zp = lambda: int(rng.integers(dtype.min // 2, dtype.max // 2)) if dtype == DType.INT8 else 0
        full = rng.random() < 0.3  # the whole range: ek_add_s8's loop with one SSAT
        p = reference.elementwise.AddParams(
            kind="ADD", out_dtype=dtype, input1_offset=-zp(), input2_offset=-zp(),
            output_offset=zp(), left_shift=left_shift, input1_multiplier=_multiplier(rng),
            input1_shift=in_shift(), input2_multiplier=_multiplier(rng), input2_shift=in_shift(),
            output_multiplier=_multiplier(rng), output_shift=out_shift,
            act_min=dtype.min if full else int(rng.integers(dtype.min, 0)),
            act_max=dtype.max if full else int(rng.integers(0, dtype.max + 1)),
            out_shape=a.shape)
        expected = reference.elementwise.add(p, [a, b])
        fields = {**prepared_fields(p), "shape": broadcast_fields(a.shape, b.shape, a.shape)}
        params = fill_struct(ADD, fields)
        out = np.zeros_like(a)
        getattr(lib, f"ek_add_{SUFFIX[dtype]}")(ctypes.byref(params), carray(a), carray(b),
                                               carray(out))
        assert_no_undefined_behaviour()
        assert out.tobytes() == expected.tobytes(), f"{p}"
        if dtype == DType.INT8:  # the element functions a fused conv + add uses
            for element in ("ek_test_add_element_s8", "ek_test_add_s8_output"):
                out = np.zeros_like(a)
                getattr(lib, element)(ctypes.byref(params), carray(a), carray(b), carray(out),
                                      ctypes.c_int32(a.size))
                assert_no_undefined_behaviour()
                assert out.tobytes() == expected.tobytes(), f"{element} {p}"


def test_add_s8_input_rescaling_on_every_input_and_shift(lib):
    """The int8 ADD's fast form rescales each input with one multiply-accumulate
    (ek_add_s8_fast_input; for a shift of 0 the form without a sign term that ek_add_s8 uses):
    each equal to MultiplyByQuantizedMultiplier((a + offset) << 20, m, shift) for every int8
    input, every shift 0..31 and multipliers over their range. The whole-ADD test above cannot
    see a rounding error here once its output shift divides it away."""
    from edgekit import fixedpoint as fp
    rng = np.random.default_rng(41)
    a = np.arange(-128, 128, dtype=np.int8)
    for shift in range(0, -32, -1):
        for _ in range(12):
            offset, m = int(rng.integers(-127, 129)), _multiplier(rng)
            general, e0 = np.zeros(a.size, np.int32), np.zeros(a.size, np.int32)
            lib.ek_test_add_s8_fast_input(ctypes.c_int32(offset), ctypes.c_int32(m),
                                          ctypes.c_int32(shift), carray(a), carray(general),
                                          carray(e0), ctypes.c_int32(a.size))
            x = (a.astype(np.int64) + offset) << 20
            expected = fp.multiply_by_quantized_multiplier(x, np.int64(m), np.int64(shift))
            assert np.array_equal(general.astype(np.int64), expected), (offset, m, shift)
            if shift == 0:
                assert np.array_equal(e0.astype(np.int64), expected), (offset, m)


def test_requantize_and_mul_on_arbitrary_parameters(lib):
    """RELU / int->int QUANTIZE and MUL (ek_mbqm_nonneg_multiplier) against the reference on
    every int8 input (pair), with multipliers, shifts (left shifts too) and offsets drawn over
    their whole valid range."""
    rng = np.random.default_rng(77)
    x = np.arange(-128, 128).astype(np.int8)
    a, b = _all_pairs(DType.INT8)
    for _ in range(100):
        p = reference.elementwise.RequantizeParams(
            kind="RELU", out_dtype=DType.INT8, input_zero_point=int(rng.integers(-128, 128)),
            output_zero_point=int(rng.integers(-128, 128)), multiplier=_multiplier(rng),
            shift=int(rng.integers(-31, 8)), act_min=int(rng.integers(-128, 0)),
            act_max=int(rng.integers(0, 128)))
        out = np.zeros_like(x)
        lib.ek_relu_s8(ctypes.byref(fill_struct(REQUANTIZE, {**prepared_fields(p),
                                                             "size": x.size})),
                       carray(x), carray(out))
        assert_no_undefined_behaviour()
        assert out.tobytes() == reference.elementwise.requantize(p, [x]).tobytes(), f"{p}"

        m = reference.elementwise.MulParams(
            kind="MUL", out_dtype=DType.INT8, input1_offset=int(rng.integers(-127, 129)),
            input2_offset=int(rng.integers(-127, 129)), output_offset=int(rng.integers(-128, 128)),
            output_multiplier=_multiplier(rng), output_shift=int(rng.integers(-20, 2)),
            act_min=-128, act_max=127, out_shape=a.shape)
        out = np.zeros_like(a)
        fields = {**prepared_fields(m), "shape": broadcast_fields(a.shape, b.shape, a.shape)}
        lib.ek_mul_s8(ctypes.byref(fill_struct(MUL, fields)), carray(a), carray(b), carray(out))
        assert_no_undefined_behaviour()
        assert out.tobytes() == reference.elementwise.mul(m, [a, b]).tobytes(), f"{m}"


# --- the code generator feeds the kernels the numbers these tests prove -----------------------

def _canonical(struct) -> bytes:
    """The struct's bytes, with the MEAN output stride of a size-1 input dimension zeroed: the
    kernel multiplies it by index 0 only, so any value there is the same call."""
    if type(struct).__name__ == "ek_mean_params":
        struct = type(struct).from_buffer_copy(bytes(struct))
        for d in range(4):
            if struct.in_shape[d] == 1:
                struct.out_strides[d] = 0
    return bytes(struct)


def test_code_generator_emits_the_tested_calls():
    """For random cases of every op kind here, the generator's emitter
    (`edgekit.firmware.op_emitters`) names the same kernel and params type, fills the struct
    with the same bytes, and passes the tensors in the same order as `kernel_calls`, the
    mapping every bit-exactness test above runs through. So "bit-exact" carries over to the
    generated firmware, not only to this file's own calls."""
    from edgekit.firmware.op_emitters import EMITTERS, EmitContext
    checked = 0
    for kind in sorted(CASE_BUILDERS):
        rng = np.random.default_rng(sum(map(ord, kind)) + 11)
        for _ in range(40):
            graph = CASE_BUILDERS[kind](rng)
            op = graph.ops[0]
            ctx = EmitContext(graph, op, lambda name: f"T_{name}", lambda suffix: f"A_{suffix}",
                              None, "SCRATCH")
            call = EMITTERS[kind](ctx, reference.prepare(op, graph))
            expected = kernel_calls(graph)
            if kind in norm_cases.C_KINDS:  # pointer fields: arrays compared by content
                norm_cases.check_emitted(call, graph, reference.prepare(op, graph))
                checked += 1
                continue
            if kind == "RESHAPE":  # the generator copies with memmove (or emits nothing in place)
                assert call.statement is not None and str(graph["y"].nbytes) in call.statement
                checked += 1
                continue
            if kind == "CONCATENATION":
                emitted = [(t, f) for t, _, f in call.extra_params]
                assert len(emitted) == len(expected)
                for (ptype, fields), (function, struct, names, _) in zip(emitted, expected):
                    assert ptype == type(struct).__name__
                    assert bytes(fill_struct(type(struct), fields)) == bytes(struct)
                    assert f"{function}(" in call.statement and f"T_{names[0]}" in call.statement
                checked += 1
                continue
            if kind == "INSERT_TILE":  # not in place here: the base is copied whole first
                (copy, _, base, _), (function, struct, names, scratch) = expected
                assert copy == "ek_reshape" and call.statement.startswith(
                    f"memmove(T_y, T_{base[0]}, {graph['y'].nbytes});"), call.statement
                expected = [(function, struct, names, scratch)]
            (function, struct, names, scratch), = expected
            assert call.kernel == function, kind
            assert call.params_type == type(struct).__name__, kind
            assert _canonical(fill_struct(type(struct), call.fields)) == _canonical(struct), (
                f"{kind}: generator fields {call.fields} != tested"
                f" { {n: getattr(struct, n) for n, _ in struct._fields_} }")
            args = [f"T_{n}" for n in names] + ["T_y"]
            assert call.args[:len(args)] == args, kind
            assert ("SCRATCH" in "".join(call.args[len(args):])) == (scratch is not None), kind
            checked += 1
    assert checked == 40 * len(CASE_BUILDERS)
