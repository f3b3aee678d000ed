"""Numbers as text: values with error bars, spreads over seeds, and tables.

Every table flatscope prints or writes (analysis summaries, comparisons, verdicts, the demo)
goes through these helpers, so a number and its uncertainty look the same everywhere.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = [
    "as_number",
    "decimals_for",
    "fixed",
    "format_number",
    "format_table",
    "mean",
    "sample_sd",
    "spread_cell",
]


def as_number(value: Any) -> float | None:
    """A finite float, or ``None`` for a missing, non-numeric or non-finite report value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def format_number(value: float | None, error: float | None = None) -> str:
    """``value ± error`` with 4 significant digits (2 for the error); ``n/a`` for ``None``."""
    if value is None:
        return "n/a"
    return f"{value:.4g}" + ("" if error is None else f" ± {error:.2g}")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """Columns padded to their widest cell, or a GitHub markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def mean(values: Sequence[float]) -> float:
    """The mean, NaN for no values."""
    return statistics.fmean(values) if values else math.nan


def sample_sd(values: Sequence[float]) -> float:
    """The sample standard deviation (``n - 1``), NaN for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else math.nan


def decimals_for(value: float, digits: int) -> int:
    """Decimal places that show ``value`` to ``digits`` significant digits (never negative)."""
    if value == 0 or not math.isfinite(value):
        return 0
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def fixed(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, in fixed-point notation."""
    return f"{value:.{decimals_for(value, digits)}f}"


def spread_cell(values: Sequence[float], decimals: int | None = None, scale: float = 1.0) -> str:
    """``mean ± sd`` over seeds. With ``decimals`` both are shown to that many places; else the
    sd to 2 significant digits and the mean to the same place (4 significant digits alone)."""
    centre, sd = mean(values) * scale, sample_sd(values) * scale
    if decimals is None:
        decimals = decimals_for(centre, 4) if math.isnan(sd) else decimals_for(sd, 2)
    if math.isnan(sd):
        return f"{centre:.{decimals}f}"
    return f"{centre:.{decimals}f} ± {sd:.{decimals}f}"
