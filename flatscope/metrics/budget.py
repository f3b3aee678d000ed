"""What an analysis can hold: checked against the parameters analysed and the device's
memory before any product (the settings' own limits are checked by
:class:`~flatscope.metrics.settings.AnalysisSettings`).

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

from flatscope.metrics.settings import AnalysisError, flag

__all__ = ["check_problem_size", "device_memory"]


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
        AnalysisError: the count or the estimate, and the option to lower.
    """
    entries = list(entries)
    for name, k in (("top_k", settings.top_k), ("bottom_k", settings.bottom_k)):
        entry = name.replace("_k", "_eigenvalues")
        if entry in entries and k > d:
            raise AnalysisError(f"{flag(name)} is {k}, more than the {d:,} parameters analysed")
    available = device_memory(device)
    if available is None:
        return
    for entry in entries:
        vectors, option = _held_vectors(settings, entry, d)
        itemsize = 8 if entry == "spectral_density" else torch.empty((), dtype=dtype).itemsize
        needed = vectors * d * itemsize
        if needed > available:
            raise AnalysisError(
                f"{entry} would hold about {needed / 2**30:,.1f} GiB ({vectors:,} vectors of "
                f"{d:,} parameters) on a {device.type} with {available / 2**30:,.1f} GiB; lower "
                f"{option}, or analyse fewer parameters with --params"
            )
