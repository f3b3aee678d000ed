"""Function-preserving rescalings against exact float64 Hessians: the raw trace moves by the
predicted factor, every scale-invariant measure stays put to 1e-10.

Two small models: a convolution feeding BatchNorm (eval mode: scaling the convolution by ``c``
keeps the function when the running mean, the running variance and ``eps`` scale by ``c``,
``c^2`` and ``c^2``), and a ReLU layer pair (the first layer's weights and bias scaled by ``c``,
the second layer's weights by ``1 / c``, per layer or per hidden unit).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from flatscope.app.analyze import analyze
from flatscope.linalg import eigenvalues
from flatscope.metrics import AnalysisSettings
from flatscope.metrics.normalized_trace import block_norm_scale
from flatscope.metrics.scaled_trace import scaled_trace
from flatscope.operators import DenseOperator
from flatscope.operators.params import block_slices, flatten, unflatten
from flatscope.operators.scaled import DiagonallyScaled

F64 = torch.float64
INVARIANT = ("scaled_trace", "normalized_trace", "scaled_top_eigenvalue", "adaptive_sharpness")
SETTINGS = AnalysisSettings(num_matvecs=30, dtype="float64", eig_tol=1e-10)


def bn_conv() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 4),
    ).double()
    norm = model[1]
    norm.running_mean.uniform_(-0.2, 0.2)
    norm.running_var.uniform_(0.5, 1.5)
    norm.weight.data.uniform_(0.5, 1.5)
    norm.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def relu_pair() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double().eval()


def data(shape: tuple[int, ...], classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(16, *shape, generator=generator, dtype=F64)
    return x, torch.randint(0, classes, (16,), generator=generator)


def rescale_bn_conv(model: nn.Sequential, c: float) -> nn.Sequential:
    scaled = copy.deepcopy(model)
    norm = scaled[1]
    with torch.no_grad():
        scaled[0].weight.mul_(c)
        norm.running_mean.mul_(c)
        norm.running_var.mul_(c**2)
    norm.eps *= c**2
    return scaled


def rescale_relu_pair(model: nn.Sequential, c: torch.Tensor) -> nn.Sequential:
    """Hidden unit ``j``: incoming weights and bias times ``c_j``, outgoing weights / ``c_j``."""
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled[0].weight.mul_(c[:, None])
        scaled[0].bias.mul_(c)
        scaled[2].weight.div_(c[None, :])
    return scaled


def dense_hessian(model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The exact Hessian of the mean cross-entropy (eval mode), the weights and the blocks."""
    x, y = batch
    like = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def loss(w: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, {**buffers, **unflatten(w, like)}, (x,)), y)

    w = flatten(like.values())
    return torch.autograd.functional.hessian(loss, w), w, block_slices(like)


def invariants(H: torch.Tensor, w: torch.Tensor, blocks: dict) -> dict[str, float]:
    """Each invariant measure on the dense Hessian: exactly, and by the estimators."""
    D = torch.diag(w.abs())
    scale = block_norm_scale(w, blocks)
    top = eigenvalues(DiagonallyScaled(H, w.abs()), 1, "largest", 1e-12, 500, seed=0)
    return {
        "tr(DHD) exact": float(torch.trace(D @ H @ D)),
        "tr(DHD) estimate": scaled_trace(H, w.abs(), SETTINGS)["value"],
        "normalized exact": sum(
            float(w[b].norm() ** 2 * torch.trace(H[b, b])) for b in blocks.values()
        ),
        "normalized estimate": scaled_trace(DenseOperator(H, blocks), scale, SETTINGS)["value"],
        "lambda_max(DHD) exact": float(torch.linalg.eigvalsh(D @ H @ D)[-1]),
        "lambda_max(DHD) lanczos": float(top.values[0]),
    }


def report_entries(model: nn.Module, batch) -> dict:
    report = analyze(
        model,
        "cross_entropy",
        batch,
        (
            "trace",
            *[
                m
                for m in (
                    "scaled_trace",
                    "normalized_trace",
                    "scaled_eigenvalue",
                    "adaptive_sharpness",
                )
            ],
        ),
        progress=False,
        num_matvecs=30,
        dtype="float64",
        eig_tol=1e-10,
        adaptive_sigma=0.1,
    )
    return report.metrics


