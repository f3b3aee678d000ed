"""The estimators on exact Hessians of networks: a tiny random one, and a trained one whose
spectrum (a few large eigenvalues over a heavy bulk) is what the error bars must cover."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian
from torch.func import functional_call

import flatscope.linalg as la
from flatscope.operators import DenseOperator, HessianOperator, unflatten
from tests.linalg._networks import trained_hessian
from tests.linalg._spectra import F64

#: Seeds of the coverage test and the lowest coverage of a 95% interval it accepts: the nominal
#: level less three binomial standard deviations (about 0.904 for 200 seeds).
COVERAGE_SEEDS = 200
LOWEST_COVERAGE = 0.95 - 3 * (0.95 * 0.05 / COVERAGE_SEEDS) ** 0.5


@pytest.fixture(scope="module")
def problem() -> tuple[HessianOperator, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).to(F64)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(40, 4, generator=generator, dtype=F64)
    y = torch.randint(0, 3, (40,), generator=generator)
    loss_fn = nn.CrossEntropyLoss()
    op = HessianOperator(model, loss_fn, [(x[:25], y[:25]), (x[25:], y[25:])], dtype=F64)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss(w: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, unflatten(w, params), (x,)), y)

    return op, hessian(loss, op.flat_params())


def test_extreme_eigenvalues_match_the_dense_hessian(problem):
    op, H = problem
    exact = torch.linalg.eigvalsh(H)
    assert float(exact[0]) < 0  # random weights: the Hessian is indefinite
    for which, expected in [("largest", exact.flip(0)[:3]), ("smallest", exact[:3])]:
        result = la.eigenvalues(op, k=3, which=which, tol=1e-8)
        torch.testing.assert_close(result.values, expected, rtol=1e-8, atol=1e-10)
        assert result.converged


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp", "xtrace"])
def test_per_layer_traces_match_exact_block_traces(problem, method):
    op, H = problem
    est = la.trace(op, method=method, num_matvecs=30, seed=0)
    assert abs(est.value - float(H.trace())) <= 3 * est.stderr
    for name, block in op.blocks.items():
        value, stderr = est.per_block[name]
        assert abs(value - float(H[block, block].trace())) <= 3 * stderr + 1e-12, name


def test_density_moments_and_diagonal(problem):
    op, H = problem
    d = H.shape[0]
    density = la.spectral_density(op, num_steps=20, num_probes=6)
    value, stderr = density.moment(1)
    assert abs(value - float(H.trace()) / d) <= 3 * stderr
    diag = la.diagonal(op, num_matvecs=100)
    covered = ((diag.values - H.diagonal()).abs() <= 3 * diag.stderr).double().mean()
    assert float(covered) >= 0.9


@pytest.fixture(scope="module")
def trained() -> DenseOperator:
    """The exact Hessian of an MLP trained by the demo protocol on noisy digits (910 parameters,
    256 samples). With the sample standard deviation as the error (before the variance
    estimates of flatscope.linalg.trace), Hutchinson covered 89.5% and XTrace 86% here."""
    network = trained_hessian("mlp:hidden=12,depth=1", "sgd", samples=256, vectorize=True)
    return DenseOperator(network.matrix)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp", "na_hutchpp", "xtrace", "deflated"])
def test_95_percent_intervals_cover_on_a_trained_network(trained, method):
    exact = float(trained.matrix.trace())
    covered = 0
    for seed in range(COVERAGE_SEEDS):
        if method == "deflated":
            pairs = la.eigenvalues(trained, k=5, tol=1e-3, seed=seed)
            est = la.trace(trained, "hutchinson", 30, seed=seed, deflate=pairs)
        else:
            est = la.trace(trained, method, 30, seed=seed)
        covered += abs(est.value - exact) <= 1.959963984540054 * est.stderr
    assert covered / COVERAGE_SEEDS >= LOWEST_COVERAGE
