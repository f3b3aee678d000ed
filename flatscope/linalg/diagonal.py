"""Hutchinson-type estimate of the diagonal of a symmetric operator, with per-entry errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from flatscope.linalg._common import (
    as_symmetric_operator,
    check_count,
    probe_products,
)
from flatscope.operators.base import LinearOperator

__all__ = ["DiagonalEstimate", "diagonal"]


@dataclass
class DiagonalEstimate:
    """An estimate of ``diag(A)``.

    Attributes:
        values: ``(d,)`` estimated diagonal.
        stderr: ``(d,)`` standard error of each entry.
        num_matvecs: matrix-vector products spent.
    """

    values: torch.Tensor
    stderr: torch.Tensor
    num_matvecs: int

    def to_dict(self) -> dict:
        """JSON-friendly plain Python types."""
        return {
            "values": self.values.tolist(),
            "stderr": self.stderr.tolist(),
            "num_matvecs": self.num_matvecs,
        }


def diagonal(
    A: LinearOperator | torch.Tensor,
    num_matvecs: int = 100,
    seed: int = 0,
    probe: str = "rademacher",
    batch_size: int | None = None,
) -> DiagonalEstimate:
    """Estimate ``diag(A) ~ (1/m) sum_i z_i * (A z_i)`` (Bekas, Kokiopoulou, Saad 2007).

    With Rademacher probes (the default) entry ``j`` of each sample is
    ``A_jj + sum_{k != j} A_jk z_j z_k``: unbiased with variance ``sum_{k != j} A_jk^2``, so a
    diagonal matrix is recovered exactly. The standard error of each entry is the sample
    standard deviation of its ``m`` samples over ``sqrt(m)``. Samples are accumulated batch by
    batch (Chan, Golub, LeVeque pairwise update), so only ``batch_size`` probes are in memory.
    """
    op = as_symmetric_operator(A)
    check_count("num_matvecs", num_matvecs, minimum=2)
    start = op.num_matvecs
    count, mean, sq_dev = 0, None, None
    for Z, AZ in probe_products(op, num_matvecs, probe, seed, batch_size):
        samples = Z * AZ
        n = samples.shape[1]
        batch_mean = samples.mean(1)
        batch_sq_dev = (samples - batch_mean[:, None]).square().sum(1)
        if mean is None:
            mean, sq_dev = batch_mean, batch_sq_dev
        else:
            delta = batch_mean - mean
            mean = mean + delta * (n / (count + n))
            sq_dev = sq_dev + batch_sq_dev + delta.square() * (count * n / (count + n))
        count += n
    stderr = (sq_dev / (count - 1)).sqrt() / math.sqrt(count)
    return DiagonalEstimate(mean, stderr, op.num_matvecs - start)
