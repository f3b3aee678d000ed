"""The stored-density smoothing against the Gaussian mixture written out term by term."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flatscope.io.spectral_measure import (
    default_width,
    density_grid,
    measure_support,
    smoothed_density,
)

# two probes; the second stopped after two nodes (its third node is padding with zero weight)
NODES = [[-1.0, 0.5, 3.0], [0.5, 2.0, 2.0]]
WEIGHTS = [[0.25, 0.25, 0.5], [0.75, 0.25, 0.0]]


def mixture(t: float, width: float) -> float:
    total = 0.0
    for row_nodes, row_weights in zip(NODES, WEIGHTS, strict=True):
        for node, weight in zip(row_nodes, row_weights, strict=True):
            z = (t - node) / width
            total += weight * math.exp(-0.5 * z * z) / (width * math.sqrt(2 * math.pi))
    return total / len(NODES)


def test_the_smoothed_density_is_the_probe_average_of_gaussians():
    points = [-2.0, -1.0, 0.0, 0.5, 1.7, 3.0, 4.5]
    got = smoothed_density(NODES, WEIGHTS, points, 0.3)
    np.testing.assert_allclose(got, [mixture(t, 0.3) for t in points], rtol=1e-13)
    grid = np.linspace(-6, 8, 40001)
    assert np.trapezoid(smoothed_density(NODES, WEIGHTS, grid, 0.3), grid) == pytest.approx(
        1.0, abs=1e-9
    )
    with pytest.raises(ValueError, match="width must be positive"):
        smoothed_density(NODES, WEIGHTS, points, 0.0)


def test_support_width_and_grid_ignore_padding_and_resolve_every_node():
    assert measure_support(NODES, WEIGHTS) == (-1.0, 3.0)
    assert default_width(NODES, WEIGHTS) == pytest.approx(0.04)
    assert default_width([[2.0, 2.0]], [[1.0, 0.0]]) == pytest.approx(0.02)
    grid = density_grid(NODES, WEIGHTS, 0.1, num_points=50)
    assert (np.diff(grid) > 0).all()
    assert grid[0] == pytest.approx(-1.5) and grid[-1] == pytest.approx(3.5)
    for node in (-1.0, 0.5, 2.0, 3.0):
        near = grid[np.abs(grid - node) <= 0.4 + 1e-12]
        assert np.isclose(near, node).any() and len(near) >= 17
    with pytest.raises(ValueError, match="no node with positive weight"):
        measure_support([[1.0]], [[0.0]])
