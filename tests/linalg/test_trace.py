"""Trace estimators against exact traces of matrices with known spectra (float64)."""

from __future__ import annotations

import json
import math

import pytest
import scipy.stats
import torch

import flatscope.linalg as la
from flatscope.linalg._common import probes, seeded_generator, stream_seed
from flatscope.linalg.trace import DEFLATION_STREAM
from flatscope.operators import DenseOperator
from tests.linalg._spectra import F64, network_like, planted

METHODS = ["hutchinson", "hutchpp", "na_hutchpp", "xtrace"]
BLOCKS = {"first": slice(0, 25), "second": slice(25, 26), "third": slice(26, 60)}


@pytest.fixture(scope="module")
def matrix() -> torch.Tensor:
    return network_like(60)[0]


@pytest.mark.parametrize(
    "method, probe",
    [(m, "rademacher") for m in METHODS]
    + [("hutchinson", "gaussian"), ("hutchinson", "sphere"), ("xtrace", "sphere")],
)
def test_error_bars_cover_the_truth_in_95_of_100_seeds(matrix, method, probe):
    exact = float(matrix.trace())
    covered = 0
    for seed in range(100):
        est = la.trace(matrix, method=method, num_matvecs=30, seed=seed, probe=probe)
        covered += abs(est.value - exact) <= 3 * est.stderr
    assert covered >= 95


@pytest.mark.parametrize("method", ["hutchpp", "na_hutchpp", "xtrace"])
def test_low_rank_methods_beat_hutchinson_on_an_outlier_heavy_spectrum(matrix, method):
    exact = float(matrix.trace())
    # Exact standard deviation of Rademacher Hutchinson with 100 probes.
    offdiag = matrix.square().sum() - matrix.diagonal().square().sum()
    hutchinson_std = math.sqrt(2 * float(offdiag) / 100)

    def rms_error(name: str) -> float:
        errors = [la.trace(matrix, name, 100, seed=s).value - exact for s in range(20)]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    assert rms_error(method) < rms_error("hutchinson")
    assert rms_error(method) < hutchinson_std


def _direct_xtrace(A: torch.Tensor, Omega: torch.Tensor, improved: bool) -> torch.Tensor:
    """Leave-one-out estimates t_i computed naively, one QR per left-out column."""
    d, s = Omega.shape
    samples = []
    for i in range(s):
        keep = [j for j in range(s) if j != i]
        Qi = torch.linalg.qr(A @ Omega[:, keep]).Q
        P_perp = torch.eye(d, dtype=F64) - Qi @ Qi.mT
        w = P_perp @ Omega[:, i]
        if improved:
            w = w * math.sqrt(d - s + 1) / w.norm()
        samples.append((Qi.mT @ A @ Qi).trace() + w @ A @ w)
    return torch.stack(samples)


@pytest.mark.parametrize("probe", ["rademacher", "sphere"])
def test_xtrace_matches_a_direct_leave_one_out_computation_and_jackknife(probe):
    A = planted(torch.linspace(-2, 5, 12), seed=3)
    est = la.xtrace(A, num_matvecs=8, seed=7, probe=probe)
    Omega = probes(seeded_generator(7), 12, 4, probe, F64, A.device)
    improved = probe == "sphere"
    samples = _direct_xtrace(A, Omega, improved)
    assert est.value == pytest.approx(float(samples.mean()), rel=1e-10)
    # 4 probes, 4 groups: the delete-one jackknife of XTrace, each replicate recomputed directly
    replicates = torch.stack(
        [
            _direct_xtrace(A, Omega[:, [j for j in range(4) if j != g]], improved).mean()
            for g in range(4)
        ]
    )
    jackknife = 3 / 4 * float((replicates - replicates.mean()).square().sum())
    t_over_z = scipy.stats.t.ppf(0.975, 3) / scipy.stats.norm.ppf(0.975)
    assert est.stderr == pytest.approx(math.sqrt(jackknife) * t_over_z, rel=1e-8)


