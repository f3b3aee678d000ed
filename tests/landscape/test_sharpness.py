"""Sharpness on a least-squares loss, whose Hessian is known exactly."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from flatscope.landscape.sharpness import average_sharpness, worst_case_sharpness
from flatscope.objective import Objective
from tests.landscape._problems import F64, least_squares


def _away_from_the_minimum(problem):
    """Move off the minimum, so the gradient term is present (and must cancel)."""
    w = problem.minimum + torch.tensor([0.3, -0.2, 0.5, 0.1, -0.4], dtype=F64)
    problem.set_weights(w)
    return w


@pytest.mark.parametrize("adaptive", [False, True])
def test_gaussian_sharpness_matches_half_sigma_squared_trace_within_its_error_bar(adaptive):
    problem = least_squares()
    w = _away_from_the_minimum(problem)
    sigma = 0.1
    # for a quadratic, E[L(w + e) - L(w)] = E[e^T H e] / 2 exactly; adaptive: e_i ~ sigma |w_i| z_i
    scale = w.abs() if adaptive else torch.ones_like(w)
    exact = sigma**2 / 2 * float((scale**2 * problem.hessian.diagonal()).sum())
    objective = Objective(problem.model, problem.loss_fn, problem.data)
    result = average_sharpness(objective, sigma, num_samples=64, adaptive=adaptive)
    assert result.stderr > 0
    assert abs(result.value - exact) < 3 * result.stderr
    assert abs(result.second_order - exact) <= 3 * result.second_order_stderr + 1e-12 * exact
    assert result.loss == pytest.approx(problem.loss(w), rel=1e-14)
    assert result.trace_num_matvecs > 0 and result.adaptive is adaptive


def test_gaussian_sharpness_is_reproducible_and_independent_of_batching():
    problem = least_squares()
    _away_from_the_minimum(problem)
    args = (Objective(problem.model, problem.loss_fn, problem.data), 0.2)
    a = average_sharpness(*args, num_samples=10, seed=3, trace_matvecs=0)
    b = average_sharpness(*args, num_samples=10, seed=3, trace_matvecs=0, points_per_pass=1)
    c = average_sharpness(*args, num_samples=10, seed=4, trace_matvecs=0)
    assert a.value == pytest.approx(b.value, rel=1e-12)
    assert a.value != c.value
    assert a.second_order is None and a.trace_method is None
    assert json.loads(json.dumps(a.to_dict()))["num_samples"] == 10


def test_worst_case_l2_sharpness_at_a_minimum_reaches_half_rho_squared_lambda_max():
    problem = least_squares()
    rho = 0.5
    objective = Objective(problem.model, problem.loss_fn, problem.data)
    result = worst_case_sharpness(objective, rho, steps=30)
    bound = rho**2 * problem.eigenvalues[0].item() / 2  # max of e^T H e / 2 on the l2 ball
    assert result.value <= bound * (1 + 1e-12)
    assert result.value == pytest.approx(bound, rel=1e-6)
    assert result.perturbation_norm == pytest.approx(rho, rel=1e-12)


def test_adaptive_worst_case_sharpness_uses_the_scaled_hessian():
    problem = least_squares()
    w, rho = problem.minimum, 0.3
    C = torch.diag(w.abs())
    bound = rho**2 * torch.linalg.eigvalsh(C @ problem.hessian @ C)[-1].item() / 2
    objective = Objective(problem.model, problem.loss_fn, problem.data)
    result = worst_case_sharpness(objective, rho, adaptive=True, steps=60)
    assert result.value <= bound * (1 + 1e-12)
    assert result.value == pytest.approx(bound, rel=1e-6)


def test_worst_case_linf_sharpness_finds_the_best_vertex_of_the_box():
    problem = least_squares()
    rho = 0.2
    objective = Objective(problem.model, problem.loss_fn, problem.data)
    result = worst_case_sharpness(objective, rho, norm="linf")
    # a convex quadratic attains its maximum over a box at a vertex: enumerate all 2^5
    vertices = torch.tensor(list(itertools.product([-rho, rho], repeat=5)), dtype=F64)
    best = float(((vertices @ problem.hessian) * vertices).sum(dim=1).max() / 2)
    assert result.value == pytest.approx(best, rel=1e-12)
    assert result.perturbation_norm == pytest.approx(rho, rel=1e-12)
    assert result.to_dict()["norm"] == "linf"


def test_sharpness_arguments_are_checked():
    problem = least_squares()
    args = (Objective(problem.model, problem.loss_fn, problem.data),)
    with pytest.raises(ValueError, match="sigma"):
        average_sharpness(*args, -1.0)
    with pytest.raises(ValueError, match="num_samples"):
        average_sharpness(*args, 0.1, num_samples=1)
    with pytest.raises(ValueError, match="norm"):
        worst_case_sharpness(*args, 0.1, norm="l1")
    with pytest.raises(ValueError, match="rho"):
        worst_case_sharpness(*args, 0.0)
