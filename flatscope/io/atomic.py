"""Atomic file replacement: readers see either the old file or the complete new one.

The new content goes to a temporary file in the destination's directory (so the final rename
stays on one file system), is flushed and ``fsync``-ed, then ``os.replace`` swaps it in. If the
writer raises, the temporary file is removed and the destination is left as it was.

A writer killed mid-write (``SIGKILL``, a power cut) leaves its temporary file
``.NAME.<pid>.<hex>.tmp`` behind; the first atomic write of a later process into the same
folder removes every such file whose process no longer runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from flatscope.errors import OutputError
from flatscope.io.lock import process_alive

__all__ = ["atomic_write", "remove_stale_temporaries"]

_TEMPORARY = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")
_SWEPT: set[Path] = set()


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed atomic writes left in ``directory`` (those whose
    writer process no longer runs); return them."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match is None or process_alive(int(match.group(1))):
            continue
        path = Path(directory, name)
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` atomically with the bytes that ``write(file)`` writes to ``file``.

    The file gets the usual permissions for a new file (``0o666`` less the umask).

    Raises:
        OutputError: the directory is missing or not writable, or the disk is full (any
            ``OSError``); the message names the path. Other exceptions from ``write`` propagate
            unchanged. In every failure case no temporary file is left behind and an existing
            ``path`` keeps its old content.
    """
    path = Path(path)
    if path.parent.absolute() not in _SWEPT:
        remove_stale_temporaries(path.parent)
        _SWEPT.add(path.parent.absolute())
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    created = False
    try:
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        created = True
        with os.fdopen(fd, "wb") as tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_path, path)
        created = False
        _fsync_directory(path.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputError(
            f"cannot write {path}: {reason}; choose an existing, writable output location"
        ) from exc
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (POSIX); skipped where a directory cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
