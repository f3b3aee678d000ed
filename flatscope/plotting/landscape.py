"""Figures of saved loss landscapes: 1-D curves, 2-D contours, 3-D surfaces.

Every function reads :class:`~flatscope.io.landscape_file.LandscapeResult` objects (for example
from :meth:`LandscapeResult.load_npz`) and never touches a model. Figures are built on
:class:`matplotlib.figure.Figure` directly, so no global pyplot state is created; save them with
``fig.savefig("slice.png")``.

Titles say what was drawn, from the result's metadata: the kind of direction (and its
normalisation, e.g. filter-normalised random directions, Li et al., NeurIPS 2018) and the data
(spec, split, number of samples). On an interpolation line ``w0 + alpha (w1 - w0)`` the end
points ``alpha = 0`` and ``alpha = 1`` are marked and named: by the direction entry's optional
``"start"`` and ``"end"`` keys when present, else by the result's ``"checkpoint"`` and the
target of its ``"directions_arg"`` (``interp:PATH``).

Surfaces of one comparison are drawn on one colour scale: pass the same ``levels`` (from
:func:`shared_levels`) to each :func:`plot_surface_2d` and :func:`plot_surface_3d` call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from flatscope.io.landscape_file import LandscapeResult

__all__ = [
    "interpolation_end_points",
    "plot_slice_1d",
    "plot_surface_2d",
    "plot_surface_3d",
    "shared_levels",
]

Levels = int | Sequence[float]

_KIND_NAMES = {"eigen": "Hessian eigenvector", "pca": "PCA", "interpolation": "interpolation"}


def _require_dims(result: LandscapeResult, dims: int, function: str) -> None:
    if not isinstance(result, LandscapeResult):
        raise TypeError(f"{function} expects a LandscapeResult, got {type(result).__name__}")
    if result.dims != dims:
        raise ValueError(
            f"{function} draws {dims}-D landscapes but the result is {result.dims}-D; use "
            + ("plot_slice_1d" if result.dims == 1 else "plot_surface_2d or plot_surface_3d")
        )


def _directions(result: LandscapeResult) -> list[dict[str, Any]]:
    return list(result.metadata.get("directions") or [])


def _axis_label(results: Sequence[LandscapeResult], axis: int) -> str:
    """``alpha (random direction)``: the kind is named when all results share it."""
    kinds = {(_directions(r) or [{}] * (axis + 1))[axis].get("kind") for r in results}
    name = "alpha" if axis == 0 else "beta"
    kind = kinds.pop() if len(kinds) == 1 else None
    return f"{name} ({kind} direction)" if kind else name


def _direction_text(results: Sequence[LandscapeResult]) -> str:
    """``random (filter-normalised) directions``: each kind once, with its normalisation."""
    phrases = []
    for entry in (entry for result in results for entry in _directions(result)):
        kind = entry.get("kind", "custom")
        phrase = _KIND_NAMES.get(kind, kind)
        if entry.get("normalization"):
            phrase += f" ({entry['normalization']}-normalised)"
        if phrase not in phrases:
            phrases.append(phrase)
    plural = "s" if len(phrases) > 1 or any(r.dims > 1 for r in results) else ""
    return f"{' and '.join(phrases) or 'given'} direction{plural}"


def _data_text(results: Sequence[LandscapeResult]) -> str:
    """``data digits:split_seed=0 (train split, 512 samples)``, or each one when they differ."""
    described = []
    for result in results:
        meta = result.metadata
        details = []
        if meta.get("split"):
            details.append(f"{meta['split']} split")
        if meta.get("num_samples") is not None:
            details.append(f"{meta['num_samples']} samples")
        text = str(meta.get("data_spec") or "not recorded")
        text += f" ({', '.join(details)})" if details else ""
        if text not in described:
            described.append(text)
    return "data " + "; ".join(described)


def _short_name(name: str) -> str:
    """A checkpoint path as its last folder and file (``sgd-seed0/final.pt``)."""
    return "/".join(PurePath(name).parts[-2:])


def interpolation_end_points(result: LandscapeResult) -> tuple[str, str] | None:
    """The names of the weights at ``alpha = 0`` and ``alpha = 1`` when the first axis is an
    interpolation line (module docs), else ``None``."""
    directions = _directions(result)
    if not directions or directions[0].get("kind") != "interpolation":
        return None
    line, meta = directions[0], result.metadata
    start = line.get("start") or meta.get("checkpoint") or meta.get("label") or "start"
    target = str(meta.get("directions_arg") or "").partition("interp:")[2]
    end = line.get("end") or target or "end"
    return _short_name(str(start)), _short_name(str(end))


def _mark_end_points(ax: Axes, result: LandscapeResult, color: str, named: dict) -> None:
    """Dots on the curve at ``alpha = 0`` and ``1`` of an interpolation; their names are added
    to ``named`` (alpha -> names) for :func:`_name_end_points`."""
    names = interpolation_end_points(result)
    if names is None:
        return
    alphas, loss = result.coords[0], result.loss
    for alpha, name in zip((0.0, 1.0), names, strict=True):
        if alphas.min() <= alpha <= alphas.max():
            ax.plot([alpha], [np.interp(alpha, alphas, loss)], "o", color=color, ms=5)
            if name not in named.setdefault(alpha, []):
                named[alpha].append(name)


def _name_end_points(ax: Axes, named: dict) -> None:
    """Dotted lines at the end points, named on a secondary axis along the top edge."""
    if not named:
        return
    for alpha in named:
        ax.axvline(alpha, color="0.5", ls=":", lw=0.9)
    top = ax.secondary_xaxis("top")
    top.set_xticks(
        list(named), [f"{', '.join(names)} (α={alpha:g})" for alpha, names in named.items()]
    )
    top.tick_params(labelsize="small", length=0)


def plot_slice_1d(
    results: LandscapeResult | Sequence[LandscapeResult], ax: Axes | None = None
) -> Figure:
    """Loss along 1-D slices, several results overlaid on one axis (one line each).

    Lines are labelled with each result's ``metadata["label"]`` (or ``slice i``); the title
    names the directions and the data; interpolation end points are marked (module docs). With
    ``ax`` the lines are drawn there; otherwise a new figure is made. Returns the figure.
    """
    if isinstance(results, LandscapeResult):
        results = [results]
    if len(results) == 0:
        raise ValueError("plot_slice_1d needs at least one LandscapeResult")
    for result in results:
        _require_dims(result, 1, "plot_slice_1d")
    if ax is None:
        ax = Figure(figsize=(5.5, 4), layout="constrained").add_subplot()
    named: dict = {}
    for i, result in enumerate(results):
        label = result.metadata.get("label") or f"slice {i}"
        (line,) = ax.plot(result.coords[0], result.loss, label=label)
        _mark_end_points(ax, result, line.get_color(), named)
    _name_end_points(ax, named)
    ax.set_xlabel(_axis_label(results, 0))
    ax.set_ylabel("loss")
    ax.set_title(f"loss along {_direction_text(results)}\n{_data_text(results)}", fontsize="medium")
    if len(results) > 1:
        ax.legend(fontsize="small")
    return ax.figure


def shared_levels(results: Sequence[LandscapeResult], count: int = 30) -> np.ndarray:
    """About ``count`` evenly spaced round loss values covering every result's loss: one
    colour scale for several surfaces (pass it as ``levels`` to each)."""
    if len(results) == 0:
        raise ValueError("shared_levels needs at least one LandscapeResult")
    low = min(float(np.nanmin(r.loss)) for r in results)
    high = max(float(np.nanmax(r.loss)) for r in results)
    if not high > low:
        high = low + max(abs(low), 1.0) * 1e-6
    return MaxNLocator(count).tick_values(low, high)


def _surface_title(result: LandscapeResult, what: str) -> str:
    label = result.metadata.get("label")
    head = f"{label}: {what}" if label else what
    return f"{head} over {_direction_text([result])}\n{_data_text([result])}"


def _extend(loss: np.ndarray, levels: np.ndarray) -> str:
    """Which ends of a colour bar with ``levels`` the loss runs past."""
    below, above = np.nanmin(loss) < levels[0], np.nanmax(loss) > levels[-1]
    return {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
        (bool(below), bool(above)), "both"
    )


def plot_surface_2d(
    result: LandscapeResult, trajectory: np.ndarray | None = None, levels: Levels = 30
) -> Figure:
    """Filled contours of a 2-D loss surface with labelled contour lines and a colour bar.

    ``levels``: the number of contour levels for this surface alone, or the loss values of the
    levels (for example :func:`shared_levels` of several surfaces, so that their figures share
    one colour scale). ``trajectory`` (``(T, 2)`` coordinates in the plane; defaults to the one
    saved with the result, if any) is drawn from its first point to its last. The checkpoint at
    the origin is marked, and the end points of an interpolation axis named.
    """
    _require_dims(result, 2, "plot_surface_2d")
    path = result.trajectory if trajectory is None else np.asarray(trajectory)
    alphas, betas = result.coords
    values = shared_levels([result], levels) if isinstance(levels, int) else np.asarray(levels)
    fig = Figure(figsize=(6.2, 4.8), layout="constrained")
    ax = fig.add_subplot()
    # loss[i, j] is at (alphas[i], betas[j]): contour wants rows indexed by the y coordinate
    surface = result.loss.T
    filled = ax.contourf(
        alphas, betas, surface, levels=values, cmap="viridis", extend=_extend(surface, values)
    )
    lines = ax.contour(alphas, betas, surface, levels=values, colors="white", linewidths=0.4)
    ax.clabel(lines, lines.levels[::3], fontsize=7)
    fig.colorbar(filled, ax=ax, label="loss")
    ax.plot([0], [0], "+", color="black", ms=10, mew=1.5)
    names = interpolation_end_points(result)
    if names is not None:
        for alpha, name in zip((0.0, 1.0), names, strict=True):
            ax.plot([alpha], [0], "o", color="black", ms=4)
            ax.annotate(name, (alpha, 0), xytext=(4, 4), textcoords="offset points", fontsize=7)
    if path is not None:
        ax.plot(path[:, 0], path[:, 1], "o-", color="tab:red", markersize=3, linewidth=1)
    ax.set_xlabel(_axis_label([result], 0))
    ax.set_ylabel(_axis_label([result], 1))
    ax.set_title(_surface_title(result, "loss contours"), fontsize="medium")
    return fig


def _viewing_azimuth(result: LandscapeResult) -> float:
    """The azimuth (degrees) that puts the grid's highest corner at the back of a 3-D view,
    15 degrees off the diagonal as matplotlib's default view, so the basin faces the viewer."""
    end = {-1: 0, 1: -1}  # the side of an axis -> the index of its grid line
    heights = {(sx, sy): result.loss[end[sx], end[sy]] for sx in end for sy in end}
    sx, sy = max(heights, key=lambda corner: np.nan_to_num(heights[corner], nan=-np.inf))
    return math.degrees(math.atan2(-sy, -sx)) - 15.0


