"""The one exception tree of edgekit.

Every error a user can cause (a bad file, an unknown board, a model that does not fit) is an
`EdgekitError`; its message names the file, op, tensor, field or value that is wrong. The CLI
prints the message and exits non-zero (traceback only with ``-v``). Anything else that escapes is
a bug in edgekit, not in the user's input.

Add a class here rather than raising a bare `ValueError` at a boundary; keep the tree shallow.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base of every error edgekit raises on purpose."""

    #: process exit status the CLI uses for this error
    exit_code = 1


class MissingExtraError(EdgekitError):
    """A command needs an optional dependency that is not installed; the message names the pip
    extra that brings it (``pip install 'edgekit[nas]'``)."""


class UsageError(EdgekitError):
    """Bad command-line arguments or option values."""

    exit_code = 2


class FileAccessError(EdgekitError):
    """A file or folder the user named cannot be read or written (missing, no permission, disk
    full, ...): the CLI turns an `OSError` that reaches it into this, naming the path."""

    def __init__(self, message: str, filename: str | None = None):
        super().__init__(message)
        self.filename = filename


# --- boards -------------------------------------------------------------------------------------

class BoardError(EdgekitError):
    """Unknown board id, or a board file that does not match the schema."""


# --- models, IR, import/export ------------------------------------------------------------------

class ModelError(EdgekitError):
    """A model file or graph that edgekit cannot read or does not accept."""


class ModelFormatError(ModelError):
    """The file is truncated, corrupt or not the format it claims to be."""


class UnsupportedError(ModelError):
    """A valid model that uses an op, dtype or option edgekit does not implement."""


class DataFileError(ModelFormatError):
    """An ``.npy`` / ``.npz`` data file that is damaged, too large or not plain numbers."""


class TflmIncompatibleError(ModelError):
    """A model TFLite Micro's Prepare would refuse (or silently mis-run): names each op/tensor.

    `findings` lists one message per problem; ``--allow-tflm-incompatible`` turns it into a
    warning."""

    def __init__(self, message: str, findings: list[str] | None = None):
        super().__init__(message)
        self.findings = list(findings or [])


class GraphError(ModelError):
    """An IR graph that breaks an invariant (unknown tensor, bad shape, cycle, ...)."""


class InterpreterError(EdgekitError):
    """The reference interpreter was given inputs it cannot run (wrong shape or dtype, ...)."""


class CalibrationError(EdgekitError):
    """Calibration data that does not fit the model (wrong shape, dtype, empty, not finite)."""


class PlanError(EdgekitError):
    """The memory planner cannot produce a valid plan."""


class PatchError(PlanError):
    """A patch schedule that does not apply to the graph (split tensor, tile count, op kind)."""


# --- firmware build -----------------------------------------------------------------------------

class BuildError(EdgekitError):
    """Code generation, compilation or linking failed."""


class ToolchainMissingError(BuildError):
    """A required host tool (arm-none-eabi-gcc, qemu-system-arm, ...) is not installed."""


class MemoryOverflowError(BuildError):
    """The firmware does not fit the board: names the region and the overflow in bytes."""

    def __init__(self, message: str, region: str = "", overflow_bytes: int = 0):
        super().__init__(message)
        self.region = region
        self.overflow_bytes = overflow_bytes


# --- running and measuring ----------------------------------------------------------------------

class RunnerError(EdgekitError):
    """A runner (emulator or real board) could not load or run the firmware."""


class RunnerUnavailableError(RunnerError):
    """The runner's tool or hardware is not present here (renode not on PATH, no probe, ...)."""


class FirmwareFormatError(RunnerError):
    """A firmware ELF or build manifest that is corrupt, truncated or not for an Arm core: refused
    before any runner starts. Names the file (and the field or header entry)."""


class RunnerTimeoutError(RunnerError):
    """The firmware did not finish within the timeout. Carries the console text so far."""

    def __init__(self, message: str, console: str = ""):
        super().__init__(message)
        self.console = console


class ReportError(EdgekitError):
    """The firmware's report is truncated, garbled, fails its CRC, or says the device faulted.

    `console` keeps the raw console log so nothing the device said is lost.
    """

    def __init__(self, message: str, console: str = ""):
        super().__init__(message)
        self.console = console


class DeviceFaultError(ReportError):
    """The firmware hit a HardFault (or another fault handler) and reported its registers."""

    def __init__(self, message: str, console: str = "", registers: dict | None = None):
        super().__init__(message, console)
        self.registers = registers or {}


# --- architecture search ------------------------------------------------------------------------

class SearchError(EdgekitError):
    """A search that cannot run or finish: an existing study without --resume, no candidate
    that fits the board, a storage URL Optuna cannot open."""
