"""LossEvaluator against plain module forward passes, one point at a time, in float64."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import vector_to_parameters

from flatscope.landscape.directions import random_directions
from flatscope.landscape.evaluation import LossEvaluator
from flatscope.objective import Objective
from tests.landscape._problems import F64, least_squares, tiny_cnn


def _random_points(w: torch.Tensor, k: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return w + 0.3 * torch.randn(k, w.numel(), generator=gen, dtype=w.dtype)


def _reference(model, loss_fn, data, w, recompute_bn=False):
    """Mean loss and accuracy at ``w`` from a loaded copy of the module (no functional_call)."""
    clone = copy.deepcopy(model)
    vector_to_parameters(w, clone.parameters())
    if recompute_bn:
        clone.bn.reset_running_stats()
        clone.bn.momentum = None
        clone.bn.train()
        with torch.no_grad():
            for x, _ in data:
                clone.bn(clone.conv(x))
    clone.eval()
    total = correct = 0.0
    with torch.no_grad():
        for x, y in data:
            out = clone(x)
            total += float(loss_fn(out, y)) * len(y)
            correct += float((out.argmax(1) == y).sum())
    n = sum(len(y) for _, y in data)
    return total / n, correct / n


def test_vmapped_points_equal_the_one_point_loop_and_plain_forward_passes():
    model, data = tiny_cnn()
    loss_fn = nn.CrossEntropyLoss()
    loop = LossEvaluator(Objective(model, loss_fn, data), points_per_pass=1)
    batched = LossEvaluator(Objective(model, loss_fn, data), points_per_pass=3)
    W = _random_points(loop.origin, 7)  # chunks of 3, 3 and 1 points
    loss_loop, acc_loop = loop.evaluate(W)
    loss_vmap, acc_vmap = batched.evaluate(W)
    torch.testing.assert_close(loss_vmap, loss_loop, rtol=1e-13, atol=0)
    assert torch.equal(acc_vmap, acc_loop)
    for i in (0, 6):
        loss, acc = _reference(model, loss_fn, data, W[i])
        assert loss_loop[i].item() == pytest.approx(loss, rel=1e-13)
        assert acc_loop[i].item() == acc


def test_vmapped_points_with_shared_parameters_or_one_repeated_point():
    model, data = tiny_cnn()
    loss_fn = nn.CrossEntropyLoss()
    loop = LossEvaluator(Objective(model, loss_fn, data), points_per_pass=1)
    batched = LossEvaluator(Objective(model, loss_fn, data), points_per_pass=4)
    # random directions are zero on biases and BatchNorm parameters: those are not batched
    D = torch.stack([d.vector for d in random_directions(model, 2, seed=2)])
    coefficients = torch.tensor([[0.5, -1.0], [0.0, 0.0], [-0.25, 0.75], [1.0, 1.0]], dtype=F64)
    repeated = loop.origin.repeat(3, 1)
    for W in (loop.origin + coefficients @ D, repeated):
        loss_loop, acc_loop = loop.evaluate(W)
        loss_vmap, acc_vmap = batched.evaluate(W)
        torch.testing.assert_close(loss_vmap, loss_loop, rtol=1e-13, atol=0)
        assert torch.equal(acc_vmap, acc_loop)


def test_recomputed_batchnorm_statistics_match_a_module_level_reference():
    model, data = tiny_cnn()
    loss_fn = nn.CrossEntropyLoss()
    evaluator = LossEvaluator(Objective(model, loss_fn, data), bn_recompute=True)
    W = _random_points(evaluator.origin, 2)
    losses, accuracies = evaluator.evaluate(W)
    plain, _ = LossEvaluator(Objective(model, loss_fn, data)).evaluate(W)
    for i in range(2):
        loss, acc = _reference(model, loss_fn, data, W[i], recompute_bn=True)
        assert losses[i].item() == pytest.approx(loss, rel=1e-13)
        assert accuracies[i].item() == acc
        assert abs(losses[i].item() - plain[i].item()) > 1e-3  # the statistics did change
    assert evaluator.points_per_pass == 1
    assert model.bn.momentum == 0.1 and model.bn.num_batches_tracked.item() == 0


def test_bn_recompute_without_batchnorm_is_a_clear_error():
    problem = least_squares()
    with pytest.raises(ValueError, match="no BatchNorm"):
        LossEvaluator(Objective(problem.model, problem.loss_fn, problem.data), bn_recompute=True)


class ItemCallingModel(nn.Module):
    """A forward pass vmap cannot batch (``.item()`` inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3).to(F64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * (1.0 + 0.0 * self.fc.weight.sum().item())


def test_automatic_batching_falls_back_to_the_loop_where_vmap_fails(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(6, 4, generator=gen, dtype=F64), torch.tensor([0, 1, 2, 0, 1, 2]))
    model, loss_fn = ItemCallingModel(), nn.CrossEntropyLoss()
    # the automatic choice on an accelerator is a vectorised pass
    monkeypatch.setattr(LossEvaluator, "_default_points_per_pass", lambda self: 4)
    auto = LossEvaluator(Objective(model, loss_fn, data))
    assert auto.points_per_pass == 4
    W = _random_points(auto.origin, 3)
    loss_auto, _ = auto.evaluate(W)
    assert auto.points_per_pass == 1
    loss_loop, _ = LossEvaluator(Objective(model, loss_fn, data), points_per_pass=1).evaluate(W)
    assert torch.equal(loss_auto, loss_loop)
    with pytest.raises(RuntimeError, match="item"):
        LossEvaluator(Objective(model, loss_fn, data), points_per_pass=2).evaluate(W)


class TiedModel(nn.Module):
    """The output layer reuses the input layer's weight (one parameter, two names)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(3, 3).to(F64)
        self.dec = nn.Linear(3, 3).to(F64)
        self.dec.weight = self.enc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(torch.tanh(self.enc(x)))


@pytest.mark.parametrize("points_per_pass", [1, 2])
def test_tied_weights_move_together(points_per_pass):
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(5, 3, generator=gen, dtype=F64), torch.tensor([0, 1, 2, 0, 1]))
    model, loss_fn = TiedModel(), nn.CrossEntropyLoss()
    evaluator = LossEvaluator(Objective(model, loss_fn, data), points_per_pass=points_per_pass)
    W = _random_points(evaluator.origin, 2)
    losses, _ = evaluator.evaluate(W)
    for i in range(2):
        clone = copy.deepcopy(model)
        vector_to_parameters(W[i], clone.parameters())  # sets the shared weight once
        with torch.no_grad():
            assert losses[i].item() == pytest.approx(float(loss_fn(clone(data[0]), data[1])), 1e-13)


def test_loss_and_gradient_match_least_squares_formulas_and_accuracy_is_none():
    problem = least_squares()
    objective = Objective(problem.model, problem.loss_fn, problem.data)
    evaluator = LossEvaluator(objective)
    w = _random_points(problem.minimum, 1)[0]
    loss, gradient = objective.loss_and_gradient_at(w)
    n = len(problem.y)
    assert loss == pytest.approx(problem.loss(w), rel=1e-14)
    torch.testing.assert_close(
        gradient, problem.X.T @ (problem.X @ w - problem.y) / n, rtol=1e-12, atol=1e-14
    )
    losses, accuracy = evaluator.evaluate(w[None])
    assert losses.item() == pytest.approx(loss, rel=1e-14) and accuracy is None


def test_bad_points_per_pass_and_point_shapes_are_rejected():
    problem = least_squares()
    with pytest.raises(ValueError, match="points_per_pass"):
        LossEvaluator(Objective(problem.model, problem.loss_fn, problem.data), points_per_pass=0)
    evaluator = LossEvaluator(Objective(problem.model, problem.loss_fn, problem.data))
    with pytest.raises(ValueError, match=r"shape \(k, 5\)"):
        evaluator.evaluate(torch.zeros(3, dtype=F64))
