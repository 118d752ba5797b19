"""Fit the kernel cost model (`edgekit.kernel_costs`) on measured kernels and write
toolkit/kernel_costs.json.

For each core family (``dsp``: built for mps2-an386, Cortex-M4; ``portable``: lm3s6965evb,
Cortex-M3) it builds small firmwares out of single-op cases (a conv, a 1x1 conv, a depthwise conv,
a conv feeding a residual ADD, a fully-connected layer over tokens; random shapes around the
MLPerf Tiny layers, and the conv-family layers of the MLPerf Tiny models themselves; the random
cases again with int4 weights, for the ``_s4`` kernels' variants), each case reading its own graph
input. Every batch is built twice: out of place (``inplace=False``), and
with the in-place modes whose kernel differs (depthwise_channelwise, the pointwise modes,
conv_add_skip), so each case is measured under both kernels. `edgekit measure --profile`'s
per-op instructions on Unicorn (every run checked bit-exact) are the samples; each variant's
coefficients come from numpy least squares over its features, and the file records, per
variant, the samples, the relative error of the fit (mean and worst) and the features.

    .venv/bin/python bench/fit_kernel_costs.py [--families dsp portable] [--seed 0] [--reuse]

Rerun it whenever the C kernels change: about 4 minutes for ``dsp`` and 8 for ``portable``
(whose 64 KB board takes fewer cases per build) on this machine. The per-op counts are kept in
bench/results/kernel_cost_measurements.json; ``--reuse`` refits from them (new features, same
kernels) in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the variants whose kernels skip the MAC loops of pairs of constant channels (the DSP in-place
#: 1x1 loops in assembly, ek_conv.c pw_paired_*_skip_asm): edgekit.kernel_costs leaves those
#: MACs out of their estimate
SKIPS_CONSTANT_PAIRS = {"dsp": ("conv_pointwise_inplace",)}
sys.path.insert(0, str(REPO / "tests"))  # the single-op graph builders of the unit tests

import graph_builders as gb  # noqa: E402

from edgekit import planner  # noqa: E402
from edgekit.boards.runners.measure import measure, resolve_firmware  # noqa: E402
from edgekit.converters.int4_requant import requantize_weights  # noqa: E402
from edgekit.converters.tflite_reader import load_tflite  # noqa: E402
from edgekit.firmware.codegen import available_inplace_modes  # noqa: E402
from edgekit.firmware.model_build import build_model  # noqa: E402
from edgekit.ir import DType, Graph, Op, Tensor  # noqa: E402
from edgekit.kernel_costs import COSTS_FILE, FUSED_MODE, INT4_SUFFIX, features, variant  # noqa: E402

MEASUREMENTS_FILE = REPO / "bench" / "results" / "kernel_cost_measurements.json"
MODELS_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
MLPERF = ("vww_96_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
          "ad01_int8.tflite")
FAMILY_BOARDS = {"dsp": "mps2-an386", "portable": "lm3s6965evb"}
#: activation bytes of one batch: lm3s6965evb has 64 KB of SRAM for arena, data and stack
BATCH_BYTES = {"dsp": 1_000_000, "portable": 36_000}
#: cases per batch: the harness reports (and checks bit-exact) at most 10 outputs
BATCH_CASES = 10
#: the in-place modes whose kernel differs from the plain one
KERNEL_MODES = frozenset({"depthwise_channelwise", "pointwise_inplace",
                          "pointwise_inplace_backward", FUSED_MODE})
#: which features each variant's formula uses (what its loops do per MAC, per output element,
#: per output pixel, per copied input element, per channel plane, per call)
VARIANT_FEATURES = {
    "conv": ("valid_macs", "tap_rows", "outputs", "pixels", "calls"),
    "conv_1x1": ("macs", "outputs", "pixels", "calls"),
    "conv_pointwise_inplace": ("macs", "outputs", "pixels", "inputs", "calls"),
    "conv_add": ("valid_macs", "outputs", "pixels", "calls"),
    "depthwise": ("valid_macs", "tap_rows", "outputs", "pixels", "calls"),
    "depthwise_channelwise": ("valid_macs", "valid_macs_3x3", "tap_rows", "tap_rows_3x3",
                              "outputs", "inputs", "channel_rows", "channel_taps", "calls"),
    "depthwise_channelwise_quad": ("valid_macs", "outputs", "inputs", "channel_rows", "calls"),
    "fully_connected": ("macs", "outputs", "calls"),
    "fc_pointwise_inplace": ("macs", "outputs", "inputs", "calls"),
    "add": ("outputs", "calls"),
}
#: the int4 twins (`edgekit.kernel_costs.INT4_SUFFIX`) use their int8 variant's features
VARIANT_FEATURES.update({name + INT4_SUFFIX: features_ for name, features_ in
                         list(VARIANT_FEATURES.items()) if name != "add"})


def _prefixed(graph: Graph, prefix: str) -> tuple[list[Tensor], list[Op], list[str], list[str]]:
    def name(n):
        return None if n is None else f"{prefix}{n}"
    tensors = [replace(t, name=name(t.name)) for t in graph.tensors.values()]
    ops = [replace(op, inputs=[name(n) for n in op.inputs], outputs=[name(n) for n in op.outputs],
                   name=name(op.name or op.outputs[0])) for op in graph.ops]
    return tensors, ops, [name(n) for n in graph.inputs], [name(n) for n in graph.outputs]


def _conv_add(rng, **conv) -> Graph:
    """A conv whose output a residual ADD reads with a skip input of the same shape."""
    g = gb.conv2d(rng, padding="SAME", **conv)
    y = g["y"]
    conv_out = replace(y, name="c")
    skip = gb.activation_tensor(rng, "s", y.shape)
    scale = gb.f32(2 * max(conv_out.quant.scale[0], skip.quant.scale[0]))
    out = Tensor("y", y.shape, DType.INT8, replace(y.quant, scale=scale.reshape(1)))
    ops = [replace(g.ops[0], outputs=["c"], name="c"),
           Op("ADD", ["c", "s"], ["y"], {"activation": "NONE"}, name="y")]
    tensors = [t for t in g.tensors.values() if t.name != "y"] + [conv_out, skip, out]
    return Graph(tensors, ops, ["x", "s"], ["y"], name="conv_add")


def _token_fc(rng, tokens: int, depth: int, units: int) -> Graph:
    """A FULLY_CONNECTED over ``tokens`` rows of x [1, T, K] (keep_num_dims): the firmware runs
    batch 1, and the pointwise modes take it as a 1x1 conv over T pixels."""
    g = gb.fully_connected(rng, batch=tokens, in_features=depth, out_features=units)
    tensors = [replace(t, shape=(1, *t.shape)) if not t.is_constant else t
               for t in g.tensors.values()]
    op = replace(g.ops[0], attrs={**g.ops[0].attrs, "keep_num_dims": True})
    return Graph(tensors, [op], ["x"], ["y"], name="token_fc")


def random_cases(rng, count: int) -> list[Graph]:
    """Single-op graphs of every modelled variant, shapes around the MLPerf Tiny layers."""
    cases = []
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731
    for _ in range(count):
        h = int(rng.integers(3, 25))
        w = int(rng.integers(1, 25)) if rng.random() < 0.2 else h
        cin, cout = pick((1, 3, 8, 16, 32, 64)), pick((8, 16, 32, 64))
        kernel = pick(((3, 3), (5, 5), (3, 1), (10, 4), (1, 3)))
        stride = pick(((1, 1), (2, 2)))
        cases.append(gb.conv2d(rng, in_shape=(1, h, w, cin), out_channels=cout, kernel=kernel,
                               stride=stride, padding=pick(("SAME", "VALID")))
                     if min(h, w) >= max(kernel) else
                     gb.conv2d(rng, in_shape=(1, h, w, cin), out_channels=cout, kernel=kernel,
                               stride=stride, padding="SAME"))
        c1, c2 = pick((8, 16, 24, 32, 64, 96, 128)), pick((8, 16, 24, 32, 64, 96, 128))
        cases.append(gb.conv2d(rng, in_shape=(1, h, w, c1), out_channels=c2, kernel=(1, 1),
                               stride=pick(((1, 1), (1, 1), (2, 2)))))
        for _ in range(2):  # the variant with the most paths: twice the shapes
            c = pick((8, 16, 32, 64, 96, 128))
            dk = pick(((3, 3), (5, 5), (7, 7), (3, 1), (9, 1), (1, 3)))
            dh = int(rng.integers(3, 33))
            dw = 1 if dk[1] == 1 and rng.random() < 0.5 else int(rng.integers(1, 25))
            cases.append(gb.depthwise_conv2d(rng, in_shape=(1, dh, dw, c), kernel=dk,
                                             stride=pick(((1, 1), (2, 2))), padding="SAME"))
        cases.append(_conv_add(rng, in_shape=(1, h, w, c1), out_channels=c1,
                               kernel=pick(((1, 1), (3, 3)))))
        cases.append(_token_fc(rng, int(rng.integers(2, 33)), pick((16, 32, 64, 96)),
                               pick((16, 32, 64, 96))))
    return cases


def mlperf_cases() -> list[Graph]:
    """The conv-family ops of the MLPerf Tiny models, each as a graph of its own."""
    cases = []
    for file in MLPERF:
        path = MODELS_DIR / file
        if not path.is_file():
            continue
        graph = load_tflite(path)
        for op in graph.ops:
            if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                continue
            names = [n for n in op.inputs if n is not None] + op.outputs
            tensors = [replace(graph[n], name=n) for n in dict.fromkeys(names)]
            cases.append(Graph(tensors, [replace(op)], [op.inputs[0]], op.outputs,
                               name=f"{file}:{op.outputs[0]}"))
    return cases


def _activation_bytes(graph: Graph) -> int:
    return sum(t.nbytes for t in graph.activations())


def batches(cases: list[Graph], limit: int) -> list[Graph]:
    """The cases merged into graphs of at most ``limit`` activation bytes and `BATCH_CASES`
    cases each."""
    merged, current, size = [], [], 0
    for case in cases:
        nbytes = _activation_bytes(case)
        if nbytes > limit:
            continue  # too large for the board; the rest of the shapes cover its variant
        if current and (size + nbytes > limit or len(current) == BATCH_CASES):
            merged.append(current)
            current, size = [], 0
        current.append(case)
        size += nbytes
    if current:
        merged.append(current)
    graphs = []
    for number, group in enumerate(merged):
        tensors, ops, inputs, outputs = [], [], [], []
        for i, case in enumerate(group):
            t, o, ins, outs = _prefixed(case, f"c{i}_")
            tensors += t
            ops += o
            inputs += ins
            outputs += outs
        graphs.append(Graph(tensors, ops, inputs, outputs, name=f"fit{number}"))
    return graphs


def _modes(plan) -> dict[int, str | None]:
    modes = {}
    for index, op in enumerate(plan.graph.ops):
        buf = plan.buffers.get(op.outputs[0])
        modes[index] = buf.inplace_mode if buf is not None else None
    for f in plan.fusions.values():
        modes[f.conv] = FUSED_MODE
    return modes


def measure_batch(graph: Graph, board: str, inplace, work: Path) -> list[list]:
    """``[op index, in-place mode, instructions]`` of every op of ``graph`` built under
    ``inplace`` and run on Unicorn (bit-exact checked); a fused conv+ADD counts both ops' shares
    at the conv (the conv's call computes both)."""
    memory_plan = planner.plan(graph, inplace=inplace)
    build_model(graph, board, work, plan=memory_plan)
    measured = measure(resolve_firmware(work, None), "unicorn", profile=True)
    if not measured.get("bit_exact"):
        raise SystemExit(f"{graph.name} on {board}: the firmware's outputs differ from the"
                         " reference interpreter's")
    counts = {row["op"]: row["instructions"] for row in measured["profile"]["ops"]
              if row["op"] is not None}
    modes = _modes(memory_plan)
    for f in memory_plan.fusions.values():
        counts[f.conv] = counts.get(f.conv, 0) + counts.pop(f.add, 0)
    return [[index, modes[index], count] for index, count in sorted(counts.items())]


def samples_of(graph: Graph, measured: list[list]) -> list[tuple[str, dict, float]]:
    """(variant, features, instructions) of the modelled ops among ``measured``."""
    samples = []
    for index, mode, instructions in measured:
        op = graph.ops[index]
        if op.kind == "ADD" and mode == FUSED_MODE:
            continue  # counted at its conv
        name = variant(op, graph, mode)
        if name is not None:
            samples.append((name, features(op, graph), float(instructions)))
    return samples


def fit(samples: list[tuple[str, dict, float]]) -> dict:
    """Least-squares coefficients per variant, relative to the instructions (so small and large
    ops weigh alike), and the fit's relative error."""
    result = {}
    for name, feature_names in VARIANT_FEATURES.items():
        rows = [(f, y) for v, f, y in samples if v == name]
        if len(rows) < len(feature_names):
            continue
        a = np.array([[f[k] for k in feature_names] for f, _ in rows])
        y = np.array([y for _, y in rows])
        coef, *_ = np.linalg.lstsq(a / y[:, None], np.ones_like(y), rcond=None)
        error = np.abs(a @ coef - y) / y
        result[name] = {"features": list(feature_names),
                        "coefficients": [round(float(c), 6) for c in coef],
                        "samples": len(rows),
                        "mean_relative_error": round(float(error.mean()), 4),
                        "max_relative_error": round(float(error.max()), 4)}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILY_BOARDS),
                        choices=list(FAMILY_BOARDS))
    parser.add_argument("--cases", type=int, default=10, help="random cases per variant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=COSTS_FILE)
    parser.add_argument("--measurements", type=Path, default=MEASUREMENTS_FILE,
                        help="where the per-op counts are written (and read with --reuse)")
    parser.add_argument("--reuse", action="store_true",
                        help="refit from the saved counts of the same cases (after changing the"
                        " features; never after changing the kernels) instead of measuring")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    drawn = random_cases(rng, args.cases)
    # the int4 kernels (``_s4`` variants): the random cases again, every weight int4
    cases = drawn + mlperf_cases() + [requantize_weights(case, "4") for case in drawn]
    firmware_modes = available_inplace_modes()
    settings = {"plain": False, "inplace": KERNEL_MODES & firmware_modes}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    families = dict(previous.get("families", {}))
    saved = json.loads(args.measurements.read_text()) if args.measurements.is_file() else {}
    if args.reuse and (saved.get("seed"), saved.get("cases")) != (args.seed, args.cases):
        raise SystemExit(f"{args.measurements} holds other cases (seed {saved.get('seed')},"
                         f" {saved.get('cases')} per variant): measure again without --reuse")
    # the families not measured now keep their saved counts (a run of one family once dropped
    # the other's); a measured family starts afresh unless reused
    counts = {family: done for family, done in saved.get("families", {}).items()
              if args.reuse or family not in args.families}
    start = time.monotonic()
    for family in args.families:
        board = FAMILY_BOARDS[family]
        samples = []
        done = counts.setdefault(family, {})
        with tempfile.TemporaryDirectory() as tmp:
            for graph in batches(cases, BATCH_BYTES[family]):
                for label, inplace in settings.items():
                    key = f"{graph.name}-{label}"
                    if key not in done:
                        done[key] = measure_batch(graph, board, inplace, Path(tmp) / key)
                    samples += samples_of(graph, done[key])
                    print(f"{family}: {key}: {len(samples)} samples,"
                          f" {time.monotonic() - start:.0f} s", flush=True)
        args.measurements.parent.mkdir(parents=True, exist_ok=True)
        args.measurements.write_text(json.dumps(
            {"seed": args.seed, "cases": args.cases, "boards": FAMILY_BOARDS,
             "families": counts}) + "\n")
        families[family] = {"measured_on": board, "variants": fit(samples)}
        if family in SKIPS_CONSTANT_PAIRS:  # not measured here: the random cases have none
            for name in SKIPS_CONSTANT_PAIRS[family]:
                families[family]["variants"][name]["skips_constant_pairs"] = True
        for name, model in families[family]["variants"].items():
            print(f"  {family} {name:<24} n={model['samples']:>3} mean error"
                  f" {100 * model['mean_relative_error']:.1f}%, worst"
                  f" {100 * model['max_relative_error']:.1f}%")
        payload = {"schema_version": 1, "generated_by": "bench/fit_kernel_costs.py",
                   "seed": args.seed, "cases_per_variant": args.cases,
                   "families": dict(sorted(families.items()))}
        args.out.write_text(json.dumps(payload, indent=1) + "\n")  # each family as it is done
        print(f"wrote {args.out} ({time.monotonic() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
