"""Output paths checked before any work, and writes that never leave half a file or folder.

Every command that writes calls `check_output_path` first (so `-o` pointing at a directory, at
``/proc/...`` or at a read-only place fails in a second, not after a ten-minute quantization),
then writes through `atomic_writer` / `atomic_write_bytes` / `atomic_directory`: the data goes to
a temporary sibling and is renamed over the target with `os.replace`, which is atomic within one
file system. A crash, a full disk or Ctrl-C leaves the old file (or nothing), never a torso.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from edgekit.errors import UsageError


def _describe(err: OSError) -> str:
    return err.strerror or type(err).__name__


def check_output_path(path: str | os.PathLike, *, directory: bool = False,
                      suffixes: tuple[str, ...] = (), what: str = "output") -> Path:
    """Refuse an output path that cannot be written, before any work starts.

    `directory`: the output is a folder (it may exist, and is then replaced as a whole);
    otherwise a file, which must not be an existing folder. `suffixes`: the accepted endings
    (lower case, with the dot). The parent folder must exist and accept a new file: a probe
    file is created and removed there, the only test that also catches read-only mounts and
    pseudo file systems such as ``/proc``.
    """
    path = Path(path)
    if not str(path) or path.name in ("", ".", ".."):
        raise UsageError(f"{what} {str(path)!r} is not a {'folder' if directory else 'file'} name")
    if directory:
        if path.exists() and not path.is_dir():
            raise UsageError(f"{what} {str(path)!r} exists and is not a folder")
    elif path.is_dir():
        raise UsageError(f"{what} {str(path)!r} is a folder; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UsageError(f"{what} {str(path)!r} must end in {' or '.join(suffixes)}")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{what} folder {str(parent)!r} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{what} {str(path)!r}: cannot write in folder {str(parent)!r}"
                         f" ({_describe(err)})") from None
    return path


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file object on a temporary sibling of `path`, renamed onto `path` when the block
    ends without an exception (and removed when it raises)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise UsageError(f"cannot write {str(path)!r} ({_describe(err)})") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary sibling folder to fill; when the block succeeds it replaces `path`
    (an old folder there is moved aside first and removed after), when it raises it is
    removed and `path` is left as it was."""
    path = Path(path)
    try:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as err:
        raise UsageError(f"cannot create folder {str(path)!r} ({_describe(err)})") from None
    try:
        yield tmp
        old = None
        if path.is_dir():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / "previous")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_text", "atomic_writer",
           "check_output_path"]
