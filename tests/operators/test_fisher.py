"""EmpiricalFisherOperator against per-sample gradients computed one by one in float64, and the
Monte-Carlo Fisher's expectation against the GGN within its own error bar."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

import flatscope as fs
from tests.operators.test_hessian import CASES, _batches, _make

F64 = torch.float64


def _dense(op) -> torch.Tensor:
    return op @ torch.eye(op.shape[0], dtype=F64)


def _per_sample_gradients(model, loss_fn, x, y) -> torch.Tensor:
    """``g_i = grad loss_fn(f(x_i), y_i)``, one backward pass per sample (eval mode)."""
    model.eval()
    params = {n: p.detach().requires_grad_(True) for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    rows = []
    for i in range(len(y)):
        loss = loss_fn(functional_call(model, {**buffers, **params}, (x[i : i + 1],)), y[i : i + 1])
        rows.append(
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))])
        )
    return torch.stack(rows)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2]], ids=lambda c: c[0])
def test_empirical_fisher_matches_per_sample_gradients(case):
    model, loss_fn, x, y = _make(case)
    G = _per_sample_gradients(model, loss_fn, x, y)
    reference = G.T @ G / len(y)
    op = fs.EmpiricalFisherOperator(model, loss_fn, _batches(x, y), dtype=F64, sample_chunk=3)
    dense = _dense(op)
    assert op.symmetric and op.num_matvecs == op.shape[0]
    assert (dense - reference).norm() < 1e-12 * reference.norm()
    eigenvalues = torch.linalg.eigvalsh((dense + dense.T) / 2)
    assert eigenvalues.min() > -1e-12 * eigenvalues.max()
    # the mean of the per-sample gradients is the objective's gradient: the scale is the mean loss
    torch.testing.assert_close(G.mean(dim=0), op.gradient(), rtol=1e-12, atol=1e-14)


def test_monte_carlo_fisher_expectation_is_the_ggn():
    """``E[F_MC] = G`` for softmax cross-entropy: ``v^T F_MC v`` over independent seeds has a
    mean within four standard errors of ``v^T G v``."""
    model, loss_fn, x, y = _make(CASES[0])
    objective = fs.Objective(model, loss_fn, _batches(x, y), dtype=F64)
    v = torch.randn(objective.dim, dtype=F64, generator=torch.Generator().manual_seed(5))
    exact = float(v @ (fs.GGNOperator(objective) @ v))
    draws = torch.tensor(
        [
            float(v @ (fs.EmpiricalFisherOperator(objective, labels="sampled", seed=s) @ v))
            for s in range(200)
        ]
    )
    mean, stderr = float(draws.mean()), float(draws.std() / math.sqrt(len(draws)))
    assert stderr < 0.1 * exact  # the test can tell the GGN from other matrices
    assert abs(mean - exact) < 4 * stderr


def test_sampled_labels_are_seeded_and_fixed_between_products():
    model, loss_fn, x, y = _make(CASES[0])
    objective = fs.Objective(model, loss_fn, (x, y), dtype=F64)
    V = torch.randn(objective.dim, 2, dtype=F64, generator=torch.Generator().manual_seed(6))
    op = fs.EmpiricalFisherOperator(objective, labels="sampled", mc_samples=3, seed=1)
    first = op @ V
    torch.testing.assert_close(op @ V, first, rtol=0, atol=0)
    again = fs.EmpiricalFisherOperator(objective, labels="sampled", mc_samples=3, seed=1) @ V
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    other = fs.EmpiricalFisherOperator(objective, labels="sampled", mc_samples=3, seed=2) @ V
    assert not torch.allclose(other, first)
    torch.testing.assert_close(op @ V[:, 0], first[:, 0], rtol=1e-12, atol=1e-14)


def test_bad_arguments_are_clear_errors():
    model, loss_fn, x, y = _make(CASES[1])  # regression outputs: no classes to sample
    with pytest.raises(ValueError, match="labels must be one of"):
        fs.EmpiricalFisherOperator(model, loss_fn, (x, y), labels="true")
    with pytest.raises(ValueError, match="mc_samples must be a positive integer"):
        fs.EmpiricalFisherOperator(model, loss_fn, (x, y), mc_samples=0)
    op = fs.EmpiricalFisherOperator(model, loss_fn, (x[:, None], y[:, None]), labels="sampled")
    with pytest.raises(ValueError, match=r"logits \(B, C\)"):
        op @ torch.zeros(op.shape[0], dtype=op.dtype)
