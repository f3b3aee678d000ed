"""Progress of long runs of Hessian-vector products on stderr, with an estimated time left.

On a terminal, one line per task is redrawn in place with ``\\r``: label, bar, products done of
the expected number, elapsed time and the estimated time left (ETA). Elsewhere (a pipe, a log
file, a batch job's output) plain lines are written instead, one whenever another tenth of the
work is done or :data:`LOG_SECONDS` have passed since the last one, so that a log says how far
a long run got; a task that ends within :data:`QUIET_SECONDS` writes nothing, so the output of
short runs stays clean.

The ETA assumes the remaining units cost what the units after the first one cost: the first
product of an analysis also builds the first-order graphs that the later ones reuse (see
:mod:`flatscope.operators.hessian`). For an eigenvalue search, which may converge before it has
spent its budget, it is an upper bound.

Hand-written rather than tqdm: tqdm writes carriage-return redraws to files as well, which
leave a log one unreadable line, and the plain-line mode here is the part logs need.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_seconds"]

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1  # a terminal line is redrawn at most this often
LOG_SECONDS = 30.0  # a log gets a line at least this often while units complete
LOG_PARTS = 10  # ... and one whenever another tenth of the work is done
QUIET_SECONDS = 5.0  # a log gets no line for a task shorter than this


def format_seconds(seconds: float) -> str:
    """``seconds`` for people: ``"23ms"``, ``"8.3s"``, ``"4m05s"``, ``"2h07m"``."""
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """The progress of ``total`` units of work (``None``: unknown, count only).

    Use as a context manager; :meth:`update` advances it, :meth:`message` writes a line of
    text between the updates, and leaving the block ends the line.

    Args:
        label: what is being computed, shown first.
        total: the expected number of units; the count may stop short of it (an eigensolver
            that converges early) or pass it.
        unit: the name of a unit, e.g. ``"HVPs"``.
        enabled: ``False`` silences it (messages too).
        stream: where to write (default ``sys.stderr``): redrawn in place on a terminal, plain
            lines otherwise (module docs).
        clock: the time in seconds (default ``time.monotonic``).
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "HVPs",
        enabled: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.count = 0
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(callable(isatty) and isatty())
        self.enabled = enabled
        self.active = enabled and self.terminal  # a line is drawn in place
        self._start = clock()
        self._last_draw = -float("inf")
        self._last_log = self._start
        self._logged_tenths = 0
        self._logged = False
        self._first: tuple[int, float] | None = None  # count and time at the first update

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units; redraw (at most every ``REDRAW_SECONDS``) or log a line."""
        self.count += n
        if self._first is None:
            self._first = (self.count, self.clock())
        if self.active:
            self._draw()
        elif self.enabled:
            self._log()

    def message(self, text: str) -> None:
        """Write ``text`` as lines of its own (on a terminal above the redrawn line)."""
        if not self.enabled:
            return
        if self.active:
            self.stream.write("\r" + " " * len(self.render()) + "\r")
        self.stream.write(text.rstrip("\n") + "\n")
        self.stream.flush()
        self._draw(force=True)

    def close(self) -> None:
        """End the line (on a terminal) or write the final count (in a log that got lines)."""
        if self.active:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.active = False
        elif self.enabled and self._logged:
            self._write_line(f"done in {format_seconds(self.elapsed)}")
        self.enabled = False

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return self.clock() - self._start

    def eta(self) -> float | None:
        """Estimated seconds until ``total``, at the rate of the units after the first update
        (``None`` while it cannot be told: no total, or a single update so far)."""
        if not self.total or self._first is None or self.count >= self.total:
            return None if not self.total or self._first is None else 0.0
        first_count, first_time = self._first
        if self.count == first_count:
            return None
        rate = (self.clock() - first_time) / (self.count - first_count)
        return rate * (self.total - self.count)

    def render(self) -> str:
        """The current terminal line, without the leading carriage return."""
        if self.total:
            filled = min(BAR_WIDTH, round(BAR_WIDTH * self.count / self.total))
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
            count = f"{self.count}/{self.total}"
        else:
            bar, count = "", str(self.count)
        return f"{self.label:<20} {bar}{count} {self.unit}  {format_seconds(self.elapsed)}" + (
            self._eta_text()
        )

    def _eta_text(self, separator: str = "  ") -> str:
        eta = self.eta()
        return "" if not eta else f"{separator}ETA {format_seconds(eta)}"  # none once done

    def _draw(self, force: bool = False) -> None:
        now = self.clock()
        if not self.active or (not force and now - self._last_draw < REDRAW_SECONDS):
            return
        self._last_draw = now
        self.stream.write("\r" + self.render())
        self.stream.flush()

    def _log(self) -> None:
        """A plain line when another tenth is done or ``LOG_SECONDS`` passed (module docs)."""
        now = self.clock()
        tenths = self.count * LOG_PARTS // self.total if self.total else 0
        due = tenths > self._logged_tenths or now - self._last_log >= LOG_SECONDS
        if not due or now - self._start < QUIET_SECONDS:
            return
        self._logged_tenths, self._last_log = tenths, now
        share = f" ({self.count / self.total:.0%})" if self.total else ""
        count = f"{self.count}/{self.total}" if self.total else str(self.count)
        elapsed = format_seconds(self.elapsed)
        self._write_line(f"{count} {self.unit}{share}, {elapsed} elapsed{self._eta_text(', ')}")

    def _write_line(self, text: str) -> None:
        self.stream.write(f"{self.label}: {text}\n")
        self.stream.flush()
        self._logged = True
