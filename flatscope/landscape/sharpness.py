"""Average-case (Gaussian) and worst-case (epsilon) sharpness of the mean training loss.

Average-case sharpness (Andriushchenko, Croce, Müller, Hein, Flammarion, "A Modern Look at the
Relationship between Sharpness and Generalization", ICML 2023):

    S_avg(sigma) = E_e[L(w + e)] - L(w),   e ~ N(0, sigma^2 I)   (adaptive: N(0, sigma^2 diag(w^2)))

By Taylor's theorem ``S_avg = (sigma^2 / 2) tr H + O(sigma^4)`` (adaptive: ``(sigma^2 / 2)
sum_i w_i^2 H_ii``): the quantity fSGLD minimizes (Bruno et al., arXiv 2510.02174, 2025).
Both numbers are reported side by side, each with its standard error, so a user sees whether the
quadratic approximation holds at their ``sigma``.

Worst-case sharpness (Keskar, Mudigere, Nocedal, Smelyanskiy, Tang, "On Large-Batch Training for
Deep Learning: Generalization Gap and Sharp Minima", ICLR 2017; adaptive form from Kwon et al.,
ASAM, ICML 2021, and Andriushchenko et al. 2023):

    S_max(rho) = max_{||e / c||_p <= rho} L(w + e) - L(w),   c = 1 or c = |w| (adaptive),

estimated from below by projected gradient ascent with a fixed number of steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from flatscope.landscape.evaluation import LossEvaluator
from flatscope.linalg.trace import trace
from flatscope.objective import Objective
from flatscope.operators.base import LinearOperator
from flatscope.operators.hessian import HessianOperator
from flatscope.operators.scaled import DiagonallyScaled

__all__ = [
    "AverageSharpness",
    "WorstCaseSharpness",
    "average_sharpness",
    "worst_case_sharpness",
]

NORMS = ("l2", "linf")


@dataclass(frozen=True)
class AverageSharpness:
    """Monte Carlo Gaussian sharpness beside its second-order (Hessian-trace) prediction.

    Attributes:
        value, stderr: the estimate of ``E[L(w + e)] - L(w)`` and its standard error.
        loss: ``L(w)``.
        sigma, adaptive, num_samples, seed: the perturbation settings (``num_samples``
            perturbations, each evaluated at ``+e`` and ``-e``).
        second_order, second_order_stderr: ``(sigma^2 / 2) tr H`` (adaptive:
            ``(sigma^2 / 2) sum_i w_i^2 H_ii``) from the trace estimator, or ``None`` when skipped.
        trace_method, trace_num_matvecs: how the trace was estimated.
    """

    value: float
    stderr: float
    loss: float
    sigma: float
    adaptive: bool
    num_samples: int
    seed: int
    second_order: float | None
    second_order_stderr: float | None
    trace_method: str | None
    trace_num_matvecs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorstCaseSharpness:
    """The largest loss increase found within the perturbation ball.

    Attributes:
        value: ``max L(w + e) - L(w)`` over the points visited (a lower bound of the true max).
        loss: ``L(w)``.
        perturbation_norm: ``||e||_p`` of the maximizing perturbation in weight space.
        rho, norm, adaptive, steps, step_size, seed: the settings.
    """

    value: float
    loss: float
    perturbation_norm: float
    rho: float
    norm: str
    adaptive: bool
    steps: int
    step_size: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def average_sharpness(
    objective: Objective,
    sigma: float,
    *,
    num_samples: int = 32,
    adaptive: bool = False,
    seed: int = 0,
    trace_method: str = "hutchpp",
    trace_matvecs: int = 100,
    points_per_pass: int | None = None,
    hessian: LinearOperator | None = None,
) -> AverageSharpness:
    """Gaussian (average-case) sharpness, Monte Carlo with antithetic pairs, and its
    second-order prediction from the Hessian trace.

    Each perturbation ``e_j`` (``sigma z_j``, adaptive ``sigma |w| z_j``, ``z_j ~ N(0, I)`` from
    a generator seeded with ``seed``) is evaluated at ``w + e_j`` and ``w - e_j``; the pair mean
    ``p_j = (L(w + e_j) + L(w - e_j)) / 2 - L(w)`` has the same expectation as ``L(w + e) -
    L(w)`` while every odd-order Taylor term, the gradient term first, cancels. The estimate is
    the mean of the ``p_j`` with standard error ``std(p) / sqrt(num_samples)``. For a quadratic
    loss ``p_j = e_j^T H e_j / 2`` exactly. Evaluations are batched (``vmap``) like landscape
    grid points; use ``dtype=torch.float64`` in the objective when ``sigma`` is so small that
    the loss changes near float32 round-off.

    Args:
        objective: the :class:`~flatscope.objective.Objective` ``L`` at its weights ``w``.
        sigma: perturbation scale (relative to ``|w|`` when ``adaptive``).
        num_samples: number of perturbations (``2 * num_samples`` loss evaluations), at least 2.
        adaptive: scale each coordinate's noise by ``|w_i|``.
        seed: seeds the perturbations and the trace estimator's probes.
        trace_method, trace_matvecs: the :func:`flatscope.linalg.trace.trace` method and budget
            for the second-order prediction; ``trace_matvecs=0`` skips it.
        points_per_pass: perturbed points per vectorised forward pass.
        hessian: the objective's Hessian operator, to reuse (and its kept graphs); ``None``
            builds :class:`~flatscope.operators.hessian.HessianOperator` ``(objective)``.
    """
    sigma = _check_positive("sigma", sigma)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(
            f"num_samples must be an integer >= 2 (for an error bar), got {num_samples!r}"
        )
    if not isinstance(trace_matvecs, int) or trace_matvecs < 0:
        raise ValueError(f"trace_matvecs must be a non-negative integer, got {trace_matvecs!r}")
    if hessian is not None and hessian.shape != (objective.dim, objective.dim):
        raise ValueError(
            f"hessian has shape {hessian.shape} but the objective has {objective.dim} parameters"
        )
    evaluator = LossEvaluator(objective, points_per_pass=points_per_pass)
    w = evaluator.origin
    scale = sigma * (w.abs() if adaptive else torch.ones_like(w))
    loss0 = float(evaluator.evaluate(w[None])[0][0])
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    per_call = max(1, evaluator.points_per_call // 2)
    for start in range(0, num_samples, per_call):
        count = min(per_call, num_samples - start)
        # one draw per vector, so the perturbations do not depend on points_per_pass
        Z = [torch.randn(w.numel(), generator=generator, dtype=w.dtype) for _ in range(count)]
        E = torch.stack(Z).to(w.device) * scale
        losses, _ = evaluator.evaluate(torch.cat([w + E, w - E]))
        pairs.append((losses[:count] + losses[count:]) / 2 - loss0)
    p = torch.cat(pairs)
    second_order = second_order_stderr = method = None
    matvecs = 0
    if trace_matvecs > 0:
        operator = HessianOperator(objective) if hessian is None else hessian
        scaled = DiagonallyScaled(operator, w.abs()) if adaptive else operator
        estimate = trace(scaled, method=trace_method, num_matvecs=trace_matvecs, seed=seed)
        second_order = sigma**2 / 2 * float(estimate.value)
        second_order_stderr = sigma**2 / 2 * float(estimate.stderr)
        method, matvecs = estimate.method, int(estimate.num_matvecs)
    return AverageSharpness(
        value=float(p.mean()),
        stderr=float(p.std() / math.sqrt(num_samples)),
        loss=loss0,
        sigma=sigma,
        adaptive=adaptive,
        num_samples=num_samples,
        seed=seed,
        second_order=second_order,
        second_order_stderr=second_order_stderr,
        trace_method=method,
        trace_num_matvecs=matvecs,
    )


def _norm(u: torch.Tensor, norm: str) -> float:
    return float(u.norm() if norm == "l2" else u.abs().max())


def _project(u: torch.Tensor, rho: float, norm: str) -> torch.Tensor:
    """Euclidean projection onto the ``l2`` ball or the ``linf`` box of radius ``rho``."""
    if norm == "linf":
        return u.clamp(-rho, rho)
    length = u.norm()
    return u * (rho / length) if length > rho else u


def _ascent_step(
    u: torch.Tensor, g: torch.Tensor, eta: float, rho: float, norm: str
) -> torch.Tensor:
    """One projected ascent step of length ``eta`` in the constraint's norm."""
    if norm == "linf":
        return _project(u + eta * g.sign(), rho, norm)
    length = g.norm()
    return u if length == 0 else _project(u + eta * g / length, rho, norm)


