"""Output folders: checked before any work, created with a one-line error when they cannot be."""

from __future__ import annotations

import os
from pathlib import Path

from flatscope.errors import OutputError

__all__ = ["check_output_dir", "make_output_dir"]


def check_output_dir(out: str | os.PathLike, *files: str) -> Path:
    """Check, without creating anything, that ``out`` can become a directory holding ``files``.

    Raises:
        OutputError: ``out`` or one of its ancestors is a file, the nearest existing ancestor
            is not writable, or one of ``files`` inside ``out`` is a directory.
    """
    out = Path(out)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write to {out}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {out}: {existing} is not writable")
    for name in files:
        if (out / name).is_dir():
            raise OutputError(f"cannot write {out / name}: it is a directory")
    return out


def make_output_dir(out: str | os.PathLike) -> Path:
    """Create ``out`` and its parents if needed.

    Raises:
        OutputError: it cannot be created (a file in the way, no permission, ...).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {out}: {err.strerror or err}") from err
    return out
