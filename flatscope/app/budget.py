"""Limits of an analysis, checked before any work: what each estimator needs at least, and what
cannot finish.

- Each trace estimator needs a minimum number of products (:data:`TRACE_MIN_MATVECS`): Hutch++
  splits its budget in thirds, NA-Hutch++ in sixths and thirds, XTrace in halves, and the
  standard error needs two samples.
- No budget may exceed :data:`MAX_MATVECS` products: each is a pass over the whole data.
- Eigenvalue counts cannot exceed the number of parameters analysed ``d``.
- The vectors an estimator holds at once must fit in the memory of the device. Counted in
  vectors of ``d`` entries: a trace estimate about ``3 m`` for ``m`` products (probes, sketch,
  products; Meyer et al. 2021, Epperly et al. 2024), the diagonal ``2 m`` (probes and products),
  block Lanczos ``2 s + 2 k`` for a basis of ``s = max(2k + 1, 30, 3k)`` vectors and its
  products (:func:`flatscope.linalg.eigenvalues` with ``block_size = k``), SLQ one float64
  basis of ``steps`` vectors per probe (full reorthogonalization).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch

from flatscope.errors import FlatscopeError

__all__ = [
    "MAX_MATVECS",
    "TRACE_MIN_MATVECS",
    "BudgetError",
    "check_budgets",
    "check_problem_size",
    "device_memory",
]

#: The fewest products each trace method of :func:`flatscope.linalg.trace` accepts.
TRACE_MIN_MATVECS = {"hutchinson": 2, "hutchpp": 4, "na_hutchpp": 6, "xtrace": 4}
#: The most products one estimate may spend (each one is a pass over all of the data).
MAX_MATVECS = 1_000_000


class BudgetError(FlatscopeError, ValueError):
    """A budget below an estimator's minimum, or one that cannot finish."""


def _flag(name: str) -> str:
    return f"{name} (--{name.replace('_', '-')})"


def check_budgets(settings: Any) -> None:
    """The product budgets of :class:`~flatscope.app.analyze.AnalysisSettings` (module docs)."""
    minimum = TRACE_MIN_MATVECS.get(settings.trace_method, 2)
    if settings.num_matvecs < minimum:
        raise BudgetError(
            f"{_flag('num_matvecs')} must be at least {minimum} for trace method "
            f"{settings.trace_method}, got {settings.num_matvecs}"
        )
    spends = {
        "num_matvecs": settings.num_matvecs,
        "eig_max_matvecs": settings.eig_max_matvecs,
        "density_steps": settings.density_steps * settings.density_probes,
    }
    for name, products in spends.items():
        if products > MAX_MATVECS:
            what = "density steps x probes" if name == "density_steps" else _flag(name)
            raise BudgetError(
                f"{what} asks for {products:,} Hessian-vector products, each a pass over all "
                f"of the data; the limit is {MAX_MATVECS:,}"
            )


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of ``device`` (physical memory for the CPU), or ``None`` if unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _held_vectors(settings: Any, entry: str, d: int) -> tuple[int, str]:
    """Vectors of ``d`` entries an entry's estimator holds at once, and the option to lower."""
    if entry in ("hessian_trace", "sharpness"):
        return 3 * settings.num_matvecs, "--num-matvecs"
    if entry == "hessian_diagonal":
        return 2 * settings.num_matvecs, "--num-matvecs"
    if entry in ("top_eigenvalues", "bottom_eigenvalues"):
        k = settings.top_k if entry == "top_eigenvalues" else settings.bottom_k
        basis = min(d, max(2 * k + 1, 30, 3 * k))
        return 2 * basis + 2 * k, "--top-k" if entry == "top_eigenvalues" else "--bottom-k"
    if entry == "spectral_density":
        return settings.density_probes * min(settings.density_steps, d), "--density-steps"
    return 0, ""


def check_problem_size(
    settings: Any, entries: Iterable[str], d: int, dtype: torch.dtype, device: torch.device
) -> None:
    """Refuse, before any product, eigenvalue counts above ``d`` and estimates whose vectors
    cannot fit in the memory of ``device`` (module docs).

    Raises:
        BudgetError: the count or the estimate, and the option to lower.
    """
    entries = list(entries)
    for name, k in (("top_k", settings.top_k), ("bottom_k", settings.bottom_k)):
        entry = name.replace("_k", "_eigenvalues")
        if entry in entries and k > d:
            raise BudgetError(f"{_flag(name)} is {k}, more than the {d:,} parameters analysed")
    available = device_memory(device)
    if available is None:
        return
    for entry in entries:
        vectors, option = _held_vectors(settings, entry, d)
        itemsize = 8 if entry == "spectral_density" else torch.empty((), dtype=dtype).itemsize
        needed = vectors * d * itemsize
        if needed > available:
            raise BudgetError(
                f"{entry} would hold about {needed / 2**30:,.1f} GiB ({vectors:,} vectors of "
                f"{d:,} parameters) on a {device.type} with {available / 2**30:,.1f} GiB; lower "
                f"{option}, or analyse fewer parameters with --params"
            )
