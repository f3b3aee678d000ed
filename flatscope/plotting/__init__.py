"""Figures from stored numbers (reports, landscapes); matplotlib only, never a model.

Report figures live in :mod:`flatscope.plotting.report_figures`; landscape figures in
:mod:`flatscope.plotting.landscape`, re-exported here lazily. Plotting reads stored numbers
(:mod:`flatscope.io`) and imports no compute code.
"""

from __future__ import annotations

import importlib
from typing import Any

from flatscope.plotting.report_figures import (
    FIGURE_FORMATS,
    density_figure,
    eigenvalue_figure,
    save_figure,
    trace_figure,
)

__all__ = [
    "FIGURE_FORMATS",
    "density_figure",
    "eigenvalue_figure",
    "save_figure",
    "trace_figure",
]

_LANDSCAPE = ("plot_slice_1d", "plot_surface_2d", "plot_surface_3d", "shared_levels")


def __getattr__(name: str) -> Any:
    if name in _LANDSCAPE:
        return getattr(importlib.import_module("flatscope.plotting.landscape"), name)
    raise AttributeError(f"module 'flatscope.plotting' has no attribute {name!r}")
