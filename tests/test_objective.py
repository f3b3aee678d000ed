"""Objective: loss and gradient against direct full-batch computation in float64, values at
other points, one counting pass (none when the size is given), snapshots and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

import flatscope as fs
from flatscope.landscape import average_sharpness, slice_1d, worst_case_sharpness
from flatscope.params import unflatten

F64 = torch.float64


def _problem(n: int = 17):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g, dtype=F64)
    y = torch.randint(0, 3, (n,), generator=g)
    batches = [(x[:7], y[:7]), (x[7:14], y[7:14]), (x[14:], y[14:])]  # sizes 7, 7, 3
    return model, nn.CrossEntropyLoss(), x, y, batches


def _direct(model, loss_fn, x, y, w):
    """The loss of all samples in one batch at flat weights ``w``, and its autograd gradient."""
    like = {name: p.detach() for name, p in model.named_parameters()}
    w = w.detach().clone().requires_grad_(True)
    loss = loss_fn(functional_call(model, unflatten(w, like), (x,)), y)
    (gradient,) = torch.autograd.grad(loss, w)
    return loss.item(), gradient


class CountingBatches:
    """A re-iterable list of batches that counts the batches it hands out."""

    def __init__(self, batches):
        self.batches, self.served = batches, 0

    def __iter__(self):
        for batch in self.batches:
            self.served += 1
            yield batch


def test_loss_and_gradient_equal_the_full_batch_values_over_unequal_batches():
    model, loss_fn, x, y, batches = _problem()
    objective = fs.Objective(model, loss_fn, batches)
    loss, gradient = _direct(model, loss_fn, x, y, objective.flat_params())
    assert objective.num_samples == 17 and objective.dim == 43
    assert objective.loss() == pytest.approx(loss, rel=1e-14)
    torch.testing.assert_close(objective.gradient(), gradient, rtol=1e-13, atol=1e-16)


def test_values_at_other_points():
    model, loss_fn, x, y, batches = _problem()
    objective = fs.Objective(model, loss_fn, batches)
    w = objective.flat_params() + 0.3 * torch.randn(
        objective.dim, generator=torch.Generator().manual_seed(2), dtype=F64
    )
    loss, gradient = _direct(model, loss_fn, x, y, w)
    assert objective.loss_at(w) == pytest.approx(loss, rel=1e-14)
    at_w, gradient_at_w = objective.loss_and_gradient_at(w)
    assert at_w == pytest.approx(loss, rel=1e-14)
    torch.testing.assert_close(gradient_at_w, gradient, rtol=1e-13, atol=1e-16)
    assert objective.loss() != pytest.approx(loss)  # w is another point
    with pytest.raises(ValueError, match=r"shape \(43,\)"):
        objective.loss_at(w[:-1])


def test_the_flat_view_follows_the_parameter_selection():
    model, loss_fn, _, _, batches = _problem()
    objective = fs.Objective(model, loss_fn, batches, params="2.*")
    assert objective.param_names == ["2.weight", "2.bias"]
    assert objective.blocks == {"2.weight": slice(0, 15), "2.bias": slice(15, 18)}
    assert objective.shapes == {"2.weight": (3, 5), "2.bias": (3,)}
    assert set(objective.fixed_tensors) == {"0.weight", "0.bias"}
    pieces = objective.unflatten(objective.flat_params())
    assert torch.equal(pieces["2.weight"], model[2].weight.detach())


def test_samples_are_counted_in_one_pass_or_not_at_all():
    model, loss_fn, _, _, batches = _problem()
    data = CountingBatches(batches)
    objective = fs.Objective(model, loss_fn, data)
    # one counting pass (3 batches) and the determinism check's first batch, twice
    assert data.served == 3 + 2
    given = CountingBatches(batches)
    assert fs.Objective(model, loss_fn, given, num_samples=17).num_samples == 17
    assert given.served == 2
    # consumers of the objective count nothing again
    served = data.served
    fs.HessianOperator(objective)
    fs.landscape.LossEvaluator(objective)
    assert data.served == served


def test_one_objective_serves_the_operator_landscape_and_sharpness():
    model, loss_fn, _, _, batches = _problem()
    objective = fs.Objective(model, loss_fn, batches)
    op = fs.HessianOperator(objective)
    (direction,) = fs.random_directions(model, 1, seed=0)
    line = slice_1d(objective, direction, steps=3)
    assert line.loss[1] == pytest.approx(op.loss(), rel=1e-14)  # alpha = 0
    average = average_sharpness(objective, 0.01, num_samples=2, trace_matvecs=4, hessian=op)
    assert op.num_matvecs == average.trace_num_matvecs == 4  # the products ran on op
    worst = worst_case_sharpness(objective, 0.01, steps=1)
    assert worst.loss == average.loss == pytest.approx(objective.loss(), rel=1e-14)


def test_the_objective_is_a_snapshot_of_the_model():
    model, loss_fn, x, y, batches = _problem()
    model.train()
    objective = fs.Objective(model, loss_fn, batches)
    before = objective.loss()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert objective.loss() == before
    assert model.training  # eval mode only while evaluating


def test_state_version_sees_in_place_changes_of_data_and_fixed_tensors():
    model, loss_fn, x, y, _ = _problem()
    objective = fs.Objective(model, loss_fn, [(x, y)], params="2.*")
    version = objective.state_version()
    assert objective.state_version() == version
    x.mul_(2.0)
    assert objective.state_version() != version
    version = objective.state_version()
    objective.fixed_tensors["0.weight"].add_(0.0)  # an in-place write, even of nothing
    assert objective.state_version() != version
    loader = DataLoader(TensorDataset(x, y), batch_size=5)
    on_loader = fs.Objective(model, loss_fn, loader)
    version = on_loader.state_version()
    y[0] = (y[0] + 1) % 3
    assert on_loader.state_version() != version


def test_bad_input_is_refused_with_clear_errors():
    model, loss_fn, x, y, batches = _problem()
    with pytest.raises(ValueError, match="num_samples"):
        fs.Objective(model, loss_fn, batches, num_samples=0)
    with pytest.raises(ValueError, match="empty"):
        fs.Objective(model, loss_fn, [], num_samples=3)
    with pytest.raises(ValueError, match="shuffle=False"):
        fs.Objective(model, loss_fn, DataLoader(TensorDataset(x, y), shuffle=True))
    with pytest.raises(ValueError, match="one-shot"):
        fs.Objective(model, loss_fn, iter(batches))
    with pytest.raises(TypeError, match="floating-point"):
        fs.Objective(model, loss_fn, batches, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"\(inputs, targets\) pair"):
        fs.Objective(model, loss_fn, [(x, y, y)])
    objective = fs.Objective(model, loss_fn, batches)
    with pytest.raises(TypeError, match="not both"):
        fs.HessianOperator(objective, loss_fn)
