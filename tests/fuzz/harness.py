"""Run fuzz cases and classify every command's outcome.

Outcomes: ``ok`` (exit 0), ``error`` (non-zero exit, an ``edgekit CMD: error:`` line on stderr,
no traceback) and the failures: ``traceback`` (an exception escaped, or "Traceback" printed),
``internal_error`` (the CLI's catch-all, exit 70), ``unclean`` (non-zero exit without the error
line), ``hang`` (past the case's time limit), ``signal`` (killed by a signal) and ``payload``
(a marker file appeared: code from the model ran; or a convert that succeeded by reading data
from outside the model's folder).

Speed with isolation: a worker process runs cases in-process (``edgekit.cli.main(argv)``,
stdout/stderr captured at the file-descriptor level, a per-case SIGALRM, memory capped by
RLIMIT_AS so a file that asks for terabytes fails instead of swapping the machine); the
supervisor (`run_cases`) restarts the worker after a crash or a stall and charges the case it
was on with ``signal`` or ``hang``. Payload and hang probes run as their own ``edgekit``
subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("ok", "error", "traceback", "internal_error", "unclean", "hang", "signal", "payload")
FAILURES = frozenset(OUTCOMES[2:])
#: address space of a worker: a file that makes edgekit allocate more fails with MemoryError
MEMORY_LIMIT_BYTES = 6 << 30
TESTS_DIR = Path(__file__).resolve().parents[1]
#: environment variables that make a worker crash / stall on one case (tests of the supervisor)
CRASH_AT_ENV, STALL_AT_ENV = "EDGEKIT_FUZZ_CRASH_AT", "EDGEKIT_FUZZ_STALL_AT"
_LAUNCHER = "import sys; from edgekit.cli import main; sys.exit(main())"


class CaseTimeout(BaseException):
    """Raised by SIGALRM; a BaseException so that no `except Exception` in edgekit eats it."""


def classify(cli: str, code: int | None, stderr: str, *, escaped: bool = False,
             timed_out: bool = False, marker_hit: bool = False, leaked: bool = False) -> str:
    if marker_hit or leaked:
        return "payload"
    if timed_out:
        return "hang"
    if code is not None and code < 0:
        return "signal"
    if escaped or "Traceback (most recent call last)" in stderr:
        return "traceback"
    if code == 70 or "internal error" in stderr:
        return "internal_error"
    if code == 0:
        return "ok"
    if any(line.startswith(f"edgekit {cli}: error:") for line in stderr.splitlines()):
        return "error"
    if cli == "measure" and code == 1 and not stderr.strip():
        return "error"  # a run that measured, but not what was expected: reported on stdout
    return "unclean"


# --- running one command ------------------------------------------------------------------------

@contextlib.contextmanager
def _captured_fds():
    """Capture fd 1 and fd 2 (and sys.stdout/sys.stderr) into temporary files; on exit the
    box holds ``stdout`` and ``stderr`` as text."""
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    sinks = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    os.dup2(sinks[0].fileno(), 1), os.dup2(sinks[1].fileno(), 2)
    texts = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = texts
    box = {}
    try:
        yield box
    finally:
        sys.stdout, sys.stderr = old
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        for name, text, sink, fd in zip(("stdout", "stderr"), texts, sinks, saved):
            os.close(fd)
            sink.seek(0)
            box[name] = text.getvalue() + sink.read().decode("utf-8", "replace")
            sink.close()


def _on_alarm(signum, frame):
    raise CaseTimeout()


@contextlib.contextmanager
def _patched(case):
    """Point the board loader at the case's board folder, and `measure` at a fake runner that
    returns the case's console text."""
    import edgekit.boards as boards
    import edgekit.boards.runners.measure as measure_module
    from edgekit.boards.runners.base import RunResult

    saved = boards.BOARDS_DIR, measure_module.make_runner
    if case.boards_dir is not None:
        boards.BOARDS_DIR = case.boards_dir
    if case.console is not None:
        class FakeRunner:
            name = "fake"

            def run(self, elf, timeout_s):
                return RunResult("fake", case.console)

        measure_module.make_runner = lambda *a, **k: FakeRunner()
    try:
        yield
    finally:
        boards.BOARDS_DIR, measure_module.make_runner = saved


