"""Fuzz cases: case ``i`` of a run with seed ``s`` is built from ``default_rng([s, i])`` alone,
so any case replays by its index (``bench/fuzz_cli.py --replay I``).

A case writes its mutated file(s) into a fresh folder and lists the commands that open them:
CLI argument vectors (run in-process, or as a subprocess for the payload and hang probes) or
a library function for the loaders the CLI reaches only by id (board files, firmware reports).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fuzz import model_mutators as mm
from fuzz.mutators import (BYTE_MUTATORS, elf_header, elf_special, json_bytes, npy_header,
                           npy_values, npz_edit, pick, report_edit, zip_edit)
from fuzz.seeds import SELFTEST_BOARD, read_index

#: share of cases per file type (out of 100), in the order cases cycle through them
TYPE_WEIGHTS = {"tflite": 30, "onnx": 9, "pt2": 7, "npy": 12, "board": 10, "elf": 10,
                "manifest": 5, "report": 12, "probe": 5}
#: probability that a tflite case also builds (and then measures) the firmware: slow (~1 s)
BUILD_SHARE = 0.04
#: probability that a board case builds the self-test for the mutated board
BOARD_BUILD_SHARE = 0.08
#: probability that an ELF case also runs under QEMU (a subprocess)
QEMU_SHARE = 0.08
#: seconds a subprocess probe may take before it counts as a hang
PROBE_LIMIT_S = 30.0

_ORDER = [t for t, w in TYPE_WEIGHTS.items() for _ in range(w)]


@dataclass
class Command:
    """One thing a case runs: ``argv`` for the CLI (``cli`` is the subcommand), or ``function``
    (a loader) with ``args``; ``subprocess`` runs the CLI in a fresh Python process."""

    cli: str
    argv: list[str] = field(default_factory=list)
    function: str | None = None
    args: list = field(default_factory=list)
    subprocess: bool = False
    timeout_s: float = 60.0  # generous: the CI machine may be busy; a hang never returns
    #: only when the command before it in the case exited 0 (measure after build)
    after_ok: bool = False


@dataclass
class Case:
    index: int
    kind: str
    mutation: str
    folder: Path
    commands: list[Command]
    #: a file that appears only if the case ran code from the model file
    marker: Path | None = None
    #: True when a zero exit means data was read from outside the model's folder
    exit_zero_leaks: bool = False
    #: a board folder to use instead of the shipped one (in-process commands)
    boards_dir: Path | None = None
    #: console text a fake runner returns instead of running the firmware
    console: str | None = None


def _write(folder: Path, name: str, data) -> Path:
    path = folder / name
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data, encoding="latin1")
    return path


def _mutate(rng, data: bytes, structural: list, byte_share: float) -> tuple[str, bytes]:
    """One of the `structural` mutators, or with probability `byte_share` a byte-level one;
    returns (mutator name, mutated bytes)."""
    if rng.random() >= byte_share:
        mutator = pick(rng, structural)
        return mutator.__name__, mutator(rng, data)
    name = pick(rng, sorted(BYTE_MUTATORS))
    return name, BYTE_MUTATORS[name](rng, data)


def _tflite(rng, seeds: Path, index: dict, folder: Path) -> tuple[str, list[Command]]:
    tiny = rng.random() < 0.75 or not index["mlperf"]
    source = seeds / pick(rng, index["tflite"]) if tiny else Path(pick(rng, index["mlperf"]))
    name, data = _mutate(rng, source.read_bytes(), [mm.tflite_struct], 0.4)
    model = _write(folder, "model.tflite", data)
    inputs = sorted(seeds.glob(f"{source.stem}.input.np*"))
    plan = ["plan", str(model)] + pick(rng, [[], ["--board", "lm3s6965evb"], ["--patch", "auto"],
                                           ["--strategy", "greedy", "--no-inplace"], ["--json"]])
    # the patch search plans the graph several times: about 50-60 s on a mutated MLPerf vww of
    # 383 ops on a busy 2-core machine (seed 20261204, case 184), so it gets build's limit
    commands = [Command("inspect", ["inspect", str(model), "--ops"]),
                Command("plan", plan, timeout_s=120 if "--patch" in plan else 60)]
    if inputs and (tiny or "vww" not in source.name):
        out = folder / ("out.npz" if rng.random() < 0.3 else "out.npy")
        commands.append(Command("run", ["run", str(model), "--input", str(inputs[0]), "-o", str(out)]))
    if tiny and rng.random() < BUILD_SHARE:
        firmware = folder / "fw"
        commands.append(Command("build", ["build", str(model), "--board", SELFTEST_BOARD,
                                          "-o", str(firmware)], timeout_s=120))
        commands.append(Command("measure", ["measure", str(firmware), "--runner", "unicorn",
                                            "--timeout", "20"], timeout_s=90, after_ok=True))
    return f"{name} of {source.name}", commands


def _onnx(rng, seeds: Path, folder: Path, case: dict) -> tuple[str, list[Command]]:
    data = (seeds / "cnn.onnx").read_bytes()
    calib = seeds / "cnn.calib.npy"
    if rng.random() < 0.06:  # exfiltration probe: external data outside the model's folder
        secret = folder / "secret.bin"
        secret.write_bytes(np.random.default_rng(7).standard_normal(1000).astype(np.float32).tobytes())
        model_dir = folder / "model"
        model_dir.mkdir()
        location = pick(rng, [str(secret), "../secret.bin", "secret.bin"])
        as_constant = bool(rng.random() < 0.5)
        model = _write(model_dir, "model.onnx", mm.onnx_external(data, location, as_constant))
        case["exit_zero_leaks"] = True
        argv = ["convert", str(model), "--calib", str(calib), "-o", str(folder / "out.tflite")]
        where = "Constant" if as_constant else "initializer"
        return f"{where} external data at {location}", [Command("convert", argv, subprocess=True,
                                                        timeout_s=PROBE_LIMIT_S)]
    name, data = _mutate(rng, data, [mm.onnx_struct], 0.3)
    model = _write(folder, "model.onnx", data)
    out = folder / "out.tflite"
    argv = ["convert", str(model), "--calib", str(calib), "-o", str(out)]
    argv += pick(rng, [[], [], ["--bits", "4"], ["--bits", "mixed:default=4,#0=8"],
                       ["--eval", str(seeds / "cnn.eval.npz")], ["--calibration", "percentile"]])
    return name, [Command("convert", argv, timeout_s=90),
                  Command("inspect", ["inspect", str(out)], after_ok=True)]


def _pt2(rng, seeds: Path, folder: Path, case: dict) -> tuple[str, list[Command]]:
    data = (seeds / "cnn.pt2").read_bytes()
    argv_tail = ["--calib", str(seeds / "cnn_pt2.calib.npy"), "-o", str(folder / "out.tflite")]
    if rng.random() < 0.1:  # code-execution probe
        marker = folder / "pwned"
        model = _write(folder, "model.pt2", mm.pt2_payload(rng, data, str(marker)))
        case["marker"] = marker
        return "pickle trap", [Command("convert", ["convert", str(model)] + argv_tail,
                                       subprocess=True, timeout_s=PROBE_LIMIT_S)]
    name, data = _mutate(rng, data, [zip_edit], 0.4)
    model = _write(folder, "model.pt2", data)
    return name, [Command("convert", ["convert", str(model)] + argv_tail, timeout_s=90)]


def _npy(rng, seeds: Path, index: dict, folder: Path) -> tuple[str, list[Command]]:
    target = int(rng.integers(0, 4))
    if target == 0:  # a model's input
        model = seeds / pick(rng, [n for n in index["tflite"] if (seeds / n).with_suffix(".input.npy").is_file()])
        source = model.with_suffix(".input.npy")
    elif target == 1:
        model, source = None, seeds / "cnn.calib.npy"
    elif target == 2:
        model, source = None, seeds / "cnn.eval.npz"
    else:
        model = seeds / "add.tflite"
        source = seeds / "add.input.npz"
    data = source.read_bytes()
    if source.suffix == ".npz":
        name, data = _mutate(rng, data, [npz_edit], 0.3)
    else:
        name, data = _mutate(rng, data, [npy_header, npy_values], 1 / 3)
    path = _write(folder, "data" + source.suffix, data)
    out = folder / "out.tflite"
    if model is not None:
        argv = ["run", str(model), "--input", str(path), "-o", str(folder / "out.npy")]
    elif target == 1:
        argv = ["convert", str(seeds / "cnn.onnx"), "--calib", str(path), "-o", str(out)]
    else:
        argv = ["convert", str(seeds / "cnn.onnx"), "--calib", str(seeds / "cnn.calib.npy"),
                "--eval", str(path), "-o", str(out)]
    return f"{name} of {source.name}", [Command(argv[0], argv, timeout_s=90)]


def _board(rng, seeds: Path, folder: Path, case: dict) -> tuple[str, list[Command]]:
    boards = folder / "boards"
    shutil.copytree(seeds / "boards", boards)
    source = pick(rng, sorted(boards.glob("*.json")))
    name, data = _mutate(rng, source.read_bytes(), [json_bytes], 0.2)
    source.write_bytes(data)
    case["boards_dir"] = boards
    board = source.stem
    commands = [Command("boards.load", function="load_board_file", args=[str(source)]),
                Command("boards", ["boards", "--json"]),
                Command("plan", ["plan", str(seeds / "conv2d.tflite"), "--board", board])]
    if rng.random() < BOARD_BUILD_SHARE:
        commands.append(Command("build", ["build", "--selftest", "--board", board, "-o",
                                          str(folder / "fw")], timeout_s=120))
    return f"{name} of {source.name}", commands


def _copy_selftest(seeds: Path, folder: Path) -> Path:
    firmware = folder / "fw"
    shutil.copytree(seeds / "selftest", firmware, ignore=shutil.ignore_patterns("obj", "src"))
    return firmware


def _elf(rng, seeds: Path, folder: Path) -> tuple[str, list[Command]]:
    firmware = _copy_selftest(seeds, folder)
    elf = firmware / "firmware.elf"
    name, data = _mutate(rng, elf.read_bytes(), [elf_header, elf_header, elf_special], 0.25)
    elf.write_bytes(data)
    commands = [Command("measure", ["measure", str(firmware), "--runner", "unicorn", "--timeout", "10"],
                        timeout_s=60),
                Command("flash", ["flash", "--board", SELFTEST_BOARD, str(elf)])]
    if rng.random() < QEMU_SHARE:
        commands.append(Command("measure", ["measure", str(elf), "--board", SELFTEST_BOARD,
                                            "--runner", "qemu", "--timeout", "5"],
                                subprocess=True, timeout_s=PROBE_LIMIT_S))
    return name, commands


def _manifest(rng, seeds: Path, folder: Path) -> tuple[str, list[Command]]:
    firmware = _copy_selftest(seeds, folder)
    manifest = firmware / "edgekit-build.json"
    name, data = _mutate(rng, manifest.read_bytes(), [json_bytes], 0.15)
    manifest.write_bytes(data)
    return name, [Command("measure", ["measure", str(firmware), "--runner", "unicorn",
                                      "--timeout", "10"], timeout_s=60),
                  Command("flash", ["flash", str(firmware)])]


def _report(rng, seeds: Path, folder: Path, case: dict) -> tuple[str, list[Command]]:
    text = (seeds / "selftest.console.txt").read_text(encoding="latin1")
    for _ in range(int(rng.integers(1, 3))):
        text = report_edit(rng, text)
    _write(folder, "console.txt", text)
    case["console"] = text
    firmware = _copy_selftest(seeds, folder)
    return "report_edit", [Command("report.parse", function="parse_report", args=[text]),
                           Command("measure", ["measure", str(firmware), "--runner", "unicorn"])]


#: fixed probes for runners that must end on time, and option values that must be refused
_PROBES = [
    ("console flood, qemu", ["measure", "{seeds}/flood.elf", "--board", SELFTEST_BOARD, "--runner", "qemu", "--timeout", "3"]),
    ("console flood, unicorn", ["measure", "{seeds}/flood.elf", "--board", SELFTEST_BOARD, "--runner", "unicorn", "--timeout", "3"]),
    ("silent loop, qemu", ["measure", "{seeds}/forever.elf", "--board", SELFTEST_BOARD, "--runner", "qemu", "--timeout", "3"]),
    ("silent loop, unicorn", ["measure", "{seeds}/forever.elf", "--board", SELFTEST_BOARD, "--runner", "unicorn", "--timeout", "3"]),
    ("--timeout nan, silent loop", ["measure", "{seeds}/forever.elf", "--board", SELFTEST_BOARD, "--runner", "qemu", "--timeout", "nan"]),
    ("--timeout inf, silent loop", ["measure", "{seeds}/forever.elf", "--board", SELFTEST_BOARD, "--runner", "unicorn", "--timeout", "inf"]),
    ("--timeout 0", ["measure", "{seeds}/selftest", "--runner", "qemu", "--timeout", "0"]),
    ("--timeout -1, silent loop", ["measure", "{seeds}/forever.elf", "--board", SELFTEST_BOARD, "--runner", "unicorn", "--timeout", "-1"]),
]


def _probe_number(index: int) -> int:
    """How many probe cases come before case `index` (cases cycle through `_ORDER`)."""
    positions = [p for p in range(len(_ORDER)) if _ORDER[(p * 37) % len(_ORDER)] == "probe"]
    block, position = divmod(index, len(_ORDER))
    return block * len(positions) + sum(p < position for p in positions)


def _probe(n: int, seeds: Path) -> tuple[str, list[Command]]:
    label, argv = _PROBES[n % len(_PROBES)]
    argv = [a.format(seeds=seeds) for a in argv]
    return label, [Command("measure", argv, subprocess=True, timeout_s=PROBE_LIMIT_S)]


def make_case(seeds: Path, run_seed: int, index: int, folder: Path) -> Case:
    """Case `index` of run `run_seed`, its files written into `folder` (emptied first)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng([run_seed, index])
    kind = _ORDER[(index * 37) % len(_ORDER)]  # 37 is coprime with 100: every type, spread out
    if kind == "probe" and _probe_number(index) >= len(_PROBES):
        kind = "tflite"  # each probe runs once per run: they are slow, and do not vary
    extra: dict = {}
    seed_index = read_index(seeds)
    if kind == "tflite":
        mutation, commands = _tflite(rng, seeds, seed_index, folder)
    elif kind == "onnx":
        mutation, commands = _onnx(rng, seeds, folder, extra)
    elif kind == "pt2":
        mutation, commands = _pt2(rng, seeds, folder, extra)
    elif kind == "npy":
        mutation, commands = _npy(rng, seeds, seed_index, folder)
    elif kind == "board":
        mutation, commands = _board(rng, seeds, folder, extra)
    elif kind == "elf":
        mutation, commands = _elf(rng, seeds, folder)
    elif kind == "manifest":
        mutation, commands = _manifest(rng, seeds, folder)
    elif kind == "report":
        mutation, commands = _report(rng, seeds, folder, extra)
    else:
        mutation, commands = _probe(_probe_number(index), seeds)
    return Case(index, kind, mutation, folder, commands, **extra)
