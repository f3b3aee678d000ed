"""Figures of an analysis report, drawn from the stored numbers alone (no model needed).

- ``spectral_density``: the SLQ density smoothed by a Gaussian kernel
  (:func:`flatscope.io.spectral_measure.smoothed_density`, width stated in the title) on a log
  scale, which shows the bulk near zero and the isolated outliers together (Ghorbani, Krishnan,
  Xiao, ICML 2019), with the top (and bottom) eigenvalues marked; the line breaks where the
  density falls below the plot's floor;
- ``eigenvalues``: the top and bottom eigenvalues with their residual norms as error bars (a
  Ritz value ``theta`` with residual ``r`` lies within ``r`` of an eigenvalue);
- ``trace_per_block``: the trace of each parameter tensor's diagonal Hessian block with its
  standard error.

Each figure is written as PNG and PDF, each file atomically (rendered into a temporary file in
the same directory, then renamed over the destination), so a reader never sees half a figure.
Figures are :class:`matplotlib.figure.Figure` objects rendered by the Agg (PNG) and PDF
canvases directly: no pyplot state is created and no window opens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from flatscope.io.atomic import atomic_write
from flatscope.io.spectral_measure import default_width, density_grid, smoothed_density
from flatscope.plotting._density import DENSITY_FLOOR, plot_log_density, smoothing_note

__all__ = [
    "DENSITY_FLOOR",
    "FIGURE_FORMATS",
    "density_figure",
    "eigenvalue_figure",
    "trace_figure",
    "save_figure",
]

FIGURE_FORMATS = ("png", "pdf")
DPI = 150
_MARKERS = (
    ("top_eigenvalues", "tab:red", "top eigenvalues"),
    ("bottom_eigenvalues", "tab:blue", "bottom eigenvalues"),
)


def density_figure(metrics: Mapping[str, Any]) -> Figure | None:
    """The smoothed spectral density on a log scale with the extreme eigenvalues marked, or
    ``None`` when the report holds no ``spectral_density``."""
    if "spectral_density" not in metrics:
        return None
    entry = metrics["spectral_density"]
    nodes, weights = np.asarray(entry["nodes"], float), np.asarray(entry["weights"], float)
    width = default_width(nodes, weights)
    grid = density_grid(nodes, weights, width)
    values = smoothed_density(nodes, weights, grid, width)
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    plot_log_density(
        ax, grid, values, DENSITY_FLOOR * values.max(), color="black", lw=1.2, label="density"
    )
    for name, color, label in _MARKERS:
        for index, value in enumerate(metrics.get(name, {}).get("values", [])):
            if value is not None:
                ax.axvline(value, color=color, ls="--", lw=0.8, label=None if index else label)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.set_title(
        f"Hessian spectral density ({entry['method'].upper()}, {len(entry['nodes'])} probes, "
        f"{entry['num_matvecs']} HVPs)\n{smoothing_note(width)}",
        fontsize="medium",
    )
    ax.legend(fontsize="small")
    return fig


def eigenvalue_figure(metrics: Mapping[str, Any]) -> Figure | None:
    """Top and bottom eigenvalues against their rank, residual norms as error bars, or
    ``None`` when the report holds neither."""
    present = [entry for entry in _MARKERS if entry[0] in metrics]
    if not present:
        return None
    fig = Figure(figsize=(4 * len(present) + 1, 3.5), layout="constrained")
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, (name, color, label) in zip(axes, present, strict=True):
        entry = metrics[name]
        values = np.array([np.nan if v is None else v for v in entry["values"]], dtype=float)
        errors = np.array([0.0 if r is None else r for r in entry["residuals"]], dtype=float)
        ranks = np.arange(1, len(values) + 1)
        ax.errorbar(ranks, values, yerr=errors, fmt="o", color=color, capsize=4)
        ax.set_xticks(ranks)
        ax.set_xlabel("rank")
        ax.set_ylabel("eigenvalue (bars: residual norm)")
        note = "" if entry.get("converged", True) else ", not converged"
        ax.set_title(f"{label} ({entry['num_matvecs']} HVPs{note})", fontsize="medium")
    return fig


def trace_figure(metrics: Mapping[str, Any]) -> Figure | None:
    """Horizontal bars of each block's trace with standard errors, or ``None`` when the
    report holds no per-block traces."""
    entry = metrics.get("hessian_trace")
    if not entry or not entry.get("per_block"):
        return None
    names = list(entry["per_block"])
    values = np.array([_finite(v) for v, _ in entry["per_block"].values()])
    errors = np.array([0.0 if s is None else s for _, s in entry["per_block"].values()])
    fig = Figure(figsize=(6.5, 1.2 + 0.25 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    ax.barh(positions, values, xerr=errors, color="tab:green", capsize=3)
    ax.set_yticks(positions, names, fontsize="small")
    ax.set_ylabel("parameter tensor")
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("trace of the diagonal block")
    total = f"{_finite(entry['value']):.4g}"
    if entry.get("stderr") is not None:
        total += f" ± {entry['stderr']:.2g}"
    ax.set_title(f"tr H = {total} ({entry['method']}, {entry['num_matvecs']} HVPs)")
    return fig


def _finite(value: Any) -> float:
    return float("nan") if value is None else float(value)


def save_figure(
    fig: Figure, stem: str | os.PathLike, formats: tuple[str, ...] = FIGURE_FORMATS
) -> list[Path]:
    """Write ``fig`` to ``stem.<format>`` for each format, each file atomically.

    Raises:
        OutputError: a file cannot be written (an existing file keeps its content).
    """
    stem = Path(stem)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        metadata = {"CreationDate": None} if fmt == "pdf" else None

        def write(file: Any, fmt: str = fmt, metadata: dict | None = metadata) -> None:
            fig.savefig(file, format=fmt, dpi=DPI, metadata=metadata)

        atomic_write(path, write)
        paths.append(path)
    return paths