def plot_surface_3d(result: LandscapeResult, levels: Levels = 30) -> Figure:
    """The 2-D loss surface as a 3-D surface plot, viewed with its highest corner at the back.

    ``levels``: as for :func:`plot_surface_2d`; its lowest and highest value set the colour
    scale and the loss axis, so surfaces drawn with the same levels compare.
    """
    _require_dims(result, 2, "plot_surface_3d")
    alphas, betas = result.coords
    values = shared_levels([result], levels) if isinstance(levels, int) else levels
    low, high = float(values[0]), float(values[-1])
    A, B = np.meshgrid(alphas, betas, indexing="ij")
    fig = Figure(figsize=(6.4, 5.4))
    ax = fig.add_axes((0.0, 0.0, 0.95, 0.95), projection="3d")
    ax.plot_surface(
        A, B, result.loss, cmap="viridis", norm=Normalize(low, high), linewidth=0, antialiased=True
    )
    ax.set_zlim(low, high)
    ax.view_init(elev=30, azim=_viewing_azimuth(result))
    ax.set_box_aspect(None, zoom=0.92)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel(_axis_label([result], 0), labelpad=8)
    ax.set_ylabel(_axis_label([result], 1), labelpad=8)
    ax.set_zlabel("loss", labelpad=12)
    fig.suptitle(_surface_title(result, "loss surface"), fontsize="medium", y=0.97)
    return fig
