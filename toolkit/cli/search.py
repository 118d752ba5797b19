"""`edgekit search`: architecture search of one model family (MCUNetV2 CNNs, MCUFormer vision
transformers, EmbBERT-Q text models) under a board's SRAM and flash budgets, then the final
training of the chosen model, quantized to an int8 .tflite in DIR/best/."""

from __future__ import annotations

import argparse

from edgekit.cli.output import emit, progress

NAME = "search"
HELP = ("search a model (MCUNetV2, MCUFormer or EmbBERT-Q) that fits a board (Optuna), train"
        " it, write DIR/best/")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="mcunet", metavar="mcunet|mcuformer|embbert",
                        help="model family: mcunet (inverted-residual CNNs with patch-based"
                        " inference, the default), mcuformer (vision transformers with low-rank"
                        " MLPs) or embbert (tiny text models; token-id datasets)")
    parser.add_argument("--board", required=True, help="board id (see `edgekit boards`)")
    parser.add_argument("--dataset", required=True, metavar="fashion-mnist|digits|mnist5k|fortunes|PATH",
                        help="a bundled dataset, an .npz (arrays x, y [, x_test, y_test]), an"
                        " image folder with one subfolder per class, or (embbert) a .csv with"
                        " columns text,label")
    parser.add_argument("--trials", type=int,
                        help="finished trials the search should hold in all (default: 1000"
                        " sub-networks evaluated by the supernet strategy, 20 trials by the proxy"
                        " one); with --resume, or with several workers on one --storage, each runs"
                        " only what is missing")
    parser.add_argument("--strategy", choices=("proxy", "supernet"),
                        help="supernet (mcunet's default; mcunet, mcuformer): train one"
                        " weight-sharing supernet, then evolve its sub-networks evaluated with"
                        " inherited weights; proxy (the default of the other spaces): each trial"
                        " trains its candidate for --proxy-steps")
    parser.add_argument("--supernet-steps", type=int, default=600, metavar="N",
                        help="--strategy supernet: sandwich-rule training steps (default 600)")
    parser.add_argument("--time-budget", type=float, metavar="S",
                        help="start no trial after S seconds (the final training of the chosen model"
                        " comes after)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the search stored in DIR/search.db (or --storage), or join"
                        " it as one more worker; creates it when there is none")
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna RDB storage URL (default sqlite:///DIR/search.db); several"
                        " workers share one search through postgresql://USER@HOST/DB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxy-steps", type=int, default=200,
                        help="training batches per candidate during the search (default 200)")
    parser.add_argument("--train-limit", type=int, default=6000,
                        help="training images used (default 6000)")
    parser.add_argument("--final-epochs", type=int, default=3,
                        help="epochs of the chosen model's final training (default 3)")
    parser.add_argument("--test-limit", type=int, default=500,
                        help="test images for the final float/int8 accuracy (default 500)")
    parser.add_argument("--max-mac-overhead", type=float, default=1.0, metavar="F",
                        help="patch schedules may recompute at most F times the layer-by-layer"
                        " MACs (default 1.0)")
    parser.add_argument("--max-instructions", type=int, metavar="N",
                        help="latency constraint (mcunet): candidates whose estimated"
                        " instructions per inference (the kernel cost model's figure for their"
                        " fastest plan on the board's core) exceed N are rejected before they"
                        " are trained, like those over the SRAM or flash budget")
    parser.add_argument("--resolutions", type=_numbers(int), metavar="R,R,...",
                        help="input resolutions to search (mcunet default 32,40,48,56,64;"
                        " mcuformer 28,32,48)")
    parser.add_argument("--widths", type=_numbers(float), metavar="W,W,...",
                        help="width multipliers to search, mcunet only (default"
                        " 0.25,0.35,0.5,0.75)")
    parser.add_argument("--scale", default="default", choices=("default", "paper"),
                        help="paper: mcuformer and embbert at their papers' scale (196-784"
                        " tokens; ~800 kB of weights + activations), where the budgets bind")
    parser.add_argument("--space-opt", choices=("on", "off"), default="on",
                        help="mcunet: choose the resolution and width first, those whose random"
                        " sub-networks that fit the board have the most MACs (TinyNAS; default on)")
    parser.add_argument("--space-samples", type=int, default=1000, metavar="N",
                        help="random sub-networks per (resolution, width) for --space-opt"
                        " (default 1000)")
    parser.add_argument("--bits", choices=("8", "4", "mixed"),
                        help="weight bits of each layer (mcunet): 8, 4, or mixed (each layer's"
                        " 8 or 4 drawn with the architecture; int4 weights take half the flash,"
                        " the chosen model's int4 layers are converted with --recover). Default:"
                        " mixed where the board's flash binds (the space's largest int8"
                        " candidate does not fit it), else 8")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads for training and evaluation; --strategy supernet evaluates"
                        " sub-networks on this many worker processes (default 2)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR")


