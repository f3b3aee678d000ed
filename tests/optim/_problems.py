"""Small problems shared by the optimizer tests: a tiny regression net and quadratic samplers."""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor, nn

Closure = Callable[[], Tensor]
OptimizerFactory = Callable[..., torch.optim.Optimizer]
Z = 4.0  # Monte-Carlo assertions allow Z standard errors


def tiny_net(dtype: torch.dtype = torch.float64, seed: int = 0, width: int = 8) -> nn.Module:
    """A two-layer tanh MLP from 3 inputs to 2 outputs."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 2)).to(dtype)


def batches(
    num: int, dtype: torch.dtype = torch.float64, seed: int = 1
) -> list[tuple[Tensor, Tensor]]:
    """``num`` fixed regression batches of 16 examples."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(16, 3, generator=generator, dtype=dtype),
            torch.randn(16, 2, generator=generator, dtype=dtype),
        )
        for _ in range(num)
    ]


def mse_closure(model: nn.Module, inputs: Tensor, targets: Tensor) -> Closure:
    """Zero the gradients, mean squared error, backward, return the loss."""

    def closure() -> Tensor:
        model.zero_grad(set_to_none=True)
        loss = (model(inputs) - targets).pow(2).mean()
        loss.backward()
        return loss

    return closure


def train(optimizer: torch.optim.Optimizer, model: nn.Module, data: list) -> None:
    for inputs, targets in data:
        optimizer.step(mse_closure(model, inputs, targets))


