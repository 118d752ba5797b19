"""Benchmark: int4 where it counts. The Fashion-MNIST CNN int8 vs int4 vs mixed on the device,
and the search on a board whose flash binds, ``--bits 8`` vs ``--bits mixed``, side by side.

1. ``cnn``: the CNN of bench/convert_fashion_mnist.py, trained on the CPU, converted by edgekit
   with int8 weights, and int4 weights, mixed and mixed_kinds as bench/int4_device.py defines
   them (``--recover``); each built for ``--board`` and run once on Unicorn
   (bench/int4_device.py's `run_one`: linked flash, measured peak SRAM, instructions,
   bit-exact with the reference interpreter), and top-1 of the reference interpreter (what the
   firmware computes) on the Fashion-MNIST test images.
2. ``search``: `edgekit search` on ``--search-board`` (lm3s6965evb: 256 KB flash, the binding
   budget) with ``--bits 8`` and with ``--bits mixed``, the same seed and trial budget; the best
   model of each with its flash estimate, peak SRAM (planner) and top-1 on the test images.

    .venv/bin/python bench/int4_search.py [--trials 6] [--test-limit 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "int4_search.json"


def _bench_module(name: str):
    """A sibling bench script as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cnn_variants(args, log) -> dict:
    """Train the CNN, convert it three ways, build and run each, measure top-1."""
    import torch

    from edgekit.converters.quantize import quantize, quantize_input
    from edgekit.converters.tflite_reader import load_tflite
    from edgekit.converters.tflite_writer import save_tflite
    from edgekit.converters.torch_import import import_torch
    from edgekit.interpreter import Interpreter
    from edgekit.nas.datasets import load_fashion_mnist

    fm = _bench_module("convert_fashion_mnist")
    device = _bench_module("int4_device")
    torch.set_num_threads(args.threads)
    train_set = load_fashion_mnist("train", limit=args.train_limit)
    test_set = load_fashion_mnist("test", limit=args.test_limit)
    model = fm.train(train_set.images, train_set.labels, epochs=args.epochs, batch=128, seed=0,
                     log=log)
    calib = train_set.images[np.random.default_rng(0).choice(len(train_set), 256, replace=False)]
    calib = np.ascontiguousarray(calib.transpose(0, 3, 1, 2))
    float_graph = import_torch(model, torch.zeros(1, *calib.shape[1:]), name="fashion_cnn")
    x_test = np.ascontiguousarray(test_set.images.transpose(0, 3, 1, 2))
    runs = {"float": {"top1": round(fm.torch_top1(model, test_set.images, test_set.labels), 2)}}
    variants = {name: (bits or 8, bits is not None)
                for name, bits in device.variants(float_graph).items()}
    with tempfile.TemporaryDirectory(prefix="edgekit-int4s-") as tmp:
        for name, (bits, recover) in variants.items():
            graph = quantize(float_graph, calib, bits=bits, recover=recover)
            graph = load_tflite(save_tflite(graph, Path(tmp) / f"{name}.tflite"))
            interp = Interpreter(graph)
            xq = quantize_input(graph, x_test)
            out = np.stack([interp.run([xq[i:i + 1]])[0].reshape(-1) for i in range(len(xq))])
            top1 = float((out.argmax(1) == test_set.labels).mean() * 100.0)
            runs[name] = {"bits": str(bits), "recover": recover, "top1": round(top1, 2),
                          **device.run_one(graph, args.board, Path(tmp) / name)}
            log(f"cnn {name}: top-1 {top1:.2f}%, flash {runs[name]['flash_bytes']} B, peak SRAM"
                f" {runs[name]['peak_sram_bytes']} B, instructions {runs[name]['instructions']},"
                f" bit_exact {runs[name]['bit_exact']}")
    base = runs["int8"]
    for name in variants:
        run = runs[name]
        run["expected_flash_bytes"] = base["flash_bytes"] - run["int4_saved_bytes"]
        run["flash_error"] = round(run["flash_bytes"] / run["expected_flash_bytes"] - 1, 5)
        run["instructions_vs_int8"] = round(run["instructions"] / base["instructions"], 4)
    return {"board": args.board, "train_images": len(train_set), "epochs": args.epochs,
            "test_images": len(test_set), "runs": runs}


def searches(args, log) -> dict:
    """The search with int8 weights only and with mixed bits, same budget and seed."""
    from edgekit.errors import SearchError
    from edgekit.nas.search import SearchConfig, run_search

    out = {}
    with tempfile.TemporaryDirectory(prefix="edgekit-int4s-search-") as tmp:
        for bits in args.search_bits:
            started = time.time()
            try:
                result = run_search(SearchConfig(
                    board=args.search_board, dataset="fashion-mnist", out_dir=Path(tmp) / bits,
                    strategy="proxy", trials=args.trials, seed=args.seed, proxy_steps=args.proxy_steps,
                    train_limit=args.train_limit, final_epochs=args.final_epochs,
                    test_limit=args.test_limit, threads=args.threads, bits=bits))
            except SearchError as err:  # no trial fits: an outcome to report, not a crash
                out[bits] = {"error": str(err), "seconds": round(time.time() - started, 1)}
                log(f"search --bits {bits}: {err}")
                continue
            best = result.best
            pareto = json.loads((Path(tmp) / bits / "pareto.json").read_text())
            out[bits] = {
                "top1": round(100 * best["int8_accuracy"], 2),
                "float_top1": round(100 * best["float_accuracy"], 2),
                "flash_estimate": best["flash_estimate"], "peak_sram": best["peak_sram"],
                "weights_bytes": best["weights_bytes"], "bits": best["bits"],
                "fits": best["fits"], "proxy_accuracy": best["proxy_accuracy"],
                "test_images": best["test_images"], "spec": best["spec"],
                "trials": result.trials_total,
                "pareto_size": len(pareto["pareto"]),
                "seconds": round(time.time() - started, 1)}
            log(f"search --bits {bits}: top-1 {out[bits]['top1']}%, flash"
                f" {best['flash_estimate']} B, peak SRAM {best['peak_sram']} B")
    return {"board": args.search_board, "trials": args.trials, "seed": args.seed,
            "proxy_steps": args.proxy_steps, "train_limit": args.train_limit,
            "final_epochs": args.final_epochs, "results": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="mps2-an386", help="board of the CNN builds")
    parser.add_argument("--search-board", default="lm3s6965evb")
    parser.add_argument("--parts", nargs="+", default=["cnn", "search"], choices=["cnn", "search"])
    parser.add_argument("--epochs", type=int, default=2, help="CNN training epochs")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--search-bits", nargs="+", default=["8", "mixed"],
                        help="the searches to run (one process each may run them in parallel)")
    parser.add_argument("--proxy-steps", type=int, default=60)
    parser.add_argument("--final-epochs", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--test-limit", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    payload = {"produced_by": "bench/int4_search.py", "host": platform.platform(),
               "threads": args.threads}
    if args.out.exists():  # one part rerun keeps the other's figures
        payload = {**json.loads(args.out.read_text()), **payload}
    started = time.time()
    if "cnn" in args.parts:
        payload["cnn"] = cnn_variants(args, log)
    if "search" in args.parts:
        payload["search"] = searches(args, log)
    payload["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
