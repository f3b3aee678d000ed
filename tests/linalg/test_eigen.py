"""Extreme eigenpairs against torch.linalg.eigvalsh on matrices with known spectra."""

from __future__ import annotations

import json

import pytest
import torch

import flatscope.linalg as la
from flatscope.operators import DenseOperator
from tests.linalg._spectra import F64, network_like, planted


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return network_like(120)[0]


def _check_pairs(A: torch.Tensor, result: la.EigenResult, expected: torch.Tensor, tol: float):
    scale = float(torch.linalg.matrix_norm(A, 2))
    torch.testing.assert_close(result.values, expected, rtol=1e-8, atol=1e-8 * scale)
    V = result.vectors
    torch.testing.assert_close(V.mT @ V, torch.eye(V.shape[1], dtype=F64), rtol=0, atol=1e-8)
    true_residuals = (A @ V - V * result.values).norm(dim=0)
    torch.testing.assert_close(result.residuals, true_residuals, rtol=1e-6, atol=1e-12)
    assert float(result.residuals.max()) <= tol * scale
    assert result.converged


@pytest.mark.parametrize("which", ["largest", "smallest"])
@pytest.mark.parametrize("block_size", [1, 3])
def test_lanczos_matches_eigvalsh(matrix, which, block_size):
    exact = torch.linalg.eigvalsh(matrix)
    expected = exact.flip(0)[:5] if which == "largest" else exact[:5]
    op = DenseOperator(matrix)
    result = la.eigenvalues(op, k=5, which=which, tol=1e-6, block_size=block_size)
    _check_pairs(matrix, result, expected, 1e-6)
    assert result.num_matvecs == op.num_matvecs


def test_smallest_finds_the_planted_negative_eigenvalue(matrix):
    result = la.eigenvalues(matrix, k=1, which="smallest")
    assert result.values.item() == pytest.approx(-6.0, rel=1e-10)


def test_scipy_path_agrees(matrix):
    lanczos = la.eigenvalues(matrix, k=4, which="largest")
    scipy = la.eigenvalues(matrix, k=4, which="largest", method="scipy")
    torch.testing.assert_close(scipy.values, lanczos.values, rtol=1e-9, atol=0)
    _check_pairs(matrix, scipy, lanczos.values, 1e-6)


def test_power_iteration_finds_the_largest_magnitude_not_the_largest_value():
    values = torch.cat([torch.tensor([-60.0, 50.0, 20.0]), torch.linspace(-1, 1, 37)])
    A = planted(values, seed=1)
    power = la.power_iteration(A, k=2, tol=1e-6, max_iter=500)
    lanczos = la.eigenvalues(A, k=1, which="largest")
    assert power.values[0].item() == pytest.approx(-60.0, rel=1e-5)
    assert power.values[1].item() == pytest.approx(50.0, rel=1e-5)
    assert lanczos.values.item() == pytest.approx(50.0, rel=1e-12)
    true_residuals = (A @ power.vectors - power.vectors * power.values).norm(dim=0)
    torch.testing.assert_close(power.residuals, true_residuals, rtol=1e-8, atol=1e-12)


def test_power_iteration_stops_by_pyhessian_rule_and_lanczos_is_cheaper(matrix):
    power = la.power_iteration(matrix, k=3)  # tol 1e-3: |change| < tol * |previous|
    exact = torch.linalg.eigvalsh(matrix)
    assert power.converged
    # For a unit vector some eigenvalue lies within the residual of its Rayleigh quotient.
    distance = (power.values[:, None] - exact).abs().min(1).values
    assert bool((distance <= power.residuals).all())
    lanczos = la.eigenvalues(matrix, k=3)
    top = exact.flip(0)[:3]
    assert lanczos.num_matvecs < power.num_matvecs
    assert float((lanczos.values - top).abs().max()) < float((power.values - top).abs().max())


def test_budget_exhaustion_reports_not_converged(matrix):
    result = la.eigenvalues(matrix, k=5, which="smallest", max_matvecs=25)
    assert not result.converged and result.num_matvecs <= 25


def test_full_space_and_k_equal_d():
    values = torch.linspace(-3, 3, 6, dtype=F64)
    result = la.eigenvalues(planted(values), k=6, which="smallest")
    torch.testing.assert_close(result.values, values, rtol=0, atol=1e-12)
    assert result.converged and result.num_matvecs == 6


def test_same_seed_same_numbers(matrix):
    a = la.eigenvalues(matrix, k=2, seed=3)
    b = la.eigenvalues(matrix, k=2, seed=3)
    assert torch.equal(a.values, b.values) and a.num_matvecs == b.num_matvecs


@pytest.mark.parametrize("block_size", [1, 2])
def test_result_keeps_the_search_space_and_its_products(matrix, block_size):
    op = DenseOperator(matrix)
    result = la.eigenvalues(op, k=3, tol=1e-6, block_size=block_size)
    basis, products = result.basis, result.products
    n = basis.shape[1]
    assert 3 <= n <= op.num_matvecs
    torch.testing.assert_close(basis.mT @ basis, torch.eye(n, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(products, matrix @ basis, rtol=0, atol=1e-10)
    torch.testing.assert_close(result.vectors, basis[:, :3], rtol=0, atol=0)
    assert result.to_dict()["block_size"] == block_size


def test_min_subspace_grows_a_nested_krylov_space_so_ritz_values_only_improve(matrix):
    exact = torch.linalg.eigvalsh(matrix).flip(0)[:2]
    small = la.eigenvalues(matrix, k=2, tol=1e-3, seed=4)
    large = la.eigenvalues(matrix, k=2, tol=1e-3, seed=4, min_subspace=40)
    assert small.basis.shape[1] < 40 == large.basis.shape[1] == large.num_matvecs
    # Krylov spaces from one start vector are nested: the largest Ritz values increase
    # towards the eigenvalues (Cauchy interlacing).
    assert bool((small.values <= large.values + 1e-12).all())
    assert bool((large.values <= exact + 1e-10).all())


@pytest.mark.parametrize("method", ["scipy", "power_iteration"])
def test_other_methods_keep_their_vectors_and_products(matrix, method):
    if method == "scipy":
        result = la.eigenvalues(matrix, k=2, method="scipy")
    else:
        result = la.power_iteration(matrix, k=2, tol=1e-6, max_iter=300)
    torch.testing.assert_close(result.basis, result.vectors, rtol=0, atol=0)
    torch.testing.assert_close(result.products, matrix @ result.vectors, rtol=0, atol=1e-10)


def test_json_and_errors(matrix):
    result = la.eigenvalues(matrix, k=2)
    assert json.loads(json.dumps(result.to_dict()))["values"] == result.values.tolist()
    assert len(result.to_dict(include_vectors=True)["vectors"]) == 2
    with pytest.raises(ValueError, match="which must be one of"):
        la.eigenvalues(matrix, which="largest_magnitude")
    with pytest.raises(ValueError, match="exceeds the dimension"):
        la.eigenvalues(matrix, k=121)
    with pytest.raises(ValueError, match="tol must be positive"):
        la.power_iteration(matrix, tol=0)
    with pytest.raises(ValueError, match="needs k < d"):
        la.eigenvalues(torch.eye(3, dtype=F64), k=3, method="scipy")
