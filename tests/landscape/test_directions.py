"""Directions: filter/layer/global normalization, orthogonality, seeding, eigenvectors, PCA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatscope.landscape.directions import (
    eigen_directions,
    flat_weights,
    interpolation_direction,
    pca_directions,
    random_directions,
)
from flatscope.objective import Objective
from flatscope.operators.params import select_parameters, unflatten
from tests.landscape._problems import F64, least_squares, tiny_cnn


def _pieces(model: nn.Module, vector: torch.Tensor) -> dict[str, torch.Tensor]:
    return unflatten(vector, {k: p.detach() for k, p in select_parameters(model).items()})


def _filter_norms(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)


def test_filter_normalization_matches_each_weight_filter_and_zeroes_1d_parameters():
    model, _ = tiny_cnn()
    (d,) = random_directions(model, 1, seed=3)
    pieces, weights = _pieces(model, d.vector), dict(model.named_parameters())
    for name in ("conv.weight", "fc.weight"):  # conv: output channels; linear: rows
        torch.testing.assert_close(
            _filter_norms(pieces[name]), _filter_norms(weights[name].detach()), rtol=1e-14, atol=0
        )
    for name in ("conv.bias", "bn.weight", "bn.bias", "fc.bias"):
        assert torch.count_nonzero(pieces[name]) == 0
    assert d.kind == "random" and d.info["seed"] == 3 and d.info["normalization"] == "filter"


@pytest.mark.parametrize("normalization", ["layer", "global"])
def test_layer_and_global_normalization(normalization):
    model, _ = tiny_cnn()
    (d,) = random_directions(model, 1, normalization=normalization, seed=0)
    pieces, weights = _pieces(model, d.vector), dict(model.named_parameters())
    matrices = ["conv.weight", "fc.weight"]
    if normalization == "layer":
        for name in matrices:
            assert pieces[name].norm().item() == pytest.approx(weights[name].norm().item(), 1e-14)
    else:
        w_norm = torch.cat([weights[n].detach().reshape(-1) for n in matrices]).norm()
        assert d.vector.norm().item() == pytest.approx(w_norm.item(), rel=1e-14)
    # the filter norms are NOT matched by these options (the test above is not vacuous)
    assert not torch.allclose(
        _filter_norms(pieces["conv.weight"]), _filter_norms(weights["conv.weight"].detach())
    )


def test_keeping_1d_parameters_normalizes_each_to_its_weight_norm():
    model, _ = tiny_cnn()
    (d,) = random_directions(model, 1, ignore_1d=False, seed=0)
    pieces, weights = _pieces(model, d.vector), dict(model.named_parameters())
    for name in ("conv.bias", "bn.weight", "bn.bias", "fc.bias"):
        assert pieces[name].norm().item() == pytest.approx(weights[name].norm().item(), 1e-14)


def test_orthogonalized_directions_stay_filter_normalized():
    model, _ = tiny_cnn()
    interp = torch.randn(
        flat_weights(model).numel(), generator=torch.Generator().manual_seed(1), dtype=F64
    )
    d1, d2 = random_directions(model, 2, seed=5, orthogonalize=True, orthogonal_to=[interp])
    scale = d1.vector.norm() * d2.vector.norm()
    assert abs(d1.vector @ d2.vector) < 1e-14 * scale
    assert abs(d1.vector @ interp) < 1e-14 * d1.vector.norm() * interp.norm()
    assert abs(d2.vector @ interp) < 1e-14 * d2.vector.norm() * interp.norm()
    pieces, weights = _pieces(model, d2.vector), dict(model.named_parameters())
    for name in ("conv.weight", "fc.weight"):
        torch.testing.assert_close(
            _filter_norms(pieces[name]), _filter_norms(weights[name].detach()), rtol=1e-13, atol=0
        )
    (plain,) = random_directions(model, 1, seed=5)
    assert not torch.equal(plain.vector, d1.vector)  # orthogonal_to changed d1 too


def test_directions_are_reproducible_from_the_seed():
    model, _ = tiny_cnn()
    a = random_directions(model, 2, seed=7)
    b = random_directions(model, 2, seed=7)
    c = random_directions(model, 2, seed=8)
    assert all(torch.equal(x.vector, y.vector) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0].vector, c[0].vector)
    assert not torch.equal(a[0].vector, a[1].vector)


def test_random_direction_errors():
    model, _ = tiny_cnn()
    with pytest.raises(ValueError, match="normalization"):
        random_directions(model, normalization="filters")
    with pytest.raises(ValueError, match="ignore_1d=False"):
        random_directions(model, params=["*.bias"])
    with pytest.raises(ValueError, match="orthogonal_to"):
        random_directions(model, orthogonal_to=[torch.zeros(3, dtype=F64)])


def test_eigen_directions_are_the_top_hessian_eigenvectors():
    problem = least_squares()
    objective = Objective(problem.model, problem.loss_fn, problem.data)
    directions = eigen_directions(objective, k=2, tol=1e-10)
    for i, d in enumerate(directions):
        assert d.info["eigenvalue"] == pytest.approx(problem.eigenvalues[i].item(), rel=1e-9)
        assert abs(d.vector @ problem.eigenvectors[:, i]).item() == pytest.approx(1.0, abs=1e-9)
        assert d.vector[d.vector.abs().argmax()] > 0  # the sign convention


def test_pca_of_a_planar_trajectory_recovers_the_plane():
    gen = torch.Generator().manual_seed(0)
    d, T = 60, 12
    plane, _ = torch.linalg.qr(torch.randn(d, 2, generator=gen, dtype=F64))
    final = torch.randn(d, generator=gen, dtype=F64)
    coords = torch.randn(T, 2, generator=gen, dtype=F64) * torch.tensor([3.0, 1.0], dtype=F64)
    trajectory = [final + plane @ c for c in coords]
    pca = pca_directions(trajectory, final)
    V = torch.stack([dir_.vector for dir_ in pca.directions], dim=1)
    cosines = torch.linalg.svdvals(plane.T @ V)  # cosines of the principal angles
    torch.testing.assert_close(cosines, torch.ones(2, dtype=F64), rtol=0, atol=1e-12)
    assert pca.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-12)
    assert pca.explained_variance_ratio[0] > pca.explained_variance_ratio[1]
    reconstructed = torch.as_tensor(pca.trajectory) @ V.T
    torch.testing.assert_close(reconstructed, torch.stack(trajectory) - final, rtol=0, atol=1e-12)


def test_pca_needs_two_directions_of_movement():
    final = torch.zeros(5, dtype=F64)
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        pca_directions([torch.ones(5, dtype=F64)], final)
    line = [t * torch.ones(5, dtype=F64) for t in (1.0, 2.0, 3.0)]
    with pytest.raises(ValueError, match="fewer than 2 directions"):
        pca_directions(line, final)


def test_interpolation_direction_is_the_difference():
    start, end = torch.zeros(3, dtype=F64), torch.tensor([3.0, 4.0, 0.0], dtype=F64)
    d = interpolation_direction(start, end)
    assert torch.equal(d.vector, end) and d.info["distance"] == 5.0
    with pytest.raises(ValueError, match="shapes"):
        interpolation_direction(start, torch.zeros(4, dtype=F64))