def worst_case_sharpness(
    objective: Objective,
    rho: float,
    *,
    norm: str = "l2",
    adaptive: bool = False,
    steps: int = 20,
    step_size: float | None = None,
    seed: int = 0,
) -> WorstCaseSharpness:
    """Worst-case (epsilon-) sharpness by projected gradient ascent (Keskar et al. 2017;
    Andriushchenko et al. 2023, who use the adaptive form).

    Write the perturbation as ``e = c * u`` with ``c = |w|`` (adaptive) or ``c = 1`` and
    constrain ``||u||_p <= rho``. Starting from a random point of the sphere (``l2``) or box
    (``linf``) drawn with ``seed``, each step ascends along the gradient in ``u``, ``g_u = c *
    grad L(w + c u)``, by ``step_size`` in the constraint's norm (``l2``: ``u + eta g_u /
    ||g_u||``; ``linf``: ``u + eta sign(g_u)``) and projects back. From ``u = 0`` the first
    ``l2`` step with ``eta = rho`` would be SAM's perturbation (Foret et al., ICLR 2021). The
    result is the largest loss increase over all ``steps + 1`` points visited, a lower bound of
    the maximum. One gradient over all of the data per step.

    Args:
        objective: the :class:`~flatscope.objective.Objective` ``L`` at its weights ``w``.
        rho: radius of the ball (of ``e / |w|`` when ``adaptive``).
        norm: ``"l2"`` or ``"linf"``.
        adaptive: measure the perturbation relative to ``|w|`` coordinate-wise.
        steps: gradient steps.
        step_size: the length of one step in the constraint's norm; ``None`` for ``rho``.
        seed: seeds the random start.
    """
    rho = _check_positive("rho", rho)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    eta = rho if step_size is None else _check_positive("step_size", step_size)
    # one point at a time: the same arithmetic as the gradient passes, so that loss
    # differences do not mix round-off of vectorised and plain kernels
    evaluator = LossEvaluator(objective, points_per_pass=1)
    w = evaluator.origin
    c = w.abs() if adaptive else torch.ones_like(w)
    loss0 = float(evaluator.evaluate(w[None])[0][0])
    generator = torch.Generator().manual_seed(seed)
    if norm == "l2":
        z = torch.randn(w.numel(), generator=generator, dtype=w.dtype).to(w.device)
        u = z * (rho / z.norm())
    else:
        z = torch.rand(w.numel(), generator=generator, dtype=w.dtype).to(w.device)
        u = (2 * z - 1) * rho
    best_loss, best_u = -math.inf, u
    for _ in range(steps):
        loss, gradient = objective.loss_and_gradient_at(w + c * u)
        if loss > best_loss:
            best_loss, best_u = loss, u
        u = _ascent_step(u, c * gradient, eta, rho, norm)
    loss = float(evaluator.evaluate((w + c * u)[None])[0][0])
    if loss > best_loss:
        best_loss, best_u = loss, u
    return WorstCaseSharpness(
        value=best_loss - loss0,
        loss=loss0,
        perturbation_norm=_norm(c * best_u, norm),
        rho=rho,
        norm=norm,
        adaptive=adaptive,
        steps=steps,
        step_size=eta,
        seed=seed,
    )
