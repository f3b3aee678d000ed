"""Landscape figures draw exactly the saved numbers (no model involved), say what they show,
mark interpolation end points and share one colour scale when asked to."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.contour import QuadContourSet
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from flatscope.io.landscape_file import LandscapeResult
from flatscope.plotting.landscape import (
    interpolation_end_points,
    plot_slice_1d,
    plot_surface_2d,
    plot_surface_3d,
    shared_levels,
)

RANDOM = {"kind": "random", "normalization": "filter"}
DATA = {"data_spec": "digits:split_seed=0", "split": "train", "num_samples": 512}


def _slice(label: str, curvature: float) -> LandscapeResult:
    alphas = np.linspace(-1, 1, 11)
    meta = {"label": label, "directions": [RANDOM], **DATA}
    return LandscapeResult((alphas,), curvature * alphas**2, None, meta)


def _interp(**line: str) -> LandscapeResult:
    alphas = np.linspace(-0.25, 1.25, 7)
    meta = {
        "label": "final",
        "directions": [{"kind": "interpolation", "distance": 4.0, **line}],
        "checkpoint": "runs/fsgld-seed0/final.pt",
        "directions_arg": "interp:runs/sgd-seed0/final.pt",
        **DATA,
    }
    return LandscapeResult((alphas,), 1 + (alphas - 0.5) ** 2, None, meta)


def _surface(
    trajectory: np.ndarray | None = None, scale: float = 1.0, tilt: float = 0.0
) -> LandscapeResult:
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-2, 2, 7)
    A, B = np.meshgrid(alphas, betas, indexing="ij")
    meta = {"label": "final", "directions": [{"kind": "pca"}, {"kind": "pca"}], **DATA}
    loss = scale * (A**2 + 3 * B**2) + tilt * (A - B)
    return LandscapeResult((alphas, betas), loss, None, meta, trajectory)


def _filled(fig) -> QuadContourSet:
    return next(c for c in fig.axes[0].collections if isinstance(c, QuadContourSet) and c.filled)


def test_slices_are_overlaid_with_their_labels_and_titled_by_direction_and_data():
    fig = plot_slice_1d([_slice("sgd", 1.0), _slice("fsgld", 0.5)])
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["sgd", "fsgld"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), _slice("", 0.5).loss)
    assert ax.get_xlabel() == "alpha (random direction)"
    assert ax.get_title() == (
        "loss along random (filter-normalised) direction\n"
        "data digits:split_seed=0 (train split, 512 samples)"
    )
    mixed = _slice("eigen", 2.0)
    mixed.metadata.update(directions=[{"kind": "eigen"}], data_spec="synthetic")
    title = plot_slice_1d([_slice("sgd", 1.0), mixed]).axes[0].get_title()
    assert "random (filter-normalised) and Hessian eigenvector directions" in title
    assert "digits:split_seed=0 (train split, 512 samples); synthetic (" in title
    assert plot_slice_1d([_slice("sgd", 1.0), mixed]).axes[0].get_xlabel() == "alpha"


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ({}, ("fsgld-seed0/final.pt", "sgd-seed0/final.pt")),
        ({"start": "fsgld", "end": "sgd"}, ("fsgld", "sgd")),
    ],
)
def test_an_interpolation_slice_marks_and_names_both_end_points(line, names):
    result = _interp(**line)
    assert interpolation_end_points(result) == names
    assert interpolation_end_points(_slice("sgd", 1.0)) is None
    ax = plot_slice_1d(result).axes[0]
    curve, *dots, start, end = ax.lines
    assert [(d.get_xdata()[0], d.get_ydata()[0]) for d in dots] == [
        (0.0, pytest.approx(np.interp(0.0, *result.coords, result.loss))),
        (1.0, pytest.approx(np.interp(1.0, *result.coords, result.loss))),
    ]
    assert (start.get_xdata()[0], end.get_xdata()[0]) == (0.0, 1.0)
    (top,) = ax.child_axes
    assert list(top.get_xticks()) == [0.0, 1.0]
    labels = [label.get_text() for label in top.get_xticklabels()]
    assert labels == [f"{names[0]} (α=0)", f"{names[1]} (α=1)"]
    assert "interpolation direction" in ax.get_title()


def test_surface_2d_is_one_panel_of_filled_contours_with_the_trajectory_and_origin():
    path = np.array([[0.8, 1.5], [0.3, 0.4], [0.0, 0.0]])
    fig = plot_surface_2d(_surface(path))
    ax, colorbar = fig.axes
    assert colorbar.get_label() == "<colorbar>" and colorbar.get_ylabel() == "loss"
    np.testing.assert_array_equal(ax.lines[-1].get_xydata(), path)
    np.testing.assert_array_equal(ax.lines[0].get_xydata(), [[0.0, 0.0]])
    filled = _filled(fig)
    loss = _surface().loss
    assert filled.levels[0] <= loss.min() and filled.levels[-1] >= loss.max()
    other = np.array([[0.1, 0.1], [0.0, 0.0]])
    np.testing.assert_array_equal(
        plot_surface_2d(_surface(), other).axes[0].lines[-1].get_xydata(), other
    )
    assert "pca directions" in ax.get_title().lower()


def test_surfaces_drawn_with_shared_levels_share_one_colour_scale_and_loss_axis():
    flat, sharp = _surface(scale=0.5), _surface(scale=2.0, tilt=1.0)
    levels = shared_levels([flat, sharp])
    assert levels[0] <= flat.loss.min() and levels[-1] >= sharp.loss.max()
    contours = [_filled(plot_surface_2d(r, levels=levels)) for r in (flat, sharp)]
    np.testing.assert_array_equal(contours[0].levels, contours[1].levels)
    assert contours[0].get_clim() == contours[1].get_clim() == (levels[0], levels[-1])
    surfaces = [plot_surface_3d(r, levels=levels).axes[0] for r in (flat, sharp)]
    assert surfaces[0].get_zlim() == surfaces[1].get_zlim() == (levels[0], levels[-1])
    norms = [next(iter(ax.collections)).norm for ax in surfaces]
    assert [(n.vmin, n.vmax) for n in norms] == [(levels[0], levels[-1])] * 2
    # on its own, each surface gets its own (different) scale
    alone = [_filled(plot_surface_2d(r)).get_clim() for r in (flat, sharp)]
    assert alone[0] != alone[1]


@pytest.mark.parametrize("corner", [(0, 0), (0, -1), (-1, 0), (-1, -1)])
def test_the_3d_view_puts_the_highest_corner_at_the_back(corner):
    result = _surface()
    result.loss[corner] = 100.0
    ax = plot_surface_3d(result).axes[0]
    azimuth = np.radians(ax.azim)
    toward_viewer = np.array([np.cos(azimuth), np.sin(azimuth)])
    sides = {
        (i, j): np.array([1.0 if i else -1.0, 1.0 if j else -1.0]) for i in (0, -1) for j in (0, -1)
    }
    distance = {c: -float(side @ toward_viewer) for c, side in sides.items()}
    assert max(distance, key=distance.get) == corner
    assert ax.zaxis.labelpad >= 10


def test_surface_3d_saves_without_pyplot_and_dimension_errors(tmp_path):
    fig = plot_surface_3d(_surface())
    assert any(isinstance(c, Poly3DCollection) for c in fig.axes[0].collections)
    for suffix in ("png", "pdf"):
        fig.savefig(tmp_path / f"surface.{suffix}")
        assert (tmp_path / f"surface.{suffix}").stat().st_size > 0
    with pytest.raises(ValueError, match="plot_slice_1d"):
        plot_surface_2d(_slice("a", 1.0))
    with pytest.raises(ValueError, match="plot_surface_2d"):
        plot_slice_1d(_surface())
