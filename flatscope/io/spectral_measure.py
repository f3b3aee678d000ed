"""A stored spectral density: one discrete measure per probe, smoothed for display.

SLQ and KPM (:mod:`flatscope.linalg.density`) store a density as nodes ``theta_pj`` and
nonnegative weights ``w_pj`` (each probe's row sums to one; rows of chains that stopped early are
padded with zero weights). Its display form is the average of the probes' measures convolved
with a Gaussian of standard deviation ``width``:

    phi_width(t) = (1/P) sum_p sum_j w_pj N(t; theta_pj, width^2),

which integrates to one (Lin, Saad, Yang, "Approximating spectral densities of large matrices",
SIAM Review 2016, section 3; Ghorbani, Krishnan, Xiao, ICML 2019, who plot it on a log scale).
The functions here take plain arrays (a report's ``nodes`` and ``weights`` lists, or NumPy
arrays) and are shared by :class:`flatscope.linalg.density.SpectralDensity` and the figures, so
the smoothing is written once and figures need no compute code.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "RELATIVE_WIDTH",
    "default_width",
    "density_grid",
    "measure_support",
    "smoothed_density",
]

#: Default Gaussian kernel width, as a fraction of the spectral range spanned by the nodes.
RELATIVE_WIDTH = 0.01
_CHUNK = 4096


def _used_nodes(nodes: ArrayLike, weights: ArrayLike) -> np.ndarray:
    return np.asarray(nodes, dtype=np.float64)[np.asarray(weights, dtype=np.float64) > 0]


def measure_support(nodes: ArrayLike, weights: ArrayLike) -> tuple[float, float]:
    """The smallest and largest node that carries weight."""
    used = _used_nodes(nodes, weights)
    if used.size == 0:
        raise ValueError("the density has no node with positive weight")
    return float(used.min()), float(used.max())


def default_width(nodes: ArrayLike, weights: ArrayLike) -> float:
    """``RELATIVE_WIDTH`` times the range of the nodes (or of ``max(|node|, 1)`` if the nodes
    coincide)."""
    low, high = measure_support(nodes, weights)
    span = high - low if high > low else max(abs(high), 1.0)
    return RELATIVE_WIDTH * span


def smoothed_density(
    nodes: ArrayLike, weights: ArrayLike, grid: ArrayLike, width: float
) -> np.ndarray:
    """``phi_width`` (module docs) at the points ``grid``, for ``(P, m)`` nodes and weights.

    Raises:
        ValueError: ``width`` is not positive.
    """
    width = float(width)
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    nodes = np.asarray(nodes, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    t = np.asarray(grid, dtype=np.float64).reshape(-1)
    used = weights > 0
    centres, inverse = np.unique(nodes[used], return_inverse=True)
    mass = np.bincount(inverse, weights=weights[used], minlength=centres.size) / nodes.shape[0]
    out = np.empty_like(t)
    for start in range(0, t.size, _CHUNK):
        z2 = np.square((t[start : start + _CHUNK, None] - centres) / width)
        # Clamped so that exp never returns subnormal numbers (slow on CPUs); the density never
        # drops below about 1e-304 / width.
        out[start : start + _CHUNK] = np.exp(-0.5 * np.minimum(z2, 1400.0)) @ mass
    return out / (width * math.sqrt(2 * math.pi))


def density_grid(
    nodes: ArrayLike, weights: ArrayLike, width: float, num_points: int = 1000
) -> np.ndarray:
    """Sorted evaluation points for plots, also on a log density scale: a uniform grid over the
    nodes' range padded by ``5 width``, plus 17 points within ``4 width`` of every node so that
    each narrow peak (an isolated outlier eigenvalue) is resolved."""
    low, high = measure_support(nodes, weights)
    uniform = np.linspace(low - 5 * width, high + 5 * width, num_points)
    peaks = np.unique(_used_nodes(nodes, weights))
    local = (peaks[:, None] + width * np.linspace(-4, 4, 17)).reshape(-1)
    return np.unique(np.concatenate([uniform, local]))
