"""Spectral density estimates: stochastic Lanczos quadrature and the kernel polynomial method.

The spectral density of a symmetric ``d x d`` matrix is
``phi(t) = (1/d) sum_i delta(t - lambda_i)``. For a random unit vector ``v`` with
``E[v v^T] = I/d``, ``phi`` is the expectation of the measure
``mu_v = sum_i (v^T u_i)^2 delta(t - lambda_i)``. Both methods approximate each ``mu_v`` by a
discrete measure (nodes and nonnegative weights summing to one) and average over probes;
:meth:`SpectralDensity.evaluate` smooths the average with a Gaussian kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from flatscope.io.spectral_measure import (
    default_width,
    density_grid,
    smoothed_density,
)
from flatscope.linalg._common import (
    as_symmetric_operator,
    check_choice,
    check_count,
    probes,
    seeded_generator,
)
from flatscope.linalg.lanczos import lanczos, lanczos_batched
from flatscope.operators.base import LinearOperator

__all__ = ["SpectralDensity", "spectral_density"]

_F64 = torch.float64


@dataclass
class SpectralDensity:
    """A spectral density as one discrete measure per probe.

    Attributes:
        nodes: ``(num_probes, m)`` support points (float64, CPU).
        weights: ``(num_probes, m)`` nonnegative weights; each row sums to one. Rows of chains
            that stopped early are padded with zero weights.
        num_matvecs: matrix-vector products spent.
        method: ``"slq"`` or ``"kpm"``.
    """

    nodes: torch.Tensor
    weights: torch.Tensor
    num_matvecs: int
    method: str

    def _measure(self) -> tuple[np.ndarray, np.ndarray]:
        return self.nodes.cpu().numpy(), self.weights.cpu().numpy()

    def default_width(self) -> float:
        """``RELATIVE_WIDTH`` times the range of the nodes (or of ``max(|node|, 1)`` if the
        nodes coincide)."""
        return default_width(*self._measure())

    def evaluate(self, grid: torch.Tensor, width: float | None = None) -> torch.Tensor:
        """The density smoothed by a Gaussian of standard deviation ``width`` at ``grid``:
        ``(1/P) sum_p sum_j w_pj N(t; theta_pj, width^2)``
        (:func:`flatscope.io.spectral_measure.smoothed_density`). It integrates to one over the
        real line; ``width=None`` uses :meth:`default_width`."""
        width = self.default_width() if width is None else width
        t = torch.as_tensor(grid, dtype=_F64).cpu().numpy()
        return torch.from_numpy(smoothed_density(*self._measure(), t, width))

    def grid(self, num_points: int = 1000, width: float | None = None) -> torch.Tensor:
        """Evaluation points for plots, also on a log density scale: a uniform grid over the
        nodes' range padded by ``5 width``, plus 17 points within ``4 width`` of every node so
        that each narrow peak (an isolated outlier eigenvalue) is resolved."""
        width = self.default_width() if width is None else float(width)
        return torch.from_numpy(density_grid(*self._measure(), width, num_points))

    def moment(self, order: int) -> tuple[float, float]:
        """Estimate of ``tr(A^order) / d`` and its standard error over probes.

        For SLQ each probe's value ``sum_j w_j theta_j^order = v^T A^order v`` is exact for
        ``order < 2 num_steps``, so this is Hutchinson's estimator with normalized probes. For
        KPM it is the moment of the Jackson-smoothed measure (slightly damped).
        """
        check_count("order", order, minimum=0)
        per_probe = (self.weights * self.nodes**order).sum(1)
        p = per_probe.numel()
        stderr = float(per_probe.std() / math.sqrt(p)) if p > 1 else math.nan
        return float(per_probe.mean()), stderr

    def to_dict(self) -> dict:
        """JSON-friendly plain Python types."""
        return {
            "method": self.method,
            "nodes": self.nodes.tolist(),
            "weights": self.weights.tolist(),
            "num_matvecs": self.num_matvecs,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SpectralDensity:
        """Inverse of :meth:`to_dict`."""
        return cls(
            torch.tensor(data["nodes"], dtype=_F64),
            torch.tensor(data["weights"], dtype=_F64),
            int(data["num_matvecs"]),
            str(data["method"]),
        )


def _slq(
    op: LinearOperator, num_steps: int, V0: torch.Tensor, reorthogonalize: bool
) -> tuple[torch.Tensor, ...]:
    """Stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017): for each unit start vector the
    Gauss quadrature of ``mu_v`` has the Ritz values as nodes and the squared first components
    of the eigenvectors of ``T`` as weights."""
    chains = lanczos_batched(op, num_steps, V0, dtype=_F64, reorthogonalize=reorthogonalize)
    m = max(chain.num_matvecs for chain in chains)
    nodes = torch.zeros(len(chains), m, dtype=_F64)
    weights = torch.zeros(len(chains), m, dtype=_F64)
    for i, chain in enumerate(chains):
        theta, S = chain.ritz()
        n = theta.numel()
        nodes[i, :n], nodes[i, n:] = theta.cpu(), theta[-1].cpu()
        weights[i, :n] = S[0].square().cpu()
    return nodes, weights


def _jackson(num_moments: int) -> torch.Tensor:
    """Jackson damping factors ``g_k``, ``k = 0..M-1`` (Weisse et al., Rev. Mod. Phys. 2006)."""
    M = num_moments
    k = torch.arange(M, dtype=_F64)
    a = math.pi / (M + 1)
    return ((M - k + 1) * torch.cos(a * k) + torch.sin(a * k) / math.tan(a)) / (M + 1)


def _spectral_bounds(op: LinearOperator, seed: int) -> tuple[float, float]:
    """An interval that contains the spectrum: extreme Ritz values of a short Lanczos run
    widened by the residual norm (Zhou & Li 2011), plus 1% of the range."""
    chain = lanczos(op, min(op.shape[0], 30), seed=seed, dtype=_F64)
    theta = chain.ritz()[0]
    low = float(theta[0]) - chain.residual_norm
    high = float(theta[-1]) + chain.residual_norm
    pad = 0.01 * max(high - low, abs(high), 1e-12)
    return low - pad, high + pad


def _kpm(
    op: LinearOperator, num_steps: int, V0: torch.Tensor, seed: int
) -> tuple[torch.Tensor, ...]:
    """Kernel polynomial method (Lin, Saad, Yang, SIAM Review 2016) with Jackson damping.

    With the spectrum mapped into ``[-1, 1]`` by ``B = (A - c I)/h``, the Chebyshev moments
    ``mu_k = v^T T_k(B) v`` for ``k < 2 num_steps`` come from ``num_steps`` products per probe
    (``mu_{2k} = 2 |T_k v|^2 - mu_0``, ``mu_{2k+1} = 2 (T_{k+1} v)^T T_k v - mu_1``). The damped
    expansion ``p(x) = g_0 mu_0 + 2 sum_k g_k mu_k T_k(x)`` of the density (against
    ``1 / (pi sqrt(1 - x^2))``) is stored as a measure on ``Q = 4 M`` Chebyshev-Gauss nodes
    ``x_j`` with weights ``p(x_j) / Q``, which are nonnegative and sum to ``g_0 mu_0 = 1``.
    """
    low, high = _spectral_bounds(op, seed)
    center, half = (high + low) / 2, (high - low) / 2

    def apply_b(X: torch.Tensor) -> torch.Tensor:
        return ((op @ X.to(op.dtype)).to(_F64) - center * X) / half

    previous, current = V0, apply_b(V0)
    moments = {0: (previous * previous).sum(0), 1: (current * previous).sum(0)}
    for k in range(1, num_steps):
        previous, current = current, 2 * apply_b(current) - previous
        moments[2 * k] = 2 * (previous * previous).sum(0) - moments[0]
        moments[2 * k + 1] = 2 * (current * previous).sum(0) - moments[1]
    M = 2 * num_steps
    mu = torch.stack([moments[k] for k in range(M)], dim=1).cpu()  # (P, M)
    Q = 4 * M
    x = torch.cos(math.pi * (torch.arange(Q, dtype=_F64) + 0.5) / Q)
    chebyshev = torch.cos(torch.arange(M, dtype=_F64)[:, None] * torch.arccos(x))  # (M, Q)
    damped = mu * _jackson(M)
    p = 2 * damped @ chebyshev - damped[:, :1]
    weights = (p / Q).clamp_min(0)  # nonnegative in exact arithmetic
    nodes = (center + half * x).expand_as(weights).clone()
    return nodes, weights


def spectral_density(
    A: LinearOperator | torch.Tensor,
    num_steps: int = 90,
    num_probes: int = 4,
    seed: int = 0,
    method: str = "slq",
    probe: str = "rademacher",
    reorthogonalize: bool = False,
) -> SpectralDensity:
    """Estimate the spectral density of a symmetric operator.

    ``method="slq"``: stochastic Lanczos quadrature (Ubaru, Chen, Saad 2017; Ghorbani, Krishnan,
    Xiao 2019): ``num_probes`` Lanczos chains of ``num_steps`` steps from normalized random
    probes run side by side (one ``A @ V`` per step) with a float64 recurrence; Ritz values are
    the nodes and squared first eigenvector components of ``T`` the weights.
    ``num_steps * num_probes`` products (fewer if a chain finds an invariant subspace).

    By default the chains run the plain three-term recurrence (three vectors per chain, ``O(d)``
    work per step): in finite precision converged Ritz values reappear as copies that split the
    weight of their eigenvalue between them, so the quadrature measure, and the density, stay
    as accurate as with exact arithmetic (Greenbaum 1989; Chen, Trogdon, Ubaru, ICML 2021;
    Ghorbani et al. 2019 and Papyan 2019 run SLQ on network Hessians this way).
    ``reorthogonalize=True`` orthogonalizes every step against all previous vectors (memory
    ``num_probes * num_steps * d``, work ``4 num_steps^2 d`` per probe); measured on exact
    network spectra it changes the density by far less than the probes' own sampling error
    (``benchmarks/density.py``).

    ``method="kpm"``: kernel polynomial method with Jackson damping, degree ``2 num_steps``,
    plus 30 products for spectral bounds; see :func:`_kpm`.
    """
    op = as_symmetric_operator(A)
    check_count("num_steps", num_steps)
    check_count("num_probes", num_probes)
    check_choice("method", method, ("slq", "kpm"))
    start = op.num_matvecs
    V0 = probes(seeded_generator(seed), op.shape[0], num_probes, probe, _F64, op.device)
    V0 = V0 / V0.norm(dim=0)
    if method == "slq":
        nodes, weights = _slq(op, num_steps, V0, reorthogonalize)
    else:
        nodes, weights = _kpm(op, num_steps, V0, seed)
    return SpectralDensity(nodes, weights, op.num_matvecs - start, method)
