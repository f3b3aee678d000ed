"""Hutchinson diagonal estimates against exact diagonals."""

from __future__ import annotations

import json

import pytest
import torch

import flatscope.linalg as la
from tests.linalg._spectra import F64, network_like


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return network_like(60)[0]


def test_error_bars_cover_at_least_95_percent_of_entries(matrix):
    est = la.diagonal(matrix, num_matvecs=200, seed=0)
    covered = ((est.values - matrix.diagonal()).abs() <= 3 * est.stderr).double().mean()
    assert est.num_matvecs == 200
    assert float(covered) >= 0.95


def test_error_shrinks_like_one_over_sqrt_m(matrix):
    small = la.diagonal(matrix, num_matvecs=50, seed=1).stderr.mean()
    large = la.diagonal(matrix, num_matvecs=800, seed=1).stderr.mean()
    assert float(small / large) == pytest.approx(4.0, rel=0.2)


def test_batches_give_the_same_mean_and_error(matrix):
    whole = la.diagonal(matrix, num_matvecs=40, seed=2)
    batched = la.diagonal(matrix, num_matvecs=40, seed=2, batch_size=7)
    torch.testing.assert_close(batched.values, whole.values, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(batched.stderr, whole.stderr, rtol=1e-10, atol=1e-12)


def test_exact_on_a_diagonal_matrix_with_rademacher_probes():
    A = torch.diag(torch.linspace(-2, 2, 20, dtype=F64))
    est = la.diagonal(A, num_matvecs=3)
    torch.testing.assert_close(est.values, A.diagonal(), rtol=0, atol=1e-14)
    assert float(est.stderr.max()) < 1e-14


def test_json_and_errors(matrix):
    est = la.diagonal(matrix, num_matvecs=4)
    assert len(json.loads(json.dumps(est.to_dict()))["values"]) == 60
    with pytest.raises(ValueError, match="num_matvecs must be at least 2"):
        la.diagonal(matrix, num_matvecs=1)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        la.diagonal(matrix, batch_size=0)
