"""Figures of saved loss landscapes: 1-D curves, 2-D contours, 3-D surfaces.

Every function reads :class:`~flatscope.landscape.surface.LandscapeResult` objects (for example
from :meth:`LandscapeResult.load_npz`) and never touches a model. Figures are built on
:class:`matplotlib.figure.Figure` directly, so no global pyplot state is created; save them with
``fig.savefig("slice.png")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from flatscope.landscape.surface import LandscapeResult

__all__ = ["plot_slice_1d", "plot_surface_2d", "plot_surface_3d"]


def _require_dims(result: LandscapeResult, dims: int, function: str) -> None:
    if not isinstance(result, LandscapeResult):
        raise TypeError(f"{function} expects a LandscapeResult, got {type(result).__name__}")
    if result.dims != dims:
        raise ValueError(
            f"{function} draws {dims}-D landscapes but the result is {result.dims}-D; use "
            + ("plot_slice_1d" if result.dims == 1 else "plot_surface_2d or plot_surface_3d")
        )


def _axis_label(results: Sequence[LandscapeResult], axis: int) -> str:
    """``alpha (random direction)``: the kind is named when all results share it."""
    kinds = {(r.metadata.get("directions") or [{}] * (axis + 1))[axis].get("kind") for r in results}
    name = "alpha" if axis == 0 else "beta"
    kind = kinds.pop() if len(kinds) == 1 else None
    return f"{name} ({kind} direction)" if kind else name


def _mark_endpoints(ax: Axes, result: LandscapeResult) -> None:
    """Mark and name the two checkpoints of an interpolation (at alpha = 0 and alpha = 1)."""
    first = (result.metadata.get("directions") or [{}])[0]
    names = first.get("endpoints")
    if first.get("kind") != "interpolation" or not names:
        return
    alphas = result.coords[0]
    for alpha, name in zip((0.0, 1.0), names, strict=True):
        if not alphas[0] <= alpha <= alphas[-1]:
            continue
        if result.dims == 1:
            x, y = alpha, float(np.interp(alpha, alphas, result.loss))
        else:
            x, y = alpha, 0.0
        ax.plot([x], [y], "o", color="black", markersize=5, zorder=3)
        box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.7, "linewidth": 0}
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8, bbox=box)


def plot_slice_1d(
    results: LandscapeResult | Sequence[LandscapeResult], ax: Axes | None = None
) -> Figure:
    """Loss along 1-D slices, several results overlaid on one axis (one line each).

    Lines are labelled with each result's ``metadata["label"]`` (or ``slice i``). With ``ax``
    the lines are drawn there; otherwise a new figure is made. Returns the figure.
    """
    if isinstance(results, LandscapeResult):
        results = [results]
    if len(results) == 0:
        raise ValueError("plot_slice_1d needs at least one LandscapeResult")
    for result in results:
        _require_dims(result, 1, "plot_slice_1d")
    if ax is None:
        ax = Figure(figsize=(5, 3.5), layout="constrained").add_subplot()
    for i, result in enumerate(results):
        label = result.metadata.get("label") or f"slice {i}"
        ax.plot(result.coords[0], result.loss, label=label)
        _mark_endpoints(ax, result)
    ax.set_xlabel(_axis_label(results, 0))
    ax.set_ylabel("loss")
    if len(results) > 1:
        ax.legend()
    return ax.figure


def plot_surface_2d(
    result: LandscapeResult, trajectory: np.ndarray | None = None, levels: int = 30
) -> Figure:
    """Contour lines (left) and filled contours (right) of a 2-D loss surface.

    ``trajectory`` (``(T, 2)`` coordinates in the plane; defaults to the one saved with the
    result, if any) is drawn on both panels, from its first point to its last.
    """
    _require_dims(result, 2, "plot_surface_2d")
    path = result.trajectory if trajectory is None else np.asarray(trajectory)
    alphas, betas = result.coords
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    lines_ax, filled_ax = fig.subplots(1, 2)
    # loss[i, j] is at (alphas[i], betas[j]): contour wants rows indexed by the y coordinate
    lines = lines_ax.contour(alphas, betas, result.loss.T, levels=levels, cmap="viridis")
    lines_ax.clabel(lines, lines.levels[::3], fontsize=7)
    filled = filled_ax.contourf(alphas, betas, result.loss.T, levels=levels, cmap="viridis")
    fig.colorbar(filled, ax=filled_ax, label="loss")
    for ax in (lines_ax, filled_ax):
        if path is not None:
            ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", markersize=3, linewidth=1)
        _mark_endpoints(ax, result)
        ax.set_xlabel(_axis_label([result], 0))
        ax.set_ylabel(_axis_label([result], 1))
    return fig


def plot_surface_3d(result: LandscapeResult) -> Figure:
    """The 2-D loss surface as a 3-D surface plot."""
    _require_dims(result, 2, "plot_surface_3d")
    alphas, betas = result.coords
    A, B = np.meshgrid(alphas, betas, indexing="ij")
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(A, B, result.loss, cmap="viridis", linewidth=0, antialiased=True)
    ax.set_xlabel(_axis_label([result], 0))
    ax.set_ylabel(_axis_label([result], 1))
    ax.set_zlabel("loss")
    return fig
