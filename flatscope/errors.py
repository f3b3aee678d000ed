"""Errors that flatscope reports to its users.

Every error the user can fix (a bad file, a bad option, an unwritable output path) is a
:class:`FlatscopeError`. The command line turns one into a one-line message and exit code 2; the
traceback is shown only with ``--debug``. Programming errors (wrong argument types in the Python
API) stay ``TypeError`` / ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["FlatscopeError", "CheckpointError", "ReportError", "OutputError", "preview"]


class FlatscopeError(Exception):
    """Base class of user-facing flatscope errors; the message is one line saying what to change."""


class CheckpointError(FlatscopeError):
    """A checkpoint file cannot be read safely or does not fit the model."""


class ReportError(FlatscopeError):
    """A report file is not a valid flatscope report, or cannot be resumed."""


class OutputError(FlatscopeError):
    """An output file (checkpoint, report, figure) cannot be written."""


def preview(items: Iterable[object], limit: int = 5, separator: str = ", ") -> str:
    """The first ``limit`` items joined for a one-line message, with a count of the rest."""
    items = [str(item) for item in items]
    shown = separator.join(items[:limit])
    return shown + (f"{separator}and {len(items) - limit} more" if len(items) > limit else "")
