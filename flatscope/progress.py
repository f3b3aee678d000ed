"""A minimal progress bar on stderr for long runs of Hessian-vector products.

One line per task, redrawn in place with ``\\r``: label, bar, products done of the expected
number, elapsed seconds. It draws nothing when disabled or when the stream is not a terminal
(pipes, log files, notebooks), so output captured by other programs stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1


class Progress:
    """A progress line for ``total`` units of work (``None``: unknown, show the count only).

    Use as a context manager; :meth:`update` advances it, and leaving the block ends the line.

    Args:
        label: what is being computed, shown first.
        total: the expected number of units; the count may stop short of it (an eigensolver
            that converges early) or pass it.
        unit: the name of a unit, e.g. ``"HVPs"``.
        enabled: ``False`` silences it; when ``True`` it still draws only on a terminal.
        stream: where to draw (default ``sys.stderr``).
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "HVPs",
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.count = 0
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.active = bool(enabled and callable(isatty) and isatty())
        self._start = time.monotonic()
        self._last_draw = -float("inf")

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units and redraw (at most every ``REDRAW_SECONDS``)."""
        self.count += n
        self._draw()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.active:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.active = False

    def render(self) -> str:
        """The current line, without the leading carriage return."""
        seconds = time.monotonic() - self._start
        if self.total:
            filled = min(BAR_WIDTH, round(BAR_WIDTH * self.count / self.total))
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
            count = f"{self.count}/{self.total}"
        else:
            bar, count = "", str(self.count)
        return f"{self.label:<20} {bar}{count} {self.unit}  {seconds:.1f}s"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.active or (not force and now - self._last_draw < REDRAW_SECONDS):
            return
        self._last_draw = now
        self.stream.write("\r" + self.render())
        self.stream.flush()