def _call_function(command) -> tuple[int, str, bool]:
    from edgekit.errors import EdgekitError

    if command.function == "load_board_file":
        from edgekit.boards import load_board_file as function
    else:
        from edgekit.boards.report import parse_report as function
    try:
        function(*command.args)
        return 0, "", False
    except EdgekitError as err:
        message = str(err).strip()
        return 1, f"edgekit {command.cli}: error: {message}" if message else "(empty message)", False
    except Exception:  # noqa: BLE001 - what the fuzzer looks for
        return 1, traceback.format_exc(), True


def _run_in_process(case, command) -> dict:
    from edgekit.cli import main

    escaped = timed_out = False
    code = None
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, command.timeout_s)
    cwd = os.getcwd()
    try:
        os.chdir(case.folder)
        with _captured_fds() as box, _patched(case):
            try:
                if command.function:
                    code, message, escaped = _call_function(command)
                    print(message, file=sys.stderr)
                else:
                    code = main(list(command.argv))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except CaseTimeout:
                timed_out = True
            except BaseException:  # noqa: BLE001 - an escape is the finding
                escaped = True
                print(traceback.format_exc(), file=sys.stderr)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        os.chdir(cwd)
    return {"code": code, "stderr": box["stderr"], "escaped": escaped, "timed_out": timed_out}


def _run_subprocess(case, command) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, *command.argv], cwd=case.folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=command.timeout_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        timed_out = True
    return {"code": proc.returncode if not timed_out else None,
            "stderr": err.decode("utf-8", "replace"), "escaped": False, "timed_out": timed_out}


def run_case(case, on_start=None) -> list[dict]:
    """Run every command of `case`; one result dict per command. `on_start(command)` is called
    before each (the worker reports it, so a crash is charged to the right command)."""
    results = []
    previous_ok = True
    for command in case.commands:
        if command.after_ok and not previous_ok:
            continue
        if on_start is not None:
            on_start(command)
        start = time.monotonic()
        raw = (_run_subprocess if command.subprocess else _run_in_process)(case, command)
        marker_hit = case.marker is not None and case.marker.exists()
        leaked = case.exit_zero_leaks and raw["code"] == 0
        outcome = classify(command.cli, raw["code"], raw["stderr"], escaped=raw["escaped"],
                           timed_out=raw["timed_out"], marker_hit=marker_hit, leaked=leaked)
        previous_ok = outcome == "ok"
        results.append({"index": case.index, "kind": case.kind, "mutation": case.mutation,
                        "cli": command.cli, "argv": command.argv or [command.function],
                        "outcome": outcome, "code": raw["code"],
                        "seconds": round(time.monotonic() - start, 3),
                        "detail": _detail(outcome, raw["stderr"], marker_hit, command)
                        if outcome in FAILURES else ""})
    return results


def _detail(outcome: str, stderr: str, marker_hit: bool, command) -> str:
    """The lines that say what went wrong: a traceback's last lines, else the first ones."""
    if outcome == "payload":
        return ("the model file ran code: the marker file appeared" if marker_hit else
                "exit 0: converted with data read from outside the model's folder")
    if outcome == "hang":
        return f"no exit within {command.timeout_s:.0f} s"
    lines = [line for line in stderr.splitlines() if line.strip()]
    if any("Traceback" in line for line in lines):
        return "\n".join(lines[-3:])[:600]
    return "\n".join(lines[:3])[:600]


# --- the worker process -------------------------------------------------------------------------

def worker_main(seeds: str, run_seed: int, start: int, stop: int, scratch: str) -> None:
    """Run cases start..stop-1, writing one JSON line per event to the original stdout."""
    from fuzz.cases import make_case

    channel = os.fdopen(os.dup(1), "w", buffering=1)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, hard))
    import edgekit.cli  # noqa: F401 - imported before the first case, not timed with it
    import edgekit.boards.runners.measure as measure_module

    if not hasattr(measure_module, "make_runner"):  # `_patched` would silently not apply
        raise RuntimeError("edgekit.boards.runners.measure.make_runner is gone: update _patched")
    def send(event: dict) -> None:
        channel.write(json.dumps(event) + "\n")

    # the supervisor's own test: die or stall on these cases, as a crashing edgekit would
    crash_at, stall_at = (int(os.environ.get(k, -1)) for k in (CRASH_AT_ENV, STALL_AT_ENV))
    for index in range(start, stop):
        case = make_case(Path(seeds), run_seed, index, Path(scratch) / "case")
        send({"begin": index, "kind": case.kind, "mutation": case.mutation})
        if index == crash_at:
            os.kill(os.getpid(), signal.SIGSEGV)
        if index == stall_at:
            time.sleep(3600)
        for result in run_case(case, lambda c: send({"command": c.cli, "argv": c.argv or [c.function]})):
            send(result)
        send({"end": index})


