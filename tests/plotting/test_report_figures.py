"""Report figures: drawn from the stored numbers only, written atomically as PNG and PDF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.container import ErrorbarContainer

from flatscope.linalg import eigenvalues, spectral_density, trace
from flatscope.linalg.density import SpectralDensity
from flatscope.operators import DenseOperator
from flatscope.plotting.report_figures import (
    DENSITY_FLOOR,
    density_figure,
    eigenvalue_figure,
    trace_figure,
)

SPECTRUM = torch.tensor([-1.0, 0.0, 0.0, 0.1, 0.2, 0.3, 5.0, 9.0], dtype=torch.float64)


def known_spectrum_metrics() -> dict:
    """Report metrics of a diagonal matrix with a known spectrum and two parameter blocks."""
    op = DenseOperator(
        torch.diag(SPECTRUM), blocks={"a.weight": slice(0, 5), "a.bias": slice(5, 8)}
    )
    return {
        "loss": 0.5,
        "hessian_trace": trace(op, "hutchinson", 12, seed=0, probe="gaussian").to_dict(),
        "top_eigenvalues": eigenvalues(op, 2, "largest", seed=0).to_dict(),
        "bottom_eigenvalues": eigenvalues(op, 1, "smallest", seed=0).to_dict(),
        "spectral_density": spectral_density(op, 8, 2, seed=0).to_dict(),
    }


@pytest.fixture(scope="module")
def metrics() -> dict:
    return known_spectrum_metrics()


def error_bars(ax) -> ErrorbarContainer:
    return next(c for c in ax.containers if isinstance(c, ErrorbarContainer))


def test_the_density_is_drawn_on_a_log_scale_with_the_extremes_marked(metrics):
    ax = density_figure(metrics).axes[0]
    assert ax.get_yscale() == "log"
    curve, *markers = ax.get_lines()
    density = SpectralDensity.from_dict(metrics["spectral_density"])
    grid = density.grid()
    expected = density.evaluate(grid).numpy()
    floor = DENSITY_FLOOR * expected.max()
    np.testing.assert_allclose(curve.get_xdata(), grid.numpy())
    np.testing.assert_allclose(curve.get_ydata(), np.where(expected >= floor, expected, np.nan))
    assert ax.get_ylim()[0] == pytest.approx(floor)
    assert f"σ = {density.default_width():.3g}" in ax.get_title()
    marked = sorted(line.get_xdata()[0] for line in markers)
    wanted = metrics["bottom_eigenvalues"]["values"] + metrics["top_eigenvalues"]["values"]
    assert marked == pytest.approx(sorted(wanted))


def test_eigenvalues_carry_their_residuals_as_error_bars(metrics):
    figure = eigenvalue_figure(metrics)
    for ax, name in zip(figure.axes, ["top_eigenvalues", "bottom_eigenvalues"], strict=True):
        container = error_bars(ax)
        values = container.lines[0].get_ydata()
        segments = container.lines[2][0].get_segments()
        np.testing.assert_allclose(values, metrics[name]["values"])
        half_widths = [(top[1] - bottom[1]) / 2 for bottom, top in segments]
        np.testing.assert_allclose(half_widths, metrics[name]["residuals"], atol=1e-12)


def test_per_block_traces_are_bars_with_standard_errors(metrics):
    ax = trace_figure(metrics).axes[0]
    per_block = metrics["hessian_trace"]["per_block"]
    assert [label.get_text() for label in ax.get_yticklabels()] == list(per_block)
    widths = [patch.get_width() for patch in ax.patches]
    np.testing.assert_allclose(widths, [value for value, _ in per_block.values()])
    segments = error_bars(ax).lines[2][0].get_segments()
    np.testing.assert_allclose(
        [(right[0] - left[0]) / 2 for left, right in segments],
        [stderr for _, stderr in per_block.values()],
    )
