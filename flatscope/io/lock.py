"""One writer per output folder: an exclusive lock held while a command writes there.

:func:`output_lock` creates ``FOLDER/.flatscope.lock`` holding the writer's process id and takes
an exclusive ``flock`` on it. A second writer fails at once with :class:`LockedError` naming
the holder's pid. The kernel drops the lock when its holder exits, however it exits, so a lock
file left by a killed process does not block a later run (its stale pid is simply overwritten).
Where ``fcntl`` is missing the lock file is created with ``O_EXCL`` and a lock file whose pid
no longer runs is taken over.

On release the lock file is removed, and so are the folder and the parents the lock created, if
nothing else was written there: a command that fails before writing leaves nothing behind.

The lock is re-entrant within a process (a command that locks a folder may call a function that
locks it again), and it only guards writers that take it: flatscope's commands and the Python
API functions that write a folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from flatscope.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_NAME", "LockedError", "output_lock", "process_alive"]

LOCK_NAME = ".flatscope.lock"
_HELD: dict[Path, int] = {}


class LockedError(OutputError):
    """Another process is writing the output folder."""


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine, in this pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, under another user
        return True
    return True


def _holder(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _locked(folder: Path, pid: int | None) -> LockedError:
    who = "another process" if pid is None else f"another flatscope process (pid {pid})"
    return LockedError(
        f"{folder} is being written by {who}; wait for it to finish or choose another output "
        f"folder (a lock left by a process that no longer runs is taken over: {LOCK_NAME})"
    )


def _acquire_flock(path: Path, folder: Path) -> int:
    """Open and ``flock`` the lock file; retry if a releasing holder unlinked it meanwhile."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _locked(folder, _holder(path)) from None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _acquire_exclusive(path: Path, folder: Path) -> int:
    """``O_EXCL`` creation; a lock file whose holder no longer runs is taken over."""
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _holder(path)
            if pid is not None and process_alive(pid):
                raise _locked(folder, pid) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _acquire(folder: Path) -> int:
    path = folder / LOCK_NAME
    fd = (_acquire_flock if fcntl is not None else _acquire_exclusive)(path, folder)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    return fd


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: something was written
            return


def _release(folder: Path, fd: int, created: list[Path]) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / LOCK_NAME).unlink()
    os.close(fd)
    _remove_empty(created)


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``folder`` (created if missing) for the ``with`` block.

    Raises:
        LockedError: another live process holds the lock; the message names its pid.
        OutputError: the folder or its lock file cannot be created.
    """
    folder = Path(folder).absolute()
    if folder in _HELD:
        _HELD[folder] += 1
        try:
            yield folder
        finally:
            _HELD[folder] -= 1
        return
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _acquire(folder)
    except OSError as error:
        _remove_empty(created)
        raise OutputError(f"cannot lock {folder}: {error.strerror or error}") from error
    except LockedError:
        _remove_empty(created)
        raise
    _HELD[folder] = 1
    try:
        yield folder
    finally:
        del _HELD[folder]
        _release(folder, fd, created)
