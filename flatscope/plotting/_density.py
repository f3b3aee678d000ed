"""Drawing a smoothed spectral density on a log scale, shared by the report and demo figures.

A density that falls below ``DENSITY_FLOOR`` times its peak is not drawn there: the line breaks
instead of running along the bottom of the plot, which would read as a measured density of
exactly the floor across a gap in the spectrum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["DENSITY_FLOOR", "plot_log_density", "smoothing_note"]

#: The density is drawn down to this fraction of its peak on the log scale.
DENSITY_FLOOR = 1e-7


def plot_log_density(ax: Any, grid: np.ndarray, values: np.ndarray, floor: float, **style) -> Any:
    """Draw ``values`` against ``grid`` on a log scale with the axis starting at ``floor``;
    points below ``floor`` are left out (NaN), so the line breaks across them."""
    shown = np.where(np.asarray(values) >= floor, values, np.nan)
    (line,) = ax.semilogy(grid, shown, **style)
    ax.set_ylim(bottom=floor)
    return line


def smoothing_note(width: float) -> str:
    """``Gaussian smoothing, sigma = 1.23``: the kernel width the curves were drawn with."""
    return f"Gaussian smoothing, σ = {width:.3g}"