def round_trip(state: dict) -> dict:
    """What a checkpoint file gives back: ``torch.save`` then ``torch.load``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def split_like(flat: Tensor, params: list[Tensor]) -> list[Tensor]:
    """Split a flat vector into pieces shaped like ``params`` (the optimizers' noise layout)."""
    pieces = flat.split([p.numel() for p in params])
    return [piece.view(p.shape) for piece, p in zip(pieces, params, strict=True)]


def stationary_variance(
    curvature: float, lr: float, beta_inv: float, sigma: float, momentum: float
) -> float:
    """Exact stationary variance of (f)SGLD's recursion on U(x) = curvature * (x - c)^2 / 2.

    With ``y = x - c`` and the optimizers' documented update (gradient at ``x + sigma * eps``,
    Langevin noise ``s * xi`` in the momentum buffer, ``s = sqrt(2 (1 - mu) beta_inv / lr)``)::

        m' = mu m + a y + a sigma eps + s xi,    y' = y - lr m'

    is linear, ``z' = A z + B w`` for ``z = (y, m)``, ``w = (eps, xi)``, and its stationary
    covariance solves the discrete Lyapunov equation ``S = A S A^T + B B^T``. With ``mu = 0``
    this is SGLD's AR(1) chain, whose variance ``(2 lr / beta + lr^2 a^2 sigma^2) /
    (lr a (2 - lr a))`` tends to the target ``1 / (beta a)`` as ``lr -> 0``.
    """
    a, mu = curvature, momentum
    s = np.sqrt(2.0 * (1.0 - mu) * beta_inv / lr)
    transition = np.array([[1.0 - lr * a, -lr * mu], [a, mu]])
    noise = np.array([[-lr * a * sigma, -lr * s], [a * sigma, s]])
    covariance = scipy.linalg.solve_discrete_lyapunov(transition, noise @ noise.T)
    return float(covariance[0, 0])


def sample_quadratic(
    make_optimizer: Callable[[list[Tensor]], torch.optim.Optimizer],
    curvatures: Tensor,
    centers: Tensor,
    num_chains: int,
    burn_in: int,
    num_steps: int,
) -> tuple[Tensor, Tensor]:
    """Run independent chains on U(x) = sum_j a_j (x_j - c_j)^2 / 2, one row of x per chain.

    Returns, per chain and coordinate, the time averages of ``x`` and of ``(x - c)^2`` over
    ``num_steps`` steps after ``burn_in``. The chains are independent, so the spread of these
    per-chain averages gives honest standard errors (batch means with independent batches).
    """
    x = centers.repeat(num_chains, 1).clone().requires_grad_(True)
    optimizer = make_optimizer([x])

    def closure() -> Tensor:
        x.grad = None
        loss = 0.5 * (curvatures * (x - centers).pow(2)).sum()
        loss.backward()
        return loss

    for _ in range(burn_in):
        optimizer.step(closure)
    sum_x = torch.zeros_like(x, requires_grad=False)
    sum_squares = torch.zeros_like(sum_x)
    for _ in range(num_steps):
        optimizer.step(closure)
        with torch.no_grad():
            sum_x += x
            sum_squares += (x - centers).pow(2)
    return sum_x / num_steps, sum_squares / num_steps


def two_groups(model: nn.Module, **second: float) -> list[dict]:
    """The first and last layers of ``model`` as two parameter groups, options for the second."""
    first, last = list(model.children())[0], list(model.children())[-1]
    return [{"params": first.parameters()}, {"params": last.parameters(), **second}]


def assert_same_parameters(expected: nn.Module, actual: nn.Module) -> None:
    for a, b in zip(expected.parameters(), actual.parameters(), strict=True):
        assert torch.equal(a, b)


def assert_zero_temperature_is_sgd(
    make: OptimizerFactory, momentum: float, weight_decay: float
) -> None:
    """``make(groups, lr=, momentum=, weight_decay=)`` trains exactly like torch.optim.SGD."""
    data = batches(5)
    reference, model = tiny_net(), tiny_net()
    options = {"lr": 0.1, "momentum": momentum, "weight_decay": weight_decay}
    train(torch.optim.SGD(two_groups(reference, lr=0.05), **options), reference, data)
    train(make(two_groups(model, lr=0.05), **options), model, data)
    assert_same_parameters(reference, model)


def assert_resume_is_bit_identical(make: OptimizerFactory, num_steps: int = 7) -> None:
    """Save after 3 steps and resume: the weights end bit-identical to an uninterrupted run.

    Resumes twice: from a ``torch.save``d state dict into a fresh model and optimizer (built
    with another seed), and from ``copy.deepcopy`` of the model and optimizer together.
    ``make(params, seed)`` builds the optimizer; deterministic ones ignore ``seed``.
    """
    data = batches(num_steps)
    reference = tiny_net()
    train(make(reference.parameters(), seed=11), reference, data)
    model = tiny_net()
    optimizer = make(model.parameters(), seed=11)
    train(optimizer, model, data[:3])
    checkpoint = round_trip({"model": model.state_dict(), "optim": optimizer.state_dict()})
    copied_model, copied_optimizer = copy.deepcopy((model, optimizer))
    resumed = tiny_net(seed=99)
    resumed.load_state_dict(checkpoint["model"])
    resumed_optimizer = make(resumed.parameters(), seed=12345)
    resumed_optimizer.load_state_dict(checkpoint["optim"])
    train(resumed_optimizer, resumed, data[3:])
    assert_same_parameters(reference, resumed)
    train(copied_optimizer, copied_model, data[3:])
    assert_same_parameters(reference, copied_model)


CURVATURES = torch.tensor([1.0, 4.0], dtype=torch.float64)
CENTERS = torch.tensor([1.0, -0.5], dtype=torch.float64)


def assert_samples_match_stationary_law(
    make: OptimizerFactory, lr: float, beta_inv: float, sigma: float, momentum: float
) -> None:
    """Long-run chains on a 2D quadratic: mean c and the exact chain's variance, within Z SE.

    The exact chain variance is the target 1/(beta a) up to the O(lr) discretization bias
    (see :func:`assert_chain_temperature_is_exact_to_order_lr`). ``make(params)`` builds the
    optimizer with ``lr``, ``beta_inv``, ``sigma`` and ``momentum``.
    """
    means, squares = sample_quadratic(make, CURVATURES, CENTERS, 2000, 400, 1000)
    num_chains = means.shape[0]
    for j, (a, c) in enumerate(zip(CURVATURES.tolist(), CENTERS.tolist(), strict=True)):
        mean_error = means[:, j].std().item() / math.sqrt(num_chains)
        assert abs(means[:, j].mean().item() - c) < Z * mean_error
        target = stationary_variance(a, lr, beta_inv, sigma, momentum)
        variance_error = squares[:, j].std().item() / math.sqrt(num_chains)
        assert abs(squares[:, j].mean().item() - target) < Z * variance_error


def assert_chain_temperature_is_exact_to_order_lr(sigma: float, momentum: float) -> None:
    """The chain's exact stationary variance is 1/(beta a) (1 + O(lr)): the noise scales are right.

    fSGLD's target exp(-beta (U + sigma^2/2 tr H)) has the variance of exp(-beta U) on a
    quadratic, so the same limit holds with ``sigma > 0``.
    """
    a, beta_inv = 2.0, 0.1
    bias = [
        stationary_variance(a, lr, beta_inv, sigma, momentum) / (beta_inv / a) - 1
        for lr in (1e-3, 1e-4)
    ]
    assert 0 < bias[1] < bias[0] < 0.1
    assert bias[1] / bias[0] == pytest.approx(0.1, rel=0.05)
