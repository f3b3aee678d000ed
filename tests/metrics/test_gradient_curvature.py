"""The curvature along the gradient equals g^T H g / ||g||^2 of a quadratic with known H."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flatscope as fs
from flatscope.app.compare import metric_rows

F64 = torch.float64


class Quadratic(nn.Module):
    """Outputs ``0.5 w^T A w`` for every sample: with the mean output as the loss, ``H = A``
    and ``g = A w``."""

    def __init__(self, A: torch.Tensor, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("A", A)
        self.w = nn.Parameter(w.clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return (0.5 * self.w @ self.A @ self.w).expand(inputs.shape[0])


def mean_output(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return outputs.mean()


def analyse(A: torch.Tensor, w: torch.Tensor) -> dict:
    data = (torch.zeros(3, 1, dtype=F64), torch.zeros(3, dtype=F64))
    report = fs.analyze(
        Quadratic(A, w), mean_output, data, "gradient_curvature", dtype="float64", progress=False
    )
    return report.metrics


def test_the_rayleigh_quotient_at_the_gradient_is_exact():
    generator = torch.Generator().manual_seed(0)
    B = torch.randn(6, 6, generator=generator, dtype=F64)
    A = B @ B.T + torch.eye(6, dtype=F64)
    w = torch.randn(6, generator=generator, dtype=F64)
    g = A @ w
    expected = float(g @ A @ g / (g @ g))
    entry = analyse(A, w)["gradient_curvature"]
    assert entry["value"] == pytest.approx(expected, rel=1e-12)
    assert entry["cauchy_step"] == pytest.approx(1 / expected, rel=1e-12)
    assert entry["num_matvecs"] == 1
    assert metric_rows(analyse(A, w))["gradient curvature"] == (entry["value"], None)


def test_negative_curvature_has_no_cauchy_step_and_a_zero_gradient_no_value():
    A = torch.diag(torch.tensor([-2.0, 1.0], dtype=F64))
    entry = analyse(A, torch.tensor([1.0, 0.0], dtype=F64))["gradient_curvature"]
    assert entry["value"] == pytest.approx(-2.0, rel=1e-12)
    assert entry["cauchy_step"] is None
    at_minimum = analyse(torch.eye(2, dtype=F64), torch.zeros(2, dtype=F64))
    assert at_minimum["gradient_curvature"] == {
        "value": None,
        "cauchy_step": None,
        "num_matvecs": 0,
    }
