"""Small test problems with exact references: a least-squares model with a known Hessian and a
tiny CNN with BatchNorm and dropout."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

F64 = torch.float64


@dataclass
class LeastSquares:
    """``L(w) = mean_i (x_i^T w - y_i)^2 / 2`` with Hessian ``X^T X / n = V diag(lams) V^T``."""

    model: nn.Linear
    data: list[tuple[torch.Tensor, torch.Tensor]]
    X: torch.Tensor
    y: torch.Tensor
    hessian: torch.Tensor
    eigenvalues: torch.Tensor  # descending
    eigenvectors: torch.Tensor  # columns, matching eigenvalues
    minimum: torch.Tensor

    @staticmethod
    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((outputs[:, 0] - targets) ** 2).mean()

    def loss(self, w: torch.Tensor) -> float:
        return float(0.5 * ((self.X @ w - self.y) ** 2).mean())

    def set_weights(self, w: torch.Tensor) -> None:
        with torch.no_grad():
            self.model.weight.copy_(w[None])


def least_squares(
    eigenvalues: tuple[float, ...] = (4.0, 1.0, 0.5, 0.25, 0.1), n: int = 40, seed: int = 0
) -> LeastSquares:
    """A least-squares problem at its minimum, data in two batches of unequal size."""
    gen = torch.Generator().manual_seed(seed)
    p = len(eigenvalues)
    lams = torch.tensor(eigenvalues, dtype=F64)
    U, _ = torch.linalg.qr(torch.randn(n, p, generator=gen, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=F64))
    X = n**0.5 * U @ torch.diag(lams.sqrt()) @ V.T
    y = torch.randn(n, generator=gen, dtype=F64)
    minimum = torch.linalg.solve(X.T @ X, X.T @ y)
    model = nn.Linear(p, 1, bias=False).to(F64)
    problem = LeastSquares(
        model, [(X[:15], y[:15]), (X[15:], y[15:])], X, y, X.T @ X / n, lams, V, minimum
    )
    problem.set_weights(minimum)
    return problem


class TinyCNN(nn.Module):
    """Conv (with bias) -> dropout -> BatchNorm -> ReLU -> linear; 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.drop(self.conv(x)))).flatten(1))


def tiny_cnn(seed: int = 0) -> tuple[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A float64 TinyCNN with non-trivial BatchNorm statistics and 3 batches (sizes 8, 8, 5)."""
    model = TinyCNN().to(F64)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # weights from the seeded generator, not the global RNG
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=F64))
    x = torch.randn(21, 1, 4, 4, generator=gen, dtype=F64)
    y = torch.randint(0, 3, (21,), generator=gen)
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        model.bn.running_var.copy_(torch.tensor([0.5, 1.5, 2.0]))
    return model, [(x[0:8], y[0:8]), (x[8:16], y[8:16]), (x[16:], y[16:])]
