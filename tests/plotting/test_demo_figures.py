"""Demo and comparison figures: no mean ± sd square for a single seed, densities that break
instead of running along the floor, titles that say what was pooled, single ranks kept narrow."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from flatscope.io.spectral_measure import default_width, smoothed_density
from flatscope.plotting.comparison_figures import eigenvalue_comparison_figure
from flatscope.plotting.demo_figures import density_overlay_figure, flatness_figure
from flatscope.plotting.report_figures import DENSITY_FLOOR, density_figure
from tests.plotting import _stored


def squares(fig) -> list:
    return [line for ax in fig.axes for line in ax.get_lines() if line.get_marker() == "s"]


def test_one_seed_draws_its_dots_and_no_mean_sd_squares():
    traces = {
        name: [_stored.metrics(scale)["hessian_trace"]]
        for name, scale in [("sgd", 2), ("fsgld", 1)]
    }
    fig = flatness_figure(traces, {"sgd": [20.0], "fsgld": [10.0]})
    assert squares(fig) == []
    trace_ax, top_ax = fig.axes
    assert [line.get_ydata()[0] for line in trace_ax.get_lines()] == [40.0, 20.0]
    assert [line.get_ydata()[0] for line in top_ax.get_lines()] == [20.0, 10.0]
    assert "mean" not in fig.get_suptitle() and "one seed" in fig.get_suptitle()


def test_several_seeds_add_one_square_at_the_mean_with_the_sd_as_error_bar():
    entries = [{"value": v, "stderr": 0.5} for v in (10.0, 14.0, 18.0)]
    fig = flatness_figure(
        {"sgd": entries, "fsgld": entries[:1]}, {"sgd": [1.0, 2.0, 6.0], "fsgld": [1.0]}
    )
    trace_square, top_square = squares(fig)
    assert trace_square.get_ydata()[0] == pytest.approx(14.0)
    assert top_square.get_ydata()[0] == pytest.approx(3.0)
    (square_bar,) = [
        c
        for c in fig.axes[0].containers
        if isinstance(c, ErrorbarContainer) and c.lines[0].get_marker() == "s"
    ]
    (segment,) = square_bar.lines[2][0].get_segments()
    assert (segment[1][1] - segment[0][1]) / 2 == pytest.approx(4.0)  # sd over seeds, ddof 1


def assert_broken_across_gaps(line, floor: float) -> None:
    """No part of the line lies at the floor: every drawn point is at or above it, and the
    points below it are NaN (so no segment joins two of them along the bottom)."""
    y = np.asarray(line.get_ydata(), float)
    drawn = np.isfinite(y)
    assert drawn.any() and (~drawn).any()
    assert (y[drawn] >= floor).all()


def test_the_density_line_breaks_across_a_gap_instead_of_running_along_the_floor():
    entry = _stored.GAPPED
    ax = density_figure({"spectral_density": entry}).axes[0]
    (curve,) = ax.get_lines()
    x, y = curve.get_xdata(), curve.get_ydata()
    width = default_width(entry["nodes"], entry["weights"])
    exact = smoothed_density(entry["nodes"], entry["weights"], x, width)
    floor = DENSITY_FLOOR * exact.max()
    assert ax.get_ylim()[0] == pytest.approx(floor)
    assert_broken_across_gaps(curve, floor)
    np.testing.assert_array_equal(np.isnan(y), exact < floor)
    assert np.isnan(y[(x > 20) & (x < 80)]).all()  # the middle of the gap is not drawn


def test_the_overlay_smooths_every_curve_alike_and_breaks_them_across_gaps():
    densities = {"sgd": [_stored.GAPPED], "fsgld": [_stored.metrics()["spectral_density"]]}
    ax = density_overlay_figure(densities).axes[0]
    peak = max(np.nanmax(line.get_ydata()) for line in ax.get_lines())
    for line in ax.get_lines():
        assert_broken_across_gaps(line, DENSITY_FLOOR * peak)
    pooled = np.concatenate([_stored.GAPPED["nodes"], densities["fsgld"][0]["nodes"]])
    width = 0.01 * (pooled.max() - pooled.min())
    assert f"σ = {width:.3g}" in ax.get_title()


@pytest.mark.parametrize(("seeds", "pooled"), [(1, None), (3, "3 seeds pooled")])
def test_the_overlay_title_says_seeds_pooled_only_when_it_pools_seeds(seeds, pooled):
    densities = {name: [_stored.GAPPED] * seeds for name in ("sgd", "fsgld")}
    title = density_overlay_figure(densities).axes[0].get_title()
    assert ("pooled" in title) == (pooled is not None)
    assert pooled is None or pooled in title


def test_one_eigenvalue_per_report_stays_near_its_rank():
    fig = eigenvalue_comparison_figure(
        {
            name: _stored.metrics(scale, eigenvalues=1)
            for name, scale in [("a", 1), ("b", 2), ("c", 3)]
        }
    )
    top_ax = fig.axes[0]
    assert top_ax.get_xlim() == (0.5, 1.5)
    ranks = [line.get_xdata()[0] for line in top_ax.get_lines() if line.get_marker() == "o"]
    assert len(ranks) == 3 and max(ranks) - min(ranks) < 0.25
