"""The recorded console of a real Renode run, replayed by the fake serial board.

`FIXTURE` holds what Renode 1.15.3's STM32F746 printed running edgekit's ``--hardware`` build of
MLPerf Tiny's kws_ref_model for disco-f746ng, with a header of ``# `` lines saying how and when
it was recorded and holding Renode's measurement (``edgekit measure --runner renode --json``) of
that run. Re-record it (Renode on PATH or ``$RENODE``):

    .venv/bin/python tests/serial_fixture.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

FIXTURE = Path(__file__).parent / "data" / "kws_disco-f746ng_renode.console.txt"
BOARD = "disco-f746ng"
MODEL = "kws"
MEASUREMENT_PREFIX = "# renode-measurement: "
#: fields a runner decides (who ran it, where the ELF lies, which counter it may trust): the rest
#: of a measurement comes from the report and the ELF and must not depend on the runner
RUNNER_FIELDS = ("runner", "elf", "cycles", "latency_ms", "emulator_cycles", "instructions",
                 "exit_code", "stack_peak_hooked_bytes", "arena_used_hooked_bytes")


def build_kws(directory: Path) -> Path:
    """The kws ``--hardware`` build for `BOARD` into `directory` (about 6 s)."""
    from conftest import mlperf_path
    from edgekit.firmware.model_build import build_model

    if not (directory / "firmware.elf").is_file():
        build_model(mlperf_path(MODEL), BOARD, directory, emulated=False)
    return directory


def record_with_renode(build_dir: Path) -> tuple[str, dict]:
    """Run the build on Renode once: its console text and `measure`'s JSON of that run."""
    from edgekit.boards.runners.measure import measure, resolve_firmware
    from edgekit.boards.runners.renode import RenodeRunner

    seen: list[str] = []
    run = RenodeRunner.run

    def recording_run(self, elf, timeout_s):
        result = run(self, elf, timeout_s)
        seen.append(result.console)
        return result

    RenodeRunner.run = recording_run
    try:
        measured = measure(resolve_firmware(build_dir, BOARD), "renode")
    finally:
        RenodeRunner.run = run
    return seen[0], measured


def runner_independent(measured: dict) -> dict:
    return {k: v for k, v in measured.items() if k not in RUNNER_FIELDS}


def read_fixture(path: Path = FIXTURE) -> tuple[bytes, dict]:
    """The recorded console bytes (header removed) and Renode's measurement of that run."""
    header, console = [], []
    for line in path.read_bytes().splitlines(keepends=True):
        (header if line.startswith(b"# ") and not console else console).append(line)
    measured = next(json.loads(line[len(MEASUREMENT_PREFIX):]) for line in
                    (h.decode() for h in header) if line.startswith(MEASUREMENT_PREFIX))
    return b"".join(console), measured


def write_fixture(console: str, measured: dict, path: Path = FIXTURE) -> None:
    from edgekit.boards.runners.renode import find_renode

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    version = subprocess.run([find_renode(), "--version"], capture_output=True, text=True,
                             timeout=120).stdout.strip().splitlines()[0]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        f"Console of edgekit's --hardware build of MLPerf Tiny kws_ref_model for {BOARD},",
        f"recorded {when} at commit {commit} from {version}",
        "(platforms/cpus/stm32f746.repl through boards/renode/disco-f746ng.resc) by",
        "`python tests/serial_fixture.py`. The fake serial board (tests/fake_serial_board.py)",
        "replays the lines after this header byte for byte; the next line is Renode's",
        "measurement of the same run (edgekit measure --runner renode --json).",
    ]
    text = "".join(f"# {line}\n" for line in header)
    text += MEASUREMENT_PREFIX + json.dumps(runner_independent(measured), sort_keys=True) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() + console.encode())


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the root conftest
    with tempfile.TemporaryDirectory() as tmp:
        console, measured = record_with_renode(build_kws(Path(tmp) / "kws"))
    write_fixture(console, measured)
    print(f"wrote {FIXTURE}")