def _numbers(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}:"
                                             f" {text!r}") from None
    return parse


def _render(p: dict) -> str:
    from edgekit.nas.screen import rejected_text
    from edgekit.nas.search_constraints import describe

    best = p["best"]
    screened = f"  {rejected_text(p['rejected'])}"
    if best is None:
        return (f"{p['space']} search on {p['dataset']} for {p['board']}: {p['trials_run']}"
                f" trials run, {p['trials_total']} in the study; outputs not written here:"
                f" {p['not_written']}\n{screened}")
    patch = best["patch"]
    patch_text = "layer by layer" if patch["split"] is None else (
        f"{patch['split']} in {patch['n']}x{patch['n']} patches"
        f" (+{100 * best.get('mac_overhead', 0):.0f}% MACs recomputed)")
    return "\n".join([
        f"{p['space']} search on {p['dataset']} for {p['board']}: {p['trials_run']} trials run,"
        f" {p['trials_total']} in the study, {len(p['pareto'])} on the Pareto front",
        screened,
        *([f"  space: {_space_text(p['space_choice'])}"] if p["space_choice"] else []),
        f"  best (trial {best['trial']}): proxy accuracy {best['proxy_accuracy']:.3f}",
        f"  final training: {best['train_steps']} steps; top-1 on {best['test_images']} test"
        f" images: float {best['float_accuracy']:.3f}, int8 {best['int8_accuracy']:.3f}",
        f"  peak SRAM (arena, input included): {best['peak_sram']} B"
        + (f" ({best['peak_sram_without_input']} B without the input)"
           if "peak_sram_without_input" in best else "")
        + f"; layer by layer {best['peak_sram_layer_by_layer']} B",
        f"  flash (estimate): {best['flash_estimate']} B"
        + (f" (weight bits {best['bits']})" if "bits" in best else "")
        + f"; fits {p['board']}:"
        f" {'yes' if best['fits'] else 'no'}",
        f"  patch schedule: {patch_text}",
        *([f"  latency (estimate): {best['instructions']:,} instructions per inference"]
          if best.get("instructions") is not None else []),
        f"  model: {p['files']['model']}"
        + (f" (build it with --patch {patch['split']}:{patch['n']}x{patch['n']})"
           if patch["split"] is not None else ""),
        f"  Pareto front: {p['files']['pareto_json']}, {p['files']['pareto_png']}",
    ] + ([f"  budgets: {describe(best['constraints'])}"] if "constraints" in best else []))


def _space_text(choice: dict) -> str:
    chosen = choice["chosen"]
    if chosen is None:
        return choice["why"]
    return f"resolution {chosen['resolution']}, width {chosen['width']}: {choice['why']}"


def run(args: argparse.Namespace) -> int:
    from edgekit.extras import SEARCH_MODULES, require_all

    # the search trains candidates with torch, drives trials with Optuna and exports through
    # ONNX: say which extra brings them before an import deep in edgekit.nas fails
    require_all("nas", "edgekit search", SEARCH_MODULES)
    from edgekit.nas.family import check_space
    from edgekit.nas.search import SearchConfig, run_search

    check_space(args.space)

    config = SearchConfig(board=args.board, dataset=args.dataset, out_dir=args.output,
                          trials=args.trials, strategy=args.strategy, threads=args.threads,
                          supernet_steps=args.supernet_steps,
                          time_budget=args.time_budget, seed=args.seed,
                          storage=args.storage, resume=args.resume, proxy_steps=args.proxy_steps,
                          train_limit=args.train_limit, final_epochs=args.final_epochs,
                          test_limit=args.test_limit, max_mac_overhead=args.max_mac_overhead,
                          max_instructions=args.max_instructions,
                          resolutions=args.resolutions, widths=args.widths, space=args.space,
                          scale=args.scale, space_opt=args.space_opt == "on",
                          space_samples=args.space_samples, bits=args.bits)
    result = run_search(config, progress=lambda total, desc="trials": progress(
        total=total, desc=desc, args=args))
    payload = {"board": args.board, "dataset": args.dataset, "space": args.space,
               "trials_run": result.trials_run,
               "trials_total": result.trials_total, "pareto": result.pareto,
               "best": result.best, "best_dir": result.best_dir, "files": result.files,
               "wrote_outputs": not result.not_written, "not_written": result.not_written,
               "rejected": result.rejected, "space_choice": result.space_choice}
    emit(args, NAME, payload, _render)
    return 0