def assert_same(a, b, path=""):
    """Every number of two nested report values agrees to 1e-10 (relative, or absolute near 0)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a.keys() - {"perturbation_norm"}:  # ||D u|| is measured in weight space
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        assert b == pytest.approx(a, rel=1e-10, abs=1e-13), path
    else:
        assert a == b, path


def test_bn_fed_conv_scaled_by_c():
    model, batch, c = bn_conv(), data((1, 5, 5), 4), 0.25
    scaled = rescale_bn_conv(model, c)
    torch.testing.assert_close(scaled(batch[0]), model(batch[0]), rtol=1e-13, atol=1e-13)
    H, w, blocks = dense_hessian(model, batch)
    H_c, w_c, _ = dense_hessian(scaled, batch)
    conv = blocks["0.weight"]
    # the raw trace: the conv block's trace divides by c^2, the rest stays
    assert float(torch.trace(H_c[conv, conv])) == pytest.approx(
        float(torch.trace(H[conv, conv])) / c**2, rel=1e-10
    )
    predicted = float(torch.trace(H)) - (1 - c**-2) * float(torch.trace(H[conv, conv]))
    assert float(torch.trace(H_c)) == pytest.approx(predicted, rel=1e-10)
    assert float(torch.trace(H_c)) > 1.5 * float(torch.trace(H))  # a visible change
    before, after = invariants(H, w, blocks), invariants(H_c, w_c, blocks)
    for name, value in before.items():
        assert after[name] == pytest.approx(value, rel=1e-10), name
    estimate = scaled_trace(H, w.abs(), SETTINGS)  # within its error bar of the exact value
    assert abs(estimate["value"] - before["tr(DHD) exact"]) <= 3 * estimate["stderr"]
    assert before["lambda_max(DHD) lanczos"] == pytest.approx(
        before["lambda_max(DHD) exact"], rel=1e-10
    )
    # end to end: the report's invariant entries agree, its raw trace does not
    mine, theirs = report_entries(model, batch), report_entries(scaled, batch)
    for entry in INVARIANT:
        assert_same(mine[entry], theirs[entry], entry)
    assert theirs["hessian_trace"]["value"] > 1.5 * mine["hessian_trace"]["value"]


@pytest.mark.parametrize("per_unit", [False, True], ids=["per-layer", "per-unit"])
def test_relu_pair_scaled_c_and_one_over_c(per_unit):
    model, batch = relu_pair(), data((4,), 3)
    c = torch.linspace(0.3, 4.0, 5, dtype=F64) if per_unit else torch.full((5,), 2.5, dtype=F64)
    scaled = rescale_relu_pair(model, c)
    torch.testing.assert_close(scaled(batch[0]), model(batch[0]), rtol=1e-13, atol=1e-13)
    H, w, blocks = dense_hessian(model, batch)
    H_c, w_c, _ = dense_hessian(scaled, batch)
    # the raw trace: incoming coordinates of unit j divide by c_j^2, outgoing multiply by c_j^2
    first_weight, first_bias = blocks["0.weight"], blocks["0.bias"]
    second_weight, second_bias = blocks["2.weight"], blocks["2.bias"]
    factors = torch.ones_like(w)
    factors[first_weight] = (c[:, None] ** -2).expand(5, 4).reshape(-1)
    factors[first_bias] = c**-2
    factors[second_weight] = (c[None, :] ** 2).expand(3, 5).reshape(-1)
    factors[second_bias] = 1.0
    predicted = float((H.diagonal() * factors).sum())
    assert float(torch.trace(H_c)) == pytest.approx(predicted, rel=1e-10)
    assert abs(float(torch.trace(H_c)) / float(torch.trace(H)) - 1) > 0.1
    before, after = invariants(H, w, blocks), invariants(H_c, w_c, blocks)
    normalized = ("normalized exact", "normalized estimate")
    for name, value in before.items():
        if per_unit and name in normalized:
            # per-tensor norms cannot follow unit-wise factors: documented as not invariant
            assert abs(after[name] / value - 1) > 1e-3, name
        else:
            assert after[name] == pytest.approx(value, rel=1e-10), name
    mine, theirs = report_entries(model, batch), report_entries(scaled, batch)
    for entry in INVARIANT:
        if not (per_unit and entry == "normalized_trace"):
            assert_same(mine[entry], theirs[entry], entry)
