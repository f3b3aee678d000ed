"""Lanczos with full reorthogonalization against dense eigendecompositions."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import flatscope.linalg as la
from flatscope.linalg._common import probes, seeded_generator
from flatscope.operators import DenseOperator
from tests.linalg._spectra import F64, network_like, planted


def test_full_run_reproduces_the_spectrum_with_an_orthonormal_basis():
    A, eigenvalues = network_like(50)
    result = la.lanczos(A, 50, return_basis=True)
    V, I = result.basis, torch.eye(50, dtype=F64)
    assert result.num_matvecs == 50 and not result.breakdown
    torch.testing.assert_close(V.mT @ V, I, rtol=0, atol=1e-12)
    torch.testing.assert_close(V.mT @ A @ V, result.tridiagonal(), rtol=0, atol=1e-11)
    torch.testing.assert_close(result.ritz()[0], eigenvalues, rtol=0, atol=1e-11)


def test_breakdown_on_a_low_rank_matrix_stops_with_exact_eigenvalues():
    generator = torch.Generator().manual_seed(0)
    U = torch.linalg.qr(torch.randn(40, 3, generator=generator, dtype=F64)).Q
    A = U @ torch.diag(torch.tensor([5.0, -2.0, 0.5], dtype=F64)) @ U.mT
    op = DenseOperator(A)
    result = la.lanczos(op, 20, seed=1)
    # Krylov space: the 3-dimensional range plus the start vector's null-space component.
    assert result.breakdown and result.num_matvecs == op.num_matvecs == 4
    expected = torch.tensor([-2.0, 0.0, 0.5, 5.0], dtype=F64)
    torch.testing.assert_close(result.ritz()[0], expected, rtol=0, atol=1e-12)


def test_batched_chains_equal_single_chains_and_share_products():
    A, _ = network_like(40)
    V0 = torch.randn(40, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    op = DenseOperator(A)
    chains = la.lanczos_batched(op, 12, V0)
    assert op.num_matvecs == 36
    for i, chain in enumerate(chains):
        single = la.lanczos(A, 12, v0=V0[:, i])
        torch.testing.assert_close(chain.alpha, single.alpha, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(chain.beta, single.beta, rtol=1e-12, atol=1e-12)


def test_float32_operator_with_float64_recurrence():
    A, _ = network_like(30)
    result = la.lanczos(A.float(), 10, dtype=F64, return_basis=True)
    assert result.alpha.dtype == F64 and result.basis.dtype == F64
    reference = la.lanczos(A, 10)
    torch.testing.assert_close(result.alpha, reference.alpha, rtol=1e-5, atol=1e-5)


def test_without_reorthogonalization_early_steps_agree():
    A, _ = network_like(60)
    plain = la.lanczos(A, 6, reorthogonalize=False)
    full = la.lanczos(A, 6)
    torch.testing.assert_close(plain.alpha, full.alpha, rtol=1e-9, atol=1e-9)


def test_without_reorthogonalization_ghosts_appear_but_gauss_quadrature_stays_exact():
    A, _ = network_like(200)
    plain = la.lanczos(A, 60, seed=0, reorthogonalize=False, return_basis=True)
    full = la.lanczos(A, 60, seed=0)
    # The converged outlier 40 makes the plain recurrence lose orthogonality completely and
    # repeat that Ritz value; full reorthogonalization finds it once.
    V = plain.basis
    assert float((V.mT @ V - torch.eye(60, dtype=F64)).abs().max()) > 0.5
    theta, S = plain.ritz()
    assert int(((theta - 40).abs() < 1e-6).sum()) > 1
    assert int(((full.ritz()[0] - 40).abs() < 1e-6).sum()) == 1
    # The copies share the weight of their eigenvalue: the quadrature moments e_1^T T^p e_1
    # still equal v^T A^p v (Greenbaum 1989), far beyond degree 2 n - 1 = 119 in relative terms.
    v = probes(seeded_generator(0), 200, 1, "gaussian", F64, A.device)[:, 0]
    v = v / v.norm()
    for p in range(0, 25, 4):
        exact = float(v @ torch.linalg.matrix_power(A, p) @ v)
        quadrature = float((S[0].square() * theta**p).sum())
        assert abs(quadrature - exact) <= 1e-13 * 40.0**p, p


def test_bad_start_vectors():
    A, _ = network_like(10)
    with pytest.raises(ValueError, match="nonzero"):
        la.lanczos(A, 3, v0=torch.zeros(10, dtype=F64))
    with pytest.raises(ValueError, match=r"\(10, p\)"):
        la.lanczos_batched(A, 3, V0=torch.ones(9, 2, dtype=F64))


@settings(max_examples=25, deadline=None)
@given(
    halves=st.lists(st.integers(-20, 20), min_size=2, max_size=8),
    seed=st.integers(0, 1000),
)
def test_krylov_space_holds_exactly_the_distinct_eigenvalues(halves, seed):
    values = torch.tensor(halves, dtype=F64) / 2
    result = la.lanczos(planted(values, seed), len(halves), seed=seed)
    distinct = torch.unique(values)
    ritz = result.ritz()[0]
    # Every Ritz value is an eigenvalue and every distinct eigenvalue is found.
    assert float((ritz[:, None] - values).abs().min(1).values.max()) <= 1e-10
    assert float((distinct[:, None] - ritz).abs().min(1).values.max()) <= 1e-10
    # A start vector has a component along each eigenspace, so the Krylov space has one
    # dimension per distinct eigenvalue: it breaks down there, or, when rounding leaves a
    # residual just above the breakdown threshold, takes further steps whose vectors lie in
    # the eigenspaces of repeated eigenvalues (their Ritz values are checked above).
    assert distinct.numel() <= result.num_matvecs <= len(halves)
    assert result.breakdown == (result.num_matvecs < len(halves))
