"""Figures of an analysis report from its stored numbers: :func:`render_report`.

Each metric of the registry (:mod:`flatscope.metrics`) says which figures its entries make;
:mod:`flatscope.plotting` draws them from the numbers alone, so a report renders without its
model. Each figure is written as PNG and PDF, each file atomically (see
:func:`flatscope.plotting.report_figures.save_figure`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flatscope.errors import ReportError
from flatscope.io.output import make_output_dir
from flatscope.io.report import Report
from flatscope.metrics import REGISTRY
from flatscope.plotting.report_figures import save_figure

__all__ = ["render_report"]


def _figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    figures = {}
    for name, metric in REGISTRY.items():
        try:
            figures.update(metric.figures(metrics))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ReportError(
                f"the report's numbers for the {name} figures are malformed: {err}"
            ) from err
    return figures


def render_report(
    report: Report | Mapping[str, Any] | str | os.PathLike, out: str | os.PathLike | None = None
) -> list[Path]:
    """Render every figure the report's metrics allow into ``out``; return the files written.

    Args:
        report: a :class:`~flatscope.io.report.Report`, its ``to_dict()``, or a report file.
        out: the directory for the figures (created if needed); by default the report's own.

    Raises:
        ReportError: the file is not a valid report, or its numbers cannot be drawn.
        OutputError: ``out`` cannot be written.
    """
    if isinstance(report, (str, os.PathLike)):
        report = Report.load(report)
    if isinstance(report, Report):
        out = report.path.parent if out is None and report.path is not None else out
        document = report.to_dict()
    else:
        document = dict(report)
    if out is None:
        raise ValueError("render_report needs an output directory for an in-memory report")
    metrics = document.get("metrics")
    if not isinstance(metrics, Mapping):
        raise ReportError("the report has no metrics object")
    figures = _figures(metrics)
    out = Path(out)
    if figures:
        make_output_dir(out)
    return [path for name, fig in figures.items() for path in save_figure(fig, out / name)]
