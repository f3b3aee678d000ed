"""Landscape figures draw exactly the saved numbers (no model involved)."""

from __future__ import annotations

import numpy as np
import pytest
from mpl_toolkits.mplot3d.art3d import Poly3DCollection

from flatscope.landscape.surface import LandscapeResult
from flatscope.plotting.landscape import plot_slice_1d, plot_surface_2d, plot_surface_3d


def _slice(label: str, curvature: float) -> LandscapeResult:
    alphas = np.linspace(-1, 1, 11)
    meta = {"label": label, "directions": [{"kind": "random"}]}
    return LandscapeResult((alphas,), curvature * alphas**2, None, meta)


def _surface(trajectory: np.ndarray | None = None) -> LandscapeResult:
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-2, 2, 7)
    A, B = np.meshgrid(alphas, betas, indexing="ij")
    meta = {"directions": [{"kind": "pca"}, {"kind": "pca"}]}
    return LandscapeResult((alphas, betas), A**2 + 3 * B**2, None, meta, trajectory)


def test_slices_are_overlaid_with_their_labels():
    fig = plot_slice_1d([_slice("sgd", 1.0), _slice("fsgld", 0.5)])
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.lines] == ["sgd", "fsgld"]
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), _slice("", 0.5).loss)
    assert ax.get_xlabel() == "alpha (random direction)"
    mixed = _slice("eigen", 2.0)
    mixed.metadata["directions"] = [{"kind": "eigen"}]
    assert plot_slice_1d([_slice("sgd", 1.0), mixed]).axes[0].get_xlabel() == "alpha"


def test_surface_2d_draws_contours_and_the_saved_trajectory():
    path = np.array([[0.8, 1.5], [0.3, 0.4], [0.0, 0.0]])
    fig = plot_surface_2d(_surface(path))
    lines_ax, filled_ax = fig.axes[:2]
    for ax in (lines_ax, filled_ax):
        np.testing.assert_array_equal(ax.lines[-1].get_xydata(), path)
    assert len(fig.axes) == 3  # two panels and the colorbar
    other = np.array([[0.1, 0.1], [0.0, 0.0]])
    np.testing.assert_array_equal(
        plot_surface_2d(_surface(), other).axes[0].lines[-1].get_xydata(), other
    )


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
