"""Figures of ``flatscope demo``: several optimizers side by side, from stored numbers only.

- :func:`density_overlay_figure`: each optimizer's Hessian spectral density (SLQ, the probes of
  all its seeds pooled, so the curve is the seed average) on one log-scale plot;
- :func:`flatness_figure`: Hessian trace and top eigenvalue per optimizer, one dot per seed
  (with the trace estimator's standard error), the mean and the standard deviation over seeds;
- :func:`history_figure`: the Hessian trace tracked during training and the clean test
  accuracy per epoch, mean and spread over seeds.

The inputs are report entries (``spectral_density``, ``hessian_trace``, ``top_eigenvalues``)
and ``metrics.jsonl`` records, never models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from flatscope.linalg.density import RELATIVE_WIDTH, SpectralDensity
from flatscope.plotting.report_figures import DENSITY_FLOOR

__all__ = ["density_overlay_figure", "flatness_figure", "history_figure", "COLORS"]

COLORS = {"sgd": "tab:gray", "sam": "tab:blue", "fsgld": "tab:red", "sgld": "tab:orange"}
LABELS = {"sgd": "SGD", "sam": "SAM", "fsgld": "fSGLD", "sgld": "SGLD"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _color(name: str, index: int) -> str:
    return COLORS.get(name, f"C{index}")


def _pooled(entries: Sequence[Mapping[str, Any]]) -> SpectralDensity:
    """One density whose probes are the probes of every entry (the average of their densities)."""
    densities = [SpectralDensity.from_dict(entry) for entry in entries]
    width = max(d.nodes.shape[1] for d in densities)

    def padded(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]))

    return SpectralDensity(
        torch.cat([padded(d.nodes) for d in densities]),
        torch.cat([padded(d.weights) for d in densities]),
        sum(d.num_matvecs for d in densities),
        densities[0].method,
    )


def density_overlay_figure(densities: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """The spectral densities of several optimizers on one log-scale plot.

    Args:
        densities: optimizer name -> the ``spectral_density`` report entries of its seeds.
    """
    pooled = {name: _pooled(entries) for name, entries in densities.items() if entries}
    low = min(float(d.nodes[d.weights > 0].min()) for d in pooled.values())
    high = max(float(d.nodes[d.weights > 0].max()) for d in pooled.values())
    width = RELATIVE_WIDTH * (high - low if high > low else max(abs(high), 1.0))
    grid = torch.cat([d.grid(width=width) for d in pooled.values()]).unique()
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    curves = {name: density.evaluate(grid, width).numpy() for name, density in pooled.items()}
    floor = DENSITY_FLOOR * max(float(values.max()) for values in curves.values())
    for index, (name, values) in enumerate(curves.items()):
        color = _color(name, index)
        ax.semilogy(
            grid.numpy(), np.maximum(values, floor), color=color, lw=1.2, label=_label(name)
        )
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("eigenvalue of the training-loss Hessian")
    ax.set_ylabel("density (log scale)")
    ax.set_title("Hessian spectral density (SLQ), seeds pooled")
    ax.legend(fontsize="small")
    return fig


def flatness_figure(
    traces: Mapping[str, Sequence[Mapping[str, Any]]],
    top_eigenvalues: Mapping[str, Sequence[float]],
) -> Figure:
    """Hessian trace and top eigenvalue per optimizer: seeds as dots, mean +- sd over seeds.

    Args:
        traces: optimizer name -> ``hessian_trace`` report entries (``value``, ``stderr``).
        top_eigenvalues: optimizer name -> the largest eigenvalue of each seed.
    """
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax_trace, ax_top = fig.subplots(1, 2)
    names = list(traces)
    for index, name in enumerate(names):
        color = _color(name, index)
        values = np.array([entry["value"] for entry in traces[name]], dtype=float)
        errors = np.array([entry["stderr"] or 0.0 for entry in traces[name]], dtype=float)
        tops = np.array(top_eigenvalues[name], dtype=float)
        offsets = index + np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [index]
        ax_trace.errorbar(offsets, values, yerr=errors, fmt=".", color=color, alpha=0.6)
        ax_top.plot(offsets, tops, ".", color=color, alpha=0.6)
        for ax, data in ((ax_trace, values), (ax_top, tops)):
            spread = data.std(ddof=1) if len(data) > 1 else 0.0
            ax.errorbar(index + 0.3, data.mean(), yerr=spread, fmt="s", color=color, capsize=4)
    for ax, title in ((ax_trace, "Hessian trace (Hutch++)"), (ax_top, "top eigenvalue")):
        ax.set_xticks(range(len(names)), [_label(name) for name in names])
        ax.set_title(title, fontsize="medium")
        ax.set_ylim(bottom=0)
    fig.suptitle("dots: seeds (trace with its stderr); squares: mean ± sd over seeds")
    return fig


def _per_epoch(runs: Sequence[Sequence[Mapping[str, Any]]], key: str) -> tuple[np.ndarray, ...]:
    """Epochs where every run recorded ``key``, and the mean and sd over runs there."""
    tables = [{r["epoch"]: r[key] for r in run if r.get(key) is not None} for run in runs]
    epochs = sorted(set.intersection(*(set(table) for table in tables)))
    values = np.array([[table[e] for e in epochs] for table in tables], dtype=float)
    spread = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(epochs))
    return np.array(epochs), values.mean(axis=0), spread


def history_figure(histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> Figure:
    """Tracked Hessian trace and clean test accuracy over training, mean +- sd over seeds.

    Args:
        histories: optimizer name -> one list of ``metrics.jsonl`` records per seed.
    """
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax_trace, ax_acc = fig.subplots(1, 2)
    for index, (name, runs) in enumerate(histories.items()):
        color = _color(name, index)
        for ax, key, scale in ((ax_trace, "hessian_trace", 1.0), (ax_acc, "test_acc", 100.0)):
            epochs, mean, spread = _per_epoch(runs, key)
            if len(epochs) == 0:
                continue
            ax.plot(epochs, scale * mean, "o-", ms=3, color=color, label=_label(name))
            ax.fill_between(
                epochs, scale * (mean - spread), scale * (mean + spread), color=color, alpha=0.2
            )
    ax_trace.set_ylim(bottom=0)
    ax_trace.set_title("Hessian trace on a training subset", fontsize="medium")
    ax_acc.set_title("clean test accuracy (%)", fontsize="medium")
    for ax in (ax_trace, ax_acc):
        ax.set_xlabel("epoch")
    ax_acc.legend(fontsize="small")
    return fig