def test_hutchpp_and_na_hutchpp_match_their_formulas():
    A = planted(torch.linspace(-2, 5, 12), seed=4)
    g = seeded_generator(5)
    S = probes(g, 12, 4, "rademacher", F64, A.device)
    G = probes(g, 12, 4, "rademacher", F64, A.device)
    Q = torch.linalg.qr(A @ S).Q
    P_perp = torch.eye(12, dtype=F64) - Q @ Q.mT
    expected = (Q.mT @ A @ Q).trace() + (G.mT @ P_perp @ A @ P_perp @ G).trace() / 4
    assert la.hutchpp(A, 12, seed=5).value == pytest.approx(float(expected), rel=1e-10)

    V = probes(seeded_generator(5), 12, 12, "rademacher", F64, A.device)
    R, S, G = V[:, :2], V[:, 2:6], V[:, 6:]
    Z, W = A @ R, A @ S
    low_rank = Z @ torch.linalg.pinv(S.mT @ Z) @ W.mT
    expected = low_rank.trace() + (G.mT @ (A - low_rank) @ G).trace() / 6
    assert la.na_hutchpp(A, 12, seed=5).value == pytest.approx(float(expected), rel=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_per_block_traces_add_up_and_match_exact_block_traces(matrix, method):
    op = DenseOperator(matrix, blocks=BLOCKS)
    est = la.trace(op, method=method, num_matvecs=60, seed=1)
    assert est.num_matvecs == op.num_matvecs == 60
    assert sum(v for v, _ in est.per_block.values()) == pytest.approx(est.value, abs=1e-10)
    for name, (value, stderr) in est.per_block.items():
        exact = float(matrix[BLOCKS[name], BLOCKS[name]].trace())
        assert abs(value - exact) <= 3 * stderr + 1e-10, name


def test_no_blocks_gives_no_per_block(matrix):
    assert la.trace(matrix, method="hutchinson", num_matvecs=10).per_block is None


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_numbers_and_batching_does_not_change_them(matrix, method):
    first = la.trace(matrix, method=method, num_matvecs=40, seed=3)
    again = la.trace(matrix, method=method, num_matvecs=40, seed=3)
    batched = la.trace(matrix, method=method, num_matvecs=40, seed=3, batch_size=7)
    other = la.trace(matrix, method=method, num_matvecs=40, seed=4)
    assert first.value == again.value and first.stderr == again.stderr
    assert batched.value == pytest.approx(first.value, rel=1e-12)
    assert other.value != first.value


def test_hutchinson_is_exact_on_a_diagonal_matrix():
    A = torch.diag(torch.linspace(-1, 3, 30, dtype=F64))
    est = la.hutchinson(A, num_matvecs=5)
    assert est.value == pytest.approx(float(A.trace()), abs=1e-12)
    assert est.stderr == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("method", ["hutchpp", "na_hutchpp", "xtrace"])
def test_low_rank_matrix_is_recovered_exactly(method):
    generator = torch.Generator().manual_seed(0)
    U = torch.randn(50, 3, generator=generator, dtype=F64)
    A = U @ torch.diag(torch.tensor([4.0, -2.0, 1.0], dtype=F64)) @ U.mT
    est = la.trace(A, method=method, num_matvecs=48)
    assert est.value == pytest.approx(float(A.trace()), rel=1e-8)
    assert est.stderr < 1e-8 * abs(est.value)


def test_result_is_json_friendly(matrix):
    est = la.trace(DenseOperator(matrix, blocks=BLOCKS), num_matvecs=30)
    stored = json.loads(json.dumps(est.to_dict()))
    assert stored["per_block"]["first"] == list(est.per_block["first"])


def test_bad_input_raises_one_line_errors(matrix):
    with pytest.raises(ValueError, match="method must be one of"):
        la.trace(matrix, method="girard")
    with pytest.raises(ValueError, match="num_matvecs must be at least"):
        la.trace(matrix, method="na_hutchpp", num_matvecs=5)
    with pytest.raises(ValueError, match="not symmetric"):
        la.trace(torch.triu(matrix))
    with pytest.raises(ValueError, match="probe must be one of"):
        la.trace(matrix, method="hutchinson", probe="normal")
    with pytest.raises(TypeError, match="expected a flatscope LinearOperator"):
        la.trace(matrix.numpy())
    with pytest.raises(TypeError, match="seed must be an integer"):
        la.trace(matrix, seed=1.5)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_variance_estimate_is_unbiased(matrix, probe):
    # Var of one quadratic form: 2 (||A||_F^2 - sum_i A_ii^2) (Rademacher), 2 ||A||_F^2 (Gaussian)
    frobenius = float(matrix.square().sum())
    if probe == "rademacher":
        frobenius -= float(matrix.diagonal().square().sum())
    exact = 2 * frobenius / 20
    estimates = torch.tensor(
        [la.hutchinson(matrix, 20, seed=s, probe=probe).stderr ** 2 for s in range(200)]
    )
    assert abs(float(estimates.mean()) - exact) <= 3 * float(estimates.std()) / math.sqrt(200)


def _exact_pairs(A: torch.Tensor, k: int) -> la.EigenResult:
    values, vectors = torch.linalg.eigh(A)
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k]
    zeros = torch.zeros(k, dtype=F64)
    return la.EigenResult(values, vectors, zeros, 0, True, "exact", 1, vectors, A @ vectors)


