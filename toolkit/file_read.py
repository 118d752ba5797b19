"""Reading an untrusted input file whole, with a size limit checked before the read: a model,
archive or manifest of gigabytes is refused by its size, never loaded into memory first."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import EdgekitError


def read_limited(path: Path, limit: int, error: type[EdgekitError], what: str) -> bytes:
    """The bytes of `path`; `error` naming ``what`` and the path when the file is larger than
    `limit` bytes or cannot be read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise error(f"{what} {path}: {size} bytes, more than the {limit} bytes edgekit reads"
                        " from such a file")
        return path.read_bytes()
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror or err}") from None
