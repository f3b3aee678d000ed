"""Figures of ``flatscope demo``: several optimizers side by side, from stored numbers only.

- :func:`density_overlay_figure`: each optimizer's Hessian spectral density (SLQ, the probes of
  all its seeds pooled, so the curve is the seed average) on one log-scale plot, smoothed by one
  common Gaussian width that the title states;
- :func:`flatness_figure`: Hessian trace and top eigenvalue per optimizer, one dot per seed
  (with the trace estimator's standard error), and with several seeds their mean and standard
  deviation;
- :func:`history_figure`: the Hessian trace tracked during training and the clean test
  accuracy per epoch, with several seeds their mean and spread.

The inputs are report entries (``spectral_density``, ``hessian_trace``, ``top_eigenvalues``)
and ``metrics.jsonl`` records, never models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from flatscope.io.spectral_measure import default_width, density_grid, smoothed_density
from flatscope.plotting._density import DENSITY_FLOOR, plot_log_density, smoothing_note

__all__ = ["density_overlay_figure", "flatness_figure", "history_figure", "COLORS"]

COLORS = {"sgd": "tab:gray", "sam": "tab:blue", "fsgld": "tab:red", "sgld": "tab:orange"}
LABELS = {"sgd": "SGD", "sam": "SAM", "fsgld": "fSGLD", "sgld": "SGLD"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _color(name: str, index: int) -> str:
    return COLORS.get(name, f"C{index}")


def _pooled(entries: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights whose probes are the probes of every entry (so the smoothed density is
    the average of theirs); shorter rows are padded with zero weights."""
    measures = [
        (np.asarray(entry["nodes"], float), np.asarray(entry["weights"], float))
        for entry in entries
    ]
    width = max(nodes.shape[1] for nodes, _ in measures)

    def padded(array: np.ndarray) -> np.ndarray:
        return np.pad(array, ((0, 0), (0, width - array.shape[1])))

    return (
        np.concatenate([padded(nodes) for nodes, _ in measures]),
        np.concatenate([padded(weights) for _, weights in measures]),
    )


def density_overlay_figure(densities: Mapping[str, Sequence[Mapping[str, Any]]]) -> Figure:
    """The spectral densities of several optimizers (or reports) on one log-scale plot.

    All curves are smoothed with one Gaussian width, the default width of the pooled nodes of
    every curve, so their peaks compare. The title says "seeds pooled" only where some curve
    pools several entries.

    Args:
        densities: optimizer name -> the ``spectral_density`` report entries of its seeds.
    """
    pooled = {name: _pooled(entries) for name, entries in densities.items() if entries}
    everything = _pooled([{"nodes": n, "weights": w} for n, w in pooled.values()])
    width = default_width(*everything)
    grid = np.unique(np.concatenate([density_grid(n, w, width) for n, w in pooled.values()]))
    curves = {name: smoothed_density(n, w, grid, width) for name, (n, w) in pooled.items()}
    floor = DENSITY_FLOOR * max(float(values.max()) for values in curves.values())
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    for index, (name, values) in enumerate(curves.items()):
        plot_log_density(
            ax, grid, values, floor, color=_color(name, index), lw=1.2, label=_label(name)
        )
    ax.set_xlabel("eigenvalue of the training-loss Hessian")
    ax.set_ylabel("density (log scale)")
    methods = sorted({e["method"].upper() for entries in densities.values() for e in entries})
    seeds = {len(entries) for entries in densities.values() if entries}
    pooling = ""
    if max(seeds) > 1:
        count = f"{seeds.pop()} " if len(seeds) == 1 else ""
        pooling = f", {count}seeds pooled"
    ax.set_title(
        f"Hessian spectral density ({', '.join(methods)}{pooling})\n{smoothing_note(width)}",
        fontsize="medium",
    )
    ax.legend(fontsize="small")
    return fig


def flatness_figure(
    traces: Mapping[str, Sequence[Mapping[str, Any]]],
    top_eigenvalues: Mapping[str, Sequence[float]],
) -> Figure:
    """Hessian trace and top eigenvalue per optimizer: seeds as dots, and beside the dots of an
    optimizer with several seeds a square with their mean +- sd (none for a single seed, where
    it would repeat the dot).

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
        if len(values) > 1:
            for ax, data in ((ax_trace, values), (ax_top, tops)):
                ax.errorbar(
                    index + 0.3,
                    data.mean(),
                    yerr=data.std(ddof=1),
                    fmt="s",
                    color=color,
                    capsize=4,
                )
    panels = (
        (ax_trace, "Hessian trace (Hutch++)", "tr H"),
        (ax_top, "top eigenvalue (Lanczos)", "largest eigenvalue of H"),
    )
    for ax, title, ylabel in panels:
        ax.set_xticks(range(len(names)), [_label(name) for name in names])
        ax.set_xlabel("optimizer")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize="medium")
        ax.set_ylim(bottom=0)
    seeds = max(len(entries) for entries in traces.values())
    if seeds > 1:
        fig.suptitle("dots: seeds (trace ± its standard error); squares: mean ± sd over seeds")
    else:
        fig.suptitle("one seed per optimizer (trace ± its standard error)")
    return fig


def _per_epoch(runs: Sequence[Sequence[Mapping[str, Any]]], key: str) -> tuple[np.ndarray, ...]:
    """Epochs where every run recorded ``key``, and the mean and sd over runs there."""
    tables = [{r["epoch"]: r[key] for r in run if r.get(key) is not None} for run in runs]
    epochs = sorted(set.intersection(*(set(table) for table in tables)))
    values = np.array([[table[e] for e in epochs] for table in tables], dtype=float)
    spread = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(epochs))
    return np.array(epochs), values.mean(axis=0), spread


def history_figure(histories: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]]) -> Figure:
    """Tracked Hessian trace and clean test accuracy over training: the mean over seeds, with a
    band of +- one sd when there are several seeds.

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
            if len(runs) > 1:
                ax.fill_between(
                    epochs, scale * (mean - spread), scale * (mean + spread), color=color, alpha=0.2
                )
    ax_trace.set_ylim(bottom=0)
    ax_trace.set_title("Hessian trace on a training subset", fontsize="medium")
    ax_trace.set_ylabel("tr H")
    ax_acc.set_title("clean test accuracy", fontsize="medium")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_trace, ax_acc):
        ax.set_xlabel("epoch")
    seeds = max((len(runs) for runs in histories.values()), default=1)
    fig.suptitle("mean over seeds, band: ± sd" if seeds > 1 else "one seed per optimizer")
    ax_acc.legend(fontsize="small")
    return fig
