"""Runners: one interface (`base.Runner`) over QEMU, Unicorn, Renode and real boards over serial.

`make_runner(target, name)` picks and configures one for a build target; a runner builds
nothing, it runs an ELF and hands back the console text for `edgekit.boards.report`.
"""

from __future__ import annotations

from edgekit.boards.runners.base import RunResult, Runner
from edgekit.errors import RunnerError, UsageError

__all__ = ["RUNNER_NAMES", "RunResult", "Runner", "default_runner_name", "make_runner"]

RUNNER_NAMES = ("qemu", "unicorn", "renode", "serial")


def default_runner_name(target) -> str:
    """QEMU for an emulated target (Unicorn where the board has no QEMU machine), the serial
    runner for a real board on its own hardware."""
    if not target.emulated:
        return "serial"
    return "qemu" if target.host.emulation.qemu_machine else "unicorn"


def make_runner(target, name: str | None = None, *, port: str | None = None,
                flasher: str | None = None, reset: str = "auto", verify_counts: bool = False,
                instruction_budget: int | None = None, budget_note: str = "",
                profile: bool = False) -> Runner:
    """The runner `name` (default: `default_runner_name`) configured for `target`
    (an `edgekit.boards.Target`).

    `port`, `flasher` ('pyocd', 'openocd', 'pio' or 'none') and `reset` (how a board that is
    not programmed is reset: 'probe', 'dtr', 'none', or 'auto': the probe where a probe tool is
    installed, else DTR) only matter for the serial runner;
    `verify_counts` (cross-checks block counts per instruction; slow) and `instruction_budget`
    (stop after that many instructions; `budget_note` says where it came from) and `profile`
    (instructions per generated op function) only for Unicorn.
    """
    name = name or default_runner_name(target)
    if name not in RUNNER_NAMES:
        raise UsageError(f"unknown runner {name!r}; expected one of {', '.join(RUNNER_NAMES)}")
    host = target.host
    if name == "qemu":
        from edgekit.boards.runners.qemu import QemuRunner

        if not target.emulated or not host.emulation.qemu_machine:
            raise RunnerError(f"board {host.id} has no QEMU machine (emulation.qemu_machine)")
        console = "semihosting" if target.console.kind == "semihosting" else "uart"
        return QemuRunner(host.emulation.qemu_machine, console=console)
    if name == "unicorn":
        from edgekit.boards.runners.unicorn_runner import UnicornRunner

        return UnicornRunner.from_target(target, verify_counts=verify_counts,
                                         instruction_budget=instruction_budget,
                                         budget_note=budget_note, profile=profile)
    if name == "renode":
        from edgekit.boards.runners.renode import RenodeRunner

        if target.emulated and target.board.kind == "real":
            raise RunnerError(f"Renode runs the hardware build of {target.board.id} on its model of "
                              f"the chip; this one was built for stand-in {host.id} (rebuild it "
                              "with --hardware)")
        return RenodeRunner.for_board(target.board.id)
    from edgekit.boards.runners.flashers import flasher_for
    from edgekit.boards.runners.serial_runner import SerialRunner, port_from_environment

    if target.emulated:
        raise RunnerError(f"the serial runner talks to real hardware; board {target.board.id} "
                          "was resolved for emulation (build it for the real board)")
    from edgekit.errors import RunnerUnavailableError

    chosen = None if flasher == "none" else flasher_for(target.board, prefer=flasher)
    probe = None
    if chosen is None and reset in ("auto", "probe"):
        try:
            probe = flasher_for(target.board)
        except RunnerUnavailableError:
            if reset == "probe":
                raise
        if probe is not None and probe.reset_command() is None:
            probe = None  # PlatformIO cannot reset on its own
        if reset == "probe" and probe is None:
            raise RunnerUnavailableError(f"no probe tool that can reset {target.board.id} is "
                                         "installed (pyocd or openocd)")
    return SerialRunner(port or port_from_environment(), flasher=chosen, reset=reset, reset_probe=probe)
