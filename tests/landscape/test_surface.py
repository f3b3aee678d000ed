"""Slices and surfaces: exact parabolas on a quadratic, untouched models, npz round trips."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from flatscope.errors import FlatscopeError
from flatscope.landscape.directions import (
    Direction,
    flat_weights,
    floating_buffers,
    interpolation_direction,
    random_directions,
)
from flatscope.landscape.surface import LandscapeResult, slice_1d, surface_2d
from flatscope.objective import Objective
from tests.landscape._problems import F64, least_squares, tiny_cnn


def test_slice_along_an_eigenvector_at_the_minimum_is_the_parabola():
    problem = least_squares()
    v, lam = problem.eigenvectors[:, 0], problem.eigenvalues[0].item()
    result = slice_1d(
        Objective(problem.model, problem.loss_fn, problem.data), v, steps=41, span=(-2, 2)
    )
    alphas = result.coords[0]
    center = problem.loss(problem.minimum)
    np.testing.assert_allclose(result.loss - center, lam * alphas**2 / 2, rtol=0, atol=1e-13)
    assert result.accuracy is None and result.dims == 1
    assert result.metadata["directions"][0]["kind"] == "custom"


def test_surface_on_two_eigenvectors_is_the_quadratic_form_with_ij_indexing():
    problem = least_squares()
    V, lams = problem.eigenvectors, problem.eigenvalues
    result = surface_2d(
        Objective(problem.model, problem.loss_fn, problem.data),
        Direction(V[:, 0], "eigen"),
        Direction(V[:, 3], "eigen"),
        steps=(5, 7),
        span=((-1, 1), (-3, 3)),
        points_per_pass=4,
    )
    A, B = np.meshgrid(*result.coords, indexing="ij")
    expected = problem.loss(problem.minimum) + (lams[0].item() * A**2 + lams[3].item() * B**2) / 2
    assert result.loss.shape == (5, 7)
    np.testing.assert_allclose(result.loss, expected, rtol=1e-13, atol=0)


def test_interpolation_slice_reaches_the_end_point_at_alpha_one():
    problem = least_squares()
    start = problem.minimum
    end = start + torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=F64)
    result = slice_1d(
        Objective(problem.model, problem.loss_fn, problem.data),
        interpolation_direction(start, end),
        steps=5,
        span=(0, 1),
        origin=start,
    )
    assert result.loss[-1] == pytest.approx(problem.loss(end), rel=1e-14)
    assert result.loss[0] == pytest.approx(problem.loss(start), rel=1e-14)


@pytest.mark.parametrize("bn_recompute", [False, True])
def test_the_model_weights_buffers_and_modes_are_left_bit_exact(bn_recompute):
    model, data = tiny_cnn()
    model.train()
    model.fc.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    d1, d2 = random_directions(model, 2, seed=0)
    objective = Objective(model, nn.CrossEntropyLoss(), data)
    surface_2d(objective, d1, d2, steps=3, bn_recompute=bn_recompute)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())


def test_accuracy_is_reported_for_classifiers():
    model, data = tiny_cnn()
    (d,) = random_directions(model, 1, seed=0)
    result = slice_1d(
        Objective(model, nn.CrossEntropyLoss(), data), d, steps=3, data_spec="tiny:21"
    )
    assert result.accuracy.shape == (3,)
    assert np.all((0 <= result.accuracy) & (result.accuracy <= 1))
    assert np.all(result.accuracy * 21 == np.round(result.accuracy * 21))  # k correct of 21
    assert result.metadata["data_spec"] == "tiny:21" and result.metadata["num_samples"] == 21


def test_npz_round_trip(tmp_path):
    model, data = tiny_cnn()
    d1, d2 = random_directions(model, 2, seed=4)
    path = np.array([[0.5, 0.5], [0.1, 0.0], [0.0, 0.0]])
    result = surface_2d(
        Objective(model, nn.CrossEntropyLoss(), data), d1, d2, steps=3, trajectory=path
    )
    file = tmp_path / "surface.npz"
    result.save_npz(file)
    loaded = LandscapeResult.load_npz(file)
    for a, b in zip(loaded.coords, result.coords, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.loss, result.loss)
    np.testing.assert_array_equal(loaded.accuracy, result.accuracy)
    np.testing.assert_array_equal(loaded.trajectory, path)
    assert loaded.metadata == json.loads(json.dumps(result.metadata))
    assert loaded.metadata["directions"][1]["seed"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["surface.npz"]  # no temporary file left


def test_loading_a_foreign_npz_is_a_clear_error(tmp_path):
    np.savez(tmp_path / "other.npz", loss=np.zeros(3))
    with pytest.raises(FlatscopeError, match="flatscope landscape"):
        LandscapeResult.load_npz(tmp_path / "other.npz")
    with pytest.raises(FlatscopeError, match="cannot read"):
        LandscapeResult.load_npz(tmp_path / "missing.npz")


def test_direction_and_grid_errors():
    model, data = tiny_cnn()
    objective = Objective(model, nn.CrossEntropyLoss(), data)
    with pytest.raises(ValueError, match="same params"):
        slice_1d(objective, torch.ones(3, dtype=F64))
    d = Direction(torch.zeros_like(flat_weights(model)), "custom")
    with pytest.raises(ValueError, match="steps"):
        slice_1d(objective, d, steps=0)
    with pytest.raises(ValueError, match="span"):
        slice_1d(objective, d, span=(1, -1))
    with pytest.raises(TypeError, match="Direction"):
        slice_1d(objective, [0.0, 1.0])


def test_interpolation_moves_batchnorm_statistics_so_both_ends_are_the_checkpoints():
    start_model, data = tiny_cnn(seed=0)
    end_model, _ = tiny_cnn(seed=1)
    with torch.no_grad():
        end_model.bn.running_mean.copy_(torch.tensor([-0.4, 0.2, 0.0]))
        end_model.bn.running_var.copy_(torch.tensor([2.0, 0.3, 1.1]))
    loss_fn = nn.CrossEntropyLoss()
    start, end = flat_weights(start_model), flat_weights(end_model)
    objective = Objective(start_model, loss_fn, data)
    own = [objective.loss(), Objective(end_model, loss_fn, data).loss()]
    buffers = (floating_buffers(start_model), floating_buffers(end_model))
    line = interpolation_direction(start, end, buffers=buffers, labels=("a", "b"))
    assert sorted(line.buffers) == ["bn.running_mean", "bn.running_var"]
    result = slice_1d(objective, line, steps=7, span=(-0.5, 1.0))
    np.testing.assert_allclose(result.loss[[2, 6]], own, rtol=1e-12)  # alpha = 0 and 1
    assert result.metadata["interpolated_buffers"] == ["bn.running_mean", "bn.running_var"]
    assert [result.metadata["directions"][0][key] for key in ("start", "end")] == ["a", "b"]
    # halfway, the statistics are the mean of the two checkpoints' (a module-level reference)
    halfway = copy.deepcopy(start_model)
    with torch.no_grad():
        for name, tensor in halfway.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_((tensor + end_model.state_dict()[name]) / 2)
    expected = Objective(halfway, loss_fn, data).loss()
    middle = slice_1d(objective, line, steps=3, span=(0.0, 1.0)).loss[1]
    assert middle == pytest.approx(expected, rel=1e-12)
    # the first checkpoint's statistics all along miss the second checkpoint's own loss
    weights_only = slice_1d(objective, interpolation_direction(start, end), steps=2, span=(0, 1))
    assert abs(weights_only.loss[1] - own[1]) > 1e-3
    recomputed = slice_1d(objective, line, steps=2, span=(0, 1), bn_recompute=True)
    assert recomputed.metadata["interpolated_buffers"] == []


def test_beyond_the_checkpoints_the_statistics_are_the_nearer_ones_and_the_loss_finite():
    """Linear extrapolation would make the running variance negative (the loss NaN) here."""
    start_model, data = tiny_cnn(seed=0)
    end_model, _ = tiny_cnn(seed=1)
    with torch.no_grad():
        start_model.bn.running_var.copy_(torch.tensor([4.0, 3.0, 2.0]))
        end_model.bn.running_var.copy_(torch.tensor([0.1, 0.2, 0.3]))
    loss_fn = nn.CrossEntropyLoss()
    start, end = flat_weights(start_model), flat_weights(end_model)
    objective = Objective(start_model, loss_fn, data)
    buffers = (floating_buffers(start_model), floating_buffers(end_model))
    line = interpolation_direction(start, end, buffers=buffers)
    result = slice_1d(objective, line, steps=5, span=(-0.5, 1.5))  # -0.5, 0, 0.5, 1, 1.5
    assert np.isfinite(result.loss).all()
    # at alpha = 1.5: the end's statistics with the extrapolated weights
    beyond = copy.deepcopy(end_model)
    with torch.no_grad():
        ends = zip(start_model.parameters(), end_model.parameters(), strict=True)
        for p, (a, b) in zip(beyond.parameters(), ends, strict=True):
            p.copy_(a + 1.5 * (b - a))
    assert result.loss[4] == pytest.approx(Objective(beyond, loss_fn, data).loss(), rel=1e-10)
