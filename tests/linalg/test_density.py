"""Spectral densities against exact spectra and traces."""

from __future__ import annotations

import json

import pytest
import torch

import flatscope.linalg as la
from flatscope.linalg._common import probes, seeded_generator
from flatscope.operators import DenseOperator
from tests.linalg._spectra import F64, network_like, planted


@pytest.fixture(scope="module")
def matrix() -> tuple[torch.Tensor, torch.Tensor]:
    return network_like(100)


@pytest.fixture(scope="module", params=["slq", "kpm"])
def density(request, matrix) -> la.SpectralDensity:
    return la.spectral_density(matrix[0], num_steps=30, num_probes=12, seed=0, method=request.param)


def test_weights_are_a_probability_measure_and_the_density_integrates_to_one(density):
    assert float(density.weights.min()) >= 0
    torch.testing.assert_close(density.weights.sum(1), torch.ones(12, dtype=F64))
    width = density.default_width()
    low, high = float(density.nodes.min()), float(density.nodes.max())
    grid = torch.linspace(low - 10 * width, high + 10 * width, 20001, dtype=F64)
    assert float(torch.trapezoid(density.evaluate(grid), grid)) == pytest.approx(1.0, abs=1e-9)


def test_grid_resolves_every_peak(density):
    grid = density.grid(num_points=200)
    top = float(density.nodes[density.weights > 0].max())
    near_top = torch.linspace(top - 1, top + 1, 4001, dtype=F64)
    finest = float(density.evaluate(near_top).max())
    on_grid = float(density.evaluate(grid[(grid - top).abs() <= 1]).max())
    assert on_grid == pytest.approx(finest, rel=1e-3)


def test_first_two_moments_match_exact_traces_within_their_error(density, matrix):
    A, eigenvalues = matrix
    d = A.shape[0]
    for order, exact in [(1, float(A.trace()) / d), (2, float((A @ A).trace()) / d)]:
        value, stderr = density.moment(order)
        assert abs(value - exact) <= 3 * stderr, order


def test_slq_moments_equal_hutchinson_with_normalized_probes(matrix):
    A, _ = matrix
    density = la.spectral_density(A, num_steps=5, num_probes=3, seed=2)
    Z = probes(seeded_generator(2), 100, 3, "rademacher", F64, A.device)
    V = Z / Z.norm(dim=0)
    for order in (1, 2, 3, 9):  # Gauss quadrature with 5 nodes is exact to degree 9
        exact = (V * (torch.linalg.matrix_power(A, order) @ V)).sum(0)
        per_probe = (density.weights * density.nodes**order).sum(1)
        torch.testing.assert_close(per_probe, exact, rtol=1e-9, atol=1e-9)


def test_slq_with_d_steps_recovers_the_spectrum():
    values = torch.tensor([-1.0, 0.0, 0.5, 2.0, 7.0], dtype=F64)
    density = la.spectral_density(planted(values), num_steps=5, num_probes=2, method="slq")
    for nodes in density.nodes:
        torch.testing.assert_close(nodes, values, rtol=0, atol=1e-12)


def test_slq_outliers_show_as_peaks_and_costs_steps_times_probes(matrix):
    A, _ = matrix
    op = DenseOperator(A)
    density = la.spectral_density(op, num_steps=40, num_probes=4)
    assert density.num_matvecs == op.num_matvecs == 160
    # The largest Ritz value of each chain converges to the top eigenvalue 40.
    torch.testing.assert_close(density.nodes.max(1).values, torch.full((4,), 40.0, dtype=F64))
    width = density.default_width()
    peak, valley = density.evaluate(torch.tensor([40.0, 33.0]), width)
    assert float(peak) > 1e3 * float(valley)


def test_kpm_moments_are_close_to_slq(matrix):
    A, _ = matrix
    slq = la.spectral_density(A, num_steps=40, num_probes=8, seed=1)
    kpm = la.spectral_density(A, num_steps=40, num_probes=8, seed=1, method="kpm")
    assert kpm.moment(1)[0] == pytest.approx(slq.moment(1)[0], abs=0.02 * slq.moment(2)[0] ** 0.5)


def test_same_seed_same_numbers_and_json_round_trip(matrix):
    A, _ = matrix
    a = la.spectral_density(A, num_steps=10, num_probes=2, seed=5)
    b = la.spectral_density(A, num_steps=10, num_probes=2, seed=5)
    assert torch.equal(a.nodes, b.nodes) and torch.equal(a.weights, b.weights)
    restored = la.SpectralDensity.from_dict(json.loads(json.dumps(a.to_dict())))
    torch.testing.assert_close(restored.nodes, a.nodes, rtol=0, atol=0)
    assert restored.method == "slq" and restored.num_matvecs == 20


def test_errors(matrix):
    A, _ = matrix
    with pytest.raises(ValueError, match="method must be one of"):
        la.spectral_density(A, method="lanczos")
    with pytest.raises(ValueError, match="num_probes must be at least 1"):
        la.spectral_density(A, num_probes=0)
    with pytest.raises(ValueError, match="width must be positive"):
        la.spectral_density(A, num_steps=3, num_probes=1).evaluate(torch.zeros(1), width=0.0)
