"""Symmetric test matrices with known spectra, in float64."""

from __future__ import annotations

import torch

F64 = torch.float64


def planted(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``Q diag(eigenvalues) Q^T`` with a Haar-random orthogonal ``Q``."""
    d = eigenvalues.numel()
    generator = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=F64))
    Q = Q * R.diagonal().sign()
    A = (Q * eigenvalues.to(F64)) @ Q.mT
    return (A + A.mT) / 2


def network_like(d: int = 80, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An indefinite spectrum like a trained network's Hessian: a few large outliers, one
    negative (a saddle direction), and a bulk near zero. Returns ``(matrix, eigenvalues)``."""
    generator = torch.Generator().manual_seed(seed + 1000)
    outliers = torch.tensor([40.0, 25.0, 15.0, 8.0, -6.0], dtype=F64)
    bulk = 0.05 * torch.randn(d - outliers.numel(), generator=generator, dtype=F64) + 0.01
    eigenvalues = torch.cat([outliers, bulk])
    return planted(eigenvalues, seed), eigenvalues.sort().values