def test_deflation_by_exact_pairs_adds_their_block_weights_exactly(matrix):
    pairs = _exact_pairs(matrix, 5)
    op = DenseOperator(matrix, blocks=BLOCKS)
    est = la.trace(op, "hutchinson", 40, seed=0, deflate=pairs)
    # the deflated operator: (I - QQ^T) A (I - QQ^T) = A - Q diag(lambda) Q^T
    Q = pairs.vectors
    rest = matrix - (Q * pairs.values) @ Q.mT
    seed = stream_seed(0, DEFLATION_STREAM)
    plain = la.trace(DenseOperator(rest, blocks=BLOCKS), "hutchinson", 40, seed=seed)
    assert est.value == pytest.approx(float(pairs.values.sum()) + plain.value, rel=1e-12)
    assert est.stderr == pytest.approx(plain.stderr, rel=1e-10)
    assert est.deflation_rank == 5 and est.num_matvecs == op.num_matvecs == 40
    for name, block in BLOCKS.items():
        weight = float((pairs.values * Q[block].square().sum(0)).sum())
        value, stderr = est.per_block[name]
        assert value == pytest.approx(weight + plain.per_block[name][0], rel=1e-10, abs=1e-12)
        assert stderr == pytest.approx(plain.per_block[name][1], rel=1e-10)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp", "xtrace"])
def test_deflated_error_bars_cover_with_inexact_ritz_pairs(matrix, method):
    exact = float(matrix.trace())
    covered = 0
    for seed in range(100):
        pairs = la.eigenvalues(matrix, k=3, tol=1e-2, seed=seed)  # loose: inexact Ritz pairs
        est = la.trace(matrix, method, 30, seed=seed, deflate=pairs)
        covered += abs(est.value - exact) <= 3 * est.stderr
    assert covered >= 95


def test_deflating_the_outliers_cuts_the_error_below_the_plain_estimate(matrix):
    exact = float(matrix.trace())
    pairs = la.eigenvalues(matrix, k=5, tol=1e-6)

    def rms(deflate) -> float:
        errors = [
            la.trace(matrix, "hutchinson", 50, seed=s, deflate=deflate).value - exact
            for s in range(30)
        ]
        return math.sqrt(sum(e * e for e in errors) / len(errors))

    assert rms(pairs) < 0.2 * rms(None)


def test_deflation_that_spans_the_range_is_exact():
    generator = torch.Generator().manual_seed(1)
    U = torch.linalg.qr(torch.randn(40, 3, generator=generator, dtype=F64)).Q
    A = U @ torch.diag(torch.tensor([5.0, -2.0, 1.0], dtype=F64)) @ U.mT
    pairs = la.eigenvalues(A, k=3, tol=1e-10)
    est = la.trace(A, "hutchpp", 12, deflate=pairs)
    assert est.value == pytest.approx(4.0, abs=1e-10) and est.stderr < 1e-10


def test_deflation_basis_must_fit_the_operator(matrix):
    pairs = _exact_pairs(torch.eye(10, dtype=F64), 2)
    with pytest.raises(ValueError, match="does not fit an operator"):
        la.trace(matrix, deflate=pairs)