@dataclass
class Summary:
    """What a run found: counts per file type x command x outcome, and every failure."""

    seed: int
    cases: int = 0
    seconds: float = 0.0
    counts: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    def add(self, result: dict) -> None:
        per_kind = self.counts.setdefault(result["kind"], {})
        per_cli = per_kind.setdefault(result["cli"], Counter())
        per_cli[result["outcome"]] += 1
        if result["outcome"] in FAILURES:
            self.failures.append(result)

    def totals(self) -> Counter:
        total: Counter = Counter()
        for per_kind in self.counts.values():
            for per_cli in per_kind.values():
                total.update(per_cli)
        return total

    def to_json(self) -> dict:
        return {"seed": self.seed, "cases": self.cases, "seconds": round(self.seconds, 1),
                "cases_per_second": round(self.cases / self.seconds, 2) if self.seconds else None,
                "totals": dict(self.totals()),
                "counts": {k: {c: dict(v) for c, v in per.items()} for k, per in sorted(self.counts.items())},
                "failures": self.failures}

    def table(self) -> str:
        lines = [f"fuzz: {self.cases} cases in {self.seconds:.0f} s (seed {self.seed}): "
                 + ", ".join(f"{k} {v}" for k, v in sorted(self.totals().items()))]
        lines.append(f"  {'file type':9} {'command':12} " + " ".join(f"{o:>9}" for o in OUTCOMES))
        for kind, per in sorted(self.counts.items()):
            for cli, counter in sorted(per.items()):
                lines.append(f"  {kind:9} {cli:12} " + " ".join(f"{counter.get(o, 0):>9}" for o in OUTCOMES))
        return "\n".join(lines)


def run_cases(seeds: Path, run_seed: int, count: int, *, stall_s: float = 200.0,
              scratch: Path | None = None) -> Summary:
    """Run cases 0..count-1 of `run_seed` in worker processes; a worker that dies or stalls
    charges its current case (``signal`` / ``hang``) and a new one carries on after it."""
    summary = Summary(run_seed)
    scratch = Path(scratch or tempfile.mkdtemp(prefix="edgekit-fuzz-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
               MPLBACKEND="Agg")
    start_time = time.monotonic()
    next_index = 0
    while next_index < count:
        command = [sys.executable, "-c", "import sys; from fuzz.harness import worker_main; "
                   f"worker_main({str(seeds)!r}, {run_seed}, {next_index}, {count}, {str(scratch)!r})"]
        log = open(scratch / "worker.log", "wb")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env,
                                start_new_session=True)
        current = None
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        buffer = b""
        last_event = time.monotonic()
        stalled = False
        while True:
            if not selector.select(timeout=1.0):
                if time.monotonic() - last_event > stall_s:
                    stalled = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            last_event = time.monotonic()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                if "begin" in event:
                    current, command_event = event, {"command": "?", "argv": []}
                elif "command" in event:
                    command_event = event
                elif "end" in event:
                    summary.cases += 1
                    current, next_index = None, event["end"] + 1
                else:
                    summary.add(event)
        selector.close()
        code = proc.wait()
        proc.stdout.close()
        log.close()
        if current is None:
            if code != 0 and next_index < count:  # a bug in the fuzzer, not in edgekit
                tail = (scratch / "worker.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"fuzz worker exited with {code} between cases:\n{tail}")
            continue
        outcome = "hang" if stalled else ("signal" if code < 0 else "traceback")
        summary.add({"index": current["begin"], "kind": current["kind"],
                     "mutation": current["mutation"], "cli": command_event["command"],
                     "argv": command_event["argv"], "outcome": outcome, "code": code,
                     "seconds": None, "detail": f"the worker {'stalled' if stalled else 'died'}"
                     f" (exit {code}) in this command"})
        summary.cases += 1
        next_index = current["begin"] + 1
    summary.seconds = time.monotonic() - start_time
    shutil.rmtree(scratch, ignore_errors=True)
    return summary
