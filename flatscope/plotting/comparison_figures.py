"""Figures that put several reports side by side, and a run's flatness against epoch.

Drawn from stored numbers only (report metrics, saved landscapes, trajectory points); each
report keeps one colour (``C0``, ``C1``, ...) in every figure but the density overlay, which is
the demo's and colours the optimizer names it knows (``sgd``, ``fsgld``, ...) its own way.

- ``density_overlay``: the SLQ spectral densities overlaid on a log scale, smoothed by one common
  Gaussian width (:func:`flatscope.plotting.demo_figures.density_overlay_figure`);
- ``eigenvalue_comparison``: top (and bottom) eigenvalues against rank with residual-norm error
  bars, which bound the distance to an eigenvalue of the symmetric Hessian;
- ``trace_comparison``: ``tr H`` with its standard error per report, and average-case sharpness
  with its standard error beside its second-order prediction when every report has it;
- ``landscape_overlay``: the 1-D loss slices saved with the reports, overlaid;
- :func:`trajectory_figure`: Hessian trace, top eigenvalue, loss and accuracy against epoch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from flatscope.io.landscape_file import LandscapeResult
from flatscope.plotting.demo_figures import density_overlay_figure
from flatscope.plotting.report_figures import save_figure

__all__ = [
    "eigenvalue_comparison_figure",
    "landscape_overlay_figure",
    "render_comparison",
    "trace_comparison_figure",
    "trajectory_figure",
]

Metrics = Mapping[str, Mapping[str, Any]]


def _colour(index: int) -> str:
    return f"C{index % 10}"


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


_EIGEN_PANELS = (
    ("top_eigenvalues", "top eigenvalues"),
    ("bottom_eigenvalues", "bottom eigenvalues"),
)


def eigenvalue_comparison_figure(metrics_by_label: Metrics) -> Figure | None:
    """Top (and bottom) eigenvalues against rank, one series per report, residuals as errors."""
    panels = [
        (name, title)
        for name, title in _EIGEN_PANELS
        if any(name in metrics for metrics in metrics_by_label.values())
    ]
    if not panels:
        return None
    fig = Figure(figsize=(4.5 * len(panels) + 1, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    count = len(metrics_by_label)
    for ax, (name, title) in zip(axes, panels, strict=True):
        most = 1
        for index, (label, metrics) in enumerate(metrics_by_label.items()):
            entry = metrics.get(name)
            if not entry:
                continue
            most = max(most, len(entry["values"]))
            values = np.array([_float(v) for v in entry["values"]])
            errors = np.array([0.0 if r is None else float(r) for r in entry["residuals"]])
            ranks = np.arange(1, len(values) + 1) + 0.3 * (index - (count - 1) / 2) / count
            ax.errorbar(
                ranks, values, yerr=errors, fmt="o", color=_colour(index), capsize=3, label=label
            )
        ax.set_xticks(np.arange(1, most + 1))
        ax.set_xlim(0.5, most + 0.5)  # one rank keeps its width, not the axis's
        ax.set_xlabel("rank")
        ax.set_ylabel("eigenvalue")
        ax.set_title(f"{title} (± residual norm)", fontsize="medium")
        ax.legend(fontsize="small")
    return fig


def _bars(ax: Any, labels: Sequence[str], values: Sequence[float], errors: Sequence[float]):
    positions = np.arange(len(labels))
    colours = [_colour(i) for i in range(len(labels))]
    ax.bar(positions, values, yerr=errors, color=colours, capsize=5)
    ax.set_xticks(positions, labels, rotation=20, ha="right", fontsize="small")
    ax.set_xlabel("report")
    ax.axhline(0, color="black", lw=0.6)


def trace_comparison_figure(metrics_by_label: Metrics) -> Figure | None:
    """``tr H`` ± standard error per report, and average-case sharpness beside its
    second-order prediction when every report has sharpness; ``None`` without traces."""
    labels = list(metrics_by_label)
    traces = [metrics.get("hessian_trace") for metrics in metrics_by_label.values()]
    if not all(traces):
        return None
    sharpness = [
        (metrics.get("sharpness") or {}).get("average") for metrics in metrics_by_label.values()
    ]
    with_sharpness = all(sharpness)
    width = (3 + 0.6 * len(labels)) * (1 + with_sharpness)
    fig = Figure(figsize=(width, 4), layout="constrained")
    axes = fig.subplots(1, 1 + with_sharpness, squeeze=False)[0]
    _bars(
        axes[0],
        labels,
        [_float(t["value"]) for t in traces],
        [0.0 if t.get("stderr") is None else t["stderr"] for t in traces],
    )
    axes[0].set_ylabel("tr H")
    axes[0].set_title("Hessian trace (± standard error)", fontsize="medium")
    if with_sharpness:
        ax = axes[1]
        positions = np.arange(len(labels))
        for offset, key, error_key, fill, name in (
            (-0.12, "value", "stderr", "black", "Monte Carlo"),
            (0.12, "second_order", "second_order_stderr", "white", "(sigma^2/2) tr H"),
        ):
            ax.errorbar(
                positions + offset,
                [_float(s.get(key)) for s in sharpness],
                yerr=[0.0 if s.get(error_key) is None else s[error_key] for s in sharpness],
                fmt="o",
                color="black",
                mfc=fill,
                capsize=4,
                label=name,
            )
        ax.set_xticks(positions, labels, rotation=20, ha="right", fontsize="small")
        ax.set_xlabel("report")
        ax.set_ylabel("E[L(w + e)] - L(w)")
        sigmas = sorted({str(s.get("sigma")) for s in sharpness})
        ax.set_title(f"average-case sharpness, sigma {', '.join(sigmas)}", fontsize="medium")
        ax.legend(fontsize="small")
    return fig


def landscape_overlay_figure(
    slices_by_label: Mapping[str, Sequence[LandscapeResult]],
) -> Figure | None:
    """The 1-D loss slices of every report on one axis (titled by
    :func:`~flatscope.plotting.landscape.plot_slice_1d`); ``None`` when there are none."""
    from flatscope.plotting.landscape import plot_slice_1d

    labelled = []
    for label, slices in slices_by_label.items():
        for number, result in enumerate(slices, 1):
            name = label if len(slices) == 1 else f"{label} ({number})"
            labelled.append(
                dataclasses.replace(result, metadata={**result.metadata, "label": name})
            )
    if not labelled:
        return None
    return plot_slice_1d(labelled)


def render_comparison(
    metrics_by_label: Metrics,
    out: str | os.PathLike,
    slices_by_label: Mapping[str, Sequence[LandscapeResult]] | None = None,
) -> list[Path]:
    """Draw every comparison figure the numbers allow into ``out`` (PNG and PDF)."""
    densities = {
        label: [metrics["spectral_density"]]
        for label, metrics in metrics_by_label.items()
        if "spectral_density" in metrics
    }
    figures = {
        "density_overlay": density_overlay_figure(densities) if densities else None,
        "eigenvalue_comparison": eigenvalue_comparison_figure(metrics_by_label),
        "trace_comparison": trace_comparison_figure(metrics_by_label),
        "landscape_overlay": landscape_overlay_figure(slices_by_label or {}),
    }
    written: list[Path] = []
    for name, fig in figures.items():
        if fig is not None:
            written += save_figure(fig, Path(out) / name)
    return written


def trajectory_figure(points: Sequence[Any]) -> Figure:
    """Four panels against epoch: trace ± standard error, top eigenvalue ± residual, loss
    (analysed data and the epoch's training mean) and accuracy (train, val, test).

    ``points`` are :class:`flatscope.app.trajectory.TrajectoryPoint` objects (or anything with their
    attributes); missing numbers are left out of the lines.
    """
    epochs = np.array([p.epoch for p in points], dtype=float)

    def series(name: str) -> np.ndarray:
        return np.array([_float(getattr(p, name)) for p in points])

    def errors(name: str) -> np.ndarray:
        return np.nan_to_num(series(name))

    fig = Figure(figsize=(10, 6.5), layout="constrained")
    (trace_ax, eigen_ax), (loss_ax, accuracy_ax) = fig.subplots(2, 2, sharex=True)
    trace_ax.errorbar(epochs, series("trace"), yerr=errors("trace_stderr"), fmt="o-", capsize=3)
    trace_ax.set_ylabel("tr H (± s.e.)")
    eigen_ax.errorbar(
        epochs,
        series("top_eigenvalue"),
        yerr=errors("top_residual"),
        fmt="o-",
        capsize=3,
        color="tab:red",
    )
    eigen_ax.set_ylabel("top eigenvalue (± residual)")
    loss_ax.plot(epochs, series("loss"), "o-", label="analysed data")
    loss_ax.plot(epochs, series("train_loss"), "s--", label="training (epoch mean)")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(fontsize="small")
    for name, style in (("train_acc", "s--"), ("val_acc", "^:"), ("test_acc", "o-")):
        values = series(name)
        if np.isfinite(values).any():
            accuracy_ax.plot(epochs, values, style, label=name.replace("_", " "))
    accuracy_ax.set_ylabel("accuracy")
    if accuracy_ax.lines:
        accuracy_ax.legend(fontsize="small")
    for ax in (loss_ax, accuracy_ax):
        ax.set_xlabel("epoch")
    fig.suptitle("flatness over training")
    return fig
